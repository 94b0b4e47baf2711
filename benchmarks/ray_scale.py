"""Scale-out throughput: campaigns per minute on the process pool and on a real Ray cluster.

Runs the same benchmark spec (default: the baseline strategies of benchmarks/family_quick.yaml)
four ways, each into a fresh output folder so every cell really runs: a process pool of 1 and of
2 workers, and a local Ray cluster of 1 node and of 2 nodes (a head and a worker started with
``ray start --block``, one CPU each, stopped afterwards; only the processes this script started
are signalled). Records campaigns/min and wall time per way in
``benchmarks/results/ray-scale.json``::

    .venv/bin/python benchmarks/ray_scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from autolab.benchmarking.provenance import Result, Table, write_result

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nodes_alive(address: str, env: dict[str, str]) -> int:
    code = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
            "print(sum(n['Alive'] for n in ray.nodes()))")
    done = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True,
                          env=env, timeout=180, check=False)
    return int(done.stdout.split()[-1]) if done.returncode == 0 else 0


@contextmanager
def ray_cluster(nodes: int) -> Iterator[str]:
    """A local Ray cluster of ``nodes`` single-CPU nodes; yields the head's address."""
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--block", "--num-cpus=1", "--object-store-memory=100000000",
              "--node-ip-address=127.0.0.1"]
    procs = [subprocess.Popen([RAY, "start", "--head", f"--port={port}",
                               "--include-dashboard=false", "--disable-usage-stats",
                               f"--temp-dir={temp}", *common], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    address = f"127.0.0.1:{port}"
    try:
        for k in range(1, nodes + 1):
            if k > 1:
                procs.append(subprocess.Popen([RAY, "start", f"--address={address}", *common],
                                              env=env, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 300
            while _nodes_alive(address, env) < k:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Ray cluster did not reach {k} nodes")
                time.sleep(2)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(temp, ignore_errors=True)


def run_once(spec: Path, out: Path, *flags: str) -> tuple[float, int]:
    """Wall seconds of the cells (the benchmark's own ``run_s``) and the number of cells."""
    shutil.rmtree(out, ignore_errors=True)
    done = subprocess.run([sys.executable, "-m", "autolab.benchmarking.cli", str(spec),
                           "--out", str(out), "--no-tracking", *flags], cwd=ROOT,
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    meta = json.loads((out / "results.json").read_text())["meta"]
    return float(meta["run_s"]), int(meta["cells_run"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "family_quick.yaml")
    parser.add_argument("--strategies", default="random,sobol",
                        help="strategies of the spec to keep (comma separated; '' keeps all)")
    parser.add_argument("--targets", default="550,580",
                        help="targets of the spec to keep, nm (comma separated; '' keeps all)")
    parser.add_argument("--budget", type=int, default=None,
                        help="override the spec's budget (shorter campaigns)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ray-scale-"))
    data = yaml.safe_load(args.spec.read_text(encoding="utf-8"))
    if args.strategies:
        keep = args.strategies.split(",")
        data["strategies"] = [s for s in data["strategies"]
                              if (s if isinstance(s, str) else s["kind"]) in keep]
    if args.targets:
        wanted = {float(t) for t in args.targets.split(",")}
        data["targets"] = [t for t in data["targets"] if float(t["pl_peak_nm"]) in wanted]
    if args.budget is not None:
        data["budget"] = args.budget
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump(data), encoding="utf-8")
    rows = []
    for label, ctx_nodes, flags in (("process pool", 0, ("--workers", "1")),
                                    ("process pool", 0, ("--workers", "2")),
                                    ("Ray cluster", 1, ()), ("Ray cluster", 2, ())):
        workers = int(flags[1]) if flags else ctx_nodes
        if ctx_nodes:
            with ray_cluster(ctx_nodes) as address:
                wall, cells = run_once(spec, work / f"ray{ctx_nodes}", "--ray", address)
        else:
            wall, cells = run_once(spec, work / f"pool{workers}", *flags)
        rate = 60.0 * cells / wall
        rows.append((label, str(workers), str(cells), f"{wall:.0f}", f"{rate:.1f}"))
        print(f"{label:<13} {workers} worker(s): {cells} campaigns in {wall:.0f} s = "
              f"{rate:.1f} campaigns/min", flush=True)
    result = Result(
        name="ray-scale", title="Scale-out: process pool and Ray, 1 and 2 workers",
        description=f"The same benchmark ({data['name']}, strategies "
                    f"{', '.join(str(s) for s in data['strategies'])}, targets "
                    f"{', '.join(str(t['pl_peak_nm']) for t in data['targets'])} nm, budget "
                    f"{data['budget']}, every "
                    "cell run afresh) "
                    "on a process pool and on a real local Ray cluster (a head and a worker "
                    "node started with 'ray start', one CPU each). Wall time of the cells "
                    "(yardstick search excluded).",
        tables=(Table("throughput", ("backend", "workers", "campaigns", "wall s",
                                     "campaigns/min"), tuple(rows)),),
        notes=("What the wall time includes: for the pool, spawning the worker processes and "
               "their imports (torch, BoTorch); for Ray, the cluster's workers already run (the "
               "cluster is started before the clock), and the driver's connection. Short "
               "campaigns (random/Sobol, a fraction of a CPU-second each) therefore measure "
               "start-up and the driver's per-cell work (an fsync'd cell file, a progress line), "
               "not compute. Compute-bound cells (BoTorch campaigns) were not timed here.",),
        data={"spec": data})
    print(f"wrote {write_result(result)}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
