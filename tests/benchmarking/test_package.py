"""The benchmarking package's names, loaded on first use, are what its modules define."""

from __future__ import annotations

import importlib
import types

import autolab.benchmarking as package


def test_every_exported_name_is_the_object_its_module_defines() -> None:
    """After every submodule is imported (which binds submodules on the package), each name in
    ``__all__`` is still the function, class or constant, never a module."""
    for module in set(package._WHERE.values()):
        importlib.import_module(module)
    assert sorted(package.__all__) == sorted(package._WHERE)
    for name in package.__all__:
        value = getattr(package, name)
        assert not isinstance(value, types.ModuleType), name
        assert value is getattr(importlib.import_module(package._WHERE[name]), name)
