"""The previous product still in the flow cell at a reading, and what it adds to the stated sd.

When the procedure skips the solvent flush (``flush: auto``), the new feed washes the previous
experiment's product out of the cascade while the reading waits for the RTD floor and a steady
outlet. At the reading a small share of the fluid in the flow cell is still the old product
(the RTD washout the procedure computes). The frames are then a mix of the two products, and
every feature moves toward the old one by an amount the detector noise does not explain. The
analyzer's stated sd knew nothing of it, so adaptive readings were over-confident by about
0.19 nm (issue 9). This module is the one place that turns the old product's share and its
reading into a one-sigma per feature, added in quadrature by :func:`with_carryover`, which
:func:`autolab.analysis.analyze_many` applies to every measurement whose metadata carry it.

The size of the move is the linear response of the mixture to a small admixture ``w`` of the
old product (``w`` = share × the old product's relative signal):

* **PL peak.** Two Gaussian lines (peak ``p`` and ``p_o = p + d``, widths ``s`` and ``s_o``):
  the maximum of ``G(x) + w G_o(x)`` moves by ``w d (s / s_o)^2 exp(-d^2 / 2 s_o^2)``. A far
  old line (``d`` much larger than its width) barely moves the peak, which the plain
  ``share × |d|`` would overstate by orders of magnitude; a near one moves it by ``w d``.
* **FWHM.** The half-maximum crossings move out by ``w G_o / |G'|`` each, and the half level
  rises with the peak: ``w s / 0.589 [G_o(p - h) + G_o(p + h) - G_o(p)]`` (``h`` the half
  width); zero for an identical line.
* **QY and the first-exciton peak.** Absorbance adds, so their mixture is linear in the
  absorbance-weighted share: ``share (A_o / A) |old - new|``.

Each move is capped at the old−new difference itself (the FWHM's at the width difference plus
the peaks' distance): the linear response holds for small ``w``, and a mixture never reads
beyond the old product.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from autolab.records import Features, Measurement

#: Gaussian sd per FWHM.
_SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: |G'| at the half-maximum crossing of a unit Gaussian, times its sd (sqrt(2 ln 2) / 2).
_SLOPE_AT_HALF = math.sqrt(2.0 * math.log(2.0)) / 2.0
#: Smallest old-product share counted. At 0.1 % even a jump of the whole line moves the peak by
#: at most ``0.6 sd_line x 0.001`` (about 0.01 nm, a tenth of the smallest stated sd): below
#: what the analyzer resolves. A fixed wait of 3 τ leaves about 1e-6, so its readings (and
#: every campaign on them) stay exactly as they were.
SHARE_MIN = 1e-3
#: Metadata key prefix of the old product's reading.
PREFIX = "carryover_"
#: The old product's reading that :class:`OldProduct` carries (feature names).
READING_FIELDS = ("pl_peak_nm", "fwhm_nm", "qy", "abs_peak_nm", "absorbance_at_excitation",
                  "pl_max_counts")


@dataclass(frozen=True)
class OldProduct:
    """The previous product in the flow cell at a reading.

    Attributes:
        share: Share of the fluid in the flow cell that is still the old product, 0-1.
        reading: The old product's own reading (:data:`READING_FIELDS`; NaN where unknown).
    """

    share: float
    reading: Mapping[str, float]

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"OldProduct.share: expected a share in [0, 1], got {self.share}")
        unknown = set(self.reading) - set(READING_FIELDS)
        if unknown:
            raise ValueError(f"OldProduct.reading: unknown fields {sorted(unknown)}; expected "
                             f"some of {READING_FIELDS}")

    def get(self, name: str) -> float:
        """One reading value (NaN where unknown)."""
        return float(self.reading.get(name, math.nan))

    def metadata(self) -> dict[str, float]:
        """Flat keys for :attr:`Measurement.metadata` (``carryover_share`` and the reading)."""
        return {f"{PREFIX}share": self.share,
                **{f"{PREFIX}{k}": self.get(k) for k in READING_FIELDS}}

    @classmethod
    def from_metadata(cls, md: Mapping[str, object]) -> OldProduct | None:
        """Inverse of :meth:`metadata`; None without a share (older records, or solvent)."""
        share = md.get(f"{PREFIX}share")
        if not isinstance(share, float | int) or not math.isfinite(float(share)):
            return None
        reading = {k: float(v) for k in READING_FIELDS
                   if isinstance(v := md.get(f"{PREFIX}{k}"), float | int)}
        return cls(share=float(share), reading=reading)


def pl_max_counts(m: Measurement) -> float:
    """Largest dark-subtracted emission count of a reading (the line's height, for ``w``)."""
    return float(np.max(np.asarray(m.spectra.pl_counts) - np.asarray(m.spectra.dark_pl_counts)))


def reading_of(features: Features, m: Measurement) -> dict[str, float]:
    """What the next experiment needs to know about this product (:data:`READING_FIELDS`)."""
    return {"pl_peak_nm": features.pl_peak_nm, "fwhm_nm": features.fwhm_nm, "qy": features.qy,
            "abs_peak_nm": features.abs_peak_nm,
            "absorbance_at_excitation": features.absorbance_at_excitation,
            "pl_max_counts": pl_max_counts(m)}


def _gauss(x: float, centre: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - centre) / sigma) ** 2)


