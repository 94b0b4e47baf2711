r"""Harvard Pump 11 Elite / PHD ULTRA pumps on one pty, answering as the manual says.

Written from the manual (Pump 11 Elite manual 5420-002 Rev C p.53-58, PHD ULTRA p.83-88), not
from our driver: requests ``[address][:]command [args]`` ended by CR (a LF after it is
ignored), commands abbreviated to their first four letters or more; each data line
``\n[NN:]text\r`` and the prompt ``\n[NN]P`` (``:`` idle, ``>`` infusing, ``<``
withdrawing, ``*`` stalled, ``T*`` target reached); errors as ``Command error:`` or
``Argument error: <arg>`` with the message indented on the next line. A request for an address
no pump has gets no reply.

Where the manual is silent this emulator picks one reading, and the driver is tested against
both where it matters: a stalled pump keeps its ``*`` prompt until its next run (``stop``
does not clear it); a pump sends no prompt unasked unless :attr:`HarvardChainEmulator.
unsolicited_prompts` is set (the manual: poll mode "inhibits unsolicited prompts").
"""

from __future__ import annotations

import re
from collections.abc import Callable

from autolab.hardware.protocols import harvard
from autolab.virtuallab.emulators import PtyEmulator, cr_request
from autolab.virtuallab.reactor import PumpModel, VirtualReactor

#: Full command names (a request may abbreviate one to its first four letters or more).
COMMANDS = ("address", "baud", "echo", "poll", "nvram", "force", "ver", "version", "irun", "wrun",
            "rrun", "run", "stop", "stp", "irate", "wrate", "crate", "diameter", "ivolume",
            "wvolume", "tvolume", "civolume", "cwvolume", "cvolume", "ctvolume", "status")
#: Fastest rate the emulated pump takes, mL/min (faster: ``Argument error``).
MAX_RATE_ML_MIN = 100.0
#: Slowest nonzero rate, mL/min.
MIN_RATE_ML_MIN = 1e-6
_UNITS = re.compile(r"([munp])l?/(hr|h|min|m|sec|s)", re.IGNORECASE)

Reply = tuple[tuple[str, ...], str | None]  # data lines, prompt override


def canonical(word: str) -> str | None:
    """The full command a request word names (exact, or an abbreviation of >= 4 letters)."""
    if word in COMMANDS:
        return word
    if len(word) >= 4:
        full = [c for c in COMMANDS if c.startswith(word)]
        if len(full) == 1:
            return full[0]
    return None


