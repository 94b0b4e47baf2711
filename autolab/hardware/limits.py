"""Setpoint limits, checked before a byte is sent (the first layer of the safety design).

Kept apart from :mod:`autolab.hardware.safety` (the supervisor and the shutdown sequence) so the
drivers can import it without importing the supervisor.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from autolab.exceptions import ConditionsError, HardwareError


class Limits(BaseModel):
    """Per-device setpoint limits from the devices file (unset = no limit of that kind).

    Attributes:
        max_temperature_c: Highest setpoint / PV before an over-temperature trip, °C.
        max_rate_ml_min: Highest pump rate, mL/min.
        max_ramp_c_per_min: Highest heating-rate limit the controller may be given, °C/min.
        max_speed_rpm: Highest stirrer speed, rpm.
        min_syringe_ml: Syringe volume left that counts as "near empty" (trip), mL.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_temperature_c: float | None = Field(default=None, gt=0, le=400)
    max_rate_ml_min: float | None = Field(default=None, gt=0)
    max_ramp_c_per_min: float | None = Field(default=None, gt=0)
    max_speed_rpm: float | None = Field(default=None, gt=0)
    min_syringe_ml: float = Field(default=0.5, ge=0)


def check_setpoint(device: str, quantity: str, value: float, *, low: float,
                   high: float | None, unit: str) -> float:
    """Return ``value`` if it lies in ``[low, high]``; refuse it otherwise.

    Raises:
        ConditionsError: Naming ``device.quantity``, the value and the allowed range.
    """
    hi = math.inf if high is None else high
    if not (math.isfinite(value) and low <= value <= hi):
        raise ConditionsError(f"{device}.{quantity}", value, f"[{low:g}, {hi:g}] {unit}",
                              "refused before sending (device limits)")
    return value


class DidNotStick(HardwareError):
    """A setpoint read back other than it was written: the line works, the device kept another.

    Its own type so a driver can ask the device why (a Julabo's ``status``) without asking a
    device that is silent.
    """


def check_sticks(device: str, setpoint: str, sent: float, read: float, tol: float, *,
                 relative: bool = True, abs_tol: float | None = None) -> None:
    """A setpoint read back after it was written: one that differs did not stick.

    Every driver writes then reads back (a device that takes a value and holds another must not
    run an experiment). ``tol`` is absolute, and also relative unless ``relative`` is False
    (temperatures: a relative tolerance of a resolution would widen with the value).
    ``abs_tol`` replaces the absolute part where the value's scale is not fixed: a pump rate
    of 0.05 mL/min read back as 0.052 is 4 % off, inside an absolute 0.002 mL/min.

    Raises:
        DidNotStick: Naming the device, the setpoint, what was sent and what was read.
    """
    if not math.isclose(sent, read, rel_tol=tol if relative else 0.0,
                        abs_tol=tol if abs_tol is None else abs_tol):
        raise DidNotStick(f"{device}: setpoint {setpoint} did not stick: sent {sent:g}, "
                          f"read back {read:g}")


#: A pump rate read back: relative, as the pumps' own numbers are (4 significant digits keep
#: 1e-3 of the value or better); the absolute part only lets a zero rate read back as zero.
RATE_REL_TOL = 2e-3
RATE_ABS_TOL_ML_MIN = 1e-9


def check_rate_sticks(device: str, sent_ml_min: float, read_ml_min: float) -> None:
    """:func:`check_sticks` for a pump rate (see :data:`RATE_REL_TOL`).

    Raises:
        DidNotStick: The rate read back differs by more than :data:`RATE_REL_TOL` of it.
    """
    check_sticks(device, "rate_ml_min", sent_ml_min, read_ml_min, RATE_REL_TOL,
                 abs_tol=RATE_ABS_TOL_ML_MIN)
