"""Residence-time distribution, washout and flows of the cascade."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from autolab.exceptions import ConditionsError
from autolab.records import Conditions
from autolab.twin import TwinConfig
from autolab.twin.cascade import (
    erlang_cdf,
    erlang_pdf,
    flow_plan,
    stage_tanks,
    sulfur_share,
    tank_times_min,
    washout,
)


@settings(max_examples=25, deadline=None)
@given(tau=st.floats(2.0, 60.0), n=st.integers(1, 8))
def test_erlang_moments(tau: float, n: int) -> None:
    upper = tau * 40
    m0 = quad(lambda t: float(erlang_pdf(np.array(t), tau, n)), 0, upper, limit=200)[0]
    m1 = quad(lambda t: t * float(erlang_pdf(np.array(t), tau, n)), 0, upper, limit=200)[0]
    m2 = quad(lambda t: t * t * float(erlang_pdf(np.array(t), tau, n)), 0, upper, limit=200)[0]
    assert m0 == pytest.approx(1.0, abs=1e-6)
    assert m1 == pytest.approx(tau, rel=1e-5)
    assert m2 - m1 ** 2 == pytest.approx(tau ** 2 / n, rel=1e-4)


def test_cdf_matches_table() -> None:
    # tanks-in-series RTD (Levenspiel 1999): fraction leaving before 0.5 tau for N = 1, 3, 5.
    for n, frac in ((1, 0.393), (3, 0.191), (5, 0.109)):
        assert float(erlang_cdf(np.array(0.5), 1.0, n)) == pytest.approx(frac, abs=1e-3)


def test_washout_of_one_cascade_is_the_erlang_cdf() -> None:
    times = np.full(3, 10.0 / 3)
    for t in (2.0, 5.0, 10.0, 30.0):
        out = washout(np.zeros(3), times, t, 1.0)[-1]
        assert out == pytest.approx(float(erlang_cdf(np.array(t), 10.0, 3)), abs=1e-9)
    old = washout(np.ones(3), times, 7.0, 0.0)[-1]
    assert old == pytest.approx(1 - float(erlang_cdf(np.array(7.0), 10.0, 3)), abs=1e-9)


def test_flow_plan_balances() -> None:
    cfg = TwinConfig()
    for c in (Conditions(180, 5, 290, 30, 6, 2), Conditions(180, 30, 290, 10, 6, 2)):
        p = flow_plan(c, cfg)
        assert p.core_ml_min == pytest.approx(cfg.n_core_tanks * cfg.tank_volume_ml
                                              / c.tau_core_min)
        into_shell = p.core_ml_min - p.bleed_ml_min + p.makeup_ml_min + p.shell_feed_ml_min
        assert into_shell == pytest.approx(p.shell_ml_min)
        assert p.indium_halide_ml_min + p.phosphine_ml_min == pytest.approx(p.core_ml_min)
        assert tank_times_min(c, cfg).sum() == pytest.approx(c.tau_core_min + c.tau_shell_min)


@settings(max_examples=60, deadline=None)
@given(tank=st.integers(2, 7), count=st.integers(1, 6), tau_core=st.floats(1, 60),
       tau_shell=st.floats(1, 60))
def test_injection_layout_keeps_the_stage_times_and_feeds_the_sulfur_in_order(
        tank: int, count: int, tau_core: float, tau_shell: float) -> None:
    cfg = TwinConfig()
    c = Conditions(180, tau_core, 290, tau_shell, 6, 2, s_inject_tank=tank,
                   s_inject_count=count)
    if tank + count - 1 > 7:
        with pytest.raises(ConditionsError, match="s_inject_count"):
            tank_times_min(c, cfg)
        return
    n_core, n_shell = stage_tanks(c, cfg)
    assert (n_core, n_shell) == (tank - 1, 8 - tank)
    times = tank_times_min(c, cfg)
    assert times[:n_core].sum() == pytest.approx(tau_core)
    assert times[-1] == pytest.approx(tau_shell / n_shell)  # all of the feed is in by the end
    assert times[n_core:].sum() >= tau_shell * (1 - 1e-12)
    assert (times[n_core:].sum() == pytest.approx(tau_shell)) == (count == 1)
    share = sulfur_share(c, cfg)
    assert np.all(share[:n_core] == 0) and share[-1] == 1 and np.all(np.diff(share) >= 0)


def test_injection_outside_the_cascade_names_the_field() -> None:
    with pytest.raises(ConditionsError, match="s_inject_tank") as info:
        stage_tanks(Conditions(180, 13, 290, 15, 6, 2, s_inject_tank=1), TwinConfig())
    assert info.value.parameter == "s_inject_tank"