def _capped(move: float, diff: float) -> float:
    return min(abs(move), abs(diff)) if math.isfinite(move) else math.nan


def emission_moves(w: float, peak_nm: float, fwhm_nm: float, old_peak_nm: float,
                   old_fwhm_nm: float) -> tuple[float, float]:
    """How far an admixture ``w`` of the old line moves the PL peak and the FWHM, nm.

    Args:
        w: The old line's weight relative to the new (share × height ratio).
        peak_nm: New peak.
        fwhm_nm: New FWHM.
        old_peak_nm: Old peak.
        old_fwhm_nm: Old FWHM.

    Returns:
        (peak move, FWHM move), capped (see the module docs); NaN where an input is.
    """
    s, s_o = fwhm_nm * _SIGMA_PER_FWHM, old_fwhm_nm * _SIGMA_PER_FWHM
    if not (s > 0 and s_o > 0 and math.isfinite(w)):
        return math.nan, math.nan
    d = old_peak_nm - peak_nm
    peak = w * d * (s / s_o) ** 2 * _gauss(peak_nm, old_peak_nm, s_o)
    half = fwhm_nm / 2.0
    rise = (_gauss(peak_nm - half, old_peak_nm, s_o) + _gauss(peak_nm + half, old_peak_nm, s_o)
            - _gauss(peak_nm, old_peak_nm, s_o))
    width = w * s / _SLOPE_AT_HALF * rise
    # two lines of one width still broaden when apart: the width's cap includes their distance
    return _capped(peak, d), _capped(width, abs(old_fwhm_nm - fwhm_nm) + abs(d))


def carryover_sd(old: OldProduct, new: Features, new_pl_max_counts: float) -> dict[str, float]:
    """One-sigma per feature that the old product adds to a reading (see the module docs).

    Args:
        old: The old product's share at the reading and its own reading.
        new: The reading's features (the mixture as analyzed).
        new_pl_max_counts: The reading's emission height (:func:`pl_max_counts`).

    Returns:
        ``{"pl_peak_nm": ..., "fwhm_nm": ..., "qy": ..., "abs_peak_nm": ...}``; NaN where the
        old or new value is unknown (then nothing is added).
    """
    ratio = old.get("pl_max_counts") / new_pl_max_counts if new_pl_max_counts > 0 else math.nan
    w_em = old.share * ratio
    pl, width = emission_moves(w_em, new.pl_peak_nm, new.fwhm_nm, old.get("pl_peak_nm"),
                               old.get("fwhm_nm"))
    a_new = new.absorbance_at_excitation
    w_abs = old.share * old.get("absorbance_at_excitation") / a_new if a_new > 0 else math.nan
    return {"pl_peak_nm": pl, "fwhm_nm": width,
            "qy": _capped(w_abs * (old.get("qy") - new.qy), old.get("qy") - new.qy),
            "abs_peak_nm": _capped(w_abs * (old.get("abs_peak_nm") - new.abs_peak_nm),
                                   old.get("abs_peak_nm") - new.abs_peak_nm)}


def with_carryover(features: Features, m: Measurement) -> Features:
    """``features`` with the old product's contribution in quadrature on each stated sd.

    Measurements whose metadata carry no old product (a flushed or first experiment, older
    records) or less than :data:`SHARE_MIN` of it come back unchanged.
    """
    old = OldProduct.from_metadata(m.metadata)
    if old is None or old.share < SHARE_MIN:
        return features
    extra = carryover_sd(old, features, pl_max_counts(m))
    errs: dict[str, Any] = {}  # replace() takes each field by name
    for name, sd in extra.items():
        err = getattr(features, f"{name}_err")
        if math.isfinite(sd) and math.isfinite(err):
            errs[f"{name}_err"] = math.hypot(err, sd)
    return dataclasses.replace(features, **errs) if errs else features
