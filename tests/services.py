"""Private service instances for tests that must stop, restart or load a service.

They run on free loopback ports in temporary folders, so such a test never disturbs the
shared services on the standard ports, or another test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ingest.broker import free_port, port_is_free
from tests.conftest import service_missing

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MOSQUITTO_CONF = DEPLOY / "mosquitto.conf"


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        service_missing("the mosquitto binary", "not on PATH or in /usr/sbin")
    assert found is not None
    return found


class PrivateMosquitto:
    """A mosquitto of our own on a free port, to stop and restart without disturbing others."""

    def __init__(self, workdir: Path, conf_text: str | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        text = conf_text if conf_text is not None else "allow_anonymous true\npersistence true\n"
        text = re.sub(r"(?m)^listener\s+\d+.*$", f"listener {self.port} 127.0.0.1", text)
        if not re.search(r"(?m)^listener\s", text):
            text = f"listener {self.port} 127.0.0.1\n" + text
        text = re.sub(r"(?m)^persistence_location\s.*$", "", text)
        text += f"\npersistence_location {self.data}/\n"
        if os.geteuid() == 0:
            # As root, mosquitto would switch to the 'mosquitto' user, which cannot write
            # into pytest's private temporary directory.
            text += "user root\n"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(text, encoding="utf-8")
        self.log = workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> PrivateMosquitto:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [mosquitto_binary(), "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while port_is_free(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text(errors='replace')}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGTERM lets mosquitto write its persistence database before exiting.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
