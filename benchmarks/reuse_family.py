"""Earlier-campaign reuse on the reactor family: a second target on the same reactor.

Issue 8 §4: a new campaign can take the journals of earlier campaigns on the same reactor (550 nm
first, then 610 nm); goal: the second target's first in-band product within 3 experiments at the
median. For each design member of the spec (seed 0, 1, ...):

1. a first campaign at the first target (BoTorch defaults, the spec's budget; it stops at its
   good hit, as a chemist would), through the campaign loop of ``autolab benchmark``;
2. a second campaign at the second target with ``reuse: [<first campaign's folder>]``, budget
   ``--second-budget``, judged on the member's noise-free truth;
3. the same second campaign cold (no reuse), for comparison.

With ``--prior`` both second campaigns also take the nominal twin as prior mean (``prior: twin``),
so the reuse is measured on top of the prior. Reused experiments are never counted as the second
campaign's. Prints one row per member (with the true PL of each second campaign's first four
experiments, to see how it closes in on the band) and the medians, and records
``benchmarks/results/reuse-family[-prior].json`` with ``--record``.

Run: ``.venv/bin/python benchmarks/reuse_family.py [--spec benchmarks/family_quick.yaml]
[--first 550] [--second 610] [--second-budget 10] [--prior] [--record benchmarks/results]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from autolab.benchmarking.benchmark import make_jobs, reachable_all
from autolab.benchmarking.provenance import Result, Table, write_result
from autolab.benchmarking.runner import Job, _Judge
from autolab.benchmarking.spec import load_spec
from autolab.benchmarking.strategies import injected_optimizer
from autolab.campaign import Campaign
from autolab.tracking.base import NullTracker


def _run(job: Job, root: str, reuse: Sequence[Path] = ()) -> tuple[int | None, int | None,
                                                                      int, Path, str]:
    """Run one cell's campaign (optionally reusing earlier ones); keep its folder.

    Returns:
        (first in band, good hit, experiments, run folder, true PL of the first 4 experiments).
    """
    config = job.campaign_config().model_copy(update={"reuse": tuple(reuse)})
    # as autolab.benchmarking.runner.run_job builds a cell, plus ``reuse``
    executors = {spec.name: job.member.executor(seed=spec.seed, settling=job.settling,
                                                flush=job.flush)
                 for spec in config.reactor_specs()}
    optimizer = injected_optimizer(job.strategy.kind, job.problem.space,
                                   job.problem.objective(), job.seed)
    judge = _Judge(job, executors)
    campaign = Campaign.create(config, root, executor=dict(executors), tracker=NullTracker(),
                               optimizer=optimizer, on_trial=judge)
    campaign.run()
    band = next((s.experiment for s in judge.steps if s.in_band), None)
    trace = " ".join("fail" if s.failed else f"{s.true_pl_nm:.0f}" for s in judge.steps[:4])
    return band, judge.hit, len(judge.steps), campaign.run_dir, trace


def main(argv: Sequence[str] | None = None) -> None:
    """Run the reuse comparison on the spec's design members."""
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="benchmarks/family_quick.yaml")
    ap.add_argument("--first", type=float, default=550.0)
    ap.add_argument("--second", type=float, default=610.0)
    ap.add_argument("--second-budget", type=int, default=10)
    ap.add_argument("--out", default="benchmark-results/reuse-family")
    ap.add_argument("--prior", action="store_true",
                    help="second campaigns (reuse and cold) with the twin prior")
    ap.add_argument("--record", default=None)
    args = ap.parse_args(argv)
    spec = load_spec(args.spec)
    spec = spec.model_copy(update={
        "strategies": tuple(s for s in spec.strategies if s.kind == "botorch")[:1],
        "targets": tuple(t for t in spec.targets if t.pl_peak_nm in (args.first, args.second))})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs, _ = make_jobs(spec, reachable_all(spec, out, emit=print))
    rows, reused_band, cold_band = [], [], []
    for first in (j for j in jobs if j.problem.target_nm == args.first):
        second = next((j for j in jobs if j.problem.target_nm == args.second
                       and j.member.name == first.member.name and j.seed == first.seed), None)
        if second is None:
            continue
        second = replace(second, budget=args.second_budget)
        if args.prior:
            second = replace(second, strategy=second.strategy.model_copy(update={
                "settings": {**second.strategy.settings, "prior": "twin"}}))
        root = tempfile.mkdtemp(prefix="autolab-reuse-")
        try:
            _, h1, n1, run1, _ = _run(first, root)
            b2, h2, _, _, trace2 = _run(second, root, reuse=[run1])
            bc, hc, _, _, tracec = _run(second, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        miss = args.second_budget + 1
        reused_band.append(b2 or miss)
        cold_band.append(bc or miss)
        row = (first.member.name, first.seed, n1, h1 or "-", b2 or f">{args.second_budget}",
               h2 or "-", trace2, bc or f">{args.second_budget}", hc or "-", tracec)
        rows.append(row)
        print(" | ".join(str(v) for v in row), flush=True)
    note = (f"second target {args.second:g} nm{' (twin prior)' if args.prior else ''}, first "
            "in band: median "
            f"{statistics.median(reused_band):g} with reuse vs {statistics.median(cold_band):g} "
            f"cold (misses count as {args.second_budget + 1}), {len(rows)} members")
    print(note)
    if args.record:
        table = Table(title="reuse", columns=(
            "member", "seed", f"first campaign ({args.first:g} nm) experiments",
            "its good hit", f"{args.second:g} nm first in band, reuse", "good hit, reuse",
            "true PL nm of the first 4, reuse", f"{args.second:g} nm first in band, cold",
            "good hit, cold", "true PL nm of the first 4, cold"), rows=tuple(rows))
        name = "reuse-family-prior" if args.prior else "reuse-family"
        result = Result(name=name, title="Earlier-campaign reuse on the family"
                        + (", with the twin prior" if args.prior else ""),
                        description=f"{args.spec}: {args.first:g} nm then {args.second:g} nm on "
                                    "the same reactor (benchmarks/reuse_family.py)",
                        tables=(table,), notes=(note,),
                        data={"reuse_first_in_band": reused_band, "cold_first_in_band": cold_band})
        print(f"wrote {write_result(result, args.record)}")


if __name__ == "__main__":
    main()