class HarvardChainEmulator(PtyEmulator):
    """Harvard pumps daisy-chained on one line (their models are the reactor's pumps).

    Harvard pumps have no power-up alarm in the manual, so a model's New Era reset alarm
    ``R`` is cleared here. A reactor stall (alarm ``S``: end of travel, a blocked outlet)
    shows as the ``*`` prompt.
    """

    def __init__(self, name: str, reactor: VirtualReactor) -> None:
        super().__init__(name, reactor)
        for p in reactor.pumps.values():
            if p.alarm == "R":
                p.alarm, p.ignore_next = "", False
        #: Pump names whose target volume was reached (prompt ``T*`` until the next run).
        self.at_target: set[str] = set()
        #: Manual variation: send the new prompt unasked when a pump stalls.
        self.unsolicited_prompts = False
        self._stall_sent: set[str] = set()
        #: Infuse and withdraw rate of each pump, mL/min (``irate``/``wrate``: one each).
        self.rates = {n: {True: p.rate_ml_min, False: p.rate_ml_min}
                      for n, p in reactor.pumps.items()}
        self._command = ""  # the command being executed (handlers shared by several)
        #: Pumps in poll mode (``poll on``): an XON follows each prompt, none is sent unasked.
        self.polled: set[str] = set()
        #: Manual variation: the pump knows no ``poll`` (it answers ``Command error``).
        self.poll_unknown = False
        #: Manual variation: the pump takes ``poll on`` but sends no XON after its prompts.
        self.xon_in_poll_mode = True
        #: Manual variation: the pump knows no ``status`` (the manual calls it internal).
        self.status_unknown = False
        #: Fault injection: pump names whose rate settings are answered ``Argument error``.
        self.refuse_rates: set[str] = set()

    def reach_target(self, name: str) -> None:
        """Fault injection: the pump stops on its own, its target volume reached (``T*``)."""
        with self.reactor.lock:
            self.reactor.pumps[name].running = False
            self.at_target.add(name)

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One request line ended by CR (see :meth:`PtyEmulator.take`)."""
        request = cr_request(buf)
        if request is None:
            return None
        return request[0], self._answer(request[1])

    def unsolicited(self) -> bytes:
        """A ``*`` prompt from each pump that stalled since the last look (if enabled)."""
        out = b""
        for name, p in self.reactor.pumps.items():
            stalled = p.alarm == "S"
            if stalled and name not in self._stall_sent and self.unsolicited_prompts \
                    and name not in self.polled:
                out += harvard.format_reply(p.address, (), "*")
            if stalled:
                self._stall_sent.add(name)
            else:
                self._stall_sent.discard(name)
        return out

    def _name(self, p: PumpModel) -> str:
        return next(n for n, q in self.reactor.pumps.items() if q is p)

    def _prompt(self, p: PumpModel) -> str:
        if p.alarm == "S":
            return "*"
        if self._name(p) in self.at_target:
            return "T*"
        if p.running:
            return ">" if p.infuse else "<"
        return ":"

    def _answer(self, line: str) -> bytes:
        address, word, args = harvard.split_request(line)
        pumps = [p for p in self.reactor.pumps.values() if p.address == address]
        if not pumps:
            return b""
        p = pumps[0]
        if not word:
            lines: tuple[str, ...] = ()
        else:
            command = canonical(word)
            lines = (("Command error:", f"   Unknown command {word}") if command is None
                     else self._execute(p, command, args.strip()))
        polled = self._name(p) in self.polled and self.xon_in_poll_mode
        xon = harvard.XON if polled else b""
        return harvard.format_reply(p.address, lines, self._prompt(p)) + xon

    def _execute(self, p: PumpModel, command: str, args: str) -> tuple[str, ...]:
        handlers: dict[str, Callable[[PumpModel, str], tuple[str, ...]]] = {
            "ver": lambda _p, _a: ("11 ELITE 3.0.4",),
            "version": lambda _p, _a: ("Firmware: 11 ELITE 3.0.4",
                                       f"Pump address: {_p.address}"),
            "address": lambda _p, _a: (f"Pump address is {_p.address}",),
            "diameter": self._diameter,
            "irate": self._rate, "wrate": self._rate, "crate": self._crate,
            "irun": self._run, "wrun": self._run, "run": self._run, "rrun": self._run,
            "stop": self._halt, "stp": self._halt,
            "ivolume": lambda _p, _a: (harvard.format_volume(_p.infused_ml),),
            "wvolume": lambda _p, _a: (harvard.format_volume(_p.withdrawn_ml),),
            "civolume": self._clear, "cwvolume": self._clear, "cvolume": self._clear,
            "ctvolume": self._clear, "tvolume": lambda _p, _a: ("Target volume not set",),
            "status": self._status, "poll": self._poll,
        }
        if (command == "poll" and self.poll_unknown) or (command == "status"
                                                         and self.status_unknown):
            return ("Command error:", f"   Unknown command {command}")
        handler = handlers.get(command)
        if handler is None:  # in the manual, not emulated: the pump answers with its prompt
            return ()
        self._command = command
        return handler(p, args)

    def _diameter(self, p: PumpModel, args: str) -> tuple[str, ...]:
        if not args:
            return (f"{p.diameter_mm:.4f} mm",)
        try:
            value = float(args.split(maxsplit=1)[0])
        except ValueError:
            return ("Argument error: " + args, "   Invalid argument")
        if not 0.1 <= value <= 50.0:
            return ("Argument error: " + args, "   Out of range")
        p.diameter_mm = value
        return ()

    def _rate(self, p: PumpModel, args: str) -> tuple[str, ...]:
        infuse = self._command == "irate"
        rates = self.rates[self._name(p)]
        if not args:
            return (harvard.format_rate(rates[infuse]),)
        parts = args.split()
        m = _UNITS.fullmatch(parts[1]) if len(parts) == 2 else None
        try:
            value = float(parts[0])
        except ValueError:
            m = None
        if m is None:
            return ("Argument error: " + args, "   Invalid argument")
        rate = (value * harvard.VOLUME_ML[m.group(1).lower()]
                / harvard.TIME_MIN[m.group(2).lower()])
        if not MIN_RATE_ML_MIN <= rate <= MAX_RATE_ML_MIN or self._name(p) in self.refuse_rates:
            return ("Argument error: " + args, "   Out of range")
        rates[infuse] = rate
        if infuse == p.infuse:
            p.rate_ml_min = rate
        return ()

    def _poll(self, p: PumpModel, args: str) -> tuple[str, ...]:
        name = self._name(p)
        if not args:
            return (f"Polling mode is {'ON' if name in self.polled else 'OFF'}",)
        if args.lower() not in ("on", "off"):
            return ("Argument error: " + args, "   Invalid argument")
        if args.lower() == "on":
            self.polled.add(name)
        else:
            self.polled.discard(name)
        return ()

    def _crate(self, p: PumpModel, _args: str) -> tuple[str, ...]:
        if not p.running:
            return ()
        word = "Infusing" if p.infuse else "Withdrawing"
        return (f"{word} at {harvard.format_rate(p.rate_ml_min)}",)

    def _run(self, p: PumpModel, _args: str) -> tuple[str, ...]:
        infuse = {"irun": True, "wrun": False, "rrun": not p.infuse}.get(self._command,
                                                                         p.infuse)
        p.alarm = ""
        self.at_target.discard(self._name(p))
        p.infuse = infuse
        p.rate_ml_min = self.rates[self._name(p)][infuse]
        empty = p.left_ml <= 0 if infuse else p.left_ml >= p.syringe_ml
        if empty:
            p.stall("S")
            return ()
        p.running = True
        return ()

    def _halt(self, p: PumpModel, _args: str) -> tuple[str, ...]:
        p.running = False
        return ()

    def _clear(self, p: PumpModel, _args: str) -> tuple[str, ...]:
        if self._command in ("civolume", "cvolume"):
            p.infused_ml = 0.0
        if self._command in ("cwvolume", "cvolume"):
            p.withdrawn_ml = 0.0
        if self._command == "ctvolume":
            self.at_target.discard(self._name(p))
        return ()

    def _status(self, p: PumpModel, _args: str) -> tuple[str, ...]:
        """``rate time volume flags`` (PHD ULTRA: fL/s, s, fL; the flags as the manual lists)."""
        direction = "i" if p.infuse else "w"
        flags = (direction.upper() if p.running else direction) + "." \
            + ("S" if p.alarm == "S" else ".") + "." + direction.upper() \
            + ("T" if self._name(p) in self.at_target else ".")
        rate_fl_s = round(p.rate_ml_min * 1e12 / 60.0) if p.running else 0
        volume_fl = round((p.infused_ml if p.infuse else p.withdrawn_ml) * 1e12)
        return (f"{rate_fl_s} 0 {volume_fl} {flags}",)
