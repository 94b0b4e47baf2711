r"""Our Harvard driver against an emulator written from the manual only (not from our emulator).

``ManualHarvardChain`` below was written from the Pump 11 Elite manual (5420-002 Rev C pp. 53-58)
and the PHD ULTRA manual (pp. 83-88) as quoted in the hardware reference (§1.2, §4.6, §5) before
our own emulator (``autolab/virtuallab/harvard_emulator.py``) was read, so a misreading shared by
our driver and our emulator shows here. Where the manual allows more than one reading, the
emulator has a switch (:class:`Readings`) and the driver is driven under each. The protocol
logic is all here; only ``os.openpty`` and a thread carry the bytes.

Manual items implemented (reference §1.2):

* request ``[address]command [args]`` + CR (or CR LF); the one- or two-digit address precedes
  the command only when nonzero (``12irat 3.2 u/m``; the PHD ULTRA manual writes ``12:irat``);
  commands may be abbreviated to their first four letters; a space before the arguments.
* reply: each data line ``\n[NN:]text\r``, then ``\n[NN]prompt`` (two-digit address, no colon
  before the prompt, no terminator); prompts ``:`` idle, ``>`` infusing, ``<`` withdrawing,
  ``*`` stalled, ``T*`` target reached.
* poll mode (``poll on|off``): an XON follows the prompt and unsolicited prompts are inhibited,
  so outside it a pump sends its prompt unasked when its state changes (a stall, a target).
* errors: ``Command error:`` / ``Argument error: <arg>``, the message indented on the next line,
  then the prompt.
* ``address``, ``echo``, ``poll``, ``ver``, ``nvram``, ``irate``/``wrate`` (``{rate} {units}``,
  ``m u n p`` / ``h m s``, ``max``/``min``/``lim``), ``crate``, ``irun``/``wrun``/``run``/
  ``stop``/``stp``, ``diameter``, ``ivolume``/``wvolume``, ``tvolume``, ``civolume``/
  ``cwvolume``/``cvolume``/``ctvolume``, ``status`` (``rate_fL_s time volume_fL flags``).
* a stall: the motor stops, the prompt is ``*``; "the pump does not send anything when stalled
  unless polled" (a driver's remark) is one reading, the unasked prompt the other.
* touching the screen breaks remote communication until a CR is sent.
* no power-up alarm is named: a power cycle stops the pump and puts its remote settings (poll
  mode, echo) back to power-up.

Readings switched (:class:`Readings`): whether ``poll`` exists and sends its XON, unasked
prompts, the echo's form, the address form (``12irat``/``12:irat``) and rate units (``u/m``/
``ul/min``) a pump takes, the units, time words, digits and exponents of answers, CR or CR LF
line ends, what clears a stall, whether ``status``/``nvram`` exist, which CR wakes a touched
pump.
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
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from autolab.exceptions import HardwareError
from autolab.hardware.delivery import DeliveryMonitor
from autolab.hardware.drivers import PumpAlarm
from autolab.hardware.harvard import HarvardPump
from autolab.hardware.protocols import harvard
from autolab.hardware.transport import DeviceRefused, Transport

from .waiting import until

XON = "\x11"
VOLUME_ML = {"m": 1.0, "u": 1e-3, "n": 1e-6, "p": 1e-9}
TIME_MIN = {"h": 60.0, "hr": 60.0, "m": 1.0, "min": 1.0, "s": 1 / 60.0, "sec": 1 / 60.0}
COMMANDS = ("address", "echo", "poll", "ver", "version", "nvram", "irate", "wrate", "crate",
            "irun", "wrun", "rrun", "run", "stop", "stp", "diameter", "ivolume", "wvolume",
            "tvolume", "civolume", "cwvolume", "cvolume", "ctvolume", "status")
SCALE = 20.0  # lab seconds per wall second: a run moves what the checks need at once
CLOCK_HZ = 56_000_000  # Elite: the status time field counts cycles of 1/56 000 000 s


@dataclass
class Readings:
    """Where the manual allows more than one reading: which one the emulated pump follows.

    Attributes:
        poll_known: The pump has ``poll`` (else ``Command error``).
        poll_xon: In poll mode an XON follows every prompt (a model may not send it).
        unsolicited: Outside poll mode a state change (stall, target reached) sends the prompt
            unasked (the manual: poll mode "inhibits unsolicited prompts"); False: nothing is
            sent unless polled (a public driver's remark).
        echo: ``"off"``; ``"raw"``: the request's characters echoed as they arrive, before the
            reply; ``"line"``: the request as the reply's first data line (with its address
            prefix, as every line); ``"line-bare"``: that line without the request's address.
        rate_units: The rate units ``irate``/``wrate`` take: ``"either"``, only the Elite
            manual's ``"short"`` ``u/m``, or only the PHD ULTRA manual's ``"long"`` ``ul/min``.
        colon: ``"either"``: ``12irat`` and ``12:irat`` both address pump 12; ``"required"``:
            only the PHD ULTRA manual's ``12:irat`` does (``12irat`` reads as a command for
            pump 0); ``"refused"``: pump 12 answers ``12irat`` with ``Command error``.
        time_words: How answers write the time unit (``min``/``hr``/``sec`` or ``m``/``h``/``s``).
        answer_units: ``"auto"`` (the pump picks the prefix), ``"set"`` (the units of the last
            set), ``"ml"`` (always mL).
        answer_digits: Significant digits of numbers in answers.
        truncate: Answers cut to ``answer_digits`` (else rounded to them).
        over_limit: A rate above ``max_rate_ml_min``: ``"refuse"`` (``Argument error``) or
            ``"clamp"`` (held at the top, no error: a pump bounding it to ``irate lim``).
        exponent: Numbers in answers below 0.01 written with an exponent (``6.123e-04``).
        line_end: What ends a data line: the manual's CR, or CR LF.
        stall_clears: What ends a stall: ``"run"`` (the next run), ``"stop"`` or ``"panel"``
            (only the display; no command does).
        status_known: The pump has ``status`` (else ``Command error``).
        nvram_known: The pump has ``nvram``.
        wake: After a touch, which line restores remote communication (swallowed, unanswered):
            ``"any"`` CR on the line, or only ``"own"`` (a line addressed to this pump).
        max_rate_ml_min: The top of ``irate lim`` (refused above: ``Argument error``).
        quick_start: The pump shows its Quick Start screen (else parameter commands are
            refused: "parameter commands work only in the Quick Start screen").
    """

    poll_known: bool = True
    poll_xon: bool = True
    unsolicited: bool = True
    echo: str = "off"
    colon: str = "either"
    rate_units: str = "either"
    time_words: tuple[str, str, str] = ("hr", "min", "sec")
    answer_units: str = "auto"
    answer_digits: int = 6
    truncate: bool = False
    over_limit: str = "refuse"
    exponent: bool = False
    line_end: str = "\r"
    stall_clears: str = "run"
    status_known: bool = True
    nvram_known: bool = True
    wake: str = "any"
    max_rate_ml_min: float = 50.0
    quick_start: bool = True


class CommandError(Exception):
    """An error reply: its lines (``Command error:`` / ``Argument error: x``, the message)."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines)
        self.lines = lines


