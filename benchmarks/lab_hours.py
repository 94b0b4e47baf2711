"""Lab hours to a good hit: the procedure's changeovers and parallel reactors (issue 9 goals).

Runs the spec ``benchmarks/lab_hours.yaml`` (BoTorch on the calibrated twin and on members of the
reactor family) through the campaign loop in four variants:

* ``fixed+always, K=1``: settle a fixed ``settle_residence_times`` (3 τ) and flush with solvent
  before every experiment (what autolab did before issue 9);
* ``adaptive+auto, K=1``: stop settling once the inline spectra are steady (never before the RTD
  floor) and flush only when the new feed cannot wash the old product out;
* ``adaptive+auto, K=2`` and ``K=4``: the same procedure on K simulated rigs of the member at
  once (asynchronous proposals; wall-clock lab hours, the latest reactor clock).

For each it reports the share of cells that reach a good hit within the budget (the found-rate),
the experiments and the lab hours to it, and the ratio of lab hours to the baseline on the cells
both found (paired: same member, target and seed). The goals: adaptive + short changeovers
≤ 0.6× the fixed-3τ lab hours with no worse found-rate; K = 4 ≤ 0.35× the wall-clock lab hours of
K = 1 at the same found-rate. Writes ``benchmarks/results/lab-hours.json`` (with ``--only G``:
``lab-hours-G.json``)::

    .venv/bin/python benchmarks/lab_hours.py --workers 2 --record benchmarks/results
    .venv/bin/python benchmarks/lab_hours.py --only parallel --k 1 4 --seeds 2 --workers 1 \
        --record benchmarks/results

A record can grow by seeds: run the later seeds into their own folder (``--seed-offset``), then
record the union of the folders without running anything (``--from``; each cell must be in one
of them, made for exactly this spec)::

    .venv/bin/python benchmarks/lab_hours.py --only procedure --seeds 8 --seed-offset 8 \
        --workers 1 --out benchmark-results/proc6 --record benchmark-results/proc6/record
    .venv/bin/python benchmarks/lab_hours.py --only procedure --seeds 16 \
        --from benchmark-results/proc5 benchmark-results/proc6 --record benchmarks/results

The procedure group also reports the paired found-rate: cells found by both, by one only, by
neither; the exact McNemar p of the discordant cells; the 95 % interval of the difference.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autolab.benchmarking.benchmark import CellStore, make_jobs, reachable_all, run_benchmark
from autolab.benchmarking.provenance import Result, Table, write_result
from autolab.benchmarking.runner import RunResult
from autolab.benchmarking.spec import BenchmarkSpec, ProcedureSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    """One way of running the spec's cells."""

    label: str
    settling: str
    flush: str
    reactors: int

    @property
    def folder(self) -> str:
        """The variant's folder under an output directory."""
        return self.label.replace(" ", "_").replace(",", "").replace("+", "p").replace(
            "τ", "tau").replace("=", "")

    def spec(self, base: BenchmarkSpec) -> BenchmarkSpec:
        """The base spec run this way."""
        return base.model_copy(update={
            "procedure": ProcedureSpec.model_validate({"settling": self.settling,
                                                       "flush": self.flush}),
            "reactors": self.reactors})


FIXED = Variant("fixed 3τ + always flush, K=1", "fixed", "always", 1)
ADAPTIVE = Variant("adaptive + auto flush, K=1", "adaptive", "auto", 1)
K2 = Variant("adaptive + auto flush, K=2", "adaptive", "auto", 2)
K4 = Variant("adaptive + auto flush, K=4", "adaptive", "auto", 4)
GROUPS = {"procedure": (FIXED, ADAPTIVE), "parallel": (ADAPTIVE, K2, K4)}


#: A cell of the grid: (member, target nm, seed).
Cell = tuple[str, float, int]


def _key(r: RunResult) -> Cell:
    return (r.member, r.target_nm, r.seed)


