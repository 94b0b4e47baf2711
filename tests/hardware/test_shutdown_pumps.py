"""Every pump is stopped at the end of a shutdown, and its report says so pump by pump.

A CI run under load once ended a delivery trip with the sulfur pump running and the shutdown
report saying "complete". The supervisor's thread tripped while the procedure's thread was
starting the sulfur pump: past the lock-out check, before ``RUN``. The shutdown stopped the pump
(verified ``S``), and the start in flight then sent ``RUN``. These tests hold the start at that
point (the monitor's clock is read there, so a clock that waits for the shutdown holds it) and
restart a pump behind the shutdown's back (its keypad: during the cool-down, caught within a lab
minute, and after it, caught by the final status check), over the real drivers and the pty
emulators. They wait on what the shutdown did, never on wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from autolab.executors.cstr import CSTRExecutor, shutdown_flush
from autolab.hardware.safety import ShutdownReport
from autolab.virtuallab.lab import VirtualLab

from .test_virtual_lab import SCALE
from .waiting import until


@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with VirtualLab(time_scale=SCALE) as vl:
        yield vl


def _running(lab: VirtualLab) -> list[str]:
    with lab.reactor.lock:
        return [name for name, p in lab.reactor.pumps.items() if p.running]


def _confirmed(report: ShutdownReport, ex: CSTRExecutor) -> dict[str, str]:
    """The final status check's step of every pump: device -> detail ("" when it was stopped)."""
    steps = {s.name: s for s in report.steps}
    out = {}
    for role, pump in ex.rig.pumps.items():
        step = steps[f"pump {role} confirmed stopped"]
        assert step.device == pump.name and step.ok, step.line()
        out[pump.name] = step.detail
    return out


def test_a_pump_start_in_flight_when_the_rig_trips_ends_stopped(lab: VirtualLab) -> None:
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        clock, held = ex.monitor.lab_min, threading.Event()
        errors: list[BaseException] = []

        def shutdown_reached_sulfur(mark: int) -> bool:
            stopped = any(e.device == "pump_sulfur" and b"STP" in e.sent
                          for e in ex.rig.log.since(mark))
            return stopped or ex.shutdown.waiting_on == "pump_sulfur" or ex.shutdown.done

        def clock_holding_the_start() -> float:
            """The real clock; its first read in the start (after the lock-out check, before
            RUN) waits until the shutdown stopped the pump or waits for this start."""
            if threading.current_thread() is starter and not held.is_set():
                mark = ex.rig.log.count
                held.set()
                until(lambda: shutdown_reached_sulfur(mark))
            return clock()

        def start_sulfur() -> None:
            try:
                ex.monitor.start("sulfur", 0.5)
            except BaseException as err:  # reported by the test below
                errors.append(err)

        ex.monitor.lab_min = clock_holding_the_start
        starter = threading.Thread(target=start_sulfur)
        shutdown = threading.Thread(target=ex.safe_state)  # the trip's sequence
        starter.start()
        until(held.is_set)
        shutdown.start()
        starter.join(timeout=120)
        shutdown.join(timeout=120)
        assert not errors, errors
        report = ex.last_shutdown
        assert report is not None
        assert report.ok, report.lines()
        assert _running(lab) == [], report.lines()
        assert _confirmed(report, ex)["pump_sulfur"] == ""  # stopped once, after its start
    finally:
        ex.close()


def _solvent_running(lab: VirtualLab) -> bool:
    with lab.reactor.lock:
        return lab.reactor.pumps["pump_solvent"].running


def _once(when: Callable[[], bool], then: Callable[[], None]) -> tuple[Callable[[], None],
                                                                     list[bool]]:
    """A pump-reply hook that runs ``then`` at the first reply where ``when()`` holds, and the
    list it records that in (a test asserts the hook fired)."""
    done: list[bool] = []

    def hook() -> None:
        if not done and when():
            done.append(True)
            then()

    return hook, done


def _after_the_flush(lab: VirtualLab) -> Callable[[], bool]:
    """Holds from the first reply after the flush's solvent stopped (the blocks are cool; only
    stirrers and the final status check are left)."""
    flushed: list[bool] = []

    def when() -> bool:
        running = _solvent_running(lab)
        if running:
            flushed.append(True)
        return bool(flushed) and not running

    return when


def test_a_pump_restarted_during_the_flush_is_stopped_at_the_next_look(lab: VirtualLab) -> None:
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        # every reagent pump was stopped before the flush
        lab.pumps.before_reply, pressed = _once(lambda: _solvent_running(lab),
                                                lambda: lab.pumps.keypad_run("pump_zinc"))
        ex.safe_state()
        report = ex.last_shutdown
        assert pressed and report is not None and report.ok, report and report.lines()
        assert _running(lab) == []
        names = [s.name for s in report.steps]
        watch = names.index("pump zinc stopped during the flush")
        assert names.index("solvent on") < watch < names.index("solvent flush"), names
        step = report.steps[watch]
        assert step.ok and step.device == "pump_zinc" and "into the flush" in step.detail
        assert all(d == "" for d in _confirmed(report, ex).values())  # none ran at the end
    finally:
        ex.close()


