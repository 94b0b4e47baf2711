"""Emission-line analysis: PL peak (sub-pixel), FWHM, signal-to-noise and line-shape flags.

Method, per spectrum but vectorized over the batch:

1. **Coarse stage** on ~2-nm bins (lightly boxcar-smoothed): the maximum inside the emission band
   (redder than the excitation cut-off) and the first bins below half of it on each side, linearly
   interpolated. This gives the peak to a bin and the FWHM to a fraction of a bin.
2. **Peak top**: a least-squares parabola *in photon energy* through the raw (dark-subtracted)
   pixels within ``±0.25·FWHM`` of the top, re-centred twice on its own vertex. A line that is a
   Gaussian in energy has no cubic term about its top in energy, so the vertex is unbiased, and a
   window of ~1.2 sigma averages over many pixels. The vertex and height come with delta-method
   errors from the fit's covariance.
3. **Half-maximum crossings**: a least-squares parabola in wavelength through the raw pixels within
   ``±0.2·FWHM`` of each coarse crossing, solved for the half-maximum level, re-centred once.
   That is a local, noise-averaged version of "linear interpolation between the two pixels that
   bracket half maximum", and it is exact for a locally quadratic line.
4. **Noise** comes from the data: the 4th difference of the raw pixels around the top and around
   each crossing (it cancels any smooth line shape, leaving ``70 σ²``) gives the pixel variance at
   the peak level and at the half level, hence a read + shot noise model ``σ² = a + g·counts``
   used for the fits' errors, the SNR and the integrated-intensity error.
5. **Shape**: ``TRAP_TAIL`` when the red half width in energy exceeds the blue one by
   ``trap_width_ratio`` or when the far red wing holds ``trap_excess`` more of the emission than
   its mirror image on the blue side; ``SHOULDER`` when a secondary maximum rises more than
   ``shoulder_prominence`` of the peak above the valley before it (running-minimum test), or the
   blue half width is the wider one by ``trap_width_ratio``.

With a :class:`PixelGain` (``AnalyzerSettings.peak_inner_filter``) every stage sees the emission
times the secondary inner-filter factor ``10^(A/2)``, so the line located is the emitted one.

Everything is gathered windows and closed-form fits: no Python loop over spectra.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from autolab.analysis._core import (
    BoolArray,
    FloatArray,
    Grid,
    IntArray,
    batch_size,
    check_counts,
    check_wavelengths,
    d4_noise_level,
    d4_noise_var,
    gather,
    per_row,
    polyfit_rows,
    quadfit,
    saturated_in,
    window_indices,
)
from autolab.analysis.settings import AnalyzerSettings
from autolab.constants import HC_EV_NM
from autolab.records import QualityFlag

#: Largest half window (pixels) of the peak-top fit; wider lines use a relatively smaller window.
TOP_HALF_MAX = 90
#: Largest half window (pixels) of a half-maximum crossing fit.
CROSS_HALF_MAX = 40
#: Smallest half window (pixels) over which pixel noise is estimated from 4th differences.
NOISE_HALF_MIN = 12
#: Largest half window (pixels) for the noise estimate (enough points; keeps the level local).
NOISE_HALF_CAP = 30


@dataclass(frozen=True)
class EmissionLines:
    """Everything the analyzer learns from a batch of emission spectra (arrays of shape ``(N,)``).

    Attributes:
        peak_nm: Sub-pixel emission maximum, nm (NaN with ``NO_PEAK``).
        peak_nm_err: One-sigma error of ``peak_nm``, nm.
        height: Peak height above dark, counts per pixel.
        height_err: One-sigma error of ``height``, counts.
        fwhm_nm: Full width at half maximum, nm.
        fwhm_nm_err: One-sigma error of ``fwhm_nm``, nm.
        left_nm: Blue half-maximum crossing, nm.
        right_nm: Red half-maximum crossing, nm.
        snr: Peak height over the pixel noise sigma at the peak.
        width_ratio: Red over blue half width at half maximum, in photon energy.
        red_excess: Far-red emission in excess of its blue mirror image, fraction of the total.
        noise_a: Pixel noise variance at zero signal (read noise of frame plus dark), counts².
        noise_g: Pixel noise variance per count of signal (shot noise), counts.
        band_lo: First bin of the emission band, ``(N,)`` int.
        win_lo: First bin of the integration window, ``(N,)`` int.
        win_hi: One past the last bin of the integration window, ``(N,)`` int.
        binned: Dark-subtracted emission on the bin grid, counts per pixel, ``(N, M)``.
        flags: Quality flags as ints, ``(N,)``.
    """

    peak_nm: FloatArray
    peak_nm_err: FloatArray
    height: FloatArray
    height_err: FloatArray
    fwhm_nm: FloatArray
    fwhm_nm_err: FloatArray
    left_nm: FloatArray
    right_nm: FloatArray
    snr: FloatArray
    width_ratio: FloatArray
    red_excess: FloatArray
    noise_a: FloatArray
    noise_g: FloatArray
    band_lo: IntArray
    win_lo: IntArray
    win_hi: IntArray
    binned: FloatArray
    flags: IntArray


@dataclass(frozen=True)
class PixelGain:
    """A smooth multiplier of the emission pixels: the secondary inner-filter correction.

    The emission leaves the cell through the product's own absorbance ``A(λ)``, which dims it by
    ``10^(-A/2)``; where ``A`` falls across the line (the blue side is nearer the exciton) the
    measured maximum is pulled red. Multiplying by ``10^(A/2)`` undoes it. The factor is known on
    the absorbance bins, so it is held there and interpolated linearly only at the pixels a fit
    gathers: no ``(N, P)`` array is built. (It changes by well under 1 % from bin to bin in the
    emission band, so linear interpolation of the factor or of its log is the same.)

    Attributes:
        factor_b: The factor per bin, ``(N, M)``; 1 where no correction.
        log_var: Noise variance of one bin's ``ln factor_b``, ``(N,)`` (0 where no correction).
            A fit over many pixels sees it as ``b · log_var`` of independent relative noise per
            pixel (``b`` pixels share a bin), added to the pixels' own; that is conservative, as
            the fits weight their pixels by ``y²`` and the factor's noise is not ``∝ 1/y``.
        i0: Left neighbouring bin of each pixel, ``(P,)``.
        w: Weight of the right neighbouring bin of each pixel, ``(P,)``.
    """

    factor_b: FloatArray
    log_var: FloatArray
    i0: IntArray
    w: FloatArray

    @classmethod
    def make(cls, grid: Grid, factor_b: FloatArray, log_var: FloatArray) -> PixelGain:
        """Gain for ``grid`` from per-bin factors (pixels beyond the end bins take them)."""
        m = grid.n_bins
        i0 = np.clip(np.searchsorted(grid.wl_b, grid.wl) - 1, 0, max(m - 2, 0)).astype(np.int64)
        i1 = np.minimum(i0 + 1, m - 1)
        span = grid.wl_b[i1] - grid.wl_b[i0]
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.clip(np.where(span > 0, (grid.wl - grid.wl_b[i0]) / span, 0.0), 0.0, 1.0)
        return cls(factor_b=factor_b, log_var=log_var, i0=i0, w=w)

    def pixel_log_var(self, grid: Grid) -> FloatArray:
        """Relative variance per pixel that the factor's noise adds to a fit, ``(N,)``."""
        return self.log_var * grid.b

    def at(self, idx: IntArray) -> FloatArray:
        """The factor at pixel indices ``idx`` (``(N, W)``, already clipped to the grid)."""
        i0 = self.i0[idx]
        lo = gather(self.factor_b, i0)
        hi = gather(self.factor_b, np.minimum(i0 + 1, self.factor_b.shape[1] - 1))
        hi -= lo
        hi *= self.w[idx]
        hi += lo
        return hi


