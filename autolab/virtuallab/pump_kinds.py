"""The virtual lab's pumps of kinds other than New Era: their emulators and devices entries.

:class:`~autolab.virtuallab.lab.VirtualLab` runs New Era pumps unless told otherwise. With
``pump_kind="harvard"`` the same seven pump models sit on one Harvard daisy chain (addresses 0-6
on one pty, line ``pumps``); with ``pump_kind="chemyx"`` each is a single-channel Chemyx pump on
its own pty (line ``pumps_<role>``: Chemyx pumps do not chain). So a whole experiment runs
through that kind's driver; the rest of the lab is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from autolab.exceptions import ConfigError
from autolab.hardware.chemyx import ChemyxSpec
from autolab.hardware.devices import DeviceSpecBase
from autolab.hardware.harvard import HarvardSpec
from autolab.hardware.limits import Limits
from autolab.virtuallab.chemyx_emulator import ChemyxEmulator
from autolab.virtuallab.emulators import PtyEmulator
from autolab.virtuallab.harvard_emulator import HarvardChainEmulator
from autolab.virtuallab.reactor import VirtualReactor

#: Pump kinds the virtual lab can emulate besides ``ne1000``.
KINDS = ("harvard", "chemyx")


def pump_emulators(kind: str, reactor: VirtualReactor) -> list[PtyEmulator]:
    """The lines of the reactor's pumps as ``kind`` pumps.

    Raises:
        ConfigError: A kind the virtual lab does not emulate.
    """
    if kind == "harvard":
        return [HarvardChainEmulator("pumps", reactor)]
    if kind == "chemyx":
        return [ChemyxEmulator(f"pumps_{p.role}", reactor, {0: name})
                for name, p in reactor.pumps.items()]
    raise ConfigError(f"virtual lab: pump kind {kind!r} is not emulated; expected 'ne1000' or "
                      f"one of {list(KINDS)}")


def pump_spec(kind: str, lines: Sequence[PtyEmulator], name: str, *, role: str, reagent: str,
              syringe_ml: float, limits: Limits) -> DeviceSpecBase:
    """The devices-file entry of pump ``name`` (a model of the lines' reactor)."""
    model = lines[0].reactor.pumps[name]
    if kind == "harvard":
        return HarvardSpec(kind="harvard", port=lines[0].name, address=model.address,
                           role=role, reagent=reagent, syringe_ml=syringe_ml,
                           diameter_mm=model.diameter_mm, limits=limits)
    if kind == "chemyx":
        line = next(e for e in lines
                    if isinstance(e, ChemyxEmulator) and name in e.channels.values())
        channel = next(c for c, n in line.channels.items() if n == name)
        return ChemyxSpec(kind="chemyx", port=line.name, channel=channel, role=role,
                          reagent=reagent, syringe_ml=syringe_ml,
                          diameter_mm=model.diameter_mm, limits=limits)
    raise ConfigError(f"virtual lab: pump kind {kind!r} is not emulated")
