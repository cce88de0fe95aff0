"""EmbeddedBroker: config, port choice, lifecycle, and what rumqttd does with MQTT versions.

Messaging behaviour shared with Mosquitto (QoS 1, shared subscriptions, persistent
sessions, redelivery, restarts) is tested for both brokers in test_mqtt_client.py.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest import broker as broker_module
from ingest.broker import EmbeddedBroker, free_port, port_is_free, render_config, start_broker_for
from ingest.mqtt import MqttClient
from models.config import load_settings


def test_config_has_an_mqtt5_listener_with_ingest_limits() -> None:
    text = render_config(12345)
    assert "[v5.1]" in text and 'listen = "127.0.0.1:12345"' in text
    assert f"max_payload_size = {broker_module.MAX_PAYLOAD_BYTES}" in text
    assert "[v4." not in text, "MQTT 3.1.1 is opt-in"
    with_v4 = render_config(12345, v4_port=12346)
    assert "[v4.1]" in with_v4 and 'listen = "127.0.0.1:12346"' in with_v4


def test_config_is_valid_toml() -> None:
    import tomllib

    parsed = tomllib.loads(render_config(12345, v4_port=12346))
    assert parsed["v5"]["1"]["connections"]["max_payload_size"] == 1024 * 1024
    assert parsed["router"]["max_segment_count"] == broker_module.MAX_SEGMENT_COUNT


def test_start_writes_config_listens_and_stop_releases_the_port(tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedBroker(port, config_dir=tmp_path / "mqtt") as broker:
        assert broker.is_running and broker.url == f"mqtt://127.0.0.1:{port}"
        assert broker.config_path == tmp_path / "mqtt" / "rumqttd.toml"
        assert f"127.0.0.1:{port}" in broker.config_path.read_text(encoding="utf-8")
        with MqttClient(broker.url, "embedded-check") as client:
            assert client.connected.is_set()
    assert not broker.is_running
    assert port_is_free(port)
    broker.stop()  # twice is fine


def test_taken_port_falls_back_to_a_free_one(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="ingest.broker"), EmbeddedBroker(taken) as broker:
            assert broker.port != taken
            assert broker.url.endswith(f":{broker.port}")
            with MqttClient(broker.url, "fallback-check") as client:
                assert client.connected.is_set()
    assert any(str(taken) in r.getMessage() and "taken" in r.getMessage() for r in caplog.records)


def test_start_broker_for_configured_broker_is_none() -> None:
    settings = load_settings({"CITYOPS_MQTT_URL": "mqtt://broker:1883"})
    assert start_broker_for(settings) is None


def test_start_broker_for_embedded_default(tmp_path: Path) -> None:
    settings = load_settings(
        {"CITYOPS_DATA_DIR": str(tmp_path), "CITYOPS_EMBEDDED_MQTT_PORT": str(free_port())}
    )
    broker = start_broker_for(settings)
    assert broker is not None
    try:
        assert broker.port == settings.embedded_mqtt_port
        assert broker.config_path is not None and broker.config_path.parent == tmp_path / "mqtt"
    finally:
        broker.stop()


def _connect_result(port: int, protocol: int) -> str:
    """'connected' or why not, for a bare paho client of the given MQTT version."""
    outcome: list[str] = []
    done = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"v{protocol}-{port}", protocol=protocol)
    client.on_connect = lambda c, u, f, rc, p: (
        outcome.append("connected" if not rc.is_failure else str(rc)),
        done.set(),
    )
    client.on_disconnect = lambda c, u, f, rc, p: (outcome.append(f"disconnected: {rc}"), done.set())
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + 3
    while not done.is_set() and time.monotonic() < deadline:
        client.loop(0.05)
    client.disconnect()
    return outcome[0] if outcome else "no answer"


def test_mqtt311_needs_the_optional_v4_listener() -> None:
    with EmbeddedBroker(free_port(), v4_port=free_port()) as broker:
        assert broker.v4_port is not None
        assert _connect_result(broker.port, paho.MQTTv5) == "connected"
        assert _connect_result(broker.v4_port, paho.MQTTv311) == "connected"
        # The v5 listener refuses 3.1.1 clients: documented in ingest/broker.py.
        assert _connect_result(broker.port, paho.MQTTv311) != "connected"


def test_oversized_payload_is_refused(unique_name: str) -> None:
    too_big = b"x" * (broker_module.MAX_PAYLOAD_BYTES + 1)
    with EmbeddedBroker(free_port()) as broker:
        with MqttClient(broker.url, unique_name) as client, pytest.raises(ValueError, match="exceeds"):
            client.publish(f"{unique_name}/big", too_big)
        # A client that sends it anyway is disconnected by the broker.
        raw = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{unique_name}-raw", protocol=paho.MQTTv5)
        lost = threading.Event()
        raw.on_disconnect = lambda c, u, f, rc, p: lost.set()
        raw.connect("127.0.0.1", broker.port)
        raw.loop_start()
        try:
            raw.publish(f"{unique_name}/big", too_big, qos=1)
            assert lost.wait(5)
        finally:
            raw.loop_stop()


def test_client_id_with_slash_disables_the_listener() -> None:
    """Pins the rumqttd 0.20 bug documented in ingest/broker.py (why MqttClient checks ids)."""
    with EmbeddedBroker(free_port()) as broker:
        assert _connect_result(broker.port, paho.MQTTv5) == "connected"
        for _ in range(2):
            assert _connect_result_as(broker.port, "bad/id") != "connected"
        # Every later client is now refused too. If this fails, rumqttd was fixed:
        # update the docstring (the id check in MqttClient can stay).
        assert _connect_result(broker.port, paho.MQTTv5) != "connected"


def _connect_result_as(port: int, client_id: str) -> str:
    outcome: list[str] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.on_connect = lambda c, u, f, rc, p: outcome.append("connected" if not rc.is_failure else str(rc))
    client.on_disconnect = lambda c, u, f, rc, p: outcome.append(f"disconnected: {rc}")
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + 3
    while not outcome and time.monotonic() < deadline:
        client.loop(0.05)
    client.disconnect()
    return outcome[0] if outcome else "no answer"
