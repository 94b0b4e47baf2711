"""Choices of the outcome GPs' structure: the kernel family, a learned input warping, the mean.

Why a separate module: the outcome GPs (:mod:`~autolab.optimizer.models`) use BoTorch's
``SingleTaskGP`` defaults (an RBF kernel with the dimension-scaled lengthscale prior of Hvarfner
et al. 2024). On a reactor nobody has seen, the acquisition rests on these models' predictions
*away from the data* (the ±2 nm band is a thin level set of the PL GP), so their structure is a
choice to be measured on the reactor family, not a constant. ``benchmarks/model_check.py``
scores each choice's calibration (RMSE, RMS z, NLPD, 2-sigma coverage) near the band and
everywhere; docs/benchmarks.md "Outcome models" has the figures. Each choice is a registry entry,
so a new kernel is one line and every caller validates against the same names.

* ``kernel``: ``"rbf"`` (BoTorch's default) or ``"matern52"`` (same lengthscale prior and floor):
  the Matern kernel's rougher sample paths let the posterior widen faster away from the data,
  where the RBF kernel extrapolates smooth trends with too much confidence.
* ``input_warping``: a Kumaraswamy-CDF warp of each unit-cube input (BoTorch's ``Warp``, its
  concentrations learned with the other hyperparameters under a LogNormal(0, 0.75^0.5) prior
  centred on the identity). Chemistry is often steeper at one end of a range (an Arrhenius
  temperature, a saturating ratio), which a stationary kernel can only fit with one short
  lengthscale everywhere.
* ``mean``: ``"constant"`` (BoTorch's default) or ``"linear"``: a linear trend in the unit-cube
  inputs, ``b + w . x``, its weights fitted with the other hyperparameters under a Normal(0,
  :data:`LINEAR_MEAN_PRIOR_SD`) prior (standardized outcome units per unit of input), a MAP
  fit. Why: the PL peak of every reactor a chemist meets moves monotonically and smoothly with
  the conditions (hotter and longer red-shift it). A constant-mean GP reverts to the data's
  average a few lengthscales from its 4-6 design points, so its first proposals cannot aim at a
  band the design has not bracketed; a fitted trend carries the slope there. The prior keeps the
  trend modest where 4-6 points in 6 inputs cannot pin it down (7 weights), and the stationary
  kernel still fits whatever the trend misses.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import dataclass

import torch
from botorch.models.transforms.input import Warp
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.kernels import Kernel
from gpytorch.means import LinearMean, Mean
from gpytorch.priors import LogNormalPrior, NormalPrior
from torch import Tensor

#: Kernel name -> builder of an ARD kernel over ``dim`` inputs (BoTorch's dimension-scaled
#: lengthscale prior for both, so the kernels differ only in smoothness).
KERNELS: dict[str, Callable[[int], Kernel]] = {
    "rbf": lambda dim: get_covar_module_with_dim_scaled_prior(ard_num_dims=dim,
                                                              use_rbf_kernel=True),
    "matern52": lambda dim: get_covar_module_with_dim_scaled_prior(ard_num_dims=dim,
                                                                   use_rbf_kernel=False),
}

#: Sd of the Normal(0, sd) prior on each weight of the linear mean: standardized outcome units per
#: unit-cube unit of input. A linear response in one input, standardized over the box, has a
#: slope of sqrt(12) = 3.46; least squares of the standardized PL peak on 4,096 uniform points of
#: each of the 9 design-set members gave one dominant weight of 3.1-3.5 (the halide ratio), the
#: others within +-0.8, R^2 0.83-0.99 (docs/benchmarks.md "A trend in the mean"). With sd 2 the
#: dominant slope is 1.7 sd out (a prior cost of 1.4 nats), while 4 points in 6 inputs cannot
#: fix 7 weights at will.
LINEAR_MEAN_PRIOR_SD = 2.0


def _linear_mean(dim: int) -> Mean:
    """``b + w . x`` with a Normal(0, :data:`LINEAR_MEAN_PRIOR_SD`) prior on ``w``, from zero."""
    mean = LinearMean(input_size=dim, bias=True)
    with torch.no_grad():
        mean.weights.zero_()
        typing.cast(Tensor, mean.bias).zero_()
    mean.register_prior("weights_prior", NormalPrior(0.0, LINEAR_MEAN_PRIOR_SD), "weights")
    return mean


#: Mean name -> builder of a mean function over ``dim`` inputs, or ``None`` for BoTorch's own
#: constant mean (left to ``SingleTaskGP``).
MEANS: dict[str, Callable[[int], Mean] | None] = {
    "constant": None,
    "linear": _linear_mean,
}

#: Scale of the LogNormal prior on the warp's two concentrations (median 1: the identity warp).
WARP_PRIOR_SCALE = math.sqrt(0.75)


@dataclass(frozen=True)
class GPDesign:
    """The structure of every outcome GP (the feasibility GP keeps its own kernel).

    Attributes:
        kernel: A key of :data:`KERNELS`.
        input_warping: Learn a Kumaraswamy-CDF warp of each input (module docs).
        mean: A key of :data:`MEANS`.
    """

    kernel: str = "rbf"
    input_warping: bool = False
    mean: str = "constant"

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"GPDesign.kernel must be one of {sorted(KERNELS)}, "
                             f"got {self.kernel!r}")
        if self.mean not in MEANS:
            raise ValueError(f"GPDesign.mean must be one of {sorted(MEANS)}, got {self.mean!r}")

    @property
    def is_default(self) -> bool:
        """Whether this is BoTorch's own ``SingleTaskGP`` structure (nothing to override)."""
        return self == GPDesign()

    def mean_module(self, like: Tensor) -> Mean | None:
        """A fresh mean over inputs like ``like``, or ``None``: BoTorch's constant mean."""
        build = MEANS[self.mean]
        return None if build is None else build(like.shape[-1]).to(like)

    def structure(self, X: Tensor) -> dict[str, object]:
        """``SingleTaskGP`` keyword arguments for inputs ``X`` (empty: BoTorch's own GP)."""
        if self.is_default:
            return {}
        parts: dict[str, object] = {"covar_module": self.covar_module(X.shape[-1]),
                                    "input_transform": self.input_transform(X)}
        mean = self.mean_module(X)
        if mean is not None:
            parts["mean_module"] = mean
        return parts

    def covar_module(self, dim: int) -> Kernel:
        """A fresh kernel over ``dim`` inputs."""
        return KERNELS[self.kernel](dim)

    def input_transform(self, like: Tensor) -> Warp | None:
        """A fresh warp of the unit-cube inputs ``like`` (their width, device and dtype).

        The warp's bounds are the unit cube itself, not the data's range: BoTorch's default
        would rescale to the training points' minimum and maximum, which move with every
        experiment and put an unexplored edge of the space outside ``[0, 1]``.
        """
        if not self.input_warping:
            return None
        dim = like.shape[-1]
        bounds = torch.stack([torch.zeros(dim), torch.ones(dim)]).to(like)
        return Warp(d=dim, indices=list(range(dim)), bounds=bounds,
                    concentration1_prior=LogNormalPrior(0.0, WARP_PRIOR_SCALE),
                    concentration0_prior=LogNormalPrior(0.0, WARP_PRIOR_SCALE)).to(like)


#: BoTorch's own structure: RBF, no warping (the optimizer's default).
DEFAULT_DESIGN = GPDesign()
