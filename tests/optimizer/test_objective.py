"""The objective: one score formula for floats and tensors, with the documented priorities."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.exceptions import ConfigError
from autolab.objective import (
    Maximize,
    Minimize,
    ObjectiveSpec,
    OutcomeConstraint,
    Target,
    qd_objective,
)


def test_in_band_points_differ_only_by_the_other_terms() -> None:
    obj = qd_objective(550.0, 2.0)
    centre = obj.score({"pl_peak_nm": 550.0, "qy": 0.3, "fwhm_nm": 55.0})
    edge = obj.score({"pl_peak_nm": 551.9, "qy": 0.3, "fwhm_nm": 55.0})
    assert centre == pytest.approx(edge)
    assert centre == pytest.approx(0.3 / 0.1 - 0.5 * 55.0 / 10.0)


def test_priorities_band_then_qy_then_fwhm() -> None:
    obj = qd_objective(550.0, 2.0)
    # Just outside the band with a perfect QY loses to inside the band with a poor one.
    outside = obj.score({"pl_peak_nm": 554.5, "qy": 0.6, "fwhm_nm": 46.0})
    inside = obj.score({"pl_peak_nm": 551.0, "qy": 0.2, "fwhm_nm": 64.0})
    assert inside > outside
    # In the band, +10 % QY outweighs 10 nm of FWHM.
    bright = obj.score({"pl_peak_nm": 550.0, "qy": 0.4, "fwhm_nm": 60.0})
    narrow = obj.score({"pl_peak_nm": 550.0, "qy": 0.3, "fwhm_nm": 50.0})
    assert bright > narrow
    # Narrower at equal QY is better.
    assert obj.score({"pl_peak_nm": 550.0, "qy": 0.3, "fwhm_nm": 49.0}) > narrow


def test_target_penalty_grows_smoothly_and_about_linearly() -> None:
    t = Target(outcome="y", value=0.0, tolerance=1.0, weight=1.0)
    y = torch.tensor([0.5, 1.0, 1.01, 2.0, 11.0, 21.0], dtype=torch.float64, requires_grad=True)
    u = t.utility(y)
    v = u.detach()
    assert v[0] == 0.0
    assert v[1] == 0.0
    assert -1e-3 < float(v[2]) < 0.0  # quadratic start: no step at the band edge
    slope = float(v[4] - v[5]) / 10.0
    assert slope == pytest.approx(1.0, rel=0.01)  # ~1 per tolerance-width far out
    u.sum().backward()
    assert y.grad is not None
    assert torch.isfinite(y.grad).all()


finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(peak=finite, qy=finite, fwhm=finite)
def test_float_and_tensor_scores_agree(peak: float, qy: float, fwhm: float) -> None:
    obj = qd_objective(550.0, 2.0, min_qy=0.3)
    outcomes = {"pl_peak_nm": peak, "qy": qy, "fwhm_nm": fwhm}
    Y = torch.tensor([[[peak, qy, fwhm]]], dtype=torch.float64).expand(4, 2, 3)
    scores = obj.score_tensor(Y)
    assert scores.shape == (4, 2)
    assert torch.allclose(scores, torch.full_like(scores, obj.score(outcomes)))
    assert obj.is_feasible(outcomes) == (qy >= 0.3)
    assert obj.within_target(outcomes) == (abs(peak - 550.0) <= 2.0)


def test_constraints_and_outcome_order() -> None:
    obj = ObjectiveSpec(
        terms=(Minimize(outcome="fwhm_nm", scale=10.0), Maximize(outcome="qy")),
        constraints=(OutcomeConstraint.parse("pl_peak_nm <= 600"),
                     OutcomeConstraint.parse(" qy>=0.25 ")),
    )
    assert obj.outcome_names == ("fwhm_nm", "qy", "pl_peak_nm")
    Y = torch.tensor([50.0, 0.2, 610.0], dtype=torch.float64)
    assert obj.violations_tensor(Y).tolist() == pytest.approx([10.0, 0.05])
    assert not obj.is_feasible({"fwhm_nm": 50.0, "qy": 0.3, "pl_peak_nm": 610.0})
    assert obj.is_feasible({"fwhm_nm": 50.0, "qy": 0.3, "pl_peak_nm": 590.0})
    assert obj.within_target({"fwhm_nm": 50.0, "qy": 0.3, "pl_peak_nm": 590.0})  # no target
    assert "pl_peak_nm <= 600" in obj.describe()


def test_in_band_score_needs_every_band_and_constraint() -> None:
    obj = ObjectiveSpec(terms=(Target(outcome="pl_peak_nm", value=550.0, tolerance=2.0),
                               Maximize(outcome="qy")),
                        constraints=(OutcomeConstraint.parse("qy >= 0.25"),))
    inside = {"pl_peak_nm": 551.0, "qy": 0.3}
    assert obj.in_band_score(inside) == pytest.approx(obj.score(inside))
    assert obj.in_band_score({"pl_peak_nm": 553.0, "qy": 0.3}) is None  # out of band
    assert obj.in_band_score({"pl_peak_nm": 551.0, "qy": 0.2}) is None  # infeasible


def test_round_trip_through_json() -> None:
    obj = qd_objective(530.0, 3.0, min_qy=0.2, mode="pareto")
    assert ObjectiveSpec.model_validate_json(obj.model_dump_json()) == obj


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"terms": ()}, "at least 1"),
        ({"terms": (Maximize(outcome="qy"), Minimize(outcome="qy"))}, "more than one"),
        ({"terms": (Maximize(outcome="qy"),), "mode": "pareto"}, "at least two"),
        ({"terms": (Maximize(outcome="qy"), Maximize(outcome="x")), "mode": "pareto",
          "ref_point": (0.0,)}, "one per term"),
        ({"terms": (Maximize(outcome="qy"),), "ref_point": (0.0,)}, "only used"),
    ],
)
def test_invalid_specs_name_the_problem(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ObjectiveSpec(**kwargs)  # type: ignore[arg-type]


def test_invalid_terms_and_measurements() -> None:
    with pytest.raises(ValueError, match="tolerance"):
        Target(outcome="pl_peak_nm", value=550.0, tolerance=0.0)
    with pytest.raises(ValueError, match="identifier"):
        Maximize(outcome="q y")
    with pytest.raises(ConfigError, match="expected 'outcome >= number'"):
        OutcomeConstraint.parse("qy > 0.3")
    obj = qd_objective()
    with pytest.raises(ConfigError, match="'fwhm_nm' is missing"):
        obj.score({"pl_peak_nm": 550.0, "qy": 0.3})
    with pytest.raises(ConfigError, match="finite"):
        obj.score({"pl_peak_nm": 550.0, "qy": math.nan, "fwhm_nm": 50.0})


def _trial(index: int, pl_nm: float, qy: float, spec: ObjectiveSpec) -> Any:
    """A completed trial scored as the campaign scores it (no score when a constraint fails)."""
    from autolab.records import Features, Trial, TrialStatus

    feats = Features(pl_peak_nm=pl_nm, fwhm_nm=50.0, qy=qy, abs_peak_nm=pl_nm - 20,
                     absorbance_at_excitation=0.08)
    outcomes = feats.outcomes()
    score = spec.score(outcomes) if spec.is_feasible(outcomes) else None
    return Trial(index=index, conditions={"t_core_c": 180.0 + index},
                 status=TrialStatus.COMPLETED, features=feats, objective=score)


def test_one_best_rule_for_optimizer_campaign_steering_and_tracking() -> None:
    """Every "best" in autolab is ``ObjectiveSpec.best_index``: in band first, then feasible,
    then score; an experiment neither in band nor feasible is never best."""
    from autolab.optimizer.baselines import RandomOptimizer
    from autolab.space import Parameter, ParameterSpace
    from autolab.steer import best_trial
    from autolab.tracking.summary import best_trials

    spec = qd_objective(target_nm=550.0, tolerance_nm=2.0, min_qy=0.3)
    rows = [
        (547.8, 0.45),  # out of band, feasible, bright
        (549.6, 0.25),  # in band, misses qy >= 0.3: still beats any out-of-band experiment
        (556.0, 0.10),  # neither in band nor feasible: never best
    ]
    outcomes = [{"pl_peak_nm": pl, "qy": qy, "fwhm_nm": 50.0} for pl, qy in rows]
    assert spec.best_key(outcomes[2]) is None and spec.best_key(None) is None
    assert spec.best_index(outcomes) == 1
    assert spec.best_index([outcomes[0], outcomes[2]]) == 0
    assert spec.best_index([outcomes[2]]) is None
    trials = [_trial(i, pl, qy, spec) for i, (pl, qy) in enumerate(rows)]
    assert trials[1].objective is None  # the campaign gives an infeasible trial no score
    best = best_trial(spec, trials)
    assert best is not None and best.index == 1
    assert best_trials(trials, spec) == [0, 1, 1]
    assert best_trials(trials[2:], spec) == [None]
    space = ParameterSpace(parameters=(Parameter(name="t_core_c", lower=150.0, upper=250.0),))
    opt = RandomOptimizer(space, spec, seed=0)
    opt.tell([{"t_core_c": 180.0 + i} for i in range(3)], outcomes)
    assert opt.best() is opt.observations[1]
