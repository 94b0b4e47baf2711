"""Chemyx Fusion syringe pumps (kind ``chemyx``).

The driver speaks :mod:`autolab.hardware.protocols.chemyx` over one
:class:`~autolab.hardware.transport.Transport` (one pump per RS-232 line; the two channels of a
dual-channel pump share it) and satisfies the :class:`~autolab.hardware.base.Pump` capability as
the New Era driver does: limits checked before a byte is sent, every setting read back.

What differs from New Era, and why the driver is built so:

* A set is answered with the value the pump took (``set rate 1.5`` -> ``rate = 1.5``); the
  knowledge base: a different value means the command's was outside the limits. So an echo
  that differs is the pump refusing (:class:`~autolab.hardware.transport.DeviceRefused`,
  never retried), and a reply without the echo line is malformed (retried). Each setting is
  then also read back from ``view parameter``.
* The direction is the sign of the target volume (``set volume -5`` withdraws); the driver sets
  the target to the syringe's volume, the most one run can move. The pump stops by itself when
  it is reached: the supervisor then finds it idle (``pump_idle``).
* ``pump status`` 4 is a stall: alarm ``S``, once per stall. It does not say the direction, so
  the status letter of a running pump (``I``/``W``) is the direction last set and read back.
* ``dispensed volume`` is one number; the manual names no command that clears it and does not
  say whether ``start`` restarts it. :meth:`ChemyxPump.clear_dispensed` keeps the reading as an
  offset, and :meth:`ChemyxPump.start` drops the offset when the reading right after the start is
  below it (the pump restarted its count): both readings give the run's volume.
* No hardware watchdog: nothing like New Era's Safe mode is documented, so this driver is not
  :class:`~autolab.hardware.base.Watchdogged` and a host that dies leaves the pump running.

Devices-file kind ``chemyx`` (registered here)::

    pump_cl: {kind: chemyx, port: pump_cl_line, role: halide_cl, reagent: indium_chloride,
              syringe_ml: 50, diameter_mm: 26.6}          # channel 0: a single-channel pump
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pydantic import Field

from autolab.exceptions import HardwareError
from autolab.hardware.base import Device, PumpState
from autolab.hardware.devices import SyringePumpSpec
from autolab.hardware.drivers import PumpAlarm
from autolab.hardware.limits import (
    Answer,
    Limits,
    check_answer_sticks,
    check_rate_sticks,
    check_setpoint,
    matches_answer,
)
from autolab.hardware.protocols import chemyx
from autolab.hardware.registry import BuildContext, DeviceKind, register_kind
from autolab.hardware.transport import (
    DeviceRefused,
    ReplyTimeout,
    SerialLike,
    Transport,
    retry_garbled,
)

#: Longest reply read, bytes (``help`` is the longest answer).
MAX_REPLY_BYTES = 8192
#: ``pump status`` -> the status letter the rest of the rig reads (running: by direction).
STATUS_LETTER = {0: "S", 2: "P", 3: "T", 4: "A"}
#: Units the driver sets (``set units 0``: mL/min, volumes in mL).
UNITS_ML_MIN = 0
#: How far an echoed or read-back setting may differ beyond the digits it is written with,
#: relative: the pump's own rounding of a value it writes with more digits than it keeps.
ECHO_REL_TOL = 2e-3
#: Syringe diameters the Fusion series takes, mm (the knowledge base's range).
DIAMETER_RANGE_MM = (0.103, 40.0)


class ChemyxPump:
    """A Chemyx Fusion pump, or one channel of a dual-channel one.

    Args:
        transport: The pump's line.
        name: Device name (log, errors).
        channel: 0 for a single-channel pump, 1 or 2 for a channel of a dual-channel pump.
        diameter_mm: Syringe inner diameter, mm.
        syringe_ml: Syringe volume, mL (also the target volume of each run).
        limits: Setpoint limits.
    """

    def __init__(self, transport: Transport, name: str, *, channel: int = 0,
                 diameter_mm: float = 26.6, syringe_ml: float = 50.0,
                 limits: Limits | None = None) -> None:
        self.transport = transport
        self.name = name
        self.channel = channel
        self.diameter_mm = diameter_mm
        self.syringe_ml = syringe_ml
        self.limits = limits or Limits()
        self.alarms: list[str] = []  #: every alarm the pump reported, oldest first
        self._unreported: list[str] = []
        self._alarm_lock = threading.Lock()
        self.infuse = True  #: the direction last set and read back
        self.status_code = -1  #: the last ``pump status`` answer
        self._offset_ml = 0.0  # the dispensed reading at the last clear

    # --------------------------------------------------------------------- wire
    @staticmethod
    def _framer(ser: SerialLike) -> bytes:
        """One reply: bytes up to the ``>`` prompt at the start of a line."""
        data = b""
        while len(data) < MAX_REPLY_BYTES:
            byte = bytes(ser.read(1))
            if not byte:
                err = ReplyTimeout(f"no '>' prompt after {data!r}")
                err.partial = data  # type: ignore[attr-defined]
                raise err
            data += byte
            if chemyx.reply_complete(data):
                return data
        raise chemyx.ChemyxProtocolError(f"no '>' prompt in {len(data)} bytes")

    def command(self, command: str,
                check: Callable[[chemyx.ChemyxReply], object] | None = None,
                ) -> chemyx.ChemyxReply:
        """Send one command; ``check`` validates the reply.

        What ``check`` raises is retried as a garbled reply, except :class:`DeviceRefused`.

        Raises:
            DeviceRefused: ``check`` found the pump refusing.
            HardwareError: No valid reply after the transport's retries.
        """
        request = chemyx.encode_command(self.channel, command)

        def parse(frame: bytes) -> chemyx.ChemyxReply:
            reply = chemyx.parse_reply(frame, request)
            if check is not None:
                check(reply)
            return reply

        frame = self.transport.exchange(self.name, request, self._framer, retry_garbled(parse))
        return chemyx.parse_reply(frame, request)

    def _set(self, key: str, value: float, *, size_only: bool = False) -> None:
        """``set <key> <value>``, verified by the echo ``<key> = <value>``.

        The echo is held to the digits it is written with (the knowledge base does not say
        how many decimals a set value keeps): ``rate = 0.012`` for 0.01234 is the value sent,
        ``rate = 5`` for 6 (a clamp to the limit) is not
        (:func:`~autolab.hardware.limits.matches_answer`). ``size_only``: the echo is compared
        without its sign (the knowledge base answers ``set volume ±x`` with ``volume = x``;
        the sign is the caller's to read back).

        Raises:
            DeviceRefused: The pump echoed another value (the manual: outside its limits).
        """
        text = chemyx.format_number(value)

        def echoed(reply: chemyx.ChemyxReply) -> None:
            got = chemyx.parse_answer(reply.value(key), f"echo of set {key}")
            sent = abs(value) if size_only else value
            took = Answer(abs(got.value), got.step) if size_only else got
            if not matches_answer(sent, took, rel=ECHO_REL_TOL):
                raise DeviceRefused(f"{self.name}: set {key} {text} refused: the pump took "
                                    f"{key} = {got.value:g} (outside its limits)")
        self.command(f"set {key} {text}", echoed)

    def _parameters(self) -> chemyx.ChemyxReply:
        """``view parameter`` (unit, dia, rate, volume, ... lines), all numbers checked."""
        def numbers(reply: chemyx.ChemyxReply) -> None:
            for key in ("unit", "dia", "rate", "volume"):
                chemyx.parse_number(reply.value(key), f"view parameter {key}")
        return self.command("view parameter", numbers)

    def _status(self) -> int:
        """``pump status`` (0-4); a new stall (4 after another code) is kept as alarm ``S``."""
        reply = self.command("pump status", lambda r: chemyx.parse_status(r.text))
        code = chemyx.parse_status(reply.text)
        if code == 4 and self.status_code != 4:
            with self._alarm_lock:
                self.alarms.append("S")
                self._unreported.append("S")
        self.status_code = code
        return code

    def take_alarms(self) -> tuple[str, ...]:
        """Alarms reported since the last call, oldest first (each handed out once)."""
        with self._alarm_lock:
            out = tuple(self._unreported)
            self._unreported.clear()
        return out

    # --------------------------------------------------------------------- API
    def connect(self) -> None:
        """Bring the pump into a known state: stopped, units mL/min, diameter, no delay, infuse.

        A start delay left from the panel (``set delay``; ``start`` then answers ``Pump
        delay…``, status 3) would hold every run back while the delivery check counts from
        the start, so one that ``view parameter`` shows is set to 0 (echo-verified). A pump
        whose ``view parameter`` has no delay line is left as it is.
        """
        self.ping()
        self.stop()
        self._set("units", UNITS_ML_MIN)
        self._set("diameter", self.diameter_mm)
        params = self._parameters()
        dia = chemyx.parse_answer(params.value("dia"), "dia")
        check_answer_sticks(self.name, "diameter_mm", self.diameter_mm, dia, rel=1e-3)
        delay = params.value("delay")
        if delay is not None and chemyx.parse_number(delay, "delay") != 0:
            self._set("delay", 0)
        self.set_direction(True)
        self.take_alarms()

    def ping(self) -> str:
        """The pump status (the manual names no version query)."""
        return f"{self.name}: {chemyx.STATUS[self._status()]}"

    def set_rate_ml_min(self, rate_ml_min: float) -> None:
        """Set the rate (mL/min), verified by its echo and read back."""
        check_setpoint(self.name, "rate_ml_min", rate_ml_min, low=0.0,
                       high=self.limits.max_rate_ml_min, unit="mL/min")
        self._set("rate", rate_ml_min)
        check_rate_sticks(self.name, rate_ml_min, self.rate_answer_ml_min())

    def set_direction(self, infuse: bool) -> None:
        """Infuse or withdraw: the sign of the target volume (the syringe's volume).

        The set's echo is checked for the size only (whether it keeps the sign is not said);
        the sign is read back from ``view parameter``: a pump that shows it nowhere cannot
        be verified to withdraw, and is refused.
        """
        target = self.syringe_ml if infuse else -self.syringe_ml
        self._set("volume", target, size_only=True)
        read = chemyx.parse_number(self._parameters().value("volume"), "volume")
        if (read > 0) != infuse:
            raise HardwareError(f"{self.name}: setpoint direction did not stick: sent volume "
                                f"{target:g}, read back {read:g}")
        self.infuse = infuse

    def start(self) -> None:
        """Start, verified by ``pump status`` 1 (running).

        Raises:
            PumpAlarm: The pump reports a stall.
            HardwareError: It reports anything else.
        """
        self.command("start")
        code = self._status()
        if code == 4:
            raise PumpAlarm(self.name, "S")
        if code != 1:
            raise HardwareError(f"{self.name}: start sent but pump status is {code} "
                                f"({chemyx.STATUS[code]})")
        if self._read_dispensed() < self._offset_ml - 1e-6:
            self._offset_ml = 0.0  # the pump restarted its count at the start

    def stop(self) -> None:
        """Stop, verified by ``pump status`` (paused or delayed gets a second ``stop``)."""
        self.command("stop")
        code = self._status()
        if code in (1, 2, 3):
            self.command("stop")
            code = self._status()
        if code in (1, 3):
            raise HardwareError(f"{self.name}: stop sent but pump status is {code} "
                                f"({chemyx.STATUS[code]})")

    def state(self) -> PumpState:
        """``pump status`` as a status letter, and every alarm since the last call."""
        code = self._status()
        alarms = self.take_alarms()
        letter = ("I" if self.infuse else "W") if code == 1 else STATUS_LETTER[code]
        return PumpState(pumping=code == 1, alarm=alarms[0] if alarms else "", status=letter,
                         alarms=alarms)

    def rate_read_ml_min(self) -> float:
        """The rate ``view parameter`` reports, in mL/min (whatever units the pump is in)."""
        return self.rate_answer_ml_min().value

    def rate_answer_ml_min(self) -> Answer:
        """:meth:`rate_read_ml_min` with the resolution the pump writes it to, mL/min."""
        reply = self._parameters()
        unit = int(chemyx.parse_number(reply.value("unit"), "unit"))
        if unit not in chemyx.UNITS:
            raise HardwareError(f"{self.name}: view parameter unit = {unit}: expected 0-3")
        got = chemyx.parse_answer(reply.value("rate"), "rate")
        scale = chemyx.UNITS[unit][0]
        return Answer(got.value * scale, got.step * scale)

    def _read_dispensed(self) -> float:
        """The pump's dispensed volume, mL (a unit in the answer wins; else mL, units 0)."""
        reply = self.command("dispensed volume",
                             lambda r: chemyx.parse_number(r.text, "dispensed volume"))
        value = chemyx.parse_number(reply.text, "dispensed volume")
        return abs(value) * chemyx.volume_unit_ml(reply.text, chemyx.UNITS[UNITS_ML_MIN][1])

    def dispensed_ml(self) -> tuple[float, float]:
        """(infused, withdrawn) since the last clear, mL: the one counter, by direction."""
        moved = max(self._read_dispensed() - self._offset_ml, 0.0)
        return (moved, 0.0) if self.infuse else (0.0, moved)

    def clear_dispensed(self) -> None:
        """Take the reading now as zero (the manual names no command that clears it)."""
        self._offset_ml = self._read_dispensed()


# ============================================================================= kind
class ChemyxSpec(SyringePumpSpec):
    """Devices-file entry of a Chemyx Fusion pump (kind ``chemyx``).

    Attributes:
        port: Name of its line in ``ports`` (one pump per line: Chemyx pumps do not chain).
        channel: 0 for a single-channel pump; 1 or 2 for a channel of a dual-channel pump
            (both channels name the same port).
        reagent: What the pump delivers (reagent totals are kept by this name).
        syringe_ml: Syringe volume, mL.
        diameter_mm: Syringe inner diameter, mm (0.103-40 on the Fusion series).
    """

    channel: int = Field(default=0, ge=0, le=2)


def _build(name: str, d: ChemyxSpec, ctx: BuildContext) -> Device:
    return ChemyxPump(ctx.transport(d.port), name, channel=d.channel, diameter_mm=d.diameter_mm,
                      syringe_ml=d.syringe_ml, limits=d.limits)


def _check(name: str, d: ChemyxSpec) -> None:
    """The Fusion series' syringe range (the pump would echo another diameter)."""
    low, high = DIAMETER_RANGE_MM
    if not low <= d.diameter_mm <= high:
        raise ValueError(f"devices.{name}.diameter_mm={d.diameter_mm}: expected {low}-{high} "
                         f"(Chemyx Fusion syringe range)")


#: Line speed when the port gives none, Bd: 9600 is the speed every Fusion model but the
#: Nanojet and OEM boards (38400 only) has; the speed is set in the pump's menu.
DEFAULT_BAUD = 9600

register_kind(DeviceKind("chemyx", "pump", ChemyxSpec, _build, DEFAULT_BAUD,
                         "Chemyx Fusion syringe pump (one per line, or one channel of a "
                         "dual-channel pump; no hardware watchdog)", check_entry=_check))
