"""CSTRExecutor: the one experiment procedure on the serial rig (real or virtual).

The procedure (:mod:`autolab.executors.procedure`: flush or not, heat with the feeds on where
safe, settle adaptively or for a fixed time, acquire) drives the drivers of the devices file over
RS-232 (or the virtual lab's ptys); this module supplies what is particular to the serial rig:
the wall clock × the devices file's ``time_scale`` (1 on a real rig), the safety supervisor and
the delivery monitor that every wait consults.

Safety: the :class:`~autolab.hardware.safety.Supervisor` polls every device while the executor
lives; any trip, exception, SIGTERM or exit runs the one :class:`~autolab.hardware.safety.Shutdown`
and the executor raises :class:`~autolab.exceptions.SafetyTrip` with the device log and the
shutdown's report (:attr:`CSTRExecutor.last_shutdown`). Measurements already returned are never
touched.

Delivery: pumps are started and stopped only through the
:class:`~autolab.hardware.delivery.DeliveryMonitor`, which the supervisor uses to compare every
pump with its command (state, alarms, rate, dispensed volume). A pump that delivered outside the
tolerance ends the experiment with :class:`~autolab.exceptions.DeviceFault` (the feeds are
stopped, the pump is re-initialized, the campaign journals the trial as invalid, and the next
experiment flushes the tanks); a pump in the wrong state trips the rig.
"""

from __future__ import annotations

import atexit
import signal
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any

from autolab.exceptions import DeviceFault, HardwareError, SafetyTrip
from autolab.executors.procedure import (
    DEFAULT_PROCEDURE,
    FlushMode,
    Procedure,
    ProcedureResult,
    ProcedureSettings,
    SettlingMode,
    TankState,
    check_before_run,
    remember_reading,
)
from autolab.hardware.base import Pump, Spectrometer, Stirrer, TemperatureController, Valve
from autolab.hardware.delivery import DeliveryMonitor, DeliveryTolerance, PumpFinding
from autolab.hardware.devices import DevicesConfig, load_devices
from autolab.hardware.envelope import RigSetpoints, rig_setpoints
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Shutdown, ShutdownReport, Supervisor, Trip
from autolab.records import Conditions, Measurement, QYReference
from autolab.twin.config import INP_MOLAR_MASS_G_MOL

#: The procedure's defaults (one place: :data:`DEFAULT_PROCEDURE`).
_D = DEFAULT_PROCEDURE

#: Exchanges one delivery-monitor command may need on a pump's line, with margin: a start is a
#: stop (up to 4: an alarm acknowledged, a pause), direction and rate each set and read back
#: (5), both counters cleared (2), VOL, RUN and a status (3).
PUMP_COMMAND_EXCHANGES = 16

#: Reactor volumes of solvent the soft shutdown flushes with. The washout of N equal tanks in
#: series is an Erlang tail: after one reactor volume the last of seven tanks still holds 45 %
#: of what it held (15 % of the whole hold-up), after three 0.01 % (common safety practice asks
#: for about three).
SHUTDOWN_FLUSH_VOLUMES = 3.0
#: Lab minutes the shutdown flush takes where the solvent pump's rate limit allows.
SHUTDOWN_FLUSH_MIN = 20.0


def shutdown_flush(devices: DevicesConfig, solvent_max_ml_min: float | None) -> tuple[float, float]:
    """(volume, rate) of the soft shutdown's solvent flush: mL, mL/min.

    :data:`SHUTDOWN_FLUSH_VOLUMES` reactor volumes in :data:`SHUTDOWN_FLUSH_MIN` lab minutes,
    slower (and so longer) where the solvent pump's ``max_rate_ml_min`` is lower: a rate above
    it would be refused and the reactor left unflushed.
    """
    g = devices.geometry
    flush_ml = SHUTDOWN_FLUSH_VOLUMES * (g.n_core_tanks + g.n_shell_tanks) * g.tank_volume_ml
    rate = flush_ml / SHUTDOWN_FLUSH_MIN
    return flush_ml, rate if solvent_max_ml_min is None else min(rate, solvent_max_ml_min)


def pump_command_wait_s(devices: DevicesConfig, pumps: Mapping[str, Pump]) -> float:
    """The longest a pump command in flight may take, wall s: the shutdown's bound on its wait.

    Every exchange may time out and be retried on its port (``timeout_s × (retries + 1)``); a
    pump without a serial line gets one second an exchange.
    """
    worst = 1.0
    for pump in pumps.values():
        line = devices.devices[pump.name].port_name()
        if line is not None:
            port = devices.ports[line]
            worst = max(worst, port.timeout_s * (port.retries + 1))
    return PUMP_COMMAND_EXCHANGES * worst


