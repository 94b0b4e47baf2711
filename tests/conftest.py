"""Fixtures shared by the whole suite: a real ``mlflow server`` process and free ports."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: Markers of tests that need set-up beyond pip (scripts/ci/*.sh) and skip without it.
NEEDS_SETUP = ("stack", "browser", "notebooks", "server")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With AUTOLAB_REQUIRE_ALL_TESTS=1 (scripts/test.sh, CI), a skip of such a test fails it."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (report.skipped and os.environ.get("AUTOLAB_REQUIRE_ALL_TESTS") == "1"
            and any(item.get_closest_marker(m) for m in NEEDS_SETUP)):
        report.outcome = "failed"
        report.longrepr = f"skipped, but scripts/test.sh installed its needs: {report.longrepr}"


@pytest.fixture(autouse=True)
def _no_ambient_tracking_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their store explicitly; a developer's MLFLOW_TRACKING_URI must not leak in."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dead_uri() -> str:
    """An HTTP tracking URI on which nothing listens (connection refused at once)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, made once per test run by autolab's ``ensure_sqlite_store``.

    Making a store runs some 60 schema migrations, each committed with an fsync: 1-2 s of CPU
    but 5-7 s of wall time on a virtual disk, and about a dozen tests need a fresh one. A test
    whose subject is not the store's creation gets a byte copy of this file instead
    (:func:`copy_store`); autolab leaves an existing non-empty store as it is, so everything
    after the creation runs exactly as on a store it made itself. Under pytest-xdist the
    workers share one template (the parent of their base folders is the run's own folder;
    ``ensure_sqlite_store`` holds a file lock, so one worker makes it while the other waits).
    """
    from autolab.tracking.mlflow_tracker import ensure_sqlite_store

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / "mlflow-template" / "mlflow.db"
    ensure_sqlite_store(f"sqlite:///{path}")
    return path


def copy_store(template: Path, path: Path) -> str:
    """Put a fresh empty store (a copy of ``template``) at ``path``; returns its tracking URI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def fresh_store(sqlite_template: Path, tmp_path: Path) -> str:
    """Tracking URI of a new, empty SQLite store of this test alone (``tmp_path/mlflow.db``)."""
    return copy_store(sqlite_template, tmp_path / "mlflow.db")


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory,
                 sqlite_template: Path) -> tuple[str, str]:
    """(tracking URI, artifact root) of one SQLite store per module, copied from the template."""
    root = tmp_path_factory.mktemp("mlflow")
    return copy_store(sqlite_template, root / "mlflow.db"), (root / "artifacts").as_uri()


@pytest.fixture
def experiment_name() -> str:
    """A fresh MLflow experiment per test, so tests sharing a store do not see each other."""
    return f"test-{uuid.uuid4().hex[:8]}"


#: ``mlflow server`` without its GenAI job runner (a dozen huey worker processes): no test uses
#: it, and on a 2-core CI machine it doubles the start-up time.
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def stop_process_group(proc: subprocess.Popen[bytes], sig: int, what: str) -> None:
    """Signal ``proc``'s process group, wait, and kill it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
        sys.stderr.write(f"{what} did not stop on signal {sig}; killed\n")


def start_mlflow_server(cmd: list[str], root: Path, env: dict[str, str], port: int,
                        label: str, timeout_s: float) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``cmd`` (an ``mlflow server`` on ``port``) and wait until it is healthy.

    The server runs in its own process group (uvicorn and its workers), so stopping the group
    stops them all. Returns the process and the server's URI; a server that exits or is not
    healthy in ``timeout_s`` is stopped and fails the test with the end of its log.
    """
    log_path = root / "server.log"
    with log_path.open("wb") as log:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                                env={**env, **NO_JOB_RUNNER}, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while not _healthy(uri):
        problem = (f"exited with {proc.returncode}" if proc.poll() is not None
                   else f"not healthy in {timeout_s:g} s" if time.monotonic() > deadline
                   else "")
        if problem:
            stop_process_group(proc, signal.SIGTERM, label)
            pytest.fail(f"{label} {problem}: {log_path.read_text()[-3000:]}")
        time.sleep(0.25)
    return proc, uri


