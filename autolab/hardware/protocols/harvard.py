r"""Harvard Apparatus Pump 11 Elite / PHD ULTRA ("Protocol 11"), pure functions.

Facts (Pump 11 Elite manual, Publication 5420-002 Rev C, p.53-58; PHD ULTRA manual p.83-88):

* Host -> pump: ``[address]command [args]\r``. The address (1-99) precedes the command only
  when it is nonzero; the pump on the computer's port is address 0 and takes bare commands. The
  Elite manual writes ``12irat 3.2 u/m`` (no colon), the PHD ULTRA manual ``12:irat 3.2
  ul/min``: we send the Elite form, and the PHD ULTRA's address form or rate units to a pump
  that does not take the Elite's (``colon``, ``long_units``; the driver finds out).
* ``echo on|off`` is named but not the echo's form: :func:`parse_reply` drops a raw echo
  before the reply and an echo line with or without the request's address.
* Pump -> host: each data line ``\n[NN:]text\r``, then the prompt ``\n[NN]P`` where ``NN`` is
  the two-digit address of a nonzero-address pump ("no colon is used to separate the pump
  address from the prompt") and ``P`` is ``:`` idle, ``>`` infusing, ``<`` withdrawing, ``*``
  stalled, ``T*`` target reached. The prompt has no terminator; in poll mode an XON (0x11)
  follows it, which is tolerated.
* Errors: ``Command error:`` or ``Argument error: <arg>`` on one line, the message indented on
  the next, then the prompt. ``Unknown command`` and ``Out of range`` are also read as errors.
* Rates: ``irate <value> <units>`` with units ``m``/``u``/``n``/``p`` litres per ``h``/``m``/
  ``s`` (``m/m`` = mL/min); the query answers ``<value> <xl/xxx>`` (``1.5 ml/min``). Volumes
  answer ``<value> <xl>`` (``0.25 ml``); the diameter ``<value> mm``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.limits import Answer, answer

CR = b"\r"
LF = b"\n"
XON = b"\x11"

#: Prompt -> meaning (the manual's prompt characters).
PROMPTS = {":": "idle", ">": "infusing", "<": "withdrawing", "*": "stalled",
           "T*": "target reached"}
#: Reply lines that say the pump refused the command (manual's two, and two more a public
#: driver also treats as errors).
ERROR_MARKS = ("command error", "argument error", "unknown command", "out of range")

#: Volume prefixes, in mL.
VOLUME_ML = {"m": 1.0, "u": 1e-3, "n": 1e-6, "p": 1e-9, "f": 1e-12}
#: Time units as the pump may write them, in minutes.
TIME_MIN = {"h": 60.0, "hr": 60.0, "m": 1.0, "min": 1.0, "s": 1.0 / 60.0, "sec": 1.0 / 60.0}
#: Rate units we write (command form) with their value in mL/min, coarsest first.
RATE_UNITS_ML_MIN = {"m/m": 1.0, "u/m": 1e-3, "u/h": 1e-3 / 60.0, "n/m": 1e-6}
#: The same units as the PHD ULTRA manual writes them (``12:irat 3.2 ul/min``).
LONG_UNITS = {"m/m": "ml/min", "u/m": "ul/min", "u/h": "ul/hr", "n/m": "nl/min"}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PROMPT_END = re.compile(rb"\n(\d\d)?(T\*|[:><*])\x11?$")


class HarvardProtocolError(HardwareError):
    """A reply is malformed (framing, address, unparsable value)."""


@dataclass(frozen=True)
class HarvardReply:
    """One parsed reply: the data lines and the prompt.

    Attributes:
        address: Address the reply carries (``None``: none, as address 0 writes it).
        lines: Data lines, address prefix removed, stripped, empty ones dropped.
        prompt: ``:``, ``>``, ``<``, ``*`` or ``T*``.
    """

    address: int | None
    lines: tuple[str, ...]
    prompt: str

    @property
    def error(self) -> str | None:
        """The error text (``"Argument error: 99 / Out of range"``), ``None`` if none."""
        for i, line in enumerate(self.lines):
            if line.lower().startswith(ERROR_MARKS):
                return " / ".join(self.lines[i:])
        return None

    @property
    def pumping(self) -> bool:
        """The motor runs (infusing or withdrawing prompt)."""
        return self.prompt in (">", "<")

    @property
    def text(self) -> str:
        """The data lines joined by spaces (one-line answers)."""
        return " ".join(self.lines)


# ----------------------------------------------------------------------------- requests
def encode_command(address: int, command: str, args: str = "", *, colon: bool = False) -> bytes:
    r"""A request: ``[address]command[ args]\r`` (no address for pump 0, as the manual says).

    ``colon`` writes the PHD ULTRA manual's form ``12:irat`` instead of the Elite manual's
    ``12irat`` (the manuals differ; neither says the other form is taken).

    Raises:
        ConfigError: Address outside 0-99, or a command that is not lowercase letters.
    """
    if not 0 <= address <= 99:
        raise ConfigError(f"Harvard pump address: expected 0-99, got {address!r}")
    if not re.fullmatch(r"[a-z]*", command):
        raise ConfigError(f"Harvard pump command: expected lowercase letters, got {command!r}")
    prefix = (f"{address}:" if colon else str(address)) if address else ""
    tail = f" {args}" if args else ""
    return f"{prefix}{command}{tail}".encode("ascii") + CR


def split_request(line: str) -> tuple[int, str, str]:
    """The pump's view of a request line: (address, command, args).

    Accepts the Elite form ``12irat 1 m/m`` and the PHD ULTRA form ``12:irat 1 m/m``; a line
    without a leading number is for address 0. Commands are matched case-insensitively.
    """
    m = re.fullmatch(r"\s*(\d{1,2})?:?\s*@?([A-Za-z]*)\s*(.*?)\s*", line)
    assert m is not None  # every part is optional
    address = int(m.group(1)) if m.group(1) else 0
    return address, m.group(2).lower(), m.group(3)


def format_number(value: float) -> str:
    """A plain decimal for a command argument: 6 significant digits, no exponent.

    Raises:
        ConfigError: Negative or not finite.
    """
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"Harvard pump number: expected a finite value >= 0, got {value!r}")
    if value == 0:
        return "0"
    decimals = max(0, 6 - (math.floor(math.log10(value)) + 1))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def rate_args(rate_ml_min: float, *, long_units: bool = False) -> str:
    """``irate``/``wrate`` arguments ``<value> <units>``: the coarsest unit whose value is >= 1.

    Keeps the number readable (``0.05`` mL/min is written ``50 u/m``) and its 6 significant
    digits meaningful. ``long_units`` writes the PHD ULTRA manual's ``50 ul/min`` instead of
    the Elite manual's ``50 u/m`` (the manuals differ; neither says the other form is taken).

    Raises:
        ConfigError: Negative or not finite.
    """
    format_number(rate_ml_min)  # validates
    units = "n/m"
    for candidate, scale in RATE_UNITS_ML_MIN.items():
        if rate_ml_min / scale >= 1.0:
            units = candidate
            break
    value = format_number(rate_ml_min / RATE_UNITS_ML_MIN[units])
    return f"{value} {LONG_UNITS[units] if long_units else units}"


# ----------------------------------------------------------------------------- replies
def prompt_end(data: bytes, address: int) -> bool:
    r"""Whether ``data`` ends with the prompt of the pump at ``address`` (a complete reply).

    A nonzero-address pump writes its idle prompt ``\nNN:``, which is also how its data lines
    begin: the caller must wait a moment for more bytes before taking that one as the end
    (:func:`prompt_is_ambiguous`).
    """
    m = _PROMPT_END.search(data)
    if m is None:
        return False
    got = int(m.group(1)) if m.group(1) else 0
    return got == address


def prompt_is_ambiguous(data: bytes, address: int) -> bool:
    r"""Whether a complete-looking reply may still be the start of a data line (``\nNN:``).

    Not once an XON follows the prompt (poll mode): that ends the reply.
    """
    return address != 0 and data.endswith(b":")


def parse_reply(frame: bytes, request: bytes = b"") -> HarvardReply:
    r"""Parse a reply: data lines (``\n[NN:]text\r``) and the final prompt (``\n[NN]P``).

    Tolerant where pumps and adapters differ: CR LF or LF CR line ends, an XON after the
    prompt, blank lines, and the echo of ``request`` (``echo on``; the manual does not say its
    form): written raw before the reply, or as its first data line with or without the
    request's address. Strict where it matters: no prompt, or lines from two addresses, is a
    malformed reply.

    Raises:
        HarvardProtocolError: No prompt at the end, non-ASCII bytes, or mixed addresses.
    """
    try:
        text = strip_echo(frame, request).decode("ascii")
    except UnicodeDecodeError as err:
        raise HarvardProtocolError(f"Harvard reply {frame!r}: not ASCII") from err
    text = text.rstrip("\x11")
    m = re.search(r"\n(\d\d)?(T\*|[:><*])$", text)
    if m is None:
        raise HarvardProtocolError(f"Harvard reply {frame!r}: no prompt (:, >, <, *, T*) at "
                                   "the end")
    address = int(m.group(1)) if m.group(1) else None
    lines: list[str] = []
    for raw in re.split(r"[\r\n]+", text[:m.start()]):
        if not raw.strip():
            continue
        lm = re.fullmatch(r"(\d\d):(.*)", raw)
        line_addr = int(lm.group(1)) if lm else None
        if address is not None and line_addr != address:
            raise HarvardProtocolError(f"Harvard reply {frame!r}: line {raw!r} is not from "
                                       f"address {address:02d}")
        lines.append((lm.group(2) if lm and address is not None else raw).strip())
    if lines and is_echo(lines[0], request):
        lines = lines[1:]
    return HarvardReply(address, tuple(lines), m.group(2))


def strip_echo(frame: bytes, request: bytes) -> bytes:
    r"""``frame`` without a raw echo of ``request`` at its start.

    A reply proper begins with LF, so a frame that begins with the request's own characters
    (its address included) carries the echo of a pump whose ``echo`` is on.
    """
    sent = request.rstrip(b"\r\n")
    return frame[len(sent):] if sent and frame.startswith(sent) else frame


def is_echo(line: str, request: bytes) -> bool:
    """Whether a reply's data line repeats ``request`` (with or without its address)."""
    sent = request.decode("ascii", errors="replace").strip()
    if not sent:
        return False
    _, command, args = split_request(sent)
    _, line_command, line_args = split_request(line)
    return bool(command) and (line_command, line_args) == (command, args)


