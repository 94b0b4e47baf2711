"""Harvard Pump 11 Elite / PHD ULTRA (kind ``harvard``): codec, the driver against the manual
over a pty, the kind's devices-file entry, and faults through the supervisor.

The emulator answers as the manual says (see docs/hardware.md, "Harvard: conformance"), with
switches for what the manual leaves open; each test names the manual item it checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.exceptions import ConfigError, HardwareError, SafetyTrip
from autolab.executors.cstr import CSTRExecutor
from autolab.hardware.base import Pump, Watchdogged
from autolab.hardware.devices import parse_devices
from autolab.hardware.drivers import PumpAlarm
from autolab.hardware.harvard import DEFAULT_BAUD, HarvardPump, HarvardSpec
from autolab.hardware.protocols import harvard
from autolab.hardware.registry import get_kind
from autolab.hardware.safety import ShutdownReport
from autolab.hardware.transport import DeviceRefused, Transport
from autolab.records import Conditions
from autolab.virtuallab.harvard_emulator import HarvardChainEmulator, canonical
from autolab.virtuallab.lab import VirtualLab
from autolab.virtuallab.reactor import PumpModel

from .lab_waits import Bench, feeding, feeding_a_while, pumps_stopped, when
from .test_rig_registry import devices
from .waiting import until

SCALE = 2400.0
GOOD = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=290, tau_shell_min=15, cl_to_i=6,
                  s_to_zn=2)


# ============================================================================= codec
def test_requests_as_the_manual_writes_them() -> None:
    """Elite manual p.53: "the one or two-digit pump address precedes the command ...
    ``12irat 3.2 u/m``"; pump 0 takes bare commands; PHD ULTRA writes ``12:irat``."""
    assert harvard.encode_command(12, "irat", "3.2 u/m") == b"12irat 3.2 u/m\r"
    assert harvard.encode_command(0, "irun") == b"irun\r"
    assert harvard.split_request("12:irat 3.2 ul/min") == (12, "irat", "3.2 ul/min")
    assert harvard.split_request("irun") == (0, "irun", "")
    with pytest.raises(ConfigError, match="0-99"):
        harvard.encode_command(100, "ver")


def test_replies_as_the_manual_writes_them() -> None:
    """Elite manual p.53: ``\\n[NN:]text\\r`` lines, then ``\\n[NN]prompt`` with no colon between
    address and prompt; p.58: the status example ``\\n0 0 0 w..TI.\\r\\n:``."""
    status = harvard.parse_reply(b"\n0 0 0 w..TI.\r\n:")
    assert (status.address, status.lines, status.prompt) == (None, ("0 0 0 w..TI.",), ":")
    err = harvard.parse_reply(b"\n12:Argument error: 500\r\n12:   Out of range\r\n12:")
    assert (err.address, err.prompt) == (12, ":")
    assert err.error == "Argument error: 500 / Out of range"
    assert harvard.parse_reply(b"\n12T*").prompt == "T*"
    assert harvard.parse_reply(b"\n*\x11").prompt == "*"  # poll mode: XON after the prompt
    with pytest.raises(harvard.HarvardProtocolError, match="not from address 12"):
        harvard.parse_reply(b"\n03:1 ml\r\n12:")
    with pytest.raises(harvard.HarvardProtocolError, match="no prompt"):
        harvard.parse_reply(b"\n1 ml\r")


def test_units_of_the_answers() -> None:
    """Elite manual: rates ``# xl/xxx`` (``m``/``u``/``n``/``p`` per ``h``/``m``/``s``), volumes
    ``# xl``, the diameter ``#.#### mm``."""
    assert harvard.parse_rate("1.5 ml/min") == pytest.approx(1.5)
    assert harvard.parse_rate("90 ul/hr") == pytest.approx(1.5e-3)
    assert harvard.parse_rate("25 nl/s") == pytest.approx(1.5e-3)
    assert harvard.parse_rate("3.2 u/m") == pytest.approx(3.2e-3)
    assert harvard.parse_volume("250 ul") == pytest.approx(0.25)
    assert harvard.parse_diameter("26.6000 mm") == pytest.approx(26.6)
    with pytest.raises(harvard.HarvardProtocolError):
        harvard.parse_rate("1.5 ml")
    assert canonical("irat") == "irate" and canonical("diam") == "diameter"
    assert canonical("ir") is None


@given(st.integers(0, 99), st.sampled_from(["irate", "wrate", "diameter", "irun", "stop"]),
       st.from_regex(r"([0-9.]{1,8}( [munp]/[hms])?)?", fullmatch=True))
def test_request_round_trip(address: int, command: str, args: str) -> None:
    line = harvard.encode_command(address, command, args).decode()
    assert line.endswith("\r")
    assert harvard.split_request(line[:-1]) == (address, command, args)


