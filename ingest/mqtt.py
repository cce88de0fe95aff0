"""The one MQTT client of cityops: paho-mqtt 2.x, MQTT 5, QoS 1, manual acknowledgement.

Every producer (simulator, bridges) and consumer (ingest workers) goes through
:class:`MqttClient`, so reconnects, resubscription, flow control and the health
counters behave the same against the embedded broker and Mosquitto.

Delivery contract for consumers::

    client = MqttClient(url, "cityops-ingest-host1", persistent_session=True).start()
    client.subscribe("cityops/v1/#", shared_group="ingest")
    while running:
        batch = client.get_batch(500, timeout=0.5)
        write_durably(batch)             # Redis + PostGIS
        client.ack_many(batch)           # only now may the broker forget them

A message is acknowledged (PUBACK) only by :meth:`MqttClient.ack`; until then the
broker keeps it in the client's session and redelivers it after a reconnect. That
makes delivery at-least-once: after a crash or reconnect the same message can arrive
twice, so the pipeline must be idempotent (it dedupes).

Flow control: the client announces a Receive Maximum in CONNECT, which caps how many
unacknowledged messages a compliant broker (Mosquitto, EMQX) sends. The hand-off queue
is larger than that cap, so with such a broker paho's network thread never waits on
it. rumqttd ignores Receive Maximum (measured, see ``ingest/broker.py``); there the
network thread blocks on the full queue — which stops reading the socket, so TCP
pushes back on the broker — but only for :data:`HANDOFF_BLOCK_SECONDS`. After that the
message is left unacknowledged and the connection is dropped, so the broker keeps it
and redelivers it on the automatic reconnect instead of the thread hanging forever.

Receiving is cheaper than plain paho: paho reads a packet with three or more recv()
calls and handles one packet per select(), building a message object and decoding its
properties on the way. :class:`_BufferedPahoClient` reads the socket in large chunks
into a buffer, takes every complete packet out of it before going back to select()
(only a partial packet may stay behind, and that one needs more bytes from the socket
anyway, so select() waking on the socket is exactly right), and hands the messages of a
chunk to the consumer in one go. :meth:`MqttClient.ack_many` sends the PUBACKs of a
whole batch as one write.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.exception import MalformedPacket, MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from models.config import ServiceURL, parse_mqtt_url

log = logging.getLogger(__name__)

# --- tuning -----------------------------------------------------------------------------

#: Largest payload publish() accepts; the embedded broker and deploy/mosquitto.conf accept
#: the same. Checked before sending because a broker answers an oversized packet by
#: closing the connection, and paho would resend it after every reconnect, for ever.
MAX_PAYLOAD_BYTES = 1024 * 1024

#: Seconds between PINGREQs when idle. Shorter detects a dead broker (and lets the broker
#: detect a dead worker, releasing its shared-subscription share) sooner, at the cost of
#: more idle traffic from thousands of devices; 30 s finds a dead link within ≈45 s.
KEEPALIVE_SECONDS = 30

#: Unacknowledged messages a compliant broker may have outstanding to this client
#: (MQTT 5 Receive Maximum). It bounds the work a crashed worker leaves for redelivery
#: and the memory a slow worker holds; too small and the broker idles waiting for acks
#: while a batch is being written. A worker holds up to four batches of 500 in its stages
#: (parsing, database, live state, rules) and one waiting between each two while the next
#: one fills: 3500 keeps the stages busy (bench_ingest, one worker: 2500 stored 6 % less,
#: 5000 was no faster).
RECEIVE_MAXIMUM = 3500

#: Received messages waiting for the consumer. Twice :data:`RECEIVE_MAXIMUM` so that,
#: with a broker that honours Receive Maximum, the network thread never waits even
#: while stale copies from before a reconnect are still queued.
HANDOFF_QUEUE_SIZE = 2 * RECEIVE_MAXIMUM

#: Longest the network thread waits for room in a full hand-off queue. While it waits
#: nothing is read or sent on the socket (no PINGREQ, no PUBACK), so this must stay well
#: under the keepalive; when it runs out the connection is dropped and the broker
#: redelivers. Longer rides out a slow database write; shorter reconnects sooner.
HANDOFF_BLOCK_SECONDS = 10.0

#: Bytes asked of the socket per read: a few hundred sensor readings. Larger means fewer
#: system calls and wake-ups per message; the buffer never holds more than one read plus
#: one partial packet.
READ_CHUNK_BYTES = 64 * 1024

#: QoS 1 publishes paho keeps in flight (sent, PUBACK pending). Higher gives throughput
#: on high-latency links; it is lowered automatically to the Receive Maximum the broker
#: announces (Mosquitto's ``max_inflight_messages``), because exceeding it is a
#: protocol error that gets the connection closed.
PUBLISH_MAX_INFLIGHT = 1000

#: Publishes paho queues in memory beyond the in-flight window (also while disconnected).
#: Bounded so a publisher cut off from the broker fails fast instead of growing without
#: limit; kept below 65,535 because paho's packet ids must stay unique among them.
PUBLISH_MAX_QUEUED = 20_000

#: Reconnect backoff bounds (seconds, doubling from min to max). The short minimum
#: recovers quickly from a broker restart; the cap stops hundreds of workers from
#: hammering a broker that is down for maintenance.
RECONNECT_MIN_DELAY = 0.5
RECONNECT_MAX_DELAY = 30.0

#: How long :meth:`MqttClient.start` waits for CONNACK before reporting the broker
#: unavailable. Covers a TLS handshake over a slow intranet link.
CONNECT_TIMEOUT_SECONDS = 10.0

#: How long a persistent session (subscriptions + unacknowledged and queued messages)
#: outlives a disconnected consumer. Long enough to survive a deploy or a host reboot;
#: Mosquitto's ``persistent_client_expiration`` must not be shorter.
SESSION_EXPIRY_SECONDS = 24 * 3600

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# How often a network thread waiting on a full hand-off queue checks for stop().
_HANDOFF_POLL_SECONDS = 0.1

# The ack() of a message must go out on the connection it arrived on: packet ids are
# reused after a reconnect, so a late PUBACK could acknowledge a *different* message.
_connection_generation = itertools.count(1)


class _BenignPahoErrors(logging.Filter):
    """paho 2.2 logs an ERROR whenever its loop runs once more after a clean disconnect."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Client is not connected. Socket: None")


