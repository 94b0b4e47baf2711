"""Pure, vectorized optics: sizing curve, line shapes, absorption, emission, detector counts.

Sizes are InP tetrahedron edge lengths L in Å (Almeida et al., Nano Lett. 2023:
``E1s = 1.33 + 9.128·L^-0.684`` eV). The ensemble is a log-normal edge-length distribution
(mean and CV from :mod:`autolab.twin.chemistry`) sampled at Gauss–Hermite nodes; each node emits a
Gaussian line (in energy) of the homogeneous width (60 meV red … 80 meV green) widened by the
extra strain/surface disorder, centred at ``E1s(L - alloy) - shell red shift - Stokes shift``.
Part of the size spread is carried by a kernel on each node (:data:`KERNEL_SHARE`) so that a
broad ensemble gives a smooth band rather than 13 separate lines.
A deep-trap band (Gaussian in energy, ``trap_offset_ev`` below the band edge) adds the red tail of
incompletely shelled dots.

**Relative-QY convention** (the analyzer inverts exactly this). On the detector grid with
per-pixel widths ``Δλ_i`` (``numpy.gradient`` of the pixel wavelengths, nm):

* absorbance ``A(λ) = -log10((sample - dark_abs) / (blank - dark_abs))``;
  ``A_ex = A(excitation_nm)`` (linear interpolation between pixels);
* sample emission above dark, pixel *i*:
  ``F_s[i] = K · Φ_s · (1 - 10^-A_ex) · S(λ_i) · Δλ_i · 10^(-A(λ_i)/2) / n_s²``,
  with ``S`` the normalized line shape in 1/nm (``∫S dλ = 1``) and ``K = pl_counts_per_ms ·
  pl_integration_ms``;
* dye emission above dark: ``F_R[i] = K · Φ_R · (1 - 10^-A_R) · S_R(λ_i) · Δλ_i / n_R²``.

Hence ``Σ_i F_s[i]·10^(A_i/2) / Σ_i F_R[i]`` (sums of counts, i.e. ``∫ · dλ`` with the same pixel
widths) gives ``Φ_s = Φ_R · ratio · (1 - 10^-A_R)/(1 - 10^-A_ex) · n_s²/n_R²``. The sample frame
is further multiplied by ``(1 + ε)``, the seeded QY-readout error (excitation drift between the
sample and dye frames).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from autolab.constants import HC_EV_NM
from autolab.twin.chemistry import CoreState, ShellState
from autolab.twin.config import ChemistryParams, OpticsParams

FloatArray = NDArray[np.float64]

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: Gauss–Hermite (probabilists') nodes for the log-normal size distribution.
_Z, _WZ = np.polynomial.hermite_e.hermegauss(13)
SIZE_NODES: FloatArray = np.asarray(_Z, dtype=np.float64)
SIZE_WEIGHTS: FloatArray = np.asarray(_WZ / _WZ.sum(), dtype=np.float64)
#: Reference edge length for the size scaling of Stokes and shell shifts, Å.
L_REF_A = 30.0
#: Share of the size spread (in z units) carried by a Gaussian kernel on every node instead of by
#: the node positions: 13 nodes alone leave a lumpy spectrum once the inhomogeneous width exceeds
#: the homogeneous one (the FWHM then measures one lump). Nodes sit at ``z·sqrt(1 - c²)`` and each
#: line is widened by ``c·|dE/dz|`` in quadrature, so the ensemble variance is unchanged.
KERNEL_SHARE = 0.6


def e1s_ev(edge_a: FloatArray, optics: OpticsParams) -> FloatArray:
    """First-exciton energy of bare InP of edge ``edge_a`` (Å), eV (Almeida 2023), any shape."""
    return np.asarray(optics.e_bulk_ev + optics.sizing_coef_ev
                      * np.asarray(edge_a) ** (-optics.sizing_exponent), dtype=np.float64)


def edge_from_e1s(e_ev: FloatArray, optics: OpticsParams) -> FloatArray:
    """Inverse sizing curve: edge length (Å) from first-exciton energy (eV)."""
    return np.asarray(((np.asarray(e_ev) - optics.e_bulk_ev) / optics.sizing_coef_ev)
                      ** (-1.0 / optics.sizing_exponent), dtype=np.float64)


def size_nodes(core: CoreState, z_scale: float = 1.0) -> tuple[FloatArray, FloatArray]:
    """Edge lengths and weights of the log-normal size distribution.

    Args:
        core: Core state (mean edge and CV).
        z_scale: Contract the nodes towards the median by this factor (1: the true nodes).

    Returns:
        ``(edges_a, weights)``: edges of shape ``(n, K)`` in Å; weights of shape ``(K,)``.
    """
    s = np.sqrt(np.log1p(core.size_cv ** 2))
    mu = np.log(core.mean_edge_a) - 0.5 * s ** 2
    return np.exp(mu[:, None] + s[:, None] * (z_scale * SIZE_NODES)[None, :]), SIZE_WEIGHTS


def kernel_nodes(core: CoreState, shell: ShellState, chem: ChemistryParams,
                 optics: OpticsParams) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Node energies of the size distribution with the smoothing kernel (see KERNEL_SHARE).

    Returns:
        ``(e_abs, e_pl, sigma_kernel_ev, weights)``: energies ``(n, K)``, the kernel sigma of
        each condition ``(n, 1)`` (eV) and the node weights ``(K,)``.
    """
    edges, w = size_nodes(core, z_scale=float(np.sqrt(1.0 - KERNEL_SHARE ** 2)))
    e_abs, e_pl = transition_energies(edges, shell, chem, optics)
    s = np.sqrt(np.log1p(core.size_cv ** 2))
    mu = np.log(core.mean_edge_a) - 0.5 * s ** 2
    pm = np.exp(mu[:, None] + s[:, None] * np.array([-0.5, 0.5])[None, :])
    _, e_pm = transition_energies(pm, shell, chem, optics)
    sig_k = KERNEL_SHARE * np.abs(e_pm[:, 1:2] - e_pm[:, 0:1])
    return e_abs, e_pl, np.asarray(sig_k, dtype=np.float64), w


