"""Chemyx Fusion (kind ``chemyx``): codec, the driver against the knowledge base over a pty,
the kind's devices-file entry, and faults through the supervisor.

The emulator answers as Chemyx's knowledge base says (see docs/hardware.md, "Chemyx:
conformance"), with switches for what it leaves open; each test names the item it checks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.exceptions import ConfigError, HardwareError, SafetyTrip
from autolab.executors.cstr import CSTRExecutor
from autolab.hardware.base import Pump, Watchdogged
from autolab.hardware.chemyx import DEFAULT_BAUD, ChemyxPump, ChemyxSpec
from autolab.hardware.devices import parse_devices
from autolab.hardware.drivers import PumpAlarm
from autolab.hardware.limits import Limits
from autolab.hardware.protocols import chemyx
from autolab.hardware.registry import get_kind
from autolab.hardware.safety import ShutdownReport
from autolab.hardware.transport import DeviceRefused, Transport
from autolab.records import Conditions
from autolab.virtuallab.chemyx_emulator import ChemyxEmulator
from autolab.virtuallab.lab import VirtualLab
from autolab.virtuallab.reactor import PumpModel

from .lab_waits import Bench, feeding, feeding_a_while, pumps_stopped, when
from .test_rig_registry import devices

SCALE = 2400.0
GOOD = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=290, tau_shell_min=15, cl_to_i=6,
                  s_to_zn=2)


# ============================================================================= codec
def test_requests_as_the_knowledge_base_writes_them() -> None:
    """Lowercase commands ended by CR; a dual-channel pump takes ``1 ``/``2 `` first."""
    assert chemyx.encode_command(1, "set rate 5.0") == b"1 set rate 5.0\r"
    assert chemyx.encode_command(0, "start") == b"start\r"
    assert chemyx.split_request("2 pump status") == (2, "pump status")
    with pytest.raises(ConfigError, match="lowercase"):
        chemyx.encode_command(0, "START")
    with pytest.raises(ConfigError, match="channel"):
        chemyx.encode_command(3, "start")


def test_replies_as_the_knowledge_base_writes_them() -> None:
    """The pump echoes the command line, then its reply lines, then ``>``; a set answers with
    the value it took."""
    reply = chemyx.parse_reply(b"set rate 1.5\r\nrate = 1.5\r\n>", b"set rate 1.5\r")
    assert reply.lines == ("rate = 1.5",) and reply.value("rate") == "1.5"
    view = chemyx.parse_reply(b"view parameter\r\nunit = 0\r\ndia = 26.600\r\nrate = 2\r\n"
                              b"volume = -5\r\ntime = 0\r\ndelay = 0\r\n>", b"view parameter\r")
    assert (view.value("unit"), view.value("dia"), view.value("volume")) == ("0", "26.600", "-5")
    assert chemyx.parse_reply(b"start\r\nPump start running\xe2\x80\xa6\r\n>").lines[1].startswith(
        "Pump start running")
    assert chemyx.parse_status("4") == 4
    with pytest.raises(chemyx.ChemyxProtocolError, match="0-4"):
        chemyx.parse_status("7")
    with pytest.raises(chemyx.ChemyxProtocolError, match="prompt"):
        chemyx.parse_reply(b"rate = 1.5\r\n")
    assert chemyx.parse_number("dispensed = 1.25 ml", "x") == 1.25
    assert chemyx.volume_unit_ml("250 ul", 1.0) == 1e-3
    assert chemyx.volume_unit_ml("0.25", 1.0) == 1.0


@given(st.integers(0, 2), st.from_regex(r"[a-z][a-z ]{0,20}[a-z0-9.\-]", fullmatch=True))
def test_request_round_trip(channel: int, command: str) -> None:
    line = chemyx.encode_command(channel, command).decode()
    assert chemyx.split_request(line[:-1]) == (channel, command)


@given(st.from_regex(r"[a-z][a-z ]{0,15}", fullmatch=True),
       st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 =.\-]{0,20}", fullmatch=True),
                max_size=4).map(tuple))
def test_reply_round_trip(request: str, lines: tuple[str, ...]) -> None:
    frame = chemyx.format_reply(request, lines)
    assert chemyx.reply_complete(frame)
    echo = chemyx.encode_command(0, request.strip()) if request.strip() else b""
    got = chemyx.parse_reply(frame, echo).lines
    assert got == tuple(x.strip() for x in lines if x.strip())


@given(st.floats(-1e4, 1e4).filter(lambda v: abs(v) > 1e-6 or v == 0))
def test_numbers_keep_six_significant_digits(value: float) -> None:
    text = chemyx.format_number(value)
    assert "e" not in text
    assert chemyx.parse_number(text, "x") == pytest.approx(value, rel=1e-5, abs=1e-9)


# ============================================================================= over a pty
@pytest.fixture
def dual() -> Iterator[tuple[Bench, ChemyxEmulator, Transport]]:
    """A dual-channel Chemyx pump: channel 1 (p1) and channel 2 (p2) on one line."""
    bench = Bench()
    bench.pumps["p1"] = PumpModel(address=0, role="solvent", left_ml=5.0)
    bench.pumps["p2"] = PumpModel(address=1, role="zinc", left_ml=5.0)
    emu = ChemyxEmulator("line", bench, {1: "p1", 2: "p2"})  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, baudrate=DEFAULT_BAUD, timeout_s=0.5, retries=2)
    try:
        yield bench, emu, line
    finally:
        line.close()
        emu.stop()


def _up(line: Transport, channel: int, name: str = "pump_x") -> ChemyxPump:
    pump = ChemyxPump(line, name, channel=channel, diameter_mm=14.57, syringe_ml=10.0,
                      limits=Limits(max_rate_ml_min=1000.0))
    pump.connect()
    return pump


def test_the_channels_of_a_dual_pump_answer_their_own_prefix(dual: Any) -> None:
    """Dual-channel pumps: prefix ``1 `` or ``2 ``; units 0 = mL/min; the diameter echoed and
    read back from ``view parameter``."""
    bench, emu, line = dual
    p1, p2 = _up(line, 1, "a"), _up(line, 2, "b")
    assert isinstance(p1, Pump) and not isinstance(p1, Watchdogged)
    assert bench.pumps["p1"].diameter_mm == bench.pumps["p2"].diameter_mm == pytest.approx(14.57)
    assert emu.units == {"p1": 0, "p2": 0}
    p2.set_rate_ml_min(0.05)
    assert bench.pumps["p2"].rate_ml_min == pytest.approx(0.05)
    assert bench.pumps["p1"].rate_ml_min == 0.0
    assert all(e.sent.startswith(b"2 ") for e in line.log.since(0) if e.device == "b")
    assert "stopped" in p1.ping()


def test_the_direction_is_the_sign_of_the_target_volume(dual: Any) -> None:
    """``set volume ±x``: the sign selects infuse (+) or withdraw (-); status 1 = running."""
    bench, emu, line = dual
    pump = _up(line, 1)
    p = bench.pumps["p1"]
    pump.set_direction(False)
    assert (emu.target["p1"], p.infuse) == (-10.0, False)
    pump.set_rate_ml_min(2.5)
    pump.clear_dispensed()
    pump.start()
    st = pump.state()
    assert (st.pumping, st.status, st.alarms) == (True, "W", ())
    assert pump.rate_read_ml_min() == pytest.approx(2.5)
    pump.stop()
    pump.set_direction(True)
    assert (emu.target["p1"], p.infuse) == (10.0, True)
    pump.start()
    assert pump.state().status == "I"
    pump.stop()
    assert not p.running


@pytest.mark.parametrize("echo", ["command", "off"])
def test_replies_with_the_echo_unprefixed_or_off_read_alike(dual: Any, echo: str) -> None:
    """The knowledge base: the pump echoes the command line; it does not say whether a
    channel's echo repeats its prefix, and ``echo off`` exists."""
    bench, emu, line = dual
    emu.echo = echo
    pump = _up(line, 2)
    pump.set_rate_ml_min(0.75)
    pump.start()
    assert pump.state().status == "I"
    assert pump.rate_read_ml_min() == pytest.approx(0.75)
    assert bench.pumps["p2"].running
    pump.stop()


