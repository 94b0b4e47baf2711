"""Time ``BotorchOptimizer.ask(1)`` from 50 to 5,000 observations; large-n GP accuracy.

Problem: the 6-D InP/ZnS space (with its ``t_shell_c - t_core_c >= 40`` constraint), three
outcomes and the "550 nm ± 2, bright, narrow" target objective; synthetic smooth outcomes.

Two data sets per ``n`` (``--data``):

* ``uniform``: ``n`` random points, no stated noise, no failures (the issue-8 set-up);
* ``ramps``: what dynamic experiments produce (issue 10): ramps of 10 readings between random
  points, whose two ends are steady-state readings (stated sd 1x) and whose 8 interior readings
  are transient (stated sd 3x); experiments in one corner of the space fail (feasibility GP).

Timing, per ``n``: after a warm-up ask, each repeat tells one more observation and asks, so the
GPs are refitted as in a campaign ("after tell"), then asks again on the cached fit ("cached").
Reports wall and CPU (process) time; the CPU time is the one to trust on a busy machine.

Breakdown (``--breakdown N``): one after-tell ask at ``N``, process-clock timers around each part:
CPU seconds in the hyperparameter fit, the SGPR cache (inducing points included), the
acquisition optimization, the recorded prediction and the rest.

Accuracy (``--accuracy``): at each ``n`` the large-n GPs (:mod:`autolab.optimizer.scalable`)
against exact GPs fitted on every point, on the ``ramps`` data: RMSE of the posterior mean against
the noise-free truth and NLPD of 500 held-out noisy readings (their stated noise added), both in
each outcome's standardized units and averaged over the three outcomes; for the feasibility GP,
the Brier score of P(feasible) against the held-out points' true failures and the mean distance
of the large-n P(feasible) from the exact one.

Usage::

    .venv/bin/python benchmarks/ask_timing.py                    # CPU, all of the above
    .venv/bin/python benchmarks/ask_timing.py --device cuda      # the same on a GPU
    .venv/bin/python benchmarks/ask_timing.py --n 50 300 --data uniform --accuracy
    .venv/bin/python benchmarks/ask_timing.py --n 2000 --accuracy --breakdown 2000 --no-record
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import gpytorch
import numpy as np
import torch

from autolab.benchmarking.provenance import Result, Table, write_result
from autolab.exceptions import OptimizerError
from autolab.objective import qd_objective
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.base import resolve_device
from autolab.optimizer.design import random_design
from autolab.space import ParameterSpace, qd_space

OUTCOMES = ("pl_peak_nm", "qy", "fwhm_nm")
#: Stated 1-sigma of a steady reading per outcome; transient readings state 3x.
SD_STEADY = {"pl_peak_nm": 0.5, "qy": 0.01, "fwhm_nm": 0.5}
TRANSIENT = 3.0
RAMP = 10
TIMING_COLUMNS = ("n", "after tell s (wall)", "after tell s (CPU)", "cached fit s (wall)",
                  "cached fit s (CPU)", "after tell range s", "GPs: exact or inducing points")
#: Where an ask's CPU time goes (``--breakdown``): label -> (module, attribute) timed with the
#: process clock while one ask runs (the attribute is wrapped where its caller looks it up).
BREAKDOWN = {
    "hyperparameter fit (L-BFGS, all GPs)": ("autolab.optimizer.models", "fit_model_list"),
    "inducing points (greedy pivoted Cholesky)": ("autolab.optimizer.scalable",
                                                  "greedy_inducing"),
    "SGPR cache incl. inducing points": ("autolab.optimizer.scalable:SparseGP", "_build_cache"),
    "acquisition optimization (raw samples + L-BFGS-B restarts)": ("autolab.optimizer.bayes",
                                                                   "optimize_acqf"),
    "recorded prediction": ("autolab.optimizer.bayes:BotorchOptimizer", "_predict"),
}
#: Components of :data:`BREAKDOWN` that do not overlap (their sum is subtracted for "other").
DISJOINT = ("hyperparameter fit (L-BFGS, all GPs)", "SGPR cache incl. inducing points",
            "acquisition optimization (raw samples + L-BFGS-B restarts)", "recorded prediction")


def truth(u: np.ndarray) -> np.ndarray:
    """Noise-free outcomes ``(n, 3)`` at unit-cube points ``(n, 6)``."""
    peak = 520 + 80 * u[:, 0] + 20 * np.sin(3 * u[:, 4]) + 5 * u[:, 1]
    qy = 0.4 * np.exp(-4 * ((u[:, 2] - 0.6) ** 2 + (u[:, 5] - 0.3) ** 2))
    fwhm = 50 + 10 * (u[:, 3] - 0.5) ** 2 + 5 * u[:, 1]
    return np.stack([peak, qy, fwhm], axis=1)


def uniform_data(space: ParameterSpace, n: int, seed: int) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray | None]:
    """Random points, outcomes with a little noise, nothing stated, nothing failed."""
    rng = np.random.default_rng(seed)
    u = random_design(space, seed, n)
    y = truth(u) + rng.normal(size=(n, 3)) * np.array([0.5, 0.01, 0.5])
    return u, y, None


def ramp_data(space: ParameterSpace, n: int, seed: int) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray | None]:
    """Ramps of :data:`RAMP` readings; ends steady, interior transient (3x stated sd)."""
    rng = np.random.default_rng(seed)
    ends = random_design(space, seed, 2 * (n // RAMP + 1))
    t = np.linspace(0.0, 1.0, RAMP)
    u = np.concatenate([a + t[:, None] * (b - a) for a, b in zip(ends[::2], ends[1::2],
                                                                 strict=True)])[:n]
    steady = np.isin(np.arange(n) % RAMP, (0, RAMP - 1))
    sd = np.array([SD_STEADY[k] for k in OUTCOMES])[None, :] * np.where(steady, 1.0,
                                                                       TRANSIENT)[:, None]
    return u, truth(u) + rng.normal(size=(n, 3)) * sd, sd


DATA: dict[str, Callable[[ParameterSpace, int, int],
                         tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = {
    "uniform": uniform_data, "ramps": ramp_data}


def failed(u: np.ndarray, kind: str) -> np.ndarray:
    """Which points fail: none for ``uniform``; a hot, concentrated corner for ``ramps``."""
    if kind == "uniform":
        return np.zeros(len(u), dtype=bool)
    return (u[:, 0] > 0.85) & (u[:, 5] > 0.7)


def tell(opt: BotorchOptimizer, u: np.ndarray, y: np.ndarray, sd: np.ndarray | None,
         kind: str) -> None:
    """Tell the points; failures without outcomes, stated sds where given."""
    bad = failed(u, kind)
    outcomes = [None if b else dict(zip(OUTCOMES, map(float, row), strict=True))
                for row, b in zip(y, bad, strict=True)]
    sds = None if sd is None else [dict(zip(OUTCOMES, map(float, row), strict=True))
                                   for row in sd]
    opt.tell(opt.space.from_unit(u), outcomes, outcome_sd=sds)


def time_ask(n: int, kind: str, repeats: int, device: str) -> tuple[Any, ...]:
    """One table row: n, median after-tell wall/CPU, cached wall/CPU, range, inducing points."""
    space, objective = qd_space(), qd_objective(550.0, 2.0)
    u, y, sd = DATA[kind](space, n + repeats, n)
    opt = BotorchOptimizer(space, objective, seed=0, device=device)
    tell(opt, u[:n], y[:n], None if sd is None else sd[:n], kind)
    opt.ask(1)  # warm-up (imports, first-call overheads)
    fresh: list[tuple[float, float]] = []
    cached: list[tuple[float, float]] = []
    for r in range(repeats):
        k = n + r
        tell(opt, u[k : k + 1], y[k : k + 1], None if sd is None else sd[k : k + 1], kind)
        for sink in (fresh, cached):
            opt.seed = r + 1  # a different (but deterministic) proposal each repeat
            t0, c0 = time.perf_counter(), time.process_time()
            opt.ask(1)
            sink.append((time.perf_counter() - t0, time.process_time() - c0))
    hp = (opt.state_dict()["model"] or {}).get("hyperparameters", {})
    inducing = "/".join(str(v["approximation"]["n_inducing"]) if "approximation" in v else "exact"
                        for v in hp.values())
    walls = [w for w, _ in fresh]
    return (n, f"{statistics.median(walls):.2f}", f"{statistics.median(c for _, c in fresh):.2f}",
            f"{statistics.median(w for w, _ in cached):.2f}",
            f"{statistics.median(c for _, c in cached):.2f}",
            f"{min(walls):.2f}-{max(walls):.2f}", inducing)


def breakdown(n: int, kind: str, device: str) -> list[tuple[str, str]]:
    """CPU seconds of one after-tell ``ask(1)`` at ``n`` by component (:data:`BREAKDOWN`).

    Each component is wrapped in a process-clock timer for the one ask (no profiler, whose
    overhead would inflate the Python-heavy parts); greedy selection is inside the SGPR cache
    and "other" is the rest of the ask.
    """
    import importlib
    from contextlib import ExitStack
    from unittest import mock

    space, objective = qd_space(), qd_objective(550.0, 2.0)
    u, y, sd = DATA[kind](space, n + 1, n)
    opt = BotorchOptimizer(space, objective, seed=0, device=device)
    tell(opt, u[:n], y[:n], None if sd is None else sd[:n], kind)
    opt.ask(1)
    tell(opt, u[n:], y[n:], None if sd is None else sd[n:], kind)
    opt.seed = 1
    spent = dict.fromkeys(BREAKDOWN, 0.0)

    def timed(label: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            c0 = time.process_time()
            try:
                return func(*args, **kwargs)
            finally:
                spent[label] += time.process_time() - c0
        return wrapper

    with ExitStack() as stack:
        for label, (where, name) in BREAKDOWN.items():
            module, _, cls = where.partition(":")
            owner = importlib.import_module(module)
            owner = getattr(owner, cls) if cls else owner
            stack.enter_context(mock.patch.object(owner, name, timed(label, getattr(owner, name))))
        c0 = time.process_time()
        opt.ask(1)
        total = time.process_time() - c0
    other = total - sum(spent[k] for k in DISJOINT)
    return [*((k, f"{v:.2f}") for k, v in spent.items()), ("other", f"{other:.2f}"),
            ("total ask(1)", f"{total:.2f}")]


def _standardized_scores(model: Any, X: torch.Tensor, f: np.ndarray, y: np.ndarray,
                         var: np.ndarray) -> tuple[float, float]:
    """Mean over outcomes of RMSE (vs truth) and NLPD (held-out readings), standardized."""
    with torch.no_grad():
        post = model.posterior(X)
        mean = post.mean.cpu().numpy()[:, :3]
        lat = post.variance.cpu().numpy()[:, :3]
    scale = f.std(axis=0)
    rmse = np.sqrt(((mean - f) ** 2).mean(axis=0)) / scale
    pvar = lat + var
    nlpd = (0.5 * (np.log(2 * math.pi * pvar) + (y - mean) ** 2 / pvar)).mean(axis=0)
    nlpd = nlpd + np.log(scale)  # density of the standardized reading
    return float(rmse.mean()), float(nlpd.mean())


def _p_feasible(model: Any, X: torch.Tensor) -> np.ndarray:
    """P(latent feasibility > 0) at ``X`` from the model's last (feasibility) output."""
    with torch.no_grad():
        post = model.posterior(X)
        z = post.mean[:, 3] / post.variance[:, 3].clamp_min(1e-30).sqrt()
    out: np.ndarray = torch.special.ndtr(z).cpu().numpy()
    return out


