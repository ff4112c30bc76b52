"""Issue #11: `callvault sync` of 10,000 conversations from the stand-in ElevenLabs API.

    .venv/bin/python benchmarks/sync.py                       # 10,000 calls, 1,000 of them imported first
    .venv/bin/python benchmarks/sync.py --calls 2000 --imported 200 --save /tmp/bench
    .venv/bin/python benchmarks/sync.py --code-root /tmp/cv-head   # a clean copy: git archive HEAD, + .commit

The stand-in API (tests/support_elevenlabs.py, real HTTP on 127.0.0.1) runs in this process and serves
long, real-shaped documents (``long_call.py``: 115 turns, ~180 KB, 8 variants, 50 callers) and a 16 KiB
MP3 per call (small on purpose: 10,000 real recordings would fill the disk; streaming a long call's
audio is measured by ``audio_stream_rss.py``). The sync is the real CLI (``python -m services.cli sync
--json``) of this checkout in its own process, at the default concurrency (4) unless told otherwise.

Three runs on one fresh data dir:
1. **first sync**: ``--imported`` calls were archived before by ``callvault import`` of their GET JSON
   (transcript, no audio: what a lost audio webhook leaves); the rest is missing. Expected requests: one
   list page per 100 calls, one GET per missing call, one audio GET per missing audio, nothing else.
2. **re-run** of the same window (``--since``): expected one list page per 100 calls and nothing else.
3. **scheduled run** (no ``--since``: from the watermark minus the overlap): the cost of a sync every 15
   minutes when nothing is new.

Prints, per run: wall seconds, conversations/s (listed / wall), the stand-in's request counts and
requests per conversation, the CLI's CPU seconds, and the load average before and after.
"""

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for path in (str(BENCH_DIR), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)

from harness import CodeUnderTest  # noqa: E402
from long_call import LongCall, caller_phone  # noqa: E402

from tests.support_elevenlabs import API_KEY, T0, ElevenLabsStandIn  # noqa: E402

VARIANTS = 8
CALLERS = 50


def long_call_extra(seed: int) -> dict[str, Any]:
    """A long call's document minus what each conversation sets itself (id, start, number)."""
    call = LongCall.build(seed=seed)
    data: dict[str, Any] = json.loads(call.render("conv_placeholder", "+16125550142", started_at=T0))["data"]
    for key in ("conversation_id", "agent_id", "status"):
        data.pop(key)
    data["has_audio"] = True
    metadata = data["metadata"]
    for key in ("start_time_unix_secs", "accepted_time_unix_secs"):
        metadata.pop(key)
    metadata["phone_call"].pop("external_number")
    metadata["phone_call"].pop("direction", None)
    variables = data["conversation_initiation_client_data"]["dynamic_variables"]
    for key in ("system__conversation_id", "system__caller_id", "system__agent_id"):
        variables.pop(key, None)
    return data


def populate(api: ElevenLabsStandIn, calls: int) -> list[str]:
    ids: list[str] = []
    per_variant = math.ceil(calls / VARIANTS)
    for variant in range(VARIANTS):
        count = min(per_variant, calls - len(ids))
        if count <= 0:
            break
        first = len(ids)

        def phone_of(n: int, first: int = first) -> str:
            return caller_phone((first + n) % CALLERS)

        ids += api.add_many(
            count,
            start=T0 + first * 60,
            step=60,
            id_prefix=f"conv_bench_sync_{variant}_",
            phone_of=phone_of,
            extra=long_call_extra(variant),
        )
    return ids


