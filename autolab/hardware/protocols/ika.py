r"""IKA NAMUR ASCII protocol of magnetic stirrers and overhead stirrers (pure).

IKA stirrers (RCT basic/digital, Eurostar 60/100 control, C-MAG HS) speak the NAMUR command set
at 9600 Bd, 7 data bits, even parity, 1 stop bit; each command ends in CR LF and the replies to
``IN_`` queries are ``<value> <channel>\\r\\n``. Channel 4 is the motor (speed in rpm). ``OUT_``
and ``START``/``STOP`` commands get no reply, so the driver reads every setpoint back
(``IN_SP_4``). Commands used here (IKA RCT/Eurostar operating manuals, "Interface" section):

==================  ===========================  ==================
command             meaning                      reply
==================  ===========================  ==================
``IN_NAME``         device name                  ``RCT basic``
``IN_PV_4``         actual speed, rpm            ``500 4``
``IN_SP_4``         speed setpoint, rpm          ``500 4``
``OUT_SP_4 n``      set speed setpoint, rpm      (none)
``START_4``         motor on                     (none)
``STOP_4``          motor off                    (none)
``STATUS_4``        motor state (autolab ext.)   ``1 4`` on, ``0 4`` off, ``-1 4`` blocked
==================  ===========================  ==================

``STATUS_4`` follows the NAMUR ``STATUS`` pattern; an IKA unit without it answers nothing: the
driver asks once at connect and then drives it without (start and stop checked by ``IN_SP_4``
answering, a blocked motor not detected). Replies end in "blank CR LF" in IKA's manuals; the
driver reads up to the CR, so a reply with or without the blank or the LF parses.
"""

from __future__ import annotations

import re

from autolab.exceptions import ConfigError, HardwareError

EOL = b"\r\n"
MOTOR = 4


class NamurProtocolError(HardwareError):
    """A NAMUR reply did not parse."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        self.partial = partial
        super().__init__(message)


def encode(command: str, value: float | None = None) -> bytes:
    r"""``COMMAND[ value]\\r\\n``.

    Raises:
        ConfigError: A command with characters outside ``A-Z _ 0-9``.
    """
    if not re.fullmatch(r"[A-Z_0-9]+", command):
        raise ConfigError(f"NAMUR command: expected upper-case letters/digits/_, got {command!r}")
    text = command if value is None else f"{command} {value:g}"
    return text.encode("ascii") + EOL


def parse_value(frame: bytes, channel: int = MOTOR) -> float:
    r"""Parse ``<value> <channel>\\r\\n``.

    Raises:
        NamurProtocolError: Malformed reply or wrong channel.
    """
    try:
        text = frame.decode("ascii").strip()
    except UnicodeDecodeError as err:
        raise NamurProtocolError(f"stirrer reply {frame!r}: not ASCII", frame) from err
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s+(\d+)", text)
    if not m or int(m.group(2)) != channel:
        raise NamurProtocolError(f"stirrer reply {frame!r}: expected '<value> {channel}'", frame)
    return float(m.group(1))


def format_value(value: float, channel: int = MOTOR) -> bytes:
    """The device's answer to an ``IN_`` query (for the emulator)."""
    return f"{value:g} {channel}".encode("ascii") + EOL


def split_command(line: bytes) -> tuple[str, float | None]:
    """Split a received command line into (COMMAND, value or None) — the device's view.

    Raises:
        NamurProtocolError: Not ASCII, or a value that is not a number.
    """
    try:
        parts = line.decode("ascii").strip().split()
    except UnicodeDecodeError as err:
        raise NamurProtocolError(f"stirrer command {line!r}: not ASCII") from err
    if not parts:
        return "", None
    if len(parts) == 1:
        return parts[0].upper(), None
    try:
        return parts[0].upper(), float(parts[1])
    except ValueError as err:
        raise NamurProtocolError(f"stirrer command {line!r}: value is not a number") from err
