"""The running system's handles that pages read from (set once by ``app.create_app``)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from models.config import Settings
from models.live import LiveStore


@dataclass(frozen=True, slots=True)
class PageContext:
    settings: Settings
    live: LiveStore
    engine: sa.Engine


_context: PageContext | None = None


def configure(context: PageContext) -> None:
    global _context
    _context = context


def current() -> PageContext:
    if _context is None:
        raise RuntimeError(
            "dashboards.context.configure() was not called; build the app with app.create_app()"
        )
    return _context
