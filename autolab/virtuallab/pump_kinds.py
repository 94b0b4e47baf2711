"""The virtual lab's pumps of kinds other than New Era: their emulators and devices entries.

:class:`~autolab.virtuallab.lab.VirtualLab` runs New Era pumps unless told otherwise; with
``pump_kind="harvard"`` the same seven pump models sit on one Harvard daisy chain (addresses
0-6 on one pty), so a whole experiment runs through the Harvard driver. The rest of the lab is
unchanged.
"""

from __future__ import annotations

from autolab.exceptions import ConfigError
from autolab.hardware.devices import DeviceSpecBase
from autolab.hardware.harvard import HarvardSpec
from autolab.hardware.limits import Limits
from autolab.virtuallab.emulators import PtyEmulator
from autolab.virtuallab.harvard_emulator import HarvardChainEmulator
from autolab.virtuallab.reactor import VirtualReactor

#: Pump kinds the virtual lab can emulate besides ``ne1000``.
KINDS = ("harvard",)


def pump_emulator(kind: str, reactor: VirtualReactor) -> PtyEmulator:
    """The emulator of the reactor's pumps as ``kind`` pumps on one line named ``pumps``.

    Raises:
        ConfigError: A kind the virtual lab does not emulate.
    """
    if kind == "harvard":
        return HarvardChainEmulator("pumps", reactor)
    raise ConfigError(f"virtual lab: pump kind {kind!r} is not emulated; expected 'ne1000' or "
                      f"one of {list(KINDS)}")


def pump_spec(kind: str, emulator: PtyEmulator, name: str, *, role: str, reagent: str,
              syringe_ml: float, limits: Limits) -> DeviceSpecBase:
    """The devices-file entry of pump ``name`` (a model of ``emulator``'s reactor)."""
    address = emulator.reactor.pumps[name].address
    if kind == "harvard":
        return HarvardSpec(kind="harvard", port=emulator.name, address=address, role=role,
                           reagent=reagent, syringe_ml=syringe_ml,
                           diameter_mm=emulator.reactor.pumps[name].diameter_mm, limits=limits)
    raise ConfigError(f"virtual lab: pump kind {kind!r} is not emulated")
