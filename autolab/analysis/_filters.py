"""The three SciPy filters the analyzer's every-experiment path uses, computed the same way.

``scipy.signal`` and ``scipy.ndimage`` cost every ``autolab`` process about 1.3 s to import
(``scipy.signal`` pulls ``scipy.stats``, ``scipy.interpolate`` and the docstring machinery with
it), while the analyzer needs only a Savitzky-Golay kernel, a convolution along the pixels with
the edge pixel repeated, and a running mean. These are those three, written to perform the same
floating-point operations in the same order as SciPy 1.17's code (``savgol_coeffs``, the line
loop of ``ndimage``'s ``correlate1d`` with its symmetric and antisymmetric kernels, and its
``uniform_filter1d`` running sum), so every feature, stored golden value and resumed journal
reads the same to the last bit. ``tests/analysis/test_filters.py`` checks them against SciPy on
generated inputs (a NaN result is a NaN in both, its sign and payload bits aside: where NaN and
inf pixels meet, which operand's NaN the hardware returns may differ; the analyzer zeroes invalid
pixels before these filters). The rest of SciPy's modes and options are not offered here.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import lstsq

FloatArray = NDArray[np.float64]

#: ``DBL_EPSILON``: how far apart mirrored taps may be for ndimage to treat a kernel as symmetric.
_DBL_EPSILON = float(np.finfo(np.float64).eps)


@lru_cache(maxsize=64)
def savgol_coeffs(window: int, polyorder: int, *, deriv: int = 0, delta: float = 1.0,
                  use: Literal["conv", "dot"] = "conv") -> FloatArray:
    """Savitzky-Golay kernel of an odd ``window`` centred on its middle pixel (cached, read-only).

    Args:
        window: Odd window length, pixels (> ``polyorder``).
        polyorder: Order of the local polynomial.
        deriv: Order of the derivative the kernel returns.
        delta: Pixel spacing (the derivative is per unit of it).
        use: ``conv`` (for a convolution, taps reversed) or ``dot`` (for a dot product).

    Returns:
        The ``window`` taps, as ``scipy.signal.savgol_coeffs`` gives them.

    Raises:
        ValueError: An even window, or ``polyorder`` not below ``window``.
    """
    if window % 2 == 0 or window < 1:
        raise ValueError(f"window: expected an odd number of pixels, got {window}")
    if not 0 <= polyorder < window:
        raise ValueError(f"polyorder: expected 0 <= polyorder < window ({window}), "
                         f"got {polyorder}")
    if deriv > polyorder:
        zeros = np.zeros(window, dtype=np.float64)
        zeros.setflags(write=False)
        return zeros
    half = window // 2
    x = np.arange(-half, window - half, dtype=np.float64)
    if use == "conv":
        x = np.flip(x)
    a = x ** np.arange(polyorder + 1, dtype=np.float64).reshape(-1, 1)
    y = np.zeros(polyorder + 1, dtype=np.float64)
    y[deriv] = float(math.factorial(deriv)) / (delta ** deriv)
    coeffs = np.asarray(lstsq(a, y, cond=_DBL_EPSILON * max(a.shape))[0], dtype=np.float64)
    coeffs.setflags(write=False)  # shared by every caller of the cache
    return coeffs


def _edge_padded(x: FloatArray, left: int, right: int) -> FloatArray:
    """Rows of ``x`` with the first pixel repeated ``left`` times and the last ``right``."""
    return np.concatenate([np.repeat(x[:, :1], left, axis=1), x,
                           np.repeat(x[:, -1:], right, axis=1)], axis=1)


def convolve_nearest(x: FloatArray, kernel: FloatArray) -> FloatArray:
    """Convolution of each row with an odd ``kernel``, the edge pixels repeated beyond the ends.

    ``scipy.ndimage.convolve1d(x, kernel, axis=-1, mode="nearest")``: the kernel reversed and
    correlated; a kernel whose mirrored taps agree (or are opposite) within ``DBL_EPSILON`` is
    summed in mirrored pairs, outermost first, as ndimage does.

    Args:
        x: Rows, ``(N, P)``.
        kernel: Taps, odd length.

    Returns:
        ``(N, P)``.
    """
    x = np.asarray(x, dtype=np.float64)
    fw = np.ascontiguousarray(np.asarray(kernel, dtype=np.float64)[::-1])
    if fw.shape[0] % 2 == 0:
        raise ValueError(f"kernel: expected an odd number of taps, got {fw.shape[0]}")
    h = fw.shape[0] // 2
    with np.errstate(all="ignore"):  # SciPy's C loop warns of no NaN or inf pixel
        return _correlate(_edge_padded(x, h, h), fw, x.shape[1])


def _correlate(xp: FloatArray, fw: FloatArray, n: int) -> FloatArray:
    """The correlation loop of ndimage over padded rows ``xp`` with the taps ``fw`` (odd length)."""
    h = fw.shape[0] // 2

    def at(j: int) -> FloatArray:  # the pixel j taps from the centre, for every position
        return xp[:, h + j: h + j + n]

    mirrored = [(fw[h + i], fw[h - i]) for i in range(1, h + 1)]
    # ndimage's test, NaN taps included: a pair breaks the symmetry only if it differs by more
    if not any(abs(r - left) > _DBL_EPSILON for r, left in mirrored):
        out = at(0) * fw[h]
        for j in range(-h, 0):
            out += (at(j) + at(-j)) * fw[h + j]
    elif not any(abs(r + left) > _DBL_EPSILON for r, left in mirrored):
        out = at(0) * fw[h]
        for j in range(-h, 0):
            out += (at(j) - at(-j)) * fw[h + j]
    else:
        out = at(h) * fw[2 * h]
        for j in range(-h, h):
            out += at(j) * fw[h + j]
    return np.asarray(out, dtype=np.float64)


def running_mean_nearest(x: FloatArray, size: int) -> FloatArray:
    """Mean over ``size`` pixels around each pixel of each row, the edge pixels repeated.

    ``scipy.ndimage.uniform_filter1d(x, size, axis=-1, mode="nearest")``: a running sum (the
    first window summed pixel by pixel, then one pixel in and one out per step) divided by
    ``size``; ``numpy.add.accumulate`` adds in the same order.

    Args:
        x: Rows, ``(N, P)``.
        size: Window length, pixels (>= 1).

    Returns:
        ``(N, P)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if size < 1:
        raise ValueError(f"size: expected at least 1 pixel, got {size}")
    left = size // 2
    xp = _edge_padded(x, left, size - left - 1)
    n = x.shape[1]
    with np.errstate(all="ignore"):  # SciPy's C loop warns of no NaN or inf pixel
        return _running_sum(xp, size, n) / size


def _running_sum(xp: FloatArray, size: int, n: int) -> FloatArray:
    """The running sum of ndimage over padded rows ``xp``: the first window, then in minus out."""
    first = np.add.accumulate(np.concatenate([np.zeros((xp.shape[0], 1)), xp[:, :size]],
                                             axis=1), axis=1)[:, -1:]
    steps = xp[:, size: size + n - 1] - xp[:, : n - 1]
    return np.asarray(np.add.accumulate(np.concatenate([first, steps], axis=1), axis=1),
                      dtype=np.float64)
