"""A whole benchmark: yardsticks, the job grid, execution, and the files that record it.

:func:`run_benchmark` is the pure-ish core (spec in, :class:`BenchmarkOutcome` out; it only spends
CPU); :func:`write_outputs` and :func:`~autolab.benchmarking.mlflow_log.log_benchmark` are the I/O
edges.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autolab.benchmarking.execution import Progress, run_local, run_ray
from autolab.benchmarking.family import nominal_member
from autolab.benchmarking.problem import Problem, Reachable, best_reachable_many
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


@dataclass(frozen=True)
class BenchmarkOutcome:
    """What a finished benchmark hands back.

    Attributes:
        spec: The spec it ran.
        reachable: The yardstick of each target, in spec order.
        results: Every run, in job order (strategy, then target, then seed).
        meta: Where and how it ran: backend, workers, wall time, load average, host.
    """

    spec: BenchmarkSpec
    reachable: tuple[Reachable, ...]
    results: tuple[RunResult, ...]
    meta: dict[str, Any] = field(default_factory=dict)


def problems(spec: BenchmarkSpec) -> list[Problem]:
    """One :class:`Problem` per target of the spec."""
    space = spec.space.build()
    return [Problem(space, dict(spec.space.fixed), t.pl_peak_nm, t.tolerance_nm,
                    nominal_member(spec.twin))
            for t in spec.targets]


def make_jobs(spec: BenchmarkSpec, reachable: tuple[Reachable, ...]) -> list[Job]:
    """The job grid: every strategy × target × seed, with each target's success threshold."""
    return [Job(strategy=s, seed=seed, problem=problem, budget=spec.budget,
                threshold_qy=spec.success.qy_fraction * reach.best_qy,
                best_reachable_qy=reach.best_qy)
            for s in spec.strategies
            for problem, reach in zip(problems(spec), reachable, strict=True)
            for seed in spec.seed_list]


def run_benchmark(spec: BenchmarkSpec, *, workers: int = 1, ray_address: str | None = None,
                  progress: Progress | None = None) -> BenchmarkOutcome:
    """Find each target's best reachable QY, then run every job.

    Args:
        spec: The validated spec.
        workers: Local processes (ignored with ``ray_address``).
        ray_address: Run on Ray (``"auto"`` or ``host:port``) instead of a local pool.
        progress: Called after each finished job.

    Raises:
        ConfigError: Ray requested but not installed, or ``workers < 1``.
    """
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    reachable = tuple(best_reachable_many(problems(spec), spec.dense_search.sobol_log2,
                                          spec.dense_search.polish))
    dense_s = time.perf_counter() - t0
    jobs = make_jobs(spec, reachable)
    if ray_address is not None:
        results = run_ray(jobs, ray_address, progress)
    else:
        results = run_local(jobs, workers, progress)
    meta = {"backend": "ray" if ray_address is not None else "process-pool",
            "workers": None if ray_address is not None else workers,
            "ray_address": ray_address, "jobs": len(jobs),
            "dense_search_s": round(dense_s, 2),
            "wall_s": round(time.perf_counter() - t0, 2),
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
            "cpu_count": os.cpu_count(), "host": platform.node(),
            "python": platform.python_version(),
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return BenchmarkOutcome(spec=spec, reachable=reachable, results=tuple(results), meta=meta)


def output_texts(outcome: BenchmarkOutcome) -> dict[str, str | bytes]:
    """File name -> content of every output (see :data:`OUTPUT_FILES`)."""
    spec = outcome.spec
    rows = summarize(outcome.results)
    fig = distribution_figure(outcome.results, title=f"{spec.name}: experiments to success\n"
                              f"(budget {spec.budget}, QY ≥ {spec.success.qy_fraction:g} × best "
                              "reachable)")
    return {
        "results.json": results_json(spec.name, spec.model_dump(mode="json"), outcome.reachable,
                                     outcome.results, outcome.meta),
        "runs.csv": runs_csv(outcome.results),
        "summary.csv": summary_csv(rows),
        "summary.md": summary_markdown(rows, spec.budget),
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
            path.write_text(content, encoding="utf-8")
        paths.append(path)
    return paths
