"""The journal: durable, append-only, crash-tolerant, consistent."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autolab.exceptions import JournalError
from autolab.records import QualityFlag, Trial, TrialStatus
from autolab.tracking.journal import Journal, JournalHeader, JournalState

from .conftest import CONFIG, TrialFactory, build_trial


def _build(path: Path, header: JournalHeader, make_trial: TrialFactory) -> list[Trial]:
    """A realistic journal: completed, failed, interrupted, tracked, and one in flight."""
    trials = [make_trial(0), make_trial(1, TrialStatus.FAILED),
              make_trial(3, flags=QualityFlag.TRAP_TAIL, with_trace=True)]
    with Journal.create(path, header) as j:
        j.set_tracker_run("run-abc", "sqlite:///x.db")
        for t in trials[:2]:
            j.append_started(t.index, t.conditions, t.proposal_time_s)
            j.append_trial(t, extra={"executor_state": {"clock_h": 1.5 * t.index},
                                     "lab_clock_h": 1.5 * t.index + 1.2})
            j.mark_tracked(t.index)
        j.append_started(2, trials[0].conditions, 0.1)
        j.append_interrupted(2, "SIGINT")
        j.append_started(3, trials[2].conditions, trials[2].proposal_time_s)
        j.append_trial(trials[2], extra={"optimizer": {"n_obs": 3}})
        j.append_note("operator refilled the InCl3 syringe")
        j.append_started(4, {"t_core_c": 190.0, "cl_to_i": math.inf}, 0.3)
    return trials


def test_round_trip_reconstructs_the_campaign(tmp_path: Path, header: JournalHeader,
                                              make_trial: TrialFactory) -> None:
    path = tmp_path / "journal.jsonl"
    trials = _build(path, header, make_trial)
    state = Journal.read(path)
    assert state.header == header
    assert [t.to_dict() for t in state.trials] == [t.to_dict() for t in trials]
    assert [(t.index, t.status, t.error) for t in state.interrupted] == [
        (2, TrialStatus.INTERRUPTED, "SIGINT")]
    assert state.interrupted[0].conditions == trials[0].conditions
    assert state.in_flight == [4]
    assert state.started[4].conditions["cl_to_i"] == math.inf  # non-finite survives
    assert state.untracked == [2, 3]
    assert state.last_extra == {"optimizer": {"n_obs": 3}}
    assert state.extras[1]["lab_clock_h"] == pytest.approx(2.7)
    assert state.tracker_run_id == "run-abc"
    assert state.tracking_uri == "sqlite:///x.db"
    assert state.notes == ["operator refilled the InCl3 syringe"]
    assert state.stopped_reason is None
    assert state.next_index == 5
    assert [t.index for t in state.finished()] == [0, 1, 2, 3]
    assert state.trial(3).measurement is not None
    with pytest.raises(JournalError, match="no finished experiment with index 4"):
        state.trial(4)


def test_every_line_is_a_typed_json_record(tmp_path: Path, header: JournalHeader,
                                           make_trial: TrialFactory) -> None:
    path = tmp_path / "j.jsonl"
    _build(path, header, make_trial)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    types = [json.loads(line)["type"] for line in lines[:-1]]
    assert types[0] == "header"
    assert types.count("header") == 1
    assert types.index("started") < types.index("trial")


def test_stop_and_resume_state(tmp_path: Path, header: JournalHeader,
                               make_trial: TrialFactory) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.create(path, header) as j:
        j.append_started(0, make_trial(0).conditions)
        j.append_trial(make_trial(0))
        j.append_stopped("budget of 1 experiment reached")
    assert Journal.read(path).stopped_reason == "budget of 1 experiment reached"
    with Journal.open(path) as j:
        assert j.state.stopped_reason == "budget of 1 experiment reached"
        j.append_started(1, make_trial(1).conditions)
        assert j.state.stopped_reason is None  # resumed: running again
        assert j.state.in_flight == [1]
    assert Journal.read(path).in_flight == [1]


def test_replay_is_idempotent_and_open_does_not_rewrite_a_clean_file(
        tmp_path: Path, header: JournalHeader, make_trial: TrialFactory) -> None:
    path = tmp_path / "j.jsonl"
    _build(path, header, make_trial)
    before = path.read_bytes()
    with Journal.open(path) as j:
        first, second = j.replay(), j.replay()
        assert _summary(first) == _summary(second) == _summary(j.state)
    assert path.read_bytes() == before


def test_create_never_overwrites(tmp_path: Path, header: JournalHeader) -> None:
    path = tmp_path / "j.jsonl"
    Journal.create(path, header).close()
    with pytest.raises(JournalError, match="exists already"):
        Journal.create(path, header)


def test_one_process_at_a_time(tmp_path: Path, header: JournalHeader) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.create(path, header), pytest.raises(JournalError, match="open in another"):
        Journal.open(path)
    Journal.open(path).close()  # released on close


def test_appending_after_close_is_refused(tmp_path: Path, header: JournalHeader) -> None:
    j = Journal.create(tmp_path / "j.jsonl", header)
    j.close()
    with pytest.raises(JournalError, match="closed"):
        j.append_note("late")


@pytest.mark.parametrize("bad", ["duplicate trial", "duplicate started", "interrupted unknown",
                                 "interrupted status", "tracked unfinished", "extra not json",
                                 "interrupt finished"])
def test_inconsistent_appends_are_refused_and_nothing_is_written(
        tmp_path: Path, header: JournalHeader, make_trial: TrialFactory, bad: str) -> None:
    path = tmp_path / "j.jsonl"
    t0 = make_trial(0)
    with Journal.create(path, header) as j:
        j.append_started(0, t0.conditions)
        j.append_trial(t0)
        size = path.stat().st_size
        attempts: dict[str, Callable[[], None]] = {
            "duplicate trial": lambda: j.append_trial(t0),
            "duplicate started": lambda: j.append_started(0, t0.conditions),
            "interrupted unknown": lambda: j.append_interrupted(7, "crash"),
            "interrupted status": lambda: j.append_trial(
                Trial(index=1, conditions=t0.conditions, status=TrialStatus.INTERRUPTED)),
            "tracked unfinished": lambda: j.mark_tracked(5),
            "extra not json": lambda: j.append_trial(make_trial(1), extra={"model": object()}),
            "interrupt finished": lambda: j.append_interrupted(0, "too late"),
        }
        with pytest.raises(JournalError):
            attempts[bad]()
        assert path.stat().st_size == size
    assert len(Journal.read(path).trials) == 1


def test_mark_tracked_twice_writes_once(tmp_path: Path, header: JournalHeader,
                                        make_trial: TrialFactory) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.create(path, header) as j:
        j.append_trial(make_trial(0))
        j.mark_tracked(0)
        size = path.stat().st_size
        j.mark_tracked(0)
        assert path.stat().st_size == size
        assert j.state.untracked == []


def test_torn_last_line_is_ignored_and_cut_on_open(tmp_path: Path, header: JournalHeader,
                                                   make_trial: TrialFactory) -> None:
    path = tmp_path / "j.jsonl"
    _build(path, header, make_trial)
    good = path.read_bytes()
    torn = json.dumps({"type": "trial", "trial": make_trial(5).to_dict()}).encode()[:500]
    path.write_bytes(good + torn)
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(good)
    assert _summary(Journal.read(path)) == _summary(Journal.read(clean))
    with Journal.open(path) as j:
        assert path.read_bytes() == good
        assert j.dropped_bytes == len(torn)  # what the resume reports
        j.append_started(5, make_trial(5).conditions)
        j.append_trial(make_trial(5))
    state = Journal.read(path)
    assert [t.index for t in state.trials] == [0, 1, 3, 5]


def test_complete_last_record_without_newline_is_kept(tmp_path: Path, header: JournalHeader,
                                                      make_trial: TrialFactory) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.create(path, header) as j:
        j.append_trial(make_trial(0))
    path.write_bytes(path.read_bytes()[:-1])  # the crash ate only the newline
    assert [t.index for t in Journal.read(path).trials] == [0]
    with Journal.open(path) as j:
        j.append_trial(make_trial(1))
    assert [t.index for t in Journal.read(path).trials] == [0, 1]


def test_corruption_before_the_last_line_names_the_line(tmp_path: Path, header: JournalHeader,
                                                        make_trial: TrialFactory) -> None:
    path = tmp_path / "j.jsonl"
    _build(path, header, make_trial)
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3][: len(lines[3]) // 2]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalError, match="line 4"):
        Journal.read(path)
    with pytest.raises(JournalError, match="line 4"):
        Journal.open(path)


def test_semantic_corruption_is_reported(tmp_path: Path, header: JournalHeader,
                                         make_trial: TrialFactory) -> None:
    path = tmp_path / "j.jsonl"
    with Journal.create(path, header) as j:
        j.append_trial(make_trial(0))
    line = path.read_bytes().split(b"\n")[1]
    path.write_bytes(path.read_bytes() + line + b"\n")  # the same trial twice
    with pytest.raises(JournalError, match=r"line 3: .*finished twice"):
        Journal.read(path)


def test_missing_header_is_an_error(tmp_path: Path, header: JournalHeader) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(json.dumps({"type": "header", "header": header.to_dict()}).encode()[:40])
    with pytest.raises(JournalError, match="no complete header"):
        Journal.read(path)
    with pytest.raises(JournalError, match="cannot open"):
        Journal.open(tmp_path / "missing.jsonl")


def _summary(state: JournalState) -> tuple[object, ...]:
    return ([t.to_dict() for t in state.trials], [t.to_dict() for t in state.interrupted],
            state.in_flight, state.untracked, state.last_extra, state.stopped_reason,
            state.tracker_run_id, state.next_index)


Line = tuple[int, str, int | None]  # (end offset without newline, record type, index)


@pytest.fixture(scope="module")
def crash_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[Line]]:
    """A real journal's bytes and, per line, (end offset without newline, type, index)."""
    path = tmp_path_factory.mktemp("crash") / "journal.jsonl"
    hdr = JournalHeader.new("crash", {k: v for k, v in CONFIG.items() if k != "notes"}, seed=1)
    _build(path, hdr, build_trial)
    data = path.read_bytes()
    lines: list[Line] = []
    pos = 0
    for raw in data.split(b"\n")[:-1]:
        rec = json.loads(raw)
        idx = rec.get("index", rec.get("trial", {}).get("index"))
        lines.append((pos + len(raw), rec["type"], idx))
        pos += len(raw) + 1
    return data, lines


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10**9))
def test_crash_at_any_byte_loses_no_complete_trial_and_duplicates_none(
        crash_corpus: tuple[bytes, list[Line]], cut: int) -> None:
    data, lines = crash_corpus
    _check_cut(data, lines, cut % (len(data) + 1))


