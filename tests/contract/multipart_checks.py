"""``put_stream_if`` with streams longer than one S3 part (the API's audio of a long call), as plain checks
over a store and a way to see what it physically holds, so the contract suite runs them on every
adapter and tests/contract/test_s3_multipart_seaweed.py on a real S3.

On S3 these are multipart uploads whose CompleteMultipartUpload carries the condition; "leftovers"
include unfinished uploads, so a check also shows that a refused or broken upload was aborted.
"""

import random
from collections.abc import Callable, Iterator

import pytest

from services.core.adapters.s3_blob_store import PART_BYTES
from services.core.ports import BlobStore

CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"
KEY = f"16125550142/{CONVERSATION}.mp3"
OTHER = "16125550142/conv_01jzfrk2m6e3tq8w0c7y4x1b2n.mp3"
MP3 = "audio/mpeg"
MIB = 1024 * 1024
BIG = 20 * MIB  # two full parts and a short third
CHUNK = 1_000_003  # odd, so chunks straddle part boundaries
OLD = "audio.api"  # version labels: only their being kept matters here
NEW = "audio.1751802037.abcdef"

Leftovers = Callable[[], list[str]]


class SourceBroke(Exception):
    """Raised by a chunk source half-way, like the API's audio stream cut off."""


def payload(size: int, seed: str) -> bytes:
    return b"ID3" + random.Random(seed).randbytes(size - 3)


def chunks(data: bytes, size: int = CHUNK) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def broken(data: bytes, after: int) -> Iterator[bytes]:
    yield from chunks(data[:after])
    raise SourceBroke("the audio stream was cut off")


def creates_then_replaces_on_its_tag(store: BlobStore, leftovers: Leftovers) -> None:
    first, second = payload(BIG, "first"), payload(BIG + PART_BYTES + 1, "second")  # 2 and 4 parts (+1 byte)

    assert store.put_stream_if(KEY, chunks(first), MP3, None, version=OLD) == len(first)
    head = store.head(KEY)
    assert head is not None and (head.size, head.version) == (len(first), OLD)
    assert store.get_bytes(KEY) == first

    assert store.put_stream_if(KEY, chunks(second, 3 * MIB), MP3, head.tag, version=NEW) == len(second)
    replaced = store.head(KEY)
    assert replaced is not None and (replaced.size, replaced.version) == (len(second), NEW)
    assert replaced.tag != head.tag
    assert store.get_bytes(KEY) == second
    assert leftovers() == [KEY]


def refused_when_the_key_exists(store: BlobStore, leftovers: Leftovers) -> None:
    store.put_if(KEY, b"ID3 pushed by the webhook", MP3, None, version=NEW)
    before = store.head(KEY)

    assert store.put_stream_if(KEY, chunks(payload(BIG, "late")), MP3, None, version=OLD) is None

    assert store.head(KEY) == before
    assert store.get_bytes(KEY) == b"ID3 pushed by the webhook"
    assert leftovers() == [KEY]  # the refused upload was aborted, not left unfinished


def refused_on_a_stale_or_missing_tag(store: BlobStore, leftovers: Leftovers) -> None:
    store.put_if(KEY, b"ID3 first", MP3, None, version=OLD)
    stale = store.head(KEY)
    assert stale is not None
    assert store.put_if(KEY, b"ID3 rewritten meanwhile", MP3, stale.tag, version=NEW) is True
    current = store.head(KEY)

    assert store.put_stream_if(KEY, chunks(payload(BIG, "late")), MP3, stale.tag, version="9") is None
    assert store.put_stream_if(OTHER, chunks(payload(BIG, "gone")), MP3, stale.tag, version="9") is None

    assert store.head(KEY) == current
    assert store.get_bytes(KEY) == b"ID3 rewritten meanwhile"
    assert store.head(OTHER) is None  # If-Match never creates
    assert leftovers() == [KEY]


def a_source_that_breaks_after_some_parts_writes_nothing(store: BlobStore, leftovers: Leftovers) -> None:
    data = payload(BIG, "cut")
    with pytest.raises(SourceBroke):
        store.put_stream_if(KEY, broken(data, PART_BYTES + 3 * MIB), MP3, None, version=OLD)
    assert store.head(KEY) is None
    assert leftovers() == []

    store.put_if(KEY, b"ID3 kept", MP3, None, version=OLD)
    head = store.head(KEY)
    assert head is not None
    with pytest.raises(SourceBroke):
        store.put_stream_if(KEY, broken(data, 2 * PART_BYTES + 1), MP3, head.tag, version=NEW)
    assert store.head(KEY) == head
    assert store.get_bytes(KEY) == b"ID3 kept"
    assert leftovers() == [KEY]


def exactly_one_part_and_one_byte_more(store: BlobStore, leftovers: Leftovers) -> None:
    """The boundary: a stream of exactly one part, and one a byte longer (a second part of one byte)."""
    one, more = payload(PART_BYTES, "one"), payload(PART_BYTES + 1, "more")
    assert store.put_stream_if(KEY, chunks(one), MP3, None, version=OLD) == PART_BYTES
    assert store.put_stream_if(OTHER, iter([more]), MP3, None, version=OLD) == PART_BYTES + 1
    assert (store.get_bytes(KEY), store.get_bytes(OTHER)) == (one, more)
    assert leftovers() == sorted([KEY, OTHER])


CHECKS: dict[str, Callable[[BlobStore, Leftovers], None]] = {
    check.__name__: check
    for check in (
        creates_then_replaces_on_its_tag,
        refused_when_the_key_exists,
        refused_on_a_stale_or_missing_tag,
        a_source_that_breaks_after_some_parts_writes_nothing,
        exactly_one_part_and_one_byte_more,
    )
}
# Conditions a store under test does not check on CompleteMultipartUpload (moto 5.2.5 honours
# If-None-Match there but ignores If-Match; SeaweedFS and S3 honour both).
NEEDS_IF_MATCH_ON_COMPLETE = frozenset({"refused_on_a_stale_or_missing_tag"})
