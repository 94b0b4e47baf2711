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
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import IntFlag, StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import ConfigError

FloatArray = NDArray[np.float64]


#: Most CSTRs a cascade of the seed paper's platform holds (it used six to eight in all).
MAX_TANKS = 8
#: Condition names of one per-tank temperature, ``t_tank<i>_c`` with ``i`` 1-based in flow order.
TANK_TEMPERATURE = re.compile(r"^t_tank([1-9][0-9]*)_c$")
#: The conditions every experiment states (the reactor's seven classic knobs), field order.
BASE_CONDITIONS = ("t_core_c", "tau_core_min", "t_shell_c", "tau_shell_min", "cl_to_i",
                   "s_to_zn", "p_to_in")
#: Optional conditions whose value must be a whole number.
INTEGER_CONDITIONS = ("s_inject_tank", "s_inject_count")


def tank_temperature_name(tank: int) -> str:
    """The condition name of tank ``tank``'s temperature (1-based, flow order): ``t_tank3_c``."""
    return f"t_tank{tank}_c"


def tank_of(name: str) -> int | None:
    """The 1-based tank a ``t_tank<i>_c`` name refers to, or ``None`` for any other name."""
    m = TANK_TEMPERATURE.match(name)
    return int(m.group(1)) if m else None


def is_condition_name(name: str) -> bool:
    """True for a scalar condition name a campaign space, a CSV or a command line may use.

    These are the scalar fields of :class:`Conditions` plus ``t_tank<i>_c`` for tanks
    1..:data:`MAX_TANKS` (the ``t_tank_c`` profile itself is not a scalar).
    """
    tank = tank_of(name)
    if tank is not None:
        return 1 <= tank <= MAX_TANKS
    return name in CONDITION_DEFAULTS or name in REQUIRED_CONDITIONS


def _check_number(name: str, v: object, *, allow_inf: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v):
        raise ConfigError(f"Conditions.{name}: expected a number, got {v!r}")
    if v <= 0:
        raise ConfigError(f"Conditions.{name}: expected a positive value, got {v!r}")
    if math.isinf(v) and not allow_inf:
        raise ConfigError(f"Conditions.{name}: expected a finite value, got {v!r}")
    return float(v)


