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
stirrers serve a stage block (``core``: the first ``n_core_tanks`` tanks, ``shell``: the rest)
or one tank (``tank<i>``, 1-based), and every tank has exactly one of each; the valves are
``solvent_valve`` (1 = core inlet for flushing, 2 = junction for make-up), ``outlet_valve``
(1 = through the flow cell to collection, 2 = waste) and, optionally, ``sulfur_valve``: a
selection valve on the shell-feed line whose position ``j`` feeds tank ``inject_tanks[j-1]``
(the seed paper injects sulfur at a chosen tank); one ``spectrometer`` sits on the outlet flow
cell. Each entry is validated by its kind's own schema (:mod:`autolab.hardware.registry`):
serial kinds name a ``port``, an Ocean spectrometer a USB ``serial_number``. The full reference
is docs/hardware.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from autolab.exceptions import ConfigError
from autolab.hardware.fluidics import ROLES, Geometry
from autolab.hardware.limits import Limits
from autolab.hardware.registry import Category, get_kind, kind_names
from autolab.yamlfile import read_yaml

_FROZEN = ConfigDict(frozen=True, extra="forbid")

#: Valve roles: the flush/make-up valve, the outlet valve, and the optional selection valve on
#: the shell-feed (sulfur) line that chooses the injection tank.
VALVE_ROLES = ("solvent_valve", "outlet_valve", "sulfur_valve")
#: Stage blocks a heater or stirrer may serve (besides one tank, ``tank<i>``).
STAGE_ROLES = ("core", "shell")
_TANK_ROLE = re.compile(r"^tank([1-9][0-9]?)$")


def tank_role(tank: int) -> str:
    """The role of a heater or stirrer under one tank (1-based): ``tank3``."""
    return f"tank{tank}"


def role_tanks(role: str, geometry: Geometry) -> tuple[int, ...]:
    """The tanks (1-based, flow order) a heater/stirrer role serves in this geometry.

    ``core`` is the block under the first ``n_core_tanks`` tanks, ``shell`` the block under the
    rest (the plumbing, not the injection position, fixes which tanks sit on a block);
    ``tank<i>`` is tank ``i`` alone. Unknown roles serve none.
    """
    n_core, n = geometry.n_core_tanks, geometry.n_core_tanks + geometry.n_shell_tanks
    if role == "core":
        return tuple(range(1, n_core + 1))
    if role == "shell":
        return tuple(range(n_core + 1, n + 1))
    m = _TANK_ROLE.match(role)
    return (int(m.group(1)),) if m else ()


def _is_stage_or_tank(role: str) -> bool:
    return role in STAGE_ROLES or _TANK_ROLE.match(role) is not None


#: Roles each capability may take (a predicate, plus how to say what is allowed).
ROLE_RULES: dict[Category, tuple[Callable[[str], bool], str]] = {
    "pump": (lambda r: r in ROLES, f"one of {list(ROLES)}"),
    "heater": (_is_stage_or_tank, "'core', 'shell' or 'tank<i>' (i = 1-based tank)"),
    "stirrer": (_is_stage_or_tank, "'core', 'shell' or 'tank<i>' (i = 1-based tank)"),
    "valve": (lambda r: r in VALVE_ROLES, f"one of {list(VALVE_ROLES)}"),
    "spectrometer": (lambda r: r in ("", "outlet"), "'' or 'outlet'"),
    "light": (lambda r: r == "", "'' (a light path serves the spectrometer that names it)"),
}


#: Flow control a port may ask for -> pyserial's settings for it (``Serial(rtscts=...,
#: xonxoff=...)``). ``none`` is every kind's default: pyserial raises RTS on open either way,
#: so a unit that waits for RTS before it sends is served, and a line whose cable lacks the
#: handshake wires works (with ``rtscts`` on it every write would wait for a CTS that never
#: comes). ``rtscts`` is for a unit that drops CTS while busy (older Julabo units: "hardware
#: handshake"; the CF41's public driver opens its port with ``rtscts=True``). ``xonxoff`` is for
#: a text line only: the host's line discipline swallows XON/XOFF bytes from the device (a
#: Harvard chain in poll mode ends each prompt with an XON; a binary Modbus RTU frame may hold
#: either byte).
HANDSHAKES: dict[str, dict[str, bool]] = {"none": {}, "rtscts": {"rtscts": True},
                                          "xonxoff": {"xonxoff": True}}


