"""deploy/gunicorn.conf.py: the malloc arena limit each web worker sets for its threads."""

from __future__ import annotations

import os
import platform
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

#: Starts eight threads that allocate after (optionally) the worker's setting and stay
#: alive until all have (a thread that ended hands its arena to the next one), then asks
#: glibc how many arenas it made: ``malloc_stats`` prints one "Arena N:" block each.
_PROBE = """
import ctypes, runpy, sys, threading
conf = runpy.run_path(sys.argv[1])
if sys.argv[2] == "limit":
    assert conf["limit_malloc_arenas"]() is True
all_in = threading.Barrier(8)
def work():
    kept = [bytes(2000) for _ in range(200)]
    all_in.wait(30)
    del kept
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)


def arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT / "deploy" / "gunicorn.conf.py"), mode],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


def test_a_worker_keeps_its_threads_to_two_malloc_arenas() -> None:
    assert arenas("default") > 2  # without it, a new thread gets an arena of its own
    assert arenas("limit") <= 2


def test_an_arena_limit_from_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert conf["limit_malloc_arenas"]() is False
