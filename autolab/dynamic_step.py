"""One dynamic experiment per campaign step (``mode: dynamic``; issue 10, docs/dynamic.md).

A steady campaign step runs one experiment to steady state and tells the optimizer one reading.
A dynamic step ramps the reactor from where it is to the optimizer's next proposal (or through a
small designed sweep around it) and tells the optimizer every reading the ramp streamed::

    ask(1, pending = what the reactor still holds) -> plan_ramp (ramp limits, rate caps)
      -> executor.run_trajectory (frames every frame_interval_min) -> analyze every frame
      -> map_outlet (the realized history since the last settle) -> observe_batch
      -> journal (trial + every observation, frames archived) -> tell all accepted readings

What is told, and what is kept apart:

* every *accepted* observation, at its RTD-weighted mean conditions, with its sigma as known
  noise (down-weighted ones with their inflated sigma); refused ones are journaled with their
  reason and never told;
* readings flagged *steady* (the fluid in the cell saw constant conditions) are listed apart in
  the journal (``dynamic.steady``), so a person or a later analysis can use them alone;
* a trajectory whose frames show no usable emission at all is told as a failure at its end point
  (the feasibility model learns to avoid it); one whose readings were refused for the mapping's
  sake tells nothing (it says nothing about the chemistry).

The *trial* of a step (what ``best``, the stop rules and the tracker see) is one accepted
reading (``representative``, :mod:`autolab.dynamic.represent`: by default the best by the
objective's rank among the full-weight ones where there are any; ``cautious``: the one whose
one-sigma worst case ranks best), at that reading's mapped conditions, with its honest sigma as
the features' errors; the journal's
``dynamic`` extra holds the commanded and realized trajectories, every observation and where the
frames were archived.

Pending-aware: when the next proposal is asked, the fluid of roughly the last mean residence
time of the history has not reached the outlet yet; those conditions (sampled from the realized
history) are passed as pending points, so the optimizer does not propose what is already under
way. The readings of the fluid still in the tanks come with the next trajectory, whose frames are
mapped through the whole realized history since the reactor last settled.

A step whose readings were all refused told the optimizer nothing; with ``after_unread: hold``
the next step does not ask (the ask would see the same data, and may cycle between far
proposals) but holds where the reactor is until the mapping says the cell's fluid is readable
(:meth:`DynamicRunner.unread_hold_min`).

``hold_end: steady`` runs the hold at the end of a ramp in short pieces and ends it at the first
check where the mapping flags the cell's fluid steady and the steady procedure's verdict finds
the stream steady (:meth:`DynamicRunner.hold_steady`); the pieces are joined into one measurement.

A device fault or a trip mid-ramp ends the trial as invalid with the observations streamed up to
the fault journaled (not told: the conditions were not delivered as commanded); a trip still
ends the campaign, in the safe state.
"""

from __future__ import annotations

import inspect
import itertools
import math
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autolab.analysis import FeatureBatch, extract_features_batch, steady_state
from autolab.config import CampaignConfig
from autolab.dynamic import (
    DynamicObservation,
    MappingPolicy,
    RampLimits,
    Trajectory,
    map_outlet,
    observe_batch,
    plan_approach,
    ramp_duration_min,
    to_tell,
)
from autolab.dynamic.channels import TRACER_ROLES
from autolab.dynamic.confirm import confirm_due
from autolab.dynamic.represent import FULL_WEIGHT, REPRESENTATIVES
from autolab.dynamic_config import DynamicConfig
from autolab.exceptions import (
    ConfigError,
    DeviceFault,
    ExperimentFailed,
    HardwareError,
)
from autolab.executors import Executor
from autolab.executors.procedure import STEADY_WINDOW
from autolab.executors.ramp import DynamicMeasurement, cascade_geometry, feeds, partial_of
from autolab.optimizer.steps import improves
from autolab.records import (
    Conditions,
    Features,
    QualityFlag,
    QYReference,
    Trial,
    TrialOrigin,
    TrialStatus,
    experiment_label,
)
from autolab.tracking import Journal, JournalState

#: Folder next to the journal that keeps the streamed frames of each trajectory.
ARCHIVE_DIR = "dynamic"
#: Pending points sampled from the fluid still in the reactor when the next ramp is asked for.
PENDING_POINTS = 3
#: History kept for the mapping, in mean total residence times (older fluid has left).
HISTORY_RESIDENCE_TIMES = 8.0
#: ``hold_end: steady``: frame intervals of hold run between two steadiness checks.
HOLD_CHECK_FRAMES = 2
#: ``after_unread: hold``: holds in a row after steps that read nothing, before asking again.
MAX_UNREAD_HOLDS = 2
#: ``after_unread: hold``: frame intervals held past the first reading the mapping accepts.
UNREAD_READ_FRAMES = 5
#: ``after_unread: hold``: longest such hold, in mean residence times at the position.
UNREAD_HOLD_MAX_TAU = 3.0

#: Features each frame is observed in (the outcomes the objective may read).
OBSERVED = ("pl_peak_nm", "fwhm_nm", "qy")


class ReactorLike(Protocol):
    """What a dynamic step needs of a campaign's reactor (:class:`autolab.campaign.Reactor`)."""

    name: str
    executor: Executor
    clock_h: float
    reagent_total_ml: dict[str, float]
    last_conditions: dict[str, float] | None
    redo: list[dict[str, float]]


class CampaignLike(Protocol):
    """What a dynamic step needs of the campaign (:class:`autolab.campaign.Campaign`)."""

    config: CampaignConfig
    run_dir: Path
    journal: Journal
    optimizer: Any
    trials: list[Trial]

    @property
    def on_trial(self) -> Callable[[Any, Trial], None] | None:
        """Called after each finished trial."""
        ...

    @property
    def reactors(self) -> Mapping[str, Any]:
        """Reactors by name."""
        ...

    @property
    def lab_clock_h(self) -> float:
        """Campaign lab clock, h."""
        ...

    @property
    def reagent_total_ml(self) -> dict[str, float]:
        """Reagents used, mL."""
        ...

    def _searched(self, conditions: Mapping[str, Any], where: str = ...) -> dict[str, float]:
        ...

    def _tell(self, conditions: list[dict[str, float]], outcomes: list[dict[str, float] | None],
              sds: list[dict[str, float] | None]) -> None:
        ...

    def _outcomes(self, trial: Trial) -> dict[str, float] | None:
        ...

    def _outcome_sd(self, trial: Trial) -> dict[str, float] | None:
        ...

    def _update_forecast(self, index: int) -> str | None:
        ...

    def _show(self, text: str | None) -> None:
        ...

    def _sync(self, final: bool = ...) -> None:
        ...

    def _event(self, text: str) -> None:
        ...

    def _rig_event(self, reactor: Any, index: int, proposal: dict[str, float],
                   fault: DeviceFault, *, clock_h: float, reagent_total_ml: Mapping[str, float],
                   executor_state: dict[str, Any]) -> None:
        ...


