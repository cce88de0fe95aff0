"""Open311 GeoReport v2 for 12345 work orders: services, requests, tokens, errors.

The specification (open311.github.io, GeoReport v2 and Service Discovery; summary in
``shared/standards/workflows-and-interop.md``) asks for XML, allows JSON built from the
XML by the "Spark convention" (a list of records becomes a JSON array, a record an
object), times in ISO 8601 with an offset, and errors as a list of ``{code,
description}`` with HTTP 404 for what does not exist, 403 for a missing or wrong
``api_key`` and 400 for every other request that cannot be served.

Services are the 12345 categories that have a responsible department
(:data:`models.tickets.CATEGORY_DEPARTMENTS`), each with an ASCII ``service_code``, and
``other`` for every other category. Our lifecycle's ten states map onto ``open`` and
``closed``, with ``status_notes`` saying where the order is (docs/interop.md has the table).
Caller name and phone never appear: a request carries the work order's public fields only,
and phone or ID-card numbers typed into the description are masked.

This module maps and renders; it neither serves HTTP nor stores anything. A POST is turned
into the payload the 12345 system publishes on ``{prefix}/hotline/tickets``, and the web
tier hands that to the ingest pipeline, the one path that creates work orders.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from models.clock import CITY_TZ
from models.schema import HotlineTicket
from models.tickets import CATEGORY_DEPARTMENTS, FALLBACK_DEPARTMENT, TicketState, TicketView

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
#: We serve one jurisdiction: Guang'an, by its administrative division code (GB/T 2260).
JURISDICTION_ID = "511600"
#: GET requests: at most this many, and at most this span, by default and by rule (spec).
MAX_REQUESTS = 1000
MAX_SPAN = timedelta(days=90)
#: Longest description the spec allows.
MAX_DESCRIPTION = 4000
#: POST bodies above this are refused before parsing; a full 4,000-character Chinese
#: description is ~36 KB once URL-encoded, so this leaves room for every other field.
MAX_POST_BYTES = 64 * 1024
#: service_request_id list of a GET: more ids than this is not a lookup but a crawl.
MAX_IDS = 200
#: Work orders created over Open311 carry this channel (an app or site of a partner).
CHANNEL = "app"
TICKET_PREFIX = "O311-"
#: 96 random bits: unguessable, and prefix + token fits ticket_id (32 characters).
TOKEN_BYTES = 12

Format = Literal["json", "xml"]
CONTENT_TYPES: Mapping[str, str] = {
    "json": "application/json; charset=utf-8",
    "xml": "text/xml; charset=utf-8",
}


class Open311Error(Exception):
    """A request the spec says to refuse: HTTP ``status`` and the list of (code, description)."""

    def __init__(self, status: int, description: str, *more: str) -> None:
        super().__init__(description)
        self.status = status
        self.errors = [(status, d) for d in (description, *more)]


def bad_request(description: str) -> Open311Error:
    return Open311Error(400, description)


def not_found(description: str) -> Open311Error:
    return Open311Error(404, description)


# --------------------------------------------------------------------------------------------
# Services


@dataclass(frozen=True, slots=True)
class Service:
    code: str
    category: str
    name_en: str
    keywords: str
    group: str

    def record(self) -> dict[str, Any]:
        return {
            "service_code": self.code,
            "service_name": self.category,
            "description": f"{self.category}（{self.name_en}），承办：{self.group}",
            # Every service takes the urgency attribute (see service_definition).
            "metadata": True,
            "type": "realtime",
            "keywords": self.keywords,
            "group": self.group,
        }


#: Category → (service_code, English name, extra keywords).
_CODES: Mapping[str, tuple[str, str, str]] = {
    "占道经营": ("street_vending", "Street vending on the road", "摊贩,占道,street vending"),
    "垃圾清运": ("garbage", "Garbage collection", "垃圾,清运,环卫,garbage"),
    "路灯故障": ("street_light", "Street light out", "路灯,照明,street light"),
    "违章建筑": ("illegal_building", "Illegal construction", "违建,搭建,illegal building"),
    "道路破损": ("road_damage", "Damaged road", "坑洼,路面,pothole,road"),
    "交通设施": ("traffic_facility", "Traffic lights and signs", "红绿灯,标志,traffic light,sign"),
    "噪声扰民": ("noise", "Noise nuisance", "噪声,施工,扰民,noise"),
    "油烟污染": ("cooking_fumes", "Cooking fumes", "油烟,餐馆,fumes"),
    "供水问题": ("water_supply", "Water supply", "停水,供水,水压,water"),
    "宠物扰民": ("pets", "Pet nuisance", "犬只,宠物,dog,pet"),
    "食品安全": ("food_safety", "Food safety", "食品,餐饮,food safety"),
    "价格投诉": ("pricing", "Price complaint", "价格,收费,price"),
}
OTHER = Service("other", "其他", "Other", "其他,other", FALLBACK_DEPARTMENT)

SERVICES: tuple[Service, ...] = (
    *(
        Service(code, category, name_en, keywords, CATEGORY_DEPARTMENTS[category])
        for category, (code, name_en, keywords) in _CODES.items()
    ),
    OTHER,
)
_BY_CODE: Mapping[str, Service] = {s.code: s for s in SERVICES}
_BY_CATEGORY: Mapping[str, Service] = {s.category: s for s in SERVICES if s is not OTHER}
assert set(_CODES) == set(CATEGORY_DEPARTMENTS), "every category with a department needs a service code"


def service_for_category(category: str) -> Service:
    return _BY_CATEGORY.get(category, OTHER)


def service_list() -> list[dict[str, Any]]:
    return [s.record() for s in SERVICES]


URGENCY_ATTRIBUTE = "urgency"
_URGENCIES = {"normal": "一般 / normal", "urgent": "紧急 / urgent"}


def service_definition(code: str) -> dict[str, Any]:
    """The attributes of a service: the urgency the 12345 centre's deadlines depend on."""
    if code not in _BY_CODE:
        raise not_found(f"service_code {code!r} not found")
    return {
        "service_code": code,
        "attributes": [
            {
                "variable": True,
                "code": URGENCY_ATTRIBUTE,
                "datatype": "singlevaluelist",
                "required": False,
                "datatype_description": "normal or urgent; urgent orders have shorter deadlines",
                "order": 1,
                "description": "紧急程度（默认一般）/ urgency (default normal)",
                "values": [{"key": k, "name": v} for k, v in _URGENCIES.items()],
            }
        ],
    }


