"""The string catalogue: every user-facing text of the pages, Chinese first.

Pages call :func:`t` with a key; a missing key raises at import time in tests, so no
label is left untranslated. English is there for visitors and for logs read abroad.
"""

from __future__ import annotations

DEFAULT_LANGUAGE = "zh"

STRINGS: dict[str, dict[str, str]] = {
    "app.title": {"zh": "广安市城市运行管理服务平台", "en": "Guang'an City Operations Centre"},
    "app.short": {"zh": "一网统管", "en": "Unified city management"},
    "nav.overview": {"zh": "城市运行体征", "en": "City vital signs"},
    "overview.title": {"zh": "城市运行体征", "en": "City vital signs"},
    "kpi.devices_online": {"zh": "在线设备", "en": "Devices online"},
    "kpi.messages_hour": {"zh": "本小时接入数据", "en": "Readings this hour"},
    "kpi.aqi_city": {"zh": "全市空气质量指数", "en": "City AQI"},
    "kpi.pm25_city": {"zh": "全市PM2.5均值", "en": "City PM2.5 mean"},
    "kpi.freshness": {"zh": "数据新鲜度", "en": "Data freshness"},
    "kpi.freshness_none": {"zh": "暂无数据", "en": "no data yet"},
    "unit.seconds_ago": {"zh": "{n} 秒前", "en": "{n} s ago"},
    "unit.minutes_ago": {"zh": "{n} 分钟前", "en": "{n} min ago"},
    "map.title": {"zh": "全市态势", "en": "City map"},
    "map.indicator": {"zh": "区县着色指标", "en": "Colour districts by"},
    "indicator.aqi": {"zh": "空气质量指数 AQI", "en": "AQI"},
    "indicator.devices_online": {"zh": "在线设备数", "en": "devices online"},
    "indicator.pm25": {"zh": "PM2.5 均值 (µg/m³)", "en": "PM2.5 mean (µg/m³)"},
    "chart.readings_24h": {"zh": "近24小时数据接入量", "en": "Readings per hour, last 24 h"},
    "table.districts": {"zh": "区县概况", "en": "Districts"},
    "col.district": {"zh": "区县", "en": "District"},
    "col.aqi": {"zh": "AQI", "en": "AQI"},
    "col.devices": {"zh": "设备", "en": "Devices"},
    "col.online": {"zh": "在线", "en": "Online"},
    "col.pm25": {"zh": "PM2.5", "en": "PM2.5"},
    "status.live": {"zh": "实时", "en": "live"},
    "status.no_data": {"zh": "等待数据接入…", "en": "waiting for data…"},
    "status.degraded": {"zh": "实时数据暂不可用：{reason}", "en": "live data unavailable: {reason}"},
}


def t(key: str, lang: str = DEFAULT_LANGUAGE, **values: object) -> str:
    """The text for ``key`` in ``lang`` (falling back to Chinese), with ``{name}`` filled in."""
    entry = STRINGS[key]
    text = entry.get(lang) or entry[DEFAULT_LANGUAGE]
    return text.format(**values) if values else text
