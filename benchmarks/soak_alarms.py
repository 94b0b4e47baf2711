"""Soak: pump alarms racing with the supervisor's queries, over ptys, with lost and late replies.

Each round connects the real NE-1000 drivers (Safe mode) to the virtual lab's pump chain,
starts three feed pumps through a :class:`~autolab.hardware.delivery.DeliveryMonitor`, and
polls them from a thread as the supervisor does (status, rate every few polls, dispensed
volume). At a random instant one pump stalls (alarm ``S``), and the emulator is told how the
alarm reaches the host:

* ``plain``: the auto-alarm packet (Safe mode), then the next reply acknowledges it;
* ``lost_ack``: the auto-alarm packet, and the acknowledging reply is lost (the driver retries,
  the pump answers ``S``);
* ``late_ack``: the acknowledging reply comes after the driver's timeout;
* ``late_ack_no_auto``: the same without an auto-alarm packet (the late reply is the only
  record);
* ``lost_any``: whatever reply comes next on the chain is lost (any pump's, any query), as the
  pump stalls;
* ``lost_ack_no_auto``: no auto-alarm packet and the acknowledging reply lost: the manual leaves
  the host no record of the alarm at all; the pump is found stopped (``pump_idle``). Counted
  apart, as the documented limit, not as a failure.

Per round it checks: the trip names the stall on the stalled pump (``pump_stall``), no other
pump is reported, every exchange the driver accepted pairs a reply with its own request
(address, and a data shape that fits the query), and the safe end (every pump stopped through
the driver) leaves every emulated pump stopped.

Printed and written to ``benchmarks/results/soak_alarms.json``: rounds per mode, ``misnamed``
(trips that do not name the stall, outside the documented limit), ``misassigned``, ``unsafe``,
``other_reported``, ``no_trip``. All must be 0. Run:
``.venv/bin/python benchmarks/soak_alarms.py [--rounds 200] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from autolab.exceptions import HardwareError
from autolab.hardware.base import Connectable
from autolab.hardware.delivery import DeliveryMonitor, PumpFinding, wall_lab_min
from autolab.hardware.protocols import newera
from autolab.hardware.rig import Rig
from autolab.hardware.transport import Exchange
from autolab.virtuallab.lab import VirtualLab

MODES = ("plain", "lost_ack", "late_ack", "late_ack_no_auto", "lost_any", "lost_ack_no_auto")
#: The mode where the manual leaves no record of the alarm: the pump is found stopped.
NO_RECORD = "lost_ack_no_auto"
ROLES = ("phosphine", "zinc", "solvent")
TIME_SCALE = 60.0
TIMEOUT_S = 0.2
RESULT = Path(__file__).parent / "results" / "soak_alarms.json"


def _poller(monitor: DeliveryMonitor, findings: list[PumpFinding], stop: threading.Event,
            rng: random.Random) -> None:
    """The supervisor's pump round, until a trip (a comms loss counts as one)."""
    polls = 0
    while not stop.is_set():
        for role in ROLES:
            try:
                f = monitor.poll(role, check_rate=polls % 4 == 0)
            except HardwareError as err:
                f = PumpFinding(role, monitor.pumps[role].name, "comms_loss", str(err), True)
            if f is not None:
                findings.append(f)
                if f.trip:
                    stop.set()
                    return
        polls += 1
        time.sleep(rng.uniform(0.0, 0.02))


def _late_once(lab: VirtualLab) -> None:
    """The next reply of the chain comes 1.5 timeouts late."""
    fired = threading.Event()

    def hook() -> None:
        if not fired.is_set():
            fired.set()
            time.sleep(TIMEOUT_S * 1.5)

    lab.pumps.before_reply = hook


def _inject(lab: VirtualLab, victim: str, mode: str) -> None:
    emu = lab.pumps
    emu.auto_alarm = not mode.endswith("no_auto")
    with lab.reactor.lock:
        if mode == "lost_any":
            emu.drop_next()
        elif mode.startswith("lost"):
            emu.drop_next(acks_only=True)
        elif mode.startswith("late"):
            _late_once(lab)
        lab.reactor.pumps[victim].stall("S")


