"""Load a script of ``benchmarks/`` or ``scripts/`` as a module, for tests of its logic.

The scripts are not a package (they run as ``python benchmarks/x.py``). Registered in
``sys.modules`` under its file's stem before it runs: dataclasses look their module up by name
while being built.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """The script at ``relative`` (to the repository root), executed as a fresh module."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
