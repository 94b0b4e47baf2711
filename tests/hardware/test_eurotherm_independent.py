"""The Eurotherm 3200 driver against an emulator written from the manual alone, over a pty.

The project's own emulator (``autolab/virtuallab``) was written by the driver's authors, so a
misreading of HA028651 shared by both would hide. The slave below was written from the hardware
reference (§2.1 Eurotherm 3200, §4.6 ptys, §5 safety) and the Modbus RTU rules it cites, without
reading that emulator: RTU framing by inter-frame silence and CRC-16/MODBUS, function codes 3 and 4
(read), 6 and 16 (write), exception 01 for any other, 02 for an unknown or read-only register,
03 for a bad count or (switchable) a value out of range; silence to a broadcast (writes obeyed)
and to another address; the register map of §2.1 with 16-bit integers scaled by the display
resolution and the 32-bit float mirror at ``0x8000 + 2 * address``; the status word 75 bits.

Where the manual allows more than one reading the slave is switchable (``Readings``): the
decimals of the output-power registers, whether a value out of range is clamped or refused,
the units of the SP rate limit, whether the output limits bound a manual or a forced output.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import minimalmodbus
import pytest

from autolab.exceptions import HardwareError
from autolab.hardware.devices import parse_devices
from autolab.hardware.drivers import Eurotherm3200
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Supervisor, Trip
from autolab.hardware.transport import DeviceRefused, Transport

from .test_rig_registry import devices

# ----------------------------------------------------------------------------- the manual's map
PV, TG_SP, MAN_OP, WRK_OP, WKG_SP = 1, 2, 3, 4, 5
PB, TI, TD, RNG_LO, RNG_HI, A1, A2, SP_SEL, T_STAT = 6, 8, 9, 11, 12, 13, 14, 15, 23
SP1, SP2, RM_SP, OP_HI, OP_LO, SP_RAT, ERROR = 24, 25, 26, 30, 31, 35, 39
STAT, STAT_INV, A3, A4, F_OP, F_MOD, RC_PV, L_R = 75, 76, 81, 82, 84, 85, 103, 276

#: Registers scaled like the temperature (display resolution).
TEMPERATURE_REGS = frozenset({PV, TG_SP, WKG_SP, RNG_LO, RNG_HI, A1, A2, A3, A4, SP1, SP2,
                              RM_SP, SP_RAT, ERROR, RC_PV, PB})
#: Output-power registers, %.
OUTPUT_REGS = frozenset({MAN_OP, WRK_OP, OP_HI, OP_LO, F_OP})
#: Plain integers (selectors, times, bitmaps).
INTEGER_REGS = frozenset({TI, TD, SP_SEL, T_STAT, STAT, STAT_INV, F_MOD, L_R})
READ_ONLY = frozenset({PV, WRK_OP, WKG_SP, ERROR, STAT, STAT_INV, RC_PV})
EEPROM = frozenset({TG_SP, SP1, SP2})  # "limited (100,000) write cycles"

BIT_MANUAL, BIT_SENSOR_BREAK, BIT_LOOP_BREAK, BIT_OVER_RANGE = 4, 5, 6, 10
BIT_NEW_ALARM, BIT_REMOTE_FAIL = 12, 14
FLOAT_BASE = 0x8000


def crc16_modbus(data: bytes) -> bytes:
    """CRC-16/MODBUS (reflected 0x8005 = 0xA001, init 0xFFFF), sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


