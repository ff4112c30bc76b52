"""Where a long call's webhook spends its CPU in the use case: per step and per write, in-process.

    .venv/bin/python benchmarks/ingest_profile.py                           # this checkout, 300 calls
    .venv/bin/python benchmarks/ingest_profile.py --code-root /tmp/cv-base --calls 400 --cprofile /tmp/x.pstats

No HTTP and no server: the same objects ``callvault serve`` wires (``build_storage``,
``build_archiver``, the memory outbox triggers and job hook with a null Mem0 store, so no worker
runs), driven through ``edge.handle_webhook`` (signature check, envelope parse, archive, the
request's log line, written to a file) one call at a time on a fresh data dir. Each step below is
wrapped by a timer that keeps CPU (this thread's ``thread_time``) and wall time, inclusive and
exclusive of the steps it calls, so the table adds up to the total. Steps that do not exist in
the tree under test are skipped (the write path is being rewritten).

Complements ``ingest_live.py`` (the whole server under load, py-spy) with exact costs per write.
``--cprofile FILE`` also saves a cProfile of the loop and prints its top functions (cProfile
inflates pure-Python code, so use it for call counts and shape, the timers for milliseconds).
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from harness import ROOT, SECRET, CallPlan, CodeUnderTest, measure_floor, render_all, sign  # noqa: E402


@dataclass
class Totals:
    calls: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    self_cpu: float = 0.0
    self_wall: float = 0.0


@dataclass
class StageTimer:
    """Wraps callables; keeps inclusive and exclusive CPU/wall per label (nesting aware, one thread)."""

    totals: dict[str, Totals] = field(default_factory=dict)
    _stack: list[list[float]] = field(default_factory=list)  # per open stage: [child cpu, child wall]

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([0.0, 0.0])
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
                child_cpu, child_wall = self._stack.pop()
                t = self.totals.setdefault(label, Totals())
                t.calls += 1
                t.cpu += cpu
                t.wall += wall
                t.self_cpu += cpu - child_cpu
                t.self_wall += wall - child_wall
                if self._stack:
                    self._stack[-1][0] += cpu
                    self._stack[-1][1] += wall

        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed

    def patch(self, owner: Any, attribute: str, label: str) -> bool:
        fn = getattr(owner, attribute, None)
        if fn is None:
            return False
        setattr(owner, attribute, self.wrap(label, fn))
        return True


class _TimedModule:
    """Stands in for a module global (``orjson``, ``gzip``) so only the calls made from one module are timed."""

    def __init__(self, module: Any, timer: StageTimer, names: dict[str, str]) -> None:
        self._module = module
        for name, label in names.items():
            setattr(self, name, timer.wrap(label, getattr(module, name)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


@dataclass
class _GcClock:
    """Wall time spent in the cyclic garbage collector (``gc.callbacks``), whichever step triggered it."""

    seconds: float = 0.0
    count: int = 0
    gen2: int = 0
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.count += 1
            self.gen2 += info.get("generation") == 2

    def stop(self) -> None:
        import gc

        gc.callbacks.remove(self)


def _gc_clock() -> _GcClock:
    import gc

    clock = _GcClock()
    gc.callbacks.append(clock)
    return clock


def instrument(timer: StageTimer, receiver: Any, archiver: Any) -> list[str]:
    """Wrap every step the tree under test has; returns the labels that could not be wrapped."""
    import importlib

    missing: list[str] = []

    def patch(owner: Any, attribute: str, label: str) -> None:
        if owner is None or not timer.patch(owner, attribute, label):
            missing.append(label)

    def module(name: str) -> Any:
        try:
            return importlib.import_module(name)
        except ImportError:
            return None

    service = module("services.ingest.service")
    edge = module("services.ingest.edge")
    payload = module("services.core.domain.payload")
    signing = module("services.core.domain.signing")
    versions = module("services.core.domain.versions")
    writer = module("services.analytics.writer")
    rows = module("services.analytics.rows")

    patch(edge, "handle_webhook", "0 total: handle_webhook (use case + its log line)")
    patch(receiver, "receive", "1 WebhookReceiver.receive")
    patch(signing, "verify", "2 signature verify (HMAC)")
    patch(payload, "parse_envelope", "3 parse envelope (orjson.loads)")
    patch(archiver, "archive", "4 Archiver.archive")
    patch(payload, "call_from_transcription", "5 CallRecord from payload")
    if service is not None:
        service.orjson = _TimedModule(service.orjson, timer, {"dumps": "6 re-encode data (orjson.dumps)"})
        patch(service, "write_newest", "8 archive object: write_newest (transcript)")
    patch(versions, "call_version", "7 version label (sha256 of document)")
    index = archiver.index
    patch(index, "get", "9 index: get")
    patch(index, "claim_place", "10 index: claim_place")
    patch(index, "save_call", "11 index: save_call (+ outbox trigger)")
    patch(index, "save_audio", "12 index: save_audio")
    patch(archiver, "place_audio", "13 place_audio (heads of parked/final audio)")
    analytics = getattr(archiver, "analytics", None)
    if analytics is not None:
        patch(analytics, "write_call", "14 analytics: write_call")
        patch(analytics, "mark_audio", "15 analytics: mark_audio")
        if writer is not None:
            patch(writer, "rows_for_call", "16 analytics: rows_for_call")
            patch(writer, "encode", "17 analytics: encode (orjson + gzip) x3")
            patch(writer, "write_newest", "19 analytics: write_newest x3")
            patch(writer, "rewrite_day", "20 analytics: rewrite_day (closed day)")
        if rows is not None:
            rows.gzip = _TimedModule(rows.gzip, timer, {"compress": "18 analytics: gzip.compress"})
    blobs = archiver.blobs
    patch(blobs, "head", "21 archive: head")
    if analytics is not None and analytics.store is not blobs:
        patch(analytics.store, "head", "22 analytics store: head")
    # The store's durable write, whichever store calls it: temp file + fsync + rename + dir fsync.
    fs = module("services.core.adapters.fs_blob_store")
    if fs is not None:
        patch(fs.FsBlobStore, "_write_temp", "23 fs: temp file write + fsync")
        patch(fs, "_fsync_dir", "24 fs: directory fsync")
    jobs = getattr(archiver, "memory_jobs", None)
    if jobs is not None:
        patch(jobs, "submit", "26 memory: submit job")
    return missing


def run_memory_jobs(settings: Any, storage: Any, plan: CallPlan, jobs: int) -> str:
    """What one caller-memory job of a long call costs the worker (offline Mem0: ONNX embeddings, Qdrant
    local mode, Mem0's history): CPU per job and per memory, by step. The first job (opening the
    caller's shard) is not timed."""
    from services.core.domain import keys
    from services.memory import jobs as jobs_module
    from services.memory.domain import MemoryJob
    from services.memory.jobs import JobProcessor
    from services.memory.wiring import build_memory_store

    store = build_memory_store(settings.model_copy(update={"memory_backend": "oss"}))
    process = JobProcessor(storage.blobs, storage.index, store, settings.default_region)
    timer = StageTimer()
    timed_orjson = _TimedModule(vars(jobs_module)["orjson"], timer, {"loads": "2 read transcript: orjson.loads"})
    setattr(jobs_module, "orjson", timed_orjson)  # noqa: B010 - the module global, for this benchmark only
    timer.patch(jobs_module, "build_conversation_memories", "3 build_conversation_memories")
    timer.patch(store, "_delete_where", "4 delete the call's old memories")
    embedder = getattr(store, "_embedder", None)
    if embedder is not None:
        timer.patch(embedder, "embed", "6 ONNX embedding (embed)")
        timer.patch(embedder, "embed_batch", "6 ONNX embedding (embed_batch)")
    ids = [plan.conversation_id(n) for n in range(plan.first + 5, plan.first + 5 + jobs + 1)]
    cpu_total, items = 0.0, 0
    for i, cid in enumerate(ids):
        row = storage.index.get(cid)
        job = MemoryJob(cid, row.transcript_key if row else keys.transcript_key("x", cid), None)
        if i == 1:
            timer.totals.clear()
        memory = store._memory_for(row.phone) if row and row.phone and hasattr(store, "_memory_for") else None
        if memory is not None and not hasattr(memory.add, "__wrapped__"):
            memory.add = timer.wrap("5 Mem0 Memory.add (one memory: embed + Qdrant + history)", memory.add)
        cpu0 = time.thread_time()
        timed = timer.wrap("1 job", process)
        timed(job)
        if i >= 1:
            cpu_total += time.thread_time() - cpu0
            added = timer.totals.get("5 Mem0 Memory.add (one memory: embed + Qdrant + history)")
            items = added.calls if added else 0
    close = getattr(store, "close", None)
    if callable(close):
        close()
    n = len(ids) - 1
    lines = [
        f"memory jobs (offline Mem0), {n} timed: CPU {cpu_total * 1000 / n:.0f} ms/job, "
        f"{items / n:.0f} memories/job, {cpu_total * 1000 / max(items, 1):.1f} ms/memory"
    ]
    lines.append("| step | calls/job | CPU ms/job incl. | CPU ms/job excl. | wall ms/job incl. |")
    lines.append("|---|---:|---:|---:|---:|")
    for label in sorted(timer.totals, key=lambda x: int(x.split(" ", 1)[0])):
        t = timer.totals[label]
        lines.append(
            f"| {label.split(' ', 1)[1]} | {t.calls / n:.1f} | {t.cpu * 1000 / n:.1f} | "
            f"{t.self_cpu * 1000 / n:.1f} | {t.wall * 1000 / n:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--code-root", type=Path, default=ROOT, help="the CallVault tree [this checkout]")
    parser.add_argument("--calls", type=int, default=300, help="webhooks (20-5000) [300]")
    parser.add_argument("--memory", choices=("on", "off"), default="on", help="outbox triggers + job hook [on]")
    parser.add_argument("--past-days", type=int, default=0, help="date the calls this many days ago (0-400) [0]")
    parser.add_argument("--cprofile", type=Path, default=None, help="also save a cProfile of the loop here")
    parser.add_argument("--data-root", type=Path, default=None, help="where the temp data dir goes [system temp]")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="leave the temp data dir for the caller to remove (ingest_live.py: deleting files taxes the next "
        "file creations on ext4 without a journal)",
    )
    parser.add_argument(
        "--gc-threshold", default=None, help="gc.set_threshold before the loop, e.g. 50000,20,20 [Python's default]"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the step table as JSON here")
    parser.add_argument(
        "--memory-jobs",
        type=int,
        default=0,
        help="then run this many memory jobs with the offline Mem0 store (0-20) [0]",
    )
    args = parser.parse_args(argv)
    if not 20 <= args.calls <= 5000 or not 0 <= args.past_days <= 400 or not 0 <= args.memory_jobs <= 20:
        parser.error("--calls must be 20-5000, --past-days 0-400, --memory-jobs 0-20")

    code = CodeUnderTest.at(args.code_root)
    sys.path.insert(0, str(code.root))
    import services.ingest.service as service_module

    if not Path(service_module.__file__).resolve().is_relative_to(code.root):
        raise SystemExit(f"services loaded from {service_module.__file__}, not {code.root}")

    from services.core.config import Settings
    from services.core.logging import get_logger
    from services.core.wiring import build_storage
    from services.ingest.service import WebhookReceiver
    from services.ingest.wiring import build_archiver

    day = None
    if args.past_days:
        day = (int(time.time()) // 86400 - args.past_days) * 86400
    plan = CallPlan("prof", day_start=day)
    bodies = [body for _cid, body in render_all(plan, args.calls)]

    scratch: contextlib.AbstractContextManager[str] = (
        contextlib.nullcontext(tempfile.mkdtemp(prefix="cv-profile-", dir=args.data_root))
        if args.keep_data
        else tempfile.TemporaryDirectory(prefix="cv-profile-", dir=args.data_root)
    )
    with scratch as tmp:
        floor = measure_floor(bodies[:8], Path(tmp) / "floor", 2.0)
        settings = Settings(data_dir=Path(tmp) / "data", log_level="INFO")
        storage = build_storage(settings)
        jobs = None
        if args.memory == "on":
            from services.memory.local import build_local_memory
            from services.memory.stores import NullMemoryStore

            local = build_local_memory(settings, storage, agent_secrets=["asec_x"], store=NullMemoryStore())
            jobs = local.jobs if local is not None else None
        archiver = build_archiver(settings, storage, jobs)
        receiver = WebhookReceiver(archiver, [SECRET], settings.max_body_bytes)
        log_file = (Path(tmp) / "app.log").open("w")
        with contextlib.redirect_stdout(log_file):  # the Logger's handler keeps this stream
            logger = get_logger("callvault", "INFO")
        timer = StageTimer()
        missing = instrument(timer, receiver, archiver)
        from services.ingest import edge

        signed = [(body, sign(body)) for body in bodies]
        for body, header in signed[:5]:  # untimed: first-call imports and connections
            edge.handle_webhook(receiver, body, header, "warm", logger)
        timer.totals.clear()
        import gc

        if args.memory == "on":  # what LocalMemory.start() does in `callvault serve`
            gc.collect()
            gc.freeze()
        if args.gc_threshold:
            gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
        gc_time = _gc_clock()
        walls: list[float] = []
        profiler = None
        if args.cprofile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu0 = time.thread_time()
        for i, (body, header) in enumerate(signed[5:]):
            started = time.perf_counter()
            status, _ = edge.handle_webhook(receiver, body, header, f"r{i}", logger)
            walls.append(time.perf_counter() - started)
            if status != 200:
                raise SystemExit(f"webhook {i} answered {status}")
        cpu_total = time.thread_time() - cpu0
        gc_time.stop()
        if profiler is not None:
            profiler.disable()
        log_file.close()
        job_report = run_memory_jobs(settings, storage, plan, args.memory_jobs) if args.memory_jobs else None

    n = len(walls)
    print(f"\n## ingest_profile: {code.label}, memory {args.memory}, {n} calls", end="")
    if args.gc_threshold:
        print(f", gc threshold {args.gc_threshold}", end="")
    print(f" dated {args.past_days} days ago" if args.past_days else " (live)", end="")
    print(f", load average {time.strftime('%H:%M:%S')} {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"body {statistics.fmean(len(b) for b in bodies) / 1000:.0f} KB; floor CPU {floor['cpu_ms']:.2f} ms, "
        f"wall {floor['wall_ms']:.2f} ms per body"
    )
    print(
        f"loop: CPU {cpu_total * 1000 / n:.2f} ms/webhook ({cpu_total * 1000 / n / floor['cpu_ms']:.2f}x floor CPU), "
        f"wall mean {statistics.fmean(walls) * 1000:.2f} ms, p50 {statistics.median(walls) * 1000:.2f} ms"
        + ("  [cProfile on: inflated]" if profiler else "")
    )
    print("\n| step | calls/webhook | CPU ms incl. | CPU ms excl. | wall ms incl. | wall ms excl. |")
    print("|---|---:|---:|---:|---:|---:|")

    def order(label: str) -> int:
        return int(label.split(" ", 1)[0])

    for label in sorted(timer.totals, key=order):
        t = timer.totals[label]
        print(
            f"| {label.split(' ', 1)[1]} | {t.calls / n:.2f} | {t.cpu * 1000 / n:.3f} | {t.self_cpu * 1000 / n:.3f} "
            f"| {t.wall * 1000 / n:.3f} | {t.self_wall * 1000 / n:.3f} |"
        )
    print(
        f"| (inside the above) garbage collection: {gc_time.count / n:.1f} runs, gen2 {gc_time.gen2 / n:.2f} "
        f"| | | {gc_time.seconds * 1000 / n:.3f} | | |"
    )
    if missing:
        print(f"\nnot in this tree (skipped): {', '.join(m.split(' ', 1)[1] for m in missing)}")
    ranked = sorted(timer.totals.items(), key=lambda kv: -kv[1].self_cpu)
    print(
        "\nranked by exclusive CPU, ms/webhook: "
        + "; ".join(f"{label.split(' ', 1)[1]} {t.self_cpu * 1000 / n:.2f}" for label, t in ranked[:12])
    )
    if args.json:
        steps = {
            label.split(" ", 1)[1]: {
                "calls": round(t.calls / n, 2),
                "cpu_ms": round(t.cpu * 1000 / n, 3),
                "self_cpu_ms": round(t.self_cpu * 1000 / n, 3),
                "wall_ms": round(t.wall * 1000 / n, 3),
                "self_wall_ms": round(t.self_wall * 1000 / n, 3),
            }
            for label, t in sorted(timer.totals.items(), key=lambda kv: order(kv[0]))
        }
        args.json.write_text(
            json.dumps(
                {
                    "commit": code.label,
                    "calls": n,
                    "memory": args.memory,
                    "past_days": args.past_days,
                    "cpu_ms_per_webhook": round(cpu_total * 1000 / n, 3),
                    "wall_ms_mean": round(statistics.fmean(walls) * 1000, 3),
                    "floor": floor,
                    "gc_wall_ms": round(gc_time.seconds * 1000 / n, 3),
                    "gc_runs": round(gc_time.count / n, 2),
                    "steps": steps,
                    "loadavg": os.getloadavg(),
                },
                indent=1,
            )
        )
    if job_report:
        print(f"\n{job_report}")
    if profiler is not None:
        import pstats

        profiler.dump_stats(args.cprofile)
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(30)
        print(f"\ncProfile saved to {args.cprofile}; top 30 by own time:\n")
        print(stream.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
