"""The MLflow tracker against a real SQLite store: what a researcher finds in the UI."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import time
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

from .conftest import NewTracker, TrialFactory

ROOT = Path(__file__).resolve().parents[2]


def real_config() -> dict[str, object]:
    """The 550 nm campaign file as the campaign journals it (target 550 +- 2 nm)."""
    from autolab.config import load_campaign

    return load_campaign(ROOT / "campaigns" / "target_550nm.yaml").model_dump(mode="json")

PNG = b"\x89PNG\r\n\x1a\n"




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
    assert params["stop.qy_min"] == "0.35"
    assert (params["mode"], params["executor"], params["review"]) == ("steady", "twin", "off")
    assert not [k for k in params if k.startswith(("executor.twin", "twin", "tracking"))]
    assert len(params) < 35
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


# ---- a store that cannot be left half-made -------------------------------------------------------
def _creator(uri: str) -> int:
    """A forked starter creating the store (forked: MLflow is imported already, so the kill
    lands in the creation itself, not in the seconds an import takes)."""
    from autolab.tracking.mlflow_tracker import ensure_sqlite_store

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            ensure_sqlite_store(uri)
        except BaseException:
            code = 1
        os._exit(code)
    return pid


def _usable(uri: str) -> None:
    tr = MlflowTracker(uri, "after-kill")
    tr.start_campaign("c", {}, {}, {})
    assert tr.client.get_run(tr.run_id).info.status == "RUNNING"  # type: ignore[arg-type]


def test_store_killed_while_created_is_absent_or_whole(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    for delay_s in (0.02, 0.2, 0.6):  # creating one takes seconds: each kill lands inside
        pid = _creator(uri)
        time.sleep(delay_s)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if db.exists():  # whole, or absent: never half-made
            MlflowTracker(uri, "after-kill").check()
    _usable(uri)  # the next starter creates it whole (or opens the whole one)
    assert not list(tmp_path.glob(".mlflow.db.*"))  # no temporary file left behind


def test_concurrent_starters_make_one_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pids = [_creator(uri) for _ in range(3)]
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids] == [0, 0, 0]
    _usable(uri)


def _half_made(path: Path) -> None:
    """What a kill in MLflow's own in-place migrations left (some tables, no alembic head)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE spans (trace_id TEXT, span_id TEXT)")
        db.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")


def test_broken_store_campaign_runs_journal_only_then_syncs(tmp_path: Path) -> None:
    from autolab.campaign import JOURNAL_NAME, Campaign
    from autolab.config import parse_campaign

    db = tmp_path / "mlflow.db"
    _half_made(db)
    uri = f"sqlite:///{db}"
    broken = MlflowTracker(uri, "autolab")
    with pytest.raises(TrackingError, match=r"mv .*mlflow\.db .*broken"):
        broken.check()
    cfg = dict(real_config(), budget={"max_experiments": 3})
    campaign = Campaign.create(parse_campaign(cfg, "test"), tmp_path / "runs", tracker=broken)
    result = campaign.run()  # never stopped by the store
    assert len(result.trials) == 3
    assert result.untracked == [0, 1, 2]
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    assert any("tracking" in note for note in state.notes)

    db.rename(db.with_name("mlflow.db.broken"))  # what the message says to do
    fixed = MlflowTracker(uri, "autolab")
    assert sync(result.run_dir / JOURNAL_NAME, fixed) == 3
    parent = fixed.client.get_run(fixed.run_id)  # type: ignore[arg-type]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["autolab.stop_reason"] == "budget: experiments"
    assert parent.data.metrics["n_experiments"] == 3
    assert [r.info.status for r in fixed.trial_runs()] == ["FINISHED"] * 3


# ---- status equals the journal -------------------------------------------------------------------
def _journal(tmp_path: Path, n: int, make_trial: TrialFactory, *,
             stop: str | None = None) -> Path:
    path = tmp_path / "journal.jsonl"
    with Journal.create(path, JournalHeader.new("c", real_config(), seed=7)) as j:
        for i in range(n):
            t = make_trial(i)
            j.append_started(i, t.conditions)
            j.append_trial(t, extra={"lab_clock_h": 1.5 * i + 1.2})
        if stop is not None:
            j.append_stopped(stop, "FINISHED")
    return path


