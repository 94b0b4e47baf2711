"""Device emulators on pseudo-terminals, speaking the real protocols' bytes.

Each :class:`PtyEmulator` owns the master side of a pty (``pty.openpty()`` + ``tty.setraw`` on
the slave at once: Linux's line discipline on a cooked slave mangles the bytes written before a
client opens it) and serves it from one thread. The slave fd stays open for the emulator's lifetime
(otherwise the master reads EIO once a client closes its port; EIO is also treated as
"client went away, keep serving"). A driver opens :attr:`PtyEmulator.port` with plain pyserial,
exactly as it opens ``/dev/ttyUSB0``.

Fault injection (per emulator): :attr:`no_reply` (silent device), :meth:`garble_next` (corrupt
the next reply), :attr:`disconnected` (the cable is pulled: requests are dropped, even the
watchdog feeding). Device-specific faults live on the models of
:mod:`autolab.virtuallab.reactor` (stall, sensor break, runaway heater, power cycle).
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import threading
import time
import tty
from collections.abc import Callable

from autolab.hardware.protocols import eurotherm as eu
from autolab.hardware.protocols import ika, newera, spectro, vici
from autolab.virtuallab.reactor import HeaterModel, PumpModel, VirtualReactor


class PtyEmulator:
    """A device on a pty, served by a thread; subclasses frame and answer requests.

    Args:
        name: Device (or bus) name.
        reactor: Shared physics.
    """

    def __init__(self, name: str, reactor: VirtualReactor) -> None:
        self.name = name
        self.reactor = reactor
        self.master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self.no_reply = False
        self.disconnected = False
        self._garble = 0
        self._garble_in = 0
        self._drop = 0
        self._drop_acks_only = False
        self._buf = b""
        self._last_rx = time.monotonic()
        # not `_stop`: a device emulator subclass may well name its own "stop the pump" so
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"emu-{name}", daemon=True)
        self.requests = 0
        #: Fault injection: called before each reply goes out, outside the reactor lock (a test
        #: may hold a reply there while the rest of the lab runs on).
        self.before_reply: Callable[[], None] | None = None

    #: A partial request is dropped after this long without a byte (inf: kept).
    stale_after_s = float("inf")

    def start(self) -> None:
        """Start serving."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the pty (idempotent)."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def garble_next(self, n: int = 1) -> None:
        """Corrupt the next ``n`` replies (one byte flipped)."""
        self._garble = n

    def drop_next(self, n: int = 1, *, acks_only: bool = False) -> None:
        """Lose the next ``n`` replies on the line (``acks_only``: replies carrying an alarm).

        The device acted (an alarm reply still acknowledges its alarm), but the host never
        sees the answer: a reply lost to noise, or to a timeout under load.
        """
        self._drop, self._drop_acks_only = n, acks_only

    def garble_next_request(self, n: int = 1) -> None:
        """Corrupt the next ``n`` requests on their way in (noise on the host's transmit line)."""
        self._garble_in = n

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not ready:
                with self.reactor.lock:  # sent under the lock: once a test sees the
                    self.reactor.advance()  # device's state say "sent", the bytes are out
                    self._send(self.unsolicited())
                if self._buf and time.monotonic() - self._last_rx > self.stale_after_s:
                    self._buf = b""  # a partial request the line went silent on
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: the client closed its end; keep serving
                time.sleep(0.05)
                continue
            if self.disconnected:
                continue
            self._last_rx = time.monotonic()
            if self._garble_in and len(data) > 4:
                self._garble_in -= 1
                mid = len(data) // 2
                data = data[:mid] + bytes([data[mid] ^ 0x01]) + data[mid + 1:]
            self._buf += data
            while True:
                with self.reactor.lock:
                    self.reactor.advance()
                    self._send(self.unsolicited())  # an alarm that came with this request
                    taken = self.take(self._buf)
                    if taken is None:
                        break
                    used, reply = taken
                    self._buf = self._buf[used:]
                    self.requests += 1
                if self.before_reply is not None:
                    self.before_reply()
                if reply and self._drop and (not self._drop_acks_only or b"A?" in reply):
                    self._drop -= 1
                    continue
                if reply and not self.no_reply:
                    if self._garble:
                        self._garble -= 1
                        mid = len(reply) // 2
                        reply = reply[:mid] + bytes([reply[mid] ^ 0x5A]) + reply[mid + 1:]
                    with contextlib.suppress(OSError):
                        os.write(self.master, reply)

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """Consume one request from ``buf``: (bytes used, reply) or None if incomplete."""
        raise NotImplementedError

    def unsolicited(self) -> bytes:
        """Bytes the device sends on its own (called under the reactor lock; none here)."""
        return b""

    def _send(self, data: bytes) -> None:
        """Write bytes the device sends unasked, unless it is silent or the cable is pulled."""
        if data and not self.no_reply and not self.disconnected:
            with contextlib.suppress(OSError):
                os.write(self.master, data)


