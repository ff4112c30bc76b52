"""Live webhooks of long calls into the integrated product (memory on, analytics on), against the floor.

    .venv/bin/python benchmarks/ingest_live.py                          # memory on, 4 clients, 20 s
    .venv/bin/python benchmarks/ingest_live.py --memory off
    .venv/bin/python benchmarks/ingest_live.py --code-root /tmp/cv-base  # a copy (git archive HEAD | tar -x)
    .venv/bin/python benchmarks/ingest_live.py --py-spy /tmp/bench-results/live.spy   # + profile of the server

In one run:
1. the floor, in this process before the server starts and after it stops, on the same disk as the
   data dir: HMAC-SHA256 verify + ``orjson.loads`` + one fsync'd write (temp file, fsync, rename)
   of the same bodies; wall and CPU per body;
2. the real ``callvault serve`` (``python -m services.cli serve``) of ``--code-root`` on 127.0.0.1
   with a fresh data dir, caller memory on (offline Mem0, its worker in the server process) unless
   ``--memory off``; analytics is always on;
3. ``--warmup-seconds`` of untimed load (first requests pay lazy imports and open the memory store),
   then ``--seconds`` of load from a second process: ``--concurrency`` keep-alive connections, each
   request a new long call (``long_call.LongCall``: ~115 turns, ~180 KB, a caller telling her life
   story) with a new conversation_id, callers drawn from a pool of ``--callers`` numbers;
4. the server's CPU (utime + stime of the process and all its threads, /proc/<pid>/stat) read at
   the start and the end of that window, divided by the requests answered in it; and per thread;
5. a report: commit, load average, webhooks/s, p50/p99, server CPU per webhook, floor, ratio, and
   (``--save DIR``) the raw JSON.

Then (``--ratio-rounds``, 0 to skip) the ratio again, interleaved: rounds of a slice of load on ``serve``,
a slice of the same load on ``floor_server.py`` (the same uvicorn with a bare ASGI callable that
verifies, parses and durably writes each body: a floor that carries the HTTP server's own cost,
docs/benchmarks.md, #10), and a slice of the in-process floor, so both sides of each ratio are
measured in the same minutes.

Goals (issue #10): >= 150 webhooks/s, p99 < 100 ms, server CPU per webhook <= 3x the floor's CPU.
The load generator shares the 2 cores: its CPU per webhook is printed too.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from harness import (  # noqa: E402
    ROOT,
    WEBHOOK,
    CallPlan,
    CodeUnderTest,
    LoadResult,
    Served,
    combine_floors,
    file_create_cost,
    filesystem_kind,
    loadavg,
    measure_floor,
    percentile,
    render_all,
    run_load,
    serve,
    serve_floor,
    wait_quiet,
)

GOAL_RATE = 150.0
GOAL_P99_MS = 100.0
GOAL_RATIO = 3.0


def outbox_counts(data_dir: Path) -> dict[str, int]:
    import sqlite3

    path = data_dir / "index.sqlite3"
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        try:
            return dict(conn.execute("SELECT state, COUNT(*) FROM memory_outbox GROUP BY state").fetchall())
        except sqlite3.OperationalError:
            return {}


def server_log_ms(log_path: Path) -> list[float]:
    """``duration_ms`` of the server's own log lines for the webhook route (empty if it logs none)."""
    found: list[float] = []
    with log_path.open("rb") as log:
        for line in log:
            if b'"duration_ms"' in line and WEBHOOK.encode() in line:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record.get("duration_ms"), int | float):
                    found.append(float(record["duration_ms"]))
    return found


def summarise(load: LoadResult) -> dict[str, Any]:
    ok = load.ok
    latencies = [ms for ms, code in zip(load.latencies_ms, load.codes, strict=True) if code == 200]
    return {
        "concurrency": load.concurrency,
        "requests": load.sent,
        "ok": ok,
        "statuses": load.statuses,
        "seconds": round(load.elapsed_s, 2),
        "webhooks_per_s": round(ok / load.elapsed_s, 1) if load.elapsed_s else 0.0,
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p90_ms": round(percentile(latencies, 0.90), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies, default=float("nan")), 2),
        "server_cpu_ms_per_webhook": round(1000 * load.server_cpu_s / ok, 2) if ok else None,
        "server_cpu_cores": round(load.server_cpu_s / load.elapsed_s, 2) if load.elapsed_s else None,
        "server_threads_ms_per_webhook": {k: round(1000 * v / ok, 2) for k, v in load.server_threads_s.items()}
        if ok
        else {},
        "client_cpu_ms_per_webhook": round(1000 * load.client_cpu_s / ok, 2) if ok else None,
        "loadavg_start": [round(x, 2) for x in load.loadavg_start],
        "loadavg_end": [round(x, 2) for x in load.loadavg_end],
        "pressure_end": load.pressure_end,
        "server_rss_mib": load.server_rss_mib,
    }


