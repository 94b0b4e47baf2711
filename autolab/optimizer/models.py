"""Surrogate models: one GP per outcome, plus a GP that learns where experiments fail.

Why this shape:

* One :class:`~botorch.models.SingleTaskGP` per outcome (a ``ModelListGP``): outcomes such as a PL
  peak (hundreds of nm) and a QY (0-1) have unrelated scales and smoothness, so each gets its own
  lengthscales, a ``Standardize`` outcome transform and a learned (inferred) noise level.
* Targets are modelled as the raw outcome (``pl_peak_nm``), never as ``|peak - target|``: the
  distance is folded into the objective on posterior samples, where the peak is smooth and the GP
  can extrapolate it; the kink of the absolute value would be a poor GP target.
* Failed experiments carry no outcome, so the outcome GPs are trained on successes only (failures
  cannot poison them). A separate feasibility GP is regressed on labels ``+1`` (success) / ``-1``
  (failure) over *all* experiments; the acquisition treats "latent label > 0" as a constraint,
  i.e. weights each candidate by its posterior probability of not failing. With Standardize the
  prior mean is the observed success rate, so unexplored regions look as feasible as the lab's
  average, not as certain failures.

* Known noise: when the analyzer states a 1-sigma per outcome (``tell(..., outcome_sd=...)``),
  that outcome's GP takes the stated variances as fixed, heteroscedastic observation noise
  (BoTorch's ``train_Yvar``), with a floor (:data:`NOISE_FLOOR_REL`) and a *learned* extra
  homoskedastic noise on top (gpytorch's ``FixedNoiseGaussianLikelihood(learn_additional_noise=
  True)``): a stated sigma that is too small (drift, sampling, an analyzer that is too confident)
  is absorbed by the extra term instead of forcing the GP through every reading. Experiments
  without a stated sigma for that outcome get the median of the stated ones.

* Many observations (dynamic experiments stream thousands): a GP with more than
  :data:`~autolab.optimizer.scalable.LARGE_N` points takes its hyperparameters from a subset and
  predicts with a sparse (inducing-point) posterior conditioned on every point, with the same
  known noise (:mod:`~autolab.optimizer.scalable`); smaller GPs are exact, as before.

Inputs are unit-cube coordinates from the space (log parameters already in log space), so no input
transform is needed by default. The kernel family, an optional learned input warp and an optional
linear trend as the mean are settings (:mod:`~autolab.optimizer.gp_design`,
``BotorchSettings.kernel`` / ``input_warping`` / ``mean``); docs/benchmarks.md "Outcome models"
and "A trend in the mean" have their figures.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from botorch.exceptions.warnings import OptimizationWarning
from botorch.models.gp_regression import SingleTaskGP
from botorch.models.model_list_gp_regression import ModelListGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import RBFKernel
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from gpytorch.mlls import SumMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior
from torch import Tensor

from autolab.optimizer import scalable
from autolab.optimizer.fitting import fit_model_list
from autolab.optimizer.gp_design import DEFAULT_DESIGN, GPDesign
from autolab.optimizer.prior import PriorSurrogate, attach_prior
from autolab.optimizer.scalable import SparseGP, fit_subset, sparse_record

#: Fixed noise (std, label units) of the feasibility GP. Learned noise on +-1 labels tends to
#: explain failures away as noise and leave the failing region looking feasible; a small fixed
#: noise makes each failure count while still tolerating a failure next to a success.
FEASIBILITY_NOISE = 0.1


#: Shortest lengthscale (unit-cube units) of the feasibility GP. Failure regions in a lab are
#: regions (too hot, too concentrated), not isolated points; without this floor the GP fits the
#: step between a success and a nearby failure with a tiny lengthscale and forgets each failure a
#: few percent of the range away, so the optimizer keeps walking into the same failing region.
FEASIBILITY_MIN_LENGTHSCALE = 0.2


#: Floor of a stated standard deviation, as a share of the outcome's spread in the data: a
#: stated sigma of ~0 would otherwise make the GP interpolate a reading exactly.
NOISE_FLOOR_REL = 1e-3

#: L-BFGS-B iteration cap of a fit on large-n subsets (measured on ask_timing's ramps data at
#: n = 1,000, 2 data sets x 3 subset seeds: outcome RMSE vs exact GPs 1.097x/1.048x at 100
#: iterations, 1.107x/1.052x at 30, feasibility unchanged; fit + SGPR build 0.82 -> 0.46 s CPU).
SUBSET_FIT_MAXITER = 30


def _filled_yvar(y: Tensor, yvar: Tensor | None) -> Tensor | None:
    """Stated variances with gaps filled by their median and a floor (module docs), or ``None``.

    Args:
        y: Outcome ``(n, 1)``.
        yvar: Stated variances ``(n, 1)``, NaN where none was stated, or ``None``.
    """
    if yvar is None or bool(torch.isnan(yvar).all()):
        return None
    known = yvar[~torch.isnan(yvar)]
    filled = torch.where(torch.isnan(yvar), known.median(), yvar)
    spread = float(y.std()) if y.shape[0] > 1 else 1.0
    return filled.clamp_min((NOISE_FLOOR_REL * max(spread, 1e-12)) ** 2)


def _outcome_gp(X: Tensor, y: Tensor, filled: Tensor | None,
                design: GPDesign = DEFAULT_DESIGN) -> SingleTaskGP:
    """One outcome's GP: learned noise, or stated noise + learned extra noise (module docs).

    Args:
        X: Inputs ``(n, d)``.
        y: Outcome ``(n, 1)``.
        filled: Stated variances ``(n, 1)`` (:func:`_filled_yvar`), or ``None``.
        design: Kernel, input warping and mean (:mod:`~autolab.optimizer.gp_design`).
    """
    structure: dict[str, Any] = design.structure(X)
    if filled is None:
        return SingleTaskGP(X, y, outcome_transform=Standardize(m=1), **structure)
    gp = SingleTaskGP(X, y, filled, outcome_transform=Standardize(m=1), **structure)
    # After SingleTaskGP.__init__ moved the model to X's device and dtype: move this one too.
    gp.likelihood = FixedNoiseGaussianLikelihood(
        noise=gp.likelihood.noise_covar.noise.detach().clone(), learn_additional_noise=True,
        noise_constraint=GreaterThan(1e-6, transform=None, initial_value=1e-3)).to(X)
    return gp


def _feasibility_kernel(dim: int) -> RBFKernel:
    """RBF kernel with BoTorch's dimension-scaled lengthscale prior and a lengthscale floor."""
    prior = LogNormalPrior(loc=math.sqrt(2) + 0.5 * math.log(dim), scale=math.sqrt(3))
    floor = FEASIBILITY_MIN_LENGTHSCALE
    return RBFKernel(
        ard_num_dims=dim,
        lengthscale_prior=prior,
        lengthscale_constraint=GreaterThan(floor, transform=None,
                                           initial_value=max(float(prior.mode), 2 * floor)),
    )


