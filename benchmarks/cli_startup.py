"""Startup time of the ``autolab`` command: ``--help``, ``validate FILE`` and ``report RUN``.

Each command runs as a fresh process (``python -m autolab ...``, as the ``autolab`` script does)
``--repeats`` times; the script prints the median wall time and the median CPU time (user +
system of the child, the figure to trust on a busy machine), and which heavy libraries the
command imported. ``report`` runs on a small campaign this script makes first (3 Sobol
experiments on the twin, journal only); it draws plots, so it needs matplotlib (and torch, which
the objective's scoring uses), while ``--help`` and ``validate`` must not import torch, BoTorch,
matplotlib or MLflow. "report (startup only)" is ``report`` refusing a folder without a journal:
the command's own start before any work.

Goal (issue 12 §6): help, validate and report start in well under a second (``--help`` took
about 2.8 s when ``cli.py`` imported the benchmarking package at the top).

Usage::

    .venv/bin/python benchmarks/cli_startup.py [--repeats 7] [--out FILE]

Figures go to ``benchmarks/results/cli_startup.json`` by default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAMPAIGN = ROOT / "campaigns" / "target_550nm.yaml"
HEAVY = ("torch", "botorch", "gpytorch", "matplotlib", "mlflow", "scipy.optimize", "pandas")

#: Prints which heavy modules a command imported (run in place of ``python -m autolab``).
_PROBE = """
import sys
from autolab.cli import main
sys.argv = ["autolab", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def timed(args: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one ``python -m autolab ARGS`` process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autolab", *args], cwd=cwd, env=_env(), check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def heavy_imports(args: list[str], cwd: Path) -> list[str]:
    """The heavy libraries ``autolab ARGS`` imports."""
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], cwd=cwd,
                          env=_env(), capture_output=True, text=True, check=True)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("HEAVY="))
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


def make_run(home: Path) -> Path:
    """A finished 3-experiment campaign (Sobol on the twin, journal only) to report on."""
    spec = home / "c.yaml"
    text = CAMPAIGN.read_text().replace("kind: botorch", "kind: sobol").replace(
        "settings: {n_init: 6}", "settings: {}")
    spec.write_text(text)
    subprocess.run([sys.executable, "-m", "autolab", "run", str(spec), "--budget", "3",
                    "--runs-dir", str(home / "runs"), "--no-tracking"], cwd=home, env=_env(),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (run_dir,) = (home / "runs").iterdir()
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "cli_startup.json")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        run_dir = make_run(home)
        commands = {"--help": ["--help"], "validate": ["validate", str(CAMPAIGN)],
                    "report": ["report", str(run_dir), "--out", str(home / "report")],
                    "report (startup only: a folder without journal)": ["report", str(home)],
                    "python -c pass (baseline)": None}
        results = {}
        for name, args in commands.items():
            samples = []
            for _ in range(opts.repeats):
                if args is None:
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, "-c", "pass"], check=True)
                    wall = time.perf_counter() - t0
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    samples.append((wall, after.ru_utime - before.ru_utime
                                    + after.ru_stime - before.ru_stime))
                else:
                    samples.append(timed(args, home))
            results[name] = {
                "wall_s_median": round(statistics.median(s[0] for s in samples), 3),
                "cpu_s_median": round(statistics.median(s[1] for s in samples), 3),
                "heavy_imports": [] if args is None else heavy_imports(args, home),
                "repeats": opts.repeats,
            }
            r = results[name]
            print(f"{name:<50} wall {r['wall_s_median']:6.3f} s   cpu {r['cpu_s_median']:6.3f} s"
                  f"   heavy imports: {', '.join(r['heavy_imports']) or 'none'}")
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps({
        "benchmark": "cli_startup",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "results": results,
    }, indent=2) + "\n")
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
