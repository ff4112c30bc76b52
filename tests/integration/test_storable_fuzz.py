"""Storable values, end to end through the real local stores: every envelope is either refused with
``InvalidPayload`` before anything is written, or stored in a form every reader can use.

A seeded generator mutates the fields the index, the analytics tables and caller memory read, runs
each envelope through the parser and the real local archiver (files + SQLite + analytics tables),
and holds the outcome to an independent oracle of the documented ranges (docs/decisions.md).
"""

import copy
import json
import random
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.analytics.backfill import backfill_analytics
from services.analytics.rows import decode
from services.core.config import Settings
from services.core.domain import payload
from services.core.domain.errors import InvalidPayload
from services.core.wiring import build_analytics_store, build_storage
from services.ingest.service import Archiver
from services.ingest.wiring import build_archiver
from services.memory.domain import build_conversation_memories
from tests.support import TRANSCRIPTION, fixture_json

YEAR_10000 = 253_402_300_800
T_2000 = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())
T_2100 = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())


def test_storable_backfill_reports_an_unreadable_archived_document_instead_of_crashing(tmp_path: Path) -> None:
    # A document archived before these checks existed: backfill names it and carries on.
    settings = Settings(backend="local", data_dir=tmp_path / "data")
    storage = build_storage(settings)
    good = fixture_json(TRANSCRIPTION)["data"]
    bad = copy.deepcopy(good)
    bad["conversation_id"] = "conv_year_10000"
    bad["metadata"]["start_time_unix_secs"] = YEAR_10000
    storage.blobs.put_bytes("16125550142/conv_year_10000.json", json.dumps(bad).encode(), "application/json")
    storage.blobs.put_bytes(
        f"16125550142/{good['conversation_id']}.json", json.dumps(good).encode(), "application/json"
    )

    summary = backfill_analytics(storage.blobs, storage.index, build_analytics_store(settings))

    assert summary.calls == 1
    assert [name for name, _reason in summary.failed] == ["conv_year_10000.json"]
    assert "start_time_unix_secs" in summary.failed[0][1]


# --- the seeded property ------------------------------------------------------------------------


FIELDS: list[tuple[str, str]] = [
    ("metadata", "start_time_unix_secs"),
    ("metadata", "call_duration_secs"),
    ("metadata", "cost"),
    ("metadata", "cost_fiat"),
    ("envelope", "event_timestamp"),
    ("turn", "time_in_call_secs"),
    ("data", "agent_id"),
    ("data", "status"),
    ("analysis", "call_successful"),
    ("metadata", "main_language"),
    ("phone_call", "direction"),
    ("data", "agent_name"),
    ("metadata", "termination_reason"),
    ("analysis", "call_summary_title"),
    ("collected", "value"),
]
TIME_FIELDS = {"start_time_unix_secs"}
QUANTITY_FIELDS = {"call_duration_secs", "cost", "time_in_call_secs"}
ID_FIELDS = {"agent_id", "status", "call_successful", "main_language", "direction"}
DEPTHS = [1, 50, 240, 249, 250, 251, 260, 300]


def _random_value(rng: random.Random) -> object:
    kind = rng.randrange(10)
    if kind == 0:
        return rng.choice([0, 1, -1, 2**31, 2**53 - 1, 2**53, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 10**300])
    if kind == 1:
        return rng.choice([-1, 1]) * 10 ** rng.randrange(0, 25)
    if kind == 2:
        return rng.randrange(T_2000 - 10**6, T_2100 + 10**6)
    if kind == 3:
        return rng.choice([0.0, -0.0, 0.5, 1e-300, 1e-10, 1e-9, 0.0123, 1e9, 1e10, 1e300, -1e15, 1e15, 1.7e9])
    if kind == 4:
        return rng.uniform(-1e12, 1e12)
    if kind == 5:
        return rng.choice(["", "x", "1751802015", "-1", "a" * 256, "a" * 257, "é" * 3000, "None"])
    if kind == 6:
        return rng.choice([True, False, None])
    if kind == 7:
        return rng.choice([[], {}, [1, 2], {"a": 1}])
    if kind == 8:
        return str(rng.randrange(T_2000 - 10**6, T_2100 + 10**6))
    return rng.randrange(0, 10**6)


