"""Order experiments so the heaters swing as little as possible.

A reactor changes conditions between experiments; pumps switch in seconds, but a heater block
ramps at a few °C per minute and the experiment waits for it. When the optimizer proposes a batch
(``batch_size`` > 1), the order in which the reactor runs it is free, so it is chosen to minimise
the total changeover from the reactor's current state:

* the *changeover* between two sets of conditions is the largest block-temperature change
  (the blocks ramp at the same time, so the slowest one sets the wait), with the sum of all
  changes as a small tie-breaker (less heater energy and thermal stress);
* block temperatures are the conditions named ``t_<block>_c`` (``t_core_c``, ``t_shell_c``,
  per-tank ``t_tank3_c``...); a block one side does not name is not counted;
* cooling is slower than heating on a real block, so a cooling step is weighted by
  ``heating_rate / cooling_rate`` (1 when the rates are not known).

Batches up to :data:`EXACT_MAX` experiments are ordered exactly (every permutation); larger ones
greedily (nearest next) and then improved by 2-opt moves until none helps. Pure functions: no I/O,
no state, so the order is reproducible and journaling the batch is enough to resume.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

#: Batches of at most this many experiments are ordered by trying every permutation (7! = 5040).
EXACT_MAX = 7
#: Weight of the summed changes relative to the largest one (a tie-breaker, not a trade-off).
SUM_WEIGHT = 1e-3
_BLOCK = re.compile(r"^t_[a-z0-9]+_c$")

Point = Mapping[str, float]


def block_temperatures(conditions: Point) -> dict[str, float]:
    """The heater-block setpoints among ``conditions``: every ``t_<block>_c`` entry, °C."""
    return {k: float(v) for k, v in conditions.items() if _BLOCK.match(k)}


def changeover(a: Point | None, b: Point, cooling_weight: float = 1.0) -> float:
    """Heater changeover cost from conditions ``a`` to ``b``, in °C-equivalents of ramp.

    Args:
        a: Where the reactor is (``None``: nothing known, e.g. a cold reactor; then every order
            costs the same and 0 is returned).
        b: Where it goes next.
        cooling_weight: How much longer a degree of cooling takes than a degree of heating.

    Returns:
        ``max_block(step) + SUM_WEIGHT * sum_block(step)`` where ``step`` is the temperature
        change of each block both sides name, cooling steps multiplied by ``cooling_weight``.
    """
    if a is None:
        return 0.0
    ta, tb = block_temperatures(a), block_temperatures(b)
    steps = [(tb[k] - ta[k]) if tb[k] >= ta[k] else (ta[k] - tb[k]) * cooling_weight
             for k in ta.keys() & tb.keys()]
    if not steps:
        return 0.0
    return max(steps) + SUM_WEIGHT * sum(steps)


def path_cost(start: Point | None, points: Sequence[Point], order: Sequence[int],
              cooling_weight: float = 1.0) -> float:
    """Total changeover of running ``points`` in ``order`` from ``start``."""
    total, here = 0.0, start
    for i in order:
        total += changeover(here, points[i], cooling_weight)
        here = points[i]
    return total


def order_batch(start: Point | None, points: Sequence[Point],
                cooling_weight: float = 1.0) -> list[int]:
    """The order (indices into ``points``) that minimises the heater changeover from ``start``.

    Ties keep the optimizer's order (the first best permutation in lexicographic order wins),
    so a batch whose order does not matter is left as proposed.

    Args:
        start: The reactor's current conditions (the last experiment it ran), or ``None``.
        points: The batch, as proposed.
        cooling_weight: See :func:`changeover`.

    Raises:
        ValueError: ``cooling_weight`` is not positive.
    """
    if cooling_weight <= 0:
        raise ValueError(f"cooling_weight must be > 0, got {cooling_weight}")
    n = len(points)
    if n <= 1:
        return list(range(n))
    if n <= EXACT_MAX:
        best = min(itertools.permutations(range(n)),
                   key=lambda o: path_cost(start, points, o, cooling_weight))
        return list(best)
    return _two_opt(start, points, _greedy(start, points, cooling_weight), cooling_weight)


def nearest(start: Point | None, points: Sequence[Point], cooling_weight: float = 1.0) -> int:
    """Index of the point with the smallest changeover from ``start`` (first on ties)."""
    if not points:
        raise ValueError("nearest() needs at least one point")
    return min(range(len(points)), key=lambda i: changeover(start, points[i], cooling_weight))


def _greedy(start: Point | None, points: Sequence[Point], cooling_weight: float) -> list[int]:
    left, order, here = list(range(len(points))), [], start
    while left:
        i = left[nearest(here, [points[j] for j in left], cooling_weight)]
        order.append(i)
        left.remove(i)
        here = points[i]
    return order


def _two_opt(start: Point | None, points: Sequence[Point], order: list[int],
             cooling_weight: float) -> list[int]:
    """Reverse segments while that lowers the cost (a local optimum of the open path)."""
    best = path_cost(start, points, order, cooling_weight)
    improved = True
    while improved:
        improved = False
        for i in range(len(order) - 1):
            for j in range(i + 1, len(order)):
                cand = order[:i] + order[i:j + 1][::-1] + order[j + 1:]
                cost = path_cost(start, points, cand, cooling_weight)
                if cost < best - 1e-12:
                    order, best, improved = cand, cost, True
    return order
