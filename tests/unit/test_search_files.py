"""Local file serving: which keys may be served, and which byte range a Range header asks for."""

import os
from pathlib import Path

import pytest

from services.core.domain.errors import Forbidden, NotFound, RangeNotSatisfiable
from services.search.files import ByteRange, LocalFiles, content_type, parse_range

RANGES = [
    (None, None),
    ("bytes=0-9", ByteRange(0, 9)),
    ("bytes=10-", ByteRange(10, 99)),
    ("bytes=-10", ByteRange(90, 99)),
    ("bytes=-1000", ByteRange(0, 99)),
    ("bytes=90-1000", ByteRange(90, 99)),
    ("bytes=99-99", ByteRange(99, 99)),
    (" bytes=5-6 ", ByteRange(5, 6)),
    # Not understood: ignored, the whole file is sent (RFC 9110 allows it).
    ("bytes=5-2", None),
    ("bytes=-", None),
    ("items=0-9", None),
    ("bytes=0-1,5-6", None),
    ("bytes=a-b", None),
    ("garbage", None),
]


@pytest.mark.parametrize(("header", "expected"), RANGES, ids=[str(h) for h, _ in RANGES])
def test_search_range_header_is_read_as_one_byte_range_or_ignored(
    header: str | None, expected: ByteRange | None
) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_search_range_past_the_end_is_not_satisfiable(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        parse_range(header, size)
    assert caught.value.size == size


def test_search_range_length_counts_both_ends() -> None:
    assert ByteRange(0, 9).length == 10


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    (root / "16125550142").mkdir(parents=True)
    (root / "16125550142" / "conv_a.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("outside")
    return root


def test_search_local_files_serves_keys_inside_the_archive(archive: Path) -> None:
    assert LocalFiles(archive).path_for("16125550142/conv_a.json").read_text() == "{}"


@pytest.mark.parametrize(
    "key",
    [
        "../secret.txt",
        "16125550142/../../secret.txt",
        "/etc/passwd",
        "16125550142//conv_a.json",
        "./16125550142/conv_a.json",
        "16125550142\\..\\..\\secret.txt",
        "16125550142/conv_a.json\0",
        "16125550142/.tmp-abc",
        "",
        "a/" * 600,
    ],
)
def test_search_local_files_refuse_keys_outside_the_archive(archive: Path, key: str) -> None:
    with pytest.raises(Forbidden):
        LocalFiles(archive).path_for(key)


def test_search_local_files_refuse_a_symlink_that_leads_out(archive: Path) -> None:
    os.symlink(archive.parent / "secret.txt", archive / "16125550142" / "link.json")
    with pytest.raises(Forbidden):
        LocalFiles(archive).path_for("16125550142/link.json")


@pytest.mark.parametrize("key", ["16125550142/conv_b.json", "16125550142/conv_a.json/x", "16125550142"])
def test_search_local_files_missing_or_not_a_file_is_not_found(archive: Path, key: str) -> None:
    with pytest.raises(NotFound):
        LocalFiles(archive).path_for(key)


def test_search_content_types_follow_the_archive_suffixes() -> None:
    assert content_type("a/b.json") == "application/json"
    assert content_type("a/b.mp3") == "audio/mpeg"
    assert content_type("a/b") == "application/octet-stream"