class PortSpec(BaseModel):
    """One serial line.

    Attributes:
        url: Device path or pyserial URL.
        baud: Line speed, Bd (default: the first device's kind default).
        timeout_s: Reply timeout, s.
        retries: Extra attempts on a timeout or garbled reply.
        format: Character format, data bits + parity + stop bits (``8N1``, ``7E1`` ...;
            default: the first device's kind default).
        handshake: Flow control: ``none`` (default), ``rtscts`` (hardware) or ``xonxoff``
            (software); see :data:`HANDSHAKES`.
    """

    model_config = _FROZEN

    url: str
    baud: int | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=0.5, gt=0, le=30)
    retries: int = Field(default=2, ge=0, le=10)
    format: str | None = Field(default=None, pattern=r"^[78][NEO][12]$")
    handshake: Literal["none", "rtscts", "xonxoff"] = "none"

    def flow_control(self) -> dict[str, bool]:
        """The pyserial settings of :attr:`handshake` (``rtscts``/``xonxoff``; none: empty)."""
        return dict(HANDSHAKES[self.handshake])


class DeviceSpecBase(BaseModel):
    """What every devices-file entry has; each kind's schema extends it with its own fields.

    Attributes:
        kind: A registered kind (:func:`autolab.hardware.registry.kind_names`).
        role: Pump role, heater/stirrer stage or tank, valve role (see the module docstring).
        limits: Setpoint limits.
    """

    model_config = _FROZEN

    kind: str
    role: str = ""
    limits: Limits = Field(default_factory=Limits)

    def port_name(self) -> str | None:
        """The name of its serial line in ``ports`` (``None``: it has no serial line)."""
        return None

    def line_format(self) -> str | None:
        """The character format its own settings call for, where the port gives none.

        ``None``: the kind's default. A kind whose entry selects a framing that needs its
        own format (an Omega with ``modbus_mode: rtu``: 8 data bits) says it here.
        """
        return None

    def connection(self, config: DevicesConfig) -> str:
        """Where the device is, for people (a port URL, a USB serial number)."""
        return "(built in)"

    def references(self) -> tuple[tuple[str, str, Category], ...]:
        """Other devices of the file this one uses.

        Returns:
            (its field, the device name, the capability that device must have) per reference.
        """
        return ()


class SerialSpecBase(DeviceSpecBase):
    """A device on a serial line of ``ports`` (every RS-232/RS-485 kind's schema extends it).

    Attributes:
        port: Name of its line in ``ports``.
    """

    port: str

    def port_name(self) -> str:
        """Its line in ``ports``."""
        return self.port

    def connection(self, config: DevicesConfig) -> str:
        """The port URL."""
        return config.ports[self.port].url if self.port in config.ports else self.port


class SyringePumpSpec(SerialSpecBase):
    """A syringe pump on a serial line: what every pump kind's entry has.

    Attributes:
        reagent: What the pump delivers (reagent totals are kept by this name).
        syringe_ml: Syringe volume, mL.
        diameter_mm: Syringe inner diameter, mm.
    """

    reagent: str = ""
    syringe_ml: float = Field(default=50.0, gt=0)
    diameter_mm: float = Field(default=26.6, gt=0)


