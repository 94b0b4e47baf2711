"""The virtual lab: protocol emulators on ptys backed by the twin, and their orchestration."""

from autolab.virtuallab.lab import VirtualLab

__all__ = ["VirtualLab"]
