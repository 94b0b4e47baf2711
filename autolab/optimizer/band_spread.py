"""Spread the first proposals after the band is found along it (``BotorchSettings.band_spread``).

Why: with the twin as prior (``prior: twin``) far reactors reach the band from readings
clustered where the twin is bright, and the QY climb then starts from that one neighbourhood:
on the design set's far cells the first in-band product was dimmer than a cold start's (0.58 of
the good-hit QY bar against 0.72) and the climb took 15 experiments against 12.5
(docs/benchmarks.md, "Which outcomes take the twin prior"), where a cold start's Sobol design
has seen the whole box first. Here the next ``band_spread_n`` proposals after the first in-band
success ignore QY and fill the band instead: of candidates moved onto the predicted band, the
one with the largest product of its probability of landing in band (and not failing) and its
distance to every experiment run or running, so the climb starts from readings spread along the
band. (A hard floor on that probability fails right after the first in-band reading: the model
seldom puts any point away from it in a 4-nm band with probability 0.5, and maximin among the
most probable tenth picked points 8-21 nm off the band on an rff member.)

When (rules of :data:`SPREAD_RULES`, pure functions of the told data and the guard's choice at
this ask, so a resumed campaign spreads exactly as the uninterrupted one did):

* ``off``: never (default).
* ``in_band``: the ``band_spread_n`` experiments right after the first in-band success
  (experiments still running count among them).
* ``guard_cold``: the same experiments, but only while the prior guard
  (:mod:`~autolab.optimizer.prior_guard`) models an outcome outside the band cold, i.e. the
  readings contradict the prior's QY; a reactor whose QY agrees with the prior climbs at once.

Measured (docs/benchmarks.md, "A QY weight that can reach 0, and spreading along the band";
``guard_cold`` with the twin prior, design set, budget 30): near members unchanged, far members
7/11 good hits, as many as without it on the same cells (cold 9/11), paired median +0.0 against
both. No gain shown, so the default is ``off``; the screen stopped at 11 of 16 far cells and was
not run held out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from autolab.objective import ObjectiveSpec
from autolab.optimizer.acquisition import log_p_band, onto_band
from autolab.optimizer.design import random_design
from autolab.space import ParameterSpace

#: Candidates scored per spread proposal (all moved onto the predicted band).
SPREAD_CANDIDATES = 1024


@dataclass(frozen=True)
class SpreadState:
    """What a spread rule reads at one ask.

    Attributes:
        in_band: Per experiment told, in order: a success in every band and constraint.
        guard: Outcome -> ``"prior"`` or ``"cold"`` as the prior guard chose at this ask
            (empty without a guard).
        climb_outcomes: The objective's outcomes outside its bands (QY).
        n: ``band_spread_n``.
        pending: Experiments asked for but not told yet (several reactors, asks before
            tells): they count among the ``n``, or every ask while the told count stands still
            would spread again.
    """

    in_band: Sequence[bool]
    guard: Mapping[str, str]
    climb_outcomes: frozenset[str]
    n: int
    pending: int = 0


def _after_band(state: SpreadState) -> bool:
    """Whether this ask is one of the ``n`` right after the first in-band success."""
    first = next((i for i, b in enumerate(state.in_band) if b), None)
    return first is not None and len(state.in_band) + state.pending - first - 1 < state.n


def _guard_cold(state: SpreadState) -> bool:
    return _after_band(state) and any(state.guard.get(k) == "cold"
                                      for k in state.climb_outcomes)


#: ``BotorchSettings.band_spread`` -> whether this ask spreads.
SPREAD_RULES: dict[str, Callable[[SpreadState], bool]] = {
    "off": lambda state: False,
    "in_band": _after_band,
    "guard_cold": _guard_cold,
}


def spreads(rule: str, state: SpreadState) -> bool:
    """Whether the ask described by ``state`` spreads along the band under ``rule``."""
    return SPREAD_RULES[rule](state)


def p_success(spec: ObjectiveSpec, model: Any, X: Tensor, has_feasibility: bool) -> Tensor:
    """Posterior probability that ``X`` lands in every band and (with a feasibility GP) works.

    Returns:
        ``(N,)``.
    """
    m = len(spec.outcome_names)
    with torch.no_grad():
        post = model.posterior(X)
        mean = post.mean
        sd = post.variance.clamp_min(0.0).sqrt()
        p = log_p_band(spec, mean[..., :m], sd[..., :m]).exp()
        if has_feasibility:
            p = p * torch.special.ndtr(mean[..., m] / sd[..., m].clamp_min(1e-9))
    return p


def spread_select(space: ParameterSpace, spec: ObjectiveSpec, model: Any, X_seen: Tensor, *,
                  seed: int, has_feasibility: bool) -> Tensor:
    """The candidate maximizing P(in band, works) x distance to every experiment run or running.

    Args:
        space: The space (constraints of the candidates).
        spec: The objective (its bands).
        model: Fitted model list (outcomes in ``spec.outcome_names`` order, then feasibility).
        X_seen: Unit-cube points of every experiment told or pending, ``(n, d)``.
        seed: Seed of the candidates.
        has_feasibility: The model's last output is the feasibility GP.

    Returns:
        One unit-cube point, ``(1, d)``.
    """
    device = X_seen.device
    u = random_design(space, seed, SPREAD_CANDIDATES)
    with torch.enable_grad():
        u = onto_band(space, model, spec, u, device=device, share=1.0)
    X = torch.as_tensor(u, dtype=torch.float64, device=device)
    p = p_success(spec, model, X, has_feasibility)
    dist = torch.cdist(X, X_seen).min(dim=-1).values if X_seen.shape[0] else torch.ones_like(p)
    value = p * dist
    best = int(torch.argmax(torch.where(torch.isfinite(value), value, -math.inf)))
    return X[best].unsqueeze(0)
