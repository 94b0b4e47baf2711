r"""Our Chemyx driver against an emulator written from the manual only (not from our emulator).

``ManualChemyxLine`` below was written from Chemyx's knowledge base ("RS232 communication",
"serial commands") and the OEM manual as quoted in the hardware reference (§1.3, §4.6, §5)
before our own emulator (``autolab/virtuallab/chemyx_emulator.py``) was read, so a misreading
shared by our driver and our emulator shows here. Where the manual allows more than one reading,
the emulator has a switch (:class:`Readings`) and the driver is driven under each. The protocol
logic is all here; only ``os.openpty`` and a thread carry the bytes.

Manual items implemented (reference §1.3):

* requests: lowercase commands ended by CR or CR LF (LF alone is not valid; a command in
  another case is not understood); a dual-channel pump takes the prefix ``1 `` or ``2 ``.
* replies: the echo of the command line, the reply lines, then the prompt ``>``.
* "most commands return the set value ... if the value in the response is not the same as the
  value in the command, the command value was outside the limits".
* ``set units 0-3`` (mL/min, mL/h, µL/min, µL/h), ``set diameter`` (0.103-40 mm), ``set rate``,
  ``set volume ±x`` (the sign selects infuse or withdraw), ``set delay``, ``set time``,
  ``read limit parameter``, ``view parameter`` (``unit``/``dia``/``rate``/``volume``/``time``/
  ``delay`` lines), ``start`` (``Pump start running…``, or ``Pump delay…`` with a delay),
  ``pause``, ``stop``, ``dispensed volume``, ``elapsed time``, ``pump status`` (0 stopped,
  1 running, 2 paused, 3 delayed, 4 stalled), ``echo on|off``, ``help``.
* the target volume ends a run; a stall stops the motor (status 4); ``pause`` (or the panel)
  is status 2.

Readings switched (:class:`Readings`): the echo (with or without the channel prefix, or off),
line ends (CR LF, LF, CR) and the prompt's trailing space, what a set beyond the limits echoes
(the limit or the old value), the decimals a set value keeps, where the sign of the target
volume shows, whether ``start`` restarts the dispensed count and the count's unit, named or
bare answers, what clears a stall.
"""

from __future__ import annotations

import math
import os
import re
import select
import threading
import time
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolab.exceptions import HardwareError
from autolab.hardware.chemyx import ChemyxPump
from autolab.hardware.delivery import DeliveryMonitor
from autolab.hardware.protocols import chemyx
from autolab.hardware.transport import DeviceRefused, Transport

from .waiting import until

#: ``set units`` -> (rate unit in mL/min, volume unit in mL).
UNITS = {0: (1.0, 1.0), 1: (1.0 / 60.0, 1.0), 2: (1e-3, 1e-3), 3: (1e-3 / 60.0, 1e-3)}
SCALE = 20.0  # lab seconds per wall second: a run moves what the checks need at once


@dataclass
class Readings:
    """Where the knowledge base allows more than one reading: which one the pump follows.

    Attributes:
        echo: ``"line"`` (the command line as received, then the reply), ``"bare"`` (a
            channel's echo without its prefix) or ``"off"``.
        eol: How the pump ends its lines (CR LF, LF or CR).
        prompt: The prompt as written (``>``, or ``> `` with a space).
        out_of_limits: What a set beyond the limits echoes: ``"limit"`` (the value clamped to
            it) or ``"old"`` (the value kept).
        start_restarts_count: ``start`` zeroes the dispensed volume.
        dispensed_named: ``dispensed volume`` answers ``dispensed volume = 1.2 ml`` (else the
            bare number in the units' volume unit).
        stall_clears: What ends a stall: ``"stop"`` or ``"start"``.
        decimals: Decimals the pump keeps of a set value (``None``: all).
        truncates: The pump cuts a set value to its ``decimals`` (else it rounds it).
        status_named: ``pump status`` answers ``status = 1`` (else ``1``).
        dispensed_ul: ``dispensed volume`` answers a bare number in µL whatever the units
            (else in the units' volume unit: mL for units 0).
        reply_prefix: A channel of a dual pump writes its reply lines after its prefix
            (``1 rate = 0.5``; the knowledge base names the prefix for requests only).
        volume_sign: Where the sign of the target volume shows: ``"both"`` (the set's echo and
            ``view parameter``), ``"view"`` (the echo ``volume = x`` writes the size only, as
            the knowledge base's table does) or ``"none"`` (neither: the direction is kept
            but not shown).
    """

    echo: str = "line"
    eol: str = "\r\n"
    prompt: str = ">"
    out_of_limits: str = "limit"
    start_restarts_count: bool = True
    dispensed_named: bool = False
    stall_clears: str = "stop"
    decimals: int | None = None
    truncates: bool = False
    status_named: bool = False
    volume_sign: str = "both"
    dispensed_ul: bool = False
    reply_prefix: bool = False


