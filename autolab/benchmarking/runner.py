"""One benchmark run: a strategy on a seed and a target, from the first proposal to success.

The loop is the campaign's, stripped to what a benchmark measures (no journal, no tracker, no
stop rules but the budget and success)::

    optimizer.ask(1) -> SimulatedExecutor.run -> analyze -> optimizer.tell

so every strategy sees exactly what it would see in a campaign: noisy measured outcomes, and
``None`` for a failed experiment. Success is judged on the executor's noise-free truth
(:func:`~autolab.benchmarking.problem.is_success`). A :class:`Job` is a plain frozen value, so the
same function runs in-process, in a process pool and on a Ray worker.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from autolab.analysis import analyze
from autolab.benchmarking.problem import Problem, is_success
from autolab.benchmarking.spec import StrategySpec
from autolab.exceptions import ExperimentFailed
from autolab.executors.simulated import SimulatedExecutor
from autolab.optimizer import make_optimizer


@dataclass(frozen=True)
class Job:
    """Everything one run needs (picklable: it travels to pool and Ray workers).

    Attributes:
        strategy: The strategy under test.
        seed: Seed of the optimizer and of the twin's noise and failures.
        problem: Space, target and twin.
        budget: Experiments at most.
        threshold_qy: Noise-free QY needed in band for success.
        best_reachable_qy: The yardstick ``threshold_qy`` derives from (reported, not used).
    """

    strategy: StrategySpec
    seed: int
    problem: Problem
    budget: int
    threshold_qy: float
    best_reachable_qy: float


@dataclass(frozen=True)
class Step:
    """One experiment of a run, for traces and plots.

    Attributes:
        experiment: 1-based experiment number.
        failed: The experiment failed or gave no usable emission.
        true_pl_nm: Noise-free PL peak (NaN for a clog before any product).
        true_qy: Noise-free QY.
        measured_pl_nm: Analyzer's PL peak (NaN if failed).
        measured_qy: Analyzer's QY (NaN if failed).
        lab_clock_h: Virtual lab hours when it finished.
        ask_s: Seconds the strategy took to propose it.
    """

    experiment: int
    failed: bool
    true_pl_nm: float
    true_qy: float
    measured_pl_nm: float
    measured_qy: float
    lab_clock_h: float
    ask_s: float


@dataclass(frozen=True)
class RunResult:
    """The outcome of one :class:`Job`.

    Attributes:
        strategy: Strategy label.
        kind: Strategy kind.
        seed: Seed.
        target_nm: Target PL peak, nm.
        tolerance_nm: Band half-width, nm.
        budget: Experiment budget.
        threshold_qy: QY needed in band.
        best_reachable_qy: Best noise-free QY in band (dense search).
        experiments_to_success: First successful experiment (1-based), or None.
        lab_hours_to_success: Virtual lab hours at that experiment, or None.
        experiments: Experiments run (stops at success).
        failed: Failed experiments among them.
        best_true_qy_in_band: Best noise-free QY reached in band (0 if never in band).
        ask_s_total: Total proposal time over the run, s.
        wall_s: Wall-clock seconds of the whole run.
        steps: Every experiment, in order.
    """

    strategy: str
    kind: str
    seed: int
    target_nm: float
    tolerance_nm: float
    budget: int
    threshold_qy: float
    best_reachable_qy: float
    experiments_to_success: int | None
    lab_hours_to_success: float | None
    experiments: int
    failed: int
    best_true_qy_in_band: float
    ask_s_total: float
    wall_s: float
    steps: tuple[Step, ...] = field(default=())

    @property
    def found(self) -> bool:
        """Whether the run succeeded within its budget."""
        return self.experiments_to_success is not None

    def row(self) -> dict[str, Any]:
        """A flat row for CSV (no steps)."""
        d = asdict(self)
        d.pop("steps")
        d["found"] = self.found
        return d

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible, with steps."""
        d = self.row()
        d["steps"] = [asdict(s) for s in self.steps]
        return d


def _measure(executor: SimulatedExecutor, job: Job,
             point: dict[str, float]) -> tuple[dict[str, float] | None, float, float]:
    """Run one experiment: (measured outcomes or None if failed, true PL, true QY)."""
    index = executor.twin.run_index
    try:
        measurement = executor.run(job.problem.conditions(point))
    except ExperimentFailed:
        truth = executor.truths.get(index)
        return None, (math.nan if truth is None else truth.pl_peak_nm), 0.0
    truth = executor.truths[index]
    features = analyze(measurement)
    outcomes = features.outcomes() if features.usable else None
    return outcomes, truth.pl_peak_nm, truth.qy


