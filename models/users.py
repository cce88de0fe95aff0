"""Accounts, roles and what each role may do; passwords, the login throttle and sessions.

:data:`ROLE_PERMISSIONS` is the one table that says who may do what; the web tier asks
:func:`allowed` (through ``dashboards.auth.require``) before every action that changes
state, and the lifecycles check the role again when the transition runs.

Passwords are hashed with Argon2id (argon2-cffi's defaults follow RFC 9106's second
recommended option: 64 MiB, 3 passes). There is no default password anywhere: the first
administrator is created with ``cityops users add``.

Failed sign-ins are counted per account and per address in ``login_throttle`` with one
atomic upsert each, so several web workers (and two guesses at the same moment) see the
same count; ``max_failures`` failures within ``lock`` lock that key for ``lock``.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from models import audit
from models.lifecycle import Actor
from models.schema import LoginThrottle, Role, User, UserSession


class Permission(enum.StrEnum):
    VIEW = "view"  # open the pages (read-only)
    EXPORT = "export"  # download tables
    ALERT_ACT = "alert.act"  # acknowledge, assign, escalate, resolve alerts
    TICKET_DISPATCH = "ticket.dispatch"  # dispatch and handle 12345 work orders and cases
    INCIDENT_OPEN = "incident.open"  # open an emergency incident
    INCIDENT_COMMAND = "incident.command"  # respond, dispatch resources, close incidents
    REVEAL_PERSONAL = "personal.reveal"  # see one caller's name and phone (audited)
    ADMIN = "admin"  # users, rules, configuration, the audit trail


P = Permission
#: Who may do what: the one place. Every role may view; ``viewer`` may do nothing else.
ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({P.VIEW}),
    Role.LEADER: frozenset({P.VIEW, P.EXPORT}),
    Role.OPERATOR: frozenset({P.VIEW, P.EXPORT, P.TICKET_DISPATCH, P.INCIDENT_OPEN, P.REVEAL_PERSONAL}),
    Role.DUTY_OFFICER: frozenset(
        {
            P.VIEW,
            P.EXPORT,
            P.TICKET_DISPATCH,
            P.INCIDENT_OPEN,
            P.INCIDENT_COMMAND,
            P.ALERT_ACT,
            P.REVEAL_PERSONAL,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}

#: Role names in Chinese, for the admin page and the shell.
ROLE_LABELS_ZH: Mapping[Role, str] = {
    Role.VIEWER: "大屏查看",
    Role.LEADER: "领导",
    Role.OPERATOR: "调度员",
    Role.DUTY_OFFICER: "值班员",
    Role.ADMIN: "管理员",
}

USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{2,64}$")
#: Long enough to resist guessing within the throttle; no composition rules (NIST SP 800-63B 5.1.1.2).
PASSWORD_MIN = 12
#: Argon2 hashes anything, but a megabyte password is a denial-of-service attempt, not a password.
PASSWORD_MAX = 256
DISPLAY_NAME_MAX = 128
#: A session's ``last_seen_at`` is written at most this often: the idle timeout is a
#: matter of minutes, so a write per request would buy nothing.
TOUCH_EVERY = timedelta(seconds=60)

_hasher = PasswordHasher()


class AccountError(ValueError):
    """A request about an account that cannot be done; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Account:
    """A user as the rest of the platform sees it (never the hash)."""

    id: int
    username: str
    display_name: str
    role: Role
    district_code: str | None
    disabled: bool
    kiosk_path: str | None
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Account:
        return cls(
            id=row["id"],
            username=row["username"],
            display_name=row["display_name"],
            role=Role(row["role"]),
            district_code=row["district_code"],
            disabled=bool(row["disabled"]),
            kiosk_path=row["kiosk_path"],
            created_at=row["created_at"],
            last_login_at=row["last_login_at"],
        )

    @property
    def actor(self) -> Actor:
        return Actor(username=self.username, role=self.role.value, display_name=self.display_name)

    def can(self, permission: Permission) -> bool:
        return allowed(self.role, permission)

    def may_act_in(self, district_code: str | None) -> bool:
        """A district-scoped account sees and acts on its own district only."""
        return self.district_code is None or district_code == self.district_code