def test_a_set_echoing_another_value_is_a_refusal_never_retried(dual: Any) -> None:
    """Knowledge base: "if the value in the response is not the same as the value in the
    command, the command value was outside the limits"."""
    bench, emu, line = dual
    pump = _up(line, 1)
    pump.set_rate_ml_min(1.0)
    before = emu.requests
    with pytest.raises(DeviceRefused, match=r"pump_x: set rate 500 refused: the pump took "
                                            r"rate = 1 \(outside its limits\)"):
        pump.set_rate_ml_min(500.0)
    assert emu.requests == before + 1
    assert bench.pumps["p1"].rate_ml_min == pytest.approx(1.0)


def test_garbled_replies_are_retried_then_a_silent_pump_is_named(dual: Any) -> None:
    _, emu, line = dual
    pump = _up(line, 1)
    pump.set_rate_ml_min(1.5)
    emu.garble_next(1)
    assert pump.rate_read_ml_min() == pytest.approx(1.5)  # the second attempt
    emu.no_reply = True
    with pytest.raises(HardwareError, match=r"pump_x: no valid reply to b'1 view parameter\\r' "
                                            r"after 3 attempts"):
        pump.rate_read_ml_min()


def test_a_stall_is_alarm_s_once_and_the_pump_still_stops(dual: Any) -> None:
    """``pump status`` 4 = stalled (no command to acknowledge it is named)."""
    bench, _, line = dual
    pump = _up(line, 1)
    pump.set_rate_ml_min(1.0)
    pump.start()
    with bench.lock:
        bench.pumps["p1"].stall("S")
    st = pump.state()
    assert (st.pumping, st.status, st.alarms) == (False, "A", ("S",))
    assert pump.state().alarms == ()
    pump.stop()
    with bench.lock:
        bench.pumps["p1"].left_ml = 0.0
    with pytest.raises(PumpAlarm, match="motor stalled") as info:
        pump.start()
    assert info.value.code == "S"


