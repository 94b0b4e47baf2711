"""The rig's kind registry, per-tank devices, the sulfur valve, the ocean kind and the envelope.

Device-level tests talk to the real emulators over ptys (Modbus heaters, NAMUR stirrers, a VICI
valve, the ASP-1 light path). They need no chemistry, so the emulators share a small bench (the
heater models of the virtual lab, advanced by wall time) instead of the whole virtual reactor.
Ports of devices a test does not talk to are pyserial ``loop://`` lines: opened, never used.
"""

from __future__ import annotations

import copy
import math
import re
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.cli import load_for_run
from autolab.exceptions import ConditionsError, ConfigError, DeviceFault, HardwareError
from autolab.executors.cstr import CSTRExecutor
from autolab.hardware.base import Spectrometer, Stirrer, TemperatureController, Valve
from autolab.hardware.devices import DeviceSpecBase, dump_devices, load_devices, parse_devices
from autolab.hardware.envelope import (
    check_space,
    heater_setpoints,
    rig_setpoints,
    tank_profile_c,
)
from autolab.hardware.fluidics import ROLES, Geometry, conditions_from_rates, flow_setpoints
from autolab.hardware.registry import (
    BuildContext,
    DeviceKind,
    get_kind,
    kind_names,
    register_kind,
    unregister_kind,
)
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Shutdown, Supervisor, Trip
from autolab.records import Conditions
from autolab.space import Parameter, ParameterSpace
from autolab.virtuallab.emulators import (
    LightPathEmulator,
    ModbusBusEmulator,
    StirrerEmulator,
    SulfurValveEmulator,
)
from autolab.virtuallab.lab import VirtualLab
from autolab.virtuallab.reactor import HeaterModel
from tests.hardware.test_ocean import FakeOcean

BASE = dict(t_core_c=180.0, tau_core_min=10.0, t_shell_c=260.0, tau_shell_min=20.0,
            cl_to_i=1.0, s_to_zn=2.0, p_to_in=3.0)


def devices(**top: Any) -> dict[str, Any]:
    """A valid two-stage devices file on loop:// lines (no device is talked to)."""
    d: dict[str, Any] = {
        "ports": {n: {"url": "loop://"} for n in ("pumps", "heaters", "stir_core", "stir_shell",
                                                  "sv", "ov", "spec")},
        "devices": {
            **{f"pump_{r}": {"kind": "ne1000", "port": "pumps", "address": i, "role": r,
                             "limits": {"max_rate_ml_min": 20}}
               for i, r in enumerate(ROLES)},
            "heater_core": {"kind": "eurotherm3200", "port": "heaters", "address": 1,
                            "role": "core", "limits": {"max_temperature_c": 300}},
            "heater_shell": {"kind": "eurotherm3200", "port": "heaters", "address": 2,
                             "role": "shell", "limits": {"max_temperature_c": 300}},
            "stirrer_core": {"kind": "ika", "port": "stir_core", "role": "core",
                             "limits": {"max_speed_rpm": 1200}},
            "stirrer_shell": {"kind": "ika", "port": "stir_shell", "role": "shell",
                              "limits": {"max_speed_rpm": 1200}},
            "solvent_valve": {"kind": "vici", "port": "sv", "role": "solvent_valve"},
            "outlet_valve": {"kind": "vici", "port": "ov", "role": "outlet_valve"},
            "spectrometer": {"kind": "asp1", "port": "spec", "role": "outlet"},
        },
        "geometry": {"n_core_tanks": 3, "n_shell_tanks": 4},
    }
    d.update(top)
    return d


def per_tank(d: dict[str, Any], *, sulfur: list[int] | None = None) -> dict[str, Any]:
    """Turn the stage blocks into one heater and one stirrer per tank (+ a sulfur valve)."""
    d = copy.deepcopy(d)
    devs = d["devices"]
    for k in ("heater_core", "heater_shell", "stirrer_core", "stirrer_shell"):
        del devs[k]
    n = d["geometry"]["n_core_tanks"] + d["geometry"]["n_shell_tanks"]
    for i in range(1, n + 1):
        devs[f"heater_t{i}"] = {"kind": "eurotherm3200", "port": "heaters", "address": i,
                                "role": f"tank{i}", "limits": {"max_temperature_c": 300}}
        d["ports"][f"stir{i}"] = {"url": "loop://"}
        devs[f"stirrer_t{i}"] = {"kind": "ika", "port": f"stir{i}", "role": f"tank{i}",
                                 "limits": {"max_speed_rpm": 1200}}
    if sulfur is not None:
        d["ports"]["sulfur"] = {"url": "loop://"}
        devs["sulfur_valve"] = {"kind": "vici", "port": "sulfur", "role": "sulfur_valve",
                                "positions": 6, "inject_tanks": sulfur}
    return d


