"""Cheap analytic test problems for the optimizer tests (no twin, no hardware).

Every problem is written in the unit cube of its space, so the optimizer's log-scale handling is
exercised (``b`` is a log parameter) while the true optimum stays easy to state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from autolab.exceptions import ConfigError, OptimizerError
from autolab.objective import Maximize, Minimize, ObjectiveSpec, Target, qd_objective
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.design import sobol_design
from autolab.optimizer.settings import parse_optimizer_settings
from autolab.space import LinearConstraint, Parameter, ParameterSpace, qd_space

#: Settings small enough that a test's whole campaign takes seconds on two cores.
FAST = {"num_restarts": 2, "raw_samples": 32, "mc_samples": 32, "maxiter": 25, "fit_maxiter": 50,
        "device": "cpu"}


def space_2d() -> ParameterSpace:
    """``a`` linear in [0, 10], ``b`` log-scale in [1, 100]."""
    return ParameterSpace(parameters=(
        Parameter(name="a", lower=0.0, upper=10.0),
        Parameter(name="b", lower=1.0, upper=100.0, scale="log"),
    ))


def space_3d_constrained() -> ParameterSpace:
    """``a``, ``c`` linear, ``b`` log; constraint ``a + c <= 12`` cuts off a corner."""
    return ParameterSpace(
        parameters=(
            Parameter(name="a", lower=0.0, upper=10.0),
            Parameter(name="b", lower=1.0, upper=100.0, scale="log"),
            Parameter(name="c", lower=0.0, upper=10.0),
        ),
        constraints=(LinearConstraint.parse("a + c <= 12"),),
    )


def unit(space: ParameterSpace, conditions: Mapping[str, float]) -> list[float]:
    """Unit-cube coordinates of one point."""
    return [float(v) for v in space.to_unit([conditions])[0]]


def peak_problem(space: ParameterSpace, conditions: Mapping[str, float]) -> dict[str, float]:
    """A "PL peak" rising with ``a`` (500-610 nm) and a "qy" peaked at ``u_b = 0.7``."""
    u = unit(space, conditions)
    peak = 500.0 + 100.0 * u[0] + 10.0 * u[1] ** 2
    qy = 0.5 * math.exp(-4.0 * (u[1] - 0.7) ** 2)
    return {"pl_peak_nm": peak, "qy": qy}


def target_objective() -> ObjectiveSpec:
    """550 nm ± 2, as bright as possible."""
    return ObjectiveSpec(terms=(
        Target(outcome="pl_peak_nm", value=550.0, tolerance=2.0),
        Maximize(outcome="qy", scale=0.1),
    ))


def cliff_problem(
    space: ParameterSpace, conditions: Mapping[str, float]
) -> dict[str, float] | None:
    """``y`` grows with ``a``, but every experiment with ``u_a > 0.6`` fails (clogs).

    The feasible optimum is the cliff edge ``u_a = 0.6``; a model that ignores failures keeps
    being drawn past it, where its outcome GP extrapolates ever higher ``y``.
    """
    u = unit(space, conditions)
    if u[0] > 0.6:
        return None
    return {"y": u[0] + 0.2 * math.sin(3.0 * u[1])}


def pareto_problem(space: ParameterSpace, conditions: Mapping[str, float]) -> dict[str, float]:
    """Conflicting outcomes: ``f1`` up with ``a``; ``f2`` (to minimize) up with ``a`` and ``b``."""
    u = unit(space, conditions)
    return {"f1": u[0], "f2": u[0] ** 2 + 0.5 * u[1]}


def pareto_objective() -> ObjectiveSpec:
    """Maximize ``f1``, minimize ``f2``; Pareto mode with a fixed reference point."""
    return ObjectiveSpec(
        terms=(Maximize(outcome="f1"), Minimize(outcome="f2")),
        mode="pareto",
        ref_point=(-0.1, -1.6),
    )


def hypervolume_2d(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Dominated hypervolume of 2-D maximization utilities above ``ref`` (exact sweep)."""
    pts = sorted((p for p in points if p[0] > ref[0] and p[1] > ref[1]), key=lambda p: -p[0])
    area, best_y = 0.0, ref[1]
    for x, y in pts:
        if y > best_y:
            area += (x - ref[0]) * (y - best_y)
            best_y = y
    return area




def qd_readings(u: Sequence[Sequence[float]]) -> list[dict[str, float]]:
    """Readings at points ``u`` of the QD space's unit cube: PL along input 4 (a little along
    0), QY a bump along input 2 alone (one relevant input), FWHM along input 1.

    Enough for the outcome GPs to fit and no more: the hyperprior tests read what a prior did.
    """
    return [{"pl_peak_nm": 500.0 + 100.0 * r[4] + 10.0 * r[0],
             "qy": 0.2 + 0.5 * math.exp(-8.0 * (r[2] - 0.5) ** 2), "fwhm_nm": 50.0 + 5.0 * r[1]}
            for r in u]


def told_qd_optimizer(n: int, **settings: Any) -> BotorchOptimizer:
    """A BoTorch optimizer on the QD space (550 ± 2 nm) told ``n`` Sobol points' readings."""
    space = qd_space()
    opt = BotorchOptimizer(space, qd_objective(550.0, 2.0), seed=0, **{**FAST, **settings})
    u = sobol_design(space, 0, 0, n)
    opt.tell(space.from_unit(u), qd_readings(u),
             outcome_sd=[{"pl_peak_nm": 1.0, "qy": 0.01, "fwhm_nm": 0.5}] * n)
    return opt


def assert_refused_both_ways(settings: Mapping[str, Any], match: str,
                             config_match: str | None = None) -> None:
    """The optimizer's constructor and the campaign file's parser both refuse ``settings``.

    One setting has two ways in (``BotorchOptimizer(...)`` from Python, ``optimizer: settings:``
    in a campaign file) and each must name it: ``match`` in the constructor's
    :class:`OptimizerError`, ``config_match`` (default ``match``) in the parser's
    :class:`ConfigError`.
    """
    with pytest.raises(OptimizerError, match=match):
        BotorchOptimizer(space_2d(), target_objective(), **settings)
    with pytest.raises(ConfigError, match=match if config_match is None else config_match):
        parse_optimizer_settings("botorch", dict(settings))
