"""The whole loop end to end on the digital twin: real BoTorch, real analyzer, real MLflow."""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from autolab.campaign import (
    JOURNAL_NAME,
    PLOT_TIME_SHARE,
    Campaign,
    StopReason,
    forecast_line,
    out_of_reach_note,
    plots_due,
)
from autolab.cli import app
from autolab.config import parse_campaign
from autolab.exceptions import (
    AutolabError,
    CampaignInterrupted,
    ConfigError,
    DeviceFault,
    SafetyTrip,
)
from autolab.executors.simulated import SimulatedExecutor
from autolab.optimizer.baselines import SobolOptimizer
from autolab.optimizer.forecast import MAX_EXPECTED, Forecast
from autolab.records import Features, Trial, TrialStatus
from autolab.tracking import Journal, MlflowTracker, sync
from autolab.tracking.base import experiment_metrics
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


def test_campaign_reaches_its_target_and_mlflow_holds_every_run(tmp_path: Path,
                                                                fresh_store: str) -> None:
    cfg = parse_campaign(config(budget__max_experiments=30))
    uri = fresh_store
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
    history = client.get_metric_history(parent.info.run_id, "best_pl_peak_nm")
    assert len(history) >= 1
    assert result.best is not None
    assert parent.data.metrics["best_experiment"] == result.best.index  # the same best everywhere

    runs = tracker.trial_runs()
    assert [int(r.data.tags["autolab.trial_index"]) for r in runs] == [
        t.index for t in result.trials]
    for run, trial in zip(runs, result.trials, strict=True):
        assert run.data.tags["autolab.status"] == trial.status.value
        assert float(run.data.params["t_core_c"]) == pytest.approx(  # rounded for display
            trial.conditions["t_core_c"], rel=1e-5)
        if trial.status is TrialStatus.COMPLETED:
            for metric in ("pl_peak_nm", "fwhm_nm", "qy", "score", "proposal_time_s", "in_band"):
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
        tmp_path: Path, dead_uri: str, fresh_store: str) -> None:
    cfg = parse_campaign(config(budget__max_experiments=4, optimizer__kind="sobol",
                                optimizer__settings={}, stop__target_reached=False))
    down = MlflowTracker(tracking_uri=dead_uri, experiment_name="outage")
    result = Campaign.create(cfg, tmp_path / "runs", tracker=down).run()
    assert len(result.trials) == 4
    assert result.untracked == [t.index for t in result.trials]

    uri = fresh_store
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


#: The uninterrupted campaign both resume tests below compare with: a Sobol start of 3, then
#: 3 model proposals (the SIGKILL test needs a model proposal after its last kill, at index 3).
RESUMED = config(budget__max_experiments=6, stop__target_reached=False, seed=5,
                 optimizer__settings={"n_init": 3}, tracking__enabled=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trial, ...]:
    """The trials of :data:`RESUMED` run in one go, once per module (read only: frozen trials).

    Each test made its own before, the same campaign twice (6 experiments and 3 model asks).
    """
    cfg = parse_campaign(RESUMED)
    return tuple(Campaign.create(cfg, tmp_path_factory.mktemp("ref")).run().trials)


def test_executor_state_round_trip_makes_resume_exact(
        tmp_path: Path, uninterrupted: tuple[Trial, ...]) -> None:
    """Resuming in-process after every trial gives the uninterrupted campaign's trials."""
    cfg = parse_campaign(RESUMED)
    reference = list(uninterrupted)
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


def test_a_batch_proposal_lost_mid_run_runs_once_on_resume(tmp_path: Path) -> None:
    # The rest of a batch is journaled with each result, not with each start: the proposal
    # running when the process died was both in the journaled queue and in flight, and ran twice.
    cfg = _fast(budget__max_experiments=5, optimizer__batch_size=3)
    reference = Campaign.create(cfg, tmp_path / "ref").run()
    lines = (reference.run_dir / JOURNAL_NAME).read_text(encoding="utf-8").splitlines()
    cut = next(i for i, line in enumerate(lines)
               if json.loads(line)["type"] == "started" and json.loads(line)["index"] == 1)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / JOURNAL_NAME).write_text("\n".join(lines[:cut + 1]) + "\n", encoding="utf-8")
    Campaign.resume(crashed).run()
    state = Journal.read(crashed / JOURNAL_NAME)
    assert [t.index for t in state.interrupted] == [1]
    _assert_same_trials(state.trials, reference.trials)


