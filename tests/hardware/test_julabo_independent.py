"""The Julabo driver against a circulator emulated from the manual alone, over a pty.

Our own emulator (``autolab/virtuallab``) was written by the driver's authors, so a misreading
shared by both would hide. ``ManualJulabo`` below was written from the hardware reference
(§2.3 Julabo, §0, §4.6 ptys, §5 safety) without reading that emulator:

* a command is ``name`` or ``name value`` ended by CR (the CF41: CR LF); a reply is the data
  ended by LF (the CF41: CR LF); ``out`` commands get no reply; 7E1 (a pty cannot check it).
* at least 250 ms between two commands: one that comes sooner is not taken (the manual gives
  the rule, not what a unit does when it is broken; "not taken" is the reading that shows a
  driver breaking it); a command while a reply is still being sent is not taken either.
* ``out`` commands act only in remote mode (else error ``-09``); an unknown command is ``-08``;
  a setpoint beyond the unit's safety limit is ``-13`` and not taken.
* ``status``: ``00``/``02`` stopped, ``01``/``03`` started, ``-xx`` an error (``-01``, ``-03``,
  ``-06``, ``-14``; sensors ``-05``/``-33``/``-38``, §5).
* ``version``, ``in_pv_00`` bath, ``in_pv_01`` heating power, ``in_pv_02`` external Pt100,
  ``in_pv_03`` safety sensor, ``in_sp_00``/``out_sp_00 xxx.xx``, ``out_sp_03``/``out_sp_04``
  warning limits, ``in_mode_05``/``out_mode_05 0|1``, ``out_mode_04 0|1`` (and ``in_mode_04``).
* after a power loss: remote mode comes back stopped (``R OFF``), no autostart, the setpoint
  lost (it must be sent again).

Where the manual is open the emulator has a switch (``Readings``). The commands are 250 ms
apart by the manual's rule, so the tests keep their round trips few and share one unit per
module (reset between tests); they wait on conditions, never assert a time.
"""

from __future__ import annotations

import math
import re
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.controllers import JulaboCirculator
from autolab.hardware.devices import parse_devices
from autolab.hardware.protocols import julabo
from autolab.hardware.rig import Rig
from autolab.hardware.safety import Supervisor, Trip
from autolab.hardware.transport import DeviceRefused, Transport

from .pty_device import PtyDevice, heater_rig
from .test_rig_registry import devices
from .waiting import until

MIN_SPACING_S = 0.25  # the manual's rule
#: The emulator times a command by its first byte's arrival; a loaded host may read one late
#: and the next on time, so the rule is applied with this much slack (the break found, a retry
#: 20-50 ms after the first try, is far inside it).
SLACK_S = 0.1
SENSOR_CODES = (-5, -33, -38)
ERROR_TEXT = {-1: "LOW LEVEL", -3: "EXCESS TEMPERATURE WARNING", -5: "WORKING SENSOR",
              -6: "SENSOR DIFFERENCE", -8: "INVALID COMMAND", -9: "COMMAND NOT ALLOWED IN "
              "CURRENT OPERATING MODE", -13: "VALUE TOO LARGE", -14: "EXCESS TEMPERATURE "
              "PROTECTION", -33: "SAFETY SENSOR", -38: "EXTERNAL SENSOR"}
IN_COMMANDS = frozenset({"version", "status", "in_pv_00", "in_pv_01", "in_pv_02", "in_pv_03",
                         "in_sp_00", "in_mode_05", "in_mode_04"})
OUT_COMMANDS = frozenset({"out_sp_00", "out_sp_03", "out_sp_04", "out_mode_05", "out_mode_04"})
_VALUE = re.compile(r"^[-+]?\d{1,3}(\.\d{1,2})?$")  # xxx.xx


