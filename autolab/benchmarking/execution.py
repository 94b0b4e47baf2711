"""Where benchmark jobs run: in this process, in a local process pool, or on a Ray cluster.

All three take the same :class:`~autolab.benchmarking.runner.Job` values and return results in job
order, so the summary cannot depend on where (or in which order) jobs finished. Ray is an optional
extra (``pip install autolab[ray]``) and is imported only when asked for.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from autolab.benchmarking.runner import Job, RunResult, run_job
from autolab.exceptions import ConfigError

#: Called after each finished job with (finished count, total, result): the CLI's progress line.
Progress = Callable[[int, int, RunResult], None]


def _worker_init() -> None:
    """One BLAS/torch thread per worker: jobs are the unit of parallelism."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def run_local(jobs: Sequence[Job], workers: int = 1,
              progress: Progress | None = None) -> list[RunResult]:
    """Run jobs in this process (``workers == 1``) or a spawn-started process pool.

    Spawn, not fork: forking a process that has already loaded torch (and maybe MLflow threads)
    is unsafe; spawned workers import what they need themselves.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    results: list[RunResult | None] = [None] * len(jobs)
    if workers == 1:
        for i, job in enumerate(jobs):
            results[i] = run_job(job)
            if progress is not None:
                progress(i + 1, len(jobs), results[i])  # type: ignore[arg-type]
        return [r for r in results if r is not None]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                             initializer=_worker_init) as pool:
        futures = {pool.submit(run_job, job): i for i, job in enumerate(jobs)}
        for done, fut in enumerate(as_completed(futures), start=1):
            result = fut.result()
            results[futures[fut]] = result
            if progress is not None:
                progress(done, len(jobs), result)
    return [r for r in results if r is not None]


def run_ray(jobs: Sequence[Job], address: str = "auto",
            progress: Progress | None = None) -> list[RunResult]:
    """Run jobs as Ray tasks (one CPU each) on the cluster at ``address``.

    If Ray is already initialized in this process (a test's local instance, a notebook), that
    connection is used as is; otherwise ``ray.init(address=...)`` joins the cluster (``auto``: the
    one this machine belongs to). The worker nodes need autolab installed in the same version.

    Raises:
        ConfigError: Ray is not installed.
    """
    try:
        import ray  # noqa: PLC0415 (optional extra)
    except ImportError as err:
        raise ConfigError("--ray needs Ray: pip install 'autolab[ray]'") from err
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    remote: Any = ray.remote(num_cpus=1)(run_job)
    refs = [remote.remote(job) for job in jobs]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[RunResult | None] = [None] * len(jobs)
    pending = list(refs)
    done = 0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            result: RunResult = ray.get(ref)
            results[index[ref]] = result
            done += 1
            if progress is not None:
                progress(done, len(jobs), result)
    return [r for r in results if r is not None]
