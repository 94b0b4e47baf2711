"""Typed settings of each optimizer kind, validated where a campaign file is read.

A campaign file's ``optimizer.settings`` is checked here against the model of its ``kind`` (one
frozen pydantic model per kind, ``extra="forbid"``), so ``autolab validate`` refuses ``n_inti: 6``
or ``n_init: -1`` with the field and a "did you mean" hint, exactly as ``autolab run`` would,
instead of the run failing after it made its folder. Each model mirrors the keyword arguments of
its optimizer's constructor; the optimizer validates with the same model, so there is one
definition of every setting.

This module must stay free of torch and BoTorch: ``autolab validate`` imports it and must start
in well under a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autolab.exceptions import ConfigError
from autolab.yamlfile import did_you_mean

_SETTINGS = ConfigDict(frozen=True, extra="forbid")

#: Largest initial design accepted: more than a campaign budget can ever use.
MAX_N_INIT = 1000


class BotorchSettings(BaseModel):
    """Knobs of :class:`~autolab.optimizer.bayes.BotorchOptimizer`.

    The defaults aim at ``ask(1)`` in about a second at 50 observations on two CPU cores.

    Attributes:
        n_init: Size of the initial Sobol design; ``None`` means ``max(dim, 4)``. On the
            family's design cells 3 reached the band sooner (median 6 vs 8) but found fewer good
            hits (6/12 vs 9/12); 4 reached it at a median of 6 vs 8 with as many good hits
            (11/18 vs 10/18, paired mean -0.9 experiments; screening, budget 20). On the twin's
            550 nm problem (6-D, 10 seeds) 6 initial points needed a median of 12.0 experiments,
            4 needed 13.5 and 12 needed 15.0: a model learns more per experiment than a
            space-filling design once it has about one point per dimension.
        num_restarts: Starting points of the gradient-based acquisition optimization.
        raw_samples: Random candidates scored to choose those starting points.
        mc_samples: Quasi-MC posterior samples per acquisition evaluation (Pareto mode; the
            scalar-mode acquisition is closed form).
        maxiter: Iteration cap of each acquisition optimization run (per restart: box-bounded
            L-BFGS-B, which is within noise of converged by 30; SLSQP when a linear constraint
            binds).
        fit_maxiter: Iteration cap of each GP hyperparameter fit.
        learn_feasibility: Fit a feasibility GP once an experiment has failed.
        device: ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
        cpu_threads: torch CPU threads used while proposing. Fixed (not "all cores") because float
            reductions differ with the thread count: a resumed campaign on another machine must
            propose bit-for-bit what the uninterrupted one would have. One thread is as fast as
            two for campaign-sized GPs (tens to hundreds of points).
        known_noise: Use the 1-sigma uncertainties told with the outcomes (``outcome_sd``) as
            known observation noise of the GPs, plus a learned extra noise for what they miss.
            Without any stated uncertainty the noise is learned, as before.
        band_weight: Exponent of the band probability in the acquisition
            (``band_weight * log P(band)``). 1 is the plain probability; smaller values temper
            it, so that the search leaves the places where the peak is already known for
            brighter regions whose peak is less certain. On the family's design cells (12, one
            seed) 0.5 was within noise of 1 (good hit 10/12, median 24 vs 9/12, 23; see
            docs/benchmarks.md "Optimizer choices"), so the default stays 1.
        band_projection: Move half of the acquisition optimizer's uniform starting points onto
            the model's predicted target band (Newton steps on the posterior mean), so the
            search finds the band-first acquisition's thin ridge away from the data too. Within
            noise of off on the family's design cells (10/12, median 22.5 vs 9/12, 20), so off
            by default.
        min_improvement: Smallest improvement of the non-target score terms (score units:
            ``Maximize(qy, scale=0.1)`` makes 0.5 = 5 % QY) that the acquisition's expected
            improvement counts: the bar is the best in-band experiment's posterior value plus
            this. With 0, a point next to the incumbent with a tiny posterior sd earns about
            as much as a distant one that may be much brighter, so once in band the search
            crawls along the band in steps of 1 % QY (the family's design cells: in band at
            experiment 8, then 10-20 experiments to reach 90 % of the best QY). A bar of a
            few % QY is worth only where the model is unsure enough to clear it. Measured on
            the design cells (18 paired cells, budget 20; docs/benchmarks.md "Optimizer
            choices"): 0.25 within noise of 0 (good hit 10/18 vs 10/18, paired mean -0.2), 0.75
            slightly worse (9/18, +0.7): the bolder steps leave the band as often as they
            find brighter product, so the default stays 0.
        kernel: Kernel of the outcome GPs (:mod:`~autolab.optimizer.gp_design`): ``"rbf"``
            (BoTorch's default) or ``"matern52"``, both with BoTorch's dimension-scaled
            lengthscale prior. Calibration and screening figures: docs/benchmarks.md
            "Outcome models".
        input_warping: Learn a Kumaraswamy-CDF warp of each input of the outcome GPs
            (BoTorch's ``Warp``), for responses steeper at one end of a range than the other.
        mean: Prior mean of the outcome GPs named by ``mean_outcomes``
            (:mod:`~autolab.optimizer.gp_design`): ``"constant"`` (BoTorch's), ``"linear"``,
            a fitted (MAP) linear trend in the inputs, so the model extrapolates a monotone
            response (a PL peak) from the first few points toward a band they have not
            bracketed, where a constant mean reverts to the data's average, or
            ``"linear_kernel"``, the same trend with its weights integrated out (a linear
            kernel added), whose sd grows away from the data. Not combined with a prior
            (``prior``/``outcome_prior``), whose own mean takes that place. Screened on the
            design set (docs/benchmarks.md "A trend in the mean"; 1 seed, budget 30): fitted
            on 4-6 points the trend predicts the band region worse than the constant mean
            (PL RMSE at n = 6: 26-30 vs 16-25 nm); ``linear`` is overconfident and reached
            the band later (0-9 over 12 cells); ``linear_kernel`` found 17/22 good hits vs
            21/22, with ``n_init: 4`` 28/36 (as ``n_init: 4`` alone) and with ``n_init: 5``
            31/36 (first in band at a median of 7) vs 33/36 (8) for the defaults, so the
            default stays ``"constant"``.
        hyperprior: Priors of the outcome GPs' kernel hyperparameters
            (:mod:`~autolab.optimizer.gp_design`): ``"dimension_scaled"`` (BoTorch's
            LogNormal on every lengthscale, the same for every input and outcome, no output
            scale) or ``"family"``: per input and outcome LogNormal lengthscale priors and a
            LogNormal output scale, learned on the reactor family's design members
            (``benchmarks/family_hyperprior.py``), for the PL peak and QY over the InP/ZnS
            space's six inputs; other outcomes keep BoTorch's prior, other inputs are refused.
            Not combined with a prior (``prior``/``outcome_prior``). Screened on the design set
            (docs/benchmarks.md "Eighth round"; 1 seed, budget 30, 36 cells): each member's own
            (oracle) hyperparameters found 34/36 good hits at a median of 16.5 against 31/36,
            22.5 (paired mean -4.9), but the family's learned priors 31/36 at 21 (paired mean
            -0.4, W-L 16-14): the kinds disagree on which inputs QY depends on, so a
            population prior is wide where it would have to be sharp, and the default stays
            ``"dimension_scaled"``.
        sparse_outcomes: Which outcome GPs get the sparsity (SAAS) prior on their
            lengthscales (:mod:`~autolab.optimizer.gp_design`, fitted MAP): ``"none"``,
            ``"non_targets"`` (the outcomes no Target term names, e.g. QY) or ``"all"``. Why:
            QY depends strongly on a few inputs, which ones differs by reactor kind, and 6-20
            points do not identify them under BoTorch's dimension-scaled prior (freezing only
            the QY GP at each member's own dense fit: 34/36 good hits at a median of 15 vs
            31/36, 22.5; docs/benchmarks.md "Ninth round"). Not combined with ``hyperprior``
            other than ``"dimension_scaled"`` nor with a prior (``prior``/``outcome_prior``).
            Screened with ``"non_targets"`` (docs/benchmarks.md "Tenth round"; design set, 1
            seed, budget 30, 36 cells): 33/36 good hits at a median of 21.5 against 31/36,
            22.5, paired mean -0.83 (17-16), within noise: from 16 points the MAP fit switches
            inputs off, sometimes the one QY depends on most, and the QY posterior is
            overconfident at the Thompson argmax, so the default stays ``"none"``.
        mean_outcomes: Which outcome GPs take ``mean``: ``"targets"`` (the outcomes of the
            objective's Target terms, e.g. the PL peak) or ``"all"``.
        band_slack_tolerances: While exploring, the acquisition's band probability reads each
            target band as ``tolerance * (1 + band_slack_tolerances)`` wide on either side
            (:mod:`autolab.optimizer.exploration`), so a bright region whose peak lies near
            the band is learned instead of only the known in-band neighbourhood. 0: off.
        band_slack_sd: Further widening by this multiple of the target outcome's posterior sd:
            optimism about the band where the peak is unknown, none where it is known. 0: off.
            Screened (docs/benchmarks.md "Optimizer choices", third round; 1 seed, budget 30):
            1 found a good hit in 30/36 design cells vs 26/36 (paired mean -1.7 experiments,
            wins-losses 22-11) and in 25/35 held-out cells vs 24/35 (-1.1, 16-11), so the
            default stays 0 until more seeds say more.
            The slack widens the band in the band-first EI only: under the default
            ``band_ei_then_ts`` it acts until the band is found (and while experiments are
            pending), not in the Thompson draws; the figures above were measured with
            ``band_ei``.
        band_slack_until: The slack shrinks linearly to zero at this many experiments told
            (then the acquisition is the plain band-first one); ``None`` keeps it whole. With
            ``band_slack_sd: 1``, 20 found 25/36 design cells against 30/36 without the decay:
            the late good hits come from the optimism itself.
        prior: ``"twin"``: the digital twin's noise-free response is the GPs' prior mean, with a
            learned weight and offset, and the GPs model the reactor's discrepancy from it
            (``autolab.prior.twin_prior`` builds it; the optimizer gets it as
            ``outcome_prior=``). ``"none"``: a cold start.
        acquisition: How a model-based point is chosen in scalar mode. ``"band_ei"``: the
            band-first log expected improvement, maximized by gradient
            (:class:`~autolab.optimizer.acquisition.BandFirstLogEI`). ``"ts"``: constrained
            Thompson sampling over a candidate set (:mod:`~autolab.optimizer.thompson`): each
            point is the best in-band candidate of one joint posterior draw, so a distant region
            is tried as often as the model thinks it may be the best one, where the expected
            improvement crawls along the band next to the known in-band points.
            ``"band_ei_then_ts"`` (the default, with ``trust_region``): band-first EI until an
            experiment is in band, TS after; an objective without a target keeps the EI. Screened
            on the family's design set (36 paired cells, budget 30; docs/benchmarks.md "Optimizer
            choices", third round): ``ts`` reached the band 2 experiments later;
            ``band_ei_then_ts`` found 30/36 good hits vs 26/36 for ``band_ei`` but left the band
            too often to be faster (paired mean +0.8); with ``trust_region`` 33/36 (paired mean
            -2.2). Held out, two seeds (69 paired cells): 62/69 good hits against 47/69 for
            ``band_ei``, median 20 against 23 experiments, first in band unchanged (8). A Pareto
            objective uses qLogNEHVI (``band_ei``) unless this is set, and refuses Thompson
            sampling.
        ts_candidates: Size of the Thompson candidate set (one Cholesky of this size per
            output and ask). 2048 on the design set: paired mean -0.81 experiments to a good
            hit (33/36 as 1024); held out (seed 0, 35 cells) even (+0.14, 30/35 against 29/35)
            at 2.4x the CPU per experiment (docs/benchmarks.md, "Sixth round"), so 1024.
        trust_region: (Default on; ``acquisition: band_ei`` alone turns it off, both set
            explicitly is refused.) Thompson sampling's candidates are all uniform in a
            TuRBO/SCBO trust region around the best in-band experiment (side from the
            history's successes and failures) instead of half global, half multi-scale steps
            around the best three.
            It keeps the draws near the best in-band experiment, where the PL model is good: on
            the design set good hits rose to 33/36 (global TS 30/36, defaults 26/36; 7 cells
            found only with it, none only with the defaults); held out 29/35 against 24/35,
            median 21 against 25 experiments, first in band unchanged (8).
        ts_pending: What Thompson sampling does while other experiments are pending (other
            reactors; a batch asked at once is always Thompson draws). ``"exclude"``: each point is
            its own draw, with candidates within ``thompson.EXCLUSION_RADIUS`` of a pending or
            chosen point excluded. ``"band_ei"``: the band-first EI with fantasies of the pending
            outcomes proposes instead (:mod:`~autolab.optimizer.pending`), which accounts for what
            they will teach; Thompson sampling then only runs with nothing pending.
            ``"believer"``: as ``exclude``, but each draw comes from the posterior conditioned
            on the pending points' posterior means (kriging believer, no refit;
            :mod:`~autolab.optimizer.believer`), so it varies less where they will read.
            Meant for dynamic mode, whose every ask has the tanks' fluid pending (with
            ``band_ei`` its Thompson phase never runs); asks with nothing pending, as in a
            steady campaign, propose exactly what the default proposes. In dynamic mode on the
            design cells (seeds 0-1, equal lab hours; docs/dynamic.md) it found 15/16 against
            14/16 but slower, 0.31x the steady lab hours against 0.28x (slower in 9 of 13
            cells), so the default stays ``band_ei``.
        ts_band_floor: Thompson candidates whose marginal probability of every band is below
            this are dropped (all are kept if none reaches it): a draw's argmax favours long
            shots whose PL draw fell in band by chance (after the first in-band product only
            about half of TS's experiments were in band, 77-80 % with ``band_ei``). 0: off.
            0.2 with the trust region on the design set: 30/36 good hits, median 19.5 (trust
            region alone 33/36, 20.5; paired mean -0.4): not a clear winner, so off.
        trust_region_init: Side of the trust region's first box (unit cube) and of every
            restart. TuRBO's 0.8 spans most of each range, so the draws roam far from the
            in-band experiment where the PL model is good; a smaller box refines it, but must
            grow back first when the optimum in band lies in another basin. Screened
            (docs/benchmarks.md "Optimizer choices", fourth round): 0.4 on the design set
            32/36 good hits, median 17 against 33/36, 20.5 (paired mean -2.5, W-L 19-14); held
            out (70 cells, 2 seeds) 60/70, median 22 against 63/70, 20 (+0.9, 29-33): faster
            on twin-like members, slower on the others; a second design seed agreed (both
            seeds 60/72 against 64/72, median 17 against 20), so the default stays 0.8.
        ts_greedy_every: Every this many experiments (the ``k``-th, ``2k``-th, ...), a
            Thompson-phase ask takes the candidate with the best *posterior-mean* score whose
            mean meets every band (:mod:`~autolab.optimizer.greedy`) instead of a draw's argmax,
            which favours long shots whose draw happened to be bright and in band. ``None``:
            never (pure Thompson sampling). Screened (docs/benchmarks.md, fifth round; budget
            30): 2 on the design set (2 seeds, 72 cells) 62/72 good hits, median 18, against
            64/72, 20 (paired mean -1.07, W-L 34-25; twin members median 13 against 17); held
            out (70 cells) 64/70, median 19.5 against 63/70, 20 (paired mean -0.23, W-L
            32-31, the sign flipping with the seed); 3 within noise on the design set.
            So the default stays ``None``.
        trust_region_centre: Which experiments may centre the trust region
            (:mod:`~autolab.optimizer.centre`): ``"measured"``, those read in band;
            ``"posterior"``, those whose posterior mean is in band (a noise-robust incumbent:
            a true in-band point read just outside the ±2 nm band still counts). On 19 design
            cells 15 ran step for step as with ``measured``, the other 4 split 1-3 (paired
            mean +0.37; docs/benchmarks.md, fifth round), so the default stays ``"measured"``.
        ts_temper: Each Thompson draw is taken as ``mean + ts_temper * (draw - mean)``: 1 is
            plain Thompson sampling; below 1 the draws stay nearer the posterior mean, so the
            argmax over a thousand candidates favours less the ones whose draw happened to be
            extreme (along the default's traces the chosen points' QY was predicted 0.85 sd
            above the truth on average). 0.5 on the design set (36 cells): 32/36 good hits,
            median 19, against 33/36, 20.5 (paired mean -0.36, W-L 15-16): within noise
            (docs/benchmarks.md, fifth round), so the default stays 1.
        ts_escape: What a Thompson-phase ask does once the best in-band reading has not improved
            for ``ts_escape_after`` experiments (:mod:`~autolab.optimizer.escape`; needs the
            trust region): ``"none"``, nothing (TuRBO's halving alone); ``"global_draw"``, the
            draw also runs over as many candidates of the whole space (TuRBO-m's bandit
            between the box and the space) while stalled; ``"global_pi"``, every
            ``ts_escape_after``-th stalled experiment takes the whole space's candidate with
            the highest posterior probability of a 5 % improvement in band;
            ``"global_centre"``, while stalled the box is centred on that candidate. Replaying
            the default on the design set, 86 of 427 Thompson asks had no truly good candidate
            in the box (41 of the 57 asks of the three missed cells), but neither the stall nor
            the model's probability of an improvement told those asks from the others.
            Screened on the design set (36 cells; docs/benchmarks.md, "Sixth round"):
            ``global_pi`` after 4 found 30/36 against 33/36 (paired mean +0.56), after 8 31/36
            (+0.14), ``global_centre`` after 6 31/36 (+0.19), ``global_draw`` after 4 lost 4 of
            its first 6 twin cells; so the default stays ``"none"``.
        ts_escape_after: Experiments in a row without an in-band improvement after which
            ``ts_escape`` acts (TuRBO halves the box after ``max(4, d)``).
        ts_optimizer: How a Thompson draw is maximized: ``"discrete"``, over the candidate set
            (a joint draw at ``ts_candidates`` points); ``"continuous"``, a posterior sample
            path per output (Matheron's rule) maximized by L-BFGS-B inside the box the
            candidates span, started from the ``ts_restarts`` best candidates on that path
            (:mod:`~autolab.optimizer.continuous`). On the design set (36 cells;
            docs/benchmarks.md, "Seventh round") it found 30/36 good hits against 33/36
            (paired mean +0.69): the finer maximum of a draw sits on the drawn band's edge,
            where the PL error puts the product out of band (39 % of the experiments after
            the first in-band one were in band, against 54 %), so the default stays discrete.
        ts_restarts: Starting points of ``ts_optimizer: continuous``.
        ts_band: How a Thompson draw treats the target band (discrete draws,
            :func:`~autolab.optimizer.thompson.thompson_select`). ``"draw"``: the band is drawn
            with the other outcomes and the best candidate whose drawn PL is in band wins
            (SCBO's rule). ``"probability"``: only the non-target outcomes are drawn; a
            candidate scores its band probability times the (softened) improvement of its
            drawn QY score over the best in-band experiment's posterior mean, so a long shot
            whose PL draw fell in band by luck no longer wins. Why: along the default's climb
            on the design set 38 % of the proposals had a band probability below 0.5 and
            brought 1 of 29 good hits. Screened (docs/benchmarks.md, "Ninth round"; 36 cells,
            seed 0): 61 % of the climb in band against 51 %, but the in-band proposals were no
            brighter and stayed nearer the known band (part of the EI's crawl back): 28/36
            good hits against 31/36, paired mean -0.5 (W-L 17-13), so the default stays
            ``"draw"``.
        prior_spread: Where the prior's discrepancy GP takes its amplitude from. ``"data"``:
            the readings' spread (``Standardize``), which after one or two readings makes the
            model sure the prior is off by a constant everywhere (the second proposal predicted
            at +-1 nm, then missed by 4-29 nm). ``"stated"``: the prior's own
            ``discrepancy_sd`` (for the twin, measured on the reactor family) as the centre of
            a LogNormal prior on a learned amplitude (``autolab.optimizer.prior``). Screened
            on the design set (budget 30; docs/benchmarks.md "An honest discrepancy"): near
            members in band at 2.5 vs 3.5 with ``data``, far members' good hits 2/12 either way
            (7/12 cold). ``"auto"`` (default): ``stated`` when the prior states a spread (the
            twin prior does), else ``data``; the optimizer writes the value it chose into its
            settings, so a saved state resumes with it.
        prior_guard: ``"loo"``: after each ``tell`` (from
            ``prior_guard.GUARD_MIN_READINGS`` successes on) each outcome's GP with the prior
            and a cold GP fitted on the same readings are scored by their leave-one-out
            predictive density, and the better one proposes (:mod:`autolab.optimizer.prior_guard`;
            the choice is in the model record). ``"none"``: the prior always proposes. Needs a
            prior. Screened with ``prior_spread: stated`` (docs/benchmarks.md "A guard against
            a wrong prior"; budget 30): near members unchanged (in band at 3, good hit at 5
            against 20 cold); far members 9/12 good hits against 5/12 unguarded and 10/12 cold,
            +2.0 experiments at the paired median against cold on the design set, +1.0 held
            out. ``"auto"`` (default): ``"loo"`` when a prior is given, else ``"none"``; the
            optimizer writes the value it chose into its settings (a state saved before the
            guard existed resumes with ``"none"``).
        prior_outcomes: Which outcomes' GPs take the prior (the others are modelled cold;
            :mod:`autolab.optimizer.prior_outcomes`). ``"all"`` (default): every outcome the
            prior predicts. ``"band"``: only the outcomes of the objective's targets (the
            PL peak). ``"all_until_band"`` / ``"band_until_band"``: all, or the band's
            outcomes only, until the first in-band success, then the other set. Needs a
            prior. Screened (docs/benchmarks.md "Which outcomes take the twin prior"; lean
            harness, budget 30, 550/610 nm): on the design set ``band`` found as many far
            good hits as a cold start (10/12; ``all`` 9/12) and reached the band sooner (4.5
            vs 6), but held out it found 8/12 (``all`` 9/12, cold 10/12), and near members'
            good hit came at 13 against 6, so the default stays ``all``.
        band_spread: When the proposals right after the first in-band success fill the band
            instead of climbing (:mod:`~autolab.optimizer.band_spread`): ``"off"`` (default),
            ``"in_band"`` (always), ``"guard_cold"`` (only while the prior guard models an
            outcome outside the band cold; needs a prior and its guard). Screened with the
            twin prior (docs/benchmarks.md, "A QY weight that can reach 0, and spreading along
            the band"; design set, budget 30): near members unchanged (in band at 3, good hit
            at 7); far members 7/11 good hits, as many as the prior's defaults on the same
            cells (cold 9/11), paired median +0.0 against both: no gain shown, so off.
        band_spread_n: How many proposals after the first in-band success spread.
        prior_start: How a campaign with a prior chooses its first experiments
            (:mod:`~autolab.optimizer.prior_start`): ``"band_centre"`` (default), the middle
            (medoid) of the prior's predicted band, chosen for the band only; ``"best"``, the
            prior's best point (the twin's brightest in-band point; the default until the
            twelfth session); ``"band_spread"``, the medoid and then ``prior_start_n - 1`` more
            predicted in-band points, maximin, before the model starts. A value other than the
            default needs a prior. Measured with the twin prior (docs/benchmarks.md, "The
            prior's first experiment chosen for the band"; budget 30, paired against
            ``best``): design set, near good hit 2.5 against 7 and far +0.0 (11/16 good hits
            against 10/16); held out (decided beforehand), near -1.0 and far -5.5 (6/8 good
            hits each), far +1.0 against a cold start (design set +4.0). ``band_spread`` (n 3)
            put near members in band at 5 against 3 and was stopped.
        prior_start_n: How many start points ``prior_start: band_spread`` proposes.
    """

    model_config = _SETTINGS

    n_init: int | None = Field(default=None, ge=1, le=MAX_N_INIT)
    num_restarts: int = Field(default=8, ge=1, le=1000)
    raw_samples: int = Field(default=256, ge=1, le=1_000_000)
    mc_samples: int = Field(default=128, ge=1, le=100_000)
    maxiter: int = Field(default=30, ge=1, le=100_000)
    fit_maxiter: int = Field(default=100, ge=1, le=100_000)
    learn_feasibility: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int = Field(default=1, ge=1, le=256)
    known_noise: bool = True
    prior: Literal["none", "twin"] = "none"
    prior_spread: Literal["auto", "data", "stated"] = "auto"
    prior_guard: Literal["auto", "none", "loo"] = "auto"
    prior_outcomes: Literal["all", "band", "all_until_band", "band_until_band"] = "all"
    band_spread: Literal["off", "in_band", "guard_cold"] = "off"
    band_spread_n: int = Field(default=3, ge=1, le=MAX_N_INIT)
    prior_start: Literal["best", "band_centre", "band_spread"] = "band_centre"
    prior_start_n: int = Field(default=3, ge=1, le=MAX_N_INIT)
    band_weight: float = Field(default=1.0, gt=0.0, le=1.0)
    band_projection: bool = False
    min_improvement: float = Field(default=0.0, ge=0.0, le=1e6, allow_inf_nan=False)
    kernel: Literal["rbf", "matern52"] = "rbf"
    input_warping: bool = False
    mean: Literal["constant", "linear", "linear_kernel"] = "constant"
    mean_outcomes: Literal["targets", "all"] = "targets"
    hyperprior: Literal["dimension_scaled", "family"] = "dimension_scaled"
    sparse_outcomes: Literal["none", "non_targets", "all"] = "none"
    acquisition: Literal["band_ei", "ts", "band_ei_then_ts"] = "band_ei_then_ts"
    ts_candidates: int = Field(default=1024, ge=16, le=16384)
    trust_region: bool = True
    ts_band_floor: float = Field(default=0.0, ge=0.0, lt=1.0, allow_inf_nan=False)
    trust_region_init: float = Field(default=0.8, ge=0.01, le=1.6, allow_inf_nan=False)
    ts_pending: Literal["exclude", "band_ei", "believer"] = "band_ei"
    ts_greedy_every: int | None = Field(default=None, ge=2, le=MAX_N_INIT)
    trust_region_centre: Literal["measured", "posterior"] = "measured"
    ts_temper: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    ts_escape: Literal["none", "global_draw", "global_pi", "global_centre"] = "none"
    ts_escape_after: int = Field(default=4, ge=1, le=MAX_N_INIT)
    ts_optimizer: Literal["discrete", "continuous"] = "discrete"
    ts_restarts: int = Field(default=8, ge=1, le=256)
    ts_band: Literal["draw", "probability"] = "draw"
    band_slack_tolerances: float = Field(default=0.0, ge=0.0, le=100.0, allow_inf_nan=False)
    band_slack_sd: float = Field(default=0.0, ge=0.0, le=10.0, allow_inf_nan=False)
    band_slack_until: int | None = Field(default=None, ge=1, le=MAX_N_INIT)

    @model_validator(mode="before")
    @classmethod
    def _no_default_trust_region_for_band_ei(cls, data: Any) -> Any:
        """``acquisition: band_ei`` alone turns the (default) trust region off.

        The trust region belongs to Thompson sampling; only asking for both is a contradiction.
        Writing the value down (rather than ignoring it) keeps a saved state's settings valid
        when they are read back with every field set.
        """
        if isinstance(data, dict) and data.get("acquisition") == "band_ei":
            data = {"trust_region": False, **data}
        return data

    @model_validator(mode="after")
    def _guard_needs_prior(self) -> BotorchSettings:
        if self.prior_guard == "loo" and self.prior == "none":
            raise ValueError(f"prior_guard {self.prior_guard!r} guards a prior: set prior "
                             "(e.g. 'twin') or drop prior_guard")
        if self.band_spread == "guard_cold" and (self.prior == "none"
                                                 or self.prior_guard == "none"):
            raise ValueError("band_spread 'guard_cold' follows the prior guard: set prior "
                             "(e.g. 'twin') with prior_guard 'auto' or 'loo', or use "
                             "band_spread 'in_band'")
        # against the default, not the fields given: a dumped valid setting round-trips
        default_n = type(self).model_fields["band_spread_n"].default
        if self.band_spread == "off" and self.band_spread_n != default_n:
            raise ValueError("band_spread_n counts the proposals band_spread spreads: set "
                             "band_spread ('in_band' or 'guard_cold') or drop band_spread_n")
        default_start = type(self).model_fields["prior_start"].default
        if self.prior_start != default_start and self.prior == "none":
            raise ValueError(f"prior_start {self.prior_start!r} chooses the first experiments "
                             "from a prior: set prior (e.g. 'twin') or drop prior_start")
        default_start_n = type(self).model_fields["prior_start_n"].default
        if self.prior_start != "band_spread" and self.prior_start_n != default_start_n:
            raise ValueError("prior_start_n counts the start points of prior_start "
                             "'band_spread': set prior_start: band_spread or drop prior_start_n")
        if self.prior_outcomes != "all" and self.prior == "none":
            raise ValueError(f"prior_outcomes {self.prior_outcomes!r} chooses the outcomes of a "
                             "prior: set prior (e.g. 'twin') or drop prior_outcomes")
        return self

    @model_validator(mode="after")
    def _sparse_alone(self) -> BotorchSettings:
        """The sparsity prior sets the lengthscales' prior and the output scale itself.

        A learned hyperprior would set the same priors otherwise, and a prior surrogate
        (``prior: twin``) scales the kernel by its own spread.
        """
        if self.sparse_outcomes == "none":
            return self
        if self.hyperprior != "dimension_scaled":
            raise ValueError(f"sparse_outcomes {self.sparse_outcomes!r} sets the lengthscales' "
                             f"prior; hyperprior {self.hyperprior!r} sets them otherwise: drop "
                             "one of them")
        if self.prior != "none":
            raise ValueError(f"sparse_outcomes {self.sparse_outcomes!r} cannot be combined with "
                             f"prior {self.prior!r}, which scales the GPs' kernel itself: drop "
                             "one of them")
        return self

    @model_validator(mode="after")
    def _trust_region_needs_ts(self) -> BotorchSettings:
        if self.trust_region and self.acquisition == "band_ei":
            raise ValueError("trust_region applies to Thompson sampling only: set acquisition "
                             "to 'ts' or 'band_ei_then_ts', or drop trust_region")
        default_init = type(self).model_fields["trust_region_init"].default
        if not self.trust_region and self.trust_region_init != default_init:
            # A size for a region that is off would be silently ignored. The default value is
            # let through because saved states write every field down.
            raise ValueError(f"trust_region_init {self.trust_region_init} sizes the trust "
                             "region, which is off here: set trust_region: true (with "
                             "acquisition 'ts' or 'band_ei_then_ts') or drop trust_region_init")
        default_after = type(self).model_fields["ts_escape_after"].default
        if not self.trust_region and (self.ts_escape != "none"
                                      or self.ts_escape_after != default_after):
            raise ValueError("ts_escape / ts_escape_after escape the trust region, which is off "
                             "here: set trust_region: true (with acquisition 'ts' or "
                             "'band_ei_then_ts') or drop them")
        if not self.trust_region and self.trust_region_centre != "measured":
            raise ValueError(f"trust_region_centre {self.trust_region_centre!r} centres the "
                             "trust region, which is off here: set trust_region: true (with "
                             "acquisition 'ts' or 'band_ei_then_ts') or drop trust_region_centre")
        return self

    @model_validator(mode="after")
    def _believer_needs_discrete(self) -> BotorchSettings:
        """``ts_pending: believer`` and ``ts_band`` act on discrete draws; a path ignores them."""
        if self.ts_pending == "believer" and self.ts_optimizer != "discrete":
            raise ValueError("ts_pending 'believer' conditions the draws over the candidate set: "
                             "set ts_optimizer to 'discrete' or ts_pending to 'exclude'")
        if self.ts_band != "draw" and self.ts_optimizer != "discrete":
            raise ValueError(f"ts_band {self.ts_band!r} scores the draws over the candidate set; "
                             "a continuous sample path draws the band: set ts_optimizer to "
                             "'discrete' or drop ts_band")
        return self

    @model_validator(mode="after")
    def _thompson_settings_need_ts(self) -> BotorchSettings:
        """Settings of the Thompson phase are refused when no ask ever samples.

        With ``acquisition: band_ei`` they would be silently ignored; as with
        ``trust_region_init``, the default values pass (saved states write every field down).
        """
        if self.acquisition != "band_ei":
            return self
        fields = type(self).model_fields
        set_here = [name for name in THOMPSON_ONLY if getattr(self, name) != fields[name].default]
        if set_here:
            raise ValueError(f"{', '.join(set_here)} tune(s) Thompson sampling, which "
                             "acquisition 'band_ei' never uses: set acquisition to 'ts' or "
                             f"'band_ei_then_ts', or drop {', '.join(set_here)}")
        return self


#: Settings that act only when an ask samples (``acquisition`` ``ts`` or ``band_ei_then_ts``).
THOMPSON_ONLY = ("ts_candidates", "ts_band_floor", "ts_pending", "ts_greedy_every", "ts_temper",
                 "ts_escape", "ts_escape_after", "ts_optimizer", "ts_restarts", "ts_band")


class RandomSettings(BaseModel):
    """Settings of the uniform random baseline: none (the seed is the campaign's)."""

    model_config = _SETTINGS


class SobolSettings(BaseModel):
    """Settings of the scrambled Sobol baseline: none (the seed is the campaign's)."""

    model_config = _SETTINGS


#: Optimizer kind -> its settings model; the kinds a campaign file may name.
OPTIMIZER_SETTINGS: dict[str, type[BaseModel]] = {
    "botorch": BotorchSettings,
    "random": RandomSettings,
    "sobol": SobolSettings,
}


def settings_problems(model: type[BaseModel], settings: Mapping[str, Any],
                      what: str) -> list[str]:
    """Validate ``settings`` against ``model``; one readable line per problem (empty if valid).

    Args:
        model: The settings model.
        settings: The settings as written.
        what: What they belong to, for messages (``"optimizer 'botorch'"``).
    """
    try:
        model.model_validate(dict(settings))
    except ValidationError as err:
        out = []
        for e in err.errors():
            path = ".".join(str(p) for p in e["loc"]) or "(all)"
            if e["type"] == "extra_forbidden":
                known = sorted(model.model_fields)
                hint = did_you_mean(str(e["loc"][-1]), known) or (
                    f"; {what} takes {known}" if known else f"; {what} takes no settings")
                out.append(f"settings.{path}: unknown setting of {what}{hint}")
            else:
                out.append(f"settings.{path}: {e['msg']}, got {e.get('input')!r}")
        return out
    return []


def parse_optimizer_settings(kind: str, settings: Mapping[str, Any]) -> BaseModel:
    """The typed settings of optimizer ``kind``.

    Raises:
        ConfigError: Unknown kind, unknown setting (with a "did you mean" hint) or a bad value.
    """
    model = OPTIMIZER_SETTINGS.get(kind)
    if model is None:
        raise ConfigError(f"unknown optimizer {kind!r}{did_you_mean(kind, OPTIMIZER_SETTINGS)}; "
                          f"choose one of {sorted(OPTIMIZER_SETTINGS)}")
    problems = settings_problems(model, settings, f"optimizer {kind!r}")
    if problems:
        raise ConfigError("; ".join(problems))
    return model.model_validate(dict(settings))
