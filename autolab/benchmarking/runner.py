"""One benchmark cell: a strategy on a reactor, a target and a seed, through the campaign loop.

There is one experiment loop in autolab, the campaign's::

    optimizer.ask -> executor.run -> analyze -> journal -> optimizer.tell

A cell builds a real :class:`~autolab.campaign.Campaign` (journal in a throw-away folder, no
tracker) with the family member's executor and the strategy's optimizer, and runs it. Success is
judged on the executor's noise-free truth after each trial (``on_trial``), never on the noisy
measurement, so a strategy is not rewarded for a lucky reading:

* *first in band*: the first experiment whose noise-free PL lies within the target band;
* *good hit*: the first experiment in band with a noise-free QY of at least ``threshold_qy``
  (a fraction of the best QY reachable in band on that member).

Budget semantics: the campaign's own budget (``max_experiments``; failed experiments count, as
they cost lab time) is the cell's budget; the cell stops early at the good hit
(:meth:`~autolab.campaign.Campaign.request_stop`), since a good hit is always in band, so both
counts are known by then. The campaign's measured "target reached" rule is off: the benchmark
judges on the truth. A :class:`Job` is a plain frozen value, so the same function runs in-process,
in a process pool and on a Ray worker.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from autolab.benchmarking.family import Member
from autolab.benchmarking.problem import Problem, is_success
from autolab.benchmarking.spec import StrategySpec
from autolab.benchmarking.strategies import AUTOLAB_KINDS, injected_optimizer
from autolab.campaign import Campaign, StopReason
from autolab.config import (
    BudgetConfig,
    CampaignConfig,
    ExecutorConfig,
    OptimizerConfig,
    ReactorConfig,
    SpaceConfig,
    StopConfig,
    TrackingConfig,
)
from autolab.exceptions import AutolabError
from autolab.executors.simulated import SimulatedExecutor
from autolab.records import Trial, TrialStatus
from autolab.tracking.base import NullTracker


class CellInterrupted(AutolabError):
    """The cell's campaign was stopped from outside (a signal) before its end: no result."""


