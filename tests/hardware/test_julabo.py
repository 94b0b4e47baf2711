"""Julabo circulators (kind ``julabo``) against their manuals, over ptys.

Each test names the manual item it checks: ``cmd param`` + CR (CR LF on the CF41), replies
ended by LF (CR LF), at least 250 ms between commands, ``out`` commands only in remote mode,
no autostart after a power loss, ``status`` (00/02 stopped, 01/03 started, negative = error),
the error codes. The emulator answers as the manuals say, not as our driver expects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from autolab.exceptions import ConditionsError, ConfigError, HardwareError
from autolab.hardware.controllers import JulaboCirculator
from autolab.hardware.devices import parse_devices
from autolab.hardware.protocols import julabo
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Shutdown, Supervisor, Trip
from autolab.hardware.transport import Transport
from autolab.virtuallab.heater_emulators import JulaboEmulator
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
@given(st.floats(-99.99, 399.99, allow_nan=False))
@example(0.375)  # a half step: once failed by 4e-18 against abs=0.005
def test_a_setpoint_is_sent_with_two_decimals_and_parses_back(value_c: float) -> None:
    line = julabo.encode("out_sp_00", value_c)
    assert line.startswith(b"out_sp_00 ") and line.endswith(b"\r")
    cmd, arg = julabo.split_command(line)
    assert cmd == "out_sp_00" and arg is not None
    back = julabo.parse_number(arg.encode() + b"\n")
    assert back == float(f"{value_c:.2f}")  # two decimals, rounded as Python formats them
    # at most half a step off (the bound itself is not exact in binary: 0.38 - 0.375 > 0.005)
    assert back == pytest.approx(value_c, abs=0.005 + 1e-9)


@given(st.integers(-99, 3), st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ ", max_size=30),
       st.sampled_from([b"\n", b"\r\n"]))
def test_a_status_reply_is_its_code_and_text(code: int, text: str, end: bytes) -> None:
    sign = "-" if code < 0 else ""
    line = f"{sign}{abs(code):02d} {text}".encode() + end
    status = julabo.parse_status(line)
    assert (status.code, status.text) == (code, text.strip())
    assert status.error == (code < 0)
    assert status.started == (code in (1, 3))


@pytest.mark.parametrize(("code", "fault"), [(-5, "sensor_break"), (-33, "sensor_break"),
                                             (-38, "sensor_break"), (-14, "controller_error"),
                                             (-1, "controller_error"), (-9, "controller_error"),
                                             (0, ""), (3, "")])
def test_error_codes_are_faults(code: int, fault: str) -> None:
    assert julabo.JulaboStatus(code, "").fault == fault


@given(st.text(alphabet=[chr(c) for c in range(32, 127) if not chr(c).isdigit()],
               max_size=12), st.sampled_from([b"\n", b"\r\n", b""]))
def test_a_reply_without_a_digit_is_never_a_reading(text: str, end: bytes) -> None:
    """``---.--``, ``OFF``, ``nan``, an empty line: retried as garbled, never a temperature."""
    with pytest.raises(julabo.JulaboProtocolError):
        julabo.parse_number(text.encode("ascii") + end)


# ============================================================================= over a pty
@contextmanager
def _unit(line_end: str = "cr", reply_end: bytes = b"\n",
          **kw: Any) -> Iterator[tuple[HeaterModel, JulaboEmulator, JulaboCirculator]]:
    bench = Bench()
    emu = JulaboEmulator("bath", bench, bench.heaters["core"])  # type: ignore[arg-type]
    emu.reply_end = reply_end
    emu.start()
    port = Transport(emu.port, baudrate=9600, timeout_s=0.5, retries=2)
    try:
        yield bench.heaters["core"], emu, JulaboCirculator(port, "bath", line_end=line_end,
                                                           **kw)
    finally:
        port.close()
        emu.stop()


@pytest.mark.parametrize(("line_end", "reply_end"), [("cr", b"\n"), ("crlf", b"\r\n"),
                                                     ("cr", b"\r\n")])
def test_connect_starts_the_unit_with_both_line_ends(line_end: str, reply_end: bytes) -> None:
    with _unit(line_end, reply_end) as (h, _, bath):
        bath.connect(standby_c=30.0)
        assert (h.local_sp_c, h.op_hi_pct) == (30.0, 100.0)
        assert bath.fault() == "" and "JULABO" in bath.ping()
        sent = [e.sent for e in bath.transport.log.since(0) if e.sent]
        assert all(s.endswith(julabo.LINE_ENDS[line_end]) for s in sent)
        assert b"out_sp_00 30.00" + julabo.LINE_ENDS[line_end] in sent


def test_commands_are_at_least_250_ms_apart() -> None:
    """The manuals: >= 250 ms between commands (the driver waits; it never relies on load)."""
    with _unit() as (_, _, bath):
        bath.connect()
        for _ in range(3):
            bath.temperature_c()
        gaps = [b - a for a, b in zip(bath.sent_at, bath.sent_at[1:], strict=False)]
    assert len(gaps) >= 6 and min(gaps) >= julabo.COMMAND_SPACING_S


def test_a_unit_that_answers_out_commands_anyway_is_driven_alike() -> None:
    with _unit() as (h, emu, bath):
        emu.out_reply = b"OK\r\n"
        bath.connect()
        bath.set_temperature_c(25.0)
        assert h.local_sp_c == 25.0 and h.op_hi_pct == 100.0


def test_out_commands_outside_remote_mode_fail_connect_naming_it() -> None:
    with _unit() as (h, emu, bath):
        emu.remote = False
        with pytest.raises(HardwareError, match=r"did not stick.*-09 .*remote mode"):
            bath.connect()
        assert h.op_hi_pct == 0.0  # never started


def test_after_a_power_loss_it_is_stopped_and_that_is_a_fault() -> None:
    """The manuals: after a power loss the unit is back stopped (R OFF), no autostart."""
    with _unit() as (h, emu, bath):
        bath.connect()
        emu.power_cycle()
        assert bath.fault() == "stopped"
        bath.connect()  # start and setpoint sent again
        assert bath.fault() == "" and h.op_hi_pct == 100.0


def test_the_host_ramp_steps_the_setpoint_and_the_heartbeat_writes_nothing() -> None:
    with _unit(ramp_c_per_min=60.0, time_scale=600.0) as (h, _, bath):
        bath.connect(standby_c=25.0)
        deadline = time.monotonic() + 60.0
        seen = []
        while h.local_sp_c != 85.0 and time.monotonic() < deadline:
            bath.set_temperature_c(85.0)
            seen.append(h.local_sp_c)
        writes = [e.sent for e in bath.transport.log.since(0) if e.sent.startswith(b"out_sp")]
        assert seen[-1] == 85.0 and seen == sorted(seen)
        assert 2 <= len(writes) <= 4  # standby, then 30 °C steps: never one per call
        bath.set_temperature_c(85.0)
        assert len([e for e in bath.transport.log.since(0)
                    if e.sent.startswith(b"out_sp")]) == len(writes)


def test_a_setpoint_beyond_the_limit_is_refused_before_a_byte() -> None:
    with _unit(limits=parse_devices(devices()).devices["heater_core"].limits) as (_, emu, bath):
        bath.connect()
        before = emu.requests
        with pytest.raises(ConditionsError, match=r"bath\.temperature_c"):
            bath.set_temperature_c(301.0)
        assert emu.requests == before


def test_cut_output_stops_the_unit_read_back() -> None:
    with _unit() as (h, _, bath):
        bath.connect()
        bath.cut_output()
        assert h.op_hi_pct == 0.0 and bath.fault() == ""


# ============================================================================= the rig
@contextmanager
def _rig() -> Iterator[tuple[Bench, dict[str, JulaboEmulator], Rig]]:
    bench = Bench()
    emus = {r: JulaboEmulator(f"bath_{r}", bench, bench.heaters[r])  # type: ignore[arg-type]
            for r in ("core", "shell")}
    d = devices()
    for role, emu in emus.items():
        emu.start()
        d["ports"][f"bath_{role}"] = {"url": emu.port, "timeout_s": 0.5}
        d["devices"][f"heater_{role}"] = {"kind": "julabo", "port": f"bath_{role}",
                                          "role": role, "limits": {"max_temperature_c": 300}}
    d["ports"]["pumps"] = {"url": "loop://", "timeout_s": 0.05, "retries": 0}  # none there
    rig = Rig.open(parse_devices(d))
    try:
        yield bench, emus, rig
    finally:
        rig.close()
        for emu in emus.values():
            emu.stop()


def test_the_kind_is_7e1_9600_with_its_own_fields() -> None:
    with _rig() as (_, _, rig):
        line = rig.transports["bath_core"]
        assert line.line_format == {"bytesize": 7, "parity": "E", "stopbits": 1}
        assert line.serial.baudrate == 9600
    d = devices()
    d["devices"]["heater_core"] = {"kind": "julabo", "port": "heaters", "role": "core",
                                   "address": 1}
    with pytest.raises(ConfigError, match="address"):
        parse_devices(d)  # a point-to-point line: no bus address
    d["devices"]["heater_core"] = {"kind": "julabo", "port": "heaters", "role": "core",
                                   "ramp_c_per_min": 30, "limits": {"max_ramp_c_per_min": 20}}
    with pytest.raises(ConfigError, match=r"ramp_c_per_min=30: above its limits"):
        parse_devices(d)


@pytest.mark.parametrize(("fault", "reason"), [("sensor", "sensor_break"),
                                                ("silent", "comms_loss"),
                                                ("alarm", "controller_error"),
                                                ("power_loss", "stopped")])
def test_a_fault_trips_hard_and_ends_with_the_circulators_stopped(fault: str,
                                                                  reason: str) -> None:
    with _rig() as (bench, emus, rig):
        for h in rig.heaters.values():
            h.connect()
        trips: list[Trip] = []
        sup = Supervisor(rig, trips.append)
        for role in rig.heaters:
            sup.set_heater_c(role, 25.0)  # refreshed by every poll from here on
        emu = emus["core"]
        if fault == "sensor":
            bench.heaters["core"].sensor_break = True
        elif fault == "silent":
            emu.no_reply = True
        elif fault == "alarm":
            emu.alarm_code = -14  # excess temperature protection
        else:
            emu.power_cycle()  # back stopped, no autostart
        sup.poll_once()  # heaters come first; their setpoints refreshed (the heartbeat)
        emu.no_reply = False
        report = Shutdown(rig, lambda s: None, flush_ml=1.0,
                          flush_rate_ml_min=1.0).run(hard=True)
    assert [(t.reason, t.device, t.hard) for t in trips] == [(reason, "heater_core", True)]
    steps = {s.name: s for s in report.steps}
    assert steps["cut heater core"].ok and steps["cut heater shell"].ok
    assert [h.op_hi_pct for h in bench.heaters.values()] == [0.0, 0.0]
