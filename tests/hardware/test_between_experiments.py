"""A valve turned between two experiments on the serial rig (real drivers over ptys).

The supervisor finds it while the rig waits; the checks before the next experiment raise it as a
device fault found before anything was fed, and the campaign journals a rig event (device, its
log, reason), runs the proposal after it and spends no budget slot on it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from autolab.campaign import JOURNAL_NAME, Campaign, StopReason
from autolab.executors.cstr import CSTRExecutor
from autolab.records import TrialStatus
from autolab.tracking import Journal
from autolab.virtuallab.lab import VirtualLab

from .test_virtual_lab import SCALE, _three_sobol_experiments


def _until(predicate: Any, limit_s: float = 120.0) -> None:
    """Wait on a condition (generous: the host may be loaded), never on a fixed time."""
    end = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def test_a_valve_turned_between_experiments_is_a_rig_event(tmp_path: Path) -> None:
    with VirtualLab(time_scale=SCALE) as lab:
        executor = CSTRExecutor(lab.devices_config(), install_signal_handlers=False,
                                poll_period_s=0.1)
        events: list[str] = []

        def turn_after_the_first(c: Campaign, trial: Any) -> None:
            if len(c.trials) != 1:
                return
            with lab.reactor.lock:
                assert lab.reactor.valves["solvent_valve"] == 2  # make-up, as the run left it
                lab.reactor.valves["solvent_valve"] = 1
            polls = executor.supervisor.polls
            _until(lambda: executor.supervisor.polls >= polls + 2)  # a whole round saw it

        campaign = Campaign.create(_three_sobol_experiments("cstr-between", n=2),
                                   tmp_path / "runs", executor=executor,
                                   on_trial=turn_after_the_first, on_event=events.append)
        result = campaign.run()
        assert result.stop_reason is StopReason.MAX_EXPERIMENTS
        state = Journal.read(campaign.run_dir / JOURNAL_NAME)
        assert [t.index for t in state.trials] == [0, 2]
        assert TrialStatus.INVALID not in {t.status for t in state.trials}
        (event,) = state.rig_events
        assert event["index"] == 1 and event["device"] == "solvent_valve"
        assert "solvent_valve is not as commanded: position 1, commanded 2" in event["reason"]
        assert event["device_log"], "the exchanges while the rig waited"
        assert state.started[2].conditions == state.started[1].conditions  # the proposal kept
        assert any(e.startswith("rig event before exp-001") for e in events), events
        with lab.reactor.lock:  # ended safe
            assert not any(p.running for p in lab.reactor.pumps.values())
