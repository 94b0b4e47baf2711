"""Stopping forecast: is the specification already met, and how far is a good hit?

After every experiment a campaign asks the model two questions (issue 8 §5):

* ``p_spec_met``: the posterior probability that the best experiment so far (in-band first,
  :meth:`~autolab.objective.ObjectiveSpec.best_index`) *truly* meets the specification: its
  noise-free outcomes lie in every target band, meet every outcome constraint and reach the
  "good" threshold of every maximized outcome (see Thresholds).
* ``expected_experiments``: the expected number of further experiments to a good hit, from
  ``p_next``, the largest probability over a seeded candidate set (uniform points of the space,
  half of them moved onto the predicted band, perturbations of in-band successes, and the
  observed successes) that one experiment there is a good hit. Each experiment is taken as an
  independent try with that probability (a geometric count, ``1 / p_next``).
* ``p_improve``: the largest probability over the same candidates that one experiment is in band
  and improves the non-target terms (the score without the band) by more than ``improve_by``
  over the best in-band experiment: "further experiments are unlikely to improve by more than a
  stated amount" is ``p_improve`` small.

* ``repeat_index``: repeat a measurement when noise, not the model, limits the decision. The
  rule (:func:`repeat_advice`): take the best experiment ``b`` (in band) and the deciding
  margins, i.e. how far its measured value sits inside each band edge, and by how much its
  measured rest (QY, ...) leads the in-band runner-up. Repeat ``b`` when a margin is smaller
  than twice the posterior sd of the latent value there (the decision is uncertain) *and* that
  posterior sd is at least half the stated measurement sigma (the uncertainty is the reading's
  own noise, which a repeat halves; a model that already averaged neighbours would not gain
  from it). ``None`` when no sigma was stated or nothing is in band.

Thresholds: explicit ones (``thresholds={"qy": 0.35}``) are closed form on the posterior
marginals (outcomes are modelled independently, so probabilities multiply). Without them "good"
means ``qy_fraction`` (default 0.9, the benchmarks' "good hit") of the best value reachable in
band, which is unknown: :func:`relative_good` takes it per joint posterior draw (each draw is one
possible reactor with its own best in band) and a candidate's probability is the share of draws
in which it is good.

Calibration: the model's own probabilities are overconfident by an order of magnitude on the
reactor family (``benchmarks/forecast_calibration.py`` on 36 design-family cells: ``p_spec_met``
0.53 on average where 1.7 % of the best experiments were truly good; ``p_next`` 0.60 against 4 %).
The fitted QY model is sure that nothing brighter lies elsewhere in the band, while the true best
in band is typically 10-15 % brighter than anything seen. So the reported ``p_spec_met`` and
``p_next`` (and ``expected_experiments = 1 / p_next``) are passed through an empirical
:class:`Recalibration`, a monotone map from the model's probability to the share observed on the
*design* family (:data:`FAMILY_RECALIBRATION`, fitted by ``forecast_calibration.py --fit`` and
checked on held-out members); the model's own numbers stay in ``p_spec_met_model`` and
``p_next_model``. The map was fitted for "good" relative to the best reachable (no explicit
thresholds); a forecast with explicit thresholds is reported as the model gives it
(``calibration`` empty). ``p_improve`` is not recalibrated (no truth to check it against).

Cost: a few hundred milliseconds once the model is fitted (posterior marginals and 256 joint draws
per outcome over ~800 points); the optimizer reuses the fit of its next ``ask``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from botorch.utils.probability.utils import log_ndtr
from torch import Tensor

from autolab.objective import Maximize, Minimize, ObjectiveSpec, Target
from autolab.optimizer.acquisition import (
    MIN_SD,
    log_p_band,
    log_p_constraints,
    rest_coefficients,
)

#: Largest expected count reported (a good hit is practically out of reach).
MAX_EXPECTED = 1e6


def expected_experiments(p_next: float) -> float:
    """Expected experiments to a good hit, ``1 / p_next``, capped at :data:`MAX_EXPECTED`."""
    return min(MAX_EXPECTED, 1.0 / p_next) if p_next > 0 else MAX_EXPECTED


@dataclass(frozen=True)
class Forecast:
    """The model's view of where the campaign stands (module docs).

    Attributes:
        p_spec_met: Probability that the best experiment truly meets the specification (0 when
            no experiment is in band or none succeeded).
        best_index: 0-based index of that experiment among the told ones, or ``None``.
        p_next: Largest probability that one more experiment is a good hit.
        expected_experiments: Expected further experiments to a good hit, ``1 / p_next``
            (capped at :data:`MAX_EXPECTED`).
        p_improve: Largest probability that one more experiment is in band and improves the
            non-target terms by more than ``improve_by``.
        improve_by: The improvement asked about, score units of the non-target terms.
        thresholds: Outcome -> threshold used for "good" (minimum for a maximized outcome,
            maximum for a minimized one); without explicit ones, the median over posterior
            draws of ``qy_fraction`` times the draw's best in band.
        repeat_index: Told experiment worth measuring again (module docs), or ``None``.
        repeat_reason: Why, in words (empty when ``repeat_index`` is ``None``).
        p_spec_met_model: ``p_spec_met`` as the model gives it, before recalibration.
        p_next_model: ``p_next`` as the model gives it, before recalibration.
        calibration: Name of the :class:`Recalibration` applied (empty: none, the model's own
            numbers are reported).
    """

    p_spec_met: float
    best_index: int | None
    p_next: float
    expected_experiments: float
    p_improve: float
    improve_by: float
    thresholds: dict[str, float]
    repeat_index: int | None = None
    repeat_reason: str = ""
    p_spec_met_model: float | None = None
    p_next_model: float | None = None
    calibration: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible (for the journal and MLflow metrics)."""
        return asdict(self)