def transition_energies(edges_a: FloatArray, shell: ShellState, chem: ChemistryParams,
                        optics: OpticsParams) -> tuple[FloatArray, FloatArray]:
    """Absorption (1S) and emission energies per size node.

    Args:
        edges_a: Core edge lengths, shape ``(n, K)``, Å.
        shell: Shell state, arrays ``(n,)``.
        chem: Chemistry constants (shifts).
        optics: Optical constants.

    Returns:
        ``(e_abs_ev, e_pl_ev)``, each ``(n, K)``.
    """
    eff = np.maximum(edges_a - shell.alloy_a[:, None], 5.0)
    scale = L_REF_A / eff
    red = chem.shell_redshift_ev * -np.expm1(-shell.shell_ml / chem.shell_leak_ml)[:, None]
    e_abs = e1s_ev(eff, optics) - red * scale ** 2
    e_pl = e_abs - chem.stokes_ev * scale ** chem.stokes_size_exponent
    return e_abs, e_pl


def homogeneous_sigma_ev(e_ev: FloatArray, optics: OpticsParams) -> FloatArray:
    """Single-dot Gaussian sigma (eV): 60 meV FWHM at 2.0 eV to 80 meV at 2.4 eV, clipped."""
    lo, hi = optics.hom_fwhm_red_mev, optics.hom_fwhm_green_mev
    fwhm = np.clip(lo + (hi - lo) * (np.asarray(e_ev) - 2.0) / 0.4, min(lo, hi) * 0.9,
                   max(lo, hi) * 1.1)
    return np.asarray(fwhm * 1e-3 / FWHM_PER_SIGMA, dtype=np.float64)


