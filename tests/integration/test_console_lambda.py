"""The review console through the search Lambda (Mangum), as API Gateway's HTTP API (payload 2.0)
delivers it: S3, DynamoDB and SSM under moto, calls ingested through the real ingest code, a browser
played by ``LambdaBrowser`` (cookies from the response's ``cookies`` list back into the event's, form
posts base64-encoded as API Gateway sends them). Everything arrives over HTTPS, so cookies are Secure."""

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import pytest
from moto import mock_aws

from services.analytics.duckdb_engine import DuckDbEngine
from services.analytics.writer import AnalyticsWriter
from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.config import get_settings
from services.core.domain import payload
from services.core.secrets import read_ssm_secret
from services.ingest.service import Archiver
from services.search import handler
from tests.analytics.test_athena_engine import FakeAthena
from tests.support import TRANSCRIPTION, fake_aws_environment, fixture_json
from tests.support_console import RICH_ID, TURN_TIMES, XSS, csrf_of, rich_audio, rich_call

BUCKET = "callvault-archive-console-test"
TABLE = "callvault-calls-console-test"
ADMIN, READ, LISTEN = "cvk_lambda-console-admin", "cvk_lambda-console-read", "cvk_lambda-console-listen"
HOSTILE_ID = "conv_console_lambda_hostile"
FIXTURE_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"
HOST = "abc123.execute-api.us-east-1.amazonaws.com"


class FakeContext:
    function_name = "callvault-search"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:callvault-search"
    aws_request_id = "0b5a5b6c-1b4e-4c1e-9a1e-3f2d8f0e7a12"


def http_api_event(method: str, target: str, cookies: list[str], body: bytes | None = None) -> dict[str, Any]:
    path, _, query = target.partition("?")
    headers = {
        "accept": "text/html",
        "host": HOST,
        "user-agent": "Mozilla/5.0",
        "x-forwarded-for": "34.67.146.145",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": HOST,
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "34.67.146.145"},
            "requestId": "Zq4yXhGeoAMEVsB=",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "24/Nov/2026:10:40:00 +0000",
            "timeEpoch": 1795516800000,
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in parse_qs(query, keep_blank_values=True).items()}
    if cookies:
        event["cookies"] = list(cookies)  # payload 2.0 carries request cookies here, not in a header
    if body is not None:
        headers["content-type"] = "application/x-www-form-urlencoded"
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    return event


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    set_cookies: list[str]
    text: str

    @property
    def location(self) -> str:
        return self.headers["location"]


@dataclass
class LambdaBrowser:
    """Keeps the cookies the function sets, honouring Max-Age=0 (deletion) and the cookie's Path."""

    jar: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (value, path)

    def request(self, method: str, target: str, form: dict[str, str] | None = None) -> Answer:
        path = target.partition("?")[0]
        sent = [f"{name}={value}" for name, (value, scope) in self.jar.items() if path.startswith(scope)]
        body = urlencode(form).encode() if form is not None else None
        response = handler.lambda_handler(http_api_event(method, target, sent, body), FakeContext())
        headers = {k.lower(): v for k, v in response["headers"].items()}
        raw = response.get("body") or ""
        text = base64.b64decode(raw).decode() if response.get("isBase64Encoded") else raw
        set_cookies = list(response.get("cookies") or [])
        for cookie in set_cookies:
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0].strip('"')
            scope = re.search(r"Path=([^;]+)", cookie, re.IGNORECASE)
            if "max-age=0" in cookie.lower() or not value:
                self.jar.pop(name, None)
            else:
                self.jar[name] = (value, scope.group(1) if scope else "/")
        return Answer(response["statusCode"], headers, set_cookies, text)

    def get(self, target: str) -> Answer:
        return self.request("GET", target)

    def sign_in(self, key: str, next_path: str = "/console/calls") -> Answer:
        form = self.get("/console/signin?" + urlencode({"next": next_path}))
        assert form.status == 200
        return self.request("POST", "/console/signin", {"csrf": csrf_of(form.text), "key": key, "next": next_path})


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
        hashed_read = "read:sha256:" + hashlib.sha256(READ.encode()).hexdigest()  # roles ride on the entries
        keys = f"{ADMIN},{hashed_read},listen:{LISTEN}"
        ssm.put_parameter(Name="/callvault/api-keys", Value=keys, Type="SecureString")
        ssm.put_parameter(Name="/callvault/signing-key", Value="csk_" + "c" * 40, Type="SecureString")
        # The analytics tables go to a folder here: Athena's stand-in reads them (see athena below).
        analytics = AnalyticsWriter(FsBlobStore(tmp_path / "analytics"))
        archiver = Archiver(S3BlobStore(BUCKET), index, time.time, analytics=analytics)
        for body in (rich_call(), rich_audio(), rich_call(HOSTILE_ID, hostile=XSS, phone="+16125550198")):
            archiver.archive(payload.parse_envelope(body))
        archiver.archive(payload.as_transcription_event(fixture_json(TRANSCRIPTION)))
        _cold_start()
        yield
        _cold_start()


