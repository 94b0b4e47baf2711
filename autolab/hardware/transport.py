"""One serial port, shared by every device on it, with a lock, timeouts, retries and a log.

Why one object per port: daisy-chained devices (New Era pumps on one RS-232 network, Eurotherm
controllers on one RS-485 bus) share a wire, and only one request may be in flight on it. Every
byte a driver sends or receives goes through :meth:`Transport.exchange` (or, for Modbus through
minimalmodbus, through :meth:`Transport.transaction` and :class:`LoggedPort`), so the exchange log
is complete: the executor attaches it to each :class:`~autolab.records.Measurement` and a
:class:`~autolab.exceptions.SafetyTrip` carries it.

The port is opened with :func:`serial.serial_for_url`, so a device path (``/dev/ttyUSB0``), a
pseudo-terminal of the virtual lab (``/dev/pts/7``), ``socket://host:port`` (ser2net) and
``loop://`` (tests of the framing) all work unchanged.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import serial

from autolab.exceptions import HardwareError


class ProtocolError(HardwareError):
    """A reply could not be framed or parsed (garbled bytes, bad CRC, wrong address).

    Transient by nature (noise on the wire), so :meth:`Transport.exchange` retries it.
    """


class DeviceRefused(HardwareError):
    """The device answered, well framed, that it refuses the request (an error reply).

    Not noise: :meth:`Transport.exchange` never retries it, logs the exchange, and raises it
    naming the device, the request and the reply.
    """


def retry_garbled(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """A parser whose HardwareError becomes a ProtocolError, which the transport retries.

    A reply a codec cannot read is the line's fault until :meth:`Transport.exchange` runs out
    of retries. A refusal (:class:`DeviceRefused`) stays one: the device read the command and
    said no.
    """
    def wrapped(frame: bytes) -> Any:
        try:
            return parse(frame)
        except (ProtocolError, DeviceRefused):
            raise
        except HardwareError as err:
            raise ProtocolError(str(err)) from err
    return wrapped


class ReplyTimeout(HardwareError):
    """No (complete) reply within the timeout; retried like :class:`ProtocolError`."""


#: How late a reply may still come, in reply timeouts after its request was written: a
#: request whose exchange had a failed attempt is owed a reply until then, and the next
#: request on the line waits for it (:meth:`Transport.owe`). A device that answers later
#: still fails its exchange; one a little late no longer shifts every later reply by one.
LATE_REPLY_TIMEOUTS = 2.0
#: Once bytes of an owed reply came, the line quiet this long ends the wait, s.
OWED_QUIET_S = 0.05


class SerialLike(Protocol):
    """The part of :class:`serial.Serial` the framers use."""

    def read(self, size: int = 1) -> bytes:
        """Read up to ``size`` bytes (fewer on timeout)."""
        ...

    def read_until(self, expected: bytes = b"\n", size: int | None = None) -> bytes:
        """Read up to and including ``expected`` (fewer on timeout)."""
        ...


#: A framer reads exactly one reply frame from the port (raising on timeout / bad framing).
Framer = Callable[[SerialLike], bytes]


@dataclass(frozen=True)
class Exchange:
    """One request/reply on the wire.

    Attributes:
        t_unix_s: Wall time the request was written, s since the epoch.
        device: Name of the device (from the devices file).
        sent: Bytes written.
        received: Bytes read (empty on timeout).
        latency_ms: Time from write to the end of the reply, ms.
        error: Why the exchange failed ("" if it did not).
    """

    t_unix_s: float
    device: str
    sent: bytes
    received: bytes
    latency_ms: float
    error: str = ""

    def line(self) -> str:
        """One log line: ``time device >sent <received latency [error]``."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.t_unix_s))
        frac = f"{self.t_unix_s % 1:.3f}"[1:]
        err = f" !{self.error}" if self.error else ""
        return (f"{stamp}{frac} {self.device} >{_short(self.sent)} <{_short(self.received)} "
                f"{self.latency_ms:.1f}ms{err}")


def _short(data: bytes, keep: int = 48) -> str:
    """Bytes for a log line; long binary payloads (spectra) are cut to their head and length."""
    if len(data) <= keep:
        return repr(data)
    return f"{data[:keep]!r}...({len(data)} bytes)"


