"""The tiny benchmark grid the benchmarking tests share.

2 strategies × 2 seeds × 1 target, budget 4. A loose success threshold and a wide band make some
runs succeed, so both branches of the bookkeeping run.
"""

from __future__ import annotations

from typing import Any

TINY: dict[str, Any] = {
    "name": "tiny",
    "strategies": ["random", {"kind": "sobol", "label": "sobol-a"}],
    "seeds": 2,
    "targets": [{"pl_peak_nm": 560, "tolerance_nm": 15}],
    "budget": 4,
    "success": {"qy_fraction": 0.2},
    "dense_search": {"sobol_log2": 9, "polish": 1},
}
