"""The one experiment procedure: flush → heat → feed → settle → acquire, for every rig.

Written once against the capability protocols of :mod:`autolab.hardware.base` (pumps through the
:class:`~autolab.hardware.delivery.DeliveryMonitor`, heaters, stirrers, valves, the spectrometer)
and a :class:`Clock` whose wait checks for trips, delivery faults and (on the simulated rig)
chemistry failures while it waits. The serial rig (:class:`~autolab.executors.cstr.CSTRExecutor`:
real drivers over RS-232 or the virtual lab's ptys, wall clock × ``time_scale``) and the simulated
rig (:class:`~autolab.executors.simulated.SimulatedExecutor`: in-process devices over the same
reactor physics, a virtual clock that advances at once) run exactly this code.

Where the lab hours go, and what the procedure does about each (issue 9 §3):

* **Blank.** The solvent blank (dark and lamp-through-solvent frames) is taken whenever the flow
  cell holds solvent: the first experiment of a session, after a failed run was flushed clean
  with ``CLEAN_RESIDENCE_TIMES`` τ, and after any clean flush. It is reused in between (a flush
  of one residence time leaves a third of the old product in the cell, which a blank must not
  see), but never for longer than ``blank_max_age_h`` lab hours: a lamp and a detector drift,
  so an older blank makes the next experiment flush clean and take a new one, whatever the
  flush mode. Under ``flush: auto`` that is the one flush a run of good experiments gets.
* **Flush.** ``flush: always`` flushes the previous product with solvent before every
  experiment (``flush_residence_times`` × the previous τ). ``flush: auto`` skips it when the new
  feed can simply wash the old product out: the tanks hold the product of a completed run and a
  solvent blank of this session is at hand. The old product then leaves through the outlet
  valve to waste while the new feed displaces it, and the settling floor below keeps it out of
  the reading. An invalid run (a pump misdelivered), or no blank yet, still gets the flush (a
  failed run was already flushed clean); the log says why.
* **Heat.** The heaters ramp; the feeds start as soon as every block is within
  ``feed_window_c`` of its setpoint (outlet to waste), so the old contents wash out while the
  blocks finish their ramp instead of the pumps waiting idle. ``feed_window_c = 0`` is the old
  behaviour (pumps idle until the blocks are at their setpoints).
* **Settle.** Counted from the moment the blocks are at their setpoints with the feeds on.
  ``settling: fixed`` waits ``settle_residence_times`` × τ. ``settling: adaptive`` takes
  emission frames and stops once :func:`autolab.analysis.steady_state` calls the outlet steady,
  never before the RTD floor (:func:`rtd_floor_min`: the time the cascade of the real per-tank
  residence times needs to carry 95 % of a step to the outlet; ~1.7 τ for 3 + 4 equal tanks),
  with ``settle_residence_times`` × τ as the cap.

Every experiment reports its waits (:class:`Waits`: ``wait_flush_min``, ``wait_heat_min``,
``wait_settle_min``, and why settling ended) in the measurement's metadata and device log, with
the share of the previous product still in the flow cell at the reading (``carryover_share``:
the RTD washout of the flush and of the new feed, :func:`old_product_share`). Where the previous
product's reading is known (:attr:`TankState.reading`, kept by :func:`remember_reading`), it
rides along in the metadata, and the analyzer adds the carry-over to the stated sd of each
feature (:mod:`autolab.analysis.carryover`, the one place of that formula).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from autolab.analysis import analyze, steady_state
from autolab.analysis.carryover import OldProduct, reading_of
from autolab.exceptions import DeviceFault, HardwareError
from autolab.hardware.base import Spectrometer, Stirrer, TemperatureController, Valve
from autolab.hardware.delivery import DeliveryMonitor
from autolab.hardware.envelope import RigSetpoints
from autolab.hardware.fluidics import REAGENT_ROLES, FlowSetpoints, Geometry, flow_setpoints
from autolab.hardware.safety import HEATER_SETPOINT
from autolab.records import Conditions, Measurement, Spectra, SpectralTrace
from autolab.twin.cascade import erlang_cdf, erlang_pdf, washout

FloatArray = NDArray[np.float64]
SettlingMode = Literal["adaptive", "fixed"]
FlushMode = Literal["auto", "always"]

#: Share of a step change the outlet must show before any reading counts (the RTD floor).
RTD_FLOOR_FRACTION = 0.95
#: Solvent flush that leaves the flow cell clean enough for a blank, in residence times.
CLEAN_RESIDENCE_TIMES = 3.0
#: Stirring rate of conditions that do not set one, rpm.
DEFAULT_STIR_RPM = 600.0
#: Grid points of the convolved residence-time density (unequal tanks).
_RTD_GRID = 8192
#: Emission frames the steady-state verdict looks at (``steady_state``'s window).
STEADY_WINDOW = 5
#: From the verdict's first window on, frames come this many times per window spacing, and the
#: verdict is asked at each (on frames one spacing apart: the same window, asked sooner).
VERDICT_LOOKS = 4

#: Lab minutes a look at the heating blocks may take beyond its poll before the host counts
#: as away (:meth:`_Run.host_away_min`); two controllers' reads take well under a lab second
#: on a rig, and under half a lab minute in the virtual lab at 2400 lab s per wall s.
HOST_GRACE_MIN = 1.0


class Clock(Protocol):
    """The lab clock of one rig, and the one way the procedure waits on it."""

    def now_min(self) -> float:
        """Lab minutes since the rig's executor started."""
        ...

    def wait_min(self, minutes: float) -> None:
        """Let ``minutes`` of lab time pass, checking the rig while waiting.

        A virtual clock advances at once; a wall clock sleeps ``minutes / time_scale``.

        Raises:
            SafetyTrip: The supervisor tripped (the shutdown ran).
            DeviceFault: A pump misdelivered.
            ExperimentFailed: The chemistry failed (simulated rig: clogging, bubbles ...).
        """
        ...