# ============================================================================= registry
def test_builtin_kinds_are_registered_with_their_capability() -> None:
    cats = {k: get_kind(k).category for k in kind_names()}
    assert cats == {"ne1000": "pump", "eurotherm3200": "heater", "ika": "stirrer",
                    "vici": "valve", "asp1": "spectrometer", "asp1_light": "light",
                    "ocean": "spectrometer",
                    "omega_cn7500": "heater", "julabo": "heater", "huber": "heater",
                    "harvard": "pump", "chemyx": "pump"}


class MemSpec(DeviceSpecBase):
    """A kind defined only in this test: no serial port, its own field."""

    kind: Literal["memstir"] = "memstir"
    channel: int = 0


@dataclass
class MemStirrer:
    """An in-process stirrer (satisfies the Stirrer capability)."""

    name: str
    channel: int
    rpm: float = 0.0
    on: bool = False
    log: list[str] = field(default_factory=list)

    def ping(self) -> str:
        return f"{self.name}: channel {self.channel}"

    def set_speed_rpm(self, rpm: float) -> None:
        self.rpm = rpm

    def start(self) -> None:
        self.on = True

    def stop(self) -> None:
        self.on = False

    def speed_rpm(self) -> float:
        return self.rpm if self.on else 0.0


def _build_mem(name: str, spec: MemSpec, ctx: BuildContext) -> MemStirrer:
    return MemStirrer(name, spec.channel)


@pytest.fixture
def memstir() -> Any:
    kind = register_kind(DeviceKind("memstir", "stirrer", MemSpec, _build_mem))
    yield kind
    unregister_kind("memstir")


def test_a_new_kind_plugs_in_without_editing_the_rig(memstir: Any) -> None:
    d = devices()
    d["devices"]["stirrer_core"] = {"kind": "memstir", "role": "core", "channel": 2}
    d["devices"]["stirrer_shell"] = {"kind": "memstir", "role": "shell", "channel": 3}
    cfg = parse_devices(d)
    assert isinstance(cfg.devices["stirrer_core"], MemSpec)
    assert cfg.where("stirrer_core") == "(built in)"
    rig = Rig.open(cfg)
    try:
        st = rig.stirrers["shell"]
        assert isinstance(st, MemStirrer) and st.channel == 3
        assert isinstance(st, Stirrer)
        st.set_speed_rpm(450)
        st.start()
        assert rig.stirrers["shell"].speed_rpm() == 450
        assert all(isinstance(h, TemperatureController) for h in rig.heaters.values())
        assert isinstance(rig.solvent_valve, Valve) and rig.sulfur_valve is None
    finally:
        rig.close()
    with pytest.raises(ConfigError, match=r"devices\.stirrer_core\.channel"):
        parse_devices({**d, "devices": {**d["devices"], "stirrer_core": {
            "kind": "memstir", "role": "core", "channel": "two"}}})


class BadSpec(DeviceSpecBase):
    kind: Literal["badstir"] = "badstir"


def test_a_builder_that_lacks_its_capability_is_refused() -> None:
    register_kind(DeviceKind("badstir", "stirrer", BadSpec, lambda n, s, c: object()))
    try:
        d = devices()
        d["devices"]["stirrer_core"] = {"kind": "badstir", "role": "core"}
        with pytest.raises(ConfigError, match=r"devices\.stirrer_core: kind badstir built a "
                                              r"object, which is not a Stirrer"):
            Rig.open(parse_devices(d))
    finally:
        unregister_kind("badstir")


def test_a_kind_cannot_be_registered_twice_differently(memstir: Any) -> None:
    with pytest.raises(ConfigError, match="registered twice"):
        register_kind(DeviceKind("memstir", "pump", MemSpec, _build_mem))


# ============================================================================= bad files
def _set(path: str, value: Any, *, tanks: bool = False) -> dict[str, Any]:
    d = per_tank(devices(), sulfur=[3, 4, 5, 6]) if tanks else devices()
    *parents, leaf = path.split(".")
    node = d
    for p in parents:
        node = node[p]
    if value is None:
        del node[leaf]
    else:
        node[leaf] = value
    return d


