"""The AuditLog contract, on every adapter: append-only, hash-chained, findable by conversation hash.
Tampering (an entry changed or removed, however it was done) is found by ``check_chain``."""

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from services.core.adapters.dynamo_audit_log import DynamoAuditLog
from services.core.adapters.memory import MemoryAuditLog
from services.core.adapters.sqlite_audit_log import SqliteAuditLog
from services.core.domain.audit import check_chain
from services.core.ports import AuditLog

from .conftest import AUDIT_TABLE, dynamo_table

A, B = "a" * 64, "b" * 64


@dataclass
class AuditHarness:
    log: AuditLog
    # tamper(seq, None): remove the entry; tamper(seq, "x"): change its actor. Bypasses the adapter.
    tamper: Callable[[int, str | None], None]


@pytest.fixture(params=["memory", "local", "moto", "dynalite"])
def audit(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuditHarness]:
    if request.param == "memory":
        memory = MemoryAuditLog()

        def tamper_memory(seq: int, actor: str | None) -> None:
            index = next(i for i, e in enumerate(memory.rows) if e.seq == seq)
            if actor is None:
                del memory.rows[index]
            else:
                memory.rows[index] = replace(memory.rows[index], actor=actor)

        yield AuditHarness(memory, tamper_memory)
        return
    if request.param in ("moto", "dynalite"):
        table = dynamo_table(request, monkeypatch) if request.param == "dynalite" else AUDIT_TABLE
        if request.param == "moto":
            request.getfixturevalue("aws")
        dynamo = DynamoAuditLog(table)
        dynamo.table.create_table()
        client = boto3.client("dynamodb")

        def tamper_dynamo(seq: int, actor: str | None) -> None:
            key = {"chain": {"S": "audit"}, "seq": {"N": str(seq)}}
            if actor is None:
                client.delete_item(TableName=table, Key=key)
            else:
                client.update_item(
                    TableName=table,
                    Key=key,
                    UpdateExpression="SET actor = :a",
                    ExpressionAttributeValues={":a": {"S": actor}},
                )

        yield AuditHarness(dynamo, tamper_dynamo)
        return
    path = tmp_path / "privacy.sqlite3"
    sqlite = SqliteAuditLog(path)

    def tamper_sqlite(seq: int, actor: str | None) -> None:
        conn = sqlite3.connect(path)
        conn.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        if actor is None:
            conn.execute("DELETE FROM audit WHERE seq = ?", (seq,))
        else:
            conn.execute("UPDATE audit SET actor = ? WHERE seq = ?", (actor, seq))
        conn.commit()
        conn.close()

    yield AuditHarness(sqlite, tamper_sqlite)
    sqlite.close()


def _fill(log: AuditLog) -> None:
    log.append("erase", "cli:alice", [A, B], {"conversations": 2, "phone": "*******0142"}, 100)
    log.append("link_issued", "cfg_123", [A], {}, 200)
    log.append("key_create", "cli:alice", [], {"key_id": "key_1", "role": "read"}, 300)


def test_audit_log_appends_in_order_and_the_chain_verifies(audit: AuditHarness) -> None:
    _fill(audit.log)

    entries = list(audit.log.entries())

    assert [(e.seq, e.action, e.at) for e in entries] == [
        (1, "erase", 100),
        (2, "link_issued", 200),
        (3, "key_create", 300),
    ]
    assert entries[0].subjects == (A, B) and entries[0].detail == {"conversations": 2, "phone": "*******0142"}
    assert entries[1].prev == entries[0].hash
    check = check_chain(entries)
    assert check.ok and check.entries == 3 and check.head == entries[-1].hash


def test_audit_log_filters_by_time_and_by_conversation(audit: AuditHarness) -> None:
    _fill(audit.log)

    assert [e.seq for e in audit.log.entries(since=200)] == [2, 3]
    assert [e.seq for e in audit.log.entries(subject=A)] == [1, 2]
    assert [e.seq for e in audit.log.entries(subject=B)] == [1]
    assert [e.seq for e in audit.log.entries(since=150, subject=B)] == []


@pytest.mark.parametrize("seq", [1, 2, 3])
def test_audit_log_chain_check_finds_a_changed_entry(audit: AuditHarness, seq: int) -> None:
    _fill(audit.log)
    audit.tamper(seq, "cli:mallory")

    check = check_chain(audit.log.entries())

    assert not check.ok and check.seq == seq and "changed" in (check.problem or "")


@pytest.mark.parametrize("seq", [1, 2])
def test_audit_log_chain_check_finds_a_removed_entry(audit: AuditHarness, seq: int) -> None:
    _fill(audit.log)
    audit.tamper(seq, None)

    check = check_chain(audit.log.entries())

    assert not check.ok and check.seq == seq and "missing" in (check.problem or "")