def number(value: float, digits: int) -> str:
    """A number as the emulated pump writes it: ``digits`` significant, no exponent."""
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


#: Rate units a pump takes, by reading: the Elite manual's ``u/m``, the PHD ULTRA's ``ul/min``.
RATE_UNIT_FORMS = {"short": r"([munp])/([hms])", "long": r"([munp])l/(hr|min|sec)",
                   "either": r"([munp])l?/(hr|h|min|m|sec|s)"}


def parse_rate_arg(text: str, form: str = "either") -> tuple[float, str]:
    """``3.2 u/m`` or ``3.2 ul/min`` (as the reading's ``form`` takes) -> (mL/min, unit)."""
    m = re.fullmatch(r"(\d+\.?\d*|\.\d+)\s+" + RATE_UNIT_FORMS[form], text.strip())
    if m is None:
        raise CommandError(f"Argument error: {text}", "   Invalid rate")
    unit = f"{m.group(2)}/{m.group(3)[0]}"
    return float(m.group(1)) * VOLUME_ML[m.group(2)] / TIME_MIN[m.group(3)], unit


@dataclass
class ManualPump:
    """One pump's state, as the manual describes it (no physics beyond rate × time)."""

    address: int
    readings: Readings
    diameter_mm: float = 4.699
    rate_ml_min: dict[str, float] = field(default_factory=lambda: {"i": 0.0, "w": 0.0})
    rate_unit: dict[str, str] = field(default_factory=lambda: {"i": "m/m", "w": "m/m"})
    motion: str = ""  # "i" infusing, "w" withdrawing, "" idle
    stalled: bool = False
    target_ml: float | None = 1.0  # a target left from the front panel
    target_reached: bool = False
    moved_ml: dict[str, float] = field(default_factory=lambda: {"i": 0.0, "w": 0.0})
    poll_mode: bool = False
    echo: bool = False
    nvram: bool = True
    touched: bool = False
    since_s: float = field(default_factory=time.monotonic)
    log: list[str] = field(default_factory=list)  #: "request -> answer", oldest first

    def __post_init__(self) -> None:
        self.echo = self.readings.echo != "off"

    @property
    def prompt(self) -> str:
        """The prompt character(s) for the pump's state."""
        if self.stalled:
            return "*"
        if self.target_reached:
            return "T*"
        return {"i": ">", "w": "<"}.get(self.motion, ":")

    def advance(self, scale: float) -> str:
        """Integrate what moved since the last look; the new prompt if the target ended it."""
        now = time.monotonic()
        if self.motion:
            self.moved_ml[self.motion] += (self.rate_ml_min[self.motion] * (now - self.since_s)
                                           * scale / 60.0)
            if self.target_ml and self.moved_ml[self.motion] >= self.target_ml:
                self.moved_ml[self.motion] = self.target_ml
                self.motion, self.target_reached = "", True
                self.since_s = now
                return "T*"
        self.since_s = now
        return ""

    def num(self, value: float) -> str:
        """A number in an answer."""
        digits = self.readings.answer_digits
        if self.readings.truncate and value:
            unit = 10.0 ** (math.floor(math.log10(abs(value))) + 1 - digits)
            value = math.trunc(value / unit + 1e-9) * unit  # not 28.999.. for 0.29 / 0.01
        if self.readings.exponent and 0 < abs(value) < 0.01:
            return f"{value:.{digits - 1}e}"
        return number(value, digits)

    def rate_text(self, rate_ml_min: float, set_unit: str) -> str:
        """A rate answer ``# xl/xxx`` in the reading's units and time words."""
        hr, mn, sec = self.readings.time_words
        words = {"h": hr, "m": mn, "s": sec}
        mode = self.readings.answer_units
        if mode == "set":
            prefix, per = set_unit.split("/")
        elif mode == "ml" or rate_ml_min >= 1.0 or rate_ml_min == 0:
            prefix, per = "m", "m"
        else:
            prefix, per = ("u", "m") if rate_ml_min >= 1e-3 else ("n", "m")
        value = rate_ml_min / VOLUME_ML[prefix] * TIME_MIN[per]
        return f"{self.num(value)} {prefix}l/{words[per]}"

    def volume_text(self, volume_ml: float) -> str:
        """A volume answer ``# xl``."""
        if self.readings.answer_units == "ml" or volume_ml >= 1.0 or volume_ml == 0:
            return f"{self.num(volume_ml)} ml"
        return f"{self.num(volume_ml * 1e3)} ul"


# ----------------------------------------------------------------------------- commands
Handler = Callable[[ManualPump, str], list[str]]


def _ver(p: ManualPump, args: str) -> list[str]:
    return ["11 ELITE 3.0.4"]


def _version(p: ManualPump, args: str) -> list[str]:
    return ["Firmware:      11 ELITE 3.0.4", "RTOS:          V1.0", f"Pump address:  {p.address}"]


def _address(p: ManualPump, args: str) -> list[str]:
    return [f"Pump address is {p.address}"]


