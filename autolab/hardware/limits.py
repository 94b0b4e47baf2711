"""Setpoint limits, checked before a byte is sent (the first layer of the safety design).

Kept apart from :mod:`autolab.hardware.safety` (the supervisor and the shutdown sequence) so the
drivers can import it without importing the supervisor.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

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


class Answer(NamedTuple):
    """A number as a device answered it: its value and one unit of its last digit.

    The manuals rarely say how many digits an answer carries (Harvard's ``# xl/xxx``; Chemyx
    echoes "the set value"), so the digits the device wrote are the resolution it holds the
    value to: ``1.23`` for 1.234 is the same setting, ``1.2`` for 1.234 too, ``1.2`` for 1.5 is
    not. Both fields are in the caller's unit (``scale`` of :func:`answer`).

    Attributes:
        value: The number.
        step: One unit of its last written digit (0: exact, e.g. a value not read from text).
    """

    value: float
    step: float


_DECIMAL = re.compile(r"\s*[-+]?(?:\d+\.?(\d*)|\.(\d+))(?:[eE]([-+]?\d+))?\s*")

#: How close to one unit of the last digit a difference may come and still be a rounding or
#: a truncation, in units of that digit: below 1 (a clamp to a limit one unit away, ``5`` for
#: 6, is a real difference) with room for binary floating point (5.1 - 5.0 < 0.1).
STEP_FRACTION = 1.0 - 1e-9


def answer(number: str, scale: float = 1.0) -> Answer:
    """The :class:`Answer` of a decimal written ``number`` (``1.23``, ``.5``, ``6.1e-04``).

    An integer's trailing zeros count as written digits (``120`` is held to 1, the safe side:
    a device writing 1234 as ``1200`` fails the comparison loudly rather than passing).

    Args:
        number: The number as the device wrote it.
        scale: Its unit in the caller's (``ul/min`` -> mL/min: 1e-3); multiplies both fields.

    Raises:
        ValueError: Not a plain decimal number.
    """
    m = _DECIMAL.fullmatch(number)
    if m is None:
        raise ValueError(f"not a decimal number: {number!r}")
    places = len(m.group(1) or m.group(2) or "")
    exponent = int(m.group(3) or 0)
    return Answer(float(number) * scale, 10.0 ** (exponent - places) * scale)


def matches_answer(sent: float, got: Answer, *, rel: float = 0.0, abs_tol: float = 0.0) -> bool:
    """Whether ``got`` is ``sent`` as the device holds it: the read-back rule of every echo.

    The difference may reach (not equal) one unit of the answer's last digit: ``sent``
    rounded or truncated to the digits answered passes, a clamp or another value (at least one
    unit off) fails. ``rel`` (of ``sent``) and ``abs_tol`` widen it where the kind's own
    resolution is coarser than what it writes (a pump keeping 4 significant digits that
    answers 6). Zero for a non-zero value, or the other sign, is never a rounding of it: a
    rate rounded away to nothing would not pump.
    """
    if (got.value == 0 and abs(sent) > abs_tol) or sent * got.value < 0:
        return False
    allowed = max(got.step * STEP_FRACTION, rel * abs(sent), abs_tol)
    return abs(sent - got.value) <= allowed


def check_answer_sticks(device: str, setpoint: str, sent: float, got: Answer, *,
                        rel: float = 0.0, abs_tol: float = 0.0) -> None:
    """:func:`matches_answer`, or a :class:`DidNotStick` naming what was sent and read.

    Raises:
        DidNotStick: The answer is not ``sent`` to its resolution.
    """
    if not matches_answer(sent, got, rel=rel, abs_tol=abs_tol):
        digits = f" (answered to {got.step:g})" if got.step else ""
        raise DidNotStick(f"{device}: setpoint {setpoint} did not stick: sent {sent:g}, "
                          f"read back {got.value:g}{digits}")


#: A pump rate read back: relative, as the pumps' own numbers are (4 significant digits keep
#: 1e-3 of the value or better); the absolute part only lets a zero rate read back as zero.
#: An answer with fewer digits is held to them (:func:`matches_answer`).
RATE_REL_TOL = 2e-3
RATE_ABS_TOL_ML_MIN = 1e-9


def rate_matches(sent_ml_min: float, read: float | Answer) -> bool:
    """The rate rule of the read-back and of the supervisor's poll (one rule, both places).

    ``read`` as a bare float is exact (a driver that does not keep its answer's digits).
    """
    got = read if isinstance(read, Answer) else Answer(read, 0.0)
    return matches_answer(sent_ml_min, got, rel=RATE_REL_TOL, abs_tol=RATE_ABS_TOL_ML_MIN)


def check_rate_sticks(device: str, sent_ml_min: float, read: float | Answer) -> None:
    """:func:`rate_matches`, or a :class:`DidNotStick` naming the rate.

    Raises:
        DidNotStick: The rate read back is not the one sent (see :func:`matches_answer`).
    """
    got = read if isinstance(read, Answer) else Answer(read, 0.0)
    check_answer_sticks(device, "rate_ml_min", sent_ml_min, got, rel=RATE_REL_TOL,
                        abs_tol=RATE_ABS_TOL_ML_MIN)
