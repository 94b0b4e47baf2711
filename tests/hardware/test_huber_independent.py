"""The Huber PB driver against a thermostat emulated from the description alone, over a pty.

Our own emulator (``autolab/virtuallab``) was written by the driver's authors, so a misreading
shared by both would hide. ``ManualHuber`` below was written from the hardware reference (§2.4
Huber, §0, §4.6 ptys, §5 safety) without reading that emulator:

* 9600 8N1 (a pty cannot check it); a frame is ``{`` + ``M`` (host) / ``S`` (unit) + two hex
  digits of the variable + four hex digits of data, ``****`` to ask, + CR LF: ten characters.
* temperatures are 16-bit two's complement in 0.01 °C (``{S00F2DF`` is -33.61 °C); -151 °C
  marks an invalid temperature (a process sensor not plugged in, a broken one).
* variables: ``00`` setpoint, ``01`` internal (bath) temperature, ``02`` return temperature,
  ``03`` pump pressure (mbar), ``04`` power (W, negative cooling), ``07`` process temperature,
  ``0A``/``3C`` status bit fields, ``14`` temperature control active, ``16`` circulation,
  ``26``/``48`` pump speed / its setpoint, ``30``/``31`` lowest/highest setpoint, ``1B``/``1C``
  serial number.
* a request that is no PB master frame, or asks a variable the unit lacks, gets no answer.

Where the description is open the emulator has a switch (``Readings``): what a write is
answered with (the new value, the old one, nothing), the hex case of replies, a lower-case
request, what a power failure leaves (control switched off or restarted, the setpoint kept
or lost), and whether a setpoint beyond 30/31 is clamped or kept out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.exceptions import ConditionsError
from autolab.hardware.controllers import HuberPB
from autolab.hardware.protocols import huber
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Supervisor, Trip
from autolab.hardware.transport import Transport

from .pty_device import PtyDevice, heater_rig

SP, T_INT, T_RET, PRESSURE, POWER, T_PROC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x07
STATUS_A, STATUS_B, CONTROL, CIRC, PUMP, PUMP_SP = 0x0A, 0x3C, 0x14, 0x16, 0x26, 0x48
SP_MIN, SP_MAX, SERIAL_HI, SERIAL_LO = 0x30, 0x31, 0x1B, 0x1C
WRITABLE = frozenset({SP, CONTROL, CIRC, PUMP_SP})
INVALID_C = -151.0
_MASTER = re.compile(r"^\{M([0-9A-Fa-f]{2})([0-9A-Fa-f]{4}|\*{4})$")


def word_of(value_c: float) -> int:
    """A temperature as the unit writes it: 0.01 °C, 16-bit two's complement."""
    return round(value_c * 100) & 0xFFFF


def value_of(word: int) -> float:
    """A temperature word as the unit reads it."""
    return (word - 0x10000 if word >= 0x8000 else word) / 100


@dataclass
class Readings:
    """Switches for what the description leaves open.

    Attributes:
        write_reply: ``new`` (the slave frame with the value now held), ``old`` (the value
            before the write) or ``none`` (a write is not answered).
        lower_hex: Replies in lower-case hex.
        autostart: After a power failure temperature control comes back on by itself.
        keeps_setpoint: The setpoint survives a power failure (else back to 20 °C).
        out_of_range: ``clamp`` a setpoint beyond 30/31, or ``keep`` the old one.
        control_without_flow: Temperature control stays active when the circulation stops
            (else it goes off with it).
    """

    write_reply: str = "new"
    lower_hex: bool = False
    autostart: bool = False
    keeps_setpoint: bool = True
    out_of_range: str = "keep"
    control_without_flow: bool = False


