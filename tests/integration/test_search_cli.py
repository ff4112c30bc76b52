"""`callvault calls` and `callvault show` in process (click's runner) over a data dir filled through the
webhook: the same answers as the API, a table for people, JSON for scripts, usage errors for bad input."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from services.cli.main import cli
from tests.integration.conftest import SEARCH_KEY, SearchApp
from tests.support import AUDIO, INITIATION_FAILURE, TRANSCRIPTION, TRANSCRIPTION_OUTBOUND

CONVERSATION = "conv_01jzfrjvcce0vsea1fcbpp9p04"
OUTBOUND = "conv_01jzfrjvcce0vsea1fcbpp9p05"
FAILED = "conv_01jzfrjvcce0vsea1fcbpp9p07"


@pytest.fixture
def data_dir(search_app: SearchApp, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (TRANSCRIPTION, AUDIO, TRANSCRIPTION_OUTBOUND, INITIATION_FAILURE):
        search_app.ingest(name)
    for name in ("CALLVAULT_API_KEYS", "CALLVAULT_SIGNING_KEY", "CALLVAULT_BACKEND", "CALLVAULT_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    return search_app.data_dir


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_search_cli_calls_json_is_the_api_answer(data_dir: Path, search_app: SearchApp) -> None:
    code, out, _ = run("calls", "--phone", "(612) 555-0142", "--json", "--data-dir", str(data_dir))
    assert code == 0
    api = search_app.client.get("/calls?phone=%2B16125550142", headers=search_app.auth).json()
    assert json.loads(out) == api
    assert [item["conversation_id"] for item in api["items"]] == [CONVERSATION]


def test_search_cli_calls_table_pages_with_a_cursor_hint(data_dir: Path) -> None:
    code, out, err = run("calls", "--limit", "2", "--data-dir", str(data_dir))
    assert code == 0
    assert OUTBOUND in out and FAILED in out and CONVERSATION not in out
    assert "+16125550177" in out and "2025-07-07 11:40:15" in out
    cursor = err.split("--cursor", 1)[1].split()[0]
    code, out, err = run("calls", "--limit", "2", "--cursor", cursor, "--data-dir", str(data_dir))
    assert code == 0 and CONVERSATION in out and "--cursor" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--phone", "555-0142"), "area code"),
        (("--since", "yesterday"), "since is neither"),
        (("--cursor", "forged.cursor"), "cursor is not valid"),
        (("--limit", "0"), "0 is not in the range"),
    ],
)
def test_search_cli_calls_bad_input_is_a_usage_error(data_dir: Path, args: tuple[str, ...], message: str) -> None:
    code, _, err = run("calls", *args, "--data-dir", str(data_dir))
    assert code == 2 and message in err


def test_search_cli_show_prints_the_record_and_links(data_dir: Path, search_app: SearchApp) -> None:
    code, out, _ = run("show", CONVERSATION, "--json", "--base-url", "http://testserver", "--data-dir", str(data_dir))
    assert code == 0
    detail = json.loads(out)
    assert detail["phone"] == "+16125550142" and detail["links"]["audio"]["bytes"] > 0
    # That the server accepts these links: test_search_cli_and_server_share_the_signing_key.
    assert detail["links"]["transcript"]["url"].startswith("http://testserver/files/16125550142/")

    code, out, _ = run("show", CONVERSATION, "--data-dir", str(data_dir))
    assert code == 0
    assert "call_successful" in out and "http://127.0.0.1:8080/files/16125550142/" in out


def test_search_cli_show_unknown_or_malformed_id(data_dir: Path) -> None:
    code, _, err = run("show", "conv_missing", "--data-dir", str(data_dir))
    assert code == 1 and "no call with this conversation_id" in err
    code, _, err = run("show", "../etc", "--data-dir", str(data_dir))
    assert code == 2 and "conversation_id must be" in err


def test_search_cli_prints_what_a_webhook_sent_as_text(search_app: SearchApp, data_dir: Path) -> None:
    """Agent names and summaries come from the webhook: Rich markup in them must not crash the table."""
    from tests.support_console import rich_call

    search_app.ingest("hostile", rich_call("conv_markup_0001", hostile="[/x] [link=http://evil.example]y[/link]"))

    code, out, err = run("calls", "--data-dir", str(data_dir))
    assert code == 0, err
    assert "[/x]" in out
    code, out, err = run("show", "conv_markup_0001", "--data-dir", str(data_dir))
    assert code == 0, err
    assert "[/x]" in out and "[link=http://evil.example]" in out


def test_search_cli_and_server_share_the_signing_key(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from services.core.config import Settings
    from services.local.app import create_local_app
    from services.web.credentials import resolve_local
    from tests.support import SECRET, fixture_bytes, signed_headers

    settings = Settings(data_dir=tmp_path / "data", api_keys=SecretStr(SEARCH_KEY))
    hashes, signing_key = resolve_local(settings)  # what `callvault serve` does
    client = TestClient(create_local_app(settings, [SECRET], api_key_hashes=hashes, signing_key=signing_key))
    body = fixture_bytes(TRANSCRIPTION)
    client.post("/webhooks/elevenlabs", content=body, headers=signed_headers(body))

    code, out, _ = run(
        "show", CONVERSATION, "--json", "--base-url", "http://testserver", "--data-dir", str(tmp_path / "data")
    )
    assert code == 0
    assert client.get(json.loads(out)["links"]["transcript"]["url"]).status_code == 200
