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
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from autolab.exceptions import ConfigError, DeviceFault, HardwareError
from autolab.hardware.base import PumpState, check_light_after_frame
from autolab.hardware.limits import (
    Answer,
    Limits,
    check_answer_sticks,
    check_rate_sticks,
    check_setpoint,
    check_sticks,
)
from autolab.hardware.modbus import ModbusRegisters
from autolab.hardware.protocols import eurotherm as eu
from autolab.hardware.protocols import ika, newera, spectro, vici
from autolab.hardware.transport import (
    DeviceRefused,
    ProtocolError,
    SerialLike,
    Transport,
    read_exact,
    read_line,
    read_until_byte,
    retry_garbled,
)

T = TypeVar("T")


#: New Era errors that are the line's or the moment's fault, not the command's: retried.
RETRIED_ERRORS = ("COM", "IGN")
#: Power-reset (``R``) replies one command may meet before it is executed: the auto-alarm
#: packet of a pump in Safe mode, then the reply that acknowledges the alarm.
RESET_REPLIES = 2
#: Replies :meth:`NE1000Pump.stop` acts on after the first ``STP``: an alarm to acknowledge, a
#: status from before the command, a pause, each answered by one more ``STP`` or status query.
STOP_STEPS = 4
#: The diameter read back: within 0.1 % (4 significant digits keep 5e-4 or better), or the
#: digits the pump answers with (:func:`~autolab.hardware.limits.matches_answer`).
DIAMETER_REL_TOL = 1e-3


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
        #: Rate unit of the last verified rate (``UM``/``MM``/``UH``/``MH``; "" unknown): the
        #: manual says units cannot change while the pump runs.
        self.rate_units = ""
        #: Whether the last status the pump sent said the motor runs.
        self.pumping = False
        #: The framing the pump speaks now (Safe mode persists across power cycles, so
        #: :meth:`connect` finds it out instead of assuming it).
        self.safe_wire = safe_mode_s > 0
        #: The mode :meth:`connect` found the pump in (``"basic"``/``"safe"``; "" before).
        self.found_mode = ""
        #: When the pump last answered (monotonic s): its Safe-mode timer restarted then.
        self._answered_s = -math.inf
        transport.stray_listeners.append(self._scan_stray)

    # --------------------------------------------------------------------- wire
    def _framer(self, ser: SerialLike) -> bytes:
        """One reply; in Safe mode a Safe-mode packet or a Basic-framed reply.

        The manual gives the Safe-mode packet layout of what the host sends and calls the
        auto-alarm a "status packet"; it does not say that a pump in Safe mode frames its
        replies as packets. A Basic reply (``STX``, an address digit) is read as one.
        """
        if self.safe_wire:
            return _any_framer(ser)
        return read_until_byte(ser, bytes([newera.ETX]))

    def _parse(self, frame: bytes) -> newera.PumpReply:
        safe = self.safe_wire and len(frame) > 1 and not _basic_framed(frame)
        reply = newera.parse_safe(frame) if safe else newera.parse_basic(frame)
        if reply.address is not None and reply.address != self.address:
            raise newera.PumpProtocolError(
                f"{self.name}: reply from address {reply.address}, expected {self.address}")
        return reply

    def _note_alarm(self, code: str) -> None:
        """Keep an alarm for :meth:`take_alarms`.

        One alarm may reach the host twice (the Safe-mode auto-alarm packet, then the reply
        that acknowledges it): the same code right after itself, not yet handed out, is kept
        once.
        """
        with self._alarm_lock:
            if self._unreported and self._unreported[-1] == code:
                return
            self.alarms.append(code)
            self._unreported.append(code)

    def _scan_stray(self, data: bytes) -> None:
        """Keep this pump's alarms found in bytes the transport throws away (a listener).

        The manual offers no query for a past alarm: an auto-alarm packet waiting on the line,
        or an acknowledging reply that came after its timeout, is the only record of it.
        """
        for address, code in newera.stray_alarms(data):
            if address == self.address:
                self._note_alarm(code)

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
        command, read as this one's) is retried like a garbled one. So are ``?COM`` (the pump
        received a corrupted packet: noise on the line) and ``?IGN`` (ignored because a phase
        started at that instant): the manual's two errors that say nothing against the command.
        """
        def check(frame: bytes) -> object:
            reply = self._parse(frame)
            if reply.error in RETRIED_ERRORS:
                raise newera.PumpProtocolError(
                    f"{self.name}: ?{reply.error} ({newera.ERRORS[str(reply.error)]})", frame)
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

        An alarm reply acknowledges the alarm, and the pump did not execute the command (the
        manual: "acknowledged before any data is changed or the pump is started"; it does not
        say so outright, and every command sent here may be repeated safely). After
        a power reset (``R``) the command is sent again, since bring-up must get through; the
        alarm itself is kept for :meth:`take_alarms`, where the supervisor finds it. Up to two
        ``R`` replies in a row are expected: in Safe mode the pump's own auto-alarm packet
        (which does not acknowledge) can precede the reply that does.

        Raises:
            PumpAlarm: Any other alarm (if ``raise_alarm``).
            DeviceRefused: A command error (``?OOR``, ``?NA``, ``?``): the pump answered.
            HardwareError: No valid reply.
        """
        seen: set[str] = set()  # an auto-alarm and its acknowledging reply: one alarm
        for _ in range(RESET_REPLIES + 1):
            encode = newera.encode_safe if self.safe_wire else newera.encode_basic
            frame = self.transport.exchange(self.name, encode(self.address, command, args),
                                            self._framer, retry_garbled(self._checked(data)),
                                            attempts=attempts)
            reply = self._parse(frame)
            self._answered_s = time.monotonic()
            self.pumping = reply.pumping
            if reply.alarm:
                if reply.alarm not in seen:
                    self._note_alarm(reply.alarm)
                    seen.add(reply.alarm)
                self._after_alarm_reply()
                if reply.alarm == "R":
                    continue
                if raise_alarm:
                    raise PumpAlarm(self.name, reply.alarm)
                return reply
            if reply.error is not None:  # the pump answered: it refuses, the line is fine
                what = newera.ERRORS.get(reply.error, "unknown error code")
                raise DeviceRefused(f"{self.name}: {command}{args} refused: "
                                    f"?{reply.error} ({what}); reply {frame!r}")
            return reply
        raise HardwareError(f"{self.name}: pump keeps reporting power resets on {command}")

    def _after_alarm_reply(self) -> None:
        """In Safe mode, drop the reply an auto-alarm packet may have displaced.

        The manual: in Safe mode "the pump spontaneously transmits a status packet when an
        alarm occurs", and that packet does not acknowledge the alarm. Read in place of a
        reply, it leaves the real reply (the alarm again, acknowledging it) on the line, where
        the next request would take it for its own. Either frame says the command was not
        executed, so the late one is dropped (and logged); the cost is one quiet wait per
        alarm. Basic mode sends nothing unasked.
        """
        if self.safe_wire:
            self.transport.discard_late(self.name, self.transport.timeout_s,
                                        "after an alarm reply (a Safe-mode auto-alarm packet, "
                                        "or the reply it displaced)")

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
        self.stop()
        self.command("DIA", newera.format_number(self.diameter_mm))
        check_answer_sticks(self.name, "diameter_mm", self.diameter_mm,
                            self.query("DIA", newera.parse_number_answer), rel=DIAMETER_REL_TOL)
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
            frame = b""
            with contextlib.suppress(HardwareError):  # the reply's framing is not documented
                frame = self.transport.exchange(self.name, encode(self.address, "SAF",
                                                                  str(self.safe_mode_s)),
                                                _any_framer, attempts=1)
            if not _plain_reply(frame):
                self.transport.discard_late(
                    self.name, self.transport.timeout_s,
                    "after SAF: no plain reply (an auto-alarm packet, an alarm that was not "
                    "executed, or none): its own reply may still come")
            self.safe_wire = want_safe
            try:
                self.command("", raise_alarm=False, attempts=1)
                return
            except HardwareError as err:
                last = err
        raise HardwareError(f"{self.name}: SAF {self.safe_mode_s} sent, but the pump does not "
                            f"answer in {'Safe' if want_safe else 'Basic'} mode: {last}")

    def feed_watchdog(self) -> None:
        """In Safe mode, a status query if the pump last answered a third of its timeout ago.

        The manual's Safe-mode timer counts the time between consecutive valid packets and,
        when it elapses, stops the pump with alarm ``T``, whether it pumps or not. An alarm the
        query acknowledges is kept for :meth:`take_alarms` (the supervisor's next poll).

        Raises:
            HardwareError: No valid reply.
        """
        if self.safe_mode_s > 0 and self.safe_wire and \
                time.monotonic() - self._answered_s >= self.safe_mode_s / 3.0:
            self.command("", raise_alarm=False)

    def ping(self) -> str:
        """Firmware version and the mode the pump answers in (found by probing, if need be)."""
        if not self.found_mode:
            self.found_mode = "safe" if self._probe() else "basic"
        version = self.command("VER", raise_alarm=False).data or "ok"
        return f"{self.name}: {version} ({self.found_mode} mode)"

    def set_rate_ml_min(self, rate_ml_min: float) -> None:
        """Set the rate (mL/min), read it back and compare.

        The answer is held to the digits the pump writes (the manual gives only the most
        it writes, 4 digits and 3 decimals), by the rule every pump kind's read-back and the
        supervisor's rate check share (:func:`~autolab.hardware.limits.check_rate_sticks`).
        """
        check_setpoint(self.name, "rate_ml_min", rate_ml_min, low=0.0,
                       high=self.limits.max_rate_ml_min, unit="mL/min")
        self.command("RAT", self._rate_args(rate_ml_min))
        got, units = self.query("RAT", newera.parse_rate_answer)
        check_rate_sticks(self.name, rate_ml_min, got)
        self.rate_ml_min, self.rate_units = got.value, units

    def _rate_args(self, rate_ml_min: float) -> str:
        """``RAT`` arguments: the most precise unit at rest, the current unit while pumping.

        The manual: the rate "can be changed while pumping", but "units cannot change while
        pumping" (the pump answers ``?NA``). A running pump whose unit cannot write the new
        rate within the read-back tolerance is refused here, naming both, before a byte is
        sent (stopping it would break the feed the experiment depends on).

        Raises:
            HardwareError: The rate cannot be written in the running pump's unit.
        """
        if not self.pumping:
            return newera.rate_command_args(rate_ml_min)
        if not self.rate_units:
            self.rate_units = self.query("RAT", newera.parse_rate_units)[1]
        try:
            args = newera.rate_command_args(rate_ml_min, self.rate_units)
        except ConfigError as err:
            raise HardwareError(f"{self.name}: rate {rate_ml_min:g} mL/min cannot be set while "
                                f"pumping: {err} (the pump cannot change units while it "
                                f"runs)") from err
        if newera.rate_error(rate_ml_min, args) > 2e-3:
            raise HardwareError(f"{self.name}: rate {rate_ml_min:g} mL/min cannot be set while "
                                f"pumping: in {self.rate_units}, the running pump's unit, it "
                                f"reads {args} (the pump cannot change units while it runs)")
        return args

    def set_direction(self, infuse: bool) -> None:
        """Infuse or withdraw, verified."""
        want = "INF" if infuse else "WDR"
        self.command("DIR", want)
        got = self.query("DIR", _direction)
        if got != want:
            raise HardwareError(f"{self.name}: setpoint direction did not stick: sent {want}, "
                                f"read back {got}")

    def start(self) -> None:
        """Run (continuous volume), verified by the status.

        ``RUN`` answered by an alarm (a stall as it starts) is raised, after one ``STP``: the
        manual says the alarm "must be acknowledged before ... the pump is started", which
        reads as ``RUN`` not executed, but it does not say so; a pump that did start on the
        acknowledging ``RUN`` is stopped rather than left running behind the alarm.

        Raises:
            PumpAlarm: ``RUN`` (or ``VOL``) was answered by an alarm other than a reset.
            HardwareError: The pump does not pump after ``RUN``, or did not answer.
        """
        self.command("VOL", "0")
        try:
            reply = self.command("RUN")
        except PumpAlarm:
            with contextlib.suppress(HardwareError):  # best effort: the alarm is the news
                self.command("STP", raise_alarm=False)
            raise
        if not reply.pumping:
            reply = self.command("")
        if not reply.pumping:
            raise HardwareError(f"{self.name}: RUN sent but status is {reply.status!r}")

    def stop(self) -> None:
        """Stop, verified by the status (an alarm on the way is acknowledged, not raised).

        An alarm reply means the pump acknowledged the alarm instead of executing ``STP``
        (manual: "the alarm must be acknowledged before any data is changed"), so ``STP`` is
        sent once more; the alarm itself stays with :meth:`take_alarms`. A pump that answers
        ``P`` (paused) gets one more ``STP``: the manual leaves open whether one ``STP`` pauses
        or stops the program, and a paused pump is not stopped (``DIA`` is accepted "only when
        stopped", so bring-up failed on a pump whose ``STP`` pauses). A pump still pumping in
        the reply to ``STP`` is asked its status, and a ``P`` there gets ``STP`` too: the
        manual does not say whether a reply's status is the state before or after the
        command, and under both open readings at once (the status from before, ``STP``
        pauses) the status query is the first to show the pause.

        Raises:
            HardwareError: The pump still pumps after ``STP`` and a status query, or is still
                paused after the last ``STP``.
        """
        reply = self.command("STP", raise_alarm=False)
        for _ in range(STOP_STEPS):
            if reply.alarm or reply.status == "P":
                reply = self.command("STP", raise_alarm=False)
            elif reply.pumping:
                reply = self.command("", raise_alarm=False)
                if reply.pumping:
                    break
            else:
                return
        if reply.alarm:  # an alarm stops the pump: one that keeps coming is not a failed stop
            return
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

    def rate_answer_ml_min(self) -> Answer:
        """:meth:`rate_read_ml_min` with the answer's resolution, mL/min.

        The supervisor's rate check holds the rate to the digits the pump writes, as the
        read-back does (:class:`~autolab.hardware.base.AnswersRateDigits`).
        """
        return self.query("RAT", newera.parse_rate_answer)[0]

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


