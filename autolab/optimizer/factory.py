"""Build optimizers by name (campaign files) and from saved state (resume, ``autolab sync``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autolab.exceptions import OptimizerError
from autolab.objective import ObjectiveSpec
from autolab.optimizer.base import BaseOptimizer
from autolab.optimizer.baselines import RandomOptimizer, SobolOptimizer
from autolab.optimizer.bayes import BotorchOptimizer
from autolab.space import ParameterSpace

#: Optimizer name -> class; the names a campaign file may use.
OPTIMIZERS: dict[str, type[BaseOptimizer]] = {
    BotorchOptimizer.name: BotorchOptimizer,
    RandomOptimizer.name: RandomOptimizer,
    SobolOptimizer.name: SobolOptimizer,
}


def _lookup(name: str) -> type[BaseOptimizer]:
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise OptimizerError(
            f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}"
        ) from None


def make_optimizer(
    name: str, space: ParameterSpace, objective: ObjectiveSpec, seed: int = 0, **settings: Any
) -> BaseOptimizer:
    """An optimizer by name: ``"botorch"``, ``"random"`` or ``"sobol"``.

    Args:
        name: Optimizer name.
        space: The search space.
        objective: What to optimize.
        seed: Seed of every random draw.
        **settings: Optimizer settings (``BotorchSettings`` fields for ``"botorch"``;
            ``extra_outcomes`` for any).

    Raises:
        OptimizerError: Unknown name, or settings the optimizer does not take.
    """
    cls = _lookup(name)
    extra = settings.pop("extra_outcomes", ())
    if cls is not BotorchOptimizer and settings:
        raise OptimizerError(f"optimizer {name!r} takes no settings, got {sorted(settings)}")
    return cls(space, objective, seed, extra_outcomes=extra, **settings)


def optimizer_from_state(state: Mapping[str, Any]) -> BaseOptimizer:
    """Rebuild whichever optimizer wrote ``state`` (see ``BaseOptimizer.state_dict``).

    Raises:
        OptimizerError: The state is not an optimizer state or names an unknown optimizer.
    """
    if not isinstance(state, Mapping) or "optimizer" not in state:
        raise OptimizerError("not an optimizer state: no 'optimizer' key")
    return _lookup(str(state["optimizer"])).from_state(state)
