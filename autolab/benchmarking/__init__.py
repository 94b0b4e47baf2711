"""Benchmarks of optimization strategies on the digital twin, at scale.

A benchmark spec (YAML, :class:`BenchmarkSpec`) names strategies × seeds × targets and a budget.
For each target the best QY the noiseless twin can reach in band is found by a dense search
(:func:`best_reachable_many`); each run then counts the experiments until the noise-free product
is in band with at least a fraction of that QY. Runs go to a local process pool or a Ray cluster;
results come back as CSV, JSON, a distribution plot and, optionally, MLflow runs.

This package sits at the campaign layer: it composes executors, optimizer, twin and analysis.

Names are loaded on first use (PEP 562): the package's modules import torch, BoTorch, SciPy and
matplotlib, so printing ``autolab benchmark --help`` does not wait for them. The function
``family`` is not among them: lazily, the name would be the submodule ``family`` once that is
imported, so it is imported from :mod:`autolab.benchmarking.family`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autolab.benchmarking.benchmark import (
        OUTPUT_FILES,
        BenchmarkOutcome,
        make_jobs,
        problems,
        run_benchmark,
        write_outputs,
    )
    from autolab.benchmarking.custom import CustomResponse, custom_member
    from autolab.benchmarking.family import (
        HELDOUT_SEED_BASE,
        MEMBER_KINDS,
        Member,
        TruthArrays,
        draw_member,
        nominal_member,
    )
    from autolab.benchmarking.problem import (
        Problem,
        Reachable,
        best_reachable,
        best_reachable_many,
        is_success,
    )
    from autolab.benchmarking.results import SummaryRow, summarize
    from autolab.benchmarking.runner import Job, RunResult, Step, run_job
    from autolab.benchmarking.spec import (
        BenchmarkSpec,
        StrategySpec,
        TargetSpec,
        load_spec,
        parse_spec,
    )

_WHERE = {
    "BenchmarkOutcome": "autolab.benchmarking.benchmark",
    "BenchmarkSpec": "autolab.benchmarking.spec",
    "CustomResponse": "autolab.benchmarking.custom",
    "HELDOUT_SEED_BASE": "autolab.benchmarking.family",
    "Job": "autolab.benchmarking.runner",
    "MEMBER_KINDS": "autolab.benchmarking.family",
    "Member": "autolab.benchmarking.family",
    "OUTPUT_FILES": "autolab.benchmarking.benchmark",
    "Problem": "autolab.benchmarking.problem",
    "Reachable": "autolab.benchmarking.problem",
    "RunResult": "autolab.benchmarking.runner",
    "Step": "autolab.benchmarking.runner",
    "StrategySpec": "autolab.benchmarking.spec",
    "SummaryRow": "autolab.benchmarking.results",
    "TargetSpec": "autolab.benchmarking.spec",
    "TruthArrays": "autolab.benchmarking.family",
    "best_reachable": "autolab.benchmarking.problem",
    "best_reachable_many": "autolab.benchmarking.problem",
    "custom_member": "autolab.benchmarking.custom",
    "draw_member": "autolab.benchmarking.family",
    "is_success": "autolab.benchmarking.problem",
    "load_spec": "autolab.benchmarking.spec",
    "make_jobs": "autolab.benchmarking.benchmark",
    "nominal_member": "autolab.benchmarking.family",
    "parse_spec": "autolab.benchmarking.spec",
    "problems": "autolab.benchmarking.benchmark",
    "run_benchmark": "autolab.benchmarking.benchmark",
    "run_job": "autolab.benchmarking.runner",
    "summarize": "autolab.benchmarking.results",
    "write_outputs": "autolab.benchmarking.benchmark",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` when it is first asked for."""
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "HELDOUT_SEED_BASE",
    "MEMBER_KINDS",
    "OUTPUT_FILES",
    "BenchmarkOutcome",
    "BenchmarkSpec",
    "CustomResponse",
    "Job",
    "Member",
    "Problem",
    "Reachable",
    "RunResult",
    "Step",
    "StrategySpec",
    "SummaryRow",
    "TargetSpec",
    "TruthArrays",
    "best_reachable",
    "best_reachable_many",
    "custom_member",
    "draw_member",
    "is_success",
    "load_spec",
    "make_jobs",
    "nominal_member",
    "parse_spec",
    "problems",
    "run_benchmark",
    "run_job",
    "summarize",
    "write_outputs",
]
