"""The twin as an experiment: noise, transients, determinism, resume, failures, errors."""

import math
import time as _time  # noqa: F401  (no timed assertions; imported to make the point explicit)
from dataclasses import replace

import numpy as np
import pytest

from autolab.exceptions import ConditionsError, ExperimentFailed
from autolab.executors import Executor, SimulatedExecutor
from autolab.records import Conditions, Measurement
from autolab.twin import DigitalTwin, TwinConfig, truth_features
from autolab.twin.chemistry import ConditionArrays

BEST = Conditions(180, 13, 290, 15, 6, 2, 3.6)


def pl_above_dark(m: Measurement) -> np.ndarray:
    return m.spectra.pl_counts - m.spectra.dark_pl_counts


def relative_qy(m: Measurement) -> float:
    """The relative-QY contract of autolab.twin.optics, inverted."""
    sp, ref = m.spectra, m.qy_reference
    wl = sp.wavelengths_nm
    a = -np.log10((sp.sample_counts - sp.dark_abs_counts) / (sp.blank_counts - sp.dark_abs_counts))
    a_ex = float(np.interp(sp.excitation_nm, wl, a))
    f_s = float(np.sum(pl_above_dark(m) * 10 ** (a / 2)))
    f_r = float(np.sum(sp.dye_pl_counts - sp.dark_pl_counts))
    return ref.qy * f_s / f_r * (1 - 10 ** -ref.absorbance_at_excitation) / (1 - 10 ** -a_ex) \
        * ref.sample_refractive_index ** 2 / ref.refractive_index ** 2


def test_executor_protocol() -> None:
    ex = SimulatedExecutor(seed=0)
    assert isinstance(ex, Executor)
    assert ex.name == "twin"


def test_reading_close_to_truth_but_not_equal() -> None:
    ex = SimulatedExecutor(seed=3)
    m = ex.run(BEST)
    truth = ex.truths[0]
    wl = m.spectra.wavelengths_nm
    pl = pl_above_dark(m)
    assert wl[np.argmax(pl)] == pytest.approx(truth.pl_peak_nm, abs=5)
    assert relative_qy(m) == pytest.approx(truth.qy, rel=0.2)
    assert relative_qy(m) != truth.qy
    assert 3e3 < pl.max() < m.spectra.saturation_counts
    a_ex = truth.absorbance_at_excitation
    assert 0.03 < a_ex < 0.3
    assert not hasattr(m, "truth")
    assert "qy" not in m.metadata


def test_transient_early_reading_differs() -> None:
    """A reading taken before the outlet settles shows the old product; a settled one does not."""
    first = Conditions(200, 20, 300, 15, 20, 2, 3.6)
    early = SimulatedExecutor(seed=1, settling="fixed")
    late = SimulatedExecutor(seed=1, settling="fixed")
    early.run(first)
    late.run(first)
    early.procedure.settings = replace(early.settings, settle_residence_times=0.5,
                                       flush="auto")
    m_early = early.run(BEST)
    m_late = late.run(BEST)
    truth = late.truths[1]
    wl = m_late.spectra.wavelengths_nm
    assert abs(wl[np.argmax(pl_above_dark(m_late))] - truth.pl_peak_nm) < 4
    assert abs(wl[np.argmax(pl_above_dark(m_early))] - truth.pl_peak_nm) > 4
    trace = m_late.trace
    assert trace is not None
    assert trace.pl_counts.shape == (12, len(wl))


def test_determinism_and_seeds() -> None:
    a = SimulatedExecutor(seed=7).run(BEST)
    b = SimulatedExecutor(seed=7).run(BEST)
    c = SimulatedExecutor(seed=8).run(BEST)
    assert np.array_equal(a.spectra.pl_counts, b.spectra.pl_counts)
    assert not np.array_equal(a.spectra.pl_counts, c.spectra.pl_counts)


def test_state_dict_round_trip_is_bit_identical() -> None:
    ex = SimulatedExecutor(seed=11)
    ex.run(BEST)
    ex.run(Conditions(190, 15, 300, 20, 4, 2, 3.6))
    state = ex.state_dict()
    fresh = SimulatedExecutor(seed=11)
    fresh.load_state_dict(state)
    nxt = Conditions(175, 12, 285, 14, 8, 2.2, 3.6)
    m1, m2 = ex.run(nxt), fresh.run(nxt)
    assert np.array_equal(m1.spectra.pl_counts, m2.spectra.pl_counts)
    assert np.array_equal(m1.trace.pl_counts, m2.trace.pl_counts)  # type: ignore[union-attr]
    assert m1.finished_lab_h == m2.finished_lab_h
    assert ex.reagent_ml == fresh.reagent_ml


def test_clock_and_reagents_advance() -> None:
    ex = SimulatedExecutor(seed=0)
    m = ex.run(BEST)
    assert m.lab_hours * 60 >= m.metadata["settle_floor_min"] >= 1.5 * (13 + 15)
    assert ex.lab_clock_h == pytest.approx(m.finished_lab_h)
    assert all(v >= 0 for v in ex.reagent_ml.values())
    assert ex.reagent_ml["indium_halide"] > 0
    assert m.product_mg > 0


