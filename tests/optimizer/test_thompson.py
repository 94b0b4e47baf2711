"""Constrained Thompson sampling (``acquisition: ts``): real GPs on cheap analytic problems."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from autolab.exceptions import ConfigError, OptimizerError
from autolab.objective import ObjectiveSpec, OutcomeConstraint
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.settings import parse_optimizer_settings
from autolab.optimizer.thompson import (
    EXCLUSION_RADIUS,
    TR_LENGTH_INIT,
    anchor_points,
    candidate_set,
    credible,
    sample_scores,
    trust_region_length,
)

from .problems import (
    FAST,
    assert_refused_both_ways,
    pareto_objective,
    peak_problem,
    space_2d,
    space_3d_constrained,
    target_objective,
    unit,
)

SD = {"pl_peak_nm": 0.3, "qy": 0.01}
#: The shared fast settings, typed for keyword unpacking.
QUICK: dict[str, Any] = dict(FAST)


def _at(opt: BotorchOptimizer, u: list[float]) -> dict[str, float]:
    return opt.space.from_unit(np.array([u]))[0]


def _tell_points(opt: BotorchOptimizer, points: list[list[float]]) -> None:
    for u in points:
        x = _at(opt, u)
        opt.tell([x], [peak_problem(opt.space, x)], [SD])


def _crawl_data(opt: BotorchOptimizer) -> None:
    """In-band experiments only at dim ``b`` (QY 0.07-0.15 of 0.5) plus a few elsewhere.

    ``peak_problem``: PL = 500 + 100 u_a + 10 u_b^2 (band 548-552 nm at u_a ~ 0.5 - 0.1 u_b^2),
    QY = 0.5 exp(-4 (u_b - 0.7)^2): the brightest in-band region is u_b ~ 0.7, never measured in
    band, but the out-of-band points there show its QY.
    """
    _tell_points(opt, [[0.5, 0.0], [0.5, 0.05], [0.499, 0.1], [0.498, 0.15],
                       [0.1, 0.7], [0.9, 0.7], [0.1, 0.0], [0.9, 0.0], [0.1, 1.0], [0.9, 1.0]])


@pytest.mark.parametrize(("field", "value"), [("acquisition", "thompson"), ("acquisition", 1),
                                              ("ts_candidates", 8), ("ts_candidates", "many"),
                                              ("trust_region", "maybe"),
                                              ("ts_band_floor", 1.0), ("ts_band_floor", -0.1),
                                              ("trust_region_init", 0.0),
                                              ("trust_region_init", 2.0),
                                              ("trust_region_init", float("nan"))])
def test_bad_settings_are_refused_naming_the_field(field: str, value: Any) -> None:
    assert_refused_both_ways({field: value}, field, rf"settings\.{field}")


def test_trust_region_without_thompson_sampling_is_refused() -> None:
    assert_refused_both_ways({"acquisition": "band_ei", "trust_region": True},
                             "trust_region applies to Thompson sampling")


def test_a_trust_region_size_without_a_trust_region_is_refused() -> None:
    # It would be silently ignored; the default value passes (saved states write it down).
    for off in ({"acquisition": "band_ei"}, {"trust_region": False}):
        with pytest.raises(ConfigError, match=r"trust_region_init 0\.4 sizes the trust region"):
            parse_optimizer_settings("botorch", {**off, "trust_region_init": 0.4})
        parse_optimizer_settings("botorch", {**off, "trust_region_init": 0.8})
    with pytest.raises(OptimizerError, match="trust_region_init"):
        BotorchOptimizer(space_2d(), target_objective(), trust_region=False,
                         trust_region_init=0.3)


def test_thompson_sampling_with_a_pareto_objective_is_refused() -> None:
    with pytest.raises(OptimizerError, match="needs a scalar objective"):
        BotorchOptimizer(space_2d(), pareto_objective(), acquisition="ts")


def test_the_default_is_band_first_ei_then_thompson_sampling_in_a_trust_region() -> None:
    settings = BotorchOptimizer(space_2d(), target_objective()).settings
    assert (settings.acquisition, settings.trust_region) == ("band_ei_then_ts", True)


def test_band_ei_alone_turns_the_default_trust_region_off_and_reads_back() -> None:
    opt = BotorchOptimizer(space_2d(), target_objective(), acquisition="band_ei")
    assert (opt.settings.acquisition, opt.settings.trust_region) == ("band_ei", False)
    again = BotorchOptimizer.from_state(opt.state_dict())
    assert again.settings == opt.settings


def test_a_pareto_objective_gets_qlognehvi_by_default_and_its_state_reads_back() -> None:
    opt = BotorchOptimizer(space_2d(), pareto_objective())
    assert (opt.settings.acquisition, opt.settings.trust_region) == ("band_ei", False)
    again = BotorchOptimizer.from_state(opt.state_dict())
    assert again.settings == opt.settings


@pytest.mark.parametrize("acquisition", ["ts", "band_ei_then_ts"])
def test_a_proposal_lands_in_the_brighter_band_region(acquisition: str) -> None:
    """With the band known only where QY is low, TS goes where band and bright QY meet.

    Every seed's proposal must be brighter than every in-band experiment so far and at most a
    few nm from the band (the PL model is not exact away from the data).
    """
    for seed in range(3):
        opt = BotorchOptimizer(space_2d(), target_objective(), seed=seed, n_init=2,
                               acquisition=acquisition, **QUICK)
        _crawl_data(opt)
        [x] = opt.ask(1)
        out = peak_problem(opt.space, x)
        assert out["qy"] > 0.3, (seed, unit(opt.space, x), out)
        assert abs(out["pl_peak_nm"] - 550.0) < 6.0, (seed, unit(opt.space, x), out)


def test_a_proposal_is_deterministic_under_the_seed() -> None:
    def propose(seed: int) -> list[dict[str, float]]:
        opt = BotorchOptimizer(space_2d(), target_objective(), seed=seed, n_init=2,
                               acquisition="ts", **QUICK)
        _crawl_data(opt)
        return opt.ask(2)

    assert propose(4) == propose(4)
    assert propose(4) != propose(5)


@pytest.mark.parametrize("ts_optimizer", ["discrete", "continuous"])
def test_a_batch_and_pending_points_get_distinct_proposals(ts_optimizer: str) -> None:
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=0, n_init=2, acquisition="ts",
                           ts_pending="exclude", ts_optimizer=ts_optimizer, **QUICK)
    _crawl_data(opt)
    batch = [unit(opt.space, x) for x in opt.ask(3)]
    dist = [np.linalg.norm(np.subtract(a, b)) for i, a in enumerate(batch) for b in batch[i + 1:]]
    assert min(dist) >= EXCLUSION_RADIUS
    pending = opt.ask(1)
    [x] = opt.ask(1, pending=pending)
    assert np.linalg.norm(np.subtract(unit(opt.space, x),
                                      unit(opt.space, pending[0]))) >= EXCLUSION_RADIUS


def test_a_campaign_with_a_trust_region_stays_inside_the_space_and_constraints() -> None:
    space = space_3d_constrained()
    opt = BotorchOptimizer(space, target_objective(), seed=3, n_init=3, acquisition="ts",
                           trust_region=True, ts_candidates=256, **QUICK)
    for _ in range(9):
        [x] = opt.ask(1)
        assert x["a"] + x["c"] <= 12.0 + 1e-9
        u = unit(space, x)
        out = peak_problem(space, x)
        out["pl_peak_nm"] += 5.0 * u[2]
        opt.tell([x], [out], [SD])
    assert len(opt.observations) == 9
    assert opt.best() is not None


def test_trust_region_length_follows_successes_and_failures() -> None:
    assert trust_region_length([None, None], dim=5) is None
    assert trust_region_length([None, 0.2], dim=5) == TR_LENGTH_INIT
    assert trust_region_length([0.2, 0.3, 0.4, 0.5], dim=5) == pytest.approx(2 * TR_LENGTH_INIT)
    assert trust_region_length([0.5, *[None] * 5], dim=5) == pytest.approx(TR_LENGTH_INIT / 2)
    assert trust_region_length([0.5, *[0.4] * 4], dim=5) == TR_LENGTH_INIT  # 4 < max(4, 5)
    # shrinking below the smallest side restarts at the initial one
    assert trust_region_length([0.5, *[None] * 35], dim=5) == TR_LENGTH_INIT  # 0.8 / 2^7 < min


def test_trust_region_init_sets_the_first_side_and_the_side_of_every_restart() -> None:
    assert trust_region_length([None, 0.2], dim=5, length_init=0.4) == 0.4
    assert trust_region_length([0.5, *[None] * 5], dim=5, length_init=0.4) == pytest.approx(0.2)
    # 0.4 / 2^6 < 0.5^7 restarts after 30 failures (0.8 needs 35)
    assert trust_region_length([0.5, *[None] * 30], dim=5, length_init=0.4) == 0.4
    assert trust_region_length([0.5, *[None] * 30], dim=5) == pytest.approx(TR_LENGTH_INIT / 64)


def test_an_optimizer_with_a_small_trust_region_proposes_next_to_the_best_in_band_point() -> None:
    """``trust_region_init`` reaches the proposal: a 0.1 box around the anchor [0.498, 0.15]."""
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=4, n_init=2,
                           trust_region_init=0.1, ts_candidates=256, **QUICK)
    _crawl_data(opt)
    resumed = BotorchOptimizer.from_state(json.loads(json.dumps(opt.state_dict())))
    [x] = opt.ask(1)
    assert unit(opt.space, x) == pytest.approx([0.498, 0.15], abs=0.05 + 1e-9)
    assert resumed.settings.trust_region_init == 0.1
    assert resumed.ask(1) == [x]  # the box is a function of the saved history and settings
    wide = BotorchOptimizer(space_2d(), target_objective(), seed=4, n_init=2,
                            ts_candidates=256, **QUICK)
    _crawl_data(wide)
    [y] = wide.ask(1)
    assert float(np.abs(np.subtract(unit(wide.space, y), [0.498, 0.15])).max()) > 0.05


def test_scores_put_feasible_draws_first_and_then_the_least_violation() -> None:
    spec = ObjectiveSpec(terms=target_objective().terms,
                         constraints=(OutcomeConstraint.parse("qy >= 0.2"),))
    Z = torch.tensor([[551.0, 0.25],    # in band, feasible, dim
                      [549.0, 0.45],    # in band, feasible, bright
                      [560.0, 0.90],    # 3 tolerances out of band
                      [553.0, 0.10],    # half a tolerance out, and 0.1 short of the constraint
                      [548.5, 0.15]],   # in band, 0.05 short of the constraint
                     dtype=torch.float64)
    scores = sample_scores(spec, Z, has_feasibility=False)
    assert torch.argsort(scores, descending=True).tolist() == [1, 0, 4, 3, 2]


def _fitted_anchors() -> tuple[BotorchOptimizer, Any, torch.Tensor]:
    """The crawl data's fitted model and its best successes (the Thompson anchors)."""
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=0, n_init=2, **QUICK)
    _crawl_data(opt)
    with torch.random.fork_rng():
        model, data, _, _ = opt._fit(0)
    return opt, model, anchor_points(opt.objective, model, data.X_ok, data.in_band_ok)


