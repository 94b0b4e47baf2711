"""Accuracy and calibrated uncertainties of the analyzer on synthetic spectra with known truth."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_synth import WL, Case, expected_line, frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autolab.analysis import AnalyzerSettings, extract_features_batch
from autolab.records import QualityFlag

CLEAN_OK = int(QualityFlag.NO_ABS_PEAK)  # the exciton search may miss a weak band: not an error


#: Both ways of locating the line: on the observed emission and on the inner-filter-corrected one;
#: the QY sigma statistical only (these frames carry no calibration error: see
#: test_qy_sigma_holds_a_calibration_error_the_frames_cannot_show).
BOTH = [AnalyzerSettings(peak_inner_filter=False, qy_calibration_rel=0.0),
        AnalyzerSettings(peak_inner_filter=True, qy_calibration_rel=0.0)]


def run(case: Case, n: int, seed: int, settings: AnalyzerSettings | None = None,
        drift_rel: float = 0.0):
    fr, truth = frames(case, np.random.default_rng(seed), n, drift_rel=drift_rel)
    fb = extract_features_batch(WL, **fr, excitation_nm=case.excitation_nm,
                                saturation_counts=case.saturation, qy_reference=truth.reference,
                                settings=settings)
    return fb, truth


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(peak=st.floats(480, 650), width=st.floats(30, 80), asym=st.floats(-0.1, 0.1),
       height=st.floats(5000, 40000), qy=st.floats(0.05, 0.9), a_ex=st.floats(0.05, 0.5),
       gain=st.floats(0.2, 1.0), seed=st.integers(0, 2**31))
def test_peak_fwhm_qy_within_tolerance(peak, width, asym, height, qy, a_ex, gain, seed):
    case = Case(peak_nm=peak, fwhm_nm=width, asym=asym, height=height, qy=qy, a_ex=a_ex,
                gain=gain, exciton_nm=min(peak - 40, 600), dye_height=30000)
    fb, truth = run(case, 4, seed)
    peak_nm, fwhm_nm = expected_line(truth)
    assert np.all((fb.flags & ~CLEAN_OK) == 0), [QualityFlag(int(f)).names() for f in fb.flags]
    assert np.max(np.abs(fb.pl_peak_nm - peak_nm)) <= 0.5
    assert np.max(np.abs(fb.fwhm_nm - fwhm_nm)) <= 1.0
    assert np.max(np.abs(fb.qy / truth.qy - 1)) <= 0.05
    assert np.all(fb.pl_snr > 20)


@pytest.mark.parametrize("case", [
    Case(peak_nm=500, fwhm_nm=32, height=6000, qy=0.6, a_ex=0.08, exciton_nm=470),
    Case(peak_nm=580, fwhm_nm=55, height=20000, qy=0.3, a_ex=0.2, asym=0.08),
    Case(peak_nm=640, fwhm_nm=78, height=9000, qy=0.15, a_ex=0.4, exciton_nm=600, gain=0.5),
])
@pytest.mark.parametrize("s", BOTH, ids=["observed", "inner-filter-corrected"])
def test_uncertainties_are_calibrated(case: Case, s: AnalyzerSettings):
    fb, truth = run(case, 300, seed=11, settings=s)
    peak_nm, fwhm_nm = expected_line(truth, s)
    for value, err, true in ((fb.pl_peak_nm, fb.pl_peak_nm_err, peak_nm),
                             (fb.fwhm_nm, fb.fwhm_nm_err, fwhm_nm),
                             (fb.qy, fb.qy_err, truth.qy)):
        scatter = float(np.sqrt(np.mean((value - true) ** 2)))  # includes any bias
        predicted = float(np.median(err))
        assert 0.5 <= scatter / predicted <= 2.0, (scatter, predicted)


@pytest.mark.parametrize("drift_rel", [0.03, 0.05, 0.08])
def test_qy_sigma_holds_a_calibration_error_the_frames_cannot_show(drift_rel: float):
    """Excitation drift between the sample and dye frames scales the QY; no frame shows it, so
    only the calibration term covers it. With the default (5 %) the stated sigma holds drifts
    of 3-8 % (the benchmark family's 2-8 %) within a factor 2, and 0.95 of the readings within
    2 sigma at 5 %; with the term off the sigma is the statistical one, several times short."""
    case = Case(peak_nm=580, fwhm_nm=55, height=20000, qy=0.3, a_ex=0.2)
    fb, truth = run(case, 400, seed=13, drift_rel=drift_rel)
    z = (fb.qy - truth.qy) / fb.qy_err
    assert 0.5 <= float(np.std(z)) <= 2.0, float(np.std(z))
    if drift_rel == 0.05:
        assert abs(float(np.mean(z))) < 0.15
        assert float(np.mean(np.abs(z) <= 2.0)) >= 0.93
    bare, _ = run(case, 400, seed=13, settings=BOTH[1], drift_rel=drift_rel)
    assert float(np.std((bare.qy - truth.qy) / bare.qy_err)) > 2.5
    assert np.allclose(bare.qy, fb.qy)  # the term changes the sigma, never the value


def test_exciton_found_near_truth_with_calibrated_error():
    case = Case(exciton_nm=540, a_exciton=0.1, a_ex=0.2, peak_nm=575)
    fb, truth = run(case, 200, seed=5)
    found = np.isfinite(fb.abs_peak_nm)
    assert found.mean() > 0.9
    d = fb.abs_peak_nm[found] - truth.exciton_nm  # the band's absorbance maximum
    assert abs(float(np.median(d))) < 0.5
    scatter, predicted = float(np.std(d)), float(np.median(fb.abs_peak_nm_err[found]))
    assert 0.5 <= scatter / predicted <= 2.0, (scatter, predicted)


def test_absorbance_at_excitation_matches_truth():
    case = Case(a_ex=0.3)
    fb, truth = run(case, 100, seed=3)
    d = fb.absorbance_at_excitation - truth.a_ex
    assert abs(float(np.mean(d))) < 0.002
    assert np.all(np.abs(d) < 0.01)


@pytest.mark.parametrize("s", BOTH, ids=["observed", "inner-filter-corrected"])
def test_noise_free_spectrum_is_exact_to_a_fraction_of_a_pixel(s: AnalyzerSettings):
    case = Case(peak_nm=555, fwhm_nm=45, read_noise=0.0, gain=0.0)
    fb, truth = run(case, 1, seed=0, settings=s)
    peak_nm, fwhm_nm = expected_line(truth, s)
    assert abs(fb.pl_peak_nm[0] - peak_nm) < 0.05
    assert abs(fb.fwhm_nm[0] - fwhm_nm) < 0.1
    assert abs(fb.qy[0] / truth.qy - 1) < 0.005
