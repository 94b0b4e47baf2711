"""Greedy (posterior-mean) steps between Thompson draws (``ts_greedy_every``): real GPs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.base import derive_seed
from autolab.optimizer.greedy import greedy_now, greedy_select
from autolab.optimizer.thompson import (
    EXCLUSION_RADIUS,
    anchor_points,
    candidate_set,
    thompson_select,
)

from .problems import assert_refused_both_ways, peak_problem, space_2d, target_objective, unit
from .test_thompson import QUICK, _crawl_data, _fitted_anchors, _tell_points

#: Hand-made candidates on the crawl data (``peak_problem``, band 548-552 nm): a told in-band
#: point (QY 0.10), an unmeasured in-band point in the bright region (true PL 550.0 nm, QY 0.46),
#: and two points of the bright region far out of band (true PL 594 and 525 nm).
CANDIDATES = [[0.498, 0.15], [0.47, 0.55], [0.9, 0.7], [0.2, 0.7]]


@pytest.mark.parametrize("value", [0, 1, -3, 2.5, "often"])
def test_a_bad_greedy_period_is_refused_naming_the_field(value: Any) -> None:
    assert_refused_both_ways({"ts_greedy_every": value}, "ts_greedy_every")


def test_the_default_never_takes_a_greedy_step() -> None:
    assert BotorchOptimizer(space_2d(), target_objective()).settings.ts_greedy_every is None
    assert not any(greedy_now(None, n) for n in range(50))


def test_every_kth_experiment_is_greedy() -> None:
    assert [n for n in range(12) if greedy_now(2, n)] == [1, 3, 5, 7, 9, 11]
    assert [n for n in range(12) if greedy_now(3, n)] == [2, 5, 8, 11]


def test_the_greedy_step_takes_the_brightest_candidate_whose_mean_is_in_band() -> None:
    opt, model, _ = _fitted_anchors()
    X = torch.tensor(CANDIDATES, dtype=torch.float64)
    with torch.no_grad():
        mean = model.posterior(X).mean
    assert 548.0 <= float(mean[1, 0]) <= 552.0  # the model puts the unmeasured point in band
    pick = greedy_select(opt.objective, model, X, has_feasibility=False, X_seen=None)
    assert pick.tolist() == [CANDIDATES[1]]
    # an experiment already run (or pending) there: the next best in band, not a far one
    seen = torch.tensor([[0.47, 0.55 + 0.5 * EXCLUSION_RADIUS]], dtype=torch.float64)
    pick = greedy_select(opt.objective, model, X, has_feasibility=False, X_seen=seen)
    assert pick.tolist() == [CANDIDATES[0]]
    # every candidate seen: the exclusion is dropped rather than proposing nothing
    pick = greedy_select(opt.objective, model, X, has_feasibility=False, X_seen=X)
    assert pick.tolist() == [CANDIDATES[1]]


def _greedy_optimizer(seed: int, every: int | None) -> BotorchOptimizer:
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=seed, n_init=2,
                           ts_candidates=256, ts_greedy_every=every, **QUICK)
    _crawl_data(opt)
    _tell_points(opt, [[0.3, 0.4]])  # 11 told: the 12th experiment is a greedy one for k = 2
    return opt


def assert_bright_in_band_and_away(opt: BotorchOptimizer, x: dict[str, float],
                                   qy_above: float) -> None:
    """``x`` is in the 548-552 nm band, brighter than ``qy_above`` and clear of every told point.

    What an ask that leaves the crawl data's dim in-band readings (QY 0.07-0.15) must propose:
    the greedy step here and the stalled search's escape (test_escape.py) alike.
    """
    truth = peak_problem(opt.space, x)
    assert abs(truth["pl_peak_nm"] - 550.0) <= 2.0
    assert truth["qy"] > qy_above
    told = np.array([unit(opt.space, o.conditions) for o in opt.observations])
    assert float(np.linalg.norm(told - unit(opt.space, x), axis=1).min()) >= EXCLUSION_RADIUS


def test_a_greedy_ask_proposes_in_band_away_from_the_data_and_resumes_the_same() -> None:
    opt = _greedy_optimizer(seed=5, every=2)
    resumed = BotorchOptimizer.from_state(json.loads(json.dumps(opt.state_dict())))
    [x] = opt.ask(1)
    assert_bright_in_band_and_away(opt, x, qy_above=0.3)
    assert resumed.settings.ts_greedy_every == 2
    assert resumed.ask(1) == [x]


def test_a_batch_with_a_greedy_step_is_the_greedy_point_then_distinct_draws() -> None:
    opt = _greedy_optimizer(seed=5, every=2)
    [first] = _greedy_optimizer(seed=5, every=2).ask(1)
    batch = opt.ask(3)
    assert batch[0] == first
    u = np.array([unit(opt.space, x) for x in batch])
    gaps = [float(np.linalg.norm(u[i] - u[j])) for i in range(3) for j in range(i)]
    assert min(gaps) >= EXCLUSION_RADIUS


def test_the_greedy_ask_is_the_greedy_pick_of_the_thompson_candidate_set() -> None:
    """Wiring: the ask returns :func:`greedy_select` over the candidates a draw would see.

    Without a trust region the candidate set is a function of the fitted model and the ask's
    seed only, so it can be rebuilt here; the plain Thompson ask on the same data differs.
    """
    def make(every: int | None) -> BotorchOptimizer:
        opt = BotorchOptimizer(space_2d(), target_objective(), seed=3, n_init=2,
                               trust_region=False, ts_candidates=256, ts_greedy_every=every,
                               **QUICK)
        _tell_points(opt, [[0.5, 0.0], [0.499, 0.1], [0.1, 0.0], [0.9, 1.0], [0.2, 0.6]])
        return opt  # 5 told: the 6th experiment is greedy for k = 2 (and 3)

    opt = make(2)
    with torch.random.fork_rng():
        model, data, _, seed = opt._fit(0)
        anchors = anchor_points(opt.objective, model, data.X_ok, data.in_band_ok)
        X = candidate_set(opt.space, model, opt.objective, anchors, seed=derive_seed(seed, 7),
                          n=256)
        expected = greedy_select(opt.objective, model, X, has_feasibility=False,
                                 X_seen=data.X_all)
    [x] = opt.ask(1)
    assert unit(opt.space, x) == pytest.approx(expected[0].tolist(), abs=1e-9)
    [y] = make(None).ask(1)
    assert unit(opt.space, y) != pytest.approx(expected[0].tolist(), abs=1e-3)


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5, float("nan"), "half"])
def test_a_bad_temper_is_refused_naming_the_field(value: Any) -> None:
    assert_refused_both_ways({"ts_temper": value}, "ts_temper")


def test_a_tempered_draw_moves_from_the_draw_to_the_mean() -> None:
    """``temper`` near 0 picks the greedy point; 1 is the plain draw, the default."""
    opt, model, _ = _fitted_anchors()
    X = torch.tensor(CANDIDATES, dtype=torch.float64)
    spec = opt.objective
    assert BotorchOptimizer(space_2d(), target_objective()).settings.ts_temper == 1.0
    with torch.random.fork_rng():
        near_mean = [thompson_select(spec, model, X, 1, seed=s, has_feasibility=False,
                                     X_pending=None, temper=1e-6) for s in range(8)]
        plain = [thompson_select(spec, model, X, 1, seed=s, has_feasibility=False,
                                 X_pending=None) for s in range(8)]
        default = [thompson_select(spec, model, X, 1, seed=s, has_feasibility=False,
                                   X_pending=None, temper=1.0) for s in range(8)]
    greedy = greedy_select(spec, model, X, has_feasibility=False, X_seen=None)
    assert all(torch.equal(p, greedy) for p in near_mean)
    assert not all(torch.equal(p, greedy) for p in plain)  # a plain draw sometimes differs
    assert all(torch.equal(p, d) for p, d in zip(plain, default, strict=True))
