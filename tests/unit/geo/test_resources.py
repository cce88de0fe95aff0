"""Emergency resource seed data."""

from __future__ import annotations

from collections import Counter

from geo.boundaries import DISTRICTS
from geo.locate import locate
from geo.resources import Resource, ResourceKind, seed_resources


def test_enough_resources_of_every_kind_everywhere() -> None:
    resources = seed_resources()
    assert len(resources) >= 30
    assert all(isinstance(r, Resource) for r in resources)
    per_district = Counter(r.district_code for r in resources)
    assert set(per_district) == {d.code for d in DISTRICTS}
    for d in DISTRICTS:
        kinds = {r.kind for r in resources if r.district_code == d.code}
        assert kinds == set(ResourceKind), d.name
    assert len({r.resource_id for r in resources}) == len(resources)
    assert len({r.name for r in resources}) == len(resources)


def test_every_resource_lies_in_its_district() -> None:
    resources = seed_resources()
    loc = locate([r.lon for r in resources], [r.lat for r in resources])
    wrong = [
        (r.name, r.district_code, got)
        for r, got in zip(resources, loc.district_code, strict=True)
        if got != r.district_code
    ]
    assert wrong == []


def test_names_and_capacity_fit_the_kind() -> None:
    for r in seed_resources():
        assert r.capacity > 0
        if r.kind is ResourceKind.HOSPITAL:
            assert r.name.endswith(("医院", "保健院"))
        elif r.kind is ResourceKind.FIRE_STATION:
            assert r.name.endswith("消防救援站")
        elif r.kind is ResourceKind.RESCUE_TEAM:
            assert r.name.endswith("救援队") and r.resource_id.startswith("rescue-")
        else:
            assert r.name.endswith("应急避难场所")
    assert ResourceKind.HOSPITAL.capacity_unit == "beds"
    assert ResourceKind.SHELTER.label == "应急避难场所"
    assert ResourceKind.RESCUE_TEAM.capacity_unit == "members"


def test_every_kind_has_travel_assumptions() -> None:
    """Each seeded kind has its own arrival-time assumption, not the catch-all one."""
    from models.spatial import TRAVEL

    assert {k.value for k in ResourceKind} <= set(TRAVEL)
    assert ResourceKind.RESCUE_TEAM.label == TRAVEL["rescue_team"].label_zh
