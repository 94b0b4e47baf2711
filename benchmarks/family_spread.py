"""How wide the reactor family is: PL at the nominal 550-nm conditions and where the best QY lies.

For every member of the design and held-out sets (and the calibrated twin): the noise-free PL and
QY at the twin's 550-nm seed-paper conditions, the PL range over the box, the best QY over the box
and its position (unit cube), and the share of the box that fails. Writes
``benchmarks/results/family-spread.json`` (rendered into BENCHMARKS.md by
``scripts/benchmarks_md.py``)::

    .venv/bin/python benchmarks/family_spread.py --per-kind 3
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import qmc

from autolab.benchmarking.family import (
    MEMBER_KINDS,
    NOMINAL_550,
    family,
    member_spread,
    nominal_member,
)
from autolab.benchmarking.problem import feasible_rows
from autolab.benchmarking.provenance import Result, Table, write_result
from autolab.space import qd_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=3)
    parser.add_argument("--points-log2", type=int, default=13)
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args()
    space = qd_space()
    unit = qmc.Sobol(d=space.dim, seed=0).random_base2(args.points_log2)
    x = np.array([[p[n] for n in space.names] for p in space.from_unit(unit)])
    keep = feasible_rows(space, x)
    unit, x = unit[keep], x[keep]
    members = [nominal_member(), *family(per_kind=args.per_kind),
               *family(per_kind=args.per_kind, split="heldout")]
    spreads = [member_spread(m, unit, x, space.names, {"p_to_in": 3.6}) for m in members]
    rows = tuple((s.name, m.split,
                  f"{s.pl_at_nominal_550_nm:.1f}", f"{s.qy_at_nominal_550:.2f}",
                  f"{s.pl_range_nm[0]:.0f}-{s.pl_range_nm[1]:.0f}", f"{s.best_qy:.2f}",
                  "(" + ", ".join(f"{v:.2f}" for v in s.best_qy_unit) + ")",
                  f"{100 * s.fail_share:.0f} %")
                 for m, s in zip(members, spreads, strict=True))
    pls = np.array([s.pl_at_nominal_550_nm for s in spreads[1:]])
    best_u = np.array([s.best_qy_unit for s in spreads[1:]])
    nominal = ", ".join(f"{k} {v:g}" for k, v in NOMINAL_550.items())
    notes = (f"PL at the nominal 550-nm conditions ({nominal}) across the {len(pls)} members: "
             f"{pls.min():.0f}-{pls.max():.0f} nm (sd "
             f"{pls.std():.0f} nm). The best-QY point spans, per searched condition "
             f"({', '.join(space.names)}), unit-cube ranges "
             + ", ".join(f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(best_u.min(0), best_u.max(0),
                                                                strict=True))
             + f". Kinds: {', '.join(MEMBER_KINDS)}; {len(x)} feasible Sobol points of the box.",)
    table = Table(title="members", columns=(
        "member", "set", "PL at nominal 550 nm", "QY there", "PL p1-p99 over the box, nm",
        "best QY", "best-QY point (unit cube: " + ", ".join(space.names) + ")", "box failing"),
        rows=rows)
    result = Result(name="family-spread", title="Reactor family: how wide it is",
                    description="The spread of the family's members (benchmarks/family_spread.py)",
                    tables=(table,), notes=notes,
                    data={"members": [vars(s) for s in spreads]})
    print(notes[0])
    for row in rows:
        print(" | ".join(row))
    print(f"wrote {write_result(result, args.results_dir)}")


if __name__ == "__main__":
    main()
