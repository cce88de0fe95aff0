"""gunicorn settings for the cityops web tier: ``gunicorn -c deploy/gunicorn.conf.py app:server``.

Every open page holds one Server-Sent Events stream (``/api/live/updates``) for server
push. A synchronous worker would be taken whole by one stream, so workers are threaded:
each thread serves either one stream or ordinary requests. Size ``threads`` for the
viewers a worker should carry plus headroom for callbacks; streams end after five
minutes and reconnect, so a worker's threads are handed back regularly.

Command-line options override these (``-w 8``, ``--threads 64``, ``-b 127.0.0.1:8050``).

Metrics: every worker is its own process with its own counters, so Prometheus
multiprocess mode is switched on when the server starts (``on_starting``, in the master,
before any worker is forked and imports the app and ``prometheus_client``; the app is not
preloaded, so nothing in the master has imported them yet):
``PROMETHEUS_MULTIPROC_DIR`` (given, or a fresh temporary folder) holds one file per
worker and metric, ``/metrics`` on any worker reads them all (dashboards/api/health.py).
Files left by an earlier run would be counted again, so the folder is emptied when the
server starts; a worker that exits is marked dead so its live gauges (viewers) stop
counting.
"""

import ctypes
import os
import tempfile
from pathlib import Path
from typing import Any

bind = "0.0.0.0:8050"
workers = 4
worker_class = "gthread"
#: Per worker: 50 viewers on 4 workers need about 13 stream threads each, plus callbacks.
threads = 32
#: A threaded worker's heartbeat, not a limit on a request: long streams are fine.
timeout = 60
graceful_timeout = 20
keepalive = 5
#: Logs go to stderr like the rest of cityops.
accesslog = "-"
errorlog = "-"


def on_starting(server: Any) -> None:
    """Switch multiprocess metrics on for the workers to come (they inherit the variable)
    and empty the folder: values of a previous run's workers must not be added in.

    Here rather than when this file is read, so that reading the settings (a check, a
    test) changes nothing in the reader's environment.
    """
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="cityops-metrics-")
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)


#: glibc's malloc arenas per worker. By default a process gets up to eight per core, one
#: for each new thread until then; with 32 threads each thread's freed memory stays in its
#: own arena and a worker grew 60–70 MB in five minutes of page loads where two arenas
#: grew 15 and stayed flat (bench/README.md, Soak). ``MALLOC_ARENA_MAX`` in the
#: environment, when set, wins.
MALLOC_ARENAS = 2
#: glibc's ``mallopt`` parameter number for the arena limit (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap this process's malloc arenas (for the threads it starts from now on); False where
    the C library is not glibc or the environment sets the limit itself."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def post_fork(server: Any, worker: Any) -> None:
    """In each worker before its threads start."""
    limit_malloc_arenas()


def child_exit(server: Any, worker: Any) -> None:
    """A worker ended (restart, crash, scale-down): its viewers no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
