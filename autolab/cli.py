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
import gc
import logging
import logging.handlers
import math
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from autolab.cli_steer import ReviewerOption, ReviewOption, make_cli_reviewer, stop_exit_code
from autolab.cli_steer import register as register_steer
from autolab.console import console, err_console, fail, say_command
from autolab.exceptions import (
    AutolabError,
    CampaignInterrupted,
    ConfigError,
    HardwareError,
    JournalError,
)

if TYPE_CHECKING:
    from autolab.campaign import Campaign, CampaignResult
    from autolab.config import CampaignConfig
    from autolab.objective import ObjectiveSpec
    from autolab.records import Features, Trial
    from autolab.tracking import JournalState

EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_FAILURE = 0, 1, 2, 3, 4
#: Largest seed the command line takes (``autolab.config.SEED_LIMIT - 1``: 32-bit seeds).
SEED_MAX = 2**32 - 1
#: Largest ``--budget`` (``budget.max_experiments`` allows the same).
BUDGET_MAX = 10_000
#: Name of the campaign's log file in its run folder (library warnings, MLflow's chatter).
LOG_NAME = "campaign.log"
#: Fastest virtual lab (the devices file's ``time_scale`` allows the same).
TIME_SCALE_MAX = 100_000.0

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="autolab: a self-driving lab for InP/ZnS quantum-dot flow synthesis.")


def _tracking_uri(cli_uri: str | None, config_uri: str | None) -> str:
    from autolab.tracking.base import resolve_tracking_uri  # absolute: journaled for sync

    return resolve_tracking_uri(cli_uri or config_uri)


def _shown_uri(uri: str) -> str:
    """The store's URI as the closing lines show it: short where it can be, always copyable.

    A SQLite store under the working folder shows as ``sqlite:///mlflow.db``; any other URI as
    it is (the absolute form is what the journal keeps for ``sync``).
    """
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = Path(uri[len(prefix):])
        with contextlib.suppress(ValueError):
            return prefix + str(path.relative_to(Path.cwd()))
    return uri


#: Where ``mlflow ui`` serves by default.
MLFLOW_UI = "http://127.0.0.1:5000"


def _run_page(uri: str, run_id: str) -> str:
    """The campaign run's page in the MLflow UI (its front page if the store cannot say).

    Why: MLflow 3 opens on its GenAI view, and a researcher had to find the classic view, the
    experiment and the run by hand. A tracking server serves its own UI; a local store is
    served by ``mlflow ui`` at :data:`MLFLOW_UI`.
    """
    from mlflow import MlflowClient

    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else MLFLOW_UI
    try:
        experiment = MlflowClient(uri).get_run(run_id).info.experiment_id
    except Exception:  # any failure of the store (down, moved): the front page still serves
        return base
    return f"{base}/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning"


def _parse_assignments(items: list[str]) -> dict[str, float]:
    """``NAME=VALUE`` words -> values; a name given twice is an error, not "last one wins".

    Raises:
        ConfigError: A word is not ``NAME=VALUE``, a value is not a number, or a name repeats.
    """
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"expected NAME=VALUE (e.g. t_core_c=180), got {item!r}")
        try:
            number = math.inf if value.strip() in {"inf", "none"} else float(value)
        except ValueError as err:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from err
        if name in out:
            raise ConfigError(f"{name} is given twice ({out[name]:g} and {number:g}); "
                              "give each condition once")
        out[name] = number
    return out


def condition_problems(values: Mapping[str, float]) -> list[str]:
    """Everything wrong with conditions for one twin experiment, all at once.

    Unknown and missing names, values outside the simulated reactor's envelope, and the rule
    that the shell runs at least 40 °C hotter than the core (:data:`autolab.space.QD_SHELL_HOTTER`,
    the one definition of that rule) are all reported together, so a person fixes the command
    once.
    """
    from autolab.records import CONDITION_NAMES, REQUIRED_CONDITIONS
    from autolab.space import QD_SHELL_HOTTER
    from autolab.twin import ENVELOPE
    from autolab.yamlfile import did_you_mean

    names = list(CONDITION_NAMES)
    problems = [f"unknown condition {n!r}{did_you_mean(n, names)}"
                for n in values if n not in names]
    missing = [n for n in REQUIRED_CONDITIONS if n not in values]  # as Conditions.from_mapping
    if missing:
        problems.append(f"missing condition(s) {missing}")
    for name, (lo, hi) in ENVELOPE.items():
        v = values.get(name)
        if v is not None and not lo <= v <= hi:
            problems.append(f"{name}={v:g} is outside the reactor's envelope [{lo:g}, {hi:g}]")
    if {"t_core_c", "t_shell_c"} <= set(values) and QD_SHELL_HOTTER.slack(values) < 0:
        gap = values["t_shell_c"] - values["t_core_c"]
        where = f"{gap:g} °C above" if gap >= 0 else f"{-gap:g} °C below"
        problems.append(f"t_shell_c={values['t_shell_c']:g} is {where} t_core_c="
                        f"{values['t_core_c']:g}; the rule is {QD_SHELL_HOTTER.describe()} (ZnS "
                        "does not grow at core temperatures)")
    return problems


