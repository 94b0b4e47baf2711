"""Conditions <-> pump rates of the CSTR cascade (pure), shared by the executor and the emulators.

The cascade: ``n_core`` tanks fed by three pumps (In/Zn chloride stock, In/Zn iodide stock — equal
In and halide molarity, so Cl:I is their rate ratio — and the aminophosphine), then ``n_shell``
tanks fed at the junction by a zinc-stock pump and a sulfur-stock pump (equal molarity, so S:Zn
is their rate ratio). The junction is where the shell feed enters: by default the first shell
tank, or the tank ``Conditions.s_inject_tank`` selects (the seed paper injects sulfur between the
3rd and the 6th tank); tanks before it are the core stage, the rest the shell stage. The core
and shell residence times are independent, so the junction either
needs solvent make-up (the solvent pump through the solvent valve) or a bleed (a pump withdrawing
the excess cores to waste). Same flow plan as the twin's (:mod:`autolab.twin.cascade`), written
here again because the hardware layer must not import the twin; a test keeps them equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from autolab.exceptions import ConditionsError
from autolab.records import Conditions

#: Fluidic roles of the pumps.
ROLES = ("halide_cl", "halide_i", "phosphine", "zinc", "sulfur", "solvent", "bleed")
#: Roles that feed reagents (stopped first in a shutdown).
REAGENT_ROLES = ("halide_cl", "halide_i", "phosphine", "zinc", "sulfur")


class Geometry(BaseModel):
    """Reactor geometry and stock concentrations.

    Attributes:
        n_core_tanks: CSTRs of the core stage.
        n_shell_tanks: CSTRs of the shell stage.
        tank_volume_ml: Working volume of each tank, mL.
        in_conc_m: In concentration of the combined core stream, mol/L.
        phosphine_stock_m: Aminophosphine stock, mol/L.
        shell_feed_fraction: Share of the shell-stage flow that is Zn + S feed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_core_tanks: int = Field(3, ge=1, le=10)
    n_shell_tanks: int = Field(4, ge=1, le=10)
    tank_volume_ml: float = Field(29.0, gt=0)
    in_conc_m: float = Field(0.05, gt=0)
    phosphine_stock_m: float = Field(1.0, gt=0)
    shell_feed_fraction: float = Field(0.3, gt=0, lt=1)


@dataclass(frozen=True)
class FlowSetpoints:
    """Pump rates for one set of conditions, mL/min by role, plus stage flows.

    Attributes:
        rates_ml_min: Rate by pump role, mL/min.
        core_ml_min: Flow through the core stage, mL/min.
        shell_ml_min: Flow through the shell stage (after the last injection), mL/min.
        inject_tanks: Tanks (1-based) that take an equal share of the shell feed.
        n_core_tanks: Tanks of the core stage (those before the first injection).
        n_shell_tanks: Tanks of the shell stage.
    """

    rates_ml_min: dict[str, float]
    core_ml_min: float
    shell_ml_min: float
    inject_tanks: tuple[int, ...] = ()
    n_core_tanks: int = 0
    n_shell_tanks: int = 0

    @property
    def makeup(self) -> bool:
        """Whether the solvent pump feeds the junction (make-up)."""
        return self.rates_ml_min["solvent"] > 0


def injection(c: Conditions, g: Geometry) -> tuple[int, ...]:
    """The tanks (1-based) the shell feed enters, in flow order.

    ``s_inject_tank`` 0 means the plumbing's default, the first shell tank; the feed is split
    over ``s_inject_count`` consecutive tanks from there.

    Raises:
        ConditionsError: No core tank before the injection, or injections past the last tank.
    """
    n = g.n_core_tanks + g.n_shell_tanks
    first = c.s_inject_tank or g.n_core_tanks + 1
    if not 2 <= first <= n:
        raise ConditionsError("s_inject_tank", first, f"[2, {n}] (0 = tank {g.n_core_tanks + 1})",
                              "the cores need at least one tank before the shell feed, and the "
                              f"cascade has {n} tanks")
    if first + c.s_inject_count - 1 > n:
        raise ConditionsError("s_inject_count", c.s_inject_count, f"[1, {n - first + 1}]",
                              f"injections from tank {first} on would run past the last tank "
                              f"({n})")
    return tuple(range(first, first + c.s_inject_count))