def _switch(name: str, attr: str, text: str) -> Handler:
    def handle(p: ManualPump, args: str) -> list[str]:
        if not args:
            return [f"{text} {'ON' if getattr(p, attr) else 'OFF'}"]
        if args.lower() not in ("on", "off"):
            raise CommandError(f"Argument error: {args}", "   Expected on or off")
        setattr(p, attr, args.lower() == "on")
        return []
    handle.__name__ = f"_{name}"
    return handle


def _poll(p: ManualPump, args: str) -> list[str]:
    if not p.readings.poll_known:
        raise CommandError("Command error:", "   Unknown command")
    return _switch("poll", "poll_mode", "Polling mode is")(p, args)


def _nvram(p: ManualPump, args: str) -> list[str]:
    if not p.readings.nvram_known:
        raise CommandError("Command error:", "   Unknown command")
    return _switch("nvram", "nvram", "NVRAM is")(p, args)


def _rate(way: str) -> Handler:
    def handle(p: ManualPump, args: str) -> list[str]:
        top = p.readings.max_rate_ml_min
        if not args:
            return [p.rate_text(p.rate_ml_min[way], p.rate_unit[way])]
        if args in ("max", "min", "lim"):
            low, high = p.rate_text(1e-6, "n/m"), p.rate_text(top, "m/m")
            return [{"max": high, "min": low, "lim": f"{low} to {high}"}[args]]
        rate, unit = parse_rate_arg(args, p.readings.rate_units)
        if rate > top and p.readings.over_limit == "clamp":
            rate = top
        if not 1e-6 <= rate <= top:
            raise CommandError(f"Argument error: {args}", "   Out of range")
        p.rate_ml_min[way], p.rate_unit[way] = rate, unit
        return []
    return handle


def _crate(p: ManualPump, args: str) -> list[str]:
    if not p.motion:
        raise CommandError("Command error:", "   Pump not running")
    verb = "Infusing" if p.motion == "i" else "Withdrawing"
    return [f"{verb} at {p.rate_text(p.rate_ml_min[p.motion], p.rate_unit[p.motion])}"]


def _run(way: str) -> Handler:
    def handle(p: ManualPump, args: str) -> list[str]:
        if p.stalled and p.readings.stall_clears == "run":
            p.stalled = False
        if not p.stalled:
            p.target_reached = False
            p.motion = way
        return []
    return handle


def _stop(p: ManualPump, args: str) -> list[str]:
    p.motion = ""
    if p.readings.stall_clears == "stop":
        p.stalled = False
    return []


def _diameter(p: ManualPump, args: str) -> list[str]:
    if not args:
        return [f"{p.diameter_mm:.4f} mm"]
    try:
        value = float(args)
    except ValueError:
        raise CommandError(f"Argument error: {args}", "   Invalid number") from None
    if not 0.1 <= value <= 50.0:
        raise CommandError(f"Argument error: {args}", "   Out of range")
    if p.motion:
        raise CommandError("Command error:", "   Not while running")
    p.diameter_mm = value
    return []


def _volume(way: str) -> Handler:
    def handle(p: ManualPump, args: str) -> list[str]:
        return [p.volume_text(p.moved_ml[way])]
    return handle


def _tvolume(p: ManualPump, args: str) -> list[str]:
    if not args:
        return ["Target volume not set"] if p.target_ml is None else [p.volume_text(p.target_ml)]
    m = re.fullmatch(r"(\d+\.?\d*)\s*([munp])l", args)
    if m is None:
        raise CommandError(f"Argument error: {args}", "   Invalid volume")
    p.target_ml = float(m.group(1)) * VOLUME_ML[m.group(2)]
    return []


def _clear(what: str) -> Handler:
    def handle(p: ManualPump, args: str) -> list[str]:
        if what in ("i", "both"):
            p.moved_ml["i"] = 0.0
        if what in ("w", "both"):
            p.moved_ml["w"] = 0.0
        if what == "t":
            p.target_ml, p.target_reached = None, False
        return []
    return handle


def _status(p: ManualPump, args: str) -> list[str]:
    if not p.readings.status_known:
        raise CommandError("Command error:", "   Unknown command")
    way = p.motion or "i"
    rate_fl_s = round(p.rate_ml_min[way] * 1e12 / 60.0) if p.motion else 0
    flags = ((way.upper() if p.motion else way) + "." + ("S" if p.stalled else ".") + "."
             + way.upper() + ("T" if p.target_reached else "."))
    return [f"{rate_fl_s} {round(time.monotonic() * CLOCK_HZ) % 2**32} "
            f"{round(p.moved_ml[way] * 1e12)} {flags}"]


HANDLERS: dict[str, Handler] = {
    "ver": _ver, "version": _version, "address": _address,
    "echo": _switch("echo", "echo", "Echo is"), "poll": _poll, "nvram": _nvram,
    "irate": _rate("i"), "wrate": _rate("w"), "crate": _crate, "irun": _run("i"),
    "wrun": _run("w"), "run": _run("i"), "rrun": _run("w"), "stop": _stop, "stp": _stop,
    "diameter": _diameter, "ivolume": _volume("i"), "wvolume": _volume("w"),
    "tvolume": _tvolume, "civolume": _clear("i"), "cwvolume": _clear("w"),
    "cvolume": _clear("both"), "ctvolume": _clear("t"), "status": _status,
}


#: Commands that set or read a pumping parameter (refused outside the Quick Start screen).
PARAMETERS = frozenset({"irate", "wrate", "diameter", "tvolume", "ctvolume"})


def full_name(word: str) -> str | None:
    """A command as written or abbreviated to (at least) its first four letters."""
    word = word.lower()
    if word in HANDLERS:
        return word
    hits = [c for c in COMMANDS if len(word) >= 4 and c.startswith(word)]
    return hits[0] if len(hits) == 1 else None


def split_line(line: str, colon: str) -> tuple[int, str, str, str]:
    """The pump's view of a request: (address, command word, args, the line without address)."""
    pattern = r"(\d{1,2}):(.*)" if colon == "required" else r"(\d{1,2}):?(.*)"
    m = re.fullmatch(pattern, line.strip())
    address, rest = (int(m.group(1)), m.group(2)) if m else (0, line.strip())
    word, _, args = rest.strip().partition(" ")
    return address, word, args.strip(), rest.strip()