def use_case_in_process(code: CodeUnderTest, memory: str, calls: int, tmp: Path) -> dict[str, Any] | None:
    """``ingest_profile.py`` on the same tree: the use case's CPU per webhook without HTTP, by step."""
    out = tmp / "use-case.json"
    command = [sys.executable, str(BENCH_DIR / "ingest_profile.py"), "--code-root", str(code.root)]
    command += ["--calls", str(max(calls, 20)), "--memory", memory, "--json", str(out)]
    command += ["--data-root", str(tmp), "--keep-data"]  # ingest_live removes tmp at its end
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode or not out.exists():
        print(f"use case in-process failed:\n{done.stderr[-1500:]}", file=sys.stderr)
        return None
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


def gc_snapshot(out: Path) -> dict[str, Any] | None:
    """Ask the server's gc_probe for its totals and wait (up to 5 s) for them."""
    request = Path(f"{out}.request")
    request.touch()
    deadline = time.monotonic() + 5
    while request.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        loaded: dict[str, Any] = json.loads(out.read_text())
    except (OSError, ValueError):
        return None
    return loaded


def gc_window(before: dict[str, Any] | None, after: dict[str, Any] | None, requests: int) -> dict[str, Any] | None:
    if not before or not after or not requests:
        return None
    runs = [a - b for a, b in zip(after["collections"], before["collections"], strict=True)]
    secs = [a - b for a, b in zip(after["seconds"], before["seconds"], strict=True)]
    return {
        "threshold": after["threshold"],
        "frozen_objects": after["frozen"],
        "runs_per_webhook": [round(r / requests, 3) for r in runs],
        "ms_per_webhook": [round(1000 * s / requests, 3) for s in secs],
        "ms_per_run": [round(1000 * s / r, 2) if r else None for s, r in zip(secs, runs, strict=True)],
        "total_ms_per_webhook": round(1000 * sum(secs) / requests, 3),
    }


