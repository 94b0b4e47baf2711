"""The first experiments of a campaign with a prior (``BotorchSettings.prior_start``).

With a prior (``prior: twin``) nothing is known of the reactor but the prior's predictions, so
the first experiment is read off the prior: it is evaluated on a seeded Sobol set of the space
(:data:`PRIOR_SEARCH_POINTS` points) and its predictions are treated as if they were
measurements. The rules of :data:`START_RULES` choose from those points:

* ``best``: one point, the prior's best by the objective's rule
  (``ObjectiveSpec.rank_key``: in band first, then feasible, then score), i.e. the twin's
  brightest in-band point.
* ``band_centre`` (default since the twelfth session): one point, chosen for the band only: of the
  points the prior puts in every band (and constraint), the medoid (least mean distance to the
  others in the unit cube). Why: on reactors far from the twin its brightest in-band point lies off
  band and where the twin, not the reactor, is bright; the middle of the predicted band is the
  point a shifted reactor keeps nearest to its own band, and it carries no bet on the twin's QY.
* ``band_spread``: ``prior_start_n`` points: the medoid, then one at a time the predicted
  in-band point farthest from those chosen (maximin), so the discrepancy is read across the
  band before the model starts.

A rule that finds no predicted in-band point falls back to ``best``. Each rule is a pure
function of the prior, the space, the objective and the seed, and the k-th start point is
proposed at the k-th experiment (experiments still running count, and so do failed ones), so a
resumed campaign proposes exactly what the uninterrupted one would have. A batch that does not
fit among the remaining start points (``ask(2)`` with one left) comes from the model whole.

Measured (docs/benchmarks.md, "The prior's first experiment chosen for the band"; twin prior,
lean harness, budget 30, paired against ``best``): on the design set ``band_centre`` found near
members' good hit at 2.5 against 7 and far members' at +0.0 (11/16 good hits against 10/16);
on the held-out set, run once with the rule fixed beforehand, near -1.0 (first in band equal)
and far -5.5 (6/8 good hits each). So it is the default. Against a cold start far members
still cost +4.0 experiments on the design set (+1.0 held out): the far cost is the QY climb
along the band after it is found. ``band_spread`` (n 3) put near members in band at 5 against
3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from autolab.objective import ObjectiveSpec
from autolab.optimizer.design import sobol_design
from autolab.optimizer.prior import OutcomePrior
from autolab.space import ParameterSpace

#: Points at which the prior is read to choose the first experiments.
PRIOR_SEARCH_POINTS = 4096

#: ``(points, judged predictions, n) -> row indices`` of the start points, in order.
StartRule = Callable[[NDArray[np.float64], "Judged", int], list[int]]


@dataclass(frozen=True)
class Judged:
    """The prior's predictions at the search points, judged as if they were measurements.

    Attributes:
        finite: Every outcome the objective reads is finite (other rows are never chosen).
        in_band: Every target band holds.
        feasible: Every outcome constraint holds.
        score: The objective's score (``-inf`` where not finite).
    """

    finite: NDArray[np.bool_]
    in_band: NDArray[np.bool_]
    feasible: NDArray[np.bool_]
    score: NDArray[np.float64]

    @property
    def in_spec(self) -> NDArray[np.bool_]:
        """Finite, in every band and feasible: what ``ObjectiveSpec.meets_tensor`` asks."""
        return self.finite & self.in_band & self.feasible


def _best(u: NDArray[np.float64], judged: Judged, n: int) -> list[int]:
    """The prior's best point, ranked as ``ObjectiveSpec.rank_key`` ranks (earliest wins ties)."""
    rows = np.flatnonzero(judged.finite)
    for key in (judged.in_band, judged.feasible, judged.score):
        if rows.size:
            rows = rows[key[rows] == key[rows].max()]
    return [int(rows[0])] if rows.size else []


def _medoid(u: NDArray[np.float64]) -> int:
    """Row of ``u`` with the least mean Euclidean distance to the other rows.

    Summed in blocks of rows, so a prior that puts the whole Sobol set in spec (an objective
    without a target) needs no ``n x n x d`` array.
    """
    total = np.concatenate([
        np.linalg.norm(u[i : i + 256, None, :] - u[None, :, :], axis=-1).sum(axis=1)
        for i in range(0, u.shape[0], 256)])
    return int(np.argmin(total))


def _band_spread(u: NDArray[np.float64], judged: Judged, n: int) -> list[int]:
    """The predicted band's medoid, then maximin along the band (``n`` points at most)."""
    rows = np.flatnonzero(judged.in_spec)
    if rows.size == 0:
        return _best(u, judged, n)
    pts = u[rows]
    chosen = [_medoid(pts)]
    nearest = np.linalg.norm(pts - pts[chosen[0]], axis=1)
    while len(chosen) < min(n, rows.size):
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(pts - pts[nxt], axis=1))
    return [int(rows[i]) for i in chosen]


def _band_centre(u: NDArray[np.float64], judged: Judged, n: int) -> list[int]:
    """The predicted band's medoid."""
    return _band_spread(u, judged, 1)


def judge(objective: ObjectiveSpec, values: Mapping[str, ArrayLike]) -> Judged:
    """Judge predicted outcomes (outcome -> values per point) by the objective, all at once.

    The same tests as ``ObjectiveSpec.rank_key`` asks of one measurement (its band test, its
    constraints, its score), on the whole array: reading 4,096 points one at a time took ~2.8 s
    of tensor building at every start-phase ask.
    """
    import torch  # noqa: PLC0415 (the optimizer's own dependency; lazy like its other users)

    cols = np.column_stack([np.asarray(values[k], dtype=np.float64)
                            for k in objective.outcome_names])
    finite = np.asarray(np.isfinite(cols).all(axis=1), dtype=np.bool_)
    Y = torch.as_tensor(np.where(finite[:, None], cols, 0.0))
    score = objective.score_tensor(Y).numpy()
    return Judged(finite=finite,
                  in_band=finite & objective.in_band_tensor(Y).numpy(),
                  feasible=finite & (objective.violations_tensor(Y) <= 0).all(dim=-1).numpy(),
                  score=np.where(finite & np.isfinite(score), score, -np.inf))


#: ``BotorchSettings.prior_start`` -> rule.
START_RULES: dict[str, StartRule] = {
    "best": _best,
    "band_centre": _band_centre,
    "band_spread": _band_spread,
}


def start_count(rule: str, n: int) -> int:
    """How many start points ``rule`` proposes when asked for ``n`` (``prior_start_n``)."""
    return n if rule == "band_spread" else 1


def prior_starts(prior: OutcomePrior, space: ParameterSpace, objective: ObjectiveSpec,
                 seed: int, *, rule: str, n: int) -> NDArray[np.float64] | None:
    """The start points of a campaign with a prior, in the order they are proposed.

    Args:
        prior: The prior.
        space: The searched space.
        objective: The objective (its ranking and band test).
        seed: Seed of the Sobol set the prior is read on.
        rule: A key of :data:`START_RULES`.
        n: How many points ``band_spread`` proposes (the others propose one).

    Returns:
        Unit-cube points, shape ``(k, d)`` with ``1 <= k <= n``, or ``None`` when the prior
        does not predict every outcome the objective reads or predicts nothing finite (then the
        Sobol design starts the campaign).
    """
    if not set(objective.outcome_names) <= set(prior.outcomes):
        return None
    u = sobol_design(space, seed, 0, PRIOR_SEARCH_POINTS)
    values = prior(space.from_unit(u))
    rows = START_RULES[rule](u, judge(objective, values), start_count(rule, n))
    return u[rows] if rows else None