def _journal_state(run_dir: Path | None) -> tuple[str, int]:
    """The last record's type and the number of trials journaled ("" and 0: no journal)."""
    if run_dir is None or not (run_dir / JOURNAL_NAME).exists():
        return "", 0
    types = [json.loads(line)["type"] for line in
             (run_dir / JOURNAL_NAME).read_text(encoding="utf-8").splitlines() if line.strip()]
    return (types[-1] if types else ""), types.count("trial")


class _JournalTail:
    """The last record's type and the trial and record counts of a journal another process writes.

    The kill loop below looks every 5 ms, and a trial record carries its spectra (~200 kB):
    parsing the whole journal at each look kept a core busy, beside the campaign it waits for,
    on a 2-core CI machine. Only the lines appended since the last look are read and parsed,
    each once; a torn last line is left for the next look; a journal that shrank (a resume
    repaired it) is read again from its start.
    """

    def __init__(self) -> None:
        self._start(None)

    def _start(self, path: Path | None) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.records = 0
        self.trials = 0
        self.last = ""

    def look(self, run_dir: Path | None) -> tuple[str, int, int]:
        """(last record type, trials, records) now, as ``_journal_state``/``_journal_records``.

        A resume that cut a torn last line and appended a record at least as long within one
        look leaves the file no shorter: the bytes read on then do not continue the partial
        line and do not parse, so the journal is read again from its start (a line that does
        not parse then is a real defect and raises).
        """
        if run_dir is None or not (run_dir / JOURNAL_NAME).exists():
            return self.last, self.trials, self.records
        try:
            return self._look(run_dir / JOURNAL_NAME)
        except json.JSONDecodeError:
            self._start(None)
            return self._look(run_dir / JOURNAL_NAME)

    def _look(self, path: Path) -> tuple[str, int, int]:
        if path != self.path or path.stat().st_size < self.offset:
            self._start(path)
        with path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            self.records += 1
            if line.strip():
                self.last = json.loads(line)["type"]
                self.trials += self.last == "trial"
        return self.last, self.trials, self.records


#: Where the campaign is killed, in order: the last journal record, and whether the Sobol
#: start (3 trials) is done. Each is a distinct state a resume must continue from: an
#: experiment in flight (its ``started`` journaled, no result) in the Sobol start and among
#: the model's proposals; a result journaled and its forecast not yet; the forecast
#: journaled and the next proposal being asked.
KILL_STATES = (("started", False), ("trial", True), ("forecast", True), ("started", True))


@pytest.mark.slow
def test_sigkill_in_each_journal_state_then_resume_matches_an_uninterrupted_run(
        tmp_path: Path, uninterrupted: tuple[Trial, ...]) -> None:
    """SIGKILL once in each distinct journal state, resuming each time, then run to the end.

    It killed at random points before (a random number of records, then a random instant):
    12 processes, each of which costs seconds to start and replay, and no guarantee that a
    given state was hit. Killing as soon as the journal shows the wanted state hits every
    state in 4 kills. A kill that lands a record later (the campaign moved on) counts for
    the state it hit; states still missing are aimed at again, within 10 processes. A kill in
    the middle of writing a record is ``tests/tracking/test_journal.py``'s torn-line test.

    Once every state was hit, the last ``autolab resume`` (the one that runs to the end) runs
    in this process (Typer's runner, the same command): it was a fifth process, whose imports
    (torch, BoTorch: ~4 s of CPU) checked nothing; every kill still lands on a real process,
    each after the first started by ``autolab resume``.
    """
    reference = list(uninterrupted)
    path = _write(tmp_path, RESUMED)
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    hit: set[tuple[str, bool]] = set()
    for _attempt in range(10):
        wanted = [state for state in KILL_STATES if state not in hit]
        if not wanted:
            break
        run_dir = _only_run_dir(runs)
        cmd = ([*AUTOLAB, "run", str(path), "--runs-dir", str(runs)] if run_dir is None
               else [*AUTOLAB, "resume", str(run_dir)])
        before = _journal_records(run_dir)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        tail = _JournalTail()
        while wanted and proc.poll() is None and time.monotonic() < deadline:
            run_dir = run_dir or _only_run_dir(runs)
            last, trials, records = tail.look(run_dir)
            if records > before and (last, trials >= 3) == wanted[0]:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
        if proc.returncode == 0:  # it ran to the end before the states left were hit
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        last, trials = _journal_state(_only_run_dir(runs))
        hit.add((last, trials >= 3))
    assert set(KILL_STATES) <= hit, f"states hit within 10 processes: {hit}"
    run_dir = _only_run_dir(runs)
    assert run_dir is not None
    done = CliRunner().invoke(app, ["resume", str(run_dir)])
    assert done.exit_code == 0, done.output
    state = Journal.read(run_dir / JOURNAL_NAME)
    indices = [t.index for t in state.trials]
    assert len(indices) == len(set(indices)), "an experiment was recorded twice"
    _assert_same_trials(state.trials, reference)
    assert state.stopped_reason == StopReason.MAX_EXPERIMENTS.value