class CSTRExecutor:
    """The Executor protocol over the hardware drivers.

    Args:
        devices: The devices file (validated).
        settle_residence_times: Fixed settling wait and adaptive cap, in residence times.
        flush_residence_times: Solvent flush before each experiment, in residence times.
        trace_frames: Emission frames over the longest settling wait.
        stir_rpm: Stirrer speed, rpm.
        abs_integration_ms: Integration time of the absorbance frames, ms.
        pl_integration_ms: Integration time of the emission frames, ms.
        temperature_tolerance_c: How close the blocks must be to the setpoints, °C.
        qy_reference: Reference dye reported with each measurement.
        poll_period_s: Supervisor poll period, wall s.
        settling: ``adaptive`` (stop when the outlet is steady, after the RTD floor) or
            ``fixed`` (``settle_residence_times`` always).
        flush: ``auto`` (skip the flush when the new feed can wash the old product out) or
            ``always``.
        feed_window_c: The feeds start once every block is this close to its setpoint, °C.
        blank_max_age_h: Oldest solvent blank an experiment may use, lab h.
        install_signal_handlers: Turn SIGTERM into the shutdown sequence (main thread only).
    """

    name = "cstr"

    def __init__(self, devices: DevicesConfig, *,
                 settle_residence_times: float = _D.settle_residence_times,
                 flush_residence_times: float = _D.flush_residence_times,
                 trace_frames: int = _D.trace_frames, stir_rpm: float = _D.stir_rpm,
                 abs_integration_ms: float = _D.abs_integration_ms,
                 pl_integration_ms: float = _D.pl_integration_ms,
                 temperature_tolerance_c: float = _D.temperature_tolerance_c,
                 qy_reference: QYReference | None = None, poll_period_s: float = 0.5,
                 settling: SettlingMode = _D.settling, flush: FlushMode = _D.flush,
                 feed_window_c: float = _D.feed_window_c,
                 blank_max_age_h: float = _D.blank_max_age_h,
                 install_signal_handlers: bool = True) -> None:
        self.devices = devices
        self.time_scale = devices.time_scale
        self.settings = ProcedureSettings(
            settle_residence_times=settle_residence_times,
            flush_residence_times=flush_residence_times, trace_frames=trace_frames,
            stir_rpm=stir_rpm, abs_integration_ms=abs_integration_ms,
            pl_integration_ms=pl_integration_ms,
            temperature_tolerance_c=temperature_tolerance_c, settling=settling, flush=flush,
            feed_window_c=feed_window_c, blank_max_age_h=blank_max_age_h)
        self.qy_reference = qy_reference or QYReference()
        self.tank = TankState()
        self._bookmark = 0
        #: Log count when the last experiment ended: a fault found before the next one starts
        #: comes with the exchanges in between (what the supervisor saw while the rig waited).
        self._idle_since = 0
        self._t0 = time.monotonic()
        self._clock_offset_h = 0.0
        self._reagents: dict[str, float] = {}
        self._run_index = 0
        self._faulted_roles: set[str] = set()
        self._closed = False
        self.rig = Rig.open(devices)
        try:
            self.rig.connect()
        except Exception:
            self.rig.close()
            raise
        flush_ml, flush_rate = shutdown_flush(
            devices, self.rig.limits(self.rig.pumps["solvent"].name).max_rate_ml_min)
        self.monitor = DeliveryMonitor(
            self.rig.pumps, lambda: self.lab_clock_h * 60.0,
            tolerance=DeliveryTolerance(devices.delivery.rel, devices.delivery.abs_ml))
        self.shutdown = Shutdown(self.rig, self.sleep_lab_s, flush_ml=flush_ml,
                                 flush_rate_ml_min=flush_rate, monitor=self.monitor,
                                 command_wait_s=pump_command_wait_s(devices, self.rig.pumps),
                                 look_lab_s=poll_period_s * self.time_scale)
        self.supervisor = Supervisor(self.rig, self._on_trip, period_s=poll_period_s,
                                     monitor=self.monitor)
        self.shutdown.known_c = self.supervisor.last_pv_c  # one dict: quoted by failed steps
        self.supervisor.syringe_used_ml = {r: 0.0 for r in self.rig.pumps}
        self.supervisor.start()
        #: The one procedure, on this rig: the executor is its session (clock, checks).
        self.geometry = devices.geometry
        self.clock = self
        self.procedure = Procedure(self, self.settings)
        atexit.register(self.close)
        if install_signal_handlers:
            self._install_sigterm()

    @classmethod
    def from_file(cls, path: str, **kwargs: Any) -> CSTRExecutor:
        """Build from a devices YAML file (``make_executor`` uses this)."""
        return cls(load_devices(path), **kwargs)

    # ------------------------------------------------------------------ clock
    @property
    def lab_clock_h(self) -> float:
        """Lab hours since the executor started (plus any restored offset)."""
        return self._clock_offset_h + (time.monotonic() - self._t0) * self.time_scale / 3600.0

    def sleep_lab_s(self, lab_s: float) -> None:
        """Sleep ``lab_s`` lab seconds (wall time ``lab_s / time_scale``)."""
        time.sleep(max(0.0, lab_s / self.time_scale))

    @property
    def reagent_ml(self) -> dict[str, float]:
        """Cumulative reagent volumes, mL by reagent."""
        return dict(self._reagents)

    @property
    def last_shutdown(self) -> ShutdownReport | None:
        """Every step of the shutdown once it ran (a trip, :meth:`safe_state`, :meth:`close`)."""
        return self.shutdown.report

    # ------------------------------------------------------------------ safety
    def _on_trip(self, trip: Trip) -> None:
        self.shutdown.run(hard=trip.hard)

    def _install_sigterm(self) -> None:
        try:
            previous = signal.getsignal(signal.SIGTERM)

            def handler(signum: int, frame: FrameType | None) -> None:
                self.safe_state()
                if callable(previous):
                    previous(signum, frame)
                raise SystemExit(128 + signum)
            signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread
            pass

    def _check(self, bookmark: int) -> None:
        trip = self.supervisor.trip
        if trip is not None:
            report = self.shutdown.run(hard=trip.hard)
            log = self.rig.log.lines(bookmark)
            raise SafetyTrip(f"safety trip: {trip.reason} on {trip.device or 'rig'}: "
                             f"{trip.detail}; {report.summary()}; device log: {len(log)} "
                             f"exchanges", device_log=log, shutdown=report)
        faults = self.monitor.take_faults()
        if faults:
            raise self._device_fault(faults, bookmark)

    def _device_fault(self, faults: list[PumpFinding], bookmark: int,
                      events: tuple[str, ...] = ()) -> DeviceFault:
        self._faulted_roles.update(f.role for f in faults)
        message = "; ".join(f"{f.device} ({f.role}): {f.detail}" for f in faults)
        return DeviceFault(faults[0].device,
                           f"{message}; experiment invalid: its conditions were not delivered",
                           device_log=(*events, *self.rig.log.lines(bookmark)))

    def _wait(self, lab_s: float, bookmark: int) -> None:
        end = time.monotonic() + lab_s / self.time_scale
        while (left := end - time.monotonic()) > 0:
            self._check(bookmark)
            time.sleep(min(left, 0.05))
        self._check(bookmark)

    # ------------------------------------------------------------------ acquisition
    # ------------------------------------------------------------------ procedure session
    @property
    def heaters(self) -> dict[str, TemperatureController]:
        """Controllers by role."""
        return self.rig.heaters

    @property
    def stirrers(self) -> dict[str, Stirrer]:
        """Stirrers by role."""
        return self.rig.stirrers

    @property
    def solvent_valve(self) -> Valve:
        """Solvent to the core inlet (1) or the junction (2)."""
        return self.rig.solvent_valve

    @property
    def outlet_valve(self) -> Valve:
        """Outlet to the collector (1) or waste (2)."""
        return self.rig.outlet_valve

    @property
    def spectrometer(self) -> Spectrometer:
        """The inline optics."""
        return self.rig.spectrometer

    def now_min(self) -> float:
        """Lab minutes (the procedure's clock)."""
        return self.lab_clock_h * 60.0

    def wait_min(self, minutes: float) -> None:
        """Wait ``minutes`` lab minutes, checking the supervisor and the delivery monitor."""
        self._wait(minutes * 60.0, self._bookmark)

    def check(self) -> None:
        """Raise a trip or a delivery fault found so far."""
        self._check(self._bookmark)

    @property
    def sulfur_valve(self) -> Valve | None:
        """The valve that chooses the injection tank, if the rig has one."""
        return self.rig.sulfur_valve

    def setpoints(self, conditions: Conditions) -> RigSetpoints:
        """Every device's setpoint, checked against the devices file's envelope and limits."""
        return rig_setpoints(conditions, self.devices)

    def set_heater_c(self, role: str, setpoint_c: float) -> None:
        """Write a setpoint through the supervisor (it refreshes it as the heartbeat)."""
        self.supervisor.set_heater_c(role, setpoint_c)

    def phase(self, name: str, conditions: Conditions) -> None:
        """Nothing to arm on a real rig (the chemistry tells by itself)."""

    # ------------------------------------------------------------------ run
    def run(self, conditions: Conditions) -> Measurement:
        """Run one experiment (the procedure; see the module docstring).

        Raises:
            ConditionsError: A setpoint outside the devices' limits or a condition the rig
                cannot realize (nothing was sent).
            SafetyTrip: The supervisor tripped; the shutdown sequence has run.
            DeviceFault: A pump misdelivered; the experiment is invalid, the rig stays up. One
                found before anything moved (a valve turned between experiments) has
                ``before_feed`` set and the exchanges since the last experiment as its log.
            HardwareError: A device failed; the rig is in its safe state.
        """
        self.check_before_run(conditions)  # a fault found between experiments: a rig event
        self._bookmark = bookmark = self.rig.log.count
        try:
            return self._run(conditions, bookmark)
        finally:
            self._idle_since = self.rig.log.count

    def check_before_run(self, conditions: Conditions) -> None:
        """The checks before an experiment or a trajectory moves anything (both modes).

        A device fault found here (:func:`~autolab.executors.procedure.check_before_run`: a
        rig event) ends as every device fault does, in :meth:`_end_invalid`: every pump
        stopped and verified, what they delivered booked, the pumps at fault re-initialized,
        heaters left on. Before, it was raised and nothing else: in dynamic mode the previous
        trajectory's feeds (left running so the next one continues from its last point) ran on
        into a rig known faulty until the kept proposal's settle flush stopped them, and a
        pump at fault was re-initialized only at the next invalid experiment.

        Raises:
            DeviceFault: With ``before_feed`` set, after the feeds were stopped.
            SafetyTrip: The supervisor tripped (the shutdown ran).
        """
        self._bookmark = self._idle_since
        try:
            check_before_run(self)
        except DeviceFault as fault:
            try:
                self._end_invalid(conditions, fault, self._bookmark)
            finally:
                self._idle_since = self.rig.log.count
            raise

    def _run(self, conditions: Conditions, bookmark: int) -> Measurement:
        self.monitor.take_delivered()
        self.procedure.plan(conditions)  # refuse before anything moves
        started_h = self.lab_clock_h
        try:
            result = self.procedure.run(conditions, self.tank, self._run_index)
        except SafetyTrip:
            raise
        except DeviceFault as fault:
            self._end_invalid(conditions, fault, bookmark)
            raise
        except HardwareError as err:
            if self.supervisor.tripped:  # the trip is the cause: report it, not its echo
                self._check(bookmark)
            self.safe_state()
            raise HardwareError(f"{err}; the rig was put in its safe state") from err
        except BaseException:
            self.safe_state()
            raise
        spent = self._book_reagents()
        self._check(bookmark)
        meas = self._measurement(conditions, result, started_h, spent, bookmark)
        remember_reading(self.tank, meas)
        self._run_index += 1
        return meas

    def run_trajectory(self, trajectory: Any, limits: Any, *, frame_interval_min: float,
                       settle: bool | None = None) -> Any:
        """A dynamic experiment: :func:`autolab.executors.ramp.run_on_serial`."""
        from autolab.executors.ramp import run_on_serial  # noqa: PLC0415 - import cycle

        return run_on_serial(self, trajectory, limits, frame_interval_min=frame_interval_min,
                             settle=settle)

    def _measurement(self, c: Conditions, result: ProcedureResult, started_h: float,
                     spent: dict[str, float], bookmark: int) -> Measurement:
        rig = self.rig
        g = self.devices.geometry
        in_ml = spent.get(rig.reagent("halide_cl"), 0.0) + spent.get(rig.reagent("halide_i"), 0.0)
        return Measurement(
            conditions=c.as_dict(), spectra=result.spectra, qy_reference=self.qy_reference,
            started_lab_h=started_h, finished_lab_h=self.lab_clock_h, reagent_ml=spent,
            # In fed as InP equivalent (upper bound: conversion is not measured inline)
            product_mg=in_ml * g.in_conc_m * INP_MOLAR_MASS_G_MOL, trace=result.trace,
            device_log=(*result.events, *self.rig.log.lines(bookmark)),
            metadata={"executor": self.name, "run_index": float(self._run_index),
                      "time_scale": self.time_scale, "n_core_tanks": float(g.n_core_tanks),
                      "n_shell_tanks": float(g.n_shell_tanks),
                      **result.metadata()})

    def _end_invalid(self, c: Conditions, fault: DeviceFault, bookmark: int) -> None:
        """After any device fault: feeds off, reagents booked, the pumps at fault re-initialized.

        The one ending of a device fault, whether found before the feeds (a rig event) or
        after (an invalid experiment), in both modes. It is the first step of a flow reactor's
        usual safe shutdown (stop every reagent feed pump and verify it stopped); the rest of
        that sequence (flush, cool the blocks, stirrers off) is for leaving the rig, which a
        device fault does not: the rig stays up (heaters at their setpoints, stirrers on), as
        the next experiment or the kept proposal runs on it and commands every device afresh.
        A trip or any other failure runs the whole shutdown instead. After a fault once the
        feeds ran, the tanks hold product of conditions that were not delivered, so the next
        experiment flushes them first; before the feeds they hold what they held.
        """
        try:
            self.monitor.stop_all()
            if self.supervisor.tripped:  # a pump alarm on the way: the trip wins
                self._check(bookmark)
            self._book_reagents()
            if not fault.before_feed:  # else the tanks hold what they held: nothing was fed
                self.tank.conditions = c.as_dict()
                self.tank.flush_reason = (f"the last experiment was invalid (a device fault: "
                                          f"{fault.device})")
            for finding in self.monitor.take_faults():
                self._faulted_roles.add(finding.role)
                fault.device_log += (f"also: {finding.device}: {finding.detail}",)
            while self._faulted_roles:
                self.monitor.reinitialize(self._faulted_roles.pop())
        except HardwareError as err:
            if self.supervisor.tripped:
                self._check(bookmark)
            self.safe_state()
            raise HardwareError(f"{err} (while ending an invalid experiment: {fault}); the rig "
                                f"was put in its safe state") from err

    def _book_reagents(self) -> dict[str, float]:
        """Add what the pumps delivered since the last booking to the reagent totals.

        Pumps still running (a dynamic trajectory ends with its feeds on) are booked up to now.
        """
        self.monitor.book_running()
        spent: dict[str, float] = {}
        for role, v in self.monitor.take_delivered().items():
            name = self.rig.reagent(role)
            spent[name] = spent.get(name, 0.0) + v
        for name, v in spent.items():
            self._reagents[name] = self._reagents.get(name, 0.0) + v
        return spent

    # ------------------------------------------------------------------ protocol
    def state_dict(self) -> dict[str, Any]:
        """Lab clock, reagent totals, run counter, what is in the tanks."""
        return {"executor": self.name, "lab_clock_h": self.lab_clock_h,
                "reagent_ml": dict(self._reagents), "run_index": self._run_index,
                "tank_conditions": self.tank.conditions,
                "tank_flush_reason": self.tank.flush_reason}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the lab clock continues from it).

        A resumed session has no solvent blank of its own and the tanks stood still in
        between, so its first experiment flushes them (when they hold product) and takes one.
        """
        self._clock_offset_h = float(state["lab_clock_h"])
        self._t0 = time.monotonic()
        self._reagents = {k: float(v) for k, v in state.get("reagent_ml", {}).items()}
        self._run_index = int(state.get("run_index", 0))
        tc = state.get("tank_conditions")
        self.tank = TankState(conditions=None if tc is None else dict(tc),
                              flush_reason=str(state.get("tank_flush_reason", "")))

    def safe_state(self) -> None:
        """Run the one shutdown sequence (soft unless a hard trip already ran). Idempotent."""
        self.supervisor.stop()
        trip = self.supervisor.trip
        self.shutdown.run(hard=bool(trip and trip.hard))

    def close(self) -> None:
        """Safe state, then release the ports (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.safe_state()
        finally:
            self.rig.close()
            atexit.unregister(self.close)
