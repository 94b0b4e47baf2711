"""The analyzer's front door: raw frames in, :class:`~autolab.records.Features` out.

:func:`extract_features_batch` analyzes ``N`` experiments at once (all on one wavelength grid);
:func:`analyze` is the one-experiment convenience the campaign calls, and runs the same batch path
with ``N = 1``, so a batch and a loop of single analyses agree exactly.

The batch is processed in chunks of a few hundred spectra so the working arrays stay in the CPU
cache; every step inside a chunk is vectorized over its rows (see :mod:`.emission`,
:mod:`.absorption`, :mod:`.qy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike

from autolab.analysis._core import (
    BoolArray,
    FloatArray,
    Grid,
    IntArray,
    above_full_scale,
    as_real_array,
    batch_size,
    check_counts,
    check_wavelengths,
    d4_noise_var,
    per_row,
    rows,
    saturated_in,
)
from autolab.analysis.absorption import exciton_from_bins, value_at
from autolab.analysis.carryover import with_carryover
from autolab.analysis.emission import PixelGain, analyze_emission
from autolab.analysis.qy import band_integral, physical_qy, relative_qy
from autolab.analysis.settings import AnalyzerSettings
from autolab.analysis.steady import steady_state
from autolab.exceptions import SpectrumError
from autolab.records import Features, Measurement, QualityFlag, QYReference

_INVALID = int(QualityFlag.INVALID_INPUT)
_SAT = int(QualityFlag.SATURATED)
_NONLIN = int(QualityFlag.ABSORBANCE_NONLINEAR)
_NO_PEAK = int(QualityFlag.NO_PEAK)
_DEFAULT_REFERENCE = QYReference()


@dataclass(frozen=True, eq=False)
class FeatureBatch:
    """Features of ``N`` experiments as ``(N,)`` arrays (the fields of :class:`Features`).

    ``flags`` holds the :class:`~autolab.records.QualityFlag` bits as one int per experiment.
    Values that could not be determined are NaN, with a flag saying why.
    """

    pl_peak_nm: FloatArray
    fwhm_nm: FloatArray
    qy: FloatArray
    abs_peak_nm: FloatArray
    absorbance_at_excitation: FloatArray
    pl_peak_nm_err: FloatArray
    fwhm_nm_err: FloatArray
    qy_err: FloatArray
    abs_peak_nm_err: FloatArray
    pl_snr: FloatArray
    flags: IntArray

    def __len__(self) -> int:
        return int(self.flags.shape[0])

    def __getitem__(self, i: int) -> Features:
        """Features of experiment ``i``."""
        kw: dict[str, float] = {f.name: float(getattr(self, f.name)[i])
                                for f in fields(self) if f.name != "flags"}
        return Features(**kw, flags=QualityFlag(int(self.flags[i])))

    def to_features(self) -> list[Features]:
        """One :class:`~autolab.records.Features` per experiment."""
        return [self[i] for i in range(len(self))]

    @classmethod
    def concatenate(cls, parts: Sequence[FeatureBatch]) -> FeatureBatch:
        """Join batches end to end."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})


def _references(ref: QYReference | Sequence[QYReference], n: int) -> tuple[FloatArray, ...]:
    refs = [ref] * n if isinstance(ref, QYReference) else list(ref)
    if len(refs) != n:
        raise SpectrumError(f"qy_reference: expected one QYReference or {n}, got {len(refs)}")
    names = ("qy", "absorbance_at_excitation", "refractive_index", "sample_refractive_index")
    cols = tuple(as_real_array(f"qy_reference.{name}", [getattr(r, name) for r in refs],
                               "a number") for name in names)
    for name, col in zip(names, cols, strict=True):
        if not np.all(np.isfinite(col) & (col > 0)):
            raise SpectrumError(f"qy_reference.{name}: expected positive finite values, got {col}")
    return cols


