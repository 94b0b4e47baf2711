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
from autolab.executors.cstr import CSTRExecutor
from autolab.executors.simulated import REAGENT_OF_ROLE, SimulatedExecutor
from autolab.hardware.fluidics import flow_setpoints
from autolab.records import Conditions
from autolab.virtuallab.lab import VirtualLab

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


SERIAL_START = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=280, tau_shell_min=15,
                          cl_to_i=6, s_to_zn=2)
SERIAL_END = Conditions(t_core_c=180, tau_core_min=10, t_shell_c=280, tau_shell_min=20,
                        cl_to_i=4, s_to_zn=2)


def test_a_ramp_on_the_serial_rig_books_what_its_pumps_dispensed() -> None:
    """The rig path: the real drivers over the virtual lab's pty emulators (their pumps count
    ``DIS`` as a pump does). A second trajectory continues the stream: rates change at every
    step and the feeds stay on at its end. Its lab time runs on the wall clock (a loaded host
    stretches the steps), so the check brackets it: each pump's rate moves monotonically from
    the first point's to the last's, so what it fed between the first trajectory's booking and
    this one's lies between the lower rate times the shortest that window can be and the
    higher rate times the longest (without booking the running hold it fell below the lower
    bound)."""
    with VirtualLab(time_scale=2400.0) as lab:
        ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False,
                          poll_period_s=0.05)
        try:
            first = ex.run_trajectory(Trajectory((0.0, 2.0), (SERIAL_START, SERIAL_START)),
                                      LIMITS, frame_interval_min=1.0)
            booked_h = ex.lab_clock_h  # the first trajectory was booked between these two
            # a short ramp, then a long hold: the hold's feeds are still on at the end
            ramp = Trajectory((0.0, 8.0, 24.0), (SERIAL_START, SERIAL_END, SERIAL_END))
            m = ex.run_trajectory(ramp, LIMITS, frame_interval_min=1.0)
            assert not m.settled
            # this one's window: at least from the first's booking to its last frame, at most
            # from the first's last frame to now
            least_min = (m.finished_lab_h - booked_h) * 60.0
            most_min = (ex.lab_clock_h - first.finished_lab_h) * 60.0
            session = ex.procedure.rig
            rates = [session.setpoints(c).flows.rates_ml_min for c in (SERIAL_START, SERIAL_END)]
            fed = [role for role, q in rates[0].items() if q > 0 and role != "bleed"]
            assert len(fed) >= 5
            for role in fed:
                lo, hi = sorted(r[role] for r in rates)
                booked = m.reagent_ml[ex.rig.reagent(role)]
                assert 0.99 * lo * least_min <= booked <= 1.01 * hi * most_min, role
        finally:
            ex.close()
