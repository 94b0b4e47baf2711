"""Ray without ceremony: every --ray path ends in a result or a clear error, never a traceback.

The two-node test starts a real local Ray cluster on this machine (a head and a worker, each
``ray start --block`` with one CPU, stopped in the fixture even when the test fails: only the
processes the fixture started are signalled), runs a small benchmark on it through the CLI, and
checks that every cell ran exactly once, on both nodes, with the in-process run's results
(which are the process pool's: ``test_benchmark.py::test_in_process_equals_pool``).

The command runs in this process (typer's runner) wherever that checks the same thing: a fresh
``python -m autolab.benchmarking.cli`` spent 8-15 s of imports before an error that
:func:`~autolab.benchmarking.execution.preflight_ray` raises in milliseconds. Only the two-node
run keeps a process of its own: it joins a cluster with token authentication, which Ray sets up
for the whole process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from . import tiny

if TYPE_CHECKING:
    from typer.testing import Result

pytest.importorskip("ray", reason="Ray is the optional 'ray' extra")

REPO = Path(__file__).parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
# Two experiments a cell and the smallest dense grid: these tests are about where cells run and
# that each runs once with the reference's result, not about what is in them; each of the 3
# benchmark runs (reference, private Ray, two nodes) runs every cell, so each experiment counts 3
# times.
TINY: dict[str, Any] = {**tiny.TINY, "name": "tiny-ray", "budget": 2,
                        "dense_search": {"sobol_log2": 6, "polish": 1}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "MPLBACKEND": "Agg", "RAY_USAGE_STATS_ENABLED": "0", **extra}


def _cli(spec: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autolab.benchmarking.cli", str(spec), *args,
                           "--no-tracking"], capture_output=True, text=True, cwd=REPO,
                          env=env or _env(), timeout=timeout, check=False)


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference_result(spec_path: Path) -> dict[str, Any]:
    """The cells run by ``--workers 1`` (in this process): the reference every Ray run reproduces.

    It was a 2-process pool: two spawned workers, each importing torch, BoTorch and autolab,
    doubled the reference's CPU (~21 s against ~10 s). What the Ray tests compare with is the
    cells' trajectories, and those do not depend on where a cell runs: that a pool's equal the
    in-process ones is ``tests/benchmarking/test_benchmark.py::test_in_process_equals_pool``'s
    subject, so Ray equal to in-process is Ray equal to the pool, as before.
    """
    from typer.testing import CliRunner

    from autolab.benchmarking.cli import app

    out = spec_path.parent / "reference"
    done = CliRunner().invoke(app, [str(spec_path), "--workers", "1", "--out", str(out),
                                    "--no-tracking"])
    assert done.exit_code == 0, done.output
    return dict(json.loads((out / "results.json").read_text()))


def _trajectories(doc: dict[str, Any]) -> dict[str, Any]:
    return {f"{r['strategy']}-{r['seed']}": [(s["true_pl_nm"], s["true_qy"], s["failed"])
                                             for s in r["steps"]] for r in doc["runs"]}


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr


def _invoke(spec: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """``autolab benchmark SPEC ARGS --no-tracking`` in this process, without any ``RAY_*`` setting.

    The environment is the one :func:`_env` gives a subprocess (so no address or auth mode of
    the developer's shell leaks in), restored after the test by ``monkeypatch``.
    """
    from typer.testing import CliRunner

    from autolab.benchmarking.cli import app

    for key in [k for k in os.environ if k.startswith("RAY_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    return CliRunner().invoke(app, [str(spec), *args, "--no-tracking"])


def _clean_input_error(done: Result) -> str:
    """The error message of a clean exit 2 (``typer.Exit``, no exception, no traceback)."""
    assert done.exit_code == 2, done.output
    assert isinstance(done.exception, SystemExit), done.exception  # typer.Exit, not a crash
    assert "Traceback" not in done.output, done.output
    return done.stderr.replace("\n", " ")


def test_auto_without_a_cluster_says_how_to_start_one(spec_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from autolab.benchmarking.execution import _bootstrap_address

    found = _bootstrap_address(__import__("ray"))
    if found:  # a stale address file is fine (nothing answers); a live cluster is not
        host, port = found.rsplit(":", 1)
        with socket.socket() as s:
            s.settimeout(2)
            if s.connect_ex((host, int(port))) == 0:
                pytest.skip(f"a Ray cluster runs on this machine at {found}")
    out = spec_path.parent / "auto"
    t0 = time.monotonic()
    message = _clean_input_error(_invoke(spec_path, monkeypatch, "--ray", "auto",
                                         "--out", str(out)))
    assert "no running Ray cluster" in message
    assert "ray start --head" in message
    assert "--ray local" in message
    # fails before the dense search (it writes reachable.json first thing), not after retries
    assert not (out / "reachable.json").exists()
    assert time.monotonic() - t0 < 120


@pytest.mark.parametrize(("address", "message"), [
    ("not an address", "expected 'auto', 'local', HOST:PORT"),
    ("127.0.0.1:{free}", "nothing answers at 127.0.0.1"),
])
def test_bad_or_dead_address_is_a_clear_error(spec_path: Path, address: str, message: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # the dead port is picked at run time, so every pytest-xdist worker collects one test id
    address = address.format(free=_free_port())
    out = spec_path.parent / "bad"
    done = _invoke(spec_path, monkeypatch, "--ray", address, "--out", str(out))
    assert message in _clean_input_error(done)
    assert not (out / "reachable.json").exists()


def test_local_starts_a_private_ray_for_the_run(spec_path: Path,
                                                reference_result: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A private one-CPU Ray, started and shut down by the command, in this process.

    One CPU (one Ray worker process, which imports autolab once) is enough for what is checked
    here: the cells ran as Ray tasks, each once, with the reference's trajectories; cells side by
    side on several workers are the two-node test's subject.
    """
    import ray

    out = spec_path.parent / "local"
    done = _invoke(spec_path, monkeypatch, "--ray", "local", "--workers", "1", "--out", str(out))
    assert done.exit_code == 0, done.output
    assert done.exception is None and "Traceback" not in done.output, done.output
    assert not ray.is_initialized()  # the private Ray ended with the command
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["backend"] == "ray"
    cells = [r["strategy"] + "-" + str(r["seed"]) for r in doc["runs"]]
    assert len(cells) == len(set(cells)) == 4  # every cell exactly once
    assert _trajectories(doc) == _trajectories(reference_result)


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """A head and a worker node (one CPU each) on this machine; yields the head's address."""
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths live here
    env = _env(RAY_AUTH_MODE="token")
    common = ["--block", "--num-cpus=1", "--object-store-memory=100000000",
              "--node-ip-address=127.0.0.1"]
    logs = [temp / "head.log", temp / "worker.log"]
    files = [log.open("w") for log in logs]
    procs = [subprocess.Popen([RAY, "start", "--head", f"--port={port}",
                               "--include-dashboard=false", "--disable-usage-stats",
                               f"--temp-dir={temp}", *common],
                              stdout=files[0], stderr=subprocess.STDOUT, env=env)]
    try:
        _wait_for_node(logs[0], procs)
        procs.append(subprocess.Popen([RAY, "start", f"--address=127.0.0.1:{port}", *common],
                                      stdout=files[1], stderr=subprocess.STDOUT, env=env))
        _wait_for_node(logs[1], procs)
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):  # --block: SIGTERM stops the node's own processes
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for file in files:
            file.close()
        shutil.rmtree(temp, ignore_errors=True)


