"""Per-channel mapping factors (``spread_factors``) and the channels that down-weight.

The first-order mapping term carries the kinetic lag of a ramp; only the core temperature has it
on the transient twin (docs/dynamic.md, "Per-channel factors"). These tests check the arithmetic,
the journal's reasons, the validation, and that the honesty checks still hold with the core
temperature alone keeping the full allowance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from autolab.config import load_campaign, parse_campaign
from autolab.dynamic import CascadeGeometry, MappingPolicy, Trajectory, map_outlet, observe
from autolab.dynamic_config import DynamicConfig
from autolab.exceptions import ConfigError
from autolab.records import Conditions
from tests.dynamic.harness import quasi_steady_stream, transient_stream, truth_at
from tests.dynamic.test_dynamic_campaign import CAMPAIGN
from tests.dynamic.test_honesty import CONFIG, FAST, GEO, RAMPS, TRANSIENT

SMALL = CascadeGeometry(3, 4)
#: The core temperature keeps κ = 1.5, every other channel κ = 0.5; the temperatures and the
#: shell feed down-weight beyond their full-weight limits, residence times and core feeds do not.
KINETIC = MappingPolicy(spread_factor=0.5, spread_factors={"t_core_c": 1.5, "t_tank_c": 1.5},
                        inflate_channels=frozenset({"t_core_c", "t_tank_c", "t_shell_c",
                                                    "s_to_zn"}))


def _c(t_core: float = 180.0, tau_core: float = 15.0) -> Conditions:
    return Conditions(t_core, tau_core, 280.0, 20.0, 2.0, 2.0, p_to_in=3.6)


def _two_channel_ramp() -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    tr = Trajectory((0.0, 300.0), (_c(170.0, 12.0), _c(200.0, 18.0)))
    t = np.array([150.0, 200.0, 250.0])
    m = map_outlet(tr, t, SMALL)
    return m, {"pl_peak_nm": np.full(3, 550.0)}, {"pl_peak_nm": np.full(3, 0.3)}


def test_each_channel_counts_its_spread_times_its_own_factor() -> None:
    m, f, s = _two_channel_ramp()
    grad = {"pl_peak_nm": {"t_core_c": 1.5, "tau_core_min": 2.0}}
    pol = MappingPolicy(measurement_floor={}, spread_factor=0.4, spread_factors={"t_core_c": 2.0})
    obs = observe(m, f, s, gradients=grad, policy=pol)
    sd_t = m.sd[:, m.channels.index("t_core_c")]
    sd_tau = m.sd[:, m.channels.index("tau_core_min")]
    for o, a, b in zip(obs, sd_t, sd_tau, strict=True):
        assert o.sigma_mapping["pl_peak_nm"] == pytest.approx(2.0 * 1.5 * a + 0.4 * 2.0 * b)


def test_uniform_factors_are_the_single_factor() -> None:
    """Every channel at the same κ reproduces ``spread_factor`` exactly (stream slopes too)."""
    tr = Trajectory((0.0, 60.0, 300.0), (_c(170.0, 12.0), _c(170.0, 12.0), _c(200.0, 18.0)))
    t = np.linspace(70.0, 300.0, 40)
    m = map_outlet(tr, t, SMALL)
    pl = 500.0 + 0.3 * m.mean[:, m.channels.index("t_core_c")]
    f, s = {"pl_peak_nm": pl}, {"pl_peak_nm": np.full(len(t), 0.2)}
    one = observe(m, f, s, policy=MappingPolicy(spread_factor=0.8))
    each = observe(m, f, s, policy=MappingPolicy(
        spread_factor=3.0, spread_factors={"t_core_c": 0.8, "tau_core_min": 0.8}))
    for a, b in zip(one, each, strict=True):
        assert a.sigma["pl_peak_nm"] == pytest.approx(b.sigma["pl_peak_nm"])
    assert KINETIC.factor("t_tank3_c") == 1.5 and KINETIC.factor("s_to_zn") == 0.5


def test_a_channel_left_out_of_inflate_channels_keeps_the_honest_sigma_and_says_so() -> None:
    tr = Trajectory((0.0, 5.0, 200.0), (_c(tau_core=10.0), _c(tau_core=14.0),
                                        _c(tau_core=14.0)))  # a jump of 40 % in tau_core
    t = np.linspace(0.0, 200.0, 81)
    m = map_outlet(tr, t, SMALL)
    f, s = {"pl_peak_nm": np.full(81, 550.0)}, {"pl_peak_nm": np.full(81, 0.3)}
    grad = {"pl_peak_nm": {"tau_core_min": 1.0}}
    every = observe(m, f, s, gradients=grad)
    core = observe(m, f, s, gradients=grad, policy=KINETIC)
    wide = [i for i, o in enumerate(every) if o.accepted and o.weight < 1.0]
    assert wide
    for i in wide:
        assert "down-weighted: tau_core_min spread" in every[i].reason
        o = core[i]
        assert o.accepted and o.weight == 1.0
        assert "wide: tau_core_min spread" in o.reason and "not inflated" in o.reason
        assert o.sigma["pl_peak_nm"] == pytest.approx(
            np.hypot(o.sigma_measurement["pl_peak_nm"], o.sigma_mapping["pl_peak_nm"]))
    refused = [a.accepted for a in every] == [b.accepted for b in core]
    assert refused, "the refusal limits hold for every channel"


def test_bad_factors_and_channels_name_the_field() -> None:
    with pytest.raises(ConfigError, match="spread_factors"):
        MappingPolicy(spread_factors={"t_core_c": -1.0})
    with pytest.raises(ConfigError, match="spread_factor"):
        MappingPolicy(spread_factor=float("inf"))
    with pytest.raises(ConfigError, match=r"spread_factors: unknown channel\(s\) \['t_cor_c'\]"):
        MappingPolicy(spread_factors={"t_cor_c": 1.0})
    with pytest.raises(ConfigError, match=r"inflate_channels: unknown channel\(s\) \['taus'\]"):
        MappingPolicy(inflate_channels=frozenset({"taus"}))
    policy = DynamicConfig.model_validate({"mapping": {
        "spread_factor": 0.5, "spread_factors": {"t_core_c": 1.5},
        "inflate_channels": ["t_core_c"]}}).policy()
    assert policy.factor("t_core_c") == 1.5 and policy.factor("cl_to_i") == 0.5
    assert policy.inflates("t_core_c") and not policy.inflates("cl_to_i")
    assert DynamicConfig().policy().inflates("cl_to_i")  # default: every channel
    base = load_campaign(CAMPAIGN).model_dump(mode="json")
    for mapping, needle in (({"spread_factors": {"t_cor_c": 1}}, "spread_factors.*t_cor_c"),
                            ({"spread_factors": {"t_core_c": -1}}, "spread_factors.*between"),
                            ({"spread_factors": {"t_core_c": 11}}, "spread_factors"),
                            ({"inflate_channels": ["core"]}, "inflate_channels.*core")):
        with pytest.raises(ConfigError, match=needle):
            parse_campaign({**base, "dynamic": {"mapping": mapping}}, "test")


def _within(tr: Trajectory, stream: Any, policy: MappingPolicy) -> dict[str, float]:
    obs = observe(map_outlet(tr, stream.times_min, GEO), stream.features, stream.sigma,
                  policy=policy, held_before=tr.held_before)
    acc = [o for o in obs if o.accepted]
    truth = truth_at([o.conditions for o in acc], CONFIG)
    return {k: float(np.mean([abs(o.features[k] - truth[k][i]) <= 2 * o.sigma[k]
                              for i, o in enumerate(acc)])) for k in stream.features}


@pytest.mark.parametrize("name", list(RAMPS))
def test_the_honesty_checks_hold_with_the_core_temperature_alone_at_full_allowance(
        name: str) -> None:
    """The transient twin (kinetics): every ramp of the honesty checks holds with these factors
    (without the shell feed's down-weighting, the S:Zn ramp's QY holds only 80-85 %)."""
    tr = RAMPS[name]
    t = np.linspace(10.0, tr.duration_min, 20)
    shares = _within(tr, transient_stream(TRANSIENT, tr, t, CONFIG, settle_min=200.0), KINETIC)
    assert min(shares.values()) >= 0.9, f"{name}: {shares}"


def test_the_too_fast_ramp_holds_on_sampled_elements_with_core_factors() -> None:
    t = np.linspace(10.0, FAST.duration_min, 20)
    shares = _within(FAST, quasi_steady_stream(FAST, t, GEO, CONFIG, n_el=96, seed=2), KINETIC)
    assert min(shares.values()) >= 0.9, shares
