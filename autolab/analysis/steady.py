"""Steady-state detection on the emission frames taken while the reactor outlet settles.

After a change of conditions the outlet washes out (a cascade of CSTRs approaches its new state
roughly exponentially), so "steady" means: over the last ``window`` frames the PL peak, the FWHM
and the integrated intensity show no drift beyond what their noise explains, or beyond a practical
tolerance (``tolerance_*``), whichever is larger. The tolerance floor exists because an exponential
approach never strictly ends: a drift of 0.05 nm is real but irrelevant to the chemist.

The drift test: a straight line through each feature's last ``window`` values against time; its
change over the window must be within ``z`` sigmas (sigma from the larger of the residual scatter
and the per-frame errors) or within the tolerance. "When it became steady": the first frame after
which every frame lies within the same band (``z`` sigmas or tolerance) around the mean of the
final window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from autolab.analysis._core import (
    FloatArray,
    Grid,
    batch_size,
    check_counts,
    check_wavelengths,
    per_row,
)
from autolab.analysis.emission import analyze_emission
from autolab.analysis.qy import band_integral
from autolab.analysis.settings import AnalyzerSettings
from autolab.exceptions import SpectrumError
from autolab.records import QualityFlag


@dataclass(frozen=True)
class SteadyState:
    """Verdict of :func:`steady_state` and the per-frame series it was based on.

    Attributes:
        steady: Whether the last ``window`` frames are steady.
        since_min: Time of the first frame of the steady stretch, min (NaN if not steady).
        index: Index of that frame (-1 if not steady).
        peak_nm: Per-frame PL peak, nm, ``(T,)``.
        fwhm_nm: Per-frame FWHM, nm, ``(T,)``.
        intensity: Per-frame integrated emission, counts·nm, ``(T,)``.
        drift: Change over the final window of (peak nm, FWHM nm, relative intensity).
        reason: Why it is not steady ("" if it is).
    """

    steady: bool
    since_min: float
    index: int
    peak_nm: FloatArray
    fwhm_nm: FloatArray
    intensity: FloatArray
    drift: tuple[float, float, float]
    reason: str = ""


def _line_drift(t: FloatArray, y: FloatArray, err: FloatArray) -> tuple[float, float]:
    """Change of a least-squares line over ``t``'s span and its one-sigma error."""
    tc = t - t.mean()
    sxx = float(np.sum(tc * tc))
    slope = float(np.sum(tc * (y - y.mean())) / sxx)
    resid = y - y.mean() - slope * tc
    dof = max(t.size - 2, 1)
    sigma = max(float(np.sqrt(np.sum(resid * resid) / dof)), float(np.median(err)))
    span = float(t[-1] - t[0])
    return slope * span, sigma / np.sqrt(sxx) * span