@dataclass
class Readings:
    """Switches for what the manual leaves open.

    Attributes:
        request_end: What ends a command at the unit: CR (SC/FL/SL) or only LF after CR (CF41).
        reply_end: What ends a reply: LF (SC/FL/SL) or CR LF (CF41).
        out_echo: The unit answers an ``out`` command with the line itself (the manual: no
            reply).
        number: How the unit writes a temperature (``25.00``, `` 25.00``, ``25.0``).
        cut_to: The unit cuts a temperature to this many decimals instead (``25.07`` ->
            ``25.0``; ``None``: ``number`` rounds it).
        pv_on_fault: What ``in_pv_00`` answers while a sensor error stands: ``last`` (the last
            good reading, a plausible number), ``dashes`` (``---.--``) or ``code`` (the bare
            error code, ``-05``: a number too).
        error_reply: An invalid command is answered with its error line as well as reported
            by ``status`` (the manual: only ``status`` reports errors).
        too_soon: ``ignore`` a command closer than 250 ms to the last, or ``obey`` it.
        keeps_setpoint: The setpoint survives a power loss (the manual: send it again).
    """

    request_end: bytes = b"\r"
    reply_end: bytes = b"\n"
    out_echo: bool = False
    number: str = "{:.2f}"
    cut_to: int | None = None
    pv_on_fault: str = "last"
    error_reply: bool = False
    too_soon: str = "ignore"
    keeps_setpoint: bool = False


@dataclass
class Unit:
    """The circulator's state (no physics: a test sets the bath temperature)."""

    readings: Readings = field(default_factory=Readings)
    remote: bool = True
    running: bool = False
    sp_c: float = 20.0
    pv_c: float = 20.0
    safety_limit_c: float = 320.0
    warn_high_c: float = 350.0
    warn_low_c: float = -50.0
    external: bool = False
    alarm: int = 0  # a standing error (sensor, level, excess temperature): until cleared
    command_error: int = 0  # the last refused command's code: reported once by status

    # ----------------------------------------------------------------- answers
    def status_line(self) -> str:
        """``status``: the standing error, else the last command error (once), else the mode."""
        code = self.alarm or self.command_error
        self.command_error = 0
        if code:
            return f"-{abs(code):02d} {ERROR_TEXT.get(code, 'ERROR')}"
        mode = 2 if self.remote else 0
        words = ("REMOTE " if self.remote else "MANUAL ") + ("START" if self.running else "STOP")
        return f"{mode + int(self.running):02d} {words}"

    def num(self, value_c: float) -> str:
        """A temperature as the unit writes it (rounded by ``number``, or cut)."""
        d = self.readings.cut_to
        if d is None:
            return self.readings.number.format(value_c)
        return f"{math.trunc(value_c * 10**d + 1e-9) / 10**d:.{d}f}"

    def pv_text(self) -> str:
        """``in_pv_00``, also while a sensor error stands (the reading ``pv_on_fault``)."""
        if self.alarm in SENSOR_CODES:
            return {"last": self.num(self.pv_c), "dashes": "---.--",
                    "code": f"-{abs(self.alarm):02d}"}[self.readings.pv_on_fault]
        return self.num(self.pv_c)

    def answer(self, command: str, arg: str | None) -> str | None:
        """The reply text to one command (``None``: no reply)."""
        if command in IN_COMMANDS and arg is None:
            return self._in(command)
        if command in OUT_COMMANDS and arg is not None:
            return self._out(command, arg)
        return self._refuse(-8)

    def _in(self, command: str) -> str:
        if command == "status":
            return self.status_line()
        if command == "in_pv_00":
            return self.pv_text()
        num = self.num
        return {"version": "JULABO INDEPENDENT EMULATOR VERSION 1.0",
                "in_pv_01": "0", "in_pv_02": num(self.pv_c), "in_pv_03": num(self.pv_c),
                "in_sp_00": num(self.sp_c), "in_mode_05": str(int(self.running)),
                "in_mode_04": str(int(self.external))}[command]

    def _out(self, command: str, arg: str) -> str | None:
        if not self.remote:
            return self._refuse(-9)
        if command.startswith("out_mode"):
            if arg not in ("0", "1"):
                return self._refuse(-8)
            if command == "out_mode_05":
                self.running = arg == "1" and not self.alarm
            else:
                self.external = arg == "1"
        else:
            if not _VALUE.match(arg):
                return self._refuse(-8)
            value = float(arg)
            if command == "out_sp_00" and not self.warn_low_c <= value <= self.safety_limit_c:
                return self._refuse(-13)
            if command == "out_sp_00":
                self.sp_c = value
            elif command == "out_sp_03":
                self.warn_high_c = value
            else:
                self.warn_low_c = value
        return f"{command} {arg}" if self.readings.out_echo else None

    def _refuse(self, code: int) -> str | None:
        self.command_error = code
        return f"-{abs(code):02d} {ERROR_TEXT[code]}" if self.readings.error_reply else None

    def power_loss(self) -> None:
        """Mains off and on: remote mode comes back stopped (``R OFF``), no autostart."""
        self.running = False
        self.command_error = 0
        if not self.readings.keeps_setpoint:
            self.sp_c = 20.0


