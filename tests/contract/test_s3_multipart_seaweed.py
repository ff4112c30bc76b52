"""Conditional multipart uploads on a real S3 implementation (SeaweedFS): the adapter's long streams
rest on S3 checking If-None-Match *and* If-Match on CompleteMultipartUpload. moto 5.2.5 checks only
the first, so the check it cannot run (a stale tag) is shown here."""

import uuid

import pytest

from services.core.adapters.s3_blob_store import S3BlobStore
from tests.conftest_seaweed import SeaweedS3, s3_client

from . import multipart_checks


@pytest.mark.parametrize("check", sorted(multipart_checks.CHECKS))
def test_conditional_stream_of_many_parts_on_a_real_s3(seaweed: SeaweedS3, check: str) -> None:
    client = s3_client(seaweed)
    bucket = f"multipart-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)

    def leftovers() -> list[str]:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        uploads = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
        return sorted(keys + [f"(unfinished upload) {k}" for k in uploads])

    multipart_checks.CHECKS[check](S3BlobStore(bucket, client), leftovers)
