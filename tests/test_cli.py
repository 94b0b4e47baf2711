"""The autolab command: exit codes, messages, files written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autolab.cli import EXIT_INPUT, app
from autolab.tracking import Journal
from autolab.tracking.journal import JOURNAL_NAME

ROOT = Path(__file__).parent.parent
CAMPAIGN = ROOT / "campaigns" / "target_550nm.yaml"
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exit_code != 1, repr(result.exception)  # exit 1 is a bug (a traceback)
    return result.exit_code, result.output


def test_validate_accepts_shipped_campaign() -> None:
    code, out = invoke("validate", str(ROOT / "campaigns" / "target_550nm.yaml"))
    assert code == 0, out
    assert "valid" in out
    assert "t_shell_c - t_core_c >= 40" in out
    assert "mode: steady" in out and "budget: 30 experiments, 250 lab h" in out
    assert "stop: target reached, QY >= 0.35, no improvement after 15" in out
    code, out = invoke("validate", str(ROOT / "campaigns" / "target_550nm_dynamic.yaml"))
    assert code == 0 and "mode: dynamic (plan approach" in " ".join(out.split())


def test_validate_refuses_bad_file_with_exit_2(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "campaigns" / "target_550nm.yaml").read_text())
    data["budget"]["max_experiments"] = -3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    code, out = invoke("validate", str(bad))
    assert code == EXIT_INPUT
    assert "budget.max_experiments = -3" in out


def test_simulate_prints_features_and_writes_png(tmp_path: Path) -> None:
    png = tmp_path / "spectra.png"
    code, out = invoke("simulate", "t_core_c=180", "tau_core_min=13", "t_shell_c=290",
                       "tau_shell_min=15", "cl_to_i=6", "s_to_zn=2", "--out", str(png))
    assert code == 0, out
    assert "PL peak" in out
    assert "QY" in out
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(("args", "needle"), [
    (["t_core_c=180"], "missing"),
    (["t_core_c=hot"], "expected a number"),
    (["t_core_c"], "NAME=VALUE"),
])
def test_simulate_bad_conditions_exit_2(args: list[str], needle: str) -> None:
    code, out = invoke("simulate", *args)
    assert code == EXIT_INPUT
    assert needle in out


def test_simulate_outside_reactor_limits_is_refused() -> None:
    code, out = invoke("simulate", "t_core_c=400", "tau_core_min=13", "t_shell_c=450",
                       "tau_shell_min=15", "cl_to_i=6", "s_to_zn=2")
    assert code == EXIT_INPUT  # invalid input, not a device failure
    assert "t_core_c" in out and "t_shell_c" in out  # every problem at once


def test_run_report_and_resume_of_a_finished_campaign(tmp_path: Path, fresh_store: str) -> None:
    runs = tmp_path / "runs"
    code, out = invoke("run", str(ROOT / "campaigns" / "target_550nm.yaml"), "--budget", "3",
                       "--runs-dir", str(runs), "--tracking-uri", fresh_store)
    assert code == 0, out
    assert "3/30" not in out  # the budget override is what the progress shows
    assert "3/3" in out
    assert "mlflow ui" in out
    (run_dir,) = runs.iterdir()
    code, out = invoke("report", str(run_dir))
    assert code == 0, out
    assert (run_dir / "report" / "summary.md").exists()
    assert (run_dir / "report" / "convergence.png").read_bytes().startswith(b"\x89PNG")
    for bad in (run_dir / "journal.jsonl", Path("/proc/autolab-nope")):  # a file; no folder
        code, out = invoke("report", str(run_dir), "--out", str(bad))
        assert code == EXIT_INPUT, out
        assert f"--out {bad}: cannot" in " ".join(out.split())
    code, out = invoke("resume", str(run_dir), "--no-tracking")
    assert code == 0, out
    assert "stopped: budget" in out
    # nothing went to MLflow this time: the earlier run is not offered as if it held it
    assert "mlflow ui" not in out and "not logged to MLflow" in out


def test_a_campaign_without_a_target_never_calls_its_best_in_band() -> None:
    from autolab.cli import _spec_text
    from autolab.config import load_campaign

    pareto = load_campaign(ROOT / "campaigns" / "max_qy_pareto.yaml").objective
    assert not pareto.has_target and pareto.constraints  # PL kept in 540-580 nm
    far = {"pl_peak_nm": 476.2, "qy": 0.5, "fwhm_nm": 40.0}
    assert _spec_text(pareto, far) == " (breaks a constraint)"
    assert _spec_text(pareto, {**far, "pl_peak_nm": 560.0}) == " (meets the constraints)"
    target = load_campaign(CAMPAIGN).objective
    assert _spec_text(target, {**far, "pl_peak_nm": 551.0}) == " (in band)"
    assert _spec_text(target, far) == " (not in band)"


def test_resume_without_a_campaign_is_a_usage_error(tmp_path: Path) -> None:
    code, out = invoke("resume", "--runs-dir", str(tmp_path))
    assert code == EXIT_INPUT
    assert "no campaign" in out


HEAVY = ("torch", "botorch", "matplotlib", "mlflow", "scipy.optimize")


def _run_in_a_fresh_process(*argv: str, heavy: tuple[str, ...] = HEAVY) -> str:
    """``autolab ARGV`` in a new interpreter; its output ends with ``EXIT code`` and the heavy
    libraries it loaded (``HEAVY [...]``): what a user waits for is only visible in a fresh one."""
    import subprocess
    import sys

    code = ("import sys; from autolab.cli import main\n"
            f"sys.argv = ['autolab', *{list(argv)!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
            f"print('HEAVY', [m for m in {heavy!r} if m in sys.modules])")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout


def test_help_lists_every_command_without_loading_heavy_libraries() -> None:
    out = _run_in_a_fresh_process("--help")
    assert "HEAVY []" in out
    for command in ("simulate", "validate", "run", "resume", "sync", "report", "benchmark",
                    "lab", "devices"):
        assert command in out


def test_benchmark_help_loads_no_heavy_library() -> None:
    """``autolab benchmark --help`` prints its options before torch, BoTorch or SciPy load."""
    out = _run_in_a_fresh_process("benchmark", "--help")
    assert "--workers" in out and "EXIT 0" in out and "HEAVY []" in out


def test_validate_loads_no_torch(tmp_path: Path) -> None:
    # validation loads scipy.interpolate, which imports scipy.optimize; the modelling stack does
    # not load
    out = _run_in_a_fresh_process("validate", str(CAMPAIGN), heavy=HEAVY[:-1])
    assert "valid" in out and "HEAVY []" in out


def test_run_without_tracking_loads_no_mlflow(tmp_path: Path) -> None:
    """A campaign on the NullTracker never imports MLflow (about 2.4 s of CPU per start; the
    SIGKILL resume test starts five such processes)."""
    out = _run_in_a_fresh_process("run", str(CAMPAIGN), "--budget", "1", "--no-tracking",
                                  "--runs-dir", str(tmp_path / "runs"), heavy=("mlflow",))
    assert "EXIT 0" in out and "HEAVY []" in out, out[-2000:]
    assert len(list((tmp_path / "runs").iterdir())) == 1  # it ran


def test_benchmark_command_is_loaded_on_use_and_keeps_its_help_and_exit_codes(
        tmp_path: Path) -> None:
    code, out = invoke("benchmark", "--help")
    assert code == 0 and "--workers" in out
    code, out = invoke("benchmark", str(tmp_path / "missing.yaml"))
    assert code == EXIT_INPUT


def test_parallel_campaign_runs_from_the_cli_and_its_report_names_the_reactors(
        tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code, out = invoke("run", str(ROOT / "campaigns" / "target_550nm_parallel.yaml"), "--budget",
                       "5", "--runs-dir", str(runs), "--no-tracking")
    assert code == 0, out
    assert "reactors (4, run at once): r1 (twin), r2 (twin), r3 (twin), r4 (twin)" in out
    assert "5/5" in out
    assert all(f"[r{i}]" in out for i in (1, 2, 3, 4))  # each line names its reactor
    (run_dir,) = runs.iterdir()
    code, out = invoke("report", str(run_dir))
    assert code == 0, out
    header = (run_dir / "report" / "trials.csv").read_text().splitlines()[0]
    assert "reactor" in header.split(",")


def test_a_target_out_of_reach_ends_the_campaign_and_says_why(tmp_path: Path) -> None:
    """The shipped campaign aimed at 700 nm on the twin (its PL spans about 500-610 nm).

    Real BoTorch, real twin, the shipped stop rule (0.002, 3 in a row after the design; a
    shorter design here, 4 points, to keep it cheap): it stops as "target out of reach" long
    before its budget, and the closing lines say what was measured and what to change.
    """
    data = yaml.safe_load(CAMPAIGN.read_text())
    data["objective"]["terms"][0]["value"] = 700
    data["optimizer"]["settings"] = {"n_init": 4}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data))
    code, out = invoke("run", str(tmp_path / "c.yaml"), "--no-tracking", "--budget", "14",
                       "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, out
    text = " ".join(out.split())
    assert "stopped: target out of reach after exp-" in text
    assert "no experiment was in band: pl_peak_nm 700 ± 2 (measured " in text
    assert "more than a 0.2 % chance of it" in text
    (run_dir,) = (tmp_path / "runs").iterdir()
    trials = len(Journal.read(run_dir / JOURNAL_NAME).trials)
    # the design's 4 told, the forecasts after the 4th, 5th, 6th... then it stopped
    assert 6 <= trials < 14
