"""Emulators of the ramp-less heater kinds on ptys: Omega CN7500 (Modbus), Julabo, Huber.

Written from the controllers' manuals, not from our drivers: what a unit answers, how it
frames it, and what it does with a request it does not implement. The heater physics are the
reactor's :class:`~autolab.virtuallab.reactor.HeaterModel` (its local setpoint is the unit's
setpoint; its output limit follows RUN/STOP), so the blocks heat and cool as the Eurotherm
ones do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from autolab.hardware.protocols import eurotherm as eu
from autolab.hardware.protocols import huber, julabo, omega
from autolab.virtuallab.emulators import PtyEmulator, _any_line
from autolab.virtuallab.reactor import HeaterModel, VirtualReactor

#: Modbus exception codes.
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3


class OmegaBusEmulator(PtyEmulator):
    """Omega CN7500 controllers on one bus, Modbus ASCII (the usual setting) or RTU.

    As the register map says: function 3 reads registers, 6 writes one, 2 reads bits, 5 writes
    one; any other function (16 included) gets exception 01; a register or bit outside the
    map, or a write to the PV or the status code, gets exception 02. A frame with a bad LRC or
    CRC, or for another address, gets no reply. The PV reads the map's error code while the
    sensor is broken (0x8003) or while a code is injected (:attr:`pv_error`).

    Args:
        name: Bus name.
        reactor: Shared physics (its heaters, by Modbus address).
        mode: ``"ascii"`` or ``"rtu"``, as set on the controllers.
        range_c: The controllers' temperature range (registers 0x1003, 0x1002), °C.
    """

    #: Registers in the map (others: exception 02).
    REGISTERS = frozenset({omega.PV, omega.SV, omega.RANGE_HIGH, omega.RANGE_LOW,
                           omega.CONTROL_METHOD, 0x1009, 0x100A, 0x100B, 0x1012, 0x1013,
                           omega.STATUS})
    READ_ONLY = frozenset({omega.PV, omega.STATUS})

    def __init__(self, name: str, reactor: VirtualReactor, *, mode: str = "ascii",
                 range_c: tuple[float, float] = (-200.0, 600.0)) -> None:
        super().__init__(name, reactor)
        self.mode = mode
        self.range_c = range_c
        #: Fault injection: a PV error code served instead of the PV, by address.
        self.pv_error: dict[int, int] = {}
        #: Fault injection: the status/error code (0x102E), by address.
        self.status_code: dict[int, int] = {}
        #: Fault injection: the next n requests get this exception code instead of an answer.
        self.exception_next: tuple[int, int] = (0, 0)
        #: Where the unit keeps its status/error code: 0x102E, 0x4750 on some models (the
        #: map's variation), ``None`` on a unit that has neither.
        self.status_register: int | None = omega.STATUS
        #: The function that reads the RUN/STOP bit: 2 as the map says; 1 (read coils) on a
        #: unit that reads its coils the usual Modbus way (then 2 is an illegal function).
        self.bit_read_fc = omega.READ_BITS
        #: SV writes per address (a unit may keep its setpoint in EEPROM).
        self.sv_writes: dict[int, int] = {}
        for h in reactor.heaters.values():
            h.remote = False  # the unit has one setpoint: the heater model's local one

    # --------------------------------------------------------------------- framing
    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One request (see :meth:`PtyEmulator.take`)."""
        if self.mode == "ascii":
            return self._take_ascii(buf)
        return self._take_rtu(buf)

    def _take_ascii(self, buf: bytes) -> tuple[int, bytes] | None:
        start = buf.find(b":")
        if start < 0:
            return (len(buf), b"") if buf else None
        end = buf.find(b"\r\n", start)
        if end < 0:
            return None
        try:
            pdu = omega.decode_ascii(buf[start:end + 2])
        except omega.OmegaProtocolError:
            return end + 2, b""  # a slave ignores a frame with a bad LRC
        reply = self._answer(pdu)
        return end + 2, omega.encode_ascii(reply) if reply else b""

    def _take_rtu(self, buf: bytes) -> tuple[int, bytes] | None:
        if len(buf) < 4:
            return None
        # every request of the map's functions is 8 bytes; another function's length is
        # unknown, so the buffer is one frame (RTU frames end in silence)
        n = 8 if buf[1] in (1, 2, 3, 5, 6) else len(buf)
        if len(buf) < n:
            return None
        frame = buf[:n]
        if eu.crc_modbus(frame[:-2]) != frame[-2:]:
            return n, b""
        return n, self._rtu(self._answer(frame[:-2]))

    @staticmethod
    def _rtu(pdu: bytes) -> bytes:
        return pdu + eu.crc_modbus(pdu) if pdu else b""

    # --------------------------------------------------------------------- the unit
    def _answer(self, pdu: bytes) -> bytes:
        """The reply PDU (address, function, data) to a request PDU, or b"" (no reply)."""
        address, fc = pdu[0], pdu[1]
        heaters = [h for h in self.reactor.heaters.values() if h.address == address]
        if not heaters or address == 0:
            return b""
        if fc not in (self.bit_read_fc, omega.READ_REGISTERS, omega.WRITE_BIT,
                      omega.WRITE_REGISTER) or len(pdu) != 6:
            return bytes([address, fc | 0x80, ILLEGAL_FUNCTION])
        count, code = self.exception_next
        if count > 0:
            self.exception_next = (count - 1, code)
            return bytes([address, fc | 0x80, code])
        h = heaters[0]
        reg, value = int.from_bytes(pdu[2:4], "big"), int.from_bytes(pdu[4:6], "big")
        if fc in (self.bit_read_fc, omega.WRITE_BIT):
            return self._bit(h, pdu, reg, value)
        if fc == omega.READ_REGISTERS:
            regs = range(reg, reg + value)
            if not all(self._readable(r) for r in regs) or value == 0:
                return bytes([address, fc | 0x80, ILLEGAL_ADDRESS])
            words = b"".join(self._read(h, r).to_bytes(2, "big") for r in regs)
            return bytes([address, fc, len(words)]) + words
        if reg not in self.REGISTERS or reg in self.READ_ONLY:
            return bytes([address, fc | 0x80, ILLEGAL_ADDRESS])
        if not self._write(h, reg, value):
            return bytes([address, fc | 0x80, ILLEGAL_VALUE])
        return pdu  # a write is echoed

    def _readable(self, reg: int) -> bool:
        if reg in (omega.STATUS, omega.STATUS_ALT):
            return reg == self.status_register
        return reg in self.REGISTERS

    def _bit(self, h: HeaterModel, pdu: bytes, reg: int, value: int) -> bytes:
        address, fc = pdu[0], pdu[1]
        if reg != omega.RUN_BIT:
            return bytes([address, fc | 0x80, ILLEGAL_ADDRESS])
        if fc == self.bit_read_fc:
            if value != 1:
                return bytes([address, fc | 0x80, ILLEGAL_ADDRESS])
            return bytes([address, fc, 1, int(h.op_hi_pct > 0)])
        if value not in (0x0000, 0xFF00):  # Modbus: a coil is written FF00 (on) or 0000
            return bytes([address, fc | 0x80, ILLEGAL_VALUE])
        h.op_hi_pct = 100.0 if value == 0xFF00 else 0.0  # STOP: the control output off
        return pdu

    def _read(self, h: HeaterModel, reg: int) -> int:
        if reg == omega.PV:
            if h.address in self.pv_error:
                return self.pv_error[h.address]
            return 0x8003 if h.sensor_break else omega.to_word(h.pv_c)
        if reg == omega.SV:
            return omega.to_word(h.local_sp_c)
        if reg == omega.RANGE_HIGH:
            return omega.to_word(self.range_c[1])
        if reg == omega.RANGE_LOW:
            return omega.to_word(self.range_c[0])
        if reg in (omega.STATUS, omega.STATUS_ALT):
            return self.status_code.get(h.address, 0)
        return 0

    def _write(self, h: HeaterModel, reg: int, word: int) -> bool:
        """Apply a register write; False if the value is out of range (exception 03)."""
        if reg == omega.SV:
            value_c = omega.from_word(word)
            if not self.range_c[0] <= value_c <= self.range_c[1]:
                return False
            h.local_sp_c = value_c
            self.sv_writes[h.address] = self.sv_writes.get(h.address, 0) + 1
        return True


