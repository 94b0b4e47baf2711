"""Device drivers: typed methods in physical units over one :class:`Transport` each.

Every setpoint is (1) checked against the device's :class:`~autolab.hardware.limits.Limits`
before a byte is sent and (2) read back and compared after it is sent; a mismatch raises
:class:`~autolab.exceptions.HardwareError` naming the device, the setpoint, the sent and the read
value. Encoding and parsing are the pure functions of :mod:`autolab.hardware.protocols`.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import minimalmodbus
import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import HardwareError
from autolab.hardware.base import PumpState
from autolab.hardware.limits import Limits, check_setpoint
from autolab.hardware.protocols import eurotherm as eu
from autolab.hardware.protocols import ika, newera, spectro, vici
from autolab.hardware.transport import (
    ProtocolError,
    SerialLike,
    Transport,
    read_exact,
    read_until_byte,
)

T = TypeVar("T")


def _verify(device: str, setpoint: str, sent: float, read: float, tol: float) -> None:
    if not math.isclose(sent, read, rel_tol=tol, abs_tol=tol):
        raise HardwareError(f"{device}: setpoint {setpoint} did not stick: sent {sent:g}, "
                            f"read back {read:g}")


def _as_protocol(fn: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """Turn a parser's HardwareError into ProtocolError so the transport retries it."""
    def wrapped(frame: bytes) -> Any:
        try:
            return fn(frame)
        except ProtocolError:
            raise
        except HardwareError as err:
            raise ProtocolError(str(err)) from err
    return wrapped


class PumpAlarm(HardwareError):
    """A pump answered with an alarm (stall, safe-mode timeout, power reset).

    Attributes:
        device: Pump name.
        code: Alarm code (``R``, ``S``, ``T``, ``E``, ``O``).
    """

    def __init__(self, device: str, code: str) -> None:
        self.device = device
        self.code = code
        super().__init__(f"{device}: pump alarm {code} ({newera.ALARMS.get(code, '?')})")


