"""Device faults on one of two parallel serial reactors (two virtual labs, over ptys).

A fault on one reactor is that reactor's: an invalid experiment is journaled and never told
while the other reactor's experiment counts; a trip ends the campaign with every reactor's rig
in its safe state (the one still running is shut down too), each shutdown journaled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from autolab.campaign import Campaign
from autolab.config import parse_campaign
from autolab.exceptions import SafetyTrip
from autolab.executors.cstr import CSTRExecutor
from autolab.records import TrialStatus
from autolab.tracking import Journal
from autolab.virtuallab.lab import VirtualLab

from .test_virtual_lab import _when

SCALE = 800.0  # lab s per wall s: the supervisor polls a few lab minutes apart


def _config(name: str) -> Any:
    return parse_campaign({
        "name": name, "seed": 3, "reactors": [{"name": "a"}, {"name": "b"}],
        "space": {"parameters": ["t_core_c", "t_shell_c", "cl_to_i"],
                  "fixed": {"tau_core_min": 10, "tau_shell_min": 12, "s_to_zn": 2,
                            "p_to_in": 3.6}},
        "objective": {"mode": "scalar",
                      "terms": [{"kind": "maximize", "outcome": "qy", "scale": 0.1}]},
        "optimizer": {"kind": "sobol"}, "budget": {"max_experiments": 2},
        "tracking": {"enabled": False}}, "test")


@pytest.fixture
def two_labs() -> Iterator[tuple[dict[str, VirtualLab], dict[str, CSTRExecutor]]]:
    with ExitStack() as stack:
        labs = {n: stack.enter_context(VirtualLab(time_scale=SCALE)) for n in ("a", "b")}
        executors = {n: CSTRExecutor(lab.devices_config().model_copy(
            update={"temperature_hold_c": 5.0}), install_signal_handlers=False)
            for n, lab in labs.items()}
        for ex in executors.values():
            stack.callback(ex.close)
        yield labs, executors


def _settling(lab: VirtualLab, ex: CSTRExecutor) -> bool:
    with lab.reactor.lock:
        at = lab.reactor.valves["outlet_valve"] == 1 and lab.reactor.pumps[
            "pump_phosphine"].running
    return at and "shell" in ex.supervisor.holding


def _stopped(lab: VirtualLab) -> bool:
    with lab.reactor.lock:
        return not any(p.running for p in lab.reactor.pumps.values())


def test_an_invalid_experiment_on_one_reactor_is_not_told_the_other_counts(
        two_labs: Any, tmp_path: Path) -> None:
    labs, executors = two_labs
    campaign = Campaign.create(_config("par-invalid"), tmp_path, executor=executors)
    told: list[Any] = []
    tell = campaign.optimizer.tell

    def record(conditions: Any, outcomes: Any, *args: Any, **kwargs: Any) -> Any:
        told.extend(conditions)
        return tell(conditions, outcomes, *args, **kwargs)

    campaign.optimizer.tell = record  # type: ignore[method-assign]

    def element_dies() -> None:
        with labs["b"].reactor.lock:
            labs["b"].reactor.heaters["heater_shell"].op_hi_pct = 0.0

    _when(lambda: _settling(labs["b"], executors["b"]), element_dies)
    campaign.run()
    state = Journal.read(campaign.run_dir / "journal.jsonl")
    by_reactor = {state.extras[t.index]["reactor"]: t for t in state.trials}
    assert by_reactor["b"].status is TrialStatus.INVALID
    assert "heater_shell did not hold its setpoint" in (by_reactor["b"].error or "")
    assert by_reactor["a"].status is not TrialStatus.INVALID
    assert by_reactor["a"].measurement is not None
    searched = ("t_core_c", "t_shell_c", "cl_to_i")

    def point(conditions: Any) -> tuple[float, ...]:
        return tuple(round(float(conditions[k]), 6) for k in searched)

    assert [point(c) for c in told] == [point(by_reactor["a"].conditions)]
    assert all(ex.supervisor.trip is None for ex in executors.values())


def test_a_trip_on_one_reactor_leaves_both_rigs_in_their_safe_state(
        two_labs: Any, tmp_path: Path) -> None:
    labs, executors = two_labs
    campaign = Campaign.create(_config("par-trip"), tmp_path, executor=executors)

    def break_sensor() -> None:
        with labs["b"].reactor.lock:
            labs["b"].reactor.heaters["heater_core"].sensor_break = True

    _when(lambda: _settling(labs["b"], executors["b"]), break_sensor)
    with pytest.raises(SafetyTrip, match="sensor_break"):
        campaign.run()
    for name, lab in labs.items():
        assert _stopped(lab), name
        report = executors[name].last_shutdown
        assert report is not None, name
    assert executors["b"].last_shutdown.hard  # type: ignore[union-attr]
    state = Journal.read(campaign.run_dir / "journal.jsonl")
    assert state.stopped_reason is not None and "SafetyTrip" in state.stopped_reason
    notes = "\n".join(state.notes)
    assert "shutdown (safety trip)" in notes and "shutdown (close of reactor a)" in notes
    with labs["b"].reactor.lock:
        assert all(h.op_hi_pct == 0 for h in labs["b"].reactor.heaters.values())
    with labs["a"].reactor.lock:
        assert all(h.remote_sp_c == 25.0 for h in labs["a"].reactor.heaters.values())
