"""The target as a specification, known noise, the stopping forecast and earlier data (issue 8).

Real GPs on cheap analytic problems (``problems.py``); no mocks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from autolab.exceptions import OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.acquisition import BandFirstLogEI, build_acquisition
from autolab.optimizer.forecast import Forecast, Reading, repeat_advice

from .problems import FAST, peak_problem, space_2d, target_objective

SD = {"pl_peak_nm": 0.3, "qy": 0.01}


def _run(opt: BotorchOptimizer, n: int, sd: bool = True) -> None:
    for _ in range(n):
        [x] = opt.ask(1)
        opt.tell([x], [peak_problem(opt.space, x)], [dict(SD) if sd else None])


def test_best_is_in_band_first_whatever_the_scores() -> None:
    # The case: a brighter 547.8 nm (out of 550 ± 2) outscores an in-band 549.6 nm.
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=0, **FAST)
    out_of_band = {"pl_peak_nm": 547.8, "qy": 0.45}
    in_band = {"pl_peak_nm": 549.6, "qy": 0.395}
    assert opt.objective.score(out_of_band) > opt.objective.score(in_band)
    opt.tell([{"a": 1.0, "b": 2.0}, {"a": 2.0, "b": 3.0}], [out_of_band, in_band])
    best = opt.best()
    assert best is not None and best.outcomes == in_band
    assert best.in_band and not opt.observations[0].in_band


def test_band_first_acquisition_is_smooth_for_the_line_search() -> None:
    # The former MC acquisition made L-BFGS-B stop with "ABNORMAL" on many restarts: the
    # closed-form one must let every restart finish normally, with gradients that match
    # finite differences.
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=3, n_init=4, **FAST)
    _run(opt, 6)
    with torch.random.fork_rng():
        model, data, has_feas, _ = opt._fit(0)
    acqf = opt._acquisition(model, data, has_feas, 0, None)
    assert isinstance(acqf, BandFirstLogEI)

    def f_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        X = torch.tensor(x, dtype=torch.float64).reshape(1, 1, -1).requires_grad_(True)
        value = -acqf(X).sum()
        (grad,) = torch.autograd.grad(value, X)
        return float(value.detach()), grad.reshape(-1).numpy()

    rng = np.random.default_rng(0)
    messages = []
    for _ in range(12):
        res = minimize(f_and_grad, rng.random(2), jac=True, method="L-BFGS-B",
                       bounds=[(0.0, 1.0)] * 2, options={"maxiter": 60})
        messages.append(str(res.message))
    assert not [m for m in messages if "ABNORMAL" in m], messages
    x = np.array([0.43, 0.61])
    f0, g = f_and_grad(x)
    h = 1e-6
    fd = [(f_and_grad(x + h * e)[0] - f_and_grad(x - h * e)[0]) / (2 * h) for e in np.eye(2)]
    assert np.allclose(g, fd, rtol=1e-4, atol=1e-6)


def test_stated_noise_reaches_the_gp_and_survives_resume() -> None:
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=1, n_init=4, **FAST)
    _run(opt, 6)
    assert all(o.outcome_sd == SD for o in opt.observations)
    opt.ask(1)
    hyper = opt.state_dict()["model"]["hyperparameters"]["pl_peak_nm"]
    assert "likelihood.second_noise_covar.noise" in hyper  # known noise + learned extra
    state = opt.state_dict()
    assert state["observations"][0]["outcome_sd"] == SD
    resumed = BotorchOptimizer.from_state(state)
    assert resumed.ask(1) == opt.ask(1)  # bit-exact, sigma included


def test_without_stated_noise_the_noise_is_learned() -> None:
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=1, n_init=4, **FAST)
    _run(opt, 5, sd=False)
    opt.ask(1)
    hyper = opt.state_dict()["model"]["hyperparameters"]["pl_peak_nm"]
    assert "likelihood.noise_covar.noise" in hyper


def test_bad_outcome_sd_is_refused_and_nothing_is_told() -> None:
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=0, **FAST)
    x, y = {"a": 5.0, "b": 10.0}, {"pl_peak_nm": 550.0, "qy": 0.3}
    with pytest.raises(OptimizerError, match=r"'qy' = -0\.1 must be a positive finite"):
        opt.tell([x], [y], [{"qy": -0.1}])
    with pytest.raises(OptimizerError, match="unknown outcome 'fwhm'"):
        opt.tell([x], [y], [{"fwhm": 1.0}])
    with pytest.raises(OptimizerError, match="aligned with outcomes"):
        opt.tell([x], [y], [])
    with pytest.raises(OptimizerError, match="not a number"):
        opt.tell([x], [y], [{"qy": "big"}])
    assert opt.observations == ()


def test_forecast_tracks_the_spec_and_does_not_change_the_next_proposal() -> None:
    space, obj = space_2d(), target_objective()
    opt = BotorchOptimizer(space, obj, seed=2, n_init=4, **FAST)
    assert opt.forecast() is None  # nothing to learn from yet
    seen_in_band = False
    for _ in range(8):
        [x] = opt.ask(1)
        opt.tell([x], [peak_problem(space, x)], [dict(SD)])
        fc = opt.forecast()
        if len(opt.observations) < 2:
            assert fc is None
            continue
        assert isinstance(fc, Forecast)
        assert 0.0 <= fc.p_spec_met <= 1.0 and 0.0 <= fc.p_next <= 1.0
        assert fc.expected_experiments >= 1.0
        best = opt.best()
        if best is None or not best.in_band:
            assert fc.p_spec_met == 0.0
        else:
            seen_in_band = True
            assert fc.best_index is not None
            assert opt.observations[fc.best_index] is best
    assert seen_in_band
    # The forecast fitted the model the next ask reuses: a fresh optimizer that never
    # forecast proposes exactly the same point.
    assert BotorchOptimizer.from_state(opt.state_dict()).ask(1) == opt.ask(1)
    strict = opt.forecast(thresholds={"qy": 0.49})  # near the problem's maximum of 0.5
    loose = opt.forecast(thresholds={"qy": 0.05})
    assert strict is not None and loose is not None
    assert strict.p_spec_met <= loose.p_spec_met
    assert loose.to_dict()["thresholds"] == {"qy": 0.05}


def test_forecast_arguments_are_checked() -> None:
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=0, **FAST)
    with pytest.raises(OptimizerError, match="'pl_peak_nm' is not a maximized or minimized"):
        opt.forecast(thresholds={"pl_peak_nm": 550.0})
    with pytest.raises(OptimizerError, match="qy_fraction"):
        opt.forecast(qy_fraction=1.5)
    with pytest.raises(OptimizerError, match="improve_by"):
        opt.forecast(improve_by=-1.0)


def test_reused_same_reactor_data_start_the_model_at_once() -> None:
    space = space_2d()
    first = BotorchOptimizer(space, target_objective(), seed=0, n_init=6, **FAST)
    _run(first, 6)
    # Second campaign on the same reactor, another target: the old data are what they are.
    obj610 = target_objective().model_copy(update={"terms": (
        target_objective().terms[0].model_copy(update={"value": 590.0}),
        target_objective().terms[1])})
    second = BotorchOptimizer(space, obj610, seed=1, n_init=4, **FAST)
    old = first.observations
    second.reuse([o.conditions for o in old], [o.outcomes for o in old],
                 [o.outcome_sd for o in old])
    assert second.observations == () and second.best() is None
    assert len(second.reused) == len(old) and all(o.reused for o in second.reused)
    hits = 0
    for _ in range(3):
        [x] = second.ask(1)
        y = peak_problem(space, x)
        second.tell([x], [y])
        hits += obj610.within_target(y)
    assert second.state_dict()["model"]["n_reused"] == len(old)  # modelled from the first ask
    assert hits >= 1
    state = second.state_dict()
    assert len(state["reused"]) == len(old)
    again = BotorchOptimizer.from_state(state)
    assert again.reused == second.reused and again.observations == second.observations
    assert again.ask(1) == second.ask(1)


def test_repeat_a_measurement_only_when_its_noise_limits_the_decision() -> None:
    obj = target_objective()
    near_edge = Reading(index=4, outcomes={"pl_peak_nm": 551.8, "qy": 0.40},
                        sigma={"pl_peak_nm": 0.3, "qy": 0.01},
                        post_sd={"pl_peak_nm": 0.25, "qy": 0.01})
    index, reason = repeat_advice(obj, near_edge, None)
    assert index == 4 and "band edge" in reason
    # Same margin, but the model has averaged the noise away (posterior sd << sigma): no repeat.
    averaged = Reading(index=4, outcomes=near_edge.outcomes, sigma=near_edge.sigma,
                       post_sd={"pl_peak_nm": 0.05, "qy": 0.002})
    assert repeat_advice(obj, averaged, None) == (None, "")
    centred = Reading(index=5, outcomes={"pl_peak_nm": 550.1, "qy": 0.40},
                      sigma={"pl_peak_nm": 0.3, "qy": 0.02}, post_sd={"pl_peak_nm": 0.25,
                                                                      "qy": 0.02})
    runner_up = Reading(index=2, outcomes={"pl_peak_nm": 549.0, "qy": 0.39},
                        sigma={"pl_peak_nm": 0.3, "qy": 0.02}, post_sd={"pl_peak_nm": 0.25,
                                                                        "qy": 0.02})
    index, reason = repeat_advice(obj, centred, runner_up)
    assert index == 5 and "leads experiment 2" in reason
    clear_lead = Reading(index=2, outcomes={"pl_peak_nm": 549.0, "qy": 0.20},
                         sigma=runner_up.sigma, post_sd=runner_up.post_sd)
    assert repeat_advice(obj, centred, clear_lead) == (None, "")
    unstated = Reading(index=4, outcomes=near_edge.outcomes, sigma={}, post_sd=near_edge.post_sd)
    assert repeat_advice(obj, unstated, None) == (None, "")


def test_band_projection_puts_starting_points_on_the_predicted_band() -> None:
    """``band_projection``: half of the uniform starting points move onto mean(x) = target."""
    from autolab.optimizer.bayes import _InitialConditions
    from autolab.optimizer.design import random_design

    space = space_2d()
    opt = BotorchOptimizer(space, target_objective(), seed=1, n_init=4, **FAST)
    _run(opt, 6)
    model, data, has_feas, _ = opt._fit(0)
    acqf = build_acquisition(opt.objective, model, data.X_ok, has_feasibility=has_feas,
                             X_pending=None, mc_samples=8, seed=0, incumbent=0.0)
    u = random_design(space, 0, 32)
    moved = _InitialConditions(space, 0, data.X_ok.numpy(), project=True)._onto_band(
        acqf, u, torch.device("cpu"))
    with torch.no_grad():
        before = model.posterior(torch.tensor(u[:16]).unsqueeze(-2)).mean[:, 0, 0]
        after = model.posterior(torch.tensor(moved[:16]).unsqueeze(-2)).mean[:, 0, 0]
    inside = (after - 550.0).abs() <= 2.0
    assert int(inside.sum()) >= 12 > int(((before - 550.0).abs() <= 2.0).sum())
    assert np.array_equal(moved[16:], u[16:])  # the other half stays uniform
    assert ((moved >= 0) & (moved <= 1)).all()
    # and a whole campaign runs with it
    proj = BotorchOptimizer(space, target_objective(), seed=1, n_init=4, band_projection=True,
                            **FAST)
    _run(proj, 6)
    assert len(proj.observations) == 6