class ManualJulabo(PtyDevice):
    """One circulator on a pty: frames commands, keeps the 250 ms rule, answers.

    Attributes:
        unit: Its state.
        heard: Every command taken, in order (the text as sent, without its line end).
        violations: Commands that came too soon (``(gap_s, command)``), taken or not.
    """

    def __init__(self) -> None:
        self.unit = Unit()
        self.heard: list[str] = []
        self.violations: list[tuple[float, str]] = []
        self.garble_next = 0
        self.drop_next = 0
        self._buf = b""
        self._first_t = 0.0
        self._last_t = -math.inf
        self._replied_t = -math.inf
        super().__init__()

    def reset(self, readings: Readings | None = None, **state: Any) -> None:
        """A fresh unit (remote, stopped) under ``readings``; the log and faults cleared."""
        with self.lock:
            self.unit = Unit(readings or Readings(), **state)
            self.heard.clear()
            self.violations.clear()
            self.garble_next = self.drop_next = 0
            self._buf = b""
            self._last_t = -math.inf  # a new unit: the last test's commands are not its own

    def feed(self, data: bytes, t_s: float) -> None:
        """Collect bytes; each complete command is timed by its first byte and answered."""
        end = self.unit.readings.request_end
        for byte in data:
            if not self._buf:
                self._first_t = t_s
            self._buf += bytes([byte])
            if self._buf.endswith(end):
                line, self._buf = self._buf[:-len(end)], b""
                self._take(line.decode("ascii", errors="replace").strip(), self._first_t)

    def _take(self, text: str, t_s: float) -> None:
        if not text:
            return
        gap_s = t_s - self._last_t
        self._last_t = t_s
        if gap_s < MIN_SPACING_S - SLACK_S or t_s < self._replied_t:
            self.violations.append((gap_s, text))
            if self.unit.readings.too_soon == "ignore":
                return
        self.heard.append(text)
        parts = text.split(None, 1)
        reply = self.unit.answer(parts[0].lower(), parts[1] if len(parts) > 1 else None)
        if reply is not None:
            self._reply(reply)

    def _reply(self, text: str) -> None:
        if self.drop_next:
            self.drop_next -= 1
            return
        if self.garble_next:
            self.garble_next -= 1
            text = "#?" + text[2:]
        self.send(text.encode("ascii") + self.unit.readings.reply_end)
        self._replied_t = time.monotonic()

    def commands(self) -> list[str]:
        """The command names taken so far."""
        with self.lock:
            return [h.split(None, 1)[0] for h in self.heard]


def parse_value(line: bytes) -> float:
    """The unit's side: the value of an ``out`` line (``xxx.xx``), or ValueError."""
    parts = line.decode("ascii").strip().split(None, 1)
    if len(parts) != 2 or not _VALUE.match(parts[1]):
        raise ValueError(f"not an out command with an xxx.xx value: {line!r}")
    return float(parts[1])


# ============================================================================= fixtures
@pytest.fixture(scope="module")
def shared() -> Iterator[ManualJulabo]:
    """One emulated circulator for the module (the 250 ms rule makes bring-ups dear)."""
    emu = ManualJulabo()
    yield emu
    emu.close()


@pytest.fixture
def bath(shared: ManualJulabo) -> Iterator[tuple[ManualJulabo, Transport]]:
    """The shared unit reset, and a fresh transport on it (closed after the test)."""
    shared.reset()
    line = Transport(shared.port, baudrate=9600, timeout_s=0.5, retries=2)
    yield shared, line
    line.close()


def _driver(line: Transport, **kw: Any) -> JulaboCirculator:
    return JulaboCirculator(line, "bath", **kw)


def _set(emu: ManualJulabo, **state: Any) -> None:
    with emu.lock:
        for k, v in state.items():
            setattr(emu.unit, k, v)


