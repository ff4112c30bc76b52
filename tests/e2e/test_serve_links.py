"""`callvault show` beside a running `callvault serve` makes links to the port it listens on (issue #14)."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import AUDIO, TRANSCRIPTION, fixture_bytes, serve_archive, signed_headers

CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_show_links_use_the_served_port(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data") as served:
        assert not served.url.endswith(":8080")
        body = fixture_bytes(TRANSCRIPTION)
        answer = httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
        assert answer.status_code == 200, answer.text
        conversation = answer.json()["conversation_id"]
        process = subprocess.run(
            [sys.executable, "-m", "services.cli", "show", conversation, "--json", "--data-dir", str(served.data_dir)],
            capture_output=True,
            text=True,
            check=True,
        )
        link = json.loads(process.stdout)["links"]["transcript"]["url"]
        assert link.startswith(served.url + "/files/")
        assert httpx.get(link).status_code == 200


def test_files_links_answer_head_and_play_audio_inline(tmp_path: Path) -> None:
    """Through uvicorn: HEAD is no 405 and carries no body; audio is inline so a browser plays it."""
    with serve_archive(tmp_path / "data") as served:
        for name in (TRANSCRIPTION, AUDIO):
            body = fixture_bytes(name)
            answer = httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert answer.status_code == 200, answer.text
        key = (tmp_path / "data" / "api-key").read_text().strip()
        call = httpx.get(served.url + f"/calls/{CONVERSATION}", headers={"Authorization": f"Bearer {key}"}).json()
        audio = call["links"]["audio"]["url"]
        head = httpx.head(audio)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(call["links"]["audio"]["bytes"])
        assert head.headers["content-disposition"] == f'inline; filename="{CONVERSATION}.mp3"'
        assert head.headers["content-type"] == "audio/mpeg"
        assert httpx.get(audio).headers["content-disposition"] == f'inline; filename="{CONVERSATION}.mp3"'