@pytest.mark.parametrize(("path", "value", "tanks", "expected"), [
    ("devices.pump_zinc.kind", "ne9999", False, r"devices\.pump_zinc\.kind: 'ne9999' is not a "
                                                r"known device kind"),
    ("devices.pump_zinc.kind", None, False, r"devices\.pump_zinc\.kind: Field required; "
                                            r"expected one of \['asp1'"),
    ("devices.pump_zinc.syringe_ml", -5, False, r"devices\.pump_zinc\.syringe_ml: .*greater"),
    ("devices.pump_zinc.port", "nowhere", False, r"devices\.pump_zinc\.port='nowhere'"),
    ("devices.heater_core.role", "middle", False, r"heater_core\.role='middle': expected 'core'"),
    ("devices.heater_core.role", "tank9", False, r"tank 9 does not exist .*tanks 1-7"),
    ("devices.heater_shell", None, False, r"tank 4 has no heater: add one with role 'tank4' or "
                                          r"'shell'"),
    ("devices.heater_shell.role", "core", False, r"role 'core' is taken by more than one heater"),
    ("devices.heater_t2.role", "core", True, r"tank 1 has 2 heaters"),
    ("devices.stirrer_t5", None, True, r"tank 5 has no stirrer"),
    ("devices.heater_t5.role", "tank4", True, r"role 'tank4' is taken by more than one heater"),
    ("devices.sulfur_valve.inject_tanks", [1, 4], True, r"inject_tanks: tank 1 cannot take"),
    ("devices.sulfur_valve.inject_tanks", [4, 9], True, r"tank 9 cannot take"),
    ("devices.sulfur_valve.inject_tanks", [], True, r"sulfur_valve\.inject_tanks: a sulfur "
                                                    r"valve needs its plumbing"),
    ("devices.sulfur_valve.inject_tanks", [2, 3, 4, 5, 6, 7, 2], True, r"7 ports listed but "
                                                                       r"the valve has 6"),
    ("devices.sulfur_valve.inject_tanks", [4, 4], True, r"a tank is listed twice"),
    ("devices.solvent_valve.inject_tanks", [4], False, r"solvent_valve\.inject_tanks: only a "
                                                       r"valve with role 'sulfur_valve'"),
    ("devices.spectrometer", None, False, r"expected exactly one spectrometer"),
])
def test_bad_devices_file_names_the_field(path: str, value: Any, tanks: bool,
                                          expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_devices(_set(path, value, tanks=tanks), "devices file rig.yaml")


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.sampled_from(["core", "shell", "tank0", "tank05", "Tank4", "tank4 "]),
                 st.integers(-2, 12).map(lambda i: f"tank{i}"), st.text(max_size=8)))
def test_a_heater_role_is_accepted_exactly_when_it_names_a_stage_or_a_tank(role: str) -> None:
    d = devices()
    d["devices"]["heater_extra"] = {"kind": "eurotherm3200", "port": "heaters", "address": 9,
                                    "role": role}
    d["devices"]["heater_shell"]["role"] = "tank4"
    for i in (5, 6, 7):
        d["devices"][f"heater_t{i}"] = {"kind": "eurotherm3200", "port": "heaters",
                                        "address": 10 + i, "role": f"tank{i}"}
    m = re.fullmatch(r"tank([1-9][0-9]?)", role)
    if role in ("core", "tank4", *(f"tank{i}" for i in (5, 6, 7))):
        expected = f"role '{role}' is taken by more than one heater"
    elif role == "shell":
        expected = "tank 4 has 2 heaters"  # the shell block and heater_shell's tank4
    elif m and int(m.group(1)) > 7:
        expected = f"tank {m.group(1)} does not exist"
    elif m:
        expected = f"tank {m.group(1)} has 2 heaters"  # the core block covers tanks 1-3
    else:
        expected = f"devices.heater_extra.role={role!r}: expected 'core', 'shell' or 'tank<i>'"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_devices(d)


def test_per_tank_file_with_sulfur_valve_is_valid() -> None:
    cfg = parse_devices(per_tank(devices(), sulfur=[3, 4, 5, 6]))
    assert cfg.tank_device("heater", 5) == "heater_t5"
    assert cfg.by_role("valve")["sulfur_valve"] == "sulfur_valve"


# ============================================================================= fluidics
def test_flow_setpoints_follow_the_injection_tank() -> None:
    g = Geometry()
    default = flow_setpoints(Conditions(**BASE), g)
    same = flow_setpoints(Conditions(**BASE, s_inject_tank=4), g)
    assert same == default and default.inject_tanks == (4,)
    moved = flow_setpoints(Conditions(**BASE, s_inject_tank=5, s_inject_count=2), g)
    assert (moved.n_core_tanks, moved.n_shell_tanks, moved.inject_tanks) == (4, 3, (5, 6))
    assert moved.core_ml_min == pytest.approx(4 * 29.0 / 10.0)
    assert moved.shell_ml_min == pytest.approx(3 * 29.0 / 20.0)
    back = conditions_from_rates(moved.rates_ml_min, 180.0, 260.0, g, s_inject_tank=5,
                                 s_inject_count=2)
    assert back is not None and back.s_inject_tank == 5
    assert back.tau_core_min == pytest.approx(10.0) and back.tau_shell_min == pytest.approx(20.0)
    with pytest.raises(ConditionsError, match="s_inject_tank=1"):
        flow_setpoints(Conditions(**BASE, s_inject_tank=1), g)
    with pytest.raises(ConditionsError, match=r"s_inject_count=3 .*\[1, 2\]"):
        flow_setpoints(Conditions(**BASE, s_inject_tank=6, s_inject_count=3), g)


