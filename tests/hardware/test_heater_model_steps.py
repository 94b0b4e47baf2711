"""The virtual heater block's sub-steps are the plain per-step update, bit for bit.

The simulated rig polls heating blocks on a clock that jumps, so one ``advance`` runs up to 200
sub-steps; what they share is computed once. The reference is the per-step form it replaced.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from autolab.virtuallab.reactor import HeaterModel


def _per_step(m: HeaterModel, dt_min: float, target: float) -> tuple[float, float]:
    sp, pv = m.working_sp_c, m.pv_c
    steps = max(1, min(200, math.ceil(dt_min / 0.1)))
    h = dt_min / steps
    for _ in range(steps):
        if m.ramp_c_per_min > 0:
            d = target - sp
            sp += math.copysign(min(abs(d), m.ramp_c_per_min * h), d)
        else:
            sp = target
        goal = pv if m.manual else sp
        if m.op_hi_pct <= 0:
            goal = m.ambient_c
        elif m.runaway:
            goal = 500.0
        dv = (goal - pv) * (1 - math.exp(-h / m.lag_min))
        dv = min(dv, m.max_heat_c_per_min * h) if dv > 0 else max(dv, -m.max_cool_c_per_min * h)
        pv += dv
    return sp, pv


@pytest.mark.parametrize("case", [{}, {"ramp_c_per_min": 3.0}, {"manual": True},
                                  {"runaway": True}, {"op_hi_pct": 0.0},
                                  {"ramp_c_per_min": 0.5, "lag_min": 2.0}])
def test_heater_sub_steps_equal_the_per_step_update(case: dict[str, object]) -> None:
    m = replace(HeaterModel(address=1, role="core", pv_c=40.0, working_sp_c=40.0,
                            local_sp_c=260.0), **case)
    for dt in (0.05, 0.1, 0.37, 1.0, 7.3, 25.0, 60.0):
        sp, pv = _per_step(m, dt, m.local_sp_c)
        m.advance(dt)
        assert (m.working_sp_c, m.pv_c) == (sp, pv)
        m.local_sp_c = 120.0 if m.local_sp_c > 200 else 260.0