def test_crash_at_every_record_boundary(crash_corpus: tuple[bytes, list[Line]]) -> None:
    data, lines = crash_corpus
    for end, _, _ in lines:  # just before, at, after the newline, and into the next record
        for offset in (end - 1, end, end + 1, end + 2):
            _check_cut(data, lines, min(max(offset, 0), len(data)))


def _check_cut(data: bytes, lines: list[Line], offset: int) -> None:
    complete = [(t, i) for end, t, i in lines if end <= offset]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j.jsonl"
        path.write_bytes(data[:offset])
        if not complete:  # cut inside the header: nothing was ever recorded
            with pytest.raises(JournalError, match="no complete header"):
                Journal.read(path)
            return
        state = Journal.read(path)
        expected_trials = [i for t, i in complete if t == "trial"]
        expected_interrupted = [i for t, i in complete if t == "interrupted"]
        started = [i for t, i in complete if t == "started"]
        assert [t.index for t in state.trials] == expected_trials
        assert [t.index for t in state.interrupted] == expected_interrupted
        assert state.in_flight == [i for i in started
                                   if i not in expected_trials + expected_interrupted]
        assert _summary(Journal.read(path)) == _summary(state)  # replay is idempotent
        with Journal.open(path) as j:  # resume: repair, record the in-flight ones, go on
            for idx in list(j.state.in_flight):
                j.append_interrupted(idx, "crash")
            j.append_note("resumed")
        after = Journal.read(path)
        assert [t.index for t in after.trials] == expected_trials
        assert after.in_flight == []
        assert path.read_bytes().endswith(b"\n")


def test_a_batch_of_trials_is_recorded_whole_or_not_at_all(
        tmp_path: Path, header: JournalHeader, make_trial: TrialFactory) -> None:
    """`autolab add` writes its rows as one batch: a refused record leaves the journal as is."""
    path = tmp_path / "journal.jsonl"
    with Journal.create(path, header) as j:
        j.append_trial(make_trial(0))
        before = path.read_bytes()
        with pytest.raises(JournalError, match="refusing trial record"):
            j.append_trials([(make_trial(1), {"origin": "manual"}),
                             (make_trial(0), {"origin": "manual"})])  # 0 is already finished
        assert path.read_bytes() == before
        assert [t.index for t in j.state.trials] == [0]
        j.append_trials([(make_trial(1), {"origin": "manual"}),
                         (make_trial(2), {"origin": "manual"})])
    state = Journal.read(path)
    assert [t.index for t in state.trials] == [0, 1, 2]
    assert state.extras[2] == {"origin": "manual"}
    assert state.next_index == 3
