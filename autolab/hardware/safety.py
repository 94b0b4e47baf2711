"""Safety: a supervisor that polls every device and ONE shutdown sequence for every fault.

Layers (common safety practice for automated flow reactors): (1) setpoint limits in the drivers,
before a byte is sent (:mod:`autolab.hardware.limits`); (2) device-side watchdogs — pumps in New Era
Safe mode stop themselves when the host is silent, controllers fall back from the remote setpoint to
their local standby setpoint; (3) this supervisor, polling at >= 1 Hz, which also feeds both
watchdogs; (4) :class:`Shutdown`, the one sequence run on any trip, exception, signal or exit:

* soft (stall, near-empty syringe, a non-thermal fault): stop reagent pumps -> solvent valve to
  the core inlet, outlet to waste, stirrers on -> solvent flush -> heaters to standby while the
  solvent flows, until the blocks are cool -> solvent off, stirrers off;
* hard (over-temperature, sensor break, loop break, communication loss with a heater, pump or
  stirrer, or one that refuses the poll): cut heater outputs and stop every pump at once;
  flushing is a human decision. A silent or refusing valve or light path trips soft: nothing is
  hotter or fuller for it, and the soft sequence already skips the flush when a valve is not
  confirmed.

The supervisor also checks every pump against what the procedure commanded (state, alarms,
rate, delivered volume: :mod:`autolab.hardware.delivery`), and every valve, light path and
spectrometer that can say so (:class:`~autolab.hardware.base.Watched`) against its last
verified setting: a valve turned mid-experiment or a lamp that failed makes the experiment
invalid (a device fault, never chemistry). Every shutdown step's result goes
into a :class:`ShutdownReport`: a failed step names the device left unsafe and what a person
must do, and the flush is skipped when the valves are not confirmed (never pump against an
outlet that may be closed).

An independent hardware over-temperature limiter with its own sensor remains mandatory on a
real rig; this is the second layer.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from autolab.exceptions import HardwareError
from autolab.hardware.base import Pump, Watched
from autolab.hardware.delivery import DeliveryMonitor, PumpFinding, wall_lab_min
from autolab.hardware.fluidics import REAGENT_ROLES
from autolab.hardware.rig import Rig
from autolab.hardware.transport import DeviceRefused


def _unreachable(err: HardwareError) -> str:
    """The trip reason of a device the supervisor could not poll.

    ``device_refused`` when the device answered with a well-framed error (a Modbus exception,
    a pump's ``?NA``): the line works and the device itself says no, so a person looks at the
    device (its mode, its configuration) rather than at cables and ports. ``comms_loss`` when
    no valid reply came. Either trips the same way: a device that cannot be polled cannot be
    trusted to hold what it was told.
    """
    return "device_refused" if isinstance(err, DeviceRefused) else "comms_loss"


@dataclass(frozen=True)
class Trip:
    """Why the supervisor tripped.

    Attributes:
        reason: ``over_temperature``, ``sensor_break``, ``loop_break``, ``over_range``,
            ``manual_mode``, ``pv_out_of_range``, ``comms_loss`` (no valid reply),
            ``device_refused`` (a well-framed error reply), ``syringe_empty``,
            ``exception``, ``signal``, or a pump finding of
            :class:`~autolab.hardware.delivery.DeliveryMonitor` (``pump_stall``,
            ``safe_mode_timeout``, ``pump_power_cycle``, ``pump_idle``, ``pump_rate`` ...).
        device: Device name ("" if not one device).
        detail: Human-readable detail.
        hard: Hard fault (cut heaters and pumps at once, no flush).
        t_unix_s: When.
    """

    reason: str
    device: str
    detail: str
    hard: bool
    t_unix_s: float


@dataclass(frozen=True)
class ShutdownStep:
    """The result of one shutdown step.

    Attributes:
        name: The step (``"cut heater core"``, ``"outlet valve to waste"`` ...).
        device: The device it acts on (as in the devices file; ``""`` for the whole rig).
        ok: Whether the device confirmed it.
        detail: The error or what was left undone ("" or a reading when ok).
        action: What a person must do because it failed (``""`` when ok).
    """

    name: str
    device: str
    ok: bool
    detail: str
    action: str = ""

    def line(self) -> str:
        """One display line."""
        where = f" ({self.device})" if self.device else ""
        if self.ok:
            return f"ok    {self.name}{where}"
        return f"FAIL  {self.name}{where}: {self.detail} -> {self.action}"


@dataclass(frozen=True)
class ShutdownReport:
    """Every step of one shutdown, in order, so nobody is told "done" when a step failed.

    Attributes:
        steps: The steps, in the order they ran.
        hard: A hard shutdown (heaters cut, pumps stopped, no flush).
    """

    steps: tuple[ShutdownStep, ...]
    hard: bool = False

    @property
    def ok(self) -> bool:
        """Every step confirmed."""
        return all(s.ok for s in self.steps)

    @property
    def failed(self) -> tuple[ShutdownStep, ...]:
        """The steps that failed."""
        return tuple(s for s in self.steps if not s.ok)

    @property
    def unsafe_devices(self) -> tuple[str, ...]:
        """Devices a failed step leaves in an unknown or unsafe state, once each, in order."""
        return tuple(dict.fromkeys(s.device or "rig" for s in self.failed))

    def summary(self) -> str:
        """One line: complete, or incomplete with what a person must do."""
        kind = "hard" if self.hard else "soft"
        if self.ok:
            return f"shutdown {kind} complete ({len(self.steps)} steps confirmed)"
        return (f"shutdown {kind} INCOMPLETE: {len(self.failed)} of {len(self.steps)} steps "
                f"failed; unsafe: {', '.join(self.unsafe_devices)}; "
                + "; ".join(dict.fromkeys(s.action for s in self.failed)))

    def lines(self) -> list[str]:
        """The summary, then one line per step (for the terminal and the journal)."""
        return [self.summary(), *(s.line() for s in self.steps)]


class Shutdown:
    """The one shutdown sequence (idempotent; thread-safe; every step best-effort and recorded).

    It begins by locking the delivery monitor out and waiting for every pump command in flight
    (:meth:`_quiesce`), and ends by asking every pump its status (:meth:`_confirm_pumps`), so
    that no pump runs after a shutdown whose report says it stopped.

    Args:
        rig: The drivers.
        sleep_lab_s: Sleeps for lab seconds (scaled for the virtual lab).
        flush_ml: Solvent volume to flush with, mL.
        flush_rate_ml_min: Solvent rate, mL/min.
        cool_timeout_lab_s: Longest wait for the blocks to cool, lab s.
        monitor: The delivery monitor through which the procedure starts pumps (locked out
            first); ``None`` where nothing else commands the pumps.
        command_wait_s: Longest wait for one pump command in flight, wall s (a bound: such a
            command normally ends within milliseconds).
        look_lab_s: Longest lab time between two looks at the pumps during the flush and the
            cool-down. The supervisor is stopped by then, so these looks are all the pumps
            hear: a pump in New Era Safe mode stops itself (alarm ``T``) when it hears nothing
            for its ``safe_mode_s``, the flushing solvent with it. The executor gives its poll
            period (in lab time); at most a lab minute.
    """

    def __init__(self, rig: Rig, sleep_lab_s: Callable[[float], None], *, flush_ml: float,
                 flush_rate_ml_min: float, cool_timeout_lab_s: float = 3 * 3600.0,
                 monitor: DeliveryMonitor | None = None,
                 command_wait_s: float = 30.0, look_lab_s: float = 60.0) -> None:
        self.rig = rig
        self.sleep_lab_s = sleep_lab_s
        self.flush_ml = flush_ml
        self.flush_rate_ml_min = flush_rate_ml_min
        self.cool_timeout_lab_s = cool_timeout_lab_s
        self.monitor = monitor
        self.command_wait_s = command_wait_s
        self.look_lab_s = min(look_lab_s, 60.0)
        #: The pump whose command in flight the sequence waits for ("" when none): a shutdown
        #: that seems to hang says what it waits on.
        self.waiting_on = ""
        #: Last known block temperatures by stage, °C (the supervisor keeps them current), so a
        #: failed heater step can say how hot the block may still be.
        self.known_c: dict[str, float] = {}
        self._lock = threading.Lock()
        self._steps: list[ShutdownStep] = []
        self._silent: set[str] = set()  # devices a step could not command in this sequence
        self._restopped: set[str] = set()  # pumps found running again during the cool-down
        self._unfed: set[str] = set()  # pumps that did not answer a feed in this sequence
        self.report: ShutdownReport | None = None

    @property
    def done(self) -> bool:
        """Whether the sequence has run."""
        return self.report is not None

    def _step(self, name: str, device: str, fn: Callable[[], object], action: str) -> bool:
        """Run one step and record it (a string ``fn`` returns is the step's detail)."""
        try:
            result = fn()
        except HardwareError as err:
            self._silent.add(device)
            self._steps.append(ShutdownStep(name, device, False, str(err), action))
            return False
        self._steps.append(ShutdownStep(name, device, True,
                                        result if isinstance(result, str) else ""))
        self._feed()
        return True

    def _feed(self) -> None:
        """Feed the Safe-mode pumps between steps (the supervisor no longer polls them).

        Without it the valve moves and stirrer starts before the flush can outlast a pump's
        ``safe_mode_s``: every stopped pump then alarms ``T`` at once, and the first look waits
        out each alarm reply while the flushing solvent hears nothing. A pump that does not
        answer is fed no more (the final status check names it).
        """
        self._unfed.update(self.rig.feed_watchdogs(skip=self._silent | self._unfed))

    def _hot(self, stage: str) -> str:
        t = self.known_c.get(stage)
        return f"may still be at {t:.0f} °C" if t is not None else "may still be hot"

    def _heater_action(self, stage: str) -> str:
        return f"heater '{stage}' {self._hot(stage)}: switch off its mains"

    @staticmethod
    def _pump_action(name: str) -> str:
        return f"pump '{name}' may still be pumping: press STOP on it or switch off its power"

    def run(self, *, hard: bool) -> ShutdownReport:
        """Run the sequence once; later calls return the first report at once."""
        with self._lock:
            if self.report is not None:
                return self.report
            self._steps, self._silent, self._restopped, self._unfed = [], set(), set(), set()
            self._quiesce()
            if hard:
                self._hard()
            else:
                self._soft()
            self._confirm_pumps()
            self.report = ShutdownReport(tuple(self._steps), hard=hard)
            return self.report

    def _quiesce(self) -> None:
        """Lock the monitor out (no pump may start), then let each pump's command in flight end.

        A start already past its lock-out check sends ``RUN`` after its last check: a stop sent
        before that ``RUN`` left the pump running, with a report that said every step was
        confirmed (a trip found by the supervisor's thread while the procedure's thread was
        starting the feeds, seen in CI under load). A command still in flight after
        :attr:`command_wait_s` is a failed step naming its pump, and the sequence goes on.
        """
        if self.monitor is None:
            return
        self.monitor.lock_out()
        for role, p in self.rig.pumps.items():
            self.waiting_on = p.name
            try:
                idle = self.monitor.wait_idle(role, self.command_wait_s)
            finally:
                self.waiting_on = ""
            if not idle:
                self._steps.append(ShutdownStep(
                    f"command in flight on pump {role}", p.name, False,
                    f"a command of the procedure was still in flight after "
                    f"{self.command_wait_s:g} s: the pump may start after it was stopped",
                    self._pump_action(p.name)))

    def _confirm_pumps(self) -> None:
        """Ask every pump its status last (the manual's status query); stop one that runs.

        Each stop was verified by the status its ``STP`` answered, but a pump may run again
        after that (its keypad, another program on the line, a start in flight beyond
        :attr:`command_wait_s`). The step says so and the pump is stopped again; one that does
        not stop is a failed step naming it. A pump a step of this sequence could not command
        is already named; asking it again would only repeat its timeouts.
        """
        for role, p in self.rig.pumps.items():
            if p.name not in self._silent:
                self._step(f"pump {role} confirmed stopped", p.name,
                           functools.partial(_stop_if_running, p), self._pump_action(p.name))

    def _hard(self) -> None:
        for role, h in self.rig.heaters.items():
            self._step(f"cut heater {role}", h.name, h.cut_output, self._heater_action(role))
        for role, p in self.rig.pumps.items():
            self._step(f"stop pump {role}", p.name, p.stop, self._pump_action(p.name))

    def _soft(self) -> None:
        rig = self.rig
        for role in (*REAGENT_ROLES, "bleed"):
            p = rig.pumps[role]
            self._step(f"stop pump {role}", p.name, p.stop, self._pump_action(p.name))
        sv, ov = rig.solvent_valve, rig.outlet_valve
        inlet = self._step("solvent valve to core inlet", sv.name, lambda: sv.move(1),
                           f"solvent valve '{sv.name}' is not confirmed at the core inlet "
                           f"(position 1): set it by hand, then flush the reactor")
        waste = self._step("outlet valve to waste", ov.name, lambda: ov.move(2),
                           f"outlet valve '{ov.name}' is not confirmed at waste (position 2): "
                           f"turn it to waste by hand before anything flows")
        for role, st in rig.stirrers.items():
            self._step(f"stirrer {role} on", st.name, st.start,
                       f"stirrer '{st.name}' may be off over a hot block: switch it on by hand")
        flushed = inlet and waste and self._flush()
        if not (inlet and waste):  # never pump against an outlet that may be closed
            self._steps.append(ShutdownStep(
                "solvent flush", rig.pumps["solvent"].name, False,
                "skipped: the valves are not confirmed (a closed outlet downstream of a running "
                "pump would build pressure)",
                "the reactor was not flushed: flush it by hand once the outlet is open to waste"))
        solvent = rig.pumps["solvent"]

        def solvent_off() -> None:
            self._step("solvent off", solvent.name, solvent.stop,
                       self._pump_action(solvent.name))

        if not flushed:  # the make-up solvent may still run: not against unconfirmed valves
            solvent_off()
        # a stopped solvent is watched too: restarted, it would pump against an unconfirmed outlet
        self._cool(flowing=solvent if flushed else None)
        if flushed:  # it flowed while the blocks cooled
            solvent_off()
        for role, st in rig.stirrers.items():
            self._step(f"stirrer {role} off", st.name, st.stop,
                       f"stirrer '{st.name}' may still run: switch it off by hand")

    def _flush(self) -> bool:
        """Flush with solvent, watching that it flows to the end (a step of its own).

        Only the end of the wait proves the flush: a solvent pump that stops in it (its
        Safe-mode timeout, a stall, its keypad) fails the step, and the sequence goes on as for
        an unflushed reactor (the solvent is watched as stopped while the blocks cool).
        """
        solvent = self.rig.pumps["solvent"]
        action = "the reactor was not flushed: flush it by hand before opening it"
        lab_s = 60.0 * self.flush_ml / self.flush_rate_ml_min
        if not (self._step("solvent rate", solvent.name,
                           lambda: _set_rate_stopped(solvent, self.flush_rate_ml_min), action)
                and self._step("solvent direction", solvent.name,
                               lambda: solvent.set_direction(True), action)
                and self._step("solvent on", solvent.name,
                               functools.partial(_start_clearing, solvent), action)):
            return False
        why = self._wait_looking(lab_s, "flush", solvent)
        self._steps.append(ShutdownStep(
            "solvent flush", solvent.name, not why,
            why or f"{self.flush_ml:g} mL in {lab_s / 60:.1f} lab min, pumping at every look",
            "the reactor was not fully flushed: flush it by hand before opening it"
            if why else ""))
        return not why

    def _wait_looking(self, lab_s: float, phase: str, flowing: Pump | None, *,
                      since_lab_s: float = 0.0) -> str:
        """Wait ``lab_s`` lab seconds, looking at every pump each :attr:`look_lab_s`.

        Every other pump must stay stopped (:meth:`_watch_stopped_pumps`); ``flowing`` must
        still pump at each look, and the wait ends at once when it does not.

        Args:
            lab_s: How long, lab s.
            phase: ``"flush"`` or ``"cool-down"`` (for the steps).
            flowing: The pump that must pump throughout (``None``: none).
            since_lab_s: Lab seconds of ``phase`` already past (for the steps).

        Returns:
            Why ``flowing`` stopped (its alarm or status, or that it did not answer); ``""``
            when it pumped at every look.
        """
        waited = 0.0
        while waited < lab_s:
            dt = min(self.look_lab_s, lab_s - waited)
            self.sleep_lab_s(dt)
            waited += dt
            into = since_lab_s + waited
            # the flowing pump first: a look at stopped pumps that alarmed waits out each
            # alarm reply, and the solvent's own Safe-mode timer runs meanwhile
            if flowing is not None and (why := self._still_flowing(flowing, into, phase)):
                return f"{flowing.name} stopped {into / 60:.1f} lab min into the {phase}: {why}"
            self._watch_stopped_pumps(self._stopped_roles(flowing), into, phase)
        return ""

    def _still_flowing(self, pump: Pump, into_lab_s: float, phase: str) -> str:
        """Why ``pump`` no longer pumps (an alarm, its status, no answer); ``""`` if it does.

        The status decides: an alarm reported while the pump pumps (a stray auto-alarm packet
        of an earlier stop, caught late) says nothing about the flow now, so it is recorded as
        a step of its own and the flush goes on; an alarm that stopped the pump is the reason.
        """
        try:
            st = pump.state()
        except HardwareError as err:
            self._silent.add(pump.name)
            return f"it did not answer: {err}"
        if st.pumping:
            if st.alarms:
                self._steps.append(ShutdownStep(
                    f"alarm on the flowing {pump.name} during the {phase}", pump.name, True,
                    f"alarm {', '.join(st.alarms)} reported {into_lab_s / 60:.1f} lab min "
                    f"into the {phase} while it pumps (status {st.status!r}): acknowledged"))
            return ""
        if st.alarms:
            return f"alarm {', '.join(st.alarms)}, status {st.status!r}"
        return f"status {st.status!r} (not pumping)"

    def _stopped_roles(self, flowing: Pump | None) -> tuple[str, ...]:
        """The roles of the pumps that must stay stopped while ``flowing`` alone pumps."""
        return tuple(r for r, p in self.rig.pumps.items() if p is not flowing)

    def _watch_stopped_pumps(self, roles: tuple[str, ...], waited_lab_s: float,
                             phase: str = "cool-down") -> None:
        """At each look in the flush and the cool-down, stop a pump of ``roles`` that runs again.

        The cool-down lasts hours on a real rig; a pump restarted in that time (its keypad,
        another program on the line) would otherwise feed reagent into a cooling reactor until
        the final status check (and a solvent stopped because the valves were not confirmed
        would pump against an outlet that may be closed). The first time a pump is found
        running it gets a step saying when; later findings only stop it again. A pump that does
        not answer here is left to the final status check, which names it.
        """
        for role in roles:
            p = self.rig.pumps[role]
            if p.name in self._silent:
                continue
            try:
                found = _stop_if_running(p)
            except HardwareError:
                continue
            if found and p.name not in self._restopped:
                self._restopped.add(p.name)
                self._steps.append(ShutdownStep(
                    f"pump {role} stopped during the {phase}", p.name, True,
                    f"it was running {waited_lab_s / 60:.1f} lab min into the {phase}: "
                    f"stopped again"))

    def _cool(self, flowing: Pump | None) -> None:
        """Heaters to standby; wait for the blocks to cool with ``flowing`` (the solvent) on.

        Every other pump is watched as stopped. A solvent that stops while the blocks cool is a
        failed step (once), and is watched as stopped from then on.
        """
        rig = self.rig
        standby = {role: self._step(f"heater {role} to standby", h.name,
                                    functools.partial(h.set_temperature_c, rig.config.ambient_c),
                                    self._heater_action(role))
                   for role, h in rig.heaters.items()}
        if not any(standby.values()):
            return
        limit = rig.config.safe_temperature_c
        waited = 0.0
        temps: dict[str, float] = {}
        error = ""
        self._watch_stopped_pumps(self._stopped_roles(flowing), waited)  # then each wait looks
        while True:
            try:
                temps = {role: h.temperature_c() for role, h in rig.heaters.items()}
            except HardwareError as err:
                error = str(err)
                break
            self.known_c.update(temps)
            if max(temps.values()) < limit or waited >= self.cool_timeout_lab_s:
                break
            why = self._wait_looking(60.0, "cool-down", flowing, since_lab_s=waited)
            waited += 60.0
            if why and flowing is not None:
                self._steps.append(ShutdownStep(
                    "solvent flows while the blocks cool", flowing.name, False, why,
                    f"the blocks cooled without solvent flowing: read the alarm of "
                    f"'{flowing.name}' before its next use"))
                flowing = None  # the look that found it ended before the others: now them
                self._watch_stopped_pumps(self._stopped_roles(flowing), waited)
        for role, h in rig.heaters.items():
            t = temps.get(role)
            ok = t is not None and t < limit
            detail = (f"{t:.0f} °C after {waited / 60:.0f} lab min" if t is not None
                      else f"temperature unknown: {error}")
            self._steps.append(ShutdownStep(
                f"heater {role} below {limit:g} °C", h.name, ok,
                detail if ok else f"not confirmed: {detail}",
                "" if ok else self._heater_action(role)))


def _stop_if_running(pump: Pump) -> str:
    """Stop the pump if its status says it pumps; returns what was found ("" if stopped)."""
    if not pump.state().pumping:
        return ""
    pump.stop()
    return "it was running again after its stop: stopped again"


def _start_clearing(pump: Pump) -> str:
    """Start the pump; name the alarms it reported before (the step's detail).

    The flush's stop acknowledges an alarm still pending on the solvent (its Safe-mode timer
    ran out while the supervisor was stopped, a power reset): kept for :meth:`take_alarms`, it
    would read as a stop at the flush's first look though the pump pumps.
    """
    pump.start()
    before = pump.take_alarms()
    return f"alarm {', '.join(before)} acknowledged before the start" if before else ""


def _set_rate_stopped(pump: Pump, rate_ml_min: float) -> None:
    """Stop the pump, then set its rate.

    The solvent may still run as make-up when the flush starts, and a pump cannot change its
    rate unit while it runs (NE-1000: ``?NA``), so a flush rate in another unit would otherwise
    be refused and the reactor left unflushed.
    """
    pump.stop()
    pump.set_rate_ml_min(rate_ml_min)


#: Controller status faults that trip hard (Eurotherm status word 75, HA028651: a sensor
#: break makes the PV meaningless; a loop break is output saturated without the PV following,
#: a heater or thermocouple fault; over-range is a PV beyond the input range).
#: Heater faults that are not hazards: judged by :meth:`Supervisor._judge_hold` instead.
HEATER_NOTICES = frozenset({"remote_sp_fail"})
HEATER_TRIPS = {"sensor_break": "thermocouple open",
                "loop_break": "loop break: output saturated, PV not responding",
                "over_range": "PV beyond the input range",
                "manual_mode": "controller in manual mode (Eurotherm status bit 4, Omega "
                               "control method 2): its output is held and no longer follows "
                               "the setpoint",
                "program_mode": "controller runs its own ramp/soak program (Omega control "
                                "method 3): its setpoint is the program's, not the host's",
                # the ramp-less kinds (autolab.hardware.controllers)
                "input_error": "the PV is an error code (input signal, A/D converter, no "
                               "reading yet), not a temperature",
                "controller_error": "the controller reports an error or alarm of its own "
                                    "(its code is in the device log)",
                "stopped": "the controller reads stopped although it was started (its "
                           "front panel, or a power loss): it follows no setpoint",
                "circulation_off": "the circulator's pump reads off although it was switched "
                                   "on: the jacket has no flow"}

#: Block temperatures a reading can have, °C. Above: an over-temperature whatever the devices
#: file's limits (its highest ``max_temperature_c``); below: a reading no block can have (a wrong
#: input, a sentinel value), so the PV is meaningless and the controller may heat flat out.
PV_PLAUSIBLE_C = (-50.0, 400.0)

#: Consecutive polls a controller may report a remote-setpoint failure, or a block may stray
#: from its setpoint, before the experiment is invalid (one poll may catch a transient).
HOLD_POLLS = 2
#: A block counts as at its setpoint within this much, °C (capped at half the hold tolerance).
REACHED_C = 2.0

#: Reason of a block that did not hold its setpoint (remote setpoint failed, or straying).
HEATER_SETPOINT = "heater_setpoint"

#: The supervisor reads each running pump's rate back every this many polls.
RATE_CHECK_EVERY = 4


class Supervisor:
    """Polls every device at ``period_s`` (wall) and trips on a fault.

    Args:
        rig: The drivers.
        on_trip: Called once, from the supervisor thread, with the trip (runs the shutdown).
        period_s: Poll period, wall s (<= 1 for the >= 1 Hz rule; below the pumps' Safe-mode
            timeout and the controllers' remote-SP timeout).
        monitor: What the procedure commanded each pump (see
            :mod:`autolab.hardware.delivery`); a fresh one over the rig's pumps if ``None``.
    """

    def __init__(self, rig: Rig, on_trip: Callable[[Trip], None], *,
                 period_s: float = 0.5, monitor: DeliveryMonitor | None = None) -> None:
        self.rig = rig
        #: Lab seconds per wall second: a syringe must last two polls of lab time.
        self.time_scale = rig.config.time_scale
        self.on_trip = on_trip
        self.period_s = period_s
        self.monitor = monitor or DeliveryMonitor(rig.pumps, wall_lab_min(self.time_scale))
        self.monitor.on_trip = lambda f: self._fire(f.reason, f.device, f.detail, hard=False)
        #: Remote setpoints refreshed each poll (heartbeat), °C by stage.
        self.setpoints_c: dict[str, float] = {}
        #: Last block temperatures read, °C by stage (a failed shutdown step quotes them).
        self.last_pv_c: dict[str, float] = {}
        self._setpoint_lock = threading.Lock()
        #: Volume already used from each syringe before this session, mL by role.
        self.syringe_used_ml: dict[str, float] = {}
        self.trip: Trip | None = None
        self._trip_lock = threading.Lock()
        #: Largest deviation of a block from its setpoint, once reached, °C (None: unchecked).
        self.hold_c = rig.config.temperature_hold_c
        self._reached: set[str] = set()  # heater roles at their setpoint since it was written
        self._strays: dict[str, int] = {}  # heater role -> consecutive polls off / remote fail
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="safety-supervisor", daemon=True)

    def set_heater_c(self, role: str, setpoint_c: float) -> None:
        """Write a heater's setpoint (verified) and make it the one each poll refreshes.

        Serialized with the poll's refresh: otherwise a poll landing between the write and its
        read-back writes the previous setpoint again and the verification fails.
        """
        with self._setpoint_lock:
            self.rig.heaters[role].set_temperature_c(setpoint_c)
            if self.setpoints_c.get(role) != setpoint_c:
                self._reached.discard(role)
            self.setpoints_c[role] = setpoint_c

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (the device watchdogs then take over)."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    @property
    def holding(self) -> frozenset[str]:
        """Heater roles whose block reached its setpoint since it was written (hold checked)."""
        return frozenset(self._reached)

    @property
    def tripped(self) -> bool:
        """Whether a trip happened."""
        return self.trip is not None

    def _fire(self, reason: str, device: str, detail: str, *, hard: bool) -> None:
        """Trip once, and run the shutdown once.

        The check and the set are one step: two threads finding a fault at once (the poll,
        and a pump command of the procedure) would otherwise both run the shutdown, and one of
        them may hold a pump's command lock that the other's shutdown waits for.
        """
        with self._trip_lock:
            if self.trip is not None:
                return
            self.trip = trip = Trip(reason, device, detail, hard, time.time())
        self._stop.set()
        self.on_trip(trip)

    def poll_once(self) -> None:
        """One round over every device; trips on the first fault found."""
        rig = self.rig
        for role in rig.heaters:
            if self.poll_heater(role):
                return None
        for role, p in rig.pumps.items():
            try:
                finding = self.monitor.poll(role, check_rate=self.polls % RATE_CHECK_EVERY == 0)
            except HardwareError as err:
                return self._fire(_unreachable(err), p.name, str(err), hard=True)
            if finding is not None and finding.trip:
                return self._fire(finding.reason, p.name, finding.detail, hard=False)
            if self.monitor.is_running(role):
                left = (p.syringe_ml - self.syringe_used_ml.get(role, 0.0)
                        - self.monitor.infused_total_ml(role))
                rate = self.monitor.commanded_rate_ml_min(role)
                margin = 2.0 * rate * self.period_s * self.time_scale / 60.0
                if left < rig.limits(p.name).min_syringe_ml + margin:
                    return self._fire("syringe_empty", p.name,
                                      f"{left:.2f} mL left in the syringe", hard=False)
        if self.poll_stirrers():
            return None
        for role, dev in self._watched().items():
            try:
                differs = dev.check()
            except HardwareError as err:  # soft: its sequence copes with an unconfirmed valve
                return self._fire(_unreachable(err), dev.name, str(err), hard=False)
            self._judge_watched(role, dev, differs)
        self.polls += 1
        return None

    def poll_heater(self, role: str) -> bool:
        """One heater's round: refresh its setpoint, read status and PV; True if it tripped."""
        h = self.rig.heaters[role]
        try:
            with self._setpoint_lock:
                if role in self.setpoints_c:
                    h.set_temperature_c(self.setpoints_c[role])
            fault = h.fault()
        except HardwareError as err:
            self._fire(_unreachable(err), h.name, str(err), hard=True)
            return True
        # the fault first: a PV read that fails because of it must not be reported as comms loss
        if fault in HEATER_TRIPS:
            self._fire(fault, h.name, HEATER_TRIPS[fault], hard=True)
            return True
        if fault and fault not in HEATER_NOTICES:  # a kind's fault nobody listed: never ignored
            self._fire(fault, h.name, f"controller fault {fault!r} (not a known kind of fault: "
                       "treated as a hazard)", hard=True)
            return True
        try:
            pv = h.temperature_c()
        except HardwareError as err:
            self._fire(_unreachable(err), h.name, str(err), hard=True)
            return True
        self.last_pv_c[role] = pv
        low, ceiling = PV_PLAUSIBLE_C
        limit = self.rig.limits(h.name).max_temperature_c
        limit = ceiling if limit is None else min(limit, ceiling)
        if not pv <= limit:  # NaN too
            self._fire("over_temperature", h.name, f"PV {pv:.1f} °C > limit {limit:g} °C",
                       hard=True)
            return True
        if pv < low:
            self._fire("pv_out_of_range", h.name, f"PV {pv:.1f} °C < {low:g} °C: no block can "
                       f"read that (input fault); the PV is meaningless", hard=True)
            return True
        self._judge_hold(role, h.name, pv, remote_failed=fault == "remote_sp_fail")
        return False

    def _judge_hold(self, role: str, device: str, pv: float, *, remote_failed: bool) -> None:
        """A block that left its setpoint invalidates the experiment (never chemistry).

        Two causes, each reported once: the controller says its remote setpoint fails (status
        bit 14: it runs on its local, standby setpoint, although the remote one was rewritten
        this poll), or a block that had reached its setpoint strays more than
        :attr:`hold_c` from it (a failing heater, a PV reading out of range). Neither is a
        hazard (over-temperature trips on its own), so the rig is not tripped; the delivery
        monitor carries the finding to the executor, which raises a DeviceFault.
        """
        sp = self.setpoints_c.get(role)
        if sp is None:
            return
        off = abs(pv - sp)
        hold = self.hold_c
        if hold is not None and off <= min(REACHED_C, hold / 2.0):
            self._reached.add(role)
        strays = remote_failed or (hold is not None and role in self._reached and off > hold)
        self._strays[role] = self._strays.get(role, 0) + 1 if strays else 0
        if self._strays[role] < HOLD_POLLS or self.monitor.still_faulted(device):
            if not strays:
                self.monitor.cleared(device)
            return
        self._reached.discard(role)
        why = ("the controller reports its remote setpoint failed (status bit 14): it runs on "
               "its local setpoint" if remote_failed else
               f"it had reached {sp:g} °C and now reads {pv:.1f} °C (hold tolerance "
               f"{hold:g} °C)")
        self.monitor.report(PumpFinding(role, device, HEATER_SETPOINT,
                                        f"{device} did not hold its setpoint: {why}",
                                        trip=False), lasting=True)

    def poll_stirrers(self) -> bool:
        """Check every stirrer; True if one tripped the rig.

        A silent stirrer trips hard (comms loss). One that can say so (:class:`Watched`) is
        checked against its command: a stopped or blocked motor invalidates the experiment,
        reported once.
        """
        for role, s in self.rig.stirrers.items():
            try:
                if not isinstance(s, Watched):
                    s.speed_rpm()
                    continue
                differs = s.check()
            except HardwareError as err:
                self._fire(_unreachable(err), s.name, str(err), hard=True)
                return True
            self._judge_watched(role, s, differs, reason="stirrer")
        return False

    def _watched(self) -> dict[str, Watched]:
        """Valves, light paths and the spectrometer that can say whether they are as commanded."""
        rig = self.rig
        devices: dict[str, object] = {**rig.valves, **rig.others, "spectrometer": rig.spectrometer}
        return {role: d for role, d in devices.items() if isinstance(d, Watched)}

    def _judge_watched(self, role: str, dev: Watched, differs: str, *,
                       reason: str = "") -> None:
        """A valve, light path or stirrer not as commanded invalidates the experiment.

        Reported once per fault. None is a hazard (every valve position is an open path; a
        still stirrer over a block at its setpoint mixes worse, nothing runs away), so the rig
        is not tripped; the delivery monitor carries the fault to the executor, which raises a
        DeviceFault.
        """
        if not differs:
            self.monitor.cleared(dev.name)
            return
        if self.monitor.still_faulted(dev.name):
            return
        reason = reason or ("valve_moved" if role in self.rig.valves else "light_path")
        self.monitor.report(PumpFinding(role, dev.name, reason,
                                        f"{dev.name} is not as commanded: {differs}",
                                        trip=False), lasting=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.poll_once()
            except Exception as err:  # any bug here must still trip
                self._fire("exception", "", f"{type(err).__name__}: {err}", hard=False)