def check_output_file(out: Path, option: str = "--out") -> None:
    """Refuse an output path that cannot be written, before any work is done.

    Makes the file's folder if it is missing (as writing the file would).

    Raises:
        ConfigError: ``out`` is a folder, or its folder cannot be created or written.
    """
    if out.is_dir():
        raise ConfigError(f"{option} {out}: is a folder; give a file name such as "
                          f"{out / 'spectra.png'}")
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{option} {out}: cannot create the folder {folder}: "
                          f"{err.strerror}") from err
    if not os.access(folder, os.W_OK | os.X_OK) or (out.exists()
                                                     and not os.access(out, os.W_OK)):
        raise ConfigError(f"{option} {out}: cannot write there (no permission in {folder})")


def check_output_folder(folder: Path, option: str) -> None:
    """Make sure ``folder`` is (or can become) a writable folder, before any work is done.

    Raises:
        ConfigError: It is a file, cannot be created, or cannot be written.
    """
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{option} {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{option} {folder}: cannot create it: {err.strerror}") from err
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {folder}: cannot write there (no permission)")


def _feature_text(value: float, err: float, scale: float = 1.0) -> tuple[str, str]:
    """Measured value and 1σ for the table; ``not found`` (never ``nan``) when undetermined."""
    if not math.isfinite(value):
        return "not found", ""
    return f"{scale * value:.1f}", (f"{scale * err:.2f}" if math.isfinite(err) else "")


# --------------------------------------------------------------------------------------- simulate
@app.command()
def simulate(
    conditions: Annotated[list[str], typer.Argument(
        help="Conditions as NAME=VALUE, required: t_core_c tau_core_min t_shell_c "
             "tau_shell_min cl_to_i s_to_zn (cl_to_i=inf: no iodide); optional: p_to_in, "
             "stir_rpm, t_tank<i>_c, s_inject_tank, s_inject_count.")],
    seed: Annotated[int, typer.Option(help="Noise seed of the twin.", min=0,
                                      max=SEED_MAX)] = 0,
    out: Annotated[Path, typer.Option(help="PNG file for the absorption and PL spectra.")] = Path(
        "spectra.png"),
) -> None:
    """Run the digital twin once, print the features, and plot the spectra."""
    try:
        values = _parse_assignments(conditions)
        problems = condition_problems(values)
        if problems:
            raise ConfigError("; ".join(problems))
        check_output_file(out)
    except ConfigError as err:
        raise fail(str(err), EXIT_INPUT) from err
    _simulate(values, seed, out)


def _simulate(values: dict[str, float], seed: int, out: Path) -> None:
    from autolab.analysis import analyze
    from autolab.exceptions import ConditionsError
    from autolab.executors.simulated import SimulatedExecutor
    from autolab.records import Conditions, Trial, TrialStatus
    from autolab.tracking.plots import figure_png, spectrum_figure

    cond = Conditions.from_mapping(values)
    executor = SimulatedExecutor(seed=seed)
    try:
        measurement = executor.run(cond)
    except ConditionsError as err:  # the envelope check above should have caught it
        raise fail(str(err), EXIT_INPUT) from err
    except AutolabError as err:
        raise fail(f"the experiment failed: {err}", EXIT_FAILURE) from err
    features = analyze(measurement)
    truth = executor.truths[max(executor.truths)]
    _print_features(features, truth)
    console.print(f"flags: {', '.join(features.flags.names()) or 'none'}; lab time "
                  f"{measurement.lab_hours:.2f} h; reagents "
                  + ", ".join(f"{k} {v:.1f} mL" for k, v in measurement.reagent_ml.items()))
    trial = Trial(index=0, conditions=cond.as_dict(), status=TrialStatus.COMPLETED,
                  features=features, measurement=measurement)
    fig = spectrum_figure(trial)
    if fig is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(figure_png(fig, dpi=120))
        except OSError as err:
            raise fail(f"--out {out}: cannot write the spectra: {err.strerror}",
                       EXIT_INPUT) from err
        console.print(f"spectra written to {out}")


def _print_features(features: Features, truth: Any) -> None:
    table = Table(title="Features (measured by the analyzer vs the twin's noise-free truth)")
    for col in ("feature", "measured", "± (1σ)", "truth"):
        table.add_column(col, justify="right" if col != "feature" else "left")
    rows = [("PL peak (nm)", features.pl_peak_nm, features.pl_peak_nm_err, truth.pl_peak_nm, 1),
            ("FWHM (nm)", features.fwhm_nm, features.fwhm_nm_err, truth.fwhm_nm, 1),
            ("QY (%)", features.qy, features.qy_err, truth.qy, 100),
            ("abs. peak (nm)", features.abs_peak_nm, features.abs_peak_nm_err,
             truth.abs_peak_nm, 1)]
    for name, v, e, t, scale in rows:
        shown, sigma = _feature_text(v, e, scale)
        table.add_row(name, shown, sigma, "not found" if not math.isfinite(t)
                      else f"{scale * t:.1f}")
    console.print(table)


# --------------------------------------------------------------------------------------- validate
def load_for_run(file: Path, overrides: dict[str, Any] | None = None) -> CampaignConfig:
    """Everything ``run`` checks before it makes a run folder, so ``validate`` checks the same.

    The campaign file with every section typed (space incl. constraint feasibility, objective,
    optimizer and executor settings), and for ``kind: cstr`` the devices file of each reactor
    (read and validated, not connected) and whether that rig can realize the whole space
    (:func:`autolab.hardware.envelope.check_space`).

    Raises:
        ConfigError: With the file, line, field and what is expected.
    """
    from autolab.config import CSTRExecutorSettings, load_campaign

    cfg = load_campaign(file, overrides)
    for reactor in cfg.reactor_specs():
        if reactor.executor.kind == "cstr" and reactor.executor.devices is not None:
            settings = CSTRExecutorSettings.model_validate(reactor.executor.settings)
            _check_rig(file, cfg, reactor.executor.devices, settings.poll_period_s)
    return cfg


def _check_rig(file: Path, cfg: CampaignConfig, devices_path: Path,
               poll_period_s: float) -> None:
    """The rig of a devices file can run the campaign.

    The file is valid, its rig can realize the whole space (hardware/envelope), and the
    supervisor polls often enough for every device-side watchdog.
    """
    from autolab.hardware.devices import load_devices
    from autolab.hardware.envelope import check_space

    try:
        devices = load_devices(devices_path)
    except ConfigError as err:
        raise ConfigError(f"{file}: executor.devices: {err} (for the emulated rig, "
                          "'autolab lab up' writes this file)") from err
    try:
        check_space(cfg.space.build(), devices, cfg.space.fixed)
    except ConfigError as err:
        raise ConfigError(f"{file}: space: the rig of {devices_path} cannot realize it: "
                          f"{err}") from err
    slow = devices.watchdog_problems(poll_period_s)
    if slow:
        raise ConfigError(f"{file}: executor.settings.poll_period_s: too slow for the rig of "
                          f"{devices_path}: {'; '.join(slow)}")


def _print_warnings(cfg: CampaignConfig) -> list[str]:
    found = cfg.warnings()
    for w in found:
        err_console.print(Text.assemble(("warning: ", "bold yellow"), w), soft_wrap=True)
    return found


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="Campaign YAML file.")]) -> None:
    """Check a campaign file as 'run' would, and print what it will do."""
    try:
        cfg = load_for_run(file)
    except ConfigError as err:
        raise fail(str(err), EXIT_INPUT) from err
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
    console.print(f"objective: {cfg.objective.describe()}", markup=False)
    settings = ", ".join(f"{k}={v}" for k, v in cfg.optimizer.settings.items())
    console.print(f"optimizer: {cfg.optimizer.kind}{f' ({settings})' if settings else ''}; "
                  f"executor: {cfg.executor.kind}; seed {cfg.seed}", markup=False)
    _print_reactors(cfg)
    for c in space.constraints:
        console.print(f"constraint: {c.describe()}", markup=False)
    for line in _plan_lines(cfg):
        console.print(line, markup=False)
    _print_warnings(cfg)
    console.print("[green]valid[/]")