# ============================================================================= envelope
def test_two_stage_rig_realizes_the_classic_conditions() -> None:
    cfg = parse_devices(devices())
    sp = rig_setpoints(Conditions(**BASE), cfg)
    assert sp.heater_c == {"core": 180.0, "shell": 260.0}
    assert sp.stirrer_rpm == {"core": 600.0, "shell": 600.0}
    assert sp.sulfur_position is None and sp.inject_tank == 4
    assert sp.tank_c == (180.0,) * 3 + (260.0,) * 4


@pytest.mark.parametrize(("extra", "expected"), [
    ({"t_tank_c": (math.nan, 200.0)}, r"t_tank2_c=200 .*share heater 'heater_core'.*role tank2"),
    ({"s_inject_tank": 5}, r"s_inject_tank=5 .*no sulfur_valve"),
    ({"s_inject_count": 2}, r"s_inject_count=2 .*one line"),
    ({"stir_rpm": 1500.0}, r"stir_rpm=1500 .*\[0, 1200\] rpm"),
    ({"t_shell_c": 320.0}, r"t_shell_c=320 .*\[0, 300\] °C"),
    ({"tau_core_min": 0.5}, r"tau_core_min=0.5 .*>= [0-9.]+ min.*beyond its limit 20 mL/min"),
    ({"t_tank_c": (180.0,) * 8}, r"t_tank8_c=180 .*tanks 1-7"),
])
def test_two_stage_rig_refuses_what_it_cannot_realize(extra: dict[str, Any],
                                                     expected: str) -> None:
    cfg = parse_devices(devices())
    with pytest.raises(ConditionsError, match=expected):
        rig_setpoints(Conditions(**{**BASE, **extra}), cfg)


def test_per_tank_rig_realizes_a_profile_and_the_injection_position() -> None:
    cfg = parse_devices(per_tank(devices(), sulfur=[3, 4, 5, 6]))
    c = Conditions(**{**BASE, "t_tank_c": (170.0, math.nan, 190.0, math.nan, 280.0),
                      "s_inject_tank": 5, "stir_rpm": 800.0})
    sp = rig_setpoints(c, cfg)
    assert sp.tank_c == (170.0, 180.0, 190.0, 180.0, 280.0, 260.0, 260.0)
    assert sp.heater_c == {f"tank{i}": t for i, t in enumerate(sp.tank_c, start=1)}
    assert sp.stirrer_rpm == {f"tank{i}": 800.0 for i in range(1, 8)}
    assert sp.sulfur_position == 3  # inject_tanks [3, 4, 5, 6]: tank 5 is position 3
    assert tank_profile_c(c, cfg.geometry) == sp.tank_c
    with pytest.raises(ConditionsError, match=r"s_inject_tank=7 .*one of \[3, 4, 5, 6\]"):
        rig_setpoints(Conditions(**BASE, s_inject_tank=7), cfg)


def test_moving_the_injection_into_a_block_heater_is_refused() -> None:
    d = devices()
    d["devices"]["sulfur_valve"] = {"kind": "vici", "port": "sv", "role": "sulfur_valve",
                                    "inject_tanks": [3, 4, 5]}
    cfg = parse_devices(d)
    assert rig_setpoints(Conditions(**BASE, s_inject_tank=4), cfg).sulfur_position == 2
    # tank 3 becomes a shell tank at 260 °C but shares the core block with tanks 1-2 at 180 °C
    with pytest.raises(ConditionsError,
                       match=r"s_inject_tank=3 .*starts a heater block \[4\].*heater_core"):
        rig_setpoints(Conditions(**BASE, s_inject_tank=3), cfg)
    # the same position is fine when the stages run at one temperature
    ok = rig_setpoints(Conditions(**{**BASE, "t_core_c": 260.0}, s_inject_tank=3), cfg)
    assert ok.heater_c == {"core": 260.0, "shell": 260.0}


def _space(*params: Parameter) -> ParameterSpace:
    return ParameterSpace(parameters=params)


FIXED = {k: v for k, v in BASE.items() if k not in ("t_core_c", "t_shell_c")}


