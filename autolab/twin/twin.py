"""The digital twin: a stateful CSTR cascade on a virtual clock around the pure model.

:class:`DigitalTwin` owns what a real reactor owns (lab clock, reagent totals, what is in the
tanks, heater block temperatures, run counter) and turns conditions into a raw
:class:`~autolab.records.Measurement` plus a separate :class:`GroundTruth`. All randomness of run
*k* comes from ``np.random.default_rng([seed, k])``, so a twin restored from :meth:`state_dict`
after run *k* produces bit-identical readings for run *k + 1*.

One experiment: flush the previous product with solvent, ramp the heater blocks at finite rates
(pumps idle), feed the new reagents for ``settle_residence_times × (tau_core + tau_shell)`` while
taking emission frames, then acquire. The outlet during settling is a mixture of the previous
product (washing out of the tanks, exact linear tanks-in-series ODE) and the new one, so a reading
taken too early is visibly off. The new product is taken at its steady-state properties during
the transient (its size/shell history inside the tanks is not resolved).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import ConditionsError, ExperimentFailed
from autolab.records import Conditions, Measurement, QYReference, Spectra, SpectralTrace
from autolab.twin.cascade import (
    flow_plan,
    ramp_min,
    tank_times_min,
    throughput_g_h,
    washout,
)
from autolab.twin.chemistry import ConditionArrays, failure_probabilities
from autolab.twin.config import TwinConfig
from autolab.twin.model import features_from_states, states
from autolab.twin.optics import (
    absorbance_shape,
    dye_counts,
    emission_per_nm,
    lamp_counts,
    mixture_pl_counts,
    read_frame,
)

FloatArray = NDArray[np.float64]

#: Physical envelope of the simulated reactor: (lower, upper) per condition, inclusive.
ENVELOPE: dict[str, tuple[float, float]] = {
    "t_core_c": (100.0, 260.0),
    "tau_core_min": (1.0, 120.0),
    "t_shell_c": (150.0, 340.0),
    "tau_shell_min": (1.0, 120.0),
    "cl_to_i": (0.01, math.inf),
    "s_to_zn": (0.2, 10.0),
    "p_to_in": (0.5, 10.0),
}


def check_envelope(conditions: Conditions) -> None:
    """Raise :class:`ConditionsError` if a condition lies outside the twin's reactor envelope."""
    if not isinstance(conditions, Conditions):
        raise ConditionsError("conditions", math.nan, "a Conditions instance",
                              f"got {type(conditions).__name__}")
    for name, (lo, hi) in ENVELOPE.items():
        v = float(getattr(conditions, name))
        if not lo <= v <= hi:
            raise ConditionsError(name, v, f"[{lo:g}, {hi:g}]", "outside the twin's reactor")


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Noise-free steady state of one condition set (never part of a Measurement).

    Attributes:
        pl_peak_nm: Peak of the noise-free emission spectrum (fine grid), nm.
        fwhm_nm: FWHM of that spectrum, nm.
        qy: Total quantum yield (band edge + trap), fraction.
        qy_trap: Trap-emission part of ``qy``.
        abs_peak_nm: First-exciton absorption peak, nm.
        mean_edge_nm: Mean InP tetrahedron edge length, nm.
        size_cv: Relative spread of the edge length.
        shell_ml: ZnS shell thickness, monolayers (0 for cores).
        conversion: In conversion of the core stage.
        absorbance_at_excitation: Sample absorbance at the excitation wavelength.
        throughput_g_h: InP production rate of the core stage, g/h.
        failure_probability: Failure mode -> probability at these conditions.
        wavelengths_nm: Detector grid, ``(P,)``.
        absorbance: Noise-free sample absorbance on the grid, ``(P,)``.
        emission_per_nm: Emission per absorbed photon per nm on the grid (∫ = qy), ``(P,)``.
    """

    pl_peak_nm: float
    fwhm_nm: float
    qy: float
    qy_trap: float
    abs_peak_nm: float
    mean_edge_nm: float
    size_cv: float
    shell_ml: float
    conversion: float
    absorbance_at_excitation: float
    throughput_g_h: float
    failure_probability: dict[str, float]
    wavelengths_nm: FloatArray = field(repr=False)
    absorbance: FloatArray = field(repr=False)
    emission_per_nm: FloatArray = field(repr=False)


@dataclass
class _TwinState:
    run_index: int = 0
    clock_min: float = 0.0
    reagent_ml: dict[str, float] = field(default_factory=lambda: {
        "indium_halide": 0.0, "phosphine": 0.0, "shell_zn_s": 0.0, "solvent": 0.0})
    product_mg: float = 0.0
    tank_product: list[float] = field(default_factory=list)
    tank_conditions: dict[str, float] | None = None
    t_core_block_c: float | None = None
    t_shell_block_c: float | None = None


class DigitalTwin:
    """Seeded digital twin of the InP/ZnS CSTR cascade.

    Args:
        config: Twin configuration (reactor, chemistry, optics, detector, noise, failures).
        seed: Seed of all noise and failure draws (combined with the run index).
        qy_reference: The reference dye reported with every measurement.
    """

    def __init__(self, config: TwinConfig | None = None, seed: int = 0,
                 qy_reference: QYReference | None = None) -> None:
        self.config = config or TwinConfig()
        self.seed = int(seed)
        self.qy_reference = qy_reference or QYReference()
        d = self.config.detector
        self.wavelengths_nm: FloatArray = np.linspace(d.wavelength_min_nm, d.wavelength_max_nm,
                                                      d.n_pixels)
        self._state = _TwinState()
        self._state.t_core_block_c = self.config.ambient_c
        self._state.t_shell_block_c = self.config.ambient_c

    # ----------------------------------------------------------------------------- truth
    def _truth(self, conditions: Conditions, core_only: bool) -> GroundTruth:
        cfg = self.config
        c = ConditionArrays.from_conditions([conditions])
        core, shell = states(c, cfg, core_only=core_only)
        feats = features_from_states(core, shell, cfg, with_abs=True)
        wl = self.wavelengths_nm
        a = (cfg.optics.absorbance_1s_full * core.conversion[0]
             * absorbance_shape(wl, core, shell, cfg.chemistry, cfg.optics)[0])
        em = emission_per_nm(wl, core, shell, cfg.chemistry, cfg.optics)[0]
        fail = failure_probabilities(c, core, shell, cfg.failures)
        return GroundTruth(
            pl_peak_nm=float(feats.pl_peak_nm[0]), fwhm_nm=float(feats.fwhm_nm[0]),
            qy=float(feats.qy[0]), qy_trap=float(shell.qy_trap[0]),
            abs_peak_nm=float(feats.abs_peak_nm[0]),
            mean_edge_nm=float(core.mean_edge_a[0]) / 10.0, size_cv=float(core.size_cv[0]),
            shell_ml=float(shell.shell_ml[0]), conversion=float(core.conversion[0]),
            absorbance_at_excitation=float(np.interp(cfg.detector.excitation_nm, wl, a)),
            throughput_g_h=throughput_g_h(conditions, cfg, float(core.conversion[0])),
            failure_probability={k: float(v[0]) for k, v in fail.items()},
            wavelengths_nm=wl, absorbance=a, emission_per_nm=em)

    def _spectra(self, conditions: Conditions) -> tuple[FloatArray, FloatArray, float, float]:
        """Noise-free absorbance and emission on the detector grid, plus QY and conversion."""
        cfg = self.config
        core, shell = states(ConditionArrays.from_conditions([conditions]), cfg)
        wl = self.wavelengths_nm
        a = (cfg.optics.absorbance_1s_full * core.conversion[0]
             * absorbance_shape(wl, core, shell, cfg.chemistry, cfg.optics)[0])
        em = emission_per_nm(wl, core, shell, cfg.chemistry, cfg.optics)[0]
        return a, em, float(shell.qy_band[0] + shell.qy_trap[0]), float(core.conversion[0])

    def truth(self, conditions: Conditions) -> GroundTruth:
        """Noise-free steady state of the full core/shell product (pure; no clock, no state).

        Raises:
            ConditionsError: Conditions outside the twin's reactor envelope.
        """
        check_envelope(conditions)
        return self._truth(conditions, core_only=False)

    def core_truth(self, conditions: Conditions) -> GroundTruth:
        """Noise-free steady state of the core stage alone (bare InP cores).

        The shell fields of ``conditions`` are ignored; the QY of bare cores is nominal (~3 %).
        """
        check_envelope(conditions)
        return self._truth(conditions, core_only=True)

    # ----------------------------------------------------------------------------- state
    @property
    def lab_clock_h(self) -> float:
        """Virtual lab time since the twin started, h."""
        return self._state.clock_min / 60.0

    @property
    def reagent_ml(self) -> dict[str, float]:
        """Cumulative reagent volumes, mL by reagent."""
        return dict(self._state.reagent_ml)

    @property
    def run_index(self) -> int:
        """Index of the next run (= number of runs attempted)."""
        return self._state.run_index

    def state_dict(self) -> dict[str, Any]:
        """JSON-compatible state: run counter, clock, reagent totals, tank contents, blocks."""
        s = self._state
        return {"run_index": s.run_index, "clock_min": s.clock_min,
                "reagent_ml": dict(s.reagent_ml), "product_mg": s.product_mg,
                "tank_product": list(s.tank_product),
                "tank_conditions": None if s.tank_conditions is None else dict(s.tank_conditions),
                "t_core_block_c": s.t_core_block_c, "t_shell_block_c": s.t_shell_block_c,
                "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (the seed is kept from the constructor)."""
        self._state = _TwinState(
            run_index=int(state["run_index"]), clock_min=float(state["clock_min"]),
            reagent_ml={k: float(v) for k, v in state["reagent_ml"].items()},
            product_mg=float(state.get("product_mg", 0.0)),
            tank_product=[float(v) for v in state.get("tank_product", [])],
            tank_conditions=(None if state.get("tank_conditions") is None
                             else {k: float(v) for k, v in state["tank_conditions"].items()}),
            t_core_block_c=state.get("t_core_block_c"),
            t_shell_block_c=state.get("t_shell_block_c"))

    def _spend(self, volumes: dict[str, float]) -> None:
        for k, v in volumes.items():
            self._state.reagent_ml[k] = self._state.reagent_ml.get(k, 0.0) + v

    def safe_state(self) -> None:
        """Stop feeds, flush the tanks with solvent, cool the blocks (advances the clock)."""
        s = self._state
        cfg = self.config
        if s.tank_conditions is not None and any(v > 0 for v in s.tank_product):
            prev = Conditions(**s.tank_conditions)
            tau = prev.tau_core_min + prev.tau_shell_min
            t_flush = max(cfg.flush_residence_times, 1.0) * tau
            self._spend({"solvent": flow_plan(prev, cfg).shell_ml_min * t_flush})
            s.clock_min += t_flush
            s.tank_product = []
        cool = max(ramp_min(s.t_core_block_c or cfg.ambient_c, cfg.ambient_c, cfg),
                   ramp_min(s.t_shell_block_c or cfg.ambient_c, cfg.ambient_c, cfg))
        s.clock_min += cool
        s.t_core_block_c = s.t_shell_block_c = cfg.ambient_c

    # ----------------------------------------------------------------------------- run
    def _jitter(self, conditions: Conditions, rng: np.random.Generator) -> Conditions:
        nz = self.config.noise
        e = rng.standard_normal(7)
        return Conditions(
            t_core_c=conditions.t_core_c + nz.temperature_jitter_c * e[0],
            tau_core_min=conditions.tau_core_min * (1 + nz.flow_jitter_rel * e[1]),
            t_shell_c=conditions.t_shell_c + nz.temperature_jitter_c * e[2],
            tau_shell_min=conditions.tau_shell_min * (1 + nz.flow_jitter_rel * e[3]),
            cl_to_i=conditions.cl_to_i * (1 + nz.ratio_jitter_rel * e[4]),
            s_to_zn=conditions.s_to_zn * (1 + nz.ratio_jitter_rel * e[5]),
            p_to_in=conditions.p_to_in * (1 + nz.ratio_jitter_rel * e[6]))

    def run(self, conditions: Conditions, settle_residence_times: float | None = None,
            ) -> tuple[Measurement, GroundTruth]:
        """Run one experiment on the virtual clock.

        Args:
            conditions: What to run.
            settle_residence_times: Override of the configured settling time (in residence
                times of the cascade); values below the configured one read the outlet early
                (for studying transients; the executor never does this).

        Returns:
            The raw measurement and the noise-free truth at the nominal conditions.

        Raises:
            ConditionsError: Conditions outside the twin's reactor envelope (nothing happens).
            ExperimentFailed: Clogging, gas bubbles, no emission; the clock, reagent totals
                and tank contents are already updated.
        """
        check_envelope(conditions)
        cfg = self.config
        s = self._state
        k = s.run_index
        s.run_index += 1
        rng = np.random.default_rng([self.seed, k])
        truth = self.truth(conditions)
        actual = self._jitter(conditions, rng)
        u_fail = rng.random(4)
        started_min = s.clock_min
        log: list[str] = [f"run {k}: seed [{self.seed}, {k}], orientation {cfg.orientation}"]

        def stamp(msg: str) -> None:
            log.append(f"[t={s.clock_min - started_min:7.1f} min] {msg}")

        # 1) flush the previous product (partially) with solvent
        times_prev = None
        tank = np.asarray(s.tank_product, dtype=np.float64)
        if s.tank_conditions is not None and tank.size and cfg.flush_residence_times > 0:
            prev = Conditions(**s.tank_conditions)
            times_prev = tank_times_min(prev, cfg)
            t_flush = cfg.flush_residence_times * (prev.tau_core_min + prev.tau_shell_min)
            tank = washout(tank, times_prev, t_flush, 0.0)
            self._spend({"solvent": flow_plan(prev, cfg).shell_ml_min * t_flush})
            s.clock_min += t_flush
            stamp(f"solvent flush {t_flush:.1f} min; old product left at outlet "
                  f"{tank[-1]:.3f}")
        # 2) ramp the heater blocks (pumps idle)
        t_ramp = max(ramp_min(s.t_core_block_c or cfg.ambient_c, conditions.t_core_c, cfg),
                     ramp_min(s.t_shell_block_c or cfg.ambient_c, conditions.t_shell_c, cfg))
        s.clock_min += t_ramp
        stamp(f"blocks at core {conditions.t_core_c:.1f} °C, shell {conditions.t_shell_c:.1f} °C "
              f"after {t_ramp:.1f} min ramp")
        s.t_core_block_c, s.t_shell_block_c = conditions.t_core_c, conditions.t_shell_c
        # 3) feed and settle
        plan = flow_plan(conditions, cfg)
        times = tank_times_min(conditions, cfg)
        tau_total = conditions.tau_core_min + conditions.tau_shell_min
        settle = cfg.settle_residence_times if settle_residence_times is None \
            else settle_residence_times
        t_settle = settle * tau_total
        old_tank = tank if tank.size == len(times) else np.zeros(len(times))
        stamp(f"feeds on: core {plan.core_ml_min:.3f} mL/min, shell {plan.shell_ml_min:.3f} "
              f"mL/min (bleed {plan.bleed_ml_min:.3f}, make-up {plan.makeup_ml_min:.3f})")

        def fail(reason: str, at_min: float, msg: str) -> ExperimentFailed:
            self._spend(plan.reagent_ml(at_min))
            s.product_mg += 1000.0 * throughput_g_h(actual, cfg, truth.conversion) * at_min / 60
            s.clock_min += at_min
            stamp(f"FAILED ({reason}): {msg}")
            # the cascade is flushed clean after a failure
            t_clean = tau_total
            self._spend({"solvent": plan.shell_ml_min * t_clean})
            s.clock_min += t_clean
            s.tank_product, s.tank_conditions = [], None
            return ExperimentFailed(reason, f"{msg} (run {k}, conditions {conditions.as_dict()})")

        p_clog = truth.failure_probability["clogging"]
        if u_fail[0] < p_clog:
            raise fail("clogging", t_settle * u_fail[1],
                       f"pressure rise: deposits blocked the cascade (the twin's clogging "
                       f"probability at these conditions: {p_clog:.0%})")
        if cfg.orientation == "horizontal" and \
                u_fail[2] < cfg.failures.bubble_probability_horizontal:
            raise fail("gas_bubbles", t_settle * u_fail[1],
                       "gas slugs from the aminophosphine redox displaced the liquid "
                       "(horizontal cascade)")
        if u_fail[3] < cfg.failures.base_failure_probability:
            raise fail("pump_stall", t_settle * u_fail[1], "a syringe pump stalled")

        # spectra of the previous and the new product (noise-free, at unit concentration)
        new_a, new_e, new_qy, new_conv = self._spectra(actual)
        prods_a = [new_a]
        prods_e = [new_e]
        if s.tank_conditions is not None and old_tank.any():
            old_a, old_e, _, _ = self._spectra(Conditions(**s.tank_conditions))
            prods_a.append(old_a)
            prods_e.append(old_e)
        a_stack = np.vstack(prods_a)
        e_stack = np.vstack(prods_e)
        det = cfg.detector
        ref = self.qy_reference
        k_pl = det.pl_counts_per_ms * det.pl_integration_ms
        wl = self.wavelengths_nm

        def outlet(t: float) -> FloatArray:
            w_new = washout(np.zeros(len(times)), times, t, 1.0)[-1]
            w = [w_new]
            if len(prods_a) > 1:
                w.append(washout(old_tank, times, t, 0.0)[-1])
            return np.asarray(w, dtype=np.float64)

        def frame(signal: FloatArray) -> FloatArray:
            return read_frame(signal, rng, dark_offset=det.dark_offset_counts,
                              read_noise=det.read_noise_counts,
                              gain=det.gain_counts_per_electron,
                              full_scale=det.full_scale_counts, shot_noise=cfg.noise.shot_noise)

        frame_times = (np.linspace(0.0, t_settle, cfg.trace_frames + 1)[1:]
                       if cfg.trace_frames else np.zeros(0))
        frames = []
        for t in frame_times:
            _, counts, _ = mixture_pl_counts(wl, outlet(float(t)), a_stack, e_stack,
                                             excitation_nm=det.excitation_nm, k_counts=k_pl,
                                             n_sample=ref.sample_refractive_index)
            frames.append(frame(counts))
        s.clock_min += t_settle
        stamp(f"settled {settle:g} residence times ({t_settle:.1f} min), "
              f"{len(frames)} trace frames")
        if truth.failure_probability["no_emission"] >= 0.5 or new_qy < cfg.failures.min_qy \
                or new_conv < cfg.failures.min_conversion:
            s.clock_min -= t_settle
            raise fail("no_emission", t_settle,
                       f"no emission above noise (conversion {new_conv:.2f})")
        # 4) acquire
        w_read = outlet(t_settle)
        a_mix, pl_counts, _ = mixture_pl_counts(wl, w_read, a_stack, e_stack,
                                                excitation_nm=det.excitation_nm, k_counts=k_pl,
                                                n_sample=ref.sample_refractive_index)
        readout = 1.0 + cfg.noise.qy_readout_rel * float(rng.standard_normal())
        blank = lamp_counts(wl, det.lamp_peak_counts)
        dyes = dye_counts(wl, k_counts=k_pl, qy=ref.qy, absorbance=ref.absorbance_at_excitation,
                          n_dye=ref.refractive_index, peak_nm=det.dye_peak_nm,
                          fwhm_nm=det.dye_fwhm_nm)

        zeros = np.zeros_like(wl)
        spectra = Spectra(
            wavelengths_nm=wl.copy(), dark_abs_counts=frame(zeros), blank_counts=frame(blank),
            sample_counts=frame(blank * 10.0 ** (-a_mix)), dark_pl_counts=frame(zeros),
            pl_counts=frame(pl_counts * readout), dye_pl_counts=frame(dyes),
            abs_integration_ms=det.abs_integration_ms, pl_integration_ms=det.pl_integration_ms,
            saturation_counts=det.full_scale_counts, excitation_nm=det.excitation_nm,
            path_length_cm=det.path_length_cm)
        run_min = t_settle + cfg.acquire_min
        self._spend(plan.reagent_ml(run_min))
        spent = plan.reagent_ml(run_min)
        product_mg = 1000.0 * throughput_g_h(actual, cfg, new_conv) * run_min / 60.0
        s.product_mg += product_mg
        s.clock_min += cfg.acquire_min
        stamp(f"spectra acquired; outlet new-product fraction {w_read[0]:.4f}")
        # tanks now hold this product (residual older product is counted as solvent)
        s.tank_product = washout(np.zeros(len(times)), times, run_min, 1.0).tolist()
        s.tank_conditions = conditions.as_dict()
        finished_h = (s.clock_min - 0.0) / 60.0
        meas = Measurement(
            conditions=conditions.as_dict(), spectra=spectra, qy_reference=ref,
            started_lab_h=started_min / 60.0, finished_lab_h=finished_h, reagent_ml=spent,
            product_mg=product_mg,
            trace=SpectralTrace(times_min=frame_times.copy(),
                                pl_counts=np.asarray(frames).reshape(len(frames), len(wl)))
            if frames else None,
            device_log=tuple(log),
            metadata={"executor": "twin", "orientation": cfg.orientation, "run_index": float(k),
                      "n_core_tanks": float(cfg.n_core_tanks),
                      "n_shell_tanks": float(cfg.n_shell_tanks)})
        return meas, truth