@dataclass
class History:
    """The realized conditions the reactor ran since it last settled (absolute lab min).

    Attributes:
        times_min: Executor lab minutes of the samples.
        points: Realized conditions at those times.
        held_before: The reactor held ``points[0]`` before ``times_min[0]`` (a settle); False
            once older samples were dropped (fluid older than the kept history is refused).
    """

    times_min: list[float] = field(default_factory=list)
    points: list[Conditions] = field(default_factory=list)
    held_before: bool = True

    def reset(self) -> None:
        """Forget everything (a settle, a fault)."""
        self.times_min, self.points, self.held_before = [], [], True

    def extend(self, m: DynamicMeasurement) -> None:
        """Add a trajectory's realized samples (a settle before it restarts the history)."""
        self.add(m.realized, started_lab_h=m.started_lab_h, settled=m.settled)

    def add(self, realized: Trajectory, *, started_lab_h: float, settled: bool) -> None:
        """Add realized samples from ``started_lab_h`` on (live, or from the journal)."""
        if settled or not self.points:
            self.reset()
        t0 = started_lab_h * 60.0
        for t, p in zip(realized.times_min, realized.points, strict=True):
            self.times_min.append(t0 + t)
            self.points.append(p)

    def trajectory(self) -> tuple[Trajectory, float]:
        """The history as a trajectory, and its origin in executor lab minutes."""
        tr = Trajectory.from_samples(self.times_min, self.points, held_before=self.held_before)
        return tr, min(self.times_min)

    def copy(self) -> History:
        """An independent copy (a look at the stream that must not move the history on)."""
        return History(list(self.times_min), list(self.points), self.held_before)

    def trim(self, keep_min: float) -> None:
        """Drop samples older than ``keep_min`` before the last one (keeping one before)."""
        if not self.times_min:
            return
        cut = self.times_min[-1] - keep_min
        first = next((i for i, t in enumerate(self.times_min) if t >= cut), 0)
        if first > 1:
            self.times_min = self.times_min[first - 1:]
            self.points = self.points[first - 1:]
            self.held_before = False


@dataclass(frozen=True)
class StepOutcome:
    """What one trajectory gave: the run (or its partial), the observations, any error."""

    measurement: DynamicMeasurement | None
    observations: tuple[DynamicObservation, ...]
    error: str | None = None
    fault: BaseException | None = None
    no_emission: bool = False
    #: Each frame's first-exciton peak and its error, nm (NaN where none was found).
    abs_peak_nm: tuple[tuple[float, float], ...] = ()


