"""Escape from a stalled trust region (``ts_escape``, ``ts_escape_after``): real GPs."""

from __future__ import annotations

import json
from typing import Any, get_args

import numpy as np
import pytest
import torch

from autolab.exceptions import ConfigError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.escape import (
    ESCAPE_RULES,
    EscapeContext,
    escape,
    p_improvement,
    stall_length,
)
from autolab.optimizer.settings import BotorchSettings, parse_optimizer_settings
from autolab.optimizer.thompson import EXCLUSION_RADIUS, candidate_set

from .problems import assert_refused_both_ways, peak_problem, space_2d, target_objective, unit
from .test_greedy import CANDIDATES, assert_bright_in_band_and_away
from .test_thompson import QUICK, _crawl_data, _fitted_anchors


@pytest.mark.parametrize(("field", "value"), [("ts_escape", "restart"), ("ts_escape", 1),
                                              ("ts_escape_after", 0), ("ts_escape_after", -2),
                                              ("ts_escape_after", "soon")])
def test_a_bad_escape_setting_is_refused_naming_the_field(field: str, value: Any) -> None:
    assert_refused_both_ways({field: value}, field)


@pytest.mark.parametrize("settings", [{"trust_region": False, "acquisition": "ts"},
                                      {"acquisition": "band_ei"}])
def test_an_escape_without_a_trust_region_is_refused(settings: dict[str, Any]) -> None:
    for escape_settings in ({"ts_escape": "global_pi"}, {"ts_escape_after": 6}):
        with pytest.raises(ConfigError, match="ts_escape"):
            parse_optimizer_settings("botorch", {**settings, **escape_settings})


def test_the_default_never_escapes_and_every_rule_is_a_setting() -> None:
    settings = BotorchSettings()
    assert settings.ts_escape == "none"
    assert set(ESCAPE_RULES) == set(get_args(BotorchSettings.model_fields["ts_escape"].annotation))


def test_the_stall_counts_steps_since_the_best_in_band_score_improved() -> None:
    assert stall_length([]) is None
    assert stall_length([None, None]) is None
    assert stall_length([None, 0.2]) == 0
    assert stall_length([0.2, None, 0.1, None]) == 3
    assert stall_length([0.2, None, 0.3, None]) == 1
    assert stall_length([0.2, 0.2, 0.2]) == 2  # equal is no improvement (read noise)
    assert stall_length([0.2, *[None] * 40]) == 40  # no reset where TuRBO halves the box


def test_the_improvement_probability_ranks_an_unmeasured_bright_band_point_first() -> None:
    opt, model, _ = _fitted_anchors()
    X = torch.tensor(CANDIDATES, dtype=torch.float64)
    p = p_improvement(opt.objective, model, X, incumbent=1.49)  # best in-band QY 0.149 / 0.1
    assert bool(((p >= 0) & (p <= 1)).all())
    assert int(torch.argmax(p)) == 1  # in band, QY 0.46 (the told in-band point is 0.10)
    assert float(p[2]) < 0.05 and float(p[3]) < 0.05  # bright, but 25-45 nm out of band
    higher = p_improvement(opt.objective, model, X, incumbent=1.49, margin=1.0)
    assert bool((higher <= p).all())


def _context(stall: int, after: int) -> EscapeContext:
    opt, model, anchors = _fitted_anchors()
    data = opt._data()
    with torch.random.fork_rng():
        box = candidate_set(opt.space, model, opt.objective, anchors, seed=1, n=64,
                            trust_length=0.2)
    return EscapeContext(space=opt.space, spec=opt.objective, model=model, X_box=box,
                         X_ok=data.X_ok, in_band_ok=data.in_band_ok, X_seen=data.X_all,
                         stall=stall, after=after, seed=5, length=0.2)


def test_an_escape_acts_only_once_the_search_has_stalled() -> None:
    assert escape("none", _context(stall=9, after=3)) is None
    assert escape("global_draw", _context(stall=2, after=3)) is None
    assert escape("global_pi", _context(stall=2, after=3)) is None
    assert escape("global_pi", _context(stall=4, after=3)) is None  # once per `after` stalls


