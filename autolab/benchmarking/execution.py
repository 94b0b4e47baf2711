"""Where benchmark cells run: in this process, in a local process pool, or on a Ray cluster.

All three take the same :class:`~autolab.benchmarking.runner.Job` values and hand each result to
``on_result`` as soon as it finishes (so it reaches the output folder and MLflow while the rest
still runs); the summary is built from results in job order, so it cannot depend on where or in
which order cells finished. Ray is an optional extra (``pip install autolab[ray]``), imported only
when asked for, and joined without ceremony (:func:`connect_ray`):

* ``--ray auto``: join the cluster this machine belongs to (``ray start --head`` here, or
  ``RAY_ADDRESS``); if none runs, a clear error says how to start one (exit 2);
* ``--ray local``: start a private Ray instance for this run, stopped at the end;
* ``--ray HOST:PORT`` (or ``ray://HOST:PORT``): join that cluster.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

from autolab.benchmarking.runner import Job, RunResult, run_job
from autolab.exceptions import ConfigError

#: Called as each cell finishes with (index of its job, result).
OnResult = Callable[[int, RunResult], None]
#: A Ray address: ``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT``.
_ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9_.-]+:\d{1,5}$")
#: How to start a cluster, for error messages.
START_HINT = ("start one with 'ray start --head --num-cpus N' (then run with --ray auto), "
              "join a remote one with --ray HOST:PORT, or use --ray local to start a private "
              "Ray for this run (or --workers N for a local process pool)")


AUTH_HINT = ("the cluster refused this machine's Ray token: copy the head's token ('ray "
             "get-auth-token' there) to ~/.ray/auth_token here or set RAY_AUTH_TOKEN, or set "
             "RAY_AUTH_MODE=disabled on every node of a trusted private network")


#: Thread-count variables a pool worker must start with (BLAS reads them when it loads).
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _worker_init() -> None:
    """One BLAS/torch thread per worker: cells are the unit of parallelism.

    The variables alone come too late when numpy is already loaded in the worker (unpickling this
    initializer imports the package), so the BLAS pools are also limited at run time. Without it
    two workers on two cores each ran OpenBLAS on every core: the same cells took about twice the
    CPU time of Ray's workers, which start with one thread (measured on family-quick: 444 s vs
    215 s of cell time, identical results).
    """
    os.environ.update(_ONE_THREAD)
    from threadpoolctl import (  # type: ignore[import-untyped]  # noqa: PLC0415 (pool workers only)
        threadpool_limits,
    )

    threadpool_limits(limits=1)


def run_local(jobs: Sequence[Job], workers: int = 1,
              on_result: OnResult | None = None) -> list[RunResult]:
    """Run cells in this process (``workers == 1``) or a spawn-started process pool.

    Spawn, not fork: forking a process that has already loaded torch (and maybe MLflow threads)
    is unsafe; spawned workers import what they need themselves. On an interrupt the pool's
    queued cells are cancelled; finished ones have already been handed to ``on_result``.

    Raises:
        ConfigError: ``workers < 1``.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    results: list[RunResult | None] = [None] * len(jobs)

    def finish(i: int, result: RunResult) -> None:
        results[i] = result
        if on_result is not None:
            on_result(i, result)

    if workers == 1 or len(jobs) <= 1:
        for i, job in enumerate(jobs):
            finish(i, run_job(job))
        return [r for r in results if r is not None]
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
    try:
        with _workers_ignore_sigint():
            futures: dict[Future[RunResult], int] = {pool.submit(run_job, job): i
                                                     for i, job in enumerate(jobs)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: futures[f]):
                finish(futures[fut], fut.result())
    except KeyboardInterrupt:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [r for r in results if r is not None]


@contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Spawn pool workers with SIGINT ignored; this process keeps its own handler.

    Ctrl-C in a terminal signals the whole process group. A worker still importing torch would
    die of it with a traceback on the user's terminal; an ignored SIGINT is inherited through
    exec, and Python then installs no KeyboardInterrupt handler. The parent handles the
    interrupt alone: it stops the workers (:func:`_stop_workers`) and keeps the finished cells.
    """
    import signal  # noqa: PLC0415 (only for pools)

    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to protect
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers now (their cells are re-run on the next invocation)."""
    processes = getattr(pool, "_processes", None) or {}  # CPython's pool keeps them here
    for proc in list(processes.values()):
        if proc.is_alive():
            proc.terminate()


def _import_ray() -> Any:
    try:
        import ray  # noqa: PLC0415 (optional extra)
    except ImportError as err:
        raise ConfigError("--ray needs Ray: pip install 'autolab[ray]'") from err
    return ray


def preflight_ray(address: str) -> None:
    """Check a ``--ray`` address before any work (seconds, not after the dense search).

    Ray must be installed, the address well formed, and a cluster must answer there (``auto``,
    ``HOST:PORT``); ``local`` needs only Ray.

    Raises:
        ConfigError: What is wrong and how to fix it.
    """
    if address not in ("auto", "local") and not _ADDRESS.match(address):
        raise ConfigError(f"--ray {address!r}: expected 'auto', 'local', HOST:PORT or "
                          "ray://HOST:PORT (e.g. --ray 10.0.0.5:6379)")
    ray = _import_ray()
    if address != "local" and not ray.is_initialized():
        _check_reachable(ray, address)


