"""Physics of the virtual reactor behind the emulators: syringes, heater blocks, tanks, optics.

One :class:`VirtualReactor` holds the state every emulator reads and writes (under one lock):
pump models (displacement, syringe volume, stall, Safe-mode watchdog), heater models
(first-order lag behind a rate-limited working setpoint, sensor break, remote-SP timeout),
stirrers, valves, and the contents of the tank cascade. Time is a :class:`VirtualClock`:
wall time times a scale, so a lab hour can pass in a wall second. State advances lazily, on
each request, by the exact solution over the elapsed interval (nothing spins).

What the tanks hold is the one dear part of that (a transient step is milliseconds, more on a
loaded host). On the in-process rig (a manual clock) it is stepped at once, so a run is
deterministic. Behind the pty emulators (a wall clock) :meth:`VirtualReactor.start_stepping`
moves it to a thread of its own: a request under the lock only records what the tanks
experienced since the last one (:class:`~autolab.twin.transient.TankInputs` and the interval),
and the stepper integrates those segments in order, outside the lock, merging runs of equal
inputs. So a serial reply never waits for the chemistry, with one bounded exception: a
detector frame waits (at most ``frame_wait_s``) until the stepper has integrated what was
recorded before it, so consecutive frames never show one stale state (which the steady-state
verdict would call steady).

The spectrometer reads the outlet. What the tanks hold is a
:class:`~autolab.twin.transient.CascadeState` moved by the twin's cascade physics
(:class:`~autolab.twin.transient.CascadePhysics`: by default the steady product of each feed
carried through the exact tanks-in-series washout). Each step hands it what the tanks experience
(:class:`~autolab.twin.transient.TankInputs`): the conditions the running pumps, the heater PVs
(per tank where the rig has tank heaters), the stirrers and the injection point realize
(:func:`conditions_from_rates`), or a solvent flush, or no flow.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import ConditionsError
from autolab.hardware.fluidics import Geometry, conditions_from_rates
from autolab.records import Conditions
from autolab.twin import DigitalTwin, TwinConfig
from autolab.twin.optics import dye_counts, lamp_counts, mixture_pl_counts, read_frame
from autolab.twin.transient import (
    CascadePhysics,
    CascadeState,
    MixingCascade,
    TankInputs,
    TransientCascade,
    one_blas_thread,
)

FloatArray = NDArray[np.float64]
#: Stirring rate the tanks see when every stirrer is off (the ideal-mixing reference), rpm.
DEFAULT_STIR_RPM = 600.0


class LabClock(Protocol):
    """Where the reactor reads the lab time."""

    def now_min(self) -> float:
        """Lab minutes since the clock started."""
        ...


class ManualClock:
    """A virtual lab clock that moves only when told (the simulated rig's waits are instant).

    Args:
        start_min: Lab minutes at creation (a resumed executor continues from its journal).
    """

    def __init__(self, start_min: float = 0.0) -> None:
        self._now_min = float(start_min)

    def now_min(self) -> float:
        """Lab minutes since the clock started."""
        return self._now_min

    def advance_min(self, minutes: float) -> None:
        """Move the clock forward (never back)."""
        self._now_min += max(0.0, float(minutes))

    def set_min(self, now_min: float) -> None:
        """Set the clock (restoring a saved state)."""
        self._now_min = float(now_min)


class VirtualClock:
    """Lab time = wall time × ``time_scale`` (lab seconds per wall second)."""

    def __init__(self, time_scale: float = 1.0) -> None:
        self.time_scale = time_scale
        self._t0 = time.monotonic()

    def now_min(self) -> float:
        """Lab minutes since the clock started."""
        return (time.monotonic() - self._t0) * self.time_scale / 60.0


@dataclass
class PumpModel:
    """One syringe pump's mechanics and firmware state.

    Attributes:
        address: Network address.
        role: Fluidic role (``halide_cl``, ``solvent``, ``bleed`` ...).
        syringe_ml: Syringe volume, mL; starts full.
        diameter_mm: Set diameter, mm.
        rate_ml_min: Set rate, mL/min.
        infuse: Direction.
        running: Motor on.
        left_ml: Volume left in the syringe, mL.
        infused_ml / withdrawn_ml: Dispensed counters since the last clear, mL.
        alarm: Pending alarm code ("" none).
        safe_timeout_s: Safe-mode timeout (0 = Basic mode), wall s.
        last_packet_wall: Wall time of the last valid packet.
        safe_armed: The Safe-mode timer runs: it starts at the first valid packet (after
            power-up or after ``SAF n``) and, once it fires, waits for the next one. It runs
            whether or not the pump pumps (the manual names no such condition).
        ignore_next: Power-up quirk: the first command after power-up is ignored.
        paused: The program was paused from the keypad (status ``P``, motor stopped).
        rate_fraction: Fault injection: the motor delivers this fraction of the set rate
            (``RAT`` still reads the set rate; ``DIS`` counts what was delivered).
    """

    address: int
    role: str
    syringe_ml: float = 50.0
    diameter_mm: float = 26.6
    rate_ml_min: float = 0.0
    rate_units: str = "MM"
    infuse: bool = True
    running: bool = False
    left_ml: float = 50.0
    infused_ml: float = 0.0
    withdrawn_ml: float = 0.0
    alarm: str = "R"
    safe_timeout_s: int = 0
    last_packet_wall: float = field(default_factory=time.monotonic)
    safe_armed: bool = False
    ignore_next: bool = True
    paused: bool = False
    rate_fraction: float = 1.0

    def stall(self, code: str) -> None:
        """Stop with an alarm (stall, safe-mode timeout)."""
        self.running = False
        self.alarm = code


@dataclass
class HeaterModel:
    """One heater block under a Eurotherm 3200.

    Attributes:
        address: Modbus address.
        role: ``core`` or ``shell``.
        pv_c: Block temperature, °C.
        local_sp_c: Local (EEPROM) setpoint: the fallback when the remote SP fails, °C.
        remote_sp_c: Remote setpoint, °C.
        working_sp_c: Working setpoint (ramps at ``ramp_c_per_min`` toward the active SP), °C.
        ramp_c_per_min: SP rate limit (0 = step), °C/min.
        remote: Remote SP selected.
        op_hi_pct: Output high limit, % (0 = heater cut).
        sensor_break: Thermocouple open (fault injection).
        runaway: Output stuck on (fault injection: PV climbs past the SP).
        remote_timeout_s: Remote SP must be rewritten this often (wall s) or it fails.
        last_remote_wall: Wall time of the last remote-SP write.
        remote_fault: The remote setpoint input has failed whatever the host writes (fault
            injection: status bit 14, and the controller runs on its local setpoint).
        manual: The controller is in manual mode (fault injection: someone pressed A/M on its
            front panel; status bit 4): the output holds, the PV no longer follows any setpoint.
        remote_disabled: The remote setpoint is not enabled in the controller's configuration
            (fault injection): a write selecting it (register 276) is acknowledged and ignored.
        op_lo_pct: Output low limit, % (OP.LO, register 31): the output high limit cannot be set
            below it (a write is clamped to it).
    """

    address: int
    role: str
    pv_c: float = 25.0
    local_sp_c: float = 25.0
    remote_sp_c: float = 25.0
    working_sp_c: float = 25.0
    ramp_c_per_min: float = 0.0
    remote: bool = False
    op_hi_pct: float = 100.0
    sensor_break: bool = False
    runaway: bool = False
    remote_timeout_s: float = 10.0
    last_remote_wall: float = field(default_factory=time.monotonic)
    lag_min: float = 0.5
    max_heat_c_per_min: float = 20.0
    max_cool_c_per_min: float = 8.0
    ambient_c: float = 25.0
    remote_fault: bool = False
    manual: bool = False
    remote_disabled: bool = False
    op_lo_pct: float = 0.0

    @property
    def remote_failed(self) -> bool:
        """The remote SP fails: the host stopped refreshing it, or its input failed."""
        return self.remote and (self.remote_fault or time.monotonic() - self.last_remote_wall
                                > self.remote_timeout_s)

    def advance(self, dt_min: float) -> None:
        """Exact-enough update over ``dt_min`` (sub-stepped for the rate limits)."""
        target = self.remote_sp_c if self.remote and not self.remote_failed else self.local_sp_c
        steps = max(1, min(200, math.ceil(dt_min / 0.1)))
        h = dt_min / steps
        # what every sub-step shares, computed once (the same values: a poll of a heating
        # block on the simulated rig's clock runs up to 200 sub-steps)
        ramp, max_ramp = self.ramp_c_per_min > 0, self.ramp_c_per_min * h
        relax = 1 - math.exp(-h / self.lag_min)
        max_heat, max_cool = self.max_heat_c_per_min * h, -self.max_cool_c_per_min * h
        fixed_goal = self.ambient_c if self.op_hi_pct <= 0 else 500.0 if self.runaway else None
        sp, pv = self.working_sp_c, self.pv_c
        for _ in range(steps):
            if ramp:
                d = target - sp
                sp += math.copysign(min(abs(d), max_ramp), d)
            else:
                sp = target
            goal = fixed_goal if fixed_goal is not None else pv if self.manual else sp
            dv = (goal - pv) * relax
            dv = min(dv, max_heat) if dv > 0 else max(dv, max_cool)
            pv += dv
        self.working_sp_c, self.pv_c = sp, pv


class VirtualReactor:
    """Shared physical state of the virtual lab.

    Args:
        geometry: Tanks and stocks (same as the devices file's).
        pumps: Pump models by name.
        heaters: Heater models by name.
        clock: Lab clock (wall-scaled for the emulators, manual for the in-process rig).
        twin: The twin whose physics (steady-state products, optics) render the outlet.
        physics: What the tanks do with what flows in (default: :func:`default_physics`).
        resolve_transients: Whether the default physics resolves the twin's chemistry in time
            (False: its steady products through the washout, a step several times cheaper).
        seed: Seed of the detector noise.
    """

    def __init__(self, geometry: Geometry, pumps: dict[str, PumpModel],
                 heaters: dict[str, HeaterModel], clock: LabClock, *,
                 twin: DigitalTwin | None = None, seed: int = 0,
                 physics: CascadePhysics | None = None, resolve_transients: bool = True,
                 ) -> None:
        self.lock = threading.RLock()
        self.geometry = geometry
        self.pumps = pumps
        self.heaters = heaters
        self.stirrers: dict[str, dict[str, float]] = {}
        self.valves: dict[str, int] = {}
        self.clock = clock
        self.twin = twin or DigitalTwin(TwinConfig(
            n_core_tanks=geometry.n_core_tanks, n_shell_tanks=geometry.n_shell_tanks,
            tank_volume_ml=geometry.tank_volume_ml, in_conc_m=geometry.in_conc_m,
            phosphine_stock_m=geometry.phosphine_stock_m,
            shell_feed_fraction=geometry.shell_feed_fraction))
        self.rng = np.random.default_rng(seed)
        self.blocked = False  #: fault: the outlet is blocked -> infusing pumps stall
        self.ambient_c = self.twin.config.ambient_c
        #: What the tanks hold, and the chemistry that moves it (TWIN's cascade physics).
        self.physics: CascadePhysics = physics or default_physics(
            self.twin, resolve_transients=resolve_transients)
        self.cascade: CascadeState = self.physics.initial()
        #: Where the shell feed enters: (tank, count); tank 0 = the first shell tank.
        self.injection: tuple[int, int] = (0, 1)
        #: How the rig realizes what its pumps and heaters are set to (the simulated rig's
        #: per-run flow, temperature and stock scatter); identity when None.
        self.realize: Callable[[Conditions], Conditions] | None = None
        #: Collection efficiency of the sample cell's emission relative to the dye cell's (the
        #: simulated rig scatters it per run: the QY read-out error of a real optics head).
        self.pl_gain = 1.0
        self._t_min = clock.now_min()
        #: Segments (inputs, fallback, lab min) the stepper thread has yet to integrate, how
        #: many were recorded and integrated so far; guarded by ``_progress`` (never by ``lock``:
        #: the stepper never takes ``lock``, so a frame may wait for it while holding ``lock``).
        self._pending: list[tuple[TankInputs, TankInputs, float]] = []
        #: Lab time the stepper left for its next batch (under :data:`STEP_QUANTUM_MIN`),
        #: with the inputs it ran under; only the stepper thread touches it.
        self._carry: list[tuple[TankInputs, TankInputs, float]] = []
        self._recorded = 0
        self._integrated = 0
        self._progress = threading.Condition()
        self._stepper: threading.Thread | None = None
        self._stop_stepping = False
        #: Longest wall wait of a frame for the stepper to catch up, s (the lock is held
        #: meanwhile: well inside the drivers' reply timeouts of 0.9-1.2 s).
        self.frame_wait_s = 0.25
        #: Wall seconds the stepper spent per batch (the latest ones; for the lab's evidence).
        self.step_wall_s: list[float] = []

    # ------------------------------------------------------------------ time
    def advance(self) -> None:
        """Bring every model up to the clock's now (call with the lock held)."""
        now = self.clock.now_min()
        dt = now - self._t_min
        if dt <= 0:
            return
        self._t_min = now
        self._flow(dt)
        for p in self.pumps.values():
            if not p.running:
                continue
            v = p.rate_ml_min * p.rate_fraction * dt
            if p.infuse:
                if self.blocked and p.role != "bleed":
                    p.stall("S")
                    continue
                v = min(v, p.left_ml)
                p.left_ml -= v
                p.infused_ml += v
                if p.left_ml <= 1e-9:
                    p.stall("S")  # end of travel stalls a NE pump
            else:
                v = min(v, p.syringe_ml - p.left_ml)
                p.left_ml += v
                p.withdrawn_ml += v
                if p.syringe_ml - p.left_ml <= 1e-9:
                    p.stall("S")  # a full syringe is the end of travel when withdrawing
        for h in self.heaters.values():
            h.advance(dt)

    def rates(self) -> dict[str, float]:
        """Actual pump rates by role, mL/min (0 for stopped pumps)."""
        out: dict[str, float] = {}
        for p in self.pumps.values():
            if p.running:
                out[p.role] = out.get(p.role, 0.0) + p.rate_ml_min * p.rate_fraction
        return out

    def heater_pv(self, role: str) -> float:
        """PV of the block with this role, °C (NaN if the rig has no such block)."""
        return next((h.pv_c for h in self.heaters.values() if h.role == role), math.nan)

    def tank_pvs(self) -> tuple[float, ...]:
        """Block temperature each tank sees, flow order, °C (its own heater, else its stage's)."""
        g = self.geometry
        first = self.injection[0] or g.n_core_tanks + 1
        by_role = {h.role: h.pv_c for h in self.heaters.values()}
        return tuple(by_role.get(f"tank{i}", by_role.get("core" if i < first else "shell",
                                                        self.ambient_c))
                     for i in range(1, g.n_core_tanks + g.n_shell_tanks + 1))

    def _inputs(self) -> TankInputs:
        """What the pumps, valves, heaters and stirrers make the tanks experience now."""
        g = self.geometry
        r = self.rates()
        pvs = self.tank_pvs()
        first = self.injection[0] or g.n_core_tanks + 1
        per_tank = any(h.role.startswith("tank") for h in self.heaters.values())
        stir = next((s["sp"] for s in self.stirrers.values() if s["on"] and not s["blocked"]),
                    DEFAULT_STIR_RPM)
        feed = conditions_from_rates(
            r, pvs[0], pvs[first - 1], g, s_inject_tank=self.injection[0],
            s_inject_count=self.injection[1], t_tank_c=pvs if per_tank else (), stir_rpm=stir)
        if feed is not None:
            return TankInputs.feeding(self.realize(feed) if self.realize is not None else feed)
        solvent = r.get("solvent", 0.0)
        if solvent > 0:  # the solvent valve sends it to the core inlet (1) or the junction
            to_core = self.valves.get("solvent_valve", 2) == 1
            return TankInputs.solvent(solvent, t_tank_c=pvs, stir_rpm=stir,
                                      s_inject_tank=self.injection[0],
                                      solvent_tank=1 if to_core else first)
        return TankInputs.no_flow(t_tank_c=pvs, stir_rpm=stir, s_inject_tank=self.injection[0])

    def _flow(self, dt: float) -> None:
        inputs = self._inputs()
        # a feed the chemistry cannot run (tanks still cold while the blocks ramp): no dots
        # form; the stream only carries the tanks' contents out
        fallback = TankInputs.solvent(self._outlet_ml_min(), t_tank_c=inputs.t_tank_c,
                                      stir_rpm=inputs.stir_rpm, s_inject_tank=self.injection[0])
        if self._stepper is not None:
            with self._progress:
                self._pending.append((inputs, fallback, dt))
                self._recorded += 1
                self._progress.notify_all()
            return
        self.cascade = self._integrate(self.cascade, [(inputs, fallback, dt)])

    def _integrate(self, state: CascadeState,
                   segments: Iterable[tuple[TankInputs, TankInputs, float]]) -> CascadeState:
        with one_blas_thread():
            for inputs, fallback, dt in segments:
                try:
                    state = self.physics.step(state, inputs, dt)
                except ConditionsError:
                    state = self.physics.step(state, fallback, dt)
        return state

    # ------------------------------------------------------------------ stepper thread
    def start_stepping(self) -> None:
        """Integrate the tanks in a thread of their own from now on (wall-clock labs)."""
        if self._stepper is not None:
            return
        self._stop_stepping = False
        self._stepper = threading.Thread(target=self._step_loop, name="reactor-physics",
                                         daemon=True)
        self._stepper.start()

    def stop_stepping(self) -> None:
        """Stop the stepper after it integrated everything recorded (idempotent)."""
        thread = self._stepper
        if thread is None:
            return
        with self._progress:
            self._stop_stepping = True
            self._progress.notify_all()
        thread.join()
        with self.lock:  # producers record under it: none slips between these two lines
            self._stepper = None
            with self._progress:
                left, self._pending = self._pending, []
            self.cascade = self._integrate(self.cascade, _merged([*self._carry, *left]))
            self._carry = []

    def _step_loop(self) -> None:
        """The one consumer: takes what was recorded, integrates it in order, says so."""
        while True:
            with self._progress:
                self._progress.wait_for(lambda: bool(self._pending) or self._stop_stepping)
                batch, self._pending = self._pending, []
                upto, stop = self._recorded, self._stop_stepping
            if batch:
                t0 = time.perf_counter()
                segments, self._carry = _on_grid(_merged([*self._carry, *batch]))
                self.cascade = self._integrate(self.cascade, segments)
                self.step_wall_s = [*self.step_wall_s[-999:], time.perf_counter() - t0]
            with self._progress:
                self._integrated = upto
                self._progress.notify_all()
            if stop:
                return

    def catch_up(self) -> bool:
        """Wait (at most ``frame_wait_s``) until everything recorded so far is integrated.

        Returns whether it was (always True without a stepper: nothing is ever pending).
        """
        if self._stepper is None:
            return True
        with self._progress:
            target = self._recorded
            return self._progress.wait_for(lambda: self._integrated >= target,
                                           timeout=self.frame_wait_s)

    def _outlet_ml_min(self) -> float:
        """What leaves the cascade: the core stream less the bleed plus the junction feeds."""
        r = self.rates()
        q_core = sum(r.get(k, 0.0) for k in ("halide_cl", "halide_i", "phosphine"))
        return max(0.0, q_core - r.get("bleed", 0.0)) + sum(
            r.get(k, 0.0) for k in ("zinc", "sulfur", "solvent"))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """JSON-compatible physical state: models, tank contents, valves, stirrers.

        Wall-clock bookkeeping (watchdog timers) is left out: a restored reactor starts them
        afresh, as powered devices would. With a stepper running, it waits for the stepper
        to integrate what was recorded first.
        """
        self.catch_up()
        wall = {"last_packet_wall", "last_remote_wall", "safe_armed"}
        return {
            "t_min": self._t_min,
            "pumps": {n: {k: v for k, v in asdict(p).items() if k not in wall}
                      for n, p in self.pumps.items()},
            "heaters": {n: {k: v for k, v in asdict(h).items() if k not in wall}
                        for n, h in self.heaters.items()},
            "stirrers": {n: dict(v) for n, v in self.stirrers.items()},
            "valves": dict(self.valves), "blocked": self.blocked,
            "injection": list(self.injection), "cascade": self.cascade.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the models are updated in place)."""
        self._t_min = float(state["t_min"])
        for n, values in state["pumps"].items():
            for k, v in values.items():
                setattr(self.pumps[n], k, v)
        for n, values in state["heaters"].items():
            for k, v in values.items():
                setattr(self.heaters[n], k, v)
        self.stirrers = {n: {k: float(x) for k, x in v.items()}
                         for n, v in state["stirrers"].items()}
        self.valves = {n: int(v) for n, v in state["valves"].items()}
        self.blocked = bool(state["blocked"])
        self.injection = (int(state["injection"][0]), int(state["injection"][1]))
        self.cascade = CascadeState.from_dict(state["cascade"])

    def reseed(self, seed: list[int] | int) -> None:
        """Restart the detector noise from ``seed`` (run *k* of a seeded rig: ``[seed, k]``)."""
        self.rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ optics
    def frame(self, *, source: str, shutter_open: bool, cell: str,
              integration_ms: float) -> FloatArray:
        """One raw detector frame of the outlet flow cell (or the dye cell)."""
        cfg = self.twin.config
        det = cfg.detector
        wl = self.twin.wavelengths_nm
        signal = np.zeros_like(wl)
        if shutter_open and source != "OFF":
            if cell == "DYE":
                ref = self.twin.qy_reference
                if source == "EXC":
                    signal = dye_counts(wl, k_counts=det.pl_counts_per_ms * integration_ms,
                                        qy=ref.qy, absorbance=ref.absorbance_at_excitation,
                                        n_dye=ref.refractive_index, peak_nm=det.dye_peak_nm,
                                        fwhm_nm=det.dye_fwhm_nm)
            else:
                self.catch_up()  # bounded: never one stale state for several frames
                out = self.physics.outlet(self.cascade)
                a_mix, pl, _ = mixture_pl_counts(
                    wl, np.ones(1), out.absorbance[None, :], out.emission_per_nm[None, :],
                    excitation_nm=det.excitation_nm,
                    k_counts=det.pl_counts_per_ms * integration_ms,
                    n_sample=self.twin.qy_reference.sample_refractive_index)
                if source == "ABS":
                    blank = lamp_counts(wl, det.lamp_peak_counts) * integration_ms \
                        / det.abs_integration_ms
                    signal = blank * 10.0 ** (-a_mix)
                else:
                    signal = pl * self.pl_gain
        return read_frame(signal, self.rng, dark_offset=det.dark_offset_counts,
                          read_noise=det.read_noise_counts, gain=det.gain_counts_per_electron,
                          full_scale=det.full_scale_counts, shot_noise=cfg.noise.shot_noise)


def _merged(segments: list[tuple[TankInputs, TankInputs, float]],
            ) -> list[tuple[TankInputs, TankInputs, float]]:
    """Consecutive segments of equal inputs as one (constant inputs: one exact step)."""
    out: list[tuple[TankInputs, TankInputs, float]] = []
    for inputs, fallback, dt in segments:
        if out and out[-1][0] == inputs and out[-1][1] == fallback:
            out[-1] = (inputs, fallback, out[-1][2] + dt)
        else:
            out.append((inputs, fallback, dt))
    return out


#: A wall-clock lab's stepper integrates lab time in multiples of this, min (7.5 lab s).
#: Its batches are as long as the wall clock made them, and each new step length missed
#: every cached propagator of the transient cascade (an ``expm`` each); on this grid the
#: step lengths repeat. Input changes move by under half of it, far below what a frame
#: or a heater can resolve; what is left over waits for the next batch.
STEP_QUANTUM_MIN = 0.125


def _on_grid(segments: list[tuple[TankInputs, TankInputs, float]],
             quantum_min: float = STEP_QUANTUM_MIN,
             ) -> tuple[list[tuple[TankInputs, TankInputs, float]],
                        list[tuple[TankInputs, TankInputs, float]]]:
    """Segments with their boundaries rounded to multiples of ``quantum_min``, and the rest.

    Total time is kept: each boundary moves to the nearest grid point of the running sum
    (a segment shorter than half a quantum may vanish, its time going to its neighbours);
    the end rounds down, and the remainder (under one quantum) is returned with the last
    segment's inputs, to be carried into the next batch.
    """
    out: list[tuple[TankInputs, TankInputs, float]] = []
    grand = sum(dt for _, _, dt in segments)
    end = math.floor(grand / quantum_min + 1e-9)  # the batch ends on the grid point below
    start_q, total = 0, 0.0
    for i, (inputs, fallback, dt) in enumerate(segments):
        total += dt
        end_q = end if i == len(segments) - 1 else min(end, round(total / quantum_min))
        if end_q > start_q:
            out.append((inputs, fallback, (end_q - start_q) * quantum_min))
            start_q = end_q
    rest = grand - start_q * quantum_min
    carry = [(segments[-1][0], segments[-1][1], rest)] if segments and rest > 1e-12 else []
    return out, carry


def default_physics(twin: DigitalTwin, *, resolve_transients: bool = True,
                    same_temperature_c: float = 3.0, same_rel: float = 0.02) -> CascadePhysics:
    """The cascade physics of a twin: its chemistry resolved in time, or mixed steady products.

    The twin's own chemistry runs on :class:`~autolab.twin.transient.TransientCascade`; a
    response without kinetics (``resolves_transients`` False), or a caller that asks for the
    cheaper physics (``resolve_transients=False``), carries its steady products through the
    washout (:class:`~autolab.twin.transient.MixingCascade`), where feeds within
    ``same_temperature_c`` and ``same_rel`` of the newest product continue it.
    """
    if twin.resolves_transients and resolve_transients:
        return TransientCascade(twin.config)
    return MixingCascade(twin.product, twin.config, same_temperature_c=same_temperature_c,
                         same_rel=same_rel)
