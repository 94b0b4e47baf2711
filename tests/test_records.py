"""Records: validation and lossless JSON round trips (the journal depends on them)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.exceptions import ConfigError
from autolab.records import (
    CONDITION_DEFAULTS,
    MAX_TANKS,
    REQUIRED_CONDITIONS,
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
    is_condition_name,
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


# ------------------------------------------------- optional per-tank conditions (issue 9 §2)
_BASE = {"t_core_c": 180.0, "tau_core_min": 13.0, "t_shell_c": 290.0, "tau_shell_min": 15.0,
         "cl_to_i": 6.0, "s_to_zn": 2.0}


def test_old_condition_dicts_load_with_defaults_that_change_nothing() -> None:
    c = Conditions.from_mapping(_BASE)
    assert c == Conditions(180, 13, 290, 15, 6, 2)
    assert (c.t_tank_c, c.stir_rpm, c.s_inject_tank, c.s_inject_count) == ((), 600.0, 0, 1)
    assert set(REQUIRED_CONDITIONS) == set(_BASE)
    assert CONDITION_DEFAULTS == {"p_to_in": 3.6, "stir_rpm": 600.0, "s_inject_tank": 0,
                                  "s_inject_count": 1}
    old = _trial().to_dict()  # a journal line written before the optional fields existed
    for k in ("stir_rpm", "s_inject_tank", "s_inject_count"):
        old["conditions"].pop(k)
        old["measurement"]["conditions"].pop(k)
    assert Conditions.from_mapping(Trial.from_dict(old).conditions) == c


def test_tank_temperatures_map_into_the_profile_and_back() -> None:
    c = Conditions.from_mapping({**_BASE, "t_tank5_c": 300, "t_tank2_c": 185.0,
                                 "s_inject_tank": 4.0, "s_inject_count": 2})
    assert len(c.t_tank_c) == 5
    assert math.isnan(c.t_tank_c[0]) and c.t_tank_c[1] == 185.0 and c.t_tank_c[4] == 300.0
    assert c.value("t_tank5_c") == 300.0 and math.isnan(c.value("t_tank7_c"))
    assert c.value("s_inject_tank") == 4 and isinstance(c.s_inject_tank, int)
    d = c.as_dict()
    assert d["t_tank2_c"] == 185.0 and "t_tank1_c" not in d and "t_tank_c" not in d
    assert Conditions.from_mapping(json.loads(json.dumps(d, allow_nan=False))) == c
    full = Conditions.from_mapping({**_BASE, "t_tank_c": [180, 181, 182, None]})
    assert full.t_tank_c == (180.0, 181.0, 182.0)  # trailing "stage temperature" dropped
    with pytest.raises(KeyError):
        c.value("bogus")


@pytest.mark.parametrize(("change", "needle"), [
    ({"s_inject_tank": 3.5}, "s_inject_tank: expected a whole number"),
    ({"s_inject_count": 0}, "s_inject_count: expected a whole number >= 1"),
    ({"s_inject_tank": True}, "s_inject_tank"),
    ({"stir_rpm": -5}, "stir_rpm: expected a positive"),
    ({"stir_rpm": "fast"}, "stir_rpm: expected a number"),
    ({"t_tank3_c": math.inf}, "t_tank3_c: expected a finite"),
    ({"t_tank2_c": "hot"}, "t_tank2_c: expected a number"),
    ({"t_tank9_c": 200}, "unknown condition"),
    ({"t_tank_c": "200,210"}, "t_tank_c: expected a list"),
    ({"t_tank_c": [200], "t_tank2_c": 210}, "both t_tank_c and t_tank<i>_c"),
])
def test_bad_optional_conditions_name_the_field(change: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(needle)):
        Conditions.from_mapping({**_BASE, **change})


@settings(max_examples=60, deadline=None)
@given(profile=st.lists(st.one_of(st.none(), st.floats(100, 340)), max_size=MAX_TANKS),
       rpm=st.floats(50, 2000), tank=st.integers(0, MAX_TANKS), count=st.integers(1, 4))
def test_optional_conditions_round_trip_through_json(profile: list[float | None], rpm: float,
                                                     tank: int, count: int) -> None:
    c = Conditions.from_mapping({**_BASE, "t_tank_c": profile, "stir_rpm": rpm,
                                 "s_inject_tank": tank, "s_inject_count": count})
    text = json.dumps(c.as_dict(), allow_nan=False)
    assert Conditions.from_mapping(json.loads(text)) == c
    assert all(is_condition_name(k) for k in c.as_dict())
