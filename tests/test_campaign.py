"""The whole loop end to end on the digital twin: real BoTorch, real analyzer, real MLflow."""

from __future__ import annotations

import copy
import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from autolab.campaign import JOURNAL_NAME, Campaign, StopReason
from autolab.config import parse_campaign
from autolab.executors.simulated import SimulatedExecutor
from autolab.records import TrialStatus
from autolab.tracking import Journal, MlflowTracker, sync
from autolab.twin import TwinConfig

ROOT = Path(__file__).parent.parent
BASE = yaml.safe_load((ROOT / "campaigns" / "target_550nm.yaml").read_text())
AUTOLAB = [sys.executable, "-m", "autolab"]


def config(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return data


def test_campaign_reaches_its_target_and_mlflow_holds_every_run(tmp_path: Path) -> None:
    cfg = parse_campaign(config(budget__max_experiments=30))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(tracking_uri=uri, experiment_name="e2e")
    result = Campaign.create(cfg, tmp_path / "runs", tracker=tracker).run()

    assert result.stop_reason is StopReason.TARGET_REACHED
    best = result.trials[-1]
    assert best.features is not None
    assert abs(best.features.pl_peak_nm - 550) <= 2
    assert best.features.qy >= cfg.stop.qy_min  # type: ignore[operator]
    assert result.untracked == []

    client = MlflowClient(uri)
    parent = client.get_run(result.tracking_run_id)  # type: ignore[arg-type]
    assert parent.data.tags["autolab.campaign"] == "target-550nm"
    assert parent.data.tags["autolab.stop_reason"] == StopReason.TARGET_REACHED.value
    assert "bounds.t_core_c" in parent.data.params
    assert parent.info.status == "FINISHED"
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/convergence.png", "plots/parameters_vs_outcomes.png"} <= parent_files
    history = client.get_metric_history(parent.info.run_id, "best_so_far")
    assert len(history) >= 1

    runs = tracker.trial_runs()
    assert [int(r.data.tags["autolab.trial_index"]) for r in runs] == [
        t.index for t in result.trials]
    for run, trial in zip(runs, result.trials, strict=True):
        assert run.data.tags["autolab.status"] == trial.status.value
        assert float(run.data.params["t_core_c"]) == pytest.approx(trial.conditions["t_core_c"])
        if trial.status is TrialStatus.COMPLETED:
            for metric in ("pl_peak_nm", "fwhm_nm", "qy", "objective", "proposal_time_s"):
                assert metric in run.data.metrics, metric
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"spectra.csv", "spectrum.png"} <= files
    local = client.download_artifacts(runs[-1].info.run_id, "spectra.csv", str(tmp_path))
    rows = list(csv.DictReader(io.StringIO(Path(local).read_text())))
    assert len(rows) == 1024
    assert "pl_counts" in rows[0]


def test_failed_experiments_do_not_stop_the_loop(tmp_path: Path) -> None:
    # A horizontal cascade traps gas bubbles: a quarter of its experiments fail (the twin's model).
    data = config(budget__max_experiments=10, optimizer__kind="random", optimizer__settings={},
                  stop__target_reached=False, seed=2)
    data["executor"] = {"kind": "twin", "twin": {"orientation": "horizontal"}}
    cfg = parse_campaign(data)
    result = Campaign.create(cfg, tmp_path / "runs").run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    assert len(result.trials) == 10
    failed = [t for t in result.trials if t.status is TrialStatus.FAILED]
    assert failed, "expected the horizontal twin to fail some experiments"
    assert all(t.error for t in failed)
    assert all(t.objective is None for t in failed)
    assert any(t.status is TrialStatus.COMPLETED for t in result.trials)


def test_tracking_outage_does_not_stop_the_campaign_and_sync_catches_up(
        tmp_path: Path, dead_uri: str) -> None:
    cfg = parse_campaign(config(budget__max_experiments=4, optimizer__kind="sobol",
                                optimizer__settings={}, stop__target_reached=False))
    down = MlflowTracker(tracking_uri=dead_uri, experiment_name="outage")
    result = Campaign.create(cfg, tmp_path / "runs", tracker=down).run()
    assert len(result.trials) == 4
    assert result.untracked == [t.index for t in result.trials]

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    up = MlflowTracker(tracking_uri=uri, experiment_name="outage")
    assert sync(result.run_dir / JOURNAL_NAME, up) == 4
    assert len(up.trial_runs()) == 4
    again = MlflowTracker(tracking_uri=uri, experiment_name="outage")
    assert sync(result.run_dir / JOURNAL_NAME, again) == 0  # exactly once
    assert Journal.read(result.run_dir / JOURNAL_NAME).untracked == []


