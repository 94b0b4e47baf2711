"""Synthetic spectra with known truth for the analyzer tests and the benchmark.

The model follows the contract the analyzer implements (and the digital twin renders): emission
lines shaped in photon energy; the sample's observed emission attenuated by the secondary inner
filter ``10^(-A(λ)/2)``; the reference dye uncorrected; the relative QY
``Φ_s = Φ_R · (∫F_s·10^(A/2) / ∫F_R) · (f_R / f_s) · n_s²/n_R²`` with ``f = 1 - 10^-A``.
Noise: shot noise (variance ``gain · counts``) plus Gaussian read noise on every frame, dark frames
included. The truth for the peak and FWHM is the noise-free spectrum's own maximum and
half-maximum width, found on a 50x finer grid: of the *observed* line (what the analyzer reports
with ``peak_inner_filter`` off) and of the *emitted* line before the inner filter (what it reports
with it on, and what a chemist measures on a dilute sample); :func:`expected_line` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from autolab.analysis import AnalyzerSettings
from autolab.constants import HC_EV_NM
from autolab.records import Measurement, QYReference, Spectra

HC = HC_EV_NM
FloatArray = NDArray[np.float64]
WL = np.linspace(350.0, 850.0, 1024)
FINE = np.linspace(350.0, 850.0, 1024 * 50)


def line(wl: FloatArray, peak_nm: float, fwhm_nm: float, asym: float = 0.0,
         trap: float = 0.0, second: float = 0.0) -> FloatArray:
    """Unit-height emission line in energy, evaluated at ``wl``.

    ``asym`` widens the red side smoothly (tanh-varying width); ``trap`` adds a broad red
    trap-state band of that relative height 0.25 eV below the peak; ``second`` adds a second
    narrow peak of that relative height 0.18 eV above the peak (a shoulder / second population).
    """
    e = HC / wl
    e0 = HC / peak_nm
    s0 = fwhm_nm * HC / peak_nm**2 / 2.3548
    s = s0 * (1.0 + asym * np.tanh((e0 - e) / s0))
    y = np.exp(-0.5 * ((e - e0) / s) ** 2)
    if trap:
        y = y + trap * np.exp(-0.5 * ((e - (e0 - 0.25)) / 0.12) ** 2)
    if second:
        y = y + second * np.exp(-0.5 * ((e - (e0 + 0.18)) / (0.6 * s0)) ** 2)
    return np.asarray(y, dtype=np.float64)


def absorbance_model(wl: FloatArray, exciton_nm: float, a_exciton: float,
                     a_cont: float) -> FloatArray:
    """InP-like absorbance: a continuum rising to the blue with a first-exciton band on it."""
    e = HC / wl
    ex = HC / exciton_nm
    cont = a_cont * np.exp((e - ex) / 0.35) / (1.0 + np.exp(-(e - ex) / 0.06))
    exc = a_exciton * np.exp(-0.5 * ((e - ex) / 0.075) ** 2)
    return np.asarray(cont + exc, dtype=np.float64)


def visible_exciton_nm(absorb_fine: FloatArray, centre_nm: float) -> float:
    """The first-exciton *peak* the analyzer reports: the absorbance maximum of the band.

    On a continuum rising to the blue the maximum sits a few nm blue of the band centre; where
    the band shows no maximum at all (a shoulder) its centre is the answer.
    """
    near = np.abs(FINE - (centre_nm - 20.0)) < 25.0  # 45 nm blue to 5 nm red of the centre
    top = np.zeros(FINE.size, dtype=bool)
    top[1:-1] = (absorb_fine[1:-1] > absorb_fine[:-2]) & (absorb_fine[1:-1] >= absorb_fine[2:])
    hits = np.flatnonzero(top & near)
    return float(FINE[hits[-1]]) if hits.size else centre_nm


def lamp(wl: FloatArray) -> FloatArray:
    """Blank (lamp through solvent) net counts: weak in the blue, strong in the red."""
    return np.asarray(4000.0 + 36000.0 * np.exp(-(((wl - 620.0) / 220.0) ** 2)), dtype=np.float64)


def fine_peak_fwhm(y_fine: FloatArray) -> tuple[float, float]:
    """Truth: maximum and FWHM of a noise-free spectrum on :data:`FINE`."""
    i = int(np.argmax(y_fine))
    h = y_fine[i] / 2.0
    j = i
    while y_fine[j] > h:
        j += 1
    xr = np.interp(h, [y_fine[j], y_fine[j - 1]], [FINE[j], FINE[j - 1]])
    k = i
    while y_fine[k] > h:
        k -= 1
    xl = np.interp(h, [y_fine[k], y_fine[k + 1]], [FINE[k], FINE[k + 1]])
    return float(FINE[i]), float(xr - xl)


@dataclass
class Case:
    """Parameters of one synthetic experiment (all have realistic defaults)."""

    peak_nm: float = 560.0
    fwhm_nm: float = 50.0
    asym: float = 0.0
    trap: float = 0.0
    second: float = 0.0
    height: float = 20000.0  # observed PL peak above dark, counts
    qy: float = 0.4
    exciton_nm: float = 530.0
    a_exciton: float = 0.08
    a_ex: float = 0.15  # sample absorbance at the excitation wavelength (continuum scaled to it)
    excitation_nm: float = 365.0
    dye_height: float = 25000.0
    dye_fwhm_nm: float = 40.0
    dark_level: float = 1000.0
    read_noise: float = 10.0
    gain: float = 1.0  # shot-noise variance per count (1/(electrons per count); <= 1 typical)
    saturation: float = 65535.0
    reference: QYReference = field(default_factory=QYReference)


@dataclass
class Truth:
    """What the analyzer should find for a :class:`Case`."""

    peak_nm: float
    fwhm_nm: float
    qy: float
    exciton_nm: float  # the absorbance maximum of the first-exciton band (see visible_exciton_nm)
    a_ex: float
    reference: QYReference
    emitted_peak_nm: float  # the line before the secondary inner filter
    emitted_fwhm_nm: float


def expected_line(truth: Truth, settings: AnalyzerSettings | None = None) -> tuple[float, float]:
    """The ``(peak_nm, fwhm_nm)`` the analyzer should report with ``settings`` (default if None).

    With ``peak_inner_filter`` the emitted line, without it the observed one.
    """
    if (settings or AnalyzerSettings()).peak_inner_filter:
        return truth.emitted_peak_nm, truth.emitted_fwhm_nm
    return truth.peak_nm, truth.fwhm_nm


def render_clean(case: Case) -> tuple[dict[str, FloatArray], Truth]:
    """Noise-free net spectra (before dark and noise) and the truth."""
    # absorbance: scale the continuum so that A(excitation) == a_ex
    a_unit = absorbance_model(np.array([case.excitation_nm]), case.exciton_nm, 0.0, 1.0)[0]
    a_exc_at = absorbance_model(np.array([case.excitation_nm]), case.exciton_nm,
                                case.a_exciton, 0.0)[0]
    a_cont = max(case.a_ex - a_exc_at, 0.0) / a_unit
    absorb = absorbance_model(WL, case.exciton_nm, case.a_exciton, a_cont)
    absorb_fine = absorbance_model(FINE, case.exciton_nm, case.a_exciton, a_cont)
    a_ex = float(np.interp(case.excitation_nm, WL, absorb))

    shape_fine = line(FINE, case.peak_nm, case.fwhm_nm, case.asym, case.trap, case.second)
    obs_fine = shape_fine * 10 ** (-absorb_fine / 2)
    scale = case.height / obs_fine.max()
    pl = scale * line(WL, case.peak_nm, case.fwhm_nm, case.asym, case.trap, case.second)
    pl = pl * 10 ** (-absorb / 2)
    peak, width = fine_peak_fwhm(obs_fine)
    emitted_peak, emitted_width = fine_peak_fwhm(shape_fine)

    dye = case.dye_height * line(WL, 552.0, case.dye_fwhm_nm)
    # the dye's absorbance that makes the relative-QY equation give case.qy on the pixel grid
    i_s = np.trapezoid(pl * 10 ** (absorb / 2), WL)
    i_r = np.trapezoid(dye, WL)
    ref = case.reference
    f_s = 1 - 10 ** (-a_ex)
    n2 = ref.refractive_index**2 / ref.sample_refractive_index**2
    f_r = f_s * case.qy / ref.qy * i_r / i_s * n2
    qy = case.qy
    if not 0.001 < f_r < 0.9:  # cannot be done with this dye: use a plausible dye, adjust the QY
        f_r = 0.1
        qy = (ref.qy * i_s / i_r * f_r / f_s * ref.sample_refractive_index**2
              / ref.refractive_index**2)
    ref = QYReference(name=ref.name, qy=ref.qy, absorbance_at_excitation=float(-np.log10(1 - f_r)),
                      refractive_index=ref.refractive_index,
                      sample_refractive_index=ref.sample_refractive_index)
    blank = lamp(WL)
    sample = blank * 10 ** (-absorb)
    nets = {"pl": pl, "dye": dye, "blank": blank, "sample": sample}
    truth = Truth(peak_nm=peak, fwhm_nm=width, qy=qy,
                  exciton_nm=visible_exciton_nm(absorb_fine, case.exciton_nm), a_ex=a_ex,
                  reference=ref, emitted_peak_nm=emitted_peak, emitted_fwhm_nm=emitted_width)
    return nets, truth


def noisy(net: FloatArray, case: Case, rng: np.random.Generator, n: int = 1) -> FloatArray:
    """Raw frames ``(n, P)``: dark + net signal + shot and read noise, clipped at full scale."""
    mean = case.dark_level + np.broadcast_to(net, (n, net.size))
    shot = rng.standard_normal(mean.shape) * np.sqrt(case.gain * np.maximum(net, 0.0))
    read = rng.standard_normal(mean.shape) * case.read_noise
    return np.asarray(np.minimum(mean + shot + read, case.saturation), dtype=np.float64)


def frames(case: Case, rng: np.random.Generator, n: int = 1, *, drift_rel: float = 0.0
           ) -> tuple[dict[str, FloatArray], Truth]:
    """``n`` noisy realizations of all six frames of a case, as ``(n, P)`` arrays, and the truth.

    ``drift_rel``: excitation drift between each row's sample and dye frames, a relative
    one-sigma error that scales the row's whole sample emission by ``1 + drift_rel · N(0, 1)``
    (what a relative-QY calibration error does to the frames; the twin's ``qy_readout_rel``).
    """
    nets, truth = render_clean(case)
    zero = np.zeros_like(WL)
    pl = noisy(nets["pl"], case, rng, n)
    if drift_rel:
        gain = 1.0 + drift_rel * rng.standard_normal(n)
        pl = np.minimum(case.dark_level + (pl - case.dark_level) * gain[:, None], case.saturation)
    out = {
        "pl_counts": pl,
        "dark_pl_counts": noisy(zero, case, rng, n),
        "dye_pl_counts": noisy(nets["dye"], case, rng, n),
        "blank_counts": noisy(nets["blank"], case, rng, n),
        "sample_counts": noisy(nets["sample"], case, rng, n),
        "dark_abs_counts": noisy(zero, case, rng, n),
    }
    return out, truth


def measurement(case: Case, rng: np.random.Generator) -> tuple[Measurement, Truth]:
    """One noisy :class:`Measurement` of a case and its truth."""
    fr, truth = frames(case, rng, 1)
    spectra = Spectra(wavelengths_nm=WL, abs_integration_ms=10.0, pl_integration_ms=100.0,
                      saturation_counts=case.saturation, excitation_nm=case.excitation_nm,
                      **{k: v[0] for k, v in fr.items()})
    m = Measurement(conditions={}, spectra=spectra, qy_reference=truth.reference,
                    started_lab_h=0.0, finished_lab_h=0.5)
    return m, truth
