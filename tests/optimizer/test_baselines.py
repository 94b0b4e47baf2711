"""Random and Sobol baselines: valid, constraint-aware, deterministic, resumable."""

from __future__ import annotations

import json

import pytest

from autolab.optimizer import (
    Optimizer,
    RandomOptimizer,
    SobolOptimizer,
    make_optimizer,
    optimizer_from_state,
)

from .problems import peak_problem, space_3d_constrained, target_objective


@pytest.mark.parametrize("cls", [RandomOptimizer, SobolOptimizer])
def test_proposals_respect_bounds_and_constraints(cls: type[RandomOptimizer]) -> None:
    space = space_3d_constrained()
    opt = cls(space, target_objective(), seed=3)
    assert isinstance(opt, Optimizer)
    batch = opt.ask(64)
    assert len(batch) == 64
    for point in batch:
        assert space.check(point) == point
        assert point["a"] + point["c"] <= 12.0 + 1e-9
    # The corner a + c > 12 is 8 % of the box; rejection must not shrink the rest of it.
    assert max(p["a"] for p in batch) > 8.0
    assert max(p["c"] for p in batch) > 8.0


@pytest.mark.parametrize("name", ["random", "sobol"])
def test_deterministic_and_resumable(name: str) -> None:
    space = space_3d_constrained()
    a = make_optimizer(name, space, target_objective(), seed=7)
    b = make_optimizer(name, space, target_objective(), seed=7)
    assert a.ask(3) == b.ask(3)
    for _ in range(3):
        [x] = a.ask(1)
        a.tell([x], [peak_problem(space, x)])
    restored = optimizer_from_state(json.loads(json.dumps(a.state_dict())))
    assert type(restored) is type(a)
    assert restored.observations == a.observations
    assert restored.ask(2) == a.ask(2)
    other_seed = make_optimizer(name, space, target_objective(), seed=8)
    assert other_seed.ask(1) != make_optimizer(name, space, target_objective(), seed=7).ask(1)


def test_sobol_continues_the_sequence_past_told_and_pending_points() -> None:
    space = space_3d_constrained()
    whole = SobolOptimizer(space, target_objective(), seed=1).ask(6)
    opt = SobolOptimizer(space, target_objective(), seed=1)
    first = opt.ask(2)
    assert first == whole[:2]
    opt.tell([first[0]], [peak_problem(space, first[0])])
    assert opt.ask(2, pending=[first[1]]) == whole[2:4]
    assert len({tuple(p.values()) for p in whole}) == 6


def test_random_pending_changes_the_draw() -> None:
    space = space_3d_constrained()
    opt = RandomOptimizer(space, target_objective(), seed=1)
    [x] = opt.ask(1)
    assert opt.ask(1, pending=[x]) != [x]