def _basic_framed(frame: bytes) -> bool:
    """Whether a New Era reply (STX and at least one byte more) is Basic-framed.

    After STX a Basic reply has an address digit, a Safe-mode packet its length byte.
    """
    return chr(frame[1]).isdigit()


def _plain_reply(frame: bytes) -> bool:
    """Whether ``frame`` is a New Era reply, in either framing, with no alarm and no error.

    Anything else read as the reply to ``SAF n`` leaves its execution unknown: an alarm reply
    acknowledges without executing, and a Safe-mode auto-alarm packet read in its place leaves
    the real reply on the line. Where a pump in Safe mode frames its replies like Basic ones,
    that late reply could pass for a Basic pump's answer to the next request.
    """
    if len(frame) < 2:
        return False
    try:
        reply = (newera.parse_basic(frame) if _basic_framed(frame)
                 else newera.parse_safe(frame))
    except newera.PumpProtocolError:
        return False
    return not reply.alarm and reply.error is None


def _any_framer(ser: SerialLike) -> bytes:
    """One New Era reply in either framing (:func:`_basic_framed`)."""
    head = read_exact(ser, 2)
    if head[0] != newera.STX:
        raise ProtocolError(f"reply {head!r} does not start with STX")
    if _basic_framed(head):
        return head + read_until_byte(ser, bytes([newera.ETX]))
    return head + read_exact(ser, head[1] - 1)


