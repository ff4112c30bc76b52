"""The BlobStore contract, run against every adapter (see conftest.py), plus S3-only checks."""

import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config

from services.core.adapters.s3_blob_store import PART_BYTES, S3BlobStore
from services.core.domain.errors import NotFound, StorageUnavailable

from . import multipart_checks, versioned_checks
from .conditional_checks import CHECKS, KEY
from .conftest import BUCKET, BlobHarness

PHONE_DIGITS = "16125550142"
CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"
TRANSCRIPT = f"{PHONE_DIGITS}/{CONVERSATION}.json"
AUDIO = f"{PHONE_DIGITS}/{CONVERSATION}.mp3"
PENDING = f"_pending-audio/{CONVERSATION}.mp3"
DOCUMENT = b'{"conversation_id":"conv_01jzfrjvcce0vsea1fcbpp9p04","status":"done","transcript":[]}'
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 64


class SourceBroke(Exception):
    """Raised by a chunk source half-way, like a base64 decoder meeting a bad character."""


def broken_source(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks
    raise SourceBroke("the audio stream ended early")


def test_blob_store_put_bytes_then_get_and_size(blobs: BlobHarness) -> None:
    blobs.store.put_bytes(TRANSCRIPT, DOCUMENT, "application/json")

    assert blobs.store.get_bytes(TRANSCRIPT) == DOCUMENT
    assert blobs.store.size(TRANSCRIPT) == len(DOCUMENT)


def test_blob_store_put_bytes_replaces(blobs: BlobHarness) -> None:
    blobs.store.put_bytes(TRANSCRIPT, b'{"status":"processing"}', "application/json")
    blobs.store.put_bytes(TRANSCRIPT, DOCUMENT, "application/json")

    assert blobs.store.get_bytes(TRANSCRIPT) == DOCUMENT
    assert blobs.leftovers() == [TRANSCRIPT]


def test_blob_store_missing_key_is_not_found_and_has_no_size(blobs: BlobHarness) -> None:
    with pytest.raises(NotFound):
        blobs.store.get_bytes(TRANSCRIPT)
    assert blobs.store.size(TRANSCRIPT) is None


def test_blob_store_put_stream_concatenates_and_returns_size(blobs: BlobHarness) -> None:
    chunks = [MP3[:100], b"", MP3[100:5000], MP3[5000:]]

    size = blobs.store.put_stream(AUDIO, iter(chunks), "audio/mpeg")

    assert size == len(MP3)
    assert blobs.store.get_bytes(AUDIO) == MP3
    assert blobs.store.size(AUDIO) == len(MP3)


def test_blob_store_put_stream_larger_than_one_part(blobs: BlobHarness) -> None:
    """Past PART_BYTES the S3 adapter uploads in parts (a multipart upload), one part in memory at a time."""
    chunk = bytes(range(256)) * 4096  # 1 MiB
    count = PART_BYTES // len(chunk) + 2

    size = blobs.store.put_stream(AUDIO, (chunk for _ in range(count)), "audio/mpeg")

    assert size == len(chunk) * count
    assert blobs.store.size(AUDIO) == size
    assert blobs.store.get_bytes(AUDIO) == chunk * count


def test_blob_store_put_stream_that_fails_midway_writes_nothing(blobs: BlobHarness) -> None:
    with pytest.raises(SourceBroke):
        blobs.store.put_stream(AUDIO, broken_source(MP3[:1000], MP3[1000:2000]), "audio/mpeg")

    assert blobs.leftovers() == []
    assert blobs.store.size(AUDIO) is None
    assert list(blobs.store.list_keys()) == []


def test_blob_store_put_stream_that_fails_after_a_part_writes_nothing(blobs: BlobHarness) -> None:
    chunk = b"\xff" * (1024 * 1024)
    chunks = [chunk] * (PART_BYTES // len(chunk) + 1)

    with pytest.raises(SourceBroke):
        blobs.store.put_stream(AUDIO, broken_source(*chunks), "audio/mpeg")

    assert blobs.leftovers() == []


def test_blob_store_failed_put_stream_keeps_the_previous_object(blobs: BlobHarness) -> None:
    blobs.store.put_bytes(AUDIO, MP3, "audio/mpeg")

    with pytest.raises(SourceBroke):
        blobs.store.put_stream(AUDIO, broken_source(b"ID3 truncated"), "audio/mpeg")

    assert blobs.store.get_bytes(AUDIO) == MP3
    assert blobs.leftovers() == [AUDIO]


def test_blob_store_move_moves_the_object(blobs: BlobHarness) -> None:
    blobs.store.put_bytes(PENDING, MP3, "audio/mpeg")

    assert blobs.store.move(PENDING, AUDIO) is True

    assert blobs.store.get_bytes(AUDIO) == MP3
    assert blobs.store.size(PENDING) is None
    assert blobs.leftovers() == [AUDIO]


def test_blob_store_move_of_a_missing_source_is_false_and_harmless(blobs: BlobHarness) -> None:
    blobs.store.put_bytes(AUDIO, MP3, "audio/mpeg")

    assert blobs.store.move(PENDING, AUDIO) is False

    assert blobs.store.get_bytes(AUDIO) == MP3
    assert blobs.leftovers() == [AUDIO]


def test_blob_store_move_twice_is_false_the_second_time(blobs: BlobHarness) -> None:
    blobs.store.put_bytes(PENDING, MP3, "audio/mpeg")

    assert blobs.store.move(PENDING, AUDIO) is True
    assert blobs.store.move(PENDING, AUDIO) is False
    assert blobs.store.get_bytes(AUDIO) == MP3


def test_blob_store_concurrent_moves_leave_one_object(blobs: BlobHarness) -> None:
    """Two deliveries placing the same pending audio at once: the object ends up once, in place."""
    blobs.store.put_bytes(PENDING, MP3, "audio/mpeg")
    start = threading.Barrier(4)
    results: list[bool] = []
    errors: list[BaseException] = []

    def place() -> None:
        start.wait()
        try:
            results.append(blobs.store.move(PENDING, AUDIO))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=place) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(results) == 4
    assert True in results
    assert blobs.store.get_bytes(AUDIO) == MP3
    assert blobs.store.size(PENDING) is None
    assert blobs.leftovers() == [AUDIO]


def test_blob_store_delete_is_idempotent(blobs: BlobHarness) -> None:
    blobs.store.put_bytes(TRANSCRIPT, DOCUMENT, "application/json")

    blobs.store.delete(TRANSCRIPT)
    blobs.store.delete(TRANSCRIPT)

    assert blobs.store.size(TRANSCRIPT) is None
    assert blobs.leftovers() == []


def test_blob_store_list_keys_by_prefix(blobs: BlobHarness) -> None:
    """A phone's prefix must not match a longer number that starts with the same digits."""
    keys = [
        TRANSCRIPT,
        AUDIO,
        f"{PHONE_DIGITS}0/conv_01jzfrk2m6e3tq8w0c7y4x1b2n.json",
        "447700900123/conv_01jzfrm4a9d6g2h8k1p5s7v3w0.json",
        PENDING,
    ]
    for key in keys:
        blobs.store.put_bytes(key, DOCUMENT, "application/json")

    assert sorted(blobs.store.list_keys()) == sorted(keys)
    assert sorted(blobs.store.list_keys(f"{PHONE_DIGITS}/")) == sorted([TRANSCRIPT, AUDIO])
    assert list(blobs.store.list_keys("_pending-audio/")) == [PENDING]
    assert list(blobs.store.list_keys("33612345678/")) == []


def test_blob_store_list_keys_walks_past_one_listing_page(blobs: BlobHarness) -> None:
    """S3 lists 1,000 keys per request: more than that must all come back, once each."""
    keys = [f"{PHONE_DIGITS}/conv_01jzfrjvcce0vsea1f{n:07d}.json" for n in range(1005)]
    for key in keys:
        blobs.store.put_bytes(key, b"{}", "application/json")

    listed = list(blobs.store.list_keys(f"{PHONE_DIGITS}/"))

    assert sorted(listed) == keys
    assert len(listed) == len(set(listed))


# --- S3 only -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_s3_blob_store_presign_get_is_sigv4_inline_audio() -> None:
    store = S3BlobStore(BUCKET)

    url = store.presign_get(AUDIO, 300, "+16125550142_conv_01jzfrjvcce0vsea1fcbpp9p04.mp3")

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path.endswith(f"/{AUDIO}")
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["300"]
    assert query["response-content-disposition"] == [
        'inline; filename="+16125550142_conv_01jzfrjvcce0vsea1fcbpp9p04.mp3"'  # a browser plays it (#14)
    ]
    transcript = parse_qs(urlsplit(store.presign_get(AUDIO, 300, "conv.json")).query)
    assert transcript["response-content-disposition"] == ['attachment; filename="conv.json"']


@pytest.mark.usefixtures("aws")
def test_s3_blob_store_presign_get_cannot_be_used_to_inject_headers() -> None:
    store = S3BlobStore(BUCKET)

    url = store.presign_get(AUDIO, 60, 'call".mp3\r\nSet-Cookie: a=b')

    disposition = parse_qs(urlsplit(url).query)["response-content-disposition"][0]
    assert disposition == 'attachment; filename="call_.mp3__Set-Cookie__a_b"'


@pytest.mark.usefixtures("aws")
def test_s3_blob_store_missing_bucket_is_unavailable_not_missing_and_names_no_key() -> None:
    store = S3BlobStore("callvault-no-such-bucket")

    for operation in (
        lambda: store.put_bytes(AUDIO, MP3, "audio/mpeg"),
        lambda: store.put_stream(AUDIO, iter([MP3]), "audio/mpeg"),
        lambda: store.get_bytes(AUDIO),
        lambda: list(store.list_keys(f"{PHONE_DIGITS}/")),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            operation()
        assert PHONE_DIGITS not in str(caught.value)
        assert "NoSuchBucket" in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.usefixtures("aws")
def test_s3_blob_store_unreachable_endpoint_is_unavailable_and_names_no_key() -> None:
    """botocore's EndpointConnectionError quotes the object URL, phone number included."""
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    store = S3BlobStore(BUCKET, client=client)

    for operation in (
        lambda: store.size(AUDIO),
        lambda: store.get_bytes(AUDIO),
        lambda: store.move(PENDING, AUDIO),
        lambda: store.delete(AUDIO),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            operation()
        assert PHONE_DIGITS not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_blob_store_compare_and_swap(blobs: BlobHarness, check: str) -> None:
    CHECKS[check](blobs.store)
    assert not [key for key in blobs.leftovers() if key != KEY]  # no claim or temp file left behind


@pytest.mark.parametrize("check", sorted(versioned_checks.CHECKS))
def test_blob_store_versioned_write(blobs: BlobHarness, check: str) -> None:
    """head, put_if / put_stream_if with a version, copy_if, and write_newest: the write protocol's port."""
    versioned_checks.CHECKS[check](blobs.store)
    assert set(blobs.leftovers()) <= versioned_checks.KEYS  # no temp, link or claim file left behind


@pytest.mark.parametrize("check", sorted(multipart_checks.CHECKS))
def test_blob_store_conditional_stream_of_many_parts(
    blobs: BlobHarness, check: str, request: pytest.FixtureRequest
) -> None:
    """put_stream_if of a 20 MiB stream: on S3 a multipart upload completed on the condition, aborted
    when the condition fails or the source breaks (nothing written, no unfinished upload left)."""
    if blobs.name == "moto" and check in multipart_checks.NEEDS_IF_MATCH_ON_COMPLETE:
        # Shown on a real S3 instead (tests/contract/test_s3_multipart_seaweed.py).
        request.applymarker(
            pytest.mark.xfail(strict=True, reason="moto 5.2.5 ignores If-Match on CompleteMultipartUpload")
        )
    multipart_checks.CHECKS[check](blobs.store, blobs.leftovers)


def test_blob_store_purge_removes_the_object_and_only_it(blobs: BlobHarness) -> None:
    other = f"{PHONE_DIGITS}/conv_other.json"
    longer = f"{TRANSCRIPT}.bak"  # a key the purged one is a prefix of
    for key in (TRANSCRIPT, other, longer):
        blobs.store.put_bytes(key, DOCUMENT, "application/json")
    blobs.store.put_bytes(TRANSCRIPT, DOCUMENT + b" ", "application/json")

    assert blobs.store.purge(TRANSCRIPT) >= 1

    assert blobs.store.head(TRANSCRIPT) is None
    assert blobs.leftovers() == sorted([other, longer])
    assert blobs.store.get_bytes(other) == DOCUMENT


def test_blob_store_purge_is_idempotent(blobs: BlobHarness) -> None:
    assert blobs.store.purge(TRANSCRIPT) == 0
    blobs.store.put_if(TRANSCRIPT, DOCUMENT, "application/json", None, version="1.1.a")
    blobs.store.purge(TRANSCRIPT)

    assert blobs.store.purge(TRANSCRIPT) == 0
    assert blobs.store.list_keys() is not None and list(blobs.store.list_keys()) == []


@pytest.fixture
def versioned_bucket(aws: None) -> tuple[S3BlobStore, object]:
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return S3BlobStore(BUCKET), client


def _all_versions(client: object) -> list[tuple[str, str]]:
    listing = client.list_object_versions(Bucket=BUCKET)  # type: ignore[attr-defined]
    return sorted(
        [("version", v["Key"]) for v in listing.get("Versions", [])]
        + [("marker", m["Key"]) for m in listing.get("DeleteMarkers", [])]
    )


def test_s3_blob_store_purge_on_a_versioned_bucket_removes_every_version_and_delete_marker(
    versioned_bucket: tuple[S3BlobStore, object],
) -> None:
    """Deleting the current object of a versioned bucket erases nothing: purge removes the history."""
    store, client = versioned_bucket
    other = f"{PHONE_DIGITS}/conv_other.json"
    store.put_bytes(other, DOCUMENT, "application/json")
    for body in (b"{}", b'{"a":1}', DOCUMENT):
        store.put_bytes(TRANSCRIPT, body, "application/json")
    store.delete(TRANSCRIPT)  # a delete marker on top of three versions
    store.put_bytes(AUDIO, MP3, "audio/mpeg")
    store.delete(AUDIO)
    assert ("marker", TRANSCRIPT) in _all_versions(client)

    assert store.purge(TRANSCRIPT) == 4
    assert store.purge(AUDIO) == 2

    assert _all_versions(client) == [("version", other)]
    assert store.purge(TRANSCRIPT) == 0
    assert store.get_bytes(other) == DOCUMENT


def test_blob_store_list_keys_by_any_prefix_shape(blobs: BlobHarness) -> None:
    """Prefixes that end inside a name, name a nested folder, or a folder that does not exist."""
    keys = [
        TRANSCRIPT,
        AUDIO,
        f"{PHONE_DIGITS}/conv_other.json",
        "calls/dt=2025-07-06/conv_a.json.gz",
        "calls/dt=2025-07-06/day.compacted.json.gz",
        "calls/dt=2025-07-07/conv_b.json.gz",
    ]
    for key in keys:
        blobs.store.put_bytes(key, b"x", "application/octet-stream")

    assert sorted(blobs.store.list_keys(f"{PHONE_DIGITS}/conv_0")) == sorted([TRANSCRIPT, AUDIO])
    assert sorted(blobs.store.list_keys("1612555")) == sorted(keys[:3])
    assert sorted(blobs.store.list_keys("calls/dt=2025-07-06/")) == sorted(keys[3:5])
    assert sorted(blobs.store.list_keys("calls/")) == sorted(keys[3:])
    assert list(blobs.store.list_keys("calls/dt=2025-07-08/")) == []
    assert list(blobs.store.list_keys("nowhere/at/all/")) == []
