"""The local archive removes a caller's folder when a purge empties it; writers and purges racing that
removal never fail for it: a writer makes the folder again, a second purge finds it gone and is done."""

import os
from pathlib import Path

import pytest

from services.core.adapters import fs_blob_store
from services.core.adapters.fs_blob_store import FsBlobStore


def test_two_purges_emptying_one_folder_both_succeed(tmp_path: Path) -> None:
    first, second = FsBlobStore(tmp_path), FsBlobStore(tmp_path)  # two processes on one archive
    first.put_bytes("16125550142/conv_a.json", b"{}", "application/json")
    first.put_bytes("16125550142/conv_b.mp3", b"ID3", "audio/mpeg")
    fsync_dir = first._fsync_dir

    def the_other_purge_runs_first(path: Path) -> None:  # after our unlink, before our folder fsync
        first._fsync_dir = fsync_dir  # type: ignore[method-assign]
        assert second.purge("16125550142/conv_b.mp3") == 1
        fsync_dir(path)

    first._fsync_dir = the_other_purge_runs_first  # type: ignore[method-assign]

    assert first.purge("16125550142/conv_a.json") == 1
    assert not (tmp_path / "16125550142").exists()


def test_a_copy_into_a_folder_a_purge_just_removed_makes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FsBlobStore(tmp_path)
    store.put_bytes("_pending-audio/conv_c.mp3", b"ID3", "audio/mpeg")
    store.put_bytes("16125550199/conv_x.json", b"{}", "application/json")
    real_link = os.link

    def purge_between_mkdir_and_link(src: str, dst: str) -> None:
        monkeypatch.setattr(os, "link", real_link)
        store.purge("16125550199/conv_x.json")  # the folder's last object: the folder goes
        real_link(src, dst)

    monkeypatch.setattr(os, "link", purge_between_mkdir_and_link)

    assert store.copy_if("_pending-audio/conv_c.mp3", "16125550199/conv_c.mp3", None)
    assert store.get_bytes("16125550199/conv_c.mp3") == b"ID3"


def test_a_write_into_a_folder_a_purge_just_removed_makes_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FsBlobStore(tmp_path)
    store.put_bytes("16125550199/conv_x.json", b"{}", "application/json")
    real_create = fs_blob_store._create_temp

    def purge_before_the_create(folder: Path) -> tuple[int, str]:
        monkeypatch.setattr(fs_blob_store, "_create_temp", real_create)
        store.purge("16125550199/conv_x.json")
        return real_create(folder)

    monkeypatch.setattr(fs_blob_store, "_create_temp", purge_before_the_create)

    store.put_bytes("16125550199/conv_y.json", b'{"new": true}', "application/json")
    assert store.get_bytes("16125550199/conv_y.json") == b'{"new": true}'
