"""#13 on AWS, through the Lambda entries with API Gateway HTTP API events, S3/DynamoDB/SSM under moto:
the search function records every transcript/audio access in the audit table (and fails closed), the
privacy function answers ``DELETE /callers/{phone}`` and ``GET /audit`` to admin keys only, holds refuse.
(The functions as packaged, under their IAM roles: tests/infra/test_built_handlers.py.)"""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from services.aws import privacy_handler, search_handler
from services.core.adapters.dynamo_audit_log import DynamoAuditTable, DynamoHolds
from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.config import get_settings
from services.core.domain import payload
from services.core.domain.holds import Hold
from services.core.erased import conversation_digest
from services.core.secrets import read_ssm_secret
from services.ingest.service import Archiver
from tests.support import AUDIO, TRANSCRIPTION, fake_aws_environment, fixture_json

BUCKET = "callvault-archive-privacy-test"
TABLE = "callvault-calls-privacy-test"
AUDIT_TABLE = "callvault-audit-privacy-test"
ADMIN_KEY = "cvk_privacy-admin"
READ_KEY = "cvk_privacy-reader"
TOMBSTONE_KEY = "tsk_" + "t" * 40
PHONE = "+16125550142"
CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
READER = {"authorization": f"Bearer {READ_KEY}"}


class FakeContext:
    function_name = "callvault-privacy"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:callvault-privacy"
    aws_request_id = "0b5a5b6c-1b4e-4c1e-9a1e-3f2d8f0e7a12"


def event(method: str, path: str, query: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """API Gateway HTTP API, payload 2.0."""
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "t",
            },
            "requestId": "req-privacy",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "05/Dec/2026:10:40:00 +0000",
            "timeEpoch": 1796467200000,
        },
        "isBase64Encoded": False,
    }


def _cold_start() -> None:
    get_settings.cache_clear()
    read_ssm_secret.cache_clear()
    search_handler._handler.cache_clear()
    privacy_handler._handler.cache_clear()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    fake_aws_environment(monkeypatch, tmp_path)
    for name, value in {
        "CALLVAULT_BACKEND": "aws",
        "CALLVAULT_BUCKET": BUCKET,
        "CALLVAULT_TABLE": TABLE,
        "CALLVAULT_AUDIT_TABLE": AUDIT_TABLE,
        "CALLVAULT_API_KEYS_PARAM": "/callvault/api-keys",
        "CALLVAULT_SIGNING_KEY_PARAM": "/callvault/signing-key",
        "CALLVAULT_TOMBSTONE_KEY_PARAM": "/callvault/tombstone-key",
        "CALLVAULT_MEMORY_BACKEND": "none",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        index = DynamoCallIndex(TABLE)
        index.create_table()
        DynamoAuditTable(AUDIT_TABLE).create_table()
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name="/callvault/api-keys", Value=f"{ADMIN_KEY},read:{READ_KEY}", Type="SecureString")
        ssm.put_parameter(Name="/callvault/signing-key", Value="csk_" + "s" * 40, Type="SecureString")
        ssm.put_parameter(Name="/callvault/tombstone-key", Value=TOMBSTONE_KEY, Type="SecureString")
        archiver = Archiver(S3BlobStore(BUCKET), index, time.time)
        for name in (TRANSCRIPTION, AUDIO):
            archiver.archive(payload.as_transcription_event(fixture_json(name)))
        _cold_start()
        yield
        _cold_start()


