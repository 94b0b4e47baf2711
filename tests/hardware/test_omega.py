"""Omega CN7500 (kind ``omega_cn7500``) against its register map, over ptys, ASCII and RTU.

Each test names the manual item it checks: PV/SV in 0.1 °C at 0x1000/0x1001, the PV error codes
(0x8002, 0x8003 sensor not connected, 0x8004, 0x8006) that are never a temperature, the
status/error code at 0x102E or 0x4750, RUN/STOP at bit 0x0814, function codes 3/6 and 2/5,
ASCII 7E1 as the usual setting. The emulator answers as the map says (16 is not one of its
functions), so a driver that wrote with minimalmodbus's default would fail here.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import minimalmodbus
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.exceptions import ConditionsError, ConfigError
from autolab.hardware.controllers import OmegaCN7500
from autolab.hardware.devices import parse_devices
from autolab.hardware.protocols import omega
from autolab.hardware.ramp import ramp_value_c
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Shutdown, Supervisor, Trip
from autolab.hardware.transport import DeviceRefused, Transport
from autolab.virtuallab.heater_emulators import OmegaBusEmulator
from autolab.virtuallab.reactor import HeaterModel

from .test_rig_registry import devices


class Bench:
    """Device state without physics: what the emulator serves (nothing advances)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.heaters = {"h1": HeaterModel(address=1, role="core"),
                        "h2": HeaterModel(address=2, role="shell")}

    def advance(self) -> None:
        """Nothing moves on its own here."""


# ============================================================================= codec
@given(st.binary(min_size=2, max_size=40))
def test_ascii_frames_round_trip_and_carry_their_lrc(pdu: bytes) -> None:
    frame = omega.encode_ascii(pdu)
    assert frame.startswith(b":") and frame.endswith(b"\r\n")
    assert omega.decode_ascii(frame) == pdu
    assert (sum(pdu) + omega.lrc(pdu)) & 0xFF == 0


@given(st.binary(min_size=2, max_size=20), st.integers(min_value=1, max_value=60))
def test_a_corrupted_ascii_frame_is_rejected(pdu: bytes, where: int) -> None:
    frame = bytearray(omega.encode_ascii(pdu))
    i = 1 + where % (len(frame) - 3)
    frame[i] = ord("0") if frame[i] != ord("0") else ord("1")
    with pytest.raises(omega.OmegaProtocolError):
        omega.decode_ascii(bytes(frame))


def test_the_ascii_frame_is_the_one_minimalmodbus_sends() -> None:
    """An independent encoder (minimalmodbus) frames "read PV of slave 1" the same way."""
    expected = minimalmodbus._embed_payload(1, minimalmodbus.MODE_ASCII, 3,
                                            bytes.fromhex("10000001"))
    assert omega.encode_ascii(bytes.fromhex("010310000001")) == expected == \
        b":010310000001EB\r\n"


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_a_pv_word_is_a_temperature_or_an_error_code_never_both(word: int) -> None:
    fault, what = omega.pv_fault(word)
    if word in omega.PV_ERRORS or 0x8000 <= word < 0x8010:
        assert fault in ("sensor_break", "input_error") and what
    else:
        assert (fault, what) == ("", "")
        assert omega.to_word(omega.from_word(word)) == word


def test_the_map_s_error_codes_name_their_faults() -> None:
    assert omega.pv_fault(0x8003)[0] == "sensor_break"
    assert {omega.pv_fault(w)[0] for w in (0x8002, 0x8004, 0x8006)} == {"input_error"}


@given(st.floats(-50, 400), st.floats(-50, 400), st.floats(0.1, 100), st.floats(0, 1000))
def test_the_host_ramp_never_passes_its_target_nor_its_rate(start: float, target: float,
                                                            rate: float, t: float) -> None:
    value = ramp_value_c(start, target, rate, t)
    if target <= start:
        assert value == target  # a lower setpoint at once: it never adds heat
    else:
        assert start <= value <= target
        assert value - start <= rate * t + 1e-9


