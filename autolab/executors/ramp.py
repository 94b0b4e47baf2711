"""Dynamic experiments on a rig: a trajectory run by the one procedure, spectra streamed throughout.

A steady-state experiment discards everything before the outlet is steady. A dynamic one
(issue 10, docs/dynamic.md) ramps the conditions along a
:class:`~autolab.dynamic.trajectory.Trajectory` and keeps the spectrometer reading all the way
through; the campaign maps every frame to the conditions that made it through the cascade's RTD.

:func:`run_trajectory` is written against the same :class:`~autolab.executors.procedure.RigSession`
as the steady procedure and uses its building blocks, so both rigs run it unchanged:

1. :func:`~autolab.dynamic.trajectory.check_trajectory` refuses, before anything moves, a ramp
   faster than the campaign's ramp limits or the heaters' own rates, and every point of the
   trajectory goes through the rig's envelope (``RigSession.setpoints``);
2. unless the rig is already feeding the first point with its blocks there (the end of the
   previous trajectory), the steady procedure runs at the first point (flush or not, heat,
   settle adaptively, acquire), so the tanks hold its steady state (``held_before``); its reading
   is the trajectory's first, steady frame set;
3. the setpoints then move along the trajectory in steps of ``frame_interval_min`` (each step
   commands the trajectory's value at the step's middle, so the stepwise command follows the
   linear ramp to second order), pump rates through the delivery monitor (each rate change
   checks what the pump delivered), heaters through the rig (the supervisor's heartbeat); every
   wait is the rig clock's checking wait (trips, delivery faults);
4. after each step one frame set is taken (absorbance and emission, against the run's dark,
   blank and dye frames) and the *realized* conditions are logged: the heaters' process values
   (a block lagging its setpoint shifts the mapped temperature by its lag) and the commanded
   pump rates (the monitor checks their delivery);
5. at the end the feeds keep running at the last point, so the next trajectory continues from
   it without a settle; any later steady experiment flushes or washes the tanks as usual.

A trip or a device fault mid-ramp ends in the rig's safe state as in a steady experiment, and
the exception carries the frames streamed so far (:func:`partial_of`), so the campaign journals
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from autolab.dynamic import CascadeGeometry, RampLimits, RateLimit, Trajectory, check_trajectory
from autolab.exceptions import ConfigError, DeviceFault, HardwareError, SafetyTrip
from autolab.executors.procedure import (
    Procedure,
    RigSession,
    TankState,
    Waits,
    check_before_run,
    tank_times_min,
)
from autolab.records import Conditions, Spectra

if TYPE_CHECKING:
    from autolab.executors.cstr import CSTRExecutor
    from autolab.executors.simulated import SimulatedExecutor

FloatArray = NDArray[np.float64]

#: Attribute of an exception raised mid-trajectory that holds the partial measurement.
PARTIAL_ATTR = "partial"
#: Relative pump-rate change below which a running pump is left alone (no restart).
RATE_TOLERANCE = 1e-6
#: Relative pump-rate difference under which the rig counts as feeding a point already.
AT_TOLERANCE = 1e-3
#: Shortest and longest frame interval a trajectory may ask for, lab min.
FRAME_INTERVAL_RANGE_MIN = (0.05, 120.0)


@dataclass(frozen=True, eq=False)
class DynamicMeasurement:
    """What a trajectory streamed: frames, their times, the realized conditions.

    Attributes:
        trajectory: The commanded trajectory.
        realized: The conditions as realized (heater process values, commanded pump rates) at
            each frame time, as a trajectory from the same start (map the frames on this).
        times_min: Frame times since the trajectory started, ``(T,)``, lab min (the first is 0:
            the reading at the first point).
        frames: One raw frame set per time (dark, blank and dye frames shared).
        started_lab_h: Executor lab clock when the trajectory started (after any settle), h.
        finished_lab_h: Executor lab clock at the last frame, h.
        settled: A steady-state settle at the first point ran before the trajectory.
        settle_waits: Its waits (None when the rig continued from the previous trajectory).
        complete: False for the partial measurement of a trajectory a fault ended.
        reagent_ml: Reagents spent (settle included), mL by reagent.
        device_log: Procedure log lines (and the serial rig's exchanges).
        metadata: Numbers for the tracker (frames, waits, duration).
    """

    trajectory: Trajectory
    realized: Trajectory
    times_min: FloatArray
    frames: tuple[Spectra, ...]
    started_lab_h: float
    finished_lab_h: float
    settled: bool
    settle_waits: Waits | None = None
    complete: bool = True
    reagent_ml: dict[str, float] = field(default_factory=dict)
    device_log: tuple[str, ...] = ()
    metadata: dict[str, float] = field(default_factory=dict)

    @property
    def lab_hours(self) -> float:
        """Lab time of the trajectory itself (from its start to the last frame), h."""
        return self.finished_lab_h - self.started_lab_h

    def stacked(self) -> dict[str, FloatArray]:
        """The frames as arrays for the analyzer's batch path and for archiving.

        ``pl_counts`` and ``sample_counts`` are ``(T, P)``; the shared frames ``(P,)``.
        """
        if not self.frames:
            raise ConfigError("DynamicMeasurement: no frames were streamed")
        f0 = self.frames[0]
        return {"wavelengths_nm": f0.wavelengths_nm,
                "pl_counts": np.array([f.pl_counts for f in self.frames]),
                "sample_counts": np.array([f.sample_counts for f in self.frames]),
                "dark_pl_counts": f0.dark_pl_counts, "dye_pl_counts": f0.dye_pl_counts,
                "blank_counts": f0.blank_counts, "dark_abs_counts": f0.dark_abs_counts,
                "times_min": np.asarray(self.times_min, dtype=np.float64)}


def partial_of(err: BaseException) -> DynamicMeasurement | None:
    """The frames a trajectory streamed before ``err`` ended it (None if it carries none)."""
    partial = getattr(err, PARTIAL_ATTR, None)
    return partial if isinstance(partial, DynamicMeasurement) else None


def _attach(err: BaseException, partial: DynamicMeasurement) -> None:
    if partial_of(err) is None:
        setattr(err, PARTIAL_ATTR, partial)


def heater_rate_caps(rig: RigSession) -> dict[str, RateLimit]:
    """The heaters' own heating rates as ramp limits (cooling is bounded by the campaign's).

    A heater that states its rate (``ramp_c_per_min``) caps every temperature channel: no
    trajectory may ask a block for more than it can do, whatever the campaign file says.
    """
    rates = [float(getattr(h, "ramp_c_per_min", 0.0) or 0.0) for h in rig.heaters.values()]
    slowest = min((r for r in rates if r > 0), default=math.inf)
    if not math.isfinite(slowest):
        return {}
    cap = RateLimit(slowest, slowest, source="heater block")
    return {"t_core_c": cap, "t_shell_c": cap, "t_tank_c": cap}


def cascade_geometry(rig: RigSession, conditions: Conditions) -> CascadeGeometry:
    """The cascade's tanks as the mapping needs them, from the rig's own flow plan.

    Each tank's share of its stage time comes from the pump rates the rig would set
    (a split sulfur feed makes the tanks before its last port slower).
    """
    sp = rig.setpoints(conditions)
    g = rig.geometry
    times = tank_times_min(sp.flows, g)
    inject = sp.flows.inject_tanks or (g.n_core_tanks + 1,)
    n_core = inject[0] - 1
    return CascadeGeometry(n_core, len(times) - n_core,
                           tuple((times[:n_core] / conditions.tau_core_min).tolist()),
                           tuple((times[n_core:] / conditions.tau_shell_min).tolist()))


def check_plan(procedure: Procedure, trajectory: Trajectory, limits: RampLimits,
               frame_interval_min: float) -> None:
    """Refuse a trajectory before anything moves: frame interval, ramp rates, every point.

    Raises:
        ConfigError: A frame interval outside :data:`FRAME_INTERVAL_RANGE_MIN`.
        ConditionsError: A rate the devices cannot follow or a point the rig cannot realize.
    """
    lo, hi = FRAME_INTERVAL_RANGE_MIN
    if not (isinstance(frame_interval_min, int | float) and lo <= frame_interval_min <= hi):
        raise ConfigError(f"frame_interval_min: expected a time in [{lo:g}, {hi:g}] lab min, "
                          f"got {frame_interval_min!r}")
    check_trajectory(trajectory, limits.tightened(heater_rate_caps(procedure.rig)))
    for p in trajectory.points:
        procedure.plan(p)


def feeds(procedure: Procedure, c: Conditions, *, blocks: bool = True) -> bool:
    """Whether the procedure's rig feeds ``c`` now, with every block within tolerance of it.

    So a trajectory from ``c`` continues the stream without a settle. ``blocks=False``: the
    pumps alone (the stream runs on; whether the blocks are there is the trajectory's own
    settle decision).
    """
    rig, mon = procedure.rig, procedure.rig.monitor
    sp = rig.setpoints(c)
    for role, rate in sp.flows.rates_ml_min.items():
        if rate > 0 and not (mon.is_running(role) and math.isclose(
                mon.commanded_rate_ml_min(role), rate, rel_tol=AT_TOLERANCE)):
            return False
    if not blocks:
        return True
    tol = procedure.settings.temperature_tolerance_c
    return all(abs(rig.heaters[r].temperature_c() - t) <= tol for r, t in sp.heater_c.items())


def run_trajectory(procedure: Procedure, tank: TankState, trajectory: Trajectory,
                   limits: RampLimits, *, frame_interval_min: float, run_index: int,
                   settle: bool | None = None) -> DynamicMeasurement:
    """Run ``trajectory`` on the procedure's rig while the spectrometer streams.

    Args:
        procedure: The one procedure on this rig (its session, settings and steady run).
        tank: What the tanks hold (updated: the last point's product when done).
        trajectory: What to run.
        limits: The campaign's ramp limits (the heaters' own rates are added).
        frame_interval_min: Lab minutes between frame sets (and setpoint updates).
        run_index: Index of this run (the steady settle's blank bookkeeping).
        settle: True: settle at the first point whatever the rig does now; False: never
            (the caller knows the tanks hold it); None: unless the rig already feeds the
            first point with its blocks there.

    Returns:
        The frames, their times and the realized trajectory.

    Raises:
        ConditionsError: Refused before anything moved.
        SafetyTrip / DeviceFault / HardwareError / ExperimentFailed: From the rig's checks;
            the frames streamed so far are attached (:func:`partial_of`).
    """
    check_plan(procedure, trajectory, limits, frame_interval_min)
    return _Ramp(procedure, tank, trajectory, float(frame_interval_min)).execute(run_index,
                                                                                   settle)


@dataclass
class _Ramp:
    """One trajectory on one rig (the steps share the clock origin, the frames and the log)."""

    proc: Procedure
    tank: TankState
    traj: Trajectory
    interval: float
    events: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    frames: list[Spectra] = field(default_factory=list)
    realized: list[Conditions] = field(default_factory=list)
    t0: float = math.nan
    start_h: float = math.nan
    settle_waits: Waits | None = None
    shared: dict[str, FloatArray] = field(default_factory=dict)
    heater_sp: dict[str, float] = field(default_factory=dict)

    @property
    def rig(self) -> RigSession:
        return self.proc.rig

    def stamp(self, msg: str) -> None:
        now = self.rig.clock.now_min()
        self.events.append(f"[t={now - (self.t0 if math.isfinite(self.t0) else now):7.1f} min] "
                           f"{msg}")

    # ------------------------------------------------------------------ run
    def execute(self, run_index: int, settle: bool | None) -> DynamicMeasurement:
        start = self.traj.points[0]
        self.start_h = self.rig.clock.now_min() / 60.0
        try:
            if settle or (settle is None and not self.at(start)):
                self.settle(start, run_index)
            else:
                self.stamp("the rig already feeds the first point: no settle")
            self.t0 = self.rig.clock.now_min()
            self.shared_frames()
            self.read(0.0)
            self.ramp()
        except BaseException as err:
            if self.frames:
                _attach(err, self.result(complete=False))
            raise
        self.tank.conditions, self.tank.flush_reason = self.traj.points[-1].as_dict(), ""
        self.stamp(f"trajectory done: {len(self.frames)} frame sets over "
                   f"{self.traj.duration_min:.1f} min; feeds left on at the last point")
        return self.result(complete=True)

    def at(self, c: Conditions) -> bool:
        """Whether the rig feeds ``c`` now with every block within tolerance of it."""
        return feeds(self.proc, c)

    def settle(self, c: Conditions, run_index: int) -> None:
        """The steady procedure at the first point, then its feeds on again.

        (The steady procedure stops the feeds after its reading.)
        """
        result = self.proc.run(c, self.tank, run_index)
        self.settle_waits = result.waits
        self.events.extend(result.events)
        self.command(c, restart=True)
        self.rig.phase("feed", c)
        self.stamp("settled at the first point; feeds on again for the trajectory")

    def ramp(self) -> None:
        duration = self.traj.duration_min
        t = 0.0
        while t < duration - 1e-9:
            h = min(self.interval, duration - t)
            self.command(self.traj.at(t + h / 2))
            self.rig.clock.wait_min(h)
            t = self.rig.clock.now_min() - self.t0
            self.read(min(t, duration))
        self.command(self.traj.points[-1])  # hold exactly the last point from here on
        self.rig.check()

    # ------------------------------------------------------------------ devices
    def command(self, c: Conditions, *, restart: bool = False) -> None:
        """Setpoints of ``c``: heaters that change, pumps whose rate changes, stirring."""
        rig, mon = self.rig, self.rig.monitor
        sp = rig.setpoints(c)
        for role, t_c in sp.heater_c.items():
            if restart or self.heater_sp.get(role) != t_c:
                rig.set_heater_c(role, t_c)
                self.heater_sp[role] = t_c
        for role, rate in sp.flows.rates_ml_min.items():
            running = mon.is_running(role)
            if rate <= 0:
                if running:
                    mon.stop(role)
            elif restart or not running or not math.isclose(
                    mon.commanded_rate_ml_min(role), rate, rel_tol=RATE_TOLERANCE):
                mon.start(role, rate, infuse=role != "bleed")
        if "stir_rpm" in self.traj.varying():
            for role, st in rig.stirrers.items():
                st.set_speed_rpm(sp.stirrer_rpm.get(role, c.stir_rpm))

    def shared_frames(self) -> None:
        """Dark, blank and dye frames for the whole stream (the blank is the session's)."""
        s = self.proc.settings
        run = _frame_taker(self.rig)
        if self.tank.blank is None:  # cannot happen after a settle; a continued stream has one
            raise HardwareError("no solvent blank in this session; the trajectory needs a settle "
                                "first (settle=True)")
        self.shared = {
            "dark_abs": self.tank.blank[0], "blank": self.tank.blank[1],
            "dark_pl": run("OFF", False, "SAMPLE", s.pl_integration_ms),
            "dye": run("EXC", True, "DYE", s.pl_integration_ms)}

    def read(self, t: float) -> None:
        """One frame set and the realized conditions at trajectory time ``t``."""
        s, spec = self.proc.settings, self.rig.spectrometer
        run = _frame_taker(self.rig)
        sample = run("ABS", True, "SAMPLE", s.abs_integration_ms)
        pl = run("EXC", True, "SAMPLE", s.pl_integration_ms)
        self.realized.append(self.realize(self.traj.at(t)))
        self.times.append(t)
        self.frames.append(Spectra(
            wavelengths_nm=np.asarray(spec.wavelengths_nm, dtype=np.float64),
            dark_abs_counts=self.shared["dark_abs"], blank_counts=self.shared["blank"],
            sample_counts=sample, dark_pl_counts=self.shared["dark_pl"], pl_counts=pl,
            dye_pl_counts=self.shared["dye"], abs_integration_ms=s.abs_integration_ms,
            pl_integration_ms=s.pl_integration_ms, saturation_counts=spec.saturation_counts,
            excitation_nm=spec.excitation_nm, path_length_cm=spec.path_length_cm))

    def realize(self, c: Conditions) -> Conditions:
        """``c`` with its temperatures as the blocks hold them (process values)."""
        sp = self.rig.setpoints(c)
        off = {r: self.rig.heaters[r].temperature_c() - t for r, t in sp.heater_c.items()}
        first = c.s_inject_tank or self.rig.geometry.n_core_tanks + 1
        profile = tuple(c.t_tank_c)

        def explicit(i: int) -> bool:
            return 0 < i <= len(profile) and math.isfinite(profile[i - 1])

        def stage_offset(core: bool) -> float:
            roles = [r for r in off if _in_stage(r, first, core)]
            plain = [r for r in roles if not explicit(_tank_of(r))] or roles
            return float(np.mean([off[r] for r in plain])) if plain else 0.0

        tanks = tuple(v + off.get(f"tank{i}", stage_offset(i < first)) if math.isfinite(v) else v
                      for i, v in enumerate(profile, start=1))
        return replace(c, t_core_c=c.t_core_c + stage_offset(True),
                       t_shell_c=c.t_shell_c + stage_offset(False), t_tank_c=tanks)

    # ------------------------------------------------------------------ result
    def result(self, *, complete: bool) -> DynamicMeasurement:
        n = len(self.frames)
        times, points = self.times[:n], self.realized[:n]
        if len(times) == 1 or times[-1] <= 0:
            realized = Trajectory((0.0,), (points[0],), held_before=self.traj.held_before)
        else:
            realized = Trajectory.from_samples(times, points, held_before=self.traj.held_before)
        now_h = self.rig.clock.now_min() / 60.0
        w = self.settle_waits
        meta = {"n_frames": float(n), "frame_interval_min": self.interval,
                "trajectory_min": self.traj.duration_min, "settled": float(w is not None),
                "complete": float(complete)}
        if w is not None:
            meta.update(w.metadata())
        return DynamicMeasurement(
            trajectory=self.traj, realized=realized, times_min=np.asarray(times, dtype=np.float64),
            frames=tuple(self.frames), started_lab_h=self.t0 / 60.0 if math.isfinite(self.t0)
            else self.start_h, finished_lab_h=now_h, settled=w is not None, settle_waits=w,
            complete=complete, device_log=tuple(self.events), metadata=meta)


def _frame_taker(rig: RigSession) -> Any:
    spec = rig.spectrometer

    def take(source: str, shutter_open: bool, cell: str, integration_ms: float) -> FloatArray:
        spec.set_integration_ms(integration_ms)
        spec.configure(source=source, shutter_open=shutter_open, cell=cell)
        return np.asarray(spec.acquire(), dtype=np.float64)
    return take


def _tank_of(role: str) -> int:
    return int(role[4:]) if role.startswith("tank") and role[4:].isdigit() else 0


def _in_stage(role: str, first_shell_tank: int, core: bool) -> bool:
    """Whether a heater role heats the core (or the shell) stage."""
    if role in ("core", "shell"):
        return (role == "core") == core
    i = _tank_of(role)
    return i > 0 and (i < first_shell_tank) == core


# ---------------------------------------------------------------------- the two executors
def run_on_simulated(ex: SimulatedExecutor, trajectory: Trajectory, limits: RampLimits, *,
                     frame_interval_min: float, settle: bool | None = None
                     ) -> DynamicMeasurement:
    """:func:`run_trajectory` on the simulated rig (seeded scatter per settle, reagents booked).

    The rig's scatter (how it realizes setpoints) is drawn at each settle from ``[seed, k]`` and
    kept while later trajectories continue the stream, as a real rig's offsets would be. No
    chemistry failure is drawn for a dynamic run.
    """
    check_plan(ex.procedure, trajectory, limits, frame_interval_min)
    try:
        check_before_run(ex.session)  # a fault found between trajectories: a rig event
    except DeviceFault:  # as on the serial rig: the previous trajectory's feeds stop at once
        ex.session.monitor.stop_all()
        ex._book()
        raise
    k = ex._run_index
    ex._run_index += 1
    start = trajectory.points[0]
    ex.truths[k] = ex.twin.truth(trajectory.points[-1])
    ex.session.failure, ex.session.fail_at_min = None, math.inf
    ex.session.context = f"run {k}, trajectory from {start.as_dict()}"
    runner = _Ramp(ex.procedure, ex.tank, trajectory, float(frame_interval_min))
    if settle or (settle is None and not runner.at(start)):
        ex.scatter(start, k)
        settle = True
    try:
        result = runner.execute(k, settle)
    except BaseException as err:
        spent = ex._book()
        p = partial_of(err)
        if p is not None:
            setattr(err, PARTIAL_ATTR, replace(p, reagent_ml=spent))
        raise
    return replace(result, reagent_ml=ex._book(),
                   metadata={**result.metadata, "run_index": float(k)})


def run_on_serial(ex: CSTRExecutor, trajectory: Trajectory, limits: RampLimits, *,
                  frame_interval_min: float, settle: bool | None = None) -> DynamicMeasurement:
    """:func:`run_trajectory` on the serial rig, with the steady run's fault handling.

    A trip has already run the shutdown; a delivery fault ends the trajectory invalid (feeds
    off, the pump re-initialized, the next experiment flushes); any other error puts the rig in
    its safe state. Each carries the frames streamed so far. A fault found before the
    trajectory starts (the previous one's feeds still running) is a rig event, ended the same
    way (:meth:`CSTRExecutor.check_before_run`).
    """
    ex.check_before_run(trajectory.points[0])  # a rig event: the feeds stop at once
    ex._bookmark = bookmark = ex.rig.log.count
    ex.monitor.take_delivered()
    check_plan(ex.procedure, trajectory, limits, frame_interval_min)
    try:
        result = run_trajectory(ex.procedure, ex.tank, trajectory, limits,
                                frame_interval_min=frame_interval_min, run_index=ex._run_index,
                                settle=settle)
    except SafetyTrip:
        raise
    except DeviceFault as fault:
        ex._end_invalid(trajectory.points[-1], fault, bookmark)
        raise
    except HardwareError as err:
        if ex.supervisor.tripped:
            try:
                ex._check(bookmark)
            except SafetyTrip as trip:
                _carry(err, trip)
                raise trip from err
        ex.safe_state()
        wrapped = HardwareError(f"{err}; the rig was put in its safe state")
        _carry(err, wrapped)
        raise wrapped from err
    except BaseException:
        ex.safe_state()
        raise
    finally:  # a fault found before the next trajectory comes with the exchanges since this one
        ex._idle_since = ex.rig.log.count
    spent = ex._book_reagents()
    ex._check(bookmark)
    ex._run_index += 1
    return replace(result, reagent_ml=spent,
                   device_log=(*result.device_log, *ex.rig.log.lines(bookmark)))


def _carry(src: BaseException, dst: BaseException) -> None:
    p = partial_of(src)
    if p is not None:
        _attach(dst, p)