class ManualHarvardChain:
    """A daisy chain of Harvard pumps on one real pty; the driver opens :attr:`port`.

    Fault injection: :meth:`stall`, :meth:`touch`, ``drop_next`` (no reply), ``garble_next``
    (a prompt the manual does not list), ``truncate_next`` (no prompt), ``stall_before_reply``
    (another pump's unasked prompt just ahead of a reply).

    Args:
        addresses: The pumps on the chain.
        time_scale: Lab seconds per wall second of the pumped volume.
    """

    def __init__(self, addresses: tuple[int, ...], time_scale: float = 1.0) -> None:
        self.readings = Readings()
        self.addresses = addresses
        self.time_scale = time_scale
        self.pumps: dict[int, ManualPump] = {}
        self.lock = threading.RLock()
        self.lines_heard: list[str] = []
        self.unasked = 0  # unsolicited prompts sent
        self.drop_next = self.garble_next = self.truncate_next = 0
        #: (a, b): just before pump a's next reply, pump b stalls (its unasked prompt first)
        self.stall_before_reply: tuple[int, int] | None = None
        #: Time between such an unasked prompt and the reply, s (a pump at 9600 Bd writes a
        #: 30-character answer in about 30 ms).
        self.lag_after_unasked_s = 0.0
        self.reset()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # pitfall 1: raw before anyone writes
        self.port = os.ttyname(self._slave)
        self._buf = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def reset(self, readings: Readings | None = None) -> None:
        """Fresh pumps (as powered up) under ``readings``; faults and counters cleared."""
        with self.lock:
            self.readings = readings or Readings()
            self.pumps = {a: ManualPump(a, self.readings) for a in self.addresses}
            self.lines_heard.clear()
            self.unasked = self.drop_next = self.garble_next = self.truncate_next = 0
            self.stall_before_reply = None
            self.lag_after_unasked_s = 0.0

    def close(self) -> None:
        """Stop serving and close both ends."""
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._master)
        os.close(self._slave)

    # ----------------------------------------------------------------- faults
    def stall(self, address: int) -> None:
        """The motor stalls: stopped, prompt ``*``; announced unasked if the reading says so."""
        with self.lock:
            p = self.pumps[address]
            p.advance(self.time_scale)
            p.motion, p.stalled = "", True
            self._announce(p)

    def power_cycle(self, address: int) -> None:
        """Power interrupted: the pump stops and its remote settings are back to power-up."""
        with self.lock:
            old = self.pumps[address]
            old.advance(self.time_scale)
            new = ManualPump(address, self.readings, diameter_mm=old.diameter_mm,
                             rate_ml_min=old.rate_ml_min, rate_unit=old.rate_unit,
                             target_ml=None, moved_ml=old.moved_ml)
            self.pumps[address] = new

    def touch(self, address: int) -> None:
        """Someone touches the screen: remote communication is broken until a CR."""
        with self.lock:
            self.pumps[address].touched = True

    def _announce(self, p: ManualPump) -> None:
        """An unsolicited prompt (outside poll mode, where the reading has them)."""
        if self.readings.unsolicited and not p.poll_mode:
            os.write(self._master, self._prompt(p).encode("ascii"))
            self.unasked += 1

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
                for p in self.pumps.values():
                    if p.advance(self.time_scale):
                        self._announce(p)

    def _feed(self, chunk: bytes) -> None:
        self._buf += chunk
        while b"\r" in self._buf:
            raw, _, self._buf = self._buf.partition(b"\r")
            line = raw.decode("ascii", errors="replace").lstrip("\n")  # CR LF: LF starts next
            self.lines_heard.append(line)
            self._line(line)

    def _line(self, line: str) -> None:
        address, word, args, rest = split_line(line, self.readings.colon)
        for p in self.pumps.values():  # a touched pump: any CR on the line wakes it
            if p.touched and (self.readings.wake == "any" or p.address == address):
                p.touched = False
                if p.address == address:
                    return  # the waking line is swallowed
        p = self.pumps.get(address)
        if p is None or p.touched:
            return
        p.advance(self.time_scale)
        if self.readings.colon == "refused" and address and ":" not in line.partition(word)[0]:
            lines = ["Command error:", "   Invalid address form"]
        else:
            lines = self._execute(p, word, args)
        p.log.append(f"{line} -> {' / '.join(lines) or p.prompt}")
        echo = self._echo(p, line, rest)
        self._send(p, echo, lines)

    def _execute(self, p: ManualPump, word: str, args: str) -> list[str]:
        if not word:
            return []  # an empty line: the prompt
        name = full_name(word)
        try:
            if name is None:
                raise CommandError("Command error:", "   Unknown command")
            if name in PARAMETERS and not self.readings.quick_start:
                raise CommandError("Command error:", "   Not in Quick Start")
            return HANDLERS[name](p, args)
        except CommandError as err:
            return list(err.lines)

    def _echo(self, p: ManualPump, line: str, rest: str) -> tuple[str, list[str]]:
        """(raw echo, echo data lines) of a request, by the reading."""
        if not p.echo:
            return "", []
        mode = self.readings.echo
        if mode == "raw":
            return line + "\r", []
        return "", [line if mode == "line" else rest]

    def _prompt(self, p: ManualPump) -> str:
        head = f"{p.address:02d}" if p.address else ""
        xon = XON if p.poll_mode and self.readings.poll_xon else ""
        return f"\n{head}{p.prompt}{xon}"

    def _send(self, p: ManualPump, echo: tuple[str, list[str]], lines: list[str]) -> None:
        if self.stall_before_reply and self.stall_before_reply[0] == p.address:
            self.stall(self.stall_before_reply[1])
            self.stall_before_reply = None
            time.sleep(self.lag_after_unasked_s)  # the wire's time, in the pump's thread
        head = f"{p.address:02d}:" if p.address else ""
        raw_echo, echo_lines = echo
        end = self.readings.line_end
        body = "".join(f"\n{head}{text}{end}" for text in [*echo_lines, *lines])
        out = raw_echo + body + self._prompt(p)
        if self.drop_next:
            self.drop_next -= 1
            return
        if self.garble_next:
            self.garble_next -= 1
            out = body + f"\n{head[:2]}#"
        elif self.truncate_next:
            self.truncate_next -= 1
            out = raw_echo + body
        os.write(self._master, out.encode("ascii"))


