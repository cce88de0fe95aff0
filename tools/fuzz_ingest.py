"""Coverage-guided fuzzing (atheris / libFuzzer) of what strangers can send cityops.

Two targets, one per run:

``ingest``
    One MQTT message: the input is ``topic`` + ``\\n`` + ``payload``. It goes through topic
    routing, payload validation and row building (locate, metric checks, timestamps) as in
    :class:`ingest.pipeline.IngestPipeline`, without a database: two devices and a camera
    are known, any other id is unknown. Each message must come out as rows or as a
    rejection whose reason is one of docs/mqtt.md's, with a message. Anything else — an
    exception of another kind, a blank reason — is a crash.

``open311``
    One Open311 POST: the input is the ``application/x-www-form-urlencoded`` body of
    ``POST /open311/v2/requests.json``, against the app built by :func:`app.create_app`
    on a SQLite file and the in-process Redis store (an ``api_key`` is configured; the
    seeds carry it). The answer must be 200 with the stored order, or 400/403/404 with
    Open311's error list and a description; a 500 or an exception is a crash.

Run: ``make fuzz FUZZ_SECONDS=60`` (each target that long), or
``python tools/fuzz_ingest.py ingest -max_total_time=60 [corpus-dir]``. The seed corpus
(the hostile corpus of the tests and valid messages) is written into ``var/fuzz/<target>``
on first use; libFuzzer adds what it finds there, and a crashing input is saved as
``crash-…`` in the current folder.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Every reason ingest refuses a message with (docs/mqtt.md).
REASONS = frozenset(
    {
        "unknown_topic", "too_large", "invalid_utf8", "invalid_json", "schema", "unknown_device",
        "unknown_metric", "out_of_range", "negative_value", "ts_future", "ts_past", "out_of_extent",
        "not_supported", "illegal_transition", "unknown_ticket", "storage_refused",
    }
)  # fmt: skip
PREFIX = "cityops/v1"
OPEN311_KEY = "fuzz-key-0123456789abcdef"
#: A fixed "now", so an input behaves the same whenever it is replayed.
NOW = datetime(2026, 7, 15, 2, 30, tzinfo=UTC)


class FuzzFailure(AssertionError):
    """An input broke a promise: the fuzzer saves it as a crash."""


# ---- ingest ------------------------------------------------------------------------------------


class _NoDatabase:
    """Stands in for a connection where the pipeline looks a device up: nobody else is known."""

    def execute(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return []


def ingest_target() -> Callable[[bytes], None]:
    from ingest.pipeline import BatchResult, DeviceInfo, Inbound, IngestPipeline, Rejected
    from ingest.routing import Kind

    pipeline = IngestPipeline(None, None, prefix=PREFIX, clock=lambda: NOW)  # type: ignore[arg-type]
    for device_id, kind in (("air-1", "air_quality"), ("noise-1", "noise"), ("cam-1", "camera")):
        pipeline._devices[device_id] = DeviceInfo(device_id, kind, 106.6333, 30.456, "511602", None, {})
    nobody = _NoDatabase()

    def check(result: BatchResult) -> None:
        for rejection in result.rejected:
            if rejection.reason not in REASONS or not rejection.detail.strip():
                raise FuzzFailure(f"unclear rejection {rejection.reason!r}: {rejection.detail!r}")

    def one(data: bytes) -> None:
        topic, _, payload = data.partition(b"\n")
        message = Inbound(topic.decode("utf-8", "replace"), payload, NOW)
        result = BatchResult()
        try:
            route, model = pipeline._parse(message)
        except Rejected as exc:
            if exc.reason not in REASONS or not exc.detail.strip():
                raise FuzzFailure(f"unclear rejection {exc.reason!r}: {exc.detail!r}") from exc
            return
        items = [(message, route, model)]
        if route.kind in (Kind.SENSOR_META, Kind.CAMERA_META):
            rows = pipeline._devices_rows(items, result, NOW)
        elif route.kind is Kind.SENSOR_OBS:
            rows = pipeline._observation_rows(nobody, items, result, NOW)  # type: ignore[arg-type]
        elif route.kind is Kind.VIDEO_EVENT:
            rows = pipeline._video_rows(nobody, items, result, NOW)  # type: ignore[arg-type]
        elif route.kind is Kind.TICKET:
            rows = pipeline._ticket_rows(items, result, NOW)
        else:  # work-order events are applied by the database's lifecycle: parsing is the edge
            rows = []
        check(result)
        if len(rows) + len(result.rejected) != (0 if route.kind is Kind.TICKET_EVENT else 1):
            raise FuzzFailure(f"{len(rows)} rows and {len(result.rejected)} rejections from one message")
        for row in rows:
            json.dumps({k: v for k, v in row.items() if k not in ("geom", "ts", "received_at")}, default=str)

    return one


def ingest_seeds() -> Iterator[bytes]:
    from tests.unit.ingest.hostile_corpus import CAMERA, CASES, OPEN_TICKET

    ts, past = NOW.isoformat(), (NOW - timedelta(minutes=10)).isoformat()
    for case in CASES:
        body = case.body(ts, past)
        if len(body) < 100_000:  # the 10 MB ones are refused by size alone: no need to mutate them
            yield f"{PREFIX}/{case.topic}".encode() + b"\n" + body
    yield f"{PREFIX}/{CAMERA[0]}".encode() + b"\n" + CAMERA[1]
    yield f"{PREFIX}/{OPEN_TICKET[0]}".encode() + b"\n" + OPEN_TICKET[1].replace(b"{past}", past.encode())
    yield (
        f"{PREFIX}/sensors/air-1/obs\n".encode()
        + json.dumps({"ts": ts, "metrics": {"pm25": 35.5, "pm10": 60, "o3": 88}, "msg_id": "m-1"}).encode()
    )
    yield (
        f"{PREFIX}/sensors/noise-1/meta\n".encode()
        + json.dumps(
            {"type": "noise", "lon": 106.63, "lat": 30.45, "crs": "gcj02", "props": {"zone": "1"}}
        ).encode()
    )
    yield (
        f"{PREFIX}/video/cam-1/events\n".encode()
        + json.dumps(
            {"event_id": "v-1", "ts": ts, "type": "waterlogging", "confidence": 0.8, "bbox": [1, 2, 3, 4]}
        ).encode()
    )
    yield (
        f"{PREFIX}/hotline/tickets/T-1/events\n".encode()
        + json.dumps({"event_id": "e-1", "ts": ts, "action": "rated", "rating": "满意"}).encode()
    )


# ---- Open311 POST ------------------------------------------------------------------------------


def open311_target() -> Callable[[bytes], None]:
    import logging

    import fakeredis

    from app import create_app
    from models import db
    from models.config import load_settings
    from models.live import LiveStore

    logging.disable(logging.WARNING)  # the service logs every refused request
    folder = Path(tempfile.mkdtemp(prefix="cityops-fuzz-"))
    url = f"sqlite:///{folder / 'cityops.sqlite3'}"
    db.upgrade_database(url)
    settings = load_settings(
        {
            "CITYOPS_DATABASE_URL": url,
            "CITYOPS_DATA_DIR": str(folder),
            "CITYOPS_OPEN311_API_KEYS": OPEN311_KEY,
            "CITYOPS_SECRET_KEY": secrets.token_hex(32),
        }
    )
    live = LiveStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    app = create_app(settings, live=live, engine=db.create_engine_for(url))
    client = app.server.test_client()

    def one(data: bytes) -> None:
        response = client.post(
            "/open311/v2/requests.json", data=data, content_type="application/x-www-form-urlencoded"
        )
        if response.status_code == 200:
            (created,) = response.get_json()
            if not str(created.get("service_request_id", "")).startswith("O311-"):
                raise FuzzFailure(f"200 without a service_request_id: {response.data[:300]!r}")
            return
        if response.status_code not in (400, 403, 404, 413):
            raise FuzzFailure(f"HTTP {response.status_code}: {response.data[:300]!r}")
        if response.status_code == 413:  # refused by the web tier's size limit, before Open311
            return
        errors = response.get_json()
        if not (
            isinstance(errors, list) and errors and all(str(e.get("description", "")).strip() for e in errors)
        ):
            raise FuzzFailure(f"HTTP {response.status_code} without a reason: {response.data[:300]!r}")

    return one


def open311_seeds() -> Iterator[bytes]:
    base = {"api_key": OPEN311_KEY, "service_code": "noise", "lat": "30.4562", "long": "106.6337"}
    yield urlencode(base | {"description": "夜间施工噪声"}).encode()
    yield urlencode(
        base | {"description": "x", "first_name": "三", "last_name": "张", "phone": "13812345678",
                "attribute[urgency]": "urgent", "address_string": "广安区思源大道"}
    ).encode()  # fmt: skip
    yield urlencode(
        base | {"description": "<script>alert(1)</script>'; DROP TABLE hotline_tickets; --"}
    ).encode()
    yield urlencode(base | {"lat": "106.6337", "long": "30.4562", "description": "swapped"}).encode()
    yield urlencode(base | {"lat": "NaN", "long": "1e309", "description": "numbers"}).encode()
    yield urlencode({k: v for k, v in base.items() if k != "api_key"}).encode()
    yield b"api_key=" + OPEN311_KEY.encode() + b"&service_code=noise&description=%FF%FE&lat=30.45&long=106.63"


# ---- running -----------------------------------------------------------------------------------

TARGETS: dict[str, tuple[Callable[[], Callable[[bytes], None]], Callable[[], Iterator[bytes]]]] = {
    "ingest": (ingest_target, ingest_seeds),
    "open311": (open311_target, open311_seeds),
}


def write_seeds(target: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.iterdir()):
        for i, seed in enumerate(TARGETS[target][1]()):
            (folder / f"seed-{i:04d}").write_bytes(seed)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer options] [corpus dir]")
    target = argv[1]
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed: pip install -e '.[fuzz]'")
    rest = argv[2:]
    if not any(not a.startswith("-") for a in rest):
        corpus = ROOT / "var" / "fuzz" / target
        write_seeds(target, corpus)
        rest.append(str(corpus))
    with atheris.instrument_imports(include=["ingest", "models", "dashboards", "geo"]):
        one = TARGETS[target][0]()
    # A forked child of libFuzzer would inherit threads; run in this process.
    os.environ.setdefault("PYTHONHASHSEED", "0")
    atheris.Setup([argv[0], *rest], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
