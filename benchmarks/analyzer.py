"""Throughput of the spectral analyzer: vectorized batch path vs a naive per-spectrum scipy loop.

Usage: ``python benchmarks/analyzer.py [--n 10000] [--pixels 1024] [--naive 500]``

Both are timed in the same run on the same synthetic spectra (random peak 480-650 nm, FWHM
30-80 nm, heights 5,000-40,000 counts, shot + read noise, every frame of every experiment its own
``(N, P)`` array). The naive loop does per spectrum what a straightforward script would:
``find_peaks`` + ``peak_widths`` + a Gaussian ``curve_fit`` of the emission, ``trapezoid`` band
integrals with the inner-filter correction for the QY, and ``find_peaks`` on the absorbance second
derivative; it is timed on a subset and scaled. Pinned to one thread (the goal is per core); both
wall-clock and process-CPU-time rates are printed, the latter being the per-core figure on a
machine shared with other work.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from autolab.analysis import extract_features_batch  # noqa: E402
from autolab.constants import HC_EV_NM  # noqa: E402

HC = HC_EV_NM
Arr = NDArray[np.float64]


def make_batch(n: int, pixels: int, seed: int = 0) -> tuple[Arr, dict[str, Arr]]:
    """``n`` synthetic experiments (six raw frames each) on a ``pixels`` grid, 350-850 nm."""
    rng = np.random.default_rng(seed)
    wl = np.linspace(350.0, 850.0, pixels)
    e = HC / wl
    peak = rng.uniform(480, 650, n)[:, None]
    width = rng.uniform(30, 80, n)[:, None]
    height = rng.uniform(5000, 40000, n)[:, None]
    sig_e = width * HC / peak**2 / 2.3548
    pl = height * np.exp(-0.5 * ((e - HC / peak) / sig_e) ** 2)
    dye = 25000 * np.exp(-0.5 * ((e - HC / 552) / (40 * HC / 552**2 / 2.3548)) ** 2)
    exc = HC / rng.uniform(440, 590, n)[:, None]
    absorb = (0.05 * np.exp((e - exc) / 0.35) / (1 + np.exp(-(e - exc) / 0.06))
              + 0.08 * np.exp(-0.5 * ((e - exc) / 0.075) ** 2))
    lamp = 4000 + 36000 * np.exp(-(((wl - 620) / 220) ** 2))

    def noisy(net: Arr) -> Arr:
        net = np.broadcast_to(net, (n, pixels))
        return 1000.0 + net + rng.standard_normal((n, pixels)) * np.sqrt(100.0 + np.abs(net))

    zero = np.zeros(pixels)
    frames = {"pl_counts": noisy(pl * 10 ** (-absorb / 2)), "dark_pl_counts": noisy(zero),
              "dye_pl_counts": noisy(dye), "blank_counts": noisy(lamp),
              "sample_counts": noisy(lamp * 10 ** (-absorb)), "dark_abs_counts": noisy(zero)}
    return wl, frames


def naive_one(wl: Arr, fr: dict[str, Arr], i: int, excitation: float) -> tuple[float, ...]:
    """Per-spectrum scipy analysis of experiment ``i``: the baseline being compared against."""
    from scipy.optimize import curve_fit
    from scipy.signal import find_peaks, peak_widths, savgol_filter

    f = fr["pl_counts"][i] - fr["dark_pl_counts"][i]
    band = wl > excitation + 20
    fs = savgol_filter(f, 15, 3)
    fs[~band] = 0
    pk, _ = find_peaks(fs, prominence=0.2 * fs.max())
    if pk.size == 0:
        return (np.nan,) * 4
    j = int(pk[np.argmax(fs[pk])])
    w = peak_widths(fs, [j], rel_height=0.5)
    step = wl[1] - wl[0]
    lo, hi = max(j - int(w[0][0]), 0), min(j + int(w[0][0]), wl.size)

    def gauss(x: Arr, a: float, x0: float, s: float) -> Arr:
        return a * np.exp(-0.5 * ((x - x0) / s) ** 2)

    popt, _ = curve_fit(gauss, wl[lo:hi], f[lo:hi], p0=(fs[j], wl[j], w[0][0] * step / 2.35))
    s_net = fr["sample_counts"][i] - fr["dark_abs_counts"][i]
    b_net = fr["blank_counts"][i] - fr["dark_abs_counts"][i]
    a = -np.log10(np.clip(s_net, 1, None) / np.clip(b_net, 1, None))
    dye = fr["dye_pl_counts"][i] - fr["dark_pl_counts"][i]
    i_s = np.trapezoid(np.where(band, f * 10 ** (a / 2), 0), wl)
    i_r = np.trapezoid(np.where(band, dye, 0), wl)
    a_ex = float(np.interp(excitation, wl, a))
    qy = 0.95 * i_s / i_r * (1 - 10**-0.05) / (1 - 10**-a_ex) * 1.444**2 / 1.361**2
    d2 = savgol_filter(a, 65, 2, deriv=2)
    mins, _ = find_peaks(-d2, prominence=1e-5)
    exciton = float(wl[mins[-1]]) if mins.size else np.nan
    return float(popt[1]), float(w[0][0] * step), float(qy), exciton


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="spectra in the batch")
    ap.add_argument("--pixels", type=int, default=1024, help="pixels per spectrum")
    ap.add_argument("--naive", type=int, default=500, help="spectra timed in the naive loop")
    ap.add_argument("--repeat", type=int, default=3, help="timed repeats (best is reported)")
    ap.add_argument("--no-record", action="store_true",
                    help="do not write benchmarks/results/analyzer.json")
    args = ap.parse_args()
    wl, fr = make_batch(args.n, args.pixels)
    excitation = 365.0

    extract_features_batch(wl, **{k: v[:256] for k, v in fr.items()}, excitation_nm=excitation)
    best, best_cpu = np.inf, np.inf
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = extract_features_batch(wl, **fr, excitation_nm=excitation)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    vec_rate, vec_cpu = args.n / best, args.n / best_cpu

    m = min(args.naive, args.n)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(m):
        naive_one(wl, fr, i, excitation)
    naive_rate = m / (time.perf_counter() - t0)
    naive_cpu = m / (time.process_time() - c0)

    ok = np.isfinite(out.pl_peak_nm).mean()
    print(f"analyzer benchmark: {args.n} spectra x {args.pixels} pixels, 1 thread")
    print(f"{'path':<34}{'spectra/s wall':>16}{'spectra/s CPU':>16}")
    print(f"{'vectorized extract_features_batch':<34}{vec_rate:>16,.0f}{vec_cpu:>16,.0f}")
    print(f"{'naive per-spectrum scipy loop':<34}{naive_rate:>16,.0f}{naive_cpu:>16,.0f}")
    print(f"{'ratio (vectorized / naive)':<34}{vec_rate / naive_rate:>16.1f}"
          f"{vec_cpu / naive_cpu:>16.1f}")
    print("(CPU = this process's CPU time: the per-core figure when other jobs share the cores)")
    print(f"(naive loop timed on {m} spectra and scaled; {ok:.1%} of spectra gave a PL peak)")
    if not args.no_record:
        _record(args.n, args.pixels, m, (vec_rate, vec_cpu), (naive_rate, naive_cpu))


def _record(n: int, pixels: int, m: int, vec: tuple[float, float],
            naive: tuple[float, float]) -> None:
    """Write the figures with their provenance for BENCHMARKS.md (scripts/benchmarks_md.py)."""
    from autolab.benchmarking.provenance import Result, Table, write_result

    rows = (("vectorized extract_features_batch", f"{vec[0]:,.0f}", f"{vec[1]:,.0f}"),
            ("naive per-spectrum scipy loop", f"{naive[0]:,.0f}", f"{naive[1]:,.0f}"),
            ("ratio", f"{vec[0] / naive[0]:.1f}x", f"{vec[1] / naive[1]:.1f}x"))
    result = Result(
        name="analyzer", title="Spectral analyzer",
        description=f"Throughput of the vectorized batch analyzer against a naive per-spectrum "
                    f"scipy loop, one thread: {n:,} spectra x {pixels} pixels (naive loop on {m} "
                    "spectra, scaled). Goal: 20,000 spectra/s on one core. The process-CPU "
                    "column is the per-core figure when other jobs share the machine.",
        tables=(Table("throughput", ("path", "spectra/s (wall)", "spectra/s (process CPU)"),
                      rows),),
        notes=(f"Goal 20,000 spectra/s on one core: {'met' if vec[1] >= 20_000 else 'not met'} "
               f"({vec[1] / 20_000:.0%} of it, CPU time).",),
        data={"vectorized_per_s": vec, "naive_per_s": naive, "n": n, "pixels": pixels})
    print(f"wrote {write_result(result)}")


if __name__ == "__main__":
    main()
