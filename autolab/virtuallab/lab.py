"""The virtual lab: every emulator of the CSTR rig on its own pty, plus the devices file.

``VirtualLab`` builds the reactor physics, starts one emulator per serial line (the pumps share
one daisy chain, the two controllers one Modbus bus, as on the real rig) and describes them in a
:class:`~autolab.hardware.devices.DevicesConfig` whose ports are the ptys; the executor reads that
file exactly as it reads the real rig's.
"""

from __future__ import annotations

from pathlib import Path

from autolab.exceptions import ConfigError
from autolab.hardware.devices import (
    DevicesConfig,
    DeviceSpec,
    DeviceSpecBase,
    PortSpec,
    dump_devices,
)
from autolab.hardware.fluidics import ROLES, Geometry
from autolab.hardware.heater_kinds import HuberSpec, JulaboSpec, OmegaSpec
from autolab.hardware.limits import Limits
from autolab.virtuallab.emulators import (
    ModbusBusEmulator,
    PtyEmulator,
    PumpChainEmulator,
    SpectrometerEmulator,
    StirrerEmulator,
    SulfurValveEmulator,
    ValveEmulator,
)
from autolab.virtuallab.heater_emulators import HuberEmulator, JulaboEmulator, OmegaBusEmulator
from autolab.virtuallab.pump_kinds import pump_emulators, pump_spec
from autolab.virtuallab.reactor import HeaterModel, PumpModel, VirtualClock, VirtualReactor

#: Reagent delivered by each pump role.
REAGENTS = {"halide_cl": "indium_chloride", "halide_i": "indium_iodide",
            "phosphine": "phosphine", "zinc": "zinc_oleate", "sulfur": "sulfur_top",
            "solvent": "solvent", "bleed": "bleed"}