class ModbusError(Exception):
    """An exception reply: ``code`` (01 function, 02 address, 03 value)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Readings:
    """Switches for what the manual leaves open.

    Attributes:
        decimals: Display resolution of the temperature registers.
        op_decimals: Decimals of the output-power registers (None: the display resolution).
        out_of_range: ``"refuse"`` (exception 03) or ``"clamp"`` a write beyond its limits.
        rate_per: ``"min"`` or ``"hour"``: the units of SP.RAT.
        limits_bound_manual: OP.HI/OP.LO bound the manual output too.
        limits_bound_forced: OP.HI/OP.LO bound the sensor-break (forced) output too.
        functions: Function codes answered; any other gets exception 01.
        pv_on_break: ``"last"`` (PV register holds) or ``"high"`` (reads the range high).
    """

    decimals: int = 1
    op_decimals: int | None = 1
    out_of_range: str = "refuse"
    rate_per: str = "min"
    limits_bound_manual: bool = True
    limits_bound_forced: bool = True
    functions: frozenset[int] = frozenset({3, 4, 6, 16})
    pv_on_break: str = "last"


@dataclass
class Controller:
    """One 3200 and its heater block (first order; the time is the emulator's, accelerated)."""

    address: int
    readings: Readings = field(default_factory=Readings)
    values: dict[int, float] = field(default_factory=dict)
    pv_c: float = 25.0
    wsp_c: float = 25.0
    output_pct: float = 0.0
    manual: bool = False
    sensor_break: bool = False
    loop_break: bool = False
    over_range: bool = False
    remote_fail: bool = False
    alarms: frozenset[int] = frozenset()
    eeprom_writes: int = 0
    writes: list[tuple[int, int, int]] = field(default_factory=list)  # (fc, register, word)

    def __post_init__(self) -> None:
        self.values = {TG_SP: 25.0, MAN_OP: 0.0, PB: 20.0, TI: 360, TD: 60, RNG_LO: -50.0,
                       RNG_HI: 400.0, A1: 0.0, A2: 0.0, A3: 0.0, A4: 0.0, SP_SEL: 0,
                       T_STAT: 0, SP1: 25.0, SP2: 25.0, RM_SP: 0.0, OP_HI: 100.0, OP_LO: 0.0,
                       SP_RAT: 0.0, F_OP: 0.0, F_MOD: 2, L_R: 0}

    # ---------------------------------------------------------------- scaling
    def _decimals(self, reg: int) -> int:
        r = self.readings
        if reg in OUTPUT_REGS:
            return r.decimals if r.op_decimals is None else r.op_decimals
        return r.decimals if reg in TEMPERATURE_REGS else 0

    def read_word(self, reg: int) -> int:
        """A register as its 16-bit word (two's complement), scaled."""
        value = self.engineering(reg)
        return round(value * 10 ** self._decimals(reg)) & 0xFFFF

    def engineering(self, reg: int) -> float:
        """A register in its own units; ModbusError(2) if the map has no such address."""
        live = {PV: self._pv_reading(), WRK_OP: self.output_pct, WKG_SP: self.wsp_c,
                ERROR: self.pv_c - self.wsp_c, STAT: self.status(),
                STAT_INV: ~self.status() & 0xFFFF, RC_PV: 0.0}
        if reg in live:
            return float(live[reg])
        if reg in self.values:
            return float(self.values[reg])
        raise ModbusError(2)

    def _pv_reading(self) -> float:
        if self.sensor_break and self.readings.pv_on_break == "high":
            return self.values[RNG_HI]
        return self.pv_c

    def status(self) -> int:
        """Status word 75 (manual: B0-B3 alarms, B4 manual, B5 break, B6 loop, B10, B12, B14)."""
        word = sum(1 << (n - 1) for n in self.alarms)
        flags = ((self.manual, BIT_MANUAL), (self.sensor_break, BIT_SENSOR_BREAK),
                 (self.loop_break, BIT_LOOP_BREAK), (self.over_range, BIT_OVER_RANGE),
                 (bool(self.alarms), BIT_NEW_ALARM), (self.remote_fail, BIT_REMOTE_FAIL))
        return word | sum(1 << bit for on, bit in flags if on)

    # ---------------------------------------------------------------- writes
    def write_word(self, reg: int, word: int, fc: int) -> None:
        """Write one register (refusals as ModbusError)."""
        if reg in READ_ONLY or (reg not in self.values):
            raise ModbusError(2)
        signed = word - 0x10000 if word & 0x8000 else word
        value = signed / 10 ** self._decimals(reg)
        low, high = self._limits(reg)
        if not low <= value <= high:
            if self.readings.out_of_range == "refuse":
                raise ModbusError(3)
            value = min(max(value, low), high)
        self.writes.append((fc, reg, word))
        if reg in EEPROM:
            self.eeprom_writes += 1
        if reg == TG_SP:  # the target SP is the one SP.SEL selects
            self.values[SP2 if self.values[SP_SEL] else SP1] = value
        self.values[reg] = value

    def _limits(self, reg: int) -> tuple[float, float]:
        if reg in (TG_SP, SP1, SP2, RM_SP):
            return self.values[RNG_LO], self.values[RNG_HI]
        if reg == OP_HI:
            return self.values[OP_LO], 100.0
        if reg == OP_LO:
            return -100.0, self.values[OP_HI]
        if reg in OUTPUT_REGS:
            return -100.0, 100.0
        if reg in (L_R, SP_SEL):
            return 0.0, 1.0
        return -32768.0, 32767.0

    # ---------------------------------------------------------------- physics
    def active_sp_c(self) -> float:
        """Remote SP when selected and not failed, else the local (SP1/SP2) one."""
        if self.values[L_R] == 1 and not self.remote_fail:
            return self.values[RM_SP]
        return self.values[SP2 if self.values[SP_SEL] else SP1]

    def step(self, dt_s: float) -> None:
        """Ramp the working SP, choose the output, move the block (first order, tau 60 s)."""
        target = self.active_sp_c()
        rate = self.values[SP_RAT] / (60.0 if self.readings.rate_per == "min" else 3600.0)
        move = target - self.wsp_c
        if rate > 0:
            move = max(-rate * dt_s, min(rate * dt_s, move))
        self.wsp_c += move
        self.output_pct = self._output()
        heat_c = 4.0 * self.output_pct  # 100 % holds 400 °C above ambient
        self.pv_c += (25.0 + heat_c - self.pv_c) * min(1.0, dt_s / 60.0)

    def _output(self) -> float:
        r, lo, hi = self.readings, self.values[OP_LO], self.values[OP_HI]
        if self.sensor_break:
            raw = self.values[F_OP] if self.values[F_MOD] == 1 else self.output_pct
            return min(max(raw, lo), hi) if r.limits_bound_forced else raw
        if self.manual:
            raw = self.values[MAN_OP]
            return min(max(raw, lo), hi) if r.limits_bound_manual else raw
        raw = (self.wsp_c - self.pv_c) * 100.0 / max(self.values[PB], 1e-3) + 25.0
        return min(max(raw, lo), hi)


def _read_pdu(ctl: Controller, fc: int, body: bytes) -> bytes:
    start, count = struct.unpack(">HH", body[:4])
    if not 1 <= count <= 125:
        raise ModbusError(3)
    if start >= FLOAT_BASE:  # the 32-bit float mirror: two registers per parameter
        if (start - FLOAT_BASE) % 2 or count % 2:
            raise ModbusError(2)
        data = b"".join(struct.pack(">f", ctl.engineering((start - FLOAT_BASE) // 2 + i))
                        for i in range(count // 2))
    else:
        data = b"".join(struct.pack(">H", ctl.read_word(start + i)) for i in range(count))
    return bytes([fc, len(data)]) + data


def _write_pdu(ctl: Controller, fc: int, body: bytes) -> bytes:
    if fc == 6:
        reg, word = struct.unpack(">HH", body[:4])
        ctl.write_word(reg, word, fc)
        return bytes([fc]) + body[:4]  # the normal reply echoes the request
    start, count, nbytes = struct.unpack(">HHB", body[:5])
    if not 1 <= count <= 123 or nbytes != 2 * count or len(body) != 5 + nbytes:
        raise ModbusError(3)
    for i in range(count):
        ctl.write_word(start + i, struct.unpack(">H", body[5 + 2 * i:7 + 2 * i])[0], fc)
    return bytes([fc]) + body[:4]


def answer(ctl: Controller, pdu: bytes) -> bytes:
    """The reply PDU to a request PDU (an exception PDU for a refusal)."""
    fc = pdu[0]
    try:
        if fc not in ctl.readings.functions:
            raise ModbusError(1)
        if fc in (3, 4):
            return _read_pdu(ctl, fc, pdu[1:])
        return _write_pdu(ctl, fc, pdu[1:])
    except (struct.error, IndexError):
        return bytes([fc | 0x80, 3])
    except ModbusError as err:
        return bytes([fc | 0x80, err.code])


class RtuBus:
    """An RS-485 bus of 3200s on a pty: frames by silence, answers by address, models heat.

    Args:
        controllers: The slaves on the bus.
        baud: Line speed, Bd: sets the 3.5-character inter-frame silence.
        time_scale: Lab seconds per wall second of the heat model (0: it moves only when a
            test steps it).
    """

    def __init__(self, *controllers: Controller, baud: int = 9600,
                 time_scale: float = 0.0) -> None:
        self.by_address = {c.address: c for c in controllers}
        self.silence_s = max(3.5 * 11 / baud, 0.002)  # 11 bits a character
        self.time_scale = time_scale
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # pitfall 1 of the manual: cooked mode mangles binary frames
        self.port = os.ttyname(self.slave)
        self.lock = threading.Lock()
        self.drop_next = 0  # replies to swallow (a missing reply)
        self.garble_next = 0  # replies sent with a corrupted CRC
        self.split_next = False  # the next reply's second half after a long gap
        self.frames: list[bytes] = []  # every request frame heard (any address)
        self._stop = threading.Event()
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close the pty."""
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)

    def _serve(self) -> None:
        frame = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [],
                                       self.silence_s if frame else 0.05)
            if ready:
                try:
                    frame += os.read(self.master, 512)
                except OSError:  # pitfall 2: EIO once the client closed; keep serving
                    time.sleep(0.01)
                continue
            if frame:  # 3.5 characters of silence: the frame is complete
                self._on_frame(frame)
                frame = b""

    def _on_frame(self, frame: bytes) -> None:
        with self.lock:
            self.frames.append(frame)
            now = time.monotonic()
            for ctl in self.by_address.values():
                ctl.step((now - self._last) * self.time_scale)
            self._last = now
            if len(frame) < 4 or crc16_modbus(frame[:-2]) != frame[-2:]:
                return  # a bad CRC: a slave stays silent
            address, pdu = frame[0], frame[1:-2]
            if address == 0:  # broadcast: obeyed by every slave, answered by none
                for ctl in self.by_address.values():
                    if pdu[0] in (6, 16):
                        answer(ctl, pdu)
                return
            ctl = self.by_address.get(address)
            if ctl is None:
                return  # another address: silence
            reply = bytes([address]) + answer(ctl, pdu)
            self._send(reply + crc16_modbus(reply))

    def _send(self, reply: bytes) -> None:
        if self.drop_next:
            self.drop_next -= 1
            return
        if self.garble_next:
            self.garble_next -= 1
            reply = reply[:-1] + bytes([reply[-1] ^ 0xFF])
        time.sleep(self.silence_s)  # the slave, too, keeps the inter-frame silence
        os.write(self.master, reply)


# ============================================================================= fixtures
@pytest.fixture
def bus() -> Iterator[tuple[RtuBus, Controller, Controller, Transport]]:
    """Two 3200s (addresses 1 and 2, one decimal) on one bus, and the rig's transport."""
    c1, c2 = Controller(1), Controller(2)
    with _line(c1, c2) as (b, line):
        yield b, c1, c2, line


@contextmanager
def _line(*controllers: Controller) -> Iterator[tuple[RtuBus, Transport]]:
    """A bus of ``controllers`` and the rig's transport on it (9600 baud), both closed after."""
    b = RtuBus(*controllers)
    line = Transport(b.port, baudrate=9600, timeout_s=0.5, retries=2)
    try:
        yield b, line
    finally:
        line.close()
        b.close()


def _heater(line: Transport, address: int = 1, **kw: Any) -> Eurotherm3200:
    return Eurotherm3200(line, f"heater_{address}", address=address, **kw)


def _raw(line: Transport, frame: bytes, reply_len: int) -> bytes:
    """Send one hand-made RTU frame (CRC appended); read up to ``reply_len`` bytes."""
    line.serial.write(frame + crc16_modbus(frame))
    line.serial.flush()
    return bytes(line.serial.read(reply_len))


def _settle(b: RtuBus, ctl: Controller, lab_s: float) -> None:
    """Advance one controller's model by ``lab_s`` (the bus lock held: no frame interleaves)."""
    with b.lock:
        for _ in range(int(lab_s)):
            ctl.step(1.0)


# ============================================================================= framing
def test_the_crc_is_the_one_minimalmodbus_computes() -> None:
    """§2.5/§4.6: CRC-16/MODBUS, low byte first (the library's own CRC, not ours, is the judge)."""
    assert crc16_modbus(bytes([1, 3, 0, 0, 0, 1])) == bytes([0x84, 0x0A])  # the classic frame
    frame = bytes([1, 3, 0, 1, 0, 1])
    assert crc16_modbus(frame) == minimalmodbus._calculate_crc(frame)


def test_bring_up_selects_the_remote_sp_sets_the_ramp_and_spares_the_eeprom(bus: Any) -> None:
    """§2.1: remote SP 26 selected by 276 (1), SP.RAT 35, OP.HI 30; SP 2/24/25 only once."""
    b, c1, c2, line = bus
    heater = _heater(line, ramp_c_per_min=10.0)
    heater.connect(standby_c=30.0)
    assert (c1.values[L_R], c1.values[SP_RAT], c1.values[OP_HI]) == (1, 10.0, 100.0)
    assert (c1.values[SP1], c1.eeprom_writes) == (30.0, 1)
    order = [reg for _, reg, _ in c1.writes]
    # register 26 holds the standby SP before the controller follows it (not a stale one)
    assert order.index(RM_SP) < order.index(L_R)
    assert c1.values[RM_SP] == 30.0
    for _ in range(5):  # the supervisor's heartbeat: the remote SP, never the EEPROM
        heater.set_temperature_c(180.0)
    assert (c1.values[RM_SP], c1.eeprom_writes, heater.setpoint_c()) == (180.0, 1, 180.0)
    assert {fc for fc, _, _ in c1.writes} == {16}  # minimalmodbus's write: the 3200 takes it
    assert c2.writes == []  # the other address heard nothing it obeyed
    _settle(b, c1, 60.0)
    assert c1.wsp_c == pytest.approx(40.0, abs=0.2)  # ramping from 30 °C at 10 °C/min
    assert heater.working_setpoint_c() == pytest.approx(c1.wsp_c, abs=0.06)
    assert heater.temperature_c() == pytest.approx(c1.pv_c, abs=0.06)
    assert heater.fault() == ""


def test_two_controllers_share_the_bus_by_address(bus: Any) -> None:
    _, c1, c2, line = bus
    h1, h2 = _heater(line, 1), _heater(line, 2)
    h1.connect()
    h2.connect()
    h1.set_temperature_c(150.0)
    h2.set_temperature_c(90.5)
    assert (c1.values[RM_SP], c2.values[RM_SP]) == (150.0, 90.5)
    c2.pv_c = -12.3
    assert (h1.temperature_c(), h2.temperature_c()) == (25.0, -12.3)  # signed registers


@pytest.mark.parametrize("decimals", [0, 1, 2])
def test_registers_follow_the_display_resolution(decimals: int) -> None:
    """§2.1: 16-bit registers carry integers scaled by the display resolution."""
    ctl = Controller(1, Readings(decimals=decimals))
    with _line(ctl) as (b, line):
        heater = _heater(line, decimals=decimals, ramp_c_per_min=5.0)
        heater.connect()
        heater.set_temperature_c(123.0)
        ctl.pv_c = 234.56
        assert heater.temperature_c() == round(234.56, decimals)
        assert ctl.values[RM_SP] == 123.0
        heater.cut_output()
        assert ctl.values[OP_HI] == 0.0


def test_a_setpoint_finer_than_the_resolution_is_written_rounded() -> None:
    """An optimizer's 249.97 °C on a one-decimal controller is 250.0, not truncated to 249.9
    (minimalmodbus truncates when it scales); two decimals: 1.13 °C must not become 1.12."""
    for decimals, sp, want in ((1, 249.97, 250.0), (2, 101.13, 101.13)):
        ctl = Controller(1, Readings(decimals=decimals))
        with _line(ctl) as (b, line):
            _heater(line, decimals=decimals).set_temperature_c(sp)
            assert ctl.values[RM_SP] == want


@pytest.mark.parametrize("decimals", [0, 1])
def test_a_setpoint_the_controller_clamps_did_not_stick(decimals: int) -> None:
    """A 3200 may clamp a write beyond its range rather than refuse it: the read-back must see
    240 °C for 250 °C (a 10 °C miss is not within a resolution)."""
    ctl = Controller(1, Readings(decimals=decimals, out_of_range="clamp"))
    ctl.values[RNG_HI] = 240.0
    with _line(ctl) as (_, line), pytest.raises(
            HardwareError, match=r"temperature_c did not stick: sent 250, read back 240"):
        _heater(line, decimals=decimals).set_temperature_c(250.0)


def test_a_setpoint_the_controller_refuses_is_a_refusal(bus: Any) -> None:
    """The other reading: exception 03 (illegal data value) to a value beyond the range."""
    _, c1, _, line = bus
    c1.values[RNG_HI] = 240.0
    with pytest.raises(DeviceRefused, match=r"refused write of 250 to register 26"):
        _heater(line).set_temperature_c(250.0)


def test_a_ramp_rate_the_resolution_cannot_hold_is_refused_clearly() -> None:
    """7.5 °C/min on a no-decimal controller is stored as 7 or 8: not what was asked."""
    ctl = Controller(1, Readings(decimals=0))
    with _line(ctl) as (b, line), pytest.raises(HardwareError, match="ramp_c_per_min"):
        _heater(line, decimals=0, ramp_c_per_min=7.5).connect()


# ============================================================================= the safe state
def test_the_cut_sets_the_output_high_limit_to_zero_and_the_heater_stops(bus: Any) -> None:
    """The driver's safe state: OP.HI (30) 0 %, read back; the block then cools."""
    b, c1, _, line = bus
    heater = _heater(line)
    heater.connect()
    heater.set_temperature_c(200.0)
    _settle(b, c1, 600.0)
    assert c1.output_pct > 0.0
    hot_c = c1.pv_c
    heater.cut_output()
    _settle(b, c1, 60.0)
    assert (c1.values[OP_HI], c1.output_pct) == (0.0, 0.0)
    assert c1.pv_c < hot_c


@pytest.mark.parametrize("out_of_range", ["refuse", "clamp"])
def test_a_cut_below_the_output_low_limit_fails_loudly(out_of_range: str) -> None:
    """OP.HI cannot go below OP.LO (31): refused (03) or clamped, the cut must not pass."""
    ctl = Controller(1, Readings(out_of_range=out_of_range))
    ctl.values[OP_LO] = 20.0
    with _line(ctl) as (_, line), pytest.raises(
            HardwareError, match=r"register 30|output_high_pct did not stick"):
        _heater(line).cut_output()


def test_output_registers_scaled_like_the_display_break_the_connect() -> None:
    """Reading left open: if the output % registers followed the display resolution (0
    decimals) instead of keeping one, OP.HI 100 % would be written 1000: refused (03). The
    cut (0 %) is the same word in every scaling, so the safe state still works."""
    ctl = Controller(1, Readings(decimals=0, op_decimals=None))
    with _line(ctl) as (b, line):
        heater = _heater(line, decimals=0)
        with pytest.raises(DeviceRefused, match="register 30"):
            heater.connect()
        ctl.values[OP_HI] = 100.0
        heater.cut_output()
        assert ctl.values[OP_HI] == 0.0


# ============================================================================= faults
@pytest.fixture
def rig_bus() -> Iterator[tuple[RtuBus, Controller, Controller, Rig]]:
    """The rig's two heaters (core: 1, shell: 2) on the independent bus; nothing else asked."""
    c1, c2 = Controller(1), Controller(2)
    b = RtuBus(c1, c2)
    d = devices()
    d["ports"]["heaters"] = {"url": b.port}
    rig = Rig.open(parse_devices(d))
    yield b, c1, c2, rig
    rig.close()
    b.close()


@pytest.mark.parametrize(("flag", "reason"), [("sensor_break", "sensor_break"),
                                              ("loop_break", "loop_break"),
                                              ("over_range", "over_range"),
                                              ("manual", "manual_mode")])
def test_each_status_fault_trips_hard(rig_bus: Any, flag: str, reason: str) -> None:
    """§2.1 status word 75 / §5: sensor break (bit 5), loop break (6), over-range (10) and
    manual (4) cut the heaters and pumps at once."""
    b, _, c2, rig = rig_bus
    with b.lock:
        setattr(c2, flag, True)
    trips: list[Trip] = []
    sup = Supervisor(rig, trips.append)
    assert not sup.poll_heater("core")
    assert sup.poll_heater("shell")
    assert [(t.reason, t.device, t.hard) for t in trips] == [(reason, "heater_shell", True)]


def test_a_sensor_break_trips_whatever_the_pv_register_reads(rig_bus: Any) -> None:
    """The manual does not say what register 1 holds on a sensor break; here it reads the
    range high (400 °C), a plausible temperature: the status bit, read first, must decide."""
    b, c1, _, rig = rig_bus
    c1.readings.pv_on_break = "high"
    with b.lock:
        c1.sensor_break = True
    trips: list[Trip] = []
    assert Supervisor(rig, trips.append).poll_heater("core")
    assert [t.reason for t in trips] == ["sensor_break"]


def test_a_controller_in_manual_is_refused_at_connect(bus: Any) -> None:
    _, c1, _, line = bus
    c1.manual = True
    with pytest.raises(HardwareError, match="manual mode"):
        _heater(line).connect()
    assert c1.writes == []  # refused before anything was written


def test_a_remote_setpoint_failure_is_reported_after_two_polls(rig_bus: Any) -> None:
    """Bit 14: the controller runs on its local SP; the experiment is invalid, not a trip."""
    b, c1, _, rig = rig_bus
    trips: list[Trip] = []
    sup = Supervisor(rig, trips.append)
    sup.set_heater_c("core", 150.0)
    with b.lock:
        c1.remote_fail = True
    assert not sup.poll_heater("core")
    assert sup.monitor.still_faulted("heater_core") == ()
    assert not sup.poll_heater("core")
    found = sup.monitor.still_faulted("heater_core")
    assert [f.reason for f in found] == ["heater_setpoint"]
    assert "remote setpoint failed" in found[0].detail
    assert trips == []


def test_controller_alarms_are_not_faults_of_their_own(rig_bus: Any) -> None:
    """Bits 0-3 (alarms 1-4) and 12 (new alarm): what an alarm means is the instrument's
    configuration, and §5: "the controller alarm signal is not designed to function as a
    protective measure". The supervisor's own limits decide; an alarm is shown by ``ping``."""
    b, c1, _, rig = rig_bus
    with b.lock:
        c1.alarms = frozenset({1, 3})
    trips: list[Trip] = []
    assert not Supervisor(rig, trips.append).poll_heater("core")
    heater = rig.heaters["core"]
    assert isinstance(heater, Eurotherm3200)
    assert heater.status().alarms == (1, 3)
    assert "alarm 1, 3" in heater.ping()


@pytest.mark.parametrize("bound", [True, False])
def test_the_cut_stops_a_controller_in_manual_whether_or_not_the_limits_bind(bound: bool) -> None:
    """Reading left open: do OP.HI/OP.LO bound the manual output? Either way the trip's cut
    must leave the heater off: the driver zeroes the manual output (3) too."""
    ctl = Controller(1, Readings(limits_bound_manual=bound))
    ctl.values[MAN_OP] = 80.0
    ctl.manual = True
    with _line(ctl) as (b, line):
        _heater(line).cut_output()
        _settle(b, ctl, 5.0)
        assert (ctl.values[OP_HI], ctl.values[MAN_OP], ctl.output_pct) == (0.0, 0.0, 0.0)


# ============================================================================= the line
def test_an_exception_reply_is_a_refusal_named_and_not_retried(bus: Any) -> None:
    """Exception 02 to an address the map lacks: raised at once, naming the register."""
    b, _, _, line = bus
    heater = _heater(line)
    before = len(b.frames)
    with pytest.raises(DeviceRefused, match=r"heater_1: controller at address 1 refused read "
                                            r"of register 999: Modbus exception"):
        heater._read(999)
    assert len(b.frames) == before + 1


def test_a_controller_without_write_multiple_is_written_with_write_single() -> None:
    """The manual names no write function: one that answers 16 with exception 01 gets 6."""
    ctl = Controller(1, Readings(functions=frozenset({3, 4, 6})))
    with _line(ctl) as (b, line):
        heater = _heater(line)
        heater.connect()
        heater.set_temperature_c(120.0)
        assert ctl.values[RM_SP] == 120.0
        assert {fc for fc, _, _ in ctl.writes} == {6}


def test_a_garbled_or_missing_reply_is_retried_then_named(bus: Any) -> None:
    """A bad CRC or no reply: retried (bounded); three in a row: a named failure."""
    b, _, _, line = bus
    heater = _heater(line)
    b.garble_next = 1
    assert heater.temperature_c() == 25.0
    b.drop_next = 2
    assert heater.temperature_c() == 25.0
    b.drop_next = 3
    with pytest.raises(HardwareError, match=r"heater_1: no valid Modbus reply from address 1 "
                                            r"to read of register 1 after 3 attempts"):
        heater.temperature_c()


def test_a_controller_at_another_address_is_silent(bus: Any) -> None:
    """Wrong address: no slave answers; the driver says which address it asked."""
    _, _, _, line = bus
    with pytest.raises(HardwareError, match="no valid Modbus reply from address 7"):
        _heater(line, 7).status()


def test_a_broadcast_is_obeyed_by_all_and_answered_by_none(bus: Any) -> None:
    """Address 0 (the driver refuses it as a device address); the bus stays usable after."""
    _, c1, c2, line = bus
    assert _raw(line, bytes([0, 6, 0, RM_SP, 0x07, 0x08]), 8) == b""  # 180.0 °C
    assert _heater(line, 2).setpoint_c() == 180.0  # answered after the broadcast was obeyed
    assert (c1.values[RM_SP], c2.values[RM_SP]) == (180.0, 180.0)


def test_a_request_split_by_a_long_gap_is_dropped_and_the_next_one_answered(bus: Any) -> None:
    """Inter-frame silence: two halves 3.5 characters apart are two bad frames (silence)."""
    b, _, _, line = bus
    frame = bytes([1, 3, 0, PV, 0, 1])
    frame += crc16_modbus(frame)
    line.serial.write(frame[:4])
    line.serial.flush()
    time.sleep(0.3)  # far beyond 3.5 characters (4 ms at 9600 Bd), even on a loaded host
    line.serial.write(frame[4:])
    line.serial.flush()
    assert bytes(line.serial.read(7)) == b""
    assert _heater(line).temperature_c() == 25.0
    assert len(b.frames) >= 3


def test_the_float_mirror_reads_what_the_integer_register_says(bus: Any) -> None:
    """§2.1: 32-bit IEEE floats at 0x8000 + 2 * address (not used by the driver: the
    emulator's map is checked against minimalmodbus's own float read)."""
    b, c1, _, line = bus
    c1.pv_c = 234.56
    with line.transaction("raw") as port:
        inst = minimalmodbus.Instrument(port, 1)
        assert inst.read_float(FLOAT_BASE + 2 * PV) == pytest.approx(234.56, abs=1e-4)
        assert inst.read_register(PV, 1, signed=True) == 234.6
    assert b.frames


def test_an_sp_rate_read_per_hour_ramps_sixty_times_slower(bus: Any) -> None:
    """Reading left open: the excerpt gives SP.RAT (35) no time unit (RC.PV is "units/min").
    The driver writes °C/min; a controller set to per-hour ramps 60x slower. The driver cannot
    see it (no address for the unit): documented in docs/hardware.md, checked here."""
    b, c1, _, line = bus
    c1.readings.rate_per = "hour"
    heater = _heater(line, ramp_c_per_min=10.0)
    heater.connect(standby_c=30.0)
    heater.set_temperature_c(90.0)
    _settle(b, c1, 60.0)
    assert heater.working_setpoint_c() == pytest.approx(30.0 + 10.0 / 60.0, abs=0.06)


def test_a_value_the_register_cannot_hold_is_named_before_a_byte_is_sent(bus: Any) -> None:
    """Two decimals hold at most 327.67 in a signed 16-bit register: a clear error, not a
    retried "no valid reply"."""
    b, _, _, line = bus
    before = len(b.frames)
    with pytest.raises(HardwareError, match=r"350 does not fit register 26 with 2 decimal"):
        _heater(line, decimals=2).set_temperature_c(350.0)
    assert len(b.frames) == before


@pytest.mark.parametrize("bound", [True, False])
def test_a_cut_on_a_sensor_break_fails_if_the_forced_output_stays_on(bound: bool) -> None:
    """Reading left open: do the output limits bound the sensor-break forced output (F.MOD 2:
    the last output)? If not, OP.HI 0 % leaves the heater on: the cut must not pass."""
    ctl = Controller(1, Readings(limits_bound_forced=bound))
    with _line(ctl) as (b, line):
        with b.lock:
            ctl.output_pct = 70.0
            ctl.sensor_break = True
        heater = _heater(line)
        if bound:
            heater.cut_output()
            assert ctl.output_pct == 0.0
        else:
            with pytest.raises(HardwareError, match=r"output still 70 % after the cut .* "
                                                    r"sensor_break"):
                heater.cut_output()


@pytest.mark.parametrize("flag", ["sensor_break", "loop_break", "over_range"])
def test_a_status_fault_at_bring_up_is_refused_by_name_before_a_write(bus: Any,
                                                                     flag: str) -> None:
    """Status word 75 with bit 5, 6 or 10 set at bring-up: the connect wrote the setpoints
    and allowed the output (OP.HI 100 %) to a controller whose PV means nothing, and left
    the news to the supervisor's first poll (a hard trip); it is now refused, named."""
    b, c1, _, line = bus
    with b.lock:
        setattr(c1, flag, True)
    with pytest.raises(HardwareError, match=rf"reports {flag} \(status word, register 75: "
                                            rf"bit \d+, .*\) at bring-up"):
        _heater(line).connect()
    assert c1.writes == []
