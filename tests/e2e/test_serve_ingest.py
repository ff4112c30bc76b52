"""The real `callvault serve` process over real HTTP: files on disk and rows in SQLite are the oracle.

Every test starts its own server on a fresh data dir (about half a second each) so no test depends
on another's traffic. Rows are read with the stdlib ``sqlite3``, objects with ``Path.read_bytes``:
nothing here goes through CallVault's own adapters.
"""

import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.domain import signing
from tests.support import (
    ALL_FIXTURES,
    AUDIO,
    FIXTURES,
    INITIATION_FAILURE,
    SECRET,
    TRANSCRIPTION,
    TRANSCRIPTION_OUTBOUND,
    TRANSCRIPTION_WEB,
    ServedArchive,
    descendants,
    fixture_bytes,
    fixture_json,
    process_running,
    serve_archive,
    signed_headers,
    wait_until_ended,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

WEBHOOK = "/webhooks/elevenlabs"
MP3 = (FIXTURES / "hello.mp3").read_bytes()
PHONE = "+16125550142"
PHONE_DIGITS = "16125550142"
# From the fixture's only transcript turn: must never reach a log line.
TRANSCRIPT_PHRASE = "pick up where we left off"
CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"  # inbound transcription + the audio fixture
PENDING = "_pending-audio"
VOLATILE = {"ingested_at", "updated_at"}
# Audio sent this many seconds after its transcript: dense where the read/commit windows overlap on
# a local disk (2-7 ms measured), sparse beyond.
STAGGERS = [i / 4000 for i in range(32)] + [i / 1000 for i in range(8, 16)]

# What each shipped fixture must become: (archive prefix, row fields that must match exactly).
EXPECTED: dict[str, tuple[str, dict[str, Any]]] = {
    CALL_ID: (
        PHONE_DIGITS,
        {
            "phone": PHONE,
            "archive_prefix": PHONE_DIGITS,
            "agent_id": "agent_01jxbrc1trfxev5sdp5xk4ra67",
            "direction": "inbound",
            "started_at": 1751802015,
            "duration_s": 7,
            "message_count": 1,
            "status": "done",
            "call_successful": "failure",
            "cost": 45,
            "language": "en",
            "event_at": 1751802025,
            "has_audio": 1,
            "audio_key": f"{PHONE_DIGITS}/{CALL_ID}.mp3",
            "audio_bytes": len(MP3),
        },
    ),
    "conv_01jzfrjvcce0vsea1fcbpp9p05": (  # outbound, external_number "+1612555 0177"
        "16125550177",
        {
            "phone": "+16125550177",
            "archive_prefix": "16125550177",
            "direction": "outbound",
            "started_at": 1751888415,
            "message_count": 1,
            "status": "done",
            "audio_key": None,
        },
    ),
    "conv_01jzfrjvcce0vsea1fcbpp9p06": (  # web call: no phone at all
        "unknown",
        {
            "phone": None,
            "archive_prefix": "unknown",
            "direction": None,
            "message_count": 1,
            "status": "done",
            "audio_key": None,
        },
    ),
    "conv_01jzfrjvcce0vsea1fcbpp9p07": (  # outbound Twilio call that never connected: customer is "To"
        "16125550188",
        {
            "phone": "+16125550188",
            "archive_prefix": "16125550188",
            "direction": "outbound",
            "message_count": 0,
            "duration_s": 0,
            "status": "initiation_failed",
            "failure_reason": "no-answer",
            "call_successful": "failure",
            "audio_key": None,
        },
    ),
}
CALL_FIXTURES = {
    CALL_ID: TRANSCRIPTION,
    "conv_01jzfrjvcce0vsea1fcbpp9p05": TRANSCRIPTION_OUTBOUND,
    "conv_01jzfrjvcce0vsea1fcbpp9p06": TRANSCRIPTION_WEB,
    "conv_01jzfrjvcce0vsea1fcbpp9p07": INITIATION_FAILURE,
}


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


def post(
    http: httpx.Client, served: ServedArchive, body: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return http.post(served.url + WEBHOOK, content=body, headers=signed_headers(body) if headers is None else headers)


def deliver(http: httpx.Client, served: ServedArchive, name: str) -> None:
    response = post(http, served, fixture_bytes(name))
    assert response.status_code == 200, (name, response.text)


def rows(data_dir: Path) -> dict[str, dict[str, Any]]:
    with closing(sqlite3.connect(data_dir / "index.sqlite3")) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM calls").fetchall()
    return {row["conversation_id"]: dict(row) for row in found}


def stable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in VOLATILE}


def objects(data_dir: Path) -> dict[str, bytes]:
    """Every archived object (temp files included: none may be left behind) by its key."""
    root = data_dir / "archive"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def race_bodies(n: int) -> tuple[bytes, bytes]:
    cid = f"conv_e2e_race_{n:02d}"
    return with_conversation_id(TRANSCRIPTION, cid), with_conversation_id(AUDIO, cid)


def with_conversation_id(name: str, conversation_id: str) -> bytes:
    document = fixture_json(name)
    document["data"]["conversation_id"] = conversation_id
    return json.dumps(document).encode()


def assert_fixture_calls_archived(data_dir: Path) -> None:
    """The four fixture calls, as files and rows, exactly where and how the contract says."""
    stored = objects(data_dir)
    index = rows(data_dir)
    expected_keys = {f"{prefix}/{cid}.json" for cid, (prefix, _) in EXPECTED.items()} | {
        f"{PHONE_DIGITS}/{CALL_ID}.mp3"
    }
    assert set(stored) == expected_keys
    assert set(index) == set(EXPECTED)
    assert stored[f"{PHONE_DIGITS}/{CALL_ID}.mp3"] == MP3
    for conversation_id, (prefix, fields) in EXPECTED.items():
        key = f"{prefix}/{conversation_id}.json"
        row = index[conversation_id]
        assert {k: row[k] for k in fields} == fields, conversation_id
        assert row["transcript_key"] == key
        assert row["transcript_bytes"] == len(stored[key]) == (data_dir / "archive" / key).stat().st_size
        # The whole `data` object is kept, unknown fields included.
        assert json.loads(stored[key]) == fixture_json(CALL_FIXTURES[conversation_id])["data"]
        assert row["ingested_at"] and row["updated_at"]
        if conversation_id != CALL_ID:
            assert not row["has_audio"] and row["audio_bytes"] is None


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_") and k != "CI"}
    child_env.update({"COLUMNS": "250", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=60,
        check=False,
    )


def concurrently(*actions: Callable[[], list[httpx.Response]]) -> list[list[httpx.Response]]:
    """Run every action in its own thread, all released together by a barrier."""
    barrier = threading.Barrier(len(actions))
    results: list[list[httpx.Response] | BaseException | None] = [None] * len(actions)

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = actions[i]()
        except BaseException as exc:  # re-raised in the main thread below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done: list[list[httpx.Response]] = []
    for result in results:
        if not isinstance(result, list):
            raise AssertionError(f"concurrent delivery failed: {result!r}")
        done.append(result)
    return done


# --- the webhook ----------------------------------------------------------------------------------


def test_serve_archives_every_fixture_as_files_and_rows(tmp_path: Path, client: httpx.Client) -> None:
    data_dir = tmp_path / "data"
    with serve_archive(data_dir) as served:
        for name in ALL_FIXTURES:
            deliver(client, served, name)
        logs = served.logs()
    assert_fixture_calls_archived(data_dir)
    # The log saw every call, masked.
    assert logs.count('"message":"webhook stored"') == len(ALL_FIXTURES)
    assert "*******0142" in logs
    assert PHONE_DIGITS not in logs and TRANSCRIPT_PHRASE not in logs and SECRET not in logs


def test_serve_audio_and_transcript_in_either_order_end_identical(tmp_path: Path, client: httpx.Client) -> None:
    audio_first, transcript_first = tmp_path / "audio-first", tmp_path / "transcript-first"
    with serve_archive(audio_first) as served:
        deliver(client, served, AUDIO)
        # Parked: the audio webhook carries no phone number.
        assert set(objects(audio_first)) == {f"{PENDING}/{CALL_ID}.mp3"}
        assert rows(audio_first)[CALL_ID]["audio_key"] == f"{PENDING}/{CALL_ID}.mp3"
        deliver(client, served, TRANSCRIPTION)
    with serve_archive(transcript_first) as served:
        deliver(client, served, TRANSCRIPTION)
        deliver(client, served, AUDIO)

    first, second = objects(audio_first), objects(transcript_first)
    assert first == second
    assert set(first) == {f"{PHONE_DIGITS}/{CALL_ID}.json", f"{PHONE_DIGITS}/{CALL_ID}.mp3"}
    assert first[f"{PHONE_DIGITS}/{CALL_ID}.mp3"] == MP3
    first_rows, second_rows = rows(audio_first), rows(transcript_first)
    assert {k: stable(v) for k, v in first_rows.items()} == {k: stable(v) for k, v in second_rows.items()}
    row = first_rows[CALL_ID]
    assert row["audio_key"] == f"{PHONE_DIGITS}/{CALL_ID}.mp3" and row["has_audio"] == 1
    assert row["audio_bytes"] == len(MP3) and row["phone"] == PHONE and row["message_count"] == 1


def test_serve_ten_duplicate_deliveries_leave_one_call(tmp_path: Path, client: httpx.Client) -> None:
    data_dir = tmp_path / "data"
    with serve_archive(data_dir) as served:
        deliver(client, served, TRANSCRIPTION)
        deliver(client, served, AUDIO)
        once_objects, once_rows = objects(data_dir), rows(data_dir)
        for _ in range(10):
            deliver(client, served, TRANSCRIPTION)
            deliver(client, served, AUDIO)
        again_objects, again_rows = objects(data_dir), rows(data_dir)
    assert set(once_objects) == {f"{PHONE_DIGITS}/{CALL_ID}.json", f"{PHONE_DIGITS}/{CALL_ID}.mp3"}
    assert again_objects == once_objects
    assert list(again_rows) == [CALL_ID]
    assert stable(again_rows[CALL_ID]) == stable(once_rows[CALL_ID])
    assert again_rows[CALL_ID]["ingested_at"] == once_rows[CALL_ID]["ingested_at"]


def test_serve_concurrent_deliveries_of_one_call_converge(tmp_path: Path) -> None:
    """Deliveries of one call racing each other, each round on a fresh conversation id.

    First two full deliveries at once, one sending transcript then audio, the other audio then
    transcript (even rounds), or all four requests released together (odd rounds). Then single
    transcript/audio pairs with the audio staggered by 0-15 ms (``STAGGERS``), which sweeps the windows where the
    audio reads "no transcript yet" while the transcript commits. Over real HTTP these races are
    probabilistic: the sweep makes a broken merge fail here most runs, not every run.
    """
    data_dir = tmp_path / "data"
    with serve_archive(data_dir) as served, httpx.Client(timeout=30) as http:

        def after(delay: float, *bodies: bytes) -> Callable[[], list[httpx.Response]]:
            def send() -> list[httpx.Response]:
                time.sleep(delay)
                return [post(http, served, body) for body in bodies]

            return send

        rounds: list[list[httpx.Response]] = []
        for n in range(6):
            transcript, audio = race_bodies(n)
            if n % 2 == 0:
                rounds += concurrently(after(0, transcript, audio), after(0, audio, transcript))
            else:
                rounds += concurrently(after(0, audio), after(0, transcript), after(0, audio), after(0, transcript))
        for n, delay in enumerate(STAGGERS, start=6):
            transcript, audio = race_bodies(n)
            rounds += concurrently(after(0, transcript), after(delay, audio))
        statuses = [r.status_code for batch in rounds for r in batch]
        assert statuses == [200] * len(statuses), [r.text for batch in rounds for r in batch if r.status_code != 200]

    stored, index = objects(data_dir), rows(data_dir)
    race_ids = sorted(cid for cid in index if cid.startswith("conv_e2e_race_"))
    assert len(race_ids) == len(index) == 6 + len(STAGGERS)
    expected_keys = set()
    for cid in race_ids:
        expected_keys |= {f"{PHONE_DIGITS}/{cid}.json", f"{PHONE_DIGITS}/{cid}.mp3"}
        row = index[cid]
        assert row["archive_prefix"] == PHONE_DIGITS and row["phone"] == PHONE, cid
        assert row["audio_key"] == f"{PHONE_DIGITS}/{cid}.mp3", (cid, row["audio_key"])
        assert row["has_audio"] == 1 and row["audio_bytes"] == len(MP3), cid
        assert row["transcript_key"] == f"{PHONE_DIGITS}/{cid}.json", cid
        assert row["transcript_bytes"] == len(stored[f"{PHONE_DIGITS}/{cid}.json"]), cid
        assert row["message_count"] == 1 and row["status"] == "done", cid
        assert stored[f"{PHONE_DIGITS}/{cid}.mp3"] == MP3, cid
    # Nothing parked, no temp file left over: exactly one transcript and one audio per call.
    assert set(stored) == expected_keys


def test_serve_refuses_bad_input_keeps_serving_and_logs_no_pii(tmp_path: Path, client: httpx.Client) -> None:
    data_dir = tmp_path / "data"
    limit = 64 * 1024  # above every fixture (the audio one is 22 KB)
    with serve_archive(data_dir, env={"CALLVAULT_MAX_BODY_BYTES": str(limit)}) as served:
        body = fixture_bytes(TRANSCRIPTION)

        wrong_secret = post(client, served, body, signed_headers(body, secret="wsec_someone_else"))
        assert wrong_secret.status_code == 401
        assert wrong_secret.json()["error"]["code"] == "invalid_signature"
        unsigned = post(client, served, body, {"content-type": "application/json"})
        assert unsigned.status_code == 401
        tampered = post(client, served, body.replace(b'"cost":45', b'"cost":46'), signed_headers(body))
        assert tampered.status_code == 401

        not_json = b"this is not json {"
        response = post(client, served, not_json)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_payload"

        traversal = fixture_json(TRANSCRIPTION)
        traversal["data"]["conversation_id"] = "../../../etc/passwd"
        response = post(client, served, json.dumps(traversal).encode())
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_payload"

        oversized = json.dumps({"type": "post_call_audio", "data": {"pad": "x" * (limit + 1)}}).encode()
        response = post(client, served, oversized)  # with Content-Length
        assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
        chunks = (oversized[i : i + 8192] for i in range(0, len(oversized), 8192))  # chunked, no length
        response = client.post(served.url + WEBHOOK, content=chunks, headers=signed_headers(oversized))
        assert response.status_code == 413

        assert objects(data_dir) == {}
        assert not (data_dir / "index.sqlite3").exists() or rows(data_dir) == {}

        # Still serving, and still storing.
        assert client.get(served.url + "/healthz").status_code == 200
        for name in ALL_FIXTURES:
            deliver(client, served, name)
        logs = served.logs()

    assert_fixture_calls_archived(data_dir)
    assert not any("passwd" in p.name for p in tmp_path.rglob("*"))
    # The log recorded the refusals and the calls, without phone numbers, transcript text or the secret.
    assert logs.count('"message":"webhook refused"') >= 5  # 401s and 400s (413 is answered before the use case)
    assert logs.count('"message":"webhook stored"') == len(ALL_FIXTURES)
    for secret_or_pii in (PHONE, PHONE_DIGITS, "6125550142", TRANSCRIPT_PHRASE, SECRET):
        assert secret_or_pii not in logs, secret_or_pii


# --- first run: the generated secret -----------------------------------------------------------


def test_serve_first_run_generates_a_secret_that_callvault_sign_uses(tmp_path: Path, client: httpx.Client) -> None:
    data_dir = tmp_path / "data"
    payload_file = FIXTURES / TRANSCRIPTION
    body = payload_file.read_bytes()
    secret_file = data_dir / "webhook-secret"

    with serve_archive(data_dir, secret=None) as served:
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        secret = secret_file.read_text(encoding="utf-8").strip()
        assert secret.startswith("wsec_") and len(secret) >= 32
        assert secret not in served.logs()  # the output is a log: it says where the secret is, not what
        assert f"Generated a webhook secret, kept in {secret_file}" in served.logs()
        key = (data_dir / "api-key").read_text(encoding="utf-8").strip()
        assert key not in served.logs() and f"cat {data_dir / 'api-key'}" in served.logs()

        signed = run_cli("sign", str(payload_file), "--data-dir", str(data_dir))
        assert signed.returncode == 0, signed.stderr
        header = signed.stdout.strip()
        assert header.startswith("t=") and ",v0=" in header
        # The test secret is not the server's: a signature with it must be refused.
        assert post(client, served, body).status_code == 401
        response = post(client, served, body, {signing.HEADER: header, "content-type": "application/json"})
        assert response.status_code == 200, response.text

    with serve_archive(data_dir, secret=None) as served:
        assert secret_file.read_text(encoding="utf-8").strip() == secret
        assert secret not in served.logs()  # reused, not shown again
        again = run_cli("sign", str(FIXTURES / AUDIO), "--data-dir", str(data_dir))
        assert again.returncode == 0, again.stderr
        response = post(
            client,
            served,
            fixture_bytes(AUDIO),
            {signing.HEADER: again.stdout.strip(), "content-type": "application/json"},
        )
        assert response.status_code == 200, response.text

    assert rows(data_dir)[CALL_ID]["audio_key"] == f"{PHONE_DIGITS}/{CALL_ID}.mp3"


def test_serve_reads_a_rotation_list_in_its_secret_file_as_sign_does(tmp_path: Path, client: httpx.Client) -> None:
    """`sign` signs with the first of "OLD,NEW" in DATA_DIR/webhook-secret, as CALLVAULT_WEBHOOK_SECRET is
    read; `serve` took the whole line as one secret, so neither old nor new signatures verified."""
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / "webhook-secret").write_text("wsec_old_secret_value, wsec_new_secret_value\n")
    (data_dir / "webhook-secret").chmod(0o600)
    body = fixture_bytes(TRANSCRIPTION)
    with serve_archive(data_dir, secret=None) as served:
        for secret in ("wsec_old_secret_value", "wsec_new_secret_value"):
            headers = {**signed_headers(body, secret), "content-type": "application/json"}
            assert post(client, served, body, headers).status_code == 200, secret
        signed = run_cli("sign", str(FIXTURES / TRANSCRIPTION), "--data-dir", str(data_dir))
        headers = {signing.HEADER: signed.stdout.strip(), "content-type": "application/json"}
        assert post(client, served, body, headers).status_code == 200


# --- callvault import ------------------------------------------------------------------------------


def test_import_folder_of_fixtures_twice_and_reports_a_bad_file(tmp_path: Path) -> None:
    folder, data_dir = tmp_path / "exports", tmp_path / "data"
    (folder / "nested").mkdir(parents=True)
    for name in ALL_FIXTURES:
        (folder / name).write_bytes(fixture_bytes(name))

    imported = run_cli("import", str(folder), "--data-dir", str(data_dir))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert summary_row(imported.stderr, "stored") == len(ALL_FIXTURES)
    assert summary_row(imported.stderr, "unchanged") == 0
    assert_fixture_calls_archived(data_dir)
    first_rows, first_objects = rows(data_dir), objects(data_dir)

    # Again, plus a bare GET-conversation document and a file that is not JSON.
    bare = fixture_json(TRANSCRIPTION_WEB)["data"]
    bare["conversation_id"] = "conv_e2e_bare_document"
    (folder / "nested" / "conversation.json").write_text(json.dumps(bare), encoding="utf-8")
    (folder / "nested" / "broken.json").write_text("{ this is not json", encoding="utf-8")
    again = run_cli("import", str(folder), "--data-dir", str(data_dir))
    assert again.returncode == 1, again.stdout + again.stderr
    assert "broken.json" in again.stderr and "not valid JSON" in again.stderr
    # The files imported before are reported as such, not as stored again; the new document is stored.
    assert summary_row(again.stderr, "unchanged") == len(ALL_FIXTURES)
    assert (summary_row(again.stderr, "stored"), summary_row(again.stderr, "failed")) == (1, 1)

    index = rows(data_dir)
    assert set(index) == set(first_rows) | {"conv_e2e_bare_document"}
    for conversation_id, row in first_rows.items():
        assert stable(index[conversation_id]) == stable(row), conversation_id
    stored = objects(data_dir)
    assert {k: v for k, v in stored.items() if k in first_objects} == first_objects
    assert set(stored) - set(first_objects) == {"unknown/conv_e2e_bare_document.json"}
    assert json.loads(stored["unknown/conv_e2e_bare_document.json"]) == bare
    assert index["conv_e2e_bare_document"]["transcript_bytes"] == len(stored["unknown/conv_e2e_bare_document.json"])


def summary_row(stderr: str, outcome: str) -> int:
    """The count of one outcome in import's summary table."""
    found = re.search(rf"^\W*{outcome}\W+(\d+)\W*$", stderr, re.MULTILINE)
    assert found is not None, stderr
    return int(found.group(1))


def test_import_json_tells_an_unchanged_call_from_a_stored_one(tmp_path: Path) -> None:
    folder, data_dir = tmp_path / "exports", tmp_path / "data"
    folder.mkdir()
    (folder / "call.json").write_bytes(fixture_bytes(TRANSCRIPTION))
    first = run_cli("import", str(folder), "--json", "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout) == {
        "files": 1,
        "stored": 1,
        "unchanged": 0,
        "stale": 0,
        "ignored": 0,
        "erased": 0,
        "failed": [],
    }
    again = run_cli("import", str(folder), "--json", "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stdout + again.stderr
    assert (json.loads(again.stdout)["stored"], json.loads(again.stdout)["unchanged"]) == (0, 1)
    newer = fixture_json(TRANSCRIPTION)
    newer["event_timestamp"] += 60
    newer["data"]["analysis"]["transcript_summary"] = "Analysed again."
    (folder / "call.json").write_text(json.dumps(newer), encoding="utf-8")
    changed = run_cli("import", str(folder), "--json", "--data-dir", str(data_dir))
    assert (json.loads(changed.stdout)["stored"], json.loads(changed.stdout)["unchanged"]) == (1, 0)
    # The webhook still acknowledges a redelivery as it did the first delivery.
    with serve_archive(data_dir) as served:
        body = json.dumps(newer).encode()
        response = httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
        assert (response.status_code, response.json()["status"]) == (200, "stored"), response.text


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_webhooks_are_stored_by_a_child_process_that_dies_with_the_server(tmp_path: Path) -> None:
    """#10: the use case runs in a second process (a second core); after kill -9 of `serve` nothing of
    it is left running to write behind the back of the next server."""
    with serve_archive(tmp_path / "data") as served:
        children = descendants(served.process.pid)
        assert len(children) >= 2, "serve started no ingest processes"
        body = fixture_bytes(TRANSCRIPTION)
        for child in children:  # frozen children: the server itself stores nothing
            os.kill(child, signal.SIGSTOP)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body), timeout=2)
        for child in children:
            os.kill(child, signal.SIGCONT)
        response = httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
        assert response.status_code == 200, response.text
        served.process.kill()
        served.process.wait()
        wait_until_ended(children)
        assert not any(map(process_running, children))


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_ingest_process_can_be_turned_off(tmp_path: Path) -> None:
    with serve_archive(tmp_path / "data", env={"CALLVAULT_INGEST_PROCESSES": "0"}) as served:
        assert not descendants(served.process.pid)
        body = fixture_bytes(TRANSCRIPTION)
        response = httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
        assert response.status_code == 200, response.text


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_stop_ends_serve_through_its_clean_up(tmp_path: Path, stop: signal.Signals) -> None:
    """A service manager's stop or Ctrl-C: requests drained, ingest processes ended by the server, exit
    code 0 (before, uvicorn's re-raised SIGTERM ended the process before its clean-up ran, and Ctrl-C
    ended in "Aborted!" and 1)."""
    with serve_archive(tmp_path / "data") as served:
        body = fixture_bytes(TRANSCRIPTION)
        response = httpx.post(served.url + "/webhooks/elevenlabs", content=body, headers=signed_headers(body))
        assert response.status_code == 200, response.text
        children = descendants(served.process.pid)
        served.process.send_signal(stop)
        assert served.process.wait(timeout=30) == 0
        wait_until_ended(children)  # multiprocessing's resource tracker ends a moment after its parent
        assert not any(map(process_running, children))
        assert "leaked semaphore" not in served.logs()  # the children were shut down, not orphaned
