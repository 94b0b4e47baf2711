"""The tracker protocol, a tracker that keeps nothing, and helpers shared by trackers.

A tracker is where people *look at* a campaign (the MLflow UI); the journal is where the campaign
*lives*. So a tracker may fail (server down) without stopping the campaign: every tracker method
raises :class:`~autolab.exceptions.TrackingError` on failure, the campaign notes it and carries
on, and :func:`autolab.tracking.sync.sync` later replays what the journal holds but the tracker
does not.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autolab.exceptions import AutolabError
from autolab.records import Trial, TrialStatus
from autolab.space import LinearConstraint, qd_space
from autolab.tracking.summary import (
    CampaignView,
    LabAccount,
    best_trial,
    distance_column,
    objective_from_config,
)

if TYPE_CHECKING:  # autolab.objective imports torch: kept out of `autolab report`'s start
    from autolab.objective import ObjectiveSpec

#: Store used when neither the argument nor ``MLFLOW_TRACKING_URI`` names one (MLflow's default).
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

#: MLflow run status of a campaign by how its journal says it stopped.
CAMPAIGN_STATUSES = ("RUNNING", "FINISHED", "FAILED", "KILLED")

#: A model-fit point: (predicted mean, predicted standard deviation, measured value).
Prediction = tuple[float, float, float]


@runtime_checkable
class Tracker(Protocol):
    """Records a campaign for people to review. Implementations: MLflow, null.

    Attributes:
        keeps_records: ``False`` if the tracker discards what it gets (so the journal must not
            mark trials as tracked by it).
    """

    keeps_records: bool

    @property
    def run_id(self) -> str | None:
        """Id of the campaign run this tracker writes to, ``None`` before start/resume."""
        ...

    @property
    def tracking_uri(self) -> str | None:
        """Where the runs are stored, for the journal's ``tracker_run`` record."""
        ...

    def start_campaign(self, name: str, config: Mapping[str, Any], tags: Mapping[str, str],
                       params: Mapping[str, Any], *, campaign_id: str | None = None) -> str:
        """Open the campaign's run (or find it again by ``campaign_id``); return its id."""
        ...

    def resume_campaign(self, run_id: str) -> None:
        """Attach to an existing campaign run, e.g. after ``autolab resume``."""
        ...

    def log_trial(self, trial: Trial, best_so_far: float | None, lab_clock_h: float,
                  extra_metrics: Mapping[str, float], *,
                  extra_tags: Mapping[str, str] | None = None,
                  device_log: Sequence[str] | None = None) -> bool:
        """Record one finished experiment: one run per index, its status the trial's.

        ``device_log`` is what the devices said when the trial has no measurement to carry it
        (a device fault); it becomes the run's ``device_log.txt``.

        Returns:
            ``True`` if it was recorded (or corrected) now, ``False`` if the tracker already held
            it exactly so.
        """
        ...

    def log_campaign_summary(self, metrics: Mapping[str, float], step: int) -> None:
        """Set the campaign run's summary metrics (best experiment, counts...) at ``step``."""
        ...

    def set_campaign_status(self, status: str, reason: str | None = None) -> None:
        """Make the campaign run's status ``status`` (``RUNNING``, ``FINISHED``...), if not yet."""
        ...

    def log_campaign_artifacts(self, trials: Sequence[Trial],
                               predictions: Sequence[Prediction] | None = None,
                               lab_clock_h: Sequence[float] | None = None, *,
                               view: CampaignView | None = None,
                               decisions: Sequence[Mapping[str, Any]] = ()) -> None:
        """Refresh campaign-level plots and the summary table from all trials so far.

        Args:
            trials: Every finished trial of the campaign.
            predictions: Optional model-fit points from the optimizer.
            decisions: A chemist's review decisions
                (:func:`~autolab.tracking.summary.decision_rows`), shown as a table on the
                campaign run (rejected proposals have no run of their own).
            lab_clock_h: Lab clock when each trial finished (default: from the measurements).
            view: The campaign as the report sees it (objective, best, model fit, Pareto).
        """
        ...

    def end_campaign(self, status: str, reason: str | None = None) -> None:
        """Close the campaign run (``completed``, ``failed``, ``interrupted``)."""
        ...


