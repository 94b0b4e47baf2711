"""Drivers against the manuals (New Era NE-1000, Eurotherm 3200 HA028651), over ptys.

Each test names the manual item it checks. The emulators answer as the manual says, not as our
driver expects, so a driver that only worked with our own emulator's misreading fails here:
rate units that cannot change while a pump runs, Modbus exception responses and broadcast,
register scaling by the controller's display resolution, error replies that are refusals (never
retried, never a reading), replies with the variations the manuals allow. Also the supervisor's
watch over valves and the light path: a valve turned or a lamp failed mid-experiment is a device
fault (the trial invalid), never chemistry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from autolab.campaign import Campaign
from autolab.exceptions import ConfigError, DeviceFault, HardwareError
from autolab.executors.cstr import CSTRExecutor
from autolab.hardware.base import Watched
from autolab.hardware.delivery import DeliveryMonitor, wall_lab_min
from autolab.hardware.devices import parse_devices
from autolab.hardware.drivers import Eurotherm3200, IKAStirrer, NE1000Pump
from autolab.hardware.protocols import eurotherm as eu
from autolab.hardware.protocols import ika, newera, vici
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Shutdown, Supervisor, Trip
from autolab.hardware.transport import DeviceRefused, Transport, read_line, read_until_byte
from autolab.records import TrialStatus
from autolab.tracking import Journal
from autolab.virtuallab.emulators import (
    ModbusBusEmulator,
    PumpChainEmulator,
    StirrerEmulator,
    ValveEmulator,
)
from autolab.virtuallab.lab import VirtualLab
from autolab.virtuallab.reactor import HeaterModel, PumpModel

from .test_rig_registry import devices
from .test_virtual_lab import SCALE, _three_sobol_experiments, _when


class Bench:
    """Device state without physics: what the emulators serve (nothing advances)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pumps: dict[str, PumpModel] = {}
        self.heaters: dict[str, HeaterModel] = {}
        self.stirrers: dict[str, dict[str, float]] = {}
        self.valves: dict[str, int] = {}

    def advance(self) -> None:
        """Nothing moves on its own here."""


@pytest.fixture
def pump_line() -> Iterator[tuple[Bench, PumpChainEmulator, NE1000Pump]]:
    """One NE-1000 at address 3 with a 12 mm syringe, in Basic mode, brought up."""
    bench = Bench()
    bench.pumps["p"] = PumpModel(address=3, role="solvent", diameter_mm=12.0)
    emu = PumpChainEmulator("pumps", bench)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, timeout_s=0.3, retries=2)
    pump = NE1000Pump(line, "pump_x", address=3, diameter_mm=12.0, safe_mode_s=0)
    pump.connect()
    yield bench, emu, pump
    line.close()
    emu.stop()


# ============================================================================= NE-1000
def test_a_running_pump_keeps_its_rate_unit(pump_line: Any) -> None:
    """New Era manual, RAT: "can be changed while pumping ... units cannot change while pumping"."""
    bench, _, pump = pump_line
    p = bench.pumps["p"]
    pump.set_rate_ml_min(0.5)
    assert p.rate_units == "UM"
    pump.start()
    pump.set_rate_ml_min(0.61234)  # at rest the most precise unit would be MH (36.74MH)
    assert p.running and p.rate_units == "UM"
    assert p.rate_ml_min == pytest.approx(0.6123)
    pump.stop()
    pump.set_rate_ml_min(0.61234)
    assert p.rate_units == "MH"  # stopped: any unit


def test_the_emulated_pump_follows_the_manual_on_rat(pump_line: Any) -> None:
    """New Era manual: units may not change while pumping (?NA); units are optional; 4 digits, 3
    decimals."""
    bench, _, pump = pump_line
    p = bench.pumps["p"]
    pump.set_rate_ml_min(0.5)
    pump.start()
    with pytest.raises(DeviceRefused, match=r"\?NA"):
        pump.command("RAT", "1.5MM")
    pump.command("RAT", "700")  # no units: the current ones
    assert (p.rate_units, p.rate_ml_min) == ("UM", pytest.approx(0.7))
    for bad in ("12345UM", "1.2345MM", "0.0001UM"):
        with pytest.raises(DeviceRefused, match=r"\?OOR"):
            pump.command("RAT", bad)


def test_a_rate_the_running_unit_cannot_write_is_refused_before_a_byte(pump_line: Any) -> None:
    _, emu, pump = pump_line
    pump.set_rate_ml_min(0.5)
    pump.start()
    before = emu.requests
    with pytest.raises(HardwareError, match=r"pump_x.*12 mL/min.*cannot change units"):
        pump.set_rate_ml_min(12.0)  # 12000 UM has 5 digits
    assert emu.requests == before


def test_error_replies_are_refusals_never_retried(pump_line: Any) -> None:
    """New Era manual, command errors: ``?`` unknown, ``?NA`` not applicable (DIA while running)."""
    _, emu, pump = pump_line
    before = emu.requests
    with pytest.raises(DeviceRefused, match=r"pump_x: XYZ refused: \?  ?\(command not recog"):
        pump.command("XYZ")
    assert emu.requests == before + 1
    pump.set_rate_ml_min(0.5)
    pump.start()
    with pytest.raises(DeviceRefused, match=r"DIA10 refused: \?NA"):
        pump.command("DIA", "10")


