"""The journal's format number is checked on read: newer refused up front, older still read.

``fixtures/journal-format1.jsonl`` was written by the last format-1 autolab (main at e968ba8)
through its own ``Journal`` API: the records of a real steady campaign on the simulated rig,
stopped after two experiments with a rig event (a ``rig_event`` record, which format-1 readers
older than it did not know) between them, written again without the spectra and the executor
state so the file stays small. This code must read it and resume it. A format-1 journal with
the executor state (built in the test: the record layout is the same) must resume exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autolab.campaign import Campaign, StopReason
from autolab.cli import EXIT_FAILURE, app
from autolab.exceptions import JournalError
from autolab.executors.simulated import SimulatedExecutor
from autolab.tracking.journal import JOURNAL_FORMAT, JOURNAL_NAME, Journal, JournalHeader
from autolab.twin import TwinConfig

from ..test_campaign import _assert_same_trials
from ..test_rig_events import VALVE_TURNED, _cfg

FIXTURE = Path(__file__).parent / "fixtures" / "journal-format1.jsonl"


def _with_format(tmp_path: Path, fmt: Any) -> Path:
    """A copy of the fixture's campaign folder whose header says format ``fmt``."""
    folder = tmp_path / "campaign"
    folder.mkdir()
    lines = FIXTURE.read_text().splitlines()
    header = json.loads(lines[0])
    header["header"]["format"] = fmt
    (folder / JOURNAL_NAME).write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    return folder


def test_a_new_journal_is_written_in_the_current_format(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    Journal.create(path, JournalHeader.new("c", {"name": "c"})).close()
    assert JOURNAL_FORMAT == 2  # rig_event records (and review, forecast...) since format 1
    assert json.loads(path.read_text().splitlines()[0])["header"]["format"] == JOURNAL_FORMAT
    assert Journal.read(path).header.format == JOURNAL_FORMAT


def test_a_journal_of_a_newer_format_is_refused_up_front_naming_file_and_formats(
        tmp_path: Path) -> None:
    folder = _with_format(tmp_path, JOURNAL_FORMAT + 1)
    path = folder / JOURNAL_NAME
    before = path.read_bytes()
    for read in (Journal.read, Journal.open):
        with pytest.raises(JournalError) as err:
            read(path)
        text = str(err.value)
        assert str(path) in text
        assert f"format {JOURNAL_FORMAT + 1}" in text
        assert f"newest this autolab reads: {JOURNAL_FORMAT}" in text
    # through the command line: a journal failure (exit 4), and nothing appended to it
    result = CliRunner().invoke(app, ["resume", str(folder), "--no-tracking"])
    assert result.exit_code == EXIT_FAILURE, result.output
    assert f"format {JOURNAL_FORMAT + 1}" in " ".join(result.output.split())
    assert path.read_bytes() == before


@pytest.mark.parametrize("fmt", [0, -1, "2", 1.5, None, True])
def test_a_format_that_is_not_a_positive_integer_is_refused(tmp_path: Path, fmt: Any) -> None:
    path = _with_format(tmp_path, fmt) / JOURNAL_NAME
    with pytest.raises(JournalError, match=r"line 1: .*format must be an integer >= 1"):
        Journal.read(path)


def test_a_header_without_a_format_reads_as_format_1(tmp_path: Path) -> None:
    folder = tmp_path / "campaign"
    folder.mkdir()
    lines = FIXTURE.read_text().splitlines()
    header = json.loads(lines[0])
    del header["header"]["format"]
    (folder / JOURNAL_NAME).write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert Journal.read(folder / JOURNAL_NAME).header.format == 1


def test_a_format_1_journal_written_by_the_previous_autolab_reads_and_resumes(
        tmp_path: Path) -> None:
    assert json.loads(FIXTURE.read_text().splitlines()[0])["header"]["format"] == 1
    folder = tmp_path / "campaign"
    folder.mkdir()
    shutil.copy(FIXTURE, folder / JOURNAL_NAME)
    state = Journal.read(folder / JOURNAL_NAME)
    assert state.header.format == 1
    assert [t.index for t in state.trials] == [0, 2]
    assert [(e["index"], e["device"]) for e in state.rig_events] == [(1, "solvent_valve")]
    result = Campaign.resume(folder).run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    after = Journal.read(folder / JOURNAL_NAME)
    assert after.header.format == 1  # the header stays as written (append-only)
    assert [t.index for t in after.trials] == [0, 2, 3, 4]


def test_resume_of_a_format_1_journal_after_a_rig_event_is_exact(tmp_path: Path) -> None:
    cfg = _cfg()
    executor = SimulatedExecutor(TwinConfig(), seed=cfg.seed)

    def after_trial(c: Campaign, trial: Any) -> None:
        if len(c.trials) == 1:
            executor.session.monitor.report(VALVE_TURNED)
        if len(c.trials) == 2:
            c.request_stop()

    stopped = Campaign.create(cfg, tmp_path / "runs", executor=executor, forecast=False,
                              on_trial=after_trial).run()
    path = stopped.run_dir / JOURNAL_NAME
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["header"]["format"] = 1
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert Journal.read(path).header.format == 1
    result = Campaign.resume(stopped.run_dir,
                             executor=SimulatedExecutor(TwinConfig(), seed=cfg.seed)).run()
    reference = Campaign.create(cfg, tmp_path / "ref", forecast=False,
                                executor=SimulatedExecutor(TwinConfig(), seed=cfg.seed)).run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    _assert_same_trials(result.trials, reference.trials)
