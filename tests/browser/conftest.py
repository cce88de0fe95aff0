"""Browser tests: a failing test's report carries the log of every demo running then."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import running_demo_logs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for url, tail in running_demo_logs().items():
            report.sections.append((f"demo log {url} (end)", tail))
