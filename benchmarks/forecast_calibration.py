"""Is the stopping forecast calibrated? Forecast against the actual count, on family cells.

Every BoTorch cell of ``autolab benchmark`` keeps, per experiment, the forecast the campaign
journalled after it (``steps[i]["forecast"]``) and the truth of every experiment (in band, good
hit). This script reads finished cells (``<out>/cells/*.json``) and prints three checks:

* **p_next** (probability that the next experiment is a good hit): predicted against the observed
  share of next experiments that were good hits, in bins of the prediction, and the Brier score.
* **expected_experiments** (further experiments to a good hit) against the actual number, per
  step. A cell without a good hit is censored at the budget (the actual count is *more* than
  what was left); the table counts the share of steps whose actual count was at most the forecast
  and the median ratio forecast/actual over the uncensored steps.
* **p_spec_met** (probability that the best in-band experiment so far truly meets the spec):
  predicted against the share whose best experiment was truly a good hit.

Each check is printed twice: for the model's own probabilities (``p_*_model`` in the journal;
``p_*`` in cells run before the recalibration existed) and for the same probabilities through
``autolab.optimizer.forecast.FAMILY_RECALIBRATION``, the map a campaign reports. ``--fit`` fits a
new map on the given cells (design members only: never fit on held-out ones) and prints it as
Python to paste into ``forecast.py``; check it on held-out cells with a second run without
``--fit``.

Run: ``.venv/bin/python benchmarks/forecast_calibration.py benchmark-results/X [more dirs]
[--strategy botorch] [--fit NAME] [--record benchmarks/results]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from autolab.optimizer.forecast import (
    FAMILY_RECALIBRATION,
    Recalibration,
    expected_experiments,
    fit_knots,
)

#: Upper edges of the probability bins of the reliability tables.
BINS = (0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class StepForecast:
    """One forecast and what happened after it.

    Attributes:
        cell: Cell name.
        experiment: 1-based experiment after which the forecast was made.
        p_next: Forecast probability that the next experiment is a good hit.
        expected: Forecast further experiments to a good hit.
        p_spec_met: Forecast probability that the best experiment meets the spec.
        next_good: Whether the next experiment was a good hit (``None``: there was none).
        remaining: Further experiments to the good hit (``None``: none within the budget).
        left: Experiments left in the budget after this one.
        best_good: Whether the forecast's best experiment was truly a good hit (``None``: none).
    """

    cell: str
    experiment: int
    p_next: float
    expected: float
    p_spec_met: float
    next_good: bool | None
    remaining: int | None
    left: int
    best_good: bool | None


def read_steps(cells: Iterable[dict[str, Any]]) -> list[StepForecast]:
    """Every recorded forecast of the given cell results, with its outcome."""
    out = []
    for r in cells:
        steps = r["steps"]
        hit = r.get("experiments_to_success")
        name = f"{r['strategy']}/{r['member']}/{r['target_nm']:g}/s{r['seed']}"
        for i, s in enumerate(steps):
            fc = s.get("forecast")
            if not fc:
                continue
            nxt = steps[i + 1]["good"] if i + 1 < len(steps) else None
            best = fc.get("best_index")
            p_next = float(fc.get("p_next_model", fc["p_next"]))
            out.append(StepForecast(
                cell=name, experiment=s["experiment"], p_next=p_next,
                expected=expected_experiments(p_next),
                p_spec_met=float(fc.get("p_spec_met_model", fc["p_spec_met"])),
                next_good=nxt, remaining=None if hit is None else hit - s["experiment"],
                left=r["budget"] - s["experiment"],
                best_good=None if best is None else bool(steps[best]["good"])))
    return out


def recalibrated(steps: Sequence[StepForecast], cal: Recalibration) -> list[StepForecast]:
    """The same steps with ``cal`` applied to the model's probabilities (as a campaign would)."""
    out = []
    for s in steps:
        p_next = cal.next(s.p_next)
        out.append(replace(s, p_next=p_next, expected=expected_experiments(p_next),
                           p_spec_met=cal.spec_met(s.p_spec_met) if s.best_good is not None
                           else s.p_spec_met))
    return out


def fit(steps: Sequence[StepForecast], name: str) -> Recalibration:
    """A recalibration fitted on these steps' outcomes (reliability bins :data:`BINS`)."""
    nxt = [(s.p_next, bool(s.next_good)) for s in steps if s.next_good is not None]
    spec = [(s.p_spec_met, bool(s.best_good)) for s in steps if s.best_good is not None]
    return Recalibration(name=name, p_spec_met=fit_knots(spec, BINS),
                         p_next=fit_knots(nxt, BINS))


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


