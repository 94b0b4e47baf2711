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
  inputs, ``b + w . x``, its weights fitted (MAP) with the other hyperparameters under a
  Normal(0, :data:`LINEAR_MEAN_PRIOR_SD` / sd(x_i)) prior, sd(x_i) the spread of input i in
  the training data. Why: the PL peak of every reactor a chemist meets moves monotonically
  and smoothly with the conditions (hotter and longer red-shift it). A constant-mean GP reverts
  to the data's average a few lengthscales from its 4-6 design points, so its first proposals
  cannot aim at a band the design has not bracketed; a fitted trend carries the slope there.
  The prior keeps the trend modest where 4-6 points in 6 inputs cannot pin it down (7
  weights), and the stationary kernel still fits whatever the trend misses. Its weakness,
  measured: a MAP trend is a point estimate, so far from the data the model is as sure of the
  extrapolated peak as of the data (first proposals predicted at +-1-2 nm, 20-30 nm off).
  ``"linear_kernel"``: the same trend with its weights integrated out
  (:class:`CenteredLinearKernel` added to the stationary kernel), so the posterior sd grows
  along the trend away from the data.
* ``hyperprior``: the priors of the kernel's hyperparameters. ``None`` is BoTorch's
  dimension-scaled LogNormal on every lengthscale (the same for every input and outcome, no
  output scale); a :class:`Hyperprior` gives each input its own LogNormal lengthscale prior and
  the kernel a scaled output with its own LogNormal prior. With 6-10 points in 6 inputs the
  hyperparameters are barely identified by the data, so where they come from decides the
  model: :data:`FAMILY_HYPERPRIORS` are learned on the reactor family's design members
  (empirical Bayes, as in HyperBO, Wang et al. 2023).