# ============================================================================= heaters
#: How long a cut waits for the working output to follow, s (a few control cycles).
CUT_CONFIRM_S = 1.0


#: Status-word faults a Eurotherm 3200 is refused for at bring-up (each is a hard trip later).
CONNECT_REFUSED = {"sensor_break": "bit 5, the PV is meaningless",
                   "loop_break": "bit 6, the output saturated without the PV responding",
                   "over_range": "bit 10, the PV beyond the input range"}


class Eurotherm3200(ModbusRegisters):
    """Eurotherm 3200 controller of one heater block, Modbus RTU through minimalmodbus.

    Writes only the remote setpoint (register 26; never the EEPROM target SP) and lets the
    controller ramp at its own SP rate limit.

    The 16-bit registers carry integers scaled by the instrument's display resolution (manual:
    "decimal point per display resolution"), so ``decimals`` must match the controller's
    configuration: 234.5 °C reads 2345 with one decimal and 234 (or 235) with none. Output
    power (register 30) is in % with one decimal whatever the temperature resolution.

    A Modbus exception response (illegal function, address or value; device failure) is the
    controller refusing the request: it is raised at once, naming the register, never retried
    and never taken for a reading. Only "slave busy" (code 6), timeouts and garbled frames
    are retried, a bounded number of times.

    Args:
        transport: The RS-485 bus (shared by the controllers on it).
        name: Device name.
        address: Modbus slave address, 1-247 (0 is the broadcast address: no slave answers
            it, so nothing written there could be read back).
        ramp_c_per_min: SP rate limit given to the controller at connect, °C/min.
        limits: Setpoint limits (``max_temperature_c``, ``max_ramp_c_per_min``).
        decimals: Decimal places of the controller's temperature registers (0-2).

    Raises:
        ConfigError: An address outside 1-247 or decimals outside 0-2.
    """

    def __init__(self, transport: Transport, name: str, *, address: int = 1,
                 ramp_c_per_min: float = 10.0, limits: Limits | None = None,
                 decimals: int = eu.DECIMALS) -> None:
        if not 1 <= address <= 247:
            raise ConfigError(f"{name}.address={address}: expected a Modbus slave address "
                              f"1-247 (0 is broadcast: no controller answers it)")
        if not 0 <= decimals <= 2:
            raise ConfigError(f"{name}.decimals={decimals}: expected 0, 1 or 2 (the "
                              f"controller's display resolution)")
        # Nothing we read of HA028651 names the 3200's write function: minimalmodbus's 16
        # first, 6 once the controller refused 16 (see ModbusRegisters._write).
        super().__init__(transport, name, address=address, decimals=decimals,
                         write_fc=eu.WRITE_MULTIPLE)
        self.ramp_c_per_min = ramp_c_per_min
        self.limits = limits or Limits()

    def connect(self, standby_c: float = 25.0) -> None:
        """Select the remote setpoint and set the controller's ramp rate (verified).

        Also writes the local target setpoint once to ``standby_c``: if the host stops
        refreshing the remote setpoint (crash, cable), the controller falls back to it and
        cools the block by itself. One write per connect is far inside the EEPROM budget.

        Raises:
            HardwareError: The controller is in manual mode (status bit 4): it would accept
                every setpoint and follow none, so it is refused before anything is written.
                So is one whose status word reports a sensor break, a loop break or a PV
                over range, naming it: the supervisor trips hard on each at its first poll,
                and the connect used to write the setpoints and allow the output (OP.HI
                100 %) first.
        """
        status = self.status()
        if status.manual_mode:
            raise HardwareError(f"{self.name}: controller at address {self.address} is in "
                                f"manual mode (status word, register 75, bit 4): its output "
                                f"is held and follows no setpoint; switch it to auto (A/M "
                                f"key) and connect again")
        if status.fault in CONNECT_REFUSED:
            raise HardwareError(f"{self.name}: controller at address {self.address} reports "
                                f"{status.fault} (status word, register 75: "
                                f"{CONNECT_REFUSED[status.fault]}) at bring-up, before "
                                f"anything was written; check the sensor and heater wiring")
        self._write(eu.TARGET_SP, standby_c)
        check_setpoint(self.name, "ramp_c_per_min", self.ramp_c_per_min, low=0.0,
                       high=self.limits.max_ramp_c_per_min, unit="°C/min")
        # the remote SP first: a controller switched to remote follows whatever register 26
        # still holds (the last session's setpoint, if it was not power-cycled)
        self._write_remote_sp(standby_c)
        self._write(eu.LOCAL_REMOTE, 1, 0)
        check_sticks(self.name, "remote_sp_select", 1, self._read(eu.LOCAL_REMOTE, 0), 0.0)
        self._write(eu.SP_RATE, self.ramp_c_per_min)
        check_sticks(self.name, "ramp_c_per_min", self.ramp_c_per_min, self._read(eu.SP_RATE), 1e-3)
        self._set_output_high(100.0)  # output allowed again (after a cut)

    def ping(self) -> str:
        """PV and status, with the controller's active alarms (shown, not judged)."""
        status = self.status()
        alarms = f", alarm {', '.join(map(str, status.alarms))}" if status.alarms else ""
        return (f"{self.name}: PV {self.temperature_c():.1f} °C, status "
                f"{status.fault or 'ok'}{alarms}")

    def set_temperature_c(self, setpoint_c: float) -> None:
        """Write the remote setpoint, °C, and read it back."""
        check_setpoint(self.name, "temperature_c", setpoint_c, low=0.0,
                       high=self.limits.max_temperature_c, unit="°C")
        self._write_remote_sp(setpoint_c)

    def _write_remote_sp(self, setpoint_c: float) -> None:
        """Write register 26 rounded to the resolution; read back within 0.6 of a step.

        The tolerance is absolute: a relative one let a controller that clamped 250 °C to
        its range high of 240 °C pass (6 % of 250 at one decimal).
        """
        setpoint_c = round(setpoint_c, self.decimals)
        self._write(eu.REMOTE_SP, setpoint_c)
        check_sticks(self.name, "temperature_c", setpoint_c, self._read(eu.REMOTE_SP),
                     0.6 * 10.0 ** -self.decimals, relative=False)

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
        return eu.decode_status(self._read_word(eu.STATUS,
                                                "read of the status word (register 75)"))

    def fault(self) -> str:
        """Worst fault or ``""``."""
        return self.status().fault

    def cut_output(self) -> None:
        """Output high limit to 0 % (register 30), read back: the heater is off at once.

        Read back because the controller keeps OP.HI at or above OP.LO (register 31): a cut it
        clamped must fail the shutdown step (a person switches the mains off), never pass.

        A controller in manual mode also gets its manual output (register 3) set to 0 %: the
        manual does not say whether the output limits bound a manual output, so the cut does
        not rely on it (one status read more; in auto nothing else is written). Nor does it
        say whether they bound the forced output of a sensor break (F.OP, 84), which is
        configuration: in manual or on a sensor break the working output (4) must then read
        0 %, else the cut fails (a person switches the mains off).

        Raises:
            HardwareError: OP.HI or MAN.OP did not stick, or the output is still on.
        """
        self._set_output_high(0.0)
        status = self.status()
        if status.manual_mode:
            self._write(eu.MANUAL_OP, 0.0, eu.OP_DECIMALS)
            check_sticks(self.name, "manual_output_pct", 0.0,
                         self._read(eu.MANUAL_OP, eu.OP_DECIMALS), 0.06, relative=False)
        if status.manual_mode or status.sensor_break:
            self._confirm_output_off(status.fault)

    def _confirm_output_off(self, why: str) -> None:
        """Working output (4) at or below 0 % within :data:`CUT_CONFIRM_S` (a control cycle).

        Raises:
            HardwareError: Still heating: the output limits do not bound this output.
        """
        deadline = time.monotonic() + CUT_CONFIRM_S
        while (out_pct := self._read(eu.WORKING_OP, eu.OP_DECIMALS)) > 0.05:
            if time.monotonic() > deadline:
                raise HardwareError(f"{self.name}: output still {out_pct:g} % after the cut "
                                    f"(OP.HI 0 %) with the controller in {why}: its limits "
                                    f"do not bound that output")
            time.sleep(0.1)

    def _set_output_high(self, pct: float) -> None:
        self._write(eu.OP_HI, pct, eu.OP_DECIMALS)
        check_sticks(self.name, "output_high_pct", pct, self._read(eu.OP_HI, eu.OP_DECIMALS),
                     0.06, relative=False)