# ============================================================================= over a pty
@pytest.fixture(params=["ascii", "rtu"])
def bus(request: Any) -> Iterator[tuple[Bench, OmegaBusEmulator, Transport]]:
    bench = Bench()
    emu = OmegaBusEmulator("heaters", bench, mode=request.param)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, baudrate=9600, timeout_s=0.5, retries=2)
    yield bench, emu, line
    line.close()
    emu.stop()


def _driver(emu: OmegaBusEmulator, line: Transport, **kw: Any) -> OmegaCN7500:
    return OmegaCN7500(line, "heater_core", address=1, mode=emu.mode,  # type: ignore[arg-type]
                       **kw)


def test_connect_writes_with_the_map_s_function_codes(bus: Any) -> None:
    """Map: FC3 read, FC6 write, FC2/FC5 bits (the emulator answers 16 with exception 01)."""
    bench, emu, line = bus
    heater = _driver(emu, line)
    heater.connect(standby_c=30.0)
    assert bench.heaters["h1"].local_sp_c == 30.0 and bench.heaters["h1"].op_hi_pct == 100.0
    assert heater.range_c == (-200.0, 600.0)
    assert heater.status_register == omega.STATUS
    functions = {_function(e.sent, emu.mode) for e in line.log.since(0)}
    assert functions == {2, 3, 5, 6}
    # the one refusal: the probe of the other status address (0x4750), absent on this model
    refused = [e for e in line.log.since(0) if e.error]
    assert len(refused) == 1 and "IllegalRequest" in refused[0].error


def _function(frame: bytes, mode: str) -> int:
    return int(frame[3:5], 16) if mode == "ascii" else frame[1]


def test_a_write_refused_as_illegal_function_falls_back_to_16(bus: Any) -> None:
    """The map names 6; a unit that implements only 16 still gets its setpoint."""
    bench, emu, line = bus
    heater = _driver(emu, line)
    heater._write_fc = 16  # as if 6 had been refused: 16 is not in this map -> back to 6
    heater._write(omega.SV, 42.0)
    assert bench.heaters["h1"].local_sp_c == 42.0 and heater._write_fc == 6


def test_a_unit_that_reads_its_run_bit_as_a_coil_is_asked_with_function_1(bus: Any) -> None:
    """The map says 2 for bits; Modbus reads a coil with 1: a unit refusing 2 is asked with 1."""
    bench, emu, line = bus
    emu.bit_read_fc = 1
    heater = _driver(emu, line)
    heater.connect()
    heater.cut_output()
    assert bench.heaters["h1"].op_hi_pct == 0.0 and heater._bit_read_fc == 1


@pytest.mark.parametrize(("word", "fault"), [(0x8002, "input_error"), (0x8003, "sensor_break"),
                                             (0x8004, "input_error"), (0x8006, "input_error"),
                                             (0x8005, "input_error")])
def test_a_pv_error_code_is_a_fault_never_a_temperature(bus: Any, word: int,
                                                        fault: str) -> None:
    _, emu, line = bus
    heater = _driver(emu, line)
    heater.connect()
    emu.pv_error[1] = word
    assert heater.fault() == fault
    assert math.isnan(heater.temperature_c())  # fails every comparison a caller makes
    assert "PV error" in heater.ping()


def test_the_status_code_is_found_where_the_model_keeps_it(bus: Any) -> None:
    """Map: status/error code at 0x102E, at 0x4750 on some models; a non-zero code is a fault."""
    _, emu, line = bus
    emu.status_register = omega.STATUS_ALT
    heater = _driver(emu, line)
    heater.connect()
    assert heater.status_register == omega.STATUS_ALT
    assert heater.fault() == ""
    emu.status_code[1] = 0x0007  # EEPROM error
    assert heater.fault() == "controller_error"


def test_a_unit_without_a_status_register_is_driven_without_it(bus: Any) -> None:
    _, emu, line = bus
    emu.status_register = None
    heater = _driver(emu, line)
    heater.connect()
    assert heater.status_register is None and heater.fault() == ""


