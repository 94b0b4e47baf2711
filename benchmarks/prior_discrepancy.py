"""The twin prior's yardstick: how far the family's reactors stray from the nominal twin.

For each design member (twin kind: the yardstick; rff and additive: reactors not built from the
twin, for comparison) the discrepancy ``member - twin`` of PL, FWHM and QY over a Sobol sample
of the box, split into its constant offset and the sd around it, then the root mean square of
the sds per kind. ``autolab.prior.TWIN_DISCREPANCY_SD`` states the twin kind's figures::

    .venv/bin/python benchmarks/prior_discrepancy.py --per-kind 8
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import qmc

from autolab.benchmarking.discrepancy import OUTCOMES, discrepancy_spread, rms_sd
from autolab.benchmarking.family import MEMBER_KINDS, family
from autolab.benchmarking.problem import feasible_rows
from autolab.space import qd_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=8)
    parser.add_argument("--points-log2", type=int, default=11)
    args = parser.parse_args()
    space = qd_space()
    unit = qmc.Sobol(d=space.dim, seed=0).random_base2(args.points_log2)
    x = np.array([[p[n] for n in space.names] for p in space.from_unit(unit)])
    x = x[feasible_rows(space, x)]
    for kind in MEMBER_KINDS:
        spreads = discrepancy_spread(family([kind], per_kind=args.per_kind), x, space.names,
                                     {"p_to_in": 3.6})
        for s in spreads:
            print(s.name, " ".join(f"{k} offset {s.offset[k]:+.3g} sd {s.sd[k]:.3g}"
                                   for k in OUTCOMES))
        offsets = {k: float(np.sqrt(np.mean([s.offset[k] ** 2 for s in spreads])))
                   for k in OUTCOMES}
        print(f"{kind}: rms sd around the offset", {k: round(v, 3) for k, v in
                                                    rms_sd(spreads).items()},
              "rms offset", {k: round(v, 3) for k, v in offsets.items()})


if __name__ == "__main__":
    main()