def test_garbled_replies_are_retried_then_a_silent_pump_is_named(pump_line: Any) -> None:
    _, emu, pump = pump_line
    pump.set_rate_ml_min(0.5)
    emu.garble_next(1)
    assert pump.rate_read_ml_min() == pytest.approx(0.5)  # second attempt
    emu.no_reply = True
    with pytest.raises(HardwareError, match=r"pump_x: no valid reply to b'03RAT\\r' after 3 "
                                            r"attempts on .*: last reply b''"):
        pump.rate_read_ml_min()


@contextmanager
def _safe_mode_pump(
        retries: int) -> Iterator[tuple[Bench, PumpChainEmulator, Transport, NE1000Pump]]:
    """One NE-1000 at address 3 brought up in Safe mode (5 s timeout), on a fresh line."""
    bench = Bench()
    bench.pumps["p"] = PumpModel(address=3, role="solvent")
    emu = PumpChainEmulator("pumps", bench)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, timeout_s=0.3, retries=retries)
    try:
        pump = NE1000Pump(line, "pump_x", address=3, safe_mode_s=5)
        pump.connect()
        yield bench, emu, line, pump
    finally:
        line.close()
        emu.stop()


def test_a_corrupted_safe_mode_packet_is_answered_com_and_sent_again() -> None:
    """New Era manual: ``?COM`` = invalid packet received (Safe-mode CRC): noise, so the driver
    retries."""
    with _safe_mode_pump(retries=2) as (bench, emu, line, pump):
        assert bench.pumps["p"].safe_timeout_s == 5
        before = emu.requests
        emu.garble_next_request(1)
        pump.set_rate_ml_min(1.5)
        assert bench.pumps["p"].rate_ml_min == pytest.approx(1.5)
        assert emu.requests == before + 3  # RAT (?COM), RAT again, RAT query
        assert any("?COM (invalid communications packet)" in x for x in line.log.lines())


@pytest.mark.parametrize("wait_s", [0.0, 0.4])
def test_a_safe_mode_auto_alarm_is_never_taken_for_the_next_reply(wait_s: float) -> None:
    """New Era manual, Safe mode: "the pump spontaneously transmits a status packet when an alarm
    occurs"; it does not acknowledge the alarm. The unasked packet may wait on the line (0.4 s) or
    come just before a reply (0 s); either way the alarm is reported and the line stays in step."""
    with _safe_mode_pump(retries=2) as (bench, emu, line, pump):
        pump.set_rate_ml_min(1.0)
        pump.start()
        with bench.lock:
            bench.pumps["p"].stall("S")
        time.sleep(wait_s)
        st = pump.state()
        assert (st.alarms, st.pumping) == (("S",), False)
        assert bench.pumps["p"].alarm == ""  # the reply to a command acknowledged it
        assert pump.rate_read_ml_min() == pytest.approx(1.0)  # in step: a RAT answer
        assert pump.state().alarms == ()
        assert any(b"A?S" in e.received for e in line.log.since(0))


def test_an_auto_alarm_arriving_while_stale_input_is_cleared_is_still_read() -> None:
    """New Era manual, Safe mode: the unasked status packet is the only record of an alarm whose
    acknowledging reply is then lost. Before a request the line's waiting input is read and
    cleared; a packet that came in between the read and the clear was thrown away unread (seen
    once in 240 rounds of benchmarks/soak_alarms.py on a loaded host: the stalled pump was found
    idle, not stalled). Here pump 4 stalls exactly in that gap."""
    bench = Bench()
    bench.pumps["a"] = PumpModel(address=3, role="zinc")
    bench.pumps["b"] = PumpModel(address=4, role="solvent")
    emu = PumpChainEmulator("pumps", bench)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, timeout_s=0.3, retries=2)
    try:
        a = NE1000Pump(line, "pump_a", address=3, safe_mode_s=5)
        b = NE1000Pump(line, "pump_b", address=4, safe_mode_s=5)
        for pump in (a, b):
            pump.connect()
            pump.set_rate_ml_min(1.0)
            pump.start()
        with bench.lock:
            bench.pumps["a"].stall("S")
        deadline = time.monotonic() + 2.0
        while not line.serial.in_waiting and time.monotonic() < deadline:
            time.sleep(0.005)
        assert line.serial.in_waiting, "pump 3's packet never came"  # it waits on the line
        port, read = line.serial, line.serial.read
        hooked = {"done": False}

        def read_then_stall_b(size: int = 1) -> bytes:
            data = bytes(read(size))
            if not hooked["done"]:  # the first read: the stale input before pump 3's query
                hooked["done"] = True
                with bench.lock:
                    bench.pumps["b"].stall("S")
                deadline = time.monotonic() + 2.0
                while not port.in_waiting and time.monotonic() < deadline:
                    time.sleep(0.005)
                assert port.in_waiting, "pump 4's packet never came"
            return data

        port.read = read_then_stall_b  # type: ignore[method-assign]
        try:
            assert a.state().alarms == ("S",)
        finally:
            port.read = read  # type: ignore[method-assign]
        emu.drop_next(1, acks_only=True)  # pump 4's acknowledging reply is lost
        st = b.state()
        assert (st.alarms, st.pumping) == (("S",), False)
    finally:
        line.close()
        emu.stop()