# ============================================================================= fixtures
@pytest.fixture(scope="module")
def bus() -> Iterator[tuple[ManualHarvardChain, Transport]]:
    """One chain (pumps 0 and 12) and one transport for the module (reset per test)."""
    emu = ManualHarvardChain((0, 12), time_scale=SCALE)
    line = Transport(emu.port, baudrate=115200, timeout_s=0.4, retries=2)
    yield emu, line
    line.close()
    emu.close()


def _fresh(bus: tuple[ManualHarvardChain, Transport], readings: Readings | None = None,
           ) -> tuple[ManualHarvardChain, Transport]:
    """The shared chain reset to power-up under ``readings``; the line's old listeners gone."""
    emu, line = bus
    line.serial.reset_input_buffer()  # whatever the last test left on the line
    line.stray_listeners.clear()
    line.serial.timeout = line.timeout_s
    emu.reset(readings)
    return emu, line


def _pump(line: Transport, address: int = 12, diameter_mm: float = 14.57) -> HarvardPump:
    return HarvardPump(line, f"pump_{address}", address=address, diameter_mm=diameter_mm,
                       syringe_ml=10.0)


def _lab_min() -> float:
    """The lab clock the emulated pumps run on, min."""
    return time.monotonic() * SCALE / 60.0


def _refused(emu: ManualHarvardChain, address: int) -> list[str]:
    """The requests the emulated pump answered with an error."""
    return [c for c in emu.pumps[address].log if "error" in c]


VARIANTS = {
    "manual-as-read": Readings(),
    "poll-without-xon": Readings(poll_xon=False),
    "echo-line-short-time-words": Readings(echo="line", time_words=("h", "m", "s")),
    "echo-line-bare": Readings(echo="line-bare"),
    "echo-raw": Readings(echo="raw"),
    "phd-ultra-rate-units-only": Readings(rate_units="long"),
    "answers-in-set-units-4-digits-no-status-no-nvram": Readings(
        answer_units="set", answer_digits=4, status_known=False, nvram_known=False),
    "answers-in-ml-with-exponents-crlf-lines": Readings(answer_units="ml", exponent=True,
                                                         line_end="\r\n"),
}


#: The pump each bring-up reading is tried on (pump 12 unless named): without an XON each idle
#: prompt of pump 12 costs the driver a quiet wait, so the XON-less reading runs on pump 0
#: (pump 12 without XONs is driven by the unasked-prompt tests).
VARIANT_ADDRESS = {"poll-without-xon": 0}


# ============================================================================= codec
@settings(max_examples=30)  # CI time: a pure function, 30 draws cover its cases
@given(st.integers(0, 99), st.sampled_from(["ver", "irate", "diameter", "ivolume", "status"]),
       st.from_regex(r"([0-9.]{1,8}( [munp]/[hms])?)?", fullmatch=True), st.booleans())
def test_both_address_forms_are_read_back_by_the_pump(address: int, command: str, args: str,
                                                       colon: bool) -> None:
    """Elite ``12irat 3.2 u/m`` and PHD ULTRA ``12:irat 3.2 u/m`` name the same request."""
    line = harvard.encode_command(address, command, args, colon=colon).decode()
    assert line.endswith("\r") and (":" in line.split(command)[0]) == (colon and address > 0)
    assert split_line(line[:-1], "required" if colon else "either")[:3] == (address, command,
                                                                            args)


@settings(max_examples=30)  # CI time: a pure function, 30 draws cover its cases
@given(st.integers(0, 99), st.sampled_from(["ver", "irate", "diameter", "ivolume", "status"]),
       st.from_regex(r"([0-9.]{1,8}( [munp]/[hms])?)?", fullmatch=True), st.booleans(),
       st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ./:]{0,20}", fullmatch=True),
                max_size=3).map(tuple),
       st.sampled_from(["off", "raw", "line", "line-bare"]))
def test_a_reply_reads_alike_whatever_form_its_echo_takes(
        address: int, command: str, args: str, colon: bool, lines: tuple[str, ...],
        echo: str) -> None:
    """Reading left open: ``echo on`` is named, its form is not. Raw before the reply, or as
    its first line with or without the request's address: the same lines and prompt."""
    request = harvard.encode_command(address, command, args, colon=colon)
    assume(not lines or not harvard.is_echo(lines[0], request))  # an answer is never the echo
    sent = request.decode()[:-1]
    head = f"{address:02d}:" if address else ""
    echoed = {"raw": f"{sent}\r", "line": f"\n{head}{sent}\r",
              "line-bare": f"\n{head}{command} {args}".rstrip() + "\r"}.get(echo, "")
    frame = (echoed + "".join(f"\n{head}{x}\r" for x in lines)
             + (f"\n{address:02d}>" if address else "\n>")).encode()
    reply = harvard.parse_reply(frame, request)
    assert reply.lines == tuple(x.strip() for x in lines if x.strip())
    assert (reply.prompt, reply.address) == (">", address or None)


@settings(max_examples=30)  # CI time: a pure function, 30 draws cover its cases
@given(st.floats(1e-6, 500.0), st.booleans())
def test_rates_in_either_manual_s_units_are_read_as_written(rate_ml_min: float,
                                                            long_units: bool) -> None:
    """The Elite's ``u/m`` and the PHD ULTRA's ``ul/min`` carry the same rate to the pump."""
    args = harvard.rate_args(rate_ml_min, long_units=long_units)
    value_ml_min, _ = parse_rate_arg(args, "long" if long_units else "short")
    assert value_ml_min == pytest.approx(rate_ml_min, rel=1e-5)
    assert harvard.parse_rate(args) == pytest.approx(rate_ml_min, rel=1e-5)