class ExchangeLog:
    """Bounded, thread-safe log of exchanges shared by the transports of one lab.

    Args:
        maxlen: Exchanges kept (older ones drop off; a measurement takes only its own slice).
    """

    def __init__(self, maxlen: int = 100_000) -> None:
        self._items: deque[Exchange] = deque(maxlen=maxlen)
        self._count = 0
        self._lock = threading.Lock()

    def append(self, item: Exchange) -> None:
        """Record one exchange."""
        with self._lock:
            self._items.append(item)
            self._count += 1

    @property
    def count(self) -> int:
        """Exchanges recorded so far (a bookmark for :meth:`since`)."""
        with self._lock:
            return self._count

    def since(self, bookmark: int) -> list[Exchange]:
        """Exchanges recorded after ``bookmark`` (an earlier :attr:`count`), oldest first."""
        with self._lock:
            n_new = self._count - bookmark
            if n_new <= 0:
                return []
            return list(self._items)[-min(n_new, len(self._items)):]

    def lines(self, bookmark: int = 0) -> tuple[str, ...]:
        """Log lines since ``bookmark``."""
        return tuple(e.line() for e in self.since(bookmark))


class Transport:
    """Owns one serial port; serializes, times and logs every exchange on it.

    Args:
        url: Device path or pyserial URL (``/dev/ttyUSB0``, ``/dev/pts/3``, ``socket://h:p``).
        baudrate: Line speed, Bd (a pty ignores it; a real port does not).
        timeout_s: Read timeout of one reply, s.
        retries: Extra attempts after a timeout or a garbled reply (bounded).
        log: Shared exchange log (a fresh one if ``None``).
        serial_kwargs: Extra settings for pyserial (``parity``, ``bytesize``, ``stopbits``).

    Raises:
        HardwareError: The port cannot be opened (names the URL and the OS error).
    """

    def __init__(self, url: str, *, baudrate: int = 19200, timeout_s: float = 0.5,
                 retries: int = 2, log: ExchangeLog | None = None,
                 **serial_kwargs: Any) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.retries = retries
        self.log = log if log is not None else ExchangeLog()
        self.lock = threading.RLock()
        #: Called with every byte the transport throws away (input waiting before a request, a
        #: bad or timed-out reply and what is drained after it, late bytes): a device that
        #: sends unasked (a New Era pump's Safe-mode auto-alarm) or whose reply came late must
        #: still be able to read what it said. Called under :attr:`lock`; keep it short.
        self.stray_listeners: list[Callable[[bytes], None]] = []
        #: The character format asked for (``bytesize``/``parity``/``stopbits``), kept even
        #: where it is not applied: a pseudo-terminal has no line format (Linux's pty
        #: accepts one and ignores it) and Linux refuses to re-apply a 7-bit format to one, which
        #: would break every later timeout change; a real port gets exactly what was asked.
        self.line_format = {k: serial_kwargs[k] for k in ("bytesize", "parity", "stopbits")
                            if k in serial_kwargs}
        #: Until when (monotonic s) a reply may still come to a request whose exchange had a
        #: failed attempt (:meth:`owe`); the next request waits it out first.
        self._owed_until = 0.0
        if _is_pty(url):
            serial_kwargs = {k: v for k, v in serial_kwargs.items() if k not in self.line_format}
        try:
            self.serial = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout_s,
                                                write_timeout=max(timeout_s, 1.0),
                                                **serial_kwargs)
        except (serial.SerialException, OSError, ValueError) as err:
            raise HardwareError(f"cannot open serial port {url!r}: {err}") from err

    def exchange(self, device: str, request: bytes, framer: Framer | None,
                 parse: Callable[[bytes], Any] | None = None, *,
                 attempts: int | None = None,
                 pace: Callable[[], None] | None = None) -> bytes:
        """Send ``request`` and read one reply frame, retrying bounded times.

        Args:
            device: Device name for the log and for errors.
            request: Bytes to write.
            framer: Reads one reply frame; ``None`` for commands that get no reply.
            parse: Optional validator called on the frame; a :class:`ProtocolError` it raises
                counts as a garbled reply and is retried.
            attempts: Attempts for this exchange (default ``retries + 1``); a probe that
                expects silence from a device in another mode uses 1. A caller that bounds
                the attempts takes silence for an answer (a probe, a write a device may
                leave unanswered), so its timeouts leave no debt (:meth:`owe`): a pump
                that ignores the first command after power-up would otherwise hold up the
                next request at every bring-up.
            pace: Called before every attempt's write, the lock held: a device that needs
                time between two commands (a Julabo: 250 ms) waits there, retries included
                (a retry right after a garbled reply came within 50 ms of the first try).

        Returns:
            The reply frame (``b""`` if ``framer`` is ``None``).

        Raises:
            DeviceRefused: ``parse`` found an error reply (not retried).
            HardwareError: No valid reply after all attempts, or the port failed; the message
                names the device, the request and the last error.
        """
        last: HardwareError | None = None
        last_reply = b""
        tries = self.retries + 1 if attempts is None else max(1, attempts)
        sent_s = 0.0
        try:
            for attempt in range(tries):
                with self.lock:
                    if attempt == 0:
                        self._await_owed(device)
                    if pace is not None:
                        pace()
                    sent_s = t0 = time.monotonic()
                    wall = time.time()
                    reply = b""
                    try:
                        self._discard_stale(device)
                        self.serial.write(request)
                        self.serial.flush()
                        if framer is not None:
                            reply = framer(self.serial)
                            if parse is not None:
                                parse(reply)
                    except DeviceRefused as err:
                        self._record(device, wall, request, reply, t0=t0, error=str(err))
                        raise DeviceRefused(f"{device}: {request!r} refused: reply "
                                            f"{reply!r}: {err}") from err
                    except (ProtocolError, ReplyTimeout) as err:
                        last, last_reply = err, reply or _partial(err)
                        self._record(device, wall, request, reply or _partial(err), t0=t0,
                                     error=str(err))
                        self._stray(last_reply + self._drain())
                        continue
                    except (serial.SerialException, OSError) as err:
                        self._record(device, wall, request, reply, t0=t0,
                                     error=f"port error: {err}")
                        raise HardwareError(f"{device}: serial port {self.url!r} failed on "
                                            f"{request!r}: {err}") from err
                    self._record(device, wall, request, reply, t0=t0)
                    return reply
        finally:
            # a reply read after a failed attempt may have been the late one, and the last
            # attempt's own reply may still come; bounded attempts take silence for an answer
            if last is not None and attempts is None:
                self.owe(sent_s)
        raise HardwareError(f"{device}: no valid reply to {request!r} after "
                            f"{tries} attempts on {self.url!r}: last reply {last_reply!r}: "
                            f"{last}") from last

    def owe(self, sent_s: float) -> None:
        """A request written at ``sent_s`` (monotonic) may still be answered: wait for it.

        Called after an exchange in which an attempt timed out or read a bad reply. Its reply
        (or the reply of the attempt a retry took the place of: a late reply to the same
        request reads as the retry's own) may still be on its way, and the next request,
        another one, would read it as its own: a Modbus PV read taken for the status word,
        a status word of 0 taken for the PV (a hot block read as 0.0 °C). The next
        exchange or transaction first reads the line until the reply came and the line went
        quiet, or until :data:`LATE_REPLY_TIMEOUTS` reply timeouts after ``sent_s``.
        """
        with self.lock:
            self._owed_until = max(self._owed_until,
                                   sent_s + LATE_REPLY_TIMEOUTS * self.timeout_s)

    def _await_owed(self, device: str) -> None:
        """Wait out a reply :meth:`owe` says may still come; log it and hand it on.

        Ends :data:`OWED_QUIET_S` after the last byte once bytes came, else at the deadline.
        Costs nothing unless an exchange on this line failed since the last wait.
        """
        remaining = self._owed_until - time.monotonic()
        self._owed_until = 0.0
        if remaining <= 0:
            return
        t0, wall, data = time.monotonic(), time.time(), b""
        cap = t0 + remaining + self.timeout_s  # a babbling line does not hold it forever
        try:
            old = self.serial.timeout
            self.serial.timeout = remaining
            data = bytes(self.serial.read(1))
            self.serial.timeout = OWED_QUIET_S
            while data and time.monotonic() < cap and \
                    (chunk := bytes(self.serial.read(max(1, self._waiting())))):
                data += chunk
            self.serial.timeout = old
        except (serial.SerialException, OSError) as err:
            raise HardwareError(f"{device}: serial port {self.url!r} failed while waiting "
                                f"for a late reply: {err}") from err
        if data:
            self._record(device, wall, b"", data, t0=t0,
                         error="discarded: a late reply to an earlier request")
            self._stray(data)

    def _waiting(self) -> int:
        """Bytes waiting in the input (0 where the port cannot say)."""
        return int(getattr(self.serial, "in_waiting", 0) or 0)

    @contextmanager
    def transaction(self, device: str) -> Iterator[LoggedPort]:
        """Hold the port for a library that does its own I/O (minimalmodbus) and log it.

        Yields:
            A :class:`LoggedPort` over this port: pass it to the library as its serial object.
        """
        with self.lock:
            self._await_owed(device)
            port = LoggedPort(self, device)
            try:
                yield port
            except Exception as err:
                port.finish(f"{type(err).__name__}: {err}")
                raise
            port.finish()

    def _record(self, device: str, wall: float, sent: bytes, received: bytes, *, t0: float,
                error: str = "") -> None:
        self.log.append(Exchange(wall, device, sent, received,
                                 (time.monotonic() - t0) * 1000.0, error))

    def discard_late(self, device: str, quiet_s: float, why: str) -> bytes:
        """Read and drop what arrives until the line has been quiet ``quiet_s``; log it.

        For a device that may send unasked (a New Era pump in Safe mode announces an alarm
        on its own): when the frame just read may have been that announcement, the reply to
        the request may still be on its way, and must not be taken for the next request's.

        Returns:
            The bytes dropped (``b""`` if the line stayed quiet).
        """
        with self.lock:
            t0, wall, data = time.monotonic(), time.time(), b""
            try:
                old = self.serial.timeout
                self.serial.timeout = quiet_s
                while chunk := bytes(self.serial.read(256)):
                    data += chunk
                self.serial.timeout = old
            except (serial.SerialException, OSError) as err:
                raise HardwareError(f"{device}: serial port {self.url!r} failed while "
                                    f"discarding late bytes: {err}") from err
            if data:
                self._record(device, wall, b"", data, t0=t0, error=f"discarded: {why}")
                self._stray(data)
            return data

    def _stray(self, data: bytes) -> None:
        """Hand bytes about to be thrown away to :attr:`stray_listeners`."""
        if data:
            for listen in self.stray_listeners:
                listen(data)

    def _discard_stale(self, device: str) -> None:
        """Clear the input before a request; what waited there is logged and read by listeners.

        Blindly resetting the input threw away a Safe-mode pump's auto-alarm packet: the only
        record of an alarm whose acknowledging reply is then lost. So is a reset after reading
        what waited: a packet that arrives between the read and the reset is gone unread. The
        input is read until nothing waits instead, and never reset; a line still babbling after
        one reply timeout is left as it is, and what comes next is read by the reply's framer
        (a bad frame is retried and drained to the listeners). A bare line end is the tail of
        the previous reply's CR LF (:func:`read_line` stops at the CR): not logged, or every
        exchange with a CR LF device would log a discard.
        """
        data = b""
        deadline = time.monotonic() + self.timeout_s
        while waiting := int(getattr(self.serial, "in_waiting", 0) or 0):
            data += bytes(self.serial.read(waiting))
            if time.monotonic() > deadline:
                break
        if data.strip(b"\r\n"):
            self._record(device, time.time(), b"", data, t0=time.monotonic(),
                         error="discarded: unasked bytes before the request")
            self._stray(data)

    def _drain(self) -> bytes:
        """Discard what is left of a bad reply so the next request starts clean; returns it."""
        out = b""
        try:
            old = self.serial.timeout
            self.serial.timeout = 0.02
            while chunk := bytes(self.serial.read(256)):
                out += chunk
            self.serial.timeout = old
        except (serial.SerialException, OSError):
            pass
        return out

    def close(self) -> None:
        """Close the port (idempotent)."""
        with self.lock:
            if self.serial.is_open:
                self.serial.close()


