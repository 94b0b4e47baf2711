"""Optimizer benchmark on the digital twin: experiments until a good 550 nm emitter is found.

Problem: PL peak 550 ± 2 nm, maximize QY (objective: Target + Maximize(qy)); the six searched
conditions of ``campaigns/target_550nm.yaml`` (P:In fixed at 3.6, t_shell_c - t_core_c >= 40).
Success: the first experiment whose *noise-free* truth lies within tolerance with a QY of at least
90 % of the best QY the twin can reach within tolerance. That best QY comes from a dense search of
the noiseless twin (a Sobol grid of the box, then a local polish of the best candidates).

The problem, the dense search, the run loop and the strategies (autolab's BoTorch optimizer,
random, Sobol, and Optuna's GPSampler from the ``benchmark`` extra) live in
``autolab.benchmarking``, shared with ``autolab benchmark SPEC`` (many targets, Ray, MLflow);
this script is that benchmark for the one 550 nm target, plus ``ask(1)`` timings at n = 20, 50,
100 observations.

Run: ``.venv/bin/python benchmarks/optimizer.py [--seeds 10] [--budget 30] [--workers 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")

from autolab.benchmarking import (
    BenchmarkSpec,
    best_reachable_many,
    problems,
    run_benchmark,
)
from autolab.benchmarking.results import results_json, summary_markdown

TARGET_NM, TOL_NM, QY_FRACTION = 550.0, 2.0, 0.9


def make_spec(strategies: Sequence[str], seeds: int, budget: int) -> BenchmarkSpec:
    """The single-target spec this script runs."""
    return BenchmarkSpec.model_validate({
        "name": "optimizer-550nm", "strategies": list(strategies), "seeds": seeds,
        "targets": [{"pl_peak_nm": TARGET_NM, "tolerance_nm": TOL_NM}], "budget": budget,
        "success": {"qy_fraction": QY_FRACTION}})


def ask_timing(ns: Sequence[int] = (20, 50, 100), repeats: int = 5) -> dict[int, float]:
    """Median seconds of BoTorch ``ask(1)`` with ``n`` observations from the twin."""
    import torch

    from autolab.analysis import analyze
    from autolab.exceptions import ExperimentFailed
    from autolab.executors.simulated import SimulatedExecutor
    from autolab.optimizer import make_optimizer

    torch.set_num_threads(1)
    (problem,) = problems(make_spec(["random"], 1, 1))
    space, objective = problem.space, problem.objective()
    executor = SimulatedExecutor(seed=123)
    random_opt = make_optimizer("random", space, objective, seed=123)
    data: list[tuple[dict[str, float], dict[str, float] | None]] = []
    while len(data) < max(ns):
        (point,) = random_opt.ask(1)
        try:
            features = analyze(executor.run(problem.conditions(point)))
            outcomes = ({n: features.outcomes()[n] for n in objective.outcome_names}
                        if features.usable else None)
        except ExperimentFailed:
            outcomes = None
        random_opt.tell([point], [outcomes])
        data.append((point, outcomes))
    out = {}
    for n in ns:
        times = []
        for r in range(repeats):
            opt = make_optimizer("botorch", space, objective, seed=r)
            opt.tell([d[0] for d in data[:n]], [d[1] for d in data[:n]])
            t0 = time.perf_counter()
            opt.ask(1)
            times.append(time.perf_counter() - t0)
        out[n] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--strategies", default="botorch,random,sobol,optuna-gp")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    spec = make_spec(args.strategies.split(","), args.seeds, args.budget)
    t0 = time.perf_counter()
    reach = best_reachable_many(problems(spec), spec.dense_search.sobol_log2,
                                spec.dense_search.polish)[0]
    threshold = QY_FRACTION * reach.best_qy
    print(f"best noise-free QY within {TARGET_NM:g} ± {TOL_NM:g} nm: {reach.best_qy:.3f} at "
          + ", ".join(f"{k}={v:.4g}" for k, v in reach.conditions.items())
          + f"  (dense search {time.perf_counter() - t0:.0f} s); success needs QY >= "
            f"{threshold:.3f}")
    outcome = run_benchmark(spec, workers=args.workers)  # the campaign loop, as autolab benchmark
    print()
    print(summary_markdown(outcome))
    print(f"(experiments until success; a run that never succeeded counts as budget+1 = "
          f"{args.budget + 1}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())})")
    timing = {}
    if not args.no_timing:
        timing = ask_timing()
        print("\nBoTorch ask(1), median of 5, 1 torch thread: " + ", ".join(
            f"n={n}: {t:.2f} s" for n, t in timing.items()))
    if args.out:
        doc = json.loads(results_json(outcome))
        doc["ask_seconds"] = timing
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)


if __name__ == "__main__":
    main()
