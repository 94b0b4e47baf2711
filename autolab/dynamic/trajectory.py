"""Trajectories of a dynamic experiment and the ramp limits of the heaters and pumps.

A :class:`Trajectory` is piecewise linear in every continuous condition between timed points
(a hold is two equal points). :class:`RampLimits` says how fast each condition may change on this
reactor: heater blocks heat and cool at finite rates, pumps change their flows by a bounded
fraction per minute, and every device has its own range. :func:`check_trajectory` refuses a ramp
the devices cannot follow (a :class:`ConditionsError` naming the channel, the segment and the
limit); :func:`plan_ramp` turns two proposed points into the fastest ramp they can follow, and
:func:`design_sweep` lays a ramp through a region.

Pure functions and frozen dataclasses: the procedure runs a trajectory, the campaign journals it
(``to_dict``), the optimizer proposes its points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from autolab.dynamic.channels import (
    base_name,
    check_same_topology,
    finite_or_raise,
    flatten,
    unflatten,
    unit_of,
)
from autolab.exceptions import ConditionsError, ConfigError
from autolab.records import Conditions

FloatArray = NDArray[np.float64]

#: Relative tolerance under which a channel counts as unchanged between two points.
_SAME = 1e-12


@dataclass(frozen=True)
class RateLimit:
    """How fast one condition may change.

    Attributes:
        up_per_min: Largest increase per minute (channel unit, or a fraction of the current value
            when ``relative``).
        down_per_min: Largest decrease per minute (same unit).
        relative: Rates are fractions of the current value per minute (a pump's flow slew sets
            the residence time's relative rate: ``τ ∝ 1/Q``).
        source: The device or rule the limit comes from, for messages (``"core heater"``).
    """

    up_per_min: float
    down_per_min: float
    relative: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("up_per_min", "down_per_min"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"RateLimit.{name}: expected a positive finite rate, got {v!r}")

    def describe(self, channel: str, rising: bool) -> str:
        """The limit in words, e.g. ``"≤ 10 °C/min (core heater, heating)"``."""
        rate = self.up_per_min if rising else self.down_per_min
        unit = "of the value/min" if self.relative else f"{unit_of(channel)}/min".lstrip()
        what = ", ".join(s for s in (self.source, "rising" if rising else "falling") if s)
        return f"≤ {rate:g} {unit} ({what})"

    def min_duration(self, a: float, b: float) -> float:
        """Shortest time to go linearly from ``a`` to ``b`` within this limit, min."""
        d = b - a
        if abs(d) <= _SAME * max(abs(a), abs(b), 1.0):
            return 0.0
        rate = self.up_per_min if d > 0 else self.down_per_min
        if self.relative:
            # A linear ramp changes fastest, relative to the value, where the value is smallest.
            return abs(d) / (rate * min(abs(a), abs(b)))
        return abs(d) / rate

    def rate_of(self, a: float, b: float, duration_min: float) -> float:
        """The rate a linear segment from ``a`` to ``b`` asks for, in this limit's unit."""
        r = abs(b - a) / duration_min
        return r / min(abs(a), abs(b)) if self.relative else r


@dataclass(frozen=True)
class RampLimits:
    """What the reactor's heaters and pumps can follow.

    Attributes:
        rates: Channel (or :class:`Conditions` field, for all its per-tank channels) -> limit.
            A channel without a limit must stay constant along a trajectory.
        bounds: Channel or field -> (lower, upper) range the devices can hold, inclusive.
    """

    rates: Mapping[str, RateLimit] = field(default_factory=dict)
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def rate(self, channel: str) -> RateLimit | None:
        """The limit of a channel (a per-tank channel falls back to its field's limit)."""
        return self.rates.get(channel) or self.rates.get(base_name(channel))

    def bound(self, channel: str) -> tuple[float, float] | None:
        """The range of a channel, or None when unbounded here."""
        return self.bounds.get(channel) or self.bounds.get(base_name(channel))

    @classmethod
    def for_reactor(cls, *, heating_c_per_min: float, cooling_c_per_min: float,
                    tau_rel_per_min: float = 0.2, ratio_rel_per_min: float = 0.5,
                    stir_rpm_per_min: float = 600.0,
                    bounds: Mapping[str, tuple[float, float]] | None = None) -> RampLimits:
        """Limits of the CSTR cascade from its devices' rates.

        Args:
            heating_c_per_min: Heater block heating rate (every stage or tank heater), °C/min.
            cooling_c_per_min: Heater block cooling rate, °C/min.
            tau_rel_per_min: Largest relative change of a residence time per minute (the pumps'
                flow slew; also bounds how fast the tanks' hold-up is exchanged).
            ratio_rel_per_min: Largest relative change of a feed ratio per minute.
            stir_rpm_per_min: Largest stirring-rate change per minute.
            bounds: The devices' (or the envelope's) ranges per condition.
        """
        heat = RateLimit(heating_c_per_min, cooling_c_per_min, source="heater")
        flow = RateLimit(tau_rel_per_min, tau_rel_per_min, relative=True, source="pumps")
        ratio = RateLimit(ratio_rel_per_min, ratio_rel_per_min, relative=True,
                          source="feed pumps")
        return cls(
            rates={"t_core_c": heat, "t_shell_c": heat, "t_tank_c": heat,
                   "tau_core_min": flow, "tau_shell_min": flow, "cl_to_i": ratio,
                   "p_to_in": ratio, "s_to_zn": ratio,
                   "stir_rpm": RateLimit(stir_rpm_per_min, stir_rpm_per_min, source="stirrer")},
            bounds=dict(bounds or {}))

    def tightened(self, caps: Mapping[str, RateLimit]) -> RampLimits:
        """These limits with further caps on top (e.g. :meth:`MappingPolicy.rate_caps`).

        A cap replaces a limit of the same kind (absolute or relative) when it is tighter; a
        channel without a device limit stays without one (it still cannot be ramped).
        """
        rates = dict(self.rates)
        for name, cap in caps.items():
            old = self.rates.get(name)
            if old is None or old.relative != cap.relative:
                continue
            rates[name] = RateLimit(min(old.up_per_min, cap.up_per_min),
                                    min(old.down_per_min, cap.down_per_min),
                                    relative=old.relative,
                                    source=", ".join(x for x in (old.source, cap.source) if x))
        return RampLimits(rates=rates, bounds=self.bounds)


@dataclass(frozen=True)
class Trajectory:
    """Conditions as piecewise-linear functions of the time since the trajectory started.

    Attributes:
        times_min: Times of the points, strictly increasing, the first one 0, min.
        points: Conditions at those times; between two points every continuous condition moves
            linearly. Integer conditions (the reactor's topology) are the same at every point.
        held_before: The reactor ran at ``points[0]`` long enough before time 0 that the tanks
            hold its steady state (a settle, or the end of the previous trajectory). When False,
            outlet fluid older than time 0 has no known conditions and the mapping refuses it.
    """

    times_min: tuple[float, ...]
    points: tuple[Conditions, ...]
    held_before: bool = True

    def __post_init__(self) -> None:
        t = tuple(float(x) for x in self.times_min)
        object.__setattr__(self, "times_min", t)
        object.__setattr__(self, "points", tuple(self.points))
        if not self.points or len(t) != len(self.points):
            raise ConfigError(f"Trajectory: expected one time per point, got {len(t)} times and "
                              f"{len(self.points)} points (at least one)")
        if t[0] != 0.0 or any(not math.isfinite(x) for x in t):
            raise ConfigError(f"Trajectory.times_min: expected finite times starting at 0, "
                              f"got {list(t)}")
        if any(b <= a for a, b in itertools.pairwise(t)):
            raise ConfigError(f"Trajectory.times_min: expected strictly increasing times, "
                              f"got {list(t)}")
        check_same_topology(self.points)
        for ch in self.varying():
            for p in self.points:
                finite_or_raise(ch, flatten(p)[ch])

    @property
    def duration_min(self) -> float:
        """Time from the first to the last point, min."""
        return self.times_min[-1]

    @cached_property
    def _columns(self) -> dict[str, FloatArray]:
        """Channel -> its values at the points (computed once; the trajectory is frozen)."""
        flat = [flatten(p) for p in self.points]
        return {ch: np.array([f[ch] for f in flat], dtype=np.float64) for ch in flat[0]}

    @cached_property
    def _varying(self) -> tuple[str, ...]:
        return tuple(ch for ch, ys in self._columns.items()
                     if any(not _same(float(y), float(ys[0])) for y in ys))

    def channels(self) -> tuple[str, ...]:
        """All continuous channels of the conditions, in field order."""
        return tuple(self._columns)

    def varying(self) -> tuple[str, ...]:
        """The channels that change somewhere along the trajectory."""
        return self._varying

    def values(self, channel: str, times_min: FloatArray) -> FloatArray:
        """A channel at the given times (held at the end values outside the trajectory)."""
        ys = self._columns[channel]
        t = np.asarray(times_min, dtype=np.float64)
        if channel not in self._varying:
            return np.full(t.shape, ys[0])
        return np.asarray(np.interp(t, self.times_min, ys), dtype=np.float64)

    def at(self, t_min: float) -> Conditions:
        """The conditions at time ``t_min`` (held at the end points outside the trajectory)."""
        moving = {ch: float(self.values(ch, np.array([t_min]))[0]) for ch in self.varying()}
        i = int(np.searchsorted(self.times_min, t_min, side="right")) - 1
        return unflatten(self.points[max(i, 0)], moving)

    def sample(self, times_min: Sequence[float]) -> list[Conditions]:
        """The conditions at each of ``times_min``.

        E.g. the rest of a running trajectory, as pending points for the optimizer.
        """
        return [self.at(float(t)) for t in times_min]

    @classmethod
    def from_samples(cls, times_min: Sequence[float], points: Sequence[Conditions], *,
                     held_before: bool = True) -> Trajectory:
        """The realized trajectory from logged samples (heater PVs and pump rates as conditions).

        Times are shifted to start at 0 and sorted; of samples logged at the same time the last
        one is kept. The mapping should run on this, not on the commanded trajectory: a heater
        that lags its setpoint shifts the conditions by its lag.

        Raises:
            ConfigError: No samples, or different numbers of times and samples.
            ConditionsError: Samples that differ in topology (injection tank, profile length).
        """
        if not points or len(times_min) != len(points):
            raise ConfigError(f"Trajectory.from_samples: expected one time per sample, got "
                              f"{len(times_min)} times and {len(points)} samples (at least one)")
        order = sorted(range(len(points)), key=lambda i: float(times_min[i]))
        t0 = float(times_min[order[0]])
        kept: dict[float, Conditions] = {}
        for i in order:
            kept[float(times_min[i]) - t0] = points[i]
        return cls(times_min=tuple(kept), points=tuple(kept.values()), held_before=held_before)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict for the journal."""
        return {"times_min": list(self.times_min),
                "points": [p.as_dict() for p in self.points],
                "held_before": self.held_before}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trajectory:
        """Inverse of :meth:`to_dict`."""
        points = tuple(Conditions.from_mapping(p) for p in d["points"])
        return cls(times_min=tuple(d["times_min"]), points=points,
                   held_before=bool(d.get("held_before", True)))


def _same(a: float, b: float) -> bool:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return True
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= _SAME * max(abs(a), abs(b), 1.0)


def check_trajectory(trajectory: Trajectory, limits: RampLimits) -> None:
    """Refuse a trajectory the heaters and pumps cannot follow.

    Raises:
        ConditionsError: A point outside a device's range, a channel that changes without a
            declared limit, or a segment faster than a limit; the error names the channel, the
            segment (times) and the limit.
    """
    for i, p in enumerate(trajectory.points):
        _check_bounds(flatten(p), limits, f"point {i} (t = {trajectory.times_min[i]:g} min)")
    flat = [flatten(p) for p in trajectory.points]
    for ch in trajectory.varying():
        lim = limits.rate(ch)
        if lim is None:
            raise ConditionsError(ch, flat[-1][ch], f"{flat[0][ch]:g} (constant)",
                                  "no ramp limit is declared for this condition, so it cannot "
                                  "be ramped; add one to the ramp limits")
        for k in range(len(flat) - 1):
            _check_segment(ch, lim, flat[k][ch], flat[k + 1][ch],
                           (trajectory.times_min[k], trajectory.times_min[k + 1]))


def _check_bounds(values: Mapping[str, float], limits: RampLimits, where: str) -> None:
    for ch, v in values.items():
        b = limits.bound(ch)
        if b is not None and not math.isnan(v) and not b[0] <= v <= b[1]:
            raise ConditionsError(ch, v, f"[{b[0]:g}, {b[1]:g}]",
                                  f"{where} is outside what the devices can hold")


def _check_segment(channel: str, lim: RateLimit, a: float, b: float,
                   span: tuple[float, float]) -> None:
    duration = span[1] - span[0]
    if lim.min_duration(a, b) <= duration * (1.0 + 1e-9):
        return
    raise ConditionsError(
        channel, lim.rate_of(a, b, duration), lim.describe(channel, rising=b > a),
        f"the segment {span[0]:g}-{span[1]:g} min ramps from {a:g} to {b:g}, faster than the "
        f"devices can follow; it needs at least {lim.min_duration(a, b):.3g} min")


def ramp_duration_min(start: Conditions, end: Conditions, limits: RampLimits) -> float:
    """Shortest linear ramp from ``start`` to ``end`` within ``limits``, min.

    Raises:
        ConditionsError: A channel changes that has no declared limit.
    """
    a, b = flatten(start), flatten(end)
    need = 0.0
    for ch in a:
        if _same(a[ch], b[ch]):
            continue
        lim = limits.rate(ch)
        if lim is None:
            raise ConditionsError(ch, b[ch], f"{a[ch]:g} (constant)",
                                  "no ramp limit is declared for this condition")
        need = max(need, lim.min_duration(finite_or_raise(ch, a[ch]), finite_or_raise(ch, b[ch])))
    return need


def _timeline(start: Conditions, legs: Iterable[tuple[float, Conditions]]
              ) -> tuple[list[float], list[Conditions]]:
    """Knot times (min, from 0) and points of a path from ``start`` through ``legs`` in order.

    Each leg is a duration and the point it ends at: a ramp, or a hold where that point is the
    one before. A leg of no duration adds no knot, so a planner may list every leg it could
    take; the one way :func:`plan_ramp`, :func:`chain` and :func:`plan_approach` lay theirs out.
    """
    times, points = [0.0], [start]
    for duration_min, point in legs:
        if duration_min > 0:
            times.append(times[-1] + duration_min)
            points.append(point)
    return times, points


def plan_ramp(start: Conditions, end: Conditions, limits: RampLimits, *,
              hold_start_min: float = 0.0, hold_end_min: float = 0.0,
              held_before: bool = True) -> Trajectory:
    """The fastest feasible linear ramp between two proposed points, with optional holds.

    Every channel moves over the same interval (one straight line through condition space), whose
    length is set by the slowest channel's limit; so no heater or pump is asked for more than it
    can do, and the others move slower than their limit.

    Args:
        start: Conditions at the start (the reactor holds them when ``held_before``).
        end: Conditions at the end.
        limits: The reactor's ramp limits (tighten them with :meth:`RampLimits.tightened` to keep
            the RTD mapping valid as well).
        hold_start_min: Hold at ``start`` before the ramp, min.
        hold_end_min: Hold at ``end`` after the ramp, min.
        held_before: See :attr:`Trajectory.held_before`.

    Raises:
        ConditionsError: An end point outside the devices' range, or a condition without a limit.
    """
    _check_bounds(flatten(start), limits, "the start point")
    _check_bounds(flatten(end), limits, "the end point")
    for name, v in (("hold_start_min", hold_start_min), ("hold_end_min", hold_end_min)):
        if not math.isfinite(v) or v < 0:
            raise ConfigError(f"plan_ramp {name}: expected a non-negative time, got {v!r}")
    times, points = _timeline(start, ((hold_start_min, start),
                                      (ramp_duration_min(start, end, limits), end),
                                      (hold_end_min, end)))
    if len(points) == 1:
        raise ConfigError("plan_ramp: start and end are the same conditions and no hold was "
                          "asked for; a trajectory needs a duration")
    return Trajectory(times_min=tuple(times), points=tuple(points), held_before=held_before)


def chain(points: Sequence[Conditions], limits: RampLimits, *, hold_min: float = 0.0,
          held_before: bool = True) -> Trajectory:
    """A trajectory through ``points`` in order: fastest feasible ramps, a hold at each point.

    Raises:
        ConditionsError: A point outside the devices' range or a condition without a limit.
        ConfigError: Fewer than two points, or a negative hold.
    """
    if len(points) < 2:
        raise ConfigError(f"chain: expected at least two points, got {len(points)}")
    if not math.isfinite(hold_min) or hold_min < 0:
        raise ConfigError(f"chain hold_min: expected a non-negative time, got {hold_min!r}")
    legs: list[tuple[float, Conditions]] = []
    for i, (a, b) in enumerate(itertools.pairwise(points)):
        _check_bounds(flatten(b), limits, f"point {i + 1}")
        if i > 0 or not held_before:
            legs.append((hold_min, a))
        legs.append((ramp_duration_min(a, b, limits), b))
    legs.append((hold_min, points[-1]))
    times, out = _timeline(points[0], legs)
    if len(out) == 1:
        raise ConfigError("chain: the points are all the same and no hold was asked for")
    return Trajectory(times_min=tuple(times), points=tuple(out), held_before=held_before)


def design_sweep(start: Conditions, low: Mapping[str, float], high: Mapping[str, float],
                 limits: RampLimits, *, n_points: int = 8, seed: int = 0,
                 hold_min: float = 0.0) -> Trajectory:
    """A designed ramp through a box of conditions, starting where the reactor is.

    Scrambled-Sobol points fill the box ``[low, high]`` of the named channels (others stay at
    ``start``); they are visited greedily nearest-first in ramp time, so the heaters swing as
    little as they can, and joined by :func:`chain`.

    Args:
        start: Where the reactor is now (held before the sweep).
        low: Channel -> lower corner of the box.
        high: Channel -> upper corner (same channels as ``low``).
        limits: Ramp limits.
        n_points: Points to visit after ``start``.
        seed: Seed of the Sobol scramble.
        hold_min: Hold at each point, min.

    Raises:
        ConfigError: Mismatched or empty box, or fewer than one point.
        ConditionsError: A corner outside the devices' range.
    """
    names = sorted(low)
    if not names or set(low) != set(high) or n_points < 1:
        raise ConfigError("design_sweep: expected the same non-empty channels in low and high "
                          f"and n_points >= 1, got low={sorted(low)}, high={sorted(high)}, "
                          f"n_points={n_points}")
    unknown = sorted(set(names) - set(flatten(start)))
    if unknown:
        raise ConfigError(f"design_sweep: unknown channel(s) {unknown}; expected names from "
                          f"{sorted(flatten(start))}")
    from scipy.stats import qmc  # noqa: PLC0415 - SciPy's qmc is only needed here

    m = max(0, math.ceil(math.log2(n_points)))  # Sobol's balance needs a power of two
    u = qmc.Sobol(d=len(names), scramble=True, seed=seed).random_base2(m)[:n_points]
    lo = np.array([low[n] for n in names])
    hi = np.array([high[n] for n in names])
    pts = [unflatten(start, dict(zip(names, map(float, lo + row * (hi - lo)), strict=True)))
           for row in u]
    return chain(_nearest_first(start, pts, limits), limits, hold_min=hold_min)


def _nearest_first(start: Conditions, pts: list[Conditions],
                   limits: RampLimits) -> list[Conditions]:
    order, here, left = [start], start, list(pts)
    while left:
        k = min(range(len(left)), key=lambda j: ramp_duration_min(here, left[j], limits))
        here = left.pop(k)
        order.append(here)
    return order


def approach_point(start: Conditions, end: Conditions, slow: RampLimits,
                   approach_min: float) -> Conditions:
    """The point on the line ``start`` -> ``end`` from which ``end`` is ``approach_min`` away.

    "Away" is the ramp time within the ``slow`` limits (the mapping's rate caps): the point
    from which a ramp at those rates reaches ``end`` in ``approach_min``. ``start`` itself when
    the whole line is that close. Bisection on the fraction of the line (ramp time grows
    monotonically with it; relative limits make it non-linear).
    """
    if ramp_duration_min(start, end, slow) <= approach_min:
        return start
    line = Trajectory((0.0, 1.0), (end, start))
    near, far = 0.0, 1.0
    for _ in range(40):
        mid = 0.5 * (near + far)
        if ramp_duration_min(line.at(mid), end, slow) > approach_min:
            far = mid
        else:
            near = mid
    return line.at(near)


def plan_approach(start: Conditions, end: Conditions, devices: RampLimits, slow: RampLimits,
                  *, approach_min: float, max_slow_min: float | None = None) -> Trajectory:
    """A ramp that moves fast where its readings say little and slowly near its end point.

    Between far-apart proposals a straight ramp at the mapping's rate caps (``slow``) would take
    hours, and one squeezed into a fixed time mixes so much along the RTD that its readings are
    down-weighted or refused. This plan spends the time where it buys information: at the
    devices' pace (``devices``) to the :func:`approach_point`, then within ``slow`` over the last
    ``approach_min`` to ``end``, so the readings of the fluid made near the proposal keep full
    weight. A ``start`` already that close is one slow ramp.

    Args:
        start: Where the reactor is (it feeds these conditions).
        end: The proposal.
        devices: What the heaters and pumps can follow.
        slow: The limits tightened by the mapping's rate caps (:meth:`RampLimits.tightened`).
        approach_min: Ramp time within ``slow`` of the slow leg, min.
        max_slow_min: Longest slow leg (None: no limit); a close ``start`` whose slow ramp
            would take longer is ramped in this time instead (never faster than the devices).

    Raises:
        ConfigError: ``start`` equals ``end`` or a non-positive ``approach_min``.
        ConditionsError: A point outside the devices' range or a condition without a limit.
    """
    if not math.isfinite(approach_min) or approach_min <= 0:
        raise ConfigError(f"plan_approach approach_min: expected a positive time, "
                          f"got {approach_min!r}")
    _check_bounds(flatten(end), devices, "the end point")
    mid = approach_point(start, end, slow, approach_min)
    fast_min = ramp_duration_min(start, mid, devices)
    slow_min = max(ramp_duration_min(mid, end, devices), ramp_duration_min(mid, end, slow))
    if max_slow_min is not None:
        slow_min = max(ramp_duration_min(mid, end, devices), min(slow_min, max_slow_min))
    times, points = _timeline(start, ((fast_min, mid), (slow_min, end)))
    if len(points) == 1:
        raise ConfigError("plan_approach: the start and end points are the same")
    return Trajectory(times_min=tuple(times), points=tuple(points))
