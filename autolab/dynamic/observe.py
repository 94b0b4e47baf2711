"""Streamed spectra of a dynamic experiment as observations with an honest uncertainty.

Each outlet reading is a mixture of products made under the conditions its fluid elements saw
(:func:`~autolab.dynamic.rtd.map_outlet`). It is reported at the RTD-weighted mean conditions,
with an uncertainty that adds to the analyzer's own:

* the *mapping* term ``κ·s_f``: how much the feature varies across the fluid in the cell, the
  local slope of the feature times the spread of the conditions. The slope is passed in
  (gradients, e.g. from a model) or estimated from the stream itself: a weighted line fit of the
  feature against the mapped conditions, projected on their local direction of motion, over a
  window of neighbouring readings (a noisy stream over-estimates the slope, which errs on the
  safe side);
* the *mixing* term: a mixture of emission bands whose peaks are spread by ``s_peak`` is wider
  than any of them (Gaussian bands: ``sqrt(w² + (2.355·s_peak)²) - w``), so a width reads high.

A reading whose spread is larger than the mapping's limits is down-weighted (its sigma inflated,
its weight ``1/inflation²``) or refused outright, with a reason string for the journal. Readings
whose spread is negligible are flagged *steady*, so a campaign can keep them apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from autolab.dynamic.channels import base_name, flatten, unit_of
from autolab.dynamic.rtd import CascadeGeometry, MappedConditions, age_sd_min
from autolab.dynamic.trajectory import RateLimit
from autolab.exceptions import ConfigError
from autolab.records import Conditions, QualityFlag

if TYPE_CHECKING:
    from autolab.analysis.features import FeatureBatch

FloatArray = NDArray[np.float64]

#: Fewest readings in a slope-fit window (a quadratic needs 5; sparse streams take neighbours).
MIN_WINDOW = 5

#: FWHM of a Gaussian over its standard deviation, ``2·sqrt(2·ln 2)``.
GAUSS_FWHM_PER_SD = 2.0 * math.sqrt(2.0 * math.log(2.0))

#: Width feature -> the peak feature whose spread broadens it when bands mix (registry).
MIXING_BROADENING: dict[str, str] = {"fwhm_nm": "pl_peak_nm"}


@dataclass(frozen=True)
class SpreadLimit:
    """How much spread of one condition the mapping takes.

    Attributes:
        downweight_above: Spread above which a reading's sigma is inflated by spread/this.
        refuse_above: Spread above which the reading is refused.
        relative: Limits are fractions of the channel's mapped value (residence times, ratios).
    """

    downweight_above: float
    refuse_above: float
    relative: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.downweight_above <= self.refuse_above < math.inf):
            raise ConfigError(f"SpreadLimit: expected 0 < downweight_above <= refuse_above, got "
                              f"{self.downweight_above!r}, {self.refuse_above!r}")

    def scale(self, value: float) -> float:
        """The spread that counts as 1: ``downweight_above`` (times the value if relative)."""
        return self.downweight_above * (abs(value) if self.relative else 1.0)


#: Default spread limits: a reading is taken at full weight while the fluid in the cell saw
#: conditions within about a degree or two, or 5 % of a residence time or a ratio.
DEFAULT_SPREAD_LIMITS: dict[str, SpreadLimit] = {
    "t_core_c": SpreadLimit(2.0, 8.0),
    "t_shell_c": SpreadLimit(3.0, 12.0),
    "t_tank_c": SpreadLimit(3.0, 12.0),
    "tau_core_min": SpreadLimit(0.05, 0.2, relative=True),
    "tau_shell_min": SpreadLimit(0.05, 0.2, relative=True),
    "cl_to_i": SpreadLimit(0.05, 0.2, relative=True),
    "p_to_in": SpreadLimit(0.05, 0.2, relative=True),
    "s_to_zn": SpreadLimit(0.05, 0.2, relative=True),
    "stir_rpm": SpreadLimit(50.0, 200.0),
}


#: Systematic floor of the analyzer's features: half its documented accuracy on synthetic
#: frames (|error| <= 0.5 nm peak, 1 nm FWHM; tests/analysis/test_accuracy.py) as one sigma.
#: The analyzer's peak and FWHM sigmas are statistical; on the twin's spectra their bias at
#: steady state is 2-3 of those sigmas (FWHM -0.2 to -0.35 nm at sigma 0.11 nm), which a reading
#: must carry to be honest, steady or not. The QY's is 0: the analyzer's QY sigma already holds
#: the relative-QY method's calibration error (``AnalyzerSettings.qy_calibration_rel``, 5 %),
#: in steady and dynamic readings alike, so it is counted once. The key stays, so a campaign
#: may still add a floor of its own.
DEFAULT_MEASUREMENT_FLOOR: dict[str, float] = {"pl_peak_nm": 0.25, "fwhm_nm": 0.5, "qy": 0.0,
                                               "abs_peak_nm": 0.5}


@dataclass(frozen=True)
class MappingPolicy:
    """When a mapped reading is trusted, down-weighted or refused.

    Attributes:
        spread_limits: Channel (or field, for all its per-tank channels) -> limit. A varying
            channel without a limit is refused (nothing says how much spread it takes).
        spread_factor: ``κ``, the multiple of the first-order feature spread (slope × spread)
            counted as mapping uncertainty. 1.5: on the transient twin the product of a
            core-temperature ramp lags its mean-condition mapping by up to about one
            slope × spread (kinetic history); with 1 those ramps sit at 90-93 % within 2σ, with
            0 at 70-73 % (docs/dynamic.md).
        steady_fraction: A reading is *steady* when every spread is below this fraction of its
            ``downweight_above`` and no fluid from before the trajectory is in the cell
            (unless it was held there).
        max_before_start: Largest share of fluid older than the trajectory, when the conditions
            before it are unknown (``held_before`` False).
        slope_window_tau: Half-width of the slope-fit window, in mean total residence times.
        measurement_floor: Feature -> systematic one-sigma floor added in quadrature to the
            analyzer's statistical sigma (a value below 1 for ``qy`` is relative, others
            absolute); ``{}`` to trust the analyzer's sigma alone.
        spread_factors: Channel (or field, for all its per-tank channels) -> its own ``κ``,
            overriding ``spread_factor`` for that channel's share of the spread. The
            first-order term exists for the kinetic history of a ramp (its product lags the
            mean-condition mapping); a channel whose product follows it quasi-statically
            mixes to first order without error, so a smaller ``κ`` keeps its readings honest
            without hiding them from the model (docs/dynamic.md, "Per-channel factors").
        inflate_channels: Channels (or fields) whose spread above ``downweight_above``
            inflates the reading's sigma (down-weights it); None: every channel. A channel left
            out keeps its refusal limit, and beyond its full-weight limit its reading keeps the
            honest sigma (its mapping term already grows with the spread), the reason saying so.
    """

    spread_limits: Mapping[str, SpreadLimit] = field(
        default_factory=lambda: dict(DEFAULT_SPREAD_LIMITS))
    spread_factor: float = 1.5
    steady_fraction: float = 0.02
    max_before_start: float = 0.01
    slope_window_tau: float = 0.5
    measurement_floor: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MEASUREMENT_FLOOR))
    spread_factors: Mapping[str, float] = field(default_factory=dict)
    inflate_channels: frozenset[str] | None = None

    def __post_init__(self) -> None:
        bad = {k: v for k, v in {"": self.spread_factor, **self.spread_factors}.items()
               if not (isinstance(v, (int, float)) and 0 <= v < math.inf)}
        if bad:
            raise ConfigError("MappingPolicy spread_factor/spread_factors: expected finite "
                              f"factors >= 0, got {bad}")
        known = set(DEFAULT_SPREAD_LIMITS) | set(self.spread_limits)
        for name, keys in (("spread_factors", self.spread_factors),
                           ("inflate_channels", self.inflate_channels or ())):
            unknown = sorted(k for k in keys if base_name(k) not in known and k not in known)
            if unknown:
                raise ConfigError(f"MappingPolicy {name}: unknown channel(s) {unknown}; "
                                  f"expected names from {sorted(known)}")

    def inflates(self, channel: str) -> bool:
        """Whether a channel's spread above its full-weight limit down-weights the reading."""
        return (self.inflate_channels is None or channel in self.inflate_channels
                or base_name(channel) in self.inflate_channels)

    def factor(self, channel: str) -> float:
        """``κ`` of a channel: its own, its field's, else ``spread_factor``."""
        own = self.spread_factors.get(channel, self.spread_factors.get(base_name(channel)))
        return self.spread_factor if own is None else float(own)

    def limit(self, channel: str) -> SpreadLimit | None:
        """The spread limit of a channel (a per-tank channel falls back to its field's)."""
        return self.spread_limits.get(channel) or self.spread_limits.get(base_name(channel))

    def rate_caps(self, conditions: Conditions, geometry: CascadeGeometry) -> dict[str, RateLimit]:
        """Ramp-rate caps that keep a ramp's readings at full weight (for the planner).

        A channel ramped at rate *r* is spread over the outlet's RTD by about ``r·σ_age`` (the
        standard deviation of the total residence time); capping ``r`` at
        ``downweight_above/σ_age`` keeps it under the full-weight limit. Use with
        :meth:`~autolab.dynamic.trajectory.RampLimits.tightened`.
        """
        sd = age_sd_min(conditions, geometry)
        caps: dict[str, RateLimit] = {}
        for name, lim in self.spread_limits.items():
            rate = lim.downweight_above / sd
            caps[name] = RateLimit(rate, rate, relative=lim.relative, source="RTD mapping")
        return caps

    def jump_keeps_full_weight(self, a: Conditions, b: Conditions) -> bool:
        """Whether readings stay at full weight however fast the reactor jumps from a to b.

        Every element of the fluid in the cell saw values between ``a`` and ``b`` on a channel
        that jumped, so the spread over the RTD of a mixture of them is at most half the jump
        (the largest standard deviation of a distribution on an interval). If the cell held
        only fluid made at ``a`` (the reactor steady there), a jump within twice every
        full-weight limit therefore cannot down-weight or refuse a reading, whatever the RTD; a
        larger one may (for up to about two mean residence times). Fluid left from earlier moves
        adds spread this test does not see. For the planner: a
        step need not wait for the cell to wash out after a jump that cannot spoil it.
        Channels that do not move (NaN on both sides included) are ignored; a moving channel
        without a limit counts as spoiling.
        """
        return self._jump_within(a, b, refusal=False)

    def jump_keeps_accepted(self, a: Conditions, b: Conditions) -> bool:
        """Whether no reading can be refused however fast the reactor jumps from a to b.

        As :meth:`jump_keeps_full_weight`, against twice the refusal limits: the readings
        may be down-weighted, never refused.
        """
        return self._jump_within(a, b, refusal=True)

    def accepts(self, mapped: MappedConditions, i: int, *, held_before: bool = True) -> bool:
        """Whether a reading at outlet time ``i`` of ``mapped`` would be accepted for its spreads.

        The spread part of :func:`observe`'s verdict (the features' flags aside): for a planner
        that asks when the cell will hold readable fluid before any frame is taken.
        """
        _, _, refused, _ = _judge(mapped.conditions(i), mapped.spread(i),
                                  float(mapped.before_start[i]), self, held_before)
        return not refused

    def _jump_within(self, a: Conditions, b: Conditions, *, refusal: bool) -> bool:
        start, end = flatten(a), flatten(b)
        for ch, x in start.items():
            y = end.get(ch, x)
            if x == y or (math.isnan(x) and math.isnan(y)):
                continue
            lim = self.limit(ch)
            if lim is None or not (math.isfinite(x) and math.isfinite(y)):
                return False
            bound = lim.refuse_above if refusal else lim.downweight_above
            scale = bound * (min(abs(x), abs(y)) if lim.relative else 1.0)
            if abs(y - x) / 2.0 > scale:
                return False
        return True


