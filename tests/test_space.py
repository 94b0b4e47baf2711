"""Parameter space: bounds, log scale, constraints, unit-cube round trips, clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.exceptions import ConditionsError, ConfigError
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
