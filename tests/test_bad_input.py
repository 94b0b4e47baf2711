"""Bad input never crashes: each scenario of issue 12 §3 / issue 11 §4b through the real CLI.

Every scenario is a clear error naming the field (and, for files, the line), with the README's
exit code: 2 for invalid input, 4 for a journal failure. ``validate`` refuses whatever ``run``
refuses, and a refused ``run`` leaves no run folder. The table of these scenarios is in
docs/faults.md ("Bad input").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from autolab.cli import EXIT_FAILURE, EXIT_INPUT, app

ROOT = Path(__file__).parent.parent
CAMPAIGN = ROOT / "campaigns" / "target_550nm.yaml"
BASE = yaml.safe_load(CAMPAIGN.read_text())
GOOD = ["t_core_c=180", "tau_core_min=13", "t_shell_c=290", "tau_shell_min=15", "cl_to_i=6",
        "s_to_zn=2"]


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exit_code == 1:  # a traceback is a bug, whatever the scenario
        raise AssertionError(f"exit 1 (a bug) for {args}: {result.exception!r}\n{result.output}")
    return result.exit_code, " ".join(result.output.split())  # unwrap rich's line breaks


def write_campaign(tmp_path: Path, change: Callable[[dict[str, Any]], None] | None = None,
                   text: str | None = None) -> Path:
    path = tmp_path / "campaign.yaml"
    if text is None:
        data = json.loads(json.dumps(BASE))
        if change is not None:
            change(data)
        text = yaml.safe_dump(data, sort_keys=False)
    path.write_text(text)
    return path


def _set(dotted: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return change


# ------------------------------------------------------------------------------ validate == run
REFUSED_BY_BOTH = {
    "contradictory_constraints": (_set("space.constraints",
                                       ["t_core_c >= 200", "t_core_c <= 190"]),
                                  "space.constraints"),
    "impossible_constraint": (_set("space.constraints", ["t_shell_c - t_core_c >= 200"]),
                              "contradict"),
    "constraint_leaves_no_room": (_set("space.constraints", ["t_shell_c - t_core_c >= 159"]),
                                  "% of the search box"),
    "n_init_negative": (_set("optimizer.settings", {"n_init": -1}),
                        "optimizer.settings.n_init"),
    "n_init_typo": (_set("optimizer.settings", {"n_inti": 6}), "did you mean 'n_init'"),
    "n_init_huge": (_set("optimizer.settings", {"n_init": 1e12}), "optimizer.settings.n_init"),
    "settings_for_random": (lambda d: d["optimizer"].update(kind="random"),
                            "optimizer 'random' takes no settings"),
    "executor_settings_typo": (lambda d: d["executor"].update(
        kind="cstr", devices=str(ROOT / "campaigns" / "nope.yaml"),
        settings={"settle_residence_time": 3}), "did you mean 'settle_residence_times'"),
    "seed_huge": (_set("seed", 10**30), "seed"),
    "seed_bool": (_set("seed", True), "seed"),
    "max_experiments_bool": (_set("budget.max_experiments", True), "budget.max_experiments"),
    "max_lab_hours_inf": (_set("budget.max_lab_hours", float("inf")), "budget.max_lab_hours"),
    "target_9000nm": (_set("objective.terms", [{"kind": "target", "outcome": "pl_peak_nm",
                                                "value": 9000, "tolerance": 2}]),
                      "physical range [400, 800] nm"),
    "tolerance_tiny": (_set("objective.terms", [{"kind": "target", "outcome": "pl_peak_nm",
                                                 "value": 550, "tolerance": 1e-300}]),
                       "at least 0.1 nm"),
}


@pytest.mark.parametrize("scenario", sorted(REFUSED_BY_BOTH))
def test_validate_refuses_what_run_refuses_and_run_leaves_no_folder(
        tmp_path: Path, scenario: str) -> None:
    change, needle = REFUSED_BY_BOTH[scenario]
    path = write_campaign(tmp_path, change)
    code, out = invoke("validate", str(path))
    assert code == EXIT_INPUT, out
    assert needle in out
    runs = tmp_path / "runs"
    code, out = invoke("run", str(path), "--runs-dir", str(runs), "--no-tracking")
    assert code == EXIT_INPUT, out
    assert needle in out
    assert not runs.exists() or not any(runs.iterdir())


def test_cstr_campaign_with_a_missing_devices_file_is_refused_by_validate(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, lambda d: d["executor"].update(
        kind="cstr", devices=str(tmp_path / "missing-devices.yaml")))
    code, out = invoke("validate", str(path))
    assert code == EXIT_INPUT
    assert "cannot read devices file" in out and "missing-devices.yaml" in out


# ------------------------------------------------------------------------------ YAML
def test_deeply_nested_yaml_is_refused(tmp_path: Path) -> None:
    path = write_campaign(tmp_path, text="name: x\nspace: " + "[" * 20_000 + "]" * 20_000 + "\n")
    code, out = invoke("validate", str(path))
    assert code == EXIT_INPUT
    assert "nested more than" in out and "line 2" in out


def test_alias_bomb_is_refused_without_printing_its_value(tmp_path: Path) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = write_campaign(tmp_path, text="\n".join(["name: x", *lines, "seed: *i"]) + "\n")
    code, out = invoke("validate", str(path))
    assert code == EXIT_INPUT
    assert "refusing to expand" in out
    assert len(out) < 1000 and out.count("lol") == 0


def test_duplicate_keys_are_refused_naming_key_and_both_lines(tmp_path: Path) -> None:
    text = CAMPAIGN.read_text() + "seed: 8\n"
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("seed:"))
    last = len(text.splitlines())
    code, out = invoke("validate", str(write_campaign(tmp_path, text=text)))
    assert code == EXIT_INPUT
    assert f"duplicate key 'seed' at lines {first} and {last}" in out


def test_unknown_key_gets_did_you_mean_and_its_line(tmp_path: Path) -> None:
    text = CAMPAIGN.read_text().replace("  max_experiments: 30", "  max_experiment: 30")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "max_experiment:" in s)
    code, out = invoke("validate", str(write_campaign(tmp_path, text=text)))
    assert code == EXIT_INPUT
    assert f"line {line}: budget.max_experiment" in out
    assert "unknown key; did you mean 'max_experiments'?" in out


def test_typo_in_a_target_term_gets_did_you_mean(tmp_path: Path) -> None:
    text = CAMPAIGN.read_text().replace("value: 550, tolerance: 2", "value: 550, tolerence: 2")
    code, out = invoke("validate", str(write_campaign(tmp_path, text=text)))
    assert code == EXIT_INPUT
    assert "did you mean 'tolerance'?" in out


@pytest.mark.parametrize("text", ["seed: 1e30", "seed: 1.0e+30",
                                  "seed: 1000000000000000000000000000000"])
def test_seed_1e30_is_refused(tmp_path: Path, text: str) -> None:
    source = CAMPAIGN.read_text().replace("seed: 7", text)
    code, out = invoke("validate", str(write_campaign(tmp_path, text=source)))
    assert code == EXIT_INPUT
    assert "seed" in out


@pytest.mark.parametrize("text", ["max_lab_hours: .inf", "max_lab_hours: 1e400"])
def test_infinite_lab_hours_are_refused(tmp_path: Path, text: str) -> None:
    source = CAMPAIGN.read_text().replace("max_lab_hours: 250", text)
    code, out = invoke("validate", str(write_campaign(tmp_path, text=source)))
    assert code == EXIT_INPUT
    assert "budget.max_lab_hours" in out and "finite" in out


def test_n_init_1e12_written_as_yaml_is_refused(tmp_path: Path) -> None:
    source = CAMPAIGN.read_text().replace("{n_init: 6}", "{n_init: 1e12}")
    code, out = invoke("validate", str(write_campaign(tmp_path, text=source)))
    assert code == EXIT_INPUT
    assert "optimizer.settings.n_init" in out and "1000" in out


def test_target_outside_the_twins_reach_is_warned(tmp_path: Path) -> None:
    source = CAMPAIGN.read_text().replace("value: 550", "value: 450")
    code, out = invoke("validate", str(write_campaign(tmp_path, text=source)))
    assert code == 0, out
    assert "warning:" in out and "outside what the digital twin reaches" in out


# ------------------------------------------------------------------------------ run flags
@pytest.mark.parametrize("budget", ["7", "[1, 2]"])
def test_scalar_or_list_budget_with_budget_flag(tmp_path: Path, budget: str) -> None:
    source = CAMPAIGN.read_text()
    start = source.index("budget:")
    end = source.index("stop:")
    path = write_campaign(tmp_path, text=source[:start] + f"budget: {budget}\n" + source[end:])
    runs = tmp_path / "runs"
    code, out = invoke("run", str(path), "--budget", "3", "--runs-dir", str(runs),
                       "--no-tracking")
    assert code == EXIT_INPUT
    assert "budget" in out and "expected a mapping" in out
    assert not runs.exists()


@pytest.mark.parametrize("flag", [["--seed", "-1"], ["--seed", str(2**32)], ["--budget", "0"]])
def test_run_flags_out_of_range(tmp_path: Path, flag: list[str]) -> None:
    code, out = invoke("run", str(CAMPAIGN), *flag, "--runs-dir", str(tmp_path / "runs"))
    assert code == EXIT_INPUT
    assert flag[0] in out
    assert not (tmp_path / "runs").exists()


def test_runs_dir_that_is_a_file_is_refused_before_anything_runs(tmp_path: Path) -> None:
    afile = tmp_path / "runs"
    afile.write_text("not a folder")
    code, out = invoke("run", str(CAMPAIGN), "--runs-dir", str(afile), "--no-tracking")
    assert code == EXIT_INPUT
    assert "--runs-dir" in out and "is a file, not a folder" in out


@pytest.mark.parametrize(("text", "needle"), [
    ("", "the file is empty"),
    ("- 1\n- 2\n", "expected a mapping of campaign settings"),
    ("\x00\x01", "not valid YAML"),
])
def test_empty_or_non_mapping_campaign_files(tmp_path: Path, text: str, needle: str) -> None:
    code, out = invoke("validate", str(write_campaign(tmp_path, text=text)))
    assert code == EXIT_INPUT
    assert needle in out


def test_campaign_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    code, out = invoke("validate", str(path))
    assert code == EXIT_INPUT
    assert "not UTF-8" in out


# ------------------------------------------------------------------------------ simulate
def test_simulate_negative_seed_is_a_usage_error(tmp_path: Path) -> None:
    code, out = invoke("simulate", *GOOD, "--seed", "-1", "--out", str(tmp_path / "x.png"))
    assert code == EXIT_INPUT
    assert "--seed" in out


@pytest.mark.parametrize("target", ["/proc/nope/x.png", "DIR"])
def test_simulate_bad_out_is_refused_before_the_experiment(tmp_path: Path, target: str) -> None:
    out_path = str(tmp_path) if target == "DIR" else target
    code, out = invoke("simulate", *GOOD, "--out", out_path)
    assert code == EXIT_INPUT
    assert "--out" in out
    assert "PL peak" not in out  # nothing ran


def test_simulate_outside_the_envelope_is_input_exit_2() -> None:
    code, out = invoke("simulate", "t_core_c=999", *GOOD[1:])
    assert code == EXIT_INPUT
    assert "t_core_c=999" in out and "envelope" in out


def test_simulate_reports_missing_conditions_and_the_bad_value_together() -> None:
    code, out = invoke("simulate", "t_core_c=999")
    assert code == EXIT_INPUT
    assert "missing condition(s)" in out and "tau_core_min" in out
    assert "t_core_c=999" in out


def test_simulate_enforces_the_40c_shell_rule() -> None:
    code, out = invoke("simulate", "t_core_c=180", "tau_core_min=13", "t_shell_c=210",
                       "tau_shell_min=15", "cl_to_i=6", "s_to_zn=2")
    assert code == EXIT_INPUT
    assert "t_shell_c - t_core_c >= 40" in out and "30 °C above" in out


def test_simulate_repeated_condition_is_refused() -> None:
    code, out = invoke("simulate", *GOOD, "t_core_c=190")
    assert code == EXIT_INPUT
    assert "t_core_c is given twice (180 and 190)" in out


def test_simulate_unknown_condition_gets_did_you_mean() -> None:
    code, out = invoke("simulate", *GOOD, "t_shel_c=290")
    assert code == EXIT_INPUT
    assert "did you mean 't_shell_c'" in out


def test_undetermined_features_print_not_found_never_nan() -> None:
    from autolab.cli import _feature_text

    assert _feature_text(float("nan"), float("nan")) == ("not found", "")
    assert _feature_text(0.41, 0.01, 100) == ("41.0", "1.00")


# ------------------------------------------------------------------------------ lab, resume
@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf"])
def test_lab_up_bad_time_scale_is_a_clear_error(tmp_path: Path, value: str) -> None:
    code, out = invoke("lab", "up", "--time-scale", value, "--devices-file",
                       str(tmp_path / "lab.yaml"))
    assert code == EXIT_INPUT
    assert "--time-scale" in out and "validation error" not in out
    assert not (tmp_path / "lab.yaml").exists()


def test_lab_up_negative_seed_is_a_usage_error(tmp_path: Path) -> None:
    code, out = invoke("lab", "up", "--seed", "-1", "--devices-file", str(tmp_path / "l.yaml"))
    assert code == EXIT_INPUT
    assert "--seed" in out


def test_resume_without_a_campaign_is_a_usage_error(tmp_path: Path) -> None:
    code, out = invoke("resume", "--runs-dir", str(tmp_path))
    assert code == EXIT_INPUT
    assert "no campaign under" in out


def test_resume_of_a_folder_without_journal_is_a_usage_error(tmp_path: Path) -> None:
    code, out = invoke("resume", str(tmp_path))
    assert code == EXIT_INPUT
    assert "not a campaign folder" in out


# ------------------------------------------------------------------------------ journals
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A real 3-experiment campaign run by the ``autolab`` process at 80 columns.

    Returns its folder and the process's stdout and stderr.
    """
    home = tmp_path_factory.mktemp("campaign")
    spec = json.loads(json.dumps(BASE))
    spec["optimizer"] = {"kind": "sobol"}
    (home / "c.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "COLUMNS": "80", "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "autolab", "run", "c.yaml", "--budget", "3", "--runs-dir",
         "runs", "--tracking-uri", f"sqlite:///{home / 'mlflow.db'}"],
        cwd=home, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = (home / "runs").iterdir()
    return run_dir, proc.stdout, proc.stderr


