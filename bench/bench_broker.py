"""Measure QoS 1 throughput of the embedded broker against Mosquitto (not a test).

    python bench/bench_broker.py [-n 20000] [--size 200] [--mosquitto mqtt://127.0.0.1:1883]

One paho publisher sends N QoS 1 messages as fast as its in-flight window allows, and a
bare paho subscriber (QoS 1, automatic acks, no cityops code) counts them. The rate is
messages received per second, from the first publish to the last receipt (or to the
60 s timeout when messages were lost: then fewer than N are reported as received).

Three brokers: the embedded one, a private mosquitto running deploy/mosquitto.conf, and
the broker at --mosquitto (on a development machine, Mosquitto with its default
config: 20 in flight and 1000 queued per client, which drops QoS 1 messages under load).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.broker import EmbeddedBroker, free_port, port_is_free
from ingest.mqtt import connect_args

# paho's outgoing window; brokers that announce a smaller Receive Maximum (Mosquitto's
# default is 20) lower it when connected.
INFLIGHT = 1000


def broker_receive_maximum(host: str, port: int) -> int:
    """The Receive Maximum a broker announces in CONNACK (65535 when it announces none)."""
    announced: list[int] = []
    probe = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
    )
    probe.on_connect = lambda c, u, f, rc, p: announced.append(getattr(p, "ReceiveMaximum", 65535))
    probe.connect(host, port)
    deadline = time.monotonic() + 5
    while not announced and time.monotonic() < deadline:
        probe.loop(0.1)
    probe.disconnect()
    probe.loop(0.1)
    return announced[0] if announced else 65535


def run(url: str, count: int, size: int) -> tuple[float, int]:
    """(messages per second, messages received) for one broker."""
    args = connect_args(url)
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    topic = f"bench/{run_id}"
    done = threading.Event()
    received = 0
    last = 0.0

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        nonlocal received, last
        received += 1
        if received == count:
            last = time.perf_counter()
            done.set()

    subscriber = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{run_id}-sub", protocol=paho.MQTTv5)
    subscriber.on_message = on_message
    subscribed = threading.Event()
    subscriber.on_subscribe = lambda *a: subscribed.set()
    subscriber.connect(args.host, args.port)
    subscriber.loop_start()
    subscriber.subscribe(topic, qos=1)
    subscribed.wait(5)

    publisher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{run_id}-pub", protocol=paho.MQTTv5)
    # paho fixes its window before connecting; exceeding the broker's limit is an error.
    publisher.max_inflight_messages_set(min(INFLIGHT, broker_receive_maximum(args.host, args.port)))
    publisher.connect(args.host, args.port)
    publisher.loop_start()

    payload = b"x" * size
    started = time.perf_counter()
    infos = [publisher.publish(topic, payload, qos=1) for _ in range(count)]
    finished = done.wait(60)
    for info in infos[-10:]:
        info.wait_for_publish(10)
    publisher.disconnect()
    publisher.loop_stop()
    subscriber.disconnect()
    subscriber.loop_stop()
    elapsed = (last if finished else time.perf_counter()) - started
    return received / elapsed, received


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--count", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=200, help="payload bytes (a sensor reading is ~200)")
    parser.add_argument("--mosquitto", default="mqtt://127.0.0.1:1883")
    options = parser.parse_args()

    print(f"{options.count} QoS 1 messages of {options.size} bytes, one publisher, one subscriber")
    with EmbeddedBroker(free_port()) as broker:
        embedded, got_embedded = run(broker.url, options.count, options.size)
    print(f"embedded (rumqttd) {broker.url}: {embedded:>9,.0f} msgs/s  ({got_embedded} received)")
    deployed = deployed_mosquitto_rate(options.count, options.size)
    if deployed is not None:
        print(
            f"mosquitto with deploy/mosquitto.conf (private): {deployed[0]:>9,.0f} msgs/s  "
            f"({deployed[1]} received)"
        )
    try:
        mosquitto, got_mosquitto = run(options.mosquitto, options.count, options.size)
    except OSError as exc:
        print(f"mosquitto {options.mosquitto}: unavailable ({exc})")
        return
    window = broker_receive_maximum(*_host_port(options.mosquitto))
    print(
        f"mosquitto {options.mosquitto}: {mosquitto:>9,.0f} msgs/s  ({got_mosquitto} received; "
        f"its Receive Maximum, so the publisher's window: {window})"
    )
    if deployed is not None:
        print(f"ratio embedded / mosquitto (deploy config): {embedded / deployed[0]:.2f}")
    print(f"ratio embedded / mosquitto ({options.mosquitto}): {embedded / mosquitto:.2f}")


def deployed_mosquitto_rate(count: int, size: int) -> tuple[float, int] | None:
    """Run a private mosquitto with the production config on a free port, if installed."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if binary is None:
        return None
    conf = (Path(__file__).resolve().parents[1] / "deploy" / "mosquitto.conf").read_text()
    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        conf = re.sub(r"(?m)^listener\s+1883$", f"listener {port} 127.0.0.1", conf)
        conf = re.sub(r"(?m)^persistence_location .*$", f"persistence_location {workdir}/", conf)
        conf = re.sub(r"(?m)^log_type (information|notice)$", "", conf)
        if os.geteuid() == 0:
            conf += "\nuser root\n"
        path = Path(workdir) / "mosquitto.conf"
        path.write_text(conf)
        process = subprocess.Popen(
            [binary, "-c", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 5
            while port_is_free(port) and time.monotonic() < deadline:
                time.sleep(0.02)
            return run(f"mqtt://127.0.0.1:{port}", count, size)
        finally:
            process.terminate()
            process.wait(10)


def _host_port(url: str) -> tuple[str, int]:
    args = connect_args(url)
    return args.host, args.port


if __name__ == "__main__":
    main()
