"""Configuration from environment variables, validated once at start-up.

Every setting has a safe default. A missing service URL means the embedded default
(an in-process MQTT broker, an in-process Redis-compatible store, SQLite under the
data directory), so one command shows the whole system on a laptop. A bad value
stops start-up with a :class:`ConfigError` whose message is one line naming the
variable, e.g. ``CITYOPS_PORT: must be an integer between 1 and 65535, got '70000'``.

Each variable is listed once in :data:`VARIABLES`; the README's configuration table
is checked against it by a test, so a new setting cannot go undocumented.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, urlsplit

PREFIX = "CITYOPS_"

#: name -> one-line description (also the README's configuration table, checked by a test)
VARIABLES: dict[str, str] = {
    "CITYOPS_MQTT_URL": "MQTT broker, e.g. mqtt://user:pass@broker:1883; unset = embedded broker",
    "CITYOPS_REDIS_URL": "Redis for live state, e.g. redis://redis:6379/0; unset = in-process store",
    "CITYOPS_DATABASE_URL": "PostgreSQL+PostGIS, e.g. postgresql+psycopg://cityops@db/cityops; "
    "unset = SQLite under the data directory",
    "CITYOPS_HOST": "address the web server binds to (default 127.0.0.1)",
    "CITYOPS_PORT": "port the web server listens on (default 8050)",
    "CITYOPS_SECRET_KEY": "key that signs sessions (≥ 32 characters); unset = a random key kept "
    "in the data directory",
    "CITYOPS_DATA_DIR": "folder for the SQLite file, the embedded broker's files and generated "
    "secrets (default ./var)",
    "CITYOPS_TOPIC_PREFIX": "MQTT topic prefix (default cityops/v1)",
    "CITYOPS_EMBEDDED_MQTT_PORT": "port of the embedded broker on 127.0.0.1 (default 11883; "
    "a free port is chosen when it is taken)",
    "CITYOPS_TILE_URL": "optional self-hosted raster tile server, "
    "e.g. http://tiles.intranet/{z}/{x}/{y}.png; unset = boundaries only, no tiles",
    "CITYOPS_LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR (default INFO)",
    "CITYOPS_INGEST_MAX_FUTURE_S": "how far ahead of the worker's clock a timestamp may be "
    "(seconds, default 300); later ones are rejected as ts_future",
    "CITYOPS_INGEST_MAX_AGE_S": "how old a timestamp may be (seconds, default 604800 = 7 days); "
    "older ones are rejected as ts_past",
    "CITYOPS_METRICS_PORT": "port on which `cityops ingest` serves Prometheus metrics (default: none)",
    "CITYOPS_ALERT_SLA": "seconds to acknowledge an alert before it escalates, per severity, e.g. "
    "critical=120,major=600,minor=1800,info=0 (0 = never escalates; these are the defaults)",
    "CITYOPS_RULES_FILE": "TOML rule file for the rule engine (default: the Guang'an rule set shipped "
    "in models/rules/default_rules.toml)",
    "CITYOPS_INGEST_PROCESSES": "processing processes per ingest worker, each taking a share of the "
    "devices (0 = process in the worker itself, the default; more pays off only where the worker has "
    "cores of its own, not shared with the broker and the database)",
    "CITYOPS_INGEST_SUBSCRIPTION": "shared (default: several workers share the feed through MQTT 5 "
    "shared subscriptions) or plain (one worker only; survives a Mosquitto 2.0 restart without losing "
    "readings, which shared subscriptions do not — docs/mqtt.md, Broker restarts)",
    "CITYOPS_WORKER_ID": "stable name of this ingest worker; the broker keeps its session under it "
    "(default: the host name)",
    "CITYOPS_OPEN311_API_KEYS": "comma-separated API keys allowed to create 12345 work orders with "
    "Open311 POST /open311/v2/requests (never logged); unset = creating is refused",
    "CITYOPS_CAP_SENDER": "sender of the CAP 1.2 messages under /api/cap/ (no spaces, commas, < or &; "
    "default cityops.guangan.511600)",
    "CITYOPS_READY_MAX_INGEST_LAG_S": "/readyz reports ingest as lagging when recent readings reached the "
    "live state later than this after they were taken (seconds, default 60)",
    "CITYOPS_WALL_ROTATE_S": "seconds each panel (emergency, urban, ecology) stays in focus on the /wall "
    "kiosk before the next one (5 to 3600, default 20)",
    "CITYOPS_FEED_SILENT_AFTER_S": "the city-wide readings feed counts as interrupted after this many "
    "seconds without a new reading: the overview's panels turn stale (5 to 3600, default 120)",
    "CITYOPS_ENV": "demo or production; production refuses to start without CITYOPS_SECRET_KEY and "
    "creates no demo accounts (default: production when CITYOPS_DATABASE_URL is set, else demo)",
    "CITYOPS_SESSION_IDLE_S": "a signed-in session ends after this many seconds without a request "
    "(default 1800)",
    "CITYOPS_SESSION_LIFETIME_S": "a session ends this many seconds after sign-in, however active "
    "(default 43200 = 12 h)",
    "CITYOPS_KIOSK_SESSION_LIFETIME_S": "lifetime of a kiosk account's session on a wall screen "
    "(default 2592000 = 30 days)",
    "CITYOPS_LOGIN_MAX_FAILURES": "failed sign-ins, per account and per address, before a lock (default 5)",
    "CITYOPS_LOGIN_LOCK_S": "how long a lock lasts and the window failures are counted in "
    "(seconds, default 900)",
    "CITYOPS_MAX_REQUEST_BYTES": "largest request body the web tier accepts; larger ones get 413 "
    "(default 4194304 = 4 MiB)",
    "CITYOPS_METRICS_TOKEN": "bearer token /metrics requires (Authorization: Bearer …; never logged); "
    "unset = /metrics is public",
    "CITYOPS_OIDC_ISSUER": "the city's single sign-on (OpenID Connect issuer URL); unset = local "
    "passwords only",
    "CITYOPS_OIDC_CLIENT_ID": "this application's client id at the OIDC issuer",
    "CITYOPS_OIDC_CLIENT_SECRET": "this application's client secret at the OIDC issuer (never logged)",
    "CITYOPS_STA_DATASTREAMS": "TOML file mapping OGC SensorThings datastream ids to a device and a metric "
    "(default: sta-datastreams.toml in the data directory, when present; none = every SensorThings "
    "observation is an unknown_datastream dead letter)",
}

_MQTT_SCHEMES = {"mqtt", "mqtts", "tcp", "ssl"}
_REDIS_SCHEMES = {"redis", "rediss", "unix"}
_DATABASE_SCHEMES = {"postgresql", "postgresql+psycopg", "postgres", "sqlite"}
_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-.]+)*$")
_MIN_SECRET_LENGTH = 32
#: Acknowledgement deadlines before an alert escalates (CITYOPS_ALERT_SLA overrides them).
DEFAULT_ALERT_SLA: dict[str, timedelta | None] = {
    "critical": timedelta(minutes=2),
    "major": timedelta(minutes=10),
    "minor": timedelta(minutes=30),
    "info": None,
}


#: CAP ``sender``: stable, and free of the characters CAP 1.2 forbids there.
DEFAULT_CAP_SENDER = "cityops.guangan.511600"
_CAP_SENDER = re.compile(r"^[^\s,<&]{1,128}$")


class ConfigError(ValueError):
    """A configuration value is unusable; the message is one line naming the variable."""

    def __init__(self, variable: str, problem: str, value: str | None = None) -> None:
        self.variable = variable
        shown = "" if value is None else f", got {_redact(value)!r}"
        super().__init__(f"{variable}: {problem}{shown}")


@dataclass(frozen=True, slots=True)
class ServiceURL:
    """A parsed service URL. ``str()`` keeps the password out of logs."""

    url: str = field(repr=False)
    scheme: str
    host: str
    port: int | None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    path: str = ""

    def __str__(self) -> str:
        return _redact(self.url)


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """The city's single sign-on: an OpenID Connect issuer and this application's client."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of one cityops process."""

    mqtt: ServiceURL | None
    redis_url: str | None
    database_url: str | None
    host: str = "127.0.0.1"
    port: int = 8050
    secret_key: str | None = field(default=None, repr=False)
    data_dir: Path = Path("var")
    topic_prefix: str = "cityops/v1"
    embedded_mqtt_port: int = 11883
    tile_url: str | None = None
    log_level: str = "INFO"
    worker_id: str = "ingest"
    #: processes that validate and write a worker's batches (0: the worker process itself)
    ingest_processes: int = 0
    #: several workers share the feed (MQTT 5 shared subscriptions), or one worker takes it plainly
    ingest_subscription: Literal["shared", "plain"] = "shared"
    ingest_max_future: timedelta = timedelta(minutes=5)
    ingest_max_age: timedelta = timedelta(days=7)
    metrics_port: int | None = None
    #: severity → seconds to acknowledge (None: never escalates)
    alert_sla: dict[str, timedelta | None] = field(default_factory=lambda: dict(DEFAULT_ALERT_SLA))
    rules_file: Path | None = None
    #: keys that may create work orders over Open311; empty = nobody may
    open311_api_keys: frozenset[str] = field(default_factory=frozenset, repr=False)
    cap_sender: str = DEFAULT_CAP_SENDER
    ready_max_ingest_lag: timedelta = timedelta(seconds=60)
    #: How long each /wall panel stays in focus.
    wall_rotate: timedelta = timedelta(seconds=20)
    #: a silence of the city-wide readings feed this long turns the overview's panels stale
    feed_silent_after: timedelta = timedelta(seconds=120)
    #: ``demo`` or ``production`` (see :func:`load_settings`); None = decided by the database URL.
    env: str | None = None
    session_idle: timedelta = timedelta(minutes=30)
    session_lifetime: timedelta = timedelta(hours=12)
    kiosk_session_lifetime: timedelta = timedelta(days=30)
    login_max_failures: int = 5
    login_lock: timedelta = timedelta(minutes=15)
    max_request_bytes: int = 4 * 1024 * 1024
    metrics_token: str | None = field(default=None, repr=False)
    oidc: OidcSettings | None = None
    #: SensorThings datastream mapping (ingest.sensorthings reads it); None = no datastreams
    sta_datastreams: Path | None = None

    @property
    def production(self) -> bool:
        """Production mode: said so, or a real database configured without saying ``demo``."""
        if self.env is not None:
            return self.env == "production"
        return self.database_url is not None

    @property
    def embedded_mqtt(self) -> bool:
        return self.mqtt is None

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url is None

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL to connect to: the configured one or the embedded SQLite file."""
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'cityops.sqlite3').resolve()}"

    def session_secret(self) -> str:
        """The configured secret, or one generated once and kept in the data directory."""
        if self.secret_key is not None:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text(encoding="ascii").strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        # Create with 0600 from the start so the key is never world-readable, even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key)
        return key


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every ``CITYOPS_*`` variable; raise :class:`ConfigError` on the first bad one."""
    env = os.environ if environ is None else environ
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in VARIABLES)
    if unknown:
        raise ConfigError(unknown[0], "unknown setting (a typo?); known: " + ", ".join(VARIABLES))

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    mqtt_raw = get("CITYOPS_MQTT_URL")
    redis_raw = get("CITYOPS_REDIS_URL")
    database_raw = get("CITYOPS_DATABASE_URL")
    secret = get("CITYOPS_SECRET_KEY")
    if secret is not None and len(secret) < _MIN_SECRET_LENGTH:
        raise ConfigError("CITYOPS_SECRET_KEY", f"must be at least {_MIN_SECRET_LENGTH} characters long")
    prefix = get("CITYOPS_TOPIC_PREFIX") or "cityops/v1"
    if not _TOPIC_PREFIX.match(prefix):
        raise ConfigError(
            "CITYOPS_TOPIC_PREFIX",
            "must be topic levels of letters, digits, '-', '_' joined by '/', without wildcards",
            prefix,
        )
    log_level = (get("CITYOPS_LOG_LEVEL") or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise ConfigError("CITYOPS_LOG_LEVEL", "must be one of " + ", ".join(sorted(_LOG_LEVELS)), log_level)
    tile_url = get("CITYOPS_TILE_URL")
    if tile_url is not None:
        parts = _split("CITYOPS_TILE_URL", tile_url, {"http", "https"})
        if not parts.hostname or not all(p in tile_url for p in ("{z}", "{x}", "{y}")):
            raise ConfigError("CITYOPS_TILE_URL", "must be an http(s) URL with {z}, {x} and {y}", tile_url)

    data_dir = Path(get("CITYOPS_DATA_DIR") or "var")

    return Settings(
        mqtt=None if mqtt_raw is None else parse_mqtt_url(mqtt_raw),
        redis_url=None if redis_raw is None else _check_redis_url(redis_raw),
        database_url=None if database_raw is None else normalise_database_url(database_raw),
        host=get("CITYOPS_HOST") or "127.0.0.1",
        port=_port("CITYOPS_PORT", get("CITYOPS_PORT"), 8050),
        secret_key=secret,
        data_dir=data_dir,
        topic_prefix=prefix.rstrip("/"),
        embedded_mqtt_port=_port("CITYOPS_EMBEDDED_MQTT_PORT", get("CITYOPS_EMBEDDED_MQTT_PORT"), 11883),
        tile_url=tile_url,
        log_level=log_level,
        worker_id=_worker_id(get("CITYOPS_WORKER_ID")),
        ingest_processes=_processes(get("CITYOPS_INGEST_PROCESSES")),
        ingest_subscription=_subscription(get("CITYOPS_INGEST_SUBSCRIPTION")),
        ingest_max_future=_seconds("CITYOPS_INGEST_MAX_FUTURE_S", get("CITYOPS_INGEST_MAX_FUTURE_S"), 300),
        ingest_max_age=_seconds("CITYOPS_INGEST_MAX_AGE_S", get("CITYOPS_INGEST_MAX_AGE_S"), 7 * 24 * 3600),
        alert_sla=_alert_sla(get("CITYOPS_ALERT_SLA")),
        rules_file=_existing_file("CITYOPS_RULES_FILE", get("CITYOPS_RULES_FILE")),
        metrics_port=None
        if get("CITYOPS_METRICS_PORT") is None
        else _port("CITYOPS_METRICS_PORT", get("CITYOPS_METRICS_PORT"), 0),
        open311_api_keys=_api_keys(get("CITYOPS_OPEN311_API_KEYS")),
        cap_sender=_cap_sender(get("CITYOPS_CAP_SENDER")),
        ready_max_ingest_lag=_seconds(
            "CITYOPS_READY_MAX_INGEST_LAG_S", get("CITYOPS_READY_MAX_INGEST_LAG_S"), 60
        ),
        wall_rotate=_wall_rotate(get("CITYOPS_WALL_ROTATE_S")),
        feed_silent_after=_bounded_seconds(
            "CITYOPS_FEED_SILENT_AFTER_S", get("CITYOPS_FEED_SILENT_AFTER_S"), 120, FEED_SILENT_LIMITS_S
        ),
        env=_env(get("CITYOPS_ENV")),
        session_idle=_seconds("CITYOPS_SESSION_IDLE_S", get("CITYOPS_SESSION_IDLE_S"), 1800),
        session_lifetime=_seconds("CITYOPS_SESSION_LIFETIME_S", get("CITYOPS_SESSION_LIFETIME_S"), 43200),
        kiosk_session_lifetime=_seconds(
            "CITYOPS_KIOSK_SESSION_LIFETIME_S", get("CITYOPS_KIOSK_SESSION_LIFETIME_S"), 30 * 86400
        ),
        login_max_failures=_count("CITYOPS_LOGIN_MAX_FAILURES", get("CITYOPS_LOGIN_MAX_FAILURES"), 5),
        login_lock=_seconds("CITYOPS_LOGIN_LOCK_S", get("CITYOPS_LOGIN_LOCK_S"), 900),
        max_request_bytes=_count(
            "CITYOPS_MAX_REQUEST_BYTES", get("CITYOPS_MAX_REQUEST_BYTES"), 4 * 1024 * 1024
        ),
        metrics_token=_token("CITYOPS_METRICS_TOKEN", get("CITYOPS_METRICS_TOKEN")),
        oidc=_oidc(
            get("CITYOPS_OIDC_ISSUER"), get("CITYOPS_OIDC_CLIENT_ID"), get("CITYOPS_OIDC_CLIENT_SECRET")
        ),
        sta_datastreams=_sta_datastreams(get("CITYOPS_STA_DATASTREAMS"), data_dir),
    )


def parse_mqtt_url(raw: str, variable: str = "CITYOPS_MQTT_URL") -> ServiceURL:
    parts = _split(variable, raw, _MQTT_SCHEMES)
    if not parts.hostname:
        raise ConfigError(variable, "has no host", raw)
    default_port = 8883 if parts.scheme in {"mqtts", "ssl"} else 1883
    return ServiceURL(
        url=raw,
        scheme=parts.scheme,
        host=parts.hostname,
        port=_url_port(variable, parts, raw) or default_port,
        username=parts.username,
        password=parts.password,
        path=parts.path,
    )


def normalise_database_url(raw: str, variable: str = "CITYOPS_DATABASE_URL") -> str:
    """Check a database URL and make it name the psycopg 3 driver for PostgreSQL."""
    parts = _split(variable, raw, _DATABASE_SCHEMES)
    if parts.scheme == "sqlite":
        if not parts.path or parts.path == "/":
            raise ConfigError(variable, "a sqlite URL needs a file path, e.g. sqlite:///var/cityops.db", raw)
        return raw
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError(variable, "has no host", raw)
    _url_port(variable, parts, raw)
    if not parts.path.strip("/"):
        raise ConfigError(variable, "names no database (…/DBNAME at the end)", raw)
    return "postgresql+psycopg" + raw[len(parts.scheme) :]


def _check_redis_url(raw: str, variable: str = "CITYOPS_REDIS_URL") -> str:
    parts = _split(variable, raw, _REDIS_SCHEMES)
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(variable, "has no host", raw)
    _url_port(variable, parts, raw)
    return raw


def _split(variable: str, raw: str, schemes: set[str]) -> SplitResult:
    try:
        parts = urlsplit(raw)
    except ValueError as exc:
        raise ConfigError(variable, f"is not a valid URL ({exc})", raw) from None
    if parts.scheme not in schemes:
        raise ConfigError(variable, "must start with " + " or ".join(f"{s}://" for s in sorted(schemes)), raw)
    return parts


def _url_port(variable: str, parts: SplitResult, raw: str) -> int | None:
    try:
        return parts.port
    except ValueError:
        raise ConfigError(variable, "has a port that is not a number between 0 and 65535", raw) from None


def _port(variable: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(variable, "must be an integer between 1 and 65535", raw) from None
    if not 1 <= port <= 65535:
        raise ConfigError(variable, "must be an integer between 1 and 65535", raw)
    return port


def _alert_sla(raw: str | None) -> dict[str, timedelta | None]:
    sla = dict(DEFAULT_ALERT_SLA)
    if raw is None:
        return sla
    for part in raw.split(","):
        severity, sep, value = part.strip().partition("=")
        if not sep or severity.strip() not in sla:
            raise ConfigError(
                "CITYOPS_ALERT_SLA", "must be severity=seconds pairs for critical, major, minor, info", raw
            )
        seconds = _seconds("CITYOPS_ALERT_SLA", value.strip(), 0, allow_zero=True)
        sla[severity.strip()] = seconds if seconds.total_seconds() > 0 else None
    return sla


def _existing_file(variable: str, raw: str | None) -> Path | None:
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(variable, "names no readable file", raw)
    return path


#: Where the SensorThings datastream mapping is looked for when CITYOPS_STA_DATASTREAMS is unset.
STA_DATASTREAMS_FILE = "sta-datastreams.toml"


def _sta_datastreams(raw: str | None, data_dir: Path) -> Path | None:
    # A file named explicitly must exist; the default one is optional (SensorThings is
    # off until someone maps datastreams). Its contents are checked when a worker starts.
    if raw is not None:
        return _existing_file("CITYOPS_STA_DATASTREAMS", raw)
    default = data_dir / STA_DATASTREAMS_FILE
    return default if default.is_file() else None


def _seconds(variable: str, raw: str | None, default: int, *, allow_zero: bool = False) -> timedelta:
    if raw is None:
        return timedelta(seconds=default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(variable, "must be a number of seconds", raw) from None
    if allow_zero and value == 0:
        return timedelta(0)
    if not (value > 0 and value < 10 * 365 * 24 * 3600):
        raise ConfigError(variable, "must be a positive number of seconds (at most ten years)", raw)
    return timedelta(seconds=value)


def _api_keys(raw: str | None) -> frozenset[str]:
    if raw is None:
        return frozenset()
    keys = [k.strip() for k in raw.split(",")]
    # The keys themselves never appear in the message: this value is a secret.
    if any(len(k) < 16 or not k.isprintable() or " " in k for k in keys):
        raise ConfigError(
            "CITYOPS_OPEN311_API_KEYS",
            "must be comma-separated keys of at least 16 characters without spaces",
        )
    return frozenset(keys)


def _cap_sender(raw: str | None) -> str:
    if raw is None:
        return DEFAULT_CAP_SENDER
    if not _CAP_SENDER.match(raw):
        raise ConfigError(
            "CITYOPS_CAP_SENDER", "must be 1-128 characters without spaces, ',', '<' or '&'", raw
        )
    return raw


#: The wall's rotation: fast enough to cycle through the panels, slow enough to read one.
WALL_ROTATE_MIN_S = 5
WALL_ROTATE_MAX_S = 3600


#: A city feed's silence: shorter than a few refreshes would flicker, longer than an hour
#: hides a real outage.
FEED_SILENT_LIMITS_S = (5, 3600)


def _wall_rotate(raw: str | None) -> timedelta:
    return _bounded_seconds("CITYOPS_WALL_ROTATE_S", raw, 20, (WALL_ROTATE_MIN_S, WALL_ROTATE_MAX_S))


def _bounded_seconds(name: str, raw: str | None, default: int, limits: tuple[int, int]) -> timedelta:
    value = _seconds(name, raw, default)
    low, high = limits
    if not low <= value.total_seconds() <= high:
        raise ConfigError(name, f"must be between {low} and {high} seconds", raw)
    return value


def _env(raw: str | None) -> str | None:
    if raw is None:
        return None
    if raw.lower() not in {"demo", "production"}:
        raise ConfigError("CITYOPS_ENV", "must be demo or production", raw)
    return raw.lower()


def _count(variable: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(variable, "must be a positive whole number", raw) from None
    if value < 1:
        raise ConfigError(variable, "must be a positive whole number", raw)
    return value


#: More processing processes than this per worker only adds memory and context switches.
MAX_INGEST_PROCESSES = 64


def _processes(raw: str | None) -> int:
    # 0 by default: measured on two cores shared with the broker and PostgreSQL, processing
    # processes made a worker slower (bench/README.md) and each costs about 200 MB.
    if raw is None:
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_INGEST_PROCESSES:
        raise ConfigError(
            "CITYOPS_INGEST_PROCESSES", f"must be a whole number from 0 to {MAX_INGEST_PROCESSES}", raw
        )
    return value


def _subscription(raw: str | None) -> Literal["shared", "plain"]:
    value = (raw or "shared").strip().lower()
    if value == "shared":
        return "shared"
    if value == "plain":
        return "plain"
    raise ConfigError("CITYOPS_INGEST_SUBSCRIPTION", "must be shared or plain", raw)


def _token(variable: str, raw: str | None) -> str | None:
    # A secret: never echoed in the message.
    if raw is not None and (len(raw) < 16 or not raw.isprintable() or " " in raw):
        raise ConfigError(variable, "must be at least 16 characters without spaces")
    return raw


def _oidc(issuer: str | None, client_id: str | None, secret: str | None) -> OidcSettings | None:
    if issuer is None and client_id is None and secret is None:
        return None
    if issuer is None or client_id is None or secret is None:
        missing = [
            name
            for name, value in (
                ("CITYOPS_OIDC_ISSUER", issuer),
                ("CITYOPS_OIDC_CLIENT_ID", client_id),
                ("CITYOPS_OIDC_CLIENT_SECRET", secret),
            )
            if value is None
        ]
        raise ConfigError(missing[0], "single sign-on needs the issuer, the client id and the client secret")
    parts = _split("CITYOPS_OIDC_ISSUER", issuer, {"http", "https"})
    if not parts.hostname:
        raise ConfigError("CITYOPS_OIDC_ISSUER", "has no host", issuer)
    return OidcSettings(issuer=issuer.rstrip("/"), client_id=client_id, client_secret=secret)


def _worker_id(raw: str | None) -> str:
    import socket

    value = raw or socket.gethostname() or "ingest"
    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", value):
        raise ConfigError("CITYOPS_WORKER_ID", "must be 1-64 letters, digits, '.', '-' or '_'", value)
    return value


def _redact(value: str) -> str:
    """Hide a password inside a URL so it never reaches a log line or an error message."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", value)