class VirtualLab:
    """All emulators of the rig, started and stopped together.

    Args:
        time_scale: Lab seconds per wall second (1 = real time).
        geometry: Reactor geometry.
        syringe_ml: Syringe volume of every pump, mL (feeds start full, the bleed empty;
            large by default, as if reservoir-fed, so long virtual campaigns do not run dry).
        seed: Detector-noise seed.
        max_temperature_c: Over-temperature limit written into the devices file, °C.
        pump_safe_mode_s: The mode the pumps are in when the lab starts: 0 = Basic (factory
            state), n = Safe mode with an n-s timeout (left by an earlier session, since Safe
            mode persists across power cycles).
        per_tank: One heater (Modbus address ``i`` on the one bus) and one stirrer per tank,
            roles ``tank<i>``, instead of the two stage blocks.
        sulfur_tanks: Plumbing of a sulfur selection valve (position ``j`` feeds tank
            ``sulfur_tanks[j-1]``); empty: no valve, the feed enters the first shell tank.
        resolve_transients: Run the twin's chemistry resolved in time (the in-process rig's
            physics; the default) or its steady products through the washout. The emulators
            no longer step the tanks under the reactor's lock: its physics thread does
            (:meth:`VirtualReactor.start_stepping`). Before, the transient step held the lock
            on every request (p99 11.9 ms, max 49 ms at load 11 on 2 cores; a heater's remote
            setpoint once timed out under load ~10); with the thread, p99 0.1 ms and max 15 ms
            for the transient physics against max 24 ms for the washout the old default used
            (two experiments over ptys at 2400x).
        pump_kind: The pumps' kind: ``ne1000`` (New Era, the default), ``harvard`` (Harvard
            Pump 11 Elite chain) or ``chemyx`` (one Chemyx Fusion per line); see
            :mod:`autolab.virtuallab.pump_kinds`.
        heater_kind: The controllers' kind: ``eurotherm3200`` (one Modbus RTU bus, the
            default), ``omega_cn7500`` (one Modbus ASCII bus), ``julabo`` or ``huber`` (one
            line per circulator).
    """

    def __init__(self, *, time_scale: float = 1.0, geometry: Geometry | None = None,
                 syringe_ml: float = 5000.0, seed: int = 0,
                 max_temperature_c: float = 330.0, pump_safe_mode_s: int = 0,
                 per_tank: bool = False, sulfur_tanks: tuple[int, ...] = (),
                 resolve_transients: bool = True, heater_kind: str = "eurotherm3200",
                 pump_kind: str = "ne1000") -> None:
        self.time_scale = time_scale
        self.geometry = geometry or Geometry()
        self.max_temperature_c = max_temperature_c
        # feed syringes start full; the bleed withdraws into its syringe, so it starts empty
        pumps = {f"pump_{role}": PumpModel(address=i, role=role, syringe_ml=syringe_ml,
                                           left_ml=0.0 if role == "bleed" else syringe_ml,
                                           safe_timeout_s=pump_safe_mode_s)
                 for i, role in enumerate(ROLES)}
        n = self.geometry.n_core_tanks + self.geometry.n_shell_tanks
        stages = [f"tank{i}" for i in range(1, n + 1)] if per_tank else ["core", "shell"]
        heaters = {f"heater_{s}": HeaterModel(address=i, role=s)
                   for i, s in enumerate(stages, start=1)}
        self.clock = VirtualClock(time_scale)
        self.reactor = VirtualReactor(self.geometry, pumps, heaters, self.clock, seed=seed,
                                      resolve_transients=resolve_transients)
        self.pump_kind = pump_kind
        #: The pumps' lines: one daisy chain (New Era, Harvard) or one line per pump (Chemyx).
        self.pump_lines: list[PtyEmulator] = (
            [PumpChainEmulator("pumps", self.reactor)] if pump_kind == "ne1000"
            else pump_emulators(pump_kind, self.reactor))
        self.pumps = self.pump_lines[0]  #: the chain (the first pump's line for Chemyx)
        self.heater_kind = heater_kind
        #: The controllers' lines by line name (one bus, or one line per circulator).
        self.heater_lines = _heater_lines(heater_kind, self.reactor)
        #: The heaters' bus (or the first circulator's line).
        self.heaters: PtyEmulator = next(iter(self.heater_lines.values()))
        self.stirrers = {s: StirrerEmulator(f"stirrer_{s}", self.reactor) for s in stages}
        self.valves = {v: ValveEmulator(v, self.reactor, positions=6,
                                        initial=2 if v == "solvent_valve" else 1)
                       for v in ("solvent_valve", "outlet_valve")}
        if sulfur_tanks:
            self.valves["sulfur_valve"] = SulfurValveEmulator("sulfur_valve", self.reactor,
                                                              tuple(sulfur_tanks))
        self.spectrometer = SpectrometerEmulator("spectrometer", self.reactor)
        self._started = False

    @property
    def emulators(self) -> list[PtyEmulator]:
        """Every emulator."""
        return [*self.pump_lines, *self.heater_lines.values(), *self.stirrers.values(),
                *self.valves.values(), self.spectrometer]

    @property
    def ports(self) -> dict[str, str]:
        """Pty path by line name."""
        return {e.name: e.port for e in self.emulators}

    def start(self) -> VirtualLab:
        """Start the reactor's physics thread and every emulator (idempotent)."""
        if not self._started:
            self.reactor.start_stepping()
            for e in self.emulators:
                e.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop every emulator, close the ptys, stop the physics thread."""
        for e in self.emulators:
            e.stop()
        self.reactor.stop_stepping()
        self._started = False

    def __enter__(self) -> VirtualLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def devices_config(self, *, safe_mode_s: int = 10, timeout_s: float = 0.3,
                       retries: int = 3) -> DevicesConfig:
        """The devices file of this lab (ports = the ptys).

        The defaults allow for a busy host, since the emulators share its CPUs with everything
        else: on 2 cores at load average 20-27 a supervisor round takes about 0.1 s, but single
        replies were seen to come a second late. Hence a 10-s Safe-mode timeout and one more
        retry than a real rig needs; a retry costs nothing unless a reply is late.
        """
        # the spectrometer integrates and the controllers share a bus: longer reply timeouts
        slow = {"spectrometer": 4.0, **dict.fromkeys(self.heater_lines, 3.0)}
        ports = {name: PortSpec(url=path, timeout_s=timeout_s * slow.get(name, 1.0),
                                retries=retries)
                 for name, path in self.ports.items()}
        heater_limits = Limits(max_temperature_c=self.max_temperature_c,
                               max_ramp_c_per_min=20.0)
        devices: dict[str, DeviceSpecBase] = {}
        for i, role in enumerate(ROLES):
            syringe_ml, limits = self.reactor.pumps[f"pump_{role}"].syringe_ml, Limits(
                max_rate_ml_min=50.0)
            devices[f"pump_{role}"] = (DeviceSpec(
                kind="ne1000", port="pumps", address=i, role=role, reagent=REAGENTS[role],
                syringe_ml=syringe_ml, safe_mode_s=safe_mode_s, limits=limits)
                if self.pump_kind == "ne1000" else pump_spec(
                    self.pump_kind, self.pump_lines, f"pump_{role}", role=role,
                    reagent=REAGENTS[role], syringe_ml=syringe_ml, limits=limits))
        for name, h in self.reactor.heaters.items():
            devices[name] = _heater_spec(self.heater_kind, h, heater_limits)
        for stage in self.stirrers:
            devices[f"stirrer_{stage}"] = DeviceSpec(kind="ika", port=f"stirrer_{stage}",
                                                     role=stage,
                                                     limits=Limits(max_speed_rpm=1200))
        for v, valve in self.valves.items():
            devices[v] = DeviceSpec(kind="vici", port=v, role=v, positions=valve.positions,
                                    inject_tanks=getattr(valve, "inject_tanks", ()))
        devices["spectrometer"] = DeviceSpec(kind="asp1", port="spectrometer", role="outlet")
        return DevicesConfig(time_scale=self.time_scale, ports=ports, devices=devices,
                             geometry=self.geometry)

    def write_devices_file(self, path: str | Path, **kwargs: int | float) -> Path:
        """Write :meth:`devices_config` as YAML; returns the path."""
        p = Path(path)
        dump_devices(self.devices_config(**kwargs), p)  # type: ignore[arg-type]
        return p


def _heater_lines(kind: str, reactor: VirtualReactor) -> dict[str, PtyEmulator]:
    """The emulators of the heaters' lines, by line name, for one controller kind."""
    if kind == "eurotherm3200":
        return {"heaters": ModbusBusEmulator("heaters", reactor)}
    if kind == "omega_cn7500":
        return {"heaters": OmegaBusEmulator("heaters", reactor, mode="ascii")}
    if kind == "julabo":
        return {f"bath_{h.role}": JulaboEmulator(f"bath_{h.role}", reactor, h)
                for h in reactor.heaters.values()}
    if kind == "huber":  # a unit whose setpoint range covers the shell's 300 °C
        return {f"bath_{h.role}": HuberEmulator(f"bath_{h.role}", reactor, h,
                                                setpoint_range_c=(-40.0, 320.0))
                for h in reactor.heaters.values()}
    raise ConfigError(f"virtual lab: heater kind {kind!r} is not emulated; expected "
                      "'eurotherm3200', 'omega_cn7500', 'julabo' or 'huber'")


def _heater_spec(kind: str, h: HeaterModel, limits: Limits) -> DeviceSpecBase:
    """The devices-file entry of one heater of this lab."""
    if kind == "eurotherm3200":
        return DeviceSpec(kind=kind, port="heaters", address=h.address, role=h.role,
                          limits=limits)
    if kind == "omega_cn7500":
        return OmegaSpec(kind=kind, port="heaters", address=h.address, role=h.role,
                         limits=limits)
    spec = JulaboSpec if kind == "julabo" else HuberSpec
    return spec(kind=kind, port=f"bath_{h.role}", role=h.role, limits=limits)
