"""The large-n GP path (issue 10): subset-fitted hyperparameters, sparse posterior on all points.

The thresholds are lowered (monkeypatch or ``large_n=``) so each test runs on tens to a few
hundred points in seconds; the timing goal itself is checked by ``benchmarks/ask_timing.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from botorch.models.gp_regression import SingleTaskGP

from autolab.objective import qd_objective
from autolab.optimizer import BotorchOptimizer, scalable
from autolab.optimizer.design import random_design
from autolab.optimizer.models import build_model_list
from autolab.optimizer.scalable import SparseGP, fit_subset, greedy_inducing
from autolab.space import qd_space

F64 = torch.float64


def _truth(X: torch.Tensor) -> torch.Tensor:
    return torch.sin(3 * X[:, 0]) + X[:, 1] ** 2 + 0.5 * torch.cos(2 * X[:, 2])


def _data(n: int, seed: int = 0, d: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` points with heteroscedastic known noise: a fifth steady (sd 0.02), the rest 0.1."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, dtype=F64, generator=gen)
    sd = torch.where(torch.rand(n, dtype=F64, generator=gen) < 0.2, 0.02, 0.1).to(F64)
    y = _truth(X) + sd * torch.randn(n, dtype=F64, generator=gen)
    return X, y.unsqueeze(-1), (sd**2).unsqueeze(-1)


def _mean_sd(model: object, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        post = model.posterior(X)  # type: ignore[attr-defined]
        return post.mean[..., 0], post.variance[..., 0].sqrt()


def test_threshold_chooses_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scalable, "FIT_SUBSET", 40)
    X, y, yvar = _data(90)
    ok = torch.ones(90, dtype=torch.bool)
    ok[::9] = False
    small = build_model_list(X[ok], y[ok], X, ok, Yvar_ok=yvar[ok], large_n=100)
    assert not any(isinstance(m, SparseGP) for m in small.models)
    large = build_model_list(X[ok], y[ok], X, ok, Yvar_ok=yvar[ok], large_n=50)
    assert all(isinstance(m, SparseGP) for m in large.models)  # outcome and feasibility
    outcome = large.models[0]
    assert isinstance(outcome, SparseGP)
    assert outcome.n_fit == 40
    assert outcome.train_inputs[0].shape[0] == int(ok.sum())  # conditioned on all points


def test_all_points_inducing_is_the_exact_posterior() -> None:
    """With every point an inducing point (tol 0), the SGPR posterior equals the exact GP's."""
    X, y, yvar = _data(60, seed=1)
    exact = build_model_list(X, y, Yvar_ok=yvar).models[0]
    sparse = SparseGP(exact, X, y, yvar, n_fit=60, max_inducing=60, tol=0.0)
    assert sparse.n_inducing == 60
    Xt = torch.rand(40, 4, dtype=F64, generator=torch.Generator().manual_seed(2))
    m_exact, s_exact = _mean_sd(exact, Xt)
    m_sparse, s_sparse = _mean_sd(sparse, Xt)
    assert torch.allclose(m_sparse, m_exact, atol=1e-5, rtol=0)
    assert torch.allclose(s_sparse, s_exact, atol=1e-5, rtol=0)


def test_large_n_predictions_close_to_exact() -> None:
    """Subset hyperparameters + sparse posterior stay within a fraction of the exact GP's sd."""
    X, y, yvar = _data(240, seed=3)
    exact = build_model_list(X, y, Yvar_ok=yvar, large_n=10_000).models[0]
    approx = build_model_list(X, y, Yvar_ok=yvar, large_n=100).models[0]
    assert isinstance(approx, SparseGP) and not isinstance(exact, SparseGP)
    Xt = torch.rand(200, 4, dtype=F64, generator=torch.Generator().manual_seed(4))
    m_exact, s_exact = _mean_sd(exact, Xt)
    m_approx, s_approx = _mean_sd(approx, Xt)
    truth = _truth(Xt)
    rmse_exact = float(((m_exact - truth) ** 2).mean().sqrt())
    rmse_approx = float(((m_approx - truth) ** 2).mean().sqrt())
    assert rmse_approx <= 1.2 * rmse_exact + 0.005
    assert float((m_approx - m_exact).abs().mean()) < 0.5 * float(s_exact.mean())
    assert float((s_approx / s_exact).log().abs().median()) < math.log(1.5)


