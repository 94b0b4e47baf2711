"""Is the stopping forecast calibrated? Forecast against the actual count, on family cells.

Every BoTorch cell of ``autolab benchmark`` keeps, per experiment, the forecast the campaign
journalled after it (``steps[i]["forecast"]``) and the truth of every experiment (in band, good
hit). This script reads finished cells (``<out>/cells/*.json``) and prints three checks:

* **p_next** (probability that the next experiment is a good hit): predicted against the observed
  share of next experiments that were good hits, in bins of the prediction, and the Brier score.
* **The count** (further experiments to a good hit: ``expected_experiments``, and the median
  and 80 % quantile ``median_experiments``/``q80_experiments``) against the actual number, per
  step. A cell without a good hit is censored at the budget (the actual count is *more* than
  what was left). For each of the three numbers the table gives the share of steps whose actual
  count was at most the forecast (an honest median says 50 %, an 80 % quantile 80 %) among the
  steps where that is known: every step of a cell with a good hit, and the censored steps whose
  forecast lies within what was left of the budget (then "actual > forecast" is known); the
  censored steps whose forecast lies beyond the budget are counted apart. It also gives the
  median ratio forecast/actual over the uncensored steps.
* **p_spec_met** (probability that the best in-band experiment so far truly meets the spec):
  predicted against the share whose best experiment was truly a good hit.

Each check is printed twice: for the model's own probabilities (``p_*_model`` in the journal;
``p_*`` in cells run before the recalibration existed) with the geometric count ``1 / p``, and
for the same probabilities through ``autolab.optimizer.forecast.FAMILY_RECALIBRATION``, the map a
campaign reports, with the count of ``FAMILY_HAZARD`` (a discrete-time hazard fitted on the
family) beside the geometric count of the recalibrated ``p_next``. Everything is recomputed from
the journalled model probabilities, so cells run with older code are judged by today's maps.
``--fit`` fits a new map and hazard on the given cells (design members only: never fit on
held-out ones) and prints them as Python to paste into ``forecast.py``; check them on held-out
cells with a second run without ``--fit``.

Run: ``.venv/bin/python benchmarks/forecast_calibration.py benchmark-results/X [more dirs]
[--strategy botorch] [--fit NAME] [--record benchmarks/results]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autolab.optimizer.forecast import (
    FAMILY_HAZARD,
    FAMILY_RECALIBRATION,
    HazardModel,
    HazardRow,
    Recalibration,
    Remaining,
    fit_hazard,
    fit_knots,
    remaining_experiments,
)

#: Upper edges of the probability bins of the reliability tables.
BINS = (0.01, 0.03, 0.1, 0.3, 1.0)

#: The three count forecasts checked against the actual count.
COUNTS = ("mean", "median", "q80")

#: Horizons k of the check "good hit within k more experiments", predicted vs observed.
WITHIN = (5, 10)


@dataclass(frozen=True)
class StepForecast:
    """One forecast and what happened after it.

    Attributes:
        cell: Cell name.
        experiment: 1-based experiment after which the forecast was made.
        p_model: The model's own ``p_next`` (journalled).
        in_band_found: Whether an experiment up to this one was *measured* in band (what the
            campaign knew).
        p_next: Forecast probability that the next experiment is a good hit.
        count: Forecast further experiments to a good hit (mean, median, 80 % quantile).
        within: Forecast probability of a good hit within each of :data:`WITHIN` experiments.
        p_spec_met: Forecast probability that the best experiment meets the spec.
        next_good: Whether the next experiment was a good hit (``None``: there was none).
        remaining: Further experiments to the good hit (``None``: none within the budget).
        left: Experiments left in the budget after this one.
        best_good: Whether the forecast's best experiment was truly a good hit (``None``: none).
    """

    cell: str
    experiment: int
    p_model: float
    in_band_found: bool
    p_next: float
    count: Remaining
    within: tuple[float, ...]
    p_spec_met: float
    next_good: bool | None
    remaining: int | None
    left: int
    best_good: bool | None


def _constant(p: float) -> Callable[[int], float]:
    return lambda _k: p


def geometric(p: float) -> Remaining:
    """The count when every further experiment is a good hit with probability ``p``."""
    return remaining_experiments(_constant(p))


def p_within(hazards: Callable[[int], float]) -> tuple[float, ...]:
    """Probability of a good hit within each horizon of :data:`WITHIN`, ``1 - prod(1 - h)``."""
    out, survival = [], 1.0
    for k in range(1, max(WITHIN) + 1):
        survival *= 1.0 - hazards(k)
        if k in WITHIN:
            out.append(1.0 - survival)
    return tuple(out)


def _measured_in_band(step: dict[str, Any], target_nm: float, tolerance_nm: float) -> bool:
    pl = step.get("measured_pl_nm")
    return pl is not None and not step.get("failed") and abs(pl - target_nm) <= tolerance_nm


def read_steps(cells: Iterable[dict[str, Any]]) -> list[StepForecast]:
    """Every recorded forecast of the given cell results, with its outcome (model's own p)."""
    out = []
    for r in cells:
        steps = r["steps"]
        hit = r.get("experiments_to_success")
        name = f"{r['strategy']}/{r['member']}/{r['target_nm']:g}/s{r['seed']}"
        found = False
        for i, s in enumerate(steps):
            found = found or _measured_in_band(s, r["target_nm"], r["tolerance_nm"])
            fc = s.get("forecast")
            if not fc:
                continue
            nxt = steps[i + 1]["good"] if i + 1 < len(steps) else None
            best = fc.get("best_index")
            p_next = float(fc.get("p_next_model", fc["p_next"]))
            out.append(StepForecast(
                cell=name, experiment=s["experiment"], p_model=p_next, in_band_found=found,
                p_next=p_next, count=geometric(p_next), within=p_within(_constant(p_next)),
                p_spec_met=float(fc.get("p_spec_met_model", fc["p_spec_met"])),
                next_good=nxt, remaining=None if hit is None else hit - s["experiment"],
                left=r["budget"] - s["experiment"],
                best_good=None if best is None else bool(steps[best]["good"])))
    return out


def recalibrated(steps: Sequence[StepForecast], cal: Recalibration,
                 hazard: HazardModel | None) -> list[StepForecast]:
    """The same steps with ``cal`` applied to the model's probabilities (as a campaign would).

    The count is ``hazard``'s, or geometric in the recalibrated ``p_next`` without one.
    """
    out = []
    for s in steps:
        p_next = cal.next(s.p_model)
        if hazard is None:
            count, within = geometric(p_next), p_within(_constant(p_next))
        else:
            count = hazard.remaining(s.p_model, s.in_band_found, s.experiment)
            within = p_within(_ahead(hazard, s))
        out.append(replace(s, p_next=p_next, count=count, within=within,
                           p_spec_met=cal.spec_met(s.p_spec_met) if s.best_good is not None
                           else s.p_spec_met))
    return out


def _ahead(hazard: HazardModel, s: StepForecast) -> Callable[[int], float]:
    """The hazard ``k`` experiments ahead of step ``s`` (as :meth:`HazardModel.remaining`)."""
    return lambda k: hazard.hazard(s.p_model, s.in_band_found, s.experiment + k - 1)


def hazard_rows(steps: Sequence[StepForecast]) -> list[HazardRow]:
    """Rows for :func:`fit_hazard`: every forecast as a landmark, with every experiment after it.

    A forecast after ``n`` experiments gives one row per further experiment ``n + k`` up to the
    cell's first good hit or the end of its budget: the forecast's own ``p`` and in-band status,
    the experiment count ``n + k - 1``, and whether experiment ``n + k`` was the good hit. So the
    hazard is fitted for what :meth:`HazardModel.remaining` does with it, projecting today's
    forecast ``k`` experiments ahead (fitting on ``k = 1`` only would learn the one-step odds and
    miss that ``p`` itself rises as the search homes in). A benchmark cell stops at its first
    good hit, so every forecast precedes it.
    """
    rows: list[HazardRow] = []
    for s in steps:
        last = s.remaining if s.remaining is not None else s.left
        rows.extend(HazardRow(p_model=s.p_model, in_band=s.in_band_found,
                              experiments=s.experiment + k - 1, next_good=k == s.remaining)
                    for k in range(1, last + 1))
    return rows


def fit(steps: Sequence[StepForecast], name: str) -> tuple[Recalibration, HazardModel]:
    """A recalibration and a hazard fitted on these steps' outcomes (bins :data:`BINS`)."""
    nxt = [(s.p_model, bool(s.next_good)) for s in steps if s.next_good is not None]
    spec = [(s.p_spec_met, bool(s.best_good)) for s in steps if s.best_good is not None]
    cal = Recalibration(name=name, p_spec_met=fit_knots(spec, BINS), p_next=fit_knots(nxt, BINS))
    return cal, fit_hazard(hazard_rows(steps), name)


def reliability(pairs: Sequence[tuple[float, bool]]) -> list[tuple[str, int, float, float]]:
    """Rows ``(bin, n, mean predicted, observed share)`` of a reliability table."""
    rows = []
    lo = 0.0
    for hi in BINS:
        sel = [(p, y) for p, y in pairs if lo <= p < hi or (hi == 1.0 and p == 1.0)]
        if sel:
            rows.append((f"{lo:g}-{hi:g}", len(sel), statistics.fmean(p for p, _ in sel),
                         statistics.fmean(float(y) for _, y in sel)))
        lo = hi
    return rows


def count_check(steps: Sequence[StepForecast], which: str) -> dict[str, float]:
    """One count forecast (``mean``, ``median`` or ``q80``) against the actual count.

    ``share_actual_le_forecast`` is over the steps whose forecast lies within what was left of
    the budget: for those the answer is known whether or not the cell found a good hit, and the
    choice of steps does not depend on what happened. ``share_uncensored`` is over the steps of
    cells with a good hit only (the number reported before, which leaves out the cells that never
    found one and so flatters a long forecast).
    """
    def value(s: StepForecast) -> float:
        return float(getattr(s.count, f"{which}_experiments"))

    known = [s for s in steps if s.remaining is not None and s.remaining > 0]
    lost = [s for s in steps if s.remaining is None]
    decided = [float(s.remaining is not None and s.remaining <= value(s))
               for s in steps if value(s) <= s.left]
    return {
        "n_known": float(len(known)),
        "median_forecast": _median(value(s) for s in known),
        "median_ratio_forecast_over_actual": _median(value(s) / s.remaining for s in known
                                                     if s.remaining),
        "share_actual_le_forecast": _mean(decided),
        "n_decided": float(len(decided)),
        "share_uncensored": _mean(float(s.remaining <= value(s)) for s in known
                                  if s.remaining is not None),
        "n_censored_beyond_budget": float(sum(value(s) > s.left for s in lost)),
        "share_beyond_budget": _mean(float(value(s) > s.left) for s in steps),
    }


def within_check(steps: Sequence[StepForecast]) -> list[dict[str, float]]:
    """Forecast probability of a good hit within k more against what happened.

    Over the steps with at least k experiments left in the budget (so the answer is known).
    """
    rows = []
    for i, k in enumerate(WITHIN):
        sel = [s for s in steps if s.left >= k]
        pairs = [(s.within[i], s.remaining is not None and s.remaining <= k) for s in sel]
        rows.append({"k": float(k), "n": float(len(pairs)),
                     "mean_predicted": _mean(p for p, _ in pairs),
                     "observed": _mean(float(y) for _, y in pairs),
                     "brier": _mean((p - float(y)) ** 2 for p, y in pairs)})
    return rows


def summarize(steps: Sequence[StepForecast]) -> dict[str, Any]:
    """The checks (module docs) as plain numbers."""
    nxt = [(s.p_next, bool(s.next_good)) for s in steps if s.next_good is not None]
    spec = [(s.p_spec_met, bool(s.best_good)) for s in steps if s.best_good is not None]
    known = [s.remaining for s in steps if s.remaining]
    return {
        "forecasts": len(steps),
        "p_next": {"n": len(nxt), "mean_predicted": _mean(p for p, _ in nxt),
                   "observed": _mean(float(y) for _, y in nxt),
                   "brier": _mean((p - float(y)) ** 2 for p, y in nxt),
                   "bins": reliability(nxt)},
        "count": {"median_actual": _median(float(r) for r in known if r is not None),
                  "n_censored": sum(s.remaining is None for s in steps),
                  **{w: count_check(steps, w) for w in COUNTS},
                  "within": within_check(steps)},
        "p_spec_met": {"n": len(spec), "mean_predicted": _mean(p for p, _ in spec),
                       "observed": _mean(float(y) for _, y in spec),
                       "brier": _mean((p - float(y)) ** 2 for p, y in spec),
                       "bins": reliability(spec)},
    }


def _mean(xs: Iterable[float]) -> float:
    v = list(xs)
    return statistics.fmean(v) if v else math.nan


def _median(xs: Iterable[float]) -> float:
    v = list(xs)
    return statistics.median(v) if v else math.nan


def load_cells(dirs: Sequence[str], strategy: str | None) -> list[dict[str, Any]]:
    """Cell results under ``<dir>/cells/*.json`` (of one strategy, or of all)."""
    out = []
    for d in dirs:
        for path in sorted(Path(d, "cells").glob("*.json")):
            r = json.loads(path.read_text())["result"]
            if strategy is None or r["strategy"] == strategy:
                out.append(r)
    return out


def _count_text(summary: dict[str, Any]) -> str:
    c = summary["count"]
    parts = [f"{w} {c[w]['median_forecast']:.1f} (forecast/actual "
             f"{c[w]['median_ratio_forecast_over_actual']:.2f}, actual <= forecast "
             f"{100 * c[w]['share_actual_le_forecast']:.0f} % of {c[w]['n_decided']:.0f} "
             f"decided, {100 * c[w]['share_uncensored']:.0f} % uncensored)" for w in COUNTS]
    within = "; ".join(f"P(hit within {w['k']:.0f}) predicted {w['mean_predicted']:.3f} vs "
                       f"observed {w['observed']:.3f} (n {w['n']:.0f}, Brier {w['brier']:.3f})"
                       for w in c["within"])
    return (f"count vs actual median {c['median_actual']:.1f} (n {c['mean']['n_known']:.0f} "
            f"uncensored, {c['n_censored']} censored): " + "; ".join(parts) + "; " + within)


def _print(summary: dict[str, Any], label: str) -> None:
    pn, ps = summary["p_next"], summary["p_spec_met"]
    print(f"-- {label}: {summary['forecasts']} forecasts")
    print(f"p_next: mean predicted {pn['mean_predicted']:.3f}, observed {pn['observed']:.3f} "
          f"(n {pn['n']}), Brier {pn['brier']:.4f}")
    for b, n, p, o in pn["bins"]:
        print(f"  p_next {b:>9}: n {n:4d}  predicted {p:.3f}  observed {o:.3f}")
    print(_count_text(summary))
    print(f"p_spec_met: mean predicted {ps['mean_predicted']:.3f}, observed {ps['observed']:.3f} "
          f"(n {ps['n']}), Brier {ps['brier']:.4f}")
    for b, n, p, o in ps["bins"]:
        print(f"  p_spec_met {b:>9}: n {n:4d}  predicted {p:.3f}  observed {o:.3f}")


def _rows(label: str, summary: dict[str, Any]) -> tuple[tuple[Any, ...], ...]:
    return tuple((label, what, b, n, f"{p:.3f}", f"{o:.3f}")
                 for what in ("p_next", "p_spec_met") for b, n, p, o in summary[what]["bins"])


def _count_rows(label: str, summary: dict[str, Any]) -> tuple[tuple[Any, ...], ...]:
    c = summary["count"]
    return tuple((label, w, f"{c[w]['median_forecast']:.1f}", f"{c['median_actual']:.1f}",
                  f"{c[w]['median_ratio_forecast_over_actual']:.2f}",
                  f"{100 * c[w]['share_actual_le_forecast']:.0f}",
                  f"{100 * c[w]['share_uncensored']:.0f}") for w in COUNTS)


def _note(label: str, summary: dict[str, Any]) -> str:
    pn, ps = summary["p_next"], summary["p_spec_met"]
    return (f"{label}: p_next mean {pn['mean_predicted']:.3f} vs observed {pn['observed']:.3f} "
            f"(Brier {pn['brier']:.4f}); p_spec_met mean {ps['mean_predicted']:.3f} vs observed "
            f"{ps['observed']:.3f} (Brier {ps['brier']:.4f}); {_count_text(summary)}.")


def main(argv: Sequence[str] | None = None) -> None:
    """Print (and optionally record) the calibration of the cells in the given folders."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="benchmark output folders (with cells/)")
    ap.add_argument("--strategy", default="botorch", help="strategy label ('' for all)")
    ap.add_argument("--fit", default=None, metavar="NAME",
                    help="fit a recalibration and hazard named NAME on these cells and print them")
    ap.add_argument("--record", default=None, help="write forecast-calibration.json here")
    ap.add_argument("--name", default="forecast-calibration", help="name of the record")
    ap.add_argument("--note", action="append", default=[], help="a paragraph for the record")
    args = ap.parse_args(argv)
    cells = load_cells(args.dirs, args.strategy or None)
    steps = read_steps(cells)
    cal, hazard = fit(steps, args.fit) if args.fit else (FAMILY_RECALIBRATION, FAMILY_HAZARD)
    model = summarize(steps)
    geo = summarize(recalibrated(steps, cal, None))
    recal = summarize(recalibrated(steps, cal, hazard))
    print(f"{len(cells)} cells")
    _print(model, "model's own probabilities, geometric count")
    print(f"-- recalibrated ({cal.name}), geometric count 1 / p_next\n{_count_text(geo)}")
    _print(recal, f"recalibrated ({cal.name}), hazard count ({hazard.name})")
    if args.fit:
        print(f"fitted (in-sample above; check on held-out cells):\n{cal!r}\n{hazard!r}")
    if args.record:
        _record(args, len(cells), cal, hazard, {"model": model, "recalibrated_geometric": geo,
                                                "recalibrated": recal})


def _record(args: argparse.Namespace, n_cells: int, cal: Recalibration, hazard: HazardModel,
            summaries: dict[str, dict[str, Any]]) -> None:
    """Write the checks with provenance (``--record``)."""
    from autolab.benchmarking.provenance import Result, Table, write_result

    model, geo = summaries["model"], summaries["recalibrated_geometric"]
    recal = summaries["recalibrated"]

    result = Result(
        name=args.name, title="Stopping forecast: forecast vs actual",
        description=f"Per-step forecasts of {n_cells} family cells "
                    f"({', '.join(args.dirs)}, strategy {args.strategy or 'all'}) against "
                    "what happened: the model's own probabilities, recalibrated "
                    f"({cal.name}), and the count of the hazard {hazard.name} "
                    "(benchmarks/forecast_calibration.py)",
        tables=(Table(title="reliability", columns=(
            "probabilities", "forecast", "bin", "n", "mean predicted", "observed share"),
            rows=_rows("model", model) + _rows("recalibrated", recal)),
            Table(title="further experiments to a good hit", columns=(
                "count", "forecast", "median forecast", "median actual",
                "forecast/actual (median)", "actual <= forecast %",
                "actual <= forecast % (cells with a hit)"),
                rows=(_count_rows("model, geometric", model)
                      + _count_rows("recalibrated, geometric", geo)
                      + _count_rows(f"hazard {hazard.name}", recal)))),
        notes=(_note("model, geometric", model), _note(f"recalibrated ({cal.name}), hazard "
                                                       f"({hazard.name})", recal),
               f"recalibrated, geometric count: {_count_text(geo)}", *args.note),
        data={**summaries, "recalibration": {"name": cal.name, "p_spec_met": cal.p_spec_met,
                                "p_next": cal.p_next},
              "hazard": {"name": hazard.name, "intercept": hazard.intercept,
                         "per_logit_p": hazard.per_logit_p, "in_band": hazard.in_band,
                         "per_log_n": hazard.per_log_n}})
    print(f"wrote {write_result(result, args.record)}")


if __name__ == "__main__":
    main()