# ============================================================================= stirrers
class IKAStirrer:
    r"""IKA stirrer (NAMUR protocol), one per port.

    Replies are read as lines with either ending, so ``value channel\r\n``,
    ``value channel \r\n`` (the IKA manuals' "blank CR LF") and a bare CR or LF all parse.
    ``STATUS_4`` is not in every unit's command set: :meth:`connect` asks once, and a unit
    that does not answer it is driven without it (start and stop are then checked by the set
    speed read back, and a blocked motor is not detected).

    Args:
        transport: Its port.
        name: Device name.
        limits: ``max_speed_rpm``.
    """

    def __init__(self, transport: Transport, name: str, *, limits: Limits | None = None) -> None:
        self.transport = transport
        self.name = name
        self.limits = limits or Limits()
        #: Whether the unit answers ``STATUS_4`` (found by :meth:`connect`).
        self.has_status = True
        #: The speed last set and verified, rpm, while commanded on (``None``: commanded off).
        self.commanded_rpm: float | None = None
        self._set_rpm = 0.0

    def _query(self, command: str, attempts: int | None = None) -> float:
        frame = self.transport.exchange(
            self.name, ika.encode(command), read_line,
            retry_garbled(ika.parse_value), attempts=attempts)
        return ika.parse_value(frame)

    def _send(self, command: str, value: float | None = None) -> None:
        self.transport.exchange(self.name, ika.encode(command, value), None)

    def connect(self) -> None:
        """Check it answers, and whether it knows ``STATUS_4``."""
        self.ping()
        try:
            self._query("STATUS_4", attempts=1)
            self.has_status = True
        except HardwareError:
            self.has_status = False

    def ping(self) -> str:
        """Actual speed."""
        return f"{self.name}: {self.speed_rpm():g} rpm"

    def set_speed_rpm(self, rpm: float) -> None:
        """Set and read back the speed setpoint, rpm."""
        check_setpoint(self.name, "speed_rpm", rpm, low=0.0,
                       high=self.limits.max_speed_rpm, unit="rpm")
        self._send("OUT_SP_4", rpm)
        check_sticks(self.name, "speed_rpm", rpm, self._query("IN_SP_4"), 1e-3)
        self._set_rpm = rpm
        if self.commanded_rpm is not None:
            self.commanded_rpm = rpm

    def start(self) -> None:
        """Motor on (verified with ``STATUS_4`` where the unit has it)."""
        self._send("START_4")
        if self.has_status and self._query("STATUS_4") != 1:
            raise HardwareError(f"{self.name}: START_4 sent but the motor is not running")
        if not self.has_status:
            self._query("IN_SP_4")  # at least the unit is there and heard us
        self.commanded_rpm = self._set_rpm

    def stop(self) -> None:
        """Motor off (verified with ``STATUS_4`` where the unit has it)."""
        self.commanded_rpm = None
        self._send("STOP_4")
        if self.has_status and self._query("STATUS_4") == 1:
            raise HardwareError(f"{self.name}: STOP_4 sent but the motor still runs")
        if not self.has_status:
            self._query("IN_SP_4")

    def speed_rpm(self) -> float:
        """Actual speed, rpm."""
        return self._query("IN_PV_4")

    def blocked(self) -> bool:
        """Whether the motor reports blocked (``STATUS_4`` = -1; False without ``STATUS_4``)."""
        return self.has_status and self._query("STATUS_4") < 0

    def check(self) -> str:
        """The motor against the last command (see :class:`~.base.Watched`).

        A stirrer commanded on that reports stopped (0: someone pressed its key) or blocked
        (-1) no longer mixes as the conditions assume. Judged on ``STATUS_4`` only, not the
        speed reading, which lags a start; a unit without ``STATUS_4`` is only pinged.
        """
        if self.commanded_rpm is None or not self.has_status:
            self.speed_rpm()  # it answers
            return ""
        status = self._query("STATUS_4")
        if status == 1:
            return ""
        what = "blocked" if status < 0 else "stopped"
        return (f"motor {what} (STATUS_4 = {status:g}), commanded on at "
                f"{self.commanded_rpm:g} rpm")


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
        #: The position last moved to and verified (``None`` before the first move).
        self.commanded: int | None = None
        self._lock = threading.RLock()  # a check never sees a move half-way

    def connect(self) -> None:
        """Check the number of positions matches the devices file."""
        frame = self.transport.exchange(self.name, vici.encode("NP"),
                                        read_line,
                                        retry_garbled(vici.parse_count))
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
                                        read_line,
                                        retry_garbled(vici.parse_position))
        return vici.parse_position(frame)

    def move(self, position: int) -> None:
        """Move and poll ``CP`` until the valve reports ``position``."""
        check_setpoint(self.name, "position", position, low=1,
                       high=self.positions, unit="")
        with self._lock:
            self.commanded = None
            self.transport.exchange(self.name, vici.encode("GO", position), None)
            deadline = time.monotonic() + self.move_timeout_s
            got = self.position()
            while got != position and time.monotonic() < deadline:
                time.sleep(0.02)
                got = self.position()
            if got != position:
                raise HardwareError(f"{self.name}: setpoint position did not stick: sent "
                                    f"{position}, read back {got}")
            self.commanded = position

    def check(self) -> str:
        """The position against the last verified move (see :class:`~.base.Watched`)."""
        with self._lock:
            got = self.position()
            if self.commanded is not None and got != self.commanded:
                return f"position {got}, commanded {self.commanded}"
            return ""


