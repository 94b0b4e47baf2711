"""benchmarks/lab_hours.py: the seed window that lets a later run extend a record."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from autolab.benchmarking.benchmark import make_jobs
from autolab.benchmarking.problem import Reachable
from autolab.benchmarking.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lab_hours", ROOT / "benchmarks" / "lab_hours.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_seed_offset_runs_the_later_seeds_only() -> None:
    lab_hours = _script()
    base = load_spec(ROOT / "benchmarks" / "lab_hours.yaml")
    later = lab_hours.with_seeds(base, 8, 8)
    assert later.seed_list == tuple(range(8, 16))
    assert lab_hours.with_seeds(base, 8, 0).seed_list == tuple(range(8))
    assert lab_hours.with_seeds(base, None, 0).seed_list == base.seed_list
    assert lab_hours.with_seeds(base, None, 3).seed_list == (3, 4)
    rows = {m.name: tuple(Reachable(t.pl_peak_nm, t.tolerance_nm, 0.5, {}, 1)
                          for t in later.targets) for m in later.members()}
    jobs, _ = make_jobs(later, rows)
    assert {j.seed for j in jobs} == set(range(8, 16))


@pytest.mark.parametrize(("count", "offset", "field"), [(8, -1, "--seed-offset"),
                                                        (0, 0, "--seeds")])
def test_bad_seed_window_is_refused(count: int, offset: int, field: str) -> None:
    base = load_spec(ROOT / "benchmarks" / "lab_hours.yaml")
    with pytest.raises(ValueError, match=field):
        _script().with_seeds(base, count, offset)