def _median_iqr(values: list[float], digits: int = 1) -> str:
    if not values:
        return "-"
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{statistics.median(values):.{digits}f} ({q[0]:.{digits}f}-{q[2]:.{digits}f})"


def summarize(label: str, results: list[RunResult], base: list[RunResult] | None,
              reactors: int) -> dict[str, Any]:
    """The figures of one variant (and its paired ratio to ``base``)."""
    found = [r for r in results if r.found]
    hours = [float(r.lab_hours_to_success) for r in found if r.lab_hours_to_success is not None]
    out: dict[str, Any] = {
        "variant": label, "reactors": reactors, "cells": len(results), "found": len(found),
        "found_rate": len(found) / len(results) if results else 0.0,
        "median_experiments_to_hit": (statistics.median([float(r.experiments_to_success or 0)
                                                         for r in found]) if found else None),
        "median_lab_h_to_hit": statistics.median(hours) if hours else None,
        "lab_h_to_hit": _median_iqr(hours),
        "experiments_to_hit": _median_iqr([float(r.experiments_to_success or 0) for r in found],
                                          0),
        "reactor_h_per_experiment": statistics.fmean(
            [s.experiment_lab_h for r in results for s in r.steps] or [math.nan]),
    }
    if base is not None:
        ref = {_key(r): float(r.lab_hours_to_success) for r in base
               if r.found and r.lab_hours_to_success}
        ratios = [float(r.lab_hours_to_success) / ref[_key(r)]
                  for r in found if _key(r) in ref and r.lab_hours_to_success is not None]
        out["paired_cells"] = len(ratios)
        out["paired_ratio_median"] = statistics.median(ratios) if ratios else None
        base_hours = [float(r.lab_hours_to_success) for r in base
                      if r.found and r.lab_hours_to_success is not None]
        out["ratio_of_medians"] = (statistics.median(hours) / statistics.median(base_hours)
                                   if hours and base_hours else None)
    return out


def _wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n``."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def paired_found(base: dict[Cell, bool], other: dict[Cell, bool]) -> dict[str, Any]:
    """How often ``other`` finds a good hit where ``base`` does not, and the reverse, paired.

    ``base`` and ``other`` say per cell (member, target, seed) whether it was found: the cells
    are paired on the same reactor, target and noise seed. The
    exact McNemar test (two-sided binomial on the discordant cells) says whether the found-rates
    differ beyond chance; the 95 % interval of the difference ``other - base`` is Newcombe's
    paired score interval (his method 10), which stays inside [-1, 1] with few discordant cells,
    where the Wald interval does not.

    Raises:
        ValueError: The two lists do not hold the same cells.
    """
    a, b = base, other
    if set(a) != set(b) or not a:
        raise ValueError("paired_found: the two variants must hold the same, non-empty cells; "
                         f"{len(set(a) ^ set(b))} cells are in one only")
    n = len(a)
    both = sum(a[k] and b[k] for k in a)
    only_base = sum(a[k] and not b[k] for k in a)
    only_other = sum(b[k] and not a[k] for k in a)
    neither = n - both - only_base - only_other
    disc = only_base + only_other
    tail = sum(math.comb(disc, i) for i in range(min(only_base, only_other) + 1)) / 2 ** disc
    p_base, p_other = (both + only_base) / n, (both + only_other) / n
    l1, u1 = _wilson(both + only_other, n)
    l2, u2 = _wilson(both + only_base, n)
    den = math.sqrt((both + only_base) * (neither + only_other) * (both + only_other)
                    * (neither + only_base))
    phi = (both * neither - only_base * only_other) / den if den > 0 else 0.0
    diff = p_other - p_base
    lo = diff - math.sqrt(max((p_other - l1) ** 2 - 2 * phi * (p_other - l1) * (u2 - p_base)
                              + (u2 - p_base) ** 2, 0.0))
    hi = diff + math.sqrt(max((u1 - p_other) ** 2 - 2 * phi * (u1 - p_other) * (p_base - l2)
                              + (p_base - l2) ** 2, 0.0))
    return {"cells": n, "both": both, "only_base": only_base, "only_other": only_other,
            "neither": neither, "mcnemar_exact_p": min(1.0, 2 * tail), "difference": diff,
            "difference_ci95": [lo, hi]}


