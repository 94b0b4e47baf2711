"""The soak test, shortened for CI: SIGKILL a tracked twin campaign 5 times, resume, count.

benchmarks/soak_kill.py runs the full version (20 kills); this runs the same script with fewer
kills and a 3-experiment budget, its first kill landing while the MLflow store is being created.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.scripts import load_script

pytestmark = pytest.mark.slow


def _soak_module() -> ModuleType:
    return load_script("benchmarks/soak_kill.py")


def test_five_kills_lose_nothing_duplicate_nothing_and_mlflow_matches_the_journal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    out = tmp_path / "soak_kill.json"
    code = _soak_module().main(["--kills", "5", "--budget", "3", "--n-init", "3",
                                "--max-delay", "2", "--seed", "1", "--out", str(out),
                                "--workdir", str(tmp_path / "work")])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["problems"] == [], printed
    assert code == 0
    assert "lost 0, duplicated 0, status mismatch 0, diverged 0" in printed
    assert (result["lost"], result["duplicated"], result["status_mismatch"],
            result["diverged"]) == (0, 0, 0, 0)
    assert result["kills"] == 5
    assert result["kills_during_store_creation"] >= 1
    assert result["campaigns"] >= 1
    assert result["checks"] >= 2  # after kills (with a sync) and at the end
