"""Steady-state detection on a synthetic washout, and the stand-alone building blocks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_synth import WL, Case, line, measurement

from autolab.analysis import (
    absorbance,
    absorbance_at,
    analyze,
    dark_subtract,
    exciton_peak,
    fwhm,
    is_steady,
    pl_peak,
    relative_qy,
    smooth,
    steady_state,
)
from autolab.exceptions import SpectrumError
from autolab.records import QualityFlag, SpectralTrace


def washout(times: np.ndarray, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Frames whose peak relaxes 570 -> 560 nm and intensity 0.5 -> 1 with time constant tau."""
    frames = []
    for t in times:
        k = math.exp(-t / tau)
        y = 20000 * (1 - 0.5 * k) * line(WL, 560 + 10 * k, 50 + 6 * k)
        frames.append(1000 + y + rng.standard_normal(WL.size) * np.sqrt(100 + y))
    return np.array(frames)


def test_washout_becomes_steady_after_the_transient():
    rng = np.random.default_rng(0)
    t = np.arange(0.0, 30.0, 1.0)
    frames = washout(t, tau=3.0, rng=rng)
    st = steady_state(WL, t, frames, np.full(WL.size, 1000.0), excitation_nm=365.0)
    assert st.steady, st.reason
    # 10 nm * exp(-t/3) < 0.5 nm after ~9 min; intensity within 2 % after ~10 min
    assert 6.0 <= st.since_min <= 16.0
    assert st.peak_nm.shape == t.shape


def test_transient_is_not_steady():
    rng = np.random.default_rng(1)
    t = np.arange(0.0, 8.0, 1.0)
    frames = washout(t, tau=3.0, rng=rng)
    st = steady_state(WL, t, frames, np.full(WL.size, 1000.0), excitation_nm=365.0)
    assert not st.steady and math.isnan(st.since_min)
    assert "drift" in st.reason
    assert not is_steady(WL, t, frames, np.full(WL.size, 1000.0), excitation_nm=365.0)


def test_not_steady_trace_sets_flag_in_analyze():
    rng = np.random.default_rng(2)
    m, _ = measurement(Case(), rng)
    t = np.arange(0.0, 8.0, 1.0)
    from dataclasses import replace
    m2 = replace(m, trace=SpectralTrace(times_min=t, pl_counts=washout(t, 3.0, rng)))
    assert QualityFlag.NOT_STEADY in analyze(m2).flags
    assert QualityFlag.NOT_STEADY not in analyze(m).flags


def test_steady_state_rejects_bad_times():
    frames = washout(np.arange(5.0), 3.0, np.random.default_rng(3))
    with pytest.raises(SpectrumError, match="times_min"):
        steady_state(WL, [0, 1, 1, 2, 3], frames, excitation_nm=365.0)


def test_absorbance_guards_non_positive_denominators():
    blank = np.array([[2000.0, 1000.0, 1100.0, 900.0]] * 1)
    sample = np.array([[1100.0, 1000.0, 1050.0, 1000.0]])
    a = absorbance(sample, blank, np.full(4, 1000.0))
    assert a[0, 0] == pytest.approx(1.0)
    assert np.isnan(a[0, 1]) and np.isnan(a[0, 3])  # blank - dark <= 0, sample - dark <= 0
    assert a[0, 2] == pytest.approx(-np.log10(50 / 100))
    np.testing.assert_array_equal(dark_subtract([[3.0, 4.0]], [1.0, 1.0]), [[2.0, 3.0]])


def test_smooth_preserves_a_parabola_and_shape():
    x = np.linspace(-1, 1, 101)
    y = np.vstack([x**2, 3 - x**2])
    np.testing.assert_allclose(smooth(y, 11, 2), y, atol=1e-12)


def test_building_blocks_on_a_clean_line():
    y = 1000 + 20000 * line(WL, 570.0, 48.0)
    dark = np.full(WL.size, 1000.0)
    pk = pl_peak(WL, y, dark, min_nm=385.0)
    w = fwhm(WL, y, dark, min_nm=385.0)
    assert pk.peak_nm[0] == pytest.approx(570.0, abs=0.05)
    assert w.fwhm_nm[0] == pytest.approx(48.0, abs=0.3)  # FWHM of a Gaussian in energy ~ 48 nm
    assert w.width_ratio[0] == pytest.approx(1.0, abs=0.05)


def test_exciton_and_absorbance_at_on_a_clean_curve():
    e = 1239.84 / WL
    a = 0.02 + 0.1 * np.exp(-0.5 * ((e - 1239.84 / 520) / 0.07) ** 2)
    ex = exciton_peak(WL, a)
    assert ex.found[0] and ex.peak_nm[0] == pytest.approx(520.0, abs=1.0)
    v = absorbance_at(WL, a, 400.0)
    assert v.value[0] == pytest.approx(float(np.interp(400.0, WL, a)), abs=1e-3)


