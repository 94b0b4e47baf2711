"""The MLflow tracker: one parent run per campaign, one nested run per experiment.

Layout (docs/architecture.md, "MLflow conventions"):

* **Campaign run** (parent) in experiment ``experiment_name``: tags ``autolab.campaign``,
  ``autolab.campaign_id``, ``autolab.role=campaign``, the caller's tags (executor, seed...),
  ``mlflow.source.git.commit``; params: what makes two campaigns different set-ups and nothing
  else (bounds, fixed conditions, constraints, objective, optimizer and its settings, budget,
  stop rules, mode and dynamic block, executor settings, analyzer, review;
  :func:`~autolab.tracking.base.campaign_params`); artifacts ``config.json`` and
  ``campaign.yaml`` (the full config, twin and optimizer internals included). Metrics: the
  campaign summary (:class:`~autolab.tracking.base.CampaignSummary`: ``best_pl_peak_nm``,
  ``best_qy``, ``best_fwhm_nm``, ``best_experiment``, ``experiments_to_target``,
  ``lab_hours_to_target``, ``n_failed``, ``n_experiments``...) and the latest stopping
  forecast (``forecast_*``), logged with ``step`` = number of
  finished experiments so the chart tab shows how the campaign converged. Never one
  experiment's values: the compare view then compares campaigns, not their last experiments.
  ``plots/`` and ``summary/`` hold the refreshed campaign figures and table.
* **Experiment run** (nested, named :func:`~autolab.records.experiment_label`, ``exp-003``):
  params = conditions; metrics = features with their uncertainties, the score and its terms
  (``score.<term>``), ``in_band.<outcome>`` and ``distance_to_target_nm.<outcome>`` per target,
  the model's prediction (``predicted_<outcome>``, ``predicted_<outcome>_sd``), best-so-far,
  proposal time, ``lab_clock_h`` (campaign lab clock at its end), ``experiment_lab_h`` (how long
  it took), ``reagent_ml.<name>`` (this experiment) and ``reagent_total_ml.<name>`` (campaign so
  far), the stopping forecast (``forecast_*``), all rounded (0.01 nm for a quantity in nm, else
  4 significant digits; the score and its terms at one place, so the terms add up to it); tags =
  status, trial index, origin (proposed / edited / manual / reused), flags, a readable reason for
  a failure, who invalidated it and when (``autolab.invalidated_by``, ``autolab.invalidated_at``,
  ``autolab.previous_status``); artifacts =
  ``spectra.csv`` (wavelength, every raw frame, derived absorbance), ``spectrum.png``,
  ``device_log.txt``, ``trial.json`` (and ``trace.csv``).

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids: no fluent active-run
stack, so nested runs and resume cannot attach to the wrong parent.

Status equals the journal: one nested run per journal index, found again by its tags
(``mlflow.parentRunId``, ``autolab.trial_index``), complete once it carries
``autolab.logged=true``. A complete one is never logged twice, but its status is corrected if it
differs from the journal's (a kill between the tag and the end; an experiment invalidated after
the fact); a half-written one (a kill mid-log) is deleted and logged afresh. The campaign run's
status is set from the journal too (:meth:`MlflowTracker.set_campaign_status`): attaching to a
run never changes it.

A store that cannot be left half-made: a local SQLite store is created in a temporary file next
to its target and renamed into place under a lock (:func:`ensure_sqlite_store`), so a kill
during creation leaves either no store or a whole one. A store that is broken anyway (or a
server that is down) raises :class:`TrackingError` like any other failure: the campaign goes on
journal-only and ``autolab sync`` catches up later.

A dead server must not stall a reactor: HTTP retries and timeouts are bounded (MLflow reads them
from ``MLFLOW_HTTP_REQUEST_*`` environment variables at each request, so the tracker sets them
around its own calls only), and every failure surfaces as :class:`TrackingError`.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag

from autolab import __version__
from autolab.exceptions import TrackingError
from autolab.records import Trial, TrialStatus, experiment_label
from autolab.space import QD_PARAMETERS
from autolab.tracking import plots
from autolab.tracking.base import (
    CAMPAIGN_STATUSES,
    DEFAULT_TRACKING_URI,
    Prediction,
    campaign_params,
    flatten_params,
    git_commit,
    readable_reason,
    resolve_tracking_uri,
    round_metrics,
    safe_key,
    sqlite_path,
)
from autolab.tracking.summary import (
    CampaignView,
    best_so_far,
    lab_clocks,
    summary_rows,
    to_csv,
    to_html,
    to_markdown,
)

__all__ = ["DEFAULT_TRACKING_URI", "MlflowTracker", "ensure_sqlite_store",
           "resolve_tracking_uri"]

try:  # the limit moved between MLflow versions (500 in 1.x, 6000 in 2.x/3.x)
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH as _PARAM_LIMIT
except ImportError:  # pragma: no cover - depends on the installed MLflow
    _PARAM_LIMIT = 500
_TAG_LIMIT = 5000
_SAFE_ID = re.compile(r"[A-Za-z0-9_\-]+")
_BATCH = 100  # MLflow accepts at most 100 params or tags per log_batch

_END_STATUS = {"completed": "FINISHED", "finished": "FINISHED", "stopped": "FINISHED",
               "failed": "FAILED", "interrupted": "KILLED", "killed": "KILLED"}
_TRIAL_STATUS = {TrialStatus.COMPLETED: "FINISHED", TrialStatus.FAILED: "FAILED",
                 TrialStatus.INTERRUPTED: "KILLED", TrialStatus.INVALID: "FAILED"}
_FEATURE_METRICS = ("pl_peak_nm", "fwhm_nm", "qy", "abs_peak_nm", "absorbance_at_excitation",
                    "pl_peak_nm_err", "fwhm_nm_err", "qy_err", "abs_peak_nm_err", "pl_snr")


#: How long a starter waits for another process creating the same SQLite store, s.
STORE_LOCK_TIMEOUT_S = 60.0


def ensure_sqlite_store(uri: str, *, lock_timeout_s: float = STORE_LOCK_TIMEOUT_S) -> None:
    """Create the SQLite store of ``uri`` whole, or not at all; other URIs are left alone.

    MLflow creates a store by running some 60 schema migrations in place; a kill in that second
    left a half-made database that every later run refused (``table spans already exists``).
    Here the tables are made in a temporary file next to the target, which is then renamed into
    place (atomic on POSIX), under an exclusive lock so concurrent starters make it once. An
    existing, non-empty file is left as it is: if it is broken, opening it fails with a
    :class:`TrackingError` that says what to do, and nothing is deleted.

    Raises:
        TrackingError: The folder is not writable, or another process held the lock too long.
    """
    path = sqlite_path(uri)
    if path is None or _nonempty(path):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a+b") as lock:
            _lock(lock.fileno(), path, lock_timeout_s)
            if not _nonempty(path):  # another starter may have made it while we waited
                _forget_engine(uri)  # a cached engine may still hold a file moved away
                _create_store(path)
    except OSError as err:
        raise TrackingError(f"cannot create the MLflow store {path}: {err}") from err


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _lock(fd: int, path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TrackingError(f"MLflow store {path}: another process has been creating it "
                                    f"for over {timeout_s:g} s (lock {path}.lock)") from None
            time.sleep(0.05)


def _forget_engine(uri: str) -> None:
    """Drop MLflow's cached SQLAlchemy engine of ``uri`` (it keeps files open across renames)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: PLC0415

    engine = SqlAlchemyStore._engine_map.pop(uri, None)
    if engine is not None:
        engine.dispose()