@dataclass(frozen=True)
class DynamicObservation:
    """One streamed reading, mapped to the conditions that made it.

    Attributes:
        time_min: Outlet time since the trajectory started, min.
        conditions: RTD-weighted mean conditions behind the reading.
        spread: Channel -> spread (one standard deviation over the RTD), varying channels only.
        features: Feature name -> measured value.
        sigma: Feature -> total one-sigma uncertainty (analyzer, mapping, mixing, inflation).
        sigma_measurement: Feature -> the measurement part: the analyzer's one-sigma error with
            the policy's systematic floor.
        sigma_mapping: Feature -> the mapping part (``κ·slope·spread`` and mixing, before
            inflation).
        weight: 1 at full weight, ``1/inflation²`` when down-weighted, 0 when refused.
        accepted: False when refused (tell the journal, not the model).
        steady: The fluid in the cell saw constant conditions (a steady-state reading).
        before_start: Share of the fluid that entered before the trajectory started.
        reason: Why it was down-weighted or refused (empty when taken at full weight).
    """

    time_min: float
    conditions: Conditions
    spread: dict[str, float]
    features: dict[str, float]
    sigma: dict[str, float]
    sigma_measurement: dict[str, float]
    sigma_mapping: dict[str, float]
    weight: float
    accepted: bool
    steady: bool
    before_start: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict for the journal (conditions as :meth:`Conditions.as_dict`)."""
        return {"time_min": self.time_min, "conditions": self.conditions.as_dict(),
                "spread": dict(self.spread), "features": dict(self.features),
                "sigma": dict(self.sigma), "sigma_measurement": dict(self.sigma_measurement),
                "sigma_mapping": dict(self.sigma_mapping), "weight": self.weight,
                "accepted": self.accepted, "steady": self.steady,
                "before_start": self.before_start, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DynamicObservation:
        """Inverse of :meth:`to_dict`."""
        kw = dict(d)
        kw["conditions"] = Conditions.from_mapping(d["conditions"])
        return cls(**kw)


def observe(mapped: MappedConditions, features: Mapping[str, FloatArray],
            sigma: Mapping[str, FloatArray], *, policy: MappingPolicy | None = None,
            gradients: Mapping[str, Mapping[str, float]] | None = None,
            held_before: bool = True) -> tuple[DynamicObservation, ...]:
    """Turn a stream of features into mapped observations with their uncertainty.

    Args:
        mapped: The mapped conditions of the readings (:func:`~autolab.dynamic.rtd.map_outlet`).
        features: Feature name -> values, ``(T,)`` (NaN where the analyzer found nothing).
        sigma: Feature name -> the analyzer's one-sigma errors, ``(T,)``.
        policy: Spread limits and factors (default :class:`MappingPolicy`).
        gradients: Feature -> channel -> local slope (feature unit per channel unit); when given
            for a feature, used instead of estimating the slope from the stream.
        held_before: The trajectory's :attr:`~autolab.dynamic.trajectory.Trajectory.held_before`.

    Returns:
        One observation per reading, in time order.

    Raises:
        ConfigError: Features and sigmas of the wrong shape or with different names.
    """
    pol = policy or MappingPolicy()
    f, s = _check_stream(mapped, features, sigma)
    moving = _moving_channels(mapped)
    kappa = np.array([pol.factor(mapped.channels[j]) for j in moving])
    terms = {k: _feature_spread(mapped, moving, (f[k], s[k]), pol,
                                None if gradients is None else gradients.get(k), kappa=kappa)
             for k in f}
    s_map = {k: np.hypot(t.first_weighted, t.second) for k, t in terms.items()}
    for width, peak in MIXING_BROADENING.items():
        if width in f and peak in terms:
            w = np.abs(f[width])
            s_peak = np.hypot(terms[peak].first, terms[peak].second)
            s_map[width] = np.hypot(s_map[width],
                                    np.sqrt(w ** 2 + (GAUSS_FWHM_PER_SD * s_peak) ** 2) - w)
    stream = _Stream(mapped=mapped, moving=moving, features=f, sigma=s, sigma_mapping=s_map,
                     policy=pol, held_before=held_before)
    return tuple(_one(stream, i) for i in range(len(mapped)))


@dataclass(frozen=True, eq=False)
class _Stream:
    """Everything one reading's judgement needs (arrays over the whole stream)."""

    mapped: MappedConditions
    moving: list[int]
    features: dict[str, FloatArray]
    sigma: dict[str, FloatArray]
    sigma_mapping: dict[str, FloatArray]
    policy: MappingPolicy
    held_before: bool


