"""BENCHMARKS.md is rendered from recorded outputs, each section naming its commit and machine."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from autolab.benchmarking.provenance import Result, Table, write_result
from tests.scripts import load_script


def _script() -> ModuleType:
    return load_script("scripts/benchmarks_md.py")


def test_sections_name_command_commit_machine_and_packages(tmp_path: Path) -> None:
    write_result(Result(name="demo", title="Demo benchmark", description="What it measures.",
                        tables=(Table("by strategy", ("strategy", "median"), (("botorch", 9),)),),
                        notes=("A note.",), command="autolab benchmark demo.yaml"), tmp_path)
    (tmp_path / "legacy.json").write_text(json.dumps({"benchmark": "legacy", "x": {"y": 1}}))
    md = _script()
    out = tmp_path / "B.md"
    assert md.main(["--results", str(tmp_path), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Demo benchmark" in text and "autolab benchmark demo.yaml" in text
    assert "| botorch | 9 |" in text and "A note." in text
    assert "at commit " in text and "logical CPUs" in text and "botorch " in text
    assert "## legacy" in text and "| x.y | 1 |" in text
    assert "are not recorded" in text  # the missing provenance shows
    assert md.main(["--results", str(tmp_path), "--out", str(out), "--check"]) == 0
    out.write_text(text + "hand edit\n")
    assert md.main(["--results", str(tmp_path), "--out", str(out), "--check"]) == 1


def test_repository_benchmarks_md_is_rendered_from_its_results() -> None:
    """BENCHMARKS.md is never typed by hand: it equals the render of benchmarks/results."""
    md = _script()
    assert md.main(["--check"]) == 0, (
        "BENCHMARKS.md is stale: run .venv/bin/python scripts/benchmarks_md.py")