def _check_whole(name: str, v: object, lowest: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
            or v != int(v):
        raise ConfigError(f"Conditions.{name}: expected a whole number, got {v!r}")
    if v < lowest:
        raise ConfigError(f"Conditions.{name}: expected a whole number >= {lowest}, got {v!r}")
    return int(v)


@dataclass(frozen=True)
class Conditions:
    """Reaction conditions of one InP/ZnS experiment, in physical units.

    The first seven fields are the classic knobs every experiment states. The rest are optional
    conditions of the seed paper's platform, which heats and stirs each CSTR independently and
    injects the sulfur (shell) feed at a chosen tank; their defaults reproduce the plain two-stage
    reactor exactly, so journals and campaign files written before they existed load unchanged.

    Attributes:
        t_core_c: Core (InP) stage temperature, °C.
        tau_core_min: Core stage mean residence time, min (split over the core tanks).
        t_shell_c: Shell (ZnS) stage temperature, °C.
        tau_shell_min: Shell stage mean residence time, min.
        cl_to_i: Cl:I molar ratio of the halide feed; ``math.inf`` means no iodide at all (allowed
            for the twin, not inside an optimizer's bounds).
        s_to_zn: S:Zn molar ratio of the shell feed.
        p_to_in: Aminophosphine P:In molar ratio of the core feed (seed-paper optimum 3.6).
        t_tank_c: Per-tank temperature profile in flow order, °C. Empty: every core-stage tank at
            ``t_core_c`` and every shell-stage tank at ``t_shell_c``. A NaN entry, or a tank past
            the end of the tuple, keeps its stage temperature (so a space that searches only
            ``t_tank5_c`` changes tank 5 alone). As scalar conditions the entries are named
            ``t_tank<i>_c`` (``i`` 1-based).
        stir_rpm: Stirring rate of every tank, rpm (600: the ideal-mixing reference).
        s_inject_tank: 1-based tank where the sulfur (shell) feed enters; 0 = the reactor's
            default, the first shell tank. Tanks before it are the core stage.
        s_inject_count: The shell feed is split equally over this many consecutive tanks
            starting at ``s_inject_tank``.
    """

    t_core_c: float
    tau_core_min: float
    t_shell_c: float
    tau_shell_min: float
    cl_to_i: float
    s_to_zn: float
    p_to_in: float = 3.6
    t_tank_c: tuple[float, ...] = ()
    stir_rpm: float = 600.0
    s_inject_tank: int = 0
    s_inject_count: int = 1

    def __post_init__(self) -> None:
        for name in BASE_CONDITIONS:
            _check_number(name, getattr(self, name), allow_inf=name == "cl_to_i")
        _check_number("stir_rpm", self.stir_rpm)
        object.__setattr__(self, "s_inject_tank", _check_whole("s_inject_tank",
                                                               self.s_inject_tank, 0))
        object.__setattr__(self, "s_inject_count", _check_whole("s_inject_count",
                                                                self.s_inject_count, 1))
        profile: object = self.t_tank_c
        if not isinstance(profile, tuple | list):
            raise ConfigError(f"Conditions.t_tank_c: expected a sequence of °C per tank, got "
                              f"{profile!r}")
        if len(profile) > MAX_TANKS:
            raise ConfigError(f"Conditions.t_tank_c: at most {MAX_TANKS} tanks, got "
                              f"{len(profile)}")
        clean = []
        for i, v in enumerate(profile, start=1):
            if isinstance(v, float) and math.isnan(v):
                clean.append(math.nan)
            else:
                clean.append(_check_number(tank_temperature_name(i), v))
        while clean and math.isnan(clean[-1]):
            clean.pop()  # trailing "stage temperature" entries say nothing: one spelling each
        object.__setattr__(self, "t_tank_c", tuple(clean))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Conditions:
        """Build from a name -> value mapping (e.g. an optimizer proposal plus fixed values).

        Per-tank temperatures may come as ``t_tank<i>_c`` scalars (what a campaign space and
        :meth:`as_dict` use) or as a ``t_tank_c`` sequence, not both.

        Raises:
            ConfigError: Unknown or missing names, or values of the wrong kind (the message
                names the field).
        """
        unknown = sorted(n for n in values if not (is_condition_name(n) or n == "t_tank_c"))
        if unknown:
            raise ConfigError(
                f"unknown condition(s) {unknown}; expected names from {sorted(REQUIRED_CONDITIONS)}"
                f", optional {sorted(CONDITION_DEFAULTS)}, t_tank<i>_c (i = 1..{MAX_TANKS})")
        missing = sorted(set(REQUIRED_CONDITIONS) - set(values))
        if missing:
            raise ConfigError(f"missing condition(s) {missing}")
        kwargs: dict[str, Any] = {}
        tanks: dict[int, float] = {}
        for k, v in values.items():
            tank = tank_of(k)
            if tank is not None:
                tanks[tank] = _as_float(k, v)
            elif k == "t_tank_c":
                kwargs[k] = _as_profile(v)
            else:
                kwargs[k] = _as_float(k, v)
        if tanks:
            if "t_tank_c" in kwargs:
                raise ConfigError("conditions give both t_tank_c and t_tank<i>_c; use one")
            profile = [math.nan] * max(tanks)
            for tank, v in tanks.items():
                profile[tank - 1] = v
            kwargs["t_tank_c"] = tuple(profile)
        return cls(**kwargs)

    def tank_temperature_c(self, tank: int) -> float:
        """Set temperature of tank ``tank`` (1-based), or NaN when it keeps its stage's."""
        if 1 <= tank <= len(self.t_tank_c):
            return self.t_tank_c[tank - 1]
        return math.nan

    def value(self, name: str) -> float:
        """One scalar condition by name, ``t_tank<i>_c`` included (NaN: the stage temperature).

        Raises:
            KeyError: ``name`` is not a scalar condition.
        """
        tank = tank_of(name)
        if tank is not None and tank <= MAX_TANKS:
            return self.tank_temperature_c(tank)
        if name in REQUIRED_CONDITIONS or name in CONDITION_DEFAULTS:
            return float(getattr(self, name))
        raise KeyError(name)

    def as_dict(self) -> dict[str, float]:
        """The conditions as a plain, JSON-able dict of scalars (field order).

        The per-tank profile appears as ``t_tank<i>_c`` entries, one per tank that has its own
        temperature; :meth:`from_mapping` reads the dict back.
        """
        out: dict[str, float] = {}
        for f in fields(self):
            if f.name == "t_tank_c":
                out.update({tank_temperature_name(i): v
                            for i, v in enumerate(self.t_tank_c, start=1) if not math.isnan(v)})
            else:
                out[f.name] = getattr(self, f.name)
        return out


def _as_float(name: str, v: Any) -> float:
    if isinstance(v, bool):
        raise ConfigError(f"Conditions.{name}: expected a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"Conditions.{name}: expected a number, got {v!r}") from err


def _as_profile(v: Any) -> tuple[float, ...]:
    if isinstance(v, str | bytes) or not isinstance(v, Sequence):
        raise ConfigError(f"Conditions.t_tank_c: expected a list of °C per tank, got {v!r}")
    return tuple(math.nan if x is None else _as_float(tank_temperature_name(i), x)
                 for i, x in enumerate(v, start=1))


#: Conditions every experiment must state (no default).
REQUIRED_CONDITIONS: tuple[str, ...] = tuple(
    f.name for f in fields(Conditions) if f.default is MISSING)
#: Scalar conditions with a default -> that default (``t_tank_c``'s profile is not a scalar).
CONDITION_DEFAULTS: dict[str, float] = {
    f.name: float(f.default) for f in fields(Conditions)
    if f.default is not MISSING and isinstance(f.default, int | float)}
#: Every scalar condition name (what a campaign space, a CSV or a command line may use).
CONDITION_NAMES: tuple[str, ...] = (
    *REQUIRED_CONDITIONS, *CONDITION_DEFAULTS,
    *(tank_temperature_name(i) for i in range(1, MAX_TANKS + 1)))


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