def test_input_arriving_after_a_slow_read_of_stale_input_is_not_reset_away() -> None:
    """The same gap on a slow host: the read of what waited before a request returns after more
    than a reply timeout, and a packet came in meanwhile. It must reach the listeners, not be
    reset away (a reset there lost it: the review of the fix above)."""
    line = Transport("loop://", timeout_s=0.1)
    heard: list[bytes] = []
    line.stray_listeners.append(heard.append)
    port, read = line.serial, line.serial.read
    calls = {"n": 0}

    def slow_read(size: int = 1) -> bytes:
        data = bytes(read(size))
        calls["n"] += 1
        if calls["n"] == 1:
            port.write(b"\x02second packet\x03")  # arrives while the host is busy
            time.sleep(0.25)  # the host was busy: past the reply timeout
        return data

    try:
        port.write(b"\x02first packet\x03")  # waits before the request
        port.read = slow_read  # type: ignore[method-assign]
        with line.lock:
            line._discard_stale("pumps")  # the step before every request
        port.read = read  # type: ignore[method-assign]
        got = b"".join(heard) + bytes(read(int(port.in_waiting)))
        assert b"\x02second packet\x03" in got
    finally:
        line.close()


@pytest.mark.parametrize("wire", [b"600 4\r\n", b"600 4 \r\n", b"600 4\r", b"600 4\n",
                                  b"\n600 4\r\n"])
def test_text_replies_read_with_either_line_ending(wire: bytes) -> None:
    """IKA, VICI and ASP-1 replies are lines: CR LF, a bare CR or LF, a stray LF before."""
    line = Transport("loop://", timeout_s=0.1)
    try:
        line.serial.write(wire)
        assert ika.parse_value(read_line(line.serial)) == 600.0
    finally:
        line.close()


def test_a_truncated_safe_packet_is_discarded_after_the_inter_byte_timeout() -> None:
    """New Era manual, Safe mode: "0.5 s inter-byte timeout discards partial packets"."""
    with _safe_mode_pump(retries=0) as (bench, _, line, pump):
        line.serial.write(newera.encode_safe(3, "RAT", "1.5MM")[:4])  # the cable hiccups
        time.sleep(0.8)
        pump.set_rate_ml_min(0.75)  # no retry allowed: the first packet must frame
        assert bench.pumps["p"].rate_ml_min == pytest.approx(0.75)


def test_reply_variations_parse_and_alarms_or_errors_stay_what_they_are() -> None:
    """Tolerant: case, spaces, no address, line noise before STX. Strict: A?x, ?err."""
    assert newera.parse_basic(b"\x0203s500um\x03") == newera.PumpReply(3, "S", "", "500UM")
    assert newera.parse_basic(b"\x02 03 I \x03").status == "I"
    assert newera.parse_basic(b"\r\n\x0203S\x03").address == 3
    assert newera.parse_basic(b"\x02S12.45\x03") == newera.PumpReply(None, "S", "", "12.45")
    odd = newera.parse_basic(b"\x0200A?Z\x03")  # an alarm code the manual does not list
    assert (odd.status, odd.alarm, odd.pumping) == ("A", "Z", False)
    assert newera.parse_basic(b"\x0200S?XYZ\x03").error == "XYZ"
    with pytest.raises(newera.PumpProtocolError):
        newera.parse_basic(b"\x0200Q\x03")
    with pytest.raises(newera.PumpProtocolError):
        newera.parse_basic(b"\x0200S")  # truncated


@pytest.mark.parametrize(("rate", "dis", "dia"), [
    ("5.MM", "I5.W.25ML", "26."), ("5.000MM", "I5.000W0.250ML", "26.00"),
    (".5e1MM", None, None)])
def test_numbers_in_every_form_the_manual_allows(rate: str, dis: str | None,
                                                 dia: str | None) -> None:
    """New Era manual, <float>: "maximum of 4 digits plus 1 decimal point" — the point may lead or
    trail; anything else (an exponent) is malformed, never a reading."""
    if dis is None:
        with pytest.raises(newera.PumpProtocolError, match="expected <number>"):
            newera.parse_rate_units(rate)
        return
    assert newera.parse_rate_units(rate) == (5.0, "MM")
    assert newera.parse_dispensed(dis) == pytest.approx((5.0, 0.25))
    assert newera.parse_float(dia) == 26.0


def test_dispensed_volume_units_follow_the_diameter(pump_line: Any) -> None:
    """New Era manual, DIA: <= 14.00 mm sets volume units to µL (DIS answers in UL)."""
    bench, _, pump = pump_line
    with bench.lock:
        bench.pumps["p"].infused_ml = 1.5
    assert pump.command("DIS").data.endswith("UL")
    assert pump.dispensed_ml() == pytest.approx((1.5, 0.0))


