"""The benchmark problem: hit a PL peak within a tolerance with as high a QY as the reactor allows.

A benchmark measures *experiments until success*, and success needs a yardstick that does not
depend on the strategy under test: the best quantum yield the noise-free reactor (a family
member, :mod:`autolab.benchmarking.family`) can reach within the target band, at conditions where
an experiment does not usually fail (failure probability below one half: a point that clogs is not
a product). :func:`best_reachable` finds it by a dense search of the member's vectorized truth (a
scrambled Sobol grid of the box, then a Nelder-Mead polish of the best candidates). One grid serves
every target (:func:`best_reachable_many`): the truth does not depend on the target, only the
filter does.

Everything here is pure (arrays and frozen objects in, numbers out); no files, no MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.stats import qmc

from autolab.benchmarking.family import Member
from autolab.objective import Maximize, ObjectiveSpec, Target
from autolab.records import Conditions
from autolab.space import ParameterSpace

FloatArray = NDArray[np.float64]

#: Penalty per nm outside the band in the polish's loss (QY is a fraction, so 10/nm dominates).
_MISS_PENALTY = 10.0
#: Points failing at least this often do not count as reachable.
MAX_FAIL_PROBABILITY = 0.5


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: a searched space, a PL target, and the reactor that answers.

    Attributes:
        space: The searched parameters (bounds, linear constraints).
        fixed: Values of the conditions not searched (e.g. ``p_to_in``).
        target_nm: Target PL peak, nm.
        tolerance_nm: Half-width of the target band, nm.
        member: The reactor (a family member; :func:`~autolab.benchmarking.family.nominal_member`
            is the calibrated twin).
    """

    space: ParameterSpace
    fixed: Mapping[str, float]
    target_nm: float
    tolerance_nm: float
    member: Member

    def objective(self) -> ObjectiveSpec:
        """What every strategy optimizes: the target band, then QY (+10 % QY = +1)."""
        return ObjectiveSpec(terms=(
            Target(outcome="pl_peak_nm", value=self.target_nm, tolerance=self.tolerance_nm),
            Maximize(outcome="qy", scale=0.1)))

    def conditions(self, point: Mapping[str, float]) -> Conditions:
        """Searched values plus the fixed ones, as the executor's input."""
        return Conditions.from_mapping({**point, **self.fixed})

    def in_band(self, pl_peak_nm: float | FloatArray) -> NDArray[np.bool_]:
        """Whether a PL peak lies within the target band (NaN never does)."""
        return np.asarray(np.abs(np.asarray(pl_peak_nm) - self.target_nm) <= self.tolerance_nm)


@dataclass(frozen=True)
class Reachable:
    """The yardstick of one target: the best noise-free QY within its band, and where.

    Attributes:
        target_nm: Target PL peak, nm.
        tolerance_nm: Half-width of the band, nm.
        best_qy: Best noise-free QY found within the band (0 if the band is unreachable).
        conditions: Searched conditions of that QY (empty if unreachable).
        grid_points: Feasible grid points evaluated.
    """

    target_nm: float
    tolerance_nm: float
    best_qy: float
    conditions: dict[str, float]
    grid_points: int


def is_success(true_pl_nm: float, true_qy: float, target_nm: float, tolerance_nm: float,
               threshold_qy: float) -> bool:
    """The success criterion: the noise-free product is in band and bright enough.

    The *truth* is judged, not the measurement, so a strategy is not rewarded for a lucky noisy
    reading; ``threshold_qy`` is a fraction of :attr:`Reachable.best_qy`.
    """
    return bool(abs(true_pl_nm - target_nm) <= tolerance_nm and true_qy >= threshold_qy)


def feasible_rows(space: ParameterSpace, x: FloatArray, tol: float = 1e-9) -> NDArray[np.bool_]:
    """Which rows of physical points ``(n, dim)`` meet every linear constraint (vectorized)."""
    ok = np.ones(len(x), dtype=bool)
    col = {n: j for j, n in enumerate(space.names)}
    for c in space.constraints:
        lhs = sum(coef * x[:, col[n]] for n, coef in c.coefficients.items())
        ok &= np.asarray(lhs) - c.rhs >= -tol * max(1.0, abs(c.rhs))
    return ok


