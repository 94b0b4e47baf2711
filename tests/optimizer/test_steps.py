"""Steps: readings of one dynamic trajectory count once in the trust region (real BoTorch)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from autolab.exceptions import OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.steps import checked_steps, step_history
from autolab.optimizer.thompson import TR_LENGTH_INIT, trust_region_length

from .problems import FAST, peak_problem, space_2d, target_objective, unit

SD = {"pl_peak_nm": 0.3, "qy": 0.01}
QUICK: dict[str, Any] = dict(FAST)
#: ``_crawl``'s points: four in band (QY rising towards u_b = 0.7), then six out of band.
IN_BAND = [[0.5, 0.0], [0.5, 0.05], [0.499, 0.1], [0.498, 0.15]]
OUT_OF_BAND = [[0.1, 0.7], [0.9, 0.7], [0.1, 0.0], [0.9, 0.0], [0.1, 1.0], [0.9, 1.0]]


def _crawl(opt: BotorchOptimizer, steps: list[int | None] | None) -> None:
    """The ten points told in one call, with ``steps`` (``None``: no step ids at all)."""
    xs = [opt.space.from_unit(np.array([u]))[0] for u in [*IN_BAND, *OUT_OF_BAND]]
    opt.tell(xs, [peak_problem(opt.space, x) for x in xs], [SD] * len(xs), steps=steps)


def _opt(**settings: Any) -> BotorchOptimizer:
    return BotorchOptimizer(space_2d(), target_objective(), seed=4, n_init=2,
                            ts_candidates=256, **{**QUICK, **settings})


def test_a_step_is_one_entry_of_the_history_its_best_value() -> None:
    assert step_history([0.1, None, 0.3, 0.2], [5, 5, 5, 6]) == [0.3, 0.2]
    assert step_history([None, None, 0.4], [1, 1, None]) == [None, 0.4]
    # ids group wherever they recur; order is that of each step's first reading
    assert step_history([0.2, 0.5, 0.1], [2, 3, 2]) == [0.2, 0.5]
    # no ids: every observation its own step, the history unchanged
    values = [None, 0.2, 0.1, None]
    assert step_history(values, [None] * 4) == values
    with pytest.raises(OptimizerError, match="3 values but 2 step ids"):
        step_history([0.1, 0.2, 0.3], [1, 1])


def test_tens_of_readings_of_one_step_do_not_shrink_the_trust_region() -> None:
    """Why steps exist: 30 non-improving readings of one ramp are one miss, not six halvings."""
    readings = [0.5, *[0.4] * 30]
    per_reading = trust_region_length(readings, dim=5)
    per_step = trust_region_length(step_history(readings, [0, *[1] * 30]), dim=5)
    assert per_reading == pytest.approx(TR_LENGTH_INIT / 64)
    assert per_step == TR_LENGTH_INIT


@pytest.mark.parametrize(("steps", "match"), [
    ([1, 2], "has 2 step ids for 3 observations"),
    ([1, -1, 2], r"\[1\] = -1: expected a non-negative int"),
    ([1, True, 2], r"\[1\] = True"),
    ([1, 2.0, 3], r"\[1\] = 2.0"),
    ("abc", "must be a list of step ids"),
])
def test_bad_step_ids_are_refused_naming_the_field(steps: Any, match: str) -> None:
    with pytest.raises(OptimizerError, match=r"tell\(steps=\.\.\.\)" + ".*" + match):
        checked_steps(steps, 3, "tell(steps=...)")
    opt = _opt()
    xs = [opt.space.from_unit(np.array([u]))[0] for u in IN_BAND[:3]]
    with pytest.raises(OptimizerError, match="steps"):
        opt.tell(xs, [peak_problem(opt.space, x) for x in xs], steps=steps)
    assert opt.observations == () and opt.steps == ()  # a refused batch leaves nothing


def test_a_bad_tell_leaves_no_step_ids_behind() -> None:
    opt = _opt()
    x = opt.space.from_unit(np.array([[0.5, 0.5]]))[0]
    with pytest.raises(OptimizerError, match="missing"):
        opt.tell([x], [{"qy": 0.1}], steps=[3])
    assert opt.steps == ()


def test_one_observation_per_step_proposes_exactly_what_no_step_ids_do() -> None:
    """A steady campaign tells no step ids: its proposals are those of one step per reading."""
    plain, single = _opt(), _opt()
    _crawl(plain, None)
    _crawl(single, list(range(10)))
    assert plain.steps == (None,) * 10
    assert "steps" not in plain.state_dict()  # a steady state is the one it always was
    assert plain.ask(1) == single.ask(1)


def test_grouped_readings_reach_the_trust_region_of_the_proposal() -> None:
    """Six out-of-band readings of one step are one failure: the box keeps its doubled side."""
    # per reading: 0.1 doubles to 0.2 after three improvements, then four misses halve it to 0.1
    assert trust_region_length([0.1, 0.2, 0.3, 0.4, *[None] * 6], dim=2,
                               length_init=0.1) == pytest.approx(0.1)
    grouped, plain = _opt(trust_region_init=0.1), _opt(trust_region_init=0.1)
    _crawl(grouped, [0, 1, 2, 3, *[4] * 6])
    _crawl(plain, None)
    [g], [p] = grouped.ask(1), plain.ask(1)
    anchor = np.array([0.498, 0.15])
    assert float(np.abs(np.subtract(unit(plain.space, p), anchor)).max()) <= 0.05 + 1e-9
    assert float(np.abs(np.subtract(unit(grouped.space, g), anchor)).max()) <= 0.1 + 1e-9
    assert g != p


def test_step_ids_survive_the_state_and_a_resumed_optimizer_proposes_the_same() -> None:
    opt = _opt(trust_region_init=0.1)
    _crawl(opt, [0, 1, 2, 3, *[4] * 6])
    state = json.loads(json.dumps(opt.state_dict()))
    assert state["steps"] == [0, 1, 2, 3, *[4] * 6]
    rebuilt = BotorchOptimizer.from_state(state)
    loaded = _opt(trust_region_init=0.1)
    loaded.load_state_dict(state)
    assert rebuilt.steps == loaded.steps == opt.steps
    [x] = opt.ask(1)
    assert rebuilt.ask(1) == [x] and loaded.ask(1) == [x]
    # a state without step ids (saved before them, or steady) loads as one step per reading
    del state["steps"]
    loaded.load_state_dict(state)
    assert loaded.steps == (None,) * 10


def test_a_state_with_misaligned_step_ids_is_refused_naming_it() -> None:
    opt = _opt()
    _crawl(opt, [0, 1, 2, 3, *[4] * 6])
    state = opt.state_dict()
    state["steps"] = [0, 1]
    with pytest.raises(OptimizerError, match=r"state\['steps'\] has 2 step ids for 10"):
        BotorchOptimizer.from_state(state)
