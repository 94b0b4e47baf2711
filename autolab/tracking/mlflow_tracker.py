"""The MLflow tracker: one parent run per campaign, one nested run per experiment.

Layout (DESIGN.md, "MLflow conventions"):

* **Campaign run** (parent) in experiment ``experiment_name``: tags ``autolab.campaign``,
  ``autolab.campaign_id``, ``autolab.role=campaign``, the caller's tags (executor, seed...),
  ``mlflow.source.git.commit``; params: the flattened config (bounds, objective, optimizer
  settings) plus the caller's params; artifact ``config.json`` (the full, untruncated config).
  Per-experiment metrics are repeated here with ``step = experiment index``, so the UI's chart
  tab shows convergence; ``plots/`` and ``summary/`` hold the refreshed campaign figures and table.
* **Experiment run** (nested, ``exp-003``): params = conditions; metrics = features with their
  uncertainties, objective, best-so-far, proposal time, lab clock and duration, reagents; tags =
  status, trial index, flags, error; artifacts = ``spectra.csv`` (wavelength, every raw frame,
  derived absorbance), ``spectrum.png``, ``device_log.txt``, ``trial.json`` (and ``trace.csv``).

Everything goes through :class:`mlflow.MlflowClient` with explicit run ids: no fluent active-run
stack, so nested runs and resume cannot attach to the wrong parent.

Exactly once: the nested run of experiment *i* is found again by its tags
(``mlflow.parentRunId``, ``autolab.trial_index``) and is complete only once it carries
``autolab.logged=true`` (set last). A complete one is never logged again; a half-written one (a
crash mid-log) is deleted and logged afresh.

A dead server must not stall a reactor: HTTP retries and timeouts are bounded (MLflow reads them
from ``MLFLOW_HTTP_REQUEST_*`` environment variables at each request, so the tracker sets them
around its own calls only), and every failure surfaces as :class:`TrackingError`.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run

from autolab import __version__
from autolab.exceptions import TrackingError
from autolab.records import Trial, TrialStatus
from autolab.space import QD_PARAMETERS
from autolab.tracking import plots
from autolab.tracking.base import Prediction, flatten_params, git_commit, safe_key
from autolab.tracking.summary import (
    best_so_far,
    lab_clocks,
    summary_rows,
    to_csv,
    to_html,
    to_markdown,
)

#: Store used when neither the argument nor ``MLFLOW_TRACKING_URI`` names one (MLflow's default).
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

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


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The argument, else ``MLFLOW_TRACKING_URI``, else :data:`DEFAULT_TRACKING_URI`."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


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
        with self._calls("connect"):
            self._client = MlflowClient(tracking_uri=self._uri)
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
        """The underlying client, for reading runs back (tests, reports)."""
        return self._client

    def start_campaign(self, name: str, config: Mapping[str, Any], tags: Mapping[str, str],
                       params: Mapping[str, Any], *, campaign_id: str | None = None) -> str:
        """Create the campaign run, or resume the one already holding ``campaign_id``.

        Finding the run by ``campaign_id`` makes this idempotent: a crash between creating the run
        and journaling its id does not leave a second, orphaned campaign run behind.

        Args:
            name: Campaign name; the run's name.
            config: The campaign configuration; flattened into params, stored whole as
                ``config.json``.
            tags: Extra tags (``executor``, ``seed``...), stored as given.
            params: Extra params (optimizer settings...), flattened like ``config``.
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
            flat = flatten_params(config, max_value_len=_PARAM_LIMIT)
            flat.update(flatten_params(params, max_value_len=_PARAM_LIMIT))
            items = [Param(k[:250], v) for k, v in flat.items()]
            for i in range(0, len(items), _BATCH):
                self._client.log_batch(run_id, params=items[i:i + _BATCH])
            self._client.log_text(run_id, json.dumps(dict(config), indent=2, default=str),
                                  "config.json")
            self._attach(self._client.get_run(run_id))
            return run_id

    def resume_campaign(self, run_id: str) -> None:
        """Attach to an existing campaign run and mark it running again.

        Raises:
            TrackingError: No such run, or it is an experiment (nested) run.
        """
        with self._calls(f"resume campaign run {run_id}"):
            run = self._client.get_run(run_id)
            if "mlflow.parentRunId" in run.data.tags:
                raise TrackingError(f"run {run_id} is an experiment (nested) run, not a campaign")
            self._attach(run)
            if run.info.status != "RUNNING":
                self._client.update_run(run_id, status="RUNNING")

    def log_trial(self, trial: Trial, best_so_far: float | None, lab_clock_h: float,
                  extra_metrics: Mapping[str, float]) -> bool:
        """Record one experiment as a nested run (at most once) and as parent metrics.

        Args:
            trial: The finished (or interrupted) trial.
            best_so_far: Best objective of the campaign including this trial.
            lab_clock_h: Lab clock when it finished, h.
            extra_metrics: More numbers (optimizer diagnostics...); non-finite ones are skipped.

        Returns:
            ``True`` if logged now, ``False`` if this campaign run already held it.

        Raises:
            TrackingError: No campaign run attached, or MLflow unreachable or refused.
        """
        parent = self._require_run()
        idx = trial.index
        with self._calls(f"log experiment {idx}"):
            existing = self._find_trial_run(parent, idx)
            if existing is not None:
                if existing.data.tags.get("autolab.logged") == "true":
                    return False
                self._client.delete_run(existing.info.run_id)  # half-logged before a crash
            run = self._client.create_run(self._exp_id(), run_name=f"exp-{idx:03d}",
                                          tags=self._trial_tags(parent, trial))
            run_id = run.info.run_id
            metrics = _trial_metrics(trial, best_so_far, lab_clock_h, extra_metrics)
            now = int(time.time() * 1000)
            params = [Param(safe_key(k), repr(float(v))) for k, v in trial.conditions.items()]
            for i in range(0, len(params), _BATCH):
                self._client.log_batch(run_id, params=params[i:i + _BATCH])
            self._client.log_batch(run_id, metrics=[Metric(k, v, now, 0)
                                                    for k, v in metrics.items()])
            with tempfile.TemporaryDirectory(prefix="autolab-trial-") as tmp:
                _write_trial_artifacts(Path(tmp), trial, self._targets)
                self._client.log_artifacts(run_id, tmp)
            self._client.log_batch(parent, metrics=[Metric(k, v, now, idx)
                                                    for k, v in metrics.items()])
            self._client.set_tag(run_id, "autolab.logged", "true")
            self._client.set_terminated(run_id, status=_TRIAL_STATUS[trial.status])
            return True

    def log_campaign_artifacts(self, trials: Sequence[Trial],
                               predictions: Sequence[Prediction] | None = None,
                               lab_clock_h: Sequence[float] | None = None) -> None:
        """Refresh the campaign figures and summary table (overwriting the previous ones).

        Writes ``plots/convergence.png``, ``plots/parameters_vs_outcomes.png``,
        ``plots/model_fit.png`` (with ``predictions``), ``summary/trials.csv``,
        ``summary/trials.md`` and ``summary/trials.html`` (the table to read in the UI); sets
        tags ``autolab.n_experiments``, ``autolab.best_experiment`` and the run description to a
        one-line verdict (goal, experiments, failures, best experiment's outcomes).

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
        best = best_so_far(ordered)
        rows = summary_rows(ordered, best, clocks)
        with tempfile.TemporaryDirectory(prefix="autolab-campaign-") as tmp:
            root = Path(tmp)
            (root / "plots").mkdir()
            (root / "summary").mkdir()
            targets = self._targets
            figures = {"convergence": plots.convergence_figure(ordered, best, clocks, targets),
                       "parameters_vs_outcomes": plots.parameters_vs_outcomes_figure(
                           ordered, targets=targets)}
            if predictions:
                figures["model_fit"] = plots.prediction_figure(predictions)
            for name, fig in figures.items():
                (root / "plots" / f"{name}.png").write_bytes(plots.figure_png(fig))
            (root / "summary" / "trials.csv").write_text(to_csv(rows), encoding="utf-8")
            (root / "summary" / "trials.md").write_text(
                to_markdown(rows, title="Experiments"), encoding="utf-8")
            units = {k: p.unit for k, p in QD_PARAMETERS.items()}
            (root / "summary" / "trials.html").write_text(
                to_html(rows, self._name or "Experiments", goal=self._goal, targets=targets,
                        units=units), encoding="utf-8")
            with self._calls("log campaign artifacts"):
                self._client.log_artifacts(parent, tmp)
                self._client.set_tag(parent, "autolab.n_experiments", str(len(ordered)))
                self._client.set_tag(parent, "mlflow.note.content",
                                     _verdict(self._name, self._goal, ordered, best,
                                              self._targets))
                completed = [t for t in ordered if t.objective is not None
                             and t.status is TrialStatus.COMPLETED and math.isfinite(t.objective)]
                if completed:
                    top = max(completed, key=lambda t: t.objective or -math.inf)
                    self._client.set_tag(parent, "autolab.best_experiment", f"exp-{top.index:03d}")

    def end_campaign(self, status: str, reason: str | None = None) -> None:
        """Terminate the campaign run.

        Args:
            status: ``completed``/``stopped`` (FINISHED), ``failed`` (FAILED), ``interrupted``
                (KILLED), or an MLflow status name.
            reason: Why it ended (stop rule, error), stored as ``autolab.stop_reason``.

        Raises:
            TrackingError: Unknown status, no run attached, or MLflow unreachable or refused.
        """
        parent = self._require_run()
        mlflow_status = _END_STATUS.get(status.lower(), status.upper())
        if mlflow_status not in {"FINISHED", "FAILED", "KILLED"}:
            raise TrackingError(f"end_campaign: unknown status {status!r}; use one of "
                                f"{sorted(_END_STATUS)}")
        with self._calls("end campaign"):
            if reason is not None:
                self._client.set_tag(parent, "autolab.stop_reason", _truncate(reason, _TAG_LIMIT))
                note = self._client.get_run(parent).data.tags.get("mlflow.note.content", "")
                if note and "Stopped:" not in note:
                    self._client.set_tag(parent, "mlflow.note.content",
                                         _truncate(f"{note} Stopped: {reason}.", _TAG_LIMIT))
            self._client.set_terminated(parent, status=mlflow_status)

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
                                f"{_truncate(str(err), 400)}") from err
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
        if trial.error:
            tags["autolab.error"] = _truncate(trial.error, _TAG_LIMIT)
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


def _trial_metrics(trial: Trial, best: float | None, lab_clock_h: float,
                   extra: Mapping[str, float]) -> dict[str, float]:
    """Finite numbers describing one trial; NaN features are left out, not logged as NaN."""
    m: dict[str, float | None] = {"objective": trial.objective, "best_so_far": best,
                                  "proposal_time_s": trial.proposal_time_s,
                                  "lab_clock_h": lab_clock_h,
                                  "failed": float(trial.status is not TrialStatus.COMPLETED)}
    if trial.features is not None:
        for name in _FEATURE_METRICS:
            m[name] = float(getattr(trial.features, name))
        m["flags"] = float(int(trial.features.flags))
    if trial.measurement is not None:
        meas = trial.measurement
        m["lab_hours"] = meas.lab_hours
        m["product_mg"] = meas.product_mg
        for reagent, ml in meas.reagent_ml.items():
            m[f"reagent_ml.{safe_key(reagent)}"] = ml
    for k, v in extra.items():
        m[safe_key(k)] = float(v)
    return {k: float(v) for k, v in m.items() if v is not None and math.isfinite(v)}


def _trial_note(trial: Trial) -> str:
    parts = [f"**exp-{trial.index:03d}** {trial.status.value}"]
    f = trial.features
    if f is not None:
        parts.append(f"PL {f.pl_peak_nm:.1f} nm, FWHM {f.fwhm_nm:.1f} nm, QY {100 * f.qy:.1f} %")
    if trial.objective is not None:
        parts.append(f"objective {trial.objective:.4g}")
    if trial.error:
        parts.append(f"error: {_truncate(trial.error, 300)}")
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
    n = len(trials)
    failed = sum(t.status is not TrialStatus.COMPLETED for t in trials)
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
        line += (f"; best exp-{winner.index:03d}: {pl}, FWHM {f.fwhm_nm:.1f} nm, "
                 f"QY {100 * f.qy:.1f} %, score {top:.3g}")
    elif top is not None:
        line += f"; best score {top:.4g}"
    return line + ". Table: summary/trials.html; plots/."


def _write_trial_artifacts(root: Path, trial: Trial,
                           targets: Mapping[str, tuple[float, float]]) -> None:
    """The nested run's files: trial.json always; spectra, plot, log, trace with a measurement."""
    (root / "trial.json").write_text(json.dumps(trial.to_dict(), indent=1), encoding="utf-8")
    meas = trial.measurement
    if meas is None:
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
