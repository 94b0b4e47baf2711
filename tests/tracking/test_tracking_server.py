"""The tracker against a real ``mlflow server`` over HTTP (proxied artifact store)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from autolab.records import TrialStatus
from autolab.tracking import Journal, JournalHeader, sync
from autolab.tracking.mlflow_tracker import MlflowTracker

from .conftest import CONFIG, TrialFactory

pytestmark = pytest.mark.server


def test_campaign_over_http_with_resume_and_exactly_once(
        mlflow_server: str, header: JournalHeader, make_trial: TrialFactory,
        tmp_path: Path, experiment_name: str) -> None:
    path = tmp_path / "journal.jsonl"
    tracker = MlflowTracker(mlflow_server, experiment_name)
    run_id = tracker.start_campaign(header.campaign_name, CONFIG, {"executor": "twin"}, {},
                                    campaign_id=header.campaign_id)
    with Journal.create(path, header) as j:
        j.set_tracker_run(run_id, tracker.tracking_uri)
        for t in (make_trial(0), make_trial(1, TrialStatus.FAILED), make_trial(2)):
            j.append_started(t.index, t.conditions, t.proposal_time_s)
            j.append_trial(t)
            assert sync(j, tracker, predictions=[(0.0, 0.1, 0.05)]) == 1
        j.append_started(3, make_trial(3).conditions)
        j.append_trial(make_trial(3))  # the process dies before syncing this one

    resumed = MlflowTracker(mlflow_server, experiment_name)  # `autolab resume` in a new process
    assert sync(path, resumed) == 1
    assert resumed.run_id == run_id
    assert sync(path, resumed) == 0
    resumed.end_campaign("completed", reason="budget reached")

    runs = resumed.trial_runs()
    assert [r.info.run_name for r in runs] == ["exp-000", "exp-001", "exp-002", "exp-003"]
    assert runs[0].info.artifact_uri.startswith("mlflow-artifacts:")
    local = resumed.client.download_artifacts(runs[3].info.run_id, "spectra.csv", str(tmp_path))
    data = np.loadtxt(io.StringIO(Path(local).read_text()), delimiter=",", skiprows=1)
    assert data.shape == (151, 8)
    png = resumed.client.download_artifacts(run_id, "plots/convergence.png", str(tmp_path))
    assert Path(png).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    names = {f.path for f in resumed.client.list_artifacts(run_id, "plots")}
    assert {"plots/convergence.png", "plots/parameters_vs_outcomes.png"} <= names
    parent = resumed.client.get_run(run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["autolab.n_experiments"] == "4"
    # the campaign run's metrics are the campaign summary, one step per experiment count
    history = resumed.client.get_metric_history(run_id, "n_experiments")
    assert sorted({m.step for m in history}) == [1, 2, 3, 4]
    assert parent.data.metrics["n_failed"] == 1
    assert "pl_peak_nm" not in parent.data.metrics
