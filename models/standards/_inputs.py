"""Input checks shared by the standards modules.

Every public function turns a bad argument into a ``ValueError`` that names the
argument, so that a wrong unit or a sensor fault never turns into a plausible number.
"""

from __future__ import annotations

import math
import numbers
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from models.clock import CITY_TZ

#: float → its decimal (numerator, denominator); see exact_ratio
_FLOAT_RATIOS: dict[float, tuple[int, int]] = {}
#: entries kept before the memo starts over
FLOAT_RATIOS_MAX = 1 << 16


def exact(name: str, value: Any, *, allow_negative: bool = False) -> Fraction:
    """``value`` as an exact rational number.

    Floats are read as the decimal they print as (``repr``), not as their binary
    expansion: 0.2 mg/m³ CO is exactly 0.2, so a concentration typed on a breakpoint
    lands on the breakpoint and a ceiling never adds 1 for a binary rounding error.
    Booleans are refused although Python counts them as integers: ``True`` is never a
    concentration.
    """
    return Fraction(*exact_ratio(name, value, allow_negative=allow_negative))


def exact_ratio(name: str, value: Any, *, allow_negative: bool = False) -> tuple[int, int]:
    """:func:`exact` as ``(numerator, denominator)``, denominator > 0: the same checks and
    the same number, for hot paths that compare and interpolate in integers (a Fraction
    costs microseconds per operation, an int comparison nanoseconds)."""
    kind = type(value)
    if kind is float:
        # Every sensor value arrives as a float: skip the abstract-class checks below and
        # remember the conversion (readings repeat the same few thousand one- or two-decimal
        # values, and the decimal conversion costs a microsecond each time).
        ratio = _FLOAT_RATIOS.get(value)
        if ratio is None:
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            ratio = Decimal(repr(value)).as_integer_ratio()
            if len(_FLOAT_RATIOS) >= FLOAT_RATIOS_MAX:
                _FLOAT_RATIOS.clear()  # bounded: a feed of ever-new values costs a miss each
            _FLOAT_RATIOS[value] = ratio
        if ratio[0] < 0 and not allow_negative:
            raise ValueError(f"{name} must not be negative, got {value!r}")
        return ratio
    if kind is int:
        if value < 0 and not allow_negative:
            raise ValueError(f"{name} must not be negative, got {value!r}")
        return (value, 1)
    # Decimal is not registered as numbers.Real, but it is an exact decimal reading.
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{name} must be finite, got {value!r}")
        ratio = value.as_integer_ratio()
    elif isinstance(value, numbers.Integral):
        ratio = (int(value), 1)
    elif isinstance(value, Fraction):
        ratio = (value.numerator, value.denominator)
    else:
        as_float = float(value)
        if not math.isfinite(as_float):
            raise ValueError(f"{name} must be finite, got {value!r}")
        # The decimal the float prints as, exactly (Decimal parses in C, unlike Fraction).
        ratio = Decimal(repr(as_float)).as_integer_ratio()
    if ratio[0] < 0 and not allow_negative:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return ratio


def local_time(name: str, value: Any) -> datetime:
    """An aware datetime converted to city time (UTC+08:00); naive ones are refused.

    A naive time is ambiguous by eight hours between UTC and Beijing time, which moves
    the noise day/night boundary and the AQI standard switch: refuse instead of guessing.
    """
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a timezone-aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. +08:00), got naive {value.isoformat()}")
    return value.astimezone(CITY_TZ)


def local_date(name: str, value: Any) -> date:
    """A ``date`` as given, or the city-time date of an aware ``datetime``."""
    if isinstance(value, datetime):
        return local_time(name, value).date()
    if not isinstance(value, date):
        raise ValueError(f"{name} must be a date, got {type(value).__name__} {value!r}")
    return value
