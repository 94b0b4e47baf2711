r"""New Era NE-1000 / NE-500 syringe pump protocol: Basic mode and Safe mode, pure functions.

Facts (New Era's NE-1000, NE-500 and NE-1600 user manuals; NE-1000 manual §10.2):

* Basic mode, host -> pump: ``[address]COMMAND[args]\\r``; the pump strips spaces/control
  characters and upper-cases. Pump -> host: ``STX AA S [data | ?err] ETX`` (two-digit address,
  one status character, no CR).
* Status characters: ``I`` infusing, ``W`` withdrawing, ``S`` stopped, ``P`` paused, ``T`` timed
  pause, ``U`` user wait, ``X`` purging; an alarm replaces the status by ``A?x`` with ``x`` in
  ``R`` reset (power), ``S`` stall, ``T`` Safe-mode timeout, ``E``/``O`` program errors.
* Errors: ``?`` unknown command, ``?NA`` not applicable, ``?OOR`` out of range, ``?COM`` bad
  packet (Safe mode CRC), ``?IGN`` ignored.
* Safe mode packet: ``STX len data CRChi CRClo ETX``; ``len`` counts the bytes after STX (the
  length byte, data, two CRC bytes and ETX); CRC-16/XMODEM (CCITT, init 0) over ``data``.
  Manual example: ``02 08 'SAF0' 55 43 03``. The manual gives that layout for what the host
  sends and calls the auto-alarm a "status packet"; it does not say how a pump in Safe mode
  frames its replies. Our emulator answers with a Safe-mode packet whose data is the Basic
  reply body ``AA S [data]``; the driver reads that or a Basic frame (``STX`` then a digit).
* Numbers: at most 4 digits plus a decimal point, at most 3 decimals. Rates carry units
  ``UM`` (µL/min), ``MM`` (mL/min), ``UH`` (µL/h), ``MH`` (mL/h); the encoder picks the unit
  that keeps 4 significant digits instead of truncating (a bug of one public driver).
"""

from __future__ import annotations

import binascii
import math
import re
from dataclasses import dataclass

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.limits import Answer, answer

STX = 0x02
ETX = 0x03
CR = b"\r"

STATUS = {"I": "infusing", "W": "withdrawing", "S": "stopped", "P": "paused",
          "T": "timed pause", "U": "user wait", "X": "purging"}
ALARMS = {"R": "reset (power was interrupted)", "S": "motor stalled",
          "T": "safe-mode communications time out", "E": "pumping program error",
          "O": "pumping program phase out of range"}
ERRORS = {"": "command not recognized", "NA": "command not currently applicable",
          "OOR": "command data out of range", "COM": "invalid communications packet",
          "IGN": "command ignored"}

#: A number as the manual writes it: at most 4 digits and one decimal point, which may lead
#: (``.25``) or trail (``5.``).
NUMBER = r"(?:\d+\.?\d*|\.\d+)"

#: Rate units and their value in mL/min.
RATE_UNITS_ML_MIN = {"UM": 1e-3, "MM": 1.0, "UH": 1e-3 / 60.0, "MH": 1.0 / 60.0}


