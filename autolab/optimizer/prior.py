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

Validation (:func:`check_prior`): the prior must name every searched parameter, with the same
unit where both state one, and predict at least one outcome the objective reads; anything else
is a :class:`~autolab.exceptions.ConfigError` naming the parameter or outcome.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from botorch.exceptions.warnings import OptimizationWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models.gp_regression import SingleTaskGP
from botorch.models.transforms.outcome import Standardize
from gpytorch.means import Mean
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import NormalPrior
from numpy.typing import NDArray
from torch import Tensor

from autolab.exceptions import ConfigError
from autolab.objective import ObjectiveSpec
from autolab.space import ParameterSpace

#: Points of the space at which the prior is read (seeded scrambled Sobol).
PRIOR_POINTS = 256

#: Standard deviation of the Gaussian prior on the prior mean's weight (centred on 1).
WEIGHT_PRIOR_SD = 0.3

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


#: Points at which the prior is read to choose the first experiment (:func:`prior_best`).
PRIOR_SEARCH_POINTS = 4096


def prior_best(prior: OutcomePrior, space: ParameterSpace, objective: ObjectiveSpec,
               seed: int) -> NDArray[np.float64] | None:
    """The first experiment of a campaign with a prior: the prior's own best point.

    The prior is read on a seeded Sobol set of the space and the points are ranked by the
    objective's rule (``ObjectiveSpec.rank_key``: in band first, then feasible, then score), as
    if the prior's predictions were measurements. ``None`` when the prior does not predict every
    outcome the objective reads (then the Sobol design starts the campaign).

    Returns:
        The unit-cube point, shape ``(1, d)``, or ``None``.
    """
    from autolab.optimizer.design import sobol_design  # noqa: PLC0415 (cycle-free import)

    if not set(objective.outcome_names) <= set(prior.outcomes):
        return None
    u = sobol_design(space, seed, 0, PRIOR_SEARCH_POINTS)
    values = prior(space.from_unit(u))
    cols = {k: np.asarray(values[k], dtype=np.float64) for k in objective.outcome_names}
    best, key = None, None
    for i in range(u.shape[0]):
        row = {k: float(cols[k][i]) for k in objective.outcome_names}
        if not all(np.isfinite(v) for v in row.values()):
            continue
        k = objective.rank_key(row)
        if key is None or k > key:
            best, key = i, k
    return None if best is None else u[best : best + 1]


class PriorSurrogate:
    """Smooth, differentiable stand-in for a prior: one GP posterior mean per outcome.

    Args:
        prior: The prior (checked with :func:`check_prior`).
        space: The space (unit-cube coordinates are the GP inputs).
        seed: Seed of the design and the fits.
        n_points: Design size.
        outcomes: Only these outcomes (those the objective reads); ``None``: all predicted.
    """

    def __init__(self, prior: OutcomePrior, space: ParameterSpace, seed: int,
                 n_points: int = PRIOR_POINTS, outcomes: Sequence[str] | None = None) -> None:
        from autolab.optimizer.design import sobol_design  # noqa: PLC0415 (cycle-free import)

        u = sobol_design(space, seed, 0, n_points)
        values = prior(space.from_unit(u))
        self.name = prior.name
        self.gps: dict[str, SingleTaskGP] = {}
        X = torch.tensor(u, dtype=torch.float64)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            for name in prior.outcomes:
                if outcomes is not None and name not in outcomes:
                    continue
                y = torch.as_tensor(np.asarray(values[name], dtype=np.float64)).reshape(-1, 1)
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
                self.gps[name] = gp

    def mean(self, name: str, X: Tensor) -> Tensor:
        """Prior mean of outcome ``name`` at unit-cube ``X`` (``(..., n, d)`` -> ``(..., n)``)."""
        gp = self.gps[name]
        # The surrogate's GPs stay on the CPU; X may be on the optimizer's device.
        post: Any = gp.posterior(X.to(device=gp.train_inputs[0].device, dtype=torch.float64))
        mean: Tensor = post.mean[..., 0].to(X)
        return mean


class PriorMean(Mean):  # type: ignore[misc]
    """GP mean ``w * (prior(x) - mu) / sd + c`` in the outcome GP's standardized units.

    Args:
        surrogate: The prior surrogate.
        name: Outcome name.
        mu: Mean of the outcome GP's training targets (its ``Standardize`` shift).
        sd: Their standard deviation (its ``Standardize`` scale).
    """

    def __init__(self, surrogate: PriorSurrogate, name: str, mu: float, sd: float) -> None:
        super().__init__()
        self.surrogate = surrogate
        self.outcome = name
        self.mu = mu
        self.sd = sd
        self.register_parameter("weight", torch.nn.Parameter(torch.ones((), dtype=torch.float64)))
        self.register_parameter("constant", torch.nn.Parameter(torch.zeros((),
                                                                           dtype=torch.float64)))
        # The prior's trends are believed: its weight stays near 1 unless the data insist (a
        # handful of in-band points cannot identify a slope, and a wild weight extrapolates
        # badly).
        self.register_prior("weight_prior", NormalPrior(1.0, WEIGHT_PRIOR_SD), "weight")

    def forward(self, x: Tensor) -> Tensor:
        """Prior mean at ``x``, shape ``(..., n)``."""
        prior = (self.surrogate.mean(self.outcome, x) - self.mu) / self.sd
        out: Tensor = self.weight * prior + self.constant
        return out