def observe_batch(mapped: MappedConditions, batch: FeatureBatch,
                  names: tuple[str, ...] = ("pl_peak_nm", "fwhm_nm", "qy"), *,
                  policy: MappingPolicy | None = None,
                  gradients: Mapping[str, Mapping[str, float]] | None = None,
                  held_before: bool = True) -> tuple[DynamicObservation, ...]:
    """:func:`observe` on the analyzer's batch of the streamed frames (``<name>_err`` = sigma).

    Raises:
        ConfigError: A name the batch does not hold, or a batch of another length.
    """
    missing = [n for n in names if not hasattr(batch, n) or not hasattr(batch, f"{n}_err")]
    if missing:
        raise ConfigError(f"observe_batch names: {missing} are not analyzer features with an "
                          "error; expected e.g. pl_peak_nm, fwhm_nm, qy, abs_peak_nm")
    obs = observe(mapped, {n: getattr(batch, n) for n in names},
                  {n: getattr(batch, f"{n}_err") for n in names}, policy=policy,
                  gradients=gradients, held_before=held_before)
    return tuple(_flagged(o, int(f)) for o, f in zip(obs, batch.flags, strict=True))


def _flagged(o: DynamicObservation, flags: int) -> DynamicObservation:
    """Refuse a reading whose analyzer flags make its features meaningless (saturation, ...)."""
    bad = QualityFlag(flags) & QualityFlag.blocking()
    if not bad:
        return o
    why = f"refused: analyzer flags {', '.join(bad.names())}"
    return replace(o, accepted=False, weight=0.0, steady=False,
                   reason="; ".join(r for r in (why, o.reason) if r))