@dataclass
class Unit:
    """The thermostat's variables as 16-bit words (temperatures in 0.01 °C)."""

    readings: Readings = field(default_factory=Readings)
    words: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.words = {SP: word_of(20.0), T_INT: word_of(20.0), T_RET: word_of(20.0),
                      PRESSURE: 300, POWER: 0, T_PROC: word_of(INVALID_C), STATUS_A: 0,
                      STATUS_B: 0, CONTROL: 0, CIRC: 0, PUMP: 0, PUMP_SP: 3000,
                      SP_MIN: word_of(-40.0), SP_MAX: word_of(250.0), SERIAL_HI: 0x0001,
                      SERIAL_LO: 0x2345}

    def temperature(self, variable: int, value_c: float) -> None:
        """Set a measured temperature (``INVALID_C``: the invalid marker)."""
        self.words[variable] = word_of(value_c)

    def write(self, variable: int, word: int) -> int | None:
        """A write; the word to answer with (``None``: no answer)."""
        if variable not in self.words:
            return None
        old = self.words[variable]
        if variable in WRITABLE:
            self.words[variable] = self._accepted(variable, word, old)
        if variable == CIRC and not word:
            self.pump_stops()
        return {"new": self.words[variable], "old": old, "none": None}[
            self.readings.write_reply]

    def _accepted(self, variable: int, word: int, old: int) -> int:
        if variable != SP:
            return word
        low, high = value_of(self.words[SP_MIN]), value_of(self.words[SP_MAX])
        value = value_of(word)
        if low <= value <= high:
            return word
        return word_of(min(max(value, low), high)) if self.readings.out_of_range == "clamp" \
            else old

    def pump_stops(self) -> None:
        """The circulation stops (its panel, the pump); control with it unless the reading."""
        self.words[CIRC] = 0
        if not self.readings.control_without_flow:
            self.words[CONTROL] = 0

    def power_failure(self) -> None:
        """Mains off and on: control restarts only under ``autostart``; the setpoint may go."""
        self.words[CONTROL] = int(self.readings.autostart and self.words[CIRC])
        if not self.readings.keeps_setpoint:
            self.words[SP] = word_of(20.0)


class ManualHuber(PtyDevice):
    """One thermostat on a pty: frames master lines, answers slave frames.

    Attributes:
        unit: Its variables.
        heard: Every master frame taken, as ``(variable, word or None)``.
    """

    def __init__(self) -> None:
        self.unit = Unit()
        self.heard: list[tuple[int, int | None]] = []
        self.garble_next = 0
        self.foreign_next = 0
        self._buf = b""
        super().__init__()

    def reset(self, readings: Readings | None = None) -> None:
        """A fresh unit (control and circulation off) under ``readings``."""
        with self.lock:
            self.unit = Unit(readings or Readings())
            self.heard.clear()
            self.garble_next = self.foreign_next = 0
            self._buf = b""

    def feed(self, data: bytes, t_s: float) -> None:
        """A line ends at LF (CR LF); each is one master frame or ignored."""
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self._take(line.decode("ascii", errors="replace").rstrip("\r"))

    def _take(self, line: str) -> None:
        m = _MASTER.match(line)
        if m is None:
            return
        variable = int(m.group(1), 16)
        word = None if m.group(2) == "****" else int(m.group(2), 16)
        self.heard.append((variable, word))
        answer = (self.unit.words.get(variable) if word is None
                  else self.unit.write(variable, word))
        if answer is not None:
            self._reply(variable, answer)

    def _reply(self, variable: int, word: int) -> None:
        garble = False
        if self.foreign_next:  # first a frame for another variable, then a garbled one
            self.foreign_next -= 1
            variable = (variable + 1) & 0xFF
        elif self.garble_next:
            self.garble_next -= 1
            garble = True
        text = f"{{S{variable:02X}{word:04X}"
        if self.unit.readings.lower_hex:
            text = "{S" + text[2:].lower()
        if garble:
            text = text[:5] + "G" + text[6:]
        self.send(text.encode("ascii") + b"\r\n")

    def writes(self, variable: int) -> list[int]:
        """The words written to ``variable`` so far."""
        with self.lock:
            return [w for v, w in self.heard if v == variable and w is not None]


# ============================================================================= codec
@given(st.integers(0, 0xFF), st.one_of(st.none(), st.integers(0, 0xFFFF)))
def test_the_driver_s_requests_are_ten_character_master_frames(variable: int,
                                                               word: int | None) -> None:
    line = huber.encode_query(variable) if word is None else huber.encode_write(variable, word)
    assert len(line) == 10 and line.endswith(b"\r\n")
    m = _MASTER.match(line.decode("ascii").rstrip("\r\n"))
    assert m is not None and int(m.group(1), 16) == variable
    assert m.group(2) == ("****" if word is None else f"{word:04X}")


