"""The built-in RS-232/RS-485 device kinds, registered with :mod:`autolab.hardware.registry`.

Each builder takes the kind's devices-file entry (:class:`~autolab.hardware.devices.DeviceSpec`)
and the opened line of its ``port``; the drivers are :mod:`autolab.hardware.drivers`. Default
line speeds are the manuals' defaults.
"""

from __future__ import annotations

from collections.abc import Callable

from autolab.hardware.base import Device
from autolab.hardware.devices import DeviceSpec
from autolab.hardware.drivers import (
    Eurotherm3200,
    IKAStirrer,
    NE1000Pump,
    SerialLightPath,
    SerialSpectrometer,
    VICIValve,
)
from autolab.hardware.registry import BuildContext, DeviceKind, register_kind


def _ne1000(name: str, d: DeviceSpec, ctx: BuildContext) -> Device:
    return NE1000Pump(ctx.transport(d.port), name, address=d.address, diameter_mm=d.diameter_mm,
                      syringe_ml=d.syringe_ml, safe_mode_s=d.safe_mode_s, limits=d.limits)


def _eurotherm(name: str, d: DeviceSpec, ctx: BuildContext) -> Device:
    return Eurotherm3200(ctx.transport(d.port), name, address=d.address,
                         ramp_c_per_min=d.ramp_c_per_min, limits=d.limits, decimals=d.decimals)


def _address_in(low: int, high: int, why: str) -> Callable[[str, DeviceSpec], None]:
    """An entry check: the bus address lies in ``[low, high]`` (``why`` says whose rule)."""
    def check(name: str, d: DeviceSpec) -> None:
        if not low <= d.address <= high:
            raise ValueError(f"devices.{name}.address={d.address}: expected {low}-{high} "
                             f"({why})")
    return check


def _ika(name: str, d: DeviceSpec, ctx: BuildContext) -> Device:
    return IKAStirrer(ctx.transport(d.port), name, limits=d.limits)


def _vici(name: str, d: DeviceSpec, ctx: BuildContext) -> Device:
    return VICIValve(ctx.transport(d.port), name, positions=d.positions)


def _asp1(name: str, d: DeviceSpec, ctx: BuildContext) -> Device:
    return SerialSpectrometer(ctx.transport(d.port), name)


def _asp1_light(name: str, d: DeviceSpec, ctx: BuildContext) -> Device:
    return SerialLightPath(ctx.transport(d.port), name)


for _kind in (
    DeviceKind("ne1000", "pump", DeviceSpec, _ne1000, 19200,
               "New Era NE-1000/NE-500 syringe pump (daisy chain, Basic or Safe mode)",
               check_entry=_address_in(0, 99, "New Era network address")),
    DeviceKind("eurotherm3200", "heater", DeviceSpec, _eurotherm, 9600,
               "Eurotherm 3200 controller of one heater block or tank (Modbus RTU)",
               check_entry=_address_in(1, 247, "Modbus slave address; 0 is broadcast, "
                                               "which no controller answers")),
    DeviceKind("ika", "stirrer", DeviceSpec, _ika, 9600, "IKA stirrer (NAMUR ASCII)",
               default_format="7E1"),
    DeviceKind("vici", "valve", DeviceSpec, _vici, 9600,
               "VICI Valco multiposition selection valve (universal actuator)"),
    DeviceKind("asp1", "spectrometer", DeviceSpec, _asp1, 115200,
               "autolab ASP-1 inline optics head: detector, lamp, LED, shutter, cell"),
    DeviceKind("asp1_light", "light", DeviceSpec, _asp1_light, 115200,
               "the light path of an ASP-1 head only (lamp, LED, shutter, cell), for a "
               "separate detector such as an Ocean spectrometer"),
):
    register_kind(_kind)
