r"""VICI Valco universal electric actuator (multiposition selection valve), ASCII (pure).

VICI's serial protocol (Universal Actuator / EUH/EMH manuals, "Serial Communication"): 9600 Bd
8N1, commands terminated by CR, optional one-character device ID prefix (``1GO3``). Commands used:

==========  ==========================  ===========================
command     meaning                     reply
==========  ==========================  ===========================
``GOn``     move to position n          (none; query ``CP``)
``CP``      current position            ``Position is = n\\r``
``NP``      number of positions         ``NP = n\\r``
``VR``      firmware version            version text ``\\r``
==========  ==========================  ===========================

A position the valve does not have, or an unknown command, is answered with
``Bad command\\r``. ``GO`` gets no reply, so the driver reads the position back with ``CP``
(polling until the move, ~0.1 s per port, has finished).
"""

from __future__ import annotations

import re

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.transport import DeviceRefused

EOL = b"\r"


class ValveProtocolError(HardwareError):
    """A valve reply did not parse (or was ``Bad command``)."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        self.partial = partial
        super().__init__(message)


def encode(command: str, arg: int | None = None, device_id: str = "") -> bytes:
    r"""``[id]COMMAND[arg]\\r``.

    Raises:
        ConfigError: Unknown command letters or a device id longer than one character.
    """
    if command not in ("GO", "CP", "NP", "VR"):
        raise ConfigError(f"valve command: expected GO, CP, NP or VR, got {command!r}")
    if len(device_id) > 1:
        raise ConfigError(f"valve device id: expected one character, got {device_id!r}")
    text = f"{device_id}{command}{'' if arg is None else int(arg)}"
    return text.encode("ascii") + EOL


def _text(frame: bytes) -> str:
    """The reply text; ``Bad command`` is the actuator refusing (never retried)."""
    text = frame.decode("ascii", errors="replace").strip()
    if text.lower().startswith("bad command"):
        raise DeviceRefused(f"valve answered {text!r}")
    return text


def parse_position(frame: bytes) -> int:
    """Parse the ``CP`` answer ``Position is = n``.

    Tolerated: ``Position is n``, ``CPnn``, ``CP = n``, any case and spacing, a leading
    one-character device ID (an actuator with an ID set).

    Raises:
        DeviceRefused: ``Bad command``.
        ValveProtocolError: Anything else that is not a position.
    """
    text = _text(frame)
    m = re.fullmatch(r"[0-9a-z]?(?:position\s*is|cp)\s*=?\s*\"?(\d+)\"?", text,
                     flags=re.IGNORECASE)
    if not m:
        raise ValveProtocolError(f"valve reply {frame!r}: expected 'Position is = n'", frame)
    return int(m.group(1))


def parse_count(frame: bytes) -> int:
    """Parse the ``NP`` answer: ``NP = n`` (tolerated: ``NPnn``, any case, spacing, an ID).

    Raises:
        DeviceRefused: ``Bad command``.
        ValveProtocolError: Anything else that is not a count.
    """
    text = _text(frame)
    m = re.fullmatch(r"[0-9a-z]?np\s*=?\s*(\d+)", text, flags=re.IGNORECASE)
    if not m:
        raise ValveProtocolError(f"valve reply {frame!r}: expected 'NP = n'", frame)
    return int(m.group(1))


def split_command(line: bytes) -> tuple[str, int | None]:
    """The actuator's view of a command line: (COMMAND, argument or None).

    ``("", None)`` if it is not a command the actuator knows.
    """
    text = line.decode("ascii", errors="replace").strip().upper()
    m = re.fullmatch(r"[0-9A-Z]?(GO|CP|NP|VR)(\d*)", text)
    if not m:
        return "", None
    return m.group(1), (int(m.group(2)) if m.group(2) else None)