def _cold_start() -> None:
    get_settings.cache_clear()
    read_ssm_secret.cache_clear()
    handler._handler = None


def _cookie(answer: Answer, name: str) -> str:
    return next(c for c in answer.set_cookies if c.startswith(name + "="))


def test_console_lambda_signs_in_over_https_with_a_secure_session_cookie(aws: None) -> None:
    browser = LambdaBrowser()
    root = browser.get("/")
    assert (root.status, root.location) == (303, "/console/calls")
    stranger = browser.get("/console/calls")
    assert (stranger.status, stranger.location) == (303, "/console/signin?next=/console/calls")

    form = browser.get("/console/signin")
    assert form.status == 200 and "text/html" in form.headers["content-type"]
    assert "script-src 'self'" in form.headers["content-security-policy"]
    signin = _cookie(form, "cv_signin").lower()
    assert "secure" in signin and "httponly" in signin and "samesite=strict" in signin

    signed = browser.sign_in(ADMIN)
    assert (signed.status, signed.location) == (303, "/console/calls")
    session = _cookie(signed, "cv_session").lower()
    for flag in ("secure", "httponly", "samesite=lax", "path=/", "max-age=28800"):
        assert flag in session, flag
    assert "cv_signin" not in browser.jar  # the sign-in cookie is spent

    calls = browser.get("/console/calls")
    assert calls.status == 200
    for conversation_id in (RICH_ID, HOSTILE_ID, FIXTURE_ID):
        assert f"/console/calls/{conversation_id}" in calls.text
    assert "<script>window.__xss" not in calls.text  # escaped on Lambda too

    signout = browser.request("POST", "/console/signout", {"csrf": csrf_of(calls.text)})
    assert (signout.status, signout.location) == (303, "/console/signin")
    assert browser.get("/console/calls").status == 303


def test_console_lambda_sign_in_refuses_a_wrong_key_and_a_missing_token(aws: None) -> None:
    browser = LambdaBrowser()
    assert browser.sign_in("cvk_not-a-key").status == 401
    forged = LambdaBrowser().request("POST", "/console/signin", {"csrf": "x", "key": ADMIN, "next": "/"})
    assert forged.status == 403 and not any(c.startswith("cv_session=") for c in forged.set_cookies)
    assert "cv_session" not in browser.jar


def test_console_lambda_filters_and_pages_through_the_dynamodb_index(aws: None) -> None:
    browser = LambdaBrowser()
    browser.sign_in(ADMIN)
    mine = browser.get("/console/calls?" + urlencode({"phone": "(612) 555-0199"}))
    assert mine.status == 200
    assert f"/console/calls/{RICH_ID}" in mine.text and HOSTILE_ID not in mine.text
    wrong = browser.get("/console/calls?phone=555")
    assert wrong.status == 400 and 'role="alert"' in wrong.text


