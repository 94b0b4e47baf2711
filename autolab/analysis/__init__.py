"""Inline spectral analyzer: raw spectrometer frames -> PL peak, FWHM, QY, first exciton, flags.

Pure functions of numpy arrays, vectorized over a batch of spectra ``(N, P)`` on one wavelength
grid ``(P,)``. Typical use::

    from autolab.analysis import analyze, extract_features_batch
    features = analyze(measurement)                       # one experiment -> Features
    batch = extract_features_batch(wl, pl_counts=..., ...)  # N experiments -> FeatureBatch

The building blocks are usable on their own: :func:`absorbance`, :func:`smooth`,
:func:`pl_peak`, :func:`fwhm`, :func:`exciton_peak`, :func:`absorbance_at`,
:func:`relative_qy`, :func:`steady_state`. Methods and their error models are documented in the
modules :mod:`.emission`, :mod:`.absorption`, :mod:`.qy` and :mod:`.steady`.

This package imports only :mod:`autolab.records` and :mod:`autolab.exceptions` (layering).
"""

from autolab.analysis.absorption import (
    ExcitonResult,
    LocalValue,
    absorbance,
    absorbance_at,
    dark_subtract,
    exciton_peak,
    smooth,
)
from autolab.analysis.emission import PeakResult, WidthResult, fwhm, pl_peak
from autolab.analysis.features import FeatureBatch, analyze, analyze_many, extract_features_batch
from autolab.analysis.qy import QYResult, band_integral, relative_qy
from autolab.analysis.settings import AnalyzerSettings
from autolab.analysis.steady import SteadyState, is_steady, steady_state

__all__ = [
    "AnalyzerSettings",
    "ExcitonResult",
    "FeatureBatch",
    "LocalValue",
    "PeakResult",
    "QYResult",
    "SteadyState",
    "WidthResult",
    "absorbance",
    "absorbance_at",
    "analyze",
    "analyze_many",
    "band_integral",
    "dark_subtract",
    "exciton_peak",
    "extract_features_batch",
    "fwhm",
    "is_steady",
    "pl_peak",
    "relative_qy",
    "smooth",
    "steady_state",
]