# ============================================================================= pumps
class NE1000Pump:
    """New Era NE-1000 / NE-500 syringe pump (network address on a daisy chain).

    Args:
        transport: The port (shared by the pumps of one daisy chain).
        name: Device name (log, errors).
        address: Network address 0-99.
        diameter_mm: Syringe inner diameter, mm.
        syringe_ml: Syringe volume, mL (for the near-empty interlock).
        safe_mode_s: Safe-mode communications timeout, s (0 = Basic mode). With it the pump
            stops itself if the host is silent that long, so the supervisor must poll faster.
        limits: Setpoint limits.
    """

    def __init__(self, transport: Transport, name: str, *, address: int = 0,
                 diameter_mm: float = 14.5, syringe_ml: float = 10.0, safe_mode_s: int = 0,
                 limits: Limits | None = None) -> None:
        self.transport = transport
        self.name = name
        self.address = address
        self.diameter_mm = diameter_mm
        self.syringe_ml = syringe_ml
        self.safe_mode_s = safe_mode_s
        self.limits = limits or Limits()
        self.alarms: list[str] = []  #: every alarm the pump reported, oldest first
        self._unreported: list[str] = []  # alarms not yet handed to :meth:`take_alarms`
        self._alarm_lock = threading.Lock()
        self.rate_ml_min = 0.0  #: last verified rate, mL/min
        #: The framing the pump speaks now (Safe mode persists across power cycles, so
        #: :meth:`connect` finds it out instead of assuming it).
        self.safe_wire = safe_mode_s > 0
        #: The mode :meth:`connect` found the pump in (``"basic"``/``"safe"``; "" before).
        self.found_mode = ""

    # --------------------------------------------------------------------- wire
    def _framer(self, ser: SerialLike) -> bytes:
        if self.safe_wire:
            return _safe_framer(ser)
        return read_until_byte(ser, bytes([newera.ETX]), first=bytes([newera.STX]))

    def _parse(self, frame: bytes) -> newera.PumpReply:
        reply = newera.parse_safe(frame) if self.safe_wire else newera.parse_basic(frame)
        if reply.address != self.address:
            raise newera.PumpProtocolError(
                f"{self.name}: reply from address {reply.address}, expected {self.address}")
        return reply

    def _note_alarm(self, code: str) -> None:
        with self._alarm_lock:
            self.alarms.append(code)
            self._unreported.append(code)

    def take_alarms(self) -> tuple[str, ...]:
        """Alarms reported since the last call, oldest first (each is handed out once).

        Every alarm reply is kept here, whichever command it answered, so that an alarm the
        driver had to acknowledge on the way (a power-reset ``R`` answering a rate query) still
        reaches the supervisor: the driver never swallows one.
        """
        with self._alarm_lock:
            out = tuple(self._unreported)
            self._unreported.clear()
        return out

    def _checked(self, data: Callable[[str], object] | None) -> Callable[[bytes], object]:
        """The transport's validator for one command.

        A well-framed reply whose query answer is malformed (a late reply to an earlier
        command, read as this one's) is retried like a garbled one.
        """
        def check(frame: bytes) -> object:
            reply = self._parse(frame)
            if data is not None and not reply.alarm and reply.error is None:
                data(reply.data)
            return reply
        return check

    def query(self, command: str, data: Callable[[str], T]) -> T:
        """Send a query and parse its answer with ``data`` (a malformed answer is retried)."""
        return data(self.command(command, data=data).data)

    def command(self, command: str, args: str = "", *, raise_alarm: bool = True,
                attempts: int | None = None,
                data: Callable[[str], object] | None = None) -> newera.PumpReply:
        """Send one command and parse the reply (``data`` validates a query's answer).

        An alarm reply acknowledges the alarm, and the pump did not execute the command. After
        a power reset (``R``) the command is sent again, since bring-up must get through; the
        alarm itself is kept for :meth:`take_alarms`, where the supervisor finds it.

        Raises:
            PumpAlarm: Any other alarm (if ``raise_alarm``).
            HardwareError: No valid reply, or a command error (``?OOR`` ...).
        """
        for _ in range(2):
            encode = newera.encode_safe if self.safe_wire else newera.encode_basic
            frame = self.transport.exchange(self.name, encode(self.address, command, args),
                                            self._framer, _as_protocol(self._checked(data)),
                                            attempts=attempts)
            reply = self._parse(frame)
            if reply.alarm:
                self._note_alarm(reply.alarm)
                if reply.alarm == "R":
                    continue
                if raise_alarm:
                    raise PumpAlarm(self.name, reply.alarm)
                return reply
            if reply.error is not None:
                raise HardwareError(f"{self.name}: {command}{args} refused: "
                                    f"?{reply.error} ({newera.ERRORS[reply.error]})")
            return reply
        raise HardwareError(f"{self.name}: pump keeps reporting power resets on {command}")

    # --------------------------------------------------------------------- API
    def connect(self) -> None:
        """Bring the pump into a known state: mode, alarms acknowledged, stopped, diameter set.

        The pump may be in either mode (Safe mode persists across power cycles), so it is
        probed in Basic mode first, then in Safe mode, twice each (the first command after
        power-up is ignored), for two rounds. Basic first because a Basic line carries no STX,
        so a pump in Safe mode discards it harmlessly, whereas a Safe packet has no CR and
        would stay in a Basic pump's line buffer and corrupt its next command (the manual
        does not say a Basic pump accepts Safe packets). Then ``SAF n`` switches it to the
        configured mode, verified by a status query in the new framing. The power-up alarm
        ``R`` acknowledged here is expected
        (the manual: always seen after power-up) and is not handed to the supervisor.
        """
        self.found_mode = "safe" if self._probe() else "basic"
        self._switch_mode()
        self.take_alarms()
        self.command("STP")
        self.command("DIA", newera.format_number(self.diameter_mm))
        read = self.query("DIA", newera.parse_float)
        _verify(self.name, "diameter_mm", self.diameter_mm, read, 1e-3)
        self.command("DIR", "INF")

    def _probe(self) -> bool:
        """Find the framing the pump answers (True = Safe mode)."""
        last: HardwareError | None = None
        for _ in range(2):
            for safe in (False, True):
                self.safe_wire = safe
                try:  # two tries per mode: the first command after power-up is ignored
                    self.command("", raise_alarm=False, attempts=2)
                    return safe
                except HardwareError as err:
                    last = err
        raise HardwareError(f"{self.name}: no reply at address {self.address} on "
                            f"{self.transport.url!r}, neither in Basic nor in Safe mode: "
                            f"{last}")

    def _switch_mode(self) -> None:
        """Send ``SAF n`` in the current framing and verify the pump answers in the new one."""
        want_safe = self.safe_mode_s > 0
        if not want_safe and not self.safe_wire:
            return
        was_safe = self.safe_wire
        last: HardwareError | None = None
        for _ in range(3):
            self.safe_wire = was_safe
            encode = newera.encode_safe if was_safe else newera.encode_basic
            with contextlib.suppress(HardwareError):  # the reply's framing is not documented
                self.transport.exchange(self.name, encode(self.address, "SAF",
                                                          str(self.safe_mode_s)),
                                        _any_framer, attempts=1)
            self.safe_wire = want_safe
            try:
                self.command("", raise_alarm=False, attempts=1)
                return
            except HardwareError as err:
                last = err
        raise HardwareError(f"{self.name}: SAF {self.safe_mode_s} sent, but the pump does not "
                            f"answer in {'Safe' if want_safe else 'Basic'} mode: {last}")

    def ping(self) -> str:
        """Firmware version and the mode the pump answers in (found by probing, if need be)."""
        if not self.found_mode:
            self.found_mode = "safe" if self._probe() else "basic"
        version = self.command("VER", raise_alarm=False).data or "ok"
        return f"{self.name}: {version} ({self.found_mode} mode)"

    def set_rate_ml_min(self, rate_ml_min: float) -> None:
        """Set the rate (mL/min), read it back and compare."""
        check_setpoint(self.name, "rate_ml_min", rate_ml_min, low=0.0,
                       high=self.limits.max_rate_ml_min, unit="mL/min")
        self.command("RAT", newera.rate_command_args(rate_ml_min))
        read = self.query("RAT", newera.parse_rate)
        _verify(self.name, "rate_ml_min", rate_ml_min, read, 2e-3)
        self.rate_ml_min = read

    def set_direction(self, infuse: bool) -> None:
        """Infuse or withdraw, verified."""
        want = "INF" if infuse else "WDR"
        self.command("DIR", want)
        got = self.query("DIR", _direction)
        if got != want:
            raise HardwareError(f"{self.name}: setpoint direction did not stick: sent {want}, "
                                f"read back {got}")

    def start(self) -> None:
        """Run (continuous volume), verified by the status."""
        self.command("VOL", "0")
        reply = self.command("RUN")
        if not reply.pumping:
            reply = self.command("")
        if not reply.pumping:
            raise HardwareError(f"{self.name}: RUN sent but status is {reply.status!r}")

    def stop(self) -> None:
        """Stop, verified by the status (an alarm on the way is acknowledged, not raised)."""
        reply = self.command("STP", raise_alarm=False)
        if reply.pumping:
            reply = self.command("", raise_alarm=False)
        if reply.pumping:
            raise HardwareError(f"{self.name}: STP sent but status is {reply.status!r}")

    def state(self) -> PumpState:
        """Status query (empty command); feeds the Safe-mode watchdog.

        The alarms are every alarm the pump reported since the last call, whichever command it
        answered (see :meth:`take_alarms`), so none is lost between two polls.
        """
        reply = self.command("", raise_alarm=False)
        alarms = self.take_alarms()
        return PumpState(pumping=reply.pumping, alarm=alarms[0] if alarms else "",
                         status=reply.status, alarms=alarms)

    def rate_read_ml_min(self) -> float:
        """The rate the pump reports now (``RAT`` query), mL/min."""
        return self.query("RAT", newera.parse_rate)

    def dispensed_ml(self) -> tuple[float, float]:
        """(infused, withdrawn) since the last clear, mL."""
        return self.query("DIS", newera.parse_dispensed)

    def clear_dispensed(self) -> None:
        """Zero both dispensed counters."""
        self.command("CLD", "INF")
        self.command("CLD", "WDR")