class DeviceSpec(SerialSpecBase):
    """An RS-232/RS-485 device: kinds ``ne1000``, ``eurotherm3200``, ``ika``, ``vici``, ``asp1``.

    Attributes:
        port: Name of its line in ``ports``.
        address: Network/Modbus address (pumps 0-99, Modbus 1-247).
        reagent: What the pump delivers (reagent totals are kept by this name).
        syringe_ml: Syringe volume, mL (pumps).
        diameter_mm: Syringe inner diameter, mm (pumps).
        safe_mode_s: New Era Safe-mode timeout, s (pumps; 0 = Basic mode).
        ramp_c_per_min: Heating-rate limit given to the controller, °C/min (heaters).
        positions: Number of valve positions (valves).
        decimals: Decimal places of a Modbus controller's temperature registers, as set on
            the instrument (its display resolution; heaters).
        inject_tanks: The sulfur valve's plumbing: position ``j`` (1-based) feeds tank
            ``inject_tanks[j-1]`` (role ``sulfur_valve`` only).
    """

    address: int = Field(default=0, ge=0, le=247)
    reagent: str = ""
    syringe_ml: float = Field(default=50.0, gt=0)
    diameter_mm: float = Field(default=26.6, gt=0)
    safe_mode_s: int = Field(default=3, ge=0, le=255)
    ramp_c_per_min: float = Field(default=10.0, gt=0)
    positions: int = Field(default=6, ge=2, le=32)
    inject_tanks: tuple[int, ...] = ()
    decimals: int = Field(default=1, ge=0, le=2)


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


class SpecError(ValueError):
    """A devices-file entry is invalid; the message names every bad field in full."""


def _error_lines(err: ValidationError, prefix: str) -> list[str]:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in (prefix, *e["loc"]) if str(x)) or "(top level)"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        cause = e.get("ctx", {}).get("error") if e["type"] == "value_error" else None
        msg = str(cause) if isinstance(cause, SpecError) else e["msg"]
        lines.append(msg if isinstance(cause, SpecError) else f"{loc}: {msg}{shown}")
    return lines


def _spec_of(name: str, value: object) -> DeviceSpecBase:
    """Validate one entry with its kind's schema."""
    if isinstance(value, DeviceSpecBase):
        return value
    if not isinstance(value, Mapping):
        raise SpecError(f"devices.{name}: expected a mapping with a 'kind' (got {value!r})")
    kind = value.get("kind")
    if kind is None:
        raise SpecError(f"devices.{name}.kind: Field required; expected one of "
                        f"{list(kind_names())}")
    try:
        schema = get_kind(str(kind)).spec
    except KeyError:
        raise SpecError(f"devices.{name}.kind: {kind!r} is not a known device kind; expected "
                        f"one of {list(kind_names())}") from None
    try:
        spec: DeviceSpecBase = schema.model_validate(dict(value))
    except ValidationError as err:
        raise SpecError("; ".join(_error_lines(err, f"devices.{name}"))) from None
    return spec


#: Supervisor polls a device-side watchdog must see within its timeout.
WATCHDOG_POLLS = 3


