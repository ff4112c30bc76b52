"""The search Lambda (Mangum) with realistic API Gateway events: HTTP API payload 2.0 and REST API
payload 1.0, S3, DynamoDB and SSM under moto. Calls are ingested through the real ingest code first.

moto signs nothing and checks no presigned URL: here we check the links' shape (SigV4, expiry,
download name); tests/integration/test_search_presign.py checks that a real S3 accepts and refuses them.
"""

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import pytest
from moto import mock_aws

from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.config import get_settings
from services.core.domain import payload
from services.core.secrets import read_ssm_secret
from services.ingest.service import Archiver
from services.search import handler
from tests.support import AUDIO, TRANSCRIPTION, TRANSCRIPTION_OUTBOUND, fake_aws_environment, fixture_json

BUCKET = "callvault-archive-search-test"
TABLE = "callvault-calls-search-test"
API_KEY = "cvk_lambda-test-key"
SECOND_KEY = "cvk_rotated-in"
CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"
OUTBOUND = "conv_01jzfrjvcce0vsea1fcbpp9p05"
REQUEST_ID = "Zq4yXhGeoAMEVsA="


class FakeContext:
    function_name = "callvault-search"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:callvault-search"
    aws_request_id = "0b5a5b6c-1b4e-4c1e-9a1e-3f2d8f0e7a11"


COMMON_HEADERS = {
    "accept": "application/json",
    "accept-encoding": "gzip, deflate",
    "host": "abc123.execute-api.us-east-1.amazonaws.com",
    "user-agent": "curl/8.5.0",
    "x-amzn-trace-id": "Root=1-67a0c0de-0123456789abcdef01234567",
    "x-forwarded-for": "34.67.146.145",
    "x-forwarded-port": "443",
    "x-forwarded-proto": "https",
}


def http_api_event(
    path: str, raw_query: str = "", headers: dict[str, str] | None = None, *, stage: str = "$default"
) -> dict[str, Any]:
    """HTTP API payload 2.0: lower-case headers, the query as sent (``rawQueryString``) and parsed."""
    route = "GET /calls/{conversation_id}" if path.count("/") > 1 else "GET /calls"
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    parsed = {k: ",".join(v) for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": {**COMMON_HEADERS, **{k.lower(): v for k, v in (headers or {}).items()}},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": "GET",
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "34.67.146.145",
                "userAgent": "curl/8.5.0",
            },
            "requestId": REQUEST_ID,
            "routeKey": route,
            "stage": stage,
            "time": "24/Nov/2026:10:40:00 +0000",
            "timeEpoch": 1795516800000,
        },
        "isBase64Encoded": False,
    }
    if parsed:
        event["queryStringParameters"] = parsed
    if path.count("/") > 1:
        event["pathParameters"] = {"conversation_id": path.rsplit("/", 1)[1]}
    return event


def rest_api_event(
    path: str, query: dict[str, list[str]] | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """REST API payload 1.0 (stage ``prod``): headers as sent plus multi-value forms, decoded query values."""
    resource = "/calls/{conversation_id}" if path.count("/") > 1 else "/calls"
    all_headers = {"Accept": "application/json", "Host": COMMON_HEADERS["host"], **(headers or {})}
    return {
        "resource": resource,
        "path": path,
        "httpMethod": "GET",
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} if query else None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"conversation_id": path.rsplit("/", 1)[1]} if path.count("/") > 1 else None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "2gxmpl",
            "resourcePath": resource,
            "httpMethod": "GET",
            "extendedRequestId": "JJbxmHc1IAMFOKw=",
            "requestTime": "24/Nov/2026:10:40:00 +0000",
            "path": f"/prod{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "domainPrefix": "abc123",
            "requestTimeEpoch": 1795516800000,
            "requestId": REQUEST_ID,
            "identity": {"sourceIp": "34.67.146.145", "userAgent": "curl/8.5.0"},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123",
        },
        "body": None,
        "isBase64Encoded": False,
    }


