"""GP hyperpriors learned on the reactor family's design members (empirical Bayes).

With 6-10 points in 6 inputs an outcome GP's lengthscales and output scale are barely
identified by the data, so the prior decides them, and BoTorch's dimension-scaled LogNormal is
the same for every input and outcome. The reactor family says more: this script fits the
optimizer's own outcome GPs (:func:`autolab.optimizer.models.build_model_list`, a scaled RBF
kernel under a wide prior) on ``--points`` scrambled-Sobol points of every **design** member of
``benchmarks/family.yaml`` (never a held-out one), with the member's read noise told as known
noise, and fits one LogNormal per outcome and hyperparameter to the members' fitted values: the
mean and sd of the log, the sd floored (:data:`MIN_SCALE`). It prints them as the
``FAMILY_HYPERPRIORS`` block of ``autolab/optimizer/gp_design.py`` (copied there by hand, so the
optimizer never depends on this script) and, with ``--record``, writes
``benchmarks/results/family-hyperprior.json``::

    PYTHONPATH=. .venv/bin/python benchmarks/family_hyperprior.py --record benchmarks/results

About 10 s CPU per member. docs/benchmarks.md "Eighth round" has the figures and the search
results with these priors (``BotorchSettings.hyperprior: family``).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from model_check import noisy_readings  # this folder: the script runs from it
from numpy.typing import NDArray

from autolab.benchmarking.benchmark import problems
from autolab.benchmarking.family import Member
from autolab.benchmarking.problem import Problem
from autolab.benchmarking.provenance import Result, Table, write_result
from autolab.benchmarking.spec import load_spec
from autolab.optimizer.design import sobol_design
from autolab.optimizer.gp_design import GPDesign, Hyperprior, LogNormal
from autolab.optimizer.models import build_model_list

FloatArray = NDArray[np.float64]
SPEC = Path(__file__).with_name("family.yaml")
OUTCOMES = ("pl_peak_nm", "qy")
#: Longest lengthscale (unit-cube units) counted: beyond it an input is flat over the box (RBF
#: correlation > 0.995 across it) and the fitted value drifts freely, so 10 and 30 mean the same.
MAX_LENGTHSCALE = 10.0
#: Smallest sd of a learned log-prior: 9 members (3 per kind) pin a spread only roughly, and a
#: held-out member may lie outside it; 0.5 keeps a factor of 2.7 within 2 sd either way.
MIN_SCALE = 0.5
#: Sd of the log of the wide prior the members are fitted under (BoTorch's dimension-scaled one).
WIDE_SCALE = math.sqrt(3)


def wide_prior(dim: int) -> Hyperprior:
    """BoTorch's dimension-scaled lengthscale prior and a wide output-scale prior (median 1)."""
    ls = LogNormal(math.sqrt(2) + 0.5 * math.log(dim), WIDE_SCALE)
    return Hyperprior(lengthscales=(ls,) * dim, outputscale=LogNormal(0.0, WIDE_SCALE))


