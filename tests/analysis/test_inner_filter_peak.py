"""The PL peak and FWHM located on the inner-filter-corrected emission (``peak_inner_filter``).

The product's own absorbance dims the blue side of its emission more than the red, so the
maximum of the observed line lies red of the emitted one. With the switch on the analyzer
multiplies the emission by ``10^(A/2)`` before locating the line; where the absorbance cannot
correct it, it keeps the observed line and says so with a flag.
"""

from __future__ import annotations

import numpy as np
import pytest
from analysis_synth import WL, Case, expected_line, frames

from autolab.analysis import AnalyzerSettings, analyze, extract_features_batch
from autolab.exceptions import ConfigError
from autolab.records import QualityFlag

ON = AnalyzerSettings(peak_inner_filter=True)
OFF = AnalyzerSettings(peak_inner_filter=False)
NONLIN = int(QualityFlag.ABSORBANCE_NONLINEAR)
INVALID = int(QualityFlag.INVALID_INPUT)


def _features(fr: dict[str, np.ndarray], case: Case, truth, settings: AnalyzerSettings):
    return extract_features_batch(WL, **fr, excitation_nm=case.excitation_nm,
                                  saturation_counts=case.saturation,
                                  qy_reference=truth.reference, settings=settings)


def test_corrected_peak_is_the_emitted_line_and_observed_stays_red():
    # a strongly absorbing sample whose exciton sits just blue of the line: a large red pull
    case = Case(peak_nm=560, fwhm_nm=45, a_ex=0.5, exciton_nm=530, a_exciton=0.15)
    fr, truth = frames(case, np.random.default_rng(4), 200)
    on, off = _features(fr, case, truth, ON), _features(fr, case, truth, OFF)
    pull = truth.peak_nm - truth.emitted_peak_nm
    assert pull > 0.3  # the case really has a bias to remove
    assert abs(float(np.mean(off.pl_peak_nm)) - truth.peak_nm) < 0.05
    assert abs(float(np.mean(on.pl_peak_nm)) - truth.emitted_peak_nm) < 0.05
    assert abs(float(np.mean(on.fwhm_nm)) - truth.emitted_fwhm_nm) < 0.2
    # the stated errors stay honest (the calibration tests check that in detail)
    for value, err, true in ((on.pl_peak_nm, on.pl_peak_nm_err, truth.emitted_peak_nm),
                             (on.fwhm_nm, on.fwhm_nm_err, truth.emitted_fwhm_nm)):
        ratio = float(np.sqrt(np.mean((value - true) ** 2)) / np.median(err))
        assert 0.5 <= ratio <= 2.0, ratio
    # the QY integral applies its own factor either way: only its window moves
    np.testing.assert_allclose(on.qy, off.qy, rtol=2e-3)
    assert np.array_equal(on.flags, off.flags)


def test_without_absorbance_the_correction_changes_nothing_measurable():
    case = Case(a_ex=0.006, a_exciton=0.0)  # just inside the linear range
    fr, truth = frames(case, np.random.default_rng(2), 200)
    on, off = _features(fr, case, truth, ON), _features(fr, case, truth, OFF)
    d = on.pl_peak_nm - off.pl_peak_nm  # only the absorbance frames' noise moves it
    assert abs(float(np.mean(d))) < 3.0 * float(np.std(d)) / np.sqrt(d.size)
    # ... by no more than the error the factor's noise adds to the stated one
    added = np.sqrt(np.median(on.pl_peak_nm_err) ** 2 - np.median(off.pl_peak_nm_err) ** 2)
    assert 0.3 * added <= float(np.std(d)) <= 1.5 * added


def test_nonlinear_absorbance_keeps_the_observed_line_with_its_flag():
    case = Case(a_ex=1.6)  # beyond absorbance_linear_range: too strong to correct
    fr, truth = frames(case, np.random.default_rng(6), 8)
    on, off = _features(fr, case, truth, ON), _features(fr, case, truth, OFF)
    assert np.all(on.flags & NONLIN)
    assert np.array_equal(on.pl_peak_nm, off.pl_peak_nm)
    assert np.array_equal(on.fwhm_nm, off.fwhm_nm)
    assert np.array_equal(on.pl_peak_nm_err, off.pl_peak_nm_err)


def test_no_lamp_light_in_the_emission_band_falls_back_and_is_flagged():
    case = Case(peak_nm=520, fwhm_nm=40)
    fr, truth = frames(case, np.random.default_rng(8), 6)
    far_red = WL > 800.0  # outside the QY window, inside the emission band
    for k in ("sample_counts", "blank_counts"):
        fr[k][:, far_red] = fr["dark_abs_counts"][:, far_red] - 5.0
    on, off = _features(fr, case, truth, ON), _features(fr, case, truth, OFF)
    assert not np.any(off.flags & NONLIN)  # the observed analysis has no use for those pixels
    assert np.all(on.flags & NONLIN)
    assert np.array_equal(on.pl_peak_nm, off.pl_peak_nm)
    assert np.array_equal(on.qy, off.qy)


def test_dead_lamp_is_invalid_either_way():
    case = Case()
    fr, truth = frames(case, np.random.default_rng(1), 3)
    fr["blank_counts"] = fr["dark_abs_counts"].copy()
    fr["sample_counts"] = fr["dark_abs_counts"].copy()
    on = _features(fr, case, truth, ON)
    assert np.all(on.flags & INVALID)
    assert np.all(np.isnan(on.pl_peak_nm))


def test_a_fallback_row_leaves_the_rest_of_its_batch_alone():
    good, bad = Case(a_ex=0.4, exciton_nm=520), Case(a_ex=1.6)
    fr_g, t_g = frames(good, np.random.default_rng(3), 3)
    fr_b, _ = frames(bad, np.random.default_rng(3), 2)
    mixed = {k: np.concatenate([fr_g[k], fr_b[k]]) for k in fr_g}
    both = _features(mixed, good, t_g, ON)
    alone = _features(fr_g, good, t_g, ON)
    np.testing.assert_array_equal(both.pl_peak_nm[:3], alone.pl_peak_nm)
    np.testing.assert_array_equal(both.fwhm_nm_err[:3], alone.fwhm_nm_err)
    assert np.all(both.flags[3:] & NONLIN)


def test_one_measurement_and_the_batch_agree():
    from analysis_synth import measurement

    case = Case(a_ex=0.3, exciton_nm=520)
    m, truth = measurement(case, np.random.default_rng(9))
    f = analyze(m, ON)
    s = m.spectra
    fb = extract_features_batch(
        WL, pl_counts=s.pl_counts, dark_pl_counts=s.dark_pl_counts,
        dye_pl_counts=s.dye_pl_counts, sample_counts=s.sample_counts,
        blank_counts=s.blank_counts, dark_abs_counts=s.dark_abs_counts,
        excitation_nm=s.excitation_nm, qy_reference=truth.reference, settings=ON)
    assert f.pl_peak_nm == fb.pl_peak_nm[0]
    assert abs(f.pl_peak_nm - expected_line(truth, ON)[0]) < 5 * f.pl_peak_nm_err


@pytest.mark.parametrize("value", ["yes", 1, 0.0, None])
def test_the_switch_must_be_a_bool(value):
    with pytest.raises(ConfigError, match=r"AnalyzerSettings\.peak_inner_filter: expected true"):
        AnalyzerSettings(peak_inner_filter=value)