def allowed(role: Role | str, permission: Permission | str) -> bool:
    try:
        return Permission(permission) in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False


def roles_with(permission: Permission) -> frozenset[Role]:
    """The roles holding ``permission``: what the lifecycles check again when a transition
    runs, so the web tier and the model layer cannot disagree."""
    return frozenset(role for role, granted in ROLE_PERMISSIONS.items() if permission in granted)


# ---- passwords --------------------------------------------------------------------------------


def check_password_rules(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise AccountError(f"password must be at least {PASSWORD_MIN} characters long")
    if len(password) > PASSWORD_MAX:
        raise AccountError(f"password must be at most {PASSWORD_MAX} characters long")


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if len(password) > PASSWORD_MAX:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


#: Verified against when the account does not exist, so a wrong name costs the same time
#: as a wrong password and the response time does not tell which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def generate_password() -> str:
    """A random password for the demo accounts (about 120 bits)."""
    return secrets.token_urlsafe(15)


# ---- accounts ---------------------------------------------------------------------------------


def _users() -> sa.Table:
    return User.__table__  # type: ignore[return-value]


def get_account(conn: Connection, username: str) -> Account | None:
    row = conn.execute(sa.select(_users()).where(_users().c.username == username)).mappings().first()
    return None if row is None else Account.from_row(row)


def list_accounts(conn: Connection) -> list[Account]:
    rows = conn.execute(sa.select(_users()).order_by(_users().c.username)).mappings()
    return [Account.from_row(r) for r in rows]


def create_account(
    conn: Connection,
    *,
    username: str,
    password: str,
    role: Role | str,
    display_name: str | None = None,
    district_code: str | None = None,
    kiosk_path: str | None = None,
    by: Actor | str,
    address: str | None = None,
    now: datetime,
) -> Account:
    if not USERNAME.match(username):
        raise AccountError("username must be 2-64 letters, digits, '.', '-' or '_'")
    try:
        role = Role(role)
    except ValueError:
        raise AccountError(f"role must be one of {', '.join(r.value for r in Role)}") from None
    display = " ".join((display_name or username).split())[:DISPLAY_NAME_MAX] or username
    if kiosk_path is not None and (role is not Role.VIEWER or not kiosk_path.startswith("/")):
        raise AccountError("a kiosk account has role viewer and a page path such as /wall")
    if district_code is not None:
        _check_district(conn, district_code)
    if get_account(conn, username) is not None:
        raise AccountError(f"user {username!r} already exists")
    values = {
        "username": username,
        "display_name": display,
        "password_hash": hash_password(password),
        "role": role.value,
        "district_code": district_code,
        "kiosk_path": kiosk_path,
        "disabled": False,
        "created_at": now,
    }
    conn.execute(sa.insert(_users()), values)
    account = get_account(conn, username)
    assert account is not None
    audit.record(
        conn,
        actor=Actor.of(by).username,
        address=address,
        action="user.create",
        entity_type="user",
        entity_id=username,
        before=None,
        after=_public(account),
        now=now,
    )
    return account


def set_password(
    conn: Connection,
    username: str,
    password: str,
    *,
    by: Actor | str,
    address: str | None = None,
    now: datetime,
) -> None:
    account = _existing(conn, username)
    conn.execute(
        sa.update(_users()).where(_users().c.id == account.id).values(password_hash=hash_password(password))
    )
    _end_sessions(conn, account.id, now)  # a changed password ends every open session
    audit.record(
        conn,
        actor=Actor.of(by).username,
        address=address,
        action="user.password",
        entity_type="user",
        entity_id=username,
        before=None,
        after=None,
        now=now,
    )


def update_account(
    conn: Connection,
    username: str,
    *,
    by: Actor | str,
    now: datetime,
    address: str | None = None,
    disabled: bool | None = None,
    role: Role | str | None = None,
) -> Account:
    """Disable/enable an account or change its role; either ends its sessions."""
    account = _existing(conn, username)
    changes: dict[str, Any] = {}
    if disabled is not None:
        changes["disabled"] = disabled
    if role is not None:
        try:
            changes["role"] = Role(role).value
        except ValueError:
            raise AccountError(f"role must be one of {', '.join(r.value for r in Role)}") from None
    if not changes:
        return account
    conn.execute(sa.update(_users()).where(_users().c.id == account.id).values(**changes))
    _end_sessions(conn, account.id, now)
    after = _existing(conn, username)
    audit.record(
        conn,
        actor=Actor.of(by).username,
        address=address,
        action="user.disable" if disabled else "user.update",
        entity_type="user",
        entity_id=username,
        before=_public(account),
        after=_public(after),
        now=now,
    )
    return after


def _existing(conn: Connection, username: str) -> Account:
    account = get_account(conn, username)
    if account is None:
        raise AccountError(f"no user {username!r}")
    return account


def _check_district(conn: Connection, district_code: str) -> None:
    from models.schema import District

    table = District.__table__
    found = conn.execute(
        sa.select(table.c.district_code).where(table.c.district_code == district_code)
    ).first()
    if found is None:
        raise AccountError(f"no district {district_code!r} (seed the reference data first: cityops db seed)")


def _public(account: Account) -> dict[str, Any]:
    return {
        "role": account.role.value,
        "district_code": account.district_code,
        "disabled": account.disabled,
        "kiosk_path": account.kiosk_path,
        "display_name": account.display_name,
    }


# ---- throttle ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    max_failures: int = 5
    lock: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class ThrottleState:
    key: str
    failures: int
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


def throttle_keys(username: str, address: str | None) -> list[str]:
    keys = [f"user:{username.lower()[:64]}"]
    if address:
        keys.append(f"addr:{address[:64]}")
    return keys


def _throttle() -> sa.Table:
    return LoginThrottle.__table__  # type: ignore[return-value]


def locked_keys(conn: Connection, keys: list[str], now: datetime) -> list[ThrottleState]:
    table = _throttle()
    rows = conn.execute(sa.select(table).where(table.c.key.in_(keys), table.c.locked_until > now)).mappings()
    return [ThrottleState(r["key"], r["failures"], r["locked_until"]) for r in rows]


def count_failure(conn: Connection, key: str, now: datetime, policy: ThrottlePolicy) -> ThrottleState:
    """One failed sign-in against ``key``, counted atomically; returns the key's state after it.

    A count older than the window starts again at one; reaching ``max_failures`` sets the lock.
    """
    table = _throttle()
    insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)
    window_start = now - policy.lock
    stale = table.c.first_failure_at < window_start
    failures = sa.case((stale, 1), else_=table.c.failures + 1)
    statement = insert.values(
        key=key,
        failures=1,
        first_failure_at=now,
        last_failure_at=now,
        locked_until=now + policy.lock if policy.max_failures <= 1 else None,
    ).on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "failures": failures,
            "first_failure_at": sa.case((stale, now), else_=table.c.first_failure_at),
            "last_failure_at": now,
            "locked_until": sa.case(
                (failures >= policy.max_failures, now + policy.lock), else_=table.c.locked_until
            ),
        },
    )
    row = conn.execute(statement.returning(table.c.failures, table.c.locked_until)).one()
    return ThrottleState(key, row.failures, row.locked_until)


