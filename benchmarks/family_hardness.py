"""How hard a good hit is: the share of the box that is in band, and of that, bright enough.

Issue 8's goal is a good hit (noise-free PL in target ± 2 nm, QY >= 90 % of the best reachable
in that band) in a median of 10 experiments. What that asks of a search depends on how small the
good region is. For every member × target of the given benchmark specs this measures, on a
scrambled Sobol grid of the box (feasible points that do not usually fail): the share that is in
band, the share of the band that is a good hit, and the share of the box that is a good hit,
whose inverse is what a uniform random search needs on average. Writes
``benchmarks/results/family-hardness.json`` with ``--record``::

    .venv/bin/python benchmarks/family_hardness.py benchmarks/family.yaml \
        benchmarks/family_heldout.yaml benchmarks/custom_reactor.yaml --record benchmarks/results
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy.stats import qmc

from autolab.benchmarking.benchmark import problems
from autolab.benchmarking.problem import best_reachable_many, feasible_rows, truth
from autolab.benchmarking.provenance import Result, Table, write_result
from autolab.benchmarking.spec import BenchmarkSpec, load_spec


def _grid(spec: BenchmarkSpec, log2: int) -> np.ndarray:
    space = spec.space.build()
    unit = qmc.Sobol(d=space.dim, seed=1).random_base2(log2)
    x = np.array([[p[n] for n in space.names] for p in space.from_unit(unit)])
    return x[feasible_rows(space, x)]


def member_rows(spec: BenchmarkSpec, log2: int) -> list[tuple[str, str, float, float, float,
                                                              float, float]]:
    """(member, kind, target, band %, good % of band, good ppm of box, best QY) per cell."""
    space = spec.space.build()
    x = _grid(spec, log2)
    out = []
    for member in spec.members():
        probs = problems(spec, member)
        reach = best_reachable_many(probs, sobol_log2=spec.dense_search.sobol_log2,
                                    polish=spec.dense_search.polish)
        pl, qy = truth(x, space.names, dict(spec.space.fixed), member)
        for problem, r in zip(probs, reach, strict=True):
            if r.best_qy <= 0:
                continue  # unreachable band: the benchmark excludes it too
            band = problem.in_band(pl) & np.isfinite(qy)
            good = band & (qy >= spec.success.qy_fraction * r.best_qy)
            out.append((member.name, member.label or member.kind, problem.target_nm,
                        100 * band.mean(), 100 * good.sum() / max(band.sum(), 1),
                        1e6 * good.mean(), r.best_qy))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Print (and optionally record) the hardness of every member × target."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--grid-log2", type=int, default=16)
    ap.add_argument("--record", default=None, help="results folder to write the record to")
    args = ap.parse_args(argv)
    rows: list[tuple[str, ...]] = []
    by_kind: dict[tuple[str, str], list[float]] = defaultdict(list)
    for path in args.specs:
        spec = load_spec(path)
        for name, kind, target, band, good_of_band, ppm, best in member_rows(spec,
                                                                              args.grid_log2):
            rows.append((spec.name, name, f"{target:g}", f"{band:.2f}", f"{good_of_band:.2f}",
                         f"{ppm:.0f}", f"{1e6 / ppm:.0f}" if ppm > 0 else "> grid",
                         f"{best:.2f}"))
            by_kind[(spec.name, kind)].append(ppm)
            print(" | ".join(rows[-1]), flush=True)
    summary = tuple((s, k, len(v), f"{statistics.median(v):.0f}",
                     f"{min(v):.0f}-{max(v):.0f}",
                     f"{1e6 / statistics.median(v):.0f}" if statistics.median(v) > 0 else "-")
                    for (s, k), v in by_kind.items())
    for row in summary:
        print(" | ".join(str(c) for c in row))
    if args.record:
        cells = Table(title="member × target", columns=(
            "spec", "member", "target nm", "in band, % of box", "good hit, % of band",
            "good hit, ppm of box", "random search, mean experiments", "best QY in band"),
            rows=tuple(rows))
        kinds = Table(title="by kind", columns=(
            "spec", "kind", "cells", "good hit ppm of box, median", "range",
            "random search at the median, experiments"), rows=summary)
        result = Result(
            name="family-hardness", title="Reactor family: how small the good region is",
            description=("Share of the box in band and of the band bright enough (QY >= "
                         "qy_fraction x best reachable), on a Sobol grid of 2^"
                         f"{args.grid_log2} points (feasible, not usually failing); "
                         "benchmarks/family_hardness.py"),
            tables=(kinds, cells))
        print(f"wrote {write_result(result, args.record)}")


if __name__ == "__main__":
    main()
