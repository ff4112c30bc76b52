"""Sustained webhook ingest of the real `callvault serve`, against the floor of what any receiver must do.

    .venv/bin/python benchmarks/ingest_throughput.py                  # 15 s at concurrency 4
    .venv/bin/python benchmarks/ingest_throughput.py --seconds 5 --save

What it does, in one run:
1. builds a ~180 KB transcription webhook (the shipped fixture plus ~160 plausible turns, the size of
   a real 18-minute call); every request gets a fresh conversation_id, so every request is a new write;
2. measures the FLOOR in this process: HMAC-SHA256 verify + orjson parse + durable write of the same
   bytes (temp file, fsync, rename) in a loop, on the same filesystem as the server's data dir
   (before and after the concurrency-1 phase; the ratio uses the mean of the two);
   and the same payloads through the use case in-process (WebhookReceiver + local adapters, no HTTP);
3. starts `callvault serve` (tests.support.serve_archive) on 127.0.0.1 with a temp data dir;
4. drives it from a second process (spawned) with keep-alive httpx clients: first at concurrency 1
   (per-webhook wall time, compared with the floor), then at --concurrency (webhooks/s, p50, p99);
5. prints a markdown table and, with --save, writes JSON to benchmarks/results/ (gitignored).

Goals (from the issue): >= 100 webhooks/s on 2 cores, p99 < 100 ms, per-webhook cost <= 3x the floor.
The load generator shares the machine with the server: its CPU is reported so the numbers can be read.
"""

import argparse
import concurrent.futures
import contextlib
import itertools
import json
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from services.core.domain import signing  # noqa: E402
from tests.support import SECRET, TRANSCRIPTION, fixture_json, serve_archive  # noqa: E402

GOAL_RATE = 100.0  # webhooks/s
GOAL_P99_MS = 100.0
GOAL_RATIO = 3.0
ID_PLACEHOLDER = "conv_bench_" + "X" * 20  # same length as every id we substitute
WEBHOOK = "/webhooks/elevenlabs"
WARMUP_PER_CONNECTION = 2  # untimed requests per connection before each phase (they are stored too)

_USER_LINES = [
    "Hi, I'm calling about the order I placed last Tuesday, it still hasn't arrived.",
    "Yes, the order number should be in the confirmation email, give me a second to find it.",
    "It's for the standing desk, the large one in walnut.",
    "No, nobody called me about a delay, that's why I'm a bit confused.",
    "Could you check whether it was sent to my old address? I moved in March.",
    "That would be great, thank you. Can you also tell me when it is expected now?",
    "Okay. And if it doesn't come by Friday, what are my options?",
    "I'd rather keep the order than get a refund, honestly, I've been waiting for this one.",
    "Sure, the email is fine. Can you send the tracking link there as well?",
    "Hmm, I'm not sure. Let me think about it and call back tomorrow if that's alright.",
    "Right, I understand. The delivery window in the afternoon works better for me.",
    "Thanks, that's really helpful. Sorry, one more question about the warranty.",
]
_AGENT_LINES = [
    "I'm sorry to hear that. Let me pull up your order so we can see exactly where it is.",
    "Thank you. I can see the order here: it left our warehouse on Thursday and is with the carrier now.",
    "It looks like the carrier scanned it at the regional depot yesterday evening, so it is moving again.",
    "I can confirm the shipping address on the order is the new one, so that part is fine.",
    "The updated estimate from the carrier is Thursday, between noon and six in the evening.",
    "If it has not arrived by Friday, I can either send a replacement right away or refund the shipping.",
    "Of course. I have just sent the tracking link to the email address on your account.",
    "The desk comes with a five-year warranty on the frame and two years on the motor and controls.",
    "You're welcome. Is there anything else I can help you with while I have your order open?",
    "Absolutely, I have added a note so whoever picks up next time can see what we discussed today.",
    "Let me check that with the carrier's system; it may take a few seconds, thank you for waiting.",
    "I understand the frustration, and I'm sorry the delay was not communicated to you earlier.",
]


# --- the payload ------------------------------------------------------------------------------------


