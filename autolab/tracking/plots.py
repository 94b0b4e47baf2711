"""Figures a researcher reads in the MLflow UI, built from trials alone.

Every function returns a :class:`matplotlib.figure.Figure` bound to the Agg canvas and never touches
``pyplot``: no global figure registry, no GUI backend, safe in a headless campaign process and in
threads. :func:`figure_png` renders one to PNG bytes; writing files is the tracker's job.

The absorbance drawn here is a display-only derivation (dark-corrected Beer-Lambert); the numbers
that count come from ``autolab.analysis``, which the tracker may not import.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autolab.records import FloatArray, Spectra, Trial, TrialStatus

#: Outcomes shown against each parameter, in row order.
OUTCOME_ROWS = ("objective", "pl_peak_nm", "fwhm_nm", "qy")

_STATUS_STYLE = {
    TrialStatus.COMPLETED: {"color": "tab:blue", "marker": "o"},
    TrialStatus.FAILED: {"color": "tab:red", "marker": "x"},
    TrialStatus.INTERRUPTED: {"color": "tab:gray", "marker": "s"},
}


def _figure(width: float, height: float, *, constrained: bool = True) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def display_absorbance(spectra: Spectra) -> FloatArray:
    """Decadic absorbance ``-log10((sample - dark) / (blank - dark))``; NaN where undefined.

    Undefined means a non-positive dark-corrected blank or sample (no light, or noise below dark):
    showing a gap is honest, clipping would invent a value.
    """
    blank = spectra.blank_counts - spectra.dark_abs_counts
    sample = spectra.sample_counts - spectra.dark_abs_counts
    ok = (blank > 0) & (sample > 0)
    out = np.full(spectra.wavelengths_nm.shape, np.nan)
    out[ok] = -np.log10(sample[ok] / blank[ok])
    return out


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def spectrum_figure(trial: Trial) -> Figure | None:
    """Absorbance and emission of one experiment, annotated with the extracted features.

    The PL panel marks the peak and draws the FWHM as a bar at half maximum, so a reviewer sees at
    a glance whether the analyzer's numbers match the curve. ``None`` if there is no measurement.
    """
    if trial.measurement is None:
        return None
    sp = trial.measurement.spectra
    wl = sp.wavelengths_nm
    feats = trial.features
    fig = _figure(7.0, 6.0)
    ax_abs, ax_pl = fig.subplots(2, 1, sharex=True)
    ax_abs.plot(wl, display_absorbance(sp), color="tab:purple", lw=1.2)
    ax_abs.set_ylabel("absorbance")
    if feats is not None and _finite(feats.abs_peak_nm):
        ax_abs.axvline(feats.abs_peak_nm, color="k", ls="--", lw=0.8)
        ax_abs.annotate(f"1st exciton {feats.abs_peak_nm:.1f} nm", (feats.abs_peak_nm, 0.95),
                        xycoords=("data", "axes fraction"), ha="left", va="top", fontsize=8)
    pl = sp.pl_counts - sp.dark_pl_counts
    ax_pl.plot(wl, pl, color="tab:green", lw=1.2)
    ax_pl.set_ylabel("PL (counts, dark-corrected)")
    ax_pl.set_xlabel("wavelength (nm)")
    if feats is not None and _finite(feats.pl_peak_nm):
        peak = feats.pl_peak_nm
        height = float(np.interp(peak, wl, pl))
        ax_pl.axvline(peak, color="k", ls="--", lw=0.8)
        label = f"PL {peak:.1f} nm"
        if _finite(feats.fwhm_nm):
            ax_pl.hlines(height / 2, peak - feats.fwhm_nm / 2, peak + feats.fwhm_nm / 2,
                         color="tab:orange", lw=2)
            label += f", FWHM {feats.fwhm_nm:.1f} nm"
        ax_pl.annotate(label, (peak, height), xytext=(5, -5), textcoords="offset points",
                       ha="left", va="top", fontsize=8)
    title = f"exp-{trial.index:03d} ({trial.status.value})"
    if feats is not None and _finite(feats.qy):
        title += f"  QY {100 * feats.qy:.1f} %"
    if feats is not None and feats.flags:
        title += f"  flags: {', '.join(feats.flags.names())}"
    fig.suptitle(title, fontsize=10)
    return fig


def convergence_figure(trials: Sequence[Trial], best: Sequence[float | None],
                       lab_clock_h: Sequence[float]) -> Figure:
    """Best-so-far objective against experiment number and against lab hours.

    Both axes matter: the optimizer's efficiency per experiment, and the chemist's per day.
    Individual objectives are drawn as points; failed experiments as red crosses on the x axis.

    Args:
        trials: Trials in index order.
        best: Best-so-far objective after each trial (``None`` before the first).
        lab_clock_h: Lab clock when each trial finished, h.
    """
    fig = _figure(10.0, 4.0)
    axes = fig.subplots(1, 2, sharey=True)
    xs_by_axis = ([float(t.index) for t in trials], [float(h) for h in lab_clock_h])
    for ax, xs, xlabel in zip(axes, xs_by_axis, ("experiment", "lab hours"), strict=True):
        bx = [x for x, b in zip(xs, best, strict=True) if b is not None]
        by = [b for b in best if b is not None]
        if bx:
            ax.step(bx, by, where="post", color="tab:blue", lw=2, label="best so far")
        done = [(x, t.objective) for x, t in zip(xs, trials, strict=True)
                if t.status is TrialStatus.COMPLETED and _finite(t.objective)]
        if done:
            ax.scatter([d[0] for d in done], [d[1] for d in done], s=18, color="tab:cyan",
                       label="objective", zorder=3)
        bad = [x for x, t in zip(xs, trials, strict=True) if t.status is not TrialStatus.COMPLETED]
        if bad:
            ax.scatter(bad, [0.0] * len(bad), marker="x", color="tab:red",
                       label="failed / interrupted", zorder=3, clip_on=False,
                       transform=ax.get_xaxis_transform())
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("objective (higher is better)")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"convergence ({len(trials)} experiments)", fontsize=10)
    return fig


def _outcome(trial: Trial, name: str) -> float:
    if name == "objective":
        return trial.objective if _finite(trial.objective) else math.nan  # type: ignore[return-value]
    if trial.features is None:
        return math.nan
    return float(getattr(trial.features, name))


def parameters_vs_outcomes_figure(trials: Sequence[Trial],
                                  outcomes: Sequence[str] = OUTCOME_ROWS) -> Figure:
    """A grid of scatter plots: one row per outcome, one column per condition.

    Shows which parameter drives which outcome and where the optimizer has sampled. Points are
    coloured by experiment order (later = darker), so the search's drift is visible too.
    """
    params = list(dict.fromkeys(k for t in trials for k in t.conditions))  # space order
    rows = [o for o in outcomes if any(math.isfinite(_outcome(t, o)) for t in trials)] or ["none"]
    ncols = max(1, len(params))
    # Shared axes and a fixed layout: a constrained layout of ~30 panels takes seconds to solve,
    # and this figure is redrawn after every experiment.
    fig = _figure(2.4 * ncols + 1.0, 2.0 * len(rows) + 0.8, constrained=False)
    fig.subplots_adjust(left=0.6 / (2.4 * ncols + 1.0), right=0.98, bottom=0.5 / (2.0 * len(rows)
                        + 0.8), top=1 - 0.5 / (2.0 * len(rows) + 0.8), wspace=0.15, hspace=0.12)
    grid = np.atleast_2d(np.asarray(fig.subplots(len(rows), ncols, squeeze=False,
                                                 sharex="col", sharey="row")))
    order = np.asarray([t.index for t in trials], dtype=float)
    for r, out_name in enumerate(rows):
        ys = np.asarray([_outcome(t, out_name) if out_name != "none" else math.nan
                         for t in trials])
        for c in range(ncols):
            ax: Axes = grid[r, c]
            if params:
                xs = np.asarray([t.conditions.get(params[c], math.nan) for t in trials])
                ok = np.isfinite(xs) & np.isfinite(ys)
                if ok.any():
                    ax.scatter(xs[ok], ys[ok], c=order[ok], cmap="viridis_r", s=16,
                               vmin=float(order.min()), vmax=float(order.max()))
                if r == len(rows) - 1:
                    ax.set_xlabel(params[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(out_name, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    fig.suptitle("parameters vs outcomes (colour: experiment order, dark = late)", fontsize=10)
    return fig


def prediction_figure(predictions: Sequence[tuple[float, float, float]],
                      label: str = "objective") -> Figure:
    """Model prediction (mean ± 2 sd) against measurement, with RMSE and 2-sd coverage.

    A well-calibrated surrogate puts ~95 % of points within their error bars of the diagonal;
    far fewer means the optimizer is overconfident and its proposals deserve less trust.

    Args:
        predictions: ``(predicted mean, predicted sd, measured)`` per experiment.
        label: What was predicted, for the axis labels.
    """
    arr = np.asarray(predictions, dtype=float).reshape(-1, 3)
    arr = arr[np.all(np.isfinite(arr), axis=1)]
    fig = _figure(5.0, 5.0)
    ax = fig.subplots()
    if len(arr):
        mean, sd, meas = arr[:, 0], np.abs(arr[:, 1]), arr[:, 2]
        ax.errorbar(meas, mean, yerr=2 * sd, fmt="o", ms=4, capsize=2, color="tab:blue")
        lo = float(min(mean.min() - 2 * sd.max(), meas.min()))
        hi = float(max(mean.max() + 2 * sd.max(), meas.max()))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--")
        rmse = float(np.sqrt(np.mean((mean - meas) ** 2)))
        coverage = float(np.mean(np.abs(mean - meas) <= 2 * sd))
        ax.set_title(f"RMSE {rmse:.3g}, within 2 sd: {100 * coverage:.0f} % (n={len(arr)})",
                     fontsize=10)
    else:
        ax.set_title("no finite predictions yet", fontsize=10)
    ax.set_xlabel(f"measured {label}")
    ax.set_ylabel(f"predicted {label} (± 2 sd)")
    ax.grid(alpha=0.3)
    return fig