class DynamicRunner:
    """Runs a ``mode: dynamic`` campaign's steps (see the module docstring).

    Args:
        campaign: The campaign (its journal, optimizer, reactors, tells and tracking).

    Raises:
        ConfigError: More than one reactor, a review mode, or an executor that cannot run
            trajectories.
    """

    def __init__(self, campaign: CampaignLike) -> None:
        cfg = campaign.config
        if len(campaign.reactors) != 1:
            raise ConfigError(f"mode: dynamic drives one reactor; this campaign has "
                              f"{len(campaign.reactors)} ({list(campaign.reactors)}); parallel "
                              "dynamic reactors are not implemented: drop reactors: or use "
                              "mode: steady")
        if cfg.review.mode != "off":
            raise ConfigError(f"review.mode = {cfg.review.mode!r}: a dynamic campaign moves "
                              "from proposal to proposal without stopping; expected off")
        self.c = campaign
        self.cfg: DynamicConfig = getattr(cfg, "dynamic", None) or DynamicConfig()
        self.reactor: ReactorLike = next(iter(campaign.reactors.values()))
        if not callable(getattr(self.reactor.executor, "run_trajectory", None)):
            raise ConfigError(f"executor {self.reactor.executor.name!r} cannot run "
                              "trajectories; mode: dynamic needs the twin or cstr executor")
        self.limits: RampLimits = self.cfg.limits()
        self.space = cfg.space.build()
        self.policy = self.cfg.policy()
        self.history = History()
        #: Where the reactor was commanded last (the end of the last trajectory), if known.
        self.position: Conditions | None = None
        #: Steps in a row that told the optimizer nothing (every reading refused).
        self.unread_steps = 0
        #: ``after_unread: hold``: holds in a row since the optimizer was last asked.
        self.unread_holds = 0
        #: Rebuilt from the journal (:meth:`restore`) and not yet checked against the rig.
        self.resumed = False

    # ----------------------------------------------------------------------------- step
    def step(self) -> Trial | None:
        """Ask, plan, run, analyze, map, journal, tell: one trajectory.

        ``None`` when a device fault was found before the trajectory fed anything (a rig
        event, :meth:`_rig_event`): no trial.
        """
        c, reactor = self.c, self.reactor
        index = c.journal.state.next_index
        t0 = time.perf_counter()
        hold = not reactor.redo and self.holds_unread()
        confirm = not reactor.redo and not hold and self.confirms()
        stalled = False
        if reactor.redo:
            proposal = reactor.redo.pop(0)
        elif hold or confirm:
            assert self.position is not None
            proposal = c._searched(self.position.as_dict(), "the reactor's position")
        else:
            stalled = self.stalled()
            proposal = self._ask(stalled)
        self.unread_holds = self.unread_holds + 1 if hold else 0
        elapsed = time.perf_counter() - t0
        self._check_resumed_rig()
        end = Conditions.from_mapping({**proposal, **c.config.space.fixed})
        traj, settle = self._plan(end, hold_unread=hold, confirm=confirm)
        c.journal.append_started(index, end.as_dict(), elapsed, reactor=reactor.name)
        outcome, fatal = self._run(traj, settle)
        if self._rig_event(index, proposal, outcome):
            return None
        trial = self._deliver(index, proposal, end, traj=traj, out=outcome, elapsed=elapsed,
                              hold_unread=hold, stalled=stalled, confirm=confirm)
        if fatal is not None:
            raise fatal
        return trial

    def _check_resumed_rig(self) -> None:
        """First step after a resume: continue from the journaled position only if the rig does.

        A simulated rig restored from the journal still runs its pumps at the last
        trajectory's end, so the step is planned from there as the uninterrupted campaign's
        was (and the trajectory settles first exactly where that one's would: blocks off
        their setpoints); a rig that was stopped (its safe state at the campaign's end) does
        not, so the step settles at its proposal, as after a fault. The decision to ask, hold
        or confirm was made on the journal before this.
        """
        if not self.resumed:
            return
        self.resumed = False
        procedure = self.reactor.executor.procedure  # type: ignore[attr-defined]
        if self.position is not None and not feeds(procedure, self.position, blocks=False):
            self.position = None

    def holds_unread(self) -> bool:
        """``after_unread: hold``: whether this step holds where the reactor is, unasked.

        The last step's readings were all refused (nothing told), so an ask would see the same
        data as before it; the fluid made at its end is still in the tanks, and a hold reads it.
        """
        return (self.cfg.after_unread == "hold" and self.position is not None
                and self.unread_steps > 0 and self.unread_holds < MAX_UNREAD_HOLDS)

    def confirms(self) -> bool:
        """``confirm_hold``: whether this step holds at the last step's proposal, unasked.

        A pure function of the journal (:func:`~autolab.dynamic.confirm.confirm_due` over the
        last trial's journaled observations and the earlier trials' scores), so a resumed
        campaign decides as the live one did; it holds only where the reactor's position is
        known (never on the first step after a resume or a fault), and never after a hold.
        """
        rule = self.cfg.confirm_hold
        if rule == "off" or self.position is None or not self.c.trials:
            return False
        last = self.c.trials[-1]
        dyn = (self.c.journal.state.extras.get(last.index) or {}).get("dynamic")
        if (last.status is not TrialStatus.COMPLETED or dyn is None
                or dyn.get("hold_unread") or dyn.get("confirm_hold")):
            return False
        obs = [DynamicObservation.from_dict(d) for d in dyn["observations"]]
        best = max((v for v in self._in_band_scores(self.c.trials[:-1]) if v is not None),
                   default=None)
        return confirm_due(rule, obs, self.c.config.objective, best)

    def _in_band_scores(self, trials: Sequence[Trial]) -> list[float | None]:
        """Each valid trial's score when in band and feasible (``None`` otherwise)."""
        spec = self.c.config.objective
        outcomes = [self.c._outcomes(t) for t in trials if t.status is not TrialStatus.INVALID]
        return [None if out is None else spec.in_band_score(out) for out in outcomes]

    def stalled(self) -> bool:
        """``thompson_after_stall``: whether the in-band search has stalled (ask unpending).

        A pure function of the trials (the journal): at least ``thompson_after_stall`` steps
        since the step whose trial set the best score among the in-band, feasible trials.
        """
        after = self.cfg.thompson_after_stall
        if after == 0:
            return False
        since = steps_since_best(self._in_band_scores(self.c.trials))
        return since is not None and since >= after

    def _ask(self, stalled: bool = False) -> dict[str, float]:
        """The optimizer's next proposal: with the unread fluid pending, unless stalled.

        Pending points hand the default optimizer's ask to the band-first EI, which crawls
        along the band in short, cheap steps; once that stalls, an ask with nothing pending
        gets its Thompson sampling in a trust region counted per step.
        """
        pending = [] if stalled else self.pending()
        opt = self.c.optimizer
        batch = opt.ask(1, pending=pending) if pending else opt.ask(1)
        return dict(batch[0])

    def pending(self) -> list[dict[str, float]]:
        """Searched conditions of the fluid still in the reactor (run, not yet read)."""
        if not self.history.points:
            return []
        tr, _ = self.history.trajectory()
        now = tr.duration_min
        last = tr.points[-1]
        tau = last.tau_core_min + last.tau_shell_min
        times = np.linspace(max(0.0, now - tau), now, PENDING_POINTS).tolist()
        return [self.c._searched(p.as_dict(), "pending trajectory") for p in tr.sample(times)]

    def _plan(self, end: Conditions, *, hold_unread: bool = False, confirm: bool = False
              ) -> tuple[Trajectory, bool | None]:
        """The trajectory to ``end`` and whether the rig must settle first.

        ``hold_unread``: the step holds where the reactor is after a step that read nothing
        (``after_unread: hold``), for the whole hold time. ``confirm``: it holds there for the
        full hold time, so its own fluid is read (``confirm_hold``, :meth:`confirm_hold_min`).
        """
        here = self.position
        hold = max(self.cfg.hold_min, self.cfg.frame_interval_min)
        if here is None:  # nothing known: settle at the proposal and read it steady
            return Trajectory((0.0, hold), (end, end)), True
        times, points = PLANNERS[self.cfg.plan](self, here, end)
        if times[-1] <= 0:  # asked where the reactor is: hold there
            if hold_unread:
                hold = max(hold, self.unread_hold_min(end))
            elif confirm:
                hold = max(hold, self.confirm_hold_min(end))
            elif self.cfg.hold_at != "end":  # every step lasts the hold time at least
                hold = max(hold, self.hold_at_min(end))
            return Trajectory((0.0, hold), (end, end)), None
        times, points = HOLD_PLACES[self.cfg.hold_at](self, times, points)
        keep = [0, *(i for i in range(1, len(times)) if times[i] > times[i - 1])]
        return Trajectory(tuple(times[i] for i in keep), tuple(points[i] for i in keep)), None

    def _hold_at_end(self, times: list[float], points: list[Conditions]
                     ) -> tuple[list[float], list[Conditions]]:
        """``hold_at: end``: hold at the proposal, so the slow leg's fluid passes the cell."""
        hold = self.hold_at_min(points[-1])
        if hold <= 0:
            return times, points
        return [*times, times[-1] + hold], [*points, points[-1]]

    def _hold_after_jump(self, times: list[float], points: list[Conditions]
                         ) -> tuple[list[float], list[Conditions]]:
        """``hold_at: after_jump``: the full hold only after a jump that spoils the cell.

        A first leg that jumps farther than twice the full-weight spread limits (see
        :meth:`~autolab.dynamic.observe.MappingPolicy.jump_keeps_full_weight`) leaves the cell
        reading mixtures for about two residence times; the hold at the end lets that wash
        out so the step's own slow leg is read. A step that stays close adds no spread of its
        own beyond the jump limit (fluid left from earlier moves still may: every reading is
        mapped over the whole history), and the fluid made near its proposal is read at the
        start of the next step, so it holds only to make the step last the hold time: a step
        must give the cell time to read something, or a step whose readings are all refused
        would be asked again at once, again and again.
        """
        hold = self.hold_at_min(points[-1])
        if JUMP_LIMITS[self.cfg.jump_limit](self.policy, points[0], points[1]):
            hold = max(0.0, hold - times[-1])
        if hold <= 0:
            return times, points
        return [*times, times[-1] + hold], [*points, points[-1]]

    def _hold_until_readable(self, times: list[float], points: list[Conditions]
                             ) -> tuple[list[float], list[Conditions]]:
        """``hold_at: until_readable``: after a jump, hold until the mapping reads the cell.

        A jump fills the cell with its mixtures for about two residence times; a fixed hold
        (``after_jump``) often ends before they wash out, so the step reads nothing of its
        slow leg and the next jump spoils that fluid for good (or a hold after an unread
        step reads it a whole step later). Here the campaign's own mapping, run over the
        planned history (the realized one, then this step's legs, then the hold), says when
        the cell's readings stop being refused; the hold lasts until then and
        ``UNREAD_READ_FRAMES`` frames more (at least one frame, at most
        ``UNREAD_HOLD_MAX_TAU`` residence times): shorter than the fixed hold where the cell
        clears early, longer where it does not. A close step is planned as with
        ``after_jump`` (it lasts the hold time in all).
        """
        if JUMP_LIMITS[self.cfg.jump_limit](self.policy, points[0], points[1]):
            return self._hold_after_jump(times, points)
        hold = self.readable_hold_min(times, points, least=self.cfg.frame_interval_min)
        return [*times, times[-1] + hold], [*points, points[-1]]

    def readable_hold_min(self, times: Sequence[float], points: Sequence[Conditions], *,
                          least: float) -> float:
        """Hold after the planned legs so the cell's readings are accepted, lab min.

        The mapping of the realized history, then the legs (``times`` from 0 at the
        reactor's position, ``points``), then a hold at ``points[-1]``, says when the
        readings stop being refused for their spread; the hold lasts until then and
        ``UNREAD_READ_FRAMES`` frames more, at least ``least``, at most
        ``UNREAD_HOLD_MAX_TAU`` residence times at ``points[-1]`` (or ``least`` if longer).
        """
        end = points[-1]
        tau = end.tau_core_min + end.tau_shell_min
        dt = self.cfg.frame_interval_min
        cap = max(least, UNREAD_HOLD_MAX_TAU * tau)
        history, _ = self.history.trajectory()
        now = history.duration_min
        legs_end = now + times[-1]
        planned = Trajectory(
            (*history.times_min, *(now + t for t in times[1:]), legs_end + cap),
            (*history.points, *points[1:], end), held_before=history.held_before)
        grid = legs_end + np.arange(0.0, cap + dt / 2, dt)
        mapped = map_outlet(planned, grid, cascade_geometry(self._rig(), end),
                            roles=self._roles())
        first = next((float(t) - legs_end for i, t in enumerate(grid)
                      if self.policy.accepts(mapped, i, held_before=history.held_before)), cap)
        return min(cap, max(least, first + UNREAD_READ_FRAMES * dt))

    def unread_hold_min(self, end: Conditions) -> float:
        """``after_unread: hold``: how long to hold at ``end`` so the cell's fluid is read.

        The mapping of the history, held on at ``end``, says when the cell's readings stop
        being refused for their spread (a jump's mixtures take about two residence times to
        wash out); the hold lasts until then and ``UNREAD_READ_FRAMES`` frames more, at least
        the hold time, at most ``UNREAD_HOLD_MAX_TAU`` residence times.
        """
        least = max(self.hold_at_min(end), self.cfg.frame_interval_min)
        return self.readable_hold_min([0.0], [end], least=least)

    def confirm_hold_min(self, end: Conditions) -> float:
        """``confirm_hold``: how long to hold at ``end``: the full hold time, at least a frame.

        The hold a jump gets (``hold_min`` + ``hold_residence_times`` × τ at ``end``): the fluid
        made on the close step's slow last leg and at the proposal passes the cell and is read
        at full weight, mapped to the proposal. Holding until the mapping flags the fluid
        steady (up to three residence times) was tried: holds of 44-85 lab min, 1-5 against
        the shipped block on 8 cells (docs/dynamic.md).
        """
        return max(self.hold_at_min(end), self.cfg.frame_interval_min)

    def hold_at_min(self, end: Conditions) -> float:
        """Hold at the end of a ramp: ``hold_min`` plus ``hold_residence_times`` × τ at ``end``."""
        tau = end.tau_core_min + end.tau_shell_min
        return self.cfg.hold_min + self.cfg.hold_residence_times * tau

    def _legs_between(self, here: Conditions, end: Conditions
                      ) -> tuple[list[float], list[Conditions]]:
        """``between_proposals`` / ``sweep``: straight capped ramps through the points."""
        limits = self._plan_limits(here, end)
        points = [here, end]
        if self.cfg.plan == "sweep":
            points += self._sweep_points(end, limits)
        times = [0.0]
        for a, b in itertools.pairwise(points):
            times.append(times[-1] + self.ramp_min(a, b, limits))
        return times, points

    def _legs_approach(self, here: Conditions, end: Conditions
                       ) -> tuple[list[float], list[Conditions]]:
        """``approach``: at the devices' pace to near ``end``, then at the rate caps."""
        if ramp_duration_min(here, end, self.limits) <= 0:
            return [0.0], [here]
        traj = plan_approach(here, end, self.limits, self._plan_limits(here, end),
                             approach_min=self.cfg.approach_min,
                             max_slow_min=self.cfg.max_ramp_min)
        return list(traj.times_min), list(traj.points)

    def ramp_min(self, a: Conditions, b: Conditions, capped: RampLimits) -> float:
        """How long the ramp from ``a`` to ``b`` takes, lab min.

        The capped time, within ``max_ramp_min``, never faster than the devices allow.
        """
        fastest = ramp_duration_min(a, b, self.limits)
        wanted = ramp_duration_min(a, b, capped)
        return max(fastest, min(wanted, self.cfg.max_ramp_min))

    def _plan_limits(self, *points: Conditions) -> RampLimits:
        """Device limits, tightened by the mapping's rate caps at every point (``rate_caps``)."""
        caps = self.cfg.rate_caps_for(self.policy)
        limits = self.limits
        if caps is None:
            return limits
        rig = self._rig()
        for p in points:
            limits = limits.tightened(caps.rate_caps(p, cascade_geometry(rig, p)))
        return limits

    def _sweep_points(self, centre: Conditions, limits: RampLimits) -> list[Conditions]:
        """Scrambled-Sobol points of a box around ``centre`` inside the space, nearest first."""
        from scipy.stats import qmc  # noqa: PLC0415 - only a sweep needs it

        space = self.c.config.space.build()
        sw = self.cfg.sweep
        names = list(space.names)
        lo = np.array([space[n].lower for n in names])
        hi = np.array([space[n].upper for n in names])
        mid = np.array([centre.value(n) for n in names])
        half = sw.box_fraction * (hi - lo)
        a, b = np.maximum(lo, mid - half), np.minimum(hi, mid + half)
        m = max(0, math.ceil(math.log2(max(4 * sw.n_points, 1))))
        seed = len(self.c.trials) + self.c.config.seed
        u = qmc.Sobol(d=len(names), scramble=True, seed=seed).random_base2(m)
        fixed = self.c.config.space.fixed
        pts = [dict(zip(names, map(float, a + row * (b - a)), strict=True)) for row in u]
        kept = [Conditions.from_mapping({**p, **fixed}) for p in pts if space.is_feasible(p)]
        out, here = [], centre
        for _ in range(min(sw.n_points, len(kept))):
            k = min(range(len(kept)), key=lambda j: ramp_duration_min(here, kept[j], limits))
            here = kept.pop(k)
            out.append(here)
        return out

    def _rig(self) -> Any:
        return self.reactor.executor.procedure.rig  # type: ignore[attr-defined]

    def _roles(self) -> Mapping[str, Any] | None:
        """The mapping's roles: tracer roles on a simulated rig whose physics has no kinetics."""
        physics = getattr(self.reactor.executor, "twin", None)
        return TRACER_ROLES if getattr(physics, "resolves_transients", True) is False else None

    # ----------------------------------------------------------------------------- run
    def _run(self, traj: Trajectory, settle: bool | None
             ) -> tuple[StepOutcome, BaseException | None]:
        """Run the trajectory; a fault is an outcome (its partial stream observed)."""
        done: list[DynamicMeasurement] = []
        try:
            m = self._stream(traj, settle, done)
        except DeviceFault as err:
            return self._observed(joined(done, partial_of(err)),
                                  f"device fault: {err.device}: {err}", err), None
        except ExperimentFailed as err:
            return self._observed(joined(done, partial_of(err)), str(err), None), None
        except HardwareError as err:  # a trip or a device failure: journal, then end
            return self._observed(joined(done, partial_of(err)),
                                  f"{type(err).__name__}: {err}", err), err
        return self._observed(m, None, None), None

    def _stream(self, traj: Trajectory, settle: bool | None,
                done: list[DynamicMeasurement]) -> DynamicMeasurement:
        """Run ``traj``; with ``hold_end: steady`` its final hold in pieces until steady.

        Every finished piece is appended to ``done`` (a fault's partial is joined to them).
        """
        run = self.reactor.executor.run_trajectory  # type: ignore[attr-defined]
        dt = self.cfg.frame_interval_min
        hold = final_hold_min(traj)
        if self.cfg.hold_end == "full" or hold <= 0:
            m: DynamicMeasurement = run(traj, self.limits, frame_interval_min=dt, settle=settle)
            return m
        ramp = Trajectory(traj.times_min[:-1], traj.points[:-1], held_before=traj.held_before)
        done.append(run(ramp, self.limits, frame_interval_min=dt, settle=settle))
        end, held = traj.points[-1], 0.0
        while held < hold - 1e-9 and not self.hold_steady(joined(done)):
            h = min(HOLD_CHECK_FRAMES * dt, hold - held)
            piece = Trajectory((0.0, h), (end, end), held_before=False)
            done.append(run(piece, self.limits, frame_interval_min=dt, settle=False))
            held += h
        out = joined(done)
        assert out is not None
        return out

    def hold_steady(self, m: DynamicMeasurement | None) -> bool:
        """Whether a hold may end: the stream so far is steady at the proposal.

        Two verdicts, both needed: the mapping flags the last reading steady (the fluid in the
        cell saw constant conditions, so the RTD washout of the ramp's last conditions has
        passed it), and the steady procedure's verdict (:func:`steady_state` over its window of
        frames) finds the emission steady. Looks at a copy of the history.
        """
        if m is None or len(m.frames) < STEADY_WINDOW:
            return False
        history = self.history.copy()
        history.extend(m)
        obs = self._observe(m, self._analyze(m), history)
        if not (obs and obs[-1].steady):
            return False
        st = m.stacked()
        last = slice(len(m.frames) - STEADY_WINDOW, len(m.frames))
        verdict = steady_state(st["wavelengths_nm"], st["times_min"][last],
                               st["pl_counts"][last], st["dark_pl_counts"],
                               excitation_nm=m.frames[0].excitation_nm, window=STEADY_WINDOW)
        return verdict.steady

    def _observed(self, m: DynamicMeasurement | None, error: str | None,
                  fault: BaseException | None) -> StepOutcome:
        """Map and judge the stream, and move the reactor's history on."""
        if m is None or not m.frames:
            self.history.reset()
            self.position = None
            return StepOutcome(None, (), error, fault)
        self.history.extend(m)
        batch = self._analyze(m)
        obs = self._observe(m, batch)
        self.position = m.trajectory.points[-1] if error is None else None
        last = m.trajectory.points[-1]
        self.history.trim(HISTORY_RESIDENCE_TIMES * (last.tau_core_min + last.tau_shell_min))
        if error is not None:
            self.history.reset()
        blocking = [bool(QualityFlag(int(f)) & QualityFlag.blocking()) for f in batch.flags]
        peaks = tuple(zip(batch.abs_peak_nm.tolist(), batch.abs_peak_nm_err.tolist(),
                          strict=True))
        return StepOutcome(m, obs, error, fault, no_emission=all(blocking), abs_peak_nm=peaks)

    def _analyze(self, m: DynamicMeasurement) -> FeatureBatch:
        st = m.stacked()
        f0 = m.frames[0]
        ref = getattr(self.reactor.executor, "qy_reference", None) or getattr(
            getattr(self.reactor.executor, "twin", None), "qy_reference", None) or QYReference()
        return extract_features_batch(
            st["wavelengths_nm"], pl_counts=st["pl_counts"], dark_pl_counts=st["dark_pl_counts"],
            dye_pl_counts=st["dye_pl_counts"], sample_counts=st["sample_counts"],
            blank_counts=st["blank_counts"], dark_abs_counts=st["dark_abs_counts"],
            excitation_nm=f0.excitation_nm, saturation_counts=f0.saturation_counts,
            qy_reference=ref, settings=self.c.config.analyzer.settings())

    def _observe(self, m: DynamicMeasurement, batch: FeatureBatch,
                 since_settle: History | None = None) -> tuple[DynamicObservation, ...]:
        """Map the frames through the realized history since the last settle and judge them."""
        history, origin = (since_settle or self.history).trajectory()
        start = m.started_lab_h * 60.0
        times = start + np.asarray(m.times_min, dtype=np.float64) - origin
        geometry = cascade_geometry(self._rig(), m.trajectory.points[0])
        mapped = map_outlet(history, times, geometry, roles=self._roles())
        obs = observe_batch(mapped, batch, OBSERVED, policy=self.policy,
                            held_before=history.held_before)
        shift = start - origin  # observation times from the trajectory's own start
        return tuple(replace(o, time_min=o.time_min - shift) for o in obs)

    # ----------------------------------------------------------------------------- deliver
    def _rig_event(self, index: int, proposal: dict[str, float], out: StepOutcome) -> bool:
        """A fault found before the trajectory fed anything: the campaign's rig event.

        Nothing of the trajectory streamed (a valve turned between trajectories, found by the
        checks before it or during its settle's flush), so it is no trial: the campaign's one
        rig-event path journals it, keeps the proposal and counts it (steady campaigns alike).
        """
        fault = out.fault
        if not (isinstance(fault, DeviceFault) and fault.before_feed and out.measurement is None):
            return False
        ex = self.reactor.executor
        self.c._rig_event(self.reactor, index, proposal, fault, clock_h=float(ex.lab_clock_h),
                          reagent_total_ml=dict(ex.reagent_ml),
                          executor_state=ex.state_dict())
        return True

    def _deliver(self, index: int, proposal: dict[str, float], end: Conditions, *,
                 traj: Trajectory, out: StepOutcome, elapsed: float,
                 hold_unread: bool = False, stalled: bool = False,
                 confirm: bool = False) -> Trial:
        """Journal the trial with every observation, then tell, forecast and track."""
        c, reactor = self.c, self.reactor
        trial, rep = self._trial(index, end, out, elapsed)
        ex = reactor.executor
        reactor.clock_h = float(ex.lab_clock_h)
        reactor.reagent_total_ml = dict(ex.reagent_ml)
        reactor.last_conditions = end.as_dict()
        extra: dict[str, Any] = {
            "executor_state": ex.state_dict(), "reactor": reactor.name,
            "reactor_clock_h": reactor.clock_h,
            "reactor_reagent_total_ml": dict(reactor.reagent_total_ml), "queue": [],
            "lab_clock_h": c.lab_clock_h, "reagent_total_ml": c.reagent_total_ml,
            "prediction": None, "origin": TrialOrigin.PROPOSED.value,
            "dynamic": {**self._record(index, proposal, traj, out, rep),
                        "hold_unread": hold_unread, "asked_stalled": stalled,
                        "confirm_hold": confirm}}
        if isinstance(out.fault, DeviceFault):
            extra["device"] = out.fault.device
            extra["device_log"] = list(out.fault.device_log[-400:])
        c.journal.append_trial(trial, extra=extra)
        c.trials.append(trial)
        told = self._tell(trial, proposal, out)
        unread = told == 0 and trial.status is not TrialStatus.INVALID
        self.unread_steps = self.unread_steps + 1 if unread else 0
        c._event(f"{experiment_label(index)}: {len(out.observations)} readings streamed, "
                 f"{told} told" + (f"; {out.error}" if out.error else ""))
        forecast_text = (c._update_forecast(index) if trial.status is not TrialStatus.INVALID
                         else None)
        c._sync()
        if c.on_trial is not None:
            c.on_trial(c, trial)
        c._show(forecast_text)
        return trial

    def _trial(self, index: int, end: Conditions, out: StepOutcome, elapsed: float
               ) -> tuple[Trial, int | None]:
        """The step's trial: its best accepted reading (or the failure), and its position."""
        objective = self.c.config.objective
        rep = REPRESENTATIVES[self.cfg.representative](out.observations, objective)
        if out.fault is not None or rep is None:
            status = TrialStatus.INVALID if out.fault is not None else TrialStatus.FAILED
            error = out.error or ("no usable emission in any frame" if out.no_emission else
                                  "no reading of this trajectory was accepted (see the "
                                  "observations' reasons)")
            return Trial(index=index, conditions=end.as_dict(), status=status, error=error,
                         proposal_time_s=elapsed), None
        o = out.observations[rep]
        outcomes = self._outcomes_of(o)
        score = objective.score(outcomes) if objective.is_feasible(outcomes) else None
        # the representative frame's own first exciton (one observation per frame), as read:
        # the report's column; never told (not an observed outcome)
        abs_nm, abs_err = (out.abs_peak_nm[rep] if rep < len(out.abs_peak_nm)
                           else (math.nan, math.nan))
        feats = Features(
            pl_peak_nm=o.features["pl_peak_nm"], fwhm_nm=o.features["fwhm_nm"],
            qy=o.features["qy"], abs_peak_nm=abs_nm, pl_peak_nm_err=o.sigma["pl_peak_nm"],
            fwhm_nm_err=o.sigma["fwhm_nm"], qy_err=o.sigma["qy"], abs_peak_nm_err=abs_err)
        return Trial(index=index, conditions=o.conditions.as_dict(),
                     status=TrialStatus.COMPLETED, features=feats, objective=score,
                     error=out.error, proposal_time_s=elapsed), rep

    @staticmethod
    def _outcomes_of(o: DynamicObservation) -> dict[str, float]:
        return {k: o.features[k] for k in OBSERVED}

    def _record(self, index: int, proposal: dict[str, float], traj: Trajectory,
                out: StepOutcome, rep: int | None) -> dict[str, Any]:
        """The ``dynamic`` extra of the trial record (JSON)."""
        obs = out.observations
        m = out.measurement
        rec: dict[str, Any] = {
            "proposal": dict(proposal), "trajectory": traj.to_dict(),
            "observations": [o.to_dict() for o in obs], "representative": rep,
            "n_readings": len(obs), "n_accepted": sum(o.accepted for o in obs),
            "n_full_weight": sum(o.accepted and o.weight >= FULL_WEIGHT for o in obs),
            "n_refused": sum(not o.accepted for o in obs),
            "steady": [i for i, o in enumerate(obs) if o.steady and o.accepted],
            "told_failure": self._tells_failure(out), "complete": out.error is None}
        if m is not None and self.cfg.hold_end == "steady":
            planned = final_hold_min(traj)
            rec["hold_min"] = {"planned": planned, "run": max(
                0.0, m.trajectory.duration_min - (traj.duration_min - planned))}
        if m is not None:
            rec.update({"realized": m.realized.to_dict(), "settled": m.settled,
                        "started_lab_h": m.started_lab_h, "finished_lab_h": m.finished_lab_h,
                        "frames_file": self._archive(index, m)})
        return rec

    @staticmethod
    def _tells_failure(out: StepOutcome) -> bool:
        return out.fault is None and out.no_emission

    def _archive(self, index: int, m: DynamicMeasurement) -> str | None:
        """Keep the raw frames next to the journal (float32, compressed)."""
        if not self.cfg.archive_frames:
            return None
        folder = self.c.run_dir / ARCHIVE_DIR
        folder.mkdir(exist_ok=True)
        name = f"trial_{index:04d}.npz"
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in m.stacked().items()}
        np.savez_compressed(folder / name, **arrays)  # type: ignore[arg-type]
        return f"{ARCHIVE_DIR}/{name}"

    def _tell(self, trial: Trial, proposal: dict[str, float], out: StepOutcome) -> int:
        """Tell the accepted readings (or the failure); returns how many points were told."""
        if trial.status is TrialStatus.INVALID:
            return 0
        conds, outcomes, sds = self.told(out.observations, proposal, self._tells_failure(out))
        if conds:
            self._tell_steps(conds, outcomes, sds, [trial.index] * len(conds))
        return len(conds)

    def _tell_steps(self, conds: list[dict[str, float]], outs: list[dict[str, float] | None],
                    sds: list[dict[str, float] | None], steps: list[int | None]) -> None:
        """Tell readings with their step (the trial index of their trajectory).

        An optimizer that groups steps (``tell(..., steps=)``, :mod:`autolab.optimizer.steps`)
        counts one trajectory once in its trust region; any other is told as a steady
        campaign tells it.
        """
        opt = self.c.optimizer
        if "steps" in inspect.signature(opt.tell).parameters:
            opt.tell(conds, outs, outcome_sd=sds, steps=steps)
        else:
            self.c._tell(conds, outs, sds)

    def told(self, observations: Sequence[DynamicObservation], proposal: dict[str, float],
             failure: bool) -> tuple[list[dict[str, float]], list[dict[str, float] | None],
                                     list[dict[str, float] | None]]:
        """What the optimizer is told for one trajectory (live and on resume)."""
        names = self.c.config.objective.outcome_names
        conds, outs, sds = to_tell(observations, self.c.config.space.parameters, names)
        # a mixture's mapped conditions may sit just outside a linear constraint between
        # channels mapped over different windows (the shell temperature over the shell
        # stage's time, the core temperature over the core's): journaled, not told, since the
        # optimizer models the searched space only
        inside = [i for i, c in enumerate(conds) if self.space.is_feasible(c)]
        conds, outs, sds = ([c[i] for i in inside] for c in (conds, outs, sds))
        told_outs: list[dict[str, float] | None] = [*outs]
        told_sds: list[dict[str, float] | None] = [*sds]
        if failure:
            return [*conds, dict(proposal)], [*told_outs, None], [*told_sds, None]
        return conds, told_outs, told_sds

    # ----------------------------------------------------------------------------- resume
    def journal_data(self, state: JournalState) -> tuple[
            list[dict[str, float]], list[dict[str, float] | None], list[dict[str, float] | None]]:
        """What the optimizer is told on resume, in journal order (:meth:`journal_steps`)."""
        conds, outs, sds, _ = self.journal_steps(state)
        return conds, outs, sds

    def journal_steps(self, state: JournalState) -> tuple[
            list[dict[str, float]], list[dict[str, float] | None],
            list[dict[str, float] | None], list[int | None]]:
        """What the optimizer is told on resume, in journal order, with each reading's step.

        Every accepted observation of every trajectory (and the no-emission failures), with
        its trial's index as its step; a trial without a ``dynamic`` record (added by hand) as
        a steady reading, a step of its own (``None``); never invalid trials.
        """
        conds: list[dict[str, float]] = []
        outs: list[dict[str, float] | None] = []
        sds: list[dict[str, float] | None] = []
        steps: list[int | None] = []
        for trial in state.trials:
            if trial.status is TrialStatus.INVALID:
                continue
            dyn = (state.extras.get(trial.index) or {}).get("dynamic")
            if dyn is None:
                conds.append(self.c._searched(trial.conditions, experiment_label(trial.index)))
                outs.append(self.c._outcomes(trial))
                sds.append(self.c._outcome_sd(trial))
                steps.append(None)
                continue
            obs = [DynamicObservation.from_dict(d) for d in dyn["observations"]]
            a, b, s = self.told(obs, dict(dyn["proposal"]), bool(dyn.get("told_failure")))
            conds += a
            outs += b
            sds += s
            steps += [trial.index] * len(a)
        return conds, outs, sds, steps

    def retell(self, state: JournalState) -> None:
        """On resume: tell the optimizer the journal's readings, each with its step."""
        conds, outs, sds, steps = self.journal_steps(state)
        if conds:
            self._tell_steps(conds, outs, sds, steps)

    def restore(self, state: JournalState) -> None:
        """On resume: re-tell the journal and rebuild what the next step depends on.

        The optimizer's data and steps (:meth:`retell`); the realized history behind
        :meth:`pending` and the mapping, the reactor's position, and the counters of the
        ``after_unread: hold`` logic, replayed from the journal's trials and rig events in
        the order they happened, as the live steps moved them on (:meth:`_replay_trial`).
        Everything else a step reads is the journal itself (the trials, the confirming hold,
        the stall rule, the sweep's seed). So a campaign resumed at a step boundary asks as the
        uninterrupted one; it also plans and reads as that one where the rig still feeds the
        last trajectory's end (:meth:`_check_resumed_rig`; the simulated rig restores its
        stream from the journaled executor state).
        """
        self.retell(state)
        self.history.reset()
        self.position, self.unread_steps, self.unread_holds = None, 0, 0
        # a rig event at position p came after the first p trials, before the next one
        events: list[tuple[int, int, Trial | None]] = [
            (int(e["position"]), 0, None) for e in state.rig_events]
        events += [(i, 1, t) for i, t in enumerate(state.trials)]
        for _, _, trial in sorted(events, key=lambda e: (e[0], e[1])):
            if trial is None:  # a rig event: nothing streamed, the reactor's state unknown
                self.history.reset()
                self.position = None
                continue
            dyn = (state.extras.get(trial.index) or {}).get("dynamic")
            if dyn is not None:  # a trial added by hand moved no reactor
                self._replay_trial(trial, dyn)
        self.resumed = True

    def _replay_trial(self, trial: Trial, dyn: Mapping[str, Any]) -> None:
        """Move the runner on by one journaled trajectory, as :meth:`step` did live."""
        self.unread_holds = self.unread_holds + 1 if dyn.get("hold_unread") else 0
        if "realized" not in dyn:  # nothing streamed
            self.history.reset()
            self.position = None
        else:
            self.history.add(Trajectory.from_dict(dyn["realized"]),
                             started_lab_h=float(dyn["started_lab_h"]),
                             settled=bool(dyn["settled"]))
            last = Conditions.from_mapping(dyn["trajectory"]["points"][-1])
            complete = bool(dyn.get("complete", True))
            self.position = last if complete else None
            self.history.trim(HISTORY_RESIDENCE_TIMES * (last.tau_core_min + last.tau_shell_min))
            if not complete:
                self.history.reset()
        told = 0
        if trial.status is not TrialStatus.INVALID:
            obs = [DynamicObservation.from_dict(d) for d in dyn["observations"]]
            told = len(self.told(obs, dict(dyn["proposal"]), bool(dyn.get("told_failure")))[0])
        unread = told == 0 and trial.status is not TrialStatus.INVALID
        self.unread_steps = self.unread_steps + 1 if unread else 0


