"""The audit trail end to end on the local app: erasures, key changes and every transcript or audio
access are recorded with the key's id and the conversation's keyed hash, never an id, a whole phone
number or transcript text; GET /audit is for admin keys; callvault audit finds and checks entries."""

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from services.cli.main import cli
from services.core.config import Settings
from services.local.app import create_local_app
from services.web.auth import parse_key_entries
from tests.support import AUDIO, SECRET, TRANSCRIPTION, fixture_bytes, fixture_json, signed_headers
from tests.support_console import sign_in

CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"
READ, LISTEN, ADMIN = "cvk_audit-read", "cvk_audit-listen", "cvk_audit-admin"
ENV = {"CALLVAULT_MEMORY_BACKEND": "none"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("CALLVAULT_MEMORY_BACKEND", "none")
    entries = parse_key_entries([f"read:{READ}", f"listen:{LISTEN}", ADMIN])
    app = create_local_app(Settings(data_dir=data_dir), [SECRET], api_key_hashes=entries, signing_key=b"k" * 32)
    with TestClient(app, raise_server_exceptions=False) as client:
        for name in (TRANSCRIPTION, AUDIO):
            raw = fixture_bytes(name)
            assert client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw)).status_code == 200
        yield client


def _trail(client: TestClient, **params: str) -> dict:  # type: ignore[type-arg]
    response = client.get("/audit", params=params, headers=bearer(ADMIN))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _key_id(client: TestClient, key: str) -> str:
    return str(client.app.state.search.api_keys.check_header(f"Bearer {key}").key_id)  # type: ignore[attr-defined]


def test_every_transcript_and_audio_access_is_recorded_with_the_key_id(client: TestClient) -> None:
    assert _trail(client)["items"] == []  # webhooks and listings are not accesses

    detail = client.get(f"/calls/{CALL_ID}", headers=bearer(LISTEN)).json()
    assert client.get("/calls", headers=bearer(READ)).status_code == 200  # a listing: not recorded
    audio = client.get(f"/calls/{CALL_ID}/audio", headers=bearer(LISTEN), follow_redirects=False)
    assert audio.status_code == 307
    assert client.head(detail["links"]["transcript"]["url"]).status_code == 200  # no bytes sent: not a download
    assert client.get(detail["links"]["transcript"]["url"]).status_code == 200
    assert client.get(f"/calls/{CALL_ID}/audio", headers=bearer(READ)).status_code == 403  # refused: not recorded

    items = _trail(client)["items"]

    listen = _key_id(client, LISTEN)
    assert [(i["action"], i["actor"]) for i in items] == [
        ("link_issued", listen),
        ("audio_link_issued", listen),
        ("file_download", "signed-link"),
    ]
    assert len({i["subjects"][0] for i in items}) == 1 and CALL_ID not in json.dumps(items)


def test_a_console_view_is_recorded(client: TestClient) -> None:
    assert sign_in(client, LISTEN).status_code == 303
    assert client.get(f"/console/calls/{CALL_ID}").status_code == 200

    assert [(i["action"], i["actor"]) for i in _trail(client)["items"]] == [("console_view", _key_id(client, LISTEN))]


def test_the_console_caller_page_is_recorded_with_the_masked_number(client: TestClient) -> None:
    assert sign_in(client, READ).status_code == 303
    assert client.get("/console/callers/+16125550142").status_code == 200

    items = _trail(client)["items"]
    assert [(i["action"], i["actor"], i["detail"]) for i in items] == [
        ("console_caller_view", _key_id(client, READ), {"phone": "*******0142"})
    ]


def test_requests_without_a_key_add_nothing_to_the_trail(client: TestClient) -> None:
    """Without a key nobody can fill the trail: sign-in redirects and links that serve nothing are not accesses."""
    for path in (f"/console/calls/{CALL_ID}", f"/console/calls/{CALL_ID}/audio", "/console/callers/+16125550142"):
        assert client.get(path, follow_redirects=False).status_code == 303
    assert client.get("/console/search", params={"q": "hello"}, follow_redirects=False).status_code == 303
    forged = client.get(f"/files/+16125550142/{CALL_ID}.json", params={"exp": "9999999999", "sig": "x" * 43})
    assert forged.status_code in (401, 403)
    assert client.get(f"/calls/{CALL_ID}").status_code == 401

    assert _trail(client)["items"] == []


def test_links_shown_at_the_terminal_are_recorded_with_the_os_user(client: TestClient, data_dir: Path) -> None:
    shown = CliRunner().invoke(cli, ["show", CALL_ID, "--json", "--data-dir", str(data_dir)], env=ENV)
    assert shown.exit_code == 0, shown.output

    items = _trail(client)["items"]
    assert [i["action"] for i in items] == ["link_issued"] and items[0]["actor"].startswith("cli:")


