"""The rule engine: committed batches (and a periodic tick) in, alert decisions out.

Stateless in process: everything a rule remembers lives in Redis under ``cityops:rules:``
(key layout in :mod:`models.rules`), so any number of ingest workers can share the load.
A batch is judged in two steps:

1. *windows*: readings, events and tickets are appended to the rule windows (sorted sets
   scored by reading time; members are unique ids, so appending twice changes nothing) and
   the windows are read back, in one pipeline;
2. *conditions*: every (rule, subject) touched gets a sample, and :func:`~models.rules.state.step`
   moves its stored state on — inside a WATCH/MULTI transaction over the state keys, so two
   workers judging the same subject at once cannot both open its alert: the loser retries
   on fresh state. The alerts table's one-open-alert-per-dedup-key index is the last guard.

Time is the readings' own ``ts`` for batches and the caller's clock for :meth:`RuleEngine.tick`;
the engine never reads the wall clock itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import string
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from models.catalog import DEVICE_TYPE_LABELS_ZH, VIDEO_EVENT_TYPES
from models.catalog import metric as catalog_metric
from models.live import device_key, runs_scripts
from models.rules.config import (
    CorrelationRule,
    RateRule,
    RuleSet,
    StalenessRule,
    StandardRule,
    SurgeRule,
    ThresholdRule,
    VideoRule,
)
from models.rules.decisions import Clear, Decision, Draft
from models.rules.state import CondState, step
from models.standards import aqi as aqi_standard
from models.standards import water as water_standard

log = logging.getLogger(__name__)

PREFIX = "cityops:rules:"
SEEN_KEY = PREFIX + "seen"
DEVICES_KEY = PREFIX + "devices"
#: a (rule, subject) state untouched this long is forgotten (wall-clock TTL)
STATE_TTL_S = 7 * 24 * 3600
#: window keys outlive their window by this much, so an idle rule leaves nothing behind
WINDOW_SLACK_S = 3600
#: optimistic transaction attempts before a batch's conditions are given up (logged)
MAX_ATTEMPTS = 12
#: events or tickets shown as a window rule's evidence
WINDOW_EVIDENCE = 10
#: a rate rule's window keeps at most one reading per this fraction of its length (30 s
#: stretches of a 1-hour window): a slope needs the shape of the series, not every reading
RATE_POINTS_PER_WINDOW = 120
#: set once the busy sets (:func:`busy_key`) list every subject whose state is not idle
BUSY_READY_KEY = PREFIX + "busy:ready"
#: a device's staleness metadata is written again at least this often (seconds), so a
#: flushed Redis learns it back without waiting for the device to change
DEVICE_META_REFRESH_S = 300.0
#: what staleness needs to know about a device (the JSON fields of :data:`DEVICES_KEY`)
_META_FIELDS = ("type", "district_code", "grid_id", "lon", "lat", "period_s")

DISTRICT_NAMES = {
    "511602": "广安区",
    "511603": "前锋区",
    "511621": "岳池县",
    "511622": "武胜县",
    "511623": "邻水县",
    "511681": "华蓥市",
}
PERIOD_NAMES = {"day": "昼间", "night": "夜间"}


class RuleStateConflict(RuntimeError):
    """Other workers kept changing the same rule state; the batch's conditions were not judged."""


@dataclass(frozen=True, slots=True)
class Place:
    district_code: str | None
    grid_id: str | None
    lon: float | None
    lat: float | None


_NOWHERE = Place(None, None, None, None)


class _ReadingsByType:
    """A batch's readings by device type, each list in time order: a rule looks only at
    the readings of its own device types (a dozen threshold rules each walking every
    reading of the batch was most of the rules' time)."""

    def __init__(self, observations: Sequence[Mapping[str, Any]]) -> None:
        self._by_type: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
        for r in observations:
            self._by_type[r.get("device_type")].append(r)

    def of(self, device_types: Sequence[str]) -> list[Mapping[str, Any]]:
        if len(device_types) == 1:
            return self._by_type.get(device_types[0], [])
        merged = [r for t in device_types for r in self._by_type.get(t, ())]
        merged.sort(key=lambda r: r["ts"])
        return merged


# Not frozen: a frozen dataclass sets each field through object.__setattr__, four times
# the cost of building one. Samples are still never changed after they are built.
@dataclass(slots=True)
class Sample:
    """One judgement of one (rule, subject) at reading time ``ts`` (epoch seconds)."""

    rule: Any
    subject: str
    ts: float
    on: bool
    off: bool
    place: Place
    source_kind: str
    source_id: str | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    #: readings: judged in order, kept one by one as evidence in the state
    ordered: bool = True
    evidence_item: Mapping[str, Any] | None = None
    #: windows: the whole evidence, read from the window itself
    evidence: Mapping[str, Any] | None = None
    reason: str = "condition_ended"

    def completed(self) -> Sample:
        """The whole sample (a reading's is built late: see _ReadingSample)."""
        return self


def state_key(rule_id: str, subject: str) -> str:
    return f"{PREFIX}state:{rule_id}:{subject}"


def active_key(rule_id: str) -> str:
    return f"{PREFIX}active:{rule_id}"


def busy_key(rule_id: str) -> str:
    """Subjects of a rule whose condition is pending or open (state not idle).

    A sample that does not hold the condition changes nothing for an idle subject, so only
    the subjects listed here (and those whose sample holds) need their state read: in a
    normal hour almost every reading is such a no-op.
    """
    return f"{PREFIX}busy:{rule_id}"


#: _rate_windows as one script: ARGV[1] is JSON {"writes": [[key, min, max, member, score]…],
#: "reads": [[key, from, to, trim below, ttl]…]}; returns each read window WITHSCORES.
_RATE_WINDOWS_LUA = """
local b = cjson.decode(ARGV[1])
for _, w in ipairs(b.writes) do
  redis.call('ZREMRANGEBYSCORE', w[1], w[2], w[3])
  redis.call('ZADD', w[1], w[5], w[4])
end
local out = {}
for i, r in ipairs(b.reads) do
  out[i] = redis.call('ZRANGEBYSCORE', r[1], r[2], r[3], 'WITHSCORES')
end
for _, r in ipairs(b.reads) do
  redis.call('ZREMRANGEBYSCORE', r[1], '-inf', r[4])
  redis.call('EXPIRE', r[1], r[5])
end
return out
"""


#: the script's SHA1, as Redis names it
_RATE_WINDOWS_SHA = hashlib.sha1(_RATE_WINDOWS_LUA.encode()).hexdigest()


