"""The first experiments of a campaign with a prior (``prior_start``), on real BoTorch."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest

from autolab.exceptions import ConfigError, OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.prior import OutcomePrior
from autolab.optimizer.settings import BotorchSettings, parse_optimizer_settings

from .problems import FAST, peak_problem, space_2d, target_objective, unit
from .test_prior import PeakPrior

FAST_ANY: dict[str, Any] = dict(FAST)
PRIOR = cast(OutcomePrior, PeakPrior())


def _opt(**settings: Any) -> BotorchOptimizer:
    return BotorchOptimizer(space_2d(), target_objective(), seed=0, prior="twin",
                            outcome_prior=PRIOR, **FAST_ANY, **settings)


def _u_b(opt: BotorchOptimizer, x: dict[str, float]) -> float:
    return float(unit(opt.space, x)[1])


def test_band_centre_chooses_the_middle_of_the_band_not_the_brightest_point() -> None:
    # peak_problem's band (550 +- 2 nm) runs across the whole b axis, its QY peaks at u_b = 0.7:
    # the best rule goes there, the centre rule to the band's middle
    best, centre = _opt(prior_start="best"), _opt()  # band_centre is the default
    [x_best], [x_centre] = best.ask(1), centre.ask(1)
    for x in (x_best, x_centre):
        assert target_objective().within_target(peak_problem(best.space, x))
    assert abs(_u_b(best, x_best) - 0.7) <= 0.1
    assert abs(_u_b(centre, x_centre) - 0.5) <= 0.1
    assert centre.last_predictions == []  # read off the prior, not the model


def test_band_spread_proposes_n_in_band_points_along_the_band_then_the_model() -> None:
    opt = _opt(prior_start="band_spread", prior_start_n=3)
    xs = []
    for _ in range(3):
        [x] = opt.ask(1)
        assert opt.last_predictions == []
        xs.append(x)
        opt.tell([x], [peak_problem(opt.space, x)])
    assert all(target_objective().within_target(peak_problem(opt.space, x)) for x in xs)
    u_b = sorted(_u_b(opt, x) for x in xs)
    assert abs(u_b[1] - 0.5) <= 0.1 and u_b[0] <= 0.15 and u_b[2] >= 0.85  # middle, both ends
    opt.ask(1)
    assert len(opt.last_predictions) == 1  # the model proposes the fourth


def test_start_points_are_the_same_asked_at_once_pending_or_after_a_resume() -> None:
    one_by_one = _opt(prior_start="band_spread", prior_start_n=3)
    [first] = one_by_one.ask(1)
    [second] = one_by_one.ask(1, pending=[first])
    batch = _opt(prior_start="band_spread", prior_start_n=3).ask(3)
    assert batch[:2] == [first, second]
    one_by_one.tell([first], [peak_problem(one_by_one.space, first)])
    state = one_by_one.state_dict()
    [next_x] = one_by_one.ask(1)
    assert next_x == second
    again = BotorchOptimizer.from_state(state, outcome_prior=PRIOR)
    assert again.settings.prior_start == "band_spread"
    assert again.ask(1) == [next_x]
    # a batch that runs past the start points comes from the model
    again.tell([next_x], [peak_problem(again.space, next_x)])
    again.ask(2)
    assert len(again.last_predictions) == 2


def test_without_a_predicted_band_the_rules_fall_back_to_the_best_point() -> None:
    far = cast(OutcomePrior, PeakPrior(shift_nm=500.0))  # nothing near 550 nm
    xs = [BotorchOptimizer(space_2d(), target_objective(), seed=0, prior="twin",
                           outcome_prior=far, prior_start=rule, **FAST_ANY).ask(1)[0]
          for rule in ("best", "band_centre", "band_spread")]
    assert xs[0] == xs[1] == xs[2]
    assert np.isfinite(list(xs[0].values())).all()


def test_prior_start_is_validated() -> None:
    with pytest.raises(OptimizerError, match="prior_start 'best' chooses the first"):
        BotorchOptimizer(space_2d(), target_objective(), prior_start="best")
    assert BotorchSettings().prior_start == "band_centre"  # the default needs no prior
    with pytest.raises(ConfigError, match=r"settings\.prior_start: Input should be 'best'"):
        parse_optimizer_settings("botorch", {"prior": "twin", "prior_start": "middle"})
    with pytest.raises(ConfigError, match="prior_start_n counts the start points"):
        parse_optimizer_settings("botorch", {"prior": "twin", "prior_start_n": 2})
    with pytest.raises(ConfigError, match=r"settings\.prior_start_n"):
        parse_optimizer_settings("botorch", {"prior": "twin", "prior_start": "band_spread",
                                             "prior_start_n": 0})
    for settings in (BotorchSettings(), BotorchSettings(prior="twin", prior_start="band_spread",
                                                        prior_start_n=2)):
        assert BotorchSettings(**settings.model_dump()) == settings  # a dump round-trips
