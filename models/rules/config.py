"""Alert rules as data: the TOML rule file, its validation, and the parsed rule set.

A rule file is a list of ``[[rule]]`` tables. Every rule has the same header (id, names,
domain, severity, kind, title and message templates, scope) and the parameters of its
kind; see ``default_rules.toml`` for one commented example of each kind. Loading is
strict: an unknown field, a missing parameter, a wrong type, a duplicate id or a
placeholder a template cannot fill stops start-up with a :class:`RuleFileError` whose
message names the file, the rule and the field, so a typo never leaves a rule silently
off.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from models.catalog import DEVICE_TYPES, VIDEO_EVENT_TYPES
from models.standards import water as water_standard

DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.toml")

DOMAINS = ("emergency", "urban", "ecology", "hotline", "system")
SEVERITIES = ("critical", "major", "minor", "info")
DISTRICT_CODES = ("511602", "511603", "511621", "511622", "511623", "511681")

Domain = Literal["emergency", "urban", "ecology", "hotline", "system"]
SeverityName = Literal["critical", "major", "minor", "info"]
SensorType = Literal[tuple(DEVICE_TYPES)]  # type: ignore[valid-type]
VideoType = Literal[tuple(VIDEO_EVENT_TYPES)]  # type: ignore[valid-type]
DistrictCode = Literal[DISTRICT_CODES]  # type: ignore[valid-type]

_ID = r"^[a-z][a-z0-9_]{1,47}$"


class RuleFileError(ValueError):
    """The rule file cannot be used; the message names the file, the rule and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# ---- the parts of a rule -------------------------------------------------------------------


class Signal(_Model):
    """One kind of evidence a correlation rule counts (rain, waterlogging, 12345 calls …).

    ``source`` says where it comes from; the filters that apply to that source narrow it.
    ``area = "district"`` makes a signal count for every grid cell of its district: rain
    and river levels are areal, and a gauge seldom stands in the cell that floods.
    """

    name: str = Field(min_length=1, max_length=32)
    label: str = Field(min_length=1, max_length=32)
    source: Literal["observation", "video", "ticket"]
    area: Literal["grid", "district"] = "grid"
    # observation
    device_types: tuple[SensorType, ...] = ()
    metric: str | None = None
    op: Literal[">=", "<="] = ">="
    value: float | None = None
    # video
    event_types: tuple[VideoType, ...] = ()
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    # ticket
    categories: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _complete(self) -> Signal:
        if self.source == "observation":
            if not self.device_types or self.metric is None or self.value is None:
                raise ValueError("an observation signal needs device_types, metric and value")
            _check_metric(self.device_types, self.metric)
        if self.source == "video" and not self.event_types:
            raise ValueError("a video signal needs event_types")
        if self.source == "ticket" and not self.categories:
            raise ValueError("a ticket signal needs categories")
        return self


class _RuleBase(_Model):
    id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=64)
    name_en: str = Field(min_length=1, max_length=96)
    domain: Domain
    severity: SeverityName
    enabled: bool = True
    title: str = Field(min_length=1, max_length=200)
    message: str = Field(min_length=1, max_length=1000)
    #: only these districts (empty: the whole city)
    districts: tuple[DistrictCode, ...] = ()
    #: a persisting condition re-sends its alert at most this often (reading time), so the
    #: open alert shows the latest evidence without a database write per reading
    refresh_s: float = Field(default=60.0, ge=0)
    #: an alert of this rule opens an emergency incident (models.incidents), one per alert:
    #: for a correlation rule, one per episode
    open_incident: bool = False
    #: the type of that incident (a key of models.incidents.INCIDENT_TYPES); unset, it is
    #: read from the rule id (flood…, fire…, gas…)
    incident_type: str | None = None

    @model_validator(mode="after")
    def _incident_type_known(self) -> _RuleBase:
        if self.incident_type is not None:
            from models.incidents import INCIDENT_TYPES

            if self.incident_type not in INCIDENT_TYPES:
                raise ValueError(f"incident_type must be one of {sorted(INCIDENT_TYPES)}")
        return self


class _ReadingRule(_RuleBase):
    device_types: tuple[SensorType, ...] = Field(min_length=1)
    #: the condition must hold this long (reading time) before the alert opens
    min_duration_s: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _metric_known(self) -> _ReadingRule:
        metric = getattr(self, "metric", None)
        if metric is not None:
            _check_metric(self.device_types, metric)
        return self


class ThresholdRule(_ReadingRule):
    """A metric above (or below) a fixed value or a per-device value from its props."""

    kind: Literal["threshold"]
    metric: str
    op: Literal[">=", "<="] = ">="
    #: the threshold, or the fallback when the device has no ``value_prop``
    value: float | None = None
    #: a device prop holding the threshold (e.g. ``warning_level``); wins over ``value``
    value_prop: str | None = None
    #: an open alert clears only once the value is this far back on the safe side
    hysteresis: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _has_threshold(self) -> ThresholdRule:
        if self.value is None and self.value_prop is None:
            raise ValueError("give value, value_prop or both")
        return self


