"""Executors turn conditions into measurements: the digital twin or the real CSTR cascade."""

from autolab.executors.base import Executor
from autolab.executors.simulated import SimulatedExecutor

__all__ = ["Executor", "SimulatedExecutor"]
