"""The embedded MQTT 5 broker that runs when no ``CITYOPS_MQTT_URL`` is configured.

It is a real broker (rumqttd, compiled into the ``iotcore`` wheel and run in a child
process), so the demo exercises exactly the paho code path that production runs
against Mosquitto: MQTT 5, QoS 1, shared subscriptions, persistent sessions.

iotcore's keyword arguments only configure an MQTT 3.1.1 listener; MQTT 5 needs a
rumqttd TOML file with a ``[v5.1]`` listener, which :func:`write_config` writes.

What the embedded broker does and does not do (measured with paho-mqtt 2.2 against
rumqttd 0.20 as shipped in iotcore 0.4; the integration tests in
``tests/integration/test_broker_embedded.py`` pin the behaviour down):

* MQTT 5 CONNECT/CONNACK, QoS 1 publish and subscribe: yes.
* Shared subscriptions ``$share/<group>/<filter>``: yes, round-robin between the
  group's members (20 messages to two members arrive 10/10).
* Persistent sessions (``clean_start=False`` + Session Expiry Interval): yes, while the
  broker process lives. QoS 1 messages published while a subscriber was away, and
  messages it received but did not acknowledge, are delivered when it reconnects.
  Unlike Mosquitto, redelivered messages get *new* packet ids and no DUP flag, so a
  consumer must not rely on DUP to detect duplicates (the ingest pipeline dedupes by
  content anyway).
* Sessions and queued messages live in memory only: a broker restart loses them
  (CONNACK ``session_present`` is false afterwards); clients must resubscribe on every
  connect, which :class:`ingest.mqtt.MqttClient` does.
* **Receive Maximum is not honoured**: a subscriber that announces Receive Maximum 5
  still gets 20 unacknowledged messages, and ``max_inflight_count`` does not bound
  outgoing unacknowledged messages either. Back-pressure therefore comes from the
  client's bounded hand-off queue and TCP flow control, see ``ingest/mqtt.py``.
* The CONNACK announces no Receive Maximum (unlimited), so paho's own outgoing
  in-flight window is the only limit for publishers.
* An MQTT 3.1.1 client is refused by the v5 listener. Devices or tools that only speak
  3.1.1 (``mosquitto_pub`` defaults to it) need the optional v4 listener
  (``v4_port=``); both listeners share one router, so messages cross between them.
* A publish larger than ``max_payload_size`` disconnects the publisher.
* **A client id containing '/' breaks the listener**: the first CONNECT is refused, and
  the second one with the same id panics inside rumqttd while it holds a lock, which
  poisons the lock; from then on *every* new connection to that listener is dropped
  until the broker restarts. :class:`ingest.mqtt.MqttClient` only allows ids of
  letters, digits and ``._:-``; any other local client must do the same.
* Throughput (``bench/bench_broker.py``, 20,000 QoS 1 messages of 200 bytes, one paho
  publisher and one paho subscriber in one Python process on a 2-CPU machine): ≈2,400
  msgs/s, the same as Mosquitto with ``deploy/mosquitto.conf`` (≈2,600/s): paho, not the
  broker, is the limit there. Mosquitto with its *default* config managed ≈200/s and
  lost a third of the messages (1000-message queue per client).
"""

from __future__ import annotations

import logging
import socket
import tempfile
from pathlib import Path
from types import TracebackType

from iotcore import Broker

from ingest.mqtt import MAX_PAYLOAD_BYTES as CLIENT_MAX_PAYLOAD_BYTES
from models.config import Settings

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

# --- rumqttd tuning ---------------------------------------------------------------------
# rumqttd silently ignores unknown keys, so these names are copied from its sample config.

#: Largest accepted PUBLISH payload, the same limit the client enforces before sending.
#: Sensor readings and 12345 cases are a few KiB; camera events carry image *references*,
#: not images. 1 MiB leaves headroom for batched readings while stopping a runaway
#: publisher from making the router buffer huge blobs.
MAX_PAYLOAD_BYTES = CLIENT_MAX_PAYLOAD_BYTES

#: Connections the router accepts. A laptop demo has a handful (simulator, ingest workers,
#: web); the limit only protects the machine from a connection leak.
MAX_CONNECTIONS = 1000

#: Per-connection in-flight window in rumqttd's config. Measured: it does not bound
#: outgoing unacknowledged QoS 1 messages in this version; set generously so that it
#: never becomes the bottleneck if a later version starts enforcing it.
MAX_INFLIGHT_COUNT = 1000

#: Packets the router hands a connection per scheduling round. Larger batches raise
#: throughput to fast consumers; smaller ones keep one slow connection from delaying
#: the others (rumqttd's sample uses 200).
MAX_OUTGOING_PACKET_COUNT = 500

#: The router keeps messages per topic filter in an in-memory commit log of
#: ``count`` segments of ``size`` bytes (rumqttd's sample: 10 × 100 MiB, i.e. up to 1 GiB
#: per filter). 4 × 16 MiB bounds memory on a laptop at the cost of how far back a
#: persistent session that was away for long can be served: older segments are dropped.
MAX_SEGMENT_BYTES = 16 * 1024 * 1024
MAX_SEGMENT_COUNT = 4

#: How long a new TCP connection may take to send CONNECT. Short, because everything is
#: on loopback; a long value only helps idle connections tie up the listener.
CONNECTION_TIMEOUT_MS = 5000

