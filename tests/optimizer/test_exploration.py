"""Band slack (optimizer.exploration) and the end-of-budget exploit phase (optimizer.exploit).

Real fitted BoTorch GPs on the cheap analytic problems of ``problems.py``; no mocks.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from autolab.exceptions import ConfigError, OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.acquisition import BandFirstLogEI, log_p_band
from autolab.optimizer.exploit import BandExploit, exploiting
from autolab.optimizer.exploration import BandSlack, band_slack
from autolab.optimizer.settings import parse_optimizer_settings

from .problems import FAST, peak_problem, space_2d, target_objective

SIGMA = {"pl_peak_nm": 0.3, "qy": 0.01}


def _run(opt: BotorchOptimizer, n: int, pending: list[dict[str, float]] | None = None) -> None:
    for _ in range(n):
        [x] = opt.ask(1, pending=pending)
        opt.tell([x], [peak_problem(opt.space, x)], [SIGMA])


@pytest.mark.parametrize(("field", "bad"), [
    ("band_slack_sd", -0.5), ("band_slack_sd", float("nan")), ("band_slack_sd", 11.0),
    ("band_slack_tolerances", -1.0), ("band_slack_tolerances", float("inf")),
    ("band_slack_tolerances", "wide"), ("band_slack_until", 0), ("band_slack_until", 2.5),
])
def test_a_bad_slack_setting_is_refused_naming_the_field(field: str, bad: object) -> None:
    settings: dict[str, Any] = {field: bad}
    with pytest.raises(OptimizerError, match=field):
        BotorchOptimizer(space_2d(), target_objective(), **settings)
    with pytest.raises(ConfigError, match=rf"settings\.{field}"):
        parse_optimizer_settings("botorch", {field: bad})


@pytest.mark.parametrize(("field", "bad"), [("tolerances", -0.1), ("sd", float("nan"))])
def test_a_bad_band_slack_is_refused_naming_the_field(field: str, bad: float) -> None:
    with pytest.raises(OptimizerError, match=f"BandSlack.{field}"):
        BandSlack(**{"tolerances": 1.0, "sd": 1.0, field: bad})
    with pytest.raises(OptimizerError, match="n_told"):
        band_slack(1.0, 1.0, None, -1)


def test_the_slack_shrinks_linearly_to_none_by_its_last_experiment() -> None:
    assert band_slack(0.0, 0.0, None, 3) is None  # off: the plain band-first path
    assert band_slack(2.0, 1.0, None, 500) == BandSlack(tolerances=2.0, sd=1.0)
    assert band_slack(2.0, 1.0, 20, 0) == BandSlack(tolerances=2.0, sd=1.0)
    assert band_slack(2.0, 1.0, 20, 5) == BandSlack(tolerances=1.5, sd=0.75)
    assert band_slack(2.0, 1.0, 20, 20) is None
    assert band_slack(2.0, 1.0, 20, 21) is None


def test_slack_is_optimism_where_the_peak_is_unknown_not_where_it_is_known() -> None:
    spec = target_objective()  # 550 ± 2 nm
    mean = torch.tensor([[550.0, 0.3], [556.0, 0.3], [556.0, 0.3]], dtype=torch.float64)
    sd = torch.tensor([[0.2, 0.01], [0.2, 0.01], [6.0, 0.01]], dtype=torch.float64)
    plain = log_p_band(spec, mean, sd)
    assert torch.equal(log_p_band(spec, mean, sd, BandSlack(tolerances=0.0, sd=0.0)), plain)
    by_sd = log_p_band(spec, mean, sd, BandSlack(tolerances=0.0, sd=1.0))
    # known in band: unchanged to 1e-6; known 6 nm off: still hopeless; unknown: 0.16 -> 0.62
    assert float(by_sd[0]) == pytest.approx(float(plain[0]), abs=1e-6)
    assert float(by_sd[1]) < math.log(1e-9)
    assert float(plain[2].exp()) == pytest.approx(0.161, abs=0.001)  # Phi(-2/3) - Phi(-4/3)
    assert float(by_sd[2].exp()) == pytest.approx(0.620, abs=0.001)  # Phi(1/3) - Phi(-7/3)
    by_tol = log_p_band(spec, mean, sd, BandSlack(tolerances=2.0, sd=0.0))  # ±6 nm
    assert float(by_tol[1].exp()) == pytest.approx(0.5, abs=1e-6)  # 556 is the new edge


def _acquisitions(settings: dict[str, Any]) -> tuple[BandFirstLogEI, BandFirstLogEI, Any]:
    """The plain and the slack acquisition of one fitted model after 8 experiments."""
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=2,
                           **{**FAST, "n_init": 4, **settings})
    _run(opt, 8)
    with torch.random.fork_rng():
        model, data, has_feas, seed = opt._fit(0)
        slack = opt._acquisition(model, data, has_feas, seed, None)
        opt.settings = opt.settings.model_copy(
            update={"band_slack_sd": 0.0, "band_slack_tolerances": 0.0})
        plain = opt._acquisition(model, data, has_feas, seed, None)
    assert isinstance(slack, BandFirstLogEI) and isinstance(plain, BandFirstLogEI)
    return slack, plain, data


def test_the_acquisition_reads_the_widened_band_and_the_default_path_is_untouched() -> None:
    slack, plain, data = _acquisitions({"band_slack_sd": 1.0, "band_slack_until": 16})
    assert plain.band_slack is None
    assert slack.band_slack == BandSlack(tolerances=0.0, sd=0.5)  # half way to 16
    X = torch.rand(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        wide, narrow = slack.log_terms(X), plain.log_terms(X)
    assert bool((wide["band"] >= narrow["band"] - 1e-12).all())  # a wider band, never narrower
    assert float((wide["band"] - narrow["band"]).max()) > 0.3  # and markedly so off the data
    for key in ("constraints", "feasibility", "improvement"):
        assert torch.equal(wide[key], narrow[key]), key


def test_a_slack_campaign_is_deterministic_and_keeps_pending_experiments_working() -> None:
    settings: dict[str, Any] = {**FAST, "n_init": 4, "band_slack_sd": 1.0,
                                "band_slack_tolerances": 1.0}
    runs = []
    for _ in range(2):
        opt = BotorchOptimizer(space_2d(), target_objective(), seed=4, **settings)
        _run(opt, 6)
        pending = opt.ask(1)
        runs.append((opt.ask(1, pending=pending), pending,
                     [o.conditions for o in opt.observations]))
    assert runs[0] == runs[1]
    (second, pending, _), = runs[:1]
    assert second != pending  # the fantasies of the running one still keep proposals apart


@pytest.mark.parametrize(("field", "bad"), [
    ("exploit_from", 0), ("exploit_from", 1.5), ("exploit_p_spec", 0.0),
    ("exploit_p_spec", 1.0), ("exploit_p_spec", float("nan")),
])
def test_a_bad_exploit_setting_is_refused_naming_the_field(field: str, bad: object) -> None:
    settings: dict[str, Any] = {field: bad}
    with pytest.raises(OptimizerError, match=field):
        BotorchOptimizer(space_2d(), target_objective(), **settings)
    with pytest.raises(ConfigError, match=rf"settings\.{field}"):
        parse_optimizer_settings("botorch", {field: bad})


def test_exploit_phase_starts_at_its_experiment_and_never_with_pending_ones() -> None:
    assert not exploiting(None, 100, False)
    assert not exploiting(10, 9, False)
    assert exploiting(10, 10, False)
    assert not exploiting(10, 10, True)


def test_exploit_proposes_the_brightest_point_believed_in_band() -> None:
    """After 10 experiments the exploit proposal is in band and at least as bright as the best.

    ``peak_problem``'s band (550 ± 2 nm) is the line ``u_a ~ 0.5 - u_b^2 / 10``; its QY peaks at
    ``u_b = 0.7``. The proposal must have a high model probability of the band and a posterior
    QY no lower than the best in-band experiment's, and its true outcome must be in band.
    """
    settings: dict[str, Any] = {**FAST, "n_init": 4, "exploit_from": 10}
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=3, exploit_p_spec=0.8,
                           **settings)
    _run(opt, 10)
    with torch.random.fork_rng():
        model, data, has_feas, seed = opt._fit(0)
        acqf = opt._acquisition(model, data, has_feas, seed, None)
        pending = torch.full((1, 2), 0.5, dtype=torch.float64)
        with_pending = opt._acquisition(model, data, has_feas, seed, pending)
    assert isinstance(acqf, BandExploit) and isinstance(with_pending, BandFirstLogEI)
    [x] = opt.ask(1)
    u = torch.tensor(opt.space.to_unit([x]), dtype=torch.float64)
    with torch.no_grad():
        rest, log_p = acqf.parts(u)
        rest_ok, _ = acqf.parts(data.X_ok[data.in_band_ok])
    assert float(log_p.exp()) >= 0.75
    assert float(rest) >= float(rest_ok.max()) - 0.05
    assert abs(peak_problem(opt.space, x)["pl_peak_nm"] - 550.0) <= 2.0
    again = BotorchOptimizer(space_2d(), target_objective(), seed=3, **settings)
    for o in opt.observations:
        again.tell([o.conditions], [o.outcomes], [SIGMA])
    assert again.ask(1) == [x]  # a pure function of settings, seed and data


def test_a_bad_exploit_probability_is_refused_by_the_acquisition() -> None:
    slack, _, _ = _acquisitions({"band_slack_sd": 1.0})
    with pytest.raises(OptimizerError, match="p_spec"):
        BandExploit(slack.model, target_objective(), has_feasibility=False, p_spec=1.5)
