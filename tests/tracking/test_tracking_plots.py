"""Figures, summary table and parameter flattening: pure functions, no MLflow."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from autolab.records import QualityFlag, Trial, TrialStatus
from autolab.tracking import plots
from autolab.tracking.base import flatten_params, git_commit, safe_key
from autolab.tracking.summary import (
    best_so_far,
    lab_clocks,
    summary_rows,
    to_csv,
    to_markdown,
)

from .conftest import TrialFactory, make_spectra

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
