"""Campaign files: a validated, frozen schema for everything a campaign needs.

A campaign file is YAML (see ``campaigns/``). :func:`load_campaign` parses it and validates every
field with pydantic (``extra="forbid"``: unknown keys are rejected, so a typo such as
``max_experiment`` is an error, not a silently ignored line). Errors name the file, the field path,
the value and what is allowed, e.g.::

    campaigns/x.yaml: budget.max_experiments = -3: Input should be greater than or equal to 1

The schema composes lower layers' own configs (``TwinConfig``, ``ObjectiveSpec``, the parameter
space), so each is validated by the code that uses it.
"""

from __future__ import annotations

import hashlib
import json
import re
import reprlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autolab.analysis.settings import AnalyzerSettings
from autolab.dynamic_config import DynamicConfig
from autolab.exceptions import ConfigError
from autolab.executors.procedure import DEFAULT_PROCEDURE
from autolab.objective import ObjectiveSpec, Target
from autolab.optimizer.settings import (
    OPTIMIZER_SETTINGS,
    parse_optimizer_settings,
    settings_problems,
)
from autolab.records import CONDITION_NAMES, OUTCOMES, REQUIRED_CONDITIONS
from autolab.space import (
    QD_DEFAULT_NAMES,
    QD_PARAMETERS,
    LinearConstraint,
    ParameterSpace,
    qd_space,
)
from autolab.support import repeated
from autolab.twin import TwinConfig
from autolab.yamlfile import KeyPath, did_you_mean, read_yaml_document

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Seeds are 32-bit: numpy, torch's Sobol engine and the twin's noise streams all take them.
SEED_LIMIT = 2**32
#: A search space whose linear constraints leave less than this fraction of its box is refused:
#: the optimizer draws candidates by rejection and would stall (or the constraints contradict).
MIN_FEASIBLE_FRACTION = 1e-3
#: Below this fraction the campaign still runs, but ``validate`` and ``run`` warn.
WARN_FEASIBLE_FRACTION = 0.05
#: Uniform draws used to estimate the feasible fraction (fixed seed: the answer is reproducible).
_FRACTION_DRAWS = 1 << 14


def _check_slug(name: str, example: str) -> str:
    """``name`` if it can name a folder, an MLflow run and a journal entry as it is.

    Raises:
        ValueError: Other characters; the message shows ``example``, a name that would do.
    """
    if not _SLUG.match(name):
        raise ValueError(f"{name!r} must be letters, digits, '-', '_' or '.', like {example!r}")
    return name


@dataclass(frozen=True)
class OutcomeRange:
    """What an objective may ask of one outcome.

    Attributes:
        lower: Smallest physically meaningful target, outcome units.
        upper: Largest physically meaningful target, outcome units.
        min_tolerance: Narrowest band a target may ask for: below it no instrument can tell
            in-band from out-of-band (the spectrometer's 0.1 nm wavelength step; 0.1 % QY).
        twin_reach: What the digital twin reaches over its whole box (its calibration, see
            ``autolab.twin.calibrate``); a twin campaign aiming outside it gets a warning.
        unit: Unit, for messages.
    """

    lower: float
    upper: float
    min_tolerance: float
    twin_reach: tuple[float, float]
    unit: str


#: Outcome -> what a target may ask of it. InP/ZnS dots emit in the visible, 400-800 nm.
OUTCOME_RANGES: dict[str, OutcomeRange] = {
    "pl_peak_nm": OutcomeRange(400.0, 800.0, 0.1, (520.0, 610.0), "nm"),
    "fwhm_nm": OutcomeRange(10.0, 200.0, 0.1, (46.0, 64.0), "nm"),
    "qy": OutcomeRange(0.0, 1.0, 0.001, (0.0, 0.42), ""),
}


