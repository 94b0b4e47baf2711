"""Hyperpriors learned on the reactor family (``hyperprior: family``): real BoTorch, no mocks."""

from __future__ import annotations

import typing
from typing import Any

import pytest
import torch
from gpytorch.kernels import RBFKernel, ScaleKernel

from autolab.exceptions import ConfigError, OptimizerError
from autolab.objective import qd_objective
from autolab.optimizer import BotorchOptimizer, scalable
from autolab.optimizer.design import sobol_design
from autolab.optimizer.gp_design import (
    HYPERPRIORS,
    GPDesign,
    Hyperprior,
    LogNormal,
    hyperprior_for,
)
from autolab.optimizer.models import build_model_list
from autolab.optimizer.scalable import SparseGP
from autolab.optimizer.settings import BotorchSettings, parse_optimizer_settings
from autolab.space import qd_space

from .problems import space_2d, target_objective, told_qd_optimizer

F64 = torch.float64



def test_settings_name_exactly_the_registered_hyperpriors() -> None:
    """The torch-free settings model and the hyperprior registry must not drift apart."""
    hints = typing.get_type_hints(BotorchSettings)
    assert set(typing.get_args(hints["hyperprior"])) == set(HYPERPRIORS)
    assert BotorchSettings().hyperprior == "dimension_scaled"


def test_unknown_hyperprior_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"settings\.hyperprior"):
        parse_optimizer_settings("botorch", {"hyperprior": "learned"})
    with pytest.raises(OptimizerError, match="hyperprior"):
        BotorchOptimizer(space_2d(), target_objective(), hyperprior="learned")
    with pytest.raises(ValueError, match="hyperprior must be one of"):
        hyperprior_for("learned", "qy", qd_space().names)


def test_family_priors_are_refused_on_other_inputs_and_with_a_prior() -> None:
    """They were learned on the InP/ZnS space's six inputs; a prior scales the kernel itself."""
    with pytest.raises(OptimizerError, match=r"settings\.hyperprior 'family': learned on"):
        BotorchOptimizer(space_2d(), target_objective(), hyperprior="family")
    with pytest.raises(OptimizerError, match="cannot be combined with a prior"):
        BotorchOptimizer(qd_space(), qd_objective(), hyperprior="family", prior="twin")


def test_family_priors_follow_the_inputs_by_name() -> None:
    """A space listing the same inputs in another order gets each input's own prior."""
    names = qd_space().names
    forward = hyperprior_for("family", "pl_peak_nm", names)
    backward = hyperprior_for("family", "pl_peak_nm", names[::-1])
    assert forward is not None and backward is not None
    assert backward.lengthscales == forward.lengthscales[::-1]
    assert hyperprior_for("family", "fwhm_nm", names) is None  # nothing learned about it
    assert hyperprior_for("dimension_scaled", "qy", names) is None


def test_a_hyperprior_for_other_inputs_is_refused() -> None:
    prior = Hyperprior(lengthscales=(LogNormal(0.0, 1.0),) * 2, outputscale=LogNormal(0.0, 1.0))
    X = torch.rand(6, 3, dtype=F64)
    with pytest.raises(ValueError, match="2 lengthscale priors for 3 inputs"):
        build_model_list(X, X[:, :1], design=GPDesign(hyperprior=prior))


def test_the_fitted_model_carries_the_family_priors_at_six_points() -> None:
    """Six points (the initial design): the fit works and each GP holds its learned prior."""
    opt = told_qd_optimizer(6, hyperprior="family")
    (point,) = opt.ask(1)
    opt.space.check(point)
    assert opt._fit_cache is not None
    model = opt._fit_cache[1][0]
    names = opt.space.names
    for j, outcome in enumerate(opt.objective.outcome_names):
        kernel: Any = model.models[j].covar_module
        expected = hyperprior_for("family", outcome, names)
        if expected is None:  # fwhm_nm: BoTorch's own kernel and prior
            assert isinstance(kernel, RBFKernel)
            continue
        assert isinstance(kernel, ScaleKernel)
        prior = kernel.base_kernel.lengthscale_prior
        assert torch.allclose(prior.loc, torch.tensor([p.loc for p in expected.lengthscales],
                                                      dtype=F64))
        assert float(kernel.outputscale_prior.loc) == expected.outputscale.loc
        assert bool(torch.isfinite(kernel.base_kernel.lengthscale).all())
    record = opt.state_dict()["model"]
    assert record is not None
    assert "covar_module.outputscale" in record["hyperparameters"]["qy"]


def test_family_priors_on_the_large_n_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above LARGE_N the subset fit holds the priors and the sparse posterior their kernel."""
    monkeypatch.setattr(scalable, "LARGE_N", 40)
    monkeypatch.setattr(scalable, "FIT_SUBSET", 30)
    opt = told_qd_optimizer(60, hyperprior="family")
    (point,) = opt.ask(1)
    opt.space.check(point)
    assert opt._fit_cache is not None
    model = opt._fit_cache[1][0]
    assert all(isinstance(sub, SparseGP) for sub in model.models)
    pl: Any = model.models[0].covar_module
    assert isinstance(pl, ScaleKernel)
    assert pl.base_kernel.lengthscale_prior is not None
    X = torch.as_tensor(sobol_design(opt.space, 1, 0, 8), dtype=F64)
    with torch.no_grad():
        post = model.posterior(X)
    assert bool(torch.isfinite(post.mean).all()) and bool((post.variance > 0).all())
