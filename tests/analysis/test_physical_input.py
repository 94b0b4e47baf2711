"""Issue 12 §3 (analyzer): impossible settings are refused, impossible values never reported.

* ``saturation_counts <= 0`` (and a non-positive excitation) is refused with a
  :class:`SpectrumError` naming the field, on the batch path and through ``analyze``.
* Complex input is refused, not silently cast to its real part.
* Frames with counts far above the stated full scale used to give QY 5.37 (flagged, but
  reported): a frame above full scale contradicts the detector, so the spectrum is
  ``INVALID_INPUT`` and nothing is reported from it; a QY outside [0, 1] beyond noise is NaN.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from analysis_synth import WL, Case, frames, measurement
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autolab.analysis import analyze, extract_features_batch
from autolab.analysis.qy import physical_qy
from autolab.exceptions import SpectrumError
from autolab.records import QualityFlag as Q

FRAMES = ("pl_counts", "dark_pl_counts", "dye_pl_counts", "sample_counts", "blank_counts",
          "dark_abs_counts")
FR, TRUTH = frames(Case(), np.random.default_rng(21), 1)
FAST = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def run(**override):
    args = {"wavelengths_nm": WL, **FR, "excitation_nm": 365.0,
            "qy_reference": TRUTH.reference}
    args.update(override)
    return extract_features_batch(**args)


@FAST
@given(sat=st.one_of(st.just(0.0), st.floats(max_value=0.0, allow_nan=False,
                                             allow_infinity=False)))
def test_non_positive_saturation_is_refused_naming_the_field(sat):
    with pytest.raises(SpectrumError, match="saturation_counts: expected positive"):
        run(saturation_counts=sat)


def test_non_positive_saturation_in_a_measurement_is_refused():
    m, _ = measurement(Case(), np.random.default_rng(1))
    m = replace(m, spectra=replace(m.spectra, saturation_counts=-1.0))
    with pytest.raises(SpectrumError, match="saturation_counts"):
        analyze(m)


def test_non_positive_excitation_is_refused():
    with pytest.raises(SpectrumError, match="excitation_nm: expected positive"):
        run(excitation_nm=[0.0])


@FAST
@given(name=st.sampled_from((*FRAMES, "wavelengths_nm", "excitation_nm", "saturation_counts")),
       imag=st.floats(-1e3, 1e3, allow_nan=False).filter(lambda x: x != 0.0),
       as_list=st.booleans())
def test_complex_input_is_refused_naming_the_field(name, imag, as_list):
    base = {"wavelengths_nm": WL, **FR, "excitation_nm": 365.0,
            "saturation_counts": 65535.0}[name]
    z = np.asarray(base) + 1j * imag
    with pytest.raises(SpectrumError, match=f"{name}: expected .*got complex values"):
        run(**{name: z.tolist() if as_list else z})


def test_complex_dtype_with_zero_imaginary_part_is_still_refused():
    with pytest.raises(SpectrumError, match="pl_counts"):
        run(pl_counts=FR["pl_counts"].astype(np.complex128))


@FAST
@given(frame=st.sampled_from(FRAMES), factor=st.floats(1.5, 1e4))
def test_counts_far_above_full_scale_report_nothing(frame, factor):
    """Any frame scaled beyond the full scale: INVALID_INPUT, no QY, peak or width."""
    fr = dict(FR)
    fr[frame] = fr[frame] * factor + 70000.0  # well above the 65535 full scale
    fb = run(**{frame: fr[frame]})
    assert Q.INVALID_INPUT in Q(int(fb.flags[0]))
    for k in ("qy", "pl_peak_nm", "fwhm_nm", "qy_err"):
        assert math.isnan(getattr(fb, k)[0]), k
    assert not fb[0].usable


def test_the_issue_case_qy_5_is_no_longer_reported():
    fb = run(pl_counts=FR["pl_counts"] * 20)  # pl far above saturation: gave QY ~10
    assert math.isnan(fb.qy[0])
    assert Q.INVALID_INPUT in Q(int(fb.flags[0]))


@FAST
@given(sat=st.floats(2000.0, 60000.0))
def test_a_stated_full_scale_below_the_data_is_invalid(sat):
    fb = run(saturation_counts=sat)  # the frames reach ~41,000 counts
    if np.max([FR[k].max() for k in FRAMES]) > sat + 0.5:
        assert Q.INVALID_INPUT in Q(int(fb.flags[0]))
        assert math.isnan(fb.qy[0])


@FAST
@given(scale=st.floats(0.2, 5.0), ref_a=st.floats(0.001, 2.0))
def test_qy_is_never_outside_zero_one(scale, ref_a):
    """Wrong reference facts push the raw QY anywhere; what is reported stays physical."""
    ref = replace(TRUTH.reference, absorbance_at_excitation=ref_a)
    fb = run(pl_counts=(FR["pl_counts"] - 1000.0) * scale + 1000.0, qy_reference=ref)
    q = fb.qy[0]
    assert math.isnan(q) or 0.0 <= q <= 1.0
    if math.isnan(q):
        assert Q.INVALID_INPUT in Q(int(fb.flags[0])) or Q.NO_PEAK in Q(int(fb.flags[0]))


@given(qy=st.floats(-5.0, 10.0), err=st.floats(0.0, 0.5))
def test_physical_qy_clips_within_noise_and_refuses_beyond(qy, err):
    out, out_err, bad = physical_qy(np.array([qy]), np.array([err]), 3.0)
    excess = max(qy - 1.0, -qy)
    if excess > 3.0 * err:
        assert bad[0] and math.isnan(out[0]) and math.isnan(out_err[0])
    else:
        assert not bad[0]
        assert out[0] == pytest.approx(min(max(qy, 0.0), 1.0))
        assert out_err[0] == err


@FAST
@given(name=st.sampled_from(("bin_nm", "exciton_smooth_nm", "exciton_max_smooth_nm",
                             "qy_range_sigma", "min_snr", "qy_calibration_rel")),
       value=st.one_of(st.floats(max_value=-1e-9), st.just(float("nan")), st.just(1 + 2j)))
def test_bad_analyzer_settings_are_a_config_error_naming_the_field(name, value):
    from autolab.analysis import AnalyzerSettings
    from autolab.exceptions import ConfigError

    with pytest.raises(ConfigError, match=f"AnalyzerSettings.{name}"):
        AnalyzerSettings(**{name: value})


@pytest.mark.parametrize("value", [1.0, 2.5])
def test_a_qy_calibration_of_100_percent_or_more_is_refused(value):
    from autolab.analysis import AnalyzerSettings
    from autolab.exceptions import ConfigError

    with pytest.raises(ConfigError, match=r"qy_calibration_rel: expected a relative uncertainty"):
        AnalyzerSettings(qy_calibration_rel=value)


def test_zero_width_settings_are_refused():
    from autolab.analysis import AnalyzerSettings
    from autolab.exceptions import ConfigError

    with pytest.raises(ConfigError, match="exciton_max_smooth_nm: expected a positive width"):
        AnalyzerSettings(exciton_max_smooth_nm=0.0)