def steady_state(
    wavelengths_nm: ArrayLike,
    times_min: ArrayLike,
    pl_counts: ArrayLike,
    dark_counts: ArrayLike | None = None,
    *,
    excitation_nm: float,
    window: int = 5,
    z: float = 3.0,
    tolerance_peak_nm: float = 0.5,
    tolerance_fwhm_nm: float = 1.0,
    tolerance_intensity: float = 0.02,
    settings: AnalyzerSettings | None = None,
) -> SteadyState:
    """Decide whether an equilibration series of emission frames has reached steady state.

    Args:
        wavelengths_nm: Pixel wavelengths, nm, ``(P,)``.
        times_min: Frame times, min, ``(T,)``, strictly increasing.
        pl_counts: Raw emission frames, ``(T, P)``.
        dark_counts: Dark frame, ``(P,)`` or ``(T, P)``; ``None`` if already subtracted.
        excitation_nm: Excitation wavelength, nm (bluer pixels + margin are ignored).
        window: Number of final frames that must be steady (at least 3).
        z: Noise sigmas allowed for drift and for the settling band.
        tolerance_peak_nm: Practical tolerance on the peak, nm.
        tolerance_fwhm_nm: Practical tolerance on the FWHM, nm.
        tolerance_intensity: Practical tolerance on the intensity, relative.
        settings: Analyzer thresholds; defaults if ``None``.

    Returns:
        :class:`SteadyState`.

    Raises:
        SpectrumError: Shapes disagree, times are not increasing, or ``window < 3``.
    """
    s = settings or AnalyzerSettings()
    wl = check_wavelengths(wavelengths_nm)
    frames = check_counts("pl_counts", pl_counts, wl.size)
    dark = np.zeros((1, wl.size)) if dark_counts is None else check_counts(
        "dark_counts", dark_counts, wl.size)
    t = np.asarray(times_min, dtype=np.float64)
    n = batch_size({"pl_counts": frames, "dark_counts": dark})
    if t.shape != (n,):
        raise SpectrumError(f"times_min: expected shape ({n},) to match pl_counts, got {t.shape}")
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise SpectrumError("times_min: expected finite, strictly increasing frame times")
    if window < 3:
        raise SpectrumError(f"window: expected at least 3 frames, got {window}")
    grid = Grid.make(wl, s.bin_nm)
    lo = per_row("excitation_nm", excitation_nm, n) + s.excitation_margin_nm
    em = analyze_emission(grid, frames, dark, lo, s)
    band_hi = np.full(n, grid.n_bins)
    inten, inten_var = band_integral(em.binned, grid.width_b, lo=em.band_lo, hi=band_hi,
                                     factor=None, noise_a=em.noise_a, noise_g=em.noise_g,
                                     pixels_per_bin=grid.b)
    nan3 = (np.nan, np.nan, np.nan)
    series_kw = {"peak_nm": em.peak_nm, "fwhm_nm": em.fwhm_nm, "intensity": inten}

    def verdict(steady: bool, since: float, index: int, drift: tuple[float, float, float],
                reason: str = "") -> SteadyState:
        return SteadyState(steady, since, index, series_kw["peak_nm"], series_kw["fwhm_nm"],
                           series_kw["intensity"], drift, reason)

    if n < window:
        return verdict(False, np.nan, -1, nan3, f"only {n} frames, need {window}")
    last = slice(n - window, n)
    blocking = int(QualityFlag.NO_PEAK | QualityFlag.INVALID_INPUT)
    if np.any(em.flags[last] & blocking):
        return verdict(False, np.nan, -1, nan3, "no usable emission peak in the final frames")
    scale = float(np.mean(inten[last]))
    series = [(em.peak_nm, em.peak_nm_err, tolerance_peak_nm),
              (em.fwhm_nm, em.fwhm_nm_err, tolerance_fwhm_nm),
              (inten / scale, np.sqrt(inten_var) / scale, tolerance_intensity)]
    drifts: list[float] = []
    inside = np.ones(n, dtype=bool)
    reasons = []
    for name, (y, err, tol) in zip(("peak", "fwhm", "intensity"), series, strict=True):
        d, d_err = _line_drift(t[last], y[last], err[last])
        drifts.append(d)
        if abs(d) > max(z * d_err, tol):
            reasons.append(f"{name} drifts by {d:.3g} over the last {window} frames")
        spread = max(float(np.std(y[last], ddof=1)), float(np.median(err[last])))
        band = max(z * spread, tol)
        with np.errstate(invalid="ignore"):
            inside &= np.abs(y - np.mean(y[last])) <= band
    drift = (drifts[0], drifts[1], drifts[2])
    if reasons:
        return verdict(False, np.nan, -1, drift, "; ".join(reasons))
    outside = np.flatnonzero(~inside)
    first = int(outside[-1] + 1) if outside.size else 0
    first = min(first, n - window)
    return verdict(True, float(t[first]), first, drift)


def is_steady(wavelengths_nm: ArrayLike, times_min: ArrayLike, pl_counts: ArrayLike,
              dark_counts: ArrayLike | None = None, *, excitation_nm: float,
              **kwargs: float) -> bool:
    """``steady_state(...).steady``: whether the outlet had settled (see :func:`steady_state`)."""
    return steady_state(wavelengths_nm, times_min, pl_counts, dark_counts,
                        excitation_nm=excitation_nm, **kwargs).steady  # type: ignore[arg-type]