def extract_features_batch(
    wavelengths_nm: ArrayLike,
    *,
    pl_counts: ArrayLike,
    dark_pl_counts: ArrayLike,
    dye_pl_counts: ArrayLike,
    sample_counts: ArrayLike,
    blank_counts: ArrayLike,
    dark_abs_counts: ArrayLike,
    excitation_nm: ArrayLike,
    saturation_counts: ArrayLike = 65535.0,
    qy_reference: QYReference | Sequence[QYReference] = _DEFAULT_REFERENCE,
    settings: AnalyzerSettings | None = None,
    chunk_size: int = 256,
) -> FeatureBatch:
    """Features (PL peak, FWHM, QY, first exciton, errors, flags) of ``N`` experiments at once.

    Every frame argument is raw detector counts, shape ``(N, P)`` or ``(P,)`` (a ``(P,)`` frame,
    e.g. one dye or dark frame for the whole batch, is shared by all rows and analyzed once).

    Args:
        wavelengths_nm: Pixel wavelengths, nm, ``(P,)``, strictly increasing.
        pl_counts: Sample emission under excitation.
        dark_pl_counts: Dark frame at the emission integration time.
        dye_pl_counts: Reference-dye emission, same geometry and settings.
        sample_counts: Lamp through the product stream.
        blank_counts: Lamp through the solvent-filled cell.
        dark_abs_counts: Dark frame at the absorbance integration time.
        excitation_nm: Excitation wavelength, nm, scalar or ``(N,)``.
        saturation_counts: Detector full scale, counts, scalar or ``(N,)``.
        qy_reference: Reference-dye facts, one for all or one per experiment.
        settings: Analyzer thresholds; defaults if ``None``.
        chunk_size: Spectra per vectorized chunk (cache-sized; results do not depend on it).

    Returns:
        :class:`FeatureBatch` of ``(N,)`` arrays.

    Raises:
        SpectrumError: Input that cannot be analyzed at all: non-numeric data, wrong shapes,
            frames on different grids, a non-increasing grid, disagreeing batch sizes. Problems
            of single spectra (NaN, saturation, no peak, ...) are flags, not errors.
    """
    s = settings or AnalyzerSettings()
    wl = check_wavelengths(wavelengths_nm)
    p = wl.size
    frames = {name: check_counts(name, arr, p) for name, arr in (
        ("pl_counts", pl_counts), ("dark_pl_counts", dark_pl_counts),
        ("dye_pl_counts", dye_pl_counts), ("sample_counts", sample_counts),
        ("blank_counts", blank_counts), ("dark_abs_counts", dark_abs_counts))}
    n = batch_size(frames)
    ex = per_row("excitation_nm", excitation_nm, n, positive=True)
    sat = per_row("saturation_counts", saturation_counts, n, positive=True)
    refs = _references(qy_reference, n)
    if chunk_size < 1:
        raise SpectrumError(f"chunk_size: expected a positive integer, got {chunk_size}")
    grid = Grid.make(wl, s.bin_nm)
    parts = []
    for start in range(0, n, chunk_size):
        sl = slice(start, min(start + chunk_size, n))
        # garbage rows (inf, 1e308) overflow harmlessly: they end up NaN and flagged invalid
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            parts.append(_chunk(grid, {k: rows(v, sl) for k, v in frames.items()}, ex[sl],
                                sat[sl], tuple(r[sl] for r in refs), s))
    return FeatureBatch.concatenate(parts)


