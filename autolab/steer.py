"""A chemist in the loop: review proposals, add outside results, invalidate after the fact.

Three things a person can do to a campaign, from the CLI (:mod:`autolab.cli_steer`) or from Python:

* **Review** every proposal before it runs (:class:`TerminalReviewer` at the terminal,
  :class:`FileReviewer` through ``RUN/proposals/exp-NNN.yaml`` for a lab where the chemist is not
  at the terminal). The chemist approves it, edits it (the new conditions are checked against the
  bounds, the linear constraints and the reactor's safety envelope, and asked again on error), or
  rejects it with a reason. A rejection costs no lab time and is not a failed experiment: the
  optimizer is told the proposed point as infeasible (outcome ``None``), so its feasibility model
  learns to avoid that region, and the next proposal is asked. Every decision is journaled (who,
  when, what, why, the proposal and the conditions run) before anything acts on it, so a crash in
  the middle of a review resumes exactly: an undecided proposal is proposed again (the optimizer
  is a pure function of its seed and data), a decided one is never asked twice.
* **Add** experiments made outside the loop (:func:`add_results`): a flask batch, an offline QY.
  The whole CSV is validated first (a bad row gets an error naming the row and column, and nothing
  is added); the rows are journaled as ``origin: manual`` trials, told to the optimizer on resume
  and tracked like any other experiment. They never count against the experiment budget.
* **Invalidate** a finished experiment (:func:`invalidate`), e.g. after a syringe leak was found:
  a journal record that turns it into an invalid trial for every reader, so resume re-tells the
  optimizer without it, best so far is recomputed, and MLflow tags it.

Experiments are named by :func:`~autolab.records.experiment_label` everywhere (``exp-003``); the
CLI also accepts the bare index (``3``).
"""

from __future__ import annotations

import contextlib
import csv
import getpass
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from autolab.config import CampaignConfig, parse_campaign
from autolab.exceptions import AwaitingDecision, ConditionsError, ConfigError, JournalError
from autolab.objective import ObjectiveSpec
from autolab.records import (
    CONDITION_NAMES,
    OUTCOMES,
    Conditions,
    Decision,
    Features,
    Trial,
    TrialOrigin,
    TrialStatus,
    experiment_label,
)
from autolab.tracking import Journal, JournalState
from autolab.tracking.journal import JOURNAL_NAME
from autolab.twin import check_envelope

#: Folder of the proposal files of file review mode, inside a campaign folder.
PROPOSALS_DIR = "proposals"
_LABEL = re.compile(r"^(?:exp-)?(\d{1,9})$")


def now_utc() -> str:
    """The current time, ISO 8601 UTC (seconds): when a decision was made."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def current_user() -> str:
    """Who is deciding: ``$USER``, else the login name, else ``"unknown"``."""
    try:
        return os.environ.get("USER") or getpass.getuser() or "unknown"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def parse_experiment(text: str | int) -> int:
    """An experiment index from ``exp-003``, ``3`` or ``"3"``.

    Raises:
        ConfigError: Anything else.
    """
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    m = _LABEL.match(str(text).strip())
    if m is None:
        raise ConfigError(f"EXP: expected an experiment like 'exp-003' or its index '3', "
                          f"got {text!r}")
    return int(m.group(1))


# ------------------------------------------------------------------------------------- review
@dataclass(frozen=True)
class Proposal:
    """A proposal shown to a chemist before it runs.

    Attributes:
        index: The experiment index it will get if it runs (its :func:`experiment_label`).
        conditions: Proposed conditions, searched and fixed, physical units.
        prediction: The model's prediction (``score_mean``, ``score_sd`` and ``outcomes``:
            name -> (mean, sd)), or ``None`` for a design point (no model yet).
        attempt: How many proposals for this index were rejected before it (0 first).
        run_dir: The campaign folder (where file review mode writes proposals).
    """

    index: int
    conditions: dict[str, float]
    prediction: dict[str, Any] | None = None
    attempt: int = 0
    run_dir: Path = field(default_factory=Path)

    @property
    def label(self) -> str:
        """``exp-NNN``."""
        return experiment_label(self.index)

    def lines(self) -> list[str]:
        """The proposal for a person: conditions, then the model's prediction with its sd."""
        out = [f"proposal for {self.label}" + (f" (after {self.attempt} rejected)"
                                               if self.attempt else "") + ":"]
        out += [f"  {k} = {v:.4g}" for k, v in self.conditions.items()]
        pred = self.prediction
        if pred is None:
            out.append("  model prediction: none yet (initial design point)")
            return out
        out.append(f"  predicted score {pred['score_mean']:.3g} ± {pred.get('score_sd', 0):.2g}")
        out += [f"  predicted {name} {ms[0]:.4g} ± {ms[1]:.2g}"
                for name, ms in pred.get("outcomes", {}).items()]
        return out


