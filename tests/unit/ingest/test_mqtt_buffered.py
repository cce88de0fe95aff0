"""The buffered receive path and batched acknowledgements of ingest.mqtt, over a socketpair.

No broker: the client's socket is one end of a socketpair and the test writes raw MQTT 5
packets into the other end, split wherever it likes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt import READ_CHUNK_BYTES, MqttClient, _BufferedPahoClient, _Publish


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(
    topic: str, payload: bytes, mid: int, *, qos: int = 1, dup: bool = False, props: bytes = b"\x00"
) -> bytes:
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name
    if qos:
        body += mid.to_bytes(2, "big")
    body += props + payload
    return bytes([0x30 | (qos << 1) | (0x08 if dup else 0)]) + _varint(len(body)) + body


PINGRESP = b"\xd0\x00"


class Wired:
    """A client whose socket is one end of a socketpair; ``feed`` writes into the other."""

    def __init__(self) -> None:
        self.client = MqttClient("mqtt://127.0.0.1:1", "wired")
        self.paho: _BufferedPahoClient = self.client._client  # type: ignore[assignment]
        ours, self.peer = socket.socketpair()
        ours.setblocking(False)
        self.paho._sock = ours
        self.reads: list[list[_Publish]] = []
        deliver = self.paho.on_publishes
        assert deliver is not None

        def record(publishes: list[_Publish]) -> None:
            self.reads.append(list(publishes))
            deliver(publishes)

        self.paho.on_publishes = record

    def feed(self, data: bytes) -> MQTTErrorCode:
        """Write ``data`` and let the client read once, as after select() said readable."""
        self.peer.sendall(data)
        return self.paho._packet_read()

    def close(self) -> None:
        self.peer.close()
        if self.paho._sock is not None:
            self.paho._sock.close()
            self.paho._sock = None


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = Wired()
    yield w
    w.close()


def test_every_complete_packet_of_one_read_is_handled_at_once(wired: Wired) -> None:
    packets = b"".join(
        publish_packet(f"cityops/v1/sensors/d{i}/obs", b'{"i":%d}' % i, i + 1) for i in range(50)
    )
    assert wired.feed(packets) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert len(wired.reads) == 1, "one hand-over per read, not one per packet"
    batch = wired.client.get_batch(100, timeout=0)
    assert [m.mid for m in batch] == list(range(1, 51))
    assert batch[7].topic == "cityops/v1/sensors/d7/obs" and batch[7].payload == b'{"i":7}'
    assert all(m.qos == 1 and not m.retain and not m.duplicate for m in batch)
    assert wired.client.stats().received == 50
    assert wired.paho._read_buffer == b""


@pytest.mark.parametrize("split", [1, 2, 3, 5, 17, 100])
def test_packets_split_anywhere_arrive_whole_and_once(wired: Wired, split: int) -> None:
    # A 20 kB payload needs a 3-byte remaining length, so splits fall inside it too.
    big = bytes(range(256)) * 80
    stream = (
        publish_packet("t/a", b"first", 1)
        + publish_packet("t/b", big, 2, dup=True)
        + publish_packet("t/c", b"", 3)
    )
    for start in range(0, len(stream), split):
        rc = wired.feed(stream[start : start + split])
        assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS
    got = wired.client.get_batch(10, timeout=0)
    assert [(m.topic, m.mid) for m in got] == [("t/a", 1), ("t/b", 2), ("t/c", 3)]
    assert got[1].payload == big and got[1].duplicate
    assert got[2].payload == b""
    assert wired.paho._read_buffer == b""


def test_nothing_complete_stays_buffered_while_waiting_on_the_socket(wired: Wired) -> None:
    """The stall trap: after a read, only a partial packet may be left in the buffer."""
    first, second, third = (publish_packet(f"t/{i}", b"x" * 300, i) for i in (1, 2, 3))
    assert wired.feed(first + second + third[:100]) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [m.mid for m in wired.client.get_batch(10, timeout=0)] == [1, 2]
    assert bytes(wired.paho._read_buffer) == third[:100]
    # With the socket empty, another read finds nothing new (select() would not wake us
    # either, which is right: the partial packet needs more bytes from the socket).
    assert wired.paho._packet_read() == MQTTErrorCode.MQTT_ERR_AGAIN
    assert wired.client.get_batch(10, timeout=0) == []
    assert wired.feed(third[100:]) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [m.mid for m in wired.client.get_batch(10, timeout=0)] == [3]


def test_a_read_larger_than_one_chunk_is_taken_over_several_reads(wired: Wired) -> None:
    packets = [publish_packet("t/big", bytes(1000), i) for i in range(1, 201)]
    wired.peer.sendall(b"".join(packets))  # about 200 kB: more than one chunk
    received: list[int] = []
    for _ in range(20):
        rc = wired.paho._packet_read()
        received += [m.mid for m in wired.client.get_batch(1000, timeout=0)]
        if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
            break
    assert received == list(range(1, 201))
    assert len(wired.reads) >= 200 * 1000 // READ_CHUNK_BYTES


def test_other_packets_go_to_paho_in_order(wired: Wired) -> None:
    wired.paho._ping_t = 123.0  # waiting for a PINGRESP
    order: list[str] = []
    deliver = wired.paho.on_publishes
    assert deliver is not None

    def record(publishes: list[_Publish]) -> None:
        order.append("publish")
        deliver(publishes)

    wired.paho.on_publishes = record
    handle = wired.paho._packet_handle

    def spy() -> MQTTErrorCode:
        order.append(f"paho:{wired.paho._in_packet['command']:#x}")
        return handle()

    wired.paho._packet_handle = spy  # type: ignore[method-assign]
    rc = wired.feed(publish_packet("t/1", b"a", 1) + PINGRESP + publish_packet("t/2", b"b", 2))
    assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert order == ["publish", "paho:0xd0", "publish"]
    assert wired.paho._ping_t == 0, "paho handled the PINGRESP"
    assert [m.mid for m in wired.client.get_batch(10, timeout=0)] == [1, 2]


def test_qos0_retained_and_properties_are_decoded(wired: Wired) -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("source", "sim")
    props.MessageExpiryInterval = 30
    props.ContentType = "application/json"
    retained = bytearray(publish_packet("t/meta", b"{}", 0, qos=0))
    retained[0] |= 0x01
    wired.feed(bytes(retained) + publish_packet("t/p", b"{}", 9, props=props.pack()))
    meta, with_props = wired.client.get_batch(10, timeout=0)
    assert (meta.qos, meta.retain, meta.mid) == (0, True, 0)
    assert with_props.user_properties == (("source", "sim"),)
    assert (with_props.message_expiry, with_props.content_type) == (30, "application/json")


def test_end_of_stream_and_malformed_packets_end_the_connection(wired: Wired) -> None:
    # A remaining length of five bytes is a protocol error.
    assert wired.feed(b"\x32\xff\xff\xff\xff\x01") == MQTTErrorCode.MQTT_ERR_PROTOCOL
    wired.paho._read_buffer.clear()
    # A topic length pointing past the packet.
    assert wired.feed(b"\x32\x04\x00\x09ab") == MQTTErrorCode.MQTT_ERR_PROTOCOL
    wired.peer.close()
    assert wired.paho._packet_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST


def test_reconnect_forgets_a_partial_packet(wired: Wired) -> None:
    wired.feed(publish_packet("t/1", b"abc", 1)[:5])
    assert wired.paho._read_buffer
    wired.paho._host = ""  # reconnect() stops right after resetting, at the missing host
    with pytest.raises(ValueError):
        wired.paho.reconnect()
    assert wired.paho._read_buffer == b""


def test_ack_many_writes_the_pubacks_of_a_batch_at_once(wired: Wired) -> None:
    wired.feed(b"".join(publish_packet("t/x", b"{}", mid) for mid in (5, 6, 300)))
    batch = wired.client.get_batch(10, timeout=0)
    wired.client.connected.set()
    queued: list[bytes] = []
    enqueue = wired.paho._packet_queue

    def spy(command: int, packet: bytes, mid: int, qos: int, info: object = None) -> MQTTErrorCode:
        queued.append(packet)
        return enqueue(command, packet, mid, qos)

    wired.paho._packet_queue = spy  # type: ignore[method-assign]
    assert wired.client.ack_many(batch) == 3
    assert len(queued) == 1, "one queued write for the whole batch"
    # Without a network thread paho writes at once.
    assert wired.peer.recv(100) == b"\x40\x02\x00\x05" + b"\x40\x02\x00\x06" + b"\x40\x02\x01\x2c"
    stats = wired.client.stats()
    assert (stats.acked, stats.stale_acks) == (3, 0)


def test_ack_many_skips_messages_of_an_earlier_connection(wired: Wired) -> None:
    wired.feed(publish_packet("t/x", b"{}", 1))
    old = wired.client.get_batch(10, timeout=0)
    wired.client._generation += 1  # a reconnect happened since
    wired.feed(publish_packet("t/x", b"{}", 2) + publish_packet("t/q0", b"{}", 0, qos=0))
    new = wired.client.get_batch(10, timeout=0)
    wired.client.connected.set()
    assert wired.client.ack_many(old + new) == 2  # mid 2, and the QoS 0 message needs none
    assert wired.peer.recv(100) == b"\x40\x02\x00\x02"
    assert wired.client.stats().stale_acks == 1


def test_ack_many_sends_nothing_while_disconnected(wired: Wired) -> None:
    wired.feed(publish_packet("t/x", b"{}", 1))
    batch = wired.client.get_batch(10, timeout=0)
    assert not wired.client.connected.is_set()
    assert wired.client.ack_many(batch) == 0
    assert not wired.paho._out_packet
    assert wired.client.stats().stale_acks == 1


def test_pubacks_checked_before_a_reconnect_are_not_sent_on_the_next_connection(wired: Wired) -> None:
    """The consumer checks the connection, then the network thread reconnects, then the
    consumer queues its PUBACKs: they must not reach the new connection, where the same
    packet ids can name other messages."""
    wired.client._generation = 7  # the CONNACK of connection 7
    wired.client.connected.set()
    wired.feed(b"".join(publish_packet("t/x", b"{}", mid) for mid in (1, 2)))
    batch = wired.client.get_batch(10, timeout=0)
    assert {m.connection for m in batch} == {7}
    send_raw = wired.paho.send_raw

    def reconnect_first(command: int, data: bytes, connection: int) -> MQTTErrorCode:
        wired.paho._host = ""  # reconnect() stops right after resetting, at the missing host
        with pytest.raises(ValueError):
            wired.paho.reconnect()
        wired.paho._sock, _ = socket.socketpair()  # the next connection's socket
        return send_raw(command, data, connection)

    wired.paho.send_raw = reconnect_first  # type: ignore[method-assign]
    assert wired.client.ack_many(batch) == 0
    assert not wired.paho._out_packet, "nothing queued for the next connection"
    stats = wired.client.stats()
    assert (stats.acked, stats.stale_acks) == (0, 2)
    # Nor once the next connection is up: those ids are its own now.
    wired.paho.send_raw = send_raw  # type: ignore[method-assign]
    wired.client._generation = 8
    assert wired.client.ack(batch[0]) is False
    assert not wired.paho._out_packet


def test_single_ack_goes_out_on_its_own_connection_only(wired: Wired) -> None:
    wired.client._generation = 3
    wired.client.connected.set()
    wired.feed(publish_packet("t/x", b"{}", 513))
    (message,) = wired.client.get_batch(10, timeout=0)
    assert wired.client.ack(message) is True
    assert wired.peer.recv(100) == b"\x40\x02\x02\x01"
    wired.paho.set_connection(0)  # a reconnect began after the check in ack()
    assert (
        wired.paho.send_raw(0x40, b"\x40\x02\x02\x01", message.connection) == MQTTErrorCode.MQTT_ERR_NO_CONN
    )
    assert not wired.paho._out_packet


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """(first byte, body) of each complete MQTT packet in ``data``; a partial one is left out."""
    packets, pos = [], 0
    while pos < len(data):
        length, shift, i = 0, 0, pos + 1
        while i < len(data):
            byte = data[i]
            i += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        else:
            break
        if i + length > len(data):
            break
        packets.append((data[pos], data[i : i + length]))
        pos = i + length
    return packets


def test_subscriptions_go_out_right_behind_connect_before_any_connack() -> None:
    """After a broker restart that forgot the shared subscriptions, the broker's next packet
    from the worker after CONNECT must be its SUBSCRIBE, not wait for CONNACK."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = MqttClient(f"mqtt://127.0.0.1:{port}", "early", persistent_session=True)
    client.subscribe("cityops/v1/sensors/+/obs", shared_group="ingest")
    try:
        client._client.connect("127.0.0.1", port, clean_start=False)  # no network thread: writes at once
        peer, _ = server.accept()
        peer.settimeout(5)
        data = b""
        while len(_packets(data)) < 2:
            data += peer.recv(4096)
        (connect, _), (subscribe, body) = _packets(data)[:2]
        assert (connect, subscribe) == (0x10, 0x82)
        assert b"$share/ingest/cityops/v1/sensors/+/obs" in body
        peer.close()
    finally:
        client._client._sock_close()
        server.close()
