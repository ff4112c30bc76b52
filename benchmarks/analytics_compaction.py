"""How long the daily compaction of one closed day takes: the product's ``compact_closed_days`` over
the local folder store, on days of the generated 100,000-calls-a-month set (about 3,300 calls a day).

Each run hard-links a few days of the generated per-call objects into a scratch folder (the product
never edits a file in place, so the shared data set is untouched), merges them, and reports the
time per day (all three tables) and per merged object.

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


def link_days(source: Path, target: Path, days: list[str]) -> int:
    linked = 0
    for table in TABLES:
        for dt in days:
            folder = target / table / f"dt={dt}"
            folder.mkdir(parents=True)
            for path in (source / table / f"dt={dt}").iterdir():
                os.link(path, folder / path.name)
                linked += 1
    return linked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=3, help="closed days to merge (default 3)")
    args = parser.parse_args()
    analytics = generate(100_000, 30, SOURCE) / "analytics"
    days = sorted(p.name.removeprefix("dt=") for p in (analytics / "calls").iterdir())[: args.days]
    scratch = Path(tempfile.mkdtemp(prefix="compaction-", dir=RESULTS))
    try:
        objects = link_days(analytics, scratch, days)
        started = time.perf_counter()
        summary = compact_closed_days(FsBlobStore(scratch))
        elapsed = time.perf_counter() - started
    finally:
        shutil.rmtree(scratch)
    assert summary.objects_merged == objects, (summary.objects_merged, objects)
    result = {
        "days": len(days),
        "objects_merged": objects,
        "seconds": round(elapsed, 2),
        "seconds_per_day": round(elapsed / len(days), 2),
        "ms_per_object": round(elapsed / objects * 1000, 3),
    }
    print(json.dumps(result, indent=2))
    (RESULTS / "analytics-compaction.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
