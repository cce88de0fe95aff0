"""OGC SensorThings API 1.1 (OGC 18-088), MQTT part: which cityops reading a datastream feeds.

A SensorThings Observation carries one result of one Datastream; a cityops reading is a
device's metrics at one instant. The datastream mapping file (``CITYOPS_STA_DATASTREAMS``,
TOML) names the device and the metric of each datastream, so an observation becomes the
same reading a device would publish on ``{prefix}/sensors/{device_id}/obs`` and goes
through the same checks and storage::

    version = 1
    root = "v1.1"                 # optional: the SensorThings topic root

    [datastreams]
    42 = { device = "air-511602-01", metric = "pm25" }
    "ds-wl-1" = { device = "wl-511623-02", metric = "level" }

A datastream is named by its id's text: ``Datastreams(42)`` and ``Datastreams('42')``
are the same key ``42``. Loading is strict: a file that cannot be read, is not TOML, has
an unknown key, a device id cityops would refuse, a metric no device type has, or two
datastreams for the same device and metric stops start-up with one line naming the
variable, the file and the datastream.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.catalog import DEVICE_TYPES
from models.config import ConfigError

VARIABLE = "CITYOPS_STA_DATASTREAMS"
#: The topic root of SensorThings API 1.1 over MQTT.
DEFAULT_ROOT = "v1.1"
#: Datastream ids and device ids: the id characters of the MQTT interface (docs/mqtt.md).
_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_ROOT = re.compile(r"[A-Za-z0-9_\-.]+(/[A-Za-z0-9_\-.]+)*")
_METRICS = frozenset(m.key for metrics in DEVICE_TYPES.values() for m in metrics)


class DatastreamFileError(ConfigError):
    """The datastream mapping file cannot be used; the message names the file and the entry."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(VARIABLE, f"{source}: {problem}")


@dataclass(frozen=True, slots=True)
class Datastream:
    """What one datastream's observations are: a metric of a registered device."""

    device_id: str
    metric: str


@dataclass(frozen=True, slots=True)
class DatastreamMap:
    """Datastream id (as text) → :class:`Datastream`, and the SensorThings topic root."""

    datastreams: Mapping[str, Datastream] = field(default_factory=dict)
    root: str = DEFAULT_ROOT
    #: where the mapping came from (a file path), for messages
    source: str = "<none>"

    def get(self, datastream_id: int | str) -> Datastream | None:
        return self.datastreams.get(str(datastream_id))

    def __len__(self) -> int:
        return len(self.datastreams)


def load_datastreams(path: Path | str | None) -> DatastreamMap:
    """Read and check a mapping file; ``None`` (no file configured) maps no datastream."""
    if path is None:
        return DatastreamMap()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DatastreamFileError(str(p), f"cannot read the datastream mapping ({problem})") from None
    return parse_datastreams(text, source=str(p))


def parse_datastreams(text: str, *, source: str = "<datastreams>") -> DatastreamMap:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DatastreamFileError(source, f"not valid TOML: {exc}") from None
    return datastreams_from_mapping(data, source=source)


def datastreams_from_mapping(data: Mapping[str, Any], *, source: str = "<datastreams>") -> DatastreamMap:
    unknown = set(data) - {"version", "root", "datastreams"}
    if unknown:
        raise DatastreamFileError(
            source, f"unknown top-level key(s) {sorted(unknown)}; datastreams go in [datastreams]"
        )
    if data.get("version", 1) != 1:
        raise DatastreamFileError(source, f"version {data.get('version')!r} is not supported (expected 1)")
    root = data.get("root", DEFAULT_ROOT)
    if not isinstance(root, str) or not _ROOT.fullmatch(root):
        raise DatastreamFileError(
            source, f"root {root!r} must be topic levels of letters, digits, '.', '-', '_' joined by '/'"
        )
    raw = data.get("datastreams")
    if not isinstance(raw, dict) or not raw:
        raise DatastreamFileError(source, "no datastreams (expected a [datastreams] table with one or more)")
    datastreams: dict[str, Datastream] = {}
    seen: dict[Datastream, str] = {}
    for key, entry in raw.items():
        label = f"datastream {key!r}"
        if not _ID.fullmatch(key):
            raise DatastreamFileError(source, f"{label}: an id is 1-64 letters, digits, '_', '.', ':' or '-'")
        datastream = _entry(source, label, entry)
        if datastream in seen:
            # Two datastreams feeding one metric of one device would overwrite each other's
            # readings: almost certainly a copied line whose id or metric was not changed.
            raise DatastreamFileError(
                source,
                f"{label}: device {datastream.device_id!r} metric {datastream.metric!r} "
                f"is already fed by datastream {seen[datastream]!r}",
            )
        seen[datastream] = key
        datastreams[key] = datastream
    return DatastreamMap(datastreams, root, source)


def _entry(source: str, label: str, entry: Any) -> Datastream:
    if not isinstance(entry, dict):
        raise DatastreamFileError(source, f"{label}: must be a table {{ device = …, metric = … }}")
    unknown = set(entry) - {"device", "metric"}
    if unknown:
        raise DatastreamFileError(source, f"{label}: unknown field(s) {sorted(unknown)}")
    device, metric = entry.get("device"), entry.get("metric")
    if not isinstance(device, str) or not _ID.fullmatch(device):
        raise DatastreamFileError(
            source, f"{label}: device must be a device id (1-64 letters, digits, '_', '.', ':' or '-')"
        )
    if not isinstance(metric, str) or metric not in _METRICS:
        raise DatastreamFileError(
            source, f"{label}: metric {metric!r} is not a metric of any device type (docs/mqtt.md lists them)"
        )
    return Datastream(device, metric)