def test_a_pump_running_again_after_the_cool_down_is_stopped_by_the_status_check(
        lab: VirtualLab) -> None:
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        lab.pumps.before_reply, pressed = _once(_after_the_flush(lab),
                                                lambda: lab.pumps.keypad_run("pump_zinc"))
        ex.safe_state()
        report = ex.last_shutdown
        assert pressed and report is not None and report.ok, report and report.lines()
        assert _running(lab) == []
        assert not any("cool-down" in s.name for s in report.steps)
        detail = _confirmed(report, ex)
        assert "running again" in detail["pump_zinc"]
        assert all(d == "" for name, d in detail.items() if name != "pump_zinc")
    finally:
        ex.close()


def test_a_pump_that_cannot_be_stopped_at_the_status_check_is_named(lab: VirtualLab) -> None:
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        def restart_zinc_and_ignore_every_command() -> None:
            lab.pumps.keypad_run("pump_zinc")
            lab.pumps.ignore_next(10**6)  # status queries are still answered

        lab.pumps.before_reply, done = _once(_after_the_flush(lab),
                                             restart_zinc_and_ignore_every_command)
        ex.safe_state()
        report = ex.last_shutdown
        assert done and report is not None
        assert report.unsafe_devices == ("pump_zinc",), report.lines()
        (failed,) = report.failed
        assert failed.name == "pump zinc confirmed stopped"
        assert "IGN" in failed.detail and "press STOP" in failed.action
        assert "INCOMPLETE" in report.summary() and "pump_zinc" in report.summary()
    finally:
        with lab.reactor.lock:  # the pump the shutdown could not stop: stop it by hand
            lab.reactor.pumps["pump_zinc"].running = False
        ex.close()


def test_a_solvent_restarted_while_an_unflushed_reactor_cools_is_stopped(lab: VirtualLab) -> None:
    """No flush (the outlet valve is silent), so the solvent was stopped before the cool-down: a
    keypad RUN then would pump against an outlet that may be closed, and is stopped at once."""
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        def solvent_stopped_by_the_shutdown() -> bool:
            return not _solvent_running(lab) and ex.shutdown.waiting_on == "" and any(
                s.name == "solvent off" for s in ex.shutdown._steps)

        lab.valves["outlet_valve"].no_reply = True
        lab.pumps.before_reply, pressed = _once(solvent_stopped_by_the_shutdown,
                                                lambda: lab.pumps.keypad_run("pump_solvent"))
        ex.safe_state()
        report = ex.last_shutdown
        assert pressed and report is not None, report and report.lines()
        names = [s.name for s in report.steps]
        assert "solvent on" not in names  # never pumped against the unconfirmed outlet
        assert names.index("solvent off") < names.index("pump solvent stopped during the cool-down")
        # what failed is the valve and the skipped flush, not the restarted solvent
        assert {s.name for s in report.failed} == {"outlet valve to waste", "solvent flush"}
        assert _confirmed(report, ex)["pump_solvent"] == ""
        assert _running(lab) == []
    finally:
        ex.close()


def _quick_lab(time_scale: float) -> VirtualLab:
    """A lab whose pumps were powered up long ago (they answer their first command)."""
    vl = VirtualLab(time_scale=time_scale).start()
    with vl.reactor.lock:
        for p in vl.reactor.pumps.values():
            p.ignore_next = False
    return vl


def test_the_flush_feeds_the_solvent_pumps_safe_mode_timer_to_its_end() -> None:
    """The supervisor is stopped once the shutdown runs, so during the flush (20 lab min on a real
    rig) nothing spoke to the pumps: a solvent pump in Safe mode stopped itself after its
    ``safe_mode_s`` (alarm ``T``), and the report still said the reactor was flushed. The flush
    now looks at every pump each poll period (lab time), which feeds their timers. Here the
    flush lasts 3 wall s against a 2-s timeout (not 1 s: single replies come a second late on
    a loaded host)."""
    lab = _quick_lab(time_scale=400.0)
    try:
        ex = CSTRExecutor(lab.devices_config(safe_mode_s=2), install_signal_handlers=False)
        try:
            ex.safe_state()
            report = ex.last_shutdown
            assert report is not None and report.ok, report and report.lines()
            flush = next(s for s in report.steps if s.name == "solvent flush")
            assert "pumping at every look" in flush.detail
            with lab.reactor.lock:
                solvent = lab.reactor.pumps["pump_solvent"]
                assert solvent.alarm == "" and not solvent.running
                assert solvent.infused_ml >= 0.95 * ex.shutdown.flush_ml
        finally:
            ex.close()
    finally:
        lab.stop()


