"""Choices of the outcome GPs' structure: the kernel family and a learned input warping.

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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from botorch.models.transforms.input import Warp
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.kernels import Kernel
from gpytorch.priors import LogNormalPrior
from torch import Tensor

#: Kernel name -> builder of an ARD kernel over ``dim`` inputs (BoTorch's dimension-scaled
#: lengthscale prior for both, so the kernels differ only in smoothness).
KERNELS: dict[str, Callable[[int], Kernel]] = {
    "rbf": lambda dim: get_covar_module_with_dim_scaled_prior(ard_num_dims=dim,
                                                              use_rbf_kernel=True),
    "matern52": lambda dim: get_covar_module_with_dim_scaled_prior(ard_num_dims=dim,
                                                                   use_rbf_kernel=False),
}

#: Scale of the LogNormal prior on the warp's two concentrations (median 1: the identity warp).
WARP_PRIOR_SCALE = math.sqrt(0.75)


@dataclass(frozen=True)
class GPDesign:
    """The structure of every outcome GP (the feasibility GP keeps its own kernel).

    Attributes:
        kernel: A key of :data:`KERNELS`.
        input_warping: Learn a Kumaraswamy-CDF warp of each input (module docs).
    """

    kernel: str = "rbf"
    input_warping: bool = False

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"GPDesign.kernel must be one of {sorted(KERNELS)}, "
                             f"got {self.kernel!r}")

    @property
    def is_default(self) -> bool:
        """Whether this is BoTorch's own ``SingleTaskGP`` structure (nothing to override)."""
        return self == GPDesign()

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
