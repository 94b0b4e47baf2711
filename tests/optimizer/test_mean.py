"""The outcome GPs' linear-trend mean (``mean: linear``): real BoTorch, no mocks."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from gpytorch.means import ConstantMean, LinearMean

from autolab.exceptions import ConfigError, OptimizerError
from autolab.objective import qd_objective
from autolab.optimizer import BotorchOptimizer, scalable
from autolab.optimizer.bayes import outcome_designs
from autolab.optimizer.gp_design import (
    LINEAR_MEAN_PRIOR_SD,
    MEANS,
    TREND_VARIANCE_FLOOR,
    CenteredLinearKernel,
    GPDesign,
)
from autolab.optimizer.models import build_model_list
from autolab.optimizer.scalable import SparseGP
from autolab.optimizer.settings import BotorchSettings, parse_optimizer_settings

from .problems import FAST as _FAST
from .problems import assert_refused_both_ways, peak_problem, space_2d, target_objective

F64 = torch.float64
LINEAR = GPDesign(mean="linear")
LINEAR_KERNEL = GPDesign(mean="linear_kernel")
FAST: dict[str, Any] = dict(_FAST)


def _trend(X: torch.Tensor) -> torch.Tensor:
    """A PL-like response: a strong monotone trend in x0, a weaker one in x1, slight curvature."""
    return 500.0 + 120.0 * X[:, 0] + 20.0 * X[:, 1] + 10.0 * X[:, 0] ** 2


def test_settings_name_exactly_the_registered_means() -> None:
    """The torch-free settings model and the mean registry must not drift apart."""
    hints = typing.get_type_hints(BotorchSettings)
    assert set(typing.get_args(hints["mean"])) == set(MEANS)


def test_bad_mean_settings_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"GPDesign\.mean must be one of"):
        GPDesign(mean="quadratic")
    assert_refused_both_ways({"mean": "quadratic"}, "mean", r"settings\.mean")
    with pytest.raises(ConfigError, match=r"settings\.mean_outcomes"):
        parse_optimizer_settings("botorch", {"mean": "linear", "mean_outcomes": "pl"})
    X = torch.rand(8, 2, dtype=F64)
    with pytest.raises(ValueError, match="one GPDesign per outcome"):
        build_model_list(X, torch.rand(8, 2, dtype=F64), design=[LINEAR])


class _ShiftedPeak:
    """A prior (``outcome_prior=``) that knows ``peak_problem`` up to a shift."""

    name = "toy"
    outcomes: tuple[str, ...] = ("pl_peak_nm", "qy")
    parameters: Mapping[str, str] = {"a": "", "b": ""}
    discrepancy_sd = None

    def __call__(self, points: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
        rows = [peak_problem(space_2d(), p) for p in points]
        return {k: np.array([r[k] + (5.0 if k == "pl_peak_nm" else 0.0) for r in rows])
                for k in self.outcomes}


@pytest.mark.parametrize("mean", ["linear", "linear_kernel"])
def test_a_trend_with_a_prior_is_refused(mean: str) -> None:
    """The prior is the GPs' mean already; silently dropping one of the two would mislead."""
    with pytest.raises(OptimizerError, match=rf"settings\.mean '{mean}' cannot be combined"):
        BotorchOptimizer(space_2d(), target_objective(), prior="twin",
                         outcome_prior=_ShiftedPeak(), mean=mean)


