"""Search API latency over loopback HTTP against the real `callvault serve`, at two archive sizes.

    .venv/bin/python benchmarks/search_latency.py                       # 10,000 and 100,000 calls
    .venv/bin/python benchmarks/search_latency.py --calls 10000 --requests 500 --save --check

For each size: generate the archive once (kept under --data-root and reused: index rows in SQLite,
one small transcript object per call under ``archive/{phone}/{id}.json``, spread over ``calls/5``
phones and 50 agents, a year of start times), start ``python -m services.cli serve`` on it, then
time sequential keep-alive requests from this process:

- ``GET /calls?phone=...`` for random known numbers (typed as ``+1 ...`` with punctuation), and
- ``GET /calls/{id}`` for random known ids (two presigned-style links signed per answer),

p50/p99 each, after a warm-up. In the same run the same lookups are done the naive way, in process and
with no HTTP at all (so the comparison flatters the naive side): walk the archive's objects
(``FsBlobStore.list_keys``) to find the phone's transcripts, read and sort them; or walk until the
id's object turns up. Reported as ratio naive p50 / API p50.

Goals (docs/benchmarks-search.md): p99 < 20 ms for both routes at both sizes, the 100k p99 within
1.5x of the 10k p99. Generation writes rows in one transaction and objects without fsync: that is
setup, not what is measured.
"""

import argparse
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.sqlite_call_index import COLUMNS, SqliteCallIndex

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "cvk_benchmark-key-not-secret"
SIGNING_KEY = "csk_benchmark-signing-key-0123456789"
AGENTS = [f"agent_bench{n:02d}" for n in range(50)]
YEAR_START = 1_735_689_600  # 2025-01-01
GOAL_P99_MS = 20.0
GOAL_SCALING = 1.5
SEED = 20261124


