"""Hyperparameter fits of the exact GPs with a leaner marginal-likelihood evaluation.

Why: at the sizes a campaign fits (tens of points), an exact GP's marginal log likelihood costs
microseconds of arithmetic and about two milliseconds of Python around it (gpytorch's lazy
kernel tensors, the representation tree they rebuild on every call, the module-tree walk that
collects the priors, distribution objects). L-BFGS-B evaluates it 50-130 times per GP and
outcome, so that overhead was most of an ``ask(1)`` at n = 50 (docs/benchmarks.md, timing).

What :func:`lean_closure` computes is the same function as gpytorch's
``ExactMarginalLogLikelihood`` followed by BoTorch's loss closure, term by term and operation by
operation: the model's own mean, kernel and likelihood noise modules build the marginal
covariance, :func:`~linear_operator.utils.cholesky.psd_safe_cholesky` factors it (with the same
jitter retries), the Gaussian log density is torch's ``MultivariateNormal.log_prob`` formula,
and the priors are the model's ``named_priors`` in their order, each summed as gpytorch sums
them. Only the bookkeeping differs (the kernel is evaluated eagerly, the noise is added as a
dense matrix rather than through distribution objects, the prior list is collected once per
fit), so the values and gradients, and hence every L-BFGS-B iterate and the fitted
hyperparameters, are bit-identical (``tests/optimizer/test_fitting.py`` checks this on each GP
structure the optimizer builds). Models it does not cover (not a plain ``SingleTaskGP``,
batched, added loss terms, a non-Gaussian likelihood, NaN masking) keep BoTorch's closure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import gpytorch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.optim.closures import ForwardBackwardClosure
from botorch.optim.utils import get_parameters
from gpytorch.likelihoods import _GaussianLikelihoodBase
from gpytorch.mlls import ExactMarginalLogLikelihood, SumMarginalLogLikelihood
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor
from torch.distributions.multivariate_normal import _batch_mahalanobis

_LOG_2PI = math.log(2 * math.pi)


def supported(mll: Any) -> bool:
    """Whether :func:`lean_closure` computes exactly what BoTorch's closure would for ``mll``.

    An unbatched ``SingleTaskGP`` (its own ``forward``: mean and kernel of the transformed
    inputs) with a Gaussian likelihood, no added loss terms and gpytorch's default NaN policy;
    anything else is fitted with BoTorch's own closure.
    """
    model: Any = getattr(mll, "model", None)
    return (
        type(mll) is ExactMarginalLogLikelihood
        and isinstance(model, SingleTaskGP)
        and getattr(type(model), "forward", None) is getattr(SingleTaskGP, "forward", None)
        and isinstance(mll.likelihood, _GaussianLikelihoodBase)
        and model.train_inputs is not None
        and len(model.train_inputs) == 1
        and model.train_targets.dim() == 1
        and not list(cast(Any, model).added_loss_terms())
        and gpytorch.settings.observation_nan_policy.value() == "ignore"
    )


def lean_closure(mll: ExactMarginalLogLikelihood) -> Callable[[], Tensor]:
    """The negative MLL per datum of ``mll``'s model on its training data (module docs).

    Args:
        mll: An exact marginal log likelihood that :func:`supported` accepts.

    Returns:
        A closure returning the loss tensor, as BoTorch's ``get_loss_closure`` does.
    """
    model = mll.model
    priors = [(module, prior, closure) for _, module, prior, closure, _ in model.named_priors()]

    def loss() -> Tensor:
        # Eager kernels: the dense matrix is what the Cholesky factor needs anyway, and the lazy
        # tensor's representation tree was rebuilt on every evaluation to get it.
        with gpytorch.settings.lazily_evaluate_kernels(False):
            # SingleTaskGP.forward in training mode, then the likelihood's marginal: the prior
            # covariance plus the (fixed and/or learned) noise, added as dense matrices.
            x = model.transform_inputs(model.train_inputs[0])
            mean = model.mean_module(x)
            noise = mll.likelihood._shaped_noise_covar(mean.shape, x)
            cov = model.covar_module(x).to_dense() + noise.to_dense()
            chol = psd_safe_cholesky(cov).contiguous()
            diff = model.train_targets - mean
            n = diff.shape[-1]
            # torch.distributions.MultivariateNormal.log_prob with scale_tril = chol
            mahalanobis: Tensor = _batch_mahalanobis(chol, diff)  # type: ignore[no-untyped-call]
            half_log_det = chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
            res = -0.5 * (n * _LOG_2PI + mahalanobis) - half_log_det
            for module, prior, closure in priors:  # ExactMarginalLogLikelihood._add_other_terms
                term = prior.log_prob(closure(module))
                res.add_(term.view(*term.shape[:res.ndim], -1).sum(dim=-1))
            loss_value: Tensor = -res.div_(n)
            return loss_value

    return loss


def fit_model_list(mll: SumMarginalLogLikelihood, maxiter: int) -> None:
    """Fit each GP of a ``ModelListGP`` in turn, as BoTorch's ``fit_gpytorch_mll`` does.

    Each sub-likelihood gets BoTorch's fit (L-BFGS-B, its retries on a failed fit) with
    :func:`lean_closure` where :func:`supported`, else BoTorch's closure.

    Args:
        mll: The model list's summed marginal log likelihood.
        maxiter: L-BFGS-B iteration cap per GP.
    """
    options = {"options": {"maxiter": maxiter}}
    mll.train()
    for sub in mll.mlls:
        closure = None
        if supported(sub):
            closure = ForwardBackwardClosure(forward=lean_closure(sub),
                                             parameters=get_parameters(sub, requires_grad=True))
        fit_gpytorch_mll(sub, closure=closure, optimizer_kwargs=options)
    if not any(sub.training for sub in mll.mlls):
        mll.eval()