class NullTracker:
    """A tracker that records nothing, for campaigns run without MLflow (CI, benchmarks).

    It still hands out a run id so callers need no special case, but ``keeps_records`` is
    ``False`` so a later sync to a real tracker logs everything.
    """

    keeps_records = False

    def __init__(self) -> None:
        self._run_id: str | None = None

    @property
    def run_id(self) -> str | None:
        """``"null"`` once a campaign was started or resumed."""
        return self._run_id

    @property
    def tracking_uri(self) -> str | None:
        """Always ``None``: nothing is stored anywhere."""
        return None

    def start_campaign(self, name: str, config: Mapping[str, Any], tags: Mapping[str, str],
                       params: Mapping[str, Any], *, campaign_id: str | None = None) -> str:
        """Pretend to open a run."""
        self._run_id = "null"
        return self._run_id

    def resume_campaign(self, run_id: str) -> None:
        """Pretend to attach to a run."""
        self._run_id = run_id

    def log_trial(self, trial: Trial, best_so_far: float | None, lab_clock_h: float,
                  extra_metrics: Mapping[str, float], *,
                  extra_tags: Mapping[str, str] | None = None,
                  device_log: Sequence[str] | None = None) -> bool:
        """Discard the trial; ``False`` since nothing was recorded."""
        return False

    def log_campaign_summary(self, metrics: Mapping[str, float], step: int) -> None:
        """Discard."""

    def set_campaign_status(self, status: str, reason: str | None = None) -> None:
        """Discard."""

    def log_campaign_artifacts(self, trials: Sequence[Trial],
                               predictions: Sequence[Prediction] | None = None,
                               lab_clock_h: Sequence[float] | None = None, *,
                               view: CampaignView | None = None,
                               decisions: Sequence[Mapping[str, Any]] = ()) -> None:
        """Discard."""

    def end_campaign(self, status: str, reason: str | None = None) -> None:
        """Forget the run."""
        self._run_id = None


_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /]")
#: Longest param value kept whole: MLflow 1.x servers refuse longer ones (2.x and 3.x: 6000).
PARAM_VALUE_LIMIT = 500


def safe_key(name: str) -> str:
    """``name`` with characters MLflow refuses in keys replaced by ``_`` (and at most 250 long)."""
    return _KEY_BAD.sub("_", name)[:250]


def flatten_params(config: Mapping[str, Any], prefix: str = "", *,
                   max_value_len: int = 500) -> dict[str, str]:
    """Flatten a nested config into ``dotted.key -> text`` pairs fit for tracker params.

    Nested mappings become dotted keys; lists of mappings are indexed (``constraints.0.text``);
    other lists and scalars become compact JSON. Why: the MLflow UI compares runs by params, and a
    nested dict as one JSON blob cannot be filtered or diffed. Values longer than
    ``max_value_len`` are cut with a trailing ``"..."`` (tracker limit); the full config belongs
    in an artifact.

    Args:
        config: The nested configuration.
        prefix: Key prefix (used in recursion).
        max_value_len: Longest value kept whole.
    """
    out: dict[str, str] = {}
    for key, value in config.items():
        name = _KEY_BAD.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            if value:
                out.update(flatten_params(value, f"{name}.", max_value_len=max_value_len))
            else:
                out[name] = "{}"
        elif isinstance(value, list | tuple) and value and all(
                isinstance(v, Mapping) for v in value):
            for i, v in enumerate(value):
                out.update(flatten_params(v, f"{name}.{i}.", max_value_len=max_value_len))
        else:
            out[name] = _truncate(_scalar_text(value), max_value_len)
    return out


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    try:
        return json.dumps(value, separators=(",", ":"), default=str)
    except ValueError:  # nested non-finite floats
        return str(value)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def git_commit(path: Path | None = None) -> str | None:
    """The git commit of the autolab source tree (or ``path``), ``None`` if not in a git checkout.

    A campaign run should name the code that produced it; an installed wheel has no commit, which
    is not an error.
    """
    where = path if path is not None else Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = res.stdout.strip()
    return commit if res.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


