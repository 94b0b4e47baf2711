"""Digital twin of the InP/ZnS CSTR cascade: cascade flow, chemistry, optics, virtual clock."""

from autolab.twin.config import (
    ChemistryParams,
    DetectorParams,
    FailureParams,
    NoiseParams,
    OpticsParams,
    TwinConfig,
)
from autolab.twin.model import FeatureArrays, core_features, truth_features
from autolab.twin.twin import ENVELOPE, DigitalTwin, GroundTruth, check_envelope

__all__ = [
    "ENVELOPE",
    "ChemistryParams",
    "DetectorParams",
    "DigitalTwin",
    "FailureParams",
    "FeatureArrays",
    "GroundTruth",
    "NoiseParams",
    "OpticsParams",
    "TwinConfig",
    "check_envelope",
    "core_features",
    "truth_features",
]