def search(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = search_handler.lambda_handler(request, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def privacy(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = privacy_handler.lambda_handler(request, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def audit_items() -> list[dict[str, Any]]:
    query = boto3.client("dynamodb").query(
        TableName=AUDIT_TABLE,
        KeyConditionExpression="chain = :c",
        ExpressionAttributeValues={":c": {"S": "audit"}},
    )
    return list(query["Items"])


def test_search_function_records_a_link_issued_by_key_id_and_no_listing(aws: None) -> None:
    listed = search(event("GET", "/calls", headers=READER))
    refused = search(event("GET", f"/calls/{CONVERSATION}"))  # no key: not an access
    one = search(event("GET", f"/calls/{CONVERSATION}", headers=READER))

    assert listed[0] == 200 and refused[0] == 401 and one[0] == 200
    (entry,) = audit_items()
    assert entry["action"]["S"] == "link_issued" and entry["actor"]["S"].startswith("cfg_")
    digest = conversation_digest(TOMBSTONE_KEY.encode(), CONVERSATION)
    assert json.loads(entry["subjects"]["S"]) == [digest]
    text = json.dumps(entry)
    assert CONVERSATION not in text and PHONE[1:] not in text and READ_KEY not in text


def test_search_function_fails_closed_when_the_access_cannot_be_recorded(aws: None) -> None:
    boto3.client("dynamodb").delete_table(TableName=AUDIT_TABLE)

    # The entry is written when the response starts: the failure ends the invocation (API Gateway
    # answers 500), so the links never reach the client.
    with pytest.raises(Exception):  # noqa: B017 - whatever Mangum raises for the aborted response
        search(event("GET", f"/calls/{CONVERSATION}", headers=READER))
    assert search(event("GET", "/calls", headers=READER))[0] == 200  # listings are not recorded


def test_privacy_function_erases_a_caller_for_admin_keys_only_and_the_trail_shows_it(aws: None) -> None:
    path = "/callers/%2B16125550142"
    s3 = boto3.client("s3")

    refused = privacy(event("DELETE", path, headers=READER))
    planned = privacy(event("DELETE", path, "dry_run=true", ADMIN))
    assert s3.list_object_versions(Bucket=BUCKET).get("Versions")  # a dry run removes nothing
    erased = privacy(event("DELETE", path, headers=ADMIN))
    trail_refused = privacy(event("GET", "/audit", headers=READER))
    trail = privacy(event("GET", "/audit", headers=ADMIN))
    one = privacy(event("GET", "/audit", f"conversation={CONVERSATION}", ADMIN))

    assert refused[0] == 403 and trail_refused[0] == 403
    assert planned[0] == 200 and planned[1]["conversations"] == 1 and planned[1]["phone"].endswith("0142")
    assert erased[0] == 200 and erased[1]["conversations"] == 1 and erased[1]["archive_objects"] >= 2
    listing = s3.list_object_versions(Bucket=BUCKET)
    assert not listing.get("Versions") and not listing.get("DeleteMarkers")  # every version, every marker
    assert DynamoCallIndex(TABLE).get(CONVERSATION) is None
    assert trail[0] == 200 and trail[1]["chain"]["ok"] is True
    assert [e["action"] for e in trail[1]["items"]] == ["erase"]
    assert [e["action"] for e in one[1]["items"]] == ["erase"]
    assert PHONE not in json.dumps(trail[1]) and CONVERSATION not in json.dumps(trail[1])
    assert search(event("GET", f"/calls/{CONVERSATION}", headers=READER))[0] == 404


def test_privacy_function_refuses_a_held_caller_with_409_naming_the_hold(aws: None) -> None:
    from services.core.adapters.memory import MemoryTombstones
    from services.core.erased import ErasedConversations

    caller = ErasedConversations(TOMBSTONE_KEY.encode(), MemoryTombstones()).caller_digest(PHONE)
    DynamoHolds(AUDIT_TABLE).place(Hold("hold_abc123", "caller", caller, "*******0142", "case 7", 1, "cli:alice"))

    status, body = privacy(event("DELETE", "/callers/%2B16125550142", headers=ADMIN))

    assert status == 409 and body["error"]["code"] == "held" and "hold_abc123" in body["error"]["message"]
    assert DynamoCallIndex(TABLE).get(CONVERSATION) is not None
    assert audit_items() == []  # refused before anything, the erase entry included


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("CALLVAULT_TOMBSTONE_KEY_PARAM", "the privacy API needs TombstoneKeyParameterName set: docs/privacy.md"),
        ("CALLVAULT_AUDIT_TABLE", "the privacy API needs CALLVAULT_AUDIT_TABLE"),
    ],
    ids=["no-tombstone-key", "no-audit-table"],
)
def test_privacy_function_not_configured_answers_401_without_a_key_and_503_with_one(
    aws: None, monkeypatch: pytest.MonkeyPatch, variable: str, message: str
) -> None:
    # The template's default has no tombstone key: an erasure without tombstones comes back with the
    # next retry or sync, and without the audit table (the legal holds) a held caller would be erased.
    # Neither may be a 500 (the Errors alarm) for an anonymous request, nor erase anything.
    from services.core.adapters.memory import MemoryTombstones
    from services.core.erased import ErasedConversations

    caller = ErasedConversations(TOMBSTONE_KEY.encode(), MemoryTombstones()).caller_digest(PHONE)
    DynamoHolds(AUDIT_TABLE).place(Hold("hold_abc123", "caller", caller, "*******0142", "case 7", 1, "cli:alice"))
    monkeypatch.delenv(variable)
    _cold_start()

    anonymous_erase = privacy(event("DELETE", "/callers/%2B16125550142"))
    anonymous_trail = privacy(event("GET", "/audit", headers={"authorization": "Bearer cvk_wrong"}))
    erase = privacy(event("DELETE", "/callers/%2B16125550142", headers=ADMIN))
    trail = privacy(event("GET", "/audit", headers=ADMIN))

    assert anonymous_erase[0] == 401 and anonymous_erase[1]["error"]["code"] == "unauthorized"
    assert anonymous_trail[0] == 401 and anonymous_trail[1]["error"]["code"] == "unauthorized"
    for status, body in (erase, trail):
        assert status == 503 and body["error"]["code"] == "not_configured"
        assert message in body["error"]["message"] and body["request_id"] == "req-privacy"
    assert DynamoCallIndex(TABLE).get(CONVERSATION) is not None


def test_search_function_imports_neither_ingest_nor_mem0() -> None:
    code = (
        "import sys, services.aws.search_handler; "
        "banned = ('services.ingest', 'services.local', 'services.memory', 'mem0', 'uvicorn'); "
        "print(sorted(m for m in sys.modules if m.startswith(banned)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_memory_api_function_records_a_memory_read_by_key_id_and_masked_number(aws: None) -> None:
    from services.aws import memory_api_handler

    memory_api_handler._handler.cache_clear()
    try:
        response = memory_api_handler.lambda_handler(
            event("GET", "/callers/%2B16125550142/memories", headers=READER), FakeContext()
        )
        refused = memory_api_handler.lambda_handler(event("GET", "/callers/%2B16125550142/memories"), FakeContext())
    finally:
        memory_api_handler._handler.cache_clear()

    assert response["statusCode"] == 200, response
    assert refused["statusCode"] == 401
    (entry,) = audit_items()
    assert entry["action"]["S"] == "memory_read" and entry["actor"]["S"].startswith("cfg_")
    assert json.loads(entry["detail"]["S"]) == {"phone": "*******0142"}
    assert PHONE[1:] not in json.dumps(entry)