def truth(x: FloatArray, names: Sequence[str], fixed: Mapping[str, float],
          member: Member) -> tuple[FloatArray, FloatArray]:
    """Noise-free (PL peak nm, QY) of physical points ``(n, len(names))``.

    The PL is NaN where an experiment fails at least half the time (not a product one can make).
    """
    t = member.truth_points(x, names, fixed)
    pl = np.where(t.p_fail < MAX_FAIL_PROBABILITY, t.pl_peak_nm, np.nan)
    return np.asarray(pl, dtype=np.float64), np.asarray(t.qy, dtype=np.float64)


def _polish(problem: Problem, start: FloatArray) -> tuple[float, FloatArray] | None:
    """Nelder-Mead in the unit cube from ``start``; the in-band, feasible result or None."""
    space = problem.space
    lo, hi = space.bounds()
    names = space.names

    def phys(z: FloatArray) -> FloatArray:
        return np.asarray(lo + np.clip(z, 0.0, 1.0) * (hi - lo), dtype=np.float64)

    def loss(z: FloatArray) -> float:
        xz = phys(z)[None, :]
        if not feasible_rows(space, xz)[0]:
            return 1.0
        pl, qy = truth(xz, names, problem.fixed, problem.member)
        if not np.isfinite(pl[0]):
            return 1.0
        miss = max(abs(float(pl[0]) - problem.target_nm) - problem.tolerance_nm, 0.0)
        return -float(qy[0]) + _MISS_PENALTY * miss

    res = minimize(loss, (start - lo) / (hi - lo), method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 400})
    xz = phys(np.asarray(res.x))[None, :]
    pl, qy = truth(xz, names, problem.fixed, problem.member)
    if problem.in_band(pl)[0] and feasible_rows(space, xz)[0]:
        return float(qy[0]), xz[0]
    return None


def best_reachable_many(problems: Sequence[Problem], sobol_log2: int = 17,
                        polish: int = 12, seed: int = 0) -> list[Reachable]:
    """:class:`Reachable` of each problem, sharing one dense grid of the noise-free reactor.

    The problems must share space, fixed conditions and member (they differ in target only).

    Args:
        problems: Problems that differ only in target and tolerance.
        sobol_log2: The grid has ``2**sobol_log2`` points before the constraint filter.
        polish: Best in-band grid points to polish locally, per target.
        seed: Scramble seed of the Sobol grid.

    Raises:
        ValueError: The problems do not share space, fixed conditions and member.
    """
    if not problems:
        return []
    first = problems[0]
    for p in problems[1:]:
        if (p.space != first.space or dict(p.fixed) != dict(first.fixed)
                or p.member != first.member):
            raise ValueError("best_reachable_many: problems must differ in target only")
    space = first.space
    u = qmc.Sobol(d=space.dim, seed=seed).random_base2(sobol_log2)
    x = np.array([[pt[n] for n in space.names] for pt in space.from_unit(u)])
    x = x[feasible_rows(space, x)]
    pl, qy = truth(x, space.names, first.fixed, first.member)
    out = []
    for problem in problems:
        ok = problem.in_band(pl) & np.isfinite(qy)  # NaN PL (failing points) is never in band
        best_qy, best_x = 0.0, None
        if ok.any():
            order = np.argsort(-np.where(ok, qy, -1.0))[: int(ok.sum())][:max(polish, 1)]
            best_qy, best_x = float(qy[order[0]]), x[order[0]]
            for i in order[:polish]:
                polished = _polish(problem, x[i])
                if polished is not None and polished[0] > best_qy:
                    best_qy, best_x = polished
        conditions = ({} if best_x is None
                      else {n: float(v) for n, v in zip(space.names, best_x, strict=True)})
        out.append(Reachable(target_nm=problem.target_nm, tolerance_nm=problem.tolerance_nm,
                             best_qy=best_qy, conditions=conditions, grid_points=len(x)))
    return out


def best_reachable(problem: Problem, sobol_log2: int = 17, polish: int = 12) -> Reachable:
    """:class:`Reachable` of one problem (see :func:`best_reachable_many`)."""
    return best_reachable_many([problem], sobol_log2=sobol_log2, polish=polish)[0]