def flow_setpoints(c: Conditions, g: Geometry) -> FlowSetpoints:
    """Pump rates that realize ``c`` in this reactor.

    The stage sizes follow the injection position: ``tau_core_min`` is the residence time of
    the tanks before the first injection, ``tau_shell_min`` that of the tanks from it on. How
    the shell feed is split over several injection tanks is the plumbing's business (a
    manifold); the pump totals do not depend on it.

    Raises:
        ConditionsError: An injection position the cascade does not have.
    """
    tanks = injection(c, g)
    n_core = tanks[0] - 1
    n_shell = g.n_core_tanks + g.n_shell_tanks - n_core
    q_core = n_core * g.tank_volume_ml / c.tau_core_min
    q_shell = n_shell * g.tank_volume_ml / c.tau_shell_min
    q_p = q_core * min(0.9, c.p_to_in * g.in_conc_m / g.phosphine_stock_m)
    q_halide = q_core - q_p
    f_cl = 1.0 if math.isinf(c.cl_to_i) else c.cl_to_i / (1.0 + c.cl_to_i)
    q_feed = g.shell_feed_fraction * q_shell
    q_zn = q_feed / (1.0 + c.s_to_zn)
    needed = q_shell - q_feed
    return FlowSetpoints(
        rates_ml_min={"halide_cl": q_halide * f_cl, "halide_i": q_halide * (1.0 - f_cl),
                      "phosphine": q_p, "zinc": q_zn, "sulfur": q_feed - q_zn,
                      "solvent": max(0.0, needed - q_core), "bleed": max(0.0, q_core - needed)},
        core_ml_min=q_core, shell_ml_min=q_shell, inject_tanks=tanks, n_core_tanks=n_core,
        n_shell_tanks=n_shell)


def conditions_from_rates(rates_ml_min: dict[str, float], t_core_c: float, t_shell_c: float,
                          g: Geometry, *, s_inject_tank: int = 0, s_inject_count: int = 1,
                          t_tank_c: tuple[float, ...] = (),
                          stir_rpm: float = 600.0) -> Conditions | None:
    """The conditions that running pumps realize (inverse of :func:`flow_setpoints`).

    Args:
        rates_ml_min: Rate by pump role, mL/min.
        t_core_c: Core-stage temperature, °C.
        t_shell_c: Shell-stage temperature, °C.
        g: Geometry.
        s_inject_tank: Where the shell feed enters (the sulfur valve's tank; 0 = default).
        s_inject_count: Over how many tanks it is split.
        t_tank_c: Per-tank temperatures (the tank heaters' process values), °C.
        stir_rpm: Stirring rate, rpm.

    Returns:
        ``None`` when no complete reaction mixture flows (a feed is off, or no flow at all).
    """
    r = {k: max(0.0, rates_ml_min.get(k, 0.0)) for k in ROLES}
    q_core = r["halide_cl"] + r["halide_i"] + r["phosphine"]
    q_feed = r["zinc"] + r["sulfur"]
    q_shell = q_core - r["bleed"] + r["solvent"] + q_feed
    if min(q_core, r["phosphine"], r["halide_cl"], r["zinc"], r["sulfur"], q_shell) <= 0:
        return None
    if t_core_c <= 0 or t_shell_c <= 0:
        return None
    n_core = (s_inject_tank or g.n_core_tanks + 1) - 1
    n_shell = g.n_core_tanks + g.n_shell_tanks - n_core
    if n_core < 1 or n_shell < 1:
        return None
    return Conditions(
        t_core_c=t_core_c, tau_core_min=n_core * g.tank_volume_ml / q_core,
        t_shell_c=t_shell_c, tau_shell_min=n_shell * g.tank_volume_ml / q_shell,
        cl_to_i=math.inf if r["halide_i"] == 0 else r["halide_cl"] / r["halide_i"],
        s_to_zn=r["sulfur"] / r["zinc"],
        p_to_in=r["phosphine"] / q_core * g.phosphine_stock_m / g.in_conc_m,
        t_tank_c=t_tank_c, stir_rpm=stir_rpm, s_inject_tank=s_inject_tank,
        s_inject_count=s_inject_count)
