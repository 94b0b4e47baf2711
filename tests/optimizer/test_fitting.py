"""The lean MLL closure fits bit-identical hyperparameters to BoTorch's, on every GP structure.

Real BoTorch on both sides: each model list is built twice from the same data, one copy fitted
by :func:`~autolab.optimizer.fitting.fit_model_list`, the other by BoTorch's
``fit_gpytorch_mll``; every fitted parameter must be equal bit for bit (``torch.equal``), so a
campaign proposes exactly what it proposed before the change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.model_list_gp_regression import ModelListGP
from botorch.models.transforms.outcome import Standardize
from botorch.optim.closures import ForwardBackwardClosure, get_loss_closure_with_grads
from botorch.optim.utils import get_parameters
from gpytorch.mlls import ExactMarginalLogLikelihood, SumMarginalLogLikelihood

from autolab.optimizer.fitting import fit_model_list, lean_closure, supported
from autolab.optimizer.gp_design import GPDesign, Hyperprior, LogNormal
from autolab.optimizer.models import FEASIBILITY_NOISE, _feasibility_kernel, _outcome_gp
from autolab.optimizer.prior import PriorSurrogate, attach_prior

from .problems import space_2d
from .test_prior_guard import RightPrior

F64 = torch.float64
MAXITER = 100


def _data(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit-cube 2-D inputs, a PL-like outcome with noise, and its stated variances."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, dtype=F64, generator=gen)
    y = 520 + 80 * X[:, 0] + 10 * torch.sin(5 * X[:, 1]) + torch.randn(n, dtype=F64,
                                                                      generator=gen)
    return X, y.unsqueeze(-1), torch.full((n, 1), 0.5**2, dtype=F64)


def _feasibility(X: torch.Tensor) -> SingleTaskGP:
    labels = torch.where(X[:, :1] + X[:, 1:] > 1.2, -1.0, 1.0).to(X)
    return SingleTaskGP(X, labels, torch.full_like(labels, FEASIBILITY_NOISE**2),
                        covar_module=_feasibility_kernel(X.shape[-1]),
                        outcome_transform=Standardize(m=1))


def _with_prior(X: torch.Tensor, y: torch.Tensor, spread: float | None) -> SingleTaskGP:
    space = space_2d()
    surrogate = PriorSurrogate(cast(Any, RightPrior()), space, seed=0, n_points=16,
                               spread=None if spread is None else {"pl_peak_nm": spread})
    gp = _outcome_gp(X, y, None)
    attach_prior(gp, surrogate, "pl_peak_nm")
    return gp


STRUCTURES: dict[str, Callable[[], list[SingleTaskGP]]] = {
    "default, learned noise": lambda: [_outcome_gp(*_data()[:2], None)],
    "stated + learned extra noise": lambda: [_outcome_gp(*_data())],
    "matern52": lambda: [_outcome_gp(*_data()[:2], None, GPDesign(kernel="matern52"))],
    "input warping": lambda: [_outcome_gp(*_data()[:2], None, GPDesign(input_warping=True))],
    "linear mean": lambda: [_outcome_gp(*_data()[:2], None, GPDesign(mean="linear"))],
    "linear kernel": lambda: [_outcome_gp(*_data(), GPDesign(mean="linear_kernel"))],
    "per-input hyperprior": lambda: [_outcome_gp(*_data(), GPDesign(hyperprior=Hyperprior(
        (LogNormal(-0.5, 0.5), LogNormal(1.0, 1.0)), LogNormal(0.5, 0.8))))],
    "feasibility": lambda: [_feasibility(_data()[0])],
    "prior mean": lambda: [_with_prior(*_data()[:2], None)],
    "prior mean, stated spread": lambda: [_with_prior(*_data()[:2], 5.0)],
    "three outcomes and feasibility": lambda: [
        _outcome_gp(*_data(seed=1)[:2], None), _outcome_gp(*_data(seed=2)),
        _outcome_gp(*_data(seed=3)[:2], None, GPDesign(mean="linear")),
        _feasibility(_data(seed=1)[0])],
}


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_lean_fit_equals_botorch_fit_bit_for_bit(structure: str) -> None:
    torch.manual_seed(0)
    lean = ModelListGP(*STRUCTURES[structure]())
    reference = copy.deepcopy(lean)
    initial = {name: p.detach().clone() for name, p in lean.named_parameters()}
    assert all(supported(ExactMarginalLogLikelihood(m.likelihood, m)) for m in lean.models)
    fit_model_list(SumMarginalLogLikelihood(lean.likelihood, lean), MAXITER)
    fit_gpytorch_mll(SumMarginalLogLikelihood(reference.likelihood, reference),
                     optimizer_kwargs={"options": {"maxiter": MAXITER}})
    got = dict(lean.named_parameters())
    want = dict(reference.named_parameters())
    assert got.keys() == want.keys()
    assert any(not torch.equal(p, initial[name]) for name, p in want.items()), \
        "the fit changed no hyperparameter: nothing was compared"
    for name, value in want.items():
        assert torch.equal(got[name], value), name
    assert not lean.training and not reference.training


def test_models_outside_the_lean_path_keep_botorchs_closure() -> None:
    """A batched model is fitted by BoTorch's own closure, and still fitted."""
    X, y, _ = _data()
    batched = SingleTaskGP(X.expand(2, *X.shape), torch.stack([y, -y]))
    mll = ExactMarginalLogLikelihood(batched.likelihood, batched)
    assert not supported(mll)
    model = ModelListGP(batched)
    before = batched.covar_module.lengthscale.detach().clone()
    fit_model_list(SumMarginalLogLikelihood(model.likelihood, model), MAXITER)
    assert not torch.equal(batched.covar_module.lengthscale, before)
    assert not model.training


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("structure", ["stated + learned extra noise", "feasibility"])
def test_lean_loss_and_gradient_equal_botorchs(structure: str, device: str) -> None:
    """One evaluation at the same point: the same loss and gradient, on the CPU and on CUDA.

    On the CPU bit for bit; on CUDA to 1e-12 relative (the same operations, but this test does
    not rely on the GPU libraries being deterministic across the two call paths).
    """
    [gp] = STRUCTURES[structure]()
    gp = gp.to(torch.device(device))
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)
    mll.train()
    params = get_parameters(mll, requires_grad=True)
    values = []
    for closure in (ForwardBackwardClosure(forward=lean_closure(mll), parameters=params),
                    get_loss_closure_with_grads(mll, parameters=params)):
        value, grads = closure()
        values.append((value.detach().clone(), [g.detach().clone() for g in grads
                                                if g is not None]))
    (lean_value, lean_grads), (ref_value, ref_grads) = values
    assert len(lean_grads) == len(ref_grads) == len(params)
    assert any(bool(g.abs().sum() > 0) for g in ref_grads), "a zero gradient compares nothing"
    if device == "cpu":
        assert torch.equal(lean_value, ref_value)
        assert all(torch.equal(a, b) for a, b in zip(lean_grads, ref_grads, strict=True))
    else:
        torch.testing.assert_close(lean_value, ref_value, rtol=1e-12, atol=0.0)
        for a, b in zip(lean_grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
