"""The campaign summary table, one row per experiment: CSV for tools, markdown and HTML for eyes.

Kept separate from plotting so a report command can print it without matplotlib. The HTML table
is what a researcher reads in the MLflow UI (its artifact viewer renders ``.html``): readable
headers with units, QY in %, failed rows in red with their error, the best row in green, PL peaks
inside the target band marked.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
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


#: Column headers of the HTML table (units included); other columns keep their names.
_HEADERS = {"index": "exp", "status": "status", "objective": "score", "best_so_far": "best so far",
            "pl_peak_nm": "PL peak (nm)", "fwhm_nm": "FWHM (nm)", "qy": "QY (%)",
            "abs_peak_nm": "1st exciton (nm)", "lab_clock_h": "lab clock (h)", "flags": "flags",
            "error": "error"}
_CSS = """body{font-family:system-ui,sans-serif;font-size:13px;margin:8px}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f0f0f0;position:sticky;top:0}td.t{text-align:left}
tr.failed td{background:#fde2e2;color:#900}tr.best td{background:#d9f2d9;font-weight:bold}
td.inband{outline:2px solid #2a2;outline-offset:-2px}p{margin:4px 0}"""


def to_html(rows: Sequence[dict[str, Any]], title: str = "", *, goal: str = "",
            targets: Mapping[str, tuple[float, float]] | None = None,
            units: Mapping[str, str] | None = None) -> str:
    """Rows as a standalone HTML page, for the MLflow UI's artifact viewer.

    Args:
        rows: From :func:`summary_rows`.
        title: Page heading (the campaign name).
        goal: One line saying what the campaign asks for (the objective), shown under the title.
        targets: Target bands (outcome -> (value, tolerance)); cells inside a band are outlined.
        units: Units of the conditions, for their headers (``{"t_core_c": "°C"}``).
    """
    esc = html.escape
    units = units or {}
    targets = targets or {}
    head = [f"<h3>{esc(title)}</h3>"] if title else []
    if goal:
        head.append(f"<p>Goal: {esc(goal)}</p>")
    if not rows:
        return _page(title, [*head, "<p>no experiments yet</p>"])
    best_obj = max((r["objective"] for r in rows
                    if r["status"] == "completed" and isinstance(r["objective"], float)
                    and math.isfinite(r["objective"])), default=None)
    n_failed = sum(r["status"] != "completed" for r in rows)
    line = f"{len(rows)} experiments, {n_failed} failed (red rows)"
    if best_obj is not None:
        line += "; best row in green"
    if targets:
        line += "; outlined: inside the target band"
    head.append(f"<p>{esc(line)}.</p>")
    cols = list(rows[0])

    def header(c: str) -> str:
        if c in _HEADERS:
            return _HEADERS[c]
        return f"{c} ({units[c]})" if units.get(c) else c

    out = [*head, "<table><tr>" + "".join(f"<th>{esc(header(c))}</th>" for c in cols) + "</tr>"]
    for r in rows:
        cls = "failed" if r["status"] != "completed" else (
            "best" if best_obj is not None and r["objective"] == best_obj else "")
        cells = []
        for c in cols:
            v = r[c]
            text = f"exp-{v:03d}" if c == "index" else _cell(100 * v if c == "qy" and
                                                               isinstance(v, float) else v)
            klass = "t" if c in {"status", "flags", "error", "index"} else ""
            if (c in targets and isinstance(v, float) and math.isfinite(v)
                    and abs(v - targets[c][0]) <= targets[c][1]):
                klass += " inband"
            attr = f' class="{klass.strip()}"' if klass.strip() else ""
            cells.append(f"<td{attr}>{esc(text)}</td>")
        out.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    out.append("</table>")
    return _page(title, out)


def _page(title: str, body: Sequence[str]) -> str:
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