* ``sparse``: a sparsity (SAAS) prior on the lengthscales instead (Eriksson & Jankowiak 2021,
  BoTorch's ``add_saas_prior``, fitted MAP): ``tau / lengthscale^2 ~ HalfCauchy(1)`` per input
  with a learned global shrinkage ``tau ~ HalfCauchy(0.1)``, in a scaled kernel. Why: the
  family's QY depends strongly on a few inputs, and which ones differs by reactor kind; the
  dimension-scaled prior lets 6-20 points spread relevance over every input, a population
  prior (``family``) is wide where it would have to be sharp. The half-Cauchy's mode at zero
  inverse lengthscale switches an input off unless the data need it, and its heavy tail lets
  the few inputs that matter be short (docs/benchmarks.md "Tenth round").
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from botorch.models.map_saas import add_saas_prior
from botorch.models.transforms.input import Warp
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from botorch.utils.constraints import LogTransformedInterval
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, LinearKernel, MaternKernel, RBFKernel, ScaleKernel
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

#: Starting output scale (standardized units) and its constraint of a kernel with the sparsity
#: prior: BoTorch's ``get_map_saas_model`` (a log-scale interval, so L-BFGS-B moves it in the log).
SPARSE_OUTPUTSCALE_START = 10.0
SPARSE_OUTPUTSCALE_BOUNDS = (1e-2, 1e4)


def sparse_kernel(kernel: str, like: Tensor) -> Kernel:
    """A scaled ARD ``kernel`` (a key of :data:`KERNEL_CLASSES`) with the SAAS prior, MAP.

    Args:
        kernel: The kernel's name.
        like: The training inputs ``(n, d)``: their width, device and dtype (the prior's
            tensors are made where the kernel lives; a gpytorch prior does not move with it).
    """
    base = KERNEL_CLASSES[kernel](ard_num_dims=like.shape[-1]).to(like)
    add_saas_prior(base, tau=None)
    low, high = SPARSE_OUTPUTSCALE_BOUNDS
    return ScaleKernel(base, outputscale_constraint=LogTransformedInterval(
        low, high, initial_value=SPARSE_OUTPUTSCALE_START)).to(like)


#: Prior sd of each input's trend, ``w_i * sd(x_i)``: how many standardized outcome sds the
#: linear mean may move over one sd of that input in the training data. Scaling by the inputs'
#: spread makes the prior the same whether the points span the box (the initial design) or
#: cluster near the band later (the outcome's standardization shrinks with them, so raw
#: standardized slopes grow as 1/spread). Least squares of the standardized PL peak on 4,096
#: uniform points of each of the 9 design-set members gave one dominant trend of 0.90-1.0 (the
#: halide ratio; 0.29 x slopes 3.1-3.5), the others within +-0.25, R^2 0.83-0.99
#: (docs/benchmarks.md "A trend in the mean"): 0.6 puts that trend 1.6 sd out, so the fit can
#: reach it while 4-6 points in 6 inputs cannot fix 7 weights at will.
LINEAR_MEAN_PRIOR_SD = 0.6

#: Sd of the LogNormal prior on the log of ``linear_kernel``'s variance (median
#: ``LINEAR_MEAN_PRIOR_SD**2``): its 95 % range spans a factor of 7 either way.
TREND_VARIANCE_PRIOR_SCALE = 1.0

#: Floor of ``linear_kernel``'s variance: with gpytorch's plain ``Positive`` constraint a fit
#: that drives the trend out (a QY GP, measured) underflows the softplus to exactly 0, where the
#: LogNormal prior's log-density is undefined and the fit raises.
TREND_VARIANCE_FLOOR = 1e-6

#: Smallest input spread the prior divides by (unit-cube units): an input every training point
#: shares says nothing about its slope, which then stays near its start (0) instead of free.
MIN_INPUT_SD = 0.02


def _linear_mean(X: Tensor) -> Mean:
    """``b + w . x`` from zero, with the spread-scaled Normal prior on ``w`` (module docs)."""
    dim = X.shape[-1]
    mean = LinearMean(input_size=dim, bias=True).to(X)
    with torch.no_grad():
        mean.weights.zero_()
        typing.cast(Tensor, mean.bias).zero_()
    scale = (LINEAR_MEAN_PRIOR_SD / _spread(X)).unsqueeze(-1)  # (dim, 1), as the weights
    mean.register_prior("weights_prior", NormalPrior(torch.zeros_like(scale), scale), "weights")
    return mean


def _spread(X: Tensor) -> Tensor:
    """Each input's sd in the training data ``(d,)``, floored (:data:`MIN_INPUT_SD`)."""
    return X.std(dim=0).clamp_min(MIN_INPUT_SD) if X.shape[0] > 1 else torch.ones_like(X[0])


class CenteredLinearKernel(LinearKernel):  # type: ignore[misc]
    """``v * sum_i z_i z'_i`` with ``z = (x - mean(X)) / sd(X)``: a linear trend, integrated.

    The covariance of ``w . z`` under ``w ~ N(0, v I)``: adding it to the stationary kernel is
    Bayesian linear regression on top of the GP, so the trend's weights are marginalized (the
    posterior mean is the ridge-like trend, and the posterior sd grows with the distance from
    the data along it) and only ``v`` is a fitted hyperparameter. Centring and scaling by the
    training inputs makes ``v`` mean the same for a box-wide design and for clustered points.
    """

    def __init__(self, X: Tensor) -> None:
        super().__init__(variance_prior=LogNormalPrior(math.log(LINEAR_MEAN_PRIOR_SD**2),
                                                       TREND_VARIANCE_PRIOR_SCALE),
                         variance_constraint=GreaterThan(TREND_VARIANCE_FLOOR))
        self.register_buffer("center", X.mean(dim=0))
        self.register_buffer("scale", 1.0 / _spread(X))
        self.variance = torch.tensor(LINEAR_MEAN_PRIOR_SD**2)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False,
                last_dim_is_batch: bool | None = False, **params: Any) -> Any:
        """The linear kernel on centred, scaled inputs."""
        return super().forward((x1 - self.center) * self.scale, (x2 - self.center) * self.scale,
                               diag=diag, last_dim_is_batch=last_dim_is_batch, **params)


@dataclass(frozen=True)
class Trend:
    """What a mean choice adds to an outcome GP: a mean function and/or a kernel term."""

    mean: Mean | None = None
    kernel: Kernel | None = None


#: Mean name -> builder of its :class:`Trend` for training inputs ``X`` (an empty Trend: BoTorch's
#: own constant mean, left to ``SingleTaskGP``).
MEANS: dict[str, Callable[[Tensor], Trend]] = {
    "constant": lambda X: Trend(),
    "linear": lambda X: Trend(mean=_linear_mean(X)),
    "linear_kernel": lambda X: Trend(kernel=CenteredLinearKernel(X).to(X)),
}

#: Kernel name -> its ARD kernel class with a given lengthscale prior and constraint (the
#: kernels of :data:`KERNELS` without BoTorch's prior, for a :class:`Hyperprior`).
KERNEL_CLASSES: dict[str, Callable[..., Kernel]] = {
    "rbf": RBFKernel,
    "matern52": lambda **kw: MaternKernel(nu=2.5, **kw),
}

#: Shortest lengthscale (unit-cube units) of a kernel with a :class:`Hyperprior`: BoTorch's own
#: floor in its dimension-scaled kernels, so the two differ in their priors only.
LENGTHSCALE_FLOOR = 2.5e-2

