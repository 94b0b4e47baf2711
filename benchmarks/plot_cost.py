"""CPU cost of the campaign figures a tracked campaign logs to MLflow: build and render, per figure.

A tracked campaign redraws its figures (:func:`autolab.tracking.plots.campaign_figures`, rendered
with :func:`~autolab.tracking.plots.figure_png`) after the first experiment and at the end, and
renders one spectrum figure per experiment; ``autolab report`` draws the same figures. This
script times each of them for campaigns of several sizes, in process CPU seconds (the figure to
trust on a shared host), split into building the figure and rendering it to PNG.

The campaigns are real simulated ones: one Sobol campaign of the largest size on the digital
twin (``campaigns/target_550nm.yaml``, seeded, untracked) whose first ``n`` experiments make the
campaign of size ``n``. Sobol proposals carry no model prediction, so the model-fit figure gets
seeded synthetic predictions (measured value plus a scatter of about one predicted sd). The
Pareto figure is drawn from the same trials under ``campaigns/max_qy_pareto.yaml``'s objective.

``parameters_vs_outcomes, drawn again`` is the grid drawn into one given back to a
:class:`~autolab.tracking.plots.FigurePool` after an earlier draw of the same shape, as the
tracker's later refreshes in one process draw it; ``refresh (..., again)`` totals such a refresh.
A ``plots.py`` without a pool draws a new grid there.

``--baseline FILE`` times another ``plots.py`` (e.g. ``git show <old>:autolab/tracking/plots.py
> /tmp/old_plots.py``) in the same process, each repeat alternating between the two, so the
ratio compares both under the same load.

Usage::

    .venv/bin/python benchmarks/plot_cost.py [--sizes 4 12 40] [--repeats 3]
        [--baseline /tmp/old_plots.py --baseline-label "plots.py of <commit>"]
        [--record benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from autolab.benchmarking.provenance import Result, Table, write_result
from autolab.campaign import Campaign
from autolab.config import parse_campaign
from autolab.records import Trial
from autolab.tracking import plots
from autolab.tracking.journal import Journal
from autolab.tracking.summary import CampaignView, campaign_view

ROOT = Path(__file__).resolve().parents[1]
#: Figure names in table order; ``refresh`` is one whole ``log_campaign_artifacts`` redraw.
FIGURES = ("convergence", "parameters_vs_outcomes", "parameters_vs_outcomes, drawn again",
           "model_fit", "pareto_front", "spectrum")
AGAIN = "parameters_vs_outcomes, drawn again"
#: Refresh totals in table order (see :func:`refresh_s`).
REFRESHES = ("scalar", "scalar, again", "pareto", "pareto, again")


def _campaign_config(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "campaigns" / name).read_text(encoding="utf-8"))
    return data


def simulated_campaign(n: int, seed: int) -> tuple[list[Trial], dict[int, Any], dict[str, Any]]:
    """``n`` Sobol experiments of the target-550 nm campaign on the twin: trials, extras, config."""
    data = _campaign_config("target_550nm.yaml")
    data.update(seed=seed, optimizer={"kind": "sobol", "settings": {}},
                stop={"target_reached": False}, tracking={"enabled": False},
                budget={"max_experiments": n})
    with tempfile.TemporaryDirectory(prefix="plot-cost-") as tmp:
        result = Campaign.create(parse_campaign(data), tmp, on_event=lambda _: None).run()
        state = Journal.read(result.run_dir / "journal.jsonl")
        return list(state.finished()), dict(state.extras), dict(state.header.config)


def with_predictions(trials: Sequence[Trial], extras: Mapping[int, Any],
                     seed: int) -> dict[int, Any]:
    """``extras`` plus a model prediction for every experiment with a result (seeded)."""
    rng = np.random.default_rng(seed)
    sds = {"pl_peak_nm": 3.0, "fwhm_nm": 2.0, "qy": 0.03}
    out = {i: dict(e) for i, e in extras.items()}
    for t in trials:
        outcomes = t.outcomes()
        if outcomes is None or t.objective is None:
            continue
        pred = {name: [outcomes[name] + float(rng.normal(0.0, sd)), sd]
                for name, sd in sds.items()}
        out.setdefault(t.index, {})["prediction"] = {
            "score_mean": t.objective + float(rng.normal(0.0, 0.5)), "score_sd": 0.5,
            "outcomes": pred}
    return out


def views(trials: Sequence[Trial], extras: Mapping[int, Any],
          config: Mapping[str, Any]) -> dict[str, CampaignView]:
    """The scalar (target band) and the Pareto view of the same experiments."""
    pareto = copy.deepcopy(dict(config))
    pareto_cfg = _campaign_config("max_qy_pareto.yaml")
    pareto["objective"], pareto["space"] = pareto_cfg["objective"], pareto_cfg["space"]
    return {"scalar": campaign_view(trials, extras, config),
            "pareto": campaign_view(trials, extras, pareto)}


def builders(mod: ModuleType, scalar: CampaignView, pareto: CampaignView,
             pool: Any = None) -> dict[str, Callable[[], Figure | None]]:
    """How the campaign builds each figure (as :func:`campaign_figures` and the tracker do).

    ``pool``: the module's :class:`FigurePool`, if it has one, holding a grid of the same shape
    (as the tracker's second refresh finds it); a module without one draws a new grid again.
    """
    trials, best, clocks = list(scalar.trials), list(scalar.best), scalar.lab_clock_h
    top = scalar.best_trial() or trials[0]
    again = {"pool": pool} if pool is not None else {}
    out: dict[str, Callable[[], Figure | None]] = {
        "convergence": lambda: mod.convergence_figure(trials, best, clocks, scalar.targets),
        "parameters_vs_outcomes": lambda: mod.parameters_vs_outcomes_figure(
            trials, targets=scalar.targets),
        AGAIN: lambda: mod.parameters_vs_outcomes_figure(trials, targets=scalar.targets, **again),
        "model_fit": lambda: mod.model_fit_figure(scalar.fit_points),
        "spectrum": lambda: mod.spectrum_figure(top, scalar.targets)}
    if pareto.pareto is not None and pareto.objective is not None:
        front, objective = pareto.pareto, pareto.objective
        out["pareto_front"] = lambda: mod.pareto_figure(trials, front, objective)
    return out


def time_one(mod: ModuleType, build: Callable[[], Figure | None],
             pool: Any = None) -> tuple[float, float, int]:
    """CPU seconds to build and to render one figure, and the PNG's size in bytes.

    The garbage of earlier figures (matplotlib's artists hold reference cycles) is collected
    first, untimed, so a figure is not charged for a collection its predecessor caused.
    """
    gc.collect()
    c0 = time.process_time()
    fig = build()
    c1 = time.process_time()
    png = mod.figure_png(fig) if fig is not None else b""
    c2 = time.process_time()
    if pool is not None and fig is not None:
        pool.give_back([fig])  # as the tracker does after writing the PNGs
    return c1 - c0, c2 - c1, len(png)


@dataclass
class Timing:
    """Medians over the repeats of one figure at one campaign size, for one plots module."""

    build_s: list[float]
    render_s: list[float]
    png_bytes: int = 0

    @property
    def total_s(self) -> float:
        """Median build + median render, CPU s."""
        return statistics.median(self.build_s) + statistics.median(self.render_s)


def load_plots(path: Path) -> ModuleType:
    """A ``plots.py`` loaded from ``path`` as its own module (the baseline to compare with)."""
    spec = importlib.util.spec_from_file_location("baseline_plots", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measure(mods: Mapping[str, ModuleType], scalar: CampaignView, pareto: CampaignView,
            repeats: int) -> dict[str, dict[str, Timing]]:
    """Per module, per figure timings; the modules alternate within every repeat."""
    out: dict[str, dict[str, Timing]] = {m: {} for m in mods}
    pools = {label: mod.FigurePool() if hasattr(mod, "FigurePool") else None
             for label, mod in mods.items()}
    for label, mod in mods.items():  # untimed: warms caches, and the pool keeps this grid
        for name, build in builders(mod, scalar, pareto, pools[label]).items():
            time_one(mod, build, pools[label] if name == AGAIN else None)
    for _ in range(repeats):
        for label, mod in mods.items():
            pool = pools[label]
            for name, build in builders(mod, scalar, pareto, pool).items():
                b, r, size = time_one(mod, build, pool if name == AGAIN else None)
                t = out[label].setdefault(name, Timing([], []))
                t.build_s.append(b)
                t.render_s.append(r)
                t.png_bytes = size
    return out


def refresh_s(timings: Mapping[str, Timing], kind: str) -> float:
    """CPU of one campaign-figure refresh of a ``kind`` campaign.

    ``kind``: ``scalar`` or ``pareto`` (a first refresh: a new parameter grid), or either with
    ``, again`` (a later refresh of the same process: the grid drawn into the pooled one).
    """
    grid = AGAIN if kind.endswith(", again") else "parameters_vs_outcomes"
    names: tuple[str, ...] = ("convergence", grid, "model_fit")
    names += ("pareto_front",) if kind.startswith("pareto") else ()
    return sum(timings[n].total_s for n in names if n in timings)


def rows_of(n: int, res: Mapping[str, Mapping[str, Timing]],
            baseline: bool) -> list[tuple[Any, ...]]:
    """Table rows of one campaign size: per figure, then the two refresh totals."""
    cur = res["current"]
    old = res.get("baseline", {})
    rows: list[tuple[Any, ...]] = []
    for name in (*FIGURES, *(f"refresh ({k})" for k in REFRESHES)):
        if name.startswith("refresh"):
            kind = name.split("(")[1].rstrip(")")
            now, then = refresh_s(cur, kind), refresh_s(old, kind) if baseline else None
            build = render = "-"
            kb = "-"
        elif name in cur:
            t = cur[name]
            now, then = t.total_s, old[name].total_s if baseline and name in old else None
            build = f"{statistics.median(t.build_s):.3f}"
            render = f"{statistics.median(t.render_s):.3f}"
            kb = f"{t.png_bytes / 1024:.0f}"
        else:
            continue
        row: tuple[Any, ...] = (n, name, build, render, f"{now:.3f}", kb)
        if baseline:
            ratio = f"{then / now:.1f}x" if then and now > 0 else "-"
            row += (f"{then:.3f}" if then is not None else "-", ratio)
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table (and record it with ``--record DIR``)."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4, 12, 40],
                    help="campaign sizes (experiments)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (median is reported)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--baseline", type=Path, help="another plots.py to time alongside")
    ap.add_argument("--baseline-label", default="",
                    help="what the baseline is, for the record (e.g. 'plots.py of 0535816')")
    ap.add_argument("--record", type=Path, help="write plot-cost.json into this folder")
    args = ap.parse_args(argv)
    mods = {"current": plots}
    if args.baseline is not None:
        mods["baseline"] = load_plots(args.baseline)
    trials, extras, config = simulated_campaign(max(args.sizes), args.seed)
    extras = with_predictions(trials, extras, args.seed)
    rows: list[tuple[Any, ...]] = []
    for n in sorted(args.sizes):
        v = views(trials[:n], {i: e for i, e in extras.items() if i < n}, config)
        res = measure(mods, v["scalar"], v["pareto"], args.repeats)
        for row in rows_of(n, res, args.baseline is not None):
            rows.append(row)
            print("  ".join(f"{c!s:>36}" if i == 1 else f"{c!s:>8}" for i, c in enumerate(row)),
                  flush=True)
    if args.record is not None:
        _record(args, rows, len(trials))


def _record(args: argparse.Namespace, rows: list[tuple[Any, ...]], n_trials: int) -> None:
    columns: tuple[str, ...] = ("experiments", "figure", "build CPU s", "render CPU s",
                                "total CPU s", "PNG KiB")
    if args.baseline is not None:
        columns += ("baseline total CPU s", "speed-up")
    result = Result(
        name="plot-cost", title="Campaign figures: CPU to build and render",
        description="Process CPU seconds (median of the repeats) to build each figure a tracked "
                    "campaign logs to MLflow and to render it to PNG, for the first n "
                    "experiments of one seeded Sobol campaign on the digital twin "
                    f"({n_trials} experiments; model-fit predictions synthetic, the Pareto "
                    "figure under max_qy_pareto's objective). A refresh is one "
                    "log_campaign_artifacts redraw (convergence, parameters vs outcomes, model "
                    "fit, and the Pareto front for a Pareto campaign); 'again' is a later "
                    "refresh in the same process, whose parameter grid is drawn into the one the "
                    "previous refresh gave back to the tracker's figure pool (a plots.py without "
                    "a pool draws a new one). A tracked experiment also renders one spectrum."
                    + (" The baseline columns time another plots.py in the same process, "
                       "alternating with the current one every repeat."
                       if args.baseline is not None else ""),
        tables=(Table("CPU seconds per figure", columns, tuple(rows)),),
        notes=(f"Baseline: {args.baseline_label or args.baseline}.",)
        if args.baseline is not None else (),
        data={"sizes": args.sizes, "repeats": args.repeats, "seed": args.seed,
              "baseline": str(args.baseline) if args.baseline is not None else None,
              "baseline_label": args.baseline_label})
    print(f"wrote {write_result(result, args.record)}")


if __name__ == "__main__":
    main()
