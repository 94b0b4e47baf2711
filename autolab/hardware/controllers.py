"""Temperature controllers without a ramp of their own: Omega CN7500 (Modbus), Julabo, Huber.

Each satisfies :class:`~autolab.hardware.base.TemperatureController` like the Eurotherm 3200
driver: setpoints checked against the devices file's limits before a byte is sent and read
back after; a PV that is an error code, a sensor alarm or an error status is a
:meth:`fault` the supervisor trips on (never a temperature); :meth:`cut_output` is each
protocol's stop, read back. None of the three protocols names a setpoint-ramp parameter, so
each keeps the rig's ``ramp_c_per_min`` with a host-side ramp (:mod:`autolab.hardware.ramp`).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.delivery import wall_lab_min
from autolab.hardware.limits import (
    STEP_FRACTION,
    DidNotStick,
    Limits,
    check_setpoint,
    check_sticks,
)
from autolab.hardware.modbus import WRITE_SINGLE, IllegalFunction, ModbusMode, ModbusRegisters
from autolab.hardware.protocols import huber, julabo, omega
from autolab.hardware.ramp import SoftwareRamp
from autolab.hardware.transport import DeviceRefused, Transport, read_line

T = TypeVar("T")

#: Lab seconds of ramp per setpoint write (see :mod:`autolab.hardware.ramp`).
RAMP_STEP_S = 30.0
#: How long an Omega's bring-up waits for its first temperature while the PV reads 0x8002
#: ("re-initialize/no temp yet"), lab s: a controller just switched on runs its display test
#: and input initialisation for a few seconds first (the map gives no figure); ten times that.
OMEGA_POWER_UP_WAIT_S = 30.0
#: The least that wait lasts, wall s: a unit's own start-up is not sped up with a virtual
#: lab's clock, so on a lab at 2400x the lab bound alone would be 12 ms.
OMEGA_POWER_UP_MIN_WALL_S = 3.0
#: Pause between two PV reads during that wait, wall s.
OMEGA_POWER_UP_POLL_S = 0.1


class _RampedSetpoint:
    """The setpoint half of a ramp-less controller: limits, host-side ramp, read-back.

    The supervisor calls ``set_temperature_c`` with the same value every poll (its heartbeat):
    that moves the ramp on and reads the setpoint back, but writes only when a ramp step is
    due, so a controller that keeps its setpoint in EEPROM is not written twice a second.

    Args:
        name: Device name.
        limits: ``max_temperature_c`` is checked before anything is written.
        ramp: The host-side ramp.
        write_c: Writes a setpoint, °C.
        read_c: Reads the setpoint back, °C.
        pv_c: Reads the PV, °C (a ramp starts from the hotter of it and the setpoint held).
        decimals: The protocol's resolution, decimal places: a ramp step is rounded to it
            before it is written (the read-back is compared with what was sent).
    """

    def __init__(self, name: str, limits: Limits, ramp: SoftwareRamp, *,
                 write_c: Callable[[float], None], read_c: Callable[[], float],
                 pv_c: Callable[[], float], decimals: int) -> None:
        self.name = name
        self.limits = limits
        self.ramp = ramp
        self.write_c = write_c
        self.read_c = read_c
        self.pv_c = pv_c
        self.decimals = decimals
        self.tol_c = 0.6 * 10.0**-decimals
        #: The setpoint last written and verified, °C (NaN before the first).
        self.written_c = math.nan
        self.lock = threading.RLock()

    def write(self, value_c: float) -> None:
        """Write a setpoint now and verify it (no ramp: standby, bring-up)."""
        value_c = round(value_c, self.decimals)
        with self.lock:
            self.write_c(value_c)
            read_c = self.read_c()  # first: a reader may set tol_c from the reply's digits
            check_sticks(self.name, "temperature_c", value_c, read_c, self.tol_c,
                         relative=False)
            self.written_c = value_c

    def set(self, setpoint_c: float) -> None:
        """A setpoint for the ramp to reach (limits first); writes the step due, verifies.

        With no step due (the heartbeat), the setpoint is read back and, if it differs from
        the one written (changed at the unit's panel, or lost with its power), written again
        and verified: the Eurotherm's remote setpoint is rewritten every poll too. Whatever
        else the unit lost (a Julabo stopped by a power loss) is :meth:`fault`'s to report.
        """
        check_setpoint(self.name, "temperature_c", setpoint_c, low=0.0,
                       high=self.limits.max_temperature_c, unit="°C")
        with self.lock:
            if math.isnan(self.written_c):
                self.written_c = self.read_c()
            if setpoint_c != self.ramp.target_c:
                self.ramp.start(max(self.written_c, self.pv_c()), setpoint_c)
            if self.step():
                return
            read_c = self.read_c()
            if not math.isclose(self.written_c, read_c, abs_tol=self.tol_c):
                self.write(self.written_c)

    def step(self) -> bool:
        """Write the ramp step due now, if one is (verified); True if one was written."""
        with self.lock:
            due = self.ramp.due_c(self.written_c)
            # a target the protocol cannot carry exactly is written rounded: once there, it is
            # there (unrounded, it differed every poll and was written every poll)
            if due is None or round(due, self.decimals) == self.written_c:
                return False
            self.write(due)
            return True


class OmegaCN7500(ModbusRegisters):
    """Omega CN7200/CN7500/CN7600/CN7800 controller on a Modbus bus (ASCII or RTU).

    PV and SV are 0.1 °C registers; RUN/STOP is a bit (0x0814), which :meth:`cut_output`
    clears (STOP: the control output off) and :meth:`connect` sets. A PV word that is one of
    the map's error codes (0x8002 re-initialising, 0x8003 sensor not connected, 0x8004 input
    signal error, 0x8006 A/D failure) is a :meth:`fault` and never a temperature. Registers are
    written with function 6 (the map's), bits with 5; 16 only if a unit refuses 6.

    The control method (0x1005) is read at connect and every poll: manual tuning (2) holds a
    manual output and a PID program (3) sets its own SV, so under either the unit follows no
    setpoint the host sends (refused at connect, a hard fault mid-run, as a Eurotherm in
    manual). A unit that refuses the register is driven without the check.

    The status/error code register is 0x102E, or 0x4750 on some models: :meth:`connect` finds
    which the unit answers, and drives a unit that answers neither without one. The map does
    not say that a model keeping it at 0x4750 lacks 0x102E, so a unit that answers both has
    both read at every poll (a code in either is a fault): reading 0x102E alone missed every
    error of such a model (its status at 0x4750).

    Args:
        transport: The bus (shared by the controllers on it).
        name: Device name.
        address: Modbus slave address, 1-247.
        ramp_c_per_min: Heating-rate limit kept by the host-side ramp, °C/min (lab time).
        limits: ``max_temperature_c``, ``max_ramp_c_per_min``.
        mode: ``"ascii"`` (the controllers' usual setting) or ``"rtu"``.
        time_scale: Lab seconds per wall second (the ramp runs on lab time).
        ramp_step_s: Lab seconds of ramp per setpoint write.
        power_up_wait_s: Lab seconds :meth:`connect` waits for a unit still initialising
            (PV 0x8002) to read its first temperature.

    Raises:
        ConfigError: An address outside 1-247.
    """

    def __init__(self, transport: Transport, name: str, *, address: int = 1,
                 ramp_c_per_min: float = 10.0, limits: Limits | None = None,
                 mode: ModbusMode = "ascii", time_scale: float = 1.0,
                 ramp_step_s: float = RAMP_STEP_S,
                 power_up_wait_s: float = OMEGA_POWER_UP_WAIT_S) -> None:
        if not 1 <= address <= 247:
            raise ConfigError(f"{name}.address={address}: expected a Modbus slave address "
                              f"1-247 (0 is broadcast: no controller answers it)")
        super().__init__(transport, name, address=address, decimals=omega.DECIMALS, mode=mode,
                         write_fc=WRITE_SINGLE)
        self.ramp_c_per_min = ramp_c_per_min
        self.limits = limits or Limits()
        self.time_scale = time_scale
        self.power_up_wait_s = power_up_wait_s
        #: The status/error code registers the unit answers (empty: neither; found by
        #: :meth:`connect`).
        self.status_registers: tuple[int, ...] = (omega.STATUS,)
        #: The temperature range the unit allows, (low, high) °C (read by :meth:`connect`).
        self.range_c: tuple[float, float] | None = None
        #: Whether the host last commanded RUN (a unit that reads STOP then is a fault).
        self.commanded_run = False
        self._bit_read_fc = omega.READ_BITS
        #: Whether the unit answers the control-method register (found by :meth:`connect`).
        self.method_checked = True
        self._sp = _RampedSetpoint(name, self.limits,
                                   SoftwareRamp(ramp_c_per_min, ramp_step_s,
                                                wall_lab_min(time_scale)),
                                   write_c=lambda v: self._write(omega.SV, v),
                                   read_c=lambda: self._read(omega.SV), pv_c=self._pv_c,
                                   decimals=omega.DECIMALS)

    # --------------------------------------------------------------------- bring-up
    def connect(self, standby_c: float = 25.0) -> None:
        """Wait out a power-up, find the status register, read the range, standby SV, RUN.

        Raises:
            HardwareError: The unit does not answer, refuses, reads no temperature within
                :attr:`power_up_wait_s`, reads a PV error code or a status/error code, or
                does not switch to RUN.
            ConditionsError: ``ramp_c_per_min`` above the devices file's limit.
        """
        check_setpoint(self.name, "ramp_c_per_min", self.ramp_c_per_min, low=0.0,
                       high=self.limits.max_ramp_c_per_min, unit="°C/min")
        self._wait_for_first_temperature()
        self.status_registers = self._find_status_registers()
        self._check_status_at_connect()
        self._check_method_at_connect()
        self.range_c = (self._read(omega.RANGE_LOW), self._read(omega.RANGE_HIGH))
        self._sp.ramp.clear()
        self._sp.write(standby_c)
        self._run(True)

    def _wait_for_first_temperature(self) -> None:
        """Read the PV until it is not 0x8002 ("no temp yet"), bounded; then any code refuses.

        The map lists 0x8002 as "re-initialize/no temp yet": a unit just switched on answers it
        for its first seconds, and the supervisor's first poll used to trip on it hard
        (``input_error``) although nothing was wrong. Here only: mid-run the same word is a
        unit that re-initialised (a power blip) and stays a fault. Any other error code
        (0x8003 sensor not connected, 0x8004, 0x8006, or one the map does not name) fails
        the bring-up by name before anything is written: the connect used to pass, write the
        standby SV and RUN to a unit that measures nothing, and leave the news to the
        supervisor's first poll (a hard trip and a shutdown, the sensor's fault unnamed at
        bring-up, where an operator looks).

        Raises:
            HardwareError: Still 0x8002 after :attr:`power_up_wait_s` lab seconds (at least
                :data:`OMEGA_POWER_UP_MIN_WALL_S` wall), naming the code and the wait; or
                another PV error code, naming it and what the map says it means.
        """
        bound_s = max(self.power_up_wait_s / self.time_scale, OMEGA_POWER_UP_MIN_WALL_S)
        deadline = time.monotonic() + bound_s
        what = f"read of the PV (register 0x{omega.PV:04X})"
        while (word := self._read_word(omega.PV, what)) == omega.NO_TEMPERATURE_YET:
            if time.monotonic() >= deadline:
                raise HardwareError(
                    f"{self.name}: no temperature yet (0x{omega.NO_TEMPERATURE_YET:04X}, "
                    f"re-initialising) after {self.power_up_wait_s:g} s (lab; {bound_s:.3g} s "
                    f"wall): the controller did not finish its power-up; check its input "
                    f"and sensor")
            time.sleep(OMEGA_POWER_UP_POLL_S)
        fault, meaning = omega.pv_fault(word)
        if fault:
            raise HardwareError(f"{self.name}: the PV (register 0x{omega.PV:04X}) reads error "
                                f"code 0x{word:04X} ({meaning}) at bring-up, before anything "
                                f"was written: {fault}; check the sensor and its wiring")

    def _check_status_at_connect(self) -> None:
        """Refuse a unit whose status/error code is set, before anything is written.

        The supervisor trips hard on any non-zero code (``controller_error``); at bring-up
        the code names what is wrong (0x0007: EEPROM error) where an operator looks.

        Raises:
            HardwareError: A non-zero code in a status register, naming the register and code.
        """
        for register in self.status_registers:
            code = self._read_word(register, f"read of the status word (register "
                                             f"0x{register:04X})")
            if code:
                raise HardwareError(f"{self.name}: status/error code 0x{code:04X} "
                                    f"({omega.status_fault(code)}, register 0x{register:04X}) "
                                    f"at bring-up, before anything was written: clear the "
                                    f"unit's error at its panel")

    def _check_method_at_connect(self) -> None:
        """Refuse a unit that would follow no SV (manual tuning, a PID program), before a write.

        Raises:
            HardwareError: The control method is 2 or 3 (switch it at the unit's panel).
        """
        what = f"read of the control method (register 0x{omega.CONTROL_METHOD:04X})"
        try:
            method = self._read_word(omega.CONTROL_METHOD, what)
        except IllegalFunction:
            raise
        except DeviceRefused:
            self.method_checked = False  # not in this model's map: driven without the check
            return
        self.method_checked = True
        if method in omega.METHOD_FAULTS:
            raise HardwareError(f"{self.name}: control method {method} "
                                f"({omega.METHOD_FAULTS[method][1]}, register 0x1005): the unit "
                                f"would follow no setpoint the host sends; switch it to PID "
                                f"or ON/OFF at its panel")

    def _method_fault(self) -> str:
        """``manual_mode`` or ``program_mode`` from the control method, or ``""``."""
        if not self.method_checked:
            return ""
        method = self._read_word(omega.CONTROL_METHOD, "read of the control method "
                                                       "(register 0x1005)")
        return omega.METHOD_FAULTS.get(method, ("", ""))[0]

    @property
    def status_register(self) -> int | None:
        """The first status/error code register the unit answers (``None``: neither)."""
        return self.status_registers[0] if self.status_registers else None

    def _find_status_registers(self) -> tuple[int, ...]:
        """0x102E and 0x4750 (some models), those the unit answers (refused: not there)."""
        found = []
        for register in (omega.STATUS, omega.STATUS_ALT):
            try:
                self._read_word(register, f"read of the status word (register 0x{register:04X})")
            except IllegalFunction:
                raise
            except DeviceRefused:
                continue
            found.append(register)
        return tuple(found)

    def _run(self, run: bool) -> None:
        """Set the RUN/STOP bit and read it back."""
        what = "RUN" if run else "STOP"
        self.commanded_run = run
        self._write_bit(omega.RUN_BIT, run, f"{what} (bit 0x{omega.RUN_BIT:04X})")
        if self._running() != run:
            raise HardwareError(f"{self.name}: {what} written but the RUN/STOP bit "
                                f"(0x{omega.RUN_BIT:04X}) reads {'STOP' if run else 'RUN'}")

    def _running(self) -> bool:
        """The RUN/STOP bit: function 2 as the map says; 1 (read coils) if a unit refuses 2.

        The map lists 2 for reading bits; Modbus reads a coil (0x0814 is written with 5, write
        single coil) with 1, so a unit that answers 2 with "illegal function" is asked with 1
        for the rest of the session.
        """
        what = f"read of RUN/STOP (bit 0x{omega.RUN_BIT:04X})"
        try:
            return self._read_bit(omega.RUN_BIT, what, self._bit_read_fc)
        except IllegalFunction:
            if self._bit_read_fc == omega.READ_COILS:
                raise
            self._bit_read_fc = omega.READ_COILS
            return self._read_bit(omega.RUN_BIT, what, self._bit_read_fc)

    def ping(self) -> str:
        """PV (or its error) and status."""
        word = self._read_word(omega.PV, "read of the PV (register 0x1000)")
        fault, what = omega.pv_fault(word)
        pv = f"PV error 0x{word:04X} ({what})" if fault else f"PV {omega.from_word(word):.1f} °C"
        return f"{self.name}: {pv}"

    # --------------------------------------------------------------------- TemperatureController
    def set_temperature_c(self, setpoint_c: float) -> None:
        """Ramp the setpoint (SV, 0x1001) toward ``setpoint_c``, writing the step due; verified.

        Raises:
            ConditionsError: Beyond the devices file's limit or the unit's range.
            HardwareError: The SV read back differs from the value written.
        """
        if self.range_c is not None:
            check_setpoint(self.name, "temperature_c", setpoint_c, low=self.range_c[0],
                           high=self.range_c[1], unit="°C (the controller's range)")
        self._sp.set(setpoint_c)

    def setpoint_c(self) -> float:
        """The SV the controller holds now, °C (a ramp step, on the way to the target)."""
        return self._read(omega.SV)

    def temperature_c(self) -> float:
        """Process value, °C, or NaN while the PV is an error code; moves a host-side ramp on.

        NaN, not an exception: the supervisor reads :meth:`fault` first and must trip on
        what it says (``sensor_break``), not on a failed read (``comms_loss``); and a NaN
        fails every comparison a caller makes (the supervisor trips on a NaN PV as an
        over-temperature), so an error code is never read as a temperature.
        """
        word = self._read_word(omega.PV, "read of the PV (register 0x1000)")
        if omega.pv_fault(word)[0]:
            return math.nan
        self._sp.step()
        return omega.from_word(word)

    def _pv_c(self) -> float:
        """The PV for a ramp's start (an error code: the ramp starts from the setpoint)."""
        word = self._read_word(omega.PV, "read of the PV (register 0x1000)")
        return -math.inf if omega.pv_fault(word)[0] else omega.from_word(word)

    def fault(self) -> str:
        """The worst fault: a PV error code, the status code, STOP while commanded RUN, or ``""``.

        Names: ``sensor_break`` (0x8003), ``input_error`` (the other PV error codes),
        ``controller_error`` (a non-zero status/error code), ``manual_mode`` /
        ``program_mode`` (control method 2 / 3), ``stopped``.
        """
        word = self._read_word(omega.PV, "read of the PV (register 0x1000)")
        fault, _ = omega.pv_fault(word)
        if fault:
            return fault
        fault = self._method_fault()
        if fault:
            return fault
        for register in self.status_registers:
            code = self._read_word(register, f"read of the status word (register "
                                             f"0x{register:04X})")
            if omega.status_fault(code):
                return "controller_error"
        if self.commanded_run and not self._running():
            return "stopped"
        return ""

    def cut_output(self) -> None:
        """STOP (bit 0x0814 to 0), read back: the control output is off at once."""
        with self._sp.lock:
            self._sp.ramp.clear()
            self._run(False)


# ============================================================================= Julabo
class JulaboCirculator:
    """Julabo circulator heating a tank through its jacket (text protocol, one unit per port).

    Commands are spaced as the manuals ask (at least 250 ms apart, and 10 ms after a reply):
    the driver waits, it never relies on the host being slow. ``out`` commands get no reply in
    the manuals; if a unit answers them anyway, the transport drops that line before the next
    request (read and logged as unasked bytes), so either reading works. Every ``out`` is read
    back with its ``in`` twin.

    After a power loss the unit comes back stopped and its setpoints must be sent again: a
    ``status`` that says stopped while the host started it is the fault ``stopped`` (a hard
    trip), never a block that is merely slow.

    Args:
        transport: Its port.
        name: Device name.
        ramp_c_per_min: Heating-rate limit kept by the host-side ramp, °C/min (lab time).
        limits: ``max_temperature_c``, ``max_ramp_c_per_min``.
        line_end: ``"cr"`` (SC/FL/SL manuals) or ``"crlf"`` (CF41).
        time_scale: Lab seconds per wall second (the ramp runs on lab time).
        ramp_step_s: Lab seconds of ramp per setpoint write.
    """

    def __init__(self, transport: Transport, name: str, *, ramp_c_per_min: float = 10.0,
                 limits: Limits | None = None, line_end: str = "cr", time_scale: float = 1.0,
                 ramp_step_s: float = RAMP_STEP_S) -> None:
        self.transport = transport
        self.name = name
        self.ramp_c_per_min = ramp_c_per_min
        self.limits = limits or Limits()
        self.end = julabo.LINE_ENDS[line_end]
        #: Whether the host last started the unit (a unit that reads stopped then is a fault).
        self.commanded_run = False
        #: Monotonic times each command was written (the spacing rule; tests read them).
        self.sent_at: list[float] = []
        self._next_ok = 0.0
        #: Commands written so far, and the count when the last ``status`` said no fault (-1:
        #: it said one): a PV read right after a clean status needs no status of its own.
        self._written = 0
        self._clean_status_at = -1
        self._sp = _RampedSetpoint(name, self.limits,
                                   SoftwareRamp(ramp_c_per_min, ramp_step_s,
                                                wall_lab_min(time_scale)),
                                   write_c=lambda v: self._send("out_sp_00", v),
                                   read_c=self._read_setpoint_c,
                                   pv_c=lambda: self._query("in_pv_00", julabo.parse_number),
                                   decimals=julabo.DECIMALS)

    # --------------------------------------------------------------------- wire
    def _wait_turn(self) -> None:
        """Sleep until the manual's spacing allows the next command."""
        delay = self._next_ok - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        self.sent_at = [*self.sent_at[-99:], now]
        self._next_ok = now + julabo.COMMAND_SPACING_S
        self._written += 1

    def _send(self, command: str, value: float | int | None = None) -> None:
        """An ``out`` command (no reply expected)."""
        with self.transport.lock:
            self.transport.exchange(self.name, julabo.encode(command, value, self.end), None,
                                    pace=self._wait_turn)

    def _query(self, command: str, parse: Callable[[bytes], T]) -> T:
        """An ``in`` command or ``status``/``version``; the reply parsed (malformed: retried).

        Every attempt waits its turn: a retry is a command like any other to the unit.
        """
        with self.transport.lock:
            frame = self.transport.exchange(self.name, julabo.encode(command, None, self.end),
                                            read_line, parse, pace=self._wait_turn)
            self._next_ok = max(self._next_ok, time.monotonic() + julabo.AFTER_REPLY_S)
            return parse(frame)

    def _read_setpoint_c(self) -> float:
        """``in_sp_00``; the read-back tolerance follows the digits the unit answers with.

        ``out_sp_00`` takes ``xxx.xx``, but the manuals give no format for the answer: a unit
        that answers ``152.4`` for 152.37 holds what it was sent to its own resolution, and
        a fixed 0.006 °C tolerance took that for a setpoint that did not stick. The pumps'
        rule (:func:`~autolab.hardware.limits.matches_answer`): under one unit of the last
        digit answered, so a unit that cuts (``152.3``) passes as one that rounds does, and
        one a unit or more off does not.
        """
        value, places = self._query("in_sp_00", julabo.parse_places)
        self._sp.tol_c = STEP_FRACTION * 10.0**-min(places, julabo.DECIMALS)
        return value

    def status(self) -> julabo.JulaboStatus:
        """The decoded ``status`` reply."""
        with self.transport.lock:
            st = self._query("status", julabo.parse_status)
            self._clean_status_at = -1 if st.fault else self._written
            return st

    # --------------------------------------------------------------------- bring-up
    def connect(self, standby_c: float = 25.0) -> None:
        """Check it answers without an error, write the standby setpoint, start it (read back).

        Raises:
            HardwareError: It reports an error, or the setpoint or start does not stick
                (an ``out`` command is ignored outside remote mode: switch the unit to it).
        """
        check_setpoint(self.name, "ramp_c_per_min", self.ramp_c_per_min, low=0.0,
                       high=self.limits.max_ramp_c_per_min, unit="°C/min")
        st = self.status()
        if st.error:
            raise HardwareError(f"{self.name}: the circulator reports {st.code:03d} "
                                f"{st.text!r} ({julabo.ERRORS.get(st.code, 'error')})")
        self._sp.ramp.clear()
        try:
            self._sp.write(standby_c)
            self._mode(True)
        except HardwareError as err:
            st = self.status()
            raise HardwareError(f"{err} (status: {st.code:03d} {st.text!r}; out commands act "
                                f"only in remote mode)") from err

    def _mode(self, run: bool) -> None:
        """``out_mode_05`` and its read-back."""
        self.commanded_run = run
        self._send("out_mode_05", int(run))
        got = self._query("in_mode_05", julabo.parse_mode)
        if got != int(run):
            raise HardwareError(f"{self.name}: out_mode_05 {int(run)} sent but in_mode_05 "
                                f"reads {got}")

    def ping(self) -> str:
        """The unit's version string."""
        return f"{self.name}: {self._query('version', _text)}"

    # --------------------------------------------------------------------- TemperatureController
    def set_temperature_c(self, setpoint_c: float) -> None:
        """Ramp the working setpoint (``out_sp_00``) toward ``setpoint_c``; read back.

        Raises:
            DeviceRefused: A setpoint that did not stick while ``status`` reports an error
                (``-13`` beyond the unit's safety limit, ``-09`` out of remote mode): the
                unit's refusal, named, not a line that failed.
        """
        try:
            self._sp.set(setpoint_c)
        except DidNotStick as err:
            raise self._with_status(err) from err

    def _with_status(self, err: DidNotStick) -> HardwareError:
        """``err`` as the unit's refusal if ``status`` reports an error, else ``err``."""
        st = self.status()
        if not st.error:
            return err
        return DeviceRefused(f"{err}: the circulator reports {st.code:03d} {st.text!r} "
                             f"({julabo.ERRORS.get(st.code, 'error')})")

    def temperature_c(self) -> float:
        """Bath temperature (``in_pv_00``), °C, or NaN while ``status`` reports a fault.

        The manuals do not say what ``in_pv_00`` answers while a sensor is broken: perhaps
        no number (retried like a garbled reply), perhaps a number (the last reading, the
        bare code ``-05``), which the shutdown's cool-down would take for a cool block. So a
        PV counts only next to a ``status`` without a fault: the one just before it (the
        supervisor asks :meth:`fault` first, so its poll costs no extra command), else one
        asked right after. While ``status`` reports a fault the PV is NaN (a NaN fails
        every comparison). Moves a host-side ramp on.
        """
        with self.transport.lock:
            checked = self._clean_status_at == self._written
            try:
                pv = self._query("in_pv_00", julabo.parse_number)
            except HardwareError:
                if self.status().fault:
                    return math.nan
                raise
            if not checked and self.status().fault:
                return math.nan
        self._sp.step()
        return pv

    def fault(self) -> str:
        """The fault ``status`` reports, or ``""``.

        ``sensor_break``, ``controller_error`` (the other error codes), ``stopped`` (stopped
        while started: its panel, a power loss).
        """
        st = self.status()
        if st.fault:
            return st.fault
        if self.commanded_run and not st.started:
            return "stopped"
        return ""

    def cut_output(self) -> None:
        """Stop (``out_mode_05 0``), read back: heating off."""
        with self._sp.lock:
            self._sp.ramp.clear()
            self._mode(False)


def _text(line: bytes) -> str:
    return line.decode("ascii", errors="replace").strip()


# ============================================================================= Huber
class HuberPB:
    """Huber thermostat (Unistat, Petite Fleur) over the PB protocol, one unit per port.

    The PV is the internal (bath) temperature, or the process temperature (an external sensor
    in the tank) when ``sensor`` says so. A temperature of -151 °C is the protocol's invalid
    marker: a ``sensor_break`` fault, never a temperature. :meth:`cut_output` switches
    temperature control off (variable 14), read back; a unit whose temperature control reads
    off while the host switched it on is ``stopped``. The status bit fields (0A, 3C) are not
    decoded: the protocol description names them without their bit positions.

    The PB description does not say what a unit answers to a write; the driver reads one
    reply if it comes (a slave frame for that variable) and then asks the variable again,
    so a unit that echoes the new value and one that stays silent are driven alike.

    Args:
        transport: Its port.
        name: Device name.
        ramp_c_per_min: Heating-rate limit kept by the host-side ramp, °C/min (lab time).
        limits: ``max_temperature_c``, ``max_ramp_c_per_min``.
        sensor: ``"internal"`` (variable 01) or ``"process"`` (07).
        time_scale: Lab seconds per wall second (the ramp runs on lab time).
        ramp_step_s: Lab seconds of ramp per setpoint write.
    """

    def __init__(self, transport: Transport, name: str, *, ramp_c_per_min: float = 10.0,
                 limits: Limits | None = None, sensor: str = "internal",
                 time_scale: float = 1.0, ramp_step_s: float = RAMP_STEP_S) -> None:
        self.transport = transport
        self.name = name
        self.ramp_c_per_min = ramp_c_per_min
        self.limits = limits or Limits()
        self.pv_variable = huber.PROCESS_T if sensor == "process" else huber.INTERNAL_T
        #: The setpoint range the unit allows, (low, high) °C (read by :meth:`connect`).
        self.range_c: tuple[float, float] | None = None
        #: Whether the host last switched temperature control on.
        self.commanded_run = False
        self._sp = _RampedSetpoint(name, self.limits,
                                   SoftwareRamp(ramp_c_per_min, ramp_step_s,
                                                wall_lab_min(time_scale)),
                                   write_c=lambda v: self._write(huber.SETPOINT,
                                                                 huber.to_word(v)),
                                   read_c=lambda: huber.from_word(self._get(huber.SETPOINT)),
                                   pv_c=self._pv_or_cold, decimals=huber.DECIMALS)

    # --------------------------------------------------------------------- wire
    def _get(self, address: int) -> int:
        """A variable's data word (a malformed or foreign reply is retried)."""
        frame = self.transport.exchange(self.name, huber.encode_query(address), read_line,
                                        lambda f: huber.parse_reply(f, address))
        return huber.parse_reply(frame, address)

    def _write(self, address: int, word: int) -> None:
        """Write a variable until it reads back (bounded); a reply is read if one comes.

        The caller reads it back once more and raises if it still differs.
        """
        for _ in range(self.transport.retries + 1):
            with contextlib.suppress(HardwareError):  # no reply to a write: allowed
                self.transport.exchange(self.name, huber.encode_write(address, word),
                                        read_line, lambda f: huber.parse_reply(f, address),
                                        attempts=1)
            if self._get(address) == word:
                return

    def _switch(self, run: bool) -> None:
        """Temperature control on or off (variable 14), read back."""
        self.commanded_run = run
        self._write(huber.CONTROL_ACTIVE, int(run))
        if bool(self._get(huber.CONTROL_ACTIVE)) != run:
            raise HardwareError(f"{self.name}: temperature control (variable 14) switched "
                                f"{'on' if run else 'off'} but reads "
                                f"{'off' if run else 'on'}")

    def _pv_or_cold(self) -> float:
        """The PV for a ramp's start (invalid: the ramp starts from the setpoint)."""
        word = self._get(self.pv_variable)
        return -math.inf if huber.is_invalid(word) else huber.from_word(word)

    # --------------------------------------------------------------------- bring-up
    def connect(self, standby_c: float = 25.0) -> None:
        """Read the setpoint range, write the standby setpoint, circulation and control on.

        Circulation (16) is left on by :meth:`cut_output`: only temperature control goes off.
        """
        check_setpoint(self.name, "ramp_c_per_min", self.ramp_c_per_min, low=0.0,
                       high=self.limits.max_ramp_c_per_min, unit="°C/min")
        self.range_c = (huber.from_word(self._get(huber.MIN_SETPOINT)),
                        huber.from_word(self._get(huber.MAX_SETPOINT)))
        self._sp.ramp.clear()
        self._sp.write(standby_c)
        self._write(huber.CIRCULATION, 1)  # the jacket needs the flow
        if not self._get(huber.CIRCULATION):
            raise HardwareError(f"{self.name}: circulation (variable 16) switched on but "
                                f"reads off")
        self._switch(True)

    def ping(self) -> str:
        """The PV (or that it is invalid)."""
        word = self._get(self.pv_variable)
        pv = "invalid" if huber.is_invalid(word) else f"{huber.from_word(word):.2f} °C"
        return f"{self.name}: PV {pv}"

    # --------------------------------------------------------------------- TemperatureController
    def set_temperature_c(self, setpoint_c: float) -> None:
        """Ramp the setpoint (variable 00) toward ``setpoint_c``; read back.

        Refused before a byte beyond the unit's range, or beyond what a PB word carries
        (327.67 °C: a larger value would wrap round to a negative one).
        """
        low, high = self.range_c or huber.WORD_RANGE_C
        check_setpoint(self.name, "temperature_c", setpoint_c, low=max(low, -327.68),
                       high=min(high, huber.WORD_RANGE_C[1]),
                       unit="°C (the unit's setpoint range)")
        self._sp.set(setpoint_c)

    def temperature_c(self) -> float:
        """The PV, °C, or NaN for the invalid marker (see :meth:`OmegaCN7500.temperature_c`)."""
        word = self._get(self.pv_variable)
        if huber.is_invalid(word):
            return math.nan
        self._sp.step()
        return huber.from_word(word)

    def fault(self) -> str:
        """The worst fault, or ``""``.

        ``sensor_break`` (the PV reads -151 °C), ``stopped`` (control off while switched on),
        ``circulation_off`` (the pump off while control is on: the description does not say
        that control stops with the flow, and a jacket without flow heats no tank).
        """
        if huber.is_invalid(self._get(self.pv_variable)):
            return "sensor_break"
        if not self.commanded_run:
            return ""
        if not self._get(huber.CONTROL_ACTIVE):
            return "stopped"
        if not self._get(huber.CIRCULATION):
            return "circulation_off"
        return ""

    def cut_output(self) -> None:
        """Temperature control off (variable 14 to 0), read back."""
        with self._sp.lock:
            self._sp.ramp.clear()
            self._switch(False)