# ============================================================================= Eurotherm 3200
@pytest.fixture
def modbus_bus() -> Iterator[tuple[Bench, ModbusBusEmulator, Transport]]:
    """Two controllers (addresses 1 and 2) on one bus whose registers carry no decimals."""
    bench = Bench()
    bench.heaters = {"h1": HeaterModel(address=1, role="core"),
                     "h2": HeaterModel(address=2, role="shell")}
    emu = ModbusBusEmulator("heaters", bench, decimals=0)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, baudrate=9600, timeout_s=0.3, retries=2)
    yield bench, emu, line
    line.close()
    emu.stop()


def test_modbus_exception_is_a_refusal_named_and_not_retried(modbus_bus: Any) -> None:
    """Exception 02 (illegal data address): a write to the read-only working SP."""
    _, emu, line = modbus_bus
    heater = Eurotherm3200(line, "heater_core", address=1, decimals=0)
    before = emu.requests
    with pytest.raises(HardwareError, match=r"heater_core: .* refused write of 100 to "
                                            r"register 5: Modbus exception"):
        heater._write(eu.WORKING_SP, 100.0)
    assert emu.requests == before + 1
    with pytest.raises(DeviceRefused, match="refused read of register 999"):
        heater._read(999)


def test_busy_is_retried_and_a_device_failure_is_a_refusal(modbus_bus: Any) -> None:
    """Modbus exceptions: 06 "slave device busy" says try again (retried, bounded); 04 "slave
    device failure" is the controller's own fault (raised at once, naming the register)."""
    _, emu, line = modbus_bus
    heater = Eurotherm3200(line, "heater_core", address=1, decimals=0)
    emu.exception_next = (2, eu.SLAVE_BUSY)
    before = emu.requests
    assert heater.temperature_c() == 25.0
    assert emu.requests == before + 3
    emu.exception_next = (3, eu.SLAVE_BUSY)  # busy beyond the retries: a named failure
    with pytest.raises(HardwareError, match=r"heater_core: no valid Modbus reply from address "
                                            r"1 to read of register 1 after 3 attempts"):
        heater.temperature_c()
    emu.exception_next = (1, eu.DEVICE_FAILURE)
    before = emu.requests
    with pytest.raises(DeviceRefused, match=r"heater_core: .* refused read of the status word "
                                            r"\(register 75\): Modbus exception .*failure"):
        heater.status()
    assert emu.requests == before + 1


def test_registers_are_scaled_by_the_controllers_decimals(modbus_bus: Any) -> None:
    """HA028651: 16-bit registers carry integers scaled by the display resolution."""
    bench, _, line = modbus_bus
    heater = Eurotherm3200(line, "heater_core", address=1, decimals=0, ramp_c_per_min=8.0)
    heater.connect()
    heater.set_temperature_c(180.0)
    h = bench.heaters["h1"]
    assert (h.remote_sp_c, h.ramp_c_per_min, h.remote) == (180.0, 8.0, True)
    h.pv_c = 234.4
    assert heater.temperature_c() == 234.0
    heater.cut_output()
    assert h.op_hi_pct == 0.0  # output % keeps its one decimal


def test_broadcast_writes_reach_every_controller_and_get_no_reply(modbus_bus: Any) -> None:
    bench, _, line = modbus_bus
    body = bytes([eu.BROADCAST, eu.WRITE_SINGLE, 0, eu.REMOTE_SP]) + (180).to_bytes(2, "big")
    line.exchange("bus", body + eu.crc_modbus(body), None)
    assert line.serial.read(8) == b""  # nobody answers a broadcast
    assert [h.remote_sp_c for h in bench.heaters.values()] == [180.0, 180.0]


def test_an_unknown_function_code_gets_exception_01(modbus_bus: Any) -> None:
    _, _, line = modbus_bus
    body = bytes([1, 0x11])  # report server id: not a 3200 function
    reply = line.exchange("bus", body + eu.crc_modbus(body), lambda s: s.read(5))
    assert reply[:3] == bytes([1, 0x91, eu.ILLEGAL_FUNCTION])
    assert reply[3:] == eu.crc_modbus(reply[:3])


@pytest.mark.parametrize("bit", [eu.LOOP_BREAK_BIT, eu.OVER_RANGE_BIT])
def test_loop_break_and_over_range_trip_hard(bit: int) -> None:
    """HA028651, status word 75: bit 6 loop break, bit 10 PV over-range (the supervisor trips on
    them)."""
    bench = Bench()
    bench.heaters = {"h1": HeaterModel(address=1, role="core"),
                     "h2": HeaterModel(address=2, role="shell")}
    emu = ModbusBusEmulator("heaters", bench)  # type: ignore[arg-type]
    emu.start()
    d = devices()
    d["ports"]["heaters"] = {"url": emu.port}
    rig = Rig.open(parse_devices(d))
    try:
        emu.extra_status[2] = 1 << bit
        trips: list[Trip] = []
        Supervisor(rig, trips.append).poll_once()  # heaters come first: nothing else is asked
    finally:
        rig.close()
        emu.stop()
    reason = {eu.LOOP_BREAK_BIT: "loop_break", eu.OVER_RANGE_BIT: "over_range"}[bit]
    assert [(t.reason, t.device, t.hard) for t in trips] == [(reason, "heater_shell", True)]


