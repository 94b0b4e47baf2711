"""Offline campaign reports: what the MLflow parent run shows, into a folder.

``autolab report RUN_DIR`` reads the journal (no MLflow needed) and writes the same table and
figures the tracker logs, built by the same functions (:func:`~autolab.tracking.summary.
campaign_view`, :func:`~autolab.tracking.plots.campaign_figures`), so a campaign can be reviewed,
mailed or attached to a lab notebook without a tracking server, and the numbers agree with the
UI's: the target bands, the summary table (HTML, markdown, CSV), convergence, parameters vs
outcomes, the model fit per outcome, and for a Pareto campaign the front and its hypervolume.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from autolab.records import TrialStatus, experiment_label
from autolab.space import QD_PARAMETERS
from autolab.tracking.base import sqlite_path
from autolab.tracking.journal import JournalState
from autolab.tracking.plots import campaign_figures, figure_png, outcome_scale, spectrum_figure
from autolab.tracking.summary import (
    CampaignView,
    campaign_view,
    decision_rows,
    to_csv,
    to_html,
    to_markdown,
)


def report_lines(state: JournalState, view: CampaignView) -> list[str]:
    """The report's headline facts, one sentence each (also printed by the CLI).

    The experiment count is MLflow's ``n_experiments`` (:func:`~autolab.tracking.base.
    campaign_summary`): an attempt cut short by a crash or Ctrl-C is not an experiment (its
    conditions ran again under a new index), so it is counted on a line of its own.
    """
    counts = {s: sum(t.status is s for t in view.trials) for s in TrialStatus}
    interrupted = counts.pop(TrialStatus.INTERRUPTED)
    lines = [f"experiments: {sum(counts.values())} ({counts[TrialStatus.COMPLETED]} completed, "
             f"{counts[TrialStatus.FAILED]} failed, {counts[TrialStatus.INVALID]} invalid)"]
    if interrupted:
        lines.append(f"interrupted attempts: {interrupted} (cut short by a crash or Ctrl-C; not "
                     "experiments; their conditions are run again under a new index)")
    if view.objective is not None:
        lines.append(f"goal: {view.objective.describe()}")
    for name, (value, tol) in view.targets.items():
        k = outcome_scale(name)
        lines.append(f"target band: {name} {k * value:g} ± {k * tol:g}")
    clock = view.accounts[-1] if view.accounts else None
    if clock is not None:
        used = ", ".join(f"{k} {v:.1f} mL" for k, v in clock.reagent_total_ml.items())
        lines.append(f"lab clock: {clock.lab_clock_h:.3f} h" + (f"; reagents: {used}" if used
                                                                 else ""))
    lines += _rig_event_lines(state)
    lines.append(f"stopped: {state.stopped_reason or 'not stopped (still running or crashed)'}")
    top = view.best_trial()
    if top is not None and top.features is not None:
        f = top.features
        lines.append(f"best: {experiment_label(top.index)} with PL {f.pl_peak_nm:.1f} nm, FWHM "
                     f"{f.fwhm_nm:.1f} nm, QY {100 * f.qy:.1f} % (score {top.objective:.3f})")
    if view.pareto is not None:
        p = view.pareto
        members = ", ".join(experiment_label(i) for i in p.front) or "none yet"
        hv = p.hypervolume[-1] if p.hypervolume else 0.0
        lines.append(f"Pareto front: {members}; hypervolume {hv:.4g}")
        lines += [f"warning: {w}" for w in p.warnings]
    return lines


def _rig_event_lines(state: JournalState, shown: int = 5) -> list[str]:
    """Device faults found before an experiment fed anything: counted apart, never experiments."""
    events = state.rig_events
    if not events:
        return []
    lines = [f"rig events: {len(events)} (device faults found before an experiment fed anything; "
             "not experiments, not in the budget)"]
    lines += [f"  before {experiment_label(int(e['index']))}: "
              f"{e.get('reason') or e.get('device', '?')}" for e in events[-shown:]]
    if len(events) > shown:
        lines.append(f"  ... and {len(events) - shown} earlier (the journal has them all)")
    return lines


def write_report(state: JournalState, folder: Path) -> list[Path]:
    """Write the summary (``summary.md``, ``trials.html``, ``trials.csv``) and the figures.

    A campaign reviewed by a chemist also gets ``decisions.csv`` (who decided what, when, why).

    Figures: ``convergence.png``, ``parameters_vs_outcomes.png``, ``model_fit.png`` (when the
    optimizer's predictions were journaled), ``pareto_front.png`` (Pareto campaigns) and
    ``best_spectrum.png``.

    Args:
        state: A replayed journal (:meth:`Journal.read`).
        folder: Output folder, created if needed.

    Returns:
        The files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    view = campaign_view(state.finished(), state.extras, state.header.config)
    rows = list(view.rows)
    title = f"Campaign {state.header.campaign_name} ({state.header.campaign_id})"
    lines = report_lines(state, view)
    written: list[Path] = []

    def put(name: str, data: bytes | str) -> None:
        path = folder / name
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        written.append(path)

    put("summary.md", to_markdown(rows, title, best_index=view.best_index).rstrip() + "\n\n"
        + "\n".join(f"- {line}" for line in lines) + "\n")
    put("trials.html", to_html(rows, title, goal=view.objective.describe() if view.objective
                               else "", targets=view.targets,
                               units={k: p.unit for k, p in QD_PARAMETERS.items()},
                               best_index=view.best_index, notes=lines))
    put("trials.csv", to_csv(rows))
    if state.reviews:
        put("decisions.csv", to_csv(decision_rows(state.reviews)))
    if view.trials:
        figures = campaign_figures(list(view.trials), list(view.best), view.lab_clock_h,
                                   targets=view.targets, objective=view.objective,
                                   fit_points=view.fit_points, pareto=view.pareto)
        for name, fig in figures.items():
            put(f"{name}.png", figure_png(fig))
    top = view.best_trial()
    if top is not None:
        spectrum = spectrum_figure(top, view.targets)
        if spectrum is not None:
            put("best_spectrum.png", figure_png(spectrum))
    return written


#: Environment variables naming the MLflow store a review reads, first match wins.
STORE_VARIABLES = ("AUTOLAB_TRACKING_URI", "MLFLOW_TRACKING_URI")


def source_root() -> Path:
    """The folder holding the ``autolab`` package: the repository root of a source checkout."""
    return Path(__file__).resolve().parents[2]


def find_tracking_store(uri: str = "", *, search: Sequence[Path] | None = None) -> str:
    """The MLflow store a review (notebook, report) should read; never one that is not there.

    ``uri`` if given, else :data:`STORE_VARIABLES` from the environment, else the first
    ``mlflow.db`` found in ``search`` (default: the repository root, where ``autolab run`` puts
    it, then the current folder). A relative SQLite path is resolved against the current folder
    and must exist: MLflow would otherwise create an empty store in whatever folder the kernel
    started in, and the reader would then fail with a puzzling "no autolab campaign".

    Raises:
        FileNotFoundError: The named SQLite file does not exist, or no ``mlflow.db`` was found;
            the message names every place looked at and how to choose a store.
    """
    given, source = uri, "the argument"
    for var in STORE_VARIABLES:
        if given:
            break
        given, source = os.environ.get(var, ""), f"${var}"
    if given:
        path = sqlite_path(given)
        if path is not None and not path.resolve().is_file():
            raise FileNotFoundError(
                f"MLflow store {path.resolve()} (from {source} = {given!r}) does not exist; "
                "run a campaign first (autolab run campaigns/target_550nm.yaml) or point "
                "AUTOLAB_TRACKING_URI at an existing store")
        return given
    places = list(dict.fromkeys(p.resolve() for p in (
        search if search is not None else (source_root(), Path.cwd()))))
    for folder in places:
        if (folder / "mlflow.db").is_file():
            return f"sqlite:///{folder / 'mlflow.db'}"
    looked = ", ".join(str(p / "mlflow.db") for p in places)
    raise FileNotFoundError(
        f"no MLflow store found: looked for {looked} and at ${STORE_VARIABLES[0]} and "
        f"${STORE_VARIABLES[1]} (both unset); run a campaign first (autolab run "
        "campaigns/target_550nm.yaml) or set AUTOLAB_TRACKING_URI to its store")