# ============================================================================= spectrometer
def _asp1_line(transport: Transport, name: str, command: str,
               arg: str | float | None = None) -> bytes:
    # a setting must be answered by OK: anything else is a stale reply -> retried
    parse = spectro.check_ok if arg is not None else spectro.parse_line
    return transport.exchange(name, spectro.encode(command, arg),
                              read_line, retry_garbled(parse))


class _LightState:
    """The ASP-1 light path (source, shutter, cell) as last set, and its check.

    ``SRC?`` answers the source that is lit, so a lamp or LED that fails reads ``OFF``; the
    supervisor's check finds it (and a shutter or cell selector that moved) mid-experiment.
    """

    def __init__(self, name: str, line: Callable[[str, str | None], bytes]) -> None:
        self.name = name
        self.line = line
        self.expected: dict[str, str] = {}  # command -> value last set and verified
        self.lock = threading.RLock()

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        with self.lock:
            self.expected = {}
            want = {"SRC": source, "SHUT": "OPEN" if shutter_open else "CLOSE", "CELL": cell}
            for cmd, value in want.items():
                spectro.check_ok(self.line(cmd, value))
                got = spectro.parse_line(self.line(cmd + "?", None))
                if cmd == "SRC" and value != "OFF" and got == "OFF":
                    raise DeviceFault(self.name, f"light source {value} did not light (SRC? "
                                                 f"reads OFF): the lamp or LED has failed; "
                                                 f"spectra would be dark, experiment invalid")
                if got != value:
                    raise HardwareError(f"{self.name}: setpoint {cmd} did not stick: sent "
                                        f"{value}, read back {got}")
            self.expected = want

    def check(self) -> str:
        with self.lock:
            if not self.expected:
                spectro.parse_line(self.line("SRC?", None))  # it answers
                return ""
            wrong = []
            for cmd, value in self.expected.items():
                got = spectro.parse_line(self.line(cmd + "?", None))
                if got != value:
                    wrong.append(f"{cmd} reads {got}, set {value}")
            return "; ".join(wrong)


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
        self._light = _LightState(name, self._line)

    def _line(self, command: str, arg: str | float | None = None) -> bytes:
        return _asp1_line(self.transport, self.name, command, arg)

    def check(self) -> str:
        """Source, shutter and cell against the last configuration (a failed lamp: ``OFF``)."""
        return self._light.check()

    def connect(self) -> None:
        """Check it answers."""
        self.ping()

    def ping(self) -> str:
        """Identity string."""
        return f"{self.name}: {spectro.parse_line(self._line('*IDN?'))}"

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        """Source, shutter and cell, each read back."""
        self._light.configure(source=source, shutter_open=shutter_open, cell=cell)


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
        self._light = _LightState(name, self._line)

    def check(self) -> str:
        """Source, shutter and cell against the last configuration (a failed lamp: ``OFF``)."""
        return self._light.check()

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
        check_sticks(self.name, "integration_ms", integration_ms,
                float(spectro.parse_line(self._line("INT?"))), 1e-6)

    def configure(self, *, source: str, shutter_open: bool, cell: str) -> None:
        """Source, shutter and cell, each read back."""
        self._light.configure(source=source, shutter_open=shutter_open, cell=cell)

    def acquire(self) -> NDArray[np.float64]:
        """One frame, raw counts ``(P,)``, and the light path read back after it.

        A source that went out after :meth:`configure` checked it reads dark; found by neither
        that check nor (on the last lit frame of an experiment, before the dark frame sets the
        source ``OFF``) the supervisor, the dark frame went into the analysis as chemistry (a
        dark dye frame: "no usable emission", a failed experiment told to the optimizer).

        Raises:
            DeviceFault: The source, shutter or cell is not as set after the frame
                (:func:`~autolab.hardware.base.check_light_after_frame`).
        """
        def framer(ser: SerialLike) -> bytes:
            head = read_exact(ser, 6)
            if head.startswith(b"ERR"):
                rest = bytes(ser.read_until(b"\n"))
                raise DeviceRefused(f"{self.name}: {head + rest!r}")
            return head + read_exact(ser, spectro.frame_length(head) - 6)
        frame = self.transport.exchange(self.name, spectro.encode("ACQ"), framer,
                                        retry_garbled(spectro.decode_frame))
        counts = spectro.decode_frame(frame)
        if self._wl.size and counts.size != self._wl.size:
            raise HardwareError(f"{self.name}: frame has {counts.size} pixels, expected "
                                f"{self._wl.size}")
        check_light_after_frame(self.name, self._light.check())
        return counts
