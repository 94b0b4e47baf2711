"""What a campaign's record says, as numbers and tables: the one place for every derived quantity.

The report command, the MLflow tracker and the notebooks all read a campaign through these pure
functions, so a quantity means one thing and has one value everywhere:

* **Best so far** ranks with :meth:`ObjectiveSpec.rank_key` (in band first, then feasible, then
  score), so a bright 547.8 nm experiment never outranks a 550.4 nm one when 550 ± 2 was asked.
* **Lab time and reagents** (:class:`LabAccount`): ``lab_clock_h`` is the campaign's lab clock when
  the experiment ended (the executor's clock, journaled with the trial, so a failed experiment
  that clogged after hours of flow carries those hours); ``experiment_lab_h`` is the lab time it
  took, from the end of the one before; ``reagent_ml`` is what it consumed and
  ``reagent_total_ml`` the campaign's running total, per reagent, in mL.
* **Pareto campaigns**: front membership, hypervolume after each experiment (one fixed reference
  point, so the curve only rises) and the warnings a reviewer needs (front members at a search
  bound, or measured before the outlet was steady).
* **Model fit**: the optimizer's prediction (mean, sd) per modeled outcome next to the measured
  value, from the journal's ``extra["prediction"]``.

The summary table (one row per experiment) is written as CSV for tools and markdown and HTML for
eyes; the HTML table is what a researcher reads in the MLflow UI (its artifact viewer renders
``.html``): readable headers with units, QY in %, failed rows in red with their error, the best
row in green, cells inside a target band outlined.

No matplotlib here; :mod:`autolab.objective` is loaded only to read a config, and ``torch`` only
when something is scored, so a table can be printed without either.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autolab.records import QualityFlag, Trial, TrialStatus, experiment_label
from autolab.space import QD_PARAMETERS

if TYPE_CHECKING:
    from autolab.objective import ObjectiveSpec

_FEATURES = ("pl_peak_nm", "fwhm_nm", "qy", "abs_peak_nm")

#: Target bands of a campaign: outcome name -> (target value, tolerance), in the outcome's units.
Targets = Mapping[str, tuple[float, float]]

#: Journal ``extra`` dicts by experiment index (:attr:`JournalState.extras`).
Extras = Mapping[int, Mapping[str, Any]]

#: Prefix of the cumulative per-reagent totals a campaign journals in ``extra["metrics"]``.
REAGENT_TOTAL_PREFIX = "reagent_total_ml."


# ---- the objective -------------------------------------------------------------------------
def objective_from_config(config: Mapping[str, Any]) -> ObjectiveSpec | None:
    """The campaign's :class:`ObjectiveSpec` from its (journaled or logged) config dict.

    Lenient on purpose: a config of another shape (an older journal, a foreign run) gives
    ``None`` and the caller falls back to the stored scores instead of failing a report.
    """
    from pydantic import ValidationError  # noqa: PLC0415 (only needed to read a config)

    from autolab.objective import ObjectiveSpec  # noqa: PLC0415 (pydantic models: a table needs none)

    raw = config.get("objective")
    if not isinstance(raw, Mapping):
        return None
    try:
        return ObjectiveSpec.model_validate(dict(raw))
    except (ValidationError, TypeError, ValueError):
        return None


def targets_of(objective: ObjectiveSpec | None) -> dict[str, tuple[float, float]]:
    """Target bands ``outcome -> (value, tolerance)`` of an objective's target terms."""
    if objective is None:
        return {}
    return {t.outcome: (float(t.value), float(t.tolerance))
            for t in objective.terms if t.kind == "target"}


def _scored(trial: Trial) -> bool:
    obj = trial.objective
    return (trial.status is TrialStatus.COMPLETED and obj is not None and math.isfinite(obj)
            and trial.outcomes() is not None)


def _rank(trial: Trial, objective: ObjectiveSpec | None) -> tuple[float, ...] | None:
    """Sort key of a trial; ``None`` for one that is never best.

    With the objective its one rule decides (``ObjectiveSpec.best_key``, as for the campaign,
    steering and the optimizer: an in-band trial that misses an outcome constraint, whose score
    the campaign leaves empty, still ranks); without it the finite score alone.
    """
    if objective is None:
        return (float(trial.objective),) if _scored(trial) else None  # type: ignore[arg-type]
    key = objective.best_key(trial.outcomes())
    return None if key is None else tuple(float(v) for v in key)


