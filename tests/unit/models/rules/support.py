"""Helpers for rule tests: rule sets from TOML snippets, readings, events and tickets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 7, 15, 2, 0, tzinfo=UTC)  # 10:00 in Guang'an: daytime


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


HEADER = """
[[rule]]
id = "{id}"
name = "测试规则"
name_en = "test rule"
domain = "{domain}"
severity = "{severity}"
kind = "{kind}"
title = "{title}"
message = "{message}"
"""


def rule_toml(
    kind: str,
    body: str,
    *,
    rule_id: str = "rule_a",
    domain: str = "emergency",
    severity: str = "major",
    title: str = "{district}告警",
    message: str = "{rule_name}",
) -> str:
    head = HEADER.format(
        id=rule_id, domain=domain, severity=severity, kind=kind, title=title, message=message
    )
    return head + body + "\n"


def reading(
    device_id: str,
    seconds: float,
    metrics: dict[str, float],
    *,
    device_type: str = "water_level",
    props: dict[str, Any] | None = None,
    derived: dict[str, Any] | None = None,
    district_code: str = "511623",
    grid_id: str = "8840a1b2c3fffff",
) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "ts": at(seconds),
        "metrics": metrics,
        "district_code": district_code,
        "grid_id": grid_id,
        "device_type": device_type,
        "props": props or {},
        "derived": derived or {},
        "lon": 106.93,
        "lat": 30.33,
    }


def video(
    event_id: str,
    seconds: float,
    kind: str,
    confidence: float,
    *,
    grid_id: str = "8840a1b2c3fffff",
    district_code: str = "511623",
    camera_id: str = "cam-1",
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "camera_id": camera_id,
        "ts": at(seconds),
        "type": kind,
        "confidence": confidence,
        "lon": 106.93,
        "lat": 30.33,
        "district_code": district_code,
        "grid_id": grid_id,
    }


def ticket(
    ticket_id: str,
    seconds: float,
    category: str,
    *,
    district_code: str | None = "511623",
    grid_id: str | None = "8840a1b2c3fffff",
) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "ts": at(seconds),
        "category": category,
        "urgency": "normal",
        "lon": 106.93,
        "lat": 30.33,
        "district_code": district_code,
        "grid_id": grid_id,
    }


def batch(
    observations: list[dict[str, Any]] | None = None,
    videos: list[dict[str, Any]] | None = None,
    tickets: list[dict[str, Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    return {
        "observations": observations or [],
        "video_events": videos or [],
        "hotline_tickets": tickets or [],
    }
