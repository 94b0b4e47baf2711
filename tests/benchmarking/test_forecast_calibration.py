"""The forecast calibration script's bookkeeping: landmark rows for the hazard fit, and the count
check with censored cells (a cell without a good hit must count against a short forecast, not be
left out). Hand-made cells whose answers are worked out in the comments."""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType
from typing import Any

from autolab.optimizer.forecast import Remaining
from tests.scripts import load_script


def _script() -> ModuleType:
    return load_script("benchmarks/forecast_calibration.py")


def _cell(name: str, budget: int, hit: int | None, n_steps: int) -> dict[str, Any]:
    """Steps 1..n_steps at 550 ± 2 nm, measured in band from step 2; forecasts from step 2."""
    steps = []
    for e in range(1, n_steps + 1):
        fc = None if e == 1 else {"p_next_model": 0.5, "p_spec_met_model": 0.4, "best_index": 1,
                                  "p_next": 0.05, "p_spec_met": 0.02}
        steps.append({"experiment": e, "failed": False, "measured_pl_nm": 549.0 if e > 1 else 600.0,
                      "good": e == hit, "forecast": fc})
    return {"strategy": "botorch", "member": name, "target_nm": 550.0, "tolerance_nm": 2.0,
            "seed": 0, "budget": budget, "experiments_to_success": hit, "steps": steps}


def test_landmark_rows_pair_each_forecast_with_every_later_experiment() -> None:
    fc = _script()
    # A: budget 5, good hit at 4, forecasts after 2, 3, 4. B: budget 4, no hit, after 2, 3, 4.
    steps = fc.read_steps([_cell("a", 5, 4, 4), _cell("b", 4, None, 4)])
    assert [(s.experiment, s.remaining, s.left) for s in steps] == [
        (2, 2, 3), (3, 1, 2), (4, 0, 1), (2, None, 2), (3, None, 1), (4, None, 0)]
    assert all(s.in_band_found for s in steps)  # measured in band from experiment 2 on
    rows = fc.hazard_rows(steps)
    # A after 2: experiments 3 (no), 4 (hit); after 3: 4 (hit); after 4: nothing left to see.
    # B after 2: 3, 4 (no, no); after 3: 4 (no); after 4: the budget is spent.
    assert [(r.experiments, r.next_good) for r in rows] == [
        (2, False), (3, True), (3, True), (2, False), (3, False), (3, False)]
    hazard = fc.fit_hazard(rows, "t")
    assert hazard.max_experiments == 3


def test_the_count_check_counts_censored_cells_against_a_short_forecast() -> None:
    fc = _script()
    steps = [s for s in fc.read_steps([_cell("a", 5, 4, 4), _cell("b", 4, None, 4)])
             if s.remaining != 0]
    two = Remaining(mean_experiments=2.0, median_experiments=2.0, q80_experiments=2.0)
    check = fc.count_check([replace(s, count=two) for s in steps], "median")
    # Decided (forecast 2 within what was left): A after 2 (2 <= 2, yes), A after 3 (1 <= 2,
    # yes), B after 2 (no hit within 2: no). B after 3 and 4 (1 and 0 left) are undecided.
    assert check["n_decided"] == 3.0
    assert check["share_actual_le_forecast"] == 2.0 / 3.0
    assert check["share_uncensored"] == 1.0  # the old figure: cells with a hit only
    assert check["n_censored_beyond_budget"] == 2.0
    assert check["median_ratio_forecast_over_actual"] == 1.5  # 2/2 and 2/1
