"""Huber thermostats (kind ``huber``, PB protocol) against the PB description, over ptys.

Each test names the item it checks: 10-character frames ``{M``/``{S`` + 2-hex variable + 4 hex
data (``****`` asks) + CR LF, temperatures in 0.01 °C two's complement (``{S00F2DF`` is
-33.61 °C), -151 °C marks an invalid temperature, variables 00 (setpoint), 01 (internal),
07 (process), 14 (temperature control), 30/31 (setpoint range), 9600 8N1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.exceptions import ConditionsError, ConfigError
from autolab.hardware.controllers import HuberPB
from autolab.hardware.devices import parse_devices
from autolab.hardware.protocols import huber
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Shutdown, Supervisor, Trip
from autolab.hardware.transport import Transport
from autolab.virtuallab.heater_emulators import HuberEmulator
from autolab.virtuallab.reactor import HeaterModel

from .test_rig_registry import devices


class Bench:
    """Device state without physics: what the emulators serve (nothing advances)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.heaters = {"core": HeaterModel(address=0, role="core"),
                        "shell": HeaterModel(address=0, role="shell")}

    def advance(self) -> None:
        """Nothing moves on its own here."""


# ============================================================================= codec
def test_the_description_s_examples() -> None:
    assert huber.encode_query(huber.SETPOINT) == b"{M00****\r\n"
    assert huber.from_word(huber.parse_reply(b"{S00F2DF\r\n", 0)) == -33.61
    assert huber.from_word(huber.parse_reply(b"{S0004DA\r\n", 0)) == 12.42
    assert len(huber.encode_write(0x14, 1)) == 10


@given(st.integers(-32768, 32767), st.integers(0, 255))
def test_temperatures_round_trip_through_frames(centi_c: int, address: int) -> None:
    value_c = centi_c / 100
    word = huber.to_word(value_c)
    frame = huber.encode_reply(address, word)
    assert len(frame) == 10 and frame.startswith(b"{S") and frame.endswith(b"\r\n")
    assert huber.from_word(huber.parse_reply(frame, address)) == value_c
    assert huber.parse_request(huber.encode_write(address, word)) == (address, word)
    assert huber.parse_request(huber.encode_query(address)) == (address, None)


@given(st.integers(0, 255), st.integers(0, 255).filter(lambda a: a != 0))
def test_a_reply_for_another_variable_or_garbled_is_retried_never_read(address: int,
                                                                       other: int) -> None:
    with pytest.raises(huber.HuberProtocolError):
        huber.parse_reply(huber.encode_reply((address + other) % 256, 0x1234), address)
    with pytest.raises(huber.HuberProtocolError):
        huber.parse_reply(b"{M" + huber.encode_reply(address, 1)[2:], address)


@given(st.floats(327.68, 1e6) | st.floats(-1e6, -327.69))
def test_a_temperature_the_word_cannot_carry_is_refused_not_wrapped(value_c: float) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        huber.to_word(value_c)


def test_minus_151_is_the_invalid_marker() -> None:
    assert huber.is_invalid(huber.to_word(-151.0))
    assert not huber.is_invalid(huber.to_word(-150.99))


# ============================================================================= over a pty
@contextmanager
def _unit(**kw: Any) -> Iterator[tuple[HeaterModel, HuberEmulator, HuberPB]]:
    bench = Bench()
    emu = HuberEmulator("thermostat", bench, bench.heaters["core"])  # type: ignore[arg-type]
    emu.start()
    port = Transport(emu.port, baudrate=9600, timeout_s=0.3, retries=2)
    try:
        yield bench.heaters["core"], emu, HuberPB(port, "thermostat", **kw)
    finally:
        port.close()
        emu.stop()


@pytest.mark.parametrize("reply_to_writes", [True, False])
def test_connect_sets_standby_and_switches_control_on(reply_to_writes: bool) -> None:
    """The description does not say what a write is answered with: echo or silence."""
    with _unit() as (h, emu, unit):
        emu.reply_to_writes = reply_to_writes
        unit.connect(standby_c=30.0)
        assert (h.local_sp_c, h.op_hi_pct) == (30.0, 100.0)
        assert unit.range_c == (-40.0, 250.0) and unit.fault() == ""
        assert unit.temperature_c() == 25.0 and "25.00 °C" in unit.ping()


def test_the_pv_is_the_process_sensor_when_configured() -> None:
    with _unit(sensor="process") as (_, _, unit):
        unit.temperature_c()
        assert unit.transport.log.since(0)[-1].sent == b"{M07****\r\n"


def test_an_invalid_temperature_is_a_sensor_fault_never_a_reading() -> None:
    with _unit() as (h, _, unit):
        unit.connect()
        h.sensor_break = True
        assert unit.fault() == "sensor_break"
        assert unit.temperature_c() != unit.temperature_c()  # NaN fails every comparison
        assert "invalid" in unit.ping()


