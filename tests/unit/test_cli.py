"""The cityops command: expected failures end with one line, no traceback, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
    return subprocess.run(
        [sys.executable, "-c", "from cli import main; main()", *args],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_port_stops_with_one_line_naming_the_variable() -> None:
    done = run_cli("check", CITYOPS_PORT="70000")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "cityops: error: CITYOPS_PORT: must be an integer between 1 and 65535, got '70000'"
    )


def test_unparsable_url_is_named() -> None:
    done = run_cli("db", "upgrade", CITYOPS_DATABASE_URL="mysql://db/x")
    assert done.returncode == 2
    assert done.stderr.startswith("cityops: error: CITYOPS_DATABASE_URL: must start with")
    assert "Traceback" not in done.stderr


def test_unreachable_database_names_host_and_gives_a_hint(tmp_path: Path) -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    done = run_cli(
        "check",
        CITYOPS_DATABASE_URL=f"postgresql://cityops:hunter2@127.0.0.1:{port}/cityops",
        CITYOPS_DATA_DIR=str(tmp_path),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}/cityops" in lines[0] and "CITYOPS_DATABASE_URL" in lines[0]
    assert "hunter2" not in done.stderr


def test_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_cli("check", CITYOPS_MQTT_URL=f"mqtt://127.0.0.1:{port}", CITYOPS_DATA_DIR=str(tmp_path))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr


def test_embedded_default_checks_out_and_leaves_no_half_initialised_state(tmp_path: Path) -> None:
    done = run_cli("db", "upgrade", CITYOPS_DATA_DIR=str(tmp_path / "var"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "var" / "cityops.sqlite3").exists()
    done = run_cli("check", CITYOPS_DATA_DIR=str(tmp_path / "var"))
    assert done.returncode == 0, done.stderr
    assert "services reachable" in done.stdout