def test_known_noise_is_respected() -> None:
    """A precise (steady) reading outweighs many noisy (transient) ones at the same place."""
    gen = torch.Generator().manual_seed(5)

    def g(X: torch.Tensor) -> torch.Tensor:
        return torch.sin(3 * X[:, 0]) + X[:, 1] ** 2

    spread = torch.rand(60, 2, dtype=F64, generator=gen)
    steady, lonely = torch.tensor([[0.5, 0.5]], dtype=F64), torch.tensor([[0.2, 0.8]], dtype=F64)
    noisy = torch.cat([steady + 0.002 * torch.randn(30, 2, dtype=F64, generator=gen),
                       lonely + 0.002 * torch.randn(30, 2, dtype=F64, generator=gen)])
    X = torch.cat([spread, steady, noisy])
    sd = torch.cat([torch.full((60,), 0.1), torch.full((1,), 0.01), torch.full((60,), 0.5)])
    y = (g(X) + sd.to(F64) * torch.randn(121, dtype=F64, generator=gen)).unsqueeze(-1)
    yvar = (sd.to(F64) ** 2).unsqueeze(-1)
    model = build_model_list(X, y, Yvar_ok=yvar, large_n=100).models[0]
    assert isinstance(model, SparseGP)
    mean, sd_post = _mean_sd(model, torch.cat([steady, lonely]))
    assert abs(float(mean[0] - g(steady)[0])) < 0.05
    assert float(sd_post[0]) < 0.03
    assert float(sd_post[1]) > 2 * float(sd_post[0])  # 30 noisy readings < 1 steady one
    # The likelihood carries each point's own stated variance (standardized), not one level.
    tf: Any = model.outcome_transform
    stated = model.likelihood.noise_covar.noise * tf.stdvs.reshape(-1)[0] ** 2
    assert torch.allclose(stated, yvar.squeeze(-1), rtol=1e-9)


def test_fit_subset_keeps_precise_points_and_is_seeded() -> None:
    yvar = torch.full((500, 2), 0.01, dtype=F64)
    yvar[:40] = 1e-4  # 40 steady readings
    yvar[40:50, 0] = float("nan")  # unstated: counted as the median
    rows = fit_subset(500, yvar, 100, seed=7)
    assert rows.numel() == 100 and rows.unique().numel() == 100
    assert set(range(40)) <= set(rows.tolist())
    assert torch.equal(rows, fit_subset(500, yvar, 100, seed=7))
    assert not torch.equal(rows, fit_subset(500, yvar, 100, seed=8))
    assert torch.equal(fit_subset(80, None, 100, seed=0), torch.arange(80))


def test_fit_subset_balances_a_rare_class() -> None:
    """The feasibility GP's subset holds the failures (up to half of it), not a random few."""
    labels = torch.ones(1000, dtype=torch.bool)
    labels[torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:30]] = False
    rows = fit_subset(1000, None, 100, seed=3, labels=labels)
    assert rows.numel() == 100 and rows.unique().numel() == 100
    assert int((~labels[rows]).sum()) == 30  # every failure
    half = fit_subset(1000, None, 40, seed=3, labels=labels)
    assert int((~labels[half]).sum()) == 20  # the rare class fills half, no more
    assert torch.equal(rows, fit_subset(1000, None, 100, seed=3, labels=labels))
    assert torch.equal(fit_subset(1000, None, 40, seed=3, labels=~labels).sort().values,
                       half)  # whichever class is rare
    assert torch.equal(fit_subset(50, None, 100, seed=0, labels=labels[:50]), torch.arange(50))