@pytest.mark.parametrize("target_c", [85.0, 85.0039])
def test_the_host_ramp_steps_the_setpoint_and_the_heartbeat_writes_nothing(
        target_c: float) -> None:
    """Also for a target finer than the protocol's 0.01 °C: written rounded, it is reached
    (it was written again at every heartbeat, an EEPROM write a poll)."""
    with _unit(ramp_c_per_min=60.0, time_scale=600.0) as (h, _, unit):
        unit.connect(standby_c=25.0)
        deadline = time.monotonic() + 60.0
        seen = []
        while h.local_sp_c != 85.0 and time.monotonic() < deadline:
            unit.set_temperature_c(target_c)
            seen.append(h.local_sp_c)
        writes = [e for e in unit.transport.log.since(0) if e.sent.startswith(b"{M00")
                  and b"*" not in e.sent]
        assert seen[-1] == 85.0 and seen == sorted(seen) and 2 <= len(writes) <= 4
        for _ in range(3):
            unit.set_temperature_c(target_c)
            unit.temperature_c()
        assert len([e for e in unit.transport.log.since(0) if e.sent.startswith(b"{M00")
                    and b"*" not in e.sent]) == len(writes)


def test_setpoints_beyond_the_limit_or_the_unit_s_range_are_refused_before_a_byte() -> None:
    limits = parse_devices(devices()).devices["heater_core"].limits
    with _unit(limits=limits) as (_, emu, unit):
        unit.connect()
        before = emu.requests
        with pytest.raises(ConditionsError, match="the unit's setpoint range"):
            unit.set_temperature_c(280.0)  # the unit: 250; the devices file: 300
        with pytest.raises(ConditionsError, match=r"thermostat\.temperature_c"):
            unit.set_temperature_c(-10.0)
        assert emu.requests == before


def test_cut_output_switches_control_off_read_back_and_off_from_the_panel_is_a_fault() -> None:
    with _unit() as (h, _, unit):
        unit.connect()
        h.op_hi_pct = 0.0  # switched off at the unit
        assert unit.fault() == "stopped"
        unit.connect()
        unit.cut_output()
        assert h.op_hi_pct == 0.0 and unit.fault() == ""


# ============================================================================= the rig
@contextmanager
def _rig() -> Iterator[tuple[Bench, dict[str, HuberEmulator], Rig]]:
    bench = Bench()
    emus = {r: HuberEmulator(f"th_{r}", bench, bench.heaters[r])  # type: ignore[arg-type]
            for r in ("core", "shell")}
    d = devices()
    for role, emu in emus.items():
        emu.start()
        d["ports"][f"th_{role}"] = {"url": emu.port, "timeout_s": 0.3}
        d["devices"][f"heater_{role}"] = {"kind": "huber", "port": f"th_{role}", "role": role,
                                          "limits": {"max_temperature_c": 300}}
    d["ports"]["pumps"] = {"url": "loop://", "timeout_s": 0.05, "retries": 0}  # none there
    rig = Rig.open(parse_devices(d))
    try:
        yield bench, emus, rig
    finally:
        rig.close()
        for emu in emus.values():
            emu.stop()


def test_the_kind_is_9600_8n1_with_its_own_fields() -> None:
    with _rig() as (_, _, rig):
        line = rig.transports["th_core"]
        assert line.line_format == {"bytesize": 8, "parity": "N", "stopbits": 1}
        assert line.serial.baudrate == 9600
    d = devices()
    d["devices"]["heater_core"] = {"kind": "huber", "port": "heaters", "role": "core",
                                   "sensor": "jacket"}
    with pytest.raises(ConfigError, match="sensor"):
        parse_devices(d)


@pytest.mark.parametrize(("fault", "reason"), [("sensor", "sensor_break"),
                                                ("silent", "comms_loss"),
                                                ("foreign", "comms_loss"),
                                                ("panel_off", "stopped")])
def test_a_fault_trips_hard_and_ends_with_control_off(fault: str, reason: str) -> None:
    """PB has no error reply: one for another variable (out of step) is retried, then a lost
    line."""
    with _rig() as (bench, emus, rig):
        for h in rig.heaters.values():
            h.connect()
        trips: list[Trip] = []
        sup = Supervisor(rig, trips.append)
        for role in rig.heaters:
            sup.set_heater_c(role, 25.0)  # refreshed by every poll from here on
        if fault == "sensor":
            bench.heaters["core"].sensor_break = True
        elif fault == "silent":
            emus["core"].no_reply = True
        elif fault == "foreign":
            emus["core"].foreign_next = 3  # every attempt of the poll's first read
        else:
            bench.heaters["core"].op_hi_pct = 0.0
        sup.poll_once()  # heaters come first; their setpoints refreshed (the heartbeat)
        emus["core"].no_reply = False
        report = Shutdown(rig, lambda s: None, flush_ml=1.0,
                          flush_rate_ml_min=1.0).run(hard=True)
    assert [(t.reason, t.device, t.hard) for t in trips] == [(reason, "heater_core", True)]
    steps = {s.name: s for s in report.steps}
    assert steps["cut heater core"].ok and steps["cut heater shell"].ok
    assert [h.op_hi_pct for h in bench.heaters.values()] == [0.0, 0.0]