def _plan_lines(cfg: CampaignConfig) -> list[str]:
    """What ``validate`` says beyond the space: mode, budget, stop rules, review, reuse.

    Everything that decides how long a campaign runs and what it does between experiments, so a
    chemist sees a dynamic campaign, a lab-hour cap or a review mode before pressing run.
    """
    d = cfg.dynamic
    mode = ("mode: steady (one experiment per proposal)" if cfg.mode == "steady" else
            f"mode: dynamic (plan {d.plan}, frames every {d.frame_interval_min:g} min, hold_at "
            f"{d.hold_at}, representative {d.representative})")
    budget = f"budget: {cfg.budget.max_experiments} experiments" + (
        f", {cfg.budget.max_lab_hours:g} lab h" if cfg.budget.max_lab_hours else "")
    st = cfg.stop
    rules = ["target reached"] if st.target_reached else []
    for value, text in ((st.qy_min, "QY >= {:g}"), (st.fwhm_max_nm, "FWHM <= {:g} nm"),
                        (st.no_improvement_after, "no improvement after {}"),
                        (st.forecast_spec_met, "forecast P(spec met) >= {:g}"),
                        (st.forecast_improve_below, "forecast P(improve) < {:g}"),
                        (st.forecast_reach_below, "out of reach (forecast P(in band) < {:g}, "
                         f"{st.forecast_reach_after} in a row)")):
        if value is not None:
            rules.append(text.format(value))
    lines = [mode, budget, f"stop: {', '.join(rules) or 'budget only'}",
             f"review: {cfg.review.mode}"]
    lines += [f"reuse: {path}" for path in cfg.reuse]
    return lines


# --------------------------------------------------------------------------------------- terminal
def fit_fields(required: Sequence[str], optional: Sequence[str], width: int,
               sep: str = "  ", optional_sep: str = " ") -> str:
    """One line of whole fields that fits ``width`` columns; a field is never split.

    The required fields always appear (the last one is shortened with "…" if even they do not
    fit); optional fields follow, in order, while they fit, and the rest are left out.
    """
    line = sep.join(required)
    if len(line) > width:
        return line[: max(width - 1, 0)].rstrip() + "…"
    for i, f in enumerate(optional):
        gap = sep if i == 0 else optional_sep
        if len(line) + len(gap) + len(f) > width:
            break
        line += gap + f
    return line


