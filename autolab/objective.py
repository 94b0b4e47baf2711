"""What a campaign wants: targets, maximize/minimize terms and outcome constraints.

An :class:`ObjectiveSpec` turns a chemist's wish ("550 nm ± 2, as narrow and bright as
possible, QY at least 30 %") into numbers the optimizer can rank. It is generic: outcomes are just
names (``pl_peak_nm``, ``qy``, ``fwhm_nm`` here, anything elsewhere).

How the score is defined
------------------------
Each term maps its outcome ``y`` to a *utility* (larger is better):

* :class:`Target` ``(value v, tolerance t)``: ``-h(max(|y - v| / t - 1, 0))`` with the smooth hinge
  ``h(u) = u**2 / (u + 0.1)``. Inside the band ``|y - v| <= t`` the utility is exactly 0, so any
  in-band point is as good as any other and the other terms decide; just outside the band ``h`` is
  quadratic (no kink in the gradient at the band edge), further out it grows linearly,
  ``h(u) ~ u - 0.1``, i.e. about 1 per tolerance-width outside the band. Linear (not quadratic)
  growth keeps a far-off point from dominating the acquisition's improvement statistics.
* :class:`Maximize` ``(scale s)``: ``y / s``; :class:`Minimize` ``(scale s)``: ``-y / s``. ``scale``
  is "how much of this outcome matters as much as one unit of score" (e.g. 0.1 QY, 10 nm FWHM).

The scalar score is the weighted sum ``sum_i weight_i * utility_i``. Priorities come from the
weights: a target's default weight (10) makes one tolerance-width outside the band cost about 9
score units, far more than any realistic gain from the other terms, so the optimizer first gets
into the band, then trades the rest. :func:`qd_objective` encodes "550 nm ± 2, bright, then
narrow": QY scale 0.1 (weight 1: +10 % QY = +1), FWHM scale 10 nm (weight 0.5: -10 nm = +0.5).

The target is a specification
-----------------------------
A chemist who asks for 550 ± 2 nm wants 550 ± 2 nm, so the score alone never decides "best":

* **Ranking measured experiments** (:meth:`ObjectiveSpec.rank_key`, used for "best so far", the
  reported best and the optimizer's ``best()``): in-band experiments (every :class:`Target`
  band holds) rank before any out-of-band one whatever their scores, then feasible (outcome
  constraints hold) before infeasible, then by score. A brighter 547.8 nm never beats an in-band
  549.6 nm. An experiment that is neither in band nor feasible is never "best".
* **Choosing the next experiment** (``autolab.optimizer.acquisition.BandFirstLogEI``): the band
  is a feasibility term, not a part of the improvement: ``log P(every band) + log P(every
  outcome constraint) + log P(no failure) + log EI`` of the *other* terms (the score without the
  target terms), measured against the best in-band experiment's model value. Targets' weights
  play no part there.
* **Per-term record**: :meth:`ObjectiveSpec.score_terms` breaks each experiment's score into its
  terms, and :meth:`ObjectiveSpec.target_status` gives in-band and distance per target, for the
  journal and MLflow.

Outcome constraints (``qy >= 0.3``) are *not* part of the score. The optimizer models them and
weights its acquisition by the probability that they hold; :meth:`ObjectiveSpec.is_feasible`
applies them to measured values, and "best so far" only counts feasible experiments.

In ``mode="pareto"`` the per-term utilities (unweighted) are the objectives of a multi-objective
search (hypervolume improvement); the scalar score still ranks "best" for reporting.

There is exactly one implementation of every formula, written with torch ops
(:meth:`ObjectiveSpec.score_tensor`), so the acquisition function scores posterior samples with
the very function that scores measured floats (:meth:`ObjectiveSpec.score`).

Example:
    >>> obj = qd_objective(target_nm=550.0, tolerance_nm=2.0)
    >>> round(obj.score({"pl_peak_nm": 551.0, "qy": 0.4, "fwhm_nm": 50.0}), 3)
    1.5
    >>> obj.within_target({"pl_peak_nm": 553.0, "qy": 0.4, "fwhm_nm": 50.0})
    False
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from autolab.exceptions import ConfigError
from autolab.support import repeated

if TYPE_CHECKING:  # torch is imported inside the tensor methods: validating a campaign
    from torch import Tensor  # file must not pay for it (autolab validate starts in < 1 s)

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Width (in tolerance units) of the quadratic part of the target hinge.
TARGET_SMOOTHING = 0.1


def _check_outcome_name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError(f"outcome name {v!r} must be an identifier like 'pl_peak_nm'")
    return v


OutcomeName = Annotated[str, AfterValidator(_check_outcome_name)]


def _smooth_hinge(u: Tensor) -> Tensor:
    """``u**2 / (u + TARGET_SMOOTHING)`` for ``u >= 0`` (``u`` already clamped), elementwise."""
    return u * u / (u + TARGET_SMOOTHING)


class Target(BaseModel):
    """Bring an outcome into a band ``value ± tolerance``.

    Attributes:
        outcome: Outcome name, e.g. ``"pl_peak_nm"``.
        value: Target value, outcome units.
        tolerance: Half-width of the acceptable band, outcome units (> 0).
        weight: Score weight; the default 10 puts the band before everything else.
    """

    model_config = _FROZEN

    kind: Literal["target"] = "target"
    outcome: OutcomeName
    value: float = Field(allow_inf_nan=False)
    tolerance: float = Field(gt=0, allow_inf_nan=False)
    weight: float = Field(default=10.0, gt=0, allow_inf_nan=False)

    def utility(self, y: Tensor) -> Tensor:
        """Utility of outcome values ``y`` (any shape): 0 in the band, negative outside."""
        import torch  # noqa: PLC0415 (lazy, see the TYPE_CHECKING import)
        excess = torch.clamp((y - self.value).abs() / self.tolerance - 1.0, min=0.0)
        return -_smooth_hinge(excess)

    def describe(self) -> str:
        """The term as text."""
        return f"{self.outcome} = {self.value:g} ± {self.tolerance:g}"


class _ScaledTerm(BaseModel):
    """What :class:`Maximize` and :class:`Minimize` share: an outcome, its scale and a weight.

    One schema for both directions, so a bound on ``scale`` or ``weight`` cannot differ between
    them. Each subclass narrows ``kind`` to its own literal (the terms' discriminator); the field
    keeps its place first, so a dumped term reads as before.

    Attributes:
        kind: The direction, ``"maximize"`` or ``"minimize"``.
        outcome: Outcome name, e.g. ``"qy"`` or ``"fwhm_nm"``.
        scale: Amount of the outcome worth one score unit (outcome units, > 0).
        weight: Score weight.
    """

    model_config = _FROZEN

    kind: str
    outcome: OutcomeName
    scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)

    def describe(self) -> str:
        """The term as text: its direction and outcome, e.g. ``maximize qy``."""
        return f"{self.kind} {self.outcome}"


class Maximize(_ScaledTerm):
    """Make an outcome as large as possible, e.g. ``qy`` (fields: :class:`_ScaledTerm`)."""

    kind: Literal["maximize"] = "maximize"

    def utility(self, y: Tensor) -> Tensor:
        """Utility ``y / scale`` (any shape)."""
        return y / self.scale


class Minimize(_ScaledTerm):
    """Make an outcome as small as possible, e.g. ``fwhm_nm`` (fields: :class:`_ScaledTerm`)."""

    kind: Literal["minimize"] = "minimize"

    def utility(self, y: Tensor) -> Tensor:
        """Utility ``-y / scale`` (any shape)."""
        return -y / self.scale


Term = Annotated[Target | Maximize | Minimize, Field(discriminator="kind")]

_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=)\s*(\S+)\s*$")


class OutcomeConstraint(BaseModel):
    """A hard requirement on a measured outcome, e.g. ``qy >= 0.3``.

    Attributes:
        outcome: Outcome name.
        op: ``">="`` or ``"<="``.
        bound: Right-hand side, outcome units.
    """

    model_config = _FROZEN

    outcome: OutcomeName
    op: Literal[">=", "<="]
    bound: float = Field(allow_inf_nan=False)

    @classmethod
    def parse(cls, text: str) -> OutcomeConstraint:
        """Parse ``"qy >= 0.3"`` or ``"fwhm_nm <= 60"``.

        Raises:
            ConfigError: The text is not ``name >= number`` or ``name <= number``.
        """
        m = _CONSTRAINT.match(text)
        if m is None:
            raise ConfigError(
                f"outcome constraint {text!r}: expected 'outcome >= number' or 'outcome <= number'"
            )
        try:
            bound = float(m.group(3))
        except ValueError as err:
            raise ConfigError(
                f"outcome constraint {text!r}: bound {m.group(3)!r} is not a number"
            ) from err
        return cls(outcome=m.group(1), op=m.group(2), bound=bound)

    def violation(self, y: Tensor) -> Tensor:
        """Amount by which ``y`` (any shape) violates the constraint; ``<= 0`` means satisfied.

        This is BoTorch's ``constraints=`` convention (feasible where the callable is <= 0).
        """
        return self.bound - y if self.op == ">=" else y - self.bound

    def describe(self) -> str:
        """The constraint as text."""
        return f"{self.outcome} {self.op} {self.bound:g}"


class TargetStatus(BaseModel):
    """Where one measured outcome stands against its :class:`Target` band.

    Attributes:
        outcome: Outcome name.
        value: Target value, outcome units.
        tolerance: Half-width of the band, outcome units.
        distance: ``|measured - value|``, outcome units.
    """

    model_config = _FROZEN

    outcome: str
    value: float
    tolerance: float
    distance: float

    @property
    def in_band(self) -> bool:
        """Whether the measured value lies inside the band."""
        return self.distance <= self.tolerance


class ObjectiveSpec(BaseModel):
    """Terms, outcome constraints and mode of a campaign's objective.

    The column order of every outcome tensor the spec reads is :attr:`outcome_names`: first the
    terms' outcomes in order, then outcomes that only appear in constraints.

    Attributes:
        terms: One or more :class:`Target` / :class:`Maximize` / :class:`Minimize`, at most one
            per outcome.
        constraints: Outcome constraints (not part of the score, see module docs).
        mode: ``"scalar"`` (optimize the weighted score) or ``"pareto"`` (hypervolume of the
            per-term utilities; needs at least two terms).
        ref_point: Pareto mode only: reference point in utility space (one value per term,
            larger is better, e.g. ``-fwhm / scale`` for a Minimize term). ``None`` infers it
            from the data.
    """

    model_config = _FROZEN

    terms: tuple[Term, ...] = Field(min_length=1)
    constraints: tuple[OutcomeConstraint, ...] = ()
    mode: Literal["scalar", "pareto"] = "scalar"
    ref_point: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> ObjectiveSpec:
        outcomes = [t.outcome for t in self.terms]
        dupes = repeated(outcomes)
        if dupes:
            raise ValueError(f"outcome(s) {dupes} appear in more than one objective term")
        if self.mode == "pareto" and len(self.terms) < 2:
            raise ValueError("mode 'pareto' needs at least two terms")
        if self.ref_point is not None:
            if self.mode != "pareto":
                raise ValueError("ref_point is only used with mode 'pareto'")
            if len(self.ref_point) != len(self.terms):
                raise ValueError(
                    f"ref_point has {len(self.ref_point)} values; expected one per term "
                    f"({len(self.terms)})"
                )
            if not all(math.isfinite(r) for r in self.ref_point):
                raise ValueError(f"ref_point must be finite, got {self.ref_point}")
        return self

    @property
    def outcome_names(self) -> tuple[str, ...]:
        """Every outcome the objective reads, in tensor column order."""
        names = [t.outcome for t in self.terms]
        for c in self.constraints:
            if c.outcome not in names:
                names.append(c.outcome)
        return tuple(names)

    @property
    def has_target(self) -> bool:
        """Whether any term is a :class:`Target` (a band the best experiment must be in)."""
        return any(isinstance(t, Target) for t in self.terms)

    def _column(self, name: str) -> int:
        return self.outcome_names.index(name)

    # ---- tensors (used inside the acquisition function) ---------------------------------------

    def utilities_tensor(self, Y: Tensor) -> Tensor:
        """Per-term utilities (larger is better), the Pareto-mode objectives.

        Args:
            Y: Outcomes, shape ``(..., m)`` with ``m = len(outcome_names)``.

        Returns:
            Shape ``(..., len(terms))``.
        """
        import torch  # noqa: PLC0415 (lazy, see the TYPE_CHECKING import)
        cols = [t.utility(Y[..., self._column(t.outcome)]) for t in self.terms]
        return torch.stack(cols, dim=-1)

    def score_tensor(self, Y: Tensor) -> Tensor:
        """The scalar score (module docs) of outcome tensors.

        Args:
            Y: Outcomes, shape ``(..., m)`` with ``m = len(outcome_names)``; e.g. posterior
                samples ``(samples, batch, q, m)``.

        Returns:
            Shape ``(...)``.
        """
        import torch  # noqa: PLC0415 (lazy, see the TYPE_CHECKING import)
        weights = torch.tensor([t.weight for t in self.terms], dtype=Y.dtype, device=Y.device)
        return (self.utilities_tensor(Y) * weights).sum(dim=-1)

    def meets_tensor(self, Y: Tensor) -> Tensor:
        """Whether every band and every constraint holds (bool, shape ``(...)``).

        The one test of "meets the spec" on tensors: a trust region's centre, a fantasy's
        incumbent and the forecast's draws all ask it.

        Args:
            Y: Outcomes, shape ``(..., m)``, e.g. posterior means or joint draws.
        """
        return self.in_band_tensor(Y) & (self.violations_tensor(Y) <= 0).all(dim=-1)

    def violations_tensor(self, Y: Tensor) -> Tensor:
        """Constraint violations (``<= 0`` satisfied), shape ``(..., len(constraints))``.

        Args:
            Y: Outcomes, shape ``(..., m)``.
        """
        if not self.constraints:
            return Y.new_zeros((*Y.shape[:-1], 0))
        import torch  # noqa: PLC0415 (lazy, see the TYPE_CHECKING import)
        cols = [c.violation(Y[..., self._column(c.outcome)]) for c in self.constraints]
        return torch.stack(cols, dim=-1)

    def in_band_tensor(self, Y: Tensor) -> Tensor:
        """Whether every :class:`Target` band holds (bool, shape ``(...)``; the one band test).

        Args:
            Y: Outcomes, shape ``(..., m)``, e.g. joint posterior draws.
        """
        import torch  # noqa: PLC0415 (lazy, see the TYPE_CHECKING import)
        ok = torch.ones(Y.shape[:-1], dtype=torch.bool, device=Y.device)
        for t in self.terms:
            if isinstance(t, Target):
                ok = ok & ((Y[..., self._column(t.outcome)] - t.value).abs() <= t.tolerance)
        return ok

    # ---- measured floats ---------------------------------------------------------------------

    def as_tensor(self, outcomes: Mapping[str, float]) -> Tensor:
        """Measured outcomes -> float64 tensor of shape ``(m,)`` in :attr:`outcome_names` order.

        Raises:
            ConfigError: An outcome the objective needs is missing or not a finite number.
        """
        values = []
        for name in self.outcome_names:
            if name not in outcomes:
                raise ConfigError(
                    f"outcome {name!r} is missing; the objective needs {list(self.outcome_names)}"
                )
            v = outcomes[name]
            try:
                fv = float(v)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"outcome {name!r}: not a number: {v!r}") from err
            if not math.isfinite(fv):
                raise ConfigError(f"outcome {name!r}: expected a finite number, got {fv}")
            values.append(fv)
        import torch  # noqa: PLC0415 (lazy, see the TYPE_CHECKING import)
        return torch.tensor(values, dtype=torch.float64)

    def score(self, outcomes: Mapping[str, float]) -> float:
        """The scalar score of one measured experiment (larger is better; module docs)."""
        return float(self.score_tensor(self.as_tensor(outcomes)))

    def utilities(self, outcomes: Mapping[str, float]) -> list[float]:
        """Per-term utilities of one measured experiment (larger is better)."""
        return [float(u) for u in self.utilities_tensor(self.as_tensor(outcomes))]

    def is_feasible(self, outcomes: Mapping[str, float]) -> bool:
        """True if every outcome constraint holds for the measured values."""
        return bool((self.violations_tensor(self.as_tensor(outcomes)) <= 0).all())

    def within_target(self, outcomes: Mapping[str, float]) -> bool:
        """True if every :class:`Target` term is inside its band (vacuously true without one).

        Used by stop rules ("stop when in band") alongside :meth:`is_feasible`.
        """
        return bool(self.in_band_tensor(self.as_tensor(outcomes)))

    def in_band_score(self, outcomes: Mapping[str, float]) -> float | None:
        """The score when every band and constraint holds, else ``None``.

        What "progress inside the specification" means to the dynamic stall and confirm rules.
        """
        if not (self.within_target(outcomes) and self.is_feasible(outcomes)):
            return None
        return self.score(outcomes)

    def score_terms(self, outcomes: Mapping[str, float]) -> dict[str, float]:
        """The score broken down by term: ``{label: weight * utility}``; they sum to the score.

        Labels are ``"<kind>_<outcome>"`` (``target_pl_peak_nm``, ``maximize_qy``), so a
        researcher can see which term moved an experiment's score.
        """
        utilities = self.utilities(outcomes)
        return {f"{t.kind}_{t.outcome}": t.weight * u for t, u in zip(self.terms, utilities,
                                                                      strict=True)}

    def target_status(self, outcomes: Mapping[str, float]) -> tuple[TargetStatus, ...]:
        """Per :class:`Target` term: is the measured value in its band, and how far from it."""
        return tuple(
            TargetStatus(outcome=t.outcome, value=t.value, tolerance=t.tolerance,
                         distance=abs(float(outcomes[t.outcome]) - t.value))
            for t in self.terms if isinstance(t, Target)
        )

    def rank_key(self, outcomes: Mapping[str, float]) -> tuple[int, int, float]:
        """Sort key of measured experiments, larger is better: the target is a specification.

        An experiment that meets every target band and outcome constraint ranks before any that
        does not, whatever their scores (a chemist who asks for 550 ± 2 nm wants 550 ± 2 nm, not
        a brighter 547.8 nm); among equals the scalar score decides. Feasibility comes second, so
        an in-band experiment that misses a ``qy >= 0.3`` constraint still beats an out-of-band
        one.
        """
        return (int(self.within_target(outcomes)), int(self.is_feasible(outcomes)),
                self.score(outcomes))

    def best_key(self, outcomes: Mapping[str, float] | None) -> tuple[int, int, float] | None:
        """:meth:`rank_key` of an experiment that may be "best", ``None`` for one that may not.

        The one rule behind every "best" (the optimizer's ``best()``, the campaign's and the
        steering's best trial, the tracked best-so-far): an experiment without usable outcomes,
        or one that is neither in every target band (with a target) nor feasible, is never best;
        the others rank by :meth:`rank_key`.
        """
        if outcomes is None:
            return None
        key = self.rank_key(outcomes)
        in_band, feasible = bool(key[0]) and self.has_target, bool(key[1])
        if not (in_band or feasible) or not math.isfinite(key[2]):
            return None
        return key

    def best_index(self, outcomes: Sequence[Mapping[str, float] | None]) -> int | None:
        """Index of the best of measured experiments (:meth:`best_key`); earlier wins ties.

        Args:
            outcomes: Each experiment's measured outcomes, ``None`` where it has none (failed,
                invalid, unusable).

        Returns:
            The index, or ``None`` when no experiment may be best.
        """
        best: int | None = None
        best_key: tuple[int, int, float] | None = None
        for i, row in enumerate(outcomes):
            key = self.best_key(row)
            if key is not None and (best_key is None or key > best_key):
                best, best_key = i, key
        return best

    def describe(self) -> str:
        """One line for logs and the MLflow UI."""
        text = "; ".join(t.describe() for t in self.terms)
        if self.constraints:
            text += " s.t. " + ", ".join(c.describe() for c in self.constraints)
        return f"{text} [{self.mode}]"


def qd_objective(
    target_nm: float = 550.0,
    tolerance_nm: float = 2.0,
    *,
    min_qy: float | None = None,
    constraints: Sequence[OutcomeConstraint] = (),
    mode: Literal["scalar", "pareto"] = "scalar",
) -> ObjectiveSpec:
    """The InP/ZnS objective: emission at ``target_nm``, then bright, then narrow.

    Args:
        target_nm: PL peak target, nm.
        tolerance_nm: Half-width of the acceptable band, nm.
        min_qy: Optional hard requirement ``qy >= min_qy`` (fraction 0-1).
        constraints: Further outcome constraints.
        mode: ``"scalar"`` or ``"pareto"``.
    """
    cons = list(constraints)
    if min_qy is not None:
        cons.append(OutcomeConstraint(outcome="qy", op=">=", bound=min_qy))
    return ObjectiveSpec(
        terms=(
            Target(outcome="pl_peak_nm", value=target_nm, tolerance=tolerance_nm),
            Maximize(outcome="qy", scale=0.1, weight=1.0),
            Minimize(outcome="fwhm_nm", scale=10.0, weight=0.5),
        ),
        constraints=tuple(cons),
        mode=mode,
    )
