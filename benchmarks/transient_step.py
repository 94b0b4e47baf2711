"""Cost of the simulated rig's reactor physics: ``step`` and ``outlet`` of both cascades.

The simulated rig steps the cascade physics every time its clock moves (typically every 0.5-1
lab minute while it settles or streams spectra) and reads the outlet for every detector frame.
Goal (issue 9 §2): a step of the whole cascade well under a millisecond to a few ms.

Scenarios, each timed over ``--steps`` steps of ``--dt`` lab minutes after a warm-up:

* ``hold``: a feed held at constant conditions (propagators cached);
* ``ramp``: the core temperature ramps a little every step (every step a new propagator);
* ``outlet``: the outlet of the settled product (spectra on the detector grid).

Reports wall and process-CPU time per call (the CPU time is the one to trust on a busy
machine), and the steady-state accuracy of the transient cascade against the closed form.

Usage::

    .venv/bin/python benchmarks/transient_step.py            # prints, records the JSON
    .venv/bin/python benchmarks/transient_step.py --steps 100 --no-record
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from autolab.records import Conditions
from autolab.twin import DigitalTwin, TwinConfig
from autolab.twin.model import condition_states, features_from_states
from autolab.twin.transient import (
    CascadePhysics,
    CascadeState,
    MixingCascade,
    TankInputs,
    TransientCascade,
)

PAPER = Conditions(180, 13, 290, 15, 6, 2)


def _timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """Mean wall and CPU milliseconds per call over ``n`` calls."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return ((time.perf_counter() - w0) / n * 1e3, (time.process_time() - c0) / n * 1e3)


def _settle(physics: CascadePhysics, c: Conditions, dt: float) -> CascadeState:
    s = physics.initial()
    for _ in range(round(7 * (c.tau_core_min + c.tau_shell_min) / dt)):
        s = physics.step(s, TankInputs.feeding(c), dt)
    return s


def bench(physics: CascadePhysics, steps: int, dt: float) -> dict[str, tuple[float, float]]:
    """Wall and CPU ms per call of each scenario."""
    state = {"s": _settle(physics, PAPER, dt)}
    feed = TankInputs.feeding(PAPER)
    k = {"i": 0}

    def hold() -> None:
        state["s"] = physics.step(state["s"], feed, dt)

    def ramp() -> None:
        k["i"] += 1
        c = Conditions(180 + 0.02 * k["i"], 13, 290, 15, 6, 2)
        state["s"] = physics.step(state["s"], TankInputs.feeding(c), dt)

    out = {"hold": _timed(hold, steps), "ramp": _timed(ramp, steps)}
    settled = state["s"]

    def read() -> None:  # a new state object each time: no memo of the last read
        physics.outlet(CascadeState(settled.kind, settled.t_min, settled.tracers,
                                    settled.fields))

    out["outlet"] = _timed(read, max(10, steps // 4))
    return out


def accuracy(physics: TransientCascade) -> dict[str, float]:
    """Largest steady-state differences to the closed form over a few box corners."""
    cfg = physics.config
    worst = {"pl_peak_nm": 0.0, "fwhm_nm": 0.0, "qy": 0.0}
    for c in (PAPER, Conditions(205, 6, 315, 11, 1.5, 3.2, 3.0),
              Conditions(168, 28, 262, 27, 40, 1.3, 4.6)):
        core, shell, _ = physics.tank_states(_settle(physics, c, 0.5))
        got = features_from_states(core, shell, cfg)
        want = features_from_states(*condition_states(c, cfg), cfg)
        for name, so_far in list(worst.items()):
            worst[name] = max(so_far, abs(float(getattr(got, name)[0] - getattr(want, name)[0])))
    return worst


def main() -> None:
    """Print the figures (and record them for BENCHMARKS.md unless ``--no-record``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--dt", type=float, default=0.5, help="lab minutes per step")
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    cfg = TwinConfig()
    physics: dict[str, CascadePhysics] = {
        "mixing": MixingCascade(DigitalTwin(cfg).product, cfg),
        "transient": TransientCascade(cfg)}
    rows = []
    for name, ph in physics.items():
        for scenario, (wall, cpu) in bench(ph, args.steps, args.dt).items():
            rows.append((name, scenario, f"{wall:.3f}", f"{cpu:.3f}"))
            print(f"{name:9s} {scenario:7s} {wall:8.3f} ms wall {cpu:8.3f} ms CPU per call "
                  f"(dt = {args.dt:g} min)")
    acc = accuracy(TransientCascade(cfg))
    print("transient steady state vs closed form (worst of 3 corners): "
          + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    if not args.no_record:
        _record(args, rows, acc)


def _record(args: argparse.Namespace, rows: list[tuple[str, ...]],
            acc: dict[str, float]) -> None:
    from autolab.benchmarking.provenance import Result, Table, write_result

    worst_cpu = max(float(r[3]) for r in rows if r[0] == "transient" and r[1] != "outlet")
    result = Result(
        name="twin-transient", title="Twin: cascade physics step and outlet",
        description=f"Cost of one step ({args.dt:g} lab min) of the simulated rig's cascade "
                    "physics and of one outlet read, default reactor (7 tanks): the mixing "
                    "cascade (steady products as tracers) and the transient cascade (the "
                    "chemistry resolved per tank and core-age class). Goal: a step well under "
                    "a millisecond to a few ms.",
        tables=(Table("ms per call", ("physics", "scenario", "wall", "process CPU"),
                      tuple(rows)),
                Table("transient steady state against the closed form",
                      ("quantity", "largest |difference|"),
                      tuple((k, f"{v:.4f}") for k, v in acc.items()))),
        notes=(f"Transient step, worst scenario: {worst_cpu:.2f} ms CPU "
               f"({'met' if worst_cpu <= 5 else 'not met'}: goal a few ms).",),
        data={"rows": rows, "accuracy": acc, "steps": args.steps, "dt_min": args.dt})
    print(f"wrote {write_result(result)}")


if __name__ == "__main__":
    main()
