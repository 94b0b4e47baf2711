"""benchmarks/plot_cost.py: every figure timed, the pooled grid drawn again, the refresh totals."""

from __future__ import annotations

from types import ModuleType

from autolab.records import TrialStatus
from autolab.tracking import plots
from autolab.tracking.summary import FitPoint, campaign_view
from tests.scripts import load_script

from ..tracking.conftest import build_trial

TARGET = {"mode": "scalar", "terms": [{"kind": "target", "outcome": "pl_peak_nm", "value": 550,
                                       "tolerance": 2}]}


def _script() -> ModuleType:
    return load_script("benchmarks/plot_cost.py")


def test_every_figure_is_timed_and_the_grid_is_drawn_again_from_the_pool() -> None:
    cost = _script()
    trials = [build_trial(0), build_trial(1, TrialStatus.FAILED), build_trial(2)]
    view = campaign_view(trials, {}, {"objective": TARGET})
    view.fit_points["qy"] = [FitPoint(0, 0.2, 0.02, 0.21)]
    pool = plots.FigurePool()
    build = cost.builders(plots, view, view, pool)
    assert set(build) == {"convergence", "parameters_vs_outcomes", cost.AGAIN, "model_fit",
                          "spectrum"}  # no Pareto objective: no front
    first = build[cost.AGAIN]()
    pool.give_back([first])
    assert build[cost.AGAIN]() is first  # drawn into the pooled grid, as the tracker does
    # the table from known timings (measure() itself renders every figure: seconds each)
    timed = {name: cost.Timing([0.1 * k], [0.2 * k], 1000) for k, name in enumerate(build, 1)}
    rows = {r[1]: r for r in cost.rows_of(3, {"current": timed, "baseline": timed}, True)}
    assert set(rows) == {*build, "refresh (scalar)", "refresh (scalar, again)",
                         "refresh (pareto)", "refresh (pareto, again)"}
    again = sum(timed[n].total_s for n in ("convergence", cost.AGAIN, "model_fit"))
    assert float(rows["refresh (scalar, again)"][4]) == round(again, 3)
    assert rows["refresh (scalar, again)"][-1] == "1.0x"  # the same timings on both sides
    k = list(build).index("spectrum") + 1
    assert rows["spectrum"][2:6] == (f"{0.1 * k:.3f}", f"{0.2 * k:.3f}", f"{0.3 * k:.3f}", "1")
