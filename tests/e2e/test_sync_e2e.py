"""`callvault sync` end to end: the real CLI in its own process against the stand-in ElevenLabs API
over real HTTP, writing the local archive that a real `callvault serve` may be writing at the same
time. What it fetches is read off the stand-in's request counts; what it wrote, off the files and the
index; `callvault verify` checks the whole archive afterwards."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.domain import versions
from tests.support import AUDIO, SECRET, TRANSCRIPTION, fixture_bytes, fixture_json, serve_archive, signed_headers
from tests.support_elevenlabs import API_KEY, PHONE, ElevenLabsStandIn, SyntheticAudio

FOLDER = PHONE.lstrip("+")
WEBHOOK_CALL = fixture_json(TRANSCRIPTION)["data"]


@pytest.fixture
def api() -> Iterator[ElevenLabsStandIn]:
    with ElevenLabsStandIn() as stand_in:
        yield stand_in


def cli_env(api: ElevenLabsStandIn, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_") and k not in ("CI", "ELEVENLABS_API_KEY")
    }
    env.update(
        {
            "ELEVENLABS_API_KEY": API_KEY,
            "CALLVAULT_ELEVENLABS_BASE_URL": api.url,
            "CALLVAULT_ELEVENLABS_MAX_ATTEMPTS": "2",  # a failing call fails after one short backoff
            "CALLVAULT_MEMORY_BACKEND": "none",
            "COLUMNS": "250",
            **extra,
        }
    )
    return env


def callvault(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def sync(api: ElevenLabsStandIn, data_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    """`callvault sync --json`: its exit status and summary."""
    done = callvault("sync", "--json", "--data-dir", str(data_dir), *args, env=cli_env(api))
    assert done.stdout, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, summary


def verify(data_dir: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_") and k != "CI"}
    done = callvault("verify", "--json", "--data-dir", str(data_dir), env=env)
    report: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == 0, report
    return report


def rows(data_dir: Path) -> dict[str, dict[str, Any]]:
    with closing(sqlite3.connect(data_dir / "index.sqlite3")) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM calls").fetchall()
    return {row["conversation_id"]: dict(row) for row in found}


def archived(data_dir: Path, conversation_id: str, suffix: str) -> Path:
    return data_dir / "archive" / FOLDER / f"{conversation_id}.{suffix}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def counts(**nonzero: int) -> dict[str, int]:
    return {"list": 0, "get": 0, "audio": 0, "delete": 0, "other": 0, **nonzero}


def test_sync_fills_an_empty_archive_and_a_second_run_fetches_nothing(tmp_path: Path, api: ElevenLabsStandIn) -> None:
    data_dir = tmp_path / "data"
    done = api.add_many(3)
    long_call = api.add(audio=SyntheticAudio(3 * 1024 * 1024 + 17, "long"), message_count=120, duration=1800)
    silent = api.add(has_audio=False)
    running = api.add(status="in-progress", call_successful="unknown")

    status, summary = sync(api, data_dir)

    assert status == 0, summary
    assert api.requests == counts(list=1, get=5, audio=4)
    assert summary["listed"] == 6
    assert (summary["new"], summary["audio_fetched"], summary["still_processing"]) == (5, 4, 1)
    assert summary["failed"] == [] and summary["gone_upstream"] == []
    index = rows(data_dir)
    assert set(index) == {*done, long_call, silent}
    for cid in [*done, long_call, silent]:
        assert json.loads(archived(data_dir, cid, "json").read_bytes()) == api.document(cid)
        assert index[cid]["transcript_key"] == f"{FOLDER}/{cid}.json"
    for cid in [*done, long_call]:
        assert sha256(archived(data_dir, cid, "mp3")) == api.conversation(cid).audio_sha256(), cid
        assert index[cid]["audio_key"] == f"{FOLDER}/{cid}.mp3"
    assert not archived(data_dir, silent, "mp3").exists() and index[silent]["audio_key"] is None
    assert running not in index

    api.reset_counts()
    status, again = sync(api, data_dir)
    assert status == 0
    assert api.requests == counts(list=1)  # the window listed again; nothing fetched twice
    assert (again["already_complete"], again["new"], again["audio_fetched"], again["still_processing"]) == (5, 0, 0, 1)

    api.update(running, status="done", call_successful="success")
    api.reset_counts()
    status, third = sync(api, data_dir)
    assert status == 0
    assert api.requests == counts(list=1, get=1, audio=1)  # only the call that finished meanwhile
    assert (third["new"], third["audio_fetched"], third["still_processing"]) == (1, 1, 0)
    assert sha256(archived(data_dir, running, "mp3")) == api.conversation(running).audio_sha256()
    assert verify(data_dir)["items"] == []


def test_a_call_complete_from_webhooks_is_not_fetched(tmp_path: Path, api: ElevenLabsStandIn) -> None:
    data_dir = tmp_path / "data"
    cid = WEBHOOK_CALL["conversation_id"]
    with serve_archive(data_dir) as served, httpx.Client(timeout=30) as client:
        for name in (TRANSCRIPTION, AUDIO):
            body = fixture_bytes(name)
            response = client.post(f"{served.url}/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert response.status_code == 200, response.text
        before = archived(data_dir, cid, "json").read_bytes(), archived(data_dir, cid, "mp3").read_bytes()
        # Upstream lists the same call as the webhooks told it (outcome, duration, messages, status).
        api.add(
            cid,
            start=WEBHOOK_CALL["metadata"]["start_time_unix_secs"],
            call_successful=WEBHOOK_CALL["analysis"]["call_successful"],
            duration=WEBHOOK_CALL["metadata"]["call_duration_secs"],
            message_count=len(WEBHOOK_CALL["transcript"]),
        )
        other = api.add()

        status, summary = sync(api, data_dir)

    assert status == 0, summary
    assert api.requests == counts(list=1, get=1, audio=1)  # the other call only
    assert (summary["already_complete"], summary["new"], summary["audio_fetched"]) == (1, 1, 1)
    assert (archived(data_dir, cid, "json").read_bytes(), archived(data_dir, cid, "mp3").read_bytes()) == before
    assert set(rows(data_dir)) == {cid, other}
    assert verify(data_dir)["items"] == []


@pytest.mark.parametrize("webhook", ["newer", "older"])
def test_a_webhook_delivered_during_a_sync_leaves_one_row_at_the_newest_version(
    tmp_path: Path, api: ElevenLabsStandIn, webhook: str
) -> None:
    """The sync has read the index and waits for upstream's document when the webhook lands; both then
    write. A webhook sent after the fetch (a re-run analysis) wins; a retry of an older one does not
    undo the fetched document, which counts as seen when it was fetched."""
    data_dir = tmp_path / "data"
    cid = api.add("conv_e2e_sync_race", call_successful="success")
    fetched = api.document(cid)
    pushed = json.loads(json.dumps(fetched))
    pushed["analysis"]["call_successful"] = "failure"
    pushed["analysis"]["transcript_summary"] = "Re-run analysis, delivered during the sync."
    event_at = int(time.time()) + 3600 if webhook == "newer" else fetched["metadata"]["start_time_unix_secs"] + 10
    body = json.dumps({"type": "post_call_transcription", "event_timestamp": event_at, "data": pushed}).encode()
    api.delay_next(1, 3.0, kind="get", path=cid)

    with serve_archive(data_dir) as served, httpx.Client(timeout=30) as client:
        running = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "sync", "--json", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(api),
        )
        try:
            deadline = time.monotonic() + 60
            while api.requests["get"] == 0:  # the sync has read the index and is fetching
                assert running.poll() is None, running.communicate()
                assert time.monotonic() < deadline, "the sync never asked for the conversation"
                time.sleep(0.02)
            response = client.post(f"{served.url}/webhooks/elevenlabs", content=body, headers=signed_headers(body))
            assert response.status_code == 200, response.text
            out, err = running.communicate(timeout=60)
        finally:
            if running.poll() is None:
                running.kill()
                running.wait()

    assert running.returncode == 0, err[-3000:]
    assert json.loads(out)["failed"] == []
    index = rows(data_dir)
    assert list(index) == [cid]
    winner = pushed if webhook == "newer" else fetched
    assert json.loads(archived(data_dir, cid, "json").read_bytes()) == winner
    assert index[cid]["call_successful"] == winner["analysis"]["call_successful"]
    expected_at = event_at if webhook == "newer" else None
    kind, at, _digest = index[cid]["version"].split(".")
    assert kind == str(versions.TRANSCRIPT_KIND)
    if expected_at is not None:
        assert int(at) == expected_at
    else:
        assert int(at) > event_at  # the fetch's own time
    assert sha256(archived(data_dir, cid, "mp3")) == api.conversation(cid).audio_sha256()
    assert verify(data_dir)["items"] == []


def test_a_failed_fetch_exits_non_zero_and_a_conversation_gone_upstream_is_kept(
    tmp_path: Path, api: ElevenLabsStandIn
) -> None:
    data_dir = tmp_path / "data"
    kept, fine = api.add(), api.add()
    status, _ = sync(api, data_dir, "--since", "2000-01-01")
    assert status == 0
    kept_json = archived(data_dir, kept, "json").read_bytes()

    # Upstream now shows `kept` changed (so sync asks for it) but answers 404: deleted there.
    api.update(kept, call_successful="failure")
    api.fail_next(1, 404, kind="get", path=kept)
    newer = api.add()
    api.fail_next(2, 500, kind="get", path=newer)  # both attempts of this run fail
    status, summary = sync(api, data_dir, "--since", "2000-01-01")

    assert status == 1, summary
    assert summary["gone_upstream"] == [kept]
    assert [failure["conversation_id"] for failure in summary["failed"]] == [newer]
    assert "500" in summary["failed"][0]["reason"] and API_KEY not in json.dumps(summary)
    assert archived(data_dir, kept, "json").read_bytes() == kept_json  # never deleted here
    assert archived(data_dir, kept, "mp3").exists() and kept in rows(data_dir)
    assert fine in rows(data_dir) and newer not in rows(data_dir)

    done = callvault("sync", "--data-dir", str(data_dir), "--since", "2000-01-01", env=cli_env(api))
    assert done.returncode == 0, done.stderr[-3000:]  # the fault is spent: the re-run succeeds
    assert newer in rows(data_dir)
    assert "failed" in done.stderr and "audio fetched" in done.stderr  # the text summary
    assert SECRET not in done.stderr


def test_serve_fetches_the_audio_a_transcript_promised_once_the_grace_has_passed(
    tmp_path: Path, api: ElevenLabsStandIn
) -> None:
    """Only the transcript webhook comes (audio webhooks are never retried): serve fetches the MP3."""
    data_dir = tmp_path / "data"
    cid = api.add("conv_e2e_grace", audio=SyntheticAudio(2 * 1024 * 1024 + 5, "grace"))
    body = json.dumps(
        {"type": "post_call_transcription", "event_timestamp": int(time.time()), "data": api.document(cid)}
    ).encode()
    env = {
        "ELEVENLABS_API_KEY": API_KEY,
        "CALLVAULT_ELEVENLABS_BASE_URL": api.url,
        "CALLVAULT_AUDIO_GRACE_SECONDS": "1",
        "CALLVAULT_SYNC_INTERVAL": "0",  # the audio fetch alone, no scheduled sync
    }
    with serve_archive(data_dir, env) as served, httpx.Client(timeout=30) as client:
        response = client.post(f"{served.url}/webhooks/elevenlabs", content=body, headers=signed_headers(body))
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + 60
        while rows(data_dir)[cid]["audio_key"] is None:
            assert served.process.poll() is None, served.logs()
            assert time.monotonic() < deadline, f"no audio fetched:\n{served.logs()[-3000:]}"
            time.sleep(0.1)
        logs = served.logs()

    assert api.requests == counts(audio=1)  # the audio only: no list, no GET (no sync runs)
    assert rows(data_dir)[cid]["audio_key"] == f"{FOLDER}/{cid}.mp3"
    assert sha256(archived(data_dir, cid, "mp3")) == api.conversation(cid).audio_sha256()
    assert API_KEY not in logs
    assert verify(data_dir)["items"] == []


def test_dry_run_is_the_gap_report_and_fetches_and_writes_nothing(tmp_path: Path, api: ElevenLabsStandIn) -> None:
    data_dir = tmp_path / "data"
    complete, changed = api.add(), api.add()
    assert sync(api, data_dir)[0] == 0
    api.update(changed, call_successful="failure")  # an analysis re-run upstream
    missing = api.add()
    no_audio = api.add()
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / f"{no_audio}.json").write_text(json.dumps(api.document(no_audio)))  # a saved GET, no audio
    imported = callvault("import", str(exports), "--data-dir", str(data_dir), env=cli_env(api))
    assert imported.returncode == 0, imported.stderr[-3000:]
    files_before = sorted(p.relative_to(data_dir) for p in (data_dir / "archive").rglob("*"))
    rows_before = rows(data_dir)
    api.reset_counts()

    status, report = sync(api, data_dir, "--dry-run", "--since", "2000-01-01")

    assert status == 0, report
    assert api.requests == counts(list=1)  # listing only
    assert (report["dry_run"], report["missing"], report["outdated"]) == (True, [missing], [changed])
    assert report["audio_missing"] == [no_audio]
    assert report["already_complete"] == 2 and complete not in report["missing"] + report["outdated"]
    assert sorted(p.relative_to(data_dir) for p in (data_dir / "archive").rglob("*")) == files_before
    assert rows(data_dir) == rows_before


def test_serve_syncs_on_its_schedule_calls_no_webhook_brought(tmp_path: Path, api: ElevenLabsStandIn) -> None:
    data_dir = tmp_path / "data"
    missed = api.add_many(3)
    env = {"ELEVENLABS_API_KEY": API_KEY, "CALLVAULT_ELEVENLABS_BASE_URL": api.url, "CALLVAULT_SYNC_INTERVAL": "1"}
    with serve_archive(data_dir, env) as served:
        deadline = time.monotonic() + 60
        while "scheduled sync done" not in served.logs():  # logged once a run has finished
            assert served.process.poll() is None, served.logs()
            assert time.monotonic() < deadline, f"no scheduled sync finished:\n{served.logs()[-3000:]}"
            time.sleep(0.2)
        time.sleep(2.5)  # more runs, every second: they find nothing to fetch
        index, logs = rows(data_dir), served.logs()

    assert set(index) == set(missed)
    for cid in missed:
        assert json.loads(archived(data_dir, cid, "json").read_bytes()) == api.document(cid)
        assert sha256(archived(data_dir, cid, "mp3")) == api.conversation(cid).audio_sha256()
    assert "scheduled sync failed" not in logs and API_KEY not in logs
    assert api.requests["list"] >= 2  # it ran again
    assert api.requests["get"] == 3 and api.requests["audio"] == 3  # and fetched nothing twice


def test_until_before_where_the_run_would_start_is_refused_with_what_to_add(
    tmp_path: Path, api: ElevenLabsStandIn
) -> None:
    data_dir = tmp_path / "data"
    api.add_many(2)
    status, _summary = sync(api, data_dir)  # sets the watermark: now
    assert status == 0
    api.reset_counts()

    done = callvault("sync", "--until", "2024-01-01", "--data-dir", str(data_dir), env=cli_env(api))

    assert done.returncode == 2, done.stderr  # a usage error, before any request
    assert "--until is before where this run would start" in done.stderr and "--since" in done.stderr
    assert api.requests == counts()


def test_a_run_stopped_midway_still_merges_the_closed_days_it_wrote_to(tmp_path: Path, api: ElevenLabsStandIn) -> None:
    """Calls of closed days go to per-call analytics objects that a report counts twice until merged;
    `callvault sync` merges them before it ends, and must when the listing stops it, too."""
    from services.analytics.tables import parse_object_key
    from tests.support_elevenlabs import Fault

    data_dir = tmp_path / "data"
    api.add_many(150)  # July 2025: closed days

    class SecondPage(Fault):
        def matches(self, kind: Any, path: str) -> bool:
            return super().matches(kind, path) and api._state.arrived["list"] > 1  # under the lock already

    api._add_fault(SecondPage(1, "status", status=403, kind="list"))
    done = callvault("sync", "--data-dir", str(data_dir), env=cli_env(api))

    assert done.returncode == 1 and "403" in done.stderr, done.stderr[-3000:]
    assert 0 < len(rows(data_dir)) <= 100  # first-page calls were archived before the run stopped
    analytics = data_dir / "analytics"
    unmerged = [p for p in analytics.rglob("*") if parse_object_key(p.relative_to(analytics).as_posix())]
    assert unmerged == []
