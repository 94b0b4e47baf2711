"""The rig: every device of a devices file, typed on the capability protocols, with a shared log.

:meth:`Rig.open` builds each device through its kind's builder in
:mod:`autolab.hardware.registry` and files it by capability (pumps, heaters, stirrers and valves
by role; one spectrometer; anything else, such as a light path, under :attr:`Rig.others`). The
rig never names a kind, so a new kind plugs in by registering itself; the procedure and the
supervisor see only :class:`~autolab.hardware.base.Pump`,
:class:`~autolab.hardware.base.TemperatureController`, :class:`~autolab.hardware.base.Stirrer`,
:class:`~autolab.hardware.base.Valve` and :class:`~autolab.hardware.base.Spectrometer`, so a
simulated rig of in-process devices is a :class:`Rig` too (:meth:`Rig.from_devices`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.base import (
    Connectable,
    Device,
    Pump,
    Spectrometer,
    Stirrer,
    TemperatureController,
    Valve,
    Watchdogged,
)
from autolab.hardware.devices import DevicesConfig
from autolab.hardware.limits import Limits
from autolab.hardware.registry import Category, DeviceKind, get_kind
from autolab.hardware.transport import ExchangeLog, Transport

#: The protocol each capability's devices must satisfy.
CAPABILITY: dict[Category, type] = {
    "pump": Pump, "heater": TemperatureController, "stirrer": Stirrer, "valve": Valve,
    "spectrometer": Spectrometer, "light": Device}


@dataclass
class Rig:
    """Devices by fluidic role, typed on the capability protocols.

    Attributes:
        config: The devices file.
        log: Exchange log shared by all transports.
        transports: Transport by port name (empty for a rig of in-process devices).
        pumps: Pump by role (:data:`~autolab.hardware.fluidics.ROLES`).
        heaters: Controller by role: a stage block (``core``, ``shell``) or a tank
            (``tank<i>``).
        stirrers: Stirrer by role, like the heaters.
        valves: Valve by role (``solvent_valve``, ``outlet_valve``, optional ``sulfur_valve``).
        spectrometer: The inline optics.
        others: Devices that serve another device (a light path), by name.
    """

    config: DevicesConfig
    log: ExchangeLog
    transports: dict[str, Transport]
    pumps: dict[str, Pump]
    heaters: dict[str, TemperatureController]
    stirrers: dict[str, Stirrer]
    valves: dict[str, Valve]
    spectrometer: Spectrometer
    others: dict[str, Device] = field(default_factory=dict)

    @property
    def solvent_valve(self) -> Valve:
        """Flush/make-up valve (1 = core inlet, 2 = junction)."""
        return self.valves["solvent_valve"]

    @property
    def outlet_valve(self) -> Valve:
        """Outlet valve (1 = flow cell to collection, 2 = waste)."""
        return self.valves["outlet_valve"]

    @property
    def sulfur_valve(self) -> Valve | None:
        """Selection valve of the sulfur injection tank, if the rig has one."""
        return self.valves.get("sulfur_valve")

    @classmethod
    def open(cls, config: DevicesConfig, log: ExchangeLog | None = None) -> Rig:
        """Open every port and build every device through its kind (no bytes sent yet).

        Raises:
            HardwareError: A port or device cannot be opened (what was opened is closed again).
            ConfigError: A kind's builder returned something that lacks its capability.
        """
        log = log or ExchangeLog()
        transports: dict[str, Transport] = {}
        try:
            for pname, spec in config.ports.items():
                fmt = spec.format or _format(config, pname)
                transports[pname] = Transport(spec.url, baudrate=spec.baud or _baud(config, pname),
                                              timeout_s=spec.timeout_s, retries=spec.retries,
                                              log=log, bytesize=int(fmt[0]), parity=fmt[1],
                                              stopbits=int(fmt[2]), **spec.flow_control())
            built = _Builder(config, transports).build_all()
        except Exception:
            for t in transports.values():
                t.close()
            raise
        return cls.from_devices(config, built, log=log, transports=transports)

    @classmethod
    def from_devices(cls, config: DevicesConfig, devices: Mapping[str, Device], *,
                     log: ExchangeLog | None = None,
                     transports: dict[str, Transport] | None = None) -> Rig:
        """File already-built devices (by devices-file name) into a rig.

        This is how a rig of in-process devices (the simulated rig) is assembled: it checks
        each device against its capability exactly as :meth:`open` does.

        Raises:
            ConfigError: A device is missing or lacks the protocol of its capability.
        """
        slots: dict[Category, dict[str, Device]] = {c: {} for c in CAPABILITY}
        for name, spec in config.devices.items():
            if name not in devices:
                raise ConfigError(f"rig: device {name!r} of the devices file was not built")
            category = get_kind(spec.kind).category
            dev = devices[name]
            if not isinstance(dev, CAPABILITY[category]):
                raise ConfigError(f"devices.{name}: kind {spec.kind} built a "
                                  f"{type(dev).__name__}, which is not a "
                                  f"{CAPABILITY[category].__name__}")
            key = name if category == "light" else spec.role
            slots[category][key] = dev
        spectrometers = [d for d in slots["spectrometer"].values()
                         if isinstance(d, Spectrometer)]
        if len(spectrometers) != 1:
            raise ConfigError(f"rig: expected one spectrometer, got {len(spectrometers)}")
        # every device passed its capability check above: these filters drop nothing
        return cls(config, log or ExchangeLog(), transports or {},
                   pumps={r: d for r, d in slots["pump"].items() if isinstance(d, Pump)},
                   heaters={r: d for r, d in slots["heater"].items()
                            if isinstance(d, TemperatureController)},
                   stirrers={r: d for r, d in slots["stirrer"].items() if isinstance(d, Stirrer)},
                   valves={r: d for r, d in slots["valve"].items() if isinstance(d, Valve)},
                   spectrometer=spectrometers[0], others=slots["light"])

    def devices(self) -> list[Device]:
        """Every device, in the order :meth:`connect` brings them up."""
        return [*self.others.values(), *self.pumps.values(), *self.heaters.values(),
                *self.stirrers.values(), *self.valves.values(), self.spectrometer]

    def limits(self, name: str) -> Limits:
        """Setpoint limits of device ``name`` (from the devices file)."""
        return self.config.devices[name].limits

    def reagent(self, role: str) -> str:
        """What the pump of ``role`` delivers (the devices file's ``reagent``, else the role)."""
        spec = self.config.devices[self.pumps[role].name]
        return str(getattr(spec, "reagent", "") or role)

    def connect(self) -> None:
        """Bring every device into its known state (modes, alarms acknowledged, calibration).

        After each device, the devices already up that stop themselves when the host is silent
        (:class:`~autolab.hardware.base.Watchdogged`: pumps in New Era Safe mode) are fed. The
        New Era manual's Safe-mode timer counts from the last valid packet whether the pump
        pumps or not; with 0.5 s reply timeouts the first of seven pumps heard nothing for
        3.3-3.6 s while the rest came up, past the default ``safe_mode_s`` of 3, and the
        supervisor's first poll tripped on its timeout alarm.
        """
        up: list[Watchdogged] = []
        for dev in self.devices():
            if isinstance(dev, Connectable):
                dev.connect()
            for earlier in up:
                earlier.feed_watchdog()
            if isinstance(dev, Watchdogged):
                up.append(dev)

    def feed_watchdogs(self, skip: Collection[str] = ()) -> tuple[str, ...]:
        """Feed every device that stops itself when the host is silent (New Era Safe mode).

        Whoever keeps the host busy elsewhere for longer than a pump's ``safe_mode_s`` (the
        shutdown's valve moves and stirrer starts, with the supervisor already stopped) calls
        this between its steps, or the stopped pumps all time out with alarm ``T`` and the next
        look must wait out each alarm reply.

        Args:
            skip: Device names not to feed (those known not to answer: each would cost its
                timeouts again).

        Returns:
            The names of the devices that did not answer.
        """
        silent: list[str] = []
        for dev in self.devices():
            if isinstance(dev, Watchdogged) and dev.name not in skip:
                try:
                    dev.feed_watchdog()
                except HardwareError:
                    silent.append(dev.name)
        return tuple(silent)

    def close(self) -> None:
        """Close every port (idempotent)."""
        for t in self.transports.values():
            with contextlib.suppress(Exception):
                t.close()


def _kinds_on(config: DevicesConfig, port: str) -> Iterator[DeviceKind[Any]]:
    """The kinds of the devices on ``port``, in the devices file's order."""
    return (get_kind(d.kind) for d in config.devices.values() if d.port_name() == port)


def _baud(config: DevicesConfig, port: str) -> int:
    """The line speed of a port without one: its first device's kind default."""
    return next((k.default_baud for k in _kinds_on(config, port) if k.default_baud), 9600)


def _format(config: DevicesConfig, port: str) -> str:
    """The character format of a port without one.

    What its first device's entry calls for
    (:meth:`~autolab.hardware.devices.DeviceSpecBase.line_format`), else its kind default.
    """
    for spec in config.devices.values():
        if spec.port_name() == port:
            return spec.line_format() or get_kind(spec.kind).default_format
    return "8N1"


class _Builder:
    """Builds each device once, on demand, so a device may use another (a light path)."""

    def __init__(self, config: DevicesConfig, transports: dict[str, Transport]) -> None:
        self.config = config
        self.transports = transports
        self.time_scale = config.time_scale
        self.built: dict[str, Device] = {}
        self._building: list[str] = []

    def transport(self, port: str) -> Transport:
        """The opened line ``port``."""
        return self.transports[port]

    def device(self, name: str) -> Device:
        """Device ``name``, built now if not yet.

        Raises:
            ConfigError: Devices that refer to each other in a cycle.
        """
        if name in self.built:
            return self.built[name]
        if name in self._building:
            raise ConfigError(f"devices: {' -> '.join([*self._building, name])} refer to each "
                              f"other in a cycle")
        self._building.append(name)
        spec = self.config.devices[name]
        self.built[name] = get_kind(spec.kind).build(name, spec, self)
        self._building.pop()
        return self.built[name]

    def build_all(self) -> dict[str, Device]:
        """Every device of the file."""
        for name in self.config.devices:
            self.device(name)
        return self.built
