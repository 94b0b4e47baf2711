"""The reactor family: seeded members, wide spread, cheap truth, readable spectra, real failures."""

from __future__ import annotations

import numpy as np
import pytest

from autolab.analysis import analyze
from autolab.benchmarking.family import (
    HELDOUT_SEED_BASE,
    MEMBER_KINDS,
    condition_matrix,
    draw_member,
    family,
    nominal_member,
)
from autolab.exceptions import ExperimentFailed
from autolab.records import Conditions
from autolab.space import qd_space

NAMES = qd_space().names
FIXED = {"p_to_in": 3.6}
#: The calibrated twin's 550-nm neighbourhood (seed-paper conditions, Cl:I 4.9).
NOMINAL_550 = Conditions(t_core_c=180, tau_core_min=13, t_shell_c=290, tau_shell_min=15,
                         cl_to_i=4.9, s_to_zn=2)


def _row(c: Conditions) -> np.ndarray:
    return np.array([[getattr(c, n) for n in NAMES]])


@pytest.mark.parametrize("kind", MEMBER_KINDS)
def test_member_is_a_pure_function_of_kind_and_seed(kind: str) -> None:
    a, b = draw_member(kind, 3), draw_member(kind, 3)  # type: ignore[arg-type]
    assert a == b
    assert a != draw_member(kind, 4)  # type: ignore[arg-type]
    assert a.name == f"{kind}-3"


def test_design_and_heldout_sets_never_share_a_reactor() -> None:
    design, held = family(per_kind=2), family(per_kind=2, split="heldout")
    assert {m.split for m in design} == {"design"}
    assert {m.split for m in held} == {"heldout"}
    assert all(m.seed >= HELDOUT_SEED_BASE for m in held)
    assert not {m.name for m in design} & {m.name for m in held}
    assert [m.kind for m in design].count("rff") == 2


def test_bad_kind_or_seed_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown member kind 'gp'"):
        draw_member("gp", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        draw_member("twin", -2)


def test_spread_moves_pl_by_tens_of_nm_and_the_qy_optimum_across_the_box() -> None:
    members = family(per_kind=4)
    pl_nominal = [float(m.truth_points(_row(NOMINAL_550), NAMES, FIXED).pl_peak_nm[0])
                  for m in members]
    assert max(pl_nominal) - min(pl_nominal) > 40.0
    rng = np.random.default_rng(0)
    u = rng.random((3000, len(NAMES)))
    x = np.array([[p[n] for n in NAMES] for p in qd_space().from_unit(u)])
    best_u = []
    for m in members:
        t = m.truth_points(x, NAMES, FIXED)
        best_u.append(u[int(np.argmax(np.where(t.p_fail < 0.5, t.qy, -1.0)))])
    spread = np.ptp(np.asarray(best_u), axis=0)
    assert (spread > 0.5).sum() >= 4  # the optimum moves across most of the axes


@pytest.mark.parametrize("kind", MEMBER_KINDS)
def test_executor_truth_matches_vectorized_truth_and_the_analyzer_reads_it(kind: str) -> None:
    member = draw_member(kind, 1)  # type: ignore[arg-type]
    ex = member.executor(seed=2)
    c = Conditions(t_core_c=175, tau_core_min=12, t_shell_c=285, tau_shell_min=18,
                   cl_to_i=8.0, s_to_zn=2.0, p_to_in=3.6)
    meas = ex.run(c)
    truth = ex.truths[0]
    fast = member.truth(condition_matrix(_row(c), NAMES, FIXED))
    assert truth.pl_peak_nm == pytest.approx(float(fast.pl_peak_nm[0]), abs=0.3)
    assert truth.qy == pytest.approx(float(fast.qy[0]), rel=1e-3)
    f = analyze(meas)
    assert f.usable
    # noise: condition jitter, detector noise, QY read-out error of the member
    assert abs(f.pl_peak_nm - truth.pl_peak_nm) < 6.0
    assert f.qy == pytest.approx(truth.qy, rel=0.35)
    assert ex.lab_clock_h > 0.5


@pytest.mark.parametrize("kind", ["rff", "additive"])
def test_non_twin_members_clog_in_the_corner(kind: str) -> None:
    member = draw_member(kind, 0)  # type: ignore[arg-type]
    corner = Conditions(t_core_c=220, tau_core_min=30, t_shell_c=300, tau_shell_min=20,
                        cl_to_i=5, s_to_zn=2)
    assert member.truth_points(_row(corner), NAMES, FIXED).p_fail[0] > 0.99
    ex = member.executor(seed=0)
    with pytest.raises(ExperimentFailed) as err:
        ex.run(corner)
    assert err.value.reason == "clogging"
    assert 0 in ex.truths  # a failed run keeps its truth


def test_nominal_member_is_the_calibrated_twin() -> None:
    t = nominal_member().truth_points(_row(NOMINAL_550), NAMES, FIXED)
    assert 548.0 < float(t.pl_peak_nm[0]) < 558.0