AUTH = {"authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    fake_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("CALLVAULT_BACKEND", "aws")
    monkeypatch.setenv("CALLVAULT_BUCKET", BUCKET)
    monkeypatch.setenv("CALLVAULT_TABLE", TABLE)
    monkeypatch.setenv("CALLVAULT_API_KEYS_PARAM", "/callvault/api-keys")
    monkeypatch.setenv("CALLVAULT_SIGNING_KEY_PARAM", "/callvault/signing-key")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        index = DynamoCallIndex(TABLE)
        index.create_table()
        ssm = boto3.client("ssm")
        hashed = "sha256:" + hashlib.sha256(SECOND_KEY.encode()).hexdigest()
        ssm.put_parameter(Name="/callvault/api-keys", Value=f"{API_KEY},{hashed}", Type="SecureString")
        ssm.put_parameter(Name="/callvault/signing-key", Value="csk_" + "s" * 40, Type="SecureString")
        archiver = Archiver(S3BlobStore(BUCKET), index, time.time)
        for name in (TRANSCRIPTION, AUDIO, TRANSCRIPTION_OUTBOUND):
            archiver.archive(payload.as_transcription_event(fixture_json(name)))
        _cold_start()
        yield
        _cold_start()


def _cold_start() -> None:
    """What a new Lambda container sees: no cached settings, secrets or app."""
    get_settings.cache_clear()
    read_ssm_secret.cache_clear()
    handler._handler = None


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = handler.lambda_handler(event, FakeContext())
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert response.get("isBase64Encoded") is False
    body: dict[str, Any] = json.loads(response["body"])
    return response["statusCode"], body, headers


def ids(body: dict[str, Any]) -> list[str]:
    return [item["conversation_id"] for item in body["items"]]


# --- HTTP API payload 2.0 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_query",
    ["phone=%2B16125550142", "phone=+16125550142", "phone=%28612%29%20555-0142", "phone=+1%20612-555-0142"],
)
def test_search_lambda_http_api_finds_calls_by_phone(aws: None, raw_query: str) -> None:
    status, body, headers = invoke(http_api_event("/calls", raw_query, AUTH))
    assert status == 200, body
    assert ids(body) == [CONVERSATION]
    assert body["next_cursor"] is None
    assert body["items"][0]["has_audio"] is True
    assert headers["x-request-id"] == REQUEST_ID  # API Gateway's id, so logs and client reports line up


def test_search_lambda_http_api_lists_recent_calls_and_pages_with_the_cursor(aws: None) -> None:
    status, first, _ = invoke(http_api_event("/calls", "limit=1", AUTH))
    assert status == 200 and ids(first) == [OUTBOUND] and first["next_cursor"]
    status, second, _ = invoke(http_api_event("/calls", f"limit=1&cursor={quote(first['next_cursor'])}", AUTH))
    assert status == 200 and ids(second) == [CONVERSATION] and second["next_cursor"] is None
    status, body, _ = invoke(http_api_event("/calls", f"limit=1&cursor={quote(first['next_cursor'])}x", AUTH))
    assert (status, body["error"]["code"]) == (400, "invalid_cursor")


def test_search_lambda_http_api_call_detail_has_presigned_s3_links(aws: None) -> None:
    status, call, _ = invoke(http_api_event(f"/calls/{CONVERSATION}", "", AUTH))
    assert status == 200, call
    assert call["phone"] == "+16125550142" and call["transcript_key"] == f"16125550142/{CONVERSATION}.json"
    for kind, suffix in (("transcript", "json"), ("audio", "mp3")):
        link = call["links"][kind]
        url = urlsplit(link["url"])
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert f"16125550142/{CONVERSATION}.{suffix}" in url.path
        assert BUCKET in url.netloc + url.path
        assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
        assert query["X-Amz-Expires"] == "900"
        assert query["X-Amz-Signature"]
        disposition = "inline" if suffix == "mp3" else "attachment"  # audio plays in the browser (#14)
        assert query["response-content-disposition"] == f'{disposition}; filename="{CONVERSATION}.{suffix}"'
        assert abs(link["expires_at"] - (time.time() + 900)) < 5
    assert call["links"]["audio"]["bytes"] == call["audio_bytes"] > 0