@pytest.mark.parametrize(("device", "address", "expected"), [
    ("heater_core", 0, r"devices\.heater_core\.address=0: expected 1-247 .*broadcast"),
    ("pump_solvent", 120, r"devices\.pump_solvent\.address=120: expected 0-99"),
])
def test_a_bus_address_outside_the_manual_is_refused_up_front(device: str, address: int,
                                                              expected: str) -> None:
    d = devices()
    d["devices"][device]["address"] = address
    with pytest.raises(ConfigError, match=expected):
        parse_devices(d)


# ============================================================================= IKA, VICI
def test_ika_lines_are_7e1_unless_the_port_says_otherwise() -> None:
    d = devices()
    d["ports"]["stir_shell"]["format"] = "8N1"
    rig = Rig.open(parse_devices(d))
    try:
        fmt = {n: (t.serial.bytesize, t.serial.parity, t.serial.stopbits)
               for n, t in rig.transports.items()}
    finally:
        rig.close()
    assert fmt["stir_core"] == (7, "E", 1)
    assert fmt["stir_shell"] == fmt["pumps"] == fmt["heaters"] == (8, "N", 1)
    d["ports"]["pumps"]["format"] = "9X1"
    with pytest.raises(ConfigError, match=r"ports\.pumps\.format"):
        parse_devices(d)


def test_an_ika_unit_without_status_4_is_driven_without_it() -> None:
    bench = Bench()
    emu = StirrerEmulator("stirrer_core", bench)  # type: ignore[arg-type]
    emu.has_status = False
    emu.start()
    line = Transport(emu.port, baudrate=9600, timeout_s=0.2, retries=1)
    try:
        stirrer = IKAStirrer(line, "stirrer_core")
        stirrer.connect()
        assert not stirrer.has_status
        stirrer.set_speed_rpm(600)
        stirrer.start()
        assert bench.stirrers["stirrer_core"]["on"] == 1.0
        assert stirrer.speed_rpm() == 600.0  # replies end in "blank CR LF"
    finally:
        line.close()
        emu.stop()


def test_vici_replies_tolerated_and_bad_command_is_a_refusal() -> None:
    assert vici.parse_position(b"CP03\r") == 3
    assert vici.parse_position(b"position is  =  2\r") == 2
    assert vici.parse_count(b"NP06\r") == 6
    assert vici.parse_position(b"1Position is = 4\r") == 4  # an actuator with ID 1
    bench = Bench()
    emu = ValveEmulator("solvent_valve", bench)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, baudrate=9600, timeout_s=0.3, retries=2)
    try:
        before = emu.requests
        with pytest.raises(DeviceRefused, match=r"valve: b'GO9\\r' refused.*Bad command"):
            line.exchange("valve", b"GO9\r", lambda s: read_until_byte(s, b"\r"),
                          vici.parse_position)
        assert emu.requests == before + 1
    finally:
        line.close()
        emu.stop()


# ============================================================================= supervisor
def test_the_supervisor_finds_a_turned_valve_and_a_failed_lamp() -> None:
    with VirtualLab(time_scale=SCALE) as lab:
        rig = Rig.open(lab.devices_config())
        try:
            rig.connect()
            trips: list[Trip] = []
            monitor = DeliveryMonitor(rig.pumps, wall_lab_min(SCALE))
            sup = Supervisor(rig, trips.append, monitor=monitor)
            rig.solvent_valve.move(2)
            rig.spectrometer.configure(source="ABS", shutter_open=True, cell="SAMPLE")
            sup.poll_once()
            assert monitor.take_faults() == []
            with lab.reactor.lock:
                lab.reactor.valves["solvent_valve"] = 1  # turned by hand
            lab.spectrometer.source_failed = True
            sup.poll_once()
            sup.poll_once()  # each fault is reported once
            found = {(f.device, f.reason, f.trip): f.detail for f in monitor.take_faults()}
            assert found == {
                ("solvent_valve", "valve_moved", False):
                    "solvent_valve is not as commanded: position 1, commanded 2",
                ("spectrometer", "light_path", False):
                    "spectrometer is not as commanded: SRC reads OFF, set ABS"}
            assert trips == []  # a fault of the experiment, not a hazard
            with pytest.raises(DeviceFault, match="did not light"):
                rig.spectrometer.configure(source="EXC", shutter_open=True, cell="SAMPLE")
            lab.valves["outlet_valve"].no_reply = True  # a silent valve trips soft
            sup.poll_once()
            assert [(t.reason, t.device, t.hard) for t in trips] == [
                ("comms_loss", "outlet_valve", False)]
        finally:
            rig.close()


