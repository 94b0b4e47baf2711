"""Count how the acquisition optimizer's L-BFGS-B restarts end, over replayed asks on the twin.

Issue 8 asked why many asks ended with "ABNORMAL" line searches. This script records the data
states of three BoTorch campaigns on the nominal twin (550, 610 and 530 nm, 20 experiments each,
states at 8, 10, ..., 20 experiments), replays one ``ask(1)`` per state and counts the
``scipy.optimize`` termination messages of every restart (ABNORMAL, convergence, iteration cap).
The cause and the fix are in ``autolab/optimizer/acquisition.py``'s module docstring.

Run: ``.venv/bin/python benchmarks/acq_linesearch.py [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
import warnings
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

#: Campaigns whose states are replayed: (target nm, seed).
CAMPAIGNS = ((550.0, 0), (610.0, 1), (530.0, 2))
#: Experiments after which a state is kept.
CHECKPOINTS = (8, 10, 12, 14, 16, 18, 20)


def record_states() -> list[dict[str, Any]]:
    """Optimizer states of BoTorch campaigns on the nominal twin (see module docs)."""
    from autolab.analysis import analyze
    from autolab.exceptions import ExperimentFailed
    from autolab.executors.simulated import SimulatedExecutor
    from autolab.objective import Maximize, ObjectiveSpec, Target
    from autolab.optimizer import BotorchOptimizer
    from autolab.records import Conditions
    from autolab.space import qd_space

    space = qd_space()
    states = []
    for target, seed in CAMPAIGNS:
        obj = ObjectiveSpec(terms=(Target(outcome="pl_peak_nm", value=target, tolerance=2.0),
                                   Maximize(outcome="qy", scale=0.1)))
        executor = SimulatedExecutor(seed=seed)
        opt = BotorchOptimizer(space, obj, seed=seed, device="cpu")
        for k in range(1, max(CHECKPOINTS) + 1):
            (point,) = opt.ask(1)
            try:
                features = analyze(executor.run(Conditions.from_mapping(point)))
                out = ({n: features.outcomes()[n] for n in obj.outcome_names}
                       if features.usable else None)
            except ExperimentFailed:
                out = None
            opt.tell([point], [out])
            if k in CHECKPOINTS:
                states.append(opt.state_dict())
    return states


def count_terminations(states: list[dict[str, Any]]) -> dict[str, int]:
    """Replay one ask per state; scipy termination message (first word) -> count."""
    from botorch.generation import gen

    from autolab.optimizer import BotorchOptimizer

    counts: collections.Counter[str] = collections.Counter()
    original = gen._process_scipy_result

    def spy(res: Any, options: dict[str, Any]) -> None:
        counts[str(res.message).split(":")[0]] += 1
        original(res, options)

    gen._process_scipy_result = spy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for state in states:
                BotorchOptimizer.from_state(state).ask(1)
    finally:
        gen._process_scipy_result = original
    return dict(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the counts as JSON here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    states = record_states()
    t1 = time.perf_counter()
    counts = count_terminations(states)
    t2 = time.perf_counter()
    total = sum(counts.values())
    print(f"{len(states)} asks replayed, {total} L-BFGS-B restarts: " + ", ".join(
        f"{k}: {v}" for k, v in sorted(counts.items())))
    print(f"(recording {t1 - t0:.0f} s, replay {t2 - t1:.0f} s wall)")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"asks": len(states), "restarts": total, "terminations": counts,
                       "replay_s": t2 - t1}, fh, indent=1)


if __name__ == "__main__":
    main()
