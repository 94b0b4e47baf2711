"""What the pump-kind tests share: waits on the virtual lab's physics, a physics-free bench."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from autolab.virtuallab.lab import VirtualLab
from autolab.virtuallab.reactor import PumpModel


def when(predicate: Callable[[], bool], action: Callable[[], None],
         limit_s: float = 120.0) -> threading.Thread:
    """Run ``action`` once ``predicate`` holds (polled every 5 ms, for at most ``limit_s``)."""
    def loop() -> None:
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            if predicate():
                action()
                return
            time.sleep(0.005)
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def feeding(lab: VirtualLab) -> bool:
    """The phosphine pump runs."""
    with lab.reactor.lock:
        return lab.reactor.pumps["pump_phosphine"].running


def feeding_a_while(lab: VirtualLab) -> bool:
    """The phosphine pump runs and has delivered something: its start (verified) is over."""
    with lab.reactor.lock:
        p = lab.reactor.pumps["pump_phosphine"]
        return p.running and p.infused_ml > 2.0


def pumps_stopped(lab: VirtualLab) -> bool:
    """No pump of the lab runs."""
    with lab.reactor.lock:
        return not any(p.running for p in lab.reactor.pumps.values())


class Bench:
    """Pump state without physics: what the emulator serves (nothing advances)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pumps: dict[str, PumpModel] = {}

    def advance(self) -> None:
        """Nothing moves on its own here."""
