"""How long the daily compaction of one closed day takes: the product's ``compact_closed_days`` over
the local folder store, on days of the generated 100,000-calls-a-month set (about 3,300 calls a day).

Each run hard-links a few days of the generated per-call objects into a scratch folder (the product
never edits a file in place, so the shared data set is untouched), merges them, and reports the
time per day (all three tables) and per merged object. Then, in a second scratch folder, the same
days' calls in two halves: the first half merged, the second half linked in as late calls (an import
of past calls) and merged into the existing day objects, which is the merge that looks for late
audio's orphan copies (``late_*``).

    .venv/bin/python benchmarks/analytics_compaction.py [--days 3]
"""

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from analytics_gen import generate

from services.analytics.compaction import compact_closed_days
from services.analytics.tables import TABLES
from services.core.adapters.fs_blob_store import FsBlobStore

RESULTS = Path("benchmarks/results")
SOURCE = RESULTS / "analytics-100k"


def link_days(source: Path, target: Path, days: list[str], half: int | None = None) -> int:
    """Link the days' per-call objects; ``half`` 0 or 1: only the calls of that half of each day."""
    linked = 0
    for table in TABLES:
        for dt in days:
            folder = target / table / f"dt={dt}"
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted((source / table / f"dt={dt}").iterdir()):
                if half is not None and int(path.name.split(".")[0][-1], 16) % 2 != half:
                    continue
                os.link(path, folder / path.name)
                linked += 1
    return linked


def timed_merge(analytics: Path, days: list[str], *, late: bool) -> tuple[int, float]:
    """(objects, seconds) of merging the days' per-call objects in a scratch copy; ``late``: half of
    each day's calls merged first (untimed), the other half then merged into those day objects."""
    scratch = Path(tempfile.mkdtemp(prefix="compaction-", dir=RESULTS))
    try:
        if late:
            link_days(analytics, scratch, days, half=0)
            compact_closed_days(FsBlobStore(scratch))
        objects = link_days(analytics, scratch, days, half=1 if late else None)
        started = time.perf_counter()
        summary = compact_closed_days(FsBlobStore(scratch))
        elapsed = time.perf_counter() - started
    finally:
        shutil.rmtree(scratch)
    assert summary.objects_merged == objects, (summary.objects_merged, objects)
    return objects, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3, help="closed days to merge (default 3)")
    args = parser.parse_args()
    analytics = generate(100_000, 30, SOURCE) / "analytics"
    days = sorted(p.name.removeprefix("dt=") for p in (analytics / "calls").iterdir())[: args.days]
    objects, elapsed = timed_merge(analytics, days, late=False)
    late_objects, late_elapsed = timed_merge(analytics, days, late=True)
    result = {
        "days": len(days),
        "objects_merged": objects,
        "seconds": round(elapsed, 2),
        "seconds_per_day": round(elapsed / len(days), 2),
        "ms_per_object": round(elapsed / objects * 1000, 3),
        "late_objects_merged": late_objects,
        "late_seconds_per_day": round(late_elapsed / len(days), 2),
        "late_ms_per_object": round(late_elapsed / late_objects * 1000, 3),
    }
    print(json.dumps(result, indent=2))
    (RESULTS / "analytics-compaction.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
