"""cityops web application and the embedded demo.

``create_app()`` builds the Dash app; ``server`` is its Flask server for gunicorn
(``gunicorn app:server``). ``python app.py`` (or ``make demo``) runs the whole system on
the embedded default: broker, ingest worker, simulator and web in one process.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

import dash
import sqlalchemy as sa
from dash import Dash

from dashboards import context, district, push, shell
from dashboards.i18n import t
from models.config import Settings, load_settings
from models.live import LiveStore, connect_redis

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("cityops")


def create_app(settings: Settings, *, live: LiveStore | None = None, engine: sa.Engine | None = None) -> Dash:
    """Build the Dash app over the given (or configured) live store and database."""
    from models.db import create_engine_for

    live = live or LiveStore(connect_redis(settings))
    engine = engine or create_engine_for(settings.effective_database_url)
    context.configure(context.PageContext(settings=settings, live=live, engine=engine))
    app = CityOpsDash(
        __name__,
        use_pages=True,
        # Pages are imported below as ordinary modules (so tests can import them too).
        pages_folder="",
        assets_folder=str(ROOT / "assets"),
        serve_locally=True,  # no CDN: everything is served by this process
        title=t("app.title"),
        update_title=None,
        suppress_callback_exceptions=True,
    )
    import dashboards.pages  # noqa: F401 - registers every page

    # Pages register their names and titles in Chinese at import; show them in the
    # viewer's language instead, at request time.
    shell.localise_registry(dash.page_registry)
    app.layout = shell.layout
    shell.register_routes(app.server)
    district.register_routes(app.server)  # the district maps' grid cells
    # One subscription to the live updates per web process, shared by every open page.
    push.register(app.server, push.UpdateHub(lambda: connect_redis(settings)))
    from dashboards.api import register_api

    register_api(app.server, context.current())  # CAP, Open311, /healthz, /readyz, /metrics
    from dashboards import auth

    # Sign-in, the gate in front of every page and API, CSRF, security headers (docs/security.md).
    auth.install(app, settings, engine)
    return app


class CityOpsDash(Dash):
    """The Dash app, with the index page's ``<html lang>`` and title in the request's language."""

    def interpolate_index(self, **kwargs: Any) -> str:
        kwargs["title"] = t("app.title")
        page = super().interpolate_index(**kwargs)
        return page.replace("<html>", f'<html lang="{shell.html_lang()}">', 1)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_demo(
    settings: Settings,
    *,
    rate: float = 40.0,
    seed: int = 1,
    scenario: str = "normal",
    story_minutes: float = 5.0,
) -> None:
    """Start broker, database, ingest, simulator and web in this process; block until Ctrl-C."""
    from ingest.broker import start_broker_for
    from ingest.mqtt import MqttClient
    from ingest.simulator import CitySimulator
    from ingest.simulator import run as run_simulator
    from ingest.worker import IngestWorker
    from models.db import check_database, create_engine_for, upgrade_database
    from models.live import check_redis
    from models.reference import seed_reference_data

    configure_logging(settings)
    stop = threading.Event()
    broker = start_broker_for(settings)
    try:
        mqtt_url = broker.url if broker is not None else settings.mqtt.url  # type: ignore[union-attr]
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine_for(settings.effective_database_url)
        check_database(engine)
        upgrade_database(settings.effective_database_url)
        counts = seed_reference_data(engine)
        log.info("reference data: %s", counts)
        if not settings.production:
            write_demo_accounts(settings, engine)
        live = LiveStore(connect_redis(settings))
        check_redis(live.redis)

        worker = IngestWorker.from_settings(settings, engine=engine, live=live, mqtt_url=mqtt_url)
        threading.Thread(target=worker.run, args=(stop,), name="ingest", daemon=True).start()
        if not worker.ready.wait(30):
            raise RuntimeError("the ingest worker did not subscribe within 30 s")

        publisher = MqttClient(mqtt_url, "cityops-simulator").start()
        sim = CitySimulator(
            seed=seed, prefix=settings.topic_prefix, scenario=scenario, story_seconds=story_minutes * 60
        )

        def simulate() -> None:
            for _ in run_simulator(
                lambda m: publisher.publish(m.topic, m.payload, qos=1, retain=m.retain),
                sim,
                rate=rate,
                stop=stop.is_set,
            ):
                pass

        threading.Thread(target=simulate, name="simulator", daemon=True).start()
        app = create_app(settings, live=live, engine=engine)
        log.info("cityops demo on http://%s:%d (MQTT %s)", settings.host, settings.port, mqtt_url)
        app.run(host=settings.host, port=settings.port, debug=False)
    finally:
        stop.set()
        if broker is not None:
            broker.stop()


#: Where the demo leaves its accounts for the people (and browser tests) trying it.
DEMO_ACCOUNTS_FILE = "demo-accounts.json"


def write_demo_accounts(settings: Settings, engine: sa.Engine) -> Path:
    """One account per role with a random password: printed once, and written to
    ``<data dir>/demo-accounts.json`` readable by this user only. Never in production."""
    import json
    import os

    from models.clock import utc_now
    from models.users import ensure_demo_accounts

    with engine.begin() as conn:
        accounts = ensure_demo_accounts(conn, now=utc_now())
    path = settings.data_dir / DEMO_ACCOUNTS_FILE
    path.unlink(missing_ok=True)
    # Created 0600 from the start: the passwords are never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(accounts, handle, ensure_ascii=False, indent=2)
    lines = [f"  {role:<13} {a['username']:<18} {a['password']}" for role, a in accounts.items()]
    # Printed, not logged: log files are kept and shipped; this is shown once, to whoever started it.
    print(f"cityops demo accounts (new passwords at every start; also in {path}):", *lines, sep="\n")
    sys.stdout.flush()
    return path


def __getattr__(name: str) -> Any:
    # `gunicorn app:server` asks for `server`; build the app only then, not on every import.
    if name == "server":
        return create_app(load_settings()).server
    raise AttributeError(name)


if __name__ == "__main__":
    from cli import run_guarded

    run_guarded(lambda: run_demo(load_settings()))
