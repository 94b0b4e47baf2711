"""Ground truth for the dynamic-mode honesty checks: outlet spectra of a ramp on the twin.

Two ways to make the outlet of a ramp, both independent of :mod:`autolab.dynamic.rtd`'s
quantile-path averages:

* :func:`quasi_steady_stream`: fluid elements sampled tank by tank (random exponential holding
  times in each tank's flow-weighted clock, walked back from the outlet), each carrying the
  twin's steady-state product of the conditions *it* experienced (its tanks' temperatures over
  its own time in them, its feeds at its entry); the outlet spectrum is the mixture of their
  emission spectra weighted by their absorbed light. This checks the RTD mapping and the
  uncertainty of mixing, assuming the chemistry follows the conditions quasi-statically;
* :func:`transient_stream`: any :class:`~autolab.twin.transient.CascadePhysics` run through
  the ramp, above all the transient twin (``TransientCascade``), which resolves the product
  history per tank with the chemistry's kinetics, and the simulated rig's tracer physics
  (``MixingCascade`` over ``DigitalTwin.product``, as the simulated rig runs it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from autolab.analysis import FeatureBatch, extract_features_batch
from autolab.dynamic import CascadeGeometry, Trajectory
from autolab.dynamic.channels import flatten
from autolab.records import BASE_CONDITIONS, Conditions, QYReference
from autolab.twin.chemistry import ConditionArrays
from autolab.twin.config import TwinConfig
from autolab.twin.model import (
    condition_states,
    features_from_states,
    states,
    truth_features,
)
from autolab.twin.optics import (
    absorbance_shape,
    dye_counts,
    emission_per_nm,
    lamp_counts,
    mixture_pl_counts,
    peak_and_fwhm,
    read_frame,
)
from autolab.twin.transient import CascadePhysics, OutletProduct, TankInputs

FloatArray = NDArray[np.float64]

#: Analyzer-like one-sigma errors the harness adds to the noise-free features.
FEATURE_SIGMA = {"pl_peak_nm": 0.3, "fwhm_nm": 0.6, "qy": 0.004}
#: Emission grid of the mixture spectra, nm.
GRID_NM = np.arange(420.0, 760.0, 0.5)


@dataclass(frozen=True, eq=False)
class Stream:
    """Noisy features of outlet readings, their sigmas, and the noise-free ones."""

    times_min: FloatArray
    features: dict[str, FloatArray]
    sigma: dict[str, FloatArray]
    clean: dict[str, FloatArray]


def _theta(tr: Trajectory, tau_channel: str, grid: FloatArray) -> FloatArray:
    # Exact for piecewise-linear tau: d(theta)/dt = 1/tau(t); Simpson on a fine grid.
    mid = 0.5 * (grid[1:] + grid[:-1])
    f0, fm, f1 = (1.0 / tr.values(tau_channel, x) for x in (grid[:-1], mid, grid[1:]))
    steps = (f0 + 4 * fm + f1) / 6.0 * np.diff(grid)
    return np.concatenate([[0.0], np.cumsum(steps)])


def element_conditions(tr: Trajectory, t_out: float, geo: CascadeGeometry, n_el: int,
                       rng: np.random.Generator) -> ConditionArrays:
    """Conditions experienced by ``n_el`` random elements leaving at ``t_out``."""
    n_t = geo.n_core_tanks + geo.n_shell_tanks
    span = np.array([0.0, tr.duration_min])
    tau0 = max(float(tr.values(c, span).max()) for c in ("tau_core_min", "tau_shell_min"))
    grid = np.linspace(t_out - 24.0 * tau0, t_out, 20001)
    th = {"c": _theta(tr, "tau_core_min", grid), "s": _theta(tr, "tau_shell_min", grid)}
    # per-tank holding times in the stage's flow-weighted clock (units of the stage's tau)
    hold = np.concatenate([rng.exponential(1.0 / geo.n_core_tanks, (n_el, geo.n_core_tanks)),
                           rng.exponential(1.0 / geo.n_shell_tanks, (n_el, geo.n_shell_tanks))],
                          axis=1)
    exits = np.empty((n_el, n_t + 1))  # exits[:, k] = time leaving tank k (k = n_t: the outlet)
    exits[:, n_t] = t_out
    for k in range(n_t - 1, -1, -1):
        stage = th["c"] if k < geo.n_core_tanks else th["s"]
        here = np.interp(exits[:, k + 1], grid, stage)
        exits[:, k] = np.interp(here - hold[:, k], stage, grid)
    nc = geo.n_core_tanks
    core = (exits[:, 0], exits[:, nc])
    shell = (exits[:, nc], exits[:, n_t])
    rules: dict[str, Callable[[], FloatArray]] = {
        "t_core_c": lambda: _avg(tr, "t_core_c", *core),
        "t_shell_c": lambda: _avg(tr, "t_shell_c", *shell),
        "tau_core_min": lambda: (core[1] - core[0]) / hold[:, :nc].sum(axis=1),
        "tau_shell_min": lambda: (shell[1] - shell[0]) / hold[:, nc:].sum(axis=1),
        "cl_to_i": lambda: tr.values("cl_to_i", core[0]),
        "p_to_in": lambda: tr.values("p_to_in", core[0]),
        "s_to_zn": lambda: tr.values("s_to_zn", shell[0]),
    }
    base = flatten(tr.points[0])
    cols = {ch: np.full(n_el, base[ch]) for ch in BASE_CONDITIONS}
    cols.update({ch: rules[ch]() for ch in tr.varying()})
    return ConditionArrays(**cols)


def _avg(tr: Trajectory, ch: str, a: FloatArray, b: FloatArray) -> FloatArray:
    """Clock-time average of a channel over each element's window (Simpson, 41 points)."""
    u = np.linspace(0.0, 1.0, 41)
    x = a[:, None] + (b - a)[:, None] * u[None, :]
    w = np.full(41, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return np.asarray(tr.values(ch, x) @ w / w.sum(), dtype=np.float64)


def _mixture_features(conds: ConditionArrays, config: TwinConfig) -> tuple[float, float, float]:
    core, shell = states(conds, config)
    em = emission_per_nm(GRID_NM, core, shell, config.chemistry, config.optics)
    a = absorbance_shape(np.array([config.detector.excitation_nm]), core, shell,
                         config.chemistry, config.optics)[:, 0] * core.conversion
    mix = (a[:, None] * em).sum(axis=0, keepdims=True)
    peak, fwhm = peak_and_fwhm(GRID_NM, mix)
    qy = float(np.sum(a * (shell.qy_band + shell.qy_trap)) / np.sum(a))
    return float(peak[0]), float(fwhm[0]), qy


def quasi_steady_stream(tr: Trajectory, times_min: FloatArray, geo: CascadeGeometry,
                        config: TwinConfig, *, n_el: int = 160, seed: int = 0) -> Stream:
    """Outlet features of a ramp from sampled fluid elements (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rows = [_mixture_features(element_conditions(tr, float(t), geo, n_el, rng), config)
            for t in times_min]
    clean = {k: np.array([r[j] for r in rows]) for j, k in enumerate(FEATURE_SIGMA)}
    return _noisy(np.asarray(times_min, dtype=np.float64), clean, rng)


def _noisy(t: FloatArray, clean: dict[str, FloatArray], rng: np.random.Generator) -> Stream:
    sigma = {k: np.full(len(t), s) for k, s in FEATURE_SIGMA.items()}
    feats = {k: v + sigma[k] * rng.standard_normal(len(t)) for k, v in clean.items()}
    return Stream(times_min=t, features=feats, sigma=sigma, clean=clean)


def truth_at(conds: list[Conditions], config: TwinConfig) -> dict[str, FloatArray]:
    """The twin's noise-free steady-state features at the given conditions.

    Plain conditions go through the vectorized fast path; per-tank ones through the twin's one
    steady state with the tank profile (``model.condition_states``).
    """
    if all(not c.t_tank_c and c.s_inject_tank == 0 and c.s_inject_count == 1 for c in conds):
        f = truth_features(ConditionArrays.from_conditions(conds), config)
        return {"pl_peak_nm": f.pl_peak_nm, "fwhm_nm": f.fwhm_nm, "qy": f.qy}
    rows = []
    for c in conds:
        core, shell = condition_states(c, config)
        f = features_from_states(core, shell, config, with_abs=False)
        rows.append((float(f.pl_peak_nm[0]), float(f.fwhm_nm[0]), float(f.qy[0])))
    return {k: np.array([r[j] for r in rows]) for j, k in enumerate(FEATURE_SIGMA)}


def run_outlets(physics: CascadePhysics, tr: Trajectory, times_min: FloatArray, *,
                dt_min: float = 0.5, settle_min: float = 300.0) -> list[OutletProduct]:
    """What the outlet cell sees at ``times_min`` while ``physics`` runs the trajectory.

    The physics first feeds ``tr.points[0]`` for ``settle_min`` (the trajectory's
    ``held_before``), then follows the trajectory in steps of ``dt_min`` with the conditions at
    each step's midpoint.
    """
    state = physics.step(physics.initial(), TankInputs.feeding(tr.points[0]), settle_min)
    outs: list[OutletProduct] = []
    now = 0.0
    for target in np.asarray(times_min, dtype=np.float64):
        while now < target - 1e-9:
            h = min(dt_min, float(target) - now)
            state = physics.step(state, TankInputs.feeding(tr.at(now + h / 2)), h)
            now += h
        outs.append(physics.outlet(state))
    return outs


def transient_stream(physics: CascadePhysics, tr: Trajectory, times_min: FloatArray,
                     config: TwinConfig, *, dt_min: float = 0.5, settle_min: float = 300.0,
                     seed: int = 0) -> Stream:
    """Outlet features of a ramp run on reactor physics: noise-free features plus
    :data:`FEATURE_SIGMA` noise (see :func:`run_outlets`)."""
    d = config.detector
    wl = np.linspace(d.wavelength_min_nm, d.wavelength_max_nm, d.n_pixels)
    rows = []
    for out in run_outlets(physics, tr, times_min, dt_min=dt_min, settle_min=settle_min):
        peak, fwhm = peak_and_fwhm(wl, out.emission_per_nm[None, :])
        rows.append((float(peak[0]), float(fwhm[0]), out.qy))
    clean = {k: np.array([r[j] for r in rows]) for j, k in enumerate(FEATURE_SIGMA)}
    return _noisy(np.asarray(times_min, dtype=np.float64), clean, np.random.default_rng(seed))


def analyzed_stream(physics: CascadePhysics, tr: Trajectory, times_min: FloatArray,
                    config: TwinConfig, *, settle_min: float = 300.0,
                    seed: int = 0) -> FeatureBatch:
    """The analyzer's features of raw detector frames of the outlet during a ramp.

    Frames are rendered as the simulated rig renders its flow cell (mixture emission with the
    inner filter, lamp through the stream, reference dye, dark frames; shot and read noise) and
    analyzed as one batch, so the sigmas are the analyzer's own.
    """
    d = config.detector
    wl = np.linspace(d.wavelength_min_nm, d.wavelength_max_nm, d.n_pixels)
    rng = np.random.default_rng(seed)
    ref = QYReference()
    noise = {"dark_offset": d.dark_offset_counts, "read_noise": d.read_noise_counts,
             "gain": d.gain_counts_per_electron, "full_scale": d.full_scale_counts}
    blank = lamp_counts(wl, d.lamp_peak_counts)
    pl, sample = [], []
    for out in run_outlets(physics, tr, times_min, settle_min=settle_min):
        a_mix, counts, _ = mixture_pl_counts(
            wl, np.ones(1), out.absorbance[None, :], out.emission_per_nm[None, :],
            excitation_nm=d.excitation_nm, k_counts=d.pl_counts_per_ms * d.pl_integration_ms,
            n_sample=ref.sample_refractive_index)
        pl.append(read_frame(counts, rng, **noise))
        sample.append(read_frame(blank * 10.0 ** (-a_mix), rng, **noise))
    dye = dye_counts(wl, k_counts=d.pl_counts_per_ms * d.pl_integration_ms, qy=ref.qy,
                     absorbance=ref.absorbance_at_excitation, n_dye=ref.refractive_index,
                     peak_nm=d.dye_peak_nm, fwhm_nm=d.dye_fwhm_nm)
    zero = np.zeros_like(wl)
    return extract_features_batch(
        wl, pl_counts=np.array(pl), dark_pl_counts=read_frame(zero, rng, **noise),
        dye_pl_counts=read_frame(dye, rng, **noise), sample_counts=np.array(sample),
        blank_counts=read_frame(blank, rng, **noise),
        dark_abs_counts=read_frame(zero, rng, **noise), excitation_nm=d.excitation_nm,
        saturation_counts=d.full_scale_counts, qy_reference=ref)
