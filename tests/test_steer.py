"""A chemist in the loop: review (terminal and file), outside results, invalidate after the fact.

Everything runs the real campaign loop on the digital twin with real optimizers and the real
journal; only the chemist is scripted.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autolab.campaign import JOURNAL_NAME, Campaign, StopReason
from autolab.cli import app
from autolab.config import CampaignConfig, parse_campaign
from autolab.exceptions import ConfigError, JournalError
from autolab.records import TrialStatus
from autolab.steer import (
    FileReviewer,
    TerminalReviewer,
    add_results,
    decide,
    invalidate,
    parse_experiment,
    proposal_path,
)
from autolab.tracking import Journal
from autolab.tracking.base import experiment_metrics

ROOT = Path(__file__).parent.parent
BASE = yaml.safe_load((ROOT / "campaigns" / "target_550nm.yaml").read_text())


def _config(budget: int = 4, kind: str = "sobol", **extra: Any) -> CampaignConfig:
    data = copy.deepcopy(BASE)
    data["budget"] = {"max_experiments": budget}
    data["optimizer"] = {"kind": kind, "settings": {"n_init": 2} if kind == "botorch" else {}}
    data["stop"] = {"target_reached": False}
    data["tracking"] = {"enabled": False}
    data.update(extra)
    return parse_campaign(data)


class Script:
    """A chemist at the terminal who answers from a list, and can walk away (crash) mid-list."""

    def __init__(self, answers: list[str], crash_at: int | None = None) -> None:
        self.answers = list(answers)
        self.crash_at = crash_at
        self.asked = 0
        self.shown: list[str] = []

    def ask(self, prompt: str) -> str:
        if self.crash_at is not None and self.asked == self.crash_at:
            raise KeyboardInterrupt  # the process dies in the middle of a review
        self.asked += 1
        return self.answers.pop(0)

    def reviewer(self) -> TerminalReviewer:
        return TerminalReviewer("alice", ask=self.ask, show=self.shown.append)


# ------------------------------------------------------------------ terminal review
def test_terminal_review_approves_edits_and_rejects_and_journals_everything(
        tmp_path: Path) -> None:
    cfg = _config(budget=3)
    script = Script(["a",  # exp-000 approved
                     "r", "", "pump cannot do that ratio",  # rejected (empty reason re-asked)
                     "e", "t_core_c=999", "t_core_c=185", "colder core",  # exp-001 edited
                     "approve"])  # exp-002
    campaign = Campaign.create(cfg, tmp_path / "runs", reviewer=script.reviewer())
    result = campaign.run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    assert script.answers == []
    assert any(line.startswith("proposal for exp-000") for line in script.shown)
    assert any("not allowed: t_core_c=999" in line for line in script.shown)  # re-asked

    state = Journal.read(result.run_dir / JOURNAL_NAME)
    decisions = [(r["index"], r["decision"]) for r in state.reviews]
    assert decisions == [(0, "approve"), (1, "reject"), (1, "edit"), (2, "approve")]
    rejected = state.reviews[1]
    assert rejected["reviewer"] == "alice" and rejected["reason"] == "pump cannot do that ratio"
    assert rejected["conditions"] is None and rejected["time"]
    assert [t.index for t in state.trials] == [0, 1, 2]  # a rejection uses no experiment
    edited = state.extras[1]
    assert edited["origin"] == "edited" and edited["decision"] == "edit"
    assert edited["reason"] == "colder core" and edited["reviewer"] == "alice"
    assert state.trials[1].conditions["t_core_c"] == 185
    assert edited["proposed"]["t_core_c"] != 185
    assert state.extras[0]["origin"] == "proposed"

    # the rejection was told as an infeasible point, where it happened, and not run
    obs = campaign.optimizer.observations
    assert len(obs) == 4
    assert obs[1].failed
    assert obs[1].conditions == pytest.approx(
        {k: rejected["proposed"][k] for k in cfg.space.parameters})
    resumed = Campaign.resume(result.run_dir)
    assert resumed.optimizer.observations == obs  # resume re-tells it at the same place
    resumed.journal.close()


#: exp-000 approved; exp-001 rejected with a reason, then its next proposal approved; exp-002
#: (a model proposal) edited. Each of the three runs below ends there: the crashes are in the
#: reviews of exp-001 and exp-002, and the proposals after them (exp-001 again, exp-002) are
#: what a resume must reproduce. A fourth experiment (the budget was 4) ran after every crash
#: and review was over: three more BoTorch asks and experiments that resumed nothing.
ANSWERS = ["a", "r", "too hot for the seals", "a", "e", "s_to_zn=2.0", ""]


def _review_run(root: Path, script: Script) -> Campaign:
    return Campaign.create(_config(budget=3, kind="botorch"), root, reviewer=script.reviewer())


def test_crash_in_the_middle_of_a_review_resumes_exactly(tmp_path: Path) -> None:
    script = Script(list(ANSWERS))
    reference = _review_run(tmp_path / "ref", script)
    want = reference.run()
    assert script.answers == []  # every review above was asked
    want_state = Journal.read(want.run_dir / JOURNAL_NAME)

    for crash_at in (2, 5):  # while asking why (a rejection), and while asking for an edit
        script = Script(list(ANSWERS), crash_at=crash_at)
        campaign = _review_run(tmp_path / f"crash{crash_at}", script)
        with pytest.raises(KeyboardInterrupt):
            campaign.run()
        run_dir = campaign.run_dir
        rest = Script(list(ANSWERS))  # the chemist is asked that proposal again, from its start
        rest.answers = rest.answers[_start_of_review(crash_at):]
        Campaign.resume(run_dir, reviewer=rest.reviewer()).run()
        got = Journal.read(run_dir / JOURNAL_NAME)
        assert [(r["index"], r["decision"], r["proposed"]) for r in got.reviews] == [
            (r["index"], r["decision"], r["proposed"]) for r in want_state.reviews]
        assert [t.conditions for t in got.trials] == [t.conditions for t in want_state.trials]
        assert [t.status for t in got.trials] == [t.status for t in want_state.trials]


def _start_of_review(crash_at: int) -> int:
    """Index in ANSWERS of the first answer of the review that was cut off."""
    starts = [0, 1, 3, 4]  # a | r why | a | e values reason
    return max(s for s in starts if s <= crash_at)


# ------------------------------------------------------------------ file review
def _file_config(budget: int = 2) -> CampaignConfig:
    return _config(budget=budget, review={"mode": "file"})


def test_file_review_waits_then_runs_what_was_decided(tmp_path: Path) -> None:
    campaign = Campaign.create(_file_config(), tmp_path / "runs")
    assert isinstance(campaign.reviewer, FileReviewer)
    events: list[str] = []
    campaign.on_event = events.append
    result = campaign.run()
    run_dir = result.run_dir
    assert result.stop_reason is StopReason.WAITING
    assert result.trials == []
    path = proposal_path(run_dir, 0)
    assert path.name == "exp-000.yaml"
    assert any("exp-000 is waiting for a decision" in e and "autolab decide" in e for e in events)
    pending = yaml.safe_load(path.read_text())
    assert pending["decision"] is None and set(pending["proposed"]) >= {"t_core_c", "p_to_in"}
    state = Journal.read(run_dir / JOURNAL_NAME)
    assert state.stopped_reason == StopReason.WAITING.value and state.in_flight == []

    # resuming without a decision waits again, with the same proposal
    assert Campaign.resume(run_dir).run().stop_reason is StopReason.WAITING
    assert yaml.safe_load(path.read_text())["proposed"] == pending["proposed"]

    with pytest.raises(ConfigError, match="reason"):
        decide(run_dir, "exp-000", "reject")
    with pytest.raises(ConfigError, match="t_core_c"):
        decide(run_dir, 0, "edit", conditions={"t_core_c": 900.0})
    with pytest.raises(ConfigError, match="no proposal file for exp-007"):
        decide(run_dir, "exp-007", "approve")
    decide(run_dir, "exp-000", "edit", conditions={"t_core_c": 190.0}, reason="seen it work",
           reviewer="bob")
    result = Campaign.resume(run_dir).run()
    assert result.stop_reason is StopReason.WAITING  # exp-001 waits now
    assert result.trials[0].conditions["t_core_c"] == 190
    state = Journal.read(run_dir / JOURNAL_NAME)
    assert state.reviews[-1]["reviewer"] == "bob" and state.reviews[-1]["decision"] == "edit"
    assert state.extras[0]["origin"] == "edited"

    # a rejection in the file: the next proposal for exp-001 replaces the file and waits
    first = yaml.safe_load(proposal_path(run_dir, 1).read_text())["proposed"]
    decide(run_dir, "exp-001", "reject", reason="clogs at that residence time")
    assert Campaign.resume(run_dir).run().stop_reason is StopReason.WAITING
    second = yaml.safe_load(proposal_path(run_dir, 1).read_text())
    assert second["proposed"] != first and second["decision"] is None
    decide(run_dir, "exp-001", "approve")
    result = Campaign.resume(run_dir).run()
    assert result.stop_reason is StopReason.MAX_EXPERIMENTS
    assert [t.index for t in result.trials] == [0, 1]


def test_cli_review_file_exits_3_waiting_and_decide_then_resume(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    data = copy.deepcopy(BASE)
    data.update(budget={"max_experiments": 1}, optimizer={"kind": "sobol", "settings": {}},
                tracking={"enabled": False})
    path.write_text(yaml.safe_dump(data))
    runner = CliRunner()
    runs = tmp_path / "runs"
    out = runner.invoke(app, ["run", str(path), "--runs-dir", str(runs), "--review", "file"])
    assert out.exit_code == 3, out.output
    assert "waiting for a decision" in out.output
    run_dir = next(runs.iterdir())
    bad = runner.invoke(app, ["decide", str(run_dir), "exp-000", "edit", "t_core_c=hot"])
    assert bad.exit_code == 2
    ok = runner.invoke(app, ["decide", str(run_dir), "exp-000", "approve", "--reviewer", "carol"])
    assert ok.exit_code == 0, ok.output
    done = runner.invoke(app, ["resume", str(run_dir)])  # the journal remembers --review
    assert done.exit_code == 0, done.output
    assert Journal.read(run_dir / JOURNAL_NAME).reviews[0]["reviewer"] == "carol"


def test_an_unknown_review_mode_is_refused_naming_the_flag_before_anything_runs(
        tmp_path: Path) -> None:
    from autolab.cli_steer import REVIEW_MODES
    from autolab.steer import REVIEWERS

    assert set(REVIEW_MODES) == {"off", *REVIEWERS}  # the flag's list is the registry's
    out = CliRunner().invoke(app, ["run", str(tmp_path / "none.yaml"), "--review", "maybe"])
    assert out.exit_code == 2
    assert "--review" in out.output and "campaign" not in out.output.lower()
    missing = CliRunner().invoke(app, ["invalidate", str(tmp_path), "exp-000"])
    assert missing.exit_code == 2 and "--reason" in missing.output


# ------------------------------------------------------------------ outside results
HEADER = "t_core_c,tau_core_min,t_shell_c,tau_shell_min,cl_to_i,s_to_zn,pl_peak_nm,fwhm_nm,qy"


def test_adding_results_while_a_proposal_waits_withdraws_it_and_old_numbers_are_refused(
        tmp_path: Path) -> None:
    data = _config(budget=2)
    result = Campaign.create(data, tmp_path / "runs", reviewer=FileReviewer("erin")).run()
    assert result.stop_reason is StopReason.WAITING
    run_dir = result.run_dir
    waiting = proposal_path(run_dir, 0)
    shown = yaml.safe_load(waiting.read_text(encoding="utf-8"))["proposed"]
    assert all(float(f"{v:.6g}") == v for v in shown.values())  # readable, not 16 digits
    decided = tmp_path / "decided.yaml"  # a decision no resume has acted on: never thrown away
    decided.write_text(waiting.read_text(encoding="utf-8"), encoding="utf-8")
    decide(run_dir, "exp-000", "approve")
    csv_path = tmp_path / "flask.csv"
    csv_path.write_text(f"{HEADER}\n185,12,260,25,5,2,550.5,48,0.42\n")
    with pytest.raises(ConfigError, match="holds a decision"):
        add_results(run_dir, csv_path)
    waiting.write_text(decided.read_text(encoding="utf-8"), encoding="utf-8")  # undecided again
    (added,) = add_results(run_dir, csv_path)
    assert added.index == 0 and not waiting.exists()  # the manual row took exp-000
    assert "withdrawn" in Journal.read(run_dir / JOURNAL_NAME).notes[-1]
    with pytest.raises(ConfigError, match="already in the journal"):
        decide(run_dir, "exp-000", "approve")
    again = Campaign.resume(run_dir, reviewer=FileReviewer("erin")).run()  # proposes afresh
    assert again.stop_reason is StopReason.WAITING and proposal_path(run_dir, 1).exists()


def _finished(tmp_path: Path, budget: int = 3) -> Path:
    return Campaign.create(_config(budget=budget), tmp_path / "runs").run().run_dir


def test_add_validates_the_whole_file_first_and_names_row_and_column(tmp_path: Path) -> None:
    run_dir = _finished(tmp_path)
    before = (run_dir / JOURNAL_NAME).read_bytes()
    cases = {
        "qy": f"{HEADER}\n180,10,250,20,5,2,551,50,0.4\n180,10,250,20,5,2,551,50,40\n",
        "t_core_c": f"{HEADER}\n999,10,250,20,5,2,551,50,0.4\n",
        "fwhm_nm": f"{HEADER}\n180,10,250,20,5,2,551,wide,0.4\n",
        "colour": f"{HEADER},colour\n180,10,250,20,5,2,551,50,0.4,red\n",
        "p_to_in": f"{HEADER},p_to_in\n180,10,250,20,5,2,551,50,0.4,2.0\n",
    }
    for column, text in cases.items():
        csv_path = tmp_path / f"{column}.csv"
        csv_path.write_text(text)
        with pytest.raises(ConfigError) as err:
            add_results(run_dir, csv_path)
        assert column in str(err.value)
        if column in ("qy", "t_core_c", "fwhm_nm"):
            assert "row 3" in str(err.value) if column == "qy" else "row 2" in str(err.value)
        assert (run_dir / JOURNAL_NAME).read_bytes() == before  # nothing half-added


def test_added_results_are_manual_told_on_resume_and_do_not_use_the_budget(
        tmp_path: Path) -> None:
    run_dir = _finished(tmp_path, budget=3)
    csv_path = tmp_path / "flask.csv"
    csv_path.write_text(f"{HEADER},qy_err,note\n185,12,260,25,5,2,550.5,48,0.42,0.02,flask A\n"
                        "175,15,255,30,4,2.5,545,55,0.3,,flask B\n")
    added = add_results(run_dir, csv_path, by="dave")
    assert [t.index for t in added] == [3, 4]
    state = Journal.read(run_dir / JOURNAL_NAME)
    extra = state.extras[3]
    assert extra["origin"] == "manual" and extra["added_by"] == "dave"
    assert extra["source"] == "flask.csv, row 2" and extra["note"] == "flask A"
    assert experiment_metrics(state.trials[3], extra, state_objective(state))["in_band"] == 1.0
    assert state.trials[3].features.qy_err == pytest.approx(0.02)  # type: ignore[union-attr]
    assert state.untracked[-2:] == [3, 4]  # sync logs them like any experiment

    campaign = Campaign.resume(run_dir)
    assert len(campaign.optimizer.observations) == 5  # the manual rows are told
    assert campaign.best() is not None and campaign.best().index == 3  # type: ignore[union-attr]
    assert len(campaign.lab_trials()) == 3  # not counted against the budget
    campaign.journal.close()


# ------------------------------------------------------------------ invalidate
def test_invalidate_recomputes_best_and_resume_forgets_it(tmp_path: Path) -> None:
    run_dir = _finished(tmp_path, budget=4)
    campaign = Campaign.resume(run_dir)
    best = campaign.best()
    told = campaign.optimizer.observations
    campaign.journal.close()
    assert best is not None

    done = invalidate(run_dir, f"exp-{best.index:03d}", "syringe leak found", by="erin")
    assert done.trial.status is TrialStatus.INVALID
    assert done.best_before is not None and done.best_before.index == best.index
    assert done.best_after is None or done.best_after.index != best.index
    state = Journal.read(run_dir / JOURNAL_NAME)
    record = state.invalidated[best.index]
    assert record["by"] == "erin" and record["previous_status"] == "completed"
    assert record["reason"] == "syringe leak found"

    again = Campaign.resume(run_dir)
    assert len(again.optimizer.observations) == len(told) - 1
    assert again.best() is not best
    first = again.optimizer.observations
    again.journal.close()
    third = Campaign.resume(run_dir)  # resume stays exact
    assert third.optimizer.observations == first
    third.journal.close()

    with pytest.raises(ConfigError, match="invalid already"):
        invalidate(run_dir, best.index, "again")
    with pytest.raises(ConfigError, match="not a finished experiment"):
        invalidate(run_dir, "exp-042", "leak")
    with pytest.raises(ConfigError, match="reason"):
        invalidate(run_dir, 0, "  ")
    with pytest.raises(ConfigError, match="EXP"):
        invalidate(run_dir, "third", "leak")


def test_steering_a_running_campaign_is_refused(tmp_path: Path) -> None:
    campaign = Campaign.create(_config(budget=2), tmp_path / "runs")
    campaign.step()
    with pytest.raises(JournalError, match="open in another process"):
        invalidate(campaign.run_dir, 0, "leak")
    campaign.journal.close()


def test_cli_add_and_invalidate_exit_codes(tmp_path: Path) -> None:
    run_dir = _finished(tmp_path, budget=2)
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{HEADER}\n180,10,250,20,5,2,551,50,nope\n")
    out = runner.invoke(app, ["add", str(run_dir), str(bad)])
    assert out.exit_code == 2
    assert "row 2, column qy" in out.output and "nothing was added" in out.output
    good = tmp_path / "good.csv"
    good.write_text(f"{HEADER}\n180,10,250,20,5,2,551,50,0.4\n")
    out = runner.invoke(app, ["add", str(run_dir), str(good)])
    assert out.exit_code == 0, out.output
    assert "added exp-002 (manual)" in out.output
    out = runner.invoke(app, ["invalidate", str(run_dir), "exp-002", "--reason", "typo"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["invalidate", str(run_dir), "exp-099", "--reason", "typo"])
    assert out.exit_code == 2
    out = runner.invoke(app, ["invalidate", str(tmp_path / "nowhere"), "1", "--reason", "x"])
    assert out.exit_code == 4


@pytest.mark.parametrize(("text", "index"), [("exp-003", 3), ("3", 3), (" exp-120 ", 120)])
def test_experiment_names(text: str, index: int) -> None:
    assert parse_experiment(text) == index


def state_objective(state: Any) -> Any:
    return parse_campaign(state.header.config).objective


def test_review_decisions_are_shown_on_the_campaign_run_in_mlflow(tmp_path: Path,
                                                                  fresh_store: str) -> None:
    """Who decided what, when and why reaches MLflow, rejections included (they have no run)."""
    from mlflow.tracking import MlflowClient

    from autolab.tracking import MlflowTracker

    uri = fresh_store
    script = Script(["a", "r", "pump cannot do that ratio", "e", "t_core_c=185", "colder core"])
    campaign = Campaign.create(_config(budget=2), tmp_path / "runs", reviewer=script.reviewer(),
                               tracker=MlflowTracker(tracking_uri=uri, experiment_name="review"))
    result = campaign.run()
    assert result.tracking_run_id is not None
    client = MlflowClient(uri)
    run = client.get_run(result.tracking_run_id)
    assert run.data.metrics["n_rejected"] == 1
    assert run.data.metrics["n_edited"] == 1
    assert run.data.metrics["n_approved"] == 1
    path = client.download_artifacts(result.tracking_run_id, "summary/decisions.csv",
                                     str(tmp_path))
    rows = Path(path).read_text(encoding="utf-8").splitlines()
    assert rows[0].split(",")[:5] == ["experiment", "decision", "reviewer", "time", "reason"]
    rejected = next(r for r in rows[1:] if ",reject," in r)
    assert rejected.startswith("exp-001,reject,alice,")
    assert "pump cannot do that ratio" in rejected
    edited = next(r for r in rows[1:] if ",edit," in r)
    assert "colder core" in edited and "t_core_c=185" in edited

    from autolab.tracking.report import write_report  # the report shows the same table

    written = write_report(Journal.read(result.run_dir / JOURNAL_NAME), tmp_path / "report")
    table = next(p for p in written if p.name == "decisions.csv").read_text(encoding="utf-8")
    assert table.splitlines() == rows
