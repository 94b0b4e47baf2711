"""Which outcomes keep the prior (``prior_outcomes``): the rule, the surrogate, the optimizer."""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch

from autolab.exceptions import ConfigError, OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.prior import OutcomePrior, PriorSurrogate
from autolab.optimizer.prior_outcomes import PRIOR_OUTCOME_RULES, prior_outcomes
from autolab.optimizer.settings import BotorchSettings, parse_optimizer_settings

from .problems import FAST, peak_problem, space_2d, target_objective
from .test_prior_guard import SpreadPrior

BOTH, BAND = frozenset({"pl_peak_nm", "qy"}), frozenset({"pl_peak_nm"})
FAST_ANY: dict[str, Any] = dict(FAST)


def _prior() -> OutcomePrior:
    return cast(OutcomePrior, SpreadPrior())


@pytest.mark.parametrize(("rule", "before", "after"), [
    ("all", BOTH, BOTH), ("band", BAND, BAND),
    ("all_until_band", BOTH, BAND), ("band_until_band", BAND, BOTH)])
def test_each_rule_names_the_outcomes_before_and_after_the_band(
        rule: str, before: frozenset[str], after: frozenset[str]) -> None:
    spec = target_objective()
    assert prior_outcomes(rule, spec, has_in_band=False) == before
    assert prior_outcomes(rule, spec, has_in_band=True) == after


def test_the_setting_and_the_registry_agree() -> None:
    field: Any = BotorchSettings.model_fields["prior_outcomes"].annotation
    assert set(field.__args__) == set(PRIOR_OUTCOME_RULES)
    assert BotorchSettings().prior_outcomes == "all"


def test_a_restricted_surrogate_shares_the_fitted_gps_of_the_outcomes_it_keeps() -> None:
    space = space_2d()
    full = PriorSurrogate(_prior(), space, seed=0, n_points=32,
                          spread=dict(SpreadPrior.discrepancy_sd))
    band = full.only({"pl_peak_nm"})
    assert set(band.gps) == {"pl_peak_nm"} and set(full.gps) == {"pl_peak_nm", "qy"}
    assert band.gps["pl_peak_nm"] is full.gps["pl_peak_nm"] and band.spread == full.spread
    X = torch.rand(5, 2, dtype=torch.float64)
    assert torch.equal(band.mean("pl_peak_nm", X), full.mean("pl_peak_nm", X))


def _told(rule: str, in_band: bool) -> BotorchOptimizer:
    """A twin-prior optimizer told four readings of ``peak_problem``, one in band or none."""
    space = space_2d()
    opt = BotorchOptimizer(space, target_objective(), seed=0, prior="twin",
                           outcome_prior=_prior(), prior_outcomes=rule, **FAST_ANY)
    points = [{"a": a, "b": b} for a, b in ((1.0, 2.0), (3.0, 10.0), (7.0, 30.0), (9.0, 80.0))]
    if in_band:  # a = 5, b = 1 puts the peak at 550 nm
        points[0] = {"a": 5.0, "b": 1.0}
    readings = [peak_problem(space, p) for p in points]
    assert any(opt.objective.within_target(r) for r in readings) == in_band
    opt.tell(points, readings, [{"pl_peak_nm": 1.0, "qy": 0.01}] * 4)
    return opt


@pytest.mark.parametrize(("rule", "in_band", "qy_has_prior"), [
    ("band", True, False), ("band_until_band", False, False), ("band_until_band", True, True)])
def test_the_outcomes_without_the_prior_are_modelled_cold(rule: str, in_band: bool,
                                                          qy_has_prior: bool) -> None:
    opt = _told(rule, in_band)
    opt.ask(1)
    record = opt.state_dict()["model"]
    # a prior mean has a weight; a cold GP's constant mean has none
    assert "mean_module.weight" in record["hyperparameters"]["pl_peak_nm"]
    assert ("mean_module.weight" in record["hyperparameters"]["qy"]) == qy_has_prior
    if not qy_has_prior:  # the guard does not score an outcome that has no prior
        assert record["prior_guard"]["qy"]["model"] == "cold"


def test_a_campaign_with_prior_outcomes_resumes_exactly() -> None:
    opt = _told("band_until_band", in_band=True)
    state = opt.state_dict()
    [x] = opt.ask(1)
    again = BotorchOptimizer.from_state(state, outcome_prior=_prior())
    assert again.settings.prior_outcomes == "band_until_band"
    assert again.ask(1) == [x]


def test_prior_outcomes_is_validated() -> None:
    with pytest.raises(OptimizerError, match="prior_outcomes 'band' chooses the outcomes of a"):
        BotorchOptimizer(space_2d(), target_objective(), prior_outcomes="band")
    with pytest.raises(ConfigError, match=r"settings\.prior_outcomes: Input should be 'all'"):
        parse_optimizer_settings("botorch", {"prior": "twin", "prior_outcomes": "qy"})


def test_a_band_rule_without_a_target_term_is_refused_naming_it() -> None:
    from autolab.objective import Maximize, ObjectiveSpec

    brightest = ObjectiveSpec(terms=(Maximize(outcome="qy"),))
    with pytest.raises(OptimizerError, match=r"prior_outcomes 'band'.*no target term"):
        BotorchOptimizer(space_2d(), brightest, prior="twin", outcome_prior=_prior(),
                         prior_outcomes="band", **FAST_ANY)
    # 'all' needs no band
    BotorchOptimizer(space_2d(), brightest, prior="twin", outcome_prior=_prior(),
                     **FAST_ANY)