class DevicesConfig(BaseModel):
    """A whole devices file."""

    model_config = _FROZEN

    time_scale: float = Field(default=1.0, gt=0, le=100_000)
    ports: dict[str, PortSpec] = Field(default_factory=dict)
    devices: dict[str, SerializeAsAny[DeviceSpecBase]]
    geometry: Geometry = Field(default_factory=Geometry)
    ambient_c: float = Field(default=25.0)
    safe_temperature_c: float = Field(default=60.0, gt=0, le=150,
                                      description="Blocks below this count as cool, °C.")
    delivery: DeliverySpec = Field(default_factory=DeliverySpec)
    temperature_hold_c: float | None = Field(
        default=10.0, gt=0, le=100,
        description="Largest deviation of a block from its setpoint, once reached, before the "
                    "experiment is invalid, °C (null: not checked).")

    @field_validator("devices", mode="before")
    @classmethod
    def _dispatch_kinds(cls, value: object) -> object:
        if not isinstance(value, Mapping):
            return value
        return {str(name): _spec_of(str(name), v) for name, v in value.items()}

    @model_validator(mode="after")
    def _check_graph(self) -> DevicesConfig:
        for name, d in self.devices.items():
            _check_entry(self, name, d)
        _check_counts(self)
        for category in ("heater", "stirrer"):
            _check_coverage(self, category)
        _check_sulfur_valve(self)
        return self

    # ------------------------------------------------------------------ lookups
    def category(self, name: str) -> Category:
        """The capability of device ``name``."""
        return get_kind(self.devices[name].kind).category

    def of_category(self, category: Category) -> dict[str, DeviceSpecBase]:
        """Devices of one capability, by name, in file order."""
        return {n: d for n, d in self.devices.items()
                if get_kind(d.kind).category == category}

    def by_role(self, category: Category) -> dict[str, str]:
        """Device name by role, for one capability."""
        return {d.role: n for n, d in self.of_category(category).items()}

    @property
    def n_tanks(self) -> int:
        """Tanks in the cascade."""
        return self.geometry.n_core_tanks + self.geometry.n_shell_tanks

    def tank_device(self, category: Category, tank: int) -> str:
        """The heater or stirrer (name) under tank ``tank`` (1-based)."""
        return next(n for n, d in self.of_category(category).items()
                    if tank in role_tanks(d.role, self.geometry))

    def where(self, name: str) -> str:
        """Where device ``name`` is connected, for people."""
        return self.devices[name].connection(self)

    def named(self, kind: str, role: str = "") -> str:
        """Name of the device with this kind (and role)."""
        return next(n for n, d in self.devices.items()
                    if d.kind == kind and (not role or d.role == role))

    def watchdog_problems(self, poll_period_s: float) -> list[str]:
        """Devices whose own watchdog the supervisor would let run out, polling this often.

        A pump in New Era Safe mode stops itself and alarms when no valid packet comes for
        ``safe_mode_s``; the supervisor's poll is what keeps it fed during an experiment. A
        poll period above a third of that timeout (the drivers feed a watchdog when a third has
        passed, leaving two more polls for a slow round or a retried reply) would stop the
        pumps mid-experiment with alarm ``T``, so such a campaign is refused before it starts.

        Args:
            poll_period_s: The executor's ``poll_period_s``, wall s.

        Returns:
            One line per device (empty: every watchdog is fed in time).
        """
        problems = []
        for name, d in self.devices.items():
            timeout_s = float(getattr(d, "safe_mode_s", 0) or 0)
            if timeout_s > 0 and poll_period_s > timeout_s / WATCHDOG_POLLS:
                problems.append(
                    f"devices.{name}.safe_mode_s={timeout_s:g} s needs a supervisor poll at "
                    f"least every {timeout_s / WATCHDOG_POLLS:g} s (a third of it), got "
                    f"poll_period_s={poll_period_s:g}")
        return problems


def _check_entry(config: DevicesConfig, name: str, d: DeviceSpecBase) -> None:
    kind = get_kind(d.kind)
    if not isinstance(d, kind.spec):
        raise SpecError(f"devices.{name}: kind {d.kind} needs a {kind.spec.__name__} entry, "
                        f"got {type(d).__name__}")
    port = d.port_name()
    if port is not None and port not in config.ports:
        raise SpecError(f"devices.{name}.port={port!r} is not one of the ports "
                        f"{sorted(config.ports)}")
    ok, allowed = ROLE_RULES[kind.category]
    if not ok(d.role):
        raise SpecError(f"devices.{name}.role={d.role!r}: expected {allowed} for kind {d.kind} "
                        f"({kind.category})")
    for tank in role_tanks(d.role, config.geometry):
        if not 1 <= tank <= config.n_tanks:
            raise SpecError(f"devices.{name}.role={d.role!r}: tank {tank} does not exist (the "
                            f"geometry has tanks 1-{config.n_tanks})")
    for fld, ref, category in d.references():
        if ref not in config.devices:
            raise SpecError(f"devices.{name}.{fld}={ref!r} is not a device of the file "
                            f"(devices: {sorted(config.devices)})")
        if config.category(ref) != category:
            raise SpecError(f"devices.{name}.{fld}={ref!r}: expected a {category} device "
                            f"(kinds {_kinds_of(category)}), {ref} is a {config.category(ref)}")
    if kind.check_entry is not None:
        try:
            kind.check_entry(name, d)
        except ValueError as err:
            raise SpecError(str(err)) from None
    if isinstance(d, DeviceSpec) and d.inject_tanks and d.role != "sulfur_valve":
        raise SpecError(f"devices.{name}.inject_tanks: only a valve with role 'sulfur_valve' "
                        f"has injection ports (role is {d.role!r})")


