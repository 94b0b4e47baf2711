"""Optimizers behind one ask/tell API: BoTorch (Bayesian), random and Sobol baselines.

They work for any :class:`~autolab.space.ParameterSpace` and any named outcomes, from plain Python
(no campaign file, hardware or MLflow needed)::

    from autolab.objective import Maximize, ObjectiveSpec, OutcomeConstraint, Target
    from autolab.optimizer import BotorchOptimizer
    from autolab.space import qd_space

    objective = ObjectiveSpec(
        terms=(Target(outcome="pl_peak_nm", value=550.0, tolerance=2.0),
               Maximize(outcome="qy", scale=0.1)),
        constraints=(OutcomeConstraint.parse("qy >= 0.3"),),
    )
    opt = BotorchOptimizer(qd_space(), objective, seed=0)
    for _ in range(20):
        [conditions] = opt.ask(1)                # dict: parameter -> value, physical units
        outcomes = run_my_experiment(conditions)  # dict: outcome -> value, or None if it failed
        opt.tell([conditions], [outcomes])
    print(opt.best())

    state = opt.state_dict()                     # JSON-compatible; resume later with
    opt = BotorchOptimizer.from_state(state)     # the same next proposal

``make_optimizer("botorch" | "random" | "sobol", space, objective, seed, **settings)`` builds one
by name; :func:`optimizer_from_state` rebuilds whichever optimizer wrote a state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autolab.support import lazy_attribute

if TYPE_CHECKING:
    from autolab.optimizer.base import BaseOptimizer, Observation, Optimizer, derive_seed
    from autolab.optimizer.baselines import RandomOptimizer, SobolOptimizer
    from autolab.optimizer.bayes import BotorchOptimizer
    from autolab.optimizer.factory import OPTIMIZERS, make_optimizer, optimizer_from_state
    from autolab.optimizer.settings import BotorchSettings

# Imported on first use (PEP 562), so that ``autolab.optimizer.settings`` (read by ``autolab
# validate``) does not pull in torch and BoTorch through this package.
_LAZY = {
    "BaseOptimizer": "base", "Observation": "base", "Optimizer": "base", "derive_seed": "base",
    "RandomOptimizer": "baselines", "SobolOptimizer": "baselines",
    "BotorchOptimizer": "bayes", "BotorchSettings": "settings",
    "OPTIMIZERS": "factory", "make_optimizer": "factory", "optimizer_from_state": "factory",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)


__all__ = [
    "OPTIMIZERS",
    "BaseOptimizer",
    "BotorchOptimizer",
    "BotorchSettings",
    "Observation",
    "Optimizer",
    "RandomOptimizer",
    "SobolOptimizer",
    "derive_seed",
    "make_optimizer",
    "optimizer_from_state",
]