@contextmanager
def connect_ray(address: str, num_cpus: int | None = None) -> Iterator[Any]:
    """A Ray connection for the run (see the module docstring for the address forms).

    If Ray is already initialized in this process (a test, a notebook) that connection is used
    as is. Otherwise the connection (and, for ``local``, the private instance) ends with the
    block.

    Args:
        address: ``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT``.
        num_cpus: CPUs of a ``local`` instance (default: all of this machine's).

    Raises:
        ConfigError: Ray is not installed, the address is malformed, no cluster runs (``auto``),
            or the cluster at the address cannot be joined; each says what to do.
    """
    preflight_ray(address)
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    try:
        if address == "local":
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
        else:
            _token_auth_if_available()
            ray.init(address=address, **kwargs)
    except ConfigError:
        raise
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        where = ("no running Ray cluster was found on this machine" if address == "auto"
                 else f"could not join the Ray cluster at {address}")
        raise ConfigError(f"--ray {address}: {where} ({_first_line(err)}); "
                          f"{AUTH_HINT if _is_auth_error(err) else START_HINT}") from err
    try:
        yield ray
    finally:
        ray.shutdown()


def _token_auth_if_available() -> None:
    """Join with token authentication when this machine has a Ray token and no mode is set.

    ``ray start --head`` (Ray >= 2.5x) turns token authentication on and writes the token to
    ``~/.ray/auth_token``; a driver that does not send it is refused after a long retry loop.
    An explicit ``RAY_AUTH_MODE`` (e.g. ``disabled`` on a trusted network) is respected.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (  # noqa: PLC0415
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication: nothing to do
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _is_auth_error(err: BaseException) -> bool:
    chain: BaseException | None = err
    while chain is not None:
        if "Auth" in type(chain).__name__ or "InvalidAuthToken" in str(chain):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _check_reachable(ray: Any, address: str) -> None:
    """Fail fast (instead of Ray's long retries) when no cluster answers at ``address``.

    ``auto`` resolves like Ray does (``RAY_ADDRESS``, then the address file ``ray start``
    leaves in the temp folder); an explicit ``HOST:PORT`` must accept a TCP connection.
    """
    import socket  # noqa: PLC0415

    if address == "auto":
        resolved = os.environ.get("RAY_ADDRESS") or _bootstrap_address(ray)
        if not resolved:
            raise ConfigError(f"--ray auto: no running Ray cluster was found on this machine; "
                              f"{START_HINT}")
        if resolved == "local" or resolved.startswith("ray://"):
            return
        address = resolved
    if address.startswith("ray://"):
        return
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as err:
        raise ConfigError(f"--ray {address}: nothing answers at {host}:{port} ({err}); "
                          f"is the head node running? {START_HINT}") from err


def _bootstrap_address(ray: Any) -> str | None:
    """The address of a cluster started on this machine with ``ray start``, or None."""
    try:
        from ray._private.services import (  # noqa: PLC0415 (Ray internals, best effort)
            get_ray_address_from_environment,
        )

        found = get_ray_address_from_environment("auto", None)
    except Exception:  # no cluster file, or a Ray version without this helper
        return None
    return str(found) if found else None


def run_ray(jobs: Sequence[Job], address: str = "auto", on_result: OnResult | None = None,
            num_cpus: int | None = None) -> list[RunResult]:
    """Run cells as Ray tasks (one CPU each) on the cluster at ``address``.

    The worker nodes need autolab installed in the same version.

    Raises:
        ConfigError: See :func:`connect_ray`.
    """
    results: list[RunResult | None] = [None] * len(jobs)
    with connect_ray(address, num_cpus) as ray:
        remote: Any = ray.remote(num_cpus=1, max_retries=0)(run_job)
        refs = [remote.remote(job) for job in jobs]
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    result: RunResult = ray.get(ref)
                    results[index[ref]] = result
                    if on_result is not None:
                        on_result(index[ref], result)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
    return [r for r in results if r is not None]


class Progress:
    """A progress line per finished cell with an estimate of the time left.

    The estimate is the wall time elapsed in *this* run per cell finished in it (cells restored
    from an earlier run cost nothing; cells running side by side are already in the pace) times
    the cells left.

    Args:
        total: Cells to run in this session.
        emit: Where each line goes (the CLI prints it).
    """

    def __init__(self, total: int, emit: Callable[[str], None]) -> None:
        self.total = total
        self.emit = emit
        self.done = 0
        self.t0 = time.monotonic()

    def eta_s(self) -> float:
        """Seconds left at the current pace."""
        if self.done == 0:
            return float("nan")
        per_cell = (time.monotonic() - self.t0) / self.done
        return per_cell * (self.total - self.done)

    def __call__(self, result: RunResult) -> None:
        """Count a finished cell and emit its line."""
        self.done += 1
        eta = self.eta_s()
        eta_text = ("-" if math.isnan(eta) else f"{eta / 3600:.1f} h" if eta >= 3600
                    else time.strftime("%M:%S", time.gmtime(eta)))
        verdict = (f"hit at {result.experiments_to_success}" if result.found
                   else f"no hit in {result.budget}")
        band = result.experiments_to_in_band
        self.emit(f"[{self.done:>4}/{self.total}] {result.cell_id:<44} {verdict}, in band "
                  f"{band if band is not None else '-'} ({result.wall_s:.1f} s) ETA {eta_text}")
