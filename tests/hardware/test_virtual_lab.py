"""The whole hardware path over real ptys: drivers vs emulators, a campaign, and fault scenarios.

Everything runs through pyserial and minimalmodbus against the emulators; assertions about the
safe state read the emulators' own state (what the pumps and heaters actually do).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autolab.analysis import analyze
from autolab.campaign import Campaign
from autolab.config import CampaignConfig, parse_campaign
from autolab.exceptions import ConditionsError, HardwareError, SafetyTrip
from autolab.executors.base import Executor
from autolab.executors.cstr import CSTRExecutor
from autolab.hardware.devices import load_devices, parse_devices
from autolab.hardware.fluidics import ROLES, Geometry, flow_setpoints
from autolab.hardware.rig import Rig
from autolab.records import Conditions, Measurement, TrialStatus
from autolab.tracking import Journal
from autolab.twin.transient import CascadeState, TankInputs, TransientCascade
from autolab.virtuallab.lab import VirtualLab
from autolab.virtuallab.reactor import HeaterModel, ManualClock, PumpModel, VirtualReactor

SCALE = 2400.0  # lab seconds per wall second
GOOD = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=290, tau_shell_min=15, cl_to_i=6,
                  s_to_zn=2)


def _when(predicate: Callable[[], bool], action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` once ``predicate`` holds (fault injection at a point of the sequence)."""
    def loop() -> None:
        for _ in range(2000):
            if predicate():
                action()
                return
            time.sleep(0.01)
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def _eventually(predicate: Callable[[], bool], limit_s: float = 15.0) -> bool:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with VirtualLab(time_scale=SCALE) as vl:
        yield vl


def _feeding(lab: VirtualLab) -> bool:
    with lab.reactor.lock:
        return lab.reactor.pumps["pump_halide_cl"].running


def _pumps_stopped(lab: VirtualLab) -> bool:
    with lab.reactor.lock:
        return not any(p.running for p in lab.reactor.pumps.values())


# ----------------------------------------------------------------------------- drivers
def test_drivers_over_ptys_verify_setpoints_and_refuse_limits(lab: VirtualLab,
                                                              tmp_path: Path) -> None:
    path = lab.write_devices_file(tmp_path / "devices.yaml")
    rig = Rig.open(load_devices(path))
    try:
        rig.connect()
        pump = rig.pumps["phosphine"]
        pump.set_rate_ml_min(0.4567)
        pump.start()
        assert lab.reactor.pumps["pump_phosphine"].running
        assert lab.reactor.pumps["pump_phosphine"].safe_timeout_s == 10  # Safe mode is on
        rig.heaters["core"].set_temperature_c(150.0)
        assert lab.reactor.heaters["heater_core"].remote_sp_c == 150.0
        rig.solvent_valve.move(4)
        assert lab.reactor.valves["solvent_valve"] == 4
        rig.stirrers["shell"].set_speed_rpm(450)
        rig.stirrers["shell"].start()
        assert rig.stirrers["shell"].speed_rpm() == 450
        # limits are checked before a byte is sent
        n = rig.log.count
        with pytest.raises(ConditionsError, match=r"heater_core.temperature_c"):
            rig.heaters["core"].set_temperature_c(400.0)
        assert rig.log.count == n
        # a garbled reply is retried; a silent device is named in the error
        lab.pumps.garble_next()
        assert rig.pumps["zinc"].state().status == "S"
        assert any("CRC" in e.error for e in rig.log.since(n))
        lab.valves["outlet_valve"].no_reply = True
        with pytest.raises(HardwareError, match="outlet_valve"):
            rig.outlet_valve.position()
        pump.stop()
        assert not lab.reactor.pumps["pump_phosphine"].running
    finally:
        rig.close()


