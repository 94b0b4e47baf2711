"""Readings of the two procedures against the truth: carry-over, stated sd, settle time (issue 9).

Runs one Sobol sequence of conditions per member of ``benchmarks/lab_hours.yaml`` through the
simulated rig twice, with the same executor seed (same condition jitter, same failures): once
with adaptive settling and flush only when needed, once with a fixed 3 τ and a flush before every
experiment. No optimizer is involved, so both procedures read exactly the same conditions after
exactly the same previous experiment, and every difference between their readings is the
procedure's. Per reading it keeps the told PL and QY with the analyzer's stated one-sigma, the
member's noise-free truth at the told conditions and at the realized (jittered) ones, the
previous experiment's truth and the settle time. It prints, per procedure:

* the error against the truth at the told conditions (what a benchmark judges), split into the
  process scatter (truth at the realized conditions minus truth at the told ones, which no
  reading can see) and the reading error (reading minus truth at the realized conditions);
* z = error / stated sd, i.e. whether the stated sd is honest: mean, sd and the share of
  readings within 2 sd, per procedure and member kind (the twin, the family members), with the
  stated sd as the analyzer gives it now (``z_realized``: with the carry-over of the previous
  product that an unflushed cell still holds, :mod:`autolab.analysis.carryover`) and without
  that term (``z_realized_without_carryover``: the analyzer before it was added);
* the analyzer's own QY bias, with each run's read-out gain (``pl_gain``, the twin's
  ``qy_readout_rel``) divided out (``qy_bias_analyzer``);
* adaptive minus fixed, signed toward the previous experiment's steady state (carry-over), by
  how early the adaptive verdict stopped (settle time over the fixed 3 τ);
* the reading error had the analyzer located the peak on the emission corrected for the
  secondary inner filter (each pixel times ``sqrt(blank / sample)``, the factor it already
  applies when it integrates the QY): the rendered emission passes the product's own
  absorbance, which dims its blue side more and pulls the uncorrected peak red.

    .venv/bin/python benchmarks/procedure_readings.py --points 32 --out /tmp/readings.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import qmc

from autolab.analysis import AnalyzerSettings, analyze
from autolab.analysis.carryover import PREFIX as CARRYOVER_PREFIX
from autolab.benchmarking.benchmark import problems
from autolab.benchmarking.family import Member
from autolab.benchmarking.spec import BenchmarkSpec, load_spec
from autolab.exceptions import ConditionsError, ExperimentFailed
from autolab.records import Measurement

ROOT = Path(__file__).resolve().parents[1]
#: The two procedures of the issue-9 benchmark, and the two mixed ones that tell which half
#: (early reading or skipped flush) an effect belongs to.
PROCEDURES = {"adaptive": ("adaptive", "auto"), "fixed": ("fixed", "always"),
              "adaptive+flush": ("adaptive", "always"), "fixed+auto": ("fixed", "auto")}


def inner_filter_corrected(m: Measurement) -> Measurement:
    """``m`` with its emission frame corrected for the secondary inner filter, per pixel.

    The factor is ``sqrt(blank / sample)`` (dark subtracted), i.e. ``10^(A/2)``: the analyzer's
    own QY correction; pixels without a positive lamp reading keep factor 1.
    """
    s = m.spectra
    blank = s.blank_counts - s.dark_abs_counts
    sample = s.sample_counts - s.dark_abs_counts
    ok = (blank > 0) & (sample > 0)
    factor = np.sqrt(np.where(ok, blank / np.where(ok, sample, 1.0), 1.0))
    pl = s.dark_pl_counts + (s.pl_counts - s.dark_pl_counts) * factor
    return dataclasses.replace(m, spectra=dataclasses.replace(s, pl_counts=pl))


#: The analyzer as it was before ``peak_inner_filter`` (the peak on the observed emission).
UNCORRECTED = AnalyzerSettings(peak_inner_filter=False)


def read_sequence(spec: BenchmarkSpec, member: Member, points: int, seed: int,
                  procedure: str) -> Iterator[dict[str, Any]]:
    """One procedure's readings of a member's Sobol sequence (a failed run yields ``failed``)."""
    problem = problems(spec, member)[0]
    space = problem.space
    sobol = qmc.Sobol(space.dim, seed=seed).random(points)
    settling, flush = PROCEDURES[procedure]
    ex = member.executor(seed=seed, settling=settling, flush=flush)
    previous = math.nan
    clock_h = ex.lab_clock_h
    for i, point in enumerate(space.from_unit(sobol)):
        conditions = problem.conditions(point)
        k = ex.run_index
        row: dict[str, Any] = {"member": member.name, "procedure": procedure, "index": i}
        try:
            m = ex.run(conditions)
        except (ExperimentFailed, ConditionsError) as err:
            previous, clock_h = math.nan, ex.lab_clock_h
            yield {**row, "failed": type(err).__name__}
            continue
        f = analyze(m)
        f0 = analyze(without_carryover(m))
        truth = ex.truths[k]
        # the executor drew this run's jitter first from its per-run generator [seed, k]
        realized = ex.twin.truth(ex.twin.jitter(conditions, np.random.default_rng([seed, k])))
        # the frames corrected by hand, read by the analyzer with its own correction off (with it
        # on as well the factor would be applied twice)
        corrected = analyze(inner_filter_corrected(m), UNCORRECTED).pl_peak_nm
        yield {**row, "pl_nm": f.pl_peak_nm, "pl_sd_nm": f.pl_peak_nm_err, "qy": f.qy,
               "pl_inner_filter_corrected_nm": corrected,
               "qy_sd": f.qy_err, "pl_sd_without_carryover_nm": f0.pl_peak_nm_err,
               "qy_sd_without_carryover": f0.qy_err,
               "carryover_share": float(m.metadata.get("carryover_share", math.nan)),
               "realized_qy": float(realized.qy), "true_pl_nm": float(truth.pl_peak_nm),
               "pl_gain": float(ex.rig.reactor.pl_gain),
               "true_qy": float(truth.qy), "realized_pl_nm": float(realized.pl_peak_nm),
               "previous_true_pl_nm": previous,
               "settle_min": float(m.metadata.get("wait_settle_min", math.nan)),
               "settle_cap_min": float(m.metadata.get("settle_cap_min", math.nan)),
               "settle_reason": str(m.metadata.get("settle_reason", "")),
               "lab_h": ex.lab_clock_h - clock_h}
        previous, clock_h = float(truth.pl_peak_nm), ex.lab_clock_h


def without_carryover(m: Measurement) -> Measurement:
    """``m`` without the previous product's share and reading (the analyzer adds nothing)."""
    md = {k: v for k, v in m.metadata.items() if not k.startswith(CARRYOVER_PREFIX)}
    return dataclasses.replace(m, metadata=md)


