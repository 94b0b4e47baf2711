"""Mapped observations: uncertainty from spread and slope, down-weighting, refusal, reasons."""

from __future__ import annotations

import numpy as np
import pytest

from autolab.dynamic import (
    CascadeGeometry,
    DynamicObservation,
    MappingPolicy,
    SpreadLimit,
    Trajectory,
    map_outlet,
    observe,
    observe_batch,
    to_tell,
)
from autolab.exceptions import ConfigError
from autolab.records import Conditions

GEO = CascadeGeometry(3, 4)
#: The analyzer's sigma alone (no systematic floor), where a test checks the exact arithmetic.
BARE = MappingPolicy(measurement_floor={})


def _c(t_core: float = 180.0, p: float = 3.6) -> Conditions:
    return Conditions(t_core, 15.0, 280.0, 20.0, 2.0, 2.0, p_to_in=p)


def _stream(tr: Trajectory, t: np.ndarray, fn, noise: float = 0.0,  # type: ignore[no-untyped-def]
            seed: int = 0) -> tuple[object, dict[str, np.ndarray], dict[str, np.ndarray]]:
    m = map_outlet(tr, t, GEO)
    rng = np.random.default_rng(seed)
    f = fn(m) + noise * rng.standard_normal(len(t))
    return m, {"pl_peak_nm": f}, {"pl_peak_nm": np.full(len(t), max(noise, 1e-3))}


def test_a_hold_gives_steady_full_weight_readings() -> None:
    tr = Trajectory((0.0, 60.0), (_c(), _c()))
    t = np.linspace(0.0, 60.0, 7)
    m = map_outlet(tr, t, GEO)
    obs = observe(m, {"pl_peak_nm": np.full(7, 550.0)}, {"pl_peak_nm": np.full(7, 0.4)})
    assert all(o.steady and o.accepted and o.weight == 1.0 and o.reason == "" for o in obs)
    assert all(o.sigma["pl_peak_nm"] == pytest.approx(np.hypot(0.4, 0.25)) for o in obs)
    bare = observe(m, {"pl_peak_nm": np.full(7, 550.0)}, {"pl_peak_nm": np.full(7, 0.4)},
                   policy=BARE)
    assert all(o.sigma["pl_peak_nm"] == pytest.approx(0.4) for o in bare)
    assert obs[3].conditions == _c()


def test_slow_ramp_with_a_known_gradient_adds_slope_times_spread() -> None:
    tr = Trajectory((0.0, 300.0), (_c(170.0), _c(200.0)))  # 0.1 °C/min
    t = np.array([150.0, 200.0])
    m = map_outlet(tr, t, GEO)
    sd = m.sd[:, m.channels.index("t_core_c")]
    obs = observe(m, {"pl_peak_nm": np.array([550.0, 552.0])},
                  {"pl_peak_nm": np.array([0.3, 0.3])},
                  gradients={"pl_peak_nm": {"t_core_c": 1.5}}, policy=BARE)
    kappa = MappingPolicy().spread_factor
    for o, s in zip(obs, sd, strict=True):
        assert o.sigma_mapping["pl_peak_nm"] == pytest.approx(kappa * 1.5 * s)
        assert o.sigma["pl_peak_nm"] == pytest.approx(np.hypot(0.3, kappa * 1.5 * s))
        assert o.accepted and not o.steady and o.weight == 1.0


