"""Greedy (posterior-mean) steps between Thompson draws (``BotorchSettings.ts_greedy_every``).

Why: once in band, constrained Thompson sampling (:mod:`~autolab.optimizer.thompson`) takes
the argmax of one posterior draw over a thousand trust-region candidates. That argmax favours
the candidates whose draw is extreme: a QY drawn high where the QY model is unsure, a PL drawn
in band where the PL sd is several nm. Refitting the model along the default's traces on the
family's design set (docs/benchmarks.md, "Fifth round") showed the cost in 7 slow or missed
cells: 19-82 % of the chosen points landed in band, while the candidate with the best
*posterior-mean* QY among those whose *mean* PL is in band would have been in band 48-100 % of
the time and brighter at the median in 6 of the 7 cells (equal in the seventh). This is the
exploitation / exploration trade-off of epsilon-greedy Bayesian optimization (De Ath et al.,
"Greed is good", ACM TELO 2021): a pure exploitation step now and then refines the incumbent's
region, the draws keep exploring. Measured as a search it is a trade, not a win (faster on
twin-like reactors, a few more misses on others; even on held-out reactors), so it is off by
default.

A greedy step is Thompson's own selection rule applied to the posterior mean instead of a draw
(:func:`~autolab.optimizer.thompson.sample_scores`: in every band and constraint and not
failing by the mean, the best non-target mean score; else the least violation), over the same
candidate set, skipping candidates within :data:`~autolab.optimizer.thompson.EXCLUSION_RADIUS`
of any experiment already run, pending or chosen (the mean's argmax is otherwise often the best
experiment itself). Which asks are greedy is a pure function of how many experiments were told,
so a resumed campaign proposes what the uninterrupted one would have.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from autolab.objective import ObjectiveSpec
from autolab.optimizer.thompson import EXCLUSION_RADIUS, sample_scores


def greedy_now(every: int | None, n_told: int) -> bool:
    """Whether the next Thompson-phase ask is a greedy step.

    Args:
        every: ``BotorchSettings.ts_greedy_every`` (``None``: never).
        n_told: Experiments told so far (failures included; reused ones not).

    Returns:
        ``True`` for every ``every``-th experiment (``n_told + 1`` a multiple of ``every``).
    """
    return every is not None and (n_told + 1) % every == 0


def greedy_select(spec: ObjectiveSpec, model: Any, X: Tensor, *, has_feasibility: bool,
                  X_seen: Tensor | None) -> Tensor:
    """The candidate of ``X`` with the best posterior-mean score, away from ``X_seen``.

    Args:
        spec: The objective.
        model: Fitted model list (outcomes in ``spec.outcome_names`` order, then the
            feasibility GP if ``has_feasibility``).
        X: Candidates, ``(N, d)``.
        has_feasibility: The model's last output is the feasibility GP.
        X_seen: Experiments run, pending or already chosen, ``(p, d)``; candidates within
            :data:`EXCLUSION_RADIUS` of one are skipped (unless all are).

    Returns:
        ``(1, d)``.
    """
    with torch.no_grad():
        mean = model.posterior(X).mean
        scores = sample_scores(spec, mean, has_feasibility)
    if X_seen is not None and X_seen.shape[0]:
        near = (torch.cdist(X, X_seen) < EXCLUSION_RADIUS).any(dim=-1)
        if not bool(near.all()):
            scores = scores.masked_fill(near, -math.inf)
    return X[int(torch.argmax(scores))].unsqueeze(0)
