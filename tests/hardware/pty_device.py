"""A device on a pseudo-terminal for the emulators written from the manuals alone.

Only the plumbing of the hardware reference's §4.6 lives here (``openpty``, ``tty.setraw`` on
the slave at once, the slave kept open so a client's hang-up is no EIO, a reader thread on the
master); what a device answers and how it frames its requests is each test file's own.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from autolab.hardware.devices import parse_devices
from autolab.hardware.rig import Rig

from .test_rig_registry import devices


class PtyDevice:
    """Bytes from the driver go to :meth:`feed` (under :attr:`lock`); :meth:`send` answers.

    Subclasses frame requests in :meth:`feed` and keep their state under :attr:`lock`, which
    a test holds to change that state between two requests.
    """

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # §4.6 pitfall 1: cooked mode mangles CR, LF and control bytes
        self.port = os.ttyname(self.slave)
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def feed(self, data: bytes, t_s: float) -> None:
        """Take ``data`` that arrived at monotonic time ``t_s`` (called under :attr:`lock`)."""
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        """Write ``data`` to the driver."""
        os.write(self.master, data)

    def close(self) -> None:
        """Stop serving and close both ends."""
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            t_s = time.monotonic()
            try:
                data = os.read(self.master, 1024)
            except OSError:  # §4.6 pitfall 2: EIO once the client closed; keep serving
                time.sleep(0.01)
                continue
            with self.lock:
                self.feed(data, t_s)


@contextmanager
def heater_rig(kind: str, units: Mapping[str, PtyDevice], *, timeout_s: float,
               max_temperature_c: float, port: Mapping[str, object] | None = None,
               ) -> Iterator[Rig]:
    """A rig whose core and shell heaters are ``units`` (by role) of device ``kind``.

    Each unit is on a port of its own (with ``port``'s further fields, e.g. ``handshake``);
    the pumps' port is a loop with nothing on it, so the rig talks to the heaters alone. The
    rig is closed after.
    """
    d = devices()
    for role, unit in units.items():
        d["ports"][f"{kind}_{role}"] = {"url": unit.port, "timeout_s": timeout_s, **(port or {})}
        d["devices"][f"heater_{role}"] = {"kind": kind, "port": f"{kind}_{role}", "role": role,
                                          "limits": {"max_temperature_c": max_temperature_c}}
    d["ports"]["pumps"] = {"url": "loop://", "timeout_s": 0.05, "retries": 0}
    rig = Rig.open(parse_devices(d))
    try:
        yield rig
    finally:
        rig.close()
