"""DuckDB local reports over 100,000 calls (one month at 100,000 calls a month).

Measures, on the data set of benchmarks/analytics_gen.py (the real writer's objects), twice: as the
product keeps it (``compacted``: 28 closed days in one object per table per day, the last 2 days
one object per call; see ``analytics_gen.compacted``) and with every day still one object per call
(``per_call``, as before compaction existed):
- reading the per-call files directly (what a cache-less query pays: why the cache exists);
- building the cache once, and refreshing it with nothing / one partition changed;
- every standard report on the warm cache (median of 5), the keyword search over all messages, and
  its tenth page of 100 hits (the console's paging: a keyset, so a deep page costs what the first does);
- one whole `callvault report` process, start to finish.

    .venv/bin/python benchmarks/analytics_duckdb.py
"""

import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from analytics_gen import compacted, generate

from services.analytics import duckdb_engine
from services.analytics.duckdb_engine import DuckDbEngine
from services.analytics.reports import REPORTS, ReportArgs, keyword_page, run_report
from services.analytics.result import QueryResult
from services.analytics.tables import OBJECT_SUFFIX

DATA = Path("benchmarks/results/analytics-100k")
RESULTS = Path("benchmarks/results/analytics-duckdb.json")
ARGS = ReportArgs(keyword="refund", phone="+16125550001")
RUNS = 5


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def measure(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    with DuckDbEngine.local(root) as direct:
        out["direct_files_calls_per_day_s"] = timed(lambda: run_report(direct, "calls-per-day", ARGS))
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "analytics-cache.duckdb"
        started = time.perf_counter()
        engine = DuckDbEngine.local(root, cache)
        out["cache_build_s"] = time.perf_counter() - started
        out["objects"] = sum(1 for _ in root.glob(f"*/*/*{OBJECT_SUFFIX}"))
        out["cache_bytes"] = cache.stat().st_size
        out["messages"] = engine.query("SELECT count(*) FROM messages").rows[0][0]
        out["refresh_nothing_changed_s"] = timed(lambda: engine.refresh(root))
        busiest = max((root / "calls").iterdir())  # the newest day: still open, one object per call
        for table in ("calls", "messages", "evaluations"):  # a redelivery into the newest day, every table
            one = next((root / table / busiest.name).glob(f"*{OBJECT_SUFFIX}"))
            again = one.with_name(".tmp-bench")  # a new file renamed over the key, as the product writes
            again.write_bytes(one.read_bytes())
            os.replace(again, one)
        out["refresh_one_day_changed_s"] = timed(lambda: engine.refresh(root))
        reports: dict[str, dict[str, object]] = {}
        for name in REPORTS:
            run_report(engine, name, ARGS)  # warm-up
            times = [timed(lambda n=name: run_report(engine, n, ARGS)) for _ in range(RUNS)]
            rows = run_report(engine, name, ARGS).rows
            reports[name] = {
                "median_s": statistics.median(times),
                "max_s": max(times),
                "rows": len(rows),
                "digest": hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()[:16],
            }
        out["reports"] = reports
        out["keyword_tenth_page"] = _tenth_keyword_page(engine)
        time.sleep(duckdb_engine.RACY_WINDOW_NS / 1e9)  # let the changed day settle, as it does in use
        engine.refresh(root)
        engine.close()
        env = {**os.environ, "CALLVAULT_DATA_DIR": scratch}
        (Path(scratch) / "analytics").symlink_to(root.resolve())
        command = [sys.executable, "-m", "services.cli", "report", "calls-per-day", "--format", "csv"]
        out["cli_process_calls_per_day_warm_s"] = timed(
            lambda: subprocess.run(command, env=env, check=True, capture_output=True)
        )
    out["max_rss_mb_so_far"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _tenth_keyword_page(engine: DuckDbEngine) -> dict[str, object]:
    """Page 10 of the console's keyword search (100 hits a page), reached by following the cursor."""

    def run(name: str, args: ReportArgs) -> QueryResult:
        return run_report(engine, name, args)

    args = ARGS
    for _page in range(9):
        page = keyword_page(run, args, 100)
        assert page.next is not None, "fewer than 10 pages of hits"
        args = ReportArgs(keyword=ARGS.keyword, after=page.next)
    keyword_page(run, args, 100)  # warm-up
    times = [timed(lambda: keyword_page(run, args, 100)) for _ in range(RUNS)]
    position = args.after.token() if args.after else None
    return {"median_s": statistics.median(times), "max_s": max(times), "after": position}


def main() -> None:
    generate(100_000, 30, DATA)
    compact_dir, compaction_s = compacted(DATA)
    out: dict[str, object] = {"calls": 100_000, "cpu_count": os.cpu_count(), "compaction_s": compaction_s}
    # Compacted first, so its peak RSS is its own (the per-call build's peak is the larger one).
    compact = measure(compact_dir / "analytics")
    per_call = measure(DATA / "analytics")
    out["compacted"], out["per_call"] = compact, per_call
    out["same_rows"] = {
        name: digest["digest"] == per_call["reports"][name]["digest"]  # type: ignore[index]
        for name, digest in compact["reports"].items()  # type: ignore[attr-defined]
    }
    RESULTS.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
