"""Exact numbers from readings: the float fast path and its memo give what the general path gives."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest

from models.standards import _inputs
from models.standards._inputs import exact, exact_ratio


@pytest.mark.parametrize("value", [0.2, 35.2, 0.045, 1e-7, 123456.789, 7.0, 0.1 + 0.2])
def test_a_float_is_the_decimal_it_prints_as_every_time(value: float) -> None:
    expected = Decimal(repr(value)).as_integer_ratio()
    assert exact_ratio("pm25", value) == expected  # computed
    assert exact_ratio("pm25", value) == expected  # remembered
    assert exact("pm25", value) == Fraction(*expected)


def test_a_remembered_negative_value_is_still_refused_where_negatives_are() -> None:
    assert exact_ratio("temp", -3.5, allow_negative=True) == (-7, 2)
    with pytest.raises(ValueError, match="temp must not be negative"):
        exact_ratio("temp", -3.5)
    with pytest.raises(ValueError, match="must not be negative"):
        exact_ratio("count", -2)
    assert exact_ratio("count", -2, allow_negative=True) == (-2, 1)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_every_time(value: float) -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="must be finite"):
            exact_ratio("pm25", value)


def test_booleans_are_still_refused() -> None:
    with pytest.raises(ValueError, match="real number"):
        exact_ratio("pm25", True)


def test_the_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_inputs, "FLOAT_RATIOS_MAX", 50)
    monkeypatch.setattr(_inputs, "_FLOAT_RATIOS", {})
    for i in range(500):
        assert exact_ratio("pm25", i / 10 + 0.01) == Decimal(repr(i / 10 + 0.01)).as_integer_ratio()
    assert 0 < len(_inputs._FLOAT_RATIOS) <= 50