def _is_pty(url: str) -> bool:
    """Whether ``url`` is a Unix98 pseudo-terminal (the virtual lab's ports)."""
    return os.path.realpath(url).startswith("/dev/pts/")


def read_until_byte(ser: SerialLike, end: bytes) -> bytes:
    """Read one frame that ends with the byte ``end``.

    Raises:
        ReplyTimeout: The terminator did not arrive within the port's timeout.
    """
    data = bytes(ser.read_until(end))
    if not data.endswith(end):
        err = ReplyTimeout(f"reply incomplete after timeout: {data!r}")
        err.partial = data  # type: ignore[attr-defined]
        raise err
    return data


def read_line(ser: SerialLike, limit: int = 4096) -> bytes:
    """Read one text line ended by CR, LF or CR LF (either line ending; the ending included).

    A CR or LF left over from the previous line's CR LF is skipped first, so a device that
    ends its lines with CR LF and one that ends them with a bare CR or LF read alike.

    Raises:
        ReplyTimeout: No line end within the port's timeout (per byte), or ``limit`` bytes.
    """
    data = b""
    while len(data) < limit:
        byte = bytes(ser.read(1))
        if not byte:
            break
        if byte in (b"\r", b"\n"):
            if data:
                return data + byte
            continue  # the tail of the previous line's CR LF
        data += byte
    err = ReplyTimeout(f"reply incomplete after timeout: {data!r}")
    err.partial = data  # type: ignore[attr-defined]
    raise err


