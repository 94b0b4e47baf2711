"""Reactors of your own (``family.custom``): loading, validation, and the one loop end to end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from autolab.benchmarking import make_jobs, parse_spec, run_job
from autolab.benchmarking.benchmark import problems
from autolab.benchmarking.cli import app
from autolab.benchmarking.custom import CustomResponse, load_response, source_hash
from autolab.benchmarking.family import condition_matrix
from autolab.benchmarking.problem import best_reachable
from autolab.exceptions import ConfigError

from .custom_models import Plane

MODELS = "tests.benchmarking.custom_models"
SPEC: dict[str, Any] = {
    "name": "mine",
    "strategies": ["sobol"],
    "seeds": 1,
    "targets": [{"pl_peak_nm": 560, "tolerance_nm": 15}],
    "budget": 3,
    "success": {"qy_fraction": 0.2},
    "dense_search": {"sobol_log2": 9, "polish": 1},
    "forecast": False,
    "family": {"custom": [{"response": f"{MODELS}:plane", "seeds": [0, 2], "label": "mine"}]},
}


def _with_custom(**entry: Any) -> dict[str, Any]:
    return {**SPEC, "family": {"custom": [entry]}}


def test_custom_members_replace_the_drawn_kinds_unless_asked_for() -> None:
    spec = parse_spec(SPEC)
    assert [m.name for m in spec.members()] == ["mine-0", "mine-2"]
    assert {m.kind for m in spec.members()} == {"custom"}
    both = parse_spec({**SPEC, "family": {**SPEC["family"], "kinds": ["rff"], "per_kind": 1,
                                          "nominal": True}})
    assert [m.name for m in both.members()] == ["twin-nominal", "rff-0", "mine-0", "mine-2"]


def test_the_member_answers_with_the_models_truth() -> None:
    spec = parse_spec(SPEC)
    member = spec.members()[1]
    space = spec.space.build()
    x = np.array([[pt[n] for n in space.names]
                  for pt in space.from_unit(np.full((1, space.dim), 0.5))])
    c = condition_matrix(x, space.names, dict(spec.space.fixed))
    want = Plane(offset_nm=6.0).product(c)
    got = member.truth(c)
    assert got.pl_peak_nm[0] == pytest.approx(want[0][0])
    assert got.qy[0] == pytest.approx(want[2][0])
    # the model names no clogging corners: only a QY under the emission floor fails
    assert got.p_fail[0] == pytest.approx(0.0, abs=1e-12)


def test_a_single_object_is_one_reactor() -> None:
    spec = parse_spec(_with_custom(response=f"{MODELS}:ONE"))
    assert [m.name for m in spec.members()] == ["ONE-0"]
    with pytest.raises(ConfigError, match=r"one reactor .* one seed, got \[0, 1\]"):
        parse_spec(_with_custom(response=f"{MODELS}:ONE", seeds=[0, 1]))


@pytest.mark.parametrize(("entry", "message"), [
    ({"response": "no_colon"}, "family.custom.0.response"),
    ({"response": "not_a_module_anywhere:x"}, "cannot import 'not_a_module_anywhere'"),
    ({"response": f"{MODELS}:missing"}, "has no 'missing'"),
    ({"response": f"{MODELS}:NOT_A_MODEL"}, "expected an object with a product"),
    ({"response": f"{MODELS}:WRONG_SHAPE"}, r"pl_peak_nm of shape \(\d+,\)"),
    ({"response": f"{MODELS}:TOO_BRIGHT"}, r"expected qy in \[0, 1\]; got .* qy 1.2"),
    ({"response": f"{MODELS}:plane", "seeds": [1, 1]}, "distinct"),
    ({"response": f"{MODELS}:WrongShape"}, r"calling it with the member seed 0 failed: TypeError"),
    ({"response": f"{MODELS}:plane", "label": "a--b"}, "family.custom.0.label"),
    ({"response": f"{MODELS}:plane", "label": "rff"}, "'rff' is a built-in kind's name"),
])
def test_bad_custom_reactors_are_named(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_spec(_with_custom(**entry))


def test_two_entries_need_two_labels() -> None:
    entry = {"response": f"{MODELS}:plane"}
    with pytest.raises(ConfigError, match="its own label"):
        parse_spec({**SPEC, "family": {"custom": [entry, {**entry, "seeds": [5]}]}})


def test_a_cell_runs_the_one_loop_on_the_custom_reactor() -> None:
    spec = parse_spec(SPEC)
    reach = {m.name: (best_reachable(problems(spec, m)[0], sobol_log2=9, polish=1),)
             for m in spec.members()}
    jobs, _ = make_jobs(spec, reach)
    job = next(j for j in jobs if j.member.name == "mine-0")
    result = run_job(job)
    # grouped by its label among the member kinds of the summary
    assert result.member == "mine-0" and result.member_kind == "mine"
    assert len(result.steps) == 3
    # the judged truth is the model's at the conditions the rig realized
    for step in result.steps:
        if not step.failed:
            assert 440.0 < step.true_pl_nm < 700.0 and 0.0 <= step.true_qy <= 0.6


def _module(folder: Path, offset_nm: float) -> None:
    (folder / "my_lab_reactor.py").write_text(
        "from tests.benchmarking.custom_models import Plane\n"
        f"def draw(seed):\n    return Plane(offset_nm={offset_nm} + seed)\n", encoding="utf-8")


def test_a_model_beside_the_spec_runs_on_a_spawned_pool_and_a_changed_model_reruns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # the spec's folder joins it
    _module(tmp_path, 0.0)
    spec = {**SPEC, "strategies": ["sobol", "random"],
            "family": {"custom": [{"response": "my_lab_reactor:draw", "seeds": [0]}]}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(path), "--workers", "2", "--out", str(out),
                                      "--no-tracking"])
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted((r["strategy"], r["member"]) for r in runs) == [("random", "draw-0"),
                                                                  ("sobol", "draw-0")]
    again = CliRunner().invoke(app, [str(path), "--out", str(out), "--no-tracking"])
    assert "2 restored" in again.output, again.output
    # the model's source changed: its cells and yardsticks are not taken from the store
    _module(tmp_path, 1.0)
    source_hash.cache_clear()
    load_response.cache_clear()
    sys.modules.pop("my_lab_reactor", None)
    third = CliRunner().invoke(app, [str(path), "--out", str(out), "--no-tracking"])
    assert third.exit_code == 0, third.output
    assert "0 restored" in third.output and "2 to run" in third.output


def test_custom_response_pickles_as_its_path() -> None:
    import pickle

    response = CustomResponse(f"{MODELS}:plane", 3)
    assert pickle.loads(pickle.dumps(response)) == response
    assert response.identity()["response"] == f"{MODELS}:plane"
    assert len(response.identity()["source"]) == 16
    assert not math.isnan(response.stokes_ev)