def _check_stream(mapped: MappedConditions, features: Mapping[str, FloatArray],
                  sigma: Mapping[str, FloatArray]
                  ) -> tuple[dict[str, FloatArray], dict[str, FloatArray]]:
    if set(features) != set(sigma) or not features:
        raise ConfigError(f"observe: expected the same feature names in features and sigma, got "
                          f"{sorted(features)} and {sorted(sigma)}")
    n = len(mapped)
    if np.any(np.diff(mapped.times_min) < 0):
        raise ConfigError("observe: expected the readings in time order (map_outlet's times_min "
                          "non-decreasing); the slope fit walks the stream in order")
    f = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in features.items()}
    s = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in sigma.items()}
    for name, arrs in (("features", f), ("sigma", s)):
        bad = sorted(k for k, v in arrs.items() if v.shape != (n,))
        if bad:
            raise ConfigError(f"observe {name}: expected {n} values (one per reading) for "
                              f"{bad}")
    return f, s


def _moving_channels(mapped: MappedConditions) -> list[int]:
    """Indices of the channels that vary in the stream or have a spread somewhere.

    A NaN channel (a tank at its stage temperature throughout) never moves.
    """
    out = []
    for j in range(len(mapped.channels)):
        m = mapped.mean[:, j]
        if np.isnan(m).any():
            continue
        if float(np.max(mapped.sd[:, j])) > 0 or float(np.ptp(m)) > 0:
            out.append(j)
    return out


