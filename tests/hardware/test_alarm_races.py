"""Pump alarms racing with queries (NE-1000 over a pty): the alarm is never lost.

The manual (NE-1000 §Safe mode, NE-1600 p.35): an alarm is acknowledged, and cleared, by the
alarm status sent in reply to any valid command; in Safe mode the pump also transmits an
auto-alarm packet when the alarm occurs, which does not acknowledge it. There is no command
to ask for a past alarm. So once the acknowledging reply is lost (a timeout under load, line
noise), the only record of the alarm the host can have is a frame it already received: the
auto-alarm packet waiting on the line, the late reply drained after the timeout, or a frame
read in place of another pump's reply on the same chain. The driver must never throw one of
those away unread. Each case here failed before it was fixed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from autolab.hardware.drivers import NE1000Pump
from autolab.hardware.transport import Transport
from autolab.virtuallab.emulators import PumpChainEmulator
from autolab.virtuallab.reactor import PumpModel
from tests.scripts import load_script


class Bench:
    """Two pumps' state without physics (nothing advances on its own)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pumps: dict[str, PumpModel] = {}

    def advance(self) -> None:
        """Nothing moves on its own here."""


def _until(predicate: Any, limit_s: float = 30.0) -> None:
    end = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def chain() -> Iterator[tuple[Bench, PumpChainEmulator, NE1000Pump, NE1000Pump]]:
    """Two NE-1000s (addresses 3 and 4) in Safe mode on one line, brought up and running."""
    bench = Bench()
    for name, address in (("a", 3), ("b", 4)):
        bench.pumps[name] = PumpModel(address=address, role=name, diameter_mm=12.0,
                                      safe_timeout_s=30)
    emu = PumpChainEmulator("pumps", bench)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, timeout_s=0.3, retries=2)
    pumps = [NE1000Pump(line, f"pump_{n}", address=a, diameter_mm=12.0, safe_mode_s=30)
             for n, a in (("a", 3), ("b", 4))]
    for pump in pumps:
        pump.connect()
        pump.set_rate_ml_min(1.0)
        pump.start()
        pump.take_alarms()
    yield bench, emu, pumps[0], pumps[1]
    line.close()
    emu.stop()


def _stall(bench: Bench, emu: PumpChainEmulator, line: Transport, name: str) -> None:
    """Stall a pump and wait until its auto-alarm packet is on the host's side of the line."""
    with bench.lock:
        bench.pumps[name].stall("S")
    _until(lambda: line.serial.in_waiting > 0)


def test_an_auto_alarm_waiting_on_the_line_names_the_stall_though_its_ack_is_lost(
        chain: Any) -> None:
    bench, emu, a, _ = chain
    _stall(bench, emu, a.transport, "a")
    emu.drop_next()  # the reply that acknowledges the alarm never arrives
    state = a.state()
    assert state.status == "S" and not state.pumping
    assert state.alarms == ("S",), "the auto-alarm packet was thrown away unread"


def test_a_late_acknowledging_reply_drained_after_the_timeout_names_the_stall(
        chain: Any) -> None:
    bench, emu, a, _ = chain
    with bench.lock:
        bench.pumps["a"].stall("S")
    emu.auto_alarm = False  # no announcement: the late reply is the only record
    late = threading.Event()

    def once_late() -> None:
        if not late.is_set():
            late.set()
            time.sleep(a.transport.timeout_s * 1.5)

    emu.before_reply = once_late
    state = a.state()  # the late reply may land in the retry or be drained: either way, named
    assert not state.pumping
    assert state.alarms == ("S",), "the late reply was drained unread"


def test_another_pumps_auto_alarm_read_in_place_of_a_reply_reaches_that_pump(
        chain: Any) -> None:
    bench, emu, a, b = chain
    with bench.lock:
        bench.pumps["b"].stall("S")
    # a's query meets b's auto-alarm packet on the shared line: a's reply is never b's alarm
    state_a = a.state()
    assert state_a.pumping and state_a.alarms == ()
    emu.drop_next()  # and b's own acknowledging reply is lost
    state_b = b.state()
    assert not state_b.pumping and state_b.alarms == ("S",)


def test_an_alarm_is_handed_out_once_though_both_packets_arrive(chain: Any) -> None:
    bench, emu, a, _ = chain
    _stall(bench, emu, a.transport, "a")
    assert a.state().alarms == ("S",)  # the auto-alarm and the acknowledging reply: one alarm
    assert a.state().alarms == ()


def _soak_module() -> ModuleType:
    return load_script("benchmarks/soak_alarms.py")


def test_the_alarm_soak_short_names_every_stall_and_mis_assigns_nothing() -> None:
    """benchmarks/soak_alarms.py, one round per way the alarm reaches the host (seconds)."""
    soak = _soak_module()
    summary = soak.run_soak(len(soak.MODES), seed=3)
    assert {k: summary[k] for k in ("misnamed", "misassigned", "unsafe", "other_reported",
                                    "no_trip")} == dict.fromkeys(
        ("misnamed", "misassigned", "unsafe", "other_reported", "no_trip"), 0), summary
    assert summary["trips"]["lost_ack: pump_stall"] == 1  # the root cause, not the symptom