def clear_failures(conn: Connection, keys: list[str]) -> None:
    conn.execute(sa.delete(_throttle()).where(_throttle().c.key.in_(keys)))


def throttle_states(conn: Connection) -> list[ThrottleState]:
    table = _throttle()
    rows = conn.execute(sa.select(table).order_by(table.c.key)).mappings()
    return [ThrottleState(r["key"], r["failures"], r["locked_until"]) for r in rows]


def unlock(conn: Connection, key: str, *, by: Actor | str, address: str | None, now: datetime) -> bool:
    """An administrator lifts a lock (and forgets the failures); audited."""
    table = _throttle()
    before = conn.execute(sa.select(table).where(table.c.key == key)).mappings().first()
    if before is None:
        return False
    conn.execute(sa.delete(table).where(table.c.key == key))
    audit.record(
        conn,
        actor=Actor.of(by).username,
        address=address,
        action="auth.unlock",
        entity_type="login",
        entity_id=key,
        before={"failures": before["failures"], "locked_until": before["locked_until"]},
        after=None,
        now=now,
    )
    return True


# ---- sign-in ----------------------------------------------------------------------------------


class SignIn(enum.StrEnum):
    OK = "ok"
    WRONG = "wrong"  # unknown name or wrong password: the same answer for both
    LOCKED = "locked"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class SignInResult:
    outcome: SignIn
    account: Account | None = None
    session_id: str | None = None
    locked_until: datetime | None = None


