"""Julabo circulators' text protocol: commands, replies, status and error codes (pure).

Facts (Julabo SC/FL/SL and CF41 manuals): a command is ``name`` or ``name value`` ended by CR
(CR LF on the CF41); a reply is the data ended by LF (CR LF on the CF41). 7E1, 4800 Bd with
hardware handshake on older units, 9600 Bd on the CF41. At least 250 ms between two commands,
and at least 10 ms after an ``in`` reply. ``out`` commands act only in remote mode, and after a
power loss the unit comes back stopped (``R OFF``): start and setpoints must be sent again.

Commands used: ``version``, ``status`` (first two characters ``00``/``02`` stopped, ``01``/``03``
started; a negative ``-xx`` is an error), ``in_pv_00`` (bath temperature), ``in_sp_00`` /
``out_sp_00 xxx.xx`` (working setpoint), ``in_mode_05`` / ``out_mode_05 0|1`` (stop/start).

Error codes: ``-01`` coolant level low, ``-03`` coolant too hot, ``-05``, ``-33`` and ``-38``
sensor faults (which sensor each names, the manuals we read do not say), ``-06`` working
and safety sensor differ by more than 35 °C, ``-08`` invalid
command, ``-09`` invalid in the current mode, ``-13`` setpoint beyond the safety limits, ``-14``
excess-temperature protection.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from autolab.hardware.transport import ProtocolError

#: Line ends of a command: CR (the SC/FL/SL manuals) or CR LF (the CF41).
LINE_ENDS = {"cr": b"\r", "crlf": b"\r\n"}
#: Least time between two commands, s; and after an ``in`` reply, s.
COMMAND_SPACING_S = 0.25
AFTER_REPLY_S = 0.01
#: Setpoint decimals (``out_sp_00 xxx.xx``).
DECIMALS = 2

#: Error codes that mean the temperature sensor failed (the PV is meaningless).
SENSOR_ERRORS = frozenset({-5, -33, -38})
#: What the manuals say each error code means.
ERRORS = {-1: "coolant level low", -3: "coolant temperature too high",
          -5: "sensor fault", -6: "working and safety sensor differ by > 35 °C",
          -8: "invalid command", -9: "command invalid in the current mode",
          -13: "set temperature exceeds the safety limits",
          -14: "excess temperature protection alarm", -33: "sensor fault",
          -38: "sensor fault"}

_STATUS = re.compile(r"^\s*(-?\d{1,3})\b\s*(.*?)\s*$")
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)\s*$")


class JulaboProtocolError(ProtocolError):
    """A reply could not be parsed (garbled, or a late reply to another command): retried."""


@dataclass(frozen=True)
class JulaboStatus:
    """A decoded ``status`` reply.

    Attributes:
        code: The leading number (negative: an error).
        text: The rest of the line.
    """

    code: int
    text: str

    @property
    def error(self) -> bool:
        """Whether it reports an error."""
        return self.code < 0

    @property
    def started(self) -> bool:
        """Whether the unit runs (codes 01 and 03; 00 and 02 are stopped)."""
        return self.code in (1, 3)

    @property
    def fault(self) -> str:
        """The fault it is, or ``""``.

        ``sensor_break`` for a sensor code, ``controller_error`` for every other error code.
        """
        if not self.error:
            return ""
        return "sensor_break" if self.code in SENSOR_ERRORS else "controller_error"


def encode(command: str, value: float | int | None = None, end: bytes = b"\r") -> bytes:
    """One command line: ``in_pv_00`` + CR, ``out_sp_00 55.50`` + CR.

    A setpoint is written with :data:`DECIMALS` decimals, a mode as an integer.
    """
    if value is None:
        return command.encode("ascii") + end
    text = str(value) if isinstance(value, int) else f"{value:.{DECIMALS}f}"
    return f"{command} {text}".encode("ascii") + end


def parse_number(line: bytes) -> float:
    """A numeric reply (``55.50``, `` 25.3``, ``-12``) with its line end.

    Raises:
        JulaboProtocolError: Not one finite number.
    """
    text = line.decode("ascii", errors="replace").strip()
    if not _NUMBER.match(text):
        raise JulaboProtocolError(f"Julabo reply {line!r}: expected a number")
    value = float(text)
    if not math.isfinite(value):
        raise JulaboProtocolError(f"Julabo reply {line!r}: not a finite number")
    return value


def parse_places(line: bytes) -> tuple[float, int]:
    """A numeric reply and its decimal places (``55.5`` is (55.5, 1), ``55.50`` (55.5, 2)).

    Raises:
        JulaboProtocolError: Not one finite number.
    """
    value = parse_number(line)
    text = line.decode("ascii", errors="replace").strip()
    return value, len(text.split(".", 1)[1]) if "." in text else 0


def parse_mode(line: bytes) -> int:
    """A mode reply (``0`` or ``1``).

    Raises:
        JulaboProtocolError: Anything else.
    """
    value = parse_number(line)
    if value not in (0.0, 1.0):
        raise JulaboProtocolError(f"Julabo mode reply {line!r}: expected 0 or 1")
    return int(value)


def parse_status(line: bytes) -> JulaboStatus:
    """A ``status`` reply: ``03 REMOTE START``, ``-14 EXCESS TEMPERATURE``.

    Raises:
        JulaboProtocolError: No leading status number.
    """
    m = _STATUS.match(line.decode("ascii", errors="replace"))
    if m is None:
        raise JulaboProtocolError(f"Julabo status reply {line!r}: expected a code and text")
    return JulaboStatus(int(m.group(1)), m.group(2))


def split_command(line: bytes) -> tuple[str, str | None]:
    """The emulator's side: (command, argument or None) of one request line."""
    parts = line.decode("ascii", errors="replace").strip().split(None, 1)
    if not parts:
        return "", None
    return parts[0].lower(), (parts[1].strip() if len(parts) > 1 else None)