@dataclass(frozen=True, eq=False)
class _Spread:
    """A feature's spread over the fluid in the cell, each ``(T,)``.

    Attributes:
        first: First-order spread, ``|f'|·σ`` (what band mixing sees).
        first_weighted: The same with each channel's share of ``σ`` times its ``κ`` (what the
            mapping term counts).
        second: Second-order (curvature) spread, ``|f''|·σ²/2``.
    """

    first: FloatArray
    first_weighted: FloatArray
    second: FloatArray


def _feature_spread(mapped: MappedConditions, moving: list[int],
                    values: tuple[FloatArray, FloatArray], policy: MappingPolicy,
                    gradient: Mapping[str, float] | None, *, kappa: FloatArray) -> _Spread:
    """First- and second-order spread of a feature over the fluid in the cell.

    ``values`` are the readings and their sigmas, ``kappa`` the moving channels' factors. With a
    gradient there is no curvature term.
    """
    if not moving:
        zero = np.zeros(len(mapped))
        return _Spread(zero, zero, zero)
    sd = mapped.sd[:, moving]
    if gradient is not None:
        g = np.array([gradient.get(mapped.channels[j], 0.0) for j in moving])
        # Perfectly correlated channels are the worst case: the spreads add in magnitude.
        per = np.abs(sd * g[None, :])
        return _Spread(np.asarray(per.sum(axis=1), dtype=np.float64),
                       np.asarray((per * kappa[None, :]).sum(axis=1), dtype=np.float64),
                       np.zeros(len(mapped)))
    return _stream_spread(mapped, moving, values, policy, kappa)


