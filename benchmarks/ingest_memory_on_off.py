"""Ingest throughput and p99 with caller memory on versus off, in the same run.

    .venv/bin/python benchmarks/ingest_memory_on_off.py                 # 3 rounds x 8 s per mode
    .venv/bin/python benchmarks/ingest_memory_on_off.py --rounds 5 --seconds 10 --save

Each round starts the real ``callvault serve`` (``memory_server.serve``) once with memory off and
once with memory on (offline Mem0, worker thread running in the server process), in alternating
order, and drives it with signed ~20-turn transcription webhooks from this process at
``--concurrency`` keep-alive clients. With memory on, every webhook also records an outbox job, and
the worker shares the same 2 cores (it runs jobs in the gaps between webhooks, or after waiting
``memory_worker_yield_max_secs``). Reported: webhooks/s, p50, p99 per mode (median over rounds), and
the jobs the worker finished meanwhile and left waiting (drained after the burst, ~5 jobs/s).

Goal (issue #6): memory on within 10% of memory off, for throughput and for p99.
"""

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from memory_server import percentile, phone_of, serve, signed, synthetic_call  # noqa: E402

GOAL = 0.10
WEBHOOK = "/webhooks/elevenlabs"


def drive(url: str, seconds: float, concurrency: int, turns: int, tag: str) -> dict[str, Any]:
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0
    # Bodies are built before the clock starts: the load generator's CPU should go to sending.
    pool = [synthetic_call(f"conv_{tag}_{n:07d}", phone_of(n), turns, n) for n in range(400)]
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.perf_counter() < stop_at:
                n = next(counter)
                template = pool[n % len(pool)]
                body = template.replace(f"conv_{tag}_{n % len(pool):07d}".encode(), f"conv_{tag}_{n:07d}".encode())
                headers = signed(body)
                started = time.perf_counter()
                status = http.post(WEBHOOK, content=body, headers=headers).status_code
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    errors += status != 200

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "webhooks": len(latencies),
        "errors": errors,
        "rate": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def jobs(data_dir: Path, state: str) -> int:
    import sqlite3

    path = data_dir / "index.sqlite3"
    with sqlite3.connect(path) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM memory_outbox WHERE state = ?", (state,)).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 11), metavar="1-10")
    parser.add_argument("--seconds", type=float, default=8.0, help="per mode per round (2-60)")
    parser.add_argument("--concurrency", type=int, default=4, choices=range(1, 17), metavar="1-16")
    parser.add_argument("--turns", type=int, default=20, choices=range(1, 201), metavar="1-200")
    parser.add_argument("--save", action="store_true", help="write JSON to benchmarks/results/")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 2.0), 60.0)

    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="cv-mem-onoff-") as tmp:
        for round_no in range(args.rounds):
            order = ("off", "on") if round_no % 2 == 0 else ("on", "off")
            for mode in order:
                data_dir = Path(tmp) / f"{mode}-{round_no}"
                with serve(data_dir, memory=mode == "on", log=Path(tmp) / f"{mode}-{round_no}.log") as server:
                    # Warm-up: first requests pay lazy imports; with memory on, the store opens its shards
                    # in the background for ~2 s after start. Steady state is what is compared.
                    drive(server.url, 3.0, 1, args.turns, f"w{mode}{round_no}")
                    measured = drive(server.url, seconds, args.concurrency, args.turns, f"{mode}{round_no}")
                # Jobs finished while webhooks kept coming, and the backlog the worker drains afterwards.
                measured["jobs_done"] = jobs(data_dir, "done") if mode == "on" else None
                measured["jobs_waiting"] = jobs(data_dir, "pending") if mode == "on" else None
                results[mode].append(measured)
                print(
                    f"round {round_no + 1} {mode:>3}: {measured['rate']:6.1f} webhooks/s  "
                    f"p50 {measured['p50_ms']:6.1f} ms  p99 {measured['p99_ms']:6.1f} ms  "
                    f"errors {measured['errors']}  jobs done {measured['jobs_done']}, "
                    f"waiting {measured['jobs_waiting']}",
                    flush=True,
                )

    summary = {
        mode: {key: statistics.median(r[key] for r in rounds) for key in ("rate", "p50_ms", "p99_ms")}
        for mode, rounds in results.items()
    }
    rate_change = summary["on"]["rate"] / summary["off"]["rate"] - 1
    p99_change = summary["on"]["p99_ms"] / summary["off"]["p99_ms"] - 1
    print()
    print("| memory | webhooks/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for mode in ("off", "on"):
        s = summary[mode]
        print(f"| {mode} | {s['rate']:.1f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} |")
    print(
        f"\nthroughput {rate_change:+.1%}, p99 {p99_change:+.1%} with memory on "
        f"(goal: within {GOAL:.0%}) -> {'met' if rate_change >= -GOAL and p99_change <= GOAL else 'MISSED'}"
    )
    if args.save:
        out = ROOT / "benchmarks" / "results" / f"ingest-memory-on-off-{int(time.time())}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"args": vars(args), "rounds": results, "summary": summary}
        out.write_text(json.dumps(payload, indent=2))
        print(f"saved {out}")


if __name__ == "__main__":
    main()