@given(st.integers(0, 99),
       st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ./]{0,20}", fullmatch=True),
                max_size=3).map(tuple),
       st.sampled_from(sorted(harvard.PROMPTS)), st.booleans())
def test_reply_round_trip(address: int, lines: tuple[str, ...], prompt: str, xon: bool) -> None:
    frame = harvard.format_reply(address, lines, prompt) + (harvard.XON if xon else b"")
    reply = harvard.parse_reply(frame)
    assert (reply.lines, reply.prompt) == (tuple(x.strip() for x in lines), prompt)
    assert reply.address == (address or None)
    assert harvard.prompt_end(frame, address)


@given(st.floats(1e-5, 500.0))
def test_rate_arguments_keep_six_significant_digits(rate: float) -> None:
    args = harvard.rate_args(rate)
    number, units = args.split()
    assert units in harvard.RATE_UNITS_ML_MIN and "e" not in number
    assert harvard.parse_rate(args) == pytest.approx(rate, rel=1e-5)
    assert harvard.parse_rate(harvard.format_rate(rate)) == pytest.approx(rate, rel=1e-5)


@given(st.floats(0.0, 1000.0))
def test_volume_answers_round_trip(volume_ml: float) -> None:
    assert harvard.parse_volume(harvard.format_volume(volume_ml)) == pytest.approx(
        volume_ml, rel=1e-5, abs=1e-9)


def test_stall_prompts_in_stray_bytes_are_found() -> None:
    assert harvard.prompt_events(b"\n07*\n:\x11\n12T*") == [(7, "*"), (12, "T*")]
    assert harvard.prompt_events(b"\n07:1 ml\r\n07:") == []


# ============================================================================= over a pty
@pytest.fixture
def chain() -> Iterator[tuple[Bench, HarvardChainEmulator, Transport]]:
    """Two Harvard pumps on one line: address 0 (the master) and 12."""
    bench = Bench()
    bench.pumps["p0"] = PumpModel(address=0, role="solvent", diameter_mm=10.0)
    bench.pumps["p12"] = PumpModel(address=12, role="zinc", diameter_mm=10.0)
    emu = HarvardChainEmulator("pumps", bench)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, baudrate=DEFAULT_BAUD, timeout_s=0.5, retries=2)
    try:
        yield bench, emu, line
    finally:
        line.close()
        emu.stop()


def _up(line: Transport, address: int, name: str = "pump_x") -> HarvardPump:
    pump = HarvardPump(line, name, address=address, diameter_mm=14.57, syringe_ml=10.0)
    pump.connect()
    return pump


def test_pumps_on_a_chain_answer_their_own_address(chain: Any) -> None:
    """Elite manual p.53: a nonzero address precedes the command; every line of its reply
    carries it; the diameter is set and read back at bring-up."""
    bench, _, line = chain
    p0, p12 = _up(line, 0, "a"), _up(line, 12, "b")
    assert isinstance(p0, Pump) and not isinstance(p0, Watchdogged)
    assert bench.pumps["p0"].diameter_mm == bench.pumps["p12"].diameter_mm == pytest.approx(14.57)
    p12.set_rate_ml_min(0.05)
    assert bench.pumps["p12"].rate_ml_min == pytest.approx(0.05)
    assert bench.pumps["p0"].rate_ml_min == 0.0
    sent = [e.sent for e in line.log.since(0) if e.device == "b" and e.sent]
    assert sent and all(s.startswith(b"12") for s in sent[1:])  # the first is the wake-up CR
    assert any(e.received.startswith(b"\n12:50 ul/min\r") for e in line.log.since(0))
    assert "11 ELITE" in p12.ping()
    assert any(e.sent == b"12nvram off\r" and not e.error for e in line.log.since(0))


def test_rate_and_direction_with_units_read_back(chain: Any) -> None:
    """Elite manual: ``irate``/``wrate`` ``{rate} {units}``, the query answers with units; the
    run prompts are ``>`` infusing, ``<`` withdrawing."""
    bench, _, line = chain
    pump = _up(line, 12)
    p = bench.pumps["p12"]
    with bench.lock:
        p.left_ml = 5.0  # room to withdraw into (a full syringe stalls a withdrawal at once)
    pump.set_direction(False)
    pump.set_rate_ml_min(2.5)
    pump.clear_dispensed()
    pump.start()
    assert (p.running, p.infuse, p.rate_ml_min) == (True, False, pytest.approx(2.5))
    st = pump.state()
    assert (st.pumping, st.status, st.alarms) == (True, "W", ())
    assert pump.rate_read_ml_min() == pytest.approx(2.5)
    with bench.lock:
        p.withdrawn_ml = 0.123
    assert pump.dispensed_ml() == (0.0, pytest.approx(0.123))
    pump.stop()
    pump.set_direction(True)  # the rate follows to irate
    assert pump.rate_read_ml_min() == pytest.approx(2.5)
    pump.start()
    assert pump.state().status == "I"
    pump.stop()
    assert not p.running


