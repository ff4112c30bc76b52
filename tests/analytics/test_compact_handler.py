"""The daily compaction Lambda (services/analytics/compact_handler.py) on S3 under moto.

The built package, under its own IAM role, is run by tests/infra/test_built_handlers.py; here the
handler's behaviour: what it merges, what it leaves, what it logs and returns, and that it fails loudly.
"""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import pytest

from services.analytics import compact_handler
from services.analytics.rows import Row, decode, encode
from services.analytics.tables import (
    CALLS,
    CONTENT_TYPE,
    EVALUATIONS,
    MESSAGES,
    TABLES,
    day_object_key,
    is_closed,
    object_key,
)
from services.core.config import get_settings
from services.core.domain.errors import StorageUnavailable
from tests.support import fake_aws_environment

ANALYTICS_BUCKET = "callvault-analytics-compact-test"
PHONE = "+16125550142"
TEXT = "my order number is 4471, please refund it"
TODAY = datetime.now(UTC).date()
CLOSED = (TODAY - timedelta(days=5)).isoformat()  # closed whatever the hour of the run
OPEN = TODAY.isoformat()  # open for two more days
CLOSED_CALLS = ("conv_closed_a", "conv_closed_b", "conv_closed_c")
OPEN_CALLS = ("conv_open_a", "conv_open_b")


class FakeContext:
    function_name = "callvault-analytics-compact"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:callvault-analytics-compact"
    aws_request_id = "0f4c1d2e-3b4a-4c5d-8e6f-7a8b9c0d1e2f"


# What EventBridge sends for a scheduled rule; the handler reads nothing from it.
SCHEDULED_EVENT: dict[str, Any] = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": f"{OPEN}T00:30:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/callvault-AnalyticsCompactFunctionDaily"],
    "detail": {},
}


def _cold_start() -> None:
    get_settings.cache_clear()
    compact_handler._store = None


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Any]:
    from moto import mock_aws

    fake_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("CALLVAULT_BACKEND", "aws")
    monkeypatch.setenv("CALLVAULT_ANALYTICS_BUCKET", ANALYTICS_BUCKET)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=ANALYTICS_BUCKET)
        _cold_start()
        yield s3
        _cold_start()


def _rows(table: str, conversation_id: str) -> list[Row]:
    if table == CALLS:
        return [{"conversation_id": conversation_id, "phone": PHONE, "agent_id": "agent_1", "duration_secs": 60}]
    if table == MESSAGES:
        return [
            {"conversation_id": conversation_id, "phone": PHONE, "turn_index": i, "role": role, "text": TEXT}
            for i, role in enumerate(("agent", "user"))
        ]
    return [{"conversation_id": conversation_id, "phone": PHONE, "kind": "criterion", "criteria_id": "resolved"}]


def _put_calls(s3: Any, dt: str, conversations: tuple[str, ...]) -> None:
    for table in TABLES:
        for conversation_id in conversations:
            body = encode(table, _rows(table, conversation_id))
            key = object_key(table, dt, conversation_id)
            s3.put_object(Bucket=ANALYTICS_BUCKET, Key=key, Body=body, ContentType=CONTENT_TYPE)


