"""`callvault show` beside a running `callvault serve` makes links to the port it listens on (issue #14)."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import TRANSCRIPTION, fixture_bytes, serve_archive, signed_headers

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
