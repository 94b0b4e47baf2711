"""Reactor physics in time: the mixing cascade (tracer washout) and the transient cascade."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from autolab.exceptions import ConditionsError
from autolab.records import Conditions
from autolab.twin import DigitalTwin, GroundTruth, TwinConfig
from autolab.twin.cascade import tank_times_min, washout
from autolab.twin.model import FeatureArrays, condition_states, features_from_states
from autolab.twin.transient import (
    CascadePhysics,
    CascadeState,
    MixingCascade,
    TankInputs,
    TransientCascade,
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


# ------------------------------------------------------------------------ transient cascade
NAN = float("nan")


@pytest.fixture(scope="module")
def transient() -> TransientCascade:
    return TransientCascade(CFG)


def _run(physics: TransientCascade, state: CascadeState, inputs: TankInputs, minutes: float,
         dt: float = 0.5) -> CascadeState:
    for _ in range(round(minutes / dt)):
        state = physics.step(state, inputs, dt)
    return state


def _features(physics: TransientCascade, state: CascadeState) -> FeatureArrays:
    core, shell, _ = physics.tank_states(state)
    return features_from_states(core, shell, CFG)


def _steady(c: Conditions) -> FeatureArrays:
    return features_from_states(*condition_states(c, CFG), CFG)


def _settled(physics: TransientCascade, c: Conditions) -> CascadeState:
    return _run(physics, physics.initial(), TankInputs.feeding(c),
                7 * (c.tau_core_min + c.tau_shell_min))


@pytest.mark.parametrize("c", [
    PAPER,
    Conditions(205, 6, 315, 11, 1.5, 3.2, 3.0),
    Conditions(168, 28, 262, 27, 40, 1.3, 4.6),
    Conditions(185, 15, 295, 18, 8, 2, t_tank_c=(175, 185, 195, NAN, 305, 290, 280),
               stir_rpm=350, s_inject_tank=4, s_inject_count=2),
    Conditions(180, 12, 290, 15, 6, 2, s_inject_tank=5),
])
def test_transient_steady_state_is_the_twins_steady_state(transient: TransientCascade,
                                                          c: Conditions) -> None:
    s = _settled(transient, c)
    got, want = _features(transient, s), _steady(c)
    assert got.pl_peak_nm[0] == pytest.approx(want.pl_peak_nm[0], abs=0.1)
    assert got.fwhm_nm[0] == pytest.approx(want.fwhm_nm[0], abs=0.15)
    assert got.qy[0] == pytest.approx(want.qy[0], abs=2e-4)
    assert got.shell_ml[0] == pytest.approx(want.shell_ml[0], rel=1e-4)
    assert got.conversion[0] == pytest.approx(want.conversion[0], abs=1e-3)
    out = transient.outlet(s)
    truth = DigitalTwin(CFG).truth(c)  # the one steady state: truth() routes per-tank fields
    assert out.concentration_rel == pytest.approx(1.0, abs=1e-6)
    assert out.qy == pytest.approx(truth.qy, abs=2e-4)
    assert out.absorbance == pytest.approx(truth.absorbance, rel=5e-3, abs=1e-4)
    assert np.abs(out.emission_per_nm - truth.emission_per_nm).max() \
        < 0.01 * truth.emission_per_nm.max()


def test_a_step_from_solvent_fills_the_outlet_as_the_tanks_in_series_rtd(
        transient: TransientCascade) -> None:
    s = transient.initial()
    times = tank_times_min(PAPER, CFG)
    for k in range(1, 61):
        s = transient.step(s, TankInputs.feeding(PAPER), 0.5)
        if k % 10 == 0:
            f = washout(np.zeros(7), times, 0.5 * k, 1.0)[-1]
            assert transient.outlet(s).concentration_rel == pytest.approx(f, abs=1e-9)


def test_a_feed_step_reaches_the_outlet_with_the_cascade_lag(transient: TransientCascade) -> None:
    """Halide step at equal flows: the outlet's nuclei count is the RTD mix of old and new."""
    new = Conditions(180, 13, 290, 15, 2, 2)
    s = _settled(transient, PAPER)
    nuc_old = transient.tank_states(s)[0].nuclei_rel[0]
    nuc_new = transient.tank_states(_settled(transient, new))[0].nuclei_rel[0]
    times = tank_times_min(PAPER, CFG)
    for k in range(1, 81):
        s = transient.step(s, TankInputs.feeding(new), 0.5)
        if k % 16 == 0:
            f = washout(np.zeros(7), times, 0.5 * k, 1.0)[-1]
            got = transient.tank_states(s)[0].nuclei_rel[0]
            assert got == pytest.approx(nuc_old + f * (nuc_new - nuc_old), rel=1e-6)