def _line(buf: bytes, eol: bytes) -> tuple[int, bytes] | None:
    i = buf.find(eol)
    return None if i < 0 else (i + len(eol), buf[:i])


def cr_request(buf: bytes) -> tuple[int, str] | None:
    """One request ended by CR, LFs before it skipped (the LF of a host's CR LF), as text.

    Returns:
        (bytes consumed, the request), or ``None`` while no CR has come.
    """
    skip = len(buf) - len(buf.lstrip(b"\n"))
    end = buf.find(b"\r", skip)
    if end < 0:
        return None
    return end + 1, buf[skip:end].decode("ascii", errors="replace")


def _any_line(buf: bytes) -> tuple[int, bytes] | None:
    """One line ended by CR LF, CR or LF (a CR at the very end waits for a possible LF)."""
    for i, b in enumerate(buf):
        if b == 0x0A:
            return i + 1, buf[:i]
        if b == 0x0D:
            if i + 1 == len(buf):
                return None if len(buf) == 1 else (i + 1, buf[:i])
            return (i + 2 if buf[i + 1] == 0x0A else i + 1), buf[:i]
    return None


# ============================================================================= pumps
class PumpChainEmulator(PtyEmulator):
    """New Era NE-1000 pumps daisy-chained on one RS-232 line (Basic and Safe mode).

    A partial packet is discarded after 0.5 s without a byte (the manual's Safe-mode
    inter-byte timeout), so a truncated request cannot swallow the next one.
    """

    stale_after_s = 0.5

    #: Safe mode's auto-alarm (manual: "the pump spontaneously transmits a status packet when
    #: an alarm occurs"; it does not acknowledge the alarm, the next reply still carries it).
    auto_alarm = True

    def __init__(self, name: str, reactor: VirtualReactor) -> None:
        super().__init__(name, reactor)
        self._announced: dict[str, str] = {n: p.alarm for n, p in reactor.pumps.items()}
        self._ignore = 0
        #: Manual variation: answer Safe-mode packets with Basic-framed replies (the manual
        #: gives the Safe-mode packet layout of requests and says the auto-alarm is a "status
        #: packet"; it does not say in which framing a pump in Safe mode replies).
        self.basic_replies_in_safe_mode = False
        #: Manual variation: ``STP`` pauses a running program (status ``P``) and a second
        #: ``STP`` stops it (the manual leaves open whether one ``STP`` pauses or stops); a
        #: paused pump is not stopped, so it refuses ``DIA`` (``?NA``) like a running one.
        self.stp_pauses = False

    def ignore_next(self, n: int = 1) -> None:
        """Answer the next ``n`` commands ``?IGN`` without executing them.

        The manual: ``?IGN`` = "Command ignored due to a simultaneous new Phase start". A status
        query carries no command, so it is answered as usual.
        """
        self._ignore = n

    def unsolicited(self) -> bytes:
        """Auto-alarm packets of pumps in Safe mode whose alarm is new since the last look.

        First, each Safe-mode timer that elapsed stops its pump with alarm ``T`` (the manual:
        the time between consecutive valid packets; "if the time out elapses, a pump alarm
        will occur, stopping the pump"). It runs whether or not the pump pumps: the manual
        names no such condition, and a timer that ran only while pumping hid a rig whose first
        pump heard nothing for 3.5 s while the others came up.
        """
        now = time.monotonic()
        for p in self.reactor.pumps.values():
            if p.safe_timeout_s > 0 and p.safe_armed and \
                    now - p.last_packet_wall > p.safe_timeout_s:
                p.safe_armed = False  # fires once per silence; the next valid packet re-arms
                if not p.alarm:  # a pending alarm is not overwritten
                    p.stall("T")
        out = b""
        for name, p in self.reactor.pumps.items():
            if (p.alarm and p.alarm != self._announced.get(name) and p.safe_timeout_s > 0
                    and self.auto_alarm):
                out += newera.encode_safe_data(f"{p.address:02d}A?{p.alarm}".encode("ascii"))
            self._announced[name] = p.alarm
        return out

    def power_cycle(self, name: str) -> None:
        """Power-cycle one pump: stopped, alarm R, first command ignored.

        Settings and counters survive; so does Safe mode (the manual: "Safe mode persists across
        power cycles"), whose timer starts again at the first valid packet.
        """
        with self.reactor.lock:
            p = self.reactor.pumps[name]
            p.running, p.paused, p.alarm, p.ignore_next = False, False, "R", True
            p.last_packet_wall, p.safe_armed = time.monotonic(), False

    def slow_down(self, name: str, fraction: float) -> None:
        """Make one pump deliver ``fraction`` of its set rate (``RAT`` still reads the set rate)."""
        with self.reactor.lock:
            self.reactor.pumps[name].rate_fraction = fraction

    def keypad_pause(self, name: str) -> None:
        """Someone pressed the pump's keypad: the program pauses (status ``P``), motor stops."""
        with self.reactor.lock:
            p = self.reactor.pumps[name]
            if p.running:
                p.running, p.paused = False, True

    def keypad_run(self, name: str) -> None:
        """Someone pressed RUN on the pump's keypad: it pumps at its set rate, unasked."""
        with self.reactor.lock:
            p = self.reactor.pumps[name]
            p.running, p.paused = True, False

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One request (see :meth:`PtyEmulator.take`)."""
        if not buf:
            return None
        if buf[0] == newera.STX:
            if len(buf) < 2 or len(buf) < 1 + buf[1]:
                return None
            packet = buf[:1 + buf[1]]
            try:
                data = newera.decode_safe(packet).decode("ascii")
            except (newera.PumpProtocolError, UnicodeDecodeError):
                # ?COM from a pump in Safe mode (the first: on a chain all would answer)
                safe = [p for p in self.reactor.pumps.values() if p.safe_timeout_s > 0]
                if safe:
                    body = f"{safe[0].address:02d}S?COM".encode("ascii")
                    return len(packet), newera.encode_safe_data(body)
                return len(packet), b""
            return len(packet), self._answer(data, safe=True)
        got = _line(buf, b"\r")
        if got is None:
            return None
        used, line = got
        return used, self._answer(line.decode("ascii", errors="replace"), safe=False)

    def _answer(self, data: str, *, safe: bool) -> bytes:
        address, cmd, args = newera.split_request(data)
        pumps = [p for p in self.reactor.pumps.values()
                 if address is None or p.address == address]
        if not pumps:
            return b""
        p = pumps[0]
        if (p.safe_timeout_s > 0) != safe:
            # In Safe mode a Basic line is not a valid packet; the manual does not say that a
            # Basic-mode pump answers Safe packets, so it does not either.
            return b""
        if p.ignore_next:
            p.ignore_next = False
            return b""
        p.last_packet_wall = time.monotonic()
        p.safe_armed = safe  # the Safe-mode timer starts at the first valid packet
        if p.alarm:  # the alarm reply acknowledges it; the command is not executed
            reply = newera.PumpReply(p.address, "A", p.alarm)
            p.alarm = ""
        elif self._ignore and cmd:
            self._ignore -= 1
            reply = newera.PumpReply(p.address, _status(p), "", "", "IGN")
        else:
            reply = self._execute(p, cmd, args)
        body = reply.body().encode("ascii")
        if safe and not self.basic_replies_in_safe_mode:
            return newera.encode_safe_data(body)
        return bytes([newera.STX]) + body + bytes([newera.ETX])

    def _execute(self, p: PumpModel, cmd: str, args: str) -> newera.PumpReply:

        def ok(data: str = "", error: str | None = None) -> newera.PumpReply:
            return newera.PumpReply(p.address, _status(p), "", data, error)
        try:
            if cmd == "":
                return ok()
            if cmd == "SAF":
                p.safe_timeout_s = int(args or 0)
                return ok()
            if cmd == "VER":
                return ok("NE1000V3.928")
            if cmd == "DIA":
                if not args:
                    return ok(newera.format_number(p.diameter_mm))
                if p.running or p.paused:  # "only when stopped"
                    return ok(error="NA")
                if not newera.number_ok(args):
                    return ok(error="OOR")
                p.diameter_mm = float(args)
                return ok()
            if cmd == "RAT":
                return self._rate(p, args, ok)
            if cmd == "DIR":
                if not args:
                    return ok("INF" if p.infuse else "WDR")
                if args not in ("INF", "WDR"):
                    return ok(error="OOR")
                p.infuse = args == "INF"
                return ok()
            if cmd == "VOL":
                return ok()
            if cmd == "RUN":
                if (p.left_ml <= 0 and p.infuse) or (p.left_ml >= p.syringe_ml and not p.infuse):
                    p.stall("S")
                    return newera.PumpReply(p.address, "A", "S")
                p.running, p.paused = True, False
                return ok()
            if cmd == "STP":
                p.running, p.paused = False, self.stp_pauses and p.running
                return ok()
            if cmd == "DIS":  # volume units follow the diameter (<= 14.00 mm: µL)
                units = "UL" if p.diameter_mm <= 14.0 else "ML"
                return ok(newera.format_dispensed(p.infused_ml, p.withdrawn_ml, units))
            if cmd == "CLD":
                if args == "INF":
                    p.infused_ml = 0.0
                elif args == "WDR":
                    p.withdrawn_ml = 0.0
                return ok()
        except (ValueError, newera.PumpProtocolError):
            return ok(error="OOR")
        return ok(error="")

    @staticmethod
    def _rate(p: PumpModel, args: str,
              ok: Callable[..., newera.PumpReply]) -> newera.PumpReply:
        """``RAT``: query, or set with optional units (the manual's rules, not our driver's).

        The number has at most 4 digits and 3 decimals (else ``?OOR``); without units the
        current ones apply; the rate may change while pumping, the units may not (``?NA``).
        """
        if not args:
            scale = newera.RATE_UNITS_ML_MIN[p.rate_units]
            return ok(newera.format_number(p.rate_ml_min / scale) + p.rate_units)
        given = args[-2:] in newera.RATE_UNITS_ML_MIN
        units, number = (args[-2:], args[:-2]) if given else (p.rate_units, args)
        if not newera.number_ok(number):
            return ok(error="OOR")
        if p.running and units != p.rate_units:
            return ok(error="NA")
        rate = float(number) * newera.RATE_UNITS_ML_MIN[units]
        if rate > 100.0:
            return ok(error="OOR")
        p.rate_ml_min, p.rate_units = rate, units
        return ok()


def _status(p: PumpModel) -> str:
    """The status character of a pump without an alarm."""
    return ("I" if p.infuse else "W") if p.running else ("P" if p.paused else "S")


# ============================================================================= heaters
class ModbusBusEmulator(PtyEmulator):
    """Eurotherm 3200 controllers on one RS-485 bus (Modbus RTU slaves, FC 3/4/6/16).

    As the Modbus specification and the 3200 manual say, not as our driver expects: a frame
    with a bad CRC or for another address gets no reply; a function code the instrument does
    not implement gets exception 01; a register outside the map, or a write to a read-only
    one (PV, working output, working SP, status), gets exception 02; a write to address 0
    (broadcast) is obeyed by every controller and answered by none.

    Args:
        name: Bus name.
        reactor: Shared physics.
        decimals: The controllers' display resolution, which scales every temperature
            register (1: 234.5 °C is 2345; 0: 234).
    """

    #: Registers the controllers answer (others: exception 02).
    REGISTERS = frozenset({eu.PV, eu.TARGET_SP, eu.MANUAL_OP, eu.WORKING_OP, eu.WORKING_SP,
                           eu.REMOTE_SP, eu.OP_HI, eu.SP_RATE, eu.STATUS, eu.LOCAL_REMOTE})

    def __init__(self, name: str, reactor: VirtualReactor, decimals: int = eu.DECIMALS) -> None:
        super().__init__(name, reactor)
        self.decimals = decimals
        #: Fault injection: status bits OR-ed into a controller's register 75, by address.
        self.extra_status: dict[int, int] = {}
        #: Fault injection: the next n requests get this exception code (06 slave busy, 04
        #: device failure ...) instead of an answer.
        self.exception_next: tuple[int, int] = (0, 0)
        #: Function codes the controllers implement (others: exception 01). Nothing we read of
        #: HA028651 names the 3200's; a slave may implement write single (6) without write multiple.
        self.functions = frozenset({eu.READ_HOLDING, eu.READ_INPUT, eu.WRITE_SINGLE,
                                    eu.WRITE_MULTIPLE})
        #: Manual output value (MAN.OP, register 3), %, by address: what a controller in
        #: manual mode would put out (the model holds the PV in manual; the cut zeroes it).
        self.manual_op_pct: dict[int, float] = {}

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One request (see :meth:`PtyEmulator.take`)."""
        if len(buf) < 4:
            return None
        fc = buf[1]
        if fc in (eu.READ_HOLDING, eu.READ_INPUT, eu.WRITE_SINGLE):
            n = 8
        elif fc == eu.WRITE_MULTIPLE:
            if len(buf) < 7:
                return None
            n = 9 + buf[6]
        else:  # an unknown function's length is unknown: the buffer is one frame (RTU
            # frames end in silence, and a request arrives in one read)
            if eu.crc_modbus(buf[:-2]) != buf[-2:]:
                return len(buf), b""
            return len(buf), self._exception(buf[0], fc, eu.ILLEGAL_FUNCTION)
        if len(buf) < n:
            return None
        frame = buf[:n]
        if eu.crc_modbus(frame[:-2]) != frame[-2:]:
            return n, b""  # a slave ignores frames with a bad CRC
        if frame[0] == eu.BROADCAST:
            if fc in (eu.WRITE_SINGLE, eu.WRITE_MULTIPLE):
                for h in self.reactor.heaters.values():
                    self._apply(h, frame)
            return n, b""
        heaters = [h for h in self.reactor.heaters.values() if h.address == frame[0]]
        if not heaters:
            return n, b""
        if fc not in self.functions:
            return n, self._exception(frame[0], fc, eu.ILLEGAL_FUNCTION)
        count, code = self.exception_next
        if count > 0:
            self.exception_next = (count - 1, code)
            return n, self._exception(frame[0], fc, code)
        return n, self._answer(heaters[0], frame)

    def _answer(self, h: HeaterModel, frame: bytes) -> bytes:
        fc, reg = frame[1], int.from_bytes(frame[2:4], "big")
        if fc in (eu.READ_HOLDING, eu.READ_INPUT):
            count = int.from_bytes(frame[4:6], "big")
            regs = range(reg, reg + count)
            if not all(r in self.REGISTERS for r in regs):
                return self._exception(frame[0], fc, eu.ILLEGAL_ADDRESS)
            words = [self._read(h, r) for r in regs]
            body = bytes([frame[0], fc, 2 * count]) + b"".join(w.to_bytes(2, "big")
                                                               for w in words)
            return body + eu.crc_modbus(body)
        values = self._values(frame)
        if not all(r in self.REGISTERS and r not in eu.READ_ONLY
                   for r in range(reg, reg + len(values))):
            return self._exception(frame[0], fc, eu.ILLEGAL_ADDRESS)
        self._apply(h, frame)
        body = frame[:6]
        return body + eu.crc_modbus(body)

    @staticmethod
    def _values(frame: bytes) -> list[int]:
        if frame[1] == eu.WRITE_SINGLE:
            return [int.from_bytes(frame[4:6], "big")]
        count = int.from_bytes(frame[4:6], "big")
        return [int.from_bytes(frame[7 + 2 * i:9 + 2 * i], "big") for i in range(count)]

    def _apply(self, h: HeaterModel, frame: bytes) -> None:
        reg = int.from_bytes(frame[2:4], "big")
        for i, v in enumerate(self._values(frame)):
            if reg + i not in eu.READ_ONLY:
                self._write(h, reg + i, v)

    @staticmethod
    def _exception(address: int, fc: int, code: int) -> bytes:
        body = bytes([address, fc | 0x80, code])
        return body + eu.crc_modbus(body)

    def _read(self, h: HeaterModel, reg: int) -> int:
        d = self.decimals
        temperatures = {eu.PV: h.pv_c, eu.REMOTE_SP: h.remote_sp_c,
                        eu.WORKING_SP: h.working_sp_c, eu.TARGET_SP: h.local_sp_c,
                        eu.SP_RATE: h.ramp_c_per_min}
        if reg in temperatures:
            return eu.to_register(temperatures[reg], d)
        if reg == eu.STATUS:
            return (eu.encode_status(sensor_break=h.sensor_break, remote_sp_fail=h.remote_failed,
                                     manual_mode=h.manual)
                    | self.extra_status.get(h.address, 0))
        if reg == eu.LOCAL_REMOTE:
            return int(h.remote)
        if reg == eu.OP_HI:
            return eu.to_register(h.op_hi_pct, eu.OP_DECIMALS)
        if reg == eu.MANUAL_OP:
            return eu.to_register(self.manual_op_pct.get(h.address, 0.0), eu.OP_DECIMALS)
        return 0

    def _write(self, h: HeaterModel, reg: int, word: int) -> None:
        v = eu.from_register(word, self.decimals)
        if reg == eu.REMOTE_SP:
            h.remote_sp_c = v
            h.last_remote_wall = time.monotonic()
        elif reg == eu.TARGET_SP:
            h.local_sp_c = v
        elif reg == eu.SP_RATE:
            h.ramp_c_per_min = v
        elif reg == eu.LOCAL_REMOTE and not h.remote_disabled:
            h.remote = word == 1
            h.last_remote_wall = time.monotonic()
        elif reg == eu.OP_HI:  # never below OP.LO
            h.op_hi_pct = max(eu.from_register(word, eu.OP_DECIMALS), h.op_lo_pct)
        elif reg == eu.MANUAL_OP:
            self.manual_op_pct[h.address] = eu.from_register(word, eu.OP_DECIMALS)