def test_an_error_reply_is_a_refusal_never_retried(chain: Any) -> None:
    """Elite manual p.53: ``Argument error:`` / ``Command error:`` with the message on the next
    line, then the prompt."""
    _, emu, line = chain
    pump = _up(line, 12)
    before = emu.requests
    with pytest.raises(DeviceRefused, match=r"pump_x: irate 500 m/m refused: Argument error"
                                            r".*Out of range"):
        pump.set_rate_ml_min(500.0)
    assert emu.requests == before + 1
    with pytest.raises(DeviceRefused, match="Command error"):
        pump.command("frobnicate")
    assert emu.requests == before + 2


def test_garbled_replies_are_retried_then_a_silent_pump_is_named(chain: Any) -> None:
    _, emu, line = chain
    pump = _up(line, 12)
    pump.set_rate_ml_min(1.5)
    emu.garble_next(1)
    assert pump.rate_read_ml_min() == pytest.approx(1.5)  # the second attempt
    emu.no_reply = True
    with pytest.raises(HardwareError, match=r"pump_x: no valid reply to b'12irate\\r' after 3 "
                                            r"attempts"):
        pump.rate_read_ml_min()


def test_a_stall_is_alarm_s_once_and_the_pump_still_stops(chain: Any) -> None:
    """Elite manual: prompt ``*`` = stalled; the pump keeps it (it says of no command that
    acknowledges it), so the driver reports one alarm per stall."""
    bench, _, line = chain
    pump = _up(line, 12)
    pump.set_rate_ml_min(1.0)
    pump.start()
    with bench.lock:
        bench.pumps["p12"].stall("S")
    st = pump.state()
    assert (st.pumping, st.status, st.alarms) == (False, "A", ("S",))
    assert pump.state().alarms == ()
    pump.stop()  # '*' is not running: stopped
    with bench.lock:
        bench.pumps["p12"].left_ml = 0.0  # an empty syringe stalls the next run at once
    with pytest.raises(PumpAlarm, match="motor stalled") as info:
        pump.start()
    assert info.value.code == "S"


def test_an_unasked_stall_prompt_is_kept(chain: Any) -> None:
    """Elite manual: poll mode "inhibits unsolicited prompts", so a pump without it may send
    one; a ``*`` the transport throws away before the next request is still a stall."""
    bench, emu, line = chain
    emu.poll_unknown = True  # this pump has no poll mode: it sends its new prompt unasked
    emu.unsolicited_prompts = True
    pump = _up(line, 12)
    assert not pump.poll_mode
    pump.set_rate_ml_min(1.0)
    pump.start()
    with bench.lock:
        bench.pumps["p12"].stall("S")
    until(lambda: "p12" in emu._stall_sent)
    until(lambda: line.serial.in_waiting > 0)  # the '*' has crossed the pty before we ask
    assert pump.rate_read_ml_min() == pytest.approx(1.0)  # the stray '*' is read before it
    assert pump.take_alarms() == ("S",)
    assert any("discarded" in x and "12*" in x for x in line.log.lines())


@pytest.mark.parametrize("variation", ["poll_unknown", "no_xon"])
def test_a_pump_without_poll_mode_still_frames_its_idle_prompt(chain: Any,
                                                               variation: str) -> None:
    """Without poll mode the idle prompt of pump 12 (``\\n12:``) is how its data lines begin
    too; the driver waits for the line to go quiet before it takes it for the prompt. So it
    does for a pump that takes ``poll on`` but ends no prompt with an XON."""
    _, emu, line = chain
    emu.poll_unknown = variation == "poll_unknown"
    emu.xon_in_poll_mode = variation != "no_xon"
    pump = _up(line, 12)
    assert not pump.poll_mode
    mark = line.log.count
    pump.set_rate_ml_min(0.2)
    pump.stop()
    assert pump.rate_read_ml_min() == pytest.approx(0.2)
    assert pump.state().status == "S"
    assert not [x for x in line.log.lines(mark) if "!" in x]  # no retry, nothing discarded


def test_a_pump_without_status_is_polled_by_its_prompt(chain: Any) -> None:
    """Elite manual: ``status`` is the internal command for computers; a pump that refuses it
    still ends the refusal with its prompt, and later polls use the rate query."""
    bench, emu, line = chain
    emu.status_unknown = True
    pump = _up(line, 12)
    pump.set_rate_ml_min(1.0)
    pump.start()
    assert pump.state().status == "I"  # the prompt of the refusal
    with bench.lock:
        bench.pumps["p12"].stall("S")
    st = pump.state()  # from the rate query's prompt
    assert (st.status, st.alarms) == ("A", ("S",))
    assert sum(b"status" in e.sent for e in line.log.since(0)) == 1


