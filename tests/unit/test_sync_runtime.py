"""What `callvault serve` runs to keep the archive complete (services/local/sync_runtime.py)."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.config import Settings
from services.core.wiring import Storage
from services.ingest.service import Archiver
from services.local.sync_runtime import build_local_sync


def storage_and_archive() -> tuple[Storage, Archiver]:
    blobs, index = MemoryBlobStore(), MemoryCallIndex()
    return Storage(blobs, index), Archiver(blobs, index, lambda: 0.0)


@pytest.mark.parametrize("key", [None, "", "   "])
def test_without_a_key_nothing_runs_and_a_blank_key_is_no_key(tmp_path: Path, key: str | None) -> None:
    settings = Settings(data_dir=tmp_path, elevenlabs_api_key=None if key is None else SecretStr(key))
    assert build_local_sync(settings, *storage_and_archive()) is None


def test_with_a_key_the_audio_fetch_runs_and_the_schedule_follows_the_interval(tmp_path: Path) -> None:
    keyed = Settings(data_dir=tmp_path, elevenlabs_api_key=SecretStr("xi_key"), audio_grace_seconds=8)
    running = build_local_sync(keyed, *storage_and_archive())
    assert running is not None and running.schedule is not None and running.schedule.interval == 900
    assert running.audio.grace_seconds == 8 and running.audio.poll_secs == 2
    off = build_local_sync(keyed.model_copy(update={"sync_interval": 0}), *storage_and_archive())
    assert off is not None and off.schedule is None