def z_summary(rows: list[dict[str, Any]], value: str, truth: str, sd: str) -> dict[str, Any]:
    """z = (reading - truth) / stated sd: mean, sd, and the share within 2 sd (0.954 honest)."""
    z = [(r[value] - r[truth]) / r[sd] for r in rows
         if math.isfinite(r[value]) and math.isfinite(r[truth]) and r[sd] > 0]
    if len(z) < 2:
        return {"readings": len(z)}
    return {"readings": len(z), "mean": round(statistics.fmean(z), 3),
            "sd": round(statistics.stdev(z), 3),
            "within_2sd": round(sum(abs(v) < 2.0 for v in z) / len(z), 3)}


def calibration(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """PL and QY z against the truth at the realized conditions, per procedure and kind."""
    out: dict[str, Any] = {}
    ok = [r for r in rows if "pl_nm" in r and math.isfinite(r["pl_nm"])]
    for proc in dict.fromkeys(r["procedure"] for r in ok):
        for kind in ("twin", "family"):
            mine = [r for r in ok if r["procedure"] == proc
                    and (r["member"] == "twin-nominal") == (kind == "twin")]
            if not mine:
                continue
            shares = [r["carryover_share"] for r in mine if math.isfinite(r["carryover_share"])]
            out[f"{proc} / {kind}"] = {
                "carryover_share_median": statistics.median(shares) if shares else None,
                "carryover_share_max": max(shares) if shares else None,
                "pl_z": z_summary(mine, "pl_nm", "realized_pl_nm", "pl_sd_nm"),
                "pl_z_without_carryover": z_summary(mine, "pl_nm", "realized_pl_nm",
                                                    "pl_sd_without_carryover_nm"),
                "qy_z": z_summary(mine, "qy", "realized_qy", "qy_sd"),
                "qy_z_without_carryover": z_summary(mine, "qy", "realized_qy",
                                                    "qy_sd_without_carryover"),
                "qy_bias_analyzer": qy_bias(mine)}
    return out


def qy_bias(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The analyzer's own QY bias: reading / (truth × the run's read-out gain) - 1.

    The simulated rig scales each run's emission by ``pl_gain`` (``qy_readout_rel``: excitation
    drift between the sample and dye frames), which the stated sd's calibration term covers;
    dividing it out leaves what the analyzer adds. Mean, its standard error and the sd.
    """
    b = [r["qy"] / (r["realized_qy"] * r["pl_gain"]) - 1.0 for r in rows
         if math.isfinite(r["qy"]) and r["realized_qy"] > 0 and "pl_gain" in r]
    if len(b) < 2:
        return {"readings": len(b)}
    sd = statistics.stdev(b)
    return {"readings": len(b), "mean": round(statistics.fmean(b), 5),
            "se": round(sd / math.sqrt(len(b)), 5), "sd": round(sd, 5)}


def _ms(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    return f"{statistics.fmean(values):+.3f} ± {statistics.stdev(values):.3f}"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per procedure: errors, z, and the paired adaptive - fixed difference (see module docs)."""
    ok = [r for r in rows if "pl_nm" in r and math.isfinite(r["pl_nm"])]
    out: dict[str, Any] = {}
    for proc in dict.fromkeys(r["procedure"] for r in rows):
        mine = [r for r in ok if r["procedure"] == proc]
        out[proc] = {
            "readings": len(mine),
            "error_vs_told_truth_nm": _ms([r["pl_nm"] - r["true_pl_nm"] for r in mine]),
            "process_scatter_nm": _ms([r["realized_pl_nm"] - r["true_pl_nm"] for r in mine]),
            "reading_error_nm": _ms([r["pl_nm"] - r["realized_pl_nm"] for r in mine]),
            "reading_error_inner_filter_corrected_nm": _ms(
                [r["pl_inner_filter_corrected_nm"] - r["realized_pl_nm"] for r in mine]),
            "stated_sd_median_nm": statistics.median([r["pl_sd_nm"] for r in mine]) if mine
            else None,
            "z_told": _ms([(r["pl_nm"] - r["true_pl_nm"]) / r["pl_sd_nm"] for r in mine]),
            "z_realized": _ms([(r["pl_nm"] - r["realized_pl_nm"]) / r["pl_sd_nm"]
                               for r in mine]),
            "settle_min_median": statistics.median([r["settle_min"] for r in mine]) if mine
            else None,
            "lab_h_per_experiment": statistics.fmean([r["lab_h"] for r in mine]) if mine
            else None}
    fixed = {(r["member"], r["index"]): r for r in ok if r["procedure"] == "fixed"}
    early: dict[str, list[float]] = {"before 0.8 of 3 τ": [], "0.8 of 3 τ or later": []}
    for r in ok:
        f = fixed.get((r["member"], r["index"]))
        if r["procedure"] != "adaptive" or f is None or not math.isfinite(
                r["previous_true_pl_nm"]) or r["previous_true_pl_nm"] == r["true_pl_nm"]:
            continue
        toward = math.copysign(r["pl_nm"] - f["pl_nm"], r["previous_true_pl_nm"] - r["true_pl_nm"])
        share = r["settle_min"] / r["settle_cap_min"]
        early["before 0.8 of 3 τ" if share < 0.8 else "0.8 of 3 τ or later"].append(toward)
    out["calibration"] = calibration(rows)
    out["adaptive_minus_fixed_toward_previous_nm"] = {
        k: {"readings": len(v), "mean_se": (f"{statistics.fmean(v):+.3f} ± "
                                            f"{statistics.stdev(v) / math.sqrt(len(v)):.3f}"
                                            if len(v) > 1 else "-")}
        for k, v in early.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    """Read the sequences, print the summary, keep the rows."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "lab_hours.yaml")
    parser.add_argument("--points", type=int, default=32, help="conditions per member")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--members", nargs="+", default=None, help="member names (all)")
    parser.add_argument("--procedures", nargs="+", choices=sorted(PROCEDURES),
                        default=["adaptive", "fixed"])
    parser.add_argument("--out", type=Path, default=None, help="rows and summary as JSON")
    args = parser.parse_args(argv)
    if args.points < 2:
        parser.error(f"--points must be at least 2, got {args.points}")
    spec = load_spec(args.spec)
    members = [m for m in spec.members() if args.members is None or m.name in args.members]
    if not members:
        parser.error(f"--members {args.members}: none of {[m.name for m in spec.members()]}")
    rows = [row for m in members for proc in args.procedures
            for row in read_sequence(spec, m, args.points, args.seed, proc)]
    summary = summarize(rows)
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    if args.out is not None:
        args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=0,
                                       ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