def test_a_pump_that_reached_its_target_is_stopped_not_stalled(chain: Any) -> None:
    """Elite manual: prompt ``T*`` = target reached: the pump stopped on its own."""
    _, emu, line = chain
    pump = _up(line, 12)
    pump.set_rate_ml_min(1.0)
    pump.start()
    emu.reach_target("p12")
    st = pump.state()
    assert (st.pumping, st.status, st.alarms) == (False, "S", ())


def test_the_phd_ultra_form_with_a_colon_is_answered(chain: Any) -> None:
    """PHD ULTRA manual: ``12:irat 3.2 ul/min`` (the Elite writes no colon)."""
    bench, _, line = chain
    frame = line.exchange("raw", b"12:irat 3.2 ul/min\r", lambda s: bytes(s.read(64)))
    assert frame.endswith(b"\n12:")
    assert bench.pumps["p12"].rate_ml_min == pytest.approx(3.2e-3)


# ============================================================================= the kind
def _harvard_file(**pump: Any) -> dict[str, Any]:
    d = devices()
    for name, entry in d["devices"].items():
        if entry["kind"] == "ne1000":
            d["devices"][name] = {"kind": "harvard", "port": "pumps",
                                  "address": entry["address"], "role": entry["role"],
                                  "limits": entry["limits"], **pump}
    return d


def test_the_kind_has_its_own_entry_and_checks_it() -> None:
    kind = get_kind("harvard")
    assert (kind.category, kind.spec, kind.default_baud) == ("pump", HarvardSpec, 115200)
    config = parse_devices(_harvard_file(diameter_mm=14.57))
    assert config.category("pump_zinc") == "pump"
    with pytest.raises(ConfigError, match=r"devices\.pump_\w+\.address.*less than or equal "
                                          r"to 99"):
        parse_devices(_harvard_file(address=100))
    with pytest.raises(ConfigError, match=r"safe_mode_s.*Extra inputs"):
        parse_devices(_harvard_file(safe_mode_s=5))  # New Era's, not a Harvard setting


# ============================================================================= faults
@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with VirtualLab(time_scale=SCALE, pump_kind="harvard") as vl:
        yield vl


def _chain(lab: VirtualLab) -> HarvardChainEmulator:
    assert isinstance(lab.pumps, HarvardChainEmulator)
    return lab.pumps


@pytest.mark.parametrize(("fault", "reason"), [("stall", "pump_stall"),
                                               ("target", "pump_idle")])
def test_a_pump_that_stops_mid_experiment_trips_to_the_safe_state(lab: VirtualLab, fault: str,
                                                                  reason: str) -> None:
    """A stall (``*``: the outlet blocked) or a pump that stops on its own (``T*``): a trip,
    the soft shutdown, never a chemistry result."""
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)

    def inject() -> None:
        if fault == "stall":
            with lab.reactor.lock:
                lab.reactor.blocked = True
        else:
            _chain(lab).reach_target("pump_phosphine")
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


def test_an_error_reply_fails_the_experiment_into_the_safe_state(lab: VirtualLab) -> None:
    """The phosphine pump refuses its rate (``Argument error``): a named device error, the
    rig shut down, nothing pumping, no result."""
    _chain(lab).refuse_rates.add("pump_phosphine")
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        with pytest.raises(HardwareError, match=r"pump_phosphine.*Argument error"):
            ex.run(GOOD)
        assert pumps_stopped(lab)
        assert ex.last_shutdown is not None
    finally:
        ex.close()


def test_a_silent_chain_trips_and_the_report_says_the_pumps_may_still_run(
        lab: VirtualLab) -> None:
    """Harvard pumps have no hardware watchdog (nothing like New Era's Safe mode): a chain that
    goes silent mid-feed trips the rig, the heaters are made safe, and the shutdown report names the
    pumps it could not stop instead of claiming a safe state."""
    # one retry: every command to the silent chain costs its timeouts, seven pumps over
    ex = CSTRExecutor(lab.devices_config(retries=1), install_signal_handlers=False)
    try:
        when(lambda: feeding(lab), lambda: setattr(lab.pumps, "no_reply", True))
        with pytest.raises((SafetyTrip, HardwareError)):
            ex.run(GOOD)
        with lab.reactor.lock:  # cut (the supervisor's comms loss: hard) or to standby (the
            # procedure met the silence first: soft), whichever came first
            assert all(h.op_hi_pct == 0 or h.remote_sp_c == 25.0
                       for h in lab.reactor.heaters.values())
        report = ex.last_shutdown
        assert report is not None and not report.ok
        assert any(d.startswith("pump_") for d in report.unsafe_devices), report.lines()
    finally:
        ex.close()
