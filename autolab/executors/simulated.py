"""The simulated executor: the one procedure on the simulated rig (kind ``twin``).

A campaign cannot tell it from the hardware: the same :class:`~autolab.executors.procedure.
Procedure` drives in-process devices (:mod:`autolab.virtuallab.inprocess`) over the reactor
physics on a virtual clock that a wait advances at once, and returns the same Measurement type.
The twin is physics only (:class:`~autolab.twin.DigitalTwin`): truth, spectra, failure
probabilities; what a reactor owns (clock, tanks, heater blocks, reagent totals, run counter)
lives in the rig and in this executor, and is journaled by :meth:`SimulatedExecutor.state_dict`.

All randomness of run *k* comes from ``[seed, k]``: how the rig realizes the setpoints (flow,
temperature and stock scatter), whether and when the chemistry fails, and the detector noise.
So an executor restored from :meth:`~SimulatedExecutor.state_dict` after run *k* reads
bit-identically to the one that never stopped.
"""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import Any

import numpy as np

from autolab.exceptions import DeviceFault, ExperimentFailed
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
    rtd_floor_min,
    tank_times_min,
)
from autolab.hardware.delivery import DeliveryMonitor
from autolab.hardware.envelope import RigSetpoints, heater_setpoints, tank_profile_c
from autolab.hardware.fluidics import Geometry, flow_setpoints
from autolab.records import Conditions, Measurement, QYReference
from autolab.twin import DigitalTwin, GroundTruth, TwinConfig, check_envelope
from autolab.twin.cascade import check_tank_conditions, throughput_g_h
from autolab.twin.twin import ChemistryFailure, shift_temperatures
from autolab.virtuallab.inprocess import SimulatedRig

#: The procedure's defaults (one place: :data:`DEFAULT_PROCEDURE`).
_D = DEFAULT_PROCEDURE

#: Blocks below this are safe to leave (the devices file's default ``safe_temperature_c``), °C.
SAFE_TEMPERATURE_C = 60.0
#: Longest wait for the blocks to cool in a shutdown, lab min.
COOL_TIMEOUT_MIN = 180.0
#: Reagent each pump role draws from (the twin's reagent accounts).
REAGENT_OF_ROLE = {"halide_cl": "indium_halide", "halide_i": "indium_halide",
                   "phosphine": "phosphine", "zinc": "shell_zn_s", "sulfur": "shell_zn_s",
                   "solvent": "solvent"}


class _Session:
    """The simulated rig as the procedure sees it: devices, a virtual clock, failure checks."""

    def __init__(self, rig: SimulatedRig) -> None:
        self.sim = rig
        self.geometry: Geometry = rig.geometry
        self.clock = self
        self.monitor = DeliveryMonitor(rig.pumps, rig.clock.now_min)
        self.heaters = rig.heaters
        self.stirrers = rig.stirrers
        self.solvent_valve = rig.solvent_valve
        self.outlet_valve = rig.outlet_valve
        self.spectrometer = rig.spectrometer
        self.failure: ChemistryFailure | None = None
        self.fail_at_min = math.inf
        self.context = ""

    # clock
    def now_min(self) -> float:
        """Virtual lab minutes."""
        return self.sim.clock.now_min()

    def wait_min(self, minutes: float) -> None:
        """Advance at once; a chemistry failure due within the wait strikes at its time."""
        end = self.now_min() + max(0.0, minutes)
        if self.fail_at_min <= end:
            self.sim.clock.set_min(max(self.now_min(), self.fail_at_min))
            self._fail()
        self.sim.clock.set_min(end)
        self.check()

    # session
    def set_heater_c(self, role: str, setpoint_c: float) -> None:
        """Write a heater setpoint."""
        self.heaters[role].set_temperature_c(setpoint_c)

    def check(self) -> None:
        """Delivery faults would come from the monitor (the simulated pumps deliver exactly)."""
        faults = self.monitor.take_faults()
        if faults:
            raise DeviceFault(faults[0].device, "; ".join(f.detail for f in faults))

    @property
    def sulfur_valve(self) -> None:
        """None: the simulated plumbing injects wherever the conditions say (see :meth:`phase`)."""
        return None

    def setpoints(self, conditions: Conditions) -> RigSetpoints:
        """The simulated rig realizes every condition inside the twin's envelope.

        Raises:
            ConditionsError: Conditions outside the twin's reactor envelope.
        """
        check_envelope(conditions)
        check_tank_conditions(conditions, self.sim.config)  # the twin's per-tank envelope
        return RigSetpoints(
            flows=flow_setpoints(conditions, self.geometry),
            tank_c=tank_profile_c(conditions, self.geometry),
            heater_c=heater_setpoints(conditions, self.heaters, self.geometry),
            stirrer_rpm=dict.fromkeys(self.stirrers, conditions.stir_rpm), sulfur_position=None)

    def phase(self, name: str, conditions: Conditions) -> None:
        """Feeds on: the plumbing injects as asked and the run's chemistry failure is armed.

        No emission shows when settling ends.
        """
        f = self.failure
        if name == "feed":
            self.sim.reactor.injection = (conditions.s_inject_tank, conditions.s_inject_count)
        if f is None:
            return
        if name == "feed" and math.isfinite(f.at_fraction):
            flows = flow_setpoints(conditions, self.geometry)
            floor = rtd_floor_min(tank_times_min(flows, self.geometry))
            self.fail_at_min = self.now_min() + f.at_fraction * floor
        elif name == "settled" and not math.isfinite(f.at_fraction):
            self._fail()

    def _fail(self) -> None:
        f = self.failure
        assert f is not None
        self.failure, self.fail_at_min = None, math.inf
        raise ExperimentFailed(f.reason, f"{f.message} ({self.context})")