class RateRule(_ReadingRule):
    """A metric changing faster than ``per_hour`` (least-squares slope over ``window_s``)."""

    kind: Literal["rate"]
    metric: str
    #: units per hour; positive = rising, negative = falling
    per_hour: float
    window_s: float = Field(gt=0)
    #: readings needed in the window, and the time they must span, before a slope counts:
    #: two noisy readings a minute apart say nothing about a river
    min_points: int = Field(default=3, ge=2)
    min_span_s: float = Field(default=0.0, ge=0)
    #: units per hour: an open alert clears once the slope is this far below ``per_hour``
    hysteresis: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _nonzero(self) -> RateRule:
        if self.per_hour == 0:
            raise ValueError("per_hour must not be 0")
        if self.min_span_s > self.window_s:
            raise ValueError("min_span_s must not exceed window_s")
        return self


class StandardRule(_ReadingRule):
    """A national standard judged on the reading's derived values (``models.standards``)."""

    kind: Literal["standard"]
    check: Literal["aqi_level", "water_grade", "noise_excess"]
    # aqi_level: derived level (1 优 … 6 严重污染) in [min_level, max_level]
    min_level: int | None = Field(default=None, ge=1, le=6)
    max_level: int = Field(default=6, ge=1, le=6)
    #: AQI points: a raised AQI alert clears below the level's lower bound minus this
    hysteresis: float = Field(default=0.0, ge=0)
    # water_grade: derived grade worse than the device's props target_class by ≥ grades_worse
    target_prop: str = "target_class"
    default_target: str = "III"
    grades_worse: int = Field(default=1, ge=1, le=5)
    # noise_excess: LAeq over the zone limit by ≥ min_excess_db in one of ``periods``
    min_excess_db: float = Field(default=0.0, ge=0)
    periods: tuple[Literal["day", "night"], ...] = ("day", "night")

    @model_validator(mode="after")
    def _check_params(self) -> StandardRule:
        expected = {"aqi_level": "air_quality", "water_grade": "water_quality", "noise_excess": "noise"}
        if set(self.device_types) != {expected[self.check]}:
            raise ValueError(f"check {self.check!r} applies to device_types = [{expected[self.check]!r}]")
        if self.check == "aqi_level":
            if self.min_level is None:
                raise ValueError("check 'aqi_level' needs min_level")
            if self.max_level < self.min_level:
                raise ValueError("max_level must not be below min_level")
        if self.check == "water_grade" and self.default_target not in water_standard.GRADES:
            raise ValueError(f"default_target must be one of {list(water_standard.GRADES)}")
        if self.check == "noise_excess" and not self.periods:
            raise ValueError("periods must not be empty")
        return self


class StalenessRule(_RuleBase):
    """A device silent for ``factor`` × its reporting period → offline."""

    kind: Literal["staleness"]
    device_types: tuple[SensorType, ...] = Field(min_length=1)
    #: the reporting period when the device's props do not give ``period_prop``
    period_s: float = Field(gt=0)
    period_prop: str = "report_period_s"
    factor: float = Field(default=3.0, ge=1)


class VideoRule(_RuleBase):
    """AI video events of some types, at or above a confidence, counted per grid cell or camera."""

    kind: Literal["video"]
    event_types: tuple[VideoType, ...] = Field(min_length=1)
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    group_by: Literal["grid", "camera"] = "grid"
    #: events needed within ``window_s`` to open; the alert clears once fewer remain
    min_count: int = Field(default=1, ge=1)
    window_s: float = Field(gt=0)


class CorrelationRule(_RuleBase):
    """At least ``min_signals`` different signals in one grid cell within ``window_s``."""

    kind: Literal["correlation"]
    signals: tuple[Signal, ...] = Field(min_length=2)
    min_signals: int = Field(default=3, ge=2)
    window_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _signals(self) -> CorrelationRule:
        names = [s.name for s in self.signals]
        if len(set(names)) != len(names):
            raise ValueError("signal names must be unique")
        if self.min_signals > len(names):
            raise ValueError(f"min_signals ({self.min_signals}) exceeds the {len(names)} signals")
        if all(s.area == "district" for s in self.signals):
            raise ValueError("at least one signal must be local (area = 'grid')")
        return self


class SurgeRule(_RuleBase):
    """12345 tickets of one category in one district above ``factor`` × a baseline.

    The baseline is the mean count per window over the previous ``baseline_windows``
    windows (kept in Redis, counted only since the category first appeared in the
    district), never below ``min_baseline``: a fixed default until there is history.
    """

    kind: Literal["surge"]
    #: only these categories (empty: every category)
    categories: tuple[str, ...] = ()
    window_s: float = Field(gt=0)
    min_baseline: float = Field(gt=0)
    baseline_windows: int = Field(default=48, ge=1)
    factor: float = Field(default=2.0, gt=1)
    #: an open surge clears once the count falls below this share of the opening threshold
    clear_ratio: float = Field(default=0.7, gt=0, le=1)


