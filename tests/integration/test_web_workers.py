"""The web tier as production runs it: gunicorn with two workers (deploy/gunicorn.conf.py)
over PostGIS, a Redis of our own and Mosquitto, shared state only in Redis and the database.

Each check talks to one worker at a time over a kept-alive connection (a connection stays
with the worker that accepted it; ``/healthz`` names the process): both workers answer,
both show the same live alert queue, an alert acknowledged through one is acknowledged
through the other, ``/metrics`` on either counts both, and both web processes appear in
the heartbeats the system page reads.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from ingest import heartbeat
from ingest.broker import free_port
from models import alerts, db, users
from models.config import load_settings
from models.live import LiveStore, connect_redis
from tests.faults import PrivateRedis, wait_for
from tests.integration.test_alerts_postgis import draft

pytestmark = pytest.mark.real_services

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
PASSWORD = "Workers-" + secrets.token_urlsafe(12)
#: Two idle workers share the accept queue; this many fresh connections meet both.
CONNECT_ATTEMPTS = 200
START_BUDGET_S = 90


# ---- one connection = one worker ---------------------------------------------------------------


class WorkerConnection:
    """An HTTP/1.1 keep-alive connection to the tier; it fails rather than reconnect, so every
    answer on it comes from the one worker that accepted it."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None) -> None:
        self.port = port
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.http.connect()
        self.socket = self.http.sock
        self.cookies = dict(cookies or {})
        self.pid = int(self.get_json("/healthz")["pid"])

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        try:
            return self._request(method, path, body, headers)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The worker closed an idle connection (keepalive, 5 s): the request was not
            # read. Find the same worker again on a fresh connection and send it there.
            self._repin()
            return self._request(method, path, body, headers)

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None
    ) -> tuple[int, bytes]:
        assert self.http.sock is self.socket, f"worker {getattr(self, 'pid', '?')} closed the connection"
        sent = {"Connection": "keep-alive", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = self.request_cookie()
        self.http.request(method, path, body=body, headers=sent)
        response = self.http.getresponse()
        data = response.read()
        for raw in response.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(raw)
            self.cookies.update({name: morsel.value for name, morsel in jar.items()})
        return response.status, data

    def _repin(self) -> None:
        self.http.close()
        for _ in range(CONNECT_ATTEMPTS):
            fresh = WorkerConnection(self.port, self.cookies)
            if fresh.pid == self.pid:
                self.http, self.socket = fresh.http, fresh.socket
                return
            fresh.close()
        raise AssertionError(f"worker {self.pid} no longer accepts connections")

    def request_cookie(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def get_json(self, path: str) -> Any:
        status, data = self.request("GET", path)
        assert status == 200, (path, status, data[:300])
        return json.loads(data)

    def callback(self, spec: dict[str, Any], values: dict[str, Any], changed: list[str]) -> dict[str, Any]:
        """POST one Dash callback as the browser does (CSRF header from the cookie)."""
        status, data = self.request(
            "POST",
            "/_dash-update-component",
            json.dumps(callback_body(spec, values, changed)).encode(),
            {"Content-Type": "application/json", "X-CSRFToken": self.cookies["_csrf_token"]},
        )
        assert status == 200, (spec["output"], status, data[:500])
        return json.loads(data)["response"]

    def close(self) -> None:
        self.http.close()


def callback_body(spec: dict[str, Any], values: dict[str, Any], changed: list[str]) -> dict[str, Any]:
    """The JSON Dash's renderer posts for ``spec``; ``values`` maps ``"id.prop"`` to a value."""
    outputs = []
    for part in spec["output"].removeprefix("..").removesuffix("..").split("..."):
        cid, prop = part.rsplit(".", 1)
        outputs.append({"id": cid, "property": prop.split("@", 1)[0]})

    def items(deps: list[dict[str, str]]) -> list[dict[str, Any]]:
        out = []
        for dep in deps:
            item: dict[str, Any] = {"id": dep["id"], "property": dep["property"]}
            if f"{dep['id']}.{dep['property']}" in values:
                item["value"] = values[f"{dep['id']}.{dep['property']}"]
            out.append(item)
        return out

    return {
        "output": spec["output"],
        "outputs": outputs if spec["output"].startswith("..") else outputs[0],
        "inputs": items(spec["inputs"]),
        "state": items(spec["state"]),
        "changedPropIds": changed,
    }


def find_callback(deps: list[dict[str, Any]], output: str, input_id: str) -> dict[str, Any]:
    return next(s for s in deps if output in s["output"] and any(d["id"] == input_id for d in s["inputs"]))


# ---- the tier ----------------------------------------------------------------------------------


@dataclass
class Tier:
    port: int
    master: subprocess.Popen[bytes]
    engine: sa.Engine
    live: LiveStore
    log: Path
    #: worker pid → a signed-in connection to it, per role
    sessions: dict[str, dict[int, WorkerConnection]] = field(default_factory=dict)


def sign_in(port: int, username: str) -> dict[str, str]:
    """Cookies of a session signed in through the login form (on whichever worker answers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    jar: dict[str, str] = {}

    def call(method: str, path: str, body: str | None = None) -> tuple[int, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        for raw in response.headers.get_all("Set-Cookie") or []:
            cookie = SimpleCookie()
            cookie.load(raw)
            jar.update({name: morsel.value for name, morsel in cookie.items()})
        return response.status, text

    _, page = call("GET", "/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page[:300]
    form = urlencode({"username": username, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"})
    status, text = call("POST", "/login", form)
    assert status == 303, (status, text[:300])
    conn.close()
    assert "_csrf_token" in jar and "cityops_session" in jar, jar.keys()
    return jar


def one_per_worker(port: int, cookies: dict[str, str], workers: int = 2) -> dict[int, WorkerConnection]:
    """Fresh connections until each worker holds one; the others are closed."""
    found: dict[int, WorkerConnection] = {}
    spare: list[WorkerConnection] = []
    # Kept open until both are found: a worker busy holding one is less likely to win the next.
    for _ in range(CONNECT_ATTEMPTS):
        conn = WorkerConnection(port, cookies)
        if conn.pid in found:
            spare.append(conn)
            continue
        found[conn.pid] = conn
        if len(found) == workers:
            break
    for conn in spare:
        conn.close()
    assert len(found) == workers, f"{CONNECT_ATTEMPTS} connections all reached {sorted(found)}"
    return found


@pytest.fixture(scope="module")
def tier(pg_url: str, mosquitto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    workdir = tmp_path_factory.mktemp("web-workers")
    redis_server = PrivateRedis(workdir).start()
    engine = db.create_engine_for(pg_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for username, role in (("ops-admin", "admin"), ("ops-duty", "duty_officer")):
            users.create_account(
                conn,
                username=username,
                password=PASSWORD,
                role=role,
                display_name=f"值班{role}",
                by="test",
                now=now,
            )
    live = LiveStore(connect_redis(load_settings({"CITYOPS_REDIS_URL": redis_server.url})))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CITYOPS_", "PROMETHEUS_"))}
    env.update(
        CITYOPS_DATABASE_URL=pg_url,
        CITYOPS_REDIS_URL=redis_server.url,
        CITYOPS_MQTT_URL=mosquitto_url,
        CITYOPS_SECRET_KEY=secrets.token_urlsafe(48),
        CITYOPS_DATA_DIR=str(workdir / "var"),
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
    )
    log = workdir / "gunicorn.log"
    command = [
        str(GUNICORN),
        "-c",
        "deploy/gunicorn.conf.py",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "app:server",
    ]
    with log.open("wb") as out:
        master = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:

        def answering() -> bool:
            assert master.poll() is None, f"gunicorn exited: {log.read_text()[-3000:]}"
            try:
                WorkerConnection(port).close()
            except OSError:
                return False
            return True

        assert wait_for(answering, START_BUDGET_S, 0.5), f"no answer: {log.read_text()[-3000:]}"
        tier = Tier(port, master, engine, live, log)
        for username in ("ops-admin", "ops-duty"):
            tier.sessions[username] = one_per_worker(port, sign_in(port, username))
        yield tier
    finally:
        master.terminate()
        try:
            master.wait(30)
        except subprocess.TimeoutExpired:
            master.kill()
        engine.dispose()
        redis_server.stop()


def pair(tier: Tier, username: str) -> tuple[WorkerConnection, WorkerConnection]:
    first, second = sorted(tier.sessions[username].items())
    return first[1], second[1]


# ---- the checks --------------------------------------------------------------------------------


def test_both_workers_answer_and_are_children_of_one_master(tier: Tier) -> None:
    a, b = pair(tier, "ops-admin")
    assert a.pid != b.pid
    for conn in (a, b):
        status = Path(f"/proc/{conn.pid}/status").read_text()
        ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
        assert ppid == tier.master.pid
        # Still the same worker on the same connection after several requests.
        assert {conn.get_json("/healthz")["pid"] for _ in range(3)} == {conn.pid}


def raise_critical(tier: Tier, key: str) -> int:
    now = datetime.now(UTC)
    with tier.engine.begin() as conn:
        change = alerts.raise_alert(conn, draft(key), now=now)
    tier.live.apply_alert_changes([change])
    return change.alert.id


def queue_through(conn: WorkerConnection, selected: int | None = None) -> dict[str, Any]:
    deps = conn.get_json("/_dash-dependencies")
    spec = find_callback(deps, "console-queue.children", "console-push")
    return conn.callback(
        spec,
        {"console-tick.n_intervals": 1, "console-selected.data": selected},
        ["console-tick.n_intervals"],
    )


def test_the_same_live_queue_through_each_worker(tier: Tier) -> None:
    alert_id = raise_critical(tier, f"water_level:workers-{secrets.token_hex(4)}")
    seen = []
    for conn in pair(tier, "ops-duty"):
        response = queue_through(conn)
        seen.append(response["console-live"]["data"])
        assert alert_id in response["console-live"]["data"]["ids"]
        assert "渠江广安站水位超警戒" in json.dumps(response["console-queue"]["children"], ensure_ascii=False)
    assert seen[0]["ids"] == seen[1]["ids"] and seen[0]["audible"] == seen[1]["audible"]
    assert alert_id in seen[0]["audible"]


def test_an_acknowledgement_through_one_worker_is_seen_through_the_other(tier: Tier) -> None:
    alert_id = raise_critical(tier, f"water_level:ack-{secrets.token_hex(4)}")
    one, other = pair(tier, "ops-duty")
    assert alert_id in queue_through(other)["console-live"]["data"]["audible"]

    deps = one.get_json("/_dash-dependencies")
    act = find_callback(deps, "console-feedback.children", "console-btn-acknowledge")
    values = {
        "console-btn-acknowledge.n_clicks": 1,
        "console-selected.data": alert_id,
        "console-bump.data": 0,
    }
    answer = one.callback(act, values, ["console-btn-acknowledge.n_clicks"])
    assert answer["console-feedback"]["className"] == "console-feedback ok", answer
    assert one.get_json("/healthz")["pid"] == one.pid != other.pid

    # Through the other worker: out of the ringing set (live state) ...
    live = queue_through(other, alert_id)["console-live"]["data"]
    assert alert_id in live["ids"] and alert_id not in live["audible"]
    # ... and acknowledged by this officer in the detail (database).
    detail_spec = find_callback(
        other.get_json("/_dash-dependencies"), "console-detail.children", "console-selected"
    )
    detail = other.callback(detail_spec, {"console-selected.data": alert_id}, ["console-selected.data"])
    text = json.dumps(detail["console-detail"]["children"], ensure_ascii=False)
    assert "已确认" in text and ("ops-duty" in text or "值班duty_officer" in text), text[:2000]
    assert other.get_json("/healthz")["pid"] == other.pid


def metric(conn: WorkerConnection, name: str, labels: dict[str, str] | None = None) -> float:
    status, data = conn.request("GET", "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(data.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return 0.0


def test_metrics_on_either_worker_count_both(tier: Tier) -> None:
    a, b = pair(tier, "ops-admin")
    route = {"route": "/healthz", "method": "GET", "status": "200"}
    before = metric(a, "cityops_web_requests_total", route)
    for _ in range(3):
        a.get_json("/healthz")
    for _ in range(5):
        b.get_json("/healthz")
    assert metric(a, "cityops_web_requests_total", route) - before == 8
    assert metric(b, "cityops_web_requests_total", route) - before == 8

    # One open live-update stream per worker: each process counts one, the tier two.
    streams = []
    try:
        while len(streams) < 2:
            conn = WorkerConnection(tier.port, a.cookies)
            if conn.pid in {s.pid for s in streams}:
                conn.close()
                continue
            conn.http.request("GET", "/api/live/updates", headers={"Cookie": a.request_cookie()})
            response = conn.http.getresponse()
            assert response.status == 200
            assert response.readline().startswith(b"retry:")
            streams.append(conn)
        assert {s.pid for s in streams} == {a.pid, b.pid}
        # Each process refreshes its count at its next heartbeat (every 5 s).
        assert wait_for(lambda: metric(a, "cityops_web_connected_viewers") == 2, 3 * heartbeat.HEARTBEAT_S)
        assert metric(b, "cityops_web_connected_viewers") == 2
    finally:
        for conn in streams:
            conn.close()


def test_both_web_processes_beat_and_the_system_page_lists_them(tier: Tier) -> None:
    a, b = pair(tier, "ops-admin")

    def beating() -> dict[int, heartbeat.ProcessStatus]:
        by_pid = {
            int(s.member.rpartition(":")[2]): s for s in heartbeat.read_beats(tier.live.redis, heartbeat.WEB)
        }
        # The first beat goes out with the first request; later ones count what was served.
        return by_pid if all(int(by_pid[c.pid].figures["requests"]) >= 1 for c in (a, b)) else {}

    assert wait_for(lambda: bool(beating()), 3 * heartbeat.HEARTBEAT_S)
    assert {beating()[c.pid].state for c in (a, b)} == {"live"}

    deps = a.get_json("/_dash-dependencies")
    spec = find_callback(deps, "system-web.children", "system-tick")
    response = a.callback(spec, {"system-tick.n_intervals": 1}, ["system-tick.n_intervals"])
    table = json.dumps(response["system-web"]["children"], ensure_ascii=False)
    assert str(a.pid) in table and str(b.pid) in table
    assert "运行中" in table

    # A duty officer is refused on the server, whichever worker answers.
    duty, _ = pair(tier, "ops-duty")
    refused = duty.callback(spec, {"system-tick.n_intervals": 1}, ["system-tick.n_intervals"])
    assert str(b.pid) not in json.dumps(refused, ensure_ascii=False)
    assert "auth-refused" in json.dumps(refused)