def summarize(steps: Sequence[StepForecast]) -> dict[str, Any]:
    """The three calibration checks (module docs) as plain numbers."""
    nxt = [(s.p_next, bool(s.next_good)) for s in steps if s.next_good is not None]
    spec = [(s.p_spec_met, bool(s.best_good)) for s in steps if s.best_good is not None]
    # A step counts for the count check when its truth is known: a good hit came, or none came
    # and the forecast already said more than the budget had left (then "actual > forecast" is
    # unknown, so such censored steps are reported apart).
    known = [s for s in steps if s.remaining is not None and s.remaining > 0]
    censored = [s for s in steps if s.remaining is None]
    ratios = [s.expected / s.remaining for s in known if s.remaining]
    return {
        "forecasts": len(steps),
        "p_next": {"n": len(nxt), "mean_predicted": _mean(p for p, _ in nxt),
                   "observed": _mean(float(y) for _, y in nxt),
                   "brier": _mean((p - float(y)) ** 2 for p, y in nxt),
                   "bins": reliability(nxt)},
        "expected_experiments": {
            "n_known": len(known),
            "share_actual_le_forecast": _mean(float(s.remaining <= s.expected) for s in known
                                              if s.remaining is not None),
            "median_forecast": _median(s.expected for s in known),
            "median_actual": _median(float(s.remaining) for s in known if s.remaining),
            "median_ratio_forecast_over_actual": _median(ratios),
            "n_censored": len(censored),
            "censored_share_forecast_beyond_budget": _mean(float(s.expected > s.left)
                                                           for s in censored),
        },
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


def _print(summary: dict[str, Any], label: str) -> None:
    pn, ee, ps = summary["p_next"], summary["expected_experiments"], summary["p_spec_met"]
    print(f"-- {label}: {summary['forecasts']} forecasts")
    print(f"p_next: mean predicted {pn['mean_predicted']:.3f}, observed {pn['observed']:.3f} "
          f"(n {pn['n']}), Brier {pn['brier']:.3f}")
    for b, n, p, o in pn["bins"]:
        print(f"  p_next {b:>9}: n {n:4d}  predicted {p:.3f}  observed {o:.3f}")
    print(f"expected_experiments: median forecast {ee['median_forecast']:.1f} vs actual "
          f"{ee['median_actual']:.1f} (n {ee['n_known']}), forecast/actual median "
          f"{ee['median_ratio_forecast_over_actual']:.2f}, actual <= forecast in "
          f"{100 * ee['share_actual_le_forecast']:.0f} %; {ee['n_censored']} censored steps, "
          "forecast beyond the budget in "
          f"{100 * ee['censored_share_forecast_beyond_budget']:.0f} %")
    print(f"p_spec_met: mean predicted {ps['mean_predicted']:.3f}, observed {ps['observed']:.3f} "
          f"(n {ps['n']}), Brier {ps['brier']:.3f}")
    for b, n, p, o in ps["bins"]:
        print(f"  p_spec_met {b:>9}: n {n:4d}  predicted {p:.3f}  observed {o:.3f}")


def _rows(label: str, summary: dict[str, Any]) -> tuple[tuple[Any, ...], ...]:
    return tuple((label, what, b, n, f"{p:.3f}", f"{o:.3f}")
                 for what in ("p_next", "p_spec_met") for b, n, p, o in summary[what]["bins"])


def _count_note(label: str, summary: dict[str, Any]) -> str:
    ee, pn, ps = summary["expected_experiments"], summary["p_next"], summary["p_spec_met"]
    return (f"{label}: p_next mean {pn['mean_predicted']:.3f} vs observed {pn['observed']:.3f} "
            f"(Brier {pn['brier']:.3f}); p_spec_met mean {ps['mean_predicted']:.3f} vs observed "
            f"{ps['observed']:.3f} (Brier {ps['brier']:.3f}); expected_experiments median "
            f"{ee['median_forecast']:.1f} vs actual {ee['median_actual']:.1f} further experiments "
            f"(n {ee['n_known']} steps before a good hit), forecast/actual median "
            f"{ee['median_ratio_forecast_over_actual']:.2f}, actual <= forecast in "
            f"{100 * ee['share_actual_le_forecast']:.0f} %.")


def main(argv: Sequence[str] | None = None) -> None:
    """Print (and optionally record) the calibration of the cells in the given folders."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="benchmark output folders (with cells/)")
    ap.add_argument("--strategy", default="botorch", help="strategy label ('' for all)")
    ap.add_argument("--fit", default=None, metavar="NAME",
                    help="fit a recalibration named NAME on these cells and print it")
    ap.add_argument("--record", default=None, help="write forecast-calibration.json here")
    ap.add_argument("--name", default="forecast-calibration", help="name of the record")
    ap.add_argument("--note", action="append", default=[], help="a paragraph for the record")
    args = ap.parse_args(argv)
    cells = load_cells(args.dirs, args.strategy or None)
    steps = read_steps(cells)
    cal = fit(steps, args.fit) if args.fit else FAMILY_RECALIBRATION
    model, recal = summarize(steps), summarize(recalibrated(steps, cal))
    print(f"{len(cells)} cells")
    _print(model, "model's own probabilities")
    _print(recal, f"recalibrated ({cal.name})")
    if args.fit:
        print(f"fitted (in-sample above; check on held-out cells):\n{cal!r}")
    if args.record:
        from autolab.benchmarking.provenance import Result, Table, write_result

        result = Result(
            name=args.name, title="Stopping forecast: forecast vs actual",
            description=f"Per-step forecasts of {len(cells)} family cells "
                        f"({', '.join(args.dirs)}, strategy {args.strategy or 'all'}) against "
                        "what happened, the model's own probabilities and recalibrated "
                        f"({cal.name}) (benchmarks/forecast_calibration.py)",
            tables=(Table(title="reliability", columns=(
                "probabilities", "forecast", "bin", "n", "mean predicted", "observed share"),
                rows=_rows("model", model) + _rows("recalibrated", recal)),),
            notes=(_count_note("model", model), _count_note(f"recalibrated ({cal.name})", recal),
                   *args.note),
            data={"model": model, "recalibrated": recal, "recalibration": {
                "name": cal.name, "p_spec_met": cal.p_spec_met, "p_next": cal.p_next}})
        print(f"wrote {write_result(result, args.record)}")


if __name__ == "__main__":
    main()