def procedure_settings(config: TwinConfig, settling: SettlingMode = _D.settling,
                       flush: FlushMode = _D.flush, feed_window_c: float = _D.feed_window_c,
                       blank_max_age_h: float = _D.blank_max_age_h) -> ProcedureSettings:
    """The procedure settings of a twin configuration (its detector, flush, settle, acquire)."""
    det = config.detector
    return ProcedureSettings(
        settle_residence_times=config.settle_residence_times,
        flush_residence_times=config.flush_residence_times,
        trace_frames=max(config.trace_frames, 2), abs_integration_ms=det.abs_integration_ms,
        pl_integration_ms=det.pl_integration_ms, settling=settling, flush=flush,
        feed_window_c=feed_window_c, acquire_min=config.acquire_min,
        blank_max_age_h=blank_max_age_h)


class SimulatedExecutor:
    """The Executor protocol over the simulated rig.

    The noise-free truth of every run is kept apart from the measurement, in :attr:`truths`
    (run index -> :class:`GroundTruth`, failed runs included), for benchmarks and tests.

    Args:
        config: Twin configuration (default reactor of the seed paper).
        seed: Seed of all noise and failure draws; run *k* uses ``[seed, k]``.
        qy_reference: Reference dye reported with each measurement.
        settling: ``adaptive`` (default) or ``fixed`` settling.
        flush: ``auto`` (default) or ``always``.
        feed_window_c: The feeds start once every block is this close to its setpoint, °C
            (0: the pumps wait idle until the blocks are at their setpoints).
        blank_max_age_h: Oldest solvent blank an experiment may use, lab h.
        physics: The physics to simulate (default: the twin of ``config``; the benchmark
            family passes its own response).
    """

    name = "twin"

    def __init__(self, config: TwinConfig | None = None, seed: int = 0,
                 qy_reference: QYReference | None = None, *, settling: SettlingMode = _D.settling,
                 flush: FlushMode = _D.flush, feed_window_c: float = _D.feed_window_c,
                 blank_max_age_h: float = _D.blank_max_age_h,
                 physics: DigitalTwin | None = None) -> None:
        self.twin = physics or DigitalTwin(config or TwinConfig(), qy_reference=qy_reference)
        self.seed = int(seed)
        self.rig = SimulatedRig(self.twin)
        self.session = _Session(self.rig)
        self.settings = procedure_settings(self.twin.config, settling, flush, feed_window_c,
                                           blank_max_age_h)
        self.procedure = Procedure(self.session, self.settings)
        self.truths: dict[int, GroundTruth] = {}
        self.tank = TankState()
        self._reagents: dict[str, float] = dict.fromkeys(
            ("indium_halide", "phosphine", "shell_zn_s", "solvent"), 0.0)
        self._product_mg = 0.0
        self._run_index = 0
        self._closed = False
        #: The run index and first point of the settle whose scatter a dynamic stream keeps
        #: (:meth:`scatter`); None when no stream runs on.
        self.stream_scatter: tuple[int, dict[str, Any]] | None = None

    @property
    def lab_clock_h(self) -> float:
        """Virtual lab time since the executor started, h."""
        return self.rig.clock.now_min() / 60.0

    @property
    def reagent_ml(self) -> dict[str, float]:
        """Cumulative reagent volumes, mL by reagent."""
        return dict(self._reagents)

    @property
    def run_index(self) -> int:
        """Index of the next run (= number of runs attempted)."""
        return self._run_index

    @property
    def last_shutdown(self) -> None:
        """Always None: the simulated rig has nothing a person must make safe."""
        return None

    def _book(self) -> dict[str, float]:
        """Add what the pumps delivered since the last booking (running ones so far)."""
        monitor = self.session.monitor
        monitor.book_running()  # a trajectory ends with its feeds on: book them up to now
        spent: dict[str, float] = {}
        for role, v in monitor.take_delivered().items():
            name = REAGENT_OF_ROLE.get(role)
            if name is not None:
                spent[name] = spent.get(name, 0.0) + v
        for name, v in spent.items():
            self._reagents[name] = self._reagents.get(name, 0.0) + v
        return spent

    def run(self, conditions: Conditions) -> Measurement:
        """Run one experiment (the procedure on the simulated rig) and take the spectra.

        Raises:
            ConditionsError: Conditions outside the simulated reactor's envelope (nothing ran).
            ExperimentFailed: Clogging, gas bubbles or no emission (clock and reagents advanced,
                the tanks flushed clean).
        """
        self.procedure.plan(conditions)  # refuse before anything moves
        check_before_run(self.session)  # a fault found between experiments: a rig event
        k = self._run_index
        self._run_index += 1
        self.stream_scatter = None
        rng = np.random.default_rng([self.seed, k])
        truth = self.twin.truth(conditions)
        self.truths[k] = truth
        realized = self.twin.jitter(conditions, rng)
        self.session.failure = self.twin.draw_failure(truth, realized, rng.random(4))
        self.session.fail_at_min = math.inf
        self.session.context = f"run {k}, conditions {conditions.as_dict()}"
        self.rig.reactor.reseed([self.seed, k, 1])
        self.rig.reactor.pl_gain = 1.0 + self.twin.config.noise.qy_readout_rel \
            * float(rng.standard_normal())
        self.rig.reactor.realize = _realizer(conditions, realized, self.twin.config)
        started_h = self.lab_clock_h
        try:
            result = self.procedure.run(conditions, self.tank, k)
        except ExperimentFailed as err:
            if not isinstance(err, DeviceFault):
                self.session.failure, self.session.fail_at_min = None, math.inf
                self.procedure.clean_after_failure(conditions, self.tank)
            self._book()
            raise
        finally:
            self.rig.reactor.realize = None
        spent = self._book()
        mg = 1000.0 * throughput_g_h(realized, self.twin.config, truth.conversion) \
            * result.feed_min / 60.0
        self._product_mg += mg
        m = self._measurement(conditions, result, k=k, started_h=started_h, spent=spent,
                              product_mg=mg)
        remember_reading(self.tank, m)
        return m

    def run_trajectory(self, trajectory: Any, limits: Any, *, frame_interval_min: float,
                       settle: bool | None = None) -> Any:
        """A dynamic experiment: :func:`autolab.executors.ramp.run_on_simulated`."""
        from autolab.executors.ramp import run_on_simulated  # noqa: PLC0415 - import cycle

        return run_on_simulated(self, trajectory, limits, frame_interval_min=frame_interval_min,
                                settle=settle)

    def _measurement(self, c: Conditions, result: ProcedureResult, *, k: int, started_h: float,
                     spent: dict[str, float], product_mg: float) -> Measurement:
        cfg = self.twin.config
        header = (f"run {k}: seed [{self.seed}, {k}], orientation {cfg.orientation}, "
                  f"settling {self.settings.settling}, flush {self.settings.flush}")
        return Measurement(
            conditions=c.as_dict(), spectra=result.spectra, qy_reference=self.twin.qy_reference,
            started_lab_h=started_h, finished_lab_h=self.lab_clock_h, reagent_ml=spent,
            product_mg=product_mg, trace=result.trace,
            device_log=(header, *result.events),
            metadata={"executor": self.name, "orientation": cfg.orientation,
                      "run_index": float(k), "n_core_tanks": float(cfg.n_core_tanks),
                      "n_shell_tanks": float(cfg.n_shell_tanks),
                      **result.metadata()})

    def scatter(self, start: Conditions, k: int) -> None:
        """Draw the rig's scatter of a dynamic stream settled at ``start`` in run ``k``.

        From ``[seed, k]``, as a steady run draws its own; the stream keeps it (and the
        detector noise running on from ``[seed, k, 1]``) while later trajectories continue.
        """
        rng = np.random.default_rng([self.seed, k])
        reactor = self.rig.reactor
        reactor.reseed([self.seed, k, 1])
        reactor.pl_gain = 1.0 + self.twin.config.noise.qy_readout_rel \
            * float(rng.standard_normal())
        reactor.realize = _realizer(start, self.twin.jitter(start, rng), self.twin.config)
        self.stream_scatter = (k, start.as_dict())

    def state_dict(self) -> dict[str, Any]:
        """JSON-compatible state: run counter, clock, reagents, tanks, the rig's physics.

        While a dynamic stream runs on (feeds left on at a trajectory's end) also ``stream``:
        the pumps' commands, the settle's scatter and the detector noise's generator, so a
        resumed campaign continues the stream as the uninterrupted one would.
        """
        state = {"executor": self.name, "seed": self.seed, "run_index": self._run_index,
                 "clock_min": self.rig.clock.now_min(), "reagent_ml": dict(self._reagents),
                 "product_mg": self._product_mg, "tank": self.tank.to_dict(),
                 "reactor": self.rig.reactor.state_dict()}
        commands = self.session.monitor.commands_state()
        if commands and self.stream_scatter is not None:
            reactor = self.rig.reactor
            state["stream"] = {"commands": commands, "scatter_run": self.stream_scatter[0],
                               "scatter_start": self.stream_scatter[1],
                               "pl_gain": reactor.pl_gain,
                               "noise": reactor.rng.bit_generator.state}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the seed is kept from the constructor)."""
        self._run_index = int(state["run_index"])
        self.rig.clock.set_min(float(state["clock_min"]))
        self._reagents = {k: float(v) for k, v in state["reagent_ml"].items()}
        self._product_mg = float(state.get("product_mg", 0.0))
        self.tank = TankState.from_dict(state.get("tank"))
        if "reactor" in state:
            self.rig.reactor.load_state_dict(state["reactor"])
        stream = state.get("stream")
        if stream is not None:  # the feeds run on at a trajectory's end: continue that stream
            self.scatter(Conditions.from_mapping(stream["scatter_start"]),
                         int(stream["scatter_run"]))
            reactor = self.rig.reactor
            reactor.pl_gain = float(stream["pl_gain"])
            reactor.rng.bit_generator.state = stream["noise"]
            self.session.monitor.load_commands_state(stream["commands"])

    def safe_state(self) -> None:
        """The soft shutdown of the serial rig, on the virtual clock (idempotent).

        Feeds off; if the tanks hold product, a solvent flush that leaves them clean;
        heaters to ambient until every block is below :data:`SAFE_TEMPERATURE_C`; stirrers off.
        The clock advances by what that takes, as the lab's would.
        """
        session, mon = self.session, self.session.monitor
        session.failure, session.fail_at_min = None, math.inf
        mon.take_faults()  # a fault still pending must not abort the shutdown's waits
        for role in self.rig.pumps:
            mon.stop(role)
        if self.tank.conditions is not None:
            prev = Conditions.from_mapping(self.tank.conditions)
            self.procedure.clean_after_failure(prev, self.tank)
        ambient = self.twin.config.ambient_c
        for h in self.rig.heaters.values():
            h.set_temperature_c(ambient)
        waited = 0.0
        while max(h.temperature_c() for h in self.rig.heaters.values()) >= SAFE_TEMPERATURE_C \
                and waited < COOL_TIMEOUT_MIN:
            session.wait_min(1.0)
            waited += 1.0
        for st in self.rig.stirrers.values():
            st.stop()
        self._book()

    def close(self) -> None:
        """Go to the safe state; further calls do nothing."""
        if not self._closed:
            self.safe_state()
            self._closed = True


def _realizer(setpoint: Conditions, realized: Conditions, config: TwinConfig) -> Any:
    """How this run's rig scatters around what its pumps and heaters are set to.

    The blocks' offsets apply to the stage temperatures and to every tank's (the simulated rig
    heats each tank, so its feeds always carry a per-tank profile), by the twin's one rule
    (:func:`~autolab.twin.twin.shift_temperatures`).
    """
    dt_core = realized.t_core_c - setpoint.t_core_c
    dt_shell = realized.t_shell_c - setpoint.t_shell_c
    scale = {n: getattr(realized, n) / getattr(setpoint, n)
             for n in ("tau_core_min", "tau_shell_min", "cl_to_i", "s_to_zn", "p_to_in")
             if math.isfinite(getattr(setpoint, n))}

    # memoized: the rig asks again on every step of the tanks while the same pumps and blocks run
    @functools.lru_cache(maxsize=1024)
    def realize(c: Conditions) -> Conditions:
        return replace(shift_temperatures(c, dt_core, dt_shell, config),
                       **{n: getattr(c, n) * f for n, f in scale.items()})
    return realize
