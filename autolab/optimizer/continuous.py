"""A Thompson draw maximized by gradient (``BotorchSettings.ts_optimizer: continuous``).

Why: the discrete step (:func:`~autolab.optimizer.thompson.thompson_select`) draws the
posterior jointly over a fixed set of 1,024 candidates and takes the best of them. Replaying the
default on the design set, at 86 of 427 Thompson asks the trust region's candidates held no truly
good point, and in the hardest cell neither the box nor 1,024 candidates of the whole space held
one at 12 of 15 asks (docs/benchmarks.md, "Sixth round"); 2,048 candidates helped a little at
twice the cost, because the joint draw costs a Cholesky of the candidate set. A draw maximized
over a continuum does not depend on how finely the box is sampled.

How: one posterior sample *path* per output and proposal, by Matheron's rule (Wilson et al.
2020, BoTorch's :func:`~botorch.sampling.pathwise.draw_matheron_paths`): a random-Fourier-feature
prior draw plus a data update, so the same draw can be evaluated, and differentiated, anywhere.
The path is scored by the discrete step's own rule (:func:`~autolab.optimizer.thompson.
sample_scores`, with its floor fixed once on the candidate set so that the score is one function
of the point), first on the candidate set; its best points (those the discrete step would pick
from) start L-BFGS-B inside the box the candidates span (the trust region's box, or the cube),
which climbs a smooth version of that score (:class:`_PenalizedPath`). The point proposed is
the best, by the draw's own score, of the optimized points and the candidates, so it scores at
least as high on its draw as the best candidate; points that break a linear constraint of the
space, or lie within :data:`~autolab.optimizer.thompson.EXCLUSION_RADIUS` of a pending or already
chosen point, are skipped as in the discrete step. Everything is seeded: a resumed campaign proposes
what the uninterrupted one would have.

Two differences from the discrete step's draw, both measured in the tests: the path's prior
part is a 1,024-feature approximation of the kernel (its marginal mean and sd at candidate points
match the exact posterior's within a few percent of the sd), and the update uses the same
observation noise as the posterior (stated noise plus the learned extra noise; BoTorch's own
update takes the stated noise alone, and where replicates scattered 6-8 nm against a stated
0.3 nm its PL paths had 0.13-0.18 of the posterior sd). A model with a
sparse (large-n) GP (:mod:`~autolab.optimizer.scalable`) stays with the discrete step: the
pathwise update of an exact GP on thousands of points would cost what the sparse model saves.

Measured (docs/benchmarks.md, "Seventh round"): on the design set it found 30/36 good hits
against the discrete step's 33/36. The finer maximum of a draw lies on the drawn band's edge,
where the PL model's error puts the product out of band, so the default stays discrete.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.generation.gen import gen_candidates_scipy
from botorch.sampling.pathwise import (
    SamplePath,
    draw_kernel_feature_paths,
    draw_matheron_paths,
    gaussian_update,
)
from botorch.sampling.pathwise.utils import get_train_inputs
from torch import Tensor

from autolab.objective import ObjectiveSpec
from autolab.optimizer.acquisition import rest_value
from autolab.optimizer.base import derive_seed
from autolab.optimizer.design import feasible_mask
from autolab.optimizer.scalable import SparseGP
from autolab.optimizer.thompson import (
    margins,
    near,
    sample_scores,
    score_floor,
    thompson_select,
)
from autolab.space import ParameterSpace

#: L-BFGS-B iteration cap per restart.
MAXITER = 50

#: Weight of the band penalty against the non-target score (:class:`_PenalizedPath`): per
#: tolerance outside a band, well above what the score gains per tolerance of PL (a PL slope of
#: ~50 tolerances and a score slope of ~20 per unit of the cube), so the penalty is exact.
PENALTY = 10.0

#: Sharpness of the penalty's softplus, per tolerance (:class:`_PenalizedPath`): 10 turns it on
#: over a tenth of a tolerance. On a design cell (twin-0, 530 nm) no restart ended "ABNORMAL"
#: (7-8 of 8 did with a quadratic penalty), at 61-79 evaluations per ask; 3 took 170-200.
SHARPNESS = 10.0


def _update(model: Any, sample_values: Tensor, target_values: Tensor | None = None,
            **kwargs: Any) -> SamplePath:
    """BoTorch's Gaussian pathwise update with the posterior's whole observation noise.

    BoTorch takes ``likelihood.noise_covar`` alone, which for a stated noise with a learned
    extra term (:mod:`~autolab.optimizer.models`) leaves the extra term out: the paths would
    then be surer at the data than the posterior is.
    """
    (points,) = get_train_inputs(model, transformed=True)
    noise = model.likelihood._shaped_noise_covar(points.shape[:-1])
    return gaussian_update(model=model, sample_values=sample_values,
                           target_values=target_values, noise_covariance=noise, **kwargs)


def _weights(shape: torch.Size) -> Tensor:
    """I.i.d. normal weights of the prior's random features (from the seeded torch RNG).

    BoTorch's default draws them from a scrambled Sobol sequence of dimension 1,024, whose
    scrambling alone took about 40 ms per output and draw; a quasi-random sequence brings
    nothing to one draw.
    """
    return torch.randn(shape, dtype=torch.float64)


class PathDraw:
    """Posterior sample paths of every output of a model list, drawn once (seeded).

    Args:
        model: Fitted model list (outcomes, then feasibility if any), in eval mode.
        seed: Seed of the draw.
        temper: As ``BotorchSettings.ts_temper``: the path is ``mean + temper * (path - mean)``.
        samples: Number of independent paths (one per Thompson proposal; many in the tests).
    """

    def __init__(self, model: Any, seed: int, temper: float = 1.0, samples: int = 1) -> None:
        self.model = model
        self.temper = temper
        torch.manual_seed(seed)
        subs = list(getattr(model, "models", [model]))
        prior = partial(draw_kernel_feature_paths, weight_generator=_weights)
        self.paths = [draw_matheron_paths(sub, torch.Size([samples]), prior_sampler=prior,
                                          update_strategy=_update) for sub in subs]

    def __call__(self, X: Tensor) -> Tensor:
        """The paths at ``X``: ``(..., N, d)`` -> ``(samples, ..., N, outputs)``.

        A path broadcasts its sample dimension against the inputs' batch dimensions, so the
        points are evaluated as one flat ``(M, d)`` set and reshaped.
        """
        flat = X.reshape(-1, X.shape[-1])
        Z = torch.stack([path(flat).reshape(-1, *X.shape[:-1]) for path in self.paths], dim=-1)
        if self.temper != 1.0:
            mean = self.model.posterior(X).mean
            Z = mean + self.temper * (Z - mean)
        return Z


class _PenalizedPath(AcquisitionFunction):
    """What L-BFGS-B climbs on one draw: the non-target score minus a smooth band penalty.

    ``rest - PENALTY * sum(softplus(-SHARPNESS * margin) / SHARPNESS)`` over the conditions of
    a success (:func:`~autolab.optimizer.thompson.margins`; a band's margin is in tolerances).
    Why not the draw's own score (:func:`~autolab.optimizer.thompson.sample_scores`): it drops
    at the band's edge, and a brighter draw usually lies just outside the band, so its maximum
    sits on that edge; a step from an in-band start leaves the band and the line search cannot
    recover (scipy's "ABNORMAL"), and the search stops about where it started. A quadratic
    penalty (continuous slope, jumping curvature) failed the same way at the edge. The
    softplus penalty is smooth: the search slides along the edge, and its maximum lies about
    ``log(PENALTY / slope ratio) / SHARPNESS`` (~0.3) tolerances inside the drawn band. Which
    point is proposed is decided by the draw's own score alone.
    """

    def __init__(self, draw: PathDraw, spec: ObjectiveSpec, has_feasibility: bool) -> None:
        super().__init__(model=draw.model)
        self.draw = draw
        self.spec = spec
        self.has_feasibility = has_feasibility

    def forward(self, X: Tensor) -> Tensor:
        """The penalized score at each of ``b`` single points ``X`` (``(b, 1, d)``)."""
        Z = self.draw(X)[0]
        rest = rest_value(self.spec, Z[..., : len(self.spec.outcome_names)])
        margin = margins(self.spec, Z, self.has_feasibility)
        short = torch.nn.functional.softplus(-SHARPNESS * margin) / SHARPNESS
        return (rest - PENALTY * short.sum(dim=-1)).squeeze(-1)


def supports(model: Any) -> bool:
    """Whether every GP of ``model`` is exact (a sparse large-n GP stays discrete; module docs)."""
    return not any(isinstance(sub, SparseGP) for sub in getattr(model, "models", [model]))


def continuous_select(spec: ObjectiveSpec, model: Any, X: Tensor, n: int, *, seed: int,
                      has_feasibility: bool, X_pending: Tensor | None, space: ParameterSpace,
                      restarts: int, temper: float = 1.0) -> Tensor:
    """``n`` points, each the maximizer of its own posterior sample path (module docs).

    Args:
        spec: The objective.
        model: Fitted model list (outcomes, then feasibility if ``has_feasibility``).
        X: The discrete step's candidates, ``(N, d)``: the starting points and the box.
        n: Number of points.
        seed: Seed of the draws.
        has_feasibility: The model's last output is the feasibility GP.
        X_pending: Pending points ``(p, d)`` or ``None``.
        space: The space (its linear constraints).
        restarts: How many of the best candidates start L-BFGS-B.
        temper: ``BotorchSettings.ts_temper``.

    Returns:
        ``(n, d)``.
    """
    if not supports(model):
        return thompson_select(spec, model, X, n, seed=seed, has_feasibility=has_feasibility,
                               X_pending=X_pending, temper=temper)
    lo, hi = X.min(dim=0).values, X.max(dim=0).values
    taken = X_pending
    chosen = []
    for j in range(n):
        draw = PathDraw(model, derive_seed(seed, j), temper)
        x = _maximize_draw(draw, X, spec=spec, has_feasibility=has_feasibility, taken=taken,
                           space=space, restarts=restarts, box=(lo, hi))
        chosen.append(x)
        taken = x if taken is None else torch.cat([taken, x])
    return torch.cat(chosen)


def _allowed(X: Tensor, taken: Tensor | None, space: ParameterSpace) -> Tensor:
    """Rows of ``X`` inside the space's linear constraints and away from ``taken``."""
    ok = torch.as_tensor(feasible_mask(space, X.detach().cpu().numpy()), device=X.device)
    return ok & ~near(X, taken)


def _maximize_draw(draw: PathDraw, X: Tensor, *, spec: ObjectiveSpec, has_feasibility: bool,
                   taken: Tensor | None, space: ParameterSpace, restarts: int,
                   box: tuple[Tensor, Tensor]) -> Tensor:
    """The best point of one draw: L-BFGS-B from the best candidates, or a candidate, ``(1, d)``."""
    with torch.no_grad():
        Z = draw(X)[0]
        floor = score_floor(spec, Z)
        cand_scores = sample_scores(spec, Z, has_feasibility, floor)
    allowed = _allowed(X, taken, space)
    if not bool(allowed.any()):  # every candidate is near a taken point: as the discrete step
        allowed = torch.ones_like(allowed)
    order = torch.argsort(cand_scores.masked_fill(~allowed, -math.inf), descending=True)
    starts = X[order[: min(restarts, X.shape[0])]].unsqueeze(1)
    acqf = _PenalizedPath(draw, spec, has_feasibility)
    found, _ = gen_candidates_scipy(starts, acqf, lower_bounds=box[0], upper_bounds=box[1],
                                    options={"maxiter": MAXITER})
    found = found.detach().squeeze(1)
    with torch.no_grad():
        found_scores = sample_scores(spec, draw(found)[0], has_feasibility, floor)
    pool = torch.cat([found, X])
    scores = torch.cat([found_scores, cand_scores])
    keep = torch.cat([_allowed(found, taken, space), allowed])
    best = int(torch.argmax(scores.masked_fill(~keep, -math.inf)))
    return pool[best].unsqueeze(0)