def _gained(y: FloatArray, gain: PixelGain | None, idx: IntArray) -> FloatArray:
    """``y`` (pixels ``idx``) times the gain there, or ``y`` itself without a gain."""
    return y if gain is None else y * gain.at(idx)


def _factor_at(gain: PixelGain | None, grid: Grid, x_nm: FloatArray) -> FloatArray:
    """The gain at the pixel nearest each wavelength, ``(N,)`` (1 without a gain)."""
    if gain is None:
        return np.ones(x_nm.shape[0])
    pix = grid.pixel_at(np.where(np.isfinite(x_nm), x_nm, grid.wl[0]))
    return gain.at(pix[:, None])[:, 0]


@dataclass(frozen=True)
class _Top:
    e0: FloatArray  # vertex energy, eV
    e0_var: FloatArray
    height: FloatArray
    height_var: FloatArray
    noise_var: FloatArray
    noise_level: FloatArray
    ok: BoolArray


def _fit_top(  # noqa: PLR0917 - private kernel, called from one place
        grid: Grid, em: FloatArray, dark: FloatArray, center: IntArray, half: IntArray,
             lo_pix: IntArray, gain: PixelGain | None, iterations: int = 1) -> _Top:
    """Log-cubic in energy through the pixels ``center ± half``, re-centred on its maximum.

    ``log y`` of a Gaussian in energy is a parabola; the cubic term absorbs a skewed line, so the
    maximum of the fitted curve is the maximum of the line, not the centre of a symmetric fit.
    Weights ``y²`` make it the least-squares fit of ``y`` itself to first order
    (``var(log y) = σ²/y²``). ``gain`` (if any) multiplies the pixels first: the noise is then
    measured on the corrected pixels, so the vertex error carries the factor.
    """
    n = grid.n_pixels
    e, wl = grid.energy, grid.wl
    hmax = int(half.max()) if half.size else 2
    c = center
    ustar = np.zeros(center.shape[0])
    for _ in range(iterations):
        offs, idx, inside = window_indices(c, hmax, 2, n, lo_pix)
        y = _gained(gather(em, idx) - gather(dark, idx), gain, idx)
        mask = inside & (np.abs(offs)[None, :] <= half[:, None])
        ref = np.max(np.where(mask, y, -np.inf), axis=1)
        ref = np.where(ref > 0, ref, 1.0)
        yn = y / ref[:, None]
        pos = mask & (yn > 0.05)
        with np.errstate(over="ignore", invalid="ignore"):
            w = np.where(pos, yn * yn, 0.0)
        ly = np.log(np.where(pos, yn, 1.0))
        u = e[idx] - e[c][:, None]
        scale = half * (HC_EV_NM / wl[c] ** 2) * grid.dl[c]
        fit = polyfit_rows(u, ly, w, scale, 3)
        c1, c2, c3 = fit.coef[:, 1], fit.coef[:, 2], fit.coef[:, 3]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            disc = 4.0 * c2 * c2 - 12.0 * c1 * c3
            q = -0.5 * (2.0 * c2 + np.copysign(np.sqrt(np.maximum(disc, 0.0)), c2))
            ustar = np.where(disc >= 0, c1 / q, -c1 / (2.0 * c2))
        good = np.isfinite(ustar) & (c2 < 0) & (np.abs(ustar) <= scale)
        e_new = e[c] + np.where(good, ustar, 0.0)
        step = grid.pixel_at(HC_EV_NM / e_new) - c
        c_prev = c
        c = c + np.clip(step, -half, half)
    c = c_prev
    nmask = inside & (np.abs(offs)[None, :] <= (np.minimum(np.maximum(half, NOISE_HALF_MIN),
                                                           NOISE_HALF_CAP) + 2)[:, None])
    noise_var, noise_level = d4_noise_level(y, nmask)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u0 = ustar
        one = np.ones_like(u0)
        curv = 2.0 * c2 + 6.0 * c3 * u0
        lvar = noise_var / ref**2  # variance of log y at the peak
        g_u = -np.stack([np.zeros_like(u0), one, 2.0 * u0, 3.0 * u0 * u0], axis=1) / curv[:, None]
        v_var = lvar * fit.var_of(g_u)
        logh = fit.coef[:, 0] + u0 * (c1 + u0 * (c2 + u0 * c3))
        height = ref * np.exp(logh)
        g_h = np.stack([one, u0, u0 * u0, u0 * u0 * u0], axis=1)
        height_var = height**2 * lvar * fit.var_of(g_h)
        ok = (np.isfinite(u0) & (curv < 0) & (fit.n >= 6) & np.isfinite(height)
              & (np.abs(u0) <= 1.5 * scale))
    return _Top(e0=e[c] + u0, e0_var=v_var, height=height, height_var=height_var,
                noise_var=noise_var, noise_level=noise_level, ok=ok)


