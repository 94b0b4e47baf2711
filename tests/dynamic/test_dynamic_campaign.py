"""Dynamic experiments end to end (issue 10 §1-2): the ramp on the simulated rig, ``mode: dynamic``
campaigns from the API and the CLI, every streamed observation journaled, told and re-told on
resume.

The serial-rig side (a heater fault mid-ramp over ptys) is tests/hardware/test_dynamic_fault.py.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from typer.testing import CliRunner

from autolab.analysis import extract_features_batch
from autolab.campaign import Campaign
from autolab.cli import app
from autolab.config import CampaignConfig, load_campaign, parse_campaign
from autolab.dynamic import (
    DynamicObservation,
    MappingPolicy,
    RampLimits,
    Trajectory,
    map_outlet,
    observe_batch,
    plan_ramp,
)
from autolab.dynamic_config import AFTER_UNREAD, HOLD_AT, DynamicConfig
from autolab.dynamic_step import (
    HOLD_PLACES,
    JUMP_LIMITS,
    MAX_UNREAD_HOLDS,
    UNREAD_HOLD_MAX_TAU,
    dynamic_runner,
    joined,
)
from autolab.exceptions import ConditionsError, ConfigError
from autolab.executors.ramp import DynamicMeasurement, cascade_geometry
from autolab.executors.simulated import SimulatedExecutor
from autolab.optimizer import make_optimizer
from autolab.records import Conditions, TrialStatus
from autolab.tracking import Journal

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = ROOT / "campaigns" / "target_550nm_dynamic.yaml"
A = Conditions(t_core_c=185, tau_core_min=15, t_shell_c=270, tau_shell_min=20, cl_to_i=2,
               s_to_zn=2, p_to_in=3.6)
B = Conditions(t_core_c=195, tau_core_min=15, t_shell_c=285, tau_shell_min=20, cl_to_i=2,
               s_to_zn=2, p_to_in=3.6)
LIMITS = RampLimits.for_reactor(heating_c_per_min=10, cooling_c_per_min=5)


def _observed(ex: SimulatedExecutor, m: DynamicMeasurement) -> tuple[DynamicObservation, ...]:
    st = m.stacked()
    f0 = m.frames[0]
    batch = extract_features_batch(
        st["wavelengths_nm"], pl_counts=st["pl_counts"], dark_pl_counts=st["dark_pl_counts"],
        dye_pl_counts=st["dye_pl_counts"], sample_counts=st["sample_counts"],
        blank_counts=st["blank_counts"], dark_abs_counts=st["dark_abs_counts"],
        excitation_nm=f0.excitation_nm, saturation_counts=f0.saturation_counts,
        qy_reference=ex.twin.qy_reference)
    mapped = map_outlet(m.realized, m.times_min, cascade_geometry(ex.session, A))
    return observe_batch(mapped, batch)


def test_a_ramp_on_the_simulated_rig_streams_readings_that_match_the_truth() -> None:
    """Settle at the first point, ramp at the mapping's full-weight rates, one frame set per
    minute; the mapped readings match the twin's steady truth (>= 90 % within 2 sigma; 100 %
    measured on this seed)."""
    ex = SimulatedExecutor(seed=3)
    caps = MappingPolicy().rate_caps(A, cascade_geometry(ex.session, A))
    ramp = plan_ramp(A, B, LIMITS.tightened(caps), hold_end_min=20)
    m = ex.run_trajectory(ramp, LIMITS, frame_interval_min=1.0)
    assert m.settled and m.complete and m.settle_waits is not None
    assert len(m.frames) == len(m.times_min) == int(np.ceil(ramp.duration_min)) + 1
    assert m.times_min[0] == 0.0 and m.times_min[-1] == pytest.approx(ramp.duration_min)
    assert m.lab_hours * 60 == pytest.approx(ramp.duration_min)
    assert m.reagent_ml["phosphine"] > 0
    # the realized temperatures are the blocks' process values: they lag the commanded ramp
    t = m.realized.times_min
    mid = len(t) // 2
    assert m.realized.values("t_core_c", np.array([t[mid]]))[0] < ramp.at(t[mid]).t_core_c
    obs = _observed(ex, m)
    accepted = [o for o in obs if o.accepted]
    assert len(accepted) >= 0.9 * len(obs)
    # truth where the rig really was: the simulated rig scatters its setpoints per settle (a
    # thermocouple offset, a pump calibration), which no reading can see, steady or not
    where = ex.rig.reactor.realize
    assert where is not None
    z = [abs(o.features["pl_peak_nm"] - ex.twin.truth(where(o.conditions)).pl_peak_nm)
         / o.sigma["pl_peak_nm"] for o in accepted]
    assert np.mean(np.array(z) < 2) >= 0.9
    # the next trajectory continues from where this one ended: no settle, no lost lab time
    clock = ex.lab_clock_h
    back = ex.run_trajectory(Trajectory((0.0, 10.0), (B, B)), LIMITS, frame_interval_min=2.0)
    assert not back.settled and back.started_lab_h == pytest.approx(clock)
    assert len(back.frames) == 6


def test_a_ramp_faster_than_the_heaters_is_refused_before_anything_moves() -> None:
    ex = SimulatedExecutor(seed=0)
    too_fast = Trajectory((0.0, 1.0), (A, B))  # 10 C/min core and 15 C/min shell heating
    with pytest.raises(ConditionsError, match="t_shell_c") as info:
        ex.run_trajectory(too_fast, LIMITS, frame_interval_min=1.0)
    assert "faster than the devices can follow" in str(info.value)
    assert ex.lab_clock_h == 0.0 and ex.run_index == 0
    with pytest.raises(ConfigError, match="frame_interval_min"):
        ex.run_trajectory(Trajectory((0.0, 10.0), (A, A)), LIMITS, frame_interval_min=0.0)


def test_hold_and_jump_registries_match_their_settings() -> None:
    fields = DynamicConfig.model_fields
    assert set(get_args(fields["after_unread"].annotation)) == set(AFTER_UNREAD)
    assert set(HOLD_PLACES) == set(get_args(fields["hold_at"].annotation)) == set(HOLD_AT)
    assert set(JUMP_LIMITS) == set(get_args(fields["jump_limit"].annotation))


def test_the_dynamic_block_is_validated_whole() -> None:
    cfg = load_campaign(CAMPAIGN)
    assert cfg.mode == "dynamic" and cfg.dynamic.frame_interval_min == 1.0
    policy = DynamicConfig.model_validate(
        {"mapping": {"spread_limits": {"t_core_c": [1, 4]}}}).policy()
    assert policy.limit("t_core_c").refuse_above == 4  # type: ignore[union-attr]
    bad: list[tuple[dict[str, Any], str]] = [
           ({"mode": "dynamic", "dynamic": {"frame_interval_min": 0}}, "frame_interval_min"),
           ({"dynamic": {"ramp_limits": {"heating_c_per_min": -1}}}, "heating_c_per_min"),
           ({"dynamic": {"mapping": {"spread_limits": {"t_cor_c": [1, 2]}}}}, "t_cor_c"),
           ({"dynamic": {"mapping": {"spread_limits": {"t_core_c": [4, 2]}}}}, "t_core_c"),
           ({"dynamic": {"plan": "zigzag"}}, "plan"), ({"mode": "ramp"}, "mode"),
           ({"dynamic": {"sweep": {"n_points": 2}}}, "plan: sweep"),
           ({"dynamic": {"approach_min": 10}}, "approach_min applies to plan: approach"),
           ({"dynamic": {"hold_end": "soon"}}, "hold_end"),
           ({"dynamic": {"hold_end": "steady"}}, "no hold is set"),
           ({"dynamic": {"hold_at": "later"}}, "hold_at"),
           ({"dynamic": {"hold_at": "after_jump"}}, "no hold is set: set hold_min"),
           ({"dynamic": {"hold_at": "after_jump", "hold_min": 5, "hold_end": "steady"}},
            "both shorten the hold"),
           ({"dynamic": {"jump_limit": "refusal"}}, "jump_limit applies to hold_at: after_jump"),
           ({"dynamic": {"hold_at": "after_jump", "hold_min": 5, "jump_limit": "any"}},
            "jump_limit"),
           ({"dynamic": {"hold_at": "after_jump", "hold_min": 5, "plan": "between_proposals"}},
            "judges plan: approach"),
           ({"dynamic": {"representative": "brightest"}}, "representative"),
           ({"dynamic": {"after_unread": "wait"}}, "after_unread")]
    base = load_campaign(CAMPAIGN).model_dump(mode="json")
    for patch, needle in bad:
        data = {**base, **patch}
        if "dynamic" in patch:
            data["dynamic"] = patch["dynamic"]
        with pytest.raises(ConfigError, match=needle):
            parse_campaign(data, "test")


def campaign_data(budget: int, **dynamic: object) -> dict[str, Any]:
    """The shipped dynamic campaign for ``budget`` experiments: Sobol, untracked, no target stop.

    ``dynamic`` overrides the file's ``dynamic:`` options.
    """
    data = load_campaign(CAMPAIGN).model_dump(mode="json")
    data["budget"] = {"max_experiments": budget}
    data["stop"] = {"target_reached": False}
    data["tracking"] = {"enabled": False}
    data["optimizer"] = {"kind": "sobol"}
    data["dynamic"] = {**data["dynamic"], **dynamic}
    return data


def _config(budget: int, **dynamic: object) -> CampaignConfig:
    # the options' defaults unless a test sets them (the shipped file uses some of them)
    defaults = {"hold_at": "end", "jump_limit": "full_weight", "after_unread": "ask",
                "representative": "full_weight_first"}
    return parse_campaign(campaign_data(budget, **{**defaults, **dynamic}), "test")


def _told(run_dir: Path, config: CampaignConfig) -> int:
    state = Journal.read(run_dir / "journal.jsonl")
    return sum(state.extras[t.index]["dynamic"]["n_accepted"] for t in state.trials)


def run_two_steps(config: CampaignConfig, root: Path) -> Campaign:
    """A dynamic campaign stopped (as by Ctrl-C) after its second trajectory."""
    campaign = Campaign.create(config, root)

    def stop_after_two(c: Campaign, trial: object) -> None:
        if len(c.trials) == 2:
            c.request_stop()

    campaign.on_trial = stop_after_two
    campaign.run()
    return campaign


def test_a_dynamic_campaign_journals_every_observation_and_resumes(tmp_path: Path) -> None:
    config = _config(3)
    campaign = run_two_steps(config, tmp_path / "runs")
    run_dir = campaign.run_dir
    state = Journal.read(run_dir / "journal.jsonl")
    assert [t.status for t in state.trials] == [TrialStatus.COMPLETED] * 2
    first, second = (state.extras[t.index]["dynamic"] for t in state.trials)
    assert first["settled"] and not second["settled"]  # the second ramp continues the stream
    assert second["n_readings"] > 10 * first["n_readings"] / 2
    obs = [DynamicObservation.from_dict(d) for d in second["observations"]]
    assert len(obs) == second["n_readings"] and all(o.time_min >= 0 for o in obs)
    assert {o.accepted for o in obs} >= {True}
    assert all(o.reason for o in obs if o.weight < 1)  # the journal says why
    trial = state.trials[1]
    rep = obs[second["representative"]]
    assert trial.conditions == rep.conditions.as_dict()
    assert trial.features is not None and trial.features.pl_peak_nm == rep.features["pl_peak_nm"]
    frames = np.load(run_dir / second["frames_file"])
    assert frames["pl_counts"].shape[0] == second["n_readings"]
    told = _told(run_dir, config)

    fresh = make_optimizer("sobol", config.space.build(), config.objective, seed=config.seed)
    resumed = Campaign.resume(run_dir, optimizer=fresh)
    data = resumed.journal_data(resumed.journal.state)
    assert len(data[0]) == told and all(sd is not None for sd in data[2])
    # the simulated rig resumes feeding the last trajectory's end (tests/dynamic/
    # test_resume_exact.py); a rig stopped meanwhile (here: its safe state, as a real rig is
    # left at a campaign's end) no longer feeds it, so the step settles at its proposal and
    # reads it steady, then ramps on from there
    resumed.executor.safe_state()
    resumed.run()
    state = Journal.read(run_dir / "journal.jsonl")
    assert len(state.trials) == 3
    third = state.extras[2]["dynamic"]
    assert third["settled"]
    points = third["trajectory"]["points"]
    assert points[0] == points[-1] and third["n_readings"] == 2


def test_too_fast_ramps_are_refused_or_down_weighted_and_the_journal_says_which(
        tmp_path: Path) -> None:
    config = _config(2, rate_caps="devices", max_ramp_min=5, hold_min=40)
    result = Campaign.create(config, tmp_path / "runs").run()
    state = Journal.read(result.run_dir / "journal.jsonl")
    dyn = state.extras[state.trials[1].index]["dynamic"]
    obs = [DynamicObservation.from_dict(d) for d in dyn["observations"]]
    refused = [o for o in obs if not o.accepted]
    weak = [o for o in obs if o.accepted and o.weight < 1]
    assert refused and dyn["n_refused"] == len(refused)
    assert all("refused: " in o.reason for o in refused)
    assert any("ramp too fast" in o.reason for o in refused)
    assert all("down-weighted" in o.reason for o in weak)


def test_the_dynamic_campaign_file_runs_from_the_cli(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from autolab.console import console

    # an 80-column terminal, whatever COLUMNS the test process was started with (rich reads it
    # once, when the console is made)
    monkeypatch.setattr(console, "width", 80)
    result = CliRunner().invoke(app, ["run", str(CAMPAIGN), "--budget", "2", "--no-tracking",
                                      "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "readings streamed" in result.output
    (run_dir,) = tmp_path.iterdir()
    state = Journal.read(run_dir / "journal.jsonl")
    assert len(state.trials) == 2 and "dynamic" in state.extras[1]
    # the progress lines say where the reading was made and where the step went (review 13):
    # exp-001's reading is the previous proposal's fluid, its proposal is another point
    lines = result.output.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("exp-001 (2/2)"))
    read, went = lines[row], lines[row + 1]
    assert max(len(read), len(went)) <= 80
    proposal = state.extras[1]["dynamic"]["proposal"]
    assert f"| read at Tc {state.trials[1].conditions['t_core_c']:.0f}°C" in read
    assert went.startswith("  step ended at proposal:")
    assert f"Tc {proposal['t_core_c']:.0f}°C" in went


def test_a_sweep_plan_visits_a_box_around_each_proposal(tmp_path: Path) -> None:
    config = _config(2, plan="sweep", sweep={"n_points": 2, "box_fraction": 0.05},
                     hold_residence_times=0.0)
    result = Campaign.create(config, tmp_path / "runs").run()
    state = Journal.read(result.run_dir / "journal.jsonl")
    points = [Conditions.from_mapping(p)
              for p in state.extras[1]["dynamic"]["trajectory"]["points"]]
    assert len(points) == 4  # from the last point, to the proposal, then two points of its box
    space = config.space.build()
    assert all(space.is_feasible({n: p.value(n) for n in space.names}) for p in points)
    proposal = points[1]
    for p in points[2:]:
        assert abs(p.t_core_c - proposal.t_core_c) <= 0.05 * 60 + 1e-9


def test_parallel_dynamic_reactors_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    data = _config(2).model_dump(mode="json")
    data["reactors"] = [{"name": "r1"}, {"name": "r2"}]
    campaign = Campaign.create(parse_campaign(data, "test"), tmp_path / "runs")
    with pytest.raises(ConfigError, match="mode: dynamic drives one reactor"):
        campaign.run()


def test_an_approach_plan_ramps_fast_then_slow_then_holds(tmp_path: Path) -> None:
    config = _config(2, plan="approach", approach_min=20.0, hold_residence_times=0.5)
    result = Campaign.create(config, tmp_path / "runs").run()
    state = Journal.read(result.run_dir / "journal.jsonl")
    dyn = state.extras[1]["dynamic"]
    tr = Trajectory.from_dict(dyn["trajectory"])
    proposal = Conditions.from_mapping({**dyn["proposal"], **config.space.fixed})
    start, mid, end, held = tr.points  # from the last point, near the proposal, to it, held
    assert start == Conditions.from_mapping(state.extras[0]["dynamic"]["trajectory"]["points"][-1])
    assert end == held == proposal
    hold = tr.times_min[3] - tr.times_min[2]
    assert hold == pytest.approx(0.5 * (proposal.tau_core_min + proposal.tau_shell_min))
    slow_min = tr.times_min[2] - tr.times_min[1]
    assert slow_min == pytest.approx(20.0, rel=1e-3)  # the far Sobol point: a full slow leg
    assert tr.times_min[1] < slow_min  # the devices' pace before it
    assert dyn["n_full_weight"] > 0



def test_a_hold_after_a_jump_only_and_a_close_step_lasts_the_hold_time(
        tmp_path: Path) -> None:
    config = _config(4, plan="approach", approach_min=20.0, hold_residence_times=0.5,
                     hold_at="after_jump")
    result = Campaign.create(config, tmp_path / "runs").run()
    state = Journal.read(result.run_dir / "journal.jsonl")
    policy = config.dynamic.policy()
    kinds = []
    for trial in state.trials[1:]:  # the first settles at its proposal
        dyn = state.extras[trial.index]["dynamic"]
        tr = Trajectory.from_dict(dyn["trajectory"])
        proposal = Conditions.from_mapping({**dyn["proposal"], **config.space.fixed})
        hold = 0.5 * (proposal.tau_core_min + proposal.tau_shell_min)
        start = tr.points[0]
        if start == proposal:  # asked where the reactor is (Sobol re-asks after a step whose
            # readings were all refused): a hold there, no ramp, still the whole hold time
            assert tr.duration_min >= hold - 1e-9, (trial.index, tr.duration_min, hold)
            continue
        ramp_end = next(i for i, p in enumerate(tr.points) if p == proposal)
        ramp_min = tr.times_min[ramp_end]
        held_min = tr.duration_min - ramp_min
        if policy.jump_keeps_full_weight(start, tr.points[1]):
            kinds.append("close")
            assert held_min == pytest.approx(max(0.0, hold - ramp_min))
            assert tr.duration_min >= hold - 1e-9  # the step lasts the hold time in all
        else:
            kinds.append("jump")
            assert held_min == pytest.approx(hold)
    assert "jump" in kinds  # the Sobol points are far apart
    # planned from a known position: a close step tops its slow ramp up to the hold time, a
    # far one holds in full after its ramp
    runner = dynamic_runner(Campaign.create(config, tmp_path / "plan"))
    runner.position = A
    near = replace(A, t_core_c=A.t_core_c + 1.0)  # 1 °C: within twice the 2 °C limit
    traj, settle = runner._plan(near)
    hold = 0.5 * (near.tau_core_min + near.tau_shell_min)
    assert settle is None and traj.points == (A, near, near)
    assert 0 < traj.times_min[1] < hold and traj.duration_min == pytest.approx(hold)
    traj, _ = runner._plan(B)  # 10 °C core, 15 °C shell: a jump
    assert traj.points[-2:] == (B, B)
    assert traj.times_min[-1] - traj.times_min[-2] == pytest.approx(
        0.5 * (B.tau_core_min + B.tau_shell_min))


def test_a_steady_hold_end_stops_the_hold_once_the_stream_is_steady(tmp_path: Path) -> None:
    # a hold cap of 3 tau: long past the RTD washout, so the steady verdicts come inside it
    config = _config(3, plan="approach", approach_min=20.0, hold_residence_times=3.0,
                     hold_end="steady")
    result = Campaign.create(config, tmp_path / "runs").run()
    state = Journal.read(result.run_dir / "journal.jsonl")
    for trial in state.trials[1:]:  # the first settles at its proposal: no ramp, no hold
        dyn = state.extras[trial.index]["dynamic"]
        proposal = Conditions.from_mapping({**dyn["proposal"], **config.space.fixed})
        tau = proposal.tau_core_min + proposal.tau_shell_min
        hold = dyn["hold_min"]
        assert hold["planned"] == pytest.approx(3.0 * tau)
        assert 0 < hold["run"] < hold["planned"] - 1.0  # ended early ...
        obs = [DynamicObservation.from_dict(d) for d in dyn["observations"]]
        assert obs[-1].accepted and obs[-1].steady  # ... and only once the cell's fluid is
        times = [o.time_min for o in obs]
        assert all(b > a for a, b in itertools.pairwise(times))  # the pieces joined in order
        frames = np.load(result.run_dir / dyn["frames_file"])
        assert frames["pl_counts"].shape[0] == dyn["n_readings"] == len(obs)
        realized = Trajectory.from_dict(dyn["realized"])
        assert realized.points[-1].as_dict() == pytest.approx(proposal.as_dict(), abs=0.5)
        assert dyn["finished_lab_h"] - dyn["started_lab_h"] == pytest.approx(
            realized.duration_min / 60.0, abs=0.05)


def test_joined_pieces_make_one_stream_and_a_faults_partial_joins_them() -> None:
    ex = SimulatedExecutor(seed=3)
    ramp = plan_ramp(A, B, LIMITS, hold_end_min=2)
    first = ex.run_trajectory(ramp, LIMITS, frame_interval_min=1.0)
    hold = Trajectory((0.0, 3.0), (B, B), held_before=False)
    second = ex.run_trajectory(hold, LIMITS, frame_interval_min=1.0, settle=False)
    assert not second.settled
    m = joined([first, second])
    assert m is not None and m.settled and m.settle_waits is first.settle_waits
    # the second piece's first frame re-reads where the first ended: dropped
    assert len(m.frames) == len(first.frames) + len(second.frames) - 1 == len(m.times_min)
    assert np.all(np.diff(m.times_min) > 0)
    assert m.finished_lab_h == second.finished_lab_h
    assert m.times_min[-1] == pytest.approx(m.lab_hours * 60.0)
    assert m.trajectory.points[-1] == B and m.realized.duration_min == pytest.approx(
        m.times_min[-1])
    for k in {*first.reagent_ml, *second.reagent_ml}:
        assert m.reagent_ml[k] == pytest.approx(
            first.reagent_ml.get(k, 0.0) + second.reagent_ml.get(k, 0.0))
    # a fault in a piece: what streamed before it is kept; a fault with no frames adds nothing
    assert joined([first], None) is first
    assert joined([], None) is None
    assert joined([], second) is second


def _unread_run(tmp_path: Path, after_unread: str) -> tuple[CampaignConfig, list[dict[str, Any]]]:
    """Sobol proposals, ramped at the devices' pace with a short hold: jumps that read nothing."""
    config = _config(6, plan="approach", approach_min=5.0, hold_residence_times=0.3,
                     rate_caps="devices", after_unread=after_unread)
    result = Campaign.create(config, tmp_path / after_unread).run()
    state = Journal.read(result.run_dir / "journal.jsonl")
    return config, [state.extras[t.index]["dynamic"] for t in state.trials]