@given(st.floats(-327.68, 327.67, allow_nan=False), st.booleans())
def test_temperatures_are_two_s_complement_hundredths_either_hex_case(value_c: float,
                                                                       lower: bool) -> None:
    text = f"{{S00{word_of(value_c):04X}"
    frame = ("{S" + text[2:].lower() if lower else text).encode() + b"\r\n"
    word = huber.parse_reply(frame, SP)
    assert huber.from_word(word) == value_of(word_of(value_c))
    assert huber.to_word(value_of(word)) == word


def test_the_description_s_example_and_the_invalid_marker() -> None:
    assert huber.from_word(huber.parse_reply(b"{S00F2DF\r\n", 0)) == -33.61
    assert huber.is_invalid(word_of(INVALID_C))
    assert not huber.is_invalid(word_of(-150.99))


# ============================================================================= fixtures
@pytest.fixture(scope="module")
def shared() -> Iterator[ManualHuber]:
    """One emulated thermostat for the module."""
    emu = ManualHuber()
    yield emu
    emu.close()


@pytest.fixture
def thermo(shared: ManualHuber) -> Iterator[tuple[ManualHuber, Transport]]:
    """The shared unit reset, and a fresh 9600-Bd transport on it (closed after)."""
    shared.reset()
    line = Transport(shared.port, baudrate=9600, timeout_s=0.3, retries=2)
    yield shared, line
    line.close()


def _driver(line: Transport, **kw: Any) -> HuberPB:
    return HuberPB(line, "huber", **kw)


def _answer_was_late(line: Transport, readings: Readings) -> bool:
    """Whether a request the unit answers timed out or a late reply was discarded.

    A silent unit's writes time out by design; its queries, and every request to a unit that
    answers writes, should not.
    """
    return any(e.error and (readings.write_reply != "none" or not e.sent
                            or e.sent.endswith(b"****\r\n"))
               for e in line.log.since(0))


# ============================================================================= bring-up
@pytest.mark.parametrize("readings", [Readings(), Readings(write_reply="old", lower_hex=True),
                                      Readings(write_reply="none")],
                         ids=["answers-new", "answers-old-lower-hex", "silent-writes"])
def test_bring_up_sets_standby_flow_and_control_under_each_write_reply(
        thermo: Any, readings: Readings) -> None:
    emu, line = thermo
    emu.reset(readings)
    heater = _driver(line)
    heater.connect(standby_c=-12.5)  # a negative word: two's complement
    with emu.lock:
        w = emu.unit.words
        assert (value_of(w[SP]), w[CIRC], w[CONTROL]) == (-12.5, 1, 1)
        writes = emu.writes(SP)
    # written once, then read back; a reply later than the timeout (a loaded host: CI once)
    # is read back as the old value, and the same word is written again, never another
    assert set(writes) == {word_of(-12.5)}
    assert len(writes) == 1 or _answer_was_late(line, readings), writes
    assert heater.range_c == (-40.0, 250.0)
    assert heater.fault() == ""


def test_the_lf_of_each_cr_lf_reply_is_not_logged_as_discarded(thermo: Any) -> None:
    """The line reader stops at CR; the LF left waiting is the reply's own, not unasked bytes."""
    _, line = thermo
    _driver(line).connect()
    assert not [x for x in line.log.lines() if "!" in x]


def test_a_setpoint_beyond_the_unit_s_range_is_refused_before_a_byte(thermo: Any) -> None:
    emu, line = thermo
    heater = _driver(line)
    heater.connect()
    with emu.lock:
        before = len(emu.heard)
    with pytest.raises(ConditionsError, match="setpoint range"):
        heater.set_temperature_c(260.0)
    with emu.lock:
        assert len(emu.heard) == before


# ============================================================================= faults
@pytest.mark.parametrize("sensor", ["internal", "process"])
def test_the_invalid_marker_is_a_sensor_fault_never_a_temperature(thermo: Any,
                                                                   sensor: str) -> None:
    """-151 °C: ``sensor_break``; the PV is NaN (never -151, which the cool-down would take
    for a cold block)."""
    emu, line = thermo
    heater = _driver(line, sensor=sensor)
    heater.connect()
    with emu.lock:
        emu.unit.temperature(T_PROC, 80.0)
        emu.unit.temperature(T_INT, 80.0)
    assert heater.temperature_c() == 80.0
    with emu.lock:
        emu.unit.temperature(T_PROC if sensor == "process" else T_INT, INVALID_C)
    assert heater.fault() == "sensor_break"
    assert math.isnan(heater.temperature_c())