def cli(
    code: CodeUnderTest, args: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``callvault ARGS``; its result, wall seconds and CPU seconds (user + system of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=code.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"callvault {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return done, wall, cpu


def measure(
    name: str, api: ElevenLabsStandIn, code: CodeUnderTest, data_dir: Path, env: dict[str, str], extra: list[str]
) -> dict[str, Any]:
    api.reset_counts()
    load_before = os.getloadavg()[0]
    done, wall, cpu = cli(code, ["sync", "--json", "--data-dir", str(data_dir), *extra], env)
    load_after = os.getloadavg()[0]
    summary = json.loads(done.stdout)
    requests = api.requests
    listed = summary["listed"]
    row = {
        "run": name,
        "listed": listed,
        "new": summary["new"],
        "audio_fetched": summary["audio_fetched"],
        "already_complete": summary["already_complete"],
        "failed": len(summary["failed"]),
        "wall_s": round(wall, 2),
        "conversations_per_s": round(listed / wall, 1) if listed else None,
        "cli_cpu_s": round(cpu, 2),
        "cli_cpu_ms_per_conversation": round(cpu * 1000 / listed, 2) if listed else None,
        "requests": requests,
        "requests_per_conversation": round(sum(requests.values()) / listed, 4) if listed else None,
        "expected": {
            "list": max(1, math.ceil(listed / 100)),
            "get": summary["new"] + summary["updated"],
            "audio": summary["audio_fetched"],
            "delete": 0,
            "other": 0,
        },
        "load_1min": [round(load_before, 2), round(load_after, 2)],
    }
    row["as_expected"] = requests == row["expected"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000, help="conversations upstream (100-50,000)")
    parser.add_argument("--imported", type=int, default=1_000, help="of those, archived first without audio")
    parser.add_argument("--concurrency", type=int, default=4, help="callvault sync --concurrency (1-32)")
    parser.add_argument(
        "--code-root", type=Path, default=ROOT, help="the tree to measure (e.g. `git archive HEAD` extracted)"
    )
    parser.add_argument("--save", type=Path, help="write the results as JSON into this folder")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (printed)")
    args = parser.parse_args(argv)
    if not 100 <= args.calls <= 50_000 or not 0 <= args.imported <= args.calls or not 1 <= args.concurrency <= 32:
        parser.error("--calls 100-50,000, --imported 0..calls, --concurrency 1-32")

    code = CodeUnderTest.at(args.code_root)
    work = Path(tempfile.mkdtemp(prefix="callvault-bench-sync-"))
    data_dir = work / "data"
    print(f"code {code.label}, {os.cpu_count()} CPUs, data dir {data_dir}", flush=True)
    results: dict[str, Any] = {"commit": code.label, "calls": args.calls, "concurrency": args.concurrency}
    try:
        with ElevenLabsStandIn() as api:
            started = time.perf_counter()
            ids = populate(api, args.calls)
            print(f"stand-in: {len(ids)} conversations in {time.perf_counter() - started:.1f} s", flush=True)
            sample = json.dumps(api.document(ids[0])).encode()
            results["document_bytes"] = len(sample)
            results["document_turns"] = len(api.document(ids[0])["transcript"])
            env = code.env(
                {
                    "ELEVENLABS_API_KEY": API_KEY,
                    "CALLVAULT_ELEVENLABS_BASE_URL": api.url,
                    "CALLVAULT_MEMORY_BACKEND": "none",
                    "CI": "",
                }
            )
            if args.imported:
                exports = work / "exports"
                exports.mkdir()
                for cid in ids[: args.imported]:
                    (exports / f"{cid}.json").write_bytes(json.dumps(api.document(cid)).encode())
                _, wall, _ = cli(code, ["import", str(exports), "--data-dir", str(data_dir)], env)
                print(f"imported {args.imported} transcripts (no audio) in {wall:.1f} s", flush=True)
            since = ["--since", str(T0 - 60), "--concurrency", str(args.concurrency)]
            runs = [
                ("first sync", since),
                ("re-run, same window", since),
                ("scheduled (watermark)", ["--concurrency", str(args.concurrency)]),
            ]
            results["runs"] = []
            for name, extra in runs:
                row = measure(name, api, code, data_dir, env, extra)
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    columns = "listed | wall s | conversations/s | list | get | audio | other | per conversation | as budgeted"
    print(f"| run ({code.label}) | {columns} | CLI CPU ms/conv | load 1 min |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for row in results["runs"]:
        r = row["requests"]
        print(
            f"| {row['run']} | {row['listed']} | {row['wall_s']} | {row['conversations_per_s']} | {r['list']} | "
            f"{r['get']} | {r['audio']} | {r['other']} | {row['requests_per_conversation']} | "
            f"{'yes' if row['as_expected'] else 'no'} | {row['cli_cpu_ms_per_conversation']} | "
            f"{row['load_1min'][0]} → {row['load_1min'][1]} |"
        )
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        out = args.save / f"sync-{int(time.time())}.json"
        out.write_text(json.dumps(results, indent=2))
        print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
