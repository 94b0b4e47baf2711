"""Pending experiments as fantasies of their outcomes (parallel reactors, batches).

Real BoTorch GPs on the cheap analytic problems of ``problems.py``; no mocks. The fantasies must
be exactly what conditioning the GP on the fantasized readings gives, and a proposal made with
pending points must stay a pure function of settings, seed, data and pending points.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from botorch.models.gp_regression import SingleTaskGP

from autolab.exceptions import OptimizerError
from autolab.objective import ObjectiveSpec, Target
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.acquisition import MET_WEIGHT, BandFirstLogEI
from autolab.optimizer.models import build_model_list
from autolab.optimizer.pending import fantasize, noise_variance, submodels

from .problems import FAST, peak_problem, space_2d, target_objective, unit

SD = {"pl_peak_nm": 0.3, "qy": 0.01}
SETTINGS: dict[str, Any] = dict(FAST)


def _trained(seed: int = 2, n: int = 8) -> BotorchOptimizer:
    # the band-first EI's fantasies are under test, so it also makes the proposals
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=seed, n_init=4,
                           acquisition="band_ei", **SETTINGS)
    for _ in range(n):
        [x] = opt.ask(1)
        opt.tell([x], [peak_problem(opt.space, x)], [dict(SD)])
    return opt


def _acquisition(opt: BotorchOptimizer, X_pending: torch.Tensor | None) -> BandFirstLogEI:
    with torch.random.fork_rng():
        model, data, has_feas, _ = opt._fit(0)
    acqf = opt._acquisition(model, data, has_feas, 5, X_pending)
    assert isinstance(acqf, BandFirstLogEI)
    return acqf


def test_fantasies_are_the_gp_conditioned_on_the_fantasized_readings() -> None:
    torch.manual_seed(0)
    X = torch.rand(12, 2, dtype=torch.float64)
    y = (torch.sin(4 * X[:, :1]) + X[:, 1:] ** 2) + 0.05 * torch.randn(12, 1,
                                                                        dtype=torch.float64)
    gp = SingleTaskGP(X, y).eval()
    gp.likelihood.noise = torch.tensor([0.01], dtype=torch.float64)
    X_p = torch.tensor([[0.3, 0.4], [0.8, 0.1]], dtype=torch.float64)
    fant = fantasize(gp, X_p, seed=3, count=4)
    x = torch.tensor([[0.32, 0.41], [0.9, 0.9]], dtype=torch.float64)
    mean, sd = fant.candidate([gp], x)
    for f in range(fant.count):
        conditioned = gp.condition_on_observations(X_p, fant.observed[f])
        post = conditioned.posterior(x)
        assert torch.allclose(mean[f, :, 0], post.mean.squeeze(-1), atol=1e-6)
        assert torch.allclose(sd[:, 0] ** 2, post.variance.squeeze(-1), atol=1e-6)
        assert torch.allclose(fant.latent_mean[f, :, 0],
                              conditioned.posterior(X_p).mean.squeeze(-1), atol=1e-6)


def test_a_pending_point_shrinks_the_variance_near_it_and_not_far_away() -> None:
    opt = _trained()
    with torch.random.fork_rng():
        model, _, _, _ = opt._fit(0)
    X_p = torch.tensor([[0.2, 0.9]], dtype=torch.float64)
    fant = fantasize(model, X_p, seed=0)
    x = torch.tensor([[0.21, 0.9], [0.95, 0.05]], dtype=torch.float64)
    mean, sd = fant.candidate(submodels(model), x)
    post = model.posterior(x)
    before = post.variance.sqrt()
    assert bool((sd[0] < 0.5 * before[0]).all())  # next to it: learned most of it
    assert torch.allclose(sd[1], before[1], rtol=0.02)  # far away: about nothing
    # over the fantasies the mean is the model's (the tower rule), to quasi-MC accuracy
    spread = (mean[:, 0] - post.mean[0]).std(dim=0)
    assert torch.allclose(mean[:, 0].mean(dim=0), post.mean[0].detach(),
                          atol=float(spread.max()) / 4)
    assert float(spread.min()) > 0  # and each fantasy moves it


def test_noise_of_a_fantasized_reading_is_the_median_stated_noise() -> None:
    X = torch.rand(6, 1, dtype=torch.float64)
    Y = torch.cat([100 * X, X], dim=-1)
    Yvar = torch.tensor([[4.0, 1e-4]] * 6, dtype=torch.float64)
    model = build_model_list(X, Y, Yvar_ok=Yvar, maxiter=5)
    noise = [noise_variance(sub) for sub in submodels(model)]
    # the stated variance plus the learned extra noise (>= its 1e-6 floor, standardized units)
    assert noise[0] == pytest.approx(4.0, rel=0.05)
    assert noise[1] == pytest.approx(1e-4, rel=0.5)


def test_the_acquisition_next_to_a_pending_point_falls() -> None:
    opt = _trained()
    acq = _acquisition(opt, None)
    [proposal] = opt.ask(1)  # what one reactor runs now
    best = torch.tensor(unit(opt.space, proposal), dtype=torch.float64)
    x = (best + 0.005).clamp(0, 1).reshape(1, 1, -1)
    with_pending = _acquisition(opt, best.unsqueeze(0))
    near_drop = float(acq(x)) - float(with_pending(x))
    # the model is already fairly sure there (one more noisy reading teaches a little), so the
    # drop is modest, but it is there, and larger than far away
    assert near_drop > 0.2
    far = torch.tensor([[[0.05, 0.05]]], dtype=torch.float64)
    assert abs(float(with_pending(far)) - float(acq(far))) < near_drop
    # and it stays smooth for the line search
    X = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(with_pending(X).sum(), X)
    assert bool(torch.isfinite(grad).all())


def test_four_proposals_with_the_others_pending_are_distinct_and_deterministic() -> None:
    def propose() -> list[dict[str, float]]:
        opt = _trained()
        out: list[dict[str, float]] = []
        for _ in range(4):  # four reactors refilled one after the other
            out += opt.ask(1, pending=out[-3:] or None)
        return out

    first = propose()
    assert propose() == first
    units = [unit(space_2d(), p) for p in first]
    # distinct, though not necessarily far apart: on this problem the noise is comparable to the
    # posterior sd at the best spot, so a near-repeat of a pending experiment keeps some value
    for i in range(4):
        for j in range(i):
            assert math.dist(units[i], units[j]) > 1e-5


def test_without_rest_terms_a_pending_success_weighs_its_fantasies_down() -> None:
    objective = ObjectiveSpec(terms=(Target(outcome="pl_peak_nm", value=550.0, tolerance=2.0),))
    opt = BotorchOptimizer(space_2d(), objective, seed=1, n_init=4, **SETTINGS)
    for _ in range(6):
        [x] = opt.ask(1)
        opt.tell([x], [{"pl_peak_nm": peak_problem(opt.space, x)["pl_peak_nm"]}])
    [a] = opt.ask(1)
    X_p = torch.tensor([unit(opt.space, a)], dtype=torch.float64)
    before, after = _acquisition(opt, None), _acquisition(opt, X_p)
    assert before.incumbent is None
    # the fantasies in which the pending experiment is in band count MET_WEIGHT of the others
    bar = after._bar
    assert bar is not None
    met = bar < 0
    assert torch.allclose(bar[met], torch.tensor(math.log(MET_WEIGHT), dtype=torch.float64))
    assert 0 < int(met.sum()) < bar.numel()
    at_pending = X_p.unsqueeze(0)
    assert float(after(at_pending)) < float(before(at_pending)) - 1.0
    assert opt.ask(1, pending=[a]) == opt.ask(1, pending=[a])


def test_a_model_with_several_outputs_per_gp_is_refused() -> None:
    X = torch.rand(5, 2, dtype=torch.float64)
    gp = SingleTaskGP(X, torch.rand(5, 2, dtype=torch.float64))
    with pytest.raises(OptimizerError, match="single-output"):
        fantasize(gp, X[:1], seed=0)
