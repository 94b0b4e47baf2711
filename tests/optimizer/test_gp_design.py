"""The outcome GPs' structure choices (kernel, input warping): real BoTorch, no mocks."""

from __future__ import annotations

import typing
from typing import Any

import pytest
import torch
from botorch.models.transforms.input import Warp
from gpytorch.kernels import MaternKernel, RBFKernel

from autolab.exceptions import ConfigError
from autolab.objective import qd_objective
from autolab.optimizer import BotorchOptimizer, scalable
from autolab.optimizer.design import random_design
from autolab.optimizer.gp_design import KERNELS, GPDesign
from autolab.optimizer.models import build_model_list
from autolab.optimizer.scalable import SparseGP
from autolab.optimizer.settings import BotorchSettings, parse_optimizer_settings
from autolab.space import qd_space

from .problems import FAST, assert_refused_both_ways, peak_problem, space_2d, target_objective

F64 = torch.float64


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A response steep near x0 = 1 and flat near 0 (what a warp is for), with known noise."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, dtype=F64, generator=gen)
    y = torch.exp(4 * X[:, 0]) + X[:, 1] + 0.05 * torch.randn(n, dtype=F64, generator=gen)
    return X, y.unsqueeze(-1), torch.full((n, 1), 0.05**2, dtype=F64)


def test_settings_name_exactly_the_registered_kernels() -> None:
    """The torch-free settings model and the kernel registry must not drift apart."""
    hints = typing.get_type_hints(BotorchSettings)
    assert set(typing.get_args(hints["kernel"])) == set(KERNELS)


def test_unknown_kernel_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"GPDesign\.kernel must be one of"):
        GPDesign(kernel="matern")
    assert_refused_both_ways({"kernel": "matern"}, "kernel", r"settings\.kernel")
    with pytest.raises(ConfigError, match=r"settings\.input_warping"):
        parse_optimizer_settings("botorch", {"input_warping": "sometimes"})


def test_default_design_is_botorchs_own_gp() -> None:
    X, y, yvar = _data(20)
    model = build_model_list(X, y, Yvar_ok=yvar, maxiter=20)
    gp = model.models[0]
    assert isinstance(gp.covar_module, RBFKernel)
    assert getattr(gp, "input_transform", None) is None


def test_matern_and_warp_are_built_and_fitted() -> None:
    """Matern-5/2 keeps BoTorch's lengthscale prior; the warp's bounds are the unit cube."""
    X, y, yvar = _data(30)
    model = build_model_list(X, y, Yvar_ok=yvar, maxiter=50,
                             design=GPDesign(kernel="matern52", input_warping=True))
    gp: Any = model.models[0]
    assert isinstance(gp.covar_module, MaternKernel)
    assert gp.covar_module.nu == 2.5
    assert gp.covar_module.lengthscale_prior is not None
    warp = gp.input_transform
    assert isinstance(warp, Warp)
    bounds = warp._normalize.bounds
    assert torch.equal(bounds, torch.tensor([[0.0] * 3, [1.0] * 3], dtype=F64))
    # The fit moved the warp off the identity for the steep input.
    c0 = typing.cast(torch.Tensor, warp.concentration0)
    assert not torch.allclose(c0, torch.ones_like(c0))
    Xt = torch.rand(50, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        post = model.posterior(Xt)
    truth = torch.exp(4 * Xt[:, 0]) + Xt[:, 1]
    rmse = float((post.mean[:, 0] - truth).pow(2).mean().sqrt())
    assert rmse < 0.15 * float(truth.std())
    assert bool((post.variance > 0).all())


def test_warped_sparse_posterior_with_all_points_is_the_exact_one() -> None:
    """The large-n path applies the warp to the training points of its cache too."""
    X, y, yvar = _data(40, seed=1)
    exact: Any = build_model_list(X, y, Yvar_ok=yvar, maxiter=50,
                                  design=GPDesign(input_warping=True)).models[0]
    sparse = SparseGP(exact, X, y, yvar, n_fit=40, max_inducing=40, tol=0.0)
    Xt = torch.rand(25, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = exact.posterior(Xt), sparse.posterior(Xt)
    # Equal up to the SGPR's jitter (outcomes here span ~50 units); without the warp applied
    # to the cache the means differ by whole units.
    assert torch.allclose(a.mean, b.mean, atol=1e-3, rtol=1e-4)
    assert torch.allclose(a.variance, b.variance, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("settings", [{"kernel": "matern52"}, {"input_warping": True},
                                      {"kernel": "matern52", "input_warping": True}])
def test_optimizer_proposes_with_each_design(settings: dict[str, Any]) -> None:
    every: dict[str, Any] = {**FAST, **settings}
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=3, **every)
    for _ in range(7):
        [x] = opt.ask(1)
        opt.space.check(x)
        opt.tell([x], [peak_problem(opt.space, x)], [{"pl_peak_nm": 0.3, "qy": 0.01}])
    record = opt.state_dict()["model"]
    assert record is not None
    hyper = record["hyperparameters"]["pl_peak_nm"]
    assert any("concentration" in k for k in hyper) == bool(settings.get("input_warping"))


def _large_n_ask(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Matern-5/2 + warp through the large-n path: every tensor float64 on ``device``.

    On the CPU this catches a tensor made without ``device=``/``dtype=`` (it shows up as
    float32), which is what a CUDA run would fail on.
    """
    monkeypatch.setattr(scalable, "LARGE_N", 40)
    monkeypatch.setattr(scalable, "FIT_SUBSET", 30)
    space, objective = qd_space(), qd_objective(550.0, 2.0)
    u = random_design(space, 0, 60)
    opt = BotorchOptimizer(space, objective, seed=0, device=device, num_restarts=2,
                           raw_samples=32, fit_maxiter=20, kernel="matern52",
                           input_warping=True)
    opt.tell(space.from_unit(u),
             [{"pl_peak_nm": 520 + 80 * r[0], "qy": 0.3 * r[2], "fwhm_nm": 50 + 5 * r[1]}
              for r in u],
             outcome_sd=[{"pl_peak_nm": 0.5, "qy": 0.01, "fwhm_nm": 0.5}] * 60)
    (point,) = opt.ask(1)
    opt.space.check(point)
    assert opt._fit_cache is not None
    model = opt._fit_cache[1][0]
    assert all(isinstance(sub, SparseGP) for sub in model.models)
    tensors = [*model.named_parameters(), *model.named_buffers()]
    assert any("concentration" in name for name, _ in tensors)
    for name, tensor in tensors:
        assert tensor.device.type == torch.device(device).type, name
        assert not tensor.is_floating_point() or tensor.dtype == F64, (name, tensor.dtype)


def test_design_on_the_large_n_path_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _large_n_ask("cpu", monkeypatch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_design_on_the_large_n_path_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    _large_n_ask("cuda", monkeypatch)