def _turn(rng: random.Random, index: int, at: int) -> dict[str, Any]:
    agent = index % 2 == 0
    lines = _AGENT_LINES if agent else _USER_LINES
    message = " ".join(rng.sample(lines, rng.randint(2, 4)))
    turn: dict[str, Any] = {
        "role": "agent" if agent else "user",
        "message": message,
        "tool_calls": [],
        "tool_results": [],
        "feedback": None,
        "llm_override": None,
        "time_in_call_secs": at,
        "conversation_turn_metrics": None,
        "rag_retrieval_info": None,
        "llm_usage": None,
        "interrupted": rng.random() < 0.1,
        "original_message": message if agent else None,
        "source_medium": "audio",
        "agent_metadata": {"agent_id": "agent_01jxbrc1trfxev5sdp5xk4ra67", "workflow_node_id": None},
        "multivoice_message": None,
    }
    if not agent:
        turn["conversation_turn_metrics"] = {
            "metrics": {"convai_asr_trailing_service_latency": {"elapsed_time": round(rng.uniform(0.05, 0.3), 6)}}
        }
    if agent:
        turn["conversation_turn_metrics"] = {
            "metrics": {
                "convai_llm_service_ttfb": {"elapsed_time": round(rng.uniform(0.2, 0.9), 6)},
                "convai_llm_service_ttf_sentence": {"elapsed_time": round(rng.uniform(0.4, 1.4), 6)},
                "convai_tts_service_ttfb": {"elapsed_time": round(rng.uniform(0.1, 0.4), 6)},
            }
        }
        turn["llm_usage"] = {
            "model_usage": {
                "gemini-2.0-flash": {
                    "input": {"tokens": rng.randint(1500, 9000), "price": round(rng.uniform(1e-4, 9e-4), 8)},
                    "input_cache_read": {"tokens": 0, "price": 0.0},
                    "input_cache_write": {"tokens": 0, "price": 0.0},
                    "output_total": {"tokens": rng.randint(20, 120), "price": round(rng.uniform(1e-5, 9e-5), 8)},
                }
            }
        }
        if rng.random() < 0.15:
            call_id = f"toolu_{rng.getrandbits(64):016x}"
            turn["tool_calls"] = [
                {
                    "type": "webhook",
                    "request_id": call_id,
                    "tool_name": "lookup_order",
                    "params_as_json": json.dumps({"order_id": f"A{rng.randint(100000, 999999)}"}),
                    "tool_has_been_called": True,
                    "tool_details": {"type": "webhook", "method": "GET", "url": "https://api.example.com/orders"},
                }
            ]
            turn["tool_results"] = [
                {
                    "request_id": call_id,
                    "tool_name": "lookup_order",
                    "result_value": json.dumps({"status": "in_transit", "eta": "Thursday 12:00-18:00"}),
                    "is_error": False,
                    "tool_has_been_called": True,
                    "tool_latency_secs": round(rng.uniform(0.1, 0.8), 6),
                    "type": "webhook",
                }
            ]
    return turn


def build_payload(target_kb: int, seed: int = 7) -> tuple[bytes, int]:
    """A transcription envelope of about ``target_kb`` KB, with ``ID_PLACEHOLDER`` as its conversation id."""
    document = fixture_json(TRANSCRIPTION)
    data = document["data"]
    data["conversation_id"] = ID_PLACEHOLDER
    data["conversation_initiation_client_data"]["dynamic_variables"]["system__conversation_id"] = ID_PLACEHOLDER
    rng = random.Random(seed)
    transcript: list[dict[str, Any]] = data["transcript"]
    at = 3
    while len(orjson.dumps(document)) < target_kb * 1000:
        transcript.append(_turn(rng, len(transcript), at))
        at += rng.randint(3, 12)
    data["metadata"]["call_duration_secs"] = at
    body = orjson.dumps(document)
    assert body.count(ID_PLACEHOLDER.encode()) == 2
    return body, len(transcript)


def with_id(template: bytes, conversation_id: str) -> bytes:
    return template.replace(ID_PLACEHOLDER.encode(), conversation_id.encode())


def unique_id(tag: str, n: int) -> str:
    cid = f"conv_bench_{tag}{n:0{len(ID_PLACEHOLDER) - 11 - len(tag)}d}"
    assert len(cid) == len(ID_PLACEHOLDER)
    return cid


# --- the floor ----------------------------------------------------------------------------------------


def measure_floor(template: bytes, directory: Path, seconds: float, max_iterations: int) -> dict[str, float]:
    """Verify + parse + durable write (temp file, fsync, rename) of the same bytes, per payload."""
    directory.mkdir(parents=True, exist_ok=True)
    bodies = [with_id(template, unique_id("floor", i)) for i in range(min(max_iterations, 64))]
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    for i in range(max_iterations):
        body = bodies[i % len(bodies)]
        header = signing.sign(body, SECRET, int(time.time()))  # the sender's cost, outside the timing
        started = time.perf_counter()
        signing.verify(body, header, [SECRET], time.time())
        orjson.loads(body)
        final = directory / f"{i}.json"
        tmp = directory / f".tmp-{i}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        timings.append(time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    return {
        "iterations": len(timings),
        "mean_ms": statistics.fmean(timings) * 1000,
        "p50_ms": statistics.median(timings) * 1000,
    }


