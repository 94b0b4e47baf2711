"""Noise-free steady state of the whole cascade, vectorized over many condition sets.

This is the fast path the optimizer benchmarks use for dense searches of the noiseless twin:
:func:`truth_features` evaluates PL peak, FWHM, QY and first-exciton peak for ``n`` condition
sets at once on per-condition fine wavelength windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from autolab.constants import HC_EV_NM
from autolab.records import Conditions
from autolab.twin.cascade import tank_profile
from autolab.twin.chemistry import (
    ConditionArrays,
    CoreState,
    ShellState,
    TankProfile,
    bare_shell,
    core_stage,
    shell_stage,
)
from autolab.twin.config import TwinConfig
from autolab.twin.optics import (
    absorbance_shape,
    emission_per_nm,
    local_peak_near,
    peak_and_fwhm,
    size_nodes,
    transition_energies,
)

FloatArray = NDArray[np.float64]

#: Emission window around the expected peak, nm (the red side holds the trap tail).
PL_WINDOW_NM = (-90.0, 150.0)
#: Step of the fine emission/absorption grids used for the truth, nm.
FINE_STEP_NM = 0.5
#: Absorption window around the expected first exciton, nm.
ABS_WINDOW_NM = (-60.0, 60.0)


@dataclass(frozen=True, eq=False)
class FeatureArrays:
    """Noise-free features of ``n`` condition sets, arrays of shape ``(n,)``.

    Attributes:
        pl_peak_nm: Peak of the noise-free emission spectrum, nm.
        fwhm_nm: Its full width at half maximum, nm.
        qy: Total quantum yield (band edge + trap), fraction.
        abs_peak_nm: First-exciton absorption peak, nm (NaN unless requested).
        mean_edge_a: Mean core edge length, Å.
        size_cv: Relative spread of core edge length.
        shell_ml: ZnS thickness, monolayers.
        conversion: In conversion of the core stage.
    """

    pl_peak_nm: FloatArray
    fwhm_nm: FloatArray
    qy: FloatArray
    abs_peak_nm: FloatArray
    mean_edge_a: FloatArray
    size_cv: FloatArray
    shell_ml: FloatArray
    conversion: FloatArray


def states(c: ConditionArrays, config: TwinConfig, core_only: bool = False, *,
           profile: TankProfile | None = None) -> tuple[CoreState, ShellState]:
    """Core and shell states of ``n`` condition sets (noise-free steady state).

    ``profile``: per-tank temperatures, stirring and injection layout
    (:func:`autolab.twin.cascade.tank_profile`); default the plain two-stage reactor.
    """
    n_core = profile.n_core if profile else config.n_core_tanks
    n_shell = profile.n_shell if profile else config.n_shell_tanks
    core = core_stage(c, config.chemistry, n_core,
                      horizontal=config.orientation == "horizontal",
                      n_shell_tanks=0 if core_only else n_shell, profile=profile)
    shell = bare_shell(len(c)) if core_only else shell_stage(c, config.chemistry, n_shell, core,
                                                             profile=profile)
    return core, shell


def condition_states(conditions: Conditions, config: TwinConfig,
                     core_only: bool = False) -> tuple[CoreState, ShellState]:
    """Steady core and shell state of one condition set, per-tank conditions included.

    The one steady state of the twin: :meth:`autolab.twin.DigitalTwin.truth` and the
    transient cascade's fixed point (:mod:`autolab.twin.transient`) both use it.

    Raises:
        ConditionsError: Per-tank conditions this cascade cannot realize (names the field).
    """
    return states(ConditionArrays.from_conditions([conditions]), config, core_only,
                  profile=tank_profile(conditions, config))


def state_spectra(wl_nm: FloatArray, core: CoreState, shell: ShellState,
                  config: TwinConfig) -> tuple[FloatArray, FloatArray]:
    """Absorbance and emission per absorbed photon per nm of the first state, on ``wl_nm``.

    The one formula of the twin's noise-free spectra at the outlet's full concentration: the
    truth, the steady product the rigs carry and the transient cascade's fixed point all read
    it, so they cannot drift apart.
    """
    a = (config.optics.absorbance_1s_full * core.conversion[0]
         * absorbance_shape(wl_nm, core, shell, config.chemistry, config.optics)[0])
    em = emission_per_nm(wl_nm, core, shell, config.chemistry, config.optics)[0]
    return a, em


def steady_spectra(conditions: Conditions, config: TwinConfig,
                   wl_nm: FloatArray) -> tuple[FloatArray, FloatArray, float, float]:
    """Steady absorbance and emission of one feed on ``wl_nm``, plus its total QY and conversion.

    Raises:
        ConditionsError: Per-tank conditions this cascade cannot realize (names the field).
    """
    core, shell = condition_states(conditions, config)
    a, em = state_spectra(wl_nm, core, shell, config)
    return a, em, float(shell.qy_band[0] + shell.qy_trap[0]), float(core.conversion[0])


def nominal_energies(core: CoreState, shell: ShellState,
                     config: TwinConfig) -> tuple[FloatArray, FloatArray]:
    """Absorption and emission energy of the mean-size dot, eV, each ``(n,)``."""
    e_abs, e_pl = transition_energies(core.mean_edge_a[:, None], shell, config.chemistry,
                                      config.optics)
    return e_abs[:, 0], e_pl[:, 0]


def features_from_states(core: CoreState, shell: ShellState, config: TwinConfig,
                         with_abs: bool = True) -> FeatureArrays:
    """Peak, FWHM, QY (and optionally the first-exciton peak) from states, all ``(n,)``."""
    e_abs, e_pl = nominal_energies(core, shell, config)
    centre = HC_EV_NM / e_pl
    offs = np.arange(PL_WINDOW_NM[0], PL_WINDOW_NM[1] + FINE_STEP_NM / 2, FINE_STEP_NM)
    wl = centre[:, None] + offs[None, :]
    em = emission_per_nm(wl, core, shell, config.chemistry, config.optics)
    peak, fwhm = peak_and_fwhm(wl, em)
    n = len(core.mean_edge_a)
    abs_peak = np.full(n, np.nan)
    if with_abs:
        # A common grid keeps local_peak_near simple; chunk to bound memory.
        lo = float(np.min(HC_EV_NM / e_abs)) + ABS_WINDOW_NM[0]
        hi = float(np.max(HC_EV_NM / e_abs)) + ABS_WINDOW_NM[1]
        grid = np.arange(max(lo, 250.0), hi + FINE_STEP_NM, FINE_STEP_NM)
        a = absorbance_shape(grid, core, shell, config.chemistry, config.optics)
        abs_peak = local_peak_near(grid, a, HC_EV_NM / e_abs)
    return FeatureArrays(pl_peak_nm=peak, fwhm_nm=fwhm, qy=shell.qy_band + shell.qy_trap,
                         abs_peak_nm=abs_peak, mean_edge_a=core.mean_edge_a,
                         size_cv=core.size_cv, shell_ml=shell.shell_ml,
                         conversion=core.conversion)


def truth_features(c: ConditionArrays, config: TwinConfig, with_abs: bool = False,
                   chunk: int = 2048) -> FeatureArrays:
    """Noise-free features for many condition sets (the dense-search fast path).

    Args:
        c: Conditions, arrays ``(n,)``.
        config: Twin configuration.
        with_abs: Also locate the first-exciton absorption peak (slower).
        chunk: Condition sets per vectorized block (bounds memory).

    Returns:
        Features, arrays ``(n,)``.
    """
    parts: list[FeatureArrays] = []
    n = len(c)
    for s in range(0, n, chunk):
        sub = ConditionArrays(*(getattr(c, f)[s:s + chunk] for f in (
            "t_core_c", "tau_core_min", "t_shell_c", "tau_shell_min", "cl_to_i", "s_to_zn",
            "p_to_in")))
        core, shell = states(sub, config)
        parts.append(features_from_states(core, shell, config, with_abs=with_abs))
    return FeatureArrays(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
        "pl_peak_nm", "fwhm_nm", "qy", "abs_peak_nm", "mean_edge_a", "size_cv", "shell_ml",
        "conversion")))


def core_features(c: ConditionArrays, config: TwinConfig) -> FeatureArrays:
    """Features of the bare cores (core stage only): first exciton, size, CV."""
    core, shell = states(c, config, core_only=True)
    return features_from_states(core, shell, config, with_abs=True)


def size_node_edges(core: CoreState) -> FloatArray:
    """Edge lengths of the size quadrature nodes, ``(n, K)`` Å (for plots and tests)."""
    return size_nodes(core)[0]
