"""The archive in S3 (or anything that speaks S3: set ``AWS_ENDPOINT_URL_S3``).

Keys contain phone numbers, so no error raised from here carries a key or a URL: botocore's own
messages can (``EndpointConnectionError`` prints the object URL), hence ``from None`` and a
message built only from the operation and AWS's error code.

IAM: grant ``s3:ListBucket`` as well as Get/Put/Delete. Without it S3 answers HEAD on a missing
key with 403 instead of 404, and ``size``/``move`` report the archive as unavailable. Streams longer
than one part are multipart uploads: ``s3:PutObject`` covers Create/UploadPart/Complete, and
``s3:AbortMultipartUpload`` lets a failed one clean up after itself (the bucket's lifecycle rule
``AbortIncompleteMultipartUpload`` removes what a killed process left).
"""

import contextlib
import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, cast

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..domain.disposition import content_disposition
from ..domain.errors import NotFound, StorageUnavailable
from ..ports import ObjectHead

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef

# A stream is read one part at a time: one that ends within a part is a single PutObject, a longer
# one a multipart upload of parts this size (S3 wants >= 5 MiB but the last; 10,000 parts at most,
# so streams up to ~78 GiB). Memory stays about two parts, whatever the stream's length.
PART_BYTES = 8 * 1024 * 1024
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# 412: the condition failed. 409: S3's answer to a conditional write racing another one on the key.
_CONDITION_CODES = frozenset({"412", "PreconditionFailed", "409", "ConditionalRequestConflict"})
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._+-]")
VERSION_METADATA = "callvault-version"  # x-amz-meta-callvault-version: the object's version label
_CONDITIONS = ("IfMatch", "IfNoneMatch")


