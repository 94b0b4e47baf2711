"""``autolab benchmark FILE``: run a benchmark spec, stream its cells, write and record its results.

Mount it on the main app with ``app.command("benchmark")(benchmark_command)``. Exit codes follow
``autolab.cli``: 0 done, 2 invalid input (spec, flags, Ray missing or not running), 3 interrupted
(finished cells are kept: run the same command again to finish), 4 MLflow refused the results
(the files are written first, so nothing is lost).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autolab.console import console, err_console, fail
from autolab.exceptions import ConfigError

if TYPE_CHECKING:
    from autolab.benchmarking.benchmark import BenchmarkOutcome, Listener
    from autolab.benchmarking.runner import Job, RunResult
    from autolab.benchmarking.spec import BenchmarkSpec

EXIT_INPUT, EXIT_INTERRUPTED, EXIT_FAILURE = 2, 3, 4


def _say(text: str) -> None:
    """One progress line, never re-wrapped by the console.

    Lines name folders and counts (``4 cells (4 restored from PATH, 0 to run)``); wrapped at the
    terminal's width they split a path or a count across lines, so a CI log could not be
    searched for them (which line breaks fell where depended on the temporary folder's name).
    """
    console.print(text, soft_wrap=True)


def record_result(outcome: BenchmarkOutcome, results_dir: Path) -> Path:
    """Write the benchmark's tables as a result file for BENCHMARKS.md (see provenance)."""
    from autolab.benchmarking.provenance import Result, Table, write_result  # noqa: PLC0415
    from autolab.benchmarking.results import TABLE_COLUMNS, summarize, table_rows  # noqa: PLC0415

    spec, budget = outcome.spec, outcome.spec.budget
    tables = tuple(Table(title=f"by {g}", columns=TABLE_COLUMNS,
                         rows=tuple(table_rows(summarize(outcome.results, g), budget)))
                   for g in ("strategy", "target", "member kind"))
    members = sorted({r.member for r in outcome.results})
    meta = outcome.meta
    notes = (f"{meta['cells']} cells on {len(members)} members ({', '.join(members)}); "
             f"{meta['excluded']} member × target pairs excluded (band unreachable). "
             f"Backend {meta['backend']} ({meta.get('ray_address') or meta['workers']}), "
             f"wall {meta['wall_s']:.0f} s for {meta['cells_run']} cells run now "
             f"({meta['cells_restored']} restored).",)
    result = Result(name=f"benchmark-{spec.name}", title=f"Benchmark `{spec.name}`",
                    description=spec.description, tables=tables, notes=notes,
                    data={"meta": meta, "summary": {g: [vars(r) for r in summarize(
                        outcome.results, g)] for g in ("strategy", "target", "member kind")}},
                    command=outcome.provenance.get("command"))
    return write_result(result, results_dir, prov=outcome.provenance)


def _mlflow_listener(spec: BenchmarkSpec, folder: Path, tracking_uri: str | None,
                     no_tracking: bool, meta: dict[str, Any]) -> Any:
    if no_tracking or not (spec.tracking.enabled or tracking_uri):
        return None
    uri = (tracking_uri or spec.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
           or "sqlite:///mlflow.db")
    from autolab.benchmarking.mlflow_log import BenchmarkLogger  # noqa: PLC0415 (MLflow is slow)

    try:
        return BenchmarkLogger(uri, spec.tracking.experiment, spec, folder, meta)
    except Exception as err:  # MLflow raises many types
        raise fail(f"MLflow at {uri} refused the benchmark: {err}", EXIT_FAILURE) from err


class _Guarded:
    """A listener whose errors are remembered, not raised: MLflow trouble never stops the cells."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.error: BaseException | None = None

    def __call__(self, job: Job, result: RunResult) -> None:
        if self.error is not None:
            return
        try:
            self.inner(job, result)
        except Exception as err:  # MLflow raises many types; the cell file is already written
            self.error = err
            err_console.print(f"[yellow]warning:[/] MLflow stopped taking cells ({err}); "
                              "they are in the output folder and are logged on the next run")


def benchmark_command(
    file: Annotated[Path, typer.Argument(help="Benchmark spec YAML (see benchmarks/family.yaml).")],
    *,
    workers: Annotated[int, typer.Option(
        help="Local worker processes (with --ray local: the private Ray's CPUs).")] = 1,
    ray: Annotated[str | None, typer.Option(
        help="Run on Ray: 'auto' (a cluster started with 'ray start'), 'local' (start one for "
             "this run) or HOST:PORT (needs the 'ray' extra).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default benchmark-results/<name>); re-running with the same folder "
             "runs only the missing cells.")] = None,
    record: Annotated[Path | None, typer.Option(
        help="Also write the tables with provenance as <record>/benchmark-<name>.json "
             "(benchmarks/results: what scripts/benchmarks_md.py renders).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="Log to this MLflow store (enables tracking even if the spec does not).")] = None,
    no_tracking: Annotated[bool, typer.Option("--no-tracking",
                                              help="Never log to MLflow.")] = False,
) -> None:
    """Compare strategies on a family of reactors × targets × seeds, through the campaign loop."""
    # torch, BoTorch, SciPy and matplotlib come with these: loaded here, so --help is instant
    from autolab.benchmarking.benchmark import run_benchmark, write_outputs  # noqa: PLC0415
    from autolab.benchmarking.results import summary_markdown  # noqa: PLC0415
    from autolab.benchmarking.runner import CellInterrupted  # noqa: PLC0415
    from autolab.benchmarking.spec import load_spec  # noqa: PLC0415

    try:
        spec = load_spec(file)
    except ConfigError as err:
        raise fail(str(err), EXIT_INPUT) from err
    if workers < 1:
        raise fail(f"--workers must be at least 1, got {workers}", EXIT_INPUT)
    folder = out or Path("benchmark-results") / spec.name
    backend = f"Ray ({ray})" if ray else f"{workers} local worker(s)"
    console.rule(f"benchmark {spec.name} on {backend} -> {folder}")
    logger = _mlflow_listener(spec, folder, tracking_uri, no_tracking,
                              {"backend": "ray" if ray else "process-pool", "workers": workers})
    guarded = None if logger is None else _Guarded(logger)
    listeners: list[Listener] = [] if guarded is None else [guarded]
    try:
        outcome = run_benchmark(spec, workers=workers, ray_address=ray, out_dir=folder,
                                listeners=listeners, emit=_say,
                                command=shlex.join(["autolab", "benchmark", *sys.argv[2:]])
                                if sys.argv[1:2] == ["benchmark"] else None)
    except ConfigError as err:
        raise fail(str(err), EXIT_INPUT) from err
    except (KeyboardInterrupt, CellInterrupted) as err:
        raise fail(f"interrupted; finished cells are in {folder / 'cells'}: run the same "
                   "command again to run only the missing ones", EXIT_INTERRUPTED) from err
    typer.echo(summary_markdown(outcome))
    for path in write_outputs(outcome, folder):
        _say(f"wrote {path}")
    if record is not None:
        _say(f"recorded {record_result(outcome, record)}")
    meta = outcome.meta
    _say(f"wall {meta['wall_s']:.0f} s (dense search {meta['dense_search_s']:.0f} s, "
                  f"{meta['cells_run']} cells run, {meta['cells_restored']} restored); load "
                  f"average {' '.join(f'{v:.2f}' for v in meta['loadavg_after'])} on "
                  f"{meta['cpu_count']} CPUs")
    if logger is None:
        return
    try:
        if guarded is not None and guarded.error is not None:
            raise guarded.error
        run_id = logger.finish(outcome)
    except Exception as err:  # MLflow raises many types; the files are already safe
        raise fail(f"MLflow at {logger.uri} refused the results: {err}; they are in {folder} "
                   "(run the same command again to log them)", EXIT_FAILURE) from err
    console.print(f"MLflow: benchmark run {run_id} in experiment "
                  f"{spec.tracking.experiment!r} at {logger.uri}")


#: A one-command app, for running without the main CLI: ``python -m autolab.benchmarking.cli``.
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("benchmark")(benchmark_command)

if __name__ == "__main__":
    app()
