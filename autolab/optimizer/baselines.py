"""Model-free baselines behind the same ask/tell API: uniform random and scrambled Sobol.

They are what a Bayesian optimizer must beat in benchmarks, and they are useful on their own for
screening. Both are constraint-aware (rejection) and resume deterministically: the proposal
depends only on the seed and on how many experiments have been told or are pending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from autolab.optimizer.base import BaseOptimizer, derive_seed
from autolab.optimizer.design import random_design, sobol_design


class RandomOptimizer(BaseOptimizer):
    """Independent uniform draws from the feasible region.

    Uniform in the unit cube, so log-uniform on log-scale parameters.

    The batch for ``k`` observations plus ``p`` pending ones is drawn from a generator seeded by
    ``(seed, k + p)``.
    """

    name: ClassVar[str] = "random"

    def ask(
        self, n: int = 1, pending: Sequence[Mapping[str, float]] | None = None
    ) -> list[dict[str, float]]:
        """Propose ``n`` uniform random feasible conditions (physical units)."""
        checked = self._check_pending(n, pending)
        seed = derive_seed(self.seed, len(self._observations) + len(checked))
        u = random_design(self.space, seed, n)
        return [self.space.check(p) for p in self.space.from_unit(u)]


class SobolOptimizer(BaseOptimizer):
    """The feasible subsequence of one scrambled Sobol sequence, in order.

    Point ``k + p`` onwards is proposed after ``k`` observations with ``p`` pending, so told and
    pending experiments are never proposed again and a resumed run continues the sequence.
    """

    name: ClassVar[str] = "sobol"

    def ask(
        self, n: int = 1, pending: Sequence[Mapping[str, float]] | None = None
    ) -> list[dict[str, float]]:
        """Propose the next ``n`` feasible Sobol points (physical units)."""
        checked = self._check_pending(n, pending)
        u = sobol_design(self.space, self.seed, len(self._observations) + len(checked), n)
        return [self.space.check(p) for p in self.space.from_unit(u)]
