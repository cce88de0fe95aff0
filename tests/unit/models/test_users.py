"""Accounts, the permission table, password hashing, the login throttle and sessions, on
the embedded SQLite database with a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from models import audit, db, users
from models.schema import Role
from models.users import Permission, SessionEnd, SignIn

NOW = datetime(2026, 7, 14, 2, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
POLICY = users.ThrottlePolicy(max_failures=5, lock=timedelta(minutes=15))
SESSIONS = users.SessionPolicy(idle=timedelta(minutes=30), lifetime=timedelta(hours=12))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    url = f"sqlite:///{tmp_path / 'users.sqlite3'}"
    db.upgrade_database(url)
    engine = db.create_engine_for(url)
    with engine.begin() as conn:
        users.create_account(
            conn, username="zhang", password=PASSWORD, role="duty_officer", by="test", now=NOW
        )
    yield engine
    engine.dispose()


def sign_in(engine: sa.Engine, password: str = PASSWORD, *, at: datetime = NOW, address: str = "10.0.0.1"):
    with engine.begin() as conn:
        return users.authenticate(conn, "zhang", password, address=address, now=at, policy=POLICY)


def trail(engine: sa.Engine, prefix: str) -> list[audit.AuditEntry]:
    with engine.connect() as conn:
        return audit.search(conn, action_prefix=prefix)


# ---- the permission table ---------------------------------------------------------------------


def test_the_permission_table_matches_the_roles_described() -> None:
    can = lambda role, p: users.allowed(role, p)  # noqa: E731
    # Every role may view; a viewer nothing else.
    assert all(can(r, Permission.VIEW) for r in Role)
    assert users.ROLE_PERMISSIONS[Role.VIEWER] == {Permission.VIEW}
    # Leaders read and export; they do not act.
    assert can("leader", "export") and not can("leader", "alert.act") and not can("leader", "ticket.dispatch")
    # Operators dispatch work orders and open incidents; alerts are the duty officer's.
    assert can("operator", "ticket.dispatch") and can("operator", "incident.open")
    assert not can("operator", "alert.act") and not can("operator", "incident.command")
    assert all(can("duty_officer", p) for p in users.ROLE_PERMISSIONS[Role.OPERATOR])
    assert can("duty_officer", "alert.act") and not can("duty_officer", "admin")
    assert users.ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    # Unknown roles and permissions are refused, not errors.
    assert not can("root", "view") and not can("admin", "launch")


# ---- passwords --------------------------------------------------------------------------------


def test_passwords_are_argon2id_salted_and_checked() -> None:
    first, second = users.hash_password(PASSWORD), users.hash_password(PASSWORD)
    assert first.startswith("$argon2id$") and first != second  # salted
    assert users.verify_password(first, PASSWORD) and not users.verify_password(first, PASSWORD + "!")
    assert not users.verify_password("not a hash", PASSWORD)
    assert not users.verify_password(first, "x" * 10_000)  # huge inputs refused before hashing
    with pytest.raises(users.AccountError, match="at least 12"):
        users.hash_password("short")


def test_accounts_are_created_once_without_the_hash_leaving_the_module(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(users.AccountError, match="already exists"):
            users.create_account(conn, username="zhang", password=PASSWORD, role="admin", by="t", now=NOW)
        with pytest.raises(users.AccountError, match="role must be"):
            users.create_account(conn, username="li", password=PASSWORD, role="root", by="t", now=NOW)
        with pytest.raises(users.AccountError, match="username"):
            users.create_account(conn, username="<script>", password=PASSWORD, role="viewer", by="t", now=NOW)
        with pytest.raises(users.AccountError, match="kiosk"):
            users.create_account(
                conn, username="wall1", password=PASSWORD, role="admin", kiosk_path="/wall", by="t", now=NOW
            )
        account = users.get_account(conn, "zhang")
    assert account is not None and account.role is Role.DUTY_OFFICER
    assert not hasattr(account, "password_hash")
    created = trail(engine, "user.create")
    assert [e.entity_id for e in created] == ["zhang"] and "password" not in str(created[0].after)


# ---- sign-in and the throttle -----------------------------------------------------------------


def test_a_good_password_signs_in_and_is_audited(engine: sa.Engine) -> None:
    result = sign_in(engine)
    assert result.outcome is SignIn.OK and result.session_id and result.account.username == "zhang"
    [entry] = trail(engine, "auth.login")
    assert (entry.actor, entry.address, entry.after["role"]) == ("zhang", "10.0.0.1", "duty_officer")


def test_five_failures_lock_the_account_for_fifteen_minutes_even_for_the_right_password(
    engine: sa.Engine,
) -> None:
    outcomes = [sign_in(engine, "wrong password!", at=NOW + timedelta(seconds=i)).outcome for i in range(5)]
    assert outcomes == [SignIn.WRONG] * 4 + [SignIn.LOCKED]
    locked = sign_in(engine, at=NOW + timedelta(minutes=14))
    assert locked.outcome is SignIn.LOCKED and locked.session_id is None
    assert locked.locked_until == NOW + timedelta(seconds=4) + timedelta(minutes=15)
    assert sign_in(engine, at=NOW + timedelta(minutes=16)).outcome is SignIn.OK
    assert len(trail(engine, "auth.login_failed")) == 5
    assert len(trail(engine, "auth.lockout")) == 1 and len(trail(engine, "auth.login_locked")) == 1


def test_failures_outside_the_window_start_the_count_again(engine: sa.Engine) -> None:
    for i in range(4):
        sign_in(engine, "wrong password!", at=NOW + timedelta(seconds=i))
    # Sixteen minutes later the four old failures no longer count.
    later = NOW + timedelta(minutes=16)
    assert [sign_in(engine, "wrong password!", at=later).outcome for _ in range(4)] == [SignIn.WRONG] * 4
    assert sign_in(engine, at=later).outcome is SignIn.OK


def test_one_address_guessing_at_many_accounts_is_locked_too(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        outcomes = [
            users.authenticate(conn, f"user{i}", "guess", address="10.9.9.9", now=NOW, policy=POLICY).outcome
            for i in range(5)
        ]
        assert outcomes[-1] is SignIn.LOCKED
        # The right password from that address is refused while it is locked ...
        assert users.authenticate(
            conn, "zhang", PASSWORD, address="10.9.9.9", now=NOW, policy=POLICY
        ).outcome is (SignIn.LOCKED)
        # ... and accepted from another one.
        other = users.authenticate(conn, "zhang", PASSWORD, address="10.0.0.2", now=NOW, policy=POLICY)
        assert other.outcome is SignIn.OK
        # An administrator lifts the lock; audited.
        assert users.unlock(conn, "addr:10.9.9.9", by="admin", address="10.0.0.3", now=NOW)
        assert not users.unlock(conn, "addr:10.9.9.9", by="admin", address="10.0.0.3", now=NOW)
        assert users.authenticate(
            conn, "zhang", PASSWORD, address="10.9.9.9", now=NOW, policy=POLICY
        ).outcome is (SignIn.OK)
    [entry] = trail(engine, "auth.unlock")
    assert entry.entity_id == "addr:10.9.9.9" and entry.before["failures"] == 5


def test_a_disabled_account_cannot_sign_in_and_its_sessions_end(engine: sa.Engine) -> None:
    token = sign_in(engine).session_id
    with engine.begin() as conn:
        users.update_account(conn, "zhang", disabled=True, by="admin", now=NOW)
    assert sign_in(engine).outcome is SignIn.DISABLED
    with engine.begin() as conn:
        check = users.check_session(conn, token, now=NOW, policy=SESSIONS)
    assert check.account is None and check.ended is SessionEnd.ENDED
    [change] = trail(engine, "user.disable")
    assert change.before["disabled"] is False and change.after["disabled"] is True


# ---- sessions ---------------------------------------------------------------------------------


def check(engine: sa.Engine, token: str, at: datetime) -> users.SessionCheck:
    with engine.begin() as conn:
        return users.check_session(conn, token, now=at, policy=SESSIONS)


def test_a_session_ends_after_idle_time_and_after_its_lifetime(engine: sa.Engine) -> None:
    token = sign_in(engine).session_id
    # Active every 20 minutes: alive for the whole lifetime, then over.
    at = NOW
    while at + timedelta(minutes=20) < NOW + timedelta(hours=12):
        at += timedelta(minutes=20)
        assert check(engine, token, at).account is not None, at
    assert check(engine, token, NOW + timedelta(hours=12)).ended is SessionEnd.EXPIRED
    # Another session left alone for 30 minutes ends as idle; and stays ended.
    idle = sign_in(engine).session_id
    assert check(engine, idle, NOW + timedelta(minutes=29)).account is not None
    assert check(engine, idle, NOW + timedelta(minutes=59, seconds=1)).ended is SessionEnd.IDLE
    assert check(engine, idle, NOW + timedelta(minutes=60)).ended is SessionEnd.ENDED
    assert check(engine, "forged-token", NOW).ended is SessionEnd.UNKNOWN


def test_logout_ends_the_session_so_a_replayed_cookie_is_worthless(engine: sa.Engine) -> None:
    token = sign_in(engine).session_id
    with engine.begin() as conn:
        assert users.end_session(conn, token, address="10.0.0.1", now=NOW).username == "zhang"
        assert users.end_session(conn, token, address="10.0.0.1", now=NOW) is None
    assert check(engine, token, NOW).ended is SessionEnd.ENDED
    assert [e.actor for e in trail(engine, "auth.logout")] == ["zhang"]


def test_a_new_password_ends_every_session(engine: sa.Engine) -> None:
    token = sign_in(engine).session_id
    with engine.begin() as conn:
        users.set_password(conn, "zhang", "another long password", by="cli:root", now=NOW)
    assert check(engine, token, NOW).account is None
    assert sign_in(engine, "another long password").outcome is SignIn.OK


def test_the_session_table_holds_digests_not_tokens(engine: sa.Engine) -> None:
    token = sign_in(engine).session_id
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM user_sessions"))]
    assert ids and token not in ids


def test_district_scope() -> None:
    from tests.unit.dashboards.signing import account

    scoped = account("lsx", "operator", district_code="511623")
    assert scoped.may_act_in("511623") and not scoped.may_act_in("511602") and not scoped.may_act_in(None)
    assert account("city", "operator").may_act_in("511602")


def test_the_demo_gets_one_account_per_role_with_fresh_passwords(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        first = users.ensure_demo_accounts(conn, now=NOW)
        second = users.ensure_demo_accounts(conn, now=NOW)
    assert set(first) == {r.value for r in Role}
    assert all(first[r]["password"] != second[r]["password"] for r in first)
    with engine.begin() as conn:
        result = users.authenticate(
            conn,
            second["admin"]["username"],
            second["admin"]["password"],
            address=None,
            now=NOW,
            policy=POLICY,
        )
    assert result.outcome is SignIn.OK and result.account.role is Role.ADMIN
