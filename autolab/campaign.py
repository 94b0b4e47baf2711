"""The campaign: the one stateful class that closes the loop.

One experiment (docs/architecture.md)::

    optimizer.ask -> executor.run -> analyze -> journal (fsync) -> optimizer.tell -> tracker.log

The journal is written before anything else sees a result, so a crash at any instant loses no
finished experiment and never repeats one. Resume rebuilds everything from the journal: the
optimizer is re-told every finished trial in order (its proposals are a pure function of seed and
data, so it proposes what an uninterrupted campaign would have), the executor gets the state it had
after the last finished trial, and an experiment that was in flight is recorded as interrupted and
run again with the same index and conditions.

MLflow is a view, not the record: if the tracking server is unreachable the campaign goes on, and
the next successful log (or ``autolab sync``) replays what MLflow missed, exactly once.

What the optimizer is told (live, and again on resume, in journal order):

* completed and failed trials: their outcomes (``None`` for a failure), with the analyzer's
  1-sigma uncertainties as known noise when the optimizer takes them;
* a chemist's rejection of a proposal (review mode, :mod:`autolab.steer`): the proposed point as
  ``None``, so the feasibility model learns to avoid that region; no lab time was spent;
* *not* invalid trials: a device fault (a pump that did not pump) says nothing about chemistry,
  and an experiment invalidated after the fact (a leak found later) stops counting on resume.

"Best" follows :meth:`ObjectiveSpec.rank_key`: any experiment inside every target band ranks
before any outside, whatever their scores.

A safe end is part of the result: after the executor is closed (and after a safety trip) every
shutdown step's result is journaled and shown; a failed step ends the campaign as a device failure
naming the device that is still unsafe and what a person must do.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import yaml

from autolab.analysis import analyze
from autolab.analysis.qy import restated_qy_err
from autolab.config import CampaignConfig, parse_campaign
from autolab.dynamic_step import dynamic_runner
from autolab.exceptions import (
    AutolabError,
    AwaitingDecision,
    CampaignInterrupted,
    ConfigError,
    DeviceFault,
    ExperimentFailed,
    HardwareError,
    JournalError,
    SafetyTrip,
    TrackingError,
)
from autolab.executors import Executor
from autolab.executors.cstr import CSTRExecutor
from autolab.executors.simulated import SimulatedExecutor
from autolab.objective import Target
from autolab.optimizer import Optimizer, make_optimizer
from autolab.prior import twin_prior
from autolab.records import (
    Conditions,
    Decision,
    Features,
    Measurement,
    Trial,
    TrialOrigin,
    TrialStatus,
    experiment_label,
)
from autolab.schedule import order_batch
from autolab.steer import (
    Proposal,
    Reviewer,
    best_trial,
    check_conditions,
    make_reviewer,
)
from autolab.tracking import Journal, JournalHeader, JournalState, NullTracker, Tracker, sync
from autolab.tracking.journal import JOURNAL_NAME as JOURNAL_NAME  # noqa: PLC0414 (re-export)

#: Snapshot of the earlier campaigns' data a campaign reuses (``reuse:``), next to its journal.
REUSED_NAME = "reused.json"
#: Device-log lines journaled with a safety trip (the most recent ones).
TRIP_LOG_LINES = 400
#: The campaign plots in MLflow are redrawn after an experiment only while redrawing them has
#: taken at most this share of the campaign's wall time since the last redraw (and always after
#: the first experiment and at the end). A redraw takes 1-3 s of CPU: nothing against a real
#: experiment (25-90 min, so they are redrawn after every one), but half the wall time of a
#: simulated campaign that redraws after each of its first five experiments (the twin demo:
#: 30 s tracked, 13 s untracked).
PLOT_TIME_SHARE = 0.1
#: Forecast fields logged as ``forecast_<name>`` metrics of each experiment (MLflow), and the
#: latest on the campaign run (:func:`autolab.tracking.sync.latest_forecast`); the counts are
#: in experiments, the rest probabilities.
FORECAST_METRICS = ("p_spec_met", "p_next", "expected_experiments", "median_experiments",
                    "q80_experiments", "p_improve", "p_in_band")


class RigDoesNotRecover(HardwareError):
    """A reactor faulted ``budget.max_rig_events_in_a_row`` times before an experiment started.

    Attributes:
        device: The device of the last fault.
    """

    def __init__(self, message: str, device: str) -> None:
        self.device = device
        super().__init__(message)


class StopReason(StrEnum):
    """Why a campaign stopped."""

    MAX_EXPERIMENTS = "budget: experiments"
    MAX_LAB_HOURS = "budget: lab hours"
    TARGET_REACHED = "target reached"
    NO_IMPROVEMENT = "no improvement"
    INTERRUPTED = "interrupted"
    FORECAST = "forecast"
    OUT_OF_REACH = "target out of reach"
    WAITING = "waiting for a decision"
    DEVICE_UNSAFE = "device failure"


class ShutdownStepLike(Protocol):
    """One step of an executor's shutdown report (``autolab.hardware.safety.ShutdownStep``)."""

    name: str
    device: str
    ok: bool
    detail: str
    action: str


@dataclass
class CampaignResult:
    """What a finished (or stopped) campaign hands back.

    Attributes:
        stop_reason: Why it stopped.
        trials: Every finished trial (completed and failed), in order.
        best: The best trial by :meth:`ObjectiveSpec.rank_key` (in-band first), if any.
        run_dir: Folder holding the journal and the campaign file.
        tracking_run_id: MLflow parent run id, if tracked.
        untracked: Trials the tracker has not recorded yet (run ``autolab sync``).
    """

    stop_reason: StopReason
    trials: list[Trial]
    best: Trial | None
    run_dir: Path
    tracking_run_id: str | None
    untracked: list[int] = field(default_factory=list)
    unsafe: tuple[str, ...] = ()


#: Counts from here on are shown as "out of sight": a thousand experiments is years of reactor
#: time, and "within 43583 more" reads as a precision the forecast does not have.
SIGHT_EXPERIMENTS = 1000


def forecast_line(index: int, forecast: Mapping[str, Any], left: int | None = None) -> str:
    """The forecast after an experiment, for the progress display.

    The count is shown as its median and 80 % quantile (a chemist's "how far": even odds
    within m more, 80 % within q more); a forecast journaled before those fields existed shows
    its expected count. With ``left`` (the experiments the budget still allows, when some
    are), a count past it is said as such ("beyond the 3 left") instead of a number no campaign
    will reach; counts past :data:`SIGHT_EXPERIMENTS` are out of sight either way. The line
    says it is the model's: its P(spec met) is the model's belief about the noise-free
    product, which can be low while a reading already meets the stop rule's thresholds.
    """
    # no budget given or none left: the count says how far a longer run has to go
    if left and left + 1 < SIGHT_EXPERIMENTS:
        sight, beyond = left + 1, f"beyond the {left} left"
        none = f"no good hit {beyond}"
    else:
        sight, beyond, none = SIGHT_EXPERIMENTS, "out of sight", "no good hit in sight"
    median, q80 = forecast.get("median_experiments"), forecast.get("q80_experiments")
    if median is None or q80 is None:
        expected = forecast["expected_experiments"]
        more = f"~{expected:.0f} more to a good hit" if expected < sight else none
    elif median >= sight:
        more = none
    else:
        more = (f"good hit within {median:.0f} more at even odds, "
                + (f"within {q80:.0f} at 80 %" if q80 < sight else f"80 % {beyond}"))
    # before anything is in band there is nothing to improve on: the number is the best chance
    # any condition has of landing in band (what the out-of-reach stop reads)
    last = (f"best P(in band) {forecast['p_in_band']:.2f}"
            if forecast.get("in_band_found") is False
            else f"P(next improves) {forecast['p_improve']:.2f}")
    return (f"forecast after {experiment_label(index)} (model): "
            f"P(spec met) {forecast['p_spec_met']:.2f}, "
            f"P(next is a good hit) {forecast['p_next']:.2f} ({more}), {last}")


