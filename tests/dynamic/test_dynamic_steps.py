"""A dynamic campaign tells each streamed reading with its trajectory as its step (BoTorch)."""

from __future__ import annotations

import itertools
from pathlib import Path

from autolab.campaign import Campaign
from autolab.config import CampaignConfig, load_campaign, parse_campaign
from autolab.optimizer import BotorchOptimizer
from autolab.tracking import Journal

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
    campaign = Campaign.create(config, tmp_path / "runs")

    def stop_after_two(c: Campaign, trial: object) -> None:
        if len(c.trials) == 2:
            c.request_stop()

    campaign.on_trial = stop_after_two
    campaign.run()
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
