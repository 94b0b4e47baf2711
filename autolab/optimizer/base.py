"""The ask/tell protocol and the bookkeeping every optimizer shares.

An optimizer is a pure function of ``(settings, seed, observed data, pending)``: it keeps no
random-number generator whose state advances between calls. Every random draw derives its seed
from the optimizer's seed and the number of observations (:func:`derive_seed`). A campaign that
crashed can therefore re-tell its journal to a fresh optimizer and get exactly the proposal an
uninterrupted run would have made; :meth:`BaseOptimizer.state_dict` stores just enough to do that
(and the fitted model's hyperparameters, for the record).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import torch

from autolab.exceptions import OptimizerError
from autolab.objective import ObjectiveSpec
from autolab.space import ParameterSpace

#: Version tag of :meth:`BaseOptimizer.state_dict`; bump when the layout changes.
STATE_FORMAT = "autolab.optimizer/1"


@dataclass(frozen=True)
class Observation:
    """One told experiment.

    Attributes:
        conditions: Parameter name -> physical value (checked against the space).
        outcomes: Outcome name -> measured value, or ``None`` for a failed experiment.
        score: Scalar score of the outcomes (``None`` for a failure).
        feasible: Whether the outcome constraints hold (``False`` for a failure).
        in_band: Whether every target band holds (``False`` for a failure).
        outcome_sd: Outcome name -> stated 1-sigma measurement uncertainty (the analyzer's
            ``*_err``), only for the outcomes that have one; ``None`` if none was stated.
        reused: Data from an earlier campaign on the same reactor (:meth:`BaseOptimizer.reuse`):
            the models learn from it, but it is not one of this campaign's experiments.
    """

    conditions: dict[str, float]
    outcomes: dict[str, float] | None
    score: float | None
    feasible: bool
    in_band: bool = False
    outcome_sd: dict[str, float] | None = None
    reused: bool = False

    @property
    def failed(self) -> bool:
        """True for an experiment that produced no outcomes."""
        return self.outcomes is None


@runtime_checkable
class Optimizer(Protocol):
    """What the campaign needs from any optimizer (BoTorch, random, Sobol, ...)."""

    name: ClassVar[str]
    space: ParameterSpace
    objective: ObjectiveSpec
    seed: int

    def ask(
        self, n: int = 1, pending: Sequence[Mapping[str, float]] | None = None
    ) -> list[dict[str, float]]:
        """Propose ``n`` conditions (physical units, inside bounds and linear constraints).

        ``pending`` are conditions already proposed and still running; they are not proposed
        again and (for model-based optimizers) are accounted for as if their outcome were known.
        """
        ...

    def tell(
        self,
        conditions: Sequence[Mapping[str, float]],
        outcomes: Sequence[Mapping[str, float] | None],
        outcome_sd: Sequence[Mapping[str, float] | None] | None = None,
    ) -> None:
        """Record finished experiments; ``None`` outcomes are failures.

        ``outcome_sd`` (aligned with ``outcomes``) gives each outcome's stated 1-sigma
        uncertainty, which model-based optimizers use as known observation noise.
        """
        ...

    @property
    def observations(self) -> tuple[Observation, ...]:
        """Everything told so far, in order."""
        ...

    def best(self) -> Observation | None:
        """The best experiment, in-band first (``ObjectiveSpec.rank_key``); ``None`` if none."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """JSON-compatible state: settings, seed, observations, model record."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace seed, settings and observations with those of ``state``."""
        ...


def derive_seed(seed: int, *counters: int) -> int:
    """A 32-bit seed that depends only on ``seed`` and ``counters`` (e.g. observations so far).

    ``numpy.random.SeedSequence`` mixes the entropy well, so neighbouring counters give unrelated
    streams.
    """
    state = np.random.SeedSequence([seed, *counters]).generate_state(1, dtype=np.uint32)
    return int(state[0])


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``/``"cuda"`` as given.

    Raises:
        OptimizerError: ``"cuda"`` was asked for but is not available, or the name is unknown.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise OptimizerError("device 'cuda' requested but torch.cuda.is_available() is False")
    if device not in ("cpu", "cuda"):
        raise OptimizerError(f"device {device!r}: expected 'auto', 'cpu' or 'cuda'")
    return torch.device(device)


