"""The stopping forecast's recalibration (issue 8 §5): the model's probabilities mapped to what
the family showed, the model's own numbers kept beside them, bad maps refused; the count of
further experiments from a discrete-time hazard (worked by hand here), its fit and validation.

Real GPs on a cheap analytic problem (``problems.py``); no mocks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from autolab.objective import Maximize, ObjectiveSpec, Target
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.forecast import (
    FAMILY_HAZARD,
    FAMILY_RECALIBRATION,
    MAX_EXPECTED,
    Forecast,
    HazardModel,
    HazardRow,
    Recalibration,
    fit_hazard,
    fit_knots,
    remaining_experiments,
)

from .problems import FAST, peak_problem, space_2d, target_objective

SD = {"pl_peak_nm": 0.3, "qy": 0.01}


def _told_forecasts(opt: BotorchOptimizer, n: int) -> Iterator[tuple[int, Forecast | None]]:
    """``n`` times: ask, tell the analytic problem's reading, forecast; (experiments told, it)."""
    for told in range(1, n + 1):
        [x] = opt.ask(1)
        opt.tell([x], [peak_problem(opt.space, x)], [dict(SD)])
        yield told, opt.forecast()


def test_fit_knots_pools_bins_that_break_monotonicity() -> None:
    # Bin 0-0.1: 1 good in 9; bin 0.1-0.5: 0 in 9 (lower: pooled with the first); 0.5-1: 6 of 9.
    pairs = ([(0.05, True)] + [(0.05, False)] * 8 + [(0.3, False)] * 9
             + [(0.8, True)] * 6 + [(0.8, False)] * 3)
    knots = fit_knots(pairs, (0.1, 0.5, 1.0))
    xs, ys = [x for x, _ in knots], [y for _, y in knots]
    assert xs[0] == 0.0 and xs[-1] == 1.0
    assert len(knots) == 4  # (0, .), pooled first two bins, last bin, (1, .)
    assert xs[1] == pytest.approx((9 * 0.05 + 9 * 0.3) / 18)
    assert ys[1] == pytest.approx((1 + 0.5) / (18 + 1))  # Jeffreys share of the pooled bins
    assert ys[2] == pytest.approx((6 + 0.5) / (9 + 1))
    assert ys == sorted(ys)
    cal = Recalibration(name="t", p_spec_met=knots, p_next=knots)
    assert cal.next(0.8) == pytest.approx(ys[2])
    assert cal.next(0.0) == pytest.approx(ys[0])
    with pytest.raises(ValueError, match="at least one"):
        fit_knots([], (1.0,))


def test_a_map_that_is_not_monotone_on_0_1_is_refused() -> None:
    ok = ((0.0, 0.0), (1.0, 0.5))
    with pytest.raises(ValueError,
                       match=r"p_next: knot 1 share 0\.1 is below the previous 0\.2"):
        Recalibration(name="x", p_spec_met=ok, p_next=((0.0, 0.2), (0.5, 0.1), (1.0, 0.3)))
    with pytest.raises(ValueError, match="p_spec_met: knots must run from p = 0 to p = 1"):
        Recalibration(name="x", p_spec_met=((0.1, 0.0), (1.0, 0.5)), p_next=ok)
    with pytest.raises(ValueError, match=r"knot 2 p = 0\.5 is not above"):
        Recalibration(name="x", p_spec_met=((0.0, 0.0), (0.5, 0.1), (0.5, 0.2), (1.0, 0.3)),
                      p_next=ok)
    with pytest.raises(ValueError, match="shares must lie in"):
        Recalibration(name="x", p_spec_met=ok, p_next=((0.0, 0.0), (1.0, 1.5)))
    with pytest.raises(ValueError, match="name"):
        Recalibration(name="", p_spec_met=ok, p_next=ok)


