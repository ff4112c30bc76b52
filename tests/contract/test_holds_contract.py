"""The Holds contract, on every adapter that keeps holds (memory, SQLite, DynamoDB under moto)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.adapters.dynamo_audit_log import DynamoAuditLog, DynamoHolds
from services.core.adapters.memory import MemoryHolds
from services.core.adapters.sqlite_holds import SqliteHolds
from services.core.domain.holds import Hold
from services.core.ports import Holds

from .conftest import AUDIT_TABLE, dynamo_table

HOLD = Hold("hold_1", "caller", "a" * 64, "*******0142", "case 114", 100, "cli:alice")


@pytest.fixture(params=["memory", "local", "moto", "dynalite"])
def holds(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Holds]:
    if request.param == "memory":
        yield MemoryHolds()
    elif request.param in ("moto", "dynalite"):
        table = dynamo_table(request, monkeypatch) if request.param == "dynalite" else AUDIT_TABLE
        if request.param == "moto":
            request.getfixturevalue("aws")
        dynamo = DynamoHolds(table)
        dynamo.table.create_table()
        yield dynamo
    else:
        sqlite = SqliteHolds(tmp_path / "privacy.sqlite3")
        yield sqlite
        sqlite.close()


def test_holds_placed_are_listed_and_active(holds: Holds) -> None:
    holds.place(HOLD)
    holds.place(HOLD)  # again: one

    assert holds.all() == [HOLD]
    assert holds.all()[0].active


def test_holds_release_is_recorded_and_idempotent(holds: Holds) -> None:
    holds.place(HOLD)

    released = holds.release("hold_1", 200, "cli:bob")
    again = holds.release("hold_1", 300, "cli:carol")

    assert released is not None and not released.active
    assert (released.released_at, released.released_by) == (200, "cli:bob")
    assert again == released
    assert holds.all() == [released]
    assert holds.release("hold_missing", 200, "cli:bob") is None


def test_holds_list_oldest_first_and_release_only_the_one_named(holds: Holds) -> None:
    later = Hold("hold_0", "conversation", "b" * 64, "conversation bbbbbbbbbbbb", "complaint 88", 150, "cfg_1")
    holds.place(later)
    holds.place(HOLD)

    holds.release("hold_0", 200, "cli:bob")

    assert [(h.id, h.active) for h in holds.all()] == [("hold_1", True), ("hold_0", False)]
    assert holds.all()[1].kind == "conversation" and holds.all()[1].reason == "complaint 88"


def test_dynamo_holds_share_the_audit_table_without_touching_the_chain(request: pytest.FixtureRequest) -> None:
    """Holds live in their own partition of the audit table: the chain still starts at 1 and verifies."""
    request.getfixturevalue("aws")
    log = DynamoAuditLog(AUDIT_TABLE)
    log.table.create_table()
    holds = DynamoHolds(AUDIT_TABLE)
    holds.place(HOLD)

    entry = log.append("hold", "cli:alice", [], {"hold_id": "hold_1"}, 100)
    holds.release("hold_1", 200, "cli:bob")

    assert entry.seq == 1 and [e.seq for e in log.entries()] == [1]
    assert [h.id for h in holds.all()] == ["hold_1"]
