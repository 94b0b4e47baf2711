"""MLflow view of a benchmark, streamed: a parent run per benchmark, a nested run per cell.

The parent is created when the benchmark starts and holds the spec as params; each cell becomes a
nested run the moment it finishes (strategy, member, target and seed as params, its result as
metrics, its trajectory as stepped metrics ``true_qy``, ``true_pl_nm``, ``best_true_qy_in_band``),
so a long benchmark can be watched in the MLflow UI while it runs. At the end the parent gets the
summary metrics (``<strategy>.median``, ``...found_fraction``) and every output file.

Resumable like the cells: the parent run id is kept in ``<out>/mlflow.json`` and every logged cell
is appended to ``<out>/mlflow_logged.txt``, so a re-run with the same ``--out`` logs into the same
parent and logs exactly the cells not logged before (including cells that finished but were not
logged when the benchmark was killed). MLflow is imported only here, only when logging is asked
for.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from autolab.benchmarking.benchmark import BenchmarkOutcome, output_texts
from autolab.benchmarking.provenance import atomic_write_text
from autolab.benchmarking.results import GROUPINGS, summarize
from autolab.benchmarking.runner import Job, RunResult
from autolab.benchmarking.spec import BenchmarkSpec

_BATCH_METRICS = 1000  # MLflow's log_batch limit
_BATCH_PARAMS = 100


def _metrics(result: RunResult) -> dict[str, float]:
    m: dict[str, float | None] = {
        "found": float(result.found),
        "experiments_to_success": (None if result.experiments_to_success is None
                                   else float(result.experiments_to_success)),
        "experiments_to_in_band": (None if result.experiments_to_in_band is None
                                   else float(result.experiments_to_in_band)),
        "lab_hours_to_success": result.lab_hours_to_success,
        "experiments": float(result.experiments), "failed": float(result.failed),
        "best_true_qy_in_band": result.best_true_qy_in_band,
        "threshold_qy": result.threshold_qy, "best_reachable_qy": result.best_reachable_qy,
        "ask_s_total": result.ask_s_total, "wall_s": result.wall_s}
    return {k: float(v) for k, v in m.items() if v is not None and math.isfinite(v)}


class BenchmarkLogger:
    """Streams a benchmark into MLflow (see the module docstring).

    Args:
        tracking_uri: MLflow store.
        experiment: MLflow experiment name.
        spec: The benchmark.
        out_dir: Output folder (holds the parent run id and the logged cells).
        meta: Backend settings for the parent's params.

    Raises:
        mlflow.exceptions.MlflowException: The store refused (the caller reports it).
    """

    def __init__(self, tracking_uri: str, experiment: str, spec: BenchmarkSpec,
                 out_dir: Path, meta: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient  # noqa: PLC0415 (heavy, optional path)

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.uri = tracking_uri
        self.spec = spec
        self.out_dir = out_dir
        exp = self.client.get_experiment_by_name(experiment)
        self.exp_id = (exp.experiment_id if exp is not None
                       else self.client.create_experiment(experiment))
        self._logged_path = out_dir / "mlflow_logged.txt"
        self.logged: set[str] = set()
        if self._logged_path.exists():
            self.logged = set(self._logged_path.read_text(encoding="utf-8").split())
        self.parent_id = self._parent(meta)

    def _parent(self, meta: dict[str, Any]) -> str:
        from mlflow.entities import Param  # noqa: PLC0415

        state = self.out_dir / "mlflow.json"
        if state.exists():
            doc = json.loads(state.read_text(encoding="utf-8"))
            if doc.get("uri") == self.uri and doc.get("experiment_id") == self.exp_id:
                self.client.update_run(doc["parent_run_id"], status="RUNNING")
                return str(doc["parent_run_id"])
        self.logged = set()  # another store: everything is new there
        spec = self.spec
        parent = self.client.create_run(self.exp_id, run_name=spec.name, tags={
            "autolab.role": "benchmark", "autolab.benchmark": spec.name,
            "autolab.backend": str(meta.get("backend")),
            "mlflow.note.content": spec.description or f"autolab benchmark {spec.name}"})
        pid = str(parent.info.run_id)
        params: dict[str, Any] = {
            "strategies": ",".join(s.name for s in spec.strategies),
            "members": ",".join(m.name for m in spec.members()),
            "seeds": ",".join(str(s) for s in spec.seed_list),
            "targets": ",".join(f"{t.pl_peak_nm:g}±{t.tolerance_nm:g}" for t in spec.targets),
            "budget": spec.budget, "success.qy_fraction": spec.success.qy_fraction,
            "dense_search.sobol_log2": spec.dense_search.sobol_log2, **meta}
        for s in spec.strategies:
            for k, v in s.settings.items():
                params[f"strategy.{s.name}.{k}"] = v
        plist = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(plist), _BATCH_PARAMS):
            self.client.log_batch(pid, params=plist[i:i + _BATCH_PARAMS])
        atomic_write_text(state, json.dumps({"uri": self.uri, "experiment_id": self.exp_id,
                                             "parent_run_id": pid}) + "\n")
        atomic_write_text(self._logged_path, "")
        return pid

    def __call__(self, job: Job | None, result: RunResult) -> None:
        """Log one finished cell as a nested run (once: already-logged cells are skipped)."""
        if result.cell_id in self.logged:
            return
        from mlflow.entities import Metric, Param, RunTag  # noqa: PLC0415

        run = self.client.create_run(self.exp_id, run_name=result.cell_id, tags={
            "mlflow.parentRunId": self.parent_id, "autolab.role": "benchmark-run",
            "autolab.benchmark": self.spec.name, "strategy": result.strategy,
            "member": result.member})
        rid = run.info.run_id
        self.client.log_batch(rid, params=[
            Param("strategy", result.strategy), Param("kind", result.kind),
            Param("member", result.member), Param("member_kind", result.member_kind),
            Param("split", result.split), Param("seed", str(result.seed)),
            Param("target_nm", f"{result.target_nm:g}"),
            Param("tolerance_nm", f"{result.tolerance_nm:g}"),
            Param("budget", str(result.budget))],
            tags=[RunTag("found", str(result.found).lower())])
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in _metrics(result).items()]
        best = 0.0
        for st in result.steps:
            best = max(best, st.true_qy) if st.in_band else best
            for key, value in (("true_qy", st.true_qy), ("true_pl_nm", st.true_pl_nm),
                               ("best_true_qy_in_band", best)):
                if math.isfinite(value):
                    metrics.append(Metric(key, value, now, st.experiment))
        for i in range(0, len(metrics), _BATCH_METRICS):
            self.client.log_batch(rid, metrics=metrics[i:i + _BATCH_METRICS])
        self.client.set_terminated(rid, "FINISHED")
        self.logged.add(result.cell_id)
        with self._logged_path.open("a", encoding="utf-8") as fh:
            fh.write(result.cell_id + "\n")

    def finish(self, outcome: BenchmarkOutcome) -> str:
        """Log cells not logged yet, the summary and the output files; close the parent."""
        from mlflow.entities import Metric  # noqa: PLC0415

        for result in outcome.results:
            self(None, result)
        now = int(time.time() * 1000)
        summary = []
        for grouping in GROUPINGS:
            for row in summarize(outcome.results, grouping):
                key = row.strategy + (f".{row.group.replace(' ', '_')}" if row.group else "")
                summary += [Metric(f"{key}.median", row.median, now, 0),
                            Metric(f"{key}.band_median", row.band_median, now, 0),
                            Metric(f"{key}.found_fraction", row.found_share, now, 0)]
        summary.append(Metric("wall_s", float(outcome.meta.get("wall_s", 0.0)), now, 0))
        for i in range(0, len(summary), _BATCH_METRICS):
            self.client.log_batch(self.parent_id, metrics=summary[i:i + _BATCH_METRICS])
        with tempfile.TemporaryDirectory(prefix="autolab-bench-") as tmp:
            for fname, content in output_texts(outcome).items():
                path = Path(tmp) / fname
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content, encoding="utf-8")
            self.client.log_artifacts(self.parent_id, tmp)
        self.client.set_terminated(self.parent_id, "FINISHED")
        return self.parent_id
