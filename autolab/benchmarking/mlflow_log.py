"""MLflow view of a benchmark: a parent run per benchmark, a nested run per strategy×seed×target.

The parent holds the spec as params, the summary as metrics (``<strategy>.<target>nm.median``,
``...found_fraction``) and every output file as artifacts; each nested run holds its strategy,
seed and target as params, its result as metrics, and its trajectory as stepped metrics
(``true_qy``, ``true_pl_nm``, ``best_true_qy_in_band`` per experiment), so runs can be compared
in the MLflow UI like campaigns. MLflow is imported only here, and only when logging is asked for.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

from autolab.benchmarking.benchmark import BenchmarkOutcome, output_texts
from autolab.benchmarking.results import summarize
from autolab.benchmarking.runner import RunResult

_BATCH_METRICS = 1000  # MLflow's log_batch limit
_BATCH_PARAMS = 100


def _metrics(result: RunResult) -> dict[str, float]:
    m: dict[str, float | None] = {
        "found": float(result.found),
        "experiments_to_success": (None if result.experiments_to_success is None
                                   else float(result.experiments_to_success)),
        "lab_hours_to_success": result.lab_hours_to_success,
        "experiments": float(result.experiments), "failed": float(result.failed),
        "best_true_qy_in_band": result.best_true_qy_in_band,
        "threshold_qy": result.threshold_qy, "best_reachable_qy": result.best_reachable_qy,
        "ask_s_total": result.ask_s_total, "wall_s": result.wall_s}
    return {k: float(v) for k, v in m.items() if v is not None and math.isfinite(v)}


def log_benchmark(outcome: BenchmarkOutcome, tracking_uri: str, experiment: str) -> str:
    """Log a finished benchmark; returns the parent run id.

    Raises:
        mlflow.exceptions.MlflowException: The store refused (the caller reports it).
    """
    from mlflow.entities import Metric, Param, RunTag  # noqa: PLC0415 (heavy, optional path)
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    spec = outcome.spec
    parent = client.create_run(exp_id, run_name=spec.name, tags={
        "autolab.role": "benchmark", "autolab.benchmark": spec.name,
        "autolab.backend": str(outcome.meta.get("backend")),
        "mlflow.note.content": spec.description or f"autolab benchmark {spec.name}"})
    pid = parent.info.run_id
    params: dict[str, Any] = {
        "strategies": ",".join(s.name for s in spec.strategies),
        "seeds": ",".join(str(s) for s in spec.seed_list),
        "targets": ",".join(f"{t.pl_peak_nm:g}±{t.tolerance_nm:g}" for t in spec.targets),
        "budget": spec.budget, "success.qy_fraction": spec.success.qy_fraction,
        "dense_search.sobol_log2": spec.dense_search.sobol_log2,
        "workers": outcome.meta.get("workers"), "backend": outcome.meta.get("backend")}
    for s in spec.strategies:
        for k, v in s.settings.items():
            params[f"strategy.{s.name}.{k}"] = v
    plist = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(plist), _BATCH_PARAMS):
        client.log_batch(pid, params=plist[i:i + _BATCH_PARAMS])
    now = int(time.time() * 1000)
    for res in outcome.results:
        name = f"{res.strategy}-{res.target_nm:g}nm-s{res.seed}"
        run = client.create_run(exp_id, run_name=name, tags={
            "mlflow.parentRunId": pid, "autolab.role": "benchmark-run",
            "autolab.benchmark": spec.name, "strategy": res.strategy})
        rid = run.info.run_id
        client.log_batch(rid, params=[
            Param("strategy", res.strategy), Param("kind", res.kind), Param("seed", str(res.seed)),
            Param("target_nm", f"{res.target_nm:g}"),
            Param("tolerance_nm", f"{res.tolerance_nm:g}"), Param("budget", str(res.budget))],
            tags=[RunTag("found", str(res.found).lower())])
        metrics = [Metric(k, v, now, 0) for k, v in _metrics(res).items()]
        best = 0.0
        for st in res.steps:
            in_band = abs(st.true_pl_nm - res.target_nm) <= res.tolerance_nm
            best = max(best, st.true_qy) if in_band else best
            for key, value in (("true_qy", st.true_qy), ("true_pl_nm", st.true_pl_nm),
                               ("best_true_qy_in_band", best)):
                if math.isfinite(value):
                    metrics.append(Metric(key, value, now, st.experiment))
        for i in range(0, len(metrics), _BATCH_METRICS):
            client.log_batch(rid, metrics=metrics[i:i + _BATCH_METRICS])
        client.set_terminated(rid, "FINISHED")
    summary = []
    for row in summarize(outcome.results):
        key = f"{row.strategy}.{row.target_nm:g}nm"
        summary += [Metric(f"{key}.median", row.median, now, 0),
                    Metric(f"{key}.found_fraction", row.found / row.runs, now, 0)]
    summary.append(Metric("wall_s", float(outcome.meta.get("wall_s", 0.0)), now, 0))
    client.log_batch(pid, metrics=summary)
    with tempfile.TemporaryDirectory(prefix="autolab-bench-") as tmp:
        for fname, content in output_texts(outcome).items():
            path = Path(tmp) / fname
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        client.log_artifacts(pid, tmp)
    client.set_terminated(pid, "FINISHED")
    return str(pid)
