"""The Omega CN7x00 driver against a controller emulated from the register map alone, over a pty.

Our own emulator (``autolab/virtuallab``) was written by the driver's authors, so a misreading
shared by both would hide. ``ManualOmega`` below was written from the hardware reference (§2.2
Omega, §2.5, §0, §4.6 ptys, §5 safety) without reading that emulator. The Modbus layer is the
Eurotherm's (audited in ``test_eurotherm_independent.py``); this file is about what is Omega's:

* Modbus ASCII (the usual setting, 7E1 9600 Bd; a pty cannot check the format): ``:`` + hex of
  address, function, data and LRC (two's complement of the byte sum) + CR LF; a frame with a
  bad LRC or for another address is not answered.
* Modbus RTU (8 data bits, 8E1 in the map's note): address, function, data and CRC-16/MODBUS
  (low byte first) as raw bytes; a frame ends at a silence (3.5 characters on a wire; a pty
  keeps no baud timing, so the emulator also ends a request at its known length). A bad CRC
  or another address: no answer.
* function codes 3 (read registers), 6 (write one), 2 (read bits), 5 (write one bit); any other
  is exception 01, an address the map lacks 02, a value out of range 03.
* registers (the wire address is the map's, as public drivers read it: 4096 for the PV):
  0x1000 PV and 0x1001 SV in 0.1 °C, two's complement below zero; PV error codes 0x8002
  (re-initialising, no temperature yet), 0x8003 (sensor not connected), 0x8004 (input signal
  error), 0x8006 (A/D failure); 0x1002/0x1003 upper/lower limit of the range; 0x1005 control
  method (0 PID, 1 ON/OFF, 2 manual tuning, 3 PID program); 0x1009-0x100B PID; 0x1012/0x1013
  manual outputs; 0x102E status/error code (0x0001 PV unstable ... 0x0007 EEPROM error;
  0 none), 0x4750 on some models; the RUN (1) / STOP (0) bit 0x0814; the ramp/soak block
  0x2000-0x203F.

Where the map is open the emulator has a switch (``Readings``).
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import minimalmodbus
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.exceptions import ConditionsError, HardwareError
from autolab.hardware.controllers import OmegaCN7500
from autolab.hardware.devices import parse_devices
from autolab.hardware.protocols import omega
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Supervisor, Trip
from autolab.hardware.transport import Transport

from .pty_device import PtyDevice
from .test_eurotherm_independent import crc16_modbus
from .test_rig_registry import devices

PV, SV, RANGE_HI, RANGE_LO, METHOD = 0x1000, 0x1001, 0x1002, 0x1003, 0x1005
P_BAND, I_TIME, D_TIME, MAN_OUT1, MAN_OUT2 = 0x1009, 0x100A, 0x100B, 0x1012, 0x1013
STATUS, STATUS_ALT, RUN_BIT = 0x102E, 0x4750, 0x0814
PROGRAM = range(0x2000, 0x2040)
READ_ONLY = frozenset({PV, STATUS, STATUS_ALT})  # the status word: the unit's to set
SENSOR_NOT_CONNECTED, NO_TEMPERATURE_YET, INPUT_ERROR, AD_FAIL = 0x8003, 0x8002, 0x8004, 0x8006


def lrc(data: bytes) -> int:
    """The LRC: two's complement of the 8-bit sum of address, function and data."""
    return (0x100 - sum(data) % 0x100) % 0x100


def tenths(value_c: float) -> int:
    """A temperature as its register word (0.1 °C, two's complement)."""
    return round(value_c * 10) & 0xFFFF


def celsius(word: int, decimals: int = 1) -> float:
    """A register word as a temperature."""
    return (word - 0x10000 if word & 0x8000 else word) / 10**decimals