def test_a_valve_turned_mid_experiment_makes_the_trial_invalid(tmp_path: Path) -> None:
    with VirtualLab(time_scale=SCALE) as lab:
        executor = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
        campaign = Campaign.create(_three_sobol_experiments("cstr-valve", n=1),
                                   tmp_path / "runs", executor=executor)

        def feeding_a_while() -> bool:
            with lab.reactor.lock:
                p = lab.reactor.pumps["pump_phosphine"]
                return p.running and p.infused_ml > 2.0 and lab.reactor.valves[
                    "solvent_valve"] == 2

        def turn() -> None:
            with lab.reactor.lock:
                lab.reactor.valves["solvent_valve"] = 1

        _when(feeding_a_while, turn)
        campaign.run()
        state = Journal.read(campaign.run_dir / "journal.jsonl")
        (trial,) = state.trials
        assert trial.status is TrialStatus.INVALID, trial
        assert trial.error is not None and "solvent_valve is not as commanded" in trial.error
        assert trial.objective is None and trial.features is None
        assert state.stopped_reason is not None and state.stopped_reason.startswith("budget")


def test_the_soft_shutdown_flushes_although_the_solvent_runs_in_another_unit() -> None:
    """The make-up solvent runs at 0.5 mL/min (500UM); the flush rate 20 mL/min needs MM."""
    with VirtualLab(time_scale=SCALE) as lab:
        with lab.reactor.lock:  # long powered up (no reset alarm, no ignored first command)
            for p in lab.reactor.pumps.values():
                p.alarm, p.ignore_next = "", False
        rig = Rig.open(lab.devices_config(safe_mode_s=0))  # Basic mode, as the pumps are
        try:
            solvent = rig.pumps["solvent"]
            solvent.connect()
            solvent.set_rate_ml_min(0.5)
            solvent.start()
            report = Shutdown(rig, lambda s: None, flush_ml=1.0,
                              flush_rate_ml_min=20.0).run(hard=False)
            steps = {s.name: s for s in report.steps}
            assert steps["solvent rate"].ok and steps["solvent on"].ok, report.lines()
            with lab.reactor.lock:
                p = lab.reactor.pumps["pump_solvent"]
                assert (p.rate_ml_min, p.rate_units) == (20.0, "MM")
        finally:
            rig.close()


def test_a_soft_shutdown_that_cannot_flush_stops_the_make_up_solvent() -> None:
    """The solvent ran as make-up; the outlet valve is silent, so no flush: it must stop."""
    with VirtualLab(time_scale=SCALE) as lab:
        with lab.reactor.lock:  # long powered up (no reset alarm, no ignored first command)
            for p in lab.reactor.pumps.values():
                p.alarm, p.ignore_next = "", False
        rig = Rig.open(lab.devices_config(safe_mode_s=0, timeout_s=0.1))
        try:
            solvent = rig.pumps["solvent"]
            solvent.set_rate_ml_min(0.5)
            solvent.start()
            lab.valves["outlet_valve"].no_reply = True
            report = Shutdown(rig, lambda s: None, flush_ml=1.0,
                              flush_rate_ml_min=20.0).run(hard=False)
            steps = {s.name: s for s in report.steps}
            assert not steps["solvent flush"].ok and steps["solvent off"].ok, report.lines()
            with lab.reactor.lock:
                assert not lab.reactor.pumps["pump_solvent"].running
        finally:
            rig.close()


# ============================================================================= Eurotherm status
@contextmanager
def _two_heaters(core_limits: dict[str, float] | None = None,
                 **top: Any) -> Iterator[tuple[Bench, ModbusBusEmulator, Rig]]:
    """Two controllers (core 1, shell 2) on one emulated bus; the other devices on loop://."""
    bench = Bench()
    bench.heaters = {"h1": HeaterModel(address=1, role="core"),
                     "h2": HeaterModel(address=2, role="shell")}
    emu = ModbusBusEmulator("heaters", bench)  # type: ignore[arg-type]
    emu.start()
    d = devices(**top)
    d["ports"]["heaters"] = {"url": emu.port}
    d["ports"]["pumps"] = {"url": "loop://", "timeout_s": 0.05, "retries": 0}  # none there
    if core_limits is not None:
        d["devices"]["heater_core"]["limits"] = core_limits
    rig = Rig.open(parse_devices(d))
    try:
        yield bench, emu, rig
    finally:
        rig.close()
        emu.stop()


@pytest.mark.parametrize(("fault", "reason"), [("exception", "device_refused"),
                                                ("silent", "comms_loss")])
def test_a_heater_that_cannot_be_polled_trips_hard_named_for_what_it_answered(
        fault: str, reason: str) -> None:
    """Modbus: an exception reply (04, slave device failure) is the controller saying no over a
    working line; no reply at all is a lost line. Both trip hard (a controller that cannot be
    polled may not hold its setpoint), but a person looks at different things: the controller's
    mode and configuration, or the cable and the port. The trip says which."""
    with _two_heaters() as (_, emu, rig):
        if fault == "exception":
            emu.exception_next = (1, eu.DEVICE_FAILURE)
        else:
            emu.no_reply = True
        trips: list[Trip] = []
        Supervisor(rig, trips.append).poll_once()  # heaters come first: nothing else is asked
    assert [(t.reason, t.device, t.hard) for t in trips] == [(reason, "heater_core", True)]
    expected = "Modbus exception" if fault == "exception" else "no valid Modbus reply"
    assert expected in trips[0].detail


