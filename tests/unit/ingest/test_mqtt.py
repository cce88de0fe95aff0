"""Unit tests for ingest.mqtt: topics, URLs, the message dataclass, and the client's bookkeeping.

None of these need a broker; the client is constructed but never started.
"""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from ingest import mqtt
from ingest.mqtt import (
    ConnectArgs,
    MqttClient,
    ReceivedMessage,
    build_topic,
    connect_args,
    default_client_id,
    shared_topic,
    validate_topic_filter,
)
from models.config import parse_mqtt_url


def make_message(**overrides: object) -> ReceivedMessage:
    values: dict[str, object] = {
        "topic": "cityops/v1/sensor/aq-1",
        "payload": b"{}",
        "qos": 1,
        "retain": False,
        "mid": 7,
        "received_at": time.monotonic(),
        "received_wall": time.time(),
    }
    values.update(overrides)
    return ReceivedMessage(**values)  # type: ignore[arg-type]


# --- topics -----------------------------------------------------------------------------


def test_shared_topic_prefixes_group() -> None:
    assert shared_topic("cityops/v1/#", "ingest") == "$share/ingest/cityops/v1/#"


def test_shared_topic_without_group_is_the_filter() -> None:
    assert shared_topic("cityops/v1/+/status", None) == "cityops/v1/+/status"


@pytest.mark.parametrize("group", ["", "a/b", "in+", "#"])
def test_shared_topic_rejects_bad_group(group: str) -> None:
    with pytest.raises(ValueError, match="group"):
        shared_topic("a/b", group)


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "a+/b", "$share/g/a", "a\x00b"])
def test_invalid_filters_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_topic_filter(bad)


@pytest.mark.parametrize("good", ["#", "+", "a/+/c", "a/b/#", "/a", "a//b"])
def test_valid_filters_pass(good: str) -> None:
    validate_topic_filter(good)


def test_build_topic_joins_levels() -> None:
    assert build_topic("cityops/v1/", "sensor", "aq-0042") == "cityops/v1/sensor/aq-0042"


@pytest.mark.parametrize("level", ["", "a/b", "+", "dev#1"])
def test_build_topic_refuses_injected_levels(level: str) -> None:
    with pytest.raises(ValueError, match="topic level"):
        build_topic("cityops/v1", "sensor", level)


def test_default_client_id_is_stable_and_names_role() -> None:
    first = default_client_id("ingest-1")
    assert first == default_client_id("ingest-1")
    assert first.startswith("cityops-ingest-1-")
    assert len(first) <= 128


# --- URLs -------------------------------------------------------------------------------


def test_connect_args_plain_with_credentials() -> None:
    args = connect_args("mqtt://ingest:s3cret@broker:1884")
    assert args == ConnectArgs(host="broker", port=1884, tls=False, username="ingest", password="s3cret")
    assert args.address == "broker:1884"
    assert "s3cret" not in repr(args)


@pytest.mark.parametrize(
    ("url", "port", "tls"),
    [
        ("mqtt://broker", 1883, False),
        ("tcp://broker", 1883, False),
        ("mqtts://broker", 8883, True),
        ("ssl://broker:9883", 9883, True),
    ],
)
def test_connect_args_ports_and_tls(url: str, port: int, tls: bool) -> None:
    args = connect_args(url)
    assert (args.host, args.port, args.tls, args.username) == ("broker", port, tls, None)


def test_connect_args_accepts_parsed_url() -> None:
    assert connect_args(parse_mqtt_url("mqtt://u:p@h:2000")).port == 2000


# --- ReceivedMessage --------------------------------------------------------------------


def test_received_message_is_frozen() -> None:
    message = make_message()
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.payload = b"changed"  # type: ignore[misc]


def test_received_message_is_slotted() -> None:
    message = make_message()
    assert not hasattr(message, "__dict__")
    with pytest.raises((AttributeError, TypeError)):
        message.extra = 1  # type: ignore[attr-defined]


def test_received_message_age_and_defaults() -> None:
    message = make_message(received_at=100.0)
    assert message.age(now=102.5) == pytest.approx(2.5)
    assert message.user_properties == ()
    assert message.message_expiry is None and message.duplicate is False


# --- the client without a broker -------------------------------------------------------


def test_client_validates_arguments() -> None:
    for bad in ("", "bench/1", "a+b", "x" * 129, "中文"):
        with pytest.raises(ValueError, match="client_id"):
            MqttClient("mqtt://127.0.0.1:1", bad)
    with pytest.raises(ValueError, match="receive_maximum"):
        MqttClient("mqtt://127.0.0.1:1", "c", receive_maximum=0)


def test_queue_is_bounded_above_receive_maximum() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "c", receive_maximum=50)
    assert client._queue.maxsize == 100
    assert MqttClient("mqtt://127.0.0.1:1", "d")._queue.maxsize == mqtt.HANDOFF_QUEUE_SIZE


