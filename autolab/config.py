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
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autolab.exceptions import ConfigError
from autolab.objective import ObjectiveSpec
from autolab.records import OUTCOMES, Conditions
from autolab.space import (
    QD_DEFAULT_NAMES,
    QD_PARAMETERS,
    LinearConstraint,
    ParameterSpace,
    qd_space,
)
from autolab.twin import TwinConfig
from autolab.yamlfile import read_yaml

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
        known = {f.name for f in fields(Conditions)}
        for name in (*self.parameters, *self.fixed):
            if name not in known:
                raise ValueError(f"unknown condition {name!r}; known: {sorted(known)}")
        both = set(self.parameters) & set(self.fixed)
        if both:
            raise ValueError(f"{sorted(both)} cannot be both searched and fixed")
        required = {f.name for f in fields(Conditions) if f.name != "p_to_in"}
        missing = required - set(self.parameters) - set(self.fixed)
        if missing:
            raise ValueError(f"conditions {sorted(missing)} are neither searched nor fixed")
        for name, value in self.fixed.items():
            p = QD_PARAMETERS[name]
            if not p.lower <= value <= p.upper:
                raise ValueError(f"fixed {name} = {value:g} is outside what the reactor allows, "
                                 f"{p.allowed}")
        self.build()  # surfaces bound and constraint errors at load time
        return self

    def build(self) -> ParameterSpace:
        """The searched space."""
        constraints = (None if self.constraints is None
                       else [LinearConstraint.parse(c) for c in self.constraints])
        return qd_space(self.parameters, overrides=self.bounds, constraints=constraints)


class ExecutorConfig(BaseModel):
    """Which executor runs the experiments.

    Attributes:
        kind: ``"twin"``: the digital twin on a virtual clock; ``"cstr"``: the CSTR cascade over
            serial (real devices, or the virtual lab of ``autolab lab up``).
        twin: Settings of the twin (reactor geometry, noise, failures); ``kind: twin`` only.
        devices: Devices file (ports, addresses, limits, fluidic graph); ``kind: cstr`` only.
            A relative path is taken relative to the working folder.
        settings: Keyword settings of the hardware executor (e.g. ``settle_residence_times``).
    """

    model_config = _FROZEN

    kind: Literal["twin", "cstr"] = "twin"
    twin: TwinConfig = Field(default_factory=TwinConfig)
    devices: Path | None = None
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ExecutorConfig:
        if self.kind == "cstr" and self.devices is None:
            raise ValueError("kind 'cstr' needs 'devices: <devices file>' (see 'autolab lab up')")
        if self.kind == "twin" and (self.devices is not None or self.settings):
            raise ValueError("'devices' and 'settings' are for kind 'cstr'; the twin takes 'twin'")
        return self


class OptimizerConfig(BaseModel):
    """Which strategy proposes conditions.

    Attributes:
        kind: ``"botorch"`` (Bayesian optimization), or the baselines ``"random"`` and ``"sobol"``.
        batch_size: Experiments proposed per ask (the twin runs them one after another).
        settings: Strategy settings passed to the optimizer (e.g. ``n_init``), validated there.
    """

    model_config = _FROZEN

    kind: Literal["botorch", "random", "sobol"] = "botorch"
    batch_size: int = Field(default=1, ge=1, le=16)
    settings: dict[str, Any] = Field(default_factory=dict)


class BudgetConfig(BaseModel):
    """When the campaign must stop, whatever it found.

    Attributes:
        max_experiments: Experiments to run at most (failed ones count).
        max_lab_hours: Lab time to spend at most, h (virtual for the twin).
    """

    model_config = _FROZEN

    max_experiments: int = Field(default=30, ge=1, le=10_000)
    max_lab_hours: float | None = Field(default=None, gt=0)


class StopConfig(BaseModel):
    """Early stop rules.

    Attributes:
        target_reached: Stop when an experiment is within every target's tolerance and meets the
            quality thresholds below.
        qy_min: Quality threshold: QY at least this (fraction) for "target reached".
        fwhm_max_nm: Quality threshold: FWHM at most this for "target reached", nm.
        no_improvement_after: Stop after this many experiments without a better score.
    """

    model_config = _FROZEN

    target_reached: bool = True
    qy_min: float | None = Field(default=None, ge=0, le=1)
    fwhm_max_nm: float | None = Field(default=None, gt=0)
    no_improvement_after: int | None = Field(default=None, ge=1)


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


class CampaignConfig(BaseModel):
    """A whole campaign: what to search, what to aim for, how, on what, and when to stop."""

    model_config = _FROZEN

    name: str
    description: str = ""
    seed: int = Field(default=0, ge=0)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    objective: ObjectiveSpec
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError(f"{v!r} must be letters, digits, '-', '_' or '.', like 'target-550nm'")
        return v

    @model_validator(mode="after")
    def _check_outcomes(self) -> CampaignConfig:
        unknown = sorted(set(self.objective.outcome_names) - set(OUTCOMES))
        if unknown:
            raise ValueError(f"objective uses unknown outcome(s) {unknown}; "
                             f"the analyzer measures {list(OUTCOMES)}")
        return self

    def fingerprint(self) -> str:
        """A short hash of the validated config, to tell a resumed campaign it is the same one."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path = value: what is wrong``."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the campaign schema; check the spelling)"
        lines.append(f"{source}: {path}{shown}: {msg}")
    return "\n".join(lines)


def parse_campaign(data: Any, source: str = "<campaign>") -> CampaignConfig:
    """Validate an already-parsed campaign mapping.

    Raises:
        ConfigError: With one line per invalid field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of campaign settings at the top level, "
                          f"got {type(data).__name__}")
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from err
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
    data = read_yaml(p, "campaign file")
    for dotted, value in (overrides or {}).items():
        node = data if isinstance(data, dict) else {}
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_campaign(data, str(p))
