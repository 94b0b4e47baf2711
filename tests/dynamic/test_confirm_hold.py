"""A confirming hold reads a promising proposal's own fluid (``dynamic.confirm_hold``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest

from autolab.campaign import Campaign
from autolab.config import CampaignConfig, load_campaign, parse_campaign
from autolab.dynamic import DynamicObservation
from autolab.dynamic.confirm import CONFIRM_RULES, confirm_due, last_accepted
from autolab.dynamic_config import CONFIRM_HOLDS, DynamicConfig
from autolab.dynamic_step import dynamic_runner
from autolab.exceptions import ConfigError
from autolab.records import Conditions, TrialStatus
from autolab.tracking import Journal

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "campaigns" / "target_550nm_dynamic.yaml"
A = Conditions(t_core_c=185, tau_core_min=15, t_shell_c=270, tau_shell_min=20, cl_to_i=2,
               s_to_zn=2, p_to_in=3.6)


def _data(**dynamic: object) -> dict[str, Any]:
    data = load_campaign(CAMPAIGN).model_dump(mode="json")
    data["stop"] = {"target_reached": False}
    data["tracking"] = {"enabled": False}
    data["optimizer"] = {"kind": "botorch", "settings": {"n_init": 6, "device": "cpu"}}
    data["dynamic"] = {**data["dynamic"], **dynamic}
    return data


def _config(budget: int, **dynamic: object) -> CampaignConfig:
    data = _data(**dynamic)
    data["budget"] = {"max_experiments": budget}
    return parse_campaign(data, "test")


def _reading(pl: float, qy: float, *, accepted: bool = True) -> DynamicObservation:
    sigma = {"pl_peak_nm": 0.3, "fwhm_nm": 0.6, "qy": 0.004}
    return DynamicObservation(
        time_min=0.0, conditions=A, spread={},
        features={"pl_peak_nm": pl, "fwhm_nm": 40.0, "qy": qy}, sigma=sigma,
        sigma_measurement=sigma, sigma_mapping=dict.fromkeys(sigma, 0.0),
        weight=1.0 if accepted else 0.0, accepted=accepted, steady=False, before_start=0.0)


def test_the_rules_read_the_last_accepted_reading() -> None:
    objective = _config(1).objective
    in_band, out = _reading(550.5, 0.4), _reading(530.0, 0.6)
    refused_in_band = _reading(550.0, 0.9, accepted=False)
    assert last_accepted([in_band, out, refused_in_band]) is out
    assert last_accepted([refused_in_band]) is None
    # the latest accepted fluid decides, not the brightest or an earlier reading
    assert not confirm_due("in_band", [in_band, out, refused_in_band], objective, None)
    assert confirm_due("in_band", [out, in_band], objective, None)
    assert not confirm_due("off", [out, in_band], objective, None)
    assert not confirm_due("in_band", [], objective, None)
    # beats_best: in band, and better than the best in-band trial before the step
    score = objective.score({"pl_peak_nm": 550.5, "fwhm_nm": 40.0, "qy": 0.4})
    assert confirm_due("beats_best", [in_band], objective, None)
    assert confirm_due("beats_best", [in_band], objective, score - 0.01)
    assert not confirm_due("beats_best", [in_band], objective, score)
    assert not confirm_due("beats_best", [out], objective, None)


def test_the_setting_is_validated_naming_it() -> None:
    assert set(CONFIRM_RULES) == set(CONFIRM_HOLDS) == set(
        get_args(DynamicConfig.model_fields["confirm_hold"].annotation))
    assert DynamicConfig().confirm_hold == "off"
    with pytest.raises(ConfigError, match="confirm_hold"):
        parse_campaign(_data(confirm_hold="sometimes"), "test")
    # the hold lasts the hold time: without one it would read nothing new
    with pytest.raises(ConfigError, match=r"confirm_hold: in_band .* no hold is set"):
        parse_campaign(_data(confirm_hold="in_band", hold_residence_times=0, hold_min=0,
                             hold_at="end", jump_limit="full_weight"), "test")


def _distance(config: CampaignConfig, a: dict[str, float], b: dict[str, float]) -> float:
    """Largest difference over the searched parameters, as a fraction of each range."""
    space = config.space.build()
    return max(abs(a[n] - b[n]) / (space[n].upper - space[n].lower) for n in space.names)


def test_a_promising_step_is_followed_by_a_hold_at_its_proposal_that_reads_it(
        tmp_path: Path) -> None:
    # every reading in a band of +-200 nm: each asked step is promising, so the steps go
    # ask (settle), hold, ask, hold, ask, on the twin with the real BoTorch optimizer
    data = _data(confirm_hold="in_band")
    data["budget"] = {"max_experiments": 5}
    data["objective"]["terms"][0]["tolerance"] = 200
    config = parse_campaign(data, "test")
    result = Campaign.create(config, tmp_path / "runs").run()
    state = Journal.read(result.run_dir / "journal.jsonl")
    dyn = [state.extras[t.index]["dynamic"] for t in state.trials]
    assert all(t.status is TrialStatus.COMPLETED for t in state.trials)
    assert [d["confirm_hold"] for d in dyn] == [False, True, False, True, False]
    assert not any(d["hold_unread"] for d in dyn)
    for k in (1, 3):
        end = Conditions.from_mapping(dyn[k - 1]["trajectory"]["points"][-1])
        points = {Conditions.from_mapping(p) for p in dyn[k]["trajectory"]["points"]}
        assert points == {end}  # no ramp, nothing asked: a hold where the reactor was
        assert dyn[k]["trajectory"]["times_min"][-1] == pytest.approx(
            0.7 * (end.tau_core_min + end.tau_shell_min))
        assert dyn[k]["proposal"] == pytest.approx(dyn[k - 1]["proposal"])
    # the hold's trial reading sits at the proposal; the ramp's sat on the way to it
    asked, held = state.trials[2], state.trials[3]
    proposal = dyn[2]["proposal"]
    near = _distance(config, held.conditions, proposal)
    assert near < _distance(config, asked.conditions, proposal)
    assert near < 0.02

    # the decision replays from the journal: a runner of the resumed campaign, given each
    # step's history of trials and a known position, decides as the live one did
    resumed = Campaign.resume(result.run_dir)
    runner = dynamic_runner(resumed)
    # the position is rebuilt from the journal (the last trajectory's end), as the live one
    assert runner.position == Conditions.from_mapping(dyn[-1]["trajectory"]["points"][-1])
    runner.position = None  # after a fault, or on a rig that stopped feeding: ask
    assert not runner.confirms()
    runner.position = A
    for k in range(1, len(state.trials)):
        resumed.trials = list(state.trials[:k])
        assert runner.confirms() is dyn[k]["confirm_hold"], k
