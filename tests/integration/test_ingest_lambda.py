"""The ingest Lambda with realistic API Gateway HTTP API (payload 2.0) events, S3 and DynamoDB under moto."""

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.config import get_settings
from services.core.domain.models import CallQuery
from services.core.secrets import read_ssm_secret
from services.ingest import handler
from tests.support import (
    AUDIO,
    SECRET,
    TRANSCRIPTION,
    fake_aws_environment,
    fixture_bytes,
    fixture_json,
    signed_headers,
)

BUCKET = "callvault-archive-lambda-test"
TABLE = "callvault-calls-lambda-test"
CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"


class FakeContext:
    function_name = "callvault-ingest"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:callvault-ingest"
    aws_request_id = "5b6c1b4e-0b5a-4c1e-9a1e-3f2d8f0e7a11"


def http_api_event(body: bytes, headers: dict[str, str], *, base64_body: bool = False) -> dict[str, Any]:
    """An HTTP API payload 2.0 event as API Gateway sends it: lower-case headers, body as text or base64."""
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/elevenlabs",
        "rawPath": "/webhooks/elevenlabs",
        "rawQueryString": "",
        "headers": {
            "accept-encoding": "gzip, deflate",
            "content-length": str(len(body)),
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "python-httpx/0.28.1",
            "x-amzn-trace-id": "Root=1-67a0c0de-0123456789abcdef01234567",
            "x-forwarded-for": "34.67.146.145",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **{k.lower(): v for k, v in headers.items()},
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": "/webhooks/elevenlabs",
                "protocol": "HTTP/1.1",
                "sourceIp": "34.67.146.145",
                "userAgent": "python-httpx/0.28.1",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "POST /webhooks/elevenlabs",
            "stage": "$default",
            "time": "24/Nov/2026:10:40:00 +0000",
            "timeEpoch": 1795516800000,
        },
        "body": base64.b64encode(body).decode() if base64_body else body.decode("utf-8"),
        "isBase64Encoded": base64_body,
    }


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    fake_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("CALLVAULT_BACKEND", "aws")
    monkeypatch.setenv("CALLVAULT_BUCKET", BUCKET)
    monkeypatch.setenv("CALLVAULT_TABLE", TABLE)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        DynamoCallIndex(TABLE).create_table()
        boto3.client("ssm").put_parameter(
            Name="/callvault/webhook-secret", Value=f"wsec_old,{SECRET}", Type="SecureString"
        )
        monkeypatch.setenv("CALLVAULT_WEBHOOK_SECRET_PARAM", "/callvault/webhook-secret")
        _cold_start()
        yield
        _cold_start()


def _cold_start() -> None:
    """What a new Lambda container sees: no cached settings, secrets or clients."""
    get_settings.cache_clear()
    read_ssm_secret.cache_clear()
    handler._receiver = None


def invoke(body: bytes, headers: dict[str, str] | None = None, *, base64_body: bool = False) -> tuple[int, Any]:
    event = http_api_event(body, signed_headers(body) if headers is None else headers, base64_body=base64_body)
    response = handler.lambda_handler(event, FakeContext())
    assert response["headers"]["content-type"] == "application/json"
    return response["statusCode"], json.loads(response["body"])


def s3_keys() -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_lambda_archives_transcription_to_s3_and_dynamodb(aws: None) -> None:
    status, body = invoke(fixture_bytes(TRANSCRIPTION))

    assert (status, body["status"], body["conversation_id"]) == (200, "stored", CONVERSATION)
    assert body["request_id"] == "JKJaXmPLvHcESHA="
    assert s3_keys() == [f"16125550142/{CONVERSATION}.json"]
    stored = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"16125550142/{CONVERSATION}.json")["Body"].read()
    assert b"\n" not in stored and json.loads(stored) == fixture_json(TRANSCRIPTION)["data"]
    row = DynamoCallIndex(TABLE).get(CONVERSATION)
    assert row is not None
    assert (row.phone, row.archive_prefix, row.transcript_bytes) == ("+16125550142", "16125550142", len(stored))


def test_lambda_places_base64_encoded_audio_that_arrives_before_its_transcript(aws: None) -> None:
    status, _ = invoke(fixture_bytes(AUDIO), base64_body=True)
    assert status == 200
    assert s3_keys() == [f"_pending-audio/{CONVERSATION}.mp3"]

    status, _ = invoke(fixture_bytes(TRANSCRIPTION))

    assert status == 200
    assert s3_keys() == [f"16125550142/{CONVERSATION}.json", f"16125550142/{CONVERSATION}.mp3"]
    mp3 = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"16125550142/{CONVERSATION}.mp3")["Body"].read()
    assert mp3 == fixture_bytes("hello.mp3")
    row = DynamoCallIndex(TABLE).get(CONVERSATION)
    assert row is not None and row.has_audio and row.audio_key == f"16125550142/{CONVERSATION}.mp3"
    assert row.audio_bytes == len(mp3)