class RigSession(Protocol):
    """What the procedure drives: one rig's devices, its clock and its checks."""

    @property
    def geometry(self) -> Geometry:
        """Tanks and stocks."""
        ...

    @property
    def clock(self) -> Clock:
        """The lab clock (its waits check the rig)."""
        ...

    @property
    def monitor(self) -> DeliveryMonitor:
        """Starts and stops every pump (and checks what they delivered)."""
        ...

    @property
    def heaters(self) -> Mapping[str, TemperatureController]:
        """Temperature controllers by role (``core``/``shell`` or ``tank<i>``)."""
        ...

    @property
    def stirrers(self) -> Mapping[str, Stirrer]:
        """Stirrers by role."""
        ...

    @property
    def solvent_valve(self) -> Valve:
        """Solvent to the core inlet (1) or to the junction make-up (2)."""
        ...

    @property
    def outlet_valve(self) -> Valve:
        """Outlet to the collector (1) or to waste (2)."""
        ...

    @property
    def spectrometer(self) -> Spectrometer:
        """The inline optics."""
        ...

    @property
    def sulfur_valve(self) -> Valve | None:
        """The valve that chooses the shell feed's injection tank (None: fixed plumbing)."""
        ...

    def setpoints(self, conditions: Conditions) -> RigSetpoints:
        """Every device's setpoint for ``conditions`` on this rig, checked against its envelope.

        Raises:
            ConditionsError: What the rig cannot realize, naming the condition.
        """
        ...

    def set_heater_c(self, role: str, setpoint_c: float) -> None:
        """Write a heater's setpoint (the serial rig also makes it the supervisor's heartbeat)."""
        ...

    def check(self) -> None:
        """Raise what :meth:`Clock.wait_min` raises, without waiting."""
        ...

    def phase(self, name: str, conditions: Conditions) -> None:
        """The procedure enters a phase (``feed``: reagents flow; ``settled``: settling ended).

        The simulated rig arms and raises its chemistry failures here; the serial rig has
        nothing to do.
        """
        ...


@dataclass(frozen=True)
class ProcedureSettings:
    """How the procedure runs (the executors' settings; see the module docstring).

    Attributes:
        settle_residence_times: Fixed settling wait, and the adaptive cap, in residence times.
        flush_residence_times: Solvent flush, in residence times of the previous conditions.
        trace_frames: Emission frames over the fixed wait (adaptive: twice as dense).
        stir_rpm: Stirrer speed when the conditions do not set one, rpm.
        abs_integration_ms: Integration time of the absorbance frames, ms.
        pl_integration_ms: Integration time of the emission frames, ms.
        temperature_tolerance_c: How close the blocks must be to their setpoints, °C.
        settling: ``adaptive`` (steady-state verdict, RTD floor, cap) or ``fixed``.
        flush: ``auto`` (skip when the new feed can wash the old product out) or ``always``.
        feed_window_c: Feeds start once every block is this close to its setpoint, °C.
        heat_poll_min: How often the blocks are read while heating, lab min.
        heat_timeout_min: Extra lab minutes over the ramp time before heating is a fault.
        acquire_min: Lab minutes the acquisition itself takes (the serial rig's frames take
            their real time, so 0 there).
        blank_max_age_h: Oldest solvent blank an experiment may use, lab h; an older one makes
            the experiment flush clean first and take a new blank.
    """

    settle_residence_times: float = 3.0
    flush_residence_times: float = 1.0
    trace_frames: int = 12
    stir_rpm: float = 600.0
    abs_integration_ms: float = 20.0
    pl_integration_ms: float = 200.0
    temperature_tolerance_c: float = 2.0
    settling: SettlingMode = "adaptive"
    flush: FlushMode = "auto"
    feed_window_c: float = 40.0
    heat_poll_min: float = 0.5
    heat_timeout_min: float = 30.0
    acquire_min: float = 0.0
    blank_max_age_h: float = 24.0


