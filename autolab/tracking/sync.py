"""Bring a tracker up to date with a journal: every finished experiment logged, exactly once.

This is also the recommended way to track *live*: after journaling a trial, the campaign calls
``sync(journal, tracker)``. When the tracker is healthy that logs the one new trial and refreshes
the campaign plots; after an outage the same call catches up on everything missed. There is one
code path for "normal" and "recovering", so the recovery path is the one that is exercised.

The journal decides what is missing (its ``tracked`` marks; an experiment invalidated after the
fact is unmarked again); the tracker's own exactly-once check covers the window between "logged"
and "marked" (a crash right there). Every sync also sets what the journal says about the campaign
as a whole: the summary metrics of the parent run (best experiment, counts, experiments and lab
hours to the target, the latest stopping forecast) and its status (running until a ``stopped``
record, then finished, killed or failed with the journaled reason), so after any kill, outage or
sync sequence MLflow shows what the journal holds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from autolab.exceptions import TrackingError
from autolab.records import Trial, TrialStatus
from autolab.tracking.base import (
    Prediction,
    Tracker,
    campaign_status,
    campaign_summary,
    experiment_metrics,
    round_metric,
)
from autolab.tracking.journal import Journal, JournalState
from autolab.tracking.summary import (
    campaign_view,
    decision_counts,
    decision_rows,
    pareto_metrics,
)

#: Journaled metrics of the stopping forecast (``autolab.campaign.FORECAST_METRICS``, prefixed).
FORECAST_PREFIX = "forecast_"


def sync(journal: Journal | str | os.PathLike[str], tracker: Tracker, *,
         predictions: Sequence[Prediction] | None = None, refresh_plots: bool = True) -> int:
    """Log every journaled experiment the tracker does not hold yet, and mark it tracked.

    Attaches the tracker first if needed: to the run the journal names, or (if the campaign never
    reached its tracker, e.g. the server was down from the start) to a new campaign run, whose id
    is then journaled. Trials are logged in journal order; each is marked tracked right after it
    was logged, so a failure part-way keeps the progress made.

    Args:
        journal: An open :class:`Journal` (the running campaign's; it holds the file lock) or the
            path of a journal to open for the duration of the sync.
        tracker: Where to log. A tracker that keeps no records (:class:`NullTracker`) is left
            alone and nothing is marked.
        predictions: Model-fit points for the refreshed campaign plots.
        refresh_plots: Redraw the campaign-level plots and table after logging (about 1-2 s for
            a few dozen experiments; a running campaign does it every few experiments).

    Returns:
        How many experiments were logged to the tracker by this call.

    Raises:
        TrackingError: The tracker failed (trials logged before the failure stay marked), or it is
            attached to a different campaign run than the journal's.
        JournalError: The journal is unreadable or held by another process.
    """
    if not tracker.keeps_records:
        return 0
    if isinstance(journal, Journal):
        return _sync(journal, tracker, predictions, refresh_plots)
    with Journal.open(journal) as j:
        return _sync(j, tracker, predictions, refresh_plots)


def _sync(journal: Journal, tracker: Tracker, predictions: Sequence[Prediction] | None,
          refresh_plots: bool) -> int:
    state = journal.state
    _attach(journal, tracker)
    finished = state.finished()
    position = {t.index: i for i, t in enumerate(finished)}
    # one view per sync: ranking, lab accounts and the table are computed once, here
    view = campaign_view(finished, state.extras, state.header.config)
    objective, best, accounts = view.objective, view.best, view.accounts
    clocks = view.lab_clock_h
    logged = 0
    changed = bool(state.untracked)
    for idx in list(state.untracked):
        i = position[idx]
        trial = finished[i]
        ran = trial.status is not TrialStatus.INTERRUPTED
        metrics = experiment_metrics(trial, state.extras.get(idx, {}), objective,
                                     accounts[i] if ran else None)
        log = state.extras.get(idx, {}).get("device_log")
        device_log = [str(line) for line in log] if isinstance(log, list) else None
        if tracker.log_trial(trial, best[i], clocks[i], metrics,
                             extra_tags=_trial_tags(state, idx), device_log=device_log):
            logged += 1
        journal.mark_tracked(idx)
    if changed or refresh_plots:
        summary = campaign_summary(finished, accounts, objective)
        metrics = summary.metrics()
        if state.reviews:
            metrics.update(decision_counts(state.reviews))
        if state.rig_events:  # device faults found between experiments: not experiments
            metrics["n_rig_events"] = float(len(state.rig_events))
        if view.pareto is not None:
            metrics.update(pareto_metrics(view.pareto))
        metrics.update(latest_forecast(state))
        tracker.log_campaign_summary(metrics, step=summary.n_experiments)
    if refresh_plots and finished:
        if predictions is None:
            predictions = journaled_predictions(finished, state.extras)
        tracker.log_campaign_artifacts(finished, predictions=predictions or None,
                                       lab_clock_h=clocks, view=view,
                                       decisions=decision_rows(state.reviews))
    status = campaign_status(state.stopped_reason, state.in_flight, state.stopped_status)
    tracker.set_campaign_status(status, None if status == "RUNNING" else state.stopped_reason)
    return logged


def _trial_tags(state: JournalState, index: int) -> dict[str, str]:
    """Where the experiment came from (and its reactor), who invalidated it, from the journal."""
    extra = state.extras.get(index, {})
    tags = {"autolab.origin": str(extra.get("origin") or "proposed")}
    for key in ("decision", "reviewer", "reactor"):
        if isinstance(extra.get(key), str):
            tags[f"autolab.{key}"] = str(extra[key])
    inval = state.invalidated.get(index)
    if inval is not None:
        tags["autolab.invalidated_by"] = str(inval.get("by") or "unknown")
        tags["autolab.invalidated_at"] = str(inval.get("time") or "")
        tags["autolab.previous_status"] = str(inval.get("previous_status") or "")
    return tags


def latest_forecast(state: JournalState) -> dict[str, float]:
    """The stopping forecast the campaign holds now, as ``forecast_*`` metrics (rounded).

    The one journaled after the last experiment told to the optimizer (the latest trial that is
    neither invalid nor interrupted; the campaign restores the same one on resume). On the
    campaign run it is compared between campaigns and charted by step; each experiment run
    keeps the forecast made after it.
    """
    last = next((t for t in reversed(state.trials)
                 if t.status not in (TrialStatus.INVALID, TrialStatus.INTERRUPTED)), None)
    if last is None:
        return {}
    journaled = state.extras.get(last.index, {}).get("metrics")
    if not isinstance(journaled, Mapping):
        return {}
    return {k: round_metric(k, float(v)) for k, v in journaled.items()
            if k.startswith(FORECAST_PREFIX) and isinstance(v, int | float)
            and not isinstance(v, bool) and math.isfinite(v)}


def journaled_predictions(trials: Sequence[Trial],
                          extras: Mapping[int, Mapping[str, Any]]) -> list[Prediction]:
    """The model-fit points: ``(predicted mean, predicted sd, measured)`` of the objective.

    One per scored trial whose journal record holds the optimizer's prediction
    (``extra["prediction"]``, written by the campaign when the proposal came from a model).
    """
    out: list[Prediction] = []
    for t in trials:
        pred = extras.get(t.index, {}).get("prediction")
        if t.objective is None or not isinstance(pred, Mapping):
            continue
        mean, sd = pred.get("score_mean"), pred.get("score_sd")
        if isinstance(mean, int | float) and isinstance(sd, int | float):
            out.append((float(mean), float(sd), float(t.objective)))
    return out


def _attach(journal: Journal, tracker: Tracker) -> None:
    state = journal.state
    if state.tracker_run_id is None and tracker.tracking_uri is not None:
        journal.set_tracking_uri(tracker.tracking_uri)  # even if opening the run fails now
    if tracker.run_id is None:
        if state.tracker_run_id is not None:
            tracker.resume_campaign(state.tracker_run_id)
        else:
            h = state.header
            tags = {"seed": str(h.seed)} if h.seed is not None else {}
            for key in ("executor", "optimizer"):
                part = h.config.get(key)
                if isinstance(part, Mapping) and isinstance(part.get("kind"), str):
                    tags[key] = part["kind"]
            tracker.start_campaign(h.campaign_name, h.config, tags=tags, params={},
                                   campaign_id=h.campaign_id)
    run_id = tracker.run_id
    if run_id is None:  # a conforming tracker has a run after start/resume
        raise TrackingError("tracker reported no run id after start/resume")
    if state.tracker_run_id is not None and state.tracker_run_id != run_id:
        raise TrackingError(
            f"tracker is attached to run {run_id}, but campaign {state.header.campaign_name!r} "
            f"is journaled in run {state.tracker_run_id}; use a fresh tracker so sync can resume "
            "the journaled run")
    journal.set_tracker_run(run_id, tracker.tracking_uri)
