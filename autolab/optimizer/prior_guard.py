"""Guard against a wrong prior: the readings decide, per outcome, whether the prior proposes.

A prior mean (:mod:`~autolab.optimizer.prior`) is worth a great deal on a reactor like the one
it came from and costs good hits on one it does not describe: on the reactor family's members
not built from the twin, the twin prior found 5 of 12 good hits against 10 of 12 for a cold
start (design set, budget 30; docs/benchmarks.md "A guard against a wrong prior"). The learned
discrepancy does not undo that in time, because the model keeps reading the prior's trends
where it has no data. With this guard: 9 of 12, and the near members' gain is unchanged.

Transfer-learning methods guard against such negative transfer by letting the target data
weigh the source model against a model of the target alone (e.g. ranking-weighted GP ensembles,
which score each model by how well it predicts the target's held-out readings). Here that is
one comparison per outcome after each ``tell``: the prior GP and a cold GP, both fitted on the
same readings, are scored by their closed-form leave-one-out log predictive density
(:func:`loo_log_density`, Rasmussen & Williams 2006, §5.4.2), and the better one models that
outcome for the next proposal. The prior keeps every outcome until :data:`GUARD_MIN_READINGS`
successes are in, since a cold GP on fewer predicts nothing.

The choice is a pure function of the readings and the fitted hyperparameters (themselves a pure
function of the data and seed), so a resumed campaign chooses as the uninterrupted one did, and
it is recorded with the model (:class:`ModelChoice`) so a run shows which model proposed.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from botorch.models.model_list_gp_regression import ModelListGP
from linear_operator.utils.cholesky import psd_safe_cholesky

#: Successes needed before the readings may overrule the prior.
GUARD_MIN_READINGS = 3

#: Most readings scored (evenly spaced rows above it): one Cholesky of this size per GP, where
#: a streamed dynamic campaign may hold thousands of readings.
GUARD_MAX_READINGS = 300


@dataclass(frozen=True)
class ModelChoice:
    """Which model of one outcome proposes, and the evidence.

    Attributes:
        outcome: Outcome name.
        model: ``"prior"`` or ``"cold"``.
        loo_prior: Mean leave-one-out log predictive density per reading of the prior GP (the
            outcome's standardized units; ``nan`` before :data:`GUARD_MIN_READINGS`).
        loo_cold: The same for the cold GP.
    """

    outcome: str
    model: Literal["prior", "cold"]
    loo_prior: float
    loo_cold: float

    def record(self) -> dict[str, Any]:
        """JSON-compatible form for the model record."""
        return {"model": self.model, "loo_prior": self.loo_prior, "loo_cold": self.loo_cold}


def loo_log_density(gp: Any) -> float:
    """Mean leave-one-out log predictive density of a fitted exact GP's own readings.

    With ``K`` the readings' covariance (kernel plus noise) and ``a = K^-1 (y - m)``, reading
    ``i`` left out is predicted with variance ``1 / [K^-1]_ii`` and residual
    ``a_i / [K^-1]_ii``, so every reading's held-out density comes from one Cholesky. The
    hyperparameters stay those fitted on all readings (no refit per fold), and their priors do
    not enter: this scores predictions, not the fit.

    Args:
        gp: A fitted ``SingleTaskGP`` (eval mode) whose training targets are the readings in
            its transformed units. Above :data:`GUARD_MAX_READINGS` readings, evenly spaced
            ones are scored against each other.

    Returns:
        The mean over readings (``log p`` per reading, standardized units).
    """
    X = gp.train_inputs[0]
    y = gp.train_targets
    noise = gp.likelihood.noise.detach()
    noise = noise.expand(X.shape[-2]) if noise.numel() == 1 else noise.reshape(X.shape[-2])
    if X.shape[-2] > GUARD_MAX_READINGS:
        rows = torch.linspace(0, X.shape[-2] - 1, GUARD_MAX_READINGS, device=X.device).long()
        X, y, noise = X[rows], y[rows], noise[rows]
    with torch.no_grad():
        K = gp.covar_module(X).to_dense() + torch.diag(noise)
        K_inv = torch.cholesky_inverse(psd_safe_cholesky(K))
        alpha = K_inv @ (y - gp.mean_module(X))
        var = 1.0 / torch.diagonal(K_inv)
        logp = -0.5 * torch.log(2 * math.pi * var) - 0.5 * alpha**2 * var
    return float(logp.mean())


def guard_models(with_prior: ModelListGP, cold: ModelListGP, names: Sequence[str],
                 n_readings: int, guarded: Collection[str] | None = None,
                 ) -> tuple[ModelListGP, tuple[ModelChoice, ...]]:
    """Per outcome, the GP (prior or cold) whose leave-one-out predictions are better.

    Args:
        with_prior: Fitted model list with the prior (outcomes in ``names`` order, then the
            feasibility GP if any, which is kept as is).
        cold: Fitted model list of the same outcomes without the prior.
        names: Outcome names of the first ``len(names)`` outputs.
        n_readings: Successes the models were fitted on.
        guarded: The outcomes whose GP in ``with_prior`` has the prior (``None``: all); the
            others are cold there already and are kept, recorded as ``"cold"``
            (``BotorchSettings.prior_outcomes``).

    Returns:
        The model list that proposes, and one :class:`ModelChoice` per outcome.
    """
    prior_gps: list[Any] = list(with_prior.models)
    cold_gps: list[Any] = list(cold.models)
    chosen, choices = [], []
    for k, name in enumerate(names):
        if guarded is not None and name not in guarded:
            choices.append(ModelChoice(name, "cold", math.nan, math.nan))
            chosen.append(prior_gps[k])
            continue
        if n_readings < GUARD_MIN_READINGS:
            choices.append(ModelChoice(name, "prior", math.nan, math.nan))
            chosen.append(prior_gps[k])
            continue
        lp, lc = loo_log_density(prior_gps[k]), loo_log_density(cold_gps[k])
        use_cold = lc > lp
        choices.append(ModelChoice(name, "cold" if use_cold else "prior", lp, lc))
        chosen.append(cold_gps[k] if use_cold else prior_gps[k])
    if all(gp is prior_gps[k] for k, gp in enumerate(chosen)):
        return with_prior, tuple(choices)
    model = ModelListGP(*chosen, *prior_gps[len(names):])
    model.eval()
    return model, tuple(choices)
