"""The ``dynamic:`` block of a campaign file (``mode: dynamic``), validated whole.

A dynamic campaign ramps the reactor from one proposal to the next and reads the inline spectra
all the way through (docs/dynamic.md). This block says how fast the ramps may go (what the real
heaters and pumps can follow), how the streamed readings are judged (the RTD mapping's spread
limits), how often a frame set is taken and how a ramp is planned::

    mode: dynamic
    dynamic:
      ramp_limits: {heating_c_per_min: 10, cooling_c_per_min: 5, tau_rel_per_min: 0.2,
                    ratio_rel_per_min: 0.5}
      mapping: {spread_factor: 1.5, spread_limits: {t_core_c: [2, 8]}}
      frame_interval_min: 1.0
      plan: between_proposals      # or: sweep (a designed ramp around each proposal), or
                                   # approach (fast to near it, slow over its last approach_min)
      hold_min: 0
      hold_residence_times: 0      # a further hold, in mean residence times
      hold_end: full               # or: steady (end the hold once the stream is steady)
      hold_at: end                 # or: after_jump (the full hold only after a spoiling jump),
                                   # until_readable (after a jump, until the mapping reads the cell)
      rate_caps: full_weight       # or: refusal, devices
      representative: full_weight_first   # or: cautious (the reading whose worst case ranks best)
      after_unread: ask            # or: hold (after a step that read nothing, read its fluid)
      thompson_after_stall: 0      # or n: Thompson sampling once n steps did not improve
      confirm_hold: off            # or in_band, beats_best: hold at a promising proposal

Kept out of :mod:`autolab.config` so the pure dynamic layer's types stay next to their schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autolab.dynamic import (
    DEFAULT_SPREAD_LIMITS,
    MappingPolicy,
    RampLimits,
    SpreadLimit,
)
from autolab.dynamic.observe import DEFAULT_MEASUREMENT_FLOOR

_FROZEN = ConfigDict(frozen=True, extra="forbid")

#: Ramp planning strategies (``plan:``): what one dynamic step runs.
PLANS = ("between_proposals", "sweep", "approach")
#: Default ramp time of ``plan: approach``'s slow last leg, lab min.
APPROACH_MIN = 30.0
#: When the hold is held (``hold_at:``): at the end of every ramp, or in full only after a jump.
HOLD_AT = ("end", "after_jump", "until_readable")
#: ``hold_at`` values that judge a step's first leg as a jump or close (``jump_limit``).
JUMP_HOLDS = ("after_jump", "until_readable")
#: How a hold ends (``hold_end:``): after its full time, or once the stream is steady.
HOLD_ENDS = ("full", "steady")
#: How the ramp rates are capped beyond the devices (``rate_caps:``).
RATE_CAPS = ("full_weight", "refusal", "devices")
#: Which streamed reading stands for a trial (``representative:``; autolab.dynamic.represent).
REPRESENTATIVE_RULES = ("full_weight_first", "cautious")
#: What follows a step none of whose readings was accepted (``after_unread:``).
AFTER_UNREAD = ("ask", "hold")
#: When a step is followed by a hold at its proposal (``confirm_hold:``; dynamic.confirm).
CONFIRM_HOLDS = ("off", "in_band", "beats_best")


class RampLimitsConfig(BaseModel):
    """What the reactor's heaters and pumps can follow (``dynamic.ramp_limits``).

    The simulated and serial rigs also cap every temperature ramp at the heater blocks' own
    heating rate, whatever is written here.

    Attributes:
        heating_c_per_min: Largest heating rate of a block, °C/min.
        cooling_c_per_min: Largest cooling rate of a block, °C/min.
        tau_rel_per_min: Largest relative change of a residence time per minute (pump slew).
        ratio_rel_per_min: Largest relative change of a feed ratio per minute.
        stir_rpm_per_min: Largest change of the stirring rate per minute, rpm/min.
    """

    model_config = _FROZEN

    heating_c_per_min: float = Field(default=10.0, gt=0, le=100, allow_inf_nan=False)
    cooling_c_per_min: float = Field(default=5.0, gt=0, le=100, allow_inf_nan=False)
    tau_rel_per_min: float = Field(default=0.2, gt=0, le=10, allow_inf_nan=False)
    ratio_rel_per_min: float = Field(default=0.5, gt=0, le=10, allow_inf_nan=False)
    stir_rpm_per_min: float = Field(default=600.0, gt=0, le=10_000, allow_inf_nan=False)

    def limits(self) -> RampLimits:
        """As :class:`~autolab.dynamic.trajectory.RampLimits`."""
        return RampLimits.for_reactor(
            heating_c_per_min=self.heating_c_per_min, cooling_c_per_min=self.cooling_c_per_min,
            tau_rel_per_min=self.tau_rel_per_min, ratio_rel_per_min=self.ratio_rel_per_min,
            stir_rpm_per_min=self.stir_rpm_per_min)


def _known(names: Iterable[str], allowed: Mapping[str, Any], what: str) -> None:
    """Refuse names the mapping does not know, listing the ones it does.

    Raises:
        ValueError: A name is not a key of ``allowed``.
    """
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; expected names from {sorted(allowed)}")


class MappingConfig(BaseModel):
    """How streamed readings are judged (``dynamic.mapping``; defaults: docs/dynamic.md).

    Attributes:
        spread_factor: κ, the multiple of slope × spread counted as mapping uncertainty.
        spread_limits: Channel or field -> ``[full weight up to, refused above]``, overriding
            the defaults (relative channels, such as residence times and ratios, as fractions).
        measurement_floor: Feature -> systematic one-sigma floor, overriding the defaults.
        spread_factors: Channel or field -> its own κ, overriding ``spread_factor`` for that
            channel's share of the spread (e.g. ``{t_core_c: 1.5}`` with a smaller
            ``spread_factor``: only the core temperature's kinetic lag needs the allowance).
        inflate_channels: Channels or fields whose spread above the full-weight limit
            down-weights a reading (inflates its sigma); omitted (None): every channel. Others
            keep their refusal limit and, between the limits, the honest sigma.
    """

    model_config = _FROZEN

    spread_factor: float = Field(default=1.5, ge=0, le=10, allow_inf_nan=False)
    spread_limits: dict[str, tuple[float, float]] = Field(default_factory=dict)
    measurement_floor: dict[str, float] = Field(default_factory=dict)
    spread_factors: dict[str, float] = Field(default_factory=dict)
    inflate_channels: list[str] | None = None

    @field_validator("spread_limits")
    @classmethod
    def _check_limits(cls, v: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        _known(v, DEFAULT_SPREAD_LIMITS, "channel")
        for name, (down, refuse) in v.items():
            if not 0 < down <= refuse < float("inf"):
                raise ValueError(f"{name}: expected [full weight up to, refused above] with "
                                 f"0 < first <= second, got [{down:g}, {refuse:g}]")
        return v

    @field_validator("measurement_floor")
    @classmethod
    def _check_floor(cls, v: dict[str, float]) -> dict[str, float]:
        _known(v, DEFAULT_MEASUREMENT_FLOOR, "feature")
        bad = sorted(k for k, x in v.items() if not 0 <= x < float("inf"))
        if bad:
            raise ValueError(f"{bad}: expected a non-negative finite floor")
        return v

    @field_validator("spread_factors")
    @classmethod
    def _check_factors(cls, v: dict[str, float]) -> dict[str, float]:
        _known(v, DEFAULT_SPREAD_LIMITS, "channel")
        bad = sorted(k for k, x in v.items() if not 0 <= x <= 10)
        if bad:
            raise ValueError(f"{bad}: expected a factor between 0 and 10")
        return v

    @field_validator("inflate_channels")
    @classmethod
    def _check_inflating(cls, v: list[str] | None) -> list[str] | None:
        _known(v or (), DEFAULT_SPREAD_LIMITS, "channel")
        return v

    def policy(self) -> MappingPolicy:
        """As :class:`~autolab.dynamic.observe.MappingPolicy` (defaults with the overrides)."""
        limits = dict(DEFAULT_SPREAD_LIMITS)
        for name, (down, refuse) in self.spread_limits.items():
            limits[name] = SpreadLimit(down, refuse, relative=DEFAULT_SPREAD_LIMITS[name].relative)
        return MappingPolicy(spread_limits=limits, spread_factor=self.spread_factor,
                             spread_factors=dict(self.spread_factors),
                             inflate_channels=(None if self.inflate_channels is None
                                               else frozenset(self.inflate_channels)),
                             measurement_floor={**DEFAULT_MEASUREMENT_FLOOR,
                                                **self.measurement_floor})


class SweepConfig(BaseModel):
    """A designed ramp around each proposal (``plan: sweep``).

    Attributes:
        n_points: Points of the box visited after the proposal (nearest first).
        box_fraction: Half-width of the box around the proposal, as a fraction of each searched
            parameter's range.
    """

    model_config = _FROZEN

    n_points: int = Field(default=3, ge=1, le=64, strict=True)
    box_fraction: float = Field(default=0.1, gt=0, le=0.5, allow_inf_nan=False)


class DynamicConfig(BaseModel):
    """The ``dynamic:`` block: ramps read all the way through (see the module docstring).

    Attributes:
        ramp_limits: What the heaters and pumps can follow.
        mapping: How the streamed readings are judged.
        frame_interval_min: Lab minutes between two frame sets (and setpoint updates).
        plan: ``between_proposals`` (ramp from where the reactor is to each proposal),
            ``sweep`` (to the proposal, then through a small box around it) or ``approach``
            (at the devices' pace to near the proposal, then at the mapping's rate caps over
            the last ``approach_min``: the time goes where the readings keep full weight).
        approach_min: ``plan: approach``: ramp time of the slow last leg at the rate caps, min.
        hold_min: Hold at the end of each ramp, lab min (the stream goes on while it holds).
        hold_residence_times: A further hold at the end of each ramp, in mean total residence
            times at the proposal: the fluid made on the slow last leg reaches the optical
            cell about one residence time later; a hold lets it pass the cell before the next
            ramp mixes new fluid into it.
        hold_end: ``full`` holds for the whole ``hold_min`` + ``hold_residence_times`` × τ;
            ``steady`` makes that time a cap and ends the hold at the first check (every
            two frames) where the mapping flags the cell's fluid steady (the RTD washout of
            the last ramp's conditions has passed the cell) and the steady procedure's verdict
            (:func:`autolab.analysis.steady_state` over its window of frames) finds the
            stream steady: past that point more frames repeat the same reading.
        hold_at: ``end`` holds at the end of every ramp; ``after_jump`` holds in full only
            at the end of a step whose first leg jumps farther than twice the ``jump_limit``
            spread limits (its mixtures take about two residence times to wash out of the
            cell); a step that stays close adds no spread of its own beyond that and holds only
            to last the hold time in all (the fluid made near its proposal is read as the next
            step starts). ``until_readable`` plans a close step the same way, and holds after
            a jump until the campaign's mapping, run over the planned history, says the cell's
            readings stop being refused (plus a few frames, at most three residence times):
            the jump's mixtures wash out of the cell in a time set by the jump and the RTD,
            which a fixed hold often undercuts (the step then reads nothing of its slow leg)
            or overshoots. Only ``plan: approach`` has the fast first leg these judge.
        jump_limit: ``hold_at: after_jump`` or ``until_readable``: a first leg counts as a
            jump when half of it exceeds a channel's ``full_weight`` limit (its readings may
            be down-weighted) or its ``refusal`` limit (they may be refused).
        rate_caps: ``full_weight`` caps every ramp so its readings keep full weight (slow, all
            at full weight); ``refusal`` caps them at the spread the mapping still accepts
            (faster, readings down-weighted); ``devices`` lets the devices' limits alone set
            the pace (fastest, many readings refused).
        max_ramp_min: Longest ramp between two points, lab min: a ramp the rate caps would
            make longer is run in this time instead (never faster than the devices allow),
            its readings down-weighted or refused as the mapping judges them. A large move
            early in a campaign would otherwise take days at full-weight rates.
        representative: Which accepted reading stands for the trial (``best``, the stop rules
            and the tracker read it): ``full_weight_first`` (the best by the objective's rank,
            among the full-weight ones where there are any) or ``cautious`` (the one whose
            one-sigma worst case ranks best, so a sharp reading wins among equals and a
            down-weighted one only where even its worst case ranks first;
            :mod:`autolab.dynamic.represent`).
        after_unread: What follows a step none of whose readings was accepted (all refused:
            the cell held mixtures of a jump the whole time), which told the optimizer
            nothing. ``ask``: ask again; the ask sees the same data, and may return to the
            same far proposals, in a cycle. ``hold``: hold where the reactor is (the last
            proposal) for the hold time (``hold_min`` + ``hold_residence_times`` × τ, at
            least one frame interval), so the fluid made there reaches the cell and is read;
            at most ``MAX_UNREAD_HOLDS`` such holds in a row, then ask.
        thompson_after_stall: ``0`` (off): every ask passes the fluid still in the tanks as
            pending, so the default optimizer (``ts_pending: band_ei``) always asks its
            band-first EI, which crawls along the band in short steps. ``n``: once ``n`` steps
            in a row have not improved the best in-band trial, ask with nothing pending, so
            its Thompson sampling in a trust region (counted per trajectory,
            :mod:`autolab.optimizer.steps`) searches the band for brighter points; back to the
            EI once a step improves.
        confirm_hold: ``off``: after a close step the next step asks at once (the fluid made
            at the proposal is read mixed into the next ramp). ``in_band``: after a step whose
            last accepted reading (the fluid made nearest its proposal) is in band and
            feasible, the next step holds at the proposal, unasked, for the hold time
            (``hold_min`` + ``hold_residence_times`` × τ, as after a jump), so the proposal's
            own fluid is read and the trial's reading is at the proposal;
            ``beats_best``: only when that reading also beats the best in-band trial so far
            (:mod:`autolab.dynamic.confirm`).
        archive_frames: Keep every streamed frame set next to the journal
            (``dynamic/trial_NNNN.npz``); the journal keeps the observations either way.
    """

    model_config = _FROZEN

    ramp_limits: RampLimitsConfig = Field(default_factory=RampLimitsConfig)
    mapping: MappingConfig = Field(default_factory=MappingConfig)
    frame_interval_min: float = Field(default=1.0, ge=0.05, le=120, allow_inf_nan=False)
    plan: Literal["between_proposals", "sweep", "approach"] = "between_proposals"
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    approach_min: float = Field(default=APPROACH_MIN, gt=0, le=10_000, allow_inf_nan=False)
    hold_min: float = Field(default=0.0, ge=0, le=1000, allow_inf_nan=False)
    hold_residence_times: float = Field(default=0.0, ge=0, le=10, allow_inf_nan=False)
    hold_end: Literal["full", "steady"] = "full"
    hold_at: Literal["end", "after_jump", "until_readable"] = "end"
    jump_limit: Literal["full_weight", "refusal"] = "full_weight"
    rate_caps: Literal["full_weight", "refusal", "devices"] = "full_weight"
    max_ramp_min: float = Field(default=60.0, gt=0, le=10_000, allow_inf_nan=False)
    representative: Literal["full_weight_first", "cautious"] = "full_weight_first"
    after_unread: Literal["ask", "hold"] = "ask"
    thompson_after_stall: int = Field(default=0, ge=0, le=1000, strict=True)
    confirm_hold: Literal["off", "in_band", "beats_best"] = "off"
    archive_frames: bool = True

    @model_validator(mode="after")
    def _check_sweep(self) -> DynamicConfig:
        if self.plan != "sweep" and self.sweep != SweepConfig():
            raise ValueError("sweep: settings apply to plan: sweep only; set plan: sweep or drop "
                             "the sweep block")
        if self.plan != "approach" and self.approach_min != APPROACH_MIN:
            raise ValueError("approach_min applies to plan: approach only; set plan: approach "
                             "or drop approach_min")
        if self.hold_end == "steady" and self.hold_min == 0 and self.hold_residence_times == 0:
            raise ValueError("hold_end: steady ends a hold early, and no hold is set: set "
                             "hold_min or hold_residence_times (the hold's cap), or drop hold_end")
        jumps = self.hold_at in JUMP_HOLDS
        if not jumps and self.jump_limit != "full_weight":
            raise ValueError("jump_limit applies to hold_at: after_jump or until_readable only; "
                             "set one of them or drop jump_limit")
        if jumps and self.hold_end == "steady":
            raise ValueError(f"hold_end: steady and hold_at: {self.hold_at} both shorten the "
                             "hold: choose one (drop hold_end or hold_at)")
        if jumps and self.hold_min == 0 and self.hold_residence_times == 0:
            raise ValueError(f"hold_at: {self.hold_at} places a hold, and no hold is set: set "
                             "hold_min or hold_residence_times, or drop hold_at")
        if self.confirm_hold != "off" and self.hold_min == 0 and \
                self.hold_residence_times == 0:
            raise ValueError(f"confirm_hold: {self.confirm_hold} holds at a promising proposal "
                             "for the hold time, and no hold is set: set hold_min or "
                             "hold_residence_times, or drop confirm_hold")
        if jumps and self.plan != "approach":
            raise ValueError(f"hold_at: {self.hold_at} judges plan: approach's fast first leg; "
                             "set plan: approach or drop hold_at")
        return self

    def limits(self) -> RampLimits:
        """The ramp limits of the devices (the rig adds its heaters' own rates)."""
        return self.ramp_limits.limits()

    def policy(self) -> MappingPolicy:
        """The mapping policy."""
        return self.mapping.policy()

    def rate_caps_for(self, policy: MappingPolicy) -> MappingPolicy | None:
        """The policy whose spread limits cap the ramp rates (None: devices only)."""
        if self.rate_caps == "devices":
            return None
        if self.rate_caps == "full_weight":
            return policy
        refuse = {k: SpreadLimit(lim.refuse_above, lim.refuse_above, relative=lim.relative)
                  for k, lim in policy.spread_limits.items()}
        return MappingPolicy(spread_limits=refuse)


__all__ = ["AFTER_UNREAD", "CONFIRM_HOLDS", "HOLD_AT", "HOLD_ENDS", "JUMP_HOLDS", "PLANS",
           "RATE_CAPS", "REPRESENTATIVE_RULES", "DynamicConfig", "MappingConfig",
           "RampLimitsConfig", "SweepConfig"]