def measure_use_case(template: bytes, data_dir: Path, seconds: float, max_iterations: int) -> dict[str, float]:
    """The same payloads through ``WebhookReceiver.receive`` with the local adapters, in-process, no HTTP.

    Splits the HTTP path's cost into "what the use case and its storage do" and "HTTP + client".
    """
    from services.core.config import Settings
    from services.core.wiring import build_storage
    from services.ingest.service import Archiver, WebhookReceiver

    settings = Settings(data_dir=data_dir)
    storage = build_storage(settings)
    receiver = WebhookReceiver(Archiver(storage.blobs, storage.index, time.time), [SECRET], settings.max_body_bytes)
    timings: list[float] = []
    cpu = 0.0
    deadline = time.perf_counter() + seconds
    for i in range(max_iterations):
        body = with_id(template, unique_id("inproc", i))
        header = signing.sign(body, SECRET, int(time.time()))
        cpu_started, started = time.process_time(), time.perf_counter()
        outcome = receiver.receive(body, header).outcome
        timings.append(time.perf_counter() - started)
        cpu += time.process_time() - cpu_started
        assert outcome == "stored", outcome
        if time.perf_counter() > deadline:
            break
    return {
        "iterations": len(timings),
        "mean_ms": statistics.fmean(timings) * 1000,
        "p50_ms": statistics.median(timings) * 1000,
        "cpu_ms": cpu * 1000 / len(timings),
    }


# --- the load (runs in a second process) -------------------------------------------------------------


@dataclass
class LoadResult:
    concurrency: int
    sent: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0


def drive(url: str, template: bytes, tag: str, concurrency: int, seconds: float, max_requests: int) -> dict[str, Any]:
    """``concurrency`` threads, one keep-alive connection each, until ``seconds`` or ``max_requests``.

    Returns a plain dict: it crosses the process boundary.
    """
    numbers = itertools.count()
    lock = threading.Lock()
    result = LoadResult(concurrency)
    statuses: dict[int, int] = {}
    start = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def send(client: httpx.Client) -> tuple[int, float]:
        n = next(numbers)
        body = with_id(template, unique_id(tag, n))
        headers = {signing.HEADER: signing.sign(body, SECRET, int(time.time())), "content-type": "application/json"}
        began = time.perf_counter()
        status = client.post(url + WEBHOOK, content=body, headers=headers).status_code
        return status, (time.perf_counter() - began) * 1000

    def worker() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(timeout=30, limits=limits) as client:
            for _ in range(WARMUP_PER_CONNECTION):  # connection, server thread pool, SQLite connection
                send(client)
            start.wait(timeout=60)
            while time.perf_counter() < window["deadline"]:
                with lock:
                    if result.sent >= max_requests:
                        return
                    result.sent += 1
                status, ms = send(client)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        result.latencies_ms.append(ms)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_before = time.process_time()
    window["deadline"] = time.perf_counter() + 3600  # set for real once every worker is warm
    start.wait(timeout=60)
    began = time.perf_counter()
    window["deadline"] = began + seconds
    for thread in threads:
        thread.join(timeout=seconds + 60)
    result.elapsed_s = time.perf_counter() - began
    result.client_cpu_s = time.process_time() - cpu_before
    result.ok = statuses.get(200, 0)
    result.statuses = {str(k): v for k, v in sorted(statuses.items())}
    return asdict(result)


def run_load(url: str, template: bytes, tag: str, concurrency: int, seconds: float, max_requests: int) -> LoadResult:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(drive, url, template, tag, concurrency, seconds, max_requests)
        return LoadResult(**future.result(timeout=seconds + 120))


# --- reporting ---------------------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def server_durations_ms(log_path: Path, start: int, end: int) -> list[float]:
    """``duration_ms`` of the server's own per-request log lines for the webhook route, in bytes [start, end).

    The app's request middleware times each request from ASGI entry to the last response byte: the
    server's share of the wall time, without the client and the socket. Empty if the log has no such lines.
    """
    found: list[float] = []
    with log_path.open("rb") as log:
        log.seek(start)
        for line in log.read(end - start).splitlines():
            if b'"duration_ms"' not in line or WEBHOOK.encode() not in line:
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("route") == WEBHOOK and isinstance(record.get("duration_ms"), int | float):
                    found.append(float(record["duration_ms"]))
    return found