def read_exact(ser: SerialLike, n: int) -> bytes:
    """Read exactly ``n`` bytes.

    Raises:
        ReplyTimeout: Fewer arrived within the timeout.
    """
    data = bytes(ser.read(n))
    if len(data) != n:
        err = ReplyTimeout(f"expected {n} bytes, got {len(data)}: {data[:32]!r}")
        err.partial = data  # type: ignore[attr-defined]
        raise err
    return data


def _partial(err: Exception) -> bytes:
    data = getattr(err, "partial", b"")
    return data if isinstance(data, bytes) else b""


class LoggedPort:
    """A serial-port stand-in handed to minimalmodbus: forwards to the transport and logs.

    minimalmodbus accepts any object with ``open/close/read/write/is_open`` as its port; this
    one records each request (a write) and its reply (the reads after it) as one
    :class:`Exchange` in the transport's log, so Modbus traffic shows up in the device log like
    every other device's.
    """

    def __init__(self, transport: Transport, device: str) -> None:
        self._t = transport
        self._device = device
        self._sent = b""
        self._recv = b""
        self._t0 = 0.0
        self._wall = 0.0

    # pyserial attributes minimalmodbus reads
    @property
    def is_open(self) -> bool:
        """Whether the underlying port is open."""
        return bool(self._t.serial.is_open)

    @property
    def port(self) -> str:
        """Port name (minimalmodbus keys its silent-period bookkeeping by it)."""
        return self._t.url

    @property
    def baudrate(self) -> int:
        """Line speed, Bd."""
        return int(self._t.serial.baudrate)

    @property
    def timeout(self) -> float | None:
        """Read timeout, s."""
        return float(self._t.serial.timeout) if self._t.serial.timeout is not None else None

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._t.serial.timeout = value

    def open(self) -> None:
        """Open the underlying port."""
        self._t.serial.open()

    def close(self) -> None:
        """Never close the shared port on a library's behalf."""

    def reset_input_buffer(self) -> None:
        """Clear stale input the transport's way: read, logged and handed to its listeners.

        minimalmodbus calls this before every request; a blind reset would throw away a late
        reply unread, the only record that the line was out of step.
        """
        self.finish()
        self._t._discard_stale(self._device)

    def reset_output_buffer(self) -> None:
        """Discard pending output."""
        self._t.serial.reset_output_buffer()

    @property
    def sent_s(self) -> float:
        """When the last request was written, monotonic s (0 before the first)."""
        return self._t0

    def write(self, data: bytes) -> int:
        """Write a request; flushes the log entry of the previous one."""
        self.finish()
        self._sent, self._recv = bytes(data), b""
        self._t0, self._wall = time.monotonic(), time.time()
        n = self._t.serial.write(data)
        return int(n or 0)

    def read(self, size: int = 1) -> bytes:
        """Read reply bytes."""
        data = bytes(self._t.serial.read(size))
        self._recv += data
        return data

    def finish(self, error: str = "") -> None:
        """Record the pending request/reply (called on the next write and at the end)."""
        if self._sent:
            self._t._record(self._device, self._wall, self._sent, self._recv, t0=self._t0,
                           error=error)
            self._sent = b""