def test_check_space_tells_a_campaign_up_front() -> None:
    blocks = parse_devices(devices())
    tanks = parse_devices(per_tank(devices(), sulfur=[4, 5, 6]))
    temps = (Parameter(name="t_core_c", lower=160, upper=220),
             Parameter(name="t_shell_c", lower=240, upper=290))
    check_space(_space(*temps), blocks, FIXED)
    searched_tank = Parameter(name="t_tank5_c", lower=240, upper=290)
    with pytest.raises(ConditionsError, match=r"t_tank5_c=290 .*role tank5"):
        check_space(_space(*temps, searched_tank), blocks, FIXED)
    check_space(_space(*temps, searched_tank), tanks, FIXED)
    inject = Parameter(name="s_inject_tank", lower=3, upper=6, integer=True)
    with pytest.raises(ConditionsError, match=r"s_inject_tank=3 .*one of \[4, 5, 6\].*corner"):
        check_space(_space(*temps, inject), tanks, FIXED)
    check_space(_space(*temps, inject.model_copy(update={"lower": 4.0})), tanks, FIXED)
    with pytest.raises(ConditionsError, match="s_inject_count"):
        check_space(_space(*temps, Parameter(name="s_inject_count", lower=1, upper=2,
                                             integer=True)), tanks, FIXED)
    hot = Parameter(name="t_shell_c", lower=240, upper=320)
    with pytest.raises(ConditionsError, match=r"t_shell_c=320 .*heater 'heater_shell' limit"):
        check_space(_space(temps[0], hot), blocks, FIXED)
    with pytest.raises(ConfigError, match="tau_core_min"):
        check_space(_space(*temps), blocks, {})


# ============================================================================= over ptys
class Bench:
    """The device state the emulators serve, without chemistry (heaters advance by wall time)."""

    def __init__(self, heaters: dict[str, HeaterModel], time_scale: float = 600.0) -> None:
        self.lock = threading.RLock()
        self.heaters = heaters
        self.stirrers: dict[str, dict[str, float]] = {}
        self.valves: dict[str, int] = {}
        self.pumps: dict[str, Any] = {}
        self.injection = (0, 1)  # (first tank, count): what the sulfur valve sets
        self.time_scale = time_scale
        self._t = time.monotonic()

    def advance(self) -> None:
        now = time.monotonic()
        dt_min = (now - self._t) * self.time_scale / 60.0
        self._t = now
        for h in self.heaters.values():
            h.advance(dt_min)


@pytest.fixture
def tank_lab() -> Any:
    """Seven tank heaters on one Modbus bus, a stirrer per tank, a sulfur valve, on ptys."""
    bench = Bench({f"heater_t{i}": HeaterModel(address=i, role=f"tank{i}")
                   for i in range(1, 8)})
    emus = {"heaters": ModbusBusEmulator("heaters", bench),  # type: ignore[arg-type]
            **{f"stir{i}": StirrerEmulator(f"stirrer_t{i}", bench)  # type: ignore[arg-type]
               for i in range(1, 8)},
            "sulfur": SulfurValveEmulator("sulfur_valve", bench,  # type: ignore[arg-type]
                                          (3, 4, 5, 6), positions=6)}
    for e in emus.values():
        e.start()
    d = per_tank(devices(), sulfur=[3, 4, 5, 6])
    for port, e in emus.items():
        d["ports"][port] = {"url": e.port, "timeout_s": 1.0, "retries": 3}
    rig = Rig.open(parse_devices(d))
    yield bench, emus, rig
    rig.close()
    for e in emus.values():
        e.stop()


def test_per_tank_heaters_stirrers_and_sulfur_valve_over_ptys(tank_lab: Any) -> None:
    bench, _, rig = tank_lab
    c = Conditions(**{**BASE, "t_tank_c": (170.0, 175.0, 185.0, 190.0, 280.0),
                      "s_inject_tank": 5, "stir_rpm": 750.0})
    sp = rig_setpoints(c, rig.config)
    for dev in [*rig.heaters.values(), *rig.stirrers.values(), rig.sulfur_valve]:
        dev.connect()
    for role, t_c in sp.heater_c.items():
        rig.heaters[role].set_temperature_c(t_c)  # verified read-back of the remote SP
    for role, rpm in sp.stirrer_rpm.items():
        rig.stirrers[role].set_speed_rpm(rpm)
        rig.stirrers[role].start()
    assert sp.sulfur_position is not None
    rig.sulfur_valve.move(sp.sulfur_position)
    assert bench.valves["sulfur_valve"] == 3 and rig.sulfur_valve.position() == 3
    assert bench.injection == (5, 1)  # the plumbing: position 3 feeds tank 5
    assert {h.role: h.remote_sp_c for h in bench.heaters.values()} == pytest.approx(sp.heater_c)
    assert rig.stirrers["tank6"].speed_rpm() == 750.0
    assert bench.stirrers["stirrer_t2"]["sp"] == 750.0