def interleave_ratio(served: Served, bodies: list[bytes], tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``serve``, ``floor_server.py`` and the in-process floor measured in turn, ``--ratio-rounds`` times,
    so that both sides of each ratio see the same minutes of a machine whose speed drifts (the floor
    measured before and after the main window differed by up to 40%). Both servers run throughout."""
    totals = {"serve_cpu": 0.0, "serve_ok": 0, "http_cpu": 0.0, "http_ok": 0}
    floors: list[dict[str, Any]] = []
    by_round: list[float] = []
    http_dir = tmp / "floor-http"
    with serve_floor(http_dir, log_path=tmp / "floor-http.log") as floor_served:
        run_load(floor_served, CallPlan("fwarm", templates=args.templates, callers=args.callers), 1, 1, 50)
        for n in range(args.ratio_rounds):
            first = 100_000 * (n + 1)
            serve_plan = CallPlan("ratio", templates=args.templates, callers=args.callers, first=first)
            mine = run_load(served, serve_plan, args.concurrency, args.ratio_slice_seconds, args.requests, warmup=1)
            floor_plan = CallPlan("fhttp", templates=args.templates, callers=args.callers, first=first)
            bare = run_load(
                floor_served, floor_plan, args.concurrency, args.ratio_slice_seconds, args.requests, warmup=1
            )
            # Nothing is deleted until the run ends: see measure_floor.
            floors.append(measure_floor(bodies, tmp / f"floor-round-{n}", args.ratio_slice_seconds / 2))
            totals["serve_cpu"] += mine.server_cpu_s
            totals["serve_ok"] += mine.ok
            totals["http_cpu"] += bare.server_cpu_s
            totals["http_ok"] += bare.ok
            if mine.ok and bare.ok:
                by_round.append((mine.server_cpu_s / mine.ok) / (bare.server_cpu_s / bare.ok))
    serve_ms = 1000 * totals["serve_cpu"] / max(1, totals["serve_ok"])
    http_ms = 1000 * totals["http_cpu"] / max(1, totals["http_ok"])
    floor = combine_floors(*floors)
    return {
        "rounds": args.ratio_rounds,
        "slice_s": args.ratio_slice_seconds,
        "serve_requests": totals["serve_ok"],
        "serve_cpu_ms": round(serve_ms, 2),
        "http_floor_requests": totals["http_ok"],
        "http_floor_cpu_ms": round(http_ms, 2),
        "floor_iterations": floor["iterations"],
        "floor_cpu_ms": floor["cpu_ms"],
        "ratio_to_floor": round(serve_ms / floor["cpu_ms"], 2) if floor["cpu_ms"] else None,
        "ratio_to_http_floor": round(serve_ms / http_ms, 2) if http_ms else None,
        "ratio_to_http_floor_by_round": [round(r, 2) for r in by_round],
    }


def start_attached(template: str, pid: int, seconds: float) -> subprocess.Popen[bytes]:
    """A profiler or tracer of the server for the window (only ever this child is signalled)."""
    import shlex

    command = [part.format(pid=pid, seconds=int(seconds) + 1) for part in shlex.split(template)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_attached(process: subprocess.Popen[bytes]) -> None:
    """Let a command that ends by itself (``-- sleep {seconds}``) end; interrupt one that would not (strace -p)."""
    import signal

    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.returncode not in (0, -signal.SIGINT, 130) and process.stderr is not None:
        print(f"attached command ended with {process.returncode}: {process.stderr.read()[-500:]!r}", file=sys.stderr)


def start_py_spy(pid: int, out: Path, seconds: float, rate: int) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise SystemExit("--py-spy needs py-spy (.venv/bin/pip install py-spy; not a project dependency)")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "-p", str(pid), "-r", str(rate), "-d", str(int(seconds) + 1)]
    command += ["--format", "raw", "-o", str(out), "--threads", "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--code-root", type=Path, default=ROOT, help="the CallVault tree to serve [this checkout]")
    parser.add_argument("--memory", choices=("on", "off"), default="on", help="caller memory [on]")
    parser.add_argument(
        "--ingest-processes",
        type=int,
        default=None,
        help="CALLVAULT_INGEST_PROCESSES for serve (0-8; 0: the ingest thread) [serve's default]",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load (2-120 s) [20]")
    parser.add_argument("--warmup-seconds", type=float, default=4.0, help="untimed load first (0-60 s) [4]")
    parser.add_argument("--concurrency", type=int, default=4, help="keep-alive connections (1-16) [4]")
    parser.add_argument("--requests", type=int, default=6000, help="cap on measured requests (1-20000) [6000]")
    parser.add_argument("--callers", type=int, default=50, help="distinct caller numbers (1-10000) [50]")
    parser.add_argument("--templates", type=int, default=8, help="distinct generated calls (1-64) [8]")
    parser.add_argument("--floor-seconds", type=float, default=3.0, help="each floor loop (0.5-30 s) [3]")
    parser.add_argument(
        "--ratio-rounds",
        type=int,
        default=4,
        help="then rounds of serve / floor_server.py / in-process floor, interleaved (0-20; 0: skip) [4]",
    )
    parser.add_argument(
        "--ratio-slice-seconds", type=float, default=3.0, help="each slice of a ratio round (1-30 s) [3]"
    )
    parser.add_argument("--data-root", type=Path, default=None, help="where the temp data dir goes [system temp]")
    parser.add_argument("--py-spy", type=Path, default=None, help="also record the server with py-spy (raw) here")
    parser.add_argument("--py-spy-rate", type=int, default=100, help="samples/s (10-500) [100]")
    parser.add_argument(
        "--gc-probe", action="store_true", help="count the server's GC runs and time in the window (gc_probe/)"
    )
    parser.add_argument(
        "--gc-threshold", default=None, help="with --gc-probe: gc.set_threshold in the server, e.g. 20000,50,100"
    )
    parser.add_argument(
        "--attach",
        default=None,
        help="also run this command during the measured window; {pid} and {seconds} are filled in, e.g. "
        "'perf record -F 499 -g -p {pid} -o /tmp/bench-results/live.perf -- sleep {seconds}' or "
        "'strace -f -c -e trace=fsync,fdatasync,rename -p {pid} -o /tmp/bench-results/live.strace'",
    )
    parser.add_argument(
        "--use-case-calls", type=int, default=200, help="then the use case in-process, no HTTP (0-2000; 0: skip) [200]"
    )
    parser.add_argument("--save", type=Path, default=None, help="write the JSON report into this folder")
    parser.add_argument("--keep-data", action="store_true", help="keep the data dir (printed) for inspection")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    bounds = {
        "seconds": (2, 120),
        "warmup_seconds": (0, 60),
        "concurrency": (1, 16),
        "requests": (1, 20000),
        "callers": (1, 10000),
        "templates": (1, 64),
        "floor_seconds": (0.5, 30),
        "ratio_rounds": (0, 20),
        "ingest_processes": (0, 8),
        "ratio_slice_seconds": (1, 30),
        "py_spy_rate": (10, 500),
        "use_case_calls": (0, 2000),
    }
    for name, (low, high) in bounds.items():
        value = getattr(args, name)
        if value is not None and not low <= value <= high:
            parser.error(f"--{name.replace('_', '-')} must be between {low} and {high}")

    code = CodeUnderTest.at(args.code_root)
    memory = args.memory == "on"
    resolved = code.check_resolution(code.env())
    plan = CallPlan("live", templates=args.templates, callers=args.callers)
    bodies = [body for _cid, body in render_all(plan, args.templates)]
    load_before = loadavg()
    tmp = Path(tempfile.mkdtemp(prefix="cv-live-", dir=args.data_root))
    try:
        create_before = file_create_cost(tmp, "before")
        floor_before = measure_floor(bodies, tmp / "floor-before", args.floor_seconds)
        data_dir = tmp / "data"
        probe_out = tmp / "gc-probe.json"
        extra_env: dict[str, str] = {}
        if args.gc_probe:
            extra_env["PYTHONPATH"] = os.pathsep.join([str(BENCH_DIR / "gc_probe"), code.env()["PYTHONPATH"]])
            extra_env["CV_BENCH_GC_OUT"] = str(probe_out)
            if args.gc_threshold:
                extra_env["CV_BENCH_GC_THRESHOLD"] = args.gc_threshold
        if args.ingest_processes is not None:
            extra_env["CALLVAULT_INGEST_PROCESSES"] = str(args.ingest_processes)
        gc_before: dict[str, Any] | None = None
        gc_after: dict[str, Any] | None = None
        with serve(code, data_dir, memory=memory, log_path=tmp / "serve.log", extra_env=extra_env) as served:
            settled = wait_quiet(served.pid)  # start-up work (opening the memory store) done
            if args.warmup_seconds > 0:
                warm = CallPlan("warm", templates=args.templates, callers=args.callers)
                run_load(served, warm, args.concurrency, args.warmup_seconds, args.requests, warmup=1)
            jobs_before = outbox_counts(data_dir)
            gc_before = gc_snapshot(probe_out) if args.gc_probe else None
            spy = start_py_spy(served.pid, args.py_spy, args.seconds, args.py_spy_rate) if args.py_spy else None
            attached = start_attached(args.attach, served.pid, args.seconds) if args.attach else None
            load = run_load(served, plan, args.concurrency, args.seconds, args.requests)
            interleaved = None
            if args.ratio_rounds:
                interleaved = interleave_ratio(served, bodies, tmp, args)
            jobs_after = outbox_counts(data_dir)
            gc_after = gc_snapshot(probe_out) if args.gc_probe else None
            if attached is not None:
                stop_attached(attached)
            if spy is not None:
                _out, err = spy.communicate(timeout=args.seconds + 60)
                if spy.returncode:
                    print(f"py-spy failed: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        floor_after = measure_floor(bodies, tmp / "floor-after", args.floor_seconds)
        create_after = file_create_cost(tmp, "after")
        use_case = use_case_in_process(code, args.memory, args.use_case_calls, tmp) if args.use_case_calls else None
        stored = sum(1 for p in (data_dir / "archive").rglob("*.json") if not p.name.startswith("."))
        app_ms = server_log_ms(tmp / "serve.log")
    finally:
        if args.keep_data:
            print(f"data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            if "no journal" in filesystem_kind(tmp.parent):
                print(
                    "the run's files were deleted: on this ext4 without a journal, file creation nearby costs more "
                    "for up to 6 minutes, so wait that long before the next run (or use --keep-data)"
                )
    load_after = loadavg()

    floor = combine_floors(floor_before, floor_after)
    row = summarise(load)
    ratio_cpu = row["server_cpu_ms_per_webhook"] / floor["cpu_ms"] if row["server_cpu_ms_per_webhook"] else None
    ratio_wall = row["server_cpu_ms_per_webhook"] / floor["wall_ms"] if row["server_cpu_ms_per_webhook"] else None
    goals = {
        "rate": row["webhooks_per_s"] >= GOAL_RATE,
        "p99": row["p99_ms"] < GOAL_P99_MS,
        # The interleaved ratio when measured: both sides in the same minutes.
        "cpu_ratio": (goal_ratio := interleaved["ratio_to_floor"] if interleaved else ratio_cpu) is not None
        and goal_ratio <= GOAL_RATIO,
    }
    report = {
        "script": "ingest_live",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": code.label,
        "services_loaded_from": resolved,
        "memory": args.memory,
        "ingest_processes": args.ingest_processes,
        "machine": {"nproc": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after},
        "payload": {"bytes_each": [len(b) for b in bodies], "templates": args.templates, "callers": args.callers},
        "floor": floor,
        "file_create": {"before": create_before, "after": create_after},
        "load": row,
        "ratio_server_cpu_to_floor_cpu": round(ratio_cpu, 2) if ratio_cpu else None,
        "ratio_server_cpu_to_floor_wall": round(ratio_wall, 2) if ratio_wall else None,
        "interleaved": interleaved,
        "memory_jobs": {"before": jobs_before, "after": jobs_after},
        "server_settled_s": round(settled, 1),
        "use_case_in_process": use_case,
        "gc": gc_window(gc_before, gc_after, load.ok),
        "objects_stored": stored,
        "server_app_ms": {"n": len(app_ms), "p50": round(percentile(app_ms, 0.5), 2) if app_ms else None},
        "goals_met": goals,
        "raw": {"done_at": load.done_at, "latencies_ms": load.latencies_ms, "codes": load.codes},
    }

    kb = sum(len(b) for b in bodies) / len(bodies) / 1000
    processes = "default" if args.ingest_processes is None else args.ingest_processes
    print(f"\n## ingest_live: {code.label}, memory {args.memory}, ingest processes {processes}, {report['date']}\n")
    print(f"services loaded from {resolved}; server idle {settled:.0f} s after /healthz, before the warm-up load")
    print(
        f"{kb:.0f} KB calls (115 turns, {args.templates} generated, {args.callers} callers), new conversation_id "
        f"each; {args.concurrency} keep-alive clients in a second process; {os.cpu_count()} cores"
    )
    print(
        f"load average (1 min): {load_before[0]:.2f} before, {row['loadavg_start'][0]:.2f} at the start of the "
        f"window, {row['loadavg_end'][0]:.2f} at its end, {load_after[0]:.2f} after; PSI avg10 at its end: "
        f"cpu {row['pressure_end'].get('cpu', '-')}%, io {row['pressure_end'].get('io', '-')}%\n"
    )
    print("| | requests | non-200 | webhooks/s | p50 ms | p99 ms | max ms | server CPU ms/webhook | cores busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| memory {args.memory}, c={row['concurrency']}, {row['seconds']} s | {row['requests']} "
        f"| {row['requests'] - row['ok']} | {row['webhooks_per_s']} | {row['p50_ms']} | {row['p99_ms']} "
        f"| {row['max_ms']} | {row['server_cpu_ms_per_webhook']} | {row['server_cpu_cores']} |"
    )
    print(
        f"\ncreating a file in the data dir's folder ({create_before['fs']}): {create_before['us_per_create']} µs CPU "
        f"before the run, {create_after['us_per_create']} µs after (a webhook creates four files, the floor one; "
        "over ~100 µs means files deleted in the last minutes are being skipped: docs/benchmarks.md)"
    )
    print(
        f"floor (verify + parse + fsync'd write), per body: CPU {floor['cpu_ms']:.2f} ms, wall "
        f"{floor['wall_ms']:.2f} ms (before/after: CPU {floor_before['cpu_ms']:.2f}/{floor_after['cpu_ms']:.2f}, "
        f"wall {floor_before['wall_ms']:.2f}/{floor_after['wall_ms']:.2f})"
    )
    print(
        f"server CPU per webhook / floor CPU = {ratio_cpu:.2f}x   (/ floor wall = {ratio_wall:.2f}x)"
        if ratio_cpu and ratio_wall
        else "no ratio: no request succeeded"
    )
    if interleaved is not None:
        i = interleaved
        print(
            f"interleaved ({i['rounds']} rounds of {i['slice_s']} s: serve, then floor_server.py (the same uvicorn + "
            f"bare verify, parse, fsync'd write), then the floor in-process; CPU ms/webhook): serve "
            f"{i['serve_cpu_ms']} ({i['serve_requests']} requests), HTTP floor {i['http_floor_cpu_ms']} "
            f"({i['http_floor_requests']}), floor {i['floor_cpu_ms']} ({i['floor_iterations']}); "
            f"serve / floor = {i['ratio_to_floor']}x, serve / HTTP floor = {i['ratio_to_http_floor']}x "
            f"(by round: {', '.join(f'{r:.2f}' for r in i['ratio_to_http_floor_by_round'])})"
        )
    print(f"client CPU: {row['client_cpu_ms_per_webhook']} ms/webhook (load generator, same cores)")
    if use_case:
        worker = sum(v for k, v in row["server_threads_ms_per_webhook"].items() if "memory-worker" in k)
        rest = (row["server_cpu_ms_per_webhook"] or 0) - worker - use_case["cpu_ms_per_webhook"]
        print(
            f"use case in-process (same tree, no HTTP, {use_case['calls']} calls, right after): CPU "
            f"{use_case['cpu_ms_per_webhook']:.2f} ms/webhook = "
            f"{use_case['cpu_ms_per_webhook'] / floor['cpu_ms']:.2f}x "
            f"the floor; server minus use case minus memory worker ({worker:.2f}) = {rest:.2f} ms "
            f"(HTTP, event loop, thread hop, other threads)"
        )
    print(
        "server CPU by thread, ms/webhook: "
        + ", ".join(f"{k} {v}" for k, v in row["server_threads_ms_per_webhook"].items())
    )
    if row.get("server_rss_mib"):
        print("server RSS at the window's end, MiB: " + ", ".join(f"{k} {v}" for k, v in row["server_rss_mib"].items()))
    if app_ms:
        print(f"server's own duration_ms (all webhook requests incl. warm-up): p50 {report['server_app_ms']['p50']}")
    if report["gc"]:
        g = report["gc"]
        print(
            f"server GC in the window (gc_probe, threshold {g['threshold']}, {g['frozen_objects']} frozen): "
            f"{g['total_ms_per_webhook']} ms/webhook wall; runs per webhook by generation {g['runs_per_webhook']}, "
            f"ms per run {g['ms_per_run']}"
        )
    if memory:
        print(f"memory outbox before the window {jobs_before}, after {jobs_after}")
    expected = load.ok  # plus warm-up requests, which are stored too
    print(f"archive holds {stored} transcripts ({expected} answered 200 in the window, plus warm-up)")
    print("\n| goal | target | measured | |")
    print("|---|---|---|---|")
    verdict = {True: "met", False: "**MISSED**"}
    print(f"| rate | >= {GOAL_RATE:.0f} webhooks/s | {row['webhooks_per_s']} | {verdict[goals['rate']]} |")
    print(f"| p99 | < {GOAL_P99_MS:.0f} ms | {row['p99_ms']} ms | {verdict[goals['p99']]} |")
    print(
        f"| server CPU / floor | <= {GOAL_RATIO:.0f}x | "
        f"{ratio_cpu:.2f}x ({row['server_cpu_ms_per_webhook']} / {floor['cpu_ms']:.2f} ms) "
        f"| {verdict[goals['cpu_ratio']] if interleaved is None else 'main window'} |"
        if ratio_cpu
        else f"| server CPU / floor | <= {GOAL_RATIO:.0f}x | - | **MISSED** |"
    )
    if interleaved is not None:
        print(
            f"| server CPU / floor, interleaved | <= {GOAL_RATIO:.0f}x | {interleaved['ratio_to_floor']}x "
            f"({interleaved['serve_cpu_ms']} / {interleaved['floor_cpu_ms']} ms; / HTTP floor "
            f"{interleaved['ratio_to_http_floor']}x) | {verdict[goals['cpu_ratio']]} |"
        )
    if args.py_spy:
        print(
            f"\npy-spy samples: {args.py_spy} (summarise: benchmarks/spy_summary.py {args.py_spy} --requests {load.ok})"
        )
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        out = args.save / f"ingest_live-{args.memory}-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"\nwrote {out}")
    failed = load.ok != load.sent
    return 1 if failed or (args.check and not all(goals.values())) else 0


if __name__ == "__main__":
    sys.exit(main())
