"""The devices file: which device is on which port, and how the fluidics connect them.

A frozen pydantic schema (``extra="forbid"``) loaded from YAML. Example (``autolab lab up``
writes one pointing at the virtual lab's ptys)::

    time_scale: 1.0            # lab seconds per wall second (1 for real hardware)
    ports:
      pumps:   {url: /dev/ttyUSB0, baud: 19200}
      heaters: {url: /dev/ttyUSB1, baud: 9600}
    devices:
      pump_cl: {kind: ne1000, port: pumps, address: 0, role: halide_cl, reagent: indium_chloride,
                syringe_ml: 50, diameter_mm: 26.6, limits: {max_rate_ml_min: 20}}
      heater_core: {kind: eurotherm3200, port: heaters, address: 1, role: core,
                    limits: {max_temperature_c: 260}}
      ...
    geometry: {n_core_tanks: 3, n_shell_tanks: 4, tank_volume_ml: 29}

Fluidic roles: each pump has one of :data:`~autolab.hardware.fluidics.ROLES`; heaters and
stirrers serve stage ``core`` or ``shell``; the valves are ``solvent_valve`` (1 = core inlet
for flushing, 2 = junction for make-up) and ``outlet_valve`` (1 = through the flow cell to
collection, 2 = waste); one ``spectrometer`` sits on the outlet flow cell.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autolab.exceptions import ConfigError
from autolab.hardware.fluidics import ROLES, Geometry
from autolab.hardware.limits import Limits
from autolab.yamlfile import read_yaml

_FROZEN = ConfigDict(frozen=True, extra="forbid")

DeviceKind = Literal["ne1000", "eurotherm3200", "ika", "vici", "asp1"]
#: Default baud rate per kind (the manuals' defaults).
DEFAULT_BAUD = {"ne1000": 19200, "eurotherm3200": 9600, "ika": 9600, "vici": 9600,
                "asp1": 115200}


class PortSpec(BaseModel):
    """One serial line.

    Attributes:
        url: Device path or pyserial URL.
        baud: Line speed, Bd (default: the first device's kind default).
        timeout_s: Reply timeout, s.
        retries: Extra attempts on a timeout or garbled reply.
    """

    model_config = _FROZEN

    url: str
    baud: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=0.5, gt=0, le=30)
    retries: int = Field(default=2, ge=0, le=10)


class DeviceSpec(BaseModel):
    """One device.

    Attributes:
        kind: Driver (``ne1000`` pump, ``eurotherm3200`` heater, ``ika`` stirrer, ``vici``
            valve, ``asp1`` spectrometer).
        port: Name of its line in ``ports``.
        address: Network/Modbus address (pumps 0-99, Modbus 1-247).
        role: Pump role, heater/stirrer stage, or valve role.
        reagent: What the pump delivers (reagent totals are kept by this name).
        syringe_ml: Syringe volume, mL (pumps).
        diameter_mm: Syringe inner diameter, mm (pumps).
        safe_mode_s: New Era Safe-mode timeout, s (pumps; 0 = Basic mode).
        ramp_c_per_min: Heating-rate limit given to the controller, °C/min (heaters).
        positions: Number of valve positions (valves).
        limits: Setpoint limits.
    """

    model_config = _FROZEN

    kind: DeviceKind
    port: str
    address: int = Field(default=0, ge=0, le=247)
    role: str = ""
    reagent: str = ""
    syringe_ml: float = Field(default=50.0, gt=0)
    diameter_mm: float = Field(default=26.6, gt=0)
    safe_mode_s: int = Field(default=3, ge=0, le=255)
    ramp_c_per_min: float = Field(default=10.0, gt=0)
    positions: int = Field(default=6, ge=2, le=32)
    limits: Limits = Field(default_factory=Limits)


class DeliverySpec(BaseModel):
    """Delivery tolerance: how far a dispensed volume may stray from rate × time.

    Beyond it the experiment is invalid (see :mod:`autolab.hardware.delivery`).

    Attributes:
        rel: Relative part (syringe bore tolerance, pump accuracy, margin).
        abs_ml: Absolute part, mL (``DIS`` resolution, start-up backlash).
    """

    model_config = _FROZEN

    rel: float = Field(default=0.10, gt=0, lt=1)
    abs_ml: float = Field(default=0.02, ge=0, le=10)


class DevicesConfig(BaseModel):
    """A whole devices file."""

    model_config = _FROZEN

    time_scale: float = Field(default=1.0, gt=0, le=100_000)
    ports: dict[str, PortSpec]
    devices: dict[str, DeviceSpec]
    geometry: Geometry = Field(default_factory=Geometry)
    ambient_c: float = Field(default=25.0)
    safe_temperature_c: float = Field(default=60.0, gt=0, le=150,
                                      description="Blocks below this count as cool, °C.")
    delivery: DeliverySpec = Field(default_factory=DeliverySpec)

    @model_validator(mode="after")
    def _check_graph(self) -> DevicesConfig:
        for name, d in self.devices.items():
            if d.port not in self.ports:
                raise ValueError(f"devices.{name}.port={d.port!r} is not one of the ports "
                                 f"{sorted(self.ports)}")
            allowed = {"ne1000": ROLES, "eurotherm3200": ("core", "shell"),
                       "ika": ("core", "shell"), "vici": ("solvent_valve", "outlet_valve"),
                       "asp1": ("", "outlet")}[d.kind]
            if d.role not in allowed:
                raise ValueError(f"devices.{name}.role={d.role!r}: expected one of "
                                 f"{list(allowed)} for kind {d.kind}")
        roles: list[tuple[str, str]] = [(d.kind, d.role) for d in self.devices.values()]
        needed = [("ne1000", r) for r in ROLES] + [
            ("eurotherm3200", "core"), ("eurotherm3200", "shell"), ("ika", "core"),
            ("ika", "shell"), ("vici", "solvent_valve"), ("vici", "outlet_valve")]
        for kind, role in needed:
            if roles.count((kind, role)) != 1:
                raise ValueError(f"devices: expected exactly one {kind} with role {role!r}, "
                                 f"found {roles.count((kind, role))}")
        if sum(d.kind == "asp1" for d in self.devices.values()) != 1:
            raise ValueError("devices: expected exactly one spectrometer (kind asp1)")
        return self

    def named(self, kind: str, role: str = "") -> str:
        """Name of the device with this kind (and role)."""
        return next(n for n, d in self.devices.items()
                    if d.kind == kind and (not role or d.role == role))


def parse_devices(data: Any, source: str = "devices file") -> DevicesConfig:
    """Validate a loaded devices mapping.

    Raises:
        ConfigError: Naming the field, the offending value and what is allowed.
    """
    try:
        return DevicesConfig.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
            value = e.get("input")
            shown = "" if isinstance(value, dict) else f" (got {value!r})"
            lines.append(f"{loc}: {e['msg']}{shown}")
        raise ConfigError(f"{source}: " + "; ".join(lines)) from err


def load_devices(path: str | Path) -> DevicesConfig:
    """Read and validate a devices YAML file.

    Raises:
        ConfigError: Missing file, bad YAML, or invalid content.
    """
    return parse_devices(read_yaml(path, "devices file"), f"devices file {path}")


def dump_devices(config: DevicesConfig, path: str | Path) -> None:
    """Write a devices file (YAML)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=False),
                                         sort_keys=False), encoding="utf-8")
