"""Property-based: requests generated from the local app's own OpenAPI document never get a 5xx, and
every error they provoke is the envelope. Bounded (max_examples) to stay well under a minute."""

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from services.core.config import Settings
from services.local.app import create_local_app
from services.web.auth import hash_key
from tests.support import ALL_FIXTURES, SECRET, fixture_bytes, signed_headers

KEY = "cvk_schemathesis"
MAX_EXAMPLES = 60


# The schema is loaded when pytest collects this module (schemathesis parametrizes from it), so the
# app exists at import time; its data dir is a temp folder removed when the module's tests end.
DATA_DIR = Path(tempfile.mkdtemp(prefix="callvault-schemathesis-"))
APP = create_local_app(Settings(data_dir=DATA_DIR / "data"), [SECRET], api_key_hashes=[hash_key(KEY)])
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def archived_calls() -> Iterator[None]:
    with TestClient(APP) as client:
        for name in ALL_FIXTURES:
            body = fixture_bytes(name)
            assert client.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body)).status_code == 200
    yield
    shutil.rmtree(DATA_DIR, ignore_errors=True)


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and response.request.method != "HEAD":  # HEAD answers carry no body
        body = response.json()
        assert set(body) == {"error", "request_id"}, body
        assert set(body["error"]) == {"code", "message"}, body
        assert "Traceback" not in response.text


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_search_schemathesis_no_server_error_with_a_key(case: Any) -> None:
    started = time.monotonic()
    check(case.call(headers={"Authorization": f"Bearer {KEY}"}))
    assert time.monotonic() - started < 5


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES // 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_search_schemathesis_no_server_error_without_a_key(case: Any) -> None:
    check(case.call())
