"""Strategies a benchmark compares, all behind the autolab Optimizer protocol.

Every strategy runs inside the real campaign loop (:class:`~autolab.campaign.Campaign`), so it
sees exactly what a campaign's optimizer sees: noisy measured outcomes, ``None`` for a failed
experiment, and nothing about the truth. autolab's own optimizers are built by the campaign from
its config (the path a chemist's campaign takes); other libraries are wrapped here and injected.
A registry maps each kind to its builder (:data:`STRATEGY_BUILDERS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from autolab.objective import ObjectiveSpec
from autolab.optimizer import Optimizer
from autolab.optimizer.base import BaseOptimizer
from autolab.optimizer.factory import OPTIMIZERS
from autolab.space import ParameterSpace

#: Kinds the campaign builds from its own config (``optimizer.kind``).
AUTOLAB_KINDS: tuple[str, ...] = tuple(OPTIMIZERS)
#: How many infeasible proposals in a row Optuna may make before the benchmark gives up.
_MAX_INFEASIBLE = 1000


class OptunaGPOptimizer(BaseOptimizer):
    """Optuna's GPSampler as an autolab optimizer (the ``optuna-gp`` strategy).

    Optuna maximizes the objective's scalar score. It cannot keep to linear constraints: a
    proposal that breaks one is not run (it costs no lab time); it is told to Optuna as an
    infeasible trial (constraint value > 0) and Optuna is asked again. A failed experiment is told
    as a failed trial. The sampler keeps a random state, so unlike autolab's optimizers it is not
    a pure function of its data: a resumed campaign would not repeat its proposals (benchmarks
    never resume a campaign mid-way; they re-run a whole cell).

    Args:
        space: The search space.
        objective: What to optimize.
        seed: Seed of the sampler.
        extra_outcomes: Outcomes stored but not optimized.
    """

    name: ClassVar[str] = "optuna-gp"

    def __init__(self, space: ParameterSpace, objective: ObjectiveSpec, seed: int = 0, *,
                 extra_outcomes: Sequence[str] = ()) -> None:
        super().__init__(space, objective, seed, extra_outcomes=extra_outcomes)
        import optuna  # noqa: PLC0415 (optional extra 'benchmark', imported only when used)

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=max(2 * space.dim, 5))
        self._optuna: Any = optuna
        self._study: Any = optuna.create_study(direction="maximize", sampler=sampler)
        self._open: list[tuple[dict[str, float], Any]] = []
        self._worst = -100.0

    def _ask_one(self) -> dict[str, float]:
        for _ in range(_MAX_INFEASIBLE):
            trial = self._study.ask()
            point = {p.name: float(trial.suggest_float(p.name, p.lower, p.upper,
                                                       log=p.scale == "log"))
                     for p in self.space.parameters}
            violation = max((-c.slack(point) for c in self.space.constraints), default=0.0)
            trial.set_constraint("linear", violation)
            if violation <= 0:
                self._open.append((point, trial))
                return point
            self._study.tell(trial, self._worst)
        raise RuntimeError(f"optuna-gp proposed {_MAX_INFEASIBLE} infeasible points in a row")

    def ask(self, n: int = 1, pending: Sequence[Mapping[str, float]] | None = None,
            ) -> list[dict[str, float]]:
        """Propose ``n`` conditions (Optuna's sampler, one trial each)."""
        self._check_pending(n, pending)
        return [self._ask_one() for _ in range(n)]

    def tell(self, conditions: Sequence[Mapping[str, float]],
             outcomes: Sequence[Mapping[str, float] | None],
             outcome_sd: Sequence[Mapping[str, float] | None] | None = None) -> None:
        """Record experiments; those proposed by :meth:`ask` close their Optuna trial.

        Optuna has no use for the measurement's uncertainty (``outcome_sd``); it is stored.
        """
        before = len(self._observations)
        super().tell(conditions, outcomes, outcome_sd)
        for obs in self._observations[before:]:
            trial = self._pop_trial(obs.conditions)
            if trial is None:  # told from outside (not proposed here): add it as a finished trial
                continue
            if obs.score is None:
                self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            else:
                self._worst = min(self._worst, obs.score)
                self._study.tell(trial, obs.score)

    def _pop_trial(self, conditions: Mapping[str, float]) -> Any:
        for i, (point, trial) in enumerate(self._open):
            if all(abs(point[k] - float(conditions[k])) <= 1e-9 * max(1.0, abs(point[k]))
                   for k in point):
                del self._open[i]
                return trial
        return None


def _campaign_builds(space: ParameterSpace, objective: ObjectiveSpec, seed: int) -> None:
    """The optimizer of autolab's own kinds is built by the campaign: nothing to inject."""


def _optuna_gp(space: ParameterSpace, objective: ObjectiveSpec, seed: int) -> Optimizer:
    return OptunaGPOptimizer(space, objective, seed)


#: Kind -> builder of an injected optimizer; autolab's kinds give None (the campaign builds
#: them from its config).
STRATEGY_BUILDERS: dict[str, Callable[[ParameterSpace, ObjectiveSpec, int],
                                      Optimizer | None]] = {
    **dict.fromkeys(AUTOLAB_KINDS, _campaign_builds),
    "optuna-gp": _optuna_gp,
}


def injected_optimizer(kind: str, space: ParameterSpace, objective: ObjectiveSpec,
                       seed: int) -> Optimizer | None:
    """The optimizer to inject into the campaign for ``kind`` (None: the campaign builds it).

    Raises:
        ValueError: Unknown kind.
    """
    try:
        builder = STRATEGY_BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown strategy kind {kind!r}; known: {sorted(STRATEGY_BUILDERS)}")\
            from None
    return builder(space, objective, seed)