def test_a_controller_in_manual_mode_is_refused_at_connect_and_trips_hard() -> None:
    """HA028651, status word 75, bit 4 auto/manual: in manual the output is held, no SP is
    followed."""
    with _two_heaters() as (bench, _, rig):
        bench.heaters["h2"].manual = True
        with pytest.raises(HardwareError, match=r"heater_shell: controller at address 2 is in "
                                                r"manual mode .*bit 4"):
            rig.heaters["shell"].connect()
        assert bench.heaters["h2"].local_sp_c == 25.0 and not bench.heaters["h2"].remote
        rig.heaters["core"].connect()  # the other one is in auto
        trips: list[Trip] = []
        Supervisor(rig, trips.append).poll_once()  # heaters come first: nothing else is asked
    assert [(t.reason, t.device, t.hard) for t in trips] == [
        ("manual_mode", "heater_shell", True)]


def test_a_remote_setpoint_failure_makes_the_experiment_invalid() -> None:
    """HA028651, bit 14 remote SP fail: the controller runs on its local setpoint, not ours."""
    with _two_heaters() as (bench, _, rig):
        for h in rig.heaters.values():
            h.connect()
        trips: list[Trip] = []
        monitor = DeliveryMonitor(rig.pumps, wall_lab_min(1.0))
        sup = Supervisor(rig, trips.append, monitor=monitor)
        sup.set_heater_c("shell", 250.0)
        bench.heaters["h2"].remote_fault = True
        assert rig.heaters["shell"].status().remote_sp_fail
        assert not sup.poll_heater("shell")
        assert monitor.take_faults() == []  # one poll may be a transient
        for _ in range(3):  # reported once
            assert not sup.poll_heater("shell")
        (finding,) = monitor.take_faults()
        assert (finding.device, finding.reason, finding.trip) == (
            "heater_shell", "heater_setpoint", False)
        assert "remote setpoint failed (status bit 14)" in finding.detail
        assert trips == []  # it falls back to the standby setpoint: not a hazard


@pytest.mark.parametrize("hold_c", [None, 5.0])
def test_a_block_that_leaves_its_setpoint_makes_the_experiment_invalid(
        hold_c: float | None) -> None:
    """A PV that strays from a setpoint it had reached (a failing heater, a reading out of
    range with no status bit) is a device fault when ``temperature_hold_c`` is set."""
    top = {"temperature_hold_c": hold_c}
    with _two_heaters(**top) as (bench, _, rig):
        for h in rig.heaters.values():
            h.connect()
        monitor = DeliveryMonitor(rig.pumps, wall_lab_min(1.0))
        sup = Supervisor(rig, lambda t: None, monitor=monitor)
        sup.set_heater_c("core", 180.0)
        model = bench.heaters["h1"]
        for pv in (120.0, 120.0, 179.0, 180.4, 184.0, 173.0, 171.0, 150.0):
            model.pv_c = pv  # off by more than 5 °C before it got there: still heating
            sup.poll_heater("core")
        found = [(f.device, f.reason, f.trip, f.detail) for f in monitor.take_faults()]
        if hold_c is None:
            assert found == []
            return
        assert found == [("heater_core", "heater_setpoint", False,
                          "heater_core did not hold its setpoint: it had reached 180 °C and "
                          "now reads 171.0 °C (hold tolerance 5 °C)")]
        sup.set_heater_c("core", 150.0)  # a new setpoint: reached afresh, then strays again
        for pv in (150.0, 140.0, 139.0):
            model.pv_c = pv
            sup.poll_heater("core")
        assert [f.detail.split(": ", 1)[1] for f in monitor.take_faults()] == [
            "it had reached 150 °C and now reads 139.0 °C (hold tolerance 5 °C)"]


def test_a_heater_that_fails_while_settling_makes_the_trial_invalid(tmp_path: Path) -> None:
    """A heater element that dies after its block reached the setpoint (no status bit: the
    emulated controller keeps answering) is journaled invalid, never told as chemistry."""
    with VirtualLab(time_scale=800.0) as lab:  # polls 7 lab min apart: several while settling
        config = lab.devices_config().model_copy(update={"temperature_hold_c": 5.0})
        executor = CSTRExecutor(config, install_signal_handlers=False)
        campaign = Campaign.create(_three_sobol_experiments("cstr-heater", n=1),
                                   tmp_path / "runs", executor=executor)

        def settling() -> bool:  # blocks held at their setpoints, outlet to the collector
            with lab.reactor.lock:
                at = lab.reactor.valves["outlet_valve"] == 1 and lab.reactor.pumps[
                    "pump_phosphine"].running
            return at and "shell" in executor.supervisor.holding

        def element_dies() -> None:
            with lab.reactor.lock:
                lab.reactor.heaters["heater_shell"].op_hi_pct = 0.0

        _when(settling, element_dies)
        campaign.run()
        state = Journal.read(campaign.run_dir / "journal.jsonl")
        (trial,) = state.trials
        assert trial.status is TrialStatus.INVALID, trial
        assert trial.error is not None and "heater_shell did not hold its setpoint" in trial.error
        assert trial.objective is None and trial.features is None
        assert executor.supervisor.trip is None  # not a hazard: the rig was not tripped
        assert state.stopped_reason is not None and state.stopped_reason.startswith("budget")