#: Seconds to wait for the child process to listen. It starts in ≈0.2 s; the margin
#: covers a cold disk or a busy CI machine.
START_TIMEOUT_SECONDS = 10.0


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when ``host:port`` can be bound right now (nothing listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the broker's own listener: connections of a just-stopped broker lingering in
        # TIME_WAIT must not make its port look taken (a listening socket still does).
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port the kernel considers free on ``host`` (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def render_config(port: int, *, host: str = LOOPBACK, v4_port: int | None = None) -> str:
    """The rumqttd TOML for an MQTT 5 listener on ``host:port`` (and optionally MQTT 3.1.1)."""
    connections = (
        f"connection_timeout_ms = {CONNECTION_TIMEOUT_MS}\n"
        f"max_payload_size = {MAX_PAYLOAD_BYTES}\n"
        f"max_inflight_count = {MAX_INFLIGHT_COUNT}\n"
        "dynamic_filters = true\n"
    )
    text = (
        "# Written by cityops (ingest/broker.py) at every start; edits are overwritten.\n"
        "id = 0\n\n"
        "[router]\n"
        "id = 0\n"
        f"max_connections = {MAX_CONNECTIONS}\n"
        f"max_outgoing_packet_count = {MAX_OUTGOING_PACKET_COUNT}\n"
        f"max_segment_size = {MAX_SEGMENT_BYTES}\n"
        f"max_segment_count = {MAX_SEGMENT_COUNT}\n"
        'shared_subscriptions_strategy = "roundrobin"\n\n'
        "[v5.1]\n"
        'name = "v5-1"\n'
        f'listen = "{host}:{port}"\n'
        "next_connection_delay_ms = 0\n"
        "[v5.1.connections]\n" + connections
    )
    if v4_port is not None:
        text += (
            "\n[v4.1]\n"
            'name = "v4-1"\n'
            f'listen = "{host}:{v4_port}"\n'
            "next_connection_delay_ms = 0\n"
            "[v4.1.connections]\n" + connections
        )
    return text


class EmbeddedBroker:
    """rumqttd with an MQTT 5 listener on 127.0.0.1, started and stopped with the app.

    ::

        with EmbeddedBroker(11883, config_dir=Path("var/mqtt")) as broker:
            client = MqttClient(broker.url, "cityops-ingest-1")

    When ``port`` is taken (another cityops, a second test run), a free port is chosen
    and logged; :attr:`url` always names the port actually in use.
    """

    def __init__(
        self,
        port: int = 11883,
        *,
        config_dir: Path | None = None,
        host: str = LOOPBACK,
        v4_port: int | None = None,
    ) -> None:
        self.requested_port = port
        self.host = host
        self.v4_port = v4_port
        self._config_dir = config_dir
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._broker: Broker | None = None
        self.port = port
        self.config_path: Path | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` of the MQTT 5 listener."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._broker is not None and self._broker.is_running

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> EmbeddedBroker:
        """Write the config, start the broker and return once it accepts connections."""
        if self.is_running:
            return self
        self.port = self._choose_port(self.requested_port)
        if self.v4_port is not None and not port_is_free(self.v4_port, self.host):
            taken, self.v4_port = self.v4_port, free_port(self.host)
            log.warning("MQTT 3.1.1 port %s is taken; the embedded broker uses %s", taken, self.v4_port)
        self.config_path = self._write_config()
        try:
            self._broker = Broker(config_path=str(self.config_path)).start(timeout)
        except OSError:
            # Lost the race for the port between the check and the bind: take another once.
            self.port = free_port(self.host)
            log.warning("embedded MQTT port was taken meanwhile; retrying on %s", self.port)
            self.config_path = self._write_config()
            self._broker = Broker(config_path=str(self.config_path)).start(timeout)
        log.info("embedded MQTT 5 broker listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop the broker process and release its ports. Safe to call twice."""
        broker, self._broker = self._broker, None
        if broker is not None:
            broker.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<EmbeddedBroker {self.url} {'running' if self.is_running else 'stopped'}>"

    def _choose_port(self, port: int) -> int:
        if port_is_free(port, self.host):
            return port
        chosen = free_port(self.host)
        log.warning("MQTT port %s on %s is taken; the embedded broker uses %s", port, self.host, chosen)
        return chosen

    def _write_config(self) -> Path:
        directory = self._config_directory()
        path = directory / "rumqttd.toml"
        path.write_text(render_config(self.port, host=self.host, v4_port=self.v4_port), encoding="utf-8")
        return path

    def _config_directory(self) -> Path:
        if self._config_dir is not None:
            try:
                self._config_dir.mkdir(parents=True, exist_ok=True)
                return self._config_dir
            except OSError as exc:
                # A read-only checkout must still run the demo; the config is regenerated anyway.
                log.warning("cannot write to %s (%s); using a temporary directory", self._config_dir, exc)
        if self._tempdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="cityops-mqtt-")
        return Path(self._tempdir.name)


def start_broker_for(settings: Settings) -> EmbeddedBroker | None:
    """Start the embedded broker when no broker URL is configured; otherwise return None.

    The caller owns the returned broker and stops it on shutdown (or uses it as a
    context manager). Its :attr:`~EmbeddedBroker.url` is what clients connect to.
    """
    if settings.mqtt is not None:
        return None
    broker = EmbeddedBroker(settings.embedded_mqtt_port, config_dir=settings.data_dir / "mqtt")
    return broker.start()