# ============================================================================= stirrers
class StirrerEmulator(PtyEmulator):
    """IKA stirrer (NAMUR) under one stage."""

    def __init__(self, name: str, reactor: VirtualReactor) -> None:
        super().__init__(name, reactor)
        reactor.stirrers[name] = {"sp": 0.0, "on": 0.0, "blocked": 0.0}

    #: Whether this unit knows ``STATUS_4`` (not every IKA model does).
    has_status = True

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One request line, ended by CR LF or a bare CR or LF (see :meth:`PtyEmulator.take`).

        Replies end in "blank CR LF", as the IKA manuals write them.
        """
        got = _any_line(buf)
        if got is None:
            return None
        used, line = got
        reply = self._answer(line)
        return used, reply.replace(b"\r\n", b" \r\n")

    def _answer(self, line: bytes) -> bytes:
        s = self.reactor.stirrers[self.name]
        try:
            cmd, value = ika.split_command(line)
        except ika.NamurProtocolError:
            return b""
        if cmd == "IN_NAME":
            return b"RCT basic\r\n"
        if cmd == "IN_PV_4":
            running = s["on"] and not s["blocked"]
            return ika.format_value(s["sp"] if running else 0.0)
        if cmd == "IN_SP_4":
            return ika.format_value(s["sp"])
        if cmd == "STATUS_4" and self.has_status:
            return ika.format_value(-1.0 if s["blocked"] else s["on"])
        if cmd == "OUT_SP_4" and value is not None:
            s["sp"] = max(0.0, min(value, 1500.0))
        elif cmd == "START_4":
            s["on"] = 1.0
        elif cmd == "STOP_4":
            s["on"] = 0.0
        return b""


# ============================================================================= valves
class ValveEmulator(PtyEmulator):
    """VICI multiposition actuator."""

    def __init__(self, name: str, reactor: VirtualReactor, positions: int = 6,
                 initial: int = 1) -> None:
        super().__init__(name, reactor)
        self.positions = positions
        reactor.valves[name] = initial
        #: Fault injection tied to the procedure's commands: called (under the reactor lock)
        #: with the position after each move command.
        self.on_move: Callable[[int], None] | None = None

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One request line (see :meth:`PtyEmulator.take`)."""
        got = _line(buf, b"\r")
        if got is None:
            return None
        used, line = got
        cmd, arg = vici.split_command(line)
        if cmd == "CP":
            return used, f"Position is = {self.reactor.valves[self.name]}\r".encode()
        if cmd == "NP":
            return used, f"NP = {self.positions}\r".encode()
        if cmd == "VR":
            return used, b"UA v2.01\r"
        if cmd == "GO" and arg is not None and 1 <= arg <= self.positions:
            self.reactor.valves[self.name] = arg
            self.moved(arg)
            if self.on_move is not None:
                self.on_move(arg)
            return used, b""
        return used, b"Bad command\r"

    def moved(self, position: int) -> None:
        """The valve reached ``position`` (the plumbing downstream may care)."""