def misassigned(exchanges: list[Exchange]) -> list[str]:
    """Accepted exchanges whose reply is not the answer to their own request."""
    bad = []
    for e in exchanges:
        if e.error or not e.sent or not e.received:
            continue
        try:
            data = (newera.decode_safe(e.sent) if e.sent[:1] == bytes([newera.STX])
                    else e.sent.rstrip(b"\r")).decode("ascii")
            address, cmd, args = newera.split_request(data)
            frame = e.received
            reply = (newera.parse_basic(frame) if chr(frame[1]).isdigit()
                     else newera.parse_safe(frame))
        except (newera.PumpProtocolError, UnicodeDecodeError, IndexError):
            continue  # not a pump exchange (or one the driver itself refused)
        why = ""
        if address is not None and reply.address is not None and reply.address != address:
            why = f"reply from address {reply.address} to a request to {address}"
        elif not reply.alarm and reply.error is None and not args:
            shape = {"DIS": newera.parse_dispensed, "RAT": newera.parse_rate,
                     "DIA": newera.parse_float}.get(cmd)
            try:
                if shape is not None:
                    shape(reply.data)
                elif cmd == "" and reply.data:
                    why = f"data {reply.data!r} in reply to a status query"
            except (newera.PumpProtocolError, HardwareError, ValueError):
                why = f"{cmd} answered with {reply.data!r}"
        if why:
            bad.append(f"{e.line()}: {why}")
    return bad


def one_round(lab: VirtualLab, rng: random.Random, mode: str) -> dict[str, Any]:
    """One stall injected into a polled chain; what the host made of it."""
    for p in lab.reactor.pumps.values():  # a fresh chain: powered up long ago, stopped
        p.alarm, p.ignore_next, p.running, p.paused = "", False, False, False
    lab.pumps.before_reply = None
    lab.pumps.auto_alarm = True
    rig = Rig.open(lab.devices_config(safe_mode_s=10, timeout_s=TIMEOUT_S))
    out: dict[str, Any] = {"mode": mode}
    try:
        pumps = {r: rig.pumps[r] for r in ROLES}
        for drv in pumps.values():
            if isinstance(drv, Connectable):
                drv.connect()
        monitor = DeliveryMonitor(pumps, wall_lab_min(lab.time_scale))
        for r in ROLES:
            monitor.start(r, 0.5, infuse=r != "bleed")
        bookmark = rig.log.count
        findings: list[PumpFinding] = []
        stop = threading.Event()
        poller = threading.Thread(target=_poller, args=(monitor, findings, stop, rng),
                                  daemon=True)
        poller.start()
        time.sleep(rng.uniform(0.0, 0.3))
        victim = rng.choice(ROLES)
        _inject(lab, pumps[victim].name, mode)
        poller.join(timeout=30.0)
        stop.set()
        trip = next((f for f in findings if f.trip), None)
        out.update(victim=victim, trip=None if trip is None else [trip.reason, trip.role],
                   others=[[f.reason, f.role] for f in findings if f.role != victim])
        out["misassigned"] = misassigned(rig.log.since(bookmark))
        lab.pumps.before_reply = None
        for r, drv in pumps.items():  # the safe end: every pump stopped through the driver
            try:
                drv.stop()
            except HardwareError as err:
                out.setdefault("stop_errors", []).append(f"{r}: {err}")
        with lab.reactor.lock:
            out["unsafe"] = [n for n, m in lab.reactor.pumps.items() if m.running]
    finally:
        rig.close()
    return out


def judge(r: dict[str, Any]) -> list[str]:
    """What went wrong in one round (empty: nothing)."""
    bad = []
    named = {("pump_stall", r["victim"])}
    if r["mode"] == NO_RECORD:  # the manual leaves no record: found stopped is the best
        named.add(("pump_idle", r["victim"]))
    if r["trip"] is None:
        bad.append("no_trip")
    elif tuple(r["trip"]) not in named:
        bad.append("misnamed")
    if r["others"]:
        bad.append("other_reported")
    if r["misassigned"]:
        bad.append("misassigned")
    if r["unsafe"]:
        bad.append("unsafe")
    return bad


def run_soak(rounds: int, seed: int) -> dict[str, Any]:
    """``rounds`` rounds, the modes in turn, timing and victims drawn from ``seed``."""
    rng = random.Random(seed)
    t0, c0 = time.monotonic(), time.process_time()
    results: list[dict[str, Any]] = []
    with VirtualLab(time_scale=TIME_SCALE, pump_safe_mode_s=10) as lab:
        for i in range(rounds):
            results.append(one_round(lab, rng, MODES[i % len(MODES)]))
    problems = Counter(p for r in results for p in judge(r))
    trips = Counter(f"{r['mode']}: {r['trip'][0] if r['trip'] else None}" for r in results)
    return {"rounds": rounds, "seed": seed, "wall_s": round(time.monotonic() - t0, 1),
            "cpu_s": round(time.process_time() - c0, 1), "trips": dict(sorted(trips.items())),
            **{k: problems.get(k, 0) for k in ("misnamed", "misassigned", "unsafe",
                                                "other_reported", "no_trip")},
            "failures": [r for r in results if judge(r)][:10]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    summary = run_soak(args.rounds, args.seed)
    text = json.dumps(summary, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    bad = sum(summary[k] for k in ("misnamed", "misassigned", "unsafe", "other_reported",
                                   "no_trip"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