def test_default_keeps_botorchs_constant_mean() -> None:
    X = torch.rand(10, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    model = build_model_list(X, _trend(X).unsqueeze(-1), maxiter=20)
    assert isinstance(model.models[0].mean_module, ConstantMean)
    assert GPDesign().structure(X) == {}


def test_mean_goes_to_the_target_outcomes_unless_all() -> None:
    spec = qd_objective(550.0)  # pl_peak_nm (Target), qy, fwhm_nm
    targets = outcome_designs(BotorchSettings(mean="linear"), spec)
    assert [d.mean for d in targets] == ["linear", "constant", "constant"]
    every = outcome_designs(BotorchSettings(mean="linear", mean_outcomes="all"), spec)
    assert [d.mean for d in every] == ["linear"] * 3
    assert {d.mean for d in outcome_designs(BotorchSettings(), spec)} == {"constant"}


def test_trend_extrapolates_where_the_constant_mean_reverts() -> None:
    """Six points in the low-x0 quarter of the box; predict the far side, where a band may be.

    The constant-mean GP falls back toward the data's average (about 520 nm) one or two
    lengthscales away; the trend carries the slope. Noise-free truth at x0 = 0.9: 638-655 nm.
    """
    gen = torch.Generator().manual_seed(3)
    X = torch.rand(6, 2, dtype=F64, generator=gen) * torch.tensor([0.3, 1.0], dtype=F64)
    y = (_trend(X) + 0.5 * torch.randn(6, dtype=F64, generator=gen)).unsqueeze(-1)
    yvar = torch.full_like(y, 0.25)
    far = torch.tensor([[0.9, 0.2], [0.9, 0.5], [0.9, 0.8], [0.7, 0.5]], dtype=F64)
    truth = _trend(far)
    errors = {}
    for design in (GPDesign(), LINEAR):
        torch.manual_seed(0)
        model = build_model_list(X, y, Yvar_ok=yvar, design=design)
        with torch.no_grad():
            mean = model.posterior(far).mean.squeeze(-1)
        errors[design.mean] = (mean - truth).abs()
    gp: Any = build_model_list(X, y, Yvar_ok=yvar, design=LINEAR).models[0]
    assert isinstance(gp.mean_module, LinearMean)
    scale = gp.mean_module.weights_prior.scale.reshape(-1)
    assert torch.allclose(scale * X.std(dim=0), torch.full((2,), LINEAR_MEAN_PRIOR_SD, dtype=F64))
    assert bool((errors["linear"] < errors["constant"]).all()), errors
    assert float(errors["linear"].max()) < 0.5 * float(errors["constant"].min()), errors


def _fit_far(design: GPDesign) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """The low-x0 data of the test above; posterior mean and sd at the far points, the GP."""
    gen = torch.Generator().manual_seed(3)
    X = torch.rand(6, 2, dtype=F64, generator=gen) * torch.tensor([0.3, 1.0], dtype=F64)
    y = (_trend(X) + 0.5 * torch.randn(6, dtype=F64, generator=gen)).unsqueeze(-1)
    far = torch.tensor([[0.9, 0.2], [0.9, 0.5], [0.9, 0.8], [0.7, 0.5]], dtype=F64)
    torch.manual_seed(0)
    model = build_model_list(X, y, Yvar_ok=torch.full_like(y, 0.25), design=design)
    with torch.no_grad():
        post = model.posterior(far)
    return (post.mean.squeeze(-1), post.variance.sqrt().squeeze(-1), _trend(far),
            model.models[0])


def test_integrated_trend_extrapolates_with_an_honest_sd() -> None:
    """``linear_kernel``: the trend's weights are integrated, so far from the data the mean
    follows the slope and the sd says how far it may be off (the MAP trend's does not)."""
    mean_k, sd_k, truth, gp = _fit_far(LINEAR_KERNEL)
    mean_c, _, _, _ = _fit_far(GPDesign())
    mean_m, sd_m, _, _ = _fit_far(LINEAR)
    assert isinstance(gp.covar_module.kernels[1], CenteredLinearKernel)
    assert bool(((mean_k - truth).abs() < (mean_c - truth).abs()).all())
    z_kernel = ((mean_k - truth) / sd_k).abs()
    z_map = ((mean_m - truth) / sd_m).abs()
    assert float(z_kernel.max()) < 3.0, (mean_k, sd_k, truth)
    assert float(z_map.max()) > float(z_kernel.max())


def test_optimizer_with_linear_mean_proposes_and_records_the_trend() -> None:
    space, obj = space_2d(), target_objective()
    opt = BotorchOptimizer(space, obj, seed=0, mean="linear", **FAST)
    for _ in range(6):
        [x] = opt.ask(1)
        opt.tell([x], [peak_problem(space, x)])
    [x] = opt.ask(1)
    space.check(x)
    record = opt.state_dict()["model"]
    assert record is not None
    pl, qy = record["hyperparameters"]["pl_peak_nm"], record["hyperparameters"]["qy"]
    assert len(pl["mean_module.weights"]) == 2
    # a-dependence dominates the peak: the fitted slope in a is positive and the larger one
    assert pl["mean_module.weights"][0] > abs(pl["mean_module.weights"][1])
    assert "mean_module.weights" not in qy


def test_trend_variance_cannot_underflow_to_zero() -> None:
    """A fit that drives the trend out must not reach variance 0, where its LogNormal prior is
    undefined (a screening run raised there, on a QY GP with ``mean_outcomes: all``)."""
    X = torch.rand(6, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    kernel = CenteredLinearKernel(X).to(X)
    with torch.no_grad():
        kernel.raw_variance.fill_(-1e4)  # softplus underflows to exactly 0.0 here
    variance = kernel.variance
    assert float(variance.min()) >= 0.99 * TREND_VARIANCE_FLOOR  # the bound is stored in float32
    log_prior = kernel.variance_prior.log_prob(variance)
    assert bool(torch.isfinite(log_prior).all())


@pytest.mark.parametrize("mean", ["linear", "linear_kernel"])
def test_trend_on_the_large_n_path(monkeypatch: pytest.MonkeyPatch, mean: str) -> None:
    """Above LARGE_N the sparse posterior keeps the fitted trend as its mean and still asks."""
    monkeypatch.setattr(scalable, "LARGE_N", 40)
    monkeypatch.setattr(scalable, "FIT_SUBSET", 30)
    space, obj = space_2d(), target_objective()
    opt = BotorchOptimizer(space, obj, seed=0, mean=mean, mean_outcomes="all", **FAST)
    u = np.random.default_rng(1).random((60, 2))
    points = space.from_unit(u)
    opt.tell(points, [peak_problem(space, p) for p in points])
    [x] = opt.ask(1)
    space.check(x)
    model = opt._fit_cache[1][0] if opt._fit_cache is not None else None
    assert model is not None
    subs: list[Any] = list(model.models)
    assert all(isinstance(s, SparseGP) for s in subs)
    if mean == "linear":
        assert all(isinstance(s.mean_module, LinearMean) for s in subs)
    else:
        assert all(isinstance(s.covar_module.kernels[1], CenteredLinearKernel) for s in subs)
    # every tensor the trend adds follows the data's dtype (float32 leaks show up here on CPU,
    # where a GPU run would fail on a device mismatch)
    tensors = [*model.named_parameters(), *model.named_buffers()]
    assert any("center" in n or "weights" in n for n, _ in tensors)
    assert all(t.dtype == F64 for n, t in tensors if t.is_floating_point()), [
        (n, t.dtype) for n, t in tensors if t.is_floating_point() and t.dtype != F64]
    # the sparse posterior at the training points follows the response (500-610 nm)
    X = torch.tensor(u[:10], dtype=F64)
    truth = torch.tensor([peak_problem(space, p)["pl_peak_nm"] for p in points[:10]], dtype=F64)
    with torch.no_grad():
        predicted = model.posterior(X).mean[:, 0]
    assert float((predicted - truth).abs().max()) < 2.0