#: The defaults, in one place: the executors' signatures and the campaign file's settings
#: models read them from here.
DEFAULT_PROCEDURE = ProcedureSettings()


@dataclass(frozen=True)
class Waits:
    """Where one experiment's lab time went, and why settling ended.

    Attributes:
        flush_min: Solvent flush (0 when skipped).
        heat_min: From the heater setpoints to the blocks at them.
        heat_idle_min: The part of ``heat_min`` with the pumps idle (before the feed window).
        settle_min: From blocks-at-setpoint with feeds on to the reading.
        settle_floor_min: The RTD floor of these conditions.
        settle_cap_min: The longest settling wait (``settle_residence_times`` × τ).
        settle_reason: ``steady`` (the analyzer's verdict after the floor), ``cap`` (never
            steady before the cap) or ``fixed`` (fixed wait).
        steady_since_min: Start of the steady stretch of frames (NaN if none).
        flush_note: Why the flush ran or was skipped.
        carryover_share: Share of the previous product in the flow cell at the reading (0: the
            tanks held solvent).
    """

    flush_min: float
    heat_min: float
    heat_idle_min: float
    settle_min: float
    settle_floor_min: float
    settle_cap_min: float
    settle_reason: str
    steady_since_min: float
    flush_note: str
    carryover_share: float = 0.0

    def metadata(self) -> dict[str, float]:
        """The numeric waits for :attr:`Measurement.metadata` (the tracker logs them)."""
        return {"wait_flush_min": self.flush_min, "wait_heat_min": self.heat_min,
                "wait_heat_idle_min": self.heat_idle_min, "wait_settle_min": self.settle_min,
                "settle_floor_min": self.settle_floor_min,
                "settle_cap_min": self.settle_cap_min,
                "settle_steady": float(self.settle_reason == "steady"),
                "steady_since_min": self.steady_since_min,
                "carryover_share": self.carryover_share}


