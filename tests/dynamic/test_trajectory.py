"""Trajectories and ramp limits: interpolation, validation naming the field, the planners."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.dynamic import (
    MappingPolicy,
    RampLimits,
    RateLimit,
    Trajectory,
    approach_point,
    chain,
    check_trajectory,
    design_sweep,
    plan_approach,
    plan_ramp,
    ramp_duration_min,
)
from autolab.dynamic.rtd import CascadeGeometry
from autolab.exceptions import ConditionsError, ConfigError
from autolab.records import Conditions

A = Conditions(180.0, 20.0, 280.0, 20.0, 2.0, 2.0)
B = Conditions(200.0, 30.0, 260.0, 20.0, 2.0, 2.5)
LIMITS = RampLimits.for_reactor(heating_c_per_min=10.0, cooling_c_per_min=5.0,
                                tau_rel_per_min=0.05, ratio_rel_per_min=0.1,
                                bounds={"t_core_c": (100.0, 260.0), "t_shell_c": (150.0, 340.0)})


def test_interpolation_and_holds() -> None:
    tr = Trajectory((0.0, 10.0, 20.0), (A, B, B))
    assert tr.varying() == ("t_core_c", "tau_core_min", "t_shell_c", "s_to_zn")
    mid = tr.at(5.0)
    assert mid.t_core_c == pytest.approx(190.0)
    assert mid.tau_core_min == pytest.approx(25.0)
    assert mid.t_shell_c == pytest.approx(270.0)
    assert mid.cl_to_i == 2.0  # unchanged channels are held exactly
    assert tr.at(15.0) == B
    assert tr.at(-3.0) == A  # held before the start
    assert tr.at(99.0) == B
    np.testing.assert_allclose(tr.values("t_core_c", np.array([0.0, 2.5, 10.0])),
                               [180.0, 185.0, 200.0])


def test_round_trip_through_the_journal_dict() -> None:
    tr = Trajectory((0.0, 12.5), (A, B), held_before=False)
    back = Trajectory.from_dict(tr.to_dict())
    assert back == tr


@pytest.mark.parametrize(("times", "message"), [
    ((1.0, 2.0), "starting at 0"),
    ((0.0, 0.0), "strictly increasing"),
    ((0.0, math.nan), "finite"),
    ((0.0,), "one time per point"),
])
def test_bad_times_are_refused(times: tuple[float, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Trajectory(times, (A, B))


def test_topology_cannot_be_ramped() -> None:
    a = Conditions(180.0, 20.0, 280.0, 20.0, 2.0, 2.0, s_inject_tank=4)
    b = Conditions(180.0, 20.0, 280.0, 20.0, 2.0, 2.0, s_inject_tank=5)
    with pytest.raises(ConditionsError, match="s_inject_tank") as err:
        Trajectory((0.0, 10.0), (a, b))
    assert err.value.parameter == "s_inject_tank"


def test_infinite_ratio_is_fine_while_held_but_cannot_be_ramped() -> None:
    a = Conditions(180.0, 20.0, 280.0, 20.0, math.inf, 2.0)
    tr = Trajectory((0.0, 10.0), (a, Conditions(190.0, 20.0, 280.0, 20.0, math.inf, 2.0)))
    assert tr.at(5.0).cl_to_i == math.inf
    with pytest.raises(ConditionsError, match="cl_to_i"):
        Trajectory((0.0, 10.0), (a, A))


def test_too_fast_a_heater_ramp_is_refused_naming_channel_segment_and_limit() -> None:
    tr = Trajectory((0.0, 1.0), (A, Conditions(200.0, 20.0, 280.0, 20.0, 2.0, 2.0)))
    with pytest.raises(ConditionsError) as err:
        check_trajectory(tr, LIMITS)
    e = err.value
    assert e.parameter == "t_core_c"
    assert e.value == pytest.approx(20.0)
    assert "10 °C/min" in e.allowed and "heater" in e.allowed
    assert "0-1 min" in str(e) and "at least 2 min" in str(e)


def test_cooling_is_slower_than_heating() -> None:
    down = Trajectory((0.0, 3.0), (B, A))  # t_core_c 200 -> 180 in 3 min: 6.7 °C/min cooling
    with pytest.raises(ConditionsError, match="falling") as err:
        check_trajectory(Trajectory((0.0, 3.0), (B, A)), RampLimits(
            rates={**LIMITS.rates, "tau_core_min": RateLimit(1.0, 1.0, relative=True),
                   "s_to_zn": RateLimit(1.0, 1.0, relative=True)}))
    assert err.value.parameter == "t_core_c"
    assert down.duration_min == 3.0


def test_relative_pump_limit_uses_the_smaller_value() -> None:
    lim = RateLimit(0.05, 0.05, relative=True)
    # 20 -> 30 min: the fastest relative change is at 20 min: 10/(20·0.05) = 10 min
    assert lim.min_duration(20.0, 30.0) == pytest.approx(10.0)
    assert lim.min_duration(30.0, 20.0) == pytest.approx(10.0)


def test_a_channel_without_a_limit_cannot_be_ramped() -> None:
    limits = RampLimits(rates={"t_core_c": RateLimit(10.0, 5.0)})
    with pytest.raises(ConditionsError, match="no ramp limit") as err:
        check_trajectory(Trajectory((0.0, 100.0), (A, B)), limits)
    assert err.value.parameter == "tau_core_min"


def test_out_of_range_point_is_refused() -> None:
    hot = Conditions(300.0, 20.0, 280.0, 20.0, 2.0, 2.0)
    with pytest.raises(ConditionsError) as err:
        plan_ramp(A, hot, LIMITS)
    assert err.value.parameter == "t_core_c"
    assert "[100, 260]" in err.value.allowed


def test_plan_ramp_is_the_fastest_feasible_ramp() -> None:
    tr = plan_ramp(A, B, LIMITS, hold_start_min=5.0, hold_end_min=30.0)
    check_trajectory(tr, LIMITS)
    need = ramp_duration_min(A, B, LIMITS)
    # tau 20 -> 30 at 5 %/min is the slowest channel: 10 min (heating 20 °C takes 2 min)
    assert need == pytest.approx(10.0)
    assert tr.times_min == pytest.approx((0.0, 5.0, 15.0, 45.0))
    assert tr.points == (A, A, B, B)
    faster = Trajectory((0.0, 5.0, 14.0, 45.0), tr.points)
    with pytest.raises(ConditionsError, match="tau_core_min"):
        check_trajectory(faster, LIMITS)


def test_mapping_caps_slow_the_ramp_down() -> None:
    caps = MappingPolicy().rate_caps(A, CascadeGeometry(3, 4))
    tight = LIMITS.tightened(caps)
    assert ramp_duration_min(A, B, tight) > ramp_duration_min(A, B, LIMITS)
    assert "RTD mapping" in (tight.rate("t_core_c") or RateLimit(1, 1)).source


def test_chain_and_design_sweep_stay_within_limits() -> None:
    tr = chain([A, B, A], LIMITS, hold_min=4.0)
    check_trajectory(tr, LIMITS)
    assert tr.points[0] == A and tr.points[-1] == A
    sweep = design_sweep(A, {"t_core_c": 170.0, "t_shell_c": 260.0},
                         {"t_core_c": 210.0, "t_shell_c": 300.0}, LIMITS, n_points=6, hold_min=2.0)
    check_trajectory(sweep, LIMITS)
    visited = {(p.t_core_c, p.t_shell_c) for p in sweep.points}
    assert len(visited) == 7  # the start and six Sobol points
    assert all(170.0 <= p.t_core_c <= 210.0 for p in sweep.points[1:])


def test_design_sweep_refuses_a_bad_box() -> None:
    with pytest.raises(ConfigError, match="same non-empty channels"):
        design_sweep(A, {"t_core_c": 170.0}, {"t_shell_c": 200.0}, LIMITS)
    with pytest.raises(ConfigError, match="unknown channel"):
        design_sweep(A, {"t_nope_c": 1.0}, {"t_nope_c": 2.0}, LIMITS)


def test_per_tank_temperatures_are_channels() -> None:
    a = Conditions(180.0, 20.0, 280.0, 20.0, 2.0, 2.0, t_tank_c=(180.0, 185.0, math.nan, 250.0))
    b = Conditions(180.0, 20.0, 280.0, 20.0, 2.0, 2.0, t_tank_c=(180.0, 195.0, math.nan, 270.0))
    tr = Trajectory((0.0, 10.0), (a, b))
    assert tr.varying() == ("t_tank2_c", "t_tank4_c")
    assert tr.at(5.0).t_tank_c[1] == pytest.approx(190.0)
    assert math.isnan(tr.at(5.0).t_tank_c[2])
    check_trajectory(tr, LIMITS)
    with pytest.raises(ConditionsError, match="t_tank3_c"):
        Trajectory((0.0, 10.0), (a, Conditions(180.0, 20.0, 280.0, 20.0, 2.0, 2.0,
                                                t_tank_c=(180.0, 195.0, 200.0, 270.0))))


def test_bad_rate_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"RateLimit\.up_per_min"):
        RateLimit(0.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(t0=st.floats(150.0, 250.0), t1=st.floats(150.0, 250.0),
       tau0=st.floats(5.0, 60.0), tau1=st.floats(5.0, 60.0))
def test_planned_ramps_always_pass_their_own_check(t0: float, t1: float, tau0: float,
                                                   tau1: float) -> None:
    a = Conditions(t0, tau0, 280.0, 20.0, 2.0, 2.0)
    b = Conditions(t1, tau1, 280.0, 20.0, 2.0, 2.0)
    if ramp_duration_min(a, b, LIMITS) == 0:  # equal within rounding: nothing to ramp
        with pytest.raises(ConfigError, match="same conditions"):
            plan_ramp(a, b, LIMITS)
        return
    tr = plan_ramp(a, b, LIMITS)
    check_trajectory(tr, LIMITS)
    assert tr.at(tr.duration_min) == b


def test_realized_trajectory_from_logged_samples() -> None:
    c = [Conditions(180.0 + d, 20.0, 280.0, 20.0, 2.0, 2.0) for d in (0.0, 1.0, 2.5, 3.0)]
    tr = Trajectory.from_samples([10.0, 12.0, 12.0, 11.0], [c[0], c[1], c[2], c[3]])
    assert tr.times_min == (0.0, 1.0, 2.0)
    assert [p.t_core_c for p in tr.points] == [180.0, 183.0, 182.5]  # sorted, last of a time
    assert Trajectory.from_samples([5.0], [c[0]]).duration_min == 0.0
    with pytest.raises(ConfigError, match="one time per sample"):
        Trajectory.from_samples([1.0, 2.0], [c[0]])
    assert [p.t_core_c for p in tr.sample([0.0, 0.5, 9.0])] == [180.0, 181.5, 182.5]


def _slow_limits() -> RampLimits:
    return LIMITS.tightened(MappingPolicy().rate_caps(A, CascadeGeometry(3, 4)))


def test_an_approach_is_fast_far_away_and_slow_over_its_last_leg() -> None:
    slow = _slow_limits()
    tr = plan_approach(A, B, LIMITS, slow, approach_min=30.0)
    start, mid, end = tr.points
    assert (start, end) == (A, B)
    check_trajectory(tr, LIMITS)  # the devices can follow the whole of it
    fast_min = tr.times_min[1]
    assert fast_min == pytest.approx(ramp_duration_min(A, mid, LIMITS))  # the devices' pace
    check_trajectory(Trajectory((0.0, tr.times_min[2] - fast_min), (mid, B)), slow)
    assert ramp_duration_min(mid, B, slow) == pytest.approx(30.0, rel=1e-6)
    # the near end of the line, not a point off it: the approach point is on A -> B
    f = (mid.t_core_c - B.t_core_c) / (A.t_core_c - B.t_core_c)
    assert 0 < f < 0.5
    assert mid.t_shell_c == pytest.approx(B.t_shell_c + f * (A.t_shell_c - B.t_shell_c))
    assert tr.duration_min < ramp_duration_min(A, B, slow)  # far quicker than all slow


def test_a_close_start_is_one_slow_ramp_and_bad_input_is_refused() -> None:
    slow = _slow_limits()
    near = Conditions(181.0, 20.0, 280.0, 20.0, 2.0, 2.0)
    assert approach_point(near, A, slow, 30.0) == near
    tr = plan_approach(near, A, LIMITS, slow, approach_min=30.0)
    assert tr.points == (near, A)
    assert tr.duration_min == pytest.approx(ramp_duration_min(near, A, slow))
    capped = plan_approach(near, A, LIMITS, slow, approach_min=30.0, max_slow_min=2.0)
    assert capped.duration_min == pytest.approx(2.0)  # within max_slow_min, above the devices'
    with pytest.raises(ConfigError, match="same"):
        plan_approach(A, A, LIMITS, slow, approach_min=30.0)
    with pytest.raises(ConfigError, match="approach_min"):
        plan_approach(A, B, LIMITS, slow, approach_min=0.0)
