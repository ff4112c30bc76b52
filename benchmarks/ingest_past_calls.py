"""Past calls (dated on one long-closed, already-compacted day) vs live calls, by webhook and by import.

    .venv/bin/python benchmarks/ingest_past_calls.py                         # 400 calls per phase
    .venv/bin/python benchmarks/ingest_past_calls.py --code-root /tmp/cv-base --paths import --calls 200

The same long calls (``long_call.LongCall``: ~115 turns, ~180 KB) are sent twice per path: dated
now ("live") and dated ``--days-ago`` days ago ("past", spread over that UTC day). Before that,
each path's fresh data dir gets ``--seed-calls`` calls of that past day imported and the day
merged (``callvault compact-analytics``), so the past calls land in an already-compacted day, as
a late sync or an import of an export does.

- webhook: the real ``callvault serve`` (memory on unless ``--memory off``; its compactor runs as
  it does in production, nudged by late writes), ``--concurrency`` keep-alive clients from a
  second process; first the live calls, then the past ones. Rate, quarters (by completion order)
  and the server's CPU per call (utime + stime, /proc) for each phase.
- import: ``python -m services.cli import DIR`` of the tree under test (one process, one call at a
  time), once for a folder of live envelopes and once for the past ones. When each call was
  stored is read from its archive file's mtime, so the quarters need no change to the importer;
  its CPU (the child's rusage) is per call including interpreter start.

Goals (issue #10): past calls at the live rate within 20%, on each path; and the last quarter of
the past calls no slower than 1.5x their first quarter (no cost that grows with the day's size).
"""

import argparse
import itertools
import json
import resource
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
    CallPlan,
    CodeUnderTest,
    LoadResult,
    loadavg,
    percentile,
    pressure,
    quarters,
    render_all,
    run_load,
    serve,
    wait_quiet,
)

GOAL_SAME_RATE = 0.20
GOAL_QUARTER_RATIO = 1.5
DAY = 86_400


