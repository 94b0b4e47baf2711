"""A whole benchmark: yardsticks, the cell grid, resumable execution, and the files that record it.

Cells are strategy × member × target × seed (:func:`make_jobs`). Each finished cell is written at
once, atomically, as ``<out>/cells/<cell id>.json`` with the fingerprint of the cell it was made
for; a benchmark killed halfway and started again with the same ``--out`` reloads those files and
runs only the missing cells (:class:`CellStore`). The yardsticks (best reachable QY per member
and target, a dense search) are cached in ``<out>/reachable.json`` the same way.

:func:`run_benchmark` is the core (spec in, :class:`BenchmarkOutcome` out); listeners see each cell
as it finishes (the progress line, MLflow); :func:`write_outputs` writes the summary files.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autolab.benchmarking.execution import Progress, preflight_ray, run_local, run_ray
from autolab.benchmarking.family import Member
from autolab.benchmarking.problem import Problem, Reachable, best_reachable_many
from autolab.benchmarking.provenance import atomic_write_text, provenance
from autolab.benchmarking.results import (
    distribution_figure,
    figure_png,
    results_json,
    runs_csv,
    summarize,
    summary_csv,
    summary_markdown,
)
from autolab.benchmarking.runner import Job, RunResult
from autolab.benchmarking.spec import BenchmarkSpec

#: Files :func:`write_outputs` writes into the output folder.
OUTPUT_FILES = ("results.json", "runs.csv", "summary.csv", "summary.md", "distribution.png")
#: Called as each cell finishes (after its file is written).
Listener = Callable[[Job, RunResult], None]


@dataclass(frozen=True)
class Excluded:
    """A (member, target) left out because the band cannot be reached there.

    Attributes:
        member: Member name.
        target_nm: Target PL peak, nm.
        tolerance_nm: Band half-width, nm.
    """

    member: str
    target_nm: float
    tolerance_nm: float


@dataclass(frozen=True)
class BenchmarkOutcome:
    """What a finished benchmark hands back.

    Attributes:
        spec: The spec it ran.
        reachable: Member name -> the yardstick of each target, in spec order.
        results: Every cell, in job order (strategy, member, target, seed).
        excluded: (member, target) pairs whose band no point of the box reaches.
        meta: Where and how it ran: backend, workers, cells run now and restored, wall time.
        provenance: Commit, packages, machine, command, time (:mod:`.provenance`).
    """

    spec: BenchmarkSpec
    reachable: dict[str, tuple[Reachable, ...]]
    results: tuple[RunResult, ...]
    excluded: tuple[Excluded, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def problems(spec: BenchmarkSpec, member: Member | None = None) -> list[Problem]:
    """One :class:`Problem` per target on ``member`` (default: the spec's first reactor)."""
    space = spec.space.build()
    member = member or spec.members()[0]
    return [Problem(space, dict(spec.space.fixed), t.pl_peak_nm, t.tolerance_nm, member)
            for t in spec.targets]


def _reach_key(spec: BenchmarkSpec, member: Member) -> str:
    ident = member.identity()
    extra = {k: v for k, v in ident.items() if k not in ("kind", "seed", "twin")}
    doc = {"member": [member.kind, member.seed, ident["twin"], *([extra] if extra else [])],
           "space": spec.space.model_dump(mode="json"),
           "targets": [t.model_dump(mode="json") for t in spec.targets],
           "dense": spec.dense_search.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def reachable_all(spec: BenchmarkSpec, out_dir: Path | None = None,
                  emit: Callable[[str], None] | None = None) -> dict[str, tuple[Reachable, ...]]:
    """Each member's yardsticks, from ``<out>/reachable.json`` where already computed."""
    path = None if out_dir is None else out_dir / "reachable.json"
    cache: dict[str, Any] = {}
    if path is not None and path.exists():
        cache = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, tuple[Reachable, ...]] = {}
    for member in spec.members():
        key = _reach_key(spec, member)
        hit = cache.get(member.name)
        if hit is not None and hit.get("key") == key:
            out[member.name] = tuple(Reachable(**r) for r in hit["reachable"])
            continue
        t0 = time.perf_counter()
        out[member.name] = tuple(best_reachable_many(
            problems(spec, member), spec.dense_search.sobol_log2, spec.dense_search.polish))
        cache[member.name] = {"key": key, "reachable": [asdict(r) for r in out[member.name]]}
        if path is not None:
            atomic_write_text(path, json.dumps(cache, indent=1) + "\n")
        if emit is not None:
            emit(f"{member.name}: best reachable QY " + ", ".join(
                f"{r.target_nm:g} nm {r.best_qy:.3f}" for r in out[member.name])
                + f" ({time.perf_counter() - t0:.1f} s)")
    return out


def make_jobs(spec: BenchmarkSpec, reachable: dict[str, tuple[Reachable, ...]],
              ) -> tuple[list[Job], list[Excluded]]:
    """The cell grid (strategy × member × target × seed) and the excluded (member, target).

    A target whose band no point of the box reaches on a member (best QY 0) is excluded for
    every strategy on that member, and counted.
    """
    jobs: list[Job] = []
    excluded: list[Excluded] = []
    members = spec.members()
    for member in members:
        for problem, reach in zip(problems(spec, member), reachable[member.name], strict=True):
            if reach.best_qy <= 0:
                excluded.append(Excluded(member.name, problem.target_nm, problem.tolerance_nm))
    skip = {(e.member, e.target_nm) for e in excluded}
    for s in spec.strategies:
        for member in members:
            for problem, reach in zip(problems(spec, member), reachable[member.name],
                                      strict=True):
                if (member.name, problem.target_nm) in skip:
                    continue
                jobs += [Job(strategy=s, seed=seed, problem=problem, space=spec.space,
                             budget=spec.budget,
                             threshold_qy=spec.success.qy_fraction * reach.best_qy,
                             best_reachable_qy=reach.best_qy, reactors=spec.reactors,
                             settling=spec.procedure.settling, flush=spec.procedure.flush,
                             forecast=spec.forecast)
                         for seed in spec.seed_list]
    return jobs, excluded


class CellStore:
    """One JSON file per finished cell, written atomically: what makes a benchmark resumable.

    A file holds the cell's fingerprint and result; a file whose fingerprint differs from the
    cell's (the spec changed: budget, strategy settings, member) is ignored and overwritten.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, job: Job) -> Path:
        """File of a cell."""
        return self.folder / f"{job.cell_id}.json"

    def load(self, jobs: Sequence[Job]) -> dict[int, RunResult]:
        """Stored results of the cells in ``jobs`` (by job index) made for exactly those cells."""
        done: dict[int, RunResult] = {}
        for i, job in enumerate(jobs):
            path = self.path(job)
            if not path.exists():
                continue
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue  # a torn file cannot exist (atomic writes), but never trust one
            if doc.get("fingerprint") == job.fingerprint():
                done[i] = RunResult.from_dict(doc["result"])
        return done

    def save(self, job: Job, result: RunResult) -> Path:
        """Write a finished cell (atomically)."""
        path = self.path(job)
        doc = {"fingerprint": job.fingerprint(), "cell": job.cell_id, "result": result.to_dict()}
        atomic_write_text(path, json.dumps(doc, indent=None, allow_nan=True) + "\n")
        return path


def run_benchmark(spec: BenchmarkSpec, *, workers: int = 1, ray_address: str | None = None,
                  out_dir: str | Path | None = None, listeners: Sequence[Listener] = (),
                  emit: Callable[[str], None] | None = None,
                  command: str | None = None) -> BenchmarkOutcome:
    """Find the yardsticks, then run every cell not already stored in ``out_dir``.

    Args:
        spec: The validated spec.
        workers: Local processes (with ``ray_address="local"``: the private Ray's CPUs).
        ray_address: Run on Ray (``auto``, ``local`` or ``HOST:PORT``) instead of a pool.
        out_dir: Output folder: cells are stored (and restored) under ``cells/``.
        listeners: Called as each cell finishes, after its file is written.
        emit: Where progress lines go (one per finished cell, with an ETA).
        command: The command line, for the provenance record.

    Raises:
        ConfigError: Ray requested but not installed or not reachable, or ``workers < 1``.
    """
    if ray_address is not None:
        preflight_ray(ray_address)  # before minutes of dense search, not after
    t0 = time.perf_counter()
    prov = provenance(command)
    folder = None if out_dir is None else Path(out_dir)
    reachable = reachable_all(spec, folder, emit)
    dense_s = time.perf_counter() - t0
    jobs, excluded = make_jobs(spec, reachable)
    store = None if folder is None else CellStore(folder / "cells")
    done = {} if store is None else store.load(jobs)
    todo = [i for i in range(len(jobs)) if i not in done]
    progress = None if emit is None else Progress(len(todo), emit)
    if emit is not None:
        emit(f"{len(jobs)} cells ({len(done)} restored from {folder}, {len(todo)} to run); "
             f"{len(excluded)} member × target pairs excluded (band unreachable)")

    def on_result(k: int, result: RunResult) -> None:
        job = jobs[todo[k]]
        if store is not None:
            store.save(job, result)
        done[todo[k]] = result
        if progress is not None:
            progress(result)
        for listener in listeners:
            listener(job, result)

    t_run = time.perf_counter()
    pending = [jobs[i] for i in todo]
    if ray_address is not None:
        run_ray(pending, ray_address, on_result, num_cpus=workers)
    else:
        run_local(pending, workers, on_result)
    meta = {"backend": "ray" if ray_address is not None else "process-pool",
            "workers": workers, "ray_address": ray_address, "cells": len(jobs),
            "cells_run": len(todo), "cells_restored": len(jobs) - len(todo),
            "excluded": len(excluded), "dense_search_s": round(dense_s, 2),
            "run_s": round(time.perf_counter() - t_run, 2),
            "wall_s": round(time.perf_counter() - t0, 2),
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            "cpu_count": os.cpu_count(),
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return BenchmarkOutcome(spec=spec, reachable=reachable,
                            results=tuple(done[i] for i in range(len(jobs))),
                            excluded=tuple(excluded), meta=meta, provenance=prov)


def output_texts(outcome: BenchmarkOutcome) -> dict[str, str | bytes]:
    """File name -> content of every output (see :data:`OUTPUT_FILES`)."""
    spec = outcome.spec
    fig = distribution_figure(outcome.results, title=f"{spec.name}: experiments to a good hit\n"
                              f"(budget {spec.budget}, QY ≥ {spec.success.qy_fraction:g} × best "
                              "reachable in band)")
    return {
        "results.json": results_json(outcome),
        "runs.csv": runs_csv(outcome.results),
        "summary.csv": summary_csv(summarize(outcome.results)),
        "summary.md": summary_markdown(outcome),
        "distribution.png": figure_png(fig),
    }


def write_outputs(outcome: BenchmarkOutcome, out_dir: str | Path) -> list[Path]:
    """Write :data:`OUTPUT_FILES` into ``out_dir`` (created if needed); returns their paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in output_texts(outcome).items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            atomic_write_text(path, content)
        paths.append(path)
    return paths
