"""CSTRExecutor: runs experiments on the real (or virtual) CSTR rig over serial.

One experiment: flush the previous product with solvent (and take the dark and blank frames
with solvent in the flow cell), ramp the heater blocks with pumps idle, start the feeds at the
rates that realize the conditions (:func:`~autolab.hardware.fluidics.flow_setpoints`), take
emission frames while the outlet settles and stop waiting once
:func:`autolab.analysis.steady_state` says the outlet is steady (or after
``settle_residence_times`` residence times of the cascade), then take the sample, PL and
reference-dye frames into the same :class:`~autolab.records.Measurement` the twin returns.

Safety: the :class:`~autolab.hardware.safety.Supervisor` polls every device while the executor
lives; any trip, exception, SIGTERM or exit runs the one :class:`~autolab.hardware.safety.Shutdown`
and the executor raises :class:`~autolab.exceptions.SafetyTrip` with the device log and the
shutdown's report (:attr:`CSTRExecutor.last_shutdown`). Measurements already returned are never
touched.

Delivery: pumps are started and stopped only through the
:class:`~autolab.hardware.delivery.DeliveryMonitor`, which the supervisor uses to compare every
pump with its command (state, alarms, rate, dispensed volume). A pump that delivered outside the
tolerance ends the experiment with :class:`~autolab.exceptions.DeviceFault` (the feeds are
stopped, the pump is re-initialized, the campaign journals the trial as invalid); a pump in the
wrong state trips the rig.

Lab time is wall time × the devices file's ``time_scale`` (1 on a real rig).
"""

from __future__ import annotations

import atexit
import math
import signal
import time
from types import FrameType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from autolab.analysis import steady_state
from autolab.exceptions import DeviceFault, HardwareError, SafetyTrip
from autolab.hardware.delivery import DeliveryMonitor, DeliveryTolerance, PumpFinding
from autolab.hardware.devices import DevicesConfig, load_devices
from autolab.hardware.fluidics import REAGENT_ROLES, flow_setpoints
from autolab.hardware.limits import check_setpoint
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Shutdown, ShutdownReport, Supervisor, Trip
from autolab.records import Conditions, Measurement, QYReference, Spectra, SpectralTrace

FloatArray = NDArray[np.float64]
#: InP, g/mol (product_mg = In fed as InP: an upper bound, conversion is not measured inline).
INP_MOLAR_MASS_G_MOL = 145.8


