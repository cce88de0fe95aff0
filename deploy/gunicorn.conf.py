"""gunicorn settings for the cityops web tier: ``gunicorn -c deploy/gunicorn.conf.py app:server``.

Every open page holds one Server-Sent Events stream (``/api/live/updates``) for server
push. A synchronous worker would be taken whole by one stream, so workers are threaded:
each thread serves either one stream or ordinary requests. Size ``threads`` for the
viewers a worker should carry plus headroom for callbacks; streams end after five
minutes and reconnect, so a worker's threads are handed back regularly.

Command-line options override these (``-w 8``, ``--threads 64``, ``-b 127.0.0.1:8050``).
"""

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
