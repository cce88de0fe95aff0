"""deploy/mosquitto-acl.conf on a real Mosquitto with passwords: a device publishes only its
own topics, ingest reads (through its shared subscription) and publishes nothing, and an
anonymous client is turned away."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from ingest.mqtt import MqttClient, MqttUnavailable
from tests.services import MOSQUITTO_CONF, PrivateMosquitto

ACL = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto-acl.conf"
SECRET = "a-long-test-password"


@pytest.fixture
def locked_broker(tmp_path: Path):
    passwd = tmp_path / "passwd"
    for i, user in enumerate(("ingest", "air-001", "air-002", "hotline12345")):
        flags = ["-c"] if i == 0 else []
        subprocess.run(["mosquitto_passwd", "-b", *flags, str(passwd), user, SECRET], check=True)
    conf = MOSQUITTO_CONF.read_text(encoding="utf-8").replace("allow_anonymous true", "allow_anonymous false")
    conf += f"\npassword_file {passwd}\nacl_file {ACL}\n"
    broker = PrivateMosquitto(tmp_path, conf).start()
    yield broker
    broker.stop()


def url(broker: PrivateMosquitto, user: str) -> str:
    return f"mqtt://{user}:{SECRET}@127.0.0.1:{broker.port}"


def test_devices_publish_only_their_own_topics(locked_broker: PrivateMosquitto) -> None:
    with (
        MqttClient(url(locked_broker, "ingest"), "ingest-acl") as ingest,
        MqttClient(url(locked_broker, "air-001"), "air-001") as device,
        MqttClient(url(locked_broker, "hotline12345"), "hotline") as hotline,
    ):
        ingest.subscribe("cityops/v1/#", shared_group="ingest")
        time.sleep(0.3)
        device.publish("cityops/v1/sensors/air-001/obs", b'{"own": true}', qos=1)
        device.publish("cityops/v1/sensors/air-002/obs", b'{"forged": true}', qos=1)
        device.publish("cityops/v1/hotline/tickets", b'{"forged": true}', qos=1)
        hotline.publish("cityops/v1/hotline/tickets", b'{"ticket": true}', qos=1)
        # Ingest itself may not publish (a compromised worker cannot inject readings).
        ingest.publish("cityops/v1/sensors/air-002/obs", b'{"from_ingest": true}', qos=1)
        got = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            message = ingest.get(timeout=0.2)
            if message is not None:
                got.append((message.topic, bytes(message.payload)))
    assert sorted(got) == [
        ("cityops/v1/hotline/tickets", b'{"ticket": true}'),
        ("cityops/v1/sensors/air-001/obs", b'{"own": true}'),
    ]


def test_anonymous_and_wrong_passwords_are_refused(locked_broker: PrivateMosquitto) -> None:
    for bad in (
        f"mqtt://127.0.0.1:{locked_broker.port}",
        f"mqtt://air-001:wrong@127.0.0.1:{locked_broker.port}",
    ):
        with pytest.raises(MqttUnavailable):
            MqttClient(bad, "intruder").start()
