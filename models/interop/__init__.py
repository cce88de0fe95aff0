"""Open interchange formats: what cityops says to other systems and hears from them.

Pure mapping and rendering, no web framework: :mod:`models.interop.cap` (OASIS CAP 1.2
alerts and an Atom feed of them) and :mod:`models.interop.open311` (Open311 GeoReport v2
for 12345 work orders). The HTTP endpoints live in :mod:`dashboards.api`.
"""
