"""A setpoint read back after it was written (``autolab.hardware.limits``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.hardware.limits import RATE_REL_TOL, DidNotStick, check_rate_sticks, check_sticks


def test_a_small_rate_read_back_four_percent_off_did_not_stick() -> None:
    """0.05 mL/min read back as 0.052 passed an absolute 0.002 mL/min: a 4 % wrong flow (the
    halide and sulfur ratios are flow ratios) was found only by the monitor, mid-run."""
    with pytest.raises(DidNotStick, match=r"pump_a: setpoint rate_ml_min did not stick: "
                                          r"sent 0\.05, read back 0\.052"):
        check_rate_sticks("pump_a", 0.05, 0.052)
    check_rate_sticks("pump_a", 0.0, 0.0)
    with pytest.raises(DidNotStick):
        check_rate_sticks("pump_a", 0.0, 0.001)


@given(st.floats(1e-4, 100.0))
def test_four_significant_digits_always_stick(rate_ml_min: float) -> None:
    """What a pump keeps of a rate (4 significant digits, as the pumps' manuals write them)."""
    kept = float(f"{rate_ml_min:.4g}")
    check_rate_sticks("pump_a", rate_ml_min, kept)
    with pytest.raises(DidNotStick):
        check_rate_sticks("pump_a", rate_ml_min, rate_ml_min * (1 + 2.5 * RATE_REL_TOL))


def test_a_temperature_keeps_its_absolute_tolerance() -> None:
    check_sticks("core", "temperature_c", 250.0, 250.05, 0.06, relative=False)
    with pytest.raises(DidNotStick):
        check_sticks("core", "temperature_c", 250.0, 240.0, 0.06, relative=False)
