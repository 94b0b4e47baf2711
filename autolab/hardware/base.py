"""Capability protocols: what the executor and the safety supervisor need from each device kind.

Real and emulated backends share one interface (ophyd-async / PyLabRobot style): a New Era pump
on a real RS-232 port and the same driver on a virtual-lab pty are both a :class:`Pump`; a
future Harvard or Chemyx driver only has to satisfy the same protocol. All values are in physical
units named in the method names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import DeviceFault
from autolab.hardware.limits import Answer


@dataclass(frozen=True)
class PumpState:
    """What a pump reports when polled.

    Attributes:
        pumping: The motor runs.
        alarm: First alarm code since the last poll (``"S"`` stall, ``"T"`` safe-mode timeout,
            ``"R"`` power reset, ``"E"``/``"O"`` program errors) or "".
        status: Raw status character (``I`` infusing, ``W`` withdrawing, ``S`` stopped, ``P``
            paused, ``T`` timed pause, ``U`` user wait, ``X`` purging, ``A`` alarm).
        alarms: Every alarm code reported since the last poll, oldest first.
    """

    pumping: bool
    alarm: str
    status: str
    alarms: tuple[str, ...] = ()


@runtime_checkable
class Device(Protocol):
    """Anything on a port: has a name and answers a ping."""

    name: str

    def ping(self) -> str:
        """A short identity/status string; raises HardwareError if the device is silent."""
        ...


@runtime_checkable
class Connectable(Protocol):
    """A device with a bring-up step (modes, alarms acknowledged, calibration read)."""

    def connect(self) -> None:
        """Bring the device into its known state; raises HardwareError if it cannot."""
        ...


@runtime_checkable
class Watchdogged(Protocol):
    """A device that stops itself when the host is silent too long (New Era Safe mode).

    Whoever keeps the host busy with other devices for longer than that (bringing up the rest
    of the rig) feeds it, or it stops with an alarm a later poll takes for a fault.
    """

    def feed_watchdog(self) -> None:
        """Say something valid to the device if it has heard nothing for a while.

        An alarm the exchange acknowledges is kept for the device's next status, never lost.

        Raises:
            HardwareError: The device did not answer.
        """
        ...


@runtime_checkable
class Pump(Device, Protocol):
    """A syringe pump (infuse or withdraw at a rate)."""

    syringe_ml: float

    def connect(self) -> None:
        """Bring the pump into a known state (mode, alarms acknowledged, stopped, syringe)."""
        ...

    def set_rate_ml_min(self, rate_ml_min: float) -> None:
        """Set and verify the rate, mL/min."""
        ...

    def set_direction(self, infuse: bool) -> None:
        """Infuse (True) or withdraw (False)."""
        ...

    def start(self) -> None:
        """Start pumping (verified by the status)."""
        ...

    def stop(self) -> None:
        """Stop pumping (verified by the status)."""
        ...

    def state(self) -> PumpState:
        """Poll status and alarm (also feeds the pump's Safe-mode watchdog)."""
        ...

    def dispensed_ml(self) -> tuple[float, float]:
        """Volume infused and withdrawn since the last clear, mL."""
        ...

    def clear_dispensed(self) -> None:
        """Zero both dispensed counters."""
        ...

    def rate_read_ml_min(self) -> float:
        """The rate the pump reports now, mL/min (not the last one set)."""
        ...

    def take_alarms(self) -> tuple[str, ...]:
        """Alarms the pump reported (to any command) since the last call, oldest first."""
        ...


@runtime_checkable
class AnswersRateDigits(Protocol):
    """A pump whose rate answer keeps the digits it was written with (New Era, Harvard, Chemyx).

    The supervisor's rate check then holds the rate to those digits, as the read-back did
    (:func:`~autolab.hardware.limits.rate_matches`); a pump without it is compared exactly.
    """

    def rate_answer_ml_min(self) -> Answer:
        """The rate the pump reports now and one unit of its last digit, mL/min."""
        ...


@runtime_checkable
class TemperatureController(Device, Protocol):
    """A heater block (or one tank's heater) controller.

    Attributes:
        ramp_c_per_min: The heating-rate limit the controller ramps its setpoint at, °C/min
            (the procedure estimates heat-up waits from it).
    """

    ramp_c_per_min: float

    def set_temperature_c(self, setpoint_c: float) -> None:
        """Set and verify the (remote) setpoint, °C."""
        ...

    def temperature_c(self) -> float:
        """Process value, °C."""
        ...

    def fault(self) -> str:
        """Worst fault from the status word (``"sensor_break"`` ...) or ``""``."""
        ...

    def cut_output(self) -> None:
        """Force the heater output to 0 % now (hard fault)."""
        ...


@runtime_checkable
class Stirrer(Device, Protocol):
    """A stirrer under one stage."""

    def set_speed_rpm(self, rpm: float) -> None:
        """Set and verify the speed setpoint, rpm."""
        ...

    def start(self) -> None:
        """Motor on."""
        ...

    def stop(self) -> None:
        """Motor off."""
        ...

    def speed_rpm(self) -> float:
        """Actual speed, rpm."""
        ...


def check_light_after_frame(device: str, differs: str) -> None:
    """A frame is the light it was set for only if the light path still reads as set after it.

    ``differs`` is the light path's :meth:`Watched.check` read right after the frame. A source
    that went out after its setting was checked reads dark, and a dark frame passes for a dark
    sample: on the last lit frame of an experiment (the reference dye) nothing else would find
    it before the analysis called it chemistry ("no usable emission").

    Raises:
        DeviceFault: ``differs`` says the light path is not as set.
    """
    if differs:
        raise DeviceFault(device, f"light path not as set after the frame ({differs}): the "
                          "frame is not of the light it was set for (a source that went out "
                          "reads dark); experiment invalid")


@runtime_checkable
class Watched(Protocol):
    """A device the supervisor checks against what was last commanded to it (valves, light).

    A pump, heater or stirrer is checked through its own readings; a valve or a light path
    has no reading but its state, which nobody else would look at mid-experiment: a valve
    turned by hand, or a lamp that burnt out, would otherwise pass as chemistry.
    """

    name: str

    def check(self) -> str:
        """What differs from the last command (``""``: nothing, or nothing commanded yet).

        For example ``"position 2, commanded 3"``.

        Raises:
            HardwareError: The device did not answer.
        """
        ...


@runtime_checkable
class Valve(Device, Protocol):
    """A multiposition selection valve."""

    def move(self, position: int) -> None:
        """Move and verify the position (1-based)."""
        ...

    def position(self) -> int:
        """Current position."""
        ...


@runtime_checkable
class Spectrometer(Device, Protocol):
    """The inline optics: detector, light source, shutter, cell selector."""

    @property
    def wavelengths_nm(self) -> NDArray[np.float64]:
        """Pixel wavelengths, nm."""
        ...

    @property
    def saturation_counts(self) -> float:
        """Full-scale counts."""
        ...

    @property
    def excitation_nm(self) -> float:
        """Excitation wavelength of the emission frames, nm."""
        ...

    @property
    def path_length_cm(self) -> float:
        """Flow-cell path length, cm."""
        ...

    def set_integration_ms(self, integration_ms: float) -> None:
        """Set and verify the integration time, ms."""
        ...

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        """Light source (``ABS``/``EXC``/``OFF``), shutter, and cell (``SAMPLE``/``DYE``)."""
        ...

    def acquire(self) -> NDArray[np.float64]:
        """One frame of raw counts, ``(P,)``."""
        ...
