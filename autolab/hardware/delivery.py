"""Delivery verification: every pump does what the procedure commanded, and delivers it.

A setpoint that was read back once proves little an hour later: a pump can be power-cycled
(it comes back stopped, reporting alarm ``R``), paused from its keypad, or run at a fraction of
its set rate. Each of these left an experiment looking like chemistry ("no usable emission",
or a completed trial at the wrong P:In) and taught the optimizer something false. So the
procedure starts and stops pumps only through a :class:`DeliveryMonitor`, which records what was
commanded, and the supervisor asks it to compare, on every poll and when each pump stops:

* **state** — the status character against the command: ``I`` when infusing was commanded,
  ``W`` when withdrawing, not pumping when stopped; every alarm the pump reported since the last
  poll (``R`` power reset, ``S`` stall, ``T`` Safe-mode timeout, ``E``/``O`` program errors);
* **rate** — the ``RAT`` read-back against the commanded rate;
* **delivery** — the pump's own dispensed volume (``DIS``, cleared with ``CLD`` at each start)
  against rate × elapsed lab time (:func:`check_delivery`).

The rule (documented in ``docs/faults.md``):

* A pump not in the commanded state (idle, paused, reset, running when it should be stopped,
  the wrong direction, a rate it was not given, any alarm) **trips** the rig: something other
  than the procedure controls it, or it lost its settings, so nothing it does next can be
  trusted. The supervisor runs the shutdown; the experiment is not a result.
* A pump in the commanded state that delivered outside the tolerance **invalidates** the
  experiment (:class:`~autolab.exceptions.DeviceFault`, journaled as invalid, never told to the
  optimizer); the executor re-initializes that pump before the next experiment. A second
  consecutive delivery fault on the same pump trips the rig: it is broken, not unlucky.

What this cannot see: ``DIS`` counts what the pump's firmware drove, so a syringe leak or a
stepper that loses steps unnoticed by the firmware needs a flow or pressure sensor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from autolab.exceptions import HardwareError
from autolab.hardware.base import AnswersRateDigits, Pump
from autolab.hardware.limits import Answer, rate_matches


@dataclass(frozen=True)
class DeliveryTolerance:
    """How far a pump's dispensed volume may stray from rate × time.

    Attributes:
        rel: Relative part: syringe bore tolerance and pump accuracy (a few %), with margin;
            10 % catches a pump at 70 % of its rate and lets a healthy one pass.
        abs_ml: Absolute part, mL: the ``DIS`` resolution (four significant digits) and the
            lead screw's backlash when a pump starts.
    """

    rel: float = 0.10
    abs_ml: float = 0.02


@dataclass(frozen=True)
class DeliveryVerdict:
    """One comparison of a dispensed volume with what was due.

    Attributes:
        delivered_ml: What the pump reports it dispensed, mL.
        due_low_ml / due_high_ml: What was due, mL: rate × the shortest / longest time the pump
            can have run, given when the start and the query were sent and answered.
        ok: Within the tolerance of that window.
    """

    delivered_ml: float
    due_low_ml: float
    due_high_ml: float
    ok: bool

    @property
    def detail(self) -> str:
        """Human-readable comparison."""
        due = 0.5 * (self.due_low_ml + self.due_high_ml)
        share = f" ({100 * self.delivered_ml / due:.0f} % of it)" if due > 0 else ""
        return (f"delivered {self.delivered_ml:.3f} mL where {self.due_low_ml:.3f}-"
                f"{self.due_high_ml:.3f} mL were due{share}")


def check_delivery(delivered_ml: float, rate_ml_min: float, run_low_min: float,
                   run_high_min: float, tolerance: DeliveryTolerance) -> DeliveryVerdict:
    """Compare a dispensed volume with rate × run time (pure).

    The run time is known only within a window (the start and the query each take a round trip;
    on a sped-up virtual lab a few wall milliseconds are lab seconds), so the volume due is a
    window too, widened by the tolerance on both sides.

    Args:
        delivered_ml: Dispensed volume the pump reports, mL.
        rate_ml_min: Commanded rate, mL/min.
        run_low_min: Shortest time it can have run, lab min.
        run_high_min: Longest time it can have run, lab min.
        tolerance: The tolerance.
    """
    low = rate_ml_min * max(0.0, run_low_min)
    high = rate_ml_min * max(0.0, run_high_min)
    ok = (low * (1 - tolerance.rel) - tolerance.abs_ml
          <= delivered_ml <= high * (1 + tolerance.rel) + tolerance.abs_ml)
    return DeliveryVerdict(delivered_ml, low, high, ok)


@dataclass(frozen=True)
class PumpFinding:
    """A pump that did not do what was commanded (or a valve or light path, from the supervisor).

    Attributes:
        role: Fluidic role (a valve's role or a light path's name for those).
        device: Device name (as in the devices file).
        reason: ``pump_power_cycle``, ``pump_stall``, ``safe_mode_timeout``, ``pump_alarm``,
            ``pump_idle``, ``pump_running``, ``pump_state`` (wrong direction, purging),
            ``pump_rate`` (trips) or ``pump_delivery`` (invalidates; trips when repeated);
            ``valve_moved`` or ``light_path`` (invalidate).
        detail: What was commanded and what the pump did.
        trip: Whether it trips the rig (else it invalidates the experiment).
    """

    role: str
    device: str
    reason: str
    detail: str
    trip: bool


@dataclass
class _Command:
    """What the procedure last commanded one pump (mutable, guarded by the role's lock)."""

    running: bool = False
    rate_ml_min: float = 0.0
    infuse: bool = True
    start_low_min: float = 0.0  # lab min just before the start was sent
    start_high_min: float = 0.0  # lab min once the start was verified
    leg_ml: float = 0.0  # last dispensed volume read during this run
    faulted: bool = False  # a delivery fault of this run was already reported
    booked_ml: float = 0.0  # part of this run's volume already booked (book_running)


_ALARM_TRIPS = {"R": ("pump_power_cycle", "the pump was reset (power interrupted): it stopped "
                      "and its settings cannot be trusted"),
                "S": ("pump_stall", "motor stalled (over-pressure or end of travel)"),
                "T": ("safe_mode_timeout", "pump stopped itself: safe-mode timeout"),
                "E": ("pump_alarm", "pumping program error"),
                "O": ("pump_alarm", "pumping program phase out of range")}
#: A second consecutive delivery fault on the same pump trips the rig.
MAX_DELIVERY_STRIKES = 2


def _alarm_code(err: HardwareError) -> str | None:
    """The pump alarm a driver error carries (duck-typed ``code``), if it is one that trips.

    The driver's ``PumpAlarm`` is read by its ``code`` so this layer does not import drivers.
    """
    code = getattr(err, "code", None)
    return code if isinstance(code, str) and code in _ALARM_TRIPS else None


class DeliveryMonitor:
    """Starts and stops pumps for the procedure and checks them against what it commanded.

    Thread-safe: the executor commands, the supervisor polls; a per-pump lock keeps a poll from
    judging a pump halfway through a command.

    Args:
        pumps: Pump drivers by role.
        lab_min: The lab clock, min.
        tolerance: Delivery tolerance.
    """

    def __init__(self, pumps: Mapping[str, Pump], lab_min: Callable[[], float], *,
                 tolerance: DeliveryTolerance | None = None) -> None:
        self.pumps = dict(pumps)
        self.lab_min = lab_min
        self.tolerance = tolerance or DeliveryTolerance()
        self._locks = {role: threading.RLock() for role in self.pumps}
        self._commands = {role: _Command() for role in self.pumps}
        self._delivered = dict.fromkeys(self.pumps, 0.0)  # since the last take_delivered()
        self._infused_total = dict.fromkeys(self.pumps, 0.0)  # since the monitor started
        self._strikes = dict.fromkeys(self.pumps, 0)
        self._faults: list[PumpFinding] = []
        self._lasting: dict[str, PumpFinding] = {}  # device -> its fault, until it is right
        self._faults_lock = threading.Lock()
        self.locked_out = False  #: set on a trip: no pump may be started any more
        #: Called with a trip found while the procedure commands a pump (the supervisor sets
        #: it to its own trip, so the shutdown runs); poll findings are returned instead.
        self.on_trip: Callable[[PumpFinding], None] | None = None

    # ----------------------------------------------------------------- commands
    def start(self, role: str, rate_ml_min: float, *, infuse: bool = True) -> None:
        """Set direction and rate (both verified), clear the counters, run (verified).

        A pump that runs already (a ramp changing its rate) has its run so far booked first.

        Raises:
            HardwareError: A device error, or the rig tripped (no pump may start then).
        """
        pump = self.pumps[role]
        with self._locks[role]:
            self._refuse_if_locked_out(role)
            pump.stop()
            cmd = self._commands[role]
            if cmd.running:  # a rate change (a ramp's step): book the leg before the clear
                self._book(role, *pump.dispensed_ml())
                cmd.running = False
            pump.set_direction(infuse)
            pump.set_rate_ml_min(rate_ml_min)
            pump.clear_dispensed()
            if (finding := self._alarms_on_the_way(role)) is not None:
                raise HardwareError(f"{pump.name}: start refused: {finding.detail}")
            cmd.rate_ml_min, cmd.infuse, cmd.leg_ml = rate_ml_min, infuse, 0.0
            cmd.faulted = False
            cmd.start_low_min = self.lab_min()
            cmd.running = True  # before RUN: a poll must not see it pump while "stopped"
            try:
                pump.start()
            except HardwareError as err:
                cmd.running = False
                if (code := _alarm_code(err)) is not None:
                    # answered RUN with its alarm (a stall as it starts): that alarm's trip,
                    # as a poll would find it, never a bare device failure
                    self._trip(self._alarm_finding(role, code))
                raise
            cmd.start_high_min = self.lab_min()

    def stop(self, role: str) -> PumpFinding | None:
        """Stop (verified) and check what this run delivered.

        A delivery fault is returned and also kept for :meth:`take_faults`.

        Raises:
            HardwareError: The pump did not stop or did not answer.
        """
        pump = self.pumps[role]
        with self._locks[role]:
            cmd = self._commands[role]
            if not cmd.running:
                pump.stop()
                return self._alarms_on_the_way(role)
            stop_low = self.lab_min()
            pump.stop()
            cmd.running = False
            stop_high = self.lab_min()
            infused, withdrawn = pump.dispensed_ml()
            delivered = infused if cmd.infuse else withdrawn
            self._book(role, infused, withdrawn)
            if (finding := self._alarms_on_the_way(role)) is not None:
                return finding
            verdict = check_delivery(delivered, cmd.rate_ml_min,
                                     stop_low - cmd.start_high_min,
                                     stop_high - cmd.start_low_min, self.tolerance)
            finding = self._judge(role, verdict, final=True)
            if finding is not None and finding.trip:
                self._trip(finding)
            return finding

    def stop_all(self) -> list[PumpFinding]:
        """Stop every pump (see :meth:`stop`); returns the delivery findings."""
        return [f for role in self.pumps if (f := self.stop(role)) is not None]

    def reinitialize(self, role: str) -> None:
        """Bring a pump that misdelivered back to a known state before it is used again.

        A role that is not a pump's (a valve or light path the supervisor reported through
        :meth:`report`) needs nothing here: the next experiment commands it again.
        """
        if role not in self.pumps:
            return
        with self._locks[role]:
            self.pumps[role].connect()

    def report(self, finding: PumpFinding, *, lasting: bool = False) -> None:
        """Keep a non-pump device's fault (a moved valve, a failed lamp) for :meth:`take_faults`.

        The executor turns every fault it takes into a :class:`~autolab.exceptions.DeviceFault`,
        so the experiment is journaled invalid and never told to the optimizer.

        Args:
            finding: The fault.
            lasting: The reporter (the supervisor) reports it once and tells :meth:`cleared`
                when the device is right again; until then :meth:`still_faulted` names it, so
                a later step that waits on the device can say why it never comes right.
        """
        with self._faults_lock:
            self._faults.append(finding)
            if lasting:
                self._lasting[finding.device] = finding

    def cleared(self, device: str) -> None:
        """The device reported with ``lasting`` is right again."""
        with self._faults_lock:
            self._lasting.pop(device, None)

    def still_faulted(self, device: str | None = None) -> tuple[PumpFinding, ...]:
        """Lasting faults reported and not yet cleared (of ``device`` only, if given)."""
        with self._faults_lock:
            return tuple(f for d, f in self._lasting.items() if device in (None, d))

    def _alarms_on_the_way(self, role: str) -> PumpFinding | None:
        """An alarm a command of the procedure acknowledged (a reset answering STP) trips.

        The supervisor would find it at its next poll, but the procedure may be done with the
        pump by then and take a reset pump's short delivery for a mere delivery fault.
        """
        alarms = self.pumps[role].take_alarms()
        if not alarms:
            return None
        finding = self._alarm_finding(role, alarms[0])
        self._trip(finding)
        return finding

    def _alarm_finding(self, role: str, code: str) -> PumpFinding:
        reason, what = _ALARM_TRIPS.get(code, ("pump_alarm", f"alarm {code}"))
        return self._finding(role, reason, f"{what} (alarm {code})", trip=True)

    def _trip(self, finding: PumpFinding) -> None:
        """A trip found outside the supervisor's poll: lock out, then tell the supervisor."""
        self.lock_out()
        if self.on_trip is not None:
            self.on_trip(finding)

    def lock_out(self) -> None:
        """No pump may be started from now on (the shutdown runs)."""
        self.locked_out = True

    def wait_idle(self, role: str, wait_s: float) -> bool:
        """Wait until no command of this monitor is in flight on the pump (False: timed out).

        Called by the shutdown after :meth:`lock_out`: a start that already passed its
        lock-out check still sends ``RUN``, and a stop sent before that ``RUN`` would leave the
        pump running after the shutdown. Once the role's lock was free after the lock-out, no
        start can follow (each checks the lock-out under that lock). Re-entrant: a shutdown
        run by the thread that holds the lock (a trip found inside a command) does not wait
        on itself; that command raises or returns after the trip and never sends ``RUN``.
        """
        lock = self._locks[role]
        if not lock.acquire(timeout=wait_s):
            return False
        lock.release()
        return True

    def _refuse_if_locked_out(self, role: str) -> None:
        if self.locked_out:
            raise HardwareError(f"{self.pumps[role].name}: start refused: the rig tripped and "
                                f"is shutting down")

    # ----------------------------------------------------------------- bookkeeping
    def _book(self, role: str, infused_ml: float, withdrawn_ml: float) -> None:
        """Book the pump's run that ends now (less what :meth:`book_running` booked of it)."""
        cmd = self._commands[role]
        self._add(role, (infused_ml if cmd.infuse else withdrawn_ml) - cmd.booked_ml)
        cmd.leg_ml = cmd.booked_ml = 0.0

    def _add(self, role: str, ml: float) -> None:
        """Count ``ml`` of the pump's current run as delivered (and infused, when it infuses)."""
        self._delivered[role] += ml
        if self._commands[role].infuse:
            self._infused_total[role] += ml

    def book_running(self) -> None:
        """Book what each running pump dispensed so far, so :meth:`take_delivered` counts it.

        A dynamic trajectory ends with its feeds running (the next one continues the stream),
        and a ramp changes rates without stopping: without this, the volume of a run that is
        still going would be booked only when the pump next stops, to another experiment.
        """
        for role, pump in self.pumps.items():
            with self._locks[role]:
                cmd = self._commands[role]
                if not cmd.running:
                    continue
                infused, withdrawn = pump.dispensed_ml()
                so_far = infused if cmd.infuse else withdrawn
                self._add(role, so_far - cmd.booked_ml)
                cmd.booked_ml = cmd.leg_ml = so_far

    def commands_state(self) -> dict[str, dict[str, float | bool]]:
        """The running pumps' commands (JSON), for a simulated rig restored mid-stream."""
        return {role: {"rate_ml_min": c.rate_ml_min, "infuse": c.infuse,
                       "start_low_min": c.start_low_min, "start_high_min": c.start_high_min,
                       "leg_ml": c.leg_ml, "booked_ml": c.booked_ml}
                for role, c in self._commands.items() if c.running}

    def load_commands_state(self, state: Mapping[str, Mapping[str, float | bool]]) -> None:
        """Restore :meth:`commands_state`: those pumps run as commanded, the others stopped.

        Only for a rig whose pumps were restored with it (the simulated rig's physics state):
        nothing is sent to a pump.
        """
        for role in self.pumps:
            with self._locks[role]:
                d = state.get(role)
                self._commands[role] = _Command() if d is None else _Command(
                    running=True, rate_ml_min=float(d["rate_ml_min"]), infuse=bool(d["infuse"]),
                    start_low_min=float(d["start_low_min"]),
                    start_high_min=float(d["start_high_min"]), leg_ml=float(d["leg_ml"]),
                    booked_ml=float(d["booked_ml"]))

    def take_delivered(self) -> dict[str, float]:
        """Volume each pump delivered (finished runs) since the last call, mL by role."""
        out = {r: v for r, v in self._delivered.items() if v > 0}
        self._delivered = dict.fromkeys(self.pumps, 0.0)
        return out

    def infused_total_ml(self, role: str) -> float:
        """Volume infused since the monitor started (finished runs + the running one), mL."""
        cmd = self._commands[role]
        running = max(0.0, cmd.leg_ml - cmd.booked_ml) if cmd.running and cmd.infuse else 0.0
        return self._infused_total[role] + running

    def commanded_rate_ml_min(self, role: str) -> float:
        """The rate the procedure last commanded this pump, mL/min."""
        return self._commands[role].rate_ml_min

    def is_running(self, role: str) -> bool:
        """Whether the procedure last commanded this pump to run."""
        return self._commands[role].running

    @property
    def pending_faults(self) -> tuple[PumpFinding, ...]:
        """The faults :meth:`take_faults` would hand out now (a look, nothing taken)."""
        with self._faults_lock:
            return tuple(self._faults)

    def take_faults(self) -> list[PumpFinding]:
        """Delivery faults (invalidating) found since the last call."""
        with self._faults_lock:
            out, self._faults = self._faults, []
        return out

    # ----------------------------------------------------------------- checks
    def poll(self, role: str, *, check_rate: bool = True) -> PumpFinding | None:
        """Compare one pump with its command (state, alarms, rate, delivery).

        ``check_rate=False`` skips the ``RAT`` query (the supervisor asks every few polls to
        spare the shared line; a rate changed behind the procedure's back shows in the
        delivered volume at every poll anyway).

        A pump that is being commanded right now is skipped this round. A trip finding also
        locks the monitor out, before the lock is released, so no start can slip in between.

        Raises:
            HardwareError: The pump did not answer (the supervisor calls that a comms loss).
        """
        lock = self._locks[role]
        if not lock.acquire(blocking=False):
            return None
        try:
            try:
                finding = self._poll_locked(role, check_rate)
            except HardwareError as err:
                # a pump that answers a query with its alarm (a stall announced and then
                # acknowledged by this reply) did answer: that is the alarm, not a comms loss
                if (code := _alarm_code(err)) is None:
                    raise
                finding = self._alarm_finding(role, code)
            if finding is not None and finding.trip:
                self.lock_out()
            return finding
        finally:
            lock.release()

    def _poll_locked(self, role: str, check_rate: bool) -> PumpFinding | None:
        pump, cmd = self.pumps[role], self._commands[role]
        st = pump.state()
        if st.alarms:  # the oldest alarm since the last poll (the driver keeps every one)
            return self._alarm_finding(role, st.alarms[0])
        if not cmd.running:
            if st.pumping:
                return self._finding(role, "pump_running", f"commanded stopped, but the pump "
                                     f"reports status {st.status!r} (pumping)", trip=True)
            return None
        want = "I" if cmd.infuse else "W"
        if not st.pumping:
            return self._finding(role, "pump_idle", f"commanded to pump at "
                                 f"{cmd.rate_ml_min:g} mL/min, but the pump reports status "
                                 f"{st.status!r} (not pumping)", trip=True)
        if st.status != want:
            return self._finding(role, "pump_state", f"commanded status {want!r}, the pump "
                                 f"reports {st.status!r}", trip=True)
        rate = _rate_answer(pump) if check_rate else Answer(cmd.rate_ml_min, 0.0)
        if not rate_matches(cmd.rate_ml_min, rate):  # the read-back's rule, digits and all
            return self._finding(role, "pump_rate", f"commanded {cmd.rate_ml_min:g} mL/min, "
                                 f"the pump reads {rate.value:g} mL/min", trip=True)
        low = self.lab_min()
        infused, withdrawn = pump.dispensed_ml()
        high = self.lab_min()
        cmd.leg_ml = infused if cmd.infuse else withdrawn
        verdict = check_delivery(cmd.leg_ml, cmd.rate_ml_min, low - cmd.start_high_min,
                                 high - cmd.start_low_min, self.tolerance)
        return self._judge(role, verdict, final=False)

    def _judge(self, role: str, verdict: DeliveryVerdict, *, final: bool) -> PumpFinding | None:
        cmd = self._commands[role]
        if verdict.ok:
            if final and not cmd.faulted:
                self._strikes[role] = 0
            return None
        if cmd.faulted:  # already reported during this run
            return None
        cmd.faulted = True
        self._strikes[role] += 1
        trip = self._strikes[role] >= MAX_DELIVERY_STRIKES
        when = "when it stopped" if final else "while pumping"
        detail = f"{verdict.detail} {when}" + (
            f" ({self._strikes[role]} consecutive delivery faults)" if trip else "")
        finding = self._finding(role, "pump_delivery", detail, trip=trip)
        if not trip:
            with self._faults_lock:
                self._faults.append(finding)
        return finding

    def _finding(self, role: str, reason: str, detail: str, *, trip: bool) -> PumpFinding:
        return PumpFinding(role, self.pumps[role].name, reason, detail, trip)


def _rate_answer(pump: Pump) -> Answer:
    """The pump's rate with the digits it answers with, where the driver keeps them."""
    if isinstance(pump, AnswersRateDigits):
        return pump.rate_answer_ml_min()
    return Answer(pump.rate_read_ml_min(), 0.0)


def wall_lab_min(time_scale: float) -> Callable[[], float]:
    """A lab clock in minutes from the monotonic wall clock (``time_scale`` lab s per wall s)."""
    t0 = time.monotonic()
    return lambda: (time.monotonic() - t0) * time_scale / 60.0