def _objects(s3: Any) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=ANALYTICS_BUCKET).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=ANALYTICS_BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The handler's records, formatted exactly as the Lambda's JSON formatter writes them to CloudWatch."""
    formatter = compact_handler.logger.registered_formatter
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == compact_handler.logger.name]


def test_the_day_dates_are_closed_and_open_as_meant() -> None:
    now = time.time()
    assert is_closed(CLOSED, now) and not is_closed(OPEN, now)
    assert date.fromisoformat(CLOSED) < date.fromisoformat(OPEN)


def test_closed_days_become_one_object_each_open_days_stay(bucket: Any, caplog: pytest.LogCaptureFixture) -> None:
    _put_calls(bucket, CLOSED, CLOSED_CALLS)
    _put_calls(bucket, OPEN, OPEN_CALLS)
    open_before = {k: v for k, v in _objects(bucket).items() if f"/dt={OPEN}/" in k}
    assert len(open_before) == len(TABLES) * len(OPEN_CALLS)

    result = compact_handler.lambda_handler(SCHEDULED_EVENT, FakeContext())

    assert result == {"days_compacted": 1, "day_objects_written": 3, "objects_merged": 9}
    after = _objects(bucket)
    assert sorted(k for k in after if f"/dt={CLOSED}/" in k) == sorted(day_object_key(t, CLOSED) for t in TABLES)
    for table in TABLES:
        merged = decode(after[day_object_key(table, CLOSED)])
        expected = [row for c in CLOSED_CALLS for row in decode(encode(table, _rows(table, c)))]
        assert merged == expected, table  # every row, once, in conversation order
    assert {k: v for k, v in after.items() if f"/dt={OPEN}/" in k} == open_before  # untouched, byte for byte

    (line,) = _log_lines(caplog)
    assert line["level"] == "INFO" and line["message"] == "analytics compaction done"
    assert line["service"] == "callvault-analytics-compact"
    assert {k: line[k] for k in result} == result
    assert line["partitions"] == 3 and line["partitions_by_table"] == {CALLS: 1, MESSAGES: 1, EVALUATIONS: 1}
    assert line["oldest_dt"] == line["newest_dt"] == CLOSED
    assert line["conversations"] == 9 and line["max_attempts"] == 1
    text = json.dumps(line)
    assert PHONE.removeprefix("+") not in text and "5550142" not in text  # no phone number, in any form
    assert TEXT not in text and not [c for c in (*CLOSED_CALLS, *OPEN_CALLS) if c in text]  # no row, no id


def test_the_store_has_a_connection_for_every_compaction_thread(bucket: Any) -> None:
    """botocore's pool keeps 10 connections by default: with more threads than that, the rest wait for
    a connection or open one that is thrown away after the request ("Connection pool is full")."""
    from services.analytics.compaction import IO_WORKERS
    from services.core.adapters.s3_blob_store import S3BlobStore

    store = compact_handler._get_store()

    assert isinstance(store, S3BlobStore)
    config: Any = store.client.meta.config  # botocore's Config sets its options as attributes at run time
    assert config.max_pool_connections >= IO_WORKERS
    assert config.signature_version == "s3v4"  # still presigns as every region wants


def test_a_second_run_has_nothing_to_do(bucket: Any, caplog: pytest.LogCaptureFixture) -> None:
    _put_calls(bucket, CLOSED, CLOSED_CALLS)
    _put_calls(bucket, OPEN, OPEN_CALLS)
    compact_handler.lambda_handler(SCHEDULED_EVENT, FakeContext())
    before = _objects(bucket)
    caplog.clear()

    result = compact_handler.lambda_handler(SCHEDULED_EVENT, FakeContext())

    assert result == {"days_compacted": 0, "day_objects_written": 0, "objects_merged": 0}
    assert _objects(bucket) == before
    (line,) = _log_lines(caplog)
    assert line["partitions"] == 0 and line["partitions_by_table"] == {}
    assert "oldest_dt" not in line  # None: Powertools leaves the key out


def test_a_late_call_of_a_compacted_day_is_merged_into_its_day_object(bucket: Any) -> None:
    """A redelivery or backfill that left a per-call object beside the day object: the next run folds it in."""
    _put_calls(bucket, CLOSED, CLOSED_CALLS[:2])
    compact_handler.lambda_handler(SCHEDULED_EVENT, FakeContext())
    _put_calls(bucket, CLOSED, CLOSED_CALLS[2:])

    result = compact_handler.lambda_handler(SCHEDULED_EVENT, FakeContext())

    assert result == {"days_compacted": 1, "day_objects_written": 3, "objects_merged": 3}
    calls = decode(_objects(bucket)[day_object_key(CALLS, CLOSED)])
    assert [row["conversation_id"] for row in calls] == list(CLOSED_CALLS)


def test_storage_errors_fail_the_invocation(bucket: Any, caplog: pytest.LogCaptureFixture) -> None:
    """So Lambda records an error and the Errors alarm fires; the message names no key."""
    bucket.delete_bucket(Bucket=ANALYTICS_BUCKET)

    with pytest.raises(StorageUnavailable) as failure:
        compact_handler.lambda_handler(SCHEDULED_EVENT, FakeContext())

    assert ANALYTICS_BUCKET not in str(failure.value)
    assert _log_lines(caplog) == []  # no success line for a failed run


def test_a_missing_bucket_setting_fails_the_invocation(bucket: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLVAULT_ANALYTICS_BUCKET")
    _cold_start()
    with pytest.raises(RuntimeError, match="CALLVAULT_ANALYTICS_BUCKET"):
        compact_handler.lambda_handler(SCHEDULED_EVENT, FakeContext())


def test_the_handler_stays_light_to_import() -> None:
    """Cold start: no web framework, no DuckDB, no Mem0 (the built package is checked in tests/infra)."""
    heavy = {"fastapi", "starlette", "uvicorn", "mangum", "duckdb", "mem0", "qdrant_client", "pynamodb"}
    code = f"import sys, services.analytics.compact_handler; print(sorted(set({sorted(heavy)!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
