"""The worker's heap settings: start-up objects frozen, young objects collected less often."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ingest.worker import GC_YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_heap_freezes_what_is_loaded_and_raises_the_young_threshold(restored_gc: None) -> None:
    loaded = [[i] for i in range(1000)]  # container objects: tracked by the collector
    older, oldest = gc.get_threshold()[1:]
    settle_heap()
    assert gc.get_freeze_count() >= len(loaded)
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, older, oldest)
    # Frozen objects are still freed by reference counting; cycles made later are collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
