"""Derived values of one sensor reading, for ingest to store next to the raw metrics.

``derive`` is total over readings that passed ingest validation (known metric keys of
the device type, finite values inside the catalog ranges, an aware timestamp): it
filters what the standards do not use instead of relying on exceptions, and it skips
(returns ``{}``) when a standard cannot apply, e.g. a noise point without a zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from models.standards import aqi, noise, water


def derive(
    device_type: str, props: Mapping[str, Any], metrics: Mapping[str, float], at: datetime
) -> dict[str, Any]:
    """JSON-serialisable derived values of one reading.

    - ``air_quality``: real-time AQI (HJ 633) from the pollutants present:
      ``{"aqi", "level", "category", "color", "primary": [...], "iaqi": {...}}``;
      ``{}`` when no pollutant can be indexed.
    - ``water_quality``: GB 3838—2002 class of the parameters present, judged for
      ``props["body"]`` (default ``"river"``): ``{"grade", "status", "worst": [...]}``;
      metrics without a class limit (``temp``, ``turbidity``) and parameters not
      evaluated for that body are ignored; ``{}`` when nothing is left or the body is
      not one :mod:`~models.standards.water` knows.
    - ``noise``: GB 3096—2008 limit for ``props["zone"]`` at ``at``:
      ``{"limit", "exceeded", "excess_db", "period"}``; ``{}`` without a valid zone or
      without ``laeq``.
    - any other type: ``{}``.
    """
    properties = props if isinstance(props, Mapping) else {}
    if device_type == "air_quality":
        return _air(metrics, at)
    if device_type == "water_quality":
        return _water(properties, metrics)
    if device_type == "noise":
        return _noise(properties, metrics, at)
    return {}


def _air(metrics: Mapping[str, float], at: datetime) -> dict[str, Any]:
    pollutants = {k: v for k, v in metrics.items() if k in aqi.REALTIME_COLUMNS}
    # The non-raising variant: a reading whose only pollutant is a 2012-era SO2 above
    # 800 µg/m³ (left out by HJ 633—2012) simply has no AQI.
    r = aqi._realtime(pollutants, at=at, standard=None)
    if r is None:
        return {}
    return {
        "aqi": r.aqi,
        "level": r.level,
        "category": r.category,
        "color": r.color,
        "primary": list(r.primary),
        "iaqi": dict(r.iaqi),
    }


def _water(props: Mapping[str, Any], metrics: Mapping[str, float]) -> dict[str, Any]:
    body = props.get("body", "river")
    if not isinstance(body, str) or body not in water.BODIES:
        return {}
    evaluated = water.evaluated_parameters(body)
    values = {k: v for k, v in metrics.items() if k in evaluated}
    if not values:
        return {}
    w = water.classify(values, body=body)
    return {"grade": w.grade, "status": w.status, "worst": list(w.worst)}


def _noise(props: Mapping[str, Any], metrics: Mapping[str, float], at: datetime) -> dict[str, Any]:
    zone = props.get("zone")
    # Device metadata is free-form JSON: a zone sent as the number 1 means class "1".
    if isinstance(zone, int) and not isinstance(zone, bool):
        zone = str(zone)
    if not isinstance(zone, str) or zone.lower() not in noise.LIMITS or "laeq" not in metrics:
        return {}
    n = noise.assess(metrics["laeq"], zone, at)
    return {"limit": n.limit, "exceeded": n.exceeded, "excess_db": n.excess_db, "period": n.period}
