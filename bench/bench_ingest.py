"""Benchmark ingest end to end on the real services, against the bare MQTT ceiling.

    python bench/bench_ingest.py [--messages N] [--publishers P] [--batch B]

Everything runs on 127.0.0.1 and is cleaned up at the end:

* a private Mosquitto configured by ``deploy/mosquitto.conf`` (port and persistence
  folder changed), never the shared broker on 1883;
* a fresh PostGIS database, created, migrated to head and dropped afterwards;
* Redis database 14 (flushed before every phase and at the end).

``D`` sensors of the simulated city (an ordinary day, so the readings are realistic)
register with retained meta messages. ``P`` publisher connections send the ``N`` readings
at QoS 1 (MQTT 3.1.1 PUBLISH packets encoded before the clock starts and written in large
chunks, so publishing costs almost no CPU, as ``mosquitto_pub -l`` would; one topic per
device, device ``i`` on connection ``i % P``). Timestamps are spread over the minute before
each phase: every device reports every few seconds, as a live feed does. The phases, all
in one run:

1. **bare** — one paho-mqtt subscriber (MQTT 5, QoS 1, paho's automatic PUBACK, the same
   Receive Maximum as cityops) counts the messages and does nothing else: the ceiling of a
   Python consumer on this machine while the publishers run.
   **MqttClient only** — the same through cityops' own client (buffered reads, batches,
   one write of PUBACKs per batch): how much the receive path alone gains; not the ceiling.
2. **1 worker** — an :class:`ingest.worker.IngestWorker` in its own process with the real
   URLs. Rate = N / (first publish → the live counters in Redis reach N; Redis is written
   after the database commit). Afterwards the rows in ``observations`` (all, distinct
   (device_id, ts), distinct msg_id), dead letters and Redis last-seen are counted.
3. **2 workers** — the same with two worker processes sharing the subscription.
4. **latency** — one worker, publishers paced at a fixed rate (default 5,000 msgs/s); each
   reading's ``ts`` is its publish time, and a reader of ``cityops:stream:observations``
   takes the Redis entry id (server time of the XADD) as its arrival: p50/p99 of
   arrival − publish, in milliseconds.
5. **memory and CPU** — the largest RSS of a whole worker (its process and its processing
   processes) and of its largest process, and the CPU time all of them used per message
   (sampled from /proc; CPU per message does not depend on what else the machine runs).

Workers use ``CITYOPS_INGEST_PROCESSES``' default (0: everything in the worker process)
unless ``--processes N`` says otherwise.

Loss = published − stored rows; duplicates = stored rows − distinct (device_id, ts), and
the workers' own duplicate counter (redeliveries they recognised) is shown beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

# Runnable as a plain script from the repository root or from bench/.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paho.mqtt.client as paho
import redis
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.broker import free_port, port_is_free
from ingest.mqtt import RECEIVE_MAXIMUM
from ingest.routing import TopicRouter
from ingest.simulator import CitySimulator, SimDevice
from models.db import upgrade_database
from models.live import LIVE_MARK_KEY

SEED = 20261125
PREFIX = "cityops/v1"
ADMIN_DATABASE_URL = os.environ.get(
    "CITYOPS_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("CITYOPS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
MOSQUITTO_CONF = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto.conf"

#: Defaults sized for a full run of a few minutes on 2 cores even with a slow ingest.
DEFAULT_MESSAGES = 60_000
DEFAULT_PUBLISHERS = 20
LATENCY_RATE = 5_000
LATENCY_SECONDS = 10.0
#: Sensors in the feed: a city-sized registry, so each device reports every few seconds.
DEFAULT_DEVICES = 1_000
#: Give up on a phase when no new message is counted for this long after publishing ended.
STALL_SECONDS = 20.0
#: How often progress (Redis counters, subscriber count, worker RSS) is sampled.
POLL_SECONDS = 0.05
#: Readings of a device are spread over at most this span before the moment they are written
#: (just before their phase): recent, as live readings are, so that rules judging freshness
#: (device offline) see devices that report, as they would in production.
TS_SPAN = timedelta(minutes=1)


# ---- services ----------------------------------------------------------------------------


class BenchMosquitto:
    """Mosquitto with ``deploy/mosquitto.conf`` on a free loopback port in a temporary folder."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        data = workdir / "data"
        data.mkdir(parents=True)
        lines = []
        for line in MOSQUITTO_CONF.read_text(encoding="utf-8").splitlines():
            key = line.split(maxsplit=1)[0] if line.strip() and not line.startswith("#") else ""
            if key in ("listener", "persistence_location", "log_dest", "log_type", "connection_messages"):
                continue  # replaced below; per-connection log lines would cost broker CPU
            lines.append(line)
        lines += [f"listener {self.port} 127.0.0.1", f"persistence_location {data}/", "log_dest stderr"]
        lines += ["log_type error", "log_type warning"]
        if os.geteuid() == 0:
            lines.append("user root")  # else mosquitto drops to a user that cannot write here
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.log = workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
        if binary is None:
            raise SystemExit("mosquitto is not installed")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while port_is_free(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mosquitto did not start: {self.log.read_text(errors='replace')}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def create_database() -> tuple[str, str]:
    """A fresh database migrated to head; returns (its URL, its name)."""
    name = "cityops_bench_" + uuid.uuid4().hex[:8]
    admin = sa.create_engine(ADMIN_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    url = sa.engine.make_url(ADMIN_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    return url, name


def drop_database(name: str) -> None:
    admin = sa.create_engine(ADMIN_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a worker and its processing processes)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as children:
                    todo += [int(c) for c in children.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sample_workers(pids: Sequence[int], phase: PhaseResult) -> None:
    """Memory (whole worker, largest process) and CPU time of the workers' process trees."""
    cpu: dict[int, float] = {}
    for pid in pids:
        tree = process_tree(pid)
        sizes = [rss_kb(p) for p in tree]
        phase.max_rss_kb = max(phase.max_rss_kb, sum(sizes))
        phase.max_process_rss_kb = max(phase.max_process_rss_kb, max(sizes, default=0))
        for p in tree:
            cpu[p] = cpu_seconds(p)
    # CPU time only grows; a process that exited keeps its last sample.
    for p, seconds in cpu.items():
        phase.cpu_by_pid[p] = max(phase.cpu_by_pid.get(p, 0.0), seconds)


# ---- child processes ---------------------------------------------------------------------


def worker_process(
    mqtt_url: str,
    database_url: str,
    redis_url: str,
    client_id: str,
    batch_max: int | None,
    rules: bool,
    processes: int | None,
    devices: int,
    ready: MpEvent,
    settled: MpEvent,
    stop: MpEvent,
    results: Any,
) -> None:
    """One cityops ingest worker, as ``cityops ingest`` runs it, until ``stop`` is set.

    ``settled`` is set once the worker has stored the retained meta messages of all
    ``devices`` (the broker sends them when it subscribes)."""
    logging.basicConfig(level=logging.WARNING, format=f"{client_id}: %(levelname)s %(message)s")
    from ingest import worker as worker_module
    from models.config import Settings, parse_mqtt_url

    if batch_max is not None:
        # A module constant read on every loop: setting it here tunes this process only.
        worker_module.BATCH_MAX = batch_max
    settings = Settings(
        mqtt=parse_mqtt_url(mqtt_url), redis_url=redis_url, database_url=database_url, worker_id=client_id
    )
    if processes is not None:
        settings = replace(settings, ingest_processes=processes)
    # Without rules: the ingest path alone, no rule evaluation per batch, no periodic tick.
    worker = worker_module.IngestWorker.from_settings(settings, client_id=client_id, rules=rules)
    worker_module.settle_heap()  # as `cityops ingest` does
    halt = threading.Event()
    thread = threading.Thread(target=worker.run, args=(halt,), name="ingest", daemon=True)
    thread.start()
    if worker.ready.wait(30):
        ready.set()
    while not stop.is_set() and not settled.is_set():
        if worker.totals.stored.get("devices", 0) >= devices:
            settled.set()
        time.sleep(0.02)
    stop.wait()
    halt.set()
    thread.join(30)
    results.put(
        {
            "client_id": client_id,
            "stored": dict(worker.totals.stored),
            "duplicates": dict(worker.totals.duplicates),
            "received": worker.client.stats().received,
            "stage_busy": stage_busy_seconds(),
            "batches": batch_figures(),
        }
    )


def stage_busy_seconds() -> dict[str, float]:
    """This process's ``cityops_ingest_stage_busy_seconds`` by stage (see ingest.metrics)."""
    from prometheus_client import REGISTRY

    return {
        sample.labels["stage"]: sample.value
        for metric in REGISTRY.collect()
        if metric.name == "cityops_ingest_stage_busy_seconds"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def batch_figures() -> dict[str, float]:
    """This process's batches: how many, their messages, and the store stage's parts and seconds."""
    from prometheus_client import REGISTRY

    wanted = {
        "cityops_ingest_batch_size_count": "batches",
        "cityops_ingest_batch_size_sum": "messages",
        "cityops_ingest_store_seconds_count": "store_parts",
        "cityops_ingest_store_seconds_sum": "store_seconds",
    }
    return {
        wanted[sample.name]: sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name in wanted
    }


def bare_subscriber(mqtt_url: str, expected: int, ready: MpEvent, stop: MpEvent, results: Any) -> None:
    """Receive QoS 1 messages and only count them (paho acknowledges each automatically)."""
    port = int(mqtt_url.rsplit(":", 1)[1])
    state = {"count": 0, "first": 0.0, "last": 0.0}
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_client: paho.Client, _userdata: Any, _msg: paho.MQTTMessage) -> None:
        now = time.time()
        if state["count"] == 0:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        if state["count"] >= expected:
            done.set()

    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{os.getpid()}", protocol=paho.MQTTv5
    )
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = RECEIVE_MAXIMUM  # the same flow-control window as a cityops worker
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    client.subscribe(f"{PREFIX}/sensors/+/obs", qos=1)
    if subscribed.wait(10):
        ready.set()
    while not done.is_set() and not stop.is_set():
        done.wait(0.1)
    client.disconnect()
    client.loop_stop()
    results.put(dict(state))


def tuned_subscriber(mqtt_url: str, expected: int, ready: MpEvent, stop: MpEvent, results: Any) -> None:
    """The same, through cityops' own MqttClient: buffered reads, batches, one write of PUBACKs.

    Shown beside the bare line so the report says how much of the gap the receive path
    alone closes; the ratios stay against the plain paho subscriber.
    """
    from ingest.mqtt import MqttClient
    from ingest.worker import BATCH_MAX

    state = {"count": 0, "first": 0.0, "last": 0.0}
    client = MqttClient(mqtt_url, f"bench-tuned-{os.getpid()}").start()
    client.subscribe(f"{PREFIX}/sensors/+/obs", qos=1)
    time.sleep(0.5)  # SUBACK: MqttClient subscribes without waiting for it
    ready.set()
    while state["count"] < expected and not stop.is_set():
        batch = client.get_batch(BATCH_MAX, timeout=0.1)
        if not batch:
            continue
        now = time.time()
        if state["count"] == 0:
            state["first"] = now
        client.ack_many(batch)
        state["count"] += len(batch)
        state["last"] = now
    client.stop()
    results.put(dict(state))


# ---- payloads ----------------------------------------------------------------------------


def make_simulator(seed: int) -> CitySimulator:
    """The city simulator on an ordinary day: realistic readings, so rules rarely fire."""
    return CitySimulator(seed=seed, prefix=PREFIX, scenario="normal")


def pick_devices(sim: CitySimulator, n: int) -> list[SimDevice]:
    """``n`` sensors: the simulated city's, repeated under new ids when more are asked for.

    Types are taken in turn, so every type and its derived indices are ingested.
    """
    by_type: dict[str, list[SimDevice]] = {}
    for d in sim.devices:
        if d.type != "camera":
            by_type.setdefault(d.type, []).append(d)
    sensors = [d for group in zip(*(by_type[t] * 50 for t in sorted(by_type)), strict=False) for d in group]
    return [replace(d, device_id=f"bench-{i:05d}", name=f"bench {i}") for i, d in enumerate(sensors[:n])]


def meta_payload(d: SimDevice) -> str:
    return json.dumps({"type": d.type, "lon": d.lon, "lat": d.lat, "name": d.name, "props": d.props})


def reading(sim: CitySimulator, device: SimDevice, ts: datetime, msg_id: str) -> bytes:
    return json.dumps(
        {"ts": ts.isoformat(timespec="microseconds"), "metrics": sim.reading(device, ts), "msg_id": msg_id},
        separators=(",", ":"),
    ).encode()


# ---- a fast QoS 1 publisher ----------------------------------------------------------------
#
# mosquitto_pub publishes to one topic per process, and a realistic feed needs many devices
# (rules keep per-device windows; thousands of readings a second from 20 devices would be a
# load no city produces). So the publishers speak MQTT 3.1.1 over a plain socket with
# pre-encoded PUBLISH packets: sending costs a few sendall() calls, leaving the CPU to the
# broker and the consumers, as mosquitto_pub does.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + packet_id.to_bytes(2, "big") + payload
    return b"\x32" + _varint(len(body)) + body  # PUBLISH, QoS 1


class FastPublisher:
    """One MQTT 3.1.1 connection sending QoS 1 PUBLISH packets and counting the PUBACKs."""

    #: Unacknowledged publishes allowed before sending waits: far below the 65,535 packet
    #: ids, and enough to keep the broker busy across a scheduling hiccup.
    WINDOW = 5_000

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ident = client_id.encode()
        variable = b"\x00\x04MQTT\x04\x02\x00\x3c"  # protocol 3.1.1, clean session, keepalive 60
        body = variable + len(ident).to_bytes(2, "big") + ident
        self.sock.sendall(b"\x10" + _varint(len(body)) + body)
        connack = self.sock.recv(4)
        if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
            raise SystemExit(f"publisher {client_id} was refused: {connack!r}")
        self.sent = 0
        self.acked = 0
        self._acks = threading.Condition()
        self._reader = threading.Thread(target=self._read_acks, daemon=True)
        self._reader.start()

    def _read_acks(self) -> None:
        pending = 0
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            # Only PUBACKs (4 bytes each) come back to a publisher that subscribes to nothing.
            pending += len(data)
            with self._acks:
                self.acked += pending // 4
                pending %= 4
                self._acks.notify_all()

    def send(self, packets: Sequence[bytes]) -> None:
        with self._acks:
            while self.sent - self.acked > self.WINDOW:
                self._acks.wait(1)
        self.sock.sendall(b"".join(packets))
        self.sent += len(packets)

    def wait_acked(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._acks:
            while self.acked < self.sent:
                if not self._acks.wait(max(0.0, deadline - time.monotonic())):
                    return False
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
            self.sock.close()


@dataclass(slots=True)
class Feed:
    """Pre-encoded messages: one list of packets per publisher, each in time order."""

    packets: list[list[bytes]]

    @property
    def total(self) -> int:
        return sum(len(p) for p in self.packets)


def make_feed(
    sim: CitySimulator,
    router: TopicRouter,
    devices: Sequence[SimDevice],
    total: int,
    publishers: int,
    tag: str,
) -> Feed:
    """``total`` readings: every device in turn, spread over TS_SPAN up to now, each with a msg_id.

    Device ``i`` is published by publisher ``i % publishers``, so one device's readings keep
    their order (as one device's connection would).
    """
    rounds = -(-total // len(devices))
    step = TS_SPAN / rounds
    start = datetime.now(UTC) - TS_SPAN
    packets: list[list[bytes]] = [[] for _ in range(publishers)]
    n = 0
    for k in range(rounds):
        ts = start + k * step
        for i, d in enumerate(devices):
            if n == total:
                break
            lane = packets[i % publishers]
            payload = reading(sim, d, ts, f"{tag}-{d.device_id}-{k}")
            lane.append(publish_packet(router.sensor_obs(d.device_id), payload, len(lane) % 65535 + 1))
            n += 1
    return Feed(packets)


#: Packets per sendall(): large enough that sending costs almost nothing per message.
SEND_CHUNK = 500


def publish_feed(port: int, feed: Feed, tag: str) -> list[threading.Thread]:
    """Start one thread per publisher connection sending its packets as fast as acks allow."""

    def run(lane: list[bytes], name: str) -> None:
        publisher = FastPublisher(port, name)
        for i in range(0, len(lane), SEND_CHUNK):
            publisher.send(lane[i : i + SEND_CHUNK])
        publisher.wait_acked(120)
        publisher.close()

    threads = [
        threading.Thread(target=run, args=(lane, f"bench-pub-{tag}-{i}"), daemon=True)
        for i, lane in enumerate(feed.packets)
    ]
    for t in threads:
        t.start()
    return threads


# ---- one run -----------------------------------------------------------------------------


@dataclass(slots=True)
class PhaseResult:
    name: str
    published: int
    seconds: float = 0.0
    stored: int = 0
    distinct: int = 0
    distinct_msg_id: int = 0
    dead_letters: int = 0
    live_count: int = 0
    last_seen: int = 0
    worker_duplicates: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_samples: int = 0
    #: (second of the phase, readings, p50 ms, p99 ms, max ms) by arrival second
    latency_by_second: list[tuple[int, int, float, float, float]] = field(default_factory=list)
    #: the largest RSS of a whole worker (its process and its processing processes)
    max_rss_kb: int = 0
    #: the largest RSS of any one process of a worker
    max_process_rss_kb: int = 0
    #: CPU seconds used by every process of the workers (last sample)
    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    #: the same once the workers were ready: start-up (imports, connecting) is not counted
    cpu_at_start: dict[int, float] = field(default_factory=dict)
    #: seconds each stage of the workers was busy, summed over the workers
    stage_busy: dict[str, float] = field(default_factory=dict)
    #: batches, their messages, store parts and their seconds, summed over the workers
    batches: dict[str, float] = field(default_factory=dict)
    workers: int = 0
    #: which repetition of the phases this is (``--rounds``)
    round: int = 1
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name if self.round == 1 else f"{self.name} #{self.round}"

    @property
    def receive_only(self) -> bool:
        """A subscriber that only receives (no rows to count)."""
        return self.name in ("bare subscriber", "cityops MqttClient only")

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_message(self) -> float | None:
        if not self.cpu_by_pid or not self.published:
            return None
        used = sum(v - self.cpu_at_start.get(p, 0.0) for p, v in self.cpu_by_pid.items())
        return used / self.published * 1e6

    @property
    def loss(self) -> int:
        return self.published - self.stored

    @property
    def duplicates(self) -> int:
        return self.stored - self.distinct


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.ctx = mp.get_context("spawn")
        self.router = TopicRouter(PREFIX)
        self.broker = BenchMosquitto(workdir)
        self.redis = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        self.sim = make_simulator(args.seed)
        self.devices = pick_devices(self.sim, args.devices)
        self.database_url = ""
        self.database_name = ""
        self.engine: sa.Engine | None = None

    # ---- set-up ------------------------------------------------------------------------

    def setup(self) -> None:
        self.broker.start()
        self.database_url, self.database_name = create_database()
        self.engine = sa.create_engine(self.database_url)
        self.redis.flushdb()
        # Retained meta: every worker (a new subscriber each phase) learns the devices.
        publisher = FastPublisher(self.broker.port, "bench-meta")
        publisher.send(
            [
                b"\x33"
                + publish_packet(self.router.sensor_meta(d.device_id), meta_payload(d).encode(), i + 1)[1:]
                for i, d in enumerate(self.devices)
            ]
        )
        if not publisher.wait_acked(30):
            raise SystemExit("the broker did not acknowledge the device metadata")
        publisher.close()

    def teardown(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        self.broker.stop()
        if self.database_name:
            drop_database(self.database_name)
        self.redis.flushdb()

    def reset(self) -> None:
        """Empty the history tables and the live state between phases (devices stay)."""
        assert self.engine is not None
        with self.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE observations, observation_hourly, dead_letters")
        self.redis.flushdb()

    # ---- helpers -----------------------------------------------------------------------

    def live_count(self) -> int:
        keys = self.redis.keys("cityops:counter:observations:*")
        return sum(int(self.redis.hget(k, "all") or 0) for k in keys)

    def start_workers(self, n: int, tag: str) -> tuple[list[Any], list[str], MpEvent, Any]:
        stop = self.ctx.Event()
        results = self.ctx.Queue()
        processes = []
        readies = []
        settles = []
        client_ids = [f"bench-{tag}-{i}" for i in range(n)]
        for i in range(n):
            ready = self.ctx.Event()
            settled = self.ctx.Event()
            process = self.ctx.Process(
                target=worker_process,
                args=(
                    self.broker.url,
                    self.database_url,
                    REDIS_URL,
                    client_ids[i],
                    self.args.batch,
                    self.args.rules,
                    self.args.processes,
                    len(self.devices),
                    ready,
                    settled,
                    stop,
                    results,
                ),
                # Not a daemon: a worker starts processing processes of its own. It stops
                # with ``stop``, and stop_workers kills one that does not.
                daemon=False,
            )
            process.start()
            processes.append(process)
            readies.append(ready)
            settles.append(settled)
        for ready in readies:
            if not ready.wait(60):
                raise SystemExit("an ingest worker did not start")
        # Wait until every worker has stored the retained metas the broker sent it on
        # subscribing (a batch of 500 takes a few hundred ms): readings published meanwhile
        # would wait behind them, a start-up artefact, not ingest speed. The live state's
        # device keys do not tell: the rebuild before subscribing already wrote them.
        deadline = time.monotonic() + 30
        for settled in settles:
            if not settled.wait(max(0.0, deadline - time.monotonic())):
                raise SystemExit("a worker did not store the device metadata")
        # Each phase starts on a flushed Redis, so each worker first rebuilds the live state
        # from the database (about 0.5 s with this fill, before it subscribes: every worker
        # is ready only after its own). A worker in service does that only after Redis lost
        # its data: the phase starts once it is done.
        while not self.redis.exists(LIVE_MARK_KEY):
            if time.monotonic() > deadline:
                raise SystemExit("the workers did not rebuild the live state")
            time.sleep(0.05)
        return processes, client_ids, stop, results

    def stop_workers(
        self, processes: list[Any], client_ids: list[str], stop: MpEvent, results: Any, phase: PhaseResult
    ) -> None:
        stop.set()
        for _ in processes:
            try:
                totals = results.get(timeout=60)
            except Exception:
                phase.notes.append("a worker did not report its totals")
                continue
            phase.worker_duplicates += sum(totals["duplicates"].values())
            phase.workers += 1
            for stage, seconds in totals.get("stage_busy", {}).items():
                phase.stage_busy[stage] = phase.stage_busy.get(stage, 0.0) + seconds
            for name, value in totals.get("batches", {}).items():
                phase.batches[name] = phase.batches.get(name, 0.0) + value
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
        for client_id in client_ids:
            self.end_session(client_id)

    def end_session(self, client_id: str) -> None:
        """Remove a stopped worker's persistent session from the broker.

        Otherwise its shared subscription outlives the phase, and the broker would keep
        queueing a share of the next phase's messages for a worker that never returns.
        """
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        client.connect("127.0.0.1", self.broker.port, clean_start=True, properties=props)
        client.loop_start()
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        client.disconnect()
        client.loop_stop()

    def count_rows(self, phase: PhaseResult) -> None:
        assert self.engine is not None
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT (device_id, ts)), count(DISTINCT msg_id)"
                    " FROM observations"
                )
            ).one()
            phase.stored, phase.distinct, phase.distinct_msg_id = row
            phase.dead_letters = conn.execute(sa.text("SELECT count(*) FROM dead_letters")).scalar_one()
        phase.live_count = self.live_count()
        phase.last_seen = int(self.redis.zcard("cityops:devices:last_seen"))

    def wait_for(
        self, published: int, publishers: Sequence[threading.Thread], pids: list[int], phase: PhaseResult
    ) -> float:
        """Poll the live counters until they reach ``published`` or stall; the time they got there."""
        last_value, last_change = -1, time.monotonic()
        while True:
            value = self.live_count()
            now = time.monotonic()
            sample_workers(pids, phase)
            if value >= published:
                return time.time()
            if value != last_value:
                last_value, last_change = value, now
            elif not any(t.is_alive() for t in publishers) and now - last_change > STALL_SECONDS:
                phase.notes.append(f"stalled at {value} of {published}")
                return time.time() - STALL_SECONDS
            time.sleep(POLL_SECONDS)

    # ---- phases ------------------------------------------------------------------------

    def feed(self, tag: str) -> Feed:
        return make_feed(self.sim, self.router, self.devices, self.args.messages, self.args.publishers, tag)

    def bare(self, feed: Feed, tuned: bool = False) -> PhaseResult:
        phase = PhaseResult("cityops MqttClient only" if tuned else "bare subscriber", feed.total)
        ready, stop, results = self.ctx.Event(), self.ctx.Event(), self.ctx.Queue()
        process = self.ctx.Process(
            target=tuned_subscriber if tuned else bare_subscriber,
            args=(self.broker.url, feed.total, ready, stop, results),
            daemon=True,
        )
        process.start()
        if not ready.wait(30):
            raise SystemExit("the bare subscriber did not subscribe")
        started = time.time()
        publishers = publish_feed(self.broker.port, feed, "bare")
        try:
            state = results.get(timeout=feed.total / 1000 + 60)
        except queue.Empty:
            stop.set()
            state = results.get(timeout=10)
            phase.notes.append("bare subscriber timed out")
        for t in publishers:
            t.join(30)
        process.join(10)
        phase.stored = phase.distinct = state["count"]
        phase.seconds = state["last"] - started
        return phase

    def ingest(self, feed: Feed, workers: int) -> PhaseResult:
        self.reset()
        phase = PhaseResult(f"cityops, {workers} worker{'s' if workers > 1 else ''}", feed.total)
        processes, client_ids, stop, results = self.start_workers(workers, f"w{workers}")
        sample_workers([p.pid for p in processes], phase)
        phase.cpu_at_start = dict(phase.cpu_by_pid)
        started = time.time()
        publishers = publish_feed(self.broker.port, feed, f"w{workers}")
        finished = self.wait_for(feed.total, publishers, [p.pid for p in processes], phase)
        phase.seconds = finished - started
        for t in publishers:
            t.join(30)
        self.stop_workers(processes, client_ids, stop, results, phase)
        self.count_rows(phase)
        return phase

    def latency(self) -> PhaseResult:
        self.reset()
        rate = self.args.latency_rate
        total = int(rate * self.args.latency_seconds)
        phase = PhaseResult(f"latency @ {rate:,}/s", total)
        processes, client_ids, stop, results = self.start_workers(1, "lat")
        sample_workers([p.pid for p in processes], phase)
        phase.cpu_at_start = dict(phase.cpu_by_pid)
        publisher = FastPublisher(self.broker.port, "bench-pub-lat")
        samples: list[tuple[int, float]] = []
        reader_stop = threading.Event()
        reader = threading.Thread(target=self._read_stream, args=(samples, reader_stop), daemon=True)
        reader.start()
        started_wall = time.time()
        started = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - started) * rate))
            packets = []
            for i in range(sent, due):
                d = self.devices[i % len(self.devices)]
                # The publish time is the reading's ts: the device takes its reading and sends it.
                ts = datetime.now(UTC)
                payload = reading(self.sim, d, ts, f"lat-{d.device_id}-{i}")
                packets.append(publish_packet(self.router.sensor_obs(d.device_id), payload, i % 65535 + 1))
            if packets:
                publisher.send(packets)
            sent = due
            sample_workers([p.pid for p in processes], phase)
            time.sleep(0.002)
        finished = self.wait_for(total, [], [p.pid for p in processes], phase)
        phase.seconds = finished - started_wall
        publisher.wait_acked(10)
        publisher.close()
        time.sleep(0.3)  # let the reader take the last entries
        reader_stop.set()
        reader.join(5)
        self.stop_workers(processes, client_ids, stop, results, phase)
        self.count_rows(phase)
        if samples:
            ordered = sorted(ms for _, ms in samples)
            phase.p50_ms = statistics.median(ordered)
            phase.p99_ms = _percentile(ordered, 0.99)
            phase.latency_by_second = latency_by_second(samples)
        phase.latency_samples = len(samples)
        return phase

    def _read_stream(self, samples: list[tuple[int, float]], stop: threading.Event) -> None:
        """Arrival (XADD server time, from the entry id) minus publish time (the reading's ts)."""
        client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        last_id = "0-0"
        while not stop.is_set():
            reply = client.xread({"cityops:stream:observations": last_id}, count=5000, block=100)
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    arrived_ms = int(entry_id.split("-", 1)[0])
                    published = datetime.fromisoformat(fields["ts"]).timestamp() * 1000
                    samples.append((arrived_ms, arrived_ms - published))