def number(value: float) -> str:
    """A value as the emulated pump writes it (plain, up to 6 significant digits)."""
    if value == 0:
        return "0"
    decimals = max(0, 5 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass
class ManualChannel:
    """One channel's state (a single-channel pump has one), as the knowledge base describes."""

    readings: Readings
    units: int = 1  # left at mL/h from the panel
    diameter_mm: float = 10.0
    rate: float = 1.0  # in the units' rate unit
    volume: float = 1.0  # signed, in the units' volume unit
    delay_min: float = 0.0
    time_min: float = 0.0
    status: int = 0
    dispensed_ml: float = 0.0
    delay_left_s: float = 0.0
    since_s: float = field(default_factory=time.monotonic)
    log: list[str] = field(default_factory=list)  #: "request -> lines", oldest first

    @property
    def rate_ml_min(self) -> float:
        """The rate in mL/min."""
        return self.rate * UNITS[self.units][0]

    @property
    def target_ml(self) -> float:
        """The target volume in mL (unsigned)."""
        return abs(self.volume) * UNITS[self.units][1]

    def limits(self) -> tuple[float, float, float, float]:
        """(max rate, min rate, max volume, min volume) in the current units (by diameter)."""
        area = (self.diameter_mm / 26.6) ** 2
        rate_unit, vol_unit = UNITS[self.units]
        return (100.0 * area / rate_unit, 1e-5 * area / rate_unit, 60.0 * area / vol_unit,
                1e-5 * area / vol_unit)

    def advance(self, scale: float) -> None:
        """Run the delay, then the motor; the target volume stops it."""
        now = time.monotonic()
        dt_s = (now - self.since_s) * scale
        self.since_s = now
        if self.status == 3:
            self.delay_left_s -= dt_s
            if self.delay_left_s > 0:
                return
            self.status, dt_s = 1, -self.delay_left_s
        if self.status == 1:
            self.dispensed_ml += self.rate_ml_min * dt_s / 60.0
            if self.dispensed_ml >= self.target_ml:
                self.dispensed_ml, self.status = self.target_ml, 0

    def keep(self, value: float) -> float:
        """A set value as the pump keeps it (its decimals, by the reading)."""
        d = self.readings.decimals
        if d is None:
            return value
        return math.trunc(value * 10**d) / 10**d if self.readings.truncates else round(value, d)


# ----------------------------------------------------------------------------- commands
def _bounded(ch: ManualChannel, key: str, value: float, low: float, high: float) -> float:
    """A set value within [low, high], else what the reading echoes instead."""
    if low <= value <= high:
        return ch.keep(value)
    if ch.readings.out_of_limits == "limit":
        return min(max(value, low), high)
    return float(getattr(ch, key))


def _set(ch: ManualChannel, args: str) -> list[str]:
    key, _, text = args.partition(" ")
    try:
        value = float(text.split(",")[0])
    except ValueError:
        return ["Invalid parameter"]
    max_rate, min_rate, max_vol, min_vol = ch.limits()
    if key == "units":
        if value in UNITS:
            ch.units = int(value)
        return [f"units = {ch.units}"]
    if key == "diameter":
        ch.diameter_mm = _bounded(ch, "diameter_mm", value, 0.103, 40.0)
        return [f"diameter = {number(ch.diameter_mm)}"]
    if key == "rate":
        ch.rate = _bounded(ch, "rate", value, min_rate, max_rate)
        return [f"rate = {number(ch.rate)}"]
    if key == "volume":  # the sign is the direction; the limits bound the size
        if min_vol <= abs(value) <= max_vol:
            ch.volume = ch.keep(value)
        elif ch.readings.out_of_limits == "limit":
            ch.volume = math.copysign(min(max(abs(value), min_vol), max_vol), value)
        shown = ch.volume if ch.readings.volume_sign == "both" else abs(ch.volume)
        return [f"volume = {number(shown)}"]
    if key in ("delay", "time"):
        setattr(ch, f"{key}_min", max(0.0, value))
        return [f"{key} = {number(value)}"]
    return ["Invalid parameter"]


def _view(ch: ManualChannel, args: str) -> list[str]:
    volume = abs(ch.volume) if ch.readings.volume_sign == "none" else ch.volume
    return [f"unit = {ch.units}", f"dia = {number(ch.diameter_mm)}", f"rate = {number(ch.rate)}",
            f"volume = {number(volume)}", f"time = {number(ch.time_min)}",
            f"delay = {number(ch.delay_min)}"]


def _limits(ch: ManualChannel, args: str) -> list[str]:
    return [" ".join(number(x) for x in ch.limits())]


def _start(ch: ManualChannel, args: str) -> list[str]:
    if ch.status == 4 and ch.readings.stall_clears != "start":
        return ["Pump stalled!"]
    if ch.readings.start_restarts_count:
        ch.dispensed_ml = 0.0
    if ch.delay_min > 0:
        ch.status, ch.delay_left_s = 3, ch.delay_min * 60.0
        return ["Pump delay…"]
    ch.status = 1
    return ["Pump start running…"]


def _pause(ch: ManualChannel, args: str) -> list[str]:
    if ch.status in (1, 3):
        ch.status = 2
    return ["Pump pause!"]


def _stop(ch: ManualChannel, args: str) -> list[str]:
    if ch.status != 4 or ch.readings.stall_clears == "stop":
        ch.status = 0
    return ["Pump stop!"]


def _dispensed(ch: ManualChannel, args: str) -> list[str]:
    vol_unit = 1e-3 if ch.readings.dispensed_ul else UNITS[ch.units][1]
    value = number(ch.dispensed_ml / vol_unit)
    if ch.readings.dispensed_named:
        return [f"dispensed volume = {value} {'ml' if vol_unit == 1.0 else 'ul'}"]
    return [value]


def _status(ch: ManualChannel, args: str) -> list[str]:
    return [f"status = {ch.status}" if ch.readings.status_named else str(ch.status)]


def _elapsed(ch: ManualChannel, args: str) -> list[str]:
    return ["0"]


COMMANDS: dict[str, Callable[[ManualChannel, str], list[str]]] = {
    "set": _set, "view parameter": _view, "read limit parameter": _limits, "start": _start,
    "pause": _pause, "stop": _stop, "dispensed volume": _dispensed, "pump status": _status,
    "elapsed time": _elapsed,
}


def execute(ch: ManualChannel, command: str) -> list[str]:
    """The reply lines to one command (a command in another case is not understood)."""
    for name, handler in COMMANDS.items():
        if command == name or command.startswith(f"{name} "):
            return handler(ch, command[len(name):].strip())
    return ["Invalid command"]


class ManualChemyxLine:
    """One Chemyx pump (single- or dual-channel) on a real pty; the driver opens :attr:`port`.

    Fault injection: :meth:`stall`, ``drop_next`` (no reply), ``truncate_next`` (no prompt).

    Args:
        channels: ``(0,)`` for a single-channel pump, ``(1, 2)`` for a dual-channel one.
    """

    def __init__(self, channels: tuple[int, ...] = (0,)) -> None:
        self.channels_named = channels
        self.readings = Readings()
        self.channels: dict[int, ManualChannel] = {}
        self.lock = threading.RLock()
        self.heard: list[bytes] = []  # every request line, as received
        self.echo = True
        self.drop_next = self.truncate_next = 0
        self.reset()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # pitfall 1: raw before anyone writes
        self.port = os.ttyname(self._slave)
        self._buf = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def reset(self, readings: Readings | None = None) -> None:
        """Fresh channels (as left from the panel) under ``readings``; faults cleared."""
        with self.lock:
            self.readings = readings or Readings()
            self.channels = {c: ManualChannel(self.readings) for c in self.channels_named}
            self.echo = self.readings.echo != "off"
            self.heard.clear()
            self.drop_next = self.truncate_next = 0

    def close(self) -> None:
        """Stop serving and close both ends."""
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._master)
        os.close(self._slave)

    def stall(self, channel: int = 0) -> None:
        """The motor stalls: status 4."""
        with self.lock:
            ch = self.channels[channel]
            ch.advance(SCALE)
            ch.status = 4

    # ----------------------------------------------------------------- wire
    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(self._master, 1024)
                except OSError:  # pitfall 2: the client closed its end
                    time.sleep(0.01)
                    continue
                with self.lock:
                    self._feed(chunk)
            with self.lock:
                for ch in self.channels.values():
                    ch.advance(SCALE)

    def _feed(self, chunk: bytes) -> None:
        """A request ends at CR (an LF after it is dropped; an LF alone ends nothing)."""
        self._buf += chunk
        while b"\r" in self._buf:
            raw, _, self._buf = self._buf.partition(b"\r")
            raw = raw.lstrip(b"\n")
            self.heard.append(raw)
            self._line(raw.decode("ascii", errors="replace"))

    def _line(self, line: str) -> None:
        m = re.fullmatch(r"(?:([12]) )?(.*)", line.strip())
        assert m is not None
        channel, command = (int(m.group(1)) if m.group(1) else 0), m.group(2)
        if channel not in self.channels:
            channel = min(self.channels)  # no prefix on a dual pump: channel 1 (assumed)
        ch = self.channels[channel]
        ch.advance(SCALE)
        if command in ("echo on", "echo off"):
            self.echo, lines = command == "echo on", [command.replace("echo ", "echo = ")]
        else:
            lines = execute(ch, command)
        ch.log.append(f"{command} -> {' / '.join(lines)}")
        if self.readings.reply_prefix and channel:
            lines = [f"{channel} {x}" for x in lines]
        self._send(line.strip(), command, lines)

    def _send(self, line: str, command: str, lines: list[str]) -> None:
        r = self.readings
        echo = ([] if not self.echo else [command] if r.echo == "bare" else [line])
        body = "".join(f"{x}{r.eol}" for x in [*echo, *lines])
        out = body.encode("utf-8") + r.prompt.encode("ascii")
        if self.drop_next:
            self.drop_next -= 1
            return
        if self.truncate_next:
            self.truncate_next -= 1
            out = body.encode("utf-8")
        os.write(self._master, out)