@settings(max_examples=30)  # CI time: a pure function, 30 draws cover its cases
@given(st.integers(0, 99), st.lists(st.sampled_from(["*", "T*"]), max_size=2),
       st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ./]{0,20}", fullmatch=True),
                max_size=3).map(tuple), st.sampled_from(sorted(harvard.PROMPTS)), st.booleans())
def test_unasked_prompts_ahead_of_a_reply_are_not_the_reply(
        address: int, unasked: list[str], lines: tuple[str, ...], prompt: str, xon: bool) -> None:
    """Outside poll mode a pump sends its stall or target prompt unasked: ahead of a reply
    they are dropped, a reply that is one of them alone is kept whole."""
    tail = harvard.XON if xon else b""
    ahead = b"".join(harvard.format_reply(address, (), p) + tail for p in unasked)
    reply = harvard.format_reply(address, lines, prompt) + tail
    assert harvard.strip_unasked(ahead + reply) == reply
    assert harvard.lone_prompt(reply) == (prompt if not lines and "*" in prompt else None)


# ============================================================================= tests
@pytest.mark.parametrize("variant", VARIANTS)
def test_bring_up_rates_both_ways_a_run_and_a_stop_under_each_reading(
        bus: tuple[ManualHarvardChain, Transport], variant: str) -> None:
    """Manual §1.2 on a pump of a chain: bring-up, ``irate``/``wrate`` in their units, ``irun``
    and ``wrun`` verified by their prompts, ``ivolume``, ``stop``, the clears, as the pump
    answers them under every reading the manual leaves open."""
    emu, line = _fresh(bus, VARIANTS[variant])
    address = VARIANT_ADDRESS.get(variant, 12)
    pump, p = _pump(line, address), emu.pumps[address]
    pump.connect()
    assert p.diameter_mm == pytest.approx(14.57) and p.target_ml is None
    assert "11 ELITE" in pump.ping()
    for rate_ml_min in (0.5, 0.01234, 12.5, 0.000612345):
        pump.set_rate_ml_min(rate_ml_min)
        assert p.rate_ml_min["i"] == pytest.approx(rate_ml_min, rel=1e-5)
    pump.set_rate_ml_min(3.0)
    pump.start()
    assert p.motion == "i"
    state = pump.state()
    assert state.pumping and state.status == "I" and state.alarms == ()
    until(lambda: pump.dispensed_ml()[0] > 0.05, 20.0)
    pump.stop()
    assert p.motion == "" and not pump.state().pumping
    infused_ml, withdrawn_ml = pump.dispensed_ml()
    assert infused_ml == pytest.approx(p.moved_ml["i"], rel=1e-3) and withdrawn_ml == 0.0
    pump.set_direction(False)
    assert p.rate_ml_min["w"] == pytest.approx(3.0)
    pump.start()
    assert p.motion == "w" and pump.state().status == "W"
    pump.stop()
    pump.clear_dispensed()
    assert pump.dispensed_ml() == (0.0, 0.0)
    refused = [c for c in _refused(emu, address)
               if not re.match(r"\d*:?(poll|nvram|status)", c)]
    probes = 1 if emu.readings.rate_units == "long" else 0  # the Elite form, once
    assert len(refused) == probes and all("irate" in c for c in refused), refused


def test_pump_0_takes_bare_commands_and_each_pump_answers_its_own_address(
        bus: tuple[ManualHarvardChain, Transport]) -> None:
    """Manual: the pump on the computer's port is 0 and takes commands without an address; a
    nonzero address precedes the command and prefixes every line the pump sends back."""
    emu, line = _fresh(bus)
    master, far = _pump(line, 0, diameter_mm=26.59), _pump(line, 12)
    master.connect()
    far.connect()
    master.set_rate_ml_min(1.5)
    far.set_rate_ml_min(0.25)
    master.start()
    assert (emu.pumps[0].motion, emu.pumps[12].motion) == ("i", "")
    assert far.rate_read_ml_min() == pytest.approx(0.25)
    assert master.rate_read_ml_min() == pytest.approx(1.5)
    assert any(h.startswith("irun") for h in emu.lines_heard)  # pump 0: bare
    assert any(h.startswith("12irate") for h in emu.lines_heard)
    master.stop()
    assert not _refused(emu, 0) and not _refused(emu, 12)


STALLS = {
    "poll-mode-stall-cleared-by-run": Readings(),
    "poll-mode-stall-cleared-by-stop": Readings(stall_clears="stop"),
    "poll-mode-stall-cleared-at-the-panel": Readings(stall_clears="panel"),
    "unasked-prompt": Readings(poll_known=False),
    "nothing-unless-polled": Readings(poll_known=False, unsolicited=False),
}
#: The pump each stall reading is tried on: where poll mode is missing, only one on pump 12
#: (without an XON each of its idle prompts costs the driver a quiet wait).
STALL_ADDRESS = {"nothing-unless-polled": 0}


@pytest.mark.parametrize("variant", STALLS)
def test_a_stall_trips_once_and_the_pump_is_left_stopped(
        bus: tuple[ManualHarvardChain, Transport], variant: str) -> None:
    """Manual: prompt ``*`` = stalled; no command to acknowledge it is named. The supervisor's
    poll turns it into one ``pump_stall`` trip whether the ``*`` came unasked or in a reply; the
    procedure's stop then leaves it stopped, and a new start answered ``*`` is the alarm."""
    emu, line = _fresh(bus, STALLS[variant])
    address = STALL_ADDRESS.get(variant, 12)
    pump = _pump(line, address)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 2.0)
    emu.stall(address)
    # the unasked prompt may reach the driver before the poll asks or in place of its reply
    assert emu.unasked == (1 if emu.readings.unsolicited and not emu.pumps[address].poll_mode
                           else 0)
    finding = monitor.poll("solvent")
    assert finding is not None and finding.trip and finding.reason == "pump_stall", finding
    assert pump.take_alarms() == ()  # handed out once
    pump.stop()
    assert emu.pumps[address].motion == ""
    if emu.readings.stall_clears == "panel":
        with pytest.raises(PumpAlarm, match="alarm S"):
            pump.start()
    else:
        pump.start()
        assert emu.pumps[address].motion == "i" and pump.take_alarms() == ()
        pump.stop()


