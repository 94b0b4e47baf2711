"""The simulated rig: in-process devices over the virtual reactor, on a virtual clock.

The same :class:`~autolab.virtuallab.reactor.VirtualReactor` physics as the pty emulators (pump,
heater, stirrer and valve models, tank contents, outlet optics), but the devices are plain
objects that satisfy the capability protocols of :mod:`autolab.hardware.base` directly, and the
clock is a :class:`~autolab.virtuallab.reactor.ManualClock` that a wait advances at once. So the
one experiment procedure runs unchanged on it, a campaign of hundreds of lab hours takes seconds,
and nothing distinguishes its measurements from the serial rig's but the physics behind them.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import HardwareError
from autolab.hardware.base import PumpState
from autolab.hardware.fluidics import ROLES, Geometry
from autolab.twin import DigitalTwin
from autolab.virtuallab.reactor import (
    HeaterModel,
    ManualClock,
    PumpModel,
    VirtualReactor,
    default_physics,
)

FloatArray = NDArray[np.float64]
#: A simulated syringe is a reservoir: it never runs dry in a campaign.
RESERVOIR_ML = 1e9


class SimPump:
    """A syringe pump of the simulated rig (the :class:`~autolab.hardware.base.Pump` protocol)."""

    def __init__(self, name: str, model: PumpModel, reactor: VirtualReactor) -> None:
        self.name = name
        self.model = model
        self.reactor = reactor
        self.syringe_ml = model.syringe_ml

    def _sync(self) -> PumpModel:
        self.reactor.advance()
        return self.model

    def ping(self) -> str:
        """Identity."""
        return f"simulated pump {self.name}"

    def connect(self) -> None:
        """Known state: stopped, alarms acknowledged."""
        p = self._sync()
        p.running, p.paused, p.alarm = False, False, ""

    def set_rate_ml_min(self, rate_ml_min: float) -> None:
        """Set the rate, mL/min."""
        self._sync().rate_ml_min = float(rate_ml_min)

    def set_direction(self, infuse: bool) -> None:
        """Infuse (True) or withdraw (False)."""
        self._sync().infuse = infuse

    def start(self) -> None:
        """Run."""
        p = self._sync()
        if p.alarm and p.alarm != "R":
            raise HardwareError(f"{self.name}: alarm {p.alarm}")
        p.running, p.paused = True, False

    def stop(self) -> None:
        """Stop."""
        self._sync().running = False

    def state(self) -> PumpState:
        """Status and alarm."""
        p = self._sync()
        st = ("I" if p.infuse else "W") if p.running else ("P" if p.paused else "S")
        return PumpState(pumping=p.running, alarm="", status=st)

    def dispensed_ml(self) -> tuple[float, float]:
        """Infused and withdrawn since the last clear, mL."""
        p = self._sync()
        return p.infused_ml, p.withdrawn_ml

    def clear_dispensed(self) -> None:
        """Zero the counters."""
        p = self._sync()
        p.infused_ml = p.withdrawn_ml = 0.0

    def rate_read_ml_min(self) -> float:
        """The set rate, mL/min."""
        return self._sync().rate_ml_min

    def take_alarms(self) -> tuple[str, ...]:
        """No alarms in the simulated rig (device faults are the serial rig's)."""
        return ()


class SimHeater:
    """A heater block of the simulated rig (the TemperatureController protocol)."""

    def __init__(self, name: str, model: HeaterModel, reactor: VirtualReactor) -> None:
        self.name = name
        self.model = model
        self.reactor = reactor
        #: The block's heating rate, °C/min (the procedure's heating deadline).
        self.ramp_c_per_min = model.max_heat_c_per_min

    def ping(self) -> str:
        """Identity."""
        return f"simulated heater {self.name}"

    def set_temperature_c(self, setpoint_c: float) -> None:
        """Remote setpoint, °C."""
        self.reactor.advance()
        self.model.remote_sp_c = float(setpoint_c)
        self.model.remote = True

    def temperature_c(self) -> float:
        """Block temperature, °C."""
        self.reactor.advance()
        return self.model.pv_c

    def fault(self) -> str:
        """No faults in the simulated rig."""
        return ""

    def cut_output(self) -> None:
        """Output to 0 %."""
        self.reactor.advance()
        self.model.op_hi_pct = 0.0


class SimStirrer:
    """A stirrer of the simulated rig."""

    def __init__(self, name: str, reactor: VirtualReactor) -> None:
        self.name = name
        self.reactor = reactor
        reactor.stirrers[name] = {"sp": 0.0, "on": 0.0, "blocked": 0.0}

    def ping(self) -> str:
        """Identity."""
        return f"simulated stirrer {self.name}"

    def set_speed_rpm(self, rpm: float) -> None:
        """Speed setpoint, rpm."""
        self.reactor.stirrers[self.name]["sp"] = float(rpm)

    def start(self) -> None:
        """Motor on."""
        self.reactor.stirrers[self.name]["on"] = 1.0

    def stop(self) -> None:
        """Motor off."""
        self.reactor.stirrers[self.name]["on"] = 0.0

    def speed_rpm(self) -> float:
        """Actual speed, rpm."""
        s = self.reactor.stirrers[self.name]
        return s["sp"] if s["on"] else 0.0


class SimValve:
    """A selection valve of the simulated rig."""

    def __init__(self, name: str, reactor: VirtualReactor, initial: int) -> None:
        self.name = name
        self.reactor = reactor
        reactor.valves[name] = initial

    def ping(self) -> str:
        """Identity."""
        return f"simulated valve {self.name}"

    def move(self, position: int) -> None:
        """Move (the flows change from now on)."""
        self.reactor.advance()
        self.reactor.valves[self.name] = int(position)

    def position(self) -> int:
        """Current position."""
        return self.reactor.valves[self.name]


class SimSpectrometer:
    """The inline optics of the simulated rig (frames of the reactor's outlet)."""

    def __init__(self, name: str, reactor: VirtualReactor) -> None:
        self.name = name
        self.reactor = reactor
        self.integration_ms = 20.0
        self.source, self.shutter_open, self.cell = "OFF", False, "SAMPLE"
        det = reactor.twin.config.detector
        self._wl = reactor.twin.wavelengths_nm
        self._det = det

    def ping(self) -> str:
        """Identity."""
        return f"simulated spectrometer {self.name}"

    @property
    def wavelengths_nm(self) -> FloatArray:
        """Pixel wavelengths, nm."""
        return self._wl

    @property
    def saturation_counts(self) -> float:
        """Full-scale counts."""
        return float(self._det.full_scale_counts)

    @property
    def excitation_nm(self) -> float:
        """Excitation wavelength, nm."""
        return float(self._det.excitation_nm)

    @property
    def path_length_cm(self) -> float:
        """Flow-cell path length, cm."""
        return float(self._det.path_length_cm)

    def set_integration_ms(self, integration_ms: float) -> None:
        """Integration time, ms."""
        self.integration_ms = float(integration_ms)

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        """Source, shutter, cell."""
        self.source, self.shutter_open, self.cell = source, shutter_open, cell

    def acquire(self) -> FloatArray:
        """One raw frame of what leaves the cascade now."""
        self.reactor.advance()
        return self.reactor.frame(source=self.source, shutter_open=self.shutter_open,
                                  cell=self.cell, integration_ms=self.integration_ms)


class SimulatedRig:
    """Every device of the cascade, in-process, over one reactor on a manual clock.

    Attributes mirror :class:`~autolab.hardware.rig.Rig`'s (pumps and heaters by role, the
    stirrers, the two valves, the spectrometer), so the procedure sees no difference.

    Args:
        physics: The twin whose chemistry and optics the outlet shows (its config sets the
            geometry, heating and cooling rates and the ambient temperature): resolved in time
            by :class:`~autolab.twin.transient.TransientCascade`, or, for a response without
            kinetics, its steady products through :class:`~autolab.twin.transient.MixingCascade`.
    """

    def __init__(self, physics: DigitalTwin) -> None:
        cfg = physics.config
        self.physics = physics
        self.config = cfg
        self.geometry = Geometry(n_core_tanks=cfg.n_core_tanks, n_shell_tanks=cfg.n_shell_tanks,
                                 tank_volume_ml=cfg.tank_volume_ml, in_conc_m=cfg.in_conc_m,
                                 phosphine_stock_m=cfg.phosphine_stock_m,
                                 shell_feed_fraction=cfg.shell_feed_fraction)
        self.clock = ManualClock()
        pumps = {f"pump_{role}": PumpModel(address=i, role=role, syringe_ml=RESERVOIR_ML,
                                           left_ml=0.0 if role == "bleed" else RESERVOIR_ML,
                                           ignore_next=False, alarm="")
                 for i, role in enumerate(ROLES)}
        n = cfg.n_core_tanks + cfg.n_shell_tanks
        # every tank heats and stirs on its own (the seed paper's platform): any profile holds
        heaters = {f"heater_tank{i}": HeaterModel(
            address=i, role=f"tank{i}", pv_c=cfg.ambient_c, local_sp_c=cfg.ambient_c,
            remote_sp_c=cfg.ambient_c, working_sp_c=cfg.ambient_c, remote_timeout_s=math.inf,
            lag_min=0.2, max_heat_c_per_min=cfg.heating_rate_c_per_min,
            max_cool_c_per_min=cfg.cooling_rate_c_per_min, ambient_c=cfg.ambient_c)
            for i in range(1, n + 1)}
        # the twin's chemistry in time; a response without kinetics as steady products carried
        # through the washout (the blocks settle exactly and the scatter is per run: feeds are
        # told apart finely, so close conditions of two runs never pass for one product)
        cascade = default_physics(physics, same_temperature_c=0.5, same_rel=0.002)
        self.reactor = VirtualReactor(self.geometry, pumps, heaters, self.clock, twin=physics,
                                      physics=cascade)
        self.pumps = {m.role: SimPump(n, m, self.reactor) for n, m in pumps.items()}
        self.heaters = {m.role: SimHeater(n, m, self.reactor) for n, m in heaters.items()}
        self.stirrers = {f"tank{i}": SimStirrer(f"stirrer_tank{i}", self.reactor)
                         for i in range(1, n + 1)}
        self.solvent_valve = SimValve("solvent_valve", self.reactor, initial=2)
        self.outlet_valve = SimValve("outlet_valve", self.reactor, initial=2)
        self.spectrometer = SimSpectrometer("spectrometer", self.reactor)