class CSTRExecutor:
    """The Executor protocol over the hardware drivers.

    Args:
        devices: The devices file (validated).
        settle_residence_times: Longest settling wait, in cascade residence times.
        flush_residence_times: Solvent flush before each experiment, in residence times.
        trace_frames: Emission frames over the longest settling wait.
        stir_rpm: Stirrer speed, rpm.
        abs_integration_ms: Integration time of the absorbance frames, ms.
        pl_integration_ms: Integration time of the emission frames, ms.
        temperature_tolerance_c: How close the blocks must be to the setpoints, °C.
        qy_reference: Reference dye reported with each measurement.
        poll_period_s: Supervisor poll period, wall s.
        install_signal_handlers: Turn SIGTERM into the shutdown sequence (main thread only).
    """

    name = "cstr"

    def __init__(self, devices: DevicesConfig, *, settle_residence_times: float = 3.0,
                 flush_residence_times: float = 1.0, trace_frames: int = 12,
                 stir_rpm: float = 600.0, abs_integration_ms: float = 20.0,
                 pl_integration_ms: float = 200.0, temperature_tolerance_c: float = 2.0,
                 qy_reference: QYReference | None = None, poll_period_s: float = 0.5,
                 install_signal_handlers: bool = True) -> None:
        self.devices = devices
        self.time_scale = devices.time_scale
        self.settle_residence_times = settle_residence_times
        self.flush_residence_times = flush_residence_times
        self.trace_frames = trace_frames
        self.stir_rpm = stir_rpm
        self.abs_integration_ms = abs_integration_ms
        self.pl_integration_ms = pl_integration_ms
        self.temperature_tolerance_c = temperature_tolerance_c
        self.qy_reference = qy_reference or QYReference()
        self._t0 = time.monotonic()
        self._clock_offset_h = 0.0
        self._reagents: dict[str, float] = {}
        self._run_index = 0
        self._tank_conditions: dict[str, float] | None = None
        self._faulted_roles: set[str] = set()
        self._closed = False
        self.rig = Rig.open(devices)
        try:
            self.rig.connect()
        except Exception:
            self.rig.close()
            raise
        g = devices.geometry
        flush_ml = (g.n_core_tanks + g.n_shell_tanks) * g.tank_volume_ml
        self.monitor = DeliveryMonitor(
            self.rig.pumps, lambda: self.lab_clock_h * 60.0,
            tolerance=DeliveryTolerance(devices.delivery.rel, devices.delivery.abs_ml))
        self.shutdown = Shutdown(self.rig, self.sleep_lab_s, flush_ml=flush_ml,
                                 flush_rate_ml_min=flush_ml / 20.0,
                                 on_start=self.monitor.lock_out)
        self.supervisor = Supervisor(self.rig, self._on_trip, period_s=poll_period_s,
                                     monitor=self.monitor)
        self.shutdown.known_c = self.supervisor.last_pv_c  # one dict: quoted by failed steps
        self.supervisor.syringe_used_ml = {r: 0.0 for r in self.rig.pumps}
        self.supervisor.start()
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
    def _frame(self, source: str, *, shutter_open: bool, cell: str = "SAMPLE",
               integration_ms: float) -> FloatArray:
        spec = self.rig.spectrometer
        spec.set_integration_ms(integration_ms)
        spec.configure(source=source, shutter_open=shutter_open, cell=cell)
        return spec.acquire()

    # ------------------------------------------------------------------ run
    def run(self, conditions: Conditions) -> Measurement:
        """Run one experiment (see the module docstring).

        Raises:
            ConditionsError: A setpoint outside the devices' limits (nothing was sent).
            SafetyTrip: The supervisor tripped; the shutdown sequence has run.
            HardwareError: A device failed; the rig is in its safe state.
        """
        bookmark = self.rig.log.count
        self._check(bookmark)
        self.monitor.take_delivered()
        rig = self.rig
        g = self.devices.geometry
        plan = flow_setpoints(conditions, g)
        for role, rate in plan.rates_ml_min.items():  # refuse before anything moves
            p = rig.pumps[role]
            check_setpoint(p.name, "rate_ml_min", rate, low=0.0,
                           high=p.limits.max_rate_ml_min, unit="mL/min")
        for stage, t_c in (("core", conditions.t_core_c), ("shell", conditions.t_shell_c)):
            h = rig.heaters[stage]
            check_setpoint(h.name, "temperature_c", t_c, low=0.0,
                           high=h.limits.max_temperature_c, unit="°C")
        started_h = self.lab_clock_h
        events: list[str] = []
        try:
            meas = self._run(conditions, plan.rates_ml_min, started_h, bookmark, events)
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
        self._run_index += 1
        return meas

    def _end_invalid(self, c: Conditions, fault: DeviceFault, bookmark: int) -> None:
        """After a delivery fault: feeds off, reagents booked, the pumps at fault re-initialized.

        The rig stays up (heaters on, the next experiment flushes the tanks first); only a
        device that cannot be brought back puts it in its safe state.
        """
        try:
            self.monitor.stop_all()
            if self.supervisor.tripped:  # a pump alarm on the way: the trip wins
                self._check(bookmark)
            self._book_reagents()
            self._tank_conditions = c.as_dict()
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
        """Add what the pumps delivered since the last booking to the reagent totals."""
        spent: dict[str, float] = {}
        for role, v in self.monitor.take_delivered().items():
            name = self.devices.devices[self.rig.pumps[role].name].reagent or role
            spent[name] = spent.get(name, 0.0) + v
        for name, v in spent.items():
            self._reagents[name] = self._reagents.get(name, 0.0) + v
        return spent

    def _stamp(self, events: list[str], started_h: float, msg: str) -> None:
        events.append(f"[t={(self.lab_clock_h - started_h) * 60:7.1f} min] {msg}")

    def _run(self, c: Conditions, rates: dict[str, float], started_h: float, bookmark: int,
             events: list[str]) -> Measurement:
        rig = self.rig
        sup = self.supervisor
        tau = c.tau_core_min + c.tau_shell_min
        for st in rig.stirrers.values():
            st.set_speed_rpm(self.stir_rpm)
            st.start()
        mon = self.monitor
        # 1) flush with solvent through the core inlet, outlet to waste
        for role in (*REAGENT_ROLES, "bleed"):
            mon.stop(role)
        rig.outlet_valve.move(2)
        rig.solvent_valve.move(1)
        if self._tank_conditions is not None:
            prev = Conditions(**self._tank_conditions)
            prev_tau = prev.tau_core_min + prev.tau_shell_min
            q = flow_setpoints(prev, self.devices.geometry).shell_ml_min
            mon.start("solvent", q, infuse=True)
            self._wait(self.flush_residence_times * prev_tau * 60.0, bookmark)
            mon.stop("solvent")
            self._stamp(events, started_h,
                        f"solvent flush {self.flush_residence_times * prev_tau:.1f} min")
        dark_abs = self._frame("OFF", shutter_open=False, integration_ms=self.abs_integration_ms)
        blank = self._frame("ABS", shutter_open=True, integration_ms=self.abs_integration_ms)
        # 2) heat with the pumps idle
        for stage, t_c in (("core", c.t_core_c), ("shell", c.t_shell_c)):
            sup.set_heater_c(stage, t_c)
        ramp = max(abs(t - rig.heaters[s].temperature_c()) for s, t in
                   (("core", c.t_core_c), ("shell", c.t_shell_c)))
        slowest = min(h.ramp_c_per_min for h in rig.heaters.values())
        deadline_lab_s = (ramp / slowest + 30.0) * 60.0
        waited = 0.0
        while True:
            off = max(abs(rig.heaters[s].temperature_c() - t) for s, t in
                      (("core", c.t_core_c), ("shell", c.t_shell_c)))
            if off <= self.temperature_tolerance_c:
                break
            if waited > deadline_lab_s:
                raise HardwareError(f"heaters did not reach the setpoints within "
                                    f"{deadline_lab_s / 60:.0f} lab min (off by {off:.1f} °C)")
            self._wait(30.0, bookmark)
            waited += 30.0
        self._stamp(events, started_h, f"blocks at core {c.t_core_c:.1f} °C, "
                    f"shell {c.t_shell_c:.1f} °C")
        # 3) feeds on
        rig.solvent_valve.move(2)  # solvent now means junction make-up
        for role in rates:
            mon.stop(role)
        for role, rate in rates.items():
            if rate > 0:
                mon.start(role, rate, infuse=role != "bleed")
        rig.outlet_valve.move(1)
        feed_start_h = self.lab_clock_h
        self._stamp(events, started_h, "feeds on: " + ", ".join(
            f"{r} {v:.3f}" for r, v in rates.items() if v > 0) + " mL/min")
        # 4) settle, stopping early when the outlet is steady
        dark_pl = self._frame("OFF", shutter_open=False, integration_ms=self.pl_integration_ms)
        settle_min = self.settle_residence_times * tau
        step_min = settle_min / max(self.trace_frames, 1)
        times: list[float] = []
        frames: list[FloatArray] = []
        spec = rig.spectrometer
        steady_since = math.nan
        while True:
            self._wait(step_min * 60.0, bookmark)
            t_min = (self.lab_clock_h - feed_start_h) * 60.0
            frames.append(self._frame("EXC", shutter_open=True,
                                      integration_ms=self.pl_integration_ms))
            times.append(t_min)
            if len(frames) >= 5:
                verdict = steady_state(spec.wavelengths_nm, np.asarray(times),
                                       np.asarray(frames), dark_pl,
                                       excitation_nm=spec.excitation_nm)
                if verdict.steady and t_min >= tau:
                    steady_since = verdict.since_min
                    break
            if t_min >= settle_min:
                break
        self._stamp(events, started_h, f"settled after {times[-1]:.1f} min "
                    f"({len(frames)} frames; steady since {steady_since:.1f} min)")
        # 5) acquire
        sample = self._frame("ABS", shutter_open=True, integration_ms=self.abs_integration_ms)
        pl = self._frame("EXC", shutter_open=True, integration_ms=self.pl_integration_ms)
        dye = self._frame("EXC", shutter_open=True, cell="DYE",
                          integration_ms=self.pl_integration_ms)
        self._frame("OFF", shutter_open=False, integration_ms=self.pl_integration_ms)
        self._check(bookmark)
        # 6) reagents off (the tanks keep the product until the next flush); each pump's
        # delivery is checked once more now that its run is complete
        for role in (*REAGENT_ROLES, "bleed", "solvent"):
            mon.stop(role)
        spent = self._book_reagents()
        self._tank_conditions = c.as_dict()
        self._check(bookmark)
        finished_h = self.lab_clock_h
        g = self.devices.geometry
        in_ml = spent.get(self.devices.devices[rig.pumps["halide_cl"].name].reagent, 0.0) \
            + spent.get(self.devices.devices[rig.pumps["halide_i"].name].reagent, 0.0)
        spectra = Spectra(
            wavelengths_nm=spec.wavelengths_nm.copy(), dark_abs_counts=dark_abs,
            blank_counts=blank, sample_counts=sample, dark_pl_counts=dark_pl, pl_counts=pl,
            dye_pl_counts=dye, abs_integration_ms=self.abs_integration_ms,
            pl_integration_ms=self.pl_integration_ms, saturation_counts=spec.saturation_counts,
            excitation_nm=spec.excitation_nm, path_length_cm=spec.path_length_cm)
        return Measurement(
            conditions=c.as_dict(), spectra=spectra, qy_reference=self.qy_reference,
            started_lab_h=started_h, finished_lab_h=finished_h, reagent_ml=spent,
            # In fed as InP equivalent (upper bound: conversion is not measured inline)
            product_mg=in_ml * g.in_conc_m * INP_MOLAR_MASS_G_MOL,
            trace=SpectralTrace(times_min=np.asarray(times), pl_counts=np.asarray(frames)),
            device_log=(*events, *self.rig.log.lines(bookmark)),
            metadata={"executor": self.name, "run_index": float(self._run_index),
                      "time_scale": self.time_scale, "steady_since_min": steady_since,
                      "n_core_tanks": float(g.n_core_tanks),
                      "n_shell_tanks": float(g.n_shell_tanks)})

    # ------------------------------------------------------------------ protocol
    def state_dict(self) -> dict[str, Any]:
        """Lab clock, reagent totals, run counter, what is in the tanks."""
        return {"executor": self.name, "lab_clock_h": self.lab_clock_h,
                "reagent_ml": dict(self._reagents), "run_index": self._run_index,
                "tank_conditions": self._tank_conditions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the lab clock continues from it)."""
        self._clock_offset_h = float(state["lab_clock_h"])
        self._t0 = time.monotonic()
        self._reagents = {k: float(v) for k, v in state.get("reagent_ml", {}).items()}
        self._run_index = int(state.get("run_index", 0))
        tc = state.get("tank_conditions")
        self._tank_conditions = None if tc is None else {k: float(v) for k, v in tc.items()}

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
