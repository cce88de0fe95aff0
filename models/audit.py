"""The audit trail: who did what to which record, when, from where, with before and after.

Rows go into ``audit_log`` inside the caller's transaction, so an action and its audit
entry are committed (or rolled back) together. The table is append-only: triggers refuse
UPDATE and DELETE on both backends, so nothing here offers either.

Before/after images hold only what the caller passes; callers keep personal data (a
12345 caller's name and phone) out of them.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from shapely.geometry.base import BaseGeometry
from sqlalchemy.engine import Connection

from models.schema import AuditLog

#: Column widths of ``audit_log``: longer values are cut rather than failing the action.
_ACTOR_LEN = 64
_ADDRESS_LEN = 64
_ACTION_LEN = 64
_ENTITY_TYPE_LEN = 32
_ENTITY_ID_LEN = 64


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the trail, as read back."""

    id: int
    ts: datetime
    actor: str
    address: str | None
    action: str
    entity_type: str
    entity_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def jsonable(value: Any) -> Any:
    """``value`` in a form JSON columns store faithfully (timestamps as ISO-8601 text …)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, BaseGeometry):
        return value.wkt
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    return str(value)


def record(
    conn: Connection,
    *,
    actor: str,
    address: str | None,
    action: str,
    entity_type: str,
    entity_id: str | int | None,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    now: datetime,
) -> int:
    """Append one entry to ``audit_log`` in the caller's transaction; returns its id.

    ``action`` is ``"<entity_type>.<verb>"`` by convention (``alert.acknowledge``), so the
    trail of one kind of record can be filtered without a join.
    """
    table = AuditLog.__table__
    values = {
        "ts": now,
        "actor": actor[:_ACTOR_LEN],
        "address": address[:_ADDRESS_LEN] if address else None,
        "action": action[:_ACTION_LEN],
        "entity_type": entity_type[:_ENTITY_TYPE_LEN],
        "entity_id": None if entity_id is None else str(entity_id)[:_ENTITY_ID_LEN],
        "before": jsonable(before) if before is not None else None,
        "after": jsonable(after) if after is not None else None,
    }
    return conn.execute(sa.insert(table).returning(table.c.id), values).scalar_one()


def entries(
    conn: Connection, *, entity_type: str, entity_id: str | int | None = None, limit: int = 500
) -> list[AuditEntry]:
    """The trail of one record (or of a kind of record), oldest first."""
    table = AuditLog.__table__
    query = sa.select(table).where(table.c.entity_type == entity_type)
    if entity_id is not None:
        query = query.where(table.c.entity_id == str(entity_id))
    query = query.order_by(table.c.ts, table.c.id).limit(limit)
    return [AuditEntry(**row._mapping) for row in conn.execute(query)]


def search(
    conn: Connection,
    *,
    actor: str | None = None,
    action_prefix: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """Entries by who (exact), what (action prefix, e.g. ``auth.``) and when, newest first.

    Parameters are bound, never spliced: ``%`` and ``_`` in a prefix match themselves.
    """
    table = AuditLog.__table__
    query = sa.select(table)
    if actor:
        query = query.where(table.c.actor == actor)
    if action_prefix:
        query = query.where(table.c.action.startswith(action_prefix, autoescape=True))
    if since is not None:
        query = query.where(table.c.ts >= since)
    if until is not None:
        query = query.where(table.c.ts < until)
    query = query.order_by(table.c.ts.desc(), table.c.id.desc()).limit(limit)
    return [AuditEntry(**row._mapping) for row in conn.execute(query)]


__all__ = ["AuditEntry", "entries", "jsonable", "record", "search"]