def _point_value(member: str | bytes) -> float:
    """The value of a window point stored as ``"{ts}:{value}"``."""
    text = member.decode() if isinstance(member, bytes) else member
    return float(text.rsplit(":", 1)[1])


def _rate_script_argument(
    writes: Sequence[tuple[str, float, float, float]], reads: Sequence[tuple[str, float, float]]
) -> bytes:
    """The rate windows script's ARGV[1] (see _RATE_WINDOWS_LUA) for these writes and reads."""
    return orjson.dumps(
        {
            "writes": [[k, repr(start), f"({ts!r}", f"{ts!r}:{v!r}", repr(ts)] for k, start, ts, v in writes],
            "reads": [
                [k, repr(ts - window), repr(ts), f"({ts - window!r}", str(int(window + WINDOW_SLACK_S))]
                for k, window, ts in reads
            ],
        }
    )


def _rate_windows_read(flat: Sequence[Sequence[Any]]) -> list[list[tuple[float, float]]]:
    """The script's windows (member, score, member, score …) as (ts, value), oldest first."""
    return [[(float(w[i + 1]), _point_value(w[i])) for i in range(0, len(w), 2)] for w in flat]


@dataclass(frozen=True, slots=True)
class _RatePlan:
    """A batch's rate windows: the points to write, the windows to read, and per window
    (in read order) its rule, newest reading, ts and value."""

    newest: list[tuple[RateRule, Mapping[str, Any], float, float]]
    writes: list[tuple[str, float, float, float]]
    reads: list[tuple[str, float, float]]


def dedup_key(rule_id: str, subject: str) -> str:
    return f"{rule_id}:{subject}"


