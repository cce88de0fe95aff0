"""The pages; importing this package registers each with Dash (after the app exists)."""

import dashboards.pages.admin
import dashboards.pages.alerts
import dashboards.pages.briefing
import dashboards.pages.ecology as ecology_page  # noqa: F401
import dashboards.pages.emergency
import dashboards.pages.hotline
import dashboards.pages.system
import dashboards.pages.urban  # noqa: F401
from dashboards.pages import district, overview, wall  # noqa: F401