def best_trials(trials: Sequence[Trial], objective: ObjectiveSpec | None = None,
                ) -> list[int | None]:
    """Index of the best experiment after each trial, ``None`` until one was scored.

    Only completed, usable trials count (failed, interrupted and invalid ones have no outcomes).
    With ``objective`` the objective's one rule decides
    (:meth:`ObjectiveSpec.best_key`: in band first, then feasible, then score; an experiment
    neither in band nor feasible is never best); without it the score alone.
    """
    out: list[int | None] = []
    best: Trial | None = None
    best_key: tuple[float, ...] = ()
    for t in trials:
        key = _rank(t, objective)
        if key is not None and (best is None or key > best_key):
            best, best_key = t, key
        out.append(None if best is None else best.index)
    return out


def best_so_far(trials: Sequence[Trial], objective: ObjectiveSpec | None = None,
                ) -> list[float | None]:
    """Score of the best experiment after each trial (see :func:`best_trials`), ``None`` until one.

    With a target, the best-ranked experiment is the in-band one, so this curve can step *down*
    when the first in-band experiment scores lower than an earlier, brighter out-of-band one:
    that is the truth of "best", not a glitch.
    """
    by_index = {t.index: t for t in trials}
    return [None if i is None else by_index[i].objective for i in best_trials(trials, objective)]


def best_trial(trials: Sequence[Trial], objective: ObjectiveSpec | None = None) -> Trial | None:
    """The campaign's best experiment (last entry of :func:`best_trials`)."""
    indices = best_trials(trials, objective)
    if not indices or indices[-1] is None:
        return None
    return next(t for t in trials if t.index == indices[-1])


def in_band(trial: Trial, targets: Targets) -> bool | None:
    """Whether every target outcome of a usable trial is inside its band; ``None`` if unusable."""
    outcomes = trial.outcomes()
    if outcomes is None or not targets:
        return None
    return all(name in outcomes and abs(outcomes[name] - value) <= tol
               for name, (value, tol) in targets.items())


# ---- lab clock and reagents ------------------------------------------------------------------
@dataclass(frozen=True)
class LabAccount:
    """Lab time and reagents of one experiment, each with one meaning everywhere.

    Attributes:
        lab_clock_h: Campaign lab clock when the experiment ended, h.
        experiment_lab_h: Lab time the experiment took (flush, ramp, settle, acquire, or the run
            up to a failure and its clean-up), from the end of the previous one, h.
        reagent_ml: Volume of each reagent this experiment consumed, mL.
        reagent_total_ml: Campaign's running total of each reagent after it, mL.
    """

    lab_clock_h: float
    experiment_lab_h: float
    reagent_ml: dict[str, float] = field(default_factory=dict)
    reagent_total_ml: dict[str, float] = field(default_factory=dict)


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _journaled_totals(extra: Mapping[str, Any]) -> dict[str, float] | None:
    """The executor's cumulative per-reagent volumes journaled with a trial, if any.

    ``extra["reagent_total_ml"]`` (name -> mL) as the campaign writes it; older journals may
    hold them as ``extra["metrics"]["reagent_total_ml.<name>"]``.
    """
    raw = extra.get("reagent_total_ml")
    if isinstance(raw, Mapping):
        totals = {str(k): _number(v) for k, v in raw.items()}
    else:
        metrics = extra.get("metrics")
        if not isinstance(metrics, Mapping):
            return None
        totals = {str(k)[len(REAGENT_TOTAL_PREFIX):]: _number(v) for k, v in metrics.items()
                  if str(k).startswith(REAGENT_TOTAL_PREFIX)}
    if not totals or any(v is None for v in totals.values()):
        return None
    return {k: float(v) for k, v in totals.items() if v is not None}


def lab_accounts(trials: Sequence[Trial], extras: Extras | None = None) -> list[LabAccount]:
    """Lab clock, duration and reagents of each trial (in index order).

    Sources, best first: the campaign's journaled clock (``extra["lab_clock_h"]``, the executor's
    clock when the experiment ended; with parallel reactors the campaign's wall-clock lab time,
    and the experiment's duration is measured on its own reactor's clock,
    ``extra["reactor_clock_h"]``) and per-reagent running totals
    (``extra["reagent_total_ml"]``); else the measurement's own clock and
    volumes; else (a failed experiment without either) the previous experiment's clock and no
    reagents. Per-experiment volumes are differences of journaled totals where both ends are
    known, so they add up to the totals.
    """
    extras = extras or {}
    out: list[LabAccount] = []
    clock = 0.0
    totals: dict[str, float] = {}
    reactor_clock: dict[str, float] = {}  # parallel reactors: each experiment on its own clock
    for t in trials:
        extra = extras.get(t.index, {})
        meas = t.measurement
        journaled = _number(extra.get("lab_clock_h"))
        if journaled is not None:
            new_clock = journaled
        elif meas is not None and math.isfinite(meas.finished_lab_h):
            new_clock = meas.finished_lab_h
        else:
            new_clock = clock
        new_totals = _journaled_totals(extra)
        if new_totals is not None:
            used = {k: v - totals.get(k, 0.0) for k, v in new_totals.items()}
        else:
            used = dict(meas.reagent_ml) if meas is not None else {}
            new_totals = dict(totals)
            for k, v in used.items():
                new_totals[k] = new_totals.get(k, 0.0) + v
        duration = new_clock - clock
        own = _number(extra.get("reactor_clock_h"))
        if own is not None and isinstance(extra.get("reactor"), str):
            duration = own - reactor_clock.get(extra["reactor"], 0.0)
            reactor_clock[extra["reactor"]] = own
        out.append(LabAccount(lab_clock_h=new_clock, experiment_lab_h=max(0.0, duration),
                              reagent_ml=used, reagent_total_ml=dict(new_totals)))
        clock, totals = new_clock, new_totals
    return out


