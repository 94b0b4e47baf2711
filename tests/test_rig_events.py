"""A device fault found between experiments is a rig event, not an experiment (simulated rig).

The checks before an experiment starts (``check_before_run``) find what the supervisor saw while
the rig stood between experiments: a valve turned by hand, a heater straying, a stirrer stopped.
Nothing of the next proposal was fed, so the campaign journals a ``rig_event`` (device, device
log, reason), spends no budget slot, tells the optimizer nothing and runs the proposal again;
a fault that keeps coming stops the campaign (exit 4 through the CLI). Real BoTorch, the real
simulated rig and its delivery monitor (the supervisor's channel on the serial rig).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from autolab.campaign import (
    JOURNAL_NAME,
    Campaign,
    RigDoesNotRecover,
    StopReason,
    make_executors,
)
from autolab.config import CampaignConfig, parse_campaign
from autolab.exceptions import HardwareError
from autolab.executors.simulated import SAFE_TEMPERATURE_C, SimulatedExecutor
from autolab.hardware.delivery import PumpFinding
from autolab.records import TrialStatus
from autolab.tracking import Journal, MlflowTracker, sync
from autolab.tracking.report import report_lines
from autolab.tracking.summary import campaign_view
from autolab.twin import TwinConfig

from .test_campaign import _assert_same_trials, config

VALVE_TURNED = PumpFinding("solvent_valve", "solvent_valve", "valve_moved",
                           "solvent_valve is not as commanded: position 1, commanded 2",
                           trip=False)


def _cfg(**changes: Any) -> CampaignConfig:
    # these campaigns run without the per-step forecast (CPU), so without the rule reading it
    return parse_campaign(config(budget__max_experiments=4, stop__target_reached=False,
                                 stop__no_improvement_after=None, stop__forecast_reach_below=None,
                                 optimizer__settings={"n_init": 2}, **changes))


def _executor(cfg: CampaignConfig) -> SimulatedExecutor:
    return SimulatedExecutor(TwinConfig(), seed=cfg.seed)


def _turn_the_valve(executor: SimulatedExecutor) -> None:
    """What the supervisor reports when it finds the valve turned (between experiments here)."""
    executor.session.monitor.report(VALVE_TURNED)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The same campaign without a fault."""
    cfg = _cfg()
    root = tmp_path_factory.mktemp("ref")
    return Campaign.create(cfg, root, executor=_executor(cfg), forecast=False).run().trials


def test_a_fault_found_between_experiments_is_a_rig_event_not_an_experiment(
        tmp_path: Path, reference: list[Any], fresh_store: str) -> None:
    cfg = _cfg()
    executor = _executor(cfg)
    events: list[str] = []

    def after_trial(c: Campaign, trial: Any) -> None:
        if len(c.trials) == 2:
            _turn_the_valve(executor)

    result = Campaign.create(cfg, tmp_path, executor=executor, on_trial=after_trial,
                             on_event=events.append, forecast=False).run()
    # the budget was spent on experiments only, and they are the fault-free campaign's: the
    # optimizer heard nothing of the fault and the proposal ran after it
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    assert [t.status for t in result.trials] == [t.status for t in reference]
    assert TrialStatus.INVALID not in {t.status for t in result.trials}
    _assert_same_trials(result.trials, reference)
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    (event,) = state.rig_events
    assert event["index"] == 2 and event["reactor"] == "reactor"
    assert event["device"] == "solvent_valve"
    assert "solvent_valve is not as commanded" in event["reason"]
    assert isinstance(event["device_log"], list)
    assert [t.index for t in state.trials] == [0, 1, 3, 4]
    redo = state.started[3].conditions
    assert all(redo[k] == pytest.approx(v) for k, v in event["proposal"].items())
    assert "executor_state" in event["extra"] and "reactor_clock_h" in event["extra"]
    assert not state.in_flight and state.untracked == [0, 1, 3, 4]
    assert any("rig event before exp-002" in e and "not counted" in e for e in events), events
    # a researcher sees it in MLflow: counted on the campaign run, never an experiment run
    tracker = MlflowTracker(tracking_uri=fresh_store, experiment_name="rig-events")
    assert sync(result.run_dir / JOURNAL_NAME, tracker) == 4
    parent = MlflowClient(tracker.tracking_uri).get_run(tracker.run_id)
    assert parent.data.metrics["n_rig_events"] == 1.0
    assert len(tracker.trial_runs()) == 4
    lines = report_lines(state, campaign_view(state.finished(), state.extras,
                                              state.header.config))
    assert any(line.startswith("rig events: 1 (") for line in lines), lines
    assert any("before exp-002: device fault: solvent_valve: solvent_valve is not as" in line
               for line in lines), lines
    assert lines[0].startswith("experiments: 4 ")


