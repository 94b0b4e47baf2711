"""Offline campaign reports: the same table and plots the MLflow parent run holds, into a folder.

``autolab report RUN_DIR`` reads the journal (no MLflow needed) and writes them, so a campaign can
be reviewed, mailed or attached to a lab notebook without a tracking server.
"""

from __future__ import annotations

from pathlib import Path

from autolab.records import TrialStatus
from autolab.tracking.journal import JournalState
from autolab.tracking.plots import (
    convergence_figure,
    figure_png,
    parameters_vs_outcomes_figure,
    spectrum_figure,
)
from autolab.tracking.summary import best_so_far, lab_clocks, summary_rows, to_csv, to_markdown


def write_report(state: JournalState, folder: Path) -> list[Path]:
    """Write ``trials.csv``, ``summary.md``, the campaign plots and the best spectrum.

    Args:
        state: A replayed journal (:meth:`Journal.read`).
        folder: Output folder, created if needed.

    Returns:
        The files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    trials = state.finished()
    best = best_so_far(trials)
    clocks = lab_clocks(trials)
    rows = summary_rows(trials, best, clocks)
    title = f"Campaign {state.header.campaign_name} ({state.header.campaign_id})"
    completed = [t for t in trials if t.status is TrialStatus.COMPLETED]
    scored = [t for t in completed if t.objective is not None]
    lines = [f"experiments: {len(trials)} ({len(completed)} completed, "
             f"{sum(t.status is TrialStatus.FAILED for t in trials)} failed, "
             f"{sum(t.status is TrialStatus.INTERRUPTED for t in trials)} interrupted)",
             f"lab time: {clocks[-1] if clocks else 0.0:.1f} h",
             f"stopped: {state.stopped_reason or 'not stopped (still running or crashed)'}"]
    top = max(scored, key=lambda t: t.objective or 0.0, default=None)
    if top is not None and top.features is not None:
        f = top.features
        lines.append(f"best: experiment {top.index} with PL {f.pl_peak_nm:.1f} nm, FWHM "
                     f"{f.fwhm_nm:.1f} nm, QY {100 * f.qy:.1f} % (score {top.objective:.3f})")
    written: list[Path] = []

    def put(name: str, data: bytes | str) -> None:
        path = folder / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        written.append(path)

    put("summary.md", to_markdown(rows, title).rstrip() + "\n\n" + "\n".join(
        f"- {line}" for line in lines) + "\n")
    put("trials.csv", to_csv(rows))
    if trials:
        put("convergence.png", figure_png(convergence_figure(trials, best, clocks)))
        put("parameters_vs_outcomes.png", figure_png(parameters_vs_outcomes_figure(trials)))
    if top is not None:
        fig = spectrum_figure(top)
        if fig is not None:
            put("best_spectrum.png", figure_png(fig))
    return written