class SpaceConfig(BaseModel):
    """Which conditions the optimizer searches, within which bounds, and which stay fixed.

    Attributes:
        parameters: Names from the InP/ZnS catalog to search over.
        bounds: Optional narrower ``[lower, upper]`` per searched parameter (physical units).
        fixed: Values of the conditions that are not searched (e.g. ``p_to_in: 3.6``).
        constraints: Linear constraints as text (default: ``t_shell_c - t_core_c >= 40`` when both
            temperatures are searched); an empty list means none.
    """

    model_config = _FROZEN

    parameters: tuple[str, ...] = QD_DEFAULT_NAMES
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict)
    fixed: dict[str, float] = Field(default_factory=dict)
    constraints: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> SpaceConfig:
        known = set(CONDITION_NAMES)
        for name in (*self.parameters, *self.fixed):
            if name not in known:
                raise ValueError(f"unknown condition {name!r}{did_you_mean(name, known)} "
                                 f"(known: {sorted(known)})")
        both = set(self.parameters) & set(self.fixed)
        if both:
            raise ValueError(f"{sorted(both)} cannot be both searched and fixed")
        required = set(REQUIRED_CONDITIONS)
        missing = required - set(self.parameters) - set(self.fixed)
        if missing:
            raise ValueError(f"conditions {sorted(missing)} are neither searched nor fixed")
        for name, value in self.fixed.items():
            p = QD_PARAMETERS[name]
            if not p.lower <= value <= p.upper:
                raise ValueError(f"fixed {name} = {value:g} is outside what the reactor allows, "
                                 f"{p.allowed}")
        check_feasible_volume(self.build())  # bound, constraint and feasibility errors
        return self

    def build(self) -> ParameterSpace:
        """The searched space."""
        constraints = (None if self.constraints is None
                       else [LinearConstraint.parse(c) for c in self.constraints])
        return qd_space(self.parameters, overrides=self.bounds, constraints=constraints)


def feasible_fraction(space: ParameterSpace) -> float:
    """Fraction of the space's box that satisfies its linear constraints (Monte Carlo, seeded).

    Uses the constraints in unit-cube form (:meth:`ParameterSpace.unit_constraints`), the form
    the optimizer's rejection sampling tests.
    """
    if not space.constraints:
        return 1.0
    u = np.random.default_rng(0).random((_FRACTION_DRAWS, space.dim))
    ok = np.ones(u.shape[0], dtype=bool)
    for idx, coefs, rhs in space.unit_constraints():
        ok &= u[:, idx] @ np.asarray(coefs, dtype=np.float64) >= rhs
    return float(ok.mean())


def _constraints_have_solution(space: ParameterSpace) -> bool:
    """Whether any point of the box satisfies every linear constraint (an exact LP check)."""
    from scipy.optimize import linprog  # noqa: PLC0415 (only on the error path: a slow import)

    a_ub, b_ub = [], []
    for idx, coefs, rhs in space.unit_constraints():
        row = np.zeros(space.dim)
        row[idx] = coefs
        a_ub.append(-row)  # sum(c u) >= rhs  <=>  -sum(c u) <= -rhs
        b_ub.append(-rhs)
    res = linprog(np.zeros(space.dim), A_ub=np.array(a_ub), b_ub=np.array(b_ub),
                  bounds=[(0.0, 1.0)] * space.dim, method="highs")
    return bool(res.status == 0)


def check_feasible_volume(space: ParameterSpace) -> None:
    """Refuse linear constraints that contradict each other or the bounds, or leave no room.

    Raises:
        ConfigError: No point satisfies them (naming them), or less than
            :data:`MIN_FEASIBLE_FRACTION` of the box does (with the measured fraction).
    """
    if not space.constraints:
        return
    fraction = feasible_fraction(space)
    if fraction >= MIN_FEASIBLE_FRACTION:
        return
    text = "; ".join(c.describe() for c in space.constraints)
    if not _constraints_have_solution(space):
        raise ConfigError(f"space.constraints: no conditions within the bounds satisfy "
                          f"[{text}]: they contradict each other or the bounds")
    raise ConfigError(f"space.constraints: [{text}] leave {100 * fraction:.3g} % of the "
                      f"search box (at least {100 * MIN_FEASIBLE_FRACTION:g} % needed for the "
                      "optimizer to find points); widen the bounds or relax them")


