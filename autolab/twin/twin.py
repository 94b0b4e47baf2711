"""The digital twin as physics only: truth, spectra, products and failure probabilities.

:class:`DigitalTwin` holds no state: it says what a set of conditions makes (the noise-free
:class:`GroundTruth`, absorbance and emission on the detector grid), how a rig's realization
scatters around a setpoint (:meth:`DigitalTwin.jitter`) and whether a run fails chemically
(:meth:`DigitalTwin.draw_failure`). What a reactor owns (lab clock, reagent totals, tank contents,
heater blocks, run counter) lives in the simulated rig (:mod:`autolab.virtuallab.inprocess`),
which the one experiment procedure (:mod:`autolab.executors.procedure`) drives exactly as it
drives the serial rig.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import ConditionsError
from autolab.records import Conditions, QYReference
from autolab.twin.cascade import (
    check_tank_conditions,
    stage_tanks,
    tank_profile,
    throughput_g_h,
)
from autolab.twin.chemistry import ConditionArrays, failure_probabilities
from autolab.twin.config import TwinConfig
from autolab.twin.model import (
    condition_states,
    features_from_states,
    state_spectra,
    steady_spectra,
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
    check_tank_conditions(conditions)  # per-tank fields; the layout is checked per reactor


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


class DigitalTwin:
    """Physics of the InP/ZnS CSTR cascade (pure: no clock, no state, no noise of its own).

    Args:
        config: Twin configuration (reactor, chemistry, optics, detector, noise, failures).
        qy_reference: The reference dye reported with every measurement.
    """

    #: The chemistry has kinetics the transient cascade resolves (a response model without
    #: them sets this False and its steady products are carried through the washout instead).
    resolves_transients = True

    def __init__(self, config: TwinConfig | None = None,
                 qy_reference: QYReference | None = None) -> None:
        self.config = config or TwinConfig()
        self.qy_reference = qy_reference or QYReference()
        d = self.config.detector
        self.wavelengths_nm: FloatArray = np.linspace(d.wavelength_min_nm, d.wavelength_max_nm,
                                                      d.n_pixels)

    # ----------------------------------------------------------------------------- truth
    def _truth(self, conditions: Conditions, core_only: bool) -> GroundTruth:
        cfg = self.config
        c = ConditionArrays.from_conditions([conditions])
        core, shell = condition_states(conditions, cfg, core_only=core_only)
        feats = features_from_states(core, shell, cfg, with_abs=True)
        wl = self.wavelengths_nm
        a, em = state_spectra(wl, core, shell, cfg)
        fail = failure_probabilities(c, core, shell, cfg.failures,
                                     profile=tank_profile(conditions, cfg))
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
        return steady_spectra(conditions, self.config, self.wavelengths_nm)

    def product(self, conditions: Conditions) -> tuple[FloatArray, FloatArray, float, float]:
        """Steady product of a feed, as the simulated rig's cascade physics carries it.

        Returns absorbance and emission per absorbed photon per nm on the detector grid, the
        QY and the In conversion.

        Raises:
            ConditionsError: Conditions outside the twin's reactor envelope (no dots form).
        """
        check_envelope(conditions)
        check_tank_conditions(conditions, self.config)
        return self._spectra(conditions)

    def truth(self, conditions: Conditions) -> GroundTruth:
        """Noise-free steady state of the full core/shell product (pure; no clock, no state).

        Raises:
            ConditionsError: Conditions outside the twin's reactor envelope.
        """
        check_envelope(conditions)
        check_tank_conditions(conditions, self.config)
        return self._truth(conditions, core_only=False)

    def core_truth(self, conditions: Conditions) -> GroundTruth:
        """Noise-free steady state of the core stage alone (bare InP cores).

        The shell fields of ``conditions`` are ignored; the QY of bare cores is nominal (~3 %).
        """
        check_envelope(conditions)
        return self._truth(conditions, core_only=True)

    # ----------------------------------------------------------------------------- noise
    def jitter(self, conditions: Conditions, rng: np.random.Generator) -> Conditions:
        """What a rig realizes when set to ``conditions`` (flow, temperature, stock scatter).

        Draws seven standard normals from ``rng`` (the simulated rig's per-run generator). A
        per-tank temperature profile (``t_tank_c``) moves with its stage: the core tanks by the
        core offset and the shell tanks by the shell offset (:func:`shift_temperatures`), so a
        profile is scattered exactly as the stage temperatures it overrides would be.
        """
        nz = self.config.noise
        e = rng.standard_normal(7)
        shifted = shift_temperatures(conditions, nz.temperature_jitter_c * e[0],
                                     nz.temperature_jitter_c * e[2], self.config)
        return replace(
            shifted,
            tau_core_min=conditions.tau_core_min * (1 + nz.flow_jitter_rel * e[1]),
            tau_shell_min=conditions.tau_shell_min * (1 + nz.flow_jitter_rel * e[3]),
            cl_to_i=conditions.cl_to_i * (1 + nz.ratio_jitter_rel * e[4]),
            s_to_zn=conditions.s_to_zn * (1 + nz.ratio_jitter_rel * e[5]),
            p_to_in=conditions.p_to_in * (1 + nz.ratio_jitter_rel * e[6]))

    def draw_failure(self, truth: GroundTruth, realized: Conditions,
                     u: FloatArray) -> ChemistryFailure | None:
        """Whether a run fails, and how, from four uniform draws ``u`` (seeded per run).

        ``u[0]`` decides clogging (at the truth's clogging probability), ``u[1]`` when a
        failure strikes (as a fraction of the settling floor), ``u[2]`` gas bubbles
        (horizontal cascades), ``u[3]`` an unexplained pump stall. No emission is judged on
        the product the rig actually made (``realized``) and shows when settling ends.
        """
        cfg = self.config
        p_clog = truth.failure_probability["clogging"]
        if u[0] < p_clog:
            return ChemistryFailure("clogging", float(u[1]), "pressure rise: deposits blocked "
                                    f"the cascade (the twin's clogging probability at these "
                                    f"conditions: {p_clog:.0%})")
        if cfg.orientation == "horizontal" and u[2] < cfg.failures.bubble_probability_horizontal:
            return ChemistryFailure("gas_bubbles", float(u[1]), "gas slugs from the "
                                    "aminophosphine redox displaced the liquid (horizontal "
                                    "cascade)")
        if u[3] < cfg.failures.base_failure_probability:
            return ChemistryFailure("pump_stall", float(u[1]), "a syringe pump stalled")
        _, _, qy, conversion = self._spectra(realized)
        if truth.failure_probability["no_emission"] >= 0.5 or qy < cfg.failures.min_qy \
                or conversion < cfg.failures.min_conversion:
            return ChemistryFailure("no_emission", math.inf,
                                    f"no emission above noise (conversion {conversion:.2f})")
        return None


def shift_temperatures(conditions: Conditions, dt_core_c: float, dt_shell_c: float,
                       config: TwinConfig) -> Conditions:
    """``conditions`` with every temperature offset by its stage's block error, °C.

    The stage temperatures move by ``dt_core_c`` / ``dt_shell_c``, and so does each tank of a
    per-tank profile, by the offset of the stage it belongs to (the injection tank decides).
    The one rule for the jitter of a setpoint and for what the simulated rig's blocks realize.
    """
    n_core, _ = stage_tanks(conditions, config)
    tanks = tuple(v + (dt_core_c if i < n_core else dt_shell_c)
                  for i, v in enumerate(conditions.t_tank_c))
    return replace(conditions, t_core_c=conditions.t_core_c + dt_core_c,
                   t_shell_c=conditions.t_shell_c + dt_shell_c, t_tank_c=tanks)


@dataclass(frozen=True)
class ChemistryFailure:
    """A run that fails for chemical reasons (the simulated rig raises it while feeding).

    Attributes:
        reason: ``clogging``, ``gas_bubbles``, ``pump_stall`` or ``no_emission``.
        at_fraction: When, as a fraction of the settling floor after the feeds start
            (``inf``: when settling ends).
        message: What a chemist would see.
    """

    reason: str
    at_fraction: float
    message: str