# ============================================================================= codec
@given(st.floats(-50.0, 320.0, allow_nan=False))
def test_a_setpoint_line_is_the_manual_s_xxx_xx(value_c: float) -> None:
    """``out_sp_00 xxx.xx`` + CR: two decimals, at most three digits before the point."""
    line = julabo.encode("out_sp_00", value_c)
    assert line.endswith(b"\r") and not line.endswith(b"\n\r")
    assert parse_value(line) == pytest.approx(round(value_c, 2), abs=0.0051)


@given(st.floats(-99.99, 399.99, allow_nan=False),
       st.sampled_from(["{:.2f}", "{:7.2f}", "{:.1f}", "{:+.2f}"]),
       st.sampled_from([b"\n", b"\r\n"]))
def test_the_unit_s_numbers_read_as_the_values_they_are(value_c: float, fmt: str,
                                                        end: bytes) -> None:
    text = fmt.format(value_c)
    assert julabo.parse_number(text.encode() + end) == pytest.approx(float(text))
    assert julabo.parse_places(text.encode() + end) == (float(text), 1 if ".1f" in fmt else 2)


@given(st.booleans(), st.booleans(), st.sampled_from([0, *ERROR_TEXT]), st.booleans())
def test_status_lines_decode_to_their_mode_or_fault(remote: bool, running: bool, code: int,
                                                    short: bool) -> None:
    """``00``-``03`` or ``-xx`` then text; the manual writes two digits, ``-5`` reads too."""
    unit = Unit(remote=remote, running=running, alarm=code)
    line = unit.status_line()
    if short:
        line = re.sub(r"^(-?)0(\d)", r"\1\2", line)
    st_ = julabo.parse_status(line.encode() + b"\n")
    assert st_.code == (code or 2 * remote + running)
    assert st_.started == (running and not code)
    assert st_.fault == ("" if not code else
                         "sensor_break" if code in SENSOR_CODES else "controller_error")


