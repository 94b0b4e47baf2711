"""A heater fault mid-ramp on the virtual lab (serial rig over ptys): the rig ends in its safe
state and the frames streamed up to the fault are kept (issue 10 §2).

Everything runs through the real drivers against the pty emulators; the fault is injected into
the emulated controller once the ramp has moved the shell heater's setpoint.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autolab.campaign import Campaign
from autolab.config import CampaignConfig, parse_campaign
from autolab.dynamic import RampLimits, Trajectory
from autolab.exceptions import SafetyTrip
from autolab.executors.cstr import CSTRExecutor
from autolab.executors.ramp import DynamicMeasurement, partial_of
from autolab.records import Conditions, TrialStatus
from autolab.tracking import Journal
from autolab.virtuallab.lab import VirtualLab

from .lab_waits import when

SCALE = 2400.0  # lab seconds per wall second
START = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=280, tau_shell_min=15, cl_to_i=6,
                   s_to_zn=2)
END = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=300, tau_shell_min=15, cl_to_i=6,
                 s_to_zn=2)
LIMITS = RampLimits.for_reactor(heating_c_per_min=10, cooling_c_per_min=5)



def shell_ramp_campaign(name: str, max_experiments: int, **dynamic: Any) -> CampaignConfig:
    """A Sobol dynamic campaign over the shell temperature alone (280-300 °C), untracked."""
    return parse_campaign({
        "name": name, "seed": 1, "mode": "dynamic",
        "space": {"parameters": ["t_shell_c"],
                  "bounds": {"t_shell_c": [280, 300]},
                  "fixed": {"t_core_c": 180, "tau_core_min": 13, "tau_shell_min": 15,
                            "cl_to_i": 6, "s_to_zn": 2, "p_to_in": 3.6}},
        "objective": {"mode": "scalar",
                      "terms": [{"kind": "maximize", "outcome": "qy", "scale": 0.1}]},
        "optimizer": {"kind": "sobol"}, "budget": {"max_experiments": max_experiments},
        "dynamic": {"frame_interval_min": 1.0, "hold_min": 5, "max_ramp_min": 30, **dynamic},
        "tracking": {"enabled": False}}, "test")

@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with VirtualLab(time_scale=SCALE) as vl:
        yield vl


def _ramping(lab: VirtualLab) -> bool:
    """The ramp has moved the shell heater's setpoint off the first point."""
    with lab.reactor.lock:
        return lab.reactor.heaters["heater_shell"].remote_sp_c > START.t_shell_c + 1.5


def _break_sensor(lab: VirtualLab) -> None:
    with lab.reactor.lock:
        lab.reactor.heaters["heater_shell"].sensor_break = True


def _safe(lab: VirtualLab) -> None:
    with lab.reactor.lock:
        assert not any(p.running for p in lab.reactor.pumps.values())
        assert all(h.op_hi_pct == 0 for h in lab.reactor.heaters.values())


def test_a_heater_fault_mid_ramp_trips_and_keeps_the_streamed_frames(lab: VirtualLab) -> None:
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False, poll_period_s=0.05)
    ramp = Trajectory((0.0, 120.0), (START, END))
    try:
        when(lambda: _ramping(lab), lambda: _break_sensor(lab))
        with pytest.raises(SafetyTrip, match="sensor_break") as info:
            ex.run_trajectory(ramp, LIMITS, frame_interval_min=1.0)
        partial = partial_of(info.value)
        assert isinstance(partial, DynamicMeasurement)
        assert not partial.complete and partial.settled
        assert len(partial.frames) >= 2 and len(partial.times_min) == len(partial.frames)
        assert partial.times_min[-1] < ramp.duration_min
        # the realized shell temperature is the block's process value, moving up the ramp
        shell = partial.realized.values("t_shell_c", partial.realized.times_min)
        assert shell[0] == pytest.approx(START.t_shell_c, abs=2.5)
        _safe(lab)
        report = ex.last_shutdown
        assert report is not None and report.hard
    finally:
        ex.close()


#: Streamed readings of the trajectory before the heater fault is injected: every trajectory
#: has at least two (at its start and at its end), however few a loaded host lets it take.
READINGS_BEFORE_FAULT = 2


class BreakAfterReadings:
    """Breaks the shell thermocouple after the Nth streamed reading: tied to progress, not time.

    Called by the spectrometer emulator after each frame (:meth:`frame`, under the reactor
    lock). The stream's readings are the absorbance frames of the sample cell after the last dye
    frame (the settle's reading and the stream's shared frames each end with one). After the
    fault the emulator holds its replies (:meth:`hold`, outside the lock) until the supervisor
    has tripped, bounded below the spectrometer's reply timeout, so the trip lands inside the
    trajectory however loaded the host is.
    """

    def __init__(self, lab: VirtualLab, executor: CSTRExecutor, hold_s: float = 1.5) -> None:
        self.lab, self.executor, self.hold_s = lab, executor, hold_s
        self.armed = False  # armed once the first trajectory is journaled
        self.readings: int | None = None  # None until the first dye frame after arming
        self.broken_after: int | None = None

    def frame(self, source: str, cell: str) -> None:
        if not self.armed:
            return
        if cell == "DYE":
            self.readings = 0
        elif source == "ABS" and cell == "SAMPLE" and self.readings is not None:
            self.readings += 1
            if self.broken_after is None and self.readings == READINGS_BEFORE_FAULT:
                self.broken_after = self.readings
                _break_sensor(self.lab)

    def hold(self) -> None:
        if self.broken_after is not None:
            end = time.monotonic() + self.hold_s
            while not self.executor.supervisor.tripped and time.monotonic() < end:
                time.sleep(0.005)