def discovery(endpoint_url: str, *, changeset: str, contact: str, key_service: str) -> dict[str, Any]:
    """The Service Discovery document (both formats are required by that spec)."""
    return {
        "changeset": changeset,
        "contact": contact,
        "key_service": key_service,
        "endpoints": [
            {
                "specification": SPECIFICATION,
                "url": endpoint_url,
                "changeset": changeset,
                "type": "production",
                "formats": ["text/xml", "application/json"],
            }
        ],
    }


# --------------------------------------------------------------------------------------------
# Requests: lifecycle → open/closed


_CLOSED_STATES = frozenset({TicketState.CLOSED, TicketState.FOLLOWED_UP, TicketState.MERGED})


def status_of(ticket: TicketView) -> tuple[str, str]:
    """(``open``/``closed``, ``status_notes``) for a work order, notes in Chinese and English."""
    state = ticket.state
    dept = ticket.department or "承办部门"
    notes: dict[str, tuple[str, str]] = {
        TicketState.REGISTERED: ("已受理，待派单", "registered, awaiting dispatch"),
        TicketState.DISPATCHED: (f"已派单至{dept}", f"dispatched to {dept}"),
        TicketState.ACCEPTED: (f"{dept}已签收", f"accepted by {dept}"),
        TicketState.IN_PROGRESS: (f"{dept}办理中", f"being handled by {dept}"),
        TicketState.EXTENSION_REQUESTED: (
            f"{dept}办理中，已申请延期",
            f"being handled by {dept}; extension requested",
        ),
        TicketState.RETURNED: (
            "承办部门退单，待重新派单",
            "returned by the department, awaiting dispatch again",
        ),
        TicketState.REPLIED: ("已答复，待办结", "replied to the caller, awaiting closure"),
        TicketState.CLOSED: ("已办结", "closed"),
        TicketState.FOLLOWED_UP: ("已办结并回访", "closed and followed up"),
        TicketState.MERGED: (f"重复件，已合并到 {ticket.repeat_of}", f"duplicate of {ticket.repeat_of}"),
    }
    zh, en = notes.get(state, (state, state))
    if state == TicketState.FOLLOWED_UP and ticket.satisfaction:
        from models.tickets import Satisfaction

        rating = Satisfaction(ticket.satisfaction)
        zh, en = f"{zh}（{rating.label_zh}）", f"{en} ({rating.value.replace('_', ' ')})"
    if state == TicketState.IN_PROGRESS and ticket.extension_state == "approved" and ticket.extension_until:
        zh += f"，已延期至 {_local(ticket.extension_until)}"
        en += f", extended to {w3_time(ticket.extension_until)}"
    if ticket.supervised and state not in _CLOSED_STATES:
        zh, en = f"{zh}（督办件）", f"{en} (under supervision)"
    return ("closed" if state in _CLOSED_STATES else "open"), f"{zh} / {en}"


