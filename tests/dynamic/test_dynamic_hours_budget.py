"""benchmarks/dynamic_hours.py at equal lab hours: the allowance, the stop, what counts as found.

Issue 10's goal compares the lab hours to a good hit, so a dynamic cell cut off by a trajectory
count (while the steady cell still had reactor time) is not a fair miss. ``--dynamic-lab-hours
steady`` gives each dynamic cell the lab hours the steady campaign is allowed; these tests pin
how that figure is derived, that the campaign stops on it, and that a hit only counts within it.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from autolab.benchmarking.benchmark import make_jobs
from autolab.benchmarking.problem import Reachable
from autolab.benchmarking.spec import load_spec
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    return load_script("benchmarks/dynamic_hours.py")


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


def _unreachable_job() -> Any:
    """The first cell with an unreachable QY threshold: no hit, only the lab hours stop it."""
    spec = load_spec(ROOT / "benchmarks" / "lab_hours.yaml").model_copy(update={"seeds": 1})
    rows = {m.name: tuple(Reachable(t.pl_peak_nm, t.tolerance_nm, 10.0, {}, 1)
                          for t in spec.targets) for m in spec.members()}
    jobs, _ = make_jobs(spec, rows)
    return jobs[0]


@pytest.fixture(scope="module")
def three_hours() -> Any:
    """That cell run as a dynamic campaign under 3 lab h (two trajectories)."""
    dh = _script()
    return dh.run_dynamic(_unreachable_job(), budget=dh.MAX_TRAJECTORIES, lab_h=3.0)


def test_dynamic_cell_stops_at_its_lab_hours_and_counts_a_hit_only_within_them(
        three_hours: Any) -> None:
    dh, cell = _script(), three_hours
    assert cell.stop_reason == "budget: lab hours"  # not "good hit", not the trajectory cap
    assert cell.lab_h >= 3.0 and cell.lab_h_budget == 3.0
    assert not cell.found and cell.lab_h_to_hit is None
    assert 1 < cell.trials < dh.MAX_TRAJECTORIES
    assert math.isfinite(cell.wall_s)
    # each trial is kept, and adds up to the cell's figures
    assert len(cell.progress) == cell.trials and cell.rig_event_h == ()
    assert sum(m.observations for m in cell.progress) == cell.observations > 0
    assert sum(m.full_weight for m in cell.progress) == cell.full_weight
    assert sum(m.refused for m in cell.progress) == cell.refused
    assert cell.progress[-1].lab_h == cell.lab_h


def test_a_restored_cell_cut_to_a_smaller_allowance_is_the_run_stopped_there(
        tmp_path: Path, three_hours: Any) -> None:
    """Restored (through the recorded JSON) and judged at 1.5 lab h, the 3 h cell reports what a
    campaign run under 1.5 lab h reports: its trials, observations, lab hours and stop."""
    dh = _script()
    record = tmp_path / "dynamic-hours.json"
    record.write_text(json.dumps({"data": {"cells": [dh.cell_record(three_hours)]}}))
    restored = dh.recorded_cell(_unreachable_job(), record, "dynamic")
    # (cpu_s is NaN outside _run; each _script() has its own Cell class, so compare fields)
    assert (dh.cell_record(replace(restored, cpu_s=0.0))
            == dh.cell_record(replace(three_hours, cpu_s=0.0)))
    cut = dh.under_budget(restored, 1.5)
    fresh = dh.run_dynamic(_unreachable_job(), budget=dh.MAX_TRAJECTORIES, lab_h=1.5)
    assert fresh.trials < three_hours.trials  # the smaller allowance stops it earlier
    timing = {"wall_s": 0.0, "ask_s": 0.0, "cpu_s": 0.0, "progress": ()}
    assert replace(cut, **timing) == replace(fresh, **timing)
    assert [m.lab_h for m in cut.progress] == [m.lab_h for m in fresh.progress]
    assert cut.wall_s == three_hours.progress[cut.trials - 1].wall_s < three_hours.wall_s


def _marked(dh: ModuleType, cell: Any, ends_h: list[float]) -> Any:
    """``cell`` with one kept trial per lab-clock end (10 readings each: 4 full, 3 down, 3
    refused; 0.5 s to ask; 1 s of wall and CPU time each)."""
    marks = tuple(dh.TrialMark(h, 7, 4, 3, 0.5, i + 1.0, i + 1.0) for i, h in enumerate(ends_h))
    return replace(cell, trials=len(marks), lab_h=ends_h[-1], observations=7 * len(marks),
                   full_weight=4 * len(marks), down_weighted=3 * len(marks),
                   refused=3 * len(marks), ask_s=0.5 * len(marks), wall_s=len(marks) + 0.5,
                   progress=marks)


def test_a_restored_dynamic_cell_is_judged_at_a_lower_budget_and_rerun_at_a_higher_one() -> None:
    """Adding seeds can lower the allowance (the lowest steady rate); never judge a cell on more
    reactor time than the run gives, nor on less than it would now have had."""
    dh = _script()
    # recorded under 60.3 lab h: 40 trajectories, 1 lab h each after a 10 h start; hit in the last
    ends = [10.0 + k for k in range(40)]
    hit_at_49 = _marked(dh, replace(_cell(dh, "d", 40, 49.0, (40, 49.0), mode="dynamic"),
                                    lab_h_budget=60.3, stop_reason="good hit"), ends)
    lower = dh.under_budget(hit_at_49, 55.0)
    assert lower == replace(hit_at_49, lab_h_budget=55.0)  # the same run, its hit within
    late = dh.under_budget(hit_at_49, 48.5)  # the hit's trajectory started before 48.5 h
    assert late == replace(hit_at_49, found=False, lab_h_budget=48.5)  # kept, past the budget
    assert dh.under_budget(hit_at_49, 70.0) is None  # it stopped earlier than it would now
    assert dh.under_budget(replace(hit_at_49, lab_h_budget=None), 45.0) is None
    assert dh.under_budget(hit_at_49, None) is hit_at_49


def test_a_restored_cell_cut_before_its_hit_reports_only_the_trials_it_would_have_run() -> None:
    """At 45 lab h the campaign stops after the trajectory that ends at 45 (the 36th); the hit,
    four trajectories later, was never reached: every figure is the shorter run's."""
    dh = _script()
    ends = [10.0 + k for k in range(40)]
    hit_at_49 = _marked(dh, replace(_cell(dh, "d", 40, 49.0, (40, 49.0), mode="dynamic"),
                                    lab_h_budget=60.3, stop_reason="good hit"), ends)
    cut = dh.under_budget(hit_at_49, 44.5)
    assert (cut.found, cut.lab_h_to_hit, cut.trials_to_hit) == (False, None, None)
    assert (cut.trials, cut.lab_h, cut.lab_h_budget) == (36, 45.0, 44.5)
    assert (cut.observations, cut.full_weight, cut.down_weighted, cut.refused) == (
        7 * 36, 4 * 36, 3 * 36, 3 * 36)
    assert (cut.ask_s, cut.wall_s, cut.stop_reason) == (18.0, 36.0, "budget: lab hours")
    assert cut.progress == hit_at_49.progress[:36]
    s = dh.summarize([cut], None, trajectories=30)
    assert (s["found"], s["found_within_trajectories"]) == (0, 0)
    assert s["observations_per_lab_h"] == pytest.approx(7 * 36 / 45.0)