#: Most elements of one ``(rows, nodes, pixels)`` block of a line-shape sum (8 MB of float64).
_BLOCK_ELEMENTS = 1 << 20


def _row_blocks(n: int, nodes: int, pixels: int) -> list[slice]:
    """Row slices whose ``(rows, nodes, pixels)`` blocks stay within :data:`_BLOCK_ELEMENTS`.

    The line shapes of every size node of a row are evaluated in one array operation (per node
    they were ~15 small numpy calls, most of a single spectrum's cost); large batches go in
    blocks of rows so the memory stays bounded.
    """
    step = max(1, _BLOCK_ELEMENTS // max(1, nodes * pixels))
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


def _rows_of(x: FloatArray, rows: slice) -> FloatArray:
    """The rows of a per-row grid ``(n, G)``; a shared grid ``(1, G)`` as it is."""
    return x if x.shape[0] == 1 else x[rows]


def _add_nodes(out: FloatArray, w: FloatArray, lines: FloatArray) -> None:
    """``out += Σ_k w[k]·lines[:, k]`` in place, node after node (the order of the sum)."""
    weighted = w[None, :, None] * lines
    for k in range(weighted.shape[1]):
        out += weighted[:, k]


def _gauss(x: FloatArray, mu: FloatArray, sigma: FloatArray) -> FloatArray:
    return np.asarray(np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2.0 * np.pi)),
                      dtype=np.float64)


def emission_per_nm(wl_nm: FloatArray, core: CoreState, shell: ShellState,
                    chem: ChemistryParams, optics: OpticsParams) -> FloatArray:
    """Noise-free emission spectrum in photons per absorbed photon per nm.

    Integrates (over λ) to the total QY (band edge + trap).

    Args:
        wl_nm: Wavelengths, shape ``(G,)`` (shared) or ``(n, G)`` (one grid per condition).
        core: Core state, arrays ``(n,)``.
        shell: Shell state, arrays ``(n,)``.
        chem: Chemistry constants (shifts, trap band).
        optics: Optical constants (sizing, homogeneous width).

    Returns:
        Spectra, shape ``(n, G)``.
    """
    wl = np.asarray(wl_nm, dtype=np.float64)
    wl2 = wl if wl.ndim == 2 else wl[None, :]
    e = HC_EV_NM / wl2  # (n|1, G)
    jac = HC_EV_NM / wl2 ** 2
    _, e_pl, sig_k, w = kernel_nodes(core, shell, chem, optics)  # (n, K)
    sig = np.sqrt(homogeneous_sigma_ev(e_pl, optics) ** 2 + shell.sigma_extra_ev[:, None] ** 2
                  + sig_k ** 2)
    n = e_pl.shape[0]
    band = np.zeros((n, e.shape[1]))
    for rows in _row_blocks(n, e_pl.shape[1], e.shape[1]):
        lines = _gauss(_rows_of(e, rows)[:, None, :], e_pl[rows, :, None], sig[rows, :, None])
        _add_nodes(band[rows], w, lines)
    e_mean = e_pl @ w
    trap = _gauss(e, (e_mean - chem.trap_offset_ev)[:, None],
                  np.full((n, 1), chem.trap_sigma_ev))
    return np.asarray((shell.qy_band[:, None] * band + shell.qy_trap[:, None] * trap) * jac,
                      dtype=np.float64)


