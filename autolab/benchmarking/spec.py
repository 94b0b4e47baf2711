"""Benchmark spec files: strategies × seeds × targets, validated and frozen.

A spec is YAML (see ``benchmarks/scale.yaml``). Like campaign files, every key is validated with
pydantic and unknown keys are rejected (``extra="forbid"``), so a typo such as ``budjet`` is an
error naming the field, not a silently ignored line. Strategy settings are checked at load time by
building each optimizer once, so a bad ``n_init`` fails before an hour of benchmarking, not in it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autolab.benchmarking.custom import (
    CustomResponse,
    check_response,
    custom_member,
    default_label,
    is_single,
    load_response,
)
from autolab.benchmarking.family import (
    HELDOUT_SEED_BASE,
    MEMBER_KINDS,
    DrawnKind,
    Member,
    Split,
    condition_matrix,
    draw_member,
    nominal_member,
)
from autolab.benchmarking.problem import Problem, feasible_rows
from autolab.config import SpaceConfig, TrackingConfig, format_validation_error
from autolab.exceptions import AutolabError, ConfigError
from autolab.optimizer import make_optimizer
from autolab.support import repeated
from autolab.twin import TwinConfig
from autolab.yamlfile import read_yaml

_FROZEN = ConfigDict(frozen=True, extra="forbid")

#: Strategies a benchmark can compare: autolab's optimizers and Optuna's GP sampler
#: (``optuna-gp`` needs the ``benchmark`` extra).
StrategyKind = Literal["botorch", "random", "sobol", "optuna-gp"]


class StrategySpec(BaseModel):
    """One strategy under test.

    Attributes:
        kind: Which optimizer.
        label: Name in tables and plots (default: ``kind``); must be unique in a spec.
        settings: Optimizer settings (e.g. ``n_init``), validated by the optimizer; ignored keys
            are errors there too. ``optuna-gp`` takes none.
    """

    model_config = _FROZEN

    kind: StrategyKind
    label: str = Field(default="", pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]*)?$")
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"kind": data} if isinstance(data, str) else data

    @property
    def name(self) -> str:
        """The label, or the kind when no label is given."""
        return self.label or self.kind


class TargetSpec(BaseModel):
    """One PL target.

    Attributes:
        pl_peak_nm: Target emission peak, nm.
        tolerance_nm: Half-width of the band counted as on target, nm.
    """

    model_config = _FROZEN

    pl_peak_nm: float = Field(ge=400, le=700)
    tolerance_nm: float = Field(default=2.0, gt=0, le=50)


class SuccessSpec(BaseModel):
    """When a run counts as successful.

    Attributes:
        qy_fraction: The noise-free product must be in band with a QY of at least this fraction
            of the best QY reachable in that band (from the dense search).
    """

    model_config = _FROZEN

    qy_fraction: float = Field(default=0.9, gt=0, le=1)


class DenseSearchSpec(BaseModel):
    """How hard to look for the best reachable QY (the yardstick of success).

    Attributes:
        sobol_log2: The grid of the noiseless twin has ``2**sobol_log2`` points (17: ~10 s).
        polish: Best grid points per target polished by Nelder-Mead.
    """

    model_config = _FROZEN

    sobol_log2: int = Field(default=17, ge=6, le=22)
    polish: int = Field(default=12, ge=0, le=200)


#: A member-name prefix: a safe file-name part, never the cell id's separator ``--``.
_LABEL = r"^[A-Za-z0-9]+(?:[_.-][A-Za-z0-9]+)*$"


class CustomMemberSpec(BaseModel):
    """Reactors of your own: a response model named by import path (:mod:`.custom`).

    Attributes:
        response: ``package.module:name``: an object with ``product(c)`` (one reactor), or a
            callable that takes the member seed and returns one.
        seeds: Member seeds handed to the callable (one seed for a single object).
        label: Prefix of the members' names (default: the target's last name).
    """

    model_config = _FROZEN

    response: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    seeds: tuple[int, ...] = Field(default=(0,), min_length=1)
    label: str | None = Field(default=None, pattern=_LABEL)

    @model_validator(mode="after")
    def _check(self) -> CustomMemberSpec:
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError("seeds must be distinct non-negative integers")
        if is_single(self.response) and len(self.seeds) > 1:
            raise ValueError(f"{self.response} is one reactor (an object with product), so "
                             f"one seed, got {list(self.seeds)}; name a callable that takes "
                             "the seed for a family of your own")
        for seed in self.seeds:
            load_response(self.response, seed)
        return self


class FamilySpec(BaseModel):
    """Which reactors of the family to run on (see :mod:`autolab.benchmarking.family`).

    Attributes:
        kinds: Member kinds drawn from our priors: ``twin`` (constants drawn around the
            calibrated twin), ``rff`` and ``additive`` (responses not built from the twin).
            Default: all three, or none when ``custom`` is given.
        per_kind: Members per kind.
        split: ``design`` (seeds 0, 1, ...: tune on these) or ``heldout`` (seeds from
            10000: report on these).
        seeds: Explicit member seeds instead of ``per_kind`` (each kind gets the same seeds);
            they must all lie in the chosen split.
        nominal: Also run on the calibrated twin itself (``twin-nominal``).
        custom: Reactors of your own (response models by import path).
    """

    model_config = _FROZEN

    kinds: tuple[DrawnKind, ...] | None = None
    per_kind: int = Field(default=3, ge=1, le=1000)
    split: Split = "design"
    seeds: tuple[int, ...] | None = None
    nominal: bool = False
    custom: tuple[CustomMemberSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> FamilySpec:
        kinds = self.drawn_kinds()
        if len(set(kinds)) != len(kinds):
            raise ValueError("family.kinds must be distinct")
        if not kinds and not self.custom and not self.nominal:
            raise ValueError("family: no reactor; expected at least one of kinds, custom, "
                             "nominal: true")
        labels = [c.label or default_label(c.response) for c in self.custom]
        if len(set(labels)) != len(labels):
            raise ValueError("family.custom: each entry needs its own label (or response)")
        taken = sorted(set(labels) & {*MEMBER_KINDS, "custom"})
        if taken:
            raise ValueError(f"family.custom: label {taken[0]!r} is a built-in kind's name; "
                             "expected another label")
        if self.seeds is not None:
            if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
                raise ValueError("family.seeds must be distinct non-negative integers")
            wrong = [s for s in self.seeds if (s >= HELDOUT_SEED_BASE) != (self.split == "heldout")]
            if wrong:
                raise ValueError(f"family.seeds {wrong} are not in the {self.split} set "
                                 f"(held-out seeds are >= {HELDOUT_SEED_BASE})")
        return self

    def drawn_kinds(self) -> tuple[DrawnKind, ...]:
        """The drawn kinds: as given, else all (none when custom reactors are given)."""
        if self.kinds is not None:
            return self.kinds
        return () if self.custom else MEMBER_KINDS

    def member_seeds(self) -> tuple[int, ...]:
        """The seeds of each kind's members."""
        if self.seeds is not None:
            return self.seeds
        first = HELDOUT_SEED_BASE if self.split == "heldout" else 0
        return tuple(range(first, first + self.per_kind))