def test_remaining_experiments_on_a_hand_worked_hazard_sequence() -> None:
    # Hazards 0.5, 0.5, 1: no hit within 1 with 0.5, within 2 with 0.25, within 3 never.
    hazards = {1: 0.5, 2: 0.5, 3: 1.0}
    left = remaining_experiments(lambda k: hazards.get(k, 1.0))
    assert left.median_experiments == 1.0  # S(1) = 0.5 <= 0.5
    assert left.q80_experiments == 3.0  # S(2) = 0.25 > 0.2, S(3) = 0
    assert left.mean_experiments == pytest.approx(1 + 0.5 + 0.25)  # sum of S(k), k >= 0


def test_a_constant_hazard_gives_the_geometric_count_even_past_the_horizon() -> None:
    # p = 0.1: mean 1 / p = 10, median ceil(log 0.5 / log 0.9) = 7, 80 %: ceil(15.28) = 16.
    for horizon in (500, 3):  # the tail past a short horizon is the closed-form geometric
        left = remaining_experiments(lambda _k: 0.1, horizon=horizon)
        assert left.mean_experiments == pytest.approx(10.0)
        assert left.median_experiments == 7.0
        assert left.q80_experiments == 16.0
    never = remaining_experiments(lambda _k: 0.0)
    assert never.mean_experiments == never.median_experiments == MAX_EXPECTED
    with pytest.raises(ValueError, match=r"hazard 2 ahead is 1\.5, not in \[0, 1\]"):
        remaining_experiments(lambda k: 0.1 if k == 1 else 1.5)
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        remaining_experiments(lambda _k: 0.1, horizon=0)


def test_the_hazard_model_formula_and_its_validation() -> None:
    model = HazardModel(name="t", intercept=-2.0, per_logit_p=0.5, in_band=1.0, per_log_n=0.25,
                        max_experiments=30)
    # logit h = -2 + 0.5 * logit(0.5) + 1 + 0.25 * log(4) = -1 + 0.25 * log 4
    z = -1.0 + 0.25 * math.log(4)
    assert model.hazard(0.5, True, 4) == pytest.approx(1 / (1 + math.exp(-z)))
    # The experiment count moves with the experiments ahead: hazard k ahead uses n + k - 1.
    rising = model.remaining(0.5, True, 4)
    flat = remaining_experiments(lambda _k: model.hazard(0.5, True, 4))
    assert rising.mean_experiments < flat.mean_experiments
    # Beyond the fitted range the count is held, not extrapolated.
    held = model.hazard(0.5, True, 30)
    assert model.hazard(0.5, True, 1000) == held > model.hazard(0.5, True, 29)
    with pytest.raises(ValueError, match="per_log_n must be a finite number, got nan"):
        HazardModel(name="t", intercept=-2.0, per_logit_p=0.5, in_band=1.0, per_log_n=math.nan,
                    max_experiments=30)
    with pytest.raises(ValueError, match="name must not be empty"):
        HazardModel(name="", intercept=-2.0, per_logit_p=0.5, in_band=1.0, per_log_n=0.0,
                    max_experiments=30)
    with pytest.raises(ValueError, match="max_experiments must be an integer >= 1, got 0"):
        HazardModel(name="t", intercept=-2.0, per_logit_p=0.5, in_band=1.0, per_log_n=0.0,
                    max_experiments=0)


def test_fit_hazard_recovers_the_observed_shares() -> None:
    # logit(p) = 0 and log(1) = 0: only the intercept and the in-band shift are identified.
    # Out of band 10 % of next experiments were good hits, in band 30 %: without a ridge the
    # maximum-likelihood logistic reproduces both shares exactly.
    rows = ([HazardRow(0.5, False, 1, i < 10) for i in range(100)]
            + [HazardRow(0.5, True, 1, i < 30) for i in range(100)])
    model = fit_hazard(rows, "shares", ridge=0.0)
    assert model.hazard(0.5, False, 1) == pytest.approx(0.1, abs=1e-8)
    assert model.hazard(0.5, True, 1) == pytest.approx(0.3, abs=1e-8)
    assert model.max_experiments == 1  # the largest count the rows held
    shrunk = fit_hazard(rows, "shares", ridge=50.0)  # the ridge pulls the shift towards 0
    assert 0.0 < shrunk.in_band < model.in_band
    with pytest.raises(ValueError, match="at least one row"):
        fit_hazard([], "x")
    with pytest.raises(ValueError, match="at least one good hit"):
        fit_hazard([HazardRow(0.5, False, 1, False)], "x")
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        fit_hazard(rows, "x", ridge=-1.0)