@dataclass(frozen=True)
class _Training:
    """One GP's full training data (raw units) and, above ``LARGE_N``, its fit subset."""

    X: Tensor
    y: Tensor
    yvar: Tensor | None
    rows: Tensor | None

    def subset(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """The data the hyperparameters are fitted on: the subset's rows, or all."""
        if self.rows is None:
            return self.X, self.y, self.yvar
        r = self.rows
        return self.X[r], self.y[r], None if self.yvar is None else self.yvar[r]

    def final(self, gp: SingleTaskGP) -> SingleTaskGP:
        """The fitted GP itself, or (large n) its sparse posterior on all points."""
        if self.rows is None:
            return gp
        return SparseGP(gp, self.X, self.y, self.yvar, n_fit=int(self.rows.numel()))


def _rows(n: int, yvar: Tensor | None, seed: int, device: torch.device,
          large_n: int | None, *, labels: Tensor | None = None) -> Tensor | None:
    """The fit subset's rows above ``large_n`` points, else ``None`` (fit on all)."""
    if n <= (scalable.LARGE_N if large_n is None else large_n):
        return None
    return fit_subset(n, yvar, scalable.FIT_SUBSET, seed, labels=labels).to(device)


def build_model_list(
    X_ok: Tensor,
    Y_ok: Tensor,
    X_all: Tensor | None = None,
    ok: Tensor | None = None,
    *,
    Yvar_ok: Tensor | None = None,
    prior: PriorSurrogate | None = None,
    names: Sequence[str] = (),
    maxiter: int = 100,
    seed: int = 0,
    large_n: int | None = None,
    design: GPDesign | Sequence[GPDesign] = DEFAULT_DESIGN,
) -> ModelListGP:
    """Fit one GP per outcome and, if given, the feasibility GP (last output).

    A GP with more than :data:`~autolab.optimizer.scalable.LARGE_N` training points gets its
    hyperparameters from a subset and a sparse posterior on all points
    (:mod:`~autolab.optimizer.scalable`); the others are exact GPs fitted on all their points.

    Args:
        X_ok: Unit-cube inputs of successful experiments, shape ``(n_ok, d)``.
        Y_ok: Their outcomes, shape ``(n_ok, m)``.
        X_all: Inputs of all experiments, shape ``(n, d)``; with ``ok``, adds the feasibility GP.
        ok: Success flags of ``X_all``, shape ``(n,)``, bool.
        Yvar_ok: Stated variances of ``Y_ok`` (NaN where none), shape ``(n_ok, m)``, or
            ``None`` to learn every noise level.
        prior: Prior knowledge (:mod:`~autolab.optimizer.prior`): the outcomes it predicts get
            its surrogate as a learned-weight mean function.
        names: Outcome names of ``Y_ok``'s columns (needed with ``prior``).
        maxiter: L-BFGS-B iteration cap per GP. The marginal likelihood is flat near its optimum,
            so ~100 iterations reach it within noise at half the cost of running to tolerance.
        seed: Seed of the large-n fit subsets.
        large_n: Threshold of the large-n path (``None``: ``scalable.LARGE_N``; a huge number
            forces exact GPs, e.g. to measure the approximation against them).
        design: Kernel, input warping and mean of the outcome GPs
            (:mod:`~autolab.optimizer.gp_design`; the default is BoTorch's): one for all, or
            one per column of ``Y_ok``.

    Returns:
        A fitted ``ModelListGP`` with ``m`` outputs, or ``m + 1`` with the feasibility GP last.
    """
    ok_rows = _rows(X_ok.shape[0], Yvar_ok, seed, X_ok.device, large_n)
    data = [
        _Training(X_ok, Y_ok[:, j : j + 1],
                  _filled_yvar(Y_ok[:, j : j + 1],
                               None if Yvar_ok is None else Yvar_ok[:, j : j + 1]), ok_rows)
        for j in range(Y_ok.shape[-1])
    ]
    designs = [design] * len(data) if isinstance(design, GPDesign) else list(design)
    if len(designs) != len(data):
        raise ValueError(f"design: expected one GPDesign per outcome ({len(data)}), "
                         f"got {len(designs)}")
    models = [_outcome_gp(*d.subset(), g) for d, g in zip(data, designs, strict=True)]
    if prior is not None:
        for name, gp in zip(names, models, strict=True):
            if name in prior.gps:
                attach_prior(gp, prior, name)
    if X_all is not None and ok is not None:
        labels = torch.where(ok, 1.0, -1.0).to(X_all).unsqueeze(-1)
        label_var = torch.full_like(labels, FEASIBILITY_NOISE**2)
        data.append(_Training(X_all, labels, label_var,
                              _rows(X_all.shape[0], None, seed + 1, X_all.device, large_n,
                                    labels=ok)))
        X_f, y_f, var_f = data[-1].subset()
        kernel = _feasibility_kernel(X_all.shape[-1])
        models.append(
            SingleTaskGP(X_f, y_f, var_f, covar_module=kernel,
                         outcome_transform=Standardize(m=1))
        )
    model = ModelListGP(*models)
    mll = SumMarginalLogLikelihood(model.likelihood, model)
    if any(d.rows is not None for d in data):
        # Subset hyperparameters are approximate anyway (SUBSET_FIT_MAXITER).
        maxiter = min(maxiter, SUBSET_FIT_MAXITER)
    with warnings.catch_warnings():
        # A fit that stops at maxiter is still a usable fit; BoTorch retries the bad ones itself.
        warnings.simplefilter("ignore", OptimizationWarning)
        fit_model_list(mll, maxiter)
    model.eval()
    if all(d.rows is None for d in data):
        return model
    final = ModelListGP(*[d.final(gp) for d, gp in zip(data, models, strict=True)])
    final.eval()
    return final


def hyperparameters(model: ModelListGP, names: list[str]) -> dict[str, dict[str, Any]]:
    """Fitted hyperparameters per output, in their constrained (readable) form, JSON-compatible.

    Lengthscales are in unit-cube units; noise and output scale in standardized outcome units.

    Args:
        model: The fitted model list.
        names: One name per output (outcome names, then ``"feasibility"`` if present).
    """
    record: dict[str, dict[str, Any]] = {}
    submodels: list[Any] = list(model.models)
    for name, sub in zip(names, submodels, strict=True):
        values: dict[str, Any] = {}
        for pname, param, constraint in sub.named_parameters_and_constraints():
            value = param if constraint is None else constraint.transform(param)
            key = pname.replace("raw_", "")
            values[key] = value.detach().cpu().reshape(-1).tolist()
        approximation = sparse_record(sub)
        if approximation:
            values["approximation"] = approximation
        record[name] = values
    return record
