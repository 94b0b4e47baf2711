"""The old product still in the flow cell: its moves on the features and on the stated sd.

The moves are linear responses of a mixture of two lines; these tests hold them against real
mixtures rendered on a fine grid, and the analyzer's stated sd against the formula.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from analysis_synth import Case, measurement

from autolab.analysis import analyze
from autolab.analysis.carryover import (
    SHARE_MIN,
    OldProduct,
    carryover_sd,
    emission_moves,
    pl_max_counts,
    with_carryover,
)

GRID = np.linspace(400.0, 800.0, 400_001)  # 1 pm: the numerical maximum to well under 1e-3 nm


def _gauss(peak_nm: float, fwhm_nm: float) -> np.ndarray:
    return np.exp(-4.0 * math.log(2.0) * ((GRID - peak_nm) / fwhm_nm) ** 2)


def _peak_fwhm(y: np.ndarray) -> tuple[float, float]:
    i = int(np.argmax(y))
    above = np.flatnonzero(y >= y[i] / 2.0)
    return float(GRID[i]), float(GRID[above[-1]] - GRID[above[0]])


@pytest.mark.parametrize(("d_nm", "old_fwhm_nm"), [(2.0, 30.0), (10.0, 30.0), (25.0, 40.0),
                                                   (-15.0, 25.0), (80.0, 35.0)])
def test_moves_match_a_real_mixture_of_two_lines(d_nm: float, old_fwhm_nm: float) -> None:
    peak, width, w = 550.0, 30.0, 0.01
    mixed_peak, mixed_width = _peak_fwhm(_gauss(peak, width) + w * _gauss(peak + d_nm,
                                                                          old_fwhm_nm))
    move_peak, move_width = emission_moves(w, peak, width, peak + d_nm, old_fwhm_nm)
    assert abs(mixed_peak - peak) == pytest.approx(move_peak, rel=0.1, abs=2e-3)
    assert abs(mixed_width - width) == pytest.approx(move_width, rel=0.1, abs=4e-3)


def test_a_far_old_line_barely_moves_the_peak_a_near_one_by_the_share() -> None:
    far, _ = emission_moves(0.03, 550.0, 30.0, 650.0, 30.0)
    near, _ = emission_moves(0.03, 550.0, 30.0, 551.0, 30.0)
    assert far < 1e-6  # share x |d| would say 3 nm
    assert near == pytest.approx(0.03, rel=0.01)


def test_an_identical_line_moves_nothing_and_a_large_share_is_capped() -> None:
    assert emission_moves(0.05, 550.0, 30.0, 550.0, 30.0) == (0.0, 0.0)
    peak, width = emission_moves(50.0, 550.0, 30.0, 552.0, 31.0)
    assert (peak, width) == (2.0, 3.0)  # the width: 1 nm apart in width, 2 nm in peak


def _reading(**kw: float) -> dict[str, float]:
    base = {"pl_peak_nm": 600.0, "fwhm_nm": 35.0, "qy": 0.2, "abs_peak_nm": 570.0,
            "absorbance_at_excitation": 0.3, "pl_max_counts": 20_000.0}
    return {**base, **kw}


def test_the_stated_sd_adds_the_carryover_in_quadrature() -> None:
    m, _ = measurement(Case(), np.random.default_rng(1))
    plain = analyze(m)
    old = OldProduct(share=0.02, reading=_reading(pl_peak_nm=plain.pl_peak_nm + 12.0))
    mixed = dataclasses.replace(m, metadata={**m.metadata, **old.metadata()})
    f = analyze(mixed)
    extra = carryover_sd(old, plain, pl_max_counts(m))
    assert extra["pl_peak_nm"] > 0.01 and extra["qy"] > 0
    for name in ("pl_peak_nm", "fwhm_nm", "qy", "abs_peak_nm"):
        assert getattr(f, f"{name}_err") == pytest.approx(
            math.hypot(getattr(plain, f"{name}_err"), extra[name]), rel=1e-12)
        assert getattr(f, name) == getattr(plain, name)  # the values are the reading's


def test_too_small_a_share_or_none_at_all_changes_nothing() -> None:
    m, _ = measurement(Case(), np.random.default_rng(2))
    plain = analyze(m)
    below = OldProduct(share=0.9 * SHARE_MIN, reading=_reading())
    tiny = dataclasses.replace(m, metadata={**m.metadata, **below.metadata()})
    assert analyze(tiny) == plain
    unread = dataclasses.replace(m, metadata={**m.metadata, "carryover_share": 0.04})
    assert analyze(unread) == plain  # a share without the old reading: nothing to weigh
    assert with_carryover(plain, m) is plain


@pytest.mark.parametrize("share", [-0.1, 1.5, math.nan])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match=r"OldProduct.share: expected a share in \[0, 1\]"):
        OldProduct(share=share, reading=_reading())


def test_an_unknown_reading_field_is_refused() -> None:
    with pytest.raises(ValueError, match=r"OldProduct\.reading: unknown fields"):
        OldProduct(share=0.1, reading={"colour": 1.0})
