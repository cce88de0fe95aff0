"""Topic routing of the MQTT interface."""

from __future__ import annotations

import pytest

from ingest.routing import Kind, Route, TopicRouter


@pytest.fixture
def router() -> TopicRouter:
    return TopicRouter("cityops/v1")


@pytest.mark.parametrize(
    ("topic", "route"),
    [
        ("cityops/v1/sensors/air-511602-01/meta", Route(Kind.SENSOR_META, "air-511602-01")),
        ("cityops/v1/sensors/air-511602-01/obs", Route(Kind.SENSOR_OBS, "air-511602-01")),
        ("cityops/v1/video/cam.7/meta", Route(Kind.CAMERA_META, "cam.7")),
        ("cityops/v1/video/cam.7/events", Route(Kind.VIDEO_EVENT, "cam.7")),
        ("cityops/v1/hotline/tickets", Route(Kind.TICKET, "")),
        ("cityops/v1/hotline/tickets/12345-1/events", Route(Kind.TICKET_EVENT, "12345-1")),
    ],
)
def test_interface_topics_route(router: TopicRouter, topic: str, route: Route) -> None:
    assert router.route(topic) == route


@pytest.mark.parametrize(
    "topic",
    [
        "cityops/v2/sensors/a/obs",
        "cityops/v1/sensors/a/b/obs",
        "cityops/v1/sensors/+/obs",
        "cityops/v1/sensors/#",
        "cityops/v1/sensors//obs",
        "cityops/v1/sensors/" + "x" * 65 + "/obs",
        "cityops/v1/sensors/广安/obs",
        "cityops/v1/sensors/a/obs/extra",
        "xcityops/v1/hotline/tickets",
    ],
)
def test_other_topics_are_not_ours(router: TopicRouter, topic: str) -> None:
    assert router.route(topic) is None


def test_builders_and_router_agree(router: TopicRouter) -> None:
    assert router.route(router.sensor_obs("d1")) == Route(Kind.SENSOR_OBS, "d1")
    assert router.route(router.video_events("c1")) == Route(Kind.VIDEO_EVENT, "c1")
    assert router.route(router.ticket_events("t1")) == Route(Kind.TICKET_EVENT, "t1")


def test_metadata_is_subscribed_unshared_and_each_shared_filter_has_its_own_group(
    router: TopicRouter,
) -> None:
    subs = dict(router.subscriptions("ingest"))
    assert subs["cityops/v1/sensors/+/meta"] is None
    assert subs["cityops/v1/video/+/meta"] is None
    groups = [g for g in subs.values() if g is not None]
    assert len(groups) == 6 and len(set(groups)) == 6
    assert all(g.startswith("ingest-") for g in groups)


def test_prefix_is_configurable() -> None:
    r = TopicRouter("city/gaz/")
    assert r.route("city/gaz/hotline/tickets") == Route(Kind.TICKET, "")
    assert r.route("cityops/v1/hotline/tickets") is None
