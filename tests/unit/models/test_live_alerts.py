"""The live alert queue's version, per-district queues and per-process reads (models.live).

Every change path (raise, acknowledge, resolve, false alarm, rebuild) must move
``cityops:alerts:version`` and keep each district's queue equal to its part of the city
queue; a process that read the queue answers from what it read only while the version
holds. The scenarios take a store and run on the embedded store here and on a real Redis
in tests/integration/test_live_alerts.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import fakeredis
import pytest
import sqlalchemy as sa

from models import alerts
from models.alerts import AlertDraft
from models.live import (
    ALERTS_INDEXED_KEY,
    ALERTS_OPEN_KEY,
    ALERTS_VERSION_KEY,
    REBUILD_ATTEMPTS,
    LiveAlert,
    LiveStore,
    alerts_district_key,
)
from tests.unit.models.test_alerts import draft as alert_draft

T0 = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)
GUANGAN, LINSHUI = "511602", "511623"


@pytest.fixture
def live() -> LiveStore:
    return LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))


def draft(key: str, severity: str = "major", district_code: str | None = GUANGAN) -> AlertDraft:
    return alert_draft(key, severity, district_code=district_code, grid_id=None)


def version(live: LiveStore) -> int:
    return int(live.redis.get(ALERTS_VERSION_KEY) or 0)


def count_queue_reads(live: LiveStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the store read alert hashes (a cache miss)."""
    calls = [0]
    read = live._read_alerts

    def counted(ids: list[str]) -> list:
        calls[0] += 1
        return read(ids)

    monkeypatch.setattr(live, "_read_alerts", counted)
    return calls


def assert_index_consistent(live: LiveStore) -> None:
    """Each district's queue holds exactly its alerts of the city queue, with their scores."""
    city = live.redis.zrange(ALERTS_OPEN_KEY, 0, -1, withscores=True)
    by_district: dict[str, list[tuple[str, float]]] = {}
    for alert_id, score in city:
        district = live.redis.hget(f"cityops:alert:{alert_id}", "district_code")
        if district:
            by_district.setdefault(district, []).append((alert_id, score))
    indexed = {
        key.removeprefix(ALERTS_OPEN_KEY + ":"): live.redis.zrange(key, 0, -1, withscores=True)
        for key in live.redis.scan_iter(match=alerts_district_key("*"))
    }
    assert {k: v for k, v in indexed.items() if v} == by_district
    # And a fresh process (nothing kept) reads each district as a filter of the city queue.
    fresh = LiveStore(live.redis)
    everything = fresh.open_alerts(limit=10_000)
    for district in (GUANGAN, LINSHUI):
        expected = [a.id for a in everything if a.district_code == district]
        assert [a.id for a in fresh.open_alerts(limit=10_000, district_code=district)] == expected
        assert [a.id for a in live.open_alerts(limit=10_000, district_code=district)] == expected


# ---- scenarios (also run on a real Redis) -----------------------------------------------------


def every_change_path_moves_the_version(engine: sa.Engine, live: LiveStore) -> None:
    seen = [version(live)]

    def moved() -> None:
        now = version(live)
        assert now != seen[-1], "a change left cityops:alerts:version where it was"
        seen.append(now)

    with engine.begin() as conn:
        raised = [
            alerts.raise_alert(conn, draft("a", "critical"), now=T0),
            alerts.raise_alert(conn, draft("b", "minor", LINSHUI), now=T0 + timedelta(seconds=1)),
            alerts.raise_alert(conn, draft("c", "major", LINSHUI), now=T0 + timedelta(seconds=2)),
            alerts.raise_alert(conn, draft("d", "info", None), now=T0 + timedelta(seconds=3)),
        ]
    a, b, c, _d = (change.alert.id for change in raised)
    assert live.apply_alert_changes(raised) == 4
    moved()
    assert_index_consistent(live)

    with engine.begin() as conn:
        ack = alerts.acknowledge(conn, a, actor="zhang", address=None, now=T0 + timedelta(minutes=1))
    assert live.apply_alert_changes([ack]) == 1
    moved()
    assert_index_consistent(live)

    # Older news of an alert changes nothing, the version included.
    assert live.apply_alert_changes([raised[0]]) == 0
    assert version(live) == seen[-1]

    with engine.begin() as conn:
        taken = alerts.acknowledge(conn, b, actor="zhang", address=None, now=T0 + timedelta(minutes=2))
        done = alerts.resolve(conn, b, actor="zhang", address=None, now=T0 + timedelta(minutes=3))
    assert live.apply_alert_changes([taken, done]) == 1
    moved()
    assert b not in {x.id for x in live.open_alerts(limit=100, district_code=LINSHUI)}
    assert_index_consistent(live)

    with engine.begin() as conn:
        gone = alerts.mark_false_alarm(conn, c, actor="li", address=None, now=T0 + timedelta(minutes=3))
    assert live.apply_alert_changes([gone]) == 1
    moved()
    assert live.redis.zcard(alerts_district_key(LINSHUI)) == 0
    assert_index_consistent(live)

    with engine.connect() as conn:
        assert live.rebuild_alerts(conn) == 2
    moved()
    assert_index_consistent(live)