@pytest.mark.parametrize(("yvar", "labels", "match"), [
    (torch.ones(20, 1), torch.ones(20, dtype=torch.bool), "not both"),
    (None, torch.ones(19, dtype=torch.bool), r"labels must have shape \(20,\)"),
])
def test_fit_subset_refuses_bad_input(yvar: torch.Tensor | None, labels: torch.Tensor,
                                      match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_subset(20, yvar, 10, seed=0, labels=labels)


def test_balanced_subset_keeps_the_labs_success_rate_far_from_data() -> None:
    """A class-balanced fit subset does not make unexplored regions look failure-prone.

    The subset holds far more failures than the data, yet the GP's fitted constant (its level far
    from every point) stays near an exact GP's on all points: to the GP the failing corner is a
    local dip, not a lower level. So the sparse GP uses the mean as fitted.
    """
    gen = torch.Generator().manual_seed(9)
    X = torch.rand(400, 2, dtype=F64, generator=gen)
    ok = ~((X[:, 0] > 0.8) & (X[:, 1] > 0.6))  # a failing corner: ~6 % of the points
    y = torch.where(ok, 1.0, -1.0).to(F64).unsqueeze(-1)
    var = torch.full_like(y, 0.01)
    rows = fit_subset(400, None, 80, seed=0, labels=ok)
    assert float(y[rows].mean()) < float(y.mean()) - 0.3  # the subset's average is biased
    exact = build_model_list(X, y, Yvar_ok=var, large_n=10_000).models[0]
    fitted = build_model_list(X[rows], y[rows], Yvar_ok=var[rows], large_n=10_000).models[0]
    sparse = SparseGP(fitted, X, y, var, n_fit=80)
    far = torch.tensor([[6.0, 6.0]], dtype=F64)
    m_sparse, m_exact = float(_mean_sd(sparse, far)[0][0]), float(_mean_sd(exact, far)[0][0])
    assert abs(m_sparse - m_exact) < 0.25  # labels are +-1; the averages differ by 0.5
    near = torch.tensor([[0.95, 0.9], [0.2, 0.2]], dtype=F64)  # in the corner; far from it
    mean_near = _mean_sd(sparse, near)[0]
    assert float(mean_near[0]) < -0.5 < 0.5 < float(mean_near[1])


def test_dense_ramp_needs_few_inducing_points() -> None:
    """A ramp of 1,000 readings along a short path carries a few points' worth of information."""
    t = torch.linspace(0, 1, 1000, dtype=F64).unsqueeze(-1)
    X = torch.cat([0.2 + 0.1 * t, 0.5 + 0 * t, 0.3 + 0.05 * t], dim=1)
    X_ref, y_ref, var_ref = _data(60, seed=8, d=3)
    exact = build_model_list(X_ref, y_ref, Yvar_ok=var_ref).models[0]
    assert isinstance(exact, SingleTaskGP)
    idx = greedy_inducing(exact.covar_module, X, torch.full((1000,), 0.01, dtype=F64))
    assert 1 <= idx.numel() < 50
    assert idx.unique().numel() == idx.numel()


def _optimizer_with(n: int, device: str) -> BotorchOptimizer:
    space, objective = qd_space(), qd_objective(550.0, 2.0)
    u = random_design(space, 0, n)
    rng = np.random.default_rng(0)
    opt = BotorchOptimizer(space, objective, seed=0, device=device, num_restarts=2,
                           raw_samples=32, fit_maxiter=20)
    outcomes = [{"pl_peak_nm": 520 + 80 * r[0] + rng.normal(0, 0.5), "qy": 0.3 * r[2],
                 "fwhm_nm": 50 + 5 * r[1]} for r in u]
    sds = [{"pl_peak_nm": 0.5 if i % 5 else 0.1, "qy": 0.01, "fwhm_nm": 0.5} for i in range(n)]
    opt.tell(space.from_unit(u), outcomes, outcome_sd=sds)
    return opt


def _ask_through_large_n_path(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scalable, "LARGE_N", 40)
    monkeypatch.setattr(scalable, "FIT_SUBSET", 30)
    opt = _optimizer_with(60, device)
    (point,) = opt.ask(1)
    opt.space.check(point)
    record = opt.state_dict()["model"]
    assert record is not None
    approx = record["hyperparameters"]["pl_peak_nm"]["approximation"]
    assert approx["n_train"] == 60 and approx["n_fit"] == 30 and approx["n_inducing"] >= 1
    model = opt._fit_cache[1][0]
    assert all(isinstance(sub, SparseGP) for sub in model.models)
    _assert_on(model, torch.device(device))


def _assert_on(model: Any, device: torch.device) -> None:
    """Every parameter, buffer and cached factor of a large-n model list on ``device``, float64.

    Run on the CPU too: a tensor created without ``device=``/``dtype=`` shows up there as
    float32 (torch's default dtype), so this catches the gaps a GPU run would fail on.
    """
    tensors: list[tuple[str, torch.Tensor]] = [*model.named_parameters(),
                                               *model.named_buffers()]
    for k, sub in enumerate(model.models):
        tensors += [(f"models.{k}.{name}", getattr(sub, name))
                    for name in ("_Z", "_Lz", "_LB", "_c", "inducing_index")]
        tensors += [(f"models.{k}.train_inputs", sub.train_inputs[0]),
                    (f"models.{k}.train_targets", sub.train_targets)]
    assert len(tensors) > 20
    for name, tensor in tensors:
        assert tensor.device.type == device.type, name
        assert not tensor.is_floating_point() or tensor.dtype == F64, (name, tensor.dtype)


def test_optimizer_uses_large_n_path_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _ask_through_large_n_path("cpu", monkeypatch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_optimizer_uses_large_n_path_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    _ask_through_large_n_path("cuda", monkeypatch)


def test_pareto_mode_and_forecast_on_the_large_n_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """qLogNEHVI (joint posterior over the baseline) and the forecast read a SparseGP list."""
    from tests.optimizer.problems import pareto_objective, pareto_problem, space_2d

    monkeypatch.setattr(scalable, "LARGE_N", 30)
    monkeypatch.setattr(scalable, "FIT_SUBSET", 20)
    space = space_2d()
    opt = BotorchOptimizer(space, pareto_objective(), seed=0, num_restarts=2, raw_samples=32,
                           mc_samples=32, fit_maxiter=20)
    u = random_design(space, 1, 50)
    points = space.from_unit(u)
    opt.tell(points, [pareto_problem(space, p) for p in points])
    batch = opt.ask(2)
    assert all(space.check(p) == p for p in batch)
    model = opt._fit_cache[1][0]
    assert all(isinstance(m, SparseGP) for m in model.models)
    fc = opt.forecast(n_candidates=64)
    assert fc is not None


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="needs a CUDA device"))])
def test_prior_mean_carries_over_to_the_large_n_path(monkeypatch: pytest.MonkeyPatch,
                                                     device: str) -> None:
    """A twin prior (learned-weight mean) is the sparse GP's mean too; proposals stay valid."""
    from autolab.optimizer.prior import PriorMean
    from tests.optimizer.problems import peak_problem, space_2d, target_objective
    from tests.optimizer.test_prior import PeakPrior

    monkeypatch.setattr(scalable, "LARGE_N", 30)
    monkeypatch.setattr(scalable, "FIT_SUBSET", 20)
    space = space_2d()
    opt = BotorchOptimizer(space, target_objective(), seed=0, prior="twin",
                           outcome_prior=PeakPrior(), num_restarts=2, raw_samples=32,
                           fit_maxiter=20, device=device)
    points = space.from_unit(random_design(space, 2, 40))
    opt.tell(points, [peak_problem(space, p) for p in points])
    (point,) = opt.ask(1)
    assert space.check(point) == point
    model = opt._fit_cache[1][0]
    sub = model.models[0]
    assert isinstance(sub, SparseGP) and isinstance(sub.mean_module, PriorMean)
    _assert_on(model, torch.device(device))
    truth = peak_problem(space, point)["pl_peak_nm"]
    assert abs(opt.last_predictions[0]["outcomes"]["pl_peak_nm"][0] - truth) < 2.0


def test_large_n_proposals_are_reproducible(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subset, inducing points and fit are seeded: a re-told optimizer proposes the same point."""
    monkeypatch.setattr(scalable, "LARGE_N", 40)
    monkeypatch.setattr(scalable, "FIT_SUBSET", 30)
    first, second = _optimizer_with(60, "cpu"), _optimizer_with(60, "cpu")
    assert first.ask(1) == second.ask(1)
