"""``ts_band: probability``: Thompson draws that take the band in expectation (real GPs)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from autolab.exceptions import ConfigError, OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.acquisition import incumbent_rest
from autolab.optimizer.settings import parse_optimizer_settings
from autolab.optimizer.thompson import (
    anchor_points,
    candidate_set,
    marginal_band_scores,
    thompson_select,
)

from .problems import FAST, peak_problem, space_2d, target_objective

SD = {"pl_peak_nm": 0.3, "qy": 0.01}
QUICK: dict[str, Any] = dict(FAST)


def _tell_crawl(opt: BotorchOptimizer) -> None:
    """In-band experiments only at low ``u_b`` (dim QY), a few bright ones out of band.

    ``peak_problem``: PL = 500 + 100 u_a + 10 u_b^2, QY = 0.5 exp(-4 (u_b - 0.7)^2).
    """
    for u in ([0.5, 0.0], [0.5, 0.05], [0.499, 0.1], [0.498, 0.15], [0.1, 0.7], [0.9, 0.7],
              [0.1, 0.0], [0.9, 0.0], [0.1, 1.0], [0.9, 1.0]):
        x = opt.space.from_unit(np.array([u]))[0]
        opt.tell([x], [peak_problem(opt.space, x)], [SD])


@pytest.mark.parametrize("settings", [{"ts_band": "maybe"}, {"ts_band": 1},
                                      {"ts_band": "probability", "ts_optimizer": "continuous"},
                                      {"ts_band": "probability", "acquisition": "band_ei"}])
def test_bad_or_contradictory_ts_band_settings_are_refused_naming_it(
        settings: dict[str, Any]) -> None:
    with pytest.raises(OptimizerError, match="ts_band"):
        BotorchOptimizer(space_2d(), target_objective(), **settings)
    with pytest.raises(ConfigError, match="ts_band"):
        parse_optimizer_settings("botorch", settings)


def test_the_default_draws_the_band_and_a_saved_state_reads_the_setting_back() -> None:
    assert BotorchOptimizer(space_2d(), target_objective()).settings.ts_band == "draw"
    opt = BotorchOptimizer(space_2d(), target_objective(), ts_band="probability", **QUICK)
    again = BotorchOptimizer.from_state(opt.state_dict())
    assert again.settings.ts_band == "probability"


def test_scores_weigh_the_drawn_improvement_by_the_band_probability() -> None:
    """A bright draw that is likely out of band loses to a less bright, surely in-band one."""
    spec = target_objective()
    # draws of (PL, QY, feasibility latent) for 4 candidates; PL is ignored by the rule
    Z = torch.tensor([[[550.0, 0.60, 1.0], [500.0, 0.45, 1.0], [550.0, 0.30, 1.0],
                       [550.0, 0.90, -1.0]]], dtype=torch.float64)
    log_p = torch.tensor([math.log(0.05), math.log(0.9), math.log(0.9), 0.0],
                         dtype=torch.float64)
    s = marginal_band_scores(spec, Z, log_p, True, incumbent=3.5)[0]  # 0.35 QY in score units
    # 0.05 * 2.5 < 0.9 * 1.0: the drawn PL of candidate 1 (out of band) does not matter
    assert int(torch.argmax(s)) == 1
    assert float(s[2]) < float(s[1])  # below the incumbent: still ranked, lower
    assert float(s[3]) < float(s[:3].min())  # a drawn failure scores below every success


def test_probability_draws_propose_nearer_the_band_than_the_plain_draws() -> None:
    """Over one candidate set, the chosen points' true PL misses the band by less."""
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=0, n_init=2, **QUICK)
    _tell_crawl(opt)
    with torch.random.fork_rng():
        model, data, _, _ = opt._fit(0)
        anchors = anchor_points(opt.objective, model, data.X_ok, data.in_band_ok)
        X = candidate_set(opt.space, model, opt.objective, anchors, seed=1, n=256)
        inc = incumbent_rest(opt.objective, model, data.X_ok, data.in_band_ok)
        assert inc is not None
        plain = thompson_select(opt.objective, model, X, 12, seed=3, has_feasibility=False,
                                X_pending=None)
        weighed = thompson_select(opt.objective, model, X, 12, seed=3, has_feasibility=False,
                                  X_pending=None, incumbent=inc)

    def miss_nm(u: torch.Tensor) -> float:
        return float(np.median([abs(peak_problem(opt.space, opt.space.from_unit(
            np.array([row.tolist()]))[0])["pl_peak_nm"] - 550.0) for row in u]))

    assert miss_nm(weighed) < miss_nm(plain)