def out_of_reach_note(config: CampaignConfig, trials: Sequence[Trial]) -> str:
    """Why a campaign stopped as "target out of reach", for its closing lines.

    Names each band with the range the experiments measured, and what the chemist can change:
    the model's judgement is about the searched space at the fixed conditions, not about the
    chemistry.
    """
    bands = []
    for term in config.objective.terms:
        if not isinstance(term, Target):
            continue
        seen = [o[term.outcome] for t in trials if (o := t.outcomes()) is not None]
        measured = f" (measured {min(seen):.4g}-{max(seen):.4g})" if seen else ""
        bands.append(f"{term.outcome} {term.value:g} ± {term.tolerance:g}{measured}")
    stop = config.stop
    chance = 100 * (stop.forecast_reach_below or 0.0)
    return (f"no experiment was in band: {'; '.join(bands)}. After each of the last "
            f"{stop.forecast_reach_after} experiments the model gave no condition of the "
            f"searched space more than a {chance:.2g} % chance of it "
            "(stop.forecast_reach_below). Widen the space, change a fixed condition, or aim "
            "at a reachable target.")


def collect_reused(config: CampaignConfig) -> dict[str, Any]:
    """The earlier campaigns' data a campaign reuses (``reuse:``), ready for ``optimizer.reuse``.

    Every finished experiment of each earlier campaign (its own and manual ones; never an
    invalid one) whose fixed conditions match this campaign's and whose searched conditions lie
    in this campaign's space. Failed experiments come as ``None`` (the reactor failed there).

    Raises:
        ConfigError: A folder holds no readable campaign journal.
    """
    space = config.space.build()
    names = config.objective.outcome_names
    out: dict[str, Any] = {"sources": [], "conditions": [], "outcomes": [], "outcome_sd": []}
    for folder in config.reuse:
        path = Path(folder) / JOURNAL_NAME if Path(folder).is_dir() else Path(folder)
        try:
            state = Journal.read(path)
        except JournalError as err:
            raise ConfigError(f"reuse: {folder}: not an earlier campaign ({err})") from err
        used = skipped = 0
        stated_rel = _stated_qy_calibration(state.header.config)
        for t in state.trials:
            point = _reusable(t, config, space)
            if t.status is TrialStatus.INVALID:
                continue
            if point is None:
                skipped += 1
                continue
            outcomes = t.outcomes()
            out["conditions"].append(point)
            out["outcomes"].append(None if outcomes is None else {k: outcomes[k] for k in names})
            out["outcome_sd"].append(_restated(_sd(t, names), t, stated_rel,
                                               config.analyzer.qy_calibration_rel))
            used += 1
        out["sources"].append({"path": str(folder), "campaign": state.header.campaign_id,
                               "n": used, "skipped": skipped})
    return out


def _reusable(trial: Trial, config: CampaignConfig, space: Any) -> dict[str, float] | None:
    """The searched conditions of an earlier experiment, or None if this campaign cannot use it."""
    fixed = config.space.fixed
    if any(not math.isclose(trial.conditions.get(k, math.nan), v, rel_tol=1e-9)
           for k, v in fixed.items()):
        return None
    try:
        return dict(space.check({n: trial.conditions[n] for n in config.space.parameters}))
    except (KeyError, ConfigError):
        return None


#: The QY calibration term in the QY sds of a journal written before the campaign file's
#: ``analyzer:`` block: none (that analyzer stated the statistical QY sd only).
UNSTATED_QY_CALIBRATION = 0.0


def _stated_qy_calibration(config: Mapping[str, Any]) -> float:
    """The QY calibration term an earlier campaign's QY sds hold (its journaled config)."""
    block = config.get("analyzer")
    if not isinstance(block, Mapping):
        return UNSTATED_QY_CALIBRATION
    return float(block.get("qy_calibration_rel", UNSTATED_QY_CALIBRATION))


def _restated(sd: dict[str, float] | None, trial: Trial, stated_rel: float,
              rel: float) -> dict[str, float] | None:
    """``sd`` with the QY's restated from ``stated_rel`` to ``rel`` (:func:`restated_qy_err`)."""
    if sd is None or "qy" not in sd or trial.features is None or stated_rel == rel:
        return sd
    return {**sd, "qy": restated_qy_err(trial.features.qy, sd["qy"], stated_rel=stated_rel,
                                        rel=rel)}


def _sd(trial: Trial, names: tuple[str, ...]) -> dict[str, float] | None:
    if trial.features is None or trial.outcomes() is None:
        return None
    errs = trial.features.to_dict()
    sd = {k: float(errs[f"{k}_err"]) for k in names
          if isinstance(errs.get(f"{k}_err"), float) and math.isfinite(errs[f"{k}_err"])}
    return sd or None


def _without(queue: Sequence[Mapping[str, float]], started: Sequence[Mapping[str, float]]
             ) -> list[dict[str, float]]:
    """``queue`` less one entry equal to each of ``started`` (searched values, to 1e-9).

    The rest of a batch is journaled with each result, review and rig event, not with each start:
    a proposal taken from the queue after the last such record is still in the journaled queue,
    and is also in flight when the process dies, so resume runs it again as lost. Dropping it from
    the queue keeps it from running twice.
    """
    rest = [dict(q) for q in queue]
    for done in started:
        for k, q in enumerate(rest):
            if q.keys() == done.keys() and all(
                    math.isclose(q[n], done[n], rel_tol=1e-9, abs_tol=1e-12) for n in q):
                del rest[k]
                break
    return rest


def _read_reused(run_dir: Path) -> dict[str, Any]:
    path = run_dir / REUSED_NAME
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise JournalError(f"{path}: the snapshot of reused earlier campaigns is missing or "
                           f"unreadable ({err}); it is needed to resume exactly") from err
    return data


def _cstr_executor(config: CampaignConfig) -> Executor:
    assert config.executor.devices is not None  # the schema requires it
    return CSTRExecutor.from_file(str(config.executor.devices), **config.executor.settings)


def _twin_executor(config: CampaignConfig) -> Executor:
    return SimulatedExecutor(config.executor.twin, seed=config.seed, **config.executor.settings)


#: Executor kind -> builder (both run the one procedure: simulated rig, serial rig).
EXECUTOR_BUILDERS: dict[str, Callable[[CampaignConfig], Executor]] = {
    "twin": _twin_executor, "cstr": _cstr_executor}


def make_executor(config: CampaignConfig) -> Executor:
    """The executor a campaign file asks for (:data:`EXECUTOR_BUILDERS` by kind)."""
    return EXECUTOR_BUILDERS[config.executor.kind](config)


def make_executors(config: CampaignConfig) -> dict[str, Executor]:
    """One executor per reactor of the campaign (``reactors:``, or the one of ``executor:``).

    Each is built by :func:`make_executor` from its own executor section and seed.
    """
    return {spec.name: make_executor(config.model_copy(
                update={"executor": spec.executor, "seed": spec.seed}))
            for spec in config.reactor_specs()}


def runs_in_thread(executor: Executor) -> bool:
    """Whether ``executor`` runs on a wall clock (then parallel reactors run in threads).

    An executor says so with a ``virtual_clock`` attribute; without it, only the serial CSTR
    executor is taken to run in wall time. A virtual-clock executor runs in the campaign's thread
    at once, and its result waits in the event queue until the lab clock reaches it.
    """
    virtual = getattr(executor, "virtual_clock", None)
    if isinstance(virtual, bool):
        return not virtual
    return isinstance(executor, CSTRExecutor)


@dataclass(frozen=True)
class RunOutcome:
    """What one reactor's executor did for one experiment, captured when ``run`` returned.

    The clock, reagent totals and state are taken at that instant: a simulated reactor's result
    may wait in the event queue while other reactors' results are delivered first.
    """

    measurement: Measurement | None
    error: str | None
    fault: DeviceFault | None
    clock_h: float
    reagent_total_ml: dict[str, float]
    executor_state: dict[str, Any]


@dataclass
class Running:
    """An experiment started on a reactor and not yet delivered to the campaign."""

    index: int
    proposal: dict[str, float]
    conditions: Conditions
    proposal_time_s: float
    prediction: dict[str, Any] | None
    decision: dict[str, Any]
    future: Future[RunOutcome]


@dataclass
class Reactor:
    """One reactor the campaign drives, with its own lab clock.

    Attributes:
        name: Its name (``reactors:``; ``reactor`` for a single-reactor campaign).
        executor: Runs its experiments.
        clock_h: Its lab clock at its last delivered experiment, h.
        reagent_total_ml: Its reagent totals at that experiment, mL.
        last_conditions: The conditions of its last experiment (where its heaters are), if any.
        running: The experiment it runs now, if any.
        redo: Searched conditions to run again first (an experiment the process lost on resume,
            or a proposal a rig event kept).
        rig_faults_in_a_row: Rig events since its last delivered trial.
    """

    name: str
    executor: Executor
    clock_h: float = 0.0
    reagent_total_ml: dict[str, float] = field(default_factory=dict)
    last_conditions: dict[str, float] | None = None
    running: Running | None = None
    redo: list[dict[str, float]] = field(default_factory=list)
    rig_faults_in_a_row: int = 0