def _mean_se(values: list[float]) -> tuple[float | None, float | None, int]:
    """Mean, its standard error and the count (``None`` where too few values)."""
    n = len(values)
    if n < 2:
        return (values[0] if values else None), None, n
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(n), n


def _errors(results: list[RunResult]) -> dict[str, Any]:
    """Measured minus noise-free PL (nm) and QY over every told reading of one variant."""
    told = [s for r in results for s in r.steps
            if not s.failed and math.isfinite(s.measured_pl_nm) and math.isfinite(s.true_pl_nm)]
    pl = [s.measured_pl_nm - s.true_pl_nm for s in told]
    qy = [s.measured_qy - s.true_qy for s in told if math.isfinite(s.measured_qy)]
    if len(pl) < 2 or len(qy) < 2:
        return {"readings": len(pl)}
    return {"readings": len(pl), "pl_error_mean_nm": statistics.fmean(pl),
            "pl_error_sd_nm": statistics.stdev(pl),
            "share_pl_error_over_1nm": sum(abs(e) > 1 for e in pl) / len(pl),
            "share_pl_error_over_2nm": sum(abs(e) > 2 for e in pl) / len(pl),
            "qy_error_mean": statistics.fmean(qy), "qy_error_sd": statistics.stdev(qy)}


def reading_accuracy(base: list[RunResult], other: list[RunResult],
                     far_nm: float = 30.0) -> dict[str, Any]:
    """How well each variant's told readings match the member's noise-free truth, and paired.

    Both variants of a cell start from the same seed, so they run the same conditions until the
    first proposal that differs: those leading readings are of identical conditions after an
    identical previous experiment, and their difference (``other - base``) is the procedure's
    own effect on a reading. Signed toward the previous experiment's steady state it measures
    carry-over (an outlet read before the old product has washed out), split by how far the
    previous truth lay (``far_nm``). ``diverged_at`` is the first experiment whose truth differs.
    """
    pairs = {_key(r): r for r in base}
    same: list[float] = []
    toward: dict[str, list[float]] = {"near": [], "far": []}
    diverged: list[int] = []
    for r in other:
        b = pairs.get(_key(r))
        if b is None:
            continue
        prev = math.nan
        for i, (so, sb) in enumerate(zip(r.steps, b.steps, strict=False)):
            if not (so.true_pl_nm == sb.true_pl_nm or (math.isnan(so.true_pl_nm)
                                                       and math.isnan(sb.true_pl_nm))):
                diverged.append(i + 1)
                break
            ok = not (so.failed or sb.failed) and math.isfinite(so.measured_pl_nm) \
                and math.isfinite(sb.measured_pl_nm)
            if ok:
                d = so.measured_pl_nm - sb.measured_pl_nm
                same.append(d)
                if math.isfinite(prev):
                    jump = prev - so.true_pl_nm
                    toward["far" if abs(jump) >= far_nm else "near"].append(math.copysign(d, jump))
            prev = so.true_pl_nm if not so.failed else math.nan
    mean, se, n = _mean_se(same)
    out: dict[str, Any] = {
        "base": _errors(base), "other": _errors(other),
        "identical_readings": n, "other_minus_base_nm": mean, "other_minus_base_se_nm": se,
        "diverged_at": _median_iqr([float(x) for x in diverged], 0),
    }
    for name, values in toward.items():
        m, e, k = _mean_se(values)
        out[f"toward_previous_{name}_nm"], out[f"toward_previous_{name}_se_nm"] = m, e
        out[f"toward_previous_{name}_readings"] = k
    return out


