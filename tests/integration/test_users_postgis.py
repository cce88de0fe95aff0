"""Accounts, the throttle and the audit trail on PostgreSQL: ten wrong passwords at the same
moment are counted exactly (one atomic upsert each), and every sign-in action leaves its
audit record, which the database refuses to change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from models import audit, db, users
from models.users import SignIn

NOW = datetime(2026, 7, 14, 2, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
POLICY = users.ThrottlePolicy(max_failures=5, lock=timedelta(minutes=15))


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine_for(pg_url)
    with engine.begin() as conn:
        users.create_account(
            conn, username="zhang", password=PASSWORD, role="duty_officer", by="cli:root", now=NOW
        )
        users.create_account(conn, username="li", password=PASSWORD, role="operator", by="cli:root", now=NOW)
    yield engine
    engine.dispose()


def actions(engine: sa.Engine, prefix: str) -> list[audit.AuditEntry]:
    with engine.connect() as conn:
        return audit.search(conn, action_prefix=prefix, limit=1000)


def test_concurrent_failures_are_all_counted_and_lock_once(engine: sa.Engine) -> None:
    start = threading.Barrier(10)
    outcomes: list[SignIn] = []

    def guess(i: int) -> None:
        start.wait()
        with engine.begin() as conn:
            result = users.authenticate(
                conn, "zhang", f"guess {i}", address=f"10.0.1.{i}", now=NOW, policy=POLICY
            )
        outcomes.append(result.outcome)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with engine.connect() as conn:
        state = next(s for s in users.throttle_states(conn) if s.key == "user:zhang")
    assert state.failures == 10  # none lost to a race
    assert state.locked(NOW) and sorted(outcomes).count(SignIn.LOCKED) >= 1
    with engine.begin() as conn:
        right = users.authenticate(conn, "zhang", PASSWORD, address="10.0.2.1", now=NOW, policy=POLICY)
    assert right.outcome is SignIn.LOCKED
    assert len(actions(engine, "auth.login_failed")) == 10


def test_each_action_leaves_its_audit_record(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        token = users.authenticate(
            conn, "li", PASSWORD, address="10.0.3.1", now=NOW, policy=POLICY
        ).session_id
        users.end_session(conn, token, address="10.0.3.1", now=NOW)
        users.unlock(conn, "user:zhang", by="admin", address="10.0.3.2", now=NOW)
        users.update_account(conn, "li", disabled=True, by="admin", address="10.0.3.2", now=NOW)
        users.set_password(conn, "li", "another long password", by="admin", now=NOW)
    expected = {
        "user.create": ("cli:root", None),
        "auth.login": ("li", "10.0.3.1"),
        "auth.logout": ("li", "10.0.3.1"),
        "auth.lockout": ("zhang", "10.0.1."),
        "auth.unlock": ("admin", "10.0.3.2"),
        "user.disable": ("admin", "10.0.3.2"),
        "user.password": ("admin", None),
    }
    for action, (actor, address) in expected.items():
        found = actions(engine, action)
        assert found, action
        assert found[0].actor == actor, action
        if address:
            assert (found[0].address or "").startswith(address), action
    [disable] = actions(engine, "user.disable")
    assert disable.before["disabled"] is False and disable.after["disabled"] is True
    # Append-only: the database refuses to rewrite history.
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET actor = 'nobody' WHERE action = 'auth.login'"))
