"""Heater kinds besides the Eurotherm 3200: Omega CN7500 (Modbus), Julabo, Huber (PB).

Each kind has its own devices-file schema (its connection fields, no pump or valve fields)
and its own entry check; the drivers are :mod:`autolab.hardware.controllers`. Default line
speeds and formats are the manuals' usual settings; a ``ports`` entry overrides them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from autolab.exceptions import ConfigError
from autolab.hardware.base import Device
from autolab.hardware.controllers import RAMP_STEP_S, HuberPB, JulaboCirculator, OmegaCN7500
from autolab.hardware.devices import SerialSpecBase
from autolab.hardware.registry import BuildContext, DeviceKind, register_kind


class SerialHeaterSpec(SerialSpecBase):
    """A heater on a serial line.

    Attributes:
        port: Name of its line in ``ports``.
        ramp_c_per_min: Heating-rate limit, °C/min (lab time); these controllers have no
            ramp parameter, so the driver ramps the setpoint itself.
        ramp_step_s: Lab seconds of ramp per setpoint write: the ramp is written in steps of
            ``ramp_c_per_min * ramp_step_s / 60`` °C (the controller may keep its setpoint in
            EEPROM, whose write cycles are limited).
    """

    ramp_c_per_min: float = Field(default=10.0, gt=0)
    ramp_step_s: float = Field(default=RAMP_STEP_S, gt=0, le=600)


class OmegaSpec(SerialHeaterSpec):
    """An Omega CN7200/CN7500/CN7600/CN7800 controller (kind ``omega_cn7500``).

    Attributes:
        address: Modbus slave address, 1-247.
        modbus_mode: ``ascii`` or ``rtu``; unset: from the port's data bits (7: ASCII,
            8: RTU). The controllers' usual setting is ASCII, 7E1, 9600 Bd; ``rtu`` on a
            port without a format opens it 8E1.
    """

    address: int = Field(default=1, ge=0, le=247)
    modbus_mode: Literal["ascii", "rtu"] | None = None

    def line_format(self) -> str | None:
        """8E1 for ``modbus_mode: rtu``, where the port gives no format.

        The map's RTU setting is 8 data bits, even parity. The kind's default (7E1) is
        ASCII's, and an entry saying ``rtu`` on a port without a format was refused for its
        7 data bits: the rig did not open although the file said what the line is.
        """
        return "8E1" if self.modbus_mode == "rtu" else None


def _check_ramp(name: str, d: SerialHeaterSpec) -> None:
    """The ramp within the entry's own limit, found when the file is read, not at connect."""
    top = d.limits.max_ramp_c_per_min
    if top is not None and d.ramp_c_per_min > top:
        raise ValueError(f"devices.{name}.ramp_c_per_min={d.ramp_c_per_min:g}: above its "
                         f"limits.max_ramp_c_per_min={top:g}")


def _check_omega(name: str, d: OmegaSpec) -> None:
    _check_ramp(name, d)
    if not 1 <= d.address <= 247:
        raise ValueError(f"devices.{name}.address={d.address}: expected 1-247 (Modbus slave "
                         f"address; 0 is broadcast, which no controller answers)")


def _omega(name: str, d: OmegaSpec, ctx: BuildContext) -> Device:
    line = ctx.transport(d.port)
    bits = int(line.line_format.get("bytesize", 7))
    mode = d.modbus_mode or ("ascii" if bits == 7 else "rtu")
    if mode == "rtu" and bits != 8:
        raise ConfigError(f"devices.{name}.modbus_mode=rtu: Modbus RTU needs 8 data bits, port "
                          f"{d.port!r} has {bits} (set its format, e.g. 8E1, or use ascii)")
    return OmegaCN7500(line, name, address=d.address, ramp_c_per_min=d.ramp_c_per_min,
                       limits=d.limits, mode=mode, time_scale=ctx.time_scale,
                       ramp_step_s=d.ramp_step_s)


class JulaboSpec(SerialHeaterSpec):
    """A Julabo circulator heating through a jacket (kind ``julabo``), one per port.

    Attributes:
        line_end: What ends a command: ``cr`` (the SC/FL/SL manuals) or ``crlf`` (CF41).
    """

    line_end: Literal["cr", "crlf"] = "cr"


def _julabo(name: str, d: JulaboSpec, ctx: BuildContext) -> Device:
    return JulaboCirculator(ctx.transport(d.port), name, ramp_c_per_min=d.ramp_c_per_min,
                            limits=d.limits, line_end=d.line_end, time_scale=ctx.time_scale,
                            ramp_step_s=d.ramp_step_s)


class HuberSpec(SerialHeaterSpec):
    """A Huber thermostat heating through a jacket (kind ``huber``, PB protocol), one per port.

    Attributes:
        sensor: The PV: ``internal`` (bath, variable 01) or ``process`` (an external sensor
            in the tank, variable 07).
    """

    sensor: Literal["internal", "process"] = "internal"


def _huber(name: str, d: HuberSpec, ctx: BuildContext) -> Device:
    return HuberPB(ctx.transport(d.port), name, ramp_c_per_min=d.ramp_c_per_min,
                   limits=d.limits, sensor=d.sensor, time_scale=ctx.time_scale,
                   ramp_step_s=d.ramp_step_s)


register_kind(DeviceKind(
    "huber", "heater", HuberSpec, _huber, 9600,
    "Huber thermostat through a jacket (PB protocol; host-side ramp)",
    check_entry=_check_ramp))
register_kind(DeviceKind(
    "julabo", "heater", JulaboSpec, _julabo, 9600,
    "Julabo circulator through a jacket (text protocol, >= 250 ms between commands; "
    "host-side ramp)", default_format="7E1", check_entry=_check_ramp))
register_kind(DeviceKind(
    "omega_cn7500", "heater", OmegaSpec, _omega, 9600,
    "Omega CN7200/CN7500/CN7600/CN7800 controller (Modbus ASCII or RTU; host-side ramp)",
    default_format="7E1", check_entry=_check_omega))
