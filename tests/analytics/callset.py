"""A small, varied set of calls built from the real fixture, and the expected report numbers
computed straight from the payloads (never from the analytics rows the code under test writes)."""

import copy
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.analytics.writer import AnalyticsWriter
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.domain.models import WebhookEvent
from services.ingest.service import Archiver
from tests.support import INITIATION_FAILURE, TRANSCRIPTION, fixture_json

BASE = int(datetime(2025, 7, 1, 9, 0, tzinfo=UTC).timestamp())
DAY = 86400
AGENTS = [("agent_alpha", "Alpha"), ("agent_beta", "Beta"), ("agent_gamma", None)]
# How each caller appears in payloads, and its E.164 form. None: a web call without a number.
PHONES: list[tuple[str | None, str | None]] = [
    ("+16125550101", "+16125550101"),
    ("+1 612 555 0102", "+16125550102"),
    ("(612) 555-0103", "+16125550103"),
    ("+16125550101", "+16125550101"),
    (None, None),
]
OUTCOMES = ["success", "failure", "unknown", "success", "success"]
CRITERIA = ["resolved", "polite", "verified"]
TEXTS = [
    "Hello, how can I help?",
    "I want a REFUND for last month.",
    "Let me check that for you.",
    "Can I get my money back? A refund, I mean.",
    "Thanks, goodbye.",
]


@dataclass
class Call:
    envelope: dict[str, Any]
    phone: str | None  # expected E.164
    start: int
    is_failure: bool = False

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.envelope["data"]
        return data

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.start, tz=UTC).strftime("%Y-%m-%d")


