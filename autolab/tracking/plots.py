"""Figures a researcher reads in the MLflow UI, built from trials alone.

Every function returns a :class:`matplotlib.figure.Figure` bound to the Agg canvas and never touches
``pyplot``: no global figure registry, no GUI backend, safe in a headless campaign process and in
threads. :func:`figure_png` renders one to PNG bytes; writing files is the tracker's job.

The absorbance drawn here is a display-only derivation (dark-corrected Beer-Lambert); the numbers
that count come from ``autolab.analysis``, which the tracker may not import.

Every figure is meant to be judged by a chemist in the MLflow UI without code: axes carry names and
units (QY in %), the campaign's target bands are shaded, and failed experiments are drawn as red
crosses where they were tried rather than silently missing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autolab.records import FloatArray, Spectra, Trial, TrialStatus
from autolab.space import QD_PARAMETERS

#: Outcomes shown against each parameter, in row order.
OUTCOME_ROWS = ("objective", "pl_peak_nm", "fwhm_nm", "qy")

#: Target bands of a campaign: outcome name -> (target value, tolerance), in the outcome's units.
Targets = Mapping[str, tuple[float, float]]

#: Axis label and display factor per outcome (QY is stored as a fraction, read as a percentage).
OUTCOME_DISPLAY: dict[str, tuple[str, float]] = {
    "objective": ("objective score (higher is better)", 1.0),
    "pl_peak_nm": ("PL peak (nm)", 1.0),
    "fwhm_nm": ("PL FWHM (nm)", 1.0),
    "qy": ("QY (%)", 100.0),
    "abs_peak_nm": ("1st exciton (nm)", 1.0),
}
_TARGET_STYLE = {"color": "tab:green", "alpha": 0.15, "lw": 0}
_FAILED_STYLE = {"marker": "x", "color": "tab:red", "s": 40, "zorder": 4, "clip_on": False}


def outcome_label(name: str) -> str:
    """Axis label of an outcome, with its unit."""
    return OUTCOME_DISPLAY.get(name, (name, 1.0))[0]


def outcome_scale(name: str) -> float:
    """Factor from stored value to displayed value (100 for QY, else 1)."""
    return OUTCOME_DISPLAY.get(name, (name, 1.0))[1]


def parameter_label(name: str) -> str:
    """Axis label of a condition, with its unit where the InP/ZnS catalog knows one."""
    param = QD_PARAMETERS.get(name)
    return f"{name} ({param.unit})" if param is not None and param.unit else name


def _shade_target(ax: Axes, name: str, targets: Targets | None, *, vertical: bool = False) -> None:
    """Shade the campaign's target band of ``name`` (if it has one) on ``ax``."""
    if not targets or name not in targets:
        return
    value, tol = targets[name]
    k = outcome_scale(name)
    lo, hi = k * (value - tol), k * (value + tol)
    label = f"target {k * value:g} ± {k * tol:g}"
    if vertical:
        ax.axvspan(lo, hi, label=label, **_TARGET_STYLE)  # type: ignore[arg-type]
    else:
        ax.axhspan(lo, hi, label=label, **_TARGET_STYLE)  # type: ignore[arg-type]

