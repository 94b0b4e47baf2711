"""The rig: every driver of a devices file, on one transport per port, with a shared log."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from autolab.hardware.devices import DEFAULT_BAUD, DevicesConfig
from autolab.hardware.drivers import (
    Eurotherm3200,
    IKAStirrer,
    NE1000Pump,
    SerialSpectrometer,
    VICIValve,
)
from autolab.hardware.transport import ExchangeLog, Transport


@dataclass
class Rig:
    """Drivers by fluidic role.

    Attributes:
        config: The devices file.
        log: Exchange log shared by all transports.
        transports: Transport by port name.
        pumps: Pump by role.
        heaters: Controller by stage (``core``, ``shell``).
        stirrers: Stirrer by stage.
        solvent_valve / outlet_valve: The two valves.
        spectrometer: The inline optics.
    """

    config: DevicesConfig
    log: ExchangeLog
    transports: dict[str, Transport]
    pumps: dict[str, NE1000Pump]
    heaters: dict[str, Eurotherm3200]
    stirrers: dict[str, IKAStirrer]
    solvent_valve: VICIValve
    outlet_valve: VICIValve
    spectrometer: SerialSpectrometer

    @classmethod
    def open(cls, config: DevicesConfig, log: ExchangeLog | None = None) -> Rig:
        """Open every port and build the drivers (no bytes sent yet).

        Raises:
            HardwareError: A port cannot be opened (ports opened so far are closed again).
        """
        log = log or ExchangeLog()
        transports: dict[str, Transport] = {}
        try:
            for pname, spec in config.ports.items():
                kinds = [d.kind for d in config.devices.values() if d.port == pname]
                baud = spec.baud or (DEFAULT_BAUD[kinds[0]] if kinds else 9600)
                transports[pname] = Transport(spec.url, baudrate=baud, timeout_s=spec.timeout_s,
                                              retries=spec.retries, log=log)
        except Exception:
            for t in transports.values():
                t.close()
            raise
        pumps: dict[str, NE1000Pump] = {}
        heaters: dict[str, Eurotherm3200] = {}
        stirrers: dict[str, IKAStirrer] = {}
        valves: dict[str, VICIValve] = {}
        spec_dev: SerialSpectrometer | None = None
        for name, d in config.devices.items():
            t = transports[d.port]
            if d.kind == "ne1000":
                pumps[d.role] = NE1000Pump(t, name, address=d.address, diameter_mm=d.diameter_mm,
                                           syringe_ml=d.syringe_ml, safe_mode_s=d.safe_mode_s,
                                           limits=d.limits)
            elif d.kind == "eurotherm3200":
                heaters[d.role] = Eurotherm3200(t, name, address=d.address,
                                                ramp_c_per_min=d.ramp_c_per_min, limits=d.limits)
            elif d.kind == "ika":
                stirrers[d.role] = IKAStirrer(t, name, limits=d.limits)
            elif d.kind == "vici":
                valves[d.role] = VICIValve(t, name, positions=d.positions)
            else:
                spec_dev = SerialSpectrometer(t, name)
        assert spec_dev is not None  # the schema requires one
        return cls(config, log, transports, pumps, heaters, stirrers, valves["solvent_valve"],
                   valves["outlet_valve"], spec_dev)

    def devices(self) -> list[NE1000Pump | Eurotherm3200 | IKAStirrer | VICIValve
                             | SerialSpectrometer]:
        """Every driver."""
        return [*self.pumps.values(), *self.heaters.values(), *self.stirrers.values(),
                self.solvent_valve, self.outlet_valve, self.spectrometer]

    def connect(self) -> None:
        """Bring every device into its known state (modes, alarms acknowledged, calibration)."""
        for dev in self.devices():
            dev.connect()

    def close(self) -> None:
        """Close every port (idempotent)."""
        for t in self.transports.values():
            with contextlib.suppress(Exception):
                t.close()