def build_calls(count: int = 30) -> list[Call]:
    template = fixture_json(TRANSCRIPTION)
    calls: list[Call] = []
    for i in range(count):
        envelope = copy.deepcopy(template)
        data = envelope["data"]
        raw_phone, e164 = PHONES[i % len(PHONES)]
        agent_id, agent_name = AGENTS[(i // 2) % len(AGENTS)]
        start = BASE + (i % 4) * DAY + i * 97
        duration = 10 + i * 13
        data["conversation_id"] = f"conv_test{i:04d}"
        data["agent_id"] = agent_id
        if agent_name:
            data["agent_name"] = agent_name
        meta = data["metadata"]
        meta["start_time_unix_secs"] = start
        meta["call_duration_secs"] = duration
        meta["cost"] = duration * 3
        if i % 2 == 0:
            meta["cost_fiat"] = round(duration * 0.002, 4)
        if raw_phone is None:
            meta["phone_call"] = None
            data["conversation_initiation_client_data"]["dynamic_variables"].pop("system__caller_id", None)
        else:
            meta["phone_call"]["external_number"] = raw_phone
        data["analysis"]["call_successful"] = OUTCOMES[i % len(OUTCOMES)]
        data["analysis"]["evaluation_criteria_results"] = {
            c: {"criteria_id": c, "result": ["success", "failure", "unknown"][(i + n) % 3], "rationale": "r"}
            for n, c in enumerate(CRITERIA)
            if (i + n) % 5 != 4  # not every call is evaluated on every criterion
        }
        turns = []
        for t in range(1 + i % 5):
            turn = copy.deepcopy(data["transcript"][0])
            turn["role"] = "agent" if t % 2 == 0 else "user"
            turn["message"] = TEXTS[(i + t) % len(TEXTS)] if (i + t) % 7 else None
            turn["time_in_call_secs"] = t * 3
            turn["tool_calls"] = [{"tool_name": "lookup"}] if t == 2 else []
            turns.append(turn)
        data["transcript"] = turns
        envelope["event_timestamp"] = start + duration + 5
        calls.append(Call(envelope, e164, start))
    for j in range(2):
        failure = copy.deepcopy(fixture_json(INITIATION_FAILURE))
        failure["data"]["conversation_id"] = f"conv_fail{j:04d}"
        failure["event_timestamp"] = BASE + j * DAY + 50
        calls.append(Call(failure, "+16125550188", BASE + j * DAY + 50, is_failure=True))
    return calls


def ingest(calls: list[Call], analytics_root: Path) -> Archiver:
    archiver = Archiver(
        MemoryBlobStore(), MemoryCallIndex(), time.time, analytics=AnalyticsWriter(FsBlobStore(analytics_root))
    )
    for call in calls:
        envelope = call.envelope
        result = archiver.archive(WebhookEvent(envelope["type"], envelope["event_timestamp"], envelope["data"]))
        assert result.outcome == "stored"
    return archiver


# -- expected numbers, from the payloads ------------------------------------------------------------


def _outcome(call: Call) -> str:
    return "failure" if call.is_failure else str(call.data["analysis"]["call_successful"])


def _duration(call: Call) -> int:
    return 0 if call.is_failure else int(call.data["metadata"]["call_duration_secs"])


def _usd(call: Call) -> float | None:
    return None if call.is_failure else call.data["metadata"].get("cost_fiat")


def _credits(call: Call) -> int | None:
    return None if call.is_failure else int(call.data["metadata"]["cost"])


def _sum_or_none(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _by(calls: list[Call], key: Any) -> dict[Any, list[Call]]:
    groups: dict[Any, list[Call]] = defaultdict(list)
    for call in calls:
        groups[key(call)].append(call)
    return groups


def in_range(calls: list[Call], since: str | None, until: str | None) -> list[Call]:
    return [c for c in calls if (since is None or c.day >= since) and (until is None or c.day <= until)]


def expected_per_day(calls: list[Call]) -> dict[str, dict[str, Any]]:
    return {
        day: {
            "calls": len(group),
            "successful": sum(1 for c in group if _outcome(c) == "success"),
            "avg_duration_secs": sum(_duration(c) for c in group) / len(group),
            "total_duration_secs": sum(_duration(c) for c in group),
            "total_cost_usd": _sum_or_none([_usd(c) for c in group]),
            "total_cost_credits": _sum_or_none([_credits(c) for c in group]),
        }
        for day, group in _by(calls, lambda c: c.day).items()
    }


def expected_agents(calls: list[Call]) -> dict[str, dict[str, Any]]:
    result = {}
    for agent, group in _by(calls, lambda c: c.data["agent_id"]).items():
        known = [c for c in group if _outcome(c) in {"success", "failure"}]
        successes = sum(1 for c in group if _outcome(c) == "success")
        result[agent] = {
            "agent_name": next((c.data.get("agent_name") for c in group if c.data.get("agent_name")), None),
            "calls": len(group),
            "avg_duration_secs": sum(_duration(c) for c in group) / len(group),
            "total_duration_secs": sum(_duration(c) for c in group),
            "total_cost_usd": _sum_or_none([_usd(c) for c in group]),
            "total_cost_credits": _sum_or_none([_credits(c) for c in group]),
            "successful": successes,
            "failed": sum(1 for c in group if _outcome(c) == "failure"),
            "unknown": len(group) - len(known),
            "success_rate": successes / len(known) if known else None,
        }
    return result


def expected_callers(calls: list[Call]) -> dict[str, int]:
    return {phone: len(group) for phone, group in _by(calls, lambda c: c.phone).items() if phone is not None}


def expected_criteria(calls: list[Call]) -> dict[str, dict[str, Any]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"success": 0, "failure": 0, "unknown": 0})
    for call in calls:
        if call.is_failure:
            continue
        for item in call.data["analysis"]["evaluation_criteria_results"].values():
            counts[item["criteria_id"]][item["result"]] += 1
    return {
        criterion: {
            "evaluated": sum(c.values()),
            "passed": c["success"],
            "failed": c["failure"],
            "unknown": c["unknown"],
            "pass_rate": c["success"] / (c["success"] + c["failure"]) if c["success"] + c["failure"] else None,
        }
        for criterion, c in counts.items()
    }


def expected_keyword(calls: list[Call], word: str) -> set[tuple[str, int]]:
    return {
        (call.data["conversation_id"], index)
        for call in calls
        if not call.is_failure
        for index, turn in enumerate(call.data["transcript"])
        if turn["message"] and word.lower() in turn["message"].lower()
    }


def expected_history(calls: list[Call], phone: str) -> list[str]:
    mine = sorted((c for c in calls if c.phone == phone), key=lambda c: (-c.start, c.data["conversation_id"]))
    return [c.data["conversation_id"] for c in mine]


def iter_days(calls: list[Call]) -> Iterator[str]:
    return iter(sorted({c.day for c in calls}))
