"""Honesty checks (issue 10 §2): mapped ramp readings vs the twin's steady-state truth.

Over several ramps and rates, every accepted reading's features must match the twin's noise-free
steady state at the reading's mapped conditions within their stated uncertainty: at least 90 %
within 2σ, per ramp. A ramp too fast for the mapping must be refused or down-weighted, and say so.
The outlet comes from the transient twin (the product history resolved per tank, kinetics and
all), from sampled fluid elements (quasi-static chemistry), and from the simulated rig's tracer
physics; docs/dynamic.md has the figures.
"""

from __future__ import annotations

import numpy as np
import pytest

from autolab.dynamic import (
    CascadeGeometry,
    MappingPolicy,
    RampLimits,
    Trajectory,
    map_outlet,
    observe,
    observe_batch,
    plan_ramp,
)
from autolab.dynamic.channels import TRACER_ROLES
from autolab.records import Conditions
from autolab.twin.config import TwinConfig
from autolab.twin.transient import MixingCascade, TransientCascade
from autolab.twin.twin import DigitalTwin
from tests.dynamic.harness import (
    Stream,
    analyzed_stream,
    quasi_steady_stream,
    transient_stream,
    truth_at,
)

CONFIG = TwinConfig()
GEO = CascadeGeometry(CONFIG.n_core_tanks, CONFIG.n_shell_tanks)
BASE = {"t_core_c": 190.0, "tau_core_min": 15.0, "t_shell_c": 280.0, "tau_shell_min": 20.0,
        "cl_to_i": 2.0, "s_to_zn": 2.0, "p_to_in": 3.6}


def _c(**kw: float) -> Conditions:
    return Conditions.from_mapping({**BASE, **kw})


def _ramp(a: Conditions, b: Conditions, ramp_min: float, hold_min: float = 60.0) -> Trajectory:
    return Trajectory((0.0, 20.0, 20.0 + ramp_min, 20.0 + ramp_min + hold_min), (a, a, b, b))


LIMITS = RampLimits.for_reactor(heating_c_per_min=10.0, cooling_c_per_min=5.0)
RAMPS = {
    "core T up, 0.5 °C/min": _ramp(_c(t_core_c=175.0), _c(t_core_c=215.0), 80.0),
    "core T down, 0.2 °C/min": _ramp(_c(t_core_c=215.0), _c(t_core_c=175.0), 200.0),
    "shell T up, 0.67 °C/min": _ramp(_c(t_shell_c=260.0), _c(t_shell_c=300.0), 60.0),
    "core tau 10 -> 25 min": _ramp(_c(tau_core_min=10.0), _c(tau_core_min=25.0), 60.0),
    "Cl:I 1 -> 4": _ramp(_c(cl_to_i=1.0), _c(cl_to_i=4.0), 90.0),
    "S:Zn 1.5 -> 3": _ramp(_c(s_to_zn=1.5), _c(s_to_zn=3.0), 60.0),
    "planned: core T + tau + P:In": plan_ramp(
        _c(), _c(t_core_c=210.0, tau_core_min=20.0, p_to_in=4.2),
        LIMITS.tightened(MappingPolicy().rate_caps(_c(), GEO)), hold_start_min=20.0,
        hold_end_min=60.0),
}
FAST = _ramp(_c(t_core_c=175.0), _c(t_core_c=215.0), 4.0)  # 10 °C/min: the heater's limit


def _z(tr: Trajectory, stream: Stream, roles: dict | None = None,  # type: ignore[type-arg]
       ) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    mapped = map_outlet(tr, stream.times_min, GEO, roles=roles)
    obs = observe(mapped, stream.features, stream.sigma, held_before=tr.held_before)
    truth = truth_at([o.conditions for o in obs], CONFIG)
    z = {k: np.array([(o.features[k] - truth[k][i]) / o.sigma[k] for i, o in enumerate(obs)])
         for k in stream.features}
    return z, np.array([o.accepted for o in obs]), [o.reason for o in obs]


@pytest.mark.parametrize("name", ["core T up, 0.5 °C/min", "shell T up, 0.67 °C/min",
                                  "Cl:I 1 -> 4", "S:Zn 1.5 -> 3"])
def test_mapped_readings_match_the_steady_state_truth_within_2_sigma(name: str) -> None:
    tr = RAMPS[name]
    t = np.linspace(10.0, tr.duration_min, 20)
    z, accepted, _ = _z(tr, quasi_steady_stream(tr, t, GEO, CONFIG, n_el=96, seed=1))
    assert accepted.mean() >= 0.8, f"{name}: only {accepted.mean():.0%} of the readings accepted"
    for k, zk in z.items():
        within = float(np.mean(np.abs(zk[accepted]) <= 2.0))
        assert within >= 0.9, f"{name}: {k} {within:.0%} within 2σ (z = {np.round(zk, 1)})"