def authenticate(
    conn: Connection,
    username: str,
    password: str,
    *,
    address: str | None,
    now: datetime,
    policy: ThrottlePolicy,
) -> SignInResult:
    """Check a name and password against the throttle and the account; audit the outcome.

    On success a session is started and its id returned. A locked key refuses even the
    right password, without checking it, so a lock cannot be used to test guesses.
    """
    username = username.strip()[:64]
    keys = throttle_keys(username, address)
    locks = locked_keys(conn, keys, now)
    if locks:
        until = max(lock.locked_until for lock in locks if lock.locked_until is not None)
        _audit_login(conn, "auth.login_locked", username, address, now, {"locked_until": until})
        return SignInResult(SignIn.LOCKED, locked_until=until)
    row = conn.execute(sa.select(_users()).where(_users().c.username == username)).mappings().first()
    good = verify_password(row["password_hash"] if row else _DUMMY_HASH, password) and row is not None
    if not good:
        states = [count_failure(conn, key, now, policy) for key in keys]
        newly_locked = [s for s in states if s.locked(now)]
        _audit_login(
            conn,
            "auth.login_failed",
            username,
            address,
            now,
            {"failures": {s.key: s.failures for s in states}},
        )
        if newly_locked:
            until = max(s.locked_until for s in newly_locked if s.locked_until is not None)
            _audit_login(
                conn, "auth.lockout", username, address, now, {"keys": [s.key for s in newly_locked]}
            )
            return SignInResult(SignIn.LOCKED, locked_until=until)
        return SignInResult(SignIn.WRONG)
    assert row is not None
    account = Account.from_row(row)
    if account.disabled:
        _audit_login(conn, "auth.login_disabled", username, address, now, None)
        return SignInResult(SignIn.DISABLED)
    # Only the account's count is forgiven: one good password must not wipe an address's
    # record of guessing at other accounts.
    clear_failures(conn, keys[:1])
    session_id = start_session(conn, account, address=address, now=now)
    return SignInResult(SignIn.OK, account=account, session_id=session_id)


def _audit_login(
    conn: Connection, action: str, username: str, address: str | None, now: datetime, after: Any
) -> None:
    audit.record(
        conn,
        actor=username or "-",
        address=address,
        action=action,
        entity_type="login",
        entity_id=username,
        before=None,
        after=after,
        now=now,
    )


# ---- sessions ---------------------------------------------------------------------------------


def _sessions() -> sa.Table:
    return UserSession.__table__  # type: ignore[return-value]


def _session_key(token: str) -> str:
    # The table holds a digest: a copy of the table does not hand out live sessions.
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    conn: Connection, account: Account, *, address: str | None, now: datetime, method: str = "password"
) -> str:
    token = secrets.token_urlsafe(32)
    conn.execute(
        sa.insert(_sessions()),
        {
            "id": _session_key(token),
            "user_id": account.id,
            "created_at": now,
            "last_seen_at": now,
            "address": address[:64] if address else None,
        },
    )
    conn.execute(sa.update(_users()).where(_users().c.id == account.id).values(last_login_at=now))
    audit.record(
        conn,
        actor=account.username,
        address=address,
        action="auth.login",
        entity_type="login",
        entity_id=account.username,
        before=None,
        after={"role": account.role.value, "district_code": account.district_code, "method": method},
        now=now,
    )
    return token


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta = timedelta(minutes=30)
    lifetime: timedelta = timedelta(hours=12)
    kiosk_lifetime: timedelta = timedelta(days=30)


class SessionEnd(enum.StrEnum):
    UNKNOWN = "unknown"
    ENDED = "ended"
    IDLE = "idle"
    EXPIRED = "expired"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class SessionCheck:
    account: Account | None
    ended: SessionEnd | None = None