_STATUS_STYLE = {
    TrialStatus.COMPLETED: {"color": "tab:blue", "marker": "o"},
    TrialStatus.FAILED: {"color": "tab:red", "marker": "x"},
    TrialStatus.INTERRUPTED: {"color": "tab:gray", "marker": "s"},
    TrialStatus.INVALID: {"color": "tab:orange", "marker": "D"},
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


def spectrum_figure(trial: Trial, targets: Targets | None = None) -> Figure | None:
    """Absorbance and emission of one experiment, annotated with the extracted features.

    The PL panel marks the peak and draws the FWHM as a bar at half maximum, so a reviewer sees at
    a glance whether the analyzer's numbers match the curve; the target PL band is shaded. A
    failed experiment says so, and why, in its title. ``None`` if there is no measurement.
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
    _shade_target(ax_pl, "pl_peak_nm", targets, vertical=True)
    if targets and "pl_peak_nm" in targets:
        ax_pl.legend(fontsize=8, loc="upper right")
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
    color = "black"
    if trial.status is not TrialStatus.COMPLETED:
        color = "tab:red"
        if trial.error:
            title += "\n" + (trial.error if len(trial.error) <= 90 else trial.error[:87] + "...")
    fig.suptitle(title, fontsize=10, color=color)
    return fig


def convergence_figure(trials: Sequence[Trial], best: Sequence[float | None],
                       lab_clock_h: Sequence[float], targets: Targets | None = None) -> Figure:
    """How the campaign progressed: the score, and the outcomes a chemist reads, per experiment.

    Top row: best-so-far objective against experiment number and against lab hours (the
    optimizer's efficiency per experiment, and the chemist's per day), individual scores as
    points. Bottom row: PL peak, FWHM and QY of every experiment, with the campaign's target bands
    shaded, because a score alone does not say how far the dots are from what was asked for.
    Failed experiments are red crosses on the x axis of every panel.

    Args:
        trials: Trials in index order.
        best: Best-so-far objective after each trial (``None`` before the first).
        lab_clock_h: Lab clock when each trial finished, h.
        targets: The campaign's target bands, shaded where given.
    """
    fig = _figure(12.0, 7.0)
    grid = fig.add_gridspec(2, 6)
    top = [fig.add_subplot(grid[0, 0:3])]
    top.append(fig.add_subplot(grid[0, 3:6], sharey=top[0]))
    bottom = [fig.add_subplot(grid[1, 2 * i:2 * i + 2]) for i in range(3)]
    xs_exp = [float(t.index) for t in trials]
    bad = [t.status is not TrialStatus.COMPLETED for t in trials]
    xs_by_axis = (xs_exp, [float(h) for h in lab_clock_h])
    for ax, xs, xlabel in zip(top, xs_by_axis, ("experiment", "lab hours (h)"), strict=True):
        bx = [x for x, b in zip(xs, best, strict=True) if b is not None]
        by = [b for b in best if b is not None]
        if bx:
            ax.step(bx, by, where="post", color="tab:blue", lw=2, label="best so far")
        done = [(x, float(t.objective)) for x, t in zip(xs, trials, strict=True)
                if t.status is TrialStatus.COMPLETED and t.objective is not None
                and math.isfinite(t.objective)]
        if done:
            ax.scatter([d[0] for d in done], [d[1] for d in done], s=18, color="tab:cyan",
                       label="objective", zorder=3)
        _mark_failed(ax, [x for x, b in zip(xs, bad, strict=True) if b])
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    top[0].set_ylabel(outcome_label("objective"))
    top[0].legend(fontsize=8, loc="best")
    for ax, name in zip(bottom, ("pl_peak_nm", "fwhm_nm", "qy"), strict=True):
        k = outcome_scale(name)
        ys = np.asarray([k * _outcome(t, name) for t in trials])
        ok = np.isfinite(ys) & ~np.asarray(bad, dtype=bool)
        _shade_target(ax, name, targets)
        if ok.any():
            ax.plot(np.asarray(xs_exp)[ok], ys[ok], "o-", color="tab:blue", ms=4, lw=0.8,
                    label="measured")
        _mark_failed(ax, [x for x, b in zip(xs_exp, bad, strict=True) if b])
        ax.set_xlabel("experiment")
        ax.set_ylabel(outcome_label(name))
        ax.grid(alpha=0.3)
        if targets and name in targets:
            ax.legend(fontsize=8, loc="best")
    n_bad = sum(bad)
    fig.suptitle(f"convergence: {len(trials)} experiments, {n_bad} failed (red x)"
                 if n_bad else f"convergence: {len(trials)} experiments", fontsize=11)
    return fig


def _mark_failed(ax: Axes, xs: Sequence[float]) -> None:
    """Red crosses on the x axis of ``ax`` at the failed experiments' x positions."""
    if xs:
        ax.scatter(xs, [0.0] * len(xs), label="failed / interrupted",
                   transform=ax.get_xaxis_transform(), **_FAILED_STYLE)  # type: ignore[arg-type]


def _outcome(trial: Trial, name: str) -> float:
    if name == "objective":
        return trial.objective if _finite(trial.objective) else math.nan  # type: ignore[return-value]
    if trial.features is None:
        return math.nan
    return float(getattr(trial.features, name))


def parameters_vs_outcomes_figure(trials: Sequence[Trial],
                                  outcomes: Sequence[str] = OUTCOME_ROWS,
                                  targets: Targets | None = None) -> Figure:
    """A grid of scatter plots: one row per outcome, one column per condition.

    Shows which parameter drives which outcome and where the optimizer has sampled. Points are
    coloured by experiment order (later = darker), so the search's drift is visible too; target
    bands are shaded; failed experiments are red crosses on the x axis, so a region that fails
    (clogging, no emission) shows up as such instead of as a blank.
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
    bad = np.asarray([t.status is not TrialStatus.COMPLETED for t in trials], dtype=bool)
    for r, out_name in enumerate(rows):
        k = outcome_scale(out_name)
        ys = np.asarray([k * _outcome(t, out_name) if out_name != "none" else math.nan
                         for t in trials])
        for c in range(ncols):
            ax: Axes = grid[r, c]
            if params:
                xs = np.asarray([t.conditions.get(params[c], math.nan) for t in trials])
                ok = np.isfinite(xs) & np.isfinite(ys) & ~bad
                _shade_target(ax, out_name, targets)
                if ok.any():
                    ax.scatter(xs[ok], ys[ok], c=order[ok], cmap="viridis_r", s=16,
                               vmin=float(order.min()), vmax=float(order.max()))
                _mark_failed(ax, [float(x) for x in xs[bad & np.isfinite(xs)]])
                if r == len(rows) - 1:
                    ax.set_xlabel(parameter_label(params[c]), fontsize=8)
            if c == 0:
                ax.set_ylabel(outcome_label(out_name) if out_name != "none" else "no outcomes",
                              fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    what = "parameters vs outcomes (colour: experiment order, dark = late"
    what += "; red x: failed" if bad.any() else ""
    what += "; green band: target)" if targets else ")"
    fig.suptitle(what, fontsize=10)
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