def test_the_host_ramp_walks_the_sv_up_in_steps_and_the_heartbeat_writes_nothing(
        bus: Any) -> None:
    """No ramp register in the map: the driver keeps ``ramp_c_per_min`` itself, in steps."""
    bench, emu, line = bus
    # 600 lab s per wall s: 60 °C/min in 30-s steps is a 30 °C step every 0.05 wall s
    heater = _driver(emu, line, ramp_c_per_min=60.0, time_scale=600.0)
    heater.connect(standby_c=25.0)
    before = emu.sv_writes.get(1, 0)
    seen: list[float] = []
    deadline = time.monotonic() + 30.0
    while bench.heaters["h1"].local_sp_c != 145.0 and time.monotonic() < deadline:
        heater.set_temperature_c(145.0)  # as the supervisor does every poll
        seen.append(bench.heaters["h1"].local_sp_c)
        time.sleep(0.01)
    assert seen[-1] == 145.0 and seen == sorted(seen) and max(seen) <= 145.0
    steps = emu.sv_writes[1] - before
    assert 1 <= steps <= 5  # (145 - 25) / 30 steps, not one per call
    for _ in range(5):
        heater.set_temperature_c(145.0)
    assert emu.sv_writes[1] - before == steps
    heater.set_temperature_c(60.0)  # down: at once (a lower setpoint never adds heat)
    assert bench.heaters["h1"].local_sp_c == 60.0


def test_a_setpoint_changed_at_the_panel_is_written_again_on_the_next_heartbeat(
        bus: Any) -> None:
    bench, emu, line = bus
    heater = _driver(emu, line)
    heater.connect()
    heater.set_temperature_c(25.0)
    bench.heaters["h1"].local_sp_c = 99.0  # someone turned the knob
    heater.set_temperature_c(25.0)  # the supervisor's heartbeat
    assert bench.heaters["h1"].local_sp_c == 25.0


def test_a_ramp_starts_from_a_hot_block_not_from_the_old_setpoint(bus: Any) -> None:
    bench, emu, line = bus
    heater = _driver(emu, line, ramp_c_per_min=1.0)
    heater.connect(standby_c=25.0)
    bench.heaters["h1"].pv_c = 200.0
    heater.set_temperature_c(230.0)  # 1 °C/min from 200 °C, not from 25 °C
    assert bench.heaters["h1"].local_sp_c == 200.0


def test_limits_and_the_unit_s_range_refuse_before_a_byte(bus: Any) -> None:
    _, emu, line = bus
    heater = OmegaCN7500(line, "heater_core", address=1, mode=emu.mode,
                         limits=parse_devices(devices()).devices["heater_core"].limits)
    heater.connect()
    before = emu.requests
    with pytest.raises(ConditionsError, match=r"heater_core\.temperature_c"):
        heater.set_temperature_c(350.0)  # devices file: 300
    heater.range_c = (0.0, 250.0)
    with pytest.raises(ConditionsError, match="the controller's range"):
        heater.set_temperature_c(280.0)
    assert emu.requests == before


def test_cut_output_is_stop_read_back_and_a_stop_from_the_panel_is_a_fault(bus: Any) -> None:
    bench, emu, line = bus
    heater = _driver(emu, line)
    heater.connect()
    bench.heaters["h1"].op_hi_pct = 0.0  # someone pressed STOP on the front panel
    assert heater.fault() == "stopped"
    heater.connect()
    heater.cut_output()
    assert bench.heaters["h1"].op_hi_pct == 0.0 and not heater._running()
    assert heater.fault() == ""  # stopped as commanded


def test_busy_is_retried_and_an_exception_is_a_refusal(bus: Any) -> None:
    _, emu, line = bus
    heater = _driver(emu, line)
    emu.exception_next = (2, 6)  # slave busy, twice: retried
    assert heater.temperature_c() == 25.0
    emu.exception_next = (1, 4)  # device failure: refused at once
    with pytest.raises(DeviceRefused, match="refused read of the PV"):
        heater.temperature_c()