# ============================================================================= fixtures
@pytest.fixture(scope="module")
def line_() -> Iterator[tuple[ManualChemyxLine, Transport]]:
    """One single-channel pump and its transport for the module (reset per test)."""
    emu = ManualChemyxLine((0,))
    line = Transport(emu.port, baudrate=9600, timeout_s=0.4, retries=2)
    yield emu, line
    line.close()
    emu.close()


def _fresh(shared: tuple[ManualChemyxLine, Transport], readings: Readings | None = None,
           ) -> tuple[ManualChemyxLine, ManualChannel, Transport]:
    """The shared pump reset under ``readings``; the line drained."""
    emu, line = shared
    line.serial.reset_input_buffer()  # whatever the last test left on the line
    line.serial.timeout = line.timeout_s
    emu.reset(readings)
    return emu, emu.channels[0], line


def _pump(line: Transport, channel: int = 0) -> ChemyxPump:
    return ChemyxPump(line, f"pump_{channel}", channel=channel, diameter_mm=14.57,
                      syringe_ml=10.0)


def _lab_min() -> float:
    """The lab clock the emulated pump runs on, min."""
    return time.monotonic() * SCALE / 60.0


VARIANTS = {
    "manual-as-read": Readings(),
    "echo-off": Readings(echo="off"),
    "lf-line-ends": Readings(eol="\n"),
    "cr-line-ends-prompt-with-space": Readings(eol="\r", prompt="> "),
    "count-kept-at-start": Readings(start_restarts_count=False),
    "dispensed-named-status-named": Readings(dispensed_named=True, status_named=True),
}