@dataclass(frozen=True)
class _Crossing:
    x: FloatArray  # crossing wavelength, nm
    value_var: FloatArray  # variance of the fitted curve at the crossing, counts²
    slope: FloatArray  # d counts / d nm at the crossing
    noise_var: FloatArray
    noise_level: FloatArray
    ok: BoolArray


def _fit_crossing(  # noqa: PLR0917 - private kernel
        grid: Grid, em: FloatArray, dark: FloatArray, x0: FloatArray, level: FloatArray,
                  half: IntArray, lo_pix: IntArray, rising: bool,
                  gain: PixelGain | None) -> _Crossing:
    """Where a local parabola through the pixels around ``x0`` crosses ``level`` (re-centred once).

    ``rising`` is True on the blue side of the peak (counts increase with wavelength); ``gain``
    as in :func:`_fit_top`.
    """
    n = grid.n_pixels
    wl = grid.wl
    c = grid.pixel_at(x0)
    xr = x0
    # window wide enough for the fit (``half``) and the noise estimate of every row; wider
    # columns would only carry zero weight
    hmax = int(half.max()) if half.size else 2
    hwin = min(max(hmax, min(max(hmax, NOISE_HALF_MIN), NOISE_HALF_CAP)), CROSS_HALF_MAX)
    for _ in range(2):
        offs, idx, inside = window_indices(c, hwin, 2, n, lo_pix)
        y = _gained(gather(em, idx) - gather(dark, idx), gain, idx)
        mask = inside & (np.abs(offs)[None, :] <= half[:, None])
        u = wl[idx] - wl[c][:, None]
        scale = half * grid.dl[c]
        fit = quadfit(u, y, mask.astype(np.float64), scale)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            d = fit.c0 - level
            disc = fit.c1 * fit.c1 - 4.0 * fit.c2 * d
            denom = fit.c1 + np.copysign(np.sqrt(np.maximum(disc, 0.0)), fit.c1)
            ur = np.where(disc >= 0, -2.0 * d / denom, -d / fit.c1)
        good = np.isfinite(ur) & (np.abs(ur) <= 1.5 * scale)
        xr = wl[c] + np.where(good, ur, 0.0)
        c = grid.pixel_at(xr)
    nmask = inside & (np.abs(offs)[None, :] <= (np.minimum(np.maximum(half, NOISE_HALF_MIN),
                                                           NOISE_HALF_CAP) + 2)[:, None])
    noise_var, noise_level = d4_noise_level(y, nmask)
    with np.errstate(invalid="ignore", over="ignore"):
        slope = fit.c1 + 2.0 * fit.c2 * ur
        value_var = noise_var * fit.var_of(np.ones_like(ur), ur, ur * ur)
        ok = good & (fit.n >= 5) & ((slope > 0) if rising else (slope < 0))
    return _Crossing(x=xr, value_var=value_var, slope=slope, noise_var=noise_var,
                     noise_level=noise_level, ok=ok)


