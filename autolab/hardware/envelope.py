"""What a rig can realize: conditions -> device setpoints, and a campaign space checked up front.

One place turns :class:`~autolab.records.Conditions` into what each device of a devices file
must do (:func:`rig_setpoints`: pump rates, a temperature per heater role, a speed per stirrer
role, the sulfur valve's position), and refuses, before anything moves, what the rig cannot do:

* a per-tank temperature on a tank that shares a heater block with a tank at another
  temperature (a block has one setpoint);
* an injection tank the sulfur line does not reach (no ``sulfur_valve``: only the first shell
  tank; with one: the valve's ``inject_tanks``), or a split feed (``s_inject_count`` > 1): one
  feed line reaches one port at a time;
* any setpoint beyond a device's limits (temperature, rate, speed).

Each refusal is a :class:`~autolab.exceptions.ConditionsError` naming the *condition* (the
field a person or a campaign space sets: ``t_tank4_c``, ``s_inject_tank``, ``stir_rpm``,
``tau_core_min``), not a device register. :func:`check_space` runs the same rules over a
campaign's parameter space, so a campaign learns at validation time, not at experiment 17,
that its rig cannot realize part of its space.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from autolab.exceptions import ConditionsError, ConfigError
from autolab.hardware.devices import DevicesConfig, DeviceSpec, role_tanks
from autolab.hardware.fluidics import FlowSetpoints, Geometry, flow_setpoints, injection
from autolab.records import Conditions, tank_of, tank_temperature_name
from autolab.space import ParameterSpace

#: Two tanks on one heater block must agree within this, °C.
BLOCK_TOLERANCE_C = 0.05
#: Condition that sets each pump's rate (named when a rate is beyond the pump's limit): the
#: bleed takes the core stream's excess (short tau_core), the make-up fills a short tau_shell.
RATE_CONDITION = {"halide_cl": "tau_core_min", "halide_i": "tau_core_min",
                  "phosphine": "tau_core_min", "zinc": "tau_shell_min",
                  "sulfur": "tau_shell_min", "solvent": "tau_shell_min",
                  "bleed": "tau_core_min"}
#: Pumps whose rate is inversely proportional to their residence time (the rest are
#: differences of two stage flows).
PROPORTIONAL = ("halide_cl", "halide_i", "phosphine", "zinc", "sulfur")
#: At most this many corners of a space are checked exhaustively (else one axis at a time).
MAX_CORNERS = 1024


@dataclass(frozen=True)
class RigSetpoints:
    """What every device must do for one set of conditions.

    Attributes:
        flows: Pump rates and stage flows.
        tank_c: The temperature of each tank, flow order, °C.
        heater_c: Setpoint by heater role (``core``, ``shell``, ``tank<i>``), °C.
        stirrer_rpm: Speed by stirrer role, rpm.
        sulfur_position: Position of the sulfur valve (``None``: the rig has none; the shell
            feed enters where the plumbing puts it).
    """

    flows: FlowSetpoints
    tank_c: tuple[float, ...]
    heater_c: dict[str, float]
    stirrer_rpm: dict[str, float]
    sulfur_position: int | None

    @property
    def inject_tank(self) -> int:
        """The (first) tank the shell feed enters."""
        return self.flows.inject_tanks[0]


def tank_profile_c(c: Conditions, g: Geometry) -> tuple[float, ...]:
    """Temperature of every tank in flow order, °C: its own ``t_tank<i>_c``, else its stage's.

    The stage follows the injection: tanks before ``s_inject_tank`` are the core stage.

    Raises:
        ConditionsError: A per-tank temperature for a tank the cascade does not have, or an
            injection position it does not have.
    """
    n = g.n_core_tanks + g.n_shell_tanks
    for i, t in enumerate(c.t_tank_c, start=1):
        if i > n and not math.isnan(t):
            raise ConditionsError(tank_temperature_name(i), t, f"tanks 1-{n}",
                                  f"the cascade has {n} tanks")
    first = injection(c, g)[0]
    return tuple(t if not math.isnan(t := c.tank_temperature_c(i))
                 else (c.t_core_c if i < first else c.t_shell_c) for i in range(1, n + 1))


def _condition_of_tank(c: Conditions, tank: int, first_inject: int) -> str:
    """The condition that set this tank's temperature."""
    if not math.isnan(c.tank_temperature_c(tank)):
        return tank_temperature_name(tank)
    return "t_core_c" if tank < first_inject else "t_shell_c"