def lab_clocks(trials: Sequence[Trial], extras: Extras | None = None) -> list[float]:
    """Lab clock (h) when each trial ended: :attr:`LabAccount.lab_clock_h` of each."""
    return [a.lab_clock_h for a in lab_accounts(trials, extras)]


# ---- Pareto campaigns ------------------------------------------------------------------------
@dataclass(frozen=True)
class ParetoSummary:
    """The Pareto view of a campaign: who is on the front, how the front grew, what to doubt.

    Attributes:
        terms: Labels of the objective's terms (``maximize_qy``...), the utility axes.
        utilities: Per-term utilities (larger is better) of each feasible, usable experiment.
        front: Indices of the non-dominated experiments, in index order.
        ref_point: Reference point of the hypervolume, utility space.
        hypervolume: Hypervolume of the feasible experiments after each trial (trial order).
        warnings: One sentence per doubtful front member.
    """

    terms: tuple[str, ...]
    utilities: dict[int, tuple[float, ...]]
    front: tuple[int, ...]
    ref_point: tuple[float, ...]
    hypervolume: tuple[float, ...]
    warnings: tuple[str, ...]


def non_dominated(points: Sequence[Sequence[float]]) -> list[bool]:
    """Mask of points no other point weakly beats in every coordinate and strictly in one.

    Larger is better in every coordinate (utilities). Duplicates are all kept.
    """
    pts = [tuple(float(v) for v in p) for p in points]
    out = []
    for p in pts:
        dominated = any(all(a >= b for a, b in zip(q, p, strict=True)) and q != p for q in pts)
        out.append(not dominated)
    return out


