"""The MLflow tracker against a real SQLite store: what a researcher finds in the UI."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import ViewType

from autolab.exceptions import TrackingError
from autolab.records import QualityFlag, TrialStatus
from autolab.tracking import Journal, JournalHeader, NullTracker, Tracker, sync
from autolab.tracking.mlflow_tracker import (
    DEFAULT_TRACKING_URI,
    MlflowTracker,
    resolve_tracking_uri,
)

from .conftest import CONFIG, TrialFactory

ROOT = Path(__file__).resolve().parents[2]


def real_config() -> dict[str, object]:
    """The 550 nm campaign file as the campaign journals it (target 550 +- 2 nm)."""
    from autolab.config import load_campaign

    return load_campaign(ROOT / "campaigns" / "target_550nm.yaml").model_dump(mode="json")

PNG = b"\x89PNG\r\n\x1a\n"


NewTracker = Callable[[], MlflowTracker]


@pytest.fixture
def new_tracker(sqlite_store: tuple[str, str], experiment_name: str) -> NewTracker:
    """Trackers on this test's own experiment of the module's SQLite store."""
    uri, artifacts = sqlite_store
    return lambda: MlflowTracker(uri, experiment_name,
                                 artifact_location=f"{artifacts}/{experiment_name}")


def _artifact(tracker: MlflowTracker, run_id: str, path: str, tmp: Path) -> bytes:
    local = tracker.client.download_artifacts(run_id, path, str(tmp))
    return Path(local).read_bytes()


def test_protocol_conformance(dead_uri: str) -> None:
    assert isinstance(NullTracker(), Tracker)
    assert isinstance(MlflowTracker(dead_uri), Tracker)  # constructing does not connect


def test_campaign_and_experiment_runs_hold_everything(
        new_tracker: NewTracker, make_trial: TrialFactory,
        tmp_path: Path) -> None:
    tr = new_tracker()
    config = real_config()
    run_id = tr.start_campaign("green-550", config, tags={"executor": "twin", "seed": "7"},
                               params={"optimizer": {"batch": 1}}, campaign_id="cid-1")
    trials = [make_trial(0), make_trial(1, TrialStatus.FAILED),
              make_trial(2, flags=QualityFlag.TRAP_TAIL, with_trace=True)]
    for t, best, clock in zip(trials, [trials[0].objective, trials[0].objective,
                                       max(trials[0].objective or 0, trials[2].objective or 0)],
                              [1.2, 1.2, 4.2], strict=True):
        assert tr.log_trial(t, best, clock, {"acq_value": 0.25, "ignored_nan": float("nan")})
    tr.log_campaign_artifacts(trials, predictions=[(0.1, 0.05, 0.12), (0.3, 0.1, 0.2)])
    tr.end_campaign("completed", reason="budget reached")

    c = tr.client
    parent = c.get_run(run_id)
    tags, params = parent.data.tags, parent.data.params
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == "green-550"
    assert tags["autolab.campaign"] == "green-550"
    assert tags["autolab.campaign_id"] == "cid-1"
    assert tags["executor"] == "twin"
    assert tags["seed"] == "7"
    assert tags["autolab.stop_reason"] == "budget reached"
    assert len(tags["mlflow.source.git.commit"]) == 40
    # params: what a researcher compares, and nothing else (no twin internals)
    assert params["bounds.t_core_c"].startswith("[")
    assert params["fixed.p_to_in"] == "3.6"
    assert params["constraints"] == "t_shell_c - t_core_c >= 40"
    assert "pl_peak_nm" in params["objective"]
    assert params["optimizer"] == "botorch"
    assert params["optimizer.n_init"] == "6"
    assert params["optimizer.batch"] == "1"
    assert params["budget.max_experiments"] == "30"
    assert not [k for k in params if k.startswith(("executor", "twin", "tracking", "stop"))]
    assert len(params) < 25
    stored = json.loads(_artifact(tr, run_id, "config.json", tmp_path))
    assert stored["executor"]["twin"]["chemistry"]  # the internals live in the artifact
    assert b"chemistry:" in _artifact(tr, run_id, "campaign.yaml", tmp_path)
    # the parent never carries one experiment's values
    assert not set(parent.data.metrics) & {"pl_peak_nm", "qy", "fwhm_nm", "score"}
    for name in ("convergence", "parameters_vs_outcomes", "model_fit"):
        assert _artifact(tr, run_id, f"plots/{name}.png", tmp_path).startswith(PNG)
    table = list(csv.DictReader(io.StringIO(
        _artifact(tr, run_id, "summary/trials.csv", tmp_path).decode())))
    assert [r["index"] for r in table] == ["0", "1", "2"]
    assert [r["status"] for r in table] == ["completed", "failed", "completed"]
    assert float(table[2]["pl_peak_nm"]) == pytest.approx(548.0)
    assert "exp-002" in _artifact(tr, run_id, "summary/trials.md", tmp_path).decode()

    runs = tr.trial_runs()
    assert [r.info.run_name for r in runs] == ["exp-000", "exp-001", "exp-002"]
    ok, failed, flagged = runs
    assert ok.data.tags["mlflow.parentRunId"] == run_id
    assert ok.data.tags["autolab.status"] == "completed"
    assert ok.data.tags["autolab.trial_index"] == "0"
    assert ok.data.tags["autolab.flags"] == "none"
    assert ok.data.tags["autolab.meta.executor"] == "twin"
    assert ok.info.status == "FINISHED"
    assert float(ok.data.params["t_core_c"]) == trials[0].conditions["t_core_c"]
    m = ok.data.metrics
    feats = trials[0].features
    assert feats is not None
    for key in ("pl_peak_nm", "fwhm_nm", "qy", "abs_peak_nm", "pl_peak_nm_err", "qy_err"):
        assert m[key] == pytest.approx(getattr(feats, key))
    assert m["score"] == pytest.approx(trials[0].objective, rel=1e-3)
    assert m["best_score_so_far"] == pytest.approx(trials[0].objective, rel=1e-3)
    assert m["proposal_time_s"] == pytest.approx(0.5)
    assert m["lab_clock_h"] == pytest.approx(1.2)
    assert ok.data.tags["autolab.origin"] == "proposed"
    assert m["reagent_ml.InCl3 stock"] == pytest.approx(2.5)
    assert m["acq_value"] == pytest.approx(0.25)
    assert "ignored_nan" not in m

    raw = _artifact(tr, ok.info.run_id, "spectra.csv", tmp_path).decode()
    header = raw.splitlines()[0].split(",")
    assert header == ["wavelengths_nm", "dark_abs_counts", "blank_counts", "sample_counts",
                      "dark_pl_counts", "pl_counts", "dye_pl_counts", "absorbance"]
    data = np.loadtxt(io.StringIO(raw), delimiter=",", skiprows=1)
    sp = trials[0].measurement.spectra  # type: ignore[union-attr]
    assert data.shape == (151, 8)
    np.testing.assert_allclose(data[:, 5], sp.pl_counts, rtol=1e-9)
    expected_abs = -np.log10((sp.sample_counts - 100.0) / (sp.blank_counts - 100.0))
    np.testing.assert_allclose(data[:, 7], expected_abs, rtol=1e-6)
    assert _artifact(tr, ok.info.run_id, "spectrum.png", tmp_path).startswith(PNG)
    log = _artifact(tr, ok.info.run_id, "device_log.txt", tmp_path).decode()
    assert "pump1 RAT 120 UM -> OK (exp 0)" in log
    stored = json.loads(_artifact(tr, ok.info.run_id, "trial.json", tmp_path))
    assert stored["index"] == 0
    assert stored["status"] == "completed"

    assert failed.info.status == "FAILED"
    assert failed.data.tags["autolab.status"] == "failed"
    assert failed.data.tags["autolab.error"].startswith("clogging")
    assert failed.data.tags["autolab.reason"].startswith("clogging")
    assert failed.data.metrics["failed"] == 1.0
    assert "pl_peak_nm" not in failed.data.metrics
    assert {f.path for f in tr.client.list_artifacts(failed.info.run_id)} == {"trial.json"}

    assert flagged.data.tags["autolab.flags"] == "trap_tail"
    trace = np.loadtxt(io.StringIO(
        _artifact(tr, flagged.info.run_id, "trace.csv", tmp_path).decode()),
        delimiter=",", skiprows=1)
    assert trace.shape == (3, 152)


def test_exactly_once_across_repeats_and_trackers(
        new_tracker: NewTracker, make_trial: TrialFactory) -> None:
    tr = new_tracker()
    run_id = tr.start_campaign("c", {"seed": 1}, {}, {}, campaign_id="cid-2")
    t = make_trial(0)
    assert tr.log_trial(t, t.objective, 1.2, {}) is True
    assert tr.log_trial(t, t.objective, 1.2, {}) is False
    other = new_tracker()  # e.g. after a restart, no journal record
    assert other.start_campaign("c", {"seed": 1}, {}, {}, campaign_id="cid-2") == run_id
    assert other.log_trial(t, t.objective, 1.2, {}) is False
    third = new_tracker()
    third.resume_campaign(run_id)
    assert third.log_trial(t, t.objective, 1.2, {}) is False
    assert len(third.trial_runs()) == 1
    assert tr.client.get_run(run_id).info.status == "RUNNING"


def test_half_logged_experiment_is_replaced(
        new_tracker: NewTracker, make_trial: TrialFactory) -> None:
    tr = new_tracker()
    run_id = tr.start_campaign("c", {}, {}, {})
    # what a crash in the middle of log_trial leaves: the nested run without its completion tag
    exp_id = tr.client.get_run(run_id).info.experiment_id
    torn = tr.client.create_run(exp_id, run_name="exp-000", tags={
        "mlflow.parentRunId": run_id, "autolab.trial_index": "0"})
    t = make_trial(0)
    assert tr.log_trial(t, t.objective, 1.2, {}) is True
    assert [r.info.run_name for r in tr.trial_runs()] == ["exp-000"]
    assert tr.client.get_run(torn.info.run_id).info.lifecycle_stage == "deleted"
    active = tr.client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{run_id}'",
                                   run_view_type=ViewType.ACTIVE_ONLY)
    assert len(active) == 1


def test_misuse_and_bad_runs_raise_tracking_error(
        new_tracker: NewTracker, make_trial: TrialFactory) -> None:
    tr = new_tracker()
    with pytest.raises(TrackingError, match="no campaign run"):
        tr.log_trial(make_trial(0), None, 0.0, {})
    with pytest.raises(TrackingError, match="could not attach"):
        tr.resume_campaign("0" * 32)
    tr.start_campaign("c", {}, {}, {})
    tr.log_trial(make_trial(0), None, 0.0, {})
    nested = tr.trial_runs()[0].info.run_id
    with pytest.raises(TrackingError, match="nested"):
        new_tracker().resume_campaign(nested)
    with pytest.raises(TrackingError, match="campaign_id"):
        tr.start_campaign("c", {}, {}, {}, campaign_id="x' or '1'='1")
    with pytest.raises(TrackingError, match="unknown status"):
        tr.end_campaign("exploded")
    tr.end_campaign("interrupted")
    assert tr.client.get_run(tr.run_id).info.status == "KILLED"  # type: ignore[arg-type]


def test_unreachable_server_fails_fast_and_leaves_env_alone(
        dead_uri: str, make_trial: TrialFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    tr = MlflowTracker(dead_uri, "x", http_max_retries=1, http_timeout_s=2)
    t0 = time.monotonic()
    with pytest.raises(TrackingError, match=r"could not start campaign") as info:
        tr.start_campaign("c", {}, {}, {})
    assert time.monotonic() - t0 < 10
    assert info.value.__cause__ is not None
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"


def test_tracking_uri_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    # relative SQLite paths are made absolute: the journal records the URI for a later sync
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert resolve_tracking_uri() == "http://example.invalid:5000"
    assert MlflowTracker(experiment_name="x").tracking_uri == "http://example.invalid:5000"
    assert resolve_tracking_uri("sqlite:///other.db") == f"sqlite:///{tmp_path / 'other.db'}"
    assert resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("sqlite://") == "sqlite://"


def test_journal_sync_after_outage(new_tracker: NewTracker,
                                   dead_uri: str, header: JournalHeader,
                                   make_trial: TrialFactory, tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    trials = [make_trial(0), make_trial(1, TrialStatus.FAILED), make_trial(2)]
    with Journal.create(path, header) as j:
        down = MlflowTracker(dead_uri, "autolab", http_max_retries=0)
        for t in trials:
            j.append_started(t.index, t.conditions, t.proposal_time_s)
            j.append_trial(t, extra={"lab_clock_h": 10.0 + t.index,
                                     "metrics": {"gp_lengthscale": 0.4, "bad": "text"}})
            with pytest.raises(TrackingError):  # the campaign notes it and goes on
                sync(j, down)
        j.append_started(3, trials[0].conditions)
        j.append_interrupted(3, "SIGTERM")
        assert j.state.untracked == [0, 1, 2, 3]
        assert j.state.tracker_run_id is None

    up = new_tracker()
    assert sync(path, up) == 4
    state = Journal.read(path)
    assert state.untracked == []
    assert state.tracker_run_id == up.run_id
    runs = up.trial_runs()
    assert [r.data.tags["autolab.status"] for r in runs] == [
        "completed", "failed", "completed", "interrupted"]
    assert runs[3].data.tags["autolab.error"] == "SIGTERM"
    assert runs[3].info.status == "KILLED"
    assert runs[2].data.metrics["lab_clock_h"] == pytest.approx(12.0)
    assert runs[2].data.metrics["experiment_lab_h"] == pytest.approx(1.0)
    assert runs[2].data.metrics["gp_lengthscale"] == pytest.approx(0.4)
    best = max(trials[0].objective or 0.0, trials[2].objective or 0.0)
    assert runs[2].data.metrics["best_score_so_far"] == pytest.approx(best, rel=1e-3)
    parent = up.client.get_run(up.run_id)  # type: ignore[arg-type]
    assert parent.data.tags["autolab.campaign_id"] == header.campaign_id
    assert parent.data.tags["seed"] == "7"
    # an interrupted attempt is a run of its own index, but not an experiment
    assert parent.data.metrics["n_experiments"] == 3
    assert parent.data.metrics["n_interrupted"] == 1
    assert parent.data.metrics["n_failed"] == 1
    assert parent.data.tags["autolab.n_experiments"] == "3"
    assert parent.info.status == "RUNNING"  # the journal has no stop: resume may continue

    again = new_tracker()  # a later resume: nothing to do
    assert sync(path, again) == 0
    assert again.run_id == up.run_id
    assert len(again.trial_runs()) == 4


def test_sync_after_crash_between_log_and_mark(
        new_tracker: NewTracker, header: JournalHeader,
        make_trial: TrialFactory, tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    tr = new_tracker()
    with Journal.create(path, header) as j:
        for i in range(3):
            j.append_trial(make_trial(i))
            assert sync(j, tr) == 1  # the live path: one new trial each time
        j.append_trial(make_trial(3))
        # the campaign logged trial 3 and died before journaling "tracked"
        assert tr.log_trial(make_trial(3), None, 0.0, {}) is True
    fresh = new_tracker()
    assert sync(path, fresh) == 0
    assert Journal.read(path).untracked == []
    assert [r.data.tags["autolab.trial_index"] for r in fresh.trial_runs()] == [
        "0", "1", "2", "3"]


def test_sync_refuses_a_tracker_on_another_run(
        new_tracker: NewTracker, header: JournalHeader,
        make_trial: TrialFactory, tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.create(path, header) as j:
        j.append_trial(make_trial(0))
        sync(j, new_tracker())
        j.append_trial(make_trial(1))
        stranger = new_tracker()
        stranger.start_campaign("other", {}, {}, {})
        with pytest.raises(TrackingError, match="journaled in run"):
            sync(j, stranger)
        assert j.state.untracked == [1]


def test_null_tracker_marks_nothing(header: JournalHeader, make_trial: TrialFactory,
                                    tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with Journal.create(path, header) as j:
        j.append_trial(make_trial(0))
        null = NullTracker()
        assert null.start_campaign("c", {}, {}, {}) == "null"
        assert null.log_trial(make_trial(0), None, 0.0, {}) is False
        assert sync(j, null) == 0
        assert j.state.untracked == [0]
        assert j.state.tracker_run_id is None
