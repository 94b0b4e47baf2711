"""The golden benchmark: a few campaigns whose per-cell results are stored in golden.json.

A change that moves benchmark results (optimizer, twin, analyzer, family) fails this test, so it
shows up in review; update the file on purpose with::

    AUTOLAB_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/benchmarking/test_golden.py

and commit tests/benchmarking/golden.json with the change that moved it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from autolab.benchmarking import parse_spec, run_benchmark

GOLDEN = Path(__file__).with_name("golden.json")
SPEC: dict[str, Any] = {
    "name": "golden",
    "strategies": ["random", "sobol", {"kind": "botorch", "settings": {"n_init": 4}}],
    "seeds": 1,
    "targets": [{"pl_peak_nm": 550, "tolerance_nm": 10}],
    "budget": 6,
    "success": {"qy_fraction": 0.5},
    "family": {"kinds": ["twin", "rff", "additive"], "per_kind": 1},
    "dense_search": {"sobol_log2": 10, "polish": 1},
    # the stopping forecast never changes a proposal (test_benchmark's forecast-off test holds
    # every proposal to it) and was a fifth of this test's CPU
    "forecast": False,
}


def _num(v: float, digits: int) -> float | None:
    return None if math.isnan(v) else round(v, digits)


def _record() -> dict[str, Any]:
    outcome = run_benchmark(parse_spec(SPEC), workers=1)
    return {
        "reachable": {m: [round(r.best_qy, 4) for r in rs]
                      for m, rs in sorted(outcome.reachable.items())},
        "cells": {r.cell_id: {
            "experiments_to_success": r.experiments_to_success,
            "experiments_to_in_band": r.experiments_to_in_band,
            "failed": r.failed, "stop_reason": r.stop_reason,
            "steps": [[_num(s.true_pl_nm, 2), _num(s.true_qy, 4), s.failed] for s in r.steps]}
            for r in outcome.results}}


def test_golden_benchmark_matches_the_stored_results() -> None:
    got = _record()
    if os.environ.get("AUTOLAB_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n", encoding="utf-8")
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert got["reachable"] == expected["reachable"]
    changed = sorted(c for c in expected["cells"] if got["cells"].get(c) != expected["cells"][c])
    assert set(got["cells"]) == set(expected["cells"])
    assert not changed, (
        f"benchmark results moved in {len(changed)} cells ({', '.join(changed)}); if that is "
        "intended, update with AUTOLAB_UPDATE_GOLDEN=1 (see this module's docstring)")
