"""Safety: a supervisor that polls every device and ONE shutdown sequence for every fault.

Layers (reference §5): (1) setpoint limits in the drivers, before a byte is sent
(:mod:`autolab.hardware.limits`); (2) device-side watchdogs — pumps in New Era Safe mode stop
themselves when the host is silent, controllers fall back from the remote setpoint to their
local standby setpoint; (3) this supervisor, polling at >= 1 Hz, which also feeds both
watchdogs; (4) :class:`Shutdown`, the one sequence run on any trip, exception, signal or exit:

* soft (stall, near-empty syringe, a non-thermal fault): stop reagent pumps -> solvent valve to
  the core inlet, outlet to waste, stirrers on -> solvent flush -> heaters to standby while the
  solvent flows, until the blocks are cool -> solvent off, stirrers off;
* hard (over-temperature, sensor break, communication loss): cut heater outputs and stop every
  pump at once; flushing is a human decision.

An independent hardware over-temperature limiter with its own sensor remains mandatory on a
real rig; this is the second layer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from autolab.exceptions import HardwareError
from autolab.hardware.fluidics import REAGENT_ROLES
from autolab.hardware.rig import Rig


@dataclass(frozen=True)
class Trip:
    """Why the supervisor tripped.

    Attributes:
        reason: ``over_temperature``, ``sensor_break``, ``pump_stall``, ``comms_loss``,
            ``syringe_empty``, ``safe_mode_timeout``, ``exception`` or ``signal``.
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


