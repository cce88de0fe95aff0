"""A realistic Guang'an feed over MQTT, for the demo and for load.

Devices are placed inside the real district boundaries (water stations along the
Jialing 嘉陵江 and Qu 渠江 rivers, cameras around the district seats), readings follow
daily cycles with noise, and 12345 tickets carry realistic Chinese categories and texts.
Everything is drawn from one seeded ``random.Random``, so ``--seed`` makes a run
repeatable message for message.

A named scenario (:mod:`ingest.scenarios`: flood, pollution, fire, crowd) layers a story
on this everyday feed; its module docstring describes each story's timeline.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shapely.geometry import Point
from shapely.prepared import prep

from geo.boundaries import DISTRICTS, load_districts
from ingest.routing import TopicRouter
from models.catalog import VIDEO_EVENT_TYPES
from models.clock import CITY_TZ, Clock, utc_now

if TYPE_CHECKING:
    from ingest.scenarios import Call, Happening, Scenario, Stream

#: Devices per district, by type. Sized so the demo shows a few hundred devices.
DEVICES_PER_DISTRICT: dict[str, int] = {
    "air_quality": 6,
    "noise": 6,
    "rainfall": 3,
    "water_level": 2,
    "manhole": 8,
    "smoke": 6,
    "gas": 4,
    "pipe_pressure": 3,
    "power": 2,
    "weather": 1,
}
CAMERAS_PER_DISTRICT = 10
#: Typical night-time LAeq per noise zone class (dB(A)), a few dB under each night limit.
NOISE_BASE_DB = {"0": 35.0, "1": 40.0, "2": 45.0, "3": 50.0, "4a": 53.0, "4b": 56.0}
WATER_STATIONS_PER_RIVER = 6
#: 警戒水位 and 保证水位 of every water-level station (metres, same datum as its readings)
WARNING_LEVEL_M = 5.0
GUARANTEE_LEVEL_M = 6.0

# Rough courses of the two rivers through the city (WGS-84), enough to put monitoring
# sections on the water; stations are only kept where they fall inside Guang'an.
RIVERS: dict[str, tuple[str, list[tuple[float, float]]]] = {
    "嘉陵江": (
        "jialing",
        [(106.20, 30.55), (106.27, 30.42), (106.30, 30.33), (106.25, 30.22), (106.28, 30.10)],
    ),
    "渠江": ("qu", [(106.82, 30.70), (106.70, 30.60), (106.63, 30.48), (106.60, 30.36), (106.50, 30.22)]),
}

TICKET_TEMPLATES: list[tuple[str, str, str]] = [
    ("噪声扰民", "夜间施工噪声扰民", "{place}附近工地夜间施工，噪声很大，影响休息，请尽快处理。"),
    ("道路破损", "路面坑洼影响通行", "{place}路段路面出现坑洼，车辆通行颠簸，存在安全隐患。"),
    ("垃圾清运", "垃圾未及时清运", "{place}小区门口垃圾桶已满两天无人清运，气味难闻。"),
    ("供水问题", "小区停水无通知", "{place}一带从早上开始停水，没有看到停水通知，请问何时恢复。"),
    ("违章建筑", "楼顶违规搭建", "{place}某栋楼顶有人违规搭建彩钢房，请相关部门核查。"),
    ("宠物扰民", "犬只夜间吠叫", "{place}有住户饲养大型犬，夜间持续吠叫，多次沟通无果。"),
    ("占道经营", "流动摊贩占道", "{place}人行道被流动摊贩占用，行人只能走机动车道。"),
    ("路灯故障", "路灯不亮", "{place}一段路灯已经坏了一周，晚上出行很不安全。"),
    ("油烟污染", "餐馆油烟扰民", "{place}临街餐馆油烟直排，楼上住户无法开窗。"),
    ("交通设施", "红绿灯故障", "{place}路口红绿灯不亮，早晚高峰拥堵严重。"),
]
#: Shares of simulated orders that are never accepted (they go overdue), returned once by
#: the department, and rated at the follow-up call.
NEGLECTED_SHARE = 0.04
RETURNED_SHARE = 0.03
RATED_SHARE = 0.85
#: What departments answer, by category (the 答复 text).
REPLIES: dict[str, str] = {
    "噪声扰民": "已联系施工单位，夜间停止高噪声作业，将持续巡查。",
    "道路破损": "已安排养护单位修补路面，预计三日内完成。",
    "垃圾清运": "已通知环卫公司清运，并加密该点位清运频次。",
    "供水问题": "系管网抢修临时停水，已恢复供水，后续停水将提前公告。",
    "违章建筑": "已现场核查并下达限期拆除通知书。",
    "宠物扰民": "已约谈犬只饲养人，要求规范饲养。",
    "占道经营": "已劝离流动摊贩，并纳入日常巡查。",
    "路灯故障": "已更换损坏灯具，路灯恢复照明。",
    "油烟污染": "已责令餐馆安装油烟净化设施并限期整改。",
    "交通设施": "已修复信号灯故障，路口通行恢复正常。",
}
DEFAULT_REPLY = "已受理并处理完毕。"
PLACES = ["城南新区", "滨江路", "协兴镇", "建设路", "金安大道", "枣山园区", "万盛街", "小平故里", "奎阁街道"]


@dataclass(frozen=True, slots=True)
class SimDevice:
    device_id: str
    type: str
    name: str
    lon: float
    lat: float
    district_code: str
    props: dict[str, Any] = field(default_factory=dict)
    #: a per-device offset so stations do not move in lockstep
    bias: float = 0.0


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Mix:
    """What share of the everyday feed is video sightings and new 12345 orders (the rest
    is sensor readings; each order then brings its own lifecycle events)."""

    video: float
    tickets: float

    def __post_init__(self) -> None:
        if not (self.video >= 0 and self.tickets >= 0 and self.video + self.tickets <= 1):
            raise ValueError(f"mix shares must be ≥ 0 and add up to at most 1: {self}")


#: ``demo``: a lively screen at the demo's 40 msgs/s (a sighting every 0.4 s, an order
#: every second). ``city``: Guang'an's proportions at full scale (docs/scaling.md: 833
#: readings, 2.9 sightings and 0.035 new orders a second), for long runs at thousands of
#: messages a second, where the demo's shares would mean 60 new orders a second — five
#: million a day, against the city's 3,000.
MIXES: dict[str, Mix] = {
    "demo": Mix(video=0.07, tickets=0.03),
    "city": Mix(video=0.0035, tickets=0.00005),
}


class CitySimulator:
    """Generates the city's messages; a publisher function sends them.

    ``scenario`` (a name or a :class:`~ingest.scenarios.Scenario`) plays its story over
    ``story_seconds`` of wall-clock time from ``start`` (default: now), on top of the
    everyday feed.
    """

    def __init__(
        self,
        *,
        seed: int = 1,
        prefix: str = "cityops/v1",
        clock: Clock | None = None,
        scenario: str | Scenario = "normal",
        story_seconds: float | None = None,
        start: datetime | None = None,
        mix: str | Mix = "demo",
    ):
        # Imported here: the scenarios build on this module's SimDevice.
        from ingest.scenarios import DEFAULT_STORY_SECONDS, City, scenario_named

        if isinstance(mix, str):
            if mix not in MIXES:
                raise ValueError(f"unknown mix {mix!r}; known: {', '.join(MIXES)}")
            mix = MIXES[mix]
        self.mix = mix
        self.rng = random.Random(seed)
        self.router = TopicRouter(prefix)
        self.clock = clock or utc_now
        self.scenario = scenario_named(scenario) if isinstance(scenario, str) else scenario
        story_seconds = DEFAULT_STORY_SECONDS if story_seconds is None else story_seconds
        if story_seconds <= 0:
            raise ValueError(f"story_seconds must be positive, not {story_seconds}")
        self.story_length = timedelta(seconds=story_seconds)
        self.story_start = start or self.clock()
        districts = load_districts().set_index("district_code")
        shapes = {code: prep(districts.loc[code, "geometry"]) for code in DISTRICTS_BY_CODE}
        devices = self._place_devices(districts)
        devices += self.scenario.devices(City(tuple(devices), shapes))
        self.devices = devices
        self.city = City(tuple(devices), shapes)
        self._sensors = [d for d in devices if d.type != "camera"]
        self._cameras = [d for d in devices if d.type == "camera"]
        self._streams: tuple[Stream, ...] = self.scenario.streams()
        self._ticket_seq = 0
        self._event_seq = 0
        # Ticket ids carry the run's start (city time), so a restarted demo on the same data
        # does not reuse the ids of orders it already stored (they would be duplicates).
        self._run_tag = f"{self.story_start.astimezone(CITY_TZ):%H%M%S}"
        # The hotline system's handling of each order: its own random stream, so adding it
        # leaves every other message of a seed unchanged.
        self._process_rng = random.Random(f"{seed}/hotline-process")
        self._ticket_steps: list[tuple[datetime, int, str, dict[str, Any]]] = []
        self._step_seq = 0

    def progress(self, now: datetime) -> float:
        """How far the story is at ``now``: 0 at its start, 1 at its end and after."""
        return min(1.0, max(0.0, (now - self.story_start) / self.story_length))

    # ---- placement ---------------------------------------------------------------------

    def _place_devices(self, districts: Any) -> list[SimDevice]:
        devices: list[SimDevice] = []
        for district in DISTRICTS:
            shape = districts.loc[district.code, "geometry"]
            sample = functools.partial(self._sample_in, shape, prep(shape), shape.representative_point())

            for dtype, n in DEVICES_PER_DISTRICT.items():
                urban = dtype in {"manhole", "smoke", "gas", "pipe_pressure", "noise"}
                for i in range(n):
                    lon, lat = sample(0.03 if urban else 0.0)
                    devices.append(
                        SimDevice(
                            device_id=f"{dtype}-{district.code}-{i + 1:02d}",
                            type=dtype,
                            name=f"{district.name}{_TYPE_NAMES[dtype]}{i + 1:02d}",
                            lon=lon,
                            lat=lat,
                            district_code=district.code,
                            props=_props(dtype, i),
                            bias=self.rng.uniform(-0.2, 0.2),
                        )
                    )
            for i in range(CAMERAS_PER_DISTRICT):
                lon, lat = sample(0.02)
                devices.append(
                    SimDevice(
                        f"cam-{district.code}-{i + 1:02d}",
                        "camera",
                        f"{district.name}视频{i + 1:02d}",
                        lon,
                        lat,
                        district.code,
                    )
                )
        city = prep(districts.geometry.union_all())
        for river, (river_id, course) in RIVERS.items():
            for i in range(WATER_STATIONS_PER_RIVER):
                lon, lat = _along(course, (i + 0.5) / WATER_STATIONS_PER_RIVER)
                if not city.contains(Point(lon, lat)):
                    continue
                code = next(c for c, g in districts.geometry.items() if g.contains(Point(lon, lat)))
                devices.append(
                    SimDevice(
                        f"water-{code}-{river_id}-{i + 1:02d}",
                        "water_quality",
                        f"{river}{i + 1}号断面",
                        round(lon, 6),
                        round(lat, 6),
                        code,
                        {"body": "river", "river": river, "target_class": "III"},
                        self.rng.uniform(-0.2, 0.2),
                    )
                )
        return devices

    def _sample_in(self, shape: Any, inside: Any, centre: Point, spread: float) -> tuple[float, float]:
        """A random point inside ``shape``: clustered around ``centre`` (urban) or uniform (rural)."""
        minx, miny, maxx, maxy = shape.bounds
        for _ in range(1000):
            if spread:
                x, y = self.rng.gauss(centre.x, spread), self.rng.gauss(centre.y, spread)
            else:
                x, y = self.rng.uniform(minx, maxx), self.rng.uniform(miny, maxy)
            if inside.contains(Point(x, y)):
                return round(x, 6), round(y, 6)
        return round(centre.x, 6), round(centre.y, 6)

    # ---- messages ----------------------------------------------------------------------

    def meta_messages(self) -> list[Message]:
        out = []
        for d in self.devices:
            body = {"type": d.type, "lon": d.lon, "lat": d.lat, "name": d.name, "props": d.props}
            topic = (
                self.router.camera_meta(d.device_id)
                if d.type == "camera"
                else self.router.sensor_meta(d.device_id)
            )
            out.append(Message(topic, _json(body), retain=True))
        return out

    def tick(self, rate: float, seconds: float = 1.0) -> list[Message]:
        """About ``rate × seconds`` messages for the interval that just passed, plus the story's.

        Messages are spread evenly over the interval with distinct timestamps, so no two
        readings of one device share a timestamp (that would be one reading sent twice).
        """
        end = self.clock()
        sensors, cameras = self._sensors, self._cameras
        n = _poisson(self.rng, rate * seconds)
        # The story's messages take slots among the everyday ones, so every message of the
        # interval still has its own timestamp.
        extra = self._story_draws(end, seconds)
        total = n + len(extra)
        story_slots = (
            dict(zip(self.rng.sample(range(total), len(extra)), extra, strict=True)) if extra else {}
        )
        out: list[Message] = []
        readings = 1.0 - self.mix.video - self.mix.tickets
        step = timedelta(seconds=seconds) / max(total, 1)
        for i in range(total):
            now = end - step * (total - 1 - i)
            stream = story_slots.get(i)
            if stream is not None:
                out.append(self._story_message(stream.make(self.city, self.progress(now), self.rng), now))
                continue
            roll = self.rng.random()
            if roll < readings:
                d = self.rng.choice(sensors)
                out.append(self._observation(d, now))
            elif roll < readings + self.mix.video:
                out.append(self._video_event(self.rng.choice(cameras), now))
            else:
                out.append(self._ticket(now))
        out.extend(self._due_ticket_steps(end))
        return out

    def _story_draws(self, end: datetime, seconds: float) -> list[Stream]:
        """How many messages each of the story's streams adds to the interval ending at ``end``."""
        p = self.progress(end - timedelta(seconds=seconds / 2))
        draws: list[Stream] = []
        for stream in self._streams:
            draws += [stream] * _poisson(self.rng, stream.rate(p) * seconds)
        return draws

    def _story_message(self, happening: Happening, now: datetime) -> Message:
        from ingest.scenarios import Call, ReadingOf

        if isinstance(happening, ReadingOf):
            return self._observation(happening.device, now)
        if isinstance(happening, Call):
            return self._call_message(happening, now)
        return self._event_message(
            happening.camera, happening.kind, happening.confidence, happening.lon, happening.lat, now
        )

    def _observation(self, d: SimDevice, now: datetime) -> Message:
        body = {
            "ts": now.astimezone(CITY_TZ).isoformat(timespec="microseconds"),
            "metrics": self.reading(d, now),
        }
        return Message(self.router.sensor_obs(d.device_id), _json(body))

    def reading(self, d: SimDevice, now: datetime) -> dict[str, float]:
        """What ``d`` reports at ``now``: its everyday reading as the scenario's story changes it."""
        return self.scenario.adjust(d, self._everyday_reading(d, now), self.progress(now), self.rng)

    def _everyday_reading(self, d: SimDevice, now: datetime) -> dict[str, float]:
        local = now.astimezone(CITY_TZ)
        hour = local.hour + local.minute / 60
        # Two daily peaks (morning and evening traffic) and a night trough.
        traffic = 0.6 + 0.4 * math.exp(-((hour - 8) ** 2) / 4) + 0.4 * math.exp(-((hour - 18.5) ** 2) / 5)
        g = self.rng.gauss
        k = 1 + d.bias
        if d.type == "air_quality":
            pm25 = max(1.0, 38 * k * traffic + g(0, 5))
            return {
                "pm25": round(pm25, 1),
                "pm10": round(max(2.0, pm25 * 1.6 + g(0, 6)), 1),
                "so2": round(max(1.0, 9 * k + g(0, 2)), 1),
                "no2": round(max(1.0, 30 * k * traffic + g(0, 5)), 1),
                "co": round(max(0.1, 0.7 * k * traffic + g(0, 0.1)), 2),
                "o3": round(max(2.0, 60 + 70 * math.sin(math.pi * max(0.0, hour - 7) / 13) * k + g(0, 8)), 1),
            }
        if d.type == "water_quality":
            return {
                "ph": round(7.6 + g(0, 0.15), 2),
                "do": round(max(0.5, 7.2 - 0.6 * k + g(0, 0.3)), 2),
                "codmn": round(max(0.5, 3.2 * k + g(0, 0.4)), 2),
                "nh3n": round(max(0.02, 0.45 * k + g(0, 0.08)), 3),
                "tp": round(max(0.005, 0.12 * k + g(0, 0.02)), 3),
                "temp": round(16 + 6 * math.sin(math.pi * hour / 24) + g(0, 0.3), 1),
            }
        if d.type == "noise":
            # Quiet nights and busier days around each zone's typical level, below its GB 3096
            # limits on an ordinary day (so the everyday feed raises no noise alerts).
            base = NOISE_BASE_DB.get(str(d.props.get("zone", "2")), 45.0) + 10 * d.bias
            laeq = max(30.0, base + 13 * (traffic - 0.6) + g(0, 1.5))
            return {"laeq": round(laeq, 1), "lmax": round(laeq + abs(g(8, 4)), 1)}
        if d.type == "rainfall":
            rain = max(0.0, g(0, 0.6)) if self.rng.random() < 0.2 else 0.0
            return {"rain_1h": round(rain, 1), "rain_24h": round(rain * 6, 1)}
        if d.type == "water_level":
            return {
                "level": round(max(0.0, 4.2 + 0.3 * k + g(0, 0.05)), 2),
                "flow": round(max(0.0, 800 + g(0, 40)), 0),
            }
        if d.type == "manhole":
            return {"tilt": round(abs(g(0, 0.6)), 1), "open": 0.0, "water_level": round(abs(g(0.3, 0.1)), 2)}
        if d.type == "smoke":
            return {"smoke": round(abs(g(0.02, 0.01)), 3), "temp": round(22 + g(0, 1.5), 1)}
        if d.type == "gas":
            return {"ch4_lel": round(abs(g(0.5, 0.3)), 2), "co_ppm": round(abs(g(2, 1)), 1)}
        if d.type == "pipe_pressure":
            return {
                "pressure": round(max(0.05, 0.32 - 0.05 * traffic + g(0, 0.01)), 3),
                "flow": round(max(0.0, 420 * traffic + g(0, 20)), 0),
            }
        if d.type == "power":
            return {
                "load_kw": round(max(0.0, 5200 * traffic * k + g(0, 150)), 0),
                "voltage": round(10000 + g(0, 60), 0),
                "outage": 0.0,
            }
        return {
            "temp": round(14 + 7 * math.sin(math.pi * max(0.0, hour - 6) / 14) + g(0, 0.5), 1),
            "humidity": round(min(100.0, max(20.0, 78 - 15 * traffic + g(0, 3))), 0),
            "wind_speed": round(abs(g(1.6, 0.8)), 1),
            "wind_dir": round(self.rng.uniform(0, 360), 0),
            "pressure": round(985 + g(0, 1.5), 1),
        }

    def _video_event(self, camera: SimDevice, now: datetime) -> Message:
        kind = self.rng.choices(list(VIDEO_EVENT_TYPES), weights=[30, 20, 18, 6, 2, 5, 12, 3], k=1)[0]
        confidence = self.rng.uniform(0.6, 0.99)
        lon = camera.lon + self.rng.gauss(0, 0.0008)
        lat = camera.lat + self.rng.gauss(0, 0.0008)
        return self._event_message(camera, kind, confidence, lon, lat, now)

    def _event_message(
        self, camera: SimDevice, kind: str, confidence: float, lon: float, lat: float, now: datetime
    ) -> Message:
        self._event_seq += 1
        body = {
            "event_id": f"ve-{camera.device_id}-{now:%Y%m%d%H%M%S}-{self._event_seq}",
            "ts": now.astimezone(CITY_TZ).isoformat(timespec="seconds"),
            "type": kind,
            "confidence": round(confidence, 2),
            "lon": round(lon, 6),
            "lat": round(lat, 6),
        }
        return Message(self.router.video_events(camera.device_id), _json(body))

    def _ticket(self, now: datetime) -> Message:
        from ingest.scenarios import Call

        category, title, content = self.rng.choice(TICKET_TEMPLATES)
        place = self.rng.choice(PLACES)
        near = self.rng.choice(self._cameras)
        call = Call(
            category,
            title,
            content.format(place=place),
            f"{DISTRICTS_BY_CODE[near.district_code]}{place}",
            round(near.lon + self.rng.gauss(0, 0.004), 6),
            round(near.lat + self.rng.gauss(0, 0.004), 6),
            "urgent" if self.rng.random() < 0.1 else "normal",
        )
        return self._call_message(call, now)

    def _call_message(self, call: Call, now: datetime) -> Message:
        self._ticket_seq += 1
        ticket_id = f"12345-{now.astimezone(CITY_TZ):%Y%m%d}-{self._run_tag}-{self._ticket_seq:05d}"
        self._plan_ticket(ticket_id, call, now)
        body = {
            "ticket_id": ticket_id,
            "ts": now.astimezone(CITY_TZ).isoformat(timespec="seconds"),
            "channel": self.rng.choices(["phone", "wechat", "web", "app", "sms"], weights=[60, 20, 8, 10, 2])[
                0
            ],
            "category": call.category,
            "title": call.title,
            "content": call.content,
            "address": call.address,
            "lon": call.lon,
            "lat": call.lat,
            "urgency": call.urgency,
            "caller": {
                "name": self.rng.choice(["张", "王", "李", "刘", "陈"]) + self.rng.choice(["先生", "女士"]),
                "phone": f"13{self.rng.randrange(10**9):09d}",
            },
        }
        return Message(self.router.tickets(), _json(body))

    # ---- the hotline system working the orders ------------------------------------------

    def _plan_ticket(self, ticket_id: str, call: Call, now: datetime) -> None:
        """Schedule what the hotline system will report about a new order.

        Handling is compressed like the stories (minutes, not the hours or days of real
        orders), so a demo shows dispatches, replies, closures and ratings soon after it
        starts. Most orders run the whole loop; a few are returned once by the department
        and re-dispatched to the township, and a few are never accepted, so they go overdue
        as neglected orders do.
        """
        from models.tickets import FALLBACK_DEPARTMENT, suggest_dispatch

        rng = self._process_rng
        district = self._district_near(call.lon, call.lat)
        suggestion = suggest_dispatch(call.category, district)
        at = now + timedelta(seconds=rng.uniform(20, 120))
        self._schedule(
            at,
            ticket_id,
            {
                "action": "dispatched",
                "department": suggestion.department,
                "district_code": suggestion.district_code,
            },
        )
        roll = rng.random()
        if roll < NEGLECTED_SHARE:
            return
        if roll < NEGLECTED_SHARE + RETURNED_SHARE and suggestion.department != FALLBACK_DEPARTMENT:
            at += timedelta(seconds=rng.uniform(60, 300))
            self._schedule(at, ticket_id, {"action": "returned", "reason": "非本部门职责，请转属地办理"})
            at += timedelta(seconds=rng.uniform(30, 120))
            self._schedule(
                at,
                ticket_id,
                {
                    "action": "dispatched",
                    "department": FALLBACK_DEPARTMENT,
                    "district_code": suggestion.district_code,
                },
            )
        at += timedelta(seconds=rng.uniform(30, 600))
        self._schedule(at, ticket_id, {"action": "accepted"})
        at += timedelta(seconds=rng.uniform(10, 60))
        self._schedule(at, ticket_id, {"action": "started"})
        at += timedelta(seconds=rng.uniform(120, 1200))
        self._schedule(
            at, ticket_id, {"action": "replied", "note": REPLIES.get(call.category, DEFAULT_REPLY)}
        )
        at += timedelta(seconds=rng.uniform(30, 180))
        self._schedule(at, ticket_id, {"action": "closed"})
        if rng.random() < RATED_SHARE:
            at += timedelta(seconds=rng.uniform(60, 600))
            rating = rng.choices(["satisfied", "basically_satisfied", "dissatisfied"], weights=[80, 15, 5])[0]
            self._schedule(at, ticket_id, {"action": "rated", "rating": rating})

    def _district_near(self, lon: float, lat: float) -> str | None:
        for code, shape in self.city.shapes.items():
            if shape.contains(Point(lon, lat)):
                return code
        return None

    def _schedule(self, at: datetime, ticket_id: str, event: dict[str, Any]) -> None:
        self._step_seq += 1
        heapq.heappush(self._ticket_steps, (at, self._step_seq, ticket_id, event))

    def _due_ticket_steps(self, end: datetime) -> list[Message]:
        out: list[Message] = []
        while self._ticket_steps and self._ticket_steps[0][0] <= end:
            at, seq, ticket_id, event = heapq.heappop(self._ticket_steps)
            body = {
                "event_id": f"{ticket_id}-s{seq}",
                "ts": at.astimezone(CITY_TZ).isoformat(timespec="seconds"),
                "actor": "12345热线系统",
                **{k: v for k, v in event.items() if v is not None},
            }
            out.append(Message(self.router.ticket_events(ticket_id), _json(body)))
        return out