def steps_since_best(values: Sequence[float | None]) -> int | None:
    """Steps after the one that set the best value (``None``: no value yet).

    A step improves on the best only as the trust region judges it
    (:func:`~autolab.optimizer.steps.improves`), so read noise alone does not keep a stalled
    search looking busy.
    """
    best: float | None = None
    since = 0
    for v in values:
        if improves(v, best):
            best, since = v, 0
        elif best is not None:
            since += 1
    return None if best is None else since


def final_hold_min(traj: Trajectory) -> float:
    """The hold at the end of a planned ramp, lab min (0: none, or nothing before it)."""
    if len(traj.points) < 3 or traj.points[-1] != traj.points[-2]:
        return 0.0
    return float(traj.times_min[-1] - traj.times_min[-2])


def joined(parts: Sequence[DynamicMeasurement], tail: DynamicMeasurement | None = None
           ) -> DynamicMeasurement | None:
    """Pieces of one stream as one measurement, on the first piece's clock.

    Each later piece's first frame re-reads the point the previous piece ended at and is
    dropped; the shared dark, blank and dye frames are the first piece's.
    """
    pieces = [*parts, *([tail] if tail is not None and tail.frames else [])]
    if len(pieces) <= 1:
        return pieces[0] if pieces else None
    first = pieces[0]
    times, frames = list(first.times_min), list(first.frames)
    cmd_t, cmd_p = list(first.trajectory.times_min), list(first.trajectory.points)
    real_t, real_p = list(first.realized.times_min), list(first.realized.points)
    reagents, log = dict(first.reagent_ml), list(first.device_log)
    for p in pieces[1:]:
        off = (p.started_lab_h - first.started_lab_h) * 60.0
        times += [off + float(t) for t in p.times_min[1:]]
        frames += p.frames[1:]
        cmd_t += [off + t for t in p.trajectory.times_min[1:]]
        cmd_p += p.trajectory.points[1:]
        real_t += [off + t for t in p.realized.times_min[1:]]
        real_p += p.realized.points[1:]
        for k, v in p.reagent_ml.items():
            reagents[k] = reagents.get(k, 0.0) + v
        log += p.device_log
    last = pieces[-1]
    held = first.trajectory.held_before
    return replace(
        first, trajectory=Trajectory(tuple(cmd_t), tuple(cmd_p), held_before=held),
        realized=Trajectory.from_samples(real_t, real_p, held_before=held),
        times_min=np.asarray(times, dtype=np.float64), frames=tuple(frames),
        finished_lab_h=last.finished_lab_h, complete=last.complete, reagent_ml=reagents,
        device_log=tuple(log), metadata={**first.metadata, "n_frames": float(len(frames)),
                                         "trajectory_min": cmd_t[-1], "pieces": float(len(pieces))})