def absorbance_shape(wl_nm: FloatArray, core: CoreState, shell: ShellState,
                     chem: ChemistryParams, optics: OpticsParams) -> FloatArray:
    """Ensemble absorbance per unit 1S height (1S + 2nd transition + continuum + scattering).

    Per InP amount, the absorbance far above the gap is size independent (∝ volume per dot ×
    dots), so every size node gets the same continuum height; the 1S band of each node is a
    Gaussian of the homogeneous width plus the extra disorder.

    Args:
        wl_nm: Wavelengths, shape ``(G,)`` (shared) or ``(n, G)``.
        core: Core state, arrays ``(n,)``.
        shell: Shell state, arrays ``(n,)``.
        chem: Chemistry constants (shifts).
        optics: Optical constants (transitions, continuum).

    Returns:
        Absorbance shape, ``(n, G)`` (multiply by the 1S absorbance scale).
    """
    wl = np.asarray(wl_nm, dtype=np.float64)
    wl2 = wl if wl.ndim == 2 else wl[None, :]
    e = HC_EV_NM / wl2
    e_abs, _, sig_k, w = kernel_nodes(core, shell, chem, optics)
    sig = np.sqrt(homogeneous_sigma_ev(e_abs, optics) ** 2 + shell.sigma_extra_ev[:, None] ** 2
                  + sig_k ** 2)
    out = np.zeros((e_abs.shape[0], e.shape[1]))
    for rows in _row_blocks(e_abs.shape[0], e_abs.shape[1], e.shape[1]):
        mu = e_abs[rows, :, None]
        s = sig[rows, :, None]
        d = _rows_of(e, rows)[:, None, :] - mu
        peak1 = np.exp(-0.5 * (d / s) ** 2)
        peak2 = optics.second_rel * np.exp(
            -0.5 * ((d - optics.second_transition_ev) / (1.5 * s)) ** 2)
        cont = optics.continuum_rel / (1.0 + np.exp(
            -(d - optics.continuum_onset_ev) / optics.continuum_width_ev))
        _add_nodes(out[rows], w, peak1 + peak2 + cont)
    scatter = optics.scatter_rel * (400.0 / wl2) ** 4
    return np.asarray(out + scatter, dtype=np.float64)


