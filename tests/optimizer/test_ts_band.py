"""``ts_band: probability``: Thompson draws that take the band in expectation (real GPs)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.thompson import marginal_band_scores

from .problems import FAST, assert_refused_both_ways, peak_problem, space_2d, target_objective

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
    assert_refused_both_ways(settings, "ts_band")


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


def test_a_probability_draw_leaves_the_crawl_for_the_bright_band_and_is_reproducible() -> None:
    """After the crawl data the proposal is in band and brighter than any in-band experiment.

    (The in-band experiments have QY 0.07-0.15; the band's brightest region, u_b ~ 0.7, only
    QY 0.5 out of band.) A fresh optimizer told the same data proposes the same point.
    """
    proposals = []
    for _ in range(2):
        opt = BotorchOptimizer(space_2d(), target_objective(), seed=3, n_init=2,
                               ts_band="probability", **QUICK)
        _tell_crawl(opt)
        [x] = opt.ask(1)
        proposals.append(x)
    truth = peak_problem(opt.space, proposals[0])
    assert abs(truth["pl_peak_nm"] - 550.0) <= 2.0
    assert truth["qy"] > 0.3
    assert proposals[0] == proposals[1]