def hypervolume(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded below by ``ref`` (larger is better).

    Exact, by slicing along the last coordinate (HSO); fine for the tens of points and two or
    three terms of a lab campaign. Points not strictly better than ``ref`` in every coordinate add
    nothing.
    """
    r = [float(v) for v in ref]
    pts = [tuple(float(v) for v in p) for p in points
           if all(float(a) > b for a, b in zip(p, r, strict=True))]
    if not pts:
        return 0.0
    if len(r) == 1:
        return max(p[0] for p in pts) - r[0]
    pts.sort(key=lambda p: p[-1], reverse=True)
    volume = 0.0
    for k, p in enumerate(pts):
        lower = pts[k + 1][-1] if k + 1 < len(pts) else r[-1]
        if p[-1] > lower:
            volume += hypervolume([q[:-1] for q in pts[:k + 1]], r[:-1]) * (p[-1] - lower)
    return volume


def reference_point(objective: ObjectiveSpec, utilities: Sequence[Sequence[float]],
                    ) -> tuple[float, ...]:
    """The configured ``ref_point``, else the front's nadir minus 10 % of its range.

    The optimizer's rule (BoTorch's ``infer_reference_point``: a single front point steps back
    10 % of its magnitude; a coordinate with no range steps back 1e-9; a coordinate not below the
    front then one unit), applied once to the whole campaign so the hypervolume curve of a
    report uses one fixed point and can only rise.
    """
    if objective.ref_point is not None:
        return tuple(float(v) for v in objective.ref_point)
    mask = non_dominated(utilities)
    front = [u for u, keep in zip(utilities, mask, strict=True) if keep]
    out = []
    for j in range(len(objective.terms)):
        lo = min(u[j] for u in front)
        hi = max(u[j] for u in front)
        span = abs(lo) if len(front) == 1 else hi - lo
        ref = lo - 0.1 * max(span, 1e-8)
        out.append(ref - 1.0 if ref >= lo else ref)
    return tuple(out)


def search_bounds(config: Mapping[str, Any]) -> dict[str, tuple[float, float, bool]]:
    """Searched parameter -> ``(lower, upper, log scale)`` of a campaign config dict.

    The config's ``space.bounds`` where given, else the InP/ZnS catalog's; parameters the catalog
    does not know and the config does not bound are left out.
    """
    space = config.get("space")
    space = space if isinstance(space, Mapping) else {}
    names = space.get("parameters") or list(QD_PARAMETERS)
    bounds = space.get("bounds") if isinstance(space.get("bounds"), Mapping) else {}
    out: dict[str, tuple[float, float, bool]] = {}
    for name in names:
        cat = QD_PARAMETERS.get(str(name))
        log = cat is not None and cat.scale == "log"
        given = bounds.get(name) if isinstance(bounds, Mapping) else None
        if isinstance(given, list | tuple) and len(given) == 2:
            out[str(name)] = (float(given[0]), float(given[1]), log)
        elif cat is not None:
            out[str(name)] = (float(cat.lower), float(cat.upper), log)
    return out


def _at_bound(value: float, lo: float, hi: float, log: bool, tol: float = 0.01) -> str | None:
    if log and lo > 0 and value > 0:
        value, lo, hi = math.log(value), math.log(lo), math.log(hi)
    span = hi - lo
    if span <= 0:
        return None
    if value - lo <= tol * span:
        return "lower"
    if hi - value <= tol * span:
        return "upper"
    return None


def front_warnings(trials: Sequence[Trial], front: Sequence[int],
                   bounds: Mapping[str, tuple[float, float, bool]]) -> list[str]:
    """Sentences about front members a reviewer should doubt.

    A member at a search bound says the front may continue outside the searched box (widen the
    bound, if the reactor allows it); a member flagged ``not_steady`` was measured before the
    outlet settled, so its place on the front is uncertain.
    """
    by_index = {t.index: t for t in trials}
    out: list[str] = []
    for i in front:
        t = by_index[i]
        for name, (lo, hi, log) in bounds.items():
            v = t.conditions.get(name)
            side = None if v is None else _at_bound(v, lo, hi, log)
            if side is not None:
                unit = QD_PARAMETERS[name].unit if name in QD_PARAMETERS else ""
                edge = lo if side == "lower" else hi
                out.append(f"{experiment_label(i)} on the front sits at the {side} bound of {name} "
                           f"({edge:g}{' ' + unit if unit else ''}): the front may continue "
                           "outside the searched box")
        if t.features is not None and t.features.flags & QualityFlag.NOT_STEADY:
            out.append(f"{experiment_label(i)} on the front is flagged not_steady: measured before "
                       "the outlet settled, so its place on the front is uncertain")
    return out


def pareto_summary(trials: Sequence[Trial], objective: ObjectiveSpec,
                   bounds: Mapping[str, tuple[float, float, bool]] | None = None,
                   ) -> ParetoSummary | None:
    """Front, hypervolume per experiment and warnings of a Pareto campaign; ``None`` otherwise.

    Only completed, usable experiments that meet the outcome constraints take part (the others
    have no place on the front). ``None`` for a scalar objective, so nobody draws an empty front.
    """
    if objective.mode != "pareto":
        return None
    utilities: dict[int, tuple[float, ...]] = {}
    for t in trials:
        outcomes = t.outcomes()
        if outcomes is not None and objective.is_feasible(outcomes):
            utilities[t.index] = tuple(objective.utilities(outcomes))
    terms = tuple(f"{t.kind}_{t.outcome}" for t in objective.terms)
    if not utilities:
        return ParetoSummary(terms, {}, (), (), tuple(0.0 for _ in trials), ())
    keys = sorted(utilities)
    mask = non_dominated([utilities[i] for i in keys])
    front = tuple(i for i, keep in zip(keys, mask, strict=True) if keep)
    ref = reference_point(objective, [utilities[i] for i in keys])
    hv: list[float] = []
    seen: list[tuple[float, ...]] = []
    for t in trials:
        if t.index in utilities:
            seen.append(utilities[t.index])
        hv.append(hypervolume(seen, ref))
    warnings = front_warnings(trials, front, bounds or {})
    return ParetoSummary(terms, utilities, front, ref, tuple(hv), tuple(warnings))


# ---- model fit -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitPoint:
    """The optimizer's prediction for one experiment next to what was measured.

    Attributes:
        index: Experiment index.
        mean: Predicted mean, outcome units.
        sd: Predicted standard deviation (1 sigma), outcome units.
        measured: Measured value, outcome units.
    """

    index: int
    mean: float
    sd: float
    measured: float


def model_fit_points(trials: Sequence[Trial], extras: Extras) -> dict[str, list[FitPoint]]:
    """Prediction vs measurement per modeled outcome (and ``"objective"``, the score).

    Reads ``extra["prediction"]`` (``score_mean``, ``score_sd`` and ``outcomes: {name: [mean,
    sd]}``), written by the campaign when a model proposed the experiment. Only completed, usable
    experiments count: a failed or invalid one measured nothing to compare with.
    """
    out: dict[str, list[FitPoint]] = {}
    for t in trials:
        pred = extras.get(t.index, {}).get("prediction")
        outcomes = t.outcomes()
        if not isinstance(pred, Mapping) or outcomes is None:
            continue
        mean, sd = _number(pred.get("score_mean")), _number(pred.get("score_sd"))
        if mean is not None and sd is not None and t.objective is not None \
                and math.isfinite(t.objective):
            out.setdefault("objective", []).append(FitPoint(t.index, mean, abs(sd), t.objective))
        per = pred.get("outcomes")
        for name, mean_sd in (per.items() if isinstance(per, Mapping) else ()):
            if not isinstance(mean_sd, list | tuple) or len(mean_sd) != 2 or name not in outcomes:
                continue
            m, s = _number(mean_sd[0]), _number(mean_sd[1])
            if m is not None and s is not None and math.isfinite(outcomes[name]):
                out.setdefault(str(name), []).append(FitPoint(t.index, m, abs(s), outcomes[name]))
    return out


# ---- the table -------------------------------------------------------------------------------
def summary_rows(trials: Sequence[Trial], best: Sequence[float | None],
                 lab_clock_h: Sequence[float], *, objective: ObjectiveSpec | None = None,
                 accounts: Sequence[LabAccount] | None = None,
                 pareto: ParetoSummary | None = None,
                 reactors: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """One dict per trial, the columns of every summary table (CSV, markdown, HTML).

    Columns: ``index`` (shown as ``exp-000``), status, conditions (space order), ``objective``,
    ``best_so_far``; with target terms ``in_band`` and ``distance_to_target_nm.<outcome>``
    (:func:`distance_column`) per target; with a Pareto summary ``pareto_front`` (1 for a front
    member) and ``hypervolume`` (after this experiment); features; ``lab_clock_h`` and
    ``experiment_lab_h``; ``reagent_ml`` (this experiment) and ``reagent_total_ml`` (campaign so
    far), all reagents summed; flags; error.

    Args:
        trials: Trials in index order.
        best: Best-so-far score after each trial (:func:`best_so_far`).
        lab_clock_h: Lab clock when each trial ended, h (:func:`lab_clocks`).
        objective: The campaign's objective, for the target columns.
        accounts: Reagent bookkeeping (:func:`lab_accounts`); from the measurements if omitted.
        pareto: The Pareto view (:func:`pareto_summary`) of a Pareto campaign.
        reactors: Trial index -> the reactor that ran it (parallel reactors): a ``reactor``
            column.
    """
    params = list(dict.fromkeys(k for t in trials for k in t.conditions))  # space order
    targets = targets_of(objective)
    accounts = accounts if accounts is not None else lab_accounts(trials)
    rows: list[dict[str, Any]] = []
    for i, (t, b, h, acc) in enumerate(zip(trials, best, lab_clock_h, accounts, strict=True)):
        row: dict[str, Any] = {"index": t.index, "status": t.status.value}
        row.update({p: t.conditions.get(p) for p in params})
        row["objective"] = t.objective
        row["best_so_far"] = b
        if objective is not None and targets:
            row.update(_target_cells(objective, t))
        if pareto is not None:
            row["pareto_front"] = (int(t.index in pareto.front) if t.index in pareto.utilities
                                   else None)
            row["hypervolume"] = pareto.hypervolume[i]
        for f in _FEATURES:
            row[f] = None if t.features is None else getattr(t.features, f)
        row["lab_clock_h"] = float(h)
        row["experiment_lab_h"] = acc.experiment_lab_h  # on its own reactor's clock
        if isinstance(reactors, Mapping):
            row["reactor"] = reactors.get(t.index, "")
        row["reagent_ml"] = sum(acc.reagent_ml.values())
        row["reagent_total_ml"] = sum(acc.reagent_total_ml.values())
        row["flags"] = " ".join(t.features.flags.names()) if t.features else ""
        row["error"] = t.error or ""
        rows.append(row)
    return rows


def _target_cells(objective: ObjectiveSpec, trial: Trial) -> dict[str, Any]:
    """``in_band`` (1/0) and the distance to each target, from :meth:`ObjectiveSpec.target_status`.

    Empty cells for a trial without usable outcomes.
    """
    outcomes = trial.outcomes()
    statuses = objective.target_status(outcomes) if outcomes is not None else ()
    cells: dict[str, Any] = {"in_band": int(all(st.in_band for st in statuses))
                             if statuses else None}
    by_name = {st.outcome: st for st in statuses}
    for t in objective.terms:
        if t.kind == "target":
            st = by_name.get(t.outcome)
            cells[distance_column(t.outcome)] = None if st is None else st.distance
    return cells


def distance_column(outcome: str) -> str:
    """Name of the distance-to-target column and MLflow metric of ``outcome``.

    ``distance_to_target_nm.pl_peak_nm`` for an outcome in nm, ``distance_to_target.<outcome>``
    otherwise: the unit is in the name.
    """
    unit = "_nm" if outcome.endswith("_nm") else ""
    return f"distance_to_target{unit}.{outcome}"


def _cell(v: Any, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def decision_rows(reviews: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A chemist's review decisions as table rows: who decided what, when and why.

    Rejected proposals never become experiments (no MLflow run of their own), so this table on
    the campaign run is where a researcher sees them. ``reviews`` are the journal's ``review``
    records (:attr:`~autolab.tracking.journal.JournalState.reviews`).
    """
    def text(conditions: Any) -> str:
        if not isinstance(conditions, Mapping):
            return ""
        return ", ".join(f"{k}={float(v):.4g}" for k, v in conditions.items()
                         if isinstance(v, int | float))

    return [{"experiment": experiment_label(int(r.get("index", 0))),
             "decision": str(r.get("decision", "")), "reviewer": str(r.get("reviewer", "")),
             "time": str(r.get("time", "")), "reason": str(r.get("reason") or ""),
             "proposed": text(r.get("proposed")), "run": text(r.get("conditions"))}
            for r in reviews]