def w3_time(at: datetime) -> str:
    """ISO 8601 with the city's offset, seconds precision (the spec's w3 format)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(CITY_TZ).replace(microsecond=0).isoformat()


def _local(at: datetime) -> str:
    return f"{at.astimezone(CITY_TZ):%m-%d %H:%M}"


#: Mainland mobile numbers and resident ID numbers, wherever a caller typed them.
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_ID_CARD = re.compile(r"(?<![\dXx])(\d{6})\d{8}(\d{3}[\dXx])(?![\dXx])")


def redact(text: str) -> str:
    """Mask phone and ID-card numbers in free text the way ``mask_phone`` masks the caller's."""
    text = _ID_CARD.sub(lambda m: m.group(1) + "*" * 8 + m.group(2), text)
    return _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(3), text)


def request_record(ticket: TicketView, updated_at: datetime | None) -> dict[str, Any]:
    """One service request as the spec lists its fields; never the caller."""
    status, notes = status_of(ticket)
    service = service_for_category(ticket.category)
    closed = status == "closed"
    updated = (ticket.closed_at if closed and ticket.closed_at else None) or updated_at or ticket.ts
    notice = None
    if not closed and ticket.reply_due is not None:
        notice = f"将于 {_local(ticket.reply_due)} 前答复 / reply due by {w3_time(ticket.reply_due)}"
    return {
        "service_request_id": ticket.ticket_id,
        "status": status,
        "status_notes": notes,
        "service_name": ticket.category,
        "service_code": service.code,
        "description": redact(ticket.content or ticket.title),
        "agency_responsible": ticket.department,
        "service_notice": notice,
        "requested_datetime": w3_time(ticket.ts),
        "updated_datetime": w3_time(updated),
        "expected_datetime": None if ticket.close_due is None else w3_time(ticket.close_due),
        "address": ticket.address,
        "address_id": None,
        "zipcode": None,
        "lat": ticket.lat,
        "long": ticket.lon,
        "media_url": None,
    }


# --------------------------------------------------------------------------------------------
# GET requests: the filters


@dataclass(frozen=True, slots=True)
class RequestQuery:
    ids: tuple[str, ...] = ()
    service_codes: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    statuses: tuple[str, ...] = ()
    limit: int = MAX_REQUESTS


_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")


def _single(args: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = [v.strip() for v in args.get(name, []) if v.strip()]
    if not values:
        return None  # "optional" means absent and empty are the same (spec, Definitions)
    if len(values) > 1:
        # The spec's lists are comma-separated within one parameter.
        return ",".join(values)
    return values[0]


def _list(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    return tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))