def _stream_spread(mapped: MappedConditions, moving: list[int],
                   values: tuple[FloatArray, FloatArray], policy: MappingPolicy,
                   kappa: FloatArray) -> _Spread:
    """Feature spread from the stream: ``|f'|·σ`` and ``|f''|·σ²/2`` along the local direction.

    ``σ`` is the norm of the channels' spreads in scaled units (weighted by ``kappa`` for the
    counted first-order term); ``f'`` and ``f''`` come from a weighted quadratic fit of the
    feature against the mapped conditions projected on their local direction of motion. The
    curvature term is the bias of a mixture at an optimum, where the slope vanishes but the
    mixture still reads lower (or higher) than the centre.
    """
    f, s = values
    scale = _channel_scales(mapped, moving)
    z = mapped.mean[:, moving] / scale
    sdn = np.linalg.norm(mapped.sd[:, moving] / scale, axis=1)
    sdk = np.linalg.norm(mapped.sd[:, moving] * kappa[None, :] / scale, axis=1)
    half = policy.slope_window_tau * float(np.nanmedian(mapped.mean_age_min))
    ok = np.isfinite(f)
    fit = np.full((len(mapped), 2), np.nan)
    for i in range(len(mapped)):
        fit[i] = _local_derivatives(*_window(mapped.times_min, i, half, ok, (z, f, s)), z[i])
    good = np.flatnonzero(np.isfinite(fit[:, 0]))
    if good.size == 0:
        unknown = np.where(sdn > 0, np.inf, 0.0)
        return _Spread(unknown, unknown, unknown)
    nearest = good[np.abs(good[None, :] - np.arange(len(mapped))[:, None]).argmin(axis=1)]
    fit = np.where(np.isfinite(fit[:, :1]), fit, fit[nearest])
    slope = np.abs(fit[:, 0])
    return _Spread(np.asarray(slope * sdn, dtype=np.float64),
                   np.asarray(slope * sdk, dtype=np.float64),
                   np.asarray(0.5 * np.abs(fit[:, 1]) * sdn ** 2, dtype=np.float64))