#: The procedure's defaults, read by both executors' settings (one place for each value).
_PROCEDURE = DEFAULT_PROCEDURE


class _ProcedureModes(BaseModel):
    """What both executors' procedures take: how to settle and flush, when the feeds start.

    Attributes:
        settling: ``adaptive``: stop settling once the inline spectra say the outlet is steady,
            never before the RTD floor, at most the settling cap (``twin.settle_residence_times``
            on the twin, ``settle_residence_times`` on the rig) in τ; ``fixed``: always the cap.
        flush: ``auto``: skip the solvent flush when the new feed can wash the old product
            out; ``always``: flush before every experiment.
        feed_window_c: The feeds start once every block is this close to its setpoint, °C
            (0: the pumps wait idle until the blocks are at their setpoints).
        blank_max_age_h: Oldest solvent blank an experiment may use, lab h; an older one makes
            the next experiment flush clean and take a new blank (lamp and detector drift).
    """

    model_config = _FROZEN

    settling: Literal["adaptive", "fixed"] = _PROCEDURE.settling
    flush: Literal["auto", "always"] = _PROCEDURE.flush
    feed_window_c: float = Field(default=_PROCEDURE.feed_window_c, ge=0, le=400,
                                 allow_inf_nan=False)
    blank_max_age_h: float = Field(default=_PROCEDURE.blank_max_age_h, gt=0, le=10_000,
                                   allow_inf_nan=False)


class TwinExecutorSettings(_ProcedureModes):
    """Settings of the twin executor's procedure (the twin's physics go under ``twin:``)."""


class CSTRExecutorSettings(_ProcedureModes):
    """Settings of the CSTR executor, mirroring :class:`~autolab.executors.cstr.CSTRExecutor`.

    Attributes:
        settle_residence_times: Longest settling wait, in cascade residence times.
        flush_residence_times: Solvent flush before each experiment, in residence times.
        trace_frames: Emission frames over the longest settling wait.
        stir_rpm: Stirrer speed, rpm.
        abs_integration_ms: Integration time of the absorbance frames, ms.
        pl_integration_ms: Integration time of the emission frames, ms.
        temperature_tolerance_c: How close the blocks must be to the setpoints, °C.
        poll_period_s: Supervisor poll period, wall s.
    """

    settle_residence_times: float = Field(default=_PROCEDURE.settle_residence_times, gt=0,
                                          le=20, allow_inf_nan=False)
    flush_residence_times: float = Field(default=_PROCEDURE.flush_residence_times, ge=0,
                                         le=20, allow_inf_nan=False)
    trace_frames: int = Field(default=_PROCEDURE.trace_frames, ge=2, le=1000, strict=True)
    stir_rpm: float = Field(default=_PROCEDURE.stir_rpm, ge=0, le=3000, allow_inf_nan=False)
    abs_integration_ms: float = Field(default=_PROCEDURE.abs_integration_ms, gt=0, le=60_000,
                                      allow_inf_nan=False)
    pl_integration_ms: float = Field(default=_PROCEDURE.pl_integration_ms, gt=0, le=60_000,
                                     allow_inf_nan=False)
    temperature_tolerance_c: float = Field(default=_PROCEDURE.temperature_tolerance_c, gt=0,
                                           le=50, allow_inf_nan=False)
    poll_period_s: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False)


#: Executor kind -> its settings model.
EXECUTOR_SETTINGS: dict[str, type[BaseModel]] = {
    "twin": TwinExecutorSettings,
    "cstr": CSTRExecutorSettings,
}