def _edited(run_dir: Path, tmp_path: Path,
            edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Path:
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    journal = copy / "journal.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    journal.write_text("".join(json.dumps(r) + "\n" for r in edit(records)))
    return copy


def _first(records: list[dict[str, Any]], kind: str) -> int:
    return next(i for i, r in enumerate(records) if r["type"] == kind)


def _conditions_abc(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    records[_first(records, "trial")]["trial"]["conditions"] = "abc"
    return records


def _started_without_conditions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [*records, {"type": "started", "index": 3}]


def _header_config_empty(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    records[0]["header"]["config"] = {}
    return records


def _header_budget_scalar(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    records[0]["header"]["config"]["budget"] = 5
    return records


def _index_1e23(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    started = records[_first(records, "started")]
    return [*records, {**started, "index": 10**23}]


JOURNAL_EDITS = {
    "conditions_abc": (_conditions_abc, "conditions must be an object"),
    "started_without_conditions": (_started_without_conditions, "missing field 'conditions'"),
    "header_config_empty": (_header_config_empty, "line 1 (header config)"),
    "header_budget_scalar": (_header_budget_scalar, "budget = 5"),
    "index_1e23": (_index_1e23, "index must be an integer in [0, 1000000)"),
}


@pytest.mark.parametrize("scenario", sorted(JOURNAL_EDITS))
@pytest.mark.parametrize("command", ["resume", "report", "sync"])
def test_hand_edited_journal_is_a_journal_failure_with_the_line(
        finished_run: tuple[Path, str, str], tmp_path: Path, scenario: str,
        command: str) -> None:
    edit, needle = JOURNAL_EDITS[scenario]
    folder = _edited(finished_run[0], tmp_path, edit)
    before = (folder / "journal.jsonl").read_bytes()
    extra = ["--no-tracking"] if command == "resume" else []
    if command == "sync":
        extra = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    code, out = invoke(command, str(folder), *extra)
    assert code == EXIT_FAILURE, out
    assert needle in out and "line " in out
    assert (folder / "journal.jsonl").read_bytes() == before  # nothing appended to it


# ------------------------------------------------------------------------------ terminal
def test_progress_lines_fit_80_columns_and_the_summary_names_experiments(
        finished_run: tuple[Path, str, str]) -> None:
    run_dir, stdout, stderr = finished_run
    lines = stdout.splitlines()
    # every line fits, but a link or path to copy, printed alone on its line, never broken
    alone = [x for x in lines if len(x) > 80]
    assert all(x.startswith("  ") and " " not in x.strip() for x in alone), alone
    assert any("/#/experiments/" in x and "/runs/" in x for x in alone)  # the run's page
    progress = [x for x in lines if x.startswith("exp-")]
    assert [x.split()[0] for x in progress] == ["exp-000", "exp-001", "exp-002"]
    assert all("PL " in x and " nm" in x for x in progress)  # the result is never cut off
    assert "after exp-002" in stdout  # the experiment that triggered the stop
    assert "best: exp-00" in stdout
    # library chatter went to the campaign log, not the terminal
    log = (run_dir / "campaign.log").read_text()
    assert "Creating initial MLflow database tables" in log
    assert "MLflow database tables" not in stdout + stderr
    assert "Warning" not in stdout + stderr


@settings(max_examples=200, deadline=None)
@given(required=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=4),
       optional=st.lists(st.text(min_size=1, max_size=15), max_size=8),
       width=st.integers(20, 200))
def test_fit_fields_never_splits_an_optional_field(required: list[str], optional: list[str],
                                                   width: int) -> None:
    from autolab.cli import fit_fields

    line = fit_fields(required, optional, width)
    assert len(line) <= width
    head = "  ".join(required)
    if len(head) > width:
        assert line.endswith("…")
        return
    candidates = [head] + [head + "  " + " ".join(optional[:k])
                           for k in range(1, len(optional) + 1)]
    assert line in candidates, f"{line!r} is not the head plus whole optional fields"


# ------------------------------------------------------------------------------ fuzz
@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=8))
def test_simulate_arguments_never_crash_the_parser(words: list[str]) -> None:
    from autolab.cli import _parse_assignments, condition_problems
    from autolab.exceptions import ConfigError

    try:
        values = _parse_assignments(words)
    except ConfigError:
        return
    assert isinstance(condition_problems(values), list)
