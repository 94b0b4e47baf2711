"""Reactor physics in time: the mixing cascade (tracer washout) and the transient cascade."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autolab.exceptions import ConditionsError
from autolab.records import Conditions
from autolab.twin import DigitalTwin, TwinConfig
from autolab.twin.cascade import tank_times_min, washout
from autolab.twin.transient import (
    CascadePhysics,
    CascadeState,
    MixingCascade,
    TankInputs,
)

PAPER = Conditions(180, 13, 290, 15, 6, 2)
OTHER = Conditions(200, 20, 300, 20, 3, 2.5)
CFG = TwinConfig()


@pytest.fixture(scope="module")
def mixing() -> MixingCascade:
    return MixingCascade(DigitalTwin(CFG)._spectra, CFG)


def _json(state: CascadeState) -> CascadeState:
    return CascadeState.from_dict(json.loads(json.dumps(state.to_dict())))


def test_mixing_cascade_is_the_exact_washout_and_settles_on_the_steady_product(
        mixing: MixingCascade) -> None:
    physics: CascadePhysics = mixing
    s = physics.step(physics.initial(), TankInputs.feeding(PAPER), 20.0)
    ref = washout(np.zeros(7), tank_times_min(PAPER, CFG), 20.0, 1.0)
    assert s.tracers[-1].tanks == pytest.approx(ref, rel=1e-7)
    s = physics.step(s, TankInputs.feeding(PAPER), 400.0)
    out = physics.outlet(s)
    a, em, qy, conv = mixing.product(PAPER)
    assert out.concentration_rel == pytest.approx(1.0, abs=1e-6)
    assert out.absorbance == pytest.approx(a, rel=1e-6)
    assert out.emission_per_nm == pytest.approx(em, rel=1e-6)
    assert (out.qy, out.conversion) == pytest.approx((qy, conv), rel=1e-6)


def test_mixing_cascade_mixes_old_and_new_products_and_resumes_from_json(
        mixing: MixingCascade) -> None:
    s = mixing.step(mixing.initial(), TankInputs.feeding(PAPER), 400.0)
    s = mixing.step(s, TankInputs.feeding(OTHER), 10.0)
    assert len(s.tracers) == 2
    w_old, w_new = s.tracers[0].tanks[-1], s.tracers[1].tanks[-1]
    assert w_old + w_new == pytest.approx(1.0, abs=1e-9)  # tracers conserve the tank volume
    out = mixing.outlet(s)
    assert np.all(out.absorbance >= 0)
    resumed = _json(s)
    assert mixing.outlet(resumed).absorbance == pytest.approx(out.absorbance)
    a = mixing.step(s, TankInputs.feeding(OTHER), 5.0)
    b = mixing.step(resumed, TankInputs.feeding(OTHER), 5.0)
    assert mixing.outlet(a).emission_per_nm == pytest.approx(mixing.outlet(b).emission_per_nm)


def test_jittered_feeds_continue_one_product_and_flushes_wash_it_out(
        mixing: MixingCascade) -> None:
    s = mixing.step(mixing.initial(), TankInputs.feeding(PAPER), 30.0)
    jittered = Conditions(181, 13.1, 289, 15, 6.05, 2)
    s = mixing.step(s, TankInputs.feeding(jittered), 30.0)
    assert len(s.tracers) == 1
    held = mixing.step(s, TankInputs.no_flow(), 60.0)
    assert held.tracers[0].tanks == pytest.approx(s.tracers[0].tanks)
    shell_only = mixing.step(s, TankInputs.solvent(5.0, solvent_tank=4), 30.0)
    assert shell_only.tracers[0].tanks[:3] == pytest.approx(s.tracers[0].tanks[:3])
    assert shell_only.tracers[0].tanks[-1] < s.tracers[0].tanks[-1]
    flushed = mixing.step(s, TankInputs.solvent(20.0), 200.0)
    assert mixing.outlet(flushed).concentration_rel < 1e-3


def test_bad_inputs_name_the_field(mixing: MixingCascade) -> None:
    with pytest.raises(ConditionsError, match="solvent_ml_min"):
        TankInputs.solvent(-1.0)
    with pytest.raises(ConditionsError, match="dt_min"):
        mixing.step(mixing.initial(), TankInputs.no_flow(), -1.0)
    with pytest.raises(ConditionsError, match="s_inject_tank"):
        mixing.step(mixing.initial(), TankInputs.feeding(
            Conditions(180, 13, 290, 15, 6, 2, s_inject_tank=9)), 1.0)
    with pytest.raises(ConditionsError, match="s_inject_count"):
        mixing.step(mixing.initial(), TankInputs.feeding(
            Conditions(180, 13, 290, 15, 6, 2, s_inject_tank=6, s_inject_count=3)), 1.0)
    with pytest.raises(ConditionsError, match="t_tank8_c"):
        mixing.step(mixing.initial(), TankInputs.feeding(
            Conditions(180, 13, 290, 15, 6, 2, t_tank_c=(180,) * 8)), 1.0)
    with pytest.raises(ConditionsError, match="solvent_tank"):
        mixing.step(mixing.initial(), TankInputs.solvent(5.0, solvent_tank=8), 1.0)