def load_cells(variant: Variant, spec: BenchmarkSpec, dirs: list[Path]) -> list[RunResult]:
    """Every cell of ``variant`` from earlier runs' output folders, in job order; runs nothing.

    A cell counts only if its stored fingerprint is that of this spec's cell (same member,
    target, seed, budget, procedure, strategy settings), so a record merged from several runs
    holds exactly the cells it names.

    Raises:
        FileNotFoundError: A folder has no ``reachable.json`` or a cell is in no folder.
        ValueError: A cell is stored in two folders with different results.
    """
    vspec = variant.spec(spec)
    shared = next((d / "reachable.json" for d in dirs if (d / "reachable.json").exists()), None)
    if shared is None:
        raise FileNotFoundError(f"no reachable.json in {[str(d) for d in dirs]}")
    with tempfile.TemporaryDirectory() as tmp:  # a stale yardstick is recomputed, never written
        shutil.copy(shared, Path(tmp) / "reachable.json")  # back into an earlier run's folder
        jobs, _ = make_jobs(vspec, reachable_all(vspec, Path(tmp)))
    found: dict[int, RunResult] = {}
    for d in dirs:
        for i, r in CellStore(d / variant.folder / "cells").load(jobs).items():
            if i in found and found[i].to_dict() != r.to_dict():
                raise ValueError(f"cell {jobs[i].cell_id} differs between the folders")
            found[i] = r
    missing = [jobs[i].cell_id for i in range(len(jobs)) if i not in found]
    if missing:
        raise FileNotFoundError(f"{variant.label}: {len(missing)} cells are in no folder, "
                                f"e.g. {missing[:3]}")
    return [found[i] for i in range(len(jobs))]


def source_runs(dirs: list[Path]) -> list[dict[str, Any]]:
    """Each folder's own record (command and commit), so a merged record says what ran where."""
    out = []
    for d in dirs:
        records = sorted((d / "record").glob("*.json")) if (d / "record").exists() else []
        doc = json.loads(records[0].read_text(encoding="utf-8")) if records else {}
        git = doc.get("provenance", {}).get("git", {})
        out.append({"folder": str(d), "command": doc.get("command"),
                    "commit": git.get("commit"), "dirty": git.get("dirty")})
    return out


def _fmt(v: Any, digits: int = 2, sign: str = "") -> str:
    return "-" if v is None else f"{v:{sign}.{digits}f}"


def _row(s: dict[str, Any]) -> tuple[str, ...]:
    return (s["variant"], f"{s['found']}/{s['cells']} ({100 * s['found_rate']:.0f} %)",
            s["experiments_to_hit"], s["lab_h_to_hit"], _fmt(s["reactor_h_per_experiment"]),
            _fmt(s.get("paired_ratio_median")), _fmt(s.get("ratio_of_medians")))


COLUMNS = ("variant", "good hit found", "experiments to hit, median (IQR)",
           "wall-clock lab h to hit, median (IQR)", "reactor h per experiment",
           "paired lab-h ratio vs baseline (median)", "ratio of medians")