class Refused(Exception):
    """A Modbus exception code to answer with."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Readings:
    """Switches for what the map leaves open.

    Attributes:
        functions: Function codes the unit answers (the map: 2, 3, 5, 6; Modbus also has 1
            for reading a coil and 16 for writing registers).
        status_at: Where the status/error code is (``None``: the unit has neither address).
        other_status_address: The other of 0x102E/0x4750 answers too, holding a parameter
            of its own (0): the map says the code is at 0x4750 "on some models", not that
            those models lack 0x102E.
        lower_hex: Replies in lower-case hex digits (the map does not say).
        range_decimals: Decimals of the range limits (the map gives them no unit).
        run_after_power: The unit comes back from a power loss in RUN (else STOP).
        keeps_sv: The SV survives a power loss (else back to 25.0 °C).
        no_temperature_s: Wall seconds after power-up (and after a power loss) the PV reads
            0x8002, "re-initialize/no temp yet" (the map gives no figure).
    """

    functions: frozenset[int] = frozenset({2, 3, 5, 6})
    status_at: int | None = STATUS
    other_status_address: bool = False
    lower_hex: bool = False
    range_decimals: int = 1
    run_after_power: bool = False
    keeps_sv: bool = True
    no_temperature_s: float = 0.0


@dataclass
class Unit:
    """One controller's registers (16-bit words) and its RUN bit."""

    address: int = 1
    readings: Readings = field(default_factory=Readings)
    words: dict[int, int] = field(default_factory=dict)
    run: bool = False
    requests: list[tuple[int, int]] = field(default_factory=list)  # (function, address)
    powered_s: float = field(default_factory=time.monotonic)  # when its power came on

    def __post_init__(self) -> None:
        scale = 10 ** self.readings.range_decimals
        self.words = {PV: tenths(25.0), SV: tenths(25.0), RANGE_HI: 400 * scale,
                      RANGE_LO: (-20 * scale) & 0xFFFF, METHOD: 0, P_BAND: 476, I_TIME: 260,
                      D_TIME: 41, MAN_OUT1: 0, MAN_OUT2: 0, **dict.fromkeys(PROGRAM, 0)}
        if self.readings.status_at is not None:
            self.words[self.readings.status_at] = 0
        if self.readings.other_status_address:
            self.words[STATUS + STATUS_ALT - (self.readings.status_at or STATUS)] = 0

    def answer(self, pdu: bytes) -> bytes:
        """The reply PDU (an exception PDU for a refusal)."""
        fc = pdu[0]
        try:
            if fc not in self.readings.functions:
                raise Refused(1)
            address, value = struct.unpack(">HH", pdu[1:5])
            self.requests.append((fc, address))
            return bytes([fc]) + self._do(fc, address, value)
        except struct.error:
            return bytes([fc | 0x80, 3])
        except Refused as err:
            return bytes([fc | 0x80, err.code])

    def _do(self, fc: int, address: int, value: int) -> bytes:
        if fc in (1, 2):
            if address != RUN_BIT or value != 1:
                raise Refused(2)
            return bytes([1, int(self.run)])
        if fc == 5:
            if address != RUN_BIT or value not in (0x0000, 0xFF00):
                raise Refused(2 if address != RUN_BIT else 3)
            self.run = value == 0xFF00
            return struct.pack(">HH", address, value)
        if fc == 3:
            if value != 1 or address not in self.words:
                raise Refused(2 if address not in self.words else 3)
            word = self.words[address]
            if address == PV and \
                    time.monotonic() - self.powered_s < self.readings.no_temperature_s:
                word = NO_TEMPERATURE_YET
            return bytes([2]) + struct.pack(">H", word)
        return self._write(address, value)

    def _write(self, address: int, word: int) -> bytes:
        if address not in self.words or address in READ_ONLY:
            raise Refused(2)
        if address == SV:
            low = celsius(self.words[RANGE_LO], self.readings.range_decimals)
            high = celsius(self.words[RANGE_HI], self.readings.range_decimals)
            if not low <= celsius(word) <= high:
                raise Refused(3)
        self.words[address] = word
        return struct.pack(">HH", address, word)

    def power_loss(self) -> None:
        """Mains off and on: RUN or STOP by the reading; the SV kept or not."""
        self.run = self.readings.run_after_power
        self.powered_s = time.monotonic()
        if not self.readings.keeps_sv:
            self.words[SV] = tenths(25.0)