# ============================================================================= the rig
def _omega_devices(mode: str | None = None, fmt: str | None = None) -> dict[str, Any]:
    d = devices()
    for name in ("heater_core", "heater_shell"):
        d["devices"][name]["kind"] = "omega_cn7500"
        if mode:
            d["devices"][name]["modbus_mode"] = mode
    if fmt:
        d["ports"]["heaters"]["format"] = fmt
    return d


def test_the_kind_has_its_own_schema_and_entry_check() -> None:
    config = parse_devices(_omega_devices())
    assert config.category("heater_core") == "heater"
    bad = _omega_devices()
    bad["devices"]["heater_core"]["address"] = 0
    with pytest.raises(ConfigError, match=r"heater_core\.address=0: expected 1-247"):
        parse_devices(bad)
    bad = _omega_devices()
    bad["devices"]["heater_core"]["syringe_ml"] = 5  # a pump's field
    with pytest.raises(ConfigError, match="syringe_ml"):
        parse_devices(bad)


def test_the_line_is_ascii_7e1_by_default_and_rtu_needs_8_bits() -> None:
    rig = Rig.open(parse_devices(_omega_devices()))
    try:
        assert rig.transports["heaters"].line_format == {"bytesize": 7, "parity": "E",
                                                         "stopbits": 1}
        assert rig.heaters["core"].mode == "ascii"  # type: ignore[attr-defined]
    finally:
        rig.close()
    rig = Rig.open(parse_devices(_omega_devices(fmt="8E1")))
    try:
        assert rig.heaters["core"].mode == "rtu"  # type: ignore[attr-defined]
    finally:
        rig.close()
    # modbus_mode rtu on a port without a format: the map's RTU setting, 8E1 (it was refused
    # for the kind's 7 data bits); a port that says 7 bits is still refused
    rig = Rig.open(parse_devices(_omega_devices(mode="rtu")))
    try:
        assert rig.transports["heaters"].line_format == {"bytesize": 8, "parity": "E",
                                                         "stopbits": 1}
        assert rig.heaters["core"].mode == "rtu"  # type: ignore[attr-defined]
    finally:
        rig.close()
    with pytest.raises(ConfigError, match="RTU needs 8 data bits"):
        Rig.open(parse_devices(_omega_devices(mode="rtu", fmt="7E1")))


@pytest.mark.parametrize(("fault", "reason"), [("sensor", "sensor_break"),
                                                ("silent", "comms_loss"),
                                                ("exception", "device_refused"),
                                                ("panel_stop", "stopped")])
def test_a_fault_trips_hard_and_ends_with_the_heaters_stopped(fault: str, reason: str) -> None:
    bench = Bench()
    emu = OmegaBusEmulator("heaters", bench)  # type: ignore[arg-type]
    emu.start()
    d = _omega_devices()
    d["ports"]["heaters"] = {"url": emu.port, "timeout_s": 0.5}
    d["ports"]["pumps"] = {"url": "loop://", "timeout_s": 0.05, "retries": 0}  # none there
    rig = Rig.open(parse_devices(d))
    try:
        for h in rig.heaters.values():
            h.connect()
        trips: list[Trip] = []
        sup = Supervisor(rig, trips.append)
        for role in rig.heaters:
            sup.set_heater_c(role, 25.0)  # refreshed by every poll from here on
        if fault == "sensor":
            bench.heaters["h1"].sensor_break = True
        elif fault == "silent":
            emu.no_reply = True
        elif fault == "exception":
            emu.exception_next = (1, 4)
        else:
            bench.heaters["h1"].op_hi_pct = 0.0
        sup.poll_once()  # heaters come first; their setpoints refreshed (the heartbeat)
        emu.no_reply = False
        report = Shutdown(rig, lambda s: None, flush_ml=1.0,
                          flush_rate_ml_min=1.0).run(hard=True)
    finally:
        rig.close()
        emu.stop()
    assert [(t.reason, t.device, t.hard) for t in trips] == [(reason, "heater_core", True)]
    steps = {s.name: s for s in report.steps}
    assert steps["cut heater core"].ok and steps["cut heater shell"].ok
    assert [h.op_hi_pct for h in bench.heaters.values()] == [0.0, 0.0]  # both STOPped