def _condition_fields(c: Mapping[str, float]) -> list[str]:
    short = (("t_core_c", "Tc {:.0f}°C"), ("tau_core_min", "τc {:.1f}m"),
             ("t_shell_c", "Ts {:.0f}°C"), ("tau_shell_min", "τs {:.1f}m"),
             ("cl_to_i", "Cl:I {:.2g}"), ("s_to_zn", "S:Zn {:.2f}"))
    return [fmt.format(c[name]) for name, fmt in short if name in c]


def trial_line(trial: Trial, done: int, total: int, in_band: bool | None, width: int,
               reactor: str | None = None) -> str:
    """The progress line of one finished experiment, fitted to ``width`` columns.

    Label (``exp-003``, the journal numbering MLflow and the report use), the reactor that ran
    it (parallel reactors) and the result always show; the conditions follow as far as they fit.
    """
    from autolab.records import experiment_label

    head = f"{experiment_label(trial.index)} ({done}/{total})" + (
        f" [{reactor}]" if reactor else "")
    f = trial.features
    if f is not None and trial.outcomes() is not None:
        result = [head, f"PL {f.pl_peak_nm:.1f} nm", f"FWHM {f.fwhm_nm:.1f} nm",
                  f"QY {100 * f.qy:.1f}%"] + (["in band"] if in_band else [])
    else:
        result = [head, f"{trial.status.value}: {trial.error or 'no result'}"]
    return fit_fields(result, ["|", *_condition_fields(trial.conditions)], width)


def dynamic_trial_lines(trial: Trial, proposal: Mapping[str, float], done: int, total: int,
                        in_band: bool | None, width: int) -> list[str]:
    """The progress lines of one dynamic step, each fitted to ``width`` columns.

    A dynamic trial's conditions are where its representative reading's fluid was made (often
    early in the ramp, the previous proposal's fluid), not where the step ran to: the first
    line says "read at" them, the second gives the step's proposal (the ramp's end). A step
    with no reading keeps the one plain line (its conditions are the ramp's end).
    """
    if trial.features is None or trial.outcomes() is None:
        return [trial_line(trial, done, total, in_band, width)]
    line = trial_line(trial, done, total, in_band, width).split("  |", 1)[0]  # the result only
    read = _condition_fields(trial.conditions)
    if read:  # the label never shows without a condition after it
        line = fit_fields([line], [f"| read at {read[0]}", *read[1:]], width)
    return [line, fit_fields(["  step ended at proposal:"], _condition_fields(proposal), width)]


def _best_text(campaign: Campaign) -> str:
    from autolab.records import experiment_label

    best = campaign.best()
    if best is None or best.features is None:
        return "no result yet"
    return f"best {experiment_label(best.index)} {best.features.pl_peak_nm:.1f} nm"