def test_resume_right_after_a_rig_event_runs_the_kept_proposal_exactly(
        tmp_path: Path, reference: list[Any]) -> None:
    """The journal at the rig event is what a process killed there leaves behind."""
    cfg = _cfg()
    executor = _executor(cfg)
    snapshot = tmp_path / "killed-here"

    def after_trial(c: Campaign, trial: Any) -> None:
        if len(c.trials) == 1:
            _turn_the_valve(executor)

    def on_event(text: str) -> None:
        if text.startswith("rig event") and not snapshot.exists():
            shutil.copytree(campaign.run_dir, snapshot)

    campaign = Campaign.create(cfg, tmp_path / "runs", executor=executor,
                               on_trial=after_trial, on_event=on_event, forecast=False)
    campaign.run()
    resumed = Campaign.resume(snapshot, executor=_executor(cfg))
    assert [len(r.redo) for r in resumed.reactors.values()] == [1]
    result = resumed.run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    _assert_same_trials(result.trials, reference)
    _assert_same_trials(Journal.read(campaign.run_dir / JOURNAL_NAME).trials, reference)


def test_a_fault_that_keeps_coming_stops_the_campaign_and_resume_recovers(
        tmp_path: Path, reference: list[Any]) -> None:
    cfg = _cfg(budget__max_rig_events_in_a_row=2)  # the campaign file's limit (default 3)
    executor = _executor(cfg)

    def after_trial(c: Campaign, trial: Any) -> None:
        _turn_the_valve(executor)

    def on_event(text: str) -> None:  # turned again before every try
        if text.startswith("rig event"):
            _turn_the_valve(executor)

    campaign = Campaign.create(cfg, tmp_path, executor=executor, on_trial=after_trial,
                               on_event=on_event, forecast=False)
    with pytest.raises(RigDoesNotRecover, match=r"solvent_valve.*2 times in a row") as info:
        campaign.run()
    assert isinstance(info.value, HardwareError)  # the CLI's device-failure exit (4)
    state = Journal.read(campaign.run_dir / JOURNAL_NAME)
    assert len(state.trials) == 1
    assert [e["in_a_row"] for e in state.rig_events] == [1, 2]
    assert state.stopped_status == "FAILED" and "RigDoesNotRecover" in (state.stopped_reason or "")
    assert not state.in_flight and state.rig_faults_in_a_row == {}
    # the rig ended safe: pumps stopped, blocks cooled
    assert not any(executor.session.monitor.is_running(r) for r in executor.rig.pumps)
    assert all(h.temperature_c() < SAFE_TEMPERATURE_C for h in executor.rig.heaters.values())
    # the valve is put right; resume runs the kept proposal and the rest of the budget
    executor.session.monitor.take_faults()
    result = Campaign.resume(campaign.run_dir, executor=_executor(cfg)).run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    _assert_same_trials(result.trials, reference)


def test_a_rig_event_on_one_of_two_reactors_keeps_the_other_running(tmp_path: Path) -> None:
    """Parallel reactors: the rig event is r2's alone; r1's experiment is delivered as usual."""
    cfg = parse_campaign(config(**{
        "optimizer__kind": "sobol", "optimizer__settings": {}, "stop__target_reached": False,
        "stop__no_improvement_after": None, "stop__forecast_reach_below": None,
        "tracking__enabled": False,
        "reactors": [{"name": "r1"}, {"name": "r2"}], "budget__max_experiments": 4}))
    reference = Campaign.create(cfg, tmp_path / "ref", forecast=False).run().trials
    executors = make_executors(cfg)
    r2 = executors["r2"]
    assert isinstance(r2, SimulatedExecutor)
    _turn_the_valve(r2)  # found before r2's first experiment
    result = Campaign.create(cfg, tmp_path / "faulted", executor=executors,
                             forecast=False).run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    _assert_same_trials(result.trials, reference)
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    (event,) = state.rig_events
    assert event["reactor"] == "r2" and event["device"] == "solvent_valve"
    assert [state.extras[t.index]["reactor"] for t in state.trials].count("r2") >= 1
    assert not state.in_flight
