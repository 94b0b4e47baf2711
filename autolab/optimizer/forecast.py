"""Stopping forecast: is the specification already met, and how far is a good hit?

After every experiment a campaign asks the model two questions (issue 8 §5):

* ``p_spec_met``: the posterior probability that the best experiment so far (in-band first,
  :meth:`~autolab.objective.ObjectiveSpec.best_index`) *truly* meets the specification: its
  noise-free outcomes lie in every target band, meet every outcome constraint and reach the
  "good" threshold of every maximized outcome (see Thresholds).
* ``p_next``: the largest probability over a seeded candidate set (uniform points of the space,
  half of them moved onto the predicted band, perturbations of in-band successes, and the
  observed successes) that one experiment there is a good hit.
* ``median_experiments``, ``q80_experiments`` and ``expected_experiments``: how many further
  experiments to a good hit, as the median, 80 % quantile and mean of a discrete-time hazard
  (:class:`HazardModel`, :func:`remaining_experiments`) fitted on the reactor family as a
  function of the model's ``p_next``, whether the band is found, and the experiments done.
  ``1 / p_next`` (every later experiment alike) overstated the count, because the odds of a
  good hit rise as the search homes in (module "Calibration").
* ``p_improve``: the largest probability over the same candidates that one experiment is in band
  and improves the non-target terms (the score without the band) by more than ``improve_by``
  over the best in-band experiment: "further experiments are unlikely to improve by more than a
  stated amount" is ``p_improve`` small.
* ``p_in_band``: the largest probability over the same candidates that one experiment lands in
  every target band (and meets the outcome constraints), whatever its QY. While no experiment
  has been in band this is what ``p_improve`` reports too; when it stays near zero after the
  initial design (``design_done``), the band looks out of the reactor's reach in the searched
  space, and the campaign's ``stop.forecast_reach_below`` rule ends the search instead of
  spending the budget on it.

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
``p_next_model``. The count comes from :data:`FAMILY_HAZARD`, fitted on the same cells. The map
and the hazard were fitted for "good" relative to the best reachable (no explicit thresholds); a
forecast with explicit thresholds is reported as the model gives it (``calibration`` empty,
``count_model`` "geometric": the count of a constant ``p_next``). ``p_improve`` is not
recalibrated (no truth to check it against).

Why the model's own probabilities are so high (measured, docs/benchmarks.md "Stopping
forecast"): its "best reachable in band" per draw is the best over candidates of a smooth
posterior that reverts to the mean away from the data, so it sits near the best seen; the
median model threshold was ~80 % of the true one on the family, which makes "good" far easier
than it is. ``p_next`` is also a maximum over ~800 candidates, each a noisy estimate.

Cost: a few hundred milliseconds once the model is fitted (posterior marginals and 256 joint draws
per outcome over ~800 points); the optimizer reuses the fit of its next ``ask``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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
    rest_moments,
)

#: Largest expected count reported (a good hit is practically out of reach).
MAX_EXPECTED = 1e6

#: Experiments ahead that :func:`remaining_experiments` walks the hazard; beyond it the last
#: hazard is taken as constant (a geometric tail), so the mean stays finite and exact enough.
HORIZON = 500

#: The model's probabilities are shares of 256 joint draws; before a logit they are clipped to
#: half a draw from 0 and 1, so "no draw was good" stays finite and still means "rare".
P_CLIP = 1.0 / 512


def expected_experiments(p_next: float) -> float:
    """Expected experiments to a good hit, ``1 / p_next``, capped at :data:`MAX_EXPECTED`."""
    return min(MAX_EXPECTED, 1.0 / p_next) if p_next > 0 else MAX_EXPECTED


@dataclass(frozen=True)
class Remaining:
    """How many further experiments to the first good hit, as a distribution's summary.

    Attributes:
        mean_experiments: Expected count (capped at :data:`MAX_EXPECTED`).
        median_experiments: Smallest count ``k`` with at least even odds of a good hit within
            ``k`` experiments (:data:`MAX_EXPECTED` when beyond any reach).
        q80_experiments: The same at 80 % odds.
    """

    mean_experiments: float
    median_experiments: float
    q80_experiments: float


def remaining_experiments(hazards: Callable[[int], float],
                          horizon: int = HORIZON) -> Remaining:
    """Mean, median and 80 % quantile of the further experiments to a good hit.

    ``hazards(k)`` is the probability that experiment ``k`` ahead (1, 2, ...) is the first good
    hit given none before it (a discrete-time hazard). The survival ``S(k) = prod (1 - h(j))``
    for ``j <= k`` is the chance of no good hit within ``k``; the median is the first ``k``
    with ``S(k) <= 0.5``, the 80 % quantile the first with ``S(k) <= 0.2``, and the mean is
    ``sum S(k)`` for ``k >= 0``. Past ``horizon`` the last hazard is held (geometric tail, closed
    form). A constant hazard ``p`` gives the geometric count: mean ``1 / p``, median
    ``ceil(log 0.5 / log(1 - p))``.

    Raises:
        ValueError: A hazard outside [0, 1], or ``horizon < 1``.
    """
    if horizon < 1:
        raise ValueError(f"remaining_experiments: horizon must be >= 1, got {horizon}")
    survival, mean, h = 1.0, 0.0, 0.0
    quantiles: dict[float, float] = {}
    for k in range(1, horizon + 1):
        h = float(hazards(k))
        if not 0.0 <= h <= 1.0:
            raise ValueError(f"remaining_experiments: hazard {k} ahead is {h!r}, not in [0, 1]")
        mean += survival
        survival *= 1.0 - h
        for level in (0.5, 0.2):
            if level not in quantiles and survival <= level:
                quantiles[level] = float(k)
    if survival > 0.0:
        mean += survival / h if h > 0.0 else MAX_EXPECTED
        for level in (0.5, 0.2):
            if level not in quantiles:  # geometric tail with the last hazard
                quantiles[level] = (horizon + _geometric_quantile(h, level / survival)
                                    if h > 0.0 else MAX_EXPECTED)
    return Remaining(mean_experiments=min(MAX_EXPECTED, mean),
                     median_experiments=min(MAX_EXPECTED, quantiles[0.5]),
                     q80_experiments=min(MAX_EXPECTED, quantiles[0.2]))


def _geometric_quantile(h: float, level: float) -> float:
    """First ``k`` with ``(1 - h) ** k <= level`` (``0 < h <= 1``, ``0 < level < 1``)."""
    return 1.0 if h >= 1.0 else float(math.ceil(math.log(level) / math.log1p(-h) - 1e-12))


@dataclass(frozen=True)
class HazardModel:
    """Discrete-time hazard of the first good hit, fitted on the reactor family.

    Why: ``p_next`` is the chance for the next experiment only, and it rises as the search homes
    in, so ``1 / p_next`` (every later experiment alike) overstates the count: on the held-out
    family the recalibrated forecast said 32 where 10 further experiments were needed (median),
    and the actual count was below it in 97 % of the steps. A hazard that also knows the
    sequence (how many experiments are done, whether the band is found) and is fitted on what
    happened on the design family gives a count with honest odds.

    The hazard of experiment ``k`` ahead of a forecast after ``n`` experiments is the logistic

        ``logit h = intercept + per_logit_p * logit(p) + in_band * b + per_log_n * log(n + k - 1)``

    with ``p`` the model's own ``p_next`` (clipped to :data:`P_CLIP`), ``b`` 1 once a told
    experiment was measured in band. ``p`` and ``b`` are held at today's values for the
    experiments ahead (the model cannot know tomorrow's posterior); the experiment count moves,
    up to ``max_experiments``, the largest count the fit saw: beyond it the hazard is held
    rather than extrapolated (a campaign longer than the benchmarks gets a geometric tail).
    The fit (:func:`fit_hazard` on landmark rows, ``benchmarks/forecast_calibration.py``) takes
    every forecast with every experiment after it, so the projection ``k`` ahead is what was
    fitted, including that ``p`` itself rises as the search homes in.

    Attributes:
        name: Where the model was fitted (reported as ``Forecast.calibration``).
        intercept: Log odds at ``logit(p) = 0``, nothing in band, ``log n = 0``.
        per_logit_p: Log-odds slope per unit of the model's ``logit(p_next)``.
        in_band: Log-odds shift once an experiment is in band.
        per_log_n: Log-odds slope per unit of ``log`` (experiments done).
        max_experiments: Experiment count beyond which the hazard is held (the fit's range).

    Raises:
        ValueError: Empty name, a coefficient that is not finite, or ``max_experiments < 1``.
    """

    name: str
    intercept: float
    per_logit_p: float
    in_band: float
    per_log_n: float
    max_experiments: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("hazard model name must not be empty")
        for field in ("intercept", "per_logit_p", "in_band", "per_log_n"):
            value = getattr(self, field)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"hazard model {self.name!r}: {field} must be a finite "
                                 f"number, got {value!r}")
        if not isinstance(self.max_experiments, int) or self.max_experiments < 1:
            raise ValueError(f"hazard model {self.name!r}: max_experiments must be an integer "
                             f">= 1, got {self.max_experiments!r}")

    def hazard(self, p_model: float, in_band: bool, experiments: int) -> float:
        """Probability that the next experiment is the first good hit.

        Args:
            p_model: The model's own ``p_next``.
            in_band: Whether a told experiment was measured in band.
            experiments: Experiments done before the one forecast (>= 1).
        """
        z = (self.intercept + self.per_logit_p * _logit(p_model)
             + self.in_band * float(in_band)
             + self.per_log_n * math.log(min(self.max_experiments, max(1, experiments))))
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def remaining(self, p_model: float, in_band: bool, experiments: int) -> Remaining:
        """The further experiments to a good hit after ``experiments`` done (class docs)."""
        return remaining_experiments(
            lambda k: self.hazard(p_model, in_band, experiments + k - 1))


def _logit(p: float) -> float:
    p = min(1.0 - P_CLIP, max(P_CLIP, p))
    return math.log(p / (1.0 - p))


@dataclass(frozen=True)
class HazardRow:
    """One forecast and whether the next experiment was the first good hit (for fitting).

    Attributes:
        p_model: The model's own ``p_next``.
        in_band: Whether a told experiment was measured in band.
        experiments: Experiments done.
        next_good: Whether the next experiment was a good hit.
    """

    p_model: float
    in_band: bool
    experiments: int
    next_good: bool


def fit_hazard(rows: Sequence[HazardRow], name: str, ridge: float = 1.0) -> HazardModel:
    """Maximum-likelihood logistic hazard (:class:`HazardModel`) on forecasts before a good hit.

    Rows must come from the risk set: experiments up to and including a cell's first good hit
    (a benchmark cell stops there); ``forecast_calibration.py`` builds landmark rows (each
    forecast with every experiment after it, :class:`HazardModel`). Newton's method on the log
    likelihood with a ridge penalty ``ridge / 2 * |slopes|^2`` (not on the intercept): a few
    dozen good hits fit four coefficients, and the ridge keeps them finite when a feature
    separates the data.

    Raises:
        ValueError: No rows, no good hit among them, or a negative ridge.
    """
    if not rows:
        raise ValueError("fit_hazard needs at least one row")
    if not any(r.next_good for r in rows):
        raise ValueError("fit_hazard needs at least one good hit among the rows")
    if ridge < 0:
        raise ValueError(f"fit_hazard ridge must be >= 0, got {ridge!r}")
    x = torch.tensor([[1.0, _logit(r.p_model), float(r.in_band), math.log(max(1, r.experiments))]
                      for r in rows], dtype=torch.float64)
    y = torch.tensor([float(r.next_good) for r in rows], dtype=torch.float64)
    penalty = torch.diag(torch.tensor([0.0, ridge, ridge, ridge], dtype=torch.float64))
    rate = float(y.mean())
    beta = torch.tensor([math.log(rate / (1 - rate)) if rate < 1 else 0.0, 0.0, 0.0, 0.0],
                        dtype=torch.float64)
    for _ in range(100):
        mu = torch.sigmoid(x @ beta)
        grad = x.T @ (y - mu) - penalty @ beta
        hess = x.T @ (x * (mu * (1 - mu)).unsqueeze(-1)) + penalty
        step = torch.linalg.solve(hess + 1e-9 * torch.eye(4, dtype=torch.float64), grad)
        beta = beta + step
        if float(step.abs().max()) < 1e-10:
            break
    b = [float(v) for v in beta]
    return HazardModel(name=name, intercept=b[0], per_logit_p=b[1], in_band=b[2],
                       per_log_n=b[3], max_experiments=max(r.experiments for r in rows))


@dataclass(frozen=True)
class Forecast:
    """The model's view of where the campaign stands (module docs).

    Attributes:
        p_spec_met: Probability that the best experiment truly meets the specification (0 when
            no experiment is in band or none succeeded).
        best_index: 0-based index of that experiment among the told ones, or ``None``.
        p_next: Largest probability that one more experiment is a good hit.
        expected_experiments: Expected further experiments to a good hit (capped at
            :data:`MAX_EXPECTED`), from ``count_model``.
        median_experiments: Further experiments within which a good hit comes with even odds.
        q80_experiments: The same with 80 % odds.
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
        count_model: Where the count comes from: a :class:`HazardModel`'s name, or
            ``"geometric"`` (every further experiment a good hit with probability ``p_next``).
        p_in_band: Largest probability that one more experiment lands in every band and meets
            the outcome constraints (the model's own; not recalibrated).
        design_done: Whether the model proposes the next experiment (the initial design is
            done). A GP fitted on the first two or three design points can put every candidate
            far from the band, so a stop rule reads ``p_in_band`` only after the design.
        in_band_found: Whether a told experiment was measured in band (until then there is
            nothing to improve on, and ``p_improve`` is ``p_in_band``).
    """

    p_spec_met: float
    best_index: int | None
    p_next: float
    expected_experiments: float
    median_experiments: float
    q80_experiments: float
    p_improve: float
    improve_by: float
    thresholds: dict[str, float]
    repeat_index: int | None = None
    repeat_reason: str = ""
    p_spec_met_model: float | None = None
    p_next_model: float | None = None
    calibration: str = ""
    count_model: str = "geometric"
    p_in_band: float = 0.0
    design_done: bool = True
    in_band_found: bool = True

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
#: fc-design --fit design-family-ts-2026-12-01`` on the 36 cells of the design set (9 members:
#: 3 twin-kind, 3 RFF, 3 additive; 530/550/580/610 nm; 1 seed; budget 30) run through the
#: campaign loop with the default optimizer (band_ei_then_ts + trust region): 700 forecasts, 30
#: good hits. Checked once on the held-out members (docs/benchmarks.md "Stopping forecast").
#: Even the model's most confident forecasts (0.3-1) came true 7 % of the time, so the map is
#: flat and low: the GP cannot tell from its own posterior when the best QY in band is reached.
FAMILY_RECALIBRATION = Recalibration(
    name="design-family-ts-2026-12-01",
    p_spec_met=((0.0, 0.0018), (0.0002, 0.0018), (0.041, 0.0104), (0.2014, 0.0246),
                (0.6662, 0.0625), (1.0, 0.0625)),
    p_next=((0.0, 0.0027), (0.0402, 0.0027), (0.1981, 0.0181), (0.6811, 0.0734),
            (1.0, 0.0734)),
)

#: The count's hazard, fitted on the same forecasts (landmark rows, :class:`HazardModel`).
#: The model's ``p_next`` and the in-band status carry little weight; the odds of a good hit
#: rise mostly with the experiments done, as the search homes in: about 2 % for the 6th
#: experiment, 6-7 % for the 16th, 10-12 % from the 26th on.
FAMILY_HAZARD = HazardModel(name="design-family-ts-2026-12-01", intercept=-5.9419,
                            per_logit_p=0.0428, in_band=0.1059, per_log_n=1.1866,
                            max_experiments=29)


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
    ok = spec.meets_tensor(draws)
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
    experiments: int = 1,
    in_band_found: bool = False,
    hazard: HazardModel | None = None,
    design_done: bool = True,
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
        experiments: Experiments done (this campaign's, failed ones included), for the count.
        in_band_found: Whether a told experiment was measured in band, for the count.
        hazard: Count model with the recalibration (default :data:`FAMILY_HAZARD`); with
            explicit thresholds the count is geometric in the model's ``p_next``.
        design_done: Passed on as :attr:`Forecast.design_done`.
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
    count_model = None if cal is None else (hazard or FAMILY_HAZARD)
    if cal is not None:
        # Nothing in band: the spec is not met by any experiment, whatever the map says.
        p_spec = cal.spec_met(p_spec_model) if best_row is not None else 0.0
        p_next = cal.next(p_next_model)
    if count_model is None:
        left = remaining_experiments(lambda _k: p_next)
    else:
        left = count_model.remaining(p_next_model, in_band_found, experiments)
    band = log_good(spec, mean, sd, {})  # in every band and the constraints, any QY
    p_in_band = float(band.exp().max()) if band.numel() else 0.0
    # nothing in band yet: nothing to improve on, the question is landing in band at all
    p_improve = p_in_band if incumbent is None else _p_improve(
        spec, mean, sd, band=band, incumbent=incumbent, improve_by=improve_by)
    return Forecast(p_spec_met=p_spec, best_index=best_index, p_next=p_next,
                    expected_experiments=left.mean_experiments,
                    median_experiments=left.median_experiments,
                    q80_experiments=left.q80_experiments,
                    p_improve=p_improve,
                    improve_by=improve_by, thresholds=thr, p_spec_met_model=p_spec_model,
                    p_next_model=p_next_model, calibration="" if cal is None else cal.name,
                    count_model="geometric" if count_model is None else count_model.name,
                    p_in_band=p_in_band, design_done=design_done, in_band_found=in_band_found)


def _p_improve(spec: ObjectiveSpec, mean: Tensor, sd: Tensor, *, band: Tensor,
               incumbent: float, improve_by: float) -> float:
    """``p_improve`` over an in-band incumbent, from the candidates' marginals and ``band``."""
    rest = rest_coefficients(spec)
    if not rest:
        return 0.0
    mu, var = rest_moments(spec, mean, sd)
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
