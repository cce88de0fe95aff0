"""The CAP endpoints: the Atom feed links every open alert to its CAP message, each message
validates against the CAP 1.2 schema, an unknown id is 404."""

from __future__ import annotations

from datetime import timedelta

from lxml import etree

from models import alerts
from models.clock import utc_now
from models.interop import cap
from models.lifecycle import Actor
from tests.unit.dashboards.api.conftest import Api
from tests.unit.models.interop.test_cap import assert_valid_cap, draft

NS = {"cap": cap.CAP_NAMESPACE, "atom": cap.ATOM_NAMESPACE}


def test_feed_links_each_alert_to_a_valid_cap_message(api: Api) -> None:
    now = utc_now()
    with api.context.engine.begin() as conn:
        ids = [
            alerts.raise_alert(
                conn, draft(f"k{i}", severity, observed_at=now), now=now - timedelta(minutes=i)
            ).alert.id
            for i, severity in enumerate(["critical", "major", "minor", "info"])
        ]
        alerts.mark_false_alarm(conn, ids[3], actor=Actor("张三", "duty_officer"), address=None, now=now)

    feed = api.client.get("/api/cap/alerts.atom")
    assert feed.status_code == 200
    assert feed.content_type == "application/atom+xml; charset=utf-8"
    root = etree.fromstring(feed.data)
    hrefs = [link.get("href") for link in root.findall("atom:entry/atom:link", NS)]
    assert sorted(hrefs) == sorted(f"http://localhost/api/cap/{i}.xml" for i in ids)
    assert hrefs[0] == f"http://localhost/api/cap/{ids[3]}.xml", "the newest change comes first"

    for href in hrefs:
        message = api.client.get(href.removeprefix("http://localhost"))
        assert message.status_code == 200
        assert message.content_type == "application/cap+xml; charset=utf-8"
        body = assert_valid_cap(message.data)
        assert body.findtext("cap:sender", namespaces=NS) == api.context.settings.cap_sender
        assert body.findtext("cap:info/cap:web", namespaces=NS) == "http://localhost/alerts"
    cancelled = etree.fromstring(api.client.get(f"/api/cap/{ids[3]}.xml").data)
    assert cancelled.findtext("cap:msgType", namespaces=NS) == "Cancel"


def test_unknown_alert_is_404(api: Api) -> None:
    assert api.client.get("/api/cap/999999.xml").status_code == 404
    response = api.client.get("/api/cap/abc.xml")
    assert response.status_code == 404 and "不存在" in response.get_data(as_text=True)


def test_empty_feed_is_still_a_feed(api: Api) -> None:
    root = etree.fromstring(api.client.get("/api/cap/alerts.atom").data)
    assert root.findall("atom:entry", NS) == []
    assert root.findtext("atom:id", namespaces=NS) == "http://localhost/api/cap/alerts.atom"


def test_incident_warning_drafts_are_in_the_feed_and_served_as_cap(api: Api) -> None:
    from models import incidents

    officer = Actor("li", role="duty_officer", display_name="李四")
    now = utc_now()
    with api.context.engine.begin() as conn:
        iid = incidents.open_incident(
            conn,
            incident_type_key="fire",
            title="建设路居民楼火情",
            lon=106.6337,
            lat=30.4562,
            actor=officer,
            now=now,
        ).incident.incident_id
        incidents.respond(conn, iid, level="I", actor=officer, now=now)
        incidents.draft_warning(conn, iid, actor=officer, now=now)

    root = etree.fromstring(api.client.get("/api/cap/alerts.atom").data)
    hrefs = [link.get("href") for link in root.findall("atom:entry/atom:link", NS)]
    assert hrefs == [f"http://localhost/api/cap/incident/{iid}.xml"]
    message = api.client.get(f"/api/cap/incident/{iid}.xml")
    assert message.status_code == 200
    body = assert_valid_cap(message.data)
    assert body.findtext("cap:scope", namespaces=NS) == "Public"
    assert body.findtext("cap:info/cap:severity", namespaces=NS) == "Extreme"
    assert api.client.get("/api/cap/incident/YJ-none.xml").status_code == 404
