"""Prior knowledge as the GPs' mean (issue 8 §4): a toy prior here, the real twin's prior too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from autolab.exceptions import ConfigError, OptimizerError
from autolab.optimizer import BotorchOptimizer, make_optimizer

from .problems import FAST, peak_problem, space_2d, target_objective


class PeakPrior:
    """``peak_problem``'s truth, shifted: a prior that is right in shape and off by ``shift_nm``."""

    name = "toy"
    outcomes = ("pl_peak_nm", "qy")

    def __init__(self, shift_nm: float = 0.0, parameters: Mapping[str, str] | None = None) -> None:
        self.shift_nm = shift_nm
        self.parameters = dict(parameters or {"a": "", "b": ""})

    def __call__(self, points: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
        space = space_2d()
        rows = [peak_problem(space, p) for p in points]
        return {"pl_peak_nm": np.array([r["pl_peak_nm"] + self.shift_nm for r in rows]),
                "qy": np.array([r["qy"] for r in rows])}


def _to_band(opt: BotorchOptimizer, budget: int) -> int:
    for k in range(1, budget + 1):
        [x] = opt.ask(1)
        y = peak_problem(opt.space, x)
        opt.tell([x], [y])
        if opt.objective.within_target(y):
            return k
    return budget + 1


def test_a_right_prior_finds_the_band_at_once() -> None:
    opt = BotorchOptimizer(space_2d(), target_objective(), seed=0, prior="twin",
                           outcome_prior=PeakPrior(), **FAST)
    assert _to_band(opt, 3) == 1  # the prior's own best point is in band


def test_a_shifted_prior_is_corrected_by_the_data() -> None:
    # 8 nm off (four band-widths): the learned offset/discrepancy must pull the search back.
    prior = BotorchOptimizer(space_2d(), target_objective(), seed=0, prior="twin",
                             outcome_prior=PeakPrior(shift_nm=8.0), **FAST)
    cold = BotorchOptimizer(space_2d(), target_objective(), seed=0, n_init=4, **FAST)
    with_prior, without = _to_band(prior, 12), _to_band(cold, 12)
    assert with_prior <= 12
    assert with_prior <= without + 1
    hyper = prior.state_dict()["model"]["hyperparameters"]["pl_peak_nm"]
    assert "mean_module.weight" in hyper and "mean_module.constant" in hyper


def test_a_prior_that_does_not_fit_the_space_is_a_config_error() -> None:
    space, obj = space_2d(), target_objective()
    with pytest.raises(ConfigError, match="does not know parameter 'b'"):
        BotorchOptimizer(space, obj, prior="twin", outcome_prior=PeakPrior(parameters={"a": ""}))
    bad_unit = space.model_copy(update={"parameters": (
        space.parameters[0].model_copy(update={"unit": "°C"}), space.parameters[1])})
    with pytest.raises(ConfigError, match="parameter 'a' is in 'K' there but in '°C'"):
        BotorchOptimizer(bad_unit, obj, prior="twin",
                         outcome_prior=PeakPrior(parameters={"a": "K", "b": ""}))
    with pytest.raises(ConfigError, match="must be an OutcomePrior"):
        BotorchOptimizer(space, obj, prior="twin", outcome_prior=lambda pts: {})
    settings_only = make_optimizer("botorch", space, obj, prior="twin")  # validates settings
    with pytest.raises(OptimizerError, match="no outcome_prior was given"):
        settings_only.ask(1)


def test_the_twin_prior_on_the_nominal_twin_starts_in_band() -> None:
    from autolab.analysis import analyze
    from autolab.executors.simulated import SimulatedExecutor
    from autolab.objective import qd_objective
    from autolab.prior import twin_prior
    from autolab.records import Conditions
    from autolab.space import qd_space

    space = qd_space()
    fixed = {n: 3.6 for n in ("p_to_in",) if n not in space.names}
    obj = qd_objective(550.0, 2.0)
    opt = BotorchOptimizer(space, obj, seed=0, prior="twin",
                           outcome_prior=twin_prior(fixed=fixed), **FAST)
    [x] = opt.ask(1)
    features = analyze(SimulatedExecutor(seed=0).run(Conditions.from_mapping({**x, **fixed})))
    assert abs(features.outcomes()["pl_peak_nm"] - 550.0) <= 2.0
    with pytest.raises(ConfigError, match="fixed condition 'p_in' is not a twin condition"):
        twin_prior(fixed={"p_in": 3.6})

