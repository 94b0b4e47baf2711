"""Relative photoluminescence quantum yield against a reference dye.

The contract (shared with the digital twin, which renders spectra from the same equations)::

    A(λ)      = -log10((sample - dark_abs) / (blank - dark_abs))
    A_ex      = A at the excitation wavelength
    F_s(λ)    = pl - dark_pl                    F_s,corr(λ) = F_s(λ) · 10^(A(λ)/2)
    F_R(λ)    = dye_pl - dark_pl                (no correction)
    Φ_s = Φ_R · (∫F_s,corr dλ / ∫F_R dλ) · ((1 - 10^-A_R) / (1 - 10^-A_ex)) · (n_s² / n_R²)

How the integrals are taken: each over its own line's band, from ``integrate_blue_fwhm`` FWHM
bluer to ``integrate_red_fwhm`` FWHM redder than its peak (at least 7 FWHM in all, which holds
every part of a Gaussian line above 1e-10 of its area, and a red trap tail), cut at the excitation
cut-off (excitation + ``excitation_margin_nm``: scattered excitation light is not emission) and at
the ends of the grid. Outside that band there is only noise and dark-frame mismatch, which would
add error and no signal. Sums are over ~2-nm bins of dark-subtracted counts times the bin width;
the inner-filter factor is applied per bin (``10^(A/2)`` equals ``sqrt(blank_net/sample_net)``).

``A_ex`` is the value at the excitation wavelength of a least-squares parabola through the
absorbance over ±5 bins (±10 nm): exactly the interpolated value for a smooth absorbance, with the
lamp noise averaged down.

Uncertainty: relative errors added in quadrature: the sample and dye integrals (pixel noise model
``σ² = a + g·counts`` from the emission analysis summed over the band), the absorptance
``1 - 10^-A_ex`` (the error of ``A_ex`` from the local fit), and the method's calibration error
``calibration_rel`` (:attr:`~autolab.analysis.settings.AnalyzerSettings.qy_calibration_rel`):
what the frames cannot show because the sample and dye frames share it (excitation drift between
them, ``Φ_R``, ``A_R``, the refractive indices). The first two are statistical and average down
with signal; the last does not, and on a bright product it is most of the stated sigma.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autolab.analysis._core import BoolArray, FloatArray, IntArray

LN10 = float(np.log(10.0))


@dataclass(frozen=True)
class QYResult:
    """Relative quantum yields of a batch, arrays of shape ``(N,)``.

    Attributes:
        qy: Quantum yield, fraction; NaN where it cannot be determined.
        qy_err: One-sigma error, fraction.
        sample_integral: ``∫F_s,corr dλ``, counts·nm.
        dye_integral: ``∫F_R dλ``, counts·nm.
    """

    qy: FloatArray
    qy_err: FloatArray
    sample_integral: FloatArray
    dye_integral: FloatArray


def band_integral(fb: FloatArray, width_b: FloatArray, *, lo: IntArray, hi: IntArray,
                  factor: FloatArray | None, noise_a: FloatArray, noise_g: FloatArray,
                  pixels_per_bin: int) -> tuple[FloatArray, FloatArray]:
    """``Σ_bins F·factor·Δλ`` over bins ``[lo, hi)`` per row, and its noise variance.

    Args:
        fb: Dark-subtracted counts per pixel on the bin grid, ``(N, M)``.
        width_b: Bin widths, nm, ``(M,)``.
        lo: First bin, ``(N,)``.
        hi: One past the last bin, ``(N,)``.
        factor: Per-bin multiplier (inner-filter correction), ``(N, M)``, or ``None`` for 1.
        noise_a: Pixel noise variance at zero signal, counts², ``(N,)``.
        noise_g: Pixel noise variance per count, ``(N,)``.
        pixels_per_bin: Pixels averaged in each bin (the bin mean's variance is ``σ²/b``).

    Returns:
        ``(integral, variance)``, each ``(N,)``; a non-finite factor inside the band makes the
        integral NaN (nothing is silently dropped).
    """
    bidx = np.arange(fb.shape[1])[None, :]
    outwin = (bidx < lo[:, None]) | (bidx >= hi[:, None])
    with np.errstate(invalid="ignore", over="ignore"):
        f = fb.copy() if factor is None else fb * factor
        f[outwin] = 0.0
        integral = f @ width_b
        pix_var = np.maximum(fb, 0.0)
        pix_var *= noise_g[:, None]
        pix_var += noise_a[:, None]
        if factor is not None:
            pix_var *= factor
            pix_var *= factor
        pix_var[outwin] = 0.0
        variance = (pix_var @ (width_b * width_b)) / pixels_per_bin
    return np.asarray(integral, dtype=np.float64), np.asarray(variance, dtype=np.float64)


def relative_qy(sample_integral: FloatArray, sample_var: FloatArray, dye_integral: FloatArray,
                dye_var: FloatArray, *, a_ex: FloatArray, a_ex_err: FloatArray,
                reference_qy: FloatArray, reference_absorbance: FloatArray,
                reference_index: FloatArray, sample_index: FloatArray,
                calibration_rel: float = 0.0) -> QYResult:
    """The relative-QY equation (module docstring) with first-order error propagation.

    Args:
        sample_integral: ``∫F_s,corr dλ``, counts·nm, ``(N,)``.
        sample_var: Variance of ``sample_integral``, ``(N,)``.
        dye_integral: ``∫F_R dλ``, counts·nm, ``(N,)``.
        dye_var: Variance of ``dye_integral``, ``(N,)``.
        a_ex: Sample absorbance at the excitation wavelength, ``(N,)``.
        a_ex_err: One-sigma error of ``a_ex``, ``(N,)``.
        reference_qy: ``Φ_R``, ``(N,)``.
        reference_absorbance: ``A_R``, the dye's absorbance at the excitation, ``(N,)``.
        reference_index: ``n_R``, refractive index of the dye's solvent, ``(N,)``.
        sample_index: ``n_s``, refractive index of the sample's solvent, ``(N,)``.
        calibration_rel: Relative one-sigma calibration error of the method, added in
            quadrature (0: the statistical error alone).

    Returns:
        :class:`QYResult`; NaN where an integral is not positive or ``A_ex`` is not positive.

    Example:
        >>> import numpy as np
        >>> one = np.ones(1)
        >>> r = relative_qy(one * 100, one, one * 200, one, a_ex=one * 0.05, a_ex_err=one * 0,
        ...                 reference_qy=one * 0.95, reference_absorbance=one * 0.05,
        ...                 reference_index=one * 1.361, sample_index=one * 1.361)
        >>> round(float(r.qy[0]), 3)
        0.475
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        f_s = -np.expm1(-LN10 * a_ex)  # 1 - 10^-A, accurate for small A
        f_r = -np.expm1(-LN10 * reference_absorbance)
        qy = (reference_qy * (sample_integral / dye_integral) * (f_r / f_s)
              * (sample_index**2 / reference_index**2))
        rel_f = LN10 * np.exp(-LN10 * a_ex) * a_ex_err / f_s
        rel2 = (sample_var / sample_integral**2 + dye_var / dye_integral**2 + rel_f**2
                + calibration_rel**2)
        err = np.abs(qy) * np.sqrt(rel2)
    ok = (sample_integral > 0) & (dye_integral > 0) & (a_ex > 0) & np.isfinite(qy)
    return QYResult(qy=np.where(ok, qy, np.nan), qy_err=np.where(ok, err, np.nan),
                    sample_integral=sample_integral, dye_integral=dye_integral)


def physical_qy(qy: FloatArray, qy_err: FloatArray, range_sigma: float
                ) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Keep a measured QY inside the physical range ``[0, 1]``; refuse what cannot be.

    A quantum yield is a fraction of absorbed photons re-emitted, so it lies in ``[0, 1]``.

    * Outside the range by at most ``range_sigma`` of its own error, the value is consistent
      with physics and only noise put it outside: it is clipped to the nearest bound, which is
      the maximum-likelihood value under the constraint (the error is kept).
    * Further outside, the frames or the reference facts contradict each other (a wrong dark
      frame, dye absorbance or refractive index, counts beyond full scale, ...). No value is
      reported (NaN), and the caller flags the spectrum ``INVALID_INPUT``.

    Args:
        qy: Measured QY, ``(N,)`` (NaN where not measurable).
        qy_err: Its one-sigma error, ``(N,)``.
        range_sigma: Tolerance outside ``[0, 1]``, in units of ``qy_err``.

    Returns:
        ``(qy, qy_err, impossible)``, each ``(N,)``; ``impossible`` marks the refused rows.
    """
    with np.errstate(invalid="ignore"):
        excess = np.maximum(qy - 1.0, -qy)
        impossible = (excess > range_sigma * np.where(np.isfinite(qy_err), qy_err, 0.0))
    clipped = np.clip(qy, 0.0, 1.0)
    return (np.where(impossible, np.nan, clipped), np.where(impossible, np.nan, qy_err),
            np.asarray(impossible, dtype=bool))


def restated_qy_err(qy: float, qy_err: float, *, stated_rel: float, rel: float) -> float:
    """A QY sd stated with the calibration term ``stated_rel``, restated with ``rel`` (pure).

    The quadrature of :func:`relative_qy`: the statistical part stays, the calibration part is
    swapped. An earlier campaign's readings, analyzed with another term (or none: before the
    campaign file's ``analyzer:`` block the analyzer stated the statistical sd only), are told
    with this campaign's, so the model weighs them as it weighs its own; told as they were,
    statistical-only readings counted ~25 times the weight of this campaign's own.

    Args:
        qy: The reading.
        qy_err: Its stated one-sigma error, which holds ``stated_rel`` in quadrature.
        stated_rel: The calibration term ``qy_err`` holds.
        rel: The calibration term wanted.
    """
    return math.sqrt(max(qy_err**2 + (rel**2 - stated_rel**2) * qy**2, 0.0))
