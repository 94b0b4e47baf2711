"""Fixtures for the tracking tests: real trials with synthetic spectra, MLflow stores, a server."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest

from autolab.records import (
    Features,
    Measurement,
    QualityFlag,
    QYReference,
    Spectra,
    SpectralTrace,
    Trial,
    TrialStatus,
)
from autolab.tracking.journal import JournalHeader

if TYPE_CHECKING:
    from autolab.tracking.mlflow_tracker import MlflowTracker

TrialFactory = Callable[..., Trial]

CONFIG = {
    "name": "green-550",
    "executor": "twin",
    "seed": 7,
    "space": {"bounds": {"t_core_c": [160, 220], "t_shell_c": [240, 320]},
              "constraints": [{"text": "t_shell_c - t_core_c >= 40"}]},
    "objective": {"kind": "target", "target_nm": 550.0, "weights": [1.0, 0.5, 0.5]},
    "optimizer": {"kind": "botorch", "n_init": 5, "acquisition": "qLogNEI"},
    "notes": "x" * 7000,
}


def gaussian(x: np.ndarray, mu: float, fwhm: float) -> np.ndarray:
    return np.exp(-4 * math.log(2) * ((x - mu) / fwhm) ** 2)


def make_spectra(pl_nm: float = 560.0, fwhm_nm: float = 55.0, abs_nm: float = 540.0,
                 n: int = 151) -> Spectra:
    wl = np.linspace(400.0, 700.0, n)
    dark = np.full(n, 100.0)
    lamp = 20000.0 * gaussian(wl, 550.0, 400.0) + 2000.0
    absorbance = 0.3 * gaussian(wl, abs_nm, 40.0) + 0.4 * np.exp(-(wl - 400.0) / 60.0)
    sample = dark + lamp * 10.0 ** (-absorbance)
    pl = dark + 30000.0 * gaussian(wl, pl_nm, fwhm_nm)
    dye = dark + 40000.0 * gaussian(wl, 560.0, 35.0)
    return Spectra(wavelengths_nm=wl, dark_abs_counts=dark, blank_counts=dark + lamp,
                   sample_counts=sample, dark_pl_counts=dark, pl_counts=pl, dye_pl_counts=dye,
                   abs_integration_ms=10.0, pl_integration_ms=100.0, saturation_counts=65535.0,
                   excitation_nm=405.0)


def _conditions(index: int) -> dict[str, float]:
    return {"t_core_c": 170.0 + 3 * index, "tau_core_min": 10.0 + index,
            "t_shell_c": 260.0 + 5 * index, "tau_shell_min": 15.0, "cl_to_i": 2.0 + index,
            "s_to_zn": 2.0}


def build_trial(index: int, status: TrialStatus = TrialStatus.COMPLETED, *,
            objective: float | None = None, flags: QualityFlag = QualityFlag.NONE,
            with_trace: bool = False, n_points: int = 151) -> Trial:
    conds = _conditions(index)
    if status is not TrialStatus.COMPLETED:
        return Trial(index=index, conditions=conds, status=status,
                     error="clogging: pressure above 8 bar at the shell reactor",
                     proposal_time_s=0.2)
    pl_nm = 540.0 + 4 * index
    fwhm = 60.0 - index
    feats = Features(pl_peak_nm=pl_nm, fwhm_nm=fwhm, qy=0.2 + 0.02 * index,
                     abs_peak_nm=pl_nm - 20, absorbance_at_excitation=0.08,
                     pl_peak_nm_err=0.3, fwhm_nm_err=0.5, qy_err=0.01,
                     abs_peak_nm_err=1.0, pl_snr=250.0, flags=flags)
    spectra = make_spectra(pl_nm, fwhm, pl_nm - 20, n=n_points)
    trace = None
    if with_trace:
        trace = SpectralTrace(times_min=np.array([0.0, 5.0, 10.0]),
                              pl_counts=np.stack([spectra.pl_counts * f
                                                  for f in (0.5, 0.9, 1.0)]))
    meas = Measurement(conditions=conds, spectra=spectra, qy_reference=QYReference(),
                       started_lab_h=1.5 * index, finished_lab_h=1.5 * index + 1.2,
                       reagent_ml={"InCl3 stock": 2.5, "ZnS/TOP": 1.0}, product_mg=3.0,
                       trace=trace,
                       device_log=(f"pump1 RAT 120 UM -> OK (exp {index})", "T1 190.0 C"),
                       metadata={"executor": "twin", "orientation": 1.0})
    obj = objective if objective is not None else -abs(pl_nm - 550.0) / 10 + feats.qy
    return Trial(index=index, conditions=conds, status=status, features=feats,
                 objective=obj, proposal_time_s=0.5 + index, measurement=meas)



@pytest.fixture
def make_trial() -> TrialFactory:
    """Factory of real Trial records: completed with spectra, or failed without a measurement."""
    return build_trial


@pytest.fixture
def header() -> JournalHeader:
    return JournalHeader.new("green-550", {k: v for k, v in CONFIG.items() if k != "notes"},
                             seed=7)


#: Trackers on one test's own experiment of the module's SQLite store (``new_tracker``).
NewTracker = Callable[[], "MlflowTracker"]


@pytest.fixture
def new_tracker(sqlite_store: tuple[str, str], experiment_name: str) -> NewTracker:
    """Trackers on this test's own experiment of the module's SQLite store."""
    from autolab.tracking.mlflow_tracker import MlflowTracker

    uri, artifacts = sqlite_store
    return lambda: MlflowTracker(uri, experiment_name,
                                 artifact_location=f"{artifacts}/{experiment_name}")