def heater_setpoints(c: Conditions, roles: Iterable[str], g: Geometry, *,
                     names: Mapping[str, str] | None = None) -> dict[str, float]:
    """The setpoint of every heater role (``core``/``shell`` block or ``tank<i>``), °C.

    Pure (geometry and roles only), so the serial rig and the simulated rig share it.

    Args:
        c: The conditions.
        roles: The rig's heater roles.
        g: Geometry.
        names: Device name by role, for the messages.

    Raises:
        ConditionsError: Tanks on one heater would need different temperatures (naming the
            ``t_tank<i>_c``, or ``s_inject_tank`` where the injection splits a block), or a
            role that heats no tank of this cascade.
    """
    profile = tank_profile_c(c, g)
    roles = list(roles)
    out: dict[str, float] = {}
    for role in roles:
        tanks = role_tanks(role, g)
        if not tanks or tanks[-1] > len(profile):
            raise ConditionsError("t_tank_c", float(len(profile)), f"tanks 1-{len(profile)}",
                                  f"heater role {role!r} heats no tank of this cascade")
        for t in tanks[1:]:
            if abs(profile[t - 1] - profile[tanks[0] - 1]) > BLOCK_TOLERANCE_C:
                name = (names or {}).get(role, role)
                raise _block_error(c, g, roles, f"tanks {tanks[0]}-{tanks[-1]} share heater "
                                   f"'{name}' (role {role}), which has one setpoint",
                                   tanks=tanks, tank=t, profile=profile)
        out[role] = profile[tanks[0] - 1]
    return out


def _block_error(c: Conditions, g: Geometry, roles: list[str], shared: str, *,
                 tanks: tuple[int, ...], tank: int,
                 profile: tuple[float, ...]) -> ConditionsError:
    """Tanks on one heater would need different temperatures: name what asked for it."""
    first = injection(c, g)[0]
    param = _condition_of_tank(c, tank, first)
    if param.startswith("t_tank"):
        return ConditionsError(param, profile[tank - 1], f"{profile[tanks[0] - 1]:g} °C (as "
                               f"tank {tanks[0]})", f"{shared}: tank {tank} needs its own "
                               f"heater (role tank{tank})")
    if first in tanks[1:]:  # the injection splits a block into a core and a shell part
        starts = sorted({role_tanks(r, g)[0] for r in roles if role_tanks(r, g)} - {1})
        return ConditionsError("s_inject_tank", first, f"a tank that starts a heater block "
                               f"{starts} (or t_core_c = t_shell_c)",
                               f"{shared}: injecting at tank {first} would need tanks "
                               f"{tanks[0]}-{first - 1} at {profile[tanks[0] - 1]:g} °C and "
                               f"tank {first} on at {profile[first - 1]:g} °C")
    return ConditionsError(param, profile[tank - 1], f"{profile[tanks[0] - 1]:g} °C",
                           f"{shared}: tank {tank} cannot differ from tank {tanks[0]}")


def _heater_limits(c: Conditions, config: DevicesConfig, heater_c: dict[str, float]) -> None:
    first = injection(c, config.geometry)[0]
    for name, spec in config.of_category("heater").items():
        limit = spec.limits.max_temperature_c
        t_c = heater_c[spec.role]
        if limit is not None and t_c > limit:
            tank = role_tanks(spec.role, config.geometry)[0]
            raise ConditionsError(_condition_of_tank(c, tank, first), t_c,
                                  f"[0, {limit:g}] °C", f"heater '{name}' limit")


def _check_rates(flows: FlowSetpoints, c: Conditions, config: DevicesConfig) -> None:
    for role, name in config.by_role("pump").items():
        rate = flows.rates_ml_min.get(role, 0.0)
        limit = config.devices[name].limits.max_rate_ml_min
        if limit is not None and rate > limit:
            param = RATE_CONDITION.get(role, "tau_shell_min")
            tau = float(getattr(c, param))
            allowed = (f">= {tau * rate / limit:.3g} min" if role in PROPORTIONAL
                       else f"values at which pump '{name}' stays within {limit:g} mL/min")
            raise ConditionsError(param, tau, allowed,
                                  f"pump '{name}' ({role}) would run at {rate:.4g} mL/min, "
                                  f"beyond its limit {limit:g} mL/min")


def _sulfur_position(c: Conditions, config: DevicesConfig, tanks: tuple[int, ...]) -> int | None:
    name = config.by_role("valve").get("sulfur_valve")
    if len(tanks) > 1:
        raise ConditionsError("s_inject_count", len(tanks), "[1, 1]",
                              "the shell feed reaches the cascade through one line (a selection "
                              "valve feeds one port at a time); a split feed needs a line per "
                              "port")
    if name is None:
        default = config.geometry.n_core_tanks + 1
        if tanks[0] != default:
            raise ConditionsError("s_inject_tank", c.s_inject_tank, f"0 or {default}",
                                  "the rig has no sulfur_valve: the shell feed enters at tank "
                                  f"{default} (geometry.n_core_tanks + 1)")
        return None
    spec = config.devices[name]
    reach = spec.inject_tanks if isinstance(spec, DeviceSpec) else ()
    if tanks[0] not in reach:
        raise ConditionsError("s_inject_tank", tanks[0], f"one of {list(reach)}",
                              f"the sulfur valve '{name}' reaches only these tanks "
                              f"(devices.{name}.inject_tanks)")
    return reach.index(tanks[0]) + 1


