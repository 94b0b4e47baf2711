"""``hold_at: until_readable``: after a jump, the hold lasts until the mapping reads the cell.

The hold's length comes from the campaign's own mapping over the planned history (the RTD and
the spread limits), never from a constant: checked here against ``map_outlet`` directly, on a
planned step and on the steps of a campaign on the simulated rig.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autolab.campaign import Campaign
from autolab.config import CampaignConfig, load_campaign, parse_campaign
from autolab.dynamic import Trajectory, map_outlet
from autolab.dynamic_config import DynamicConfig
from autolab.dynamic_step import (
    UNREAD_HOLD_MAX_TAU,
    UNREAD_READ_FRAMES,
    DynamicRunner,
    dynamic_runner,
)
from autolab.executors.ramp import cascade_geometry
from autolab.records import Conditions
from autolab.tracking import Journal

from .test_dynamic_campaign import CAMPAIGN, A, campaign_data

#: 40 °C core and 30 °C shell from A: half of it is far beyond the 8 / 12 °C refusal limits.
FAR = Conditions(t_core_c=225, tau_core_min=15, t_shell_c=300, tau_shell_min=20, cl_to_i=2,
                 s_to_zn=2, p_to_in=3.6)
HELD_MIN = 300.0  # the reactor held A this long before the step: its tanks hold A's product


def _config(budget: int, **dynamic: object) -> CampaignConfig:
    return parse_campaign(campaign_data(budget, **{"archive_frames": False, **dynamic}), "test")


def _held_at_a(runner: DynamicRunner) -> None:
    """The reactor fed A for HELD_MIN minutes (a settle's steady state, then a long hold)."""
    runner.position = A
    runner.history.times_min, runner.history.points = [0.0, HELD_MIN], [A, A]


def _accepted(runner: DynamicRunner, traj: Trajectory, times: np.ndarray) -> list[bool]:
    """The mapping's verdict on readings at ``times`` (step minutes) of the history + ``traj``."""
    planned = Trajectory((0.0, *(HELD_MIN + t for t in traj.times_min)), (A, *traj.points))
    mapped = map_outlet(planned, HELD_MIN + times, cascade_geometry(runner._rig(), traj.points[-1]),
                        roles=runner._roles())
    return [runner.policy.accepts(mapped, i) for i in range(len(times))]


def test_after_a_jump_the_hold_ends_frames_after_the_mapping_accepts_the_cell(
        tmp_path: Path) -> None:
    config = _config(1, hold_at="until_readable")
    runner = dynamic_runner(Campaign.create(config, tmp_path / "plan"))
    _held_at_a(runner)
    traj, settle = runner._plan(FAR)
    assert settle is None and traj.points[-2:] == (FAR, FAR)  # ramp, then a hold at FAR
    legs_end, hold = traj.times_min[-2], traj.times_min[-1] - traj.times_min[-2]
    tau = FAR.tau_core_min + FAR.tau_shell_min
    dt = config.dynamic.frame_interval_min
    assert dt <= hold < UNREAD_HOLD_MAX_TAU * tau  # the cell clears within the cap
    # the mapping of the planned history refuses the cell's readings until the hold's last
    # UNREAD_READ_FRAMES frames, and accepts them from there on
    first = legs_end + hold - UNREAD_READ_FRAMES * dt
    grid = np.arange(legs_end, traj.duration_min + dt / 2, dt)
    verdict = dict(zip(np.round(grid, 6), _accepted(runner, traj, grid), strict=True))
    assert not any(ok for t, ok in verdict.items() if t < first - 1e-6)
    assert all(ok for t, ok in verdict.items() if t >= first - 1e-6)


def test_a_close_step_is_planned_as_with_after_jump(tmp_path: Path) -> None:
    near = Conditions.from_mapping({**A.as_dict(), "t_core_c": A.t_core_c + 4.0})
    plans = {}
    for hold_at in ("after_jump", "until_readable"):
        runner = dynamic_runner(Campaign.create(_config(1, hold_at=hold_at), tmp_path / hold_at))
        _held_at_a(runner)
        plans[hold_at] = runner._plan(near)
    assert plans["until_readable"] == plans["after_jump"]
    traj, _ = plans["until_readable"]
    hold = 0.7 * (near.tau_core_min + near.tau_shell_min)
    ramp_end = traj.times_min[traj.points.index(near)]
    assert traj.duration_min == pytest.approx(max(hold, ramp_end))


def test_jump_steps_of_a_campaign_end_reading_their_fluid(tmp_path: Path) -> None:
    config = _config(4, hold_at="until_readable")
    result = Campaign.create(config, tmp_path / "runs").run()
    state = Journal.read(result.run_dir / "journal.jsonl")
    policy = config.dynamic.policy()
    jumps = 0
    for trial in state.trials[1:]:  # the first settles at its proposal
        dyn = state.extras[trial.index]["dynamic"]
        tr = Trajectory.from_dict(dyn["trajectory"])
        if dyn["hold_unread"] or len(tr.points) < 3 or \
                policy.jump_keeps_accepted(tr.points[0], tr.points[1]):
            continue
        jumps += 1
        end = tr.points[-1]
        cap = UNREAD_HOLD_MAX_TAU * (end.tau_core_min + end.tau_shell_min)
        if tr.duration_min - tr.times_min[-2] >= cap - 1e-6:
            continue  # never readable within the cap
        # the last frames (the hold's) read the cell: accepted, and told
        last = dyn["observations"][-UNREAD_READ_FRAMES:]
        assert all(o["accepted"] for o in last), [o["reason"] for o in last]
    assert jumps >= 2  # Sobol proposals are far apart


@pytest.mark.parametrize(("patch", "needle"), [
    ({"hold_at": "until_readable", "hold_min": 0, "hold_residence_times": 0},
     "hold_at: until_readable places a hold, and no hold is set"),
    ({"hold_at": "until_readable", "hold_end": "steady"}, "both shorten the hold"),
    ({"hold_at": "until_readable", "plan": "between_proposals", "approach_min": 30.0},
     "hold_at: until_readable judges plan: approach"),
    ({"hold_at": "end", "jump_limit": "refusal"}, "jump_limit applies to hold_at: after_jump "
                                                  "or until_readable"),
])
def test_until_readable_is_validated_with_the_block(patch: dict[str, object],
                                                    needle: str) -> None:
    data = load_campaign(CAMPAIGN).model_dump(mode="json")["dynamic"]
    with pytest.raises(ValueError, match=needle):
        DynamicConfig.model_validate({**data, **patch})
    ok = DynamicConfig.model_validate({**data, "hold_at": "until_readable"})
    assert ok.hold_at == "until_readable" and ok.jump_limit == "refusal"
