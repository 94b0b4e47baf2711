"""Which streamed reading stands for a dynamic trial (``dynamic.representative``).

A dynamic step streams tens of readings; the campaign's *trial* (what ``best``, the stop rules
and the tracker see, and where a chemist would go back to make the product) is one of them, at
its RTD-mapped conditions, with its honest sigma. Picking the best-looking reading of many is a
bet on noise: a down-weighted reading (a mixture, its sigma inflated) can look best because its
error is large. Two rules (:data:`REPRESENTATIVES`):

* ``full_weight_first``: the best accepted reading by the objective's rank, among the
  full-weight ones where there are any. One full-weight reading of old fluid far from the
  proposal then beats every down-weighted reading near it, even when they are in band and it
  is not (seen on the twin: a hit found two trajectories late);
* ``cautious``: the best accepted reading by the objective's rank of its *one-sigma worst case*
  (:func:`cautious_outcomes`: every outcome moved one sigma against its term): a sharp reading
  wins among equals, and a down-weighted one wins only where even its worst case ranks first,
  for example in band when the sharp ones are not.

Either way the trial reports the reading's measured features and its mapped conditions: the
worst case only chooses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from autolab.dynamic.observe import DynamicObservation
from autolab.objective import Maximize, Minimize, ObjectiveSpec, Target

#: Weight at which a reading counts as taken at full weight (not down-weighted).
FULL_WEIGHT = 1.0 - 1e-9


def outcomes_of(o: DynamicObservation, names: Sequence[str]) -> dict[str, float]:
    """The reading's measured features ``names`` as objective outcomes."""
    return {k: float(o.features[k]) for k in names}


def _against_target(term: Target | Maximize | Minimize, y: float, sd: float) -> float:
    assert isinstance(term, Target)
    return y + math.copysign(sd, y - term.value) if y != term.value else y + sd


#: Outcome moved one sigma against a term, by term kind: (term, measured, sigma) -> worse value.
AGAINST: dict[str, Callable[[Target | Maximize | Minimize, float, float], float]] = {
    "target": _against_target,
    "maximize": lambda _t, y, sd: y - sd,
    "minimize": lambda _t, y, sd: y + sd,
}


def cautious_outcomes(o: DynamicObservation, objective: ObjectiveSpec) -> dict[str, float]:
    """The reading's outcomes, each one sigma against what the objective wants of it.

    A term's outcome moves against the term (away from a target value, down for a maximized
    outcome, up for a minimized one); an outcome read by a constraint only moves against the
    constraint. Outcomes the objective does not judge stay as measured.
    """
    out = outcomes_of(o, objective.outcome_names)
    moved: set[str] = set()
    for term in objective.terms:
        k = term.outcome
        out[k] = AGAINST[term.kind](term, out[k], float(o.sigma[k]))
        moved.add(k)
    for c in objective.constraints:
        if c.outcome not in moved:
            sd = float(o.sigma[c.outcome])
            out[c.outcome] += -sd if c.op == ">=" else sd
            moved.add(c.outcome)
    return out


def _best(candidates: Sequence[int], observations: Sequence[DynamicObservation],
          key: Callable[[DynamicObservation], Mapping[str, float]],
          objective: ObjectiveSpec) -> int | None:
    best = objective.best_index([key(observations[i]) for i in candidates])
    return None if best is None else candidates[best]


def full_weight_first(observations: Sequence[DynamicObservation],
                      objective: ObjectiveSpec) -> int | None:
    """The best accepted reading, among the full-weight ones where there are any."""
    accepted = [i for i, o in enumerate(observations) if o.accepted]
    full = [i for i in accepted if observations[i].weight >= FULL_WEIGHT]
    return _best(full or accepted, observations,
                 lambda o: outcomes_of(o, objective.outcome_names), objective)


def cautious(observations: Sequence[DynamicObservation],
             objective: ObjectiveSpec) -> int | None:
    """The accepted reading whose one-sigma worst case ranks best (:func:`cautious_outcomes`).

    A reading whose worst case may not be best at all (out of band) can still stand for the
    trial when no reading's worst case may: then the measured values decide, as
    ``full_weight_first`` would, so a step with usable readings always has a trial.
    """
    accepted = [i for i, o in enumerate(observations) if o.accepted]
    chosen = _best(accepted, observations, lambda o: cautious_outcomes(o, objective), objective)
    return chosen if chosen is not None else full_weight_first(observations, objective)


#: Representative rules by ``dynamic.representative``: (observations, objective) -> index.
REPRESENTATIVES: dict[str, Callable[[Sequence[DynamicObservation], ObjectiveSpec], int | None]] = {
    "full_weight_first": full_weight_first,
    "cautious": cautious,
}

__all__ = ["AGAINST", "FULL_WEIGHT", "REPRESENTATIVES", "cautious", "cautious_outcomes",
           "full_weight_first", "outcomes_of"]