def _typed_settings(data: Any, registry: Mapping[str, type[BaseModel]], default_kind: str,
                    what: str) -> Any:
    """Check ``data["settings"]`` against the model of ``data["kind"]`` (a before-validator).

    Returns the data with the settings as validated (so ``n_init: 6.0`` is stored as 6).

    Raises:
        ValueError: Unknown setting (with a "did you mean" hint) or a bad value, for pydantic
            to report under the section's path.
    """
    if not isinstance(data, dict) or not isinstance(data.get("settings", {}), dict):
        return data  # pydantic reports the wrong type itself
    kind = data.get("kind", default_kind)
    model = registry.get(kind) if isinstance(kind, str) else None
    if model is None:
        return data  # pydantic reports the unknown kind itself
    problems = settings_problems(model, data.get("settings", {}), f"{what} {kind!r}")
    if problems:
        raise ValueError("; ".join(problems))
    settings = model.model_validate(data.get("settings", {})).model_dump(exclude_unset=True)
    return {**data, "settings": settings} if "settings" in data else data


class ExecutorConfig(BaseModel):
    """Which executor runs the experiments.

    Attributes:
        kind: ``"twin"``: the digital twin on a virtual clock; ``"cstr"``: the CSTR cascade over
            serial (real devices, or the virtual lab of ``autolab lab up``).
        twin: Settings of the twin (reactor geometry, noise, failures); ``kind: twin`` only.
        devices: Devices file (ports, addresses, limits, fluidic graph); ``kind: cstr`` only.
            A relative path is taken relative to the working folder.
        settings: Keyword settings of the executor, typed per kind (:data:`EXECUTOR_SETTINGS`;
            e.g. ``settle_residence_times`` for ``cstr``).
    """

    model_config = _FROZEN

    kind: Literal["twin", "cstr"] = "twin"
    twin: TwinConfig = Field(default_factory=TwinConfig)
    devices: Path | None = None
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _check_settings(cls, data: Any) -> Any:
        return _typed_settings(data, EXECUTOR_SETTINGS, "twin", "executor")

    @model_validator(mode="after")
    def _check(self) -> ExecutorConfig:
        if self.kind == "cstr" and self.devices is None:
            raise ValueError("kind 'cstr' needs 'devices: <devices file>' (see 'autolab lab up')")
        if self.kind == "twin" and self.devices is not None:
            raise ValueError("'devices' is for kind 'cstr'; the twin takes 'twin'")
        return self


#: Most reactors one campaign may drive at once.
MAX_REACTORS = 16
#: Name of the one reactor of a campaign without a ``reactors:`` list.
DEFAULT_REACTOR = "reactor"


class ReactorConfig(ExecutorConfig):
    """One of the reactors a campaign drives at once (an entry of ``reactors:``).

    An entry is an executor section with a name: its own ``kind``, ``twin``, ``devices`` and
    ``settings``. An entry without ``kind`` takes the campaign's ``executor:`` section and
    overrides only what it names, so ``reactors: [{name: r1}, {name: r2}]`` is two copies of
    ``executor:``.

    Attributes:
        name: Unique name (shown per experiment in the journal, MLflow and the report).
        seed: Seed of this reactor's noise and failure draws (simulated rigs); default: the
            campaign seed for the first reactor, a distinct one derived from it for the others.
    """

    name: str
    seed: int | None = Field(default=None, ge=0, lt=SEED_LIMIT, strict=True)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return _check_slug(v, "r1")


@dataclass(frozen=True)
class ReactorSpec:
    """A reactor as the campaign builds it: its name, executor section and seed."""

    name: str
    executor: ExecutorConfig
    seed: int


def reactor_seed(campaign_seed: int, position: int) -> int:
    """The default seed of the reactor at ``position`` (0-based): distinct, reproducible."""
    return (campaign_seed + 7919 * position) % SEED_LIMIT