_PAHO_LOG = logging.getLogger(__name__ + ".paho")
_PAHO_LOG.addFilter(_BenignPahoErrors())


class MqttUnavailable(ConnectionError):
    """The broker cannot be reached or refused us; the message is one line, without secrets."""


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message as handed to the consumer; acknowledge it with :meth:`MqttClient.ack`."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    #: Packet id, meaningful only on the connection that delivered it.
    mid: int
    #: ``time.monotonic()`` at receipt: for latencies and queue ages.
    received_at: float
    #: ``time.time()`` at receipt: for records and logs.
    received_wall: float
    duplicate: bool = False
    #: Seconds left of the publisher's Message Expiry Interval, when it set one.
    message_expiry: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    content_type: str | None = None
    #: Which connection delivered it; acks from an earlier connection are not sent.
    connection: int = 0

    def age(self, now: float | None = None) -> float:
        """Seconds since receipt (monotonic)."""
        return (time.monotonic() if now is None else now) - self.received_at


@dataclass(frozen=True, slots=True)
class ConnectArgs:
    """What paho needs from a broker URL; ``repr`` leaves the password out."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return (
            f"ConnectArgs(host={self.host!r}, port={self.port}, tls={self.tls}, username={self.username!r})"
        )


@dataclass(frozen=True, slots=True)
class MqttStats:
    """A snapshot of one client's state for health pages and logs."""

    client_id: str
    address: str
    connected: bool
    received: int
    acked: int
    published: int
    publish_failed: int
    reconnects: int
    stale_acks: int
    handoff_overflows: int
    queued: int
    subscriptions: tuple[str, ...]
    last_error: str | None
    connected_since: float | None
    #: Of ``published``: accepted by the broker with no subscription matching (MQTT 5
    #: reason 0x10), so nobody will ever receive them. For readings that means no ingest
    #: worker was subscribed, e.g. in the moment after a broker restart (docs/mqtt.md).
    unrouted: int = 0
    #: Queued copies from an earlier connection dropped when the broker resumed the session
    #: (it sends them again on the new one, where only the new copies can be acknowledged).
    stale_dropped: int = 0


def connect_args(url: ServiceURL | str) -> ConnectArgs:
    """Host, port, TLS and credentials from a ``mqtt://`` / ``mqtts://`` URL."""
    parsed = parse_mqtt_url(url) if isinstance(url, str) else url
    tls = parsed.scheme in {"mqtts", "ssl"}
    port = parsed.port if parsed.port is not None else (8883 if tls else 1883)
    return ConnectArgs(
        host=parsed.host, port=port, tls=tls, username=parsed.username, password=parsed.password
    )


def shared_topic(topic_filter: str, group: str | None) -> str:
    """``$share/{group}/{filter}`` for a shared subscription, or the filter unchanged."""
    validate_topic_filter(topic_filter)
    if group is None:
        return topic_filter
    if not group or any(c in group for c in "/+#"):
        raise ValueError(f"shared subscription group must be non-empty without '/', '+', '#': {group!r}")
    return f"$share/{group}/{topic_filter}"


def build_topic(prefix: str, *levels: str) -> str:
    """Join a prefix and topic levels into a topic name to publish to.

    Levels must be non-empty and free of ``/``, ``+`` and ``#``, so a device id cannot
    inject extra levels or wildcards.
    """
    for level in levels:
        if not level or any(c in level for c in "/+#\x00"):
            raise ValueError(f"invalid topic level {level!r}")
    topic = "/".join((prefix.rstrip("/"), *levels))
    validate_topic_name(topic)
    return topic


