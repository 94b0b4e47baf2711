"""BandFirstLogEI's log terms read each outcome GP's own marginal, not the model list's joint.

The per-GP posterior must give what the model list's posterior gives (outcome units, the
feasibility GP last), values and gradients, at random points: real fitted BoTorch GPs, no mocks.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from autolab.optimizer.acquisition import MIN_SD, BandFirstLogEI
from autolab.optimizer.models import build_model_list

from .problems import target_objective


def _acquisition(with_feasibility: bool) -> BandFirstLogEI:
    """Fitted GPs of a PL peak (nm) and QY on 14 random points; 4 of 18 failed if asked."""
    gen = torch.Generator().manual_seed(11)
    X_all = torch.rand(18, 2, dtype=torch.float64, generator=gen)
    ok = torch.ones(18, dtype=torch.bool)
    if with_feasibility:
        ok[X_all[:, 0].argsort()[-4:]] = False  # the 4 largest u_a clogged
    X_ok = X_all[ok] if with_feasibility else X_all[:14]
    pl = 500.0 + 100.0 * X_ok[:, :1] + 10.0 * X_ok[:, 1:] ** 2
    qy = 0.6 * torch.exp(-((X_ok[:, 1:] - 0.7) ** 2) / 0.05)
    model = build_model_list(X_ok, torch.cat([pl, qy], dim=-1),
                             X_all if with_feasibility else None,
                             ok if with_feasibility else None,
                             names=["pl_peak_nm", "qy"], maxiter=50, seed=3)
    return BandFirstLogEI(model, target_objective(), incumbent=1.5,
                          has_feasibility=with_feasibility)


def _joint_terms(acqf: BandFirstLogEI, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """The former path: the model list's joint posterior, marginals read back."""
    post: Any = acqf.model.posterior(X.unsqueeze(-2))
    sd = post.variance.squeeze(-2).clamp_min(MIN_SD**2).sqrt()
    return acqf._terms(post.mean.squeeze(-2), sd, acqf.incumbent)


@pytest.mark.parametrize("with_feasibility", [False, True])
def test_per_gp_marginals_equal_the_joint_posterior(with_feasibility: bool) -> None:
    acqf = _acquisition(with_feasibility)
    X = torch.rand(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    X_new, X_old = X.clone().requires_grad_(True), X.clone().requires_grad_(True)
    new, old = acqf.log_terms(X_new), _joint_terms(acqf, X_old)
    assert set(new) == set(old)
    for key in new:
        assert torch.allclose(new[key], old[key], rtol=0, atol=1e-10), key
    assert bool(new["improvement"].isfinite().all())
    assert with_feasibility == bool((new["feasibility"] != 0).any())
    sum(t.sum() for t in new.values()).backward()  # type: ignore[union-attr]
    sum(t.sum() for t in old.values()).backward()  # type: ignore[union-attr]
    assert X_new.grad is not None and X_old.grad is not None
    assert torch.allclose(X_new.grad, X_old.grad, rtol=0, atol=1e-10)
