"""The BlobStore contract of the write protocol (``head``, ``put_if``/``put_stream_if`` with a version,
``copy_if``, and ``core.newest.write_newest`` built on them) as plain checks over a store, so the
contract suite runs them on every adapter and the SeaweedFS tests run them on a real S3."""

import random
import threading
from collections.abc import Callable, Iterator

import pytest

from services.core.domain import versions
from services.core.domain.errors import NotFound
from services.core.newest import write_newest
from services.core.ports import BlobStore

CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"
KEY = f"16125550142/{CONVERSATION}.json"
PARKED = f"_pending-audio/{CONVERSATION}.mp3"
PLACED = f"16125550142/{CONVERSATION}.mp3"
KEYS = frozenset({KEY, PARKED, PLACED})  # every key a check may leave behind
JSON = "application/json"
MP3 = "audio/mpeg"
T0 = 1_751_802_037

OLD_DOC = b'{"conversation_id":"conv_01jzfrjvcce0vsea1fcbpp9p04","status":"processing"}'
NEW_DOC = b'{"conversation_id":"conv_01jzfrjvcce0vsea1fcbpp9p04","status":"done"}'
OLD = versions.call_version("post_call_transcription", T0, OLD_DOC)
NEW = versions.call_version("post_call_transcription", T0 + 60, NEW_DOC)
AUDIO_BYTES = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 16
AUDIO_VERSION = versions.audio_version(T0, [b"SUQzBAAAAAAAAA=="])


class SourceBroke(Exception):
    """Raised by a chunk source half-way, like a base64 decoder meeting a bad character."""


