"""HTTP endpoints of the web tier beside the Dash pages (docs/interop.md lists them).

- :mod:`dashboards.api.cap`: ``/api/cap/alerts.atom`` and ``/api/cap/{id}.xml`` (CAP 1.2)
- :mod:`dashboards.api.open311`: ``/open311/v2/…`` (Open311 GeoReport v2 for 12345 work orders)
- :mod:`dashboards.api.health`: ``/healthz``, ``/readyz`` and ``/metrics``
- :mod:`dashboards.api.personal`: ``POST /api/tickets/{id}/caller`` (one caller unmasked, audited)
- :mod:`dashboards.api.exports`: ``/api/export/{dataset}.csv|.xlsx`` and ``/api/briefing/{day}.png`` (audited)

Each is a Flask blueprint over the running system's handles; the formats themselves are
built in :mod:`models.interop`.
"""

from __future__ import annotations

import flask

from dashboards.context import PageContext


def register_api(server: flask.Flask, context: PageContext) -> None:
    """Serve every API endpoint on ``server`` and count its requests for ``/metrics``."""
    from dashboards.api import cap, exports, health, open311, personal

    health.install_request_metrics(server)
    server.register_blueprint(health.blueprint(context))
    server.register_blueprint(cap.blueprint(context))
    server.register_blueprint(open311.blueprint(context))
    server.register_blueprint(personal.blueprint(context))
    server.register_blueprint(exports.blueprint(context))