def _check_counts(config: DevicesConfig) -> None:
    """Roles unique per capability; the fixed roles present exactly once."""
    for category in ("pump", "heater", "stirrer", "valve", "spectrometer"):
        roles = [d.role for d in config.of_category(category).values()]
        dupes = sorted({r for r in roles if roles.count(r) > 1})
        if dupes:
            names = [n for n, d in config.of_category(category).items()
                     if d.role in dupes]
            raise SpecError(f"devices: role {dupes[0]!r} is taken by more than one {category} "
                            f"({', '.join(names)}); roles must be unique")
    needed: list[tuple[Category, str]] = [("pump", r) for r in ROLES] + [
        ("valve", "solvent_valve"), ("valve", "outlet_valve")]
    for category, role in needed:
        if role not in config.by_role(category):
            raise SpecError(f"devices: expected exactly one {category} with role {role!r}, "
                            f"found 0")
    n_spec = len(config.of_category("spectrometer"))
    if n_spec != 1:
        raise SpecError(f"devices: expected exactly one spectrometer (kinds "
                        f"{_kinds_of('spectrometer')}), found {n_spec}")


def _kinds_of(category: Category) -> list[str]:
    return [k for k in kind_names() if get_kind(k).category == category]


def _check_coverage(config: DevicesConfig, category: Category) -> None:
    """Every tank has exactly one heater (stirrer): a stage block or its own."""
    served: dict[int, list[str]] = {t: [] for t in range(1, config.n_tanks + 1)}
    for name, d in config.of_category(category).items():
        for tank in role_tanks(d.role, config.geometry):
            served[tank].append(f"{name} ({d.role})")
    for tank, names in served.items():
        if not names:
            block = "core" if tank <= config.geometry.n_core_tanks else "shell"
            raise SpecError(f"devices: tank {tank} has no {category}: add one with role "
                            f"'{tank_role(tank)}' or '{block}'")
        if len(names) > 1:
            raise SpecError(f"devices: tank {tank} has {len(names)} {category}s "
                            f"({', '.join(names)}); expected exactly one")


def _check_sulfur_valve(config: DevicesConfig) -> None:
    name = config.by_role("valve").get("sulfur_valve")
    if name is None:
        return
    d = config.devices[name]
    tanks = d.inject_tanks if isinstance(d, DeviceSpec) else ()
    positions = d.positions if isinstance(d, DeviceSpec) else 0
    if not tanks:
        raise SpecError(f"devices.{name}.inject_tanks: a sulfur valve needs its plumbing, the "
                        f"tank each position feeds (e.g. [4, 5, 6])")
    if len(tanks) > positions:
        raise SpecError(f"devices.{name}.inject_tanks: {len(tanks)} ports listed but the valve "
                        f"has {positions} positions")
    if len(set(tanks)) != len(tanks):
        raise SpecError(f"devices.{name}.inject_tanks={list(tanks)}: a tank is listed twice")
    for tank in tanks:
        if not 2 <= tank <= config.n_tanks:
            raise SpecError(f"devices.{name}.inject_tanks: tank {tank} cannot take the sulfur "
                            f"feed (expected 2-{config.n_tanks}: at least one core tank "
                            f"before it)")


def parse_devices(data: Any, source: str = "devices file") -> DevicesConfig:
    """Validate a loaded devices mapping.

    Raises:
        ConfigError: Naming the field, the offending value and what is allowed.
    """
    try:
        return DevicesConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: " + "; ".join(_error_lines(err, ""))) from err


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
