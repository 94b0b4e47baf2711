"""Benchmarks of optimization strategies on the digital twin, at scale.

A benchmark spec (YAML, :class:`BenchmarkSpec`) names strategies × seeds × targets and a budget.
For each target the best QY the noiseless twin can reach in band is found by a dense search
(:func:`best_reachable_many`); each run then counts the experiments until the noise-free product
is in band with at least a fraction of that QY. Runs go to a local process pool or a Ray cluster;
results come back as CSV, JSON, a distribution plot and, optionally, MLflow runs.

This package sits at the campaign layer: it composes executors, optimizer, twin and analysis.
"""

from autolab.benchmarking.benchmark import (
    OUTPUT_FILES,
    BenchmarkOutcome,
    make_jobs,
    problems,
    run_benchmark,
    write_outputs,
)
from autolab.benchmarking.family import (
    HELDOUT_SEED_BASE,
    MEMBER_KINDS,
    Member,
    TruthArrays,
    draw_member,
    family,
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

__all__ = [
    "HELDOUT_SEED_BASE",
    "MEMBER_KINDS",
    "OUTPUT_FILES",
    "BenchmarkOutcome",
    "BenchmarkSpec",
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
    "draw_member",
    "family",
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
