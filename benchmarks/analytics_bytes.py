"""Bytes an Athena "calls per day, last 30 days" query reads: compact tables vs the raw archive.

From the real object sizes of generated data (benchmarks/analytics_gen.py): the analytics objects
exactly as the writer encodes them, and the exact size of each raw archive object. At 1,000 and
100,000 calls a month; Athena bills gzip'd JSON by the compressed bytes it reads, rounded up to the
MB, at least 10 MB per query, $5 per TB.

    .venv/bin/python benchmarks/analytics_bytes.py            # generates the data sets once (~1 min)
"""

import gzip
import json
import math
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

from analytics_gen import END, generate, raw_sizes

RESULTS = Path("benchmarks/results")
USD_PER_TB = 5.0
TB = 1024**4  # Athena bills per TB scanned; binary units, as AWS bills data
MB = 1024**2
MIN_BILLED = 10 * MB
S3_GET_USD_PER_1000 = 0.0004  # S3 Standard GET, us-east-1
SETS = {1_000: RESULTS / "analytics-1k", 100_000: RESULTS / "analytics-100k"}


def athena_cost(scanned: int) -> float:
    billed = max(MIN_BILLED, math.ceil(scanned / MB) * MB)
    return billed / TB * USD_PER_TB


def measure(calls: int, out: Path) -> dict[str, float | int]:
    generate(calls, 30, out)
    window = {(END.date() - timedelta(days=n)).isoformat() for n in range(1, 31)}  # the 30 days before END
    raw = [size for _cid, _dt, size in raw_sizes(out)]
    calls_dir = out / "analytics" / "calls"
    sizes: dict[str, list[int]] = defaultdict(list)
    for partition in calls_dir.iterdir():
        dt = partition.name.removeprefix("dt=")
        if dt in window:
            sizes[dt] = [p.stat().st_size for p in partition.iterdir()]
    analytics_bytes = sum(sum(v) for v in sizes.values())
    analytics_objects = sum(len(v) for v in sizes.values())
    # The same rows compacted into one object per day (the measured alternative, not the layout).
    compacted = 0
    for dt in sizes:
        lines = b"".join(gzip.decompress(p.read_bytes()) for p in sorted((calls_dir / f"dt={dt}").iterdir()))
        compacted += len(gzip.compress(lines, compresslevel=6, mtime=0))
    raw_bytes = sum(raw)
    return {
        "calls_per_month": calls,
        "calls_in_window": analytics_objects,
        "raw_objects": len(raw),
        "raw_bytes": raw_bytes,
        "raw_mean_bytes": raw_bytes / len(raw),
        "analytics_bytes": analytics_bytes,
        "analytics_mean_bytes": analytics_bytes / analytics_objects,
        "ratio": raw_bytes / analytics_bytes,
        "ratio_12_months_of_raw": 12 * raw_bytes / analytics_bytes,
        "compacted_bytes": compacted,
        "compacted_ratio": raw_bytes / compacted,
        "athena_usd_analytics": athena_cost(analytics_bytes),
        "athena_usd_raw": athena_cost(raw_bytes),
        "athena_usd_raw_12_months": athena_cost(12 * raw_bytes),
        "s3_get_usd_analytics": analytics_objects / 1000 * S3_GET_USD_PER_1000,
        "s3_get_usd_compacted": len(sizes) / 1000 * S3_GET_USD_PER_1000,
    }


def main() -> None:
    results = [measure(calls, out) for calls, out in SETS.items()]
    (RESULTS / "analytics-bytes.json").write_text(json.dumps(results, indent=2))
    print(
        "| calls/month | raw archive read | compact `calls` read | ratio | ratio, 12 months of raw "
        "| Athena $ raw | Athena $ compact | S3 GETs $ compact (objects) | compacted per day: bytes, ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['calls_per_month']:,} | {r['raw_bytes'] / MB:,.1f} MB ({r['raw_mean_bytes'] / 1024:.1f} KB/call) "
            f"| {r['analytics_bytes'] / MB:,.2f} MB ({r['analytics_mean_bytes']:.0f} B/call) | {r['ratio']:.0f}x "
            f"| {r['ratio_12_months_of_raw']:.0f}x | ${r['athena_usd_raw']:.6f} | ${r['athena_usd_analytics']:.6f} "
            f"| ${r['s3_get_usd_analytics']:.4f} ({r['calls_in_window']:,}) "
            f"| {r['compacted_bytes'] / MB:,.2f} MB, {r['compacted_ratio']:.0f}x |"
        )


if __name__ == "__main__":
    main()