class SulfurValveEmulator(ValveEmulator):
    """The selection valve on the shell-feed line: its position chooses the injection tank.

    Args:
        name: Device name.
        reactor: Shared physics; its ``injection`` follows the valve.
        inject_tanks: The plumbing, as in the devices file: position ``j`` feeds tank
            ``inject_tanks[j-1]``; a position beyond the list is a plugged port, which leaves
            the injection where it was (the rig's envelope never selects one).
        positions: Number of positions.
        initial: Position at power-up.
    """

    def __init__(self, name: str, reactor: VirtualReactor, inject_tanks: tuple[int, ...], *,
                 positions: int = 6, initial: int = 1) -> None:
        self.inject_tanks = tuple(inject_tanks)
        super().__init__(name, reactor, positions=positions, initial=initial)
        self.moved(initial)

    def moved(self, position: int) -> None:
        """Feed the tank this port is plumbed to (one injection point)."""
        if 1 <= position <= len(self.inject_tanks):
            self.reactor.injection = (self.inject_tanks[position - 1], 1)


# ============================================================================= spectrometer
class LightPathEmulator(PtyEmulator):
    """The light path of an ASP-1 head (lamp/LED source, shutter, cell selector) on its own.

    What an ``asp1_light`` device talks to when the detector is another instrument (an Ocean
    spectrometer over USB): the ASP-1 setting commands and their queries, nothing else.
    """

    IDN = "AUTOLAB,ASP-1L,VL0002,1.0"

    def __init__(self, name: str, reactor: VirtualReactor) -> None:
        super().__init__(name, reactor)
        self.source = "OFF"
        self.shutter = "CLOSE"
        self.cell = "SAMPLE"
        #: Fault injection: the lamp and LED are burnt out (``SRC?`` reads ``OFF``, no light).
        self.source_failed = False

    @property
    def lit(self) -> str:
        """The source that actually shines (``OFF`` when it has failed)."""
        return "OFF" if self.source_failed else self.source

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One request line (see :meth:`PtyEmulator.take`)."""
        got = _line(buf, b"\n")
        if got is None:
            return None
        used, line = got
        parts = line.decode("ascii", errors="replace").strip().split()
        if not parts:
            return used, b""
        cmd, arg = parts[0].upper(), (parts[1].upper() if len(parts) > 1 else None)
        return used, self._answer(cmd, arg)

    def _light(self, cmd: str, arg: str | None) -> bytes | None:
        """Answer a light-path command, or None if it is not one."""
        queries = {"*IDN?": self.IDN, "SRC?": self.lit, "SHUT?": self.shutter,
                   "CELL?": self.cell}
        if cmd in queries:
            return queries[cmd].encode("ascii") + b"\n"
        settings = {"SRC": spectro.SOURCES, "SHUT": spectro.SHUTTER, "CELL": spectro.CELLS}
        if cmd in settings:
            if arg not in settings[cmd]:
                return f"ERR {cmd} expects one of {'|'.join(settings[cmd])}\n".encode()
            setattr(self, {"SRC": "source", "SHUT": "shutter", "CELL": "cell"}[cmd], arg)
            return b"OK\n"
        return None

    def _answer(self, cmd: str, arg: str | None) -> bytes:
        reply = self._light(cmd, arg)
        return reply if reply is not None else f"ERR unknown command {cmd}\n".encode()


class SpectrometerEmulator(LightPathEmulator):
    """The ASP-1 inline optics head; frames come from the reactor's outlet (twin optics)."""

    IDN = "AUTOLAB,ASP-1,VL0001,1.0"

    def __init__(self, name: str, reactor: VirtualReactor) -> None:
        super().__init__(name, reactor)
        self.integration_ms = 20.0
        #: Fault injection tied to the procedure's progress, not to wall time: called (under the
        #: reactor lock: keep it short) with the lit source and the cell after each frame, before
        #: its reply goes out, so a fault it injects lands between two known frames.
        self.on_frame: Callable[[str, str], None] | None = None

    def _answer(self, cmd: str, arg: str | None) -> bytes:
        light = self._light(cmd, arg)
        if light is not None:
            return light
        twin = self.reactor.twin
        det = twin.config.detector
        wl = twin.wavelengths_nm
        queries = {
            "PIX?": str(wl.size),
            "WL?": f"{float(wl[0])!r} {float(wl[-1] - wl[0]) / (wl.size - 1)!r} 0 0",
            "SAT?": f"{det.full_scale_counts:g}", "EXC?": f"{det.excitation_nm:g}",
            "PATH?": f"{det.path_length_cm:g}", "INT?": f"{self.integration_ms:g}"}
        if cmd in queries:
            return queries[cmd].encode("ascii") + b"\n"
        if cmd == "INT":
            try:
                value = float(arg or "nan")
            except ValueError:
                value = float("nan")
            lo, hi = spectro.INT_RANGE_MS
            if not lo <= value <= hi:
                return f"ERR INT out of range {lo:g}-{hi:g} ms\n".encode()
            self.integration_ms = value
            return b"OK\n"
        if cmd == "ACQ":
            counts = self.reactor.frame(source=self.lit, shutter_open=self.shutter == "OPEN",
                                        cell=self.cell, integration_ms=self.integration_ms)
            if self.on_frame is not None:
                self.on_frame(self.lit, self.cell)
            return spectro.encode_frame(counts)
        return f"ERR unknown command {cmd}\n".encode()
