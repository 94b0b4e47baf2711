"""Plain data objects that travel between the layers of autolab.

Every arrow of the data flow (docs/architecture.md) carries one of these: :class:`Conditions` into
an executor, :class:`Measurement` out of it, :class:`Features` out of the analyzer, :class:`Trial`
into the journal, the optimizer and the tracker. They are frozen, hold numpy arrays for spectra,
and round-trip through JSON-compatible dicts (``to_dict`` / ``from_dict``) so the journal can store
them and ``autolab sync`` can replay them.

Ground truth from the digital twin is deliberately *not* part of :class:`Measurement`: the analyzer
must not be able to tell a simulated reading from a real one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import IntFlag, StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import ConfigError

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Conditions:
    """Reaction conditions of one InP/ZnS experiment, in physical units.

    Attributes:
        t_core_c: Core (InP) stage temperature, °C.
        tau_core_min: Core stage mean residence time, min (split over the core tanks).
        t_shell_c: Shell (ZnS) stage temperature, °C.
        tau_shell_min: Shell stage mean residence time, min.
        cl_to_i: Cl:I molar ratio of the halide feed; ``math.inf`` means no iodide at all (allowed
            for the twin, not inside an optimizer's bounds).
        s_to_zn: S:Zn molar ratio of the shell feed.
        p_to_in: Aminophosphine P:In molar ratio of the core feed (seed-paper optimum 3.6).
    """

    t_core_c: float
    tau_core_min: float
    t_shell_c: float
    tau_shell_min: float
    cl_to_i: float
    s_to_zn: float
    p_to_in: float = 3.6

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int | float) or math.isnan(v):
                raise ConfigError(f"Conditions.{f.name}: expected a number, got {v!r}")
            if v <= 0:
                raise ConfigError(f"Conditions.{f.name}: expected a positive value, got {v!r}")
            if math.isinf(v) and f.name != "cl_to_i":
                raise ConfigError(f"Conditions.{f.name}: expected a finite value, got {v!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> Conditions:
        """Build from a name -> value mapping (e.g. an optimizer proposal plus fixed values).

        Raises:
            ConfigError: Unknown or missing names, or non-numeric values.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(
                f"unknown condition(s) {unknown}; expected names from {sorted(names)}")
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = sorted(required - set(values))
        if missing:
            raise ConfigError(f"missing condition(s) {missing}")
        return cls(**{k: float(v) for k, v in values.items()})

    def as_dict(self) -> dict[str, float]:
        """The conditions as a plain dict (field order)."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Spectra:
    """Raw detector readings of the inline optical cell, all on one wavelength grid.

    Counts are as read from the detector: dark not subtracted, saturation possible. The absorbance
    frames (blank, sample) and the emission frames (sample PL, reference-dye PL) may use different
    integration times, so each pair has its own dark frame.

    Attributes:
        wavelengths_nm: Pixel wavelengths, shape ``(P,)``, strictly increasing.
        dark_abs_counts: Dark frame at the absorbance integration time, ``(P,)``.
        blank_counts: Lamp through the solvent-filled cell, ``(P,)``.
        sample_counts: Lamp through the product stream, ``(P,)``.
        dark_pl_counts: Dark frame at the emission integration time, ``(P,)``.
        pl_counts: Emission of the product under excitation, ``(P,)``.
        dye_pl_counts: Emission of the reference dye, same geometry and settings, ``(P,)``.
        abs_integration_ms: Integration time of the absorbance frames, ms.
        pl_integration_ms: Integration time of the emission frames, ms.
        saturation_counts: Detector full-scale count (e.g. 65535 for 16 bit).
        excitation_nm: Excitation wavelength of the emission frames, nm.
        path_length_cm: Optical path length of the flow cell, cm.
    """

    wavelengths_nm: FloatArray
    dark_abs_counts: FloatArray
    blank_counts: FloatArray
    sample_counts: FloatArray
    dark_pl_counts: FloatArray
    pl_counts: FloatArray
    dye_pl_counts: FloatArray
    abs_integration_ms: float
    pl_integration_ms: float
    saturation_counts: float
    excitation_nm: float
    path_length_cm: float = 0.1

    ARRAYS = ("wavelengths_nm", "dark_abs_counts", "blank_counts", "sample_counts",
              "dark_pl_counts", "pl_counts", "dye_pl_counts")

    def __post_init__(self) -> None:
        for name in self.ARRAYS:
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (arrays as lists)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Spectra:
        """Inverse of :meth:`to_dict`."""
        kwargs: dict[str, Any] = {k: (np.asarray(v, dtype=np.float64) if k in cls.ARRAYS else v)
                                  for k, v in d.items()}
        return cls(**kwargs)


@dataclass(frozen=True)
class QYReference:
    """What a relative quantum-yield measurement needs to know about the reference dye.

    Attributes:
        name: Dye and solvent, e.g. ``"rhodamine 6G in ethanol"``.
        qy: Quantum yield of the dye (fraction, 0-1).
        absorbance_at_excitation: Decadic absorbance of the dye cell at the excitation wavelength.
        refractive_index: Refractive index of the dye's solvent.
        sample_refractive_index: Refractive index of the sample's solvent (octadecene ~1.44).
    """

    name: str = "rhodamine 6G in ethanol"
    qy: float = 0.95
    absorbance_at_excitation: float = 0.05
    refractive_index: float = 1.361
    sample_refractive_index: float = 1.444


@dataclass(frozen=True, eq=False)
class SpectralTrace:
    """Emission spectra taken while the outlet settles, for steady-state detection.

    Attributes:
        times_min: Lab time of each frame since the conditions changed, shape ``(T,)``.
        pl_counts: Emission frames, shape ``(T, P)`` on the measurement's wavelength grid.
    """

    times_min: FloatArray
    pl_counts: FloatArray

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {"times_min": np.asarray(self.times_min).tolist(),
                "pl_counts": np.asarray(self.pl_counts).tolist()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpectralTrace:
        """Inverse of :meth:`to_dict`."""
        return cls(times_min=np.asarray(d["times_min"], dtype=np.float64),
                   pl_counts=np.asarray(d["pl_counts"], dtype=np.float64))


@dataclass(frozen=True, eq=False)
class Measurement:
    """What an executor returns for one experiment: raw readings plus bookkeeping.

    The twin and the hardware return exactly this type.

    Attributes:
        conditions: The conditions that were run, name -> physical value.
        spectra: The raw optical readings at steady state.
        qy_reference: Reference-dye facts for the relative QY.
        started_lab_h: Lab clock (hours since the executor started) when the experiment began.
        finished_lab_h: Lab clock when the sample spectra were taken.
        reagent_ml: Reagent name -> volume consumed by this experiment, mL.
        product_mg: InP mass produced during the experiment (throughput bookkeeping), mg.
        trace: Optional emission frames taken during equilibration.
        device_log: Lines of the device exchange log (hardware) or event log (twin).
        metadata: Free-form facts (executor name, orientation, ...), str/float values.
    """

    conditions: dict[str, float]
    spectra: Spectra
    qy_reference: QYReference
    started_lab_h: float
    finished_lab_h: float
    reagent_ml: dict[str, float] = field(default_factory=dict)
    product_mg: float = 0.0
    trace: SpectralTrace | None = None
    device_log: tuple[str, ...] = ()
    metadata: dict[str, str | float] = field(default_factory=dict)

    @property
    def lab_hours(self) -> float:
        """Lab time this experiment took, h."""
        return self.finished_lab_h - self.started_lab_h

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {
            "conditions": dict(self.conditions),
            "spectra": self.spectra.to_dict(),
            "qy_reference": asdict(self.qy_reference),
            "started_lab_h": self.started_lab_h,
            "finished_lab_h": self.finished_lab_h,
            "reagent_ml": dict(self.reagent_ml),
            "product_mg": self.product_mg,
            "trace": self.trace.to_dict() if self.trace is not None else None,
            "device_log": list(self.device_log),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurement:
        """Inverse of :meth:`to_dict`."""
        return cls(
            conditions={k: float(v) for k, v in d["conditions"].items()},
            spectra=Spectra.from_dict(d["spectra"]),
            qy_reference=QYReference(**d["qy_reference"]),
            started_lab_h=float(d["started_lab_h"]),
            finished_lab_h=float(d["finished_lab_h"]),
            reagent_ml={k: float(v) for k, v in d.get("reagent_ml", {}).items()},
            product_mg=float(d.get("product_mg", 0.0)),
            trace=SpectralTrace.from_dict(d["trace"]) if d.get("trace") else None,
            device_log=tuple(d.get("device_log", ())),
            metadata=dict(d.get("metadata", {})),
        )


class QualityFlag(IntFlag):
    """Data-quality flags of one analyzed spectrum set; a bit mask so batches store one int each.

    ``BLOCKING`` flags make the features unusable as objectives; the rest are warnings.
    """

    NONE = 0
    INVALID_INPUT = 1  #: NaN/inf or negative counts after dark subtraction beyond noise
    SATURATED = 2  #: a frame reached the detector's full scale near the feature
    LOW_SIGNAL = 4  #: peak signal-to-noise below the reliable threshold
    NO_PEAK = 8  #: no emission peak found
    SHOULDER = 16  #: a second peak or shoulder next to the main emission peak
    TRAP_TAIL = 32  #: broad low-energy (red) emission tail: trap states, incomplete shell
    ABSORBANCE_NONLINEAR = 64  #: absorbance at excitation outside the linear (Beer-Lambert) range
    NO_ABS_PEAK = 128  #: no first-exciton absorption feature found
    NOT_STEADY = 256  #: outlet had not reached steady state when the spectra were taken

    @classmethod
    def blocking(cls) -> QualityFlag:
        """Flags that make the objectives meaningless."""
        return cls.INVALID_INPUT | cls.SATURATED | cls.NO_PEAK

    def names(self) -> list[str]:
        """Names of the set flags, lower case (``["trap_tail", ...]``)."""
        return [f.name.lower() for f in QualityFlag if f.value and f in self and f.name]


#: Outcome names the analyzer produces and the optimizer sees.
OUTCOMES = ("pl_peak_nm", "fwhm_nm", "qy")


@dataclass(frozen=True)
class Features:
    """Features extracted from one experiment's spectra; the objectives come from here.

    Values the analyzer cannot determine are NaN, with a flag saying why.

    Attributes:
        pl_peak_nm: Emission peak wavelength, nm (sub-pixel).
        fwhm_nm: Emission full width at half maximum, nm.
        qy: Photoluminescence quantum yield, fraction 0-1 (relative method).
        abs_peak_nm: First-exciton absorption peak, nm.
        absorbance_at_excitation: Sample absorbance at the excitation wavelength.
        pl_peak_nm_err: One-sigma uncertainty of ``pl_peak_nm``, nm.
        fwhm_nm_err: One-sigma uncertainty of ``fwhm_nm``, nm.
        qy_err: One-sigma uncertainty of ``qy`` (fraction).
        abs_peak_nm_err: One-sigma uncertainty of ``abs_peak_nm``, nm.
        pl_snr: Peak signal-to-noise ratio of the emission spectrum.
        flags: Quality flags.
    """

    pl_peak_nm: float
    fwhm_nm: float
    qy: float
    abs_peak_nm: float
    absorbance_at_excitation: float = math.nan
    pl_peak_nm_err: float = math.nan
    fwhm_nm_err: float = math.nan
    qy_err: float = math.nan
    abs_peak_nm_err: float = math.nan
    pl_snr: float = math.nan
    flags: QualityFlag = QualityFlag.NONE

    @property
    def usable(self) -> bool:
        """True if no blocking flag is set and the three objectives are finite."""
        return not (self.flags & QualityFlag.blocking()) and all(
            math.isfinite(v) for v in (self.pl_peak_nm, self.fwhm_nm, self.qy))

    def outcomes(self) -> dict[str, float]:
        """The objectives as named outcomes for the optimizer (see :data:`OUTCOMES`)."""
        return {"pl_peak_nm": self.pl_peak_nm, "fwhm_nm": self.fwhm_nm, "qy": self.qy}

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (flags as a list of names; NaN as None)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "flags":
                out[f.name] = v.names()
            else:
                out[f.name] = None if (isinstance(v, float) and math.isnan(v)) else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Features:
        """Inverse of :meth:`to_dict`."""
        flags = QualityFlag.NONE
        for name in d.get("flags", []):
            flags |= QualityFlag[name.upper()]
        kwargs = {k: (math.nan if v is None else float(v)) for k, v in d.items() if k != "flags"}
        return cls(**kwargs, flags=flags)


def experiment_label(index: int) -> str:
    """The one name of an experiment everywhere (terminal, journal, MLflow, report, notebooks).

    Experiments are numbered by their journal index, from 0: ``exp-000`` is the first.
    """
    return f"exp-{index:03d}"


class TrialStatus(StrEnum):
    """How an experiment ended."""

    COMPLETED = "completed"  #: measured and analyzed; outcomes go to the optimizer
    FAILED = "failed"  #: ran but gave no usable product; the optimizer is told ``None``
    INTERRUPTED = "interrupted"  #: stopped by a crash or signal before it finished; re-run
    #: a device fault (or a person, after the fact) made the result meaningless; not told
    INVALID = "invalid"


class TrialOrigin(StrEnum):
    """Where an experiment's conditions came from (journaled in the trial extra as ``origin``)."""

    PROPOSED = "proposed"  #: the optimizer's proposal, run as proposed
    EDITED = "edited"  #: the optimizer's proposal, edited by a chemist before it ran
    MANUAL = "manual"  #: made outside the loop (flask batch, offline QY) and added afterwards
    REUSED = "reused"  #: from an earlier campaign on the same reactor; not this campaign's


class Decision(StrEnum):
    """A chemist's decision on a proposal (review mode, :mod:`autolab.steer`)."""

    APPROVE = "approve"  #: run it as proposed
    EDIT = "edit"  #: run it with changed conditions
    REJECT = "reject"  #: do not run it; the optimizer learns not to propose that region


def _mapping(d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``d[key]`` if it is an object; a clear ``TypeError`` otherwise (hand-edited journals)."""
    v = d[key]
    if not isinstance(v, Mapping):
        raise TypeError(f"{key} must be an object of name -> value, got {type(v).__name__} "
                        f"{v!r:.40}")
    return v


@dataclass(frozen=True)
class Trial:
    """One experiment of a campaign, as the journal records it.

    Attributes:
        index: Experiment number within the campaign, from 0.
        conditions: Proposed conditions, name -> physical value (searched and fixed).
        status: How it ended.
        features: Analyzer output (completed trials; may also be set on failed ones).
        objective: Scalar score of the campaign's objective (higher is better), if defined.
        error: Why it failed or was interrupted.
        proposal_time_s: Wall time the optimizer took to propose it, s.
        measurement: The raw measurement, if one was taken.
    """

    index: int
    conditions: dict[str, float]
    status: TrialStatus
    features: Features | None = None
    objective: float | None = None
    error: str | None = None
    proposal_time_s: float = 0.0
    measurement: Measurement | None = None

    def outcomes(self) -> dict[str, float] | None:
        """What the optimizer is told: the feature outcomes, or ``None`` if unusable."""
        if self.status is not TrialStatus.COMPLETED or self.features is None:
            return None
        if not self.features.usable:
            return None
        return self.features.outcomes()

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return {
            "index": self.index,
            "conditions": dict(self.conditions),
            "status": self.status.value,
            "features": self.features.to_dict() if self.features else None,
            "objective": self.objective,
            "error": self.error,
            "proposal_time_s": self.proposal_time_s,
            "measurement": self.measurement.to_dict() if self.measurement else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Trial:
        """Inverse of :meth:`to_dict`."""
        return cls(
            index=int(d["index"]),
            conditions={str(k): float(v) for k, v in _mapping(d, "conditions").items()},
            status=TrialStatus(d["status"]),
            features=Features.from_dict(d["features"]) if d.get("features") else None,
            objective=None if d.get("objective") is None else float(d["objective"]),
            error=d.get("error"),
            proposal_time_s=float(d.get("proposal_time_s", 0.0)),
            measurement=Measurement.from_dict(d["measurement"]) if d.get("measurement") else None,
        )