def test_a_solvent_that_stalls_mid_flush_fails_the_flush_step() -> None:
    """Before, the flush step was the solvent's start: a solvent that stalled a minute later left
    the reactor unflushed under a report that said complete. Now the flush is a step of its own,
    failed with the pump's alarm, and the reactor is then treated as unflushed (the solvent is
    stopped and watched as stopped while the blocks cool)."""
    lab = _quick_lab(time_scale=SCALE)
    ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
    try:
        def stall_solvent() -> None:
            lab.reactor.pumps["pump_solvent"].stall("S")  # the hook runs under the lock

        lab.pumps.before_reply, stalled = _once(lambda: _solvent_running(lab), stall_solvent)
        ex.safe_state()
        report = ex.last_shutdown
        assert stalled and report is not None, report and report.lines()
        (failed,) = report.failed
        assert (failed.name, failed.device) == ("solvent flush", "pump_solvent")
        assert "alarm S" in failed.detail and "not fully flushed" in failed.action
        assert "INCOMPLETE" in report.summary()
        names = [s.name for s in report.steps]
        assert names.index("solvent flush") < names.index("solvent off") < names.index(
            "heater core to standby")  # stopped before the cool-down, as an unflushed reactor
        assert _confirmed(report, ex)["pump_solvent"] == ""
        assert _running(lab) == []
    finally:
        ex.close()
        lab.stop()


def test_the_soft_shutdown_flushes_three_reactor_volumes_within_the_solvent_limit() -> None:
    """Common safety practice flushes about three reactor volumes: one (as before) leaves 45 % of
    the last of seven tanks' content (Erlang washout). Flushed in 20 lab min where the solvent
    pump's rate limit allows, more slowly where it does not (a rate above it would be refused
    and the reactor left unflushed)."""
    lab = _quick_lab(time_scale=SCALE)
    try:
        config = lab.devices_config()
        g = config.geometry
        hold_up_ml = (g.n_core_tanks + g.n_shell_tanks) * g.tank_volume_ml
        assert shutdown_flush(config, 20.0) == (3 * hold_up_ml, 20.0)
        ex = CSTRExecutor(config, install_signal_handlers=False)
        try:
            ex.safe_state()
            report = ex.last_shutdown
            assert report is not None and report.ok, report and report.lines()
            assert ex.shutdown.flush_rate_ml_min == pytest.approx(3 * hold_up_ml / 20.0)
            with lab.reactor.lock:
                assert lab.reactor.pumps["pump_solvent"].infused_ml >= 0.95 * 3 * hold_up_ml
        finally:
            ex.close()
    finally:
        lab.stop()


def test_an_alarm_pending_on_the_solvent_before_the_flush_does_not_fail_a_flowing_flush() -> None:
    """The flush's stop acknowledges an alarm still pending on the solvent (its Safe-mode timer
    ran out while nothing spoke to it, a power reset). The driver keeps it for the next status,
    so the flush's first look read it as a stop though the pump pumped: the flush failed after
    34 of 609 mL and the blocks cooled without solvent. The status decides now, and the alarm is
    named in the start's step."""
    lab = _quick_lab(time_scale=1000.0)
    try:
        ex = CSTRExecutor(lab.devices_config(safe_mode_s=0), install_signal_handlers=False)
        try:
            with lab.reactor.lock:
                lab.reactor.pumps["pump_solvent"].alarm = "S"  # not yet polled
            ex.safe_state()
            report = ex.last_shutdown
            assert report is not None and report.ok, report and report.lines()
            steps = {s.name: s for s in report.steps}
            assert "alarm S acknowledged before the start" in steps["solvent on"].detail
            assert "pumping at every look" in steps["solvent flush"].detail
            with lab.reactor.lock:
                assert lab.reactor.pumps["pump_solvent"].infused_ml >= 0.95 * ex.shutdown.flush_ml
        finally:
            ex.close()
    finally:
        lab.stop()


def test_slow_valves_before_the_flush_do_not_let_the_pumps_time_out() -> None:
    """With the supervisor stopped, nothing spoke to the pumps while the valves moved: slow valve
    replies let every Safe-mode pump time out (``T``), and the flush's first look waited out six
    alarm replies before asking the solvent, whose own timer then stopped it mid-flush. The
    shutdown now feeds the pumps between its steps and looks at the flowing pump first."""
    lab = _quick_lab(time_scale=400.0)
    try:
        ex = CSTRExecutor(lab.devices_config(safe_mode_s=2), install_signal_handlers=False)
        try:
            for valve in lab.valves.values():
                valve.before_reply = lambda: time.sleep(0.6)
            ex.safe_state()
            report = ex.last_shutdown
            assert report is not None and report.ok, report and report.lines()
            with lab.reactor.lock:
                assert {n: p.alarm for n, p in lab.reactor.pumps.items() if p.alarm} == {}
                assert lab.reactor.pumps["pump_solvent"].infused_ml >= 0.95 * ex.shutdown.flush_ml
        finally:
            ex.close()
    finally:
        lab.stop()
