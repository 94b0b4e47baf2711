r"""Chemyx Fusion syringe pumps (100/200/4000/6000, X variants, Nanojet, OEM), pure functions.

Facts (Chemyx knowledge base, "RS232 communication" and "serial commands"; OEM manual):

* 9600 or 38400 Bd depending on the model, 8N1. Commands are lowercase English words ended by
  ``\r`` or ``\r\n`` (``\n`` alone is not valid); a dual-channel pump takes a channel prefix
  ``1 `` or ``2 `` (``1 set rate 5.0``).
* The pump echoes the command line, then its reply lines, then the prompt ``>``.
* "Most commands return the set value ... if the value in the response is not the same as the
  value in the command, the command value was outside the limits": a set is verified by its
  echo (``set rate 1.5`` -> ``rate = 1.5``).
* ``set units n``: 0 mL/min, 1 mL/h, 2 µL/min, 3 µL/h. ``set volume ±x``: the sign selects
  infuse (+) or withdraw (-). ``pump status``: 0 stopped, 1 running, 2 paused, 3 delayed,
  4 stalled. ``view parameter`` answers ``unit = n``, ``dia = x``, ``rate = x``,
  ``volume = x``, ``time = x``, ``delay = x`` lines.

What the manual does not say (see docs/hardware.md): the form of an error reply to an unknown
command, the unit of ``dispensed volume``, whether it restarts at each ``start``, and any
command that clears it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.limits import Answer, answer

CR = b"\r"
PROMPT = b">"

#: ``set units`` codes -> (rate unit in mL/min, volume unit in mL).
UNITS = {0: (1.0, 1.0), 1: (1.0 / 60.0, 1.0), 2: (1e-3, 1e-3), 3: (1e-3 / 60.0, 1e-3)}
#: ``pump status`` codes.
STATUS = {0: "stopped", 1: "running", 2: "paused", 3: "delayed", 4: "stalled"}

#: Names of one parameter in a set's echo and in ``view parameter``.
ALIASES = {"units": ("units", "unit"), "unit": ("unit", "units"),
           "diameter": ("diameter", "dia"), "dia": ("dia", "diameter")}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class ChemyxProtocolError(HardwareError):
    """A reply is malformed (no prompt, a value that is not a number, a missing line)."""


@dataclass(frozen=True)
class ChemyxReply:
    """One parsed reply: its lines, without the echo of the request and the prompt.

    Attributes:
        lines: Reply lines, stripped, empty ones dropped.
    """

    lines: tuple[str, ...]

    def value(self, key: str) -> str | None:
        """The value of a ``key = value`` line (``None`` if there is none).

        ``view parameter`` writes ``unit``/``dia`` where a set echoes ``units``/``diameter``:
        either name finds either line.
        """
        names = ALIASES.get(key, (key,))
        for line in self.lines:
            m = re.fullmatch(r"([a-z ]+?)\s*[=:]\s*(.*)", line, flags=re.IGNORECASE)
            if m and m.group(1).lower() in names:
                return m.group(2).strip()
        return None

    @property
    def text(self) -> str:
        """The lines joined by spaces."""
        return " ".join(self.lines)


def encode_command(channel: int, command: str) -> bytes:
    r"""A request: ``[channel ]command\r`` (channel 0: a single-channel pump, no prefix).

    Raises:
        ConfigError: Channel not 0, 1 or 2, or a command with upper case or a line end.
    """
    if channel not in (0, 1, 2):
        raise ConfigError(f"Chemyx channel: expected 0 (single), 1 or 2, got {channel!r}")
    if command != command.lower() or re.search(r"[\r\n]", command):
        raise ConfigError(f"Chemyx command: expected one lowercase line, got {command!r}")
    prefix = f"{channel} " if channel else ""
    return f"{prefix}{command}".encode("ascii") + CR


def split_request(line: str) -> tuple[int, str]:
    """The pump's view of a request line: (channel, command); no prefix is channel 0."""
    m = re.fullmatch(r"\s*(?:([12])\s+)?(.*?)\s*", line)
    assert m is not None  # every part is optional
    return (int(m.group(1)) if m.group(1) else 0), m.group(2)


