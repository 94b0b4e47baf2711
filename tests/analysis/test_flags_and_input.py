"""Quality flags fire on bad spectra and stay quiet on clean ones; bad input is handled."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_synth import WL, Case, frames, lamp, measurement
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autolab.analysis import analyze, analyze_many, extract_features_batch
from autolab.exceptions import SpectrumError
from autolab.records import QualityFlag as Q


def flags_of(case: Case, seed: int = 0, **override) -> tuple[Q, object]:
    fr, truth = frames(case, np.random.default_rng(seed), 1)
    fr.update(override)
    fb = extract_features_batch(WL, **fr, excitation_nm=case.excitation_nm,
                                saturation_counts=case.saturation, qy_reference=truth.reference)
    return Q(int(fb.flags[0])), fb


def test_clean_spectrum_has_no_flags():
    for seed in range(5):
        f, fb = flags_of(Case(), seed)
        assert f == Q.NONE, f.names()
        assert fb[0].usable


def test_saturated_peak_is_flagged():
    f, _ = flags_of(Case(height=70000))
    assert Q.SATURATED in f
    assert not (f & ~(Q.SATURATED | Q.TRAP_TAIL | Q.SHOULDER | Q.NO_ABS_PEAK))


def test_saturation_outside_the_emission_band_is_ignored():
    fr, truth = frames(Case(), np.random.default_rng(1), 1)
    fr["pl_counts"][0, WL < 370] = 65535.0  # scattered excitation light
    fb = extract_features_batch(WL, **fr, excitation_nm=365.0, qy_reference=truth.reference)
    assert Q(int(fb.flags[0])) == Q.NONE


def test_low_signal_is_flagged_but_measured():
    f, fb = flags_of(Case(height=120, read_noise=8))
    assert Q.LOW_SIGNAL in f
    assert Q.NO_PEAK not in f
    assert math.isfinite(fb.pl_peak_nm[0])


def test_no_emission_gives_no_peak_and_nan():
    f, fb = flags_of(Case(height=1e-6))
    assert Q.NO_PEAK in f
    assert math.isnan(fb.pl_peak_nm[0]) and math.isnan(fb.qy[0]) and math.isnan(fb.fwhm_nm[0])
    assert not fb[0].usable


def test_trap_tail_is_flagged():
    f, _ = flags_of(Case(peak_nm=560, fwhm_nm=45, trap=0.25))
    assert Q.TRAP_TAIL in f


def test_second_peak_is_flagged_as_shoulder():
    f, _ = flags_of(Case(peak_nm=600, fwhm_nm=40, second=0.5))
    assert Q.SHOULDER in f


@pytest.mark.parametrize("a_ex", [1.6, 0.002])
def test_absorbance_outside_linear_range(a_ex):
    f, fb = flags_of(Case(a_ex=a_ex, a_exciton=0.02, qy=0.02 if a_ex > 1 else 0.001))
    assert Q.ABSORBANCE_NONLINEAR in f


def test_no_absorption_feature_is_flagged():
    case = Case()
    fr, truth = frames(case, np.random.default_rng(2), 1)
    ramp = 0.05 + 0.1 * (850 - WL) / 500  # featureless, linear
    fr["sample_counts"] = 1000 + lamp(WL) * 10 ** (-ramp)
    fb = extract_features_batch(WL, **fr, excitation_nm=365.0, qy_reference=truth.reference)
    assert Q.NO_ABS_PEAK in Q(int(fb.flags[0]))
    assert math.isnan(fb.abs_peak_nm[0])


def test_nan_in_one_spectrum_flags_only_that_one():
    fr, truth = frames(Case(), np.random.default_rng(3), 3)
    fr["pl_counts"][1, 500] = np.nan
    fb = extract_features_batch(WL, **fr, excitation_nm=365.0, qy_reference=truth.reference)
    assert Q.INVALID_INPUT in Q(int(fb.flags[1]))
    assert math.isnan(fb.pl_peak_nm[1]) and math.isnan(fb.qy[1])
    assert fb.flags[0] == 0 and fb.flags[2] == 0


def test_wrong_dark_frame_is_invalid():
    case = Case()
    fr, truth = frames(case, np.random.default_rng(4), 1)
    fr["dark_pl_counts"] = fr["dark_pl_counts"] + 3000.0  # strongly negative after subtraction
    fb = extract_features_batch(WL, **fr, excitation_nm=365.0, qy_reference=truth.reference)
    assert Q.INVALID_INPUT in Q(int(fb.flags[0]))


def test_all_zero_frames_are_flagged_not_crashed():
    z = np.zeros_like(WL)
    fb = extract_features_batch(WL, pl_counts=z, dark_pl_counts=z, dye_pl_counts=z,
                                sample_counts=z, blank_counts=z, dark_abs_counts=z,
                                excitation_nm=365.0)
    f = Q(int(fb.flags[0]))
    assert Q.NO_PEAK in f and Q.INVALID_INPUT in f
    assert all(math.isnan(getattr(fb, k)[0]) for k in ("pl_peak_nm", "fwhm_nm", "qy"))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"wavelengths_nm": WL[::-1]}, "strictly increasing"),
    ({"wavelengths_nm": WL[:-1]}, "pixels"),
    ({"pl_counts": np.zeros((2, 3, WL.size))}, "shape"),
    ({"dye_pl_counts": np.zeros((3, WL.size)), "pl_counts": np.zeros((2, WL.size))}, "batch"),
    ({"blank_counts": "lamp"}, "blank_counts"),
    ({"excitation_nm": np.nan}, "excitation_nm"),
    ({"wavelengths_nm": np.linspace(350, 850, 10)}, "at least"),
])
def test_unanalyzable_input_raises_clear_spectrum_error(kwargs, match):
    fr, truth = frames(Case(), np.random.default_rng(5), 1)
    args = {"wavelengths_nm": WL, **fr, "excitation_nm": 365.0}
    args.update(kwargs)
    with pytest.raises(SpectrumError, match=match):
        extract_features_batch(**args)


counts = hnp.arrays(np.float64, WL.size, elements=st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(-2000, 70000)))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(pl=counts, dark=counts, dye=counts, sample=counts, blank=counts, dabs=counts,
       ex=st.floats(200, 900))
def test_garbage_never_crashes_and_never_gives_unjustified_numbers(pl, dark, dye, sample, blank,
                                                                   dabs, ex):
    try:
        fb = extract_features_batch(WL, pl_counts=pl, dark_pl_counts=dark, dye_pl_counts=dye,
                                    sample_counts=sample, blank_counts=blank,
                                    dark_abs_counts=dabs, excitation_nm=ex)
    except SpectrumError:
        return
    f = Q(int(fb.flags[0]))
    bad = not (np.all(np.isfinite(pl)) and np.all(np.isfinite(dark)))
    if bad:
        assert Q.INVALID_INPUT in f
    if f & (Q.INVALID_INPUT | Q.NO_PEAK):
        assert math.isnan(fb.qy[0])
    assert math.isnan(fb.qy[0]) or 0.0 <= fb.qy[0] <= 1.0  # never an impossible QY
    if math.isfinite(fb.pl_peak_nm[0]):
        assert WL[0] <= fb.pl_peak_nm[0] <= WL[-1]
        assert fb.pl_peak_nm_err[0] >= 0 and fb.pl_snr[0] >= 5
    feats = fb[0]
    assert isinstance(feats.flags, Q)


def test_batch_equals_single_analyses():
    cases = [Case(), Case(peak_nm=620, fwhm_nm=70, height=8000, a_ex=0.4, exciton_nm=580),
             Case(height=1e-6), Case(trap=0.3), Case(height=70000), Case(a_ex=0.02, qy=0.05)]
    rng = np.random.default_rng(6)
    ms = [measurement(c, rng)[0] for c in cases]
    singles = [analyze(m) for m in ms]
    batch = analyze_many(ms)
    for a, b in zip(singles, batch, strict=True):
        assert a.flags == b.flags
        for k, v in a.to_dict().items():
            if k != "flags":
                w = b.to_dict()[k]
                assert (v is None and w is None) or v == pytest.approx(w, rel=1e-12, abs=1e-12)


def test_chunking_does_not_change_results():
    fr, truth = frames(Case(), np.random.default_rng(7), 37)
    a = extract_features_batch(WL, **fr, excitation_nm=365.0, qy_reference=truth.reference)
    b = extract_features_batch(WL, **fr, excitation_nm=365.0, qy_reference=truth.reference,
                               chunk_size=5)
    np.testing.assert_array_equal(a.flags, b.flags)
    np.testing.assert_allclose(a.qy, b.qy, rtol=1e-12)
    np.testing.assert_allclose(a.pl_peak_nm, b.pl_peak_nm, rtol=1e-12)


def test_shared_reference_frames_broadcast():
    fr, truth = frames(Case(), np.random.default_rng(8), 4)
    shared = dict(fr, dye_pl_counts=fr["dye_pl_counts"][0], dark_pl_counts=fr["dark_pl_counts"][0])
    a = extract_features_batch(WL, **shared, excitation_nm=365.0, qy_reference=truth.reference)
    rows = {k: v if v.ndim == 1 else v[2] for k, v in shared.items()}
    b = extract_features_batch(WL, **rows, excitation_nm=365.0, qy_reference=truth.reference)
    assert a.qy[2] == pytest.approx(b.qy[0], rel=1e-12)


def test_analyze_many_rejects_different_grids():
    rng = np.random.default_rng(9)
    m1, _ = measurement(Case(), rng)
    m2, _ = measurement(Case(), rng)
    from dataclasses import replace
    m2 = replace(m2, spectra=replace(m2.spectra, wavelengths_nm=WL + 1.0))
    with pytest.raises(SpectrumError, match="grid"):
        analyze_many([m1, m2])
