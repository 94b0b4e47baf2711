"""Omega CN7200/CN7500/CN7600/CN7800 over Modbus: registers, PV error codes, ASCII frames (pure).

The host side's Modbus framing is minimalmodbus's (RTU or ASCII); this module holds what is
specific to the instrument, and the ASCII frame and its LRC for the emulator's slave side.
Facts (the CN7500-series register map): PV at 0x1000 and SV at 0x1001, both in 0.1 °C; the
temperature range limits at 0x1002 (upper) and 0x1003 (lower); a status/error code at 0x102E
(0x4750 on some models); the RUN (1) / STOP (0) bit 0x0814. A PV that cannot be measured reads
an error code instead of a temperature: 0x8002 re-initialising (no temperature yet), 0x8003
sensor not connected, 0x8004 input signal error, 0x8006 A/D converter failure. The control
method at 0x1005: 0 PID, 1 ON/OFF, 2 manual tuning, 3 PID program. Function codes:
3 reads registers, 6 writes one, 2 reads bits, 5 writes one. ASCII mode, 7 data bits, even
parity, 1 stop bit, 9600 Bd is the usual factory setting; RTU needs 8 data bits.

The register map gives no setpoint-ramp register (only a ramp/soak program block, 0x2000 to
0x203F, without a layout): the driver ramps the SV itself (see
:class:`~autolab.hardware.controllers.OmegaCN7500`).
"""

from __future__ import annotations

from autolab.exceptions import HardwareError

PV = 0x1000  #: process value, 0.1 °C (or an error code, :data:`PV_ERRORS`)
SV = 0x1001  #: setpoint, 0.1 °C
RANGE_HIGH = 0x1002  #: upper limit of the temperature range, 0.1 °C
RANGE_LOW = 0x1003  #: lower limit of the temperature range, 0.1 °C
CONTROL_METHOD = 0x1005  #: 0 PID, 1 ON/OFF, 2 manual tuning, 3 PID program
STATUS = 0x102E  #: status/error code (0: none)
STATUS_ALT = 0x4750  #: the same code on some models
RUN_BIT = 0x0814  #: 1 RUN, 0 STOP

DECIMALS = 1  #: PV and SV carry 0.1 °C

#: Function codes in the register map: read bits, read registers, write bit, write register.
READ_COILS = 1  #: Modbus's read coils: not in the map (the driver's fallback for 2)
READ_BITS = 2
READ_REGISTERS = 3
WRITE_BIT = 5
WRITE_REGISTER = 6

#: PV words that are error codes, not temperatures: (fault name, what the manual says).
PV_ERRORS: dict[int, tuple[str, str]] = {
    0x8002: ("input_error", "re-initialising, no temperature yet"),
    0x8003: ("sensor_break", "sensor not connected"),
    0x8004: ("input_error", "input signal error"),
    0x8006: ("input_error", "A/D converter failure"),
}
#: The PV word of a unit still initialising ("re-initialize/no temp yet"): expected for a few
#: seconds after power-up, a fault at any other time.
NO_TEMPERATURE_YET = 0x8002
#: Words the driver reads as error codes although the map lists only four: a reading this far
#: below zero (-3276.8 to -3275.3 °C) is no temperature, and a code the map does not name
#: (0x8005) must not pass for one either.
PV_ERROR_BAND = range(0x8000, 0x8010)

#: Control methods (register 0x1005) under which the unit does not follow the SV it is sent:
#: manual tuning holds a manual output (0x1012/0x1013), a PID program sets its own SV.
#: PID (0) and ON/OFF (1) both follow the SV.
METHOD_FAULTS = {2: ("manual_mode", "manual tuning"), 3: ("program_mode", "PID program")}

#: Status/error codes the map names (0: no error; the others it leaves out).
STATUS_CODES = {0x0001: "PV unstable", 0x0007: "EEPROM error"}


class OmegaProtocolError(HardwareError):
    """An ASCII Modbus frame is malformed (bad start, hex or LRC)."""


def pv_fault(word: int) -> tuple[str, str]:
    """The fault a PV word is, as (fault name, description), or ``("", "")`` for a temperature."""
    if word in PV_ERRORS:
        return PV_ERRORS[word]
    if word in PV_ERROR_BAND:
        return "input_error", f"PV error code 0x{word:04X}"
    return "", ""


def to_word(value_c: float) -> int:
    """A temperature as a 16-bit register word, 0.1 °C, two's complement below zero."""
    return round(value_c * 10.0**DECIMALS) & 0xFFFF


def from_word(word: int) -> float:
    """Inverse of :func:`to_word` (a caller checks :func:`pv_fault` first for a PV)."""
    signed = word - 0x10000 if word & 0x8000 else word
    return float(signed / 10**DECIMALS)


def status_fault(code: int) -> str:
    """A short description of a status/error code (``""``: no error)."""
    if code == 0:
        return ""
    return STATUS_CODES.get(code, f"error code 0x{code:04X}")


def lrc(data: bytes) -> int:
    """Modbus ASCII longitudinal redundancy check: two's complement of the byte sum."""
    return (-sum(data)) & 0xFF


def encode_ascii(pdu: bytes) -> bytes:
    """One Modbus ASCII frame: ``:`` + hex(address, function, data, LRC) + CR LF."""
    return b":" + (pdu + bytes([lrc(pdu)])).hex().upper().encode("ascii") + b"\r\n"


def decode_ascii(frame: bytes) -> bytes:
    """The address, function and data of one ASCII frame (LRC checked and removed).

    Raises:
        OmegaProtocolError: No leading ``:``, no CR LF, odd or non-hex digits, bad LRC.
    """
    if not frame.startswith(b":") or not frame.endswith(b"\r\n"):
        raise OmegaProtocolError(f"not a Modbus ASCII frame: {frame!r}")
    digits = frame[1:-2]
    try:
        raw = bytes.fromhex(digits.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as err:
        raise OmegaProtocolError(f"bad hex in Modbus ASCII frame {frame!r}") from err
    if len(digits) % 2 or len(raw) < 3:
        raise OmegaProtocolError(f"Modbus ASCII frame too short or odd: {frame!r}")
    if lrc(raw[:-1]) != raw[-1]:
        raise OmegaProtocolError(f"bad LRC in Modbus ASCII frame {frame!r}")
    return raw[:-1]