class OptimizerConfig(BaseModel):
    """Which strategy proposes conditions.

    Attributes:
        kind: ``"botorch"`` (Bayesian optimization), or the baselines ``"random"`` and ``"sobol"``.
        batch_size: Experiments proposed per ask (the twin runs them one after another).
        settings: Strategy settings passed to the optimizer (e.g. ``n_init``), typed per kind
            (:data:`autolab.optimizer.settings.OPTIMIZER_SETTINGS`).
    """

    model_config = _FROZEN

    kind: Literal["botorch", "random", "sobol"] = "botorch"
    batch_size: int = Field(default=1, ge=1, le=16, strict=True)
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _check_settings(cls, data: Any) -> Any:
        return _typed_settings(data, OPTIMIZER_SETTINGS, "botorch", "optimizer")

    def typed_settings(self) -> BaseModel:
        """The settings as the model of this kind (what the optimizer is built with)."""
        return parse_optimizer_settings(self.kind, self.settings)


class BudgetConfig(BaseModel):
    """When the campaign must stop, whatever it found.

    Attributes:
        max_experiments: Experiments to run at most (failed ones count).
        max_lab_hours: Lab time to spend at most, h (virtual for the twin).
        max_rig_events_in_a_row: Rig events (device faults found before an experiment fed
            anything; not experiments, so not in ``max_experiments``) one reactor may have in a
            row before the campaign stops as a device failure: a rig that keeps faulting must
            never loop. 1 stops at the first.
    """

    model_config = _FROZEN

    max_experiments: int = Field(default=30, ge=1, le=10_000, strict=True)
    max_lab_hours: float | None = Field(default=None, gt=0, le=100_000, allow_inf_nan=False)
    max_rig_events_in_a_row: int = Field(default=3, ge=1, le=100, strict=True)


class StopConfig(BaseModel):
    """Early stop rules.

    Attributes:
        target_reached: Stop when an experiment is within every target's tolerance and meets the
            quality thresholds below.
        qy_min: Quality threshold: QY at least this (fraction) for "target reached".
        fwhm_max_nm: Quality threshold: FWHM at most this for "target reached", nm.
        no_improvement_after: Stop after this many experiments without a better score.
        forecast_spec_met: Stop when the model's probability that the best in-band experiment
            truly meets the specification reaches this (0-1; BoTorch only, see
            ``autolab.optimizer.forecast``). Without ``qy_min`` the probability is the
            family-recalibrated one, which tops out near 0.06: a higher setting never fires.
        forecast_improve_below: Stop when the model's probability that one more experiment is
            in band and improves the other terms falls below this (0-1; BoTorch only).
        forecast_reach_below: Stop as "target out of reach" when no experiment has been
            measured in band and, for ``forecast_reach_after`` forecasts in a row after the
            initial design, the model gives no condition of the space more than this
            probability of landing in band (0-1; BoTorch only; ``p_in_band`` of
            ``autolab.optimizer.forecast``). On the reactor family 0.01 never stopped a
            campaign whose band was reachable (docs/benchmarks.md "Out of reach").
        forecast_reach_after: How many forecasts in a row ``forecast_reach_below`` needs.
    """

    model_config = _FROZEN

    target_reached: bool = True
    qy_min: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    fwhm_max_nm: float | None = Field(default=None, gt=0, le=1000, allow_inf_nan=False)
    no_improvement_after: int | None = Field(default=None, ge=1, le=10_000, strict=True)
    forecast_spec_met: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    forecast_improve_below: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)
    forecast_reach_below: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)
    forecast_reach_after: int = Field(default=3, ge=1, le=100, strict=True)


class TrackingConfig(BaseModel):
    """Where the campaign is recorded.

    Attributes:
        enabled: Log to MLflow at all (the journal is always written).
        uri: MLflow tracking URI; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
        experiment: MLflow experiment name.
    """

    model_config = _FROZEN

    enabled: bool = True
    uri: str | None = None
    experiment: str = "autolab"