@dataclass(frozen=True)
class Job:
    """Everything one cell needs (picklable: it travels to pool and Ray workers).

    Attributes:
        strategy: The strategy under test.
        seed: Seed of the optimizer and of the member's noise and failure draws.
        problem: Space, target and the member (reactor) that answers.
        space: The searched space as the campaign file states it.
        budget: Experiments at most.
        threshold_qy: Noise-free QY needed in band for a good hit.
        best_reachable_qy: The yardstick ``threshold_qy`` derives from (reported).
        reactors: Simulated reactors of the member the campaign drives at once (K).
        settling: The procedure's settling (``adaptive`` or ``fixed``).
        flush: The procedure's flush (``auto`` or ``always``).
        forecast: Whether the campaign computes its stopping forecast after every experiment
            (:attr:`Step.forecast` is ``None`` throughout without it).
    """

    strategy: StrategySpec
    seed: int
    problem: Problem
    space: SpaceConfig
    budget: int
    threshold_qy: float
    best_reachable_qy: float
    reactors: int = 1
    settling: str = "adaptive"
    flush: str = "auto"
    forecast: bool = True

    @property
    def member(self) -> Member:
        """The reactor."""
        return self.problem.member

    @property
    def cell_id(self) -> str:
        """``strategy--member--target--seed``, unique in a benchmark (and a safe file name)."""
        return (f"{self.strategy.name}--{self.member.name}--{self.problem.target_nm:g}nm"
                f"--s{self.seed}")

    def fingerprint(self) -> str:
        """Hash of everything that determines the cell's result.

        A stored result is reused on resume only if it was made for exactly this cell.
        """
        doc = {"strategy": self.strategy.model_dump(mode="json"), "seed": self.seed,
               "member": self.member.identity(),
               "target": [self.problem.target_nm, self.problem.tolerance_nm],
               "space": self.space.model_dump(mode="json"), "budget": self.budget,
               "threshold_qy": round(self.threshold_qy, 9), "reactors": self.reactors,
               "procedure": [self.settling, self.flush]}
        if not self.forecast:  # only when off: cells stored before the switch keep their hash
            doc["forecast"] = False
        text = json.dumps(doc, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def campaign_config(self) -> CampaignConfig:
        """The campaign this cell runs: the strategy's optimizer, budget, no early stop rules."""
        kind = self.strategy.kind
        optimizer = (OptimizerConfig(kind=kind, settings=dict(self.strategy.settings))
                     if kind in AUTOLAB_KINDS else OptimizerConfig(kind="random"))
        procedure = {"settling": self.settling, "flush": self.flush}
        reactors = (() if self.reactors == 1 else
                    tuple(ReactorConfig(name=f"r{i + 1}", twin=self.member.twin,
                                        settings=procedure)
                          for i in range(self.reactors)))
        return CampaignConfig(
            name=f"bench-{self.cell_id}"[:120], seed=self.seed, reactors=reactors,
            description=f"benchmark cell {self.cell_id} (optimizer {self.strategy.name}"
                        f"{'' if kind in AUTOLAB_KINDS else ', injected'})",
            executor=ExecutorConfig(twin=self.member.twin, settings=procedure), space=self.space,
            objective=self.problem.objective(), optimizer=optimizer,
            budget=BudgetConfig(max_experiments=self.budget),
            stop=StopConfig(target_reached=False), tracking=TrackingConfig(enabled=False))


@dataclass(frozen=True)
class Step:
    """One experiment of a cell, for traces, plots and forecast calibration.

    Attributes:
        experiment: 1-based experiment number.
        failed: The experiment failed or gave no usable emission.
        true_pl_nm: Noise-free PL peak (NaN for a clog before any product).
        true_qy: Noise-free QY.
        measured_pl_nm: Analyzer's PL peak (NaN if failed).
        measured_qy: Analyzer's QY (NaN if failed).
        lab_clock_h: Virtual lab hours when it finished (wall-clock over all reactors).
        ask_s: Seconds the strategy took to propose it.
        in_band: The noise-free product is within the target band.
        good: In band and bright enough (a good hit).
        forecast: What the campaign journaled as its stop forecast after this experiment, if it
            journals one (``forecast`` in the trial's journal extra), for calibration.
        reactor: The reactor that ran it (parallel reactors).
        experiment_lab_h: Lab hours it took on its reactor (flush, ramp, settle, acquire).
    """

    experiment: int
    failed: bool
    true_pl_nm: float
    true_qy: float
    measured_pl_nm: float
    measured_qy: float
    lab_clock_h: float
    ask_s: float
    in_band: bool = False
    good: bool = False
    forecast: dict[str, Any] | None = None
    reactor: str = ""
    experiment_lab_h: float = math.nan


@dataclass(frozen=True)
class RunResult:
    """The outcome of one cell.

    Attributes:
        strategy: Strategy label.
        kind: Strategy kind.
        member: Reactor name (``twin-3``).
        member_kind: ``twin``, ``rff``, ``additive``, or a custom reactor's label.
        split: ``design`` or ``heldout``.
        seed: Seed.
        target_nm: Target PL peak, nm.
        tolerance_nm: Band half-width, nm.
        budget: Experiment budget.
        threshold_qy: QY needed in band for a good hit.
        best_reachable_qy: Best noise-free QY in band on this member (dense search).
        experiments_to_success: First good hit (1-based), or None.
        lab_hours_to_success: Virtual lab hours at that experiment, or None.
        experiments_to_in_band: First in-band product (1-based), or None.
        lab_hours_to_in_band: Virtual lab hours at that experiment, or None.
        experiments: Experiments run (stops at the good hit).
        failed: Failed experiments among them.
        best_true_qy_in_band: Best noise-free QY reached in band (0 if never in band).
        ask_s_total: Total proposal time over the cell, s.
        wall_s: Wall-clock seconds of the whole cell.
        stop_reason: Why the campaign stopped (``interrupted`` = stopped at the good hit).
        worker: Where it ran (``host:pid``), to check that every cell ran exactly once.
        steps: Every experiment, in order.
    """

    strategy: str
    kind: str
    member: str
    member_kind: str
    split: str
    seed: int
    target_nm: float
    tolerance_nm: float
    budget: int
    threshold_qy: float
    best_reachable_qy: float
    experiments_to_success: int | None
    lab_hours_to_success: float | None
    experiments_to_in_band: int | None
    lab_hours_to_in_band: float | None
    experiments: int
    failed: int
    best_true_qy_in_band: float
    ask_s_total: float
    wall_s: float
    stop_reason: str = ""
    worker: str = ""
    steps: tuple[Step, ...] = field(default=())

    @property
    def found(self) -> bool:
        """Whether the cell reached a good hit within its budget."""
        return self.experiments_to_success is not None

    @property
    def in_band_found(self) -> bool:
        """Whether any product was in band within the budget."""
        return self.experiments_to_in_band is not None

    @property
    def cell_id(self) -> str:
        """Same as :attr:`Job.cell_id`."""
        return f"{self.strategy}--{self.member}--{self.target_nm:g}nm--s{self.seed}"

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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_dict` (JSON null back to NaN where a float is expected)."""
        def num(v: Any) -> float:
            return math.nan if v is None else float(v)

        steps = tuple(Step(**{**s, **{k: num(s[k]) for k in (
            "true_pl_nm", "true_qy", "measured_pl_nm", "measured_qy", "experiment_lab_h")
            if k in s}})
            for s in d.get("steps", []))
        fields_ = {k: v for k, v in d.items() if k not in ("steps", "found")}
        return cls(**fields_, steps=steps)


class _Judge:
    """The cell's ``on_trial``: judges each trial on the truth; stops the campaign at a hit."""

    def __init__(self, job: Job, executors: dict[str, SimulatedExecutor]) -> None:
        self.job = job
        self.executors = executors
        self.steps: list[Step] = []
        self.hit: int | None = None
        self._clock: dict[str, float] = {}

    def __call__(self, campaign: Campaign, trial: Trial) -> None:
        extra = campaign.journal.state.last_extra or {}
        reactor = str(extra.get("reactor") or next(iter(self.executors)))
        executor = self.executors.get(reactor, next(iter(self.executors.values())))
        own_clock = float(extra.get("reactor_clock_h", campaign.lab_clock_h))
        duration = own_clock - self._clock.get(reactor, 0.0)
        self._clock[reactor] = own_clock
        # a reactor waits idle until its result is delivered: its last run is this trial's
        truth = executor.truths.get(executor.run_index - 1)
        pl = math.nan if truth is None else float(truth.pl_peak_nm)
        # a failed experiment made no product a chemist could keep, whatever the truth says
        failed = trial.status is not TrialStatus.COMPLETED or truth is None
        qy = 0.0 if failed or truth is None else float(truth.qy)
        outcomes = trial.outcomes()
        problem = self.job.problem
        in_band = not failed and bool(problem.in_band(pl))
        good = in_band and is_success(pl, qy, problem.target_nm, problem.tolerance_nm,
                                      self.job.threshold_qy)
        forecast = extra.get("forecast")
        self.steps.append(Step(
            experiment=len(self.steps) + 1, failed=failed, true_pl_nm=pl, true_qy=qy,
            measured_pl_nm=math.nan if outcomes is None else float(outcomes["pl_peak_nm"]),
            measured_qy=math.nan if outcomes is None else float(outcomes["qy"]),
            lab_clock_h=float(campaign.lab_clock_h),  # wall-clock lab time (K reactors)
            ask_s=float(trial.proposal_time_s or 0.0), in_band=in_band, good=good,
            forecast=dict(forecast) if isinstance(forecast, dict) else None,
            reactor=reactor, experiment_lab_h=duration))
        if good and self.hit is None:
            self.hit = len(self.steps)
            campaign.request_stop()


def _first(steps: list[Step], attr: str) -> Step | None:
    return next((s for s in steps if getattr(s, attr)), None)


def run_job(job: Job) -> RunResult:
    """Run one cell through the campaign loop until a good hit or the budget.

    Torch is pinned to one thread: parallelism comes from running cells side by side, and
    oversubscribed BLAS threads would only slow every cell down.

    Raises:
        CellInterrupted: The campaign was stopped by a signal before its end (no result).
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch  # noqa: PLC0415 (set the thread count before any work, in the worker)

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    config = job.campaign_config()
    executors = {spec.name: job.member.executor(seed=spec.seed, settling=job.settling,
                                                flush=job.flush)
                 for spec in config.reactor_specs()}
    optimizer = injected_optimizer(job.strategy.kind, job.problem.space,
                                   job.problem.objective(), job.seed)
    judge = _Judge(job, executors)
    root = tempfile.mkdtemp(prefix="autolab-cell-")
    try:
        campaign = Campaign.create(config, root, executor=dict(executors), tracker=NullTracker(),
                                   optimizer=optimizer, on_trial=judge, forecast=job.forecast)
        result = campaign.run()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if result.stop_reason is StopReason.INTERRUPTED and judge.hit is None:
        raise CellInterrupted(f"cell {job.cell_id} was interrupted after "
                              f"{len(judge.steps)} experiments")
    return _result(job, judge.steps, str(result.stop_reason), time.perf_counter() - t_start)


def _result(job: Job, steps: list[Step], stop_reason: str, wall_s: float) -> RunResult:
    hit, band = _first(steps, "good"), _first(steps, "in_band")
    problem = job.problem
    return RunResult(
        strategy=job.strategy.name, kind=job.strategy.kind, member=job.member.name,
        member_kind=job.member.label or job.member.kind, split=job.member.split, seed=job.seed,
        target_nm=problem.target_nm, tolerance_nm=problem.tolerance_nm, budget=job.budget,
        threshold_qy=job.threshold_qy, best_reachable_qy=job.best_reachable_qy,
        experiments_to_success=None if hit is None else hit.experiment,
        lab_hours_to_success=None if hit is None else hit.lab_clock_h,
        experiments_to_in_band=None if band is None else band.experiment,
        lab_hours_to_in_band=None if band is None else band.lab_clock_h,
        experiments=len(steps), failed=sum(s.failed for s in steps),
        best_true_qy_in_band=max((s.true_qy for s in steps if s.in_band), default=0.0),
        ask_s_total=sum(s.ask_s for s in steps), wall_s=wall_s, stop_reason=stop_reason,
        worker=_worker_label(), steps=tuple(steps))


def _worker_label() -> str:
    """``host:pid``, plus the Ray node id when the cell runs as a Ray task."""
    label = f"{platform.node()}:{os.getpid()}"
    ray: Any = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        label += f":node={ray.get_runtime_context().get_node_id()[:12]}"
    return label