def test_clogging_fails_after_advancing_clock() -> None:
    ex = SimulatedExecutor(seed=0)
    with pytest.raises(ExperimentFailed) as err:
        ex.run(Conditions(225, 35, 290, 15, 6, 2, 3.6))
    assert err.value.reason == "clogging"
    assert ex.lab_clock_h > 0
    assert ex.reagent_ml["indium_halide"] > 0
    assert 0 in ex.truths


def test_bubbles_when_horizontal() -> None:
    ex = SimulatedExecutor(TwinConfig(orientation="horizontal"), seed=0)
    reasons = []
    for _ in range(20):
        try:
            ex.run(BEST)
        except ExperimentFailed as e:
            reasons.append(e.reason)
    assert "gas_bubbles" in reasons
    assert len(reasons) < 20
    vertical = DigitalTwin(TwinConfig()).truth(BEST)
    flat = DigitalTwin(TwinConfig(orientation="horizontal")).truth(BEST)
    assert flat.fwhm_nm > vertical.fwhm_nm


def test_no_emission_when_core_does_not_form() -> None:
    ex = SimulatedExecutor(seed=0)
    with pytest.raises(ExperimentFailed) as err:
        ex.run(Conditions(100, 1, 290, 15, 6, 2, 3.6))
    assert err.value.reason == "no_emission"


@pytest.mark.parametrize(("field", "value"), [("t_core_c", 400.0), ("s_to_zn", 50.0),
                                              ("tau_shell_min", 500.0)])
def test_bad_conditions_name_field(field: str, value: float) -> None:
    c = BEST.as_dict() | {field: value}
    with pytest.raises(ConditionsError, match=field):
        DigitalTwin().truth(Conditions(**c))


def test_vectorized_features_match_truth() -> None:
    tw = DigitalTwin()
    conds = [BEST, Conditions(200, 25, 300, 20, 30, 2.5, 4.0), Conditions(170, 8, 280, 12, 3, 1.5)]
    f = truth_features(ConditionArrays.from_conditions(conds), tw.config)
    for i, c in enumerate(conds):
        t = tw.truth(c)
        assert f.pl_peak_nm[i] == pytest.approx(t.pl_peak_nm, abs=0.05)
        assert f.fwhm_nm[i] == pytest.approx(t.fwhm_nm, abs=0.1)
        assert f.qy[i] == pytest.approx(t.qy)
    assert math.isfinite(float(f.fwhm_nm.sum()))


def test_jitter_moves_a_tank_profile_with_its_stage() -> None:
    """Per-tank temperatures scatter like the stage temperatures they override.

    Before, jitter left ``t_tank_c`` alone, and the simulated rig (a block per tank, so its feeds
    always carry a profile) realized every setpoint exactly: no temperature scatter at all.
    """
    tw = DigitalTwin()
    c = replace(BEST, t_tank_c=(175.0, 180.0, 185.0, 290.0, 295.0, 300.0, 305.0))
    r = tw.jitter(c, np.random.default_rng(3))
    d_core, d_shell = r.t_core_c - c.t_core_c, r.t_shell_c - c.t_shell_c
    assert 0.0 not in (d_core, d_shell) and d_core != d_shell
    assert np.subtract(r.t_tank_c, c.t_tank_c) == pytest.approx([d_core] * 3 + [d_shell] * 4)
    later = replace(c, s_inject_tank=5)  # tanks 1-4 are the core stage now
    r5 = tw.jitter(later, np.random.default_rng(3))
    assert np.subtract(r5.t_tank_c, c.t_tank_c) == pytest.approx([d_core] * 4 + [d_shell] * 3)
    plain = tw.jitter(BEST, np.random.default_rng(3))  # no profile: the same seven draws
    assert (plain.t_core_c, plain.t_shell_c, plain.tau_core_min) == (
        r.t_core_c, r.t_shell_c, r.tau_core_min)


def test_the_simulated_rig_realizes_the_temperature_scatter() -> None:
    """The rig's tanks run at their block PVs plus this run's stage offsets (one rule)."""
    ex = SimulatedExecutor(seed=3)
    seen: list[Conditions] = []
    physics = ex.rig.reactor.physics
    step = physics.step

    def spy(state, inputs, dt):  # type: ignore[no-untyped-def]
        if inputs.feed is not None:
            seen.append(inputs.feed)
        return step(state, inputs, dt)
    physics.step = spy  # type: ignore[method-assign]
    ex.run(BEST)
    realized = ex.twin.jitter(BEST, np.random.default_rng([3, 0]))
    last = seen[-1]
    pvs = ex.rig.reactor.tank_pvs()
    offsets = np.subtract(last.t_tank_c, pvs)
    assert offsets == pytest.approx([realized.t_core_c - 180.0] * 3
                                    + [realized.t_shell_c - 290.0] * 4, abs=1e-9)