# ============================================================================= codec
@settings(max_examples=30)  # CI time: a pure function, 30 draws cover its cases
@given(st.sampled_from([0, 1, 2]), st.sampled_from(["pump status", "dispensed volume",
                                                    "view parameter", "set rate 1.5"]),
       st.lists(st.one_of(st.from_regex(r"[a-z]{1,8} = -?[0-9]{1,3}(\.[0-9]{1,3})?",
                                        fullmatch=True),
                          st.from_regex(r"[0-4]|[0-9]{1,3}\.[0-9]{1,4}( ml| ul)?",
                                        fullmatch=True)), min_size=1, max_size=4),
       st.booleans(), st.sampled_from(["\r\n", "\n", "\r"]))
def test_answers_read_alike_with_or_without_the_channel_prefix(
        channel: int, command: str, lines: list[str], prefixed: bool, eol: str) -> None:
    """Reading left open: whether a channel's answers carry its prefix. A value line reads the
    same either way (a dispensed ``1 0.05`` is 0.05, never 1)."""
    request = chemyx.encode_command(channel, command)
    shown = [f"{channel} {x}" if prefixed and channel else x for x in lines]
    frame = "".join(f"{x}{eol}" for x in [request.decode().strip(), *shown]).encode() + b">"
    assert chemyx.parse_reply(frame, request).lines == tuple(lines)