class ProcedureSpec(BaseModel):
    """How every simulated reactor of the benchmark runs an experiment (the one procedure).

    Attributes:
        settling: ``adaptive`` (stop once the inline spectra are steady, after the RTD floor)
            or ``fixed`` (always ``twin.settle_residence_times`` residence times).
        flush: ``auto`` (skip the solvent flush when the new feed washes the old product out)
            or ``always``.
    """

    model_config = _FROZEN

    settling: Literal["adaptive", "fixed"] = "adaptive"
    flush: Literal["auto", "always"] = "auto"


class BenchmarkTracking(TrackingConfig):
    """Optional MLflow logging: a parent run per benchmark, a nested run per strategy×seed×target.

    The campaign's tracking settings, with benchmark defaults: off unless asked for, and an
    experiment of their own so benchmark runs do not crowd the campaigns.
    """

    enabled: bool = False
    experiment: str = "autolab-benchmarks"


class BenchmarkSpec(BaseModel):
    """A whole benchmark: which strategies, on which reactors, seeds and targets, with what budget.

    Without ``family`` the benchmark runs on the calibrated twin (``twin``) alone.
    """

    model_config = _FROZEN

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    strategies: tuple[StrategySpec, ...] = Field(min_length=1)
    seeds: int | tuple[int, ...] = 5
    targets: tuple[TargetSpec, ...] = Field(min_length=1)
    budget: int = Field(default=30, ge=1, le=1000)
    success: SuccessSpec = Field(default_factory=SuccessSpec)
    dense_search: DenseSearchSpec = Field(default_factory=DenseSearchSpec)
    space: SpaceConfig = Field(default_factory=lambda: SpaceConfig(fixed={"p_to_in": 3.6}))
    twin: TwinConfig = Field(default_factory=TwinConfig)
    family: FamilySpec | None = None
    #: Reactors each cell's campaign drives at once (K simulated rigs of the member, distinct
    #: seeds); lab hours are then wall-clock lab hours.
    reactors: int = Field(default=1, ge=1, le=16, strict=True)
    procedure: ProcedureSpec = Field(default_factory=ProcedureSpec)
    #: Whether each cell's campaign computes the stopping forecast after every experiment.
    #: Forecast calibration needs it (the default); an optimizer-choice run does not (the
    #: forecast never changes a proposal) and saves its CPU with ``false``.
    forecast: bool = Field(default=True, strict=True)
    tracking: BenchmarkTracking = Field(default_factory=BenchmarkTracking)

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, v: int | tuple[int, ...]) -> int | tuple[int, ...]:
        if isinstance(v, int):
            if not 1 <= v <= 10_000:
                raise ValueError(f"a seed count must be in [1, 10000], got {v}")
        elif not v or len(set(v)) != len(v) or min(v) < 0:
            raise ValueError("a seed list must be non-empty, distinct, non-negative integers")
        return v

    @model_validator(mode="after")
    def _check(self) -> BenchmarkSpec:
        names = [s.name for s in self.strategies]
        dupes = repeated(names)
        if dupes:
            raise ValueError(f"strategy labels must be unique; repeated: {dupes} "
                             "(give each variant a 'label')")
        targets = [(t.pl_peak_nm, t.tolerance_nm) for t in self.targets]
        if len(set(targets)) != len(targets):
            raise ValueError("targets must be distinct")
        space = self.space.build()
        objective = Problem(space, self.space.fixed, self.targets[0].pl_peak_nm,
                            self.targets[0].tolerance_nm, nominal_member(self.twin)).objective()
        for s in self.strategies:
            if s.kind == "optuna-gp":
                if s.settings:
                    raise ValueError(f"strategy {s.name!r}: optuna-gp takes no settings")
                continue
            try:
                make_optimizer(s.kind, space, objective, seed=0, **s.settings)
            except (AutolabError, TypeError, ValueError) as err:
                raise ValueError(f"strategy {s.name!r}: {err}") from err
        if self.family is not None and self.family.custom:
            self._probe_custom()
        return self

    def _probe_custom(self) -> None:
        """Ask every custom reactor for the box's corners and centre (shapes, ranges)."""
        space = self.space.build()
        unit = np.vstack([np.indices((2,) * space.dim).reshape(space.dim, -1).T,
                          np.full((1, space.dim), 0.5)])
        x = np.array([[pt[n] for n in space.names] for pt in space.from_unit(unit)])
        probe = condition_matrix(x[feasible_rows(space, x)], space.names, self.space.fixed)
        for member in self.members():
            if isinstance(member.response, CustomResponse):
                check_response(member.response, probe)

    @property
    def seed_list(self) -> tuple[int, ...]:
        """The seeds: ``0..n-1`` for a count, else the list as given."""
        return tuple(range(self.seeds)) if isinstance(self.seeds, int) else self.seeds

    def members(self) -> list[Member]:
        """The reactors: the family's members, or the calibrated twin alone.

        ``twin`` is the base of every member's reactor settings (geometry, detector).
        """
        if self.family is None:
            return [nominal_member(self.twin)]
        fam = self.family
        out = [nominal_member(self.twin)] if fam.nominal else []
        seeds = fam.member_seeds()
        out += [draw_member(k, s, self.twin) for k in fam.drawn_kinds() for s in seeds]
        return out + [custom_member(c.response, s, self.twin, c.label or "")
                      for c in fam.custom for s in c.seeds]