class ReviewConfig(BaseModel):
    """A chemist in the loop: every proposal waits for a person's decision (``autolab.steer``).

    Attributes:
        mode: ``"off"``: proposals run as the optimizer makes them; ``"terminal"``: each one is
            shown with the model's prediction and approved, edited or rejected at the terminal;
            ``"file"``: each one is written to ``RUN/proposals/exp-NNN.yaml`` and the campaign
            waits (exit 3) until a decision is written there (``autolab decide``).
    """

    model_config = _FROZEN

    mode: Literal["off", "terminal", "file"] = "off"


class AnalyzerConfig(BaseModel):
    """The analyzer's settings a lab calibrates for its own optics (``analyzer:``).

    Attributes:
        qy_calibration_rel: Relative one-sigma calibration error of a relative-QY reading,
            added in quadrature to the statistical QY sd
            (:attr:`autolab.analysis.settings.AnalyzerSettings.qy_calibration_rel`, whose
            default this is). It is a property of the lab's optics and reference dye, not of
            the analyzer, so a lab sets it from its own repeat readings of one product; without
            this block the analyzer's literature default was the only value a campaign could
            use. It reaches every reading of the campaign, steady and streamed.
    """

    model_config = _FROZEN

    qy_calibration_rel: float = Field(default=AnalyzerSettings.qy_calibration_rel, ge=0.0,
                                      lt=1.0, allow_inf_nan=False)

    def settings(self) -> AnalyzerSettings:
        """The analyzer's settings: its defaults with this block's values."""
        return AnalyzerSettings(qy_calibration_rel=self.qy_calibration_rel)


