"""Topic routing: which part of the MQTT interface a topic belongs to.

The router is a table of patterns so that later topic families (e.g. OGC SensorThings
``v1.1/Datastreams({id})/Observations``) are added as one more row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    SENSOR_META = "sensor_meta"
    SENSOR_OBS = "sensor_obs"
    CAMERA_META = "camera_meta"
    VIDEO_EVENT = "video_event"
    TICKET = "ticket"
    TICKET_EVENT = "ticket_event"


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind
    #: device, camera or ticket id taken from the topic ("" when the topic has none)
    key: str


_ID = r"([A-Za-z0-9_.:\-]{1,64})"


class TopicRouter:
    """Maps a concrete topic to a :class:`Route`, or ``None`` when it is not ours."""

    def __init__(self, prefix: str = "cityops/v1") -> None:
        self.prefix = prefix.rstrip("/")
        p = re.escape(self.prefix)
        self._table: list[tuple[re.Pattern[str], Kind]] = [
            (re.compile(rf"^{p}/sensors/{_ID}/meta$"), Kind.SENSOR_META),
            (re.compile(rf"^{p}/sensors/{_ID}/obs$"), Kind.SENSOR_OBS),
            (re.compile(rf"^{p}/video/{_ID}/meta$"), Kind.CAMERA_META),
            (re.compile(rf"^{p}/video/{_ID}/events$"), Kind.VIDEO_EVENT),
            (re.compile(rf"^{p}/hotline/tickets$"), Kind.TICKET),
            (re.compile(rf"^{p}/hotline/tickets/{_ID}/events$"), Kind.TICKET_EVENT),
        ]

    def route(self, topic: str) -> Route | None:
        for pattern, kind in self._table:
            match = pattern.match(topic)
            if match:
                return Route(kind, match.group(1) if match.groups() else "")
        return None

    def subscriptions(self, group: str = "ingest") -> list[tuple[str, str | None]]:
        """The topic filters a worker subscribes to, each with its shared-subscription group.

        Device metadata is *not* shared (group ``None``): MQTT 5 never sends retained
        messages to a shared subscription, and a worker that starts after a device
        registered must still learn it. Metadata is rare and its upsert idempotent, so
        every worker taking every meta message costs little.

        Each shared filter gets a group of its own: the embedded broker (rumqttd) splits
        a group's messages across all of its filters' subscriptions and so delivers only
        a fraction of each when one group holds several filters (measured: 3 filters in
        one group → about a third of each). One filter per group behaves the same on
        every broker.
        """
        return [
            (f"{self.prefix}/sensors/+/meta", None),
            (f"{self.prefix}/video/+/meta", None),
            (f"{self.prefix}/sensors/+/obs", f"{group}-obs"),
            (f"{self.prefix}/video/+/events", f"{group}-video"),
            (f"{self.prefix}/hotline/tickets", f"{group}-tickets"),
            (f"{self.prefix}/hotline/tickets/+/events", f"{group}-ticket-events"),
        ]

    # Topic builders, so publishers (the simulator, tests) never spell topics by hand.
    def sensor_meta(self, device_id: str) -> str:
        return f"{self.prefix}/sensors/{device_id}/meta"

    def sensor_obs(self, device_id: str) -> str:
        return f"{self.prefix}/sensors/{device_id}/obs"

    def camera_meta(self, camera_id: str) -> str:
        return f"{self.prefix}/video/{camera_id}/meta"

    def video_events(self, camera_id: str) -> str:
        return f"{self.prefix}/video/{camera_id}/events"

    def tickets(self) -> str:
        return f"{self.prefix}/hotline/tickets"

    def ticket_events(self, ticket_id: str) -> str:
        return f"{self.prefix}/hotline/tickets/{ticket_id}/events"