def test_devices_file_errors_name_field_and_value(lab: VirtualLab) -> None:
    data = lab.devices_config().model_dump(mode="json")
    data["devices"]["pump_zinc"]["role"] = "zinc_oxide"
    with pytest.raises(Exception, match=r"devices.pump_zinc.role='zinc_oxide'"):
        parse_devices(data)
    data = lab.devices_config().model_dump(mode="json")
    data["devices"]["heater_core"]["kind"] = "toaster"
    with pytest.raises(Exception, match=r"devices.heater_core.kind.*toaster"):
        parse_devices(data)


# ----------------------------------------------------------------------------- physics thread
def test_the_lab_steps_its_tanks_in_a_thread_outside_the_lock(lab: VirtualLab) -> None:
    """The transient chemistry never runs under the reactor lock that every serial reply needs.

    Before, each request integrated the tanks under the lock (p99 12 ms, max 49 ms on a loaded
    host) and a heater's remote setpoint once timed out; the emulators now only record the
    inputs there.
    """
    reactor = lab.reactor
    assert isinstance(reactor.physics, TransientCascade)  # the default of the pty lab now
    seen: list[tuple[str, bool]] = []
    step = reactor.physics.step

    def spy(state: CascadeState, inputs: TankInputs, dt: float) -> CascadeState:
        seen.append((threading.current_thread().name, reactor.lock._is_owned()))  # type: ignore[attr-defined]
        return step(state, inputs, dt)

    reactor.physics.step = spy  # type: ignore[method-assign]
    rig = Rig.open(lab.devices_config())
    try:
        rig.connect()
        rig.heaters["core"].set_temperature_c(150.0)
        assert _eventually(lambda: len(seen) > 20)
    finally:
        rig.close()
    assert {name for name, _ in seen} == {"reactor-physics"}
    assert not any(owned for _, owned in seen)


def test_the_physics_thread_integrates_what_the_lock_would_have() -> None:
    """Segments of equal inputs merge into one exact step: same tanks as stepping each request."""
    def reactor() -> tuple[VirtualReactor, ManualClock]:
        clock = ManualClock()
        pumps = {f"pump_{r}": PumpModel(address=i, role=r, left_ml=0.0 if r == "bleed" else 50.0)
                 for i, r in enumerate(ROLES)}
        heaters = {"heater_core": HeaterModel(address=1, role="core"),
                   "heater_shell": HeaterModel(address=2, role="shell")}
        return VirtualReactor(Geometry(), pumps, heaters, clock,
                              resolve_transients=False), clock

    (inline, c1), (threaded, c2) = reactor(), reactor()
    threaded.start_stepping()
    flows = flow_setpoints(GOOD, Geometry()).rates_ml_min
    for r, c in ((inline, c1), (threaded, c2)):
        with r.lock:
            for p in r.pumps.values():
                p.rate_ml_min, p.running = flows.get(p.role, 0.0), flows.get(p.role, 0.0) > 0
            for h in r.heaters.values():
                h.pv_c = h.remote_sp_c = h.working_sp_c = 180.0 if h.role == "core" else 290.0
                h.remote = True
                h.remote_timeout_s = math.inf
        for _ in range(30):
            c.advance_min(1.5)
            with r.lock:
                r.advance()
    threaded.stop_stepping()
    assert len(threaded.step_wall_s) >= 1
    a, b = inline.cascade, threaded.cascade
    assert len(a.tracers) == len(b.tracers) >= 1
    for ta, tb in zip(a.tracers, b.tracers, strict=True):
        assert tb.conditions == ta.conditions
        assert tb.tanks == pytest.approx(ta.tanks, rel=1e-9, abs=1e-12)
    assert b.t_min == pytest.approx(a.t_min)