def summarise(load: LoadResult, server_cpu_s: float | None, server_ms: list[float]) -> dict[str, Any]:
    rate = load.ok / load.elapsed_s if load.elapsed_s else 0.0
    return {
        "concurrency": load.concurrency,
        "requests": load.sent,
        "ok": load.ok,
        "statuses": load.statuses,
        "seconds": round(load.elapsed_s, 2),
        "webhooks_per_s": round(rate, 1),
        "wall_ms_per_webhook": round(1000 * load.elapsed_s / load.ok, 2) if load.ok else None,
        "p50_ms": round(percentile(load.latencies_ms, 0.50), 2),
        "p99_ms": round(percentile(load.latencies_ms, 0.99), 2),
        "max_ms": round(max(load.latencies_ms, default=float("nan")), 2),
        "server_cpu_ms_per_webhook": round(1000 * server_cpu_s / load.ok, 2) if server_cpu_s and load.ok else None,
        "client_cpu_ms_per_webhook": round(1000 * load.client_cpu_s / load.ok, 2) if load.ok else None,
        "server_app_p50_ms": round(percentile(server_ms, 0.50), 2) if server_ms else None,
        "server_app_mean_ms": round(statistics.fmean(server_ms), 2) if server_ms else None,
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0, help="load at --concurrency (1-120 s) [15]")
    parser.add_argument("--seconds-c1", type=float, default=5.0, help="load at concurrency 1 (1-60 s) [5]")
    parser.add_argument("--concurrency", type=int, default=4, help="keep-alive connections (1-16) [4]")
    parser.add_argument("--requests", type=int, default=5000, help="cap on requests per phase (1-20000) [5000]")
    parser.add_argument("--payload-kb", type=int, default=180, help="transcription body size (1-1024 KB) [180]")
    parser.add_argument("--floor-seconds", type=float, default=3.0, help="floor loop time (0.5-30 s) [3]")
    parser.add_argument("--data-root", type=Path, default=None, help="where the temp data dir goes [system temp]")
    parser.add_argument("--save", action="store_true", help="also write JSON to benchmarks/results/")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    bounds = {
        "seconds": (1, 120),
        "seconds_c1": (1, 60),
        "concurrency": (1, 16),
        "requests": (1, 20000),
        "payload_kb": (1, 1024),
        "floor_seconds": (0.5, 30),
    }
    for name, (low, high) in bounds.items():
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be between {low} and {high}")

    template, turns = build_payload(args.payload_kb)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="callvault-bench-", dir=args.data_root) as tmp:
        floor_before = measure_floor(template, Path(tmp) / "floor1", args.floor_seconds, args.requests)
        use_case = measure_use_case(template, Path(tmp) / "inproc", args.floor_seconds, max_iterations=args.requests)
        with serve_archive(Path(tmp) / "data", env={"CALLVAULT_LOG_LEVEL": "INFO"}) as served:
            pid = served.process.pid
            cpu0, log0 = process_cpu_s(pid), served.log_path.stat().st_size
            serial = run_load(served.url, template, "s", 1, args.seconds_c1, args.requests)
            cpu1, log1 = process_cpu_s(pid), served.log_path.stat().st_size
            # The floor again right after the concurrency-1 phase (server idle): the machine drifts
            # (shared cores, write-back of what the load wrote), so bracket the phase the ratio uses.
            floor_after = measure_floor(template, Path(tmp) / "floor2", args.floor_seconds, args.requests)
            loaded = run_load(served.url, template, "c", args.concurrency, args.seconds, args.requests)
            cpu2 = process_cpu_s(pid)
            log2 = served.log_path.stat().st_size
            server_c1 = server_durations_ms(served.log_path, log0, log1)
            server_cn = server_durations_ms(served.log_path, log1, log2)
            stored = sum(1 for _ in (Path(tmp) / "data" / "archive").rglob("*.json"))
    floor = {
        "iterations": floor_before["iterations"] + floor_after["iterations"],
        "mean_ms": (floor_before["mean_ms"] + floor_after["mean_ms"]) / 2,
        "p50_ms": (floor_before["p50_ms"] + floor_after["p50_ms"]) / 2,
    }
    load_after = os.getloadavg()

    c1 = summarise(serial, cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None, server_c1)
    cn = summarise(loaded, cpu2 - cpu1 if cpu1 is not None and cpu2 is not None else None, server_cn)
    ratio = c1["wall_ms_per_webhook"] / floor["mean_ms"] if c1["wall_ms_per_webhook"] else float("inf")
    ratio_p50 = c1["p50_ms"] / floor["p50_ms"]
    goals = {
        "rate": cn["webhooks_per_s"] >= GOAL_RATE,
        "p99": cn["p99_ms"] < GOAL_P99_MS,
        "ratio": ratio <= GOAL_RATIO,
    }
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
        },
        "payload": {"bytes": len(template), "turns": turns},
        "floor": {k: round(v, 3) for k, v in floor.items()},
        "floor_before": {k: round(v, 3) for k, v in floor_before.items()},
        "floor_after": {k: round(v, 3) for k, v in floor_after.items()},
        "use_case_in_process": {k: round(v, 3) for k, v in use_case.items()},
        "concurrency_1": c1,
        "concurrency_n": cn,
        "ratio_c1_to_floor": round(ratio, 2),
        "ratio_c1_p50_to_floor_p50": round(ratio_p50, 2),
        "goals_met": goals,
        "objects_written": stored,
    }

    print(f"\n## ingest throughput ({report['date']})\n")
    print(f"payload {len(template) / 1000:.0f} KB ({turns} turns), unique conversation_id per request; ", end="")
    print(f"{os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; ", end="")
    print(f"load avg before {load_before[0]:.2f}, after {load_after[0]:.2f}\n")
    print(
        "| phase | requests | non-200 | webhooks/s | wall ms/webhook | p50 ms | p99 ms | max ms "
        "| CPU ms/webhook (server; in-process) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in (c1, cn):
        bad = row["requests"] - row["ok"]
        print(
            f"| concurrency {row['concurrency']} | {row['requests']} | {bad} | {row['webhooks_per_s']} "
            f"| {row['wall_ms_per_webhook']} | {row['p50_ms']} | {row['p99_ms']} | {row['max_ms']} "
            f"| {row['server_cpu_ms_per_webhook']} |"
        )
    print(
        f"| floor (verify+parse+fsync write, in-process; mean of before/after "
        f"{floor_before['mean_ms']:.2f}/{floor_after['mean_ms']:.2f} ms) | {floor['iterations']} | - | "
        f"{1000 / floor['mean_ms']:.1f} | {floor['mean_ms']:.2f} | {floor['p50_ms']:.2f} | - | - | - |"
    )
    print(
        f"| use case in-process (receive + local adapters, no HTTP) | {use_case['iterations']} | - | "
        f"{1000 / use_case['mean_ms']:.1f} | {use_case['mean_ms']:.2f} | {use_case['p50_ms']:.2f} | - | - "
        f"| {use_case['cpu_ms']:.2f} |"
    )
    print("\n| goal | target | measured | |")
    print("|---|---|---|---|")
    rate_row = f"{cn['webhooks_per_s']} at concurrency {cn['concurrency']}"
    print(f"| sustained rate | >= {GOAL_RATE:.0f} webhooks/s | {rate_row} | {verdict(goals['rate'])} |")
    print(f"| p99 latency | < {GOAL_P99_MS:.0f} ms | {cn['p99_ms']} ms | {verdict(goals['p99'])} |")
    ratio_text = f"{ratio:.2f}x (p50 to p50: {ratio_p50:.2f}x)"
    print(f"| cost vs floor (c=1) | <= {GOAL_RATIO:.0f}x | {ratio_text} | {verdict(goals['ratio'])} |")
    print(f"\nclient (load generator) CPU: {cn['client_cpu_ms_per_webhook']} ms/webhook on the same cores")
    if c1["server_app_mean_ms"] is not None:
        print(
            f"server app time (its request log's duration_ms), mean/p50: concurrency 1 "
            f"{c1['server_app_mean_ms']}/{c1['server_app_p50_ms']} ms, concurrency {cn['concurrency']} "
            f"{cn['server_app_mean_ms']}/{cn['server_app_p50_ms']} ms"
        )
    expected_objects = c1["ok"] + cn["ok"] + WARMUP_PER_CONNECTION * (1 + args.concurrency)
    print(f"archive holds {stored} transcripts for {expected_objects} accepted requests (warm-up included)")
    if any(row["requests"] != row["ok"] for row in (c1, cn)):
        print(f"\nNON-200 responses: c1 {c1['statuses']}, c{cn['concurrency']} {cn['statuses']}")

    if args.save:
        results = ROOT / "benchmarks" / "results"
        results.mkdir(parents=True, exist_ok=True)
        out = results / f"ingest_throughput-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {out.relative_to(ROOT)}")
    failed = any(row["requests"] != row["ok"] for row in (c1, cn)) or stored != expected_objects
    return 1 if failed or (args.check and not all(goals.values())) else 0


if __name__ == "__main__":
    sys.exit(main())