Knots = tuple[tuple[float, float], ...]


def _check_knots(field: str, knots: Knots) -> None:
    """Refuse a map that is not monotone on [0, 1], naming the field and the knot."""
    if len(knots) < 2:
        raise ValueError(f"recalibration {field}: needs at least 2 knots, got {len(knots)}")
    xs, ys = [float(x) for x, _ in knots], [float(y) for _, y in knots]
    if xs[0] != 0.0 or xs[-1] != 1.0:
        raise ValueError(f"recalibration {field}: knots must run from p = 0 to p = 1, got "
                         f"{xs[0]:g} to {xs[-1]:g}")
    for i in range(1, len(knots)):
        if not xs[i] > xs[i - 1]:
            raise ValueError(f"recalibration {field}: knot {i} p = {xs[i]:g} is not above the "
                             f"previous {xs[i - 1]:g}")
        if ys[i] < ys[i - 1]:
            raise ValueError(f"recalibration {field}: knot {i} share {ys[i]:g} is below the "
                             f"previous {ys[i - 1]:g} (the map must be monotone)")
    if not all(0.0 <= y <= 1.0 for y in ys):
        raise ValueError(f"recalibration {field}: shares must lie in [0, 1], got {ys}")


@dataclass(frozen=True)
class Recalibration:
    """Monotone piecewise-linear maps from the model's probabilities to observed shares.

    Fitted on benchmark cells whose truth is known (:func:`fit_knots`), because the GP's own
    probabilities of a good hit are far too high on the family (module docs). A map holds only
    for the kind of reactor and "good" it was fitted on, so its ``name`` says where it comes from
    and travels with every forecast.

    Attributes:
        name: Where the map was fitted (reported as ``Forecast.calibration``).
        p_spec_met: Knots ``(model p, observed share)`` from p = 0 to 1, both non-decreasing.
        p_next: The same for ``p_next``.

    Raises:
        ValueError: Knots not from 0 to 1, not increasing in p, or shares not monotone in [0, 1].
    """

    name: str
    p_spec_met: Knots
    p_next: Knots

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("recalibration name must not be empty")
        _check_knots("p_spec_met", self.p_spec_met)
        _check_knots("p_next", self.p_next)

    @staticmethod
    def _interp(knots: Knots, p: float) -> float:
        xs, ys = [x for x, _ in knots], [y for _, y in knots]
        p = min(1.0, max(0.0, p))
        for i in range(1, len(xs)):
            if p <= xs[i]:
                w = (p - xs[i - 1]) / (xs[i] - xs[i - 1])
                return ys[i - 1] + w * (ys[i] - ys[i - 1])
        return ys[-1]

    def spec_met(self, p: float) -> float:
        """Recalibrated ``p_spec_met``."""
        return self._interp(self.p_spec_met, p)

    def next(self, p: float) -> float:
        """Recalibrated ``p_next``."""
        return self._interp(self.p_next, p)