# ----------------------------------------------------------------------------- campaign
def _three_sobol_experiments(name: str, n: int = 3) -> CampaignConfig:
    """A short campaign of ``n`` experiments over three conditions, the rest fixed, no MLflow."""
    return parse_campaign({
        "name": name, "seed": 1,
        "space": {"parameters": ["t_core_c", "t_shell_c", "cl_to_i"],
                  "fixed": {"tau_core_min": 10, "tau_shell_min": 12, "s_to_zn": 2,
                            "p_to_in": 3.6}},
        "objective": {"mode": "scalar",
                      "terms": [{"kind": "maximize", "outcome": "qy", "scale": 0.1}]},
        "optimizer": {"kind": "sobol"}, "budget": {"max_experiments": n},
        "tracking": {"enabled": False}}, "test")


def test_campaign_of_three_experiments_through_the_serial_stack(lab: VirtualLab,
                                                                 tmp_path: Path) -> None:
    config = _three_sobol_experiments("cstr-virtual")
    executor = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    assert isinstance(executor, Executor)
    campaign = Campaign.create(config, tmp_path / "runs", executor=executor)
    result = campaign.run()
    assert len(result.trials) == 3
    for trial in result.trials:
        assert trial.measurement is not None
        m = trial.measurement
        assert isinstance(m, Measurement) and m.trace is not None
        assert m.spectra.pl_counts.shape == m.spectra.wavelengths_nm.shape
        assert m.lab_hours > 0 and m.reagent_ml["phosphine"] > 0
        assert any("pump_phosphine" in line for line in m.device_log)
        assert trial.status is TrialStatus.COMPLETED or trial.error
    assert any(t.status is TrialStatus.COMPLETED for t in result.trials)
    assert executor.lab_clock_h > sum(t.measurement.lab_hours for t in result.trials
                                      if t.measurement)
    # campaign.run closed the executor: the shutdown sequence left the rig safe
    assert _pumps_stopped(lab)
    report = executor.last_shutdown
    assert report is not None and report.ok, report and report.lines()
    assert not report.unsafe_devices
    with lab.reactor.lock:
        assert all(h.remote_sp_c == 25.0 for h in lab.reactor.heaters.values())


def test_the_one_procedure_settles_adaptively_and_skips_the_flush_over_ptys(
        lab: VirtualLab) -> None:
    """The serial rig runs the same procedure as the simulated rig: waits reported, flush
    skipped when the new feed washes the old product out, readings at the twin's truth."""
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    other = Conditions(t_core_c=200, tau_core_min=20, t_shell_c=300, tau_shell_min=15,
                       cl_to_i=20, s_to_zn=2)
    try:
        first, second = ex.run(other), ex.run(GOOD)
    finally:
        ex.close()
    # the last frame starts by the cap; the frame itself takes serial I/O on a wall-clock-scaled
    # lab (0.25 wall s here is 10 lab min), so a loaded machine overruns the cap by that much
    frame_slack_min = SCALE * 0.25 / 60.0
    for m, c in ((first, other), (second, GOOD)):
        md = m.metadata
        assert md["settle_reason"] in ("steady", "cap")
        assert (md["settle_floor_min"] - 1.0 <= md["wait_settle_min"]
                <= md["settle_cap_min"] + frame_slack_min)
        assert any(line.startswith("settle_reason: ") for line in m.device_log)
        truth = lab.reactor.twin.truth(c)
        assert analyze(m).pl_peak_nm == pytest.approx(truth.pl_peak_nm, abs=3)
    assert second.metadata["wait_flush_min"] == 0.0
    assert any("flush skipped" in line for line in second.device_log)
    assert second.metadata["wait_heat_idle_min"] < first.metadata["wait_heat_idle_min"]


#: A blocked reactor stalls the pump: the trip names the stall alarm, whichever query's reply
#: carried it, and also when that reply (which acknowledged the alarm) was lost to a timeout on
#: a loaded machine: the driver reads the Safe-mode auto-alarm packet and late replies instead
#: of throwing them away (tests/hardware/test_alarm_races.py). It once tripped as ``pump_idle``.
STOPPED = r"pump_stall"


