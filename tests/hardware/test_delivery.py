"""Device lies the supervisor must notice, shutdowns that tell the truth, pump bring-up in either
mode (issue 12 §1). Everything runs over the real serial stack on ptys against the emulators;
the faults are injected into the emulated devices, written from the NE-1000 manual.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.campaign import Campaign
from autolab.exceptions import DeviceFault, HardwareError, SafetyTrip
from autolab.executors.cstr import CSTRExecutor
from autolab.hardware.delivery import (
    DeliveryMonitor,
    DeliveryTolerance,
    PumpFinding,
    check_delivery,
    wall_lab_min,
)
from autolab.hardware.devices import parse_devices
from autolab.hardware.protocols import newera
from autolab.hardware.rig import Rig
from autolab.hardware.safety import ShutdownReport, ShutdownStep
from autolab.records import TrialStatus
from autolab.tracking import Journal
from autolab.virtuallab.lab import VirtualLab

from .test_virtual_lab import (
    GOOD,
    SCALE,
    _eventually,
    _feeding,
    _pumps_stopped,
    _three_sobol_experiments,
    _when,
)

TOL = DeliveryTolerance()


@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with VirtualLab(time_scale=SCALE) as vl:
        yield vl


def _phosphine_running_a_while(lab: VirtualLab) -> bool:
    """The feeds are on and the phosphine pump has delivered something."""
    with lab.reactor.lock:
        p = lab.reactor.pumps["pump_phosphine"]
        return p.running and p.infused_ml > 2.0


# ----------------------------------------------------------------------------- pure check
@given(rate=st.floats(0.01, 50), run_min=st.floats(0.5, 500), jitter=st.floats(0, 0.5),
       share=st.floats(0, 1))
def test_delivery_check_passes_what_was_due_and_catches_a_third(rate: float, run_min: float,
                                                                jitter: float,
                                                                share: float) -> None:
    low, high = run_min, run_min * (1 + jitter)  # the run time is known within a window
    t = low + share * (high - low)  # how long it really ran
    assert check_delivery(rate * t, rate, low, high, TOL).ok
    if rate * low > 1.0:  # enough volume to judge: 30 %, nothing, or 200 % are caught
        assert not check_delivery(0.3 * rate * t, rate, low, high, TOL).ok
        assert not check_delivery(0.0, rate, low, high, TOL).ok
        assert not check_delivery(2.0 * rate * t, rate, low, high, TOL).ok


def test_shutdown_report_says_which_device_is_unsafe_and_what_to_do() -> None:
    report = ShutdownReport((
        ShutdownStep("stop pump zinc", "pump_zinc", True, ""),
        ShutdownStep("cut heater core", "heater_core", False, "no valid Modbus reply",
                     "heater 'core' may still be at 290 °C: switch off its mains")), hard=True)
    assert not report.ok
    assert report.unsafe_devices == ("heater_core",)
    text = "\n".join(report.lines())
    assert "INCOMPLETE" in text and "heater_core" in text and "switch off its mains" in text
    assert "done" not in report.summary()
    assert ShutdownReport((ShutdownStep("stop pump zinc", "pump_zinc", True, ""),)).ok


# ----------------------------------------------------------------------------- device lies
@pytest.mark.parametrize(("fault", "reason"), [("power_cycle", "pump_power_cycle"),
                                               ("keypad_pause", "pump_idle")])
def test_a_phosphine_pump_that_stops_mid_experiment_trips_the_rig(lab: VirtualLab, fault: str,
                                                                   reason: str) -> None:
    """Power cycle (alarm R, pump idle) or keypad pause (status P): never a chemistry result."""
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        _when(lambda: _phosphine_running_a_while(lab),
              lambda: getattr(lab.pumps, fault)("pump_phosphine"))
        with pytest.raises(SafetyTrip, match=reason) as info:
            ex.run(GOOD)
        assert "pump_phosphine" in str(info.value)
        assert ex.supervisor.trip is not None and ex.supervisor.trip.device == "pump_phosphine"
        report = info.value.shutdown
        assert isinstance(report, ShutdownReport) and report.ok
        assert ex.last_shutdown is report
        assert "shutdown soft complete" in str(info.value)
        assert _pumps_stopped(lab)
        assert any("pump_phosphine" in line for line in info.value.device_log)
    finally:
        ex.close()


def test_a_pump_at_30_percent_invalidates_the_experiment_then_trips_when_it_recurs(
        lab: VirtualLab) -> None:
    """Under-delivery: DeviceFault (not a chemistry result), the rig stays up; twice = trip."""
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        _when(lambda: _feeding(lab), lambda: lab.pumps.slow_down("pump_phosphine", 0.3))
        with pytest.raises(DeviceFault) as info:
            ex.run(GOOD)
        fault = info.value
        assert fault.device == "pump_phosphine"
        assert "were due" in str(fault) and "invalid" in str(fault)
        assert fault.device_log  # what the devices said, for the journal
        assert not ex.supervisor.tripped  # invalidated, not tripped: the rig stays up
        assert _pumps_stopped(lab)  # the feeds were stopped
        with lab.reactor.lock:  # heaters still on for the next experiment
            assert lab.reactor.heaters["heater_core"].remote_sp_c == GOOD.t_core_c
        assert ex.reagent_ml["phosphine"] > 0  # what was used is still booked
        # the pump is still slow: the second consecutive delivery fault trips the rig
        with pytest.raises(SafetyTrip, match=r"pump_delivery.*pump_phosphine") as trip:
            ex.run(GOOD)
        report = trip.value.shutdown  # complete, and it asked every pump last
        assert isinstance(report, ShutdownReport)
        assert report.ok, report.lines()
        assert {s.device for s in report.steps if s.name.endswith("confirmed stopped")} == {
            p.name for p in ex.rig.pumps.values()}, report.lines()
        assert _pumps_stopped(lab), report.lines()
    finally:
        ex.close()


# ----------------------------------------------------------------------------- shutdown
def test_a_silent_outlet_valve_at_shutdown_is_reported_and_nothing_is_pumped_into_it(
        lab: VirtualLab) -> None:
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    lab.valves["outlet_valve"].no_reply = True
    ex.close()
    report = ex.last_shutdown
    assert report is not None and not report.ok
    failed = {s.name: s for s in report.steps if not s.ok}
    assert "outlet valve to waste" in failed
    assert failed["outlet valve to waste"].device == "outlet_valve"
    assert "turn it to waste by hand" in failed["outlet valve to waste"].action
    assert "outlet_valve" in report.unsafe_devices
    # never pump solvent against an outlet that may be closed
    assert "solvent on" not in {s.name for s in report.steps}
    assert "flush it by hand" in failed["solvent flush"].action
    with lab.reactor.lock:
        assert not lab.reactor.pumps["pump_solvent"].running
    assert "INCOMPLETE" in report.summary()


def test_garbled_heater_replies_fail_both_cut_steps_and_the_trip_says_so(
        lab: VirtualLab) -> None:
    config = lab.devices_config()
    heaters = config.ports["heaters"].model_copy(update={"timeout_s": 0.3})  # fail fast
    config = config.model_copy(update={"ports": {**config.ports, "heaters": heaters}})
    ex = CSTRExecutor(config, install_signal_handlers=False)
    try:
        ex.supervisor.set_heater_c("core", 290.0)
        ex.supervisor.set_heater_c("shell", 250.0)
        assert _eventually(lambda: ex.supervisor.last_pv_c.get("core", 0.0) > 150, 60)
        lab.heaters.garble_next(10**9)
        assert _eventually(lambda: ex.last_shutdown is not None, 60)
        with pytest.raises(SafetyTrip) as info:
            ex.run(GOOD)
        message = str(info.value)
        assert "comms_loss" in message
        assert "shutdown hard done" not in message and "INCOMPLETE" in message
        report = info.value.shutdown
        assert isinstance(report, ShutdownReport) and report.hard
        failed = [s for s in report.steps if not s.ok]
        assert {s.name for s in failed} == {"cut heater core", "cut heater shell"}
        assert report.unsafe_devices == ("heater_core", "heater_shell")
        core = next(s for s in failed if s.device == "heater_core")
        assert "heater 'core' may still be at" in core.action
        assert "switch off its mains" in core.action
        assert all(s.ok for s in report.steps if s.name.startswith("stop pump"))
    finally:
        ex.close()


# ----------------------------------------------------------------------------- bring-up
def _raw_exchange(fd: int, request: bytes, wait_s: float = 0.5) -> bytes:
    os.write(fd, request)
    out = b""
    end = time.monotonic() + wait_s
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            out += os.read(fd, 256)
    return out


def test_emulated_pumps_answer_only_in_their_own_mode() -> None:
    """Manual: in Safe mode all traffic is Safe packets; a Basic pump is not said to take them."""
    with VirtualLab(time_scale=SCALE) as lab:
        with lab.reactor.lock:
            for p in lab.reactor.pumps.values():
                p.ignore_next, p.alarm = False, ""
            lab.reactor.pumps["pump_zinc"].safe_timeout_s = 5
        fd = os.open(lab.pumps.port, os.O_RDWR | os.O_NOCTTY)
        try:
            zinc = lab.reactor.pumps["pump_zinc"].address
            cl = lab.reactor.pumps["pump_halide_cl"].address
            assert _raw_exchange(fd, newera.encode_safe(cl, "")) == b""  # Basic pump
            assert newera.parse_basic(_raw_exchange(fd, newera.encode_basic(cl, ""))).status == "S"
            assert _raw_exchange(fd, newera.encode_basic(zinc, "SAF", "0")) == b""  # Safe pump
            assert newera.parse_safe(_raw_exchange(fd, newera.encode_safe(zinc, ""))).status == "S"
        finally:
            os.close(fd)


@pytest.mark.parametrize(("start_safe_s", "configured_s"), [(0, 5), (7, 5), (7, 0)])
def test_pump_bring_up_from_either_mode(start_safe_s: int, configured_s: int) -> None:
    """Freshly powered pumps (Basic, alarm R, first command ignored) or left in Safe mode."""
    with VirtualLab(time_scale=SCALE, pump_safe_mode_s=start_safe_s) as lab:
        rig = Rig.open(lab.devices_config(safe_mode_s=configured_s))
        try:
            for name in ("phosphine", "solvent"):
                pump = rig.pumps[name]
                pump.connect()
                assert pump.found_mode == ("safe" if start_safe_s else "basic")
                with lab.reactor.lock:
                    assert lab.reactor.pumps[pump.name].safe_timeout_s == configured_s
                assert pump.state().status == "S"
                assert "R" in pump.alarms  # the power-up alarm was seen and acknowledged
                pump.set_rate_ml_min(1.5)
                pump.start()
                assert pump.state().pumping
                pump.stop()
        finally:
            rig.close()


def test_a_pump_that_never_answers_is_named_with_both_modes_tried(lab: VirtualLab) -> None:
    lab.pumps.no_reply = True
    rig = Rig.open(lab.devices_config(timeout_s=0.05))
    try:
        with pytest.raises(Exception, match=r"pump_halide_cl.*neither in Basic nor in Safe"):
            rig.pumps["halide_cl"].connect()
    finally:
        rig.close()


def test_the_driver_never_swallows_a_power_reset(lab: VirtualLab) -> None:
    """An R answering some other command (a rate query) still reaches the next state poll."""
    rig = Rig.open(lab.devices_config())
    try:
        pump = rig.pumps["zinc"]
        pump.connect()
        lab.pumps.power_cycle("pump_zinc")
        assert pump.rate_read_ml_min() >= 0  # the alarm reply is acknowledged on the way
        state = pump.state()
        assert state.alarm == "R" and state.alarms == ("R",)
        assert pump.state().alarm == ""  # handed out once
    finally:
        rig.close()



# ----------------------------------------------------------------------------- campaign
def test_campaign_journals_a_misdelivered_experiment_as_invalid(lab: VirtualLab,
                                                                 tmp_path: Path) -> None:
    """The 30 % pump in a campaign: the trial is invalid (not a chemistry failure, not told to
    the optimizer) and the campaign is not stopped by it.
    """
    executor = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    campaign = Campaign.create(_three_sobol_experiments("cstr-invalid", n=1), tmp_path / "runs",
                               executor=executor)
    _when(lambda: _feeding(lab), lambda: lab.pumps.slow_down("pump_phosphine", 0.3))
    campaign.run()
    state = Journal.read(campaign.run_dir / "journal.jsonl")
    (trial,) = state.trials
    assert trial.status is TrialStatus.INVALID, trial
    assert trial.error is not None and "pump_phosphine" in trial.error
    assert "were due" in trial.error
    assert "no usable emission" not in trial.error  # never a chemistry result
    assert trial.objective is None and trial.features is None
    assert state.stopped_reason is not None and state.stopped_reason.startswith("budget")
    assert _pumps_stopped(lab)


def test_campaign_with_a_silent_outlet_valve_at_the_end_is_a_device_failure(
        lab: VirtualLab, tmp_path: Path) -> None:
    """Issue 12: it ended "finished: budget" with nothing journaled."""
    executor = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    campaign = Campaign.create(_three_sobol_experiments("cstr-outlet", n=1), tmp_path / "runs",
                               executor=executor)

    def outlet_goes_silent(c: Campaign, trial: object) -> None:
        lab.valves["outlet_valve"].no_reply = True

    campaign.on_trial = outlet_goes_silent
    campaign.run()
    state = Journal.read(campaign.run_dir / "journal.jsonl")
    failed = [n for n in state.notes if "outlet valve to waste" in n and "FAILED" in n]
    assert failed, state.notes
    assert "outlet_valve" in failed[0] and "turn it to waste by hand" in failed[0]
    assert state.stopped_reason is not None
    assert state.stopped_reason.startswith("device failure"), state.stopped_reason
    assert "outlet_valve" in state.stopped_reason
    with lab.reactor.lock:
        assert not any(p.running for p in lab.reactor.pumps.values())


# ----------------------------------------------------------------------------- each mismatch
def _set(lab: VirtualLab, **values: float | bool) -> None:
    with lab.reactor.lock:
        for k, v in values.items():
            setattr(lab.reactor.pumps["pump_zinc"], k, v)


@pytest.mark.parametrize(("commanded", "behind_its_back", "reason", "trip"), [
    (1.0, {"rate_ml_min": 2.0, "rate_units": "MM"}, "pump_rate", True),  # keypad rate change
    (1.0, {"infuse": False, "left_ml": 2500.0}, "pump_state", True),  # withdrawing reagent
    (1.0, {"rate_fraction": 2.0}, "pump_delivery", False),  # delivers twice what was set
    (0.0, {"running": True}, "pump_running", True),  # pumps though commanded to stop
])
def test_every_kind_of_mismatch_is_found_by_the_monitor(
        lab: VirtualLab, commanded: float, behind_its_back: dict[str, float | bool],
        reason: str, trip: bool) -> None:
    rig = Rig.open(lab.devices_config())
    try:
        pump = rig.pumps["zinc"]
        pump.connect()
        monitor = DeliveryMonitor(rig.pumps, wall_lab_min(SCALE))
        if commanded:
            monitor.start("zinc", commanded)
            assert monitor.poll("zinc") is None  # as commanded: nothing to report
        _set(lab, **behind_its_back)
        time.sleep(0.2)  # 8 lab minutes at SCALE
        finding = monitor.poll("zinc")
        assert finding is not None, behind_its_back
        assert (finding.reason, finding.trip, finding.device) == (reason, trip, "pump_zinc")
        assert monitor.locked_out is trip
        if not trip:  # an invalidating fault waits for the executor, once
            assert [f.reason for f in monitor.take_faults()] == [reason]
            assert monitor.poll("zinc") is None
    finally:
        rig.close()


def test_a_reset_acknowledged_by_the_procedures_own_stop_trips_at_once(lab: VirtualLab) -> None:
    """The procedure, not the supervisor, meets the R: still a trip, not a delivery fault."""
    rig = Rig.open(lab.devices_config())
    try:
        rig.pumps["zinc"].connect()
        monitor = DeliveryMonitor(rig.pumps, wall_lab_min(SCALE))
        tripped: list[str] = []
        monitor.on_trip = lambda f: tripped.append(f.reason)
        monitor.start("zinc", 1.0)
        lab.pumps.power_cycle("pump_zinc")
        finding = monitor.stop("zinc")
        assert finding is not None and finding.reason == "pump_power_cycle" and finding.trip
        assert tripped == ["pump_power_cycle"] and monitor.locked_out
        assert monitor.take_faults() == []  # not an (invalidating) delivery fault
        with pytest.raises(Exception, match="start refused"):
            monitor.start("zinc", 1.0)
    finally:
        rig.close()


def test_the_delivery_tolerance_comes_from_the_devices_file(lab: VirtualLab) -> None:
    data = lab.devices_config().model_dump(mode="json")
    data["delivery"] = {"rel": 0.05, "abs_ml": 0.01}
    ex = CSTRExecutor(parse_devices(data), install_signal_handlers=False)
    try:
        assert ex.monitor.tolerance == DeliveryTolerance(rel=0.05, abs_ml=0.01)
    finally:
        ex.close()
    data["delivery"] = {"rel": 1.5}
    with pytest.raises(Exception, match=r"delivery\.rel"):
        parse_devices(data)


def test_an_alarm_that_answers_a_poll_query_is_that_alarm_not_a_comms_loss(
        lab: VirtualLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query the pump answers with its stall alarm raises ``PumpAlarm`` in the driver; the
    pump did answer, so the monitor names the stall (a comms loss would shut down hard)."""
    from autolab.hardware.drivers import PumpAlarm

    rig = Rig.open(lab.devices_config())
    try:
        pump = rig.pumps["zinc"]
        pump.connect()
        monitor = DeliveryMonitor(rig.pumps, wall_lab_min(SCALE))
        monitor.start("zinc", 0.5)

        def stalled() -> None:
            raise PumpAlarm("pump_zinc", "S")

        monkeypatch.setattr(pump, "state", stalled)
        finding = monitor.poll("zinc")
        assert finding is not None
        assert (finding.reason, finding.trip, finding.device) == ("pump_stall", True, "pump_zinc")
        assert monitor.locked_out
    finally:
        monkeypatch.undo()
        rig.close()


def test_a_pump_that_answers_its_start_with_its_alarm_trips_as_that_alarm(
        lab: VirtualLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in a fresh-clone CI run: a blocked reactor stalled a pump as it started, RUN was
    answered with the stall alarm, and the experiment ended as a bare device failure instead of
    the stall's trip (soft shutdown) that a poll would have found."""
    from autolab.hardware.drivers import PumpAlarm

    rig = Rig.open(lab.devices_config())
    trips: list[PumpFinding] = []
    try:
        pump = rig.pumps["zinc"]
        pump.connect()
        monitor = DeliveryMonitor(rig.pumps, wall_lab_min(SCALE))
        monitor.on_trip = trips.append

        def stalled() -> None:
            raise PumpAlarm("pump_zinc", "S")

        monkeypatch.setattr(pump, "start", stalled)
        with pytest.raises(HardwareError, match="motor stalled"):
            monitor.start("zinc", 0.5)
        assert [(f.reason, f.trip, f.device) for f in trips] == [
            ("pump_stall", True, "pump_zinc")]
        assert monitor.locked_out
        assert not monitor.is_running("zinc")
    finally:
        monkeypatch.undo()
        rig.close()
