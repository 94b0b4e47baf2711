"""What the manual allows and our drivers assumed otherwise (New Era manuals, HA028651).

Each test drives a real driver over a pty against its emulator, set to answer as the
manual permits (it says so, or leaves it open) rather than as our driver expected.
See docs/hardware.md, "Audit against the manuals".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from autolab.exceptions import HardwareError
from autolab.hardware.drivers import Eurotherm3200, NE1000Pump
from autolab.hardware.protocols import eurotherm as eu
from autolab.hardware.rig import Rig
from autolab.hardware.transport import Transport
from autolab.virtuallab.emulators import ModbusBusEmulator, PumpChainEmulator
from autolab.virtuallab.lab import VirtualLab
from autolab.virtuallab.reactor import HeaterModel, PumpModel

from .test_conformance import Bench, _safe_mode_pump
from .waiting import until


@pytest.fixture
def basic_pump() -> Iterator[tuple[Bench, PumpChainEmulator, NE1000Pump]]:
    """One NE-1000 at address 3 with a 12 mm syringe, in Basic mode, brought up."""
    bench = Bench()
    bench.pumps["p"] = PumpModel(address=3, role="solvent", diameter_mm=12.0)
    emu = PumpChainEmulator("pumps", bench)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, timeout_s=0.3, retries=2)
    try:
        pump = NE1000Pump(line, "pump_x", address=3, diameter_mm=12.0, safe_mode_s=0)
        pump.connect()
        yield bench, emu, pump
    finally:
        line.close()
        emu.stop()


def test_a_command_ignored_at_a_phase_start_is_sent_again(basic_pump: Any) -> None:
    """New Era manual, command errors: ``?IGN`` = "Command ignored due to a simultaneous new Phase
    start". It says nothing against the command, so the driver sends it again (bounded), and a pump
    that keeps ignoring is named with the reply, never taken as done."""
    bench, emu, pump = basic_pump
    p = bench.pumps["p"]
    emu.ignore_next(1)
    before = emu.requests
    pump.set_rate_ml_min(1.5)
    assert p.rate_ml_min == pytest.approx(1.5)
    assert emu.requests == before + 3  # RAT (?IGN), RAT again, RAT query
    assert any("?IGN (command ignored)" in x for x in pump.transport.log.lines())
    emu.ignore_next(3)  # every attempt (retries=2)
    with pytest.raises(HardwareError, match=r"pump_x: no valid reply to b'03RUN\\r' after 3 "
                                            r"attempts.*\?IGN"):
        pump.command("RUN")
    assert not p.running


def test_a_pump_in_safe_mode_may_reply_in_basic_framing() -> None:
    """New Era manual, Safe mode gives the packet layout of requests; it does not say that the
    replies are packets too. A pump in Safe mode that answers in Basic framing is brought up, driven
    and polled; before, every reply was read as a packet and the pump was 'silent'."""
    with _safe_mode_pump(retries=2) as (bench, emu, line, pump):
        emu.basic_replies_in_safe_mode = True
        p = bench.pumps["p"]
        pump.connect()
        assert pump.found_mode == "safe" and p.safe_timeout_s == 5
        pump.set_rate_ml_min(0.75)
        pump.start()
        assert p.running and pump.state().pumping
        with bench.lock:
            p.stall("S")
        st = pump.state()
        assert (st.alarms, st.pumping) == (("S",), False)
        assert pump.rate_read_ml_min() == pytest.approx(0.75)  # the line stays in step


def test_a_pump_whose_stp_pauses_is_stopped_before_its_diameter_is_set() -> None:
    """New Era manual: whether one ``STP`` pauses or stops a program is left open, and ``DIA`` is
    accepted "only when stopped". A pump whose ``STP`` pauses got ``DIA`` while paused at bring-up
    (``?NA``: the rig would not open); the driver now stops a paused pump with a second ``STP``.
    """
    bench = Bench()
    bench.pumps["p"] = PumpModel(address=3, role="solvent", diameter_mm=12.0)
    emu = PumpChainEmulator("pumps", bench)  # type: ignore[arg-type]
    emu.stp_pauses = True
    emu.start()
    line = Transport(emu.port, timeout_s=0.3, retries=2)
    try:
        pump = NE1000Pump(line, "pump_x", address=3, diameter_mm=12.0, safe_mode_s=0)
        pump.connect()
        p = bench.pumps["p"]
        pump.set_rate_ml_min(0.5)
        pump.start()
        pump.command("STP")  # one STP: paused, not stopped
        assert (p.running, p.paused) == (False, True)
        with pytest.raises(HardwareError, match=r"DIA12 refused: \?NA"):
            pump.command("DIA", "12")  # what bring-up sent after its one STP
        pump.command("RUN")
        assert p.running
        pump.connect()  # a re-initialization while it runs (after a delivery fault)
        assert (p.running, p.paused, p.diameter_mm) == (False, False, 12.0)
        assert not pump.state().pumping
    finally:
        line.close()
        emu.stop()


def test_a_stopped_pump_in_safe_mode_times_out_when_the_host_is_silent() -> None:
    """New Era manual, Safe mode: the timeout is the time between consecutive valid packets, and
    "if the time out elapses, a pump alarm will occur, stopping the pump". It names no condition
    that the pump be pumping; our emulator timed out only a running pump, which hid a rig whose
    first pump heard nothing while the others came up (the next test)."""
    bench = Bench()
    bench.pumps["p"] = PumpModel(address=3, role="solvent", ignore_next=False)
    emu = PumpChainEmulator("pumps", bench)  # type: ignore[arg-type]
    emu.start()
    line = Transport(emu.port, timeout_s=0.3, retries=2)
    try:
        pump = NE1000Pump(line, "pump_x", address=3, safe_mode_s=1)
        pump.connect()
        p = bench.pumps["p"]
        assert not p.running and p.alarm == ""
        t0 = time.monotonic()
        until(lambda: p.alarm == "T", limit_s=10)
        assert time.monotonic() - t0 > 0.5  # not before the host was silent for the timeout
        st = pump.state()  # its reply acknowledges the alarm
        assert (st.alarms, st.pumping) == (("T",), False)
        assert pump.state().alarms == ()
    finally:
        line.close()
        emu.stop()


def test_bringing_up_the_rig_feeds_the_safe_mode_pumps_already_up() -> None:
    """The Safe-mode timer runs whether or not the pump pumps, from its first valid packet. Each
    device is brought up in turn; with 0.5 s reply timeouts the first of seven pumps heard
    nothing for 3.3-3.6 s while the others came up, past the default ``safe_mode_s`` (3), and the
    supervisor's first poll tripped on its alarm ``T``. Here the heaters' bus answers slowly, so
    the rest of the rig takes well over the pumps' 2-s timeout to come up (about
    1 s each controller; not 1 s: single replies come a second late on a loaded host)."""
    with VirtualLab(time_scale=60.0) as lab:
        with lab.reactor.lock:
            for p in lab.reactor.pumps.values():
                p.ignore_next = False  # powered up long ago: the pumps come up at once
        lab.heaters.before_reply = lambda: time.sleep(0.12)  # 2 controllers, 8 exchanges each
        rig = Rig.open(lab.devices_config(safe_mode_s=2, timeout_s=0.3, retries=2))
        try:
            rig.connect()
            with lab.reactor.lock:
                assert {n: p.alarm for n, p in lab.reactor.pumps.items() if p.alarm} == {}
                assert {p.safe_timeout_s for p in lab.reactor.pumps.values()} == {2}
            assert {p.name: p.state().alarms for p in rig.pumps.values()
                    if p.state().alarms} == {}
        finally:
            rig.close()


# ============================================================================= Eurotherm 3200
def test_a_controller_without_write_multiple_is_written_with_write_single() -> None:
    """Nothing we read of HA028651 names the 3200's Modbus function codes (minimalmodbus writes with
    16 by default). A controller that implements write single (6) only answered every write with
    exception 01 and the rig did not open; the driver now writes with 6 from then on."""
    bench = Bench()
    bench.heaters = {"h1": HeaterModel(address=1, role="core")}
    emu = ModbusBusEmulator("heaters", bench)  # type: ignore[arg-type]
    emu.functions = frozenset({eu.READ_HOLDING, eu.READ_INPUT, eu.WRITE_SINGLE})
    emu.start()
    line = Transport(emu.port, baudrate=9600, timeout_s=0.3, retries=2)
    try:
        heater = Eurotherm3200(line, "heater_x", address=1, ramp_c_per_min=12.0)
        heater.connect()
        heater.set_temperature_c(181.5)
        h = bench.heaters["h1"]
        assert (h.remote, h.ramp_c_per_min, h.remote_sp_c) == (True, 12.0, 181.5)
        assert sum("IllegalRequestError" in x for x in line.log.lines()) == 1  # asked once
    finally:
        line.close()
        emu.stop()


def test_a_controller_that_refuses_both_write_functions_is_a_hardware_error() -> None:
    """The fallback to write single (6) must not hide a controller that writes nothing: a
    refusal of 6 as well is raised, naming the write and the exception, after one request of
    each function (no loop between them), and nothing was written."""
    bench = Bench()
    bench.heaters = {"h1": HeaterModel(address=1, role="core")}
    emu = ModbusBusEmulator("heaters", bench)  # type: ignore[arg-type]
    emu.functions = frozenset({eu.READ_HOLDING, eu.READ_INPUT})
    emu.start()
    line = Transport(emu.port, baudrate=9600, timeout_s=0.3, retries=2)
    try:
        heater = Eurotherm3200(line, "heater_x", address=1, ramp_c_per_min=12.0)
        with pytest.raises(HardwareError, match=r"heater_x: controller at address 1 refused "
                                                r"write of .* illegal function"):
            heater.connect()
        assert sum("IllegalRequestError" in x for x in line.log.lines()) == 2  # 16, then 6
        assert not bench.heaters["h1"].remote
    finally:
        line.close()
        emu.stop()
