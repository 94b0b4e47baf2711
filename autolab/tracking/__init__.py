"""Campaign journal (crash safety) and experiment tracking (MLflow) for autolab.

The journal is the campaign's durable memory; a tracker is the view people review. Importing this
package does not import MLflow: :class:`MlflowTracker` is loaded on first use, so CI campaigns on
the :class:`NullTracker` skip MLflow's import cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autolab.tracking.base import NullTracker, Prediction, Tracker, flatten_params
from autolab.tracking.journal import Journal, JournalHeader, JournalState, StartedExperiment
from autolab.tracking.summary import best_so_far, lab_clocks
from autolab.tracking.sync import sync

if TYPE_CHECKING:
    from autolab.tracking.mlflow_tracker import MlflowTracker

__all__ = ["Journal", "JournalHeader", "JournalState", "MlflowTracker", "NullTracker",
           "Prediction", "StartedExperiment", "Tracker", "best_so_far", "flatten_params",
           "lab_clocks", "sync"]


def __getattr__(name: str) -> Any:
    if name == "MlflowTracker":
        from autolab.tracking.mlflow_tracker import MlflowTracker  # noqa: PLC0415 (lazy)

        return MlflowTracker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
