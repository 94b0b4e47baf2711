"""Which experiments may centre the Thompson trust region (``BotorchSettings.trust_region_centre``).

The trust region (:mod:`~autolab.optimizer.thompson`) is a box around the best in-band
experiment, ranked by the posterior mean of its non-target score. ``measured`` (the default)
takes the candidates from the experiments whose *reading* met every band and constraint. A
reading carries its noise (about 1 nm on the PL peak), so an experiment whose true peak lies
inside a ±2 nm band near its edge may be read out of band and then never centres the box, while
a neighbour read in band by luck can. ``posterior`` asks the model instead, as
BoTorch's noisy expected improvement takes its incumbent from the posterior rather than from
the noisy readings: every success whose *posterior mean* meets every band and constraint is a
candidate (the measured rule where none does). The trust region's success and failure counts
stay measured, so the box's size does not depend on the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from autolab.objective import ObjectiveSpec


def _measured(spec: ObjectiveSpec, model: Any, X_ok: Tensor, in_band_ok: Tensor) -> Tensor:
    return in_band_ok


def _posterior(spec: ObjectiveSpec, model: Any, X_ok: Tensor, in_band_ok: Tensor) -> Tensor:
    if X_ok.shape[0] == 0:
        return in_band_ok
    with torch.no_grad():
        mean = model.posterior(X_ok).mean[..., : len(spec.outcome_names)]
    ok = spec.meets_tensor(mean)
    return ok if bool(ok.any()) else in_band_ok


#: ``BotorchSettings.trust_region_centre`` -> which successes may centre the box (bool mask).
CENTRE_RULES: dict[str, Callable[[ObjectiveSpec, Any, Tensor, Tensor], Tensor]] = {
    "measured": _measured,
    "posterior": _posterior,
}


def centre_candidates(rule: str, spec: ObjectiveSpec, model: Any, X_ok: Tensor,
                      in_band_ok: Tensor) -> Tensor:
    """The successes that may centre the trust region under ``rule``.

    Args:
        rule: A key of :data:`CENTRE_RULES`.
        spec: The objective.
        model: Fitted model list (outcomes in ``spec.outcome_names`` order first).
        X_ok: The successes (unit cube), ``(n, d)``.
        in_band_ok: Which of them met every band and constraint as measured.

    Returns:
        A bool mask over ``X_ok``: :func:`~autolab.optimizer.thompson.anchor_points` ranks
        these by posterior mean score (and falls back to the nearest-to-band ones if empty).
    """
    return CENTRE_RULES[rule](spec, model, X_ok, in_band_ok)
