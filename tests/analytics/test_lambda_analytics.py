"""The ingest Lambda writes the analytics objects to their own bucket before answering 200 (moto)."""

import gzip
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from services.analytics.compaction import compact_closed_days
from services.analytics.tables import day_object_key, object_key
from services.core.adapters.s3_blob_store import S3BlobStore
from tests.integration.test_ingest_lambda import CONVERSATION, _cold_start, invoke
from tests.integration.test_ingest_lambda import aws as aws  # the fixture, reused here
from tests.support import AUDIO, TRANSCRIPTION, fixture_bytes

ANALYTICS_BUCKET = "callvault-analytics-lambda-test"


@pytest.fixture
def analytics_bucket(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    boto3.client("s3").create_bucket(Bucket=ANALYTICS_BUCKET)
    monkeypatch.setenv("CALLVAULT_ANALYTICS_BUCKET", ANALYTICS_BUCKET)
    _cold_start()
    yield ANALYTICS_BUCKET


def _keys(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def _calls_rows(bucket: str, key: str) -> list[dict[str, Any]]:
    blob = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    return [json.loads(line) for line in gzip.decompress(blob["Body"].read()).splitlines()]


def _version(store: S3BlobStore, key: str) -> str | None:
    head = store.head(key)
    assert head is not None
    return head.version


def test_lambda_writes_the_three_tables_to_the_analytics_bucket(analytics_bucket: str) -> None:
    # The capture is from 2025: its day is long closed, so the rows are a late write, per-call objects
    # written by S3 conditional writes on the event's version (moto implements If-Match / If-None-Match),
    # folded into the day objects by the next merge.
    for _ in range(2):  # a redelivery replaces the call's rows
        status, _body = invoke(fixture_bytes(TRANSCRIPTION))
        assert status == 200
    per_call = sorted(object_key(t, "2025-07-06", CONVERSATION) for t in ("calls", "messages", "evaluations"))
    assert _keys(analytics_bucket) == per_call
    store = S3BlobStore(analytics_bucket)
    versions = {_version(store, key) for key in per_call}
    assert len(versions) == 1 and None not in versions  # S3 metadata callvault-version
    status, _body = invoke(fixture_bytes(AUDIO), base64_body=True)
    assert status == 200
    [row] = _calls_rows(analytics_bucket, object_key("calls", "2025-07-06", CONVERSATION))
    assert row["conversation_id"] == CONVERSATION and row["has_audio"] is True
    assert _version(store, object_key("calls", "2025-07-06", CONVERSATION)) in versions  # kept by mark_audio

    compact_closed_days(store)

    assert _keys(analytics_bucket) == sorted(
        day_object_key(t, "2025-07-06") for t in ("calls", "messages", "evaluations")
    )
    [row] = _calls_rows(analytics_bucket, day_object_key("calls", "2025-07-06"))
    assert row["conversation_id"] == CONVERSATION and row["has_audio"] is True
    # Nothing of the analytics tables lands in the archive bucket.
    assert not [k for k in _keys("callvault-archive-lambda-test") if k.endswith(".json.gz")]


def test_lambda_without_an_analytics_bucket_still_archives(aws: None) -> None:
    status, body = invoke(fixture_bytes(TRANSCRIPTION))
    assert (status, body["status"]) == (200, "stored")