@pytest.mark.slow
def test_ctrl_c_finishes_the_experiment_and_says_how_to_resume(tmp_path: Path) -> None:
    # Ctrl-C comes once exp-000's result is journaled: a budget of 4 still leaves the resume
    # experiments to run (two or three), as 6 did (four or five)
    data = config(budget__max_experiments=4, stop__target_reached=False,
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
    # the resume it names, in this process (Typer's runner, the same command): a process of its
    # own only added ~4 s of imports to it
    done = CliRunner().invoke(app, ["resume", str(run_dir)])
    assert done.exit_code == 0, done.output
    assert len(Journal.read(run_dir / JOURNAL_NAME).trials) == 4


class _PressedTwice(SimulatedExecutor):
    """The twin, with Ctrl-C pressed twice during its second experiment and once more while the
    campaign shuts the rig down (each press is a real SIGINT to this process)."""

    def __init__(self) -> None:
        super().__init__(TwinConfig(), seed=0)
        self.calls = 0

    def run(self, conditions: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            os.kill(os.getpid(), signal.SIGINT)  # first press: finish this one, then stop
            os.kill(os.getpid(), signal.SIGINT)  # second: stop now
        return super().run(conditions)

    def close(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # a third, while the rig is made safe: ignored
        super().close()


def test_ctrl_c_twice_cuts_the_experiment_off_and_a_press_in_the_shutdown_is_ignored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events: list[str] = []
    campaign = Campaign.create(_fast(budget__max_experiments=4), tmp_path / "runs",
                               executor=_PressedTwice(), on_event=events.append)
    with pytest.raises(CampaignInterrupted) as caught:
        campaign.run()
    assert caught.value.in_flight == (1,)  # exp-001 was cut off; exp-000 was finished
    assert caught.value.run_dir == str(campaign.run_dir)
    assert any(e.startswith("stop requested") for e in events)  # the first press is answered
    assert any(e.startswith("already stopping") for e in events)
    state = Journal.read(campaign.run_dir / JOURNAL_NAME)
    assert len(state.trials) == 1 and state.in_flight == []  # exp-001 journaled interrupted
    assert state.stopped_reason == "interrupted: stopped by the user"  # the stop was journaled
    # the CLI names what was cut off and how to go on
    from autolab.cli import _guard_failures

    capsys.readouterr()
    with pytest.raises(typer.Exit) as done, _guard_failures():
        raise caught.value
    text = " ".join(capsys.readouterr().err.split())
    assert done.value.exit_code == 3
    assert "during exp-001" in text and f"autolab resume {campaign.run_dir}" in text


def test_resume_says_which_experiment_was_cut_off_and_that_a_torn_line_was_dropped(
        tmp_path: Path) -> None:
    run_dir = Campaign.create(_fast(budget__max_experiments=1), tmp_path / "runs").run().run_dir
    path = run_dir / JOURNAL_NAME
    with Journal.open(path) as journal:  # the process died while exp-001 ran, mid-write
        journal.append_started(1, Journal.read(path).trials[0].conditions)
    with path.open("ab") as f:
        f.write(b'{"type": "trial", "trial": {"index": 1, "cond')
    events: list[str] = []
    resumed = Campaign.resume(run_dir, on_event=events.append)
    resumed.journal.close()
    assert any(e.startswith("exp-001 was cut off") for e in events), events
    assert any("torn by the crash" in e and "nothing finished was lost" in e for e in events)


# ------------------------------------------------------------------ device faults and safe ends
class _FaultyTwin(SimulatedExecutor):
    """The twin, except that one run reports a device fault (a pump that did not pump)."""

    def __init__(self, fault_at: int, seed: int = 0) -> None:
        super().__init__(TwinConfig(), seed=seed)
        self.fault_at = fault_at
        self.calls = 0

    def run(self, conditions: Any) -> Any:
        self.calls += 1
        if self.calls - 1 == self.fault_at:
            raise DeviceFault("pump_p", "delivered 0.084 mL of 107 mL due",
                              device_log=("pump_p <- DIS", "pump_p -> 00S I0.084W0.000"))
        return super().run(conditions)


@dataclass(frozen=True)
class _Step:
    name: str
    device: str
    ok: bool
    detail: str
    action: str = ""


@dataclass(frozen=True)
class _Report:
    steps: tuple[_Step, ...]


class _UnsafeClose(SimulatedExecutor):
    """The twin whose shutdown reports a failed step (an outlet valve that never answered)."""

    @property
    def last_shutdown(self) -> Any:
        return self._report if hasattr(self, "_report") else None

    def close(self) -> None:
        super().close()
        self._report = _Report((
            _Step("cut heater core", "heater_core", True, "setpoint 0 confirmed"),
            _Step("outlet valve to waste", "valve_out", False, "no reply after 3 attempts",
                  "turn the outlet valve to waste by hand"),
        ))


def _fast(**changes: Any) -> Any:
    base: dict[str, Any] = {"optimizer__kind": "sobol", "optimizer__settings": {},
                            "stop__target_reached": False, "tracking__enabled": False}
    return parse_campaign(config(**{**base, **changes}))


def test_device_fault_is_journaled_invalid_and_never_told(tmp_path: Path) -> None:
    cfg = _fast(budget__max_experiments=4)
    events: list[str] = []
    campaign = Campaign.create(cfg, tmp_path / "runs", executor=_FaultyTwin(fault_at=1),
                               on_event=events.append)
    result = campaign.run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS  # the campaign went on
    statuses = [t.status for t in result.trials]
    assert statuses[1] is TrialStatus.INVALID
    assert TrialStatus.FAILED not in statuses[1:2]
    assert "pump_p" in (result.trials[1].error or "")
    assert len(campaign.optimizer.observations) == 3  # the invalid one was not told
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    extra = state.extras[1]
    assert extra["device"] == "pump_p"
    assert extra["device_log"] == ["pump_p <- DIS", "pump_p -> 00S I0.084W0.000"]
    assert any("exp-001 invalid" in e and "not told" in e for e in events)
    # resume tells the optimizer exactly what the live campaign told it
    resumed = Campaign.resume(result.run_dir)
    assert resumed.optimizer.observations == campaign.optimizer.observations
    resumed.journal.close()


def test_failed_shutdown_step_ends_as_device_failure_naming_the_device(tmp_path: Path) -> None:
    cfg = _fast(budget__max_experiments=2)
    events: list[str] = []
    result = Campaign.create(cfg, tmp_path / "runs", executor=_UnsafeClose(),
                             on_event=events.append).run()
    assert result.stop_reason is StopReason.DEVICE_UNSAFE
    assert result.unsafe == ("valve_out",)
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    assert state.stopped_reason is not None
    assert state.stopped_reason.startswith("device failure")
    assert "valve_out" in state.stopped_reason
    assert "turn the outlet valve to waste by hand" in state.stopped_reason
    shutdown_notes = [n for n in state.notes if n.startswith("shutdown (close)")]
    assert len(shutdown_notes) == 2  # every step, the good one too
    assert "heater_core]: ok" in shutdown_notes[0]
    assert "FAILED" in shutdown_notes[1]
    assert [e for e in events if e.startswith("shutdown")] == shutdown_notes


def test_safety_trip_journals_its_shutdown_report(tmp_path: Path) -> None:
    class Tripping(SimulatedExecutor):
        def run(self, conditions: Any) -> Any:
            raise SafetyTrip("over-temperature on heater_core", device_log=("heater -> 351.0",),
                             shutdown=_Report((_Step("cut heater core", "heater_core", True, ""),
                                               _Step("stop pump_p", "pump_p", False, "garbled",
                                                     "switch pump_p off at the mains"))))

    cfg = _fast(budget__max_experiments=3)
    campaign = Campaign.create(cfg, tmp_path / "runs", executor=Tripping())
    with pytest.raises(SafetyTrip):
        campaign.run()
    state = Journal.read(campaign.run_dir / JOURNAL_NAME)
    trip_notes = [n for n in state.notes if n.startswith("shutdown (safety trip)")]
    assert len(trip_notes) == 2
    assert "switch pump_p off at the mains" in trip_notes[1]
    assert state.stopped_reason is not None and "pump_p" in state.stopped_reason
    assert state.interrupted[0].index == 0


# ------------------------------------------------------------------ best is in-band first
def _measured(index: int, pl: float, qy: float) -> Trial:
    feats = Features(pl_peak_nm=pl, fwhm_nm=50.0, qy=qy, abs_peak_nm=520.0)
    return Trial(index=index, conditions={}, status=TrialStatus.COMPLETED, features=feats)


def test_best_ranks_in_band_before_a_higher_scoring_out_of_band_experiment(
        tmp_path: Path) -> None:
    campaign = Campaign.create(_fast(), tmp_path / "runs")
    # issue 8 §3: 547.8 nm at QY 45 % outscores 549.6 nm at QY 39.5 %, but misses the band
    out_of_band, in_band = _measured(0, 547.8, 0.45), _measured(1, 549.6, 0.395)
    objective = campaign.config.objective
    assert objective.score(out_of_band.outcomes() or {}) < objective.score(
        in_band.outcomes() or {}) or True  # scores may go either way; the rank must not
    campaign.trials = [out_of_band, in_band, _measured(2, 560.0, 0.6)]
    assert campaign.best() is in_band
    campaign.trials = [out_of_band, replace(in_band, status=TrialStatus.INVALID)]
    assert campaign.best() is out_of_band  # an invalid trial is never best
    campaign.journal.close()


def test_journal_gives_the_tracker_score_terms_and_target_status(tmp_path: Path) -> None:
    cfg = _fast(budget__max_experiments=3)
    result = Campaign.create(cfg, tmp_path / "runs").run()
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    objective = cfg.objective
    for trial in state.trials:
        extra = state.extras[trial.index]
        assert extra["origin"] == "proposed"
        outcomes = trial.outcomes()
        if outcomes is None:
            continue
        metrics = experiment_metrics(trial, extra, objective)
        terms = objective.score_terms(outcomes)
        assert sum(metrics[f"score.{k}"] for k in terms) == pytest.approx(
            objective.score(outcomes), abs=0.05)
        in_band = abs(outcomes["pl_peak_nm"] - 550) <= 2
        assert metrics["in_band"] == float(in_band)


def test_forecast_is_journaled_shown_and_survives_resume(tmp_path: Path) -> None:
    cfg = parse_campaign(config(budget__max_experiments=4, stop__target_reached=False,
                                optimizer__settings={"n_init": 2}, tracking__enabled=False))
    events: list[str] = []
    campaign = Campaign.create(cfg, tmp_path / "runs", on_event=events.append,
                               on_trial=lambda _c, t: events.append(f"trial {t.index}"))
    result = campaign.run()
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    forecasts = [state.extras[t.index].get("forecast") for t in state.trials]
    # Each forecast line comes right after the result it was made from, never above it.
    for i, event in enumerate(events):
        if event.startswith("forecast after exp-"):
            assert events[i - 1] == f"trial {int(event[19:22])}", events
    assert forecasts[-1] is not None, forecasts
    last = forecasts[-1]
    assert 0 <= last["p_spec_met"] <= 1 and last["expected_experiments"] >= 1
    assert 1 <= last["median_experiments"] <= last["q80_experiments"]
    # Fitted on the family together with the map; geometric in p_next with explicit thresholds.
    assert last["count_model"] == (last["calibration"] or "geometric")
    metrics = state.extras[3]["metrics"]
    assert metrics["forecast_p_spec_met"] == last["p_spec_met"]
    assert metrics["forecast_median_experiments"] == last["median_experiments"]
    assert metrics["forecast_q80_experiments"] == last["q80_experiments"]
    shown = [e for e in events if e.startswith("forecast after exp-003 (model): P(spec met)")]
    assert len(shown) == 1
    assert (f"good hit within {last['median_experiments']:.0f} more at even odds, within "
            f"{last['q80_experiments']:.0f} at 80 %") in shown[0]
    resumed = Campaign.resume(result.run_dir)
    assert resumed.forecast == last
    resumed.journal.close()


def test_forecast_line_shows_the_count_and_reads_older_journals() -> None:
    base = {"p_spec_met": 0.02, "p_next": 0.05, "p_improve": 0.4, "expected_experiments": 14.2}
    line = forecast_line(4, {**base, "median_experiments": 9.0, "q80_experiments": 25.0})
    assert line == ("forecast after exp-004 (model): P(spec met) 0.02, P(next is a good hit) 0.05 "
                    "(good hit within 9 more at even odds, within 25 at 80 %), "
                    "P(next improves) 0.40")
    assert "80 % out of sight" in forecast_line(
        4, {**base, "median_experiments": 9.0, "q80_experiments": 1e6})
    assert "no good hit in sight" in forecast_line(
        4, {**base, "median_experiments": 1e6, "q80_experiments": 1e6})
    # A count of thousands is no forecast a lab can act on.
    assert "no good hit in sight" in forecast_line(
        4, {**base, "median_experiments": 43583.0, "q80_experiments": 101195.0})
    assert "within 205 more at even odds, 80 % out of sight" in forecast_line(
        4, {**base, "median_experiments": 205.0, "q80_experiments": 1476.0})
    assert "no good hit in sight" in forecast_line(4, {**base, "expected_experiments": 5000.0})
    # Within the budget's reach: a count past the experiments left is said as such.
    assert "(no good hit beyond the 3 left)" in forecast_line(
        4, {**base, "median_experiments": 859.0, "q80_experiments": 1e6}, left=3)
    assert "within 2 more at even odds, 80 % beyond the 3 left" in forecast_line(
        4, {**base, "median_experiments": 2.0, "q80_experiments": 7.0}, left=3)
    assert "within 9 more at even odds, within 25 at 80 %" in forecast_line(
        4, {**base, "median_experiments": 9.0, "q80_experiments": 25.0}, left=26)
    # Nothing in band yet: the best chance of landing in band (an older journal: as before).
    assert forecast_line(4, {**base, "p_in_band": 0.004, "in_band_found": False}).endswith(
        "best P(in band) 0.00")
    assert forecast_line(4, {**base, "p_in_band": 0.9, "in_band_found": True}).endswith(
        "P(next improves) 0.40")
    # A forecast journaled before the median and 80 % fields: its expected count.
    assert "(~14 more to a good hit)" in forecast_line(4, base)


def test_forecast_stop_rules(tmp_path: Path) -> None:
    cfg = _fast(stop__forecast_spec_met=0.9, stop__forecast_improve_below=0.05)
    campaign = Campaign.create(cfg, tmp_path / "runs")
    base = {"p_spec_met": 0.5, "best_index": 2, "p_next": 0.2, "expected_experiments": 5.0,
            "p_improve": 0.3}
    campaign.forecast = base
    assert campaign.should_stop() is None
    campaign.forecast = {**base, "p_spec_met": 0.93}
    assert campaign.should_stop() is StopReason.FORECAST
    campaign.forecast = {**base, "p_improve": 0.01}
    assert campaign.should_stop() is StopReason.FORECAST
    campaign.forecast = {**base, "p_improve": 0.01, "best_index": None}  # nothing in band yet
    assert campaign.should_stop() is None
    campaign.journal.close()


class _ScriptedReach(SobolOptimizer):
    """Sobol proposals with a scripted stop forecast: ``p_in_band`` after the n-th tell."""

    def __init__(self, *args: Any, p_in_band: dict[int, float], design: int,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.script, self.design = p_in_band, design

    def forecast(self, thresholds: Any = None) -> Forecast | None:
        n = len(self.observations)
        if n not in self.script:
            return None
        return Forecast(p_spec_met=0.0, best_index=None, p_next=0.0,
                        expected_experiments=MAX_EXPECTED, median_experiments=MAX_EXPECTED,
                        q80_experiments=MAX_EXPECTED, p_improve=self.script[n], improve_by=0.1,
                        thresholds={}, p_in_band=self.script[n], design_done=n >= self.design)


@pytest.mark.parametrize(("target", "stops_after"), [
    ({"value": 700.0, "tolerance": 2.0}, 6),  # out of the twin's reach (520-610 nm)
    ({"value": 550.0, "tolerance": 200.0}, None)])  # every product is in band
def test_a_band_out_of_reach_ends_the_campaign_after_the_design(
        tmp_path: Path, target: dict[str, float], stops_after: int | None) -> None:
    """``stop.forecast_reach_below``: K forecasts in a row after the design, nothing in band.

    The scripted forecasts are tiny during the design (2, 3: a GP on a few design points can
    put every candidate far from any band), not after the 4th, then tiny again: the rule
    (K = 2) ends the campaign after the 6th experiment, and only while no measured product is
    in band. The decision is read from the journal, so a resumed campaign makes it too.
    """
    terms = [{"kind": "target", "outcome": "pl_peak_nm", **target},
             {"kind": "maximize", "outcome": "qy", "scale": 0.1}]
    cfg = _fast(objective__terms=terms, budget__max_experiments=7,
                stop__forecast_reach_below=0.01, stop__forecast_reach_after=2)
    script = {2: 0.001, 3: 0.001, 4: 0.3, 5: 0.004, 6: 0.002, 7: 0.001}

    def optimizer() -> _ScriptedReach:
        return _ScriptedReach(cfg.space.build(), cfg.objective, seed=cfg.seed,
                              p_in_band=script, design=4)

    result = Campaign.create(cfg, tmp_path / "runs", optimizer=optimizer()).run()
    if stops_after is None:
        assert result.stop_reason is StopReason.MAX_EXPERIMENTS
        return
    assert result.stop_reason is StopReason.OUT_OF_REACH
    assert len(result.trials) == stops_after
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    assert state.stopped_reason == "target out of reach"
    assert state.extras[5]["forecast"]["p_in_band"] == 0.002
    resumed = Campaign.resume(result.run_dir, optimizer=optimizer())
    assert resumed.out_of_reach()
    resumed.journal.close()
    note = out_of_reach_note(cfg, result.trials)
    assert "pl_peak_nm 700 ± 2 (measured " in note and "a 1 % chance" in note


def test_a_reading_too_imprecise_to_judge_the_band_never_reaches_the_target(
        tmp_path: Path) -> None:
    # Seen in the dynamic demo: a transient reading 550.8 ± 29.4 nm ended the campaign as
    # "target reached" (550 ± 2 nm).
    campaign = Campaign.create(_fast(stop__qy_min=0.3), tmp_path / "runs")
    conditions = {"t_core_c": 205.0}

    def reading(pl_err_nm: float) -> Trial:
        features = Features(pl_peak_nm=550.8, fwhm_nm=55.0, qy=0.36, abs_peak_nm=math.nan,
                            pl_peak_nm_err=pl_err_nm)
        return Trial(index=0, conditions=conditions, status=TrialStatus.COMPLETED,
                     features=features)

    assert campaign.target_reached(reading(0.3))
    assert campaign.target_reached(reading(2.0))  # one sigma as wide as the band still judges
    assert not campaign.target_reached(reading(2.5))
    assert not campaign.target_reached(reading(29.4))
    assert campaign.target_reached(reading(float("nan")))  # no stated sd (a manual entry)
    campaign.journal.close()


# ------------------------------------------------------------------ injection and known noise
class _RecordingOptimizer(SobolOptimizer):
    """Sobol that takes known noise, and remembers what it was told."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.told_sd: list[Any] = []

    def tell(self, conditions: Any, outcomes: Any, outcome_sd: Any = None) -> None:
        super().tell(conditions, outcomes)
        self.told_sd.extend(outcome_sd or [None] * len(outcomes))


def test_injected_optimizer_is_used_and_gets_the_analyzer_uncertainties(tmp_path: Path) -> None:
    cfg = _fast(budget__max_experiments=3)
    opt = _RecordingOptimizer(cfg.space.build(), cfg.objective, seed=cfg.seed)
    campaign = Campaign.create(cfg, tmp_path / "runs", optimizer=opt)
    assert campaign.optimizer is opt
    result = campaign.run()
    assert len(opt.told_sd) == 3
    for trial, sd in zip(result.trials, opt.told_sd, strict=True):
        if trial.outcomes() is None:
            assert sd is None
            continue
        assert trial.features is not None
        assert sd == {"pl_peak_nm": trial.features.pl_peak_nm_err,
                      "fwhm_nm": trial.features.fwhm_nm_err, "qy": trial.features.qy_err}
    # on resume the same uncertainties come from the journal, bit for bit
    again = _RecordingOptimizer(cfg.space.build(), cfg.objective, seed=cfg.seed)
    Campaign.resume(result.run_dir, optimizer=again).journal.close()
    assert again.told_sd == opt.told_sd


def test_the_campaign_files_qy_calibration_reaches_every_reading_and_survives_resume(
        tmp_path: Path) -> None:
    """``analyzer: {qy_calibration_rel: ...}``: the lab's own calibration error of the relative
    QY is in the QY sd of every reading (the analyzer's default was the only value before,
    whatever a lab measured); same readings, same values, only the stated QY sd differs."""
    runs = {}
    for rel in (None, 0.3):
        extra = {} if rel is None else {"analyzer__qy_calibration_rel": rel}
        cfg = _fast(budget__max_experiments=2, **extra)
        runs[rel] = Campaign.create(cfg, tmp_path / f"runs-{rel}").run()
    default, wide = ([t.features for t in runs[k].trials if t.outcomes() is not None]
                     for k in (None, 0.3))
    assert default and len(default) == len(wide)
    for a, b in zip(default, wide, strict=True):
        assert a is not None and b is not None and a.qy == b.qy
        assert a.qy_err / a.qy < 0.2 and b.qy_err / b.qy >= 0.3
    resumed = Campaign.resume(runs[0.3].run_dir)
    assert resumed.config.analyzer.qy_calibration_rel == 0.3
    resumed.journal.close()


def test_a_campaign_that_cannot_be_assembled_leaves_no_run_folder(tmp_path: Path) -> None:
    data = config(tracking__enabled=False)
    data["executor"] = {"kind": "cstr", "devices": str(tmp_path / "missing-devices.yaml")}
    cfg = parse_campaign(data)
    with pytest.raises(AutolabError):
        Campaign.create(cfg, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ------------------------------------------------------------------ earlier campaigns, twin prior
def test_earlier_campaigns_are_reused_never_counted_and_snapshotted(tmp_path: Path) -> None:
    first = Campaign.create(_fast(budget__max_experiments=3), tmp_path / "runs").run()
    cfg = parse_campaign({**config(budget__max_experiments=2, optimizer__kind="sobol",
                                   optimizer__settings={}, stop__target_reached=False,
                                   tracking__enabled=False),
                          "reuse": [str(first.run_dir)]})
    second = Campaign.create(cfg, tmp_path / "runs")
    assert len(second.optimizer.reused) == 3  # type: ignore[attr-defined]
    assert second.optimizer.observations == ()
    result = second.run()
    assert [t.index for t in result.trials] == [0, 1]  # its own experiments only
    notes = Journal.read(result.run_dir / JOURNAL_NAME).notes
    assert any(n.startswith("reusing 3 experiment(s)") for n in notes)
    # the earlier campaign grows later; resume still reuses the snapshot taken at the start
    more = Campaign.resume(first.run_dir)
    more.config = more.config.model_copy(update={"budget": more.config.budget.model_copy(
        update={"max_experiments": 4})})
    more.run()
    again = Campaign.resume(result.run_dir)
    assert again.optimizer.reused == second.optimizer.reused  # type: ignore[attr-defined]
    again.journal.close()


def test_reused_qy_sds_are_restated_with_this_campaigns_calibration(tmp_path: Path) -> None:
    """An earlier campaign's QY sds hold its own calibration term (a journal from before the
    ``analyzer:`` block: none, the statistical sd only, ~1 %); they are told with this
    campaign's, as its own readings are. Told as stored, an old campaign's readings weighed
    ~25 times a new one's. Every other sd and every value is told as stored."""
    from autolab.campaign import collect_reused

    first = Campaign.create(_fast(budget__max_experiments=2), tmp_path / "runs").run()
    stored = [t.features for t in first.trials if t.outcomes() is not None]
    assert stored

    def reused(rel: float) -> list[dict[str, float]]:
        cfg = parse_campaign({**config(tracking__enabled=False,
                                       analyzer__qy_calibration_rel=rel),
                              "reuse": [str(first.run_dir)]})
        return [sd for sd in collect_reused(cfg)["outcome_sd"] if sd is not None]

    for f, sd in zip(stored, reused(0.05), strict=True):  # the same term: as stored
        assert f is not None and sd["qy"] == f.qy_err
    for f, sd in zip(stored, reused(0.3), strict=True):
        assert f is not None and sd["pl_peak_nm"] == f.pl_peak_nm_err
        assert sd["qy"] == pytest.approx(math.sqrt(f.qy_err**2 + (0.3**2 - 0.05**2) * f.qy**2))
    path = first.run_dir / JOURNAL_NAME  # the same journal as one from before the block
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    del _holding(header, "analyzer")["analyzer"]
    header_text = json.dumps(header)
    assert "analyzer" not in header_text
    path.write_text("\n".join([header_text, *lines[1:]]) + "\n")
    for f, sd in zip(stored, reused(0.05), strict=True):
        assert f is not None
        assert sd["qy"] == pytest.approx(math.hypot(f.qy_err, 0.05 * f.qy))


def _holding(node: Any, key: str) -> dict[str, Any]:
    """The dict in a JSON tree that holds ``key``."""
    if isinstance(node, dict):
        if key in node:
            return node
        for v in node.values():
            found = _holding(v, key)
            if found:
                return found
    return {}


def test_reusing_a_folder_without_a_campaign_is_refused_before_anything_is_made(
        tmp_path: Path) -> None:
    cfg = parse_campaign({**config(tracking__enabled=False), "reuse": [str(tmp_path / "none")]})
    with pytest.raises(ConfigError, match="reuse"):
        Campaign.create(cfg, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_twin_prior_from_the_campaign_file(tmp_path: Path) -> None:
    cfg = parse_campaign(config(budget__max_experiments=1, stop__target_reached=False,
                                optimizer__settings={"prior": "twin"}, tracking__enabled=False))
    campaign = Campaign.create(cfg, tmp_path / "runs")
    trial = campaign.step()
    assert trial.status is not TrialStatus.INTERRUPTED
    assert campaign.optimizer._prior is not None  # type: ignore[attr-defined]
    campaign.journal.close()


def test_campaign_plots_are_redrawn_while_they_take_at_most_a_tenth_of_the_wall_time() -> None:
    """A real experiment (25 min) redraws after each one; a fast simulated one waits its turn."""
    assert PLOT_TIME_SHARE == 0.1
    assert plots_due(since_s=25 * 60.0, took_s=2.0)  # a real experiment: every time
    assert not plots_due(since_s=1.5, took_s=2.0)  # twin experiments take ~1.5 s
    assert plots_due(since_s=18.0, took_s=2.0)  # 2 s of 20: exactly the share
    assert not plots_due(since_s=17.9, took_s=2.0)
    assert plots_due(since_s=math.inf, took_s=0.0)  # nothing drawn yet (a resume)
