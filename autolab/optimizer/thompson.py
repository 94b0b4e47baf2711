"""Constrained Thompson sampling for the target band (``BotorchSettings.acquisition: ts``).

Why: once the band-first expected improvement (:class:`~autolab.optimizer.acquisition.
BandFirstLogEI`) has found the band it crawls along it. Away from the data the PL posterior sd
(3-10 nm) caps ``P(band)`` of a ±2 nm band, so a point next to a known in-band experiment always
outscores a distant one that may be much brighter: on held-out reactors about two thirds of all
experiments land in band, yet the runs that miss end at 0.6-0.9 of the QY needed. Thompson
sampling (in the spirit of SCBO, Eriksson & Poloczek 2021) proposes a point with the posterior
probability that it is the best in-band point, so a distant region is tried as often as the
model thinks it may hold the optimum, not only when its band probability is high.

One proposal: draw one joint posterior sample of every output (PL, QY, ..., the feasibility GP)
over a finite candidate set; in that sample, take the candidate with the best non-target score
(the weighted QY term, :func:`~autolab.optimizer.acquisition.rest_coefficients`) among those
whose sampled outcomes are in every band, meet every outcome constraint and do not fail; if no
candidate does, the one with the least violation. That is BoTorch's
``ConstrainedMaxPosteriorSampling`` rule, written here because the band is a two-sided condition
on an outcome, not a ``c(x) <= 0`` output of a constraint model.

The candidate set (:func:`candidate_set`) mixes uniform points of the space (half of them moved
onto the model's predicted band by :func:`~.acquisition.onto_band`'s Newton steps, or
the thin band would hold only a few of them) with multi-scale Gaussian perturbations of the best
in-band successes (TuRBO-style local candidates). With ``trust_region`` (SCBO) every candidate
is instead uniform in a box around the best in-band experiment whose side follows successes and
failures (:func:`trust_region_length`, a pure function of the history, so a resumed campaign
proposes what the uninterrupted one would have).

Batches and pending experiments (other reactors). By default (``ts_pending: band_ei``) an ask with
pending experiments goes to the band-first EI with fantasies of their outcomes instead
(:mod:`~autolab.optimizer.pending`): four draws from one posterior refined too little on four
parallel reactors (10/16 good hits against 13/16). What follows holds for a batch asked at once and
for ``ts_pending: exclude``: each point of a batch is the argmax of its own independent draw.
Conditioning the draw on fantasized outcomes of the pending experiments would not change it:
drawing the pending outcomes and then the candidates from the conditioned posterior is drawing from
the joint posterior (the tower rule), so TS is already "aware" of them in distribution. What is
left is that two draws may pick the same region; candidates within :data:`EXCLUSION_RADIUS` of a
pending or already chosen point are therefore excluded (that region is being tested already).

Everything is a pure function of the model, the data, the pending points and the seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from linear_operator.utils.warnings import NumericalWarning
from numpy.typing import NDArray
from torch import Tensor

from autolab.objective import ObjectiveSpec, Target
from autolab.optimizer.acquisition import log_p_band, onto_band, rest_value
from autolab.optimizer.base import derive_seed
from autolab.optimizer.design import feasible_mask, random_design
from autolab.optimizer.steps import improves
from autolab.space import ParameterSpace

#: Unit-cube distance within which a candidate counts as a near-duplicate of a pending or
#: already chosen point (the Gaussian perturbation scale of the acquisition's local starts).
EXCLUSION_RADIUS = 0.05

#: Range of the local candidates' perturbation sd (unit cube), drawn log-uniformly per candidate:
#: small steps refine an in-band point, large ones reach the band elsewhere.
LOCAL_SIGMA_RANGE = (0.02, 0.2)

#: Number of best in-band successes (by posterior mean score) whose neighbourhood is sampled.
N_ANCHORS = 3

#: Trust region (TuRBO defaults, Eriksson et al. 2019): initial, largest and smallest side of
#: the box (unit cube), and successes that double it (what counts as one: :func:`improves`).
TR_LENGTH_INIT = 0.8
TR_LENGTH_MAX = 1.6
TR_LENGTH_MIN = 0.5**7
TR_SUCCESS_TOL = 3


#: ``BotorchSettings.acquisition`` -> whether the next model-based point is a Thompson sample,
#: given which successes were in band and whether the objective has a target band at all.
#: ``band_ei_then_ts`` switches once the band is found; an objective without a target has no
#: band to crawl along (the case Thompson sampling was chosen for), so it keeps the EI.
THOMPSON_WHEN: dict[str, Callable[[Tensor, bool], bool]] = {
    "band_ei": lambda in_band_ok, has_target: False,
    "ts": lambda in_band_ok, has_target: True,
    "band_ei_then_ts": lambda in_band_ok, has_target: has_target and bool(in_band_ok.any()),
}


def joint_draws(model: Any, X: Tensor, n: int) -> Tensor:
    """``n`` joint posterior draws of every output at ``X``, shape ``(n, len(X), outputs)``.

    The outputs of a model list are independent GPs, so each is drawn on its own: one
    ``len(X)``-sized Cholesky per output instead of one of ``outputs`` times that size. Joint
    draws over near-duplicate points need a little jitter, which linear_operator adds and
    reports; the draws are still exact enough, so that warning is silenced.
    """
    subs = list(getattr(model, "models", []))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumericalWarning)
        if not subs:
            out: Tensor = model.posterior(X).rsample(torch.Size([n]))
            return out
        return torch.cat([sub.posterior(X).rsample(torch.Size([n])) for sub in subs], dim=-1)


def trust_region_length(in_band_rest: Sequence[float | None], dim: int, *,
                        length_init: float = TR_LENGTH_INIT) -> float | None:
    """Side of the trust region after the history ``in_band_rest`` (TuRBO's update rule).

    Args:
        in_band_rest: Per experiment in order, its measured non-target score if it was a
            success in every band and constraint, else ``None`` (failed or out of band).
        dim: Dimension of the space (TuRBO's failure tolerance is ``max(4, dim)``).
        length_init: Side of the first box and of every restart
            (``BotorchSettings.trust_region_init``).

    Returns:
        ``None`` before the first in-band experiment; then the side, which starts at
        ``length_init``, doubles after :data:`TR_SUCCESS_TOL` improvements in a row,
        halves after ``max(4, dim)`` experiments in a row that did not improve the best in-band
        score, and restarts at the initial side once it falls below :data:`TR_LENGTH_MIN`.
    """
    fail_tol = max(4, dim)
    best: float | None = None
    length = length_init
    wins = losses = 0
    for value in in_band_rest:
        if best is None:
            best = value
            continue
        if improves(value, best):
            best, wins, losses = value, wins + 1, 0
        else:
            wins, losses = 0, losses + 1
        if wins >= TR_SUCCESS_TOL:
            length, wins = min(2.0 * length, TR_LENGTH_MAX), 0
        elif losses >= fail_tol:
            length, losses = length / 2.0, 0
        if length < TR_LENGTH_MIN:
            length = length_init
    return None if best is None else length


def uses_thompson(acquisition: str, in_band_ok: Tensor, spec: ObjectiveSpec) -> bool:
    """Whether ``BotorchSettings.acquisition`` asks for Thompson sampling now.

    Args:
        acquisition: The setting.
        in_band_ok: Which successes met every band and constraint as measured.
        spec: The objective (whether it has a :class:`~autolab.objective.Target`).
    """
    has_target = any(isinstance(term, Target) for term in spec.terms)
    return THOMPSON_WHEN[acquisition](in_band_ok, has_target)


def margins(spec: ObjectiveSpec, Z: Tensor, has_feasibility: bool, *,
            bands: bool = True) -> Tensor:
    """How far draws ``Z`` are inside each condition of a success (``(..., k)``, >= 0 holds).

    One column per outcome constraint (minus its violation), per band (the distance to the
    band's nearer edge, in tolerances; left out with ``bands=False``) and, with
    ``has_feasibility``, the feasibility GP's latent label.
    """
    m = len(spec.outcome_names)
    Y = Z[..., :m]
    cols = [-spec.violations_tensor(Y)]
    for t in spec.terms:
        if bands and isinstance(t, Target):
            dev = (Y[..., spec.outcome_names.index(t.outcome)] - t.value).abs()
            cols.append(((t.tolerance - dev) / t.tolerance).unsqueeze(-1))
    if has_feasibility:
        cols.append(Z[..., m : m + 1])
    return torch.cat(cols, dim=-1)


def _violation(spec: ObjectiveSpec, Z: Tensor, has_feasibility: bool, *,
               bands: bool = True) -> Tensor:
    """Total violation of bands (in tolerances), constraints and feasibility; 0 where all hold.

    ``bands=False`` leaves the bands out (:func:`marginal_band_scores` takes them in expectation).
    """
    return (-margins(spec, Z, has_feasibility, bands=bands)).clamp_min(0.0).sum(dim=-1)


def sample_scores(spec: ObjectiveSpec, Z: Tensor, has_feasibility: bool,
                  floor: Tensor | None = None) -> Tensor:
    """Constrained Thompson scores of draws ``Z`` (``(..., outputs)`` -> ``(...)``).

    A candidate that meets every band and constraint (and does not fail) in a draw scores its
    non-target score, which is always above the score of any candidate that does not; those
    score minus their total violation, below every feasible score. So the argmax over a draw's
    candidates is the best feasible one, or else the least violating one.

    Args:
        spec: The objective.
        Z: Draws of every output, ``(..., outputs)``.
        has_feasibility: The last output is the feasibility GP.
        floor: What a violating draw scores below (:func:`score_floor`); ``None``: that of
            ``Z`` itself. A continuous search (:mod:`~autolab.optimizer.continuous`) fixes it
            once, so that one draw's score is one function of the point.
    """
    viol = _violation(spec, Z, has_feasibility)
    rest = rest_value(spec, Z[..., : len(spec.outcome_names)])
    if floor is None:
        floor = _floor_below(rest)
    return torch.where(viol <= 0, rest, floor - viol)


#: Softness of the improvement in :func:`marginal_band_scores` (score units: 0.1 = 1 % QY with
#: ``Maximize(qy, scale=0.1)``), so that a draw in which no candidate improves still ranks them.
IMPROVEMENT_SOFTNESS = 0.1


def marginal_band_scores(spec: ObjectiveSpec, Z: Tensor, log_p: Tensor, has_feasibility: bool,
                         incumbent: float) -> Tensor:
    """Scores with the band taken in expectation (``BotorchSettings.ts_band: probability``).

    Why: the plain rule (:func:`sample_scores`) gambles on the band inside the draw, so over a
    thousand candidates the argmax is often one whose PL draw fell in band by luck: along the
    default's climb on the design set 38 % of the proposals had a band probability below 0.5
    and brought 1 of 29 good hits. Here only the non-target outcomes are drawn; each candidate
    scores ``log P(band) + log softplus-improvement`` of its drawn non-target score over
    ``incumbent``, i.e. the expected improvement of that draw over the band's uncertainty (the
    outcomes are independent GPs, so the band probability is the PL marginal's). Measured
    (docs/benchmarks.md, "Ninth round"): more of the climb lands in band (61 against 51 %), but
    the draws stay nearer the known band and no faster to a good hit, so it is not the default.

    Args:
        spec: The objective.
        Z: Draws of every output, ``(..., N, outputs)``.
        log_p: Marginal log band probability per candidate, ``(N,)`` (:func:`log_p_band`).
        has_feasibility: The last output is the feasibility GP.
        incumbent: The non-target score to improve on (:func:`~.acquisition.incumbent_rest`).

    Returns:
        ``(..., N)``: candidates whose draw breaks an outcome constraint or fails score below
        every other, least violation first.
    """
    m = len(spec.outcome_names)
    tau = IMPROVEMENT_SOFTNESS
    gain = tau * torch.nn.functional.softplus((rest_value(spec, Z[..., :m]) - incumbent) / tau)
    value = log_p + gain.clamp_min(1e-300).log()
    viol = _violation(spec, Z, has_feasibility, bands=False)
    return torch.where(viol <= 0, value, _floor_below(value) - viol)


def score_floor(spec: ObjectiveSpec, Z: Tensor) -> Tensor:
    """One below the lowest non-target score among draws ``Z``: violating draws score below it."""
    return _floor_below(rest_value(spec, Z[..., : len(spec.outcome_names)]))


def _floor_below(rest: Tensor) -> Tensor:
    """One below the lowest of the non-target scores ``rest`` (0 when there are none)."""
    return rest.min() - 1.0 if rest.numel() else rest.new_zeros(())


def anchor_points(spec: ObjectiveSpec, model: Any, X_ok: Tensor, in_band_ok: Tensor) -> Tensor:
    """The up to :data:`N_ANCHORS` best successes: in band first, by posterior mean score.

    Before anything is in band: the successes whose posterior mean is nearest the band.
    """
    if X_ok.shape[0] == 0:
        return X_ok
    with torch.no_grad():
        mean = model.posterior(X_ok).mean[..., : len(spec.outcome_names)]
    if bool(in_band_ok.any()):
        key = rest_value(spec, mean).masked_fill(~in_band_ok, -math.inf)
    else:
        key = -_violation(spec, mean, False)
    order = torch.argsort(key, descending=True)[: min(N_ANCHORS, X_ok.shape[0])]
    return X_ok[order]


def _local(space: ParameterSpace, anchors: NDArray[np.float64], n: int, seed: int,
           box: tuple[NDArray[np.float64], NDArray[np.float64]] | None) -> NDArray[np.float64]:
    """``n`` candidates near the anchors: multi-scale Gaussian steps, or uniform in ``box``."""
    if n == 0 or anchors.shape[0] == 0:
        return np.zeros((0, space.dim))
    rng = np.random.default_rng(seed)
    if box is not None:
        lo, hi = box
        pts = lo + (hi - lo) * rng.random((n, space.dim))
    else:
        lo_s, hi_s = LOCAL_SIGMA_RANGE
        sigma = np.exp(rng.uniform(math.log(lo_s), math.log(hi_s), size=(n, 1)))
        base = anchors[np.arange(n) % anchors.shape[0]]
        pts = np.clip(base + sigma * rng.standard_normal(base.shape), 0.0, 1.0)
    return pts[feasible_mask(space, pts)]


def candidate_set(space: ParameterSpace, model: Any, spec: ObjectiveSpec, anchors: Tensor, *,
                  seed: int, n: int, trust_length: float | None = None) -> Tensor:
    """The finite set a Thompson draw is maximized over (unit cube, at most ``n`` rows).

    Without a trust region: half uniform points of the space, half local candidates around the
    anchors (all uniform while there are no anchors). With one (SCBO): every candidate uniform
    in the trust region box around the first anchor. Half of the uniform points are
    moved onto the predicted band (:func:`~.acquisition.onto_band`; kept in the box).

    Args:
        space: The space (dimension, linear constraints).
        model: Fitted model list (outcomes in ``spec.outcome_names`` order first).
        spec: The objective.
        anchors: Best successes, ``(k, d)``; the first is the trust region's centre.
        seed: Seed of every random draw here.
        n: Size of the set.
        trust_length: Side of the trust region box, or ``None`` for the global set.
    """
    device = anchors.device
    a = anchors.detach().cpu().numpy()
    if trust_length is not None and a.shape[0]:
        box = (np.clip(a[0] - trust_length / 2, 0.0, 1.0),
               np.clip(a[0] + trust_length / 2, 0.0, 1.0))
        inside = _onto_band(space, model, spec, _local(space, a, n, derive_seed(seed, 1), box),
                            device=device, box=box)
        if inside.shape[0]:
            return torch.as_tensor(inside, dtype=torch.float64, device=device)
    local = _local(space, a, n // 2, derive_seed(seed, 1), None)
    uniform = random_design(space, derive_seed(seed, 2), n - local.shape[0])
    uniform = _onto_band(space, model, spec, uniform, device=device, box=None)
    return torch.as_tensor(np.concatenate([uniform, local]), dtype=torch.float64, device=device)


def _onto_band(space: ParameterSpace, model: Any, spec: ObjectiveSpec, u: NDArray[np.float64], *,
               device: torch.device, box: tuple[NDArray[np.float64], NDArray[np.float64]] | None
               ) -> NDArray[np.float64]:
    """Half of ``u`` moved onto the predicted band; with a box, clipped back into it."""
    with torch.enable_grad():
        moved = onto_band(space, model, spec, u, device=device, share=0.5)
    if box is None:
        return moved
    moved = np.clip(moved, box[0], box[1])
    return moved[feasible_mask(space, moved)]


def credible(spec: ObjectiveSpec, model: Any, X: Tensor, floor: float) -> Tensor:
    """The candidates whose marginal band probability is at least ``floor`` (all if none is).

    A draw's argmax over a thousand candidates favours those whose PL draw happened to fall in
    band although their mean lies outside it; a floor on ``P(band)`` keeps such long shots out
    of the set (``BotorchSettings.ts_band_floor``).
    """
    if floor <= 0.0:
        return X
    with torch.no_grad():
        keep = _log_p_band_at(spec, model, X) >= math.log(floor)
    return X[keep] if bool(keep.any()) else X


def near(X: Tensor, points: Tensor | None) -> Tensor:
    """Which rows of ``X`` lie within :data:`EXCLUSION_RADIUS` of any of ``points``."""
    if points is None or points.shape[0] == 0:
        return torch.zeros(X.shape[0], dtype=torch.bool, device=X.device)
    return (torch.cdist(X, points) < EXCLUSION_RADIUS).any(dim=-1)


def thompson_select(spec: ObjectiveSpec, model: Any, X: Tensor, n: int, *, seed: int,
                    has_feasibility: bool, X_pending: Tensor | None,
                    temper: float = 1.0, incumbent: float | None = None) -> Tensor:
    """``n`` points of the candidate set ``X``, each the argmax of its own posterior draw.

    Candidates within :data:`EXCLUSION_RADIUS` of a pending point or of a point chosen earlier
    in the batch are skipped (unless every candidate is that close).

    Args:
        spec: The objective.
        model: Fitted model list (outcomes, then feasibility if ``has_feasibility``).
        X: Candidates, ``(N, d)``.
        n: Number of points.
        seed: Seed of the draws.
        has_feasibility: The model's last output is the feasibility GP.
        X_pending: Pending points ``(p, d)`` or ``None``.
        temper: Scale of each draw's deviation from the posterior mean
            (``BotorchSettings.ts_temper``; 1: plain Thompson sampling, 0: the mean).
        incumbent: With a value, the band is taken in expectation
            (:func:`marginal_band_scores`, ``BotorchSettings.ts_band: probability``) and this is
            the non-target score to improve on; ``None``: the band is drawn
            (:func:`sample_scores`).

    Returns:
        ``(n, d)``.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        Z = joint_draws(model, X, n)
        if temper != 1.0:
            mean = model.posterior(X).mean
            Z = mean + temper * (Z - mean)
        if incumbent is None:
            scores = sample_scores(spec, Z, has_feasibility)  # (n, N)
        else:
            scores = marginal_band_scores(spec, Z, _log_p_band_at(spec, model, X),
                                          has_feasibility, incumbent)
    taken = X_pending
    chosen = []
    for j in range(n):
        blocked = near(X, taken)
        row = scores[j].masked_fill(blocked, -math.inf) if not bool(blocked.all()) else scores[j]
        x = X[int(torch.argmax(row))].unsqueeze(0)
        chosen.append(x)
        taken = x if taken is None else torch.cat([taken, x])
    return torch.cat(chosen)


def _log_p_band_at(spec: ObjectiveSpec, model: Any, X: Tensor) -> Tensor:
    """Marginal log probability of every band at ``X`` under ``model``'s posterior, ``(N,)``."""
    m = len(spec.outcome_names)
    post = model.posterior(X)
    mean, sd = post.mean[..., :m], post.variance[..., :m].clamp_min(0.0).sqrt()
    return log_p_band(spec, mean, sd)
