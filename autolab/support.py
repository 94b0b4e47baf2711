"""Small helpers with no domain of their own, for every layer of autolab.

They sit in the lowest layer (beside :mod:`autolab.exceptions`) and import nothing of autolab, so
a package or a schema of any layer can read them: one copy of each, where several places needed
the same few lines.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any


def lazy_attribute(package: str, modules: Mapping[str, str], name: str) -> Any:
    """The attribute ``name`` of a package that imports its modules on first use (PEP 562).

    A package's ``__getattr__`` hands its lookups here, so that importing the package (for one
    light module, such as a settings schema ``autolab validate`` reads) does not pull in what its
    other modules import (torch, BoTorch, SciPy).

    Args:
        package: The package's ``__name__``.
        modules: Attribute name -> the package's module (relative name) that defines it.
        name: The attribute asked for.

    Raises:
        AttributeError: ``name`` is none of the package's lazy attributes.
    """
    module = modules.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{package}.{module}"), name)


def repeated(values: Sequence[str]) -> list[str]:
    """The values that stand more than once in ``values``, sorted (each named once).

    What a schema's "must be unique" error names: parameter, outcome, reactor, device and
    strategy names.
    """
    return sorted({v for v in values if values.count(v) > 1})
