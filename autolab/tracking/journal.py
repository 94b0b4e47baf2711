"""The campaign journal: an append-only JSON-lines file that makes a campaign crash-safe.

Every fact about a campaign is written here *first*, flushed and ``fsync``-ed, and only then shown
to anyone else (optimizer, tracker, display). A campaign that dies at any instant can therefore be
resumed from the journal alone: no fully written trial is lost, none is recorded twice, and an
experiment that was started but never finished shows up as *in flight*, so the campaign can record
it as interrupted and re-run its conditions.

One line is one record, each a JSON object with a ``"type"``:

``header``
    First line, once: campaign name and id, config, seed, autolab version, creation time and
    ``format`` (:data:`JOURNAL_FORMAT`); a journal of a newer format than this code knows is
    refused before any other line is read.
``started``
    ``index``, ``conditions``, ``proposal_time_s``; written *before* the executor runs it.
``trial``
    ``trial`` (:meth:`Trial.to_dict`) and optional ``extra`` (executor state, optimizer summary,
    ``lab_clock_h``, ``metrics``...); the experiment finished (completed or failed).
``interrupted``
    ``index``, ``reason``: a started experiment that will never finish.
``tracked``
    ``index``: the tracker recorded this finished experiment (exactly-once sync).
``tracker_run``
    ``run_id``, ``tracking_uri``: which tracker run holds this campaign (resume and sync).
``tracking_uri``
    ``uri``: where the campaign is to be tracked, written while it has no tracker run yet (the
    server was down at its start), so that ``autolab sync`` reaches the intended store.
``note`` / ``stopped``
    Free text / why the campaign stopped.
``review``
    ``index`` (the experiment the proposal was for), ``decision`` (approve / edit / reject),
    ``reviewer``, ``time``, ``reason``, ``proposed`` and ``conditions`` (as run, or ``None``): a
    chemist's decision on a proposal (see :mod:`autolab.steer`). A rejection is told to the
    optimizer as an infeasible point, in journal order, so resume re-tells it at the same place.
``forecast``
    ``index``, ``forecast``, ``metrics``: the model's stopping forecast after a finished
    experiment, written *after* its ``trial`` record (a result is never held back for a model
    fit); replay merges both into that trial's ``extra``.
``invalidated``
    ``index``, ``reason``, ``by``, ``time``: a finished experiment found invalid after the fact
    (a leak found later). Replay turns the trial into status ``invalid`` so every reader (resume,
    best so far, report) stops using it; the record itself says what it was before.
``rig_event``
    ``index`` (the started experiment it ends), ``reactor``, ``device``, ``reason``,
    ``device_log``, ``proposal`` and ``extra`` (executor state, clocks, reagents, queue): a device
    fault found before any reagent of that experiment was fed (a valve turned, a heater straying
    between experiments). Not an experiment: no trial, never tracked, not counted against the
    budget; the proposal runs again on that reactor. Replay keeps them in order
    (``rig_events``) and counts each reactor's run of them since its last trial (reset by a stop).

Experiment indices are unique per attempt: an interrupted experiment keeps its index and a re-run
of its conditions gets a new one. That keeps "one index, one outcome" true for the optimizer and
for the tracker's exactly-once key.

Reading tolerates a torn final line (a crash in the middle of a write): it is ignored, and
:meth:`Journal.open` cuts it off before appending. An unreadable line anywhere else is corruption
and raises :class:`JournalError` naming the line, because silently skipping a record in the middle
would lose or reorder data.

The file is Python-flavoured JSON: non-finite floats are written as ``NaN``/``Infinity`` (a
condition like ``cl_to_i = inf`` must survive the round trip).
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from autolab import __version__
from autolab.exceptions import JournalError
from autolab.records import Trial, TrialStatus

#: Version of the record layout, written in the header and checked on read: a journal of a
#: newer format is refused up front (its records may mean what this code cannot know); older
#: ones are read. 1: header, started, trial, interrupted, tracked, tracker_run, tracking_uri,
#: note, stopped, review, invalidated, forecast (a header without a format is 1). 2: adds
#: ``rig_event`` (readers of format 1 before it stopped at such a line). A journal created in
#: format 1 and resumed by this code keeps its header: append-only, it may then hold format-2
#: records.
JOURNAL_FORMAT = 2
#: The format of a header written before the header carried one.
FIRST_JOURNAL_FORMAT = 1
#: File name of the journal in a campaign's run folder.
JOURNAL_NAME = "journal.jsonl"
#: Experiment indices are below this (a campaign's budget is at most 10,000; a larger index is a
#: hand edit or corruption, and would make labels and counters absurd).
MAX_INDEX = 1_000_000

_RECORD_TYPES = frozenset(
    {"header", "started", "trial", "interrupted", "tracked", "tracker_run", "tracking_uri",
     "note", "stopped",
     "review", "invalidated", "forecast", "rig_event"}
)


@dataclass(frozen=True)
class JournalHeader:
    """What identifies a campaign; the first line of its journal.

    Attributes:
        campaign_name: Human name (file stem of the campaign YAML, usually).
        campaign_id: Unique id; the tracker uses it to find this campaign's run again.
        config: The validated campaign configuration as a JSON-compatible dict.
        seed: Seed of every random choice of the campaign, if any.
        autolab_version: Version of autolab that created the journal.
        created: Creation time, ISO 8601 UTC.
        format: Journal record-layout version.
    """

    campaign_name: str
    campaign_id: str
    config: dict[str, Any]
    seed: int | None = None
    autolab_version: str = __version__
    created: str = ""
    format: int = JOURNAL_FORMAT

    @classmethod
    def new(cls, campaign_name: str, config: Mapping[str, Any], seed: int | None = None,
            campaign_id: str | None = None) -> JournalHeader:
        """A header for a new campaign: fresh id (unless given) and the current time."""
        return cls(campaign_name=campaign_name,
                   campaign_id=campaign_id or uuid.uuid4().hex,
                   config=dict(config), seed=seed,
                   created=datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {"campaign_name": self.campaign_name, "campaign_id": self.campaign_id,
                "config": self.config, "seed": self.seed,
                "autolab_version": self.autolab_version, "created": self.created,
                "format": self.format}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JournalHeader:
        """Inverse of :meth:`to_dict`.

        Raises:
            KeyError, TypeError, ValueError: A field is missing or of the wrong type (the journal
                reader wraps these into :class:`JournalError` with the line number).
        """
        seed = d.get("seed")
        config = d["config"]
        if not isinstance(config, dict):
            raise TypeError(f"config must be an object, got {type(config).__name__}")
        return cls(campaign_name=str(d["campaign_name"]), campaign_id=str(d["campaign_id"]),
                   config=config, seed=None if seed is None else int(seed),
                   autolab_version=str(d.get("autolab_version", "")),
                   created=str(d.get("created", "")), format=journal_format(d))


def journal_format(header: Mapping[str, Any]) -> int:
    """The record-layout version a header states (:data:`FIRST_JOURNAL_FORMAT` if none).

    Raises:
        ValueError: It is not an integer >= 1.
    """
    v = header.get("format", FIRST_JOURNAL_FORMAT)
    if isinstance(v, bool) or not isinstance(v, int) or v < FIRST_JOURNAL_FORMAT:
        raise ValueError(f"format must be an integer >= {FIRST_JOURNAL_FORMAT}, got {v!r}")
    return v


@dataclass(frozen=True)
class StartedExperiment:
    """An experiment the campaign handed to its executor.

    Attributes:
        index: Experiment index.
        conditions: Conditions it was started with, name -> physical value.
        proposal_time_s: Wall time the optimizer took to propose it, s.
        reactor: The reactor it runs on (parallel reactors); empty in single-reactor journals
            written before reactors were named.
    """

    index: int
    conditions: dict[str, float]
    proposal_time_s: float = 0.0
    reactor: str = ""


@dataclass
class JournalState:
    """Everything a resumed campaign (or a tracker sync) needs, rebuilt from the journal.

    Attributes:
        header: The campaign header.
        trials: Finished trials from ``trial`` records (completed and failed), in journal order.
        interrupted: Interrupted experiments, as trials with status ``INTERRUPTED`` (conditions
            from their ``started`` record, ``error`` = the reason), in journal order.
        in_flight: Indices started but neither finished nor recorded as interrupted: the process
            died while they ran. Record them as interrupted, then re-run their conditions.
        started: Every started experiment by index (gives the conditions of ``in_flight`` ones).
        untracked: Indices of finished or interrupted experiments not yet marked tracked, in
            journal order; what a tracker sync must still log.
        extras: The ``extra`` dict of each ``trial`` record by index.
        last_extra: The ``extra`` of the last ``trial`` record that had one (executor state and
            optimizer summary to resume from).
        tracker_run_id: The tracker run holding this campaign, if one was recorded.
        tracking_uri: Where that run lives, if recorded.
        stopped_reason: Why the campaign last stopped, or ``None`` if it has not stopped since it
            last started an experiment.
        notes: Free-text notes in order.
        next_index: The smallest index not used by any record: the next experiment's index.
        reviews: ``review`` records in order, each with ``position`` added: the number of
            ``trial`` records before it (where a rejection sits in the optimizer's data).
        invalidated: ``invalidated`` records by experiment index (the trial in ``trials`` has
            status ``invalid`` from then on; ``previous_status`` says what it was).
        stopped_status: The tracker status the campaign journaled with its stop (``FINISHED``,
            ``KILLED``, ``FAILED``), if it did; ``None`` while running.
        rig_events: ``rig_event`` records in order, each with ``position`` added (the number of
            ``trial`` records before it).
        rig_faults_in_a_row: Per reactor, the rig events since its last trial or the last stop.
    """

    header: JournalHeader
    trials: list[Trial] = field(default_factory=list)
    interrupted: list[Trial] = field(default_factory=list)
    in_flight: list[int] = field(default_factory=list)
    started: dict[int, StartedExperiment] = field(default_factory=dict)
    untracked: list[int] = field(default_factory=list)
    extras: dict[int, dict[str, Any]] = field(default_factory=dict)
    last_extra: dict[str, Any] | None = None
    tracker_run_id: str | None = None
    tracking_uri: str | None = None
    stopped_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    next_index: int = 0
    reviews: list[dict[str, Any]] = field(default_factory=list)
    invalidated: dict[int, dict[str, Any]] = field(default_factory=dict)
    stopped_status: str | None = None
    rig_events: list[dict[str, Any]] = field(default_factory=list)
    rig_faults_in_a_row: dict[str, int] = field(default_factory=dict)

    def finished(self) -> list[Trial]:
        """Finished and interrupted trials together, ordered by index."""
        return sorted([*self.trials, *self.interrupted], key=lambda t: t.index)

    def trial(self, index: int) -> Trial:
        """The finished or interrupted trial with this index.

        Raises:
            JournalError: No such trial in the journal.
        """
        for t in (*self.trials, *self.interrupted):
            if t.index == index:
                return t
        raise JournalError(f"journal of campaign {self.header.campaign_name!r} has no finished "
                           f"experiment with index {index}")


class _Reducer:
    """Folds records into a :class:`JournalState`, checking each one before it is applied.

    The same rules serve replay (a violation is corruption, reported with its line number) and
    append (a violation is a caller bug, refused before anything is written).
    """

    def __init__(self) -> None:
        self.state: JournalState | None = None
        self._finished: set[int] = set()
        self._tracked: set[int] = set()

    def check(self, rec: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` if ``rec`` cannot follow the records applied so far."""
        kind = rec.get("type")
        if kind not in _RECORD_TYPES:
            raise ValueError(f"unknown record type {kind!r}")
        if kind == "header":
            if self.state is not None:
                raise ValueError("a second header record")
            JournalHeader.from_dict(rec["header"])
            return
        if self.state is None:
            raise ValueError(f"a {kind!r} record before the header")
        st = self.state
        if kind == "started":
            idx = _index(rec)
            if idx in st.started or idx in self._finished:
                raise ValueError(f"experiment {idx} started twice (indices are unique per attempt)")
            _conditions(rec["conditions"])
            float(rec.get("proposal_time_s", 0.0))
        elif kind == "trial":
            idx = _index(rec["trial"])
            if idx in self._finished:
                raise ValueError(f"experiment {idx} recorded as finished twice")
            if rec.get("extra") is not None and not isinstance(rec["extra"], dict):
                raise ValueError("extra must be an object")
        elif kind == "interrupted":
            idx = _index(rec)
            if idx in self._finished:
                raise ValueError(f"experiment {idx} interrupted after it finished")
            if idx not in st.started:
                raise ValueError(f"experiment {idx} interrupted but never started")
        elif kind == "tracked":
            idx = _index(rec)
            if idx not in self._finished:
                raise ValueError(f"experiment {idx} marked tracked before it finished")
        elif kind == "tracker_run":
            if not isinstance(rec.get("run_id"), str) or not rec["run_id"]:
                raise ValueError("tracker_run without a run_id")
        elif kind == "tracking_uri":
            if not isinstance(rec.get("uri"), str) or not rec["uri"]:
                raise ValueError("tracking_uri without a uri")
        elif kind in ("note", "stopped"):
            str(rec["text"] if kind == "note" else rec["reason"])
        elif kind == "review":
            _index(rec)
            if rec.get("decision") not in ("approve", "edit", "reject"):
                raise ValueError(f"unknown review decision {rec.get('decision')!r}")
            _conditions(rec["proposed"])
        elif kind == "invalidated":
            idx = _index(rec)
            if idx not in self._finished or all(t.index != idx for t in st.trials):
                raise ValueError(f"experiment {idx} invalidated but it never finished")
            str(rec["reason"])
        elif kind == "rig_event":
            idx = _index(rec)
            if idx in self._finished or idx not in st.started:
                raise ValueError(f"rig event ends experiment {idx}, which is not running")
            str(rec["device"]), str(rec["reason"]), str(rec.get("reactor") or "")
            _conditions(rec["proposal"])
            if not isinstance(rec.get("extra"), dict):
                raise ValueError("rig event extra must be an object")
        elif kind == "forecast":
            idx = _index(rec)
            if all(t.index != idx for t in st.trials):
                raise ValueError(f"forecast for experiment {idx}, which never finished")
            if not isinstance(rec["forecast"], dict) or not isinstance(rec["metrics"], dict):
                raise ValueError("forecast and metrics must be objects")

    def apply(self, rec: Mapping[str, Any]) -> None:
        """Apply a record that passed :meth:`check`."""
        kind = rec["type"]
        if kind == "header":
            self.state = JournalState(header=JournalHeader.from_dict(rec["header"]))
            return
        st = self.state
        assert st is not None  # guaranteed by check()
        if kind == "started":
            idx = int(rec["index"])
            st.started[idx] = StartedExperiment(idx, _conditions(rec["conditions"]),
                                                float(rec.get("proposal_time_s", 0.0)),
                                                str(rec.get("reactor") or ""))
            st.in_flight.append(idx)
            st.stopped_reason = None
            st.stopped_status = None
            st.next_index = max(st.next_index, idx + 1)
        elif kind == "trial":
            trial = Trial.from_dict(rec["trial"])
            self._finish(trial.index)
            st.trials.append(trial)
            extra = rec.get("extra")
            if extra is not None:
                st.extras[trial.index] = dict(extra)
                st.last_extra = dict(extra)
                st.rig_faults_in_a_row.pop(str(extra.get("reactor") or ""), None)
        elif kind == "interrupted":
            idx = int(rec["index"])
            s = st.started[idx]
            self._finish(idx)
            st.interrupted.append(Trial(index=idx, conditions=dict(s.conditions),
                                        status=TrialStatus.INTERRUPTED, error=str(rec["reason"]),
                                        proposal_time_s=s.proposal_time_s))
        elif kind == "tracked":
            idx = int(rec["index"])
            if idx not in self._tracked:
                self._tracked.add(idx)
                st.untracked.remove(idx)
        elif kind == "tracker_run":
            st.tracker_run_id = str(rec["run_id"])
            uri = rec.get("tracking_uri")
            st.tracking_uri = None if uri is None else str(uri)
        elif kind == "tracking_uri":
            st.tracking_uri = str(rec["uri"])
        elif kind == "note":
            st.notes.append(str(rec["text"]))
        elif kind == "rig_event":
            self._rig_event(st, rec)
        elif kind == "stopped":
            st.rig_faults_in_a_row.clear()  # a person was called: count afresh
            st.stopped_reason = str(rec["reason"])
            status = rec.get("status")
            st.stopped_status = None if status is None else str(status)
        elif kind == "review":
            st.reviews.append({**rec, "position": len(st.trials)})
        elif kind == "invalidated":
            self._invalidate(st, rec)
            self._retrack(int(rec["index"]))
        elif kind == "forecast":
            self._merge_forecast(st, rec)

    def _rig_event(self, st: JournalState, rec: Mapping[str, Any]) -> None:
        """End the started experiment without a trial (nothing to track, nothing finished)."""
        idx = int(rec["index"])
        self._finished.add(idx)
        if idx in st.in_flight:
            st.in_flight.remove(idx)
        st.next_index = max(st.next_index, idx + 1)
        st.rig_events.append({**rec, "position": len(st.trials)})
        reactor = str(rec.get("reactor") or "")
        st.rig_faults_in_a_row[reactor] = st.rig_faults_in_a_row.get(reactor, 0) + 1

    @staticmethod
    def _merge_forecast(st: JournalState, rec: Mapping[str, Any]) -> None:
        idx = int(rec["index"])
        extra = st.extras.setdefault(idx, {})
        extra["forecast"] = dict(rec["forecast"])
        extra["metrics"] = {**(extra.get("metrics") or {}), **rec["metrics"]}
        if st.trials and st.trials[-1].index == idx and st.last_extra is not None:
            st.last_extra = {**st.last_extra, "forecast": extra["forecast"],
                             "metrics": extra["metrics"]}

    @staticmethod
    def _invalidate(st: JournalState, rec: Mapping[str, Any]) -> None:
        idx = int(rec["index"])
        pos = next(i for i, t in enumerate(st.trials) if t.index == idx)
        old = st.trials[pos]
        st.invalidated[idx] = {**rec, "previous_status": old.status.value}
        st.trials[pos] = replace(old, status=TrialStatus.INVALID, objective=None,
                                 error=f"invalidated after the fact: {rec['reason']}")

    def _retrack(self, idx: int) -> None:
        """A finished experiment changed (invalidated): the tracker must show it again."""
        st = self.state
        assert st is not None
        self._tracked.discard(idx)
        if idx not in st.untracked:
            st.untracked.append(idx)

    def _finish(self, idx: int) -> None:
        st = self.state
        assert st is not None
        self._finished.add(idx)
        if idx in st.in_flight:
            st.in_flight.remove(idx)
        st.untracked.append(idx)
        st.next_index = max(st.next_index, idx + 1)


def _index(rec: Mapping[str, Any]) -> int:
    v = rec["index"]
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < MAX_INDEX:
        raise ValueError(f"index must be an integer in [0, {MAX_INDEX}), got {v!r}")
    return v


def _conditions(v: Any) -> dict[str, float]:
    if not isinstance(v, dict):
        raise ValueError(f"conditions must be an object, got {type(v).__name__}")
    return {str(k): float(x) for k, x in v.items()}


def _encode(rec: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(rec, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError) as err:
        raise JournalError(f"cannot write a {rec.get('type')!r} record to the journal: "
                           f"it is not JSON-serializable ({err})") from err
    return text.encode("utf-8") + b"\n"


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The record on one line, or ``None`` if the line is not a JSON object."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path) -> tuple[_Reducer, int]:
    """Replay ``path``; return the reducer and the byte length of its valid, complete part.

    The valid part ends after the last record that parsed, including its newline if it has one.
    A final line without a newline that does not parse is a torn write and is ignored.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise JournalError(f"cannot read journal {path}: {err}") from err
    reducer = _Reducer()
    lines = data.split(b"\n")
    # data ends with "\n" -> the last element is b"" (no tail); otherwise it is a tail without one.
    tail = lines.pop()
    pos = 0
    for n, raw in enumerate(lines, start=1):
        _replay_line(reducer, raw, n, path)
        pos += len(raw) + 1
    if tail:
        rec = _parse(tail)
        if rec is not None:
            _replay_line(reducer, tail, len(lines) + 1, path)
            pos += len(tail)
    if reducer.state is None:
        raise JournalError(f"journal {path} has no complete header line: it was cut off while "
                           "being created; no experiment was recorded in it")
    return reducer, pos


def _replay_line(reducer: _Reducer, raw: bytes, line_no: int, path: Path) -> None:
    rec = _parse(raw)
    if rec is None:
        raise JournalError(f"journal {path}, line {line_no}: not a JSON record (corrupted; only "
                           "the last line may be torn by a crash)")
    try:
        if rec.get("type") == "header" and isinstance(rec.get("header"), dict):
            _refuse_newer(rec["header"], path)
        reducer.check(rec)
        reducer.apply(rec)
    except (KeyError, TypeError, ValueError) as err:
        detail = f"missing field {err}" if isinstance(err, KeyError) else str(err)
        raise JournalError(f"journal {path}, line {line_no}: invalid "
                           f"{rec.get('type')!r} record: {detail}") from err


def _refuse_newer(header: Mapping[str, Any], path: Path) -> None:
    """Refuse a journal whose format this code does not know, before any record is read.

    Raises:
        JournalError: Its format is newer than :data:`JOURNAL_FORMAT`.
        ValueError: Its format is not an integer >= 1 (reported with the line).
    """
    found = journal_format(header)
    if found > JOURNAL_FORMAT:
        raise JournalError(
            f"journal {path} is in format {found}, newer than the newest this autolab reads: "
            f"{JOURNAL_FORMAT} (autolab {__version__}; the journal was written by autolab "
            f"{header.get('autolab_version') or 'unknown'}); read or resume it with that "
            "version or a newer one")


class Journal:
    """An open campaign journal, appending durably and keeping the replayed state current.

    Only one process may hold a journal open (an exclusive ``flock``), so a campaign cannot be
    resumed twice at once. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: Path, fd: int, reducer: _Reducer) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.path = path
        self._fd: int | None = fd
        self._reducer = reducer
        #: Bytes of a torn final line :meth:`open` cut off (0: none), for the resume to say so.
        self.dropped_bytes = 0

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], header: JournalHeader) -> Journal:
        """Create a new journal holding only ``header``.

        Raises:
            JournalError: The file exists already (a journal is never overwritten), or cannot be
                created.
        """
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError as err:
            raise JournalError(f"journal {p} exists already; resume that campaign or choose "
                               "another path") from err
        except OSError as err:
            raise JournalError(f"cannot create journal {p}: {err}") from err
        journal = cls(p, fd, _Reducer())
        try:
            journal._lock()
            journal._append({"type": "header", "header": header.to_dict()})
            _fsync_dir(p.parent)
        except BaseException:
            journal.close()
            raise
        return journal

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Journal:
        """Open an existing journal for appending: validate, replay, and cut off a torn last line.

        Raises:
            JournalError: Missing file, corruption before the last line, no header, or the journal
                is open in another process.
        """
        p = Path(path)
        try:
            fd = os.open(p, os.O_RDWR | os.O_APPEND)
        except OSError as err:
            raise JournalError(f"cannot open journal {p}: {err}") from err
        journal = cls(p, fd, _Reducer())
        try:
            journal._lock()
            reducer, valid_len = _read(p)
            journal._reducer = reducer
            size = os.fstat(fd).st_size
            if valid_len < size:  # torn final line: drop it so the next record starts clean
                os.ftruncate(fd, valid_len)
                os.fsync(fd)
                journal.dropped_bytes = size - valid_len
            if valid_len > 0 and _last_byte(fd, valid_len) != b"\n":
                _write_all(fd, b"\n")  # complete record whose newline was lost
                os.fsync(fd)
        except OSError as err:
            journal.close()
            raise JournalError(f"cannot repair journal {p}: {err}") from err
        except BaseException:
            journal.close()
            raise
        return journal

    @staticmethod
    def read(path: str | os.PathLike[str]) -> JournalState:
        """Replay a journal without opening it for writing (reports, dashboards).

        Raises:
            JournalError: Missing file, corruption before the last line, or no header.
        """
        return _read(Path(path))[0].state  # type: ignore[return-value]

    # ---- appending ----------------------------------------------------------------------------
    def append_started(self, index: int, conditions: Mapping[str, float],
                       proposal_time_s: float = 0.0, reactor: str | None = None) -> None:
        """Record that experiment ``index`` is about to run; call before the executor starts.

        ``reactor`` names the reactor that runs it, so a resumed campaign runs an experiment the
        process lost again on the same reactor, and knows what was pending on the others.
        """
        rec: dict[str, Any] = {"type": "started", "index": index,
                               "conditions": {k: float(v) for k, v in conditions.items()},
                               "proposal_time_s": float(proposal_time_s)}
        if reactor:
            rec["reactor"] = str(reactor)
        self._append(rec)

    def append_trial(self, trial: Trial, extra: Mapping[str, Any] | None = None) -> None:
        """Record a finished experiment (completed or failed) with optional resume state.

        Args:
            trial: The trial; status ``INTERRUPTED`` belongs in :meth:`append_interrupted`.
            extra: JSON-compatible facts to resume from (``executor_state``, ``optimizer``
                summary, ``lab_clock_h``, ``metrics`` for the tracker...).

        Raises:
            JournalError: Index already finished, interrupted status, or ``extra`` not JSON.
        """
        if trial.status is TrialStatus.INTERRUPTED:
            raise JournalError(f"experiment {trial.index}: record interruptions with "
                               "append_interrupted(index, reason), not append_trial")
        rec: dict[str, Any] = {"type": "trial", "trial": trial.to_dict()}
        if extra is not None:
            rec["extra"] = dict(extra)
        self._append(rec)

    def append_trials(self, trials: list[tuple[Trial, Mapping[str, Any] | None]]) -> None:
        """Record several finished experiments at once: all of them, or (on any error) none.

        Used for results made outside the loop (``autolab add``): every record is checked against
        the journal's state first, then all lines go out in one write and one ``fsync``, so a
        bad row or a kill cannot leave some of them recorded and others not.

        Raises:
            JournalError: A record is refused (the journal is unchanged), or the write failed.
        """
        recs: list[dict[str, Any]] = []
        for trial, extra in trials:
            if trial.status is TrialStatus.INTERRUPTED:
                raise JournalError(f"experiment {trial.index}: an interruption is not a result")
            rec: dict[str, Any] = {"type": "trial", "trial": trial.to_dict()}
            if extra is not None:
                rec["extra"] = dict(extra)
            recs.append(rec)
        probe = copy.deepcopy(self._reducer)
        for rec in recs:
            try:
                probe.check(rec)
            except (KeyError, TypeError, ValueError) as err:
                raise JournalError(f"journal {self.path}: refusing trial record: {err}") from err
            probe.apply(rec)
        self._write(b"".join(_encode(rec) for rec in recs))
        self._reducer = probe

    def append_rig_event(self, index: int, fields: Mapping[str, Any]) -> None:
        """Record that started experiment ``index`` ended in a fault before anything was fed.

        Args:
            index: The started experiment.
            fields: ``reactor``, ``device``, ``reason``, ``device_log``, ``proposal`` (its
                searched conditions) and ``extra`` (JSON-compatible resume state).

        Raises:
            JournalError: ``index`` is not running, or a field is missing or not JSON.
        """
        self._append({**fields, "type": "rig_event", "index": index,
                      "time": datetime.now(UTC).isoformat(timespec="seconds")})

    def append_interrupted(self, index: int, reason: str) -> None:
        """Record that started experiment ``index`` will never finish (crash, signal, abort)."""
        self._append({"type": "interrupted", "index": index, "reason": reason})

    def mark_tracked(self, index: int) -> None:
        """Record that the tracker holds experiment ``index``; a no-op if already marked."""
        if index in self._reducer._tracked:
            return
        self._append({"type": "tracked", "index": index})

    def set_tracker_run(self, run_id: str, tracking_uri: str | None = None) -> None:
        """Record which tracker run holds this campaign (for resume and sync)."""
        st = self.state
        if st.tracker_run_id == run_id and st.tracking_uri == tracking_uri:
            return
        self._append({"type": "tracker_run", "run_id": run_id, "tracking_uri": tracking_uri})

    def set_tracking_uri(self, uri: str) -> None:
        """Record where the campaign is to be tracked, before a tracker run exists.

        Written when the tracker could not open its run (server down, store broken), so that a
        later ``autolab sync RUN_DIR`` logs to the intended store, not a default one.
        """
        st = self.state
        if st.tracker_run_id is None and st.tracking_uri != uri:
            self._append({"type": "tracking_uri", "uri": uri})

    def append_note(self, text: str) -> None:
        """Record a free-text note (resumed, operator comment, ...)."""
        self._append({"type": "note", "text": text,
                      "time": datetime.now(UTC).isoformat(timespec="seconds")})

    def append_record(self, kind: str, fields: Mapping[str, Any]) -> None:
        """Append a ``review`` or ``invalidated`` record (see the module docs for their fields).

        Raises:
            JournalError: Another kind, or the record does not fit the journal (e.g. it
                invalidates an experiment that never finished).
        """
        if kind not in ("review", "invalidated", "forecast"):
            raise JournalError("append_record() writes review/invalidated/forecast records, "
                               f"not {kind!r}")
        self._append({**fields, "type": kind})

    def append_stopped(self, reason: str, status: str | None = None) -> None:
        """Record why the campaign stopped (budget reached, target met, Ctrl-C, error).

        Args:
            reason: Why, for people.
            status: The campaign run's tracker status (``FINISHED``, ``KILLED``, ``FAILED``);
                ``autolab sync`` sets it from here when the tracker missed the end.
        """
        rec: dict[str, Any] = {"type": "stopped", "reason": reason,
                               "time": datetime.now(UTC).isoformat(timespec="seconds")}
        if status is not None:
            rec["status"] = status
        self._append(rec)

    # ---- reading ------------------------------------------------------------------------------
    @property
    def state(self) -> JournalState:
        """The current state (live object: updated by every append)."""
        assert self._reducer.state is not None  # a Journal always has its header
        return self._reducer.state

    @property
    def header(self) -> JournalHeader:
        """The campaign header."""
        return self.state.header

    def replay(self) -> JournalState:
        """Re-read the file from disk and rebuild the state (what a restarted process would see).

        Raises:
            JournalError: The file was corrupted since it was opened.
        """
        return self.read(self.path)

    # ---- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the lock and the file; appending afterwards raises :class:`JournalError`."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # also releases the flock

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _lock(self) -> None:
        assert self._fd is not None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise JournalError(f"journal {self.path} is open in another process (is the campaign "
                               "still running?)") from err

    def _append(self, rec: dict[str, Any]) -> None:
        if self._fd is None:
            raise JournalError(f"journal {self.path} is closed")
        try:
            self._reducer.check(rec)
        except (KeyError, TypeError, ValueError) as err:
            raise JournalError(f"journal {self.path}: refusing {rec.get('type')!r} record: "
                               f"{err}") from err
        self._write(_encode(rec))
        self._reducer.apply(rec)

    def _write(self, data: bytes) -> None:
        """Write whole records and ``fsync`` them (one ``write`` call for all of ``data``)."""
        if self._fd is None:
            raise JournalError(f"journal {self.path} is closed")
        try:
            _write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError as err:
            raise JournalError(f"cannot write to journal {self.path}: {err}") from err


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _last_byte(fd: int, length: int) -> bytes:
    return os.pread(fd, 1, length - 1)

