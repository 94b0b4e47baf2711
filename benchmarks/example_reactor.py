"""A reactor of your own, as `autolab benchmark` takes it (``family.custom``; docs/benchmarks.md).

An example of the interface, and a fourth response family written apart from the three of
``autolab.benchmarking.family``: a phenomenological size model (the core grows with core
temperature and time, the Cl:I ratio shifts the emission through a saturating log-ratio term
whose slope depends on the core temperature) and a QY that is a product of a shell-temperature
optimum, a sulfur-coverage switch, a shell-growth term and a size penalty. Each seed draws its
own constants, so ``draw`` is a family; ``NOMINAL`` is one reactor.

Used by ``benchmarks/custom_reactor.yaml``::

    autolab benchmark benchmarks/custom_reactor.yaml --workers 2 --out benchmark-results/custom
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from autolab.benchmarking.family import Corners
from autolab.twin.chemistry import ConditionArrays

FloatArray = NDArray[np.float64]
#: The nominal reactor's clogging corners (hot and long core; excess sulfur on a hot shell).
_CORNERS = Corners(t_core_c=214.0, tau_core_min=24.0, s_to_zn=3.6, t_shell_c=310.0)


@dataclass(frozen=True)
class LogisticReactor:
    """Noise-free PL peak, FWHM and QY of condition arrays (vectorized).

    Attributes:
        pl0_nm: Emission of the smallest cores at the I-richest feed, nm.
        halide_nm: Red shift from I-rich to Cl-rich feed at 190 °C, nm.
        halide_mid: Cl:I at the middle of that shift.
        growth_nm: Red shift from core growth over the box (hot and long), nm.
        shell_blue_nm: Blue shift per 10 °C of shell temperature above 250 °C, nm.
        qy_max: Brightest QY anywhere.
        t_shell_opt_c: Shell temperature of the QY optimum, °C.
        t_shell_width_c: Width of that optimum, °C.
        s_to_zn_mid: S:Zn where the shell covers half the surface.
        pl_sweet_nm: Emission of the best-passivated cores, nm.
        corners: Where it clogs.
    """

    pl0_nm: float = 490.0
    halide_nm: float = 120.0
    halide_mid: float = 4.0
    growth_nm: float = 35.0
    shell_blue_nm: float = 1.5
    qy_max: float = 0.6
    t_shell_opt_c: float = 292.0
    t_shell_width_c: float = 22.0
    s_to_zn_mid: float = 1.8
    pl_sweet_nm: float = 560.0
    corners: Corners = _CORNERS
    stokes_ev: float = 0.11

    def product(self, c: ConditionArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(pl_peak_nm, fwhm_nm, qy)`` per condition set."""
        growth = (1.0 - np.exp(-c.tau_core_min / 12.0)) * (c.t_core_c - 160.0) / 60.0
        slope = 1.0 + 0.004 * (c.t_core_c - 190.0)
        halide = 0.5 * (1.0 + np.tanh(0.8 * slope * np.log(c.cl_to_i / self.halide_mid)))
        pl = (self.pl0_nm + self.halide_nm * halide + self.growth_nm * growth
              - self.shell_blue_nm * (c.t_shell_c - 250.0) / 10.0 - 3.0 * (c.p_to_in - 3.6))
        fwhm = 42.0 + 14.0 * (1.0 - growth) + 0.08 * np.abs(c.t_shell_c - self.t_shell_opt_c)
        shell = np.exp(-(((c.t_shell_c - self.t_shell_opt_c) / self.t_shell_width_c) ** 2))
        cover = 1.0 / (1.0 + np.exp(-3.0 * (c.s_to_zn - self.s_to_zn_mid)))
        grown = 1.0 - 0.5 * np.exp(-c.tau_shell_min / 12.0)
        size = np.exp(-(((pl - self.pl_sweet_nm) / 90.0) ** 2))
        qy = self.qy_max * shell * cover * grown * size
        return (np.asarray(pl, dtype=np.float64), np.asarray(fwhm, dtype=np.float64),
                np.asarray(qy, dtype=np.float64))


#: One reactor (``response: example_reactor:NOMINAL``, one seed).
NOMINAL = LogisticReactor()


def draw(seed: int) -> LogisticReactor:
    """Reactor ``seed`` of the family: every constant drawn around :data:`NOMINAL`."""
    rng = np.random.default_rng([4242, seed])
    return LogisticReactor(
        pl0_nm=float(rng.uniform(478.0, 505.0)), halide_nm=float(rng.uniform(110.0, 150.0)),
        halide_mid=float(np.exp(rng.uniform(np.log(2.0), np.log(8.0)))),
        growth_nm=float(rng.uniform(20.0, 50.0)), shell_blue_nm=float(rng.uniform(0.5, 3.0)),
        qy_max=float(rng.uniform(0.4, 0.8)), t_shell_opt_c=float(rng.uniform(270.0, 310.0)),
        t_shell_width_c=float(rng.uniform(15.0, 35.0)),
        s_to_zn_mid=float(rng.uniform(1.3, 2.6)), pl_sweet_nm=float(rng.uniform(520.0, 620.0)),
        corners=Corners(t_core_c=float(rng.uniform(208.0, 218.0)),
                        tau_core_min=float(rng.uniform(20.0, 28.0)),
                        s_to_zn=float(rng.uniform(3.3, 3.8)),
                        t_shell_c=float(rng.uniform(302.0, 316.0))),
        stokes_ev=float(rng.uniform(0.09, 0.14)))