def run_variant(variant: Variant, base: BenchmarkSpec, out: Path, workers: int,
                command: str) -> list[RunResult]:
    """Run (or restore) every cell of one variant; the reachable yardsticks are shared."""
    folder = out / variant.folder
    folder.mkdir(parents=True, exist_ok=True)
    shared = out / "reachable.json"
    if shared.exists() and not (folder / "reachable.json").exists():
        shutil.copy(shared, folder / "reachable.json")
    t0 = time.perf_counter()
    outcome = run_benchmark(variant.spec(base), workers=workers, out_dir=folder,
                            emit=lambda line: print(f"[{variant.label}] {line}", flush=True),
                            command=command)
    if not shared.exists():
        shutil.copy(folder / "reachable.json", shared)
    print(f"[{variant.label}] {len(outcome.results)} cells in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return list(outcome.results)


def _readings_note(rd: dict[str, Any]) -> str:
    f, a = rd["base"], rd["other"]

    def pm(key: str) -> str:
        return f"{_fmt(rd[key], 3, '+')} ± {_fmt(rd[key.replace('_nm', '_se_nm')], 3)} nm"

    return (
        "Readings against the member's noise-free truth (measured - true PL over every told "
        f"reading): fixed {f['pl_error_mean_nm']:+.2f} ± {f['pl_error_sd_nm']:.2f} nm "
        f"(n {f['readings']}), adaptive {a['pl_error_mean_nm']:+.2f} ± "
        f"{a['pl_error_sd_nm']:.2f} nm (n {a['readings']}). Same conditions after the same "
        f"previous experiment (the {rd['identical_readings']} readings before the campaigns "
        f"diverge, at experiment {rd['diverged_at']}): adaptive - fixed "
        f"{pm('other_minus_base_nm')}; toward the previous steady state "
        f"{pm('toward_previous_far_nm')} after a jump of 30 nm or more "
        f"(n {rd['toward_previous_far_readings']}), {pm('toward_previous_near_nm')} after a "
        f"smaller one (n {rd['toward_previous_near_readings']}).")


def _notes(procedure: list[dict[str, Any]], parallel: list[dict[str, Any]]) -> tuple[str, ...]:
    notes = []
    if procedure:
        fixed, adaptive = procedure
        ratio = adaptive.get("paired_ratio_median")
        met = (ratio is not None and ratio <= 0.6
               and adaptive["found_rate"] >= fixed["found_rate"])
        notes.append(
            "Goal 1 (adaptive settling + short changeovers ≤ 0.6× the fixed-3τ lab hours to a "
            f"good hit, no worse found-rate): paired median ratio {_fmt(ratio)}, ratio of medians "
            f"{_fmt(adaptive.get('ratio_of_medians'))}; found-rate "
            f"{100 * adaptive['found_rate']:.0f} % vs {100 * fixed['found_rate']:.0f} %: "
            f"{'met' if met else 'NOT met'}.")
        pf = adaptive.get("paired_found")
        if pf is not None:
            lo, hi = pf["difference_ci95"]
            notes.append(
                f"Paired found-rate (same member, target and seed; {pf['cells']} cells): both "
                f"{pf['both']}, adaptive only {pf['only_other']}, fixed only {pf['only_base']}, "
                f"neither {pf['neither']}; exact McNemar two-sided p = "
                f"{pf['mcnemar_exact_p']:.2f}; adaptive - fixed = {100 * pf['difference']:+.1f} "
                f"points, 95 % CI {100 * lo:+.1f} to {100 * hi:+.1f} (Newcombe, paired).")
        rd = adaptive.get("readings")
        if rd is not None and all("pl_error_mean_nm" in rd[v] for v in ("base", "other")):
            notes.append(_readings_note(rd))
    if parallel:
        k1, k4 = parallel[0], parallel[-1]
        ratio = k4.get("paired_ratio_median")
        met = ratio is not None and ratio <= 0.35 and k4["found_rate"] >= k1["found_rate"]
        notes.append(
            f"Goal 2 (K = 4 ≤ 0.35× the wall-clock lab hours of K = 1 at the same found-rate): "
            f"paired median ratio {_fmt(ratio)}, ratio of medians "
            f"{_fmt(k4.get('ratio_of_medians'))}; found-rate {100 * k4['found_rate']:.0f} % vs "
            f"{100 * k1['found_rate']:.0f} %: {'met' if met else 'NOT met'}.")
    notes.append("Lab hours are the simulated rig's virtual clock (flush, heater ramps, settling, "
                 "acquisition) up to the delivery of the good hit; with K reactors the campaign's "
                 "wall-clock lab time (the latest reactor clock). Reactor hours per experiment "
                 "count every reactor's time. Paired ratios use the cells (member, target, seed) "
                 "both variants found.")
    return tuple(notes)


def with_seeds(base: BenchmarkSpec, count: int | None, offset: int) -> BenchmarkSpec:
    """The spec run on seeds ``offset .. offset + count - 1`` (``count``: the spec's own).

    An offset lets a later run add seeds to a record without repeating the earlier ones.

    Raises:
        ValueError: a negative offset or a count below 1.
    """
    if offset < 0:
        raise ValueError(f"--seed-offset must be >= 0, got {offset}")
    if count is not None and count < 1:
        raise ValueError(f"--seeds must be >= 1, got {count}")
    n = len(base.seed_list) if count is None else count
    if offset == 0 and count is None:
        return base
    seeds: int | tuple[int, ...] = n if offset == 0 else tuple(range(offset, offset + n))
    return base.model_copy(update={"seeds": seeds})


def main(argv: list[str] | None = None) -> int:
    """Run the variants, print the figures, record them."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "lab_hours.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (spec: 2)")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="first seed (seeds offset..offset+n-1), to extend a record")
    parser.add_argument("--only", choices=sorted(GROUPS), default=None)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4],
                        help="reactor counts of the parallel group (1 is its baseline)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmark-results" / "lab_hours")
    parser.add_argument("--from", dest="sources", type=Path, nargs="+", default=None,
                        help="run nothing: record the cells stored in these --out folders of "
                             "earlier runs (with --seeds covering all of them)")
    parser.add_argument("--record", type=Path, default=None,
                        help="write lab-hours.json here (benchmarks/results)")
    args = parser.parse_args(argv)
    base = with_seeds(load_spec(args.spec), args.seeds, args.seed_offset)
    command = " ".join([Path(sys.executable).name, *sys.argv])
    groups = [args.only] if args.only else list(GROUPS)
    GROUPS["parallel"] = tuple(v for v in (ADAPTIVE, K2, K4) if v.reactors in {1, *args.k})
    variants = list(dict.fromkeys(v for g in groups for v in GROUPS[g]))
    if args.sources:
        results = {v: load_cells(v, base, args.sources) for v in variants}
    else:
        results = {v: run_variant(v, base, args.out, args.workers, command) for v in variants}
    tables, data = [], {}
    for group in groups:
        ref = results[GROUPS[group][0]]
        rows = [summarize(v.label, results[v], None if i == 0 else ref, v.reactors)
                for i, v in enumerate(GROUPS[group])]
        if group == "procedure":
            rows[1]["paired_found"] = paired_found(
                {_key(r): r.found for r in ref},
                {_key(r): r.found for r in results[GROUPS[group][1]]})
            rows[1]["readings"] = reading_accuracy(ref, results[GROUPS[group][1]])
        data[group] = rows
        for r in rows:
            print(" | ".join(_row(r)))
        tables.append(Table(title={"procedure": "Procedure: adaptive settling and short "
                                                "changeovers vs fixed 3τ + always flush",
                                   "parallel": "Parallel reactors: K = 1, 2, 4"}[group],
                            columns=COLUMNS, rows=tuple(_row(r) for r in rows)))
    notes = _notes(data.get("procedure", []), data.get("parallel", []))
    if args.sources:
        notes += ("Recorded from the cells of earlier runs (nothing re-run): " + "; ".join(
            f"{r['folder']}: `{r['command']}` at commit {str(r['commit'])[:10]}"
            for r in source_runs(args.sources)) + ".",)
    for n in notes:
        print(n)
    if args.record is not None:
        # one group alone records under its own name, so the two groups' results (run at
        # different times) never overwrite each other
        name = "lab-hours" if len(groups) > 1 else f"lab-hours-{groups[0]}"
        title = {"procedure": "procedure", "parallel": "parallel reactors"}
        result = Result(
            name=name, title="Lab hours to a good hit: " + " and ".join(title[g] for g in groups),
            description=(f"{base.description} ({len(base.seed_list)} seeds, "
                         f"{min(base.seed_list)}..{max(base.seed_list)}), through the campaign "
                         "loop on the simulated rig (benchmarks/lab_hours.py)."),
            tables=tuple(tables), notes=notes,
            data={**data, "cells": {v.label: [r.row() for r in results[v]] for v in variants},
                  **({"sources": source_runs(args.sources)} if args.sources else {})},
            command=command)
        print(f"wrote {write_result(result, args.record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