def format_reply(address: int, lines: tuple[str, ...], prompt: str) -> bytes:
    """Inverse of :func:`parse_reply`, as the manual writes replies (the emulator's)."""
    head = f"{address:02d}:" if address else ""
    body = "".join(f"\n{head}{line}\r" for line in lines)
    tail = f"\n{address:02d}{prompt}" if address else f"\n{prompt}"
    return (body + tail).encode("ascii")


def parse_rate(text: str) -> float:
    """A rate answer ``1.5 ml/min`` (``ul/hr``, ``nl/s``, ``m/m`` ...) in mL/min.

    Raises:
        HarvardProtocolError: Not a number and a rate unit.
    """
    return parse_rate_answer(text).value


def parse_rate_answer(text: str) -> Answer:
    """:func:`parse_rate` with the answer's resolution (one unit of its last digit), mL/min.

    The manual writes the answer ``# xl/xxx`` without its precision: the digits the pump
    wrote are what it holds the rate to (:func:`~autolab.hardware.limits.matches_answer`).

    Raises:
        HarvardProtocolError: Not a number and a rate unit.
    """
    m = re.fullmatch(rf"\s*({_NUMBER})\s*([munpf])l?\s*/\s*(hr|h|min|m|sec|s)\s*", text,
                     flags=re.IGNORECASE)
    if m is None:
        raise HarvardProtocolError(f"Harvard rate reply {text!r}: expected <number> <xl/unit>")
    return answer(m.group(1), VOLUME_ML[m.group(2).lower()] / TIME_MIN[m.group(3).lower()])