@dataclass(frozen=True)
class Review:
    """A chemist's decision on a :class:`Proposal`.

    Attributes:
        decision: Approve, edit or reject.
        reviewer: Who decided (``$USER`` or ``--reviewer``).
        time: When, ISO 8601 UTC.
        reason: Why (required for a rejection).
        conditions: For an edit: the complete, checked conditions to run.
    """

    decision: Decision
    reviewer: str
    time: str
    reason: str = ""
    conditions: dict[str, float] | None = None


#: Checks conditions a person chose and returns them complete (see :func:`check_conditions`).
Checker = Callable[[Mapping[str, float]], dict[str, float]]


class Reviewer(Protocol):
    """Asks a person about a proposal."""

    def review(self, proposal: Proposal, check: Checker) -> Review:
        """The decision on ``proposal``.

        ``check`` validates edited conditions (it raises
        :class:`~autolab.exceptions.ConfigError` naming the field) and returns them complete.

        Raises:
            AwaitingDecision: No decision yet (the campaign stops and waits).
        """
        ...


def check_conditions(config: CampaignConfig, values: Mapping[str, float], *,
                     envelope: Callable[[Conditions], None] | None = None) -> dict[str, float]:
    """Complete and check conditions a person chose: bounds, constraints, safety envelope.

    Fixed parameters are filled in and must not be changed; every searched one must be given.

    Args:
        config: The campaign.
        values: Name -> physical value.
        envelope: The executor's safety check (default: the twin's reactor envelope for a twin
            campaign; the hardware checks its device limits itself before anything moves).

    Raises:
        ConfigError: Unknown or missing names, a changed fixed value, or a value outside the
            bounds, a linear constraint or the envelope (the message names the parameter).
    """
    fixed = config.space.fixed
    for name, value in fixed.items():
        if name in values and not math.isclose(float(values[name]), value, rel_tol=1e-9):
            raise ConditionsError(name, float(values[name]), f"fixed at {value:g}",
                                  "the campaign file fixes it")
    missing = [n for n in config.space.parameters if n not in values]
    if missing:
        raise ConfigError(f"missing condition(s) {missing}; every searched parameter needs a "
                          "value")
    conditions = Conditions.from_mapping({**values, **fixed})
    config.space.build().check({n: conditions.value(n) for n in config.space.parameters})
    if envelope is not None:
        envelope(conditions)
    elif config.executor.kind == "twin":
        check_envelope(conditions)
    return conditions.as_dict()


def parse_assignments(text: str) -> dict[str, float]:
    """``"t_core_c=185 tau_core_min=12"`` (spaces or commas) -> name -> value.

    Raises:
        ConfigError: An item is not NAME=NUMBER, or a name is repeated.
    """
    out: dict[str, float] = {}
    for item in text.replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"expected NAME=VALUE (e.g. t_core_c=185), got {item!r}")
        if name in out:
            raise ConfigError(f"{name}: given twice")
        try:
            out[name] = float(value)
        except ValueError as err:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from err
    return out