def test_a_step_that_read_nothing_is_followed_by_a_hold_that_reads_its_fluid(
        tmp_path: Path) -> None:
    # asked again (the default), the Sobol optimizer, told nothing, re-asks the same point:
    # one-frame holds at the reactor's position that read nothing, step after step
    _, asked = _unread_run(tmp_path, "ask")
    unread = [i for i, d in enumerate(asked) if d["n_accepted"] == 0]
    assert len(unread) >= 3 and not any(d["hold_unread"] for d in asked)
    # held instead: the mapping of the held history says when the cell's fluid is readable,
    # and the hold lasts until then (plus a few frames), so it reads the last proposal's fluid
    config, held = _unread_run(tmp_path, "hold")
    holds = [i for i, d in enumerate(held) if d["hold_unread"]]
    assert holds
    for i in holds:
        before, hold = held[i - 1], held[i]
        assert before["n_accepted"] == 0 and not before["told_failure"]
        tr = Trajectory.from_dict(hold["trajectory"])
        end = Conditions.from_mapping(before["trajectory"]["points"][-1])
        assert set(tr.points) == {end}  # where the reactor was: no ramp, nothing asked
        tau = end.tau_core_min + end.tau_shell_min
        assert 0.3 * tau <= tr.duration_min <= UNREAD_HOLD_MAX_TAU * tau + 1e-9
        assert hold["proposal"] == pytest.approx(
            {k: end.value(k) for k in config.space.parameters})
    assert any(held[i]["n_accepted"] > 0 for i in holds)
    assert sum(d["n_accepted"] == 0 for d in held) < len(unread)
    # at most MAX_UNREAD_HOLDS holds in a row, then the optimizer is asked again
    runner = dynamic_runner(Campaign.create(config, tmp_path / "rule"))
    runner.position, runner.unread_steps = A, 1
    assert runner.holds_unread()
    runner.unread_holds = MAX_UNREAD_HOLDS
    assert not runner.holds_unread()
    runner.unread_holds, runner.unread_steps = 0, 0
    assert not runner.holds_unread()


