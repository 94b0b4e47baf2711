"""Escape from a stalled trust region (``BotorchSettings.ts_escape``, ``ts_escape_after``).

Why: once in band, Thompson sampling draws its candidates from a TuRBO box around the best
in-band experiment (:mod:`~autolab.optimizer.thompson`). When the box sits in the wrong basin
the search stalls there: replaying the default on the family's 36 design cells
(docs/benchmarks.md, "Sixth round") found 86 of 427 Thompson asks whose box held *no* truly good
candidate (in band, QY at least 90 % of the best reachable), 41 of them among the 57 asks of
the three cells that missed. TuRBO's own answer, halving the box after ``max(4, d)`` misses and
restarting once it is tiny, concentrates the search where it is stuck and never restarts within
a budget of 30 experiments.

Neither the model nor the history shows when the box is empty. At those asks the box's best
posterior probability of a 5 % in-band improvement was as high as at the others (median 0.26
against 0.28) and above that of a global candidate set in 386 of the 427 asks, so a rule that
compares posterior probabilities (box against space) almost never fires. The measured stall
(below) was 4 or more at 31 % of the empty-box asks and 34 % of the others. The trigger here is
the stall all the same, because it is a pure function of the told data (a resumed campaign
proposes what the uninterrupted one would have): the number of experiments since the best
in-band score last improved (:func:`stall_length`, TuRBO's failure counter without its reset on
halving). Once it reaches ``ts_escape_after`` the ask escapes, by a rule of
:data:`ESCAPE_RULES`:

* ``global_draw``: while stalled, the Thompson draw runs over the box's candidates *and* as many
  candidates of the whole space (half moved onto the predicted band), one joint draw whose
  argmax decides between them: TuRBO-m's implicit bandit between trust regions (Eriksson et al.
  2019), with the whole space as the second region, but only while the box yields nothing.
* ``global_pi``: every ``ts_escape_after``-th stalled experiment takes the candidate of the
  whole space with the highest posterior probability of beating the incumbent by
  :data:`ESCAPE_MARGIN` in every band (away from every experiment run), a deterministic step out
  of the box; the other asks stay in it.
* ``global_centre``: while stalled, the box (of the trust region's side) is centred on that
  candidate instead of the best in-band experiment, and the draw runs there: TuRBO's restart
  in a new place, the place chosen by the model rather than at random.

Measured on the design set (docs/benchmarks.md, "Sixth round"), none is a win: ``global_pi``
after 4 stalled experiments found 30 of 36 good hits against the default's 33 (paired mean +0.56
experiments), after 8 31/36 (+0.14), ``global_centre`` after 6 31/36 (+0.19); ``global_draw``
after 4 missed 4 of its first 6 twin cells, as global candidates did before. An escape that
fires on a stall as common where the box is fine as where it is empty moves a trajectory at
random. So ``ts_escape`` is off by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from autolab.objective import ObjectiveSpec
from autolab.optimizer.acquisition import incumbent_rest, log_p_band, rest_moments
from autolab.optimizer.base import derive_seed
from autolab.optimizer.steps import improves
from autolab.optimizer.thompson import EXCLUSION_RADIUS, candidate_set
from autolab.space import ParameterSpace

#: Relative improvement over the incumbent's posterior non-target score that ``global_pi``
#: asks for (5 % of the best in-band QY when QY is the only other term).
ESCAPE_MARGIN = 0.05

#: Smallest posterior sd of the non-target score (score units) in the improvement probability.
_MIN_REST_SD = 1e-9


def stall_length(history: Sequence[float | None]) -> int | None:
    """Experiments since the best in-band score last improved (:func:`~.steps.improves`).

    Args:
        history: Per step in order, its measured in-band non-target score, or ``None``
            (failed or out of band), as the trust region reads it.

    Returns:
        ``None`` before the first in-band step; 0 right after an improvement (or the first
        in-band step); else the count of steps since.
    """
    best: float | None = None
    stall = 0
    for value in history:
        if best is None:
            if value is not None:
                best, stall = value, 0
            continue
        if improves(value, best):
            best, stall = value, 0
        else:
            stall += 1
    return None if best is None else stall


@dataclass(frozen=True)
class EscapeContext:
    """What an escape rule may read at one Thompson ask (all of it from the told data)."""

    space: ParameterSpace
    spec: ObjectiveSpec
    model: Any
    X_box: Tensor
    X_ok: Tensor
    in_band_ok: Tensor
    X_seen: Tensor
    stall: int
    after: int
    seed: int
    length: float

    def global_candidates(self, n: int) -> Tensor:
        """``n`` uniform candidates of the whole space, half moved onto the predicted band."""
        no_anchor = self.X_box.new_zeros((0, self.space.dim))
        return candidate_set(self.space, self.model, self.spec, no_anchor,
                             seed=derive_seed(self.seed, 1), n=n)


@dataclass(frozen=True)
class Escape:
    """An escape rule's answer: the candidates to draw from, or a point to propose."""

    candidates: Tensor | None = None
    point: Tensor | None = None