def test_erasure_is_recorded_and_the_conversation_stays_findable_by_id(client: TestClient, data_dir: Path) -> None:
    client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN))
    assert client.delete("/callers/+16125550142", headers=bearer(ADMIN)).status_code == 200

    trail = _trail(client, conversation=CALL_ID)

    assert [i["action"] for i in trail["items"]] == ["link_issued", "erase"]
    erase = trail["items"][1]
    assert erase["actor"] == _key_id(client, ADMIN)
    assert erase["detail"] == {"scope": "caller", "phone": "*******0142", "conversations": 1}
    assert trail["chain"]["ok"] and trail["chain"]["entries"] == 2
    assert _trail(client, conversation="conv_other")["items"] == []

    stored = (data_dir / "privacy.sqlite3").read_bytes() + (data_dir / "privacy.sqlite3-wal").read_bytes()
    message = fixture_json(TRANSCRIPTION)["data"]["transcript"][0]["message"]
    for secret in (CALL_ID, "16125550142", "6125550142", message[:20]):
        assert secret.encode() not in stored


def test_the_audit_route_is_for_admin_keys_only(client: TestClient) -> None:
    for key in (READ, LISTEN):
        assert client.get("/audit", headers=bearer(key)).status_code == 403
    assert client.get("/audit").status_code == 401


def test_audit_command_lists_finds_and_verifies_and_sees_tampering(client: TestClient, data_dir: Path) -> None:
    client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN))
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--name", "qa", "--data-dir", str(data_dir)], env=ENV)
    assert created.exit_code == 0, created.output
    forgot = runner.invoke(cli, ["forget", "--conversation", CALL_ID, "--yes", "--data-dir", str(data_dir)], env=ENV)
    assert forgot.exit_code == 0, forgot.output

    listed = runner.invoke(cli, ["audit", "--json", "--verify", "--data-dir", str(data_dir)], env=ENV)
    assert listed.exit_code == 0, listed.output
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [e["action"] for e in entries] == ["link_issued", "key_create", "erase"]
    assert entries[1]["detail"]["role"] == "read" and entries[2]["actor"].startswith("cli")
    found = runner.invoke(cli, ["audit", "--conversation", CALL_ID, "--json", "--data-dir", str(data_dir)], env=ENV)
    assert [json.loads(line)["action"] for line in found.stdout.splitlines()] == ["link_issued", "erase"]
    later = runner.invoke(cli, ["audit", "--since", "2099-01-01", "--data-dir", str(data_dir)], env=ENV)
    assert later.exit_code == 0 and later.stdout == ""

    conn = sqlite3.connect(data_dir / "privacy.sqlite3")
    conn.executescript("DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'someone-else' WHERE seq = 2;")
    conn.close()
    broken = runner.invoke(cli, ["audit", "--verify", "--data-dir", str(data_dir)], env=ENV)
    assert broken.exit_code == 1 and "BROKEN at entry 2" in broken.output


def test_a_transcript_search_is_recorded_without_the_query(client: TestClient) -> None:
    searched = client.get("/search", params={"q": "Maria"}, headers=bearer(READ))
    assert searched.status_code == 200, searched.text

    (item,) = _trail(client)["items"]
    assert (item["action"], item["actor"], item["subjects"]) == ("transcript_search", _key_id(client, READ), [])
    assert "Maria" not in json.dumps(item)


def test_a_search_with_a_repeated_q_is_recorded_as_the_route_reads_it(client: TestClient) -> None:
    """The console reads a repeated parameter's last value: a blank first one must not hide the search.
    The API refuses a repeated parameter (422), and a refused search showed nothing, so is not recorded."""
    assert client.get("/search?q=+&q=Maria", headers=bearer(READ)).status_code == 422
    sign_in(client, READ)
    page = client.get("/console/search?q=+&q=Maria")
    assert page.status_code == 200 and "Showing 1 hit" in page.text

    items = _trail(client)["items"]
    assert [(e["action"], e["actor"]) for e in items] == [("transcript_search", _key_id(client, READ))]


def test_each_page_of_a_transcript_search_is_one_recorded_search_and_a_refused_page_none(client: TestClient) -> None:
    """Every page shows other turns, so each is recorded as a search of its own; a page link that is
    refused (an edited cursor) showed nothing and is not recorded, nor is the console's empty form."""
    from tests.support_console import dated_call, sign_in

    for i in range(2):  # ten turns saying hello: two pages of five
        raw = dated_call(f"conv_audit_page_{i}", "2025-08-01")
        assert client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw)).status_code == 200
    query = {"q": "says hello", "limit": "5"}
    first = client.get("/search", params=query, headers=bearer(READ)).json()
    assert client.get("/search", params={**query, "cursor": first["next_cursor"]}, headers=bearer(READ)).is_success
    assert client.get("/search", params={**query, "cursor": "x"}, headers=bearer(READ)).status_code == 400
    sign_in(client, READ)
    console = client.get("/console/search", params={"q": "says hello", "since": "2025-08-01"})
    assert console.status_code == 200
    assert client.get("/console/search", params={"since": "2025-08-01"}).status_code == 200  # no words: no search
    assert client.get("/console/search", params={"q": "says hello", "cursor": "x"}).status_code == 400

    items = _trail(client)["items"]
    assert [(e["action"], e["actor"], e["subjects"]) for e in items] == [
        ("transcript_search", _key_id(client, READ), [])
    ] * 3
    assert "hello" not in json.dumps(items) and "conv_audit_page" not in json.dumps(items)