def _place(envelope: dict[str, Any], where: str, field: str, value: object) -> None:
    data = envelope["data"]
    target = {
        "envelope": envelope,
        "data": data,
        "metadata": data["metadata"],
        "analysis": data["analysis"],
        "phone_call": data["metadata"]["phone_call"],
        "turn": data["transcript"][0],
        "collected": data["analysis"].setdefault("data_collection_results", {}).setdefault("x", {}),
    }[where]
    target[field] = value


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _oracle_refuses(field: str, value: object, depth: int) -> bool:
    """The documented ranges, written without the code under test."""
    if depth > 254 or (isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1e308):
        return True  # too deep to archive; or not JSON orjson reads (infinite as a double)
    if field == "event_timestamp":
        if value is None:
            return False
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
            value = int(value)
        return not (type(value) is int and T_2000 <= value <= T_2100 - 1)
    if not _number(value):
        return isinstance(value, str) and field in ID_FIELDS and len(value) > 256
    number = float(value)  # type: ignore[arg-type]
    if field in TIME_FIELDS:
        return number != 0 and not T_2000 <= number <= T_2100 - 1
    if field in QUANTITY_FIELDS:
        return not 0 <= number <= 2**53 - 1
    if field == "cost_fiat":
        return number != 0 and not 1e-9 <= number <= 1e9
    return False


def _depth(value: object) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


@dataclass
class Case:
    body: bytes
    conversation_id: str
    refuse: bool


def _cases(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for n in range(count):
        envelope = fixture_json(TRANSCRIPTION)
        conversation_id = f"conv_fuzz{n:04d}"
        envelope["data"]["conversation_id"] = conversation_id
        for _ in range(rng.randint(1, 3)):
            where, field = rng.choice(FIELDS)
            value = _random_value(rng)
            if rng.random() < 0.15:
                levels = rng.choice(DEPTHS)
                for _level in range(levels):
                    value = [value]
            _place(envelope, where, field, value)
        # Judged on the whole envelope, after all mutations (a later one may overwrite an earlier one).
        depth = _depth(envelope)
        data = envelope["data"]
        placed = {
            ("envelope", "event_timestamp"): envelope.get("event_timestamp"),
            **{(w, f): _value_at(data, w, f) for w, f in FIELDS if w != "envelope"},
        }
        refuse = any(_oracle_refuses(f, v, depth) for (_w, f), v in placed.items())
        cases.append(Case(json.dumps(envelope).encode(), conversation_id, refuse))
    return cases


def _value_at(data: dict[str, Any], where: str, field: str) -> object:
    container = {
        "data": data,
        "metadata": data["metadata"],
        "analysis": data["analysis"],
        "phone_call": data["metadata"]["phone_call"],
        "turn": data["transcript"][0],
        "collected": data["analysis"].get("data_collection_results", {}).get("x", {}),
    }[where]
    return container.get(field)


def _archived(data_dir: Path) -> set[str]:
    root = data_dir / "archive"
    return {p.name for p in root.rglob("*.json")} if root.exists() else set()


def _rows(data_dir: Path) -> int:
    with closing(sqlite3.connect(data_dir / "index.sqlite3")) as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        return count


def test_storable_seeded_fuzz_refuses_exactly_what_cannot_be_stored(tmp_path: Path) -> None:
    settings = Settings(backend="local", data_dir=tmp_path / "data", memory_backend="none")
    storage = build_storage(settings)
    archiver: Archiver = build_archiver(settings, storage)
    cases = _cases(300, seed=20261204)
    refused = stored = 0
    for case in cases:
        before = (_archived(settings.data_dir), _rows(settings.data_dir))
        try:
            event = payload.parse_envelope(case.body)
            result = archiver.archive(event)
        except InvalidPayload:
            refused += 1
            assert case.refuse, f"refused a storable payload: {case.conversation_id}"
            assert (_archived(settings.data_dir), _rows(settings.data_dir)) == before, "a refusal wrote something"
            continue
        stored += 1
        assert not case.refuse, f"stored a payload the oracle refuses: {case.conversation_id}"
        assert result.outcome == "stored"
        row = storage.index.get(case.conversation_id)
        assert row is not None
        assert row.started_at is None or T_2000 <= row.started_at < T_2100
        for number in (row.duration_s, row.cost):
            assert number is None or 0 <= number < 2**53
        memories = build_conversation_memories(event.data, phone=row.phone)
        assert memories.conversation_id == case.conversation_id
    # Both branches were exercised, many times.
    assert refused >= 50 and stored >= 50, (refused, stored)
    analytics = build_analytics_store(settings)
    for key in analytics.list_keys():
        decode(analytics.get_bytes(key))  # every table object the stored calls produced reads back
    # And every archived document can be re-read from the archive alone.
    summary = backfill_analytics(storage.blobs, storage.index, analytics)
    assert summary.failed == [] and summary.calls == stored
