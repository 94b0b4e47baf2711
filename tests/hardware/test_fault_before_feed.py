"""A device fault found before an experiment or a trajectory feeds (a rig event) ends with the
feeds stopped, over the real drivers and the pty emulators.

A flow reactor's usual safe shutdown starts by stopping every reagent feed pump and verifying it
stopped. A rig event keeps the rig up for the kept proposal, so that is all it
does: heaters stay at their setpoints, no shutdown runs. In dynamic mode the previous
trajectory leaves its feeds running (the next one continues from its last point); before this,
a fault found at the next trajectory's start left them running into a rig known faulty until the
kept proposal's settle flush, and a pump at fault was re-initialized only at the next invalid
experiment. Faults are injected between runs and the tests wait on the supervisor's finding,
never on wall time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from autolab.dynamic import RampLimits, Trajectory
from autolab.exceptions import DeviceFault
from autolab.executors.cstr import CSTRExecutor
from autolab.executors.simulated import SimulatedExecutor
from autolab.hardware.delivery import PumpFinding
from autolab.hardware.fluidics import REAGENT_ROLES
from autolab.records import Conditions
from autolab.virtuallab.lab import VirtualLab

from .waiting import until

SCALE = 2400.0  # lab seconds per wall second
START = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=280, tau_shell_min=15, cl_to_i=6,
                   s_to_zn=2)
END = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=290, tau_shell_min=15, cl_to_i=6,
                 s_to_zn=2)
LIMITS = RampLimits.for_reactor(heating_c_per_min=10, cooling_c_per_min=5)


@pytest.fixture
def rig() -> Iterator[tuple[VirtualLab, CSTRExecutor]]:
    with VirtualLab(time_scale=SCALE) as lab:
        ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False,
                          poll_period_s=0.05)
        try:
            yield lab, ex
        finally:
            ex.close()


def _reagent_pumps_running(lab: VirtualLab) -> list[str]:
    with lab.reactor.lock:
        return [n for n, p in lab.reactor.pumps.items() if p.running and p.role in REAGENT_ROLES]


def _heaters_held(lab: VirtualLab, setpoints: dict[str, float]) -> None:
    """Heaters at their setpoints with their output allowed: no shutdown cooled or cut them."""
    with lab.reactor.lock:
        for name, sp in setpoints.items():
            h = lab.reactor.heaters[name]
            assert h.remote_sp_c == pytest.approx(sp) and h.op_hi_pct == 100.0, name


def test_a_fault_before_a_trajectory_stops_the_previous_trajectorys_feeds(
        rig: tuple[VirtualLab, CSTRExecutor]) -> None:
    """The phosphine pump slows to half its rate while the first trajectory's feeds run on;
    the supervisor finds the shortfall; the next trajectory's checks raise it as a rig event,
    and by then every feed is stopped and the slow pump was brought up again."""
    lab, ex = rig
    first = ex.run_trajectory(Trajectory((0.0, 10.0), (START, END)), LIMITS,
                              frame_interval_min=2.0)
    assert first.complete
    assert "pump_phosphine" in _reagent_pumps_running(lab)  # left on for the next trajectory
    lab.pumps.slow_down("pump_phosphine", 0.5)
    until(lambda: any(f.device == "pump_phosphine" for f in ex.monitor.pending_faults))
    mark = ex.rig.log.count
    with pytest.raises(DeviceFault, match="pump_phosphine") as info:
        ex.run_trajectory(Trajectory((0.0, 10.0), (END, START)), LIMITS, frame_interval_min=2.0)
    assert info.value.before_feed  # a rig event: nothing of this trajectory was fed
    assert _reagent_pumps_running(lab) == []
    with lab.reactor.lock:
        assert not any(p.running for p in lab.reactor.pumps.values())
    since = ex.rig.log.lines(mark)
    assert any(line.split()[1] == "pump_phosphine" and "DIA" in line for line in since), \
        "the pump at fault is re-initialized (connect sets its diameter again)"
    _heaters_held(lab, {"heater_core": END.t_core_c, "heater_shell": END.t_shell_c})
    assert ex.supervisor.trip is None and ex.last_shutdown is None


def test_a_fault_before_a_steady_experiment_ends_the_same_way(
        rig: tuple[VirtualLab, CSTRExecutor]) -> None:
    """Steady mode, the same path: the solvent pump runs (a make-up feed someone left on) and
    the solvent valve is turned by hand; the experiment's checks raise a rig event with the
    pump stopped, the heaters held and no shutdown."""
    lab, ex = rig
    ex.solvent_valve.move(2)
    for role, t_c in (("core", 150.0), ("shell", 200.0)):
        ex.set_heater_c(role, t_c)
    ex.monitor.start("solvent", 1.0)
    with lab.reactor.lock:
        lab.reactor.valves["solvent_valve"] = 1
    until(lambda: any(f.device == "solvent_valve" for f in ex.monitor.pending_faults))
    with pytest.raises(DeviceFault, match="solvent_valve") as info:
        ex.run(START)
    assert info.value.before_feed
    with lab.reactor.lock:
        assert not any(p.running for p in lab.reactor.pumps.values())
    _heaters_held(lab, {"heater_core": 150.0, "heater_shell": 200.0})
    assert ex.supervisor.trip is None and ex.last_shutdown is None
    assert ex.reagent_ml.get("solvent", 0.0) > 0.0  # what it fed is booked


def test_the_simulated_rig_stops_the_feeds_at_a_rig_event_between_trajectories() -> None:
    """The simulated rig ends a rig event between trajectories the same way: the previous
    trajectory's feeds stop at once and what they fed is booked (they ran on into the kept
    proposal's settle)."""
    ex = SimulatedExecutor(seed=1)
    ex.run_trajectory(Trajectory((0.0, 10.0), (START, END)), LIMITS, frame_interval_min=2.0)
    assert any(ex.session.monitor.is_running(r) for r in REAGENT_ROLES)
    booked = ex.reagent_ml  # the trajectory's feeds, booked up to its end
    ex.session.wait_min(5.0)  # the feeds run on between trajectories (a slow ask)
    ex.session.monitor.report(PumpFinding("solvent_valve", "solvent_valve", "valve_moved",
                                          "position 1, commanded 2", trip=False))
    with pytest.raises(DeviceFault, match="position 1, commanded 2") as info:
        ex.run_trajectory(Trajectory((0.0, 10.0), (END, START)), LIMITS, frame_interval_min=2.0)
    assert info.value.before_feed
    assert not any(ex.session.monitor.is_running(r) for r in ex.rig.pumps)
    with ex.rig.reactor.lock:
        assert not any(p.running for p in ex.rig.reactor.pumps.values())
    assert ex.reagent_ml["indium_halide"] > booked["indium_halide"]
