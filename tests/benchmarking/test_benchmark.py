"""``autolab benchmark``: spec validation, the job grid, end-to-end runs on a pool and Ray."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from dataclasses import replace
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
    run_job,
)
from autolab.benchmarking.cli import app
from autolab.benchmarking.family import nominal_member
from autolab.benchmarking.problem import Problem, best_reachable, feasible_rows, truth
from autolab.exceptions import ConfigError
from autolab.space import qd_space
from autolab.twin import TwinConfig
from tests.conftest import copy_store

from .tiny import TINY


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


@pytest.mark.parametrize("name", ["scale.yaml", "scale_small.yaml", "family.yaml",
                                  "family_heldout.yaml", "custom_reactor.yaml"])
def test_example_specs_validate(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # a custom reactor's spec adds its folder
    spec = load_spec(Path(__file__).parents[2] / "benchmarks" / name)
    assert len(spec.targets) >= 2
    jobs, excluded = make_jobs(spec, _fake_reach(spec))
    assert not excluded
    assert len(jobs) == (len(spec.strategies) * len(spec.members()) * len(spec.targets)
                         * len(spec.seed_list))
    assert len({j.cell_id for j in jobs}) == len(jobs)


def test_family_specs_split_design_and_heldout() -> None:
    root = Path(__file__).parents[2] / "benchmarks"
    design, held = load_spec(root / "family.yaml"), load_spec(root / "family_heldout.yaml")
    assert {m.split for m in design.members()} == {"design"}
    assert {m.split for m in held.members()} == {"heldout"}
    assert {t.pl_peak_nm for t in design.targets} >= {530, 550, 580, 610}
    assert {m.kind for m in design.members()} == {"twin", "rff", "additive"}


def test_family_seed_outside_its_split_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"not in the heldout set"):
        parse_spec({**TINY, "family": {"split": "heldout", "seeds": [3]}})


def _fake_reach(spec: BenchmarkSpec, qy: float = 0.4) -> dict[str, tuple[Any, ...]]:
    from autolab.benchmarking import Reachable

    return {m.name: tuple(Reachable(t.pl_peak_nm, t.tolerance_nm, qy, {}, 1)
                          for t in spec.targets) for m in spec.members()}


def test_unreachable_bands_are_excluded_and_counted() -> None:
    from autolab.benchmarking import Reachable

    spec = parse_spec({**TINY, "family": {"kinds": ["rff"], "per_kind": 2}})
    reach = _fake_reach(spec)
    reach["rff-1"] = (Reachable(560.0, 15.0, 0.0, {}, 1),)
    jobs, excluded = make_jobs(spec, reach)
    assert [(e.member, e.target_nm) for e in excluded] == [("rff-1", 560.0)]
    assert {j.member.name for j in jobs} == {"rff-0"}


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
    assert doc["provenance"]["git"]["commit"]
    assert doc["provenance"]["packages"]["botorch"]
    (reach,) = doc["reachable"]["twin-nominal"]
    assert 0 < reach["best_qy"] <= 1
    threshold = spec.success.qy_fraction * reach["best_qy"]
    for run in doc["runs"]:
        steps = run["steps"]
        assert len(steps) == run["experiments"] <= spec.budget
        assert run["threshold_qy"] == pytest.approx(threshold)
        ok = [s for s in steps if not s["failed"] and s["true_pl_nm"] is not None]
        hits = [s["experiment"] for s in ok
                if is_success(s["true_pl_nm"], s["true_qy"], 560, 15, threshold)]
        band = [s["experiment"] for s in ok if abs(s["true_pl_nm"] - 560) <= 15]
        # A good hit is the first bright in-band product, and the campaign stops there.
        assert run["experiments_to_success"] == (hits[0] if hits else None)
        assert run["experiments_to_in_band"] == (band[0] if band else None)
        assert run["found"] == bool(hits)
        if hits:
            assert hits == [len(steps)]
            assert run["stop_reason"] == "interrupted"
        else:
            assert run["stop_reason"] != "interrupted"
        assert run["failed"] == sum(s["failed"] for s in steps)
    by_strategy = {r["strategy"]: r for r in doc["summary"]["strategy"]}
    assert set(by_strategy) == {"random", "sobol-a"}
    for name, row in by_strategy.items():
        runs = [r for r in doc["runs"] if r["strategy"] == name]
        assert row["cells"] == 2
        assert row["found"] == sum(r["found"] for r in runs)
        assert row["in_band"] == sum(r["experiments_to_in_band"] is not None for r in runs)
    summary = list(csv.DictReader((out / "summary.csv").open(encoding="utf-8")))
    assert [r["strategy"] for r in summary] == ["random", "sobol-a"]
    assert "| random | 560 | 2 |" in (out / "summary.md").read_text(encoding="utf-8")
    assert len(list((out / "cells").glob("*.json"))) == 4
    return list(doc["runs"])


def _trajectory(runs: list[dict[str, Any]]) -> dict[tuple[str, int], list[Any]]:
    return {(r["strategy"], r["seed"]): [(s["true_pl_nm"], s["true_qy"], s["failed"])
                                         for s in r["steps"]] for r in runs}


@pytest.fixture(scope="module")
def pool_runs(tmp_path_factory: pytest.TempPathFactory,
              sqlite_template: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The tiny spec through the CLI on a 2-process pool, logged to a fresh SQLite store."""
    tmp = tmp_path_factory.mktemp("bench")
    spec_path = _write(tmp, TINY)
    uri = copy_store(sqlite_template, tmp / "mlflow.db")
    result = CliRunner().invoke(app, [str(spec_path), "--workers", "2", "--out",
                                      str(tmp / "out"), "--tracking-uri", uri,
                                      "--record", str(tmp / "results")])
    assert result.exit_code == 0, result.output
    assert "MLflow: benchmark run" in result.output
    assert "ETA" in result.output
    return tmp, _check_outputs(tmp / "out", parse_spec(TINY))


