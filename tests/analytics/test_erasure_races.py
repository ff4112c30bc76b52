"""Erasure (forget a caller, or rows expired under a retention rule) racing the analytics merge.

A merge that read an erased call's per-call object before the erasure purged it must not write those
rows into the day object afterwards: the erasure changes the day object's tag, so the merge's
compare-and-swap fails and it reads the day again, without the call.
"""

from pathlib import Path
from typing import Any

import pytest

from services.analytics.compaction import compact_closed_days
from services.analytics.erasure import AnalyticsErasure
from services.analytics.rows import decode, encode
from services.analytics.tables import MESSAGES, day_object_key, object_key
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.memory import MemoryBlobStore
from services.core.domain.models import CallRecord
from services.core.ports import BlobStore

NOW = 1_764_000_000  # 2025-11-24 16:00 UTC: 2025-11-21 is closed
DT = "2025-11-21"
STARTED = 1_763_726_400  # 2025-11-21 12:00 UTC


@pytest.fixture(params=["memory", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return MemoryBlobStore() if request.param == "memory" else FsBlobStore(tmp_path / "analytics")


def _put(store: BlobStore, conversation_id: str) -> None:
    row = {"conversation_id": conversation_id, "turn_index": 0, "text": "my card is 4111"}
    store.put_bytes(object_key(MESSAGES, DT, conversation_id), encode(MESSAGES, [row]), "x")


def _ids(store: BlobStore) -> list[str]:
    return sorted(row["conversation_id"] for key in store.list_keys() for row in decode(store.get_bytes(key)))


def _erase_while_merge_reads(store: BlobStore, victim: str) -> list[Any]:
    """Run the merge; right after it has read ``victim``'s per-call object, erase ``victim``."""
    eraser = AnalyticsErasure(store, clock=lambda: NOW)
    get_tagged = store.get_tagged
    erased: list[int] = []

    def read_then_erase(key: str) -> tuple[bytes, str]:
        found = get_tagged(key)
        if key == object_key(MESSAGES, DT, victim) and not erased:
            erased.append(eraser.erase(None, [CallRecord(victim, started_at=STARTED)]))
        return found

    store.get_tagged = read_then_erase  # type: ignore[method-assign]
    try:
        compact_closed_days(store, now=NOW)
    finally:
        store.get_tagged = get_tagged  # type: ignore[method-assign]
    return erased


def test_an_erasure_racing_the_first_merge_of_a_day_leaves_none_of_the_calls_rows(store: BlobStore) -> None:
    _put(store, "conv_erased")
    _put(store, "conv_kept")

    assert _erase_while_merge_reads(store, "conv_erased") == [1]

    assert _ids(store) == ["conv_kept"]


def test_an_erasure_racing_the_merge_of_a_late_write_leaves_none_of_the_calls_rows(store: BlobStore) -> None:
    _put(store, "conv_kept")
    compact_closed_days(store, now=NOW)  # the day object exists, without the erased call
    _put(store, "conv_erased")  # a late write to the merged day (an import of an old call)

    assert _erase_while_merge_reads(store, "conv_erased") == [1]

    assert _ids(store) == ["conv_kept"]
    assert [key for key in store.list_keys() if key.startswith(MESSAGES)] == [day_object_key(MESSAGES, DT)]