def format_number(value: float) -> str:
    """A plain decimal (6 significant digits, no exponent, sign kept).

    Raises:
        ConfigError: Not finite.
    """
    if not math.isfinite(value):
        raise ConfigError(f"Chemyx number: expected a finite value, got {value!r}")
    if value == 0:
        return "0"
    decimals = max(0, 6 - (math.floor(math.log10(abs(value))) + 1))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def reply_complete(data: bytes) -> bool:
    """Whether ``data`` ends with the prompt: ``>`` at the start of a line (or alone)."""
    body = data.rstrip(b" ")
    return body == PROMPT or body.endswith((b"\n>", b"\r>"))


def parse_reply(frame: bytes, request: bytes = b"") -> ChemyxReply:
    """Parse a reply: lines up to the final prompt, the echo of ``request`` dropped.

    The echo is recognized with or without the channel prefix, and may be missing (``echo
    off``): the knowledge base does not say whether a channel's echo repeats its prefix, nor
    whether a channel's answers do (:func:`strip_channel`).

    Raises:
        ChemyxProtocolError: No prompt at the end.
    """
    if not reply_complete(frame):
        raise ChemyxProtocolError(f"Chemyx reply {frame!r}: no '>' prompt at the end")
    # the knowledge base writes "Pump start running…": a byte outside ASCII is not garble
    text = frame.decode("ascii", errors="replace").rstrip(" ")[:-1]
    lines = [x.strip() for x in re.split(r"[\r\n]+", text) if x.strip()]
    echo = request.decode("ascii", errors="replace").strip()
    if lines and echo and split_request(lines[0])[1] == split_request(echo)[1]:
        lines = lines[1:]  # the echo, with or without the channel prefix
    channel = split_request(echo)[0]
    return ChemyxReply(tuple(strip_channel(x, channel) for x in lines))


def strip_channel(line: str, channel: int) -> str:
    """A reply line without its channel's prefix (``1 rate = 0.5`` -> ``rate = 0.5``).

    The knowledge base names the prefix for requests only; a dual pump that also writes it
    before its answers must not have ``1 0.05`` (dispensed) read as 1. The prefix is dropped
    where what follows still holds a value (a digit or ``=``): a bare ``1`` (status) or
    ``1 ml`` keeps it.
    """
    if not channel:
        return line
    m = re.fullmatch(rf"{channel}\s+(.*[\d=].*)", line)
    return m.group(1) if m else line


def format_reply(request: str, lines: tuple[str, ...]) -> bytes:
    """A reply as the knowledge base describes it (the emulator's): echo, lines, ``>``."""
    return "".join(f"{x}\r\n" for x in (request, *lines)).encode("ascii") + PROMPT


def parse_number(text: str | None, what: str) -> float:
    """The first number in ``text`` (``1.5``, ``dispensed = 1.5 ml``).

    The unit, if the text names one, is :func:`volume_unit_ml`'s business.

    Raises:
        ChemyxProtocolError: Missing or not a number.
    """
    return parse_answer(text, what).value


def parse_answer(text: str | None, what: str) -> Answer:
    """:func:`parse_number` with the resolution it is written to (one unit of its last digit).

    The knowledge base does not say how many decimals a set value keeps.

    Raises:
        ChemyxProtocolError: Missing or not a number.
    """
    m = re.search(rf"(?<![\w.])({_NUMBER})", text or "")
    if m is None:
        raise ChemyxProtocolError(f"Chemyx {what}: expected a number, got {text!r}")
    return answer(m.group(1))


def volume_unit_ml(text: str, default_ml: float) -> float:
    """The volume unit a value names (``ml``/``ul``), in mL; ``default_ml`` if it names none."""
    m = re.search(r"([mu])l\b", text, flags=re.IGNORECASE)
    if m is None:
        return default_ml
    return 1.0 if m.group(1).lower() == "m" else 1e-3


def parse_status(text: str) -> int:
    """A ``pump status`` answer: 0-4 (``status = 1`` tolerated).

    Raises:
        ChemyxProtocolError: Not one of the manual's codes.
    """
    m = re.fullmatch(r"\s*(?:[a-z ]*[=:]\s*)?([0-4])\s*", text, flags=re.IGNORECASE)
    if m is None:
        raise ChemyxProtocolError(f"Chemyx pump status {text!r}: expected 0-4")
    return int(m.group(1))


