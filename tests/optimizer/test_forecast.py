"""The stopping forecast's recalibration (issue 8 §5): the model's probabilities mapped to what
the family showed, the model's own numbers kept beside them, bad maps refused.

Real GPs on a cheap analytic problem (``problems.py``); no mocks.
"""

from __future__ import annotations

import math

import pytest

from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.forecast import (
    FAMILY_RECALIBRATION,
    MAX_EXPECTED,
    Recalibration,
    fit_knots,
)

from .problems import FAST, peak_problem, space_2d, target_objective

SD = {"pl_peak_nm": 0.3, "qy": 0.01}


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


def test_the_campaign_forecast_reports_recalibrated_and_model_probabilities() -> None:
    space, obj = space_2d(), target_objective()
    opt = BotorchOptimizer(space, obj, seed=2, n_init=4, **FAST)
    checked = 0
    for _ in range(7):
        [x] = opt.ask(1)
        opt.tell([x], [peak_problem(space, x)], [dict(SD)])
        fc = opt.forecast()
        if fc is None:
            continue
        assert fc.calibration == FAMILY_RECALIBRATION.name
        assert fc.p_next_model is not None and fc.p_spec_met_model is not None
        assert fc.p_next == pytest.approx(FAMILY_RECALIBRATION.next(fc.p_next_model))
        assert fc.expected_experiments == pytest.approx(min(MAX_EXPECTED, 1.0 / fc.p_next))
        best = opt.best()
        if best is not None and best.in_band:
            assert fc.p_spec_met == pytest.approx(
                FAMILY_RECALIBRATION.spec_met(fc.p_spec_met_model))
        else:
            assert fc.p_spec_met == 0.0  # nothing in band: not met, whatever the map says
        checked += 1
    assert checked >= 4
    # Explicit thresholds were not what the map was fitted for: the model's numbers, unmapped.
    explicit = opt.forecast(thresholds={"qy": 0.3})
    assert explicit is not None and explicit.calibration == ""
    assert explicit.p_next == explicit.p_next_model
    assert math.isfinite(explicit.expected_experiments)