def test_a_global_draw_adds_candidates_of_the_whole_space_to_the_box() -> None:
    ctx = _context(stall=3, after=3)
    with torch.random.fork_rng():
        out = escape("global_draw", ctx)
    assert out is not None and out.candidates is not None and out.point is None
    X = out.candidates
    assert X.shape == ctx.X_box.shape
    assert torch.equal(X[:32], ctx.X_box[:32])
    lo, hi = ctx.X_box.min(dim=0).values, ctx.X_box.max(dim=0).values
    outside = ((X[32:] < lo) | (X[32:] > hi)).any(dim=-1)
    assert int(outside.sum()) > 16  # the box is 0.2 wide: most of the space lies outside


def test_a_global_pi_step_is_the_space_wide_improvement_argmax_away_from_the_data() -> None:
    ctx = _context(stall=6, after=3)
    with torch.random.fork_rng():
        out = escape("global_pi", ctx)
        G = ctx.global_candidates(ctx.X_box.shape[0])
    assert out is not None and out.point is not None and out.candidates is None
    x = out.point[0]
    assert float(torch.cdist(out.point, ctx.X_seen).min()) >= EXCLUSION_RADIUS
    with torch.no_grad():
        incumbent = float(ctx.model.posterior(ctx.X_ok).mean[..., 1][ctx.in_band_ok].max()) / 0.1
    p = p_improvement(ctx.spec, ctx.model, G, incumbent)
    far = (torch.cdist(G, ctx.X_seen) >= EXCLUSION_RADIUS).all(dim=-1)
    assert float(p_improvement(ctx.spec, ctx.model, out.point, incumbent)[0]) == pytest.approx(
        float(p[far].max()))
    truth = peak_problem(ctx.space, ctx.space.from_unit(x.numpy()[None])[0])
    assert abs(truth["pl_peak_nm"] - 550.0) <= 4.0
    assert truth["qy"] > 0.2  # every in-band reading is 0.07-0.15


def test_a_global_centre_moves_the_box_onto_the_space_wide_improvement_argmax() -> None:
    ctx = _context(stall=3, after=3)
    assert escape("global_centre", _context(stall=2, after=3)) is None
    with torch.random.fork_rng():
        out = escape("global_centre", ctx)
        pi = escape("global_pi", ctx)
    assert out is not None and out.candidates is not None and out.point is None
    assert pi is not None and pi.point is not None
    X = out.candidates
    assert X.shape[1] == 2 and 0 < X.shape[0] <= ctx.X_box.shape[0]
    assert bool(((X - pi.point).abs() <= 0.1 + 1e-9).all())  # a 0.2 box around that point


def _stalled_optimizer(rule: str) -> BotorchOptimizer:
    """The crawl data: 4 improving in-band steps (QY 0.07-0.15), then 6 out of band (stall 6)."""
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=5, n_init=2, ts_candidates=256,
                           ts_escape=rule, ts_escape_after=3, **QUICK)
    _crawl_data(opt)
    return opt


def test_a_stalled_search_escapes_to_a_brighter_band_point_and_resumes_the_same() -> None:
    opt = _stalled_optimizer("global_pi")
    resumed = BotorchOptimizer.from_state(json.loads(json.dumps(opt.state_dict())))
    [x] = opt.ask(1)
    assert_bright_in_band_and_away(opt, x, qy_above=0.2)
    assert resumed.settings.ts_escape == "global_pi"
    assert resumed.ask(1) == [x]
    [y] = _stalled_optimizer("none").ask(1)
    assert y != x  # the default draws in the box


def test_a_batch_with_an_escape_is_the_escape_point_then_distinct_draws() -> None:
    [first] = _stalled_optimizer("global_pi").ask(1)
    opt = _stalled_optimizer("global_pi")
    batch = opt.ask(3)
    assert batch[0] == first
    u = np.array([unit(opt.space, x) for x in batch])
    gaps = [float(np.linalg.norm(u[i] - u[j])) for i in range(3) for j in range(i)]
    assert min(gaps) >= EXCLUSION_RADIUS


@pytest.mark.parametrize("rule", ["global_draw", "global_centre"])
def test_a_stalled_ask_resumes_the_same(rule: str) -> None:
    opt = _stalled_optimizer(rule)
    resumed = BotorchOptimizer.from_state(json.loads(json.dumps(opt.state_dict())))
    [x] = opt.ask(1)
    assert resumed.ask(1) == [x]
    assert x != _stalled_optimizer("none").ask(1)[0]
