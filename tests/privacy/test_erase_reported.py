"""Erasure by phone finds the calls filed under another number's folder that a later event reported as
the erased number's (the row's ``reported_phone``), on every back end; the other number's caller keeps
everything else (#13)."""

from typing import Any

from services.analytics.erasure import AnalyticsErasure
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.ingest.verify import ArchiveVerifier
from services.memory.domain import MemoryItem
from services.memory.erasure import MemoryErasure
from services.privacy.service import Eraser
from tests.memory.support import FakeMemoryStore, call_envelope

from .conftest import T0, World

ERASED, FOLDER = "+16125550142", "+16125550177"
MOVED = "conv_reported_moved"  # first filed under FOLDER, then reported as ERASED's
FOLDERS_OWN = "conv_reported_folder_own"
ERASED_OWN = "conv_reported_erased_own"


def _populate(world: World) -> None:
    world.call(MOVED, FOLDER, T0)
    newer = call_envelope(MOVED, ERASED, started_at=T0, event_at=T0 + 500)  # a later event, another number
    assert world.deliver(newer) == "stored"
    world.call(FOLDERS_OWN, FOLDER, T0 + 100, audio=True)
    world.call(ERASED_OWN, ERASED, T0 + 200)


def _eraser(world: World, memory: Any = None) -> Eraser:
    derived: list[Any] = [AnalyticsErasure(world.analytics)]
    if memory is not None:
        derived.append(memory)
    return Eraser(world.blobs, world.index, derived, erased=world.erased)


def test_forget_phone_erases_a_call_filed_under_another_numbers_folder(world: World) -> None:
    _populate(world)
    moved = world.index.get(MOVED)
    assert moved is not None and (moved.phone, moved.reported_phone) == (FOLDER, ERASED)
    kept_bytes = {k: v for k, v in world.archive_bytes().items() if FOLDERS_OWN in k}
    eraser = _eraser(world)

    dry = eraser.dry_run(eraser.plan_caller(ERASED))
    assert (dry.conversations, dry.index_rows) == (2, 2)

    done = eraser.erase(eraser.plan_caller(ERASED))

    assert (done.conversations, done.index_rows) == (2, 2)
    assert {row.conversation_id for row in world.index.scan()} == {FOLDERS_OWN}
    listing = world.archive_listing()
    assert not [key for key in listing if MOVED in key or ERASED_OWN in key]
    assert {k: v for k, v in world.archive_bytes().items() if FOLDERS_OWN in k} == kept_bytes
    assert {row["conversation_id"] for row in world.analytics_rows()} == {FOLDERS_OWN}
    assert world.erased.is_erased(MOVED) and not world.erased.is_erased(FOLDERS_OWN)
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []
    assert eraser.plan_caller(ERASED).calls == []  # nothing left to find: a rerun is a no-op


def test_the_moved_calls_memories_go_and_the_folder_callers_other_memories_stay() -> None:
    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore())
    _populate(world)
    store = FakeMemoryStore()
    for phone, cid in [(FOLDER, MOVED), (FOLDER, FOLDERS_OWN), (ERASED, ERASED_OWN)]:
        store.add_conversation(phone, cid, [MemoryItem("I like tea", "user", "semantic", {"conversation_id": cid})])
    eraser = _eraser(world, MemoryErasure(store))

    assert eraser.dry_run(eraser.plan_caller(ERASED)).derived["memories"] == 2
    assert eraser.erase(eraser.plan_caller(ERASED)).derived["memories"] == 2

    assert store.count(ERASED) == 0
    assert store.count(FOLDER, MOVED) == 0 and store.count(FOLDER, FOLDERS_OWN) == 1
