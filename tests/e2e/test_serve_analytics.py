"""The real `callvault serve` keeps closed analytics days as one object per table.

Files are read with ``gzip`` and ``json`` from the stdlib: the oracle does not go through CallVault.
"""

import gzip
import json
import time
from pathlib import Path

import httpx

from services.analytics.rows import encode
from services.analytics.tables import CONTENT_TYPE, MESSAGES, object_key
from services.core.adapters.fs_blob_store import FsBlobStore
from tests.support import TRANSCRIPTION, fixture_bytes, fixture_json, serve_archive, signed_headers

WEBHOOK = "/webhooks/elevenlabs"


def _rows(folder: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("*.json.gz"))
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]


def test_serve_merges_closed_days_at_start_and_folds_late_calls_in_soon_after(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    analytics = data_dir / "analytics"
    # Per-call objects of a closed day, as a server that was stopped before the day closed left them.
    store = FsBlobStore(analytics)
    for i in range(3):
        row = {"conversation_id": f"conv_left{i}", "turn_index": 0, "text": "left behind"}
        store.put_bytes(object_key(MESSAGES, "2025-07-06", f"conv_left{i}"), encode(MESSAGES, [row]), CONTENT_TYPE)
    day = analytics / "messages" / "dt=2025-07-06"

    with serve_archive(data_dir) as served:
        deadline = time.monotonic() + 30
        while sorted(p.name for p in day.iterdir()) != ["day.compacted.json.gz"]:
            assert time.monotonic() < deadline, sorted(p.name for p in day.iterdir())
            time.sleep(0.1)
        # The capture's call is from 2025-07-06 too: a late call is a per-call object like any other
        # (linear imports), and the write nudges the compactor, which folds it in seconds later,
        # long before the hourly tick (CALLVAULT_ANALYTICS_COMPACT_INTERVAL's default).
        body = fixture_bytes(TRANSCRIPTION)
        response = httpx.post(served.url + WEBHOOK, content=body, headers=signed_headers(body))
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 30
        while sorted(p.name for p in day.iterdir()) != ["day.compacted.json.gz"]:
            assert time.monotonic() < deadline, sorted(p.name for p in day.iterdir())
            time.sleep(0.1)

    conversation_id = fixture_json(TRANSCRIPTION)["data"]["conversation_id"]
    ids = sorted({str(row["conversation_id"]) for row in _rows(day)})
    assert ids == sorted([conversation_id, "conv_left0", "conv_left1", "conv_left2"])
    calls = _rows(analytics / "calls" / "dt=2025-07-06")
    assert [row["conversation_id"] for row in calls] == [conversation_id]