def validate_topic_name(topic: str) -> None:
    """Raise ValueError unless ``topic`` is a valid topic name to publish to."""
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError(f"invalid topic name {topic!r}: empty or contains a wildcard")
    if len(topic.encode("utf-8")) > 65535:
        raise ValueError("topic name longer than 65535 bytes")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise ValueError unless ``topic_filter`` is a valid MQTT subscription filter."""
    if not topic_filter or "\x00" in topic_filter:
        raise ValueError(f"invalid topic filter {topic_filter!r}")
    if topic_filter.startswith("$share/"):
        raise ValueError("pass the shared group as shared_group=, not inside the filter")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"invalid topic filter {topic_filter!r}: '#' must be a whole, last level")
        if "+" in level and level != "+":
            raise ValueError(f"invalid topic filter {topic_filter!r}: '+' must be a whole level")


def default_client_id(role: str) -> str:
    """``cityops-{role}-{hostname}``: stable across restarts of the same host or container.

    A persistent session is found again by its client id, so consumers need one that
    survives a restart; two live connections with the same id kick each other off, so
    give each worker on a host its own role suffix (``ingest-1``, ``ingest-2``).
    """
    host = re.sub(r"[^A-Za-z0-9\-]", "-", socket.gethostname().split(".")[0]) or "localhost"
    return f"cityops-{role}-{host}"[:128]


# --- receiving: a buffered paho client and the hand-off queue --------------------------------

#: One decoded PUBLISH: topic, payload, qos, retain, packet id, dup, MQTT 5 properties or None.
_Publish = tuple[str, bytes, int, bool, int, bool, Properties | None]

_PUBLISH = 0x30
_PUBACK = 0x40
#: PUBACK reason code: accepted, but no subscription matched. A success code, so paho
#: marks the message published although the broker discarded it.
_NO_MATCHING_SUBSCRIBERS = 0x10
#: ``struct`` formats for n PUBACKs at once, by n (batch sizes repeat, so few are built).
_PUBACKS: dict[int, struct.Struct] = {}


class _BufferedPahoClient(paho.Client):
    """paho's client with a buffered receive path for PUBLISH packets.

    paho reads the fixed header a byte at a time and the rest with another recv(), handles
    one packet per select() and builds an ``MQTTMessage`` for each. Here one recv() takes
    up to :data:`READ_CHUNK_BYTES`, every complete packet in the buffer is taken out before
    returning to select() (so nothing complete ever waits in the buffer while select()
    waits on an empty socket), QoS 0/1 PUBLISH packets are decoded directly and passed to
    :attr:`on_publishes` as one list per read, and every other packet (CONNACK, SUBACK,
    PINGRESP, DISCONNECT, QoS 2 flows) goes through paho's own handler, unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_buffer = bytearray()
        #: ids of QoS > 0 publishes waiting behind a full in-flight window, oldest first
        self._queued_mids: deque[int] = deque()
        #: Called on the network thread with the decoded PUBLISH packets of one read.
        self.on_publishes: Callable[[list[_Publish]], None] | None = None
        #: Called right after a (re)connect queued its CONNECT, before any answer.
        self.on_connect_sent: Callable[[], None] | None = None
        #: Generation of the connection that acknowledgements may go out on; 0 from the
        #: moment a reconnect starts until its CONNACK names the next one.
        self.connection = 0
        # Makes "is this still the connection?" and "queue the packet" one step for
        # send_raw(), against reconnect() emptying the outgoing queue for the next one.
        self._connection_lock = threading.Lock()

    # ---- publishing: queued messages found without a scan ---------------------------------
    #
    # paho looks for queued QoS 1 messages (those waiting behind a full in-flight window) by
    # walking every message it holds, on every PUBACK: with a thousand in flight that walk
    # was a third of a fast publisher's CPU. Here the queued ones are kept in order as they
    # queue, and promoted from the front.

    def publish(
        self,
        topic: str,
        payload: Any = None,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> paho.MQTTMessageInfo:
        with self._out_message_mutex:  # re-entrant: paho's publish takes it too
            info = super().publish(topic, payload, qos, retain, properties)
            message = self._out_messages.get(info.mid) if qos > 0 else None
            if message is not None and message.state == paho.mqtt_ms_queued:
                self._queued_mids.append(info.mid)
        return info

    def _messages_reconnect_reset_out(self) -> None:
        with self._out_message_mutex:
            super()._messages_reconnect_reset_out()
            # A reconnect re-sorts what is in flight and what waits: learn it again, in order.
            self._queued_mids = deque(
                mid for mid, m in self._out_messages.items() if m.state == paho.mqtt_ms_queued
            )

    def _update_inflight(self) -> MQTTErrorCode:
        # Called by paho with the out-message lock held, after an acknowledgement.
        queued = self._queued_mids
        while queued and self._inflight_messages < self._max_inflight_messages:
            m = self._out_messages.get(queued.popleft())
            if m is None or m.qos == 0 or m.state != paho.mqtt_ms_queued:
                continue
            self._inflight_messages += 1
            m.state = paho.mqtt_ms_wait_for_puback if m.qos == 1 else paho.mqtt_ms_wait_for_pubrec
            rc = self._send_publish(
                m.mid, m.topic.encode("utf-8"), m.payload, m.qos, m.retain, m.dup, properties=m.properties
            )
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def set_connection(self, generation: int) -> None:
        """The connection whose CONNACK just arrived: acknowledgements for it may be sent."""
        with self._connection_lock:
            self.connection = generation

    def reconnect(self) -> MQTTErrorCode:
        # Packet ids belong to one connection. Without this, a consumer thread that checked
        # the connection just before it dropped would queue its PUBACKs after paho emptied
        # the outgoing queue, and they would go out on the *next* connection, where the
        # same ids can name other messages. From here until the next CONNACK none is queued.
        with self._connection_lock:
            self.connection = 0
        # A new connection starts a new byte stream: a partial packet of the old one is void.
        self._read_buffer = bytearray()
        rc = super().reconnect()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.on_connect_sent is not None:
            self.on_connect_sent()
        return rc

    def send_raw(self, command: int, data: bytes, connection: int) -> MQTTErrorCode:
        """Queue ready-encoded packets (e.g. many PUBACKs) for the network thread to write,
        unless ``connection`` is no longer the open connection (then NO_CONN, nothing sent)."""
        with self._connection_lock:
            if self._sock is None or connection != self.connection:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            return self._packet_queue(command, data, 0, 0)

    def _packet_read(self) -> MQTTErrorCode:
        try:
            data = self._sock_recv(READ_CHUNK_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:  # also TimeoutError and paho's ConnectionError for a closed socket
            self._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()
        buffer = self._read_buffer
        buffer += data
        return self._drain(buffer)

    def _drain(self, buffer: bytearray) -> MQTTErrorCode:
        """Handle every complete packet in ``buffer``, keeping a trailing partial one."""
        mqtt5 = self._protocol == MQTTProtocolVersion.MQTTv5
        publishes: list[_Publish] = []
        end = len(buffer)
        pos = 0
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while end - pos >= 2:
            command = buffer[pos]
            # Remaining length: 1 to 4 bytes, 7 bits each, least significant first.
            length = shift = 0
            i = pos + 1
            while True:
                if i >= end:
                    length = -1  # the length itself is not complete yet
                    break
                byte = buffer[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
                if shift > 21:
                    self._easy_log(paho.MQTT_LOG_ERR, "remaining length longer than 4 bytes")
                    rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
                    break
            if rc or length < 0 or i + length > end:
                break
            body = bytes(buffer[i : i + length])
            pos = i + length
            if command & 0xF0 == _PUBLISH and command & 0x06 != 0x04:
                try:
                    publishes.append(_decode_publish(command, body, mqtt5))
                except (IndexError, ValueError, MQTTException) as exc:
                    self._easy_log(paho.MQTT_LOG_ERR, "malformed PUBLISH packet: %s", exc)
                    rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
                    break
                continue
            # Anything else goes to paho, after the messages before it (order is kept).
            if publishes:
                self._hand_over(publishes)
                publishes = []
            rc = self._handle_other(command, body)
            if rc or self._sock is None:
                break
        del buffer[:pos]
        if publishes:
            self._hand_over(publishes)
        return rc

    def _hand_over(self, publishes: list[_Publish]) -> None:
        handler = self.on_publishes
        if handler is None:
            return
        try:
            handler(publishes)
        except Exception as err:  # as paho does for on_message: log, and keep the thread alive
            self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_publishes: %s", err)
            if not self.suppress_exceptions:
                raise

    def _handle_other(self, command: int, body: bytes) -> MQTTErrorCode:
        self._in_packet = {
            "command": command,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": len(body),
            "packet": bytearray(body),
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(paho.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        return rc


def _decode_publish(command: int, body: bytes, mqtt5: bool) -> _Publish:
    """A QoS 0/1 PUBLISH packet's fields (``body`` is everything after the fixed header)."""
    qos = (command >> 1) & 0x03
    topic_end = 2 + ((body[0] << 8) | body[1])
    if topic_end > len(body):
        raise MalformedPacket("topic runs past the end of the packet")
    # A topic that is not UTF-8 (brokers refuse those) is kept readable so that the
    # consumer can reject it as an unknown topic instead of it never being acknowledged.
    topic = body[2:topic_end].decode("utf-8", "replace")
    pos = topic_end
    mid = 0
    if qos:
        mid = (body[pos] << 8) | body[pos + 1]
        pos += 2
    props: Properties | None = None
    if mqtt5:
        if body[pos] == 0:  # no properties: the usual case
            pos += 1
        else:
            props, used = Properties(PacketTypes.PUBLISH).unpack(body[pos:])
            pos += used
    return topic, body[pos:], qos, bool(command & 0x01), mid, bool(command & 0x08), props


class _Handoff:
    """The bounded queue between the network thread and the consumer, taken in batches.

    One lock round per socket read and per consumer batch instead of one per message.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("the hand-off queue needs room for at least one message")
        self.maxsize = maxsize
        self._items: deque[ReceivedMessage] = deque()
        self._changed = threading.Condition(threading.Lock())

    def qsize(self) -> int:
        return len(self._items)

    def put_many(self, items: Sequence[ReceivedMessage], timeout: float, stopping: threading.Event) -> int:
        """Queue items in order, waiting up to ``timeout`` for room; returns how many were queued.

        Waits in short slices so that ``stopping`` is noticed promptly.
        """
        deadline = time.monotonic() + timeout
        done = 0
        with self._changed:
            while done < len(items):
                room = self.maxsize - len(self._items)
                if room > 0:
                    chunk = items[done : done + room]
                    self._items.extend(chunk)
                    done += len(chunk)
                    self._changed.notify_all()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stopping.is_set():
                    break
                self._changed.wait(min(remaining, _HANDOFF_POLL_SECONDS))
        return done

    def discard_other_connections(self, connection: int) -> int:
        """Drop the queued messages received on any connection but ``connection``; how many."""
        with self._changed:
            kept = [m for m in self._items if m.connection == connection]
            dropped = len(self._items) - len(kept)
            if dropped:
                self._items = deque(kept)
                self._changed.notify_all()  # room for a waiting network thread
        return dropped

    def get_many(self, max_items: int, timeout: float | None) -> list[ReceivedMessage]:
        """Up to ``max_items`` items: waits up to ``timeout`` (None: for ever) for the first."""
        with self._changed:
            if not self._items:
                if timeout is None:
                    while not self._items:
                        self._changed.wait()
                elif timeout <= 0 or not self._changed.wait_for(lambda: self._items, timeout):
                    return []
            items = self._items
            batch = [items.popleft() for _ in range(min(max_items, len(items)))]
            self._changed.notify_all()  # room for a waiting network thread
        return batch


class MqttClient:
    """paho-mqtt wrapped for cityops: connect, subscribe, publish, receive, acknowledge.

    ``persistent_session=True`` is for consumers: the broker keeps subscriptions and
    unacknowledged messages for :data:`SESSION_EXPIRY_SECONDS` while the client is away.
    Publishers keep the default (a fresh session each connect).
    """

    def __init__(
        self,
        url: ServiceURL | str,
        client_id: str,
        *,
        persistent_session: bool = False,
        session_expiry: int = SESSION_EXPIRY_SECONDS,
        receive_maximum: int = RECEIVE_MAXIMUM,
        queue_size: int | None = None,
        keepalive: int = KEEPALIVE_SECONDS,
        reconnect_min_delay: float = RECONNECT_MIN_DELAY,
        reconnect_max_delay: float = RECONNECT_MAX_DELAY,
        handoff_block_seconds: float = HANDOFF_BLOCK_SECONDS,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if not _CLIENT_ID.fullmatch(client_id):
            # Also a safety measure: rumqttd 0.20 refuses an id containing '/', and a second
            # attempt with it poisons a lock that disables the listener for every client.
            raise ValueError(
                f"client_id must be 1-128 characters of letters, digits, '.', '_', ':', '-': {client_id!r}"
            )
        if not 1 <= receive_maximum <= 65535:
            raise ValueError("receive_maximum must be between 1 and 65535")
        self.client_id = client_id
        self.args = connect_args(url)
        self.persistent_session = persistent_session
        self.session_expiry = session_expiry if persistent_session else 0
        self.receive_maximum = receive_maximum
        self.keepalive = keepalive
        self.handoff_block_seconds = handoff_block_seconds
        self.connected = threading.Event()

        self._queue = _Handoff(queue_size if queue_size is not None else 2 * receive_maximum)
        self._subscriptions: dict[str, int] = {}  # full filter (with $share) -> qos
        self._lock = threading.Lock()
        self._started = False
        self._stopping = threading.Event()
        self._first_connect = threading.Event()
        self._connect_refusal: str | None = None
        self._connected_since: float | None = None
        self.last_error: str | None = None
        self._counts = dict.fromkeys(
            (
                "received",
                "acked",
                "published",
                "publish_failed",
                "reconnects",
                "stale_acks",
                "handoff_overflows",
                "connects",
                "unrouted",
                "stale_dropped",
            ),
            0,
        )

        client = _BufferedPahoClient(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        client.enable_logger(_PAHO_LOG)
        # An exception in a callback would otherwise end paho's network thread, and with it
        # every reconnect; paho still logs it at ERROR through the logger above.
        client.suppress_exceptions = True
        # paho types the delays as int, but compares them as numbers; sub-second minimums
        # keep tests and broker restarts snappy.
        client.reconnect_delay_set(reconnect_min_delay, reconnect_max_delay)  # type: ignore[arg-type]
        client.max_inflight_messages_set(PUBLISH_MAX_INFLIGHT)
        client.max_queued_messages_set(PUBLISH_MAX_QUEUED)
        if self.args.username is not None:
            client.username_pw_set(self.args.username, self.args.password)
        if self.args.tls:
            if tls_context is not None:
                client.tls_set_context(tls_context)
            else:
                client.tls_set_context(ssl.create_default_context())
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_publishes = self._on_publishes
        client.on_connect_sent = self._subscribe_behind_connect
        self._client = client

    @property
    def _generation(self) -> int:
        """The connection messages are received and acknowledged on (0: none yet)."""
        return self._client.connection

    @_generation.setter
    def _generation(self, generation: int) -> None:
        self._client.set_connection(generation)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = CONNECT_TIMEOUT_SECONDS) -> MqttClient:
        """Connect and start the network thread; raise :class:`MqttUnavailable` on failure.

        Later connection losses are not errors: the client reconnects by itself with
        backoff and resubscribes; watch :attr:`connected` and :meth:`stats`.
        """
        if self._started:
            return self
        self._stopping.clear()
        properties = Properties(PacketTypes.CONNECT)
        properties.ReceiveMaximum = self.receive_maximum
        if self.session_expiry:
            properties.SessionExpiryInterval = self.session_expiry
        try:
            self._client.connect(
                self.args.host,
                self.args.port,
                keepalive=self.keepalive,
                clean_start=not self.persistent_session,
                properties=properties,
            )
        except (OSError, ssl.SSLError) as exc:
            raise MqttUnavailable(self._unavailable(_describe_os_error(exc))) from None
        self._started = True
        self._client.loop_start()
        if not self._first_connect.wait(timeout):
            self.stop()
            raise MqttUnavailable(self._unavailable(f"no CONNACK within {timeout:g} s"))
        if self._connect_refusal is not None:
            reason = self._connect_refusal
            self.stop()
            raise MqttUnavailable(self._unavailable(f"connection refused: {reason}"))
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly and stop the network thread. Unacked messages stay in the session."""
        if not self._started:
            return
        self._started = False
        self._stopping.set()
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
        self.connected.clear()

    def __enter__(self) -> MqttClient:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- subscribing -------------------------------------------------------------------

    def subscribe(self, topic_filter: str, qos: int = 1, shared_group: str | None = None) -> str:
        """Subscribe now (if connected) and after every reconnect; returns the filter used.

        With ``shared_group`` the broker splits matching messages between all clients
        subscribed with the same group (``$share/{group}/{filter}``).
        """
        full = shared_topic(topic_filter, shared_group)
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        with self._lock:
            self._subscriptions[full] = qos
        if self.connected.is_set():
            self._send_subscribe([(full, qos)])
        return full

    def unsubscribe(self, topic_filter: str, shared_group: str | None = None) -> None:
        full = shared_topic(topic_filter, shared_group)
        with self._lock:
            self._subscriptions.pop(full, None)
        if self.connected.is_set():
            self._client.unsubscribe(full)

    # --- publishing --------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        retain: bool = False,
        *,
        properties: Properties | None = None,
    ) -> paho.MQTTMessageInfo:
        """Queue one message; ``.wait_for_publish()`` on the result waits for the broker's ack.

        While disconnected, QoS ≥ 1 messages are kept (up to :data:`PUBLISH_MAX_QUEUED`)
        and sent after the reconnect.
        """
        validate_topic_name(topic)
        size = len(payload.encode("utf-8") if isinstance(payload, str) else payload)
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {size} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self._count("publish_failed")
        return info

    def publish_many(
        self,
        messages: Iterable[tuple[str, bytes | str]],
        qos: int = 1,
        *,
        timeout: float = 60.0,
    ) -> int:
        """Publish all messages and wait until the broker acknowledged every one.

        Keeps paho's window full instead of waiting message by message, which is what
        makes QoS 1 fast. Returns the number published; raises TimeoutError when the
        broker has not acknowledged them all within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        pending: list[paho.MQTTMessageInfo] = []
        count = 0
        for topic, payload in messages:
            while True:
                info = self.publish(topic, payload, qos=qos)
                if info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    break
                # paho's queue is full: wait for the oldest to be acknowledged, then retry.
                self._wait_published(pending, deadline, keep=PUBLISH_MAX_QUEUED // 2)
            pending.append(info)
            count += 1
            if len(pending) >= PUBLISH_MAX_QUEUED:
                self._wait_published(pending, deadline, keep=PUBLISH_MAX_QUEUED // 2)
        self._wait_published(pending, deadline, keep=0)
        return count

    def _wait_published(self, pending: list[paho.MQTTMessageInfo], deadline: float, keep: int) -> None:
        while len(pending) > keep:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(pending)} messages not acknowledged by {self.args.address}")
            # wait_for_publish raises on NO_CONN; a queued message is still sent after reconnect.
            with contextlib.suppress(RuntimeError):
                pending[0].wait_for_publish(min(remaining, 1.0))
            if _acknowledged(pending[0]):
                pending.pop(0)

    # --- receiving ---------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> ReceivedMessage | None:
        """The next received message, or None after ``timeout`` seconds."""
        batch = self._queue.get_many(1, timeout)
        return batch[0] if batch else None

    def get_batch(self, max_items: int, timeout: float) -> list[ReceivedMessage]:
        """Up to ``max_items`` messages: waits ``timeout`` for the first, then takes what is there.

        Returning as soon as the queue is drained (instead of waiting to fill the batch)
        keeps latency low at low rates while still batching under load.
        """
        return self._queue.get_many(max_items, timeout)

    def ack(self, message: ReceivedMessage) -> bool:
        """Acknowledge a message once it is durably stored. False if it can no longer be acked.

        A message that arrived on an earlier connection is not acknowledged: its packet
        id may now belong to another message, and the broker redelivers it anyway (when
        the session survived), so the duplicate is handled by the pipeline's dedupe.
        """
        if message.qos == 0:
            return True
        if message.connection != self._generation or not self.connected.is_set():
            self._count("stale_acks")
            return False
        if message.qos == 1:
            # Through send_raw, which re-checks the connection as it queues the PUBACK.
            rc = self._client.send_raw(
                _PUBACK, bytes((_PUBACK, 2)) + message.mid.to_bytes(2, "big"), message.connection
            )
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._count("stale_acks")
                return False
        elif self._client.ack(message.mid, message.qos) != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        self._count("acked")
        return True

    def ack_many(self, messages: Sequence[ReceivedMessage]) -> int:
        """Acknowledge a batch, its QoS 1 PUBACKs in one write; returns how many acks were sent.

        The same rules as :meth:`ack`: messages from an earlier connection are not
        acknowledged (counted as stale), QoS 0 needs nothing, QoS 2 goes through paho.
        """
        generation = self._generation
        connected = self.connected.is_set()
        mids: list[int] = []
        sent = stale = 0
        for message in messages:
            if message.qos == 1 and connected and message.connection == generation:
                mids.append(message.mid)
            elif message.qos == 0:
                sent += 1
            elif message.qos == 2 and connected and message.connection == generation:
                sent += 1 if self.ack(message) else 0
            else:
                stale += 1
        if mids:
            packets = _PUBACKS.get(len(mids))
            if packets is None:
                packets = _PUBACKS.setdefault(len(mids), struct.Struct("!" + "BBH" * len(mids)))
            data = packets.pack(*itertools.chain.from_iterable((_PUBACK, 2, mid) for mid in mids))
            if self._client.send_raw(_PUBACK, data, generation) == MQTTErrorCode.MQTT_ERR_SUCCESS:
                sent += len(mids)
                self._count("acked", len(mids))
            else:  # the connection dropped since the check above: the broker redelivers them
                stale += len(mids)
        if stale:
            self._count("stale_acks", stale)
        return sent

    # --- health ------------------------------------------------------------------------

    def stats(self) -> MqttStats:
        with self._lock:
            counts = dict(self._counts)
            subscriptions = tuple(self._subscriptions)
        return MqttStats(
            client_id=self.client_id,
            address=self.args.address,
            connected=self.connected.is_set(),
            received=counts["received"],
            acked=counts["acked"],
            published=counts["published"],
            publish_failed=counts["publish_failed"],
            reconnects=counts["reconnects"],
            stale_acks=counts["stale_acks"],
            handoff_overflows=counts["handoff_overflows"],
            queued=self._queue.qsize(),
            subscriptions=subscriptions,
            last_error=self.last_error,
            connected_since=self._connected_since,
            unrouted=counts["unrouted"],
            stale_dropped=counts["stale_dropped"],
        )

    def __repr__(self) -> str:
        state = "connected" if self.connected.is_set() else "disconnected"
        return f"<MqttClient {self.client_id} {self.args.address} {state}>"

    # --- paho callbacks (network thread) -----------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.last_error = f"connection refused: {reason}"
            self._connect_refusal = str(reason)
            self._first_connect.set()
            return
        self._generation = next(_connection_generation)
        if flags.session_present:
            # The broker kept the session: it sends every unacknowledged message again on
            # this connection. The copies still queued from the last one could never be
            # acknowledged (their packet ids belong to a closed connection); handling them
            # would only double the work, and under overload they filled the queue, stalled
            # the network thread and dropped this connection too, again and again. Without
            # a session (expired, or a broker that lost it) nothing comes again, so they stay.
            stale = self._queue.discard_other_connections(self._generation)
            if stale:
                self._count("stale_dropped", stale)
                log.info("dropped %d queued messages of the last connection: the broker resends them", stale)
        with self._lock:
            if self._counts["connects"] > 0:
                self._counts["reconnects"] += 1
            self._counts["connects"] += 1
            subscriptions = list(self._subscriptions.items())
        server_receive_max = getattr(properties, "ReceiveMaximum", None) if properties else None
        if server_receive_max:
            # Sending more unacknowledged publishes than the broker allows is a protocol
            # error. The limit is only known from CONNACK, and paho's public setter refuses
            # changes on an open connection, hence the attribute (read before every send).
            client._max_inflight_messages = min(PUBLISH_MAX_INFLIGHT, int(server_receive_max))
        # Resubscribe on *every* connect: a broker restart (or an embedded broker, which
        # keeps sessions only in memory) forgets subscriptions even for persistent sessions.
        # Usually they went out right behind CONNECT already (_subscribe_behind_connect);
        # this covers a subscribe() made meanwhile. Subscribing again only replaces them.
        if subscriptions:
            self._send_subscribe(subscriptions)
        self._connected_since = time.time()
        self.connected.set()
        self._first_connect.set()
        log.info(
            "MQTT connected to %s as %s (session present: %s)",
            self.args.address,
            self.client_id,
            flags.session_present,
        )

    def _subscribe_behind_connect(self) -> None:
        """The subscriptions, queued right behind the CONNECT of a (re)connect.

        Mosquitto 2.0 does not keep shared subscriptions across its restart, and until they
        are back it acknowledges readings to their devices as "no matching subscribers" and
        discards them (docs/mqtt.md, Broker restarts). Waiting for CONNACK, and for the
        messages of the session that the broker sends right behind it, leaves that gap open
        for milliseconds; sent with CONNECT (MQTT 5 allows packets before CONNACK, and a
        broker refusing the connection must ignore them) the SUBSCRIBE is the broker's next
        packet from this client.
        """
        with self._lock:
            subscriptions = list(self._subscriptions.items())
        if subscriptions:
            self._send_subscribe(subscriptions)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self.last_error = f"cannot reach {self.args.address}"

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self.connected.is_set()
        if not self._stopping.is_set():
            # Before clearing the event, so that a waiter woken by it sees the reason.
            self.last_error = f"disconnected: {reason}"
        self.connected.clear()
        self._connected_since = None
        if self._stopping.is_set():
            return
        if was_connected:
            log.warning("MQTT connection to %s lost (%s); reconnecting", self.args.address, reason)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        props = getattr(msg, "properties", None)
        user_properties: tuple[tuple[str, str], ...] = ()
        expiry = content_type = None
        if props is not None:
            user_properties = tuple(getattr(props, "UserProperty", ()) or ())
            expiry = getattr(props, "MessageExpiryInterval", None)
            content_type = getattr(props, "ContentType", None)
        message = ReceivedMessage(
            topic=msg.topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            retain=bool(msg.retain),
            mid=msg.mid,
            received_at=now,
            received_wall=time.time(),
            duplicate=bool(msg.dup),
            message_expiry=expiry,
            user_properties=user_properties,
            content_type=content_type,
            connection=self._generation,
        )
        self._deliver([message])

    def _on_publishes(self, publishes: list[_Publish]) -> None:
        """The PUBLISH packets of one socket read, decoded by :class:`_BufferedPahoClient`."""
        now, wall, generation = time.monotonic(), time.time(), self._generation
        messages = []
        for topic, payload, qos, retain, mid, dup, props in publishes:
            if props is None:
                messages.append(
                    ReceivedMessage(topic, payload, qos, retain, mid, now, wall, dup, connection=generation)
                )
                continue
            messages.append(
                ReceivedMessage(
                    topic,
                    payload,
                    qos,
                    retain,
                    mid,
                    now,
                    wall,
                    dup,
                    message_expiry=getattr(props, "MessageExpiryInterval", None),
                    user_properties=tuple(getattr(props, "UserProperty", ()) or ()),
                    content_type=getattr(props, "ContentType", None),
                    connection=generation,
                )
            )
        self._deliver(messages)

    def _deliver(self, messages: list[ReceivedMessage]) -> None:
        self._count("received", len(messages))
        queued = self._queue.put_many(messages, self.handoff_block_seconds, self._stopping)
        if queued < len(messages):
            if self._stopping.is_set():
                return  # shutting down: unacknowledged, so the broker keeps them
            # The consumer has stalled: leave the rest unacknowledged and drop the
            # connection so the broker keeps them and redelivers them after the reconnect.
            self._count("handoff_overflows", len(messages) - queued)
            self.last_error = f"consumer stalled: hand-off queue full for {self.handoff_block_seconds:g} s"
            log.error("%s; dropping the MQTT connection so the broker redelivers", self.last_error)
            self._drop_connection()

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._count("failed" if reason.is_failure else "published")
        if reason.value == _NO_MATCHING_SUBSCRIBERS:
            self._count("unrouted")

    # --- helpers -----------------------------------------------------------------------

    def _send_subscribe(self, subscriptions: list[tuple[str, int]]) -> None:
        # Retained messages only for a *new* subscription: resubscribing after every
        # reconnect must not replay every retained message to a persistent consumer.
        topics = [
            (f, SubscribeOptions(qos=q, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB))
            for f, q in subscriptions
        ]
        rc, _mid = self._client.subscribe(topics)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.last_error = f"subscribe failed: {paho.error_string(rc)}"

    def _drop_connection(self) -> None:
        sock = self._client.socket()
        if sock is None:
            return
        # Shutdown (not close) so paho sees end-of-stream on its next read and runs its
        # normal reconnect path; closing the fd under it could hit a reused descriptor.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _count(self, name: str, n: int = 1) -> None:
        if name == "failed":
            name = "publish_failed"
        with self._lock:
            self._counts[name] += n

    def _unavailable(self, reason: str) -> str:
        return f"MQTT broker at {self.args.address} is unavailable: {reason}"


def _describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


# Re-exported so callers need not import paho to type-annotate publish results.
MessageInfo = paho.MQTTMessageInfo

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "HANDOFF_BLOCK_SECONDS",
    "HANDOFF_QUEUE_SIZE",
    "KEEPALIVE_SECONDS",
    "MAX_PAYLOAD_BYTES",
    "PUBLISH_MAX_INFLIGHT",
    "PUBLISH_MAX_QUEUED",
    "RECEIVE_MAXIMUM",
    "RECONNECT_MAX_DELAY",
    "RECONNECT_MIN_DELAY",
    "SESSION_EXPIRY_SECONDS",
    "ConnectArgs",
    "MessageInfo",
    "MqttClient",
    "MqttStats",
    "MqttUnavailable",
    "ReceivedMessage",
    "build_topic",
    "connect_args",
    "default_client_id",
    "shared_topic",
    "validate_topic_filter",
    "validate_topic_name",
]


def _acknowledged(info: paho.MQTTMessageInfo) -> bool:
    """Whether the broker acknowledged a QoS 1 message.

    A message published while the connection was down carries paho's NO_CONN code for
    good: paho still sends it after the reconnect and marks it published when the PUBACK
    comes, but ``is_published()`` keeps raising for the original code. So its flag is read
    directly in that one case.
    """
    if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
        with info._condition:
            return bool(info._published)
    return info.is_published()