def _window(times: FloatArray, i: int, half: float, ok: NDArray[np.bool_],
            arrays: tuple[FloatArray, FloatArray, FloatArray]
            ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``arrays`` at the finite readings within ``half`` of reading ``i``, at least 5 of them.

    A sparse stream (readings further apart than the window) still gets a local fit from its
    nearest neighbours rather than none.
    """
    idx = np.flatnonzero(ok)
    dist = np.abs(times[idx] - times[i])
    near = idx[dist <= half]
    if len(near) < MIN_WINDOW:
        near = idx[np.argsort(dist, kind="stable")[:MIN_WINDOW]]
    z, f, s = arrays
    return z[near], f[near], s[near]


def _channel_scales(mapped: MappedConditions, moving: list[int]) -> FloatArray:
    """Per-channel scale for the direction of motion: its range in the stream (or its spread)."""
    m = mapped.mean[:, moving]
    span = np.nanmax(m, axis=0) - np.nanmin(m, axis=0)
    fallback = np.nanmax(mapped.sd[:, moving], axis=0)
    out = np.where(span > 0, span, np.where(fallback > 0, fallback, 1.0))
    return np.asarray(out, dtype=np.float64)


def _local_derivatives(z: FloatArray, f: FloatArray, s: FloatArray,
                       z0: FloatArray) -> tuple[float, float]:
    """Slope at ``z0`` and curvature of ``f`` along the first principal direction of ``z``.

    A weighted quadratic fit (a line when the window holds too few readings or too little range
    for a curvature); NaNs when the window cannot define a direction.
    """
    if len(f) < 3:
        return math.nan, math.nan
    zm = z.mean(axis=0)
    _, sv, vt = np.linalg.svd(z - zm, full_matrices=False)
    if sv[0] <= 1e-9 * math.sqrt(len(f)):
        return math.nan, math.nan
    v = (z - zm) @ vt[0]
    v0 = float((z0 - zm) @ vt[0])
    sw = 1.0 / np.maximum(s, 1e-12)
    deg = 2 if len(f) >= 5 else 1
    basis = np.vander(v - v0, deg + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(basis * sw[:, None], f * sw, rcond=None)
    return float(coef[1]), float(2.0 * coef[2]) if deg == 2 else 0.0


def _one(st: _Stream, i: int) -> DynamicObservation:
    mapped = st.mapped
    spread = {mapped.channels[j]: float(mapped.sd[i, j]) for j in st.moving}
    cond = mapped.conditions(i)
    inflation, reasons, refused, steady = _judge(cond, spread, float(mapped.before_start[i]),
                                                 st.policy, st.held_before)
    feats = {k: float(v[i]) for k, v in st.features.items()}
    missing = sorted(k for k, v in feats.items() if not math.isfinite(v))
    if missing:
        refused = True
        reasons.append(f"refused: {', '.join(missing)} not measured")
    sm = {k: _with_floor(k, float(v[i]), feats[k], st.policy) for k, v in st.sigma.items()}
    sp = {k: float(v[i]) for k, v in st.sigma_mapping.items()}
    unknown = sorted(k for k, v in sp.items() if not math.isfinite(v))
    if unknown and not refused:
        refused = True
        reasons.append(f"refused: no slope estimate for {', '.join(unknown)} (too few readings "
                       "in the window); pass gradients")
    sigma = {k: inflation * math.hypot(sm[k], sp[k]) for k in feats}
    return DynamicObservation(
        time_min=float(mapped.times_min[i]), conditions=cond, spread=spread, features=feats,
        sigma=sigma, sigma_measurement=sm, sigma_mapping=sp,
        weight=0.0 if refused else 1.0 / inflation ** 2, accepted=not refused,
        steady=steady and not refused, before_start=float(mapped.before_start[i]),
        reason="; ".join(reasons))


def _with_floor(name: str, sigma: float, value: float, policy: MappingPolicy) -> float:
    """The analyzer's sigma with the policy's systematic floor in quadrature."""
    floor = policy.measurement_floor.get(name, 0.0)
    if name == "qy" and floor < 1.0:
        floor *= abs(value) if math.isfinite(value) else 0.0
    return math.hypot(sigma, floor)


def _judge(cond: Conditions, spread: dict[str, float], before_start: float,
           policy: MappingPolicy, held_before: bool) -> tuple[float, list[str], bool, bool]:
    """Inflation factor, reasons, refused?, steady? of one reading from its spreads."""
    inflation, reasons, refused, steady = 1.0, [], False, True
    if not held_before and before_start > policy.max_before_start:
        refused = True
        reasons.append(f"refused: {before_start:.0%} of the fluid in the cell entered before the "
                       "trajectory started (its conditions are unknown)")
    values = cond.as_dict()
    for ch, sd in spread.items():
        lim = policy.limit(ch)
        if lim is None:
            if sd > 0:
                refused = True
                reasons.append(f"refused: {ch} varies and the mapping policy has no spread "
                               "limit for it")
            continue
        scale = lim.scale(values.get(ch, math.nan))
        ratio = sd / scale if scale > 0 else 0.0
        steady = steady and ratio <= policy.steady_fraction
        if ratio * lim.downweight_above > lim.refuse_above:
            refused = True
            reasons.append(f"refused: {ch} spread {_fmt(ch, sd, lim, values)} over the RTD "
                           f"exceeds {_fmt_limit(ch, lim.refuse_above, lim)} (ramp too fast for "
                           "the mapping to hold)")
        elif ratio > 1.0 and policy.inflates(ch):
            inflation = max(inflation, ratio)
            reasons.append(f"down-weighted: {ch} spread {_fmt(ch, sd, lim, values)} over the RTD "
                           f"exceeds {_fmt_limit(ch, lim.downweight_above, lim)}")
        elif ratio > 1.0:
            reasons.append(f"wide: {ch} spread {_fmt(ch, sd, lim, values)} over the RTD exceeds "
                           f"{_fmt_limit(ch, lim.downweight_above, lim)} (sigma from the mapping "
                           "term, not inflated)")
    if inflation > 1.0 and not refused:
        reasons.insert(0, f"sigma x{inflation:.2f}, weight {1 / inflation ** 2:.2f}")
    return inflation, reasons, refused, steady and (held_before or before_start <= 0)


def _fmt(ch: str, sd: float, lim: SpreadLimit, values: Mapping[str, float]) -> str:
    if lim.relative:
        return f"{sd / abs(values.get(ch, math.nan)):.1%}"
    return f"{sd:.3g} {unit_of(ch)}".rstrip()


def _fmt_limit(ch: str, x: float, lim: SpreadLimit) -> str:
    return f"{x:.0%}" if lim.relative else f"{x:g} {unit_of(ch)}".rstrip()


def to_tell(observations: Sequence[DynamicObservation], parameters: Sequence[str],
            outcomes: Sequence[str]) -> tuple[list[dict[str, float]], list[dict[str, float]],
                                             list[dict[str, float]]]:
    """The accepted observations as ``opt.tell(conditions, outcomes, outcome_sd)`` arguments.

    Refused readings are left out (they are journaled, never told); a down-weighted one goes in
    with its inflated sigma, which a model-based optimizer takes as known observation noise.

    Args:
        observations: Mapped observations of a stream.
        parameters: The campaign space's parameter names (``t_tank<i>_c`` included).
        outcomes: Outcome names the optimizer models (features of the observations).

    Raises:
        ConfigError: An outcome the observations do not carry.
    """
    kept = [o for o in observations if o.accepted]
    missing = sorted({k for o in kept for k in outcomes if k not in o.features})
    if missing:
        raise ConfigError(f"to_tell outcomes: {missing} are not features of the observations; "
                          f"they carry {sorted(kept[0].features) if kept else []}")
    return ([{p: o.conditions.value(p) for p in parameters} for o in kept],
            [{k: o.features[k] for k in outcomes} for o in kept],
            [{k: o.sigma[k] for k in outcomes} for o in kept])
