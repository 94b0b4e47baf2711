"""Device kinds: kind name -> (spec schema, capability, builder), filled by the kinds themselves.

The devices file names a ``kind`` per device; this registry is the only place that knows what a
kind means. A kind module calls :func:`register_kind` once at import with

* the pydantic schema of its devices-file entry (its own connection fields: a serial port and a
  bus address for the RS-232/485 kinds, a USB serial number for an Ocean spectrometer ...),
* its capability (``pump``, ``heater``, ``stirrer``, ``valve``, ``spectrometer``, ``light``),
  which decides the roles it may take and the :class:`~autolab.hardware.rig.Rig` slot it fills,
* a builder that turns the validated entry into a driver satisfying that capability's protocol.

The rig and the devices-file validation look kinds up here, so a new kind (another pump brand,
a seabreeze detector) plugs in by registering itself, without an edit to either. The built-in
kinds live in :data:`BUILTIN_MODULES`, imported on the first lookup.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from autolab.exceptions import ConfigError

if TYPE_CHECKING:
    from autolab.hardware.base import Device
    from autolab.hardware.devices import DeviceSpecBase
    from autolab.hardware.transport import Transport

#: What a device does; decides its roles and where the rig puts it.
Category = Literal["pump", "heater", "stirrer", "valve", "spectrometer", "light"]
CATEGORIES: tuple[Category, ...] = ("pump", "heater", "stirrer", "valve", "spectrometer",
                                    "light")

#: Modules that register the built-in kinds (imported on the first lookup).
BUILTIN_MODULES = ("autolab.hardware.serial_kinds", "autolab.hardware.ocean",
                   "autolab.hardware.heater_kinds", "autolab.hardware.harvard",
                   "autolab.hardware.chemyx")

S = TypeVar("S", bound="DeviceSpecBase")


class BuildContext(Protocol):
    """What a builder may ask the rig for while the rig is being built.

    Attributes:
        time_scale: Lab seconds per wall second (the devices file's): a driver that keeps
            time itself (a host-side setpoint ramp) runs on lab time.
    """

    time_scale: float

    def transport(self, port: str) -> Transport:
        """The opened line of ``ports[port]``."""
        ...

    def device(self, name: str) -> Device:
        """Another device of the file, built first if need be (a light path, a bus master)."""
        ...


@dataclass(frozen=True)
class DeviceKind(Generic[S]):
    """One device kind.

    Attributes:
        name: The ``kind`` value in the devices file.
        category: Its capability (see :data:`CATEGORIES`).
        spec: Schema of its devices-file entry (a :class:`DeviceSpecBase` subclass).
        build: ``build(name, spec, context)`` -> the driver (opens nothing but what the
            context hands it; sends no bytes: :meth:`Rig.connect` does that).
        default_baud: Line speed when its port gives none, Bd (serial kinds only).
        summary: One line for the docs and error messages.
        default_format: Character format when its port gives none: data bits, parity
            (``N``/``E``/``O``), stop bits, e.g. ``"8N1"`` or the IKA NAMUR ``"7E1"`` (a pty
            ignores it, a real line does not).
        check_entry: Checks of the kind's own rules on a validated entry (``check(name,
            spec)``, raising :class:`ValueError` naming the field), e.g. the address range
            of its bus; ``None`` if the schema says it all.
    """

    name: str
    category: Category
    spec: type[S]
    build: Callable[[str, S, BuildContext], Device]
    default_baud: int | None = None
    summary: str = ""
    default_format: str = "8N1"
    check_entry: Callable[[str, S], None] | None = None


_KINDS: dict[str, DeviceKind[Any]] = {}
_loaded = False


def register_kind(kind: DeviceKind[Any]) -> DeviceKind[Any]:
    """Add a kind (idempotent for the same definition; a clash is a bug).

    Raises:
        ConfigError: Another definition already holds this name, or the category is unknown.
    """
    if kind.category not in CATEGORIES:
        raise ConfigError(f"device kind {kind.name!r}: category {kind.category!r} is not one of "
                          f"{list(CATEGORIES)}")
    old = _KINDS.get(kind.name)
    if old is not None and old != kind:
        raise ConfigError(f"device kind {kind.name!r} is registered twice "
                          f"({old.spec.__module__} and {kind.spec.__module__})")
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove a kind (tests that plug in a temporary one clean up with this)."""
    _KINDS.pop(name, None)


def _load_builtins() -> None:
    global _loaded  # noqa: PLW0603 (one-time lazy import of the built-in kinds)
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def get_kind(name: str) -> DeviceKind[Any]:
    """The kind called ``name``.

    Raises:
        KeyError: No such kind (callers turn it into an error naming the field).
    """
    _load_builtins()
    return _KINDS[name]


def kind_names() -> tuple[str, ...]:
    """Every registered kind, sorted."""
    _load_builtins()
    return tuple(sorted(_KINDS))
