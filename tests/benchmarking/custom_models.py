"""Response models of 'a user', for the custom-reactor tests (``family.custom``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from autolab.twin.chemistry import ConditionArrays

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Plane:
    """PL a plane in the log halide ratio and the core temperature; QY a shell-temperature hill."""

    offset_nm: float = 0.0

    def product(self, c: ConditionArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
        pl = 470.0 + self.offset_nm + 25.0 * np.log(c.cl_to_i) + 0.6 * (c.t_core_c - 160.0)
        fwhm = np.full(len(c), 50.0)
        qy = 0.6 * np.exp(-(((c.t_shell_c - 290.0) / 25.0) ** 2))
        return pl, fwhm, qy


def plane(seed: int) -> Plane:
    """A family: each seed moves the emission by a few nm."""
    return Plane(offset_nm=3.0 * seed)


#: One reactor.
ONE = Plane()


class WrongShape:
    """Answers one value too few."""

    def product(self, c: ConditionArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
        n = len(c) - 1
        return np.full(n, 550.0), np.full(n, 50.0), np.full(n, 0.5)


class TooBright:
    """A QY above 1 where the shell is hottest."""

    def product(self, c: ConditionArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
        return (np.full(len(c), 550.0), np.full(len(c), 50.0),
                np.where(c.t_shell_c > 310.0, 1.2, 0.5))


WRONG_SHAPE = WrongShape()
TOO_BRIGHT = TooBright()

#: Not a model at all.
NOT_A_MODEL = 3
