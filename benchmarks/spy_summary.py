"""Summarise a py-spy ``--format raw --threads`` recording of the server (as ``ingest_live.py --py-spy`` makes).

    .venv/bin/python benchmarks/spy_summary.py /tmp/bench-results/live.spy --requests 2900 --cpu-ms 17.9

Prints, per webhook: samples by thread, by step of the write path (each sample goes to the deepest
step on its stack that is listed in ``STEPS``), by own function (the leaf Python frame: C calls
such as ``orjson.loads`` or ``os.fsync`` count in the Python function that made them), and
inclusive by function. A sample is ``1 / rate`` seconds of a thread that was not idle; with
``--cpu-ms`` (the measured server CPU per webhook) every figure is also scaled to that total, since
py-spy also counts threads that are runnable but waiting for a core.
"""

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")

# (label, frame pattern): a sample counts for the deepest (last on the stack) step that matches.
# Order only breaks ties on the same frame.
STEPS: list[tuple[str, str]] = [
    ("http: uvicorn/h11 (parse request, send response)", r"h11|uvicorn/protocols"),
    ("http: starlette/fastapi routing + middleware", r"starlette/|fastapi/"),
    ("http: read body (request.stream + join)", r"_read_capped"),
    ("http: thread-pool hop (anyio)", r"anyio/"),
    ("asyncio event loop", r"asyncio/"),
    ("app middleware (request id, access log)", r"services/search/app\.py|services/core/http\.py|middleware"),
    ("use case: receive (other)", r"WebhookReceiver\.receive"),
    ("signature verify", r"signing\.py"),
    ("parse envelope (orjson.loads)", r"parse_envelope"),
    ("archive (other)", r"Archiver\.archive|Archiver\._archive_call"),
    ("CallRecord from payload", r"call_from_transcription"),
    ("version label (sha256)", r"call_version"),
    ("archive object: write_newest", r"write_newest \(services/core/newest"),
    ("index (SQLite)", r"sqlite_call_index|sqlite_database"),
    ("place_audio", r"place_audio"),
    ("analytics: write_call (other)", r"AnalyticsWriter\.write_call"),
    ("analytics: rows_for_call", r"rows_for_call"),
    ("analytics: encode (orjson.dumps rows)", r"^encode \(services/analytics/rows"),
    ("analytics: gzip", r"gzip\.py"),
    ("fs store: head / stat / xattr", r"FsBlobStore\.head|_current_tag|_version \(|_tag \("),
    ("fs store: temp write + fsync", r"_write_temp"),
    ("fs store: directory fsync", r"_fsync_dir"),
    ("fs store: put_stream_if (rename, lock)", r"put_stream_if|_folder_lock"),
    ("memory: submit job", r"MemoryJobs\.submit"),
    ("log line (powertools/logging)", r"aws_lambda_powertools/logging|logging/__init__"),
    ("memory worker (jobs, Mem0, ONNX)", r"MemoryWorker|JobProcessor|mem0|qdrant|onnx|embedder"),
    ("memory store warm-up", r"\.warm \("),
    ("analytics compaction thread", r"CompactionThread|compaction\.py"),
]


def parse(path: Path) -> list[tuple[str, list[tuple[str, str]], int]]:
    samples: list[tuple[str, list[tuple[str, str]], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        parts = match["stack"].split(";")
        thread = parts[0]
        frames: list[tuple[str, str]] = []
        for part in parts[1:]:
            frame = _FRAME.match(part)
            frames.append((frame["function"], frame["file"]) if frame else (part, ""))
        samples.append((thread, frames, int(match["count"])))
    return samples


def thread_label(thread: str) -> str:
    # "thread (12345): AnyIO worker thread" -> "AnyIO worker thread"
    return thread.split(": ", 1)[1] if ": " in thread else thread


def step_of(frames: list[tuple[str, str]], compiled: list[tuple[str, re.Pattern[str]]]) -> str:
    for function, file in reversed(frames):
        text = f"{function} ({file})"
        for label, pattern in compiled:
            if pattern.search(text):
                return label
    return "other"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--requests", type=int, required=True, help="webhooks answered while recording")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second [100]")
    parser.add_argument("--cpu-ms", type=float, default=None, help="measured server CPU ms/webhook, to scale to")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    samples = parse(args.raw)
    total = sum(count for _t, _f, count in samples)
    if not total:
        print("no samples")
        return 1
    per = 1000 / args.rate / args.requests  # ms per webhook of one sample
    scale = args.cpu_ms / (total * per) if args.cpu_ms else None

    def row(label: str, count: int) -> str:
        scaled = f" | {count * per * scale:.2f}" if scale else ""
        return f"| {label} | {count} | {100 * count / total:.1f}% | {count * per:.2f}{scaled} |"

    head = "| {} | samples | share | ms/webhook (samples)" + (" | ms/webhook (scaled to CPU)" if scale else "") + " |"
    rule = "|---|---:|---:|---:|" + ("---:|" if scale else "")
    print(
        f"{args.raw}: {total} samples, {args.requests} webhooks, {total * per:.2f} ms of samples per webhook"
        + (f"; scaled to the measured {args.cpu_ms} ms CPU (x{scale:.2f})" if scale else "")
    )

    threads: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    compiled = [(label, re.compile(pattern)) for label, pattern in STEPS]
    for thread, frames, count in samples:
        threads[thread_label(thread)] += count
        steps[step_of(frames, compiled)] += count
        if frames:
            function, file = frames[-1]
            own[f"{function} ({file})"] += count
        for name in {f"{function} ({file})" for function, file in frames}:
            inclusive[name] += count

    for title, counter, limit in (
        ("thread", threads, 20),
        ("step (deepest match)", steps, 60),
        ("own function (leaf frame)", own, args.top),
        ("inclusive function", inclusive, args.top),
    ):
        print(f"\n{head.format(title)}\n{rule}")
        for label, count in counter.most_common(limit):
            print(row(label, count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
