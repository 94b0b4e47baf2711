"""The analyzer's pixel/bin grid is cached per detector grid, with the values a fresh one has."""

from __future__ import annotations

import numpy as np
import pytest

from autolab.analysis._core import Grid


def test_cached_grid_equals_a_fresh_one_and_is_read_only() -> None:
    wl = np.linspace(350.0, 800.0, 1024)
    grid = Grid.make(wl, 2.0)
    fresh = Grid._build(wl.copy(), 2.0)
    for name in ("wl", "energy", "dl", "wl_b", "width_b", "energy_width_b"):
        assert getattr(grid, name).tobytes() == getattr(fresh, name).tobytes()
    assert grid.b == fresh.b
    assert Grid.make(wl.copy(), 2.0) is grid
    assert Grid.make(wl, 1.0) is not grid
    wl[0] = 351.0  # the caller's array is not the cached one
    assert Grid.make(wl, 2.0) is not grid
    assert grid.wl[0] == 350.0
    with pytest.raises(ValueError, match="read-only"):
        grid.dl[0] = 0.0