def _boxcar3(fb: FloatArray) -> FloatArray:
    """3-bin running mean along rows, edges padded with the end value (``mode="nearest"``)."""
    sb = np.empty_like(fb)
    if fb.shape[1] < 2:
        sb[...] = fb
        return sb
    with np.errstate(over="ignore", invalid="ignore"):
        np.add(fb[:, :-2], fb[:, 1:-1], out=sb[:, 1:-1])
        sb[:, 1:-1] += fb[:, 2:]
        sb[:, 0] = 2.0 * fb[:, 0] + fb[:, 1]
        sb[:, -1] = fb[:, -2] + 2.0 * fb[:, -1]
        sb *= 1.0 / 3.0
    return sb


def _interp_cross(wl_b: FloatArray, s: FloatArray, j_below: IntArray, j_above: IntArray,
                  level: FloatArray) -> FloatArray:
    """Where ``s`` crosses ``level`` between bins ``j_above`` and ``j_below`` (linear)."""
    r = np.arange(s.shape[0])
    ya, yb = s[r, j_above], s[r, j_below]
    xa, xb = wl_b[j_above], wl_b[j_below]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.clip((ya - level) / (ya - yb), 0.0, 1.0)
    return np.asarray(xa + t * (xb - xa), dtype=np.float64)