def test_a_tank_heater_fault_reaches_the_driver_over_its_bus_address(tank_lab: Any) -> None:
    bench, emus, rig = tank_lab
    bench.heaters["heater_t4"].sensor_break = True
    assert rig.heaters["tank4"].fault() == "sensor_break"
    assert rig.heaters["tank3"].fault() == ""
    emus["stir6"].no_reply = True
    line = rig.transports["stir6"]
    line.timeout_s, line.retries, line.serial.timeout = 0.1, 1, 0.1
    with pytest.raises(HardwareError, match="stirrer_t6"):
        rig.stirrers["tank6"].speed_rpm()


def test_sulfur_valve_out_of_range_position_is_refused_before_sending(tank_lab: Any) -> None:
    _, emus, rig = tank_lab
    before = emus["sulfur"].requests
    with pytest.raises(ConditionsError, match=r"sulfur_valve\.position=7"):
        rig.sulfur_valve.move(7)
    assert emus["sulfur"].requests == before


# ============================================================================= ocean kind
@pytest.fixture
def fake_seabreeze(monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = types.ModuleType("seabreeze")
    sub = types.ModuleType("seabreeze.spectrometers")
    # seabreeze is an optional extra and no USB spectrometer exists here: the seabreeze
    # backend is the one thing these tests replace (nothing real can run)
    sub.Spectrometer = FakeOcean  # type: ignore[attr-defined]
    pkg.spectrometers = sub  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "seabreeze", pkg)
    monkeypatch.setitem(sys.modules, "seabreeze.spectrometers", sub)


def ocean_file(light_url: str, serial: str = "FLMS12345") -> dict[str, Any]:
    d = devices()
    d["ports"]["optics"] = {"url": light_url, "timeout_s": 1.0}
    d["devices"]["spectrometer"] = {"kind": "ocean", "serial_number": serial, "light": "optics",
                                    "excitation_nm": 405, "path_length_cm": 0.2}
    d["devices"]["optics"] = {"kind": "asp1_light", "port": "optics"}
    return d


def test_ocean_spectrometer_with_a_serial_light_path_over_a_pty(fake_seabreeze: None) -> None:
    light = LightPathEmulator("optics", Bench({}))  # type: ignore[arg-type]
    light.start()
    try:
        cfg = parse_devices(ocean_file(light.port))
        assert cfg.where("spectrometer") == "USB FLMS12345"
        rig = Rig.open(cfg)
        try:
            spec = rig.spectrometer
            assert isinstance(spec, Spectrometer) and set(rig.others) == {"optics"}
            rig.others["optics"].connect()  # type: ignore[attr-defined]
            assert "ASP-1L" in rig.others["optics"].ping()
            spec.configure(source="EXC", shutter_open=True, cell="DYE")
            assert (light.source, light.shutter, light.cell) == ("EXC", "OPEN", "DYE")
            spec.set_integration_ms(40)
            assert spec.acquire()[0] == pytest.approx(400.0)  # the stale frame was discarded
            assert spec.path_length_cm == 0.2 and "FLMS12345" in spec.ping()
        finally:
            rig.close()
    finally:
        light.stop()


def test_ocean_frame_taken_while_the_light_went_out_is_a_device_fault(
        fake_seabreeze: None) -> None:
    """The USB detector cannot tell a dark frame from a dark sample: the light path is read
    back after every frame, so an LED that went out after its setting was checked makes the
    frame a device fault (it was returned as a spectrum)."""
    light = LightPathEmulator("optics", Bench({}))  # type: ignore[arg-type]
    light.start()
    try:
        rig = Rig.open(parse_devices(ocean_file(light.port)))
        try:
            spec = rig.spectrometer
            spec.configure(source="EXC", shutter_open=True, cell="DYE")
            spec.acquire()  # as set: a frame
            light.source_failed = True  # the LED goes out
            with pytest.raises(DeviceFault, match=r"spectrometer: light path not as set after "
                                                  r"the frame \(SRC reads OFF, set EXC\)"):
                spec.acquire()
        finally:
            rig.close()
    finally:
        light.stop()


def test_ocean_not_connected_or_not_installed(fake_seabreeze: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HardwareError, match="no Ocean Insight spectrometer FLMS99999"):
        Rig.open(parse_devices(ocean_file("loop://", serial="FLMS99999")))
    monkeypatch.setitem(sys.modules, "seabreeze.spectrometers", None)
    with pytest.raises(ConfigError, match=r"pip install 'autolab\[ocean\]'"):
        Rig.open(parse_devices(ocean_file("loop://")))


