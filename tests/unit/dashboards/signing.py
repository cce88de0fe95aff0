"""Callbacks' work run as a signed-in user without a browser: a Flask request context
whose ``g`` holds the account, as ``dashboards.auth``'s gate leaves it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import flask

from models.schema import Role
from models.users import Account


def account(
    username: str = "zhangsan",
    role: str = "duty_officer",
    *,
    display_name: str | None = None,
    district_code: str | None = None,
    kiosk_path: str | None = None,
) -> Account:
    return Account(
        id=1,
        username=username,
        display_name=display_name or username,
        role=Role(role),
        district_code=district_code,
        disabled=False,
        kiosk_path=kiosk_path,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        last_login_at=None,
    )


@contextmanager
def signed_in(who: Account, path: str = "/", *, address: str = "10.0.0.7") -> Iterator[Account]:
    app = flask.Flask("signed-in")
    with app.test_request_context(path, environ_base={"REMOTE_ADDR": address}):
        flask.g.cityops_account = who
        yield who