#: Floor of the output scale (standardized units) of a kernel with a :class:`Hyperprior`: with
#: gpytorch's plain ``Positive`` constraint a scale driven out underflows the softplus to 0,
#: where a LogNormal prior's log-density is undefined and the fit raises (the additive kernel's
#: failure, docs/benchmarks.md).
OUTPUTSCALE_FLOOR = 1e-4


@dataclass(frozen=True)
class LogNormal:
    """A LogNormal prior: ``log(value) ~ Normal(loc, scale)``.

    Attributes:
        loc: Mean of the log (the prior's median is ``exp(loc)``).
        scale: Sd of the log.
    """

    loc: float
    scale: float


@dataclass(frozen=True)
class Hyperprior:
    """Priors of one outcome GP's kernel hyperparameters (module docs).

    Attributes:
        lengthscales: One prior per input, in the GP's input order (unit-cube units).
        outputscale: Prior of the output scale (standardized outcome units: 1 is the variance
            of the training readings).
    """

    lengthscales: tuple[LogNormal, ...]
    outputscale: LogNormal

    def kernel(self, kernel: str, like: Tensor) -> Kernel:
        """A scaled ARD ``kernel`` (a key of :data:`KERNEL_CLASSES`) with these priors.

        Each hyperparameter starts at its prior's median, the typical value of the problems
        the prior was learned on.

        Args:
            kernel: The kernel's name.
            like: A tensor of the training data's device and dtype. The priors' parameters are
                made there: a gpytorch LogNormal prior keeps them where they were made when its
                kernel moves, and a per-input prior on the CPU cannot score CUDA lengthscales.
        """
        def on(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=like.dtype, device=like.device)

        loc = on([p.loc for p in self.lengthscales])
        scale = on([p.scale for p in self.lengthscales])
        base = KERNEL_CLASSES[kernel](
            ard_num_dims=len(self.lengthscales), lengthscale_prior=LogNormalPrior(loc, scale),
            lengthscale_constraint=GreaterThan(LENGTHSCALE_FLOOR, transform=None)).to(like)
        base.lengthscale = loc.exp().clamp_min(2 * LENGTHSCALE_FLOOR)
        out = self.outputscale
        scaled = ScaleKernel(base, outputscale_prior=LogNormalPrior(on([out.loc])[0],
                                                                    on([out.scale])[0]),
                             outputscale_constraint=GreaterThan(OUTPUTSCALE_FLOOR)).to(like)
        scaled.outputscale = math.exp(out.loc)
        return scaled


@dataclass(frozen=True)
class FamilyPrior:
    """One outcome's learned priors, its lengthscales by input name (:data:`HYPERPRIORS`).

    Attributes:
        lengthscales: ``(input name, prior)`` pairs.
        outputscale: Prior of the output scale (standardized units).
    """

    lengthscales: tuple[tuple[str, LogNormal], ...]
    outputscale: LogNormal

    def for_inputs(self, names: Sequence[str]) -> Hyperprior:
        """The :class:`Hyperprior` of a GP whose inputs are ``names``, in that order.

        Raises:
            ValueError: The inputs are not exactly the ones the prior was learned on.
        """
        table = dict(self.lengthscales)
        if sorted(names) != sorted(table):
            raise ValueError(f"learned on the inputs {sorted(table)}, got {sorted(names)}")
        return Hyperprior(tuple(table[n] for n in names), self.outputscale)


#: Hyperpriors learned on the reactor family's **design members only** (``benchmarks/family.yaml``:
#: 3 twin-prior, 3 random-Fourier-feature and 3 additive reactors; never a held-out member), by
#: ``benchmarks/family_hyperprior.py`` (record ``family-hyperprior``): each member's PL and QY
#: GPs (a scaled RBF kernel under a wide prior) fitted on 300 Sobol points of the InP/ZnS box with
#: the read noise stated, then per outcome and hyperparameter the mean and sd of the log of the 9
#: fitted values (lengthscales capped at 10, sd floored at 0.5). Lengthscales are unit-cube units;
#: the output scale is in standardized units (1 = the variance of the training readings). What
#: they say: the PL peak moves on the halide ratio (``cl_to_i``, median lengthscale 0.60) and
#: core temperature (2.2), slowly on the rest (4-5); QY varies fastest with the shell
#: temperature and S:Zn ratio (0.34, 0.43) and shell time (0.60). BoTorch's dimension-scaled
#: prior puts every lengthscale at a median of 10 (mode 0.5) in six inputs. Regenerate with
#: the script and copy its printout here; docs/benchmarks.md "Eighth round" has the figures.
FAMILY_HYPERPRIORS: dict[str, FamilyPrior] = {
    "pl_peak_nm": FamilyPrior(lengthscales=(
        ("t_core_c", LogNormal(0.808, 0.933)),
        ("tau_core_min", LogNormal(1.407, 0.841)),
        ("t_shell_c", LogNormal(1.524, 0.965)),
        ("tau_shell_min", LogNormal(1.464, 0.866)),
        ("cl_to_i", LogNormal(-0.513, 0.516)),
        ("s_to_zn", LogNormal(1.674, 1.096)),
    ), outputscale=LogNormal(1.219, 1.068)),
    "qy": FamilyPrior(lengthscales=(
        ("t_core_c", LogNormal(0.574, 1.417)),
        ("tau_core_min", LogNormal(0.62, 1.439)),
        ("t_shell_c", LogNormal(-1.09, 0.684)),
        ("tau_shell_min", LogNormal(-0.509, 0.5)),
        ("cl_to_i", LogNormal(0.172, 1.484)),
        ("s_to_zn", LogNormal(-0.835, 0.5)),
    ), outputscale=LogNormal(-0.447, 0.5)),
}