#: What ``ray start`` prints once its node is registered (and so alive) in the cluster's GCS:
#: ``ray._private.node.Node`` waits for the GCS to know the node before the command says so.
STARTED = "Ray runtime started."


def _wait_for_node(log: Path, procs: list[subprocess.Popen[bytes]], timeout: float = 240) -> None:
    """Wait until the ``ray start`` writing ``log`` says its node has joined the cluster.

    The log is read, not the cluster asked: a ``ray.init`` probe every 2 s was a Python process
    importing Ray and registering a driver each time, some 4 s of CPU per probe on a busy host.
    """
    deadline = time.monotonic() + timeout
    while STARTED not in log.read_text(errors="replace"):
        assert all(p.poll() is None for p in procs), f"a ray node exited: {log.read_text()}"
        assert time.monotonic() < deadline, f"no node started in {timeout:g} s: {log.read_text()}"
        time.sleep(0.25)


@pytest.mark.slow
def test_two_node_cluster_runs_every_cell_once_like_the_pool(
        spec_path: Path, reference_result: dict[str, Any], two_nodes: str) -> None:
    out = spec_path.parent / "two-nodes"
    # no RAY_AUTH_MODE here: the CLI finds this machine's token by itself
    done = _cli(spec_path, "--ray", two_nodes, "--out", str(out))
    assert done.returncode == 0, done.stderr
    _no_traceback(done)
    doc = json.loads((out / "results.json").read_text())
    cells = [r["strategy"] + "-" + str(r["seed"]) for r in doc["runs"]]
    assert len(cells) == len(set(cells)) == 4  # every cell exactly once
    assert len(list((out / "cells").glob("*.json"))) == 4
    nodes = {r["worker"].split("node=")[1] for r in doc["runs"]}
    assert len(nodes) == 2, nodes  # both nodes worked
    assert _trajectories(doc) == _trajectories(reference_result)