def test_sync_of_a_finished_campaign_keeps_it_finished(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    path = _journal(tmp_path, 2, make_trial, stop="budget: experiments")
    tr = new_tracker()
    assert sync(path, tr, refresh_plots=False) == 2
    run_id = tr.run_id
    assert run_id is not None
    first = tr.client.get_run(run_id).info
    assert first.status == "FINISHED"
    for _ in range(2):  # `autolab sync` again and again: nothing changes
        again = new_tracker()
        assert sync(path, again, refresh_plots=False) == 0
        info = again.client.get_run(run_id).info
        assert (info.status, info.end_time) == ("FINISHED", first.end_time)


def test_kill_between_logged_tag_and_end_is_repaired(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    path = _journal(tmp_path, 1, make_trial)
    tr = new_tracker()
    with Journal.open(path) as j:
        sync(j, tr, refresh_plots=False)
    # what a kill left before this fix: the completion tag set, the run never ended
    exp_id = tr.client.get_run(tr.run_id).info.experiment_id  # type: ignore[arg-type]
    with Journal.open(path) as j:
        t = make_trial(1)
        j.append_started(1, t.conditions)
        j.append_trial(t)
    stuck = tr.client.create_run(exp_id, run_name="exp-001", tags={
        "mlflow.parentRunId": tr.run_id, "autolab.trial_index": "1",  # type: ignore[dict-item]
        "autolab.logged": "true", "autolab.status": "completed"})
    assert tr.client.get_run(stuck.info.run_id).info.status == "RUNNING"
    assert sync(path, new_tracker(), refresh_plots=False) == 1  # corrected, not duplicated
    runs = tr.trial_runs()
    assert [(r.info.run_name, r.info.status) for r in runs] == [
        ("exp-000", "FINISHED"), ("exp-001", "FINISHED")]


def test_outage_then_syncs_end_the_parent_with_the_journaled_reason(
        new_tracker: NewTracker, dead_uri: str, make_trial: TrialFactory,
        tmp_path: Path) -> None:
    path = _journal(tmp_path, 1, make_trial)
    tr = new_tracker()
    sync(path, tr, refresh_plots=False)
    assert tr.client.get_run(tr.run_id).info.status == "RUNNING"  # type: ignore[arg-type]
    with Journal.open(path) as j:  # the server goes down; the campaign finishes without it
        down = MlflowTracker(dead_uri, "autolab", http_max_retries=0)
        for i in (1, 2):
            t = make_trial(i)
            j.append_started(i, t.conditions)
            j.append_trial(t)
            with pytest.raises(TrackingError):
                sync(j, down)
        j.append_stopped("target reached", "FINISHED")
    later = new_tracker()
    assert sync(path, later, refresh_plots=False) == 2
    parent = later.client.get_run(tr.run_id)  # type: ignore[arg-type]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["autolab.stop_reason"] == "target reached"
    assert "Stopped: target reached." in parent.data.tags["mlflow.note.content"]
    assert parent.data.metrics["n_experiments"] == 3


def test_a_resumed_campaign_runs_again_and_stops_again(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    path = _journal(tmp_path, 1, make_trial, stop="interrupted: stopped by the user")
    tr = new_tracker()
    sync(path, tr, refresh_plots=False)
    run_id = tr.run_id
    assert run_id is not None
    assert tr.client.get_run(run_id).info.status == "FINISHED"  # journaled status wins
    with Journal.open(path) as j:
        t = make_trial(1)
        j.append_started(1, t.conditions)  # resumed: running again
        sync(j, new_tracker(), refresh_plots=False)
        assert tr.client.get_run(run_id).info.status == "RUNNING"
        assert "autolab.stop_reason" not in tr.client.get_run(run_id).data.tags
        j.append_trial(t)
        j.append_stopped("interrupted: RuntimeError: boom")
        sync(j, new_tracker(), refresh_plots=False)
    parent = tr.client.get_run(run_id)
    assert parent.info.status == "FAILED"
    assert parent.data.tags["autolab.stop_reason"] == "interrupted: RuntimeError: boom"


def test_invalidated_experiment_turns_invalid_and_best_is_recomputed(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    path = _journal(tmp_path, 4, make_trial)  # exp-002 (548 nm) and exp-003 (552 nm) in band
    tr = new_tracker()
    sync(path, tr, refresh_plots=False)
    parent = tr.client.get_run(tr.run_id)  # type: ignore[arg-type]
    assert parent.data.tags["autolab.best_experiment"] == "exp-003"
    with Journal.open(path) as j:
        j.append_record("invalidated", {"index": 3, "reason": "syringe leak found later",
                                        "by": "dr-x", "time": "2026-12-01T03:00:00+00:00"})
        assert j.state.untracked == [3]
        assert sync(j, new_tracker(), refresh_plots=False) == 1
        assert j.state.untracked == []
    run = tr.trial_runs()[3]
    assert run.info.status == "FAILED"
    assert run.data.tags["autolab.status"] == "invalid"
    assert "syringe leak" in run.data.tags["autolab.reason"]
    parent = tr.client.get_run(tr.run_id)  # type: ignore[arg-type]
    assert parent.data.tags["autolab.best_experiment"] == "exp-002"
    assert parent.data.metrics["best_experiment"] == 2
    assert parent.data.metrics["n_failed"] == 1
    assert len(tr.trial_runs()) == 4


# ---- what the runs show --------------------------------------------------------------------------
def test_parent_run_is_the_campaign_summary(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    bright_but_off = make_trial(5, objective=100.0)  # 560 nm: out of band, top score
    with Journal.create(path, JournalHeader.new("c", real_config(), seed=7)) as j:
        trials = [make_trial(0), make_trial(1, TrialStatus.FAILED), make_trial(2),
                  bright_but_off]
        for k, t in enumerate(trials):
            j.append_started(t.index, t.conditions)
            j.append_trial(t, extra={"lab_clock_h": 2.0 * (k + 1)})
        tr = new_tracker()
        sync(j, tr, refresh_plots=False)
    parent = tr.client.get_run(tr.run_id)  # type: ignore[arg-type]
    m = parent.data.metrics
    assert m["best_experiment"] == 2  # in band first (548 nm), not the top score
    assert m["best_pl_peak_nm"] == pytest.approx(548.0)
    assert m["best_qy"] == pytest.approx(0.24)
    assert m["best_fwhm_nm"] == pytest.approx(58.0)
    assert m["experiments_to_target"] == 3  # exp-000, exp-001 (failed), exp-002
    assert m["lab_hours_to_target"] == pytest.approx(6.0)
    assert m["n_failed"] == 1
    assert m["n_experiments"] == 4
    assert "pl_peak_nm" not in m
    history = tr.client.get_metric_history(tr.run_id, "n_experiments")  # type: ignore[arg-type]
    assert [h.step for h in history] == [4]


def test_experiment_run_shows_targets_terms_predictions_and_lab_account(
        new_tracker: NewTracker, make_trial: TrialFactory, tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    prediction = {"score_mean": 1.234567, "score_sd": 0.1,
                  "outcomes": {"pl_peak_nm": [549.123456, 3.2109876], "qy": [0.25, 0.05]}}
    with Journal.create(path, JournalHeader.new("c", real_config(), seed=7)) as j:
        first, failed, second = make_trial(0), make_trial(1, TrialStatus.FAILED), make_trial(2)
        for t, clock in ((first, 1.725), (failed, 5.648), (second, 7.0)):
            j.append_started(t.index, t.conditions)
            j.append_trial(t, extra={"lab_clock_h": clock, "prediction": prediction,
                                     "origin": "edited", "reviewer": "dr-x",
                                     "metrics": {"in_band_pl_peak_nm": 1.0}})
        tr = new_tracker()
        sync(j, tr, refresh_plots=False)
    runs = {r.info.run_name: r for r in tr.trial_runs()}
    m = runs["exp-002"].data.metrics
    assert m["in_band.pl_peak_nm"] == 1.0
    assert m["in_band"] == 1.0
    assert m["distance_to_target_nm.pl_peak_nm"] == pytest.approx(2.0)
    # the terms add up to the score: test_review_view.py (these trials' scores are made up)
    assert {"score.target_pl_peak_nm", "score.maximize_qy", "score.minimize_fwhm_nm"} <= set(m)
    assert m["predicted_pl_peak_nm"] == 549.12  # 0.01 nm
    assert m["predicted_pl_peak_nm_sd"] == 3.21
    assert m["predicted_qy_sd"] == 0.05
    assert m["predicted_score"] == 1.235  # 4 significant digits
    assert "in_band_pl_peak_nm" not in m  # a journaled copy is not logged twice
    assert runs["exp-000"].data.metrics["in_band.pl_peak_nm"] == 0.0
    assert runs["exp-000"].data.metrics["distance_to_target_nm.pl_peak_nm"] == 10.0
    # lab clock: the campaign's, failed experiments included (the report's numbers)
    assert runs["exp-001"].data.metrics["lab_clock_h"] == pytest.approx(5.648)
    assert runs["exp-001"].data.metrics["experiment_lab_h"] == pytest.approx(5.648 - 1.725)
    assert m["experiment_lab_h"] == pytest.approx(7.0 - 5.648, abs=1e-3)
    assert m["reagent_ml.InCl3 stock"] == pytest.approx(2.5)
    assert m["reagent_total_ml.InCl3 stock"] == pytest.approx(5.0)  # exp-000 + exp-002
    assert runs["exp-002"].data.tags["autolab.origin"] == "edited"
    assert runs["exp-002"].data.tags["autolab.reviewer"] == "dr-x"


def test_failure_reason_is_readable(new_tracker: NewTracker, tmp_path: Path) -> None:
    from autolab.records import Trial

    error = ("clogging: pressure rise (run 3, conditions {'t_core_c': 187.12345678901234, "
             "'tau_core_min': 12.000000000000002})")
    t = Trial(index=0, conditions={"t_core_c": 187.12345678901234}, status=TrialStatus.FAILED,
              error=error)
    tr = new_tracker()
    tr.start_campaign("c", {}, {}, {})
    tr.log_trial(t, None, 0.0, {})
    reason = tr.trial_runs()[0].data.tags["autolab.reason"]
    assert "187.1" in reason and "187.12345" not in reason
    assert "12.000000000000002" not in reason


def test_cli_run_on_a_broken_store_warns_journals_the_uri_and_sync_reaches_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml
    from typer.testing import CliRunner

    from autolab.campaign import JOURNAL_NAME
    from autolab.cli import app

    lab, elsewhere = tmp_path / "lab", tmp_path / "elsewhere"
    lab.mkdir()
    elsewhere.mkdir()
    raw = yaml.safe_load((ROOT / "campaigns" / "target_550nm.yaml").read_text())
    raw["budget"] = {"max_experiments": 2}
    (lab / "c.yaml").write_text(yaml.safe_dump(raw))
    _half_made(lab / "store.db")
    monkeypatch.chdir(lab)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    res = runner.invoke(app, ["run", "c.yaml", "--tracking-uri", "sqlite:///store.db"])
    assert res.exit_code == 0, res.output  # the store never stops a campaign
    assert "tracking unavailable, journal only" in res.output
    run_dir = next((lab / "runs").iterdir())
    state = Journal.read(run_dir / JOURNAL_NAME)
    assert any("store.db.broken" in note for note in state.notes)  # what to do, journaled
    assert state.tracking_uri == f"sqlite:///{lab / 'store.db'}"  # where sync must log
    assert len(state.untracked) == 2

    (lab / "store.db").rename(lab / "store.db.broken")
    monkeypatch.chdir(elsewhere)  # sync from another folder reaches the intended store
    res = runner.invoke(app, ["sync", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert "logged 2 experiment(s)" in res.output
    assert not (elsewhere / "mlflow.db").exists()
    tr = MlflowTracker(f"sqlite:///{lab / 'store.db'}")
    tr.resume_campaign(Journal.read(run_dir / JOURNAL_NAME).tracker_run_id or "")
    assert [r.info.status for r in tr.trial_runs()] == ["FINISHED", "FINISHED"]
    assert tr.client.get_run(tr.run_id).info.status == "FINISHED"  # type: ignore[arg-type]


def test_device_fault_run_has_the_reason_and_the_device_log(
        new_tracker: NewTracker, tmp_path: Path) -> None:
    from autolab.records import Trial

    path = tmp_path / "journal.jsonl"
    fault = Trial(index=0, conditions={"t_core_c": 180.0}, status=TrialStatus.INVALID,
                  error="device fault: pump_phosphine: delivered 0.084 mL where 106.9-107.2 mL "
                        "were due")
    with Journal.create(path, JournalHeader.new("c", real_config(), seed=7)) as j:
        j.append_started(0, fault.conditions)
        j.append_trial(fault, extra={"device": "pump_phosphine", "lab_clock_h": 1.0,
                                     "device_log": ["pump_phosphine DIS -> I0.084W0.000",
                                                    "pump_phosphine status S: idle"]})
        tr = new_tracker()
        sync(j, tr, refresh_plots=False)
    run = tr.trial_runs()[0]
    assert (run.info.status, run.data.tags["autolab.status"]) == ("FAILED", "invalid")
    assert "delivered 0.084 mL" in run.data.tags["autolab.reason"]
    log = tr.client.download_artifacts(run.info.run_id, "device_log.txt", str(tmp_path))
    assert "DIS -> I0.084" in Path(log).read_text()
    parent = tr.client.get_run(tr.run_id)  # type: ignore[arg-type]
    assert parent.data.metrics["n_failed"] == 1
    assert "best_experiment" not in parent.data.metrics


def test_campaign_params_show_the_analyzers_qy_calibration() -> None:
    """The ``analyzer:`` block sets every stated QY sd, so it is a param; a journal written
    before the block has none to show."""
    import yaml

    from autolab.config import parse_campaign
    from autolab.tracking.base import campaign_params

    base = yaml.safe_load((Path(__file__).parents[2] / "campaigns" / "target_550nm.yaml")
                          .read_text())
    config = parse_campaign({**base, "analyzer": {"qy_calibration_rel": 0.08}})
    assert campaign_params(config.model_dump(mode="json"))["analyzer.qy_calibration_rel"] == "0.08"
    old = parse_campaign(base).model_dump(mode="json")
    del old["analyzer"]
    assert not [k for k in campaign_params(old) if k.startswith("analyzer")]