ACCURACY_COLUMNS = ("n", "exact RMSE", "exact NLPD", "exact feas. Brier", "exact build s",
                    "large-n RMSE", "large-n NLPD", "large-n feas. Brier", "mean |dP feas.|",
                    "large-n build s")


def accuracy_row(n: int, device: torch.device) -> tuple[Any, ...]:
    """Exact vs large-n GPs on ``n`` ramp readings (:data:`ACCURACY_COLUMNS`).

    Outcome GPs on the successes, the feasibility GP on all readings, as the optimizer builds
    them; the feasibility GP is judged by its Brier score against the true failures of the
    held-out points and by how far its P(feasible) is from the exact GP's.
    """
    from autolab.optimizer.models import build_model_list

    space = qd_space()
    u, y, sd = ramp_data(space, n, n)
    assert sd is not None
    rng = np.random.default_rng(10_000 + n)
    u_test = random_design(space, 10_000 + n, 500)
    f_test = truth(u_test)
    sd_test = np.array([SD_STEADY[k] for k in OUTCOMES]) * np.where(rng.random(500) < 0.2, 1.0,
                                                                    TRANSIENT)[:, None]
    y_test = f_test + rng.normal(size=f_test.shape) * sd_test
    ok_test = ~failed(u_test, "ramps")

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float64, device=device)

    ok = torch.as_tensor(~failed(u, "ramps"), device=device)
    row: list[Any] = [n]
    p_exact = None
    for large_n in (10**9, None):
        torch.manual_seed(0)
        t0 = time.perf_counter()
        # Exact means exact: Cholesky at any size (gpytorch switches to CG above 800 points).
        with gpytorch.settings.max_cholesky_size(10**6):
            model = build_model_list(t(u)[ok], t(y)[ok], t(u), ok, Yvar_ok=t(sd**2)[ok],
                                     seed=0, large_n=large_n)
            build = time.perf_counter() - t0
            rmse, nlpd = _standardized_scores(model, t(u_test), f_test, y_test, sd_test**2)
            p = _p_feasible(model, t(u_test))
        row += [f"{rmse:.4f}", f"{nlpd:.3f}", f"{float(((p - ok_test) ** 2).mean()):.4f}"]
        if p_exact is None:
            p_exact = p
        else:
            row.append(f"{float(np.abs(p - p_exact).mean()):.4f}")
        row.append(f"{build:.1f}")
    return tuple(row)