def analyze_emission(  # noqa: PLR0917 - internal stage, documented args
        grid: Grid, em: FloatArray, dark: FloatArray, band_lo_nm: FloatArray,
                     settings: AnalyzerSettings, saturation: FloatArray | None = None,
                     fine: bool = True, dark_binned: FloatArray | None = None,
                     gain: PixelGain | None = None) -> EmissionLines:
    """Analyze a batch of raw emission frames (see the module docstring for the method).

    Args:
        grid: Pixel and bin grid.
        em: Raw emission counts, ``(n, P)`` with ``n`` in ``{1, N}``.
        dark: Raw dark counts at the same integration time, ``(n, P)``.
        band_lo_nm: Blue end of the emission band per spectrum (excitation + margin), ``(N,)``.
        settings: Thresholds.
        saturation: Detector full scale per spectrum, ``(N,)``; ``None`` skips the check.
        fine: ``False`` stops after the coarse stage (peak to a fraction of a bin, FWHM from the
            binned crossings, bin-level noise): all a reference-dye frame needs for its band
            integral, at a fraction of the cost.
        dark_binned: ``grid.bin(dark)`` if the caller already has it (a dark frame shared by
            the sample and the dye analyses is then binned once).
        gain: Multiply the emission by this before locating the line (the inner-filter
            correction; only with ``fine``). Peak, height, FWHM, their errors and the shape
            flags then
            describe the corrected line; ``binned``, ``noise_a``, ``noise_g`` and the SNR stay
            in raw counts (the QY integral applies its own factor).

    Returns:
        :class:`EmissionLines` with ``N = band_lo_nm.shape[0]`` rows.
    """
    nrows = band_lo_nm.shape[0]
    m, b = grid.n_bins, grid.b
    r = np.arange(nrows)
    fb = grid.bin(em)
    dark_b = grid.bin(dark) if dark_binned is None else dark_binned
    if fb.shape == dark_b.shape:
        fb -= dark_b
    else:
        fb = fb - dark_b
    if fb.shape[0] != nrows:
        fb = np.repeat(fb, nrows, axis=0)
    finite = np.isfinite(fb).all(axis=1)
    if not finite.all():
        fb[~finite] = 0.0
    flags = np.where(finite, 0, int(QualityFlag.INVALID_INPUT)).astype(np.int64)
    if not finite.all():  # keep the raw-pixel fits NaN-free too
        em = _zero_bad_rows(em, np.logical_not(finite))
        dark = _zero_bad_rows(dark, np.logical_not(finite))

    lo_bin = np.minimum(grid.bin_at(band_lo_nm), m - 1)
    lo_pix = np.minimum(np.searchsorted(grid.wl, band_lo_nm), grid.n_pixels - 1).astype(np.int64)
    bidx = np.arange(m)[None, :]

    fc = fb if gain is None or not fine else fb * gain.factor_b  # the line as located
    # 1. coarse stage on boxcar-smoothed bins
    sb = _boxcar3(fc)
    inband = bidx >= lo_bin[:, None]
    jb = np.argmax(np.where(inband, sb, -np.inf), axis=1)
    top = sb[r, jb]
    half_c = 0.5 * top
    below = sb < half_c[:, None]
    right = below & (bidx > jb[:, None])
    left = below & (bidx < jb[:, None]) & inband
    has_r, has_l = right.any(axis=1), left.any(axis=1)
    jr = np.argmax(right, axis=1)
    jl = m - 1 - np.argmax(left[:, ::-1], axis=1)
    xr_c = _interp_cross(grid.wl_b, sb, jr, np.maximum(jr - 1, 0), half_c)
    xl_c = _interp_cross(grid.wl_b, sb, jl, np.minimum(jl + 1, m - 1), half_c)
    coarse_ok = finite & (top > 0) & has_r & has_l & (jb > lo_bin) & (jb < m - 1)

    # 2. peak top, in energy; start from a 3-bin parabolic interpolation of the coarse maximum
    jm = np.clip(jb, 1, m - 2)
    y_m, y_0, y_p = sb[r, jm - 1], sb[r, jm], sb[r, jm + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip(0.5 * (y_m - y_p) / (y_m - 2.0 * y_0 + y_p), -1.0, 1.0)
    frac = np.where(np.isfinite(frac), frac, 0.0)
    pk_pix = np.clip(np.rint((jm + frac) * b + (b - 1) / 2.0).astype(np.int64), 0,
                     grid.n_pixels - 1)
    if not fine:
        return _coarse_lines(grid, em, fb, sb, inband, lo_bin, jb, top, xl_c, xr_c, coarse_ok,
                             np.interp(jm + frac, np.arange(m), grid.wl_b), flags, settings,
                             saturation)
    fwhm_px = np.where(coarse_ok, (xr_c - xl_c) / grid.dl[pk_pix], 20.0)
    top_half = np.clip(np.rint(0.4 * fwhm_px), 3, TOP_HALF_MAX).astype(np.int64)
    tp = _fit_top(grid, em, dark, pk_pix, top_half, lo_pix, gain)
    with np.errstate(divide="ignore", invalid="ignore"):
        peak_nm = HC_EV_NM / tp.e0
        peak_err = np.sqrt(tp.e0_var) * HC_EV_NM / tp.e0**2

    # 3. half-maximum crossings
    level = 0.5 * tp.height
    level_var = 0.25 * tp.height_var
    cross_half = np.clip(np.rint(0.2 * fwhm_px), 2, CROSS_HALF_MAX).astype(np.int64)
    cl = _fit_crossing(grid, em, dark, np.where(coarse_ok, xl_c, grid.wl[0]), level, cross_half,
                       lo_pix, rising=True, gain=gain)
    cr = _fit_crossing(grid, em, dark, np.where(coarse_ok, xr_c, grid.wl[-1]), level, cross_half,
                       lo_pix, rising=False, gain=gain)
    xl = np.where(cl.ok, cl.x, xl_c)
    xr = np.where(cr.ok, cr.x, xr_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_sl = np.where(cl.ok, 1.0 / np.abs(cl.slope), 0.0)
        inv_sr = np.where(cr.ok, 1.0 / np.abs(cr.slope), 0.0)
        coarse_var = (grid.width_b[np.minimum(jb, m - 1)] / 2.0) ** 2
        # a gain's own noise (smooth within a bin, so no pixel-noise estimate sees it) adds
        # to each fit as if every pixel carried b * var(log f) of relative noise (see PixelGain)
        k_t, k_l, k_r = ((0.0, 0.0, 0.0) if gain is None else
                         (gain.pixel_log_var(grid) * (h * h) / v for h, v in (
                             (tp.height, tp.noise_var), (level, cl.noise_var),
                             (level, cr.noise_var))))
        peak_err = peak_err * np.sqrt(1.0 + k_t)
        var_l = np.where(cl.ok, cl.value_var * (1.0 + k_l) * inv_sl**2, coarse_var)
        var_r = np.where(cr.ok, cr.value_var * (1.0 + k_r) * inv_sr**2, coarse_var)
        fwhm_var = var_l + var_r + level_var * (1.0 + k_t) * (inv_sl + inv_sr) ** 2
    fwhm_nm = xr - xl

    # 4. noise model sigma² = a + g * counts from (mean level, variance) of the top window and of
    #    the crossing windows, in raw counts (a gain scales a window's counts by f, its variance
    #    by f²); the peak SNR uses the model's sigma at the peak height
    f_t, f_l, f_r = (_factor_at(gain, grid, x) for x in (peak_nm, xl, xr))
    t_var, t_lev, t_h = tp.noise_var / f_t**2, tp.noise_level / f_t, tp.height / f_t
    both = cl.ok & cr.ok
    l_var, r_var = cl.noise_var / f_l**2, cr.noise_var / f_r**2
    l_lev, r_lev = cl.noise_level / f_l, cr.noise_level / f_r
    v_half = np.where(both, 0.5 * (l_var + r_var), np.where(cl.ok, l_var, r_var))
    l_half = np.where(both, 0.5 * (l_lev + r_lev), np.where(cl.ok, l_lev, r_lev))
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.maximum((t_var - v_half) / (t_lev - l_half), 0.0)
        g = np.where(np.isfinite(g) & (cl.ok | cr.ok), g, 0.0)
        a = np.maximum(v_half - g * l_half, 0.0)
        a = np.where(np.isfinite(a), a, np.where(np.isfinite(t_var), t_var, 0.0))
        sigma_peak = np.sqrt(a + g * np.maximum(t_h, 0.0))
        snr = t_h / sigma_peak
    snr = np.where(sigma_peak > 0, snr, np.where(tp.height > 0, np.inf, 0.0))
    snr = np.where(np.isfinite(tp.height), snr, 0.0)
    peak_ok = coarse_ok & tp.ok & (tp.height > 0) & (snr >= settings.no_peak_snr)
    peak_ok &= (peak_nm > grid.wl_b[lo_bin]) & (peak_nm < grid.wl[-1])
    fwhm_ok = peak_ok & (fwhm_nm > 0) & (xl < peak_nm) & (xr > peak_nm)

    # integration window (bins): generous, clipped to the emission band and the grid
    best_peak = np.where(peak_ok, peak_nm, grid.wl_b[jb])
    best_fwhm = np.where(fwhm_ok, fwhm_nm, np.where(coarse_ok, xr_c - xl_c, 0.0))
    win_lo = np.maximum(grid.bin_at(best_peak - settings.integrate_blue_fwhm * best_fwhm), lo_bin)
    win_hi = np.minimum(grid.bin_at(best_peak + settings.integrate_red_fwhm * best_fwhm) + 1, m)
    win_hi = np.maximum(win_hi, win_lo)

    # 5. flags
    no_peak = ~peak_ok | ~fwhm_ok
    flags |= np.where(no_peak, int(QualityFlag.NO_PEAK), 0)
    flags |= np.where(snr < settings.min_snr, int(QualityFlag.LOW_SIGNAL), 0)
    # bin noise from 4th differences over the band (signal shot noise included: conservative)
    sigma_bin = np.sqrt(d4_noise_var(fb, np.broadcast_to(inband, fb.shape))) + 1e-9 * np.abs(top)
    neg = (np.where(inband, fb, np.inf).min(axis=1) < -settings.negative_sigma * sigma_bin)
    flags |= np.where(neg & finite, int(QualityFlag.INVALID_INPUT), 0)
    ratio, excess = _shape(grid, fc, best_peak, xl, xr, lo_bin, win_lo, win_hi)
    flags |= np.where(~no_peak & ((ratio > settings.trap_width_ratio)
                                  | (excess > settings.trap_excess)),
                      int(QualityFlag.TRAP_TAIL), 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        blue_wide = (1.0 / ratio) > settings.trap_width_ratio
    prominence = _max_rise(sb, jb, win_lo, win_hi)
    thr = np.maximum(settings.shoulder_prominence * tp.height,
                     6.0 * np.sqrt(tp.noise_var / (3 * b)))
    flags |= np.where(~no_peak & ((prominence > thr) | blue_wide), int(QualityFlag.SHOULDER), 0)
    if saturation is not None:
        flags |= np.where(saturated_in(em, win_lo * b, win_hi * b, saturation),
                          int(QualityFlag.SATURATED), 0)

    nan = np.nan
    return EmissionLines(
        peak_nm=np.where(peak_ok, peak_nm, nan), peak_nm_err=np.where(peak_ok, peak_err, nan),
        height=np.where(peak_ok, tp.height, nan),
        height_err=np.where(peak_ok, np.sqrt(tp.height_var), nan),
        fwhm_nm=np.where(fwhm_ok, fwhm_nm, nan),
        fwhm_nm_err=np.where(fwhm_ok, np.sqrt(fwhm_var), nan),
        left_nm=np.where(fwhm_ok, xl, nan), right_nm=np.where(fwhm_ok, xr, nan),
        snr=np.where(finite, snr, nan), width_ratio=np.where(fwhm_ok, ratio, nan),
        red_excess=np.where(fwhm_ok, excess, nan), noise_a=a, noise_g=g,
        band_lo=lo_bin, win_lo=win_lo.astype(np.int64), win_hi=win_hi.astype(np.int64),
        binned=fb, flags=flags)


def _coarse_lines(  # noqa: PLR0917 - private continuation of analyze_emission
        grid: Grid, em: FloatArray, fb: FloatArray, sb: FloatArray, inband: BoolArray,
                  lo_bin: IntArray, jb: IntArray, top: FloatArray, xl: FloatArray,
                  xr: FloatArray, coarse_ok: BoolArray, peak: FloatArray, flags: IntArray,
                  settings: AnalyzerSettings, saturation: FloatArray | None) -> EmissionLines:
    """:class:`EmissionLines` from the coarse stage alone (``analyze_emission(fine=False)``)."""
    m, b = grid.n_bins, grid.b
    var_bin = d4_noise_var(fb, np.broadcast_to(inband, fb.shape))
    var_bin = np.where(np.isfinite(var_bin), var_bin, 0.0)
    sigma_bin = np.sqrt(var_bin)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(sigma_bin > 0, top / sigma_bin, np.where(top > 0, np.inf, 0.0))
    ok = coarse_ok & (snr >= settings.no_peak_snr)
    width = np.where(coarse_ok, xr - xl, 0.0)
    best_peak = np.where(coarse_ok, peak, grid.wl_b[jb])
    win_lo = np.maximum(grid.bin_at(best_peak - settings.integrate_blue_fwhm * width), lo_bin)
    win_hi = np.minimum(grid.bin_at(best_peak + settings.integrate_red_fwhm * width) + 1, m)
    win_hi = np.maximum(win_hi, win_lo)
    flags = flags | np.where(ok, 0, int(QualityFlag.NO_PEAK))
    neg = np.where(inband, fb, np.inf).min(axis=1) < -settings.negative_sigma * sigma_bin
    flags |= np.where(neg & (sigma_bin > 0), int(QualityFlag.INVALID_INPUT), 0)
    if saturation is not None:
        flags |= np.where(saturated_in(em, win_lo * b, win_hi * b, saturation),
                          int(QualityFlag.SATURATED), 0)
    nan = np.full(fb.shape[0], np.nan)
    return EmissionLines(
        peak_nm=np.where(ok, peak, np.nan), peak_nm_err=nan, height=np.where(ok, top, np.nan),
        height_err=nan, fwhm_nm=np.where(ok, width, np.nan), fwhm_nm_err=nan,
        left_nm=np.where(ok, xl, np.nan), right_nm=np.where(ok, xr, np.nan), snr=snr,
        width_ratio=nan, red_excess=nan, noise_a=var_bin * b, noise_g=np.zeros_like(var_bin),
        band_lo=lo_bin, win_lo=win_lo.astype(np.int64), win_hi=win_hi.astype(np.int64),
        binned=fb, flags=flags)


def _zero_bad_rows(arr: FloatArray, bad: BoolArray) -> FloatArray:
    """A copy of ``arr`` with the rows flagged ``bad`` set to 0 (a broadcast row is sanitized)."""
    out = np.array(arr, dtype=np.float64)
    if out.shape[0] == 1:
        out[~np.isfinite(out)] = 0.0
    else:
        out[bad] = 0.0
        out[~np.isfinite(out)] = 0.0
    return out


def _shape(  # noqa: PLR0917 - private kernel
        grid: Grid, fb: FloatArray, peak: FloatArray, xl: FloatArray, xr: FloatArray,
           lo_bin: IntArray, win_lo: IntArray, win_hi: IntArray) -> tuple[FloatArray, FloatArray]:
    """Half-width ratio (red/blue, in energy) and far-red excess over the mirrored blue wing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ep = HC_EV_NM / peak
        hw_blue = HC_EV_NM / xl - ep
        hw_red = ep - HC_EV_NM / xr
        ratio = hw_red / hw_blue
        eb = (HC_EV_NM / grid.wl_b)[None, :]
        bidx = np.arange(grid.n_bins)[None, :]
        inwin = (bidx >= win_lo[:, None]) & (bidx < win_hi[:, None])
        w = np.where(inwin, fb, 0.0) * grid.energy_width_b
        total = w.sum(axis=1)
        red = np.where(eb < (ep - 2.0 * hw_blue)[:, None], w, 0.0).sum(axis=1)
        blue = np.where(eb > (ep + 2.0 * hw_blue)[:, None], w, 0.0).sum(axis=1)
        excess = (red - blue) / total
    # the blue mirror must lie inside the band, or the comparison means nothing
    blue_room = HC_EV_NM / grid.wl_b[lo_bin] >= ep + 4.0 * hw_blue
    return ratio, np.where(blue_room, excess, 0.0)


def _max_rise(sb: FloatArray, jb: IntArray, win_lo: IntArray, win_hi: IntArray) -> FloatArray:
    """Largest rise of ``sb`` above its running minimum walking away from the peak, both sides.

    A clean line falls monotonically (to within noise) away from its maximum; a second peak makes
    the smoothed spectrum climb again after a valley, by its prominence.
    """
    if sb.shape[0] == 0:
        return np.zeros(0)
    # only the columns some row's window covers matter
    c0 = int(min(win_lo.min(), jb.min()))
    c1 = int(max(win_hi.max(), jb.max() + 1))
    sb = sb[:, c0:c1]
    jb, win_lo, win_hi = jb - c0, win_lo - c0, win_hi - c0
    bidx = np.arange(sb.shape[1])[None, :]
    right = np.where((bidx >= jb[:, None]) & (bidx < win_hi[:, None]), sb, np.inf)
    rise_r = np.where(np.isfinite(right), sb - np.minimum.accumulate(right, axis=1), 0.0)
    left = np.where((bidx <= jb[:, None]) & (bidx >= win_lo[:, None]), sb, np.inf)[:, ::-1]
    rise_l = np.where(np.isfinite(left), sb[:, ::-1] - np.minimum.accumulate(left, axis=1), 0.0)
    return np.asarray(np.maximum(rise_r.max(axis=1), rise_l.max(axis=1)), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# public, stand-alone functions


@dataclass(frozen=True)
class PeakResult:
    """Emission peaks of a batch, arrays of shape ``(N,)``.

    Attributes:
        peak_nm: Sub-pixel emission maximum, nm; NaN where there is no peak.
        peak_nm_err: One-sigma error, nm.
        height: Peak height above dark, counts.
        height_err: One-sigma error of the height, counts.
        snr: Peak height over the pixel noise sigma.
        flags: :class:`~autolab.records.QualityFlag` bits as ints.
    """

    peak_nm: FloatArray
    peak_nm_err: FloatArray
    height: FloatArray
    height_err: FloatArray
    snr: FloatArray
    flags: IntArray


@dataclass(frozen=True)
class WidthResult:
    """Emission line widths of a batch, arrays of shape ``(N,)``.

    Attributes:
        fwhm_nm: Full width at half maximum, nm; NaN where it cannot be determined.
        fwhm_nm_err: One-sigma error, nm.
        left_nm: Blue half-maximum crossing, nm.
        right_nm: Red half-maximum crossing, nm.
        width_ratio: Red over blue half width at half maximum in photon energy (1 = symmetric).
        flags: :class:`~autolab.records.QualityFlag` bits as ints.
    """

    fwhm_nm: FloatArray
    fwhm_nm_err: FloatArray
    left_nm: FloatArray
    right_nm: FloatArray
    width_ratio: FloatArray
    flags: IntArray


def _prepare(wavelengths_nm: ArrayLike, emission: ArrayLike, dark: ArrayLike | None,
             min_nm: ArrayLike | None, settings: AnalyzerSettings | None
             ) -> tuple[Grid, FloatArray, FloatArray, FloatArray, AnalyzerSettings]:
    wl = check_wavelengths(wavelengths_nm)
    em = check_counts("emission", emission, wl.size)
    dk = (np.zeros((1, wl.size)) if dark is None else check_counts("dark", dark, wl.size))
    n = batch_size({"emission": em, "dark": dk})
    lo = per_row("min_nm", wl[0] if min_nm is None else min_nm, n)
    s = settings or AnalyzerSettings()
    return Grid.make(wl, s.bin_nm), em, dk, lo, s


def pl_peak(wavelengths_nm: ArrayLike, emission: ArrayLike, dark: ArrayLike | None = None, *,
            min_nm: ArrayLike | None = None,
            settings: AnalyzerSettings | None = None) -> PeakResult:
    """Sub-pixel photoluminescence peak of each spectrum in a batch.

    The top of the line is fitted with a parabola in photon energy over ``±0.25·FWHM`` of raw
    pixels (window set from a coarse FWHM, re-centred on the vertex), which is unbiased for lines
    that are Gaussian in energy and averages the noise of dozens of pixels; the error is the
    delta-method error of the vertex with the pixel noise measured from the data.

    Args:
        wavelengths_nm: Pixel wavelengths, nm, ``(P,)``, strictly increasing.
        emission: Raw emission counts, ``(P,)`` or ``(N, P)``.
        dark: Dark counts at the same integration time, ``(P,)`` or ``(N, P)``; ``None`` if the
            emission is already dark-subtracted.
        min_nm: Ignore everything bluer than this (scalar or ``(N,)``), e.g. excitation + 20 nm.
        settings: Analyzer thresholds; defaults if ``None``.

    Returns:
        :class:`PeakResult` with ``(N,)`` arrays.

    Raises:
        SpectrumError: Shapes or the wavelength grid are unusable.

    Example:
        >>> import numpy as np
        >>> wl = np.linspace(350, 850, 1024)
        >>> line = 1000 + 20000 * np.exp(-0.5 * ((1239.84 / wl - 2.2) / 0.05) ** 2)
        >>> round(float(pl_peak(wl, line, np.full(1024, 1000.0)).peak_nm[0]), 1)
        563.6
    """
    grid, em, dk, lo, s = _prepare(wavelengths_nm, emission, dark, min_nm, settings)
    res = analyze_emission(grid, em, dk, lo, s)
    return PeakResult(peak_nm=res.peak_nm, peak_nm_err=res.peak_nm_err, height=res.height,
                      height_err=res.height_err, snr=res.snr, flags=res.flags)


def fwhm(wavelengths_nm: ArrayLike, emission: ArrayLike, dark: ArrayLike | None = None, *,
         min_nm: ArrayLike | None = None,
         settings: AnalyzerSettings | None = None) -> WidthResult:
    """Full width at half maximum of the emission line of each spectrum in a batch.

    Half maximum is half the fitted peak height (see :func:`pl_peak`); each crossing is where a
    local least-squares parabola through the raw pixels within ``±0.2·FWHM`` of the coarse crossing
    meets that level. The error combines both crossings' fit errors and the (shared) error of the
    half-maximum level.

    Args:
        wavelengths_nm: Pixel wavelengths, nm, ``(P,)``, strictly increasing.
        emission: Raw emission counts, ``(P,)`` or ``(N, P)``.
        dark: Dark counts, ``(P,)`` or ``(N, P)``; ``None`` if already subtracted.
        min_nm: Ignore everything bluer than this (scalar or ``(N,)``).
        settings: Analyzer thresholds; defaults if ``None``.

    Returns:
        :class:`WidthResult` with ``(N,)`` arrays.

    Raises:
        SpectrumError: Shapes or the wavelength grid are unusable.
    """
    grid, em, dk, lo, s = _prepare(wavelengths_nm, emission, dark, min_nm, settings)
    res = analyze_emission(grid, em, dk, lo, s)
    return WidthResult(fwhm_nm=res.fwhm_nm, fwhm_nm_err=res.fwhm_nm_err, left_nm=res.left_nm,
                       right_nm=res.right_nm, width_ratio=res.width_ratio, flags=res.flags)
