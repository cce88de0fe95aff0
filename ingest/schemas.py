"""Payload schemas of the MQTT interface (docs/mqtt.md), strict pydantic v2 models.

Strict means: no silent coercion of strings to numbers, timestamps must carry an
offset, NaN and ±Infinity are refused, unknown enum values are refused. A payload
that fails becomes a dead letter with the reason; it never stops the worker.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    model_validator,
)

from models.catalog import DEVICE_TYPES, HOTLINE_CHANNELS, VIDEO_EVENT_TYPES


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (NaN and Infinity are not allowed)")
    return float(value)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp needs a UTC offset, e.g. 2026-07-01T08:00:00+08:00")
    return value


def _iso(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("timestamp must be ISO-8601 with an offset") from None
    return value


Number = Annotated[StrictFloat | StrictInt, AfterValidator(_finite)]
Lon = Annotated[StrictFloat | StrictInt, AfterValidator(_finite), Field(ge=-180, le=180)]
Lat = Annotated[StrictFloat | StrictInt, AfterValidator(_finite), Field(ge=-90, le=90)]
# JSON has no datetime type: the ISO-8601 string is parsed before strict validation.
AwareDatetime = Annotated[datetime, BeforeValidator(_iso), AfterValidator(_aware)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
ShortText = Annotated[str, Field(max_length=200)]
#: Longest caller name and phone the database keeps (``hotline_tickets`` columns).
CALLER_LIMITS = {"name": 64, "phone": 32}


def _caller(value: dict[str, str]) -> dict[str, str]:
    for key, limit in CALLER_LIMITS.items():
        if len(value.get(key) or "") > limit:
            raise ValueError(f"caller {key} longer than {limit} characters")
    return value


# Work-order ids are keys of ``hotline_tickets`` (32 characters): a longer one must be
# refused here, not fail the whole batch's INSERT on PostgreSQL.
TicketId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.:\-]+$")]

SensorType = Literal[
    "air_quality",
    "water_quality",
    "water_level",
    "rainfall",
    "noise",
    "manhole",
    "gas",
    "smoke",
    "pipe_pressure",
    "power",
    "weather",
]
assert set(SensorType.__args__) == set(DEVICE_TYPES), "schema and catalog must list the same types"
VideoEventType = Literal[tuple(VIDEO_EVENT_TYPES)]  # type: ignore[valid-type]
Channel = Literal[tuple(HOTLINE_CHANNELS)]  # type: ignore[valid-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _storable(value: Any, where: str = "payload") -> None:
    """Refuse what PostgreSQL cannot store: a NUL character in text or a key (``text`` and
    ``jsonb`` refuse it) and a non-finite number inside free-form JSON (``1e309`` parses as
    infinity, which ``jsonb`` refuses). Caught here, it is one dead letter; at the INSERT it
    failed the whole batch, which the worker then retried for ever."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{where}: text must not contain NUL characters (\\u0000)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: must be a finite number (NaN and Infinity are not allowed)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, where)
            _storable(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _storable(item, f"{where}[{i}]")


class _Stored(_Strict):
    """A payload whose text is written to the database as sent (observations, whose only
    text is checked ids and known metric names, do not need this)."""

    @model_validator(mode="before")
    @classmethod
    def _check_storable(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                _storable(value, str(key))
        return data


class DeviceMeta(_Stored):
    """``{prefix}/sensors/{device_id}/meta`` and ``{prefix}/video/{camera_id}/meta``."""

    type: SensorType | Literal["camera"]
    lon: Lon
    lat: Lat
    name: ShortText | None = None
    crs: Literal["wgs84", "gcj02"] = "wgs84"
    props: dict[str, Any] = Field(default_factory=dict, max_length=32)


class Observation(_Strict):
    """``{prefix}/sensors/{device_id}/obs``."""

    ts: AwareDatetime
    metrics: dict[Annotated[str, Field(max_length=32)], Number] = Field(min_length=1, max_length=32)
    msg_id: Identifier | None = None


class VideoEvent(_Stored):
    """``{prefix}/video/{camera_id}/events``."""

    event_id: Identifier
    ts: AwareDatetime
    type: VideoEventType
    confidence: Annotated[Number, Field(ge=0, le=1)]
    lon: Lon | None = None
    lat: Lat | None = None
    snapshot_url: Annotated[str, Field(max_length=500)] | None = None
    bbox: Annotated[list[Number], Field(min_length=4, max_length=4)] | None = None


class HotlineTicket(_Stored):
    """``{prefix}/hotline/tickets``: a new 12345 work order."""

    ticket_id: TicketId
    ts: AwareDatetime
    channel: Channel
    category: Annotated[str, Field(min_length=1, max_length=50)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    content: Annotated[str, Field(max_length=4000)]
    address: ShortText | None = None
    lon: Lon | None = None
    lat: Lat | None = None
    urgency: Literal["normal", "urgent"] = "normal"
    caller: Annotated[dict[str, Annotated[str, Field(max_length=100)]], AfterValidator(_caller)] | None = None


class TicketLifecycleEvent(_Stored):
    """``{prefix}/hotline/tickets/{ticket_id}/events``: a step of a work order in the
    hotline system, applied with :func:`models.tickets.apply_hotline_event`."""

    event_id: Identifier
    ts: AwareDatetime
    action: Literal[
        "dispatched",
        "accepted",
        "started",
        "replied",
        "closed",
        "rated",
        "returned",
        "extension_requested",
        "extension_approved",
        "extension_refused",
        "supervised",
        "merged",
    ]
    department: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    district_code: Annotated[str, Field(pattern=r"^[0-9]{6,12}$")] | None = None
    # 回访评价 by code or by its Chinese label.
    rating: (
        Literal["satisfied", "basically_satisfied", "dissatisfied", "满意", "基本满意", "不满意"] | None
    ) = None
    reason: Annotated[str, Field(max_length=1000)] | None = None
    note: Annotated[str, Field(max_length=4000)] | None = None
    until: AwareDatetime | None = None
    earlier_id: TicketId | None = None
    actor: Annotated[str, Field(max_length=48)] | None = None


# ---- fast path for observations ------------------------------------------------------------
#
# Observations are nearly all of the traffic, and building a pydantic model per message was
# the largest cost of validation. The checks below accept exactly what ``Observation``
# accepts for well-formed payloads and build the same values; anything they are not sure of
# (every invalid payload included) is left to pydantic, so rejection reasons and messages
# stay pydantic's own. tests/unit/ingest/test_schemas_fast.py compares the two.

_OBS_FIELDS = frozenset(Observation.model_fields)
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
#: Integers up to 2**53 convert to float exactly; larger ones are left to pydantic.
_EXACT_INT = 2**53


@dataclass(frozen=True, slots=True)
class CheckedObservation:
    """An observation payload that passed :func:`fast_observation`: the fields and values
    ``Observation.model_validate`` gives, without the cost of a model instance."""

    ts: datetime
    metrics: dict[str, float]
    msg_id: str | None = None


def fast_observation(data: dict[str, Any]) -> CheckedObservation | None:
    """What ``Observation.model_validate(data)`` holds, or None: then ask pydantic.

    Never rejects: None only means "not sure", so invalid payloads are still rejected by
    pydantic with its reason and message.
    """
    if not _OBS_FIELDS.issuperset(data):
        return None
    ts = data.get("ts")
    metrics = data.get("metrics")
    if type(ts) is not str or type(metrics) is not dict or not 1 <= len(metrics) <= 32:
        return None
    msg_id = data.get("msg_id")
    if msg_id is not None and (type(msg_id) is not str or _IDENTIFIER.fullmatch(msg_id) is None):
        return None
    try:
        parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    values: dict[str, float] = {}
    for key, value in metrics.items():
        if type(key) is not str or len(key) > 32:
            return None
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return None
        elif kind is int:
            if not -_EXACT_INT <= value <= _EXACT_INT:
                return None
            value = float(value)
        else:  # bool, str, None, containers: pydantic rejects them (strict), with its message
            return None
        values[key] = value
    return CheckedObservation(parsed, values, msg_id)


# ---- OGC SensorThings API 1.1, MQTT part (docs/mqtt.md "OGC SensorThings") -----------------

#: SensorThings ids are integers or strings. A string id keeps to the characters of this
#: interface's ids and to 60 of them: with its namespace (``sta@``) it becomes the reading's
#: ``msg_id``, a 64-character column.
STA_MSG_ID_NAMESPACE = "sta@"
StaId = (
    Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
    | Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.:\-]+$")]
)


def _instant_or_interval_end(value: Any) -> Any:
    """``phenomenonTime`` is an instant or an interval ``start/end`` (ISO 8601). A cityops
    reading has one time: an interval's end, when the value was complete (a rainfall total
    over an hour belongs to the hour's end, as the native readings are stamped)."""
    if not isinstance(value, str) or "/" not in value:
        return _iso(value)
    start_text, _, end_text = value.partition("/")
    try:
        start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start_text, end_text))
    except ValueError:
        raise ValueError("interval must be two ISO-8601 instants with offsets, start/end") from None
    for instant in (start, end):
        _aware(instant)
    if start > end:
        raise ValueError("interval ends before it starts")
    return end