def _direction(data: str) -> str:
    if data not in ("INF", "WDR"):
        raise newera.PumpProtocolError(f"pump DIR reply {data!r}: expected INF or WDR")
    return data


def _safe_framer(ser: SerialLike) -> bytes:
    head = read_exact(ser, 2)
    if head[0] != newera.STX:
        raise ProtocolError(f"reply {head!r} does not start with STX")
    return head + read_exact(ser, head[1] - 1)


def _any_framer(ser: SerialLike) -> bytes:
    """One New Era reply in either framing: after STX, a Basic reply has an address digit."""
    head = read_exact(ser, 2)
    if head[0] != newera.STX:
        raise ProtocolError(f"reply {head!r} does not start with STX")
    if chr(head[1]).isdigit():
        return head + read_until_byte(ser, bytes([newera.ETX]))
    return head + read_exact(ser, head[1] - 1)


# ============================================================================= heaters
class Eurotherm3200:
    """Eurotherm 3200 controller of one heater block, Modbus RTU through minimalmodbus.

    Writes only the remote setpoint (register 26; never the EEPROM target SP) and lets the
    controller ramp at its own SP rate limit.

    Args:
        transport: The RS-485 bus (shared by the controllers on it).
        name: Device name.
        address: Modbus slave address.
        ramp_c_per_min: SP rate limit given to the controller at connect, °C/min.
        limits: Setpoint limits (``max_temperature_c``, ``max_ramp_c_per_min``).
    """

    def __init__(self, transport: Transport, name: str, *, address: int = 1,
                 ramp_c_per_min: float = 10.0, limits: Limits | None = None) -> None:
        self.transport = transport
        self.name = name
        self.address = address
        self.ramp_c_per_min = ramp_c_per_min
        self.limits = limits or Limits()

    def _io(self, fn: Callable[[minimalmodbus.Instrument], Any]) -> Any:
        last: Exception | None = None
        for _ in range(self.transport.retries + 1):
            with self.transport.transaction(self.name) as port:
                inst = minimalmodbus.Instrument(port, self.address)
                inst.serial.timeout = self.transport.timeout_s
                try:
                    return fn(inst)
                except (minimalmodbus.ModbusException, ValueError, OSError) as err:
                    last = err
                    port.finish(f"{type(err).__name__}: {err}")
        raise HardwareError(f"{self.name}: no valid Modbus reply from address {self.address} "
                            f"after {self.transport.retries + 1} attempts: {last}") from last

    def _read(self, register: int, decimals: int = eu.DECIMALS) -> float:
        return float(self._io(lambda i: i.read_register(register, decimals, signed=True)))

    def _write(self, register: int, value: float, decimals: int = eu.DECIMALS) -> None:
        self._io(lambda i: i.write_register(register, value, decimals, signed=True))

    def connect(self, standby_c: float = 25.0) -> None:
        """Select the remote setpoint and set the controller's ramp rate (verified).

        Also writes the local target setpoint once to ``standby_c``: if the host stops
        refreshing the remote setpoint (crash, cable), the controller falls back to it and
        cools the block by itself. One write per connect is far inside the EEPROM budget.
        """
        self._write(eu.TARGET_SP, standby_c)
        check_setpoint(self.name, "ramp_c_per_min", self.ramp_c_per_min, low=0.0,
                       high=self.limits.max_ramp_c_per_min, unit="°C/min")
        self._write(eu.LOCAL_REMOTE, 1, 0)
        self._write(eu.SP_RATE, self.ramp_c_per_min)
        _verify(self.name, "ramp_c_per_min", self.ramp_c_per_min, self._read(eu.SP_RATE), 1e-3)
        self._write(30, 100.0)  # OP.HI: output allowed again (after a cut)

    def ping(self) -> str:
        """PV and status."""
        return f"{self.name}: PV {self.temperature_c():.1f} °C, status {self.fault() or 'ok'}"

    def set_temperature_c(self, setpoint_c: float) -> None:
        """Write the remote setpoint, °C, and read it back."""
        check_setpoint(self.name, "temperature_c", setpoint_c, low=0.0,
                       high=self.limits.max_temperature_c, unit="°C")
        self._write(eu.REMOTE_SP, setpoint_c)
        _verify(self.name, "temperature_c", setpoint_c, self._read(eu.REMOTE_SP), 0.06)

    def setpoint_c(self) -> float:
        """Remote setpoint, °C."""
        return self._read(eu.REMOTE_SP)

    def working_setpoint_c(self) -> float:
        """Working setpoint (after the controller's ramp), °C."""
        return self._read(eu.WORKING_SP)

    def temperature_c(self) -> float:
        """Process value, °C."""
        return self._read(eu.PV)

    def status(self) -> eu.ControllerStatus:
        """Decoded status word."""
        return eu.decode_status(int(self._io(lambda i: i.read_register(eu.STATUS, 0))))

    def fault(self) -> str:
        """Worst fault or ``""``."""
        return self.status().fault

    def cut_output(self) -> None:
        """Output high limit to 0 % (register 30): the heater is off at once."""
        self._write(30, 0.0)