@contextlib.contextmanager
def _progress(total: int, done: int = 0) -> Iterator[tuple[Any, Any]]:
    """A live bar (experiments k/N, best so far, lab hours) with one printed line per trial.

    Yields the ``on_trial`` and ``on_event`` callbacks for :class:`~autolab.campaign.Campaign`.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(TextColumn("[bold]experiments"), BarColumn(bar_width=12),
                   MofNCompleteColumn(), TextColumn("{task.description}"), console=console,
                   transient=True)
    task = bar.add_task("", total=total, completed=done)
    width = console.width

    def on_trial(campaign: Campaign, trial: Trial) -> None:
        outcomes = trial.outcomes()
        in_band = (campaign.config.objective.within_target(outcomes)
                   if outcomes is not None and campaign.config.objective.has_target else None)
        k = len(campaign.trials)
        reactor = ((campaign.journal.state.last_extra or {}).get("reactor")
                   if len(campaign.reactors) > 1 else None)
        dyn = (campaign.journal.state.last_extra or {}).get("dynamic")
        lines = (dynamic_trial_lines(trial, dyn["proposal"], k, total, in_band, width) if dyn
                 else [trial_line(trial, k, total, in_band, width, reactor)])
        for line in lines:
            bar.console.print(line, markup=False, no_wrap=True, overflow="ellipsis")
        bar.update(task, completed=k, description=(
            f"{_best_text(campaign)}; lab {campaign.lab_clock_h:.1f} h"))

    def on_event(text: str) -> None:
        logging.getLogger("autolab").info("%s", text)
        bar.console.print(text, markup=False)

    with bar:
        yield on_trial, on_event


class RunLog:
    """Routes library chatter into the campaign's log file instead of the progress display.

    BoTorch/GPyTorch and matplotlib warnings, and the log lines of MLflow, alembic and
    SQLAlchemy (e.g. "Creating initial MLflow database tables"), are buffered until the run
    folder exists and then written to ``RUN/campaign.log`` with everything that follows.
    """

    LOGGERS = ("autolab", "mlflow", "alembic", "sqlalchemy", "huey", "botorch", "gpytorch",
               "linear_operator", "matplotlib", "py.warnings", "urllib3")

    def __init__(self) -> None:
        self._buffer = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=100)
        self._file: logging.FileHandler | None = None
        self._saved: dict[str, tuple[list[logging.Handler], bool, int]] = {}

    @property
    def _handler(self) -> logging.Handler:
        return self._file or self._buffer

    def capture(self) -> None:
        """Take over the loggers (again, after a library reset them on import)."""
        logging.captureWarnings(True)
        for name in self.LOGGERS:
            log = logging.getLogger(name)
            self._saved.setdefault(name, (list(log.handlers), log.propagate, log.level))
            log.handlers = [self._handler]
            log.propagate = False
            if name in ("autolab", "py.warnings", "mlflow"):
                log.setLevel(logging.INFO)

    def to_file(self, run_dir: Path) -> None:
        """Write what was buffered, and from now on everything, to ``run_dir/campaign.log``."""
        self._file = logging.FileHandler(run_dir / LOG_NAME, encoding="utf-8")
        self._file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: "
                                                  "%(message)s"))
        self._buffer.setTarget(self._file)
        self._buffer.flush()
        self.capture()

    def close(self) -> None:
        """Give the loggers back."""
        for name, (handlers, propagate, level) in self._saved.items():
            log = logging.getLogger(name)
            log.handlers, log.propagate, log.level = handlers, propagate, level
        logging.captureWarnings(False)
        self._buffer.close()
        if self._file is not None:
            self._file.close()


@contextlib.contextmanager
def _run_log() -> Iterator[RunLog]:
    log = RunLog()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        log.capture()
        try:
            yield log
        finally:
            log.close()


def _spec_text(objective: ObjectiveSpec, outcomes: Mapping[str, float] | None) -> str:
    """The spec status of the best: the band with a target, else the outcome constraints.

    `` (in band)`` / `` (not in band)`` for a target campaign; for one without a target,
    whether its outcome constraints hold; nothing when it has neither. A campaign without a
    target has no band: calling its best "in band" (every experiment is, vacuously) told a
    max-QY campaign's chemist that a 476 nm product met a 540-580 nm spec.
    """
    if outcomes is None:
        return ""
    if objective.has_target:
        return " (in band)" if objective.within_target(outcomes) else " (not in band)"
    if objective.constraints:
        return (" (meets the constraints)" if objective.is_feasible(outcomes)
                else " (breaks a constraint)")
    return ""


def _finish(result: CampaignResult, cfg: CampaignConfig, tracking_uri: str | None) -> None:
    """The closing lines: why it stopped, the best, where the journal and MLflow run are.

    ``tracking_uri`` is the store this invocation logged to, ``None`` when it logged nothing
    (``--no-tracking``): the run id the journal remembers from an earlier invocation does not
    hold this one's experiments, so it is not offered to browse.
    """
    from autolab.campaign import StopReason, out_of_reach_note
    from autolab.records import experiment_label

    trigger = ""
    if result.trials and result.stop_reason is not StopReason.INTERRUPTED:
        trigger = f" after {experiment_label(result.trials[-1].index)}"
    console.rule(f"stopped: {result.stop_reason.value}{trigger}")
    if result.stop_reason is StopReason.OUT_OF_REACH:
        console.print(out_of_reach_note(cfg, result.trials), markup=False)
    best = result.best
    if best is not None and best.features is not None:
        f = best.features
        band = _spec_text(cfg.objective, best.outcomes())
        console.print(fit_fields([f"best: {experiment_label(best.index)}{band}"],
                                 [f"PL {f.pl_peak_nm:.1f} nm", f"FWHM {f.fwhm_nm:.1f} nm",
                                  f"QY {100 * f.qy:.1f}%"], console.width), markup=False)
        console.print(fit_fields(["  at"], _condition_fields(best.conditions), console.width,
                                 optional_sep="  "), markup=False)
    else:
        console.print("best: none (no experiment gave a usable result)" if result.trials
                      else "best: none yet (no experiment has run)")
    console.print(f"journal: {result.run_dir}\nlog:     {result.run_dir / LOG_NAME}",
                  markup=False, soft_wrap=True)
    if result.tracking_run_id and tracking_uri is not None:
        page = _run_page(tracking_uri, result.tracking_run_id)
        if tracking_uri.startswith(("http://", "https://")):  # a server: its UI serves the run
            say_command(f"MLflow run {result.tracking_run_id}; open:", page)
        else:
            say_command(f"MLflow run {result.tracking_run_id}; browse it with:",
                        f".venv/bin/mlflow ui --backend-store-uri {_shown_uri(tracking_uri)}")
            say_command("then open:", page)
    elif tracking_uri is None and cfg.tracking.enabled:
        say_command("not logged to MLflow (--no-tracking); to log it:",
                    f"autolab sync {result.run_dir}")
    if result.untracked:
        say_command(f"{len(result.untracked)} experiment(s) not yet in MLflow; run:",
                    f"autolab sync {result.run_dir}")
    code = stop_exit_code(result)  # waiting for a decision (3), a device left unsafe (4)
    if code is not None:
        raise typer.Exit(code)
    if result.stop_reason is StopReason.INTERRUPTED:
        say_command("interrupted; continue with:", f"autolab resume {result.run_dir}")
        raise typer.Exit(EXIT_INTERRUPTED)


def _make_tracker(enabled: bool, uri: str, experiment: str) -> Any:
    """The campaign's tracker; MLflow is imported only when tracking is on (2.4 s of CPU)."""
    if not enabled:
        from autolab.tracking import NullTracker

        return NullTracker()
    from autolab.tracking.mlflow_tracker import MlflowTracker

    os.environ["MLFLOW_TRACKING_URI"] = uri
    return MlflowTracker(tracking_uri=uri, experiment_name=experiment)