class S3BlobStore:
    def __init__(self, bucket: str, client: "S3Client | None" = None, *, max_connections: int | None = None) -> None:
        """``max_connections``: the client's connection pool (botocore keeps 10 by default); give at
        least as many as the threads that share this store."""
        self.bucket = bucket
        # s3v4: boto3 would otherwise presign with SigV2, which current regions refuse.
        config = Config(signature_version="s3v4")
        if max_connections is not None:
            config = config.merge(Config(max_pool_connections=max_connections))
        self.client: S3Client = client or boto3.client("s3", config=config)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            _unavailable("PutObject", exc)

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> int:
        """Constant memory: one part buffered at a time. A source that fails mid-way leaves nothing in
        the bucket (a multipart upload is aborted; S3 shows an object only once it is complete)."""
        size = self._write_stream(key, chunks, content_type, {})
        if size is None:  # no condition was sent, so none can have failed
            raise StorageUnavailable("the archive is unavailable (PutObject: unexpected precondition failure)")
        return size

    def get_bytes(self, key: str) -> bytes:
        return self.get_tagged(key)[0]

    def size(self, key: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
        except ClientError as exc:
            if _is_missing(exc):
                return None
            _unavailable("HeadObject", exc)
        except BotoCoreError as exc:
            _unavailable("HeadObject", exc)

    def move(self, source: str, destination: str) -> bool:
        """Copy then delete. S3 has no rename: two concurrent moves may both copy (same bytes, same
        destination) and both return True; the loser of the race otherwise finds the source gone."""
        if self.size(source) is None:
            return False
        try:
            self.client.copy_object(
                Bucket=self.bucket, Key=destination, CopySource={"Bucket": self.bucket, "Key": source}
            )
        except ClientError as exc:
            if _is_missing(exc):
                return False  # a concurrent move deleted the source between our HEAD and our copy
            _unavailable("CopyObject", exc)
        except BotoCoreError as exc:
            _unavailable("CopyObject", exc)
        self.delete(source)
        return True

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)  # idempotent: 204 for a missing key
        except (BotoCoreError, ClientError) as exc:
            _unavailable("DeleteObject", exc)

    def purge(self, key: str) -> int:
        """Every version and delete marker of ``key`` (the archive bucket is versioned: deleting the
        current object only hides it). Needs ``s3:ListBucketVersions`` and ``s3:DeleteObjectVersion``.
        An unversioned bucket lists its one object with version ``null``, deleted the same way."""
        removed = 0
        try:
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key)
            for page in pages:
                doomed: list[ObjectIdentifierTypeDef] = [
                    {"Key": entry["Key"], "VersionId": entry["VersionId"]}
                    for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                    if entry.get("Key") == key  # the prefix also matches longer keys
                ]
                if not doomed:
                    continue
                response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": doomed, "Quiet": True})
                if response.get("Errors"):
                    raise StorageUnavailable("the archive is unavailable (DeleteObjects: some versions stayed)")
                removed += len(doomed)
        except (BotoCoreError, ClientError) as exc:
            _unavailable("DeleteObjects", exc)
        return removed

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for entry in page.get("Contents", []):
                    yield entry["Key"]
        except (BotoCoreError, ClientError) as exc:
            _unavailable("ListObjectsV2", exc)

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read(), response["ETag"]
        except ClientError as exc:
            if _is_missing(exc):
                raise NotFound("no archived object under this key") from None
            _unavailable("GetObject", exc)
        except BotoCoreError as exc:
            _unavailable("GetObject", exc)

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None, *, version: str | None = None) -> bool:
        """S3 conditional writes: ``If-Match`` the ETag, or ``If-None-Match: *`` to create."""
        return self._put_if(key, data, content_type, tag, version)

    def put_stream_if(
        self, key: str, chunks: Iterable[bytes], content_type: str, tag: str | None, *, version: str | None = None
    ) -> int | None:
        """``put_if`` for a stream of any length, in constant memory: within one part, one conditional
        PutObject; longer, a multipart upload whose CompleteMultipartUpload carries the condition (S3
        checks it there, atomically). A failed condition or any error aborts the upload: nothing written."""
        return self._write_stream(key, chunks, content_type, _write_args(tag, version))

    def _write_stream(self, key: str, chunks: Iterable[bytes], content_type: str, extra: dict[str, Any]) -> int | None:
        """The size written, or None when the condition in ``extra`` failed."""
        parts = _parts(chunks)
        first = next(parts, bytearray())  # an exception from the source propagates before any request
        second = next(parts, None)
        if second is None:  # the stream ended within one part
            return len(first) if self._put(key, first, content_type, extra) else None
        pending = [first, second]
        del first, second  # each part is dropped once sent: two in memory at most
        return self._multipart(key, pending, parts, content_type, extra)

    def _multipart(
        self, key: str, pending: list[bytearray], parts: Iterator[bytearray], content_type: str, extra: dict[str, Any]
    ) -> int | None:
        """Upload ``pending`` then the rest of ``parts``; complete on the condition in ``extra``."""
        condition = {k: v for k, v in extra.items() if k in _CONDITIONS}  # for the completion only
        create = {k: v for k, v in extra.items() if k not in _CONDITIONS}  # the version label's metadata
        # As s3transfer does: every part carries its CRC32, and the completion lists them.
        create.update(ContentType=content_type, ChecksumAlgorithm="CRC32")
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **create)["UploadId"]
        except (BotoCoreError, ClientError) as exc:
            _unavailable("CreateMultipartUpload", exc)
        done: list[CompletedPartTypeDef] = []
        size = 0
        operation = "UploadPart"
        try:
            for data in _pending_then(pending, parts):  # the source may raise here: aborted below
                number = len(done) + 1
                response = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=cast(bytes, data),  # botocore takes a bytearray as it is (no copy)
                    ChecksumAlgorithm="CRC32",
                )
                size += len(data)
                del data  # before the next part is read
                part: CompletedPartTypeDef = {"ETag": response["ETag"], "PartNumber": number}
                if "ChecksumCRC32" in response:
                    part["ChecksumCRC32"] = response["ChecksumCRC32"]
                done.append(part)
            operation = "CompleteMultipartUpload"
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}, **condition
            )
        except ClientError as exc:
            self._abort(key, upload_id)
            # If-Match on a key that is gone: 404. (S3 keeps the parts after a failed condition.)
            if operation == "CompleteMultipartUpload" and (_failed_condition(exc) or _is_missing(exc)):
                return None
            _unavailable(operation, exc)
        except BotoCoreError as exc:
            self._abort(key, upload_id)
            _unavailable(operation, exc)
        except BaseException:  # the source failed (or the process is stopping): leave nothing behind
            self._abort(key, upload_id)
            raise
        return size

    def _abort(self, key: str, upload_id: str) -> None:
        """Best effort: an upload left unfinished is invisible, and the lifecycle rule removes it."""
        with contextlib.suppress(BotoCoreError, ClientError):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def _put_if(self, key: str, body: Any, content_type: str, tag: str | None, version: str | None) -> bool:
        return self._put(key, body, content_type, _write_args(tag, version))

    def _put(self, key: str, body: Any, content_type: str, extra: dict[str, Any]) -> bool:
        """False when the condition in ``extra`` (if any) failed.

        A tag must change with every write, and an S3 ETag is the MD5 of the bytes: the same bytes
        written again under a newer version would keep it, and a writer holding the old tag could then
        replace the newer version (an ABA). So a write whose bytes would give the very ETag it replaces
        goes as a one-part multipart upload, whose ETag (``<md5 of the part's md5>-1``) differs."""
        if "IfMatch" in extra and _single_part_etag(body) == extra["IfMatch"].strip('"'):
            current = self.head(key)  # rare (a rewrite of the same bytes): a cheap early answer first
            if current is None or current.tag != extra["IfMatch"]:
                return False
            return self._multipart(key, [bytearray(body)], iter(()), content_type, extra) is not None
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **extra)
        except ClientError as exc:
            if _failed_condition(exc) or _is_missing(exc):  # If-Match on a key that is gone: 404
                return False
            _unavailable("PutObject", exc)
        except BotoCoreError as exc:
            _unavailable("PutObject", exc)
        return True

    def head(self, key: str) -> ObjectHead | None:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            _unavailable("HeadObject", exc)
        except BotoCoreError as exc:
            _unavailable("HeadObject", exc)
        version = response.get("Metadata", {}).get(VERSION_METADATA)
        return ObjectHead(response["ETag"], response["ContentLength"], version)

    def copy_if(self, source: str, destination: str, tag: str | None) -> bool:
        """Read, then a conditional put of the same bytes and version (only parked audio is copied, and
        an AWS webhook body is at most 6 MB)."""
        found = self.head(source)
        if found is None:
            return False
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=source, IfMatch=found.tag)
            data = response["Body"].read()
            content_type = response.get("ContentType", "application/octet-stream")
        except ClientError as exc:
            if _is_missing(exc) or _failed_condition(exc):
                return False
            _unavailable("GetObject", exc)
        except BotoCoreError as exc:
            _unavailable("GetObject", exc)
        return self._put_if(destination, data, content_type, tag, found.version)

    def delete_if(self, key: str, tag: str) -> bool:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=tag)
        except ClientError as exc:
            if _failed_condition(exc) or _is_missing(exc):
                return False
            _unavailable("DeleteObject", exc)
        except BotoCoreError as exc:
            _unavailable("DeleteObject", exc)
        return True

    def presign_get(self, key: str, expires_in: int, filename: str) -> str:
        """A SigV4 GET link named ``filename`` (audio plays inline, the rest downloads). Signing is local."""
        safe_name = _UNSAFE_FILENAME.sub("_", filename) or "download"
        try:
            return self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ResponseContentDisposition": content_disposition(safe_name),
                },
                ExpiresIn=expires_in,
            )
        except (BotoCoreError, ClientError) as exc:
            _unavailable("presign", exc)