def check_session(conn: Connection, token: str, *, now: datetime, policy: SessionPolicy) -> SessionCheck:
    """The account behind a session token, or why there is none; touches ``last_seen_at``."""
    sessions = _sessions()
    users = _users()
    row = (
        conn.execute(
            sa.select(
                users,
                sessions.c.id.label("sid"),
                sessions.c.created_at.label("s_created"),
                sessions.c.last_seen_at.label("s_seen"),
                sessions.c.ended_at.label("s_ended"),
            )
            .join(sessions, sessions.c.user_id == users.c.id)
            .where(sessions.c.id == _session_key(token))
        )
        .mappings()
        .first()
    )
    if row is None:
        return SessionCheck(None, SessionEnd.UNKNOWN)
    account = Account.from_row(row)
    lifetime = policy.kiosk_lifetime if account.kiosk_path else policy.lifetime
    ended: SessionEnd | None = None
    if row["s_ended"] is not None:
        ended = SessionEnd.ENDED
    elif account.disabled:
        ended = SessionEnd.DISABLED
    elif now - row["s_created"] >= lifetime:
        ended = SessionEnd.EXPIRED
    elif now - row["s_seen"] >= policy.idle and not account.kiosk_path:
        ended = SessionEnd.IDLE
    if ended is not None:
        if row["s_ended"] is None:
            conn.execute(sa.update(sessions).where(sessions.c.id == row["sid"]).values(ended_at=now))
        return SessionCheck(None, ended)
    if now - row["s_seen"] >= TOUCH_EVERY:
        conn.execute(sa.update(sessions).where(sessions.c.id == row["sid"]).values(last_seen_at=now))
    return SessionCheck(account)


def end_session(conn: Connection, token: str, *, address: str | None, now: datetime) -> Account | None:
    """Logout: the session row is ended, so the cookie is worthless even if replayed."""
    sessions = _sessions()
    key = _session_key(token)
    row = conn.execute(sa.select(sessions.c.user_id, sessions.c.ended_at).where(sessions.c.id == key)).first()
    if row is None or row.ended_at is not None:
        return None
    conn.execute(sa.update(sessions).where(sessions.c.id == key).values(ended_at=now))
    user = conn.execute(sa.select(_users()).where(_users().c.id == row.user_id)).mappings().one()
    account = Account.from_row(user)
    audit.record(
        conn,
        actor=account.username,
        address=address,
        action="auth.logout",
        entity_type="login",
        entity_id=account.username,
        before=None,
        after=None,
        now=now,
    )
    return account


def _end_sessions(conn: Connection, user_id: int, now: datetime) -> None:
    sessions = _sessions()
    conn.execute(
        sa.update(sessions)
        .where(sessions.c.user_id == user_id, sessions.c.ended_at.is_(None))
        .values(ended_at=now)
    )


__all__ = [
    "ROLE_PERMISSIONS",
    "Account",
    "AccountError",
    "Permission",
    "SessionCheck",
    "SessionEnd",
    "SessionPolicy",
    "SignIn",
    "SignInResult",
    "ThrottlePolicy",
    "allowed",
    "authenticate",
    "check_session",
    "create_account",
    "end_session",
    "ensure_demo_accounts",
    "generate_password",
    "hash_password",
    "list_accounts",
    "set_password",
    "unlock",
    "update_account",
    "verify_password",
]


# ---- the demo ---------------------------------------------------------------------------------

#: The embedded demo's accounts: one per role, ``demo-<role>``; production creates none.
DEMO_PREFIX = "demo-"


def ensure_demo_accounts(conn: Connection, *, now: datetime) -> dict[str, dict[str, str]]:
    """One account per role with a fresh random password (created, or its password reset),
    as ``{role: {"username": …, "password": …}}``. Only the demo calls this."""
    accounts: dict[str, dict[str, str]] = {}
    for role in Role:
        username = f"{DEMO_PREFIX}{role.value.replace('_', '-')}"
        password = generate_password()
        existing = get_account(conn, username)
        if existing is None:
            create_account(
                conn,
                username=username,
                password=password,
                role=role,
                display_name=username,
                by="demo",
                now=now,
            )
        else:
            set_password(conn, username, password, by="demo", now=now)
            if existing.disabled or existing.role is not role:
                update_account(conn, username, disabled=False, role=role, by="demo", now=now)
        clear_failures(conn, throttle_keys(username, None))
        accounts[role.value] = {"username": username, "password": password}
    return accounts
