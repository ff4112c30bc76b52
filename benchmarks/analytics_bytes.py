"""Bytes an Athena "calls per day, last 30 days" query reads: compact tables vs the raw archive.

From the real object sizes of generated data (benchmarks/analytics_gen.py): the analytics objects
exactly as the product writes them, and the exact size of each raw archive object. At 1,000 and
100,000 calls a month; Athena bills gzip'd JSON by the compressed bytes it reads, rounded up to the
MB, at least 10 MB per query, $5 per TB.

The compact side is the layout the product keeps in steady state: the generated month after its
daily compaction (``compact_closed_days``, run on a copy at the end of the month's last day), so the
30 partitions hold 28 closed-day objects and 2 open days of one object per call. "Before compaction"
is the same month with every day still one object per call.

    .venv/bin/python benchmarks/analytics_bytes.py   # generates and compacts the data sets once (~7 min)
"""

import json
import math
from datetime import timedelta
from pathlib import Path

from analytics_gen import END, compacted, generate, raw_sizes

from services.analytics.tables import CALLS, DAY_OBJECT

RESULTS = Path("benchmarks/results")
USD_PER_TB = 5.0
TB = 1024**4  # Athena bills per TB scanned; binary units, as AWS bills data
MB = 1024**2
MIN_BILLED = 10 * MB
S3_GET_USD_PER_1000 = 0.0004  # S3 Standard GET, us-east-1
SETS = {1_000: RESULTS / "analytics-1k", 100_000: RESULTS / "analytics-100k"}
WINDOW = {(END.date() - timedelta(days=n)).isoformat() for n in range(1, 31)}  # the 30 days before END


def athena_cost(scanned: int) -> float:
    billed = max(MIN_BILLED, math.ceil(scanned / MB) * MB)
    return billed / TB * USD_PER_TB


def calls_objects(analytics: Path) -> list[tuple[str, int]]:
    """``(name, size)`` of every ``calls/dt=D/*`` object in the window: what the query opens."""
    found = []
    for partition in (analytics / CALLS).iterdir():
        if partition.name.removeprefix("dt=") in WINDOW:
            found += [(p.name, p.stat().st_size) for p in partition.iterdir()]
    return found


def measure(calls: int, out: Path) -> dict[str, float | int]:
    generate(calls, 30, out)
    compact_dir, compaction_s = compacted(out)
    raw = [size for _cid, _dt, size in raw_sizes(out)]
    raw_bytes = sum(raw)
    before = calls_objects(out / "analytics")
    after = calls_objects(compact_dir / "analytics")
    before_bytes = sum(size for _name, size in before)
    after_bytes = sum(size for _name, size in after)
    day_objects = [size for name, size in after if name == DAY_OBJECT]
    return {
        "calls_per_month": calls,
        "calls_in_window": len(before),
        "raw_objects": len(raw),
        "raw_bytes": raw_bytes,
        "raw_mean_bytes": raw_bytes / len(raw),
        # the product's layout: 28 closed days compacted, the last 2 one object per call
        "compact_objects": len(after),
        "compact_day_objects": len(day_objects),
        "compact_day_objects_bytes": sum(day_objects),
        "compact_per_call_objects": len(after) - len(day_objects),
        "compact_per_call_objects_bytes": after_bytes - sum(day_objects),
        "compact_bytes": after_bytes,
        "compact_mean_bytes_per_call": after_bytes / len(before),
        "ratio": raw_bytes / after_bytes,
        "ratio_12_months_of_raw": 12 * raw_bytes / after_bytes,
        "athena_usd_raw": athena_cost(raw_bytes),
        "athena_usd_raw_12_months": athena_cost(12 * raw_bytes),
        "athena_usd_compact": athena_cost(after_bytes),
        "s3_get_usd_compact": len(after) / 1000 * S3_GET_USD_PER_1000,
        "compaction_s": compaction_s,
        # before compaction: every day one object per call
        "before_bytes": before_bytes,
        "before_mean_bytes": before_bytes / len(before),
        "before_ratio": raw_bytes / before_bytes,
        "before_ratio_12_months_of_raw": 12 * raw_bytes / before_bytes,
        "athena_usd_before": athena_cost(before_bytes),
        "s3_get_usd_before": len(before) / 1000 * S3_GET_USD_PER_1000,
    }


def main() -> None:
    results = [measure(calls, out) for calls, out in SETS.items()]
    (RESULTS / "analytics-bytes.json").write_text(json.dumps(results, indent=2))
    print(
        "| calls/month | raw read (1 month of archive) | compact `calls` read (28 day objects + 2 open days) "
        "| fewer bytes | fewer bytes, 12 months of archive | Athena $ raw (1 month / 12) | Athena $ compact "
        "| S3 GET $ compact (objects) "
        "| before compaction: read, fewer bytes (1 / 12 months), Athena $, GET $ (objects) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['calls_per_month']:,} | {r['raw_bytes'] / MB:,.1f} MB ({r['raw_mean_bytes'] / 1024:.1f} KB/call) "
            f"| {r['compact_bytes'] / MB:,.2f} MB ({r['compact_mean_bytes_per_call']:.0f} B/call: "
            f"{r['compact_day_objects_bytes'] / MB:,.2f} MB days + {r['compact_per_call_objects_bytes'] / MB:,.2f} MB "
            f"open) | **{r['ratio']:.0f}x** | {r['ratio_12_months_of_raw']:,.0f}x "
            f"| ${r['athena_usd_raw']:.6f} / ${r['athena_usd_raw_12_months']:.4f} | ${r['athena_usd_compact']:.6f} "
            f"| ${r['s3_get_usd_compact']:.6f} ({r['compact_objects']:,}) "
            f"| {r['before_bytes'] / MB:,.2f} MB, {r['before_ratio']:.0f}x / "
            f"{r['before_ratio_12_months_of_raw']:.0f}x, "
            f"${r['athena_usd_before']:.6f}, ${r['s3_get_usd_before']:.4f} ({r['calls_in_window']:,}) |"
        )
    for r in results:
        print(f"compaction of {r['calls_per_month']:,} calls' 28 closed days, 3 tables: {r['compaction_s']:.1f} s")


if __name__ == "__main__":
    main()
