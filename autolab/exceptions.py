"""The one exceptions module of autolab.

Every error autolab raises on purpose derives from :class:`AutolabError`, so a caller (the CLI, a
notebook, a test) can tell "autolab refused this, with a reason" from a bug. Errors about bad input
name the field, the value and what was expected, because the person reading them is a chemist at a
reactor, not the author of the code. Wrap lower-level errors with ``raise ... from err``.
"""

from __future__ import annotations


class AutolabError(Exception):
    """Base class of every error autolab raises deliberately."""


class ConfigError(AutolabError, ValueError):
    """A configuration (campaign file, device file, constructor argument) is invalid.

    The message names the field, the offending value and what is allowed.
    """


class ConditionsError(ConfigError):
    """Reaction conditions lie outside the parameter bounds, a constraint, or the safety envelope.

    Attributes:
        parameter: Name of the offending parameter (or constraint).
        value: The offending value, in the parameter's physical unit.
        allowed: Human-readable description of what is allowed, e.g. ``"[160, 220] °C"``.
    """

    def __init__(self, parameter: str, value: float, allowed: str, detail: str = "") -> None:
        self.parameter = parameter
        self.value = value
        self.allowed = allowed
        message = f"{parameter}={value:g} is outside the allowed range {allowed}"
        if detail:
            message += f": {detail}"
        super().__init__(message)


class SpectrumError(AutolabError, ValueError):
    """Spectral data cannot be analyzed at all (wrong shapes, mismatched grids, empty input).

    Recoverable data-quality problems (saturation, low signal, no peak) are reported as quality
    flags on the features instead, never as this error.
    """


class ExperimentFailed(AutolabError):
    """An experiment ran but produced no usable product (clogging, no emission, bubbles, ...).

    The campaign records the failure, tells the optimizer (outcome ``None``) and goes on.

    Attributes:
        reason: Short machine-readable reason, e.g. ``"clogging"``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


class DeviceFault(ExperimentFailed):
    """A device did not do what the procedure commanded, so the result says nothing about chemistry.

    A pump that delivered a third of its volume, a pump that sat idle after a power cycle, a
    setpoint that drifted: the experiment ran, but its conditions are not the ones journaled. The
    campaign records such a trial as *invalid* (never as a chemistry failure) and does not tell the
    optimizer, which would otherwise learn a false infeasible region.

    A fault found before any reagent of the experiment was fed (a valve turned, a heater
    straying or a stirrer stopped between two experiments, found by the checks before the next
    one starts) is not an experiment at all: ``before_feed`` says so, and the campaign journals
    it as a rig event, keeps the proposal for after recovery and does not count it against the
    experiment budget.

    Attributes:
        device: Name of the device at fault (as in the devices file), e.g. ``"pump_p"``.
        device_log: The device exchanges of the experiment, oldest first.
        before_feed: Found before any reagent of the experiment was fed.
    """

    def __init__(self, device: str, message: str, device_log: tuple[str, ...] = (), *,
                 before_feed: bool = False) -> None:
        self.device = device
        self.device_log = device_log
        self.before_feed = before_feed
        super().__init__("device fault", f"{device}: {message}")


class OptimizerError(AutolabError):
    """The optimizer cannot propose or learn (bad outcomes, incompatible state, ...)."""


class TrackingError(AutolabError):
    """The experiment tracker (MLflow) could not record something; the journal still holds it."""


class JournalError(AutolabError):
    """The campaign journal is unreadable, inconsistent, or belongs to another campaign."""


class HardwareError(AutolabError):
    """A device misbehaved: no reply, garbled reply, alarm, or a setpoint that did not stick."""


class SafetyTrip(HardwareError):
    """A safety interlock tripped; the shutdown sequence has run.

    Attributes:
        device_log: The device exchanges of the experiment that tripped, oldest first, so the
            campaign can journal what the devices said before the trip.
        shutdown: The shutdown's report (``autolab.hardware.safety.ShutdownReport``: every
            step, which devices are left unsafe, what a person must do), or None.
    """

    def __init__(self, message: str, device_log: tuple[str, ...] = (),
                 shutdown: object | None = None) -> None:
        self.device_log = device_log
        self.shutdown = shutdown
        super().__init__(message)


class AwaitingDecision(AutolabError):
    """A proposal waits for a chemist's decision that is not there yet (review mode).

    The campaign stops cleanly (nothing is lost, resume asks again); the CLI exits 3 with this
    message, which says where to write the decision.
    """


class CampaignInterrupted(KeyboardInterrupt):
    """A campaign stopped at once by a second Ctrl-C (or SIGTERM), after its journal was closed.

    A ``KeyboardInterrupt`` (callers that catch that keep working), with what the person at the
    terminal needs to hear: which experiments were cut off (journaled as interrupted; each is
    run again on resume), none when the stop fell between experiments.

    Attributes:
        in_flight: Indices of the experiments that were running.
        run_dir: The campaign's folder (what ``autolab resume`` takes).
    """

    def __init__(self, in_flight: tuple[int, ...], run_dir: str) -> None:
        self.in_flight = in_flight
        self.run_dir = run_dir
        super().__init__(f"interrupted; experiments cut off: {list(in_flight)}")
