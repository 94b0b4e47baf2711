"""A dynamic campaign tells each streamed reading with its trajectory as its step (BoTorch)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from pydantic import ValidationError

from autolab.campaign import Campaign
from autolab.config import CampaignConfig, load_campaign, parse_campaign
from autolab.dynamic_config import DynamicConfig
from autolab.dynamic_step import dynamic_runner, steps_since_best
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.steps import MIN_IMPROVEMENT
from autolab.records import Features, Trial, TrialStatus
from autolab.tracking import Journal

from .test_dynamic_campaign import run_two_steps

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "campaigns" / "target_550nm_dynamic.yaml"


def _config() -> CampaignConfig:
    data = load_campaign(CAMPAIGN).model_dump(mode="json")
    data["budget"] = {"max_experiments": 3}
    data["stop"] = {"target_reached": False}
    data["tracking"] = {"enabled": False}
    data["optimizer"] = {"kind": "botorch", "settings": {"n_init": 6, "device": "cpu"}}
    return parse_campaign(data, "test")


def test_each_reading_is_told_with_its_trajectory_and_a_resume_tells_the_same_steps(
        tmp_path: Path) -> None:
    config = _config()
    campaign = run_two_steps(config, tmp_path / "runs")
    live = campaign.optimizer
    assert isinstance(live, BotorchOptimizer)
    state = Journal.read(campaign.run_dir / "journal.jsonl")
    indices = [t.index for t in state.trials]
    # one step per trajectory, in order, each holding every reading told for it
    assert [k for k, _ in itertools.groupby(live.steps)] == indices
    assert len(live.steps) == len(live.observations) > len(indices)
    told = {i: sum(1 for s in live.steps if s == i) for i in indices}
    assert told[indices[1]] > 1  # the ramp's readings: tens of them, one step
    saved = live.state_dict()
    assert saved["steps"] == list(live.steps)

    resumed = Campaign.resume(campaign.run_dir)
    again = resumed.optimizer
    assert isinstance(again, BotorchOptimizer)
    assert again.steps == live.steps
    assert again.state_dict()["steps"] == saved["steps"]
    assert again.state_dict()["observations"] == saved["observations"]


def test_steps_since_best_counts_the_steps_after_the_best_in_band_value() -> None:
    assert steps_since_best([None, None]) is None  # nothing in band yet: no stall
    assert steps_since_best([None, 0.2, 0.1, None]) == 2
    assert steps_since_best([0.2, 0.3]) == 0
    # a gain within the relative threshold is read noise, not an improvement
    assert steps_since_best([0.5, 0.5 * (1 + MIN_IMPROVEMENT / 2)]) == 1


@pytest.mark.parametrize("value", [-1, 2.5, "3", True])
def test_a_bad_thompson_after_stall_is_refused_naming_it(value: object) -> None:
    with pytest.raises(ValidationError, match="thompson_after_stall"):
        DynamicConfig.model_validate({"thompson_after_stall": value})


def _measured(index: int, pl: float, qy: float,
              status: TrialStatus = TrialStatus.COMPLETED) -> Trial:
    feats = Features(pl_peak_nm=pl, fwhm_nm=50.0, qy=qy, abs_peak_nm=520.0)
    return Trial(index=index, conditions={}, status=status, features=feats)


def test_a_stalled_in_band_search_asks_with_nothing_pending_and_the_journal_says_so(
        tmp_path: Path) -> None:
    data = _config().model_dump(mode="json")
    data["dynamic"]["thompson_after_stall"] = 2
    campaign = Campaign.create(parse_campaign(data, "test"), tmp_path / "runs")
    runner = dynamic_runner(campaign)
    trials = [_measured(0, 520.0, 0.3), _measured(1, 550.0, 0.3)]
    campaign.trials = list(trials)
    assert not runner.stalled()  # the best in-band trial is the last one
    campaign.trials += [_measured(2, 550.5, 0.2), _measured(3, 530.0, 0.6, TrialStatus.INVALID)]
    assert not runner.stalled()  # one step since (an invalid trial is no step)
    campaign.trials.append(_measured(4, 520.0, 0.6))
    assert runner.stalled()  # two steps since the best in band
    campaign.trials.append(_measured(5, 549.0, 0.5))
    assert not runner.stalled()  # a brighter in-band trial: back to the band-first EI
    campaign.trials[-1] = _measured(5, 600.0, 0.5)
    assert runner.stalled()
    # the step asks with nothing pending and the journal records it
    trial = runner.step()
    record = Journal.read(campaign.run_dir / "journal.jsonl").extras[trial.index]["dynamic"]
    assert record["asked_stalled"] is True
    off = _config()
    assert off.dynamic is not None and off.dynamic.thompson_after_stall == 0
    assert not dynamic_runner(Campaign.create(off, tmp_path / "off")).stalled()
