"""Thompson draws conditioned on pending points at their posterior mean (``ts_pending: believer``).

Real BoTorch GPs on the cheap analytic problems; the believer is checked against a GP that has
actually been told the believed readings (BoTorch's ``condition_on_observations``, no refit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms.outcome import Standardize

from autolab.exceptions import OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.believer import believe, draw_model
from autolab.optimizer.pending import noise_variance
from autolab.optimizer.thompson import EXCLUSION_RADIUS

from .problems import FAST, peak_problem, space_2d, target_objective, unit

SD = {"pl_peak_nm": 0.3, "qy": 0.01}
QUICK: dict[str, Any] = dict(FAST)
F64 = torch.float64


def _gp(seed: int = 0) -> SingleTaskGP:
    """A fixed-noise GP on 12 points of a smooth 2-D function (hyperparameters as built)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(12, 2, generator=g, dtype=F64)
    Y = (torch.sin(6 * X[:, :1]) + X[:, 1:] ** 2) * 3.0
    gp = SingleTaskGP(X, Y, train_Yvar=torch.full_like(Y, 0.01),
                      outcome_transform=Standardize(m=1))
    gp.eval()
    return gp


def test_the_believer_equals_the_gp_told_its_own_mean_at_the_pending_points() -> None:
    gp = _gp()
    X_p = torch.tensor([[0.2, 0.8], [0.7, 0.3]], dtype=F64)
    X = torch.rand(30, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        mean_p = gp.posterior(X_p).mean
        # BoTorch takes the noise in the GP's standardized units, the believer in outcome units
        transform: Any = gp.outcome_transform
        noise = noise_variance(gp) / float(transform.stdvs) ** 2
        told = gp.condition_on_observations(X_p, mean_p, noise=torch.full_like(mean_p, noise))
        want: Any = told.posterior(X)
        got = believe(gp, X_p).models[0].posterior(X)
        before = gp.posterior(X)
    assert torch.allclose(got.mean, before.mean, atol=1e-8)  # the mean is what it was
    assert torch.allclose(got.mean, want.mean, atol=1e-6)
    assert torch.allclose(got.distribution.covariance_matrix,
                          want.distribution.covariance_matrix, atol=1e-6)


def test_the_believer_shrinks_the_variance_near_pending_points_only() -> None:
    gp = _gp()
    X_p = torch.tensor([[0.5, 0.5]], dtype=F64)
    near_far = torch.tensor([[0.51, 0.5], [0.0, 1.0]], dtype=F64)
    with torch.no_grad():
        before = gp.posterior(near_far).variance.squeeze(-1)
        after = believe(gp, X_p).posterior(near_far).variance.squeeze(-1)
    assert bool((after <= before + 1e-12).all())
    assert float(after[0]) < 0.5 * float(before[0])  # next to the pending point
    assert float(after[1]) > 0.9 * float(before[1])  # far from it: hardly touched


def test_draw_model_is_the_model_itself_unless_believer_with_something_pending() -> None:
    gp = _gp()
    X_p = torch.tensor([[0.5, 0.5]], dtype=F64)
    assert draw_model("exclude", gp, X_p) is gp
    assert draw_model("believer", gp, None) is gp
    assert draw_model("believer", gp, X_p[:0]) is gp
    assert draw_model("believer", gp, X_p) is not gp


def _crawled(**settings: Any) -> BotorchOptimizer:
    """An optimizer past the band's first hit (so asks sample), on ``peak_problem``."""
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=3, n_init=2, **QUICK, **settings)
    for u in ([0.5, 0.0], [0.5, 0.05], [0.499, 0.1], [0.1, 0.7], [0.9, 0.7], [0.1, 0.0],
              [0.9, 1.0]):
        x = opt.space.from_unit(np.array([u]))[0]
        opt.tell([x], [peak_problem(opt.space, x)], [SD])
    return opt


def test_an_ask_without_pending_proposes_what_the_default_proposes() -> None:
    """Steady campaigns ask without pending points: the setting must not change them."""
    assert _crawled(ts_pending="believer").ask(1) == _crawled().ask(1)
    assert _crawled(ts_pending="believer").ask(2) == _crawled(ts_pending="exclude").ask(2)
    # a batch whose first point is a greedy pick: the draws after it believe nothing either
    greedy = {"ts_greedy_every": 2}
    assert (_crawled(ts_pending="believer", **greedy).ask(4)
            == _crawled(ts_pending="exclude", **greedy).ask(4))


def test_an_ask_with_pending_samples_away_from_them_and_not_by_the_band_ei() -> None:
    pending = [_crawled().ask(1)[0]]
    believer = _crawled(ts_pending="believer")
    first = believer.ask(1, pending=pending)
    assert first == _crawled(ts_pending="believer").ask(1, pending=pending)  # deterministic
    assert first != _crawled().ask(1, pending=pending)  # the default hands it to the EI
    assert np.linalg.norm(np.subtract(unit(believer.space, first[0]),
                                      unit(believer.space, pending[0]))) >= EXCLUSION_RADIUS


def test_believer_with_a_continuous_thompson_step_is_refused_naming_both() -> None:
    with pytest.raises(OptimizerError, match=r"ts_pending 'believer'.*ts_optimizer"):
        BotorchOptimizer(space_2d(), target_objective(), ts_pending="believer",
                         ts_optimizer="continuous")


def test_believer_where_no_ask_samples_is_refused_naming_it() -> None:
    with pytest.raises(OptimizerError, match=r"ts_pending.*never uses"):
        BotorchOptimizer(space_2d(), target_objective(), acquisition="band_ei",
                         ts_pending="believer")
