"""The ``autolab`` command line.

Exit codes (so scripts and CI can tell outcomes apart):

==== =====================================================================
0    finished: budget used up, target reached, or no improvement
1    unexpected internal error (a bug: please report it with the traceback)
2    invalid input: campaign file, conditions, command-line arguments
3    interrupted (Ctrl-C / SIGTERM); the message says how to resume
4    a device or the journal failed; the executor was put in its safe state
==== =====================================================================
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from autolab.benchmarking.cli import benchmark_command
from autolab.exceptions import AutolabError, ConfigError, HardwareError, JournalError

EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_FAILURE = 0, 1, 2, 3, 4

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="autolab: a self-driving lab for InP/ZnS quantum-dot flow synthesis.")
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _tracking_uri(cli_uri: str | None, config_uri: str | None) -> str:
    return (cli_uri or config_uri or os.environ.get("MLFLOW_TRACKING_URI")
            or "sqlite:///mlflow.db")


def _parse_assignments(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"expected NAME=VALUE (e.g. t_core_c=180), got {item!r}")
        try:
            out[name.strip()] = math.inf if value.strip() in {"inf", "none"} else float(value)
        except ValueError as err:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from err
    return out


# --------------------------------------------------------------------------------------- simulate
@app.command()
def simulate(
    conditions: Annotated[list[str], typer.Argument(
        help="Conditions as NAME=VALUE: t_core_c tau_core_min t_shell_c tau_shell_min cl_to_i "
             "s_to_zn [p_to_in]. cl_to_i=inf means no iodide.")],
    seed: Annotated[int, typer.Option(help="Noise seed of the twin.")] = 0,
    out: Annotated[Path, typer.Option(help="PNG file for the absorption and PL spectra.")] = Path(
        "spectra.png"),
) -> None:
    """Run the digital twin once, print the features, and plot the spectra."""
    from autolab.analysis import analyze
    from autolab.executors.simulated import SimulatedExecutor
    from autolab.records import Conditions, Trial, TrialStatus
    from autolab.tracking.plots import figure_png, spectrum_figure

    try:
        cond = Conditions.from_mapping(_parse_assignments(conditions))
    except ConfigError as err:
        raise _fail(str(err), EXIT_INPUT) from err
    executor = SimulatedExecutor(seed=seed)
    try:
        measurement = executor.run(cond)
    except AutolabError as err:
        raise _fail(f"the experiment failed: {err}", EXIT_FAILURE) from err
    features = analyze(measurement)
    truth = executor.truths[max(executor.truths)]
    table = Table(title="Features (measured by the analyzer vs the twin's noise-free truth)")
    for col in ("feature", "measured", "± (1σ)", "truth"):
        table.add_column(col, justify="right" if col != "feature" else "left")
    rows = [("PL peak (nm)", features.pl_peak_nm, features.pl_peak_nm_err, truth.pl_peak_nm),
            ("FWHM (nm)", features.fwhm_nm, features.fwhm_nm_err, truth.fwhm_nm),
            ("QY (%)", 100 * features.qy, 100 * features.qy_err, 100 * truth.qy),
            ("abs. peak (nm)", features.abs_peak_nm, features.abs_peak_nm_err, truth.abs_peak_nm)]
    for name, v, e, t in rows:
        table.add_row(name, f"{v:.1f}", f"{e:.2f}", f"{t:.1f}")
    console.print(table)
    console.print(f"flags: {', '.join(features.flags.names()) or 'none'}; lab time "
                  f"{measurement.lab_hours:.2f} h; reagents "
                  + ", ".join(f"{k} {v:.1f} mL" for k, v in measurement.reagent_ml.items()))
    trial = Trial(index=0, conditions=cond.as_dict(), status=TrialStatus.COMPLETED,
                  features=features, measurement=measurement)
    fig = spectrum_figure(trial)
    if fig is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(figure_png(fig, dpi=120))
        console.print(f"spectra written to {out}")


# --------------------------------------------------------------------------------------- validate
@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Campaign YAML file.")]) -> None:
    """Check a campaign file and print what it will do."""
    from autolab.config import load_campaign

    try:
        cfg = load_campaign(file)
    except ConfigError as err:
        raise _fail(str(err), EXIT_INPUT) from err
    space = cfg.space.build()
    table = Table(title=f"{cfg.name}: {cfg.description}".rstrip(": "))
    table.add_column("parameter")
    table.add_column("range")
    table.add_column("scale")
    for p in space.parameters:
        table.add_row(p.name, p.allowed, p.scale)
    for k, v in cfg.space.fixed.items():
        table.add_row(k, f"fixed at {v:g}", "")
    console.print(table)
    console.print(f"objective: {cfg.objective.describe()}")
    console.print(f"optimizer: {cfg.optimizer.kind}; budget: {cfg.budget.max_experiments} "
                  f"experiments; executor: {cfg.executor.kind}; seed {cfg.seed}")
    for c in space.constraints:
        console.print(f"constraint: {c.describe()}")
    console.print("[green]valid[/]")


# --------------------------------------------------------------------------------------- run
@contextlib.contextmanager
def _progress(total: int, done: int = 0) -> Iterator[Any]:
    """A live bar (experiment k/N, best so far, lab hours) with one printed line per trial.

    Yields the ``on_trial`` callback for :class:`~autolab.campaign.Campaign`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from autolab.campaign import Campaign
    from autolab.records import Trial

    bar = Progress(TextColumn("[bold]experiments"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                   transient=True)
    task = bar.add_task("", total=total, completed=done)

    def on_trial(campaign: Campaign, trial: Trial) -> None:
        c = trial.conditions
        cond = (f"Tc {c['t_core_c']:.0f}°C τc {c['tau_core_min']:.1f}m Ts {c['t_shell_c']:.0f}°C "
                f"τs {c['tau_shell_min']:.1f}m Cl:I {c['cl_to_i']:.2g} S:Zn {c['s_to_zn']:.2f}")
        if trial.features is not None and trial.outcomes() is not None:
            f = trial.features
            result = f"PL {f.pl_peak_nm:6.1f} nm  FWHM {f.fwhm_nm:4.1f} nm  QY {100 * f.qy:4.1f}%"
        else:
            result = f"[yellow]failed: {trial.error}[/]"
        best = campaign.best()
        best_txt = "no feasible result yet" if best is None or best.features is None else (
            f"best exp-{best.index:03d}: {best.features.pl_peak_nm:.1f} nm, "
            f"QY {100 * best.features.qy:.0f}%")
        k = len(campaign.trials)
        bar.console.print(f"[bold]{k:>3}/{total}[/] {cond} -> {result}")
        bar.update(task, completed=k, description=(
            f"{best_txt}; lab {campaign.executor.lab_clock_h:.1f} h"))

    with bar:
        yield on_trial


def _finish(result: Any) -> None:
    from autolab.campaign import StopReason

    console.rule(f"stopped: {result.stop_reason.value}")
    best = result.best
    if best is not None and best.features is not None:
        f = best.features
        console.print(f"best: exp-{best.index:03d}, PL {f.pl_peak_nm:.1f} nm, "
                      f"FWHM {f.fwhm_nm:.1f} nm, QY {100 * f.qy:.1f}% at "
                      + ", ".join(f"{k}={v:.4g}" for k, v in best.conditions.items()))
    console.print(f"journal: {result.run_dir}")
    if result.tracking_run_id:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
        console.print(f"MLflow run {result.tracking_run_id}; browse it with:\n"
                      f"  .venv/bin/mlflow ui --backend-store-uri {uri}\n"
                      "  then open http://127.0.0.1:5000")
    if result.untracked:
        console.print(f"[yellow]{len(result.untracked)} experiment(s) not yet in MLflow; run: "
                      f"autolab sync {result.run_dir}[/]")
    if result.stop_reason is StopReason.INTERRUPTED:
        console.print(f"interrupted; continue with: autolab resume {result.run_dir}")
        raise typer.Exit(EXIT_INTERRUPTED)


def _make_tracker(enabled: bool, uri: str, experiment: str) -> Any:
    from autolab.tracking import MlflowTracker, NullTracker

    if not enabled:
        return NullTracker()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return MlflowTracker(tracking_uri=uri, experiment_name=experiment)


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Campaign YAML file (see campaigns/).")],
    budget: Annotated[int | None, typer.Option(help="Override budget.max_experiments.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the campaign seed.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where campaign folders are made.")] = Path("runs"),
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Journal only.")] = False,
) -> None:
    """Run a campaign to the end (Ctrl-C stops after the current experiment)."""
    from autolab.campaign import Campaign
    from autolab.config import load_campaign

    overrides: dict[str, Any] = {}
    if budget is not None:
        overrides["budget.max_experiments"] = budget
    if seed is not None:
        overrides["seed"] = seed
    try:
        cfg = load_campaign(file, overrides)
    except ConfigError as err:
        raise _fail(str(err), EXIT_INPUT) from err
    uri = _tracking_uri(tracking_uri, cfg.tracking.uri)
    tracker = _make_tracker(cfg.tracking.enabled and not no_tracking, uri, cfg.tracking.experiment)
    console.rule(f"campaign {cfg.name}: {cfg.objective.describe()}")
    try:
        with _progress(cfg.budget.max_experiments) as on_trial:
            campaign = Campaign.create(cfg, runs_dir, tracker=tracker, on_trial=on_trial)
            console.print(f"journal: {campaign.run_dir}")
            result = campaign.run()
        _finish(result)
    except KeyboardInterrupt as err:
        raise _fail("interrupted during an experiment; it will be re-run on resume",
                    EXIT_INTERRUPTED) from err
    except (HardwareError, JournalError) as err:
        raise _fail(str(err), EXIT_FAILURE) from err