# ============================================================================= tests
@pytest.mark.parametrize("variant", VARIANTS)
def test_bring_up_a_run_both_ways_and_a_stop_under_each_reading(
        line_: tuple[ManualChemyxLine, Transport], variant: str) -> None:
    """§1.3: bring-up (units, diameter, target), rates echoed and read back, a run verified by
    ``pump status``, the dispensed volume, a stop, under every reading left open."""
    emu, ch, line = _fresh(line_, VARIANTS[variant])
    pump = _pump(line)
    pump.connect()
    assert (ch.units, ch.diameter_mm, ch.volume) == (0, 14.57, 10.0)
    for rate_ml_min in (0.5, 0.01234, 12.5):
        pump.set_rate_ml_min(rate_ml_min)
        assert ch.rate_ml_min == pytest.approx(rate_ml_min, rel=1e-5)
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 3.0)
    assert ch.status == 1
    until(lambda: ch.dispensed_ml > 0.05, 20.0)
    assert monitor.poll("solvent") is None
    assert monitor.stop("solvent") is None
    assert ch.status == 0
    assert pump.dispensed_ml()[0] == pytest.approx(ch.dispensed_ml, rel=1e-4)
    monitor.start("solvent", 3.0, infuse=False)
    assert ch.volume == -10.0 and ch.status == 1 and pump.state().status == "W"
    assert monitor.stop("solvent") is None
    assert not [c for c in ch.log if "Invalid" in c]


def test_a_delay_left_on_the_pump_does_not_hold_back_the_run(
        line_: tuple[ManualChemyxLine, Transport]) -> None:
    """§1.3: ``set delay`` exists and ``start`` answers ``Pump delay…`` (status 3) while one
    runs down. A delay left from the panel must not make a run start late (the delivery
    check counts from ``start``) or fail as "delayed": the bring-up sets it to 0."""
    emu, ch, line = _fresh(line_)
    ch.delay_min = 5.0
    pump = _pump(line)
    pump.connect()
    assert ch.delay_min == 0.0
    pump.set_rate_ml_min(1.0)
    pump.start()
    assert ch.status == 1 and pump.state().pumping
    pump.stop()


@pytest.mark.parametrize("volume_sign", ["both", "view"])
def test_the_direction_is_the_sign_of_the_target_volume_shown_where_the_pump_shows_it(
        line_: tuple[ManualChemyxLine, Transport], volume_sign: str) -> None:
    """§1.3: ``set volume ±x`` answers ``volume = x``: whether the echo keeps the sign is not
    said. Either way a withdrawal is set, verified by the sign ``view parameter`` shows, and
    runs."""
    emu, ch, line = _fresh(line_, Readings(volume_sign=volume_sign))
    pump = _pump(line)
    pump.connect()
    pump.set_rate_ml_min(1.0)
    pump.set_direction(False)
    assert ch.volume == -10.0
    pump.start()
    assert pump.state().status == "W"
    pump.stop()
    pump.set_direction(True)
    assert ch.volume == 10.0


def test_a_pump_that_shows_no_sign_cannot_be_set_to_withdraw(
        line_: tuple[ManualChemyxLine, Transport]) -> None:
    """The reading where neither the echo nor ``view parameter`` shows the sign: the direction
    cannot be verified, so a withdrawal is refused by name, never assumed."""
    emu, ch, line = _fresh(line_, Readings(volume_sign="none"))
    pump = _pump(line)
    pump.connect()
    with pytest.raises(HardwareError, match="direction did not stick: sent volume -10, read "
                                            "back 10"):
        pump.set_direction(False)