# ============================================================================= stirrers
class IKAStirrer:
    """IKA stirrer (NAMUR protocol), one per port.

    Args:
        transport: Its port.
        name: Device name.
        limits: ``max_speed_rpm``.
    """

    def __init__(self, transport: Transport, name: str, *, limits: Limits | None = None) -> None:
        self.transport = transport
        self.name = name
        self.limits = limits or Limits()

    def _query(self, command: str) -> float:
        frame = self.transport.exchange(
            self.name, ika.encode(command), lambda s: read_until_byte(s, b"\n"),
            _as_protocol(ika.parse_value))
        return ika.parse_value(frame)

    def _send(self, command: str, value: float | None = None) -> None:
        self.transport.exchange(self.name, ika.encode(command, value), None)

    def connect(self) -> None:
        """Check it answers."""
        self.ping()

    def ping(self) -> str:
        """Actual speed."""
        return f"{self.name}: {self.speed_rpm():g} rpm"

    def set_speed_rpm(self, rpm: float) -> None:
        """Set and read back the speed setpoint, rpm."""
        check_setpoint(self.name, "speed_rpm", rpm, low=0.0,
                       high=self.limits.max_speed_rpm, unit="rpm")
        self._send("OUT_SP_4", rpm)
        _verify(self.name, "speed_rpm", rpm, self._query("IN_SP_4"), 1e-3)

    def start(self) -> None:
        """Motor on (verified with STATUS_4)."""
        self._send("START_4")
        if self._query("STATUS_4") != 1:
            raise HardwareError(f"{self.name}: START_4 sent but the motor is not running")

    def stop(self) -> None:
        """Motor off."""
        self._send("STOP_4")
        if self._query("STATUS_4") == 1:
            raise HardwareError(f"{self.name}: STOP_4 sent but the motor still runs")

    def speed_rpm(self) -> float:
        """Actual speed, rpm."""
        return self._query("IN_PV_4")

    def blocked(self) -> bool:
        """Whether the motor reports blocked (``STATUS_4`` = -1)."""
        return self._query("STATUS_4") < 0