class ManualOmega(PtyDevice):
    """Omega controllers on one Modbus line (a pty), ASCII or RTU, answered by address.

    Timing faults: ``latency_s`` (every reply goes out that long after its request: a unit's
    scan and the line's transmit time) and ``delay_next`` (register -> extra seconds the next
    reply about it is held: a busy unit answering after the host's timeout).
    """

    def __init__(self, *units: Unit, rtu: bool = False) -> None:
        self.units = {u.address: u for u in units}
        self.rtu = rtu
        self.garble_next = 0
        self.frames = 0
        self.latency_s = 0.0
        self.delay_next: dict[int, float] = {}
        self._buf = b""
        self._last_s = 0.0
        super().__init__()

    def reset(self, *units: Unit, rtu: bool = False) -> None:
        """Fresh units on the line, in ASCII or RTU framing, answering at once."""
        with self.lock:
            self.units = {u.address: u for u in units}
            self.rtu = rtu
            self.garble_next = 0
            self.latency_s = 0.0
            self.delay_next = {}
            self._buf = b""

    def feed(self, data: bytes, t_s: float) -> None:
        """ASCII: a frame starts at ``:`` and ends at CR LF (anything before a ``:`` is
        noise). RTU: a silence starts a new frame; a request is 8 bytes (16: 9 + its count)."""
        if self.rtu and t_s - self._last_s > 0.05:
            self._buf = b""
        self._last_s = t_s
        self._buf += data
        if self.rtu:
            self._rtu_frames()
            return
        while b"\r\n" in self._buf:
            line, self._buf = self._buf.split(b"\r\n", 1)
            start = line.rfind(b":")
            if start >= 0:
                self._frame(line[start + 1:])

    def _rtu_frames(self) -> None:
        while len(self._buf) >= 8:
            size = 9 + self._buf[6] + 2 if self._buf[1] == 16 else 8
            if len(self._buf) < size:
                return
            frame, self._buf = self._buf[:size], self._buf[size:]
            if crc16_modbus(frame[:-2]) != frame[-2:]:
                self._buf = b""  # noise: wait for the next silence
                return
            self._answer(frame[:-2])

    def _frame(self, digits: bytes) -> None:
        try:
            raw = bytes.fromhex(digits.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return
        if len(raw) < 3 or lrc(raw[:-1]) != raw[-1]:
            return  # a bad LRC: no answer
        self._answer(raw[:-1])

    def _answer(self, request: bytes) -> None:
        self.frames += 1
        unit = self.units.get(request[0])
        if unit is None:
            return
        body = bytes([request[0]]) + unit.answer(request[1:])
        if self.rtu:
            out = body + crc16_modbus(body)
            if self.garble_next:
                self.garble_next -= 1
                out = out[:-1] + bytes([out[-1] ^ 0x01])
        else:
            text = (body + bytes([lrc(body)])).hex()
            text = text if unit.readings.lower_hex else text.upper()
            if self.garble_next:
                self.garble_next -= 1
                text = text[:-2] + f"{(int(text[-2:], 16) + 1) % 256:02X}"
            out = b":" + text.encode("ascii") + b"\r\n"
        register = struct.unpack(">H", request[2:4])[0] if len(request) >= 4 else -1
        delay_s = self.latency_s + self.delay_next.pop(register, 0.0)
        if delay_s:
            threading.Timer(delay_s, self.send, (out,)).start()
        else:
            self.send(out)


# ============================================================================= codec
@given(st.binary(min_size=2, max_size=40))
def test_the_lrc_is_the_one_the_library_and_the_driver_compute(data: bytes) -> None:
    assert bytes([lrc(data)]) == minimalmodbus._calculate_lrc(data)
    assert omega.lrc(data) == lrc(data)
    assert omega.decode_ascii(b":" + (data + bytes([lrc(data)])).hex().encode() + b"\r\n") \
        == data  # lower-case hex too


@given(st.floats(-3276.7, 3276.7, allow_nan=False))
def test_temperatures_are_tenths_in_two_s_complement(value_c: float) -> None:
    assert omega.to_word(value_c) == tenths(value_c)
    assert omega.from_word(tenths(value_c)) == celsius(tenths(value_c))


@given(st.integers(0, 0xFFFF))
def test_a_pv_word_is_a_temperature_or_a_fault_never_both(word: int) -> None:
    fault, _ = omega.pv_fault(word)
    if word in (NO_TEMPERATURE_YET, SENSOR_NOT_CONNECTED, INPUT_ERROR, AD_FAIL):
        assert fault == ("sensor_break" if word == SENSOR_NOT_CONNECTED else "input_error")
    if not fault:
        assert celsius(word) > -3275.3  # no error code of the map passes as a temperature


# ============================================================================= fixtures
@pytest.fixture(scope="module")
def shared() -> Iterator[ManualOmega]:
    """One emulated ASCII line for the module."""
    emu = ManualOmega(Unit())
    yield emu
    emu.close()


@pytest.fixture
def line(shared: ManualOmega) -> Iterator[tuple[ManualOmega, Transport]]:
    """The shared line with a fresh unit at address 1, and a transport on it."""
    shared.reset(Unit())
    t = Transport(shared.port, baudrate=9600, timeout_s=0.3, retries=2, bytesize=7,
                  parity="E")
    yield shared, t
    t.close()


def _two_heater_rig(shared: ManualOmega) -> Rig:
    """A rig whose core (address 1) and shell (2) heaters share the emulated line, in the
    kind's own format (no line settings given)."""
    d = devices()
    d["ports"]["heaters"] = {"url": shared.port, "timeout_s": 0.3}
    for role, address in (("core", 1), ("shell", 2)):
        d["devices"][f"heater_{role}"] = {"kind": "omega_cn7500", "port": "heaters",
                                          "address": address, "role": role,
                                          "limits": {"max_temperature_c": 300}}
    return Rig.open(parse_devices(d))


def _driver(t: Transport, **kw: Any) -> OmegaCN7500:
    return OmegaCN7500(t, "omega", address=1, mode="ascii", **kw)


# ============================================================================= bring-up
BRING_UP = {
    "the-map": Readings(),
    "coils-and-16-lower-hex-alt-status": Readings(functions=frozenset({1, 3, 5, 6, 16}),
                                                  status_at=STATUS_ALT, lower_hex=True),
    "no-status-register": Readings(status_at=None),
}


@pytest.mark.parametrize("variant", list(BRING_UP))
def test_bring_up_writes_the_standby_sv_and_runs(line: Any, variant: str) -> None:
    emu, t = line
    unit = Unit(readings=BRING_UP[variant])
    emu.reset(unit)
    heater = _driver(t)
    heater.connect(standby_c=-12.3)  # below zero: two's complement
    with emu.lock:
        assert (celsius(unit.words[SV]), unit.run) == (-12.3, True)
        assert {fc for fc, a in unit.requests if a == SV} <= {3, 6}  # the map's write first
    assert heater.status_register == BRING_UP[variant].status_at
    assert heater.range_c == (-20.0, 400.0)
    assert heater.fault() == ""


def test_range_limits_in_whole_degrees_refuse_loudly_never_pass_silently(line: Any) -> None:
    """Reading left open: the map gives the range limits no unit. Read as 0.1 °C, limits in
    whole degrees are ten times too narrow: a setpoint above 40 °C is refused naming the
    range (the rig does not run, it does not misbehave)."""
    emu, t = line
    emu.reset(Unit(readings=Readings(range_decimals=0)))
    heater = _driver(t)
    heater.connect()
    assert heater.range_c == (-2.0, 40.0)
    with pytest.raises(ConditionsError, match="controller's range"):
        heater.set_temperature_c(150.0)


@pytest.mark.parametrize("method", [2, 3])
def test_a_unit_that_would_follow_no_setpoint_is_refused_before_a_write(line: Any,
                                                                      method: int) -> None:
    """0x1005: manual tuning (2) holds a manual output, a PID program (3) sets its own SV;
    either way the host's setpoints would be taken and not followed."""
    emu, t = line
    unit = Unit()
    unit.words[METHOD] = method
    emu.reset(unit)
    with pytest.raises(HardwareError, match=r"control method .*switch it to PID or ON/OFF"):
        _driver(t).connect()
    with emu.lock:
        assert [fc for fc, _ in unit.requests if fc in (5, 6, 16)] == []


def test_a_method_changed_at_the_panel_mid_run_is_a_fault(line: Any) -> None:
    """ON/OFF (1) follows the SV; manual tuning and a program, set at the panel, do not."""
    emu, t = line
    unit = Unit()
    unit.words[METHOD] = 1
    emu.reset(unit)
    heater = _driver(t)
    heater.connect()
    found = [heater.fault()]
    for method in (2, 3):
        with emu.lock:
            unit.words[METHOD] = method
        found.append(heater.fault())
    assert found == ["", "manual_mode", "program_mode"]


# ============================================================================= faults
@pytest.mark.parametrize(("word", "fault"),
                         [(SENSOR_NOT_CONNECTED, "sensor_break"),
                          (NO_TEMPERATURE_YET, "input_error"), (INPUT_ERROR, "input_error"),
                          (AD_FAIL, "input_error"), (0x8005, "input_error")])
def test_a_pv_error_code_is_a_fault_never_a_temperature(line: Any, word: int,
                                                        fault: str) -> None:
    emu, t = line
    heater = _driver(t)
    with emu.lock:
        emu.units[1].words[PV] = word
    assert heater.fault() == fault
    assert math.isnan(heater.temperature_c())


def test_every_status_code_is_a_controller_error(line: Any) -> None:
    """0x0001 PV unstable ... 0x0007 EEPROM error (the codes between are not named)."""
    emu, t = line
    heater = _driver(t)
    heater.connect()
    found = []
    for code in (1, 4, 7):
        with emu.lock:
            emu.units[1].words[STATUS] = code
        found.append(heater.fault())
    assert found == ["controller_error"] * 3


def test_a_stop_at_the_panel_is_a_fault_and_the_cut_is_stop_read_back(line: Any) -> None:
    emu, t = line
    heater = _driver(t)
    heater.connect()
    with emu.lock:
        emu.units[1].run = False
    assert heater.fault() == "stopped"
    heater.cut_output()
    with emu.lock:
        assert emu.units[1].run is False
        assert emu.units[1].requests[-2:] == [(5, RUN_BIT), (2, RUN_BIT)]
    assert heater.fault() == ""


def test_a_reply_with_a_bad_lrc_is_asked_again(line: Any) -> None:
    emu, t = line
    with emu.lock:
        emu.units[1].words[PV] = tenths(123.4)
        emu.garble_next = 1
    assert _driver(t).temperature_c() == 123.4
    with emu.lock:
        assert emu.units[1].requests.count((3, PV)) == 2


def test_a_model_answering_both_status_addresses_has_its_code_seen(line: Any) -> None:
    """Status at 0x4750, and 0x102E answering too (another parameter, 0): an EEPROM error
    (0x0007) at 0x4750 must trip, not hide behind the 0 at 0x102E."""
    emu, t = line
    unit = Unit(readings=Readings(status_at=STATUS_ALT, other_status_address=True))
    emu.reset(unit)
    heater = _driver(t)
    heater.connect()
    assert heater.fault() == ""
    with emu.lock:
        unit.words[STATUS_ALT] = 0x0007
    assert heater.fault() == "controller_error"


# ============================================================================= the rig
@pytest.mark.parametrize(("run_after", "keeps_sv", "reason"),
                         [(False, True, "stopped"), (True, False, None)])
def test_after_a_power_loss_a_stop_trips_and_a_lost_sv_is_written_again(
        shared: ManualOmega, run_after: bool, keeps_sv: bool, reason: str | None) -> None:
    """The map does not say what a power loss leaves: STOP is the trip ``stopped`` (never a
    RUN from the host on its own); a unit back in RUN with its SV lost gets it again."""
    readings = Readings(run_after_power=run_after, keeps_sv=keeps_sv)
    core, shell = Unit(1, readings), Unit(2, readings)
    shared.reset(core, shell)
    rig = _two_heater_rig(shared)
    try:
        assert rig.transports["heaters"].line_format == {"bytesize": 7, "parity": "E",
                                                         "stopbits": 1}  # ASCII 7E1
        assert rig.transports["heaters"].serial.baudrate == 9600
        rig.heaters["core"].connect(standby_c=30.0)
        trips: list[Trip] = []
        sup = Supervisor(rig, trips.append)
        sup.setpoints_c["core"] = 30.0
        with shared.lock:
            core.power_loss()
            runs = core.requests.count((5, RUN_BIT))
        assert sup.poll_heater("core") == (reason is not None)
        assert [(tr.reason, tr.hard) for tr in trips] == ([(reason, True)] if reason else [])
        with shared.lock:
            assert celsius(core.words[SV]) == 30.0
            assert core.requests.count((5, RUN_BIT)) == runs
            assert shell.requests == []  # the other address heard nothing it answered
    finally:
        rig.close()


# ============================================================================= power-up
def test_a_unit_still_initialising_is_waited_for_and_a_blip_mid_run_trips(
        shared: ManualOmega) -> None:
    """§2.2: 0x8002 "re-initialize/no temp yet". A unit just switched on answers it for its
    first second: the bring-up waits for its first temperature, and the supervisor's first poll
    finds nothing (it tripped ``input_error`` at once before). Mid-run the same word is a unit
    that re-initialised (a power blip): a hard trip, never a temperature."""
    core = Unit(1, Readings(no_temperature_s=1.0, run_after_power=True))
    shared.reset(core, Unit(2))
    rig = _two_heater_rig(shared)
    try:
        heater = rig.heaters["core"]
        heater.connect(standby_c=30.0)
        with shared.lock:
            assert core.run and celsius(core.words[SV]) == 30.0
        trips: list[Trip] = []
        sup = Supervisor(rig, trips.append)
        sup.setpoints_c["core"] = 30.0
        assert not sup.poll_heater("core") and trips == []
        assert heater.temperature_c() == 25.0
        with shared.lock:
            core.power_loss()  # back in RUN with its SV: only the PV says it re-initialised
        assert sup.poll_heater("core")
        assert [(tr.reason, tr.hard) for tr in trips] == [("input_error", True)]
    finally:
        rig.close()


def test_a_unit_that_never_reads_a_temperature_fails_bring_up_by_name(line: Any) -> None:
    """A PV still 0x8002 past the bound fails the bring-up naming the code and the wait,
    before anything is written (on a sped-up lab the wait is at least a few wall seconds:
    the unit's start-up is not sped up with it)."""
    emu, t = line
    unit = Unit(readings=Readings(no_temperature_s=math.inf))
    emu.reset(unit)
    with pytest.raises(HardwareError, match=r"omega: no temperature yet \(0x8002, "
                                            r"re-initialising\) after 30 s"):
        _driver(t, time_scale=60.0).connect()
    with emu.lock:
        assert {fc for fc, _ in unit.requests} == {3} and not unit.run


# ============================================================================= late replies
def _rtu_line(emu: ManualOmega, timeout_s: float) -> Transport:
    return Transport(emu.port, baudrate=9600, timeout_s=timeout_s, retries=2, bytesize=8,
                     parity="E")


@pytest.mark.parametrize(("rtu", "late", "then"),
                         [(False, PV, "setpoint_c"), (True, STATUS, "temperature_c")],
                         ids=["ascii-pv-then-sv", "rtu-status-then-pv"])
def test_a_late_reply_is_never_read_as_the_next_register_s(shared: ManualOmega, rtu: bool,
                                                           late: int, then: str) -> None:
    """§4.6's ``delay_reply_s``: a unit that answers 0.1 s after each request, and once a
    little after the host's timeout. The retry reads the late reply (the same request);
    its own reply then comes while the host asks the next register. A Modbus read reply
    names no register, so without waiting for it the SV read back the PV (123.4), and the
    PV read the status word: a hot block read as 0.0 °C, which the shutdown's cool-down
    would take for a cool one."""
    unit = Unit()
    unit.words[PV], unit.words[SV] = tenths(123.4), tenths(30.0)
    shared.reset(unit, rtu=rtu)
    t = _rtu_line(shared, 0.15) if rtu else Transport(shared.port, timeout_s=0.15,
                                                      retries=2, bytesize=7, parity="E")
    try:
        heater = OmegaCN7500(t, "omega", mode="rtu" if rtu else "ascii")
        heater.method_checked = False  # fault(): the PV read, then the status word
        with shared.lock:
            shared.latency_s = 0.1
            shared.delay_next[late] = 0.1  # 0.2 s after its request: past the 0.15 s timeout
        first = heater.temperature_c() if late == PV else heater.fault()
        assert first == (123.4 if late == PV else "")
        assert getattr(heater, then)() == (30.0 if then == "setpoint_c" else 123.4)
        assert any("late reply" in line for line in t.log.lines())
    finally:
        t.close()


# ============================================================================= bring-up faults
@pytest.mark.parametrize(("word", "meaning"),
                         [(SENSOR_NOT_CONNECTED, "sensor not connected"),
                          (INPUT_ERROR, "input signal error"), (AD_FAIL, "A/D converter failure"),
                          (0x8005, "PV error code 0x8005")])
def test_a_pv_error_code_at_bring_up_fails_it_by_name_before_a_write(line: Any, word: int,
                                                                     meaning: str) -> None:
    """§2.2's error codes other than 0x8002 (which is waited out): a unit whose sensor is
    not connected passed the bring-up, was written its SV and RUN, and tripped the rig hard
    at the supervisor's first poll; it now fails the bring-up naming the code."""
    emu, t = line
    unit = Unit()
    unit.words[PV] = word
    emu.reset(unit)
    with pytest.raises(HardwareError, match=rf"error code 0x{word:04X} \({meaning}\) at "
                                            rf"bring-up, before anything was written"):
        _driver(t).connect()
    with emu.lock:
        assert [fc for fc, _ in unit.requests if fc in (5, 6, 16)] == [] and not unit.run


def test_a_status_error_code_at_bring_up_fails_it_by_name_before_a_write(line: Any) -> None:
    """0x102E 0x0007 (EEPROM error) at bring-up: named there, nothing written."""
    emu, t = line
    unit = Unit(readings=Readings(other_status_address=True))  # no exception reply to wait
    unit.words[STATUS] = 0x0007
    emu.reset(unit)
    with pytest.raises(HardwareError, match=r"status/error code 0x0007 \(EEPROM error, "
                                            r"register 0x102E\) at bring-up"):
        _driver(t).connect()
    with emu.lock:
        assert [fc for fc, _ in unit.requests if fc in (5, 6, 16)] == []


# ============================================================================= RTU
@pytest.mark.parametrize("said_by", ["port-format-8e1", "modbus-mode-rtu"])
def test_a_line_in_rtu_8e1_brings_up_and_trips_on_a_sensor_break(shared: ManualOmega,
                                                                 said_by: str) -> None:
    """§2.2: "or RTU 8E1". The devices file says so by the port's format (the framing
    follows the 8 data bits) or by ``modbus_mode: rtu`` alone (the port then opens 8E1; it
    was refused for the kind's default 7 data bits, and the rig did not open). Both units
    come up over RTU frames (CRC-16), and a sensor that comes loose is a hard
    ``sensor_break`` trip."""
    # both status addresses answer: minimalmodbus reads a reply's full length, so a short
    # exception reply (the probe of the address a unit lacks) costs a whole timeout
    both = Readings(other_status_address=True)
    core, shell = Unit(1, both), Unit(2, both)
    shared.reset(core, shell, rtu=True)
    d = devices()
    d["ports"]["heaters"] = {"url": shared.port, "timeout_s": 0.3}
    if said_by == "port-format-8e1":
        d["ports"]["heaters"]["format"] = "8E1"
    for role, address in (("core", 1), ("shell", 2)):
        d["devices"][f"heater_{role}"] = {"kind": "omega_cn7500", "port": "heaters",
                                          "address": address, "role": role,
                                          "limits": {"max_temperature_c": 300}}
        if said_by == "modbus-mode-rtu":
            d["devices"][f"heater_{role}"]["modbus_mode"] = "rtu"
    rig = Rig.open(parse_devices(d))
    try:
        assert rig.transports["heaters"].line_format == {"bytesize": 8, "parity": "E",
                                                         "stopbits": 1}
        for role in ("core", "shell"):
            rig.heaters[role].connect(standby_c=30.0)
        with shared.lock:
            assert [(celsius(u.words[SV]), u.run) for u in (core, shell)] == [(30.0, True)] * 2
        trips: list[Trip] = []
        sup = Supervisor(rig, trips.append)
        sup.setpoints_c.update(core=30.0, shell=30.0)
        assert not sup.poll_heater("shell") and trips == []
        with shared.lock:
            shell.words[PV] = SENSOR_NOT_CONNECTED
        assert sup.poll_heater("shell")
        assert [(tr.reason, tr.hard) for tr in trips] == [("sensor_break", True)]
    finally:
        rig.close()
