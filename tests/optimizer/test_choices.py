"""Optimizer choices measured on the reactor family (docs/benchmarks.md "Optimizer choices").

Real GPs on cheap analytic problems (``problems.py``); no mocks.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.acquisition import BandFirstLogEI, incumbent_rest

from .problems import FAST, assert_refused_both_ways, peak_problem, space_2d, target_objective


def _run(opt: BotorchOptimizer, n: int) -> None:
    for _ in range(n):
        [x] = opt.ask(1)
        opt.tell([x], [peak_problem(opt.space, x)], [{"pl_peak_nm": 0.3, "qy": 0.01}])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "much"])
def test_min_improvement_refuses_a_bad_value_naming_the_field(bad: object) -> None:
    assert_refused_both_ways({"min_improvement": bad}, "min_improvement",
                             r"settings\.min_improvement")


def test_min_improvement_raises_the_bar_of_the_expected_improvement() -> None:
    """The acquisition's bar is the best in-band posterior QY term plus ``min_improvement``.

    A point next to the incumbent, where the model is sure of its QY, then earns (almost) no
    expected improvement, while a point whose QY is uncertain keeps most of its value: the
    search stops crawling along the band in 1 % QY steps.
    """
    settings: dict[str, Any] = {**FAST, "n_init": 4, "min_improvement": 0.5}
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=2, **settings)
    _run(opt, 8)
    with torch.random.fork_rng():
        model, data, has_feas, seed = opt._fit(0)
        raised = opt._acquisition(model, data, has_feas, seed, None)
        opt.settings = opt.settings.model_copy(update={"min_improvement": 0.0})
        plain = opt._acquisition(model, data, has_feas, seed, None)
    assert isinstance(raised, BandFirstLogEI) and isinstance(plain, BandFirstLogEI)
    base = incumbent_rest(opt.objective, model, data.X_ok, data.in_band_ok)
    assert base is not None and plain.incumbent == pytest.approx(base)
    assert raised.incumbent == pytest.approx(base + 0.5)
    with torch.no_grad():
        drop = plain(data.X_ok.unsqueeze(-2)) - raised(data.X_ok.unsqueeze(-2))
    assert bool((drop > 0).all())  # a higher bar lowers every point's expected improvement
    # and a campaign runs with it, inside the space
    _run(opt, 2)
    assert len(opt.observations) == 10
