"""GPs for thousands of observations: hyperparameters from a subset, a sparse posterior on all.

Dynamic experiments (issue 10) stream hundreds to thousands of observations per campaign, each
with its own stated noise (transient readings noisier than steady ones). The exact GP of
:mod:`~autolab.optimizer.models` costs ``O(n^3)`` per marginal-likelihood step of its
hyperparameter fit and ``O(n^2)`` per candidate scored by the acquisition; at n = 2,000 that is
seconds per ``ask``, and gpytorch switches to iterative (CG/Lanczos) solves above 800 points.
Above :data:`LARGE_N` the optimizer therefore builds each GP in two steps:

1. **Hyperparameters from a subset** (:func:`fit_subset`). The marginal likelihood of
   :data:`FIT_SUBSET` points pins lengthscales, output scale, learned extra noise and mean as
   well as all points would (their uncertainty shrinks like ``1/sqrt(n)``, and they are smooth,
   global quantities); the subset is the most precise half (the steady-state readings, which carry
   most of the information about the function) plus a seeded random half of the rest (so the
   subset still covers where the data are and the noise of the transient readings). The
   feasibility GP's subset, given its labels, is class-balanced instead: up to half failures,
   since a random subset holds too few of them to learn which inputs decide failure. The exact
   models of :mod:`~autolab.optimizer.models` are fitted on it, unchanged.
2. **A posterior conditioned on every point** (:class:`SparseGP`): Titsias' collapsed
   variational (SGPR) posterior with the stated heteroscedastic noise, whose inducing points are
   training inputs chosen by noise-aware greedy pivoted Cholesky (:func:`greedy_inducing`): each
   step adds the point whose prior variance, unexplained by the points chosen so far, is largest
   *relative to its own noise*, so steady readings and unexplored regions come first and a
   dense ramp contributes only as many points as it carries information. Selection stops when
   every training point's unexplained variance is below :data:`INDUCING_TOL` of its noise
   variance (the posterior is then within that of the exact GP's, Burt et al., JMLR 2020) or at
   :data:`MAX_INDUCING` points. With every point chosen the SGPR posterior *is* the exact one.

Cost per ask: the subset fit (constant), ``O(n m^2)`` once per GP for the posterior cache, and
``O(m^2)`` per candidate, so the acquisition search no longer grows with ``n``.

Everything follows the device and dtype of the training tensors (the optimizer puts them on
``BotorchSettings.device``), so the same code runs on CUDA.
"""

from __future__ import annotations

from typing import Any

import torch
from botorch.models.gp_regression import SingleTaskGP
from gpytorch.distributions import MultivariateNormal
from gpytorch.likelihoods import FixedNoiseGaussianLikelihood
from linear_operator import to_dense
from linear_operator.operators import DenseLinearOperator, RootLinearOperator
from torch import Tensor

#: Above this many training points of one GP, the subset fit + sparse posterior is used. Up to
#: here the exact GP fitted on every point costs about what the large-n path does (exact ask at
#: 300 points: 1.2 s CPU; at 1,000: 1.8 s CPU and 2.6 s wall, with gpytorch's CG solves above
#: 800 points) and is exact.
LARGE_N = 300

#: Points whose marginal likelihood sets the hyperparameters of a large-n GP.
FIT_SUBSET = 200

#: Most inducing points of a :class:`SparseGP` (bounds the ``O(m^2)`` cost per candidate).
MAX_INDUCING = 400

#: Up to this many points the greedy selection computes the whole kernel matrix at once (72 MB
#: in float64 at 3,000); above, one column per chosen point.
FULL_KERNEL_N = 3000

#: Greedy selection stops once no training point has unexplained prior variance above this share
#: of its noise variance.
INDUCING_TOL = 1e-3

#: Largest joint batch ``q`` whose posterior covariance is returned dense (larger: lazy, so that
#: reading the variances of thousands of points never forms their covariance).
DENSE_Q = 64

#: Smallest posterior variance of a single point, as a share of its prior variance.
MIN_VARIANCE_REL = 1e-12

#: Relative jitter (of the prior variance) added to the inducing points' kernel matrix.
JITTER = 1e-8