class PumpProtocolError(HardwareError):
    """A pump reply is malformed (framing, CRC, address). Subclass of HardwareError."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        self.partial = partial
        super().__init__(message)


@dataclass(frozen=True)
class PumpReply:
    """A parsed pump reply.

    Attributes:
        address: Pump network address (0-99), or ``None`` for a reply without one (tolerated:
            the manual's replies carry it, a pump or adapter that leaves it out still works).
        status: Status character (``I``, ``W``, ``S``, ...) or ``"A"`` for an alarm.
        alarm: Alarm code (``R``, ``S``, ``T``, ...) or ``""``.
        data: Reply data (query answer), ``""`` if none.
        error: Command error code (``""`` = unknown command, ``"OOR"``, ...) or ``None``.
    """

    address: int | None
    status: str
    alarm: str = ""
    data: str = ""
    error: str | None = None

    @property
    def pumping(self) -> bool:
        """Whether the motor runs (infusing, withdrawing or purging)."""
        return self.status in ("I", "W", "X")

    def body(self) -> str:
        """The reply body as the pump sends it (``AA S data``), for the emulator."""
        st = f"A?{self.alarm}" if self.alarm else self.status
        err = "" if self.error is None else f"?{self.error}"
        addr = "" if self.address is None else f"{self.address:02d}"
        return f"{addr}{st}{self.data}{err}"


# ----------------------------------------------------------------------------- numbers
def format_number(value: float) -> str:
    """NE number format: at most 4 digits and 3 decimals, rounded to 4 significant digits.

    Raises:
        ConfigError: Negative, non-finite, or too large to write in 4 digits (>= 9999.5).
    """
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"pump number: expected a finite value >= 0, got {value!r}")
    if value >= 9999.5:
        raise ConfigError(f"pump number: {value:g} needs more than 4 digits (max 9999)")
    if value == 0:
        return "0"
    digits = math.floor(math.log10(value)) + 1  # digits left of the point
    decimals = min(3, max(0, 4 - digits))
    text = f"{value:.{decimals}f}"
    if len(text.replace(".", "")) > 4:  # rounding carried into a new digit (e.g. 9.9996)
        text = f"{value:.{max(decimals - 1, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def rate_command_args(rate_ml_min: float, units: str | None = None) -> str:
    """``RAT`` arguments for a rate in mL/min, in the unit that keeps the most precision.

    Args:
        rate_ml_min: The rate, mL/min.
        units: Write it in this unit only (``UM``/``MM``/``UH``/``MH``): the manual says rate
            units cannot change while the pump runs, so a running pump keeps its unit.

    Raises:
        ConfigError: The rate cannot be written in any (or in the given) unit.
    """
    if not math.isfinite(rate_ml_min) or rate_ml_min < 0:
        raise ConfigError(f"pump rate: expected a finite value >= 0 mL/min, got {rate_ml_min!r}")
    if units is not None and units not in RATE_UNITS_ML_MIN:
        raise ConfigError(f"pump rate units: expected one of {list(RATE_UNITS_ML_MIN)}, "
                          f"got {units!r}")
    best: tuple[float, str] | None = None
    for unit, scale in RATE_UNITS_ML_MIN.items():
        if units is not None and unit != units:
            continue
        v = rate_ml_min / scale
        if v >= 9999.5:
            continue
        text = format_number(v)
        err = abs(float(text) * scale - rate_ml_min)
        if best is None or err < best[0]:
            best = (err, f"{text}{unit}")
    if best is None:
        where = "" if units is None else f" in {units}"
        raise ConfigError(f"pump rate: {rate_ml_min:g} mL/min is too large for the pump{where}")
    return best[1]


def rate_error(rate_ml_min: float, args: str) -> float:
    """Relative error of ``RAT`` arguments ``args`` against the wanted rate (0 for rate 0)."""
    got = parse_rate(args)
    return abs(got - rate_ml_min) / rate_ml_min if rate_ml_min > 0 else got


def parse_rate(data: str) -> float:
    """Parse a ``RAT`` query answer (``"1.234MM"``) to mL/min.

    Raises:
        PumpProtocolError: Not a number followed by a rate unit.
    """
    value, units = parse_rate_units(data)
    return value * RATE_UNITS_ML_MIN[units]


def parse_rate_units(data: str) -> tuple[float, str]:
    """Split a ``RAT`` answer (``"1.234MM"``, spaces and case tolerated) into (number, unit).

    Raises:
        PumpProtocolError: Not a number followed by a rate unit.
    """
    m = re.fullmatch(f"({NUMBER})(UM|MM|UH|MH)", _squeeze(data))
    if not m:
        raise PumpProtocolError(f"pump rate reply {data!r}: expected <number><UM|MM|UH|MH>")
    return float(m.group(1)), m.group(2)


def parse_rate_answer(data: str) -> tuple[Answer, str]:
    """A ``RAT`` answer as an :class:`~autolab.hardware.limits.Answer` in mL/min, and its unit.

    The manual gives the number's largest form only (4 digits, 3 decimals): the digits the
    pump wrote are what it holds the rate to (the read-back rule of every pump kind).

    Raises:
        PumpProtocolError: Not a number followed by a rate unit.
    """
    m = re.fullmatch(f"({NUMBER})(UM|MM|UH|MH)", _squeeze(data))
    if not m:
        raise PumpProtocolError(f"pump rate reply {data!r}: expected <number><UM|MM|UH|MH>")
    return answer(m.group(1), RATE_UNITS_ML_MIN[m.group(2)]), m.group(2)


def parse_number_answer(data: str) -> Answer:
    """A plain number answer (``DIA``) with its resolution (see :func:`parse_rate_answer`).

    Raises:
        PumpProtocolError: Not a number.
    """
    text = _squeeze(data)
    if not re.fullmatch(NUMBER, text):
        raise PumpProtocolError(f"pump reply {data!r}: expected a number")
    return answer(text)


def _squeeze(text: str) -> str:
    """Text without spaces or control characters, upper case (how the pump reads commands)."""
    return "".join(ch for ch in text if ch.isprintable() and not ch.isspace()).upper()


def number_ok(text: str) -> bool:
    """Whether ``text`` is a number the pump accepts: at most 4 digits, at most 3 decimals."""
    m = re.fullmatch(r"(\d*)\.?(\d*)", text)
    return (m is not None and 0 < len(m.group(1) + m.group(2)) <= 4
            and len(m.group(2)) <= 3)


def parse_float(data: str) -> float:
    """Parse a plain number answer (``DIA``): :func:`parse_number_answer`'s value.

    Raises:
        PumpProtocolError: Not a number.
    """
    return parse_number_answer(data).value


def parse_dispensed(data: str) -> tuple[float, float]:
    """Parse a ``DIS`` answer ``I<float>W<float><UL|ML>`` to (infused, withdrawn) in mL.

    Raises:
        PumpProtocolError: Malformed answer.
    """
    m = re.fullmatch(f"I({NUMBER})W({NUMBER})(UL|ML)", _squeeze(data))
    if not m:
        raise PumpProtocolError(f"pump DIS reply {data!r}: expected I<n>W<n><UL|ML>")
    scale = 1e-3 if m.group(3) == "UL" else 1.0
    return float(m.group(1)) * scale, float(m.group(2)) * scale


def format_dispensed(infused_ml: float, withdrawn_ml: float, units: str) -> str:
    """Inverse of :func:`parse_dispensed` (the emulator's answer)."""
    scale = 1e3 if units == "UL" else 1.0
    return f"I{format_number(infused_ml * scale)}W{format_number(withdrawn_ml * scale)}{units}"


# ----------------------------------------------------------------------------- framing
def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (CCITT polynomial 0x1021, init 0) of Safe-mode command data."""
    return binascii.crc_hqx(data, 0)


def command_text(address: int, command: str, args: str = "") -> str:
    """The command data ``AACMDargs`` (two-digit address prefix, upper case, no spaces).

    Raises:
        ConfigError: Address outside 0-99 or a command that is not letters.
    """
    if not 0 <= address <= 99:
        raise ConfigError(f"pump address: expected 0-99, got {address!r}")
    if not re.fullmatch(r"[A-Za-z]*", command):
        raise ConfigError(f"pump command: expected letters, got {command!r}")
    return f"{address:02d}{command.upper()}{args.replace(' ', '').upper()}"


def encode_basic(address: int, command: str, args: str = "") -> bytes:
    r"""A Basic-mode request: ``AACMDargs\\r``."""
    return command_text(address, command, args).encode("ascii") + CR


def encode_safe_data(data: bytes) -> bytes:
    """Wrap ``data`` in a Safe-mode packet ``STX len data CRC ETX``.

    Raises:
        ConfigError: Data too long for the one-byte length.
    """
    length = len(data) + 4
    if length > 255:
        raise ConfigError(f"safe-mode packet: {len(data)} data bytes exceed 251")
    crc = crc16(data)
    return bytes([STX, length]) + data + bytes([crc >> 8, crc & 0xFF, ETX])


def encode_safe(address: int, command: str, args: str = "") -> bytes:
    """A Safe-mode request (same command data as Basic mode, no CR)."""
    return encode_safe_data(command_text(address, command, args).encode("ascii"))


def decode_safe(packet: bytes) -> bytes:
    """Data of a Safe-mode packet, after checking length, CRC and framing bytes.

    Raises:
        PumpProtocolError: Wrong STX/ETX, length or CRC.
    """
    if len(packet) < 5 or packet[0] != STX or packet[-1] != ETX:
        raise PumpProtocolError(f"safe-mode packet {packet!r}: expected STX ... ETX", packet)
    if packet[1] != len(packet) - 1:
        raise PumpProtocolError(f"safe-mode packet {packet!r}: length byte {packet[1]} but "
                                f"{len(packet) - 1} bytes follow STX", packet)
    data = packet[2:-3]
    crc = (packet[-3] << 8) | packet[-2]
    if crc16(data) != crc:
        raise PumpProtocolError(f"safe-mode packet {packet!r}: CRC {crc:04X}, expected "
                                f"{crc16(data):04X}", packet)
    return data


def parse_body(body: str) -> PumpReply:
    """Parse a reply body ``AA S [data|?err]`` (the part inside STX/ETX).

    Tolerant where the manual allows variation or real units differ: spaces, CR/LF and case
    are ignored, and the two-digit address may be missing. Strict where it matters: an alarm
    ``A?x`` and an error ``?xxx`` are reported as such whatever their code (an unknown code is
    still the pump refusing, never data), and no valid status character is a malformed reply.

    Raises:
        PumpProtocolError: No valid status character (after an optional address).
    """
    text = _squeeze(body)
    m = re.fullmatch(r"(\d\d)?(A\?[A-Z]?|[IWSPTUX])(.*)", text, flags=re.DOTALL)
    if not m:
        raise PumpProtocolError(f"pump reply body {body!r}: expected [<2-digit address>]"
                                f"<status>[data]")
    address = int(m.group(1)) if m.group(1) is not None else None
    st, rest = m.group(2), m.group(3)
    if st.startswith("A?"):
        alarm = st[2:] or "?"
        return PumpReply(address, "A", alarm, "", rest[1:] if rest.startswith("?") else None)
    if rest.startswith("?"):
        return PumpReply(address, st, "", "", rest[1:])
    return PumpReply(address, st, "", rest, None)


def parse_basic(frame: bytes) -> PumpReply:
    """Parse a Basic-mode reply ``STX body ETX``.

    Bytes before the last STX are line noise (a CR/LF some adapters append to the previous
    reply) and are skipped.

    Raises:
        PumpProtocolError: Missing STX/ETX, non-ASCII, or a malformed body.
    """
    start = frame.rfind(bytes([STX]))
    if start < 0 or len(frame) < start + 2 or frame[-1] != ETX:
        raise PumpProtocolError(f"pump reply {frame!r}: expected STX ... ETX", frame)
    try:
        body = frame[start + 1:-1].decode("ascii")
    except UnicodeDecodeError as err:
        raise PumpProtocolError(f"pump reply {frame!r}: not ASCII", frame) from err
    return parse_body(body)


def parse_safe(frame: bytes) -> PumpReply:
    """Parse a Safe-mode reply packet (CRC checked)."""
    try:
        body = decode_safe(frame).decode("ascii")
    except UnicodeDecodeError as err:
        raise PumpProtocolError(f"pump reply {frame!r}: not ASCII", frame) from err
    return parse_body(body)


def _frame_at(data: bytes, i: int) -> bytes:
    """The reply frame starting at ``data[i]`` (an STX), in either framing; b"" if none.

    After STX a Basic reply has an address digit, a Safe-mode packet its length byte.
    """
    if i + 1 >= len(data):
        return b""
    if chr(data[i + 1]).isdigit():
        end = data.find(bytes([ETX]), i)
        return data[i:end + 1] if end > i else b""
    frame = data[i:i + 1 + data[i + 1]]
    return frame if len(frame) == 1 + data[i + 1] and frame[-1] == ETX else b""


def stray_alarms(data: bytes) -> list[tuple[int, str]]:
    """(address, alarm code) of every alarm reply found in bytes the host did not ask for.

    A pump's alarm is acknowledged by the first reply that carries it, and in Safe mode it is
    announced by an auto-alarm packet; no command asks for a past alarm. So bytes the
    transport throws away (input waiting before a request, a late or misread reply) are
    scanned: they may be the only record of an alarm. Garbage and other replies are skipped.
    """
    out: list[tuple[int, str]] = []
    i = data.find(bytes([STX]))
    while i >= 0:
        frame = _frame_at(data, i)
        if frame:
            try:
                reply = parse_basic(frame) if chr(frame[1]).isdigit() else parse_safe(frame)
            except PumpProtocolError:
                reply = None
            if reply is not None and reply.alarm and reply.address is not None:
                out.append((reply.address, reply.alarm))
        i = data.find(bytes([STX]), i + 1)
    return out


def split_request(data: str) -> tuple[int | None, str, str]:
    """Split request command data into (address or None, COMMAND, args) — the pump's view.

    Spaces and control characters are dropped and text is upper-cased first, as the pump does.
    A ``*`` prefix (any address) gives ``None``.
    """
    clean = "".join(ch for ch in data if ch.isprintable() and ch != " ").upper()
    m = re.fullmatch(r"(\*|\d{1,2})?([A-Z]{0,3})(.*)", clean)
    assert m is not None  # the pattern matches any string
    addr_txt, cmd, args = m.group(1), m.group(2), m.group(3)
    address = None if addr_txt in (None, "*") else int(addr_txt)
    if addr_txt is None:
        address = 0
    return address, cmd, args