def peak_and_fwhm(wl_nm: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Peak position (parabolic refinement) and FWHM (linear interpolation) of each row.

    Args:
        wl_nm: Increasing wavelengths, shape ``(G,)`` or ``(n, G)``.
        y: Spectra, ``(n, G)``.

    Returns:
        ``(peak_nm, fwhm_nm)``, each ``(n,)``; NaN where the half-maximum is not crossed on both
        sides inside the grid.
    """
    yy = np.asarray(y, dtype=np.float64)
    n, g = yy.shape
    wl = np.broadcast_to(np.asarray(wl_nm, dtype=np.float64), (n, g))
    rows = np.arange(n)
    i = np.clip(np.argmax(yy, axis=1), 1, g - 2)
    ym, y0, yp = yy[rows, i - 1], yy[rows, i], yy[rows, i + 1]
    den = ym - 2 * y0 + yp
    d = np.where(den < 0, 0.5 * (ym - yp) / np.where(den < 0, den, -1.0), 0.0)
    d = np.clip(d, -0.5, 0.5)
    step = np.where(d >= 0, wl[rows, np.minimum(i + 1, g - 1)] - wl[rows, i],
                    wl[rows, i] - wl[rows, i - 1])
    peak = wl[rows, i] + d * step
    ymax = y0 - 0.25 * (ym - yp) * d
    half = 0.5 * ymax
    above = yy >= half[:, None]
    idx = np.arange(g)[None, :]
    # Last index below half on the left of the peak, first below half on the right.
    left_mask = (~above) & (idx < i[:, None])
    right_mask = (~above) & (idx > i[:, None])
    has_l = left_mask.any(axis=1)
    has_r = right_mask.any(axis=1)
    il = np.where(has_l, g - 1 - np.argmax(left_mask[:, ::-1], axis=1), 0)
    ir = np.where(has_r, np.argmax(right_mask, axis=1), g - 1)
    il1 = np.minimum(il + 1, g - 1)
    ir0 = np.maximum(ir - 1, 0)

    def cross(a: NDArray[np.int64], b: NDArray[np.int64]) -> FloatArray:
        ya, yb = yy[rows, a], yy[rows, b]
        t = np.where(yb != ya, (half - ya) / np.where(yb != ya, yb - ya, 1.0), 0.0)
        return np.asarray(wl[rows, a] + t * (wl[rows, b] - wl[rows, a]), dtype=np.float64)

    fwhm = np.where(has_l & has_r, cross(ir0, ir) - cross(il, il1), np.nan)
    return np.asarray(peak, dtype=np.float64), np.asarray(fwhm, dtype=np.float64)


def local_peak_near(wl_nm: FloatArray, y: FloatArray, guess_nm: FloatArray,
                    window_nm: float = 45.0) -> FloatArray:
    """Position of the highest local maximum of each row within ``guess ± window``.

    Used for the first-exciton peak of absorbance spectra (which sit on a rising continuum).
    Falls back to ``guess_nm`` where no local maximum exists in the window.

    Args:
        wl_nm: Increasing wavelengths, ``(G,)``.
        y: Spectra, ``(n, G)``.
        guess_nm: Expected positions, ``(n,)``.
        window_nm: Half width of the search window, nm.

    Returns:
        Peak positions, ``(n,)`` nm (parabolic sub-pixel refinement).
    """
    wl = np.asarray(wl_nm, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    is_max = np.zeros_like(yy, dtype=bool)
    is_max[:, 1:-1] = (yy[:, 1:-1] > yy[:, :-2]) & (yy[:, 1:-1] >= yy[:, 2:])
    inwin = np.abs(wl[None, :] - np.asarray(guess_nm)[:, None]) <= window_nm
    cand = np.where(is_max & inwin, yy, -np.inf)
    i = np.argmax(cand, axis=1)
    ok = np.isfinite(cand[np.arange(yy.shape[0]), i])
    i = np.clip(i, 1, len(wl) - 2)
    rows = np.arange(yy.shape[0])
    ym, y0, yp = yy[rows, i - 1], yy[rows, i], yy[rows, i + 1]
    den = ym - 2 * y0 + yp
    d = np.clip(np.where(den < 0, 0.5 * (ym - yp) / np.where(den < 0, den, -1.0), 0.0), -0.5, 0.5)
    step = np.where(d >= 0, wl[i + 1] - wl[i], wl[i] - wl[i - 1])
    return np.where(ok, wl[i] + d * step, np.asarray(guess_nm, dtype=np.float64))


def dye_shape_per_nm(wl_nm: FloatArray, peak_nm: float, fwhm_nm: float) -> FloatArray:
    """Rhodamine-6G-like emission, normalized to ∫ dλ = 1 (1/nm): a skewed Gaussian in energy."""
    wl = np.asarray(wl_nm, dtype=np.float64)
    e = HC_EV_NM / wl
    e0 = HC_EV_NM / peak_nm
    sig = (HC_EV_NM / (peak_nm - fwhm_nm / 2) - HC_EV_NM / (peak_nm + fwhm_nm / 2)) / FWHM_PER_SIGMA
    y = _gauss(e, np.asarray(e0), np.asarray(sig)) * HC_EV_NM / wl ** 2
    norm = float(np.sum(y * np.gradient(wl)))
    return np.asarray(y / norm, dtype=np.float64)


def lamp_counts(wl_nm: FloatArray, lamp_peak_counts: float) -> FloatArray:
    """Blank-frame counts above dark of a halogen-like lamp through the solvent cell, ``(P,)``.

    Smooth and positive over the whole grid (weakest in the UV), like a tungsten-halogen lamp
    seen through a silicon detector.
    """
    wl = np.asarray(wl_nm, dtype=np.float64)
    shape = 0.15 + 0.85 * np.exp(-0.5 * ((wl - 600.0) / 160.0) ** 2)
    return np.asarray(lamp_peak_counts * shape, dtype=np.float64)


def pixel_widths_nm(wl_nm: FloatArray) -> FloatArray:
    """Pixel widths Δλ (``numpy.gradient`` of the pixel wavelengths), nm, ``(P,)``."""
    return np.asarray(np.gradient(np.asarray(wl_nm, dtype=np.float64)), dtype=np.float64)


def mixture_pl_counts(wl_nm: FloatArray, weights: FloatArray, absorbances: FloatArray,
                      emissions_per_nm: FloatArray, *, excitation_nm: float, k_counts: float,
                      n_sample: float) -> tuple[FloatArray, FloatArray, float]:
    """Noise-free absorbance and emission counts of a mixture of products in the flow cell.

    Each product j at relative concentration ``weights[j]`` contributes absorbance
    ``weights[j]·A_j(λ)``; the excitation light absorbed is shared in proportion to each
    product's absorbance at ``excitation_nm``; the emission passes the secondary inner filter
    ``10^(-A_mix/2)``. For one product at weight 1 this is exactly the module's QY convention.

    Args:
        wl_nm: Pixel wavelengths, ``(P,)``.
        weights: Relative concentrations, ``(J,)``.
        absorbances: Absorbance of each product at weight 1, ``(J, P)``.
        emissions_per_nm: Emission per absorbed photon per nm (integrates to QY), ``(J, P)``.
        excitation_nm: Excitation wavelength, nm.
        k_counts: Instrument constant K for the integration time used.
        n_sample: Refractive index of the sample solvent.

    Returns:
        ``(absorbance_mix, pl_counts_above_dark, a_ex_mix)``: ``(P,)``, ``(P,)``, float.
    """
    wl = np.asarray(wl_nm, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    a = np.asarray(absorbances, dtype=np.float64)
    a_mix = w @ a
    a_ex_each = np.array([np.interp(excitation_nm, wl, row) for row in a]) * w
    a_ex = float(a_ex_each.sum())
    if a_ex <= 0:
        return a_mix, np.zeros_like(wl), 0.0
    absorbed = -np.expm1(-a_ex * np.log(10.0))
    em = (a_ex_each / a_ex) @ np.asarray(emissions_per_nm, dtype=np.float64)
    counts = k_counts * absorbed * em * pixel_widths_nm(wl) * 10.0 ** (-a_mix / 2) / n_sample ** 2
    return a_mix, np.asarray(counts, dtype=np.float64), a_ex


def dye_counts(wl_nm: FloatArray, *, k_counts: float, qy: float, absorbance: float,
               n_dye: float, peak_nm: float, fwhm_nm: float) -> FloatArray:
    """Noise-free reference-dye counts above dark, ``(P,)`` (no inner filter: dilute dye)."""
    wl = np.asarray(wl_nm, dtype=np.float64)
    s = dye_shape_per_nm(wl, peak_nm, fwhm_nm)
    return np.asarray(k_counts * qy * -np.expm1(-absorbance * np.log(10.0)) * s
                      * pixel_widths_nm(wl) / n_dye ** 2, dtype=np.float64)


def read_frame(signal_counts: FloatArray, rng: np.random.Generator, *, dark_offset: float,
               read_noise: float, gain: float, full_scale: float,
               shot_noise: bool = True) -> FloatArray:
    """Raw detector frame: dark offset + signal with shot and read noise, clipped to full scale.

    Args:
        signal_counts: Noise-free counts above dark, ``(P,)`` (negative values treated as 0).
        dark_offset: Dark (bias + dark current) level, counts.
        read_noise: Read noise, counts (1 sigma).
        gain: Counts per photoelectron (shot-noise variance is ``gain·counts``).
        full_scale: Saturation level, counts.
        rng: Seeded generator.
        shot_noise: Add Poisson-like shot noise (Gaussian approximation).
    """
    s = np.maximum(np.asarray(signal_counts, dtype=np.float64), 0.0)
    noise_var = read_noise ** 2 + (gain * s if shot_noise else 0.0)
    frame = dark_offset + s + rng.standard_normal(s.shape) * np.sqrt(noise_var)
    return np.asarray(np.clip(np.round(frame), 0.0, full_scale), dtype=np.float64)