def test_a_garbled_or_foreign_reply_is_asked_again_never_read(thermo: Any) -> None:
    """No checksum in a PB frame: a frame that is not one, or answers another variable,
    is retried; the value is read from a reply to the variable asked."""
    emu, line = thermo
    with emu.lock:
        emu.unit.temperature(T_INT, 42.42)
        emu.garble_next, emu.foreign_next = 1, 1
    assert _driver(line).temperature_c() == 42.42
    with emu.lock:
        assert emu.heard.count((T_INT, None)) == 3


def test_the_cut_switches_control_off_and_leaves_the_flow_on(thermo: Any) -> None:
    emu, line = thermo
    heater = _driver(line)
    heater.connect()
    heater.cut_output()
    with emu.lock:
        assert (emu.unit.words[CONTROL], emu.unit.words[CIRC]) == (0, 1)
    assert heater.fault() == ""  # switched off by the host: not a fault


@pytest.mark.parametrize("control_without_flow", [False, True])
def test_a_circulation_that_stops_is_a_fault_whether_or_not_control_stops_too(
        thermo: Any, control_without_flow: bool) -> None:
    """The description names 14 (control) and 16 (circulation) apart and does not say that
    one stops with the other; a jacket without flow heats no tank either way."""
    emu, line = thermo
    emu.reset(Readings(control_without_flow=control_without_flow))
    heater = _driver(line)
    heater.connect()
    with emu.lock:
        emu.unit.pump_stops()
    assert heater.fault() == ("circulation_off" if control_without_flow else "stopped")


# ============================================================================= the rig
@pytest.fixture(scope="module")
def rig_units() -> Iterator[dict[str, ManualHuber]]:
    """Two emulated thermostats (core, shell) for the rig tests of this module."""
    emus = {r: ManualHuber() for r in ("core", "shell")}
    yield emus
    for emu in emus.values():
        emu.close()


@pytest.fixture
def rig(rig_units: dict[str, ManualHuber]) -> Iterator[tuple[dict[str, ManualHuber], Rig]]:
    """A rig whose heaters are the two thermostats; nothing else is talked to."""
    for emu in rig_units.values():
        emu.reset()
    with heater_rig("huber", rig_units, timeout_s=0.3, max_temperature_c=200) as r:
        yield rig_units, r


@pytest.mark.parametrize(("autostart", "keeps", "reason"),
                         [(False, True, "stopped"), (False, False, "stopped"),
                          (True, False, None)])
def test_a_power_failure_is_a_stop_or_a_setpoint_sent_again(rig: Any, autostart: bool,
                                                            keeps: bool,
                                                            reason: str | None) -> None:
    """Control off after the failure: the trip ``stopped`` (hard), and the host never
    switches it on by itself. Restarted by the unit: its lost setpoint is sent again. The
    port is 9600 8N1 (a pty cannot check a format: the rig's request for one is checked)."""
    emus, r = rig
    assert r.transports["huber_core"].line_format == {"bytesize": 8, "parity": "N",
                                                      "stopbits": 1}
    assert r.transports["huber_core"].serial.baudrate == 9600
    emu = emus["core"]
    with emu.lock:
        emu.unit.readings = Readings(autostart=autostart, keeps_setpoint=keeps)
    r.heaters["core"].connect(standby_c=30.0)
    trips: list[Trip] = []
    sup = Supervisor(r, trips.append)
    sup.setpoints_c["core"] = 30.0
    with emu.lock:
        emu.unit.power_failure()
        control_writes = len(emu.writes(CONTROL))
    tripped = sup.poll_heater("core")
    assert tripped == (reason is not None)
    assert [(t.reason, t.hard) for t in trips] == ([(reason, True)] if reason else [])
    with emu.lock:
        assert value_of(emu.unit.words[SP]) == 30.0
        assert len(emu.writes(CONTROL)) == control_writes  # never restarted by the host