def test_a_pump_stops_by_itself_at_its_target_volume(dual: Any) -> None:
    """``set volume`` is the run's target: reached, the pump stops (status 0)."""
    bench, _, line = dual
    pump = _up(line, 1)
    pump.set_rate_ml_min(1.0)
    pump.start()
    with bench.lock:
        bench.pumps["p1"].infused_ml += 10.0  # the whole target (the syringe's 10 mL)
    deadline = time.monotonic() + 60.0
    while pump.state().pumping:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert pump.state().status == "S"


@pytest.mark.parametrize("cumulative", [False, True])
def test_the_dispensed_volume_is_the_runs_whether_start_restarts_the_count(
        dual: Any, cumulative: bool) -> None:
    """The knowledge base names no command that clears ``dispensed volume`` nor says whether
    ``start`` restarts it: the driver gives the run's volume either way."""
    bench, emu, line = dual
    emu.cumulative_dispensed = cumulative
    pump = _up(line, 1)
    pump.set_rate_ml_min(1.0)
    for moved in (0.3, 0.2):
        pump.clear_dispensed()
        pump.start()
        with bench.lock:
            bench.pumps["p1"].infused_ml += moved
        assert pump.dispensed_ml() == (pytest.approx(moved), 0.0)
        pump.stop()


# ============================================================================= the kind
def _chemyx_file(**pump: Any) -> dict[str, Any]:
    d = devices()
    for name, entry in list(d["devices"].items()):
        if entry["kind"] == "ne1000":
            d["ports"][f"line_{name}"] = {"url": "loop://"}
            d["devices"][name] = {"kind": "chemyx", "port": f"line_{name}",
                                  "role": entry["role"], "limits": entry["limits"], **pump}
    return d