def parse_volume(text: str) -> float:
    """A volume answer ``0.25 ml`` (``ul``, ``nl`` ...) in mL.

    Raises:
        HarvardProtocolError: Not a number and a volume unit.
    """
    m = re.fullmatch(rf"\s*({_NUMBER})\s*([munpf])l\s*", text, flags=re.IGNORECASE)
    if m is None:
        raise HarvardProtocolError(f"Harvard volume reply {text!r}: expected <number> <xl>")
    return float(m.group(1)) * VOLUME_ML[m.group(2).lower()]


def parse_diameter(text: str) -> float:
    """A diameter answer ``26.6000 mm`` in mm.

    Raises:
        HarvardProtocolError: Not a number of mm.
    """
    return parse_diameter_answer(text).value


def parse_diameter_answer(text: str) -> Answer:
    """:func:`parse_diameter` with the answer's resolution, mm.

    Raises:
        HarvardProtocolError: Not a number of mm.
    """
    m = re.fullmatch(rf"\s*({_NUMBER})\s*mm\s*", text, flags=re.IGNORECASE)
    if m is None:
        raise HarvardProtocolError(f"Harvard diameter reply {text!r}: expected <number> mm")
    return answer(m.group(1))


def format_rate(rate_ml_min: float) -> str:
    """A rate answer as the pump writes it (the emulator's): ``1.5 ml/min`` or ``50 ul/min``."""
    if rate_ml_min >= 1.0 or rate_ml_min == 0:
        return f"{format_number(rate_ml_min)} ml/min"
    return f"{format_number(rate_ml_min * 1e3)} ul/min"