def _chunk(  # noqa: PLR0917 - private per-chunk step
        grid: Grid, fr: dict[str, FloatArray], ex: FloatArray, sat: FloatArray,
           refs: tuple[FloatArray, ...], s: AnalyzerSettings) -> FeatureBatch:
    """All features of one chunk of ``N`` experiments."""
    nrows = ex.shape[0]
    band_lo = ex + s.excitation_margin_nm
    dark_b = grid.bin(fr["dark_pl_counts"])  # shared by the sample and the dye analyses
    # absorbance on the bin grid
    d_abs = grid.bin(fr["dark_abs_counts"])
    s_net = grid.bin(fr["sample_counts"]) - d_abs
    b_net = grid.bin(fr["blank_counts"]) - d_abs
    s_net, b_net = (np.broadcast_to(x, (nrows, grid.n_bins)) for x in (s_net, b_net))
    abs_finite = np.isfinite(s_net).all(axis=1) & np.isfinite(b_net).all(axis=1)
    # blank/sample transmission ratio: A = log10(ratio); the inner-filter factor
    # 10^(A/2) = sqrt(ratio) (NaN where either net intensity is not positive)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((s_net > 0) & (b_net > 0), b_net / s_net, np.nan)
        a_b = np.log10(ratio)
        corr = np.sqrt(ratio)
    a_ex = value_at(grid.wl_b, a_b, ex)
    exc = exciton_from_bins(grid.wl_b, a_b, s)
    lo, hi = s.exciton_search_nm
    sr = np.flatnonzero((grid.wl_b >= lo) & (grid.wl_b <= hi))  # a contiguous bin range
    sr_cols = slice(int(sr[0]), int(sr[-1]) + 1) if sr.size else slice(0, 0)
    with np.errstate(invalid="ignore"):
        lamp_dead = (np.count_nonzero(b_net[:, sr_cols] <= 0, axis=1)
                     > 0.5 * max(int(sr.size), 1))
    gain, no_gain = _inner_filter_gain(grid, corr, a_b, a_ex.value, abs_finite & ~lamp_dead,
                                       band_lo, s)
    em = analyze_emission(grid, fr["pl_counts"], fr["dark_pl_counts"], band_lo, s, sat,
                          dark_binned=dark_b, gain=gain)
    shared_dye = (fr["dye_pl_counts"].shape[0] == 1 and fr["dark_pl_counts"].shape[0] == 1
                  and bool(np.all(ex == ex[0])) and bool(np.all(sat == sat[0])))
    if shared_dye:  # one reference frame for the whole chunk: analyze it once
        dye1 = analyze_emission(grid, fr["dye_pl_counts"], fr["dark_pl_counts"], band_lo[:1], s,
                                sat[:1], fine=False)
        dye_flags = np.repeat(dye1.flags, nrows)
        i_r, v_r = band_integral(dye1.binned, grid.width_b, lo=dye1.win_lo, hi=dye1.win_hi,
                                 factor=None, noise_a=dye1.noise_a, noise_g=dye1.noise_g,
                                 pixels_per_bin=grid.b)
        i_r, v_r = np.repeat(i_r, nrows), np.repeat(v_r, nrows)
    else:
        dye = analyze_emission(grid, fr["dye_pl_counts"], fr["dark_pl_counts"], band_lo, s, sat,
                               fine=False, dark_binned=dark_b)
        dye_flags = dye.flags
        i_r, v_r = band_integral(dye.binned, grid.width_b, lo=dye.win_lo, hi=dye.win_hi,
                                 factor=None, noise_a=dye.noise_a, noise_g=dye.noise_g,
                                 pixels_per_bin=grid.b)

    i_s, v_s = band_integral(em.binned, grid.width_b, lo=em.win_lo, hi=em.win_hi, factor=corr,
                             noise_a=em.noise_a, noise_g=em.noise_g, pixels_per_bin=grid.b)
    q = relative_qy(i_s, v_s, i_r, v_r, a_ex=a_ex.value, a_ex_err=a_ex.err,
                    reference_qy=refs[0], reference_absorbance=refs[1],
                    reference_index=refs[2], sample_index=refs[3],
                    calibration_rel=s.qy_calibration_rel)

    # flags
    flags = em.flags.copy()
    dye_bad = (dye_flags & (_INVALID | _NO_PEAK)) != 0
    flags |= np.where(dye_bad | ~abs_finite, _INVALID, 0)
    flags |= dye_flags & _SAT
    flags |= np.where(lamp_dead, _INVALID, 0)
    lin_lo, lin_hi = s.absorbance_linear_range
    with np.errstate(invalid="ignore"):
        nonlinear = ~((a_ex.value >= lin_lo) & (a_ex.value <= lin_hi)) | ~np.isfinite(i_s)
    flags |= np.where((nonlinear | no_gain) & abs_finite & ~lamp_dead, _NONLIN, 0)
    flags |= np.where(exc.found, 0, int(QualityFlag.NO_ABS_PEAK))
    px_lo = np.searchsorted(grid.wl, np.minimum(lo, ex - 12.0))
    px_hi = np.searchsorted(grid.wl, np.maximum(hi, ex + 12.0))
    sat_abs = (saturated_in(fr["blank_counts"], px_lo, px_hi, sat)
               | saturated_in(fr["sample_counts"], px_lo, px_hi, sat))
    flags |= np.where(sat_abs, _SAT, 0)
    flags |= np.where(_beyond_full_scale(fr, sat), _INVALID, 0)
    qy, qy_err, qy_impossible = physical_qy(q.qy, q.qy_err, s.qy_range_sigma)
    flags |= np.where(qy_impossible, _INVALID, 0)

    invalid = (flags & _INVALID) != 0
    no_qy = invalid | ((flags & _NO_PEAK) != 0)
    nan = np.nan
    a_ok = abs_finite & ~lamp_dead
    return FeatureBatch(
        pl_peak_nm=np.where(invalid, nan, em.peak_nm),
        fwhm_nm=np.where(invalid, nan, em.fwhm_nm),
        qy=np.where(no_qy, nan, qy),
        abs_peak_nm=np.where(a_ok, exc.peak_nm, nan),
        absorbance_at_excitation=np.where(a_ok, a_ex.value, nan),
        pl_peak_nm_err=np.where(invalid, nan, em.peak_nm_err),
        fwhm_nm_err=np.where(invalid, nan, em.fwhm_nm_err),
        qy_err=np.where(no_qy, nan, qy_err),
        abs_peak_nm_err=np.where(a_ok, exc.peak_nm_err, nan),
        pl_snr=em.snr,
        flags=flags.astype(np.int64),
    )


