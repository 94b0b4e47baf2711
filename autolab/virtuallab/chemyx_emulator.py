r"""A Chemyx Fusion pump on a pty (one or two channels), answering as the knowledge base says.

Written from Chemyx's knowledge base ("RS232 communication", "serial commands"), not from our
driver: lowercase commands ended by ``\r`` (an ``\n`` after it is ignored; ``\n`` alone ends
nothing), an optional channel prefix ``1 ``/``2 ``; every reply is the echo of the command line,
the reply lines, then ``>``. A set answers with the value the pump took (``rate = 1.5``): a value
outside the limits is not taken, and the echo shows the old one. ``set volume`` is the target
volume, its sign the direction; the pump stops when the target is dispensed. ``pump status``:
0 stopped, 1 running, 2 paused, 3 delayed, 4 stalled.

Where the knowledge base is silent this emulator picks one reading, and the driver is tested
against the other where it matters: ``dispensed volume`` restarts at each ``start`` (switch
:attr:`ChemyxEmulator.cumulative_dispensed` for a count that does not), and is answered as a bare
number in the volume unit; an unknown command is answered with its echo and the prompt alone; a
stall (4) lasts until the next ``start``.
"""

from __future__ import annotations

import math
import re

from autolab.hardware.protocols import chemyx
from autolab.virtuallab.emulators import PtyEmulator, cr_request
from autolab.virtuallab.reactor import PumpModel, VirtualReactor

#: Fastest rate the emulated pump takes, mL/min (a faster set is not taken).
MAX_RATE_ML_MIN = 100.0


class ChemyxEmulator(PtyEmulator):
    """One Chemyx pump on one line.

    Args:
        name: Line name.
        reactor: Shared physics (the pump models are its pumps).
        channels: Pump model name by channel: ``{0: name}`` for a single-channel pump,
            ``{1: a, 2: b}`` for a dual-channel one.
    """

    def __init__(self, name: str, reactor: VirtualReactor, channels: dict[int, str]) -> None:
        super().__init__(name, reactor)
        self.channels = dict(channels)
        for pump in self.channels.values():
            p = reactor.pumps[pump]
            if p.alarm == "R":  # New Era's power-up alarm: Chemyx documents none
                p.alarm, p.ignore_next = "", False
        #: Per pump: ``set units`` code, target volume (signed, in the volume unit), the
        #: counter's value at the last start.
        self.units = dict.fromkeys(self.channels.values(), 0)
        self.target = {n: reactor.pumps[n].syringe_ml for n in self.channels.values()}
        self._base_ml = dict.fromkeys(self.channels.values(), 0.0)
        #: Manual variation: ``dispensed volume`` counts on across starts.
        self.cumulative_dispensed = False
        #: Knowledge-base variation: how the command line is echoed: ``"line"`` as sent,
        #: ``"command"`` without the channel prefix, ``"off"`` not at all (``echo off``).
        self.echo = "line"
        #: Fastest rate taken, mL/min (fault injection: lower it and a set is not taken).
        self.max_rate_ml_min = MAX_RATE_ML_MIN

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One request line ended by CR (see :meth:`PtyEmulator.take`)."""
        request = cr_request(buf)
        if request is None:
            return None
        return request[0], self._answer(request[1])

    def unsolicited(self) -> bytes:
        """Nothing is sent unasked; a running pump stops once its target is dispensed."""
        for name in self.channels.values():
            p = self.reactor.pumps[name]
            if p.running and self._moved_ml(name) >= abs(self.target[name]) * self._vol(name):
                p.running = False
        return b""

    def reach_target(self, name: str) -> None:
        """Fault injection: the pump stops by itself (as when its target volume is reached)."""
        with self.reactor.lock:
            self.reactor.pumps[name].running = False

    def _vol(self, name: str) -> float:
        return chemyx.UNITS[self.units[name]][1]

    def _moved_ml(self, name: str) -> float:
        p = self.reactor.pumps[name]
        return p.infused_ml + p.withdrawn_ml - self._base_ml[name]

    def _answer(self, line: str) -> bytes:
        channel, command = chemyx.split_request(line)
        name = self.channels.get(channel)
        lines = () if name is None else self._execute(name, command)
        if self.echo == "off":
            return "".join(f"{x}\r\n" for x in lines).encode("ascii") + chemyx.PROMPT
        return chemyx.format_reply(line if self.echo == "line" else command, lines)

    def _execute(self, name: str, command: str) -> tuple[str, ...]:
        p = self.reactor.pumps[name]
        m = re.fullmatch(r"set (\w+) (\S+)", command)
        if m:
            return self._set(name, p, m.group(1), m.group(2))
        simple = {"start": self._start, "stop": self._halt, "pause": self._pause}
        if command in simple:
            return simple[command](name, p)
        if command == "pump status":
            code = 4 if p.alarm == "S" else 1 if p.running else 2 if p.paused else 0
            return (str(code),)
        if command == "view parameter":
            rate_unit = chemyx.UNITS[self.units[name]][0]
            return (f"unit = {self.units[name]}", f"dia = {p.diameter_mm:.3f}",
                    f"rate = {chemyx.format_number(p.rate_ml_min / rate_unit)}",
                    f"volume = {chemyx.format_number(self.target[name])}", "time = 0",
                    "delay = 0")
        if command == "dispensed volume":
            counted = p.infused_ml + p.withdrawn_ml
            if not self.cumulative_dispensed:
                counted -= self._base_ml[name]
            return (chemyx.format_number(counted / self._vol(name)),)
        if command == "read limit parameter":
            return (f"{chemyx.format_number(self.max_rate_ml_min)} 0.0001 "
                    f"{chemyx.format_number(p.syringe_ml)} 0.0001",)
        return ()  # unknown (the knowledge base gives no error reply): echo and prompt

    def _set(self, name: str, p: PumpModel, key: str, text: str) -> tuple[str, ...]:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        rate_unit = chemyx.UNITS[self.units[name]][0]
        if key == "units":
            if value in chemyx.UNITS:
                self.units[name] = int(value)
            return (f"units = {self.units[name]}",)
        if key == "diameter":
            if 0.103 <= value <= 40.0:
                p.diameter_mm = value
            return (f"diameter = {p.diameter_mm:.3f}",)
        if key == "rate":
            if 0 < value * rate_unit <= self.max_rate_ml_min:
                p.rate_ml_min = value * rate_unit
            return (f"rate = {chemyx.format_number(p.rate_ml_min / rate_unit)}",)
        if key == "volume":
            if math.isfinite(value) and value != 0:
                self.target[name] = value
                p.infuse = value > 0
            return (f"volume = {chemyx.format_number(self.target[name])}",)
        return ()

    def _start(self, name: str, p: PumpModel) -> tuple[str, ...]:
        p.alarm, p.paused = "", False
        self._base_ml[name] = p.infused_ml + p.withdrawn_ml
        empty = p.left_ml <= 0 if p.infuse else p.left_ml >= p.syringe_ml
        if empty:
            p.stall("S")
        else:
            p.running = True
        return ("Pump start running...",)

    def _halt(self, _name: str, p: PumpModel) -> tuple[str, ...]:
        p.running, p.paused = False, False
        return ("Pump stop!",)

    def _pause(self, _name: str, p: PumpModel) -> tuple[str, ...]:
        if p.running:
            p.running, p.paused = False, True
        return ("Pump pause!",)