@dataclass
class TankState:
    """What the tanks and the flow cell hold between experiments (journaled for resume).

    Attributes:
        conditions: Conditions of the product in the tanks (None: solvent or unknown).
        flush_reason: Non-empty when the next experiment must flush (an invalid run).
        blank: Dark and solvent blank absorbance frames of this session, reused when the flush
            is skipped (the flow cell then holds product, not solvent).
        blank_run: Run index the blank was taken in.
        blank_min: Lab minute the blank was taken at (NaN: unknown, an older journal).
        reading: The reading of the product in the tanks (:func:`remember_reading`), valid only
            while ``reading_of`` equals ``conditions`` (an invalid run, a dynamic trajectory or a
            flush leaves product whose reading nobody took).
        reading_of: The conditions ``reading`` was taken at.
    """

    conditions: dict[str, Any] | None = None
    flush_reason: str = ""
    blank: tuple[FloatArray, FloatArray] | None = None
    blank_run: int = -1
    blank_min: float = math.nan
    reading: dict[str, float] | None = None
    reading_of: dict[str, Any] | None = None

    def old_reading(self) -> dict[str, float] | None:
        """The reading of what the tanks hold now, or None if nobody read it."""
        if self.conditions is None or self.reading is None or self.reading_of != self.conditions:
            return None
        return dict(self.reading)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible (the blank frames as lists)."""
        return {"conditions": self.conditions, "flush_reason": self.flush_reason,
                "blank": None if self.blank is None else [b.tolist() for b in self.blank],
                "blank_run": self.blank_run, "blank_min": self.blank_min,
                "reading": self.reading, "reading_of": self.reading_of}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TankState:
        """Inverse of :meth:`to_dict` (None or an old journal: nothing known)."""
        if not d:
            return cls()
        blank = d.get("blank")
        return cls(conditions=d.get("conditions"), flush_reason=str(d.get("flush_reason", "")),
                   blank=None if blank is None else (np.asarray(blank[0], dtype=np.float64),
                                                     np.asarray(blank[1], dtype=np.float64)),
                   blank_run=int(d.get("blank_run", -1)),
                   blank_min=float(d.get("blank_min", math.nan)),
                   reading=_floats(d.get("reading")), reading_of=d.get("reading_of"))


def _floats(d: Mapping[str, Any] | None) -> dict[str, float] | None:
    """A journaled reading (JSON writes NaN as null) as floats, NaN where unknown."""
    if d is None:
        return None
    return {k: math.nan if v is None else float(v) for k, v in d.items()}


def remember_reading(tank: TankState, m: Measurement) -> None:
    """Keep what the tanks now hold, as read, for the next experiment's carry-over.

    Both executors call it on each measurement the procedure returned (one analysis, a few ms).
    """
    tank.reading, tank.reading_of = reading_of(analyze(m), m), dict(m.conditions)


@dataclass(frozen=True)
class ProcedureResult:
    """What one run of the procedure measured (the executor turns it into a Measurement).

    Attributes:
        spectra: The raw frames of the reading.
        trace: The emission frames taken while settling (times from settling start).
        waits: Where the time went.
        feed_min: How long the feeds ran, lab min.
        events: Procedure log lines (timestamped from the start of the experiment).
        old_reading: The previous product's reading, if it is still in the flow cell and was
            read (see :attr:`Waits.carryover_share`).
    """

    spectra: Spectra
    trace: SpectralTrace
    waits: Waits
    feed_min: float
    events: tuple[str, ...]
    old_reading: Mapping[str, float] | None = None

    def metadata(self) -> dict[str, str | float]:
        """The waits and why settling ended, for :attr:`Measurement.metadata` (both rigs).

        One place merges them, so the serial and the simulated rig report the same keys.
        """
        old = ({} if self.old_reading is None else
               OldProduct(self.waits.carryover_share, self.old_reading).metadata())
        return {"settle_reason": self.waits.settle_reason, **self.waits.metadata(), **old}


def rtd_floor_min(tank_min: Sequence[float] | FloatArray,
                  fraction: float = RTD_FLOOR_FRACTION) -> float:
    """Time for a tanks-in-series cascade to carry ``fraction`` of an inlet step to the outlet.

    The outlet's step response is the CDF of the sum of the tanks' exponential residence times.
    Equal tanks give the Erlang CDF (5 equal tanks: 1.83 τ for 95 %), solved by bisection.
    Unequal ones (a core and a shell stage at different flows) are grouped into Erlang stages
    whose densities are convolved on a fine grid (one pass; a few ms).

    Args:
        tank_min: Per-tank mean residence times, min (flow order; order does not matter).
        fraction: Share of the step, in (0, 1).

    Raises:
        ValueError: No tanks, a non-positive tank time, or a fraction outside (0, 1).
    """
    times = np.asarray(tank_min, dtype=np.float64)
    if times.size == 0 or not np.all(times > 0) or not 0.0 < fraction < 1.0:
        raise ValueError(f"rtd_floor_min: expected positive tank times and 0 < fraction < 1, "
                         f"got {times.tolist()} and {fraction}")
    return _rtd_floor(tuple(times.tolist()), fraction)


@functools.lru_cache(maxsize=256)
def _rtd_floor(times: tuple[float, ...], fraction: float) -> float:
    values, counts = np.unique(np.round(np.asarray(times), 9), return_counts=True)
    if values.size == 1:
        n, ti = int(counts[0]), float(values[0])
        lo, hi = 0.0, n * ti * 10.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if erlang_cdf(np.asarray(mid), n * ti, n) < fraction else (lo, mid)
        return hi
    grid = np.linspace(0.0, 10.0 * float(np.sum(times)), _RTD_GRID)
    dt = float(grid[1])
    density = np.zeros(0)
    for ti, n in zip(values.tolist(), counts.tolist(), strict=True):
        stage = erlang_pdf(grid, n * ti, n) * dt
        density = stage if density.size == 0 else np.convolve(density, stage)[:_RTD_GRID]
    cdf = np.cumsum(density)
    return float(np.interp(fraction, cdf, grid))


def tank_times_min(flows: FlowSetpoints, g: Geometry) -> FloatArray:
    """Per-tank mean residence times the pump rates set, flow order, min.

    Core tanks see the core flow; from the first injection on, each injection adds its share of
    the shell feed, so a split feed gives the tanks between its ports longer times.
    """
    q_feed = flows.rates_ml_min.get("zinc", 0.0) + flows.rates_ml_min.get("sulfur", 0.0)
    q_base = flows.shell_ml_min - q_feed
    inject = flows.inject_tanks or (g.n_core_tanks + 1,)
    out = []
    for i in range(1, g.n_core_tanks + g.n_shell_tanks + 1):
        if i < inject[0]:
            out.append(g.tank_volume_ml / flows.core_ml_min)
        else:
            reached = sum(1 for t in inject if t <= i)
            out.append(g.tank_volume_ml / (q_base + q_feed * reached / len(inject)))
    return np.asarray(out, dtype=np.float64)


def old_product_share(phases: Sequence[tuple[Sequence[float] | FloatArray, float]]) -> float:
    """Share of the previous product in the fluid leaving the last tank after ``phases``.

    The tanks start full of the previous product; in each phase a fluid free of it (solvent, or
    the new feed) flows through the cascade with the given per-tank residence times, carried
    exactly by the twin's :func:`~autolab.twin.cascade.washout` (the same tracer equations).
    Phases without flow (pumps idle while the blocks heat) change nothing and are left out.
    One phase of a cascade is the survival ``1 - F(t)`` of :func:`rtd_floor_min`'s step
    response (5 % at the RTD floor).

    Args:
        phases: ``(per-tank residence times in flow order, min; duration, min)`` in time order.

    Returns:
        The old product's share at the outlet (the flow cell), 0-1.

    Raises:
        ValueError: A residence time is not positive and finite, a duration is negative, or the
            phases disagree on the number of tanks.
    """
    x: FloatArray | None = None
    for i, (tank_min, duration_min) in enumerate(phases):
        tau = np.asarray(tank_min, dtype=np.float64)
        if tau.ndim != 1 or tau.size == 0 or not np.all(np.isfinite(tau) & (tau > 0)):
            raise ValueError(f"phases[{i}]: expected positive finite residence times per tank, "
                             f"got {tau.tolist()}")
        if not duration_min >= 0:
            raise ValueError(f"phases[{i}]: expected a duration >= 0 min, got {duration_min}")
        if x is None:
            x = np.ones(tau.size)
        if tau.size != x.size:
            raise ValueError(f"phases[{i}]: {tau.size} tanks, expected {x.size} as before")
        x = np.clip(washout(x, tau, duration_min, 0.0), 0.0, 1.0)
    return 0.0 if x is None else float(x[-1])


def check_before_run(rig: RigSession) -> None:
    """The rig's checks before an experiment moves anything (both executors call it first).

    A device fault found here happened between experiments (a valve turned, a heater straying,
    a stirrer stopped): no reagent of the next experiment was fed, so it is marked
    ``before_feed`` and the campaign journals it as a rig event, not as an experiment.

    Raises:
        DeviceFault: With ``before_feed`` set.
        SafetyTrip: The supervisor tripped (the shutdown ran).
    """
    try:
        rig.check()
    except DeviceFault as fault:
        fault.before_feed = True
        raise


class Procedure:
    """Runs one experiment on a rig session (see the module docstring).

    Args:
        rig: The rig session.
        settings: How to run.
    """

    def __init__(self, rig: RigSession, settings: ProcedureSettings) -> None:
        self.rig = rig
        self.settings = settings

    def plan(self, c: Conditions) -> RigSetpoints:
        """Every device's setpoint for ``c``, refused before anything moves.

        Raises:
            ConditionsError: A profile, injection or setpoint the rig cannot realize.
        """
        return self.rig.setpoints(c)

    # ------------------------------------------------------------------ run
    def run(self, c: Conditions, tank: TankState, run_index: int) -> ProcedureResult:
        """Flush → heat → feed → settle → acquire; the tank state is updated on success.

        Raises:
            ConditionsError: Refused before anything moved.
            ExperimentFailed / DeviceFault / SafetyTrip / HardwareError: from the rig's checks.
        """
        run = _Run(self, c, self.plan(c))
        return run.execute(tank, run_index)

    def clean_after_failure(self, c: Conditions, tank: TankState) -> float:
        """After a chemistry failure (or in a shutdown): feeds off, the cascade flushed clean.

        :data:`CLEAN_RESIDENCE_TIMES` residence times of solvent: deposits and gas slugs out,
        and the flow cell clean enough that the next blank sees solvent.

        Returns:
            The flush time, lab min.
        """
        rig, mon = self.rig, self.rig.monitor
        for role in (*REAGENT_ROLES, "bleed"):
            mon.stop(role)
        rig.outlet_valve.move(2)
        rig.solvent_valve.move(1)
        t_clean = CLEAN_RESIDENCE_TIMES * (c.tau_core_min + c.tau_shell_min)
        mon.start("solvent", flow_setpoints(c, rig.geometry).shell_ml_min, infuse=True)
        rig.clock.wait_min(t_clean)
        mon.stop("solvent")
        tank.conditions, tank.flush_reason = None, ""
        return t_clean


@dataclass
class _Run:
    """One execution of the procedure (the steps share the clock origin and the log)."""

    proc: Procedure
    c: Conditions
    sp: RigSetpoints
    events: list[str] = field(default_factory=list)
    t0: float = 0.0
    feed_on_min: float = math.nan
    feeding: bool = False
    #: Flow phases since the tanks last held only the previous product (for its washout).
    washout: list[tuple[FloatArray, float]] = field(default_factory=list)
    #: Lab minutes the host stood still since the setpoints were written (:meth:`host_away_min`).
    away_min: float = 0.0

    @property
    def rig(self) -> RigSession:
        return self.proc.rig

    @property
    def s(self) -> ProcedureSettings:
        return self.proc.settings

    @property
    def rates(self) -> dict[str, float]:
        return self.sp.flows.rates_ml_min

    @property
    def setpoints(self) -> dict[str, float]:
        return self.sp.heater_c

    def stamp(self, msg: str) -> None:
        self.events.append(f"[t={self.rig.clock.now_min() - self.t0:7.1f} min] {msg}")

    def frame(self, source: str, *, shutter_open: bool, cell: str = "SAMPLE",
              integration_ms: float) -> FloatArray:
        spec = self.rig.spectrometer
        spec.set_integration_ms(integration_ms)
        spec.configure(source=source, shutter_open=shutter_open, cell=cell)
        return spec.acquire()

    def execute(self, tank: TankState, run_index: int) -> ProcedureResult:
        """Run the steps; a device fault before the first feed pump started is a rig event."""
        try:
            return self.steps(tank, run_index)
        except DeviceFault as fault:
            fault.before_feed = fault.before_feed or not self.feeding
            raise

    def steps(self, tank: TankState, run_index: int) -> ProcedureResult:
        rig = self.rig
        self.t0 = rig.clock.now_min()
        rig.check()
        # the conditions' stirring rate where a campaign sets one, else the rig's setting
        for role, st in rig.stirrers.items():
            rpm = self.sp.stirrer_rpm.get(role, self.c.stir_rpm)
            st.set_speed_rpm(rpm if self.c.stir_rpm != DEFAULT_STIR_RPM else self.s.stir_rpm)
            st.start()
        if self.sp.sulfur_position is not None and rig.sulfur_valve is not None:
            rig.sulfur_valve.move(self.sp.sulfur_position)
        had_solvent = tank.conditions is None
        old_reading = tank.old_reading()
        heat_from = self.heaters_on()  # the blocks ramp while the solvent flushes
        flush_min, note, clean = self.flush(tank)
        if tank.blank is None or had_solvent or clean:
            tank.blank = (self.frame("OFF", shutter_open=False,
                                     integration_ms=self.s.abs_integration_ms),
                          self.frame("ABS", shutter_open=True,
                                     integration_ms=self.s.abs_integration_ms))
            tank.blank_run, tank.blank_min = run_index, rig.clock.now_min()
        else:
            self.stamp(f"solvent blank reused from run {tank.blank_run} (the flow cell holds "
                       f"product now)")
        heat_min, idle_min = self.heat(heat_from)
        settle = self.settle()
        self.washout.append((tank_times_min(self.sp.flows, rig.geometry),
                             rig.clock.now_min() - self.feed_on_min))
        share = 0.0 if had_solvent else old_product_share(self.washout)
        spectra = self.acquire(tank.blank, settle[0])
        for role in (*REAGENT_ROLES, "bleed", "solvent"):
            rig.monitor.stop(role)
        feed_min = rig.clock.now_min() - self.feed_on_min
        tank.conditions, tank.flush_reason = self.c.as_dict(), ""
        rig.check()
        trace, waits_settle = settle[1], settle[2]
        waits = Waits(flush_min=flush_min, heat_min=heat_min, heat_idle_min=idle_min,
                      flush_note=note, carryover_share=share, **waits_settle)
        self.stamp(f"waits: flush {flush_min:.1f} min, heat {heat_min:.1f} min "
                   f"({idle_min:.1f} idle), settle {waits.settle_min:.1f} min "
                   f"({waits.settle_reason}); previous product {100 * share:.2g} % of the flow "
                   f"cell at the reading")
        self.events.append(f"settle_reason: {waits.settle_reason}")
        return ProcedureResult(spectra=spectra, trace=trace, waits=waits, feed_min=feed_min,
                               events=tuple(self.events),
                               old_reading=None if had_solvent else old_reading)

    # ------------------------------------------------------------------ 1) flush
    def flush(self, tank: TankState) -> tuple[float, str, bool]:
        """Flush (or not) before the new feed; returns minutes, why, and whether it was clean."""
        rig, mon = self.rig, self.rig.monitor
        for role in (*REAGENT_ROLES, "bleed"):
            mon.stop(role)
        rig.outlet_valve.move(2)
        if tank.conditions is None:
            return 0.0, "no flush: the tanks hold solvent", False
        reason = self.flush_reason(tank)
        if not reason:
            note = ("flush skipped: the tanks hold the product of a completed run; the new feed "
                    "washes it out to waste, and the reading waits for the RTD floor and a "
                    "steady outlet")
            self.stamp(note)
            return 0.0, note, False
        rig.solvent_valve.move(1)
        prev = Conditions.from_mapping(tank.conditions)
        # a new blank needs solvent in the flow cell: then flush until the outlet is clean
        clean = bool(self.blank_due(tank))
        times = CLEAN_RESIDENCE_TIMES if clean else self.s.flush_residence_times
        t_flush = times * (prev.tau_core_min + prev.tau_shell_min)
        q = flow_setpoints(prev, rig.geometry).shell_ml_min
        mon.start("solvent", q, infuse=True)
        before = rig.clock.now_min()
        rig.clock.wait_min(t_flush)
        self.away_min += self.host_away_min(rig.clock.now_min() - before, t_flush)
        mon.stop("solvent")
        # solvent enters the core inlet, so every tank sees the flush rate
        n_tanks = rig.geometry.n_core_tanks + rig.geometry.n_shell_tanks
        self.washout.append((np.full(n_tanks, rig.geometry.tank_volume_ml / q), t_flush))
        note = f"solvent flush {t_flush:.1f} min{' (clean)' if clean else ''} ({reason})"
        self.stamp(note)
        return t_flush, note, clean

    def blank_due(self, tank: TankState) -> str:
        """Why a new solvent blank is needed ("" if the one at hand is valid)."""
        if tank.blank is None:
            return "no solvent blank taken yet in this session"
        age_h = (self.rig.clock.now_min() - tank.blank_min) / 60.0
        if age_h > self.s.blank_max_age_h:  # NaN (age unknown) is never due
            return (f"the solvent blank is {age_h:.1f} lab h old (at most "
                    f"{self.s.blank_max_age_h:g} h): flush clean and re-blank")
        return ""

    def flush_reason(self, tank: TankState) -> str:
        """Why the tanks must be flushed ("" if the new feed may wash them out)."""
        if due := self.blank_due(tank):
            return due
        if self.s.flush == "always":
            return "flush: always"
        return tank.flush_reason

    # ------------------------------------------------------------------ 2) heat (+ feed)
    def heaters_on(self) -> tuple[float, float]:
        """Write the heater setpoints; returns when, and the lab minutes the ramp may take."""
        rig = self.rig
        for role, t_c in self.setpoints.items():
            rig.set_heater_c(role, t_c)
        ramp = max(abs(t - rig.heaters[r].temperature_c()) for r, t in self.setpoints.items())
        rates = [float(getattr(h, "ramp_c_per_min", 0.0) or 0.0) for h in rig.heaters.values()]
        slowest = min((r for r in rates if r > 0), default=5.0)
        return rig.clock.now_min(), ramp / slowest + self.s.heat_timeout_min

    def heat(self, heat_from: tuple[float, float]) -> tuple[float, float]:
        """Wait for the blocks (set by :meth:`heaters_on`, before any flush), feeds on early.

        Returns the wait after the flush and the part of it with the pumps idle.
        """
        rig = self.rig
        start = seen = rig.clock.now_min()
        set_at, allowed_min = heat_from
        idle_min = math.nan
        while True:
            off = max(abs(rig.heaters[r].temperature_c() - t) for r, t in self.setpoints.items())
            now = rig.clock.now_min()
            self.away_min += self.host_away_min(now - seen, self.s.heat_poll_min)
            seen = now
            if math.isnan(idle_min) and off <= max(self.s.feed_window_c,
                                                   self.s.temperature_tolerance_c):
                idle_min = now - start
                self.feeds_on()
            if off <= self.s.temperature_tolerance_c:
                break
            if now - set_at > allowed_min + self.away_min:
                away = f", {self.away_min:.0f} of them the host's" if self.away_min else ""
                timeout = (f"heaters did not reach the setpoints within "
                           f"{allowed_min + self.away_min:.0f} lab min{away} "
                           f"(off by {off:.1f} °C)")
                self.check_heaters_not_faulted(timeout)
                raise HardwareError(timeout)
            rig.clock.wait_min(self.s.heat_poll_min)
        heat_min = rig.clock.now_min() - start
        rig.outlet_valve.move(1)  # product made at the setpoints from here on
        self.stamp("blocks at " + ", ".join(f"{r} {t:.1f} °C" for r, t in self.setpoints.items())
                   + f" after {heat_min:.1f} min ({idle_min:.1f} min with the pumps idle)")
        return heat_min, idle_min

    def host_away_min(self, gap_min: float, expected_min: float) -> float:
        """The part of a gap the host was away, lab min: beyond what was expected and a grace.

        A controller without a ramp of its own is ramped by the host (``hardware/ramp.py``):
        while the host stands still (a stalled process, a serial exchange waiting out its
        timeouts) so does the setpoint, and the block cannot be blamed for it. That time, in
        the flush's wait or between two looks at the blocks (one poll expected), is added to
        the heat step's allowance. Up to :data:`HOST_GRACE_MIN` more is ordinary; in the
        virtual lab at thousands of lab seconds per wall second, a quarter-second stall on a
        loaded machine is ten lab minutes.
        """
        return max(0.0, gap_min - expected_min - HOST_GRACE_MIN)

    def check_heaters_not_faulted(self, timeout: str) -> None:
        """At the heat step's timeout: the heater still faulted, if one is, is the cause.

        The supervisor reports a device's fault once, until the device is right again (so one
        fault is one invalid experiment or rig event, not one per poll). A heater whose remote
        setpoint keeps failing (status bit 14 after every rewrite) therefore stays faulted
        into the next experiment unreported, and its block never comes to the setpoint: the
        step ended in a bare timeout that named no device. Named here, it is the device fault
        it is (a rig event while nothing is fed). Asked at the timeout, not before: a fault
        the supervisor clears at its next poll (a block that strayed, then came back) must
        not end a step that would have succeeded.

        Raises:
            DeviceFault: A heater of this experiment was reported and is not right yet.
        """
        lasting = [f for f in self.rig.monitor.still_faulted()
                   if f.reason == HEATER_SETPOINT and f.role in self.setpoints]
        if lasting:
            raise DeviceFault(lasting[0].device, f"{timeout}: it is still faulted: "
                              + "; ".join(f.detail for f in lasting))

    def feeds_on(self) -> None:
        rig, mon = self.rig, self.rig.monitor
        rig.check()  # a fault found by now is a rig event: never feed a rig known faulty
        self.feeding = True  # from here on a fault is the experiment's (reagents may flow)
        rig.solvent_valve.move(2)  # solvent now means junction make-up
        for role in self.rates:
            mon.stop(role)
        for role, rate in self.rates.items():
            if rate > 0:
                mon.start(role, rate, infuse=role != "bleed")
        self.feed_on_min = rig.clock.now_min()
        rig.phase("feed", self.c)
        self.stamp("feeds on (outlet to waste): " + ", ".join(
            f"{r} {v:.3f}" for r, v in self.rates.items() if v > 0) + " mL/min")

    # ------------------------------------------------------------------ 3) settle
    def settle(self) -> tuple[FloatArray, SpectralTrace, dict[str, Any]]:
        rig, s = self.rig, self.s
        spec = rig.spectrometer
        tau = self.c.tau_core_min + self.c.tau_shell_min
        cap = s.settle_residence_times * tau
        floor = min(rtd_floor_min(tank_times_min(self.sp.flows, rig.geometry)), cap)
        adaptive = s.settling == "adaptive"
        step = cap / max(s.trace_frames, 1) / (2.0 if adaptive else 1.0)
        # frames every `step` until the verdict's first window (ending at the floor) begins,
        # then VERDICT_LOOKS times as often: the verdict is asked at each new frame, on the
        # frames one `step` apart (window and statistics as before, the answer sooner)
        looks = VERDICT_LOOKS if adaptive else 1
        dense_from = floor - (STEADY_WINDOW - 1) * step if adaptive else math.inf
        dark_pl = self.frame("OFF", shutter_open=False, integration_ms=s.pl_integration_ms)
        start = rig.clock.now_min()
        times: list[float] = []
        frames: list[FloatArray] = []
        reason, since = ("fixed" if not adaptive else "cap"), math.nan
        first_dense = -1
        while True:
            now = rig.clock.now_min() - start
            nxt = now + step if now + step < dense_from - 1e-9 else (
                max(dense_from, now + step / looks) if first_dense < 0 else now + step / looks)
            rig.clock.wait_min(min(nxt, cap) - now)
            t_min = rig.clock.now_min() - start
            frames.append(self.frame("EXC", shutter_open=True, integration_ms=s.pl_integration_ms))
            times.append(t_min)
            if first_dense < 0 and t_min >= dense_from - 1e-9:
                first_dense = len(frames) - 1
            window = range(len(frames) - 1 - (STEADY_WINDOW - 1) * looks, len(frames), looks)
            if adaptive and t_min >= floor - 1e-9 and window.start >= max(first_dense, 0):
                verdict = steady_state(spec.wavelengths_nm, np.asarray(times)[window],
                                       np.asarray(frames)[window], dark_pl,
                                       excitation_nm=spec.excitation_nm, window=STEADY_WINDOW)
                if verdict.steady:
                    reason, since = "steady", verdict.since_min
                    break
            if t_min >= cap - 1e-9:
                break
        settle_min = rig.clock.now_min() - start
        why = {"steady": f"outlet steady since {since:.1f} min (RTD floor {floor:.1f} min)",
               "cap": f"not steady before the cap of {s.settle_residence_times:g} τ",
               "fixed": f"fixed wait of {s.settle_residence_times:g} τ"}[reason]
        self.stamp(f"settled after {settle_min:.1f} min, {len(frames)} frames: {why}")
        rig.phase("settled", self.c)
        trace = SpectralTrace(times_min=np.asarray(times), pl_counts=np.asarray(frames))
        return dark_pl, trace, {"settle_min": settle_min, "settle_floor_min": floor,
                                "settle_cap_min": cap, "settle_reason": reason,
                                "steady_since_min": since}

    # ------------------------------------------------------------------ 4) acquire
    def acquire(self, blank: tuple[FloatArray, FloatArray], dark_pl: FloatArray) -> Spectra:
        s, spec = self.s, self.rig.spectrometer
        sample = self.frame("ABS", shutter_open=True, integration_ms=s.abs_integration_ms)
        pl = self.frame("EXC", shutter_open=True, integration_ms=s.pl_integration_ms)
        dye = self.frame("EXC", shutter_open=True, cell="DYE", integration_ms=s.pl_integration_ms)
        self.frame("OFF", shutter_open=False, integration_ms=s.pl_integration_ms)
        if s.acquire_min > 0:
            self.rig.clock.wait_min(s.acquire_min)
        self.rig.check()
        self.stamp("spectra acquired")
        return Spectra(
            wavelengths_nm=np.asarray(spec.wavelengths_nm, dtype=np.float64).copy(),
            dark_abs_counts=blank[0], blank_counts=blank[1], sample_counts=sample,
            dark_pl_counts=dark_pl, pl_counts=pl, dye_pl_counts=dye,
            abs_integration_ms=s.abs_integration_ms, pl_integration_ms=s.pl_integration_ms,
            saturation_counts=spec.saturation_counts, excitation_nm=spec.excitation_nm,
            path_length_cm=spec.path_length_cm)
