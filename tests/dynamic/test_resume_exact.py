"""Resuming a dynamic campaign continues it exactly (README, "Crash safety").

The steady campaigns' test (tests/test_campaign.py) resumes in-process after every trial and
compares with the uninterrupted run; here the shipped dynamic campaign (the default optimizer,
which passes the fluid still in the tanks as pending) is stopped at a step boundary after its
first ramp, resumed from the journal alone (a fresh process's optimizer, executor and runner),
and must propose, plan and read what the uninterrupted campaign did.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autolab.campaign import Campaign
from autolab.config import CampaignConfig, load_campaign, parse_campaign
from autolab.tracking import Journal

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "campaigns" / "target_550nm_dynamic.yaml"
#: Trajectories in all, and the step boundary the campaign is interrupted at (after the first
#: ramp, exp-001: the reviewer's Ctrl-C).
TOTAL, STOP_AFTER = 4, 2


def _config() -> CampaignConfig:
    data = load_campaign(CAMPAIGN).model_dump(mode="json")
    data["budget"] = {"max_experiments": TOTAL}
    data["stop"] = {"target_reached": False}
    data["tracking"] = {"enabled": False}
    data["seed"] = 2
    return parse_campaign(data, "test")


def _steps(campaign: Campaign, n: int) -> None:
    for _ in range(n):
        assert campaign.step() is not None
    campaign.journal.close()  # as a killed process leaves it: no shutdown journaled


def _record(run_dir: Path) -> list[dict[str, Any]]:
    """What each step did: its proposal, its planned and realized ramp, its trial and readings."""
    state = Journal.read(run_dir / "journal.jsonl")
    out = []
    for trial in state.trials:
        extra = state.extras[trial.index]
        dyn = extra["dynamic"]
        out.append({
            "started": state.started[trial.index].conditions,
            "proposal": dyn["proposal"], "trajectory": dyn["trajectory"],
            "realized": dyn["realized"], "settled": dyn["settled"],
            "observations": dyn["observations"], "status": trial.status,
            "conditions": trial.conditions,
            "features": None if trial.features is None else asdict(trial.features),
            "reagent_ml": extra["executor_state"]["reagent_ml"],
            "clock_min": extra["executor_state"]["clock_min"]})
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    campaign = Campaign.create(_config(), tmp_path_factory.mktemp("whole"), forecast=False)
    _steps(campaign, TOTAL)
    return _record(campaign.run_dir)


def test_a_dynamic_campaign_resumed_at_a_step_boundary_continues_exactly(
        tmp_path: Path, uninterrupted: list[dict[str, Any]]) -> None:
    config = _config()
    campaign = Campaign.create(config, tmp_path, forecast=False)
    _steps(campaign, STOP_AFTER)
    resumed = Campaign.resume(campaign.run_dir)  # a fresh executor, optimizer and runner
    _steps(resumed, TOTAL - STOP_AFTER)
    got = _record(campaign.run_dir)
    assert len(got) == TOTAL
    # the resumed steps ramp on from where the reactor was (no settle), as the whole run did
    assert not got[STOP_AFTER]["settled"] and got[STOP_AFTER]["observations"]
    for k, (a, b) in enumerate(zip(got, uninterrupted, strict=True)):
        np.testing.assert_equal(a, b, err_msg=f"exp-{k:03d} differs from the uninterrupted run")


def test_a_dynamic_trial_reports_its_readings_first_exciton(
        uninterrupted: list[dict[str, Any]]) -> None:
    """The report's "1st exciton" column: the representative frame's own absorption peak, blue
    of its emission (it was NaN for every dynamic trial)."""
    for step in uninterrupted:
        f = step["features"]
        assert np.isfinite(f["abs_peak_nm"]) and np.isfinite(f["abs_peak_nm_err"])
        assert f["pl_peak_nm"] - 80 < f["abs_peak_nm"] < f["pl_peak_nm"], f