@pytest.mark.parametrize("out_of_limits", ["limit", "old"])
def test_a_set_beyond_the_limits_is_a_refusal_sent_once(
        line_: tuple[ManualChemyxLine, Transport], out_of_limits: str) -> None:
    """§1.3: "if the value in the response is not the same as the value in the command, the
    command value was outside the limits", whether the pump echoes its limit or its old value:
    a refusal naming what it took, never retried."""
    emu, ch, line = _fresh(line_, Readings(out_of_limits=out_of_limits))
    pump = _pump(line)
    pump.connect()
    pump.set_rate_ml_min(2.0)
    before = len(emu.heard)
    with pytest.raises(DeviceRefused, match=r"set rate 40 refused: the pump took rate = "):
        pump.set_rate_ml_min(40.0)  # above 100 mL/min x (14.57 / 26.6)^2 = 30 mL/min
    assert len(emu.heard) == before + 1
    assert ch.rate_ml_min != pytest.approx(40.0)


@pytest.mark.parametrize("truncates", [False, True], ids=["rounds", "truncates"])
def test_a_pump_keeping_fewer_decimals_holds_the_rate_to_them(
        line_: tuple[ManualChemyxLine, Transport], truncates: bool) -> None:
    """Reading left open: the knowledge base does not say how many decimals a set value keeps.
    A pump that keeps 3 echoes ``rate = 0.013`` (rounded) or ``0.012`` (truncated) for
    0.01279: the value sent to the digits it answers with, so it runs, and the supervisor's
    rate check (the same rule) finds nothing. A rate changed by more than a unit of that digit
    is a ``pump_rate`` trip, and a set beyond the limits (echoed as the limit) is still a refusal
    naming what the pump took."""
    emu, ch, line = _fresh(line_, Readings(decimals=3, truncates=truncates))
    pump = _pump(line)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 0.01279)
    assert ch.rate_ml_min == pytest.approx(0.012 if truncates else 0.013) and ch.status == 1
    assert monitor.poll("solvent") is None
    with emu.lock:
        ch.rate = 0.014  # at the panel: more than a unit of its last digit from 0.01279
    finding = monitor.poll("solvent")
    assert finding is not None and finding.trip and finding.reason == "pump_rate", finding
    pump.stop()
    with pytest.raises(DeviceRefused, match=r"set rate 40 refused: the pump took rate = 30"):
        pump.set_rate_ml_min(40.0)  # the limit, 100 mL/min x (14.57 / 26.6)^2 = 30 mL/min


@pytest.mark.parametrize("stall_clears", ["stop", "start"])
def test_a_stall_trips_once_and_the_pump_is_left_stopped(
        line_: tuple[ManualChemyxLine, Transport], stall_clears: str) -> None:
    """§1.3 / §5: ``pump status`` 4 is a stall; no command to clear it is named. One
    ``pump_stall`` trip; the stop leaves the pump stopped whichever command clears it."""
    emu, ch, line = _fresh(line_, Readings(stall_clears=stall_clears))
    pump = _pump(line)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 2.0)
    emu.stall()
    finding = monitor.poll("solvent")
    assert finding is not None and finding.trip and finding.reason == "pump_stall", finding
    assert pump.take_alarms() == ()
    pump.stop()
    assert ch.status == (4 if stall_clears == "start" else 0)
    pump.start()
    assert ch.status == 1 and pump.take_alarms() == ()
    pump.stop()


def test_a_pump_that_reaches_its_target_volume_is_idle_not_stalled(
        line_: tuple[ManualChemyxLine, Transport]) -> None:
    """§1.3: the target volume ends a run (status 0): while the procedure wants it running the
    supervisor finds it idle."""
    emu, ch, line = _fresh(line_)
    pump = _pump(line)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 30.0)
    with emu.lock:
        ch.volume = ch.dispensed_ml + 0.01
    until(lambda: ch.status == 0, 20.0)
    finding = monitor.poll("solvent")
    assert finding is not None and finding.reason == "pump_idle", finding