# ---- where the store is ------------------------------------------------------------------------
def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """The argument, else ``MLFLOW_TRACKING_URI``, else :data:`DEFAULT_TRACKING_URI`, made absolute.

    A relative SQLite path (``sqlite:///mlflow.db``) is resolved against the current folder *now*:
    the journal records the URI, and ``autolab sync`` run from another folder (or a notebook
    kernel) must reach the same store, not create a new empty one where it happens to run.
    """
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    path = sqlite_path(uri)
    if path is None or path.is_absolute():
        return uri
    return "sqlite:///" + str(Path.cwd() / path)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative as written), ``None`` for other URIs.

    In-memory databases (``sqlite://``, ``sqlite:///:memory:``) have no file: ``None``.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


# ---- what a campaign run shows -----------------------------------------------------------------
def campaign_params(config: Mapping[str, Any]) -> dict[str, str]:
    """The campaign run's params: what makes two campaigns different set-ups, flattened.

    ``bounds.<condition>``, ``fixed.<condition>``, ``constraints``, ``objective``, ``optimizer``
    and ``optimizer.<setting>``, ``budget.<limit>``, ``stop.<rule>`` (the stop rules set),
    ``mode`` (steady / dynamic) and, for a dynamic campaign, its ``dynamic.<setting>`` block
    (how ramps are planned and read: a steady campaign ignores the block, so it is not shown),
    ``executor`` and ``executor.<setting>`` (settling, flush...: what an experiment is; the
    settings the campaign file sets, as with the optimizer's), ``analyzer.<setting>`` (its QY
    calibration term sets every stated QY sd, so two campaigns' QY uncertainties compare only
    with it in view) and ``review`` (off / terminal / file). docs/review.md lists the same.

    Nothing else: the twin's and the optimizer's internals go into the ``config.json`` /
    ``campaign.yaml`` artifacts, so the settings a researcher compares stand out in the UI.
    Lenient: a part missing or of another shape is left out (the artifacts still hold it all),
    except ``mode``, which is ``steady`` in a journal written before dynamic campaigns existed.

    Args:
        config: The campaign configuration as JSON (``CampaignConfig.model_dump(mode="json")``).
    """
    out: dict[str, str] = {}
    space = config.get("space")
    if isinstance(space, Mapping):
        out.update(_space_params(space))
    objective = config.get("objective")
    if isinstance(objective, Mapping):
        spec = objective_from_config(config)
        out["objective"] = spec.describe() if spec is not None else _scalar_text(dict(objective))
    out.update(_optimizer_params(config.get("optimizer")))
    for block in ("budget", "stop"):  # limits and rules that are set (None: not set)
        part = config.get(block)
        if isinstance(part, Mapping):
            out.update({f"{block}.{safe_key(str(k))}": _scalar_text(v)
                        for k, v in part.items() if v is not None})
    out.update(_procedure_params(config))
    analyzer = config.get("analyzer")
    if isinstance(analyzer, Mapping):
        out.update({f"analyzer.{safe_key(str(k))}": _scalar_text(v) for k, v in analyzer.items()})
    review = config.get("review")
    if isinstance(review, Mapping) and isinstance(review.get("mode"), str):
        out["review"] = review["mode"]
    return {safe_key(k): _truncate(v, PARAM_VALUE_LIMIT) for k, v in out.items()}


def _optimizer_params(optimizer: Any) -> dict[str, str]:
    if not isinstance(optimizer, Mapping):
        return {}
    out = {"optimizer": str(optimizer.get("kind", ""))}
    if "batch_size" in optimizer:
        out["optimizer.batch_size"] = _scalar_text(optimizer["batch_size"])
    settings = optimizer.get("settings")
    if isinstance(settings, Mapping):
        out.update(flatten_params(settings, "optimizer."))
    return out


def _procedure_params(config: Mapping[str, Any]) -> dict[str, str]:
    """``mode``, the ``dynamic.*`` block of a dynamic campaign, ``executor`` and its settings."""
    mode = config.get("mode", "steady")
    out = {"mode": str(mode)}
    dynamic = config.get("dynamic")
    if mode == "dynamic" and isinstance(dynamic, Mapping):
        out.update(flatten_params(dynamic, "dynamic."))
    executor = config.get("executor")
    if isinstance(executor, Mapping):
        if isinstance(executor.get("kind"), str):
            out["executor"] = executor["kind"]
        settings = executor.get("settings")
        if isinstance(settings, Mapping):
            out.update(flatten_params(settings, "executor."))
    return out


def _space_params(space: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    raw_fixed = space.get("fixed")
    fixed: Mapping[str, Any] = raw_fixed if isinstance(raw_fixed, Mapping) else {}
    try:
        names = space.get("parameters")
        bounds = space.get("bounds") or {}
        texts = space.get("constraints")
        built = qd_space(
            names if isinstance(names, list) else list(qd_space().names),
            overrides={k: (float(v[0]), float(v[1])) for k, v in bounds.items()},
            constraints=None if texts is None else [LinearConstraint.parse(t) for t in texts])
    except (AutolabError, TypeError, ValueError, IndexError, AttributeError):
        built = None
    if built is not None:
        for p in built.parameters:
            out[f"bounds.{p.name}"] = p.allowed
        out["constraints"] = "; ".join(c.describe() for c in built.constraints) or "none"
    out.update({f"fixed.{safe_key(str(k))}": _scalar_text(v) for k, v in fixed.items()})
    return out


@dataclass(frozen=True)
class CampaignSummary:
    """Where a campaign stands: what its parent run shows, kept current as it runs.

    Attributes:
        n_experiments: Finished experiments (completed, failed, invalid); interrupted attempts
            are not experiments (their conditions ran again under a new index).
        n_failed: Failed or invalid experiments.
        n_interrupted: Attempts cut short by a crash or signal.
        best_experiment: Index of the best experiment by :meth:`ObjectiveSpec.rank_key` (any
            experiment inside every target band ranks first), ``None`` before one has outcomes.
        best_pl_peak_nm: Its PL peak, nm.
        best_qy: Its quantum yield, 0-1.
        best_fwhm_nm: Its PL FWHM, nm.
        best_score: Its objective score (``None`` if it missed an outcome constraint).
        experiments_to_target: Experiments run until the first one inside every target band and
            outcome constraint (counting it), ``None`` until then or without a target.
        lab_hours_to_target: The lab clock at the end of that experiment, h.
        lab_clock_h: The lab clock after the last finished experiment, h (with parallel
            reactors the campaign's wall-clock lab time: the latest reactor clock).
        lab_h_per_experiment: Mean lab time one experiment took on its reactor (flush, ramp,
            settle, acquire), h: what adaptive settling and short changeovers cut.
    """

    n_experiments: int = 0
    n_failed: int = 0
    n_interrupted: int = 0
    best_experiment: int | None = None
    best_pl_peak_nm: float | None = None
    best_qy: float | None = None
    best_fwhm_nm: float | None = None
    best_score: float | None = None
    experiments_to_target: int | None = None
    lab_hours_to_target: float | None = None
    lab_clock_h: float = 0.0
    lab_h_per_experiment: float | None = None

    def metrics(self) -> dict[str, float]:
        """The fields that have a value, as rounded floats (the parent run's metrics)."""
        out: dict[str, float] = {}
        for name, value in vars(self).items():
            if value is not None and math.isfinite(float(value)):
                out[name] = round_metric(name, float(value))
        return out


def campaign_summary(trials: Sequence[Trial], accounts: Sequence[LabAccount],
                     objective: ObjectiveSpec | None) -> CampaignSummary:
    """The :class:`CampaignSummary` of finished (and interrupted) trials in index order.

    Args:
        trials: Trials in index order, as :meth:`JournalState.finished` gives them.
        accounts: Their lab clocks (:func:`autolab.tracking.summary.lab_accounts`).
        objective: The campaign's objective (ranks the best, in band first; defines the
            target); ``None`` ranks by score alone and has no target.
    """
    ran = [(t, a) for t, a in zip(trials, accounts, strict=True)
           if t.status is not TrialStatus.INTERRUPTED]
    # in the order results came in (parallel reactors finish out of index order)
    done = sorted(((t, a.lab_clock_h) for t, a in ran), key=lambda d: d[1])
    best = best_trial(trials, objective)
    to_target = next(((count, h) for count, (t, h) in enumerate(done, start=1)
                      if _reached(t, objective)), None)
    f = best.features if best is not None else None
    return CampaignSummary(
        n_experiments=len(done),
        n_failed=sum(t.status is not TrialStatus.COMPLETED for t, _ in done),
        n_interrupted=len(trials) - len(done),
        best_experiment=None if best is None else best.index,
        best_pl_peak_nm=None if f is None else f.pl_peak_nm,
        best_qy=None if f is None else f.qy,
        best_fwhm_nm=None if f is None else f.fwhm_nm,
        best_score=None if best is None else best.objective,
        experiments_to_target=None if to_target is None else to_target[0],
        lab_hours_to_target=None if to_target is None else to_target[1],
        lab_clock_h=done[-1][1] if done else 0.0,
        lab_h_per_experiment=(sum(a.experiment_lab_h for _, a in ran) / len(ran)
                              if ran else None))


def _reached(trial: Trial, objective: ObjectiveSpec | None) -> bool:
    """Inside every target band and outcome constraint (what "target reached" means)."""
    outcomes = trial.outcomes()
    if (outcomes is None or objective is None
            or not any(t.kind == "target" for t in objective.terms)):
        return False
    try:
        return objective.within_target(outcomes) and objective.is_feasible(outcomes)
    except AutolabError:  # an outcome the objective needs is missing or not finite
        return False


def experiment_metrics(trial: Trial, extra: Mapping[str, Any], objective: ObjectiveSpec | None,
                       account: LabAccount | None = None) -> dict[str, float]:
    """An experiment run's derived metrics (features, clock and reagents are the tracker's).

    ``in_band.<outcome>`` (0/1) and ``distance_to_target_nm.<outcome>`` (``distance_to_target.``
    for an outcome not in nm) per target, ``in_band`` (1 inside every band), the score by term
    (``score.<term>``), the model's prediction with its uncertainty (``predicted_<outcome>``,
    ``predicted_<outcome>_sd``, ``predicted_score``...), ``experiment_lab_h`` (how far the lab
    clock moved during it), ``reagent_ml.<name>`` (this experiment) and
    ``reagent_total_ml.<name>`` (cumulative), plus any number the campaign journaled under
    ``extra["metrics"]`` that is not one of these.

    Args:
        trial: The trial.
        extra: Its journal ``extra``.
        objective: The campaign's objective, if known.
        account: Its lab time and reagents (:func:`autolab.tracking.summary.lab_accounts`, the
            numbers the report shows); ``None`` for an interrupted attempt.
    """
    out = {k: v for k, v in _journaled_metrics(extra).items()
           if not k.startswith(_DERIVED_HERE)}
    outcomes = trial.outcomes()
    if objective is not None and outcomes is not None:
        out.update(_objective_metrics(objective, outcomes))
    out.update(_prediction_metrics(extra.get("prediction")))
    out.update(wait_metrics(trial))
    if account is not None:
        out["experiment_lab_h"] = account.experiment_lab_h
        for name, ml in account.reagent_ml.items():
            out[f"reagent_ml.{safe_key(name)}"] = ml
        for name, ml in account.reagent_total_ml.items():
            out[f"reagent_total_ml.{safe_key(name)}"] = ml
    return {k: v for k, v in out.items() if math.isfinite(v)}


def wait_metrics(trial: Trial) -> dict[str, float]:
    """The procedure's waits in this experiment, minutes, as metrics.

    Every numeric ``wait_*_min`` entry of the measurement's metadata (``wait_flush_min``,
    ``wait_heat_min``, ``wait_settle_min``...).

    Why the settle wait ended (``settle_reason``) is text: it is shown as the experiment's
    ``autolab.meta.settle_reason`` tag with the rest of the metadata.
    """
    meas = trial.measurement
    if meas is None:
        return {}
    return {k: float(v) for k, v in meas.metadata.items()
            if k.startswith("wait_") and k.endswith("_min") and isinstance(v, int | float)
            and not isinstance(v, bool) and math.isfinite(float(v))}


#: Journaled metric names this module derives itself from the journal (one place per formula:
#: a copy the campaign journaled is not logged twice under another name).
_DERIVED_HERE = ("reagent_ml_total", "reagent_total_ml", "reagent_ml.", "predicted_", "score_",
                 "in_band", "distance_to_target")


def _objective_metrics(objective: ObjectiveSpec, outcomes: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        statuses = objective.target_status(outcomes)
        for st in statuses:
            out[f"in_band.{st.outcome}"] = float(st.in_band)
            out[distance_column(st.outcome)] = st.distance
        if statuses:
            out["in_band"] = float(all(st.in_band for st in statuses))
        out.update({f"score.{k}": v for k, v in objective.score_terms(outcomes).items()})
    except (AutolabError, KeyError):
        return {}
    return out


def _prediction_metrics(pred: Any) -> dict[str, float]:
    if not isinstance(pred, Mapping):
        return {}
    out: dict[str, float] = {}
    for key, name in (("score_mean", "predicted_score"), ("score_sd", "predicted_score_sd")):
        if _is_number(pred.get(key)):
            out[name] = float(pred[key])
    outcomes = pred.get("outcomes")
    for name, mean_sd in (outcomes.items() if isinstance(outcomes, Mapping) else ()):
        if isinstance(mean_sd, list | tuple) and len(mean_sd) == 2 and all(
                _is_number(x) for x in mean_sd):
            out[f"predicted_{safe_key(str(name))}"] = float(mean_sd[0])
            out[f"predicted_{safe_key(str(name))}_sd"] = float(mean_sd[1])
    return out


def _journaled_metrics(extra: Mapping[str, Any]) -> dict[str, float]:
    metrics = extra.get("metrics")
    if not isinstance(metrics, Mapping):
        return {}
    return {safe_key(str(k)): float(v) for k, v in metrics.items() if _is_number(v)}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


#: A metric name's quantity (before any ``.<qualifier>``) in nm: a wavelength, its uncertainty
#: (``_err``, ``_sd``) or a distance in nm (``pl_peak_nm``, ``predicted_pl_peak_nm_sd``,
#: ``distance_to_target_nm.pl_peak_nm``). The qualifier names *which* outcome, term or reagent,
#: not the unit: ``score.minimize_fwhm_nm`` is a score term, not a wavelength.
_NM_QUANTITY = re.compile(r"[^.]*_nm(?:_err|_sd)?")
#: The score and its terms (``score.<term>``), rounded together by :func:`round_metrics`.
SCORE_METRIC = "score"
#: Significant digits people read in a metric (the largest of the score and its terms).
SIGNIFICANT_DIGITS = 4


def round_metric(name: str, value: float) -> float:
    """A metric rounded for people: 0.01 nm for a quantity in nm, else 4 significant digits.

    MLflow shows every digit it is given; ``549.5512345678`` hides the one that matters.
    Counts, flags and indices stay exact (integers are left alone). The unit is the quantity's
    (the name before any ``.<qualifier>``, :data:`_NM_QUANTITY`), not a word anywhere in the
    name. The score and its terms must add up, so they are rounded together by
    :func:`round_metrics`, not here.
    """
    if not math.isfinite(value) or value == int(value):
        return value
    if _NM_QUANTITY.fullmatch(name.split(".", 1)[0]):
        return round(value, 2)
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def round_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Every metric by :func:`round_metric`, but the score and its terms so they add up.

    ``score`` and the ``score.<term>`` metrics are rounded to one decimal place, the one that
    keeps :data:`SIGNIFICANT_DIGITS` of the largest of them (:func:`sum_preserving_round`):
    rounded one by one, ``3.759 + -2.693 + 0.001`` shows ``score`` 1.067 while its terms add to
    1.069, and a researcher reading which term moved the score is misled.
    """
    out = {k: round_metric(k, float(v)) for k, v in metrics.items()}
    terms = {k: float(v) for k, v in metrics.items() if k.startswith(SCORE_METRIC + ".")}
    if terms:
        score = metrics.get(SCORE_METRIC)
        rounded, total = sum_preserving_round(terms, None if score is None else float(score))
        out.update(rounded)
        if score is not None:
            out[SCORE_METRIC] = total
    return out


def sum_preserving_round(terms: Mapping[str, float],
                         total: float | None = None) -> tuple[dict[str, float], float]:
    """Terms and their total rounded to one decimal place so the rounded terms add to the total.

    The place keeps :data:`SIGNIFICANT_DIGITS` of the largest magnitude among them; each term
    is within one unit of that place of its value (largest-remainder rounding), the total
    within half a unit.

    Args:
        terms: Name -> value, finite.
        total: Their sum as computed elsewhere (the trial's score). When it is their sum to
            float precision, the rounded terms add up to it; when it is not (another formula),
            it is rounded on its own at the same place.

    Returns:
        The rounded terms, and the rounded total they add up to.
    """
    values = [float(v) for v in terms.values()]
    exact = math.fsum(values)
    own = total is not None and abs(total - exact) > 1e-9 * max(1.0, abs(exact))
    largest = max((abs(v) for v in (*values, exact, total or 0.0)), default=0.0)
    if largest == 0.0:
        return dict.fromkeys(terms, 0.0), 0.0
    places = min(12, max(0, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(largest))))
    unit = 10.0 ** places
    scaled = [v * unit for v in values]
    counts = [round(x) for x in scaled]
    want = round(exact * unit)
    short = want - sum(counts)  # |short| <= len(terms) / 2: hand it to the largest remainders
    order = sorted(range(len(counts)), key=lambda i: scaled[i] - counts[i], reverse=short > 0)
    for i in order[:abs(short)]:
        counts[i] += 1 if short > 0 else -1
    rounded = {k: c / unit for k, c in zip(terms, counts, strict=True)}
    if own:  # not their sum (another formula): the total is rounded on its own
        return rounded, round(float(total or 0.0) * unit) / unit
    return rounded, want / unit


_LONG_FLOAT = re.compile(r"-?\d+\.\d{5,}(?:e[-+]?\d+)?")


def readable_reason(text: str) -> str:
    """A failure reason fit for people: long floats (``180.12345678901``) cut to 4 digits."""
    return _LONG_FLOAT.sub(lambda m: f"{float(m.group()):.4g}", text)


def campaign_status(stopped_reason: str | None, in_flight: Sequence[int] = (),
                    journaled: str | None = None) -> str:
    """The MLflow status a campaign run must have, by what its journal says.

    Not stopped (running, or its process died and it awaits ``resume``): ``RUNNING``. Stopped by
    a stop rule: ``FINISHED``; by the user or a signal: ``KILLED``; by an error or a device that
    stayed unsafe: ``FAILED``.

    Args:
        stopped_reason: The journal's last ``stopped`` reason since the last ``started`` record.
        in_flight: Experiments started but not finished (none once the campaign stopped).
        journaled: The status the campaign journaled with its stop, if it did (it wins).
    """
    if stopped_reason is None or in_flight:
        return "RUNNING"
    if journaled in CAMPAIGN_STATUSES:
        return journaled
    head, _, why = stopped_reason.partition(":")
    head, why = head.strip(), why.strip()
    if head == "device failure":
        return "FAILED"
    if head == "waiting for a decision":
        return "KILLED"
    if head != "interrupted":
        return "FINISHED"
    if not why or why in ("stopped by the user", "stopped during the experiment"):
        return "KILLED"
    return "FAILED"

