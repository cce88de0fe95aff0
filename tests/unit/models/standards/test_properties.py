"""Property tests: AQI monotone and bounded; derive total over every valid reading."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from models.catalog import DEVICE_TYPES  # noqa: E402
from models.standards import aqi, noise, water  # noqa: E402
from models.standards.derive import derive  # noqa: E402

AT = {2012: datetime(2025, 6, 1, 12, tzinfo=UTC), 2026: datetime(2026, 6, 1, 12, tzinfo=UTC)}
# Up to past every column's top, to cover the 500 cap.
CONC = st.floats(min_value=0, max_value=5000, allow_nan=False, allow_infinity=False)


def _upper(std: int, key: str, kind: str) -> float:
    # HJ 633—2012 drops SO2 1h > 800 (real-time) and O3 8h > 800 (daily) for another
    # column: the index is not monotone across that switch by the standard's design.
    if std == 2012 and (kind, key) in {("realtime", "so2"), ("daily", "o3_8h")}:
        return 800
    return 5000


@settings(max_examples=300, deadline=None)
@given(
    std=st.sampled_from([2012, 2026]),
    kind=st.sampled_from(["realtime", "daily"]),
    data=st.data(),
)
def test_aqi_is_monotone_in_each_concentration(std: int, kind: str, data: st.DataObject) -> None:
    keys = list(aqi.REALTIME_COLUMNS if kind == "realtime" else aqi.DAILY_COLUMNS)
    key = data.draw(st.sampled_from(keys))
    others = {k: data.draw(st.floats(0, _upper(std, k, kind), allow_nan=False)) for k in keys if k != key}
    top = _upper(std, key, kind)
    a = data.draw(st.floats(0, top, allow_nan=False))
    b = data.draw(st.floats(a, top, allow_nan=False))

    def run(value: float) -> aqi.AqiResult:
        values = {**others, key: value}
        if kind == "realtime":
            return aqi.realtime(values, at=AT[std])
        return aqi.daily(values, on=AT[std].date())

    low, high = run(a), run(b)
    pollutant = "o3" if key == "o3_8h" else key
    assert low.iaqi[pollutant] <= high.iaqi[pollutant]
    assert low.aqi <= high.aqi


@settings(max_examples=300, deadline=None)
@given(
    std=st.sampled_from([2012, 2026]),
    values=st.dictionaries(st.sampled_from(sorted(aqi.REALTIME_KEYS)), CONC, min_size=1),
)
def test_aqi_is_bounded_and_consistent(std: int, values: dict[str, float]) -> None:
    r = aqi._realtime(values, at=AT[std], standard=None)
    if r is None:
        return
    assert 0 <= r.aqi <= 500 and all(0 <= v <= 500 for v in r.iaqi.values())
    assert r.aqi == max(r.iaqi.values())
    assert aqi.level_of(r.aqi).number == r.level
    assert set(r.primary) <= set(r.iaqi) and (r.aqi > 50) == bool(r.primary)
    assert all(r.iaqi[p] == r.aqi for p in r.primary)
    assert set(r.exceeding) == {p for p, v in r.iaqi.items() if v > 100}


@settings(max_examples=200, deadline=None)
@given(
    body=st.sampled_from(["river", "lake"]),
    values=st.dictionaries(st.sampled_from(["do", "codmn", "cod", "nh3n", "tp", "tn"]), CONC, min_size=1),
)
def test_water_class_is_the_worst_parameter(body: str, values: dict[str, float]) -> None:
    evaluated = water.evaluated_parameters(body)
    if not set(values) & evaluated:
        return
    w = water.classify(values, body=body)
    assert w.grade == max(w.by_parameter.values(), key=water.GRADES.index)
    assert w.worst and all(w.by_parameter[p] == w.grade for p in w.worst)


def _metric_values(device_type: str) -> st.SearchStrategy[dict[str, float]]:
    """Any non-empty set of the type's metrics, each inside its catalog range (what ingest accepts)."""
    return st.lists(
        st.sampled_from(DEVICE_TYPES[device_type]), min_size=1, unique_by=lambda m: m.key
    ).flatmap(
        lambda ms: st.fixed_dictionaries(
            {
                m.key: st.floats(m.minimum, m.maximum, allow_nan=False)
                | st.integers(int(m.minimum), int(m.maximum))
                for m in ms
            }
        )
    )


PROP_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10),
    st.text(max_size=5),
    st.sampled_from(["river", "lake", "reservoir", "sea", *noise.ZONES, "4A"]),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=500, deadline=None)
@given(
    data=st.data(),
    device_type=st.sampled_from(sorted(DEVICE_TYPES)),
    props=st.dictionaries(st.sampled_from(["body", "zone", "river", "target_class"]), PROP_VALUES),
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    offset=st.integers(-14 * 60, 14 * 60),
)
def test_derive_never_fails_on_a_valid_reading(
    data: st.DataObject, device_type: str, props: dict[str, object], at: datetime, offset: int
) -> None:
    metrics = data.draw(_metric_values(device_type))
    when = at.replace(tzinfo=timezone(timedelta(minutes=offset)))
    out = derive(device_type, props, metrics, when)
    assert json.loads(json.dumps(out, ensure_ascii=False)) == out


def _reference_iaqi(breakpoints: tuple[int, ...], value: float) -> int | None:
    """HJ 633's formula on the decimal the float prints as, in Fractions: the slow and
    obvious reading the integer arithmetic of models.standards.aqi must agree with."""
    import math
    from fractions import Fraction

    c = Fraction(repr(value))
    if c > breakpoints[-1]:
        return 500 if len(breakpoints) == len(aqi.IAQI_STEPS) else None
    for i in range(len(breakpoints) - 1):
        lo, hi = breakpoints[i], breakpoints[i + 1]
        if c <= hi:
            i_lo, i_hi = aqi.IAQI_STEPS[i], aqi.IAQI_STEPS[i + 1]
            return math.ceil(Fraction(i_hi - i_lo, hi - lo) * (c - lo) + i_lo)
    raise AssertionError


@given(
    std=st.sampled_from([2012, 2026]),
    data=st.data(),
    value=st.one_of(
        st.floats(min_value=0, max_value=5000, allow_nan=False),
        st.integers(min_value=0, max_value=5000).map(float),
        # On and next to the breakpoints, where a rounding error would show.
        st.integers(min_value=0, max_value=4000).map(lambda n: n / 10),
    ),
)
@settings(max_examples=400, deadline=None)
def test_integer_iaqi_equals_the_fraction_formula(std: int, data: st.DataObject, value: float) -> None:
    column = data.draw(st.sampled_from(sorted(aqi.BREAKPOINTS[std])))
    expected = _reference_iaqi(aqi.BREAKPOINTS[std][column], value)
    if expected is None:
        with pytest.raises(ValueError):
            aqi.iaqi(column, value, standard=std)
    else:
        assert aqi.iaqi(column, value, standard=std) == expected