class CampaignConfig(BaseModel):
    """A whole campaign: what to search, what to aim for, how, on what, and when to stop."""

    model_config = _FROZEN

    name: str
    description: str = ""
    seed: int = Field(default=0, ge=0, lt=SEED_LIMIT, strict=True)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    objective: ObjectiveSpec
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    #: Earlier campaigns on the same reactor (their folders) whose experiments the optimizer
    #: reuses as what they are: the same reactor, other targets; never this campaign's own.
    reuse: tuple[Path, ...] = ()
    #: Reactors driven at once (empty: the one reactor of ``executor:``); see
    #: :class:`ReactorConfig`.
    reactors: tuple[ReactorConfig, ...] = Field(default=(), max_length=MAX_REACTORS)
    #: ``steady`` (one reading per experiment at steady state) or ``dynamic`` (ramps read all
    #: the way through; :mod:`autolab.dynamic_step`, the ``dynamic:`` block).
    mode: Literal["steady", "dynamic"] = "steady"
    dynamic: DynamicConfig = Field(default_factory=DynamicConfig)
    analyzer: AnalyzerConfig = Field(default_factory=AnalyzerConfig)

    @model_validator(mode="before")
    @classmethod
    def _reactor_defaults(cls, data: Any) -> Any:
        """An entry of ``reactors:`` without ``kind`` is ``executor:`` with its own overrides."""
        if not isinstance(data, dict) or not isinstance(data.get("reactors"), list | tuple):
            return data
        base = data.get("executor") or {}
        if not isinstance(base, dict):
            return data  # pydantic reports the wrong type of executor itself
        entries = [{**base, **r} if isinstance(r, dict) and "kind" not in r else r
                   for r in data["reactors"]]
        return {**data, "reactors": entries}

    @model_validator(mode="after")
    def _check_reactors(self) -> CampaignConfig:
        names = [r.name for r in self.reactors]
        dupes = repeated(names)
        if dupes:
            raise ValueError(f"reactors: names must be unique; repeated: {dupes}")
        devices = [str(r.devices) for r in self.reactors if r.devices is not None]
        shared = repeated(devices)
        if shared:
            raise ValueError(f"reactors: devices file(s) {shared} named by more than one reactor; "
                             "each reactor needs its own device set")
        seeds = [r.seed for r in self.reactors if r.seed is not None]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"reactors: seeds must differ (simulated rigs with the same seed "
                             f"give the same noise); got {seeds}")
        return self

    def reactor_specs(self) -> tuple[ReactorSpec, ...]:
        """The reactors this campaign drives, in order (one, from ``executor:``, by default)."""
        if not self.reactors:
            return (ReactorSpec(DEFAULT_REACTOR, self.executor, self.seed),)
        return tuple(
            ReactorSpec(r.name, ExecutorConfig(kind=r.kind, twin=r.twin, devices=r.devices,
                                               settings=dict(r.settings)),
                        reactor_seed(self.seed, i) if r.seed is None else r.seed)
            for i, r in enumerate(self.reactors))

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return _check_slug(v, "target-550nm")

    @model_validator(mode="after")
    def _check_outcomes(self) -> CampaignConfig:
        unknown = sorted(set(self.objective.outcome_names) - set(OUTCOMES))
        if unknown:
            raise ValueError(f"objective uses unknown outcome(s) {unknown}; "
                             f"the analyzer measures {list(OUTCOMES)}")
        for i, term in enumerate(self.objective.terms):
            if isinstance(term, Target):
                _check_target(term, f"objective.terms.{i}")
        return self

    def warnings(self) -> list[str]:
        """What is valid but probably not meant (``validate`` and ``run`` print these)."""
        out = []
        if self.executor.kind == "twin":
            for i, term in enumerate(self.objective.terms):
                r = OUTCOME_RANGES.get(term.outcome)
                if isinstance(term, Target) and r is not None and not (
                        r.twin_reach[0] - term.tolerance <= term.value
                        <= r.twin_reach[1] + term.tolerance):
                    out.append(f"objective.terms.{i}: target {term.outcome} = {term.value:g} is "
                               f"outside what the digital twin reaches over its box "
                               f"({r.twin_reach[0]:g}-{r.twin_reach[1]:g} {r.unit}); "
                               + ("the campaign will run its whole budget without reaching it"
                                  if self.stop.forecast_reach_below is None else
                                  "stop.forecast_reach_below should end it as out of reach"))
        fraction = feasible_fraction(self.space.build())
        if fraction < WARN_FEASIBLE_FRACTION:
            out.append(f"space.constraints leave only {100 * fraction:.2g} % of the search box")
        return out

    def fingerprint(self) -> str:
        """A short hash of the validated config, to tell a resumed campaign it is the same one."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _check_target(term: Target, where: str) -> None:
    r = OUTCOME_RANGES.get(term.outcome)
    if r is None:
        return
    if not r.lower <= term.value <= r.upper:
        raise ValueError(f"{where}: target {term.outcome} = {term.value:g} is outside the "
                         f"physical range [{r.lower:g}, {r.upper:g}] {r.unit}".rstrip())
    if term.tolerance < r.min_tolerance:
        raise ValueError(f"{where}: tolerance {term.tolerance:g} is narrower than any measurement "
                         f"can resolve; use at least {r.min_tolerance:g} {r.unit}".rstrip())


_SHORT = reprlib.Repr()  # values in messages: never a huge or deeply nested value printed whole
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxdict = 4
_SHORT.maxlevel = 2


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, tuples, lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _known_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys allowed where ``loc`` points (for "did you mean" hints); [] if unknown."""
    candidates = [model]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields_ = [m.model_fields[part] for m in candidates if part in m.model_fields]
        if fields_:
            candidates = _models_in(fields_[0].annotation)
        else:  # a tagged-union member, named by its ``kind``
            candidates = [m for m in candidates
                          if getattr(m.model_fields.get("kind"), "default", None) == part]
    return sorted({k for m in candidates for k in m.model_fields})


_PATH_PREFIX = re.compile(r"^([A-Za-z_][\w.]*): (.*)$", re.DOTALL)


def _split_path(loc: tuple[str | int, ...], msg: str) -> tuple[tuple[str | int, ...], str]:
    """Use the field path a model-level check put at the start of its message as the location."""
    m = _PATH_PREFIX.match(msg)
    if m is None:
        return loc, msg
    parts = tuple(int(p) if p.isdigit() else p for p in m.group(1).split("."))
    if parts[0] == "settings":  # relative to the section that checked its settings
        return (*loc, *parts), m.group(2)
    if not m.group(1).startswith(".".join(str(p) for p in loc)):
        return loc, msg
    return parts, m.group(2)