@pytest.mark.parametrize(("change", "expected"), [
    ({"serial_number": None}, r"devices\.spectrometer\.serial_number: Field required"),
    ({"serial_number": "FL MS"}, r"devices\.spectrometer\.serial_number: String should match"),
    ({"port": "optics"}, r"devices\.spectrometer\.port: Extra inputs are not permitted"),
    ({"excitation_nm": 5000}, r"devices\.spectrometer\.excitation_nm: .*less than or equal"),
    ({"light": "ghost"}, r"devices\.spectrometer\.light='ghost' is not a device of the file"),
    ({"light": "pump_zinc"}, r"devices\.spectrometer\.light='pump_zinc': expected a light "
                             r"device .*asp1_light"),
])
def test_bad_ocean_entries_name_the_field(change: dict[str, Any], expected: str) -> None:
    d = ocean_file("loop://")
    entry = d["devices"]["spectrometer"]
    for k, v in change.items():
        if v is None:
            entry.pop(k)
        else:
            entry[k] = v
    with pytest.raises(ConfigError, match=expected):
        parse_devices(d)


def test_a_tank_heater_fault_trips_the_supervisor_and_the_hard_shutdown_cuts_every_tank(
        tank_lab: Any) -> None:
    bench, _, rig = tank_lab
    for h in rig.heaters.values():
        h.connect()
    bench.heaters["heater_t6"].sensor_break = True
    trips: list[Trip] = []
    Supervisor(rig, trips.append).poll_once()  # heaters are polled first: no pump is reached
    assert [(t.reason, t.device, t.hard) for t in trips] == [("sensor_break", "heater_t6", True)]
    pumps = rig.transports["pumps"]  # a loop:// stand-in: let its silence fail fast
    pumps.timeout_s, pumps.retries, pumps.serial.timeout = 0.02, 0, 0.02
    report = Shutdown(rig, lambda s: None, flush_ml=1.0, flush_rate_ml_min=1.0).run(hard=True)
    cut = [s for s in report.steps if s.name.startswith("cut heater")]
    assert [s.name for s in cut] == [f"cut heater tank{i}" for i in range(1, 8)]
    assert all(s.ok for s in cut)
    assert all(h.op_hi_pct == 0.0 for h in bench.heaters.values())


@pytest.mark.parametrize("tanks", [False, True])
def test_devices_file_round_trips_through_yaml(tmp_path: Any, tanks: bool) -> None:
    d = per_tank(devices(), sulfur=[3, 4, 5]) if tanks else ocean_file("loop://")
    cfg = parse_devices(d)
    dump_devices(cfg, tmp_path / "rig.yaml")
    back = load_devices(tmp_path / "rig.yaml")
    assert back == cfg
    assert type(back.devices["spectrometer"]) is type(cfg.devices["spectrometer"])


def test_heater_setpoints_are_pure_in_roles_and_geometry() -> None:
    g = Geometry()
    c = Conditions(**{**BASE, "t_tank_c": (math.nan,) * 4 + (275.0,)})
    assert heater_setpoints(c, ["core", "tank4", "tank5", "tank6", "tank7"], g) == {
        "core": 180.0, "tank4": 260.0, "tank5": 275.0, "tank6": 260.0, "tank7": 260.0}
    with pytest.raises(ConditionsError, match=r"t_tank5_c=275 .*share heater 'shell'"):
        heater_setpoints(c, ["core", "shell"], g)
    with pytest.raises(ConditionsError, match="heater role 'tank9' heats no tank"):
        heater_setpoints(Conditions(**BASE), ["core", "shell", "tank9"], g)


# ============================================================================= end to end
def test_per_tank_conditions_run_end_to_end_on_the_serial_rig() -> None:
    """One experiment through the procedure, drivers and emulators of a per-tank virtual lab:
    seven tank heaters on one Modbus bus, seven stirrers, the sulfur valve at tank 5."""
    c = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=290, tau_shell_min=15, cl_to_i=6,
                   s_to_zn=2, t_tank_c=(math.nan,) * 4 + (280.0,), s_inject_tank=5,
                   stir_rpm=700.0)
    with VirtualLab(time_scale=2400.0, per_tank=True, sulfur_tanks=(3, 4, 5, 6)) as lab:
        ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
        try:
            meas = ex.run(c)
            with lab.reactor.lock:  # what the devices were told (before the close cools)
                injection = lab.reactor.injection
                valve = lab.reactor.valves["sulfur_valve"]
                sp = {h.role: h.remote_sp_c for h in lab.reactor.heaters.values()}
                stir = {n: s["sp"] for n, s in lab.reactor.stirrers.items()}
        finally:
            ex.close()
    assert meas.conditions == c.as_dict()
    assert (injection, valve) == ((5, 1), 3)
    assert sp == pytest.approx({"tank1": 180, "tank2": 180, "tank3": 180, "tank4": 180,
                                "tank5": 280, "tank6": 290, "tank7": 290}, abs=0.05)
    assert set(stir.values()) == {700.0}


