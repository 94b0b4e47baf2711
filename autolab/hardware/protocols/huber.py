"""Huber (Unistat, Petite Fleur) "PB" protocol: frames and temperatures (pure).

Facts: 9600 Bd 8N1. A frame is 10 characters: ``{``, ``M`` (master, the host) or ``S`` (slave,
the unit's reply), a 2-hex-digit variable address, 4 hex data digits (``****`` in a query),
CR LF. Temperatures are 16-bit two's complement in 0.01 °C (``{S00F2DF`` is -33.61 °C); -151 °C
marks an invalid temperature. Variables used: ``00`` setpoint, ``01`` internal (bath)
temperature, ``07`` process temperature, ``14`` temperature control active, ``16``
circulation, ``30``/``31`` lowest/highest setpoint. The status bit fields ``0A``/``3C`` (error,
warning, power failure ...) are named without their bit positions, so they are not decoded.
"""

from __future__ import annotations

import re

from autolab.hardware.transport import ProtocolError

SETPOINT = 0x00
INTERNAL_T = 0x01
RETURN_T = 0x02
PROCESS_T = 0x07
STATUS = 0x0A
CONTROL_ACTIVE = 0x14
CIRCULATION = 0x16
MIN_SETPOINT = 0x30
MAX_SETPOINT = 0x31

#: Setpoint decimals (0.01 °C).
DECIMALS = 2
#: The temperature that marks an invalid reading (no sensor, out of range), °C.
INVALID_C = -151.0

_REPLY = re.compile(rb"^\{S([0-9A-Fa-f]{2})([0-9A-Fa-f]{4})$")
_REQUEST = re.compile(rb"^\{M([0-9A-Fa-f]{2})([0-9A-Fa-f]{4}|\*{4})$")


class HuberProtocolError(ProtocolError):
    """A reply is not a PB slave frame, or answers another variable: retried."""


def encode_query(address: int) -> bytes:
    """Ask a variable: ``{M00****`` + CR LF."""
    return f"{{M{address:02X}****\r\n".encode("ascii")


def encode_write(address: int, word: int) -> bytes:
    """Write a variable: ``{M00`` + 4 hex digits + CR LF."""
    return f"{{M{address:02X}{word & 0xFFFF:04X}\r\n".encode("ascii")


def encode_reply(address: int, word: int) -> bytes:
    """The unit's side: ``{S`` + address + value + CR LF."""
    return f"{{S{address:02X}{word & 0xFFFF:04X}\r\n".encode("ascii")


#: The temperatures a 16-bit word in 0.01 °C can carry, °C.
WORD_RANGE_C = (-327.68, 327.67)


def to_word(value_c: float) -> int:
    """A temperature as the 16-bit two's complement word, 0.01 °C.

    Raises:
        ValueError: Beyond :data:`WORD_RANGE_C` (it would wrap round to another value).
    """
    centi = round(value_c * 10.0**DECIMALS)
    if not -0x8000 <= centi <= 0x7FFF:
        raise ValueError(f"{value_c:g} °C does not fit a PB temperature word "
                         f"({WORD_RANGE_C[0]:g} to {WORD_RANGE_C[1]:g} °C)")
    return centi & 0xFFFF


def from_word(word: int) -> float:
    """Inverse of :func:`to_word`."""
    signed = word - 0x10000 if word & 0x8000 else word
    return float(signed / 10**DECIMALS)


def is_invalid(word: int) -> bool:
    """Whether a temperature word is the invalid marker (-151 °C)."""
    return from_word(word) == INVALID_C


def parse_reply(frame: bytes, address: int) -> int:
    """The data word of a slave frame answering ``address``.

    Raises:
        HuberProtocolError: Not a slave frame, or one for another variable.
    """
    m = _REPLY.match(frame.strip())
    if m is None:
        raise HuberProtocolError(f"Huber reply {frame!r}: expected {{S<addr><4 hex>}} CR LF")
    if int(m.group(1), 16) != address:
        raise HuberProtocolError(f"Huber reply {frame!r} answers variable "
                                 f"{m.group(1).decode()}, expected {address:02X}")
    return int(m.group(2), 16)


def parse_request(line: bytes) -> tuple[int, int | None] | None:
    """The unit's side: (address, word or None for a query) of one request line, or None."""
    m = _REQUEST.match(line.strip())
    if m is None:
        return None
    data = m.group(2)
    return int(m.group(1), 16), None if data == b"****" else int(data, 16)