def fit_subset(n: int, yvar: Tensor | None, size: int, seed: int,
               labels: Tensor | None = None) -> Tensor:
    """Indices (sorted) of the points whose marginal likelihood sets the hyperparameters.

    Outcome GPs (``yvar``): the most precise half (steady readings) plus a seeded random half of
    the rest. The feasibility GP (``labels``): its rarer class (the failures, as a rule) makes up
    to half the subset, the rest is drawn at random from the other class. A failing corner holds
    a few percent of the experiments, so a random subset of 200 carries only a handful of
    failures, too few to tell which inputs the failures depend on (measured on the ramps data of
    ``benchmarks/ask_timing.py`` at n = 700: 6 failures in the random subset, lengthscales long
    in the inputs that decide failure, and the whole failing corner predicted feasible). This is
    case-control sampling; it lowers the subset's label average but hardly the GP's fitted
    constant, since to the GP the failures are a local dip, not a lower level (tested), so the
    mean is used as fitted (moving it by the difference of averages overshoots, to above +1).

    Args:
        n: Number of training points.
        yvar: Stated variances ``(n, m)`` (NaN where none was stated), or ``None``.
        size: Subset size; all points if ``n <= size``.
        seed: Seed of the random draws.
        labels: Class of each point ``(n,)`` (bool), or ``None``; not together with ``yvar``.

    Returns:
        Long tensor of ``min(n, size)`` distinct indices, on the CPU.

    Raises:
        ValueError: Both ``yvar`` and ``labels`` given, or ``labels`` not of shape ``(n,)``.
    """
    if yvar is not None and labels is not None:
        raise ValueError("fit_subset: give yvar (outcome GP) or labels (feasibility GP), not both")
    if labels is not None and tuple(labels.shape) != (n,):
        raise ValueError(f"fit_subset: labels must have shape ({n},), got {tuple(labels.shape)}")
    if n <= size:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    if labels is not None:
        first = _rare_class(labels.detach().cpu().bool(), size // 2, gen)
    else:
        first = _most_precise(yvar, size // 2, gen)
    rest = torch.ones(n, dtype=torch.bool)
    rest[first] = False
    others = torch.nonzero(rest).squeeze(-1)
    pick = others[torch.randperm(others.numel(), generator=gen)[: size - first.numel()]]
    return torch.sort(torch.cat([first, pick])).values


def _most_precise(yvar: Tensor | None, k: int, gen: torch.Generator) -> Tensor:
    """The ``k`` points of smallest stated sd (relative to each outcome's median); none if unstated.

    Ties (all steady readings state the same sd) are broken at random, not by time of telling.
    """
    if yvar is None or bool(torch.isnan(yvar).all()):
        return torch.empty(0, dtype=torch.long)
    var = yvar.detach().cpu()
    rel = var / var.nanmedian(dim=0).values.clamp_min(1e-300)
    rel = torch.nan_to_num(rel, nan=1.0).mean(dim=-1)  # unstated = median
    perm = torch.randperm(var.shape[0], generator=gen)
    return perm[torch.argsort(rel[perm], stable=True)[:k]]


def _rare_class(labels: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """Up to ``k`` points of the rarer class of ``labels``, drawn at random."""
    rare = labels if int(labels.sum()) * 2 < labels.numel() else ~labels
    rows = torch.nonzero(rare).squeeze(-1)
    return rows[torch.randperm(rows.numel(), generator=gen)[:k]]


def greedy_inducing(kernel: Any, X: Tensor, noise: Tensor, max_m: int = MAX_INDUCING,
                    tol: float = INDUCING_TOL) -> Tensor:
    """Inducing points by noise-aware greedy pivoted Cholesky of the prior kernel matrix.

    Args:
        kernel: The GP's covariance module.
        X: Training inputs ``(n, d)``.
        noise: Each point's total noise variance ``(n,)`` (same units as the kernel).
        max_m: Most points chosen.
        tol: Stop when every residual variance is at most ``tol`` times its noise variance.

    Returns:
        Long tensor of the chosen rows of ``X``, in the order chosen.
    """
    n = X.shape[0]
    with torch.no_grad():
        # One kernel call for all columns when the matrix is small enough; else one per pivot.
        full = _dense_kernel(kernel, X, X) if n <= FULL_KERNEL_N else None
        residual = kernel(X, diag=True).detach().clone()
        rows = X.new_zeros(min(max_m, n), n)
        chosen: list[int] = []
        for k in range(min(max_m, n)):
            score = residual / noise
            i = int(torch.argmax(score))
            if float(score[i]) <= tol:
                break
            column = (full[i] if full is not None
                      else _dense_kernel(kernel, X[i : i + 1], X).reshape(-1))
            row = (column - rows[:k, i] @ rows[:k]) / residual[i].sqrt()
            rows[k] = row
            residual = (residual - row**2).clamp_min(0.0)
            residual[i] = 0.0
            chosen.append(i)
    return torch.tensor(chosen, dtype=torch.long, device=X.device)


def _dense_kernel(kernel: Any, a: Tensor, b: Tensor) -> Tensor:
    """``kernel(a, b)`` as a tensor, by its ``forward`` (no lazy-tensor bookkeeping per call)."""
    out: Tensor = to_dense(kernel.forward(a, b))
    return out


def _standardized(fitted: SingleTaskGP, Y: Tensor, Yvar: Tensor | None) -> tuple[Tensor,
                                                                                 Tensor | None]:
    """``Y`` (and ``Yvar``) in the fitted GP's standardized units (its fixed ``Standardize``)."""
    tf: Any = fitted.outcome_transform
    mean, sd = tf.means.reshape(-1)[0], tf.stdvs.reshape(-1)[0]
    return (Y - mean) / sd, None if Yvar is None else Yvar / sd**2


class SparseGP(SingleTaskGP):
    """SGPR posterior on all points with the hyperparameters of a GP fitted on a subset.

    A ``SingleTaskGP`` on the full data whose modules (mean, kernel, likelihood noise, outcome
    transform) are the fitted subset GP's; in eval mode it predicts with the collapsed
    variational posterior (module docs) instead of gpytorch's exact prediction strategy. Not
    meant to be trained: refit by fitting a new subset GP.

    Args:
        fitted: The GP fitted on a subset (its ``Standardize`` stays fixed).
        X: All training inputs ``(n, d)``.
        Y: All training outcomes ``(n, 1)``, raw units.
        Yvar: Their variances ``(n, 1)`` in raw units (already filled and floored), if the fitted
            GP has known noise; ``None`` for a learned homoskedastic noise.
        n_fit: Size of the subset the hyperparameters came from (recorded).
        max_inducing: Most inducing points (:func:`greedy_inducing`).
        tol: Inducing-point stopping tolerance (:func:`greedy_inducing`).
    """

    def __init__(self, fitted: SingleTaskGP, X: Tensor, Y: Tensor, Yvar: Tensor | None,
                 n_fit: int, *, max_inducing: int = MAX_INDUCING,
                 tol: float = INDUCING_TOL) -> None:
        y_std, yvar_std = _standardized(fitted, Y, Yvar)
        likelihood: Any = fitted.likelihood
        if isinstance(likelihood, FixedNoiseGaussianLikelihood):
            if yvar_std is None:
                raise ValueError("a GP with known noise needs Yvar for all points")
            extra = likelihood.second_noise_covar
            likelihood = FixedNoiseGaussianLikelihood(
                noise=yvar_std.squeeze(-1), learn_additional_noise=extra is not None,
                noise_constraint=None if extra is None else extra.raw_noise_constraint)
            if extra is not None:
                likelihood.second_noise_covar.load_state_dict(extra.state_dict())
        super().__init__(X, y_std, yvar_std, likelihood=likelihood,
                         covar_module=fitted.covar_module, mean_module=fitted.mean_module,
                         outcome_transform=None,
                         input_transform=getattr(fitted, "input_transform", None))
        self.outcome_transform = fitted.outcome_transform
        self.n_fit = n_fit
        self.eval()
        # The kernel works on transformed inputs (a learned warp, gp_design.py): ``posterior``
        # transforms the candidates before they reach _posterior_mvn, so the cache must too.
        with torch.no_grad():
            X_kernel = self.transform_inputs(X)
        self._build_cache(X_kernel, y_std.squeeze(-1), max_inducing, tol)

    def _noise(self, n: int) -> Tensor:
        """Total noise variance of each training point ``(n,)``, standardized units."""
        noise: Tensor = self.likelihood.noise.detach()
        return noise.expand(n) if noise.numel() == 1 else noise.reshape(n)

    def _build_cache(self, X: Tensor, y: Tensor, max_inducing: int, tol: float) -> None:
        """Inducing points and the factors every prediction reuses (GPflow's SGPR algebra)."""
        with torch.no_grad():
            noise = self._noise(X.shape[0])
            kernel: Any = self.covar_module
            idx = greedy_inducing(kernel, X, noise, max_inducing, tol)
            Z = X[idx]
            Kzz = kernel(Z).to_dense()
            jitter = JITTER * float(Kzz.diagonal().mean())
            Lz = torch.linalg.cholesky(Kzz + jitter * torch.eye(len(idx), dtype=X.dtype,
                                                                 device=X.device))
            Kzx = kernel(Z, X).to_dense()
            mean_module: Any = self.mean_module
            resid = y - mean_module(X).detach().reshape(-1)
            A = torch.linalg.solve_triangular(Lz, Kzx / noise.sqrt(), upper=False)  # (m, n)
            B = A @ A.mT + torch.eye(len(idx), dtype=X.dtype, device=X.device)
            LB = torch.linalg.cholesky(B)
            c = torch.linalg.solve_triangular(LB, A @ (resid / noise.sqrt()).unsqueeze(-1),
                                              upper=False)
        self.inducing_index = idx
        self._Z, self._Lz, self._LB, self._c = Z, Lz, LB, c

    @property
    def n_inducing(self) -> int:
        """Number of inducing points."""
        return int(self._Z.shape[0])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Prior in train mode (as any GP); the sparse posterior in eval mode."""
        if self.training:
            return super().__call__(*args, **kwargs)
        return self._posterior_mvn(args[0])

    def _posterior_mvn(self, x: Tensor) -> MultivariateNormal:
        """Latent posterior at ``x`` (``(..., q, d)``), standardized units.

        All points go through the triangular solves as columns of one right-hand side: a
        batched solve would broadcast (copy) the ``m x m`` factors once per batch.
        """
        kernel: Any = self.covar_module
        mean_module: Any = self.mean_module
        shape, m = x.shape[:-1], self.n_inducing
        kzx = _dense_kernel(kernel, self._Z, x.reshape(-1, x.shape[-1]))  # (m, N)
        W = torch.linalg.solve_triangular(self._Lz, kzx, upper=False)
        U = torch.linalg.solve_triangular(self._LB, W, upper=False)
        mean = mean_module(x) + (U * self._c).sum(dim=0).reshape(shape)
        W_root, U_root = W.mT.reshape(*shape, m), U.mT.reshape(*shape, m)
        if shape[-1] == 1:
            # The acquisition's batches of single points: plain tensors (linear operators cost
            # more in bookkeeping than the arithmetic), the variance kept positive for the
            # distribution's eager 1 x 1 Cholesky.
            prior = _dense_kernel(kernel, x, x)
            var = prior - W_root @ W_root.mT + U_root @ U_root.mT
            return MultivariateNormal(mean, var.clamp_min(MIN_VARIANCE_REL * prior))
        if shape[-1] <= DENSE_Q:
            dense = _dense_kernel(kernel, x, x) - W_root @ W_root.mT + U_root @ U_root.mT
            return MultivariateNormal(mean, DenseLinearOperator(dense))  # lazy: no eager Cholesky
        covar = kernel(x) - RootLinearOperator(W_root) + RootLinearOperator(U_root)
        return MultivariateNormal(mean, covar)


def sparse_record(model: Any) -> dict[str, Any]:
    """What a large-n GP approximated (for the model record), empty for an exact GP."""
    if not isinstance(model, SparseGP):
        return {}
    return {"n_train": int(model.train_inputs[0].shape[-2]), "n_fit": model.n_fit,
            "n_inducing": model.n_inducing}

