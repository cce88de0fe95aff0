"""The city's time zone and the one way to ask for 'now'.

China keeps one time zone, UTC+08:00, without daylight saving since 1991, so a fixed
offset is exact for every date the platform deals with and needs no tz database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

CITY_TZ = timezone(timedelta(hours=8), "CST")

#: A clock returns an aware datetime; tests pass a fixed one instead of this.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