# ============================================================================= bring-up
VARIANTS = {
    "manual": (Readings(), "cr"),
    "cf41-chatty": (Readings(request_end=b"\r\n", reply_end=b"\r\n", out_echo=True,
                             number="{:7.2f}", error_reply=True), "crlf"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bring_up_writes_the_standby_and_starts_within_the_rules(bath: Any,
                                                                 variant: str) -> None:
    """Remote mode: standby setpoint and start, both taken; 250 ms kept; only manual commands."""
    emu, line = bath
    readings, line_end = VARIANTS[variant]
    emu.reset(readings)
    heater = _driver(line, line_end=line_end)
    heater.connect(standby_c=30.0)
    with emu.lock:
        assert (emu.unit.running, emu.unit.sp_c) == (True, 30.0)
        assert emu.violations == []
        assert set(emu.commands()) <= IN_COMMANDS | OUT_COMMANDS
        assert "out_mode_05" in emu.commands()
    assert heater.fault() == ""


def test_outside_remote_mode_the_bring_up_fails_naming_it(bath: Any) -> None:
    """``out`` commands outside remote mode are refused (-09): connect must say so."""
    emu, line = bath
    emu.reset(Readings(error_reply=True), remote=False, sp_c=22.0)
    with pytest.raises(HardwareError, match="remote mode"):
        _driver(line).connect(standby_c=30.0)
    with emu.lock:
        assert (emu.unit.running, emu.unit.sp_c, emu.violations) == (False, 22.0, [])


# ============================================================================= faults
@pytest.mark.parametrize("pv_on_fault", ["last", "dashes", "code"])
def test_a_sensor_error_is_never_read_as_a_temperature(bath: Any, pv_on_fault: str) -> None:
    """§5: a sensor fault (-05/-33/-38) must never be a temperature. The manual does not say
    what ``in_pv_00`` answers then; a number (the last reading, or the bare code ``-05``)
    would let the shutdown's cool-down take a broken sensor for a cool block."""
    emu, line = bath
    emu.reset(Readings(pv_on_fault=pv_on_fault), pv_c=45.0)
    heater = _driver(line)
    _set(emu, alarm=-5)
    assert math.isnan(heater.temperature_c())
    assert heater.fault() == "sensor_break"
    with emu.lock:
        assert emu.violations == []


def test_every_other_error_code_is_a_controller_error(bath: Any) -> None:
    """-01 level, -03 too hot, -06 sensors differ, -14 excess temperature: hard faults."""
    emu, line = bath
    heater = _driver(line)
    found = []
    for code in (-1, -3, -6, -14):
        _set(emu, alarm=code)
        found.append(heater.fault())
    assert found == ["controller_error"] * 4


def test_a_garbled_reply_is_asked_again_no_sooner_than_250_ms(bath: Any) -> None:
    """A retry is a command like any other: the 250 ms rule holds for it too (a unit that
    ignores a command sent too soon would otherwise cost a reply timeout, or all retries)."""
    emu, line = bath
    _set(emu, pv_c=61.25)
    heater = _driver(line)
    with emu.lock:
        emu.garble_next = 1
    assert heater.temperature_c() == 61.25
    with emu.lock:
        assert emu.violations == []
        assert emu.commands().count("in_pv_00") == 2


def test_the_cut_stops_the_unit_and_reads_it_back(bath: Any) -> None:
    emu, line = bath
    _set(emu, running=True)
    _driver(line).cut_output()
    with emu.lock:
        assert emu.unit.running is False
        assert emu.commands()[-2:] == ["out_mode_05", "in_mode_05"]


def test_a_setpoint_beyond_the_unit_s_safety_limit_is_the_unit_s_refusal_named(
        bath: Any) -> None:
    """-13: the unit keeps its old setpoint; the host's ramp step that did not stick is the
    unit's refusal naming the code (the supervisor then says ``device_refused``, not
    ``comms_loss``: the line works)."""
    emu, line = bath
    _set(emu, safety_limit_c=150.0)
    heater = _driver(line, ramp_c_per_min=1e5, time_scale=1e6)  # the ramp is done at once
    with pytest.raises(DeviceRefused, match=r"did not stick.*reports -13"):
        heater.set_temperature_c(200.0)
    with emu.lock:
        assert (emu.unit.sp_c, emu.violations) == (20.0, [])


@pytest.mark.parametrize("readings", [Readings(number="{:.1f}"), Readings(cut_to=1)],
                         ids=["rounded", "cut"])
def test_a_unit_answering_one_decimal_holds_a_setpoint_to_its_resolution(
        bath: Any, readings: Readings) -> None:
    """``out_sp_00`` takes ``xxx.xx``; the answer's format is not given. A unit answering
    ``152.4`` (rounded) or ``152.3`` (cut) for 152.37 holds it: no 'did not stick', and the
    heartbeat writes nothing (the pumps' rule, ``limits.matches_answer``)."""
    emu, line = bath
    emu.reset(readings)
    heater = _driver(line, ramp_c_per_min=1e5, time_scale=1e6)  # the ramp is done at once
    heater.set_temperature_c(152.37)
    heater.set_temperature_c(152.37)  # the supervisor's heartbeat
    with emu.lock:
        assert emu.unit.sp_c == 152.37
        assert emu.commands().count("out_sp_00") == 1


# ============================================================================= the rig
@pytest.fixture(scope="module")
def rig_baths() -> Iterator[dict[str, ManualJulabo]]:
    """Two emulated circulators (core, shell) for the rig tests of this module."""
    emus = {r: ManualJulabo() for r in ("core", "shell")}
    yield emus
    for emu in emus.values():
        emu.close()


@pytest.fixture
def rig(rig_baths: dict[str, ManualJulabo]) -> Iterator[tuple[dict[str, ManualJulabo], Rig]]:
    """A rig whose heaters are the two circulators; nothing else is talked to."""
    for emu in rig_baths.values():
        emu.reset()
    with heater_rig("julabo", rig_baths, timeout_s=0.5, max_temperature_c=300) as r:
        yield rig_baths, r


def test_after_a_power_loss_the_unit_stays_stopped_and_the_trip_says_so(rig: Any) -> None:
    """R OFF, no autostart: the supervisor trips ``stopped`` (hard); the host sends the
    setpoint again but never starts the unit on its own. A steady poll is three commands
    (the PV right after a clean status needs no status of its own). The port is 7E1 9600 Bd
    (a pty cannot check a format: the rig's request for one is checked)."""
    emus, r = rig
    assert r.transports["julabo_core"].line_format == {"bytesize": 7, "parity": "E",
                                                     "stopbits": 1}
    assert r.transports["julabo_core"].serial.baudrate == 9600
    emu = emus["core"]
    heater = r.heaters["core"]
    heater.connect(standby_c=30.0)
    trips: list[Trip] = []
    sup = Supervisor(r, trips.append)
    sup.setpoints_c["core"] = 30.0  # what the procedure set; refreshed by every poll
    assert not sup.poll_heater("core")  # the first one starts the host ramp (reads the PV)
    with emu.lock:
        taken = len(emu.heard)
    assert not sup.poll_heater("core")
    with emu.lock:
        assert [h.split()[0] for h in emu.heard[taken:]] == ["in_sp_00", "status", "in_pv_00"]
        emu.unit.power_loss()
        taken = len(emu.heard)
    assert sup.poll_heater("core")
    assert [(t.reason, t.device, t.hard) for t in trips] == [("stopped", "heater_core", True)]
    with emu.lock:
        after = [h.split()[0] for h in emu.heard[taken:]]
        assert "out_mode_05" not in after  # no start from the host on its own
        assert (emu.unit.running, emu.unit.sp_c, emu.violations) == (False, 30.0, [])


# ============================================================================= handshake
XON, XOFF = b"\x11", b"\x13"


@pytest.mark.parametrize("handshake", ["none", "rtscts", "xonxoff"])
def test_a_port_s_handshake_reaches_the_opened_port(rig_baths: dict[str, ManualJulabo],
                                                    handshake: str) -> None:
    """§2.3: older units "4800 baud 7E1, hardware handshake"; the CF41's public driver opens
    its port with ``rtscts=True``. ``ports.<p>.handshake`` reaches pyserial's port (its settings
    and the termios flags of the open line: CRTSCTS, IXON/IXOFF) and the bring-up goes through.
    A pty has no RTS/CTS lines (Linux keeps the flag and ignores it), so what ``rtscts`` does
    on a wire cannot be exercised here: the opened port's settings are what is checked."""
    for emu in rig_baths.values():
        emu.reset()
    with heater_rig("julabo", rig_baths, timeout_s=0.5, max_temperature_c=300,
                    port={"handshake": handshake}) as rig:
        for name in ("julabo_core", "julabo_shell"):
            ser = rig.transports[name].serial
            assert (ser.rtscts, ser.xonxoff) == (handshake == "rtscts", handshake == "xonxoff")
            iflag, _, cflag = termios.tcgetattr(ser.fd)[:3]
            assert bool(cflag & termios.CRTSCTS) == (handshake == "rtscts")
            assert bool(iflag & termios.IXON) == bool(iflag & termios.IXOFF) \
                == (handshake == "xonxoff")
        rig.heaters["core"].connect(standby_c=30.0)
        with rig_baths["core"].lock:
            assert (rig_baths["core"].unit.running, rig_baths["core"].unit.sp_c) == (True, 30.0)


def test_a_unit_s_xoff_holds_the_next_command_until_its_xon(
        rig_baths: dict[str, ManualJulabo]) -> None:
    """``handshake: xonxoff`` is flow control a pty does exercise (its line discipline
    implements it): a unit that sends XOFF gets nothing until its XON, and the command held
    then goes out whole and is answered; neither byte reaches the driver as reply data."""
    for emu in rig_baths.values():
        emu.reset()
    emu = rig_baths["core"]
    with heater_rig("julabo", rig_baths, timeout_s=0.5, max_temperature_c=300,
                    port={"handshake": "xonxoff"}) as rig:
        heater = rig.heaters["core"]
        heater.connect(standby_c=30.0)
        with emu.lock:
            heard = len(emu.heard)
        emu.send(XOFF)
        got: list[float] = []
        reader = threading.Thread(target=lambda: got.append(heater.temperature_c()))
        reader.start()
        time.sleep(0.4)  # the driver's command waits in the line discipline meanwhile
        with emu.lock:
            assert len(emu.heard) == heard, emu.heard[heard:]
        emu.send(XON)
        reader.join(timeout=60)
        assert got == [20.0]
        until(lambda: len(emu.heard) > heard)


@pytest.mark.parametrize("value", ["RTS/CTS", "hardware", True, 1])
def test_a_handshake_the_port_cannot_take_is_refused_naming_the_field(value: object) -> None:
    """Validated with the other port fields: the error names the field and the values allowed."""
    d = devices()
    d["ports"]["heaters"]["handshake"] = value
    with pytest.raises(ConfigError, match=r"devices file rig\.yaml: ports\.heaters\.handshake: "
                                          r"Input should be 'none', 'rtscts' or 'xonxoff'"):
        parse_devices(d, "devices file rig.yaml")