def unchanged_queue_is_not_read_again(
    engine: sa.Engine, live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as conn:
        raised = [
            alerts.raise_alert(conn, draft("a", "critical"), now=T0),
            alerts.raise_alert(conn, draft("b", "major", LINSHUI), now=T0 + timedelta(seconds=1)),
        ]
    live.apply_alert_changes(raised)
    with engine.connect() as conn:
        live.rebuild_alerts(conn)  # as a worker's start does: the district queues are built
    a, b = (change.alert.id for change in raised)
    reads = count_queue_reads(live, monkeypatch)

    first = live.open_alerts(limit=50)
    scoped = live.open_alerts(limit=50, district_code=LINSHUI)
    assert reads[0] == 2 and live.audible_alerts() == {a, b}
    assert live.open_alerts(limit=50) == first
    assert live.open_alerts(limit=50, district_code=LINSHUI) == scoped == [first[1]]
    assert reads[0] == 2, "an unchanged queue was read again"

    # A change made elsewhere (another process's store on the same Redis) is seen at once.
    other = LiveStore(live.redis)
    with engine.begin() as conn:
        ack = alerts.acknowledge(conn, a, actor="zhang", address=None, now=T0 + timedelta(minutes=1))
    assert other.apply_alert_changes([ack]) == 1
    again = live.open_alerts(limit=50)
    assert reads[0] == 3
    assert [x.id for x in again] == [a, b] and again[0].state == "acknowledged"
    assert live.audible_alerts() == {b}

    # What a caller does with its list does not reach the next caller.
    again.clear()
    assert [x.id for x in live.open_alerts(limit=50)] == [a, b]


def only_changed_alerts_are_read_whole(
    engine: sa.Engine, live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a change, a process reads the whole hash of the changed alert only (the
    others are the same version as it read them) and still sees every change."""
    with engine.begin() as conn:
        raised = [
            alerts.raise_alert(conn, draft(f"k{i}", "major"), now=T0 + timedelta(seconds=i)) for i in range(6)
        ]
    live.apply_alert_changes(raised)
    ids = [change.alert.id for change in raised]
    parsed: list[str] = []
    parse = LiveAlert.from_hash

    def counted(row: dict[str, str]) -> LiveAlert:
        parsed.append(row["id"])
        return parse(row)

    monkeypatch.setattr(LiveAlert, "from_hash", staticmethod(counted))
    assert [a.id for a in live.open_alerts(limit=50)] == ids
    assert sorted(parsed) == sorted(str(i) for i in ids)

    parsed.clear()
    other = LiveStore(live.redis)  # the change comes from another process
    with engine.begin() as conn:
        ack = alerts.acknowledge(conn, ids[2], actor="zhang", address=None, now=T0 + timedelta(minutes=1))
        closed = alerts.mark_false_alarm(
            conn, ids[4], actor="zhang", address=None, now=T0 + timedelta(minutes=2)
        )
    assert other.apply_alert_changes([ack, closed]) == 2
    again = live.open_alerts(limit=50)
    assert parsed == [str(ids[2])]  # the false alarm left the queue: nothing to read
    assert [a.id for a in again] == [i for i in ids if i != ids[4]]
    assert again[2].state == "acknowledged" and again[2].version == ack.alert.version
    assert [a.state for a in again if a.id != ids[2]] == ["new"] * 4


def a_store_written_before_the_district_queues(engine: sa.Engine, live: LiveStore) -> None:
    """A queue written before the per-district queues existed (no marker, no district
    keys): a scoped read walks the city queue, then builds them for the next reads."""
    with engine.begin() as conn:
        raised = [
            alerts.raise_alert(conn, draft(f"g{i}", "critical"), now=T0 + timedelta(seconds=i))
            for i in range(5)
        ] + [alerts.raise_alert(conn, draft("l", "minor", LINSHUI), now=T0)]
    live.apply_alert_changes(raised)
    for key in list(live.redis.scan_iter(match=alerts_district_key("*"))):
        live.redis.delete(key)
    live.redis.delete(ALERTS_INDEXED_KEY)

    linshui = raised[-1].alert.id
    assert [x.id for x in live.open_alerts(limit=2, district_code=LINSHUI)] == [linshui]
    assert live.redis.get(ALERTS_INDEXED_KEY)
    assert live.redis.zrange(alerts_district_key(LINSHUI), 0, -1) == [str(linshui)]
    assert_index_consistent(live)


def a_store_without_a_version_keeps_nothing(engine: sa.Engine, live: LiveStore) -> None:
    """Redis lost everything and a worker wrote again before any rebuild: the version
    starts again, but the cache token is not the one read before."""
    with engine.begin() as conn:
        first = alerts.raise_alert(conn, draft("a", "critical"), now=T0)
        second = alerts.raise_alert(conn, draft("b", "critical"), now=T0 + timedelta(seconds=1))
    with engine.connect() as conn:
        live.rebuild_alerts(conn)
    assert [x.id for x in live.open_alerts()] == [first.alert.id, second.alert.id]
    live.redis.flushdb()
    assert live.open_alerts() == [] and live.audible_alerts() == set()
    live.apply_alert_changes([second])
    assert [x.id for x in live.open_alerts()] == [second.alert.id]
    assert live.audible_alerts() == {second.alert.id}


def a_flushed_store_that_was_never_rebuilt_is_read_again(engine: sa.Engine, live: LiveStore) -> None:
    """No rebuild before or after the flush: the counter is back at the value read before,
    and only the store's new epoch token tells the two queues apart."""
    with engine.begin() as conn:
        first = alerts.raise_alert(conn, draft("a", "critical"), now=T0)
        second = alerts.raise_alert(conn, draft("b", "major"), now=T0 + timedelta(seconds=1))
    live.apply_alert_changes([first])
    assert [x.id for x in live.open_alerts()] == [first.alert.id]
    counter = live.redis.get(ALERTS_VERSION_KEY)
    live.redis.flushdb()
    live.apply_alert_changes([second])
    assert live.redis.get(ALERTS_VERSION_KEY) == counter
    assert [x.id for x in live.open_alerts()] == [second.alert.id]
    assert live.audible_alerts() == {second.alert.id}


def acknowledged_after_the_first_read(
    engine: sa.Engine, live: LiveStore, alert_id: int
) -> tuple[Callable[..., list], list[int]]:
    """A stand-in for ``models.alerts.open_alerts`` after whose first read another process
    (a web process on the same Redis) acknowledges ``alert_id``, in the database and then in
    Redis; and the number of rows each read returned."""
    reads: list[int] = []
    read_open = alerts.open_alerts

    def read(*args: object, **kwargs: object) -> list:
        rows = read_open(*args, **kwargs)  # type: ignore[arg-type]
        reads.append(len(rows))
        if len(reads) == 1:
            with engine.begin() as conn:
                ack = alerts.acknowledge(
                    conn, alert_id, actor="zhang", address=None, now=T0 + timedelta(minutes=1)
                )
            assert LiveStore(live.redis).apply_alert_changes([ack]) == 1
        return rows

    return read, reads


def a_change_written_during_a_rebuild_is_not_undone(engine: sa.Engine, live: LiveStore) -> None:
    """Another process acknowledges an alert after the rebuild read the database and before
    its MULTI: the rebuild reads again instead of writing the alert back as it was."""
    with engine.begin() as conn:
        raised = alerts.raise_alert(conn, draft("a", "critical"), now=T0)
    live.apply_alert_changes([raised])
    read_then_acknowledged_elsewhere, reads = acknowledged_after_the_first_read(engine, live, raised.alert.id)

    with patch.object(alerts, "open_alerts", read_then_acknowledged_elsewhere), engine.connect() as conn:
        assert live.rebuild_alerts(conn) == 1
    assert len(reads) == 2, "the rebuild wrote what it read before the acknowledgement"
    stored = LiveStore(live.redis).alert(raised.alert.id)
    assert stored is not None and stored.state == "acknowledged"
    assert live.audible_alerts() == set()
    assert_index_consistent(live)


def a_rebuild_under_a_storm_of_changes_writes_in_the_end(engine: sa.Engine, live: LiveStore) -> None:
    """Changes moving the version before every MULTI: the last try writes without WATCH."""
    with engine.begin() as conn:
        raised = alerts.raise_alert(conn, draft("a", "critical", LINSHUI), now=T0)
    reads: list[int] = []
    read_open = alerts.open_alerts

    def read_then_changed_elsewhere(*args: object, **kwargs: object) -> list:
        reads.append(1)
        live.redis.incr(ALERTS_VERSION_KEY)  # what every alert write does in its MULTI
        return read_open(*args, **kwargs)  # type: ignore[arg-type]

    live.redis.flushdb()
    with patch.object(alerts, "open_alerts", read_then_changed_elsewhere), engine.connect() as conn:
        assert live.rebuild_alerts(conn) == 1
    assert len(reads) == REBUILD_ATTEMPTS
    assert [x.id for x in LiveStore(live.redis).open_alerts(district_code=LINSHUI)] == [raised.alert.id]
    assert_index_consistent(live)


SCENARIOS: list[Callable[..., None]] = [
    every_change_path_moves_the_version,
    a_store_written_before_the_district_queues,
    a_store_without_a_version_keeps_nothing,
    a_flushed_store_that_was_never_rebuilt_is_read_again,
    a_change_written_during_a_rebuild_is_not_undone,
    a_rebuild_under_a_storm_of_changes_writes_in_the_end,
]


# ---- on the embedded store ----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_scenario(scenario: Callable[..., None], engine: sa.Engine, live: LiveStore) -> None:
    scenario(engine, live)


def test_unchanged_queue_is_not_read_again(
    engine: sa.Engine, live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    unchanged_queue_is_not_read_again(engine, live, monkeypatch)


def test_only_changed_alerts_are_read_whole(
    engine: sa.Engine, live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    only_changed_alerts_are_read_whole(engine, live, monkeypatch)


def test_scoped_read_of_a_large_queue_is_one_range(
    engine: sa.Engine, live: LiveStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A district's alerts behind a city queue many times the limit: read from its own
    queue, not by walking the city's in slices."""
    with engine.begin() as conn:
        changes = [
            alerts.raise_alert(conn, draft(f"g{i}", "critical"), now=T0 + timedelta(seconds=i))
            for i in range(30)
        ] + [alerts.raise_alert(conn, draft("l", "info", LINSHUI), now=T0)]
    live.apply_alert_changes(changes)
    with engine.connect() as conn:
        live.rebuild_alerts(conn)
    reads: list[list[str]] = []
    read = live._read_alerts

    def recorded(ids: list[str]) -> list:
        reads.append(ids)
        return read(ids)

    monkeypatch.setattr(live, "_read_alerts", recorded)
    assert [x.id for x in live.open_alerts(limit=5, district_code=LINSHUI)] == [changes[-1].alert.id]
    assert reads == [[str(changes[-1].alert.id)]]


def test_the_district_queue_follows_an_alert_that_moves(engine: sa.Engine, live: LiveStore) -> None:
    """Should a newer version of an alert name another district, it leaves the old one's queue."""
    with engine.begin() as conn:
        raised = alerts.raise_alert(conn, draft("a", "critical"), now=T0)
    live.apply_alert_changes([raised])
    moved = replace(
        raised, alert=replace(raised.alert, district_code=LINSHUI, version=raised.alert.version + 1)
    )
    assert live.apply_alert_changes([moved]) == 1
    assert live.redis.zcard(alerts_district_key(GUANGAN)) == 0
    assert live.redis.zrange(alerts_district_key(LINSHUI), 0, -1) == [str(raised.alert.id)]
    assert_index_consistent(live)