def _inner_filter_gain(  # noqa: PLR0917 - private step of _chunk
        grid: Grid, corr: FloatArray, a_b: FloatArray, a_ex: FloatArray, abs_ok: BoolArray,
        band_lo_nm: FloatArray, s: AnalyzerSettings) -> tuple[PixelGain | None, BoolArray]:
    """The secondary inner-filter gain for locating the line, and the rows that cannot have it.

    ``None`` when ``s.peak_inner_filter`` is off. A row keeps factor 1 (the uncorrected line)
    when its absorbance frames are unusable (``abs_ok`` False: non-finite or a dead lamp, already
    ``INVALID_INPUT``), when its absorbance at the excitation is outside
    ``s.absorbance_linear_range`` (already ``ABSORBANCE_NONLINEAR``), or when the factor is not
    finite somewhere in the emission band (the product is opaque there or the lamp gives no
    light): those last rows are returned as ``no_gain`` so the caller flags them
    ``ABSORBANCE_NONLINEAR``. A partial correction would bend the line where it stops.
    """
    nrows = corr.shape[0]
    if not s.peak_inner_filter:
        return None, np.zeros(nrows, dtype=bool)
    inband = np.arange(grid.n_bins)[None, :] >= grid.bin_at(band_lo_nm)[:, None]
    finite_band = (np.isfinite(corr) | ~inband).all(axis=1)
    lin_lo, lin_hi = s.absorbance_linear_range
    with np.errstate(invalid="ignore"):
        linear = (a_ex >= lin_lo) & (a_ex <= lin_hi)
    use = abs_ok & linear & finite_band
    good = use[:, None] & np.isfinite(corr)
    # noise of one bin's ln factor (= ln(10)/2 · A) from its 4th differences over the band (the
    # absorbance is smooth there; any residual shape only overstates the noise)
    log_var = d4_noise_var(np.where(good, a_b, 0.0), inband) * (0.5 * np.log(10.0)) ** 2
    log_var = np.where(use & np.isfinite(log_var), log_var, 0.0)
    return PixelGain.make(grid, np.where(good, corr, 1.0), log_var), abs_ok & ~finite_band


