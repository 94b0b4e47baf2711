"""Time ``BotorchOptimizer.ask(1)`` at 20, 50 and 100 observations.

Problem: the 6-D InP/ZnS space (with its ``t_shell_c - t_core_c >= 40`` constraint), three
outcomes and the "550 nm ± 2, bright, narrow" target objective; synthetic smooth outcomes with a
little noise. Each ask refits every GP from scratch, exactly as in a campaign. Reports wall and CPU
(process) time; the CPU time is the one to trust on a busy machine.

Usage::

    .venv/bin/python benchmarks/ask_timing.py [--repeats 5] [--threads 1] [--n 20 50 100]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from autolab.objective import qd_objective
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.design import random_design
from autolab.space import qd_space


def outcomes(u: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    peak = 520 + 80 * u[0] + 20 * math.sin(3 * u[4]) + 5 * u[1]
    qy = 0.4 * math.exp(-4 * ((u[2] - 0.6) ** 2 + (u[5] - 0.3) ** 2))
    fwhm = 50 + 10 * (u[3] - 0.5) ** 2 + 5 * u[1]
    noise = rng.normal(size=3)
    return {"pl_peak_nm": peak + 0.5 * noise[0], "qy": qy + 0.01 * noise[1],
            "fwhm_nm": fwhm + 0.5 * noise[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--no-record", action="store_true",
                        help="do not write benchmarks/results/ask-timing.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    space, objective = qd_space(), qd_objective(550.0, 2.0)
    print(f"torch threads: {torch.get_num_threads()}, device: cpu, dim {space.dim}, 3 outcomes")
    rows = []
    for n in args.n:
        rng = np.random.default_rng(n)
        u = random_design(space, n, n)
        opt = BotorchOptimizer(space, objective, seed=0, device="cpu")
        opt.tell(space.from_unit(u), [outcomes(row, rng) for row in u])
        opt.ask(1)  # warm-up (imports, first-call overheads)
        times, cpu = [], []
        for r in range(args.repeats):
            opt.seed = r + 1  # a different (but deterministic) proposal each repeat
            t0, c0 = time.perf_counter(), time.process_time()
            opt.ask(1)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        print(f"n={n:4d}: median ask(1) {statistics.median(times):.2f} s wall, "
              f"{statistics.median(cpu):.2f} s CPU "
              f"(wall min {min(times):.2f}, max {max(times):.2f}, {args.repeats} repeats)")
        rows.append((n, f"{statistics.median(times):.2f}", f"{statistics.median(cpu):.2f}",
                     f"{min(times):.2f}-{max(times):.2f}"))
    if not args.no_record:
        from autolab.benchmarking.provenance import Result, Table, write_result

        result = Result(
            name="ask-timing", title="Optimizer: ask(1) time",
            description=(f"BotorchOptimizer.ask(1) on the 6-D twin space with 3 outcomes after n "
                         f"random observations, median of {args.repeats} repeats after a warm-up, "
                         f"torch threads {torch.get_num_threads()}, CPU. Goal: <= 1 s at n = 50."),
            tables=(Table("ask(1)", ("n", "median s (wall)", "median s (CPU)", "wall range s"),
                          tuple(rows)),))
        print(f"wrote {write_result(result)}")


if __name__ == "__main__":
    main()