def test_a_trip_mid_campaign_is_journaled_with_its_device_log(lab: VirtualLab,
                                                              tmp_path: Path) -> None:
    config = _three_sobol_experiments("cstr-trip")
    executor = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    campaign = Campaign.create(config, tmp_path / "runs", executor=executor)

    def block_in_second_experiment(c: Campaign, trial: object) -> None:
        if len(c.trials) == 1:
            _when(lambda: _feeding(lab), lambda: setattr(lab.reactor, "blocked", True))

    campaign.on_trial = block_in_second_experiment
    with pytest.raises(SafetyTrip, match=STOPPED):
        campaign.run()
    state = Journal.read(campaign.run_dir / "journal.jsonl")
    assert len(state.trials) == 1  # the first experiment, measured before the trip, is intact
    assert state.trials[0].measurement is not None
    assert [t.index for t in state.interrupted] == [1]
    assert re.search(STOPPED, state.interrupted[0].error or "")
    assert state.stopped_reason is not None and "SafetyTrip" in state.stopped_reason
    trip_notes = [n for n in state.notes if "before the trip" in n]
    assert trip_notes and "pump_" in trip_notes[0]
    assert _pumps_stopped(lab)


# ----------------------------------------------------------------------------- faults
def test_pump_stall_mid_run_trips_and_keeps_earlier_measurements(lab: VirtualLab) -> None:
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        first = ex.run(GOOD)
        _when(lambda: _feeding(lab), lambda: setattr(lab.reactor, "blocked", True))
        with pytest.raises(SafetyTrip, match=STOPPED):
            ex.run(GOOD)
        assert ex.supervisor.trip is not None and not ex.supervisor.trip.hard
        assert _pumps_stopped(lab)
        report = ex.last_shutdown
        assert report is not None and not report.hard
        assert {"solvent valve to core inlet", "solvent on"} <= {s.name for s in report.steps}
        # the outlet is still blocked, so the solvent stalls too: the flush is not claimed
        (failed,) = report.failed
        assert (failed.name, failed.device) == ("solvent flush", "pump_solvent"), report.lines()
        assert "alarm S" in failed.detail and "not fully flushed" in failed.action
        with lab.reactor.lock:
            assert all(h.remote_sp_c == 25.0 for h in lab.reactor.heaters.values())
        assert first.spectra.pl_counts.size > 0 and first.trace is not None
    finally:
        ex.close()


@pytest.mark.parametrize("fault", ["sensor_break", "over_temperature"])
def test_heater_faults_cut_heaters_and_pumps_at_once(lab: VirtualLab, fault: str) -> None:
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)

    def inject() -> None:
        with lab.reactor.lock:
            h = lab.reactor.heaters["heater_shell"]
            if fault == "sensor_break":
                h.sensor_break = True
            else:
                h.runaway = True
    try:
        _when(lambda: _feeding(lab), inject)
        with pytest.raises(SafetyTrip, match=fault):
            ex.run(GOOD)
        assert ex.supervisor.trip is not None and ex.supervisor.trip.hard
        assert _pumps_stopped(lab)
        with lab.reactor.lock:
            assert all(h.op_hi_pct == 0 for h in lab.reactor.heaters.values())
        report = ex.last_shutdown
        assert report is not None and report.hard
        assert "solvent on" not in {s.name for s in report.steps}  # hard: no flush
    finally:
        ex.close()


def test_comms_loss_trips_and_the_pumps_stop_themselves(lab: VirtualLab) -> None:
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        _when(lambda: _feeding(lab), lambda: setattr(lab.pumps, "disconnected", True))
        with pytest.raises((SafetyTrip, HardwareError)):
            ex.run(GOOD)
        # the host cannot reach the pumps: New Era Safe mode stops them (5 s without a packet)
        assert _eventually(lambda: _pumps_stopped(lab))
        with lab.reactor.lock:
            assert all(p.alarm in ("", "T") for p in lab.reactor.pumps.values())
    finally:
        ex.close()