class Shutdown:
    """The one shutdown sequence (idempotent; thread-safe; every step best-effort).

    Args:
        rig: The drivers.
        sleep_lab_s: Sleeps for lab seconds (scaled for the virtual lab).
        flush_ml: Solvent volume to flush with, mL.
        flush_rate_ml_min: Solvent rate, mL/min.
        cool_timeout_lab_s: Longest wait for the blocks to cool, lab s.
    """

    def __init__(self, rig: Rig, sleep_lab_s: Callable[[float], None], *, flush_ml: float,
                 flush_rate_ml_min: float, cool_timeout_lab_s: float = 3 * 3600.0) -> None:
        self.rig = rig
        self.sleep_lab_s = sleep_lab_s
        self.flush_ml = flush_ml
        self.flush_rate_ml_min = flush_rate_ml_min
        self.cool_timeout_lab_s = cool_timeout_lab_s
        self._lock = threading.Lock()
        self.done = False
        self.errors: list[str] = []
        self.steps: list[str] = []

    def _try(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            self.steps.append(what)
        except HardwareError as err:
            self.errors.append(f"{what}: {err}")

    def run(self, *, hard: bool) -> None:
        """Run the sequence once; later calls return at once."""
        with self._lock:
            if self.done:
                return
            rig = self.rig
            if hard:
                for role, h in rig.heaters.items():
                    self._try(f"cut heater {role}", h.cut_output)
                for role, p in rig.pumps.items():
                    self._try(f"stop pump {role}", p.stop)
                self.done = True
                return
            for role in (*REAGENT_ROLES, "bleed"):
                self._try(f"stop pump {role}", rig.pumps[role].stop)
            self._try("solvent valve to core inlet", lambda: rig.solvent_valve.move(1))
            self._try("outlet valve to waste", lambda: rig.outlet_valve.move(2))
            for role, st in rig.stirrers.items():
                self._try(f"stirrer {role} on", st.start)
            solvent = rig.pumps["solvent"]
            self._try("solvent rate", lambda: solvent.set_rate_ml_min(self.flush_rate_ml_min))
            self._try("solvent direction", lambda: solvent.set_direction(True))
            self._try("solvent on", solvent.start)
            self.sleep_lab_s(60.0 * self.flush_ml / self.flush_rate_ml_min)
            ambient = rig.config.ambient_c
            for role, h in rig.heaters.items():
                self._try(f"heater {role} to standby",
                          lambda h=h: h.set_temperature_c(ambient))  # type: ignore[misc]
            waited = 0.0
            while waited < self.cool_timeout_lab_s:
                try:
                    hot = max(h.temperature_c() for h in rig.heaters.values())
                except HardwareError as err:
                    self.errors.append(f"cooling: {err}")
                    break
                if hot < rig.config.safe_temperature_c:
                    break
                self.sleep_lab_s(60.0)
                waited += 60.0
            self._try("solvent off", solvent.stop)
            for role, st in rig.stirrers.items():
                self._try(f"stirrer {role} off", st.stop)
            self.done = True


class Supervisor:
    """Polls every device at ``period_s`` (wall) and trips on a fault.

    Args:
        rig: The drivers.
        on_trip: Called once, from the supervisor thread, with the trip (runs the shutdown).
        period_s: Poll period, wall s (<= 1 for the >= 1 Hz rule; below the pumps' Safe-mode
            timeout and the controllers' remote-SP timeout).
        setpoints_c: Remote setpoints to refresh each poll (heartbeat), °C by stage.
    """

    def __init__(self, rig: Rig, on_trip: Callable[[Trip], None], *,
                 period_s: float = 0.5) -> None:
        self.rig = rig
        #: Lab seconds per wall second: a syringe must last two polls of lab time.
        self.time_scale = rig.config.time_scale
        self.on_trip = on_trip
        self.period_s = period_s
        self.setpoints_c: dict[str, float] = {}
        self._setpoint_lock = threading.Lock()
        self.expect_running: set[str] = set()
        self.syringe_used_ml: dict[str, float] = {}
        self.trip: Trip | None = None
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
    def tripped(self) -> bool:
        """Whether a trip happened."""
        return self.trip is not None

    def _fire(self, reason: str, device: str, detail: str, *, hard: bool) -> None:
        if self.trip is None:
            self.trip = Trip(reason, device, detail, hard, time.time())
            self._stop.set()
            self.on_trip(self.trip)

    def poll_once(self) -> None:
        """One round over every device; trips on the first fault found."""
        rig = self.rig
        for role, h in rig.heaters.items():
            try:
                with self._setpoint_lock:
                    if role in self.setpoints_c:
                        h.set_temperature_c(self.setpoints_c[role])
                fault = h.fault()
                pv = h.temperature_c()
            except HardwareError as err:
                return self._fire("comms_loss", h.name, str(err), hard=True)
            if fault == "sensor_break":
                return self._fire("sensor_break", h.name, "thermocouple open", hard=True)
            limit = h.limits.max_temperature_c
            if limit is not None and pv > limit:
                return self._fire("over_temperature", h.name,
                                  f"PV {pv:.1f} °C > limit {limit:g} °C", hard=True)
        for role, p in rig.pumps.items():
            try:
                st = p.state()
            except HardwareError as err:
                return self._fire("comms_loss", p.name, str(err), hard=True)
            if st.alarm == "S":
                return self._fire("pump_stall", p.name, "motor stalled (over-pressure or "
                                  "end of travel)", hard=False)
            if st.alarm == "T":
                return self._fire("safe_mode_timeout", p.name, "pump stopped itself: "
                                  "safe-mode timeout", hard=False)
            if role in self.expect_running and role in self.syringe_used_ml:
                try:
                    infused, _ = p.dispensed_ml()
                except HardwareError as err:
                    return self._fire("comms_loss", p.name, str(err), hard=True)
                left = p.syringe_ml - self.syringe_used_ml[role] - infused
                margin = 2.0 * p.rate_ml_min * self.period_s * self.time_scale / 60.0
                if left < p.limits.min_syringe_ml + margin:
                    return self._fire("syringe_empty", p.name,
                                      f"{left:.2f} mL left in the syringe", hard=False)
        for s in rig.stirrers.values():
            try:
                s.speed_rpm()
            except HardwareError as err:
                return self._fire("comms_loss", s.name, str(err), hard=True)
        self.polls += 1
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.poll_once()
            except Exception as err:  # any bug here must still trip
                self._fire("exception", "", f"{type(err).__name__}: {err}", hard=False)
