"""Executors turn conditions into measurements: the digital twin or the real CSTR cascade."""

from autolab.executors.base import Executor

__all__ = ["Executor"]