def test_the_audit_route_pages_forward_so_no_entry_is_out_of_reach(client: TestClient) -> None:
    """`limit` keeps the newest entries; with more than `limit` since a date the older ones could not be
    read over HTTP at all. `after=SEQ` pages forward from any entry, oldest first, with `next_after`."""
    for _ in range(5):
        assert client.get(f"/calls/{CALL_ID}", headers=bearer(READ)).status_code == 200

    newest = _trail(client, limit="2")
    pages: list[list[int]] = []
    after: str | None = "0"
    while after is not None:
        page = _trail(client, after=after, limit="2")
        pages.append([e["seq"] for e in page["items"]])
        after = None if page["next_after"] is None else str(page["next_after"])

    assert [e["seq"] for e in newest["items"]] == [4, 5] and newest["next_after"] is None
    assert pages == [[1, 2], [3, 4], [5]]
    assert client.get("/audit", params={"after": "-1"}, headers=bearer(ADMIN)).status_code in (400, 422)


def test_an_iam_authenticated_access_is_recorded_with_the_callers_arn() -> None:
    """On a stack with ``api_auth=iam`` no key id exists: API Gateway's verified ARN is the actor."""
    import time

    from services.core.adapters.memory import MemoryAuditLog, MemoryBlobStore, MemoryCallIndex, MemoryTombstones
    from services.core.domain import payload
    from services.core.erased import ErasedConversations
    from services.core.wiring import Storage
    from services.ingest.service import Archiver
    from services.privacy.access_audit import AccessAuditMiddleware
    from services.privacy.audit import Auditor
    from services.search.app import create_app
    from services.search.cursor import CursorCodec
    from services.search.wiring import build_link_signer
    from services.web.auth import ApiKeys

    settings = Settings(api_auth="iam")
    storage = Storage(MemoryBlobStore(), MemoryCallIndex())
    event = payload.as_transcription_event(fixture_json(TRANSCRIPTION))
    Archiver(storage.blobs, storage.index, time.time).archive(event)
    links = build_link_signer(settings, storage, b"p" * 32, time.time)
    app = create_app(settings, storage, api_keys=ApiKeys([]), cursors=CursorCodec(b"p" * 32), links=links)
    log = MemoryAuditLog()
    app.add_middleware(AccessAuditMiddleware, auditor=Auditor(log, ErasedConversations(b"k" * 32, MemoryTombstones())))
    arn = "arn:aws:sts::123456789012:assumed-role/callvault-readers/analyst"
    iam = {"requestContext": {"requestId": "r1", "authorizer": {"iam": {"userArn": arn, "accessKey": "ASIAX"}}}}

    async def through_api_gateway(scope: Any, receive: Any, send: Any) -> None:
        scope["aws.event"] = iam
        await app(scope, receive, send)

    with TestClient(through_api_gateway) as gateway:
        assert gateway.get(f"/calls/{CALL_ID}").status_code == 200
    with TestClient(app) as direct:  # no IAM caller: refused, and nothing recorded
        assert direct.get(f"/calls/{CALL_ID}").status_code == 401

    assert [(e.action, e.actor) for e in log.entries()] == [("link_issued", arn)]


def test_audit_since_that_cannot_be_read_is_a_usage_error_like_every_other_since(
    client: TestClient, data_dir: Path
) -> None:
    result = CliRunner().invoke(cli, ["audit", "--since", "yesterday", "--data-dir", str(data_dir)], env=ENV)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--since': since is neither ISO 8601" in result.output
    assert "invalid_request" not in result.output  # an API error code means nothing at a terminal


@pytest.mark.parametrize(
    "args",
    [["audit"], ["hold", "--reason", "case 7"], ["hold", "--list"]],
    ids=["audit", "hold", "hold-list"],
)
def test_a_conversation_id_that_cannot_be_one_is_named_as_the_option_typed(
    client: TestClient, data_dir: Path, args: list[str]
) -> None:
    result = CliRunner().invoke(cli, [*args, "--conversation", "conv 42!", "--data-dir", str(data_dir)], env=ENV)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--conversation': a conversation id is 1-128 letters, digits" in result.output
    assert "data.conversation_id" not in result.output  # the webhook payload's field, not what was typed


def test_hold_with_a_number_that_cannot_be_one_names_the_phone_argument(client: TestClient, data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["hold", "555", "--reason", "x", "--data-dir", str(data_dir)], env=ENV)
    assert result.exit_code == 2, result.output
    assert "Invalid value for PHONE: phone has too few digits" in result.output
