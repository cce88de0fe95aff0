"""The production broker config (deploy/mosquitto.conf) and the compose stack are valid.

``deploy/mosquitto.conf`` is run by a private ``mosquitto`` on a free port with its
persistence in a temporary directory, so the shared broker on 1883 is never touched.
Containers cannot run here, so the compose file and Dockerfile are checked statically.
"""

from __future__ import annotations

import re
import runpy
import time
from pathlib import Path

import pytest

from ingest.mqtt import MqttClient
from models.config import VARIABLES
from tests.services import MOSQUITTO_CONF, PrivateMosquitto

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"


@pytest.fixture
def deployed_mosquitto(tmp_path: Path):
    broker = PrivateMosquitto(tmp_path, MOSQUITTO_CONF.read_text(encoding="utf-8")).start()
    yield broker
    broker.stop()


def test_mosquitto_conf_starts_and_sets_receive_maximum(deployed_mosquitto: PrivateMosquitto) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    seen: dict[str, object] = {}
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="conf-check", protocol=paho.MQTTv5)
    client.on_connect = lambda c, u, f, rc, props: seen.update(rc=rc, props=props)
    client.connect("127.0.0.1", deployed_mosquitto.port)
    deadline = time.monotonic() + 5
    while "rc" not in seen and time.monotonic() < deadline:
        client.loop(0.1)
    client.disconnect()
    assert not seen["rc"].is_failure  # type: ignore[attr-defined]
    # max_inflight_messages is announced to MQTT 5 clients as Receive Maximum, and it is
    # the same window the cityops client asks for (the smaller of the two would apply).
    from ingest.mqtt import RECEIVE_MAXIMUM

    assert seen["props"].ReceiveMaximum == RECEIVE_MAXIMUM == 3500  # type: ignore[attr-defined]


def test_mosquitto_conf_accepts_mqtt5_qos1_shared_subscriptions(
    deployed_mosquitto: PrivateMosquitto, unique_name: str
) -> None:
    url = deployed_mosquitto.url
    with (
        MqttClient(url, f"{unique_name}-a") as a,
        MqttClient(url, f"{unique_name}-b") as b,
        MqttClient(url, f"{unique_name}-pub") as publisher,
    ):
        for consumer in (a, b):
            consumer.subscribe(f"{unique_name}/#", shared_group="ingest")
        time.sleep(0.2)
        assert publisher.publish_many((f"{unique_name}/s/{i}", str(i)) for i in range(40)) == 40
        got = _drain([a, b], 40)
    assert sorted(int(m.payload) for m in got[0] + got[1]) == list(range(40))
    assert got[0] and got[1], "a shared subscription must split messages between members"
    assert all(m.qos == 1 for m in got[0] + got[1])


def test_mosquitto_conf_keeps_sessions_across_restart(tmp_path: Path, unique_name: str) -> None:
    broker = PrivateMosquitto(tmp_path, MOSQUITTO_CONF.read_text(encoding="utf-8")).start()
    try:
        consumer = MqttClient(broker.url, f"{unique_name}-c", persistent_session=True).start()
        consumer.subscribe(f"{unique_name}/x")
        time.sleep(0.2)
        consumer.stop()
        with MqttClient(broker.url, f"{unique_name}-p") as publisher:
            publisher.publish(f"{unique_name}/x", b"queued while away").wait_for_publish(5)
        broker.stop()
        broker.start()
        # No subscribe call: the session (subscription + queued message) came from disk.
        consumer = MqttClient(broker.url, f"{unique_name}-c", persistent_session=True).start()
        message = consumer.get(timeout=5)
        assert message is not None and message.payload == b"queued while away"
        assert consumer.ack(message)
        consumer.stop()
    finally:
        broker.stop()


def _drain(clients: list[MqttClient], total: int, timeout: float = 10.0) -> list[list]:
    got: list[list] = [[] for _ in clients]
    deadline = time.monotonic() + timeout
    while sum(map(len, got)) < total and time.monotonic() < deadline:
        for index, client in enumerate(clients):
            batch = client.get_batch(100, timeout=0.05)
            client.ack_many(batch)
            got[index].extend(batch)
    return got


# --- compose stack and image ------------------------------------------------------------


def _load_compose() -> dict:
    import yaml  # a test dependency: the compose file must always be checked

    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_services_and_commands() -> None:
    compose = _load_compose()
    services = compose["services"]
    assert {"postgis", "redis", "mosquitto", "migrate", "ingest-1", "ingest-2", "web"} <= set(services)
    assert services["postgis"]["image"].startswith("postgis/postgis:15-3.4")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert any("mosquitto.conf" in str(v) for v in services["mosquitto"]["volumes"])
    worker_ids = set()
    for name in ("ingest-1", "ingest-2"):
        assert _command(services[name]) == ["cityops", "ingest"]
        worker_ids.add(services[name]["environment"]["CITYOPS_WORKER_ID"])
        assert services[name]["environment"]["CITYOPS_MQTT_URL"] == "mqtt://mosquitto:1883"
    assert len(worker_ids) == 2, "each worker keeps a broker session of its own"
    web = _command(services["web"])
    assert web[0] == "gunicorn" and web[-1] == "app:server"
    config = web[web.index("-c") + 1]
    # Threaded workers: every open page holds one server-push stream.
    gunicorn = runpy.run_path(str(DEPLOY.parent / config))
    assert gunicorn["bind"] == "0.0.0.0:8050" and gunicorn["worker_class"] == "gthread"
    assert gunicorn["workers"] >= 2 and gunicorn["threads"] >= 16
    assert "db upgrade" in " ".join(_command(services["migrate"]))
    for name in ("postgis", "redis", "mosquitto", "web"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


def test_compose_sets_only_known_cityops_variables() -> None:
    compose = _load_compose()
    used: set[str] = set()
    for service in compose["services"].values():
        environment = service.get("environment", {})
        names = environment if isinstance(environment, dict) else [e.split("=", 1)[0] for e in environment]
        used |= {n for n in names if n.startswith("CITYOPS_")}
    for anchor in compose.get("x-cityops-env", {}) or {}:
        used.add(anchor)
    assert {"CITYOPS_MQTT_URL", "CITYOPS_REDIS_URL", "CITYOPS_DATABASE_URL"} <= used
    unknown = used - set(VARIABLES)
    assert not unknown, f"compose sets variables cityops does not know: {sorted(unknown)}"


def test_compose_text_mentions_only_known_cityops_variables() -> None:
    # Without PyYAML the structural tests skip; this one still catches a typo'd variable.
    names = set(re.findall(r"\bCITYOPS_[A-Z0-9_]+", COMPOSE.read_text(encoding="utf-8")))
    assert names and names <= set(VARIABLES), sorted(names - set(VARIABLES))
    assert "\t" not in COMPOSE.read_text(encoding="utf-8"), "YAML must be indented with spaces"


def test_dockerfile_installs_the_package() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"(?m)^FROM python:3\.11-slim", text)
    assert re.search(r"pip install[^\n]*\s\.(\s|$)", text)


def _command(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(c) for c in command]
