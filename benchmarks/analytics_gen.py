"""Synthetic ElevenLabs calls for the analytics benchmarks: generated once, reused by every run.

Each call is a full ``post_call_transcription`` ``data`` document shaped like the real capture in
tests/fixtures (same fields, per-turn metrics and LLM usage), with turn counts and lengths that land
near the sizes ElevenLabs really sends (181 KB for 18 minutes and 161 turns, about 1.1 KB a turn).

Writes, under ``--out``:
- ``analytics/{table}/dt=.../{id}.json.gz``: the real bytes ``AnalyticsWriter`` writes (same
  ``rows``/``encode`` code; only the fsyncs of ``FsBlobStore`` are skipped, they change no byte);
- ``raw-sizes.csv``: ``conversation_id,dt,raw_bytes`` where ``raw_bytes`` is the exact size of the
  archive object ingest would write for the call (``orjson.dumps(data)``); the raw documents
  themselves are not kept (100,000 of them are several GB and only their sizes are needed).
- ``manifest.json``: parameters, so a second run with the same ones does nothing.

``compacted(out)`` makes ``{out}-compacted/analytics``: the same objects after the product's daily
compaction (``compact_closed_days``) at ``STEADY_NOW``, the end of the month's last day: the 28 closed
days are one ``day.compacted.json.gz`` per table, the last two (today and yesterday) still one
object per call. The per-call set is left as it is, for the benchmarks that read it.

    .venv/bin/python benchmarks/analytics_gen.py --calls 100000 --days 30 --out benchmarks/results/analytics-100k
"""

import argparse
import copy
import csv
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from services.analytics.compaction import compact_closed_days
from services.analytics.rows import encode, rows_for_call
from services.analytics.tables import object_key
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.domain import payload

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "elevenlabs" / "post_call_transcription.json"
END = datetime(2026, 11, 1, tzinfo=UTC)  # fixed, so every machine generates the same data
# The last second of the month's last day: that day ("today") and the one before are still open.
STEADY_NOW = END.timestamp() - 1
AGENTS = [(f"agent_bench{n:02d}{'x' * 18}", name) for n, name in enumerate(["Support", "Sales", "Billing", "Booking"])]
CRITERIA = ["issue_resolved", "polite_closing", "identity_verified", "no_hallucination", "followed_script"]
SENTENCES = [
    "Thanks for calling, how can I help you today?",
    "I was charged twice for my subscription last month.",
    "I would like a refund for the second charge, please.",
    "Let me look up your account, could you confirm your date of birth?",
    "Sure, it is the fourteenth of March.",
    "I can see the duplicate payment and I have started the process.",
    "How long will that take to show up on my card?",
    "Usually three to five business days, depending on your bank.",
    "Can I also move my appointment to next Tuesday afternoon?",
    "Of course, I have booked you in for Tuesday at three pm.",
    "The delivery never arrived and the tracking page shows nothing.",
    "I am sorry to hear that, I will open an investigation with the courier.",
    "Is there anything else I can help you with today?",
    "No, that is everything, thank you very much.",
    "Please hold on while I transfer you to a specialist.",
    "Our opening hours are eight to six, Monday to Friday.",
]


