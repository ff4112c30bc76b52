"""Webhook refusals that say what to do (issue #14), through the real `callvault serve`: a signature made
with another secret or over changed bytes (`curl -d`), and a conversation document posted as a webhook."""

import json
import time
from pathlib import Path

import httpx
import pytest

from services.core.domain import signing
from tests.support import SECRET, TRANSCRIPTION, fixture_bytes, fixture_json, serve_archive, signed_headers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

URL = "/webhooks/elevenlabs"
OTHER_SECRET = "wsec_some_other_secret"


def _refusal(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    assert SECRET not in message and OTHER_SECRET not in message
    return message


def test_webhook_hints(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data") as served:
        body = fixture_bytes(TRANSCRIPTION)
        wrong = httpx.post(served.url + URL, content=body, headers=signed_headers(body, OTHER_SECRET))
        message = _refusal(wrong, 401, "invalid_signature")
        assert message.startswith("signature does not match: sign with this server's webhook secret")
        assert "CALLVAULT_WEBHOOK_SECRET" in message and "webhook-secret file in the data dir" in message
        assert "--data-binary" in message and str(served.data_dir) not in message

        # What `curl -d @file` sends: the file without its newlines, as a form; signed over the file.
        pretty = json.dumps(fixture_json(TRANSCRIPTION), indent=2).encode()
        header = signing.sign(pretty, SECRET, int(time.time()))
        form = httpx.post(
            served.url + URL,
            content=pretty.replace(b"\n", b""),
            headers={signing.HEADER: header, "content-type": "application/x-www-form-urlencoded"},
        )
        message = _refusal(form, 401, "invalid_signature")
        assert "arrived as a form (curl -d)" in message and "--data-binary @FILE" in message

        document = json.dumps(fixture_json(TRANSCRIPTION)["data"]).encode()  # what GET conversation returns
        posted = httpx.post(served.url + URL, content=document, headers=signed_headers(document))
        message = _refusal(posted, 400, "invalid_payload")
        assert "conversation document" in message and "callvault import" in message
        assert not list((served.data_dir / "archive").rglob("*.json"))