def test_a_garbled_or_missing_reply_is_retried_and_a_silent_pump_named(
        line_: tuple[ManualChemyxLine, Transport]) -> None:
    """A reply without its prompt, or none: retried; a pump that never answers is named."""
    emu, ch, line = _fresh(line_)
    pump = _pump(line)
    pump.connect()
    line.serial.timeout = 0.3  # each fault costs a timeout: short ones (the emulator is quick)
    for fault in ("truncate_next", "drop_next"):
        setattr(emu, fault, 1)
        assert not pump.state().pumping, fault
    emu.drop_next = 3
    line.serial.timeout = 0.15  # nothing will answer: only the waits cost
    with pytest.raises(HardwareError, match="pump_0: no valid reply"):
        pump.state()


DUALS = {"echo-with-prefix": Readings(), "echo-without-prefix": Readings(echo="bare"),
         "reply-lines-prefixed": Readings(reply_prefix=True)}


@pytest.mark.parametrize("variant", DUALS)
def test_the_channels_of_a_dual_pump_answer_their_own_prefix(variant: str) -> None:
    """§1.3: a dual-channel pump takes ``1 `` / ``2 `` first; whether its echo repeats the
    prefix, and whether its reply lines carry it, is not said. Each channel's settings, state
    and dispensed volume are read as the pump holds them."""
    emu = ManualChemyxLine((1, 2))
    emu.reset(DUALS[variant])
    line = Transport(emu.port, baudrate=9600, timeout_s=0.4, retries=2)
    try:
        one, two = _pump(line, 1), _pump(line, 2)
        one.connect()
        two.connect()
        one.set_rate_ml_min(6.0)
        two.set_rate_ml_min(1.5)
        two.set_direction(False)
        one.clear_dispensed()
        one.start()
        assert (emu.channels[1].status, emu.channels[2].status) == (1, 0)
        assert one.state().status == "I" and not two.state().pumping
        assert emu.channels[2].volume == -10.0
        assert two.rate_read_ml_min() == pytest.approx(1.5)
        until(lambda: emu.channels[1].dispensed_ml > 0.05, 20.0)
        one.stop()
        assert one.dispensed_ml()[0] == pytest.approx(emu.channels[1].dispensed_ml, rel=1e-4)
        assert all(h[:2] in (b"1 ", b"2 ") for h in emu.heard)
    finally:
        line.close()
        emu.close()


def test_a_command_in_upper_case_is_not_understood(
        line_: tuple[ManualChemyxLine, Transport]) -> None:
    """§1.3: "letter case matters; commands are lowercase": every line the driver sends is."""
    emu, ch, line = _fresh(line_)
    pump = _pump(line)
    pump.connect()
    pump.set_rate_ml_min(1.0)
    pump.start()
    pump.stop()
    assert emu.heard and all(h == h.lower() for h in emu.heard)
    assert execute(ch, "PUMP STATUS") == ["Invalid command"]


def test_a_dispensed_volume_in_microlitres_unnamed_is_a_delivery_fault(
        line_: tuple[ManualChemyxLine, Transport]) -> None:
    """Reading left open: the unit of ``dispensed volume`` is not stated. It is read in the
    units' volume unit (mL: the driver sets units 0) unless the answer names one; a pump that
    answers bare µL reads 1000x too much, which the driver cannot see: the delivery check names
    it (the experiment is invalid), it is never taken for a good run."""
    emu, ch, line = _fresh(line_, Readings(dispensed_ul=True))
    pump = _pump(line)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 3.0)
    until(lambda: ch.dispensed_ml > 0.05, 20.0)
    finding = monitor.poll("solvent")
    assert finding is not None and finding.reason == "pump_delivery", finding
    pump.stop()


def test_a_pump_paused_at_its_panel_is_idle_and_is_stopped(
        line_: tuple[ManualChemyxLine, Transport]) -> None:
    """§1.3: ``pump status`` 2 is paused (``pause``, or the panel): not pumping, so a pump the
    procedure wants running is idle; the stop leaves it stopped (a paused pump gets a second
    ``stop``)."""
    emu, ch, line = _fresh(line_)
    pump = _pump(line)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 3.0)
    with emu.lock:
        execute(ch, "pause")
    assert ch.status == 2
    finding = monitor.poll("solvent")
    assert finding is not None and finding.reason == "pump_idle", finding
    pump.stop()
    assert ch.status == 0