class TerminalReviewer:
    """Review at the terminal: show each proposal, then approve, edit or reject it.

    Args:
        reviewer: Who is deciding (default ``$USER``).
        ask: Reads one answer for a prompt (default :func:`input`; tests script it).
        show: Shows one line (default :func:`print`; the CLI prints through its console).
    """

    mode = "terminal"

    def __init__(self, reviewer: str | None = None, *, ask: Callable[[str], str] = input,
                 show: Callable[[str], None] = print) -> None:
        self.reviewer = reviewer or current_user()
        self._ask = ask
        self._show = show

    def _answer(self, prompt: str) -> str:
        try:
            return self._ask(prompt).strip()
        except EOFError as err:
            raise AwaitingDecision("no reviewer at the terminal (end of input); the proposal "
                                   "is asked again on 'autolab resume'") from err

    def review(self, proposal: Proposal, check: Checker) -> Review:
        """Ask until the chemist gives a valid decision (see :class:`Reviewer`)."""
        for line in proposal.lines():
            self._show(line)
        while True:
            answer = self._answer("[a]pprove, [e]dit or [r]eject? ").lower()
            if answer in ("a", "approve"):
                return Review(Decision.APPROVE, self.reviewer, now_utc())
            if answer in ("e", "edit"):
                return self._edit(proposal, check)
            if answer in ("r", "reject"):
                reason = ""
                while not reason:
                    reason = self._answer("why reject it (the optimizer learns from it)? ")
                return Review(Decision.REJECT, self.reviewer, now_utc(), reason)
            self._show(f"please answer a, e or r (got {answer!r})")

    def _edit(self, proposal: Proposal, check: Checker) -> Review:
        while True:
            text = self._answer("new values as NAME=VALUE ... (the rest stay as proposed): ")
            try:
                conditions = check({**proposal.conditions, **parse_assignments(text)})
            except ConfigError as err:
                self._show(f"not allowed: {err}; try again")
                continue
            reason = self._answer("reason for the edit (optional): ")
            return Review(Decision.EDIT, self.reviewer, now_utc(), reason, conditions)


def proposal_path(run_dir: Path, index: int) -> Path:
    """``RUN/proposals/exp-NNN.yaml``: where file review mode puts the proposal for ``index``."""
    return Path(run_dir) / PROPOSALS_DIR / f"{experiment_label(index)}.yaml"


#: Significant digits of the conditions a proposal file shows (a chemist reads ``171.968``, not
#: ``171.9683876633644``); approving runs the optimizer's exact proposal, not these digits.
SHOWN_DIGITS = 6


def _shown(conditions: Mapping[str, float]) -> dict[str, float]:
    return {k: float(f"{v:.{SHOWN_DIGITS}g}") for k, v in conditions.items()}


def _same_point(a: Mapping[str, Any], b: Mapping[str, float]) -> bool:
    """Whether a proposal file's ``proposed`` (rounded to :data:`SHOWN_DIGITS`) is ``b``."""
    tol = 10.0 ** (1 - SHOWN_DIGITS)
    try:
        return a.keys() == b.keys() and all(
            math.isclose(float(a[k]), float(b[k]), rel_tol=tol, abs_tol=1e-12) for k in b)
    except (TypeError, ValueError):
        return False