def test_trust_region_candidates_lie_in_the_box_around_the_best_in_band_point() -> None:
    opt, model, anchors = _fitted_anchors()
    with torch.random.fork_rng():
        X = candidate_set(opt.space, model, opt.objective, anchors, seed=1, n=200,
                          trust_length=0.2)
        wide = candidate_set(opt.space, model, opt.objective, anchors, seed=1, n=200)
    # the best in-band experiment by posterior QY is the one nearest the bright region
    assert anchors[0].tolist() == pytest.approx([0.498, 0.15], abs=1e-6)
    assert 100 <= X.shape[0] <= 200
    assert bool(((X - anchors[0]).abs() <= 0.1 + 1e-12).all())
    assert float((wide - anchors[0]).abs().max()) > 0.5  # without it: the whole space


def test_a_band_floor_drops_the_long_shots_and_keeps_all_if_none_is_credible() -> None:
    opt, model, anchors = _fitted_anchors()
    with torch.random.fork_rng():
        X = candidate_set(opt.space, model, opt.objective, anchors, seed=1, n=300)
        kept = credible(opt.objective, model, X, 0.2)
        assert credible(opt.objective, model, X, 0.0) is X
        assert credible(opt.objective, model, X[:0], 0.2).shape[0] == 0
    assert 0 < kept.shape[0] < X.shape[0]
    # the true PL of what is kept is near the band; the whole set strays further
    def miss(u: torch.Tensor) -> list[float]:
        return [abs(peak_problem(opt.space, _at(opt, row.tolist()))["pl_peak_nm"] - 550.0)
                for row in u]
    # kept: 115 of 300, true PL median 0.2 nm off target; all: median 4 nm, mean 10 nm
    assert float(np.median(miss(kept))) < 2.0 < float(np.median(miss(X)))
    assert float(np.mean(miss(kept))) < 0.2 * float(np.mean(miss(X)))


