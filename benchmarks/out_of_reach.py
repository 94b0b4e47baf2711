"""Does ``stop.forecast_reach_below`` end campaigns aimed at bands out of reach, and only those?

A band the reactor cannot reach makes a campaign spend its whole budget edging towards it. The
rule (``autolab.campaign.Campaign.out_of_reach``) stops when no experiment was measured in band
and, for K forecasts in a row after the initial design, the model gives no condition more than a
threshold chance of landing in band (``p_in_band``). This script judges thresholds and K on
family cells through the campaign loop:

* **reachable** cells: the BoTorch cells of a finished ``autolab benchmark`` run (``--reached``;
  every member x target whose band the dense search reaches). A rule that would have fired
  before the cell's first measured in-band product is a *false stop* (the campaign would have
  ended on a band it could reach).
* **out-of-reach and edge** cells, run here (``--targets``, e.g. 625 and 680 nm: 680 nm is beyond
  every member, 625 nm beyond some and just inside others): every member of the spec's family,
  one seed, the spec's BoTorch strategy, ``--budget`` experiments, no stop at a hit. For those
  the dense search says whether the band is reachable; an unreachable one should stop, and soon.

Cells are replayed from their journaled per-step forecasts, so one run judges every threshold.
Cells recorded before the forecast carried ``p_in_band`` and ``design_done`` read ``p_improve``
(the same number while nothing is in band) and "after the design" as experiment >= the
strategy's ``n_init`` (the BoTorch default for the 6 searched inputs: 6).

Run (design set, then once on the held-out set with the same settings)::

    autolab benchmark benchmarks/family.yaml --workers 2 --out benchmark-results/family
    python benchmarks/out_of_reach.py --spec benchmarks/family.yaml \\
        --reached benchmark-results/family/cells --targets 625,680 --budget 20 --workers 2 \\
        --out benchmark-results/out-of-reach-design [--record benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Iterator, Sequence
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

#: Thresholds and K judged (the shipped campaigns set 0.002 and 3).
THRESHOLDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)
RUNS = (1, 2, 3)
SHIPPED = (0.002, 3)
#: "After the design" for cells recorded without ``design_done``.
N_INIT = 6


def _cells(folder: Path) -> Iterator[dict[str, Any]]:
    """Cell results (benchmark cell files or this script's own) with BoTorch steps."""
    for path in sorted(folder.glob("*.json")):
        if path.name == "reachable.json":
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        result = doc.get("result", doc)
        if result.get("kind") == "botorch":
            yield result


def _in_band(step: dict[str, Any], cell: dict[str, Any]) -> bool:
    pl = step.get("measured_pl_nm")
    return (pl is not None and not math.isnan(pl)
            and abs(pl - cell["target_nm"]) <= cell["tolerance_nm"])


def before_band(cell: dict[str, Any]) -> list[tuple[float | None, bool]]:
    """``(p_in_band, after the design)`` after each experiment until one is measured in band."""
    out: list[tuple[float | None, bool]] = []
    for step in cell["steps"]:
        if _in_band(step, cell):
            break
        fc = step.get("forecast")
        if fc is None:
            out.append((None, False))
            continue
        p = fc.get("p_in_band", fc.get("p_improve"))
        out.append((p, bool(fc.get("design_done", step["experiment"] >= N_INIT))))
    return out


def stops_at(seq: Sequence[tuple[float | None, bool]], threshold: float, k: int) -> int | None:
    """Experiments run when the rule would stop (1-based), or ``None``."""
    run = 0
    for i, (p, done) in enumerate(seq):
        run = run + 1 if p is not None and done and p < threshold else 0
        if run >= k:
            return i + 1
    return None


def judge(reached: list[dict[str, Any]], edge: list[dict[str, Any]],
          ) -> list[tuple[float, int, list[str], int, int, float | None]]:
    """Per (threshold, K): false stops, unreachable cells stopped, their median stop."""
    reach = [(c, before_band(c)) for c in [*reached, *edge] if c["best_reachable_qy"] > 0]
    beyond = [before_band(c) for c in edge if c["best_reachable_qy"] <= 0]
    rows = []
    for thr in THRESHOLDS:
        for k in RUNS:
            false = [f"{c['member']} {c['target_nm']:g} nm s{c['seed']} (stop {n}, in band "
                     f"{c['experiments_to_in_band']})"
                     for c, seq in reach if (n := stops_at(seq, thr, k)) is not None]
            stopped = [n for seq in beyond if (n := stops_at(seq, thr, k)) is not None]
            rows.append((thr, k, false, len(stopped), len(beyond),
                         statistics.median(stopped) if stopped else None))
    return rows


def _run_cell(job: Any, out: Path) -> str:
    """Run one cell unless ``out`` holds it already (a rerun runs only what is missing)."""
    from autolab.benchmarking.runner import run_job

    path = out / f"{job.cell_id}.json"
    if not path.exists():
        path.write_text(json.dumps(run_job(job).to_dict()), encoding="utf-8")
    return str(job.cell_id)


def run_edge_cells(spec_path: Path, targets: Sequence[float], budget: int, out: Path,
                   workers: int) -> None:
    """Run the out-of-reach and edge cells that ``out`` does not hold yet."""
    from autolab.benchmarking import parse_spec
    from autolab.benchmarking.benchmark import problems, reachable_all
    from autolab.benchmarking.runner import Job

    raw = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    raw.update(name=f"{raw['name']}-out-of-reach", budget=budget, seeds=1,
               strategies=[s for s in raw["strategies"]
                           if (s if isinstance(s, str) else s["kind"]) == "botorch"],
               targets=[{"pl_peak_nm": t, "tolerance_nm": 2} for t in targets])
    spec = parse_spec(raw)
    out.mkdir(parents=True, exist_ok=True)
    reach = reachable_all(spec, out, emit=print)
    jobs = []
    for strategy in spec.strategies:
        for member in spec.members():
            for problem, r in zip(problems(spec, member), reach[member.name], strict=True):
                jobs += [Job(strategy=strategy, seed=seed, problem=problem, space=spec.space,
                             budget=spec.budget,
                             threshold_qy=0.9 * r.best_qy if r.best_qy > 0 else math.inf,
                             best_reachable_qy=r.best_qy)
                         for seed in spec.seed_list]
    with get_context("spawn").Pool(workers) as pool:
        for cell in pool.imap_unordered(partial(_run_cell, out=out), jobs):
            print("done", cell, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the edge cells, judge every threshold and K, print (and record) the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, required=True, help="benchmark spec (the family)")
    ap.add_argument("--reached", type=Path, action="append", default=[],
                    help="cells/ folder of a finished benchmark of that family (repeatable)")
    ap.add_argument("--targets", default="625,680", help="edge and out-of-reach targets, nm")
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True, help="folder of the edge cells")
    ap.add_argument("--record", default=None, help="write <name>.json here")
    ap.add_argument("--name", default="out-of-reach")
    args = ap.parse_args(argv)
    run_edge_cells(args.spec, [float(t) for t in args.targets.split(",")], args.budget,
                   args.out, args.workers)
    reached = [c for folder in args.reached for c in _cells(folder)]
    edge = list(_cells(args.out))
    rows = judge(reached, edge)
    n_reach = len(reached) + sum(c["best_reachable_qy"] > 0 for c in edge)
    table = [(thr, k, f"{len(false)}/{n_reach}", f"{n}/{total}",
              "-" if med is None else f"{med:g}", "; ".join(false[:3]))
             for thr, k, false, n, total, med in rows]
    print("threshold  K  false stops  out of reach stopped  median stop  first false stops")
    for row in table:
        print(f"{row[0]:<9}  {row[1]}  {row[2]:<11}  {row[3]:<20}  {row[4]:<11}  {row[5]}")
    if args.record:
        from autolab.benchmarking.provenance import Result, Table, write_result

        result = Result(
            name=args.name, title=f"Target out of reach: the stop rule on {args.spec.stem}",
            description=(f"{args.spec}: {n_reach} cells whose band is reachable ("
                         f"{', '.join(map(str, args.reached))} and the reachable edge cells) "
                         f"and the cells whose band is not, targets {args.targets} nm, budget "
                         f"{args.budget} (benchmarks/out_of_reach.py); shipped setting "
                         f"{SHIPPED[0]} x {SHIPPED[1]}"),
            tables=(Table(title="stop.forecast_reach_below x forecast_reach_after", columns=(
                "threshold", "K", "false stops", "out of reach stopped", "median stop",
                "first false stops"), rows=tuple(table)),))
        print(f"wrote {write_result(result, args.record)}")


if __name__ == "__main__":
    main()
