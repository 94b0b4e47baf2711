"""The Bayesian optimizer: GP surrogates + a band-first acquisition, behind the ask/tell API.

One :meth:`BotorchOptimizer.ask`:

1. With a prior (``outcome_prior=``) and nothing told yet: the prior's start point (the middle of
   its predicted band by default; ``prior_start`` may take its best point instead, or spread
   several along the band: :mod:`~autolab.optimizer.prior_start`). Otherwise, while fewer than
   ``n_init`` experiments are done or pending (reused successes count) or fewer than two succeeded
   (one with a prior), the next points of a seeded, scrambled, constraint-filtered Sobol sequence.
2. Otherwise: map conditions to the unit cube, fit one GP per outcome on the successes (reused
   data from earlier campaigns on the same reactor included; stated 1-sigma as known noise; the
   prior as a learned-weight mean) and (once something failed) a feasibility GP on all
   experiments (:mod:`~autolab.optimizer.models`), build the acquisition
   (:mod:`~autolab.optimizer.acquisition`: closed-form band-first log EI in scalar mode, qLogNEHVI
   in Pareto mode), and maximize it with ``optimize_acqf`` (sequential greedy for batches, pending
   points kept away): box-bounded L-BFGS-B first, and only if a candidate violates the space's
   linear constraints again with them (SLSQP).
   With ``acquisition: ts`` (or ``band_ei_then_ts``, the default, once something is in band and
   the objective has a target) the scalar-mode points are constrained Thompson samples over a
   candidate set instead (:mod:`~autolab.optimizer.thompson`); while other experiments are
   pending, ``ts_pending: band_ei`` (the default) hands the ask back to the band-first EI with
   fantasies of their outcomes.

:meth:`BotorchOptimizer.forecast` (:mod:`~autolab.optimizer.forecast`) reads the same fitted
model after a ``tell``; the fit is cached, so the next ``ask`` does not fit again.

Models are refit whenever the data change, and every random draw (Sobol scrambling, raw samples,
quasi-MC base samples, fit restarts) is seeded from ``(seed, observations, pending, reused)``
inside a forked torch RNG. A proposal is thus a pure function of settings, seed, data and pending
points, and a fresh optimizer re-told the same journal (with its stated sigmas) proposes exactly
what the original would have.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.exceptions.warnings import OptimizationWarning
from botorch.optim.initializers import initialize_q_batch
from botorch.optim.optimize import optimize_acqf
from linear_operator.utils.warnings import NumericalWarning
from numpy.typing import NDArray
from pydantic import ValidationError

from autolab.exceptions import OptimizerError
from autolab.objective import ObjectiveSpec, Target
from autolab.optimizer.acquisition import (
    BandFirstLogEI,
    build_acquisition,
    incumbent_rest,
    onto_band,
    rest_value,
)
from autolab.optimizer.band_spread import SpreadState, spread_select, spreads
from autolab.optimizer.base import BaseOptimizer, derive_seed, resolve_device
from autolab.optimizer.believer import draw_model
from autolab.optimizer.centre import centre_candidates
from autolab.optimizer.continuous import continuous_select
from autolab.optimizer.design import feasible_mask, random_design, sobol_design
from autolab.optimizer.escape import EscapeContext, escape, stall_length
from autolab.optimizer.exploration import band_slack
from autolab.optimizer.forecast import Forecast, Reading, compute_forecast, repeat_advice
from autolab.optimizer.gp_design import GPDesign, hyperprior_for
from autolab.optimizer.greedy import greedy_now, greedy_select
from autolab.optimizer.models import build_model_list, hyperparameters
from autolab.optimizer.prior import (
    OutcomePrior,
    PriorSurrogate,
    check_prior,
    stated_spread,
)
from autolab.optimizer.prior_guard import guard_models
from autolab.optimizer.prior_outcomes import band_outcomes, prior_outcomes
from autolab.optimizer.prior_start import prior_starts, start_count
from autolab.optimizer.settings import BotorchSettings
from autolab.optimizer.steps import checked_steps, step_history
from autolab.optimizer.thompson import (
    anchor_points,
    candidate_set,
    credible,
    joint_draws,
    thompson_select,
    trust_region_length,
    uses_thompson,
)
from autolab.space import ParameterSpace

#: Posterior samples behind each recorded prediction (mean and sd of the score).
PREDICTION_SAMPLES = 256

#: Joint posterior draws behind the forecast's good-hit probabilities (resolution 1/256).
FORECAST_DRAWS = 256


@dataclass(frozen=True)
class _Data:
    """Training tensors (unit cube): all experiments, success flags, successes' outcomes.

    ``Yvar_ok`` holds each success's stated variance per outcome (NaN where none was stated);
    ``in_band_ok`` marks successes that met every band and outcome constraint as measured.
    """

    X_all: torch.Tensor
    ok: torch.Tensor
    Y_ok: torch.Tensor
    Yvar_ok: torch.Tensor
    in_band_ok: torch.Tensor

    @property
    def X_ok(self) -> torch.Tensor:  # noqa: N802 (BoTorch's naming of inputs)
        """Inputs of the successes."""
        return self.X_all[self.ok]


def outcome_designs(settings: BotorchSettings, spec: ObjectiveSpec,
                    input_names: Sequence[str] = ()) -> list[GPDesign]:
    """One GP structure per outcome of ``spec``, in column order.

    ``settings.mean`` goes to the outcomes that ``settings.mean_outcomes`` names, the constant
    mean to the others; ``settings.hyperprior`` gives each outcome its learned priors over the
    inputs ``input_names`` (:func:`~autolab.optimizer.gp_design.hyperprior_for`);
    ``settings.sparse_outcomes`` names the outcomes with the sparsity prior.

    Raises:
        ValueError: The hyperprior was learned on other inputs than ``input_names``.
    """
    targets = {t.outcome for t in spec.terms if isinstance(t, Target)}
    return [GPDesign(kernel=settings.kernel, input_warping=settings.input_warping,
                     mean=settings.mean if settings.mean_outcomes == "all" or name in targets
                     else "constant",
                     hyperprior=hyperprior_for(settings.hyperprior, name, input_names),
                     sparse=settings.sparse_outcomes == "all"
                     or (settings.sparse_outcomes == "non_targets" and name not in targets))
            for name in spec.outcome_names]


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (see ``BotorchSettings.cpu_threads``), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class BotorchOptimizer(BaseOptimizer):
    """Bayesian optimization with BoTorch for any space and any named outcomes.

    Args:
        space: The search space.
        objective: What to optimize (scalar score or Pareto mode, outcome constraints).
        seed: Seed of every random draw.
        extra_outcomes: Outcome names :meth:`tell` accepts and stores without modelling them.
        **settings: Fields of :class:`BotorchSettings`.

    Raises:
        OptimizerError: Unknown or invalid settings (the message names the field).
    """

    name: ClassVar[str] = "botorch"

    def __init__(
        self,
        space: ParameterSpace,
        objective: ObjectiveSpec,
        seed: int = 0,
        *,
        extra_outcomes: Sequence[str] = (),
        outcome_prior: OutcomePrior | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(space, objective, seed, extra_outcomes=extra_outcomes)
        self.settings = _parse_settings(_for_mode(settings, objective))
        _check_acquisition(self.settings, objective)
        _check_hyperprior(self.settings, space, objective, outcome_prior)
        self.device = resolve_device(self.settings.device)
        self._record: dict[str, Any] | None = None
        if outcome_prior is not None:
            check_prior(outcome_prior, space, objective)
            if self.settings.input_warping:
                # the prior is a function of the unwarped unit cube, the GP's mean and kernel
                # see warped inputs
                raise OptimizerError("settings.input_warping cannot be combined with a prior "
                                     "(outcome_prior / prior: twin): drop one of them")
            if self.settings.mean != "constant":
                # the prior's learned-weight mean takes the mean module's place
                raise OptimizerError(f"settings.mean {self.settings.mean!r} cannot be combined "
                                     "with a prior (outcome_prior / prior: twin): the prior is "
                                     "the GPs' mean; drop one of them")
            if self.settings.prior_outcomes != "all" and not band_outcomes(objective):
                # ``band`` rules keep the prior for the target's outcomes: there are none
                raise OptimizerError(
                    f"settings.prior_outcomes {self.settings.prior_outcomes!r} keeps the prior "
                    "for the objective's target outcomes, and this objective has no target "
                    "term: use prior_outcomes 'all' or add a target")
        self.settings = _resolve_prior_settings(self.settings, outcome_prior)
        if outcome_prior is not None and self.settings.prior_spread == "stated":
            stated_spread(outcome_prior)  # refuse a prior that states none, now
        self._prior = outcome_prior
        self._prior_surrogate: PriorSurrogate | None = None
        self._fit_cache: tuple[Any, tuple[Any, _Data, bool, int]] | None = None
        #: Step id per told observation (``None``: a step of its own; :mod:`.steps`).
        self._steps: list[int | None] = []
        #: Seconds the last :meth:`ask` took (for the tracker's "proposal time").
        self.last_ask_seconds = 0.0
        #: The model's prediction for each point of the last model-based ask (empty for the
        #: initial design): see :meth:`_predict`. Not part of the state: it is recomputable.
        self.last_predictions: list[dict[str, Any]] = []

    def tell(
        self,
        conditions: Sequence[Mapping[str, float]],
        outcomes: Sequence[Mapping[str, float] | None],
        outcome_sd: Sequence[Mapping[str, float] | None] | None = None,
        *,
        steps: Sequence[int | None] | None = None,
    ) -> None:
        """Record finished experiments; see :meth:`BaseOptimizer.tell`.

        Args:
            conditions: As :meth:`BaseOptimizer.tell`.
            outcomes: As :meth:`BaseOptimizer.tell`.
            outcome_sd: As :meth:`BaseOptimizer.tell`.
            steps: Optional, aligned with ``outcomes``: the step id of each observation
                (readings of one dynamic trajectory share one; ``None``: a step of its own).
                The trust region counts a step once (:mod:`~autolab.optimizer.steps`).

        Raises:
            OptimizerError: As :meth:`BaseOptimizer.tell`, or ``steps`` not aligned or not
                non-negative ints.
        """
        ids = checked_steps(steps, len(outcomes), "tell(steps=...)")
        super().tell(conditions, outcomes, outcome_sd)
        self._steps.extend(ids)

    @property
    def steps(self) -> tuple[int | None, ...]:
        """Step id of each told observation, aligned with :attr:`observations`."""
        return tuple(self._steps)

    def state_dict(self) -> dict[str, Any]:
        """As :meth:`BaseOptimizer.state_dict`, with the step ids when any step groups readings."""
        state = super().state_dict()
        if any(s is not None for s in self._steps):
            state["steps"] = list(self._steps)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """As :meth:`BaseOptimizer.load_state_dict`, with the step ids."""
        self._steps = []
        super().load_state_dict(state)
        self._adopt_steps(state)

    def _adopt_steps(self, state: Mapping[str, Any]) -> None:
        """The saved step ids (a state without them: each observation its own step)."""
        self._steps = checked_steps(state.get("steps"), len(self._observations),
                                    "state['steps']")

    @property
    def n_init(self) -> int:
        """Size of the initial Sobol design."""
        return self.settings.n_init or max(self.space.dim, 4)

    def ask(
        self, n: int = 1, pending: Sequence[Mapping[str, float]] | None = None
    ) -> list[dict[str, float]]:
        """Propose ``n`` conditions (physical units, inside bounds and linear constraints).

        Args:
            n: Batch size.
            pending: Conditions already proposed and still running; not proposed again.

        Returns:
            ``n`` dicts of parameter name -> value.

        Raises:
            OptimizerError: ``n`` is not a positive int, or the constraints leave no volume.
            ConditionsError: A pending point lies outside the space.
        """
        t0 = time.perf_counter()
        checked = self._check_pending(n, pending)
        if self.settings.prior != "none" and self._prior is None:
            # Settings alone may be validated without the prior object (campaign files,
            # benchmark specs); proposing without it would silently be a cold start.
            raise OptimizerError(
                f"settings.prior is {self.settings.prior!r} but no outcome_prior was given "
                "(build one with autolab.prior.twin_prior)")
        n_done = len(self._observations)
        self.last_predictions = []
        first = self._prior_first(n, checked)
        if first is not None:
            u = first
        elif self._in_initial_design(n_done + len(checked)):
            u = sobol_design(self.space, self.seed, n_done + len(checked), n)
        else:
            with _threads(self.settings.cpu_threads):
                u = self._ask_model(n, checked)
        out = [self.space.check(p) for p in self.space.from_unit(u)]
        self.last_ask_seconds = time.perf_counter() - t0
        return out

    def _prior_first(self, n: int, pending: list[dict[str, float]]) -> NDArray[np.float64] | None:
        """With a prior: its start points (``prior_start``), the k-th at the k-th experiment.

        Only before anything is reused and while the whole batch fits among the start points
        (experiments told or running count); later points come from the model, whose prior
        mean already carries what the prior knows.
        """
        if self._prior is None or self._reused:
            return None
        n_started = len(self._observations) + len(pending)
        rule, k = self.settings.prior_start, self.settings.prior_start_n
        if n_started + n > start_count(rule, k):
            return None
        starts = prior_starts(self._prior, self.space, self.objective,
                              derive_seed(self.seed, 4), rule=rule, n=k)
        if starts is None or n_started + n > starts.shape[0]:
            return None
        return starts[n_started : n_started + n]

    def _in_initial_design(self, n_started: int) -> bool:
        """Whether the next point still comes from the Sobol design.

        Reused successes from the same reactor count towards the design: the model already
        knows that much of the reactor, so a campaign with rich earlier data starts modelling at
        once. With a prior, the model starts after the first success (its prior mean makes one
        point informative) unless ``n_init`` is set explicitly.
        """
        n_ok = sum(not o.failed for o in (*self._observations, *self._reused))
        if self._prior is not None and self.settings.n_init is None:
            return n_ok < 1
        n_reused_ok = sum(not o.failed for o in self._reused)
        return n_started + n_reused_ok < self.n_init or n_ok < 2

    def _data(self) -> _Data:
        """Training tensors of everything known: reused data first, then this campaign's."""
        spec, dev, f64 = self.objective, self.device, torch.float64
        obs = [*self._reused, *self._observations]
        X_all = torch.tensor(self.space.to_unit([o.conditions for o in obs]), dtype=f64, device=dev)
        ok = torch.tensor([not o.failed for o in obs], device=dev)
        good = [o for o in obs if o.outcomes is not None]
        Y_ok = torch.tensor([[o.outcomes[k] for k in spec.outcome_names] for o in good
                             if o.outcomes is not None], dtype=f64, device=dev)
        nan = float("nan")
        Yvar = torch.tensor([[(o.outcome_sd or {}).get(k, nan) ** 2 for k in spec.outcome_names]
                             for o in good], dtype=f64, device=dev)
        incumbent = [o.in_band and o.feasible for o in good]
        return _Data(X_all=X_all, ok=ok, Y_ok=Y_ok, Yvar_ok=Yvar,
                     in_band_ok=torch.tensor(incumbent, dtype=torch.bool, device=dev))

    def _fit(self, n_pending: int) -> tuple[Any, _Data, bool, int]:
        """The models fitted on everything known: (model, data, has_feasibility, seed).

        A fit is a pure function of the data, the settings and ``n_pending``, so the last one is
        kept and reused while they have not changed (:meth:`forecast` after a ``tell`` fits the
        model that the next ``ask`` needs). Call inside a forked torch RNG.
        """
        key = (tuple(id(o) for o in (*self._reused, *self._observations)), n_pending,
               self.settings, self._prior)
        if self._fit_cache is not None and self._fit_cache[0] == key:
            return self._fit_cache[1]
        fitted = self._fit_now(n_pending)
        self._fit_cache = (key, fitted)
        return fitted

    def _fit_now(self, n_pending: int) -> tuple[Any, _Data, bool, int]:
        spec = self.objective
        data = self._data()
        has_feas = self.settings.learn_feasibility and not bool(data.ok.all())
        seed = derive_seed(self.seed, len(self._observations), n_pending, len(self._reused))
        torch.manual_seed(seed)
        prior = self._model_prior(data)
        model = build_model_list(
            data.X_ok, data.Y_ok, data.X_all if has_feas else None, data.ok,
            Yvar_ok=data.Yvar_ok if self.settings.known_noise else None,
            prior=prior, names=spec.outcome_names,
            maxiter=self.settings.fit_maxiter, seed=seed,
            design=outcome_designs(self.settings, spec, self.space.names))
        choices = None
        if prior is not None and self.settings.prior_guard == "loo":
            cold = build_model_list(
                data.X_ok, data.Y_ok, Yvar_ok=data.Yvar_ok if self.settings.known_noise else None,
                maxiter=self.settings.fit_maxiter, seed=seed,
                design=GPDesign(kernel=self.settings.kernel))
            # with every outcome on the prior (``all``) the guard scores every outcome, as before
            guarded = None if self.settings.prior_outcomes == "all" else prior.gps
            model, choices = guard_models(model, cold, spec.outcome_names, data.X_ok.shape[0],
                                          guarded=guarded)
        names = [*spec.outcome_names, *(["feasibility"] if has_feas else [])]
        self._record = {"n_observations": len(self._observations), "n_reused": len(self._reused),
                        "seed": seed, "hyperparameters": hyperparameters(model, names)}
        if choices is not None:
            self._record["prior_guard"] = {c.outcome: c.record() for c in choices}
        return model, data, has_feas, seed

    def _ask_model(self, n: int, pending: list[dict[str, float]]) -> NDArray[np.float64]:
        dev, f64 = self.device, torch.float64
        X_pending = (
            torch.tensor(self.space.to_unit(pending), dtype=f64, device=dev) if pending else None
        )
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            model, data, has_feas, seed = self._fit(len(pending))
            # Reseed after the (possibly cached) fit, so what follows draws the same numbers
            # whether or not this ask fitted the model itself.
            torch.manual_seed(derive_seed(seed, 1))
            if self._spreads(0 if X_pending is None else X_pending.shape[0]):
                cand = self._spread(model, data, has_feas, seed, n=n, X_pending=X_pending)
            elif uses_thompson(self.settings.acquisition, data.in_band_ok, self.objective) and (
                    X_pending is None or self.settings.ts_pending != "band_ei"):
                cand = self._thompson(model, data, has_feas, seed, n=n, X_pending=X_pending)
            else:
                acqf = self._acquisition(model, data, has_feas, seed, X_pending)
                cand = self._maximize(acqf, n, seed, data.X_ok)
            self.last_predictions = self._predict(model, cand)
        guard = (self._record or {}).get("prior_guard")
        if guard:  # which model of each outcome proposed, journaled with the prediction
            for p in self.last_predictions:
                p["prior_guard"] = {name: c["model"] for name, c in guard.items()}
        return _repair(self.space, cand.cpu().numpy().astype(np.float64))

    def _spreads(self, n_pending: int) -> bool:
        """Whether this ask spreads along the band (``settings.band_spread``)."""
        if self.settings.band_spread == "off":
            return False
        guard = (self._record or {}).get("prior_guard") or {}
        return spreads(self.settings.band_spread, SpreadState(
            in_band=[o.outcomes is not None and o.in_band and o.feasible
                     for o in self._observations],
            guard={name: c["model"] for name, c in guard.items()},
            climb_outcomes=frozenset(self.objective.outcome_names) - band_outcomes(
                self.objective),
            n=self.settings.band_spread_n, pending=n_pending))

    def _spread(self, model: Any, data: _Data, has_feas: bool, seed: int, *, n: int,
                X_pending: torch.Tensor | None) -> torch.Tensor:
        """``n`` points spread along the band, each away from the data and the earlier ones."""
        seen = data.X_all if X_pending is None else torch.cat([data.X_all, X_pending])
        picks: list[torch.Tensor] = []
        for k in range(n):
            pick = spread_select(self.space, self.objective, model, torch.cat([seen, *picks]),
                                 seed=derive_seed(seed, 11, k), has_feasibility=has_feas)
            picks.append(pick)
        return torch.cat(picks)

    def _acquisition(self, model: Any, data: _Data, has_feas: bool, seed: int,
                     X_pending: torch.Tensor | None) -> AcquisitionFunction:
        """The acquisition of one ask, from the fitted model and the settings."""
        spec = self.objective
        feas_util = None
        if spec.mode == "pareto":
            utils = spec.utilities_tensor(data.Y_ok)
            feasible = (spec.violations_tensor(data.Y_ok) <= 0).all(dim=-1)
            feas_util = utils[feasible] if bool(feasible.any()) else utils
        return build_acquisition(
            spec, model, data.X_ok, has_feasibility=has_feas, X_pending=X_pending,
            mc_samples=self.settings.mc_samples, seed=seed, feasible_utilities=feas_util,
            incumbent=_improvement_bar(
                incumbent_rest(spec, model, data.X_ok, data.in_band_ok),
                self.settings.min_improvement),
            band_weight=self.settings.band_weight,
            band_slack=band_slack(self.settings.band_slack_tolerances,
                                  self.settings.band_slack_sd, self.settings.band_slack_until,
                                  len(self._observations)),
        )

    def _thompson(self, model: Any, data: _Data, has_feas: bool, seed: int, *, n: int,
                  X_pending: torch.Tensor | None) -> torch.Tensor:
        """``n`` points by constrained Thompson sampling (:mod:`~autolab.optimizer.thompson`)."""
        spec = self.objective
        length = stall = None
        if self.settings.trust_region:
            history = [float(rest_value(spec, spec.as_tensor(o.outcomes)))
                       if o.outcomes is not None and o.in_band and o.feasible else None
                       for o in (*self._reused, *self._observations)]
            history = step_history(history, [*([None] * len(self._reused)), *self._steps])
            length = trust_region_length(history, self.space.dim,
                                         length_init=self.settings.trust_region_init)
            stall = stall_length(history)
        anchors = anchor_points(spec, model, data.X_ok, centre_candidates(
            self.settings.trust_region_centre, spec, model, data.X_ok, data.in_band_ok))
        X = candidate_set(self.space, model, spec, anchors, seed=derive_seed(seed, 7),
                          n=self.settings.ts_candidates, trust_length=length)
        seen = data.X_all if X_pending is None else torch.cat([data.X_all, X_pending])
        if stall is not None and self.settings.ts_escape != "none":
            out = escape(self.settings.ts_escape, EscapeContext(
                space=self.space, spec=spec, model=model, X_box=X, X_ok=data.X_ok,
                in_band_ok=data.in_band_ok, X_seen=seen, stall=stall,
                after=self.settings.ts_escape_after, seed=derive_seed(seed, 9),
                length=length if length is not None else self.settings.trust_region_init))
            if out is not None and out.point is not None:
                return self._then_draws(out.point, model, X, has_feas=has_feas, seed=seed,
                                        n=n, X_pending=X_pending,
                                        incumbent=self._band_incumbent(model, data))
            if out is not None and out.candidates is not None:
                X = out.candidates
        X = credible(spec, model, X, self.settings.ts_band_floor)
        if greedy_now(self.settings.ts_greedy_every, len(self._observations)):
            first = greedy_select(spec, model, X, has_feasibility=has_feas, X_seen=seen)
            return self._then_draws(first, model, X, has_feas=has_feas, seed=seed, n=n,
                                    X_pending=X_pending,
                                    incumbent=self._band_incumbent(model, data))
        if self.settings.ts_optimizer == "continuous":
            return continuous_select(spec, model, X, n, seed=derive_seed(seed, 8),
                                     has_feasibility=has_feas, X_pending=X_pending,
                                     space=self.space, restarts=self.settings.ts_restarts,
                                     temper=self.settings.ts_temper)
        return thompson_select(spec, draw_model(self.settings.ts_pending, model, X_pending), X,
                               n, seed=derive_seed(seed, 8), has_feasibility=has_feas,
                               X_pending=X_pending, temper=self.settings.ts_temper,
                               incumbent=self._band_incumbent(model, data))

    def _band_incumbent(self, model: Any, data: _Data) -> float | None:
        """What a Thompson draw improves on with ``ts_band: probability``; ``None``: band drawn.

        ``None`` too for an objective without non-target terms (nothing to improve: the draw
        rule is the only one).
        """
        if self.settings.ts_band != "probability":
            return None
        return incumbent_rest(self.objective, model, data.X_ok, data.in_band_ok)

    def _then_draws(self, first: torch.Tensor, model: Any, X: torch.Tensor, *, has_feas: bool,
                    seed: int, n: int, X_pending: torch.Tensor | None,
                    incumbent: float | None = None) -> torch.Tensor:
        """``first`` (a greedy or escape point), then ``n - 1`` Thompson draws over ``X``."""
        if n == 1:
            return first
        # the draws believe only the caller's pending points; ``first`` is excluded, like the
        # earlier picks of one Thompson batch, so an ask with nothing pending is the default's
        drawn = draw_model(self.settings.ts_pending, model, X_pending)
        excluded = first if X_pending is None else torch.cat([X_pending, first])
        rest = thompson_select(self.objective, drawn, X, n - 1, seed=derive_seed(seed, 8),
                               has_feasibility=has_feas, X_pending=excluded,
                               temper=self.settings.ts_temper, incumbent=incumbent)
        return torch.cat([first, rest])

    @property
    def prior(self) -> OutcomePrior | None:
        """The prior knowledge given at construction (``None``: a cold start)."""
        return self._prior

    def _model_prior(self, data: _Data) -> PriorSurrogate | None:
        """The prior of this fit: the outcomes ``settings.prior_outcomes`` keeps it for."""
        surrogate = self._surrogate()
        if surrogate is None or self.settings.prior_outcomes == "all":
            return surrogate
        return surrogate.only(prior_outcomes(self.settings.prior_outcomes, self.objective,
                                             bool(data.in_band_ok.any())))

    def _surrogate(self) -> PriorSurrogate | None:
        """The prior's smooth surrogate, fitted once (seeded by the optimizer's seed)."""
        if self._prior is None:
            return None
        if self._prior_surrogate is None:
            spread = (stated_spread(self._prior) if self.settings.prior_spread == "stated"
                      else None)
            self._prior_surrogate = PriorSurrogate(self._prior, self.space,
                                                   derive_seed(self.seed, 3),
                                                   outcomes=self.objective.outcome_names,
                                                   spread=spread)
        return self._prior_surrogate

    def forecast(
        self,
        *,
        thresholds: Mapping[str, float] | None = None,
        qy_fraction: float = 0.9,
        improve_by: float = 0.1,
        n_candidates: int = 512,
    ) -> Forecast | None:
        """The stopping forecast (:mod:`~autolab.optimizer.forecast`) after the last ``tell``.

        Without ``thresholds`` the probabilities and the count are mapped through the
        calibration fitted on the InP/ZnS reactor family (``FAMILY_RECALIBRATION``): for another
        problem pass ``thresholds`` or read ``p_spec_met_model``/``p_next_model`` (before the map).

        Args:
            thresholds: Outcome -> "good" threshold of maximized/minimized outcomes (e.g. a stop
                rule's ``{"qy": 0.35}``); ``None``: ``qy_fraction`` of the best in-band value of
                each maximized outcome, taken per joint posterior draw (``relative_good``).
            qy_fraction: See ``thresholds``.
            improve_by: Improvement of the non-target score terms asked about by
                ``p_improve`` (0.1 = 1 % QY with the default QY scale).
            n_candidates: Seeded Sobol candidates searched for ``p_next``/``p_improve``.

        Returns:
            The forecast, or ``None`` before the model has two successes to learn from.

        Raises:
            OptimizerError: A threshold names an outcome that is not maximized or minimized, or
                a number is out of range.
        """
        _check_forecast_args(self.objective, thresholds, qy_fraction, improve_by, n_candidates)
        if sum(not o.failed for o in (*self._reused, *self._observations)) < 2:
            return None
        with _threads(self.settings.cpu_threads), torch.random.fork_rng(
                devices=[self.device] if self.device.type == "cuda" else []):
            model, data, has_feas, seed = self._fit(0)
            with torch.no_grad():
                # The GPs cache their prediction solves on first use; make that first use the
                # one an ask makes (no-grad, at the successes), so a forecast leaves the next
                # proposal bit-for-bit what it is without one.
                model.posterior(data.X_ok)
            X = torch.cat([data.X_ok, self._forecast_candidates(model, data, seed, n_candidates)])
            m = len(self.objective.outcome_names)
            with torch.no_grad():
                post = model.posterior(X)
                mean, sd = post.mean[..., :m], post.variance[..., :m].clamp_min(0).sqrt()
                draws = feasible = None
                if not thresholds:
                    torch.manual_seed(derive_seed(seed, 5))
                    with warnings.catch_warnings():
                        # Joint draws over near-duplicate candidates need a little jitter, which
                        # linear_operator adds and reports; the draws are still exact enough.
                        warnings.simplefilter("ignore", NumericalWarning)
                        joint = joint_draws(model, X, FORECAST_DRAWS)
                    draws = joint[..., :m]
                    feasible = joint[..., m] > 0 if has_feas else None
            best = self.best()
            best_index = next((i for i, o in enumerate(self._observations) if o is best), None)
            best_row = None
            if best is not None and best.in_band:
                ok_rows = [o for o in (*self._reused, *self._observations) if not o.failed]
                best_row = next(i for i, o in enumerate(ok_rows) if o is best)
            incumbent = (incumbent_rest(self.objective, model, data.X_ok, data.in_band_ok)
                         if bool(data.in_band_ok.any()) else None)
            fc = compute_forecast(self.objective, mean, sd, best_row=best_row,
                                  best_index=best_index, incumbent=incumbent,
                                  thresholds=thresholds, qy_fraction=qy_fraction,
                                  improve_by=improve_by, draws=draws, feasible=feasible,
                                  experiments=len(self._observations),
                                  in_band_found=bool(data.in_band_ok.any()),
                                  design_done=not self._in_initial_design(
                                      len(self._observations)))
            advice = self._repeat_advice(sd[: data.X_ok.shape[0]])
        return replace(fc, repeat_index=advice[0], repeat_reason=advice[1])

    def _forecast_candidates(self, model: Any, data: _Data, seed: int, n: int) -> torch.Tensor:
        """Where the forecast looks for the next good hit (unit cube, ``(n + n // 2, d)``).

        ``n`` seeded uniform points of the space, half of them moved onto the predicted band
        (:func:`onto_band`), plus ``n // 2`` Gaussian perturbations of the in-band successes (of
        all successes while none is in band).
        A band of a few nm is a thin shell of the space, so uniform points alone rarely land in
        it; without the moved and local points each posterior draw's best in-band value, the
        yardstick of "good" (:func:`~autolab.optimizer.forecast.relative_good`), would be set by
        a handful of points and underestimated.
        """
        with torch.enable_grad():
            u = onto_band(self.space, model, self.objective,
                          random_design(self.space, derive_seed(seed, 2), n),
                          device=self.device, share=0.5)
        anchors = data.X_ok[data.in_band_ok] if bool(data.in_band_ok.any()) else data.X_ok
        local = _InitialConditions(self.space, derive_seed(seed, 6),
                                   anchors.cpu().numpy())._local(n // 2)
        return torch.tensor(np.concatenate([u, local]), dtype=torch.float64, device=self.device)

    def _repeat_advice(self, post_sd: torch.Tensor) -> tuple[int | None, str]:
        """:func:`~autolab.optimizer.forecast.repeat_advice` for the best and runner-up.

        Args:
            post_sd: Posterior sd of the latent outcomes at the successes (reused first).
        """
        ok_rows = [o for o in (*self._reused, *self._observations) if not o.failed]
        names = self.objective.outcome_names
        readings = []
        for row, o in enumerate(ok_rows):
            if o.reused or not o.in_band or o.outcomes is None:
                continue
            index = next(i for i, q in enumerate(self._observations) if q is o)
            readings.append(Reading(index=index, outcomes=o.outcomes,
                                    sigma=o.outcome_sd or {},
                                    post_sd={n: float(post_sd[row, k])
                                             for k, n in enumerate(names)}))
        if not readings:
            return None, ""
        readings.sort(key=lambda r: self.objective.rank_key(r.outcomes), reverse=True)
        return repeat_advice(self.objective, readings[0],
                             readings[1] if len(readings) > 1 else None)

    def _maximize(self, acqf: AcquisitionFunction, n: int, seed: int,
                  anchors: torch.Tensor) -> torch.Tensor:
        """Maximize the acquisition over the space; ``(n, d)`` unit-cube candidates.

        Box-only L-BFGS-B first: it converges in a few dozen iterations, where SLSQP on the joint
        restarts problem is still far off after 50. A lab's linear constraints cut a corner off
        the cube that rarely holds the optimum, so only when a candidate lands outside them is
        the search redone with them (SLSQP), from the same start points.
        """
        dev, f64 = self.device, torch.float64
        bounds = torch.stack([torch.zeros(self.space.dim, dtype=f64, device=dev),
                              torch.ones(self.space.dim, dtype=f64, device=dev)])
        ineq = [
            (torch.tensor(idx, dtype=torch.long, device=dev),
             torch.tensor(coefs, dtype=f64, device=dev), float(rhs))
            for idx, coefs, rhs in self.space.unit_constraints()
        ]

        def optimize(constraints: list[Any] | None) -> torch.Tensor:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizationWarning)
                cand, _ = optimize_acqf(
                    acqf, bounds=bounds, q=n,
                    num_restarts=self.settings.num_restarts,
                    raw_samples=self.settings.raw_samples,
                    inequality_constraints=constraints,
                    sequential=n > 1,
                    options={"maxiter": self.settings.maxiter, "seed": seed,
                             "batch_limit": self.settings.num_restarts},
                    # BoTorch types ic_generator with a positional signature it never uses.
                    ic_generator=_InitialConditions(  # type: ignore[arg-type]
                        self.space, seed, anchors.cpu().numpy(),
                        project=self.settings.band_projection),
                )
            return cand.detach()

        cand = optimize(None)
        if ineq and not bool(feasible_mask(self.space, cand.cpu().numpy()).all()):
            cand = optimize(ineq)
        return cand

    def _predict(self, model: Any, X: torch.Tensor) -> list[dict[str, Any]]:
        """The fitted model's belief about each candidate, for the model-fit plot.

        Args:
            model: The fitted model list (outcomes first, then feasibility if any).
            X: Candidates in the unit cube, shape ``(q, d)``.

        Returns:
            Per candidate: ``score_mean``/``score_sd`` of the scalar score over posterior
            samples, and ``outcomes``: name -> ``[mean, sd]``.
        """
        m = len(self.objective.outcome_names)
        with torch.no_grad():
            samples = model.posterior(X).rsample(torch.Size([PREDICTION_SAMPLES]))[..., :m]
            scores = self.objective.score_tensor(samples)  # (S, q)
        out = []
        for j in range(X.shape[0]):
            out.append({
                "score_mean": float(scores[:, j].mean()),
                "score_sd": float(scores[:, j].std()),
                "outcomes": {name: [float(samples[:, j, k].mean()), float(samples[:, j, k].std())]
                             for k, name in enumerate(self.objective.outcome_names)},
            })
        return out

    def _settings_dict(self) -> dict[str, Any]:
        return self.settings.model_dump(mode="json")

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **objects: Any) -> BotorchOptimizer:
        """As :meth:`BaseOptimizer.from_state`, with a state saved before Thompson sampling."""
        opt = super().from_state(
            {**state, "settings": _saved(state.get("settings", {}))}, **objects)
        opt._adopt_steps(state)
        return opt

    def _load_settings(self, settings: Mapping[str, Any]) -> None:
        self.settings = _resolve_prior_settings(
            _parse_settings(_for_mode(_saved(settings), self.objective)), self._prior)
        _check_acquisition(self.settings, self.objective)
        self.device = resolve_device(self.settings.device)

    def _model_record(self) -> dict[str, Any] | None:
        return self._record


