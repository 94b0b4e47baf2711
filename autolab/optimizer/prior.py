"""Prior knowledge as a GP prior mean: the model learns only where the prior is wrong.

A prior is any callable that predicts outcomes from conditions (:class:`OutcomePrior`), e.g. the
digital twin's noise-free response (``autolab.prior.twin_prior`` builds that one; this package
must not import the twin). The optimizer uses it as the *mean function* of each predicted
outcome's GP, ``m(x) = w * prior(x) + c`` with ``w`` (initially 1) and ``c`` learned with the
other hyperparameters, so the GP models the discrepancy ``y - m(x)``. Where the real reactor
agrees with the prior, a few experiments confirm it and the first proposals already land near the
target; where it does not, the learned weight shrinks and the discrepancy GP takes over, which
costs little against a cold start because the kernel is the same.

The prior callable is usually not differentiable in torch (the twin is numpy), while the
acquisition is maximized with gradients. It is therefore read once on a seeded Sobol design of
the space (:data:`PRIOR_POINTS` points) and replaced by the posterior mean of a GP fitted to it
(:class:`PriorSurrogate`): smooth, differentiable, and cheap to evaluate. Conditions where the
prior predicts nothing (NaN, e.g. no emission) are left out of that fit.

How sure the model is of the prior after one or two readings (``prior_spread``): the
discrepancy GP's amplitude is in the outcome's standardized units, and ``Standardize`` takes its
scale from the readings. One reading gives scale 1 (1 nm of PL), two close readings a few nm, so
with ``prior_spread: data`` a reading 16 nm off the twin makes the model sure the twin is off by
that constant everywhere: the second proposal was predicted at 550.0 +- 1.0 nm and missed by
4-29 nm. With ``prior_spread: stated`` the prior states how far a real reactor may stray from it
(``OutcomePrior.discrepancy_sd``: outcome -> 1-sigma of the discrepancy around its learned
offset, for the twin measured on the reactor family), and the discrepancy gets a learned
amplitude (a ``ScaleKernel``) whose LogNormal prior is centred on that sigma in raw units, wide
enough (:data:`SPREAD_PRIOR_SCALE`) that a reactor further from the prior than the family's
members raises it from the data. Few readings then leave the model as unsure as the family
says it should be; many readings decide for themselves.

Validation (:func:`check_prior`): the prior must name every searched parameter, with the same
unit where both state one, and predict at least one outcome the objective reads; a stated
discrepancy sigma must be a finite positive number of a predicted outcome. Anything else is a
:class:`~autolab.exceptions.ConfigError` naming the parameter or outcome.
"""

from __future__ import annotations

import copy
import hashlib
import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from botorch.exceptions.warnings import OptimizationWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models.gp_regression import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import Kernel, ScaleKernel
from gpytorch.means import Mean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior, NormalPrior
from numpy.typing import NDArray
from torch import Tensor

from autolab.exceptions import ConfigError
from autolab.objective import ObjectiveSpec
from autolab.space import ParameterSpace

#: A prior surrogate's fitted GPs and their posterior-mean weights, by outcome.
_Fitted = tuple[dict[str, SingleTaskGP], dict[str, tuple[Tensor, Tensor, float, float]]]

#: Points of the space at which the prior is read (seeded scrambled Sobol).
PRIOR_POINTS = 256

#: Standard deviation of the Gaussian prior on the prior mean's weight (centred on 1).
WEIGHT_PRIOR_SD = 0.3

#: Width (log-variance units) of the LogNormal prior on the discrepancy amplitude, whose mode
#: is the stated variance: one sigma is a factor e^0.5 ~ 1.65 in amplitude, so a discrepancy
#: 3x the stated one costs the fit about two sigmas and a handful of readings can make that case.
SPREAD_PRIOR_SCALE = 1.0