def format_validation_error(err: ValidationError, source: str,
                            lines: Mapping[KeyPath, int] | None = None,
                            model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``source: line N: field.path = value: what is wrong``.

    Values are shortened (a huge or deeply nested value is never printed whole); an unknown key
    gets a "did you mean" hint when ``model`` is given.
    """
    out = []
    for e in err.errors():
        loc, msg = _split_path(tuple(e["loc"]), e["msg"].removeprefix("Value error, "))
        path = ".".join(str(p) for p in loc) or "(top level)"
        value = e.get("input")
        shown = "" if isinstance(value, dict) or loc != tuple(e["loc"]) else (
            f" = {_SHORT.repr(value)}")
        if e["type"] == "extra_forbidden":
            hint = did_you_mean(str(loc[-1]), _known_keys(model, loc)) if model else ""
            msg = f"unknown key{hint or ' (not part of the campaign schema; check the spelling)'}"
        line = _line_of(lines, loc)
        where = f" line {line}:" if line else ""
        out.append(f"{source}:{where} {path}{shown}: {msg}")
    return "\n".join(out)


def _line_of(lines: Mapping[KeyPath, int] | None, loc: tuple[str | int, ...]) -> int | None:
    if not lines:
        return None
    for n in range(len(loc), 0, -1):
        line = lines.get(loc[:n])
        if line is not None:
            return line
    return None


def parse_campaign(data: Any, source: str = "<campaign>",
                   lines: Mapping[KeyPath, int] | None = None) -> CampaignConfig:
    """Validate an already-parsed campaign mapping.

    Args:
        data: The parsed file.
        source: Where it came from, for messages.
        lines: Key path -> line in the file (from :func:`~autolab.yamlfile.read_yaml_document`),
            so each error names its line.

    Raises:
        ConfigError: With one line per invalid field.
    """
    if data is None:
        raise ConfigError(f"{source}: the file is empty; expected campaign settings such as "
                          "'name:' and 'objective:' (see campaigns/)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of campaign settings at the top level, "
                          f"got {type(data).__name__}")
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, lines, CampaignConfig)) from err
    except ConfigError as err:  # raised by lower layers' validators (space, constraints)
        raise ConfigError(f"{source}: {err}") from err


def load_campaign(path: str | Path, overrides: dict[str, Any] | None = None) -> CampaignConfig:
    """Read and validate a campaign YAML file.

    Args:
        path: The YAML file.
        overrides: Dotted-path overrides applied before validation, e.g.
            ``{"budget.max_experiments": 10, "seed": 3}`` (what the CLI flags set).

    Raises:
        ConfigError: Unreadable file, YAML syntax error (with line), or invalid fields.
    """
    p = Path(path)
    doc = read_yaml_document(p, "campaign file")
    data = doc.data
    for dotted, value in (overrides or {}).items():
        _override(data, dotted, value, str(p))
    return parse_campaign(data, str(p), doc.lines)


def _override(data: Any, dotted: str, value: Any, source: str) -> None:
    """Set ``data[a][b] = value`` for ``dotted = "a.b"`` (a command-line flag over the file).

    Raises:
        ConfigError: A section on the way is not a mapping (``budget: 7`` with ``--budget 3``).
    """
    if not isinstance(data, dict):
        return  # parse_campaign reports the top level
    node: dict[str, Any] = data
    *parents, leaf = dotted.split(".")
    for i, key in enumerate(parents):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(parents[:i + 1])
            raise ConfigError(f"{source}: {where} = {_SHORT.repr(child)}: expected a mapping "
                              f"(e.g. '{where}: {{{leaf}: ...}}'), so it cannot take the "
                              f"command-line override of {dotted}")
        node = child
    node[leaf] = value
