"""Parameter space: bounds, log scale, constraints, unit-cube round trips, clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.exceptions import ConditionsError, ConfigError
from autolab.records import MAX_TANKS
from autolab.space import (
    QD_PARAMETERS,
    LinearConstraint,
    Parameter,
    ParameterSpace,
    qd_space,
)

PAPER = {"t_core_c": 180.0, "tau_core_min": 13.0, "t_shell_c": 290.0, "tau_shell_min": 15.0,
         "cl_to_i": 6.0, "s_to_zn": 2.0}


def test_qd_space_accepts_the_seed_paper_conditions() -> None:
    space = qd_space()
    assert space.check(PAPER) == PAPER
    assert space.names == tuple(PAPER)


def test_out_of_bounds_error_names_parameter_value_and_range() -> None:
    space = qd_space()
    with pytest.raises(ConditionsError) as info:
        space.check({**PAPER, "t_core_c": 250.0})
    err = info.value
    assert err.parameter == "t_core_c"
    assert err.value == 250.0
    assert "160" in err.allowed and "220" in err.allowed and "°C" in err.allowed
    assert "t_core_c=250" in str(err)


@pytest.mark.parametrize(
    ("change", "needle"),
    [({"s_to_zn": math.nan}, "s_to_zn"), ({"bogus": 1.0}, "unknown"),
     ({"cl_to_i": "x"}, "cl_to_i")],
)
def test_bad_values_are_refused_clearly(change: dict[str, object], needle: str) -> None:
    with pytest.raises(ConditionsError, match=needle):
        qd_space().check({**PAPER, **change})  # type: ignore[dict-item]


def test_missing_parameter_is_named() -> None:
    values = dict(PAPER)
    del values["tau_shell_min"]
    with pytest.raises(ConditionsError, match="tau_shell_min"):
        qd_space().check(values)


def test_linear_constraint_is_enforced() -> None:
    with pytest.raises(ConditionsError, match="t_shell_c - t_core_c >= 40"):
        qd_space().check({**PAPER, "t_core_c": 215.0, "t_shell_c": 250.0})


def test_constraint_parser_handles_coefficients_and_le() -> None:
    c = LinearConstraint.parse("2*a - 0.5 b <= 3")
    assert c.coefficients == {"a": -2.0, "b": 0.5}
    assert c.rhs == -3.0
    assert c.slack({"a": 1.0, "b": 0.0}) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="expected"):
        LinearConstraint.parse("a + b")
    with pytest.raises(ConfigError, match="not a number"):
        LinearConstraint.parse("a >= lots")


def test_constraints_on_log_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="log-scale"):
        ParameterSpace(parameters=(QD_PARAMETERS["cl_to_i"], QD_PARAMETERS["s_to_zn"]),
                       constraints=(LinearConstraint.parse("cl_to_i - s_to_zn >= 0"),))


def test_parameter_validation() -> None:
    with pytest.raises(ValueError, match="below upper"):
        Parameter(name="x", lower=2, upper=1)
    with pytest.raises(ValueError, match="lower > 0"):
        Parameter(name="x", lower=0, upper=1, scale="log")
    with pytest.raises(ValueError, match="identifier"):
        Parameter(name="Bad Name", lower=0, upper=1)


def test_log_scale_maps_geometric_midpoint_to_half() -> None:
    p = QD_PARAMETERS["cl_to_i"]
    mid = math.sqrt(p.lower * p.upper)
    assert float(p.to_unit(mid)) == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=6, max_size=6))
def test_unit_round_trip(u: list[float]) -> None:
    space = qd_space()
    point = space.from_unit(np.array([u]))[0]
    back = space.to_unit([point])[0]
    np.testing.assert_allclose(back, u, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=6, max_size=6))
def test_unit_constraints_agree_with_physical_constraints(u: list[float]) -> None:
    space = qd_space()
    point = space.from_unit(np.array([u]))[0]
    (idx, coefs, rhs), = space.unit_constraints()
    unit_slack = sum(c * u[i] for i, c in zip(idx, coefs, strict=True)) - rhs
    physical_slack = space.constraints[0].slack(point)
    assert unit_slack == pytest.approx(physical_slack, abs=1e-6)


def test_overrides_narrow_bounds_and_refuse_widening() -> None:
    space = qd_space(overrides={"t_core_c": (170, 190)})
    assert space["t_core_c"].lower == 170
    with pytest.raises(ConfigError, match="exceed"):
        qd_space(overrides={"t_core_c": (100, 190)})
    with pytest.raises(ConfigError, match="not in the space"):
        qd_space(names=("t_core_c",), overrides={"s_to_zn": (1, 2)})


def test_subspace_drops_constraints_on_dropped_names() -> None:
    sub = qd_space().subspace(["t_core_c", "s_to_zn"])
    assert sub.names == ("t_core_c", "s_to_zn")
    assert sub.constraints == ()


# ------------------------------------------------- optional per-tank conditions (issue 9 §2)
def test_integer_parameters_round_in_the_unit_cube_and_check_whole_values() -> None:
    space = qd_space(("t_core_c", "s_inject_tank", "s_inject_count", "t_tank5_c", "stir_rpm"))
    assert space["s_inject_tank"].integer and not space["t_tank5_c"].integer
    pts = space.from_unit(np.array([[0.5, 0.49, 0.8, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5, 0.5]]))
    assert [p["s_inject_tank"] for p in pts] == [4.0, 3.0]
    assert [p["s_inject_count"] for p in pts] == [3.0, 3.0]
    assert pts[0]["t_tank5_c"] == pytest.approx(240.0)
    ok = {"t_core_c": 180.0, "s_inject_tank": 5.0, "s_inject_count": 2.0, "t_tank5_c": 300.0,
          "stir_rpm": 600.0}
    assert space.check(ok) == ok
    with pytest.raises(ConditionsError, match=r"s_inject_tank.*not a whole number"):
        space.check({**ok, "s_inject_tank": 4.5})
    with pytest.raises(ConditionsError, match="s_inject_tank"):
        space.check({**ok, "s_inject_tank": 7.0})  # the paper injects between tank 3 and 6


@settings(max_examples=50, deadline=None)
@given(u=st.floats(0, 1), lo=st.integers(-5, 5), width=st.integers(1, 6))
def test_integer_from_unit_is_always_a_whole_value_in_bounds(u: float, lo: int,
                                                             width: int) -> None:
    p = Parameter(name="n", lower=lo, upper=lo + width, integer=True)
    v = float(p.from_unit(u))
    assert v == round(v) and lo <= v <= lo + width
    assert float(p.from_unit(p.to_unit(v))) == v


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"lower": 0.5, "upper": 3, "integer": True}, "whole-number bounds"),
    ({"lower": 1, "upper": 3, "integer": True, "scale": "log"}, "linear-scale"),
])
def test_integer_parameter_bounds_are_validated(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Parameter(name="n", **kwargs)


def test_catalog_knows_every_tank_temperature_and_refuses_a_tank_past_the_cascade() -> None:
    assert all(f"t_tank{i}_c" in QD_PARAMETERS for i in range(1, MAX_TANKS + 1))
    with pytest.raises(ConfigError, match="t_tank9_c"):
        qd_space(("t_core_c", "t_tank9_c"))
    with pytest.raises(ConfigError, match="exceed"):
        qd_space(("t_tank2_c",), overrides={"t_tank2_c": (100.0, 200.0)})


def test_injection_must_end_inside_the_default_cascade() -> None:
    space = qd_space(("s_inject_tank", "s_inject_count"))
    assert [c.describe() for c in space.constraints] == ["s_inject_tank + s_inject_count <= 8"]
    assert space.check({"s_inject_tank": 6.0, "s_inject_count": 2.0})
    with pytest.raises(ConditionsError, match="s_inject_tank"):
        space.check({"s_inject_tank": 6.0, "s_inject_count": 3.0})


def test_a_campaign_space_searches_per_tank_conditions() -> None:
    from autolab.config import SpaceConfig

    cfg = SpaceConfig(parameters=(*PAPER, "t_tank1_c", "stir_rpm", "s_inject_tank"),
                      bounds={"t_tank1_c": (170.0, 210.0)}, fixed={"s_inject_count": 2})
    space = cfg.build()
    assert space["t_tank1_c"].allowed == "[170, 210] °C"
    assert space["s_inject_tank"].integer
    with pytest.raises(ValueError, match="t_tank9_c"):
        SpaceConfig(parameters=(*PAPER, "t_tank9_c"))
