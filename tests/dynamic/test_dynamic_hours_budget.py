"""benchmarks/dynamic_hours.py at equal lab hours: the allowance, the stop, what counts as found.

Issue 10's goal compares the lab hours to a good hit, so a dynamic cell cut off by a trajectory
count (while the steady cell still had reactor time) is not a fair miss. ``--dynamic-lab-hours
steady`` gives each dynamic cell the lab hours the steady campaign is allowed; these tests pin
how that figure is derived, that the campaign stops on it, and that a hit only counts within it.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from autolab.benchmarking.benchmark import make_jobs
from autolab.benchmarking.problem import Reachable
from autolab.benchmarking.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dynamic_hours",
                                                  ROOT / "benchmarks" / "dynamic_hours.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _cell(dh: ModuleType, name: str, trials: int, lab_h: float, hit: tuple[int, float] | None,
          *, mode: str = "steady") -> Any:
    return dh.Cell(name, mode, hit is not None, None if hit is None else hit[1],
                   None if hit is None else hit[0], trials, lab_h, trials, 1.0, 0.0)


def test_steady_allowance_is_the_budget_at_the_lowest_steady_rate() -> None:
    dh = _script()
    cells = [_cell(dh, "a", 10, 25.0, (10, 25.0)),   # 2.5 h per experiment
             _cell(dh, "b", 30, 63.0, None),          # 2.1: the cheapest
             _cell(dh, "c", 4, 12.0, (4, 12.0))]      # 3.0
    hours, rule = dh.steady_lab_hours(cells, 30)
    assert hours == pytest.approx(30 * 2.1)
    assert "2.10" in rule and "b" in rule and "median 2.50" in rule


def test_steady_allowance_without_steady_cells_is_refused() -> None:
    dh = _script()
    with pytest.raises(ValueError, match="--dynamic-lab-hours steady needs steady cells"):
        dh.steady_lab_hours([_cell(dh, "empty", 0, 0.0, None)], 30)


@pytest.mark.parametrize("value", ["-3", "0", "nan", "inf", "many"])
def test_bad_lab_hours_flag_is_refused_naming_it(value: str) -> None:
    with pytest.raises(SystemExit, match=r"--dynamic-lab-hours.*'steady' or a positive"):
        _script()._lab_hours_arg(value)


def test_lab_hours_flag_values() -> None:
    dh = _script()
    assert dh._lab_hours_arg(None) is None
    assert dh._lab_hours_arg("steady") == "steady"
    assert dh._lab_hours_arg("61.5") == pytest.approx(61.5)


def test_found_at_equal_trajectories_counts_hits_within_the_steady_budget() -> None:
    dh = _script()
    dyn = [_cell(dh, "early", 40, 20.0, (12, 9.0), mode="dynamic"),
           _cell(dh, "late", 80, 55.0, (45, 41.0), mode="dynamic"),
           _cell(dh, "none", 90, 60.5, None, mode="dynamic")]
    s = dh.summarize(dyn, None, trajectories=30)
    assert (s["found"], s["found_within_trajectories"], s["trajectories"]) == (2, 1, 30)
    # a hit past the lab-hour budget is kept (when and where) but does not count as found
    past = replace(dyn[1], found=False, lab_h_budget=40.0)
    s = dh.summarize([dyn[0], past, dyn[2]], None, trajectories=60)
    assert (s["found"], s["found_within_trajectories"], s["lab_h_budget"]) == (1, 2, 40.0)


def test_dynamic_cell_stops_at_its_lab_hours_and_counts_a_hit_only_within_them() -> None:
    dh = _script()
    spec = load_spec(ROOT / "benchmarks" / "lab_hours.yaml").model_copy(update={"seeds": 1})
    # an unreachable QY threshold: no hit, so only the lab hours can stop the campaign
    rows = {m.name: tuple(Reachable(t.pl_peak_nm, t.tolerance_nm, 10.0, {}, 1)
                          for t in spec.targets) for m in spec.members()}
    jobs, _ = make_jobs(spec, rows)
    cell = dh.run_dynamic(jobs[0], budget=dh.MAX_TRAJECTORIES, lab_h=3.0)
    assert cell.stop_reason == "budget: lab hours"  # not "good hit", not the trajectory cap
    assert cell.lab_h >= 3.0 and cell.lab_h_budget == 3.0
    assert not cell.found and cell.lab_h_to_hit is None
    assert 1 < cell.trials < dh.MAX_TRAJECTORIES
    assert math.isfinite(cell.wall_s)


def test_a_restored_dynamic_cell_is_judged_at_a_lower_budget_and_rerun_at_a_higher_one() -> None:
    """Adding seeds can lower the allowance (the lowest steady rate); never judge a cell on more
    reactor time than the run gives, nor on less than it would now have had."""
    dh = _script()
    hit_at_50 = replace(_cell(dh, "d", 40, 50.0, (40, 50.0), mode="dynamic"), lab_h_budget=60.3)
    lower = dh.under_budget(hit_at_50, 55.0)
    assert lower.found and lower.lab_h_budget == 55.0
    later = dh.under_budget(hit_at_50, 45.0)
    assert not later.found and later.lab_h_to_hit == 50.0  # kept, but past the budget
    assert dh.under_budget(hit_at_50, 70.0) is None  # it stopped earlier than it would now
    assert dh.under_budget(replace(hit_at_50, lab_h_budget=None), 45.0) is None
    assert dh.under_budget(hit_at_50, None) is hit_at_50
