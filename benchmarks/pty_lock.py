"""How long the pty virtual lab holds its reactor lock: physics thread against stepping inline.

Every serial reply of the emulators takes the reactor's lock. Before, each request also
integrated the tanks under it (``VirtualReactor.advance``), and the transient chemistry made that
slow enough on a loaded host for a heater's remote setpoint to time out; now a physics thread
integrates outside the lock (``VirtualReactor.start_stepping``). Each scenario runs two
experiments of the one procedure through the serial stack (``CSTRExecutor`` over the ptys) and
times every ``advance`` call (the lock-held part of a request) and every detector frame (which
may wait, bounded, for the thread to catch up), for the transient and the mixing
physics, with the thread and inline. Figures in ms of wall time; the load average is printed,
since they grow with it. Readings are checked against the twin's truth.

Usage::

    .venv/bin/python benchmarks/pty_lock.py [--scale 2400] [--record benchmarks/results]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from autolab.analysis import analyze
from autolab.executors.cstr import CSTRExecutor
from autolab.records import Conditions
from autolab.virtuallab.lab import VirtualLab

GOOD = Conditions(180, 13, 290, 15, 6, 2)
OTHER = Conditions(200, 20, 300, 15, 20, 2)


def scenario(scale: float, *, transient: bool, thread: bool) -> dict[str, Any]:
    """Two experiments over ptys; lock-held ms of every request and the readings' peak errors."""
    held: list[float] = []
    frames: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with VirtualLab(time_scale=scale, resolve_transients=transient) as lab:
        reactor = lab.reactor
        if not thread:
            reactor.stop_stepping()  # back to integrating under the lock on every request
        inner, inner_frame = reactor.advance, reactor.frame

        def timed() -> None:
            t0 = time.perf_counter()
            inner()
            held.append(time.perf_counter() - t0)

        def timed_frame(**kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = inner_frame(**kwargs)
            frames.append(time.perf_counter() - t0)
            return out
        reactor.advance = timed  # type: ignore[method-assign]
        reactor.frame = timed_frame  # type: ignore[method-assign]
        ex = CSTRExecutor(lab.devices_config(), install_signal_handlers=False)
        try:
            readings = [ex.run(OTHER), ex.run(GOOD)]
        finally:
            ex.close()
        errors = [abs(analyze(m).pl_peak_nm - reactor.twin.truth(c).pl_peak_nm)
                  for m, c in zip(readings, (OTHER, GOOD), strict=True)]
        batches = list(reactor.step_wall_s)
    ms = np.asarray(held) * 1e3
    fr = np.asarray(frames) * 1e3
    return {"physics": "transient" if transient else "mixing",
            "stepping": "thread" if thread else "inline", "requests": len(ms),
            "median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()), "frame_p99_ms": float(np.percentile(fr, 99)),
            "frame_max_ms": float(fr.max()),
            "thread_batch_max_ms": 1e3 * max(batches, default=0.0),
            "peak_error_nm": max(errors), "wall_s": time.perf_counter() - wall0,
            "cpu_s": time.process_time() - cpu0}


def main(argv: list[str] | None = None) -> int:
    """Run the four scenarios, print them, record them."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--scale", type=float, default=2400.0, help="lab s per wall s")
    ap.add_argument("--record", type=Path, default=None, help="write pty-lock.json here")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    rows = []
    for transient in (True, False):
        for thread in (True, False):
            r = scenario(args.scale, transient=transient, thread=thread)
            rows.append(r)
            print(f"{r['physics']:9s} {r['stepping']:6s} requests {r['requests']:5d}  lock held "
                  f"median {r['median_ms']:.2f}  p99 {r['p99_ms']:.1f}  max {r['max_ms']:.1f} ms"
                  f"  frame p99 {r['frame_p99_ms']:.1f} max {r['frame_max_ms']:.1f} ms"
                  f"  thread batch max {r['thread_batch_max_ms']:.0f} ms  peak error "
                  f"{r['peak_error_nm']:.2f} nm  wall {r['wall_s']:.1f} s  CPU {r['cpu_s']:.1f} s",
                  flush=True)
    print(f"load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}")
    if args.record is not None:
        from autolab.benchmarking.provenance import Result, Table, write_result

        cols = ("physics", "stepping", "requests", "median ms", "p99 ms", "max ms",
                "frame p99 ms", "frame max ms", "thread batch max ms", "peak error nm",
                "wall s", "CPU s")
        keys = ("physics", "stepping", "requests", "median_ms", "p99_ms", "max_ms",
                "frame_p99_ms", "frame_max_ms", "thread_batch_max_ms", "peak_error_nm",
                "wall_s", "cpu_s")
        result = Result(
            name="pty-lock", title="Pty virtual lab: reactor lock held per request",
            description=(f"Two experiments through the serial stack at {args.scale:g}x; every "
                         "request's lock-held time (advance), physics thread vs inline."),
            tables=(Table("lock held per request", cols, tuple(
                tuple(f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys)
                for r in rows)),),
            notes=(f"Load average {load[0]:.1f} at start.",),
            data={"rows": rows, "scale": args.scale, "load": list(load)},
            command=" ".join([Path(sys.executable).name, *sys.argv]))
        print(f"wrote {write_result(result, args.record)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