def test_a_rig_event_past_the_allowance_stops_the_cut_there() -> None:
    """The campaign checks its clock after a rig event too: one at 44.6 h ends the 44.5 h run
    before the trajectory that would have ended at 45."""
    dh = _script()
    cell = _marked(dh, replace(_cell(dh, "d", 40, 49.0, None, mode="dynamic"),
                               lab_h_budget=60.3), [10.0 + k for k in range(40)])
    cut = dh.under_budget(replace(cell, rig_event_h=(20.5, 44.6)), 44.5)
    assert (cut.trials, cut.lab_h, cut.rig_event_h) == (35, 44.6, (20.5, 44.6))


def test_a_cell_recorded_without_its_trials_is_run_again_at_a_smaller_allowance() -> None:
    """Cells recorded before the trials were kept cannot be cut: run again, unless the
    allowance is the one they ran under or their run ended before it (the same run: only the
    hit is judged, as before)."""
    dh = _script()
    old = replace(_cell(dh, "d", 40, 50.0, (40, 50.0), mode="dynamic"), lab_h_budget=55.0)
    assert dh.under_budget(old, 45.0) is None
    assert dh.under_budget(old, 55.0) == old
    assert not dh.under_budget(replace(old, lab_h_to_hit=56.0, lab_h=56.0), 55.0).found
    early = replace(_cell(dh, "e", 12, 30.0, (12, 30.0), mode="dynamic"), lab_h_budget=60.3)
    assert dh.under_budget(early, 45.0) == replace(early, lab_h_budget=45.0)
