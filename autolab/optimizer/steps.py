"""Steps: groups of told observations that the trust region counts as one experiment.

Why: the trust region's TuRBO counters (:func:`~autolab.optimizer.thompson.trust_region_length`)
advance once per entry of the history: three improvements in a row double the box, ``max(4, d)``
misses in a row halve it. A steady campaign tells one reading per experiment, so an entry is an
experiment. A dynamic campaign (``mode: dynamic``) tells tens of streamed readings per
trajectory; counted one by one, the readings of a single ramp away from the best point halve
the box several times, and a lucky reading resets the count, so the box follows the ramps' shape
and not the search's progress. Told with a *step* id (the trajectory's trial index), the
readings of one step become one entry: the best in-band value among them, or ``None`` if none
was in band. That is what the step found, and a step improves on the best so far or does not.

The grouping is a pure function of the told history (values and step ids, both journaled), so a
resumed campaign proposes what the uninterrupted one would have. Observations told without a
step id (every steady campaign) are each their own step: the history is the one they always had.
"""

from __future__ import annotations

from collections.abc import Sequence

from autolab.exceptions import OptimizerError

#: Relative gain of the best value that counts as an improvement (TuRBO's threshold): the trust
#: region's counters and dynamic mode's stall rule both judge progress by :func:`improves`.
MIN_IMPROVEMENT = 1e-3


def improves(value: float | None, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` by more than :data:`MIN_IMPROVEMENT` (relative).

    Read noise alone must not count as progress; any value improves on no best at all.
    """
    return value is not None and (
        best is None or value > best + MIN_IMPROVEMENT * max(1.0, abs(best)))


def step_history(values: Sequence[float | None], steps: Sequence[int | None]
                 ) -> list[float | None]:
    """Per step, in order of its first observation, the best value among its observations.

    Args:
        values: Per told observation in order, its value (``None``: failed or out of band).
        steps: Aligned with ``values``: the observation's step id, or ``None`` for a step of
            its own.

    Returns:
        One entry per step: the largest of its values that are not ``None``, else ``None``.

    Raises:
        OptimizerError: ``values`` and ``steps`` differ in length.
    """
    if len(values) != len(steps):
        raise OptimizerError(f"step_history: {len(values)} values but {len(steps)} step ids")
    out: list[float | None] = []
    where: dict[int, int] = {}
    for value, step in zip(values, steps, strict=True):
        if step is None or step not in where:
            if step is not None:
                where[step] = len(out)
            out.append(value)
            continue
        i = where[step]
        best = out[i]
        if value is not None and (best is None or value > best):
            out[i] = value
    return out


def checked_steps(steps: Sequence[int | None] | None, n: int, field: str
                  ) -> list[int | None]:
    """``steps`` validated against ``n`` told observations (``None``: each its own step).

    Args:
        steps: Step id per observation (non-negative int or ``None``), or ``None``.
        n: Number of observations told with them.
        field: What the error names (``"tell(steps=...)"``, ``"state['steps']"``).

    Raises:
        OptimizerError: Not a list aligned with the observations, or an id that is not a
            non-negative int or ``None``.
    """
    if steps is None:
        return [None] * n
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise OptimizerError(f"{field} must be a list of step ids (one per observation), "
                             f"got {steps!r}")
    if len(steps) != n:
        raise OptimizerError(f"{field} has {len(steps)} step ids for {n} observations; "
                             "expected one per observation")
    for i, s in enumerate(steps):
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 0):
            raise OptimizerError(f"{field}[{i}] = {s!r}: expected a non-negative int step id "
                                 "or None (a step of its own)")
    return list(steps)
