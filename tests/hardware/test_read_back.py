"""A setpoint read back after it was written (``autolab.hardware.limits``)."""

from __future__ import annotations

import math
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autolab.hardware.limits import (
    RATE_REL_TOL,
    Answer,
    DidNotStick,
    answer,
    check_answer_sticks,
    check_rate_sticks,
    check_sticks,
    matches_answer,
    rate_matches,
)


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


# ----------------------------------------------------------------------------- answer digits
#: What a driver writes: 6 significant digits (``format_number`` of the Harvard and Chemyx
#: codecs), from a microlitre per hour to a litre per minute and a few decimals of a diameter.
SENT = st.builds(lambda m, e: float(Decimal(m).scaleb(e)), st.integers(1, 999_999),
                 st.integers(-12, 2))


def written(value: float, digits: int, rounding: str, form: str) -> str:
    """``value`` as a device writes it to ``digits`` significant digits (plain or exponent)."""
    exact = Decimal(repr(value))
    kept = exact.quantize(Decimal(1).scaleb(exact.adjusted() - digits + 1), rounding=rounding)
    return f"{kept:e}" if form == "e" else f"{kept:f}"


def test_the_step_is_one_unit_of_the_last_digit_written() -> None:
    """As written: ``1.23`` is held to 0.01, ``5.`` and ``120`` to 1 (an integer's trailing
    zeros count as digits: the safe side), an exponent moves the digit, a unit scales it."""
    assert answer("1.23") == Answer(1.23, pytest.approx(0.01))
    assert answer(".5").step == pytest.approx(0.1) and answer("5.").step == 1.0
    assert answer("120").step == 1.0 and answer("-0.050").step == pytest.approx(0.001)
    assert answer("6.123e-04").step == pytest.approx(1e-7)
    assert answer("1.5e+3").step == pytest.approx(100.0)
    assert answer("50.0", 1e-3) == (pytest.approx(0.05), pytest.approx(1e-4))  # ul/min
    with pytest.raises(ValueError, match="not a decimal number"):
        answer("1.2.3")


@given(SENT, st.integers(1, 9), st.sampled_from([ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_DOWN]),
       st.sampled_from(["f", "e"]), st.sampled_from([0.0, RATE_REL_TOL]))
def test_the_value_sent_rounded_or_truncated_to_any_digits_passes(
        sent: float, digits: int, rounding: str, form: str, rel: float) -> None:
    """Any value, any number of digits, rounded or cut: the setting sent, as held. (A plain
    integer cannot write fewer digits than its integer part: the exponent form does.)"""
    exact = Decimal(repr(sent))
    if form == "f" and exact.adjusted() - digits + 1 > 0:
        form = "e"
    text = written(sent, digits, rounding, form)
    assert matches_answer(sent, answer(text), rel=rel), text
    check_answer_sticks("pump_a", "rate_ml_min", sent, answer(text), rel=rel)
    assert rate_matches(sent, answer(text)), text


@given(SENT, st.integers(1, 9), st.integers(1, 50), st.booleans(),
       st.sampled_from([0.0, RATE_REL_TOL]))
def test_a_value_more_than_one_unit_of_its_last_digit_off_fails(
        sent: float, digits: int, extra: int, up: bool, rel: float) -> None:
    """A clamp or another value: the answer is the sent one's rounding moved by a whole number
    of units beyond what rounding and the relative floor allow; it fails, by name."""
    exact = Decimal(repr(sent))
    unit = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    rounded = exact.quantize(unit, rounding=ROUND_HALF_EVEN)
    units = math.ceil(max(1.0, rel * sent / float(unit))) + extra
    moved = rounded + (units if up else -units) * unit
    if moved <= 0:
        moved = rounded + units * unit
    got = answer(f"{moved:e}")
    assert abs(sent - got.value) > max(got.step, rel * sent)
    assert not matches_answer(sent, got, rel=rel)
    with pytest.raises(DidNotStick, match=r"pump_a: setpoint rate_ml_min did not stick"):
        check_answer_sticks("pump_a", "rate_ml_min", sent, got, rel=rel)


def test_a_clamp_one_unit_away_zero_or_the_other_sign_is_not_a_rounding() -> None:
    """The cases at the edge: a pump holding 5 for 6 (its limit) or 5.0 for 5.1 did not take
    it; a rate written ``0`` does not pump whatever its digits; a sign is not rounded away."""
    assert not matches_answer(6.0, answer("5"))
    assert not matches_answer(5.1, answer("5.0"))
    assert matches_answer(5.1, answer("5"))  # 5.1 to no decimals is 5: indistinguishable
    assert not matches_answer(0.0004, answer("0.000"))
    assert not matches_answer(0.5, answer("-0.5"))
    assert matches_answer(0.0, answer("0")) and rate_matches(0.0, 0.0)
    with pytest.raises(DidNotStick, match=r"sent 1\.234, read back 1\.2 \(answered to 0\.01\)"):
        check_rate_sticks("pump_a", 1.234, answer("1.20"))
