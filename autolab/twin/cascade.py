"""The CSTR cascade as a flow system: flows, residence-time distribution, washout, temperatures.

Pure functions. The cascade is ``n_core`` tanks (core stage, In/halide feed + aminophosphine into
tank 1) followed by ``n_shell`` tanks (shell stage, Zn/S feed into the first shell tank), all of
``tank_volume_ml``. Each stage is a tanks-in-series system with per-tank time ``tau/N``
(Levenspiel): E(t) is the Erlang density, mean ``tau``, variance ``tau²/N``.

The core and shell residence times are independent inputs, so the flows do not always match at
the junction: when the core stream is larger than the shell stage needs, a diverter bleeds the
excess cores to waste; when it is smaller, octadecene make-up is added with the shell feed.

The optional conditions of :class:`~autolab.records.Conditions` reshape the cascade
(:func:`tank_plan`): ``s_inject_tank`` moves the junction (the tanks before it are the core
stage, so the stage sizes change while ``tau_core_min``/``tau_shell_min`` stay the stage
residence times), ``s_inject_count`` splits the shell feed over consecutive tanks (the flow grows
tank by tank, so those tanks hold the fluid longer), and ``t_tank_c`` sets single tanks'
temperatures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import expm
from scipy.special import gammainc, gammaln

from autolab.exceptions import ConditionsError
from autolab.records import Conditions, tank_temperature_name
from autolab.twin.chemistry import TankProfile
from autolab.twin.config import TwinConfig

FloatArray = NDArray[np.float64]


def erlang_pdf(t_min: FloatArray, tau_min: float, n_tanks: int) -> FloatArray:
    """Residence-time density E(t) of ``n_tanks`` ideal CSTRs in series, 1/min.

    Args:
        t_min: Times, any shape, min (negative times give 0).
        tau_min: Mean residence time of the whole series, min.
        n_tanks: Number of tanks N (per-tank time ``tau/N``).
    """
    t = np.maximum(np.asarray(t_min, dtype=np.float64), 0.0)
    ti = tau_min / n_tanks
    with np.errstate(divide="ignore"):
        log_e = ((n_tanks - 1) * np.log(t) - t / ti - gammaln(n_tanks) - n_tanks * math.log(ti))
    out = np.exp(log_e)
    if n_tanks == 1:
        out = np.where(t == 0, 1.0 / ti, out)
    return np.asarray(out, dtype=np.float64)


def erlang_cdf(t_min: FloatArray, tau_min: float, n_tanks: int) -> FloatArray:
    """Cumulative F(t): fraction of the fluid that has left within ``t`` (same args)."""
    t = np.maximum(np.asarray(t_min, dtype=np.float64), 0.0)
    return np.asarray(gammainc(n_tanks, t * n_tanks / tau_min), dtype=np.float64)


@dataclass(frozen=True)
class FlowPlan:
    """Pump flows that realize one set of residence times, mL/min.

    Attributes:
        core_ml_min: Flow through the core stage.
        shell_ml_min: Flow through the shell stage.
        indium_halide_ml_min: In/Zn halide feed (InCl3/ZnCl2/ZnI2 in oleylamine).
        phosphine_ml_min: Aminophosphine feed.
        shell_feed_ml_min: Zn/S shell feed.
        makeup_ml_min: Octadecene make-up at the junction (core stream too small).
        bleed_ml_min: Core stream diverted to waste at the junction (core stream too large).
    """

    core_ml_min: float
    shell_ml_min: float
    indium_halide_ml_min: float
    phosphine_ml_min: float
    shell_feed_ml_min: float
    makeup_ml_min: float
    bleed_ml_min: float

    def reagent_ml(self, minutes: float) -> dict[str, float]:
        """Volumes consumed by running these flows for ``minutes``, mL by reagent."""
        return {
            "indium_halide": self.indium_halide_ml_min * minutes,
            "phosphine": self.phosphine_ml_min * minutes,
            "shell_zn_s": self.shell_feed_ml_min * minutes,
            "solvent": self.makeup_ml_min * minutes,
        }


#: Stirring rate range the simulated reactor's motors cover, rpm (envelope).
STIR_RPM_RANGE = (50.0, 2000.0)
#: Temperature range one tank's block reaches, °C (envelope of a per-tank temperature).
TANK_TEMPERATURE_RANGE_C = (100.0, 340.0)


def stage_tanks(conditions: Conditions, config: TwinConfig) -> tuple[int, int]:
    """Tanks of the core and of the shell stage, ``(n_core, n_shell)``, for these conditions.

    The sulfur (shell) feed enters at ``s_inject_tank``; the tanks before it are the core stage.
    ``0`` keeps the reactor's own split (``config.n_core_tanks``).

    Raises:
        ConditionsError: The injection tank or count leaves no tank for a stage, or runs past
            the last tank (names the field).
    """
    return stage_split(config, conditions.s_inject_tank, conditions.s_inject_count)


def stage_split(config: TwinConfig, s_inject_tank: int = 0,
                s_inject_count: int = 1) -> tuple[int, int]:
    """:func:`stage_tanks` from the injection fields alone (same rules, same errors)."""
    n = config.n_core_tanks + config.n_shell_tanks
    tank = s_inject_tank or config.n_core_tanks + 1
    if not 2 <= tank <= n:
        raise ConditionsError("s_inject_tank", tank, f"[2, {n}] (0: tank "
                              f"{config.n_core_tanks + 1})",
                              f"this cascade has {n} tanks and the core stage needs one")
    if tank + s_inject_count - 1 > n:
        raise ConditionsError("s_inject_count", s_inject_count, f"[1, {n - tank + 1}]",
                              f"injection from tank {tank} over {s_inject_count} tanks runs "
                              f"past the last tank ({n})")
    return tank - 1, n - tank + 1


def tank_temperatures_c(conditions: Conditions, config: TwinConfig, *,
                        in_range: bool = True) -> FloatArray:
    """Temperature of every tank in flow order, ``(N,)`` °C: the profile over stage defaults.

    ``in_range=False`` accepts any tank temperature: what heaters *realize* (a block still
    ramping up) is physics, not a request, and the transient cascade runs it.

    Raises:
        ConditionsError: The profile names more tanks than the cascade has, or (``in_range``)
            a tank's temperature lies outside :data:`TANK_TEMPERATURE_RANGE_C`.
    """
    n_core, n_shell = stage_tanks(conditions, config)
    n = n_core + n_shell
    if len(conditions.t_tank_c) > n:
        raise ConditionsError(tank_temperature_name(len(conditions.t_tank_c)),
                              conditions.t_tank_c[-1], f"tanks 1..{n}",
                              f"this cascade has {n} tanks")
    temps = np.concatenate([np.full(n_core, conditions.t_core_c),
                            np.full(n_shell, conditions.t_shell_c)])
    lo, hi = TANK_TEMPERATURE_RANGE_C
    for i, v in enumerate(conditions.t_tank_c):
        if math.isnan(v):
            continue
        if in_range and not lo <= v <= hi:
            raise ConditionsError(tank_temperature_name(i + 1), v, f"[{lo:g}, {hi:g}] °C",
                                  "outside what a tank's block reaches")
        temps[i] = v
    return temps


def check_tank_conditions(conditions: Conditions, config: TwinConfig | None = None) -> None:
    """Envelope of the optional per-tank conditions (the twin's reactor).

    Without ``config`` only what holds for any cascade is checked (stirring and tank
    temperature ranges); with it also the injection layout and the profile's length.

    Raises:
        ConditionsError: Names the offending field (``t_tank<i>_c``, ``stir_rpm``,
            ``s_inject_tank``, ``s_inject_count``) and what is allowed.
    """
    lo, hi = STIR_RPM_RANGE
    if not lo <= conditions.stir_rpm <= hi:
        raise ConditionsError("stir_rpm", conditions.stir_rpm, f"[{lo:g}, {hi:g}] rpm",
                              "outside what the tanks' stirrer motors do")
    if config is not None:
        tank_temperatures_c(conditions, config)  # checks the injection too
        return
    lo, hi = TANK_TEMPERATURE_RANGE_C
    for i, v in enumerate(conditions.t_tank_c, start=1):
        if not (math.isnan(v) or lo <= v <= hi):
            raise ConditionsError(tank_temperature_name(i), v, f"[{lo:g}, {hi:g}] °C",
                                  "outside what a tank's block reaches")


def tank_profile(conditions: Conditions, config: TwinConfig) -> TankProfile:
    """The per-tank picture of one condition set for the steady state (``n = 1``).

    Raises:
        ConditionsError: Per-tank conditions this cascade cannot realize (names the field).
    """
    n_core, _ = stage_tanks(conditions, config)
    temps = tank_temperatures_c(conditions, config)
    times = tank_times_min(conditions, config)
    return TankProfile(core_t_c=temps[None, :n_core], shell_t_c=temps[None, n_core:],
                       shell_tank_min=times[None, n_core:],
                       sulfur=sulfur_share(conditions, config)[None, n_core:],
                       stir_rpm=np.array([conditions.stir_rpm]))


def flow_plan(conditions: Conditions, config: TwinConfig) -> FlowPlan:
    """Flows for the conditions' residence times in this reactor.

    The aminophosphine share of the core flow follows from P:In, the In concentration of the
    core stream and the phosphine stock: ``Q_P = Q_core·P:In·c_In/c_P``.
    """
    v = config.tank_volume_ml
    n_core, n_shell = stage_tanks(conditions, config)
    q_core = n_core * v / conditions.tau_core_min
    q_shell = n_shell * v / conditions.tau_shell_min
    q_p = q_core * min(0.9, conditions.p_to_in * config.in_conc_m / config.phosphine_stock_m)
    q_feed = config.shell_feed_fraction * q_shell
    q_cores_needed = q_shell - q_feed
    return FlowPlan(
        core_ml_min=q_core,
        shell_ml_min=q_shell,
        indium_halide_ml_min=q_core - q_p,
        phosphine_ml_min=q_p,
        shell_feed_ml_min=q_feed,
        makeup_ml_min=max(0.0, q_cores_needed - q_core),
        bleed_ml_min=max(0.0, q_core - q_cores_needed),
    )


def tank_times_min(conditions: Conditions, config: TwinConfig) -> FloatArray:
    """Per-tank mean residence times of the whole cascade, shape ``(n_core + n_shell,)``, min.

    The core tanks share ``tau_core_min`` equally. In the shell stage the flow is
    ``n_shell·V/tau_shell_min`` once all of the shell feed has entered; a tank before the last
    of ``s_inject_count`` injection points carries only the core stream and the feed shares
    that entered so far, so it holds the fluid longer (default single injection: equal shares).
    """
    n_core, n_shell = stage_tanks(conditions, config)
    v = config.tank_volume_ml
    q_shell = n_shell * v / conditions.tau_shell_min
    missing = np.zeros(n_shell)
    m = conditions.s_inject_count
    missing[:m] = (m - 1 - np.arange(m)) / m * config.shell_feed_fraction * q_shell
    return np.concatenate([np.full(n_core, conditions.tau_core_min / n_core),
                           v / (q_shell - missing)])


def sulfur_share(conditions: Conditions, config: TwinConfig) -> FloatArray:
    """Fraction of the shell (sulfur) feed that has entered by each tank, ``(N,)``.

    0 in the core stage, ``j/s_inject_count`` in the ``j``-th injection tank, 1 after it.
    """
    n_core, n_shell = stage_tanks(conditions, config)
    m = conditions.s_inject_count
    share = np.minimum(1.0, (np.arange(n_shell) + 1.0) / m)
    return np.concatenate([np.zeros(n_core), share])


def washout(c0: FloatArray, tank_min: FloatArray, t_min: float, inlet: float) -> FloatArray:
    """Tank concentrations after ``t_min`` of constant inlet, exact (linear ODE, expm).

    Each tank k obeys ``dc_k/dt = (c_{k-1} - c_k)/τ_k`` with ``c_0 = inlet``; the same equations
    carry any conserved tracer (a product, a solvent) through the cascade.

    Args:
        c0: Initial concentrations (relative units), shape ``(N,)``.
        tank_min: Per-tank residence times, ``(N,)``, min.
        t_min: Elapsed time, min.
        inlet: Inlet concentration (same units), constant over the interval.

    Returns:
        Concentrations at ``t_min``, ``(N,)``.
    """
    n = len(c0)
    a = np.zeros((n + 1, n + 1))
    rate = 1.0 / np.asarray(tank_min, dtype=np.float64)
    a[np.arange(n), np.arange(n)] = -rate
    a[np.arange(1, n), np.arange(n - 1)] = rate[1:]
    a[0, n] = rate[0]  # the inlet, held constant by the last (augmented) state
    state = np.concatenate([np.asarray(c0, dtype=np.float64), [inlet]])
    return np.asarray((expm(a * t_min) @ state)[:n], dtype=np.float64)


def ramp_min(t_from_c: float, t_to_c: float, config: TwinConfig) -> float:
    """Time for a heater block to move from ``t_from_c`` to ``t_to_c``, min."""
    d = t_to_c - t_from_c
    rate = config.heating_rate_c_per_min if d > 0 else config.cooling_rate_c_per_min
    return abs(d) / rate


def throughput_g_h(conditions: Conditions, config: TwinConfig, conversion: float) -> float:
    """InP produced by the core stage, g/h (all of it, bleed included): ``Q·c_In·X·M``."""
    q = stage_tanks(conditions, config)[0] * config.tank_volume_ml / conditions.tau_core_min
    return q * 60.0 / 1000.0 * config.in_conc_m * conversion \
        * config.chemistry.inp_molar_mass_g_mol
