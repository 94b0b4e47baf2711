"""Thompson draws that believe pending experiments at their posterior mean (``believer``).

``BotorchSettings.ts_pending: believer``.

Why: a dynamic campaign passes the fluid still in the tanks as pending in *every* ask, so with
``ts_pending: band_ei`` (the default) its Thompson phase never runs and the band-first EI crawls
along the band; twin-0 at 610 nm (seed 0) sat in a QY-0.45 region for 66 trajectories while the
good one lay elsewhere (docs/dynamic.md). ``exclude`` lets Thompson sample but draws from the
posterior as if nothing were running, skipping only candidates within
:data:`~autolab.optimizer.thompson.EXCLUSION_RADIUS` of a pending point.

The kriging believer (Ginsbourger et al. 2010) conditions each output's GP on one reading per
pending point equal to its posterior mean there, with the GP's own observation noise
(:func:`~autolab.optimizer.pending.noise_variance`), without refitting. The mean is unchanged;
the covariance at candidates ``x`` loses what those readings will resolve::

    cov'(x, x') = cov(x, x') - cov(x, X_p) (cov(X_p, X_p) + N)^-1 cov(X_p, x')

so a draw varies less where the running experiments will read, and its argmax goes where they
will teach nothing. This is not the fantasy average the tower rule makes redundant
(:mod:`~autolab.optimizer.thompson`): averaging draws over fantasized readings gives back the
unconditioned posterior; believing the mean removes the variance the readings will take away.
(For the band-first EI the believer was rejected because a shrunk sd *raises* ``P(band)`` next
to a pending in-band point, :mod:`~autolab.optimizer.pending`; the Thompson step keeps one path
for steady and dynamic asks instead of handing those to the EI.)

An ask with nothing pending draws from the model itself: :func:`draw_model` returns it
unchanged, so steady campaigns propose what they proposed before.

Everything here is a pure function of the model and the pending points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.posteriors.posterior_list import PosteriorList
from gpytorch.distributions import MultivariateNormal
from linear_operator import to_linear_operator
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

from autolab.optimizer.pending import joint_posterior, noise_variance, submodels


@dataclass(frozen=True)
class BelievedGP:
    """One output's GP conditioned on its posterior mean at ``X_pending`` (no refit).

    Attributes:
        sub: The fitted single-output GP.
        X_pending: Pending points, unit cube, ``(p, d)``.
        noise: Observation noise variance of a reading, outcome units.
    """

    sub: Any
    X_pending: Tensor
    noise: float

    @property
    def num_outputs(self) -> int:
        """One output, as the GP it conditions."""
        return 1

    def posterior(self, X: Tensor) -> GPyTorchPosterior:
        """The believer's latent posterior at ``X`` (``(..., N, d)``): same mean, less variance."""
        n, p = X.shape[-2], self.X_pending.shape[0]
        pend = self.X_pending.to(X).expand(*X.shape[:-2], p, X.shape[-1])
        mean, cov = joint_posterior(self.sub, torch.cat([X, pend], dim=-2))
        eye = torch.eye(p, dtype=cov.dtype, device=cov.device)
        chol = psd_safe_cholesky(cov[..., n:, n:] + self.noise * eye)
        w = torch.linalg.solve_triangular(chol, cov[..., n:, :n], upper=False)  # (..., p, N)
        cond = cov[..., :n, :n] - w.mT @ w
        cond = 0.5 * (cond + cond.mT)  # symmetric up to rounding, as a Cholesky needs
        # As an operator, a draw factors it with linear_operator's jitter (near-duplicate
        # candidates make it singular), as the GP's own posterior does.
        return GPyTorchPosterior(MultivariateNormal(mean[..., :n], to_linear_operator(cond)))


@dataclass(frozen=True)
class BelievedModel:
    """A model list whose every output believes the pending points (what Thompson draws use).

    It answers what :func:`~autolab.optimizer.thompson.thompson_select` asks of a model: its
    ``models`` (one :class:`BelievedGP` per output, drawn jointly over the candidates) and
    ``posterior`` (the outputs side by side, whose mean is the unconditioned model's).
    """

    models: tuple[BelievedGP, ...]

    @property
    def num_outputs(self) -> int:
        """One output per conditioned GP."""
        return len(self.models)

    def posterior(self, X: Tensor) -> PosteriorList:
        """Every output's believer posterior at ``X`` (``mean``: ``(..., N, outputs)``)."""
        return PosteriorList(*(m.posterior(X) for m in self.models))


def believe(model: Any, X_pending: Tensor) -> BelievedModel:
    """``model`` conditioned on its posterior mean at ``X_pending`` (``(p, d)``, ``p >= 1``).

    Raises:
        OptimizerError: A sub-model has more than one output (:func:`~.pending.submodels`).
    """
    with torch.no_grad():
        return BelievedModel(tuple(BelievedGP(sub, X_pending, noise_variance(sub))
                                   for sub in submodels(model)))


def draw_model(ts_pending: str, model: Any, X_pending: Tensor | None) -> Any:
    """The model a Thompson draw samples.

    The believer with ``ts_pending: believer`` and something pending, else ``model`` itself
    (``exclude``, ``band_ei``'s asks with nothing pending, or nothing pending at all).
    """
    if ts_pending != "believer" or X_pending is None or X_pending.shape[0] == 0:
        return model
    return believe(model, X_pending)