def _create_store(path: Path) -> None:
    """Make the tables in a temporary file, then rename it to ``path`` (lock held)."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH  # noqa: PLC0415
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: PLC0415

    for stale in path.parent.glob(f".{path.name}.*.tmp*"):  # left by a starter killed here
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    tmp_uri = "sqlite:///" + str(tmp.absolute())
    try:
        store = SqlAlchemyStore(tmp_uri, DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)  # type: ignore[no-untyped-call]
        _forget_engine(tmp_uri)
        store.engine.dispose()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except TrackingError:
        raise
    except Exception as err:  # SQLAlchemy or migration errors: the target stays untouched
        raise TrackingError(f"cannot create the MLflow store {path}: {err}") from err
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)


class MlflowTracker:
    """Records campaigns in MLflow; see the module docstring for what goes where.

    Not thread-safe (it sets HTTP environment variables around its calls).

    Args:
        tracking_uri: Any MLflow tracking URI (``sqlite:///...``, ``http://host:5000``...);
            default :func:`resolve_tracking_uri`.
        experiment_name: MLflow experiment holding the campaign runs; campaigns to be compared
            side by side belong in one experiment.
        artifact_location: Artifact root for the experiment if this tracker creates it (ignored
            for an existing experiment; a server decides its own).
        http_max_retries: Retries per HTTP request (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` if set,
            else 1).
        http_timeout_s: Timeout per HTTP request, s (``MLFLOW_HTTP_REQUEST_TIMEOUT``, else 5).
        http_backoff_factor: Exponential backoff factor between retries
            (``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR``, else 1).
    """

    keeps_records = True

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = "autolab", *,
                 artifact_location: str | None = None, http_max_retries: int | None = None,
                 http_timeout_s: int | None = None,
                 http_backoff_factor: int | None = None) -> None:
        self._uri = resolve_tracking_uri(tracking_uri)
        self._experiment_name = experiment_name
        self._artifact_location = artifact_location
        self._http_env = {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": _setting(http_max_retries,
                                                        "MLFLOW_HTTP_REQUEST_MAX_RETRIES", 1),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": _setting(http_timeout_s,
                                                    "MLFLOW_HTTP_REQUEST_TIMEOUT", 5),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": _setting(
                http_backoff_factor, "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 1),
            "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": os.environ.get(
                "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5"),
        }
        self._opened: MlflowClient | None = None
        self._run_id: str | None = None
        self._experiment_id: str | None = None
        self._campaign_id: str | None = None
        self._name = ""
        self._goal = ""
        self._targets: dict[str, tuple[float, float]] = {}

    # ---- Tracker protocol ---------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        """The campaign (parent) run id, once started or resumed."""
        return self._run_id

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI in use."""
        return self._uri

    @property
    def client(self) -> MlflowClient:
        """The underlying client, for reading runs back (tests, reports).

        Raises:
            TrackingError: The store cannot be created or opened.
        """
        with self._calls("open the store"):
            return self._client

    def check(self) -> None:
        """Open the store now (creating a local one whole), to warn before a campaign starts.

        Raises:
            TrackingError: The store is unreachable, broken or cannot be created; the message
                says what to do. A campaign still runs without it (journal-only).
        """
        with self._calls("open the store"):
            self._client.search_experiments(max_results=1)

    @property
    def _client(self) -> MlflowClient:
        """The client, opened on first use: constructing a tracker never fails."""
        if self._opened is None:
            ensure_sqlite_store(self._uri)
            try:
                self._opened = MlflowClient(tracking_uri=self._uri)
            except Exception as err:
                _forget_engine(self._uri)  # its pooled connection holds the broken file open
                raise TrackingError(_open_advice(self._uri, err)) from err
        return self._opened

    def start_campaign(self, name: str, config: Mapping[str, Any], tags: Mapping[str, str],
                       params: Mapping[str, Any], *, campaign_id: str | None = None) -> str:
        """Create the campaign run, or resume the one already holding ``campaign_id``.

        Finding the run by ``campaign_id`` makes this idempotent: a crash between creating the run
        and journaling its id does not leave a second, orphaned campaign run behind.

        Args:
            name: Campaign name; the run's name.
            config: The campaign configuration (JSON); its bounds, objective, optimizer and
                budget become params, the whole of it ``config.json`` and ``campaign.yaml``.
            tags: Extra tags (``executor``, ``seed``...), stored as given.
            params: Extra params, flattened; they override those taken from ``config``.
            campaign_id: The journal's campaign id.

        Returns:
            The campaign run id.

        Raises:
            TrackingError: MLflow unreachable or refused.
        """
        if campaign_id is not None and not _SAFE_ID.fullmatch(campaign_id):
            raise TrackingError(f"campaign_id {campaign_id!r}: use letters, digits, '-' and '_' "
                                "only (it is matched in MLflow search filters)")
        with self._calls(f"start campaign {name!r}"):
            exp_id = self._experiment()
            if campaign_id is not None:
                found = self._client.search_runs(
                    [exp_id], filter_string=(f"tags.`autolab.campaign_id` = '{campaign_id}' and "
                                             "tags.`autolab.role` = 'campaign'"), max_results=1)
                if found:
                    self._attach(found[0])
                    return str(found[0].info.run_id)
            targets = _targets_of(config)
            goal = str(params.get("objective") or "")
            all_tags: dict[str, str] = {
                "autolab.campaign": name, "autolab.role": "campaign",
                "autolab.version": __version__,
                "autolab.targets": json.dumps(targets),
                "mlflow.note.content": _verdict(name, goal, [], [], targets),
            }
            if goal:
                all_tags["autolab.goal"] = _truncate(goal, _TAG_LIMIT)
            if campaign_id is not None:
                all_tags["autolab.campaign_id"] = campaign_id
            commit = git_commit()
            if commit is not None:
                all_tags["mlflow.source.git.commit"] = commit
            for key in ("executor", "seed"):
                value = config.get(key)
                if isinstance(value, str | int) and key not in tags:
                    all_tags[key] = str(value)
            all_tags.update({str(k): _truncate(str(v), _TAG_LIMIT) for k, v in tags.items()})
            run = self._client.create_run(exp_id, run_name=name, tags=all_tags)
            run_id = str(run.info.run_id)
            flat = campaign_params(config)
            flat.update(flatten_params(params, max_value_len=_PARAM_LIMIT))
            items = [Param(k[:250], _truncate(v, _PARAM_LIMIT)) for k, v in flat.items()]
            for i in range(0, len(items), _BATCH):
                self._client.log_batch(run_id, params=items[i:i + _BATCH])
            self._client.log_text(run_id, json.dumps(dict(config), indent=2, default=str),
                                  "config.json")
            self._client.log_text(run_id, yaml.safe_dump(json.loads(json.dumps(
                dict(config), default=str)), sort_keys=False), "campaign.yaml")
            self._attach(self._client.get_run(run_id))
            return run_id

    def resume_campaign(self, run_id: str) -> None:
        """Attach to an existing campaign run; its status is left as it is.

        Attaching is not resuming: ``autolab sync`` attaches to a finished campaign too. The
        status follows the journal (:meth:`set_campaign_status`, called by
        :func:`autolab.tracking.sync.sync`).

        Raises:
            TrackingError: No such run, or it is an experiment (nested) run.
        """
        with self._calls(f"attach to campaign run {run_id}"):
            run = self._client.get_run(run_id)
            if "mlflow.parentRunId" in run.data.tags:
                raise TrackingError(f"run {run_id} is an experiment (nested) run, not a campaign")
            self._attach(run)

    def log_trial(self, trial: Trial, best_so_far: float | None, lab_clock_h: float,
                  extra_metrics: Mapping[str, float], *,
                  extra_tags: Mapping[str, str] | None = None,
                  device_log: Sequence[str] | None = None) -> bool:
        """Make experiment ``trial.index`` one nested run whose status is the trial's.

        Logs it if the campaign run holds no complete run of that index; corrects the status and
        reason of one that differs (a kill between its last two writes, an invalidation after
        the fact); else leaves it alone.

        Args:
            trial: The finished (or interrupted) trial, as the journal says it is now.
            best_so_far: Best objective of the campaign including this trial.
            lab_clock_h: Campaign lab clock at the end of it, h.
            extra_metrics: More numbers (score terms, target status, predictions...);
                non-finite ones are skipped.
            extra_tags: More tags (``autolab.origin``...).
            device_log: The devices' log of a trial without a measurement (a device fault),
                stored as ``device_log.txt``.

        Returns:
            ``True`` if logged or corrected now, ``False`` if the run already matched.

        Raises:
            TrackingError: No campaign run attached, or MLflow unreachable or refused.
        """
        parent = self._require_run()
        idx = trial.index
        tags = {**self._trial_tags(parent, trial), **dict(extra_tags or {})}
        with self._calls(f"log experiment {idx}"):
            existing = self._find_trial_run(parent, idx)
            if existing is not None:
                if existing.data.tags.get("autolab.logged") == "true":
                    return self._correct(existing, trial, tags)
                self._client.delete_run(existing.info.run_id)  # half-logged before a crash
            run = self._client.create_run(self._exp_id(), run_name=experiment_label(idx),
                                          tags=tags)
            run_id = run.info.run_id
            metrics = _trial_metrics(trial, best_so_far, lab_clock_h, extra_metrics)
            now = int(time.time() * 1000)
            params = [Param(safe_key(k), f"{float(v):.6g}") for k, v in trial.conditions.items()]
            for i in range(0, len(params), _BATCH):
                self._client.log_batch(run_id, params=params[i:i + _BATCH])
            items = [Metric(k, v, now, 0) for k, v in metrics.items()]
            for i in range(0, len(items), _BATCH * 10):
                self._client.log_batch(run_id, metrics=items[i:i + _BATCH * 10])
            with tempfile.TemporaryDirectory(prefix="autolab-trial-") as tmp:
                _write_trial_artifacts(Path(tmp), trial, self._targets, device_log)
                self._client.log_artifacts(run_id, tmp)
            self._client.set_terminated(run_id, status=_TRIAL_STATUS[trial.status])
            self._client.set_tag(run_id, "autolab.logged", "true")
            return True

    def _correct(self, run: Run, trial: Trial, tags: Mapping[str, str]) -> bool:
        """Bring a complete experiment run's status and every tag in line with the journal.

        Every tag the run would be logged with now, not a chosen few: an invalidation after the
        fact adds ``autolab.invalidated_by``, ``autolab.invalidated_at`` and
        ``autolab.previous_status`` (:func:`autolab.tracking.sync._trial_tags`) besides the new
        status, reason and note, and a short list here once dropped them silently. Its
        ``failed`` metric follows the status too.
        """
        want = _TRIAL_STATUS[trial.status]
        stale = {k: v for k, v in tags.items() if run.data.tags.get(k) != v}
        failed = float(trial.status is not TrialStatus.COMPLETED)
        if run.info.status == want and not stale and run.data.metrics.get("failed") == failed:
            return False
        run_id = run.info.run_id
        items = [RunTag(k, v) for k, v in stale.items()]
        for i in range(0, len(items), _BATCH):
            self._client.log_batch(run_id, tags=items[i:i + _BATCH])
        if run.data.metrics.get("failed") != failed:
            self._client.log_metric(run_id, "failed", failed)
        if run.info.status != want:
            self._client.set_terminated(run_id, status=want)
        return True

    def log_campaign_summary(self, metrics: Mapping[str, float], step: int) -> None:
        """Set the campaign run's summary metrics (:class:`~autolab.tracking.base.CampaignSummary`).

        Logged at ``step`` = the number of finished experiments, so the run's chart tab draws
        how the best result and the counts evolved, and the runs table and compare view show
        the latest: the campaign as it stands.

        Raises:
            TrackingError: No campaign run attached, or MLflow unreachable or refused.
        """
        parent = self._require_run()
        now = int(time.time() * 1000)
        items = [Metric(safe_key(k), float(v), now, int(step)) for k, v in metrics.items()
                 if math.isfinite(float(v))]
        tags = {"autolab.n_experiments": str(int(metrics.get("n_experiments", step)))}
        if "best_experiment" in metrics:
            tags["autolab.best_experiment"] = experiment_label(int(metrics["best_experiment"]))
        with self._calls("log the campaign summary"):
            for i in range(0, len(items), _BATCH * 10):
                self._client.log_batch(parent, metrics=items[i:i + _BATCH * 10])
            for key, value in tags.items():
                self._client.set_tag(parent, key, value)

    def set_campaign_status(self, status: str, reason: str | None = None) -> None:
        """Make the campaign run's status ``status`` (and its stop reason ``reason``), if not yet.

        Nothing is written when the run already has them, so a repeated sync keeps the end time
        of a finished campaign.

        Args:
            status: ``RUNNING``, ``FINISHED``, ``FAILED``, ``KILLED``, or a campaign word
                (``completed``, ``interrupted``...).
            reason: Why it stopped (``autolab.stop_reason``, appended to the description).

        Raises:
            TrackingError: Unknown status, no run attached, or MLflow unreachable or refused.
        """
        parent = self._require_run()
        want = _END_STATUS.get(status.lower(), status.upper())
        if want not in CAMPAIGN_STATUSES:
            raise TrackingError(f"unknown campaign status {status!r}; use one of "
                                f"{sorted({*_END_STATUS, *CAMPAIGN_STATUSES})}")
        with self._calls(f"set the campaign status to {want}"):
            run = self._client.get_run(parent)
            tags = run.data.tags
            if want == "RUNNING":
                if "autolab.stop_reason" in tags:
                    self._client.delete_tag(parent, "autolab.stop_reason")
                if run.info.status != "RUNNING":
                    self._client.update_run(parent, status="RUNNING")
                return
            if reason is not None and tags.get("autolab.stop_reason") != _truncate(reason,
                                                                                  _TAG_LIMIT):
                self._client.set_tag(parent, "autolab.stop_reason", _truncate(reason, _TAG_LIMIT))
                note = tags.get("mlflow.note.content", "").split(" Stopped: ")[0]
                self._client.set_tag(parent, "mlflow.note.content",
                                     _truncate(f"{note} Stopped: {reason}.", _TAG_LIMIT))
            if run.info.status != want:
                self._client.set_terminated(parent, status=want)

    def log_campaign_artifacts(self, trials: Sequence[Trial],
                               predictions: Sequence[Prediction] | None = None,
                               lab_clock_h: Sequence[float] | None = None, *,
                               view: CampaignView | None = None,
                               decisions: Sequence[Mapping[str, Any]] = ()) -> None:
        """Refresh the campaign figures and summary table (overwriting the previous ones).

        With ``view`` (:func:`~autolab.tracking.summary.campaign_view`, built from the journal)
        the figures and table are those ``autolab report`` writes (:func:`plots.campaign_figures`):
        model fit per outcome, and for a Pareto campaign ``plots/pareto_front.png``.

        Writes ``plots/convergence.png``, ``plots/parameters_vs_outcomes.png``,
        ``plots/model_fit.png`` (with ``predictions``), ``summary/trials.csv``,
        ``summary/trials.md`` and ``summary/trials.html`` (the table to read in the UI),
        ``summary/decisions.csv`` (review decisions, when there are any); sets
        the run description to a one-line verdict (goal, experiments, failures, best
        experiment's outcomes).

        Raises:
            TrackingError: No campaign run attached, or MLflow unreachable or refused.
        """
        parent = self._require_run()
        ordered = sorted(trials, key=lambda t: t.index)
        if lab_clock_h is None:
            clocks = lab_clocks(ordered)
        else:
            order = sorted(range(len(trials)), key=lambda i: trials[i].index)
            clocks = [float(lab_clock_h[i]) for i in order]
        best = best_so_far(ordered) if view is None else list(view.best)
        rows = summary_rows(ordered, best, clocks) if view is None else list(view.rows)
        with tempfile.TemporaryDirectory(prefix="autolab-campaign-") as tmp:
            root = Path(tmp)
            (root / "plots").mkdir()
            (root / "summary").mkdir()
            targets = self._targets
            # the shared pool: the next refresh draws the parameter grid into this one's panels
            figures = plots.campaign_figures(
                ordered, best, clocks, targets=targets, predictions=predictions,
                objective=None if view is None else view.objective,
                pareto=None if view is None else view.pareto,
                fit_points=None if view is None else view.fit_points, pool=plots.SHARED_POOL)
            for name, fig in figures.items():
                (root / "plots" / f"{name}.png").write_bytes(plots.figure_png(fig))
            plots.SHARED_POOL.give_back(figures.values())
            (root / "summary" / "trials.csv").write_text(to_csv(rows), encoding="utf-8")
            if decisions:
                table = to_csv([dict(d) for d in decisions])
                (root / "summary" / "decisions.csv").write_text(table, encoding="utf-8")
            (root / "summary" / "trials.md").write_text(
                to_markdown(rows, title="Experiments"), encoding="utf-8")
            units = {k: p.unit for k, p in QD_PARAMETERS.items()}
            (root / "summary" / "trials.html").write_text(
                to_html(rows, self._name or "Experiments", goal=self._goal, targets=targets,
                        units=units, best_index=None if view is None else view.best_index,
                        notes=() if view is None or view.pareto is None
                        else view.pareto.warnings), encoding="utf-8")
            with self._calls("log campaign artifacts"):
                self._client.log_artifacts(parent, tmp)
                note = _verdict(self._name, self._goal, ordered, best, self._targets)
                stop = self._client.get_run(parent).data.tags.get("autolab.stop_reason")
                if stop:
                    note = f"{note} Stopped: {stop}."
                self._client.set_tag(parent, "mlflow.note.content", _truncate(note, _TAG_LIMIT))

    def end_campaign(self, status: str, reason: str | None = None) -> None:
        """Terminate the campaign run (:meth:`set_campaign_status` with a final status).

        Args:
            status: ``completed``/``stopped`` (FINISHED), ``failed`` (FAILED), ``interrupted``
                (KILLED), or an MLflow status name.
            reason: Why it ended (stop rule, error), stored as ``autolab.stop_reason``.

        Raises:
            TrackingError: Unknown or non-final status, no run attached, or MLflow unreachable
                or refused.
        """
        mlflow_status = _END_STATUS.get(status.lower(), status.upper())
        if mlflow_status not in {"FINISHED", "FAILED", "KILLED"}:
            raise TrackingError(f"end_campaign: unknown status {status!r}; use one of "
                                f"{sorted(_END_STATUS)}")
        self.set_campaign_status(mlflow_status, reason)

    # ---- reading back -------------------------------------------------------------------------
    def trial_runs(self) -> list[Run]:
        """The complete experiment runs of the attached campaign, by trial index."""
        parent = self._require_run()
        with self._calls("list experiment runs"):
            runs = self._client.search_runs(
                [self._exp_id()], filter_string=(f"tags.`mlflow.parentRunId` = '{parent}' and "
                                                 "tags.`autolab.logged` = 'true'"),
                max_results=50000)
        return sorted(runs, key=lambda r: int(r.data.tags["autolab.trial_index"]))

    # ---- internals ----------------------------------------------------------------------------
    @contextmanager
    def _calls(self, what: str) -> Iterator[None]:
        """Bounded HTTP settings around MLflow calls; any failure becomes a TrackingError."""
        saved = {k: os.environ.get(k) for k in self._http_env}
        os.environ.update(self._http_env)
        try:
            yield
        except TrackingError:
            raise
        except Exception as err:
            raise TrackingError(f"MLflow at {self._uri}: could not {what}: "
                                f"{_auth_advice(err) or _truncate(str(err), 400)}") from err
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def _experiment(self) -> str:
        exp = self._client.get_experiment_by_name(self._experiment_name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                raise TrackingError(f"MLflow experiment {self._experiment_name!r} is deleted; "
                                    "restore it or choose another experiment name")
            return str(exp.experiment_id)
        return str(self._client.create_experiment(self._experiment_name,
                                                  artifact_location=self._artifact_location,
                                                  tags={"autolab.version": __version__}))

    def _attach(self, run: Run) -> None:
        self._run_id = run.info.run_id
        self._experiment_id = run.info.experiment_id
        self._campaign_id = run.data.tags.get("autolab.campaign_id")
        self._name = run.data.tags.get("autolab.campaign", run.info.run_name or "")
        self._goal = run.data.tags.get("autolab.goal", "")
        try:
            raw = json.loads(run.data.tags.get("autolab.targets", "{}"))
            self._targets = {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()}
        except (ValueError, TypeError, IndexError, AttributeError):
            self._targets = {}  # a run logged by an older autolab: plots without bands

    def _require_run(self) -> str:
        if self._run_id is None:
            raise TrackingError("no campaign run: call start_campaign() or resume_campaign() "
                                "first")
        return self._run_id

    def _exp_id(self) -> str:
        assert self._experiment_id is not None  # set together with the run id
        return self._experiment_id

    def _find_trial_run(self, parent: str, index: int) -> Run | None:
        runs = self._client.search_runs(
            [self._exp_id()], filter_string=(f"tags.`mlflow.parentRunId` = '{parent}' and "
                                             f"tags.`autolab.trial_index` = '{index}'"),
            max_results=10)
        complete = [r for r in runs if r.data.tags.get("autolab.logged") == "true"]
        candidates = complete or list(runs)
        return candidates[0] if candidates else None

    def _trial_tags(self, parent: str, trial: Trial) -> dict[str, str]:
        feats = trial.features
        flags = feats.flags.names() if feats is not None else []
        tags = {"mlflow.parentRunId": parent, "autolab.role": "experiment",
                "autolab.trial_index": str(trial.index), "autolab.status": trial.status.value,
                "autolab.flags": ",".join(flags) or "none",
                "autolab.usable": str(trial.outcomes() is not None).lower(),
                "mlflow.note.content": _trial_note(trial)}
        if self._campaign_id is not None:
            tags["autolab.campaign_id"] = self._campaign_id
        tags["autolab.origin"] = "proposed"
        if trial.error:
            reason = _truncate(readable_reason(trial.error), _TAG_LIMIT)
            tags["autolab.reason"] = reason
            tags["autolab.error"] = reason
        if trial.measurement is not None:
            for k, v in trial.measurement.metadata.items():
                tags[f"autolab.meta.{safe_key(k)}"] = _truncate(str(v), _TAG_LIMIT)
        return tags


def _setting(arg: int | None, env: str, default: int) -> str:
    if arg is not None:
        return str(int(arg))
    return os.environ.get(env) or str(default)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _auth_advice(err: Exception) -> str | None:
    """What to do when an MLflow server with a login (basic-auth app) refuses us, else None."""
    text = str(err)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if "error code 401" in text:
        who = f"the login of MLFLOW_TRACKING_USERNAME={user!r}" if user else "no login"
        return (f"the server refused {who} (HTTP 401 Unauthorized): set MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD to an account on that server (docs/deployment.md)")
    if "error code 403" in text:
        return (f"the account {user!r} lacks the permission (HTTP 403 Forbidden): ask the "
                "server's admin for EDIT on the experiment, or use another account")
    return None


def _trial_metrics(trial: Trial, best: float | None, lab_clock_h: float,
                   extra: Mapping[str, float]) -> dict[str, float]:
    """Finite, rounded numbers describing one trial; NaN features are left out, not logged.

    Rounded by :func:`~autolab.tracking.base.round_metrics`: the score terms add up to the score.
    """
    m: dict[str, float | None] = {"score": trial.objective, "best_score_so_far": best,
                                  "proposal_time_s": trial.proposal_time_s,
                                  "lab_clock_h": lab_clock_h,
                                  "failed": float(trial.status is not TrialStatus.COMPLETED)}
    if trial.features is not None:
        for name in _FEATURE_METRICS:
            m[name] = float(getattr(trial.features, name))
        m["flags"] = float(int(trial.features.flags))
    if trial.measurement is not None:
        meas = trial.measurement
        m["product_mg"] = meas.product_mg
        for reagent, ml in meas.reagent_ml.items():
            m[f"reagent_ml.{safe_key(reagent)}"] = ml
    for k, v in extra.items():
        m[safe_key(k)] = float(v)
    return round_metrics({k: float(v) for k, v in m.items()
                          if v is not None and math.isfinite(v)})


def _open_advice(uri: str, err: Exception) -> str:
    """What went wrong opening a store, and what to do: the campaign goes on journal-only."""
    text = str(err).strip()
    detail = _truncate(text.splitlines()[0] if text else repr(err), 300)
    path = sqlite_path(uri)
    if path is None:
        return (f"MLflow at {uri} cannot be opened: {detail}. The campaign goes on journal-only; "
                "when the server is back, run: autolab sync RUN_DIR")
    return (f"MLflow store {path} cannot be opened ({detail}); it may have been half-made by a "
            f"run killed while creating it. Move it aside (mv {path} {path}.broken) or choose "
            "another --tracking-uri; the campaign goes on journal-only, and 'autolab sync "
            "RUN_DIR' logs everything once the store works.")


def _trial_note(trial: Trial) -> str:
    parts = [f"**{experiment_label(trial.index)}** {trial.status.value}"]
    f = trial.features
    if f is not None:
        parts.append(f"PL {f.pl_peak_nm:.1f} nm, FWHM {f.fwhm_nm:.1f} nm, QY {100 * f.qy:.1f} %")
    if trial.objective is not None:
        parts.append(f"objective {trial.objective:.4g}")
    if trial.error:
        parts.append(f"reason: {_truncate(readable_reason(trial.error), 300)}")
    return "; ".join(parts)


def _targets_of(config: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Target bands (outcome -> (value, tolerance)) of a campaign config's objective terms.

    Lenient: a config of another shape simply has no bands (the plots then draw none).
    """
    objective = config.get("objective")
    terms = objective.get("terms") if isinstance(objective, Mapping) else None
    out: dict[str, tuple[float, float]] = {}
    for term in terms if isinstance(terms, list) else []:
        if isinstance(term, Mapping) and term.get("kind") == "target":
            try:
                out[str(term["outcome"])] = (float(term["value"]), float(term.get("tolerance", 0)))
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _verdict(name: str, goal: str, trials: Sequence[Trial], best: Sequence[float | None],
             targets: Mapping[str, tuple[float, float]]) -> str:
    """The campaign run's description: what was asked, how many tried and failed, the best."""
    head = f"**{name}**" if name else "autolab campaign"
    if goal:
        head += f" ({goal})"
    if not trials:
        return head + ": started, no experiments yet."
    done = [t for t in trials if t.status is not TrialStatus.INTERRUPTED]
    n = len(done)
    failed = sum(t.status is not TrialStatus.COMPLETED for t in done)
    line = f"{head}: {n} experiments, {failed} failed"
    top = best[-1] if best else None
    winner = next((t for t in trials if top is not None and t.objective == top
                   and t.status is TrialStatus.COMPLETED), None)
    if winner is not None and winner.features is not None:
        f = winner.features
        pl = f"PL {f.pl_peak_nm:.1f} nm"
        if "pl_peak_nm" in targets:
            value, tol = targets["pl_peak_nm"]
            inside = abs(f.pl_peak_nm - value) <= tol
            pl += f" ({'in' if inside else 'outside'} target {value:g} ± {tol:g})"
        line += (f"; best {experiment_label(winner.index)}: {pl}, FWHM {f.fwhm_nm:.1f} nm, "
                 f"QY {100 * f.qy:.1f} %, score {top:.3g}")
    elif top is not None:
        line += f"; best score {top:.4g}"
    return line + ". Table: summary/trials.html; plots/."


def _write_trial_artifacts(root: Path, trial: Trial, targets: Mapping[str, tuple[float, float]],
                           device_log: Sequence[str] | None = None) -> None:
    """The nested run's files: trial.json always; spectra, plot, log, trace with a measurement.

    A trial without a measurement still gets ``device_log.txt`` when a log came with it (a
    device fault: what the pump said is the evidence).
    """
    (root / "trial.json").write_text(json.dumps(trial.to_dict(), indent=1), encoding="utf-8")
    meas = trial.measurement
    if meas is None:
        if device_log:
            (root / "device_log.txt").write_text("\n".join(device_log) + "\n", encoding="utf-8")
        return
    sp = meas.spectra
    cols = {name: getattr(sp, name) for name in sp.ARRAYS}
    cols["absorbance"] = plots.display_absorbance(sp)
    table = np.column_stack(list(cols.values()))
    np.savetxt(root / "spectra.csv", table, delimiter=",", header=",".join(cols), comments="",
               fmt="%.10g")
    fig = plots.spectrum_figure(trial, targets)
    if fig is not None:
        (root / "spectrum.png").write_bytes(plots.figure_png(fig))
    (root / "device_log.txt").write_text("\n".join(meas.device_log) + "\n", encoding="utf-8")
    if meas.trace is not None:
        tr = meas.trace
        header = "times_min," + ",".join(f"{w:.3f}" for w in sp.wavelengths_nm)
        data = np.column_stack([tr.times_min, np.atleast_2d(tr.pl_counts)])
        np.savetxt(root / "trace.csv", data, delimiter=",", header=header, comments="",
                   fmt="%.10g")
