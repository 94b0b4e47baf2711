"""Fixtures shared by the whole suite: a real ``mlflow server`` process and free ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

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


@contextlib.contextmanager
def mlflow_server_process(cmd: list[str], root: Path, env: dict[str, str], port: int,
                          label: str, timeout_s: float) -> Iterator[str]:
    """Start ``cmd`` (an ``mlflow server`` on ``port``), wait until healthy, stop it after.

    The server runs in its own process group (uvicorn and its workers), so stopping it stops
    them all.
    """
    log_path = root / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                            env={**env, **NO_JOB_RUNNER}, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{label} exited with {proc.returncode}: "
                            f"{log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"{uri}/health", timeout=1) as resp:
                if resp.status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{label} not healthy in {timeout_s:g} s: "
                            f"{log_path.read_text()[-3000:]}")
            time.sleep(0.25)
        yield uri
    finally:
        stop_process_group(proc, signal.SIGTERM, label)
        log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory,
                  sqlite_template: Path) -> Iterator[str]:
    """A real ``mlflow server`` over HTTP (SQLite backend, proxied artifacts), one per session.

    Its backend store starts as a copy of the template: the server then finds its tables
    current and skips the migrations (seconds of start-up on a busy CI machine).
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    copy_store(sqlite_template, root / "server.db")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe), "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with mlflow_server_process(cmd, root, env, port, "mlflow server", timeout_s=120) as uri:
        yield uri