#: Smallest discrepancy amplitude, as a share of the stated sigma. Two readings are fitted
#: exactly by the prior mean's learned weight and offset alone, and the marginal likelihood then
#: drives the amplitude to zero (measured: 0.01 of the stated variance after the second
#: reading): a model sure of the prior after two readings is what the family contradicts.
SPREAD_FLOOR = 0.5

#: Unit spellings treated as the same unit.
_UNIT_ALIASES = {"°c": "c", "degc": "c", "celsius": "c", "minutes": "min", "mins": "min"}


@runtime_checkable
class OutcomePrior(Protocol):
    """Predicted outcomes for conditions: what is known about a reactor before any experiment.

    Attributes:
        name: Short label for records (``"twin"``).
        parameters: Parameter name -> unit the prior expects (``{"t_core_c": "°C", ...}``; an
            empty unit for ratios). Must cover every searched parameter.
        outcomes: Outcome names it predicts (``("pl_peak_nm", "qy", "fwhm_nm")``).

    A prior may also state ``discrepancy_sd`` (outcome name -> 1-sigma, in the outcome's units,
    of how far a real reactor's response strays from it once a constant offset is learned),
    which ``prior_spread: stated`` needs; it is optional, so a prior without it still fits.
    """

    name: str
    parameters: Mapping[str, str]
    outcomes: tuple[str, ...]

    def __call__(self, points: Sequence[Mapping[str, float]]) -> Mapping[str, NDArray[np.float64]]:
        """Outcome name -> predicted values ``(len(points),)``; NaN where nothing is predicted."""
        ...


def _unit(u: str) -> str:
    key = u.strip().lower()
    return _UNIT_ALIASES.get(key, key)


def check_prior(prior: Any, space: ParameterSpace, objective: ObjectiveSpec) -> None:
    """Refuse a prior that does not fit the space and objective.

    Raises:
        ConfigError: Not an :class:`OutcomePrior`; a searched parameter missing from the prior or
            in another unit; no objective outcome predicted.
    """
    if not isinstance(prior, OutcomePrior):
        raise ConfigError(f"prior must be an OutcomePrior (name, parameters, outcomes, "
                          f"__call__), got {type(prior).__name__}")
    for p in space.parameters:
        if p.name not in prior.parameters:
            raise ConfigError(f"prior {prior.name!r} does not know parameter {p.name!r}; "
                              f"it takes {sorted(prior.parameters)}")
        unit = prior.parameters[p.name]
        if p.unit and unit and _unit(p.unit) != _unit(unit):
            raise ConfigError(f"prior {prior.name!r}: parameter {p.name!r} is in {unit!r} there "
                              f"but in {p.unit!r} in the space")
    if not set(prior.outcomes) & set(objective.outcome_names):
        raise ConfigError(f"prior {prior.name!r} predicts {list(prior.outcomes)}, none of the "
                          f"objective's outcomes {list(objective.outcome_names)}")
    check_spread(prior)


def check_spread(prior: Any) -> None:
    """Refuse a stated ``discrepancy_sd`` that is not outcome -> finite positive sigma.

    Raises:
        ConfigError: Not a mapping, an outcome the prior does not predict, or a sigma that is
            not a finite number > 0.
    """
    spread = getattr(prior, "discrepancy_sd", None)
    if spread is None:
        return
    if not isinstance(spread, Mapping):
        raise ConfigError(f"prior {prior.name!r}: discrepancy_sd must map outcome names to "
                          f"sigmas, got {type(spread).__name__}")
    for name, sd in spread.items():
        if name not in prior.outcomes:
            raise ConfigError(f"prior {prior.name!r}: discrepancy_sd names {name!r}, which it "
                              f"does not predict; it predicts {list(prior.outcomes)}")
        if isinstance(sd, bool) or not isinstance(sd, int | float) or not (
                math.isfinite(sd) and sd > 0):
            raise ConfigError(f"prior {prior.name!r}: discrepancy_sd[{name!r}] = {sd!r} must be "
                              "a finite number > 0 (the outcome's units)")