def test_the_campaign_forecast_reports_recalibrated_and_model_probabilities() -> None:
    space, obj = space_2d(), target_objective()
    opt = BotorchOptimizer(space, obj, seed=2, n_init=4, **FAST)
    checked = 0
    for n, fc in _told_forecasts(opt, 7):
        if fc is None:
            continue
        assert fc.calibration == FAMILY_RECALIBRATION.name
        assert fc.count_model == FAMILY_HAZARD.name
        assert fc.p_next_model is not None and fc.p_spec_met_model is not None
        assert fc.p_next == pytest.approx(FAMILY_RECALIBRATION.next(fc.p_next_model))
        in_band = any(o.in_band for o in opt.observations if not o.failed)
        count = FAMILY_HAZARD.remaining(fc.p_next_model, in_band, n)
        assert fc.expected_experiments == pytest.approx(count.mean_experiments)
        assert fc.median_experiments == count.median_experiments
        assert 1 <= fc.median_experiments <= fc.q80_experiments
        best = opt.best()
        if best is not None and best.in_band:
            assert fc.p_spec_met == pytest.approx(
                FAMILY_RECALIBRATION.spec_met(fc.p_spec_met_model))
        else:
            assert fc.p_spec_met == 0.0  # nothing in band: not met, whatever the map says
        checked += 1
    assert checked >= 4
    # Explicit thresholds were not what the map was fitted for: the model's numbers, unmapped,
    # and the geometric count of the model's p_next.
    explicit = opt.forecast(thresholds={"qy": 0.3})
    assert explicit is not None and explicit.calibration == ""
    assert explicit.count_model == "geometric"
    assert explicit.p_next == explicit.p_next_model
    geometric = remaining_experiments(lambda _k: explicit.p_next)
    assert explicit.expected_experiments == pytest.approx(geometric.mean_experiments)
    assert explicit.q80_experiments == geometric.q80_experiments


@pytest.mark.parametrize(("target_nm", "reachable"), [(550.0, True), (700.0, False)])
def test_p_in_band_tells_a_band_out_of_reach_after_the_design(target_nm: float,
                                                             reachable: bool) -> None:
    """``p_in_band``: the best chance any candidate has of landing in band, whatever its QY.

    The problem's PL spans 500-610 nm: a 700-nm band is out of reach, and once the design is
    told the model says so (the campaign's ``stop.forecast_reach_below`` reads it); a 550-nm
    band keeps a real chance until it is found. Before anything is in band ``p_improve``
    is the same number (improving on nothing is landing in band).
    """
    space = space_2d()
    obj = ObjectiveSpec(terms=(Target(outcome="pl_peak_nm", value=target_nm, tolerance=2.0),
                               Maximize(outcome="qy", scale=0.1)))
    opt = BotorchOptimizer(space, obj, seed=3, n_init=4, **FAST)
    seen = []
    for n, fc in _told_forecasts(opt, 8):
        if fc is None:
            continue
        assert fc.design_done is (n >= 4)
        assert 0.0 <= fc.p_in_band <= 1.0
        if any(o.in_band for o in opt.observations if not o.failed):
            break  # found: nothing more to say about reach
        assert fc.p_improve == pytest.approx(fc.p_in_band)
        if fc.design_done:
            seen.append(fc.p_in_band)
    assert seen, "something was in band at once"
    if reachable:
        assert min(seen) > 0.05
    else:
        assert max(seen[-3:]) < 0.01