def format_volume(volume_ml: float) -> str:
    """A volume answer as the pump writes it (the emulator's): ``1.25 ml`` or ``250 ul``."""
    if volume_ml >= 1.0 or volume_ml == 0:
        return f"{format_number(volume_ml)} ml"
    return f"{format_number(volume_ml * 1e3)} ul"


def lone_prompt(data: bytes) -> str | None:
    r"""The prompt if ``data`` is one stall or target prompt and nothing else (``\n12*``).

    Outside poll mode a pump sends these unasked when its state changes; an answer to a query
    always has a data line, so a lone one read in its place came unasked.
    """
    m = re.fullmatch(rb"[\r\n]*\n(\d\d)?(T\*|\*)\x11?", data)
    return m.group(2).decode("ascii") if m else None


def strip_unasked(frame: bytes) -> bytes:
    r"""``frame`` without the lone stall or target prompts that came unasked before the reply.

    A prompt ends a reply, so one followed by more bytes was not the reply's.
    """
    while m := re.match(rb"[\r\n]*\n(\d\d)?(T\*|\*)\x11?(?=[^\x11])", frame):
        frame = frame[m.end():]
    return frame


def prompt_events(data: bytes) -> list[tuple[int, str]]:
    """(address, prompt) of every stall or target prompt in bytes the host did not ask for.

    Without poll mode a pump may send a prompt unasked when its state changes; the transport
    hands such bytes to listeners before it throws them away, and a ``*`` there is a stall no
    later reply may repeat.
    """
    return [(int(m.group(1)) if m.group(1) else 0, m.group(2).decode("ascii"))
            for m in re.finditer(rb"\n(\d\d)?(T\*|\*)", data)]