def test_search_lambda_link_lifetime_is_configurable(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVAULT_LINK_TTL_SECS", "604800")
    _cold_start()
    _, call, _ = invoke(http_api_event(f"/calls/{CONVERSATION}", "", AUTH))
    assert "X-Amz-Expires=604800" in call["links"]["transcript"]["url"]


def test_search_lambda_link_lifetime_over_seven_days_stops_the_cold_start(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLVAULT_LINK_TTL_SECS", "604801")
    _cold_start()
    with pytest.raises(ValueError, match="link_ttl_secs"):
        handler.lambda_handler(http_api_event("/calls", "", AUTH), FakeContext())


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"authorization": "Bearer cvk_wrong"}, 401),
        (AUTH, 200),
        ({"authorization": f"Bearer {SECOND_KEY}"}, 200),
    ],
    ids=["no-key", "wrong-key", "right-key", "hashed-key-from-ssm"],
)
def test_search_lambda_keys_come_from_ssm(aws: None, headers: dict[str, str], status: int) -> None:
    for path in ("/calls", f"/calls/{CONVERSATION}"):
        got, body, _ = invoke(http_api_event(path, "", headers))
        assert got == status
        if status == 401:
            assert body == {
                "error": {"code": "unauthorized", "message": body["error"]["message"]},
                "request_id": REQUEST_ID,
            }


@pytest.mark.parametrize(
    ("path", "query", "status", "code"),
    [
        ("/calls/conv_missing", "", 404, "not_found"),
        ("/calls/conv.bad", "", 422, "invalid_request"),
        ("/calls", "phone=555-0142", 422, "invalid_request"),
        ("/calls", "limit=1000", 422, "invalid_request"),
        ("/calls", "since=tomorrow", 422, "invalid_request"),
        ("/calls", "status=bogus", 422, "invalid_request"),
    ],
)
def test_search_lambda_errors_use_the_envelope(aws: None, path: str, query: str, status: int, code: str) -> None:
    got, body, _ = invoke(http_api_event(path, query, AUTH))
    assert (got, body["error"]["code"], body["request_id"]) == (status, code, REQUEST_ID)


def test_search_lambda_serves_its_openapi_document_and_docs_without_a_key(aws: None) -> None:
    """Routed on the HTTP API (infra/template.yaml), so a deployed API documents itself like `serve` does."""
    status, body, _ = invoke(http_api_event("/openapi.json", "", {}))
    assert status == 200 and "/calls/{conversation_id}" in body["paths"]
    response = handler.lambda_handler(http_api_event("/docs", "", {}), FakeContext())
    assert response["statusCode"] == 200
    assert "swagger-ui" in response["body"] and "/openapi.json" in response["body"]


