"""The sparsity (SAAS) prior on the outcome GPs' lengthscales (``sparse_outcomes``)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from gpytorch.kernels import ScaleKernel

from autolab.exceptions import ConfigError, OptimizerError
from autolab.objective import qd_objective
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.gp_design import GPDesign, Hyperprior, LogNormal
from autolab.optimizer.models import build_model_list
from autolab.optimizer.settings import BotorchSettings, parse_optimizer_settings
from autolab.space import qd_space

from .problems import told_qd_optimizer

F64 = torch.float64



def test_default_is_off_and_bad_values_are_refused_naming_the_field() -> None:
    assert BotorchSettings().sparse_outcomes == "none"
    with pytest.raises(ConfigError, match=r"settings\.sparse_outcomes"):
        parse_optimizer_settings("botorch", {"sparse_outcomes": "qy"})
    with pytest.raises(OptimizerError, match="sparse_outcomes"):
        BotorchOptimizer(qd_space(), qd_objective(), sparse_outcomes="qy")


def test_contradictions_are_refused_naming_the_field() -> None:
    """The sparsity prior sets the lengthscale priors and output scale; so do these."""
    with pytest.raises(ConfigError, match=r"sparse_outcomes 'all'.*hyperprior 'family'"):
        parse_optimizer_settings("botorch", {"sparse_outcomes": "all", "hyperprior": "family"})
    with pytest.raises(ConfigError, match=r"sparse_outcomes 'non_targets'.*prior 'twin'"):
        parse_optimizer_settings("botorch", {"sparse_outcomes": "non_targets", "prior": "twin"})
    prior = Hyperprior(lengthscales=(LogNormal(0.0, 1.0),) * 2, outputscale=LogNormal(0.0, 1.0))
    with pytest.raises(ValueError, match=r"GPDesign\.sparse"):
        GPDesign(sparse=True, hyperprior=prior)


def test_non_targets_puts_the_prior_on_qy_only_and_switches_irrelevant_inputs_off() -> None:
    """Twelve points, QY on one input: the fit keeps that input short, the others long."""
    opt = told_qd_optimizer(12, sparse_outcomes="non_targets")
    (point,) = opt.ask(1)
    opt.space.check(point)
    assert opt._fit_cache is not None
    models = opt._fit_cache[1][0].models
    names = list(opt.objective.outcome_names)
    pl, qy = models[names.index("pl_peak_nm")], models[names.index("qy")]
    assert not hasattr(pl.covar_module, "raw_tau")  # the target keeps BoTorch's kernel
    kernel: Any = qy.covar_module
    assert isinstance(kernel, ScaleKernel) and hasattr(kernel.base_kernel, "raw_tau")
    lengthscale = kernel.base_kernel.lengthscale.detach().reshape(-1)
    others = torch.cat([lengthscale[:2], lengthscale[3:]])
    assert float(lengthscale[2]) < 0.5 * float(others.min())


def test_sparse_kernel_fits_on_the_data_device_and_dtype() -> None:
    X = torch.rand(8, 3, dtype=F64)
    y = (X[:, :1] - 0.5) ** 2
    model = build_model_list(X, y, design=GPDesign(sparse=True), maxiter=20)
    gp: Any = model.models[0]
    assert gp.covar_module.base_kernel.raw_tau.dtype == F64
    assert bool(torch.isfinite(gp.posterior(X).mean).all())