def stated_spread(prior: OutcomePrior) -> dict[str, float]:
    """The prior's stated discrepancy sigmas (``prior_spread: stated``).

    Raises:
        ConfigError: The prior states none (it has no ``discrepancy_sd``).
    """
    spread = getattr(prior, "discrepancy_sd", None)
    if not spread:
        raise ConfigError(f"prior_spread is 'stated' but prior {prior.name!r} states no "
                          "discrepancy_sd (outcome -> sigma); use prior_spread: data")
    return {str(k): float(v) for k, v in spread.items()}


#: Prior surrogates kept fitted in this process (:func:`_fit_surrogate_gps`), most recent last.
FITTED_KEPT = 8
_FITTED: OrderedDict[str, _Fitted] = OrderedDict()
_FITTED_LOCK = threading.Lock()


def _fit_key(u: NDArray[np.float64], ys: Mapping[str, NDArray[np.float64]], seed: int) -> str:
    """What a surrogate's fit depends on: the design, the prior's values there, the seed."""
    h = hashlib.sha256(np.ascontiguousarray(u).tobytes())
    for name, y in ys.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(y).tobytes())
    h.update(str(int(seed)).encode())
    return h.hexdigest()


def _fit_surrogate_gps(X: Tensor, ys: Mapping[str, NDArray[np.float64]], seed: int) -> _Fitted:
    """One GP per outcome on the prior's values (NaN left out), frozen, with its mean weights.

    Memoized by :class:`PriorSurrogate` on the data (:func:`_fit_key`): a resumed campaign, a
    guarded and an unguarded optimizer, or the cells of a benchmark strategy read the same prior
    on the same design with the same seed, and the fits of 256 points are seconds each. The GPs
    are frozen (no gradients, eval mode), so sharing them is safe; ``only`` already shares them.
    """
    gps: dict[str, SingleTaskGP] = {}
    weights: dict[str, tuple[Tensor, Tensor, float, float]] = {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for name, values in ys.items():
            y = torch.as_tensor(values).reshape(-1, 1)
            keep = torch.isfinite(y).reshape(-1)
            if int(keep.sum()) < 8:
                continue
            gp = SingleTaskGP(X[keep], y[keep], outcome_transform=Standardize(m=1))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizationWarning)
                fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            gp.eval()
            for p in gp.parameters():
                p.requires_grad_(False)
            gps[name] = gp
            weights[name] = _mean_weights(gp)
    return gps, weights


