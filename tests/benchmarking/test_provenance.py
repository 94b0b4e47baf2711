"""Every benchmark output says where it came from."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from autolab.benchmarking.provenance import (
    Result,
    Table,
    commit_label,
    git_info,
    machine_label,
    provenance,
    write_result,
)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)


def test_git_info_names_commit_and_dirty_paths(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("1")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "x")
    clean = git_info(tmp_path)
    assert clean["dirty"] is False and len(clean["commit"]) == 40
    (tmp_path / "a.txt").write_text("2")
    (tmp_path / "untracked.txt").write_text("u")  # untracked files do not make it dirty
    dirty = git_info(tmp_path)
    assert dirty["dirty"] is True
    assert dirty["dirty_paths"] == ["a.txt"]


def test_provenance_has_packages_machine_command_and_time() -> None:
    p = provenance(command="autolab benchmark x.yaml")
    assert p["command"] == "autolab benchmark x.yaml"
    for pkg in ("torch", "botorch", "gpytorch", "numpy", "mlflow"):
        assert p["packages"][pkg]
    assert p["machine"]["cpu_model"] and p["machine"]["logical_cpus"] >= 1
    assert "OMP_NUM_THREADS" in p["machine"]["threads_env"]
    assert p["utc"].endswith("+00:00")
    assert "logical CPUs" in machine_label(p)
    assert commit_label(p)


def test_write_result_is_one_json_file_with_provenance(tmp_path: Path) -> None:
    r = Result(name="demo", title="Demo", tables=(Table("t", ("a", "b"), ((1, 2.5),)),),
               data={"x": 1}, command="python demo.py")
    path = write_result(r, tmp_path)
    doc = json.loads(path.read_text())
    assert path.name == "demo.json"
    assert doc["schema"] == 1 and doc["command"] == "python demo.py"
    assert doc["tables"][0]["rows"] == [[1, 2.5]]
    assert doc["provenance"]["git"]["commit"]
    assert not list(tmp_path.glob(".*.tmp"))
