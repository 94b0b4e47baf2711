"""``autolab benchmark``: spec validation, the job grid, end-to-end runs on a pool and Ray."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from autolab.benchmarking import (
    OUTPUT_FILES,
    BenchmarkSpec,
    is_success,
    load_spec,
    make_jobs,
    parse_spec,
    run_benchmark,
    run_job,
)
from autolab.benchmarking.cli import app
from autolab.benchmarking.family import nominal_member
from autolab.benchmarking.problem import Problem, best_reachable, feasible_rows, truth
from autolab.exceptions import ConfigError
from autolab.space import qd_space
from autolab.twin import TwinConfig

#: The tiny grid of the brief: 2 strategies × 2 seeds × 1 target, budget 4. A loose success
#: threshold and a wide band make some runs succeed, so both branches of the bookkeeping run.
TINY: dict[str, Any] = {
    "name": "tiny",
    "strategies": ["random", {"kind": "sobol", "label": "sobol-a"}],
    "seeds": 2,
    "targets": [{"pl_peak_nm": 560, "tolerance_nm": 15}],
    "budget": 4,
    "success": {"qy_fraction": 0.2},
    "dense_search": {"sobol_log2": 9, "polish": 1},
}


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ the spec
def test_spec_defaults_and_seed_list() -> None:
    spec = parse_spec(TINY)
    assert spec.seed_list == (0, 1)
    assert [s.name for s in spec.strategies] == ["random", "sobol-a"]
    assert spec.space.fixed == {"p_to_in": 3.6}
    assert parse_spec({**TINY, "seeds": [3, 7]}).seed_list == (3, 7)


@pytest.mark.parametrize(("change", "message"), [
    ({"budjet": 3}, "budjet = 3: unknown key (not part of the benchmark spec schema"),
    ({"budget": 0}, "budget = 0"),
    ({"strategies": ["random", "random"]}, "repeated: ['random']"),
    ({"strategies": ["annealing"]}, "strategies.0"),
    ({"strategies": [{"kind": "botorch", "settings": {"n_inti": 3}}]}, "strategy 'botorch'"),
    ({"targets": [{"pl_peak_nm": 900}]}, "targets.0.pl_peak_nm = 900"),
    ({"seeds": [1, 1]}, "distinct"),
])
def test_spec_errors_name_the_field(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    path = _write(tmp_path, {**TINY, **change})
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_spec_is_frozen() -> None:
    spec = parse_spec(TINY)
    with pytest.raises(ValueError, match="frozen"):
        spec.budget = 10  # type: ignore[misc]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nstrategies: [random\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_spec(path)


@pytest.mark.parametrize("name", ["scale.yaml", "scale_small.yaml"])
def test_example_specs_validate(name: str) -> None:
    spec = load_spec(Path(__file__).parents[2] / "benchmarks" / name)
    assert len(spec.targets) >= 2
    assert len(make_jobs(spec, tuple(_fake_reach(spec)))) == (
        len(spec.strategies) * len(spec.targets) * len(spec.seed_list))


def _fake_reach(spec: BenchmarkSpec) -> list[Any]:
    from autolab.benchmarking import Reachable

    return [Reachable(t.pl_peak_nm, t.tolerance_nm, 0.4, {}, 1) for t in spec.targets]


# ------------------------------------------------------------------------------- problem pieces
def test_success_criterion() -> None:
    assert is_success(551.9, 0.40, 550, 2, 0.38)
    assert not is_success(552.1, 0.40, 550, 2, 0.38)  # out of band
    assert not is_success(550.0, 0.37, 550, 2, 0.38)  # not bright enough
    assert not is_success(math.nan, 0.9, 550, 2, 0.38)


def test_vectorized_feasibility_matches_space() -> None:
    space = qd_space()
    x = np.array([[p[n] for n in space.names] for p in
                  space.from_unit(np.random.default_rng(0).random((200, space.dim)))])
    expected = [space.is_feasible(dict(zip(space.names, row, strict=True))) for row in x]
    assert feasible_rows(space, x).tolist() == expected
    assert 0 < sum(expected) < len(expected)


def test_best_reachable_is_in_band_and_truthful() -> None:
    space = qd_space()
    problem = Problem(space, {"p_to_in": 3.6}, 560.0, 5.0, nominal_member(TwinConfig()))
    reach = best_reachable(problem, sobol_log2=9, polish=1)
    assert 0.0 < reach.best_qy <= 1.0
    x = [[reach.conditions[n] for n in space.names]]
    pl, qy = truth(np.asarray(x), space.names, {"p_to_in": 3.6}, nominal_member(TwinConfig()))
    assert abs(pl[0] - 560.0) <= 5.0
    assert qy[0] == pytest.approx(reach.best_qy)
    assert space.is_feasible(reach.conditions)


# ------------------------------------------------------------------------------- end to end
def _check_outputs(out: Path, spec: BenchmarkSpec) -> list[dict[str, Any]]:
    """The files are complete and agree with each other; returns the JSON runs."""
    for name in OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert (out / "distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((out / "runs.csv").open(encoding="utf-8")))
    assert len(rows) == 4
    assert {(r["strategy"], r["seed"]) for r in rows} == {
        (s, str(k)) for s in ("random", "sobol-a") for k in (0, 1)}
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert doc["name"] == "tiny"
    (reach,) = doc["reachable"]
    assert 0 < reach["best_qy"] <= 1
    threshold = spec.success.qy_fraction * reach["best_qy"]
    for run in doc["runs"]:
        steps = run["steps"]
        assert len(steps) == run["experiments"] <= spec.budget
        assert run["threshold_qy"] == pytest.approx(threshold)
        hits = [s["experiment"] for s in steps if s["true_pl_nm"] is not None
                and is_success(s["true_pl_nm"], s["true_qy"], 560, 15, threshold)]
        # Success is the first hit, and the run stops there.
        assert run["experiments_to_success"] == (hits[0] if hits else None)
        assert run["found"] == bool(hits)
        if hits:
            assert hits == [len(steps)]
        assert run["failed"] == sum(s["failed"] for s in steps)
    by_strategy = {r["strategy"]: r for r in doc["summary"]}
    assert set(by_strategy) == {"random", "sobol-a"}
    for name, row in by_strategy.items():
        runs = [r for r in doc["runs"] if r["strategy"] == name]
        assert row["runs"] == 2
        assert row["found"] == sum(r["found"] for r in runs)
    summary = list(csv.DictReader((out / "summary.csv").open(encoding="utf-8")))
    assert [r["strategy"] for r in summary] == ["random", "sobol-a"]
    assert "| random | 560 |" in (out / "summary.md").read_text(encoding="utf-8")
    return list(doc["runs"])


def _trajectory(runs: list[dict[str, Any]]) -> dict[tuple[str, int], list[Any]]:
    return {(r["strategy"], r["seed"]): [(s["true_pl_nm"], s["true_qy"], s["failed"])
                                         for s in r["steps"]] for r in runs}


@pytest.fixture(scope="module")
def pool_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """The tiny spec through the CLI on a 2-process pool, logged to a fresh SQLite store."""
    tmp = tmp_path_factory.mktemp("bench")
    spec_path = _write(tmp, TINY)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    result = CliRunner().invoke(app, [str(spec_path), "--workers", "2", "--out",
                                      str(tmp / "out"), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    assert "MLflow: benchmark run" in result.output
    return tmp, _check_outputs(tmp / "out", parse_spec(TINY))


def test_process_pool_end_to_end(pool_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    tmp, runs = pool_runs
    assert len(runs) == 4


def test_mlflow_parent_and_nested_runs(pool_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    from mlflow.tracking import MlflowClient

    tmp, runs = pool_runs
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("autolab-benchmarks")
    assert exp is not None
    (parent,) = client.search_runs([exp.experiment_id], "tags.`autolab.role` = 'benchmark'")
    assert parent.data.params["budget"] == "4"
    assert "random.560nm.median" in parent.data.metrics
    children = client.search_runs([exp.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4
    for child in children:
        match = next(r for r in runs if r["strategy"] == child.data.params["strategy"]
                     and r["seed"] == int(child.data.params["seed"]))
        assert child.data.metrics["experiments"] == match["experiments"]
        history = client.get_metric_history(child.info.run_id, "true_qy")
        assert len(history) == match["experiments"]
    artifacts = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert set(OUTPUT_FILES) <= artifacts


def test_in_process_equals_pool(pool_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    """Runs are pure functions of (strategy, seed, target): where they run cannot matter."""
    _, runs = pool_runs
    spec = parse_spec(TINY)
    reach = json.loads((pool_runs[0] / "out" / "results.json").read_text())["reachable"][0]
    from autolab.benchmarking import Reachable

    jobs = make_jobs(spec, (Reachable(560.0, 15.0, reach["best_qy"], {}, 1),))
    first = run_job(jobs[0])
    expected = _trajectory(runs)[(first.strategy, first.seed)]
    got = [(None if math.isnan(s.true_pl_nm) else s.true_pl_nm, s.true_qy, s.failed)
           for s in first.steps]
    assert got == expected


def test_ray_end_to_end(tmp_path: Path, pool_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    ray = pytest.importorskip("ray", reason="Ray is the optional 'ray' extra")
    from autolab.benchmarking import write_outputs

    spec = parse_spec(TINY)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_benchmark(spec, ray_address="auto")
    finally:
        ray.shutdown()
    assert outcome.meta["backend"] == "ray"
    write_outputs(outcome, tmp_path / "out")
    runs = _check_outputs(tmp_path / "out", spec)
    assert _trajectory(runs) == _trajectory(pool_runs[1])


def test_cli_rejects_a_bad_spec(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [str(_write(tmp_path, {**TINY, "budget": -1}))])
    assert result.exit_code == 2
    assert "budget" in result.output


def test_ray_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    from autolab.benchmarking.execution import run_ray

    with pytest.raises(ConfigError, match=r"autolab\[ray\]"):
        run_ray([], "auto")