class _Strategy:
    """ask/tell over an autolab optimizer or Optuna's GPSampler, one experiment at a time."""

    def __init__(self, job: Job) -> None:
        self._job = job
        self._space = job.problem.space
        self._objective = job.problem.objective()
        self._names = self._objective.outcome_names
        if job.strategy.kind == "optuna-gp":
            import optuna  # noqa: PLC0415 (optional extra, imported only when used)

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            sampler = optuna.samplers.GPSampler(seed=job.seed,
                                                n_startup_trials=max(2 * self._space.dim, 5))
            self._study: Any = optuna.create_study(direction="maximize", sampler=sampler)
            self._trial: Any = None
            self._worst = -100.0
        else:
            self._opt = make_optimizer(job.strategy.kind, self._space, self._objective,
                                       seed=job.seed, **job.strategy.settings)

    def ask(self) -> dict[str, float]:
        if self._job.strategy.kind != "optuna-gp":
            (point,) = self._opt.ask(1)
            return point
        # Optuna cannot keep to linear constraints: a proposal that breaks one is not run (it
        # costs no lab time), it is told as infeasible, and Optuna is asked again.
        for _ in range(1000):
            trial = self._study.ask()
            point = {p.name: float(trial.suggest_float(p.name, p.lower, p.upper,
                                                       log=p.scale == "log"))
                     for p in self._space.parameters}
            violation = max((-c.slack(point) for c in self._space.constraints), default=0.0)
            trial.set_constraint("linear", violation)
            if violation <= 0:
                self._trial = trial
                return point
            self._study.tell(trial, self._worst)
        raise RuntimeError("optuna-gp proposed 1000 infeasible points in a row")

    def tell(self, point: dict[str, float], outcomes: dict[str, float] | None) -> None:
        told = None if outcomes is None else {n: outcomes[n] for n in self._names}
        if self._job.strategy.kind != "optuna-gp":
            self._opt.tell([point], [told])
            return
        import optuna  # noqa: PLC0415

        if told is None:
            self._study.tell(self._trial, state=optuna.trial.TrialState.FAIL)
        else:
            score = self._objective.score(told)
            self._worst = min(self._worst, score)
            self._study.tell(self._trial, score)


def run_job(job: Job) -> RunResult:
    """Run one strategy on one seed and target until success or the budget.

    Torch is pinned to one thread: parallelism comes from running jobs side by side, and
    oversubscribed BLAS threads would only slow every job down.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch  # noqa: PLC0415 (set the thread count before any work, in the worker)

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    problem = job.problem
    strategy = _Strategy(job)
    executor = problem.member.executor(seed=job.seed)
    steps: list[Step] = []
    found: int | None = None
    found_h: float | None = None
    best_in_band = 0.0
    for k in range(1, job.budget + 1):
        t0 = time.perf_counter()
        point = strategy.ask()
        ask_s = time.perf_counter() - t0
        outcomes, pl, qy = _measure(executor, job, point)
        strategy.tell(point, outcomes)
        steps.append(Step(
            experiment=k, failed=outcomes is None, true_pl_nm=float(pl), true_qy=float(qy),
            measured_pl_nm=math.nan if outcomes is None else float(outcomes["pl_peak_nm"]),
            measured_qy=math.nan if outcomes is None else float(outcomes["qy"]),
            lab_clock_h=float(executor.lab_clock_h), ask_s=ask_s))
        if problem.in_band(pl):
            best_in_band = max(best_in_band, float(qy))
        if is_success(pl, qy, problem.target_nm, problem.tolerance_nm, job.threshold_qy):
            found, found_h = k, float(executor.lab_clock_h)
            break
    executor.close()
    return RunResult(
        strategy=job.strategy.name, kind=job.strategy.kind, seed=job.seed,
        target_nm=problem.target_nm, tolerance_nm=problem.tolerance_nm, budget=job.budget,
        threshold_qy=job.threshold_qy, best_reachable_qy=job.best_reachable_qy,
        experiments_to_success=found, lab_hours_to_success=found_h, experiments=len(steps),
        failed=sum(s.failed for s in steps), best_true_qy_in_band=best_in_band,
        ask_s_total=sum(s.ask_s for s in steps),
        wall_s=time.perf_counter() - t_start, steps=tuple(steps))
