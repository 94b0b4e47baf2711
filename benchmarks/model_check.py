"""How well the optimizer's outcome GPs predict an unseen reactor: calibration per model choice.

Every acquisition decision rests on the PL and QY GPs' predictions *away from the data*: a PL
model 2-3 nm off is the whole half-width of a ±2 nm band. This script fits the optimizer's own
outcome models (:func:`autolab.optimizer.models.build_model_list`, one variant per
:class:`~autolab.optimizer.gp_design.GPDesign` or noise choice) on the first n points of design-set
members and scores their posterior of the noise-free truth on uniform random points of the box:

* RMSE of the posterior mean; RMS z (1 = calibrated, > 1 overconfident); NLPD (mean negative
  log predictive density, lower is better; it rewards accuracy and honest uncertainty together);
  coverage of the ±2-sigma interval (0.95 = calibrated);
* everywhere, and *near the band*: points whose true PL is within 10 nm of the target;
* for two kinds of training data: the first n points of a scrambled Sobol design, and the first
  n experiments of a default-optimizer trajectory (the lean ask/tell loop on the member's truth
  plus read noise, as the optimizer actually places points: clustered near the band).

Readings carry the member's read noise (PL 1 nm, QY its relative read-out error), told as
stated 1-sigma like the analyzer's. ``log-qy`` is a script-only probe, not an optimizer setting:
the QY GP fitted on log QY (stated sigma / QY as its noise), with the log-normal predictive back in
QY units; it tells whether wiring a QY transform through the acquisition is worth it.

    PYTHONPATH=. .venv/bin/python benchmarks/model_check.py --members 9 --targets 550 --record
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from autolab.benchmarking.benchmark import problems
from autolab.benchmarking.problem import Problem
from autolab.benchmarking.provenance import Result, Table, write_result
from autolab.benchmarking.spec import load_spec
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.design import random_design, sobol_design
from autolab.optimizer.gp_design import DEFAULT_DESIGN, GPDesign, hyperprior_for
from autolab.optimizer.models import build_model_list
from autolab.space import qd_space

FloatArray = NDArray[np.float64]
SPEC = Path(__file__).with_name("family.yaml")
#: Half-width (nm) of the "near the band" region that is scored separately.
NEAR_NM = 10.0
#: QY floor of the log-QY probe (a reading of 0 has no logarithm).
QY_FLOOR = 1e-3


@dataclass(frozen=True)
class Variant:
    """One model choice: the GP structure (one, or one per outcome), stated sigmas as noise."""

    design: GPDesign | tuple[GPDesign, ...] = DEFAULT_DESIGN
    known_noise: bool = True
    log_qy: bool = False


def _family_hyperprior() -> tuple[GPDesign, ...]:
    """``hyperprior: family``: each outcome's learned priors over the InP/ZnS inputs."""
    names = qd_space().names
    return tuple(GPDesign(hyperprior=hyperprior_for("family", o, names))
                 for o in ("pl_peak_nm", "qy"))


VARIANTS: dict[str, Variant] = {
    "default": Variant(),
    "matern52": Variant(GPDesign(kernel="matern52")),
    "warp": Variant(GPDesign(input_warping=True)),
    "matern52-warp": Variant(GPDesign(kernel="matern52", input_warping=True)),
    "learned-noise": Variant(known_noise=False),
    "linear-mean": Variant(GPDesign(mean="linear")),
    "linear-kernel": Variant(GPDesign(mean="linear_kernel")),
    "log-qy": Variant(log_qy=True),
    "family-hyperprior": Variant(_family_hyperprior()),
}


@dataclass(frozen=True)
class Data:
    """Training data of one (member, target, source): unit-cube X, readings, stated sigmas."""

    X: FloatArray
    Y: FloatArray
    sd: FloatArray


