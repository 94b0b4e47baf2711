"""Acquisition functions built from an :class:`~autolab.objective.ObjectiveSpec`.

* Scalar mode: ``qLogNoisyExpectedImprovement`` of the spec's score, evaluated on joint posterior
  samples of the raw outcomes (a composite objective, so a target band is scored exactly as a
  measured experiment would be). The log formulation keeps gradients alive when improvement is
  tiny, which is most of the time once the band has been reached.
* Pareto mode: ``qLogNoisyExpectedHypervolumeImprovement`` of the per-term utilities.

Outcome constraints and the learned feasibility enter as BoTorch ``constraints=`` callables
(feasible where ``<= 0``); the acquisition multiplies improvement by a smooth indicator of each,
which under MC sampling is the probability of satisfying it. Pending experiments enter as
``X_pending``, so a batch is spread out instead of piling onto one spot.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from botorch.acquisition.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.models.model import Model
from botorch.sampling.normal import SobolQMCNormalSampler
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated
from torch import Tensor

from autolab.objective import ObjectiveSpec


def constraint_callables(
    spec: ObjectiveSpec, has_feasibility: bool
) -> list[Callable[[Tensor], Tensor]]:
    """BoTorch constraint callables, each ``(..., m[+1]) -> (...)``, feasible where ``<= 0``.

    Args:
        spec: The objective (its outcome constraints, in ``spec.outcome_names`` columns).
        has_feasibility: The model's last output is the feasibility GP (label > 0 = success).
    """
    m = len(spec.outcome_names)

    def outcome_constraint(k: int) -> Callable[[Tensor], Tensor]:
        def violation(Z: Tensor) -> Tensor:
            return spec.violations_tensor(Z[..., :m])[..., k]

        return violation

    def infeasibility(Z: Tensor) -> Tensor:
        return -Z[..., m]

    out = [outcome_constraint(k) for k in range(len(spec.constraints))]
    if has_feasibility:
        out.append(infeasibility)
    return out


def reference_point(spec: ObjectiveSpec, utilities: Tensor) -> Tensor:
    """The hypervolume reference point in utility space.

    The configured ``spec.ref_point`` if any; otherwise the nadir of the observed Pareto set minus
    10 % of its range (BoTorch's ``infer_reference_point``, robust per Ishibuchi et al. 2011).

    Args:
        spec: The objective.
        utilities: Observed per-term utilities of feasible experiments, shape ``(n, k)``,
            ``n >= 1``.

    Returns:
        Shape ``(k,)``.
    """
    if spec.ref_point is not None:
        return torch.tensor(spec.ref_point, dtype=utilities.dtype, device=utilities.device)
    front = utilities[is_non_dominated(utilities)]
    ref = infer_reference_point(front)
    # A single Pareto point has zero range; step back one unit so the box has volume.
    return torch.where(ref >= front.min(dim=0).values, ref - 1.0, ref)


def build_acquisition(
    spec: ObjectiveSpec,
    model: Model,
    X_baseline: Tensor,
    *,
    has_feasibility: bool,
    X_pending: Tensor | None,
    mc_samples: int,
    seed: int,
    feasible_utilities: Tensor | None = None,
) -> AcquisitionFunction:
    """The acquisition function for the spec's mode.

    Args:
        spec: The objective.
        model: Fitted model whose outputs are ``spec.outcome_names`` (+ feasibility last).
        X_baseline: Unit-cube inputs of successful experiments, shape ``(n_ok, d)``.
        has_feasibility: Whether the model's last output is the feasibility GP.
        X_pending: Unit-cube pending inputs, shape ``(p, d)``, or ``None``.
        mc_samples: Number of quasi-MC posterior samples.
        seed: Seed of the base samples (derived per ask, see ``base.derive_seed``).
        feasible_utilities: Pareto mode: utilities of feasible successes, ``(n_f, k)``, for the
            inferred reference point (falls back to all successes' if empty).

    Returns:
        A BoTorch acquisition function to maximize over ``q x d`` candidates.
    """
    m = len(spec.outcome_names)

    def score(Z: Tensor, X: Tensor | None = None) -> Tensor:
        return spec.score_tensor(Z[..., :m])

    def utilities(Z: Tensor, X: Tensor | None = None) -> Tensor:
        return spec.utilities_tensor(Z[..., :m])

    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)
    constraints = constraint_callables(spec, has_feasibility) or None
    if spec.mode == "scalar":
        return qLogNoisyExpectedImprovement(
            model=model,
            X_baseline=X_baseline,
            sampler=sampler,
            objective=GenericMCObjective(score),
            X_pending=X_pending,
            constraints=constraints,
            prune_baseline=True,
        )
    if feasible_utilities is None or feasible_utilities.shape[0] == 0:
        raise ValueError("pareto mode needs the utilities of at least one experiment")
    return qLogNoisyExpectedHypervolumeImprovement(
        model=model,
        ref_point=reference_point(spec, feasible_utilities),
        X_baseline=X_baseline,
        sampler=sampler,
        objective=GenericMCMultiOutputObjective(utilities),
        constraints=constraints,
        X_pending=X_pending,
        prune_baseline=True,
    )
