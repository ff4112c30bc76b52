"""S3BlobStore's streamed writes hold about two parts in memory whatever the stream's length, and say
exactly what they ask of S3 (an in-memory S3 client that keeps only sizes and checksums: moto would
keep the bytes and spoil the measurement)."""

import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from services.core.adapters.s3_blob_store import PART_BYTES, VERSION_METADATA, S3BlobStore
from services.core.domain.errors import StorageUnavailable

MIB = 1024 * 1024


class SizeOnlyS3:
    """The multipart calls the adapter makes, recorded without keeping any body."""

    def __init__(self, fail_complete: str | None = None, fail_part: int | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_complete = fail_complete
        self.fail_part = fail_part

    def _record(self, name: str, kwargs: dict[str, Any]) -> None:
        body = kwargs.pop("Body", None)
        if body is not None:
            kwargs["size"], kwargs["crc"] = len(body), zlib.crc32(body)
        self.calls.append((name, kwargs))

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        self._record("PutObject", kwargs)
        return {"ETag": '"etag"'}

    def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self._record("CreateMultipartUpload", kwargs)
        return {"UploadId": "upload-1"}

    def upload_part(self, **kwargs: Any) -> dict[str, Any]:
        self._record("UploadPart", kwargs)
        if kwargs["PartNumber"] == self.fail_part:
            raise ClientError({"Error": {"Code": "InternalError"}}, "UploadPart")
        return {"ETag": f'"part-{kwargs["PartNumber"]}"', "ChecksumCRC32": f"crc-{kwargs['PartNumber']}"}

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self._record("CompleteMultipartUpload", kwargs)
        if self.fail_complete is not None:
            raise ClientError({"Error": {"Code": self.fail_complete}}, "CompleteMultipartUpload")
        return {"ETag": '"etag-3"'}

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self._record("AbortMultipartUpload", kwargs)
        return {}

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def stream(total: int, chunk: int = 1_000_003) -> Iterator[bytes]:
    """``total`` bytes made one chunk at a time (the generator holds one chunk)."""
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        yield bytes([sent % 251]) * size
        sent += size


def test_s3_blob_store_streams_any_length_in_about_two_parts_of_memory() -> None:
    client = SizeOnlyS3()
    store = S3BlobStore("bucket", client=client)  # type: ignore[arg-type]
    total = 96 * MIB

    tracemalloc.start()
    try:
        size = store.put_stream_if("k.mp3", stream(total), "audio/mpeg", None, version="v1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert size == total
    assert peak < 2.5 * PART_BYTES, f"peak {peak / MIB:.1f} MiB for a {total // MIB} MiB stream"
    parts = [kwargs for name, kwargs in client.calls if name == "UploadPart"]
    assert [p["size"] for p in parts] == [PART_BYTES] * (total // PART_BYTES)
    assert [p["PartNumber"] for p in parts] == list(range(1, len(parts) + 1))


def test_s3_blob_store_multipart_carries_type_version_checksums_and_the_condition() -> None:
    client = SizeOnlyS3()
    store = S3BlobStore("bucket", client=client)  # type: ignore[arg-type]

    assert store.put_stream_if("k.mp3", stream(2 * PART_BYTES + 5), "audio/mpeg", '"old"', version="v2") == (
        2 * PART_BYTES + 5
    )

    assert client.names() == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    create, complete = client.calls[0][1], client.calls[-1][1]
    assert create == {
        "Bucket": "bucket",
        "Key": "k.mp3",
        "ContentType": "audio/mpeg",
        "Metadata": {VERSION_METADATA: "v2"},
        "ChecksumAlgorithm": "CRC32",
    }
    assert complete["IfMatch"] == '"old"' and "IfNoneMatch" not in complete
    assert complete["MultipartUpload"]["Parts"] == [
        {"ETag": f'"part-{n}"', "PartNumber": n, "ChecksumCRC32": f"crc-{n}"} for n in (1, 2, 3)
    ]
    assert [kwargs["size"] for name, kwargs in client.calls if name == "UploadPart"] == [PART_BYTES, PART_BYTES, 5]


@pytest.mark.parametrize("size", [0, 1, PART_BYTES])
def test_s3_blob_store_a_stream_within_one_part_is_one_conditional_put(size: int) -> None:
    client = SizeOnlyS3()
    store = S3BlobStore("bucket", client=client)  # type: ignore[arg-type]

    assert store.put_stream_if("k.mp3", stream(size), "audio/mpeg", None, version="v1") == size

    ((name, kwargs),) = client.calls
    assert name == "PutObject" and kwargs["IfNoneMatch"] == "*" and kwargs["size"] == size
    assert kwargs["Metadata"] == {VERSION_METADATA: "v1"}


def test_s3_blob_store_plain_stream_of_many_parts_has_no_condition() -> None:
    client = SizeOnlyS3()
    store = S3BlobStore("bucket", client=client)  # type: ignore[arg-type]

    assert store.put_stream("k.mp3", stream(PART_BYTES + 1), "audio/mpeg") == PART_BYTES + 1

    complete = client.calls[-1][1]
    assert "IfMatch" not in complete and "IfNoneMatch" not in complete
    assert "Metadata" not in client.calls[0][1]


@pytest.mark.parametrize("code", ["PreconditionFailed", "412", "ConditionalRequestConflict", "NoSuchKey"])
def test_s3_blob_store_a_failed_condition_on_completion_aborts_and_answers_none(code: str) -> None:
    client = SizeOnlyS3(fail_complete=code)
    store = S3BlobStore("bucket", client=client)  # type: ignore[arg-type]

    assert store.put_stream_if("k.mp3", stream(PART_BYTES + 1), "audio/mpeg", None, version="v1") is None

    assert client.names()[-2:] == ["CompleteMultipartUpload", "AbortMultipartUpload"]
    assert client.calls[-1][1] == {"Bucket": "bucket", "Key": "k.mp3", "UploadId": "upload-1"}


def test_s3_blob_store_a_failed_part_aborts_and_is_unavailable_without_the_key() -> None:
    client = SizeOnlyS3(fail_part=2)
    store = S3BlobStore("bucket", client=client)  # type: ignore[arg-type]

    with pytest.raises(StorageUnavailable) as caught:
        store.put_stream_if("16125550142/conv_1.mp3", stream(3 * PART_BYTES), "audio/mpeg", None, version="v1")

    assert "UploadPart: InternalError" in str(caught.value) and "16125550142" not in str(caught.value)
    assert client.names() == ["CreateMultipartUpload", "UploadPart", "UploadPart", "AbortMultipartUpload"]


def test_s3_blob_store_a_source_that_raises_mid_upload_aborts_and_re_raises() -> None:
    client = SizeOnlyS3()
    store = S3BlobStore("bucket", client=client)  # type: ignore[arg-type]

    def cut_off(after: int) -> Iterator[bytes]:
        yield from stream(after)
        raise ConnectionResetError("upstream hung up")

    with pytest.raises(ConnectionResetError):
        store.put_stream_if("k.mp3", cut_off(PART_BYTES + MIB), "audio/mpeg", None, version="v1")
    assert client.names() == []  # cut off before a second part was complete: nothing was asked of S3

    with pytest.raises(ConnectionResetError):
        store.put_stream_if("k.mp3", cut_off(2 * PART_BYTES + MIB), "audio/mpeg", None, version="v1")
    assert client.names() == ["CreateMultipartUpload", "UploadPart", "UploadPart", "AbortMultipartUpload"]