def _execute(executor: Executor, conditions: Conditions) -> RunOutcome:
    """Run one experiment on ``executor``; a failed or faulted experiment is an outcome too."""
    measurement: Measurement | None = None
    error: str | None = None
    fault: DeviceFault | None = None
    try:
        measurement = executor.run(conditions)
    except DeviceFault as err:
        fault, error = err, f"device fault: {err.device}: {err}"
    except ExperimentFailed as err:
        error = str(err)
    return RunOutcome(measurement, error, fault, float(executor.lab_clock_h),
                      dict(executor.reagent_ml), executor.state_dict())


def new_run_dir(root: Path, name: str) -> Path:
    """A fresh, unique folder for one campaign: ``root/<name>-<UTC time>-<random>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = root / f"{name}-{stamp}-{secrets.token_hex(2)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def _check_no_forecast_stop(config: CampaignConfig) -> None:
    """Refuse a campaign without the per-step forecast whose stop rules read it.

    Raises:
        ConfigError: ``stop.forecast_spec_met``, ``forecast_improve_below`` or
            ``forecast_reach_below`` is set.
    """
    rules = [f"stop.{name}" for name in ("forecast_spec_met", "forecast_improve_below",
                                         "forecast_reach_below")
             if getattr(config.stop, name) is not None]
    if rules:
        raise ConfigError(f"{', '.join(rules)} needs the per-step forecast, which is turned off "
                          "(forecast=False); remove the rule or turn the forecast on")


def plots_due(since_s: float, took_s: float, share: float = PLOT_TIME_SHARE) -> bool:
    """Whether the campaign plots may be redrawn: their redraws stay within ``share`` of the time.

    Args:
        since_s: Wall seconds since the last redraw ended.
        took_s: Wall seconds the last redraw took.
        share: The most of the wall time redraws may take.
    """
    return took_s <= share * (since_s + took_s)


class Campaign:
    """A closed-loop optimization campaign; create with :meth:`create` or :meth:`resume`.

    Args:
        config: The validated campaign.
        run_dir: Folder of this campaign (journal, campaign file copy).
        journal: The open journal.
        executor: Runs experiments: one executor, or one per reactor by name (parallel
            reactors, in the order of ``reactors:``).
        optimizer: Proposes conditions.
        tracker: Records to MLflow (or nowhere).
        on_trial: Called after each finished trial (the CLI's progress display).
        on_event: Called with a line of text for what a person must see besides trials (a
            device fault, each shutdown step, a rejection); the CLI prints it.
        reviewer: Asks a chemist about every proposal before it runs (review mode).
        forecast: Compute the stopping forecast after every experiment (default). A benchmark
            that only compares optimizers turns it off: the forecast never changes a proposal
            (it runs in a forked RNG on the fit the next ask reuses) but its joint posterior
            draws cost a large share of a simulated campaign's CPU.

    Raises:
        ConfigError: ``forecast`` is off but a stop rule reads the forecast.
    """

    def __init__(self, config: CampaignConfig, run_dir: Path, journal: Journal, *,
                 executor: Executor | Mapping[str, Executor], optimizer: Optimizer,
                 tracker: Tracker, on_trial: Callable[[Campaign, Trial], None] | None = None,
                 on_event: Callable[[str], None] | None = None,
                 reviewer: Reviewer | None = None, forecast: bool = True) -> None:
        if not forecast:
            _check_no_forecast_stop(config)
        self.config = config
        self.run_dir = run_dir
        self.journal = journal
        executors = (executor if isinstance(executor, Mapping)
                     else {config.reactor_specs()[0].name: executor})
        if not executors:
            raise ConfigError("a campaign needs at least one executor")
        self.reactors: dict[str, Reactor] = {n: Reactor(n, e) for n, e in executors.items()}
        #: The first reactor's executor (the only one of a single-reactor campaign).
        self.executor: Executor = next(iter(executors.values()))
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.optimizer = optimizer
        self.tracker = tracker
        self.on_trial = on_trial
        self.on_event = on_event
        self.reviewer = reviewer
        self.trials: list[Trial] = []
        self.unsafe: tuple[str, ...] = ()
        self._fixed = dict(config.space.fixed)
        self._queue: list[dict[str, float]] = []
        self._plots_drawn_at = -math.inf  # time.monotonic() after the last redraw
        self._plots_took_s = 0.0  # how long that sync with its redraw took
        self._predictions: list[dict[str, Any] | None] = []
        self._stop_requested = False
        self._ending = False  # run() is shutting down: Ctrl-C no longer interrupts
        self._told_ending = False
        self._previous_handlers: dict[signal.Signals, Any] = {}
        self.forecast: dict[str, Any] | None = None
        self._forecast_on = forecast
        self.n_reused = 0
        self._takes_sd = "outcome_sd" in inspect.signature(optimizer.tell).parameters

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, config: CampaignConfig, runs_root: str | Path = "runs", *,
               executor: Executor | Mapping[str, Executor] | None = None,
               tracker: Tracker | None = None,
               optimizer: Optimizer | None = None,
               on_trial: Callable[[Campaign, Trial], None] | None = None,
               on_event: Callable[[str], None] | None = None,
               reviewer: Reviewer | None = None, forecast: bool = True) -> Campaign:
        """Start a new campaign in a fresh folder under ``runs_root``.

        Executor, optimizer and tracker are built (or taken as given) *before* the folder is
        made, so a campaign that cannot be assembled leaves no orphan run folder; so is a
        ``forecast`` switch that a stop rule contradicts (see :class:`Campaign`).
        """
        if not forecast:
            _check_no_forecast_stop(config)
        mode = getattr(reviewer, "mode", None)  # journal the review mode, so resume keeps it
        if mode is not None and mode != config.review.mode:
            config = config.model_copy(
                update={"review": config.review.model_copy(update={"mode": mode})})
        parts = cls._parts(config, executor, optimizer, tracker)
        reused = collect_reused(config)
        run_dir = new_run_dir(Path(runs_root), config.name)
        (run_dir / "campaign.yaml").write_text(
            yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        if config.reuse:  # a snapshot: resume reuses exactly this, even if those campaigns grow
            (run_dir / REUSED_NAME).write_text(json.dumps(reused), encoding="utf-8")
        header = JournalHeader.new(config.name, config.model_dump(mode="json"), seed=config.seed,
                                   campaign_id=run_dir.name)
        journal = Journal.create(run_dir / JOURNAL_NAME, header)
        campaign = cls(config, run_dir, journal, executor=parts[0], optimizer=parts[1],
                       tracker=parts[2], on_trial=on_trial, on_event=on_event,
                       reviewer=reviewer or make_reviewer(config.review.mode),
                       forecast=forecast)
        campaign._reuse(reused)
        for source in reused["sources"]:
            journal.append_note(f"reusing {source['n']} experiment(s) of {source['campaign']} "
                                f"({source['path']}); {source['skipped']} skipped (outside this "
                                "space or other fixed conditions)")
        campaign._start_tracking()
        return campaign

    @classmethod
    def resume(cls, run_dir: str | Path, *,
               executor: Executor | Mapping[str, Executor] | None = None,
               tracker: Tracker | None = None, optimizer: Optimizer | None = None,
               on_trial: Callable[[Campaign, Trial], None] | None = None,
               on_event: Callable[[str], None] | None = None,
               reviewer: Reviewer | None = None) -> Campaign:
        """Continue a campaign from its journal.

        An injected ``optimizer`` must be fresh (nothing told): resume tells it the journal.

        Raises:
            JournalError: No journal in ``run_dir``, or it is corrupt.
            ConfigError: The journaled campaign no longer validates.
        """
        run_dir = Path(run_dir)
        path = run_dir / JOURNAL_NAME
        if not path.exists():
            raise JournalError(f"no campaign journal at {path}; expected a folder made by "
                               "'autolab run' (see runs/)")
        config = parse_campaign(Journal.read(path).header.config, f"{path} (header)")
        parts = cls._parts(config, executor, optimizer, tracker)
        journal = Journal.open(path)
        campaign = cls(config, run_dir, journal, executor=parts[0], optimizer=parts[1],
                       tracker=parts[2], on_trial=on_trial, on_event=on_event,
                       reviewer=reviewer or make_reviewer(config.review.mode))
        try:
            if config.reuse:
                campaign._reuse(_read_reused(run_dir))
            campaign._restore(journal.state)
        except BaseException:
            journal.close()
            raise
        return campaign

    @staticmethod
    def _parts(config: CampaignConfig, executor: Executor | Mapping[str, Executor] | None,
               optimizer: Optimizer | None, tracker: Tracker | None
               ) -> tuple[Executor | Mapping[str, Executor], Optimizer, Tracker]:
        """The executor(s), optimizer and tracker the config asks for, unless given.

        Raises:
            ConfigError: Given executors by name that are not the campaign's reactors.
        """
        names = [spec.name for spec in config.reactor_specs()]
        if isinstance(executor, Mapping) and list(executor) != names:
            raise ConfigError(f"executors {list(executor)} do not match the campaign's "
                              f"reactors {names}")
        if executor is not None and not isinstance(executor, Mapping) and len(names) > 1:
            raise ConfigError(f"the campaign drives {len(names)} reactors {names}; give one "
                              "executor per reactor, by name")
        if optimizer is None:
            settings = dict(config.optimizer.settings)
            if settings.get("prior", "none") == "twin":  # the nominal twin as prior knowledge
                settings["outcome_prior"] = twin_prior(fixed=config.space.fixed)
            optimizer = make_optimizer(config.optimizer.kind, config.space.build(),
                                       config.objective, seed=config.seed, **settings)
        return executor or make_executors(config), optimizer, tracker or NullTracker()

    @property
    def _cooling_weight(self) -> float:
        """How much longer a degree of cooling takes than one of heating (twin: its rates)."""
        twin = self.config.executor.twin
        if self.config.executor.kind != "twin" or twin.cooling_rate_c_per_min <= 0:
            return 1.0
        return float(twin.heating_rate_c_per_min / twin.cooling_rate_c_per_min)

    def _reuse(self, reused: Mapping[str, Any]) -> None:
        """Give the optimizer the earlier campaigns' data (not this campaign's experiments)."""
        self.n_reused = len(reused["conditions"])
        if not self.n_reused:
            return
        reuse = getattr(self.optimizer, "reuse", None)
        if not callable(reuse):
            raise ConfigError(f"reuse: optimizer {self.optimizer.name!r} cannot take earlier "
                              "campaigns' data; use botorch")
        reuse(reused["conditions"], reused["outcomes"], reused["outcome_sd"])

    def _restore(self, state: JournalState) -> None:
        """Bring optimizer, executor and queue to where the journal ends."""
        for index in state.in_flight:  # check before writing anything
            self._searched(state.started[index].conditions, f"started experiment {index}")
        self.trials = list(state.trials)
        if self.config.mode == "dynamic":  # each reading with its step, and the runner's state
            dynamic_runner(self).restore(state)
        else:
            conditions, outcomes, sds = self.journal_data(state)
            if conditions:
                self._tell(conditions, outcomes, sds)
        self._restore_reactors(state)
        lost = [self._searched(state.started[i].conditions) for i in state.in_flight]
        self._queue = _without(self._restored_queue(state), lost)
        self._redo_after_rig_events(state)
        for index in state.in_flight:  # lost with the process: run again on the same reactor
            self.journal.append_interrupted(index, "the campaign process ended while it ran")
            started = state.started[index]
            self._reactor_of(started.reactor).redo.append(self._searched(started.conditions))
            self._event(f"{experiment_label(index)} was cut off when the campaign stopped; its "
                        "conditions run again under the next number")
        if self.journal.dropped_bytes:
            torn = self.journal.dropped_bytes
            self._event(f"the journal's last line was torn by the crash ({torn} bytes, an "
                        "unfinished record) and was dropped; nothing finished was lost")
        self._restore_forecast(state)
        if state.tracker_run_id is None:
            self._start_tracking()
        self._sync()

    def _reactor_of(self, name: str | None) -> Reactor:
        """The reactor named in a journal record (the first one for records without a name).

        Raises:
            JournalError: The journal names a reactor this campaign does not drive.
        """
        if not name:
            return next(iter(self.reactors.values()))
        try:
            return self.reactors[name]
        except KeyError:
            raise JournalError(f"the journal names reactor {name!r}, which the campaign does not "
                               f"drive (its reactors: {list(self.reactors)})") from None

    @staticmethod
    def _restored_queue(state: JournalState) -> list[dict[str, float]]:
        """The queued rest of a batch where the journal ends.

        The last trial's, unless a review or a rig event came after it (the latest of those:
        a review of experiment ``i`` comes before its start, a rig event ending ``i`` after it).
        """
        queue: list[dict[str, float]] = (state.last_extra or {}).get("queue", [])
        here = len(state.trials)
        marks = [(int(r["index"]), 0, r.get("queue", [])) for r in state.reviews
                 if r["position"] == here]
        marks += [(int(e["index"]), 1, e["extra"].get("queue", [])) for e in state.rig_events
                  if e["position"] == here]
        return max(marks, key=lambda m: (m[0], m[1]))[2] if marks else queue

    def _redo_after_rig_events(self, state: JournalState) -> None:
        """A proposal a rig event kept, not started again before the process ended, runs first."""
        for event in state.rig_events:
            reactor = self._reactor_of(event.get("reactor"))
            later = any(i > int(event["index"]) and self._reactor_of(s.reactor) is reactor
                        for i, s in state.started.items())
            if not later:
                reactor.redo.append(self._searched(event["proposal"], "rig event"))

    def _restore_reactors(self, state: JournalState) -> None:
        """Each reactor's executor state, clock, reagents and heaters after its last trial.

        A rig event after a reactor's last trial moved its clock and state on (the lab time it
        took counts); the heaters' last conditions stay those of the last trial.
        """
        last: dict[str, tuple[int, dict[str, Any]]] = {}
        for trial in state.trials:
            extra = state.extras.get(trial.index) or {}
            if extra.get("origin") == TrialOrigin.MANUAL.value or not extra:
                continue  # added by hand: no reactor of this campaign ran it
            reactor = self._reactor_of(extra.get("reactor"))
            reactor.last_conditions = dict(trial.conditions)
            last[reactor.name] = (trial.index, extra)
        for event in state.rig_events:
            name = self._reactor_of(event.get("reactor")).name
            if int(event["index"]) > last.get(name, (-1, {}))[0]:
                last[name] = (int(event["index"]), dict(event["extra"]))
        for reactor in self.reactors.values():
            reactor.rig_faults_in_a_row = state.rig_faults_in_a_row.get(reactor.name, 0)
        for name, (_, extra) in last.items():
            reactor = self.reactors[name]
            reactor.clock_h = float(extra.get("reactor_clock_h", extra.get("lab_clock_h", 0.0)))
            totals = extra.get("reactor_reagent_total_ml", extra.get("reagent_total_ml"))
            reactor.reagent_total_ml = {k: float(v) for k, v in (totals or {}).items()}
            if "executor_state" in extra:
                reactor.executor.load_state_dict(extra["executor_state"])

    def _restore_forecast(self, state: JournalState) -> None:
        """The forecast after the last told experiment.

        Recomputed (and journaled) if the process died before it was journaled, so the stop
        rules decide as they would have.
        """
        last = next((t for t in reversed(state.trials) if t.status is not TrialStatus.INVALID),
                    None)
        if last is None:
            return
        self.forecast = state.extras.get(last.index, {}).get("forecast")
        if self.forecast is None and last is state.trials[-1]:
            self._show(self._update_forecast(last.index))

    def journal_data(self, state: JournalState) -> tuple[
            list[dict[str, float]], list[dict[str, float] | None], list[dict[str, float] | None]]:
        """What the optimizer is told, in journal order: conditions, outcomes and their 1-sigma.

        Completed and failed trials, and rejected proposals (as ``None``, where they were
        rejected); never invalid trials (device faults, or invalidated after the fact).
        """
        if self.config.mode == "dynamic":  # every streamed observation
            return dynamic_runner(self).journal_data(state)
        rejected: dict[int, list[dict[str, float]]] = {}
        for r in state.reviews:
            if r["decision"] == Decision.REJECT.value:
                rejected.setdefault(int(r["position"]), []).append(
                    self._searched(r["proposed"], f"review of {experiment_label(r['index'])}"))
        conditions: list[dict[str, float]] = []
        outcomes: list[dict[str, float] | None] = []
        sds: list[dict[str, float] | None] = []
        for position in range(len(state.trials) + 1):
            for point in rejected.get(position, []):
                conditions.append(point)
                outcomes.append(None)
                sds.append(None)
            if position < len(state.trials):
                trial = state.trials[position]
                if trial.status is TrialStatus.INVALID:
                    continue
                conditions.append(self._searched(trial.conditions,
                                                 experiment_label(trial.index)))
                outcomes.append(self._outcomes(trial))
                sds.append(self._outcome_sd(trial))
        return conditions, outcomes, sds

    def _tell(self, conditions: list[dict[str, float]], outcomes: list[dict[str, float] | None],
              sds: list[dict[str, float] | None]) -> None:
        """Tell the optimizer, with the analyzer's uncertainties if it takes known noise."""
        if self._takes_sd:
            tell: Callable[..., None] = self.optimizer.tell  # older protocols lack outcome_sd
            tell(conditions, outcomes, outcome_sd=sds)
        else:
            self.optimizer.tell(conditions, outcomes)

    def _start_tracking(self) -> None:
        """Open the campaign's parent run; if the tracker is down, sync opens it later."""
        cfg = self.config
        tags = {"executor": cfg.executor.kind, "seed": str(cfg.seed),
                "optimizer": cfg.optimizer.kind}
        try:
            run_id = self.tracker.start_campaign(cfg.name, cfg.model_dump(mode="json"), tags,
                                                 self._campaign_params(),
                                                 campaign_id=self.run_dir.name)
        except TrackingError as err:
            self.journal.append_note(f"tracking unavailable at start: {err}")
            self._event(f"tracking unavailable, journal only (later: autolab sync "
                        f"{self.run_dir}): {err}")
            return
        if self.tracker.keeps_records:
            self.journal.set_tracker_run(run_id, self.tracker.tracking_uri)

    def _sync(self, final: bool = False) -> None:
        """Log what the tracker has not seen yet (this trial, and any backlog of an outage).

        Campaign-level plots are redrawn after the first experiment, at the end, and otherwise
        only while their redraws stay within ``PLOT_TIME_SHARE`` of the wall time
        (:func:`plots_due`).
        """
        now = time.monotonic()
        refresh = final or len(self.trials) <= 1 or plots_due(
            now - self._plots_drawn_at, self._plots_took_s)
        try:
            sync(self.journal, self.tracker, refresh_plots=refresh)
        except TrackingError as err:
            self.journal.append_note(f"tracking failed, will retry: {err}")
        if refresh:
            self._plots_drawn_at = time.monotonic()
            self._plots_took_s = self._plots_drawn_at - now

    def _campaign_params(self) -> dict[str, Any]:
        """Params only this process knows; the tracker takes the rest from the config.

        The set-up (bounds, objective, mode, executor, stop rules, review...) comes from the
        journaled config (:func:`autolab.tracking.base.campaign_params`), so a campaign run
        first opened by ``autolab sync`` shows the same.
        """
        params: dict[str, Any] = {}
        if self.reviewer is not None and self.config.review.mode == "off":
            params["review"] = "on"  # a reviewer given in code, not by the campaign file
        if self.config.reuse:
            params["reused_experiments"] = self.n_reused
            params["reused_from"] = ", ".join(str(p) for p in self.config.reuse)
        return params

    def _event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    # ----------------------------------------------------------------------------- the loop
    def _searched(self, conditions: Mapping[str, Any], where: str = "proposal") -> dict[str, float]:
        """The searched parameters of ``conditions``.

        Raises:
            JournalError: A searched parameter is missing or not a number (a hand-edited or
                foreign journal record, named by ``where``).
        """
        names = self.config.space.parameters
        try:
            return {n: float(conditions[n]) for n in names}
        except (KeyError, TypeError, ValueError) as err:
            raise JournalError(f"{where}: conditions {dict(conditions)!r:.200} lack a number for "
                               f"{err}; expected every searched parameter {list(names)}") from err

    def _pending(self) -> list[dict[str, float]]:
        """Searched conditions of the experiments running now (on any reactor)."""
        return [r.running.proposal for r in self.reactors.values() if r.running is not None]

    def _order(self, reactor: Reactor, points: list[dict[str, float]]) -> list[int]:
        """The order of ``points`` that cuts heater swings for ``reactor`` (``order_batch``)."""
        return order_batch(reactor.last_conditions, [{**p, **self._fixed} for p in points],
                           self._cooling_weight)

    def _next_proposal(self, reactor: Reactor
                       ) -> tuple[dict[str, float], float, dict[str, Any] | None]:
        """The next conditions for ``reactor``, the seconds it took to propose them, the prediction.

        An experiment the process lost comes first (resume), then the queued rest of a batch
        (the one with the least heater changeover from where this reactor is), then a new ask that
        treats the experiments running on the other reactors as pending. A batch is ordered to
        cut heater swings from this reactor's state.
        """
        if reactor.redo:
            return reactor.redo.pop(0), 0.0, None
        if self._queue:
            if len(self._predictions) != len(self._queue):
                self._predictions = [None] * len(self._queue)  # resumed: predictions not kept
            i = self._order(reactor, self._queue)[0]
            return self._queue.pop(i), 0.0, self._predictions.pop(i)
        pending = self._pending()
        t0 = time.perf_counter()
        n = self.config.optimizer.batch_size
        batch = self.optimizer.ask(n, pending=pending) if pending else self.optimizer.ask(n)
        elapsed = time.perf_counter() - t0
        predictions: list[dict[str, Any] | None] = list(
            getattr(self.optimizer, "last_predictions", None) or [])
        predictions += [None] * (len(batch) - len(predictions))
        order = self._order(reactor, list(batch))
        batch = [batch[i] for i in order]
        predictions = [predictions[i] for i in order]
        self._queue.extend(batch[1:])
        self._predictions = predictions[1:]
        return batch[0], elapsed, predictions[0]

    def _outcomes(self, trial: Trial) -> dict[str, float] | None:
        """What the optimizer is told: the outcomes its objective reads, or None (failed)."""
        outcomes = trial.outcomes()
        if outcomes is None:
            return None
        return {k: outcomes[k] for k in self.config.objective.outcome_names}

    def _outcome_sd(self, trial: Trial) -> dict[str, float] | None:
        """The analyzer's 1-sigma of each told outcome (``<name>_err``), finite ones only."""
        return _sd(trial, self.config.objective.outcome_names)

    def check_conditions(self, values: Mapping[str, float]) -> dict[str, float]:
        """Complete and check conditions a person chose (:func:`autolab.steer.check_conditions`).

        The executor's own safety check (``check_conditions``) is used when it has one.
        """
        envelope = getattr(self.executor, "check_conditions", None)
        return check_conditions(self.config, values,
                                envelope=envelope if callable(envelope) else None)

    def _reviewed(self, index: int, reactor: Reactor
                  ) -> tuple[dict[str, float], float, dict[str, Any] | None, dict[str, Any]]:
        """The next proposal a chemist approved or edited; rejections are journaled and told.

        Returns:
            Searched conditions, proposal seconds, prediction, and the extra about the decision
            (``origin``, ``decision``, ``reviewer``...).
        """
        attempt = 0
        while True:
            proposal, elapsed, prediction = self._next_proposal(reactor)
            full = {**proposal, **self._fixed}
            if self.reviewer is None:
                return proposal, elapsed, prediction, {"origin": TrialOrigin.PROPOSED.value}
            try:
                review = self.reviewer.review(
                    Proposal(index, full, prediction, attempt, self.run_dir),
                    self.check_conditions)
            except BaseException:
                self._queue.insert(0, proposal)  # not decided: it is proposed again
                self._predictions.insert(0, prediction)
                raise
            record = {"index": index, "decision": review.decision.value,
                      "reviewer": review.reviewer, "time": review.time, "reason": review.reason,
                      "proposed": full, "prediction": prediction, "queue": list(self._queue)}
            if review.decision is Decision.REJECT:
                self.journal.append_record("review", {**record, "conditions": None})
                self._tell([proposal], [None], [None])
                self._event(f"{experiment_label(index)}: proposal rejected by {review.reviewer}"
                            f" ({review.reason}); the optimizer will avoid that region")
                attempt += 1
                continue
            if review.decision is Decision.EDIT:
                final = self.check_conditions(review.conditions or {})
                origin = TrialOrigin.EDITED
            else:
                final, origin = full, TrialOrigin.PROPOSED
            self.journal.append_record("review", {**record, "conditions": final})
            decision = {"origin": origin.value, "decision": review.decision.value,
                        "reviewer": review.reviewer, "decided": review.time,
                        "reason": review.reason, "proposed": full}
            return self._searched(final), elapsed, prediction, decision

    @property
    def lab_clock_h(self) -> float:
        """The campaign's wall-clock lab time, h: the latest reactor clock at a delivered result.

        Results are delivered in lab-time order, so this is the lab time of the last one.
        """
        return max(r.clock_h for r in self.reactors.values())

    @property
    def reagent_total_ml(self) -> dict[str, float]:
        """Reagents used by every reactor up to its last delivered experiment, mL by reagent."""
        out: dict[str, float] = {}
        for r in self.reactors.values():
            for k, v in r.reagent_total_ml.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def running(self) -> list[Running]:
        """The experiments started and not yet delivered, in start order."""
        return sorted((r.running for r in self.reactors.values() if r.running is not None),
                      key=lambda x: x.index)

    def step(self) -> Trial | None:
        """Start experiments on the idle reactors, then deliver the next result and return it.

        ``None`` when that result is a rig event (a device fault found before any reagent was
        fed, see :meth:`_rig_event`): journaled, but not an experiment.

        One reactor: one experiment end to end. K reactors: every idle reactor gets an
        experiment (within the budget), each proposal treating those running on the others as
        pending; then the result that comes first *in lab time* is delivered (journaled, told,
        tracked). A simulated reactor computes its result at once, but it waits in this event
        queue until the lab clock reaches it, so no proposal ever knows a result from its
        future. Hardware reactors run in threads and come back in the same order.
        """
        if self.config.mode == "dynamic":  # ramps read all the way through
            trial = dynamic_runner(self).step()
            if trial is not None:  # a trial ends the reactor's rig events in a row
                for reactor in self.reactors.values():
                    reactor.rig_faults_in_a_row = 0
            return trial
        self._start_idle()
        return self._deliver(self._next_finished())

    def _may_start(self) -> bool:
        """Whether the budget and the stop rules allow one more experiment to start now."""
        budget = self.config.budget
        if self._stop_requested:
            return False
        if len(self.lab_trials()) + len(self.running()) >= budget.max_experiments:
            return False
        return budget.max_lab_hours is None or self.lab_clock_h < budget.max_lab_hours

    def _start_idle(self) -> None:
        """Give every idle reactor (earliest clock first) an experiment, within the budget.

        With nothing running, one experiment starts whatever the budget says: the caller asked
        for a step.
        """
        order = list(self.reactors)
        idle = sorted((r for r in self.reactors.values() if r.running is None),
                      key=lambda r: (r.clock_h, order.index(r.name)))
        for i, reactor in enumerate(idle):
            if (i > 0 or self.running()) and not self._may_start():
                return
            self._start(reactor)

    def _start(self, reactor: Reactor) -> None:
        """Propose (and review) an experiment for ``reactor``, journal it, hand it over."""
        index = self.journal.state.next_index
        proposal, proposal_time_s, prediction, decision = self._reviewed(index, reactor)
        conditions = Conditions.from_mapping({**proposal, **self._fixed})
        self.journal.append_started(index, conditions.as_dict(), proposal_time_s,
                                    reactor=reactor.name)
        if runs_in_thread(reactor.executor) and len(self.reactors) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=len(self.reactors),
                                                thread_name_prefix="autolab-reactor")
            future = self._pool.submit(_execute, reactor.executor, conditions)
        else:  # a virtual clock: run now, deliver in lab-time order
            future = Future()
            future.set_result(_execute(reactor.executor, conditions))
        reactor.running = Running(index, proposal, conditions, proposal_time_s, prediction,
                                  decision, future)

    def _next_finished(self) -> Reactor:
        """The reactor whose running experiment ends first in lab time (waits for one to end).

        Raises:
            Whatever a reactor's executor raised besides a failed experiment (a safety trip, a
            hardware error): the campaign ends, every executor goes to its safe state.
        """
        busy = [(r, r.running) for r in self.reactors.values() if r.running is not None]
        if not busy:
            raise AutolabError("no experiment is running and none may start (budget spent)")
        wait([run.future for _, run in busy], return_when=FIRST_COMPLETED)
        done = [(r, run) for r, run in busy if run.future.done()]
        for _, run in done:
            err = run.future.exception()
            if err is not None:
                raise err
        return min(done, key=lambda d: (d[1].future.result().clock_h, d[1].index))[0]

    def _deliver(self, reactor: Reactor) -> Trial | None:
        """Analyze, journal, tell and track the result ``reactor`` has finished.

        ``None`` for a rig event (:meth:`_rig_event`): no trial.
        """
        run = reactor.running
        assert run is not None
        outcome = run.future.result()
        if outcome.fault is not None and outcome.fault.before_feed:
            reactor.running = None
            self._rig_event(reactor, run.index, run.proposal, outcome.fault,
                            clock_h=outcome.clock_h, reagent_total_ml=outcome.reagent_total_ml,
                            executor_state=outcome.executor_state)
            return None
        reactor.rig_faults_in_a_row = 0
        index, conditions = run.index, run.conditions
        measurement, error, fault = outcome.measurement, outcome.error, outcome.fault
        features: Features | None = None
        if measurement is not None:
            features = analyze(measurement, self.config.analyzer.settings())
            if not features.usable:
                error = "no usable emission: " + (", ".join(features.flags.names()) or "unknown")
        status = (TrialStatus.INVALID if fault is not None
                  else TrialStatus.FAILED if error else TrialStatus.COMPLETED)
        objective: float | None = None
        if features is not None and status is TrialStatus.COMPLETED:
            outcomes = features.outcomes()
            if self.config.objective.is_feasible(outcomes):
                objective = self.config.objective.score(outcomes)
        trial = Trial(index=index, conditions=conditions.as_dict(), status=status,
                      features=features, objective=objective, error=error,
                      proposal_time_s=run.proposal_time_s, measurement=measurement)
        reactor.running = None
        reactor.clock_h = outcome.clock_h
        reactor.reagent_total_ml = dict(outcome.reagent_total_ml)
        reactor.last_conditions = conditions.as_dict()
        extra: dict[str, Any] = {
            "executor_state": outcome.executor_state,
            "reactor": reactor.name,
            "reactor_clock_h": outcome.clock_h,
            "reactor_reagent_total_ml": dict(outcome.reagent_total_ml),
            "queue": self._queue,
            "lab_clock_h": self.lab_clock_h,
            "reagent_total_ml": self.reagent_total_ml,
            "prediction": run.prediction,
            **run.decision,
        }
        if fault is not None:
            extra["device"] = fault.device
            extra["device_log"] = list(fault.device_log[-TRIP_LOG_LINES:])
        self.journal.append_trial(trial, extra=extra)
        self.trials.append(trial)
        forecast_text: str | None = None
        if fault is not None:
            self._event(f"{experiment_label(index)} invalid: {error}; not told to the "
                        "optimizer (the result says nothing about chemistry)")
        else:
            self._tell([run.proposal], [self._outcomes(trial)], [self._outcome_sd(trial)])
            forecast_text = self._update_forecast(index)
        self._sync()
        if self.on_trial is not None:
            self.on_trial(self, trial)
        self._show(forecast_text)
        return trial

    def _rig_event(self, reactor: Reactor, index: int, proposal: dict[str, float],
                   fault: DeviceFault, *, clock_h: float, reagent_total_ml: Mapping[str, float],
                   executor_state: dict[str, Any]) -> None:
        """Journal a device fault found before any reagent was fed: a rig event, no experiment.

        A valve turned, a heater straying or a stirrer stopped between experiments says nothing
        about the proposal, and nothing of it was fed or measured: no trial is journaled, the
        optimizer hears nothing and the experiment budget is not spent. The lab time and the
        solvent it took count (the reactor's clock and reagents move on to ``clock_h``,
        ``reagent_total_ml`` and ``executor_state``, the executor's at the fault). The proposal
        runs again on the same reactor (its procedure commands every device afresh, which is the
        recovery); a fault that keeps coming stops the campaign after
        ``budget.max_rig_events_in_a_row``. The one path for both modes: a steady experiment
        and a dynamic trajectory (:mod:`autolab.dynamic_step`) end here alike.

        Raises:
            RigDoesNotRecover: The reactor's rig events in a row reached the limit.
        """
        reactor.clock_h = clock_h
        reactor.reagent_total_ml = dict(reagent_total_ml)
        reactor.redo.insert(0, proposal)
        reactor.rig_faults_in_a_row += 1
        n, limit = reactor.rig_faults_in_a_row, self.config.budget.max_rig_events_in_a_row
        self.journal.append_rig_event(index, {
            "reactor": reactor.name, "device": fault.device, "reason": str(fault),
            "device_log": list(fault.device_log[-TRIP_LOG_LINES:]), "proposal": proposal,
            "in_a_row": n,
            "extra": {"executor_state": executor_state, "reactor_clock_h": clock_h,
                      "reactor_reagent_total_ml": dict(reagent_total_ml),
                      "lab_clock_h": self.lab_clock_h, "reagent_total_ml": self.reagent_total_ml,
                      "queue": self._queue}})
        where = "" if len(self.reactors) == 1 else f" of reactor {reactor.name}"
        self._event(f"rig event{where} before {experiment_label(index)} fed anything: "
                    f"{fault}; not an experiment (not counted, not told to the optimizer); its "
                    f"conditions run again ({n} in a row, at most {limit})")
        if n >= limit:
            raise RigDoesNotRecover(
                f"{fault.device}: reactor {reactor.name} faulted {n} times in a row before an "
                f"experiment could start (last: {fault}); the rig does not recover: check it, "
                f"then resume (the proposal is kept)", fault.device)

    def _forecast(self) -> dict[str, Any] | None:
        """The model's stopping forecast after the last tell (BoTorch; else ``None``).

        "Good" QY is the stop rule's ``qy_min`` when set, else 90 % of the best the model
        expects in band (the optimizer's default).
        """
        forecast = getattr(self.optimizer, "forecast", None)
        if not callable(forecast):
            return None
        qy_min = self.config.stop.qy_min
        maximized = {t.outcome for t in self.config.objective.terms if t.kind == "maximize"}
        thresholds = {"qy": qy_min} if qy_min is not None and "qy" in maximized else None
        result = forecast(thresholds=thresholds)
        return None if result is None else dict(result.to_dict())

    def _show(self, text: str | None) -> None:
        """Show ``text`` as an event line, if there is one."""
        if text is not None:
            self._event(text)

    def _update_forecast(self, index: int) -> str | None:
        """Forecast after experiment ``index`` (told already): journal it; return its line.

        The caller shows the line *after* the experiment's own progress line, so a chemist
        never reads a forecast above the result it was made from.

        Journaled as a ``forecast`` record after the trial record, so a result is never held
        back by a model fit; the tracker logs it as ``forecast_*`` metrics of that experiment
        and of the campaign run (it derives score terms, target status, predictions, lab time
        and reagents itself).
        """
        if not self._forecast_on:
            return None
        self.forecast = self._forecast()
        if self.forecast is None:
            return None
        metrics = {f"forecast_{k}": float(self.forecast[k])
                   for k in FORECAST_METRICS if k in self.forecast}
        self.journal.append_record("forecast", {"index": index, "forecast": self.forecast,
                                                "metrics": metrics})
        left = max(self.config.budget.max_experiments - len(self.lab_trials()), 0)
        return forecast_line(index, self.forecast, left)

    @property
    def tracking_run_id(self) -> str | None:
        """The tracker's campaign run, once it has one."""
        return self.journal.state.tracker_run_id

    # ----------------------------------------------------------------------------- stop rules
    def best(self) -> Trial | None:
        """The best experiment: in-band first, then feasible, then score (``rank_key``).

        Only completed trials with usable outcomes count (never an invalid one). An in-band
        experiment that misses an outcome constraint still ranks before any out-of-band one; on
        ties the earlier experiment wins.
        """
        return best_trial(self.config.objective, self.trials)

    def lab_trials(self) -> list[Trial]:
        """Trials this campaign ran on its executor (not the manual ones added from outside)."""
        extras = self.journal.state.extras
        return [t for t in self.trials
                if extras.get(t.index, {}).get("origin") != TrialOrigin.MANUAL.value]

    def target_reached(self, trial: Trial) -> bool:
        """Whether ``trial`` meets every target and the configured quality thresholds.

        A reading whose stated one-sigma exceeds a band's half-width cannot tell in band from
        out of band (a transient reading of a dynamic step can carry tens of nm), so it never
        ends a campaign as "target reached"; a steady reading (a fraction of a nm) always can.
        """
        stop = self.config.stop
        outcomes = trial.outcomes()
        objective = self.config.objective
        if outcomes is None or not any(isinstance(t, Target) for t in objective.terms):
            return False
        if not (objective.within_target(outcomes) and objective.is_feasible(outcomes)):
            return False
        sd = _sd(trial, objective.outcome_names) or {}
        if any(sd.get(t.outcome, 0.0) > t.tolerance
               for t in objective.terms if isinstance(t, Target)):
            return False
        if stop.qy_min is not None and outcomes["qy"] < stop.qy_min:
            return False
        return stop.fwhm_max_nm is None or outcomes["fwhm_nm"] <= stop.fwhm_max_nm

    def should_stop(self) -> StopReason | None:
        """The first stop rule that applies now, or None to go on.

        The experiment budget counts every experiment run on the executor (an invalid one used
        lab time too), never the manual ones added from outside, rejected proposals or rig
        events (a fault found before anything of the proposal was fed: not an experiment).
        """
        budget, stop = self.config.budget, self.config.stop
        if self._stop_requested:
            return StopReason.INTERRUPTED
        if stop.target_reached and self.trials and self.target_reached(self.trials[-1]):
            return StopReason.TARGET_REACHED
        if len(self.lab_trials()) >= budget.max_experiments:
            return StopReason.MAX_EXPERIMENTS
        if budget.max_lab_hours is not None and self.lab_clock_h >= budget.max_lab_hours:
            return StopReason.MAX_LAB_HOURS
        if self._forecast_says_stop():
            return StopReason.FORECAST
        if self.out_of_reach():
            return StopReason.OUT_OF_REACH
        k = stop.no_improvement_after
        if k is not None:
            best = self.best()
            if best is not None and len(self.trials) - 1 - self.trials.index(best) >= k:
                return StopReason.NO_IMPROVEMENT
        return None

    def _forecast_says_stop(self) -> bool:
        """The configurable forecast stop: spec met with enough probability, or little to gain."""
        stop, fc = self.config.stop, self.forecast
        if fc is None:
            return False
        if stop.forecast_spec_met is not None and fc["p_spec_met"] >= stop.forecast_spec_met:
            return True
        return (stop.forecast_improve_below is not None and fc["best_index"] is not None
                and fc["p_improve"] < stop.forecast_improve_below)

    def out_of_reach(self) -> bool:
        """``stop.forecast_reach_below``: the band looks out of the reactor's reach.

        True when the objective has a target, no experiment has been measured in its band, and
        the forecasts journaled after the last ``forecast_reach_after`` experiments (failed ones
        included; invalid ones are not the reactor's answer and are skipped) were all made
        after the initial design and each gave no condition more than ``forecast_reach_below``
        probability of landing in band. Read from the journal, so a resumed campaign decides as
        the uninterrupted one would.
        """
        stop, objective = self.config.stop, self.config.objective
        if stop.forecast_reach_below is None or not objective.has_target:
            return False
        best = self.best()  # in-band first: in band if anything is
        outcomes = None if best is None else best.outcomes()
        if outcomes is not None and objective.within_target(outcomes):
            return False
        told = [t for t in self.trials if t.status is not TrialStatus.INVALID]
        recent = told[-stop.forecast_reach_after:]
        if len(recent) < stop.forecast_reach_after:
            return False
        extras = self.journal.state.extras
        forecasts = [extras.get(t.index, {}).get("forecast") for t in recent]
        return all(isinstance(f, dict) and f.get("design_done", False)
                   and f.get("p_in_band", 1.0) < stop.forecast_reach_below for f in forecasts)

    def close(self) -> None:
        """Put every reactor in its safe state and release it (idempotent).

        Every executor is closed even if one fails; the first failure is raised after.
        """
        first: AutolabError | None = None
        for reactor in self.reactors.values():
            try:
                reactor.executor.close()
            except AutolabError as err:
                first = first or err
        if first is not None:
            raise first

    # ----------------------------------------------------------------------------- safe end
    def _journal_shutdown(self, report: Any, when: str) -> tuple[str, ...]:
        """Journal and show every shutdown step; return the devices left unsafe."""
        steps: tuple[ShutdownStepLike, ...] = tuple(getattr(report, "steps", ()) or ())
        unsafe: list[str] = []
        for step in steps:
            device = step.device or "rig"
            if step.ok:
                line = f"shutdown ({when}): {step.name} [{device}]: ok"
                if step.detail:
                    line += f" ({step.detail})"
            else:
                unsafe.append(device)
                line = (f"shutdown ({when}): {step.name} [{device}]: FAILED: {step.detail}; "
                        f"{device} may be unsafe; do this now: "
                        f"{step.action or 'check it by hand'}")
            self.journal.append_note(line)
            self._event(line)
        return tuple(dict.fromkeys(unsafe))

    def _safe_end(self, error: BaseException | None) -> tuple[str, ...]:
        """Close every reactor's executor, journal its shutdown reports; the unsafe devices."""
        unsafe: list[str] = []
        trip = getattr(error, "shutdown", None) if isinstance(error, SafetyTrip) else None
        if trip is not None:
            unsafe += self._journal_shutdown(trip, "safety trip")
        for reactor in self.reactors.values():
            where = "" if len(self.reactors) == 1 else f" of reactor {reactor.name}"
            try:
                reactor.executor.close()
            except AutolabError as err:
                line = f"closing the executor{where} failed: {err}; check every device by hand"
                self.journal.append_note(line)
                self._event(line)
                unsafe.append(getattr(err, "device", "executor"))
            report = getattr(reactor.executor, "last_shutdown", None)
            if report is not None and report is not trip:
                unsafe += self._journal_shutdown(report, "close" + where)
        if self._pool is not None:  # the executors are closed: nothing is left to wait for
            self._pool.shutdown(wait=False, cancel_futures=True)
        return tuple(dict.fromkeys(unsafe))

    def _unsafe_reason(self, unsafe: tuple[str, ...]) -> str:
        actions = [f"{d}: {a}" for d, a in self._actions().items() if d in unsafe]
        text = f"unsafe device(s): {', '.join(unsafe)}"
        return f"{text}; {'; '.join(actions)}" if actions else text

    def _actions(self) -> dict[str, str]:
        """What a person must do per unsafe device, from the journaled shutdown steps."""
        out: dict[str, str] = {}
        for note in self.journal.state.notes:
            if "FAILED" in note and "do this now: " in note and note.startswith("shutdown ("):
                device = note.split("[", 1)[1].split("]", 1)[0]
                out.setdefault(device, note.rsplit("do this now: ", 1)[1])
        return out

    def _journal_stop(self, reason: StopReason | None, error: BaseException | None) -> None:
        """Record how the loop ended: interrupted experiments, the stop, the tracker's status."""
        if error is None:
            why = ""
            status = "KILLED" if reason in (StopReason.INTERRUPTED, StopReason.WAITING) else (
                "FAILED" if reason is StopReason.DEVICE_UNSAFE else "FINISHED")
        else:
            reason = StopReason.INTERRUPTED
            user = isinstance(error, KeyboardInterrupt)
            why = "stopped by the user" if user else f"{type(error).__name__}: {error}"
            status = "KILLED" if user else "FAILED"
        for index in self.journal.state.in_flight:
            self.journal.append_interrupted(index, why or "stopped during the experiment")
            device_log = getattr(error, "device_log", ())
            if device_log:  # a safety trip: keep what the devices said, next to the trip
                self.journal.append_note(f"device log of experiment {index} before the trip:\n"
                                         + "\n".join(device_log[-TRIP_LOG_LINES:]))
        if self.unsafe:
            why = (why + "; " if why else "") + self._unsafe_reason(self.unsafe)
        if reason is None:
            return
        self._sync(final=True)
        self.journal.append_stopped(f"{reason.value}: {why}" if why else reason.value, status)
        with contextlib.suppress(TrackingError):
            self.tracker.end_campaign(status, reason.value)

    def request_stop(self) -> None:
        """Ask the loop to stop after the current experiment (what Ctrl-C does first).

        With parallel reactors no new experiment starts, and the ones running finish and are
        delivered first; a second Ctrl-C stops at once (they are journaled as interrupted).
        """
        self._stop_requested = True

    def _draining(self, reason: StopReason) -> bool:
        """Whether a stop asked for (Ctrl-C) still waits for experiments running elsewhere."""
        return reason is StopReason.INTERRUPTED and self._stop_requested and bool(self.running())

    # ----------------------------------------------------------------------------- run
    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """First SIGINT/SIGTERM: finish the current experiment, then stop; second: stop now.

        Each press is answered at once (a real experiment runs for an hour: a chemist who sees
        nothing presses again, which cuts the experiment off). Once the campaign is ending (the
        rig's shutdown, the stop record, the journal's close) further Ctrl-C presses are
        ignored with a message: cutting the shutdown short would leave the rig unsafe and the
        stop unjournaled. SIGTERM gets its previous handler back for the ending
        (:meth:`_ending_signals`): a program that terminates the process (a benchmark pool
        stopping its workers; by default it ends the process) means it.
        """
        def handler(signum: int, frame: FrameType | None) -> None:
            if self._ending:
                if not self._told_ending:
                    self._told_ending = True
                    self._event("already stopping: the rig is being put in its safe state and "
                                "the journal closed; wait for it")
                return
            if self._stop_requested:
                raise KeyboardInterrupt
            self.request_stop()
            self._event("stop requested: the current experiment finishes first (Ctrl-C again "
                        "stops at once; that experiment is then run again on resume)")

        previous: dict[signal.Signals, Any] = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread: no signal handling
            previous = {}
        self._previous_handlers = previous
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _ending_signals(self) -> None:
        """Enter the ending: Ctrl-C is ignored from here on, SIGTERM is what it was before.

        By default SIGTERM ends the process, as it did during the ending before this guard
        existed; a pool that terminates a worker relies on that.
        """
        self._ending = True
        if signal.SIGTERM in self._previous_handlers:
            signal.signal(signal.SIGTERM, self._previous_handlers[signal.SIGTERM])

    def run(self) -> CampaignResult:
        """Run until a stop rule fires.

        Whatever happens (a stop rule, Ctrl-C, a device error), the executor ends in its safe
        state and every shutdown step is journaled, an experiment left unfinished is journaled as
        interrupted (it is re-run on resume), the stop is journaled, and the journal is released.
        A failed shutdown step makes the stop :attr:`StopReason.DEVICE_UNSAFE`. A proposal that
        waits for a chemist's decision stops the loop with :attr:`StopReason.WAITING`.
        """
        reason: StopReason | None = None
        error: BaseException | None = None
        with self._signals():  # kept through the ending, which later presses must not cut short
            try:
                while (reason := self.should_stop()) is None or self._draining(reason):
                    self.step()
            except AwaitingDecision as err:
                reason = StopReason.WAITING
                self._event(str(err))
            except BaseException as err:
                error = err
            finally:
                self._ending_signals()
                in_flight = tuple(self.journal.state.in_flight)
                self.unsafe = self._safe_end(error)
                if self.unsafe and error is None:
                    reason = StopReason.DEVICE_UNSAFE
                self._journal_stop(reason, error)
                self.journal.close()
        if isinstance(error, KeyboardInterrupt):
            raise CampaignInterrupted(in_flight, str(self.run_dir)) from error
        if error is not None:
            raise error
        assert reason is not None  # the loop ends only on a stop reason, else with an error
        return CampaignResult(stop_reason=reason, trials=list(self.trials), best=self.best(),
                              run_dir=self.run_dir, tracking_run_id=self.tracking_run_id,
                              untracked=(list(self.journal.state.untracked)
                                         if self.tracker.keeps_records else []),
                              unsafe=self.unsafe)