def test_the_kind_has_its_own_entry_and_checks_it() -> None:
    kind = get_kind("chemyx")
    assert (kind.category, kind.spec, kind.default_baud) == ("pump", ChemyxSpec, 9600)
    config = parse_devices(_chemyx_file(diameter_mm=14.57))
    assert config.category("pump_zinc") == "pump"
    with pytest.raises(ConfigError, match=r"devices\.pump_\w+\.diameter_mm=45.0: expected "
                                          r"0.103-40.0"):
        parse_devices(_chemyx_file(diameter_mm=45.0))
    with pytest.raises(ConfigError, match=r"channel.*less than or equal to 2"):
        parse_devices(_chemyx_file(channel=3))
    with pytest.raises(ConfigError, match=r"address.*Extra inputs"):
        parse_devices(_chemyx_file(address=1))  # no chain address: one pump per line


# ============================================================================= faults
@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with VirtualLab(time_scale=SCALE, pump_kind="chemyx") as vl:
        yield vl


def _line(lab: VirtualLab, pump: str) -> ChemyxEmulator:
    line = next(e for e in lab.pump_lines
                if isinstance(e, ChemyxEmulator) and pump in e.channels.values())
    return line


@pytest.mark.parametrize(("fault", "reason"), [("stall", "pump_stall"),
                                               ("target", "pump_idle")])
def test_a_pump_that_stops_mid_experiment_trips_to_the_safe_state(lab: VirtualLab, fault: str,
                                                                  reason: str) -> None:
    """A stall (status 4: the outlet blocked) or a pump that stops by itself: a trip, the soft
    shutdown, never a chemistry result."""
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)

    def inject() -> None:
        if fault == "stall":
            with lab.reactor.lock:
                lab.reactor.blocked = True
        else:
            _line(lab, "pump_phosphine").reach_target("pump_phosphine")
    try:
        when(lambda: feeding_a_while(lab), inject)
        with pytest.raises(SafetyTrip, match=reason):
            ex.run(GOOD)
        assert ex.supervisor.trip is not None and not ex.supervisor.trip.hard
        assert pumps_stopped(lab)
        report = ex.last_shutdown
        assert isinstance(report, ShutdownReport) and not report.hard
    finally:
        ex.close()


def test_a_refused_setting_fails_the_experiment_into_the_safe_state(lab: VirtualLab) -> None:
    """The phosphine pump does not take its rate (it echoes the old one): a named device
    error, the rig shut down, nothing pumping, no result."""
    _line(lab, "pump_phosphine").max_rate_ml_min = 1e-3
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        with pytest.raises(HardwareError, match=r"pump_phosphine: set rate .* refused: the pump "
                                                r"took rate = "):
            ex.run(GOOD)
        assert pumps_stopped(lab)
        report = ex.last_shutdown
        assert report is not None and report.ok, report.lines()
    finally:
        ex.close()


def test_a_silent_pump_trips_and_the_report_says_it_may_still_run(lab: VirtualLab) -> None:
    """Chemyx pumps have no hardware watchdog: a pump that goes silent mid-feed trips the rig,
    the heaters are made safe, the other pumps stopped, and the shutdown report names that
    pump as not stopped."""
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        when(lambda: feeding(lab),
              lambda: setattr(_line(lab, "pump_phosphine"), "no_reply", True))
        with pytest.raises((SafetyTrip, HardwareError), match="pump_phosphine"):
            ex.run(GOOD)
        with lab.reactor.lock:  # cut (the supervisor's comms loss: hard) or to standby (the
            # procedure met the silence first: soft), whichever came first
            assert all(h.op_hi_pct == 0 or h.remote_sp_c == 25.0
                       for h in lab.reactor.heaters.values())
        report = ex.last_shutdown
        assert report is not None and not report.ok
        assert "pump_phosphine" in report.unsafe_devices, report.lines()
        with lab.reactor.lock:  # the pumps that answer were stopped
            assert not any(p.running for n, p in lab.reactor.pumps.items()
                           if n != "pump_phosphine")
    finally:
        ex.close()