@dataclass
class Lat:
    samples_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.samples_ms)
        return {
            "n": len(ordered),
            "p50_ms": round(statistics.median(ordered), 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "mean_ms": round(statistics.fmean(ordered), 3),
            "max_ms": round(ordered[-1], 3),
        }


def phone_of(n: int) -> str:
    return f"+1612{5_000_000 + n:07d}"


def generate(data_dir: Path, calls: int) -> tuple[list[str], list[str]]:
    """Rows and objects for ``calls`` calls; returns (phones, conversation ids). Reuses a finished dir."""
    manifest = data_dir / "bench-manifest.json"
    rng = random.Random(SEED + calls)
    phones = [phone_of(n) for n in range(max(1, calls // 5))]
    ids = [f"conv_bench{n:08d}" for n in range(calls)]
    if manifest.exists() and json.loads(manifest.read_text()).get("calls") == calls:
        return phones, ids
    data_dir.mkdir(parents=True, exist_ok=True)
    index_path = data_dir / "index.sqlite3"
    for stale in data_dir.glob("index.sqlite3*"):
        stale.unlink()
    SqliteCallIndex(index_path).close()  # the adapter's own schema and indexes
    archive = data_dir / "archive"
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for n, conversation_id in enumerate(ids):
        phone = phones[rng.randrange(len(phones))]
        prefix = phone.removeprefix("+")
        started_at = YEAR_START + rng.randrange(365 * 86400)
        document = orjson.dumps(
            {
                "conversation_id": conversation_id,
                "agent_id": AGENTS[n % len(AGENTS)],
                "status": "done",
                "metadata": {"start_time_unix_secs": started_at, "phone_call": {"external_number": phone}},
                "transcript": [{"role": "agent", "message": "Hello, how can I help?"}],
            }
        )
        key = f"{prefix}/{conversation_id}.json"
        path = archive / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(document)
        rows.append(
            {
                "conversation_id": conversation_id,
                "phone": phone,
                "archive_prefix": prefix,
                "agent_id": AGENTS[n % len(AGENTS)],
                "direction": "inbound" if n % 3 else "outbound",
                "started_at": started_at,
                "duration_s": 30 + n % 600,
                "message_count": 1,
                "transcript_key": key,
                "transcript_bytes": len(document),
                "status": "done" if n % 17 else "failed",
                "call_successful": ("success", "failure", "unknown")[n % 3],
                "language": "en",
                "event_at": started_at + 10,
                "ingested_at": started_at + 11,
                "updated_at": started_at + 11,
            }
        )
    with sqlite3.connect(index_path) as conn:
        columns = [c for c in COLUMNS if c in rows[0]]
        sql = (
            f"INSERT INTO calls ({', '.join(columns)}) "  # noqa: S608 - column names from the adapter
            f"VALUES ({', '.join(':' + c for c in columns)})"
        )
        conn.executemany(sql, rows)
        conn.execute("ANALYZE")
    manifest.write_text(json.dumps({"calls": calls, "phones": len(phones), "seconds": time.perf_counter() - started}))
    return phones, ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env |= {
        "CALLVAULT_API_KEYS": API_KEY,
        "CALLVAULT_SIGNING_KEY": SIGNING_KEY,
        "CALLVAULT_WEBHOOK_SECRET": "wsec_benchmark",
        "PYTHONPATH": str(ROOT),
    }
    log = (data_dir / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "--data-dir", str(data_dir), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"callvault serve exited: {(data_dir / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("callvault serve did not start")


def typed(phone: str) -> str:
    """How a person types it: ``+1 612-555-0142`` (encoded by httpx as ``%2B1%20612-555-0142``)."""
    digits = phone.removeprefix("+1")
    return f"+1 {digits[:3]}-{digits[3:6]}-{digits[6:]}"


def time_api(url: str, phones: list[str], ids: list[str], requests: int, warmup: int) -> dict[str, Any]:
    rng = random.Random(SEED)
    by_phone, by_id = Lat(), Lat()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        for i in range(warmup):
            client.get("/calls", params={"phone": typed(phones[i % len(phones)])})
            client.get(f"/calls/{ids[i % len(ids)]}")
        for _ in range(requests):
            phone = phones[rng.randrange(len(phones))]
            t0 = time.perf_counter()
            response = client.get("/calls", params={"phone": typed(phone)})
            by_phone.samples_ms.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200 and all(i["phone"] == phone for i in response.json()["items"])
            conversation_id = ids[rng.randrange(len(ids))]
            t0 = time.perf_counter()
            response = client.get(f"/calls/{conversation_id}")
            by_id.samples_ms.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200 and response.json()["links"]["transcript"]["url"]
    return {"phone": by_phone.summary(), "get": by_id.summary()}


def naive_by_phone(store: FsBlobStore, phone: str, limit: int = 25) -> list[dict[str, Any]]:
    prefix = phone.removeprefix("+") + "/"
    found = [orjson.loads(store.get_bytes(k)) for k in store.list_keys() if k.startswith(prefix)]
    found.sort(key=lambda d: (d["metadata"]["start_time_unix_secs"], d["conversation_id"]), reverse=True)
    return found[:limit]


def naive_by_id(store: FsBlobStore, conversation_id: str) -> dict[str, Any] | None:
    suffix = f"/{conversation_id}.json"
    for key in store.list_keys():
        if key.endswith(suffix):
            document: dict[str, Any] = orjson.loads(store.get_bytes(key))
            return document
    return None


def time_naive(data_dir: Path, phones: list[str], ids: list[str], runs: int) -> dict[str, Any]:
    rng = random.Random(SEED + 1)
    store = FsBlobStore(data_dir / "archive")
    by_phone, by_id = Lat(), Lat()
    for _ in range(runs):
        t0 = time.perf_counter()
        naive_by_phone(store, phones[rng.randrange(len(phones))])
        by_phone.samples_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        assert naive_by_id(store, ids[rng.randrange(len(ids))]) is not None
        by_id.samples_ms.append((time.perf_counter() - t0) * 1000)
    return {"phone": by_phone.summary(), "get": by_id.summary()}


def run_size(root: Path, calls: int, requests: int, warmup: int, naive_runs: int) -> dict[str, Any]:
    data_dir = root / f"search-{calls}"
    t0 = time.perf_counter()
    phones, ids = generate(data_dir, calls)
    setup_s = time.perf_counter() - t0
    process, url = start_server(data_dir)
    try:
        api = time_api(url, phones, ids, requests, warmup)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    naive = time_naive(data_dir, phones, ids, naive_runs)
    return {
        "calls": calls,
        "phones": len(phones),
        "setup_s": round(setup_s, 1),
        "api": api,
        "naive": naive,
        "ratio_naive_over_api_p50": {
            route: round(naive[route]["p50_ms"] / api[route]["p50_ms"], 1) for route in ("phone", "get")
        },
    }


def report(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| calls | route | API p50 ms | API p99 ms | naive p50 ms | naive / API (p50) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in results:
        for route, label in (("phone", "GET /calls?phone="), ("get", "GET /calls/{id}")):
            api, naive = r["api"][route], r["naive"][route]
            lines.append(
                f"| {r['calls']:,} | `{label}` | {api['p50_ms']:.2f} | {api['p99_ms']:.2f} | "
                f"{naive['p50_ms']:.1f} | {r['ratio_naive_over_api_p50'][route]:,.0f}x |"
            )
    return lines


def check(results: list[dict[str, Any]]) -> list[str]:
    missed = []
    for r in results:
        for route in ("phone", "get"):
            if r["api"][route]["p99_ms"] >= GOAL_P99_MS:
                missed.append(f"{r['calls']} calls {route}: p99 {r['api'][route]['p99_ms']} ms >= {GOAL_P99_MS}")
    by_size = {r["calls"]: r for r in results}
    if 10_000 in by_size and 100_000 in by_size:
        for route in ("phone", "get"):
            small, large = by_size[10_000]["api"][route]["p99_ms"], by_size[100_000]["api"][route]["p99_ms"]
            if large > GOAL_SCALING * small:
                missed.append(f"{route}: 100k p99 {large} ms > {GOAL_SCALING}x 10k p99 {small} ms")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, nargs="+", default=[10_000, 100_000], help="archive sizes [10000 100000]")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per route and size (50-20000)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per route first (0-5000) [200]")
    parser.add_argument("--naive-runs", type=int, default=10, help="naive lookups per route and size (1-200) [10]")
    parser.add_argument("--data-root", type=Path, default=ROOT / "benchmarks" / "results", help="generated data")
    parser.add_argument("--save", action="store_true", help="also write JSON to benchmarks/results/")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    if not 50 <= args.requests <= 20_000 or not 0 <= args.warmup <= 5000 or not 1 <= args.naive_runs <= 200:
        parser.error("--requests, --warmup or --naive-runs out of bounds")
    if any(not 100 <= c <= 1_000_000 for c in args.calls):
        parser.error("--calls must be between 100 and 1,000,000")
    results = [run_size(args.data_root, c, args.requests, args.warmup, args.naive_runs) for c in args.calls]
    table = report(results)
    print("\n".join(table))
    print(f"\n{platform.python_version()} on {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    missed = check(results)
    for line in missed:
        print("goal missed:", line)
    if args.save:
        out = ROOT / "benchmarks" / "results" / f"search-latency-{int(time.time())}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"results": results, "table": table, "missed": missed}, indent=2))
        print(f"saved {out}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
