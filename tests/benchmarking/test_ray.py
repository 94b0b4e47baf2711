"""Ray without ceremony: every --ray path ends in a result or a clear error, never a traceback.

The two-node test starts a real local Ray cluster on this machine (a head and a worker, each
``ray start --block`` with one CPU, stopped in the fixture even when the test fails: only the
processes the fixture started are signalled), runs a small benchmark on it through the CLI, and
checks that every cell ran exactly once, on both nodes, with the process pool's results.
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
from typing import Any

import pytest
import yaml

from . import tiny

pytest.importorskip("ray", reason="Ray is the optional 'ray' extra")

REPO = Path(__file__).parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
# Two experiments a cell and the smallest dense grid: these tests are about where cells run and
# that each runs once with the pool's result, not about what is in them; each of the 3 benchmark
# processes (pool, private Ray, two nodes) runs every cell, so each experiment counts 3 times.
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
def pool_result(spec_path: Path) -> dict[str, Any]:
    """The cells on a 2-process pool: the reference every Ray run must reproduce.

    The command runs in this process (its pool workers are spawned processes, as from a fresh
    ``autolab benchmark``): a process of its own only added ~6 s of imports to the reference.
    """
    from typer.testing import CliRunner

    from autolab.benchmarking.cli import app

    out = spec_path.parent / "pool"
    done = CliRunner().invoke(app, [str(spec_path), "--workers", "2", "--out", str(out),
                                    "--no-tracking"])
    assert done.exit_code == 0, done.output
    return dict(json.loads((out / "results.json").read_text()))


def _trajectories(doc: dict[str, Any]) -> dict[str, Any]:
    return {f"{r['strategy']}-{r['seed']}": [(s["true_pl_nm"], s["true_qy"], s["failed"])
                                             for s in r["steps"]] for r in doc["runs"]}


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr


def test_auto_without_a_cluster_says_how_to_start_one(spec_path: Path) -> None:
    from autolab.benchmarking.execution import _bootstrap_address

    found = _bootstrap_address(__import__("ray"))
    if found:  # a stale address file is fine (nothing answers); a live cluster is not
        host, port = found.rsplit(":", 1)
        with socket.socket() as s:
            s.settimeout(2)
            if s.connect_ex((host, int(port))) == 0:
                pytest.skip(f"a Ray cluster runs on this machine at {found}")
    t0 = time.monotonic()
    done = _cli(spec_path, "--ray", "auto", "--out", str(spec_path.parent / "auto"))
    assert done.returncode == 2
    _no_traceback(done)
    assert "no running Ray cluster" in done.stderr
    assert "ray start --head" in done.stderr
    assert "--ray local" in done.stderr
    assert time.monotonic() - t0 < 120  # fails before the dense search, not after retries


@pytest.mark.parametrize(("address", "message"), [
    ("not an address", "expected 'auto', 'local', HOST:PORT"),
    ("127.0.0.1:{free}", "nothing answers at 127.0.0.1"),
])
def test_bad_or_dead_address_is_a_clear_error(spec_path: Path, address: str,
                                              message: str) -> None:
    # the dead port is picked at run time, so every pytest-xdist worker collects one test id
    address = address.format(free=_free_port())
    done = _cli(spec_path, "--ray", address, "--out", str(spec_path.parent / "bad"))
    assert done.returncode == 2
    _no_traceback(done)
    assert message in done.stderr.replace("\n", " ")


def test_local_starts_a_private_ray_for_the_run(spec_path: Path,
                                                pool_result: dict[str, Any]) -> None:
    out = spec_path.parent / "local"
    done = _cli(spec_path, "--ray", "local", "--workers", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    _no_traceback(done)
    doc = json.loads((out / "results.json").read_text())
    assert doc["meta"]["backend"] == "ray"
    assert _trajectories(doc) == _trajectories(pool_result)


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[str]:
    """A head and a worker node (one CPU each) on this machine; yields the head's address."""
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths live here
    env = _env(RAY_AUTH_MODE="token")
    common = ["--block", "--num-cpus=1", "--object-store-memory=100000000",
              "--node-ip-address=127.0.0.1"]
    logs = [(temp / "head.log").open("w"), (temp / "worker.log").open("w")]
    procs = [subprocess.Popen([RAY, "start", "--head", f"--port={port}",
                               "--include-dashboard=false", "--disable-usage-stats",
                               f"--temp-dir={temp}", *common],
                              stdout=logs[0], stderr=subprocess.STDOUT, env=env)]
    try:
        _wait_for_nodes(f"127.0.0.1:{port}", 1, env, procs)
        procs.append(subprocess.Popen([RAY, "start", f"--address=127.0.0.1:{port}", *common],
                                      stdout=logs[1], stderr=subprocess.STDOUT, env=env))
        _wait_for_nodes(f"127.0.0.1:{port}", 2, env, procs)
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):  # --block: SIGTERM stops the node's own processes
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_nodes(address: str, n: int, env: dict[str, str],
                    procs: list[subprocess.Popen[bytes]], timeout: float = 240) -> None:
    code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(sum(node['Alive'] for node in ray.nodes()))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a ray node exited"
        done = subprocess.run([sys.executable, "-c", code, address], capture_output=True,
                              text=True, env=env, timeout=120, check=False)
        if done.returncode == 0 and int(done.stdout.split()[-1]) >= n:
            return
        time.sleep(2)
    raise AssertionError(f"the Ray cluster at {address} did not reach {n} nodes")


@pytest.mark.slow
def test_two_node_cluster_runs_every_cell_once_like_the_pool(
        spec_path: Path, pool_result: dict[str, Any], two_nodes: str) -> None:
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
    assert _trajectories(doc) == _trajectories(pool_result)