def test_process_pool_end_to_end(pool_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    tmp, runs = pool_runs
    assert len(runs) == 4
    record = json.loads((tmp / "results" / "benchmark-tiny.json").read_text())
    assert record["provenance"]["machine"]["cpu_model"]
    assert [t["title"] for t in record["tables"]] == ["by strategy", "by target",
                                                      "by member kind"]


def test_rerun_with_same_out_restores_every_cell(
        pool_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    tmp, runs = pool_runs
    result = CliRunner().invoke(app, [str(tmp / "spec.yaml"), "--out", str(tmp / "out"),
                                      "--no-tracking"])
    assert result.exit_code == 0, result.output
    assert "4 restored" in result.output and "0 to run" in result.output
    doc = json.loads((tmp / "out" / "results.json").read_text())
    assert _trajectory(doc["runs"]) == _trajectory(runs)


def test_changed_spec_reruns_only_changed_cells(
        pool_runs: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    tmp, _ = pool_runs
    shutil.copytree(tmp / "out", tmp_path / "out")
    spec_path = _write(tmp_path, {**TINY, "strategies": ["random", "sobol"]})
    result = CliRunner().invoke(app, [str(spec_path), "--out", str(tmp_path / "out"),
                                      "--no-tracking"])
    assert result.exit_code == 0, result.output
    assert "2 restored" in result.output and "2 to run" in result.output


def test_mlflow_parent_and_nested_runs(pool_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    from mlflow.tracking import MlflowClient

    tmp, runs = pool_runs
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    exp = client.get_experiment_by_name("autolab-benchmarks")
    assert exp is not None
    (parent,) = client.search_runs([exp.experiment_id], "tags.`autolab.role` = 'benchmark'")
    assert parent.data.params["budget"] == "4"
    assert "random.median" in parent.data.metrics
    assert "random.560.median" in parent.data.metrics
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
    assert len((tmp / "out" / "mlflow_logged.txt").read_text().split()) == 4


def test_in_process_equals_pool(pool_runs: tuple[Path, list[dict[str, Any]]]) -> None:
    """Cells are pure functions of (strategy, member, target, seed): where they run is moot."""
    _, runs = pool_runs
    spec = parse_spec(TINY)
    reach = json.loads((pool_runs[0] / "out" / "results.json").read_text())["reachable"]
    jobs, _ = make_jobs(spec, _fake_reach(spec, reach["twin-nominal"][0]["best_qy"]))
    first = run_job(jobs[0])
    expected = _trajectory(runs)[(first.strategy, first.seed)]
    got = [(None if math.isnan(s.true_pl_nm) else s.true_pl_nm, s.true_qy, s.failed)
           for s in first.steps]
    assert got == expected


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


def test_mlflow_gets_each_cell_as_it_finishes_and_resumes_into_the_same_parent(
        pool_runs: tuple[Path, list[dict[str, Any]]], tmp_path: Path,
        sqlite_template: Path) -> None:
    """A cell is a nested run the moment it is handed over; a resumed logger logs it once."""
    from mlflow.tracking import MlflowClient

    from autolab.benchmarking.mlflow_log import BenchmarkLogger
    from autolab.benchmarking.runner import RunResult

    tmp, runs = pool_runs
    uri = copy_store(sqlite_template, tmp_path / "stream.db")
    spec = parse_spec(TINY)
    first = RunResult.from_dict(runs[0])
    logger = BenchmarkLogger(uri, "stream", spec, tmp_path, {"backend": "process-pool"})
    logger(None, first)
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("stream")
    assert exp is not None

    def children() -> list[Any]:
        return list(client.search_runs([exp.experiment_id],
                                       f"tags.`mlflow.parentRunId` = '{logger.parent_id}'"))

    assert [c.data.params["seed"] for c in children()] == [str(first.seed)]
    again = BenchmarkLogger(uri, "stream", spec, tmp_path, {"backend": "process-pool"})
    assert again.parent_id == logger.parent_id
    again(None, first)  # already logged: skipped
    again(None, RunResult.from_dict(runs[1]))
    assert len(children()) == 2


# ------------------------------------------------------------------------ the per-step forecast
def test_forecast_switch_is_validated_and_reaches_every_job() -> None:
    assert parse_spec(TINY).forecast is True
    spec = parse_spec({**TINY, "forecast": False})
    jobs, _ = make_jobs(spec, _fake_reach(spec))
    assert jobs and not any(j.forecast for j in jobs)
    on_jobs, _ = make_jobs(parse_spec(TINY), _fake_reach(spec))
    assert {j.fingerprint() for j in jobs}.isdisjoint(j.fingerprint() for j in on_jobs)
    with pytest.raises(ConfigError, match="forecast"):
        parse_spec({**TINY, "forecast": "sometimes"})
    choices = load_spec(Path(__file__).parents[2] / "benchmarks" / "family_choices.yaml")
    assert choices.forecast is False


def test_forecast_off_keeps_every_proposal() -> None:
    """The forecast runs in a forked RNG on the fit the next ask reuses: proposals do not move."""
    # Two model proposals, each after a forecast on the fit it reuses (a third, budget 7, only
    # repeated that in both runs)
    spec = parse_spec({**TINY, "budget": 6,
                       "strategies": [{"kind": "botorch", "settings": {"n_init": 4}}]})
    jobs, _ = make_jobs(spec, _fake_reach(spec, qy=10.0))  # a good hit is out of reach: 6 steps
    on = run_job(jobs[0])
    off = run_job(replace(jobs[0], forecast=False))
    assert [s.forecast for s in off.steps] == [None] * 6
    assert any(s.forecast is not None for s in on.steps)

    def trace(result: Any) -> list[tuple[float, float, float, bool]]:
        return [(s.true_pl_nm, s.true_qy, s.measured_pl_nm, s.failed) for s in result.steps]

    assert np.array_equal(np.array(trace(on)), np.array(trace(off)), equal_nan=True)


def test_forecast_stop_rule_without_forecast_is_refused(tmp_path: Path) -> None:
    from autolab.campaign import Campaign
    from autolab.config import StopConfig

    spec = parse_spec(TINY)
    jobs, _ = make_jobs(spec, _fake_reach(spec))
    config = jobs[0].campaign_config().model_copy(
        update={"stop": StopConfig(target_reached=False, forecast_improve_below=0.05)})
    with pytest.raises(ConfigError, match=r"stop.forecast_improve_below needs the per-step"):
        Campaign.create(config, tmp_path / "runs", forecast=False)
    assert not (tmp_path / "runs").exists()
