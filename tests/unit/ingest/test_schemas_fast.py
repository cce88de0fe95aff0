"""The fast observation check accepts only what the pydantic model accepts, with equal values."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest import pipeline as pipeline_module
from ingest.schemas import Observation, fast_observation

TS = "2026-07-01T08:00:00.123456+08:00"

CASES: list[Any] = [
    {"ts": TS, "metrics": {"pm25": 35.5}},
    {"ts": TS, "metrics": {"pm25": 35}, "msg_id": "abc-1.2:3_4"},
    {"ts": "2026-07-01T00:00:00Z", "metrics": {"a": 0}},
    {"ts": TS, "metrics": {"a": 1.0}, "msg_id": None},
    {"ts": "2026-07-01T08:00:00", "metrics": {"a": 1.0}},  # naive
    {"ts": "yesterday", "metrics": {"a": 1.0}},
    {"ts": 1751328000, "metrics": {"a": 1.0}},
    {"ts": TS, "metrics": {}},
    {"ts": TS, "metrics": {f"m{i}": 1.0 for i in range(33)}},
    {"ts": TS, "metrics": {f"m{i}": 1.0 for i in range(32)}},
    {"ts": TS, "metrics": {"x" * 33: 1.0}},
    {"ts": TS, "metrics": {"x" * 32: 1.0}},
    {"ts": TS, "metrics": {"a": True}},
    {"ts": TS, "metrics": {"a": "1.5"}},
    {"ts": TS, "metrics": {"a": None}},
    {"ts": TS, "metrics": {"a": float("nan")}},
    {"ts": TS, "metrics": {"a": float("inf")}},
    {"ts": TS, "metrics": {"a": 2**60}},
    {"ts": TS, "metrics": {"a": [1.0]}},
    {"ts": TS, "metrics": [1.0]},
    {"ts": TS, "metrics": {"a": 1.0}, "msg_id": ""},
    {"ts": TS, "metrics": {"a": 1.0}, "msg_id": "x" * 65},
    {"ts": TS, "metrics": {"a": 1.0}, "msg_id": "x" * 64},
    {"ts": TS, "metrics": {"a": 1.0}, "msg_id": "has space"},
    {"ts": TS, "metrics": {"a": 1.0}, "msg_id": "line\n"},
    {"ts": TS, "metrics": {"a": 1.0}, "msg_id": 7},
    {"ts": TS, "metrics": {"a": 1.0}, "extra": 1},
    {"metrics": {"a": 1.0}},
    {"ts": TS},
]


def assert_same(data: Any) -> None:
    fast = fast_observation(data) if isinstance(data, dict) else None
    try:
        model = Observation.model_validate(data)
    except ValidationError:
        assert fast is None, f"fast path accepted what pydantic rejects: {data!r}"
        return
    if fast is None:
        return  # left to pydantic: allowed, only slower
    assert fast.ts == model.ts and fast.ts.utcoffset() == model.ts.utcoffset()
    assert fast.metrics == model.metrics
    assert [type(v) for v in fast.metrics.values()] == [type(v) for v in model.metrics.values()]
    assert list(fast.metrics) == list(model.metrics)
    assert fast.msg_id == model.msg_id


@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_fast_observation_matches_pydantic(data: Any) -> None:
    assert_same(data)


def test_fast_path_takes_ordinary_readings() -> None:
    checked = fast_observation({"ts": TS, "metrics": {"pm25": 35, "pm10": 50.5}, "msg_id": "m-1"})
    assert checked is not None
    assert checked.metrics == {"pm25": 35.0, "pm10": 50.5}


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
keys = st.text(max_size=40)
timestamps = st.one_of(
    st.datetimes(timezones=st.sampled_from([None, UTC])).map(lambda d: d.isoformat()),
    st.sampled_from([TS, "2026-07-01T00:00:00Z", "2026-07-01", "", "2026-13-01T00:00:00+08:00"]),
    st.integers(),
)
payloads = st.fixed_dictionaries(
    {"ts": timestamps, "metrics": st.dictionaries(keys, values, max_size=34)},
    optional={"msg_id": st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_.:\- ]{0,66}", fullmatch=True))},
)


@settings(max_examples=400, deadline=None)
@given(payloads)
def test_fast_observation_matches_pydantic_on_generated_payloads(data: dict[str, Any]) -> None:
    # Through JSON, as the pipeline sees them (tuples, NaN spelled as the parser gives it).
    assert_same(json.loads(json.dumps(data)))


# ---- the pipeline's orjson decoding of readings ---------------------------------------------

RAW_READINGS: list[bytes] = [
    *(json.dumps(c).encode() for c in CASES),
    b'{"ts": "%s", "metrics": {"a": 123456789012345678901234567890}}' % TS.encode(),
    b'{"ts": "%s", "metrics": {"a": 18446744073709551615}}' % TS.encode(),
    b'{"ts": "%s", "metrics": {"a": 1e20}}' % TS.encode(),
    b'{"ts": "%s", "metrics": {"a": 1e400}}' % TS.encode(),
    b'{"ts": "%s", "metrics": {"a": NaN}}' % TS.encode(),
    b'{"ts": "%s", "metrics": {"a": 1.5}, "msg_id": "\\ud800"}' % TS.encode(),
    b'\xef\xbb\xbf{"ts": "%s", "metrics": {"a": 1.5}}' % TS.encode(),
    b'{"ts": "%s", "metrics": {"a": 1.5}, "msg_id": "\xff"}' % TS.encode(),
    b'{"ts": "%s", "metrics": {"a": 1.5}, "metrics": {"b": 2}}' % TS.encode(),
    b"[" * 3000 + b"]" * 3000,
    b"[1.5]",
    b"",
]


def general_reading(payload: bytes) -> Any:
    """What the general path makes of a reading's payload: the decoded check, or None."""
    try:
        data = pipeline_module._JSON.decode(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return fast_observation(data) if isinstance(data, dict) else None


@pytest.mark.parametrize("payload", RAW_READINGS, ids=range(len(RAW_READINGS)))
def test_readings_decoded_by_orjson_are_what_the_general_path_gives(payload: bytes) -> None:
    fast = pipeline_module._fast_reading(payload)
    if fast is None:
        return  # the general path decides, with its reasons
    expected = general_reading(payload)
    assert expected is not None, f"orjson took what the general path does not: {payload[:80]!r}"
    assert (fast.ts, fast.metrics, fast.msg_id) == (expected.ts, expected.metrics, expected.msg_id)
    assert [type(v) for v in fast.metrics.values()] == [type(v) for v in expected.metrics.values()]


def test_huge_integers_and_non_json_constants_take_the_general_path() -> None:
    for index in (len(CASES), len(CASES) + 2, len(CASES) + 3, len(CASES) + 4):
        assert pipeline_module._fast_reading(RAW_READINGS[index]) is None, RAW_READINGS[index]
    ordinary = b'{"ts": "%s", "metrics": {"pm25": 35, "pm10": 50.5}, "msg_id": "m-1"}' % TS.encode()
    checked = pipeline_module._fast_reading(ordinary)
    assert checked is not None and checked.metrics == {"pm25": 35.0, "pm10": 50.5}


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_orjson_and_the_general_path_agree_on_generated_readings(data: dict[str, Any]) -> None:
    payload = json.dumps(data).encode()
    fast = pipeline_module._fast_reading(payload)
    expected = general_reading(payload)
    if fast is not None:
        assert expected is not None
        assert (fast.ts, fast.metrics, fast.msg_id) == (expected.ts, expected.metrics, expected.msg_id)
