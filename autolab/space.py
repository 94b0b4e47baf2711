"""Parameter spaces: named parameters with units, bounds, scale, and linear constraints.

A :class:`ParameterSpace` is the one place that knows what a valid set of conditions is. The
optimizer works in the unit cube (log-scale parameters in log space) and asks the space to map
points back to physical units; the campaign asks it to check every proposal before an executor
sees it, so an out-of-range temperature never reaches a heater.

The space is generic (any names, any units); :func:`qd_space` builds the InP/ZnS one from the
catalog :data:`QD_PARAMETERS`, whose bounds follow the seed paper (Lignos et al. 2021).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autolab.exceptions import ConditionsError, ConfigError
from autolab.records import MAX_TANKS, tank_temperature_name
from autolab.support import repeated

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _fmt_unit(unit: str) -> str:
    return f" {unit}" if unit else ""


class Parameter(BaseModel):
    """One parameter: continuous, or whole-numbered (``integer``) like an injection tank.

    Attributes:
        name: Identifier with the unit in it where there is one (``t_core_c``, ``tau_core_min``).
        lower: Lower bound, physical unit.
        upper: Upper bound, physical unit.
        unit: Unit symbol for display (``"°C"``, ``"min"``, ``""`` for ratios).
        scale: ``"log"`` for parameters whose effect is multiplicative (molar ratios spanning
            decades); the optimizer then models them in log space.
        description: One line for people reading a campaign file or the MLflow UI.
        integer: Only whole values are meaningful (a tank number, a count). The optimizer still
            works in the continuous unit cube; :meth:`from_unit` rounds to the nearest whole
            value, so every proposal names a real tank.
    """

    model_config = _FROZEN

    name: str
    lower: float
    upper: float
    unit: str = ""
    scale: Literal["linear", "log"] = "linear"
    description: str = ""
    integer: bool = False

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"parameter name {v!r} must be a lower-case identifier like 't_core_c'")
        return v

    @model_validator(mode="after")
    def _check_bounds(self) -> Parameter:
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ValueError(
                f"{self.name}: bounds must be finite, got [{self.lower}, {self.upper}]")
        if not self.lower < self.upper:
            raise ValueError(
                f"{self.name}: lower bound {self.lower:g} must be below upper bound {self.upper:g}"
            )
        if self.scale == "log" and self.lower <= 0:
            raise ValueError(
                f"{self.name}: a log-scale parameter needs lower > 0, got {self.lower}")
        if self.integer:
            if self.scale == "log":
                raise ValueError(f"{self.name}: an integer parameter must be linear-scale")
            if self.lower != int(self.lower) or self.upper != int(self.upper):
                raise ValueError(f"{self.name}: an integer parameter needs whole-number bounds, "
                                 f"got [{self.lower:g}, {self.upper:g}]")
        return self

    @property
    def allowed(self) -> str:
        """The allowed range as text, e.g. ``"[160, 220] °C"``."""
        return f"[{self.lower:g}, {self.upper:g}]{_fmt_unit(self.unit)}"

    def to_unit(self, value: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Map physical values to [0, 1] (in log space for log-scale parameters)."""
        v = np.asarray(value, dtype=np.float64)
        if self.scale == "log":
            lo, hi = math.log(self.lower), math.log(self.upper)
            return (np.log(v) - lo) / (hi - lo)
        return (v - self.lower) / (self.upper - self.lower)

    def from_unit(self, u: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Map [0, 1] back to physical values; inverse of :meth:`to_unit`.

        Integer parameters round to the nearest whole value (ties to even). The mapping stays
        affine before rounding, so linear constraints keep their unit-cube form; the cells of
        ``lower`` and ``upper`` are half as wide as the others (they sit on the cube's faces).
        """
        w = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        if self.scale == "log":
            lo, hi = math.log(self.lower), math.log(self.upper)
            return np.exp(lo + w * (hi - lo))
        v = self.lower + w * (self.upper - self.lower)
        return np.clip(np.round(v), self.lower, self.upper) if self.integer else v


_CONSTRAINT_TERM = re.compile(
    r"([+-]?)\s*(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)?\s*\*?\s*([a-z][a-z0-9_]*)")


class LinearConstraint(BaseModel):
    """``sum(coefficients[name] * value[name]) >= rhs``, in physical units.

    Only linear-scale parameters may appear, so that the constraint stays linear in the
    optimizer's unit cube. Write it in a campaign file as text: ``"t_shell_c - t_core_c >= 40"``.

    Attributes:
        coefficients: Parameter name -> coefficient.
        rhs: Right-hand side.
        text: The constraint as written, for error messages.
    """

    model_config = _FROZEN

    coefficients: dict[str, float]
    rhs: float
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> LinearConstraint:
        """Parse ``"a*x + b*y >= c"`` or ``"... <= c"`` into a constraint.

        Raises:
            ConfigError: The text is not a linear inequality over parameter names.
        """
        for op in (">=", "<="):
            if op in text:
                lhs, _, rhs_text = text.partition(op)
                break
        else:
            raise ConfigError(
                f"constraint {text!r}: expected 'expression >= number' or '<= number'")
        try:
            rhs = float(rhs_text)
        except ValueError as err:
            raise ConfigError(
                f"constraint {text!r}: right-hand side {rhs_text.strip()!r} is not a number"
            ) from err
        coefficients: dict[str, float] = {}
        rest = lhs.strip()
        pos = 0
        while pos < len(rest):
            m = _CONSTRAINT_TERM.match(rest, pos)
            if m is None or m.end() == pos:
                raise ConfigError(
                    f"constraint {text!r}: cannot read {rest[pos:]!r}; "
                    "write terms like '2*t_core_c'"
                )
            sign = -1.0 if m.group(1) == "-" else 1.0
            coef = float(m.group(2)) if m.group(2) else 1.0
            coefficients[m.group(3)] = coefficients.get(m.group(3), 0.0) + sign * coef
            pos = m.end()
            while pos < len(rest) and rest[pos] == " ":
                pos += 1
        if not coefficients:
            raise ConfigError(f"constraint {text!r}: no parameter names on the left-hand side")
        if op == "<=":
            coefficients = {k: -v for k, v in coefficients.items()}
            rhs = -rhs
        return cls(coefficients=coefficients, rhs=rhs, text=text.strip())

    def slack(self, values: Mapping[str, float]) -> float:
        """Left-hand side minus rhs; negative means the constraint is violated."""
        return sum(c * values[n] for n, c in self.coefficients.items()) - self.rhs

    def describe(self) -> str:
        """The constraint as text."""
        if self.text:
            return self.text
        terms = " + ".join(f"{c:g}*{n}" for n, c in self.coefficients.items())
        return f"{terms} >= {self.rhs:g}"


class ParameterSpace(BaseModel):
    """An ordered set of parameters plus linear constraints.

    The order of :attr:`parameters` is the column order of every array the space produces.
    """

    model_config = _FROZEN

    parameters: tuple[Parameter, ...] = Field(min_length=1)
    constraints: tuple[LinearConstraint, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> ParameterSpace:
        names = [p.name for p in self.parameters]
        dupes = repeated(names)
        if dupes:
            raise ValueError(f"duplicate parameter names: {dupes}")
        by_name = {p.name: p for p in self.parameters}
        for c in self.constraints:
            for n in c.coefficients:
                if n not in by_name:
                    raise ValueError(
                        f"constraint {c.describe()!r} names {n!r}, which is not a parameter "
                        f"(parameters: {names})"
                    )
                if by_name[n].scale == "log":
                    raise ValueError(
                        f"constraint {c.describe()!r} uses log-scale parameter {n!r}; "
                        "linear constraints may only use linear-scale parameters"
                    )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in column order."""
        return tuple(p.name for p in self.parameters)

    @property
    def dim(self) -> int:
        """Number of parameters."""
        return len(self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def bounds(self) -> NDArray[np.float64]:
        """Physical bounds, shape ``(2, dim)``: row 0 lower, row 1 upper."""
        return np.array([[p.lower for p in self.parameters], [p.upper for p in self.parameters]])

    def check(self, values: Mapping[str, float], *, tol: float = 1e-9) -> dict[str, float]:
        """Validate one point and return it as a plain dict in column order.

        Args:
            values: Parameter name -> physical value. Must name exactly the space's parameters.
            tol: Relative tolerance on bounds and constraints (absorbs float round-off from the
                unit-cube mapping).

        Raises:
            ConditionsError: A value is missing, not finite, out of bounds, or a constraint fails.
        """
        unknown = sorted(set(values) - set(self.names))
        if unknown:
            raise ConditionsError(unknown[0], float("nan"), f"one of {list(self.names)}",
                                  "unknown parameter")
        out: dict[str, float] = {}
        for p in self.parameters:
            if p.name not in values:
                raise ConditionsError(p.name, float("nan"), p.allowed, "missing")
            try:
                v = float(values[p.name])
            except (TypeError, ValueError) as err:
                raise ConditionsError(p.name, float("nan"), p.allowed,
                                      f"not a number: {values[p.name]!r}") from err
            span = (p.upper - p.lower) * tol
            if not math.isfinite(v) or v < p.lower - span or v > p.upper + span:
                raise ConditionsError(p.name, v, p.allowed)
            if p.integer:
                if abs(v - round(v)) > span:
                    raise ConditionsError(p.name, v, f"a whole number in {p.allowed}",
                                          "not a whole number")
                v = float(round(v))
            out[p.name] = min(max(v, p.lower), p.upper)
        for c in self.constraints:
            scale = max(1.0, abs(c.rhs))
            if c.slack(out) < -tol * scale:
                first = next(iter(c.coefficients))
                raise ConditionsError(first, out[first], c.describe(),
                                      f"constraint violated by {-c.slack(out):.3g}")
        return out

    def is_feasible(self, values: Mapping[str, float]) -> bool:
        """True if :meth:`check` would accept ``values``."""
        try:
            self.check(values)
        except ConditionsError:
            return False
        return True

    def to_unit(self, points: Iterable[Mapping[str, float]]) -> NDArray[np.float64]:
        """Physical points -> unit-cube array of shape ``(n, dim)``."""
        rows = [[float(pt[p.name]) for p in self.parameters] for pt in points]
        x = np.asarray(rows, dtype=np.float64).reshape(-1, self.dim)
        return np.stack([p.to_unit(x[:, j]) for j, p in enumerate(self.parameters)], axis=1)

    def from_unit(self, u: NDArray[np.float64]) -> list[dict[str, float]]:
        """Unit-cube array of shape ``(n, dim)`` -> physical points (values clipped to bounds)."""
        arr = np.asarray(u, dtype=np.float64).reshape(-1, self.dim)
        cols = [p.from_unit(arr[:, j]) for j, p in enumerate(self.parameters)]
        return [{p.name: float(cols[j][i]) for j, p in enumerate(self.parameters)}
                for i in range(arr.shape[0])]

    def unit_constraints(self) -> list[tuple[list[int], list[float], float]]:
        """The linear constraints rewritten for the unit cube.

        Returns:
            One ``(indices, coefficients, rhs)`` per constraint, meaning
            ``sum(coefficients[k] * u[indices[k]]) >= rhs`` (BoTorch's ``inequality_constraints``
            convention).
        """
        out: list[tuple[list[int], list[float], float]] = []
        index = {n: j for j, n in enumerate(self.names)}
        for c in self.constraints:
            idx, coefs = [], []
            rhs = c.rhs
            for n, coef in c.coefficients.items():
                p = self[n]
                idx.append(index[n])
                coefs.append(coef * (p.upper - p.lower))
                rhs -= coef * p.lower
            out.append((idx, coefs, rhs))
        return out

    def subspace(self, names: Sequence[str]) -> ParameterSpace:
        """A space with only ``names`` (in that order); constraints on dropped names are dropped."""
        keep = set(names)
        missing = [n for n in names if n not in self.names]
        if missing:
            raise ConfigError(f"unknown parameters {missing}; known: {list(self.names)}")
        return ParameterSpace(
            parameters=tuple(self[n] for n in names),
            constraints=tuple(c for c in self.constraints if set(c.coefficients) <= keep),
        )


#: The InP/ZnS parameters, bounds from the seed paper's explored ranges (Lignos et al. 2021).
QD_PARAMETERS: dict[str, Parameter] = {
    p.name: p
    for p in (
        Parameter(name="t_core_c", lower=160, upper=220, unit="°C",
                  description="Core (InP) stage temperature"),
        Parameter(name="tau_core_min", lower=5, upper=30, unit="min",
                  description="Core stage mean residence time"),
        Parameter(name="t_shell_c", lower=250, upper=320, unit="°C",
                  description="Shell (ZnS) stage temperature"),
        Parameter(name="tau_shell_min", lower=10, upper=30, unit="min",
                  description="Shell stage mean residence time"),
        Parameter(name="cl_to_i", lower=0.25, upper=100, unit="", scale="log",
                  description="Cl:I molar ratio of the halide feed (more I: smaller, bluer dots)"),
        Parameter(name="s_to_zn", lower=1, upper=4, unit="",
                  description="S:Zn molar ratio of the shell feed"),
        Parameter(name="p_to_in", lower=2.1, upper=4.9, unit="",
                  description="Aminophosphine P:In molar ratio of the core feed"),
        # Optional conditions of the seed paper's platform (each CSTR heated and stirred on its
        # own; sulfur injected at a chosen tank between the 3rd and the 6th).
        Parameter(name="stir_rpm", lower=200, upper=1200, unit="rpm",
                  description="Stirring rate of every tank (below 600 rpm mixing limits the "
                              "nucleation burst)"),
        Parameter(name="s_inject_tank", lower=3, upper=6, unit="", integer=True,
                  description="Tank where the sulfur (shell) feed enters; the tanks before it "
                              "are the core stage"),
        Parameter(name="s_inject_count", lower=1, upper=3, unit="", integer=True,
                  description="Consecutive tanks the shell feed is split over"),
        *(Parameter(name=tank_temperature_name(i), lower=160, upper=320, unit="°C",
                    description=f"Temperature of tank {i} (flow order); a tank not searched "
                                "keeps its stage temperature")
          for i in range(1, MAX_TANKS + 1)),
    )
}

#: Shell must run hotter than the core: ZnS does not grow at core temperatures.
QD_SHELL_HOTTER = LinearConstraint.parse("t_shell_c - t_core_c >= 40")

#: The sulfur injection must end in the cascade: ``s_inject_tank + s_inject_count - 1 <= 7`` for
#: the default reactor's 7 tanks (3 core + 4 shell). A campaign for another cascade states its own.
QD_INJECTION_FITS = LinearConstraint.parse("s_inject_tank + s_inject_count <= 8")

#: The conditions an experiment needs; ``p_to_in`` is optional in a search space (fixed at 3.6).
QD_DEFAULT_NAMES = ("t_core_c", "tau_core_min", "t_shell_c", "tau_shell_min", "cl_to_i", "s_to_zn")


def qd_space(names: Sequence[str] = QD_DEFAULT_NAMES,
             overrides: Mapping[str, tuple[float, float]] | None = None,
             constraints: Sequence[LinearConstraint] | None = None) -> ParameterSpace:
    """The InP/ZnS search space.

    Args:
        names: Which catalog parameters to search over (``p_to_in`` is optional).
        overrides: Name -> ``(lower, upper)`` to narrow the catalog bounds.
        constraints: Linear constraints; default ``t_shell_c - t_core_c >= 40`` when both
            temperatures are searched, and :data:`QD_INJECTION_FITS` when both injection fields
            are.

    Raises:
        ConfigError: Unknown name, or overridden bounds outside the catalog bounds.
    """
    overrides = dict(overrides or {})
    params = []
    for n in names:
        if n not in QD_PARAMETERS:
            raise ConfigError(f"unknown parameter {n!r}; known: {sorted(QD_PARAMETERS)}")
        p = QD_PARAMETERS[n]
        if n in overrides:
            lo, hi = overrides.pop(n)
            if lo < p.lower or hi > p.upper:
                raise ConfigError(
                    f"bounds of {n}: [{lo:g}, {hi:g}] exceed what the reactor allows, {p.allowed}"
                )
            p = p.model_copy(update={"lower": float(lo), "upper": float(hi)})
            Parameter.model_validate(p.model_dump())
        params.append(p)
    if overrides:
        raise ConfigError(f"bounds given for parameters not in the space: {sorted(overrides)}")
    if constraints is None:
        constraints = [c for c, both in ((QD_SHELL_HOTTER, ("t_core_c", "t_shell_c")),
                                         (QD_INJECTION_FITS, ("s_inject_tank", "s_inject_count")))
                       if set(both) <= set(names)]
    return ParameterSpace(parameters=tuple(params), constraints=tuple(constraints))