def test_session_expiry_only_for_persistent_sessions() -> None:
    assert MqttClient("mqtt://127.0.0.1:1", "c").session_expiry == 0
    persistent = MqttClient("mqtt://127.0.0.1:1", "c", persistent_session=True)
    assert persistent.session_expiry == mqtt.SESSION_EXPIRY_SECONDS


def test_subscriptions_are_remembered_before_connecting() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "c")
    assert client.subscribe("cityops/v1/#", shared_group="ingest") == "$share/ingest/cityops/v1/#"
    client.subscribe("cityops/v1/cmd/+", qos=0)
    assert client.stats().subscriptions == ("$share/ingest/cityops/v1/#", "cityops/v1/cmd/+")
    client.unsubscribe("cityops/v1/cmd/+")
    assert client.stats().subscriptions == ("$share/ingest/cityops/v1/#",)


def test_ack_of_message_from_another_connection_is_not_sent() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "c")
    assert client.ack(make_message(connection=12345)) is False
    stats = client.stats()
    assert (stats.acked, stats.stale_acks) == (0, 1)


def test_qos0_messages_need_no_ack() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "c")
    assert client.ack(make_message(qos=0)) is True
    assert client.stats().stale_acks == 0


def _paho_message(mid: int) -> SimpleNamespace:
    properties = SimpleNamespace(UserProperty=[("source", "sim")], MessageExpiryInterval=30)
    return SimpleNamespace(
        topic="cityops/v1/x", payload=b"p", qos=1, retain=0, mid=mid, dup=0, properties=properties
    )


def test_on_message_converts_and_queues() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "c")
    client._on_message(client._client, None, _paho_message(3))  # type: ignore[arg-type]
    message = client.get(timeout=0)
    assert message is not None
    assert (message.topic, message.payload, message.mid, message.retain) == ("cityops/v1/x", b"p", 3, False)
    assert message.user_properties == (("source", "sim"),)
    assert message.message_expiry == 30
    assert client.stats().received == 1


def test_full_queue_does_not_block_network_thread_forever() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "c", queue_size=1, handoff_block_seconds=0.05)
    dropped: list[bool] = []
    client._drop_connection = lambda: dropped.append(True)  # type: ignore[method-assign]
    client._on_message(client._client, None, _paho_message(1))  # type: ignore[arg-type]
    started = time.monotonic()
    client._on_message(client._client, None, _paho_message(2))  # type: ignore[arg-type]
    assert time.monotonic() - started < 1.0
    assert dropped == [True]
    stats = client.stats()
    assert (stats.received, stats.queued, stats.handoff_overflows) == (2, 1, 1)
    assert stats.last_error is not None and "stalled" in stats.last_error


def test_get_batch_takes_what_is_there_up_to_max() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "c")
    for mid in range(1, 6):
        client._on_message(client._client, None, _paho_message(mid))  # type: ignore[arg-type]
    assert [m.mid for m in client.get_batch(3, timeout=0.1)] == [1, 2, 3]
    assert [m.mid for m in client.get_batch(10, timeout=0.1)] == [4, 5]
    started = time.monotonic()
    assert client.get_batch(10, timeout=0.05) == []
    assert time.monotonic() - started >= 0.04


def test_publishes_no_subscriber_received_are_counted_as_unrouted() -> None:
    client = MqttClient("mqtt://127.0.0.1:1", "c")
    client._on_publish(client._client, None, 1, ReasonCode(PacketTypes.PUBACK, identifier=0), None)
    client._on_publish(client._client, None, 2, ReasonCode(PacketTypes.PUBACK, identifier=0x10), None)
    client._on_publish(client._client, None, 3, ReasonCode(PacketTypes.PUBACK, identifier=0x87), None)
    stats = client.stats()
    assert (stats.published, stats.unrouted, stats.publish_failed) == (2, 1, 1)


@pytest.mark.parametrize(("session_present", "kept_old"), [(True, False), (False, True)])
def test_a_resumed_session_drops_the_last_connections_queued_copies(
    session_present: bool, kept_old: bool
) -> None:
    """The broker sends a resumed session's unacknowledged messages again; the copies still
    queued from the closed connection can never be acknowledged, so they go. Without a
    session nothing comes again: they stay and are handled."""
    client = MqttClient("mqtt://127.0.0.1:1", "c", persistent_session=True)
    client._send_subscribe = lambda subscriptions: None  # type: ignore[method-assign]
    connack = ReasonCode(PacketTypes.CONNACK, identifier=0)
    client._on_connect(client._client, None, SimpleNamespace(session_present=False), connack, None)
    for mid in (1, 2, 3):
        client._on_message(client._client, None, _paho_message(mid))  # type: ignore[arg-type]
    client._on_connect(client._client, None, SimpleNamespace(session_present=session_present), connack, None)
    client._on_message(client._client, None, _paho_message(1))  # type: ignore[arg-type]  # sent again
    taken = client.get_batch(10, timeout=0.1)
    assert [m.mid for m in taken] == ([1, 2, 3, 1] if kept_old else [1])
    assert taken[-1].connection == client._generation
    assert client.stats().stale_dropped == (0 if kept_old else 3)
