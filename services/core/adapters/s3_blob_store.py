"""The archive in S3 (or anything that speaks S3: set ``AWS_ENDPOINT_URL_S3``).

Keys contain phone numbers, so no error raised from here carries a key or a URL: botocore's own
messages can (``EndpointConnectionError`` prints the object URL), hence ``from None`` and a
message built only from the operation and AWS's error code.

IAM: grant ``s3:ListBucket`` as well as Get/Put/Delete. Without it S3 answers HEAD on a missing
key with 403 instead of 404, and ``size``/``move`` report the archive as unavailable.
"""

import re
import tempfile
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..domain.errors import NotFound, StorageUnavailable
from ..ports import ObjectHead

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Below this a stream stays in memory; above, it spills to /tmp and upload_fileobj goes multipart.
SPOOL_MAX_BYTES = 8 * 1024 * 1024
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# 412: the condition failed. 409: S3's answer to a conditional write racing another one on the key.
_CONDITION_CODES = frozenset({"412", "PreconditionFailed", "409", "ConditionalRequestConflict"})
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._+-]")
VERSION_METADATA = "callvault-version"  # x-amz-meta-callvault-version: the object's version label


class S3BlobStore:
    def __init__(self, bucket: str, client: "S3Client | None" = None) -> None:
        self.bucket = bucket
        # s3v4: boto3 would otherwise presign with SigV2, which current regions refuse.
        self.client: S3Client = client or boto3.client("s3", config=Config(signature_version="s3v4"))

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (BotoCoreError, ClientError) as exc:
            _unavailable("PutObject", exc)

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> int:
        """Spool first, upload after: a source that fails mid-way leaves nothing in the bucket."""
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES) as spool:
            size = 0
            for chunk in chunks:  # an exception here propagates before any request is made
                spool.write(chunk)
                size += len(chunk)
            spool.seek(0)
            try:
                # Multipart above the transfer threshold; s3transfer aborts the upload if a part fails,
                # and S3 shows the object only once it is complete.
                self.client.upload_fileobj(spool, self.bucket, key, ExtraArgs={"ContentType": content_type})
            except (BotoCoreError, ClientError) as exc:
                _unavailable("upload", exc)
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
        """Spooled like ``put_stream``, then one conditional PutObject (bodies reach us below 64 MiB)."""
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES) as spool:
            size = 0
            for chunk in chunks:
                spool.write(chunk)
                size += len(chunk)
            spool.seek(0)
            return size if self._put_if(key, spool, content_type, tag, version) else None

    def _put_if(self, key: str, body: Any, content_type: str, tag: str | None, version: str | None) -> bool:
        extra: dict[str, Any] = {"IfNoneMatch": "*"} if tag is None else {"IfMatch": tag}
        if version is not None:
            extra["Metadata"] = {VERSION_METADATA: version}
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
        """A SigV4 GET link that downloads as ``filename``. Signing is local: no request is made."""
        safe_name = _UNSAFE_FILENAME.sub("_", filename) or "download"
        try:
            return self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ResponseContentDisposition": f'attachment; filename="{safe_name}"',
                },
                ExpiresIn=expires_in,
            )
        except (BotoCoreError, ClientError) as exc:
            _unavailable("presign", exc)


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