@pytest.mark.server
def test_campaign_logs_over_http_to_an_mlflow_server(tmp_path: Path, mlflow_server: str) -> None:
    cfg = parse_campaign(config(budget__max_experiments=3, optimizer__kind="sobol",
                                optimizer__settings={}, stop__target_reached=False))
    tracker = MlflowTracker(tracking_uri=mlflow_server, experiment_name="http-e2e")
    result = Campaign.create(cfg, tmp_path / "runs", tracker=tracker).run()
    client = MlflowClient(mlflow_server)
    parent = client.get_run(result.tracking_run_id)  # type: ignore[arg-type]
    assert parent.data.tags["autolab.campaign"] == "target-550nm"
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(runs) == 3
    assert all("pl_peak_nm" in r.data.metrics for r in runs)
    files = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert "spectra.csv" in files


def test_executor_state_round_trip_makes_resume_exact(tmp_path: Path) -> None:
    """Resuming in-process after every trial gives the uninterrupted campaign's trials."""
    cfg = parse_campaign(config(budget__max_experiments=6, stop__target_reached=False,
                                optimizer__settings={"n_init": 3}))
    reference = Campaign.create(cfg, tmp_path / "ref").run().trials
    campaign = Campaign.create(cfg, tmp_path / "chunked")
    run_dir = campaign.run_dir
    campaign.step()
    campaign.journal.close()
    for _ in range(5):
        campaign = Campaign.resume(run_dir, executor=SimulatedExecutor(TwinConfig(), seed=cfg.seed))
        campaign.step()
        campaign.journal.close()
    _assert_same_trials(Journal.read(run_dir / JOURNAL_NAME).trials, reference)


def _assert_same_trials(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.status == b.status
        assert a.conditions.keys() == b.conditions.keys()
        np.testing.assert_allclose(list(a.conditions.values()), list(b.conditions.values()),
                                   rtol=1e-6)
        if a.features is not None:
            np.testing.assert_allclose(
                [a.features.pl_peak_nm, a.features.fwhm_nm, a.features.qy],
                [b.features.pl_peak_nm, b.features.fwhm_nm, b.features.qy], rtol=1e-6)


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _journal_records(run_dir: Path | None) -> int:
    if run_dir is None or not (run_dir / JOURNAL_NAME).exists():
        return 0
    return (run_dir / JOURNAL_NAME).read_bytes().count(b"\n")


def _only_run_dir(root: Path) -> Path | None:
    dirs = list(root.glob("*/" + JOURNAL_NAME))
    return dirs[0].parent if dirs else None


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    data = config(budget__max_experiments=7, stop__target_reached=False, seed=5,
                  optimizer__settings={"n_init": 3}, tracking__enabled=False)
    cfg = parse_campaign(data)
    reference = Campaign.create(cfg, tmp_path / "ref").run().trials
    path = _write(tmp_path, data)
    runs = tmp_path / "runs"
    rng = np.random.default_rng(1)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    for _attempt in range(12):
        run_dir = _only_run_dir(runs)
        cmd = ([*AUTOLAB, "run", str(path), "--runs-dir", str(runs)] if run_dir is None
               else [*AUTOLAB, "resume", str(run_dir)])
        before = _journal_records(run_dir)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Kill once the journal has grown by a random number of records, plus a random instant.
        grow = int(rng.integers(1, 5))
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if _journal_records(_only_run_dir(runs)) >= before + grow:
                time.sleep(float(rng.uniform(0, 0.4)))
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
    else:
        pytest.fail("campaign did not finish after 12 attempts")
    assert kills >= 2
    run_dir = _only_run_dir(runs)
    assert run_dir is not None
    state = Journal.read(run_dir / JOURNAL_NAME)
    indices = [t.index for t in state.trials]
    assert len(indices) == len(set(indices)), "an experiment was recorded twice"
    _assert_same_trials(state.trials, reference)
    assert state.stopped_reason == StopReason.MAX_EXPERIMENTS.value


@pytest.mark.slow
def test_ctrl_c_finishes_the_experiment_and_says_how_to_resume(tmp_path: Path) -> None:
    data = config(budget__max_experiments=6, stop__target_reached=False,
                  optimizer__kind="sobol", optimizer__settings={}, tracking__enabled=False)
    path = _write(tmp_path, data)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([*AUTOLAB, "run", str(path), "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while _journal_records(_only_run_dir(runs)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    text = out.decode()
    assert proc.returncode == 3, text
    assert "autolab resume" in text
    run_dir = _only_run_dir(runs)
    assert run_dir is not None
    state = Journal.read(run_dir / JOURNAL_NAME)
    assert state.in_flight == []  # the experiment in progress was finished, not abandoned
    assert state.stopped_reason == StopReason.INTERRUPTED.value
    done = subprocess.run([*AUTOLAB, "resume", str(run_dir)], capture_output=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert len(Journal.read(run_dir / JOURNAL_NAME).trials) == 6
