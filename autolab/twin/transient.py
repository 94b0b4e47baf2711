"""Reactor physics in time: what the cascade holds and what leaves it while conditions change.

The simulated rig asks one question of the chemistry, again and again: the tanks held ``state``,
the pumps, heaters and stirrers did ``inputs`` for ``dt_min``; what do the tanks hold now, and
what does the outlet flow cell see? :class:`CascadePhysics` is that question as a protocol, with
two answers:

* :class:`MixingCascade` carries the *steady-state* product of each feed as a tracer through the
  tanks-in-series washout (exact, :func:`~autolab.twin.cascade.washout`): during a change the
  outlet is a mix of old and new steady-state products. It suits response models without
  kinetics (the benchmark family's rff and additive members) and is what the rig did before
  transients were resolved.
* :class:`TransientCascade` resolves what each fluid element saw: the product state of every tank
  evolves by the cascade's balance equations with the tank's own temperature, stirring and feeds
  (see docs/twin.md). At constant conditions it settles on exactly the twin's steady state.

Both are cheap (one exact matrix exponential per step, vectorized over tracers or age classes),
pure (a step returns a new :class:`CascadeState`), and resumable (``to_dict``/``from_dict``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import expm
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from autolab.exceptions import ConditionsError
from autolab.records import Conditions, tank_temperature_name
from autolab.twin.cascade import (
    stage_split,
    stage_tanks,
    sulfur_share,
    tank_temperatures_c,
    tank_times_min,
)
from autolab.twin.chemistry import (
    ConditionArrays,
    CoreState,
    ShellState,
    arrhenius,
    bare_shell,
    birth_spread_sq,
    core_ensemble,
    nuclei_rel,
    shell_from_exposures,
)
from autolab.twin.config import TwinConfig
from autolab.twin.model import steady_spectra
from autolab.twin.optics import absorbance_shape, emission_per_nm

FloatArray = NDArray[np.float64]
#: What a feed makes at steady state: absorbance (P,), emission per absorbed photon per nm (P,),
#: total QY and In conversion (what :meth:`TransientCascade.steady_product` returns).
ProductFn = Callable[[Conditions], tuple[FloatArray, FloatArray, float, float]]
#: Residence time standing for "no flow" (min): nothing moves on any time scale of a campaign.
NO_FLOW_MIN = math.inf

InputKind = Literal["feed", "solvent", "no_flow"]


@dataclass(frozen=True)
class TankInputs:
    """What the tanks experience right now (held constant over one :meth:`CascadePhysics.step`).

    Build one with :meth:`feeding`, :meth:`solvent` or :meth:`no_flow`.

    Attributes:
        feed: The reagent feeds as realized (pump rates as residence times and ratios, heater
            process values as ``t_core_c``/``t_shell_c`` and per-tank PVs in ``t_tank_c``, the
            stirrers' rate, the injection layout); ``None`` when no reagent flows.
        solvent_ml_min: Solvent flowing through the cascade (feeds off), mL/min.
        solvent_tank: 1-based tank the solvent enters (1: the whole cascade; the first shell
            tank flushes the shell stage only, the tanks before it hold).
        t_tank_c: Tank temperatures when no reagent flows, °C per tank (empty: ambient).
        stir_rpm: Stirring rate when no reagent flows, rpm.
        s_inject_tank: Injection layout when no reagent flows (which tanks hold shell chemistry).
    """

    feed: Conditions | None = None
    solvent_ml_min: float = 0.0
    solvent_tank: int = 1
    t_tank_c: tuple[float, ...] = ()
    stir_rpm: float = 600.0
    s_inject_tank: int = 0

    def __post_init__(self) -> None:
        if self.solvent_tank < 1:
            raise ConditionsError("solvent_tank", self.solvent_tank, ">= 1 (1-based tank)")
        if not (math.isfinite(self.solvent_ml_min) and self.solvent_ml_min >= 0):
            raise ConditionsError("solvent_ml_min", self.solvent_ml_min, ">= 0 mL/min")
        if self.feed is not None and self.solvent_ml_min > 0:
            raise ConditionsError("solvent_ml_min", self.solvent_ml_min, "0 while feeding",
                                  "the feeds and the solvent flush do not run together")

    @classmethod
    def feeding(cls, conditions: Conditions) -> TankInputs:
        """The reagent feeds run at ``conditions`` (realized values)."""
        return cls(feed=conditions)

    @classmethod
    def solvent(cls, rate_ml_min: float, t_tank_c: tuple[float, ...] = (),
                stir_rpm: float = 600.0, s_inject_tank: int = 0,
                solvent_tank: int = 1) -> TankInputs:
        """Feeds off, solvent into tank ``solvent_tank`` at ``rate_ml_min`` (a flush)."""
        return cls(solvent_ml_min=float(rate_ml_min), solvent_tank=solvent_tank,
                   t_tank_c=tuple(t_tank_c), stir_rpm=stir_rpm, s_inject_tank=s_inject_tank)

    @classmethod
    def no_flow(cls, t_tank_c: tuple[float, ...] = (), stir_rpm: float = 600.0,
                s_inject_tank: int = 0) -> TankInputs:
        """Nothing flows; the tanks hold what they hold at ``t_tank_c``."""
        return cls(t_tank_c=tuple(t_tank_c), stir_rpm=stir_rpm, s_inject_tank=s_inject_tank)

    @property
    def kind(self) -> InputKind:
        """``feed``, ``solvent`` or ``no_flow``."""
        if self.feed is not None:
            return "feed"
        return "solvent" if self.solvent_ml_min > 0 else "no_flow"

    def layout(self, config: TwinConfig, *, in_range: bool = True) -> Layout:
        """The per-tank picture of these inputs in this cascade.

        ``in_range=False`` runs feeds at any realized tank temperature (blocks still ramping).

        Raises:
            ConditionsError: Per-tank conditions this cascade cannot realize (names the field).
        """
        if self.feed is not None:
            return feed_layout(self.feed, config, in_range=in_range)
        n_core, n_shell = stage_split(config, self.s_inject_tank)
        n = n_core + n_shell
        if self.solvent_tank > n:
            raise ConditionsError("solvent_tank", self.solvent_tank, f"[1, {n}]",
                                  f"this cascade has {n} tanks")
        temps = np.full(n, config.ambient_c)
        if len(self.t_tank_c) > n:
            raise ConditionsError(tank_temperature_name(len(self.t_tank_c)), self.t_tank_c[-1],
                                  f"tanks 1..{n}", f"this cascade has {n} tanks")
        for i, v in enumerate(self.t_tank_c):
            if math.isfinite(v):
                temps[i] = v
        tank_min = np.full(n, config.tank_volume_ml / self.solvent_ml_min
                           if self.solvent_ml_min > 0 else NO_FLOW_MIN)
        tank_min[:self.solvent_tank - 1] = NO_FLOW_MIN
        return Layout(n_core=n_core, temps_c=temps, tank_min=tank_min, inlet=0.0,
                      sulfur=np.concatenate([np.zeros(n_core), np.ones(n_shell)]),
                      stir_rpm=self.stir_rpm, feed=None)


@dataclass(frozen=True, eq=False)
class Layout:
    """Per-tank picture of the cascade under one set of inputs.

    Attributes:
        n_core: Tanks of the core stage (before the sulfur injection).
        temps_c: Temperature of every tank, ``(N,)`` °C.
        tank_min: Mean residence time of every tank, ``(N,)`` min (``inf``: no flow).
        inlet: Product made at the inlet, relative to steady state: 1 feeding, 0 solvent/no flow.
        sulfur: Fraction of the shell feed entered by each tank, ``(N,)`` (0 unless feeding).
        stir_rpm: Stirring rate, rpm.
        feed: The feed conditions, if reagents flow.
    """

    n_core: int
    temps_c: FloatArray
    tank_min: FloatArray
    inlet: float
    sulfur: FloatArray
    stir_rpm: float
    feed: Conditions | None

    @property
    def flowing(self) -> bool:
        """True if anything moves through the tanks."""
        return bool(np.isfinite(self.tank_min).any())


def feed_layout(conditions: Conditions, config: TwinConfig, *, in_range: bool = True) -> Layout:
    """The layout of a steady feed at ``conditions`` (the twin's steady state uses the same).

    Raises:
        ConditionsError: Per-tank conditions this cascade cannot realize (names the field).
    """
    n_core, _ = stage_tanks(conditions, config)
    return Layout(n_core=n_core, temps_c=tank_temperatures_c(conditions, config,
                                                             in_range=in_range),
                  tank_min=tank_times_min(conditions, config), inlet=1.0,
                  sulfur=sulfur_share(conditions, config), stir_rpm=conditions.stir_rpm,
                  feed=conditions)


@dataclass(frozen=True, eq=False)
class OutletProduct:
    """What flows through the outlet cell now (noise-free; the rig adds the detector).

    Attributes:
        absorbance: Decadic absorbance of the stream on the detector grid, ``(P,)``.
        emission_per_nm: Emission per absorbed photon per nm, ``(P,)`` (integrates to ``qy``).
        qy: Quantum yield of the stream (absorption-weighted over what it holds).
        conversion: In conversion of the product in the stream (concentration-weighted).
        concentration_rel: Product concentration relative to the steady state of its feed
            (0: solvent only, 1: steady product).
    """

    absorbance: FloatArray
    emission_per_nm: FloatArray
    qy: float
    conversion: float
    concentration_rel: float


@dataclass(frozen=True, eq=False)
class Tracer:
    """One feed's steady-state product carried through the tanks (:class:`MixingCascade`).

    Attributes:
        conditions: The feed that made it.
        tanks: Its concentration in each tank relative to steady state, ``(N,)``.
    """

    conditions: Conditions
    tanks: FloatArray


@dataclass(frozen=True, eq=False)
class CascadeState:
    """What the cascade holds: per-tank product state (JSON round trip for resume).

    Attributes:
        kind: Which physics wrote it (``mixing`` or ``transient``); a state only resumes there.
        t_min: Time since :meth:`CascadePhysics.initial`, min.
        tracers: Tracers of :class:`MixingCascade`, oldest first.
        fields: Named per-tank arrays of :class:`TransientCascade`.
    """

    kind: str
    t_min: float = 0.0
    tracers: tuple[Tracer, ...] = ()
    fields: Mapping[str, FloatArray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {"kind": self.kind, "t_min": self.t_min,
                "tracers": [{"conditions": t.conditions.as_dict(), "tanks": t.tanks.tolist()}
                            for t in self.tracers],
                "fields": {k: np.asarray(v).tolist() for k, v in self.fields.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CascadeState:
        """Inverse of :meth:`to_dict`."""
        return cls(kind=str(d["kind"]), t_min=float(d["t_min"]),
                   tracers=tuple(Tracer(Conditions.from_mapping(t["conditions"]),
                                        np.asarray(t["tanks"], dtype=np.float64))
                                 for t in d.get("tracers", ())),
                   fields={k: np.asarray(v, dtype=np.float64)
                           for k, v in d.get("fields", {}).items()})


class CascadePhysics(Protocol):
    """Reactor physics of the simulated rig: state in, inputs and time in, state out."""

    def initial(self) -> CascadeState:
        """Tanks full of clean solvent."""
        ...

    def step(self, state: CascadeState, inputs: TankInputs, dt_min: float) -> CascadeState:
        """The state after ``dt_min`` minutes of constant ``inputs`` (exact or stable).

        Raises:
            ConditionsError: Inputs this cascade cannot realize (names the field).
        """
        ...

    def outlet(self, state: CascadeState) -> OutletProduct:
        """What the outlet cell sees for ``state``."""
        ...


# ---------------------------------------------------------------------------------- transport
@lru_cache(maxsize=256)
def _propagator(tank_min: tuple[float, ...], dt_min: float) -> FloatArray:
    """Exact transport matrix of the tanks-in-series over ``dt_min`` with a constant inlet.

    Returns ``(N, N+1)``: new concentrations = ``M @ [c; inlet]`` (each tank k obeys
    ``dc_k/dt = (c_{k-1} - c_k)/τ_k``, ``c_0`` the inlet). Tanks with no flow (``inf``) hold; the
    inlet enters the first flowing tank (a flush into the shell stage leaves the core alone).
    """
    return np.asarray(expm(_generator(tank_min) * dt_min)[:len(tank_min)],
                      dtype=np.float64)


def transport_matrix(tank_min: tuple[float, ...]) -> FloatArray:
    """Generator ``(N+1, N+1)`` of the tanks-in-series transport; the last state is the inlet."""
    n = len(tank_min)
    rate = np.array([0.0 if math.isinf(t) else 1.0 / t for t in tank_min])
    a = np.zeros((n + 1, n + 1))
    a[np.arange(n), np.arange(n)] = -rate
    a[np.arange(1, n), np.arange(n - 1)] = rate[1:] * (rate[:-1] > 0)
    first = int(np.argmax(rate > 0)) if (rate > 0).any() else 0
    a[first, n] = rate[first]
    return a


@lru_cache(maxsize=64)
def _generator(tank_min: tuple[float, ...]) -> FloatArray:
    """:func:`transport_matrix`, cached and read-only (every propagator miss needs it)."""
    a = transport_matrix(tank_min)
    a.setflags(write=False)
    return a


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


_BLAS_DEPTH = threading.local()


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread while the cascade steps.

    Its matrices are tiny, and a threaded BLAS on a busy machine made a 48×48 ``expm`` 30×
    slower than on one core (11 ms against 0.3 ms, measured on the 2-core CI box under load).
    Only the outermost use in a thread sets the limit: the rig integrates a batch of steps
    under one limit, and each step asking again cost a threadpoolctl round trip (it reads
    every loaded library's state) per step.
    """
    depth = getattr(_BLAS_DEPTH, "n", 0)
    _BLAS_DEPTH.n = depth + 1
    try:
        if depth:
            yield
        else:
            with _blas().limit(limits=1, user_api="blas"):
                yield
    finally:
        _BLAS_DEPTH.n = depth


def _key(values: FloatArray | tuple[float, ...], digits: int = 9) -> tuple[float, ...]:
    """Values rounded to ``digits`` significant digits for the propagator caches.

    The rounded values are what the propagators compute with. One ``%``-format of the whole
    row does what a format per value did (the same correctly rounded ``%g``), 2-3x faster.
    """
    vals = values.tolist() if isinstance(values, np.ndarray) else list(values)
    text = " ".join([f"%.{digits}g"] * len(vals)) % tuple(vals)
    return tuple(map(float, text.split()))


_K = TypeVar("_K")
_V = TypeVar("_V")

#: Entries a cascade's per-instance memos keep before they start afresh.
MEMO_LIMIT = 256


def _memo(cache: dict[_K, _V], key: _K, build: Callable[[], _V]) -> _V:
    """``cache[key]``, built once; the cache is emptied when it reaches :data:`MEMO_LIMIT`.

    The cascade's memos depend on its own config, so they live on the instance (an
    ``lru_cache`` on a method would key on, and keep, every instance).
    """
    hit = cache.get(key)
    if hit is None:
        hit = build()
        if len(cache) >= MEMO_LIMIT:
            cache.clear()
        cache[key] = hit
    return hit


def _check_dt(dt_min: float) -> None:
    if not (math.isfinite(dt_min) and dt_min >= 0):
        raise ConditionsError("dt_min", dt_min, ">= 0 min", "a step must move time forward")


def _same_feed(a: Conditions, b: Conditions, temperature_c: float, rel: float) -> bool:
    """True if ``b`` continues ``a``'s product (within the rig's realization scatter)."""
    return feed_distance(a, b, temperature_c, rel) <= 1.0


#: Feed values compared relative to their size (the temperatures are compared in °C).
_RELATIVE = ("tau_core_min", "tau_shell_min", "cl_to_i", "s_to_zn", "p_to_in", "stir_rpm")
#: Feed values a tracer merge averages; the rest (the injection layout) must agree.
_MERGED = ("t_core_c", "t_shell_c", *_RELATIVE)


def feed_distance(a: Conditions, b: Conditions, temperature_c: float, rel: float) -> float:
    """How far apart two feeds' products are, in units of "the same feed" (inf: unmergeable).

    The largest of the temperature differences over ``temperature_c`` (stages and tanks) and
    the relative differences of the other feed values over ``rel``; feeds with another
    injection layout or profile length never merge.
    """
    if (a.s_inject_tank, a.s_inject_count) != (b.s_inject_tank, b.s_inject_count) \
            or len(a.t_tank_c) != len(b.t_tank_c):
        return math.inf
    ta = np.array([a.t_core_c, a.t_shell_c, *a.t_tank_c], dtype=float)
    tb = np.array([b.t_core_c, b.t_shell_c, *b.t_tank_c], dtype=float)
    if np.isnan(ta).tolist() != np.isnan(tb).tolist():
        return math.inf
    worst = float(np.max(np.abs(np.nan_to_num(ta - tb)))) / temperature_c
    for name in _RELATIVE:
        x, y = getattr(a, name), getattr(b, name)
        if math.isinf(x) or math.isinf(y):
            if x != y:
                return math.inf
            continue
        worst = max(worst, abs(x - y) / (rel * max(abs(x), abs(y))))
    return worst


def _merge(a: Tracer, b: Tracer) -> Tracer:
    """One tracer holding both: masses add per tank, the feed is the mass-weighted mean."""
    ma, mb = float(a.tanks.sum()), float(b.tanks.sum())
    wa = ma / (ma + mb) if ma + mb > 0 else 0.5

    def mean(x: float, y: float) -> float:
        if x == y or not (math.isfinite(x) and math.isfinite(y)):
            return x if wa >= 0.5 else y  # no mean of inf or NaN: the heavier's value
        return wa * x + (1.0 - wa) * y
    ca, cb = a.conditions, b.conditions
    merged = Conditions.from_mapping({
        **cb.as_dict(), **{n: mean(getattr(ca, n), getattr(cb, n)) for n in _MERGED},
        **{tank_temperature_name(i): mean(x, y) for i, (x, y) in enumerate(
            zip(ca.t_tank_c, cb.t_tank_c, strict=True), start=1)}})
    return Tracer(merged, a.tanks + b.tanks)


def fold_tracers(tracers: list[Tracer], max_products: int, temperature_c: float,
                 rel: float) -> list[Tracer]:
    """At most ``max_products`` tracers, merging the neighbours a merge disturbs the least.

    The cost of merging two neighbours is the smaller one's mass (what gets relabelled) times
    how far apart their feeds are (:func:`feed_distance`); the newest tracer (the feed running
    now) never merges. Tracers of unmergeable feeds (another injection layout) are merged last,
    smallest mass first, so the count still holds. Folding the oldest tracer into the next
    instead (the former rule) relabelled the steady product filling the cascade as the first
    feed of a ramp at once: 3.9 nm of outlet PL shift 5 min into a 10 °C/min ramp.
    """
    out = list(tracers)
    while len(out) > max(max_products, 2):
        masses = [float(t.tanks.sum()) for t in out]
        costs = []
        for j in range(len(out) - 2):
            d = feed_distance(out[j].conditions, out[j + 1].conditions, temperature_c, rel)
            costs.append((d * min(masses[j], masses[j + 1]) if math.isfinite(d) else math.inf,
                          min(masses[j], masses[j + 1]), j))
        _, _, j = min(costs)
        out[j:j + 2] = [_merge(out[j], out[j + 1])]
    return out


def mix_outlet(weights: FloatArray, absorbances: FloatArray, emissions: FloatArray, *,
               qys: FloatArray, conversions: FloatArray, wl_nm: FloatArray,
               excitation_nm: float) -> OutletProduct:
    """The outlet of a mixture of products at relative concentrations ``weights`` ``(J,)``.

    Absorbance adds by concentration; the excitation light is shared by each product's
    absorbance at ``excitation_nm``, so emission and QY are weighted by that share
    (:func:`autolab.twin.optics.mixture_pl_counts` of one product at weight 1 gives the same).
    """
    w = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    a = np.asarray(absorbances, dtype=np.float64)
    a_mix = w @ a if len(w) else np.zeros_like(wl_nm)
    total = float(w.sum())
    a_ex = np.array([np.interp(excitation_nm, wl_nm, row) for row in a]) * w
    if a_ex.sum() > 0:
        share = a_ex / a_ex.sum()
        em = share @ np.asarray(emissions, dtype=np.float64)
        qy = float(share @ qys)
    else:
        em, qy = np.zeros_like(wl_nm), 0.0
    conv = float(w @ conversions / total) if total > 0 else 0.0
    return OutletProduct(absorbance=np.asarray(a_mix, dtype=np.float64),
                         emission_per_nm=np.asarray(em, dtype=np.float64), qy=qy,
                         conversion=conv, concentration_rel=total)


class MixingCascade:
    """Steady-state products carried as tracers through the tanks-in-series washout.

    During a change the outlet is the mix of the old and new *steady-state* products (their
    size and shell history inside the tanks is not resolved; :class:`TransientCascade` does
    that for the twin's chemistry). Feeds within the rig's realization scatter of the newest
    tracer continue it, so jitter does not spawn products.

    Args:
        product_fn: Steady product of a feed (absorbance, emission per absorbed photon per nm,
            QY, conversion); called once per distinct feed and cached.
        config: The cascade (tanks, volumes, detector grid, excitation).
        same_temperature_c: Feeds whose temperatures are within this of the newest tracer's
            (and other values within ``same_rel``) continue it, °C.
        same_rel: Relative tolerance of the other feed values.
        max_products: Most tracers kept. Past it, the two neighbouring tracers (newest excluded)
            whose merge moves the least mass the furthest fold into one (:func:`fold_tracers`):
            their masses add per tank and its feed is their mass-weighted mean, so the outlet
            keeps what it sees to first order.
        prune_below: Tracers whose largest tank concentration falls below this are dropped.
    """

    kind = "mixing"

    def __init__(self, product_fn: ProductFn, config: TwinConfig, *,
                 same_temperature_c: float = 3.0, same_rel: float = 0.02,
                 max_products: int = 6, prune_below: float = 1e-4) -> None:
        self.product_fn = product_fn
        self.config = config
        self.same_temperature_c = same_temperature_c
        self.same_rel = same_rel
        self.max_products = max_products
        self.prune_below = prune_below
        d = config.detector
        self.wavelengths_nm: FloatArray = np.linspace(d.wavelength_min_nm, d.wavelength_max_nm,
                                                      d.n_pixels)
        self._cache: dict[tuple[float, ...], tuple[FloatArray, FloatArray, float, float]] = {}

    @property
    def n_tanks(self) -> int:
        """Tanks in the cascade."""
        return self.config.n_core_tanks + self.config.n_shell_tanks

    def initial(self) -> CascadeState:
        """Clean solvent: no tracers."""
        return CascadeState(kind=self.kind)

    def step(self, state: CascadeState, inputs: TankInputs, dt_min: float) -> CascadeState:
        """Exact washout of every tracer over ``dt_min`` (one matrix exponential per step)."""
        _check_dt(dt_min)
        lay = inputs.layout(self.config)
        tracers = list(state.tracers)
        if lay.feed is not None and (not tracers or not _same_feed(
                tracers[-1].conditions, lay.feed, self.same_temperature_c, self.same_rel)):
            tracers.append(Tracer(lay.feed, np.zeros(self.n_tanks)))
        if not tracers or dt_min == 0 or not lay.flowing:
            return CascadeState(self.kind, state.t_min + dt_min, tuple(tracers))
        c = np.vstack([t.tanks for t in tracers]).T  # (N, J)
        inlet = np.zeros((1, len(tracers)))
        if lay.feed is not None:
            inlet[0, -1] = lay.inlet
        with one_blas_thread():
            new = _propagator(_key(lay.tank_min), float(dt_min)) @ np.vstack([c, inlet])
        out = [Tracer(t.conditions, new[:, j].copy()) for j, t in enumerate(tracers)]
        keep = [t for t in out[:-1] if t.tanks.max() > self.prune_below] + out[-1:]
        keep = fold_tracers(keep, self.max_products, self.same_temperature_c, self.same_rel)
        return CascadeState(self.kind, state.t_min + dt_min, tuple(keep))

    def product(self, conditions: Conditions) -> tuple[FloatArray, FloatArray, float, float]:
        """The steady product of a feed (cached)."""
        key = tuple(round(v, 6) for v in conditions.as_dict().values())
        hit = self._cache.get(key)
        if hit is None:
            try:
                hit = self.product_fn(conditions)
            except ConditionsError:  # outside the chemistry's envelope: no dots form
                z = np.zeros_like(self.wavelengths_nm)
                hit = (z, z, 0.0, 0.0)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def outlet(self, state: CascadeState) -> OutletProduct:
        """The mix of the tracers in the last tank."""
        if state.kind != self.kind:
            raise ValueError(f"a {state.kind!r} state cannot run on the mixing cascade")
        if not state.tracers:
            z = np.zeros_like(self.wavelengths_nm)
            return OutletProduct(z, z.copy(), 0.0, 0.0, 0.0)
        prods = [self.product(t.conditions) for t in state.tracers]
        return mix_outlet(np.array([t.tanks[-1] for t in state.tracers]),
                          np.vstack([p[0] for p in prods]), np.vstack([p[1] for p in prods]),
                          qys=np.array([p[2] for p in prods]),
                          conversions=np.array([p[3] for p in prods]),
                          wl_nm=self.wavelengths_nm,
                          excitation_nm=self.config.detector.excitation_nm)


# ------------------------------------------------------------------------ transient cascade
#: Per-age-class fields (stacked ``(V, N, J)``): product mass, then sums of element values.
_BIN_FIELDS = ("m", "nuc", "xmax", "e_conv", "e_rip", "dep")
#: Per-tank fields ``(N,)``: birth values and exposures as sums, precursor and Zn/S left.
_TANK_FIELDS = ("birth_sq", "p_sq", "s_to_zn", "ln_p_sq", "alloy", "hot", "left", "left_core",
                "zns_left")
#: Exposure fields (per class, then per tank) in the order of the block generator's rates.
_EXPOSURES = ("e_conv", "e_rip", "dep", "alloy", "hot")


@dataclass(frozen=True, eq=False)
class _TankRates:
    """Per-tank rates of a layout that depend on its temperatures only (keyed as propagated).

    Attributes:
        core: Which tanks are in the core stage, ``(N,)``.
        a_conv: Arrhenius factor of In conversion, ``(N,)``.
        core_gas: Liquid fraction of the core tanks (1 in the shell), ``(N,)``.
        conv: Conversion exposure rate (core tanks), keyed.
        ripening: Ripening exposure rate (core tanks), keyed.
        alloy: Interface alloying exposure rate (shell tanks), keyed.
        hot: Squared hot-injection exposure rate (shell tanks), keyed.
        zns: Decay rate of the Zn/S dose (shell tanks with sulfur), keyed to 6 digits.
    """

    core: NDArray[np.bool_]
    a_conv: FloatArray
    core_gas: FloatArray
    conv: tuple[float, ...]
    ripening: tuple[float, ...]
    alloy: tuple[float, ...]
    hot: tuple[float, ...]
    zns: tuple[float, ...]


@lru_cache(maxsize=512)
def _exposure(tank_min: tuple[float, ...], rate: tuple[float, ...],
              dt_min: float) -> FloatArray:
    """Exact exposure propagator ``Ψ`` ``(N, N+1)`` of one sub-step.

    For a tracer ``c`` (``dc/dt = A c``, augmented by a constant inlet) and an exposure sum
    ``s`` with per-tank rate ``r`` (``ds/dt = A s + diag(r) c``), ``expm`` of the block
    generator ``[[A, 0], [diag(r), A]]`` gives ``s' = Φ s + Ψ c``.
    """
    a = _generator(tank_min)
    n1 = a.shape[0]
    g = np.zeros((2 * n1, 2 * n1))
    g[:n1, :n1] = a
    g[n1:, n1:] = a
    g[n1:2 * n1 - 1, :n1 - 1] = np.diag(rate)
    return np.asarray(expm(g * dt_min)[n1:2 * n1 - 1, :n1], dtype=np.float64)


@lru_cache(maxsize=512)
def _decay(tank_min: tuple[float, ...], rate: tuple[float, ...], dt_min: float) -> FloatArray:
    """Exact propagator ``(N, N+1)`` of an amount that flows and decays at ``rate`` per tank."""
    a = _generator(tank_min)
    return np.asarray(expm((a - np.diag([*rate, 0.0])) * dt_min)[:len(rate)], dtype=np.float64)


def _transport(tank_min: tuple[float, ...], rates: tuple[tuple[float, ...], ...],
               decays: tuple[tuple[float, ...], ...],
               dt_min: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Exact propagators of one sub-step.

    Returns ``Φ`` ``(N, N+1)``, ``Ψ`` ``(K, N, N+1)`` (one per exposure rate) and the decays
    ``(D, N, N+1)``. Each piece is cached on its own, so a feed whose temperatures hold reuses
    all but the state-dependent ones.
    """
    phi = _propagator(tank_min, dt_min)
    psi = np.stack([_exposure(tank_min, r, dt_min) for r in rates])
    dec = np.stack([_decay(tank_min, d, dt_min) for d in decays])
    return phi, psi, dec


class TransientCascade:
    """The twin's chemistry resolved in time: what every fluid element in the cascade went through.

    Each tank holds product binned by *core age* (time spent in core-stage tanks, classes
    ``bin_min`` wide, the last class open-ended). Per class and tank it carries the product
    mass and the sums of what its elements were born with (nuclei count, convertible In) and
    what they accumulated: the Arrhenius exposure of In conversion and of ripening in the core
    tanks, and the In deposited on them in the shell tanks. Per tank it carries the precursor
    still unreacted, the Zn/S shell dose still undeposited, the interface exposures and the
    feed ratios. All of these obey the tanks-in-series balances with each tank's own
    temperature and the feeds (sulfur where it is injected), and a step integrates them
    exactly over sub-steps (one block matrix exponential, cached while the inputs hold).

    At constant conditions this settles on the twin's steady state (:mod:`autolab.twin.model`)
    up to the width of the age classes (docs/twin.md gives the equations and the error).

    Args:
        config: The twin (reactor, chemistry, optics).
        bin_min: Width of a core-age class, min (also the longest sub-step).
        max_core_age_min: Core age of the last (open-ended) class, min.
    """

    kind = "transient"

    def __init__(self, config: TwinConfig | None = None, *, bin_min: float = 0.5,
                 max_core_age_min: float = 240.0) -> None:
        self.config = config or TwinConfig()
        if not (bin_min > 0 and max_core_age_min > bin_min):
            raise ConditionsError("bin_min", bin_min, f"(0, {max_core_age_min:g}) min")
        self.bin_min = float(bin_min)
        self.n_bins = math.ceil(max_core_age_min / bin_min) + 1
        self.n_tanks = self.config.n_core_tanks + self.config.n_shell_tanks
        d = self.config.detector
        self.wavelengths_nm: FloatArray = np.linspace(d.wavelength_min_nm, d.wavelength_max_nm,
                                                      d.n_pixels)
        self._memo: tuple[CascadeState, OutletProduct] | None = None
        self._fixed: dict[tuple[object, ...], _TankRates] = {}
        self._layouts: dict[TankInputs, Layout] = {}
        self._born: dict[tuple[Conditions, bytes], Mapping[str, float]] = {}

    # -------------------------------------------------------------------------- state
    def initial(self) -> CascadeState:
        """Clean solvent in every tank."""
        n, j = self.n_tanks, self.n_bins
        fields: dict[str, FloatArray] = {"bins": np.zeros((len(_BIN_FIELDS), n, j))}
        fields.update({k: np.zeros(n) for k in _TANK_FIELDS})
        fields["carry_min"] = np.zeros(1)
        return CascadeState(kind=self.kind, fields=fields)

    def _check(self, state: CascadeState) -> None:
        if state.kind != self.kind:
            raise ValueError(f"a {state.kind!r} state cannot run on the transient cascade")
        shape = (len(_BIN_FIELDS), self.n_tanks, self.n_bins)
        got = np.shape(state.fields["bins"]) if "bins" in state.fields else ()
        if got != shape:
            raise ValueError(f"transient state has bins of shape {got}, expected {shape} "
                             "(another reactor or class width)")

    # -------------------------------------------------------------------------- physics
    def _layout(self, inputs: TankInputs) -> Layout:
        """``inputs.layout`` at any realized temperature, cached per inputs (steps repeat them).

        The cached layouts' arrays are only read (rates, transport), never written.
        """
        return _memo(self._layouts, inputs, lambda: inputs.layout(self.config, in_range=False))

    def _births(self, feed: Conditions, temps_c: FloatArray) -> Mapping[str, float]:
        """What an element entering now is born with (per unit product; cached per feed)."""
        return _memo(self._born, (feed, temps_c[:1].tobytes()),
                     lambda: MappingProxyType(self._birth_values(feed, temps_c)))

    def _birth_values(self, feed: Conditions, temps_c: FloatArray) -> dict[str, float]:
        chem = self.config.chemistry
        c = ConditionArrays.from_conditions([feed])
        t1 = temps_c[:1]
        birth_sq, p_sq = birth_spread_sq(c, chem, t1, np.array([feed.stir_rpm]))
        return {"nuc": float(nuclei_rel(c, chem, t1)[0]),
                "xmax": min(1.0, feed.p_to_in / chem.p_stoich),
                "birth_sq": float(birth_sq[0]), "p_sq": float(p_sq[0]),
                "s_to_zn": feed.s_to_zn,
                "ln_p_sq": math.log(feed.p_to_in / chem.p_opt) ** 2,
                "left": 1.0, "left_core": 1.0, "zns_left": 1.0}

    def _fixed_rates(self, lay: Layout) -> _TankRates:
        """The rates of ``lay`` that follow from its temperatures alone (cached per layout).

        A step holds its inputs over every sub-step, and a feed holds its temperatures over
        many steps, so the Arrhenius factors and their cache keys are derived once per
        distinct (stage split, temperatures, sulfur shares), not once per sub-step.
        """
        t = lay.temps_c
        key = (lay.n_core, t.dtype.str, t.tobytes(), lay.sulfur.dtype.str, lay.sulfur.tobytes())
        return _memo(self._fixed, key, lambda: self._tank_rates(lay))

    def _tank_rates(self, lay: Layout) -> _TankRates:
        """What :meth:`_fixed_rates` caches."""
        t = lay.temps_c
        chem = self.config.chemistry
        core = np.arange(self.n_tanks) < lay.n_core
        gas = (1.0 - chem.gas_volume_fraction) if self.config.orientation == "horizontal" \
            else 1.0
        a_conv = arrhenius(1.0, chem.ea_conv_kj_mol, t, chem.t_ref_core_c)
        shell = ~core
        k_s = arrhenius(chem.k_shell_ref_per_min, chem.ea_shell_kj_mol, t, chem.t_ref_shell_c)
        return _TankRates(
            core=core, a_conv=a_conv, core_gas=np.where(core, gas, 1.0),
            conv=_key(np.where(core, a_conv * gas, 0.0)),
            ripening=_key(np.where(core, arrhenius(chem.k_ripening_ref_per_min,
                                                   chem.ea_ripening_kj_mol, t,
                                                   chem.t_ref_core_c) * gas, 0.0)),
            alloy=_key(np.where(shell, arrhenius(1.0, chem.ea_alloy_kj_mol, t,
                                                 chem.t_ref_shell_c), 0.0)),
            hot=_key(np.where(shell, arrhenius(1.0, chem.ea_hot_kj_mol, t,
                                               chem.t_ref_shell_c) ** 2, 0.0)),
            zns=_key(np.where(shell, k_s * lay.sulfur, 0.0), 6))

    def _rates(self, lay: Layout, fields: Mapping[str, FloatArray]) -> tuple[
            tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
        """Per-tank exposure and decay rates under ``lay`` and the tanks' present contents.

        Exposures in :data:`_EXPOSURES` order; decays of ``left`` (precursor, every tank),
        ``left_core`` (precursor, core tanks only: what reaches the shell stage) and
        ``zns_left`` (shell dose, where sulfur is present).
        """
        chem = self.config.chemistry
        fixed = self._fixed_rates(lay)
        core = fixed.core
        bins = fields["bins"]
        mass = bins[0].sum(axis=1)
        safe = np.where(mass > 1e-12, mass, 1.0)
        nuc = np.where(mass > 1e-12, bins[1].sum(axis=1) / safe, 1.0)
        xmax = np.where(mass > 1e-12, bins[2].sum(axis=1) / safe, 0.0)
        k = chem.k_conv_ref_per_min * nuc ** chem.surface_rate_exponent * fixed.a_conv \
            * fixed.core_gas
        left = np.where(mass > 1e-12, fields["left"] / safe, 0.0)
        dep = np.where(core, 0.0, chem.shell_growth_fraction * k * left * xmax)
        # rates that follow the tanks' contents are keyed to 6 digits, so a settled feed
        # reuses its propagators (1e-6 relative in a rate is far below the model's accuracy)
        keyed = (fixed.conv, fixed.ripening, _key(dep, 6), fixed.alloy, fixed.hot)
        return keyed, (_key(k, 6), _key(np.where(core, k, 0.0), 6), fixed.zns)

    def step(self, state: CascadeState, inputs: TankInputs, dt_min: float) -> CascadeState:
        """Integrate the cascade over ``dt_min`` of constant inputs (exact sub-steps)."""
        self._check(state)
        _check_dt(dt_min)
        # realized temperatures are physics: a feed into tanks still heating runs (slowly)
        lay = self._layout(inputs)
        if lay.n_core + len(lay.temps_c) - lay.n_core != self.n_tanks:
            raise ConditionsError("t_tank_c", len(lay.temps_c), f"{self.n_tanks} tanks")
        fields = {k: np.array(v, dtype=np.float64) for k, v in state.fields.items()}
        births = self._births(lay.feed, lay.temps_c) if lay.feed is not None else None
        n_sub = max(1, math.ceil(dt_min / self.bin_min - 1e-9)) if dt_min > 0 else 0
        dt = dt_min / n_sub if n_sub else 0.0
        with one_blas_thread():
            for _ in range(n_sub):
                self._substep(fields, lay, births, dt)
        return CascadeState(self.kind, state.t_min + dt_min, fields=fields)

    def _substep(self, f: dict[str, FloatArray], lay: Layout,
                 births: Mapping[str, float] | None,
                 dt: float) -> None:
        """One exact sub-step in place, then the core-age classes move on when due."""
        if lay.flowing or f["bins"][0].any():
            rates, decays = self._rates(lay, f)
            props = _transport(_key(lay.tank_min), rates, decays, float(dt))
            self._advance(f, props, births if lay.flowing else None, lay.inlet)
        f["carry_min"][0] += dt
        if f["carry_min"][0] >= self.bin_min - 1e-9:
            f["carry_min"][0] -= self.bin_min
            bins = f["bins"]
            nc = lay.n_core
            bins[:, :nc, -1] += bins[:, :nc, -2]
            bins[:, :nc, 1:-1] = bins[:, :nc, :-2]
            bins[:, :nc, 0] = 0.0

    def _advance(self, f: dict[str, FloatArray], props: tuple[FloatArray, FloatArray,
                                                              FloatArray],
                 births: Mapping[str, float] | None, inlet: float) -> None:
        """Apply one sub-step's propagators ``(Φ, Ψ, decays)`` to every field, in place."""
        phi, psi, dec = props
        n = self.n_tanks
        bins = f["bins"]
        occupied = np.flatnonzero(bins[0].any(axis=0))
        top = min(self.n_bins, (int(occupied[-1]) + 1 if len(occupied) else 0) + 1)
        if births is None:
            inlet = 0.0
        top = max(top, 1)
        b = bins[:, :, :top]
        m = b[0].copy()
        mass = bins[0].sum(axis=1)
        new = np.matmul(phi[:, :n], b)  # every class field moves with the fluid
        ex = {name: i for i, name in enumerate(_EXPOSURES)}
        for name in ("e_conv", "e_rip", "dep"):
            new[_BIN_FIELDS.index(name)] += psi[ex[name], :, :n] @ m
        if inlet > 0 and births is not None:
            into = phi[:, n] * inlet
            new[0, :, 0] += into
            new[1, :, 0] += into * births["nuc"]
            new[2, :, 0] += into * births["xmax"]
            for name in ("e_conv", "e_rip", "dep"):
                new[_BIN_FIELDS.index(name), :, 0] += psi[ex[name], :, n] * inlet
        bins[:, :, :top] = new
        for name in ("alloy", "hot"):
            f[name] = phi[:, :n] @ f[name] + psi[ex[name], :, :n] @ mass \
                + (psi[ex[name], :, n] * inlet if births is not None else 0.0)
        for name in ("birth_sq", "p_sq", "s_to_zn", "ln_p_sq"):
            f[name] = phi[:, :n] @ f[name] + (phi[:, n] * inlet * births[name]
                                              if births is not None else 0.0)
        for i, name in enumerate(("left", "left_core", "zns_left")):
            f[name] = dec[i, :, :n] @ f[name] + (dec[i, :, n] * inlet
                                                 if births is not None else 0.0)

    # -------------------------------------------------------------------------- outlet
    def tank_states(self, state: CascadeState, tank: int = -1) -> tuple[CoreState, ShellState,
                                                                         float]:
        """Core and shell state of the product in one tank, and its concentration.

        ``tank`` is 0-based (default the last); the concentration is relative to steady state.
        """
        self._check(state)
        chem = self.config.chemistry
        f = state.fields
        bins = np.asarray(f["bins"])[:, tank, :]
        m = bins[0]
        mass = float(m.sum())
        keep = m > 1e-12 * max(mass, 1e-300)
        if mass <= 1e-12 or not keep.any():
            core = CoreState(*(np.full(1, v) for v in (chem.seed_edge_a, 0.0, 0.0, 1.0, 0.0)))
            return core, bare_shell(1), 0.0
        mk = m[keep]
        per = {name: bins[i][keep] / mk for i, name in enumerate(_BIN_FIELDS) if i}
        k = chem.k_conv_ref_per_min * per["nuc"] ** chem.surface_rate_exponent
        conv = per["xmax"] * -np.expm1(-k * per["e_conv"]) + per["dep"]

        def mean(name: str) -> FloatArray:
            return np.array([float(np.asarray(f[name])[tank]) / mass])

        residual = np.clip(mean("left_core"), 0.0, 1.0)
        horizontal = self.config.orientation == "horizontal"
        core = core_ensemble(conv[None, :], per["e_rip"][None, :], (mk / mk.sum())[None, :],
                             nuc=per["nuc"][None, :], birth_sq=mean("birth_sq"),
                             p_sq=mean("p_sq"), cv_gas=chem.gas_cv if horizontal else 0.0,
                             residual=residual, chem=chem)
        shell = shell_from_exposures(np.clip(1.0 - mean("zns_left"), 0.0, 1.0), mean("alloy"),
                                     mean("hot"), s_to_zn=mean("s_to_zn"),
                                     ln_p_sq=mean("ln_p_sq"), residual=residual, chem=chem)
        return core, shell, mass

    def outlet(self, state: CascadeState) -> OutletProduct:
        """The product in the last tank as the outlet cell sees it.

        The last answer is kept: a rig reads several frames (dark, blank, sample, emission)
        of one state, and a step always returns a new state object.
        """
        if self._memo is not None and self._memo[0] is state:
            return self._memo[1]
        out = self._outlet(state)
        self._memo = (state, out)
        return out

    def _outlet(self, state: CascadeState) -> OutletProduct:
        cfg = self.config
        core, shell, conc = self.tank_states(state)
        wl = self.wavelengths_nm
        if conc <= 0:
            z = np.zeros_like(wl)
            return OutletProduct(z, z.copy(), 0.0, 0.0, 0.0)
        a = (cfg.optics.absorbance_1s_full * core.conversion[0] * conc
             * absorbance_shape(wl, core, shell, cfg.chemistry, cfg.optics)[0])
        em = emission_per_nm(wl, core, shell, cfg.chemistry, cfg.optics)[0]
        return OutletProduct(absorbance=np.asarray(a, dtype=np.float64),
                             emission_per_nm=np.asarray(em, dtype=np.float64),
                             qy=float(shell.qy_band[0] + shell.qy_trap[0]),
                             conversion=float(core.conversion[0]), concentration_rel=conc)

    def steady_product(self, conditions: Conditions) -> tuple[FloatArray, FloatArray, float,
                                                                float]:
        """The twin's steady product of a feed (closed form; what the transient settles on)."""
        return steady_spectra(conditions, self.config, self.wavelengths_nm)
