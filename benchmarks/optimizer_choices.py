"""Optimizer choices on the design set: each candidate against the defaults of the same run.

Reads the finished cells of one or more ``autolab benchmark benchmarks/family_choices.yaml``
outputs (``<out>/cells/*.json``) and prints, per run and strategy, the share of cells with a good
hit, the median (IQR) experiments to a good hit and to the first in-band product (a miss counts
as budget + 1), and the paired difference against the run's ``botorch`` (defaults) on the cells
both finished. With ``--record`` it writes ``optimizer-choices.json``.

Run: ``.venv/bin/python benchmarks/optimizer_choices.py benchmark-results/opt-choices
benchmark-results/opt-choices-r3 [--record benchmarks/results]``
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autolab.benchmarking.provenance import Result, Table, write_result

BASELINE = "botorch"


def _cells(out: str) -> dict[str, dict[tuple[str, float, int], dict[str, Any]]]:
    by: dict[str, dict[tuple[str, float, int], dict[str, Any]]] = defaultdict(dict)
    for path in sorted(Path(out, "cells").glob("*.json")):
        r = json.loads(path.read_text())["result"]
        by[r["strategy"]][(r["member"], r["target_nm"], int(r["seed"]))] = r
    return by


def _count(r: dict[str, Any], key: str) -> int:
    v = r[key]
    return int(v) if v is not None else int(r["budget"]) + 1


def _iqr(xs: list[int]) -> str:
    if len(xs) < 2:
        return f"{xs[0]}" if xs else "-"
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return f"{statistics.median(xs):g} ({q[0]:g}-{q[2]:g})"


def rows_for(out: str) -> list[tuple[Any, ...]]:
    """One row per strategy of one benchmark output."""
    by = _cells(out)
    base = by.get(BASELINE, {})
    rows = []
    for name in sorted(by, key=lambda s: (s != BASELINE, s)):
        cells = by[name]
        hits = [_count(r, "experiments_to_success") for r in cells.values()]
        band = [_count(r, "experiments_to_in_band") for r in cells.values()]
        found = sum(r["experiments_to_success"] is not None for r in cells.values())
        shared = [k for k in cells if k in base]
        diff = ([_count(cells[k], "experiments_to_success")
                 - _count(base[k], "experiments_to_success") for k in shared]
                if name != BASELINE else [])
        rows.append((Path(out).name, name, len(cells), f"{found}/{len(cells)}", _iqr(hits),
                     _iqr(band),
                     f"{statistics.median(diff):+g} on {len(diff)}" if diff else "-"))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Print (and optionally record) the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--record", default=None)
    ap.add_argument("--note", action="append", default=[], help="a paragraph for the record")
    args = ap.parse_args(argv)
    rows = [row for d in args.dirs for row in rows_for(d)]
    columns = ("run", "strategy", "cells", "good hit found", "exp. to good hit, median (IQR)",
               "first in band, median (IQR)", "paired vs defaults (good hit, median)")
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(v) for v in row))
    if args.record:
        result = Result(name="optimizer-choices", title="Optimizer choices (design set)",
                        description="BoTorch settings against the defaults of the same run on "
                                    "the design cells of family_quick.yaml "
                                    "(benchmarks/family_choices.yaml, "
                                    "benchmarks/optimizer_choices.py)",
                        tables=(Table(title="choices", columns=columns, rows=tuple(rows)),),
                        notes=tuple(args.note))
        print(f"wrote {write_result(result, args.record)}")


if __name__ == "__main__":
    main()
