"""Harvard Apparatus Pump 11 Elite / PHD ULTRA syringe pumps (kind ``harvard``).

The driver speaks :mod:`autolab.hardware.protocols.harvard` over one
:class:`~autolab.hardware.transport.Transport` (a daisy chain shares it) and satisfies the
:class:`~autolab.hardware.base.Pump` capability as the New Era driver does: every setpoint is
checked against the limits, sent, read back and compared; an error reply (``Command error``,
``Argument error``) is the pump refusing and is never retried; a garbled or misaddressed reply
is retried, then named in a :class:`~autolab.exceptions.HardwareError`.

What differs from New Era, and why the driver is built so:

* The state is the reply's prompt: ``>`` infusing, ``<`` withdrawing, ``:`` idle, ``*``
  stalled, ``T*`` target reached. A stall is reported as alarm ``S`` (the code the supervisor
  knows) once per stall, when a ``*`` follows another prompt: the pump keeps showing ``*``, and
  the manual says nothing of a command that acknowledges it.
* A pump "does not send anything when stalled unless polled", and without poll mode it may send
  a prompt unasked: a ``*`` among the bytes the transport throws away is kept as a stall too,
  and so is a lone ``*`` read where a query's answer was due (the answer is then read on, so
  replies stay paired with their requests).
* The manuals differ on the address form (``12irat``/``12:irat``) and the rate units
  (``u/m``/``ul/min``) and do not say how an echo is written: the driver finds the form a pump
  takes and reads a reply with its echo in any form (see :meth:`HarvardPump.connect`).
* There is no direction setting: ``irun``/``wrun`` run one way, ``irate``/``wrate`` hold one rate
  each. :meth:`HarvardPump.set_direction` chooses which the next rate and run use; the direction
  is verified by the prompt the run answers with.
* No hardware watchdog: the manual has nothing like New Era's Safe mode, so this driver is not
  :class:`~autolab.hardware.base.Watchdogged` and a host that dies leaves the pump running.

Devices-file kind ``harvard`` (registered here)::

    pump_cl: {kind: harvard, port: pumps, address: 0, role: halide_cl,
              reagent: indium_chloride, syringe_ml: 50, diameter_mm: 26.6}
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import TypeVar

from pydantic import Field

from autolab.exceptions import ConfigError, HardwareError
from autolab.hardware.base import Device, PumpState
from autolab.hardware.devices import SyringePumpSpec
from autolab.hardware.drivers import PumpAlarm
from autolab.hardware.limits import (
    Answer,
    Limits,
    check_answer_sticks,
    check_rate_sticks,
    check_setpoint,
)
from autolab.hardware.protocols import harvard
from autolab.hardware.registry import BuildContext, DeviceKind, register_kind
from autolab.hardware.transport import (
    DeviceRefused,
    ReplyTimeout,
    SerialLike,
    Transport,
    retry_garbled,
)

T = TypeVar("T")

#: How long the line must stay quiet before ``\nNN:`` is taken for an idle prompt and not the
#: start of a data line, s (at 9600 Bd a character takes about 1 ms).
PROMPT_QUIET_S = 0.05
#: Longest reply read, bytes (``metrics`` is the longest answer in the manual).
MAX_REPLY_BYTES = 4096
#: How long the line must stay quiet after a lone stall or target prompt (outside poll mode)
#: before it counts as the reply to a prompt-only command, s: it may have come unasked with
#: the reply still on its way.
UNASKED_QUIET_S = 0.2
#: Commands whose answer (asked without arguments) has a data line: a lone stall or target
#: prompt read in its place came unasked.
ANSWERING = frozenset({"ver", "version", "address", "status", "irate", "wrate", "ivolume",
                       "wvolume", "tvolume", "diameter", "echo", "poll", "nvram"})
#: Prompt -> the status character the rest of the rig reads (New Era's letters).
STATUS_OF_PROMPT = {">": "I", "<": "W", ":": "S", "T*": "S", "*": "A"}


class HarvardPump:
    """A Harvard Pump 11 Elite or PHD ULTRA (address on a daisy chain).

    Args:
        transport: The port (shared by the pumps of one chain).
        name: Device name (log, errors).
        address: Pump address 0-99 (0: the pump on the computer's port).
        diameter_mm: Syringe inner diameter, mm.
        syringe_ml: Syringe volume, mL (for the near-empty interlock).
        limits: Setpoint limits.
    """

    def __init__(self, transport: Transport, name: str, *, address: int = 0,
                 diameter_mm: float = 26.6, syringe_ml: float = 50.0,
                 limits: Limits | None = None) -> None:
        self.transport = transport
        self.name = name
        self.address = address
        self.diameter_mm = diameter_mm
        self.syringe_ml = syringe_ml
        self.limits = limits or Limits()
        self.alarms: list[str] = []  #: every alarm the pump reported, oldest first
        self._unreported: list[str] = []
        self._alarm_lock = threading.Lock()
        self.infuse = True  #: the direction the next rate and run use
        self.rate_ml_min = 0.0  #: last verified rate, mL/min
        self.prompt = ""  #: the last prompt the pump sent
        self._last_reply: harvard.HarvardReply | None = None
        self._status_known = True  # False once the pump refused ``status``
        #: The pump took ``poll on`` and ends its prompts with an XON (see :meth:`connect`);
        #: dropped at the first prompt without one.
        self.poll_mode = False
        #: Address the pump in the PHD ULTRA manual's form ``12:irat`` (see :meth:`connect`).
        self.colon = False
        #: Write rates in the PHD ULTRA manual's units (``ul/min``; see :meth:`_send_rate`).
        self.long_units = False
        transport.stray_listeners.append(self._scan_stray)

    # --------------------------------------------------------------------- wire
    def _framer(self, ser: SerialLike, answers: bool = False) -> bytes:
        r"""One reply: bytes up to this pump's prompt (and the XON after it in poll mode).

        The prompt has no terminator. An idle prompt of a nonzero-address pump (``\nNN:``)
        also begins its data lines, so without an XON that one counts only once the line stays
        quiet for :data:`PROMPT_QUIET_S`. In poll mode the XON is read with the reply, so it
        is not left on the line for the next one. Outside poll mode a pump sends a stall or
        target prompt unasked when its state changes: a lone one read where an answer with a
        data line was due (``answers``), or followed by more bytes within
        :data:`UNASKED_QUIET_S`, came unasked. It is kept as this pump's stall and the reply
        read on, so the reply is not left on the line for the next request.
        """
        data, start = b"", 0  # data[start:] is the reply; before it, unasked prompts
        while len(data) < MAX_REPLY_BYTES:
            reply = data[start:]
            if harvard.prompt_end(reply, self.address):
                done, unasked, more = self._after_prompt(ser, reply, answers)
                if done:
                    return data
                if unasked:
                    self._scan_stray(reply)
                    start = len(data)
                data += more
                continue
            byte = bytes(ser.read(1))
            if not byte:
                err = ReplyTimeout(f"no prompt after {data!r}")
                err.partial = data  # type: ignore[attr-defined]
                raise err
            data += byte
        raise harvard.HarvardProtocolError(f"{self.name}: no prompt in {len(data)} bytes")

    def _after_prompt(self, ser: SerialLike, reply: bytes,
                      answers: bool) -> tuple[bool, bool, bytes]:
        """What follows a prompt: (the reply is complete, the prompt came unasked, bytes read).

        See :meth:`_framer`: a prompt that may begin a data line, or wait for its XON, counts
        once the line stays quiet; a lone stall or target prompt is the reply only when no
        answer was due and nothing follows it.
        """
        final = reply.endswith(harvard.XON) or not (
            self.poll_mode or harvard.prompt_is_ambiguous(reply, self.address))
        if not final:
            more = _read_within(ser, PROMPT_QUIET_S)
            if not more:  # the line stayed quiet after the prompt: no XON comes
                self.poll_mode = False
            return not more, False, more
        if not harvard.lone_prompt(reply):
            return True, False, b""
        if answers:
            return False, True, b""
        if self.poll_mode:  # poll mode inhibits unsolicited prompts
            return True, False, b""
        more = _read_within(ser, UNASKED_QUIET_S)
        return not more, bool(more), more

    def _parse(self, frame: bytes, request: bytes) -> harvard.HarvardReply:
        """Parse a reply (unasked prompts before it and the request's echo dropped)."""
        reply = harvard.parse_reply(harvard.strip_unasked(frame), request)
        got = 0 if reply.address is None else reply.address
        if got != self.address:
            raise harvard.HarvardProtocolError(
                f"{self.name}: reply from address {got}, expected {self.address}")
        return reply

    def _observe(self, reply: harvard.HarvardReply) -> None:
        """Keep a new stall (a ``*`` after another prompt) for :meth:`take_alarms`."""
        if reply.prompt == "*" and self.prompt != "*":
            self._note_alarm("S")
        self.prompt = reply.prompt
        self._last_reply = reply

    def _note_alarm(self, code: str) -> None:
        with self._alarm_lock:
            self.alarms.append(code)
            self._unreported.append(code)

    def _scan_stray(self, data: bytes) -> None:
        """Keep a stall prompt this pump sent unasked (a transport listener)."""
        for address, prompt in harvard.prompt_events(data):
            if address == self.address and prompt == "*" and self.prompt != "*":
                self._note_alarm("S")
                self.prompt = "*"

    def take_alarms(self) -> tuple[str, ...]:
        """Alarms reported since the last call, oldest first (each handed out once)."""
        with self._alarm_lock:
            out = tuple(self._unreported)
            self._unreported.clear()
        return out

    def command(self, command: str, args: str = "", *,
                data: Callable[[str], object] | None = None,
                attempts: int | None = None) -> harvard.HarvardReply:
        """Send one command and parse the reply (``data`` validates a query's answer).

        Raises:
            DeviceRefused: An error reply (the pump answered: never retried).
            HardwareError: No valid reply after the transport's retries.
        """
        request = harvard.encode_command(self.address, command, args, colon=self.colon)

        def check(frame: bytes) -> harvard.HarvardReply:
            reply = self._parse(frame, request)
            self._observe(reply)
            if reply.error is not None:
                raise DeviceRefused(f"{self.name}: {command} {args} refused: {reply.error}")
            if data is not None:
                data(reply.text)
            return reply

        framer = functools.partial(self._framer, answers=not args and command in ANSWERING)
        frame = self.transport.exchange(self.name, request, framer, retry_garbled(check),
                                        attempts=attempts)
        return self._parse(frame, request)

    def query(self, command: str, data: Callable[[str], T]) -> T:
        """Send a query and parse its one-line answer with ``data`` (malformed: retried)."""
        return data(self.command(command, data=data).text)

    # --------------------------------------------------------------------- API
    def connect(self) -> None:
        """Bring the pump into a known state: remote, stopped, no target, diameter set.

        A bare CR first: the manual says touching the screen breaks remote communication
        until one is sent (its reply, if any, is not needed). Then ``ver`` in the address form
        the pump takes (:meth:`_find_address_form`), and ``echo off``: the manual does not say
        how an echo is written (a reply is read with one in any form, raw or as a line, but a
        reply without one has less to misread). Then poll mode: the manual says
        an XON follows each prompt in it, which ends a reply at once; without it the idle
        prompt of a nonzero-address pump ends a reply only after :data:`PROMPT_QUIET_S` of
        silence (2 lab min per reply at the virtual lab's 2400x, too slow for the procedure),
        so a pump that refuses ``poll``, or takes it and sends no XON (the first prompt without
        one ends poll mode here), still works, slower. The target volume is cleared so
        that a run is continuous; a stall found here is acknowledged, not handed on. ``nvram
        off``: the manual offers it so that frequent rate changes do not write the pump's
        non-volatile memory each time (as the Eurotherm driver spares the controller's EEPROM).
        """
        self.transport.exchange(self.name, harvard.CR, None)
        self.transport.discard_late(self.name, PROMPT_QUIET_S * 2, "reply to the wake-up CR")
        self._find_address_form()
        with contextlib.suppress(DeviceRefused):  # a model without the setting
            self.command("echo", "off")
        with contextlib.suppress(DeviceRefused):  # no poll mode: slower, still correct
            self.command("poll", "on")
            self.poll_mode = True
        with contextlib.suppress(DeviceRefused):  # a model without the setting
            self.command("nvram", "off")
        self.stop()
        with contextlib.suppress(DeviceRefused):  # no target to clear on this model
            self.command("ctvolume")
        self.command("diameter", harvard.format_number(self.diameter_mm))
        read = self.query("diameter", harvard.parse_diameter_answer)
        check_answer_sticks(self.name, "diameter_mm", self.diameter_mm, read, rel=1e-3)
        self.take_alarms()

    def _find_address_form(self) -> None:
        """``ping`` in the Elite manual's ``12ver``, else the PHD ULTRA manual's ``12:ver``.

        The manuals write the address differently and neither says the other form is taken;
        a pump that needs the colon may read ``12ver`` as pump 0's (unknown) command, so pump
        12 stays silent, or refuse it itself (``Command error``: ``ver`` is in both manuals, so
        only the form can be wrong). Pump 0 takes bare commands either way.

        Raises:
            HardwareError: No answer, or a refusal, in either form (the first form's error).
        """
        try:
            self.ping()
            return
        except HardwareError as err:
            if not self.address:
                raise
            first = err
        self.colon = True
        try:
            self.ping()
        except HardwareError:
            self.colon = False
            raise first from None

    def ping(self) -> str:
        """The firmware line (``ver``)."""
        return f"{self.name}: {self.command('ver').text or 'ok'}"

    def _rate_command(self) -> str:
        return "irate" if self.infuse else "wrate"

    def set_rate_ml_min(self, rate_ml_min: float) -> None:
        """Set the rate of the current direction (mL/min), read it back and compare.

        The answer is held to the digits the pump writes (the manual does not say how many):
        ``1.23 ml/min`` for 1.234 is the rate sent, ``1.2`` for 1.25 is not
        (:func:`~autolab.hardware.limits.rate_matches`, also the supervisor's rule).
        """
        check_setpoint(self.name, "rate_ml_min", rate_ml_min, low=0.0,
                       high=self.limits.max_rate_ml_min, unit="mL/min")
        try:
            self._send_rate(rate_ml_min)
        except ConfigError as err:  # a rate the units cannot write (rate_args), before a byte
            raise HardwareError(f"{self.name}: {err}") from err
        check_rate_sticks(self.name, rate_ml_min, self.rate_answer_ml_min())
        self.rate_ml_min = rate_ml_min

    def _send_rate(self, rate_ml_min: float) -> None:
        """``irate``/``wrate`` in the units' form the pump takes (found at its first refusal).

        The Elite manual writes ``u/m``, the PHD ULTRA manual ``ul/min``. An argument error
        that is not about the range (``Out of range``) may be the form: the other one is tried
        once, and kept if taken. A refusal in both forms is raised with both answers.
        """
        command = self._rate_command()
        try:
            self.command(command, harvard.rate_args(rate_ml_min, long_units=self.long_units))
        except DeviceRefused as first:
            text = str(first).lower()
            if self.long_units or "argument error" not in text or "range" in text:
                raise
            try:
                self.command(command, harvard.rate_args(rate_ml_min, long_units=True))
            except DeviceRefused as second:
                raise DeviceRefused(f"{first}; in the PHD ULTRA form: {second}") from second
            self.long_units = True

    def set_direction(self, infuse: bool) -> None:
        """Choose infuse or withdraw for the next rate and run (the pump has no setting).

        A rate set for the other direction is set again for this one, so that the run uses it.
        The direction itself is verified by the prompt :meth:`start` gets.
        """
        if infuse != self.infuse:
            self.infuse = infuse
            if self.rate_ml_min > 0:
                self.set_rate_ml_min(self.rate_ml_min)

    def start(self) -> None:
        """Run in the chosen direction, verified by the prompt.

        Raises:
            PumpAlarm: The pump answered stalled (``*``).
            HardwareError: It answered neither stalled nor running the chosen way.
        """
        want = ">" if self.infuse else "<"
        reply = self.command("irun" if self.infuse else "wrun")
        if reply.prompt not in (want, "*"):
            reply = self._poll()
        if reply.prompt == "*":
            raise PumpAlarm(self.name, "S")
        if reply.prompt != want:
            raise HardwareError(f"{self.name}: {'irun' if self.infuse else 'wrun'} sent but "
                                f"the prompt is {reply.prompt!r}, expected {want!r}")

    def stop(self) -> None:
        """Stop, verified by the prompt (``:``, or ``*``/``T*``: not running either)."""
        reply = self.command("stop")
        if reply.pumping:
            reply = self._poll()
        if reply.pumping:
            raise HardwareError(f"{self.name}: stop sent but the prompt is {reply.prompt!r}")

    def _poll(self) -> harvard.HarvardReply:
        """A status query whose prompt says the state (``status``; the rate if refused).

        ``status`` is the manual's "internal" command for computers; a pump that refuses it
        still answers with its prompt, and from then on the rate query is used instead.
        """
        if self._status_known:
            try:
                return self.command("status")
            except DeviceRefused:
                self._status_known = False
                if self._last_reply is not None:
                    return self._last_reply
        return self.command(self._rate_command())

    def state(self) -> PumpState:
        """The pump's prompt as a status, and every alarm since the last call."""
        reply = self._poll()
        alarms = self.take_alarms()
        return PumpState(pumping=reply.pumping, alarm=alarms[0] if alarms else "",
                         status=STATUS_OF_PROMPT[reply.prompt], alarms=alarms)

    def rate_read_ml_min(self) -> float:
        """The rate of the current direction as the pump reports it, mL/min."""
        return self.rate_answer_ml_min().value

    def rate_answer_ml_min(self) -> Answer:
        """:meth:`rate_read_ml_min` with the answer's resolution, mL/min."""
        return self.query(self._rate_command(), harvard.parse_rate_answer)

    def dispensed_ml(self) -> tuple[float, float]:
        """(infused, withdrawn) since the last clear, mL (``ivolume``, ``wvolume``)."""
        return (self.query("ivolume", harvard.parse_volume),
                self.query("wvolume", harvard.parse_volume))

    def clear_dispensed(self) -> None:
        """Zero both dispensed volumes (``civolume``, ``cwvolume``)."""
        self.command("civolume")
        self.command("cwvolume")


def _read_within(ser: SerialLike, wait_s: float) -> bytes:
    """One byte if it arrives within ``wait_s`` (the port's own timeout is restored)."""
    old = getattr(ser, "timeout", None)
    setattr(ser, "timeout", wait_s)  # noqa: B010 (SerialLike does not declare timeout)
    try:
        return bytes(ser.read(1))
    finally:
        setattr(ser, "timeout", old)  # noqa: B010 (as above)


# ============================================================================= kind
class HarvardSpec(SyringePumpSpec):
    """Devices-file entry of a Harvard Pump 11 Elite / PHD ULTRA (kind ``harvard``).

    Attributes:
        port: Name of its line in ``ports`` (one line per daisy chain).
        address: Pump address 0-99; the pump on the computer's port must be 0.
        reagent: What the pump delivers (reagent totals are kept by this name).
        syringe_ml: Syringe volume, mL.
        diameter_mm: Syringe inner diameter, mm.
    """

    address: int = Field(default=0, ge=0, le=99)


def _build(name: str, d: HarvardSpec, ctx: BuildContext) -> Device:
    return HarvardPump(ctx.transport(d.port), name, address=d.address,
                       diameter_mm=d.diameter_mm, syringe_ml=d.syringe_ml, limits=d.limits)


def _check(name: str, d: HarvardSpec) -> None:
    """The manual's address range (the schema holds it too; this names the rule)."""
    if not 0 <= d.address <= 99:
        raise ValueError(f"devices.{name}.address={d.address}: expected 0-99 (Harvard pump "
                         f"address)")


#: Line speed when the port gives none, Bd: the manual lists 9600-115200 on both pumps and
#: recommends above 38400 on a chain, but names no factory setting; 115200 is the highest
#: speed both pumps have (set the pump to it, or give ``baud`` on the port).
DEFAULT_BAUD = 115200

register_kind(DeviceKind("harvard", "pump", HarvardSpec, _build, DEFAULT_BAUD,
                         "Harvard Apparatus Pump 11 Elite / PHD ULTRA syringe pump "
                         "(daisy chain; no hardware watchdog)", check_entry=_check))
