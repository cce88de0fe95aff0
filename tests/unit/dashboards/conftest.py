"""Page refreshes are called here as plain functions, often twice around a change of data
without a push in between: each call must read afresh, so the sharing of results between
viewers (dashboards/shared.py, tested on its own instances) is off for these tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dashboards import shared


@pytest.fixture(autouse=True)
def refresh_not_shared() -> Iterator[None]:
    shared.RESULTS.enabled = False
    try:
        yield
    finally:
        shared.RESULTS.enabled = True