def test_relative_qy_equation():
    one = np.ones(1)
    r = relative_qy(one * 50, one * 0, one * 100, one * 0, a_ex=one * 0.1, a_ex_err=one * 0,
                    reference_qy=one * 0.95, reference_absorbance=one * 0.05,
                    reference_index=one * 1.361, sample_index=one * 1.444)
    want = 0.95 * 0.5 * (1 - 10**-0.05) / (1 - 10**-0.1) * 1.444**2 / 1.361**2
    assert r.qy[0] == pytest.approx(want, rel=1e-12)
    bad = relative_qy(one * 50, one, one * 100, one, a_ex=one * -0.1, a_ex_err=one,
                      reference_qy=one, reference_absorbance=one * 0.05,
                      reference_index=one, sample_index=one)
    assert np.isnan(bad.qy[0])


def test_the_calibration_error_adds_in_quadrature_to_the_statistical_one():
    one = np.ones(1)
    kw = {"a_ex": one * 0.1, "a_ex_err": one * 0, "reference_qy": one * 0.95,
          "reference_absorbance": one * 0.05, "reference_index": one, "sample_index": one}
    # sample integral 100 ± 3 (3 % relative), dye exact
    stat = relative_qy(one * 100, one * 9, one * 200, one * 0, **kw)
    both = relative_qy(one * 100, one * 9, one * 200, one * 0, calibration_rel=0.04, **kw)
    assert both.qy[0] == stat.qy[0]
    assert stat.qy_err[0] == pytest.approx(0.03 * stat.qy[0], rel=1e-12)
    assert both.qy_err[0] == pytest.approx(0.05 * stat.qy[0], rel=1e-12)  # hypot(3 %, 4 %)


def test_a_stated_qy_sd_restated_with_another_calibration_is_the_analyzers_own():
    """restated_qy_err swaps the calibration part of relative_qy's quadrature and keeps the
    statistical part: restating 4 % as 0 gives the statistical sd, 0 as 4 % the analyzer's."""
    from autolab.analysis.qy import restated_qy_err

    one = np.ones(1)
    kw = {"a_ex": one * 0.1, "a_ex_err": one * 0, "reference_qy": one * 0.95,
          "reference_absorbance": one * 0.05, "reference_index": one, "sample_index": one}
    stat = relative_qy(one * 100, one * 9, one * 200, one * 0, **kw)
    both = relative_qy(one * 100, one * 9, one * 200, one * 0, calibration_rel=0.04, **kw)
    qy, s0, s4 = float(stat.qy[0]), float(stat.qy_err[0]), float(both.qy_err[0])
    assert restated_qy_err(qy, s4, stated_rel=0.04, rel=0.0) == pytest.approx(s0, rel=1e-12)
    assert restated_qy_err(qy, s0, stated_rel=0.0, rel=0.04) == pytest.approx(s4, rel=1e-12)
    assert restated_qy_err(qy, s4, stated_rel=0.04, rel=0.04) == pytest.approx(s4, rel=1e-12)


def test_exciton_shoulder_without_a_maximum_reports_the_band_centre():
    e = 1239.84 / WL
    e0 = 1239.84 / 520
    a = 0.02 + 0.03 * np.exp((e - e0) / 0.12) + 0.04 * np.exp(-0.5 * ((e - e0) / 0.07) ** 2)
    assert not np.any((a[1:-1] > a[:-2]) & (a[1:-1] >= a[2:]))  # no visible maximum at all
    ex = exciton_peak(WL, a)
    assert ex.found[0] and ex.shoulder[0]
    assert ex.peak_nm[0] == pytest.approx(520.0, abs=3.0)


def test_exciton_peak_is_the_maximum_not_the_band_centre():
    """On a rising continuum the band's maximum is blue of its centre; the maximum is reported."""
    e = 1239.84 / WL
    e0 = 1239.84 / 520
    a = 0.02 * np.exp((e - e0) / 0.2) + 0.05 * np.exp(-0.5 * ((e - e0) / 0.08) ** 2)
    fine = np.linspace(480, 540, 60001)
    ef = 1239.84 / fine
    af = 0.02 * np.exp((ef - e0) / 0.2) + 0.05 * np.exp(-0.5 * ((ef - e0) / 0.08) ** 2)
    top = float(fine[np.argmax(af)])
    assert top < 518.0  # the continuum pulls the maximum blue of 520 nm
    ex = exciton_peak(WL, a)
    assert ex.found[0] and not ex.shoulder[0]
    assert ex.peak_nm[0] == pytest.approx(top, abs=0.5)