def p_improvement(spec: ObjectiveSpec, model: Any, X: Tensor, incumbent: float,
                  margin: float = ESCAPE_MARGIN) -> Tensor:
    """Posterior probability that ``X`` is in every band and beats ``incumbent`` by ``margin``.

    Outcomes are independent GPs, so it is ``P(band) * P(rest > bar)`` with the non-target score
    ``rest`` Gaussian (:func:`~.acquisition.rest_moments`), ``bar = incumbent + margin *
    |incumbent|``.

    Args:
        spec: The objective.
        model: Fitted model list (outcomes in ``spec.outcome_names`` order first).
        X: Candidates, ``(N, d)``.
        incumbent: Posterior non-target score of the best in-band experiment.
        margin: Relative improvement asked for.

    Returns:
        ``(N,)``.
    """
    m = len(spec.outcome_names)
    with torch.no_grad():
        post = model.posterior(X)
        mean = post.mean[..., :m]
        sd = post.variance[..., :m].clamp_min(0.0).sqrt()
        rest_mean, rest_var = rest_moments(spec, mean, sd)
        bar = incumbent + margin * abs(incumbent)
        p_up = torch.special.ndtr((rest_mean - bar) / rest_var.sqrt().clamp_min(_MIN_REST_SD))
        out: Tensor = log_p_band(spec, mean, sd).exp() * p_up
    return out


def _global_draw(ctx: EscapeContext) -> Escape | None:
    if ctx.stall < ctx.after:
        return None
    n = ctx.X_box.shape[0]
    half = ctx.X_box[: max(n - n // 2, 1)]
    return Escape(candidates=torch.cat([half, ctx.global_candidates(n // 2)]))


def _best_global(ctx: EscapeContext) -> Tensor | None:
    """The whole space's candidate most likely to improve in band, away from the data."""
    incumbent = incumbent_rest(ctx.spec, ctx.model, ctx.X_ok, ctx.in_band_ok)
    if incumbent is None:  # nothing but the band to improve: the box's draw decides
        return None
    G = ctx.global_candidates(ctx.X_box.shape[0])
    p = p_improvement(ctx.spec, ctx.model, G, incumbent)
    if ctx.X_seen.shape[0]:
        near = (torch.cdist(G, ctx.X_seen) < EXCLUSION_RADIUS).any(dim=-1)
        if not bool(near.all()):
            p = p.masked_fill(near, -math.inf)
    return G[int(torch.argmax(p))].unsqueeze(0)


def _global_pi(ctx: EscapeContext) -> Escape | None:
    if ctx.stall < ctx.after or ctx.stall % ctx.after != 0:
        return None
    point = _best_global(ctx)
    return None if point is None else Escape(point=point)


def _global_centre(ctx: EscapeContext) -> Escape | None:
    if ctx.stall < ctx.after:
        return None
    centre = _best_global(ctx)
    if centre is None:
        return None
    return Escape(candidates=candidate_set(ctx.space, ctx.model, ctx.spec, centre,
                                           seed=derive_seed(ctx.seed, 2), n=ctx.X_box.shape[0],
                                           trust_length=ctx.length))


#: ``BotorchSettings.ts_escape`` -> the rule (``None``: this ask stays in the box).
ESCAPE_RULES: dict[str, Callable[[EscapeContext], Escape | None]] = {
    "none": lambda ctx: None,
    "global_draw": _global_draw,
    "global_pi": _global_pi,
    "global_centre": _global_centre,
}


def escape(rule: str, ctx: EscapeContext) -> Escape | None:
    """What the escape ``rule`` does at this ask (``None``: the trust region's draw as usual).

    Args:
        rule: A key of :data:`ESCAPE_RULES`.
        ctx: The ask's model, candidates, data and stall count.
    """
    return ESCAPE_RULES[rule](ctx)
