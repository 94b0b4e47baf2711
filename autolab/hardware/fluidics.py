"""Conditions <-> pump rates of the CSTR cascade (pure), shared by the executor and the emulators.

The cascade: ``n_core`` tanks fed by three pumps (In/Zn chloride stock, In/Zn iodide stock — equal
In and halide molarity, so Cl:I is their rate ratio — and the aminophosphine), then ``n_shell``
tanks fed at the junction by a zinc-stock pump and a sulfur-stock pump (equal molarity, so S:Zn
is their rate ratio). The core and shell residence times are independent, so the junction either
needs solvent make-up (the solvent pump through the solvent valve) or a bleed (a pump withdrawing
the excess cores to waste). Same flow plan as the twin's (:mod:`autolab.twin.cascade`), written
here again because the hardware layer must not import the twin; a test keeps them equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

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
    """Pump rates for one set of conditions, mL/min by role, plus stage flows."""

    rates_ml_min: dict[str, float]
    core_ml_min: float
    shell_ml_min: float

    @property
    def makeup(self) -> bool:
        """Whether the solvent pump feeds the junction (make-up)."""
        return self.rates_ml_min["solvent"] > 0


def flow_setpoints(c: Conditions, g: Geometry) -> FlowSetpoints:
    """Pump rates that realize ``c`` in this reactor."""
    q_core = g.n_core_tanks * g.tank_volume_ml / c.tau_core_min
    q_shell = g.n_shell_tanks * g.tank_volume_ml / c.tau_shell_min
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
        core_ml_min=q_core, shell_ml_min=q_shell)


def conditions_from_rates(rates_ml_min: dict[str, float], t_core_c: float, t_shell_c: float,
                          g: Geometry) -> Conditions | None:
    """The conditions that running pumps realize (inverse of :func:`flow_setpoints`).

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
    return Conditions(
        t_core_c=t_core_c, tau_core_min=g.n_core_tanks * g.tank_volume_ml / q_core,
        t_shell_c=t_shell_c, tau_shell_min=g.n_shell_tanks * g.tank_volume_ml / q_shell,
        cl_to_i=math.inf if r["halide_i"] == 0 else r["halide_cl"] / r["halide_i"],
        s_to_zn=r["sulfur"] / r["zinc"],
        p_to_in=r["phosphine"] / q_core * g.phosphine_stock_m / g.in_conc_m)
