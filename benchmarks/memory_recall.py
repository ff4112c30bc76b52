"""Issue #15: quality of caller memory. recall@3 of memory search, memories per call, share of filler.

    .venv/bin/python benchmarks/memory_recall.py            # prints a JSON report and markdown rows
    .venv/bin/python benchmarks/memory_recall.py --misses   # also every question that missed, with its top 3

Calls: the shipped transcription fixture (caller +16125550142) and two long calls written for this
benchmark (``memory_recall_calls.py``: 100+ turns each, a caller talking about their life, fillers
between the facts, facts said twice, an agent that repeats what it heard). The long call A is the
same caller as the fixture, so its search spans two calls.

Question set: 51 questions (3 on the fixture, 24 per long call), asked as an agent would, in the third
person ("Where did she grow up?"). A question is answered when one of the top 3 memories contains its
``needle`` (the words of the turn or fact that answers it).

Modes, each into a fresh in-memory offline store (Qdrant in memory, the int8 ONNX MiniLM embedder):
- ``before``: what CallVault stored until #15: one factual memory (summary, evaluations, all collected
  values) and every transcript turn as said, agent's and caller's (infer=False), searched with the question.
- ``after``: the offline extractor (``services.memory.extract``) searched through the read path
  (``caller_memories``: the question in the caller's words).
- ``after_raw_query``: the extractor's memories searched with the question as asked, to tell the two
  changes apart.

Filler: a memory whose text is one of the caller's filler lines ("Yes.", "OK?", "I...", "My God." ...).
Agent lines (the agent's turns stored as memories) are counted separately.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from memory_recall_calls import CALLS, FILLERS, FIXTURE_QUESTIONS, Question  # noqa: E402

FIXTURE_PHONE = "+16125550142"
K = 3


def raw_items(data: dict[str, Any]) -> list[Any]:
    """The memories of one call as CallVault built them before #15 (infer=False, every turn)."""
    from services.memory.domain import AGENT_KEY, MemoryItem, Role, build_conversation_memories
    from services.memory.extract import present, scalar

    built = build_conversation_memories(data)
    base = {"conversation_id": built.conversation_id, AGENT_KEY: built.agent_id, "started_at": built.started_at}
    analysis = data.get("analysis") or {}
    lines = []
    if analysis.get("transcript_summary"):
        lines.append("Call summary: " + " ".join(analysis["transcript_summary"].split()))
    results = [
        f"{k}: {scalar(v.get('result'))}"
        for k, v in (analysis.get("evaluation_criteria_results") or {}).items()
        if present(v.get("result"))
    ]
    if results:
        lines.append("Evaluation results: " + "; ".join(results))
    collected = [
        f"{k}: {scalar(v.get('value'))}"
        for k, v in (analysis.get("data_collection_results") or {}).items()
        if present(v.get("value"))
    ]
    if collected:
        lines.append("Data collected: " + "; ".join(collected))
    items = [MemoryItem("\n".join(lines)[:4000], "assistant", "factual", {**base, "type": "factual"})]
    for n, turn in enumerate(data.get("transcript") or []):
        text = turn.get("message")
        if isinstance(text, str) and any(ch.isalnum() for ch in text):
            role: Role = "assistant" if turn.get("role") == "agent" else "user"
            items.append(MemoryItem(" ".join(text.split()), role, "semantic", {**base, "type": "semantic", "turn": n}))
    return items


def documents() -> list[tuple[str, dict[str, Any], list[Question]]]:
    fixture = json.loads((ROOT / "tests/fixtures/elevenlabs/post_call_transcription.json").read_bytes())
    calls = [("fixture post_call_transcription", fixture["data"], FIXTURE_QUESTIONS)]
    calls += [(call.name, call.envelope()["data"], call.questions) for call in CALLS]
    return calls


def run(mode: str, embedder: Any, show_misses: bool) -> dict[str, Any]:
    from services.memory.domain import build_conversation_memories
    from services.memory.mem0_oss import Mem0OssMemoryStore
    from services.memory.service import caller_memories

    store = Mem0OssMemoryStore(None, embedder=embedder)
    fillers = {f.lower() for f in FILLERS}
    per_call: list[dict[str, Any]] = []
    misses: list[dict[str, Any]] = []
    hits_total = asked_total = 0
    started = time.perf_counter()
    calls = documents()
    for _, data, _ in calls:  # every call first: a caller's search spans all their calls
        built = build_conversation_memories(data)
        items = raw_items(data) if mode == "before" else list(built.items)
        store.add_conversation(built.phone or FIXTURE_PHONE, built.conversation_id, items)
        per_call.append(
            {
                "memories": len(items),
                "filler": sum(i.role == "user" and i.text.lower() in fillers for i in items),
                "agent_lines": sum(i.role == "assistant" and i.type == "semantic" for i in items),
                "turns": len(data.get("transcript") or []),
            }
        )
    add_secs = time.perf_counter() - started
    for (name, data, questions), stats in zip(calls, per_call, strict=True):
        phone = build_conversation_memories(data).phone or FIXTURE_PHONE
        hits = 0
        for question in questions:
            if mode == "after":
                found = caller_memories(phone, store=store, query=question.text, limit=K).items
            else:
                found = store.search(phone, question.text, None, K)
            ok = any(question.needle.lower() in m.text.lower() for m in found[:K])
            hits += ok
            if not ok and show_misses:
                top = [m.text[:90] for m in found]
                misses.append({"call": name, "q": question.text, "needle": question.needle, "top": top})
        stats.update(call=name, questions=len(questions), hits=hits, recall_at_3=round(hits / len(questions), 3))
        hits_total += hits
        asked_total += len(questions)
    store.close()
    memories = sum(s["memories"] for s in per_call)
    long_calls = per_call[1:]
    return {
        "mode": mode,
        "recall_at_3": round(hits_total / asked_total, 3),
        "questions": asked_total,
        "memories_per_long_call": round(sum(s["memories"] for s in long_calls) / len(long_calls), 1),
        "filler_share": round(sum(s["filler"] for s in per_call) / memories, 3),
        "agent_line_share": round(sum(s["agent_lines"] for s in per_call) / memories, 3),
        "add_secs": round(add_secs, 2),
        "calls": per_call,
        **({"misses": misses} if show_misses else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--misses", action="store_true", help="list the questions each mode missed")
    args = parser.parse_args()
    from services.memory.embedder import OnnxMiniLmEmbedder

    embedder = OnnxMiniLmEmbedder()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "services/memory", "benchmarks/memory_recall*"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    report: dict[str, Any] = {
        "commit": commit.strip() + ("+dirty" if dirty.strip() else ""),
        "load_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "modes": [run(mode, embedder, args.misses) for mode in ("before", "after_raw_query", "after")],
    }
    report["load_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    for mode in report["modes"]:
        hits = sum(c["hits"] for c in mode["calls"])
        print(
            f"| {mode['mode']} | {mode['recall_at_3']:.2f} ({hits}/{mode['questions']}) "
            f"| {mode['memories_per_long_call']} | {mode['filler_share']:.1%} | {mode['agent_line_share']:.1%} "
            f"| {report['commit']} | {report['load_1min']} |"
        )


if __name__ == "__main__":
    main()