def test_console_lambda_call_page_has_the_transcript_and_a_player_for_admin(aws: None) -> None:
    browser = LambdaBrowser()
    browser.sign_in(ADMIN)
    page = browser.get(f"/console/calls/{RICH_ID}")
    assert page.status == 200
    assert page.text.count('class="turn ') == len(TURN_TIMES)
    assert '<audio id="player"' in page.text
    assert "console.js" in page.text
    audio = browser.get(f"/console/calls/{RICH_ID}/audio")
    assert audio.status == 307  # to a presigned S3 URL: the browser streams it with Range from S3
    url = urlsplit(audio.location)
    assert BUCKET in url.netloc + url.path and "X-Amz-Signature=" in url.query
    assert f"16125550199/{RICH_ID}.mp3" in url.path
    assert browser.get("/console/calls/conv_missing").status == 404


@pytest.mark.parametrize(("key", "may_listen"), [(READ, False), (LISTEN, True)], ids=["read", "listen"])
def test_console_lambda_audio_follows_the_keys_role(aws: None, key: str, may_listen: bool) -> None:
    browser = LambdaBrowser()
    assert browser.sign_in(key).status == 303
    page = browser.get(f"/console/calls/{RICH_ID}")
    assert page.status == 200 and page.text.count('class="turn ') == len(TURN_TIMES)
    assert ("<audio" in page.text) is may_listen
    assert ("Audio (MP3)" in page.text) is may_listen
    audio = browser.get(f"/console/calls/{RICH_ID}/audio")
    assert audio.status == (307 if may_listen else 403)
    assert "X-Amz-Signature" not in audio.text


def test_console_lambda_caller_page(aws: None) -> None:
    browser = LambdaBrowser()
    browser.sign_in(ADMIN)
    page = browser.get("/console/callers/" + "%28612%29%20555-0199")
    assert page.status == 200 and f"/console/calls/{RICH_ID}" in page.text
    assert "Caller memory is off on this server." in page.text


def test_console_lambda_static_files_come_from_the_function(aws: None) -> None:
    browser = LambdaBrowser()
    for name, kind in (("console.css", "text/css"), ("console.js", "javascript")):
        answer = browser.get(f"/console/static/{name}")
        assert answer.status == 200 and kind in answer.headers["content-type"], name
        assert answer.text.strip()


# --- transcript search and the dashboard on Athena --------------------------------------------------
# moto 5.2.5 cannot answer this botocore's Athena (rest-json) calls, and runs no SQL anyway: the Athena
# client is tests/analytics' FakeAthena, which answers like Athena (states, text values, a header row,
# pages) by running the report's Trino text on DuckDB over the analytics tables the ingest above wrote.

WORKGROUP = "callvault-analytics"


@pytest.fixture
def athena(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAthena]:
    """The function as the template configures it: reports on Athena in CallVault's workgroup."""
    monkeypatch.setenv("CALLVAULT_SEARCH_ANALYTICS", "athena")
    monkeypatch.setenv("CALLVAULT_ATHENA_WORKGROUP", WORKGROUP)
    monkeypatch.setenv("CALLVAULT_ATHENA_DATABASE", "callvault_analytics")
    with DuckDbEngine.local(tmp_path / "analytics") as tables:
        fake = FakeAthena(tables)
        real_client: Any = boto3.client

        def client(service: str, *args: Any, **kwargs: Any) -> Any:
            return fake if service == "athena" else real_client(service, *args, **kwargs)

        monkeypatch.setattr(boto3, "client", client)
        _cold_start()
        yield fake