PhenomenonTime = Annotated[datetime, BeforeValidator(_instant_or_interval_end), AfterValidator(_aware)]


class StaLink(_Strict):
    """A link to an existing SensorThings entity: ``{"@iot.id": 42}``."""

    iot_id: StaId = Field(alias="@iot.id")


class SensorThingsObservation(_Strict):
    """An Observation entity of OGC SensorThings API 1.1, published over MQTT to
    ``v1.1/Datastreams({id})/Observations`` or, with its ``Datastream`` link, to
    ``v1.1/Observations``.

    Only a numeric ``result`` makes a cityops reading. ``resultTime``, ``validTime``,
    ``resultQuality``, ``parameters`` and a ``FeatureOfInterest`` link are accepted and
    not kept (the device's registered place is the reading's place).
    """

    result: Number
    phenomenon_time: PhenomenonTime = Field(alias="phenomenonTime")
    result_time: AwareDatetime | None = Field(default=None, alias="resultTime")
    valid_time: Annotated[str, Field(max_length=100)] | None = Field(default=None, alias="validTime")
    iot_id: StaId | None = Field(default=None, alias="@iot.id")
    datastream: StaLink | None = Field(default=None, alias="Datastream")
    feature_of_interest: StaLink | None = Field(default=None, alias="FeatureOfInterest")
    result_quality: Any = Field(default=None, alias="resultQuality")
    parameters: dict[str, Any] | None = Field(default=None, max_length=32)

    @property
    def msg_id(self) -> str | None:
        """The reading's ``msg_id``: ``@iot.id`` in a namespace native ids cannot reach
        (``@`` is not an id character), so the two never collide."""
        return None if self.iot_id is None else f"{STA_MSG_ID_NAMESPACE}{self.iot_id}"
