"""Conditions as named scalar channels, and which part of the cascade each channel acts in.

A dynamic experiment ramps conditions in time. The ramp arithmetic (interpolation, rates) and the
RTD mapping work on *channels*: one float per channel, named like the :class:`Conditions` field
(``t_core_c``) or, for the per-tank temperature profile, ``t_tank3_c`` (1-based tank, the name a
campaign space uses). A NaN tank entry (the tank keeps its stage temperature) is a channel that
must stay NaN along a trajectory. Integer
conditions (the sulfur injection tank and count) choose the reactor's topology: they cannot be
ramped, so they are no channels; a trajectory keeps them constant.

Each channel has a *role* that says which fluid element history it acts on, because the cascade
treats them differently: a feed ratio is *carried* by the fluid (what entered the cascade is what
reacts), a temperature is a property of the *tank* the fluid sits in at a moment, and a residence
time is a *flow*: the time an element spends in a stage follows from the flow-weighted clock.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from enum import StrEnum
from typing import Any

from autolab.exceptions import ConditionsError
from autolab.records import Conditions, tank_of, tank_temperature_name

#: The profile field whose entries are the per-tank channels.
_PROFILE = "t_tank_c"


class Role(StrEnum):
    """Where in the cascade a channel acts on a fluid element.

    Attributes:
        CARRIED_CORE: Composition of the core feed: the value when the element entered tank 1.
        CARRIED_SHELL: Composition of the shell feed: the value when the element entered the
            shell stage.
        AMBIENT_CORE: A property of the core-stage tanks: averaged over the clock time the element
            spent in the core stage.
        AMBIENT_SHELL: The same for the shell stage.
        AMBIENT_ALL: A property of every tank (stirring): averaged over the whole residence.
        FLOW_CORE: Core residence time: the element's clock time in the core stage over its
            flow-weighted time there (the harmonic mean of the residence time it experienced).
        FLOW_SHELL: The same for the shell stage.
        AMBIENT_TANK: One tank's temperature: averaged over the element's time in that tank.
    """

    CARRIED_CORE = "carried_core"
    CARRIED_SHELL = "carried_shell"
    AMBIENT_CORE = "ambient_core"
    AMBIENT_SHELL = "ambient_shell"
    AMBIENT_ALL = "ambient_all"
    FLOW_CORE = "flow_core"
    FLOW_SHELL = "flow_shell"
    AMBIENT_TANK = "ambient_tank"


#: Role of each scalar condition (registry; a condition not named here acts on every tank).
ROLES: dict[str, Role] = {
    "t_core_c": Role.AMBIENT_CORE,
    "tau_core_min": Role.FLOW_CORE,
    "t_shell_c": Role.AMBIENT_SHELL,
    "tau_shell_min": Role.FLOW_SHELL,
    "cl_to_i": Role.CARRIED_CORE,
    "p_to_in": Role.CARRIED_CORE,
    "s_to_zn": Role.CARRIED_SHELL,
    "stir_rpm": Role.AMBIENT_ALL,
    "t_tank_c": Role.AMBIENT_TANK,
}

#: Roles for a tracer physics (``twin.transient.MixingCascade``): every product is labelled with
#: the conditions of its feed as it entered tank 1, temperatures and residence times included.
TRACER_ROLES: dict[str, Role] = dict.fromkeys(ROLES, Role.CARRIED_CORE)

#: Display unit of a channel's rate, by the suffix of its name.
_UNITS = {"_c": "°C", "_min": "min", "_rpm": "rpm"}


def role_of(channel: str) -> Role:
    """The role of a channel (``t_tank2_c`` -> the per-tank role)."""
    return ROLES.get(base_name(channel), Role.AMBIENT_ALL)


def base_name(channel: str) -> str:
    """The :class:`Conditions` field a channel belongs to (``t_tank2_c`` -> ``t_tank_c``)."""
    return _PROFILE if tank_of(channel) is not None else channel


def tank_index(channel: str) -> int:
    """1-based tank of a per-tank channel, 0 for a stage or inlet channel."""
    return tank_of(channel) or 0


def unit_of(channel: str) -> str:
    """Unit symbol of a channel, from its name's suffix (``""`` for ratios)."""
    name = base_name(channel)
    return next((u for suffix, u in _UNITS.items() if name.endswith(suffix)), "")


def _is_integer_field(declared: Any) -> bool:
    """Whether a dataclass field is declared ``int`` (a topology choice, not a channel)."""
    return declared in ("int", int)


def flatten(conditions: Conditions) -> dict[str, float]:
    """The conditions' channels, name -> value (integer topology fields left out)."""
    out: dict[str, float] = {}
    for f in fields(conditions):
        v = getattr(conditions, f.name)
        if isinstance(v, tuple):
            out.update({tank_temperature_name(i + 1): float(x) for i, x in enumerate(v)})
        elif not _is_integer_field(f.type):
            out[f.name] = float(v)
    return out


def topology(conditions: Conditions) -> dict[str, Any]:
    """The fields a trajectory must keep constant: integers and the tuple lengths."""
    out: dict[str, Any] = {}
    for f in fields(conditions):
        v = getattr(conditions, f.name)
        if isinstance(v, tuple):
            out[f"len({f.name})"] = len(v)
        elif _is_integer_field(f.type):
            out[f.name] = v
    return out


def unflatten(template: Conditions, values: dict[str, float]) -> Conditions:
    """``template`` with its channels replaced by ``values`` (missing channels keep theirs)."""
    changes: dict[str, Any] = {}
    tuples: dict[str, list[float]] = {}
    for f in fields(template):
        v = getattr(template, f.name)
        if isinstance(v, tuple):
            tuples[f.name] = [float(x) for x in v]
    for channel, value in values.items():
        name, idx = base_name(channel), tank_index(channel)
        if idx:
            tuples[name][idx - 1] = float(value)
        else:
            changes[name] = float(value)
    changes.update({k: tuple(v) for k, v in tuples.items() if v})
    return replace(template, **changes)


def check_same_topology(points: tuple[Conditions, ...]) -> None:
    """Refuse points that differ in what cannot be ramped (injection tank, profile length).

    Raises:
        ConditionsError: Names the field that changes between two points.
    """
    first = topology(points[0])
    for i, p in enumerate(points[1:], start=1):
        for name, value in topology(p).items():
            if first.get(name) != value:
                raise ConditionsError(
                    name, float(value), f"{first.get(name)} (as at point 0)",
                    f"point {i} changes it; the reactor's topology cannot be ramped, only "
                    "continuous conditions can")


def finite_or_raise(channel: str, value: float) -> float:
    """``value`` if finite, else a :class:`ConditionsError` naming the channel."""
    if not math.isfinite(value):
        raise ConditionsError(channel, value, "a finite value at every point",
                              "a ramp interpolates this channel, so it must be a number at every "
                              "point (NaN, the stage temperature, only where it never changes)")
    return value
