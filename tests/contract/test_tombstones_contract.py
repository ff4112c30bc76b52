"""The Tombstones contract, on every adapter: keyed hashes of erased conversations."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.dynamo_tombstones import DynamoTombstones
from services.core.adapters.memory import MemoryTombstones
from services.core.adapters.sqlite_tombstones import SqliteTombstones
from services.core.erased import ErasedConversations, conversation_digest
from services.core.ports import Tombstones

from .conftest import DYNAMO_ADAPTERS, TABLE, dynamo_table

A, B = "a" * 64, "b" * 64


@pytest.fixture(params=DYNAMO_ADAPTERS)
def tombstones(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tombstones]:
    if request.param == "memory":
        yield MemoryTombstones()
    elif request.param == "local":
        sqlite = SqliteTombstones(tmp_path / "privacy.sqlite3")
        yield sqlite
        sqlite.close()
    else:
        table = dynamo_table(request, monkeypatch)
        index = DynamoCallIndex(table)
        index.create_table()
        yield DynamoTombstones(table)


def test_tombstones_added_are_found_and_listed(tombstones: Tombstones) -> None:
    assert not tombstones.contains(A)
    assert list(tombstones.digests()) == []

    tombstones.add([A, B], 100)
    tombstones.add([A], 200)  # again: still one

    assert tombstones.contains(A) and tombstones.contains(B)
    assert not tombstones.contains("c" * 64)
    assert list(tombstones.digests()) == [A, B]


def test_tombstones_keep_no_conversation_id_and_need_the_key(tombstones: Tombstones) -> None:
    erased = ErasedConversations(b"k" * 32, tombstones)
    erased.mark(["conv_erased"], 100)

    assert erased.is_erased("conv_erased") and not erased.is_erased("conv_other")
    assert not any("conv_erased" in digest for digest in tombstones.digests())
    assert not ErasedConversations(b"x" * 32, tombstones).is_erased("conv_erased")  # another key: not found
    assert list(tombstones.digests()) == [conversation_digest(b"k" * 32, "conv_erased")]


def test_tombstones_are_invisible_to_the_call_index(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """On AWS they share the calls table: no scan or listing of calls may show them."""
    request.getfixturevalue("aws")
    index = DynamoCallIndex(TABLE)
    index.create_table()
    DynamoTombstones(TABLE).add([A], 100)

    assert list(index.scan()) == []
