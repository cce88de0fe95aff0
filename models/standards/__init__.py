"""National environmental standards as pure functions.

- :mod:`~models.standards.aqi`: Air Quality Index, HJ 633—2012 / HJ 633—2026.
- :mod:`~models.standards.water`: surface water classes, GB 3838—2002 and 环办〔2011〕22号.
- :mod:`~models.standards.noise`: environmental noise limits, GB 3096—2008.
- :mod:`~models.standards.derive`: derived values for one sensor reading, used by ingest.
"""

from models.standards import aqi, noise, water

__all__ = ["aqi", "noise", "water"]