def noisy_readings(prob: Problem, u: FloatArray,
                   rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Noisy readings (PL, QY) and stated sigmas at unit-cube points; failed rows are NaN.

    The benchmark's read noise: PL 1 nm, QY the member's relative read-out error; a point
    fails with the member's failure probability (also used by ``family_hyperprior.py``).
    """
    space, member = prob.space, prob.member
    x = np.array([[p[n] for n in space.names] for p in space.from_unit(u)])
    t = member.truth_points(x, space.names, prob.fixed)
    rel = member.twin.noise.qy_readout_rel
    pl = t.pl_peak_nm + rng.normal(size=len(u))
    qy = np.maximum(t.qy * (1 + rel * rng.normal(size=len(u))), 0.0)
    fail = (rng.random(len(u)) < t.p_fail) | ~np.isfinite(t.pl_peak_nm)
    Y = np.where(fail[:, None], np.nan, np.stack([pl, qy], axis=1))
    sd = np.stack([np.ones(len(u)), np.maximum(rel * qy, 1e-3)], axis=1)
    return Y, sd


def sobol_data(prob: Problem, n: int, seed: int) -> Data:
    """The first ``n`` points of the optimizer's own initial design, with noisy readings."""
    u = sobol_design(prob.space, seed, 0, n)
    Y, sd = noisy_readings(prob, u, np.random.default_rng([seed, int(prob.target_nm), 11]))
    return Data(u, Y, sd)


def trajectory_data(prob: Problem, n: int, seed: int) -> Data:
    """The first ``n`` experiments of the default optimizer on this member and target."""
    space = prob.space
    opt = BotorchOptimizer(space, prob.objective(), seed=seed, device="cpu")
    rng = np.random.default_rng([seed, int(prob.target_nm), 7])
    us, ys, sds = [], [], []
    for _ in range(n):
        [x] = opt.ask(1)
        u = space.to_unit([x])
        Y, sd = noisy_readings(prob, u, rng)
        if np.isnan(Y[0]).any():
            opt.tell([x], [None])
        else:
            opt.tell([x], [{"pl_peak_nm": float(Y[0, 0]), "qy": float(Y[0, 1])}],
                     [{"pl_peak_nm": float(sd[0, 0]), "qy": float(sd[0, 1])}])
        us.append(u[0])
        ys.append(Y[0])
        sds.append(sd[0])
    return Data(np.array(us), np.array(ys), np.array(sds))


def _gaussian_scores(mean: FloatArray, sd: FloatArray, truth: FloatArray) -> dict[str, FloatArray]:
    z = (truth - mean) / sd
    return {"err2": (truth - mean) ** 2, "z2": z**2,
            "nlpd": 0.5 * z**2 + np.log(sd) + 0.5 * math.log(2 * math.pi),
            "cover": (np.abs(z) <= 2).astype(float)}


def _lognormal_scores(m: FloatArray, s: FloatArray, truth: FloatArray) -> dict[str, FloatArray]:
    """Scores of a log-normal predictive (log-space mean ``m``, sd ``s``) against QY truth."""
    t = np.maximum(truth, QY_FLOOR)
    z = (np.log(t) - m) / s
    mean = np.exp(m + 0.5 * s**2)
    return {"err2": (truth - mean) ** 2, "z2": z**2,
            "nlpd": 0.5 * z**2 + np.log(s) + np.log(t) + 0.5 * math.log(2 * math.pi),
            "cover": (np.abs(z) <= 2).astype(float)}


def _posterior(model: Any, U: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Latent posterior means and sds ``(n, outputs)`` of each sub-GP at unit-cube ``U``."""
    X = torch.as_tensor(U, dtype=torch.float64)
    means, sds = [], []
    with torch.no_grad():
        for sub in model.models:
            post = sub.posterior(X)
            means.append(post.mean.reshape(-1).numpy())
            sds.append(post.variance.clamp_min(1e-18).sqrt().reshape(-1).numpy())
    return np.stack(means, 1), np.stack(sds, 1)


def score(variant: Variant, data: Data, n: int, *, U: FloatArray,
          truth: FloatArray, seed: int) -> dict[str, dict[str, FloatArray]]:
    """Per outcome, per-point scores of the variant fitted on the first ``n`` training points."""
    ok = ~np.isnan(data.Y[:n]).any(axis=1)
    X = torch.as_tensor(data.X[:n][ok], dtype=torch.float64)
    Y = data.Y[:n][ok].copy()
    var = data.sd[:n][ok] ** 2
    if variant.log_qy:
        qy = np.maximum(Y[:, 1], QY_FLOOR)
        var[:, 1] = var[:, 1] / qy**2
        Y[:, 1] = np.log(qy)
    torch.manual_seed(seed)
    model = build_model_list(X, torch.as_tensor(Y), Yvar_ok=torch.as_tensor(var)
                             if variant.known_noise else None, design=variant.design)
    mean, sd = _posterior(model, U)
    out = {"pl": _gaussian_scores(mean[:, 0], sd[:, 0], truth[:, 0])}
    qy_scores: Callable[..., dict[str, FloatArray]] = (
        _lognormal_scores if variant.log_qy else _gaussian_scores)
    out["qy"] = qy_scores(mean[:, 1], sd[:, 1], truth[:, 1])
    return out


def _summary(parts: list[dict[str, FloatArray]]) -> dict[str, float]:
    """Pooled metrics over cells (each point weighs the same)."""
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {"rmse": float(np.sqrt(cat["err2"].mean())), "rms_z": float(np.sqrt(cat["z2"].mean())),
            "nlpd": float(cat["nlpd"].mean()), "cover2": float(cat["cover"].mean()),
            "points": len(cat["err2"])}


def _cell_nlpd(parts: dict[str, FloatArray], mask: FloatArray) -> float:
    return float(parts["nlpd"][mask].mean()) if mask.any() else math.nan


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Fit every variant on every (member, target, source, n) and pool the scores."""
    spec = load_spec(str(SPEC))
    members = spec.members()[: args.members]
    pooled: dict[tuple[str, str, int, str, str], list[dict[str, FloatArray]]] = {}
    cell_nlpd: dict[tuple[str, str, int, str, str], list[float]] = {}
    n_max = max(args.n)
    cpu0 = time.process_time()
    for member in members:
        for prob in problems(spec, member):
            if int(prob.target_nm) not in args.targets:
                continue
            U = random_design(prob.space, args.seed + 101, args.test_points)
            x = np.array([[p[k] for k in prob.space.names] for p in prob.space.from_unit(U)])
            t = member.truth_points(x, prob.space.names, prob.fixed)
            keep = np.isfinite(t.pl_peak_nm) & (t.p_fail < 0.5)
            U_k = U[keep]
            truth = np.stack([t.pl_peak_nm[keep], t.qy[keep]], 1)
            regions = {"all": np.ones(len(U_k), bool),
                       "near": np.abs(truth[:, 0] - prob.target_nm) < NEAR_NM}
            sources = {"sobol": sobol_data(prob, n_max, args.seed),
                       "trajectory": trajectory_data(prob, n_max, args.seed)}
            for src, data in sources.items():
                for n in args.n:
                    for name in args.variants:
                        scores = score(VARIANTS[name], data, n, U=U_k, truth=truth,
                                       seed=args.seed)
                        for outcome, parts in scores.items():
                            for region, mask in regions.items():
                                key = (name, src, n, outcome, region)
                                pooled.setdefault(key, []).append(
                                    {k: v[mask] for k, v in parts.items()})
                                cell_nlpd.setdefault(key, []).append(_cell_nlpd(parts, mask))
            cpu = time.process_time() - cpu0
            print(f"{member.name} {prob.target_nm:g} nm done, CPU {cpu:.0f} s", flush=True)
    return _report(args, pooled, cell_nlpd)


def _report(args: argparse.Namespace,
            pooled: dict[tuple[str, str, int, str, str], list[dict[str, FloatArray]]],
            cell_nlpd: dict[tuple[str, str, int, str, str], list[float]]) -> dict[str, Any]:
    rows = []
    for key, parts in pooled.items():
        name, src, n, outcome, region = key
        row: dict[str, Any] = {"variant": name, "source": src, "n": n, "outcome": outcome,
                               "region": region, **_summary(parts)}
        base = np.array(cell_nlpd[("default", src, n, outcome, region)])
        mine = np.array(cell_nlpd[key])
        both = np.isfinite(base) & np.isfinite(mine)
        row["nlpd_wins_losses"] = (int((mine[both] < base[both] - 1e-9).sum()),
                                   int((mine[both] > base[both] + 1e-9).sum()))
        rows.append(row)
    header = (f"{'variant':14} {'source':10} {'n':>3} {'out':3} {'region':6} {'RMSE':>8} "
              f"{'RMSz':>6} {'NLPD':>7} {'cov2':>5} {'pts':>5}  NLPD w-l vs default")
    print(header)
    for r in sorted(rows, key=lambda r: (r["source"], r["outcome"], r["region"], r["n"],
                                         args.variants.index(r["variant"]))):
        print(f"{r['variant']:14} {r['source']:10} {r['n']:>3} {r['outcome']:3} {r['region']:6} "
              f"{r['rmse']:8.3f} {r['rms_z']:6.2f} {r['nlpd']:7.2f} {r['cover2']:5.2f} "
              f"{r['points']:>5}  {r['nlpd_wins_losses'][0]}-{r['nlpd_wins_losses'][1]}")
    return {"args": {k: v for k, v in vars(args).items() if k not in ("record", "results_dir")},
            "rows": rows}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=9, help="design members (of 9) to use")
    parser.add_argument("--targets", type=int, nargs="+", default=[550, 610])
    parser.add_argument("--n", type=int, nargs="+", default=[6, 10, 16, 24])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--test-points", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", action="store_true",
                        help="write benchmarks/results/model-check.json (BENCHMARKS.md)")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    if "default" not in args.variants:
        args.variants.insert(0, "default")
    torch.set_num_threads(1)
    result = run(args)
    if args.record:
        print(f"wrote {write_result(_result(result), args.results_dir)}")


def _result(result: dict[str, Any]) -> Result:
    """The recorded result: near-band rows of trajectory data rendered, every row kept."""
    shown = [r for r in result["rows"] if r["source"] == "trajectory" and r["region"] == "near"]
    shown.sort(key=lambda r: (r["outcome"], r["n"], list(VARIANTS).index(r["variant"])))
    table = Table(
        title="near the band (|PL - target| < 10 nm), trajectory points",
        columns=("outcome", "n", "model", "RMSE", "RMS z", "NLPD", "2-sigma coverage",
                 "NLPD wins-losses vs default (members)"),
        rows=tuple((r["outcome"], r["n"], r["variant"], f"{r['rmse']:.3g}", f"{r['rms_z']:.2f}",
                    f"{r['nlpd']:.2f}", f"{r['cover2']:.2f}",
                    f"{r['nlpd_wins_losses'][0]}-{r['nlpd_wins_losses'][1]}") for r in shown))
    return Result(name="model-check", title="Outcome models: calibration on unseen reactors",
                  description="The optimizer's outcome GPs fitted on n points of each design "
                              "member, scored on 400 uniform points (benchmarks/model_check.py)",
                  tables=(table,), data=result)


if __name__ == "__main__":
    main()
