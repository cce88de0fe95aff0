"""Private service instances that fault tests stop, restart, kill or flush on purpose.

Each runs on a free loopback port in a temporary folder of its own, so breaking it never
disturbs the shared services on 1883/6379/5432 or another test. They extend
tests/services.py's :class:`PrivateMosquitto` with the same start/stop/restart/kill
methods for Mosquitto, Redis and a throw-away PostgreSQL cluster with PostGIS. The
cityops processes pointed at them (``cityops ingest``, ``web``, ``simulate``) run in
process groups of their own, so a test can SIGKILL one like a lost container; the
``tree_*`` helpers read a process tree's memory and CPU from ``/proc`` (bench/soak.py).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ingest.broker import free_port, port_is_free
from tests.conftest import service_missing
from tests.services import MOSQUITTO_CONF, PrivateMosquitto

PG_BIN = Path(os.environ.get("CITYOPS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds passed; the last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _wait_listening(
    port: int, process: subprocess.Popen[bytes], what: str, log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while port_is_free(port):
        if process.poll() is not None or time.monotonic() > deadline:
            text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start on port {port}: {text}")
        time.sleep(0.02)


def _end(process: subprocess.Popen[bytes] | None, sig: int, timeout: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class FaultyMosquitto(PrivateMosquitto):
    """Production's broker configuration (deploy/mosquitto.conf) on a port of its own."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, MOSQUITTO_CONF.read_text(encoding="utf-8"))

    def restart(self) -> None:
        """A clean restart: the persistence file keeps sessions and queued messages."""
        self.stop()
        self.start()

    def kill(self) -> None:
        process, self._process = self._process, None
        _end(process, signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


class PrivateRedis:
    """A redis-server of our own without persistence: a restart loses everything, as a
    Redis that was flushed, evicted or replaced would."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/local/bin")
        if binary is None:
            service_missing("the redis-server binary", "not on PATH")
        assert binary is not None
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_listening(self.port, self._process, "redis-server", self.log, timeout)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        _end(process, signal.SIGTERM)

    def kill(self) -> None:
        process, self._process = self._process, None
        _end(process, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivatePostgres:
    """A throw-away PostgreSQL 15 cluster with PostGIS, made with ``initdb`` in a temporary
    folder. PostgreSQL refuses to run as root, so as root the cluster belongs to the
    ``postgres`` account (the folder is outside pytest's root-only temporary tree)."""

    def __init__(self, database: str = "cityops") -> None:
        for tool in ("initdb", "postgres"):
            if not (PG_BIN / tool).exists():
                service_missing(f"PostgreSQL's {tool}", f"not found in {PG_BIN} (CITYOPS_TEST_PG_BIN)")
        self.database = database
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cityops-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            account = pwd.getpwnam(self._user)
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._process: subprocess.Popen[bytes] | None = None
        self._initialised = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str) -> None:
        done = subprocess.run(list(args), user=self._user, capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.decode(errors='replace')[-2000:]}")

    def start(self, timeout: float = 30.0) -> PrivatePostgres:
        if not self._initialised:
            initdb = [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
            self._run(*initdb, "-E", "UTF8", "--no-sync", "--no-instructions")
        with self.log.open("ab") as log:
            settings = {
                "listen_addresses": "127.0.0.1",
                "unix_socket_directories": str(self.root),
                # A test cluster: durability is not what is being tested here.
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
            }
            options = [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]
            self._process = subprocess.Popen(
                [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), *options],
                user=self._user,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_listening(self.port, self._process, "postgres", self.log, timeout)
        if not wait_for(self._accepts, timeout):
            raise RuntimeError(f"postgres on {self.port} does not accept connections")
        if not self._initialised:
            self._initialised = True
            self._create_database()
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The postmaster's: its backends are its children (see :func:`tree_memory_kib`)."""
        return self._process.pid if self._process is not None else None

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"):
                return True
        except psycopg.OperationalError:
            return False

    def _create_database(self) -> None:
        import psycopg

        from models import db

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')
        db.upgrade_database(self.url)  # enables PostGIS on first install, as in production

    def stop(self) -> None:
        """Fast shutdown: open connections are ended, the port closes."""
        process, self._process = self._process, None
        _end(process, signal.SIGINT, timeout=30)

    def kill(self) -> None:
        """The postmaster dies at once; its backends notice and exit, the next start recovers."""
        process, self._process = self._process, None
        _end(process, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)


def start_private_services(
    workdir: Path,
) -> tuple[PrivatePostgres, PrivateRedis, FaultyMosquitto, dict[str, str]]:
    """PostgreSQL with PostGIS, Redis and Mosquitto of their own, started, and the cityops
    settings that point at them (a fresh secret key; the caller adds the rest)."""
    postgres = PrivatePostgres().start()
    cache = PrivateRedis(workdir).start()
    broker = FaultyMosquitto(workdir / "mqtt").start()
    env = {
        "CITYOPS_MQTT_URL": broker.url,
        "CITYOPS_REDIS_URL": cache.url,
        "CITYOPS_DATABASE_URL": postgres.url,
        "CITYOPS_DATA_DIR": str(workdir / "var"),
        "CITYOPS_SECRET_KEY": secrets.token_urlsafe(48),
    }
    return postgres, cache, broker, env


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants, from ``/proc``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    return tree


def tree_memory_kib(pid: int) -> tuple[int, int, int]:
    """(RSS KiB, PSS KiB, processes) of ``pid`` and all its descendants. RSS counts shared
    pages once per process, as ``ps`` shows them (PostgreSQL's shared buffers once per
    backend that touched them); PSS splits each shared page among its sharers, so the sum
    is the memory the tree really holds."""
    rss = pss = alive = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                    alive += 1
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss, pss, alive


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its living descendants."""
    ticks = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


class CityopsProcess:
    """One ``cityops`` command (``web``, ``simulate`` …) as its own process group with its own
    log, pointed at private services by ``env`` (the caller's ``CITYOPS_*`` are not passed on)."""

    def __init__(self, workdir: Path, env: dict[str, str], args: Sequence[str], name: str) -> None:
        self.workdir = workdir
        self.env = env
        self.args = list(args)
        self.name = name
        self.log = workdir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> CityopsProcess:
        binary = Path(sys.executable).with_name("cityops")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")} | self.env
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [str(binary), *self.args], env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL, like a container whose host went away: no clean shutdown of anything."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class IngestProcess(CityopsProcess):
    """``cityops ingest`` as its own process group, pointed at private services: a worker
    that can be SIGKILLed like a container that lost its host."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(workdir, env, ["ingest"], "ingest")

    def start(self) -> IngestProcess:
        super().start()
        return self

    def rss_kib(self) -> int:
        """Resident memory of the worker and its processing processes together."""
        total = 0
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.pid:  # field 5 (pgrp): a member of the worker's group
                with contextlib.suppress(OSError):
                    for line in (status.parent / "status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
        return total

    def kill(self) -> None:
        """SIGKILL to the worker process only; its processing processes notice and end."""
        if self.alive():
            assert self._process is not None
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(10)


class WebProcess(CityopsProcess):
    """``cityops web`` (the web tier alone) on a port that stays the same across restarts, as
    a load balancer's backend address does."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(workdir, env | {"CITYOPS_PORT": str(self.port)}, ["web"], "web")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> WebProcess:
        """Start and wait until ``/healthz`` answers (the port may still be in TIME_WAIT)."""
        super().start()
        return self._wait_answering(timeout)

    def _wait_answering(self, timeout: float) -> WebProcess:
        import urllib.request

        def answers() -> bool:
            if not self.alive():
                raise RuntimeError(f"the web tier exited: {self.output()}")
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        if not wait_for(answers, timeout, interval=0.25):
            raise RuntimeError(f"the web tier did not answer on {self.port}: {self.output()}")
        return self


def simulator(
    workdir: Path, env: dict[str, str], rate: float, seed: int = 1, mix: str = "demo"
) -> CityopsProcess:
    """``cityops simulate`` at ``rate`` messages a second (the everyday feed, ``mix`` of it)."""
    command = ["simulate", "--rate", str(rate), "--seed", str(seed), "--mix", mix]
    return CityopsProcess(workdir, env, command, "simulate")


def add_account(env: dict[str, str], username: str, role: str, password: str) -> None:
    """``cityops users add`` against the database in ``env``, as an operator creates one."""
    binary = Path(sys.executable).with_name("cityops")
    full = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")} | env
    done = subprocess.run(
        [str(binary), "users", "add", username, "--role", role, "--password-stdin"],
        input=password.encode(), env=full, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"users add failed: {done.stderr.decode(errors='replace')[-2000:]}")