class PriorSurrogate:
    """Smooth, differentiable stand-in for a prior: one GP posterior mean per outcome.

    Args:
        prior: The prior (checked with :func:`check_prior`).
        space: The space (unit-cube coordinates are the GP inputs).
        seed: Seed of the design and the fits.
        n_points: Design size.
        outcomes: Only these outcomes (those the objective reads); ``None``: all predicted.
        spread: Outcome -> stated discrepancy sigma (raw units) that sizes the discrepancy's
            amplitude (:func:`attach_prior`); ``None``: the amplitude comes from the data.
    """

    def __init__(self, prior: OutcomePrior, space: ParameterSpace, seed: int,
                 n_points: int = PRIOR_POINTS, *, outcomes: Sequence[str] | None = None,
                 spread: Mapping[str, float] | None = None) -> None:
        from autolab.optimizer.design import sobol_design  # noqa: PLC0415 (cycle-free import)

        u = sobol_design(space, seed, 0, n_points)
        values = prior(space.from_unit(u))
        self.name = prior.name
        self.spread = dict(spread or {})
        names = [n for n in prior.outcomes if outcomes is None or n in outcomes]
        ys = {n: np.asarray(values[n], dtype=np.float64).reshape(-1) for n in names}
        key = _fit_key(np.asarray(u, dtype=np.float64), ys, seed)
        with _FITTED_LOCK:
            fitted = _FITTED.get(key)
            if fitted is not None:
                _FITTED.move_to_end(key)
        if fitted is None:
            fitted = _fit_surrogate_gps(torch.tensor(u, dtype=torch.float64), ys, seed)
            with _FITTED_LOCK:
                _FITTED[key] = fitted
                while len(_FITTED) > FITTED_KEPT:
                    _FITTED.popitem(last=False)
        self.gps: dict[str, SingleTaskGP] = dict(fitted[0])
        self._weights: dict[str, tuple[Tensor, Tensor, float, float]] = dict(fitted[1])

    def only(self, outcomes: Collection[str]) -> PriorSurrogate:
        """This surrogate restricted to ``outcomes`` (the others are then modelled cold).

        Shares the fitted GPs, so a restriction per fit costs nothing
        (``BotorchSettings.prior_outcomes``, :mod:`~autolab.optimizer.prior_outcomes`).
        """
        out = copy.copy(self)
        out.gps = {k: v for k, v in self.gps.items() if k in outcomes}
        out._weights = {k: v for k, v in self._weights.items() if k in outcomes}
        return out

    def mean(self, name: str, X: Tensor) -> Tensor:
        """Prior mean of outcome ``name`` at unit-cube ``X`` (``(..., n, d)`` -> ``(..., n)``).

        The GP's posterior mean, ``c + k(X, X_s) @ alpha`` untransformed, from weights solved
        once (:func:`_mean_weights`): the mean and :class:`PriorWeightKernel` read it on every
        acquisition evaluation, where the full posterior machinery cost 4x the whole ask.
        """
        gp = self.gps[name]
        alpha, const, shift, scale = self._weights[name]
        # The surrogate's GPs stay on the CPU; X may be on the optimizer's device.
        x = X.to(device=alpha.device, dtype=torch.float64)
        k = gp.covar_module(x, gp.train_inputs[0]).to_dense()
        mean: Tensor = ((const + k @ alpha) * scale + shift).to(X)
        return mean


def _mean_weights(gp: SingleTaskGP) -> tuple[Tensor, Tensor, float, float]:
    """``(alpha, c, shift, scale)`` of a fitted GP's posterior mean (:meth:`PriorSurrogate.mean`).

    ``alpha = (K + noise I)^-1 (y - c)`` in the GP's standardized units, ``c`` its constant
    mean, ``shift``/``scale`` its ``Standardize`` transform.
    """
    X, y = gp.train_inputs[0], gp.train_targets
    c = gp.mean_module.constant.detach().reshape(())
    K = gp.covar_module(X).to_dense() + gp.likelihood.noise.detach().reshape(()) * torch.eye(
        X.shape[0], dtype=X.dtype)
    alpha = torch.cholesky_solve((y - c).unsqueeze(-1), torch.linalg.cholesky(K)).squeeze(-1)
    tf: Any = gp.outcome_transform
    return alpha, c, float(tf.means.reshape(-1)[0]), float(tf.stdvs.reshape(-1)[0])


class _StandardizedPrior:
    """The prior of one outcome in its GP's standardized units (``PriorMean``, the kernel)."""

    surrogate: PriorSurrogate
    outcome: str
    mu: float
    sd: float

    def _bind(self, surrogate: PriorSurrogate, name: str, mu: float, sd: float) -> None:
        self.surrogate = surrogate
        self.outcome = name
        self.mu = mu
        self.sd = sd

    def _feature(self, x: Tensor) -> Tensor:
        """``(prior(x) - mu) / sd``, shape ``(..., n)``."""
        out: Tensor = (self.surrogate.mean(self.outcome, x) - self.mu) / self.sd
        return out