def _pending_then(pending: list[bytearray], parts: Iterator[bytearray]) -> Iterator[bytearray]:
    """The parts already read, then the rest; each is let go of as it is handed out."""
    while pending:
        yield pending.pop(0)
    yield from parts


def _parts(chunks: Iterable[bytes]) -> Iterator[bytearray]:
    """The stream cut into parts of ``PART_BYTES`` (the last one shorter), each filled in place."""
    buffer, filled = bytearray(PART_BYTES), 0
    for chunk in chunks:
        view = memoryview(chunk)
        while len(view):
            take = min(len(view), PART_BYTES - filled)
            buffer[filled : filled + take] = view[:take]
            filled += take
            view = view[take:]
            if filled == PART_BYTES:
                yield buffer
                buffer, filled = bytearray(PART_BYTES), 0
    if filled:
        del buffer[filled:]
        yield buffer


def _single_part_etag(body: Any) -> str:
    """What S3 (unencrypted or SSE-S3) answers as the ETag of a PutObject of ``body``."""
    return hashlib.md5(bytes(body), usedforsecurity=False).hexdigest()


def _write_args(tag: str | None, version: str | None) -> dict[str, Any]:
    """A conditional write's arguments: ``If-Match`` the tag, or ``If-None-Match: *`` to create."""
    extra: dict[str, Any] = {"IfNoneMatch": "*"} if tag is None else {"IfMatch": tag}
    if version is not None:
        extra["Metadata"] = {VERSION_METADATA: version}
    return extra


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING_CODES


def _failed_condition(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _CONDITION_CODES


def _unavailable(operation: str, exc: Exception) -> NoReturn:
    """Raise StorageUnavailable naming only the operation and AWS's error code (never the key)."""
    if isinstance(exc, ClientError):
        reason = str(exc.response.get("Error", {}).get("Code", "error"))
    else:
        reason = type(exc).__name__
    raise StorageUnavailable(f"the archive is unavailable ({operation}: {reason})") from None