#: What a jump may do to the cell's readings and still count as close (``dynamic.jump_limit``).
JUMP_LIMITS: dict[str, Callable[[MappingPolicy, Conditions, Conditions], bool]] = {
    "full_weight": MappingPolicy.jump_keeps_full_weight,
    "refusal": MappingPolicy.jump_keeps_accepted,
}

#: Where the hold goes, by ``dynamic.hold_at``: (runner, planned times, points) -> with the hold.
HOLD_PLACES: dict[str, Callable[[DynamicRunner, list[float], list[Conditions]],
                                tuple[list[float], list[Conditions]]]] = {
    "end": DynamicRunner._hold_at_end,
    "after_jump": DynamicRunner._hold_after_jump,
    "until_readable": DynamicRunner._hold_until_readable,
}

#: Ramp planners by ``dynamic.plan``: (runner, where the reactor is, proposal) -> (times, points).
PLANNERS: dict[str, Callable[[DynamicRunner, Conditions, Conditions],
                             tuple[list[float], list[Conditions]]]] = {
    "between_proposals": DynamicRunner._legs_between,
    "sweep": DynamicRunner._legs_between,
    "approach": DynamicRunner._legs_approach,
}


_RUNNERS: weakref.WeakKeyDictionary[Any, DynamicRunner] = weakref.WeakKeyDictionary()


def dynamic_runner(campaign: CampaignLike) -> DynamicRunner:
    """The campaign's dynamic runner (made on first use, one per campaign)."""
    runner = _RUNNERS.get(campaign)
    if runner is None:
        runner = _RUNNERS[campaign] = DynamicRunner(campaign)
    return runner
