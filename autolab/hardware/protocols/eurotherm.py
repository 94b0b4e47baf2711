"""Eurotherm 3200 series over Modbus RTU: register map, scaling and status bits (pure).

The Modbus framing itself is minimalmodbus's (the driver hands it the transport's port); this module
holds only what is specific to the instrument. Facts (Eurotherm 3200 series manual HA028651 §15.5):
16-bit registers carry integers scaled by the display resolution (one decimal here: 234.5 °C is
2345); the target setpoint (2) and SP1/SP2 (24/25) live in EEPROM with a 100 000-write limit, so the
driver writes the **remote (comms) setpoint, 26**, selected by register 276 (1 = remote), and lets
the controller ramp with its own **SP rate limit, 35** (°C/min, 0 = off). Status bitmap 75: bits 0-3
alarms 1-4, bit 4 manual mode, bit 5 sensor break, bit 6 loop break, bit 10 PV over-range, bit 14
remote SP fail.

The CRC below is only for the emulator's slave side (the instrument's firmware in the virtual
lab); the host side never hand-frames Modbus.
"""

from __future__ import annotations

from dataclasses import dataclass

PV = 1  #: process value (temperature), read
TARGET_SP = 2  #: target setpoint (EEPROM! never written continuously)
MANUAL_OP = 3  #: manual output value, % (what a controller in manual mode puts out)
WORKING_OP = 4  #: working output, %
WORKING_SP = 5  #: working setpoint (after the ramp), read only
REMOTE_SP = 26  #: remote comms setpoint: what the host writes
OP_HI = 30  #: output high limit, % (0 = heater output off)
SP_RATE = 35  #: setpoint rate limit, °C/min (0 = none)
STATUS = 75  #: instrument status bitmap
LOCAL_REMOTE = 276  #: 0 = local SP, 1 = remote SP

DECIMALS = 1  #: default display resolution (one decimal) -> register scaling
OP_DECIMALS = 1  #: output power registers (%) carry one decimal

#: Registers a host may read but not write (the emulated slave answers exception 02).
READ_ONLY = frozenset({PV, WORKING_OP, WORKING_SP, STATUS})

ALARM_BITS = 4  #: bits 0-3: alarms 1-4 (their meaning is the instrument's configuration)
MANUAL_BIT = 4
SENSOR_BREAK_BIT = 5
LOOP_BREAK_BIT = 6
OVER_RANGE_BIT = 10
REMOTE_FAIL_BIT = 14

#: Function codes the emulated slave answers (minimalmodbus uses 3 to read and 16 to write).
READ_HOLDING = 3
READ_INPUT = 4
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16
BROADCAST = 0  #: slave address every slave obeys and none answers

#: Modbus exception codes the emulated slave sends (function code | 0x80, then the code).
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
DEVICE_FAILURE = 4
SLAVE_BUSY = 6


@dataclass(frozen=True)
class ControllerStatus:
    """Decoded status bitmap (register 75).

    Attributes:
        sensor_break: Thermocouple open/short: the PV is meaningless.
        loop_break: Output saturated without the PV responding (heater or sensor fault).
        over_range: PV beyond the input range.
        remote_sp_fail: The remote setpoint is not being received: the controller runs on
            its local setpoint.
        raw: The raw 16-bit word.
        manual_mode: Bit 4 (auto/manual) set: the controller is in manual, its output is held
            and the PV no longer follows any setpoint.
        alarms: The active alarms among 1-4 (bits 0-3). Not a fault: what an alarm means is
            the instrument's configuration, and the manual's safety guidance says the
            controller alarm "is not designed to function as a protective measure"; the
            supervisor's own limits decide. Shown so a person can see it.
    """

    sensor_break: bool
    loop_break: bool
    over_range: bool
    remote_sp_fail: bool
    raw: int
    manual_mode: bool = False
    alarms: tuple[int, ...] = ()

    @property
    def fault(self) -> str:
        """A short name of the worst fault, or ``""``."""
        for name in ("sensor_break", "loop_break", "over_range", "manual_mode",
                     "remote_sp_fail"):
            if getattr(self, name):
                return name
        return ""


def decode_status(word: int) -> ControllerStatus:
    """Decode register 75."""
    def bit(n: int) -> bool:
        return bool((word >> n) & 1)
    return ControllerStatus(bit(SENSOR_BREAK_BIT), bit(LOOP_BREAK_BIT), bit(OVER_RANGE_BIT),
                            bit(REMOTE_FAIL_BIT), word & 0xFFFF, bit(MANUAL_BIT),
                            tuple(n + 1 for n in range(ALARM_BITS) if bit(n)))


def encode_status(*, sensor_break: bool = False, loop_break: bool = False,
                  over_range: bool = False, remote_sp_fail: bool = False,
                  manual_mode: bool = False) -> int:
    """Inverse of :func:`decode_status` (the emulator's register 75)."""
    return ((manual_mode << MANUAL_BIT) | (sensor_break << SENSOR_BREAK_BIT)
            | (loop_break << LOOP_BREAK_BIT) | (over_range << OVER_RANGE_BIT)
            | (remote_sp_fail << REMOTE_FAIL_BIT))


def to_register(value_c: float, decimals: int = DECIMALS) -> int:
    """Scale a value to a signed 16-bit register word (two's complement)."""
    scale: float = 10.0**decimals
    return round(value_c * scale) & 0xFFFF


def from_register(word: int, decimals: int = DECIMALS) -> float:
    """Inverse of :func:`to_register`."""
    signed = word - 0x10000 if word & 0x8000 else word
    return float(signed / 10**decimals)


def crc_modbus(data: bytes) -> bytes:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), low byte first (slave side)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes([crc & 0xFF, crc >> 8])