def readings(prob: Problem, points: int, seed: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Unit-cube Sobol points that did not fail, their readings (PL, QY) and stated variances
    (:func:`model_check.noisy_readings`: the benchmark's read noise and failures)."""
    u = sobol_design(prob.space, seed, 0, points)
    y, sd = noisy_readings(prob, u, np.random.default_rng([seed, 17]))
    ok = ~np.isnan(y).any(axis=1)
    return u[ok], y[ok], sd[ok] ** 2


@dataclass(frozen=True)
class Fit:
    """One member's fitted kernel hyperparameters of one outcome."""

    lengthscales: tuple[float, ...]
    outputscale: float
    points: int


def member_fit(member: Member, spec_path: Path, points: int, seed: int) -> dict[str, Fit]:
    """Per outcome, the fitted lengthscales (input order) and output scale of one member."""
    prob = problems(load_spec(str(spec_path)), member)[0]  # the fit does not use the target
    u, y, var = readings(prob, points, seed)
    torch.manual_seed(seed)
    design = GPDesign(hyperprior=wide_prior(prob.space.dim))
    model = build_model_list(torch.as_tensor(u), torch.as_tensor(y),
                             Yvar_ok=torch.as_tensor(var), maxiter=500, large_n=10**9,
                             design=design)
    out = {}
    for name, gp in zip(OUTCOMES, model.models, strict=True):
        kernel = gp.covar_module
        out[name] = Fit(tuple(kernel.base_kernel.lengthscale.detach().reshape(-1).tolist()),
                        float(kernel.outputscale.detach()), len(u))
    return out


def lognormal(values: Sequence[float]) -> LogNormal:
    """Mean and sd (floored) of the log of ``values`` (capped at :data:`MAX_LENGTHSCALE`)."""
    logs = np.log(np.minimum(np.asarray(values, dtype=float), MAX_LENGTHSCALE))
    return LogNormal(round(float(logs.mean()), 3),
                     round(max(float(logs.std(ddof=1)), MIN_SCALE), 3))


def learned(fits: dict[str, dict[str, Fit]],
            names: Sequence[str]) -> dict[str, dict[str, LogNormal]]:
    """Outcome -> hyperparameter (input name or ``outputscale``) -> its learned LogNormal."""
    out: dict[str, dict[str, LogNormal]] = {}
    for outcome in OUTCOMES:
        per = [f[outcome] for f in fits.values()]
        priors = {n: lognormal([p.lengthscales[i] for p in per]) for i, n in enumerate(names)}
        priors["outputscale"] = lognormal([p.outputscale for p in per])
        out[outcome] = priors
    return out


def python_block(priors: dict[str, dict[str, LogNormal]]) -> str:
    """The constants as gp_design.py spells them."""
    lines = ["FAMILY_HYPERPRIORS: dict[str, FamilyPrior] = {"]
    for outcome, per in priors.items():
        lines.append(f'    "{outcome}": FamilyPrior(lengthscales=(')
        lines += [f'        ("{n}", LogNormal({p.loc}, {p.scale})),'
                  for n, p in per.items() if n != "outputscale"]
        os_ = per["outputscale"]
        lines.append(f"    ), outputscale=LogNormal({os_.loc}, {os_.scale})),")
    lines.append("}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Fit every design member, print the learned priors (and optionally record them)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=300, help="Sobol points per member")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--record", default=None, help="results folder to write the record to")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    spec = load_spec(str(SPEC))
    if spec.family is None or spec.family.split != "design":
        raise SystemExit(f"{SPEC} must be the family's design set: priors learn on it only")
    names = spec.space.build().names
    fits = {}
    for member in spec.members():
        fits[member.name] = member_fit(member, SPEC, args.points, args.seed)
        print(member.name, {o: [round(v, 3) for v in (*f.lengthscales, f.outputscale)]
                            for o, f in fits[member.name].items()}, flush=True)
    priors = learned(fits, names)
    print(python_block(priors))
    if args.record:
        rows = tuple((o, n, f"{math.exp(p.loc):.3g}", f"{p.loc:.3f}", f"{p.scale:.3f}")
                     for o, per in priors.items() for n, p in per.items())
        result = Result(
            name="family-hyperprior", title="GP hyperpriors learned on the design members",
            description=(f"Outcome GPs (scaled RBF) fitted on {args.points} Sobol points of "
                         "each design member of benchmarks/family.yaml; LogNormal per outcome "
                         "and hyperparameter (lengthscales in unit-cube units, output scale in "
                         "standardized units); benchmarks/family_hyperprior.py"),
            tables=(Table(title="learned priors", columns=(
                "outcome", "hyperparameter", "median", "loc (mean log)", "scale (sd log)"),
                rows=rows),),
            data={"inputs": list(names),
                  "fits": {m: {o: asdict(f) for o, f in per.items()} for m, per in fits.items()},
                  "max_lengthscale": MAX_LENGTHSCALE, "min_scale": MIN_SCALE})
        print(f"wrote {write_result(result, args.record)}")


if __name__ == "__main__":
    main()