def rig_setpoints(c: Conditions, config: DevicesConfig) -> RigSetpoints:
    """Every device's setpoint for ``c`` on this rig, checked against the rig's envelope.

    Raises:
        ConditionsError: Naming the condition the rig cannot realize and why.
    """
    flows = flow_setpoints(c, config.geometry)
    position = _sulfur_position(c, config, flows.inject_tanks)
    by_role = config.by_role("heater")
    heaters = heater_setpoints(c, by_role, config.geometry, names=by_role)
    _heater_limits(c, config, heaters)
    profile = tank_profile_c(c, config.geometry)
    _check_rates(flows, c, config)
    stirrers: dict[str, float] = {}
    for name, spec in config.of_category("stirrer").items():
        limit = spec.limits.max_speed_rpm
        if limit is not None and c.stir_rpm > limit:
            raise ConditionsError("stir_rpm", c.stir_rpm, f"[0, {limit:g}] rpm",
                                  f"stirrer '{name}' limit")
        stirrers[spec.role] = c.stir_rpm
    return RigSetpoints(flows, profile, heaters, stirrers, position)


# ============================================================================= spaces
def _structural(space: ParameterSpace, config: DevicesConfig) -> None:
    """Rules that hold whatever the other parameters are."""
    n = config.n_tanks
    for p in space.parameters:
        tank = tank_of(p.name)
        if tank is None:
            continue
        if tank > n:
            raise ConditionsError(p.name, p.upper, f"tanks 1-{n}",
                                  f"the rig's cascade has {n} tanks")
        heater = config.tank_device("heater", tank)
        role = config.devices[heater].role
        if len(role_tanks(role, config.geometry)) > 1:
            raise ConditionsError(p.name, p.upper, "a tank with its own heater",
                                  f"tank {tank} sits on heater '{heater}' (role {role}) with "
                                  f"other tanks, so its temperature cannot be searched alone: "
                                  f"give it its own heater (role tank{tank})")
    names = space.names
    if "s_inject_count" in names and space["s_inject_count"].upper > 1:
        raise ConditionsError("s_inject_count", space["s_inject_count"].upper, "[1, 1]",
                              "the shell feed reaches the cascade through one line")


def _axis_values(space: ParameterSpace) -> list[tuple[str, tuple[float, ...]]]:
    out = []
    for p in space.parameters:
        if p.name in ("s_inject_tank", "s_inject_count"):
            lo, hi = math.ceil(p.lower - 1e-9), math.floor(p.upper + 1e-9)
            out.append((p.name, tuple(float(v) for v in range(lo, hi + 1))))
        else:
            out.append((p.name, (p.lower, p.upper)))
    return out


def _points(space: ParameterSpace) -> list[dict[str, float]]:
    """The points a space is checked at.

    Every corner of the box (every whole value of the injection axes), or, when there are
    more than :data:`MAX_CORNERS`, each axis' values with the others at their lower and at
    their upper bounds.
    """
    axes = _axis_values(space)
    count = math.prod(len(v) for _, v in axes)
    if count <= MAX_CORNERS:
        return [dict(zip([a for a, _ in axes], combo, strict=True))
                for combo in itertools.product(*(v for _, v in axes))]
    points: list[dict[str, float]] = []
    for base in (0, -1):
        anchor = {a: v[base] for a, v in axes}
        for a, values in axes:
            points.extend({**anchor, a: v} for v in values)
    return points


def check_space(space: ParameterSpace, config: DevicesConfig,
                fixed: Mapping[str, float] | None = None) -> None:
    """Check up front that this rig can realize every point of a campaign's space.

    Structural rules first (a searched per-tank temperature needs that tank's own heater; one
    feed line), then :func:`rig_setpoints` at the corners of the box (the envelope is a box of
    limits, and every rate and temperature is monotone in each parameter, so the corners hold
    the extremes), infeasible corners (linear constraints) skipped.

    Args:
        space: The campaign's parameter space.
        config: The rig's devices file.
        fixed: Values of the conditions the space does not search (the campaign's fixed
            conditions); required conditions missing from both are reported.

    Raises:
        ConditionsError: Naming the parameter and, in the detail, the corner that fails.
        ConfigError: A condition is neither searched nor fixed.
    """
    _structural(space, config)
    fixed = dict(fixed or {})
    for point in _points(space):
        if space.constraints and not space.is_feasible(point):
            continue
        values = {**fixed, **point}
        try:
            c = Conditions.from_mapping(values)
        except ConfigError as err:
            raise ConfigError(f"cannot check the space against the rig: {err}") from err
        try:
            rig_setpoints(c, config)
        except ConditionsError as err:
            corner = ", ".join(f"{k}={v:g}" for k, v in point.items())
            raise ConditionsError(err.parameter, err.value, err.allowed,
                                  f"{_detail(err)} (at the corner {corner} of the space)") from err


def _detail(err: ConditionsError) -> str:
    """The detail part of a ConditionsError's message (after the allowed range)."""
    head = f"is outside the allowed range {err.allowed}"
    text = str(err)
    return text.split(head, 1)[1].removeprefix(": ") if head in text else text