def _healthy(uri: str) -> bool:
    """Whether the server at ``uri`` answers its ``/health`` with 200 (within a second)."""
    with contextlib.suppress(OSError), \
            urllib.request.urlopen(f"{uri}/health", timeout=1) as resp:
        return bool(resp.status == 200)
    return False


@contextlib.contextmanager
def mlflow_server_process(cmd: list[str], root: Path, env: dict[str, str], port: int,
                          label: str, timeout_s: float) -> Iterator[str]:
    """Start ``cmd`` (an ``mlflow server`` on ``port``), wait until healthy, stop it after."""
    proc, uri = start_mlflow_server(cmd, root, env, port, label, timeout_s)
    try:
        yield uri
    finally:
        stop_process_group(proc, signal.SIGTERM, label)


def _server_command(root: Path, template: Path) -> tuple[list[str], Path, int]:
    """(command, folder, port) of an ``mlflow server`` on a copy of the template in ``root``.

    Its backend store starts as a copy of the template: the server then finds its tables
    current and skips the migrations (seconds of start-up on a busy CI machine).
    """
    copy_store(template, root / "server.db")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    return [str(exe), "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
            "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"], root, port


def _server_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory,
                  sqlite_template: Path) -> Iterator[str]:
    """A real ``mlflow server`` over HTTP (SQLite backend, proxied artifacts), one per test run.

    Under pytest-xdist the workers share it (:class:`SharedServer`): each start cost ~12 s of
    CPU (the server and its uvicorn worker importing MLflow), and the files that use it
    (``tests/test_campaign.py``, ``tests/tracking/test_tracking_server.py``,
    ``tests/deploy/test_ui.py``) usually land on different workers. Sharing changes nothing
    they check: in a run without xdist (and on one worker) they always shared one server, and
    each reads only the MLflow experiments it logged to.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        cmd, root, port = _server_command(tmp_path_factory.mktemp("mlflow-server"),
                                          sqlite_template)
        with mlflow_server_process(cmd, root, _server_env(), port, "mlflow server",
                                   timeout_s=120) as uri:
            yield uri
        return
    shared = SharedServer(tmp_path_factory.getbasetemp().parent / "mlflow-server")
    uri = shared.acquire(lambda: _server_command(tmp_path_factory.mktemp("mlflow-server"),
                                                 sqlite_template))
    try:
        yield uri
    finally:
        shared.release()


#: Servers this process started and another may still use: kept referenced, so that the
#: garbage collector never finalizes (and warns about) a ``Popen`` of a running server.
_STARTED: list[subprocess.Popen[bytes]] = []


@dataclass
class SharedServer:
    """One ``mlflow server`` for all the pytest-xdist workers of a run, counted by its users.

    ``folder`` is shared by the workers (the parent of their base folders). Under a file lock,
    ``server.json`` holds the server's URI, process id and number of users. The first worker
    to need it starts it (the others wait on the lock rather than start their own); the last
    to release it stops it, whichever worker started it; one needed again after that is
    started again.
    """

    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The shared state (empty when no server runs), written back when the block ends."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / "server.json"
        with (self.folder / "lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(path.read_text()) if path.exists() else {}
            yield state
            path.write_text(json.dumps(state))

    def acquire(self, command: Callable[[], tuple[list[str], Path, int]]) -> str:
        """The running server's URI, started first (``command()``) if none runs."""
        with self._locked() as state:
            if not state.get("users"):
                cmd, root, port = command()
                self.proc, uri = start_mlflow_server(cmd, root, _server_env(), port,
                                                     "mlflow server", timeout_s=120)
                _STARTED.append(self.proc)
                state.update(uri=uri, pid=self.proc.pid, users=0)
            state["users"] += 1
            return str(state["uri"])

    def release(self) -> None:
        """Stop using the server; the last user stops it."""
        with self._locked() as state:
            state["users"] -= 1
            if state["users"] == 0:
                self._stop(int(state["pid"]))

    def _stop(self, pid: int) -> None:
        if self.proc is not None and self.proc.pid == pid:  # started here: wait for it
            stop_process_group(self.proc, signal.SIGTERM, "mlflow server")
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            sys.stderr.write("the shared mlflow server did not stop on SIGTERM; killed\n")


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
