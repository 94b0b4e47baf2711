"""Spreading the first proposals after the band along it (``band_spread``)."""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch

from autolab.exceptions import ConfigError, OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.band_spread import SPREAD_RULES, SpreadState, spreads
from autolab.optimizer.prior import OutcomePrior
from autolab.optimizer.settings import BotorchSettings, parse_optimizer_settings

from .problems import FAST, peak_problem, space_2d, target_objective
from .test_prior_guard import SpreadPrior

FAST_ANY: dict[str, Any] = dict(FAST)
QY = frozenset({"qy"})
PRIOR = cast(OutcomePrior, SpreadPrior())


def _state(in_band: list[bool], guard: dict[str, str] | None = None, n: int = 2) -> SpreadState:
    return SpreadState(in_band=in_band, guard=guard or {}, climb_outcomes=QY, n=n)


@pytest.mark.parametrize(("in_band", "expected"), [
    ([False, False], False),                  # no band yet: the band search goes on
    ([False, True], True),                    # right after the first in-band success
    ([False, True, False], True),             # the second of n = 2
    ([False, True, False, True], False),      # n spread experiments done: the climb
])
def test_in_band_spreads_the_n_experiments_after_the_first_in_band_one(
        in_band: list[bool], expected: bool) -> None:
    assert spreads("in_band", _state(in_band)) is expected
    assert spreads("off", _state(in_band)) is False


def test_guard_cold_spreads_only_while_the_guard_has_handed_the_climb_to_a_cold_gp() -> None:
    after = [False, True]
    assert spreads("guard_cold", _state(after, {"pl_peak_nm": "prior", "qy": "cold"}))
    assert not spreads("guard_cold", _state(after, {"pl_peak_nm": "cold", "qy": "prior"}))
    assert not spreads("guard_cold", _state(after))  # too few readings for the guard
    assert not spreads("guard_cold", _state([False, False], {"qy": "cold"}))


def test_the_setting_and_the_registry_agree() -> None:
    field: Any = BotorchSettings.model_fields["band_spread"].annotation
    assert set(field.__args__) == set(SPREAD_RULES)
    assert BotorchSettings().band_spread == "off"


def _told(**settings: Any) -> BotorchOptimizer:
    """Four readings of ``peak_problem``, the last in band (a = 5, b = 1: 550 nm)."""
    space = space_2d()
    opt = BotorchOptimizer(space, target_objective(), seed=0, **FAST_ANY, **settings)
    points = [{"a": a, "b": b} for a, b in ((3.0, 10.0), (7.0, 30.0), (9.0, 80.0), (5.0, 1.0))]
    opt.tell(points, [peak_problem(space, p) for p in points],
             [{"pl_peak_nm": 1.0, "qy": 0.01}] * 4)
    return opt


def _distance_to_data(opt: BotorchOptimizer, point: dict[str, float]) -> float:
    seen = torch.tensor(opt.space.to_unit([o.conditions for o in opt.observations]))
    x = torch.tensor(opt.space.to_unit([point]))
    return float(torch.cdist(x, seen).min())


def test_a_spread_proposal_lands_in_band_away_from_the_data() -> None:
    spread = _told(band_spread="in_band", band_spread_n=2)
    [x] = spread.ask(1)
    [climb] = _told().ask(1)
    # the default climbs from the in-band reading; the spread looks elsewhere along the band
    assert _distance_to_data(spread, x) > _distance_to_data(spread, climb)
    assert abs(peak_problem(spread.space, x)["pl_peak_nm"] - 550.0) <= 2.0
    # two asks at once are spread from each other too
    pair = spread.ask(2)
    u = torch.tensor(spread.space.to_unit(pair))
    assert float(torch.dist(u[0], u[1])) > 0.1


def test_after_n_spread_experiments_the_climb_proposes_as_without_the_setting() -> None:
    spread = _told(band_spread="in_band", band_spread_n=1)
    plain = _told()
    for opt in (spread, plain):
        opt.tell([{"a": 2.0, "b": 50.0}], [peak_problem(opt.space, {"a": 2.0, "b": 50.0})],
                 [{"pl_peak_nm": 1.0, "qy": 0.01}])
    assert spread.ask(1) == plain.ask(1)


def test_pending_experiments_count_among_the_spread_ones() -> None:
    """Several reactors (or asks before tells): the told count stands still while experiments
    run, so every ask spread again; the running ones count now."""
    def state(pending: int) -> SpreadState:
        return SpreadState(in_band=[False, True], guard={}, climb_outcomes=QY, n=2,
                           pending=pending)

    assert spreads("in_band", state(1))  # the second of n = 2 while the first runs
    assert not spreads("in_band", state(2))  # both running: the climb
    running = [{"a": 2.0, "b": 50.0}]
    spread = _told(band_spread="in_band", band_spread_n=1)
    # the one spread experiment is running: the next ask climbs as without the setting
    assert spread.ask(1, pending=running) == _told().ask(1, pending=running)


def test_a_campaign_with_band_spread_resumes_exactly() -> None:
    opt = _told(band_spread="in_band")
    state = opt.state_dict()
    [x] = opt.ask(1)
    again = BotorchOptimizer.from_state(state)
    assert again.settings.band_spread == "in_band"
    assert again.ask(1) == [x]


def test_band_spread_is_validated() -> None:
    with pytest.raises(OptimizerError, match="band_spread 'guard_cold' follows the prior guard"):
        BotorchOptimizer(space_2d(), target_objective(), band_spread="guard_cold")
    BotorchOptimizer(space_2d(), target_objective(), prior="twin", outcome_prior=PRIOR,
                     band_spread="guard_cold", **FAST_ANY)
    with pytest.raises(OptimizerError, match="band_spread 'guard_cold' follows the prior guard"):
        BotorchOptimizer(space_2d(), target_objective(), prior="twin", prior_guard="none",
                         outcome_prior=PRIOR, band_spread="guard_cold", **FAST_ANY)
    with pytest.raises(ConfigError, match=r"settings\.band_spread: Input should be 'off'"):
        parse_optimizer_settings("botorch", {"band_spread": "always"})
    with pytest.raises(ConfigError, match="band_spread_n counts the proposals band_spread"):
        parse_optimizer_settings("botorch", {"band_spread_n": 2})
    for settings in (BotorchSettings(), BotorchSettings(band_spread="in_band", band_spread_n=2)):
        assert BotorchSettings(**settings.model_dump()) == settings  # a dump round-trips
    with pytest.raises(ConfigError, match=r"settings\.band_spread_n"):
        parse_optimizer_settings("botorch", {"band_spread": "in_band", "band_spread_n": 0})
