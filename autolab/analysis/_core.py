"""Shared numerical kernels of the analyzer: input checks, binning, window gathers, small fits.

Everything here works on a whole batch at once. A batch is an ``(N, P)`` array of spectra on one
``(P,)`` wavelength grid; an array of shape ``(P,)`` or ``(1, P)`` is broadcast over the batch
(e.g. one dark frame shared by many spectra). The per-spectrum work that a naive analyzer would do
with a Python loop (find a peak, fit its top, locate a half-maximum crossing) is expressed as a
*gather* of a small window around a per-row index followed by a closed-form least-squares fit over
that window, so the cost is a few numpy passes over ``(N, W)`` arrays with ``W`` of a few dozen.

These helpers are private: the public functions in :mod:`autolab.analysis` document the units and
shapes the user sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from autolab.constants import HC_EV_NM
from autolab.exceptions import SpectrumError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


#: Fewest pixels a spectrum may have: the peak and crossing fits need room for their windows.
MIN_PIXELS = 32

#: Variance of the 4th difference ``[1, -4, 6, -4, 1]`` of white noise, in units of its variance.
D4_VARIANCE_FACTOR = 70.0


def as_real_array(name: str, value: ArrayLike, expected: str) -> FloatArray:
    """``value`` as a float64 array, refusing what numpy would silently mangle.

    ``np.asarray(z, dtype=float)`` drops the imaginary part of a complex array with only a
    warning, so complex input is refused explicitly: counts and wavelengths are real, and a
    complex array means the caller passed the wrong thing (e.g. an FFT).

    Raises:
        SpectrumError: Complex, non-numeric or ragged input, naming ``name`` and ``expected``.
    """
    if np.iscomplexobj(value):
        raise SpectrumError(f"{name}: expected {expected} (real numbers), got complex values")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise SpectrumError(f"{name}: expected {expected}, got {err}") from err


def above_full_scale(raw: FloatArray, saturation: FloatArray) -> BoolArray:
    """Rows of a frame with a pixel *above* the stated full scale, ``(n, P) -> (N,)``.

    A detector cannot report more than its full scale, so such a frame contradicts the stated
    ``saturation_counts`` (a wrong full scale, or frames scaled after readout): nothing computed
    from it can be trusted.

    Args:
        raw: Raw counts, ``(n, P)`` with ``n`` in ``{1, N}``.
        saturation: Full-scale count per row, ``(N,)``.
    """
    with np.errstate(invalid="ignore"):
        row_max = np.max(raw, axis=1)
    return np.asarray(row_max > saturation + 0.5, dtype=bool)


def check_wavelengths(wavelengths_nm: ArrayLike) -> FloatArray:
    """Validate a wavelength grid: 1-D, finite, strictly increasing, at least ``MIN_PIXELS``.

    Raises:
        SpectrumError: Naming what is wrong and what was expected.
    """
    wl = as_real_array("wavelengths_nm", wavelengths_nm, "an array of numbers")
    if wl.ndim != 1:
        raise SpectrumError(f"wavelengths_nm: expected a 1-D array (P,), got shape {wl.shape}")
    if wl.size < MIN_PIXELS:
        raise SpectrumError(
            f"wavelengths_nm: expected at least {MIN_PIXELS} pixels, got {wl.size}")
    if not np.all(np.isfinite(wl)):
        raise SpectrumError("wavelengths_nm: contains NaN or inf; expected finite wavelengths")
    if wl[0] <= 0:
        raise SpectrumError(f"wavelengths_nm: expected positive wavelengths, got {wl[0]:g} nm")
    steps = np.diff(wl)
    if np.any(steps <= 0):
        bad = int(np.argmax(steps <= 0))
        raise SpectrumError(
            "wavelengths_nm: expected strictly increasing values, but pixel "
            f"{bad + 1} ({wl[bad + 1]:g} nm) does not exceed pixel {bad} ({wl[bad]:g} nm)")
    return wl


def check_counts(name: str, counts: ArrayLike, n_pixels: int) -> FloatArray:
    """Coerce a frame or a batch of frames to a float ``(n, P)`` array (``n`` may be 1).

    NaN and inf are *not* rejected here: they are a per-spectrum data-quality problem reported by
    the ``INVALID_INPUT`` flag, so one bad spectrum does not sink a batch.

    Raises:
        SpectrumError: Not numeric, wrong number of dimensions or wrong number of pixels.
    """
    arr = as_real_array(name, counts, "an array of counts")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise SpectrumError(
            f"{name}: expected shape (P,) or (N, P) with P={n_pixels}, got shape {arr.shape}")
    if arr.shape[1] != n_pixels:
        raise SpectrumError(
            f"{name}: has {arr.shape[1]} pixels but the wavelength grid has {n_pixels}; "
            "all frames must be on the same grid")
    return arr


def batch_size(named: dict[str, FloatArray]) -> int:
    """Common batch size of several ``(n, P)`` arrays, where ``n == 1`` broadcasts.

    Raises:
        SpectrumError: Two arrays have different batch sizes, neither of them 1.
    """
    sizes = {k: v.shape[0] for k, v in named.items()}
    n = max(sizes.values())
    bad = {k: s for k, s in sizes.items() if s not in (1, n)}
    if bad:
        raise SpectrumError(
            f"batch sizes disagree: {sizes}; expected every array to have N={n} rows or 1 row")
    return int(n)


def per_row(name: str, value: ArrayLike, n: int, *, positive: bool = False) -> FloatArray:
    """A scalar or an ``(N,)`` array of per-spectrum settings as a float ``(N,)`` array.

    Raises:
        SpectrumError: Complex, wrong length, non-finite values, or (with ``positive``) values
            that are not above zero.
    """
    arr = as_real_array(name, value, "a number or an array of numbers")
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise SpectrumError(f"{name}: expected a scalar or shape ({n},), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise SpectrumError(f"{name}: expected finite values, got {arr}")
    if positive and not np.all(arr > 0):
        raise SpectrumError(f"{name}: expected positive values, got {arr[arr <= 0][:5]}")
    return arr


def rows(arr: FloatArray, sl: slice) -> FloatArray:
    """Rows ``sl`` of a batch array, or the array itself when it has one broadcast row."""
    return arr if arr.shape[0] == 1 else arr[sl]


@dataclass(frozen=True)
class Grid:
    """A pixel grid and the coarse "bin" grid derived from it.

    Binning ``b`` adjacent pixels (about 2 nm) makes the coarse stages (peak search, shape tests,
    band integrals, absorbance) four times cheaper while keeping every spectral feature of a
    quantum-dot spectrum (tens of nm wide) resolved; the sub-pixel fits then go back to the raw
    pixels in small windows.

    Attributes:
        wl: Pixel wavelengths, nm, ``(P,)``.
        energy: Pixel photon energies, eV, ``(P,)``.
        dl: Pixel widths (centred differences), nm, ``(P,)``.
        b: Pixels per bin.
        wl_b: Bin-centre wavelengths, nm, ``(M,)`` with ``M = P // b`` (trailing pixels dropped).
        width_b: Bin widths, nm, ``(M,)``.
        energy_width_b: Bin widths in energy, eV, ``(M,)``.
    """

    wl: FloatArray
    energy: FloatArray
    dl: FloatArray
    b: int
    wl_b: FloatArray
    width_b: FloatArray
    energy_width_b: FloatArray

    @classmethod
    def make(cls, wl: FloatArray, bin_nm: float) -> Grid:
        """Grid for ``wl`` with bins of about ``bin_nm`` (at least 1 pixel, at least 16 bins).

        Cached per pixel grid (a rig's detector never changes, and every steady-state verdict
        and analysis asked again); the cached grid holds read-only copies.
        """
        w = np.asarray(wl, dtype=np.float64)
        return _grid(w.tobytes(), w.shape, float(bin_nm))

    @classmethod
    def _build(cls, wl: FloatArray, bin_nm: float) -> Grid:
        dl = np.gradient(wl)
        b = int(np.clip(round(bin_nm / float(np.median(dl))), 1, max(1, wl.size // 16)))
        m = wl.size // b
        wl_b = wl[: m * b].reshape(m, b).mean(axis=1)
        width_b = dl[: m * b].reshape(m, b).sum(axis=1)
        energy_width_b = width_b * HC_EV_NM / wl_b**2
        grid = cls(wl=wl, energy=HC_EV_NM / wl, dl=dl, b=b, wl_b=wl_b, width_b=width_b,
                   energy_width_b=energy_width_b)
        for a in (grid.energy, grid.dl, grid.wl_b, grid.width_b, grid.energy_width_b):
            a.setflags(write=False)
        return grid

    @property
    def n_pixels(self) -> int:
        """Number of pixels ``P``."""
        return int(self.wl.size)

    @property
    def n_bins(self) -> int:
        """Number of bins ``M``."""
        return int(self.wl_b.size)

    def pixel_at(self, wavelength_nm: FloatArray) -> IntArray:
        """Index of the pixel nearest each wavelength, clipped to the grid."""
        i = np.searchsorted(self.wl, wavelength_nm)
        i = np.clip(i, 1, self.n_pixels - 1)
        left = self.wl[i - 1]
        closer_left = (wavelength_nm - left) < (self.wl[i] - wavelength_nm)
        return (i - closer_left.astype(np.int64)).astype(np.int64)

    def bin_at(self, wavelength_nm: FloatArray) -> IntArray:
        """Index of the first bin whose centre is at or beyond each wavelength (may be ``M``)."""
        return np.searchsorted(self.wl_b, wavelength_nm).astype(np.int64)

    def bin(self, x: FloatArray) -> FloatArray:
        """Mean of each group of ``b`` pixels: ``(n, P) -> (n, M)``."""
        b, m = self.b, self.n_bins
        if b == 1:
            return np.array(x[:, :m], dtype=np.float64)
        v = x[:, : m * b]
        out = v[:, 0::b] + v[:, 1::b]
        for k in range(2, b):
            out += v[:, k::b]
        out *= 1.0 / b
        return out


@lru_cache(maxsize=16)
def _grid(wl_bytes: bytes, shape: tuple[int, ...], bin_nm: float) -> Grid:
    return Grid._build(np.frombuffer(wl_bytes, dtype=np.float64).reshape(shape), bin_nm)


def gather(arr: FloatArray, idx: IntArray) -> FloatArray:
    """``arr[r, idx[r, j]]`` for every row ``r``; ``arr`` may have one broadcast row.

    Args:
        arr: ``(n, P)`` with ``n`` equal to ``idx.shape[0]`` or 1.
        idx: ``(N, W)`` pixel indices, already clipped to ``[0, P)``.
    """
    if arr.shape[0] == 1:
        return np.asarray(arr[0][idx], dtype=np.float64)
    flat = idx + (np.arange(idx.shape[0], dtype=np.int64) * arr.shape[1])[:, None]
    return np.asarray(arr.reshape(-1)[flat], dtype=np.float64)


@dataclass(frozen=True)
class QuadFit:
    """Closed-form weighted least-squares fit ``y ≈ c0 + c1·u + c2·u²``, one per row.

    Attributes:
        c0, c1, c2: Coefficients, ``(N,)`` each, in the caller's ``u`` units.
        inv: Unique entries of ``(XᵀWX)⁻¹`` as ``(i00, i01, i02, i11, i12, i22)``, each ``(N,)``;
            multiply by the noise variance to get the coefficients' covariance.
        n: Number of points that entered each fit, ``(N,)``.
    """

    c0: FloatArray
    c1: FloatArray
    c2: FloatArray
    inv: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]
    n: FloatArray

    def var_of(self, g0: FloatArray, g1: FloatArray, g2: FloatArray) -> FloatArray:
        """``gᵀ (XᵀWX)⁻¹ g`` for a per-row gradient ``g = (g0, g1, g2)`` (delta method)."""
        i00, i01, i02, i11, i12, i22 = self.inv
        return (g0 * g0 * i00 + g1 * g1 * i11 + g2 * g2 * i22
                + 2.0 * (g0 * g1 * i01 + g0 * g2 * i02 + g1 * g2 * i12))


def quadfit(u: FloatArray, y: FloatArray, w: FloatArray, scale: FloatArray) -> QuadFit:
    """Fit a parabola to each row of ``(u, y)`` with weights ``w`` (0 excludes a point).

    Solving the 3x3 normal equations by their adjugate keeps the whole batch in a handful of
    vectorized array operations and never raises on a degenerate row (too few points): such rows
    come back as NaN/inf, which the callers treat as "no fit".

    Args:
        u: Abscissae, ``(N, W)``, centred near 0 for conditioning.
        y: Ordinates, ``(N, W)``; entries with zero weight may hold anything finite.
        w: Weights, ``(N, W)``, 0 or positive.
        scale: Per-row scale of ``u``, ``(N,)``; the fit is done in ``u / scale`` and converted
            back, which keeps the moments of order 4 well conditioned.
    """
    x = u / scale[:, None]
    wx = w * x
    wx2 = wx * x
    wx3 = wx2 * x
    s0 = w.sum(axis=1)
    s1 = wx.sum(axis=1)
    s2 = wx2.sum(axis=1)
    s3 = wx3.sum(axis=1)
    s4 = np.einsum("ij,ij->i", wx3, x)
    t0 = np.einsum("ij,ij->i", w, y)
    t1 = np.einsum("ij,ij->i", wx, y)
    t2 = np.einsum("ij,ij->i", wx2, y)
    a00 = s2 * s4 - s3 * s3
    a01 = s2 * s3 - s1 * s4
    a02 = s1 * s3 - s2 * s2
    a11 = s0 * s4 - s2 * s2
    a12 = s1 * s2 - s0 * s3
    a22 = s0 * s2 - s1 * s1
    with np.errstate(divide="ignore", invalid="ignore"):
        det = s0 * a00 + s1 * a01 + s2 * a02
        rdet = 1.0 / det
        c0 = (a00 * t0 + a01 * t1 + a02 * t2) * rdet
        c1 = (a01 * t0 + a11 * t1 + a12 * t2) * rdet / scale
        c2 = (a02 * t0 + a12 * t1 + a22 * t2) * rdet / scale**2
        inv = (a00 * rdet, a01 * rdet / scale, a02 * rdet / scale**2, a11 * rdet / scale**2,
               a12 * rdet / scale**3, a22 * rdet / scale**4)
    return QuadFit(c0=c0, c1=c1, c2=c2, inv=inv, n=s0)


def d4_noise_var(y: FloatArray, valid: BoolArray) -> FloatArray:
    """White-noise variance of each row from its 4th differences, ``(N, W) -> (N,)``.

    The 4th difference ``y[i-2] - 4y[i-1] + 6y[i] - 4y[i+1] + y[i+2]`` cancels any cubic, so a
    smooth spectral line (tens of pixels wide) contributes almost nothing while pixel noise
    contributes ``70 σ²``. Only quintuples of valid points count. Rows with no valid quintuple
    give NaN.
    """
    return _d4(y, valid, level=False)[0]


def d4_noise_level(y: FloatArray, valid: BoolArray) -> tuple[FloatArray, FloatArray]:
    """Like :func:`d4_noise_var`, also returning the mean of ``y`` over the points used.

    With signal-dependent noise ``σ² = a + g·y`` the variance estimate is ``a + g·mean(y)``, so
    the pair (mean level, variance) from two windows at different levels fixes ``a`` and ``g``.
    """
    return _d4(y, valid, level=True)


def _d4(y: FloatArray, valid: BoolArray, level: bool) -> tuple[FloatArray, FloatArray]:
    # only the columns where some row has a valid point matter
    used = np.flatnonzero(valid.any(axis=0))
    if used.size:
        y = y[:, used[0]: used[-1] + 1]
        valid = valid[:, used[0]: used[-1] + 1]
    with np.errstate(over="ignore", invalid="ignore"):
        d4 = y[:, :-4] + y[:, 4:]
        t = y[:, 1:-3] + y[:, 3:-1]
        t *= 4.0
        d4 -= t
        np.multiply(y[:, 2:-2], 6.0, out=t)
        d4 += t
    ok = valid[:, :-4] & valid[:, 4:]
    ok &= valid[:, 1:-3]
    ok &= valid[:, 2:-2]
    ok &= valid[:, 3:-1]
    cnt = np.count_nonzero(ok, axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d4 = np.where(ok, d4, 0.0)
        var = np.einsum("ij,ij->i", d4, d4) / (D4_VARIANCE_FACTOR * cnt)
        lev = (np.where(ok, y[:, 2:-2], 0.0).sum(axis=1) / cnt) if level else var
    return var, lev


def window_indices(center: IntArray, half_max: int, pad: int, n: int,
                   lo: IntArray | None = None) -> tuple[FloatArray, IntArray, BoolArray]:
    """Pixel indices of a window ``center ± (half_max + pad)`` per row, clipped to the grid.

    Returns:
        ``(offsets, idx, inside)``: offsets ``(W,)`` from the centre; ``idx`` ``(N, W)`` clipped
        indices; ``inside`` ``(N, W)`` True where the unclipped index lies in ``[lo, n)``.
    """
    offs = np.arange(-half_max - pad, half_max + pad + 1, dtype=np.int64)
    raw = center[:, None] + offs[None, :]
    low = 0 if lo is None else lo[:, None]
    inside = (raw >= low) & (raw < n)
    return offs.astype(np.float64), np.clip(raw, 0, n - 1), inside


@dataclass(frozen=True)
class PolyFit:
    """Closed-form weighted least-squares polynomial ``y ≈ Σ_k c_k u^k`` (degree ``d``), per row.

    Attributes:
        coef: Coefficients, ``(N, d+1)``, lowest order first, in the caller's ``u`` units.
        inv: ``(XᵀWX)⁻¹`` in the caller's units, ``(N, d+1, d+1)``; times the noise variance (for
            weights ``1/σ²`` already folded in: as is) it is the coefficients' covariance.
        n: Number of points with positive weight, ``(N,)``.
    """

    coef: FloatArray
    inv: FloatArray
    n: FloatArray

    def var_of(self, grad: FloatArray) -> FloatArray:
        """``gᵀ (XᵀWX)⁻¹ g`` for per-row gradients ``grad`` of shape ``(N, d+1)``."""
        return np.asarray(np.einsum("ni,nij,nj->n", grad, self.inv, grad), dtype=np.float64)


def polyfit_rows(u: FloatArray, y: FloatArray, w: FloatArray, scale: FloatArray,
                 deg: int) -> PolyFit:
    """Fit a degree-``deg`` polynomial to each row by weighted least squares, never raising.

    The normal equations (a Hankel matrix of weighted moments) are solved by a Cholesky
    factorization written out over the small dimension, so the work is ``O(deg³)`` vectorized
    operations over the batch instead of a LAPACK call per row; a row with too few points simply
    yields NaN coefficients.

    Args:
        u: Abscissae, ``(N, W)``, centred near 0.
        y: Ordinates, ``(N, W)``.
        w: Weights, ``(N, W)``; 0 excludes a point.
        scale: Per-row scale of ``u`` (fit done in ``u/scale`` for conditioning), ``(N,)``.
        deg: Polynomial degree (1-4).
    """
    k = deg + 1
    x = u / scale[:, None]
    pw = w.copy()
    mom = [pw.sum(axis=1)]
    rhs = [(pw * y).sum(axis=1)]
    for j in range(1, 2 * deg + 1):
        pw = pw * x
        mom.append(pw.sum(axis=1))
        if j < k:
            rhs.append((pw * y).sum(axis=1))
    n = (w > 0).sum(axis=1).astype(np.float64)
    nrows = u.shape[0]
    a = np.empty((k, k, nrows))
    for i in range(k):
        for j in range(k):
            a[i, j] = mom[i + j]
    # Cholesky a = L Lᵀ, then inverse of L, then a⁻¹ = L⁻ᵀ L⁻¹ (all per row)
    low = np.zeros((k, k, nrows))
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(k):
            for j in range(i + 1):
                s = a[i, j] - sum((low[i, m] * low[j, m] for m in range(j)), np.zeros(nrows))
                if i == j:
                    low[i, i] = np.sqrt(np.where(s > 0, s, np.nan))
                else:
                    low[i, j] = s / low[j, j]
        linv = np.zeros((k, k, nrows))
        for i in range(k):
            linv[i, i] = 1.0 / low[i, i]
            for j in range(i):
                s = sum((low[i, m] * linv[m, j] for m in range(j, i)), np.zeros(nrows))
                linv[i, j] = -s / low[i, i]
        inv = np.einsum("min,mjn->ijn", linv, linv)
        coef_scaled = np.einsum("ijn,jn->in", inv, np.array(rhs))
        powers = scale[None, :] ** np.arange(k)[:, None]
        coef = (coef_scaled / powers).T
        inv_u = inv / (powers[:, None, :] * powers[None, :, :])
    return PolyFit(coef=np.ascontiguousarray(coef), inv=np.moveaxis(inv_u, 2, 0), n=n)


def saturated_in(raw: FloatArray, lo_pix: IntArray, hi_pix: IntArray,
                 saturation: FloatArray) -> BoolArray:
    """Whether a raw pixel in ``[lo_pix, hi_pix)`` of each row reached full scale, or clipped.

    A cheap row maximum screens the batch; only rows that touch full scale somewhere get the
    windowed check, so saturated light outside the region of interest (e.g. excitation scatter)
    is harmless and the common case costs one reduction. A frame clipped *below* the stated
    full scale (a unit that saturates under ``max_intensity`` without rescaling) is found from
    its own shape: :func:`flat_topped_in`.

    Args:
        raw: Raw counts, ``(n, P)`` with ``n`` in ``{1, N}``.
        lo_pix: First pixel of the region, ``(N,)``.
        hi_pix: One past the last pixel of the region, ``(N,)``.
        saturation: Full-scale count per row, ``(N,)``.
    """
    nrows = lo_pix.shape[0]
    sat_level = saturation - 0.5
    row_max = raw.max(axis=1)
    if raw.shape[0] == 1:
        row_max = np.repeat(row_max, nrows)
    cand = np.flatnonzero(row_max >= sat_level)
    out = np.zeros(nrows, dtype=bool)
    if cand.size:
        sub = raw if raw.shape[0] == 1 else raw[cand]
        pix = np.arange(raw.shape[1])[None, :]
        hit = ((sub >= sat_level[cand][:, None]) & (pix >= lo_pix[cand][:, None])
               & (pix < hi_pix[cand][:, None]))
        out[cand] = hit.any(axis=1)
    return out | flat_topped_in(raw, lo_pix, hi_pix)


#: Fewest adjacent pixels at a frame's maximum count that can be a clipped top. A clipped PL or
#: dye peak is flat over tens of pixels (2 % over the clip level: 0.4 sigma of the line each
#: side); a smooth top has at most two pixels at its maximum (a symmetric top between them),
#: more only by the chance of exact ties in noise or by rounding a very flat top.
FLAT_TOP_PIXELS = 4
#: Pixels on each side of a flat run whose mean is compared with it: at least this many, and at
#: least twice the run (a broad clipped line falls slowly; its flanks must reach past 1 sigma).
FLAT_TOP_FLANK_PIXELS = 8
#: How far the flanks must fall, in the noise sigma of the flank pixels: chance ties at a noisy
#: maximum sit about 3 sigma above their neighbours; a clip falls by a share of the line's height.
FLAT_TOP_NOISE_SIGMAS = 4.0
#: ... and in units of what rounding a smooth top to whole counts allows (see
#: :func:`_smooth_top_drop`), so a noise-free rounded frame is judged too.
FLAT_TOP_SMOOTH_FACTOR = 2.0


def flat_topped_in(raw: FloatArray, lo_pix: IntArray, hi_pix: IntArray) -> BoolArray:
    """Whether each row's maximum is a clipped, flat top inside ``[lo_pix, hi_pix)``.

    An ADC that saturates holds every pixel past its limit at one count, whatever the stated
    full scale (python-seabreeze allows a unit saturating below ``max_intensity`` without
    rescaling); an unclipped line is smooth and does not. A row is clipped when a run of at
    least :data:`FLAT_TOP_PIXELS` adjacent pixels sits exactly at its maximum, overlaps the
    region, and the pixels flanking the run on every side the frame has fall below it by more
    than both the noise (:data:`FLAT_TOP_NOISE_SIGMAS` of the flanks' own noise) and what a
    smooth top rounded to whole counts allows (:func:`_smooth_top_drop`). A frame without any
    such run (every noisy unclipped frame: ties at the maximum are rare) costs one comparison.

    Args:
        raw: Raw counts, ``(n, P)`` with ``n`` in ``{1, N}``.
        lo_pix: First pixel of the region, ``(N,)``.
        hi_pix: One past the last pixel of the region, ``(N,)``.
    """
    out = np.zeros(lo_pix.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        row_max = raw.max(axis=1, keepdims=True)
        at_max = (raw == row_max) & np.isfinite(row_max)  # a garbage row is not a top
    for i in np.flatnonzero(np.count_nonzero(at_max, axis=1) >= FLAT_TOP_PIXELS):
        rows = slice(None) if raw.shape[0] == 1 else slice(i, i + 1)
        for a, b in _clipped_runs(raw[i], at_max[i]):
            out[rows] |= (lo_pix[rows] < b) & (hi_pix[rows] > a)
    return out


def _runs(at_max: BoolArray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of at least :data:`FLAT_TOP_PIXELS` True pixels."""
    edges = np.diff(np.concatenate(([0], at_max.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)
            if b - a >= FLAT_TOP_PIXELS]


def _clipped_runs(row: FloatArray, at_max: BoolArray) -> list[tuple[int, int]]:
    """The runs at the row's maximum whose flanks fall as a clip's do."""
    return [(a, b) for a, b in _runs(at_max) if _flanks_fall(row, a, b)]


def _flanks_fall(row: FloatArray, start: int, stop: int) -> bool:
    """Whether the pixels beside ``row[start:stop]`` (a run at its maximum) fall as a clip's.

    Every side the frame has must fall by more than a rounded smooth top allows, and the
    longer by more than the noise too (a broad line clipped near the frame's edge may fall
    slowly on the short side); a side of fewer than :data:`FLAT_TOP_PIXELS` pixels is not
    judged, and a run without a side is not a top (it fills the frame).
    """
    width = stop - start
    m = max(FLAT_TOP_FLANK_PIXELS, 2 * width)
    level = float(row[start])
    sides = sorted((side for side in (row[max(0, start - m):start][::-1], row[stop:stop + m])
                    if side.size >= FLAT_TOP_PIXELS), key=len, reverse=True)
    if not sides:
        return False
    drops = [level - float(np.mean(side)) for side in sides]
    if not drops[0] > FLAT_TOP_NOISE_SIGMAS * _noise_sigma(sides[0]):
        return False
    return all(drop > FLAT_TOP_SMOOTH_FACTOR * _smooth_top_drop(width, side.size)
               for side, drop in zip(sides, drops, strict=True))


def _noise_sigma(side: FloatArray) -> float:
    """Robust noise sigma of a flank: the MAD of its second differences (0 if too short)."""
    if side.size < 3:
        return 0.0
    d2 = np.diff(side, 2)
    mad = float(np.median(np.abs(d2 - np.median(d2))))
    return mad / 0.6745 / float(np.sqrt(6.0))


def _smooth_top_drop(width: int, flank: int) -> float:
    """The most a smooth top rounded to whole counts can fall over a flank, mean, counts.

    ``width`` pixels rounding to one count put the whole run within one count of the vertex:
    curvature ``a <= 1 / (width/2)^2`` counts per pixel^2, so ``d`` pixels past the run's edge
    the line is at most ``(1 + 2d/width)^2`` counts below its vertex, half a count more below
    the run (a peak's top falls no faster than its osculating parabola: Gaussian, Lorentzian
    and the analyzer's energy-shaped lines all lie above it).
    """
    d = np.arange(1, flank + 1, dtype=np.float64)
    return float(np.mean((1.0 + 2.0 * d / width) ** 2)) + 0.5
