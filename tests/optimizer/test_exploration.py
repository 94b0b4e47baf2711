"""The band slack (autolab.optimizer.exploration): validated, shrinking, optimistic off the data.

Real fitted BoTorch GPs on the cheap analytic problems of ``problems.py``; no mocks.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from autolab.exceptions import OptimizerError
from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.acquisition import BandFirstLogEI, log_p_band
from autolab.optimizer.exploration import BandSlack, band_slack

from .problems import FAST, assert_refused_both_ways, peak_problem, space_2d, target_objective

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
    assert_refused_both_ways({field: bad}, field, rf"settings\.{field}")


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
    second, pending, _ = runs[0]
    assert second != pending  # the fantasies of the running one still keep proposals apart
