"""The ``cityops`` command line.

Expected failures (a bad setting, a service that cannot be reached) end with one line
on stderr and exit status 2, never a stack trace; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer

T = TypeVar("T")

main = typer.Typer(
    name="cityops",
    help="广安市一网统管城市运行指挥平台 — city-operations command platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema and reference data.", no_args_is_help=True)
main.add_typer(db_app, name="db")
users_app = typer.Typer(
    help="Accounts: add, change a password, disable, list. Passwords are asked for, never arguments.",
    no_args_is_help=True,
)
main.add_typer(users_app, name="users")


def expected_errors() -> tuple[type[BaseException], ...]:
    from ingest.mqtt import MqttUnavailable
    from models.config import ConfigError
    from models.db import DatabaseUnavailable
    from models.live import LiveStoreUnavailable
    from models.users import AccountError

    return (ConfigError, DatabaseUnavailable, LiveStoreUnavailable, MqttUnavailable, AccountError)


def run_guarded(action: Callable[[], T]) -> T:
    """Run ``action``; turn an expected failure into one line and exit status 2."""
    try:
        return action()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except expected_errors() as exc:
        print(f"cityops: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _settings():
    from models.config import load_settings

    return run_guarded(load_settings)


@main.command()
def demo(
    rate: Annotated[float, typer.Option(help="simulated messages per second")] = 40.0,
    seed: Annotated[int, typer.Option(help="simulator seed")] = 1,
    scenario: Annotated[
        str, typer.Option(help="story on top of the everyday feed: normal, flood, pollution, fire, crowd")
    ] = "normal",
    story_minutes: Annotated[float, typer.Option(help="minutes the scenario's whole story takes")] = 5.0,
) -> None:
    """Run the whole system (broker, ingest, simulator, web) in one process."""
    from app import run_demo
    from ingest.scenarios import SCENARIOS

    # Checked before anything starts: a typo should not cost a broker and database start-up.
    if scenario not in SCENARIOS or story_minutes <= 0:
        print(
            f"cityops: error: --scenario must be one of {', '.join(SCENARIOS)} and --story-minutes positive",
            file=sys.stderr,
        )
        raise SystemExit(2)
    settings = _settings()
    run_guarded(
        lambda: run_demo(settings, rate=rate, seed=seed, scenario=scenario, story_minutes=story_minutes)
    )


@main.command()
def web() -> None:
    """Serve the web pages only (production uses: gunicorn app:server)."""
    from app import configure_logging, create_app

    settings = _settings()
    configure_logging(settings)

    def serve() -> None:
        from models.db import check_database, create_engine_for
        from models.live import LiveStore, check_redis, connect_redis

        engine = create_engine_for(settings.effective_database_url)
        check_database(engine)
        live = LiveStore(connect_redis(settings))
        check_redis(live.redis)
        create_app(settings, live=live, engine=engine).run(
            host=settings.host, port=settings.port, debug=False
        )

    run_guarded(serve)


@main.command()
def ingest() -> None:
    """Run one ingest worker against the configured broker, Redis and database."""
    import threading

    from app import configure_logging
    from ingest.worker import IngestWorker, settle_heap

    settings = _settings()
    configure_logging(settings)
    if settings.mqtt is None:
        print("cityops: error: CITYOPS_MQTT_URL: a standalone worker needs a broker URL", file=sys.stderr)
        raise SystemExit(2)
    worker = run_guarded(lambda: IngestWorker.from_settings(settings))
    settle_heap()  # this process is the worker's own: what start-up loaded stays
    if settings.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.host)
    run_guarded(lambda: worker.run(threading.Event()))


@main.command()
def simulate(
    rate: Annotated[float, typer.Option(help="messages per second")] = 40.0,
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same feed")] = 1,
    duration: Annotated[float, typer.Option(help="seconds to run; 0 = until Ctrl-C")] = 0.0,
    scenario: Annotated[
        str, typer.Option(help="story on top of the everyday feed: normal, flood, pollution, fire, crowd")
    ] = "normal",
    story_minutes: Annotated[float, typer.Option(help="minutes the scenario's whole story takes")] = 5.0,
    mix: Annotated[
        str,
        typer.Option(
            help="shares of video sightings and 12345 orders: demo (lively at 40 msgs/s) or city "
            "(Guang'an's proportions at full scale, for runs at thousands of messages a second)"
        ),
    ] = "demo",
) -> None:
    """Publish a realistic Guang'an feed to the configured broker, optionally with a scenario."""
    import time

    from ingest.mqtt import MqttClient
    from ingest.simulator import CitySimulator, run

    settings = _settings()
    if settings.mqtt is None:
        print("cityops: error: CITYOPS_MQTT_URL: set the broker to publish to", file=sys.stderr)
        raise SystemExit(2)
    try:
        sim = CitySimulator(
            seed=seed,
            prefix=settings.topic_prefix,
            scenario=scenario,
            story_seconds=story_minutes * 60,
            mix=mix,
        )
    except ValueError as exc:  # an unknown scenario or mix, or a story of no length
        print(f"cityops: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    client = run_guarded(lambda: MqttClient(settings.mqtt.url, f"cityops-simulator-{seed}").start())
    end = time.monotonic() + duration if duration > 0 else None
    total = 0
    for n in run(
        lambda m: client.publish(m.topic, m.payload, qos=1, retain=m.retain),
        sim,
        rate=rate,
        stop=lambda: end is not None and time.monotonic() >= end,
    ):
        total += n
    client.stop()
    print(
        f"published {total} messages and {len(sim.devices)} device registrations"
        + ("" if scenario == "normal" else f" (scenario {scenario}: {sim.scenario.title})")
    )


@main.command()
def check() -> None:
    """Validate the configuration and reach every configured service."""
    from models.db import check_database, create_engine_for
    from models.live import LiveStore, check_redis, connect_redis

    settings = _settings()

    def probe() -> None:
        check_database(create_engine_for(settings.effective_database_url))
        check_redis(LiveStore(connect_redis(settings)).redis)
        if settings.mqtt is not None:
            from ingest.mqtt import MqttClient

            MqttClient(settings.mqtt.url, "cityops-check").start().stop()

    run_guarded(probe)
    print("configuration valid; services reachable")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations (alembic upgrade head)."""
    from models.db import upgrade_database

    settings = _settings()
    run_guarded(lambda: upgrade_database(settings.effective_database_url))
    print("database schema is up to date")


@db_app.command("seed")
def db_seed() -> None:
    """Load districts, grid cells and emergency resources (idempotent)."""
    from models.db import create_engine_for
    from models.reference import seed_reference_data

    settings = _settings()
    counts = run_guarded(lambda: seed_reference_data(create_engine_for(settings.effective_database_url)))
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))


def _user_engine():
    """The configured database, migrated first when it is the embedded file (a first admin
    is often the first thing done with a fresh checkout)."""
    from models.db import check_database, create_engine_for, upgrade_database

    settings = _settings()

    def connect():
        if settings.embedded_database:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            upgrade_database(settings.effective_database_url)
        engine = create_engine_for(settings.effective_database_url)
        check_database(engine)
        return engine

    return run_guarded(connect)


def _read_password(from_stdin: bool, prompt: str = "Password") -> str:
    # Never an argument: arguments land in shell history and in `ps` for every local user.
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    from models.users import check_password_rules

    run_guarded(lambda: check_password_rules(password))
    return password


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="sign-in name: letters, digits, '.', '-', '_'")],
    role: Annotated[str, typer.Option(help="viewer, leader, operator, duty_officer or admin")],
    name: Annotated[str | None, typer.Option(help="display name, e.g. 张伟 (default: the user name)")] = None,
    district: Annotated[
        str | None, typer.Option(help="district code that scopes the account, e.g. 511623 for 邻水县")
    ] = None,
    kiosk: Annotated[
        str | None, typer.Option(help="kiosk account (role viewer) bound to this page, e.g. /wall")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
) -> None:
    """Create an account (the first administrator is created this way)."""
    from models import users
    from models.clock import utc_now

    engine = _user_engine()
    password = _read_password(password_stdin)

    def add() -> users.Account:
        with engine.begin() as conn:
            return users.create_account(
                conn,
                username=username,
                password=password,
                role=role,
                display_name=name,
                district_code=district,
                kiosk_path=kiosk,
                by=_cli_actor(),
                now=utc_now(),
            )

    account = run_guarded(add)
    scope = f", district {account.district_code}" if account.district_code else ""
    print(f"created {account.username} ({account.role.value}{scope})")


@users_app.command("passwd")
def users_passwd(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
) -> None:
    """Set a new password; every open session of the account ends."""
    from models import users
    from models.clock import utc_now

    engine = _user_engine()
    password = _read_password(password_stdin, "New password")

    def change() -> None:
        with engine.begin() as conn:
            users.set_password(conn, username, password, by=_cli_actor(), now=utc_now())

    run_guarded(change)
    print(f"password of {username} changed")


@users_app.command("disable")
def users_disable(
    username: str,
    enable: Annotated[bool, typer.Option("--enable", help="enable the account again instead")] = False,
) -> None:
    """Disable an account (its sessions end at once), or enable it again."""
    from models import users
    from models.clock import utc_now

    engine = _user_engine()

    def change() -> None:
        with engine.begin() as conn:
            users.update_account(conn, username, disabled=not enable, by=_cli_actor(), now=utc_now())

    run_guarded(change)
    print(f"{username} {'enabled' if enable else 'disabled'}")


@users_app.command("list")
def users_list() -> None:
    """Every account: name, role, district, state, last sign-in (never a password or hash)."""
    from models import users
    from models.clock import utc_now

    engine = _user_engine()
    with engine.connect() as conn:
        accounts = users.list_accounts(conn)
        locks = {
            s.key
            for s in users.locked_keys(conn, [f"user:{a.username.lower()}" for a in accounts], utc_now())
        }
    print(f"{'username':<20} {'role':<13} {'district':<9} {'state':<9} {'kiosk':<8} last sign-in")
    for a in accounts:
        state = (
            "disabled" if a.disabled else ("locked" if f"user:{a.username.lower()}" in locks else "enabled")
        )
        last = a.last_login_at.isoformat(timespec="seconds") if a.last_login_at else "-"
        district, kiosk = a.district_code or "-", a.kiosk_path or "-"
        print(f"{a.username:<20} {a.role.value:<13} {district:<9} {state:<9} {kiosk:<8} {last}")


if __name__ == "__main__":
    main()
