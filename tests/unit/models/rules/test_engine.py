"""The rule kinds on an in-process Redis: hysteresis, durations, windows, dedup and clears."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fakeredis
import pytest
from redis import Redis
from redis.client import Pipeline

from models.rules import Clear, Draft, RuleEngine, load_rules, parse_rules
from models.rules import engine as engine_module
from models.rules.engine import (
    BUSY_READY_KEY,
    DEVICE_META_REFRESH_S,
    DEVICES_KEY,
    RATE_POINTS_PER_WINDOW,
    SEEN_KEY,
    active_key,
    busy_key,
    state_key,
)
from models.rules.state import CondState

from .support import at, batch, reading, rule_toml, ticket, video

Make = Callable[..., RuleEngine]

LEVEL = """
device_types = ["water_level"]
metric = "level"
value_prop = "warning_level"
value = 5.0
hysteresis = 0.1
min_duration_s = {duration}
refresh_s = 1000
"""
PROPS = {"warning_level": 4.8}


def kinds(decisions: list[Draft | Clear]) -> list[str]:
    return ["raise" if isinstance(d, Draft) else "clear" for d in decisions]


def levels(engine: RuleEngine, values: list[tuple[float, float]], device: str = "wl-1") -> list[str]:
    out: list[str] = []
    for seconds, value in values:
        out += kinds(engine.evaluate(batch([reading(device, seconds, {"level": value}, props=PROPS)])))
    return out


# ---- threshold ------------------------------------------------------------------------------


def test_threshold_hysteresis_does_not_flap_around_the_level(make_engine: Make) -> None:
    engine = make_engine(rule_toml("threshold", LEVEL.format(duration=0)))
    # The station's own warning level (4.8 m from its props) counts, not the 5.0 m fallback.
    # Readings wander around 4.8 m: one alert, open until 0.1 m below the level.
    values = [(0, 4.7), (10, 4.8), (20, 4.75), (30, 4.82), (40, 4.71), (50, 4.79), (60, 4.69)]
    assert levels(engine, values) == ["raise", "clear"]
    assert levels(engine, [(70, 4.79), (80, 4.81)]) == ["raise"]


def test_threshold_minimum_duration(make_engine: Make) -> None:
    engine = make_engine(rule_toml("threshold", LEVEL.format(duration=120)))
    assert levels(engine, [(0, 4.9), (60, 4.95), (110, 5.0)]) == []
    # A dip below the level (inside the band) restarts the clock.
    assert levels(engine, [(115, 4.78), (130, 4.9), (240, 4.9)]) == []
    assert levels(engine, [(250, 4.9)]) == ["raise"]


def test_threshold_draft_has_location_evidence_and_chinese_text(make_engine: Make) -> None:
    engine = make_engine(
        rule_toml(
            "threshold",
            LEVEL.format(duration=0),
            title="{device_name}水位{value}米",
            message="{district}{device_name}超过{threshold}米",
        )
    )
    engine.redis.hset("cityops:device:wl-1", "name", "邻水县水位站01")
    (draft,) = engine.evaluate(batch([reading("wl-1", 0, {"level": 5.234}, props=PROPS)]))
    assert isinstance(draft, Draft)
    assert draft.title == "邻水县水位站01水位5.23米"
    assert draft.message == "邻水县邻水县水位站01超过4.8米"
    assert draft.dedup_key == "rule_a:wl-1"
    assert (draft.district_code, draft.grid_id, draft.lon, draft.lat) == (
        "511623",
        "8840a1b2c3fffff",
        106.93,
        30.33,
    )
    assert (draft.source_kind, draft.source_id, draft.observed_at) == ("device", "wl-1", at(0))
    assert draft.evidence["readings"] == [{"ts": at(0).isoformat(), "level": 5.234}]


def test_a_persisting_condition_keeps_one_dedup_key_and_refreshes(make_engine: Make) -> None:
    engine = make_engine(rule_toml("threshold", LEVEL.format(duration=0).replace("1000", "60")))
    drafts = [
        d
        for s in range(0, 300, 10)
        for d in engine.evaluate(batch([reading("wl-1", s, {"level": 5.5}, props=PROPS)]))
    ]
    assert {d.dedup_key for d in drafts} == {"rule_a:wl-1"}
    assert [d.observed_at for d in drafts] == [at(0), at(60), at(120), at(180), at(240)]
    assert len(drafts[-1].evidence["readings"]) == 6  # bounded


def test_readings_in_one_batch_are_judged_in_time_order(make_engine: Make) -> None:
    engine = make_engine(rule_toml("threshold", LEVEL.format(duration=0)))
    late_first = [
        reading("wl-1", 20, {"level": 4.5}, props=PROPS),
        reading("wl-1", 10, {"level": 5.5}, props=PROPS),
    ]
    assert kinds(engine.evaluate(batch(late_first))) == ["raise", "clear"]
    # A reading older than the newest judged (delivered late) does not reopen anything.
    assert engine.evaluate(batch([reading("wl-1", 15, {"level": 5.5}, props=PROPS)])) == []
    assert kinds(engine.evaluate(batch([reading("wl-1", 25, {"level": 5.5}, props=PROPS)]))) == ["raise"]


def test_idle_subjects_are_not_read_and_busy_ones_are_listed(make_engine: Make) -> None:
    engine = make_engine(rule_toml("threshold", LEVEL.format(duration=0)))
    assert levels(engine, [(0, 4.0)], device="wl-quiet") == []
    # An idle subject's ordinary reading writes no state and lists nothing.
    assert not engine.redis.exists(state_key("rule_a", "wl-quiet"))
    assert engine.redis.smembers(busy_key("rule_a")) == set()
    assert levels(engine, [(0, 5.0)]) == ["raise"]
    assert engine.redis.smembers(busy_key("rule_a")) == {"wl-1"}
    assert levels(engine, [(10, 4.0)]) == ["clear"]
    # Cleared: idle again (only the time is kept), so no longer listed.
    assert engine.redis.smembers(busy_key("rule_a")) == set()
    assert CondState.from_hash(engine.redis.hgetall(state_key("rule_a", "wl-1"))).idle


def test_a_pending_condition_is_listed_and_its_end_is_judged(make_engine: Make) -> None:
    engine = make_engine(rule_toml("threshold", LEVEL.format(duration=120)))
    assert levels(engine, [(0, 4.9)]) == []
    assert engine.redis.smembers(busy_key("rule_a")) == {"wl-1"}
    # The reading that ends it is judged although it does not hold the condition.
    assert levels(engine, [(60, 4.0)]) == []
    assert engine.redis.smembers(busy_key("rule_a")) == set()
    assert levels(engine, [(130, 4.9), (200, 4.9)]) == []  # the clock started again at 130


def test_state_from_before_the_busy_sets_still_clears(redis_client: fakeredis.FakeRedis) -> None:
    rules = parse_rules("version = 1\n" + rule_toml("threshold", LEVEL.format(duration=0)))
    assert kinds(
        RuleEngine(rules, redis_client).evaluate(batch([reading("wl-1", 0, {"level": 5.0}, props=PROPS)]))
    ) == ["raise"]
    # As an installation upgraded with an alert open would have it: state, no busy sets.
    redis_client.delete(busy_key("rule_a"), BUSY_READY_KEY)
    restarted = RuleEngine(rules, redis_client)
    decisions = restarted.evaluate(batch([reading("wl-1", 10, {"level": 4.0}, props=PROPS)]))
    assert kinds(decisions) == ["clear"]
    assert redis_client.get(BUSY_READY_KEY) == "1"


@pytest.mark.parametrize("redis_client", ["embedded", "redis"], indirect=True)
def test_warm_up_lists_open_conditions_and_loads_the_rate_script_before_any_batch(
    redis_client: fakeredis.FakeRedis,
) -> None:
    rules = parse_rules("version = 1\n" + rule_toml("threshold", LEVEL.format(duration=0)))
    RuleEngine(rules, redis_client).evaluate(batch([reading("wl-1", 0, {"level": 5.0}, props=PROPS)]))
    redis_client.delete(busy_key("rule_a"), BUSY_READY_KEY)
    real = not isinstance(redis_client, fakeredis.FakeRedis)
    if real:
        redis_client.script_flush()  # as after a Redis restart
    RuleEngine(rules, redis_client).warm_up()
    assert redis_client.smembers(busy_key("rule_a")) == {"wl-1"}
    assert redis_client.get(BUSY_READY_KEY) == "1"
    if real:
        assert redis_client.script_exists(engine_module._RATE_WINDOWS_SHA) == [True]


def test_device_metadata_is_written_when_it_changes_or_is_due() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    now = [1000.0]
    rules = parse_rules("version = 1\n" + rule_toml("threshold", LEVEL.format(duration=0)))
    engine = RuleEngine(rules, client, clock=lambda: now[0])
    engine.evaluate(batch([reading("wl-1", 0, {"level": 4.0}, props=PROPS)]))
    assert client.zscore(SEEN_KEY, "wl-1") is not None
    assert "water_level" in client.hget(DEVICES_KEY, "wl-1")
    client.hdel(DEVICES_KEY, "wl-1")  # e.g. lost with a flushed Redis
    engine.evaluate(batch([reading("wl-1", 10, {"level": 4.0}, props=PROPS)]))
    assert client.hget(DEVICES_KEY, "wl-1") is None  # unchanged and not yet due
    engine.evaluate(batch([reading("wl-1", 20, {"level": 4.0}, props={**PROPS, "report_period_s": 30})]))
    assert '"period_s": 30' in client.hget(DEVICES_KEY, "wl-1")  # changed: written at once
    client.hdel(DEVICES_KEY, "wl-1")
    now[0] += DEVICE_META_REFRESH_S
    engine.evaluate(batch([reading("wl-1", 30, {"level": 4.0}, props={**PROPS, "report_period_s": 30})]))
    assert client.hget(DEVICES_KEY, "wl-1") is not None  # due again
    # Last-seen never moves back for a late reading.
    engine.evaluate(batch([reading("wl-1", 5, {"level": 4.0}, props=PROPS)]))
    assert client.zscore(SEEN_KEY, "wl-1") == at(30).timestamp()


def test_two_workers_judging_the_same_condition_raise_it_once(redis_client: fakeredis.FakeRedis) -> None:
    rules = load_rules()
    first, second = RuleEngine(rules, redis_client), RuleEngine(rules, redis_client)
    smoke = [reading("smoke-1", 0, {"smoke": 1.2, "temp": 30.0}, device_type="smoke")]
    assert kinds(first.evaluate(batch(smoke))) == ["raise"]
    # Redelivered to another worker: the state in Redis says the alert is open already.
    assert second.evaluate(batch(smoke)) == []


# ---- rate -----------------------------------------------------------------------------------

RATE = """
device_types = ["water_level"]
metric = "level"
per_hour = 0.3
window_s = 1800
min_points = 4
min_span_s = 300
hysteresis = 0.1
refresh_s = 100000
"""


#: rate windows: pipelines on the embedded store, one Lua script on a real Redis
BOTH_STORES = pytest.mark.parametrize("redis_client", ["embedded", "redis"], indirect=True)


@BOTH_STORES
def test_rate_of_rise_over_a_window(make_engine: Make) -> None:
    engine = make_engine(rule_toml("rate", RATE))
    # Flat with noise: no alert.
    flat = [(s, 4.5 + (0.02 if (s // 60) % 2 else -0.02)) for s in range(0, 900, 60)]
    assert levels(engine, flat) == []
    # Rising 0.6 m/h: needs 4 readings over 5 minutes first, then fires.
    engine2 = make_engine(rule_toml("rate", RATE, rule_id="rule_b"))
    rising = [(s, 4.5 + 0.6 * s / 3600) for s in range(0, 600, 60)]
    assert levels(engine2, rising, device="wl-2") == ["raise"]
    assert engine2.redis.zcard("cityops:rules:series:rule_b:wl-2") == 10
    if not isinstance(engine2.redis, fakeredis.FakeRedis):  # the real Redis ran the script
        assert engine2.redis.script_exists(engine_module._RATE_WINDOWS_SHA) == [True]


def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each round trip a client makes from now on: a pipeline sent, or one command alone
    (WATCH and the commands after it in a watched transaction, a script call, EXISTS …)."""
    trips: list[str] = []
    execute, immediate, command = Pipeline.execute, Pipeline.immediate_execute_command, Redis.execute_command

    def pipeline_execute(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        if self.command_stack or not self.watching:
            trips.append("pipeline")
        return execute(self, *args, **kwargs)

    def one(name: str, call: Any) -> Any:
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            trips.append(str(args[0]))
            return call(self, *args, **kwargs)

        return run

    monkeypatch.setattr(Pipeline, "execute", pipeline_execute)
    monkeypatch.setattr(Pipeline, "immediate_execute_command", one("immediate", immediate))
    monkeypatch.setattr(Redis, "execute_command", one("command", command))
    return trips


@BOTH_STORES
def test_a_quiet_batch_of_readings_is_one_round_trip_to_redis(
    make_engine: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(
        rule_toml("threshold", LEVEL.format(duration=0)), rule_toml("rate", RATE, rule_id="rule_b")
    )
    engine.warm_up()
    trips = round_trips(monkeypatch)
    quiet = batch([reading("wl-1", s, {"level": 4.0}, props=PROPS) for s in range(0, 600, 60)])
    assert engine.evaluate(quiet) == []
    # Last readings, the rate windows (written and read), offline devices, busy sets: one
    # pipeline; nothing holds and nothing is pending, so nothing is watched or written. The
    # embedded store runs no scripts: its rate windows are a pipeline of their own.
    embedded = isinstance(engine.redis, fakeredis.FakeRedis)
    assert trips == (["pipeline", "pipeline"] if embedded else ["pipeline"])
    assert engine.redis.zcard("cityops:rules:series:rule_b:wl-1") == 10
    # A reading over the level is judged in a watched transaction and raises its alert.
    trips.clear()
    assert kinds(engine.evaluate(batch([reading("wl-2", 600, {"level": 5.0}, props=PROPS)]))) == ["raise"]
    assert "WATCH" in trips
    # While the alert is open, a reading below the level is judged too (the subject is busy).
    trips.clear()
    assert kinds(engine.evaluate(batch([reading("wl-2", 660, {"level": 4.0}, props=PROPS)]))) == ["clear"]
    assert "WATCH" in trips


@pytest.mark.parametrize("redis_client", ["redis"], indirect=True)
def test_rate_windows_are_kept_when_redis_lost_its_scripts(
    make_engine: Make, redis_client: fakeredis.FakeRedis
) -> None:
    engine = make_engine(rule_toml("rate", RATE))
    rising = [(s, 4.5 + 0.6 * s / 3600) for s in range(0, 600, 60)]
    assert levels(engine, rising[:5]) == []
    redis_client.script_flush()  # as after a Redis restart
    assert levels(engine, rising[5:]) == ["raise"]
    assert redis_client.zcard("cityops:rules:series:rule_a:wl-1") == 10


@BOTH_STORES
def test_rate_clears_when_the_river_levels_off(make_engine: Make) -> None:
    engine = make_engine(rule_toml("rate", RATE.replace("1800", "600").replace("300", "120")))
    rising = [(s, 4.5 + 1.0 * s / 3600) for s in range(0, 300, 30)]
    top = rising[-1][1]
    flat = [(s, top) for s in range(300, 1500, 30)]
    assert levels(engine, rising + flat) == ["raise", "clear"]


@BOTH_STORES
def test_rate_window_stays_bounded_for_a_device_reporting_every_second(make_engine: Make) -> None:
    engine = make_engine(rule_toml("rate", RATE))
    # 40 minutes of a reading a second, rising 0.6 m/h, ten readings per batch: the window
    # keeps one point per 15 s stretch (1800 s / RATE_POINTS_PER_WINDOW), the newest.
    decisions: list[Draft | Clear] = []
    for start in range(0, 2400, 10):
        rows = [reading("wl-fast", s, {"level": 4.5 + 0.6 * s / 3600}) for s in range(start, start + 10)]
        decisions += engine.evaluate(batch(rows))
    assert kinds(decisions) == ["raise"]
    (draft,) = decisions
    assert isinstance(draft, Draft) and abs(draft.evidence["readings"][-1]["rate_per_h"] - 0.6) < 0.01
    key = "cityops:rules:series:rule_a:wl-fast"
    points = engine.redis.zrange(key, 0, -1, withscores=True)
    step = 1800 / RATE_POINTS_PER_WINDOW
    assert len(points) <= RATE_POINTS_PER_WINDOW + 1
    # one point per stretch, and it is the stretch's newest reading
    stretches = [int(score // step) for _member, score in points]
    assert len(set(stretches)) == len(stretches)
    assert all(int(score) % 15 == 14 for _member, score in points[:-1])


@BOTH_STORES
def test_rate_window_late_reading_leaves_the_newer_point_of_its_stretch(make_engine: Make) -> None:
    engine = make_engine(rule_toml("rate", RATE))
    key = "cityops:rules:series:rule_a:wl-1"
    engine.evaluate(batch([reading("wl-1", 16, {"level": 4.6})]))  # the stretch 15–30 s
    engine.evaluate(batch([reading("wl-1", 17, {"level": 4.61})]))
    assert [score for _m, score in engine.redis.zrange(key, 0, -1, withscores=True)] == [at(17).timestamp()]
    engine.evaluate(batch([reading("wl-1", 16.5, {"level": 4.7})]))  # late: kept, 17 s stays
    scores = [score for _m, score in engine.redis.zrange(key, 0, -1, withscores=True)]
    assert scores == [at(16.5).timestamp(), at(17).timestamp()]
    engine.evaluate(batch([reading("wl-1", 20, {"level": 4.62})]))  # newer: both go
    assert [score for _m, score in engine.redis.zrange(key, 0, -1, withscores=True)] == [at(20).timestamp()]


def test_quiet_readings_are_judged_without_building_their_details(make_engine: Make, monkeypatch) -> None:
    engine = make_engine(rule_toml("threshold", LEVEL.format(duration=0)))
    built: list[str] = []
    real = engine_module.catalog_metric
    monkeypatch.setattr(engine_module, "catalog_metric", lambda *a: built.append(a[1]) or real(*a))
    # Below the level on an idle subject: nothing to build.
    assert levels(engine, [(s, 4.0) for s in range(0, 100, 10)]) == []
    assert built == []
    # Holding: built for the alert, then for each reading of the busy subject (4.75 is in
    # the hysteresis band, 4.5 clears), and no longer once the subject is idle again.
    assert levels(engine, [(100, 4.9), (110, 4.75), (120, 4.5), (130, 4.0)]) == ["raise", "clear"]
    assert len(built) == 3


# ---- standards -----------------------------------------------------------------------------

AQI = 'check = "aqi_level"\ndevice_types = ["air_quality"]\nmin_level = 5\nhysteresis = 10\n'


def air(seconds: float, aqi: int, level: int) -> dict:
    derived = {
        "aqi": aqi,
        "level": level,
        "category": "重度污染" if level == 5 else "中度污染",
        "primary": ["PM2.5"],
    }
    return reading("air-1", seconds, {"pm25": 180.0}, device_type="air_quality", derived=derived)


def test_aqi_level_with_hysteresis_below_the_level_boundary(make_engine: Make) -> None:
    engine = make_engine(rule_toml("standard", AQI, severity="major", title="{category} AQI {aqi}"))
    (draft,) = engine.evaluate(batch([air(0, 230, 5)]))
    assert isinstance(draft, Draft) and draft.severity == "major" and draft.title == "重度污染 AQI 230"
    assert draft.evidence["readings"][0]["value"] == 230
    # 195 is level 4, but inside the 10-point band under 201: stays open; 189 clears.
    assert engine.evaluate(batch([air(10, 195, 4)])) == []
    assert kinds(engine.evaluate(batch([air(20, 189, 4)]))) == ["clear"]


def test_aqi_level_range_hands_over_to_the_heavier_rule(make_engine: Make) -> None:
    moderate = AQI.replace("min_level = 5", "min_level = 4\nmax_level = 4")
    engine = make_engine(rule_toml("standard", moderate), rule_toml("standard", AQI, rule_id="rule_b"))
    assert [d.dedup_key for d in engine.evaluate(batch([air(0, 170, 4)]))] == ["rule_a:air-1"]
    out = engine.evaluate(batch([air(10, 220, 5)]))
    assert sorted((isinstance(d, Draft), d.dedup_key) for d in out) == [
        (False, "rule_a:air-1"),
        (True, "rule_b:air-1"),
    ]


def test_water_class_worse_than_the_sections_target(make_engine: Make) -> None:
    body = 'check = "water_grade"\ndevice_types = ["water_quality"]\n'
    engine = make_engine(rule_toml("standard", body, title="{grade}类劣于{target_class}类"))

    def sample(seconds: float, grade: str, target: str | None) -> dict:
        props = {"body": "river"} | ({"target_class": target} if target else {})
        return reading(
            "water-1",
            seconds,
            {"nh3n": 1.2},
            device_type="water_quality",
            props=props,
            derived={"grade": grade, "worst": ["nh3n"]},
        )

    assert engine.evaluate(batch([sample(0, "III", "III")])) == []
    (draft,) = engine.evaluate(batch([sample(10, "IV", "III")]))
    assert draft.title == "IV类劣于III类"
    assert kinds(engine.evaluate(batch([sample(20, "II", "III")]))) == ["clear"]
    # No target in the props: the rule's default (III); a II target makes III an exceedance.
    assert kinds(engine.evaluate(batch([sample(30, "III", "II")]))) == ["raise"]


def test_noise_excess_counts_at_night_only(make_engine: Make) -> None:
    body = (
        'check = "noise_excess"\ndevice_types = ["noise"]\nperiods = ["night"]\n'
        "min_excess_db = 3\nhysteresis = 2\n"
    )
    engine = make_engine(rule_toml("standard", body, title="{period}{laeq}dB超{limit}"))

    def noise(seconds: float, laeq: float, period: str, limit: int) -> dict:
        derived = {
            "limit": limit,
            "exceeded": laeq > limit,
            "excess_db": max(0.0, laeq - limit),
            "period": period,
        }
        return reading(
            "noise-1", seconds, {"laeq": laeq}, device_type="noise", props={"zone": "1"}, derived=derived
        )

    assert engine.evaluate(batch([noise(0, 62, "day", 55)])) == []  # loud, but by day
    (draft,) = engine.evaluate(batch([noise(10, 50, "night", 45)]))
    assert draft.title == "夜间50dB超45"
    assert engine.evaluate(batch([noise(20, 47, "night", 45)])) == []  # 2 dB over: in the band
    assert kinds(engine.evaluate(batch([noise(30, 45.5, "night", 45)]))) == ["clear"]


# ---- staleness -----------------------------------------------------------------------------

OFFLINE = 'device_types = ["water_level", "smoke"]\nperiod_s = 300\nfactor = 3\nrefresh_s = 600\n'


def test_a_silent_device_goes_offline_and_comes_back(make_engine: Make) -> None:
    engine = make_engine(
        rule_toml("staleness", OFFLINE, domain="system", title="{device_id}离线{silent_min}分钟")
    )
    engine.evaluate(
        batch(
            [
                reading("wl-1", 0, {"level": 4.0}),
                reading("smoke-1", 0, {"smoke": 0.0}, device_type="smoke", props={"report_period_s": 60}),
            ]
        )
    )
    # The detector reports every minute (its props say so): offline after 3 minutes.
    (draft,) = engine.tick(at(200))
    assert draft.dedup_key == "rule_a:smoke-1" and draft.title == "smoke-1离线3.33分钟"
    assert draft.domain == "system" and draft.observed_at == at(200)
    assert engine.tick(at(300)) == []  # still offline: refreshed at most every 10 minutes
    # 15 minutes: the station is offline too; the detector's alert is refreshed (10 minutes on).
    assert sorted(d.dedup_key for d in engine.tick(at(900))) == ["rule_a:smoke-1", "rule_a:wl-1"]
    assert engine.redis.sismember(active_key("rule_a"), "wl-1")
    (clear,) = engine.evaluate(batch([reading("wl-1", 950, {"level": 4.0})]))
    assert (
        isinstance(clear, Clear) and clear.dedup_key == "rule_a:wl-1" and clear.reason == "device_reporting"
    )
    assert engine.redis.zscore(SEEN_KEY, "wl-1") == at(950).timestamp()


# ---- video ---------------------------------------------------------------------------------

FIRE = 'event_types = ["smoke_fire"]\nmin_confidence = 0.8\nwindow_s = 600\nrefresh_s = 30\n'


def test_smoke_fire_at_high_confidence_is_critical_and_clears_after_the_window(make_engine: Make) -> None:
    engine = make_engine(rule_toml("video", FIRE, severity="critical", title="{event_label}{confidence}"))
    assert engine.evaluate(batch(videos=[video("e1", 0, "smoke_fire", 0.79)])) == []
    assert engine.evaluate(batch(videos=[video("e2", 0, "waterlogging", 0.99)])) == []
    (draft,) = engine.evaluate(batch(videos=[video("e3", 5, "smoke_fire", 0.91)]))
    assert (draft.severity, draft.title, draft.dedup_key) == (
        "critical",
        "烟火0.91",
        "rule_a:8840a1b2c3fffff",
    )
    assert draft.source_kind == "video" and draft.evidence["events"][0]["event_id"] == "e3"
    # Another camera in the same cell: the same alert (refreshed after 30 s), not a new one.
    (update,) = engine.evaluate(batch(videos=[video("e4", 60, "smoke_fire", 0.95, camera_id="cam-2")]))
    assert update.dedup_key == draft.dedup_key and len(update.evidence["events"]) == 2
    assert engine.tick(at(600)) == []
    (clear,) = engine.tick(at(661))
    assert isinstance(clear, Clear) and clear.dedup_key == draft.dedup_key


def test_crowd_needs_repeated_sightings_in_one_cell(make_engine: Make) -> None:
    body = 'event_types = ["crowd_gathering"]\nmin_confidence = 0.8\nmin_count = 3\nwindow_s = 600\n'
    engine = make_engine(rule_toml("video", body))
    events = [
        video("c1", 0, "crowd_gathering", 0.9),
        video("c2", 30, "crowd_gathering", 0.9, grid_id="other"),
    ]
    events += [video("c3", 60, "crowd_gathering", 0.9), video("c4", 700, "crowd_gathering", 0.9)]
    assert engine.evaluate(batch(videos=events)) == []  # never 3 in one cell within 10 minutes
    (draft,) = engine.evaluate(
        batch(videos=[video("c5", 720, "crowd_gathering", 0.85), video("c6", 730, "crowd_gathering", 0.9)])
    )
    assert draft.evidence["events"][-1]["event_id"] == "c6"
    # Redelivery of the same events changes nothing.
    assert engine.evaluate(batch(videos=[video("c5", 720, "crowd_gathering", 0.85)])) == []


# ---- correlation ---------------------------------------------------------------------------

CORR = """
min_signals = 3
window_s = 1800
  [[rule.signals]]
  name = "rain"
  label = "强降雨"
  source = "observation"
  area = "district"
  device_types = ["rainfall"]
  metric = "rain_1h"
  value = 20.0
  [[rule.signals]]
  name = "waterlogging"
  label = "积水"
  source = "video"
  event_types = ["waterlogging"]
  min_confidence = 0.8
  [[rule.signals]]
  name = "calls"
  label = "来电"
  source = "ticket"
  categories = ["积水内涝"]
"""


def rain(seconds: float, mm: float, grid_id: str = "far-away-cell") -> dict:
    return reading(
        "rain-1", seconds, {"rain_1h": mm, "rain_24h": 80.0}, device_type="rainfall", grid_id=grid_id
    )


def test_correlation_needs_three_different_signals_in_one_cell_within_the_window(make_engine: Make) -> None:
    engine = make_engine(rule_toml("correlation", CORR, severity="critical", title="{signals}"))
    # The same signal three times is one signal.
    logs = [video(f"w{i}", i, "waterlogging", 0.9) for i in range(3)]
    assert engine.evaluate(batch(videos=logs)) == []
    # A call in another cell, weak rain: still two signals in the cell at most.
    assert (
        engine.evaluate(batch([rain(10, 5.0)], tickets=[ticket("t1", 10, "积水内涝", grid_id="other")])) == []
    )
    # A call in the cell: two local signals; rain anywhere in the district completes it.
    assert engine.evaluate(batch(tickets=[ticket("t2", 20, "积水内涝")])) == []
    (draft,) = engine.evaluate(batch([rain(30, 35.0)]))
    assert draft.dedup_key == "rule_a:8840a1b2c3fffff" and draft.district_code == "511623"
    assert draft.title == "强降雨、积水、来电"
    assert set(draft.evidence["signals"]) == {"rain", "waterlogging", "calls"}
    assert draft.severity == "critical" and (draft.lon, draft.lat) == (106.93, 30.33)
    # When the window has passed with nothing new, the tick clears it.
    assert engine.tick(at(1000)) == []
    assert kinds(engine.tick(at(1825))) == ["clear"]


def test_correlation_ignores_signals_outside_the_window_or_district(make_engine: Make) -> None:
    engine = make_engine(rule_toml("correlation", CORR))
    assert engine.evaluate(batch(videos=[video("w1", 0, "waterlogging", 0.9)])) == []
    assert engine.evaluate(batch([rain(10, 40.0)])) == []
    # Rain in another district does not count for this cell.
    engine.evaluate(
        batch([reading("rain-2", 20, {"rain_1h": 40.0}, device_type="rainfall", district_code="511602")])
    )
    # 40 minutes later the first two have left the 30-minute window.
    assert engine.evaluate(batch(tickets=[ticket("t1", 2400, "积水内涝")])) == []


# ---- surge ---------------------------------------------------------------------------------

SURGE = "window_s = 3600\nmin_baseline = 5\nbaseline_windows = 24\nfactor = 2\nclear_ratio = 0.7\n"


def calls(
    start: int, n: int, *, seconds: float, category: str = "积水内涝", district: str = "511623"
) -> list[dict]:
    return [ticket(f"t{start + i}", seconds + i, category, district_code=district) for i in range(n)]


def test_surge_against_the_fixed_default_baseline(make_engine: Make) -> None:
    engine = make_engine(rule_toml("surge", SURGE, domain="hotline", title="{district}{category}{count}件"))
    assert engine.evaluate(batch(tickets=calls(0, 9, seconds=0))) == []
    # Another category and another district do not add up.
    assert engine.evaluate(batch(tickets=calls(100, 5, seconds=20, category="噪声扰民"))) == []
    assert engine.evaluate(batch(tickets=calls(200, 5, seconds=30, district="511602"))) == []
    (draft,) = engine.evaluate(batch(tickets=calls(9, 1, seconds=40)))
    assert (draft.title, draft.dedup_key) == ("邻水县积水内涝10件", "rule_a:511623:积水内涝")
    assert draft.evidence["baseline"] == 5 and draft.evidence["threshold"] == 10
    assert draft.grid_id is None and draft.district_code == "511623"
    # An hour on, the window is empty: the tick clears the surge.
    assert kinds(engine.tick(at(3700))) == ["clear"]


def test_surge_baseline_follows_the_history_kept_in_redis(make_engine: Make) -> None:
    engine = make_engine(rule_toml("surge", SURGE))
    hour = 3600
    base = int(at(0).timestamp() // hour) * hour - at(0).timestamp()  # start of the current hour
    # Four busy hours of 20 calls each (surging once at first, then the new normal).
    seq = 0
    for h in range(4):
        engine.evaluate(batch(tickets=calls(seq, 20, seconds=base + h * hour)))
        seq += 20
        engine.tick(at(base + h * hour + 3599))
    # Hour 5: the baseline is 20 an hour now, so 25 calls are no surge, 40 are.
    assert engine.evaluate(batch(tickets=calls(seq, 25, seconds=base + 4 * hour + 10))) == []
    (draft,) = engine.evaluate(batch(tickets=calls(seq + 25, 15, seconds=base + 4 * hour + 100)))
    assert draft.evidence["baseline"] == 20 and draft.evidence["count"] == 40


def test_tickets_without_a_place_are_not_counted(make_engine: Make) -> None:
    engine = make_engine(rule_toml("surge", SURGE))
    unplaced = [ticket(f"u{i}", i, "积水内涝", district_code=None, grid_id=None) for i in range(30)]
    assert engine.evaluate(batch(tickets=unplaced)) == []


# ---- the default set -----------------------------------------------------------------------


def test_default_rules_on_a_stormy_batch(redis_client: fakeredis.FakeRedis) -> None:
    engine = RuleEngine(load_rules(), redis_client)
    decisions = engine.evaluate(
        batch(
            [
                reading("rain-1", 0, {"rain_1h": 55.0, "rain_24h": 120.0}, device_type="rainfall"),
                reading("mh-1", 0, {"open": 1.0, "tilt": 40.0, "water_level": 2.0}, device_type="manhole"),
            ],
            [video("v1", 1, "smoke_fire", 0.9), video("v2", 1, "illegal_parking", 0.7)],
        )
    )
    raised = {d.rule_id: d for d in decisions if isinstance(d, Draft)}
    assert set(raised) == {"rain_heavy", "rain_torrential", "manhole_open", "video_smoke_fire"}
    assert raised["rain_torrential"].severity == "critical"
    assert raised["rain_torrential"].title.endswith("小时雨量55毫米")
    assert raised["video_smoke_fire"].severity == "critical"