def _api_search(key: str, query: str) -> tuple[int, dict[str, Any]]:
    event = http_api_event("GET", "/search?" + query, [])
    event["headers"]["authorization"] = f"Bearer {key}"
    response = handler.lambda_handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def test_console_lambda_search_runs_on_athena_and_shows_progress_while_it_waits(athena: FakeAthena) -> None:
    browser = LambdaBrowser()
    browser.sign_in(READ)
    page = browser.get("/console/search?q=Turn+3")
    assert page.status == 200, page.text
    for conversation_id in (RICH_ID, HOSTILE_ID):
        assert f'href="/console/calls/{conversation_id}#turn-3"' in page.text
    assert page.text.count("<mark>Turn 3</mark>") == 2
    assert "<script>window.__xss" not in page.text
    # While Athena runs, the form's status region counts the seconds (progress.js; tests/e2e runs it).
    assert 'data-progress="Searching on Athena"' in page.text and 'class="progress" role="status"' in page.text
    assert '<script src="/console/static/progress.js' in page.text and "Search runs on Athena" in page.text
    [request] = athena.requests
    assert request["WorkGroup"] == WORKGROUP
    assert request["QueryExecutionContext"] == {"Database": "callvault_analytics"}
    assert "strpos(lower(text), lower(?))" in request["QueryString"] and "'Turn 3'" in request["ExecutionParameters"]


def test_console_lambda_search_api_route_runs_on_athena(athena: FakeAthena) -> None:
    status, body = _api_search(READ, "q=turn+1&since=2025-07-01")
    assert status == 200, body
    assert body["engine"] == "athena"
    found = sorted((m["conversation_id"], m["turn_index"], m["role"]) for m in body["items"])
    assert found == [(HOSTILE_ID, 1, "user"), (RICH_ID, 1, "user")]


def test_console_lambda_dashboard_runs_its_three_reports_on_athena(athena: FakeAthena) -> None:
    browser = LambdaBrowser()
    browser.sign_in(ADMIN)
    page = browser.get("/console/dashboard")
    assert page.status == 200, page.text
    assert "All calls: 3" in page.text  # the two rich calls and the fixture call
    assert "session_closure" in page.text  # an evaluation criterion of the fixtures
    assert 'data-progress="Running the reports on Athena"' in page.text
    assert len(athena.requests) == 3 and {r["WorkGroup"] for r in athena.requests} == {WORKGROUP}


def test_console_lambda_a_failed_athena_query_is_named_on_the_page_without_athenas_reason(
    athena: FakeAthena,
) -> None:
    """Athena's reason can quote the results bucket or a value it read: reviewers see the query's id
    (its reason is in Athena's history for the operator), and the API says only 503."""
    athena.states = ["QUEUED", "FAILED"]
    athena.failure_reason = "Access denied writing s3://acme-athena-results-123456789012/ for 'Maria Garcia'"
    _cold_start()
    browser = LambdaBrowser()
    browser.sign_in(READ)
    page = browser.get("/console/search?q=hello")
    assert page.status == 503 and "Athena query q1 failed" in page.text
    dashboard = browser.get("/console/dashboard")
    assert dashboard.status == 503 and "Athena query q2 failed" in dashboard.text
    for text in (page.text, dashboard.text):
        assert "acme-athena-results" not in text and "Maria" not in text and "query history" in text


def test_console_lambda_athena_query_past_its_time_is_stopped_and_the_page_says_so(
    athena: FakeAthena, monkeypatch: pytest.MonkeyPatch
) -> None:
    athena.states = ["QUEUED", "RUNNING"]  # never finishes
    monkeypatch.setattr(handler, "ATHENA_TIMEOUT_SECS", 0.3)
    _cold_start()
    browser = LambdaBrowser()
    browser.sign_in(READ)
    page = browser.get("/console/search?q=hello")
    assert page.status == 503 and 'role="alert"' in page.text and "did not finish" in page.text
    status, body = _api_search(READ, "q=hello")
    assert (status, body["error"]["code"]) == (503, "storage_unavailable")
    assert athena.stopped == ["q1", "q2"]  # stopped, not left scanning (and billing)
    dashboard = browser.get("/console/dashboard")
    assert dashboard.status == 503 and "The reports did not finish" in dashboard.text
