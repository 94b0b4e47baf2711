"""Benchmark results: summary statistics, CSV/JSON text, and the distribution figure.

Pure functions of :class:`~autolab.benchmarking.runner.RunResult` lists; writing files is the
caller's job. A run that never succeeded counts as ``budget + 1`` experiments in medians and
quartiles: dropping it would flatter a strategy that often fails, and "infinity" would make every
statistic of a mostly-failing strategy meaningless.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autolab.benchmarking.problem import Reachable
from autolab.benchmarking.runner import RunResult


@dataclass(frozen=True)
class SummaryRow:
    """Statistics of one strategy on one target over all seeds.

    Attributes:
        strategy: Strategy label.
        target_nm: Target PL peak, nm.
        runs: Seeds run.
        found: Runs that succeeded within the budget.
        median: Median experiments to success (failures count as budget + 1).
        q1: First quartile of the same.
        q3: Third quartile of the same.
        median_lab_h: Median lab hours to success over successful runs (NaN if none).
        failed_per_run: Mean failed experiments per run.
        ask_s_mean: Mean proposal time per experiment over all runs, s (the initial design's
            proposals are instant, so short runs show less model time than long ones).
    """

    strategy: str
    target_nm: float
    runs: int
    found: int
    median: float
    q1: float
    q3: float
    median_lab_h: float
    failed_per_run: float
    ask_s_mean: float


def experiments_counted(result: RunResult) -> int:
    """Experiments to success, with a failed run counted as ``budget + 1``."""
    return result.experiments_to_success or result.budget + 1


def summarize(results: Sequence[RunResult]) -> list[SummaryRow]:
    """One row per (strategy, target), in the order they first appear."""
    keys = list(dict.fromkeys((r.strategy, r.target_nm) for r in results))
    rows = []
    for strategy, target in keys:
        rs = [r for r in results if r.strategy == strategy and r.target_nm == target]
        counts = [experiments_counted(r) for r in rs]
        q1, med, q3 = (float(v) for v in np.percentile(counts, [25, 50, 75]))
        hours = [r.lab_hours_to_success for r in rs if r.lab_hours_to_success is not None]
        rows.append(SummaryRow(
            strategy=strategy, target_nm=target, runs=len(rs), found=sum(r.found for r in rs),
            median=med, q1=q1, q3=q3,
            median_lab_h=statistics.median(hours) if hours else math.nan,
            failed_per_run=statistics.mean(r.failed for r in rs),
            ask_s_mean=sum(r.ask_s_total for r in rs) / max(1, sum(r.experiments for r in rs))))
    return rows


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def runs_csv(results: Sequence[RunResult]) -> str:
    """One CSV row per run (strategy × seed × target), without the per-experiment steps."""
    return _csv([r.row() for r in results])


def summary_csv(rows: Sequence[SummaryRow]) -> str:
    """The summary table as CSV."""
    return _csv([asdict(r) for r in rows])


def summary_markdown(rows: Sequence[SummaryRow], budget: int) -> str:
    """The summary table as Markdown (what BENCHMARKS.md holds)."""
    lines = ["| strategy | target nm | found | median exp. (IQR) | median lab h | failed/run "
             "| ask s (mean) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        med = f"{r.median:.1f}" if r.median <= budget else f">{budget}"
        hours = "-" if math.isnan(r.median_lab_h) else f"{r.median_lab_h:.0f}"
        lines.append(f"| {r.strategy} | {r.target_nm:g} | {r.found}/{r.runs} | {med} "
                     f"({r.q1:.0f}-{r.q3:.0f}) | {hours} | {r.failed_per_run:.1f} "
                     f"| {r.ask_s_mean:.3f} |")
    return "\n".join(lines) + "\n"


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite_or_none(x) for x in v]
    return v


def results_json(name: str, spec: dict[str, Any], reachable: Sequence[Reachable],
                 results: Sequence[RunResult], meta: dict[str, Any]) -> str:
    """Everything of one benchmark as strict JSON (NaN written as null).

    Args:
        name: Benchmark name.
        spec: The validated spec, dumped.
        reachable: The yardstick of each target.
        results: Every run, with its steps.
        meta: Where and how it ran (workers, backend, wall time, load average...).
    """
    doc = {"name": name, "spec": spec, "meta": meta,
           "reachable": [asdict(r) for r in reachable],
           "summary": [asdict(r) for r in summarize(results)],
           "runs": [r.to_dict() for r in results]}
    return json.dumps(_finite_or_none(doc), indent=1, allow_nan=False)


def distribution_figure(results: Sequence[RunResult], title: str = "") -> Figure:
    """Experiments-to-success per strategy, one panel per target: box plots with every run.

    Runs that never succeeded are drawn as red crosses at ``budget + 1`` (above the dashed
    budget line), so a strategy's failure rate is visible next to its speed.
    """
    targets = list(dict.fromkeys(r.target_nm for r in results))
    strategies = list(dict.fromkeys(r.strategy for r in results))
    fig = Figure(figsize=(max(4.0, 1.2 * len(strategies) + 1.5) * len(targets), 4.0),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(targets)), sharey=True, squeeze=False)[0])
    budget = max((r.budget for r in results), default=1)
    rng = np.random.default_rng(0)  # jitter only
    for ax, target in zip(axes, targets, strict=False):
        data = [[experiments_counted(r) for r in results
                 if r.target_nm == target and r.strategy == s] for s in strategies]
        ax.boxplot(data, tick_labels=strategies, showfliers=False)
        for j, s in enumerate(strategies, start=1):
            rs = [r for r in results if r.target_nm == target and r.strategy == s]
            xs = j + rng.uniform(-0.15, 0.15, len(rs))
            ok = np.array([r.found for r in rs], dtype=bool)
            ys = np.array([experiments_counted(r) for r in rs], dtype=float)
            ax.scatter(xs[ok], ys[ok], s=14, color="tab:blue", zorder=3)
            ax.scatter(xs[~ok], ys[~ok], s=24, marker="x", color="tab:red", zorder=3)
        ax.axhline(budget + 0.5, color="k", lw=0.8, ls="--")
        ax.set_ylim(0, budget + 1.5)
        found = sum(r.found for r in results if r.target_nm == target)
        runs = sum(1 for r in results if r.target_nm == target)
        ax.set_title(f"{target:g} nm ({found}/{runs} found)", fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("experiments to success (× = not found)")
    if title:
        fig.suptitle(title, fontsize=9, wrap=True)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