# --------------------------------------------------------------------------------------- run
@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Campaign YAML file (see campaigns/).")],
    budget: Annotated[int | None, typer.Option(help="Override budget.max_experiments.", min=1,
                                               max=BUDGET_MAX)] = None,
    seed: Annotated[int | None, typer.Option(help="Override the campaign seed.", min=0,
                                             max=SEED_MAX)] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where campaign folders are made.")] = Path("runs"),
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Journal only.")] = False,
    review: ReviewOption = None,
    reviewer: ReviewerOption = None,
) -> None:
    """Run a campaign to the end (Ctrl-C stops after the current experiment)."""
    overrides: dict[str, Any] = {}
    if budget is not None:
        overrides["budget.max_experiments"] = budget
    if seed is not None:
        overrides["seed"] = seed
    try:
        cfg = load_for_run(file, overrides)
        check_output_folder(runs_dir, "--runs-dir")
    except ConfigError as err:
        raise fail(str(err), EXIT_INPUT) from err
    found = _print_warnings(cfg)
    console.rule(f"campaign {cfg.name}: {cfg.objective.describe()}")
    _print_reactors(cfg)
    with _run_log() as log, _guard_failures():
        for w in found:
            logging.getLogger("autolab").warning("%s", w)
        uri = _tracking_uri(tracking_uri, cfg.tracking.uri)
        tracker = _make_tracker(cfg.tracking.enabled and not no_tracking, uri,
                                cfg.tracking.experiment)
        log.capture()  # MLflow resets its loggers when first imported
        result = _run_new(cfg, runs_dir, tracker, log,
                          make_cli_reviewer(review, reviewer, cfg))
    _finish(result, cfg, uri if tracker.keeps_records else None)


def _print_reactors(cfg: CampaignConfig) -> None:
    """Name the reactors of a parallel campaign (nothing for a single reactor)."""
    if cfg.reactors:
        console.print(f"reactors ({len(cfg.reactors)}, run at once): " + ", ".join(
            f"{r.name} ({r.kind})" for r in cfg.reactors), markup=False)


def _run_new(cfg: CampaignConfig, runs_dir: Path, tracker: Any, log: RunLog,
             reviewer: Any = None) -> CampaignResult:
    from autolab.campaign import Campaign

    with _progress(cfg.budget.max_experiments) as (on_trial, on_event):
        campaign = Campaign.create(cfg, runs_dir, tracker=tracker, on_trial=on_trial,
                                   on_event=on_event, reviewer=reviewer)
        log.to_file(campaign.run_dir)
        console.print(f"journal: {campaign.run_dir}", markup=False)
        _freeze_loaded()
        return campaign.run()


@contextlib.contextmanager
def _guard_failures() -> Iterator[None]:
    """The exit codes of a running campaign: 3 interrupted, 4 device or journal failure."""
    try:
        yield
    except CampaignInterrupted as err:
        from autolab.records import experiment_label

        what = (f"during {', '.join(map(experiment_label, err.in_flight))}; it is run again on "
                "resume" if err.in_flight else "between experiments; nothing was cut off")
        raise fail(f"interrupted {what}. Continue with: autolab resume {err.run_dir}",
                   EXIT_INTERRUPTED) from err
    except KeyboardInterrupt as err:  # before the campaign ran (set-up): nothing to resume
        raise fail("interrupted", EXIT_INTERRUPTED) from err
    except (HardwareError, JournalError) as err:
        raise fail(str(err), EXIT_FAILURE) from err


