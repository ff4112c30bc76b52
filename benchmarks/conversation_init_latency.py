"""Latency of the ElevenLabs conversation-initiation webhook over loopback.

    .venv/bin/python benchmarks/conversation_init_latency.py                  # 100 callers, 1000 requests
    .venv/bin/python benchmarks/conversation_init_latency.py --callers 300 --requests 3000 --save

1. Fills a data dir: ``--callers`` callers with ``--calls`` archived calls each (local adapters) and
   their memories in the offline Mem0 store (a real worker drains the outbox).
2. Starts the real ``callvault serve`` (``memory_server.serve``, memory on) and sends
   ``POST /webhooks/elevenlabs/conversation-init`` one request at a time over a keep-alive connection,
   as ElevenLabs would while the phone rings: 80% returning callers, 20% numbers never seen.
3. Again while webhooks arrive in the background (``--ingest-rate`` per second), so the memory
   worker is embedding and writing at the same time as the lookups.

Reported: p50, p95, p99 and max per phase. Goal (issue #6): p99 < 50 ms.
"""

import argparse
import json
import random
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
from memory_server import AGENT_SECRET, percentile, phone_of, serve, signed, synthetic_call  # noqa: E402

GOAL_P99_MS = 50.0
INIT = "/webhooks/elevenlabs/conversation-init"


def fill(data_dir: Path, callers: int, calls: int, turns: int) -> float:
    from services.core.adapters.fs_blob_store import FsBlobStore
    from services.core.adapters.sqlite_call_index import SqliteCallIndex
    from services.core.domain import payload
    from services.ingest.service import Archiver
    from services.memory.jobs import JobProcessor, MemoryJobs, NullStatusSink
    from services.memory.mem0_oss import Mem0OssMemoryStore
    from services.memory.outbox import SqliteOutbox
    from services.memory.worker import MemoryWorker

    started = time.perf_counter()
    index, blobs = SqliteCallIndex(data_dir / "index.sqlite3"), FsBlobStore(data_dir / "archive")
    outbox = SqliteOutbox(data_dir / "index.sqlite3")
    archiver = Archiver(blobs, index, time.time, memory_jobs=MemoryJobs(outbox, NullStatusSink(), time.time))
    for caller in range(callers):
        for call in range(calls):
            n = caller * calls + call
            archiver.archive(payload.parse_envelope(synthetic_call(f"conv_ci_{n:06d}", phone_of(caller), turns, n)))
    store = Mem0OssMemoryStore(data_dir / "memory")
    worker = MemoryWorker(outbox, JobProcessor(blobs, index, store), NullStatusSink())
    while worker.run_once():
        pass
    store.close()
    return time.perf_counter() - started


def measure(url: str, requests: int, callers: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    latencies: list[float] = []
    named = 0
    with httpx.Client(base_url=url, timeout=10, headers={"X-CallVault-Secret": AGENT_SECRET}) as http:
        for _ in range(20):  # warm the connection and the route
            http.post(INIT, json={"caller_id": phone_of(0)})
        for n in range(requests):
            known = rng.random() < 0.8
            caller = phone_of(rng.randrange(callers)) if known else f"+1415555{rng.randrange(10000):04d}"
            body = {"caller_id": caller, "agent_id": "agent_x", "called_number": "+16125550100", "call_sid": f"CA{n}"}
            started = time.perf_counter()
            response = http.post(INIT, json=body)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            named += bool(response.json()["dynamic_variables"]["caller_name"])
    return {
        "requests": len(latencies),
        "with_name": named,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


def background_ingest(url: str, rate: float, turns: int, stop: threading.Event) -> int:
    sent = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        while not stop.is_set():
            body = synthetic_call(f"conv_bg_{sent:06d}", phone_of(5000 + sent), turns, sent)
            http.post("/webhooks/elevenlabs", content=body, headers=signed(body))
            sent += 1
            stop.wait(1 / rate)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=100, choices=range(1, 10_001), metavar="1-10000")
    parser.add_argument("--calls", type=int, default=3, choices=range(1, 51), metavar="1-50")
    parser.add_argument("--turns", type=int, default=4, choices=range(1, 101), metavar="1-100")
    parser.add_argument("--requests", type=int, default=1000, choices=range(10, 100_001), metavar="10-100000")
    parser.add_argument("--ingest-rate", type=float, default=5.0, help="webhooks/s during phase 2 (0 skips it)")
    parser.add_argument("--save", action="store_true", help="write JSON to benchmarks/results/")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cv-mem-init-") as tmp:
        data_dir = Path(tmp) / "data"
        secs = fill(data_dir, args.callers, args.calls, args.turns)
        print(f"filled {args.callers} callers x {args.calls} calls in {secs:.1f} s", flush=True)
        with serve(data_dir, memory=True, log=Path(tmp) / "server.log") as server:
            results["idle"] = measure(server.url, args.requests, args.callers, seed=1)
            if args.ingest_rate > 0:
                stop = threading.Event()
                sent: list[int] = []
                feeder = threading.Thread(
                    target=lambda: sent.append(background_ingest(server.url, args.ingest_rate, 20, stop))
                )
                feeder.start()
                try:
                    results["while_ingesting"] = measure(server.url, args.requests, args.callers, seed=2)
                finally:
                    stop.set()
                    feeder.join()
                results["while_ingesting"]["background_webhooks"] = sent[0] if sent else 0
    print("\n| phase | requests | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    for phase, r in results.items():
        cells = [phase, r["requests"], *(f"{r[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms"))]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    worst = max(r["p99_ms"] for r in results.values())
    print(f"\nworst p99 {worst:.1f} ms (goal < {GOAL_P99_MS:.0f} ms) -> {'met' if worst < GOAL_P99_MS else 'MISSED'}")
    if args.save:
        out = ROOT / "benchmarks" / "results" / f"conversation-init-{int(time.time())}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
        print(f"saved {out}")


if __name__ == "__main__":
    main()
