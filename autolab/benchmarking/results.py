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
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autolab.benchmarking.runner import RunResult

if TYPE_CHECKING:
    from autolab.benchmarking.benchmark import BenchmarkOutcome


#: Summary groupings: overall per strategy, per strategy and target, per strategy and kind.
GROUPINGS: dict[str, tuple[str, ...]] = {
    "strategy": ("strategy",), "target": ("strategy", "target_nm"),
    "member kind": ("strategy", "member_kind")}


@dataclass(frozen=True)
class SummaryRow:
    """Statistics of one group of cells (a strategy, or a strategy on a target or member kind).

    Counts to an event treat a cell that never reached it as ``budget + 1``.

    Attributes:
        strategy: Strategy label.
        group: The other grouping key's value (``""`` for the overall row), e.g. ``550``.
        cells: Cells in the group.
        found: Cells with a good hit within the budget.
        median: Median experiments to the good hit.
        q1: First quartile of the same.
        q3: Third quartile of the same.
        in_band: Cells with an in-band product within the budget.
        band_median: Median experiments to the first in-band product.
        band_q1: First quartile of the same.
        band_q3: Third quartile of the same.
        median_lab_h: Median lab hours to the good hit over cells that found one (NaN if none).
        failed_per_run: Mean failed experiments per cell.
        ask_s_mean: Mean proposal time per experiment, s.
    """

    strategy: str
    group: str
    cells: int
    found: int
    median: float
    q1: float
    q3: float
    in_band: int
    band_median: float
    band_q1: float
    band_q3: float
    median_lab_h: float
    failed_per_run: float
    ask_s_mean: float

    @property
    def found_share(self) -> float:
        """Share of cells with a good hit."""
        return self.found / self.cells if self.cells else math.nan


def experiments_counted(result: RunResult) -> int:
    """Experiments to the good hit, with a cell that found none counted as ``budget + 1``."""
    return result.experiments_to_success or result.budget + 1


def experiments_to_band_counted(result: RunResult) -> int:
    """Experiments to the first in-band product, ``budget + 1`` if none."""
    return result.experiments_to_in_band or result.budget + 1


def _quartiles(values: Sequence[int]) -> tuple[float, float, float]:
    q1, med, q3 = (float(v) for v in np.percentile(values, [25, 50, 75]))
    return med, q1, q3


def _group_label(result: RunResult, keys: tuple[str, ...]) -> str:
    return " ".join(f"{getattr(result, k):g}" if isinstance(getattr(result, k), float)
                    else str(getattr(result, k)) for k in keys[1:])


def summarize(results: Sequence[RunResult], grouping: str = "strategy") -> list[SummaryRow]:
    """One row per group of :data:`GROUPINGS` ``[grouping]``, in the order groups first appear.

    Raises:
        KeyError: Unknown grouping.
    """
    keys = GROUPINGS[grouping]
    groups = list(dict.fromkeys((r.strategy, _group_label(r, keys)) for r in results))
    rows = []
    for strategy, label in groups:
        rs = [r for r in results if r.strategy == strategy and _group_label(r, keys) == label]
        med, q1, q3 = _quartiles([experiments_counted(r) for r in rs])
        bmed, bq1, bq3 = _quartiles([experiments_to_band_counted(r) for r in rs])
        hours = [r.lab_hours_to_success for r in rs if r.lab_hours_to_success is not None]
        rows.append(SummaryRow(
            strategy=strategy, group=label, cells=len(rs), found=sum(r.found for r in rs),
            median=med, q1=q1, q3=q3, in_band=sum(r.in_band_found for r in rs),
            band_median=bmed, band_q1=bq1, band_q3=bq3,
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
    """One CSV row per cell (strategy × member × target × seed), without the steps."""
    return _csv([r.row() for r in results])


def summary_csv(rows: Sequence[SummaryRow]) -> str:
    """The summary table as CSV."""
    return _csv([{**asdict(r), "found_share": r.found_share} for r in rows])


def _median_iqr(med: float, q1: float, q3: float, budget: int) -> str:
    head = f"{med:.1f}" if med <= budget else f">{budget}"
    return f"{head} ({q1:.0f}-{q3:.0f})"


#: Columns of :func:`table_rows`.
TABLE_COLUMNS = ("strategy", "group", "cells", "good hit found", "exp. to good hit, median (IQR)",
                 "in band found", "exp. to first in band, median (IQR)",
                 "lab h to good hit (median)", "failed/cell", "ask s (mean)")


def table_rows(rows: Sequence[SummaryRow], budget: int) -> list[tuple[str, ...]]:
    """Summary rows as table cells (strings), in :data:`TABLE_COLUMNS` order."""
    return [(r.strategy, r.group or "all", str(r.cells),
             f"{r.found}/{r.cells} ({100 * r.found_share:.0f} %)",
             _median_iqr(r.median, r.q1, r.q3, budget), f"{r.in_band}/{r.cells}",
             _median_iqr(r.band_median, r.band_q1, r.band_q3, budget),
             "-" if math.isnan(r.median_lab_h) else f"{r.median_lab_h:.0f}",
             f"{r.failed_per_run:.1f}", f"{r.ask_s_mean:.3f}") for r in rows]


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def summary_markdown(outcome: BenchmarkOutcome) -> str:
    """The summary tables as Markdown: per strategy, per strategy × target, per member kind."""
    budget = outcome.spec.budget
    parts = []
    for grouping in GROUPINGS:
        rows = summarize(outcome.results, grouping)
        parts.append(f"By {grouping}:\n\n" + markdown_table(TABLE_COLUMNS,
                                                            table_rows(rows, budget)))
    if outcome.excluded:
        parts.append(f"Excluded (band unreachable on the member): {len(outcome.excluded)} "
                     "member × target pairs: " + ", ".join(
                         f"{e.member} {e.target_nm:g} nm" for e in outcome.excluded) + "\n")
    return "\n".join(parts)


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite_or_none(x) for x in v]
    return v


def results_json(outcome: BenchmarkOutcome) -> str:
    """Everything of one benchmark as strict JSON (NaN written as null), with provenance."""
    doc = {"name": outcome.spec.name, "spec": outcome.spec.model_dump(mode="json"),
           "meta": outcome.meta, "provenance": outcome.provenance,
           "reachable": {m: [asdict(r) for r in rs] for m, rs in outcome.reachable.items()},
           "excluded": [asdict(e) for e in outcome.excluded],
           "summary": {g: [asdict(r) for r in summarize(outcome.results, g)]
                       for g in GROUPINGS},
           "runs": [r.to_dict() for r in outcome.results]}
    return json.dumps(_finite_or_none(doc), indent=1, allow_nan=False)


def distribution_figure(results: Sequence[RunResult], title: str = "") -> Figure:
    """Experiments to a good hit per strategy, one panel per target: box plots with every cell.

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
    axes[0].set_ylabel("experiments to a good hit (× = not found)")
    if title:
        fig.suptitle(title, fontsize=9, wrap=True)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
