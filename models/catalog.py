"""What the city measures: device types, their metrics and units, video event types, 12345 channels.

One table per closed set, used by ingest to validate, by the simulator to generate and by
the dashboards to label. Units follow the national standards: µg/m³ for air pollutants
except CO in mg/m³ (HJ 633), mg/L for surface water (GB 3838), dB(A) for noise (GB 3096).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    unit: str
    label_zh: str
    label_en: str
    #: Physically possible range; values outside are rejected as sensor faults, not stored.
    minimum: float
    maximum: float


def _m(key: str, unit: str, zh: str, en: str, lo: float, hi: float) -> Metric:
    return Metric(key, unit, zh, en, lo, hi)


_AIR = (
    _m("pm25", "µg/m³", "PM2.5", "PM2.5", 0, 2000),
    _m("pm10", "µg/m³", "PM10", "PM10", 0, 3000),
    _m("so2", "µg/m³", "二氧化硫", "SO2", 0, 10000),
    _m("no2", "µg/m³", "二氧化氮", "NO2", 0, 5000),
    _m("co", "mg/m³", "一氧化碳", "CO", 0, 200),
    _m("o3", "µg/m³", "臭氧", "O3", 0, 2000),
)
_WATER = (
    _m("ph", "", "pH", "pH", 0, 14),
    _m("do", "mg/L", "溶解氧", "dissolved oxygen", 0, 25),
    _m("codmn", "mg/L", "高锰酸盐指数", "permanganate index", 0, 200),
    _m("cod", "mg/L", "化学需氧量", "COD", 0, 1000),
    _m("nh3n", "mg/L", "氨氮", "ammonia nitrogen", 0, 100),
    _m("tp", "mg/L", "总磷", "total phosphorus", 0, 50),
    _m("tn", "mg/L", "总氮", "total nitrogen", 0, 100),
    _m("temp", "°C", "水温", "water temperature", -5, 45),
    _m("turbidity", "NTU", "浊度", "turbidity", 0, 4000),
)

#: device type → its metrics
DEVICE_TYPES: dict[str, tuple[Metric, ...]] = {
    "air_quality": _AIR,
    "water_quality": _WATER,
    "water_level": (
        _m("level", "m", "水位", "water level", -50, 500),
        _m("flow", "m³/s", "流量", "discharge", 0, 100000),
    ),
    "rainfall": (
        _m("rain_1h", "mm", "小时雨量", "rain, last hour", 0, 300),
        _m("rain_24h", "mm", "24小时雨量", "rain, last 24 h", 0, 1500),
    ),
    "noise": (
        _m("laeq", "dB(A)", "等效声级", "LAeq", 0, 160),
        _m("lmax", "dB(A)", "最大声级", "Lmax", 0, 180),
    ),
    "manhole": (
        _m("tilt", "°", "倾角", "tilt", 0, 180),
        _m("open", "", "开启", "open (0/1)", 0, 1),
        _m("water_level", "m", "井内水位", "water in the shaft", 0, 30),
    ),
    "gas": (
        _m("ch4_lel", "%LEL", "甲烷浓度", "methane", 0, 100),
        _m("co_ppm", "ppm", "一氧化碳", "carbon monoxide", 0, 5000),
    ),
    "smoke": (
        _m("smoke", "dB/m", "烟雾浓度", "smoke obscuration", 0, 10),
        _m("temp", "°C", "温度", "temperature", -40, 200),
    ),
    "pipe_pressure": (
        _m("pressure", "MPa", "管网压力", "pressure", 0, 10),
        _m("flow", "m³/h", "瞬时流量", "flow", 0, 100000),
    ),
    "power": (
        _m("load_kw", "kW", "负荷", "load", 0, 1_000_000),
        _m("voltage", "V", "电压", "voltage", 0, 500_000),
        _m("outage", "", "停电", "outage (0/1)", 0, 1),
    ),
    "weather": (
        _m("temp", "°C", "气温", "air temperature", -40, 60),
        _m("humidity", "%", "相对湿度", "relative humidity", 0, 100),
        _m("wind_speed", "m/s", "风速", "wind speed", 0, 80),
        _m("wind_dir", "°", "风向", "wind direction", 0, 360),
        _m("pressure", "hPa", "气压", "air pressure", 800, 1100),
    ),
}

DEVICE_TYPE_LABELS_ZH: dict[str, str] = {
    "air_quality": "空气质量站",
    "water_quality": "水质自动站",
    "water_level": "水位站",
    "rainfall": "雨量站",
    "noise": "噪声监测点",
    "manhole": "智能井盖",
    "gas": "燃气监测",
    "smoke": "烟感",
    "pipe_pressure": "管网压力",
    "power": "电力监测",
    "weather": "气象站",
    "camera": "视频监控",
}

VIDEO_EVENT_TYPES: dict[str, str] = {
    "illegal_parking": "违章停车",
    "garbage_overflow": "垃圾满溢",
    "street_vending": "占道经营",
    "crowd_gathering": "人群聚集",
    "smoke_fire": "烟火",
    "waterlogging": "积水",
    "road_damage": "道路破损",
    "fallen_tree": "树木倒伏",
}

HOTLINE_CHANNELS: dict[str, str] = {
    "phone": "电话",
    "wechat": "微信",
    "web": "网站",
    "app": "APP",
    "sms": "短信",
}

HOTLINE_URGENCIES = ("normal", "urgent")


def metric(device_type: str, key: str) -> Metric | None:
    for m in DEVICE_TYPES.get(device_type, ()):
        if m.key == key:
            return m
    return None