def test_audit_log_concurrent_appends_never_fork_the_chain(audit: AuditHarness) -> None:
    def append_many(actor: str) -> None:
        for i in range(20):
            audit.log.append("link_issued", actor, [A], {}, i)

    threads = [threading.Thread(target=append_many, args=(f"cfg_{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    check = check_chain(audit.log.entries())
    assert check.ok and check.entries == 80


def test_audit_log_refuses_unknown_actions(audit: AuditHarness) -> None:
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.log.append("transcript text", "cli:x", [], {}, 1)
    assert list(audit.log.entries()) == []


def test_sqlite_audit_log_refuses_updates_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "privacy.sqlite3"
    SqliteAuditLog(path).append("erase", "cli:alice", [A], {}, 1)
    conn = sqlite3.connect(path)
    for statement in ("UPDATE audit SET actor = 'x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(statement)
    conn.close()


def test_audit_log_finds_every_conversation_of_an_entry_naming_many(audit: AuditHarness) -> None:
    """An erasure of a caller with many calls names them all (DynamoDB: more pointers than one transaction)."""
    many = [f"{n:064x}" for n in range(150)]
    audit.log.append("erase", "cli:alice", many, {"conversations": 150}, 100)
    audit.log.append("link_issued", "cfg_1", [many[149]], {}, 200)

    assert [e.seq for e in audit.log.entries(subject=many[0])] == [1]
    assert [e.seq for e in audit.log.entries(subject=many[149])] == [1, 2]
    assert len(next(audit.log.entries()).subjects) == 150


def test_dynamo_audit_log_retries_an_append_that_lost_the_race(request: pytest.FixtureRequest) -> None:
    """Another writer chains entry 1 between this append's read of the head and its write: the append
    reads the new head and becomes entry 2, and the chain verifies."""
    request.getfixturevalue("aws")
    log = DynamoAuditLog(AUDIT_TABLE)
    log.table.create_table()
    rival = DynamoAuditLog(AUDIT_TABLE)
    reads = 0
    head = log.table.head

    def head_then_rival_writes(chain: str) -> Any:
        nonlocal reads
        found = head(chain)
        reads += 1
        if reads == 1:
            rival.append("key_create", "cli:rival", [], {}, 50)
        return found

    log.table.head = head_then_rival_writes  # type: ignore[method-assign]

    entry = log.append("erase", "cli:alice", [A], {}, 100)

    assert reads == 2 and entry.seq == 2
    entries = list(log.entries())
    assert [(e.seq, e.actor) for e in entries] == [(1, "cli:rival"), (2, "cli:alice")]
    assert check_chain(entries).ok
    assert [e.seq for e in log.entries(subject=A)] == [2]


def test_an_erasure_of_thousands_of_conversations_is_recorded_and_each_is_found(audit: AuditHarness) -> None:
    """A caller with 7,000 calls (or a first retention run over a big archive): 7,000 hashes are more than
    one DynamoDB item holds (400 KB), and the erasure, audited before it starts, failed every time."""
    from services.core.adapters.memory import MemoryTombstones
    from services.core.erased import ErasedConversations
    from services.privacy.audit import Auditor

    auditor = Auditor(audit.log, ErasedConversations(b"k" * 32, MemoryTombstones()), clock=lambda: 1_700_000_000)
    ids = [f"conv_{i:06d}" for i in range(7000)]

    auditor.record("erase", "cli:alice", ids, {"scope": "caller", "conversations": len(ids)})

    entries = auditor.entries()
    assert {e.action for e in entries} == {"erase"}
    assert sorted(s for e in entries for s in e.subjects) == sorted(auditor.erased.digest(cid) for cid in ids)
    assert all(e.detail["conversations"] == 7000 and e.detail["parts"] == len(entries) for e in entries)
    assert [e.detail["part"] for e in entries] == list(range(1, len(entries) + 1))
    for cid in (ids[0], ids[3456], ids[-1]):
        assert [e.action for e in auditor.entries(conversation_id=cid)] == ["erase"]
    assert auditor.check().ok


def test_dynamo_audit_log_gives_up_on_pointers_dynamodb_keeps_leaving_unprocessed(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BatchWriteItem answers with UnprocessedItems under throttling, without an error: retried with a
    pause, a bounded number of times, then the append fails (closed) instead of spinning until the
    Lambda's timeout."""
    from services.core.adapters import dynamo_audit_log as adapter
    from services.core.domain.errors import StorageUnavailable

    request.getfixturevalue("aws")
    log = DynamoAuditLog(AUDIT_TABLE)
    log.table.create_table()
    calls, pauses = 0, list[float]()

    def never_processed(RequestItems: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        assert calls < 1000, "spinning"
        return {"UnprocessedItems": RequestItems}

    monkeypatch.setattr(log.table.client, "batch_write_item", never_processed)
    monkeypatch.setattr(adapter, "_pause", pauses.append)

    with pytest.raises(StorageUnavailable, match="audit trail"):
        log.append("erase", "cli:alice", [A], {}, 100)
    assert 1 < calls < 1000 and pauses and list(log.entries()) == []