class BaseOptimizer:
    """Validated storage of observations plus the parts of the protocol that need no model.

    Subclasses implement :meth:`ask` and may extend :meth:`_settings_dict`/:meth:`_model_record`.

    Args:
        space: The search space.
        objective: What to optimize.
        seed: Seed of every random draw (see module docs).
        extra_outcomes: Outcome names accepted by :meth:`tell` and stored, though the objective
            does not use them (e.g. ``abs_peak_nm``). Any other unknown name is an error.
    """

    name: ClassVar[str] = "base"

    def __init__(
        self,
        space: ParameterSpace,
        objective: ObjectiveSpec,
        seed: int = 0,
        *,
        extra_outcomes: Sequence[str] = (),
    ) -> None:
        if not isinstance(space, ParameterSpace):
            raise OptimizerError(f"space must be a ParameterSpace, got {type(space).__name__}")
        if not isinstance(objective, ObjectiveSpec):
            raise OptimizerError(
                f"objective must be an ObjectiveSpec, got {type(objective).__name__}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise OptimizerError(f"seed must be a non-negative int, got {seed!r}")
        self.space = space
        self.objective = objective
        self.seed = seed
        self.extra_outcomes = tuple(n for n in extra_outcomes if n not in objective.outcome_names)
        self._observations: list[Observation] = []
        self._reused: list[Observation] = []

    # ---- protocol ----------------------------------------------------------------------------

    def ask(
        self, n: int = 1, pending: Sequence[Mapping[str, float]] | None = None
    ) -> list[dict[str, float]]:
        """Propose ``n`` conditions; see :class:`Optimizer`."""
        raise NotImplementedError

    @property
    def observations(self) -> tuple[Observation, ...]:
        """Everything told so far, in order."""
        return tuple(self._observations)

    def tell(
        self,
        conditions: Sequence[Mapping[str, float]],
        outcomes: Sequence[Mapping[str, float] | None],
        outcome_sd: Sequence[Mapping[str, float] | None] | None = None,
    ) -> None:
        """Record finished experiments.

        All entries are validated before any is stored, so a bad batch leaves the optimizer as it
        was.

        Args:
            conditions: One mapping per experiment, physical units.
            outcomes: One mapping per experiment with at least the objective's outcomes, or
                ``None`` for a failed experiment.
            outcome_sd: Optional, aligned with ``outcomes``: per experiment a mapping outcome ->
                stated 1-sigma uncertainty (positive, finite; outcomes may be left out), or
                ``None``. Model-based optimizers treat it as known observation noise.

        Raises:
            OptimizerError: Lengths differ, an outcome is missing, unknown, or not finite, or a
                stated uncertainty is not a positive finite number of a known outcome.
            ConditionsError: A condition is outside the space (bounds or linear constraints).
        """
        self._observations.extend(self._validated(conditions, outcomes, outcome_sd, False))

    def reuse(
        self,
        conditions: Sequence[Mapping[str, float]],
        outcomes: Sequence[Mapping[str, float] | None],
        outcome_sd: Sequence[Mapping[str, float] | None] | None = None,
    ) -> None:
        """Give the optimizer earlier data from the same reactor (e.g. another target's campaign).

        The outcomes are physical measurements of the same reactor, so they mean the same under
        any objective: model-based optimizers train on them exactly like on told experiments.
        They are *not* this campaign's experiments: they do not count towards the initial
        design, :meth:`best`, or :attr:`observations`; they are kept in :attr:`reused` and in the
        state. Arguments and errors as :meth:`tell`; outcomes this objective does not read must
        be named in ``extra_outcomes`` or left out.
        """
        self._reused.extend(self._validated(conditions, outcomes, outcome_sd, True))

    @property
    def reused(self) -> tuple[Observation, ...]:
        """Earlier data from the same reactor given by :meth:`reuse`, in order."""
        return tuple(self._reused)

    def _validated(
        self,
        conditions: Sequence[Mapping[str, float]],
        outcomes: Sequence[Mapping[str, float] | None],
        outcome_sd: Sequence[Mapping[str, float] | None] | None,
        reused: bool,
    ) -> list[Observation]:
        if isinstance(conditions, Mapping) or isinstance(outcomes, Mapping):
            raise OptimizerError("tell() takes lists: tell([conditions], [outcomes])")
        if len(conditions) != len(outcomes):
            raise OptimizerError(
                f"tell() got {len(conditions)} conditions but {len(outcomes)} outcomes"
            )
        if outcome_sd is None:
            outcome_sd = [None] * len(outcomes)
        if isinstance(outcome_sd, Mapping) or len(outcome_sd) != len(outcomes):
            raise OptimizerError(
                "outcome_sd must be a list aligned with outcomes (one mapping or None each), "
                f"got {outcome_sd!r}"
            )
        triples = enumerate(zip(conditions, outcomes, outcome_sd, strict=True))
        return [self._observation(i, c, o, sd, reused) for i, (c, o, sd) in triples]

    def best(self) -> Observation | None:
        """The best experiment: the target is a specification (``ObjectiveSpec.rank_key``).

        In-band experiments rank before out-of-band ones whatever their scores, then feasible
        (outcome constraints hold) before infeasible, then by score; the first one wins ties.
        An experiment that is neither in band (with a target) nor feasible is never "best".
        """
        i = self.objective.best_index([o.outcomes for o in self._observations])
        return None if i is None else self._observations[i]

    def pareto_front(self) -> list[Observation]:
        """Feasible observations not dominated in the objective's per-term utilities."""
        cands = [o for o in self._observations if o.feasible and o.outcomes is not None]
        utils = [self.objective.utilities(o.outcomes) for o in cands if o.outcomes is not None]
        front = []
        for i, ui in enumerate(utils):
            dominated = any(
                all(a >= b for a, b in zip(uj, ui, strict=True))
                and any(a > b for a, b in zip(uj, ui, strict=True))
                for j, uj in enumerate(utils)
                if j != i
            )
            if not dominated:
                front.append(cands[i])
        return front

    def state_dict(self) -> dict[str, Any]:
        """JSON-compatible state; :meth:`from_state` rebuilds an identical optimizer."""
        return {
            "format": STATE_FORMAT,
            "optimizer": self.name,
            "space": self.space.model_dump(mode="json"),
            "objective": self.objective.model_dump(mode="json"),
            "seed": self.seed,
            "extra_outcomes": list(self.extra_outcomes),
            "settings": self._settings_dict(),
            "observations": [_observation_state(o) for o in self._observations],
            "reused": [_observation_state(o) for o in self._reused],
            "model": self._model_record(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Adopt seed, settings and observations of ``state``.

        Raises:
            OptimizerError: The state is of another format or optimizer, or was made for another
                space or objective.
        """
        self._check_state(state)
        if ParameterSpace.model_validate(state["space"]) != self.space:
            raise OptimizerError("state was saved for a different parameter space")
        if ObjectiveSpec.model_validate(state["objective"]) != self.objective:
            raise OptimizerError("state was saved for a different objective")
        self.seed = int(state["seed"])
        self.extra_outcomes = tuple(state.get("extra_outcomes", ()))
        self._load_settings(state.get("settings", {}))
        self._observations = []
        self._reused = []
        _retell(self, state)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **objects: Any) -> Self:
        """A fresh optimizer of this class rebuilt from :meth:`state_dict` output.

        ``objects`` are constructor arguments a state cannot hold (e.g. ``outcome_prior=``).
        """
        cls._check_state(state)
        opt = cls(
            ParameterSpace.model_validate(state["space"]),
            ObjectiveSpec.model_validate(state["objective"]),
            seed=int(state["seed"]),
            extra_outcomes=tuple(state.get("extra_outcomes", ())),
            **dict(state.get("settings", {})),
            **objects,
        )
        _retell(opt, state)
        return opt

    # ---- helpers for subclasses --------------------------------------------------------------

    def _settings_dict(self) -> dict[str, Any]:
        return {}

    def _load_settings(self, settings: Mapping[str, Any]) -> None:
        if settings:
            raise OptimizerError(f"{self.name} optimizer takes no settings, got {sorted(settings)}")

    def _model_record(self) -> dict[str, Any] | None:
        return None

    @classmethod
    def _check_state(cls, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise OptimizerError(f"not an optimizer state of format {STATE_FORMAT!r}")
        if state.get("optimizer") != cls.name:
            raise OptimizerError(
                f"state belongs to optimizer {state.get('optimizer')!r}, not {cls.name!r}"
            )

    def _check_pending(
        self, n: int, pending: Sequence[Mapping[str, float]] | None
    ) -> list[dict[str, float]]:
        """Validate ``n`` and the pending conditions; returns them checked against the space."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise OptimizerError(f"ask(n): n must be a positive int, got {n!r}")
        return [self.space.check(p) for p in (pending or [])]

    def _observation(
        self, index: int, conditions: Mapping[str, float], outcomes: Mapping[str, float] | None,
        outcome_sd: Mapping[str, float] | None = None, reused: bool = False,
    ) -> Observation:
        if not isinstance(conditions, Mapping):
            raise OptimizerError(f"conditions[{index}] must be a mapping, got {conditions!r}")
        cond = self.space.check(conditions)
        if outcomes is None:
            return Observation(conditions=cond, outcomes=None, score=None, feasible=False,
                               reused=reused)
        values = self._outcome_values(index, outcomes)
        return Observation(
            conditions=cond,
            outcomes=values,
            score=self.objective.score(values),
            feasible=self.objective.is_feasible(values),
            in_band=self.objective.within_target(values),
            outcome_sd=self._outcome_sd(index, outcome_sd),
            reused=reused,
        )

    def _outcome_sd(self, index: int, sd: Mapping[str, float] | None) -> dict[str, float] | None:
        if sd is None:
            return None
        if not isinstance(sd, Mapping):
            raise OptimizerError(
                f"outcome_sd[{index}] must be a mapping of outcome name -> 1-sigma or None, "
                f"got {sd!r}")
        known = (*self.objective.outcome_names, *self.extra_outcomes)
        out: dict[str, float] = {}
        for name, value in sd.items():
            if name not in known:
                raise OptimizerError(
                    f"outcome_sd[{index}]: unknown outcome {name!r}; expected one of {list(known)}")
            try:
                v = float(value)
            except (TypeError, ValueError) as err:
                raise OptimizerError(
                    f"outcome_sd[{index}]: {name!r} is not a number: {value!r}") from err
            if not (math.isfinite(v) and v > 0):
                raise OptimizerError(
                    f"outcome_sd[{index}]: {name!r} = {v} must be a positive finite 1-sigma "
                    "(leave the outcome out when it has no stated uncertainty)")
            out[name] = v
        return out or None

    def _outcome_values(self, index: int, outcomes: Mapping[str, float]) -> dict[str, float]:
        if not isinstance(outcomes, Mapping):
            raise OptimizerError(
                f"outcomes[{index}] must be a mapping of outcome name -> value or None, "
                f"got {outcomes!r}"
            )
        known = (*self.objective.outcome_names, *self.extra_outcomes)
        unknown = sorted(set(outcomes) - set(known))
        if unknown:
            raise OptimizerError(
                f"outcomes[{index}]: unknown outcome(s) {unknown}; expected {list(known)} "
                "(pass extra_outcomes=... to store more)"
            )
        values: dict[str, float] = {}
        for name in known:
            if name not in outcomes:
                if name in self.extra_outcomes:
                    continue
                raise OptimizerError(
                    f"outcomes[{index}]: outcome {name!r} is missing; the objective needs "
                    f"{list(self.objective.outcome_names)} (use None for a failed experiment)"
                )
            try:
                v = float(outcomes[name])
            except (TypeError, ValueError) as err:
                raise OptimizerError(
                    f"outcomes[{index}]: {name!r} is not a number: {outcomes[name]!r}"
                ) from err
            if not math.isfinite(v):
                raise OptimizerError(
                    f"outcomes[{index}]: {name!r} = {v} is not finite; report a failed "
                    "experiment as None"
                )
            values[name] = v
        return values


def _observation_state(o: Observation) -> dict[str, Any]:
    """One observation as JSON: conditions, outcomes and (when stated) the outcomes' 1-sigma."""
    out: dict[str, Any] = {"conditions": dict(o.conditions),
                           "outcomes": None if o.outcomes is None else dict(o.outcomes)}
    if o.outcome_sd is not None:
        out["outcome_sd"] = dict(o.outcome_sd)
    return out


def _retell(opt: BaseOptimizer, state: Mapping[str, Any]) -> None:
    """Re-tell a state's reused data and observations (with their 1-sigma) to ``opt``."""
    for key, method in (("reused", opt.reuse), ("observations", opt.tell)):
        obs = state.get(key, [])
        method([o["conditions"] for o in obs], [o["outcomes"] for o in obs],
               [o.get("outcome_sd") for o in obs])
