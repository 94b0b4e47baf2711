"""RTD mapping: exact lags of linear ramps, tracer steps against the tank ODE, flow time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.dynamic import CascadeGeometry, Trajectory, age_sd_min, map_outlet
from autolab.exceptions import ConfigError
from autolab.records import Conditions
from autolab.twin.cascade import erlang_cdf, washout

GEO = CascadeGeometry(3, 4)
TAU_C, TAU_S = 15.0, 20.0  # 5 min per tank in both stages: the whole cascade is Erlang(7)


def _c(**kw: float) -> Conditions:
    base = {"t_core_c": 180.0, "tau_core_min": TAU_C, "t_shell_c": 280.0,
            "tau_shell_min": TAU_S, "cl_to_i": 2.0, "s_to_zn": 2.0, "p_to_in": 3.6}
    return Conditions.from_mapping({**base, **kw})


def test_constant_conditions_map_to_themselves_without_spread() -> None:
    m = map_outlet(Trajectory((0.0, 100.0), (_c(), _c())), np.array([0.0, 50.0, 100.0]), GEO)
    for i in range(3):
        assert m.conditions(i) == _c()
        assert all(v == 0.0 for v in m.spread(i).values())
    # equal-mass quantile nodes: the mean age is within 1 % of tau_core + tau_shell
    assert m.mean_age_min == pytest.approx(TAU_C + TAU_S, rel=0.01)
    assert m.before_start[0] == 1.0
    assert m.before_start[2] < 0.01


@pytest.mark.parametrize(("channel", "lag", "var"), [
    ("p_to_in", TAU_C + TAU_S, TAU_C ** 2 / 3 + TAU_S ** 2 / 4),   # carried from tank 1
    ("s_to_zn", TAU_S, TAU_S ** 2 / 4),                             # carried from the shell inlet
    ("t_core_c", TAU_S + TAU_C / 2, None),                          # core tanks' average
    ("t_shell_c", TAU_S / 2, None),                                 # shell tanks' average
])
def test_linear_ramp_maps_with_the_exact_lag(channel: str, lag: float, var: float | None) -> None:
    """For x = x0 + r·t every role has a closed-form mean lag (and carried ones an exact sd)."""
    x0 = {"p_to_in": 3.0, "s_to_zn": 1.5, "t_core_c": 170.0, "t_shell_c": 250.0}[channel]
    r = {"p_to_in": 0.005, "s_to_zn": 0.005, "t_core_c": 0.2, "t_shell_c": 0.2}[channel]
    end = 400.0
    tr = Trajectory((0.0, end), (_c(**{channel: x0}), _c(**{channel: x0 + r * end})))
    t = np.array([200.0, 300.0, 400.0])  # long after the start: the whole RTD is on the ramp
    m = map_outlet(tr, t, GEO, n_nodes=48)
    j = m.channels.index(channel)
    np.testing.assert_allclose(m.mean[:, j], x0 + r * (t - lag), atol=abs(r) * 0.6)
    if var is not None:
        np.testing.assert_allclose(m.sd[:, j], r * np.sqrt(var), rtol=0.03)


def test_carried_step_follows_the_tank_ode() -> None:
    """A step of a feed ratio reaches the outlet exactly as a tracer through the tanks does."""
    tr = Trajectory((0.0, 0.01), (_c(p_to_in=3.0), _c(p_to_in=4.0)))
    t = np.linspace(5.0, 120.0, 24)
    m = map_outlet(tr, t, GEO, n_nodes=64)
    frac = (m.mean[:, m.channels.index("p_to_in")] - 3.0) / 1.0
    tanks = np.full(7, 5.0)
    ode = np.array([washout(np.zeros(7), tanks, float(x), inlet=1.0)[-1] for x in t])
    np.testing.assert_allclose(frac, ode, atol=0.02)
    np.testing.assert_allclose(frac, erlang_cdf(t, TAU_C + TAU_S, 7), atol=0.02)


def test_flow_change_runs_the_rtd_on_flow_weighted_time() -> None:
    """Doubling the flows halves every tank time: the tracer washes out twice as fast in clock
    time, which only a flow-weighted (cumulative volume) clock gets right."""
    fast = _c(p_to_in=4.0, tau_core_min=TAU_C / 2, tau_shell_min=TAU_S / 2)
    tr = Trajectory((0.0, 0.01), (_c(p_to_in=3.0), fast))
    t = np.linspace(3.0, 60.0, 20)
    m = map_outlet(tr, t, GEO, n_nodes=64)
    frac = m.mean[:, m.channels.index("p_to_in")] - 3.0
    ode = np.array([washout(np.zeros(7), np.full(7, 2.5), float(x), inlet=1.0)[-1] for x in t])
    np.testing.assert_allclose(frac, ode, atol=0.02)
    tau = m.mean[:, m.channels.index("tau_core_min")]
    assert np.all(np.diff(tau) <= 1e-9)  # from 15 down to 7.5 min
    assert tau[-1] == pytest.approx(TAU_C / 2, rel=0.01)


def test_per_tank_temperature_near_the_outlet_shows_first() -> None:
    """Fluid leaving shortly after a step passed tank 7 after it, but tank 1 long before it."""
    prof0 = (180.0, 180.0, 180.0, 280.0, 280.0, 280.0, 280.0)
    prof1 = (190.0, 180.0, 180.0, 280.0, 280.0, 280.0, 290.0)
    tr = Trajectory((0.0, 0.01), (_c(t_tank_c=prof0), _c(t_tank_c=prof1)))
    m = map_outlet(tr, np.array([10.0]), GEO)
    first = m.mean[0, m.channels.index("t_tank1_c")] - 180.0
    last = m.mean[0, m.channels.index("t_tank7_c")] - 280.0
    assert last > 3 * first
    assert 0.0 <= first < last <= 10.0


def test_injection_tank_sets_the_stages() -> None:
    assert GEO.for_conditions(_c()) == GEO
    assert GEO.for_conditions(Conditions(180.0, 15.0, 280.0, 20.0, 2.0, 2.0,
                                         s_inject_tank=5)) == CascadeGeometry(4, 3)
    with pytest.raises(ConfigError, match="s_inject_tank"):
        GEO.for_conditions(Conditions(180.0, 15.0, 280.0, 20.0, 2.0, 2.0, s_inject_tank=9))
    with pytest.raises(ConfigError, match="n_core_tanks"):
        CascadeGeometry(0, 4)
    with pytest.raises(ConfigError, match="shell_fractions"):
        CascadeGeometry(3, 4, shell_fractions=(0.25, 0.25, 0.5))


def test_age_spread_and_bad_input() -> None:
    assert age_sd_min(_c(), GEO) == pytest.approx(np.sqrt(15.0 ** 2 / 3 + 20.0 ** 2 / 4))
    tr = Trajectory((0.0, 10.0), (_c(), _c()))
    with pytest.raises(ConfigError, match="at least one"):
        map_outlet(tr, np.array([]), GEO)
    with pytest.raises(ConfigError, match="non-finite"):
        map_outlet(tr, np.array([1.0, np.nan]), GEO)
    with pytest.raises(ConfigError, match="outlet_delay_min"):
        map_outlet(tr, np.array([1.0]), GEO, outlet_delay_min=-1.0)


def test_split_sulfur_feed_makes_unequal_tanks_and_the_mapping_follows_them() -> None:
    """Sulfur split over 3 tanks: the tanks before the last injection hold the fluid longer."""
    from autolab.twin.cascade import tank_times_min
    from autolab.twin.config import TwinConfig

    config = TwinConfig()
    a = Conditions(180.0, 15.0, 280.0, 20.0, 2.0, 2.0, p_to_in=3.0, s_inject_count=3)
    b = Conditions(180.0, 15.0, 280.0, 20.0, 2.0, 2.0, p_to_in=4.0, s_inject_count=3)
    geo = CascadeGeometry.for_twin(config, a)
    assert geo.shell_fractions[0] > geo.shell_fractions[-1]
    assert sum(geo.shell_fractions) > 1.0
    t = np.linspace(5.0, 150.0, 20)
    m = map_outlet(Trajectory((0.0, 0.01), (a, b)), t, geo, n_nodes=64)
    frac = m.mean[:, m.channels.index("p_to_in")] - 3.0
    tanks = tank_times_min(a, config)
    ode = np.array([washout(np.zeros(len(tanks)), tanks, float(x), inlet=1.0)[-1] for x in t])
    np.testing.assert_allclose(frac, ode, atol=0.02)
    assert age_sd_min(a, geo) == pytest.approx(float(np.sqrt(np.sum(tanks ** 2))))


@settings(max_examples=25, deadline=None)
@given(temps=st.lists(st.floats(150.0, 230.0), min_size=2, max_size=5),
       taus=st.lists(st.floats(5.0, 40.0), min_size=2, max_size=5),
       gaps=st.lists(st.floats(1.0, 60.0), min_size=4, max_size=4),
       when=st.floats(-20.0, 300.0))
def test_mapped_means_stay_within_what_the_trajectory_visited(
        temps: list[float], taus: list[float], gaps: list[float], when: float) -> None:
    """Every role is an average over the trajectory's values: the mean cannot leave their range."""
    n = min(len(temps), len(taus))
    times = tuple(np.concatenate([[0.0], np.cumsum(gaps[:n - 1])]))
    pts = tuple(_c(t_core_c=temps[i], tau_core_min=taus[i], p_to_in=2.0 + i) for i in range(n))
    m = map_outlet(Trajectory(times, pts), np.array([when]), GEO, n_nodes=12)
    for ch, lo, hi in (("t_core_c", min(temps[:n]), max(temps[:n])),
                       ("tau_core_min", min(taus[:n]), max(taus[:n])),
                       ("p_to_in", 2.0, 1.0 + n)):
        j = m.channels.index(ch)
        assert lo - 1e-6 <= m.mean[0, j] <= hi + 1e-6
        assert 0.0 <= m.sd[0, j] <= (hi - lo) / 2 + 1e-6
    assert 0.0 <= m.before_start[0] <= 1.0
