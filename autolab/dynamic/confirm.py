"""When a dynamic step confirms its proposal by holding there (``dynamic.confirm_hold``).

A close step of ``plan: approach`` ends at its proposal and, with ``hold_at: after_jump``, holds
only briefly: the fluid made *at* the proposal reaches the optical cell about one residence time
later, and is read mixed into the next step's ramp. The trial of a step (its representative
reading) therefore sits on the slow leg *before* the proposal, and a proposal that is already a
good hit is judged one only trajectories later, when some reading happens to land near it.

A confirming hold reads the proposal's own fluid: after a step whose readings say the proposal
is promising, the next step does not ask but holds where the reactor is, until the mapping says
the fluid in the cell saw the proposal's conditions alone (:meth:`DynamicRunner.confirm_hold_min
<autolab.dynamic_step.DynamicRunner.confirm_hold_min>`). What counts as promising is read off the
step's *last* accepted reading (the latest fluid, made nearest the proposal), by a rule of
:data:`CONFIRM_RULES`:

* ``off``: never hold;
* ``in_band``: the last reading is in every target band and feasible;
* ``beats_best``: as ``in_band``, and its score beats the best in-band, feasible trial before
  the step (a hold costs lab time; it is spent only where the campaign may improve).

Pure: a function of the step's journaled observations and the earlier trials' scores, so the
decision can be recomputed from the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from autolab.dynamic.observe import DynamicObservation
from autolab.dynamic.represent import outcomes_of
from autolab.objective import ObjectiveSpec


def last_accepted(observations: Sequence[DynamicObservation]) -> DynamicObservation | None:
    """The step's latest accepted reading (the fluid made nearest its proposal), if any."""
    return next((o for o in reversed(observations) if o.accepted), None)


def _good(o: DynamicObservation, objective: ObjectiveSpec) -> float | None:
    """The reading's score when it is in band and feasible, else ``None``."""
    return objective.in_band_score(outcomes_of(o, objective.outcome_names))


def _off(_obs: Sequence[DynamicObservation], _objective: ObjectiveSpec,
         _best: float | None) -> bool:
    return False


def _in_band(obs: Sequence[DynamicObservation], objective: ObjectiveSpec,
             _best: float | None) -> bool:
    last = last_accepted(obs)
    return last is not None and _good(last, objective) is not None


def _beats_best(obs: Sequence[DynamicObservation], objective: ObjectiveSpec,
                best: float | None) -> bool:
    last = last_accepted(obs)
    score = None if last is None else _good(last, objective)
    return score is not None and (best is None or score > best)


#: ``dynamic.confirm_hold`` rules: (the step's observations, objective, best in-band trial
#: score before the step or ``None``) -> hold at the step's proposal next.
CONFIRM_RULES: dict[str, Callable[[Sequence[DynamicObservation], ObjectiveSpec, float | None],
                                  bool]] = {
    "off": _off,
    "in_band": _in_band,
    "beats_best": _beats_best,
}


def confirm_due(rule: str, observations: Sequence[DynamicObservation], objective: ObjectiveSpec,
                best: float | None) -> bool:
    """Whether the step that streamed ``observations`` is followed by a confirming hold.

    Args:
        rule: A key of :data:`CONFIRM_RULES` (``dynamic.confirm_hold``).
        observations: The step's readings, in stream order (refused ones included).
        objective: The campaign objective (bands, constraints, score).
        best: The best score among the in-band, feasible trials before the step (``None``:
            none yet).

    Returns:
        True when the next step should hold at the step's proposal.
    """
    return CONFIRM_RULES[rule](observations, objective, best)


__all__ = ["CONFIRM_RULES", "confirm_due", "last_accepted"]
