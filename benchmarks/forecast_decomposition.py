"""Why are the forecast's own probabilities of a good hit so high? A decomposition on the family.

``p_next_model`` (the largest probability over the forecast's candidates that one experiment is
a good hit) averaged ~0.45 on the family where 4-5 % of the next experiments were good hits.
This script separates the causes on design members with the default optimizer, in a lean
ask/tell loop on each member's noise-free truth plus read noise (like ``model_check.py``'s
trajectories; stops at the first good hit). After every tell it records:

* ``p_next_model`` and the model's "good" QY threshold (the median over posterior draws of 0.9 x
  the draw's best QY in band), as the campaign's forecast has them;
* ``p_next`` with the *true* threshold (0.9 x the member's best reachable QY in band, which only
  a benchmark knows), still the maximum over candidates;
* at the point the optimizer actually proposes next: the posterior probability of the band, and
  of a good hit with the model's and with the true threshold, and the QY mean and sd;

and then the truth of that next experiment. Comparing the means says how much of the gap comes
from the threshold, from taking a maximum over candidates, and from the posterior itself.

    PYTHONPATH=. .venv/bin/python benchmarks/forecast_decomposition.py benchmarks/family.yaml \\
        --targets 550 610 --out benchmark-results/forecast-decomposition
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autolab.benchmarking.benchmark import problems
from autolab.benchmarking.problem import best_reachable_many
from autolab.benchmarking.spec import load_spec
from autolab.objective import ObjectiveSpec
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.acquisition import log_p_band
from autolab.optimizer.forecast import log_good


def _at_proposal(opt: BotorchOptimizer, obj: ObjectiveSpec, x: dict[str, float],
                 thresholds: tuple[float, float]) -> dict[str, float]:
    """Posterior band and good-hit probabilities at the proposal ``x`` (model thr, true thr)."""
    model, _, _, _ = opt._fit(0)  # the fit the ask just used (reused, not refitted)
    X = torch.tensor(opt.space.to_unit([x]), dtype=torch.float64)
    m = len(obj.outcome_names)
    with torch.no_grad():
        post = model.posterior(X)
        mean, sd = post.mean[..., :m], post.variance[..., :m].clamp_min(0).sqrt()
    k = obj.outcome_names.index("qy")
    return {"p_band_at_x": float(log_p_band(obj, mean, sd.clamp_min(1e-6)).exp()[0]),
            "p_model_thr_at_x": float(log_good(obj, mean, sd, {"qy": thresholds[0]}).exp()[0]),
            "p_true_thr_at_x": float(log_good(obj, mean, sd, {"qy": thresholds[1]}).exp()[0]),
            "qy_mean_at_x": float(mean[0, k]), "qy_sd_at_x": float(sd[0, k])}


def run_cell(spec_path: str, member_name: str, target_nm: float, best_qy: float,
             budget: int) -> dict[str, Any]:
    """One member x target, seed 0: the per-step records (module docs)."""
    spec = load_spec(spec_path)
    member = next(m for m in spec.members() if m.name == member_name)
    prob = next(p for p in problems(spec, member) if p.target_nm == target_nm)
    space = spec.space.build()
    obj = prob.objective()
    opt = BotorchOptimizer(space, obj, seed=0, device="cpu")
    rng = np.random.default_rng([0, int(target_nm), 7])
    thr = 0.9 * best_qy
    rows: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    cpu0 = time.process_time()
    for _ in range(budget):
        [x] = opt.ask(1)
        if pending is not None:
            pending.update(_at_proposal(opt, obj, x, (pending["model_thr"], thr)))
        truth = member.truth_points(np.array([[x[n] for n in space.names]]), space.names,
                                    prob.fixed)
        pl, qy = float(truth.pl_peak_nm[0]), float(truth.qy[0])
        in_band = bool(np.isfinite(pl) and abs(pl - target_nm) <= prob.tolerance_nm)
        good = in_band and qy >= thr
        if pending is not None:
            rows.append({**pending, "next_in_band": in_band, "next_good": good, "next_true_qy": qy})
            pending = None
        _tell(opt, member, x, (pl, qy, float(truth.p_fail[0])), rng)
        if good:
            break
        fc, fc_true = opt.forecast(), opt.forecast(thresholds={"qy": thr})
        if fc is not None and fc_true is not None:
            pending = {"experiment": len(opt.observations), "p_next_model": fc.p_next_model,
                       "model_thr": fc.thresholds.get("qy"), "true_thr": thr,
                       "p_next_true_thr": fc_true.p_next}
    return {"member": member_name, "target_nm": target_nm, "rows": rows,
            "cpu_s": time.process_time() - cpu0}


def _tell(opt: BotorchOptimizer, member: Any, x: dict[str, float],
          truth: tuple[float, float, float], rng: np.random.Generator) -> None:
    """Tell a reading: a failure with the member's odds, else truth plus read noise."""
    pl, qy, p_fail = truth
    if rng.random() < p_fail or not np.isfinite(pl):
        opt.tell([x], [None])
        return
    rel = member.twin.noise.qy_readout_rel
    measured = {"pl_peak_nm": pl + rng.normal(), "qy": max(qy * (1 + rel * rng.normal()), 0.0)}
    opt.tell([x], [measured], [{"pl_peak_nm": 1.0, "qy": max(rel * measured["qy"], 1e-3)}])


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean predicted against observed, per cause (module docs)."""
    def mean(key: str) -> float:
        return statistics.fmean(float(r[key]) for r in rows)

    in_band = [r for r in rows if r["next_in_band"]]
    ratios = [r["model_thr"] / r["true_thr"] for r in rows if r["model_thr"] == r["model_thr"]]
    z = [(r["next_true_qy"] - r["qy_mean_at_x"]) / r["qy_sd_at_x"] for r in in_band]
    return {"steps": float(len(rows)), "observed_good": mean("next_good"),
            "observed_in_band": mean("next_in_band"), "p_next_model": mean("p_next_model"),
            "p_next_true_thr": mean("p_next_true_thr"), "p_band_at_x": mean("p_band_at_x"),
            "p_good_model_thr_at_x": mean("p_model_thr_at_x"),
            "p_good_true_thr_at_x": mean("p_true_thr_at_x"),
            "model_over_true_threshold_median": statistics.median(ratios),
            "qy_z_sd_in_band": statistics.pstdev(z) if z else float("nan"),
            "qy_z_mean_in_band": statistics.fmean(z) if z else float("nan")}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the cells (skipping those already written) and print the summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", help="benchmark spec with the design members")
    ap.add_argument("--targets", type=float, nargs="+", default=[550.0, 610.0])
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--members", default=None, help="comma-separated member names (default all)")
    ap.add_argument("--out", type=Path, default=Path("benchmark-results/forecast-decomposition"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    spec = load_spec(args.spec)
    members = [m for m in spec.members()
               if args.members is None or m.name in args.members.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for member in members:
        ps = [p for p in problems(spec, member) if p.target_nm in args.targets]
        reach = best_reachable_many(ps, sobol_log2=spec.dense_search.sobol_log2,
                                    polish=spec.dense_search.polish)
        for prob, best in zip(ps, reach, strict=True):
            path = args.out / f"{member.name}--{prob.target_nm:g}.json"
            if not path.exists():
                cell = run_cell(args.spec, member.name, prob.target_nm, best.best_qy, args.budget)
                path.write_text(json.dumps(cell))
                print(member.name, prob.target_nm, len(cell["rows"]), f"{cell['cpu_s']:.1f} s",
                      flush=True)
            rows.extend(json.loads(path.read_text())["rows"])
    print(json.dumps(summarize(rows), indent=1))


if __name__ == "__main__":
    main()
