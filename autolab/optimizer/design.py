"""Space-filling and random designs that respect a space's linear constraints.

Both return points in the unit cube (the space's :meth:`~autolab.space.ParameterSpace.to_unit`
coordinates). Infeasible points are rejected, never repaired, so the accepted points keep the
distribution of the underlying sequence restricted to the feasible polytope. Everything is a pure
function of its arguments, which is what makes resumed campaigns propose what uninterrupted ones
would have.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch.quasirandom import SobolEngine

from autolab.exceptions import OptimizerError
from autolab.space import ParameterSpace

#: Give up after this many candidate draws: the constraints leave (almost) no volume.
MAX_DRAWS = 1 << 17

#: Feasibility margin in unit-cube coordinates, so round-off never pushes a point outside.
_MARGIN = 1e-9


def feasible_mask(space: ParameterSpace, u: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which unit-cube points satisfy the space's linear constraints.

    Args:
        space: The space.
        u: Unit-cube points, shape ``(n, dim)``.

    Returns:
        Boolean mask, shape ``(n,)``.
    """
    ok = np.ones(u.shape[0], dtype=bool)
    for idx, coefs, rhs in space.unit_constraints():
        lhs = u[:, idx] @ np.asarray(coefs, dtype=np.float64)
        ok &= lhs >= rhs + _MARGIN * max(1.0, abs(rhs))
    return ok


def _too_tight(space: ParameterSpace) -> OptimizerError:
    text = ", ".join(c.describe() for c in space.constraints)
    return OptimizerError(
        f"the linear constraints ({text}) leave almost no feasible volume: fewer than the "
        f"requested points among {MAX_DRAWS} candidates"
    )


def sobol_design(space: ParameterSpace, seed: int, start: int, n: int) -> NDArray[np.float64]:
    """Points ``start .. start+n-1`` of the feasible subsequence of a scrambled Sobol sequence.

    The sequence is fixed by ``seed``; the k-th feasible point is always the same, so asking for
    points 0-3 then 4-7 gives the same eight points as asking for 0-7 at once.

    Args:
        space: The space (its dimension and linear constraints).
        seed: Scrambling seed.
        start: Index of the first feasible point to return.
        n: Number of points.

    Returns:
        Unit-cube points, shape ``(n, dim)``.

    Raises:
        OptimizerError: The constraints reject nearly every point.
    """
    need = start + n
    engine = SobolEngine(space.dim, scramble=True, seed=seed)  # type: ignore[no-untyped-call]
    found: list[NDArray[np.float64]] = []
    count = drawn = 0
    chunk = 64
    while count < need:
        if drawn >= MAX_DRAWS:
            raise _too_tight(space)
        pts = engine.draw(chunk, dtype=torch.float64).numpy()
        drawn += chunk
        pts = pts[feasible_mask(space, pts)]
        found.append(pts)
        count += pts.shape[0]
        chunk = min(chunk * 2, 8192)
    return np.concatenate(found)[start:need]


def random_design(space: ParameterSpace, seed: int, n: int) -> NDArray[np.float64]:
    """``n`` independent uniform points of the feasible polytope (rejection sampling).

    Args:
        space: The space.
        seed: Seed of a fresh ``numpy`` generator.
        n: Number of points.

    Returns:
        Unit-cube points, shape ``(n, dim)``.

    Raises:
        OptimizerError: The constraints reject nearly every point.
    """
    rng = np.random.default_rng(seed)
    found: list[NDArray[np.float64]] = []
    count = drawn = 0
    while count < n:
        if drawn >= MAX_DRAWS:
            raise _too_tight(space)
        chunk = max(64, 2 * (n - count))
        pts = rng.random((chunk, space.dim))
        drawn += chunk
        pts = pts[feasible_mask(space, pts)]
        found.append(pts)
        count += pts.shape[0]
    return np.concatenate(found)[:n]
