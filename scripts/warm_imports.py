"""Byte-compile the installed modules autolab's processes import, and only those.

Run by ``scripts/bootstrap.sh`` after an install, with ``PYTHONDONTWRITEBYTECODE`` unset: every
module these imports reach is compiled once and its cache written. Compiling every installed
module at install time instead (``uv pip install --compile-bytecode``, pip's default) compiled
about 20,000 modules, ~110 s of CPU on 2 cores, most of them (torch's, ray's) never imported by
anything autolab runs; these imports compile ~3,000-5,000 of them in ~15-25 s. Modules no
process here imports stay uncompiled: a process that needs one compiles it (and, unless
``PYTHONDONTWRITEBYTECODE`` is set, caches it) on first use.

An extra that is not installed is skipped; an import that fails for another reason is reported
and skipped (the install stands; the module is compiled on first use instead).

Usage: ``python scripts/warm_imports.py [core|extras]`` (default both). The set-up runs the two
groups as two processes, one per core: what they share is compiled twice, but the wall time
halves (it is the set-up's longest step).
"""

from __future__ import annotations

import importlib
import sys

#: What a campaign, a benchmark pool worker, the virtual lab and ``autolab report`` import.
CORE = ("autolab.cli", "autolab.campaign", "autolab.optimizer.bayes",
        "autolab.tracking.mlflow_tracker", "autolab.tracking.plots",
        "autolab.benchmarking.execution", "autolab.benchmarking.runner",
        "autolab.virtuallab.lab", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store")
#: The extras' entry points (skipped when the extra is not installed): the tracking server,
#: Ray, the notebooks' kernel, the deployment checks, the test runner.
EXTRAS = ("mlflow.server", "mlflow.cli", "ray", "nbclient", "ipykernel.kernelapp",
          "selenium.webdriver", "psycopg2", "optuna", "seabreeze", "pytest", "xdist",
          "hypothesis")


GROUPS = {"core": CORE, "extras": EXTRAS}


def main(argv: list[str]) -> int:
    """Import every module of the groups named in ``argv`` (default all); always succeeds."""
    names = [n for group in (argv or list(GROUPS)) for n in GROUPS[group]]
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if name in CORE or err.name is None or not name.startswith(err.name):
                print(f"warm_imports: {name}: {err}", file=sys.stderr)
        except Exception as err:  # a warm-up never fails the set-up
            print(f"warm_imports: {name}: {type(err).__name__}: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
