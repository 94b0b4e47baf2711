"""benchmarks/lab_hours.py: later seeds, records merged from several runs, the paired found-rate."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import pytest

from autolab.benchmarking.benchmark import make_jobs
from autolab.benchmarking.problem import Reachable
from autolab.benchmarking.spec import load_spec, parse_spec
from tests.scripts import load_script

from .tiny import TINY

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    return load_script("benchmarks/lab_hours.py")


def test_seed_offset_runs_the_later_seeds_only() -> None:
    lab_hours = _script()
    base = load_spec(ROOT / "benchmarks" / "lab_hours.yaml")
    later = lab_hours.with_seeds(base, 8, 8)
    assert later.seed_list == tuple(range(8, 16))
    assert lab_hours.with_seeds(base, 8, 0).seed_list == tuple(range(8))
    assert lab_hours.with_seeds(base, None, 0).seed_list == base.seed_list
    assert lab_hours.with_seeds(base, None, 3).seed_list == (3, 4)
    rows = {m.name: tuple(Reachable(t.pl_peak_nm, t.tolerance_nm, 0.5, {}, 1)
                          for t in later.targets) for m in later.members()}
    jobs, _ = make_jobs(later, rows)
    assert {j.seed for j in jobs} == set(range(8, 16))


@pytest.mark.parametrize(("count", "offset", "field"), [(8, -1, "--seed-offset"),
                                                        (0, 0, "--seeds")])
def test_bad_seed_window_is_refused(count: int, offset: int, field: str) -> None:
    base = load_spec(ROOT / "benchmarks" / "lab_hours.yaml")
    with pytest.raises(ValueError, match=field):
        _script().with_seeds(base, count, offset)


def _cells(flags: list[bool]) -> dict[tuple[str, float, int], bool]:
    return {("m", 550.0, i): f for i, f in enumerate(flags)}


def test_paired_found_counts_the_discordant_cells_and_tests_them_exactly() -> None:
    # the recorded 8-seed procedure figures: 48 both, 6 fixed only, 3 adaptive only, 7 neither
    base = [True] * 48 + [True] * 6 + [False] * 3 + [False] * 7
    other = [True] * 48 + [False] * 6 + [True] * 3 + [False] * 7
    pf = _script().paired_found(_cells(base), _cells(other))
    assert (pf["both"], pf["only_base"], pf["only_other"], pf["neither"]) == (48, 6, 3, 7)
    # exact two-sided binomial on 9 discordant cells, 3 vs 6: 2 * (1 + 9 + 36 + 84) / 512
    assert pf["mcnemar_exact_p"] == pytest.approx(260 / 512)
    assert pf["difference"] == pytest.approx(-3 / 64)
    lo, hi = pf["difference_ci95"]
    assert -1 <= lo < pf["difference"] < hi <= 1
    # swapping the variants mirrors the interval
    back = _script().paired_found(_cells(other), _cells(base))
    assert back["difference_ci95"] == pytest.approx([-hi, -lo])


def test_paired_interval_without_correlation_is_newcombes_unpaired_score_interval() -> None:
    # both*neither == only_base*only_other: phi = 0, so the paired interval reduces to the
    # hybrid score interval of two independent proportions (Wilson limits, no cross term)
    base = [True] * 4 + [True] * 4 + [False] * 4 + [False] * 4
    other = [True] * 4 + [False] * 4 + [True] * 4 + [False] * 4
    pf = _script().paired_found(_cells(base), _cells(other))
    z, n = 1.959964, 16

    def wilson(k: int) -> tuple[float, float]:
        p = k / n
        root = z * math.sqrt(4 * n * p * (1 - p) + z * z)
        return (2 * n * p + z * z - root) / (2 * (n + z * z)), \
            (2 * n * p + z * z + root) / (2 * (n + z * z))

    (l1, u1), (l2, u2) = wilson(8), wilson(8)
    assert pf["difference"] == 0.0
    assert pf["difference_ci95"] == pytest.approx([-math.hypot(0.5 - l1, u2 - 0.5),
                                                  math.hypot(u1 - 0.5, 0.5 - l2)])


def test_paired_found_refuses_unpaired_cells() -> None:
    with pytest.raises(ValueError, match="same, non-empty cells"):
        _script().paired_found(_cells([True, False]), _cells([True]))


def test_a_record_merged_from_two_runs_holds_every_cell_of_both(tmp_path: Path) -> None:
    lab_hours = _script()
    tiny = parse_spec({**TINY, "strategies": ["random"]})
    first, second = tmp_path / "a", tmp_path / "b"
    runs = {}
    for out, offset in ((first, 0), (second, 1)):
        spec = lab_hours.with_seeds(tiny, 1, offset)
        runs[offset] = lab_hours.run_variant(lab_hours.FIXED, spec, out, 1, "test")
    merged = lab_hours.load_cells(lab_hours.FIXED, lab_hours.with_seeds(tiny, 2, 0),
                                  [first, second])
    assert [r.to_dict() for r in merged] == [runs[0][0].to_dict(), runs[1][0].to_dict()]
    with pytest.raises(FileNotFoundError, match="1 cells are in no folder"):
        lab_hours.load_cells(lab_hours.FIXED, lab_hours.with_seeds(tiny, 2, 0), [first])
    # the other variant's cells were never run: nothing is made up for them
    with pytest.raises(FileNotFoundError, match="2 cells are in no folder"):
        lab_hours.load_cells(lab_hours.ADAPTIVE, lab_hours.with_seeds(tiny, 2, 0),
                             [first, second])


def test_reading_accuracy_pairs_the_readings_of_identical_conditions(tmp_path: Path) -> None:
    # random proposals do not depend on the readings: both procedures run the same conditions
    # in the same order, so every reading pairs and the campaigns never diverge
    lab_hours = _script()
    tiny = lab_hours.with_seeds(parse_spec({**TINY, "strategies": ["random"]}), 1, 0)
    fixed = lab_hours.run_variant(lab_hours.FIXED, tiny, tmp_path, 1, "test")
    adaptive = lab_hours.run_variant(lab_hours.ADAPTIVE, tiny, tmp_path, 1, "test")
    rd = lab_hours.reading_accuracy(fixed, adaptive)
    told = [s for s in fixed[0].steps if not s.failed]
    assert rd["identical_readings"] == len(told) >= 2
    assert rd["diverged_at"] == "-"
    assert rd["base"]["readings"] == len(told)
    pairs = [a.measured_pl_nm - f.measured_pl_nm
             for a, f in zip(adaptive[0].steps, fixed[0].steps, strict=True) if not f.failed]
    assert rd["other_minus_base_nm"] == pytest.approx(sum(pairs) / len(pairs))
    back = lab_hours.reading_accuracy(adaptive, fixed)
    assert back["other_minus_base_nm"] == pytest.approx(-rd["other_minus_base_nm"])
