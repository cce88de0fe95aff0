"""Reference resources for emergency work: fire stations, hospitals, emergency shelters
and rescue team bases.

Seed data for the resource layer (nearest station, shelters within reach of an
incident). Names follow the institutions' usual naming; some are well-known public
institutions of Guang'an, others are representative. Positions are approximate
(within a few hundred metres of the town they are named after) and in WGS-84; each
one is checked by the tests to lie in the district it claims.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ResourceKind(StrEnum):
    FIRE_STATION = "fire_station"
    HOSPITAL = "hospital"
    SHELTER = "shelter"
    RESCUE_TEAM = "rescue_team"

    @property
    def label(self) -> str:
        return _KIND_LABELS[self]

    @property
    def capacity_unit(self) -> str:
        """What :attr:`Resource.capacity` counts for this kind."""
        return _CAPACITY_UNITS[self]


_KIND_LABELS = {
    ResourceKind.FIRE_STATION: "消防救援站",
    ResourceKind.HOSPITAL: "医院",
    ResourceKind.SHELTER: "应急避难场所",
    ResourceKind.RESCUE_TEAM: "救援队伍",
}
_CAPACITY_UNITS = {
    ResourceKind.FIRE_STATION: "firefighters",
    ResourceKind.HOSPITAL: "beds",
    ResourceKind.SHELTER: "persons",
    ResourceKind.RESCUE_TEAM: "members",
}


@dataclass(frozen=True, slots=True)
class Resource:
    """One emergency resource at a fixed place."""

    resource_id: str
    """Stable id for seeding and references, ``<kind>-<district_code>-<nn>``."""
    name: str
    kind: ResourceKind
    district_code: str
    lon: float
    """WGS-84 longitude."""
    lat: float
    """WGS-84 latitude."""
    capacity: int
    """Beds (hospital), persons (shelter), firefighters on the roster (fire station) or
    members (rescue team)."""
    phone: str | None = None


F, H, S = ResourceKind.FIRE_STATION, ResourceKind.HOSPITAL, ResourceKind.SHELTER
#: Rescue teams (救援队): each county's comprehensive emergency rescue team (综合应急救援队,
#: the county emergency bureau's own team, based in the county seat), and Huaying's mine
#: rescue team, the mountain's coal mines' legacy.
R = ResourceKind.RESCUE_TEAM

# (name, kind, district_code, lon, lat, capacity, phone)
_SEED: tuple[tuple[str, ResourceKind, str, float, float, int, str | None], ...] = (
    # 广安区 511602
    ("广安市人民医院", H, "511602", 106.6282, 30.4601, 1500, "0826-2222120"),
    ("广安市中医医院", H, "511602", 106.6351, 30.4711, 800, None),
    ("广安区人民医院", H, "511602", 106.6150, 30.4552, 600, None),
    ("广安市妇幼保健院", H, "511602", 106.6415, 30.4789, 300, None),
    ("广安区城南消防救援站", F, "511602", 106.6205, 30.4468, 45, "119"),
    ("广安区特勤消防救援站", F, "511602", 106.6450, 30.4820, 60, "119"),
    ("广安区协兴消防救援站", F, "511602", 106.7050, 30.4350, 25, "119"),
    ("广安区桂兴消防救援站", F, "511602", 106.8000, 30.7000, 20, "119"),
    ("思源广场应急避难场所", S, "511602", 106.6330, 30.4740, 12000, None),
    ("广安区滨江公园应急避难场所", S, "511602", 106.6240, 30.4660, 8000, None),
    ("广安市体育中心应急避难场所", S, "511602", 106.6530, 30.4880, 20000, None),
    ("广安市综合应急救援队", R, "511602", 106.6380, 30.4640, 80, None),
    # 前锋区 511603
    ("前锋区人民医院", H, "511603", 106.8930, 30.4950, 500, None),
    ("前锋区中医医院", H, "511603", 106.8600, 30.5200, 200, None),
    ("前锋区消防救援站", F, "511603", 106.8880, 30.4990, 40, "119"),
    ("前锋区观塘消防救援站", F, "511603", 106.9500, 30.5500, 20, "119"),
    ("奎阁公园应急避难场所", S, "511603", 106.8960, 30.4920, 6000, None),
    ("前锋区大龙应急避难场所", S, "511603", 106.6800, 30.5000, 5000, None),
    ("前锋区综合应急救援队", R, "511603", 106.8900, 30.4970, 30, None),
    # 岳池县 511621
    ("岳池县人民医院", H, "511621", 106.4370, 30.5410, 900, None),
    ("岳池县中医医院", H, "511621", 106.4400, 30.5300, 500, None),
    ("岳池县消防救援站", F, "511621", 106.4330, 30.5460, 45, "119"),
    ("岳池县罗渡消防救援站", F, "511621", 106.3480, 30.4950, 20, "119"),
    ("翔凤湖公园应急避难场所", S, "511621", 106.4450, 30.5480, 10000, None),
    ("岳池县体育场应急避难场所", S, "511621", 106.4300, 30.5350, 8000, None),
    ("岳池县综合应急救援队", R, "511621", 106.4390, 30.5430, 40, None),
    # 武胜县 511622
    ("武胜县人民医院", H, "511622", 106.2900, 30.3480, 800, None),
    ("武胜县中医医院", H, "511622", 106.2850, 30.3550, 400, None),
    ("武胜县消防救援站", F, "511622", 106.2950, 30.3520, 40, "119"),
    ("武胜县街子消防救援站", F, "511622", 106.2000, 30.4100, 20, "119"),
    ("太极岛公园应急避难场所", S, "511622", 106.2780, 30.3430, 9000, None),
    ("武胜县烈面应急避难场所", S, "511622", 106.3000, 30.4600, 7000, None),
    ("武胜县综合应急救援队", R, "511622", 106.2920, 30.3500, 40, None),
    # 邻水县 511623
    ("邻水县人民医院", H, "511623", 106.9300, 30.3340, 1000, None),
    ("邻水县中医医院", H, "511623", 106.9400, 30.3250, 500, None),
    ("邻水县消防救援站", F, "511623", 106.9350, 30.3400, 45, "119"),
    ("邻水县高滩消防救援站", F, "511623", 107.1000, 30.2000, 20, "119"),
    ("御临河公园应急避难场所", S, "511623", 106.9250, 30.3300, 9000, None),
    ("邻水县体育场应急避难场所", S, "511623", 106.9450, 30.3380, 8000, None),
    ("邻水县综合应急救援队", R, "511623", 106.9330, 30.3370, 40, None),
    # 华蓥市 511681
    ("华蓥市人民医院", H, "511681", 106.7830, 30.3900, 600, None),
    ("华蓥市中医医院", H, "511681", 106.7800, 30.3800, 300, None),
    ("华蓥市消防救援站", F, "511681", 106.7880, 30.3950, 40, "119"),
    ("华蓥市溪口消防救援站", F, "511681", 106.7500, 30.2700, 20, "119"),
    ("华蓥山广场应急避难场所", S, "511681", 106.7850, 30.3850, 7000, None),
    ("华蓥市矿山应急救援队", R, "511681", 106.7860, 30.3920, 50, None),
)

_KIND_PREFIX = {F: "fire", H: "hospital", S: "shelter", R: "rescue"}


def seed_resources() -> tuple[Resource, ...]:
    """All seed resources, in a stable order (by district, then as listed)."""
    counters: dict[tuple[ResourceKind, str], int] = {}
    out: list[Resource] = []
    for name, kind, code, lon, lat, capacity, phone in _SEED:
        n = counters[(kind, code)] = counters.get((kind, code), 0) + 1
        out.append(
            Resource(
                resource_id=f"{_KIND_PREFIX[kind]}-{code}-{n:02d}",
                name=name,
                kind=kind,
                district_code=code,
                lon=lon,
                lat=lat,
                capacity=capacity,
                phone=phone,
            )
        )
    return tuple(out)
