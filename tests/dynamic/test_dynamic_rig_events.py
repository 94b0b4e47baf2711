"""A device fault found before a trajectory feeds anything is a rig event in dynamic mode too.

The same rule as a steady campaign's (tests/test_rig_events.py), through the campaign's one
rig-event path: a valve found turned by the checks before a trajectory starts is journaled as a
``rig_event``, not as an invalid trial; no budget slot is spent, the optimizer hears nothing,
the lab time counts, the trajectory's proposal runs again, and a fault that keeps coming stops
the campaign (``RigDoesNotRecover``, exit 4). Resume right after it is exact. Real simulated
rig, its delivery monitor (the supervisor's channel on the serial rig) and the Sobol optimizer.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from autolab.campaign import JOURNAL_NAME, Campaign, RigDoesNotRecover, StopReason
from autolab.executors.simulated import SimulatedExecutor
from autolab.records import TrialStatus
from autolab.tracking import Journal

from ..test_campaign import _assert_same_trials
from ..test_rig_events import VALVE_TURNED
from .test_dynamic_campaign import _config


def _turn_the_valve(campaign: Campaign) -> None:
    """What the supervisor reports when it finds the solvent valve turned."""
    executor = next(iter(campaign.reactors.values())).executor
    assert isinstance(executor, SimulatedExecutor)
    executor.session.monitor.report(VALVE_TURNED)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The same dynamic campaign without a fault."""
    return Campaign.create(_config(3), tmp_path_factory.mktemp("ref")).run().trials


def test_a_fault_before_the_first_trajectory_is_a_rig_event_not_an_invalid_trial(
        tmp_path: Path, reference: list[Any]) -> None:
    campaign = Campaign.create(_config(3), tmp_path / "runs")
    clock_before = campaign.lab_clock_h
    _turn_the_valve(campaign)  # found by the checks before the first trajectory settles
    events: list[str] = []
    campaign.on_event = events.append
    result = campaign.run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    # the budget went to trajectories only, and they are the fault-free campaign's: nothing
    # of the fault reached the optimizer, and the kept proposal ran as the first trajectory
    assert TrialStatus.INVALID not in {t.status for t in result.trials}
    _assert_same_trials(result.trials, reference)
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    (event,) = state.rig_events
    assert event["index"] == 0 and event["device"] == "solvent_valve"
    assert "solvent_valve is not as commanded" in event["reason"]
    assert [t.index for t in state.trials] == [1, 2, 3]
    assert state.started[1].conditions == state.started[0].conditions
    assert event["extra"]["reactor_clock_h"] >= clock_before
    assert any(e.startswith("rig event before exp-000") and "not counted" in e
               for e in events), events


def test_a_fault_between_trajectories_is_a_rig_event_and_resume_after_it_is_exact(
        tmp_path: Path) -> None:
    """The journal copied at the rig event is what a process killed there leaves behind."""
    snapshot = tmp_path / "killed-here"

    def after_trial(c: Campaign, trial: Any) -> None:
        if len(c.trials) == 1:
            _turn_the_valve(c)

    def on_event(text: str) -> None:
        if text.startswith("rig event") and not snapshot.exists():
            shutil.copytree(campaign.run_dir, snapshot)

    campaign = Campaign.create(_config(3), tmp_path / "runs", on_trial=after_trial,
                               on_event=on_event)
    live = campaign.run()
    assert live.stop_reason is StopReason.MAX_EXPERIMENTS
    state = Journal.read(live.run_dir / JOURNAL_NAME)
    (event,) = state.rig_events
    assert event["index"] == 1 and [t.index for t in state.trials] == [0, 2, 3]
    assert TrialStatus.INVALID not in {t.status for t in state.trials}
    assert state.started[2].conditions == state.started[1].conditions  # the proposal kept
    # lab time counts: the clock at the event is past the first trajectory's
    assert event["extra"]["reactor_clock_h"] >= state.extras[0]["reactor_clock_h"]

    resumed = Campaign.resume(snapshot)
    assert [len(r.redo) for r in resumed.reactors.values()] == [1]
    again = resumed.run()
    assert again.stop_reason is StopReason.MAX_EXPERIMENTS
    _assert_same_trials(again.trials, live.trials)
    after = Journal.read(snapshot / JOURNAL_NAME)
    for t in live.trials:  # every streamed reading the same, not only the representative
        assert (after.extras[t.index]["dynamic"]["observations"]
                == state.extras[t.index]["dynamic"]["observations"])


def test_a_fault_that_keeps_coming_stops_a_dynamic_campaign(tmp_path: Path) -> None:
    def after_trial(c: Campaign, trial: Any) -> None:
        if len(c.trials) == 1:
            _turn_the_valve(c)

    def on_event(text: str) -> None:
        if text.startswith("rig event"):
            _turn_the_valve(campaign)  # found again before the kept proposal's trajectory

    base = _config(3)
    config = base.model_copy(update={"budget": base.budget.model_copy(
        update={"max_rig_events_in_a_row": 2})})
    campaign = Campaign.create(config, tmp_path / "runs", on_trial=after_trial,
                               on_event=on_event)
    with pytest.raises(RigDoesNotRecover, match=r"solvent_valve: reactor reactor faulted 2 "):
        campaign.run()
    state = Journal.read(campaign.run_dir / JOURNAL_NAME)
    assert [t.index for t in state.trials] == [0]
    assert [e["in_a_row"] for e in state.rig_events] == [1, 2]
    assert state.stopped_status == "FAILED" and not state.in_flight