def _latest_run(runs_dir: Path) -> Path:
    candidates = sorted(runs_dir.glob("*/journal.jsonl"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ConfigError(f"no campaign under {runs_dir}/; name the campaign folder "
                          "(autolab resume runs/<campaign>) or start one with 'autolab run'")
    return candidates[-1].parent


def _journal_config(path: Path, state: Any) -> CampaignConfig:
    """The campaign a journal's header describes; a broken header is a journal failure.

    Raises:
        JournalError: The header's campaign does not validate (hand-edited, or corrupted).
    """
    from autolab.config import parse_campaign

    try:
        return parse_campaign(state.header.config, f"journal {path}, line 1 (header config)")
    except ConfigError as err:
        raise JournalError(str(err)) from err


def _campaign_folder(run_dir: Path | None, runs_dir: Path) -> Path:
    """The folder to resume; a missing or wrong one is a usage error (exit 2).

    Raises:
        ConfigError: No campaign under ``runs_dir``, or ``run_dir`` holds no journal.
    """
    from autolab.tracking.journal import JOURNAL_NAME

    folder = run_dir or _latest_run(runs_dir)
    if not (folder / JOURNAL_NAME).is_file():
        raise ConfigError(f"{folder} is not a campaign folder (no {JOURNAL_NAME}); expected a "
                          "folder made by 'autolab run', under runs/")
    return folder


def _named_campaign(run_dir: Path | None, runs_dir: Path) -> Path:
    """The campaign folder a command names; a missing or wrong one ends it with exit 2."""
    try:
        return _campaign_folder(run_dir, runs_dir)
    except ConfigError as err:
        raise fail(str(err), EXIT_INPUT) from err


def _read_campaign(folder: Path) -> tuple[JournalState, CampaignConfig]:
    """A campaign folder's journal and the campaign its header describes.

    Raises:
        JournalError: The journal or its header's campaign is unreadable.
    """
    from autolab.tracking import Journal
    from autolab.tracking.journal import JOURNAL_NAME

    state = Journal.read(folder / JOURNAL_NAME)
    return state, _journal_config(folder / JOURNAL_NAME, state)


@app.command()
def resume(
    run_dir: Annotated[Path | None, typer.Argument(
        help="Campaign folder (default: the most recent under runs/).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where campaign folders are.")] = Path("runs"),
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="Journal only.")] = False,
    review: ReviewOption = None,
    reviewer: ReviewerOption = None,
) -> None:
    """Continue an interrupted campaign from its journal."""
    folder = _named_campaign(run_dir, runs_dir)
    with _run_log() as log, _guard_failures():
        log.to_file(folder)
        state, cfg = _read_campaign(folder)
        uri = _tracking_uri(tracking_uri, state.tracking_uri or cfg.tracking.uri)
        tracker = _make_tracker(cfg.tracking.enabled and not no_tracking, uri,
                                cfg.tracking.experiment)
        log.capture()
        console.rule(f"resuming {folder.name} after {len(state.trials)} experiment(s)")
        result = _resume(folder, cfg, len(state.trials), tracker,
                         make_cli_reviewer(review, reviewer, cfg))
    _finish(result, cfg, uri if tracker.keeps_records else None)


def _resume(folder: Path, cfg: CampaignConfig, done: int, tracker: Any,
            reviewer: Any = None) -> CampaignResult:
    from autolab.campaign import Campaign

    with _progress(cfg.budget.max_experiments, done) as (on_trial, on_event):
        try:
            campaign = Campaign.resume(folder, tracker=tracker, on_trial=on_trial,
                                       on_event=on_event, reviewer=reviewer)
        except ConfigError as err:  # the journaled campaign: a journal problem, not input
            raise JournalError(str(err)) from err
        _freeze_loaded()
        return campaign.run()


def _freeze_loaded() -> None:
    """Keep what is loaded before a campaign runs out of the garbage collector's full passes.

    torch, BoTorch, MLflow and matplotlib leave millions of long-lived objects, and every full
    collection during the campaign walked all of them again (about 5 % of a short tracked
    campaign's CPU). Collected first, so nothing that is garbage now is kept for good.
    """
    gc.collect()
    gc.freeze()


@app.command()
def sync(
    run_dir: Annotated[Path, typer.Argument(help="Campaign folder.")],
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
) -> None:
    """Log to MLflow every experiment of a campaign that MLflow missed (exactly once)."""
    from autolab.exceptions import TrackingError
    from autolab.tracking import sync as sync_journal
    from autolab.tracking.journal import JOURNAL_NAME

    folder = _named_campaign(run_dir, run_dir.parent)
    try:
        state, cfg = _read_campaign(folder)
        uri = _tracking_uri(tracking_uri, state.tracking_uri or cfg.tracking.uri)
        tracker = _make_tracker(True, uri, cfg.tracking.experiment)
        n = sync_journal(folder / JOURNAL_NAME, tracker)
    except (JournalError, TrackingError) as err:
        raise fail(str(err), EXIT_FAILURE) from err
    console.print(f"logged {n} experiment(s) to MLflow")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Campaign folder (holds journal.jsonl).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/report).")] = None,
) -> None:
    """Write a summary table and plots of a campaign into a folder."""
    folder = _named_campaign(run_dir, run_dir.parent)
    try:
        state, _ = _read_campaign(folder)
    except JournalError as err:
        raise fail(str(err), EXIT_FAILURE) from err
    target = out or folder / "report"
    # A folder that cannot be made or written is the user's --out (exit 2) or the run folder's
    # (exit 4), said in one line: never a traceback.
    code, what = (EXIT_INPUT, f"--out {target}") if out else (EXIT_FAILURE, str(target))
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise fail(f"{what}: cannot make the report folder: {err.strerror}", code) from err
    from autolab.tracking.report import write_report  # matplotlib: only once there is a report

    try:
        files = write_report(state, target)
    except OSError as err:
        raise fail(f"{what}: cannot write the report: {err.strerror} ({err.filename})",
                   code) from err
    for f in files:
        console.print(f"wrote {f}", markup=False, soft_wrap=True)


# --------------------------------------------------------------------------------------- hardware
lab_app = typer.Typer(no_args_is_help=True,
                      help="The virtual lab: every device of the rig emulated on a pty.")
