"""Dynamic experiments: ramps of the conditions, read all the way through by the inline spectra.

Pure layer (no I/O) between the twin's physics and the procedure/campaign that run it:

* :mod:`.trajectory`: :class:`Trajectory` (piecewise-linear conditions in time),
  :class:`RampLimits` (what the heaters and pumps can follow), :func:`check_trajectory`,
  :func:`plan_ramp`, :func:`plan_approach`, :func:`chain`, :func:`design_sweep`;
* :mod:`.rtd`: :func:`map_outlet`, the RTD-weighted conditions behind each outlet time and their
  spread, in flow-weighted time;
* :mod:`.observe`: :func:`observe`, streamed features -> :class:`DynamicObservation` with an
  honest uncertainty, down-weighted or refused (with a reason) when the ramp was too fast.

docs/dynamic.md describes the model, its assumptions and its limits.
"""

from autolab.dynamic.observe import (
    DEFAULT_SPREAD_LIMITS,
    DynamicObservation,
    MappingPolicy,
    SpreadLimit,
    observe,
    observe_batch,
    to_tell,
)
from autolab.dynamic.rtd import CascadeGeometry, MappedConditions, age_sd_min, map_outlet
from autolab.dynamic.trajectory import (
    RampLimits,
    RateLimit,
    Trajectory,
    approach_point,
    chain,
    check_trajectory,
    design_sweep,
    plan_approach,
    plan_ramp,
    ramp_duration_min,
)

__all__ = [
    "DEFAULT_SPREAD_LIMITS",
    "CascadeGeometry",
    "DynamicObservation",
    "MappedConditions",
    "MappingPolicy",
    "RampLimits",
    "RateLimit",
    "SpreadLimit",
    "Trajectory",
    "age_sd_min",
    "approach_point",
    "chain",
    "check_trajectory",
    "design_sweep",
    "map_outlet",
    "observe",
    "observe_batch",
    "plan_approach",
    "plan_ramp",
    "ramp_duration_min",
    "to_tell",
]
