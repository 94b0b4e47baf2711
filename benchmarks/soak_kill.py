"""Soak test: SIGKILL a tracked twin campaign at random points, resume it, and count what broke.

Each round forks a child that does what ``autolab run`` / ``autolab resume`` do (open the MLflow
store, creating it on the first start; create or resume the campaign; run it), sleeps a random
time, and SIGKILLs it: during store creation (the first kill lands there on purpose), during an
experiment, between journaling and logging, in MLflow's writes. After every kill the script
checks the journal against what it held before (nothing lost), and on every other kill it runs a
sync, as a user would (``autolab sync``), and compares every MLflow run's status with the
journal; until one such check has been made, such a kill's timer starts once the campaign has
journaled one more experiment, so there is something to sync however slow the machine. When a
campaign finishes, the next round starts a new one in the same store, until the number of kills
is reached; then the last campaign runs to its end unkilled and is checked again.

Printed and written to ``benchmarks/results/soak_kill.json``:

* ``lost``: finished experiments the journal held before a kill and not after, plus finished
  journal experiments without an MLflow run at the end;
* ``duplicated``: journal indices with more than one active MLflow run, plus campaigns that ran
  more experiments than their budget;
* ``status_mismatch``: MLflow runs (campaign or experiment) whose status differs from the
  journal's, after a sync and at the end; plus a summary count ``n_experiments`` that differs;
* ``diverged``: campaigns whose finished experiments' conditions differ from an uninterrupted
  campaign with the same seed (the resume contract: propose exactly what it would have).

All four must be 0. Run: ``.venv/bin/python benchmarks/soak_kill.py [--kills 20]``.
Forking (not a new interpreter per round) keeps torch and MLflow imported once, so each round
costs its own work, not seconds of imports; the child limits torch to one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The campaign: the README's 550 nm twin campaign, short.
CAMPAIGN = ROOT / "campaigns" / "target_550nm.yaml"
RESULT = ROOT / "benchmarks" / "results" / "soak_kill.json"


@dataclass
class Counts:
    """What the soak found (all must be 0) and what it did."""

    kills: int = 0
    kills_during_store_creation: int = 0
    campaigns: int = 0
    experiments: int = 0
    interrupted_attempts: int = 0
    checks: int = 0
    lost: int = 0
    duplicated: int = 0
    status_mismatch: int = 0
    diverged: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def _config(budget: int, n_init: int) -> Any:
    from autolab.config import load_campaign

    return load_campaign(CAMPAIGN, {"budget.max_experiments": budget,
                                    "optimizer.settings.n_init": n_init,
                                    "stop.target_reached": False,
                                    "stop.no_improvement_after": None})


def _child(work: Path, uri: str, run_dir: Path | None, budget: int, n_init: int) -> None:
    """What ``autolab run`` (``run_dir`` None) or ``autolab resume RUN_DIR`` does; never returns."""
    code = 0
    try:
        import torch

        torch.set_num_threads(1)
        from autolab.campaign import Campaign
        from autolab.exceptions import TrackingError
        from autolab.tracking.mlflow_tracker import MlflowTracker

        tracker = MlflowTracker(uri, "soak")
        with contextlib.suppress(TrackingError):  # journal-only, like the CLI (it warns)
            tracker.check()  # creates the store on the first start
        if run_dir is None:
            campaign = Campaign.create(_config(budget, n_init), work / "runs", tracker=tracker)
        else:
            campaign = Campaign.resume(run_dir, tracker=tracker)
        campaign.run()
    except BaseException as err:
        print(f"child failed: {type(err).__name__}: {err}", file=sys.stderr)
        code = 1
    finally:
        os._exit(code)


def _forget_engines() -> None:
    """Drop pooled SQLite connections before forking (a child must not share them)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    for uri in list(SqlAlchemyStore._engine_map):
        SqlAlchemyStore._engine_map.pop(uri).dispose()


def _journal_dirs(work: Path) -> list[Path]:
    return sorted(p.parent for p in (work / "runs").glob("*/journal.jsonl"))


def _finished_records(run_dir: Path) -> dict[int, dict[str, Any]]:
    from autolab.campaign import JOURNAL_NAME
    from autolab.exceptions import JournalError
    from autolab.tracking import Journal

    try:
        state = Journal.read(run_dir / JOURNAL_NAME)
    except JournalError:  # killed while the header was written: nothing recorded yet
        return {}
    return {t.index: t.to_dict() for t in state.finished()}


