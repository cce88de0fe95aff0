"""The flood story from start to close: real MQTT, the ingest worker with the rule engine
and the video-case hook, real Redis and PostgreSQL + PostGIS, on a controlled clock.

The simulator's ``flood`` scenario is played as in test_scenario_alerts.py. What it leaves
in the database is then followed through the public functions only, every step checked
in the database: the incident the compound-flooding rule opened by itself (接报 → 关闭),
a 12345 call about a flooded road turned into a case and followed to 回访, and a video
waterlogging case from 信息收集 to 综合评价.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa

from ingest.mqtt import MqttClient
from ingest.pipeline import IngestPipeline
from ingest.simulator import CitySimulator, Message
from ingest.worker import IngestWorker
from models import cases, incidents, schema, tickets
from models.db import create_engine_for
from models.lifecycle import Actor
from models.live import LiveStore
from models.reference import seed_reference_data
from models.rules import AlertSink, RuleEngine, RuleRunner, load_rules
from tests.integration.test_scenario_alerts import (
    EVERYDAY_RATE,
    STEP_S,
    STORY_S,
    FakeClock,
    _handled,
    _table,
    tuned_mosquitto,  # noqa: F401 - the fixture, used by name
    wait_for,
)
from tests.services import PrivateMosquitto

pytestmark = pytest.mark.real_services

OFFICER = Actor("li", role="duty_officer", display_name="李四")
COMMANDER = Actor("zhao", role="duty_officer", display_name="赵指挥")
DEPARTMENT = Actor("shuiwu", role="operator", display_name="水务局")
INSPECTOR = Actor("inspector-7", role="operator")


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[sa.Engine]:
    e = create_engine_for(pg_url)
    seed_reference_data(e)  # the resources an incident dispatches
    yield e
    e.dispose()


def play_flood(mqtt_url: str, engine: sa.Engine, redis_url: str, name: str) -> datetime:
    """Play the flood story through a worker; returns the clock at the end."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    after_s = 200.0
    total = STORY_S + after_s
    start = datetime.now(UTC) - timedelta(seconds=total + 5)
    clock = FakeClock(start)
    live = LiveStore(client)
    runner = RuleRunner(RuleEngine(load_rules(), client), AlertSink(engine, live, clock=clock), clock=clock)
    prefix = f"cityops-test/{name}"
    pipeline = IngestPipeline(
        engine, live, prefix=prefix, hooks=[runner, cases.VideoCaseHook(engine, clock=clock)]
    )
    worker = IngestWorker(
        MqttClient(mqtt_url, f"ingest-{name}", persistent_session=True), pipeline, shared=True, rules=runner
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    assert worker.ready.wait(15), "worker did not subscribe"
    sim = CitySimulator(
        seed=11, prefix=prefix, clock=clock, scenario="flood", story_seconds=STORY_S, start=start
    )
    publisher = MqttClient(mqtt_url, f"pub-{name}").start()
    try:
        metas = sim.meta_messages()
        publisher.publish_many([(m.topic, m.payload) for m in metas], qos=1)
        devices = schema.Device.__table__
        assert wait_for(lambda: _count(engine, devices) == len(metas))
        stations = [
            d
            for d in sim.devices
            if d.district_code == "511623" and d.type in {"water_level", "rainfall", "manhole"}
        ]
        expected: Counter[str] = Counter()
        for _ in range(int(total / STEP_S)):
            clock.now += timedelta(seconds=STEP_S)
            feed: list[Message] = sim.tick(EVERYDAY_RATE, STEP_S)
            at = clock.now - timedelta(milliseconds=137)
            for d in stations:
                body = {"ts": at.isoformat(), "metrics": sim.reading(d, at)}
                feed.append(Message(sim.router.sensor_obs(d.device_id), json.dumps(body).encode()))
            publisher.publish_many([(m.topic, m.payload) for m in feed], qos=1)
            expected.update(_table(m.topic) for m in feed)
        assert wait_for(lambda: _handled(worker, expected), 60), (
            f"handled {dict(worker.totals.stored)} of {dict(expected)}"
        )
    finally:
        publisher.stop()
        stop.set()
        thread.join(15)
    return clock.now


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_the_flood_followed_from_start_to_close(
    tuned_mosquitto: PrivateMosquitto,  # noqa: F811 - the imported fixture
    engine: sa.Engine,
    redis_url: str,
    unique_name: str,
) -> None:
    end = play_flood(tuned_mosquitto.url, engine, redis_url, unique_name)
    t = iter(range(1, 1000))

    def step() -> datetime:
        return end + timedelta(minutes=next(t))

    # ---- what the story left: an incident opened by the compound-flooding rule ----------
    with engine.connect() as conn:
        compound = conn.execute(
            sa.select(schema.Alert.id, schema.Alert.grid_id).where(schema.Alert.rule_id == "flood_compound")
        ).all()
        assert compound, "the flood raised no compound alert"
        opened = conn.execute(sa.select(schema.Incident.__table__)).mappings().all()
        # One incident per correlation episode, each from its alert, all in 邻水县.
        assert len(opened) == len(compound)
        assert {i["source_alert_id"] for i in opened} == {a.id for a in compound}
        assert {(i["source"], i["type"], i["state"], i["district_code"]) for i in opened} == {
            ("correlation", "flood", "reported", "511623")
        }
        incident_id = opened[0]["incident_id"]
        assert [i.incident_id for i in incidents.open_incidents(conn)] != []
        # The story's calls and sightings behind the alert are linked to it.
        kinds = {ln.kind for ln in incidents.links(conn, incident_id)}
        assert {"alert", "ticket"} <= kinds
        # Waterlogging sightings became cases; flooded-road calls became tickets.
        video_cases = (
            conn.execute(
                sa.select(schema.Case.case_id)
                .where(schema.Case.source == "video", schema.Case.case_type == "waterlogging")
                .order_by(schema.Case.reported_at)
            )
            .scalars()
            .all()
        )
        road_calls = (
            conn.execute(
                sa.select(schema.HotlineTicket.ticket_id)
                .where(
                    schema.HotlineTicket.category == "道路积水", schema.HotlineTicket.state == "registered"
                )
                .order_by(schema.HotlineTicket.ts)
            )
            .scalars()
            .all()
        )
        assert video_cases and road_calls

    # ---- the incident, 接报 → 关闭 ------------------------------------------------------------
    with engine.begin() as conn:
        area = incidents.affected_area(conn, incident_id, radius_m=3000)
        assert area.devices and all(h.distance_m <= 3000 * 1.005 for h in area.devices)
        assert area.tickets, "no open 12345 ticket within 3 km of the flooding"
        incidents.respond(conn, incident_id, level="IV", actor=OFFICER, now=step())
        incidents.escalate(
            conn, incident_id, level="III", reason="积水深度超过50厘米", actor=COMMANDER, now=step()
        )
        nearest = incidents.nearest_resources(
            conn, incident_id, kinds=["fire_station", "hospital"], per_kind=1
        )
        sent = [nearest["fire_station"][0].resource_id, nearest["hospital"][0].resource_id]
        assert all(h[0].eta_s > 0 for h in nearest.values())
        incidents.dispatch_resources(conn, incident_id, sent, actor=OFFICER, now=step())
        warning = incidents.draft_warning(conn, incident_id, actor=OFFICER, now=step())
        assert warning.colour == "yellow" and warning.severity == "Moderate" and "511623" in warning.geocodes
        incidents.start_handling(conn, incident_id, actor=OFFICER, now=step())
        for d in incidents.dispatched_resources(conn, incident_id):
            incidents.resource_arrived(conn, d.id, actor=OFFICER, now=step())
        incidents.note(conn, incident_id, text="会商：启动排涝泵站两座", actor=COMMANDER, now=step())
        incidents.de_escalate(conn, incident_id, level="IV", reason="积水消退", actor=COMMANDER, now=step())
        incidents.assess(
            conn, incident_id, summary="排涝完毕，转移群众15人，无伤亡", actor=OFFICER, now=step()
        )
        for d in incidents.dispatched_resources(conn, incident_id):
            incidents.release_resource(conn, d.id, actor=OFFICER, now=step())
        incidents.close(conn, incident_id, assessment="响应及时，处置得当", actor=COMMANDER, now=step())

    # ---- a flooded-road call → a case, both followed to the end ----------------------------
    ticket_id = road_calls[0]
    with engine.begin() as conn:
        converted = cases.case_from_ticket(conn, ticket_id, actor=OFFICER, now=step())
        ticket_case = converted.case.case_id
        tickets.accept(conn, ticket_id, actor=DEPARTMENT, now=step())
        tickets.start(conn, ticket_id, actor=DEPARTMENT, now=step())
        cases.file_case(conn, ticket_case, actor=OFFICER, now=step())
        cases.dispatch_case(conn, ticket_case, actor=OFFICER, now=step())
        cases.start_handling(conn, ticket_case, actor=DEPARTMENT, now=step())
        cases.report_back(conn, ticket_case, text="已疏通雨水篦子，积水排除", actor=DEPARTMENT, now=step())
        cases.verify_close(conn, ticket_case, actor=INSPECTOR, now=step())
        cases.evaluate(conn, ticket_case, grade="好", actor=OFFICER, now=step())
        tickets.reply(conn, ticket_id, text="积水已排除，感谢来电", actor=DEPARTMENT, now=step())
        tickets.close(conn, ticket_id, actor=OFFICER, now=step())
        tickets.follow_up(conn, ticket_id, rating="满意", actor=OFFICER, now=step())

    # ---- a video waterlogging case, 信息收集 → 综合评价 ---------------------------------------
    case_id = video_cases[0]
    with engine.begin() as conn:
        cases.file_case(conn, case_id, actor=OFFICER, now=step())
        cases.dispatch_case(conn, case_id, actor=OFFICER, now=step())
        cases.start_handling(conn, case_id, actor=DEPARTMENT, now=step())
        cases.report_back(conn, case_id, text="泵车抽排完毕", actor=DEPARTMENT, now=step())
        cases.rework(conn, case_id, reason="复查仍有积水", actor=INSPECTOR, now=step())
        cases.report_back(conn, case_id, text="二次抽排，已无积水", actor=DEPARTMENT, now=step())
        cases.verify_close(conn, case_id, actor=INSPECTOR, now=step())
        cases.evaluate(conn, case_id, grade="中", actor=OFFICER, now=step())

    # ---- every step is in the database ---------------------------------------------------
    with engine.connect() as conn:
        detail = incidents.incident_view(conn, incident_id)
        assert detail is not None and detail.incident.state == "closed"
        assert detail.incident.level == "IV" and detail.incident.assessment == "响应及时，处置得当"
        actions = [e.action for e in detail.timeline]
        assert actions[0] == "report" and actions[-1] == "close"
        for wanted in (
            "respond",
            "escalate",
            "dispatch",
            "warning",
            "start",
            "resource_arrive",
            "note",
            "de_escalate",
            "assess",
            "resource_release",
        ):
            assert wanted in actions, wanted
        assert all(e.actor for e in detail.timeline) and detail.timeline[0].actor == "rule:flood_compound"
        assert [r.status for r in detail.resources] == ["released", "released"]
        assert detail.warning is not None and detail.warning.colour == "yellow"

        ticket = tickets.get_ticket(conn, ticket_id)
        assert ticket is not None and ticket.state == "followed_up" and ticket.satisfaction == "satisfied"
        ticket_steps = [e.action for e in tickets.ticket_history(conn, ticket_id)]
        assert ticket_steps == ["register", "dispatch", "accept", "start", "reply", "close", "follow_up"]
        assert tickets.ticket_history(conn, ticket_id)[1].payload["case_id"] == ticket_case
        assert cases.case_of_ticket(conn, ticket_id) == ticket_case

        for cid, grade in ((ticket_case, "good"), (case_id, "fair")):
            case = cases.get_case(conn, cid)
            assert case is not None and case.state == "evaluated" and case.evaluation == grade
        video_steps = [e.action for e in cases.case_history(conn, case_id) if e.action != "evidence"]
        assert video_steps == [
            "report",
            "file",
            "dispatch",
            "start",
            "report_back",
            "rework",
            "report_back",
            "verify_close",
            "evaluate",
        ]