class _InitialConditions:
    """Starting points for ``optimize_acqf``: feasible raw q-batches, the promising ones kept.

    BoTorch's default generator samples a constrained polytope by hit-and-run, which costs about a
    second per ask; rejection sampling from the cube (:func:`random_design`) is exact for the
    moderately tight constraints of a lab space and takes milliseconds. A quarter of the raw
    candidates are Gaussian perturbations of observed successes ("sample around best"): optima
    often sit on narrow ridges, e.g. right at the edge of a region where experiments fail, that
    uniform candidates rarely hit. Selection uses BoTorch's ``initialize_q_batch`` (Boltzmann
    weighting of acquisition values, seeded by the caller).

    Args:
        space: The space (dimension and linear constraints).
        seed: Seed of the raw samples; each call (one per sequential q step) advances a counter.
        anchors: Unit-cube successes to perturb, shape ``(k, d)``.
    """

    #: Standard deviation of the perturbations, unit-cube units.
    LOCAL_SIGMA = 0.05

    def __init__(self, space: ParameterSpace, seed: int, anchors: NDArray[np.float64], *,
                 project: bool = False) -> None:
        self.space = space
        self.seed = seed
        self.anchors = anchors
        self.project = project
        self.calls = 0

    def _onto_band(self, acq_function: AcquisitionFunction, u: NDArray[np.float64],
                   device: torch.device) -> NDArray[np.float64]:
        """Half of the uniform candidates moved onto the predicted band (:func:`onto_band`)."""
        if not isinstance(acq_function, BandFirstLogEI) or u.shape[0] < 2:
            return u
        return onto_band(self.space, acq_function.model, acq_function.spec, u, device=device,
                         share=0.5)

    def _local(self, n: int) -> NDArray[np.float64]:
        if n == 0 or self.anchors.shape[0] == 0:
            return np.zeros((0, self.space.dim))
        rng = np.random.default_rng(derive_seed(self.seed, self.calls, 1))
        base = self.anchors[np.arange(n) % self.anchors.shape[0]]
        pts: NDArray[np.float64] = np.clip(
            base + self.LOCAL_SIGMA * rng.standard_normal(base.shape), 0.0, 1.0
        )
        return pts[feasible_mask(self.space, pts)]

    def __call__(
        self,
        acq_function: AcquisitionFunction,
        bounds: torch.Tensor,
        q: int,
        num_restarts: int,
        raw_samples: int | None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Shape ``(num_restarts, q, d)`` starting points, as ``optimize_acqf`` expects."""
        n_raw = max(raw_samples or 0, num_restarts)
        local = self._local(n_raw // 4) if q == 1 else np.zeros((0, self.space.dim))
        u = random_design(self.space, derive_seed(self.seed, self.calls), n_raw * q - len(local))
        if self.project and q == 1:
            u = self._onto_band(acq_function, u, bounds.device)
        u = np.concatenate([local, u])
        self.calls += 1
        X = torch.as_tensor(u, dtype=bounds.dtype, device=bounds.device).reshape(n_raw, q, -1)
        with torch.no_grad():
            values = torch.cat([acq_function(x) for x in torch.split(X, num_restarts * 8)])
        X0, _ = initialize_q_batch(X, values, num_restarts)
        return X0


def _improvement_bar(incumbent: float | None, min_improvement: float) -> float | None:
    """The value a new experiment's non-target terms must beat to count as an improvement.

    The incumbent (:func:`~autolab.optimizer.acquisition.incumbent_rest`) plus
    ``BotorchSettings.min_improvement``: expected improvement over a bar raised by a meaningful
    step values the chance of a big step over the near-certainty of a tiny one.
    """
    return None if incumbent is None else incumbent + min_improvement


def _saved(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    """Saved settings as they were meant: a state without a setting predates it.

    Every state holds every setting of its day, so a missing ``acquisition`` means the
    band-first EI was the only search, and a missing ``prior_spread`` / ``prior_guard`` means
    the prior was used as-is (``data``, no guard): such a state resumes with what it had and
    proposes what the uninterrupted campaign would have.
    """
    old = {"acquisition": "band_ei", "prior_spread": "data", "prior_guard": "none"}
    missing = {k: v for k, v in old.items() if k not in settings}
    return {**missing, **settings} if missing else settings


def _resolve_prior_settings(settings: BotorchSettings,
                            prior: OutcomePrior | None) -> BotorchSettings:
    """The ``"auto"`` prior settings made concrete, so the saved state says what was used.

    With a prior, ``auto`` means the safe twin prior measured on the reactor family: its stated
    discrepancy (when the prior states one) and the leave-one-out guard that hands an outcome
    to a cold GP once the readings contradict the prior (docs/benchmarks.md, "A guard against a
    wrong prior"). Without one, both are moot and read ``data`` / ``none``.
    """
    used = prior is not None and settings.prior != "none"
    update: dict[str, str] = {}
    if settings.prior_spread == "auto":
        states = used and bool(getattr(prior, "discrepancy_sd", None))
        update["prior_spread"] = "stated" if states else "data"
    if settings.prior_guard == "auto":
        update["prior_guard"] = "loo" if used else "none"
    return settings.model_copy(update=update) if update else settings


def _for_mode(settings: Mapping[str, Any], objective: ObjectiveSpec) -> Mapping[str, Any]:
    """A Pareto objective's acquisition is qLogNEHVI (the ``band_ei`` path), unless asked otherwise.

    The default acquisition (band-first EI, then Thompson sampling) ranks by one scalar score,
    so a Pareto campaign that sets nothing gets the gradient path, written into its settings
    so that a saved state reads back the same; one that asks for Thompson sampling is refused.
    """
    if objective.mode != "scalar" and "acquisition" not in settings:
        if settings.get("trust_region"):
            raise OptimizerError("settings.trust_region belongs to Thompson sampling, which "
                                 f"needs a scalar objective; a {objective.mode!r} objective "
                                 "uses qLogNEHVI: drop trust_region")
        return {"acquisition": "band_ei", **settings}
    return settings


def _check_acquisition(settings: BotorchSettings, objective: ObjectiveSpec) -> None:
    """Refuse Thompson sampling for a Pareto objective (it ranks by one scalar score)."""
    if settings.acquisition != "band_ei" and objective.mode != "scalar":
        raise OptimizerError(f"settings.acquisition {settings.acquisition!r} needs a scalar "
                             f"objective; a {objective.mode!r} objective uses qLogNEHVI "
                             "(acquisition 'band_ei')")


def _check_hyperprior(settings: BotorchSettings, space: ParameterSpace, objective: ObjectiveSpec,
                      outcome_prior: OutcomePrior | None) -> None:
    """Refuse learned hyperpriors on inputs they were not learned on, or priors with a prior.

    A prior (``outcome_prior`` / ``prior: twin``) scales the GP's kernel by its own spread, so a
    learned output scale would scale it twice.
    """
    if settings.sparse_outcomes != "none" and outcome_prior is not None:
        raise OptimizerError(f"settings.sparse_outcomes {settings.sparse_outcomes!r} cannot be "
                             "combined with an outcome_prior, which scales the GPs' kernel "
                             "itself: drop one of them")
    if settings.hyperprior == "dimension_scaled":
        return
    if outcome_prior is not None or settings.prior != "none":
        raise OptimizerError(f"settings.hyperprior {settings.hyperprior!r} cannot be combined "
                             "with a prior (outcome_prior / prior: twin), which sets the GPs' "
                             "output scale itself: drop one of them")
    try:
        outcome_designs(settings, objective, space.names)
    except ValueError as err:
        raise OptimizerError(f"settings.hyperprior {settings.hyperprior!r}: {err}; use "
                             "hyperprior 'dimension_scaled' for this space") from err


def _parse_settings(settings: Mapping[str, Any]) -> BotorchSettings:
    try:
        return BotorchSettings.model_validate(dict(settings))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise OptimizerError(f"invalid botorch optimizer settings: {problems}") from err


def _repair(space: ParameterSpace, u: NDArray[np.float64]) -> NDArray[np.float64]:
    """Clip to the cube and push points that violate a linear constraint by round-off back in.

    SLSQP satisfies constraints to about 1e-10, which the space's tolerance absorbs; a point that
    is further out is moved along the constraint normal until it is just inside.

    Args:
        space: The space.
        u: Unit-cube candidates, shape ``(n, dim)``.

    Returns:
        Repaired candidates, shape ``(n, dim)``.
    """
    u = np.clip(u, 0.0, 1.0)
    for _ in range(3):
        for idx, coefs, rhs in space.unit_constraints():
            a = np.asarray(coefs, dtype=np.float64)
            slack = u[:, idx] @ a - rhs
            bad = slack < 1e-9 * max(1.0, abs(rhs))
            if bad.any():
                step = (-slack[bad] + 1e-9 * max(1.0, abs(rhs))) / float(a @ a)
                rows = np.flatnonzero(bad)
                u[np.ix_(rows, np.asarray(idx, dtype=np.intp))] += step[:, None] * a
        u = np.clip(u, 0.0, 1.0)
    return u


def _check_forecast_args(spec: ObjectiveSpec, thresholds: Mapping[str, float] | None,
                         qy_fraction: float, improve_by: float, n_candidates: int) -> None:
    """Refuse forecast arguments that would give a meaningless answer, naming the argument."""
    directed = {t.outcome for t in spec.terms if t.kind in ("maximize", "minimize")}
    for name, value in (thresholds or {}).items():
        if name not in directed:
            raise OptimizerError(f"forecast thresholds: {name!r} is not a maximized or minimized "
                                 f"outcome of the objective; expected one of {sorted(directed)}")
        if not math.isfinite(float(value)):
            raise OptimizerError(f"forecast thresholds: {name!r} = {value!r} is not finite")
    if not 0.0 < qy_fraction <= 1.0:
        raise OptimizerError(f"forecast qy_fraction must be in (0, 1], got {qy_fraction!r}")
    if not (math.isfinite(improve_by) and improve_by >= 0):
        raise OptimizerError(f"forecast improve_by must be >= 0, got {improve_by!r}")
    if n_candidates < 1:
        raise OptimizerError(f"forecast n_candidates must be >= 1, got {n_candidates!r}")
