"""Topic routing: which part of the MQTT interface a topic belongs to.

The router is a table of patterns so that a topic family is added as one more row, as
OGC SensorThings ``v1.1/Datastreams({id})/Observations`` and ``v1.1/Observations`` were:
they live under their own root, not under the cityops prefix.
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
    #: ``{root}/Datastreams({id})/Observations``: the key is the datastream id
    STA_DATASTREAM_OBS = "sta_datastream_obs"
    #: ``{root}/Observations``: the datastream is the payload's ``Datastream`` link
    STA_OBS = "sta_obs"


@dataclass(frozen=True, slots=True)
class Route:
    kind: Kind
    #: device, camera, ticket or datastream id taken from the topic ("" when the topic has none)
    key: str


_ID = r"([A-Za-z0-9_.:\-]{1,64})"
#: A SensorThings id in a resource path: an integer, or a quoted string (OData literals).
#: Quoted ids keep to the interface's id characters, so no quote inside needs escaping.
_STA_ID = r"(?:(0|[1-9][0-9]{0,18})|'([A-Za-z0-9_.:\-]{1,64})')"


class TopicRouter:
    """Maps a concrete topic to a :class:`Route`, or ``None`` when it is not ours."""

    def __init__(self, prefix: str = "cityops/v1", sensorthings_root: str = "v1.1") -> None:
        self.prefix = prefix.rstrip("/")
        self.sensorthings_root = sensorthings_root.rstrip("/")
        p = re.escape(self.prefix)
        r = re.escape(self.sensorthings_root)
        self._table: list[tuple[re.Pattern[str], Kind]] = [
            (re.compile(rf"^{p}/sensors/{_ID}/meta$"), Kind.SENSOR_META),
            (re.compile(rf"^{p}/sensors/{_ID}/obs$"), Kind.SENSOR_OBS),
            (re.compile(rf"^{p}/video/{_ID}/meta$"), Kind.CAMERA_META),
            (re.compile(rf"^{p}/video/{_ID}/events$"), Kind.VIDEO_EVENT),
            (re.compile(rf"^{p}/hotline/tickets$"), Kind.TICKET),
            (re.compile(rf"^{p}/hotline/tickets/{_ID}/events$"), Kind.TICKET_EVENT),
            (re.compile(rf"^{r}/Datastreams\({_STA_ID}\)/Observations$"), Kind.STA_DATASTREAM_OBS),
            (re.compile(rf"^{r}/Observations$"), Kind.STA_OBS),
        ]

    def route(self, topic: str) -> Route | None:
        for pattern, kind in self._table:
            match = pattern.match(topic)
            if match:
                # The first group that matched (a SensorThings id is one of two forms).
                return Route(kind, next((g for g in match.groups() if g is not None), ""))
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
            # A wildcard takes a whole topic level, so ``Datastreams(+)`` cannot be a filter:
            # the level is matched here and anything but ``Datastreams(id)`` there becomes an
            # ``unknown_topic`` dead letter, as under the prefix.
            (f"{self.sensorthings_root}/+/Observations", f"{group}-sta-datastreams"),
            (f"{self.sensorthings_root}/Observations", f"{group}-sta"),
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

    def sta_datastream_observations(self, datastream_id: int | str) -> str:
        """``v1.1/Datastreams(42)/Observations`` or ``v1.1/Datastreams('ds-1')/Observations``."""
        literal = str(datastream_id) if isinstance(datastream_id, int) else f"'{datastream_id}'"
        return f"{self.sensorthings_root}/Datastreams({literal})/Observations"

    def sta_observations(self) -> str:
        return f"{self.sensorthings_root}/Observations"