# ============================================================================= valves
class VICIValve:
    """VICI Valco multiposition actuator.

    Args:
        transport: Its port.
        name: Device name.
        positions: Number of positions.
        move_timeout_s: How long to poll ``CP`` for a move to finish, s.
    """

    def __init__(self, transport: Transport, name: str, *, positions: int = 6,
                 move_timeout_s: float = 3.0) -> None:
        self.transport = transport
        self.name = name
        self.positions = positions
        self.move_timeout_s = move_timeout_s

    def connect(self) -> None:
        """Check the number of positions matches the devices file."""
        frame = self.transport.exchange(self.name, vici.encode("NP"),
                                        lambda s: read_until_byte(s, b"\r"),
                                        _as_protocol(vici.parse_count))
        n = vici.parse_count(frame)
        if n != self.positions:
            raise HardwareError(f"{self.name}: valve has {n} positions, devices file says "
                                f"{self.positions}")

    def ping(self) -> str:
        """Current position."""
        return f"{self.name}: position {self.position()}"

    def position(self) -> int:
        """Current position."""
        frame = self.transport.exchange(self.name, vici.encode("CP"),
                                        lambda s: read_until_byte(s, b"\r"),
                                        _as_protocol(vici.parse_position))
        return vici.parse_position(frame)

    def move(self, position: int) -> None:
        """Move and poll ``CP`` until the valve reports ``position``."""
        check_setpoint(self.name, "position", position, low=1,
                       high=self.positions, unit="")
        self.transport.exchange(self.name, vici.encode("GO", position), None)
        deadline = time.monotonic() + self.move_timeout_s
        got = self.position()
        while got != position and time.monotonic() < deadline:
            time.sleep(0.02)
            got = self.position()
        if got != position:
            raise HardwareError(f"{self.name}: setpoint position did not stick: sent "
                                f"{position}, read back {got}")


# ============================================================================= spectrometer
def _asp1_line(transport: Transport, name: str, command: str,
               arg: str | float | None = None) -> bytes:
    # a setting must be answered by OK: anything else is a stale reply -> retried
    parse = spectro.check_ok if arg is not None else spectro.parse_line
    return transport.exchange(name, spectro.encode(command, arg),
                              lambda s: read_until_byte(s, b"\n"), _as_protocol(parse))


