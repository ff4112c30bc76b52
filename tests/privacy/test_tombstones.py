"""It stays erased: redeliveries, imports and syncs of an erased conversation store nothing; a new
call from the number is archived; erased data that comes back (a restored backup) is found and erased."""

from typing import Any

from services.analytics.erasure import AnalyticsErasure
from services.core.domain import payload
from services.core.domain.models import WebhookEvent
from services.ingest.verify import ArchiveVerifier
from services.privacy.service import Eraser, find_reappeared
from tests.memory.support import call_envelope

from .conftest import DAY, T0, World, audio_envelope

PHONE, OTHER = "+16125550142", "+16125550177"


def _eraser(world: World) -> Eraser:
    return Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased)


def _erase_caller(world: World) -> None:
    eraser = _eraser(world)
    eraser.erase(eraser.plan_caller(PHONE))


def test_redeliveries_imports_and_syncs_of_erased_calls_store_nothing(world: World) -> None:
    world.call("conv_gone", PHONE, T0, audio=True)
    world.call("conv_kept", OTHER, T0 + 10)
    _erase_caller(world)
    listing, rows = world.archive_listing(), world.analytics_rows()

    redelivered = call_envelope("conv_gone", PHONE, started_at=T0, event_at=T0 + 60)
    assert world.deliver(redelivered) == "erased"
    assert world.deliver(call_envelope("conv_gone", PHONE, started_at=T0, event_at=T0 + 999)) == "erased"
    assert world.deliver(audio_envelope("conv_gone", T0 + 61)) == "erased"
    imported = payload.as_transcription_event(redelivered["data"])  # `callvault import` of a saved document
    assert world.archiver.archive(imported).outcome == "erased"
    assert world.archiver.archive_conversation(redelivered["data"], T0 + 3 * DAY) == "erased"  # sync
    assert world.archiver.archive_audio_stream("conv_gone", None, lambda: iter([b"ID3"])) == "erased"

    assert world.archive_listing() == listing
    assert world.analytics_rows() == rows
    assert world.index.get("conv_gone") is None


def test_a_new_call_from_an_erased_number_is_archived(world: World) -> None:
    world.call("conv_gone", PHONE, T0)
    _erase_caller(world)

    world.call("conv_new", PHONE, T0 + DAY, audio=True)

    row = world.index.get("conv_new")
    assert row is not None and row.phone == PHONE and row.audio_key is not None
    assert ArchiveVerifier(world.archiver, clock=world.clock).run().findings == []


def test_erased_data_restored_from_a_backup_is_found_and_erased_again(world: World) -> None:
    world.call("conv_gone", PHONE, T0, audio=True)
    world.call("conv_kept", OTHER, T0 + 10)
    backup: dict[str, Any] = {key: world.blobs.get_bytes(key) for key in world.blobs.list_keys()}
    row = world.index.get("conv_gone")
    _erase_caller(world)
    assert find_reappeared(world.erased, world.blobs, world.index) == []

    for key, data in backup.items():  # the restore: objects and the row come back
        world.blobs.put_bytes(key, data, "application/octet-stream")
    assert row is not None
    world.index.save_call(row, int(world.now))

    assert find_reappeared(world.erased, world.blobs, world.index) == ["conv_gone"]
    eraser = _eraser(world)
    eraser.erase(eraser.plan_conversations(["conv_gone"]))
    assert find_reappeared(world.erased, world.blobs, world.index) == []
    assert not [key for key in world.blobs.list_keys() if "conv_gone" in key]
    assert world.index.get("conv_kept") is not None


def test_a_late_event_of_an_erased_call_is_erased_too_when_its_id_arrives_first_as_audio(world: World) -> None:
    world.deliver(audio_envelope("conv_parked", T0))  # audio before its transcript: parked
    eraser = _eraser(world)
    eraser.erase(eraser.plan_conversations(["conv_parked"]))

    assert not [key for key in world.blobs.list_keys() if "conv_parked" in key]
    event = WebhookEvent("post_call_transcription", T0 + 60, call_envelope("conv_parked", PHONE)["data"])
    assert world.archiver.archive(event).outcome == "erased"