def test_a_dynamic_campaign_journals_the_stream_up_to_a_heater_fault(lab: VirtualLab,
                                                                     tmp_path: Path) -> None:
    config = shell_ramp_campaign("dynamic-trip", 3, rate_caps="devices")
    # spectrometer replies may wait up to 2 s (4 x 0.5): the injector holds them <= 1.5 s
    executor = CSTRExecutor(lab.devices_config(timeout_s=0.5), install_signal_handlers=False,
                            poll_period_s=0.05)
    breaker = BreakAfterReadings(lab, executor)
    lab.spectrometer.on_frame = breaker.frame
    lab.spectrometer.before_reply = breaker.hold
    campaign = Campaign.create(config, tmp_path / "runs", executor=executor)

    def arm_after_the_first(c: Campaign, trial: object) -> None:
        breaker.armed = breaker.armed or len(c.trials) == 1

    campaign.on_trial = arm_after_the_first
    with pytest.raises(SafetyTrip, match="sensor_break"):
        campaign.run()
    _safe(lab)
    assert breaker.broken_after == READINGS_BEFORE_FAULT
    state = Journal.read(campaign.run_dir / "journal.jsonl")
    # the fault lands in the second trajectory, after its second streamed reading; the first
    # is journaled whole (completed; or failed when the model refused every reading, which
    # the realized history on a loaded host can make it do: not this test's subject)
    assert len(state.trials) == 2, [(t.status, t.error) for t in state.trials]
    first, faulted = state.trials
    assert first.status is not TrialStatus.INVALID and state.extras[first.index]["dynamic"][
        "complete"]
    assert faulted.status is TrialStatus.INVALID
    assert "sensor_break" in (faulted.error or "")
    dyn = state.extras[faulted.index]["dynamic"]
    assert not dyn["complete"] and dyn["n_readings"] >= READINGS_BEFORE_FAULT
    assert len(dyn["observations"]) == dyn["n_readings"]
    assert (campaign.run_dir / dyn["frames_file"]).exists()
    assert state.stopped_reason is not None and "SafetyTrip" in state.stopped_reason
    assert not state.in_flight


def test_a_fault_found_during_a_trajectorys_settle_flush_is_a_rig_event(
        lab: VirtualLab, tmp_path: Path) -> None:
    """The first trajectory settles at its start (the steady procedure: flush, heat, feed):
    the core stirrer is stopped at its keypad as the flush sends the outlet to waste, and the
    outlet valve's reply is held until the supervisor has reported it (bounded below the reply
    timeout), so the fault is found in the flush, before any feed. A rig event, as in a steady
    campaign (it was an invalid trial): the trajectory's proposal runs again, no budget slot
    is spent, nothing is told."""
    config = shell_ramp_campaign("dynamic-flush-fault", 2)
    executor = CSTRExecutor(lab.devices_config(timeout_s=1.0), install_signal_handlers=False,
                            poll_period_s=0.1)
    step = {"armed": True, "hold": False}

    def on_move(position: int) -> None:  # under the reactor lock
        if step["armed"] and position == 2:
            step["armed"], step["hold"] = False, True
            lab.reactor.stirrers["stirrer_core"]["on"] = 0.0

    def hold() -> None:
        if step["hold"]:
            step["hold"] = False
            end = time.monotonic() + 0.8
            while time.monotonic() < end and not any(
                    f.device == "stirrer_core" for f in executor.monitor.pending_faults):
                time.sleep(0.005)

    lab.valves["outlet_valve"].on_move = on_move
    lab.valves["outlet_valve"].before_reply = hold
    campaign = Campaign.create(config, tmp_path / "runs", executor=executor)
    campaign.run()
    state = Journal.read(campaign.run_dir / "journal.jsonl")
    assert [t.index for t in state.trials] == [1, 2], [(t.status, t.error)
                                                       for t in state.trials]
    assert TrialStatus.INVALID not in {t.status for t in state.trials}
    (event,) = state.rig_events
    assert event["index"] == 0 and event["device"] == "stirrer_core"
    assert "feeds on" not in "\n".join(event["device_log"])  # nothing was fed
    assert state.started[1].conditions == state.started[0].conditions  # the proposal kept
    with lab.reactor.lock:  # ended safe
        assert not any(p.running for p in lab.reactor.pumps.values())
