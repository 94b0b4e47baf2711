"""Digital twin of the InP/ZnS CSTR cascade: cascade flow, chemistry, optics, virtual clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autolab.support import lazy_attribute

if TYPE_CHECKING:
    from autolab.twin.config import (
        ChemistryParams,
        DetectorParams,
        FailureParams,
        NoiseParams,
        OpticsParams,
        TwinConfig,
    )
    from autolab.twin.model import FeatureArrays, core_features, truth_features
    from autolab.twin.transient import (
        CascadePhysics,
        CascadeState,
        MixingCascade,
        OutletProduct,
        TankInputs,
        TransientCascade,
    )
    from autolab.twin.twin import ENVELOPE, DigitalTwin, GroundTruth, check_envelope

# Imported on first use (PEP 562): reading a campaign file needs only ``TwinConfig``, not the
# chemistry (SciPy), so ``autolab validate`` starts in well under a second.
_LAZY = {
    "ChemistryParams": "config", "DetectorParams": "config", "FailureParams": "config",
    "NoiseParams": "config", "OpticsParams": "config", "TwinConfig": "config",
    "FeatureArrays": "model", "core_features": "model", "truth_features": "model",
    "ENVELOPE": "twin", "DigitalTwin": "twin", "GroundTruth": "twin", "check_envelope": "twin",
    "CascadePhysics": "transient", "CascadeState": "transient", "MixingCascade": "transient",
    "OutletProduct": "transient", "TankInputs": "transient", "TransientCascade": "transient",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _LAZY, name)


__all__ = [
    "ENVELOPE",
    "CascadePhysics",
    "CascadeState",
    "ChemistryParams",
    "DetectorParams",
    "DigitalTwin",
    "FailureParams",
    "FeatureArrays",
    "GroundTruth",
    "MixingCascade",
    "NoiseParams",
    "OpticsParams",
    "OutletProduct",
    "TankInputs",
    "TransientCascade",
    "TwinConfig",
    "check_envelope",
    "core_features",
    "truth_features",
]
