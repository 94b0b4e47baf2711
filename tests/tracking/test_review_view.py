"""What MLflow and ``autolab report`` tell a researcher reviewing campaigns (docs/review.md).

Each test is a promise of docs/review.md checked on a real SQLite store (a copy of the session's
template) or on the report's own lines: invalidation tags reach a run already logged, through
``sync`` and through ``resume``; the campaign run's params tell two set-ups apart and are the
ones the docs list; the score terms add up to the score as logged; the campaign run carries the
latest stopping forecast; the report counts experiments as MLflow does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from autolab.config import parse_campaign
from autolab.tracking import Journal, JournalHeader, sync
from autolab.tracking.base import (
    campaign_summary,
)
from autolab.tracking.journal import JOURNAL_NAME
from autolab.tracking.mlflow_tracker import MlflowTracker
from autolab.tracking.report import report_lines
from autolab.tracking.summary import campaign_view

from .conftest import TrialFactory

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS = ROOT / "campaigns"
NewTracker = Callable[[], MlflowTracker]


@pytest.fixture
def new_tracker(sqlite_store: tuple[str, str], experiment_name: str) -> NewTracker:
    """Trackers on this test's own experiment of the module's SQLite store."""
    uri, artifacts = sqlite_store
    return lambda: MlflowTracker(uri, experiment_name,
                                 artifact_location=f"{artifacts}/{experiment_name}")


def _config(name: str = "target_550nm.yaml", **changes: Any) -> dict[str, Any]:
    raw = yaml.safe_load((CAMPAIGNS / name).read_text())
    raw.update(changes)
    return parse_campaign(raw).model_dump(mode="json")


def _journal(run_dir: Path, n: int, make_trial: TrialFactory) -> Path:
    """A campaign folder whose journal holds ``n`` completed experiments."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / JOURNAL_NAME
    with Journal.create(path, JournalHeader.new("c", _config(), seed=7)) as j:
        for i in range(n):
            t = make_trial(i)
            j.append_started(i, t.conditions)
            j.append_trial(t, extra={"lab_clock_h": 1.5 * i + 1.2})
    return path


# ---- 7: an invalidation reaches MLflow with every tag docs/review.md names ---
#: docs/review.md, "An experiment run": the tags of an experiment invalidated after the fact.
INVALIDATION_TAGS = ("autolab.status", "autolab.reason", "autolab.invalidated_by",
                     "autolab.invalidated_at", "autolab.previous_status")


def _invalidated_run(tr: MlflowTracker, index: int) -> tuple[str, dict[str, str], float]:
    run = tr.trial_runs()[index]
    return run.info.status, dict(run.data.tags), run.data.metrics["failed"]


def test_invalidation_reaches_a_logged_run_through_sync(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    from autolab.steer import invalidate

    run_dir = tmp_path / "run"
    path = _journal(run_dir, 3, make_trial)
    tr = new_tracker()
    assert sync(path, tr, refresh_plots=False) == 3
    invalidate(run_dir, "exp-002", "leak", by="dr-x")
    assert sync(path, new_tracker(), refresh_plots=False) == 1  # "logged 1 experiment"
    status, tags, failed = _invalidated_run(tr, 2)
    when = Journal.read(path).invalidated[2]["time"]
    assert status == "FAILED"
    assert {k: tags.get(k) for k in INVALIDATION_TAGS} == {
        "autolab.status": "invalid", "autolab.reason": "invalidated after the fact: leak",
        "autolab.invalidated_by": "dr-x", "autolab.invalidated_at": when,
        "autolab.previous_status": "completed"}
    assert tags["autolab.error"] == tags["autolab.reason"]
    assert failed == 1.0
    assert sync(path, new_tracker(), refresh_plots=False) == 0  # nothing left to correct
    assert "autolab.invalidated_by" not in _invalidated_run(tr, 1)[1]


def test_invalidation_reaches_a_logged_run_through_resume(
        sqlite_store: tuple[str, str], experiment_name: str, tmp_path: Path) -> None:
    """The real loop (twin, Sobol): a campaign logged live, invalidated, then resumed."""
    from autolab.campaign import Campaign
    from autolab.steer import invalidate

    uri, _ = sqlite_store
    raw = yaml.safe_load((CAMPAIGNS / "target_550nm.yaml").read_text())
    raw.update(budget={"max_experiments": 2}, optimizer={"kind": "sobol"},
               stop={"target_reached": False})
    cfg = parse_campaign(raw)
    done = Campaign.create(cfg, tmp_path / "runs",
                           tracker=MlflowTracker(uri, experiment_name)).run()
    invalidate(done.run_dir, "exp-001", "syringe leak", by="dr-y")
    resumed = Campaign.resume(done.run_dir, tracker=MlflowTracker(uri, experiment_name))
    try:
        tr = resumed.tracker
        assert isinstance(tr, MlflowTracker)
        status, tags, failed = _invalidated_run(tr, 1)
    finally:
        resumed.journal.close()
    assert (status, failed) == ("FAILED", 1.0)
    assert tags["autolab.status"] == "invalid"
    assert tags["autolab.invalidated_by"] == "dr-y"
    assert tags["autolab.invalidated_at"].startswith("20")
    assert tags["autolab.previous_status"] == "completed"


# ---- 17: the report counts experiments as MLflow does ---
def test_report_counts_an_interrupted_attempt_apart(
        make_trial: TrialFactory, tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    with Journal.create(path, JournalHeader.new("c", _config(), seed=7)) as j:
        for i in range(2):
            t = make_trial(i)
            j.append_started(i, t.conditions)
            j.append_trial(t, extra={"lab_clock_h": 1.5 * i + 1.2})
        j.append_started(2, make_trial(2).conditions)
        j.append_interrupted(2, "the campaign process ended while it ran")
        redo = replace(make_trial(3), conditions=make_trial(2).conditions)
        j.append_started(3, redo.conditions)
        j.append_trial(redo, extra={"lab_clock_h": 6.0})
    state = Journal.read(path)
    view = campaign_view(state.finished(), state.extras, state.header.config)
    summary = campaign_summary(view.trials, view.accounts, view.objective)
    lines = report_lines(state, view)
    assert lines[0] == "experiments: 3 (3 completed, 0 failed, 0 invalid)"
    assert lines[1].startswith("interrupted attempts: 1 ")
    assert (summary.n_experiments, summary.n_interrupted) == (3, 1)  # MLflow's numbers