def _check_status(run_dir: Path, uri: str, counts: Counts, where: str) -> None:
    """Every MLflow run of this campaign against its journal."""
    from mlflow import MlflowClient

    from autolab.campaign import JOURNAL_NAME
    from autolab.tracking import Journal
    from autolab.tracking.base import campaign_status

    state = Journal.read(run_dir / JOURNAL_NAME)
    counts.checks += 1
    if state.tracker_run_id is None:
        counts.status_mismatch += 1
        counts.problems.append(f"{where}: {run_dir.name} has no MLflow run after a sync")
        return
    client = MlflowClient(uri)
    parent = client.get_run(state.tracker_run_id)
    want = campaign_status(state.stopped_reason, state.in_flight, state.stopped_status)
    if parent.info.status != want:
        counts.status_mismatch += 1
        counts.problems.append(f"{where}: campaign run {parent.info.status}, journal {want}")
    runs = client.search_runs([parent.info.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{state.tracker_run_id}'",
                              max_results=5000)
    by_index: dict[int, list[Any]] = {}
    for r in runs:
        by_index.setdefault(int(r.data.tags["autolab.trial_index"]), []).append(r)
    expected = {"completed": "FINISHED", "failed": "FAILED", "invalid": "FAILED",
                "interrupted": "KILLED"}
    tracked = {t.index for t in state.finished()}
    for t in state.finished():
        found = by_index.get(t.index, [])
        if len(found) > 1:
            counts.duplicated += len(found) - 1
            counts.problems.append(f"{where}: {len(found)} runs of index {t.index}")
        if not found:
            counts.lost += 1
            counts.problems.append(f"{where}: no run of finished index {t.index}")
            continue
        run = found[0]
        if (run.info.status, run.data.tags.get("autolab.status")) != (
                expected[t.status.value], t.status.value):
            counts.status_mismatch += 1
            counts.problems.append(f"{where}: index {t.index} run {run.info.status} / "
                                   f"{run.data.tags.get('autolab.status')}, journal {t.status}")
    for idx in set(by_index) - tracked:
        counts.status_mismatch += 1
        counts.problems.append(f"{where}: run of index {idx} that the journal has not finished")
    n_done = sum(t.status.value != "interrupted" for t in state.finished())
    if parent.data.metrics.get("n_experiments", n_done) != n_done:
        counts.status_mismatch += 1
        counts.problems.append(f"{where}: n_experiments {parent.data.metrics['n_experiments']}"
                               f" != {n_done}")


def _sync(run_dir: Path, uri: str) -> None:
    from autolab.campaign import JOURNAL_NAME
    from autolab.tracking import sync
    from autolab.tracking.mlflow_tracker import MlflowTracker

    sync(run_dir / JOURNAL_NAME, MlflowTracker(uri, "soak"), refresh_plots=False)


def _reference(budget: int, n_init: int, work: Path) -> list[dict[str, float]]:
    """Conditions an uninterrupted, untracked campaign with the same seed runs."""
    from autolab.campaign import Campaign

    result = Campaign.create(_config(budget, n_init), work / "reference").run()
    return [t.conditions for t in result.trials]


def _conditions(run_dir: Path) -> list[dict[str, float]]:
    from autolab.campaign import JOURNAL_NAME
    from autolab.tracking import Journal

    state = Journal.read(run_dir / JOURNAL_NAME)
    return [t.conditions for t in state.trials]


def _same(a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(abs(x[k] - y[k]) <= 1e-9 * max(1.0, abs(y[k])) for k in x)
        for x, y in zip(a, b, strict=True))


class Soak:
    """The kill loop (see the module docs)."""

    def __init__(self, work: Path, *, kills: int, budget: int, n_init: int, max_delay_s: float,
                 seed: int) -> None:
        self.work = work
        self.uri = f"sqlite:///{work / 'mlflow.db'}"
        self.kills, self.budget, self.n_init = kills, budget, n_init
        self.max_delay_s = max_delay_s
        self.rng = random.Random(seed)
        self.counts = Counts()
        self.current: Path | None = None  # the campaign being killed and resumed
        self.finished: list[Path] = []

    def _fork(self) -> int:
        _forget_engines()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            _child(self.work, self.uri, self.current, self.budget, self.n_init)
        return pid

    def _wait_for_store(self, *, creating: bool) -> None:
        """Start the kill timer once the store is being made (``creating``) or exists.

        Creating a store takes seconds on a loaded machine: timing kills from the fork would put
        them all in the creation, or none.
        """
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (self.work / "mlflow.db").exists():
                return
            if creating and list(self.work.glob(".mlflow.db.*.tmp")):
                return
            time.sleep(0.01)

    def _campaign_dir(self, before: set[Path]) -> Path | None:
        """The campaign being killed: the current one, or the one this round started (if yet)."""
        if self.current is not None:
            return self.current
        new = sorted(set(_journal_dirs(self.work)) - before)
        return new[0] if new else None

    def _wait_for_experiment(self, pid: int, before: set[Path], n_before: int) -> bool:
        """Start the kill timer once the campaign has journaled one more finished experiment.

        A kill followed by a sync must leave something to sync: on a loaded machine every kill
        could land before the first experiment of a round ends, and the soak would then compare
        MLflow with the journal only once, at the end. Only until the first such check: the
        wait puts the kill after an experiment, and the other kills stay at random times.

        Returns:
            Whether the child ended meanwhile (reaped here: its campaign reached its end).
        """
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0] != 0:
                return True
            run_dir = self._campaign_dir(before)
            if run_dir is not None and len(_finished_records(run_dir)) > n_before:
                return False
            time.sleep(0.05)
        return False

    def _round(self, delay_s: float | None, *, in_creation: bool = False) -> None:
        before = set(_journal_dirs(self.work))
        records = _finished_records(self.current) if self.current else {}
        pid = self._fork()
        if delay_s is None:
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                self.counts.problems.append("the unkilled final run failed")
        else:
            self._wait_for_store(creating=in_creation)
            ended = False
            if not in_creation and self.counts.kills % 2 == 0 and self.counts.checks == 0:
                ended = self._wait_for_experiment(pid, before, len(records))
            if not ended:
                time.sleep(delay_s)
            done = ended or os.waitpid(pid, os.WNOHANG)[0] != 0
            if not done:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                self.counts.kills += 1
                db = self.work / "mlflow.db"
                if not db.exists() and list(self.work.glob(".mlflow.db.*.tmp*")):
                    self.counts.kills_during_store_creation += 1
        self.current = self._campaign_dir(before)
        if self.current is None:
            return
        after = _finished_records(self.current)
        lost = [i for i, rec in records.items() if after.get(i) != rec]
        self.counts.lost += len(lost)
        if lost:
            self.counts.problems.append(f"{self.current.name}: lost or changed {lost}")
        if delay_s is not None and self.counts.kills % 2 == 1 and after:
            _sync(self.current, self.uri)  # a user's `autolab sync` between kills
            _check_status(self.current, self.uri, self.counts, f"after kill {self.counts.kills}")
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        from autolab.campaign import JOURNAL_NAME
        from autolab.tracking import Journal

        assert self.current is not None
        state = Journal.read(self.current / JOURNAL_NAME)
        if state.stopped_reason is not None and not state.in_flight and (
                len(state.trials) >= self.budget):
            self.finished.append(self.current)
            self.current = None

    def run(self) -> Counts:
        t0 = time.monotonic()
        reference = _reference(self.budget, self.n_init, self.work)
        while self.counts.kills < self.kills:
            # the first kill lands while the store is being created, the others at random
            # times after it exists
            first = self.counts.kills == 0
            delay = (self.rng.uniform(0.0, 0.3) if first
                     else self.rng.uniform(0.05, self.max_delay_s))
            self._round(delay, in_creation=first)
        while self.current is not None:  # the last campaign runs to its end, unkilled
            self._round(None)
        for run_dir in self.finished:
            self._final_checks(run_dir, reference)
        self.counts.seconds = round(time.monotonic() - t0, 1)
        return self.counts

    def _final_checks(self, run_dir: Path, reference: list[dict[str, float]]) -> None:
        from autolab.campaign import JOURNAL_NAME
        from autolab.tracking import Journal

        c = self.counts
        state = Journal.read(run_dir / JOURNAL_NAME)
        c.campaigns += 1
        c.experiments += len(state.trials)
        c.interrupted_attempts += len(state.interrupted)
        if len(state.trials) > self.budget:
            c.duplicated += len(state.trials) - self.budget
        if not _same(_conditions(run_dir), reference):
            c.diverged += 1
            c.problems.append(f"{run_dir.name}: proposals differ from the uninterrupted run")
        _check_status(run_dir, self.uri, c, f"end of {run_dir.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--budget", type=int, default=8, help="experiments per campaign")
    parser.add_argument("--n-init", type=int, default=6, help="design points before the GP")
    parser.add_argument("--max-delay", type=float, default=6.0,
                        help="longest time a child runs before its kill, s")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the runs and store here (default: a temporary folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryDirectory(prefix="soak-kill-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        counts = Soak(work, kills=args.kills, budget=args.budget, n_init=args.n_init,
                      max_delay_s=args.max_delay, seed=args.seed).run()
    result = {**asdict(counts), "settings": {
        "kills": args.kills, "budget": args.budget, "n_init": args.n_init,
        "max_delay_s": args.max_delay, "seed": args.seed}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"kills {counts.kills} (during store creation {counts.kills_during_store_creation}), "
          f"campaigns {counts.campaigns}, experiments {counts.experiments}, interrupted "
          f"attempts {counts.interrupted_attempts}, status checks {counts.checks}, "
          f"{counts.seconds:.0f} s")
    print(f"lost {counts.lost}, duplicated {counts.duplicated}, status mismatch "
          f"{counts.status_mismatch}, diverged {counts.diverged}")
    for p in counts.problems:
        print(f"  {p}")
    bad = counts.lost + counts.duplicated + counts.status_mismatch + counts.diverged
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
