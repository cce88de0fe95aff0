"""Payload schemas of the MQTT interface (docs/mqtt.md), strict pydantic v2 models.

Strict means: no silent coercion of strings to numbers, timestamps must carry an
offset, NaN and ±Infinity are refused, unknown enum values are refused. A payload
that fails becomes a dead letter with the reason; it never stops the worker.
"""

from __future__ import annotations

import math
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


class DeviceMeta(_Strict):
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


class VideoEvent(_Strict):
    """``{prefix}/video/{camera_id}/events``."""

    event_id: Identifier
    ts: AwareDatetime
    type: VideoEventType
    confidence: Annotated[Number, Field(ge=0, le=1)]
    lon: Lon | None = None
    lat: Lat | None = None
    snapshot_url: Annotated[str, Field(max_length=500)] | None = None
    bbox: Annotated[list[Number], Field(min_length=4, max_length=4)] | None = None


class HotlineTicket(_Strict):
    """``{prefix}/hotline/tickets``: a new 12345 work order."""

    ticket_id: Identifier
    ts: AwareDatetime
    channel: Channel
    category: Annotated[str, Field(min_length=1, max_length=50)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    content: Annotated[str, Field(max_length=4000)]
    address: ShortText | None = None
    lon: Lon | None = None
    lat: Lat | None = None
    urgency: Literal["normal", "urgent"] = "normal"
    caller: dict[str, Annotated[str, Field(max_length=100)]] | None = None