def _write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    """Write atomically (a crash never leaves a half-written proposal file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True),
                   encoding="utf-8")
    os.replace(tmp, path)


_DECISION_HELP = ("set 'decision: approve', or 'decision: edit' with 'conditions: {name: value}', "
                  "or 'decision: reject' with a 'reason:'")


class FileReviewer:
    """Review through files, for a lab where the chemist is not at the terminal.

    Each proposal is written to ``RUN/proposals/exp-NNN.yaml`` with the model's prediction and an
    empty ``decision``; the campaign then stops, waiting (:class:`AwaitingDecision`, exit 3). The
    chemist fills in the decision (or runs ``autolab decide``) and resumes. A file whose proposal
    is not the current one (it was made before a rejection or an invalidation changed the
    optimizer's data) is replaced by the current proposal and waits again.

    Args:
        reviewer: Who decided when the file does not say (default ``$USER``).
    """

    mode = "file"

    def __init__(self, reviewer: str | None = None) -> None:
        self.reviewer = reviewer or current_user()

    def review(self, proposal: Proposal, check: Checker) -> Review:
        """The decision in the proposal's file (see :class:`Reviewer`)."""
        path = proposal_path(proposal.run_dir, proposal.index)
        data = self._current(path, proposal)
        decision = data.get("decision")
        if decision in (None, ""):
            raise AwaitingDecision(
                f"{proposal.label} is waiting for a decision: edit {path} ({_DECISION_HELP}) or "
                f"run 'autolab decide {proposal.run_dir} {proposal.label} approve', then "
                f"'autolab resume {proposal.run_dir}'")
        try:
            review = review_from_mapping(data, check, self.reviewer)
        except ConfigError as err:
            _write_yaml(path, {**data, "decision": None, "error": str(err)})
            raise AwaitingDecision(f"{proposal.label}: the decision in {path} is not usable: "
                                   f"{err}; fix it ({_DECISION_HELP}) and resume") from err
        return review

    def _current(self, path: Path, proposal: Proposal) -> dict[str, Any]:
        """The file's content if it is about this proposal; else a fresh file for it."""
        if path.exists():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as err:
                raise AwaitingDecision(f"{path} is not valid YAML ({err}); fix it and "
                                       "resume") from err
            if isinstance(data, dict) and _same_point(data.get("proposed") or {},
                                                      proposal.conditions):
                return data
        data = {"experiment": proposal.label, "proposed": _shown(proposal.conditions),
                "prediction": _plain_prediction(proposal.prediction),
                "decision": None, "reason": "", "conditions": None, "reviewer": None,
                "help": _DECISION_HELP}
        _write_yaml(path, data)
        return data


def _plain_prediction(pred: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The prediction as plain YAML: ``{outcome: {mean, sd}}`` plus the score."""
    if pred is None:
        return None
    out: dict[str, Any] = {"score": {"mean": float(pred["score_mean"]),
                                     "sd": float(pred.get("score_sd", math.nan))}}
    for name, ms in pred.get("outcomes", {}).items():
        out[name] = {"mean": float(ms[0]), "sd": float(ms[1])}
    return out


def review_from_mapping(data: Mapping[str, Any], check: Checker, reviewer: str) -> Review:
    """A :class:`Review` from a decision file's fields.

    The fields are ``decision``, ``reason``, ``conditions`` (edits only), ``reviewer``, ``time``.

    Raises:
        ConfigError: Unknown decision, an edit without usable conditions, a rejection without a
            reason (the message names the field).
    """
    raw = str(data.get("decision", "")).strip().lower()
    try:
        decision = Decision(raw)
    except ValueError as err:
        raise ConfigError(f"decision: expected approve, edit or reject, got {raw!r}") from err
    reason = str(data.get("reason") or "").strip()
    who = str(data.get("reviewer") or reviewer)
    when = str(data.get("time") or now_utc())
    if decision is Decision.REJECT and not reason:
        raise ConfigError("reason: a rejection needs a reason (the optimizer learns from it)")
    if decision is not Decision.EDIT:
        return Review(decision, who, when, reason)
    edits = data.get("conditions")
    if not isinstance(edits, Mapping) or not edits:
        raise ConfigError("conditions: an edit needs the new values, e.g. "
                          "'conditions: {t_core_c: 185}'")
    proposed = data.get("proposed") or {}
    conditions = check({**proposed, **{str(k): _number(k, v) for k, v in edits.items()}})
    return Review(decision, who, when, reason, conditions)


def _number(name: Any, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(f"conditions.{name}: expected a finite number, got {v!r}")
    return float(v)


#: Review modes by name (the campaign file's ``review.mode`` and ``autolab run --review``).
REVIEWERS: dict[str, Callable[[str | None], Reviewer]] = {
    "terminal": TerminalReviewer,
    "file": FileReviewer,
}


def make_reviewer(mode: str, reviewer: str | None = None) -> Reviewer | None:
    """The reviewer of a review mode (``None`` for ``"off"``).

    Raises:
        ConfigError: Unknown mode.
    """
    if mode == "off":
        return None
    try:
        return REVIEWERS[mode](reviewer)
    except KeyError as err:
        raise ConfigError(f"review.mode: expected off or one of {sorted(REVIEWERS)}, "
                          f"got {mode!r}") from err


def waiting_proposals(run_dir: str | Path, next_index: int) -> list[Path]:
    """The proposal files of experiments not made yet (index >= ``next_index``), in order.

    A file for an index the journal already holds is history (its experiment ran, or a manual
    result took its number); only the others can still be decided.
    """
    folder = Path(run_dir) / PROPOSALS_DIR
    out = []
    for path in sorted(folder.glob("exp-*.yaml")):
        with contextlib.suppress(ConfigError):
            if parse_experiment(path.stem) >= next_index:
                out.append(path)
    return out


def decide(run_dir: str | Path, experiment: str | int, decision: str, *, reason: str = "",
           conditions: Mapping[str, float] | None = None, reviewer: str | None = None) -> Path:
    """Write a decision into the waiting proposal file (what ``autolab decide`` does).

    The decision is checked now (an edit against bounds, constraints and the envelope), so a
    mistake is reported at once rather than at resume. Run ``autolab resume`` afterwards.

    Returns:
        The proposal file.

    Raises:
        ConfigError: No proposal waits for ``experiment``, or the decision is not usable.
        JournalError: No campaign in ``run_dir``.
    """
    run_dir = Path(run_dir)
    state = Journal.read(run_dir / JOURNAL_NAME)
    config = _campaign_config(state)
    index = parse_experiment(experiment)
    path = proposal_path(run_dir, index)
    if index < state.next_index:  # a decision here would be written and never read
        waiting = [p.stem for p in waiting_proposals(run_dir, state.next_index)]
        raise ConfigError(f"EXP: {experiment_label(index)} is already in the journal, not "
                          f"waiting for a decision (waiting: {', '.join(waiting) or 'none'})")
    if not path.exists():
        waiting = sorted(p.stem for p in (run_dir / PROPOSALS_DIR).glob("exp-*.yaml"))
        raise ConfigError(f"EXP: no proposal file for {experiment_label(index)} in "
                          f"{run_dir / PROPOSALS_DIR} (proposal files: {waiting or 'none'})")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a proposal file (expected a mapping)")
    fields_: dict[str, Any] = {"decision": decision, "reason": reason,
                               "conditions": dict(conditions) if conditions else None,
                               "reviewer": reviewer or current_user(), "time": now_utc()}
    review_from_mapping({**data, **fields_}, lambda v: check_conditions(config, v),
                        fields_["reviewer"])
    data.pop("error", None)
    _write_yaml(path, {**data, **fields_})
    return path


# ------------------------------------------------------------------------------------- shared
def _campaign_config(state: JournalState) -> CampaignConfig:
    return parse_campaign(state.header.config, "journal header")


def best_trial(objective: ObjectiveSpec, trials: Sequence[Trial]) -> Trial | None:
    """The best experiment by the objective's one rule (``ObjectiveSpec.best_index``).

    Only trials with usable outcomes count (never an invalid one); on ties the earlier wins.
    """
    i = objective.best_index([t.outcomes() for t in trials])
    return None if i is None else trials[i]


# ------------------------------------------------------------------------------------- add
_ERR_COLUMNS = tuple(f"{o}_err" for o in OUTCOMES)
_OPTIONAL = ("abs_peak_nm", "abs_peak_nm_err", *_ERR_COLUMNS)
_TEXT_COLUMNS = ("note", "source")


@dataclass(frozen=True)
class ManualRow:
    """One validated row of an outside-results file."""

    row: int
    conditions: dict[str, float]
    features: Features
    note: str


def read_results(path: str | Path, config: CampaignConfig) -> list[ManualRow]:
    """Read and validate a whole outside-results CSV before anything is added.

    Columns: every searched parameter, fixed ones optionally (must equal the campaign's), the
    outcomes ``pl_peak_nm``, ``fwhm_nm``, ``qy`` (fraction 0-1); optionally their ``*_err`` (1
    sigma), ``abs_peak_nm`` and a free-text ``note``. Row numbers count the header as row 1, as a
    spreadsheet shows them.

    Raises:
        ConfigError: Unreadable file, unknown or missing column, or a bad value (the message
            names the row and column).
    """
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"{p}: cannot read the results file: {err}") from err
    _check_columns(p, columns, config)
    if not rows:
        raise ConfigError(f"{p}: no rows after the header; nothing to add")
    return [_manual_row(p, n, row, config) for n, row in enumerate(rows, start=2)]


def _check_columns(p: Path, columns: list[str], config: CampaignConfig) -> None:
    known = {*config.space.parameters, *config.space.fixed, *CONDITION_NAMES,
             *OUTCOMES, *_OPTIONAL, *_TEXT_COLUMNS}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ConfigError(f"{p}, row 1: unknown column(s) {unknown}; expected the searched "
                          f"parameters {list(config.space.parameters)}, the outcomes "
                          f"{list(OUTCOMES)}, optionally {list(_OPTIONAL + _TEXT_COLUMNS)}")
    missing = [c for c in (*config.space.parameters, *OUTCOMES) if c not in columns]
    if missing:
        raise ConfigError(f"{p}, row 1: missing column(s) {missing}")


def _cell(p: Path, n: int, row: Mapping[str, str | None], column: str) -> float:
    text = (row.get(column) or "").strip()
    try:
        v = float(text)
    except ValueError as err:
        raise ConfigError(f"{p}, row {n}, column {column}: expected a number, got "
                          f"{text!r}") from err
    if not math.isfinite(v):
        raise ConfigError(f"{p}, row {n}, column {column}: expected a finite number, got {text!r}")
    return v


def _manual_row(p: Path, n: int, row: Mapping[str, str | None],
                config: CampaignConfig) -> ManualRow:
    if None in row:  # more cells than header columns
        raise ConfigError(f"{p}, row {n}: more values than columns")
    condition_names = [c for c in row if c in CONDITION_NAMES]
    values = {c: _cell(p, n, row, c) for c in condition_names
              if c in config.space.parameters or (row.get(c) or "").strip()}
    try:
        conditions = check_conditions(config, values)
    except ConditionsError as err:
        raise ConfigError(f"{p}, row {n}, column {err.parameter}: {err}") from err
    except ConfigError as err:
        raise ConfigError(f"{p}, row {n}: {err}") from err
    out = {o: _cell(p, n, row, o) for o in OUTCOMES}
    limits = {"pl_peak_nm": (200.0, 1200.0), "fwhm_nm": (1.0, 300.0), "qy": (0.0, 1.0)}
    for name, (lo, hi) in limits.items():
        if not lo <= out[name] <= hi:
            raise ConfigError(f"{p}, row {n}, column {name}: {out[name]:g} is outside "
                              f"[{lo:g}, {hi:g}]" + (" (QY is a fraction 0-1)" if name == "qy"
                                                     else ""))
    optional = {c: _cell(p, n, row, c) for c in _OPTIONAL if (row.get(c) or "").strip()}
    for c, v in optional.items():
        if c.endswith("_err") and v < 0:
            raise ConfigError(f"{p}, row {n}, column {c}: an uncertainty cannot be negative")
    features = Features(pl_peak_nm=out["pl_peak_nm"], fwhm_nm=out["fwhm_nm"], qy=out["qy"],
                        abs_peak_nm=optional.get("abs_peak_nm", math.nan),
                        pl_peak_nm_err=optional.get("pl_peak_nm_err", math.nan),
                        fwhm_nm_err=optional.get("fwhm_nm_err", math.nan),
                        qy_err=optional.get("qy_err", math.nan),
                        abs_peak_nm_err=optional.get("abs_peak_nm_err", math.nan))
    note = " ".join((row.get(c) or "").strip() for c in _TEXT_COLUMNS).strip()
    return ManualRow(n, conditions, features, note)


def add_results(run_dir: str | Path, results: str | Path, *,
                by: str | None = None) -> list[Trial]:
    """Add experiments made outside the loop to a (stopped) campaign.

    The file is validated whole first (:func:`read_results`); then each row is journaled as a
    completed trial with ``origin: manual`` and a new experiment index. The optimizer is told
    them on resume; ``autolab sync`` (or the next resume) logs them to MLflow. They do not
    count against the experiment budget and take no lab time.

    Returns:
        The added trials.

    Raises:
        ConfigError: A bad row or column (nothing was added).
        JournalError: No campaign in ``run_dir``, or it is running (the journal is locked).
    """
    run_dir = Path(run_dir)
    with Journal.open(run_dir / JOURNAL_NAME) as journal:
        config = _campaign_config(journal.state)
        rows = read_results(results, config)
        if journal.state.in_flight:
            raise JournalError(f"{run_dir}: an experiment is in flight (the campaign process "
                               "died); run 'autolab resume' first")
        waiting = waiting_proposals(run_dir, journal.state.next_index)
        _refuse_decided(run_dir, waiting)
        base = dict(journal.state.last_extra or {})
        who, when = by or current_user(), now_utc()
        batch: list[tuple[Trial, Mapping[str, Any] | None]] = []
        for i, r in enumerate(rows):
            trial = _manual_trial(journal.state.next_index + i, r, config)
            extra: dict[str, Any] = {
                k: base[k] for k in ("executor_state", "lab_clock_h", "reagent_total_ml")
                if k in base}
            extra.update({"queue": [], "origin": TrialOrigin.MANUAL.value, "added_by": who,
                          "added": when, "source": f"{Path(results).name}, row {r.row}",
                          "note": r.note})
            batch.append((trial, extra))
        journal.append_trials(batch)  # all rows or none, even if the process is killed
        added = [trial for trial, _ in batch]
        withdrawn = _withdraw(waiting)
        journal.append_note(f"{len(added)} manual experiment(s) added from {results} by {who}: "
                            + ", ".join(experiment_label(t.index) for t in added)
                            + (f"; the proposal waiting as {', '.join(withdrawn)} was "
                               "withdrawn (the optimizer proposes again with these data on "
                               "resume)" if withdrawn else ""))
    return added


def _refuse_decided(run_dir: Path, waiting: list[Path]) -> None:
    """Refuse an add while a waiting proposal holds a decision no resume has acted on.

    Raises:
        ConfigError: A waiting proposal already carries a decision (it would be lost).
    """
    for path in waiting:
        with contextlib.suppress(OSError, yaml.YAMLError):
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("decision") not in (None, ""):
                raise ConfigError(f"{path} holds a decision ({data['decision']}) that no resume "
                                  f"has acted on yet: run 'autolab resume {run_dir}' first, or "
                                  "empty its decision")


def _withdraw(waiting: list[Path]) -> list[str]:
    """Remove the undecided proposal files whose numbers manual results just took.

    Why: the added rows take the next experiment numbers, and on resume the optimizer, told the
    new data, proposes afresh under a later number; the old file stayed behind looking
    decidable, and a decision written into it was silently ignored. Done after the rows are
    journaled: a process killed in between leaves a file ``decide`` refuses (its number is in
    the journal), never a lost result.
    """
    for path in waiting:
        path.unlink(missing_ok=True)
    return [path.stem for path in waiting]


def _manual_trial(index: int, r: ManualRow, config: CampaignConfig) -> Trial:
    outcomes = r.features.outcomes()
    objective = (config.objective.score(outcomes) if config.objective.is_feasible(outcomes)
                 else None)
    return Trial(index=index, conditions=r.conditions, status=TrialStatus.COMPLETED,
                 features=r.features, objective=objective)


# ------------------------------------------------------------------------------------- invalidate
@dataclass(frozen=True)
class Invalidated:
    """What :func:`invalidate` did.

    Attributes:
        trial: The experiment, now invalid.
        best_before: The best experiment before.
        best_after: The best experiment now (recomputed without it).
    """

    trial: Trial
    best_before: Trial | None
    best_after: Trial | None


def invalidate(run_dir: str | Path, experiment: str | int, reason: str, *,
               by: str | None = None) -> Invalidated:
    """Mark a finished experiment invalid after the fact (a leak found later).

    A journal record: on resume the optimizer is re-told without it, best so far is recomputed
    everywhere, and the next ``autolab sync`` or ``autolab resume`` turns its MLflow run
    ``FAILED`` with the tags docs/review.md lists: ``autolab.status`` ``invalid``,
    ``autolab.reason`` (``invalidated after the fact: <reason>``), ``autolab.invalidated_by``,
    ``autolab.invalidated_at`` and ``autolab.previous_status`` (what it was before).

    Raises:
        ConfigError: Bad experiment name, no reason, not a finished experiment, or already
            invalid.
        JournalError: No campaign in ``run_dir``, or it is running (the journal is locked).
    """
    run_dir = Path(run_dir)
    index = parse_experiment(experiment)
    label = experiment_label(index)
    if not reason.strip():
        raise ConfigError("--reason: say why the experiment is invalid (it is journaled)")
    with Journal.open(run_dir / JOURNAL_NAME) as journal:
        state = journal.state
        config = _campaign_config(state)
        trial = next((t for t in state.trials if t.index == index), None)
        if trial is None:
            finished = [experiment_label(t.index) for t in state.trials]
            raise ConfigError(f"EXP: {label} is not a finished experiment of {run_dir.name} "
                              f"(finished: {_span(finished)})")
        if trial.status is TrialStatus.INVALID:
            raise ConfigError(f"EXP: {label} is invalid already ({trial.error})")
        before = best_trial(config.objective, state.trials)
        journal.append_record("invalidated", {"index": index, "reason": reason.strip(),
                                              "by": by or current_user(), "time": now_utc()})
        after = best_trial(config.objective, journal.state.trials)
        now = next(t for t in journal.state.trials if t.index == index)
    return Invalidated(now, before, after)


def _span(labels: list[str]) -> str:
    if not labels:
        return "none"
    return labels[0] if len(labels) == 1 else f"{labels[0]} .. {labels[-1]}"
