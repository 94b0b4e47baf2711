"""Figures, summary table and parameter flattening: pure functions, no MLflow.

Every figure test reads the figure's data (artists' offsets and xy data, axis scales, clip
settings, table cells), not only that a PNG came out.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from autolab.objective import (
    Maximize,
    Minimize,
    ObjectiveSpec,
    OutcomeConstraint,
    qd_objective,
)
from autolab.records import QualityFlag, Trial, TrialStatus
from autolab.tracking import plots
from autolab.tracking.base import flatten_params, git_commit, safe_key
from autolab.tracking.journal import Journal, JournalHeader
from autolab.tracking.report import write_report
from autolab.tracking.summary import (
    FitPoint,
    best_so_far,
    best_trials,
    campaign_view,
    hypervolume,
    lab_accounts,
    lab_clocks,
    non_dominated,
    pareto_summary,
    reference_point,
    search_bounds,
    summary_rows,
    to_csv,
    to_markdown,
)

from .conftest import TrialFactory, build_trial, make_spectra

PNG = b"\x89PNG\r\n\x1a\n"


def test_flatten_params_makes_comparable_dotted_keys() -> None:
    flat = flatten_params({
        "space": {"bounds": {"t_core_c": [160, 220]}, "empty": {}},
        "constraints": [{"text": "a - b >= 1"}, {"text": "c <= 2"}],
        "weights": [1.0, 0.5], "target": math.inf, "name": "x", "flag": True, "none": None,
        "bad key!": 1, "long": "y" * 50,
    }, max_value_len=20)
    assert flat == {"space.bounds.t_core_c": "[160,220]", "space.empty": "{}",
                    "constraints.0.text": "a - b >= 1", "constraints.1.text": "c <= 2",
                    "weights": "[1.0,0.5]", "target": "inf", "name": "x", "flag": "true",
                    "none": "null", "bad key_": "1", "long": "y" * 17 + "..."}
    assert safe_key("InCl3 (0.1 M)") == "InCl3 _0.1 M_"


def test_best_so_far_and_lab_clocks(make_trial: TrialFactory) -> None:
    trials = [make_trial(0, objective=-2.0), make_trial(1, TrialStatus.FAILED),
              make_trial(2, objective=-3.0), make_trial(3, objective=-1.0),
              Trial(index=4, conditions={}, status=TrialStatus.COMPLETED, objective=math.nan)]
    assert best_so_far(trials) == [-2.0, -2.0, -2.0, -1.0, -1.0]
    assert best_so_far(trials[1:2]) == [None]
    assert lab_clocks(trials) == pytest.approx([1.2, 1.2, 4.2, 5.7, 5.7])


def test_summary_table_csv_and_markdown(make_trial: TrialFactory) -> None:
    trials = [make_trial(0), make_trial(1, TrialStatus.FAILED),
              make_trial(2, flags=QualityFlag.TRAP_TAIL | QualityFlag.SHOULDER)]
    rows = summary_rows(trials, best_so_far(trials), lab_clocks(trials))
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert list(parsed[0])[:3] == ["index", "status", "t_core_c"]  # conditions in space order
    assert parsed[1]["status"] == "failed"
    assert parsed[1]["objective"] == ""
    assert parsed[1]["error"].startswith("clogging")
    assert parsed[2]["flags"] == "shoulder trap_tail"
    assert float(parsed[0]["objective"]) == trials[0].objective  # full precision
    md = to_markdown(rows, title="Experiments")
    best = max((0, 2), key=lambda i: trials[i].objective or -math.inf)
    assert f"Best: exp-{best:03d}" in md
    assert "| exp-001 | failed |" in md  # experiments are named by experiment_label
    assert md.count("\n| ") == 4  # header + 3 rows
    assert "**" in md.splitlines()[4 + best]
    assert to_markdown([]) == "no experiments yet\n"
    assert to_csv([]) == ""


def test_display_absorbance_is_beer_lambert_with_gaps() -> None:
    sp = make_spectra()
    a = plots.display_absorbance(sp)
    i = int(np.argmin(np.abs(sp.wavelengths_nm - 540.0)))
    assert a[i] == pytest.approx(0.3 + 0.4 * math.exp(-140 / 60), rel=1e-6)
    dark = sp.dark_abs_counts.copy()
    dark[:3] = sp.blank_counts[:3] + 1  # no light left after dark subtraction
    gappy = type(sp)(**{**{k: getattr(sp, k) for k in sp.ARRAYS}, "dark_abs_counts": dark,
                        "abs_integration_ms": 10.0, "pl_integration_ms": 100.0,
                        "saturation_counts": 65535.0, "excitation_nm": 405.0})
    b = plots.display_absorbance(gappy)
    assert np.isnan(b[:3]).all()
    assert np.isfinite(b[3:]).all()


def test_figures_render_including_degenerate_inputs(make_trial: TrialFactory) -> None:
    trials = [make_trial(0), make_trial(1, TrialStatus.FAILED), make_trial(2)]
    best, clocks = best_so_far(trials), lab_clocks(trials)
    figs = [plots.convergence_figure(trials, best, clocks),
            plots.parameters_vs_outcomes_figure(trials),
            plots.prediction_figure([(0.1, 0.05, 0.12), (0.3, math.nan, 0.2)]),
            plots.prediction_figure([]),
            plots.convergence_figure(trials[1:2], [None], [0.0]),
            plots.parameters_vs_outcomes_figure(trials[1:2])]
    spec = plots.spectrum_figure(trials[0])
    assert spec is not None
    figs.append(spec)
    for fig in figs:
        assert plots.figure_png(fig).startswith(PNG)
    assert plots.spectrum_figure(trials[1]) is None
    assert "within 2 sd: 100 %" in figs[2].axes[0].get_title()


def test_git_commit_outside_a_checkout(tmp_path: object) -> None:
    assert git_commit(tmp_path) is None  # type: ignore[arg-type]


# ---- truthful figures -------------------------------------------------------------------------
TARGET = qd_objective(target_nm=550.0, tolerance_nm=2.0)
PARETO = ObjectiveSpec(
    mode="pareto",
    terms=(Maximize(outcome="qy", scale=0.1), Minimize(outcome="fwhm_nm", scale=10.0)),
    constraints=(OutcomeConstraint(outcome="pl_peak_nm", op=">=", bound=540.0),
                 OutcomeConstraint(outcome="pl_peak_nm", op="<=", bound=580.0)))


def _with(trial: Trial, objective: ObjectiveSpec | None = TARGET, **features: Any) -> Trial:
    """``trial`` with some features replaced and its score recomputed like the campaign does."""
    assert trial.features is not None
    feats = replace(trial.features, **features)
    outcomes = feats.outcomes()
    score = (objective.score(outcomes) if objective is not None and objective.is_feasible(outcomes)
             else None)
    return replace(trial, features=feats, objective=score)


def _status_markers(ax: Axes) -> dict[str, PathCollection]:
    return {str(c.get_label()): c for c in ax.collections
            if isinstance(c, PathCollection) and str(c.get_label()).split(" ")[0]
            in {"failed", "interrupted", "invalid"}}


def test_a_condition_held_at_one_value_is_named_in_the_title_not_drawn() -> None:
    trials = [replace(build_trial(i), conditions={**build_trial(i).conditions, "stir_rpm": 600.0,
                                                  "p_to_in": 3.6}) for i in range(3)]
    fig = plots.parameters_vs_outcomes_figure(trials)
    labels = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
    # tau_shell_min and s_to_zn are the same in every test trial too: four varied conditions
    assert len(fig.axes) == 4 * 4 and len(labels) == 4
    assert not any("stir_rpm" in x or "p_to_in" in x for x in labels)
    title = fig.get_suptitle()
    assert "stir_rpm = 600 rpm" in title and "p_to_in = 3.6" in title
    # one experiment has nothing to compare against: every condition keeps its column
    single = plots.parameters_vs_outcomes_figure(trials[:1])
    assert len(single.axes) == 4 * 8 and "not drawn" not in single.get_suptitle()
    # every label and the two-line title stay inside the figure
    fig.canvas.draw()  # lays out the tick labels the x labels sit under
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    box = fig.bbox
    for artist in [fig._suptitle, *(ax.xaxis.label for ax in fig.axes)]:
        assert artist is not None
        ext = artist.get_window_extent(renderer)
        assert box.x0 <= ext.x0 and ext.x1 <= box.x1 and box.y0 <= ext.y0 and ext.y1 <= box.y1


def test_status_markers_stay_inside_their_own_panel_and_invalid_is_not_a_failure() -> None:
    trials = [build_trial(0), build_trial(1, TrialStatus.FAILED), build_trial(2),
              build_trial(3, TrialStatus.INVALID), build_trial(4, TrialStatus.INTERRUPTED),
              build_trial(5)]
    fig = plots.parameters_vs_outcomes_figure(trials)
    # objective, PL, FWHM, QY x four conditions (tau_shell_min and s_to_zn, the same in every
    # trial, are named in the title instead)
    assert len(fig.axes) == 4 * 4
    for ax in fig.axes:
        markers = _status_markers(ax)
        assert set(markers) == {"failed (chemistry)", "interrupted",
                                "invalid (not told to the optimizer)"}
        lo, hi = ax.get_xlim()
        for coll in markers.values():
            assert coll.get_clip_on()  # the old clip_on=False let crosses land in other panels
            offsets = np.asarray(coll.get_offsets())
            assert np.all((offsets[:, 0] >= lo) & (offsets[:, 0] <= hi))
            assert np.allclose(offsets[:, 1], plots.STATUS_MARK_Y)  # axes fraction: inside
        failed_x = np.asarray(markers["failed (chemistry)"].get_offsets())[:, 0]
        invalid_x = np.asarray(markers["invalid (not told to the optimizer)"].get_offsets())[:, 0]
        assert len(failed_x) == 1 and len(invalid_x) == 1
        assert markers["failed (chemistry)"].get_paths()[0] != \
            markers["invalid (not told to the optimizer)"].get_paths()[0]
    by_label = {ax.get_xlabel(): ax for ax in fig.axes if ax.get_xlabel()}
    assert by_label["cl_to_i (log)"].get_xscale() == "log"
    assert by_label["t_core_c (°C)"].get_xscale() == "linear"
    cl_ax = by_label["cl_to_i (log)"]
    invalid = _status_markers(cl_ax)["invalid (not told to the optimizer)"]
    assert np.asarray(invalid.get_offsets())[0, 0] == pytest.approx(trials[3].conditions["cl_to_i"])
    # completed points only: the failed and invalid experiments have no outcomes to place
    scatter = [c for c in cl_ax.collections if c not in _status_markers(cl_ax).values()]
    assert sorted(np.asarray(scatter[0].get_offsets())[:, 0]) == pytest.approx([2.0, 4.0, 7.0])


def test_best_so_far_ranks_in_band_first() -> None:
    bright_off = _with(build_trial(0), pl_peak_nm=555.0, qy=0.6)  # out of band, bright
    dull_in = _with(build_trial(1), pl_peak_nm=550.5, qy=0.1)  # in band, dull
    brighter_far = replace(bright_off, objective=50.0)  # a score that beats everything
    trials = [brighter_far, dull_in]
    assert best_trials(trials) == [0, 0]  # by score alone the out-of-band one wins
    assert best_trials(trials, TARGET) == [0, 1]  # in band first
    view = campaign_view(trials, {}, {"objective": TARGET.model_dump()})
    assert view.best_index == 1
    assert view.best == (50.0, dull_in.objective)
    assert [r["in_band"] for r in view.rows] == [0, 1]
    assert view.rows[1]["distance_to_target_nm.pl_peak_nm"] == pytest.approx(0.5)


def test_convergence_uses_a_symlog_axis_and_shows_in_band_quality() -> None:
    trials = [_with(build_trial(0), pl_peak_nm=610.0), build_trial(1, TrialStatus.FAILED),
              _with(build_trial(2), pl_peak_nm=551.0, qy=0.30),
              _with(build_trial(3), pl_peak_nm=553.5, qy=0.45),
              _with(build_trial(4), pl_peak_nm=549.0, qy=0.35),
              build_trial(5, TrialStatus.INVALID)]
    assert (trials[0].objective or 0) < -200  # far off target: the score that flattened the axis
    view = campaign_view(trials, {}, {"objective": TARGET.model_dump()})
    fig = plots.convergence_figure(list(view.trials), list(view.best), view.lab_clock_h,
                                   view.targets)
    score_ax = fig.axes[0]
    assert score_ax.get_yscale() == "symlog"
    assert score_ax.yaxis.get_transform().linthresh >= 1.0  # type: ignore[attr-defined]
    best_line = next(ln for ln in score_ax.get_lines() if "best" in str(ln.get_label()))
    # best so far: exp-000 (only scored one), then exp-002 in band; exp-003 is brighter but
    # outside 550 ± 2, exp-004 in band and brighter than exp-002
    assert np.asarray(best_line.get_ydata()).tolist() == pytest.approx(
        [trials[0].objective, trials[0].objective, trials[2].objective, trials[2].objective,
         trials[4].objective, trials[4].objective])
    in_band_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "QY in band (%)")
    step = next(ln for ln in in_band_ax.get_lines() if ln.get_label() == "best in band")
    assert np.asarray(step.get_xdata()).tolist() == [2.0, 3.0, 4.0, 5.0]
    assert np.asarray(step.get_ydata()).tolist() == pytest.approx([30.0, 30.0, 35.0, 35.0])
    pl_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "PL peak (nm)")
    band = pl_ax.patches[0].get_path().get_extents(pl_ax.patches[0].get_patch_transform())
    assert (band.y0, band.y1) == pytest.approx((548.0, 552.0))
    assert set(_status_markers(pl_ax)) == {"failed (chemistry)",
                                           "invalid (not told to the optimizer)"}
    for ax in fig.axes:  # every experiment, with a result or not, lies inside every panel
        lo, hi = ax.get_xlim()
        xs = [float(t.index) for t in trials] if "lab" not in ax.get_xlabel() else view.lab_clock_h
        assert lo < min(xs) and max(xs) < hi


def test_model_fit_has_error_bars_per_outcome() -> None:
    points = {"qy": [FitPoint(0, 0.30, 0.02, 0.31), FitPoint(1, 0.40, 0.05, 0.20)],
              "pl_peak_nm": [FitPoint(0, 551.0, 1.5, 550.0), FitPoint(1, 560.0, 2.0, 558.0)],
              "objective": [FitPoint(1, -1.0, 0.5, -1.2)]}
    fig = plots.model_fit_figure(points)
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split(":")[0] for t in titles] == ["objective", "pl_peak_nm", "qy"]
    qy_ax = fig.axes[2]
    container = qy_ax.containers[0]
    data_line, _caps, (bars,) = container.lines  # type: ignore[attr-defined]
    # measured on x, predicted on y, both in %
    assert np.asarray(data_line.get_xdata()).tolist() == pytest.approx([31.0, 20.0])
    assert np.asarray(data_line.get_ydata()).tolist() == pytest.approx([30.0, 40.0])
    heights = [seg[1][1] - seg[0][1] for seg in bars.get_segments()]
    assert heights == pytest.approx([4 * 2.0, 4 * 5.0])  # +- 2 sd, sd in % as well
    assert "within 2 sd 50 %" in titles[2]
    assert plots.model_fit_figure({}).axes[0].get_title() == "no model predictions yet"


def test_lab_clock_and_reagents_come_from_the_journal() -> None:
    trials = [build_trial(0), build_trial(1, TrialStatus.FAILED), build_trial(2)]
    extras = {0: {"lab_clock_h": 1.2, "reagent_total_ml": {"InCl3": 2.5, "solvent": 1.0}},
              1: {"lab_clock_h": 5.648, "reagent_total_ml": {"InCl3": 4.0, "solvent": 3.0}},
              # an older journal: totals as metrics
              2: {"lab_clock_h": 7.5, "metrics": {"reagent_total_ml.InCl3": 6.5,
                                                  "reagent_total_ml.solvent": 4.5}}}
    acc = lab_accounts(trials, extras)
    # the failed experiment clogged after hours of flow: the clock is the executor's, not the
    # previous measurement's (the old report said 1.2 h here, MLflow 5.648 h)
    assert [a.lab_clock_h for a in acc] == pytest.approx([1.2, 5.648, 7.5])
    assert [a.experiment_lab_h for a in acc] == pytest.approx([1.2, 4.448, 1.852])
    assert acc[1].reagent_ml == pytest.approx({"InCl3": 1.5, "solvent": 2.0})
    assert acc[2].reagent_total_ml == pytest.approx({"InCl3": 6.5, "solvent": 4.5})
    # without journaled totals: the measurement's own volumes, summed into a running total
    plain = lab_accounts(trials)
    assert [a.lab_clock_h for a in plain] == pytest.approx([1.2, 1.2, 4.2])
    assert plain[2].reagent_total_ml == pytest.approx({"InCl3 stock": 5.0, "ZnS/TOP": 2.0})
    assert plain[1].reagent_ml == {}
    view = campaign_view(trials, extras, {"objective": TARGET.model_dump()})
    assert [r["lab_clock_h"] for r in view.rows] == pytest.approx([1.2, 5.648, 7.5])
    assert [r["reagent_total_ml"] for r in view.rows] == pytest.approx([3.5, 7.0, 11.0])


def test_hypervolume_and_front_by_hand() -> None:
    assert hypervolume([(1.0, 1.0)], (0.0, 0.0)) == pytest.approx(1.0)
    assert hypervolume([(2.0, 1.0), (1.0, 2.0)], (0.0, 0.0)) == pytest.approx(3.0)
    assert hypervolume([(2.0, 1.0, 1.0), (1.0, 2.0, 1.0)], (0.0, 0.0, 0.0)) == pytest.approx(3.0)
    assert hypervolume([(1.0, 1.0, 1.0), (0.5, 0.5, 2.0)], (0.0, 0.0, 0.0)) == pytest.approx(1.25)
    assert hypervolume([(-1.0, 5.0)], (0.0, 0.0)) == 0.0  # not better than the reference
    assert non_dominated([(1, 2), (2, 1), (1, 1), (2, 1)]) == [True, True, False, True]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 10.0)), min_size=1, max_size=8),
       st.integers(0, 7))
def test_hypervolume_is_monotone_and_order_free(points: list[tuple[float, float]],
                                                k: int) -> None:
    ref = (-1.0, -1.0)
    full = hypervolume(points, ref)
    assert hypervolume(points[: k + 1], ref) <= full + 1e-9
    assert hypervolume(list(reversed(points)), ref) == pytest.approx(full)
    front = [p for p, keep in zip(points, non_dominated(points), strict=True) if keep]
    assert hypervolume(front, ref) == pytest.approx(full)  # dominated points add nothing
    box = max((p[0] + 1) * (p[1] + 1) for p in points)
    assert box - 1e-9 <= full <= 11 * 11


def _pareto_trials() -> list[Trial]:
    a = _with(build_trial(0), PARETO, pl_peak_nm=550.0, qy=0.40, fwhm_nm=55.0)
    b = _with(build_trial(1), PARETO, pl_peak_nm=560.0, qy=0.30, fwhm_nm=48.0,
              flags=QualityFlag.NOT_STEADY)
    c = _with(build_trial(2), PARETO, pl_peak_nm=555.0, qy=0.25, fwhm_nm=56.0)  # dominated
    d = _with(build_trial(3), PARETO, pl_peak_nm=600.0, qy=0.60, fwhm_nm=40.0)  # infeasible
    a = replace(a, conditions={**a.conditions, "t_core_c": 160.0})  # at the catalog's lower bound
    return [a, b, c, d, build_trial(4, TrialStatus.FAILED)]


def test_pareto_front_hypervolume_and_warnings() -> None:
    trials = _pareto_trials()
    config = {"objective": PARETO.model_dump(), "space": {"parameters": ["t_core_c", "t_shell_c"]}}
    bounds = search_bounds(config)
    assert bounds == {"t_core_c": (160.0, 220.0, False), "t_shell_c": (250.0, 320.0, False)}
    summary = pareto_summary(trials, PARETO, bounds)
    assert summary is not None
    assert summary.front == (0, 1)
    assert set(summary.utilities) == {0, 1, 2}  # exp-003 breaks 540 <= PL <= 580
    hv = summary.hypervolume
    assert len(hv) == 5 and hv[0] > 0 and hv[1] > hv[0] and hv[2] == hv[1] == hv[4]
    # the same value by hand: utilities (qy/0.1, -fwhm/10), reference nadir - 10 % of the range
    ref = summary.ref_point
    assert ref == pytest.approx((3.0 - 0.1, -5.5 - 0.07))
    assert hv[-1] == pytest.approx(hypervolume([(4.0, -5.5), (3.0, -4.8)], ref))
    single = reference_point(PARETO, [(4.0, -5.5)])  # BoTorch's rule: 10 % of the magnitude
    assert single == pytest.approx((3.6, -6.05))
    # (0, -4) dominates (0, -5); a zero coordinate steps back BoTorch's 1e-9 only
    assert reference_point(PARETO, [(0.0, -5.0), (0.0, -4.0)]) == pytest.approx((-1e-9, -4.4))
    assert any("exp-000" in w and "lower bound of t_core_c (160 °C)" in w
               for w in summary.warnings)
    assert any("exp-001" in w and "not_steady" in w for w in summary.warnings)
    assert not any("exp-002" in w for w in summary.warnings)
    assert pareto_summary(trials, TARGET) is None  # a scalar campaign has no front


def test_pareto_figure_marks_members_and_the_constraint_band() -> None:
    trials = _pareto_trials()
    summary = pareto_summary(trials, PARETO, {})
    assert summary is not None
    fig = plots.pareto_figure(trials, summary, PARETO)
    front_ax, band_ax, hv_ax = fig.axes
    red = next(c for c in front_ax.collections if str(c.get_label()).startswith("Pareto front"))
    got = np.asarray(sorted(map(tuple, np.asarray(red.get_offsets()))))
    assert got == pytest.approx(np.asarray([(48.0, 30.0), (55.0, 40.0)]))  # (FWHM nm, QY %)
    gray = next(c for c in front_ax.collections if str(c.get_label()).startswith("breaks"))
    assert np.asarray(gray.get_offsets()).tolist() == [[40.0, 60.0]]
    assert {t.get_text() for t in front_ax.texts} == {"exp-000", "exp-001"}
    span = band_ax.patches[0].get_path().get_extents(band_ax.patches[0].get_patch_transform())
    assert (span.x0, span.x1) == pytest.approx((540.0, 580.0))
    hv_line = hv_ax.get_lines()[0]
    assert np.asarray(hv_line.get_ydata()).tolist() == pytest.approx(list(summary.hypervolume))
    figs = plots.campaign_figures(trials, [None] * 5, [0.0] * 5, objective=PARETO,
                                  pareto=summary)
    assert "pareto_front" in figs
    assert "pareto_front" not in plots.campaign_figures(trials, [None] * 5, [0.0] * 5,
                                                        objective=TARGET, pareto=None)


def _journal(path: Path, trials: list[Trial], extras: dict[int, Any],
             objective: ObjectiveSpec) -> None:
    header = JournalHeader.new("green-550", {"objective": objective.model_dump(),
                                             "space": {"parameters": ["t_core_c"]}}, seed=1)
    with Journal.create(path, header) as j:
        for t in trials:
            j.append_started(t.index, t.conditions, t.proposal_time_s)
            j.append_trial(t, extra=extras.get(t.index, {}))
        j.append_stopped("target reached")


def test_report_shows_what_mlflow_shows(tmp_path: Path) -> None:
    trials = [build_trial(0), build_trial(1, TrialStatus.FAILED),
              _with(build_trial(2), pl_peak_nm=550.8, qy=0.33),
              build_trial(3, TrialStatus.INVALID)]
    pred = {"score_mean": 0.5, "score_sd": 0.4,
            "outcomes": {"pl_peak_nm": [551.0, 1.0], "qy": [0.3, 0.02], "fwhm_nm": [57.0, 1.0]}}
    extras = {0: {"lab_clock_h": 1.2}, 1: {"lab_clock_h": 5.648},
              2: {"lab_clock_h": 7.0, "prediction": pred}, 3: {"lab_clock_h": 8.0}}
    _journal(tmp_path / "journal.jsonl", trials, extras, TARGET)
    state = Journal.read(tmp_path / "journal.jsonl")
    files = {p.name for p in write_report(state, tmp_path / "report")}
    assert files == {"summary.md", "trials.html", "trials.csv", "convergence.png",
                     "parameters_vs_outcomes.png", "model_fit.png", "best_spectrum.png"}
    page = (tmp_path / "report" / "trials.html").read_text(encoding="utf-8")
    assert "Target bands: pl_peak_nm 550 ± 2" in page
    assert '<tr class="best"><td class="t">exp-002</td>' in page
    assert '<tr class="invalid"><td class="t">exp-003</td>' in page
    assert "1 invalid (orange rows, not told to the optimizer)" in page
    table = list(csv.DictReader(io.StringIO((tmp_path / "report" / "trials.csv").read_text())))
    assert float(table[1]["lab_clock_h"]) == pytest.approx(5.648)  # the journaled clock
    assert float(table[1]["experiment_lab_h"]) == pytest.approx(4.448)
    assert table[2]["in_band"] == "1" and table[0]["in_band"] == "0"
    md = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    assert "- best: exp-002 with PL 550.8 nm" in md
    assert "- target band: pl_peak_nm 550 ± 2" in md
    assert "- lab clock: 8.000 h" in md
    # the MLflow HTML table is built from the same rows: same columns, same cells
    view = campaign_view(state.finished(), state.extras, state.header.config)
    mlflow_rows = summary_rows(list(view.trials), list(view.best), view.lab_clock_h,
                               objective=view.objective, accounts=view.accounts)
    assert list(mlflow_rows[0]) == list(table[0])


def test_report_of_a_pareto_campaign_draws_the_front(tmp_path: Path) -> None:
    trials = _pareto_trials()
    _journal(tmp_path / "journal.jsonl", trials, {}, PARETO)
    files = {p.name for p in write_report(Journal.read(tmp_path / "journal.jsonl"),
                                          tmp_path / "report")}
    assert "pareto_front.png" in files
    table = list(csv.DictReader(io.StringIO((tmp_path / "report" / "trials.csv").read_text())))
    assert [r["pareto_front"] for r in table] == ["1", "1", "0", "", ""]
    assert float(table[-1]["hypervolume"]) > 0
    md = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8")
    assert "- Pareto front: exp-000, exp-001; hypervolume" in md
    assert "warning: exp-001 on the front is flagged not_steady" in md


def test_campaign_figures_without_any_result_render_quietly() -> None:
    import warnings

    trials = [build_trial(0, TrialStatus.FAILED), build_trial(1, TrialStatus.INVALID)]
    view = campaign_view(trials, {}, {"objective": PARETO.model_dump()})
    assert view.pareto is not None and view.pareto.front == ()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "no artists with labels"
        figs = plots.campaign_figures(list(view.trials), list(view.best), view.lab_clock_h,
                                      objective=view.objective, pareto=view.pareto)
        assert set(figs) == {"convergence", "parameters_vs_outcomes", "pareto_front"}
        for fig in figs.values():
            assert plots.figure_png(fig).startswith(PNG)


# ---- fixed layouts: cheap to render, nothing clipped or overlapping ------------------------------
def _assert_laid_out(fig: Figure) -> None:
    """Every panel's labels, ticks and texts lie inside the figure and clear of other panels.

    The figures place their panels from fixed margins (no constrained layout, which cost a
    second, dry draw per save), so this is what a layout engine would otherwise guarantee.
    """
    fig.canvas.draw()
    fig.canvas.draw()  # lays out the tick labels the x labels sit under
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    page = fig.bbox
    boxes = [(ax, ax.get_tightbbox(renderer)) for ax in fig.axes]
    texts = [t for t in fig.texts if t.get_text()]  # the suptitle is one of them
    for owner, box in [*boxes, *((None, t.get_window_extent(renderer)) for t in texts)]:
        assert box is not None
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1, (owner, box, page)
        assert page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, (owner, box, page)
        for ax in fig.axes:  # nothing of one panel (or of the figure's texts) on another panel
            if ax is not owner:
                assert not box.overlaps(ax.bbox), (owner, ax, box, ax.bbox)
    for i, (a, box_a) in enumerate(boxes):  # panels' labels never run into each other
        for b, box_b in boxes[i + 1:]:
            shared = a.get_shared_x_axes().joined(a, b) or a.get_shared_y_axes().joined(a, b)
            if not shared:
                assert box_a is not None and box_b is not None
                assert not box_a.overlaps(box_b), (a, b, box_a, box_b)


def test_every_figure_keeps_its_labels_inside_and_apart() -> None:
    far = _with(build_trial(0), pl_peak_nm=610.0)  # a -388 score: the widest tick labels
    trials = [far, build_trial(1, TrialStatus.FAILED), _with(build_trial(2), pl_peak_nm=550.5),
              build_trial(3, TrialStatus.INVALID), build_trial(4, TrialStatus.INTERRUPTED),
              build_trial(5)]
    view = campaign_view(trials, {}, {"objective": TARGET.model_dump()})
    points = {"objective": [FitPoint(0, -380.0, 30.0, far.objective or 0.0),
                            FitPoint(2, -1.0, 0.5, -0.8)],
              "qy": [FitPoint(2, 0.30, 0.02, 0.31)], "pl_peak_nm": [FitPoint(2, 551, 1, 550.5)]}
    figs = [*plots.campaign_figures(list(view.trials), list(view.best), view.lab_clock_h,
                                    targets=view.targets, fit_points=points).values(),
            plots.prediction_figure([(-380.0, 30.0, -388.0), (0.1, 0.05, 0.12)])]
    near = campaign_view([build_trial(0), build_trial(2)], {}, {"objective": TARGET.model_dump()})
    # every score within the symlog axis's linear range: its ends get labels like -8.42x10^-1
    figs.append(plots.convergence_figure(list(near.trials), list(near.best), near.lab_clock_h))
    assert "times10" in figs[-1].axes[0].yaxis.get_major_formatter().format_ticks(
        list(figs[-1].axes[0].get_ylim()))[0]
    pareto_trials = _pareto_trials()
    summary = pareto_summary(pareto_trials, PARETO, search_bounds(
        {"space": {"parameters": ["t_core_c", "t_shell_c"]}}))
    assert summary is not None and len(summary.warnings) == 2
    figs.append(plots.pareto_figure(pareto_trials, summary, PARETO))
    saturated = build_trial(6)
    assert saturated.measurement is not None
    spectra = replace(saturated.measurement.spectra,
                      pl_counts=saturated.measurement.spectra.pl_counts * 2.1)  # ~63000 counts
    failed = replace(saturated, status=TrialStatus.INVALID, error="device fault: " + "x" * 120,
                     measurement=replace(saturated.measurement, spectra=spectra))
    spectra_figs = [plots.spectrum_figure(trials[2], view.targets), plots.spectrum_figure(failed)]
    figs += [f for f in spectra_figs if f is not None]
    assert len(figs) == 8 and "\n" in figs[-1].texts[0].get_text()  # a two-line title
    for fig in figs:
        assert fig.get_layout_engine() is None  # fixed: no second, dry draw when saved
        _assert_laid_out(fig)


def _pixels(fig: Figure) -> np.ndarray[Any, Any]:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()  # type: ignore[attr-defined]


def test_a_pooled_grid_draws_the_same_picture_as_a_new_one() -> None:
    """The tracker draws the parameter grid into the previous refresh's figure: same pixels."""
    pool = plots.FigurePool()
    wide = [build_trial(0), build_trial(1, TrialStatus.FAILED), build_trial(2),
            build_trial(3, TrialStatus.INVALID), build_trial(4, TrialStatus.INTERRUPTED),
            _with(build_trial(5), pl_peak_nm=700.0, qy=0.9)]
    first = plots.parameters_vs_outcomes_figure(wide, targets={"pl_peak_nm": (550.0, 2.0)},
                                                pool=pool)
    assert len(pool) == 0
    pool.give_back([first])
    pool.give_back([first, plots.parameters_vs_outcomes_figure(wide)])  # twice; one unknown
    assert len(pool) == 1  # once, and only figures built with the pool
    # narrower limits, no band, one kind of status marker of three (a title of as many lines:
    # the grid's shape includes the room its title takes)
    narrow = [build_trial(1), build_trial(2), build_trial(3, TrialStatus.FAILED)]
    again = plots.parameters_vs_outcomes_figure(narrow, pool=pool)
    assert again is first and len(pool) == 0
    assert np.array_equal(_pixels(again), _pixels(plots.parameters_vs_outcomes_figure(narrow)))
    pool.give_back([again])
    other_shape = [replace(t, conditions={"t_core_c": t.conditions["t_core_c"]}) for t in wide]
    assert plots.parameters_vs_outcomes_figure(other_shape, pool=pool) is not first
    assert len(pool) == 1  # a grid of another shape is built anew; this one stays pooled
    small = plots.FigurePool(size=1)
    figs = [plots.parameters_vs_outcomes_figure(wide[:n], pool=small) for n in (1, 2)]
    small.give_back(figs)
    assert len(small) == 1 and small.take(("nothing",)) is None