def test_a_reading_mapped_just_outside_a_linear_constraint_is_journaled_not_told(
        tmp_path: Path) -> None:
    """The shell temperature is mapped over the shell stage's time and the core's over the
    core's, so a mixture's mapped point can sit just outside ``t_shell_c - t_core_c >= 40``
    (seen on a family member: by 0.046 °C, which stopped the campaign when told)."""
    config = _config(1)
    runner = dynamic_runner(Campaign.create(config, tmp_path / "runs"))
    ex = SimulatedExecutor(seed=3)
    caps = MappingPolicy().rate_caps(A, cascade_geometry(ex.session, A))
    m = ex.run_trajectory(plan_ramp(A, B, LIMITS.tightened(caps), hold_end_min=5), LIMITS,
                          frame_interval_min=4.0)
    accepted = [o for o in _observed(ex, m) if o.accepted][:4]
    assert len(accepted) == 4
    o = accepted[0]
    low = 250.0  # the space's lowest shell temperature: the core must be <= 210 °C
    outside = replace(o, conditions=replace(o.conditions, t_shell_c=low,
                                            t_core_c=low - 40.0 + 0.05))
    space = config.space.build()
    assert not space.is_feasible({n: outside.conditions.value(n) for n in space.names})
    proposal = {n: B.value(n) for n in space.names}
    conds, outs, sds = runner.told([outside, *accepted[1:]], proposal, False)
    assert len(conds) == len(outs) == len(sds) == 3
    assert all(space.is_feasible(c) for c in conds)
    assert conds[0] == {n: accepted[1].conditions.value(n) for n in space.names}


def test_the_campaign_files_qy_calibration_reaches_every_streamed_reading(tmp_path: Path) -> None:
    """``analyzer: {qy_calibration_rel: ...}`` in a dynamic campaign: the measurement part of
    every streamed reading's QY sigma holds it (the analyzer's default, 5 %, was the only value
    a campaign could use)."""
    data = _config(1).model_dump(mode="json")
    data["analyzer"] = {"qy_calibration_rel": 0.3}
    config = parse_campaign(data, "test")
    run_dir = Campaign.create(config, tmp_path / "runs").run().run_dir
    state = Journal.read(run_dir / "journal.jsonl")
    obs = [DynamicObservation.from_dict(d) for t in state.trials
           for d in state.extras[t.index]["dynamic"]["observations"]]
    read = [o for o in obs if math.isfinite(o.features["qy"]) and o.features["qy"] > 0]
    assert read
    assert all(o.sigma_measurement["qy"] >= 0.3 * o.features["qy"] for o in read)