class PriorMean(Mean, _StandardizedPrior):  # type: ignore[misc]
    """GP mean ``w * (prior(x) - mu) / sd + c`` in the outcome GP's standardized units.

    Args:
        surrogate: The prior surrogate.
        name: Outcome name.
        mu: Mean of the outcome GP's training targets (its ``Standardize`` shift).
        sd: Their standard deviation (its ``Standardize`` scale).
    """

    def __init__(self, surrogate: PriorSurrogate, name: str, mu: float, sd: float) -> None:
        super().__init__()
        self._bind(surrogate, name, mu, sd)
        self.register_parameter("weight", torch.nn.Parameter(torch.ones((), dtype=torch.float64)))
        self.register_parameter("constant", torch.nn.Parameter(torch.zeros((),
                                                                           dtype=torch.float64)))
        # The prior's trends are believed: its weight stays near 1 unless the data insist (a
        # handful of in-band points cannot identify a slope, and a wild weight extrapolates
        # badly).
        self.register_prior("weight_prior", NormalPrior(1.0, WEIGHT_PRIOR_SD), "weight")

    def forward(self, x: Tensor) -> Tensor:
        """Prior mean at ``x``, shape ``(..., n)``."""
        out: Tensor = self.weight * self._feature(x) + self.constant
        return out


class PriorWeightKernel(Kernel, _StandardizedPrior):  # type: ignore[misc]
    """The prior mean's weight as a random variable: ``s**2 * f(x) * f(x')``.

    ``f(x) = (prior(x) - mu) / sd`` is the prior in the outcome GP's standardized units and
    ``s`` = :data:`WEIGHT_PRIOR_SD`. Added to the discrepancy kernel (with the mean's weight held
    at 1) it is Bayesian linear regression on the prior: the weight's uncertainty shows in the
    predictions wherever the prior's trend carries the prediction far from the readings,
    instead of a point estimate that two readings fit exactly (and then trust everywhere).

    Args:
        surrogate: The prior surrogate.
        name: Outcome name.
        mu: The outcome GP's ``Standardize`` shift.
        sd: Its scale.
    """

    def __init__(self, surrogate: PriorSurrogate, name: str, mu: float, sd: float) -> None:
        super().__init__()
        self._bind(surrogate, name, mu, sd)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, **params: Any) -> Tensor:
        """Covariance ``(..., n, m)``, or its diagonal ``(..., n)``."""
        f1 = self._feature(x1) * WEIGHT_PRIOR_SD
        f2 = f1 if x2 is x1 else self._feature(x2) * WEIGHT_PRIOR_SD
        if diag:
            out: Tensor = f1 * f2
            return out
        return f1.unsqueeze(-1) * f2.unsqueeze(-2)


def attach_prior(gp: SingleTaskGP, surrogate: PriorSurrogate, name: str) -> None:
    """Make ``gp`` (built, not yet fitted) model outcome ``name`` as prior + discrepancy.

    The mean becomes :class:`PriorMean`. With a stated spread for ``name`` the kernel gets a
    learned amplitude whose LogNormal prior is centred on that sigma, converted to the GP's
    standardized units (module docs: this is what keeps one reading from making the model
    sure of the prior everywhere).

    Args:
        gp: An outcome GP with a ``Standardize`` outcome transform.
        surrogate: The prior's surrogate (must predict ``name``).
        name: The outcome.
    """
    tf: Any = gp.outcome_transform
    mu, sd = float(tf.means.reshape(-1)[0]), float(tf.stdvs.reshape(-1)[0])
    train_x = gp.train_inputs[0]
    gp.mean_module = PriorMean(surrogate, name, mu, sd).to(train_x)
    spread = surrogate.spread.get(name)
    if spread is None:
        return
    variance = (spread / sd) ** 2
    kernel = ScaleKernel(
        gp.covar_module,
        outputscale_prior=LogNormalPrior(math.log(variance) + SPREAD_PRIOR_SCALE**2,
                                         SPREAD_PRIOR_SCALE),
        outputscale_constraint=GreaterThan(SPREAD_FLOOR**2 * variance)).to(train_x)
    kernel.outputscale = variance
    gp.mean_module.weight.requires_grad_(False)  # its uncertainty is in PriorWeightKernel
    gp.covar_module = kernel + PriorWeightKernel(surrogate, name, mu, sd).to(train_x)