Rule = Annotated[
    ThresholdRule | RateRule | StandardRule | StalenessRule | VideoRule | CorrelationRule | SurgeRule,
    Field(discriminator="kind"),
]
_RULE = TypeAdapter(Rule)

#: placeholders every template may use, and those each kind adds
COMMON_FIELDS = ("rule_name", "district", "district_code", "grid_id")
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "threshold": ("device_id", "device_name", "metric", "metric_label", "unit", "value", "threshold"),
    "rate": ("device_id", "device_name", "metric", "metric_label", "unit", "value", "rate", "window_min"),
    "standard": (
        "device_id",
        "device_name",
        "aqi",
        "level",
        "category",
        "primary",
        "grade",
        "target_class",
        "worst",
        "laeq",
        "limit",
        "excess_db",
        "period",
        "zone",
    ),
    "staleness": ("device_id", "device_name", "device_type", "silent_min", "period_min"),
    "video": ("event_type", "event_label", "count", "window_min", "confidence", "camera_id"),
    "correlation": ("signals", "signal_count", "window_min"),
    "surge": ("category", "count", "baseline", "window_min"),
}


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The enabled rules of a rule file, by kind."""

    rules: tuple[Any, ...]
    source: str

    def of_kind(self, kind: str) -> tuple[Any, ...]:
        return tuple(r for r in self.rules if r.kind == kind)

    def by_id(self, rule_id: str) -> Any:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def __len__(self) -> int:
        return len(self.rules)


def load_rules(path: Path | str | None = None) -> RuleSet:
    """Read and validate a rule file (default: the Guang'an rule set shipped here)."""
    p = Path(path) if path is not None else DEFAULT_RULES_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(f"{p}: cannot read the rule file ({exc.strerror or exc})") from None
    return parse_rules(text, source=str(p))


def parse_rules(text: str, *, source: str = "<rules>") -> RuleSet:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError(f"{source}: not valid TOML: {exc}") from None
    return rules_from_mapping(data, source=source)


def rules_from_mapping(data: Mapping[str, Any], *, source: str = "<rules>") -> RuleSet:
    unknown = set(data) - {"rule", "version"}
    if unknown:
        raise RuleFileError(f"{source}: unknown top-level key(s) {sorted(unknown)}; rules go in [[rule]]")
    if data.get("version", 1) != 1:
        raise RuleFileError(f"{source}: version {data.get('version')!r} is not supported (expected 1)")
    raw = data.get("rule")
    if not isinstance(raw, list) or not raw:
        raise RuleFileError(f"{source}: no rules (expected one or more [[rule]] tables)")
    rules: list[Any] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        label = _label(item, index)
        if not isinstance(item, dict):
            raise RuleFileError(f"{source}: {label}: must be a table")
        try:
            rule = _RULE.validate_python(item)
        except ValidationError as exc:
            raise RuleFileError(f"{source}: {label}: {_first_error(exc)}") from None
        if rule.id in seen:
            raise RuleFileError(f"{source}: {label}: duplicate id")
        seen.add(rule.id)
        for field_name in ("title", "message"):
            problem = _template_problem(getattr(rule, field_name), rule.kind)
            if problem:
                raise RuleFileError(f"{source}: {label}: {field_name}: {problem}")
        if rule.enabled:
            rules.append(rule)
    return RuleSet(tuple(rules), source)


def template_fields(kind: str) -> tuple[str, ...]:
    return COMMON_FIELDS + KIND_FIELDS[kind]


def _label(item: Any, index: int) -> str:
    rule_id = item.get("id") if isinstance(item, dict) else None
    return f"rule {rule_id!r}" if isinstance(rule_id, str) else f"rule #{index + 1}"


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    # The discriminated union puts the kind first in the location; leave it out.
    loc = [str(p) for p in first["loc"]]
    if loc and loc[0] in KIND_FIELDS:
        loc = loc[1:]
    message = re.sub(r"^Value error, ", "", first["msg"])
    got = first.get("input")
    suffix = f", got {got!r}" if first["type"] not in {"missing", "value_error"} and got is not None else ""
    more = len(exc.errors()) - 1
    where = f"{'.'.join(loc)}: " if loc else ""
    return f"{where}{message}{suffix}" + (f" (and {more} more)" if more else "")


def _template_problem(template: str, kind: str) -> str | None:
    allowed = set(template_fields(kind))
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"bad template ({exc})"
    for _text, name, spec, _conv in parsed:
        if name is None:
            continue
        if name not in allowed:
            return f"unknown placeholder {{{name}}}; a {kind} rule can use {sorted(allowed)}"
        if spec and "{" in spec:
            return f"nested placeholder in {{{name}:{spec}}}"
    return None


def _check_metric(device_types: tuple[str, ...], metric: str) -> None:
    for dtype in device_types:
        if metric not in {m.key for m in DEVICE_TYPES[dtype]}:
            raise ValueError(f"metric {metric!r} is not a metric of {dtype}")
