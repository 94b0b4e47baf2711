"""The campaign: the one stateful class that closes the loop.

One experiment (DESIGN.md)::

    optimizer.ask -> executor.run -> analyze -> journal (fsync) -> optimizer.tell -> tracker.log

The journal is written before anything else sees a result, so a crash at any instant loses no
finished experiment and never repeats one. Resume rebuilds everything from the journal: the
optimizer is re-told every finished trial in order (its proposals are a pure function of seed and
data, so it proposes what an uninterrupted campaign would have), the executor gets the state it had
after the last finished trial, and an experiment that was in flight is recorded as interrupted and
run again with the same index and conditions.

MLflow is a view, not the record: if the tracking server is unreachable the campaign goes on, and
the next successful log (or ``autolab sync``) replays what MLflow missed, exactly once.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from autolab.analysis import analyze
from autolab.config import CampaignConfig, parse_campaign
from autolab.exceptions import ExperimentFailed, JournalError, TrackingError
from autolab.executors import Executor
from autolab.executors.cstr import CSTRExecutor
from autolab.executors.simulated import SimulatedExecutor
from autolab.objective import Target
from autolab.optimizer import Optimizer, make_optimizer
from autolab.records import Conditions, Features, Measurement, Trial, TrialStatus
from autolab.tracking import Journal, JournalHeader, JournalState, NullTracker, Tracker, sync

JOURNAL_NAME = "journal.jsonl"
#: Device-log lines journaled with a safety trip (the most recent ones).
TRIP_LOG_LINES = 400
#: Redraw the campaign plots in MLflow every this many experiments (and at the end).
PLOT_EVERY = 5


class StopReason(StrEnum):
    """Why a campaign stopped."""

    MAX_EXPERIMENTS = "budget: experiments"
    MAX_LAB_HOURS = "budget: lab hours"
    TARGET_REACHED = "target reached"
    NO_IMPROVEMENT = "no improvement"
    INTERRUPTED = "interrupted"


@dataclass
class CampaignResult:
    """What a finished (or stopped) campaign hands back.

    Attributes:
        stop_reason: Why it stopped.
        trials: Every finished trial (completed and failed), in order.
        best: The best completed trial by objective score, if any.
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


def make_executor(config: CampaignConfig) -> Executor:
    """The executor a campaign file asks for: the twin, or the CSTR cascade over serial."""
    if config.executor.kind == "cstr":
        assert config.executor.devices is not None  # the schema requires it
        return CSTRExecutor.from_file(str(config.executor.devices), **config.executor.settings)
    return SimulatedExecutor(config.executor.twin, seed=config.seed)


