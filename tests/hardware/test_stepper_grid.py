"""The wall-clock stepper integrates on a grid of lab time, and loses none of it.

A wall-clock lab's batches are as long as the wall clock made them: each new length missed every
cached propagator of the transient cascade. :func:`autolab.virtuallab.reactor._on_grid` moves the
segment boundaries onto multiples of :data:`STEP_QUANTUM_MIN` and carries what is left over.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.twin.transient import TankInputs, _blas, one_blas_thread
from autolab.virtuallab.reactor import STEP_QUANTUM_MIN, _on_grid

Q = STEP_QUANTUM_MIN
A = TankInputs.solvent(1.0, t_tank_c=(25.0,) * 7, stir_rpm=(400.0,) * 7, s_inject_tank=4)
B = TankInputs.solvent(2.0, t_tank_c=(25.0,) * 7, stir_rpm=(400.0,) * 7, s_inject_tank=4)


@given(st.lists(st.tuples(st.sampled_from([A, B]), st.floats(0.0, 3.0)), min_size=1,
                max_size=12),
       st.floats(0.0, 0.99))
def test_the_grid_keeps_every_minute_and_the_order(parts: list[tuple[TankInputs, float]],
                                                   carried: float) -> None:
    segments = [(A, A, carried * Q), *((x, x, dt) for x, dt in parts)]
    out, carry = _on_grid(segments)
    total = sum(dt for _, _, dt in segments)
    done = sum(dt for _, _, dt in out)
    assert done + sum(dt for _, _, dt in carry) == pytest.approx(total, abs=1e-9)
    for _, _, dt in out:  # every step is a whole number of quanta
        assert dt > 0 and dt / Q == pytest.approx(round(dt / Q), abs=1e-9)
    assert len(carry) <= 1 and all(0 < dt < Q + 1e-9 for _, _, dt in carry)
    if carry:
        assert carry[0][0] is segments[-1][0]  # the rest runs under the latest inputs
    order = [x for x, _, _ in out]  # a subsequence of the inputs as they came
    it = iter(x for x, _, _ in segments)
    assert all(any(x is y for y in it) for x in order)


def test_a_boundary_moves_by_under_half_a_quantum() -> None:
    out, carry = _on_grid([(A, A, 1.3 * Q), (B, B, 2.9 * Q)])
    assert [(x is A, dt / Q) for x, _, dt in out] == [(True, 1.0), (False, 3.0)]
    assert carry[0][0] is B and carry[0][2] == pytest.approx(0.2 * Q)
    assert _on_grid([]) == ([], [])
    out, carry = _on_grid([(A, A, 0.4 * Q)])  # too short yet: all of it waits
    assert out == [] and carry[0][2] == pytest.approx(0.4 * Q)


def test_one_blas_thread_limits_once_and_restores_after_the_outermost() -> None:
    def blas_threads() -> list[int]:
        return [lib["num_threads"] for lib in _blas().info() if lib["user_api"] == "blas"]

    before = blas_threads()
    assert before, "numpy's BLAS is loaded: the checks below are not vacuous"
    with one_blas_thread():
        assert all(n == 1 for n in blas_threads())
        with one_blas_thread():
            assert all(n == 1 for n in blas_threads())
        assert all(n == 1 for n in blas_threads())  # the inner exit left the limit alone
    assert blas_threads() == before