def test_with_pending_points_ts_pending_band_ei_proposes_by_the_band_first_ei() -> None:
    """``ts_pending: band_ei``: once in band, a pending experiment hands the ask to the EI path.

    The proposal then equals that of an optimizer whose acquisition is ``band_ei`` (same seed,
    same data, same pending point), and without pending points it is Thompson sampling's.
    """
    def optimizer(**settings: Any) -> BotorchOptimizer:
        opt = BotorchOptimizer(space_2d(), target_objective(), seed=2, n_init=2, **QUICK,
                               **settings)
        _crawl_data(opt)
        return opt

    pending = optimizer().ask(1)
    handed = optimizer(ts_pending="band_ei")
    assert handed.ask(1, pending=pending) == optimizer(acquisition="band_ei").ask(1,
                                                                                   pending=pending)
    assert handed.ask(1) == optimizer(ts_pending="exclude").ask(1) != optimizer(
        acquisition="band_ei").ask(1)
    with pytest.raises(OptimizerError, match="ts_pending"):
        optimizer(ts_pending="fantasize")


def test_a_state_saved_before_thompson_sampling_resumes_with_the_band_first_ei() -> None:
    for objective in (target_objective(), pareto_objective()):
        opt = BotorchOptimizer(space_2d(), objective, acquisition="band_ei")
        state = opt.state_dict()
        old = {k: v for k, v in state["settings"].items()
               if k not in ("acquisition", "trust_region", "ts_pending")}
        saved = {**state, "settings": old}
        assert BotorchOptimizer.from_state(saved).settings.acquisition == "band_ei"
        fresh = BotorchOptimizer(space_2d(), objective)
        fresh.load_state_dict(saved)
        assert fresh.settings.acquisition == "band_ei"


def test_a_trust_region_for_a_pareto_objective_is_refused_naming_it() -> None:
    with pytest.raises(OptimizerError, match="trust_region belongs to Thompson sampling"):
        BotorchOptimizer(space_2d(), pareto_objective(), trust_region=True)


@pytest.mark.parametrize("setting", [{"ts_candidates": 256}, {"ts_band_floor": 0.2},
                                     {"ts_pending": "exclude"}, {"ts_greedy_every": 2},
                                     {"ts_temper": 0.5}])
def test_thompson_settings_are_refused_where_no_ask_samples(setting: dict[str, Any]) -> None:
    """``acquisition: band_ei`` never samples: a Thompson setting there would be ignored."""
    [name] = setting
    assert_refused_both_ways({"acquisition": "band_ei", **setting}, rf"{name}.*never uses", name)
    parse_optimizer_settings("botorch", setting)  # sampled by the default acquisition


def test_a_trust_region_centre_without_a_trust_region_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"trust_region_centre.*off here"):
        parse_optimizer_settings("botorch", {"trust_region": False,
                                             "trust_region_centre": "posterior"})
    parse_optimizer_settings("botorch", {"trust_region": False})
