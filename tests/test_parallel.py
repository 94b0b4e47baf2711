"""Parallel reactors end to end on the simulated rig, and the batch order that cuts heater swings.

K reactors, one loop: each proposal treats the experiments running on the other reactors as
pending; results are delivered in lab-time order (a result is never known before its reactor's
clock reaches it); the journal says which reactor ran what, and resume after a crash with
experiments in flight gives exactly the uninterrupted campaign.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from mlflow import MlflowClient

from autolab.campaign import JOURNAL_NAME, Campaign, CampaignResult, make_executors
from autolab.config import parse_campaign
from autolab.exceptions import ConfigError
from autolab.optimizer import Optimizer
from autolab.optimizer.baselines import SobolOptimizer
from autolab.schedule import changeover, order_batch, path_cost
from autolab.tracking import Journal, MlflowTracker
from autolab.tracking.summary import lab_accounts
from tests.test_campaign import _assert_same_trials, config

REACTORS = [{"name": "r1"}, {"name": "r2"}, {"name": "r3"}]


def _parallel(**changes: Any) -> Any:
    base: dict[str, Any] = {"optimizer__kind": "sobol", "optimizer__settings": {},
                            "stop__target_reached": False, "tracking__enabled": False,
                            "reactors": REACTORS, "budget__max_experiments": 7}
    return parse_campaign(config(**{**base, **changes}))


class _Recording:
    """A real optimizer that records the pending conditions of every ask."""

    def __init__(self, inner: Optimizer) -> None:
        self.inner = inner
        self.name = inner.name
        self.pending: list[int] = []
        #: Per ask: the conditions pending and how many results had been told by then.
        self.asks: list[tuple[list[dict[str, float]], int]] = []
        self.told: list[dict[str, float]] = []

    def ask(self, n: int = 1, pending: Sequence[Mapping[str, float]] | None = None) -> Any:
        self.pending.append(len(pending or []))
        self.asks.append(([dict(p) for p in pending or []], len(self.told)))
        return self.inner.ask(n, pending=pending)

    def tell(self, conditions: Any, outcomes: Any) -> None:
        self.told += [dict(c) for c in conditions]
        self.inner.tell(conditions, outcomes)


@pytest.fixture(scope="module")
def seven(tmp_path_factory: pytest.TempPathFactory) -> tuple[CampaignResult, _Recording]:
    """The default 3-reactor campaign (7 Sobol experiments), run once, its asks recorded.

    Read only: the lab-time test reads its asks and journal, the resume test compares with its
    trials and reactors. Each ran the same campaign before, 7 experiments twice.
    """
    cfg = _parallel()
    recording = _Recording(SobolOptimizer(cfg.space.build(), cfg.objective, seed=cfg.seed))
    result = Campaign.create(cfg, tmp_path_factory.mktemp("seven"),
                             optimizer=recording).run()  # type: ignore[arg-type]
    return result, recording


def test_k_reactors_run_asynchronously_in_lab_time_order(
        seven: tuple[CampaignResult, _Recording]) -> None:
    result, recording = seven
    state = Journal.read(result.run_dir / JOURNAL_NAME)

    assert len(result.trials) == 7
    # the first three start together (0, 1, 2 pending), then each refill sees the other two
    assert recording.pending[:3] == [0, 1, 2]
    assert all(p == 2 for p in recording.pending[3:5])
    reactors = [state.extras[t.index]["reactor"] for t in state.trials]
    assert set(reactors) == {"r1", "r2", "r3"}
    assert {s.reactor for s in state.started.values()} == {"r1", "r2", "r3"}
    # delivered in lab-time order; the campaign clock is the latest reactor clock
    clocks = [state.extras[t.index]["lab_clock_h"] for t in state.trials]
    assert clocks == sorted(clocks)
    for t, clock in zip(state.trials, clocks, strict=True):
        assert state.extras[t.index]["reactor_clock_h"] == pytest.approx(clock)
    # three reactors in parallel: far less wall-clock lab time than the reactor-hours spent
    accounts = lab_accounts(state.trials, state.extras)
    reactor_hours = sum(a.experiment_lab_h for a in accounts)
    assert clocks[-1] < 0.6 * reactor_hours
    assert all(a.experiment_lab_h > 0 for a in accounts)


def test_a_freed_reactor_is_told_its_result_and_proposed_for_with_the_others_pending(
        tmp_path: Path) -> None:
    cfg = _parallel(budget__max_experiments=9)
    inner = SobolOptimizer(cfg.space.build(), cfg.objective, seed=cfg.seed)
    recording = _Recording(inner)
    result = Campaign.create(cfg, tmp_path, optimizer=recording).run()  # type: ignore[arg-type]
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    searched = list(cfg.space.build().names)
    proposed = [{k: t.conditions[k] for k in searched}
                for t in sorted(state.trials, key=lambda t: t.index)]
    delivered = [t.index for t in state.trials]  # delivery order
    assert len(recording.asks) == 9
    for i, (pending, told) in enumerate(recording.asks):
        # three reactors: the first three start together; every later one is proposed for the
        # reactor just freed, after its result (and every one before it) was told ...
        assert told == max(0, i - 2)
        # ... and the experiments running then on the other reactors are exactly the pending
        running = [proposed[j] for j in range(i) if j not in delivered[:told]]
        assert sorted(map(sorted, map(dict.items, pending))) == sorted(
            map(sorted, map(dict.items, running)))
        assert len(pending) == min(i, 2)


def test_resume_with_experiments_in_flight_matches_the_uninterrupted_campaign(
        tmp_path: Path, seven: tuple[CampaignResult, _Recording]) -> None:
    cfg = _parallel()
    reference = seven[0].trials
    campaign = Campaign.create(cfg, tmp_path / "crashed")
    run_dir = campaign.run_dir
    campaign.step()  # starts 3, delivers 1: two in flight when the process "dies"
    campaign.step()
    assert len(campaign.running()) == 2
    campaign.journal.close()
    state = Journal.read(run_dir / JOURNAL_NAME)
    in_flight = {state.started[i].reactor for i in state.in_flight}
    assert len(in_flight) == 2

    Campaign.resume(run_dir, executor=make_executors(cfg)).run()
    final = Journal.read(run_dir / JOURNAL_NAME)
    assert len(final.interrupted) == 2  # journaled as interrupted, then run again
    rerun = {t.conditions["t_core_c"] for t in final.interrupted}
    assert rerun <= {t.conditions["t_core_c"] for t in final.trials}
    _assert_same_trials(final.trials, reference)
    ref = Journal.read(seven[0].run_dir / JOURNAL_NAME)
    assert ([final.extras[t.index]["reactor"] for t in final.trials]
            == [ref.extras[t.index]["reactor"] for t in ref.trials])


def test_one_reactor_is_the_same_loop_as_no_reactors_list(tmp_path: Path) -> None:
    plain = parse_campaign(config(**{"optimizer__kind": "sobol", "optimizer__settings": {},
                                     "stop__target_reached": False, "tracking__enabled": False,
                                     "budget__max_experiments": 3}))
    one = parse_campaign(config(**{"optimizer__kind": "sobol", "optimizer__settings": {},
                                   "stop__target_reached": False, "tracking__enabled": False,
                                   "budget__max_experiments": 3, "reactors": [{"name": "solo"}]}))
    a = Campaign.create(plain, tmp_path / "a").run().trials
    b = Campaign.create(one, tmp_path / "b").run().trials
    _assert_same_trials(a, b)


@pytest.mark.parametrize(("reactors", "message"), [
    ([{"name": "r1"}, {"name": "r1"}], "names must be unique"),
    ([{"name": "r 1"}], "reactors.0.name"),
    ([{"name": "a", "seed": 3}, {"name": "b", "seed": 3}], "seeds must differ"),
    ([{"name": "a", "kind": "cstr", "devices": "d.yaml"},
      {"name": "b", "kind": "cstr", "devices": "d.yaml"}], "each reactor needs its own"),
    ([{"name": "a", "kind": "cstr"}], "reactors.0: kind 'cstr' needs 'devices"),
    ([{"name": "a", "colour": "red"}], "reactors.0.colour"),
    ([{"name": f"r{i}"} for i in range(17)], "reactors"),
])
def test_bad_reactors_are_refused_naming_the_field(reactors: list[Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_campaign(config(reactors=reactors))


def test_executors_must_match_the_reactors(tmp_path: Path) -> None:
    cfg = _parallel()
    executors = make_executors(cfg)
    with pytest.raises(ConfigError, match="give one executor per reactor"):
        Campaign.create(cfg, tmp_path, executor=executors["r1"])
    with pytest.raises(ConfigError, match="do not match"):
        Campaign.create(cfg, tmp_path, executor={"r1": executors["r1"]})
    assert not list(tmp_path.iterdir())


def test_reactor_entries_inherit_the_executor_section_and_get_distinct_seeds() -> None:
    cfg = _parallel(executor={"kind": "twin", "twin": {"settle_residence_times": 4.0}})
    specs = cfg.reactor_specs()
    assert [s.name for s in specs] == ["r1", "r2", "r3"]
    assert all(s.executor.twin.settle_residence_times == 4.0 for s in specs)
    assert specs[0].seed == cfg.seed and len({s.seed for s in specs}) == 3


# ---------------------------------------------------------------------------- batch ordering
def _pt(core: float, shell: float) -> dict[str, float]:
    return {"t_core_c": core, "t_shell_c": shell, "tau_core_min": 10.0}


def test_order_batch_is_the_cheapest_permutation() -> None:
    start = _pt(200, 260)
    points = [_pt(160, 300), _pt(210, 265), _pt(180, 280), _pt(230, 250)]
    order = order_batch(start, points)
    best = min(path_cost(start, points, o) for o in itertools.permutations(range(4)))
    assert path_cost(start, points, order) == pytest.approx(best)
    assert path_cost(start, points, order) < path_cost(start, points, [0, 1, 2, 3])


def test_order_batch_weights_cooling_and_ignores_non_temperatures() -> None:
    start = _pt(200, 260)
    up, down = _pt(220, 260), _pt(180, 260)
    assert changeover(start, up) == pytest.approx(changeover(start, down))
    assert changeover(start, down, cooling_weight=2.0) == pytest.approx(
        2 * changeover(start, up))
    # cooling costs double: take the cooling step first, where it is short, then heat
    assert order_batch(start, [up, down], cooling_weight=2.0) == [1, 0]
    assert changeover(start, {**start, "tau_core_min": 40.0}) == 0.0
    assert order_batch(None, [up]) == [0]
    with pytest.raises(ValueError, match="cooling_weight"):
        order_batch(start, [up, down], cooling_weight=0)


def test_large_batches_are_ordered_greedily_then_improved() -> None:
    rng = np.random.default_rng(0)
    points = [_pt(float(a), float(b)) for a, b in rng.uniform([150, 230], [230, 320], (12, 2))]
    order = order_batch(_pt(190, 280), points)
    assert sorted(order) == list(range(12))
    naive = path_cost(_pt(190, 280), points, range(12))
    assert path_cost(_pt(190, 280), points, order) < 0.6 * naive


def test_a_proposed_batch_runs_in_the_cheap_order(tmp_path: Path) -> None:
    cfg = _parallel(reactors=[{"name": "solo"}], optimizer__batch_size=4,
                    budget__max_experiments=8)
    trials = Campaign.create(cfg, tmp_path).run().trials
    for batch, start in ((trials[:4], None), (trials[4:], trials[3].conditions)):
        points = [t.conditions for t in batch]
        w = cfg.executor.twin.heating_rate_c_per_min / cfg.executor.twin.cooling_rate_c_per_min
        cost = path_cost(start, points, range(4), w)
        assert cost == pytest.approx(min(path_cost(start, points, o, w)
                                         for o in itertools.permutations(range(4))))


def test_mlflow_shows_the_reactor_and_the_waits_of_every_experiment(tmp_path: Path,
                                                                    fresh_store: str) -> None:
    cfg = _parallel(reactors=[{"name": "a"}, {"name": "b"}], budget__max_experiments=3,
                    tracking__enabled=True)
    uri = fresh_store
    tracker = MlflowTracker(tracking_uri=uri, experiment_name="parallel")
    result = Campaign.create(cfg, tmp_path / "runs", tracker=tracker).run()
    runs = tracker.trial_runs()
    assert len(runs) == 3
    assert {r.data.tags["autolab.reactor"] for r in runs} == {"a", "b"}
    for run in runs:
        waits = {k: v for k, v in run.data.metrics.items() if k.startswith("wait_")}
        assert {"wait_flush_min", "wait_heat_min", "wait_settle_min"} <= set(waits)
        assert waits["wait_settle_min"] > 0
        assert run.data.tags["autolab.meta.settle_reason"]
    parent = MlflowClient(uri).get_run(result.tracking_run_id)  # type: ignore[arg-type]
    assert parent.data.metrics["lab_h_per_experiment"] > 0


def test_a_stop_request_lets_the_running_experiments_finish(tmp_path: Path) -> None:
    cfg = _parallel(budget__max_experiments=20)
    stopped: list[int] = []

    def stop_after_first(campaign: Campaign, trial: Any) -> None:
        if not stopped:
            stopped.append(trial.index)
            campaign.request_stop()

    result = Campaign.create(cfg, tmp_path, on_trial=stop_after_first).run()
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    assert len(result.trials) == 3  # the two still running were delivered, none started
    assert not state.interrupted and not state.in_flight
    assert len(state.started) == 3


def test_wall_clock_reactors_run_in_threads(tmp_path: Path) -> None:
    """Executors on a wall clock (``virtual_clock = False``, the serial rig) run side by side."""
    cfg = _parallel(reactors=[{"name": "a"}, {"name": "b"}], budget__max_experiments=4)
    executors = make_executors(cfg)
    threads: set[str] = set()
    for ex in executors.values():
        ex.virtual_clock = False  # type: ignore[attr-defined]
        run = ex.run

        def record(conditions: Any, run: Any = run) -> Any:
            threads.add(threading.current_thread().name)
            return run(conditions)
        ex.run = record  # type: ignore[method-assign]
    campaign = Campaign.create(cfg, tmp_path, executor=executors)
    result = campaign.run()
    state = Journal.read(result.run_dir / JOURNAL_NAME)
    assert len(result.trials) == 4 and not state.in_flight and not state.interrupted
    assert {state.extras[t.index]["reactor"] for t in state.trials} == {"a", "b"}
    assert threads and all(name.startswith("autolab-reactor") for name in threads)
