"""Every mL a trajectory feeds is booked (review item 5: ramps booked almost nothing).

A trajectory changes pump rates without stopping the pumps and ends with its feeds on; the
reagents were booked only when a pump stopped, so a dynamic campaign's totals (journal,
MLflow ``reagent_ml.*``, the report) missed its ramps and holds. Here the booking of a ramp and
hold that continues a stream is compared with the integral of the pump rates the rig's own
flow plan gives along the commanded trajectory (independent of the pumps' counters).
"""

from __future__ import annotations

import numpy as np
import pytest

from autolab.dynamic import RampLimits, Trajectory
from autolab.executors.simulated import REAGENT_OF_ROLE, SimulatedExecutor
from autolab.hardware.fluidics import flow_setpoints
from autolab.records import Conditions

A = Conditions(t_core_c=185, tau_core_min=15, t_shell_c=270, tau_shell_min=20, cl_to_i=2,
               s_to_zn=2, p_to_in=3.6)
B = Conditions(t_core_c=195, tau_core_min=9, t_shell_c=285, tau_shell_min=30, cl_to_i=4,
               s_to_zn=1.2, p_to_in=3.0)
LIMITS = RampLimits.for_reactor(heating_c_per_min=10, cooling_c_per_min=5)


def _integral_ml(ex: SimulatedExecutor, traj: Trajectory) -> dict[str, float]:
    """Reagent volumes of ``traj``: each pump's rate along it, integrated (trapezoid, 0.05 min)."""
    grid = np.linspace(0.0, traj.duration_min, int(traj.duration_min / 0.05) + 1)
    total: dict[str, float] = {}
    for role, reagent in REAGENT_OF_ROLE.items():
        rates = [flow_setpoints(traj.at(float(t)), ex.session.geometry).rates_ml_min.get(role, 0.0)
                 for t in grid]
        total[reagent] = total.get(reagent, 0.0) + float(np.trapezoid(rates, grid))
    return {k: v for k, v in total.items() if v > 0}


def test_a_ramp_and_hold_book_the_integral_of_their_pump_rates() -> None:
    ex = SimulatedExecutor(seed=4)
    ex.run_trajectory(Trajectory((0.0, 4.0), (A, A)), LIMITS, frame_interval_min=2.0)
    before = ex.reagent_ml
    ramp = Trajectory((0.0, 30.0, 50.0), (A, B, B))  # a slow leg, then a hold
    m = ex.run_trajectory(ramp, LIMITS, frame_interval_min=1.0)
    assert not m.settled  # the stream continued: no settle, no flush
    want = _integral_ml(ex, ramp)
    assert set(want) >= {"indium_halide", "phosphine", "shell_zn_s"}
    assert m.reagent_ml.keys() == want.keys()
    for reagent, ml in want.items():
        assert m.reagent_ml[reagent] == pytest.approx(ml, rel=0.02), reagent
        # the executor's totals (journaled, logged to MLflow) move on by the same
        assert ex.reagent_ml[reagent] - before[reagent] == pytest.approx(m.reagent_ml[reagent])