def day_start(days_ago: int) -> int:
    return (int(time.time()) // DAY - days_ago) * DAY


def write_envelopes(plan: CallPlan, count: int, folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    size = 0
    for i, (_cid, body) in enumerate(render_all(plan, count)):
        (folder / f"{i:05d}.json").write_bytes(body)
        size += len(body)
    return size // max(count, 1)


def cli(code: CodeUnderTest, *args: str, timeout: float) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run ``python -m services.cli ARGS`` of the tree under test; (wall s, CPU s of the child, result)."""
    env = code.env({"CALLVAULT_MEMORY_BACKEND": "none"})
    env.pop("CI", None)  # no progress bar
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=code.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    wall = time.perf_counter() - started
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    if done.returncode:
        raise SystemExit(f"callvault {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, cpu, done


def seed_closed_day(code: CodeUnderTest, data_dir: Path, plan: CallPlan, count: int, scratch: Path) -> dict[str, Any]:
    """Import ``count`` calls of the past day and merge the day: the day object exists afterwards."""
    folder = scratch / f"seed-{data_dir.name}"
    write_envelopes(plan, count, folder)
    cli(code, "import", str(folder), "--data-dir", str(data_dir), timeout=600)
    cli(code, "compact-analytics", "--data-dir", str(data_dir), timeout=600)
    # The envelopes stay until the run ends: deleting files here would tax the next phase's file
    # creation on ext4 without a journal (harness.measure_floor).
    merged = sorted(str(p.relative_to(data_dir)) for p in (data_dir / "analytics").rglob("*") if "compact" in p.name)
    if not merged:
        raise SystemExit("seeding did not leave a compacted day object: is the day closed? (--days-ago >= 3)")
    return {"calls": count, "day_objects": merged}


def archive_mtimes(data_dir: Path, tag: str) -> list[float]:
    """When each call of ``tag`` was stored: its transcript file's mtime, seconds, sorted."""
    return sorted(p.stat().st_mtime_ns / 1e9 for p in (data_dir / "archive").rglob(f"conv_{tag}*.json"))


def quarter_ratio(spans: list[float]) -> float | None:
    return round(spans[3] / spans[0], 2) if len(spans) == 4 and spans[0] > 0 else None


def import_startup(code: CodeUnderTest, data_dir: Path, scratch: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``callvault import`` of an empty folder: interpreter start and wiring."""
    empty = scratch / "empty"
    empty.mkdir(exist_ok=True)
    wall, cpu, _done = cli(code, "import", str(empty), "--data-dir", str(data_dir), timeout=300)
    return wall, cpu


def import_phase(
    code: CodeUnderTest, data_dir: Path, plan: CallPlan, count: int, scratch: Path, startup: tuple[float, float]
) -> dict[str, Any]:
    folder = scratch / f"import-{plan.tag}"
    body_bytes = write_envelopes(plan, count, folder)
    load0 = loadavg()
    wall, cpu, done = cli(code, "import", str(folder), "--data-dir", str(data_dir), timeout=1800)
    stamps = archive_mtimes(data_dir, plan.tag)
    # Quarters over completion times, from the first call stored to the last (interpreter start-up is
    # not the importer's pace): four equal runs of (n-1)/4 intervals between consecutive calls.
    spans: list[float] = []
    if len(stamps) >= 8:
        marks = [stamps[round(q * (len(stamps) - 1) / 4)] for q in range(5)]
        spans = [round(b - a, 3) for a, b in itertools.pairwise(marks)]
    active = stamps[-1] - stamps[0] if len(stamps) > 1 else float("nan")
    return {
        "path": "import",
        "phase": plan.tag,
        "calls": count,
        "stored": len(stamps),
        "body_bytes": body_bytes,
        "process_wall_s": round(wall, 2),
        "calls_per_s": round((len(stamps) - 1) / active, 1) if active and active > 0 else None,
        "quarters_s": spans,
        "last_to_first_quarter": quarter_ratio(spans),
        "cpu_ms_per_call_incl_startup": round(1000 * cpu / count, 2),
        "cpu_ms_per_call": round(1000 * (cpu - startup[1]) / count, 2),
        "startup_wall_cpu_s": [round(startup[0], 2), round(startup[1], 2)],
        "summary": done.stderr.strip()[-600:],
        "loadavg": [round(x, 2) for x in (*load0[:1], *loadavg()[:1])],
        "pressure_end": pressure(),
    }


def webhook_phase(load: LoadResult, tag: str, count: int) -> dict[str, Any]:
    ok_done = [t for t, code in zip(load.done_at, load.codes, strict=True) if code == 200]
    spans = quarters(ok_done, count) if load.ok >= count else []
    latencies = [ms for ms, code in zip(load.latencies_ms, load.codes, strict=True) if code == 200]
    return {
        "path": "webhook",
        "phase": tag,
        "calls": count,
        "ok": load.ok,
        "statuses": load.statuses,
        "seconds": round(load.elapsed_s, 2),
        "calls_per_s": round(load.ok / load.elapsed_s, 1) if load.elapsed_s else None,
        "quarters_s": spans,
        "last_to_first_quarter": quarter_ratio(spans),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "server_cpu_ms_per_call": round(1000 * load.server_cpu_s / load.ok, 2) if load.ok else None,
        "server_threads_ms_per_call": {k: round(1000 * v / load.ok, 2) for k, v in load.server_threads_s.items()}
        if load.ok
        else {},
        "loadavg": [round(load.loadavg_start[0], 2), round(load.loadavg_end[0], 2)],
        "pressure_end": load.pressure_end,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--code-root", type=Path, default=ROOT, help="the CallVault tree [this checkout]")
    parser.add_argument("--calls", type=int, default=400, help="calls per phase (40-2000) [400]")
    parser.add_argument("--days-ago", type=int, default=30, help="the past day (3-365) [30]")
    parser.add_argument("--seed-calls", type=int, default=100, help="calls merged into that day first (1-2000) [100]")
    parser.add_argument("--paths", default="webhook,import", help="webhook, import or both [webhook,import]")
    parser.add_argument("--memory", choices=("on", "off"), default="on", help="caller memory in serve [on]")
    parser.add_argument("--concurrency", type=int, default=4, help="webhook clients (1-16) [4]")
    parser.add_argument("--max-seconds", type=float, default=300, help="cap per webhook phase (10-1800 s) [300]")
    parser.add_argument("--data-root", type=Path, default=None, help="where the temp dirs go [system temp]")
    parser.add_argument("--save", type=Path, default=None, help="write the JSON report into this folder")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not set(paths) <= {"webhook", "import"} or not paths:
        parser.error("--paths takes webhook, import or both")
    if not (40 <= args.calls <= 2000 and 3 <= args.days_ago <= 365 and 1 <= args.seed_calls <= 2000):
        parser.error("--calls 40-2000, --days-ago 3-365, --seed-calls 1-2000")
    if not (1 <= args.concurrency <= 16 and 10 <= args.max_seconds <= 1800):
        parser.error("--concurrency 1-16, --max-seconds 10-1800")

    code = CodeUnderTest.at(args.code_root)
    resolved = code.check_resolution(code.env())
    past_day = day_start(args.days_ago)
    seed = CallPlan("seed", day_start=past_day, template_seed=100)
    live = CallPlan("live")
    past = CallPlan("past", day_start=past_day)
    load_before = loadavg()
    phases: list[dict[str, Any]] = []
    seeded: dict[str, Any] = {}
    scratch = Path(tempfile.mkdtemp(prefix="cv-past-", dir=args.data_root))
    try:
        if "import" in paths:
            data_dir = scratch / "import-data"
            seeded["import"] = seed_closed_day(code, data_dir, seed, args.seed_calls, scratch)
            startup = import_startup(code, data_dir, scratch)
            for plan in (live, past):
                phases.append(import_phase(code, data_dir, plan, args.calls, scratch, startup))
                print(_line(phases[-1]), flush=True)
        if "webhook" in paths:
            data_dir = scratch / "webhook-data"
            seeded["webhook"] = seed_closed_day(code, data_dir, seed, args.seed_calls, scratch)
            with serve(code, data_dir, memory=args.memory == "on", log_path=scratch / "serve.log") as served:
                wait_quiet(served.pid)
                run_load(served, CallPlan("warm"), args.concurrency, 2.0, 200, warmup=1)
                for plan in (live, past):
                    load = run_load(served, plan, args.concurrency, args.max_seconds, args.calls)
                    phases.append(webhook_phase(load, plan.tag, args.calls))
                    print(_line(phases[-1]), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    report: dict[str, Any] = {
        "script": "ingest_past_calls",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": code.label,
        "services_loaded_from": resolved,
        "memory": args.memory,
        "past_day": time.strftime("%Y-%m-%d", time.gmtime(past_day)),
        "seeded": seeded,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "phases": phases,
        "goals": {},
    }
    print(f"\n## ingest_past_calls: {code.label}, {report['date']}\n")
    print(
        f"services loaded from {resolved}; {args.calls} calls per phase (~180 KB, 115 turns); past day "
        f"{report['past_day']} ({args.days_ago} days ago), {args.seed_calls} calls merged into it first; "
        f"webhook: memory {args.memory}, {args.concurrency} clients"
    )
    print(f"load average (1 min) before {load_before[0]:.2f}, after {report['loadavg_after'][0]:.2f}\n")
    print(
        "| path | calls dated | stored | calls/s | quarters, s (Q1..Q4) | Q4/Q1 "
        "| CPU ms/call (server; importer net of start-up) | load avg |"
    )
    print("|---|---|---:|---:|---|---:|---:|---|")
    for phase in phases:
        cpu = phase.get("server_cpu_ms_per_call") or phase.get("cpu_ms_per_call")
        stored = phase.get("ok", phase.get("stored"))
        print(
            f"| {phase['path']} | {phase['phase']} | {stored} | {phase['calls_per_s']} | "
            f"{' / '.join(str(q) for q in phase['quarters_s']) or '-'} | {phase['last_to_first_quarter']} | {cpu} "
            f"| {' -> '.join(str(x) for x in phase['loadavg'])} |"
        )
    print("\n| goal | target | measured | |")
    print("|---|---|---|---|")
    verdict = {True: "met", False: "**MISSED**"}
    for path in paths:
        by = {p["phase"]: p for p in phases if p["path"] == path}
        if "live" in by and "past" in by and by["live"]["calls_per_s"] and by["past"]["calls_per_s"]:
            change = by["past"]["calls_per_s"] / by["live"]["calls_per_s"] - 1
            ok = abs(change) <= GOAL_SAME_RATE or change > 0
            report["goals"][f"{path}_same_rate"] = ok
            print(
                f"| {path}: past rate vs live | within {GOAL_SAME_RATE:.0%} | {by['past']['calls_per_s']} vs "
                f"{by['live']['calls_per_s']} calls/s ({change:+.0%}) | {verdict[ok]} |"
            )
        ratio = by.get("past", {}).get("last_to_first_quarter")
        ok = ratio is not None and ratio <= GOAL_QUARTER_RATIO
        report["goals"][f"{path}_quarters"] = ok
        print(
            f"| {path}: past Q4 / Q1 | <= {GOAL_QUARTER_RATIO}x | {ratio if ratio is not None else 'incomplete'} "
            f"| {verdict[ok]} |"
        )
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        out = args.save / f"ingest_past_calls-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        print(f"\nwrote {out}")
    return 1 if args.check and not all(report["goals"].values()) else 0


def _line(phase: dict[str, Any]) -> str:
    return (
        f"{phase['path']:>7} {phase['phase']:>4}: {phase['calls_per_s']} calls/s, quarters {phase['quarters_s']}, "
        f"Q4/Q1 {phase['last_to_first_quarter']}, load {phase['loadavg']}"
    )


if __name__ == "__main__":
    sys.exit(main())
