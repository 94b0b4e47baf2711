"""The analyzer's own Savitzky-Golay kernel, edge-repeating convolution and running mean are
SciPy's, bit for bit, on generated inputs (autolab/analysis/_filters.py says why they exist).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.ndimage import convolve1d, uniform_filter1d
from scipy.signal import savgol_coeffs as scipy_savgol_coeffs
from scipy.signal import savgol_filter

from autolab.analysis._filters import convolve_nearest, running_mean_nearest, savgol_coeffs

# values of the sizes the analyzer meets (absorbances, counts, squared 4th differences), zeros,
# and the odd NaN or inf of a dead pixel
_values = st.one_of(st.floats(-1e6, 1e6, width=64), st.floats(-3.0, 3.0),
                    st.sampled_from([0.0, 1.0, np.nan, np.inf]))
_rows = st.integers(1, 4).flatmap(lambda n: st.integers(1, 60).flatmap(
    lambda p: hnp.arrays(np.float64, (n, p), elements=_values)))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, except that a NaN is any NaN.

    Where a NaN pixel meets an inf one, the NaN's sign and payload bits depend on which operand
    the hardware returns (SciPy's C loop and numpy's ufunc may order them differently); no
    number the analyzer reads is a NaN (it zeroes invalid pixels before these filters).
    """
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return bool(np.array_equal(nan_a, nan_b)) and a[~nan_a].tobytes() == b[~nan_b].tobytes()


@settings(max_examples=100, deadline=None)
@given(half=st.integers(0, 25), polyorder=st.integers(0, 5), deriv=st.integers(0, 4),
       delta=st.floats(0.05, 5.0), use=st.sampled_from(["conv", "dot"]))
def test_savgol_coeffs_equal_scipy(half: int, polyorder: int, deriv: int, delta: float,
                                   use: str) -> None:
    window = 2 * half + 1
    if polyorder >= window:
        with pytest.raises(ValueError, match="polyorder"):
            savgol_coeffs(window, polyorder)
        return
    ours = savgol_coeffs(window, polyorder, deriv=deriv, delta=delta, use=use)
    assert _same(ours, scipy_savgol_coeffs(window, polyorder, deriv=deriv, delta=delta, use=use))


@settings(max_examples=100, deadline=None)
@given(x=_rows, half=st.integers(2, 25), deriv=st.integers(0, 3), delta=st.floats(0.1, 2.0))
def test_savgol_convolution_equals_scipy(x: np.ndarray, half: int, deriv: int,
                                         delta: float) -> None:
    """Even derivatives take ndimage's symmetric path, odd ones its antisymmetric one."""
    window = 2 * half + 1
    kernel = savgol_coeffs(window, 3, deriv=deriv, delta=delta)
    ours = convolve_nearest(x, kernel)
    assert _same(ours, convolve1d(x, kernel, axis=1, mode="nearest"))
    assert _same(ours, savgol_filter(x, window, 3, deriv=deriv, delta=delta, axis=1,
                                     mode="nearest"))


@settings(max_examples=60, deadline=None)
@given(x=_rows, kernel=hnp.arrays(np.float64, st.integers(0, 8).map(lambda h: 2 * h + 1),
                                  elements=st.floats(-10, 10)))
def test_any_odd_kernel_convolves_like_scipy(x: np.ndarray, kernel: np.ndarray) -> None:
    assert _same(convolve_nearest(x, kernel), convolve1d(x, kernel, axis=1, mode="nearest"))


@settings(max_examples=100, deadline=None)
@given(x=_rows, size=st.integers(1, 80))
def test_running_mean_equals_scipy(x: np.ndarray, size: int) -> None:
    assert _same(running_mean_nearest(x, size), uniform_filter1d(x, size, axis=1,
                                                                 mode="nearest"))


def test_bad_filter_arguments_name_what_was_expected() -> None:
    with pytest.raises(ValueError, match="window: expected an odd"):
        savgol_coeffs(10, 2)
    with pytest.raises(ValueError, match="kernel: expected an odd"):
        convolve_nearest(np.ones((1, 5)), np.ones(4))
    with pytest.raises(ValueError, match="size: expected at least 1"):
        running_mean_nearest(np.ones((1, 5)), 0)


def test_the_analyzer_imports_neither_scipy_signal_nor_ndimage() -> None:
    """What every ``autolab`` process pays at start: ~1.3 s of SciPy the analyzer never used."""
    code = ("import sys; import autolab.analysis, autolab.executors.simulated; "
            "print(','.join(m for m in ('scipy.signal', 'scipy.ndimage', 'scipy.stats') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