def run(
    publish: Callable[[Message], None],
    sim: CitySimulator,
    *,
    rate: float,
    stop: Callable[[], bool],
    interval: float = 1.0,
) -> Iterator[int]:
    """Publish metadata once, then a tick every ``interval`` seconds until ``stop()``; yields counts."""
    for m in sim.meta_messages():
        publish(m)
    # Devices register before they report; give ingest a moment to take the registrations.
    time.sleep(min(interval, 1.0))
    next_at = time.monotonic()
    while not stop():
        batch = sim.tick(rate, interval)
        for m in batch:
            publish(m)
        yield len(batch)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


DISTRICTS_BY_CODE = {d.code: d.name for d in DISTRICTS}
_TYPE_NAMES = {
    "air_quality": "空气站",
    "noise": "噪声点",
    "rainfall": "雨量站",
    "water_level": "水位站",
    "manhole": "井盖",
    "smoke": "烟感",
    "gas": "燃气监测",
    "pipe_pressure": "管网压力",
    "power": "配电监测",
    "weather": "气象站",
}


def _props(dtype: str, i: int) -> dict[str, Any]:
    if dtype == "noise":
        return {"zone": ["1", "2", "3", "4a"][i % 4]}
    if dtype == "water_level":
        # 警戒水位 and 保证水位, so rules can compare a station with its own levels; everyday
        # readings stay around 4.5 m, under both.
        return {"warning_level": WARNING_LEVEL_M, "guarantee_level": GUARANTEE_LEVEL_M}
    return {}


def _along(course: list[tuple[float, float]], fraction: float) -> tuple[float, float]:
    segments = list(itertools.pairwise(course))
    lengths = [math.dist(a, b) for a, b in segments]
    target = fraction * sum(lengths)
    for (a, b), length in zip(segments, lengths, strict=True):
        if target <= length:
            f = target / length
            return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
        target -= length
    return course[-1]


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:  # normal approximation: exact sampling costs O(mean)
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