def fit_knots(pairs: Sequence[tuple[float, bool]], edges: Sequence[float]) -> Knots:
    """Knots of a monotone map from forecast/outcome pairs (reliability bins, then pooling).

    Pairs are binned by predicted probability (upper ``edges``, the last 1); each bin's share is
    ``(k + 0.5) / (n + 1)`` (Jeffreys: a bin with no good hit in it still says "rare", not
    "never", so ``1 / p_next`` stays finite), adjacent bins whose shares decrease are pooled
    until they increase (pool-adjacent-violators), and each pooled bin becomes the knot
    ``(mean predicted, share)``; the ends are held flat to p = 0 and p = 1.

    Raises:
        ValueError: No pairs.
    """
    if not pairs:
        raise ValueError("fit_knots needs at least one (predicted, observed) pair")
    blocks: list[list[float]] = []  # [sum predicted, n, k]
    lo = 0.0
    for hi in edges:
        sel = [(p, y) for p, y in pairs if lo <= p < hi or (hi >= 1.0 and p >= 1.0)]
        if sel:
            blocks.append([sum(p for p, _ in sel), float(len(sel)), float(sum(y for _, y in sel))])
            while len(blocks) > 1 and _share(blocks[-2]) > _share(blocks[-1]):
                last = blocks.pop()
                blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
        lo = hi
    knots = [(b[0] / b[1], _share(b)) for b in blocks]
    knots = [(x, y) for x, y in knots if 0.0 < x < 1.0]
    first = _share(blocks[0])
    return ((0.0, first), *knots, (1.0, _share(blocks[-1])))


def _share(block: Sequence[float]) -> float:
    return (block[2] + 0.5) / (block[1] + 1.0)


#: The recalibration fitted on the design family: ``forecast_calibration.py benchmark-results/
#: prior --strategy '' --fit ...`` on the 24 cells of ``benchmarks/family_prior.yaml`` (cold and
#: twin-prior BoTorch, 2 twin-kind + 2 RFF + 2 additive design members, 550/610 nm, budget 20;
#: 348 forecasts), checked on ``benchmarks/family_prior_heldout.yaml`` (docs/benchmarks.md).
#: Even the model's most confident forecasts came true 3-7 % of the time, so the map is flat
#: and low: the GP cannot tell from its own posterior when the best QY in band is reached.
FAMILY_RECALIBRATION = Recalibration(
    name="design-family-2026-12-01",
    p_spec_met=((0.0, 0.0041), (0.1336, 0.0128), (0.7764, 0.0342), (1.0, 0.0342)),
    p_next=((0.0, 0.0061), (0.0402, 0.0061), (0.1890, 0.0114), (0.7769, 0.0672), (1.0, 0.0672)),
)


def log_good(spec: ObjectiveSpec, mean: Tensor, sd: Tensor,
             thresholds: Mapping[str, float]) -> Tensor:
    """Log probability that latent outcomes with these marginals are a good hit.

    Args:
        spec: The objective.
        mean: Posterior means, ``(n, m)`` in ``spec.outcome_names`` order.
        sd: Posterior standard deviations, same shape.
        thresholds: Outcome -> threshold (see :class:`Forecast`).

    Returns:
        Shape ``(n,)``.
    """
    sd = sd.clamp_min(MIN_SD)
    out = log_p_band(spec, mean, sd) + log_p_constraints(spec, mean, sd)
    for term in spec.terms:
        if isinstance(term, Maximize | Minimize) and term.outcome in thresholds:
            k = spec.outcome_names.index(term.outcome)
            z = (mean[..., k] - thresholds[term.outcome]) / sd[..., k]
            out = out + log_ndtr(z if isinstance(term, Maximize) else -z)
    return out


