"""A benchmark killed halfway (a real SIGKILL) and started again runs only the missing cells."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner, Result

REPO = Path(__file__).parents[2]
SPEC: dict[str, Any] = {
    "name": "resume",
    "strategies": ["random", "sobol"],
    "seeds": 3,
    # Two experiments a cell and the smallest dense grid: resume is about which cells run, not
    # what is in them (every process here also pays ~6 s of imports, so each cell counts).
    "budget": 2,
    "targets": [{"pl_peak_nm": 560, "tolerance_nm": 15}],
    "success": {"qy_fraction": 0.2},
    "dense_search": {"sobol_log2": 6, "polish": 1},
}
CELLS = 6  # 2 strategies x 3 seeds: a kill after 3 leaves 3 to run (each takes seconds)


def _command(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "autolab.benchmarking.cli", str(spec), "--workers", "1",
            "--out", str(out), "--no-tracking"]


def _env() -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg"}


def _trajectories(out: Path) -> dict[str, Any]:
    doc = json.loads((out / "results.json").read_text())
    return {f"{r['strategy']}-{r['seed']}": [(s["true_pl_nm"], s["true_qy"], s["failed"])
                                             for s in r["steps"]] for r in doc["runs"]}


def test_sigkill_halfway_then_rerun_runs_only_missing_cells(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(spec, out), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = out / "cells"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(cells.glob("*.json"))) < 3:
        assert proc.poll() is None, "the benchmark ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = sorted(cells.glob("*.json"))
    assert 3 <= len(written) < CELLS
    for path in written:  # atomic writes: every file there is whole
        assert json.loads(path.read_text())["result"]["strategy"] in ("random", "sobol")
    assert not (out / "results.json").exists()

    # The rerun and the uninterrupted run are the same command in this process (one worker:
    # the cells run here, as in a fresh one): only the killed run needs a process of its own,
    # and each fresh one paid ~6 s of imports before its first cell.
    again = _invoke(spec, out)
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert f"{CELLS} cells ({len(written)} restored" in text
    assert f"{CELLS - len(written)} to run" in text
    assert len(list(cells.glob("*.json"))) == CELLS

    clean = tmp_path / "clean"
    whole = _invoke(spec, clean)
    assert whole.exit_code == 0, whole.output
    assert _trajectories(out) == _trajectories(clean)


def _invoke(spec: Path, out: Path) -> Result:
    """``_command`` run by the CLI in this process (Typer's runner captures its output)."""
    from autolab.benchmarking.cli import app

    return CliRunner().invoke(app, _command(spec, out)[3:])


def test_ctrl_c_keeps_finished_cells_and_exits_3(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) on a 2-process pool."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC), encoding="utf-8")
    out = tmp_path / "out"
    command = _command(spec, out)
    command[command.index("--workers") + 1] = "2"
    # a child inherits an ignored SIGINT (a suite started in the background by a shell without
    # job control), and Python then never raises KeyboardInterrupt in it: give it the default,
    # as a terminal's shell does (as tests/hardware/test_host_killed.py's lab-up test does)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list((out / "cells").glob("*.json")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 3, stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert "run the same command again" in " ".join(stderr.split())
    kept = list((out / "cells").glob("*.json"))
    assert 1 <= len(kept) < CELLS
    for path in kept:
        assert json.loads(path.read_text())["fingerprint"]