def test_search_lambda_docs_load_no_script_from_another_origin(aws: None) -> None:
    """/docs shares its origin with the console and its session cookie: a script from a CDN there could
    read every console page as the signed-in reviewer, so Swagger UI comes from the function itself."""
    page = handler.lambda_handler(http_api_event("/docs", "", {}), FakeContext())["body"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
    for source in sources:
        asset = handler.lambda_handler(http_api_event(source, "", {}), FakeContext())
        assert asset["statusCode"] == 200, source


def test_search_lambda_named_stage_uses_the_base_path(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVAULT_API_BASE_PATH", "/prod")
    _cold_start()
    status, body, _ = invoke(http_api_event("/calls", "phone=%2B16125550142", AUTH, stage="prod"))
    assert status == 200 and ids(body) == [CONVERSATION]


def test_search_lambda_filters_by_agent_and_time(aws: None) -> None:
    _, body, _ = invoke(http_api_event("/calls", "agent_id=agent_01jxbrc1trfxev5sdp5xk4ra67&since=2025-07-07", AUTH))
    assert ids(body) == [OUTBOUND]
    _, body, _ = invoke(http_api_event("/calls", "until=2025-07-07T00:00:00Z", AUTH))
    assert ids(body) == [CONVERSATION]


def test_search_lambda_filters_by_status_and_outcome(aws: None) -> None:
    for query, expected in [
        ("status=done", [OUTBOUND, CONVERSATION]),
        ("status=initiation_failed", []),
        ("call_successful=failure", [OUTBOUND, CONVERSATION]),
        ("call_successful=success", []),
        ("phone=%2B16125550142&status=done", [CONVERSATION]),
        ("phone=%2B16125550142&status=failed", []),
    ]:
        _, body, _ = invoke(http_api_event("/calls", query, AUTH))
        assert ids(body) == expected, query


# --- REST API payload 1.0 -----------------------------------------------------------------------


@pytest.mark.parametrize("phone", ["+16125550142", "(612) 555-0142", " 16125550142"])
def test_search_lambda_rest_api_finds_calls_by_phone(aws: None, phone: str) -> None:
    status, body, headers = invoke(rest_api_event("/calls", {"phone": [phone]}, {"Authorization": f"Bearer {API_KEY}"}))
    assert status == 200, body
    assert ids(body) == [CONVERSATION]
    assert headers["x-request-id"] == REQUEST_ID


def test_search_lambda_rest_api_call_detail_and_errors(aws: None) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    status, call, _ = invoke(rest_api_event(f"/calls/{CONVERSATION}", None, auth))
    assert status == 200 and call["links"]["transcript"]["url"].startswith("https://")
    status, body, _ = invoke(rest_api_event(f"/calls/{CONVERSATION}", None, {}))
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    status, body, _ = invoke(rest_api_event("/calls/conv_missing", None, auth))
    assert (status, body["error"]["code"]) == (404, "not_found")


# --- cold start and imports ---------------------------------------------------------------------


def test_search_lambda_without_a_signing_key_refuses_to_start(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLVAULT_SIGNING_KEY_PARAM")
    _cold_start()
    with pytest.raises(RuntimeError, match="CALLVAULT_SIGNING_KEY"):
        handler.lambda_handler(http_api_event("/calls", "", AUTH), FakeContext())


def test_search_lambda_reads_ssm_once_per_cold_start(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    invoke(http_api_event("/calls", "", AUTH))
    boto3.client("ssm").put_parameter(Name="/callvault/api-keys", Value="cvk_new", Type="SecureString", Overwrite=True)
    assert invoke(http_api_event("/calls", "", AUTH))[0] == 200  # the warm container keeps its keys
    _cold_start()
    assert invoke(http_api_event("/calls", "", AUTH))[0] == 401  # a new one reads the rotated list


def test_search_lambda_imports_neither_the_ingest_code_nor_mem0() -> None:
    code = (
        "import sys, services.search.handler; "
        "banned = ('services.ingest', 'services.local', 'mem0', 'uvicorn'); "
        "print(sorted(m for m in sys.modules if m.startswith(banned)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- IAM auth on the HTTP API instead of API keys -----------------------------------------------

IAM_CALLER = {
    "accessKey": "ASIAXAMPLEACCESSKEY",
    "accountId": "123456789012",
    "callerId": "AROAXAMPLEROLEID:analyst",
    "principalOrgId": None,
    "userArn": "arn:aws:sts::123456789012:assumed-role/callvault-readers/analyst",
    "userId": "AROAXAMPLEROLEID:analyst",
}


def test_search_lambda_iam_mode_trusts_api_gateways_iam_authorizer(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVAULT_API_AUTH", "iam")
    _cold_start()
    signed_by_iam = http_api_event("/calls", "phone=%2B16125550142")
    signed_by_iam["requestContext"]["authorizer"] = {"iam": IAM_CALLER}
    # SigV4 puts its own signature in Authorization: it must not be read as an API key.
    signed_by_iam["headers"]["authorization"] = "AWS4-HMAC-SHA256 Credential=ASIAXAMPLEACCESSKEY/20261124/..."
    status, body, _ = invoke(signed_by_iam)
    assert status == 200 and ids(body) == [CONVERSATION]

    rest = rest_api_event(f"/calls/{CONVERSATION}")
    rest["requestContext"]["identity"] |= {"userArn": IAM_CALLER["userArn"], "accessKey": IAM_CALLER["accessKey"]}
    assert invoke(rest)[0] == 200


def test_search_lambda_iam_mode_without_the_authorizer_fails_closed(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLVAULT_API_AUTH", "iam")
    _cold_start()
    for event in (
        http_api_event("/calls", "", AUTH),
        rest_api_event("/calls", None, {"Authorization": f"Bearer {API_KEY}"}),
    ):
        status, body, _ = invoke(event)  # even a valid API key does not replace the missing IAM caller
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        assert "IAM" in body["error"]["message"]
