"""The prior guard (``prior_guard: loo``): the readings decide, per outcome, who proposes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, cast

import numpy as np
import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models.gp_regression import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood

from autolab.exceptions import ConfigError, OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.design import sobol_design
from autolab.optimizer.prior_guard import GUARD_MIN_READINGS, loo_log_density
from autolab.optimizer.settings import parse_optimizer_settings

from .problems import FAST, peak_problem, space_2d, target_objective, unit


class MirrorPrior:
    """``peak_problem`` with the PL trend reversed along ``a`` and the QY right."""

    name = "mirror"
    outcomes = ("pl_peak_nm", "qy")
    parameters: Mapping[str, str] = MappingProxyType({"a": "", "b": ""})

    def __call__(self, points: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
        space = space_2d()
        rows = []
        for p in points:
            u = unit(space, p)
            mirrored = space.from_unit(np.array([[1.0 - u[0], u[1]]]))[0]
            rows.append((peak_problem(space, mirrored)["pl_peak_nm"],
                         peak_problem(space, p)["qy"]))
        return {"pl_peak_nm": np.array([r[0] for r in rows]), "qy": np.array([r[1] for r in rows])}


class RightPrior(MirrorPrior):
    """``peak_problem`` itself."""

    name = "right"

    def __call__(self, points: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
        rows = [peak_problem(space_2d(), p) for p in points]
        return {k: np.array([r[k] for r in rows]) for k in self.outcomes}


def _told(prior: Any, n: int, **settings: Any) -> BotorchOptimizer:
    """A guarded optimizer told ``n`` Sobol readings of ``peak_problem``."""
    space = space_2d()
    opt = BotorchOptimizer(space, target_objective(), seed=0, prior="twin",
                           outcome_prior=prior, **FAST, **{"prior_guard": "loo", **settings})
    points = space.from_unit(sobol_design(space, 5, 0, n))
    opt.tell(points, [peak_problem(space, p) for p in points],
             [{"pl_peak_nm": 1.0, "qy": 0.01}] * n)
    return opt


def test_the_loo_density_is_each_reading_predicted_from_the_others() -> None:
    torch.manual_seed(0)
    X = torch.rand(9, 2, dtype=torch.float64)
    y = torch.sin(6 * X[:, :1]) + X[:, 1:] ** 2 + 0.05 * torch.randn(9, 1, dtype=torch.float64)
    gp = SingleTaskGP(X, y, outcome_transform=Standardize(m=1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
    gp.eval()
    Xt, yt = gp.train_inputs[0], gp.train_targets
    noise = float(gp.likelihood.noise.detach())
    with torch.no_grad():
        K = gp.covar_module(Xt).to_dense()
        m = gp.mean_module(Xt)
        logps = []
        for i in range(9):
            o = [j for j in range(9) if j != i]
            Koo = K[o][:, o] + noise * torch.eye(8, dtype=K.dtype)
            w = torch.linalg.solve(Koo, K[o, i])
            mean = m[i] + w @ (yt[o] - m[o])
            var = K[i, i] - w @ K[o, i] + noise
            logps.append(-0.5 * math.log(2 * math.pi * var) - 0.5 * (yt[i] - mean) ** 2 / var)
    assert loo_log_density(gp) == pytest.approx(float(torch.stack(logps).mean()), abs=1e-6)


def test_a_prior_the_readings_contradict_hands_that_outcome_to_a_cold_model() -> None:
    opt = _told(MirrorPrior(), 6)
    [x] = opt.ask(1)
    record = opt.state_dict()["model"]["prior_guard"]
    assert record["pl_peak_nm"]["model"] == "cold"
    assert record["pl_peak_nm"]["loo_cold"] > record["pl_peak_nm"]["loo_prior"]
    assert record["qy"]["model"] == "prior"  # the mirror is right about QY
    assert opt.last_predictions[0]["prior_guard"] == {"pl_peak_nm": "cold", "qy": "prior"}
    # The cold PL model proposes where the truth's band is (a = 5 gives ~550 nm), not where
    # the mirrored prior puts it.
    assert abs(peak_problem(opt.space, x)["pl_peak_nm"] - 550.0) <= 15.0


def test_a_right_prior_keeps_proposing_and_finds_the_band() -> None:
    opt = _told(RightPrior(), GUARD_MIN_READINGS)
    [x] = opt.ask(1)
    record = opt.state_dict()["model"]["prior_guard"]
    assert {v["model"] for v in record.values()} == {"prior"}
    assert opt.objective.within_target(peak_problem(opt.space, x))


def test_before_enough_readings_the_prior_proposes_unscored() -> None:
    opt = _told(MirrorPrior(), GUARD_MIN_READINGS - 1)
    opt.ask(1)
    record = opt.state_dict()["model"]["prior_guard"]
    assert all(v["model"] == "prior" and math.isnan(v["loo_cold"]) for v in record.values())


def test_a_guarded_campaign_resumes_exactly() -> None:
    opt = _told(MirrorPrior(), 6)
    state = opt.state_dict()
    [x] = opt.ask(1)
    again = BotorchOptimizer.from_state(state, outcome_prior=MirrorPrior())
    assert again.ask(1) == [x]
    assert again.state_dict()["model"]["prior_guard"] == opt.state_dict()["model"]["prior_guard"]


def test_prior_guard_is_validated() -> None:
    with pytest.raises(OptimizerError, match="prior_guard 'loo' guards a prior"):
        BotorchOptimizer(space_2d(), target_objective(), prior_guard="loo")
    with pytest.raises(ConfigError,
                       match=r"settings\.prior_guard: Input should be 'auto', 'none' or"):
        parse_optimizer_settings("botorch", {"prior": "twin", "prior_guard": "always"})
    with pytest.raises(ConfigError, match="guards a prior"):
        parse_optimizer_settings("botorch", {"prior_guard": "loo"})


class SpreadPrior(RightPrior):
    """``peak_problem`` stating how far a reactor may stray from it."""

    discrepancy_sd = MappingProxyType({"pl_peak_nm": 5.0, "qy": 0.05})


def test_a_prior_is_stated_and_guarded_unless_told_otherwise() -> None:
    space, objective = space_2d(), target_objective()
    opt = BotorchOptimizer(space, objective, prior="twin", outcome_prior=SpreadPrior(), **FAST)
    assert (opt.settings.prior_spread, opt.settings.prior_guard) == ("stated", "loo")
    # a prior that states no spread keeps the readings' spread, still guarded
    opt = BotorchOptimizer(space, objective, prior="twin", outcome_prior=RightPrior(), **FAST)
    assert (opt.settings.prior_spread, opt.settings.prior_guard) == ("data", "loo")
    # what was chosen is in the state, so a resume cannot choose again differently
    assert opt.state_dict()["settings"]["prior_guard"] == "loo"
    explicit = BotorchOptimizer(space, objective, prior="twin", outcome_prior=SpreadPrior(),
                                prior_spread="data", prior_guard="none", **FAST)
    assert (explicit.settings.prior_spread, explicit.settings.prior_guard) == ("data", "none")
    cold = BotorchOptimizer(space, objective, **FAST)
    assert (cold.settings.prior_spread, cold.settings.prior_guard) == ("data", "none")


def test_a_state_saved_before_the_guard_resumes_unguarded() -> None:
    opt = _told(MirrorPrior(), 6, prior_spread="data", prior_guard="none")
    state = opt.state_dict()
    [x] = opt.ask(1)
    settings = {k: v for k, v in state["settings"].items()
                if k not in ("prior_spread", "prior_guard")}
    again = BotorchOptimizer.from_state({**state, "settings": settings},
                                        outcome_prior=MirrorPrior())
    assert (again.settings.prior_spread, again.settings.prior_guard) == ("data", "none")
    assert again.ask(1) == [x]


def _family_run(kind: Literal["twin", "rff", "additive"], seed: int, guard: str = "loo"
                ) -> tuple[BotorchOptimizer, Any]:
    """The twin prior (guarded), 550 nm and QY, on a design member of the reactor family."""
    from autolab.benchmarking.family import draw_member
    from autolab.prior import twin_prior
    from autolab.space import qd_space

    opt = BotorchOptimizer(qd_space(), target_objective(), seed=0, prior="twin",
                           prior_spread="stated", prior_guard=guard,
                           outcome_prior=cast(Any, twin_prior(fixed=FIXED)), **FAST)
    return opt, draw_member(kind, seed)


FIXED = {"p_to_in": 3.6}


def _truth(member: Any, space: Any, points: list[dict[str, float]]) -> list[dict[str, float]]:
    t = member.truth_points(np.array([[p[n] for n in space.names] for p in points]),
                            space.names, FIXED)
    return [{"pl_peak_nm": float(a), "qy": float(b)} for a, b in zip(t.pl_peak_nm, t.qy,
                                                                       strict=True)]


@pytest.mark.parametrize(("kind", "model"), [("rff", "cold"), ("twin", "prior")])
def test_six_readings_tell_a_far_member_from_a_near_one(kind: Literal["twin", "rff"],
                                                        model: str) -> None:
    # Six Sobol readings of design member 0: on the twin-kind member the twin predicts every
    # outcome better than a cold GP (LOO log density ~0.4-0.8 above it), and the guarded prior
    # proposes exactly what the unguarded one does; on the random-Fourier member the twin
    # predicts PL and QY worse, and those hand over to the cold GPs.
    runs = [_family_run(kind, 0, guard) for guard in ("loo", "none")]
    points = runs[0][0].space.from_unit(sobol_design(runs[0][0].space, 5, 0, 6))
    proposals = []
    for opt, member in runs:
        opt.tell(points, _truth(member, opt.space, points))
        proposals.append(opt.ask(1))
    record = runs[0][0].state_dict()["model"]["prior_guard"]
    assert record["pl_peak_nm"]["model"] == model
    assert record["qy"]["model"] == model
    assert (proposals[0] == proposals[1]) == (model == "prior")