def test_remote_setpoint_selection_is_read_back_at_connect() -> None:
    """HA028651, register 276 selects the remote SP (26): a controller without remote SP enabled
    acknowledges the write and stays on its local SP; every later remote SP would read back
    fine and never be used."""
    with _two_heaters() as (bench, _, rig):
        bench.heaters["h1"].remote_disabled = True
        with pytest.raises(HardwareError, match=r"heater_core: setpoint remote_sp_select did "
                                                r"not stick: sent 1, read back 0"):
            rig.heaters["core"].connect()


def test_a_cut_the_controller_clamps_is_a_failed_shutdown_step_not_ok() -> None:
    """3216 manual, OP.HI (30) / OP.LO (31): the output high limit cannot go below the low limit, so
    a cut to 0 % may be clamped; the hard shutdown must say the heater is not cut."""
    with _two_heaters() as (bench, _, rig):
        for h in rig.heaters.values():
            h.connect()
        bench.heaters["h2"].op_lo_pct = 20.0
        with pytest.raises(HardwareError, match=r"heater_shell: setpoint output_high_pct did "
                                                r"not stick: sent 0, read back 20"):
            rig.heaters["shell"].cut_output()
        report = Shutdown(rig, lambda s: None, flush_ml=1.0, flush_rate_ml_min=1.0).run(
            hard=True)
        steps = {s.name: s for s in report.steps}
        assert steps["cut heater core"].ok and bench.heaters["h1"].op_hi_pct == 0.0
        assert not steps["cut heater shell"].ok
        assert "switch off its mains" in steps["cut heater shell"].action
        assert "heater_shell" in report.unsafe_devices


@pytest.mark.parametrize(("pv", "reason"), [(3276.7, "over_temperature"),
                                            (-3276.8, "pv_out_of_range")])
def test_a_reading_no_block_can_have_trips_hard_even_without_a_limit(pv: float,
                                                                     reason: str) -> None:
    """An out-of-range PV with no status bit (a wrong input, a sentinel value) is a reading the
    block cannot have: above 400 °C (the highest limit a devices file may give) it is an
    over-temperature whatever the limits, and below -50 °C the PV is meaningless (the
    controller would heat flat out), so both cut the heaters like a sensor break."""
    with _two_heaters(core_limits={}) as (bench, _, rig):  # no max_temperature_c
        bench.heaters["h1"].pv_c = pv
        trips: list[Trip] = []
        Supervisor(rig, trips.append).poll_once()
    assert [(t.reason, t.device, t.hard) for t in trips] == [(reason, "heater_core", True)]
    assert f"PV {pv:.1f} °C" in trips[0].detail


def test_a_stirrer_that_stops_or_blocks_mid_experiment_makes_it_invalid() -> None:
    """IKA ``STATUS_4``: 1 running, 0 stopped, -1 blocked. A stirrer commanded on that stops
    or blocks changes the mixing the conditions assume: a device fault, never chemistry."""
    with VirtualLab(time_scale=SCALE) as lab:
        rig = Rig.open(lab.devices_config())
        try:
            for s in rig.stirrers.values():
                s.connect()
            trips: list[Trip] = []
            monitor = DeliveryMonitor(rig.pumps, wall_lab_min(SCALE))
            sup = Supervisor(rig, trips.append, monitor=monitor)
            core, shell = rig.stirrers["core"], rig.stirrers["shell"]
            for s in (core, shell):
                s.set_speed_rpm(600)
                s.start()
            assert isinstance(core, Watched) and core.check() == ""
            with lab.reactor.lock:
                lab.reactor.stirrers["stirrer_core"]["blocked"] = 1.0
                lab.reactor.stirrers["stirrer_shell"]["on"] = 0.0  # stopped at its keypad
            sup.poll_stirrers()
            sup.poll_stirrers()  # each fault is reported once
            found = {(f.device, f.reason, f.trip): f.detail for f in monitor.take_faults()}
            assert found == {
                ("stirrer_core", "stirrer", False):
                    "stirrer_core is not as commanded: motor blocked (STATUS_4 = -1), "
                    "commanded on at 600 rpm",
                ("stirrer_shell", "stirrer", False):
                    "stirrer_shell is not as commanded: motor stopped (STATUS_4 = 0), "
                    "commanded on at 600 rpm"}
            assert trips == []
            shell.stop()
            assert shell.check() == ""  # commanded off: stopped is as commanded
        finally:
            rig.close()
