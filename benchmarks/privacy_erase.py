"""Issue #13: erasing one caller with 50 calls from an archive of N calls (default 100,000).

Builds the archive on the local adapters (files, SQLite, analytics files) through the Archiver, with
the caller's 50 calls spread over 10 days of which half are closed and merged; then erases the caller
with every store wrapped in a counter. Prints the wall time and the operations per store. The goal:
work proportional to the caller's data plus the analytics days they appear in, not to the archive;
run it at two sizes (``--calls 10000`` and the default) and compare the counts.

    .venv/bin/python benchmarks/privacy_erase.py --calls 10000
    .venv/bin/python benchmarks/privacy_erase.py
"""

import argparse
import copy
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from services.analytics.compaction import compact_closed_days
from services.analytics.erasure import AnalyticsErasure
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.adapters.sqlite_tombstones import SqliteTombstones
from services.core.domain import payload
from services.core.erased import ErasedConversations
from services.ingest.service import Archiver
from services.privacy.service import Eraser

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "elevenlabs" / "post_call_transcription.json"
DAY = 86_400
NOW = 1_764_000_000  # 2025-11-24
CALLER = "+16125550142"


class Counting:
    """Counts every method call on the wrapped store."""

    def __init__(self, inner: Any, counts: Counter[str], name: str) -> None:
        self._inner, self._counts, self._name = inner, counts, name

    def __getattr__(self, attr: str) -> Any:
        target = getattr(self._inner, attr)
        if not callable(target):
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._counts[f"{self._name}.{attr}"] += 1
            return target(*args, **kwargs)

        return counted


def envelope(template: dict[str, Any], cid: str, phone: str, started_at: int) -> bytes:
    event = copy.deepcopy(template)
    event["event_timestamp"] = started_at + 60
    data = event["data"]
    data["conversation_id"] = cid
    data["metadata"]["start_time_unix_secs"] = started_at
    data["metadata"]["phone_call"]["external_number"] = phone
    data["conversation_initiation_client_data"]["dynamic_variables"]["system__caller_id"] = phone
    return orjson.dumps(event)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="calls in the archive, the caller's 50 included")
    parser.add_argument("--caller-calls", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the archive (its path is printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="callvault-erase-bench-"))
    try:
        run(args, work)
    finally:
        if args.keep:
            print(f"archive kept in {work}")
        else:  # 100,000 calls leave ~220,000 files in the temp dir
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    template = orjson.loads(FIXTURE.read_bytes())
    blobs = FsBlobStore(work / "archive", durable=False)  # building fast; erasure itself is what we time
    index = SqliteCallIndex(work / "index.sqlite3")
    analytics = FsBlobStore(work / "analytics", durable=False)
    now = float(NOW)
    archiver = Archiver(blobs, index, lambda: now, analytics=AnalyticsWriter(analytics, lambda: now))
    started = time.monotonic()
    others = args.calls - args.caller_calls
    for n in range(others):  # 30 days, a distinct caller per call
        phone = f"+1415{5550000 + n % 1_000_000:07d}"[:12] if n % 7 else f"+44207946{n % 10_000:04d}"
        body = envelope(template, f"conv_other_{n:07d}", phone, NOW - (n % 30) * DAY - 3600 - n % 3000)
        archiver.archive(payload.parse_envelope(body))
    for n in range(args.caller_calls):  # 10 days: 5 closed (merged), 5 open
        body = envelope(template, f"conv_caller_{n:03d}", CALLER, NOW - (n % 10) * DAY - 7200 - n)
        archiver.archive(payload.parse_envelope(body))
    compact_closed_days(analytics, now=now)
    built = time.monotonic() - started

    counts: Counter[str] = Counter()
    erased = ErasedConversations(b"k" * 32, SqliteTombstones(work / "privacy.sqlite3"))
    eraser = Eraser(
        Counting(blobs, counts, "archive"),
        Counting(index, counts, "index"),
        [AnalyticsErasure(Counting(analytics, counts, "analytics"))],
        erased=erased,
    )
    t0 = time.monotonic()
    plan = eraser.plan_caller(CALLER)
    summary = eraser.erase(plan)
    elapsed = time.monotonic() - t0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    load = os.getloadavg()[0]
    print(f"commit {commit.strip()}  load {load:.1f}  archive of {args.calls:,} calls built in {built:.0f} s")
    print(f"erased {summary.conversations} calls in {elapsed * 1000:.0f} ms: {summary.to_dict()}")
    for name, count in sorted(counts.items()):
        print(f"  {name:<28} {count}")
    print(f"  total store operations       {sum(counts.values())}")


if __name__ == "__main__":
    main()