def _broken(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks
    raise SourceBroke("the stream ended early")


def _tag(store: BlobStore, key: str) -> str:
    head = store.head(key)
    assert head is not None
    return head.tag


def head_of_a_missing_key_is_none(store: BlobStore) -> None:
    assert store.head(KEY) is None


def head_reports_tag_size_and_version(store: BlobStore) -> None:
    assert store.put_if(KEY, OLD_DOC, JSON, None, version=OLD) is True

    head = store.head(KEY)
    assert head is not None
    assert (head.size, head.version) == (len(OLD_DOC), OLD)
    assert head.tag == store.get_tagged(KEY)[1]  # one tag, whichever call reads it
    assert store.head(KEY) == head  # reading changes nothing


def a_plain_write_has_no_version(store: BlobStore) -> None:
    store.put_bytes(KEY, OLD_DOC, JSON)
    head = store.head(KEY)
    assert head is not None and (head.size, head.version) == (len(OLD_DOC), None)

    assert store.put_if(KEY, NEW_DOC, JSON, head.tag, version=NEW) is True
    store.put_bytes(KEY, OLD_DOC, JSON)  # a plain write replaces the object, its label included
    replaced = store.head(KEY)
    assert replaced is not None and (replaced.version, replaced.size) == (None, len(OLD_DOC))


def put_if_with_a_version_keeps_the_tag_conditions(store: BlobStore) -> None:
    assert store.put_if(KEY, OLD_DOC, JSON, None, version=OLD) is True
    before = store.head(KEY)
    assert before is not None
    assert store.put_if(KEY, NEW_DOC, JSON, None, version=NEW) is False  # it exists now
    assert store.put_if(KEY, NEW_DOC, JSON, "not-a-tag", version=NEW) is False
    assert (store.get_bytes(KEY), store.head(KEY)) == (OLD_DOC, before)  # refused: bytes, tag, label kept

    first = before.tag
    assert store.put_if(KEY, NEW_DOC, JSON, first, version=NEW) is True
    head = store.head(KEY)
    assert head is not None and (head.version, head.size, head.tag != first) == (NEW, len(NEW_DOC), True)
    assert store.put_if(KEY, OLD_DOC, JSON, first, version=OLD) is False  # a writer that read the old one lost
    assert store.get_bytes(KEY) == NEW_DOC


def put_if_on_a_tag_never_creates(store: BlobStore) -> None:
    store.put_if(KEY, OLD_DOC, JSON, None, version=OLD)
    tag = _tag(store, KEY)
    store.delete(KEY)
    assert store.put_if(KEY, NEW_DOC, JSON, tag, version=NEW) is False
    assert store.head(KEY) is None


def put_stream_if_with_a_version(store: BlobStore) -> None:
    chunks = [AUDIO_BYTES[:100], b"", AUDIO_BYTES[100:]]
    assert store.put_stream_if(PLACED, iter(chunks), MP3, None, version=AUDIO_VERSION) == len(AUDIO_BYTES)
    head = store.head(PLACED)
    assert head is not None and (head.size, head.version) == (len(AUDIO_BYTES), AUDIO_VERSION)
    assert store.get_bytes(PLACED) == AUDIO_BYTES

    # A failed condition answers None and writes nothing, whether or not the stream was read.
    assert store.put_stream_if(PLACED, iter([b"other"]), MP3, None, version="9") is None
    assert store.put_stream_if(PLACED, iter([b"other"]), MP3, "not-a-tag", version="9") is None
    assert store.get_bytes(PLACED) == AUDIO_BYTES
    assert store.head(PLACED) == head

    assert store.put_stream_if(PLACED, iter([b"ID3 newer"]), MP3, head.tag, version="9") == len(b"ID3 newer")
    newer = store.head(PLACED)
    assert newer is not None and (newer.version, store.get_bytes(PLACED)) == ("9", b"ID3 newer")


def put_stream_if_that_breaks_midway_writes_nothing(store: BlobStore) -> None:
    with pytest.raises(SourceBroke):
        store.put_stream_if(PLACED, _broken(AUDIO_BYTES[:100]), MP3, None, version=AUDIO_VERSION)
    assert store.head(PLACED) is None

    store.put_if(PLACED, AUDIO_BYTES, MP3, None, version=AUDIO_VERSION)
    head = store.head(PLACED)
    assert head is not None
    with pytest.raises(SourceBroke):
        store.put_stream_if(PLACED, _broken(b"ID3 truncated"), MP3, head.tag, version="9")
    assert store.head(PLACED) == head  # the previous object, tag and label unchanged
    assert store.get_bytes(PLACED) == AUDIO_BYTES


def copy_if_creates_with_the_source_version_and_keeps_the_source(store: BlobStore) -> None:
    store.put_if(PARKED, AUDIO_BYTES, MP3, None, version=AUDIO_VERSION)
    parked = store.head(PARKED)

    assert store.copy_if(PARKED, PLACED, None) is True

    placed = store.head(PLACED)
    assert placed is not None and (placed.size, placed.version) == (len(AUDIO_BYTES), AUDIO_VERSION)
    assert store.get_bytes(PLACED) == AUDIO_BYTES
    assert store.head(PARKED) == parked and store.get_bytes(PARKED) == AUDIO_BYTES  # the source stays
    assert store.copy_if(PARKED, PLACED, None) is False  # the destination exists now
    assert store.head(PLACED) == placed


def copy_if_of_an_unversioned_source_has_no_version(store: BlobStore) -> None:
    store.put_bytes(PARKED, AUDIO_BYTES, MP3)
    assert store.copy_if(PARKED, PLACED, None) is True
    placed = store.head(PLACED)
    assert placed is not None and placed.version is None


def copy_if_replaces_only_the_tag_it_was_given(store: BlobStore) -> None:
    store.put_if(PLACED, b"ID3 old", MP3, None, version="1")
    stale = _tag(store, PLACED)
    store.put_if(PLACED, b"ID3 current", MP3, stale, version="2")
    current = store.head(PLACED)
    assert current is not None
    store.put_if(PARKED, AUDIO_BYTES, MP3, None, version=AUDIO_VERSION)

    assert store.copy_if(PARKED, PLACED, stale) is False
    assert store.copy_if(PARKED, PLACED, "not-a-tag") is False
    assert store.head(PLACED) == current and store.get_bytes(PLACED) == b"ID3 current"

    assert store.copy_if(PARKED, PLACED, current.tag) is True
    placed = store.head(PLACED)
    assert placed is not None and (placed.version, placed.tag != current.tag) == (AUDIO_VERSION, True)
    assert store.get_bytes(PLACED) == AUDIO_BYTES


def copy_if_of_a_missing_source_is_false(store: BlobStore) -> None:
    assert store.copy_if(PARKED, PLACED, None) is False
    assert store.head(PLACED) is None
    with pytest.raises(NotFound):
        store.get_bytes(PLACED)

    store.put_if(PLACED, AUDIO_BYTES, MP3, None, version=AUDIO_VERSION)
    placed = store.head(PLACED)
    assert placed is not None
    assert store.copy_if(PARKED, PLACED, placed.tag) is False
    assert store.head(PLACED) == placed


def write_newest_keeps_the_newest_in_sequence(store: BlobStore) -> None:
    first = write_newest(store, KEY, lambda: (OLD_DOC,), JSON, OLD)
    assert (first.outcome, first.size) == ("newer", len(OLD_DOC))
    assert write_newest(store, KEY, lambda: (OLD_DOC,), JSON, OLD).outcome == "same"
    assert write_newest(store, KEY, lambda: iter([NEW_DOC[:10], NEW_DOC[10:]]), JSON, NEW).outcome == "newer"

    late = write_newest(store, KEY, lambda: (OLD_DOC,), JSON, OLD)  # an older event, delivered late

    assert (late.outcome, late.size) == ("older", len(NEW_DOC))
    head = store.head(KEY)
    assert head is not None and (head.version, store.get_bytes(KEY)) == (NEW, NEW_DOC)


def write_newest_replaces_an_object_written_without_a_version(store: BlobStore) -> None:
    """Objects written before versions (or synced from a local archive) count as older than any label."""
    store.put_bytes(KEY, NEW_DOC, JSON)
    assert write_newest(store, KEY, lambda: (OLD_DOC,), JSON, OLD).outcome == "newer"
    head = store.head(KEY)
    assert head is not None and (head.version, store.get_bytes(KEY)) == (OLD, OLD_DOC)


WRITERS = 8


def the_same_bytes_under_a_newer_version_change_the_tag(store: BlobStore) -> None:
    """A tag changes with every write, even of the same bytes: else a writer that read the old tag could
    replace the newer version with its older one (an ABA; S3's ETag is the bytes' MD5)."""
    newest = versions.call_version("post_call_transcription", T0 + 120, NEW_DOC)
    assert store.put_if(KEY, NEW_DOC, JSON, None, version=OLD)
    before = store.head(KEY)
    assert before is not None
    assert write_newest(store, KEY, lambda: [NEW_DOC], JSON, newest).outcome == "newer"  # same bytes, newer
    after = store.head(KEY)
    assert after is not None and after.tag != before.tag and after.version == newest

    assert store.put_if(KEY, OLD_DOC, JSON, before.tag, version=NEW) is False  # the slower writer loses
    final = store.head(KEY)
    assert final is not None and final.version == newest and store.get_bytes(KEY) == NEW_DOC
    assert write_newest(store, KEY, lambda: [NEW_DOC], JSON, OLD).outcome == "older"
    again = versions.call_version("post_call_transcription", T0 + 180, NEW_DOC)  # and once more
    assert write_newest(store, KEY, lambda: [NEW_DOC], JSON, again).outcome == "newer"
    last = store.head(KEY)
    assert last is not None and last.tag != after.tag and store.get_bytes(KEY) == NEW_DOC


def concurrent_write_newest_ends_at_the_highest_version(store: BlobStore) -> None:
    """Eight writers of eight versions race on one key, in a random order: the highest one is stored."""
    docs = [b'{"conversation_id":"%s","n":%d}' % (CONVERSATION.encode(), n) for n in range(WRITERS)]
    labels = [versions.call_version("post_call_transcription", T0 + n, doc) for n, doc in enumerate(docs)]
    order = list(range(WRITERS))
    random.shuffle(order)
    start = threading.Barrier(WRITERS)
    outcomes: dict[int, str] = {}
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait(timeout=30)
            outcomes[n] = write_newest(store, KEY, lambda: iter([docs[n]]), JSON, labels[n]).outcome
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in order]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not [thread for thread in threads if thread.is_alive()]
    assert errors == []
    newest = max(range(WRITERS), key=lambda n: labels[n])
    assert outcomes[newest] == "newer"  # nobody else holds its version, so it wrote it
    assert set(outcomes.values()) <= {"newer", "older"}
    head = store.head(KEY)
    assert head is not None
    assert (head.version, head.size, store.get_bytes(KEY)) == (labels[newest], len(docs[newest]), docs[newest])


CHECKS: dict[str, Callable[[BlobStore], None]] = {
    check.__name__: check
    for check in (
        head_of_a_missing_key_is_none,
        head_reports_tag_size_and_version,
        a_plain_write_has_no_version,
        put_if_with_a_version_keeps_the_tag_conditions,
        put_if_on_a_tag_never_creates,
        put_stream_if_with_a_version,
        put_stream_if_that_breaks_midway_writes_nothing,
        copy_if_creates_with_the_source_version_and_keeps_the_source,
        copy_if_of_an_unversioned_source_has_no_version,
        copy_if_replaces_only_the_tag_it_was_given,
        copy_if_of_a_missing_source_is_false,
        write_newest_keeps_the_newest_in_sequence,
        write_newest_replaces_an_object_written_without_a_version,
        the_same_bytes_under_a_newer_version_change_the_tag,
        concurrent_write_newest_ends_at_the_highest_version,
    )
}
