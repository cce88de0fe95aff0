"""District scope of a read: one condition that every model's list and count queries share.

A district-scoped account (``models.users.Account.district_code``) reads its district
only. The pages pass that code down to the queries instead of filtering the whole city
in Python afterwards, so the database does the work with its district indexes, and the
page never holds another district's records. ``None`` is the whole city.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def in_district(column: sa.ColumnElement[Any], district_code: str | None) -> sa.ColumnElement[bool]:
    """``column = district_code``; always true for None (the whole city, unlocated rows too)."""
    return sa.true() if district_code is None else column == district_code


__all__ = ["in_district"]
