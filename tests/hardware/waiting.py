"""Waiting on the virtual lab in tests: on a condition, never on a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(predicate: Callable[[], bool], limit_s: float = 120.0, poll_s: float = 0.02) -> None:
    """Wait until ``predicate()`` holds (generous limit: the host may be loaded).

    Raises:
        AssertionError: Not met within ``limit_s`` wall seconds.
    """
    end = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(poll_s)
