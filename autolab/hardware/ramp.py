"""A setpoint ramp kept by the host, for controllers that have no ramp of their own.

The rig's ``ramp_c_per_min`` is a promise: the procedure sizes its heat-up waits from it and
the dynamic trajectories cap their temperature channels at it. A Eurotherm 3200 keeps it
itself (SP rate limit, register 35). The Omega CN7500, Julabo and Huber protocols name no
such parameter, so a step written to them heats the block as fast as its heater can: the
driver walks the setpoint up instead.

How: a new, higher setpoint starts a ramp from the setpoint the controller holds; every call
the driver gets (the supervisor refreshes each heater's setpoint every poll, and every PV
read) moves it on, and the driver writes the ramped value when it has moved by one step
(``ramp_c_per_min`` x ``step_s``) or reached the target. Steps, not every poll, because
these controllers may keep their setpoint in EEPROM, whose write cycles are limited: a
200 °C ramp at 10 °C/min with 30-s steps is 40 writes. A lower setpoint is written at once
(a lower setpoint never adds heat). Time is lab time (the devices file's ``time_scale``), as
the controllers' own ramps in the virtual lab are.

If the host stops, the controller holds the last step written: never above the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def ramp_value_c(start_c: float, target_c: float, rate_c_per_min: float,
                 elapsed_min: float) -> float:
    """The ramped setpoint ``elapsed_min`` after a ramp from ``start_c`` began, °C.

    Upward only at ``rate_c_per_min``; a target at or below the start is reached at once.
    """
    if target_c <= start_c:
        return target_c
    return min(target_c, start_c + rate_c_per_min * max(0.0, elapsed_min))


class SoftwareRamp:
    """The state of one controller's host-side ramp.

    Args:
        rate_c_per_min: Heating-rate limit, °C/min (lab time).
        step_s: Lab seconds of ramp per setpoint write (EEPROM budget).
        clock_min: Lab clock, minutes.
    """

    def __init__(self, rate_c_per_min: float, step_s: float,
                 clock_min: Callable[[], float]) -> None:
        self.rate_c_per_min = rate_c_per_min
        self.step_c = rate_c_per_min * step_s / 60.0
        self.clock_min = clock_min
        #: Where the ramp goes, °C (``None``: no setpoint asked for yet).
        self.target_c: float | None = None
        self._start_c = math.nan
        self._t0_min = 0.0

    def start(self, from_c: float, target_c: float) -> None:
        """A new target, ramped from ``from_c`` (the setpoint the controller holds now)."""
        self.target_c = target_c
        self._start_c = from_c
        self._t0_min = self.clock_min()

    def clear(self) -> None:
        """No target (after an output cut: nothing is to be written on its own)."""
        self.target_c = None

    def due_c(self, written_c: float) -> float | None:
        """The setpoint to write now, or ``None`` if ``written_c`` (the last one) still holds."""
        if self.target_c is None:
            return None
        value = ramp_value_c(self._start_c, self.target_c, self.rate_c_per_min,
                             self.clock_min() - self._t0_min)
        if value == written_c:
            return None
        if value == self.target_c or abs(value - written_c) >= self.step_c:
            return value
        return None
