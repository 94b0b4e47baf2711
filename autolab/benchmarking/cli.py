"""``autolab benchmark FILE``: run a benchmark spec, write its results, optionally log to MLflow.

Mount it on the main app with ``app.command("benchmark")(benchmark_command)``. Exit codes follow
``autolab.cli``: 0 done, 2 invalid input (spec, flags, Ray missing), 4 MLflow refused the results
(the files are written first, so nothing is lost).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from autolab.benchmarking.benchmark import run_benchmark, write_outputs
from autolab.benchmarking.results import summarize, summary_markdown
from autolab.benchmarking.runner import RunResult
from autolab.benchmarking.spec import load_spec
from autolab.exceptions import ConfigError

EXIT_INPUT, EXIT_FAILURE = 2, 4

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _progress(done: int, total: int, r: RunResult) -> None:
    verdict = (f"found at {r.experiments_to_success}" if r.found
               else f"not found in {r.budget}")
    console.print(f"[{done:>3}/{total}] {r.strategy:<12} {r.target_nm:g} nm seed {r.seed:<3} "
                  f"{verdict}  [dim]({r.wall_s:.1f} s)[/]")


def benchmark_command(
    file: Annotated[Path, typer.Argument(help="Benchmark spec YAML (see benchmarks/scale.yaml).")],
    *,
    workers: Annotated[int, typer.Option(help="Local worker processes.")] = 1,
    ray: Annotated[str | None, typer.Option(
        help="Run on a Ray cluster instead: 'auto' or HOST:PORT (needs the 'ray' extra).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default benchmark-results/<name>).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="Log to this MLflow store (enables tracking even if the spec does not).")] = None,
    no_tracking: Annotated[bool, typer.Option("--no-tracking",
                                              help="Never log to MLflow.")] = False,
) -> None:
    """Compare strategies × seeds × targets on the digital twin; write CSV, JSON and plots."""
    try:
        spec = load_spec(file)
    except ConfigError as err:
        err_console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(EXIT_INPUT) from err
    folder = out or Path("benchmark-results") / spec.name
    backend = f"Ray at {ray}" if ray else f"{workers} local worker(s)"
    n_jobs = len(spec.strategies) * len(spec.targets) * len(spec.seed_list)
    console.rule(f"benchmark {spec.name}: {n_jobs} runs on {backend}")
    try:
        outcome = run_benchmark(spec, workers=workers, ray_address=ray, progress=_progress)
    except ConfigError as err:
        err_console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(EXIT_INPUT) from err
    for r in outcome.reachable:
        console.print(f"{r.target_nm:g} ± {r.tolerance_nm:g} nm: best reachable QY "
                      f"{r.best_qy:.3f}")
    typer.echo(summary_markdown(summarize(outcome.results), spec.budget))
    for path in write_outputs(outcome, folder):
        console.print(f"wrote {path}")
    load = outcome.meta["loadavg_after"]
    console.print(f"wall {outcome.meta['wall_s']:.0f} s (dense search "
                  f"{outcome.meta['dense_search_s']:.0f} s); load average {load[0]:.2f} "
                  f"{load[1]:.2f} {load[2]:.2f} on {outcome.meta['cpu_count']} CPUs")
    if no_tracking or not (spec.tracking.enabled or tracking_uri):
        return
    uri = (tracking_uri or spec.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
           or "sqlite:///mlflow.db")
    from autolab.benchmarking.mlflow_log import log_benchmark  # noqa: PLC0415 (MLflow is slow)

    try:
        run_id = log_benchmark(outcome, uri, spec.tracking.experiment)
    except Exception as err:  # MLflow raises many types; the files are already safe
        err_console.print(f"[bold red]error:[/] MLflow at {uri} refused the results: {err}; "
                          f"they are in {folder}")
        raise typer.Exit(EXIT_FAILURE) from err
    console.print(f"MLflow: benchmark run {run_id} in experiment "
                  f"{spec.tracking.experiment!r} at {uri}")


#: A one-command app, for running without the main CLI: ``python -m autolab.benchmarking.cli``.
app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command("benchmark")(benchmark_command)

if __name__ == "__main__":
    app()
