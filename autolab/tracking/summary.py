"""The campaign summary table: one row per experiment, as CSV (for tools) and markdown (for eyes).

Kept separate from plotting so a report command can print it without matplotlib.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

from autolab.records import Trial, TrialStatus

_FEATURES = ("pl_peak_nm", "fwhm_nm", "qy", "abs_peak_nm")


def summary_rows(trials: Sequence[Trial], best: Sequence[float | None],
                 lab_clock_h: Sequence[float]) -> list[dict[str, Any]]:
    """One dict per trial: index, status, conditions, objective, best so far, features, flags.

    Args:
        trials: Trials in index order.
        best: Best-so-far objective after each trial.
        lab_clock_h: Lab clock when each trial finished, h.
    """
    params = list(dict.fromkeys(k for t in trials for k in t.conditions))  # space order
    rows: list[dict[str, Any]] = []
    for t, b, h in zip(trials, best, lab_clock_h, strict=True):
        row: dict[str, Any] = {"index": t.index, "status": t.status.value}
        row.update({p: t.conditions.get(p) for p in params})
        row["objective"] = t.objective
        row["best_so_far"] = b
        for f in _FEATURES:
            row[f] = None if t.features is None else getattr(t.features, f)
        row["lab_clock_h"] = h
        row["flags"] = " ".join(t.features.flags.names()) if t.features else ""
        row["error"] = t.error or ""
        rows.append(row)
    return rows


def _cell(v: Any, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV text with a header line (full float precision; empty cell = no value)."""
    buf = io.StringIO()
    if not rows:
        return ""
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v))
                             else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def to_markdown(rows: Sequence[dict[str, Any]], title: str = "") -> str:
    """Rows as a markdown table; the best experiment's row is bold, for the UI's preview pane."""
    if not rows:
        return f"# {title}\n\nno experiments yet\n" if title else "no experiments yet\n"
    best_obj = max((r["objective"] for r in rows
                    if r["status"] == "completed" and isinstance(r["objective"], float)
                    and math.isfinite(r["objective"])), default=None)
    cols = list(rows[0])
    lines = [f"# {title}", ""] if title else []
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        cells = [_cell(r[c]).replace("|", "/") for c in cols]
        if best_obj is not None and r["objective"] == best_obj and r["status"] == "completed":
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    if best_obj is not None:
        best = next(r for r in rows if r["objective"] == best_obj)
        lines += ["", f"Best: exp-{best['index']:03d}, objective {best_obj:.4g}."]
    return "\n".join(lines) + "\n"


def best_so_far(trials: Sequence[Trial]) -> list[float | None]:
    """Running maximum of the objective over ``trials`` (higher is better), ``None`` until one.

    Only completed trials with a finite objective count: a failed experiment has no score.
    """
    out: list[float | None] = []
    best: float | None = None
    for t in trials:
        obj = t.objective
        if (t.status is TrialStatus.COMPLETED and obj is not None and math.isfinite(obj)
                and (best is None or obj > best)):
            best = obj
        out.append(best)
    return out


def lab_clocks(trials: Sequence[Trial]) -> list[float]:
    """Lab clock (h) when each trial finished: its measurement's, else the previous trial's.

    A failed or interrupted experiment without a measurement took no recorded lab time, so it
    inherits the clock of the one before (0 at the start).
    """
    out: list[float] = []
    clock = 0.0
    for t in trials:
        if t.measurement is not None and math.isfinite(t.measurement.finished_lab_h):
            clock = t.measurement.finished_lab_h
        out.append(clock)
    return out