def parse_time(name: str, raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise bad_request(
            f"{name} must be ISO 8601 with a UTC offset, e.g. 2026-07-01T00:00:00+08:00"
        ) from None
    if value.tzinfo is None:
        raise bad_request(f"{name} needs a UTC offset (Z or ±hh:mm)")
    return value


def check_jurisdiction(args: Mapping[str, Sequence[str]]) -> None:
    given = _single(args, "jurisdiction_id")
    if given is not None and given != JURISDICTION_ID:
        raise not_found(f"jurisdiction_id {given!r} not found; this endpoint serves {JURISDICTION_ID}")


def parse_query(args: Mapping[str, Sequence[str]], *, now: datetime) -> RequestQuery:
    """The GET requests filters with the spec's defaults: the last 90 days, at most 1,000.

    ``service_request_id`` overrides every other filter (spec).
    """
    check_jurisdiction(args)
    ids = _list(_single(args, "service_request_id"))
    if ids:
        if len(ids) > MAX_IDS:
            raise bad_request(f"at most {MAX_IDS} service_request_id values at once")
        bad = [i for i in ids if not _ID.match(i)]
        if bad:
            raise bad_request(f"service_request_id {bad[0][:80]!r} is not a valid id")
        return RequestQuery(ids=ids)
    codes = _list(_single(args, "service_code"))
    unknown = [c for c in codes if c not in _BY_CODE]
    if unknown:
        raise bad_request(f"service_code {unknown[0][:80]!r} is not a known service")
    statuses = _list(_single(args, "status"))
    if any(s not in ("open", "closed") for s in statuses):
        raise bad_request("status must be open, closed or both (comma-separated)")
    start_raw, end_raw = _single(args, "start_date"), _single(args, "end_date")
    start = parse_time("start_date", start_raw) if start_raw else None
    end = parse_time("end_date", end_raw) if end_raw else None
    if start is None and end is None:
        end, start = now, now - MAX_SPAN
    elif start is None:
        assert end is not None
        start = end - MAX_SPAN
    elif end is None:
        end = min(now, start + MAX_SPAN) if start < now else start + MAX_SPAN
    if start > end:
        raise bad_request("start_date is after end_date")
    if end - start > MAX_SPAN:
        raise bad_request("start_date and end_date may not span more than 90 days")
    return RequestQuery(service_codes=codes, start=start, end=end, statuses=statuses)


_TICKETS = HotlineTicket.__table__


def find_requests(conn: Connection, query: RequestQuery) -> list[dict[str, Any]]:
    """The service requests a query selects, newest first."""
    t = _TICKETS
    select = sa.select(t)
    if query.ids:
        select = select.where(t.c.ticket_id.in_(query.ids))
    else:
        assert query.start is not None and query.end is not None
        select = select.where(t.c.ts >= query.start, t.c.ts <= query.end)
        if query.service_codes:
            known = [_BY_CODE[c].category for c in query.service_codes if c != OTHER.code]
            matches = [t.c.category.in_(known)] if known else []
            if OTHER.code in query.service_codes:
                matches.append(t.c.category.not_in(list(_BY_CATEGORY)))
            select = select.where(sa.or_(*matches))
        if len(set(query.statuses)) == 1:
            closed = t.c.state.in_(sorted(_CLOSED_STATES))
            select = select.where(closed if query.statuses[0] == "closed" else sa.not_(closed))
    select = select.order_by(t.c.ts.desc(), t.c.ticket_id.desc()).limit(query.limit)
    return [request_record(TicketView.from_row(r), r["updated_at"]) for r in conn.execute(select).mappings()]


def get_request(conn: Connection, ticket_id: str) -> dict[str, Any]:
    if not _ID.match(ticket_id):
        raise not_found(f"service_request_id {ticket_id[:80]!r} not found")
    found = find_requests(conn, RequestQuery(ids=(ticket_id,)))
    if not found:
        raise not_found(f"service_request_id {ticket_id!r} not found")
    return found[0]


def token_of(ticket_id: str) -> str | None:
    """The token part of an id minted by :func:`parse_post` (None for other work orders)."""
    return ticket_id[len(TICKET_PREFIX) :] if ticket_id.startswith(TICKET_PREFIX) else None


def lookup_token(conn: Connection, token: str) -> dict[str, Any]:
    """``tokens/{token}``: the request a token stands for.

    Our requests are created at once (``type`` realtime), so a POST answers with the id
    itself; a token is the random part of that id, and resolves as soon as it exists.
    """
    if not re.fullmatch(rf"[0-9a-f]{{{2 * TOKEN_BYTES}}}", token):
        raise not_found(f"token {token[:80]!r} not found")
    ticket_id = TICKET_PREFIX + token
    exists = conn.execute(sa.select(_TICKETS.c.ticket_id).where(_TICKETS.c.ticket_id == ticket_id)).first()
    if exists is None:
        raise not_found(f"token {token!r} not found")
    return {"service_request_id": ticket_id, "token": token}


# --------------------------------------------------------------------------------------------
# POST requests


_POST_FIELDS = frozenset(
    {
        "api_key",
        "jurisdiction_id",
        "service_code",
        "lat",
        "long",
        "address_string",
        "address_id",
        "email",
        "device_id",
        "account_id",
        "first_name",
        "last_name",
        "phone",
        "description",
        "media_url",
        f"attribute[{URGENCY_ATTRIBUTE}]",
    }
)
_LIMITS = {
    "address_string": 200,
    "email": 254,
    "device_id": 64,
    "account_id": 64,
    "first_name": 50,
    "last_name": 50,
    "phone": 20,
    "media_url": 500,
}
_PHONE = re.compile(r"^\+?[0-9][0-9\- ]{2,19}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
#: Title of the work order: the first line of the description, cut here.
TITLE_CHARS = 40


@dataclass(frozen=True, slots=True)
class NewRequest:
    """A checked POST: the hotline payload to ingest, and the id and token it will have."""

    payload: dict[str, Any]
    service_request_id: str
    token: str
    service: Service

    def response(self) -> dict[str, Any]:
        return {
            "service_request_id": self.service_request_id,
            "service_notice": f"已受理，由{self.service.group}承办 / registered, to be handled by "
            f"{self.service.group}",
            "account_id": None,
        }


def check_api_key(form: Mapping[str, Sequence[str]], api_keys: frozenset[str]) -> None:
    """403 unless ``api_key`` is one of the configured keys (compared in constant time)."""
    given = [v for v in form.get("api_key", []) if v]
    if not given:
        raise Open311Error(403, "api_key is missing -- can't proceed with create_request")
    ok = len(given) == 1 and any(secrets.compare_digest(given[0].encode(), k.encode()) for k in api_keys)
    if not ok:
        raise Open311Error(403, "invalid api_key received -- can't proceed with create_request")


def parse_post(
    form: Mapping[str, Sequence[str]],
    *,
    now: datetime,
    api_keys: frozenset[str],
    inside_city: Callable[[float, float], bool] | None = None,
) -> NewRequest:
    """Check a POST service request strictly and build the hotline payload.

    ``inside_city(lon, lat)`` says whether a point is in Guang'an (default: one of its
    districts holds it, :func:`geo.locate.locate_point`). Every problem is an
    :class:`Open311Error` (403 for the key, 404 for an unknown service or jurisdiction, 400
    for the rest); nothing is built from a request with any problem.
    """
    check_api_key(form, api_keys)
    unknown = sorted(k for k in form if k not in _POST_FIELDS)
    if unknown:
        raise bad_request(f"unknown parameter {unknown[0][:60]!r}")
    repeated = sorted(k for k, v in form.items() if len(v) > 1)
    if repeated:
        raise bad_request(f"parameter {repeated[0]!r} given more than once")
    values = {k: v[0].strip() for k, v in form.items() if v and v[0].strip()}
    check_jurisdiction(form)

    code = values.get("service_code")
    if code is None:
        raise bad_request("service_code was not provided")
    service = _BY_CODE.get(code)
    if service is None:
        raise not_found(f"service_code {code[:60]!r} not found")

    for name, limit in _LIMITS.items():
        if name in values and len(values[name]) > limit:
            raise bad_request(f"{name} is longer than {limit} characters")
    for name, value in values.items():
        if name != "description" and ("\n" in value or "\r" in value or _CONTROL.search(value)):
            raise bad_request(f"{name} may not contain line breaks or control characters")
    description = values.get("description", "")
    if len(description) > MAX_DESCRIPTION:
        raise bad_request(f"description is longer than {MAX_DESCRIPTION} characters")
    if _CONTROL.search(description):
        raise bad_request("description may not contain control characters")

    lon = lat = None
    if "lat" in values or "long" in values:
        if "lat" not in values or "long" not in values:
            raise bad_request("lat and long must be sent together")
        lat, lon = _coordinate("lat", values["lat"], 90), _coordinate("long", values["long"], 180)
        if not (inside_city or in_guangan)(lon, lat):
            raise bad_request(f"lat/long ({lat}, {lon}) is outside Guang'an (WGS-84 expected)")
    if "address_id" in values:
        raise bad_request("address_id is not supported here; send lat and long or address_string")
    address = values.get("address_string")
    if lon is None and address is None:
        raise bad_request("a location is required: lat and long, or address_string")

    if "email" in values and "@" not in values["email"]:
        raise bad_request("email is not an e-mail address")
    if "phone" in values and not _PHONE.match(values["phone"]):
        raise bad_request("phone may hold digits, spaces, '-' and a leading '+' only")
    media = values.get("media_url")
    if media is not None and not re.match(r"^https?://[^\s]+$", media):
        raise bad_request("media_url must be an http or https URL")
    urgency = values.get(f"attribute[{URGENCY_ATTRIBUTE}]", "normal")
    if urgency not in _URGENCIES:
        raise bad_request(f"attribute[{URGENCY_ATTRIBUTE}] must be normal or urgent")

    content = description
    if media is not None:
        content = f"{content}\n附件 / media: {media}".strip()
    if len(content) > MAX_DESCRIPTION:
        raise bad_request(f"description and media_url together exceed {MAX_DESCRIPTION} characters")
    first_line = next((line.strip() for line in description.splitlines() if line.strip()), "")
    title = first_line[:TITLE_CHARS] or service.category
    caller = _caller(values.get("first_name"), values.get("last_name"), values.get("phone"))

    token = secrets.token_hex(TOKEN_BYTES)
    ticket_id = TICKET_PREFIX + token
    payload: dict[str, Any] = {
        "ticket_id": ticket_id,
        "ts": now.isoformat(),
        "channel": CHANNEL,
        "category": service.category,
        "title": title,
        "content": content,
        "urgency": urgency,
    }
    if address is not None:
        payload["address"] = address
    if lon is not None:
        payload["lon"], payload["lat"] = lon, lat
    if caller:
        payload["caller"] = caller
    return NewRequest(payload, ticket_id, token, service)


def in_guangan(lon: float, lat: float) -> bool:
    from geo.locate import locate_point

    district, _grid = locate_point(lon, lat)
    return district is not None


def _coordinate(name: str, raw: str, bound: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"{name} must be a number in degrees (WGS-84)") from None
    if not math.isfinite(value) or not -bound <= value <= bound:
        raise bad_request(f"{name} must be between -{bound:g} and {bound:g}")
    return value


def _caller(first: str | None, last: str | None, phone: str | None) -> dict[str, str]:
    caller: dict[str, str] = {}
    if first or last:
        parts = [p for p in (first, last) if p]
        # Chinese names run family name first, without a space.
        ascii_only = all(p.isascii() for p in parts)
        caller["name"] = " ".join(parts) if ascii_only else "".join(p for p in (last, first) if p)
    if phone:
        caller["phone"] = phone
    return caller


# --------------------------------------------------------------------------------------------
# Rendering


_ITEM_TAGS: Mapping[str, str] = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "attributes": "attribute",
    "values": "value",
    "endpoints": "endpoint",
    "formats": "format",
}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _append(parent: ET.Element, tag: str, value: Any) -> None:
    element = ET.SubElement(parent, tag)
    if isinstance(value, Mapping):
        for key, item in value.items():
            _append(element, key, item)
    elif isinstance(value, list):
        child = _ITEM_TAGS.get(tag, "item")
        for item in value:
            _append(element, child, item)
    else:
        element.text = _text(value)


def render(fmt: str, root: str, body: Any) -> bytes:
    """``body`` (a list of records or one record) as the spec's XML or its JSON mapping."""
    if fmt == "json":
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    element = ET.Element(root)
    if isinstance(body, list):
        child = _ITEM_TAGS[root]
        for item in body:
            _append(element, child, item)
    else:
        for key, item in body.items():
            _append(element, key, item)
    return xml_document(element)


def xml_document(element: ET.Element) -> bytes:
    """UTF-8 XML with the declaration the spec asks for (``encoding="UTF-8"``)."""
    return XML_DECLARATION + ET.tostring(element, encoding="unicode").encode("utf-8")


XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def render_errors(fmt: str, error: Open311Error) -> bytes:
    return render(fmt, "errors", [{"code": code, "description": text} for code, text in error.errors])


__all__ = [
    "CONTENT_TYPES",
    "JURISDICTION_ID",
    "MAX_POST_BYTES",
    "MAX_REQUESTS",
    "MAX_SPAN",
    "OTHER",
    "SERVICES",
    "NewRequest",
    "Open311Error",
    "RequestQuery",
    "Service",
    "bad_request",
    "check_api_key",
    "discovery",
    "find_requests",
    "get_request",
    "lookup_token",
    "not_found",
    "parse_post",
    "parse_query",
    "redact",
    "render",
    "render_errors",
    "request_record",
    "service_definition",
    "service_for_category",
    "service_list",
    "status_of",
    "token_of",
    "w3_time",
]