def parse_spec(data: Any, source: str = "<benchmark>") -> BenchmarkSpec:
    """Validate an already-parsed spec mapping.

    Raises:
        ConfigError: One line per invalid field, naming ``source``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of benchmark settings at the top level, "
                          f"got {type(data).__name__}")
    try:
        return BenchmarkSpec.model_validate(data)
    except ValidationError as err:
        text = format_validation_error(err, source)
        raise ConfigError(text.replace("the campaign schema", "the benchmark spec schema")) from err
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from err


def load_spec(path: str | Path) -> BenchmarkSpec:
    """Read and validate a benchmark spec YAML file.

    A spec with ``family.custom`` puts its own folder on the import path first.

    Raises:
        ConfigError: Unreadable file, YAML syntax error (with line), or invalid fields.
    """
    data = read_yaml(path, "benchmark spec")
    if isinstance(data, dict) and isinstance(data.get("family"), dict) \
            and data["family"].get("custom"):
        _import_path_add(Path(path).resolve().parent)
    return parse_spec(data, str(path))


def _import_path_add(folder: Path) -> None:
    """Put a spec's folder on the import path, so a reactor module beside it is found.

    Spawned pool workers inherit the parent's ``sys.path``; Ray workers do not (install the
    module there, or give Ray a ``runtime_env``).
    """
    if str(folder) not in sys.path:
        sys.path.append(str(folder))  # last: a file there never shadows an installed module