class RuleEngine:
    def __init__(self, rules: RuleSet, client: redis.Redis, *, clock: Any = time.monotonic) -> None:
        self.rules = rules
        self.redis = client
        self._clock = clock
        #: device → (its staleness metadata as written, when): unchanged metadata is not
        #: written again with every reading
        self._meta_written: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._busy_checked = False
        self._scripts = runs_scripts(client)
        self._rate_script = client.register_script(_RATE_WINDOWS_LUA)
        #: what every batch of readings reads (see _readings_round_trip): the rule set is fixed
        self._staleness_rules = [r for r in rules.of_kind("staleness") if isinstance(r, StalenessRule)]
        self._reading_rule_ids = sorted(
            {r.id for kind in ("threshold", "standard", "rate", "staleness") for r in rules.of_kind(kind)}
        )

    # ---- batches ---------------------------------------------------------------------------

    def evaluate(self, accepted: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Decision]:
        """Decisions for one committed batch (the pipeline hook's ``accepted`` dict)."""
        observations = sorted(accepted.get("observations") or (), key=lambda r: r["ts"])
        videos = sorted(accepted.get("video_events") or (), key=lambda r: r["ts"])
        tickets = sorted(accepted.get("hotline_tickets") or (), key=lambda r: r["ts"])
        samples: list[AnySample] = []
        busy: dict[str, set[str]] | None = None
        if observations:
            by_type = _ReadingsByType(observations)
            samples += self._threshold_samples(by_type)
            samples += self._standard_samples(by_type)
            plan = self._rate_plan(by_type)
            windows, offline, busy = self._readings_round_trip(observations, plan)
            if plan is not None:
                samples += self._rate_samples(plan, windows)
            samples += self._back_online_samples(observations, offline)
        if videos:
            samples += self._video_samples(videos)
        if observations or videos or tickets:
            samples += self._correlation_samples(observations, videos, tickets)
        if tickets:
            samples += self._surge_samples(tickets)
        return self.judge(samples, busy=busy)

    def _in_scope(self, rule: Any, district_code: str | None) -> bool:
        return not rule.districts or district_code in rule.districts

    def _readings_round_trip(
        self, observations: Sequence[Mapping[str, Any]], plan: _RatePlan | None
    ) -> tuple[list[list[tuple[float, float]]], list[tuple[StalenessRule, set[str]]], dict[str, set[str]]]:
        """Everything a batch of readings needs from Redis before its samples are judged, in
        one round trip: the devices' last reading and metadata written, the rate windows
        written and read (the script, on a real Redis), the devices with an open offline
        alert, and the busy set of every rule that samples readings.

        A round trip costs the rule stage more than the commands in it: the thread waits for
        the GIL after each socket call, behind the other stages' Python. As separate calls
        these were six round trips per batch and most of the stage's time.
        Returns (rate windows, offline devices per staleness rule, busy subjects per rule).
        """
        self._ensure_busy_sets()
        latest, changed, remembered = self._devices_to_remember(observations)
        staleness, busy_rules = self._staleness_rules, self._reading_rule_ids
        scripted = plan is not None and self._scripts
        with self.redis.pipeline(transaction=False) as pipe:
            # GT: a late reading never moves a device's last-seen back.
            pipe.zadd(SEEN_KEY, {d: _epoch(r["ts"]) for d, r in latest.items()}, gt=True)
            if changed:
                pipe.hset(DEVICES_KEY, mapping=changed)
            for rule in staleness:
                pipe.smembers(active_key(rule.id))
            for rule_id in busy_rules:
                pipe.smembers(busy_key(rule_id))
            if scripted:
                assert plan is not None
                pipe.evalsha(_RATE_WINDOWS_SHA, 0, _rate_script_argument(plan.writes, plan.reads))
            results = pipe.execute(raise_on_error=False)
        script_result = results.pop() if scripted else None
        for result in (*results, script_result):
            if isinstance(result, Exception) and not isinstance(result, redis.exceptions.NoScriptError):
                raise result
        # Only once Redis has it: a failed write is tried again with the next reading.
        self._meta_written.update(remembered)
        results = results[2 if changed else 1 :]
        offline = list(zip(staleness, results[: len(staleness)], strict=True))
        busy = dict(zip(busy_rules, results[len(staleness) :], strict=True))
        if plan is None:
            windows = []
        elif scripted and not isinstance(script_result, redis.exceptions.NoScriptError):
            windows = _rate_windows_read(script_result)
        else:  # the embedded store, or Redis lost its scripts (a restart): the script object loads it
            windows = self._rate_windows(plan.writes, plan.reads)
        return windows, offline, busy

    def _devices_to_remember(
        self, observations: Sequence[Mapping[str, Any]]
    ) -> tuple[dict[str, Mapping[str, Any]], dict[str, str], dict[str, tuple[tuple[Any, ...], float]]]:
        """Each device's newest reading of the batch, and the metadata staleness needs of
        those whose metadata changed or is due (:data:`DEVICE_META_REFRESH_S`): one ZADD of
        last readings and at most one HSET per batch, not a write with every reading."""
        latest: dict[str, Mapping[str, Any]] = {}
        for r in observations:
            latest[r["device_id"]] = r
        now = self._clock()
        changed: dict[str, str] = {}
        remembered: dict[str, tuple[tuple[Any, ...], float]] = {}
        for device_id, r in latest.items():
            props = r.get("props") or {}
            meta = (
                r.get("device_type"),
                r.get("district_code"),
                r.get("grid_id"),
                r.get("lon"),
                r.get("lat"),
                _number(props.get("report_period_s")),
            )
            written = self._meta_written.get(device_id)
            if written is None or written[0] != meta or now - written[1] >= DEVICE_META_REFRESH_S:
                remembered[device_id] = (meta, now)
                changed[device_id] = json.dumps(
                    dict(zip(_META_FIELDS, meta, strict=True)), ensure_ascii=False
                )
        return latest, changed, remembered

    def _threshold_samples(self, observations: _ReadingsByType) -> list[AnySample]:
        out: list[AnySample] = []
        for rule in self.rules.of_kind("threshold"):
            assert isinstance(rule, ThresholdRule)
            # The rule's settings once per batch, not per reading (this loop runs for every
            # reading of every threshold rule's device types).
            metric, value_prop, districts = rule.metric, rule.value_prop, rule.districts
            rising = rule.op == ">="
            for r in observations.of(rule.device_types):
                if districts and r.get("district_code") not in districts:
                    continue
                value = _number((r.get("metrics") or {}).get(metric))
                if value is None:
                    continue
                threshold = _number((r.get("props") or {}).get(value_prop)) if value_prop else None
                if threshold is None:
                    threshold = rule.value
                if threshold is None:
                    continue
                if rising:
                    on, off = value >= threshold, value < threshold - rule.hysteresis
                else:
                    on, off = value <= threshold, value > threshold + rule.hysteresis
                out.append(
                    _ReadingSample(
                        rule,
                        r,
                        on=on,
                        off=off,
                        value=value,
                        fields={"value": value, "threshold": threshold},
                    )
                )
        return out

    def _standard_samples(self, observations: _ReadingsByType) -> list[AnySample]:
        out: list[AnySample] = []
        for rule in self.rules.of_kind("standard"):
            assert isinstance(rule, StandardRule)
            districts = rule.districts
            for r in observations.of(rule.device_types):  # only the rule's device types
                if districts and r.get("district_code") not in districts:
                    continue
                judged = _judge_standard(rule, r)
                if judged is None:
                    continue
                on, off, value, fields = judged
                out.append(_ReadingSample(rule, r, on=on, off=off, value=value, fields=fields))
        return out

    def _rate_plan(self, observations: _ReadingsByType) -> _RatePlan | None:
        """What the rate rules write to and read from their windows for this batch; None
        when no rate rule has a reading in it.

        A window keeps at most one point per :data:`RATE_POINTS_PER_WINDOW`-th of its length
        (the newest reading of that stretch), so what is read and fitted stays bounded
        however often a device reports: a window read whole for every reading of a device
        sending several times a second grew quadratically and stalled ingest.
        """
        rules = [r for r in self.rules.of_kind("rate") if isinstance(r, RateRule)]
        if not rules:
            return None
        #: window key → bucket → (ts, value): the newest point of each bucket in this batch
        points: dict[str, dict[int, tuple[float, float]]] = {}
        #: window key → (rule, its newest reading, ts, value)
        newest: dict[str, tuple[RateRule, Mapping[str, Any], float, float]] = {}
        for rule in rules:
            step = rule.window_s / RATE_POINTS_PER_WINDOW
            for r in observations.of(rule.device_types):
                value = _reading_value(rule, r)
                if value is None:
                    continue
                key = f"{PREFIX}series:{rule.id}:{r['device_id']}"
                ts = _epoch(r["ts"])
                buckets = points.setdefault(key, {})
                bucket = int(ts // step)
                kept = buckets.get(bucket)
                if kept is None or ts >= kept[0]:
                    buckets[bucket] = (ts, value)
                last = newest.get(key)
                if last is None or ts >= last[2]:
                    newest[key] = (rule, r, ts, value)
        # An older point of the same stretch gives way to a newer one; a late one leaves a
        # newer point alone (it stays next to it until the stretch's next reading).
        writes: list[tuple[str, float, float, float]] = []
        for key, buckets in points.items():
            step = newest[key][0].window_s / RATE_POINTS_PER_WINDOW
            writes += [(key, bucket * step, ts, value) for bucket, (ts, value) in buckets.items()]
        reads = [(key, rule.window_s, ts) for key, (rule, _r, ts, _value) in newest.items()]
        if not reads:
            return None
        return _RatePlan(list(newest.values()), writes, reads)

    def _rate_samples(
        self, plan: _RatePlan, windows: Sequence[Sequence[tuple[float, float]]]
    ) -> list[AnySample]:
        """One slope per (rule, device) per batch, judged at the device's newest reading."""
        out: list[AnySample] = []
        for (rule, r, _ts, value), series in zip(plan.newest, windows, strict=True):
            if len(series) < rule.min_points or series[-1][0] - series[0][0] < max(rule.min_span_s, 1e-9):
                continue
            rate = _slope_per_hour(series)
            if rule.per_hour > 0:
                on, off = rate >= rule.per_hour, rate < rule.per_hour - rule.hysteresis
            else:
                on, off = rate <= rule.per_hour, rate > rule.per_hour + rule.hysteresis
            out.append(
                _ReadingSample(
                    rule,
                    r,
                    on=on,
                    off=off,
                    value=value,
                    fields={"value": value, "rate": rate, "window_min": rule.window_s / 60},
                    extra={"rate_per_h": round(rate, 3)},
                )
            )
        return out

    def _rate_windows(
        self, writes: Sequence[tuple[str, float, float, float]], reads: Sequence[tuple[str, float, float]]
    ) -> list[list[tuple[float, float]]]:
        """Store the new points (key, stretch start, ts, value) and read each window (key,
        its length, its newest ts) back as (ts, value), oldest first, trimming what fell out.

        One script call on a real Redis: as a pipeline these were five commands per device
        and batch, whose encoding was most of the rate rule's cost.
        """
        if self._scripts:
            return _rate_windows_read(self._rate_script(args=[_rate_script_argument(writes, reads)]))
        with self.redis.pipeline(transaction=False) as pipe:
            for key, start, ts, value in writes:
                pipe.zremrangebyscore(key, start, f"({ts!r}")
                pipe.zadd(key, {f"{ts!r}:{value!r}": ts})
            for key, window, ts in reads:
                pipe.zrangebyscore(key, ts - window, ts, withscores=True)
            for key, window, ts in reads:
                pipe.zremrangebyscore(key, "-inf", f"({ts - window!r}")
                pipe.expire(key, int(window + WINDOW_SLACK_S))
            results = pipe.execute()
        windows = results[2 * len(writes) : 2 * len(writes) + len(reads)]
        return [[(score, _point_value(member)) for member, score in window] for window in windows]

    def _back_online_samples(
        self, observations: Sequence[Mapping[str, Any]], offline: Sequence[tuple[StalenessRule, set[str]]]
    ) -> list[Sample]:
        """A reading from a device with an open offline alert (``offline``: each staleness
        rule and its devices with one open) clears it."""
        out: list[Sample] = []
        for rule, devices in offline:
            for r in observations:
                if r["device_id"] in devices:
                    out.append(
                        Sample(
                            rule,
                            r["device_id"],
                            _epoch(r["ts"]),
                            on=False,
                            off=True,
                            place=_place(r),
                            source_kind="device",
                            source_id=r["device_id"],
                            ordered=False,
                            reason="device_reporting",
                        )
                    )
        return out

    def _video_samples(self, videos: Sequence[Mapping[str, Any]]) -> list[Sample]:
        todo: list[tuple[VideoRule, Mapping[str, Any], str]] = []
        with self.redis.pipeline(transaction=False) as pipe:
            for rule in self.rules.of_kind("video"):
                assert isinstance(rule, VideoRule)
                for e in videos:
                    if e.get("type") not in rule.event_types or float(e.get("confidence") or 0) < (
                        rule.min_confidence
                    ):
                        continue
                    if not self._in_scope(rule, e.get("district_code")):
                        continue
                    subject = _video_subject(rule, e)
                    pipe.zadd(_window_key(rule.id, subject), {_event_member(e): _epoch(e["ts"])})
                    todo.append((rule, e, subject))
            for rule, e, subject in todo:
                # Up to +inf: a newer event judged by another worker is part of the picture.
                ts = _epoch(e["ts"])
                pipe.zrangebyscore(_window_key(rule.id, subject), ts - rule.window_s, "+inf", withscores=True)
            for rule, e, subject in todo:
                key = _window_key(rule.id, subject)
                pipe.zremrangebyscore(key, "-inf", f"({_epoch(e['ts']) - rule.window_s}")
                pipe.expire(key, int(rule.window_s + WINDOW_SLACK_S))
            results = pipe.execute()
        windows = results[len(todo) : 2 * len(todo)]
        out = []
        for (rule, e, subject), members in zip(todo, windows, strict=True):
            t, recent = _newest_window(_epoch(e["ts"]), members, rule.window_s)
            out.append(_video_sample(rule, subject, t, [json.loads(m) for m in recent], fallback=e))
        return out

    def _correlation_samples(
        self,
        observations: Sequence[Mapping[str, Any]],
        videos: Sequence[Mapping[str, Any]],
        tickets: Sequence[Mapping[str, Any]],
    ) -> list[Sample]:
        out: list[Sample] = []
        for rule in self.rules.of_kind("correlation"):
            assert isinstance(rule, CorrelationRule)
            facts = [
                f
                for f in _signal_facts(rule, observations, videos, tickets)
                if self._in_scope(rule, f["district_code"])
            ]
            if facts:
                out += self._correlate(rule, facts)
        return out

    def _correlate(self, rule: CorrelationRule, facts: list[dict[str, Any]]) -> list[Sample]:
        prefix = f"{PREFIX}corr:{rule.id}:"
        newest_in: dict[str, float] = {}
        cells: dict[str, str] = {}
        area_districts: set[str] = set()
        with self.redis.pipeline(transaction=False) as pipe:
            for f in facts:
                member = json.dumps(f, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
                district = f["district_code"]
                if f["area"] == "district":
                    pipe.zadd(f"{prefix}district:{district}", {member: f["t"]})
                    area_districts.add(district)
                else:
                    pipe.zadd(f"{prefix}grid:{f['grid_id']}", {member: f["t"]})
                    pipe.zadd(f"{prefix}cells:{district}", {f["grid_id"]: f["t"]})
                    pipe.hset(f"{prefix}district_of", f["grid_id"], district)
                    cells[f["grid_id"]] = district
                newest_in[district] = max(f["t"], newest_in.get(district, f["t"]))
            reads = sorted(area_districts)
            for district in reads:
                # An areal signal (rain) can complete the picture in any cell with recent local signals.
                t = newest_in[district]
                pipe.zrangebyscore(f"{prefix}cells:{district}", t - rule.window_s, "+inf")
            results = pipe.execute()
        for district, grids in zip(reads, results[len(results) - len(reads) :], strict=True):
            for grid in grids:
                cells.setdefault(grid, district)
        if not cells:
            return []
        order = sorted(cells)
        with self.redis.pipeline(transaction=False) as pipe:
            for grid in order:
                t = newest_in[cells[grid]]
                pipe.zrangebyscore(f"{prefix}grid:{grid}", t - rule.window_s, "+inf", withscores=True)
                pipe.zrangebyscore(
                    f"{prefix}district:{cells[grid]}", t - rule.window_s, "+inf", withscores=True
                )
            for grid in order:
                t = newest_in[cells[grid]]
                pipe.zremrangebyscore(f"{prefix}grid:{grid}", "-inf", f"({t - rule.window_s}")
                pipe.expire(f"{prefix}grid:{grid}", int(rule.window_s + WINDOW_SLACK_S))
            for district, t in newest_in.items():
                for key in (f"{prefix}district:{district}", f"{prefix}cells:{district}"):
                    pipe.zremrangebyscore(key, "-inf", f"({t - rule.window_s}")
                    pipe.expire(key, int(rule.window_s + WINDOW_SLACK_S))
            pipe.expire(f"{prefix}district_of", STATE_TTL_S)
            results = pipe.execute()
        out = []
        for i, grid in enumerate(order):
            t, recent = _newest_window(
                newest_in[cells[grid]], results[2 * i] + results[2 * i + 1], rule.window_s
            )
            out.append(_correlation_sample(rule, grid, cells[grid], t, [json.loads(m) for m in recent]))
        return out

    def _surge_samples(self, tickets: Sequence[Mapping[str, Any]]) -> list[Sample]:
        todo: dict[tuple[str, str, str], tuple[SurgeRule, float]] = {}
        with self.redis.pipeline(transaction=False) as pipe:
            for rule in self.rules.of_kind("surge"):
                assert isinstance(rule, SurgeRule)
                for t in tickets:
                    district, category = t.get("district_code"), t.get("category")
                    if not district or not category or not self._in_scope(rule, district):
                        continue
                    if rule.categories and category not in rule.categories:
                        continue
                    ts = _epoch(t["ts"])
                    key, hist = _surge_keys(rule.id, district, category)
                    pipe.zadd(key, {t["ticket_id"]: ts})
                    bucket = str(int(ts // rule.window_s))
                    pipe.hsetnx(hist, "first", bucket)
                    pipe.hincrby(hist, bucket, 1)
                    span = int(rule.window_s * (rule.baseline_windows + 2))
                    pipe.expire(key, int(rule.window_s + WINDOW_SLACK_S))
                    pipe.expire(hist, span)
                    seen = todo.get((rule.id, district, category))
                    todo[(rule.id, district, category)] = (rule, max(ts, seen[1] if seen else ts))
            if not todo:
                return []
            pipe.execute()
        return self._surge_judge([(rule, d, c, t) for (_id, d, c), (rule, t) in todo.items()])

    def _surge_judge(self, items: Sequence[tuple[SurgeRule, str, str, float]]) -> list[Sample]:
        with self.redis.pipeline(transaction=False) as pipe:
            for rule, district, category, t in items:
                key, hist = _surge_keys(rule.id, district, category)
                pipe.zremrangebyscore(key, "-inf", f"({t - rule.window_s}")
                pipe.zrevrangebyscore(key, "+inf", t - rule.window_s, withscores=True)
                pipe.hgetall(hist)
            results = pipe.execute()
        out = []
        for i, (rule, district, category, t) in enumerate(items):
            hist = results[3 * i + 2]
            t, window = _newest_window(t, results[3 * i + 1], rule.window_s, members_only=False)
            count = len(window)
            baseline = _surge_baseline(rule, hist, t)
            opening = rule.factor * baseline
            out.append(
                Sample(
                    rule,
                    f"{district}:{category}",
                    t,
                    on=count >= opening,
                    off=count < opening * rule.clear_ratio,
                    place=Place(district, None, None, None),
                    source_kind="hotline",
                    source_id=category,
                    fields={
                        "category": category,
                        "count": count,
                        "baseline": baseline,
                        "window_min": rule.window_s / 60,
                    },
                    ordered=False,
                    evidence={
                        "count": count,
                        "baseline": round(baseline, 2),
                        "threshold": round(opening, 2),
                        "window_s": rule.window_s,
                        "tickets": [
                            {"ticket_id": tid, "ts": _iso(score)} for tid, score in window[-WINDOW_EVIDENCE:]
                        ],
                    },
                    reason="surge_ended",
                )
            )
        self._trim_surge_history(items, results)
        return out

    def _trim_surge_history(
        self, items: Sequence[tuple[SurgeRule, str, str, float]], results: Sequence[Any]
    ) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for i, (rule, district, category, t) in enumerate(items):
                hist = results[3 * i + 2]
                oldest = int(t // rule.window_s) - rule.baseline_windows
                stale = [b for b in hist if b != "first" and int(b) < oldest]
                if stale:
                    pipe.hdel(_surge_keys(rule.id, district, category)[1], *stale)
            pipe.execute()

    # ---- periodic ---------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[Decision]:
        """Time-based decisions at ``now``: silent devices, windows that emptied, surges that ebbed."""
        t = _epoch(now)
        samples = self._staleness_samples(t)
        samples += self._window_expiry_samples(t)
        return self.judge(samples)

    def claim_tick(self, now: datetime, interval_s: float) -> bool:
        """True for the first worker asking in this interval: one worker ticks for all."""
        bucket = int(_epoch(now) // interval_s)
        return bool(self.redis.set(f"{PREFIX}tick:{bucket}", "1", nx=True, ex=max(1, int(interval_s * 3))))

    def _staleness_samples(self, t: float) -> list[Sample]:
        rules = [r for r in self.rules.of_kind("staleness") if isinstance(r, StalenessRule)]
        if not rules:
            return []
        seen = dict(self.redis.zrange(SEEN_KEY, 0, -1, withscores=True))
        if not seen:
            return []
        devices = self.redis.hgetall(DEVICES_KEY)
        out: list[Sample] = []
        for rule in rules:
            for device_id, last in seen.items():
                meta = json.loads(devices.get(device_id) or "{}")
                if meta.get("type") not in rule.device_types or not self._in_scope(
                    rule, meta.get("district_code")
                ):
                    continue
                period = meta.get("period_s") or rule.period_s
                silent = t - last
                if silent < rule.factor * period:
                    continue
                dtype = meta.get("type") or ""
                place = Place(
                    meta.get("district_code"), meta.get("grid_id"), meta.get("lon"), meta.get("lat")
                )
                out.append(
                    Sample(
                        rule,
                        device_id,
                        t,
                        on=True,
                        off=False,
                        place=place,
                        source_kind="device",
                        source_id=device_id,
                        fields={
                            "device_id": device_id,
                            "device_type": DEVICE_TYPE_LABELS_ZH.get(dtype, dtype),
                            "silent_min": silent / 60,
                            "period_min": period / 60,
                        },
                        ordered=False,
                        evidence={"last_reading": _iso(last), "silent_s": round(silent), "period_s": period},
                    )
                )
        return out

    def _window_expiry_samples(self, t: float) -> list[Sample]:
        window_rules = [r for r in self.rules.rules if r.kind in {"video", "correlation", "surge"}]
        if not window_rules:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for rule in window_rules:
                pipe.smembers(active_key(rule.id))
            active = pipe.execute()
        out: list[Sample] = []
        surges: list[tuple[SurgeRule, str, str, float]] = []
        for rule, subjects in zip(window_rules, active, strict=True):
            for subject in sorted(subjects):
                if isinstance(rule, VideoRule):
                    key = _window_key(rule.id, subject)
                    self.redis.zremrangebyscore(key, "-inf", f"({t - rule.window_s}")
                    window = self.redis.zrangebyscore(key, t - rule.window_s, "+inf", withscores=True)
                    members = [json.loads(m) for m in _newest_window(t, window, rule.window_s)[1]]
                    if len(members) < rule.min_count:
                        out.append(_video_sample(rule, subject, t, members, fallback=None))
                elif isinstance(rule, CorrelationRule):
                    prefix = f"{PREFIX}corr:{rule.id}:"
                    district = self.redis.hget(f"{prefix}district_of", subject) or ""
                    lo = t - rule.window_s
                    members = self.redis.zrangebyscore(f"{prefix}grid:{subject}", lo, "+inf", withscores=True)
                    members += self.redis.zrangebyscore(
                        f"{prefix}district:{district}", lo, "+inf", withscores=True
                    )
                    recent = _newest_window(t, members, rule.window_s)[1]
                    sample = _correlation_sample(rule, subject, district, t, [json.loads(m) for m in recent])
                    if sample.off:
                        out.append(sample)
                elif isinstance(rule, SurgeRule):
                    district, _, category = subject.partition(":")
                    surges.append((rule, district, category, t))
        if surges:
            out += [s for s in self._surge_judge(surges) if s.off]
        return out

    # ---- conditions -------------------------------------------------------------------------

    def judge(
        self, samples: Iterable[AnySample], *, busy: Mapping[str, set[str]] | None = None
    ) -> list[Decision]:
        """Move the stored state of every sampled (rule, subject) on; the decisions that follow.

        ``busy``: the rules' busy sets as read in this batch's round trip. When no sample
        holds its condition and no sampled subject is pending or open there, judging would
        write nothing: the batch is then a read-only transaction, as of that read, and needs
        none of the watched reads and EXEC (three round trips, most batches of a normal day).
        """
        ordered = sorted(samples, key=lambda s: s.ts)
        if not ordered:
            return []
        if busy is not None and all(
            not s.on and s.rule.id in busy and s.subject not in busy[s.rule.id] for s in ordered
        ):
            return []
        self._ensure_busy_sets()
        rule_ids = sorted({s.rule.id for s in ordered})
        for attempt in range(MAX_ATTEMPTS):
            try:
                actions = self._judge_once(ordered, rule_ids)
            except redis.WatchError:
                # Another worker changed one of these subjects meanwhile: judge again on its result.
                time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
                continue
            return self._decisions(actions)
        raise RuleStateConflict(f"rule state kept changing under {len(rule_ids)} rules; batch not judged")

    def _judge_once(
        self, samples: Sequence[AnySample], rule_ids: Sequence[str]
    ) -> list[tuple[Sample, str, CondState]]:
        with self.redis.pipeline(transaction=True) as tx:
            busy_keys = [busy_key(r) for r in rule_ids]
            tx.watch(*busy_keys)
            # Reads go over another connection in one round trip each; the WATCHes still
            # catch any change made from then until EXEC.
            with self.redis.pipeline(transaction=False) as read:
                for key in busy_keys:
                    read.smembers(key)
                busy = dict(zip(rule_ids, read.execute(), strict=True))
            # Samples that do not hold their condition cannot move an idle subject: a subject
            # that is idle and holds in none of this batch's samples is neither read nor
            # judged; every other subject is read, watched and judged on all its samples.
            held = {(s.rule.id, s.subject) for s in samples if s.on}
            needed = [
                s.completed()
                for s in samples
                if (s.rule.id, s.subject) in held or s.subject in busy[s.rule.id]
            ]
            keys = sorted({state_key(s.rule.id, s.subject) for s in needed})
            stored: list[dict[str, str]] = []
            if keys:
                tx.watch(*keys)
                with self.redis.pipeline(transaction=False) as read:
                    for key in keys:
                        read.hgetall(key)
                    stored = read.execute()
            before = {k: CondState.from_hash(h) for k, h in zip(keys, stored, strict=True)}
            states = dict(before)
            actions: list[tuple[Sample, str, CondState]] = []
            for s in needed:
                key = state_key(s.rule.id, s.subject)
                new, action = step(
                    states[key],
                    s.ts,
                    on=s.on,
                    off=s.off,
                    min_duration=getattr(s.rule, "min_duration_s", 0.0),
                    refresh=s.rule.refresh_s,
                    ordered=s.ordered,
                    evidence=s.evidence_item,
                )
                states[key] = new
                if action is not None:
                    actions.append((s, action, new))
            tx.multi()
            subjects = {state_key(s.rule.id, s.subject): (s.rule.id, s.subject) for s in needed}
            for key in keys:
                rule_id, subject = subjects[key]
                listed = subject in busy[rule_id]
                if states[key].idle and listed:
                    tx.srem(busy_key(rule_id), subject)
                elif not states[key].idle and not listed:
                    tx.sadd(busy_key(rule_id), subject)
                if states[key] == before[key]:
                    continue
                tx.delete(key)
                if not states[key].empty:
                    tx.hset(key, mapping=states[key].to_hash())
                    tx.expire(key, STATE_TTL_S)
            for s, action, _state in actions:
                if action == "clear":
                    tx.srem(active_key(s.rule.id), s.subject)
                else:
                    tx.sadd(active_key(s.rule.id), s.subject)
            tx.execute()
        return actions

    def warm_up(self) -> None:
        """What the first batch would otherwise do first: check the busy sets (after Redis
        lost its data that is a scan of every rule state) and load the rate rule's script."""
        self._ensure_busy_sets()
        if self._scripts:
            self.redis.script_load(_RATE_WINDOWS_LUA)

    def _ensure_busy_sets(self) -> None:
        """List every non-idle subject in its rule's busy set once, for state written before
        the sets existed (an upgrade): a missing member would let an open alert miss its
        clearing sample. Repeating it is harmless, so workers starting together need no lock.
        """
        if self._busy_checked:
            return
        if not self.redis.exists(BUSY_READY_KEY):
            prefix = f"{PREFIX}state:"
            listed = 0
            for key in self.redis.scan_iter(match=prefix + "*", count=1000):
                rule_id, _, subject = key.removeprefix(prefix).partition(":")
                if not CondState.from_hash(self.redis.hgetall(key)).idle:
                    self.redis.sadd(busy_key(rule_id), subject)
                    listed += 1
            self.redis.set(BUSY_READY_KEY, "1")
            if listed:
                log.info("listed %d pending or open rule conditions in the busy sets", listed)
        self._busy_checked = True

    def _decisions(self, actions: Sequence[tuple[Sample, str, CondState]]) -> list[Decision]:
        names = self._device_names({s.fields.get("device_id") for s, a, _ in actions if a != "clear"})
        out: list[Decision] = []
        for s, action, state in actions:
            rule = s.rule
            key = dedup_key(rule.id, s.subject)
            observed = datetime.fromtimestamp(s.ts, UTC)
            if action == "clear":
                out.append(Clear(rule.id, key, s.reason, observed))
                continue
            values = _template_values(rule, s, names)
            evidence = dict(s.evidence) if s.evidence is not None else {}
            if s.ordered:
                evidence["readings"] = list(state.evidence)
                if state.since is not None:
                    evidence["since"] = _iso(state.since)
            out.append(
                Draft(
                    rule_id=rule.id,
                    domain=rule.domain,
                    severity=rule.severity,
                    title=_render(rule.title, values)[:200],
                    message=_render(rule.message, values),
                    dedup_key=key,
                    source_kind=s.source_kind,
                    source_id=s.source_id,
                    district_code=s.place.district_code,
                    grid_id=s.place.grid_id,
                    lon=s.place.lon,
                    lat=s.place.lat,
                    evidence=evidence,
                    observed_at=observed,
                )
            )
        return out

    def _device_names(self, device_ids: set[Any]) -> dict[str, str]:
        ids = sorted(d for d in device_ids if isinstance(d, str))
        if not ids:
            return {}
        with self.redis.pipeline(transaction=False) as pipe:
            for device_id in ids:
                pipe.hget(device_key(device_id), "name")
            names = pipe.execute()
        return {d: n for d, n in zip(ids, names, strict=True) if n}


# ---- samples ---------------------------------------------------------------------------------


def _reading_value(rule: Any, r: Mapping[str, Any]) -> float | None:
    if r.get("device_type") not in rule.device_types:
        return None
    if rule.districts and r.get("district_code") not in rule.districts:
        return None
    return _number((r.get("metrics") or {}).get(rule.metric))


class _ReadingSample:
    """A reading's judgement by one rule, before its details: what :meth:`RuleEngine.judge`
    needs to tell whether it matters (rule, subject, time, on, off).

    A reading that neither holds the condition nor concerns a busy subject changes nothing,
    and that is almost every reading, so the place, fields and evidence of a full
    :class:`Sample` are built only by :meth:`completed`. A batch makes one of these per
    reading and rule: a slotted class costs a fraction of a dataclass with a closure.
    """

    __slots__ = ("_extra", "_fields", "_r", "_value", "off", "on", "rule", "subject", "ts")

    def __init__(
        self,
        rule: Any,
        r: Mapping[str, Any],
        *,
        on: bool,
        off: bool,
        value: float | None,
        fields: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.rule = rule
        self.subject: str = r["device_id"]
        self.ts = _epoch(r["ts"])
        self.on = on
        self.off = off
        self._r = r
        self._value = value
        self._fields = fields
        self._extra = extra

    def completed(self) -> Sample:
        rule, r, value = self.rule, self._r, self._value
        item: dict[str, Any] = {"ts": _iso(self.ts)}
        metric = getattr(rule, "metric", None)
        if metric is not None and value is not None:
            item[metric] = value
        elif value is not None:
            item["value"] = value
        item |= dict(self._extra or {})
        m = catalog_metric(r.get("device_type") or "", metric) if metric else None
        return Sample(
            rule,
            self.subject,
            self.ts,
            on=self.on,
            off=self.off,
            place=_place(r),
            source_kind="device",
            source_id=self.subject,
            fields={
                "device_id": self.subject,
                "metric": metric or "",
                "metric_label": m.label_zh if m else (metric or ""),
                "unit": m.unit if m else "",
                **self._fields,
            },
            evidence_item=item,
        )


#: what judge takes: samples, and readings' samples not built yet
AnySample = Sample | _ReadingSample


def _judge_standard(
    rule: StandardRule, r: Mapping[str, Any]
) -> tuple[bool, bool, float | None, dict[str, Any]] | None:
    derived = r.get("derived") or {}
    metrics = r.get("metrics") or {}
    if rule.check == "aqi_level":
        level, index = derived.get("level"), _number(derived.get("aqi"))
        if not isinstance(level, int) or index is None:
            return None
        assert rule.min_level is not None
        floor = aqi_standard.LEVELS[rule.min_level - 1].aqi_min
        on = rule.min_level <= level <= rule.max_level
        off = level > rule.max_level or (level < rule.min_level and index < floor - rule.hysteresis)
        fields = {
            "aqi": index,
            "level": level,
            "category": derived.get("category", ""),
            "primary": "、".join(derived.get("primary") or ()) or "—",
        }
        return on, off, index, fields
    if rule.check == "water_grade":
        grade = derived.get("grade")
        if grade not in water_standard.GRADES:
            return None
        target = (r.get("props") or {}).get(rule.target_prop)
        if target not in water_standard.GRADES:
            target = rule.default_target
        worse = water_standard.GRADES.index(grade) - water_standard.GRADES.index(target)
        on = worse >= rule.grades_worse
        fields = {"grade": grade, "target_class": target, "worst": "、".join(derived.get("worst") or ())}
        return on, not on, None, fields
    # noise_excess: judged on LAeq − limit, so the hysteresis can reach below the limit.
    limit, laeq = _number(derived.get("limit")), _number(metrics.get("laeq"))
    period = derived.get("period")
    if limit is None or laeq is None:
        return None
    excess = laeq - limit
    in_period = period in rule.periods
    on = in_period and excess > 0 and excess >= rule.min_excess_db
    off = not in_period or excess < rule.min_excess_db - rule.hysteresis
    fields = {
        "laeq": laeq,
        "limit": limit,
        "excess_db": max(excess, 0.0),
        "period": PERIOD_NAMES.get(period or "", period or ""),
        "zone": (r.get("props") or {}).get("zone", ""),
    }
    return on, off, laeq, fields


def _video_subject(rule: VideoRule, e: Mapping[str, Any]) -> str:
    if rule.group_by == "grid" and e.get("grid_id"):
        return str(e["grid_id"])
    return f"camera:{e['camera_id']}"


def _window_key(rule_id: str, subject: str) -> str:
    return f"{PREFIX}window:{rule_id}:{subject}"


def _event_member(e: Mapping[str, Any]) -> str:
    item = {
        "event_id": e["event_id"],
        "camera_id": e.get("camera_id"),
        "type": e.get("type"),
        "confidence": e.get("confidence"),
        "ts": _iso(_epoch(e["ts"])),
        "lon": e.get("lon"),
        "lat": e.get("lat"),
        "district_code": e.get("district_code"),
        "grid_id": e.get("grid_id"),
    }
    return json.dumps(item, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _video_sample(
    rule: VideoRule,
    subject: str,
    t: float,
    members: list[dict[str, Any]],
    *,
    fallback: Mapping[str, Any] | None,
) -> Sample:
    members.sort(key=lambda m: m["ts"])
    latest = members[-1] if members else (fallback or {})
    count = len(members)
    return Sample(
        rule,
        subject,
        t,
        on=count >= rule.min_count,
        off=count < rule.min_count,
        place=Place(latest.get("district_code"), latest.get("grid_id"), latest.get("lon"), latest.get("lat")),
        source_kind="video",
        source_id=latest.get("camera_id"),
        fields={
            "event_type": latest.get("type", ""),
            "event_label": VIDEO_EVENT_TYPES.get(latest.get("type") or "", latest.get("type") or ""),
            "count": count,
            "window_min": rule.window_s / 60,
            "confidence": max((m.get("confidence") or 0 for m in members), default=0.0),
            "camera_id": latest.get("camera_id", ""),
        },
        ordered=False,
        evidence={"events": members[-WINDOW_EVIDENCE:], "window_s": rule.window_s},
        reason="no_recent_events",
    )


def _signal_facts(
    rule: CorrelationRule,
    observations: Sequence[Mapping[str, Any]],
    videos: Sequence[Mapping[str, Any]],
    tickets: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    facts: list[dict[str, Any]] = []

    def add(signal: Any, row: Mapping[str, Any], source_id: str, value: Any) -> None:
        district, grid = row.get("district_code"), row.get("grid_id")
        if not district or (signal.area == "grid" and not grid):
            return
        ts = _epoch(row["ts"])
        fact = {"s": signal.name, "id": source_id, "t": ts, "v": value, "area": signal.area}
        fact |= {"district_code": district, "grid_id": grid if signal.area == "grid" else None}
        if signal.area == "grid":
            fact |= {"lon": row.get("lon"), "lat": row.get("lat")}
        facts.append(fact)

    for signal in rule.signals:
        if signal.source == "observation":
            for r in observations:
                if r.get("device_type") not in signal.device_types:
                    continue
                value = _number((r.get("metrics") or {}).get(signal.metric))
                if value is None or signal.value is None:
                    continue
                if (value >= signal.value) if signal.op == ">=" else (value <= signal.value):
                    add(signal, r, f"{r['device_id']}@{_iso(_epoch(r['ts']))}", value)
        elif signal.source == "video":
            for e in videos:
                if e.get("type") in signal.event_types and float(e.get("confidence") or 0) >= (
                    signal.min_confidence
                ):
                    add(signal, e, str(e["event_id"]), e.get("confidence"))
        else:
            for t in tickets:
                if t.get("category") in signal.categories:
                    add(signal, t, str(t["ticket_id"]), t.get("category"))
    return facts


def _correlation_sample(
    rule: CorrelationRule, grid: str, district: str, t: float, members: list[dict[str, Any]]
) -> Sample:
    labels = {s.name: s.label for s in rule.signals}
    by_signal: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in sorted(members, key=lambda m: m["t"]):
        by_signal[m["s"]].append(m)
    present = [s.name for s in rule.signals if by_signal.get(s.name)]
    local = [m for m in members if m.get("area") == "grid" and m.get("lon") is not None]
    where = max(local, key=lambda m: m["t"]) if local else {}
    evidence = {
        "signals": {
            name: [{"id": m["id"], "ts": _iso(m["t"]), "value": m.get("v")} for m in by_signal[name][-3:]]
            for name in present
        },
        "window_s": rule.window_s,
    }
    return Sample(
        rule,
        grid,
        t,
        on=len(present) >= rule.min_signals,
        off=len(present) < rule.min_signals,
        place=Place(district or None, grid, where.get("lon"), where.get("lat")),
        source_kind="grid",
        source_id=grid,
        fields={
            "signals": "、".join(labels[n] for n in present),
            "signal_count": len(present),
            "window_min": rule.window_s / 60,
        },
        ordered=False,
        evidence=evidence,
        reason="signals_ended",
    )


def _newest_window(
    t: float, scored: Sequence[tuple[str, float]], window_s: float, *, members_only: bool = True
) -> tuple[float, list[Any]]:
    """The window ending at the newest of ``t`` and the members' scores, and what lies in it.

    Judged at the newest thing known, not at the sample's own time: a late event (another
    worker's, or a redelivery) must not make a window look emptier than it is.
    """
    newest = max([t, *(score for _m, score in scored)])
    kept = sorted((p for p in scored if p[1] >= newest - window_s), key=lambda p: p[1])
    return newest, [m for m, _s in kept] if members_only else kept


def _surge_keys(rule_id: str, district: str, category: str) -> tuple[str, str]:
    return (
        f"{PREFIX}surge:{rule_id}:{district}:{category}",
        f"{PREFIX}surge_hist:{rule_id}:{district}:{category}",
    )


def _surge_baseline(rule: SurgeRule, hist: Mapping[str, str], t: float) -> float:
    """Mean count per window over the previous windows since the category first appeared here."""
    current = int(t // rule.window_s)
    first = int(hist["first"]) if hist.get("first") else current
    earlier = range(max(first, current - rule.baseline_windows), current)
    if not earlier:
        return rule.min_baseline
    mean = sum(int(hist.get(str(b), 0)) for b in earlier) / len(earlier)
    return max(rule.min_baseline, mean)


# ---- small helpers ---------------------------------------------------------------------------


def _place(r: Mapping[str, Any]) -> Place:
    return Place(r.get("district_code"), r.get("grid_id"), _number(r.get("lon")), _number(r.get("lat")))


def _slope_per_hour(series: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (epoch seconds, value), per hour: steadier than first-to-last."""
    n = len(series)
    t0 = series[0][0]
    xs = [t - t0 for t, _ in series]
    ys = [v for _, v in series]
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 3600


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float:  # by far the most common: every metric of every reading
        return value
    if kind is int:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _epoch(ts: datetime | float) -> float:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError(f"naive timestamp {ts.isoformat()} refused")
        return ts.timestamp()
    return float(ts)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class _Values(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "—"


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        text = f"{value:.2f}".rstrip("0").rstrip(".")
        return text if text not in ("", "-0") else "0"
    return value


def _template_values(rule: Any, s: Sample, names: Mapping[str, str]) -> _Values:
    values = _Values({k: _fmt(v) for k, v in s.fields.items()})
    district = s.place.district_code
    values["rule_name"] = rule.name
    values["district"] = DISTRICT_NAMES.get(district or "", district or "市外")
    values["district_code"] = district or ""
    values["grid_id"] = s.place.grid_id or ""
    device_id = s.fields.get("device_id")
    if isinstance(device_id, str):
        values["device_name"] = names.get(device_id, device_id)
    return values


def _render(template: str, values: _Values) -> str:
    return string.Formatter().vformat(template, (), values)