def test_lambda_accepts_the_old_secret_during_a_rotation(aws: None) -> None:
    body = fixture_bytes(TRANSCRIPTION)
    status, _ = invoke(body, signed_headers(body, secret="wsec_old"))
    assert status == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "invalid_signature"), ({"ElevenLabs-Signature": "t=abc,v0=00"}, "invalid_signature")],
    ids=["missing-signature", "malformed-signature"],
)
def test_lambda_refuses_unsigned_events_and_writes_nothing(aws: None, headers: dict[str, str], code: str) -> None:
    status, body = invoke(fixture_bytes(TRANSCRIPTION), headers)

    assert status == 401 and body["error"]["code"] == code
    assert s3_keys() == [] and DynamoCallIndex(TABLE).get(CONVERSATION) is None


def test_lambda_refuses_a_body_that_is_not_base64_when_flagged_so(aws: None) -> None:
    event = http_api_event(b"{}", {}, base64_body=False) | {"body": "not*base64!", "isBase64Encoded": True}
    response = handler.lambda_handler(event, FakeContext())
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "invalid_payload"


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_lambda_text_body_with_a_lone_surrogate_is_refused_not_a_crash(aws: None, signed: bool) -> None:
    """The event is JSON: a body that is text holds whatever its escapes say, a lone surrogate too
    (bytes ED A0 80, CESU-8). It must get the envelope like any body that is not UTF-8, not an error
    out of the handler (API Gateway answers that with a bare 500)."""
    text = fixture_bytes(TRANSCRIPTION).decode().replace("Hello", "Hello \ud800", 1)
    raw = text.encode("utf-8", "surrogatepass")
    event = http_api_event(b"{}", signed_headers(raw) if signed else {}) | {"body": text, "isBase64Encoded": False}
    response = handler.lambda_handler(event, FakeContext())
    expected = (400, "invalid_payload") if signed else (401, "invalid_signature")
    assert (response["statusCode"], json.loads(response["body"])["error"]["code"]) == expected
    assert s3_keys() == [] and DynamoCallIndex(TABLE).get(CONVERSATION) is None


def test_lambda_answers_503_with_the_envelope_when_the_bucket_is_gone(aws: None) -> None:
    boto3.client("s3").delete_bucket(Bucket=BUCKET)

    status, body = invoke(fixture_bytes(TRANSCRIPTION))

    assert status == 503
    assert body["error"]["code"] == "storage_unavailable"
    assert "Traceback" not in json.dumps(body) and BUCKET not in json.dumps(body)
    # The call was placed before its object was written; a row names an object only after it is stored.
    index = DynamoCallIndex(TABLE)
    row = index.get(CONVERSATION)
    assert row is not None and row.archive_prefix == "16125550142"
    assert (row.transcript_key, row.audio_key, row.has_audio, row.started_at) == (None, None, None, None)
    assert index.list_calls(CallQuery()).items == []


def test_lambda_answers_503_when_its_cold_start_cannot_read_the_webhook_secret(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    ssm = boto3.client("ssm")
    ssm.delete_parameter(Name="/callvault/webhook-secret")
    _cold_start()

    status, body = invoke(fixture_bytes(TRANSCRIPTION))

    assert status == 503
    assert body["error"]["code"] == "storage_unavailable" and body["request_id"] == "JKJaXmPLvHcESHA="
    assert "Traceback" not in json.dumps(body) and "/callvault/" not in json.dumps(body)
    (line,) = [r for r in caplog.records if r.getMessage() == "webhook not stored"]
    assert (line.status, line.request_id) == (503, "JKJaXmPLvHcESHA=")  # type: ignore[attr-defined]
    logs = "\n".join(handler.logger.registered_formatter.format(r) for r in caplog.records)
    assert SECRET not in logs
    assert s3_keys() == [] and DynamoCallIndex(TABLE).get(CONVERSATION) is None

    # The failure is not cached: once the parameter is back, the next event (same container) is stored.
    ssm.put_parameter(Name="/callvault/webhook-secret", Value=SECRET, Type="SecureString")
    status, body = invoke(fixture_bytes(TRANSCRIPTION))
    assert (status, body["status"]) == (200, "stored")


def test_lambda_logs_mask_the_phone_and_hold_no_transcript(aws: None, caplog: pytest.LogCaptureFixture) -> None:
    invoke(fixture_bytes(TRANSCRIPTION))

    # Format the captured records exactly as the Lambda's JSON formatter writes them to CloudWatch.
    logs = "\n".join(handler.logger.registered_formatter.format(r) for r in caplog.records)
    first_turn = fixture_json(TRANSCRIPTION)["data"]["transcript"][0]["message"]
    assert "0142" in logs
    assert "16125550142" not in logs and first_turn not in logs and SECRET not in logs


def test_ingest_lambda_does_not_import_fastapi_or_mem0() -> None:
    code = "import sys, services.ingest.handler; print(sorted({'fastapi', 'mem0', 'uvicorn'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