def new_run_dir(root: Path, name: str) -> Path:
    """A fresh, unique folder for one campaign: ``root/<name>-<UTC time>-<random>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = root / f"{name}-{stamp}-{secrets.token_hex(2)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


class Campaign:
    """A closed-loop optimization campaign; create with :meth:`create` or :meth:`resume`.

    Args:
        config: The validated campaign.
        run_dir: Folder of this campaign (journal, campaign file copy).
        journal: The open journal.
        executor: Runs experiments.
        optimizer: Proposes conditions.
        tracker: Records to MLflow (or nowhere).
        on_trial: Called after each finished trial (the CLI's progress display).
    """

    def __init__(self, config: CampaignConfig, run_dir: Path, journal: Journal, *,
                 executor: Executor, optimizer: Optimizer, tracker: Tracker,
                 on_trial: Callable[[Campaign, Trial], None] | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.journal = journal
        self.executor = executor
        self.optimizer = optimizer
        self.tracker = tracker
        self.on_trial = on_trial
        self.trials: list[Trial] = []
        self._fixed = dict(config.space.fixed)
        self._queue: list[dict[str, float]] = []
        self._predictions: list[dict[str, Any] | None] = []
        self._stop_requested = False

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, config: CampaignConfig, runs_root: str | Path = "runs", *,
               executor: Executor | None = None, tracker: Tracker | None = None,
               on_trial: Callable[[Campaign, Trial], None] | None = None) -> Campaign:
        """Start a new campaign in a fresh folder under ``runs_root``."""
        run_dir = new_run_dir(Path(runs_root), config.name)
        (run_dir / "campaign.yaml").write_text(
            yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        header = JournalHeader.new(config.name, config.model_dump(mode="json"), seed=config.seed,
                                   campaign_id=run_dir.name)
        journal = Journal.create(run_dir / JOURNAL_NAME, header)
        campaign = cls._assemble(config, run_dir, journal, executor=executor,
                                      tracker=tracker, on_trial=on_trial)
        campaign._start_tracking()
        return campaign

    @classmethod
    def resume(cls, run_dir: str | Path, *, executor: Executor | None = None,
               tracker: Tracker | None = None,
               on_trial: Callable[[Campaign, Trial], None] | None = None) -> Campaign:
        """Continue a campaign from its journal.

        Raises:
            JournalError: No journal in ``run_dir``, or it is corrupt.
            ConfigError: The journaled campaign no longer validates.
        """
        run_dir = Path(run_dir)
        path = run_dir / JOURNAL_NAME
        if not path.exists():
            raise JournalError(f"no campaign journal at {path}; expected a folder made by "
                               "'autolab run' (see runs/)")
        journal = Journal.open(path)
        state = journal.state
        config = parse_campaign(state.header.config, f"{path} (header)")
        campaign = cls._assemble(config, run_dir, journal, executor=executor,
                                      tracker=tracker, on_trial=on_trial)
        campaign._restore(state)
        return campaign

    @classmethod
    def _assemble(cls, config: CampaignConfig, run_dir: Path, journal: Journal, *,
                  executor: Executor | None, tracker: Tracker | None,
                  on_trial: Callable[[Campaign, Trial], None] | None) -> Campaign:
        """The campaign object with the executor, optimizer and tracker its config asks for."""
        optimizer = make_optimizer(config.optimizer.kind, config.space.build(), config.objective,
                                   seed=config.seed, **config.optimizer.settings)
        return cls(config, run_dir, journal, executor=executor or make_executor(config),
                   optimizer=optimizer, tracker=tracker or NullTracker(), on_trial=on_trial)

    def _restore(self, state: JournalState) -> None:
        """Bring optimizer, executor and queue to where the journal ends."""
        self.trials = list(state.trials)
        if self.trials:
            self.optimizer.tell([self._searched(t.conditions) for t in self.trials],
                                [self._outcomes(t) for t in self.trials])
        extra = state.last_extra or {}
        if "executor_state" in extra:
            self.executor.load_state_dict(extra["executor_state"])
        self._queue = [dict(q) for q in extra.get("queue", [])]
        for index in reversed(state.in_flight):
            self.journal.append_interrupted(index, "the campaign process ended while it ran")
            self._queue.insert(0, self._searched(state.started[index].conditions))
        if state.tracker_run_id is None:
            self._start_tracking()
        self._sync()

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
            return
        if self.tracker.keeps_records:
            self.journal.set_tracker_run(run_id, self.tracker.tracking_uri)

    def _sync(self, final: bool = False) -> None:
        """Log what the tracker has not seen yet (this trial, and any backlog of an outage).

        Campaign-level plots are redrawn for the first few experiments, then every
        ``PLOT_EVERY`` experiments and at the end: redrawing them takes 1-2 s.
        """
        n = len(self.trials)
        refresh = final or n <= PLOT_EVERY or n % PLOT_EVERY == 0
        try:
            sync(self.journal, self.tracker, refresh_plots=refresh)
        except TrackingError as err:
            self.journal.append_note(f"tracking failed, will retry: {err}")

    def _campaign_params(self) -> dict[str, Any]:
        space = self.config.space.build()
        params: dict[str, Any] = {f"bounds.{p.name}": f"[{p.lower:g}, {p.upper:g}] {p.unit}".strip()
                                  for p in space.parameters}
        params.update({f"fixed.{k}": v for k, v in self.config.space.fixed.items()})
        params["constraints"] = "; ".join(c.describe() for c in space.constraints) or "none"
        params["objective"] = self.config.objective.describe()
        params["optimizer"] = self.config.optimizer.kind
        params.update({f"optimizer.{k}": v for k, v in self.config.optimizer.settings.items()})
        params["budget.max_experiments"] = self.config.budget.max_experiments
        return params

    # ----------------------------------------------------------------------------- the loop
    def _searched(self, conditions: Mapping[str, float]) -> dict[str, float]:
        names = self.config.space.parameters
        return {n: float(conditions[n]) for n in names}

    def _next_proposal(self) -> tuple[dict[str, float], float, dict[str, Any] | None]:
        """The next conditions, the seconds it took to propose them, the model's prediction."""
        if self._queue:
            prediction = self._predictions.pop(0) if self._predictions else None
            return self._queue.pop(0), 0.0, prediction
        t0 = time.perf_counter()
        batch = self.optimizer.ask(self.config.optimizer.batch_size)
        elapsed = time.perf_counter() - t0
        predictions: list[dict[str, Any] | None] = list(
            getattr(self.optimizer, "last_predictions", None) or [])
        predictions += [None] * (len(batch) - len(predictions))
        self._queue.extend(batch[1:])
        self._predictions = predictions[1:]
        return batch[0], elapsed, predictions[0]

    def _outcomes(self, trial: Trial) -> dict[str, float] | None:
        """What the optimizer is told: the outcomes its objective reads, or None (failed)."""
        outcomes = trial.outcomes()
        if outcomes is None:
            return None
        return {k: outcomes[k] for k in self.config.objective.outcome_names}

    def step(self) -> Trial:
        """Run one experiment end to end and return its trial (completed or failed)."""
        index = self.journal.state.next_index
        proposal, proposal_time_s, prediction = self._next_proposal()
        conditions = Conditions.from_mapping({**proposal, **self._fixed})
        self.journal.append_started(index, conditions.as_dict(), proposal_time_s)
        measurement: Measurement | None = None
        features: Features | None = None
        error: str | None = None
        try:
            measurement = self.executor.run(conditions)
        except ExperimentFailed as err:
            error = str(err)
        if measurement is not None:
            features = analyze(measurement)
            if not features.usable:
                error = "no usable emission: " + (", ".join(features.flags.names()) or "unknown")
        status = TrialStatus.FAILED if error else TrialStatus.COMPLETED
        objective: float | None = None
        if features is not None and status is TrialStatus.COMPLETED:
            outcomes = features.outcomes()
            if self.config.objective.is_feasible(outcomes):
                objective = self.config.objective.score(outcomes)
        trial = Trial(index=index, conditions=conditions.as_dict(), status=status,
                      features=features, objective=objective, error=error,
                      proposal_time_s=proposal_time_s, measurement=measurement)
        metrics = {"reagent_ml_total": sum(self.executor.reagent_ml.values())}
        if prediction is not None:
            metrics["predicted_score"] = prediction["score_mean"]
            metrics.update({f"predicted_{name}": mean_sd[0]
                            for name, mean_sd in prediction["outcomes"].items()})
        self.journal.append_trial(trial, extra={
            "executor_state": self.executor.state_dict(),
            "queue": self._queue,
            "lab_clock_h": self.executor.lab_clock_h,
            "metrics": metrics,
            "prediction": prediction,
        })
        self.trials.append(trial)
        self.optimizer.tell([proposal], [self._outcomes(trial)])
        self._sync()
        if self.on_trial is not None:
            self.on_trial(self, trial)
        return trial

    @property
    def tracking_run_id(self) -> str | None:
        """The tracker's campaign run, once it has one."""
        return self.journal.state.tracker_run_id

    # ----------------------------------------------------------------------------- stop rules
    def best(self) -> Trial | None:
        """The best trial: highest score among those meeting the outcome constraints.

        Only such trials carry an ``objective`` (see :meth:`step`).
        """
        return max((t for t in self.trials if t.objective is not None),
                   key=lambda t: t.objective if t.objective is not None else -math.inf,
                   default=None)

    def target_reached(self, trial: Trial) -> bool:
        """Whether ``trial`` meets every target and the configured quality thresholds."""
        stop = self.config.stop
        outcomes = trial.outcomes()
        objective = self.config.objective
        if outcomes is None or not any(isinstance(t, Target) for t in objective.terms):
            return False
        if not (objective.within_target(outcomes) and objective.is_feasible(outcomes)):
            return False
        if stop.qy_min is not None and outcomes["qy"] < stop.qy_min:
            return False
        return stop.fwhm_max_nm is None or outcomes["fwhm_nm"] <= stop.fwhm_max_nm

    def should_stop(self) -> StopReason | None:
        """The first stop rule that applies now, or None to go on."""
        budget, stop = self.config.budget, self.config.stop
        if self._stop_requested:
            return StopReason.INTERRUPTED
        if stop.target_reached and self.trials and self.target_reached(self.trials[-1]):
            return StopReason.TARGET_REACHED
        if len(self.trials) >= budget.max_experiments:
            return StopReason.MAX_EXPERIMENTS
        if budget.max_lab_hours is not None and self.executor.lab_clock_h >= budget.max_lab_hours:
            return StopReason.MAX_LAB_HOURS
        k = stop.no_improvement_after
        if k is not None:
            best = self.best()
            if best is not None and len(self.trials) - 1 - self.trials.index(best) >= k:
                return StopReason.NO_IMPROVEMENT
        return None

    def close(self) -> None:
        """Put the executor in its safe state and release it (idempotent)."""
        self.executor.close()

    def _journal_stop(self, reason: StopReason | None, error: BaseException | None) -> None:
        """Record how the loop ended: interrupted experiments, the stop, the tracker's status."""
        if error is None:
            why = ""
            status = "KILLED" if reason is StopReason.INTERRUPTED else "FINISHED"
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
        if reason is None:
            return
        self._sync(final=True)
        self.journal.append_stopped(f"{reason.value}: {why}" if why else reason.value)
        with contextlib.suppress(TrackingError):
            self.tracker.end_campaign(status, reason.value)

    def request_stop(self) -> None:
        """Ask the loop to stop after the current experiment (what Ctrl-C does first)."""
        self._stop_requested = True

    # ----------------------------------------------------------------------------- run
    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """First SIGINT/SIGTERM: finish the current experiment, then stop; second: stop now."""
        def handler(signum: int, frame: FrameType | None) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self.request_stop()

        previous = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread: no signal handling
            previous = {}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def run(self) -> CampaignResult:
        """Run until a stop rule fires.

        Whatever happens (a stop rule, Ctrl-C, a device error), the executor ends in its safe
        state, an experiment left unfinished is journaled as interrupted (it is re-run on
        resume), the stop is journaled, and the journal is released.
        """
        reason: StopReason | None = None
        error: BaseException | None = None
        try:
            with self._signals():
                while (reason := self.should_stop()) is None:
                    self.step()
        except BaseException as err:
            error = err
            raise
        finally:
            self.close()
            self._journal_stop(reason, error)
            self.journal.close()
        return CampaignResult(stop_reason=reason, trials=list(self.trials), best=self.best(),
                              run_dir=self.run_dir, tracking_run_id=self.tracking_run_id,
                              untracked=(list(self.journal.state.untracked)
                                         if self.tracker.keeps_records else []))