def _turn(role: str, text: str, at: int, rng: random.Random) -> dict[str, Any]:
    metrics = None
    usage = None
    tools: list[dict[str, Any]] = []
    if role == "agent":
        metrics = {
            "metrics": {
                "convai_llm_service_ttfb": {"elapsed_time": round(rng.uniform(0.2, 0.9), 6)},
                "convai_llm_service_ttf_sentence": {"elapsed_time": round(rng.uniform(0.3, 1.2), 6)},
                "convai_tts_service_ttfb": {"elapsed_time": round(rng.uniform(0.1, 0.4), 6)},
                "convai_asr_trailing_service_latency": {"elapsed_time": round(rng.uniform(0.05, 0.3), 6)},
                "convai_llm_service_tt_last_sentence": {"elapsed_time": round(rng.uniform(0.5, 2.0), 6)},
            }
        }
        usage = {
            "model_usage": {
                "gemini-2.0-flash": {
                    "input": {"tokens": rng.randint(800, 4000), "price": round(rng.uniform(0.0001, 0.0004), 8)},
                    "input_cache_read": {"tokens": 0, "price": 0.0},
                    "input_cache_write": {"tokens": 0, "price": 0.0},
                    "output_total": {"tokens": rng.randint(10, 80), "price": round(rng.uniform(0.00001, 0.0001), 8)},
                },
                "gpt-4o-mini": {  # the fallback / tool model, as in real multi-model captures
                    "input": {"tokens": rng.randint(100, 900), "price": round(rng.uniform(0.00001, 0.0001), 8)},
                    "input_cache_read": {"tokens": 0, "price": 0.0},
                    "input_cache_write": {"tokens": 0, "price": 0.0},
                    "output_total": {"tokens": rng.randint(0, 20), "price": round(rng.uniform(0.0, 0.00001), 8)},
                },
            }
        }
        if rng.random() < 0.08:
            tools.append(
                {
                    "type": "webhook",
                    "request_id": f"req_{rng.getrandbits(64):016x}",
                    "tool_name": rng.choice(["lookup_account", "create_refund", "book_slot"]),
                    "params_as_json": '{"account": "A-10023"}',
                    "tool_has_been_called": True,
                    "tool_details": None,
                }
            )
    return {
        "role": role,
        "message": text,
        "tool_calls": tools,
        "tool_results": [],
        "feedback": None,
        "llm_override": None,
        "time_in_call_secs": at,
        "conversation_turn_metrics": metrics,
        "rag_retrieval_info": None,
        "llm_usage": usage,
        "interrupted": rng.random() < 0.1,
        "original_message": text if role == "agent" else None,  # real agent turns repeat the text here
        "source_medium": "audio" if role == "user" else None,
        "agent_metadata": {"agent_id": "agent_bench", "workflow_node_id": None} if role == "agent" else None,
        "multivoice_message": None,
    }