def relative_good(spec: ObjectiveSpec, draws: Tensor, qy_fraction: float,
                  feasible: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """Probability that each candidate is a good hit *relative to the best reachable*.

    A good hit is in every band, meets every outcome constraint and reaches ``qy_fraction`` of
    the best in-band value of each maximized outcome. That best is unknown: each joint posterior
    draw of the latent outcomes over the candidates is one possible reactor, with its own best
    in-band value, so the threshold is taken per draw and a candidate's probability is the share
    of draws in which it is good. (Taking the threshold from the posterior *mean*, as before,
    made the best experiment meet "90 % of the best the model believes in" almost by definition:
    ``p_spec_met`` 0.98 against 1.5 % true good hits on the family.)

    Args:
        spec: The objective.
        draws: Joint posterior draws of the latent outcomes, ``(S, n, m)``.
        qy_fraction: Share of each draw's best in-band value that counts as good.
        feasible: Draws of "no failure" per candidate, ``(S, n)`` bool, or ``None``.

    Returns:
        ``(p, thresholds)``: per-candidate probability ``(n,)``, and per maximized outcome the
        median over draws of its threshold (draws with nothing in band left out).
    """
    ok = spec.in_band_tensor(draws) & (spec.violations_tensor(draws) <= 0).all(dim=-1)
    if feasible is not None:
        ok = ok & feasible
    good = ok.clone()
    thresholds: dict[str, float] = {}
    for term in spec.terms:
        if isinstance(term, Maximize):
            y = draws[..., spec.outcome_names.index(term.outcome)]
            best = torch.where(ok, y, torch.full_like(y, -math.inf)).max(dim=-1).values
            thr = qy_fraction * best
            good = good & (y >= thr.unsqueeze(-1))
            finite = thr[torch.isfinite(thr)]
            thresholds[term.outcome] = float(finite.median()) if finite.numel() else math.nan
    return good.to(draws.dtype).mean(dim=0), thresholds


def compute_forecast(
    spec: ObjectiveSpec,
    mean: Tensor,
    sd: Tensor,
    *,
    best_row: int | None,
    best_index: int | None,
    incumbent: float | None,
    thresholds: Mapping[str, float] | None,
    qy_fraction: float,
    improve_by: float,
    draws: Tensor | None = None,
    feasible: Tensor | None = None,
    recalibration: Recalibration | None = None,
) -> Forecast:
    """The forecast from the posterior over candidate points.

    Args:
        spec: The objective.
        mean: Latent posterior means of the candidates, ``(n, m)``.
        sd: Their standard deviations, ``(n, m)``.
        best_row: Row of ``mean`` that is the best experiment, or ``None``.
        best_index: That experiment's index among the told ones, or ``None``.
        incumbent: Posterior rest of the best in-band experiment, or ``None``.
        thresholds: Explicit thresholds (closed form on the marginals), or ``None`` for
            thresholds relative to the best reachable (:func:`relative_good`, needs ``draws``).
        qy_fraction: Share of the best reachable that is good (without ``thresholds``).
        improve_by: Improvement of the non-target terms asked about by ``p_improve``.
        draws: Joint posterior draws of the latent outcomes at the candidates, ``(S, n, m)``.
        feasible: Per draw and candidate, "no failure", ``(S, n)`` bool, or ``None``.
        recalibration: Map applied to ``p_spec_met`` and ``p_next`` of a forecast relative to
            the best reachable (default :data:`FAMILY_RECALIBRATION`); ignored with explicit
            ``thresholds``, which it was not fitted for.
    """
    for term in spec.terms:
        if thresholds and term.outcome in thresholds and not isinstance(term, Maximize | Minimize):
            raise ValueError(f"threshold for {term.outcome!r}: only maximized or minimized "
                             "outcomes take one")
    if thresholds:
        thr = dict(thresholds)
        good = log_good(spec, mean, sd, thr).exp()
    elif draws is not None:
        good, thr = relative_good(spec, draws, qy_fraction, feasible)
    else:
        raise ValueError("compute_forecast needs explicit thresholds or posterior draws")
    p_spec_model = float(good[best_row]) if best_row is not None else 0.0
    p_next_model = float(good.max()) if good.numel() else 0.0
    cal = None if thresholds else (recalibration or FAMILY_RECALIBRATION)
    p_spec, p_next = p_spec_model, p_next_model
    if cal is not None:
        # Nothing in band: the spec is not met by any experiment, whatever the map says.
        p_spec = cal.spec_met(p_spec_model) if best_row is not None else 0.0
        p_next = cal.next(p_next_model)
    return Forecast(p_spec_met=p_spec, best_index=best_index, p_next=p_next,
                    expected_experiments=expected_experiments(p_next),
                    p_improve=_p_improve(spec, mean, sd, incumbent, improve_by),
                    improve_by=improve_by, thresholds=thr, p_spec_met_model=p_spec_model,
                    p_next_model=p_next_model, calibration="" if cal is None else cal.name)


def _p_improve(spec: ObjectiveSpec, mean: Tensor, sd: Tensor, incumbent: float | None,
               improve_by: float) -> float:
    rest = rest_coefficients(spec)
    band = log_good(spec, mean, sd, {})
    if not rest or incumbent is None:
        return float(band.exp().max()) if incumbent is None else 0.0
    mu = torch.as_tensor(sum(c * mean[..., k] for k, c in rest))
    var = torch.as_tensor(sum(c**2 * sd[..., k] ** 2 for k, c in rest))
    z = (mu - incumbent - improve_by) / var.clamp_min(MIN_SD**2).sqrt()
    return float((band + log_ndtr(z)).exp().max())


@dataclass(frozen=True)
class Reading:
    """One in-band experiment as :func:`repeat_advice` sees it.

    Attributes:
        index: Index among the told experiments.
        outcomes: Measured outcomes.
        sigma: Stated 1-sigma per outcome (may be empty).
        post_sd: Posterior sd of the latent outcomes at its conditions.
    """

    index: int
    outcomes: Mapping[str, float]
    sigma: Mapping[str, float]
    post_sd: Mapping[str, float]


def repeat_advice(spec: ObjectiveSpec, best: Reading,
                  runner_up: Reading | None) -> tuple[int | None, str]:
    """Whether to measure the best experiment again (module docs); ``(index or None, reason)``."""
    for term in spec.terms:
        if not isinstance(term, Target):
            continue
        name = term.outcome
        margin = term.tolerance - abs(best.outcomes[name] - term.value)
        if _noise_limited(name, margin, best):
            return best.index, (f"{name} {best.outcomes[name]:.4g} is {margin:.3g} inside the "
                                f"band edge, within 2 posterior sd ({best.post_sd[name]:.3g}) "
                                f"that the reading's noise ({best.sigma[name]:.3g}) dominates")
    if runner_up is None:
        return None, ""
    for k, coef in rest_coefficients(spec):
        name = spec.outcome_names[k]
        gap = coef * (best.outcomes[name] - runner_up.outcomes[name])
        if _noise_limited(name, gap / abs(coef), best):
            return best.index, (f"{name} leads experiment {runner_up.index} by only "
                                f"{gap / abs(coef):.3g}, within 2 posterior sd "
                                f"({best.post_sd[name]:.3g}) that the reading's noise "
                                f"({best.sigma[name]:.3g}) dominates")
    return None, ""


def _noise_limited(name: str, margin: float, best: Reading) -> bool:
    if name not in best.sigma:
        return False
    sd = best.post_sd[name]
    return margin < 2.0 * sd and sd >= 0.5 * best.sigma[name]