def decision_counts(reviews: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """``n_approved``, ``n_edited``, ``n_rejected`` proposals (campaign-run metrics)."""
    counts = {"n_approved": 0.0, "n_edited": 0.0, "n_rejected": 0.0}
    names = {"approve": "n_approved", "edit": "n_edited", "reject": "n_rejected"}
    for r in reviews:
        key = names.get(str(r.get("decision", "")))
        if key is not None:
            counts[key] += 1
    return counts


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as CSV text with a header line (full float precision; empty cell = no value)."""
    buf = io.StringIO()
    if not rows:
        return ""
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v))
                             else repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _best_row(rows: Sequence[dict[str, Any]], best_index: int | None) -> int | None:
    """The best experiment's index: the given one, else the highest completed score."""
    if best_index is not None:
        return best_index
    scored = [r for r in rows if r["status"] == TrialStatus.COMPLETED.value
              and isinstance(r["objective"], float) and math.isfinite(r["objective"])]
    return int(max(scored, key=lambda r: r["objective"])["index"]) if scored else None


def to_markdown(rows: Sequence[dict[str, Any]], title: str = "", *,
                best_index: int | None = None) -> str:
    """Rows as a markdown table; the best experiment's row is bold, for the UI's preview pane.

    Args:
        rows: From :func:`summary_rows`.
        title: Heading.
        best_index: The best experiment (:func:`best_trial`); default: highest completed score.
    """
    if not rows:
        return f"# {title}\n\nno experiments yet\n" if title else "no experiments yet\n"
    best = _best_row(rows, best_index)
    cols = list(rows[0])
    lines = [f"# {title}", ""] if title else []
    lines.append("| " + " | ".join(_header(c, {}) for c in cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        cells = [_display(c, r[c]).replace("|", "/") for c in cols]
        if best is not None and r["index"] == best:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    if best is not None:
        row = next(r for r in rows if r["index"] == best)
        lines += ["", f"Best: {experiment_label(best)}, objective {_cell(row['objective'])}."]
    return "\n".join(lines) + "\n"


#: Column headers of the HTML and markdown tables (units included); conditions get theirs.
_HEADERS = {"index": "experiment", "status": "status", "objective": "score",
            "best_so_far": "best so far", "in_band": "in band",
            "pareto_front": "on Pareto front", "hypervolume": "hypervolume",
            "pl_peak_nm": "PL peak (nm)", "fwhm_nm": "FWHM (nm)", "qy": "QY (%)",
            "abs_peak_nm": "1st exciton (nm)",
            "lab_clock_h": "lab clock (h)", "experiment_lab_h": "experiment lab time (h)",
            "reagent_ml": "reagents (mL)", "reagent_total_ml": "reagents total (mL)",
            "flags": "flags", "error": "error"}
_TEXT_COLUMNS = {"index", "status", "flags", "error"}
_CSS = """body{font-family:system-ui,sans-serif;font-size:13px;margin:8px}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f0f0f0;position:sticky;top:0}td.t{text-align:left}
tr.failed td{background:#fde2e2;color:#900}tr.invalid td{background:#fff1d6;color:#8a5a00}
tr.interrupted td{background:#eee;color:#555}tr.best td{background:#d9f2d9;font-weight:bold}
td.inband{outline:2px solid #2a2;outline-offset:-2px}p,li{margin:4px 0}"""


def _header(c: str, units: Mapping[str, str]) -> str:
    if c in _HEADERS:
        return _HEADERS[c]
    if c.startswith("distance_to_target"):
        name = c.split(".", 1)[-1]
        unit = "%" if name == "qy" else "nm" if name.endswith("_nm") else ""
        return f"distance to {name} target" + (f" ({unit})" if unit else "")
    return f"{c} ({units[c]})" if units.get(c) else c


def _display(c: str, v: Any) -> str:
    """A cell as a person reads it: experiment labels, QY in %, in-band as yes/no."""
    if c == "index" and isinstance(v, int):
        return experiment_label(v)
    if c in {"in_band", "pareto_front"} and v is not None:
        return "yes" if v else "no"
    if c in {"qy", distance_column("qy")} and isinstance(v, float):
        return _cell(100 * v)
    return _cell(v)


def to_html(rows: Sequence[dict[str, Any]], title: str = "", *, goal: str = "",
            targets: Targets | None = None, units: Mapping[str, str] | None = None,
            best_index: int | None = None, notes: Sequence[str] = ()) -> str:
    """Rows as a standalone HTML page, for the MLflow UI's artifact viewer and the report.

    Args:
        rows: From :func:`summary_rows`.
        title: Page heading (the campaign name).
        goal: One line saying what the campaign asks for (the objective), shown under the title.
        targets: Target bands (outcome -> (value, tolerance)); listed, and cells inside a band
            are outlined.
        units: Units of the conditions, for their headers (``{"t_core_c": "°C"}``).
        best_index: The best experiment (:func:`best_trial`); default: highest completed score.
        notes: Further lines shown above the table (warnings, stop reason).
    """
    esc = html.escape
    units = units or {}
    targets = targets or {}
    head = [f"<h3>{esc(title)}</h3>"] if title else []
    if goal:
        head.append(f"<p>Goal: {esc(goal)}</p>")
    if targets:
        bands = ", ".join(f"{name} {_display(name, value)} ± {_display(name, tol)}"
                          for name, (value, tol) in targets.items())
        head.append(f"<p>Target bands: {esc(bands)}</p>")
    if notes:
        head.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    if not rows:
        return _page(title, [*head, "<p>no experiments yet</p>"])
    best = _best_row(rows, best_index)
    n_failed = sum(r["status"] == TrialStatus.FAILED.value for r in rows)
    n_invalid = sum(r["status"] == TrialStatus.INVALID.value for r in rows)
    line = f"{len(rows)} experiments, {n_failed} failed (red rows)"
    if n_invalid:
        line += f", {n_invalid} invalid (orange rows, not told to the optimizer)"
    if best is not None:
        line += f"; best {experiment_label(best)} in green"
    if targets:
        line += "; outlined: inside the target band"
    head.append(f"<p>{esc(line)}.</p>")
    cols = list(rows[0])
    out = [*head, "<table><tr>" + "".join(f"<th>{esc(_header(c, units))}</th>" for c in cols)
           + "</tr>"]
    for r in rows:
        cls = r["status"] if r["status"] != TrialStatus.COMPLETED.value else (
            "best" if r["index"] == best else "")
        cells = []
        for c in cols:
            v = r[c]
            klass = "t" if c in _TEXT_COLUMNS else ""
            if (c in targets and isinstance(v, float) and math.isfinite(v)
                    and abs(v - targets[c][0]) <= targets[c][1]):
                klass += " inband"
            attr = f' class="{klass.strip()}"' if klass.strip() else ""
            cells.append(f"<td{attr}>{esc(_display(c, v))}</td>")
        out.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    out.append("</table>")
    return _page(title, out)


def _page(title: str, body: Sequence[str]) -> str:
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# ---- everything at once ----------------------------------------------------------------------
@dataclass(frozen=True)
class CampaignView:
    """Every derived quantity of a campaign, computed once, for the report, MLflow and notebooks.

    Attributes:
        trials: Finished and interrupted trials in index order.
        objective: The campaign's objective, if its config holds a readable one.
        targets: Target bands.
        best: Best-so-far score after each trial (ranked in band first).
        best_index: Index of the best experiment, if any was scored.
        accounts: Lab clock, duration and reagents per trial.
        fit_points: Prediction vs measurement per modeled outcome.
        pareto: The Pareto view (Pareto campaigns only).
        rows: The summary table.
    """

    trials: tuple[Trial, ...]
    objective: ObjectiveSpec | None
    targets: dict[str, tuple[float, float]]
    best: tuple[float | None, ...]
    best_index: int | None
    accounts: tuple[LabAccount, ...]
    fit_points: dict[str, list[FitPoint]]
    pareto: ParetoSummary | None
    rows: tuple[dict[str, Any], ...]

    @property
    def lab_clock_h(self) -> list[float]:
        """Lab clock when each trial ended, h."""
        return [a.lab_clock_h for a in self.accounts]

    def best_trial(self) -> Trial | None:
        """The best experiment, if any was scored."""
        return next((t for t in self.trials if t.index == self.best_index), None)


def campaign_view(trials: Sequence[Trial], extras: Extras | None = None,
                  config: Mapping[str, Any] | None = None) -> CampaignView:
    """Build the :class:`CampaignView` of a campaign from its journal's contents.

    Args:
        trials: Finished and interrupted trials (:meth:`JournalState.finished`).
        extras: The trials' journal ``extra`` dicts by index.
        config: The campaign config dict (journal header or MLflow ``config.json``).
    """
    ordered = tuple(sorted(trials, key=lambda t: t.index))
    extras = extras or {}
    config = config or {}
    objective = objective_from_config(config)
    indices = best_trials(ordered, objective)
    by_index = {t.index: t for t in ordered}
    best = tuple(None if i is None else by_index[i].objective for i in indices)
    accounts = tuple(lab_accounts(ordered, extras))
    pareto = (pareto_summary(ordered, objective, search_bounds(config))
              if objective is not None else None)
    reactors = {i: str(e["reactor"]) for i, e in extras.items()
                if isinstance(e, Mapping) and isinstance(e.get("reactor"), str)}
    rows = summary_rows(ordered, best, [a.lab_clock_h for a in accounts], objective=objective,
                        accounts=accounts, pareto=pareto,
                        reactors=reactors if len(set(reactors.values())) > 1 else None)
    return CampaignView(trials=ordered, objective=objective, targets=targets_of(objective),
                        best=best, best_index=indices[-1] if indices else None,
                        accounts=accounts, fit_points=model_fit_points(ordered, extras),
                        pareto=pareto, rows=tuple(rows))


def pareto_metrics(pareto: ParetoSummary) -> dict[str, float]:
    """The campaign run's Pareto metrics after the latest experiment (MLflow charts them by step).

    ``hypervolume`` (utility units, with the reference point inferred from the experiments so
    far unless the objective fixes one: the last value equals the report's), ``pareto_front_size``
    and ``pareto_warnings`` (front members at a bound or not steady).
    """
    return {"hypervolume": pareto.hypervolume[-1] if pareto.hypervolume else 0.0,
            "pareto_front_size": float(len(pareto.front)),
            "pareto_warnings": float(len(pareto.warnings))}


def extras_from_metrics(metrics: Mapping[str, float]) -> dict[str, Any]:
    """A journal-like ``extra`` rebuilt from an MLflow experiment run's metrics.

    What a reader of MLflow alone (the review notebook) needs to build a :class:`CampaignView`
    the way the report does from the journal: ``lab_clock_h``, ``reagent_total_ml`` (from
    ``reagent_total_ml.<name>``) and the model's ``prediction`` (from ``predicted_score``,
    ``predicted_score_sd``, ``predicted_<outcome>`` and ``predicted_<outcome>_sd``). MLflow holds
    rounded values, so derived numbers may differ from the report's in the last digits.
    """
    extra: dict[str, Any] = {}
    if _number(metrics.get("lab_clock_h")) is not None:
        extra["lab_clock_h"] = float(metrics["lab_clock_h"])
    totals = {k[len(REAGENT_TOTAL_PREFIX):]: float(v) for k, v in metrics.items()
              if k.startswith(REAGENT_TOTAL_PREFIX) and _number(v) is not None}
    if totals:
        extra["reagent_total_ml"] = totals
    outcomes = {k[len("predicted_"):]: [float(v), float(metrics[f"{k}_sd"])]
                for k, v in metrics.items()
                if k.startswith("predicted_") and not k.endswith("_sd")
                and k != "predicted_score" and f"{k}_sd" in metrics}
    if "predicted_score" in metrics and "predicted_score_sd" in metrics:
        extra["prediction"] = {"score_mean": float(metrics["predicted_score"]),
                               "score_sd": float(metrics["predicted_score_sd"]),
                               "outcomes": outcomes}
    return extra
