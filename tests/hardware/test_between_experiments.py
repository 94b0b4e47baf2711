"""Faults found between two experiments on the serial rig (real drivers over ptys).

A valve turned by hand, a stirrer stopped at its keypad, a heater block straying from its
setpoint: the supervisor finds each while the rig waits between experiments; the checks before
the next experiment raise it as a device fault found before anything was fed, and the campaign
journals a rig event (device, its log, reason), runs the proposal after it and spends no budget
slot on it. Faults are injected once the first trial is journaled (the campaign's own callback)
and the wait is on the supervisor's finding, never on wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autolab.campaign import JOURNAL_NAME, Campaign, RigDoesNotRecover, StopReason
from autolab.exceptions import HardwareError
from autolab.executors.cstr import CSTRExecutor
from autolab.records import TrialStatus
from autolab.tracking import Journal
from autolab.virtuallab.lab import VirtualLab

from .test_virtual_lab import SCALE, _three_sobol_experiments
from .waiting import until


def _turn_valve(lab: VirtualLab) -> Callable[[], None]:
    with lab.reactor.lock:
        assert lab.reactor.valves["solvent_valve"] == 2  # make-up, as the run left it
        lab.reactor.valves["solvent_valve"] = 1
    return lambda: None  # the next experiment moves it back


def _stop_stirrer(lab: VirtualLab) -> Callable[[], None]:
    with lab.reactor.lock:
        lab.reactor.stirrers["stirrer_core"]["on"] = 0.0  # stopped at its keypad
    return lambda: None  # the next experiment starts it again


def _cut_heater(lab: VirtualLab) -> Callable[[], None]:
    with lab.reactor.lock:
        lab.reactor.heaters["heater_shell"].op_hi_pct = 0.0  # the block cools off its setpoint

    def repair() -> None:  # a loose connector, pushed back
        with lab.reactor.lock:
            lab.reactor.heaters["heater_shell"].op_hi_pct = 100.0
    return repair


CASES = {
    "valve_turned": (_turn_valve, "solvent_valve",
                     "solvent_valve is not as commanded: position 1, commanded 2"),
    "stirrer_stopped": (_stop_stirrer, "stirrer_core", "stirrer_core is not as commanded"),
    "heater_straying": (_cut_heater, "heater_shell", "heater_shell did not hold its setpoint"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_fault_found_between_experiments_is_a_rig_event(case: str, tmp_path: Path) -> None:
    inject, device, words = CASES[case]
    with VirtualLab(time_scale=SCALE) as lab:
        config = lab.devices_config().model_copy(update={"temperature_hold_c": 5.0})
        executor = CSTRExecutor(config, install_signal_handlers=False, poll_period_s=0.1)
        events: list[str] = []

        def fault_after_the_first(c: Campaign, trial: Any) -> None:
            if len(c.trials) != 1:
                return
            repair = inject(lab)
            until(lambda: any(f.device == device for f in executor.monitor.pending_faults))
            repair()

        campaign = Campaign.create(_three_sobol_experiments(f"cstr-between-{case}", n=2),
                                   tmp_path / "runs", executor=executor,
                                   on_trial=fault_after_the_first, on_event=events.append)
        result = campaign.run()
        assert result.stop_reason is StopReason.MAX_EXPERIMENTS
        state = Journal.read(campaign.run_dir / JOURNAL_NAME)
        assert [t.index for t in state.trials] == [0, 2]
        assert TrialStatus.INVALID not in {t.status for t in state.trials}
        (event,) = state.rig_events
        assert event["index"] == 1 and event["device"] == device
        assert words in event["reason"]
        assert event["device_log"], "the exchanges while the rig waited"
        assert state.started[2].conditions == state.started[1].conditions  # the proposal kept
        assert any(e.startswith("rig event before exp-001") for e in events), events
        assert executor.supervisor.trip is None  # not a hazard: the rig was not tripped
        with lab.reactor.lock:  # ended safe
            assert not any(p.running for p in lab.reactor.pumps.values())


def test_a_fault_found_during_the_flush_before_any_feed_is_a_rig_event(tmp_path: Path) -> None:
    """The valve is turned as the next experiment sends its outlet to waste (the flush step,
    the blocks ramping): the procedure checks the rig before it starts the feeds, so no reagent
    goes into a rig known faulty and this is a rig event too (it was an invalid experiment).
    The outlet valve's reply is held until the supervisor has reported the turned valve
    (bounded below the reply timeout), so the fault is found at that point of the procedure."""
    with VirtualLab(time_scale=SCALE) as lab:
        executor = CSTRExecutor(lab.devices_config(timeout_s=1.0),
                                install_signal_handlers=False, poll_period_s=0.1)
        state_of: dict[str, bool] = {"armed": False, "hold": False}

        def arm(c: Campaign, trial: Any) -> None:
            state_of["armed"] = len(c.trials) == 1

        def on_move(position: int) -> None:  # under the reactor lock
            if state_of["armed"] and position == 2:
                state_of["armed"], state_of["hold"] = False, True
                lab.reactor.valves["solvent_valve"] = 1

        def hold() -> None:
            if state_of["hold"]:
                state_of["hold"] = False
                end = time.monotonic() + 0.8
                while time.monotonic() < end and not any(
                        f.device == "solvent_valve" for f in executor.monitor.pending_faults):
                    time.sleep(0.005)

        lab.valves["outlet_valve"].on_move = on_move
        lab.valves["outlet_valve"].before_reply = hold
        campaign = Campaign.create(_three_sobol_experiments("cstr-flush-fault", n=2),
                                   tmp_path / "runs", executor=executor, on_trial=arm)
        result = campaign.run()
        assert result.stop_reason is StopReason.MAX_EXPERIMENTS
        state = Journal.read(campaign.run_dir / JOURNAL_NAME)
        assert [t.index for t in state.trials] == [0, 2], [
            (t.status, t.error) for t in state.trials]
        (event,) = state.rig_events
        assert event["device"] == "solvent_valve"
        assert "feeds on" not in "\n".join(event["device_log"])  # nothing was fed
        with lab.reactor.lock:
            assert not any(p.running for p in lab.reactor.pumps.values())


def test_a_stirrer_that_stays_blocked_ends_the_campaign_safe_after_its_rig_event(
        tmp_path: Path) -> None:
    """A fault the next experiment cannot clear: the blocked stirrer is a rig event first; the
    kept proposal's experiment then cannot start it (the driver verifies the motor runs), a
    hardware error: the rig goes to its safe state and the campaign stops (exit 4), never
    running an experiment with a blocked stirrer."""
    with VirtualLab(time_scale=SCALE) as lab:
        executor = CSTRExecutor(lab.devices_config(), install_signal_handlers=False,
                                poll_period_s=0.1)

        def block_after_the_first(c: Campaign, trial: Any) -> None:
            if len(c.trials) != 1:
                return
            with lab.reactor.lock:
                lab.reactor.stirrers["stirrer_core"]["blocked"] = 1.0
            until(lambda: any(f.device == "stirrer_core"
                               for f in executor.monitor.pending_faults))

        campaign = Campaign.create(_three_sobol_experiments("cstr-blocked", n=2),
                                   tmp_path / "runs", executor=executor,
                                   on_trial=block_after_the_first)
        with pytest.raises(HardwareError, match=r"stirrer_core.*motor is not running"):
            campaign.run()
        state = Journal.read(campaign.run_dir / JOURNAL_NAME)
        assert [t.index for t in state.trials] == [0]
        assert [e["device"] for e in state.rig_events] == ["stirrer_core"]
        assert state.stopped_status == "FAILED" and not state.in_flight
        assert [i.index for i in state.interrupted] == [2]  # the kept proposal, run on resume
        with lab.reactor.lock:  # ended safe
            assert not any(p.running for p in lab.reactor.pumps.values())


def test_a_heater_whose_remote_setpoint_keeps_failing_is_named_not_a_bare_timeout(
        tmp_path: Path) -> None:
    """A fault that stays (status bit 14 after every rewrite of the remote setpoint): the
    supervisor reports it once, a rig event; the kept proposal's heat step then times out as
    that fault, named with its device (it raised a bare 'heaters did not reach the
    setpoints', a hardware error), before any feed: a second rig event, and the campaign
    stops as a rig that does not recover, safe."""
    with VirtualLab(time_scale=SCALE) as lab:
        executor = CSTRExecutor(lab.devices_config(), install_signal_handlers=False,
                                poll_period_s=0.1)

        def fail_after_the_first(c: Campaign, trial: Any) -> None:
            if len(c.trials) != 1:
                return
            with lab.reactor.lock:
                lab.reactor.heaters["heater_shell"].remote_fault = True
            until(lambda: any(f.device == "heater_shell"
                               for f in executor.monitor.pending_faults))

        base = _three_sobol_experiments("cstr-remote-sp", n=3)
        config = base.model_copy(update={"budget": base.budget.model_copy(
            update={"max_rig_events_in_a_row": 2})})
        campaign = Campaign.create(config, tmp_path / "runs", executor=executor,
                                   on_trial=fail_after_the_first)
        with pytest.raises(RigDoesNotRecover,
                           match=r"heater_shell: reactor reactor faulted 2 times") as err:
            campaign.run()
        assert "remote setpoint failed (status bit 14)" in str(err.value)
        state = Journal.read(campaign.run_dir / JOURNAL_NAME)
        assert [t.index for t in state.trials] == [0]
        assert [e["device"] for e in state.rig_events] == ["heater_shell", "heater_shell"]
        second = state.rig_events[1]["reason"]
        assert "heaters did not reach the setpoints within" in second
        assert "still faulted" in second and "remote setpoint failed (status bit 14)" in second
        assert "feeds on" not in "\n".join(state.rig_events[1]["device_log"])
        assert state.stopped_status == "FAILED"
        with lab.reactor.lock:  # ended safe
            assert not any(p.running for p in lab.reactor.pumps.values())
