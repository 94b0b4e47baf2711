"""Records: validation and lossless JSON round trips (the journal depends on them)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.exceptions import ConfigError
from autolab.records import (
    Conditions,
    Decision,
    Features,
    Measurement,
    QualityFlag,
    QYReference,
    Spectra,
    SpectralTrace,
    Trial,
    TrialOrigin,
    TrialStatus,
    experiment_label,
)


def _spectra(p: int = 16) -> Spectra:
    wl = np.linspace(400, 700, p)
    ones = np.ones(p)
    return Spectra(wavelengths_nm=wl, dark_abs_counts=ones * 1000, blank_counts=ones * 30000,
                   sample_counts=ones * 20000, dark_pl_counts=ones * 1000,
                   pl_counts=1000 + 5000 * np.exp(-((wl - 550) / 20) ** 2),
                   dye_pl_counts=1000 + 8000 * np.exp(-((wl - 552) / 17) ** 2),
                   abs_integration_ms=10, pl_integration_ms=100, saturation_counts=65535,
                   excitation_nm=450)


def _trial(status: TrialStatus = TrialStatus.COMPLETED) -> Trial:
    cond = Conditions(180, 13, 290, 15, 6, 2)
    meas = Measurement(conditions=cond.as_dict(), spectra=_spectra(), qy_reference=QYReference(),
                       started_lab_h=1.0, finished_lab_h=2.5, reagent_ml={"indium": 3.2},
                       product_mg=12.0,
                       trace=SpectralTrace(np.array([0.0, 1.0]), np.ones((2, 16))),
                       device_log=("ramp", "sample"), metadata={"executor": "twin"})
    feats = Features(pl_peak_nm=560.2, fwhm_nm=56.1, qy=0.41, abs_peak_nm=540.0,
                     flags=QualityFlag.TRAP_TAIL | QualityFlag.LOW_SIGNAL)
    return Trial(index=3, conditions=cond.as_dict(), status=status, features=feats, objective=-0.2,
                 proposal_time_s=0.4, measurement=meas)


def test_trial_round_trips_through_json() -> None:
    trial = _trial()
    back = Trial.from_dict(json.loads(json.dumps(trial.to_dict())))
    assert back.to_dict() == trial.to_dict()
    assert back.features is not None and back.features.flags == trial.features.flags  # type: ignore[union-attr]
    assert back.measurement is not None
    np.testing.assert_array_equal(back.measurement.spectra.pl_counts,
                                  trial.measurement.spectra.pl_counts)  # type: ignore[union-attr]
    assert back.measurement.lab_hours == pytest.approx(1.5)


def test_spectra_arrays_are_read_only() -> None:
    s = _spectra()
    with pytest.raises(ValueError, match="read-only"):
        s.pl_counts[0] = 1.0


def test_outcomes_only_for_usable_completed_trials() -> None:
    assert _trial().outcomes() == {"pl_peak_nm": 560.2, "fwhm_nm": 56.1, "qy": 0.41}
    assert _trial(TrialStatus.FAILED).outcomes() is None
    no_peak = Features(math.nan, math.nan, math.nan, 540.0, flags=QualityFlag.NO_PEAK)
    assert not no_peak.usable
    assert Trial(0, {}, TrialStatus.COMPLETED, features=no_peak).outcomes() is None


def test_features_nan_survive_json_as_null() -> None:
    f = Features(math.nan, 50.0, 0.3, math.nan, flags=QualityFlag.NO_ABS_PEAK)
    d = json.loads(json.dumps(f.to_dict()))
    assert d["pl_peak_nm"] is None
    back = Features.from_dict(d)
    assert math.isnan(back.pl_peak_nm) and back.flags == QualityFlag.NO_ABS_PEAK


@settings(max_examples=50, deadline=None)
@given(st.integers(0, int(sum(f.value for f in QualityFlag))))
def test_flag_names_round_trip(bits: int) -> None:
    flags = QualityFlag(bits)
    back = QualityFlag.NONE
    for name in flags.names():
        back |= QualityFlag[name.upper()]
    assert back == flags


def test_conditions_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="tau_core_min"):
        Conditions(180, -1, 290, 15, 6, 2)
    with pytest.raises(ConfigError, match="t_core_c"):
        Conditions(math.nan, 13, 290, 15, 6, 2)
    with pytest.raises(ConfigError, match="missing"):
        Conditions.from_mapping({"t_core_c": 180})
    with pytest.raises(ConfigError, match="unknown"):
        Conditions.from_mapping({"t_core_c": 180, "zz": 1})
    assert math.isinf(Conditions(180, 10, 290, 11, math.inf, 2).cl_to_i)


def test_hand_edited_trial_conditions_give_a_clear_error() -> None:
    d = _trial().to_dict()
    d["conditions"] = "abc"
    with pytest.raises(TypeError, match="conditions must be an object"):
        Trial.from_dict(d)


def test_origin_and_decision_names_are_what_the_journal_stores() -> None:
    assert [o.value for o in TrialOrigin] == ["proposed", "edited", "manual", "reused"]
    assert [d.value for d in Decision] == ["approve", "edit", "reject"]
    assert experiment_label(7) == "exp-007"
