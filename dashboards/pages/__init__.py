"""The pages; importing this package registers each with Dash (after the app exists)."""

from dashboards.pages import overview  # noqa: F401
