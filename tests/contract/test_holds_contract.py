"""The Holds contract, on every adapter that keeps holds (memory, SQLite)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.adapters.memory import MemoryHolds
from services.core.adapters.sqlite_holds import SqliteHolds
from services.core.domain.holds import Hold
from services.core.ports import Holds

HOLD = Hold("hold_1", "caller", "a" * 64, "*******0142", "case 114", 100, "cli:alice")


@pytest.fixture(params=["memory", "local"])
def holds(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Holds]:
    if request.param == "memory":
        yield MemoryHolds()
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