def test_a_shell_temperature_step_acts_on_the_fluid_already_in_the_tanks(
        transient: TransientCascade) -> None:
    """What the mixing picture cannot show: the shell grows in the tanks, not only at the inlet.

    After a step of the shell blocks the outlet's shell thickness moves faster than the washout
    of old product (it would only track the RTD if the product were fixed at its inlet).
    """
    hot = Conditions(180, 13, 310, 15, 6, 2)
    s = _settled(transient, PAPER)
    h0, h1 = _features(transient, s).shell_ml[0], _steady(hot).shell_ml[0]
    s = _run(transient, s, TankInputs.feeding(hot), 5.0)
    moved = (_features(transient, s).shell_ml[0] - h0) / (h1 - h0)
    washed = washout(np.zeros(7), tank_times_min(hot, CFG), 5.0, 1.0)[-1]
    assert moved > washed + 0.2
    s = _run(transient, s, TankInputs.feeding(hot), 200.0)
    assert _features(transient, s).shell_ml[0] == pytest.approx(h1, rel=1e-4)


def test_a_slow_ramp_follows_the_steady_state_and_a_faster_one_lags_more(
        transient: TransientCascade) -> None:
    settled = _settled(transient, PAPER)

    def worst(minutes: float, dt: float) -> float:
        """Largest peak error against the steady state at the present conditions, nm."""
        s, err = settled, 0.0
        n = round(minutes / dt)
        for k in range(1, n + 1):
            c = Conditions(180 + 10 * k / n, 13, 290, 15, 6, 2)
            s = transient.step(s, TankInputs.feeding(c), dt)
            if k % max(1, n // 8) == 0:
                err = max(err, abs(_features(transient, s).pl_peak_nm[0]
                                   - _steady(c).pl_peak_nm[0]))
        return err

    # measured: 1.9 nm over 60 min, 0.43 over 300, 0.23 over 600, 0.12 over 1200 (∝ rate)
    slow, fast = worst(600.0, 2.0), worst(60.0, 0.5)
    assert slow < 0.3  # 10 °C over 21 cascade residence times: within the analyzer's error
    assert fast > 5 * slow


def test_defaults_of_the_optional_conditions_reproduce_the_plain_reactor() -> None:
    twin = DigitalTwin(CFG)
    plain = twin.truth(PAPER)
    spelled = twin.truth(Conditions(180, 13, 290, 15, 6, 2, t_tank_c=(180,) * 3 + (290,) * 4,
                                    stir_rpm=600, s_inject_tank=4, s_inject_count=1))
    fast_stir = twin.truth(Conditions(180, 13, 290, 15, 6, 2, stir_rpm=1200))
    for t in (spelled, fast_stir):
        assert t.pl_peak_nm == pytest.approx(plain.pl_peak_nm, abs=1e-9)
        assert t.fwhm_nm == pytest.approx(plain.fwhm_nm, abs=1e-9)
        assert t.qy == pytest.approx(plain.qy, abs=1e-12)


def test_per_tank_conditions_move_the_steady_state_the_physical_way() -> None:
    twin = DigitalTwin(CFG)
    base = twin.truth(PAPER)

    def with_(**kw: Any) -> GroundTruth:
        return twin.truth(replace(PAPER, **kw))

    # a hotter nucleation tank makes more nuclei: smaller, bluer dots
    assert with_(t_tank_c=(200.0,)).pl_peak_nm < base.pl_peak_nm - 3
    # injecting later keeps the same core time over more tanks: a narrower RTD, narrower sizes
    assert with_(s_inject_tank=5).fwhm_nm < base.fwhm_nm - 0.3
    assert with_(s_inject_tank=3).fwhm_nm > base.fwhm_nm + 0.3
    # splitting the sulfur over three tanks: the shell starts later, thinner shell
    assert with_(s_inject_count=3).shell_ml < base.shell_ml - 0.05
    # slow stirring: mixing-limited nucleation broadens the sizes
    assert with_(stir_rpm=250.0).fwhm_nm > base.fwhm_nm + 1
    # a cooler last shell tank deposits less ZnS
    assert with_(t_tank_c=(NAN,) * 6 + (250.0,)).shell_ml < base.shell_ml


@pytest.mark.parametrize(("change", "field"), [
    ({"stir_rpm": 5000.0}, "stir_rpm"),
    ({"t_tank_c": (NAN, 400.0)}, "t_tank2_c"),
    ({"t_tank_c": (180.0,) * 8}, "t_tank8_c"),
    ({"s_inject_tank": 1}, "s_inject_tank"),
    ({"s_inject_tank": 7, "s_inject_count": 2}, "s_inject_count"),
])
def test_the_twins_envelope_covers_per_tank_conditions(change: dict[str, Any],
                                                       field: str) -> None:
    with pytest.raises(ConditionsError, match=field) as info:
        DigitalTwin(CFG).truth(replace(PAPER, **change))
    assert info.value.parameter == field


def test_transient_state_resumes_from_json_and_checks_its_shape(
        transient: TransientCascade) -> None:
    s = _run(transient, transient.initial(), TankInputs.feeding(PAPER), 20.0)
    resumed = _json(s)
    a = transient.step(s, TankInputs.feeding(OTHER), 3.0)
    b = transient.step(resumed, TankInputs.feeding(OTHER), 3.0)
    assert transient.outlet(a).emission_per_nm == pytest.approx(
        transient.outlet(b).emission_per_nm)
    with pytest.raises(ValueError, match="class width"):
        TransientCascade(CFG, bin_min=1.0).step(s, TankInputs.no_flow(), 1.0)
    with pytest.raises(ValueError, match="mixing"):
        transient.outlet(MixingCascade(DigitalTwin(CFG)._spectra, CFG).initial())


def test_flush_and_hold_keep_the_product_honest(transient: TransientCascade) -> None:
    s = _settled(transient, PAPER)
    held = _run(transient, s, TankInputs.no_flow(t_tank_c=(180,) * 3 + (290,) * 4), 30.0)
    assert transient.outlet(held).concentration_rel == pytest.approx(1.0)
    # held hot for 30 min the shell keeps growing in the last tank
    assert _features(transient, held).shell_ml[0] > _features(transient, s).shell_ml[0]
    flushed = _run(transient, s, TankInputs.solvent(20.0), 120.0)
    assert transient.outlet(flushed).concentration_rel < 1e-3


def test_a_start_from_solvent_reads_young_product_until_the_ages_fill_in(
        transient: TransientCascade) -> None:
    """The first product out has had less time than the steady product: bluer and narrower.

    A mixing picture shows the steady spectrum at once, only weaker; here the features lag the
    concentration (measured: at 2 τ 98 % concentration, peak still 0.2 nm blue).
    """
    c = Conditions(200, 20, 300, 15, 20, 2)
    want = _steady(c)
    s = _run(transient, transient.initial(), TankInputs.feeding(c), 1.5 * 35)
    early = _features(transient, s)
    assert transient.outlet(s).concentration_rel > 0.85
    assert early.pl_peak_nm[0] < want.pl_peak_nm[0] - 0.5
    assert early.fwhm_nm[0] < want.fwhm_nm[0] - 1.0
    s = _run(transient, s, TankInputs.feeding(c), 1.5 * 35)
    assert _features(transient, s).pl_peak_nm[0] == pytest.approx(want.pl_peak_nm[0], abs=0.05)


def test_the_hottest_tank_sets_the_clogging_risk() -> None:
    twin = DigitalTwin(CFG)
    hot = Conditions(215, 28, 290, 15, 6, 2)  # near the twin's hot-and-long clogging corner
    base = twin.truth(hot).failure_probability["clogging"]
    one_hotter = twin.truth(replace(hot, t_tank_c=(NAN, NAN, 228.0))).failure_probability
    one_cooler = twin.truth(replace(hot, t_tank_c=(NAN, NAN, 200.0))).failure_probability
    assert one_hotter["clogging"] > base
    assert one_cooler["clogging"] == pytest.approx(base)  # the other tanks are still at 215


def test_feeding_into_tanks_still_heating_runs_the_cold_chemistry(
        transient: TransientCascade, mixing: MixingCascade) -> None:
    """Realized temperatures are physics: the transient cascade runs a feed into cold tanks
    (little converts); the mixing cascade's steady products refuse it (the rig flushes)."""
    cold = Conditions(180, 13, 290, 15, 6, 2, t_tank_c=(90.0,) * 7)
    s = _run(transient, transient.initial(), TankInputs.feeding(cold), 40.0)
    assert transient.outlet(s).conversion < 0.3
    s = _run(transient, s, TankInputs.feeding(PAPER), 8 * 28)
    assert _features(transient, s).pl_peak_nm[0] == pytest.approx(
        _steady(PAPER).pl_peak_nm[0], abs=0.1)
    with pytest.raises(ConditionsError, match="t_tank1_c"):
        mixing.step(mixing.initial(), TankInputs.feeding(cold), 1.0)


def _ramp_outlets(mixing_max: int) -> tuple[list[tuple[float, float]], CascadeState]:
    """Steady PAPER product, then both stages ramped at 10 °C/min in 0.5-min steps."""
    m = MixingCascade(DigitalTwin(CFG)._spectra, CFG, max_products=mixing_max,
                      same_temperature_c=0.5, same_rel=0.002)  # the simulated rig's tolerances
    s = m.step(m.initial(), TankInputs.feeding(PAPER), 400.0)
    wl = m.wavelengths_nm
    seen = []
    for k in range(40):
        c = replace(PAPER, t_core_c=min(180 + 5 * (k + 1), 250),
                    t_shell_c=min(290 + 5 * (k + 1), 330))
        s = m.step(s, TankInputs.feeding(c), 0.5)
        if k in (9, 19, 39):  # 5, 10 and 20 min into the ramp
            em = m.outlet(s).emission_per_nm
            seen.append((float((wl * em).sum() / em.sum()), float(em.sum())))
    return seen, s


def test_mixing_cascade_folds_tracers_without_moving_the_outlet() -> None:
    """Past max_products the fold keeps what the outlet sees (a fast ramp spawns a tracer per step).

    The former rule folded the oldest tracer (the steady product filling the cascade) into the
    first ramp feed: the emission centroid jumped 7 nm 5 min into the ramp, while the RTD puts
    < 0.1 % new fluid in the cell. Against 60 tracers (no fold) it now stays within 0.15 nm and
    1 % of the emission, and the tanks' content is conserved.
    """
    folded, s6 = _ramp_outlets(6)
    exact, s60 = _ramp_outlets(60)
    assert len(s6.tracers) == 6 < len(s60.tracers)
    for (c6, e6), (c60, e60) in zip(folded, exact, strict=True):
        assert c6 == pytest.approx(c60, abs=0.15)
        assert e6 == pytest.approx(e60, rel=0.01)
    total6 = np.sum([t.tanks for t in s6.tracers], axis=0)
    total60 = np.sum([t.tanks for t in s60.tracers], axis=0)
    assert total6 == pytest.approx(total60, rel=1e-9, abs=1e-6)  # pruned tracers < 1e-4 each
