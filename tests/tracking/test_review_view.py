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
from autolab.tracking import Journal, JournalHeader
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