def _percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_by_second(samples: Sequence[tuple[int, float]]) -> list[tuple[int, int, float, float, float]]:
    """(second, readings, p50, p99, max) per second of arrival: a start-up spike and a queue
    that grows for the whole phase look alike in one p99, and differently here."""
    start = min(arrived for arrived, _ in samples)
    by_second: dict[int, list[float]] = {}
    for arrived, ms in samples:
        by_second.setdefault(int((arrived - start) // 1000), []).append(ms)
    out = []
    for second in sorted(by_second):
        ordered = sorted(by_second[second])
        p50, p99 = statistics.median(ordered), _percentile(ordered, 0.99)
        out.append((second, len(ordered), p50, p99, ordered[-1]))
    return out


# ---- report ------------------------------------------------------------------------------


#: The phases in the order they run: the bare subscriber, cityops' client alone, one and
#: two workers, latency.
PHASES = ("bare", "tuned", "w1", "w2", "latency")


def _batch_line(batches: dict[str, float]) -> str:
    """Batch count and sizes: at a rate below capacity a worker takes what has arrived, so
    batches shrink until the store stage's fixed cost per batch dominates its time."""
    if not batches.get("batches") or not batches.get("store_parts"):
        return ""
    return (
        f"; {batches['batches']:,.0f} batches of {batches['messages'] / batches['batches']:.0f} messages on "
        f"average, {batches['store_seconds'] / batches['store_parts'] * 1000:.1f} ms per store part"
    )


def report(args: argparse.Namespace, phases: list[PhaseResult]) -> str:
    # Each phase against the bare subscriber of its own round: the machine's speed drifts.
    bares = {p.round: p for p in phases if p.name == "bare subscriber"}
    rows = [
        (
            "phase",
            "msgs",
            "msgs/s",
            "× bare",
            "loss",
            "dups (rows/worker)",
            "p50 ms",
            "p99 ms",
            "RSS MB (worker/process)",
            "CPU µs/msg",
        )
    ]
    for p in phases:
        bare = bares.get(p.round)
        rows.append(
            (
                p.label,
                f"{p.published:,}",
                f"{p.rate:,.0f}",
                "-" if bare is None or not bare.rate else f"{p.rate / bare.rate:.2f}",
                f"{p.loss:,}",
                "-" if p.receive_only else f"{p.duplicates}/{p.worker_duplicates}",
                "-" if p.p50_ms is None else f"{p.p50_ms:.0f}",
                "-" if p.p99_ms is None else f"{p.p99_ms:.0f}",
                "-" if p.receive_only else f"{p.max_rss_kb / 1024:.0f}/{p.max_process_rss_kb / 1024:.0f}",
                "-" if p.cpu_us_per_message is None else f"{p.cpu_us_per_message:.0f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        f"ingest bench: {args.messages:,} QoS 1 messages, {args.devices:,} devices, "
        f"{args.publishers} publisher connections, "
        f"batch {args.batch or 'default'}, rules {'on' if args.rules else 'off'}, "
        f"processing processes {'default' if args.processes is None else args.processes}, seed {args.seed}, "
        f"{os.cpu_count()} cores, load at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    ]
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for p in phases:
        if p.receive_only:
            continue
        checks = (
            f"{p.label}: rows {p.stored:,}, distinct (device, ts) {p.distinct:,}, distinct msg_id "
            f"{p.distinct_msg_id:,}, dead letters {p.dead_letters}, live counter {p.live_count:,}, "
            f"last-seen devices {p.last_seen}"
        )
        if p.latency_samples:
            checks += f", latency samples {p.latency_samples:,}"
        lines.append(checks + ("; " + "; ".join(p.notes) if p.notes else ""))
        if p.stage_busy and p.workers and p.seconds:
            # The stage near 1.00 is the one that limits a worker.
            lines.append(
                f"{p.label}, busy share of the phase per worker: "
                + ", ".join(
                    f"{stage} {p.stage_busy.get(stage, 0.0) / p.workers / p.seconds:.2f}"
                    for stage in ("prepare", "store", "live", "rules")
                )
                + _batch_line(p.batches)
            )
        if p.latency_by_second:
            lines.append(
                f"{p.label}, by second of arrival (readings: p50/p99/max ms): "
                + ", ".join(
                    f"{s}s {n}: {p50:.0f}/{p99:.0f}/{mx:.0f}" for s, n, p50, p99, mx in p.latency_by_second
                )
            )
    rounds = max(p.round for p in phases) if phases else 1
    for name in dict.fromkeys(p.name for p in phases):
        ratios = [
            p.rate / bares[p.round].rate
            for p in phases
            if p.name == name and not p.receive_only and p.round in bares and bares[p.round].rate
        ]
        if rounds > 1 and ratios:
            lines.append(
                f"{name} × bare, round by round: {', '.join(f'{r:.2f}' for r in ratios)} "
                f"(median {statistics.median(ratios):.2f})"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages", type=int, default=DEFAULT_MESSAGES, help="messages per throughput phase"
    )
    parser.add_argument(
        "--publishers", type=int, default=DEFAULT_PUBLISHERS, help="publisher connections (QoS 1)"
    )
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES, help="sensors in the feed")
    parser.add_argument(
        "--batch", type=int, default=None, help="worker batch size (default: ingest.worker.BATCH_MAX)"
    )
    parser.add_argument("--latency-rate", type=int, default=LATENCY_RATE, help="msgs/s of the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=LATENCY_SECONDS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--no-rules",
        dest="rules",
        action="store_false",
        help="workers skip the rule engine (measures the ingest path alone)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="processing processes per worker (default: CITYOPS_INGEST_PROCESSES' default, 0: none)",
    )
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=PHASES,
        default=list(PHASES),
        help="run only these phases (default: all; the ratio needs 'bare')",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the phases this many times, one round after the other; each ratio is taken "
        "against the same round's bare subscriber (a shared machine's speed drifts)",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cityops-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        phases: list[PhaseResult] = []
        try:
            bench.setup()
            for round_ in range(1, args.rounds + 1):
                for name in PHASES:
                    if name not in args.phases:
                        continue
                    # msg_ids and publisher ids carry the tag: new ones every round
                    tag = name if round_ == 1 else f"{name}r{round_}"
                    if name in ("bare", "tuned"):
                        phase = bench.bare(bench.feed(tag), tuned=name == "tuned")
                    elif name == "latency":
                        phase = bench.latency()
                    else:
                        # A new feed per phase: fresh timestamps, as a live feed has.
                        phase = bench.ingest(bench.feed(tag), int(name[1:]))
                    phase.round = round_
                    phases.append(phase)
                    print(f"{phase.label}: {phase.rate:,.0f} msgs/s", flush=True)
        finally:
            bench.teardown()
    print()
    print(report(args, phases))


if __name__ == "__main__":
    main()