def _beyond_full_scale(fr: dict[str, FloatArray], sat: FloatArray) -> IntArray:
    """Rows where any frame holds a count above the stated full scale (impossible frames)."""
    out = np.zeros(sat.shape[0], dtype=bool)
    for raw in fr.values():
        out |= above_full_scale(raw, sat)
    return out.astype(np.int64)


def _stack(measurements: Sequence[Measurement]) -> dict[str, FloatArray]:
    wl = measurements[0].spectra.wavelengths_nm
    for i, m in enumerate(measurements):
        if m.spectra.wavelengths_nm.shape != wl.shape or not np.array_equal(
                m.spectra.wavelengths_nm, wl):
            raise SpectrumError(f"measurement {i}: wavelength grid differs from measurement 0; "
                                "a batch must share one grid")
    names = ("pl_counts", "dark_pl_counts", "dye_pl_counts", "sample_counts", "blank_counts",
             "dark_abs_counts")
    out: dict[str, FloatArray] = {}
    for name in names:
        try:
            out[name] = np.stack([np.asarray(getattr(m.spectra, name)) for m in measurements])
        except ValueError as err:
            raise SpectrumError(f"{name}: frames of different lengths ({err}); expected each to "
                                f"match its wavelength grid of {wl.size} pixels") from err
    return out


def analyze_many(measurements: Sequence[Measurement],
                 settings: AnalyzerSettings | None = None) -> list[Features]:
    """Features of several measurements on one wavelength grid, analyzed as one batch.

    A measurement with an equilibration trace that was not yet steady gets ``NOT_STEADY``; one
    whose metadata name an old product still in the flow cell (``flush: auto``) gets its
    carry-over added to the stated sd (:func:`autolab.analysis.carryover.with_carryover`).

    Raises:
        SpectrumError: Empty input, different grids, or malformed frames.
    """
    if not measurements:
        raise SpectrumError("analyze_many: expected at least one measurement, got none")
    s = settings or AnalyzerSettings()
    stk = _stack(measurements)
    batch = extract_features_batch(
        measurements[0].spectra.wavelengths_nm, pl_counts=stk["pl_counts"],
        dark_pl_counts=stk["dark_pl_counts"], dye_pl_counts=stk["dye_pl_counts"],
        sample_counts=stk["sample_counts"], blank_counts=stk["blank_counts"],
        dark_abs_counts=stk["dark_abs_counts"],
        excitation_nm=[m.spectra.excitation_nm for m in measurements],
        saturation_counts=[m.spectra.saturation_counts for m in measurements],
        qy_reference=[m.qy_reference for m in measurements], settings=s)
    out = [with_carryover(f, m) for f, m in zip(batch.to_features(), measurements, strict=True)]
    for i, m in enumerate(measurements):
        if m.trace is not None and len(m.trace.times_min) > 0:
            st = steady_state(m.spectra.wavelengths_nm, m.trace.times_min, m.trace.pl_counts,
                              m.spectra.dark_pl_counts, excitation_nm=m.spectra.excitation_nm,
                              settings=s)
            if not st.steady:
                f = out[i]
                out[i] = Features(**{k.name: getattr(f, k.name) for k in fields(f)
                                     if k.name != "flags"},
                                  flags=f.flags | QualityFlag.NOT_STEADY)
    return out


def analyze(measurement: Measurement, settings: AnalyzerSettings | None = None) -> Features:
    """Features of one experiment: the batch path with ``N = 1``.

    Args:
        measurement: Raw frames, reference-dye facts and (optionally) an equilibration trace.
        settings: Analyzer thresholds; defaults if ``None``.

    Returns:
        :class:`~autolab.records.Features`; undeterminable values are NaN with a flag saying why.

    Raises:
        SpectrumError: The frames cannot be analyzed at all (shapes, grid).
    """
    return analyze_many([measurement], settings)[0]

