"""Lab hours to a good hit: dynamic experiments vs the fixed-3τ steady-state campaign (issue 10).

Runs the cells of ``benchmarks/lab_hours.yaml`` (BoTorch on the calibrated twin and on members of
the reactor family, targets 550 and 610 nm ± 2 nm) two ways, through the campaign loop on the
simulated rig:

* ``steady, fixed 3τ + always flush``: one experiment per proposal, settled a fixed 3 τ after a
  solvent flush (the issue's baseline; :func:`autolab.benchmarking.runner.run_job`);
* ``dynamic``: ``mode: dynamic`` with the defaults of ``campaigns/target_550nm_dynamic.yaml``:
  the reactor ramps from proposal to proposal while the spectrometer streams one frame set per
  lab minute; every accepted reading is told to the optimizer (:mod:`autolab.dynamic_step`).

Both are judged on the noise-free truth, as every family benchmark: a *good hit* is a trial whose
steady-state truth at its conditions is in band with at least 90 % of the best QY reachable there.
A dynamic trial's conditions are those of its best accepted reading (the RTD-mapped conditions),
so the hit is judged where the campaign says its product is. Lab hours run to the end of the
trajectory that holds the hit (its reading came earlier: slightly pessimistic for dynamic).

Prints and records (``--record benchmarks/results``, ``dynamic-hours.json``; with
``--spec benchmarks/lab_hours_heldout.yaml`` ``dynamic-hours-heldout.json``): found-rate, lab
hours to the hit (median, IQR), the paired ratio dynamic / steady on the cells both found, and
observations told per lab hour. The goals: ≤ 0.3× the steady lab hours with no worse found-rate,
≥ 10× the observations per lab hour::

    .venv/bin/python benchmarks/dynamic_hours.py --workers 2 --seeds 1 --record benchmarks/results

The issue counts lab hours, so the fair found-rate gives both modes the same reactor time:
``--dynamic-lab-hours steady`` stops each dynamic cell at ``budget.max_lab_hours`` = the spec's
budget (30 experiments) × the lowest lab hours per experiment of any steady cell (what every
steady cell would at least have spent on its budget; :func:`steady_lab_hours`), with a trajectory
cap that does not bind, and counts a hit only if its trajectory ended within those hours. The
goal line then says it judges the found-rate at equal lab hours; the found-rate at equal
trajectories (hits within the spec's budget of trajectories) is printed beside it either way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autolab.benchmarking.benchmark import make_jobs, reachable_all  # noqa: E402
from autolab.benchmarking.problem import is_success  # noqa: E402
from autolab.benchmarking.provenance import Result, Table, write_result  # noqa: E402
from autolab.benchmarking.runner import Job, RunResult, run_job  # noqa: E402
from autolab.benchmarking.spec import load_spec  # noqa: E402
from autolab.benchmarking.strategies import injected_optimizer  # noqa: E402
from autolab.campaign import Campaign, StopReason  # noqa: E402
from autolab.config import BudgetConfig, load_campaign  # noqa: E402
from autolab.dynamic_config import DynamicConfig  # noqa: E402
from autolab.records import Conditions, Trial, TrialStatus  # noqa: E402
from autolab.tracking.base import NullTracker  # noqa: E402

CAMPAIGN = ROOT / "campaigns" / "target_550nm_dynamic.yaml"


@dataclass(frozen=True)
class TrialMark:
    """One dynamic trial (trajectory), so a restored cell can be cut at a smaller allowance.

    ``lab_h`` is the campaign's lab clock at the trial's end; the counts and ``ask_s`` are the
    trial's own; ``wall_s`` and ``cpu_s`` are the cell's since it started, at the trial's end.
    """

    lab_h: float
    observations: int
    full_weight: int
    refused: int
    ask_s: float
    wall_s: float
    cpu_s: float


@dataclass(frozen=True)
class Cell:
    """One cell's outcome (either way of running it).

    ``lab_h_to_hit`` and ``trials_to_hit`` describe the first good hit whenever there was one;
    ``found`` says whether it counts: a dynamic cell run under a lab-hour budget
    (``lab_h_budget``) counts only a hit whose trajectory ended within that budget, so a last
    trajectory started just before the budget ran out cannot win on borrowed time.
    A dynamic cell also keeps each trial (``progress``) and the lab clock after each rig event
    (``rig_event_h``), the points at which its campaign checked its lab-hour budget, so that
    :func:`under_budget` can stop it at a smaller allowance; cells recorded before these were
    kept have neither.
    """

    cell: str
    mode: str
    found: bool
    lab_h_to_hit: float | None
    trials_to_hit: int | None
    trials: int
    lab_h: float
    observations: int
    wall_s: float
    ask_s: float
    full_weight: int = 0
    down_weighted: int = 0
    refused: int = 0
    cpu_s: float = math.nan
    lab_h_budget: float | None = None
    stop_reason: str = ""
    progress: tuple[TrialMark, ...] = ()
    rig_event_h: tuple[float, ...] = ()


def _cell_id(job: Job) -> str:
    return f"{job.member.name}--{job.problem.target_nm:g}nm--s{job.seed}"


def run_steady(job: Job) -> Cell:
    """The fixed-3τ + always-flush baseline (the family benchmark's own cell runner)."""
    r = run_job(replace(job, settling="fixed", flush="always"))
    steps = r.steps
    lab_h = steps[-1].lab_clock_h if steps else 0.0
    return Cell(_cell_id(job), "steady", r.found, r.lab_hours_to_success,
                r.experiments_to_success, r.experiments, lab_h,
                sum(not s.failed for s in steps), r.wall_s, r.ask_s_total)


class _Judge:
    """Judges each dynamic trial on the truth at its (mapped) conditions; stops at a hit."""

    def __init__(self, job: Job, physics: Any, t0: float, c0: float) -> None:
        self.job, self.physics = job, physics
        self.hit: tuple[int, float] | None = None
        self.marks: list[TrialMark] = []
        self._t0, self._c0 = t0, c0  # the cell's start (perf_counter, process_time)

    def __call__(self, campaign: Campaign, trial: Trial) -> None:
        extra = campaign.journal.state.extras.get(trial.index) or {}
        dyn = extra.get("dynamic") or {}
        self.marks.append(TrialMark(
            campaign.lab_clock_h, int(dyn.get("n_accepted", 0)),
            int(dyn.get("n_full_weight", 0)), int(dyn.get("n_refused", 0)),
            trial.proposal_time_s, time.perf_counter() - self._t0,
            time.process_time() - self._c0))
        if trial.status is not TrialStatus.COMPLETED or self.hit is not None:
            return
        truth = self.physics.truth(Conditions.from_mapping(trial.conditions))
        p = self.job.problem
        pl, qy = float(truth.pl_peak_nm), float(truth.qy)
        if p.in_band(pl) and is_success(pl, qy, p.target_nm, p.tolerance_nm,
                                        self.job.threshold_qy):
            self.hit = (len(self.marks), campaign.lab_clock_h)
            campaign.request_stop()


def dynamic_block(overrides: dict[str, Any] | None = None) -> DynamicConfig:
    """The shipped campaign file's ``dynamic:`` block with dotted overrides, validated."""
    data = load_campaign(CAMPAIGN).dynamic.model_dump(mode="json")
    for dotted, value in (overrides or {}).items():
        node = data
        *path, last = dotted.split(".")
        for key in path:
            node = node[key]
        node[last] = value
    data["archive_frames"] = False
    return DynamicConfig.model_validate(data)


def run_dynamic(job: Job, overrides: dict[str, Any] | None = None,
                budget: int | None = None, lab_h: float | None = None) -> Cell:
    """The same cell as a ``mode: dynamic`` campaign (the shipped block, with ``overrides``).

    ``budget`` caps the trajectories; ``lab_h`` (``budget.max_lab_hours``) caps the reactor time,
    the campaign's own stop rule, and a hit counts only if its trajectory ended within it.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    dynamic = dynamic_block(overrides)
    config = job.campaign_config().model_copy(update={"mode": "dynamic", "dynamic": dynamic})
    if budget is not None or lab_h is not None:
        config = config.model_copy(update={"budget": BudgetConfig(
            max_experiments=budget or config.budget.max_experiments, max_lab_hours=lab_h)})
    executor = job.member.executor(seed=job.seed, settling="adaptive", flush="auto")
    optimizer = injected_optimizer(job.strategy.kind, job.problem.space, job.problem.objective(),
                                   job.seed)
    judge = _Judge(job, executor.twin, t0, c0)
    root = tempfile.mkdtemp(prefix="autolab-dyn-cell-")
    try:
        campaign = Campaign.create(config, root, executor=executor, tracker=NullTracker(),
                                   optimizer=optimizer, on_trial=judge)
        stop = campaign.run().stop_reason.value
        stop = "good hit" if judge.hit is not None else stop  # the judge stopped it
        clock_h = campaign.lab_clock_h
        rig_h = tuple(float(e["extra"]["lab_clock_h"]) for e in campaign.journal.state.rig_events)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    hit, marks = judge.hit, tuple(judge.marks)
    return Cell(_cell_id(job), "dynamic",
                hit is not None and (lab_h is None or hit[1] <= lab_h),
                None if hit is None else hit[1], None if hit is None else hit[0],
                lab_h=clock_h, wall_s=time.perf_counter() - t0, lab_h_budget=lab_h,
                stop_reason=stop, rig_event_h=rig_h, **_tally(marks))


def _tally(marks: tuple[TrialMark, ...]) -> dict[str, Any]:
    """The :class:`Cell` fields that sum its trials (a whole run's, or a cut one's)."""
    observations, full = sum(m.observations for m in marks), sum(m.full_weight for m in marks)
    return {"trials": len(marks), "observations": observations, "full_weight": full,
            "down_weighted": observations - full, "refused": sum(m.refused for m in marks),
            "ask_s": sum(m.ask_s for m in marks), "progress": marks}


def cell_record(cell: Cell) -> dict[str, Any]:
    """``cell`` as recorded in ``dynamic-hours.json`` (read back by :func:`recorded_cell`)."""
    return asdict(cell)


def recorded_cell(job: Job, source: Path, mode: str) -> Cell | None:
    """The ``mode`` cell of a recorded ``dynamic-hours.json`` (same spec and cell), or None."""
    cells = json.loads(source.read_text(encoding="utf-8"))["data"]["cells"]
    found = [c for c in cells if c["mode"] == mode and c["cell"] == _cell_id(job)]
    if not found:
        return None
    data = found[0]
    return Cell(**{**data, "progress": tuple(TrialMark(**m) for m in data.get("progress", ())),
                   "rig_event_h": tuple(data.get("rig_event_h", ()))})


def under_budget(cell: Cell, lab_h: float | None) -> Cell | None:
    """A restored dynamic ``cell`` as if run under this run's lab-hour budget ``lab_h``, or None.

    The budget is derived from the steady cells, so adding seeds can lower it. A cell recorded
    under a budget at least as large holds the same run up to ``lab_h`` (a campaign does not
    look ahead), so it is cut where a run under ``lab_h`` would have stopped
    (:func:`stopped_at`): every figure (trials, observations, lab hours, the hit, the stop
    reason) is the shorter run's, and a hit counts only if it came within ``lab_h``. A cell
    recorded under a smaller budget, or none, may have stopped before it would now, and one
    recorded without its trials (before they were kept) that ran up to ``lab_h`` or past it
    under a larger budget cannot be cut: both are run again (None).
    """
    if lab_h is None:
        return cell
    if cell.lab_h_budget is None or cell.lab_h_budget < lab_h:
        return None
    uncut = cell.lab_h < lab_h or lab_h == cell.lab_h_budget  # the same run either way
    if not uncut and len(cell.progress) != cell.trials:
        return None
    return stopped_at(cell, lab_h)


def stopped_at(cell: Cell, lab_h: float) -> Cell:
    """``cell`` (with its ``progress``) as its campaign would have ended under ``lab_h``.

    The campaign checks its lab clock after each trial and each rig event and stops at the
    first check at or past ``lab_h``. If that is where the recorded run ended too (or it ended
    earlier, on a hit or its trajectory cap), the run is the same and only its hit is judged
    again. Otherwise the trials up to that check are kept and the lab hours are the clock there;
    the hit, which ended the recorded run, was never reached. Wall and CPU time are the cell's
    at its last kept trial.
    """
    checks = [m.lab_h for m in cell.progress] + list(cell.rig_event_h)
    stop_h = min((h for h in checks if h >= lab_h), default=math.inf)
    kept = tuple(m for m in cell.progress if m.lab_h <= stop_h)
    rig_h = tuple(h for h in cell.rig_event_h if h <= stop_h)
    if len(kept) == len(cell.progress) and len(rig_h) == len(cell.rig_event_h):
        hit = cell.lab_h_to_hit
        return replace(cell, found=hit is not None and hit <= lab_h, lab_h_budget=lab_h)
    last = kept[-1] if kept else TrialMark(0.0, 0, 0, 0, 0.0, 0.0, 0.0)
    return replace(
        cell, found=False, lab_h_to_hit=None, trials_to_hit=None, lab_h=stop_h,
        wall_s=last.wall_s, cpu_s=last.cpu_s, lab_h_budget=lab_h,
        stop_reason=StopReason.MAX_LAB_HOURS.value, rig_event_h=rig_h, **_tally(kept))


def stored_steady(job: Job, source: Path) -> Cell | None:
    """The steady cell from an earlier run (same spec and cell), or None.

    ``source`` is either the folder of ``benchmarks/lab_hours.py``'s fixed-3τ variant, whose
    ``fixed 3τ + always flush, K=1`` cells run exactly :func:`run_steady`, or a recorded
    ``dynamic-hours.json`` (its steady cells). Either spares the two shared cores a second copy
    of the slowest half of this benchmark.
    """
    if source.suffix == ".json":
        return recorded_cell(job, source, "steady")
    path = source / "cells" / f"{job.cell_id}.json"
    if not path.exists():
        return None
    r = RunResult.from_dict(json.loads(path.read_text(encoding="utf-8"))["result"])
    lab_h = r.steps[-1].lab_clock_h if r.steps else 0.0
    return Cell(_cell_id(job), "steady", r.found, r.lab_hours_to_success,
                r.experiments_to_success, r.experiments, lab_h,
                sum(not s.failed for s in r.steps), r.wall_s, r.ask_s_total)


def steady_lab_hours(steady: list[Cell], experiments: int) -> tuple[float, str]:
    """The lab hours the steady campaign is allowed: ``experiments`` at its cheapest rate.

    Each steady cell's rate is its lab hours over its experiments (flush, heat, fixed 3 τ,
    acquisition at the residence times its optimizer chose). The allowance is ``experiments``
    times the *lowest* rate of any cell: every steady cell would have spent at least this much
    on its full budget, so a dynamic cell held to it gets no more reactor time than any steady
    one (conservative: the median rate gives more). Derived from the cells, never chosen.

    Raises:
        ValueError: No steady cell with an experiment to take the rate from.
    """
    rates = [(c.lab_h / c.trials, c.cell) for c in steady if c.trials > 0 and c.lab_h > 0]
    if not rates:
        raise ValueError("--dynamic-lab-hours steady needs steady cells (run them, or give "
                         "--steady-from) with at least one experiment each")
    rate, cell = min(rates)
    return experiments * rate, (f"{experiments} experiments × {rate:.2f} lab h per experiment "
                                f"(the lowest steady rate, {cell}; median "
                                f"{statistics.median(r for r, _ in rates):.2f})")


#: Trajectory cap of a dynamic cell under a lab-hour budget: far above what the budget allows
#: (a trajectory takes at least a few lab minutes), so only the lab hours stop it.
MAX_TRAJECTORIES = 2000


def _lab_hours_arg(value: str | None) -> float | str | None:
    """``--dynamic-lab-hours``: None, ``"steady"`` or a positive number of hours."""
    if value is None or value == "steady":
        return value
    try:
        hours = float(value)
    except ValueError:
        hours = math.nan
    if not (math.isfinite(hours) and hours > 0):
        raise SystemExit(f"--dynamic-lab-hours={value!r}: expected 'steady' or a positive "
                         "number of lab hours")
    return hours


def _run(args: tuple[str, Job, dict[str, Any], int | None, float | None]) -> Cell:
    mode, job, overrides, budget, lab_h = args
    c0 = time.process_time()
    cell = run_steady(job) if mode == "steady" else run_dynamic(job, overrides, budget, lab_h)
    return replace(cell, cpu_s=time.process_time() - c0)


def _median_iqr(values: list[float]) -> str:
    if not values:
        return "-"
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{statistics.median(values):.1f} ({q[0]:.1f}-{q[2]:.1f})"


def summarize(cells: list[Cell], base: list[Cell] | None,
              trajectories: int | None = None) -> dict[str, Any]:
    """Found-rate, lab hours to the hit, observations per lab hour, paired ratio to ``base``.

    ``trajectories`` adds the found-rate at equal trajectories: cells whose hit came within that
    many trials (the steady budget), whatever the run's own cap. A run under a lab-hour budget
    adds ``lab_h_budget`` (the found-rate at equal lab hours is then ``found``).
    """
    found = [c for c in cells if c.found and c.lab_h_to_hit is not None]
    hours = [float(c.lab_h_to_hit) for c in found if c.lab_h_to_hit is not None]
    total_h = sum(c.lab_h for c in cells)
    out: dict[str, Any] = {
        "mode": cells[0].mode if cells else "", "cells": len(cells), "found": len(found),
        "found_rate": len(found) / len(cells) if cells else 0.0,
        "lab_h_to_hit": _median_iqr(hours),
        "median_lab_h_to_hit": statistics.median(hours) if hours else None,
        "trials_to_hit": _median_iqr([float(c.trials_to_hit or 0) for c in found]),
        "observations_per_lab_h": sum(c.observations for c in cells) / total_h if total_h else 0.0,
        "wall_s_per_cell": statistics.fmean([c.wall_s for c in cells]) if cells else math.nan,
        "ask_s_per_trial": (sum(c.ask_s for c in cells) / max(1, sum(c.trials for c in cells))),
        "readings_full_down_refused": [sum(c.full_weight for c in cells),
                                       sum(c.down_weighted for c in cells),
                                       sum(c.refused for c in cells)],
        "lab_h_budget": next((c.lab_h_budget for c in cells if c.lab_h_budget), None),
        "stop_reasons": dict(sorted(Counter(c.stop_reason for c in cells
                                            if c.stop_reason).items())),
    }
    if trajectories is not None:
        out["trajectories"] = trajectories
        out["found_within_trajectories"] = sum(
            1 for c in cells if c.lab_h_to_hit is not None and c.trials_to_hit is not None
            and c.trials_to_hit <= trajectories)
    if base is not None:
        ref = {c.cell: c.lab_h_to_hit for c in base if c.found and c.lab_h_to_hit}
        ratios = [float(c.lab_h_to_hit) / float(ref[c.cell]) for c in found
                  if c.cell in ref and c.lab_h_to_hit is not None and ref[c.cell]]
        out["paired_cells"] = len(ratios)
        out["paired_ratio_median"] = statistics.median(ratios) if ratios else None
        base_obs = next((s for s in [summarize(base, None)]), {})
        b = base_obs.get("observations_per_lab_h") or 0.0
        out["observations_per_lab_h_ratio"] = (out["observations_per_lab_h"] / b) if b else None
    return out


def _fmt(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


COLUMNS = ("mode", "good hit found", "lab h to hit, median (IQR)", "trials to hit, median (IQR)",
           "observations told per lab h", "paired lab-h ratio vs steady (median)",
           "wall s per cell")


def _row(s: dict[str, Any]) -> tuple[str, ...]:
    return (s["mode"], f"{s['found']}/{s['cells']} ({100 * s['found_rate']:.0f} %)",
            s["lab_h_to_hit"], s["trials_to_hit"], _fmt(s["observations_per_lab_h"], 1),
            _fmt(s.get("paired_ratio_median")), _fmt(s["wall_s_per_cell"], 0))


def _basis(dyn: dict[str, Any], lab_h_rule: str) -> str:
    """Which found-rate the goal line uses, and the other one."""
    n, cells = dyn.get("trajectories"), dyn["cells"]
    within = f"{dyn.get('found_within_trajectories', 0)}/{cells} within {n} trajectories"
    if dyn.get("lab_h_budget"):
        return (f"found-rate at equal lab hours ({dyn['lab_h_budget']:.1f} lab h per cell: "
                f"{lab_h_rule}); at equal trajectories {within}")
    return f"found-rate within the run's trajectory cap; at equal trajectories {within}"


def _notes(steady: dict[str, Any], dyn: dict[str, Any], lab_h_rule: str = "") -> tuple[str, ...]:
    ratio = dyn.get("paired_ratio_median")
    met1 = ratio is not None and ratio <= 0.3 and dyn["found_rate"] >= steady["found_rate"]
    obs = dyn.get("observations_per_lab_h_ratio")
    met2 = obs is not None and obs >= 10
    return (
        f"Goal 1 (dynamic ≤ 0.3× the fixed-3τ lab hours to a good hit, no worse found-rate): "
        f"paired median ratio {_fmt(ratio)} over {dyn.get('paired_cells', 0)} cells; found-rate "
        f"{100 * dyn['found_rate']:.0f} % vs {100 * steady['found_rate']:.0f} % "
        f"({_basis(dyn, lab_h_rule)}): {'met' if met1 else 'NOT met'}.",
        f"Goal 2 (≥ 10× the observations per lab hour): {_fmt(dyn['observations_per_lab_h'], 1)}"
        f" vs {_fmt(steady['observations_per_lab_h'], 2)} per lab h, {_fmt(obs, 1)}×: "
        f"{'met' if met2 else 'NOT met'}.",
        "Lab hours are the simulated rig's virtual clock up to the end of the trial that holds "
        "the good hit (steady: flush, heat, 3τ settle, acquisition; dynamic: the settle at the "
        "first proposal, then the ramps). Observations: steady counts each usable experiment, "
        "dynamic each accepted streamed reading told to the optimizer. The good hit is judged "
        "on the noise-free truth at the trial's conditions (dynamic: the RTD-mapped conditions "
        "of its best accepted reading).")


def main(argv: list[str] | None = None) -> int:
    """Run both modes over the cells, print the figures, record them."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "lab_hours.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--cells", type=int, default=None, help="run only the first N cells")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmark-results" / "dynamic_hours")
    parser.add_argument("--steady-from", type=Path, default=None,
                        help="reuse steady cells: benchmarks/lab_hours.py's fixed-3τ variant "
                             "folder (e.g. benchmark-results/lab_hours/"
                             "fixed_3tau_p_always_flush_K1) or a recorded dynamic-hours.json")
    parser.add_argument("--dynamic-from", type=Path, default=None,
                        help="reuse the dynamic cells of a recorded dynamic-hours.json (e.g. to "
                             "pair them with steady cells run again on a changed rig)")
    parser.add_argument("--only", choices=("steady", "dynamic"), default=None,
                        help="run one mode only (the other from --steady-from/--dynamic-from, "
                             "or left out)")
    parser.add_argument("--dynamic-budget", type=int, default=None,
                        help="trajectories per dynamic cell (default: the spec's budget)")
    parser.add_argument("--dynamic-lab-hours", default=None, metavar="steady|HOURS",
                        help="stop each dynamic cell at this much reactor time "
                             "(budget.max_lab_hours) instead of a trajectory count, and judge "
                             "the goal's found-rate at equal lab hours: 'steady' derives it from "
                             "the steady cells (the spec's budget × the lowest steady lab hours "
                             "per experiment); the trajectory cap then defaults to "
                             f"{MAX_TRAJECTORIES} (not binding)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override the dynamic: block, e.g. ramp_limits.ratio_rel_per_min=5")
    parser.add_argument("--record", type=Path, default=None,
                        help="write dynamic-hours.json here (benchmarks/results)")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec).model_copy(update={"seeds": args.seeds})
    args.out.mkdir(parents=True, exist_ok=True)
    reach = reachable_all(spec, args.out, emit=print)
    jobs, excluded = make_jobs(spec, reach)
    jobs = jobs[:args.cells] if args.cells else jobs
    stored: dict[tuple[str, str], Cell | None] = {}
    for job in jobs:
        if args.steady_from:
            stored["steady", job.cell_id] = stored_steady(job, args.steady_from)
        if args.dynamic_from:
            stored["dynamic", job.cell_id] = recorded_cell(job, args.dynamic_from, "dynamic")
    overrides = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args.set)}
    dynamic_block(overrides)  # refuse a bad override before anything runs
    lab_h_arg = _lab_hours_arg(args.dynamic_lab_hours)
    modes = ("steady", "dynamic") if args.only is None else (args.only,)
    t0 = time.perf_counter()
    cells = [c for c in stored.values() if c is not None]
    lab_h, lab_h_rule = None, ""
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for mode in modes:  # steady first: a lab-hour budget taken from it needs its cells
            if mode == "dynamic" and lab_h_arg is not None:
                lab_h, lab_h_rule = ((lab_h_arg, "given") if isinstance(lab_h_arg, float) else
                                     steady_lab_hours([c for c in cells if c.mode == "steady"],
                                                      spec.budget))
                print(f"dynamic lab-hour budget: {lab_h:.1f} h per cell ({lab_h_rule})")
                for key in [k for k in stored if k[0] == "dynamic" and stored[k] is not None]:
                    old = stored[key]
                    stored[key] = under_budget(old, lab_h) if old is not None else None
                cells = [c for c in cells if c.mode != "dynamic"] + [
                    c for k, c in stored.items() if k[0] == "dynamic" and c is not None]
            cap = args.dynamic_budget or (MAX_TRAJECTORIES if lab_h is not None else None)
            work = [(mode, job, overrides, cap, lab_h)
                    for job in jobs if stored.get((mode, job.cell_id)) is None]
            for c in pool.map(_run, work):  # in order; each printed as soon as it and those
                cells.append(c)             # before it are done, so a long run shows progress
                print(f"done: {c.mode} {c.cell} found={c.found} lab_h_to_hit="
                      f"{_fmt(c.lab_h_to_hit)} wall={c.wall_s:.0f}s cpu={c.cpu_s:.0f}s",
                      flush=True)
    for c in cells:
        print(f"{c.mode:8s} {c.cell:32s} found={c.found!s:5s} lab_h_to_hit={_fmt(c.lab_h_to_hit)} "
              f"trials={c.trials} lab_h={c.lab_h:.1f} obs={c.observations} "
              f"stop={c.stop_reason or '-'} "
              f"(full {c.full_weight}, down {c.down_weighted}, refused {c.refused}) "
              f"wall={c.wall_s:.0f}s cpu={c.cpu_s:.0f}s")
    steady = summarize([c for c in cells if c.mode == "steady"], None)
    dyn = summarize([c for c in cells if c.mode == "dynamic"],
                    [c for c in cells if c.mode == "steady"], trajectories=spec.budget)
    notes = _notes(steady, dyn, lab_h_rule)
    print(" | ".join(COLUMNS))
    for s in (steady, dyn):
        print(" | ".join(_row(s)))
    for n in notes:
        print(n)
    print(f"{len(cells)} runs in {time.perf_counter() - t0:.0f} s; excluded {len(excluded)}")
    if args.record is not None:
        heldout = spec.family is not None and spec.family.split == "heldout"
        result = Result(
            # one record per spec: lab_hours.yaml -> dynamic-hours, lab_hours_heldout.yaml ->
            # dynamic-hours-heldout (the held-out check beside the design record)
            name="dynamic-hours" + spec.name.removeprefix("lab-hours"),
            title="Dynamic experiments: lab hours to a good hit and observations per lab hour"
                  + (", held-out reactors" if heldout else ""),
            description=(f"{spec.description} ({args.seeds} seed(s), {len(jobs)} cells), "
                         "steady fixed-3τ vs mode: dynamic through the campaign loop on the "
                         "simulated rig (benchmarks/dynamic_hours.py)."),
            tables=(Table(title="Steady (fixed 3τ + always flush) vs dynamic", columns=COLUMNS,
                          rows=(_row(steady), _row(dyn))),),
            notes=notes, data={"steady": steady, "dynamic": dyn,
                               "cells": [cell_record(c) for c in cells]},
            command=" ".join([Path(sys.executable).name, *sys.argv]))
        print(f"wrote {write_result(result, args.record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