devices_app = typer.Typer(no_args_is_help=True, help="Devices files and the devices they name.")
app.add_typer(lab_app, name="lab")
app.add_typer(devices_app, name="devices")
register_steer(app)  # decide, add, invalidate (autolab/cli_steer.py)


@lab_app.command("up")
def lab_up(
    devices_file: Annotated[Path, typer.Option(
        help="Where to write the devices file pointing at the emulators.")] = Path(
        "lab-devices.yaml"),
    time_scale: Annotated[float, typer.Option(
        help="Lab seconds per wall second (the emulated heaters, pumps and tanks run this much "
             "faster than real time).")] = 120.0,
    seed: Annotated[int, typer.Option(help="Detector-noise seed of the emulated optics.",
                                      min=0, max=SEED_MAX)] = 0,
    per_tank: Annotated[bool, typer.Option(
        "--per-tank", help="One heater and one stirrer per tank (roles tank<i>) instead of "
                           "the core and shell blocks.")] = False,
    sulfur_tanks: Annotated[str, typer.Option(
        help="Add a sulfur selection valve whose positions feed these tanks, comma-separated "
             "(e.g. 3,4,5,6); without it the shell feed enters the first shell tank.")] = "",
    pump_kind: Annotated[str, typer.Option(
        help="The pumps' kind: ne1000 (New Era chain), harvard (Harvard Pump 11 Elite "
             "chain) or chemyx (one Chemyx Fusion per line).")] = "ne1000",
    heater_kind: Annotated[str, typer.Option(
        help="The temperature controllers' kind: eurotherm3200 or omega_cn7500 (one Modbus "
             "bus), julabo or huber (one circulator per line).")] = "eurotherm3200",
) -> None:
    """Start the emulated lab, print its ports and write its devices file; Ctrl-C stops it."""
    import signal

    from autolab.virtuallab import VirtualLab

    if not 0 < time_scale <= TIME_SCALE_MAX:  # also refuses nan and inf
        raise fail(f"--time-scale {time_scale:g}: expected lab seconds per wall second, "
                   f"> 0 and at most {TIME_SCALE_MAX:g} (1 = real time)", EXIT_INPUT)
    tanks = _sulfur_tanks(sulfur_tanks)
    try:
        lab = VirtualLab(time_scale=time_scale, seed=seed, per_tank=per_tank,
                         sulfur_tanks=tanks, pump_kind=pump_kind, heater_kind=heater_kind)
    except ConfigError as err:
        raise fail(f"--pump-kind/--heater-kind: {err}", EXIT_INPUT) from err
    with lab:
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


def _sulfur_tanks(text: str) -> tuple[int, ...]:
    """``--sulfur-tanks 3,4,5,6`` -> the valve's plumbing (checked as a devices file would be)."""
    from autolab.hardware.fluidics import Geometry

    g = Geometry()
    n = g.n_core_tanks + g.n_shell_tanks
    try:
        tanks = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise fail(f"--sulfur-tanks {text!r}: expected tank numbers separated by commas, "
                   f"e.g. 3,4,5,6", EXIT_INPUT) from None
    bad = [t for t in tanks if not 2 <= t <= n]
    if bad or len(set(tanks)) != len(tanks) or len(tanks) > 6:
        raise fail(f"--sulfur-tanks {text!r}: expected up to 6 different tanks in 2-{n} (the "
                   f"valve has 6 positions; tank 1 has no core stage before it)", EXIT_INPUT)
    return tanks


@devices_app.command("check")
def devices_check(file: Annotated[Path, typer.Argument(help="Devices YAML file.")]) -> None:
    """Ping every device of a devices file and print a status table (exit 4 if any fails)."""
    from autolab.exceptions import HardwareError
    from autolab.hardware.devices import load_devices
    from autolab.hardware.rig import Rig

    try:
        rig = Rig.open(load_devices(file))
    except ConfigError as err:
        raise fail(str(err), EXIT_INPUT) from err
    except HardwareError as err:
        raise fail(str(err), EXIT_FAILURE) from err
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
            table.add_row(dev.name, spec.kind, rig.config.where(dev.name), status)
    finally:
        rig.close()
    console.print(table)
    if failed:
        raise fail(f"{failed} device(s) did not answer", EXIT_FAILURE)


# The benchmark command lives with the benchmarking package (it composes campaign-level parts),
# which imports torch, BoTorch and matplotlib: it is loaded only when the command runs, so that
# ``autolab --help``, ``validate`` and ``report`` start in well under a second.
@app.command("benchmark", add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def benchmark(ctx: typer.Context) -> None:
    """Compare strategies × seeds × targets on the digital twin (autolab benchmark --help)."""
    from autolab.benchmarking.cli import benchmark_command

    sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    sub.command()(benchmark_command)
    sub(args=list(ctx.args), prog_name="autolab benchmark")


def main() -> None:
    """Entry point of the ``autolab`` script."""
    try:
        app()
    except AutolabError as err:  # anything not handled above is still a clear refusal
        code = EXIT_INPUT if isinstance(err, ConfigError) else EXIT_FAILURE
        fail(str(err), code)  # plain text: a message may hold brackets
        sys.exit(code)
