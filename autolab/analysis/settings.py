"""Tunable thresholds of the analyzer, in one frozen object.

The defaults suit a 16-bit CCD spectrometer of ~0.5 nm/pixel looking at InP/ZnS emission
(FWHM 30-80 nm) and a rhodamine-6G-like reference; every threshold is named after what it decides,
so a method developer can see why a flag fired and move the line deliberately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from autolab.exceptions import ConfigError

#: The on/off fields (every other field is a non-negative number or a pair of them).
_SWITCHES = frozenset({"peak_inner_filter"})


@dataclass(frozen=True)
class AnalyzerSettings:
    """Thresholds and window sizes of the spectral analyzer.

    Attributes:
        excitation_margin_nm: Emission pixels closer than this to the excitation wavelength (on the
            red side) and everything bluer than it are ignored: they hold scattered excitation
            light, not photoluminescence.
        bin_nm: Width of the coarse bins (peak search, shape tests, band integrals, absorbance),
            nm. About 2 nm keeps 20-nm features resolved and makes those stages ~4x cheaper.
        min_snr: Peak signal-to-noise (peak height over pixel noise sigma) below which the
            ``LOW_SIGNAL`` flag is set; values are still reported.
        no_peak_snr: Peak signal-to-noise below which there is no emission peak at all
            (``NO_PEAK``; peak, FWHM and QY become NaN).
        negative_sigma: Dark-subtracted counts below ``-negative_sigma`` noise sigmas (in a 2-nm
            bin) mean the dark frame does not belong to the spectrum (``INVALID_INPUT``).
        integrate_blue_fwhm: The emission band integrated for the QY starts this many FWHM to the
            blue of the peak (or at the excitation cut-off, whichever is redder).
        integrate_red_fwhm: ... and ends this many FWHM to the red of the peak (or at the end of
            the grid). Generous on the red side so a trap tail is counted as emission.
        trap_width_ratio: Red over blue half width at half maximum, in energy, above which the
            line is flagged ``TRAP_TAIL`` (a symmetric line in energy gives 1).
        trap_excess: Emission beyond two blue half-widths on the red side in excess of its mirror
            image on the blue side, as a fraction of the total, above which ``TRAP_TAIL`` is set.
        shoulder_prominence: A secondary maximum rising this fraction of the main peak above the
            valley between them sets ``SHOULDER``.
        absorbance_linear_range: ``(low, high)`` sample absorbance at the excitation wavelength
            outside which ``ABSORBANCE_NONLINEAR`` is set (too little light absorbed to measure,
            or inner-filter and re-absorption effects too large to correct).
        exciton_search_nm: ``(low, high)`` wavelength range searched for the first exciton.
        exciton_smooth_nm: Savitzky-Golay window for the absorbance second derivative, nm. It
            only detects the band (the peak comes from the first derivative), so it is wide:
            40 nm finds 99 % of the twin's bands where 32 nm found 90 % and picked a wrong one
            in 1 %.
        exciton_sigma: Second-derivative minimum must be this many noise sigmas below zero.
        exciton_min_absorbance: ... and the absorbance there at least this large.
        exciton_max_smooth_nm: Window of the cubic Savitzky-Golay first derivative whose zero
            is the band's absorbance maximum, nm. The cubic term keeps the zero within 0.5 nm of
            the true maximum on InP bands (20-40 nm wide) while the long window averages noise.
        exciton_max_search_nm: How far to the blue of the band centre (second-derivative
            minimum) its maximum is searched, nm: a continuum rising to the blue pulls the
            visible maximum of an InP band 5-20 nm away from the centre.
        qy_range_sigma: A measured QY outside the physical range [0, 1] by at most this many of
            its own sigmas is clipped to the range (noise put it there); further out it is
            refused (NaN, ``INVALID_INPUT``): the frames or reference facts contradict physics.
        peak_inner_filter: Locate the PL peak and FWHM on the emission corrected for the
            secondary inner filter (times ``10^(A/2)`` from the absorbance frames, the factor
            the QY integral already applies). The product's own absorbance dims the blue side of
            its line more than the red, so the uncorrected maximum reads red of the emitted one
            (+0.35 to +1.0 nm on the benchmark family, ~4 stated sigmas). Rows whose absorbance
            cannot correct (dead lamp, non-finite factor in the emission band, absorbance at the
            excitation outside ``absorbance_linear_range``) keep the uncorrected line and carry
            the flag that says why. On by default: with it the readings on the benchmark family are
            unbiased (−0.02 ± 0.15 nm against +0.62 ± 0.41 nm, z 0.0 ± 0.8 against +4.4 ± 3.4;
            benchmarks/procedure_readings.py) and every analyzer, twin and golden test holds.
        qy_calibration_rel: Relative one-sigma calibration error of a relative-QY reading,
            added in quadrature to the statistical ``qy_err`` (pixel noise and the ``A_ex``
            fit). It is the part no amount of signal averages away, because the sample and
            dye frames of a reading share it: excitation power or alignment drifting between
            the sample frame and the dye frame, the reference dye's own QY (published values
            for rhodamine 6G in ethanol differ by a few percent) and the refractive indices.
            Uncertainty budgets of the relative method for dilute solutions (Würth et al.,
            Anal. Chem. 2011, 83, 3431; Resch-Genger and Rurack, IUPAC technical report, Pure
            Appl. Chem. 2013, 85, 2005) and the common practice of quoting relative QYs to
            5-10 % put a careful measurement at about 5 % relative; 0.05 is that lower end,
            what a fixed inline geometry with one reference can claim. Without it the stated
            QY sigma (about 1 % relative, statistical only) was several times smaller than the
            scatter of relative QY readings, and the optimizer, the repeat-measurement logic
            and the tracker all read that overconfident sigma. Set it from the lab's own
            repeat readings of one product (campaign file: ``analyzer: {qy_calibration_rel:
            ...}``, which reaches steady and streamed readings alike); 0 leaves the
            statistical sigma alone (a check of the analyzer's noise model on synthetic
            frames). Below 1: a relative uncertainty of 100 % or more says nothing about
            the QY.
    """

    excitation_margin_nm: float = 20.0
    bin_nm: float = 2.0
    min_snr: float = 20.0
    no_peak_snr: float = 5.0
    negative_sigma: float = 8.0
    integrate_blue_fwhm: float = 3.0
    integrate_red_fwhm: float = 4.0
    trap_width_ratio: float = 1.3
    trap_excess: float = 0.05
    shoulder_prominence: float = 0.05
    absorbance_linear_range: tuple[float, float] = (0.005, 1.0)
    exciton_search_nm: tuple[float, float] = (380.0, 750.0)
    exciton_smooth_nm: float = 40.0
    exciton_sigma: float = 4.0
    exciton_min_absorbance: float = 0.005
    exciton_max_smooth_nm: float = 40.0
    exciton_max_search_nm: float = 40.0
    qy_range_sigma: float = 3.0
    peak_inner_filter: bool = True
    qy_calibration_rel: float = 0.05

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _SWITCHES:
                if not isinstance(v, bool):
                    raise ConfigError(f"AnalyzerSettings.{f.name}: expected true or false, "
                                      f"got {v!r}")
                continue
            values = v if isinstance(v, tuple) else (v,)
            for x in values:
                if not isinstance(x, int | float) or math.isnan(x) or x < 0:
                    raise ConfigError(
                        f"AnalyzerSettings.{f.name}: expected non-negative numbers, got {v!r}")
        for name in ("absorbance_linear_range", "exciton_search_nm"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ConfigError(f"AnalyzerSettings.{name}: expected (low, high) with "
                                  f"low < high, got {(lo, hi)!r}")
        if not self.qy_calibration_rel < 1.0:
            raise ConfigError("AnalyzerSettings.qy_calibration_rel: expected a relative "
                              f"uncertainty in [0, 1), got {self.qy_calibration_rel!r}")
        for name in ("bin_nm", "exciton_smooth_nm", "exciton_max_smooth_nm"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"AnalyzerSettings.{name}: expected a positive width in nm, "
                                  f"got {getattr(self, name)!r}")