def _latest_run(runs_dir: Path) -> Path:
    candidates = sorted(runs_dir.glob("*/journal.jsonl"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise JournalError(f"no campaign under {runs_dir}/; name the campaign folder explicitly")
    return candidates[-1].parent


@app.command()
def resume(
    run_dir: Annotated[Path | None, typer.Argument(
        help="Campaign folder (default: the most recent under runs/).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where campaign folders are.")] = Path("runs"),
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Journal only.")] = False,
) -> None:
    """Continue an interrupted campaign from its journal."""
    from autolab.campaign import JOURNAL_NAME, Campaign
    from autolab.tracking import Journal

    try:
        folder = run_dir or _latest_run(runs_dir)
        state = Journal.read(folder / JOURNAL_NAME)
        tcfg = state.header.config.get("tracking", {})
        uri = _tracking_uri(tracking_uri, state.tracking_uri or tcfg.get("uri"))
        tracker = _make_tracker(tcfg.get("enabled", True) and not no_tracking, uri,
                                tcfg.get("experiment", "autolab"))
        console.rule(f"resuming {folder.name} after {len(state.trials)} experiment(s)")
        with _progress(state.header.config["budget"]["max_experiments"],
                       len(state.trials)) as on_trial:
            campaign = Campaign.resume(folder, tracker=tracker, on_trial=on_trial)
            result = campaign.run()
        _finish(result)
    except ConfigError as err:
        raise _fail(str(err), EXIT_INPUT) from err
    except KeyboardInterrupt as err:
        raise _fail("interrupted during an experiment; it will be re-run on resume",
                    EXIT_INTERRUPTED) from err
    except (HardwareError, JournalError) as err:
        raise _fail(str(err), EXIT_FAILURE) from err


@app.command()
def sync(
    run_dir: Annotated[Path, typer.Argument(help="Campaign folder.")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Log to MLflow every experiment of a campaign that MLflow missed (exactly once)."""
    from autolab.campaign import JOURNAL_NAME
    from autolab.exceptions import TrackingError
    from autolab.tracking import Journal
    from autolab.tracking import sync as sync_journal

    try:
        state = Journal.read(run_dir / JOURNAL_NAME)
        tcfg = state.header.config.get("tracking", {})
        uri = _tracking_uri(tracking_uri, state.tracking_uri or tcfg.get("uri"))
        tracker = _make_tracker(True, uri, tcfg.get("experiment", "autolab"))
        n = sync_journal(run_dir / JOURNAL_NAME, tracker)
    except (JournalError, TrackingError) as err:
        raise _fail(str(err), EXIT_FAILURE) from err
    console.print(f"logged {n} experiment(s) to MLflow")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Campaign folder (holds journal.jsonl).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/report).")] = None,
) -> None:
    """Write a summary table and plots of a campaign into a folder."""
    from autolab.campaign import JOURNAL_NAME
    from autolab.tracking import Journal
    from autolab.tracking.report import write_report

    try:
        state = Journal.read(run_dir / JOURNAL_NAME)
    except JournalError as err:
        raise _fail(str(err), EXIT_FAILURE) from err
    folder = out or run_dir / "report"
    files = write_report(state, folder)
    for f in files:
        console.print(f"wrote {f}")


# --------------------------------------------------------------------------------------- hardware
lab_app = typer.Typer(no_args_is_help=True,
                      help="The virtual lab: every device of the rig emulated on a pty.")
devices_app = typer.Typer(no_args_is_help=True, help="Devices files and the devices they name.")
app.add_typer(lab_app, name="lab")
app.add_typer(devices_app, name="devices")


@lab_app.command("up")
def lab_up(
    devices_file: Annotated[Path, typer.Option(
        help="Where to write the devices file pointing at the emulators.")] = Path(
        "lab-devices.yaml"),
    time_scale: Annotated[float, typer.Option(
        help="Lab seconds per wall second (the emulated heaters, pumps and tanks run this much "
             "faster than real time).")] = 120.0,
    seed: Annotated[int, typer.Option(help="Detector-noise seed of the emulated optics.")] = 0,
) -> None:
    """Start the emulated lab, print its ports and write its devices file; Ctrl-C stops it."""
    import signal

    from autolab.virtuallab import VirtualLab

    with VirtualLab(time_scale=time_scale, seed=seed) as lab:
        path = lab.write_devices_file(devices_file)
        table = Table(title=f"virtual lab ({time_scale:g}x real time)")
        table.add_column("serial line")
        table.add_column("port")
        for name, port in lab.ports.items():
            table.add_row(name, port)
        console.print(table)
        console.print(f"devices file: {path}\ncheck it:     autolab devices check {path}\n"
                      "run on it:    autolab run campaigns/cstr_lab.yaml\nCtrl-C stops the lab.")
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            console.print("virtual lab stopped")


@devices_app.command("check")
def devices_check(file: Annotated[Path, typer.Argument(help="Devices YAML file.")]) -> None:
    """Ping every device of a devices file and print a status table (exit 4 if any fails)."""
    from autolab.exceptions import HardwareError
    from autolab.hardware.devices import load_devices
    from autolab.hardware.rig import Rig

    try:
        rig = Rig.open(load_devices(file))
    except ConfigError as err:
        raise _fail(str(err), EXIT_INPUT) from err
    except HardwareError as err:
        raise _fail(str(err), EXIT_FAILURE) from err
    table = Table(title=f"devices of {file}")
    for col in ("device", "kind", "port", "status"):
        table.add_column(col)
    failed = 0
    try:
        for dev in rig.devices():
            spec = rig.config.devices[dev.name]
            try:
                status = f"[green]ok[/] {dev.ping()}"
            except HardwareError as err:
                failed += 1
                status = f"[red]FAIL[/] {err}"
            table.add_row(dev.name, spec.kind, rig.config.ports[spec.port].url, status)
    finally:
        rig.close()
    console.print(table)
    if failed:
        raise _fail(f"{failed} device(s) did not answer", EXIT_FAILURE)


# The benchmark command lives with the benchmarking package (it composes campaign-level parts).
app.command("benchmark")(benchmark_command)


def main() -> None:
    """Entry point of the ``autolab`` script."""
    try:
        app()
    except AutolabError as err:  # anything not handled above is still a clear refusal
        err_console.print(f"[bold red]error:[/] {err}")
        sys.exit(EXIT_INPUT if isinstance(err, ConfigError) else EXIT_FAILURE)
