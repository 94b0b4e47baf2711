"""Map an outlet time to the conditions that made the fluid leaving then (CSTR-cascade RTD).

The fluid at the outlet at time *t* is a mixture of elements with different histories. An element
entered tank 1 at ``t_c``, passed the core stage, entered the shell stage (where the shell feed
joins) at ``t_s`` and left at *t*. Its ages in the two stages are Erlang distributed (ideal
tanks-in-series, which the seed paper's tracer measurements confirm for this cascade), but in
*flow-weighted* time, not clock time: with a residence time that changes during a ramp, a stage
of ``N`` equal tanks is time-invariant in ``θ(t) = ∫ dt'/τ(t')`` (the volume that has flowed
through it over its volume), so ``θ(t) - θ(t_s)`` is Erlang(N) with mean 1 whatever the flows did
(Waldron et al., React. Chem. Eng. 2019, map plug-flow ramps the same way).

For every element the conditions it experienced follow from its path and each channel's role
(:mod:`autolab.dynamic.channels`): a feed ratio is the value at its entry, a stage temperature the
average over its clock time in the stage, a residence time its clock time in the stage over its
flow-weighted time. :func:`map_outlet` averages over the joint RTD of the two stages (a quantile
grid of each Erlang, so ramps with kinks are integrated without bias) and returns, per outlet
time, the RTD-weighted mean conditions and their spread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from autolab.dynamic.channels import Role, base_name, flatten, role_of, tank_index, unflatten
from autolab.dynamic.trajectory import Trajectory
from autolab.exceptions import ConfigError
from autolab.records import Conditions

if TYPE_CHECKING:
    from autolab.twin.config import TwinConfig

FloatArray = NDArray[np.float64]

#: Quantile nodes per stage age (the joint grid has the square of this many paths).
N_NODES = 32
#: Fine time-grid steps per shortest per-tank residence time (cumulative integrals).
STEPS_PER_TANK_TIME = 40
#: Largest fine time grid, points (bounds memory for very long trajectories).
MAX_GRID = 200_000


@dataclass(frozen=True)
class CascadeGeometry:
    """Tanks of the two stages: all the mapping needs to know about the reactor.

    The tank volume cancels out: what matters is each tank's share of its stage's residence
    time. Equal tanks share it equally; a sulfur feed split over several shell tanks makes the
    tanks before the last injection point hold the fluid longer (fewer feeds have joined), so
    their shares are larger and sum to more than 1 (:meth:`for_twin` takes them from the flow
    plan). The shares stay fixed along a trajectory: the injection layout cannot be ramped, and
    each tank's time scales with its stage's residence time.

    Attributes:
        n_core_tanks: Tanks before the sulfur injection (core stage).
        n_shell_tanks: Tanks from the injection on (shell stage).
        core_fractions: Each core tank's mean time over ``tau_core_min``; empty: ``1/n`` each.
        shell_fractions: Each shell tank's mean time over ``tau_shell_min``; empty: ``1/n`` each.
    """

    n_core_tanks: int
    n_shell_tanks: int
    core_fractions: tuple[float, ...] = ()
    shell_fractions: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("n_core_tanks", "n_shell_tanks"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"CascadeGeometry.{name}: expected a positive integer, "
                                  f"got {v!r}")
        for name, n in (("core_fractions", self.n_core_tanks),
                        ("shell_fractions", self.n_shell_tanks)):
            fr = tuple(float(x) for x in getattr(self, name))
            object.__setattr__(self, name, fr)
            if fr and (len(fr) != n or not all(0 < x < math.inf for x in fr)):
                raise ConfigError(f"CascadeGeometry.{name}: expected {n} positive shares, "
                                  f"got {list(fr)}")

    @classmethod
    def for_twin(cls, config: TwinConfig, conditions: Conditions) -> CascadeGeometry:
        """The geometry of the twin's cascade for the conditions' injection layout.

        Raises:
            ConditionsError: An injection layout this cascade cannot realize.
        """
        from autolab.twin.cascade import stage_tanks, tank_times_min  # noqa: PLC0415

        n_core, n_shell = stage_tanks(conditions, config)
        times = tank_times_min(conditions, config)
        return cls(n_core, n_shell, tuple(times[:n_core] / conditions.tau_core_min),
                   tuple(times[n_core:] / conditions.tau_shell_min))

    def fractions(self, stage: str) -> tuple[float, ...]:
        """Per-tank shares of ``"core"`` or ``"shell"`` (equal shares when not given)."""
        n, given = ((self.n_core_tanks, self.core_fractions) if stage == "core"
                    else (self.n_shell_tanks, self.shell_fractions))
        return given or (1.0 / n,) * n

    def for_conditions(self, conditions: Conditions) -> CascadeGeometry:
        """The split the conditions choose: ``s_inject_tank`` k > 0 makes k - 1 core tanks.

        A geometry with explicit shares was made for its conditions (:meth:`for_twin`) and is
        returned as it is.
        """
        k = int(getattr(conditions, "s_inject_tank", 0) or 0)
        total = self.n_core_tanks + self.n_shell_tanks
        if k <= 0 or self.core_fractions or self.shell_fractions:
            return self
        if not 2 <= k <= total:
            raise ConfigError(f"s_inject_tank: expected a tank in [2, {total}], got {k}")
        return CascadeGeometry(k - 1, total - k + 1)


@dataclass(frozen=True, eq=False)
class MappedConditions:
    """RTD-weighted conditions behind each outlet time of a trajectory.

    Attributes:
        times_min: Outlet times since the trajectory started, ``(T,)``, min.
        channels: Channel names, ``(C,)``.
        mean: RTD-weighted mean of each channel, ``(T, C)``.
        sd: Its RTD-weighted standard deviation (spread), ``(T, C)``.
        before_start: Fraction of the outlet fluid that entered before time 0, ``(T,)``.
        mean_age_min: Mean clock time the outlet fluid spent in the cascade, ``(T,)``, min.
        template: Conditions whose integer (topology) fields the mapped conditions keep.
    """

    times_min: FloatArray
    channels: tuple[str, ...]
    mean: FloatArray
    sd: FloatArray
    before_start: FloatArray
    mean_age_min: FloatArray
    template: Conditions = field(repr=False)

    def __len__(self) -> int:
        return int(self.times_min.shape[0])

    def conditions(self, i: int) -> Conditions:
        """Mean conditions behind outlet time ``i``."""
        return unflatten(self.template, {c: float(v) for c, v in
                                         zip(self.channels, self.mean[i], strict=True)})

    def spread(self, i: int) -> dict[str, float]:
        """Channel -> spread (one standard deviation over the RTD) behind outlet time ``i``."""
        return {c: float(v) for c, v in zip(self.channels, self.sd[i], strict=True)}


@dataclass(frozen=True, eq=False)
class _Paths:
    """Element paths behind each outlet time: ``t`` (T,1,1), ``ts`` (T,M,1), ``tc`` (T,M,M)."""

    t: FloatArray
    ts: FloatArray
    tc: FloatArray
    a_shell: FloatArray
    a_core: FloatArray
    grid: FloatArray
    theta_core: FloatArray
    theta_shell: FloatArray
    geometry: CascadeGeometry


def erlang_quantile_nodes(n_tanks: int, n_nodes: int = N_NODES) -> FloatArray:
    """Equal-mass nodes of Erlang(``n_tanks``) with mean 1: midpoints of ``n_nodes`` quantiles.

    Each node carries weight ``1/n_nodes``. Unlike Gauss quadrature this does not assume a
    smooth integrand, and a ramp's corners make the path averages only piecewise smooth.
    """
    return stage_age_nodes((1.0 / n_tanks,) * n_tanks, n_nodes)


@lru_cache(maxsize=64)
def stage_age_nodes(fractions: tuple[float, ...], n_nodes: int = N_NODES) -> FloatArray:
    """Equal-mass nodes of a stage's age (in stage residence times) for tanks of these shares.

    Equal shares give an Erlang distribution (inverse regularized gamma). Unequal ones give a sum
    of exponentials, whose distribution function is the last tank's response to a unit step in
    the tanks-in-series transport (:func:`autolab.twin.transient.transport_matrix`), stepped
    with one exact propagator on a fine grid.
    """
    from scipy.special import gammaincinv  # noqa: PLC0415 - keeps `import autolab.dynamic` light

    q = (np.arange(n_nodes) + 0.5) / n_nodes
    n = len(fractions)
    if max(fractions) - min(fractions) <= 1e-12 * max(fractions):
        return _frozen(gammaincinv(n, q) * fractions[0])
    from scipy.linalg import expm  # noqa: PLC0415

    from autolab.twin.transient import transport_matrix  # noqa: PLC0415

    steps = 8000
    x_max = 14.0 * float(sum(fractions)) + 10.0 * max(fractions)
    dx = x_max / steps
    prop = expm(transport_matrix(tuple(fractions)) * dx)
    state = np.zeros(n + 1)
    state[n] = 1.0  # unit inlet from x = 0
    cdf = np.empty(steps + 1)
    cdf[0] = 0.0
    for j in range(1, steps + 1):
        state = prop @ state
        cdf[j] = state[n - 1]
    return _frozen(np.interp(q, cdf, np.linspace(0.0, x_max, steps + 1)))


def _frozen(x: FloatArray) -> FloatArray:
    """A read-only float array (cached results are shared between callers)."""
    out = np.array(x, dtype=np.float64)
    out.setflags(write=False)
    return out


def map_outlet(trajectory: Trajectory, times_min: FloatArray, geometry: CascadeGeometry, *,
               outlet_delay_min: float = 0.0, n_nodes: int = N_NODES,
               roles: Mapping[str, Role] | None = None) -> MappedConditions:
    """RTD-weighted mean conditions and their spread behind each outlet time.

    Args:
        trajectory: The conditions run, as functions of time since its start.
        times_min: Outlet (spectrum) times since the trajectory started, ``(T,)``, min.
        geometry: The cascade's tank counts (the conditions' injection tank overrides the split).
        outlet_delay_min: Transfer time from the last tank to the optical cell (plug flow), min.
        n_nodes: Quantile nodes per stage age.
        roles: Channel or field -> role, overriding :data:`~autolab.dynamic.channels.ROLES`
            for a physics that treats a condition differently (a tracer model that labels each
            product with the conditions at its feed time: every channel ``CARRIED_CORE``).

    Returns:
        The mapped conditions, one row per outlet time.

    Raises:
        ConfigError: Empty or non-finite times, a negative delay.
    """
    t = np.asarray(times_min, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.all(np.isfinite(t)):
        raise ConfigError(f"map_outlet times_min: expected finite outlet times, got {t.size} "
                          "values with non-finite ones" if t.size else
                          "map_outlet times_min: expected at least one outlet time")
    if not math.isfinite(outlet_delay_min) or outlet_delay_min < 0:
        raise ConfigError(f"map_outlet outlet_delay_min: expected a non-negative time, got "
                          f"{outlet_delay_min!r}")
    geo = geometry.for_conditions(trajectory.points[0])
    paths = _paths(trajectory, t - outlet_delay_min, geo, n_nodes)
    channels = trajectory.channels()
    varying = set(trajectory.varying())
    mean = np.empty((t.size, len(channels)))
    sd = np.zeros((t.size, len(channels)))
    for j, ch in enumerate(channels):
        if ch not in varying:
            mean[:, j] = flatten(trajectory.points[0])[ch]
            continue
        role = (roles or {}).get(ch) or (roles or {}).get(base_name(ch)) or role_of(ch)
        x = np.broadcast_to(_ROLE_VALUES[role](trajectory, ch, paths), paths.tc.shape)
        mean[:, j] = x.mean(axis=(1, 2))
        sd[:, j] = np.sqrt(((x - mean[:, j, None, None]) ** 2).mean(axis=(1, 2)))
    return MappedConditions(
        times_min=t, channels=channels, mean=mean, sd=sd,
        before_start=np.asarray((paths.tc < 0).mean(axis=(1, 2)), dtype=np.float64),
        mean_age_min=np.asarray((paths.t - paths.tc).mean(axis=(1, 2)) + outlet_delay_min,
                                dtype=np.float64),
        template=trajectory.points[0])


def _paths(trajectory: Trajectory, t: FloatArray, geo: CascadeGeometry, n_nodes: int) -> _Paths:
    a_s = stage_age_nodes(geo.fractions("shell"), n_nodes)
    a_c = stage_age_nodes(geo.fractions("core"), n_nodes)
    grid = _time_grid(trajectory, t, geo, float(a_s[-1] + a_c[-1]))
    theta_c = _theta(trajectory, "tau_core_min", grid)
    theta_s = _theta(trajectory, "tau_shell_min", grid)
    th_t = np.interp(t, grid, theta_s)
    ts = np.interp(th_t[:, None] - a_s[None, :], theta_s, grid)
    th_ts = np.interp(ts, grid, theta_c)
    tc = np.interp(th_ts[:, :, None] - a_c[None, None, :], theta_c, grid)
    return _Paths(t=t[:, None, None], ts=ts[:, :, None], tc=tc, a_shell=a_s[None, :, None],
                  a_core=a_c[None, None, :], grid=grid, theta_core=theta_c,
                  theta_shell=theta_s, geometry=geo)


def _time_grid(trajectory: Trajectory, t: FloatArray, geo: CascadeGeometry,
               max_age: float) -> FloatArray:
    """A fine clock grid that reaches back past the oldest element of the earliest outlet."""
    span = np.concatenate([[0.0], np.asarray(trajectory.times_min), t])
    taus = [trajectory.values(n, span) for n in ("tau_core_min", "tau_shell_min")]
    lo = float(t.min()) - 1.05 * max_age * float(max(taus[0].max(), taus[1].max()))
    hi = max(float(t.max()), 0.0)
    tank_min = min(float(taus[0].min()) / geo.n_core_tanks,
                   float(taus[1].min()) / geo.n_shell_tanks)
    n = int(min(MAX_GRID, max(2000, (hi - lo) / tank_min * STEPS_PER_TANK_TIME)))
    inner = [x for x in trajectory.times_min if lo < x < hi]
    return np.unique(np.concatenate([np.linspace(lo, hi, n), inner]))


def _theta(trajectory: Trajectory, tau_channel: str, grid: FloatArray) -> FloatArray:
    """Flow-weighted time ``θ(t) = ∫ dt/τ`` on the grid (θ = 0 at the grid's start)."""
    rate = 1.0 / trajectory.values(tau_channel, grid)
    return _cumulative(rate, grid)


def _cumulative(y: FloatArray, grid: FloatArray) -> FloatArray:
    steps = 0.5 * (y[1:] + y[:-1]) * np.diff(grid)
    return np.concatenate([[0.0], np.cumsum(steps)])


def _window_average(trajectory: Trajectory, channel: str, paths: _Paths, start: FloatArray,
                    stop: FloatArray) -> FloatArray:
    """Clock-time average of a channel over ``[start, stop]`` (broadcast arrays)."""
    x = trajectory.values(channel, paths.grid)
    cum = _cumulative(x, paths.grid)
    width = np.maximum(stop - start, 1e-12)
    avg = (np.interp(stop, paths.grid, cum) - np.interp(start, paths.grid, cum)) / width
    return np.asarray(avg, dtype=np.float64)


def _carried_core(tr: Trajectory, ch: str, p: _Paths) -> FloatArray:
    return tr.values(ch, p.tc)


def _carried_shell(tr: Trajectory, ch: str, p: _Paths) -> FloatArray:
    return tr.values(ch, p.ts)


def _ambient_core(tr: Trajectory, ch: str, p: _Paths) -> FloatArray:
    return _window_average(tr, ch, p, p.tc, np.broadcast_to(p.ts, p.tc.shape))


def _ambient_shell(tr: Trajectory, ch: str, p: _Paths) -> FloatArray:
    return _window_average(tr, ch, p, p.ts, np.broadcast_to(p.t, p.ts.shape))


def _ambient_all(tr: Trajectory, ch: str, p: _Paths) -> FloatArray:
    return _window_average(tr, ch, p, p.tc, np.broadcast_to(p.t, p.tc.shape))


def _flow_core(tr: Trajectory, ch: str, p: _Paths) -> FloatArray:
    return np.asarray((p.ts - p.tc) / p.a_core, dtype=np.float64)


def _flow_shell(tr: Trajectory, ch: str, p: _Paths) -> FloatArray:
    return np.asarray((p.t - p.ts) / p.a_shell, dtype=np.float64)


def _ambient_tank(tr: Trajectory, ch: str, p: _Paths) -> FloatArray:
    """One tank's temperature over the element's expected share of its stage time in that tank.

    Given an element's flow-weighted time in a stage, its expected time in each tank is that
    tank's share of the stage's mean time, so tank ``k`` covers the ``k``-th slice of the
    element's stage residence, sized by the shares.
    """
    i = tank_index(ch)
    n_core = p.geometry.n_core_tanks
    if i <= n_core:
        theta, fr, k = p.theta_core, p.geometry.fractions("core"), i
        entry, age = np.interp(p.tc, p.grid, theta), p.a_core
    else:
        theta, fr, k = p.theta_shell, p.geometry.fractions("shell"), i - n_core
        entry, age = np.interp(p.ts, p.grid, theta), p.a_shell
    cum = np.concatenate([[0.0], np.cumsum(fr)]) / float(np.sum(fr))
    start = np.interp(entry + age * cum[k - 1], theta, p.grid)
    stop = np.interp(entry + age * cum[k], theta, p.grid)
    return _window_average(tr, ch, p, start, stop)


_ROLE_VALUES: dict[Role, Callable[[Trajectory, str, _Paths], FloatArray]] = {
    Role.CARRIED_CORE: _carried_core,
    Role.CARRIED_SHELL: _carried_shell,
    Role.AMBIENT_CORE: _ambient_core,
    Role.AMBIENT_SHELL: _ambient_shell,
    Role.AMBIENT_ALL: _ambient_all,
    Role.FLOW_CORE: _flow_core,
    Role.FLOW_SHELL: _flow_shell,
    Role.AMBIENT_TANK: _ambient_tank,
}


def age_sd_min(conditions: Conditions, geometry: CascadeGeometry) -> float:
    """Standard deviation of the total residence time at constant conditions, min.

    ``sqrt(Σ τ_k²)`` over the tanks (``τ_core²/N_core + τ_shell²/N_shell`` for equal tanks): a
    channel ramped at rate *r* is spread over the outlet's RTD by about ``r`` times this, the scale
    the ramp-rate caps of the mapping use.
    """
    geo = geometry.for_conditions(conditions)
    core = np.asarray(geo.fractions("core")) * conditions.tau_core_min
    shell = np.asarray(geo.fractions("shell")) * conditions.tau_shell_min
    return math.sqrt(float(np.sum(core ** 2) + np.sum(shell ** 2)))
