"""Which experiments may centre the trust region (``trust_region_centre``): real GPs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from autolab.optimizer import BotorchOptimizer
from autolab.optimizer.centre import CENTRE_RULES, centre_candidates
from autolab.optimizer.settings import BotorchSettings
from autolab.optimizer.thompson import anchor_points

from .problems import assert_refused_both_ways, space_2d, target_objective, unit
from .test_thompson import QUICK, _at, _crawl_data

#: An unmeasured point of the bright in-band region (``peak_problem``: true PL 550.0 nm, QY
#: 0.46), told with a PL reading of 552.6 nm (out of the 548-552 nm band) and a stated sd of 2 nm.
EDGE = [0.47, 0.55]


def _with_edge_reading(**settings: Any) -> BotorchOptimizer:
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=4, n_init=2, ts_candidates=256,
                           **settings, **QUICK)
    _crawl_data(opt)  # read in band only at QY 0.07-0.15, around [0.5, 0.0-0.15]
    opt.tell([_at(opt, EDGE)], [{"pl_peak_nm": 552.6, "qy": 0.457}],
             [{"pl_peak_nm": 2.0, "qy": 0.01}])
    return opt


@pytest.mark.parametrize("value", ["model", 1, None])
def test_a_bad_centre_rule_is_refused_naming_the_field(value: Any) -> None:
    assert_refused_both_ways({"trust_region_centre": value}, "trust_region_centre")


def test_the_setting_names_exactly_the_registered_rules() -> None:
    field = BotorchSettings.model_fields["trust_region_centre"]
    assert set(field.annotation.__args__) == set(CENTRE_RULES)  # type: ignore[union-attr]
    assert field.default == "measured"


def test_a_true_in_band_point_read_out_of_band_centres_the_region_by_the_posterior() -> None:
    opt = _with_edge_reading()
    with torch.random.fork_rng():
        model, data, _, _ = opt._fit(0)
    spec = opt.objective
    measured = centre_candidates("measured", spec, model, data.X_ok, data.in_band_ok)
    posterior = centre_candidates("posterior", spec, model, data.X_ok, data.in_band_ok)
    edge = int(torch.cdist(data.X_ok, torch.tensor([EDGE], dtype=torch.float64)).argmin())
    assert not bool(measured[edge])
    assert bool(posterior[edge])  # the model puts it in band from its neighbours' trend
    assert anchor_points(spec, model, data.X_ok, posterior)[0].tolist() == pytest.approx(
        EDGE, abs=1e-6)
    assert anchor_points(spec, model, data.X_ok, measured)[0].tolist() == pytest.approx(
        [0.498, 0.15], abs=1e-6)


def test_with_nothing_in_band_by_the_posterior_the_measured_rule_decides() -> None:
    opt = _with_edge_reading()
    with torch.random.fork_rng():
        model, data, _, _ = opt._fit(0)
    far = torch.tensor([[0.1, 0.0], [0.9, 1.0]], dtype=torch.float64)  # PL ~510 and ~600 nm
    flags = torch.tensor([True, False])
    assert centre_candidates("posterior", opt.objective, model, far, flags).tolist() == [
        True, False]


def test_a_small_region_centred_by_the_posterior_proposes_at_the_bright_point_and_resumes() -> None:
    opt = _with_edge_reading(trust_region_init=0.1, trust_region_centre="posterior")
    resumed = BotorchOptimizer.from_state(json.loads(json.dumps(opt.state_dict())))
    [x] = opt.ask(1)
    assert unit(opt.space, x) == pytest.approx(EDGE, abs=0.05 + 1e-9)
    assert resumed.ask(1) == [x]
    [y] = _with_edge_reading(trust_region_init=0.1).ask(1)
    assert float(np.abs(np.subtract(unit(opt.space, y), EDGE)).max()) > 0.05