def test_validate_checks_the_space_against_the_rig(tmp_path: Any) -> None:
    def campaign(d: dict[str, Any]) -> Any:
        for dev in d["devices"].values():
            if dev["kind"] == "eurotherm3200":
                dev["limits"]["max_temperature_c"] = 340
            if dev["kind"] == "ne1000":  # the virtual lab's pumps (a 5-min core stage is fast)
                dev["limits"]["max_rate_ml_min"] = 50
        dump_devices(parse_devices(d), tmp_path / "rig.yaml")
        path = tmp_path / "c.yaml"
        path.write_text(
            f"name: rig-check\nexecutor: {{kind: cstr, devices: {tmp_path / 'rig.yaml'}}}\n"
            "space:\n  parameters: [t_core_c, tau_core_min, t_shell_c, tau_shell_min, cl_to_i,"
            " s_to_zn, s_inject_tank]\n  fixed: {p_to_in: 3.6}\n"
            "objective: {mode: scalar, terms: [{kind: target, outcome: pl_peak_nm, value: 550,"
            " tolerance: 2}]}\n", encoding="utf-8")
        return path

    with pytest.raises(ConfigError, match=r"c\.yaml: space: the rig of .*rig\.yaml cannot "
                                          r"realize it: s_inject_tank=3 .*no sulfur_valve"):
        load_for_run(campaign(devices()))
    cfg = load_for_run(campaign(per_tank(devices(), sulfur=[3, 4, 5, 6])))
    assert "s_inject_tank" in cfg.space.parameters


def test_a_poll_too_slow_for_the_pumps_safe_mode_is_refused_before_the_run(
        tmp_path: Any) -> None:
    """A supervisor polling less often than a third of a Safe-mode timeout would let the pumps
    stop themselves (alarm T) mid-experiment: refused by validate/run, naming both fields."""
    d = devices()
    for dev in d["devices"].values():
        if dev["kind"] == "ne1000":
            dev["safe_mode_s"] = 3
            dev["limits"]["max_rate_ml_min"] = 50
        if dev["kind"] == "eurotherm3200":
            dev["limits"]["max_temperature_c"] = 340
    dump_devices(parse_devices(d), tmp_path / "rig.yaml")

    def campaign(poll: float) -> Any:
        path = tmp_path / "c.yaml"
        path.write_text(
            f"name: poll-check\nexecutor: {{kind: cstr, devices: {tmp_path / 'rig.yaml'}, "
            f"settings: {{poll_period_s: {poll}}}}}\n"
            "objective: {mode: scalar, terms: [{kind: target, outcome: pl_peak_nm, value: 550,"
            " tolerance: 2}]}\n", encoding="utf-8")
        return path

    with pytest.raises(ConfigError, match=r"c\.yaml: executor\.settings\.poll_period_s: too "
                                          r"slow .*devices\.pump_\w+\.safe_mode_s=3 s needs a "
                                          r"supervisor poll at least every 1 s .*got "
                                          r"poll_period_s=1\.5"):
        load_for_run(campaign(1.5))
    assert load_for_run(campaign(1.0)).name == "poll-check"
    assert parse_devices(d).watchdog_problems(0.5) == []


def test_a_heater_fault_no_one_listed_trips_hard_never_ignored(
        tank_lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind (a third party's) that names a fault the supervisor does not know: a hazard."""
    _, _, rig = tank_lab
    for h in rig.heaters.values():
        h.connect()
    monkeypatch.setattr(rig.heaters["tank3"], "fault", lambda: "coolant_low")
    trips: list[Trip] = []
    Supervisor(rig, trips.append).poll_once()
    assert [(t.reason, t.device, t.hard) for t in trips] == [("coolant_low", "heater_t3", True)]
    assert "not a known kind of fault" in trips[0].detail


def test_a_fault_that_also_fails_the_pv_read_trips_as_the_fault_not_comms_loss(
        tank_lab: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A controller that reports a sensor break and then refuses the PV read: the trip names the
    sensor break (the status is judged before the PV is read)."""
    _, _, rig = tank_lab
    for h in rig.heaters.values():
        h.connect()

    def no_pv() -> float:
        raise HardwareError("heater_t2: PV read failed")

    monkeypatch.setattr(rig.heaters["tank2"], "fault", lambda: "sensor_break")
    monkeypatch.setattr(rig.heaters["tank2"], "temperature_c", no_pv)
    trips: list[Trip] = []
    Supervisor(rig, trips.append).poll_once()
    assert [(t.reason, t.device, t.hard) for t in trips] == [("sensor_break", "heater_t2", True)]