def test_too_fast_a_ramp_is_refused_or_down_weighted_and_says_so() -> None:
    t = np.linspace(10.0, FAST.duration_min, 20)
    z, accepted, reasons = _z(FAST, quasi_steady_stream(FAST, t, GEO, CONFIG, n_el=96, seed=2))
    assert not accepted.all()
    assert any(r.startswith("refused: t_core_c spread") for r in reasons)
    assert any("down-weighted: t_core_c spread" in r for r in reasons)
    for k, zk in z.items():  # what is kept still holds its stated uncertainty
        assert np.mean(np.abs(zk[accepted]) <= 2.0) >= 0.9, k


@pytest.mark.parametrize("name", ["shell T up, 0.67 °C/min", "Cl:I 1 -> 4",
                                  "core T up, 0.5 °C/min"])
def test_the_mapping_holds_on_the_simulated_rigs_tracer_physics(name: str) -> None:
    """The simulated rig's MixingCascade labels each product with its feed at tank 1; mapped with
    those roles, the readings are as honest as on the sampled elements."""
    tr = RAMPS[name]
    t = np.linspace(10.0, tr.duration_min, 20)
    stream = transient_stream(MixingCascade(DigitalTwin(CONFIG).product, CONFIG), tr, t, CONFIG)
    z, accepted, _ = _z(tr, stream, roles=TRACER_ROLES)
    for k, zk in z.items():
        assert np.mean(np.abs(zk[accepted]) <= 2.0) >= 0.9, f"{name}: {k} z = {np.round(zk, 1)}"


TRANSIENT = TransientCascade(CONFIG)


@pytest.mark.parametrize("name", ["shell T up, 0.67 °C/min", "core tau 10 -> 25 min"])
def test_the_mapping_holds_on_the_transient_twin(name: str) -> None:
    """The transient twin resolves what each element went through; the mapping's quasi-static
    reading of it must still hold its stated uncertainty (the first-order term carries the
    kinetic history of a temperature ramp)."""
    tr = RAMPS[name]
    t = np.linspace(10.0, tr.duration_min, 20)
    z, accepted, _ = _z(tr, transient_stream(TRANSIENT, tr, t, CONFIG, settle_min=200.0))
    assert accepted.mean() >= 0.8
    for k, zk in z.items():
        assert np.mean(np.abs(zk[accepted]) <= 2.0) >= 0.9, f"{name}: {k} z = {np.round(zk, 1)}"


def test_too_fast_a_ramp_on_the_transient_twin_is_flagged_and_the_rest_holds() -> None:
    t = np.linspace(10.0, FAST.duration_min, 20)
    z, accepted, reasons = _z(FAST, transient_stream(TRANSIENT, FAST, t, CONFIG,
                                                     settle_min=200.0))
    assert not accepted.all()
    assert any(r.startswith("refused: t_core_c spread") for r in reasons)
    for k, zk in z.items():
        assert np.mean(np.abs(zk[accepted]) <= 2.0) >= 0.9, k


@pytest.mark.parametrize("name", ["core T down, 0.2 °C/min", "planned: core T + tau + P:In"])
def test_end_to_end_through_the_analyzer_on_the_transient_twin(name: str) -> None:
    """Raw frames of the transient twin's outlet (shot and read noise) through the real analyzer:
    its sigmas plus the policy's systematic floor plus the mapping hold the truth."""
    tr = RAMPS[name]
    t = np.linspace(10.0, tr.duration_min, 20)
    batch = analyzed_stream(TRANSIENT, tr, t, CONFIG, settle_min=200.0, seed=3)
    obs = observe_batch(map_outlet(tr, t, GEO), batch)
    truth = truth_at([o.conditions for o in obs], CONFIG)
    accepted = np.array([o.accepted for o in obs])
    assert accepted.mean() >= 0.8
    for k in ("pl_peak_nm", "fwhm_nm", "qy"):
        z = np.array([(o.features[k] - truth[k][i]) / o.sigma[k] for i, o in enumerate(obs)])
        assert np.mean(np.abs(z[accepted]) <= 2.0) >= 0.9, f"{name}: {k} z = {np.round(z, 1)}"


def test_a_per_tank_temperature_ramp_holds_on_the_transient_twin() -> None:
    """One shell tank's own heater ramps 260 -> 300 °C: the per-tank role (the element's share of
    its stage time in that tank) maps it."""
    nan = float("nan")
    a = _c(t_tank_c=(nan, nan, nan, nan, 260.0))
    b = _c(t_tank_c=(nan, nan, nan, nan, 300.0))
    tr = Trajectory((0.0, 20.0, 100.0, 180.0), (a, a, b, b))
    t = np.linspace(10.0, tr.duration_min, 20)
    z, accepted, _ = _z(tr, transient_stream(TRANSIENT, tr, t, CONFIG, settle_min=200.0))
    assert accepted.all()
    for k, zk in z.items():
        assert np.mean(np.abs(zk) <= 2.0) >= 0.9, f"{k} z = {np.round(zk, 1)}"