def _configure_light(name: str, line: Callable[[str, str | None], bytes], *, source: str,
                     shutter_open: bool, cell: str) -> None:
    for cmd, value in (("SRC", source), ("SHUT", "OPEN" if shutter_open else "CLOSE"),
                       ("CELL", cell)):
        spectro.check_ok(line(cmd, value))
        got = spectro.parse_line(line(cmd + "?", None))
        if got != value:
            raise HardwareError(f"{name}: setpoint {cmd} did not stick: sent {value}, "
                                f"read back {got}")


class SerialLightPath:
    """The light path of an ASP-1 head alone: lamp/LED source, shutter and cell selector.

    For a rig whose detector is another device (an Ocean spectrometer over USB): it satisfies
    :class:`autolab.hardware.ocean.LightPath`.

    Args:
        transport: The head's port.
        name: Device name.
    """

    def __init__(self, transport: Transport, name: str) -> None:
        self.transport = transport
        self.name = name

    def _line(self, command: str, arg: str | float | None = None) -> bytes:
        return _asp1_line(self.transport, self.name, command, arg)

    def connect(self) -> None:
        """Check it answers."""
        self.ping()

    def ping(self) -> str:
        """Identity string."""
        return f"{self.name}: {spectro.parse_line(self._line('*IDN?'))}"

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        """Source, shutter and cell, each read back."""
        _configure_light(self.name, self._line, source=source, shutter_open=shutter_open,
                         cell=cell)


class SerialSpectrometer:
    """The inline optics head over ASP-1 (see :mod:`autolab.hardware.protocols.spectro`).

    Args:
        transport: Its port (use a timeout that covers the longest integration).
        name: Device name.
    """

    def __init__(self, transport: Transport, name: str) -> None:
        self.transport = transport
        self.name = name
        self._wl: NDArray[np.float64] = np.zeros(0)
        self._sat = 65535.0
        self._exc = math.nan
        self._path = 0.1

    def _line(self, command: str, arg: str | float | None = None) -> bytes:
        return _asp1_line(self.transport, self.name, command, arg)

    def connect(self) -> None:
        """Read the calibration: pixels, wavelength polynomial, full scale, excitation, path."""
        n = int(float(spectro.parse_line(self._line("PIX?"))))
        self._wl = spectro.wavelengths(spectro.parse_floats(self._line("WL?")), n)
        self._sat = float(spectro.parse_line(self._line("SAT?")))
        self._exc = float(spectro.parse_line(self._line("EXC?")))
        self._path = float(spectro.parse_line(self._line("PATH?")))

    def ping(self) -> str:
        """Identity string."""
        return f"{self.name}: {spectro.parse_line(self._line('*IDN?'))}"

    @property
    def wavelengths_nm(self) -> NDArray[np.float64]:
        """Pixel wavelengths, nm."""
        return self._wl

    @property
    def saturation_counts(self) -> float:
        """Full-scale counts."""
        return self._sat

    @property
    def excitation_nm(self) -> float:
        """Excitation wavelength, nm."""
        return self._exc

    @property
    def path_length_cm(self) -> float:
        """Flow-cell path length, cm."""
        return self._path

    def set_integration_ms(self, integration_ms: float) -> None:
        """Set and read back the integration time, ms."""
        lo, hi = spectro.INT_RANGE_MS
        check_setpoint(self.name, "integration_ms", integration_ms, low=lo,
                       high=hi, unit="ms")
        spectro.check_ok(self._line("INT", float(integration_ms)))
        _verify(self.name, "integration_ms", integration_ms,
                float(spectro.parse_line(self._line("INT?"))), 1e-6)

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        """Source, shutter and cell, each read back."""
        _configure_light(self.name, self._line, source=source, shutter_open=shutter_open,
                         cell=cell)

    def acquire(self) -> NDArray[np.float64]:
        """One frame, raw counts ``(P,)``."""
        def framer(ser: SerialLike) -> bytes:
            head = read_exact(ser, 6)
            if head.startswith(b"ERR"):
                rest = bytes(ser.read_until(b"\n"))
                raise ProtocolError(f"{self.name}: {head + rest!r}")
            return head + read_exact(ser, spectro.frame_length(head) - 6)
        frame = self.transport.exchange(self.name, spectro.encode("ACQ"), framer,
                                        _as_protocol(spectro.decode_frame))
        counts = spectro.decode_frame(frame)
        if self._wl.size and counts.size != self._wl.size:
            raise HardwareError(f"{self.name}: frame has {counts.size} pixels, expected "
                                f"{self._wl.size}")
        return counts