def test_another_pump_s_unasked_stall_inside_a_reply_is_neither_lost_nor_misread(
        bus: tuple[ManualHarvardChain, Transport]) -> None:
    """Manual: outside poll mode a pump may send its prompt unasked, so on a chain pump 12's
    ``\n12*`` can arrive just ahead of pump 0's reply. Pump 0's poll stays healthy, and pump
    12's stall is one ``pump_stall`` trip."""
    emu, line = _fresh(bus, Readings(poll_known=False))
    master, far = _pump(line, 0), _pump(line, 12)
    master.connect()
    far.connect()
    monitor = DeliveryMonitor({"a": master, "b": far}, _lab_min)
    monitor.start("a", 2.0)
    monitor.start("b", 2.0)
    emu.stall_before_reply = (0, 12)
    assert monitor.poll("a") is None
    assert emu.unasked == 1 and emu.stall_before_reply is None
    finding = monitor.poll("b")
    assert finding is not None and finding.reason == "pump_stall", finding
    assert far.take_alarms() == ()
    master.stop()


def test_a_pump_s_own_unasked_stall_just_ahead_of_its_answer_keeps_replies_paired(
        bus: tuple[ManualHarvardChain, Transport]) -> None:
    """Manual: outside poll mode a pump may send its prompt unasked. One that stalls as a
    ``status`` reaches it sends ``\n12*`` and, a few characters' time later, its answer. The
    lone prompt is the stall (one ``pump_stall`` trip), not the answer, and every later request
    still reads its own reply (the answer owed is not taken for the ``stop``'s). Ahead of the
    reply to a prompt-only command (``stop``) the lone prompt is followed by that reply: the
    stall is kept and the reply read."""
    emu, line = _fresh(bus, Readings(poll_known=False))
    pump = _pump(line)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 2.0)
    bookmark = line.log.count
    emu.stall_before_reply, emu.lag_after_unasked_s = (12, 12), 0.03
    finding = monitor.poll("solvent")
    assert finding is not None and finding.reason == "pump_stall", finding
    pump.stop()
    pump.start()  # the next run clears the stall (this reading)
    assert emu.pumps[12].motion == "i" and pump.take_alarms() == ()
    emu.stall_before_reply = (12, 12)  # now ahead of the reply to a prompt-only command
    pump.stop()
    assert pump.take_alarms() == ("S",)
    pump.start()
    assert emu.pumps[12].motion == "i"
    pump.stop()
    paired = [(e.sent, e.received) for e in line.log.since(bookmark) if e.sent]
    assert [got for sent, got in paired if sent == b"12irun\r"] == [b"\n12>", b"\n12>"], paired
    assert all(b"\r" not in got for sent, got in paired if sent == b"12stop\r"), paired


def test_error_replies_are_refusals_sent_once(bus: tuple[ManualHarvardChain, Transport]) -> None:
    """Manual: ``Command error:`` / ``Argument error: <arg>`` with the message on the next
    line, then the prompt: the pump refusing. Raised naming the error, never retried."""
    emu, line = _fresh(bus, Readings(max_rate_ml_min=5.0))
    pump = _pump(line)
    pump.connect()
    with pytest.raises(DeviceRefused, match="Argument error: 6 m/m / Out of range"):
        pump.set_rate_ml_min(6.0)
    with pytest.raises(DeviceRefused, match="Command error: / Unknown command"):
        pump.command("xyzzy")
    pump.set_rate_ml_min(1.0)
    pump.start()
    with pytest.raises(DeviceRefused, match="Not while running"):
        pump.command("diameter", "10")
    assert len(_refused(emu, 12)) == 3
    pump.stop()


def test_a_garbled_or_missing_reply_is_retried_and_a_silent_pump_named(
        bus: tuple[ManualHarvardChain, Transport]) -> None:
    """A prompt the manual does not list, a reply without its prompt, or none: retried; a pump
    that never answers is named."""
    emu, line = _fresh(bus)
    pump = _pump(line, 0)
    pump.connect()
    line.serial.timeout = 0.3  # each fault costs a timeout: short ones (the emulator is quick)
    for fault in ("garble_next", "truncate_next"):  # a lost reply: the silent pump below
        setattr(emu, fault, 1)
        assert not pump.state().pumping, fault
    emu.drop_next = 3
    line.serial.timeout = 0.15  # nothing will answer: only the waits cost
    with pytest.raises(HardwareError, match="pump_0: no valid reply"):
        pump.state()


@pytest.mark.parametrize("wake", ["any", "own"])
def test_a_touched_screen_is_woken_by_a_cr(bus: tuple[ManualHarvardChain, Transport],
                                           wake: str) -> None:
    """Manual: touching the screen breaks remote communication until a CR is sent. Whether
    any CR on the chain or only one addressed to the pump wakes it is not said: the bring-up
    and a poll mid-run get through under both."""
    emu, line = _fresh(bus, Readings(wake=wake))
    line.serial.timeout = 0.3  # a swallowed line costs a timeout (the emulator is quick)
    pump = _pump(line)
    emu.touch(12)
    pump.connect()
    assert emu.pumps[12].diameter_mm == pytest.approx(14.57)
    pump.set_rate_ml_min(2.0)
    pump.start()
    emu.touch(12)
    assert pump.state().pumping
    pump.stop()


@pytest.mark.parametrize("colon", ["required", "refused"])
def test_a_pump_that_takes_only_the_phd_ultra_forms_is_found_at_bring_up(
        bus: tuple[ManualHarvardChain, Transport], colon: str) -> None:
    """Readings left open: the PHD ULTRA manual writes ``12:irat 3.2 ul/min``, the Elite manual
    ``12irat 3.2 u/m``. A pump that takes only the PHD ULTRA forms reads ``12irat`` as pump 0's
    (unknown) command and stays silent (or answers ``Command error`` itself), and refuses
    ``u/m``: the bring-up tries the colon form, the first rate the long units, and both are
    kept."""
    emu, line = _fresh(bus, Readings(colon=colon, rate_units="long"))
    line.serial.timeout = 0.3  # the first form's silence costs timeouts (the emulator is quick)
    pump = _pump(line)
    pump.connect()
    pump.set_rate_ml_min(0.75)
    pump.set_rate_ml_min(0.0005)
    assert emu.pumps[12].rate_ml_min["i"] == pytest.approx(0.0005)
    assert pump.colon and pump.long_units and emu.pumps[12].diameter_mm == pytest.approx(14.57)
    probes = {c.split(" ->")[0] for c in _refused(emu, 0 if colon == "required" else 12)}
    assert probes - {"12:irate 750 u/m"} == {"12ver"}  # the Elite form, at the first probe
    assert [c.split(" ->")[0] for c in _refused(emu, 12)][-1] == "12:irate 750 u/m"