#: Hyperprior name -> outcome name -> learned priors (``"dimension_scaled"``: none, BoTorch's).
HYPERPRIORS: dict[str, dict[str, FamilyPrior]] = {"dimension_scaled": {},
                                                 "family": FAMILY_HYPERPRIORS}


def hyperprior_for(name: str, outcome: str, input_names: Sequence[str]) -> Hyperprior | None:
    """The priors of ``outcome``'s GP under hyperprior ``name``; ``None``: BoTorch's own.

    An outcome the table does not know keeps BoTorch's dimension-scaled prior: nothing was
    learned about it.

    Raises:
        ValueError: Unknown ``name``, or inputs other than those the priors were learned on.
    """
    if name not in HYPERPRIORS:
        raise ValueError(f"hyperprior must be one of {sorted(HYPERPRIORS)}, got {name!r}")
    learned = HYPERPRIORS[name].get(outcome)
    return None if learned is None else learned.for_inputs(input_names)


#: Scale of the LogNormal prior on the warp's two concentrations (median 1: the identity warp).
WARP_PRIOR_SCALE = math.sqrt(0.75)


@dataclass(frozen=True)
class GPDesign:
    """The structure of every outcome GP (the feasibility GP keeps its own kernel).

    Attributes:
        kernel: A key of :data:`KERNELS`.
        input_warping: Learn a Kumaraswamy-CDF warp of each input (module docs).
        mean: A key of :data:`MEANS`.
        hyperprior: Priors of the kernel's hyperparameters; ``None``: BoTorch's
            dimension-scaled lengthscale prior, no output scale.
        sparse: The sparsity (SAAS) prior on the lengthscales (module docs); not combined
            with ``hyperprior``, which sets them otherwise.
    """

    kernel: str = "rbf"
    input_warping: bool = False
    mean: str = "constant"
    hyperprior: Hyperprior | None = None
    sparse: bool = False

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"GPDesign.kernel must be one of {sorted(KERNELS)}, "
                             f"got {self.kernel!r}")
        if self.mean not in MEANS:
            raise ValueError(f"GPDesign.mean must be one of {sorted(MEANS)}, got {self.mean!r}")
        if self.sparse and self.hyperprior is not None:
            raise ValueError("GPDesign.sparse sets the lengthscales' prior; a hyperprior sets "
                             "them otherwise: give one of them")

    @property
    def is_default(self) -> bool:
        """Whether this is BoTorch's own ``SingleTaskGP`` structure (nothing to override)."""
        return self == GPDesign()

    def structure(self, X: Tensor) -> dict[str, object]:
        """``SingleTaskGP`` keyword arguments for inputs ``X`` (empty: BoTorch's own GP)."""
        if self.is_default:
            return {}
        trend = MEANS[self.mean](X)
        covar = self.covar_module(X)
        parts: dict[str, object] = {
            "covar_module": covar if trend.kernel is None else covar + trend.kernel,
            "input_transform": self.input_transform(X)}
        if trend.mean is not None:
            parts["mean_module"] = trend.mean.to(X)
        return parts

    def covar_module(self, X: Tensor) -> Kernel:
        """A fresh kernel over the inputs ``X`` (a hyperprior's priors on ``X``'s device, dtype).

        Raises:
            ValueError: The hyperprior has a lengthscale prior for another number of inputs.
        """
        dim = X.shape[-1]
        if self.sparse:
            return sparse_kernel(self.kernel, X)
        if self.hyperprior is None:
            return KERNELS[self.kernel](dim)
        if len(self.hyperprior.lengthscales) != dim:
            raise ValueError(f"GPDesign.hyperprior has {len(self.hyperprior.lengthscales)} "
                             f"lengthscale priors for {dim} inputs")
        return self.hyperprior.kernel(self.kernel, X)

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
