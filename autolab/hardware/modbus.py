"""Modbus plumbing shared by the controller drivers (Eurotherm 3200, Omega CN7500): one copy.

minimalmodbus does the framing (RTU or ASCII) over the transport's port
(:meth:`~autolab.hardware.transport.Transport.transaction`, so every request is in the exchange
log); this class adds what the rig's rules need on top of it, once for every Modbus kind:

* a Modbus exception response (illegal function, address or value; device failure) is the
  controller refusing the request: raised at once as
  :class:`~autolab.hardware.transport.DeviceRefused`, naming the register, never retried and
  never taken for a reading;
* only "slave busy" (code 6), timeouts and garbled frames are retried, a bounded number of
  times (the port's ``retries``);
* a register write uses the kind's documented function code first and, if the controller
  answers "illegal function" (exception 01), the other one (6 <-> 16) for the rest of the
  session, since manuals do not always say which of the two an instrument implements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import minimalmodbus

from autolab.exceptions import HardwareError
from autolab.hardware.transport import DeviceRefused, Transport

#: Modbus function codes of a register write: single (6) and multiple (16).
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16

#: The two Modbus serial line modes.
ModbusMode = Literal["rtu", "ascii"]


class IllegalFunction(DeviceRefused):
    """The controller answered Modbus exception 01: it does not implement the function."""


class ModbusRegisters:
    """One Modbus slave on a shared bus: reads and writes with the rig's retry/refusal rules.

    Args:
        transport: The RS-485 bus (shared by the controllers on it).
        name: Device name.
        address: Modbus slave address (the caller checks its kind's range).
        decimals: Decimal places of the temperature registers (the scaling of :meth:`_read`).
        mode: ``"rtu"`` or ``"ascii"`` framing.
        write_fc: Function code tried first for a register write (6 or 16).
    """

    def __init__(self, transport: Transport, name: str, *, address: int, decimals: int,
                 mode: ModbusMode = "rtu", write_fc: int = WRITE_MULTIPLE) -> None:
        self.transport = transport
        self.name = name
        self.address = address
        self.decimals = decimals
        self.mode = mode
        #: Modbus function that writes a register (the kind's first choice; the other once
        #: the controller refused it with "illegal function").
        self._write_fc = write_fc
        self._write_fc_switched = False

    def _io(self, fn: Callable[[minimalmodbus.Instrument], Any], what: str) -> Any:
        """Run ``fn`` on the instrument with the rig's rules (see the module docstring).

        The attempts share one transaction. After a timeout or a garbled frame the reply may
        still come: the retry (the same request) may read it as its own, harmlessly, and the
        transport then waits for what is still owed before the next request
        (:meth:`~autolab.hardware.transport.Transport.owe`): a Modbus read reply carries no
        register address, so a late one read for another register is a plausible word.
        """
        last: Exception | None = None
        failed = False  # an attempt timed out or read a bad frame (busy is a good reply)
        mode = minimalmodbus.MODE_ASCII if self.mode == "ascii" else minimalmodbus.MODE_RTU
        with self.transport.transaction(self.name) as port:
            try:
                for _ in range(self.transport.retries + 1):
                    inst = minimalmodbus.Instrument(port, self.address, mode=mode)
                    inst.serial.timeout = self.transport.timeout_s
                    try:
                        return fn(inst)
                    except minimalmodbus.SlaveDeviceBusyError as err:
                        last = err
                        port.finish(f"{type(err).__name__}: {err}")
                    except minimalmodbus.SlaveReportedException as err:
                        port.finish(f"{type(err).__name__}: {err}")
                        raise self._refusal(err, what) from err
                    except (minimalmodbus.ModbusException, ValueError, OSError) as err:
                        last, failed = err, True
                        port.finish(f"{type(err).__name__}: {err}")
            finally:
                if failed:
                    self.transport.owe(port.sent_s)
        raise HardwareError(f"{self.name}: no valid Modbus reply from address {self.address} "
                            f"to {what} after {self.transport.retries + 1} attempts: "
                            f"{last}") from last

    def _refusal(self, err: Exception, what: str) -> DeviceRefused:
        """A Modbus exception response as the refusal it is (01: :class:`IllegalFunction`)."""
        refused = IllegalFunction if "illegal function" in str(err).lower() else DeviceRefused
        return refused(f"{self.name}: controller at address {self.address} refused {what}: "
                       f"Modbus exception ({type(err).__name__}: {err})")

    def _read(self, register: int, decimals: int | None = None) -> float:
        """One signed register, scaled by ``decimals`` (default: the temperature scaling)."""
        d = self.decimals if decimals is None else decimals
        return float(self._io(lambda i: i.read_register(register, d, signed=True),
                              f"read of register {register}"))

    def _read_word(self, register: int, what: str) -> int:
        """One register as the raw unsigned 16-bit word (status words, sentinel values)."""
        return int(self._io(lambda i: i.read_register(register, 0), what))

    def _write(self, register: int, value: float, decimals: int | None = None) -> None:
        """Write one register: the kind's function code first, the other one if refused.

        A controller that answers the first choice with "illegal function" (exception 01) is
        written with the other one (6 <-> 16) for the rest of the session.
        """
        what = f"write of {value:g} to register {register}"
        word = self._scaled(register, value, decimals)
        try:
            self._io(lambda i: i.write_register(register, word, 0, functioncode=self._write_fc,
                                                signed=True), what)
        except IllegalFunction:
            if self._write_fc_switched:
                raise
            self._write_fc_switched = True
            self._write_fc = WRITE_SINGLE if self._write_fc == WRITE_MULTIPLE else WRITE_MULTIPLE
            self._io(lambda i: i.write_register(register, word, 0, functioncode=self._write_fc,
                                                signed=True), what)

    def _scaled(self, register: int, value: float, decimals: int | None) -> int:
        """``value`` as the register's signed integer, rounded to its resolution.

        Scaled here, not by minimalmodbus: it truncates (``int(value * 10**d)``), so 249.97 °C
        became 249.9 at one decimal and 101.13 became 101.12 at two (binary fractions).

        Raises:
            HardwareError: The value does not fit a signed 16-bit register at these decimals
                (e.g. above 327.67 at two decimals): a configuration fault, never retried.
        """
        d = self.decimals if decimals is None else decimals
        word = round(value * 10.0**d)
        if not -0x8000 <= word <= 0x7FFF:
            raise HardwareError(f"{self.name}: {value:g} does not fit register {register} "
                                f"with {d} decimal(s) (a signed 16-bit integer, "
                                f"{-0x8000 / 10**d:g} to {0x7FFF / 10**d:g}): check the "
                                f"controller's resolution (decimals)")
        return word

    def _read_bit(self, address: int, what: str, functioncode: int = 2) -> bool:
        """One bit (function 2, read discrete inputs, or 1, read coils)."""
        return bool(self._io(lambda i: i.read_bit(address, functioncode=functioncode), what))

    def _write_bit(self, address: int, value: bool, what: str) -> None:
        """One coil (function 5, write single coil)."""
        self._io(lambda i: i.write_bit(address, int(value), functioncode=5), what)
