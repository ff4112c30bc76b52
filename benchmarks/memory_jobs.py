"""Memory jobs with the offline back end: jobs/s, and the time from webhook to searchable memory.

    .venv/bin/python benchmarks/memory_jobs.py                     # 40 jobs, then 20 webhooks
    .venv/bin/python benchmarks/memory_jobs.py --jobs 100 --webhooks 50 --save

1. Throughput, in process: ``--jobs`` calls of ``--turns`` turns are archived (local adapters,
   outbox hook), then one ``MemoryWorker`` drains the outbox into the real offline Mem0 store
   (Qdrant on disk, int8 ONNX MiniLM on one thread). Reported: jobs/s, memories/s, per-job p50/p99,
   and search latency over the filled store.
2. Webhook to searchable, over HTTP: the real ``callvault serve`` (``memory_server.serve``, memory
   on) gets one signed webhook at a time, each with a phrase no other call has; the time until
   ``GET /callers/{phone}/memories?q=<phrase>`` returns that call's memory is measured (polled every
   10 ms). Includes the worker's yield to ingest (50 ms of quiet after a webhook).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from memory_server import API_KEY, percentile, phone_of, serve, signed, synthetic_call  # noqa: E402


def throughput(data_dir: Path, jobs: int, turns: int) -> dict[str, Any]:
    from services.core.adapters.fs_blob_store import FsBlobStore
    from services.core.adapters.sqlite_call_index import SqliteCallIndex
    from services.core.domain import payload
    from services.ingest.service import Archiver
    from services.memory.jobs import JobProcessor, MemoryJobs, NullStatusSink
    from services.memory.mem0_oss import Mem0OssMemoryStore
    from services.memory.outbox import SqliteOutbox
    from services.memory.worker import MemoryWorker

    started = time.perf_counter()
    store = Mem0OssMemoryStore(data_dir / "memory")
    open_secs = time.perf_counter() - started
    started = time.perf_counter()
    store.warm()  # open all 64 shards now, as the server does in the background at start
    warm_secs = time.perf_counter() - started
    index, blobs = SqliteCallIndex(data_dir / "index.sqlite3"), FsBlobStore(data_dir / "archive")
    outbox = SqliteOutbox(data_dir / "index.sqlite3")
    archiver = Archiver(blobs, index, time.time, memory_jobs=MemoryJobs(outbox, NullStatusSink(), time.time))
    for n in range(jobs):
        event = payload.parse_envelope(synthetic_call(f"conv_tp_{n:06d}", phone_of(n % 50), turns, n))
        archiver.archive(event)
    worker = MemoryWorker(outbox, JobProcessor(blobs, index, store), NullStatusSink())
    per_job: list[float] = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        if not worker.run_once():
            break
        per_job.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    memories = sum(len(store.list(phone_of(p), None, 10_000)) for p in range(min(jobs, 50)))
    searches: list[float] = []
    for n in range(200):
        t0 = time.perf_counter()
        store.search(phone_of(n % 50), "when is my appointment with the doctor", None, 5)
        searches.append(time.perf_counter() - t0)
    init_lists: list[float] = []
    for n in range(200):
        t0 = time.perf_counter()
        store.list(phone_of(n % 50), "factual", 20)
        init_lists.append(time.perf_counter() - t0)
    store.close()
    return {
        "jobs": len(per_job),
        "turns_per_call": turns,
        "memories": memories,
        "store_open_s": round(open_secs, 2),
        "shards_warm_s": round(warm_secs, 2),
        "jobs_per_s": len(per_job) / wall,
        "memories_per_s": memories / wall,
        "job_p50_ms": percentile(per_job, 50) * 1000,
        "job_p99_ms": percentile(per_job, 99) * 1000,
        "search_p50_ms": percentile(searches, 50) * 1000,
        "search_p99_ms": percentile(searches, 99) * 1000,
        "factual_list_p99_ms": percentile(init_lists, 99) * 1000,
    }


def webhook_to_searchable(data_dir: Path, webhooks: int, turns: int, log: Path) -> dict[str, Any]:
    latencies: list[float] = []
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with serve(data_dir, memory=True, log=log) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        time.sleep(3)  # the store opens its 64 shards in the background for ~2 s after start: steady state
        for n in range(webhooks + 1):  # the first one warms the worker (first embedding, first Qdrant write)
            phrase = f"my parrot is called Zorblax number {n} and he sings opera"
            phone = phone_of(1000 + n)
            body = synthetic_call(f"conv_ws_{n:06d}", phone, turns, n, unique=phrase)
            started = time.perf_counter()
            assert http.post("/webhooks/elevenlabs", content=body, headers=signed(body)).status_code == 200
            deadline = started + 30
            while True:
                found = http.get(f"/callers/{phone}/memories", params={"q": phrase, "limit": 3}, headers=auth)
                items = found.json()["items"] if found.status_code == 200 else []
                if any(i["conversation_id"] == f"conv_ws_{n:06d}" and i["text"] == phrase for i in items):
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"webhook {n} never became searchable")
                time.sleep(0.01)
            if n:
                latencies.append(time.perf_counter() - started)
    return {
        "webhooks": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "mean_ms": statistics.mean(latencies) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=40, choices=range(1, 1001), metavar="1-1000")
    parser.add_argument("--webhooks", type=int, default=20, choices=range(1, 201), metavar="1-200")
    parser.add_argument("--turns", type=int, default=20, choices=range(1, 201), metavar="1-200")
    parser.add_argument("--save", action="store_true", help="write JSON to benchmarks/results/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cv-mem-jobs-") as tmp:
        tp = throughput(Path(tmp) / "throughput", args.jobs, args.turns)
        print(
            f"throughput: {tp['jobs']} jobs ({tp['memories']} memories) at {tp['jobs_per_s']:.2f} jobs/s = "
            f"{tp['memories_per_s']:.0f} memories/s; job p50 {tp['job_p50_ms']:.0f} ms, p99 {tp['job_p99_ms']:.0f} ms; "
            f"search p50 {tp['search_p50_ms']:.1f} ms, p99 {tp['search_p99_ms']:.1f} ms; "
            f"store opened in {tp['store_open_s']} s, shards in {tp['shards_warm_s']} s",
            flush=True,
        )
        ws = webhook_to_searchable(Path(tmp) / "served", args.webhooks, args.turns, Path(tmp) / "server.log")
        print(
            f"webhook -> searchable: p50 {ws['p50_ms']:.0f} ms, p99 {ws['p99_ms']:.0f} ms, "
            f"max {ws['max_ms']:.0f} ms over {ws['webhooks']} webhooks"
        )
    if args.save:
        out = ROOT / "benchmarks" / "results" / f"memory-jobs-{int(time.time())}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"args": vars(args), "throughput": tp, "webhook_to_searchable": ws}, indent=2))
        print(f"saved {out}")


if __name__ == "__main__":
    main()