@pytest.mark.parametrize("poll_known", [True, False])
def test_a_target_reached_is_a_stopped_pump_not_a_stall(
        bus: tuple[ManualHarvardChain, Transport], poll_known: bool) -> None:
    """Manual: ``T*`` = target reached. A target set at the panel after bring-up ends the run:
    the supervisor finds the pump idle (``pump_idle``), never a stall, also when the ``T*``
    came unasked (no poll mode)."""
    emu, line = _fresh(bus, Readings(poll_known=poll_known))
    pump = _pump(line, 0)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 30.0)
    with emu.lock:
        emu.pumps[0].target_ml = emu.pumps[0].moved_ml["i"] + 0.01
    until(lambda: emu.pumps[0].target_reached, 20.0)
    finding = monitor.poll("solvent")
    assert finding is not None and finding.reason == "pump_idle", finding
    assert pump.prompt == "T*"


def test_a_healthy_run_passes_the_supervisors_checks(
        bus: tuple[ManualHarvardChain, Transport]) -> None:
    """A run as the manual describes it: the poll's status, rate and delivered volume agree
    with the command, and the stop's delivery check passes."""
    emu, line = _fresh(bus)
    pump = _pump(line)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 6.0)
    until(lambda: emu.pumps[12].moved_ml["i"] > 0.05, 20.0)
    assert monitor.poll("solvent") is None
    assert monitor.stop("solvent") is None
    assert emu.pumps[12].moved_ml["i"] > 0.0


@pytest.mark.parametrize("truncate", [False, True], ids=["rounded", "truncated"])
def test_a_pump_that_answers_three_digits_holds_the_rate_to_them(
        bus: tuple[ManualHarvardChain, Transport], truncate: bool) -> None:
    """Reading left open: the manual writes answers ``# xl/xxx`` without their precision. A
    pump answering 3 significant digits (``1.24 ml/min`` rounded or ``1.23`` cut from 1.2351,
    0.4 % off) holds the rate sent to its digits: the bring-up and the run go through, and the
    supervisor's rate check (the same rule) finds nothing. A rate the pump clamps to its
    limit (5 for 6: one unit of the last digit) fails the read-back by name; a rate changed
    at the panel is a ``pump_rate`` trip."""
    emu, line = _fresh(bus, Readings(answer_digits=3, truncate=truncate, over_limit="clamp",
                                     max_rate_ml_min=5.0))
    pump = _pump(line, 0)
    pump.connect()
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 1.2351)
    assert emu.pumps[0].motion == "i"
    assert monitor.poll("solvent") is None
    with emu.lock:
        emu.pumps[0].rate_ml_min["i"] = 1.25  # more than a unit of the last digit off 1.2351
    finding = monitor.poll("solvent")
    assert finding is not None and finding.trip and finding.reason == "pump_rate", finding
    pump.stop()
    with pytest.raises(HardwareError, match=r"rate_ml_min did not stick: sent 6, read back 5 "):
        pump.set_rate_ml_min(6.0)


def test_a_power_cycle_mid_run_is_an_idle_pump_and_its_settings_back_to_power_up(
        bus: tuple[ManualHarvardChain, Transport]) -> None:
    """The manual names no power-up alarm: a pump whose power was interrupted is found
    stopped (``pump_idle``), and its remote settings are back to power-up: poll mode off (no
    XON: the driver drops it at the first prompt without one), echo on (raw here). The poll
    and a new bring-up still read every reply."""
    emu, line = _fresh(bus, Readings(echo="raw"))
    pump = _pump(line, 0)
    pump.connect()
    assert not emu.pumps[0].echo and emu.pumps[0].poll_mode
    monitor = DeliveryMonitor({"solvent": pump}, _lab_min)
    monitor.start("solvent", 3.0)
    emu.power_cycle(0)
    finding = monitor.poll("solvent")
    assert finding is not None and finding.reason == "pump_idle", finding
    assert not pump.poll_mode
    pump.connect()
    assert not emu.pumps[0].echo and emu.pumps[0].poll_mode


def test_a_pump_silent_in_both_address_forms_is_named_with_the_elite_form(
        bus: tuple[ManualHarvardChain, Transport]) -> None:
    """No pump at address 7: silent to ``7ver`` and to ``7:ver``. The bring-up fails naming the
    first (the Elite manual's) request, and the driver keeps the Elite form."""
    emu, line = _fresh(bus)
    line.serial.timeout = 0.1  # nothing answers: the timeouts are the test's only cost
    pump = _pump(line, 7)
    with pytest.raises(HardwareError, match=r"pump_7: no valid reply to b'7ver\\r'"):
        pump.connect()
    assert not pump.colon
    assert [h for h in emu.lines_heard if h] == ["7ver"] * 3 + ["7:ver"] * 3


def test_a_pump_left_outside_quick_start_is_named_at_bring_up(
        bus: tuple[ManualHarvardChain, Transport]) -> None:
    """Manual: parameter commands work only in the Quick Start screen. Nothing a driver can
    do about it: the refusal of the diameter is named at bring-up, never retried, and the
    pump is not run."""
    emu, line = _fresh(bus, Readings(quick_start=False))
    pump = _pump(line, 0)
    with pytest.raises(DeviceRefused, match=r"diameter 14.57 refused: Command error: / Not "
                                            r"in Quick Start"):
        pump.connect()
    assert [c.split(" ->")[0] for c in _refused(emu, 0)] == ["ctvolume", "diameter 14.57"]
    assert emu.pumps[0].motion == ""