def _estimated_and_known_spread(tr: Trajectory, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PL mapping spread of a stream linear in ``t_core_c`` (1.5 nm/°C, noise 0.05 nm).

    Returns the spread from the slope ``observe`` estimates on the stream, then the one from
    the slope given to it.
    """

    def fn(m):  # type: ignore[no-untyped-def]
        return 500.0 + 1.5 * m.mean[:, m.channels.index("t_core_c")]

    m, f, s = _stream(tr, t, fn, noise=0.05)
    est = observe(m, f, s)  # type: ignore[arg-type]
    known = observe(m, f, s, gradients={"pl_peak_nm": {"t_core_c": 1.5}})  # type: ignore[arg-type]
    a = np.array([o.sigma_mapping["pl_peak_nm"] for o in est])
    b = np.array([o.sigma_mapping["pl_peak_nm"] for o in known])
    return a, b


def test_slope_is_estimated_from_the_stream() -> None:
    """A feature linear in the mapped conditions: the stream's slope gives the same spread."""
    tr = Trajectory((0.0, 60.0, 400.0), (_c(170.0), _c(170.0), _c(200.0)))
    a, b = _estimated_and_known_spread(tr, np.linspace(100.0, 400.0, 61))
    np.testing.assert_allclose(a[5:-5], b[5:-5], rtol=0.1)


def test_turnaround_keeps_the_slope() -> None:
    """At the top of an up-down ramp the mapped conditions turn back; the slope must not vanish."""
    tr = Trajectory((0.0, 150.0, 300.0), (_c(170.0), _c(200.0), _c(170.0)))
    a, b = _estimated_and_known_spread(tr, np.linspace(60.0, 300.0, 49))
    np.testing.assert_allclose(a, b, rtol=0.15)


def test_fast_ramp_is_down_weighted_then_refused_with_journal_reasons() -> None:
    tr = Trajectory((0.0, 10.0, 200.0), (_c(170.0), _c(210.0), _c(210.0)))  # 4 °C/min
    t = np.linspace(0.0, 200.0, 81)
    m = map_outlet(tr, t, GEO)
    obs = observe(m, {"pl_peak_nm": np.full(81, 550.0)}, {"pl_peak_nm": np.full(81, 0.3)},
                  gradients={"pl_peak_nm": {"t_core_c": 1.0}}, policy=BARE)
    refused = [o for o in obs if not o.accepted]
    lowered = [o for o in obs if o.accepted and o.weight < 1.0]
    assert refused and lowered
    assert all(o.weight == 0.0 for o in refused)
    assert all("refused: t_core_c spread" in o.reason and "exceeds 8 °C" in o.reason
               for o in refused)
    for o in lowered:
        assert "down-weighted: t_core_c spread" in o.reason
        assert o.weight == pytest.approx(1.0 / (o.spread["t_core_c"] / 2.0) ** 2)
        full = np.hypot(0.3, o.sigma_mapping["pl_peak_nm"])
        assert o.sigma["pl_peak_nm"] == pytest.approx(full * o.spread["t_core_c"] / 2.0)
    assert obs[-1].steady and obs[-1].weight == 1.0  # the outlet settles on the new hold


def test_relative_limits_and_a_channel_without_a_limit() -> None:
    tr = Trajectory((0.0, 5.0, 200.0), (_c(p=2.0), _c(p=5.0), _c(p=5.0)))
    m = map_outlet(tr, np.array([40.0]), GEO)
    obs = observe(m, {"qy": np.array([0.3])}, {"qy": np.array([0.01])},
                  gradients={"qy": {"p_to_in": 0.01}})
    assert not obs[0].accepted and "refused: p_to_in spread" in obs[0].reason
    assert "%" in obs[0].reason
    strict = MappingPolicy(spread_limits={"t_core_c": SpreadLimit(2.0, 8.0)})
    obs = observe(m, {"qy": np.array([0.3])}, {"qy": np.array([0.01])}, policy=strict,
                  gradients={"qy": {"p_to_in": 0.01}})
    assert "p_to_in varies and the mapping policy has no spread limit" in obs[0].reason


def test_unknown_history_is_refused_when_not_held_before() -> None:
    tr = Trajectory((0.0, 100.0), (_c(), _c()), held_before=False)
    m = map_outlet(tr, np.array([10.0, 200.0]), GEO)
    obs = observe(m, {"qy": np.array([0.3, 0.3])}, {"qy": np.array([0.01, 0.01])},
                  held_before=tr.held_before)
    assert not obs[0].accepted and "entered before the trajectory started" in obs[0].reason
    assert obs[1].accepted and obs[1].steady


def test_missing_feature_and_mixing_broadening() -> None:
    tr = Trajectory((0.0, 300.0), (_c(170.0), _c(200.0)))
    m = map_outlet(tr, np.array([150.0, 200.0]), GEO)
    obs = observe(m, {"pl_peak_nm": np.array([550.0, np.nan]), "fwhm_nm": np.array([50.0, 50.0])},
                  {"pl_peak_nm": np.array([0.3, 0.3]), "fwhm_nm": np.array([0.5, 0.5])},
                  gradients={"pl_peak_nm": {"t_core_c": 3.0}, "fwhm_nm": {}})
    assert not obs[1].accepted and "pl_peak_nm not measured" in obs[1].reason
    s_peak = 3.0 * obs[0].spread["t_core_c"]
    mix = np.sqrt(50.0 ** 2 + (2.3548 * s_peak) ** 2) - 50.0
    assert obs[0].sigma_mapping["fwhm_nm"] == pytest.approx(mix, rel=1e-3)


def test_round_trip_and_bad_input() -> None:
    tr = Trajectory((0.0, 300.0), (_c(170.0), _c(200.0)))
    m = map_outlet(tr, np.array([150.0]), GEO)
    o = observe(m, {"qy": np.array([0.3])}, {"qy": np.array([0.01])},
                gradients={"qy": {"t_core_c": 0.001}})[0]
    assert DynamicObservation.from_dict(o.to_dict()) == o
    with pytest.raises(ConfigError, match="same feature names"):
        observe(m, {"qy": np.array([0.3])}, {"fwhm_nm": np.array([0.01])})
    with pytest.raises(ConfigError, match="one per reading"):
        observe(m, {"qy": np.array([0.3, 0.2])}, {"qy": np.array([0.01, 0.01])})
    with pytest.raises(ConfigError, match="SpreadLimit"):
        SpreadLimit(3.0, 2.0)


def test_an_optimum_inside_the_ramp_is_covered_by_the_curvature_term() -> None:
    """At an optimum the slope vanishes, but a mixture still reads below the centre value."""
    tr = Trajectory((0.0, 10.0, 130.0, 200.0), (_c(170.0), _c(170.0), _c(220.0), _c(220.0)))
    t = np.linspace(20.0, 200.0, 61)
    m = map_outlet(tr, t, GEO)
    j = m.channels.index("t_core_c")
    centre = 0.3 - 2e-4 * (m.mean[:, j] - 195.0) ** 2
    mixture = centre - 2e-4 * m.sd[:, j] ** 2  # E[f(x)] of a quadratic f
    obs = observe(m, {"qy": mixture}, {"qy": np.full(61, 1e-4)})
    near = np.abs(m.mean[:, j] - 195.0) < 3.0
    assert near.any()
    for o, c in zip(obs, centre, strict=True):
        assert abs(o.features["qy"] - c) <= 2.0 * o.sigma["qy"]


def test_observe_batch_reads_the_analyzers_errors() -> None:
    from autolab.analysis import FeatureBatch

    n = 3
    one = np.ones(n)
    batch = FeatureBatch(pl_peak_nm=550.0 * one, fwhm_nm=50.0 * one, qy=0.3 * one,
                         abs_peak_nm=520.0 * one, absorbance_at_excitation=0.1 * one,
                         pl_peak_nm_err=0.2 * one, fwhm_nm_err=0.5 * one, qy_err=0.01 * one,
                         abs_peak_nm_err=1.0 * one, pl_snr=100.0 * one,
                         flags=np.zeros(n, dtype=np.int64))
    m = map_outlet(Trajectory((0.0, 60.0), (_c(), _c())), np.array([0.0, 30.0, 60.0]), GEO)
    obs = observe_batch(m, batch, policy=BARE)
    assert [o.sigma for o in obs] == [{"pl_peak_nm": 0.2, "fwhm_nm": 0.5, "qy": 0.01}] * 3
    floored = observe_batch(m, batch)[0]
    assert floored.sigma["qy"] == pytest.approx(0.01)  # the analyzer's sigma holds the QY's
    own = observe_batch(m, batch, policy=MappingPolicy(measurement_floor={"qy": 0.025}))[0]
    assert own.sigma["qy"] == pytest.approx(np.hypot(0.01, 0.025 * 0.3))  # a relative floor
    assert floored.sigma_measurement["fwhm_nm"] == pytest.approx(np.hypot(0.5, 0.5))
    with pytest.raises(ConfigError, match="not analyzer features"):
        observe_batch(m, batch, ("pl_snr",))
    from autolab.records import QualityFlag

    flagged = FeatureBatch(**{**{f: getattr(batch, f) for f in batch.__dataclass_fields__},
                              "flags": np.array([0, int(QualityFlag.SATURATED),
                                                 int(QualityFlag.TRAP_TAIL)])})
    obs = observe_batch(m, flagged)
    assert [o.accepted for o in obs] == [True, False, True]  # a warning flag is no refusal
    assert obs[1].reason == "refused: analyzer flags saturated" and obs[1].weight == 0.0


def test_to_tell_keeps_accepted_readings_with_their_sigma() -> None:
    tr = Trajectory((0.0, 10.0, 200.0), (_c(170.0), _c(210.0), _c(210.0)))
    m = map_outlet(tr, np.linspace(0.0, 200.0, 21), GEO)
    obs = observe(m, {"pl_peak_nm": np.full(21, 550.0)}, {"pl_peak_nm": np.full(21, 0.3)},
                  gradients={"pl_peak_nm": {"t_core_c": 1.0}})
    cond, out, sd = to_tell(obs, ["t_core_c", "tau_core_min"], ["pl_peak_nm"])
    kept = [o for o in obs if o.accepted]
    assert 0 < len(cond) == len(kept) < len(obs)
    assert cond[0] == {"t_core_c": kept[0].conditions.t_core_c, "tau_core_min": 15.0}
    assert sd == [{"pl_peak_nm": o.sigma["pl_peak_nm"]} for o in kept]
    assert out[0] == {"pl_peak_nm": 550.0}
    with pytest.raises(ConfigError, match="not features"):
        to_tell(obs, ["t_core_c"], ["qy"])


def test_readings_out_of_time_order_are_refused() -> None:
    m = map_outlet(Trajectory((0.0, 60.0), (_c(), _c())), np.array([30.0, 10.0]), GEO)
    with pytest.raises(ConfigError, match="time order"):
        observe(m, {"qy": np.array([0.3, 0.3])}, {"qy": np.array([0.01, 0.01])})


def test_a_sparse_stream_still_gets_slopes_from_its_neighbours() -> None:
    """Readings further apart than the slope window: the fit takes the nearest five."""
    tr = Trajectory((0.0, 10.0, 400.0), (_c(170.0), _c(170.0), _c(200.0)))
    t = np.linspace(60.0, 400.0, 8)  # 49 min apart, the window is +-18 min

    def fn(m):  # type: ignore[no-untyped-def]
        return 500.0 + 1.5 * m.mean[:, m.channels.index("t_core_c")]

    m, f, s = _stream(tr, t, fn, noise=0.05)
    obs = observe(m, f, s)  # type: ignore[arg-type]
    assert all(o.accepted for o in obs)
    known = observe(m, f, s, gradients={"pl_peak_nm": {"t_core_c": 1.5}})  # type: ignore[arg-type]
    a = np.array([o.sigma_mapping["pl_peak_nm"] for o in obs])
    b = np.array([o.sigma_mapping["pl_peak_nm"] for o in known])
    np.testing.assert_allclose(a, b, rtol=0.2, atol=0.02)


def test_a_jump_within_twice_the_full_weight_limits_cannot_spoil_a_reading() -> None:
    policy = MappingPolicy()  # t_core_c full weight up to 2 °C, tau 5 %, ratios 5 %
    assert policy.jump_keeps_full_weight(_c(180.0), _c(183.9))  # 3.9 °C: half is 1.95 ≤ 2
    assert not policy.jump_keeps_full_weight(_c(180.0), _c(184.2))
    assert policy.jump_keeps_full_weight(_c(), _c())
    # relative limits scale with the smaller value: tau 15 -> 16.4 min is 9.3 % of 15
    longer = Conditions(180.0, 16.4, 280.0, 20.0, 2.0, 2.0, p_to_in=3.6)
    assert policy.jump_keeps_full_weight(_c(), longer)
    much_longer = Conditions(180.0, 16.6, 280.0, 20.0, 2.0, 2.0, p_to_in=3.6)
    assert not policy.jump_keeps_full_weight(_c(), much_longer)
    # a moving channel without a limit cannot be judged: it counts as spoiling
    no_t = MappingPolicy(spread_limits={"tau_core_min": SpreadLimit(0.05, 0.2, relative=True)})
    assert not no_t.jump_keeps_full_weight(_c(180.0), _c(181.0))
    assert no_t.jump_keeps_full_weight(_c(), longer)
    # against the refusal limits (8 °C for the core temperature): down-weighted, never refused
    assert policy.jump_keeps_accepted(_c(180.0), _c(195.9))
    assert not policy.jump_keeps_accepted(_c(180.0), _c(196.2))
    assert not no_t.jump_keeps_accepted(_c(180.0), _c(181.0))


def test_the_jump_bound_holds_on_the_mapping_at_every_outlet_time() -> None:
    # the bound the planner relies on: a jump at the devices' pace of just under twice the
    # full-weight limit keeps every reading after it at full weight over the whole washout
    before, after = _c(180.0), _c(183.9)
    tr = Trajectory((0.0, 30.0, 30.4, 150.0), (before, before, after, after))
    t = np.linspace(31.0, 150.0, 120)
    m = map_outlet(tr, t, GEO)
    assert float(np.max(m.sd[:, m.channels.index("t_core_c")])) <= 2.0
    obs = observe(m, {"pl_peak_nm": np.linspace(550.0, 552.0, 120)},
                  {"pl_peak_nm": np.full(120, 0.3)})
    assert all(o.accepted and o.weight == 1.0 for o in obs)
    # a jump of three times the limit does spoil some of them: the bound is not idle
    far = Trajectory((0.0, 30.0, 31.2, 150.0), (before, before, _c(192.0), _c(192.0)))
    m = map_outlet(far, t, GEO)
    assert float(np.max(m.sd[:, m.channels.index("t_core_c")])) > 2.0
