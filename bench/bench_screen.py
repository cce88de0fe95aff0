"""Publish-to-screen latency in a real browser against the running demo.

    python bench/bench_screen.py [--samples 50] [--kinds hotline alerts emergency]

Starts ``python app.py`` on a fresh data folder and free ports (as the browser tests do,
:func:`tests.browser.support.running_demo`: embedded broker, ingest worker, simulator and
web in one process), signs a headless Chromium in with the demo's admin account, and for
each kind publishes, one at a time, messages whose arrival can be seen on the page:

* ``hotline`` — a 12345 order with a unique title on ``/hotline``: arrival = the title
  appears in the live order stream;
* ``alerts`` — a smoke detector registered for the sample (a unique name, registered a
  second before the clock starts) then its smoke reading over the alarm threshold on
  ``/alerts``: arrival = the critical alert with that name is in the duty officer's queue;
* ``emergency`` — a water-level reading with a new value (over the warning level) on
  ``/emergency``: arrival = the station's row in the sensor table shows that value.

A MutationObserver in the page records ``Date.now()`` when the marker first appears; the
publish time is ``time.time()`` just before the MQTT publish (QoS 1) on the same machine,
so latency = arrival − publish covers broker, ingest, Redis, the push stream, the page's
refresh callback and the browser's render. The simulator keeps its everyday feed running
meanwhile (the demo's default 40 msgs/s). Between samples a random pause of 0.3–1.5 s, so
samples land at every phase of a page's once-a-second refresh throttle.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PREFIX = "cityops/v1"
#: Give up on one sample after this long (counted as a miss, reported separately).
SAMPLE_TIMEOUT_S = 20.0
#: Installed once per page: remembers when each wanted marker first appeared.
OBSERVER = """
window.__want = window.__want || {};
window.text = id => (document.getElementById(id) || {}).textContent || '';
window.__seen = window.__seen || {};
if (!window.__observer) {
  const check = () => {
    for (const [key, test] of Object.entries(window.__want)) {
      let ok = false;
      try { ok = test(); } catch (e) {}
      if (ok) { window.__seen[key] = Date.now(); delete window.__want[key]; }
    }
  };
  window.__observer = new MutationObserver(check);
  window.__observer.observe(document.body, {childList: true, subtree: true, characterData: true});
  window.__check = check;
}
"""


@dataclass
class Kind:
    path: str
    #: publishes sample ``n`` (returns the publish time in ms since the epoch) …
    publish: Callable[[int], float]
    #: … after this JavaScript (a function body returning true once it is on screen) is armed
    marker: Callable[[int], str]
    prepare: Callable[[int], None] = lambda n: None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    rank = max(0, math.ceil(p / 100 * len(ordered)) - 1)
    return ordered[rank]


def kinds(publisher: Any, run_id: str, water_station: str) -> dict[str, Kind]:
    from ingest.routing import TopicRouter

    router = TopicRouter(PREFIX)

    def send(topic: str, body: dict[str, Any], retain: bool = False) -> float:
        at = time.time() * 1000
        publisher.publish(topic, json.dumps(body, ensure_ascii=False).encode(), qos=1, retain=retain)
        return at

    def ticket(n: int) -> float:
        return send(
            router.tickets(),
            {
                "ticket_id": f"12345-{run_id}-{n:04d}",
                "ts": datetime.now(UTC).isoformat(),
                "channel": "phone",
                "category": "噪声扰民",
                "title": f"测速{run_id}-{n:04d}",
                "content": "夜间施工噪声",
                "lon": 106.633,
                "lat": 30.456,
            },
        )

    def smoke_device(n: int) -> str:
        return f"smoke-{run_id}-{n:04d}"

    def register_smoke(n: int) -> None:
        body = {"type": "smoke", "lon": 106.64, "lat": 30.47, "name": f"测速烟感{run_id}{n:04d}", "props": {}}
        publisher.publish(router.sensor_meta(smoke_device(n)), json.dumps(body).encode(), qos=1, retain=True)
        time.sleep(1.0)

    def smoke(n: int) -> float:
        body = {"ts": datetime.now(UTC).isoformat(), "metrics": {"smoke": 0.8, "temp": 30.0}}
        return send(router.sensor_obs(smoke_device(n)), body)

    def level(n: int) -> float:
        return 5.2 + (n % 150) / 100

    def water(n: int) -> float:
        body = {"ts": datetime.now(UTC).isoformat(), "metrics": {"level": level(n), "flow": 800.0}}
        return send(router.sensor_obs(water_station), body)

    return {
        "hotline": Kind(
            "/hotline",
            ticket,
            lambda n: f"return text('hotline-stream').includes('测速{run_id}-{n:04d}')",
        ),
        "alerts": Kind(
            "/alerts",
            smoke,
            lambda n: f"return text('console-queue').includes('测速烟感{run_id}{n:04d}')",
            register_smoke,
        ),
        "emergency": Kind(
            "/emergency",
            water,
            lambda n: (
                f"const row = document.querySelector('#emergency-sensors tr[title=\"{water_station}\"]');"
                f" return !!row && row.textContent.includes('{level(n):.2f} m')"
            ),
        ),
    }


def measure(driver: Any, base: str, kind: Kind, samples: int, rng: random.Random) -> tuple[list[float], int]:
    from tests.browser.support import wait_until

    driver.get(base + kind.path)
    time.sleep(3)  # the first render and the push stream's connection
    driver.execute_script(OBSERVER)
    latencies: list[float] = []
    missed = 0
    # Sample values repeat every 150 (the emergency values); offset so none repeats the last one.
    for n in range(samples):
        kind.prepare(n)
        driver.execute_script(f"window.__want['s{n}'] = function() {{ {kind.marker(n)} }}; window.__check();")
        published = kind.publish(n)
        arrived = None

        def seen(n: int = n) -> bool:
            nonlocal arrived
            arrived = driver.execute_script(f"return window.__seen['s{n}'] || null")
            return arrived is not None

        if wait_until(seen, SAMPLE_TIMEOUT_S):
            latencies.append(arrived - published)
        else:
            missed += 1
            driver.execute_script(f"delete window.__want['s{n}']")
        time.sleep(rng.uniform(0.3, 1.5))
    return latencies, missed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--kinds", nargs="*", default=["hotline", "alerts", "emergency"])
    args = parser.parse_args(argv)

    from bench_pages import browser_sign_in

    from ingest.mqtt import MqttClient
    from tests.browser.support import chromium, running_demo

    print(f"load before: {Path('/proc/loadavg').read_text().strip()}", flush=True)
    run_id = uuid.uuid4().hex[:6]
    rng = random.Random(run_id)
    results: dict[str, tuple[list[float], int]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="cityops-screen-") as folder,
        running_demo(Path(folder)) as system,
    ):
        accounts = json.loads((Path(folder) / "var" / "demo-accounts.json").read_text(encoding="utf-8"))
        publisher = MqttClient(system.mqtt_url, f"bench-screen-{run_id}").start()
        driver = chromium()
        try:
            browser_sign_in(driver, system.base_url, accounts["admin"])
            for name in args.kinds:
                kind = kinds(publisher, run_id, "water_level-511602-01")[name]
                results[name] = measure(driver, system.base_url, kind, args.samples, rng)
                lat, missed = results[name]
                print(f"  {name}: {len(lat)} samples, {missed} missed", flush=True)
        finally:
            driver.quit()
            publisher.stop()
    print(f"load after: {Path('/proc/loadavg').read_text().strip()}")
    print()
    print("| page | kind | samples | p50 ms | p95 ms | max ms | missed (> 20 s) |")
    print("|---|---|---|---|---|---|---|")
    for name, (lat, missed) in results.items():
        path = kinds(None, run_id, "")[name].path
        if lat:
            p50, p95 = percentile(lat, 50), percentile(lat, 95)
            print(
                f"| `{path}` | {name} | {len(lat)} | {p50:,.0f} | {p95:,.0f} | {max(lat):,.0f} | {missed} |"
            )
        else:
            print(f"| `{path}` | {name} | 0 | – | – | – | {missed} |")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