def make_call(n: int, rng: random.Random, template: dict[str, Any], start: int, callers: list[str]) -> dict[str, Any]:
    data = copy.deepcopy(template)
    conversation_id = f"conv_bench{n:010d}"
    agent_id, agent_name = AGENTS[rng.choices(range(len(AGENTS)), weights=[5, 3, 2, 1])[0]]
    duration = int(min(1800, max(5, rng.lognormvariate(math.log(150), 0.8))))
    turns = max(2, min(180, duration // 9 + rng.randint(-2, 3)))
    phone = callers[min(len(callers) - 1, int(rng.paretovariate(1.2)) - 1)]
    outbound = rng.random() < 0.3
    data["conversation_id"] = conversation_id
    data["agent_id"] = agent_id
    data["agent_name"] = agent_name
    data["transcript"] = [
        _turn(
            "agent" if i % 2 == 0 else "user",
            " ".join(rng.choice(SENTENCES) for _ in range(rng.randint(1, 4) if i % 2 == 0 else rng.randint(1, 2))),
            duration * i // turns,
            rng,
        )
        for i in range(turns)
    ]
    meta = data["metadata"]
    meta["start_time_unix_secs"] = start
    meta["accepted_time_unix_secs"] = start
    meta["call_duration_secs"] = duration
    meta["cost"] = duration * 10
    meta["cost_fiat"] = round(duration * 0.0015, 4)
    meta["termination_reason"] = rng.choice(["Client disconnected: 1000", "end_call tool was called.", "Call ended"])
    meta["phone_call"]["external_number"] = phone
    meta["phone_call"]["direction"] = "outbound" if outbound else "inbound"
    meta["phone_call"]["call_sid"] = f"CA{n:032d}"
    analysis = data["analysis"]
    outcome = rng.choices(["success", "failure", "unknown"], weights=[70, 20, 10])[0]
    analysis["call_successful"] = outcome
    analysis["transcript_summary"] = " ".join(rng.choice(SENTENCES) for _ in range(5))
    analysis["call_summary_title"] = rng.choice(["Refund request", "Booking change", "Missing delivery"])
    analysis["evaluation_criteria_results"] = {
        c: {
            "criteria_id": c,
            "result": rng.choices(["success", "failure", "unknown"], weights=[75, 15, 10])[0],
            "rationale": rng.choice(SENTENCES) + " " + rng.choice(SENTENCES),
        }
        for c in CRITERIA
    }
    variables = data["conversation_initiation_client_data"]["dynamic_variables"]
    variables["system__conversation_id"] = conversation_id
    variables["system__caller_id"] = phone
    variables["system__call_duration_secs"] = duration
    return data


def _work(args: tuple[int, int, int, int, str, int]) -> list[tuple[str, str, int]]:
    first, last, calls, days, out, seed = args
    template = orjson.loads(FIXTURE.read_bytes())["data"]
    rng = random.Random(seed * 1_000_003 + first)
    callers = [f"+1612555{n:04d}" for n in range(min(9999, max(50, calls // 10)))]
    end = int(END.timestamp())
    span = days * 86400
    sizes: list[tuple[str, str, int]] = []
    root = Path(out) / "analytics"
    for n in range(first, last):
        start = end - span + rng.randrange(span)
        data = make_call(n, rng, template, start, callers)
        raw_bytes = len(orjson.dumps(data))  # exactly what Archiver writes to the archive
        record = payload.call_from_transcription(data, start + duration_of(data))
        rows = rows_for_call(data, record, has_audio=rng.random() < 0.9, fallback_start=start)
        for table, table_rows in rows.by_table().items():
            path = root / object_key(table, rows.dt, rows.conversation_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(table, table_rows))
        sizes.append((rows.conversation_id, rows.dt, raw_bytes))
    return sizes


def duration_of(data: dict[str, Any]) -> int:
    return int(data["metadata"]["call_duration_secs"])


def generate(calls: int, days: int, out: Path, seed: int = 7, workers: int = 2) -> Path:
    manifest = out / "manifest.json"
    wanted = {"calls": calls, "days": days, "seed": seed, "end": END.date().isoformat(), "version": 2}
    if manifest.exists() and json.loads(manifest.read_text()) == wanted:
        return out
    out.mkdir(parents=True, exist_ok=True)
    chunk = 2000
    jobs = [(a, min(a + chunk, calls), calls, days, str(out), seed) for a in range(0, calls, chunk)]
    started = time.monotonic()
    with (out / "raw-sizes.csv").open("w", newline="") as handle, ProcessPoolExecutor(workers) as pool:
        writer = csv.writer(handle)
        writer.writerow(["conversation_id", "dt", "raw_bytes"])
        done = 0
        for sizes in pool.map(_work, jobs):
            writer.writerows(sizes)
            done += len(sizes)
            print(f"\r{done}/{calls} calls ({time.monotonic() - started:.0f} s)", end="", flush=True)
    print()
    manifest.write_text(json.dumps(wanted))
    return out


def compacted(out: Path, now: float = STEADY_NOW) -> tuple[Path, float]:
    """``(folder holding analytics/, seconds the compaction took)``, made once and then reused.

    The copy is hard links: the product never writes a file in place (a new file renamed over the
    key, deletes unlink), so compacting the copy leaves the per-call set's files as they were.
    """
    dst = out.with_name(out.name + "-compacted")
    manifest = dst / "manifest.json"
    wanted = {"source": json.loads((out / "manifest.json").read_text()), "now": now, "version": 1}
    if manifest.exists():
        done = json.loads(manifest.read_text())
        seconds = done.pop("compaction_s", None)
        if done == wanted and seconds is not None:
            return dst, float(seconds)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(out / "analytics", dst / "analytics", copy_function=os.link)
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        print(f"\rcompacting {dst.name}: {done}/{total} days x tables ({elapsed:.0f} s)", end="", flush=True)

    compact_closed_days(FsBlobStore(dst / "analytics"), now=now, progress=progress)
    seconds = time.monotonic() - started
    print()
    manifest.write_text(json.dumps({**wanted, "compaction_s": seconds}))
    return dst, seconds


def raw_sizes(out: Path) -> Iterator[tuple[str, str, int]]:
    with (out / "raw-sizes.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            yield row["conversation_id"], row["dt"], int(row["raw_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/analytics-100k"))
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    generate(args.calls, args.days, args.out, workers=args.workers)


if __name__ == "__main__":
    main()