def breakdown_table(n: int, kinds: list[str], device: str) -> Any:
    """:func:`breakdown` for each data kind, one column each."""
    per_kind = [breakdown(n, kind, device) for kind in kinds]
    rows = tuple((label, *(dict(b)[label] for b in per_kind)) for label, _ in per_kind[0])
    for row in rows:
        print(f"breakdown n={n}: {row[0]}: " + ", ".join(
            f"{kind} {v} s" for kind, v in zip(kinds, row[1:], strict=True)), flush=True)
    return Table(f"Where one ask(1) after a tell spends its CPU time, n = {n}",
                 ("component", *(f"{kind} CPU s" for kind in kinds)), rows,
                 notes="Process-clock timers around each component during one ask; the "
                       "greedy selection is inside the SGPR cache.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[50, 300, 1000, 2000, 5000])
    parser.add_argument("--data", nargs="+", choices=sorted(DATA), default=["uniform", "ramps"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                        help="the optimizer's device (BotorchSettings.device)")
    parser.add_argument("--accuracy", type=int, nargs="*", default=[400, 700, 1000],
                        help="n of the exact-vs-large-n comparison (none: skip it)")
    parser.add_argument("--breakdown", type=int, default=2000,
                        help="n of the per-component CPU breakdown of one ask (0: skip it)")
    parser.add_argument("--record", default=None,
                        help="folder of ask-timing[-cuda].json (default benchmarks/results)")
    parser.add_argument("--no-record", action="store_true",
                        help="do not write benchmarks/results/ask-timing[-cuda].json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except OptimizerError as err:
        print(f"--device: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    where = f"device {device}" + (f" ({torch.cuda.get_device_name(device)})"
                                  if device.type == "cuda" else "")
    print(f"torch threads: {torch.get_num_threads()} (asks run with cpu_threads=1), {where}, "
          "dim 6, 3 outcomes")
    tables = []
    for kind in args.data:
        rows = []
        for n in args.n:
            row = time_ask(n, kind, args.repeats, str(device))
            rows.append(row)
            print(f"{kind:7s} n={n:5d}: ask(1) after tell {row[1]} s wall, {row[2]} s CPU; "
                  f"cached fit {row[3]} s wall, {row[4]} s CPU; range {row[5]} s; GPs {row[6]}",
                  flush=True)
        tables.append(Table(f"ask(1), {kind} data", TIMING_COLUMNS, tuple(rows)))
    if args.breakdown:
        tables.append(breakdown_table(args.breakdown, args.data, str(device)))
    acc_rows = []
    for n in args.accuracy or []:
        row = accuracy_row(n, device)
        acc_rows.append(row)
        print(f"accuracy n={n:5d}: " + "; ".join(
            f"{c} {v}" for c, v in zip(ACCURACY_COLUMNS[1:], row[1:], strict=True)), flush=True)
    if not args.no_record:
        record(args, device, tables, acc_rows)


def record(args: argparse.Namespace, device: torch.device, tables: list[Any],
           acc_rows: list[tuple[Any, ...]]) -> None:
    """Write the result JSON with provenance (``ask-timing-cuda`` for a GPU run)."""
    if acc_rows:
        tables.append(Table(
            "Large-n GP vs exact GP (ramps data, 500 held-out points)",
            ACCURACY_COLUMNS, tuple(acc_rows),
            notes="RMSE of the posterior mean vs the noise-free truth and NLPD of noisy held-out "
                  "readings, in each outcome's standardized units, mean of the 3 outcomes; "
                  "feasibility GP: Brier score of P(feasible) vs the true failures, and mean "
                  "|P(feasible) large-n - P(feasible) exact|."))
    gpu = f" on {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    result = Result(
        name="ask-timing" + ("-cuda" if device.type == "cuda" else ""),
        title="Optimizer: ask(1) time" + (" (CUDA)" if gpu else ""),
        description=(
            f"BotorchOptimizer.ask(1) on the 6-D twin space with 3 outcomes after n observations "
            f"(uniform: random points; ramps: dynamic-experiment-like ramps of {RAMP} readings, "
            f"steady ends, transient interior with {TRANSIENT:g}x stated sd, a failing corner), "
            f"median of {args.repeats} repeats after a warm-up, each a tell then an ask (GPs "
            f"refitted) and again (cached fit), cpu_threads 1, device {device}{gpu}. Above 300 "
            "points a GP takes its hyperparameters from a 200-point subset and predicts with an "
            "inducing-point (SGPR) posterior on all points. Goals: <= 1 s at n = 50 (issue 8), "
            "<= 2 s at n = 2,000 (issue 10)."),
        tables=tuple(tables))
    print(f"wrote {write_result(result, args.record)}")


if __name__ == "__main__":
    main()