# ============================================================================= Julabo
class JulaboEmulator(PtyEmulator):
    """One Julabo circulator (text protocol) heating a tank's jacket.

    As the manuals say: a command ends in CR (CR LF on the CF41: both are taken); a reply is
    the data and a line end (:attr:`reply_end`: LF, or CR LF as on the CF41); ``out`` commands
    get no reply (:attr:`out_reply` sends one anyway, for a unit that does) and act only in
    remote mode (outside it, and for an unknown command, the next ``status`` reports ``-09``
    / ``-08``). A command less than 250 ms after the previous one is counted in
    :attr:`too_soon` (a real unit may miss it). After :meth:`power_cycle` the unit is stopped
    with its setpoint back at the default, as after a power loss (``R OFF``).

    Args:
        name: Device name.
        reactor: Shared physics.
        heater: Its heater model (the bath; its local setpoint is the working setpoint).
    """

    VERSION = "JULABO CF41 VERSION 1.0 (virtual lab)"
    DEFAULT_SP_C = 20.0

    def __init__(self, name: str, reactor: VirtualReactor, heater: HeaterModel) -> None:
        super().__init__(name, reactor)
        self.heater = heater
        heater.remote = False
        heater.local_sp_c = self.DEFAULT_SP_C
        heater.op_hi_pct = 0.0  # no autostart
        self.remote = True
        self.reply_end = b"\n"
        self.out_reply = b""
        #: Fault injection: an error code ``status`` reports while it is set (-14, -1 ...).
        self.alarm_code = 0
        self._command_error = 0
        self.too_soon = 0
        self._last_command = -1e9

    def power_cycle(self) -> None:
        """A power loss: back stopped, the setpoint at its default (start and SP sent again)."""
        with self.reactor.lock:
            self.heater.op_hi_pct = 0.0
            self.heater.local_sp_c = self.DEFAULT_SP_C

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One command line, ended by CR, LF or CR LF (see :meth:`PtyEmulator.take`)."""
        got = _any_line(buf)
        if got is None:
            return None
        used, line = got
        now = time.monotonic()
        if now - self._last_command < julabo.COMMAND_SPACING_S * 0.8:  # scheduling jitter
            self.too_soon += 1
        self._last_command = now
        cmd, arg = julabo.split_command(line)
        if not cmd:
            return used, b""
        return used, self._answer(cmd, arg)

    def _answer(self, cmd: str, arg: str | None) -> bytes:
        h = self.heater
        queries: dict[str, Callable[[], str]] = {
            "version": lambda: self.VERSION, "status": self._status, "in_pv_00": self._pv,
            "in_sp_00": lambda: f"{h.local_sp_c:.2f}",
            "in_mode_05": lambda: str(int(h.op_hi_pct > 0))}
        if cmd in queries and arg is None:
            return queries[cmd]().encode("ascii") + self.reply_end
        if cmd in ("out_sp_00", "out_mode_05") and arg is not None:
            if not self.remote:
                self._command_error = -9
            elif not self._out(cmd, arg):
                self._command_error = -8
            return self.out_reply
        self._command_error = -8
        return b""

    def _out(self, cmd: str, arg: str) -> bool:
        try:
            value = float(arg)
        except ValueError:
            return False
        if cmd == "out_sp_00":
            self.heater.local_sp_c = value
        elif value in (0.0, 1.0):
            self.heater.op_hi_pct = 100.0 * value
        else:
            return False
        return True

    def _pv(self) -> str:
        return "---.--" if self.heater.sensor_break else f"{self.heater.pv_c:.2f}"

    def _status(self) -> str:
        code = -5 if self.heater.sensor_break else self.alarm_code or self._command_error
        if code:
            self._command_error = 0  # a command error is reported once
            return f"-{abs(code):02d} {julabo.ERRORS.get(code, 'ERROR').upper()}"
        running = self.heater.op_hi_pct > 0
        mode = "REMOTE" if self.remote else "MANUAL"
        return f"0{int(running) + 2 * self.remote} {mode} {'START' if running else 'STOP'}"


# ============================================================================= Huber
class HuberEmulator(PtyEmulator):
    """One Huber thermostat (PB protocol) heating a tank's jacket.

    As the PB description says: 10-character frames, ``{M`` from the host, ``{S`` back;
    ``****`` asks a variable, 4 hex digits write it; temperatures are two's complement in
    0.01 °C and -151 °C marks an invalid one (a broken sensor here). A write is answered with
    the variable's value afterwards (the description does not say; :attr:`reply_to_writes`
    False makes the unit silent on writes). A variable it does not know gets no reply.

    Args:
        name: Device name.
        reactor: Shared physics.
        heater: Its heater model (the setpoint is its local one; variable 14 its output).
        setpoint_range_c: Lowest and highest setpoint (variables 30, 31), °C.
    """

    def __init__(self, name: str, reactor: VirtualReactor, heater: HeaterModel,
                 setpoint_range_c: tuple[float, float] = (-40.0, 250.0)) -> None:
        super().__init__(name, reactor)
        self.heater = heater
        heater.remote = False
        self.setpoint_range_c = setpoint_range_c
        self.reply_to_writes = True
        #: Circulation (variable 16) on.
        self.circulating = True
        #: Fault injection: the next n replies name the next variable (a reply out of step).
        self.foreign_next = 0

    def take(self, buf: bytes) -> tuple[int, bytes] | None:
        """One frame, ended by CR LF (a bare CR or LF is taken too)."""
        got = _any_line(buf)
        if got is None:
            return None
        used, line = got
        request = huber.parse_request(line)
        if request is None:
            return used, b""  # not a PB frame: ignored
        address, word = request
        value = self._variable(address)
        if value is None:
            return used, b""
        if word is None:
            if self.foreign_next > 0:
                self.foreign_next -= 1
                return used, huber.encode_reply((address + 1) & 0xFF, value)
            return used, huber.encode_reply(address, value)
        self._set(address, word)
        after = self._variable(address)
        if not self.reply_to_writes or after is None:
            return used, b""
        return used, huber.encode_reply(address, after)

    def _variable(self, address: int) -> int | None:
        h = self.heater
        low, high = huber.WORD_RANGE_C  # a runaway block reads the word's end, not a wrap
        pv = huber.to_word(huber.INVALID_C if h.sensor_break else min(max(h.pv_c, low), high))
        values = {huber.SETPOINT: huber.to_word(h.local_sp_c), huber.INTERNAL_T: pv,
                  huber.PROCESS_T: pv, huber.RETURN_T: pv,
                  huber.CONTROL_ACTIVE: int(h.op_hi_pct > 0),
                  huber.CIRCULATION: int(self.circulating),
                  huber.MIN_SETPOINT: huber.to_word(self.setpoint_range_c[0]),
                  huber.MAX_SETPOINT: huber.to_word(self.setpoint_range_c[1])}
        return values.get(address)

    def _set(self, address: int, word: int) -> None:
        h = self.heater
        if address == huber.SETPOINT:
            value_c = huber.from_word(word)
            low, high = self.setpoint_range_c
            if low <= value_c <= high:  # beyond its range the unit keeps the old setpoint
                h.local_sp_c = value_c
        elif address == huber.CONTROL_ACTIVE:
            h.op_hi_pct = 100.0 if word else 0.0
        elif address == huber.CIRCULATION:
            self.circulating = bool(word)
