"""The erasure edges: ``DELETE /callers/{phone}`` (admin keys only) and ``callvault forget``."""

import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from services.cli.main import cli
from tests.memory.support import call_envelope
from tests.support import AUDIO, TRANSCRIPTION, fixture_bytes, signed_headers

CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"  # +16125550142, with audio
WEB = "conv_01jzfrjvcce0vsea1fcbpp9p06"  # a web call, no number
READ, LISTEN, ADMIN = "cvk_role-read", "cvk_role-listen", "cvk_role-admin"
PHONE = "+1 612 555 0142"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _files(data_dir: Path) -> list[str]:
    return sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "archive").rglob("*") if p.is_file())


def test_delete_caller_needs_an_admin_key(client: TestClient) -> None:
    for key in (READ, LISTEN):
        refused = client.delete("/callers/+16125550142", headers=bearer(key))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
    assert client.delete("/callers/+16125550142").status_code == 401
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 200


@pytest.mark.parametrize("query", ["dryrun=true", "dry-run=true", "dry_run=true&force=1"])
def test_a_misspelt_erasure_parameter_is_400_and_erases_nothing(client: TestClient, data_dir: Path, query: str) -> None:
    # Strict like every data route: `dry-run=true` quietly ignored would erase the caller for real.
    before = _files(data_dir)
    refused = client.delete(f"/callers/+16125550142?{query}", headers=bearer(ADMIN))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "unknown_parameter"
    assert "/callers/{phone} takes: dry_run, upstream" in refused.json()["error"]["message"]
    assert _files(data_dir) == before
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 200
    trail = client.get("/audit?form=2025-01-01", headers=bearer(ADMIN))
    assert trail.status_code == 400 and trail.json()["error"]["code"] == "unknown_parameter"
    assert client.delete(f"/callers/+16125550142?{query}").status_code == 401  # the key first


def test_delete_caller_erases_them_from_every_route(client: TestClient, data_dir: Path) -> None:
    dry = client.delete("/callers/+16125550142?dry_run=true", headers=bearer(ADMIN)).json()
    assert dry["dry_run"] is True and dry["conversations"] == 1 and dry["archive_objects"] == 2
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 200

    done = client.delete("/callers/+16125550142", headers=bearer(ADMIN))

    assert done.status_code == 200
    body = done.json()
    assert (body["conversations"], body["archive_objects"], body["index_rows"]) == (1, 2, 1)
    assert body["phone"] == "*******0142"
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 404
    listed = client.get("/calls?phone=%2B16125550142", headers=bearer(ADMIN)).json()
    assert listed["items"] == []
    assert [item["conversation_id"] for item in client.get("/calls", headers=bearer(ADMIN)).json()["items"]] == [WEB]
    assert _files(data_dir) == [f"archive/unknown/{WEB}.json"]


def test_forget_command_dry_run_then_erase_then_verify_is_clean(client: TestClient, data_dir: Path) -> None:
    runner = CliRunner()
    env = {"CALLVAULT_MEMORY_BACKEND": "none"}
    before = _files(data_dir)
    count = "SELECT count(*) AS n FROM {} WHERE phone = '+16125550142'"
    for table in ("calls", "messages", "evaluations"):  # also fills the DuckDB cache, which erasure drops
        sql = runner.invoke(cli, ["sql", count.format(table), "--format", "json", "--data-dir", str(data_dir)])
        assert sql.exit_code == 0 and json.loads(sql.stdout)[0]["n"] > 0, sql.output

    dry = runner.invoke(cli, ["forget", PHONE, "--dry-run", "--json", "--data-dir", str(data_dir)], env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["conversations"] == 1
    assert _files(data_dir) == before

    done = runner.invoke(cli, ["forget", PHONE, "--yes", "--data-dir", str(data_dir)], env=env)
    assert done.exit_code == 0, done.output
    assert "erased 1 conversation(s)" in done.output and "16125550142" not in done.output
    assert "nothing of it was found" not in done.output
    assert _files(data_dir) == [f"archive/unknown/{WEB}.json"]

    for table in ("calls", "messages", "evaluations"):
        sql = runner.invoke(cli, ["sql", count.format(table), "--format", "json", "--data-dir", str(data_dir)])
        assert sql.exit_code == 0 and json.loads(sql.stdout)[0]["n"] == 0, sql.output
    verify = runner.invoke(cli, ["verify", "--json", "--data-dir", str(data_dir)], env=env)
    assert verify.exit_code == 0, verify.output

    by_id = runner.invoke(cli, ["forget", "--conversation", WEB, "--yes", "--data-dir", str(data_dir)], env=env)
    assert by_id.exit_code == 0, by_id.output
    assert _files(data_dir) == []


def test_forget_of_an_id_the_archive_never_had_says_so_and_keeps_it_erased(client: TestClient, data_dir: Path) -> None:
    args = ["forget", "--conversation", "conv_not_delivered_yet", "--yes", "--data-dir", str(data_dir)]
    result = CliRunner().invoke(cli, args, env={"CALLVAULT_MEMORY_BACKEND": "none"})

    assert result.exit_code == 0, result.output
    assert "nothing of it was found here; it is kept erased" in result.stderr
    late = orjson.dumps(call_envelope("conv_not_delivered_yet", "+16125550142"))
    delivered = client.post("/webhooks/elevenlabs", content=late, headers=signed_headers(late))
    assert delivered.status_code == 200 and delivered.json()["status"] == "erased"
    assert client.get("/calls/conv_not_delivered_yet", headers=bearer(ADMIN)).status_code == 404


def test_forget_of_a_number_the_archive_never_had_says_its_calls_are_still_archived(
    client: TestClient, data_dir: Path
) -> None:
    for args in (["forget", "+16125550199", "--yes"], ["forget", "+16125550199", "--dry-run"]):
        result = CliRunner().invoke(cli, [*args, "--data-dir", str(data_dir)], env={"CALLVAULT_MEMORY_BACKEND": "none"})
        assert result.exit_code == 0, result.output
        assert "nothing of this number was found here; its calls are archived as usual" in result.stderr
    first = orjson.dumps(call_envelope("conv_first_of_a_new_caller", "+16125550199"))
    delivered = client.post("/webhooks/elevenlabs", content=first, headers=signed_headers(first))
    assert delivered.json()["status"] == "stored"


def test_forget_command_needs_a_phone_or_a_conversation(data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["forget", "--data-dir", str(data_dir)])
    assert result.exit_code == 2


def test_after_forget_a_webhook_retry_is_answered_200_and_stores_nothing(client: TestClient, data_dir: Path) -> None:
    assert client.delete("/callers/+16125550142", headers=bearer(ADMIN)).status_code == 200
    before = _files(data_dir)

    for name in (TRANSCRIPTION, AUDIO):
        raw = fixture_bytes(name)
        retried = client.post("/webhooks/elevenlabs", content=raw, headers=signed_headers(raw))
        assert retried.status_code == 200
        assert retried.json()["status"] == "erased" and retried.json()["conversation_id"] is None

    assert _files(data_dir) == before
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 404
    tombstones = (data_dir / "privacy.sqlite3").read_bytes()
    assert CALL_ID.encode() not in tombstones and b"16125550142" not in tombstones


def test_verify_finds_erased_calls_a_backup_brought_back_and_repair_erases_them(
    client: TestClient, data_dir: Path
) -> None:
    import shutil

    from services.core.adapters.sqlite_call_index import SqliteCallIndex

    shutil.copytree(data_dir / "archive", data_dir.parent / "backup")
    index = SqliteCallIndex(data_dir / "index.sqlite3")
    row = index.get(CALL_ID)
    assert row is not None
    assert client.delete("/callers/+16125550142", headers=bearer(ADMIN)).status_code == 200
    shutil.copytree(data_dir.parent / "backup", data_dir / "archive", dirs_exist_ok=True)  # the restore
    index.save_call(row, 1)
    runner, env = CliRunner(), {"CALLVAULT_MEMORY_BACKEND": "none"}

    found = runner.invoke(cli, ["verify", "--json", "--data-dir", str(data_dir)], env=env)
    assert found.exit_code == 1, found.output
    report = json.loads(found.stdout)
    assert report["by_kind"].get("erased_reappeared") == 1
    (item,) = [item for item in report["items"] if item["kind"] == "erased_reappeared"]
    assert item["conversation_id"] is None and CALL_ID not in item["detail"] and "0142" not in item["detail"]

    repaired = runner.invoke(cli, ["verify", "--repair", "--data-dir", str(data_dir)], env=env)
    assert repaired.exit_code == 0, repaired.output
    assert runner.invoke(cli, ["verify", "--data-dir", str(data_dir)], env=env).exit_code == 0
    assert _files(data_dir) == [f"archive/unknown/{WEB}.json"]
    assert index.get(CALL_ID) is None


def test_forget_on_aws_without_a_tombstone_key_refuses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.support import fake_aws_environment

    fake_aws_environment(monkeypatch, tmp_path)
    env = {"CALLVAULT_BACKEND": "aws", "CALLVAULT_BUCKET": "b", "CALLVAULT_MEMORY_BACKEND": "none"}
    result = CliRunner().invoke(cli, ["forget", "+16125550142", "--yes"], env=env)

    assert result.exit_code == 1 and "CALLVAULT_TOMBSTONE_KEY_PARAM" in result.output
    expiring = CliRunner().invoke(cli, ["retention", "run"], env=env)
    assert expiring.exit_code == 1 and "CALLVAULT_TOMBSTONE_KEY_PARAM" in expiring.output


def test_forget_and_retention_refuse_while_serve_holds_the_offline_memory_store(
    client: TestClient, data_dir: Path
) -> None:
    from services.local.lock import DataDirLock

    env = {"CALLVAULT_MEMORY_BACKEND": "oss"}
    with DataDirLock.acquire(data_dir, "callvault serve"):
        refused = CliRunner().invoke(cli, ["forget", "+16125550142", "--yes", "--data-dir", str(data_dir)], env=env)
        later = CliRunner().invoke(cli, ["retention", "run", "--data-dir", str(data_dir)], env=env)

    assert refused.exit_code == 1 and "callvault serve" in refused.output and "DELETE /callers" in refused.output
    assert later.exit_code == 1 and "daily" in later.output
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 200  # nothing was erased


def test_verify_repair_leaves_a_reappeared_call_under_a_later_hold_and_says_so(
    client: TestClient, data_dir: Path
) -> None:
    """A hold placed on the caller after the erasure (a new complaint), then a restored backup: repair must
    neither erase held data nor stop with a traceback; it names the hold and leaves the call."""
    import shutil

    from services.core.adapters.sqlite_call_index import SqliteCallIndex

    shutil.copytree(data_dir / "archive", data_dir.parent / "backup")
    index = SqliteCallIndex(data_dir / "index.sqlite3")
    row = index.get(CALL_ID)
    assert row is not None
    assert client.delete("/callers/+16125550142", headers=bearer(ADMIN)).status_code == 200
    runner, env = CliRunner(), {"CALLVAULT_MEMORY_BACKEND": "none"}
    held = runner.invoke(cli, ["hold", PHONE, "--reason", "case 12", "--json", "--data-dir", str(data_dir)], env=env)
    hold_id = json.loads(held.output)["id"]
    shutil.copytree(data_dir.parent / "backup", data_dir / "archive", dirs_exist_ok=True)  # the restore
    index.save_call(row, 1)

    repaired = runner.invoke(cli, ["verify", "--repair", "--json", "--data-dir", str(data_dir)], env=env)

    assert isinstance(repaired.exception, SystemExit) and repaired.exit_code == 1, repaired.exception
    (item,) = [item for item in json.loads(repaired.stdout)["items"] if item["kind"] == "erased_reappeared"]
    assert item["repaired"] is False and hold_id in item["detail"] and CALL_ID not in item["detail"]
    assert index.get(CALL_ID) is not None and f"archive/16125550142/{CALL_ID}.json" in _files(data_dir)


@pytest.mark.parametrize("held", [False, True])
def test_verify_repair_erases_restored_objects_whose_row_is_not_back(
    client: TestClient, data_dir: Path, held: bool
) -> None:
    """An archive backup restored without the index: the objects are back, their row is not. Repair
    erased the id alone (its parked-audio key), said so, and left the transcript and audio for ever."""
    import shutil

    shutil.copytree(data_dir / "archive", data_dir.parent / "backup")
    assert client.delete("/callers/+16125550142", headers=bearer(ADMIN)).status_code == 200
    runner, env = CliRunner(), {"CALLVAULT_MEMORY_BACKEND": "none"}
    if held:  # a hold placed on the caller since: their folder's objects are theirs, so it covers them
        placed = runner.invoke(cli, ["hold", PHONE, "--reason", "case 13", "--data-dir", str(data_dir)], env=env)
        assert placed.exit_code == 0, placed.output
    shutil.copytree(data_dir.parent / "backup", data_dir / "archive", dirs_exist_ok=True)  # the restore

    repaired = runner.invoke(cli, ["verify", "--repair", "--json", "--data-dir", str(data_dir)], env=env)
    again = runner.invoke(cli, ["verify", "--json", "--data-dir", str(data_dir)], env=env)

    (item,) = [item for item in json.loads(repaired.stdout)["items"] if item["kind"] == "erased_reappeared"]
    restored = [f"archive/16125550142/{CALL_ID}.json", f"archive/16125550142/{CALL_ID}.mp3"]
    if held:
        assert repaired.exit_code == 1 and item["repaired"] is False and "hold_" in item["detail"]
        assert _files(data_dir) == sorted([*restored, f"archive/unknown/{WEB}.json"])
    else:
        assert repaired.exit_code == 0 and item["repaired"] is True, repaired.output
        assert again.exit_code == 0, again.output
        assert _files(data_dir) == [f"archive/unknown/{WEB}.json"]


def test_forget_without_a_terminal_or_yes_says_to_pass_yes_and_erases_nothing(
    client: TestClient, data_dir: Path
) -> None:
    result = CliRunner().invoke(cli, ["forget", "+16125550142", "--data-dir", str(data_dir)])  # stdin: no terminal
    assert result.exit_code == 1 and "pass --yes" in result.output
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 200


def test_forget_refuses_a_busy_data_dir_before_asking(client: TestClient, data_dir: Path) -> None:
    from services.local.lock import DataDirLock

    env = {"CALLVAULT_MEMORY_BACKEND": "oss"}
    with DataDirLock.acquire(data_dir, "callvault serve"):
        refused = CliRunner().invoke(cli, ["forget", "+16125550142", "--data-dir", str(data_dir)], env=env)
    assert refused.exit_code == 1 and "callvault serve" in refused.output and "Erase everything" not in refused.output


def test_forget_on_a_data_dir_it_cannot_lock_says_why_in_one_line(
    client: TestClient, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """e.g. a full disk: the lock's note cannot be written. One line, not a traceback, and nothing erased."""
    from services.local.lock import DataDirLock, DataDirUnusable

    def unusable(cls: type, where: Path, _command: str) -> None:
        raise DataDirUnusable(where, "No space left on device")

    monkeypatch.setattr(DataDirLock, "acquire", classmethod(unusable))
    env = {"CALLVAULT_MEMORY_BACKEND": "oss"}
    refused = CliRunner().invoke(cli, ["forget", "+16125550142", "--yes", "--data-dir", str(data_dir)], env=env)
    assert refused.exit_code == 1 and isinstance(refused.exception, SystemExit), refused.exception
    assert f"cannot use {data_dir} as the data dir: No space left on device" in refused.output
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 200


def test_retention_without_rules_says_nothing_expires_rather_than_nothing_was_old(
    client: TestClient, data_dir: Path
) -> None:
    result = CliRunner().invoke(
        cli, ["retention", "run", "--dry-run", "--data-dir", str(data_dir)], env={"CALLVAULT_MEMORY_BACKEND": "none"}
    )
    assert result.exit_code == 0 and "no rule in" in result.output and "nothing expires" in result.output


def test_forget_removes_the_temp_files_a_killed_write_left_in_the_callers_folder(
    client: TestClient, data_dir: Path
) -> None:
    """A write killed mid-way leaves ``.tmp-*`` beside its object: a whole transcript copy that listing
    skips. A caller's erasure removes those in their folder (any age), and none of anyone else's."""
    runner = CliRunner()
    env = {"CALLVAULT_MEMORY_BACKEND": "none"}
    folder = data_dir / "archive" / "16125550142"
    leftover = folder / ".tmp-0123456789abcdef"
    leftover.write_bytes((folder / f"{CALL_ID}.json").read_bytes())
    other = data_dir / "archive" / "unknown" / ".tmp-fedcba9876543210"
    other.write_bytes(b"another caller's write in progress")

    dry = runner.invoke(cli, ["forget", PHONE, "--dry-run", "--json", "--data-dir", str(data_dir)], env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["archive_temp_files"] == 1 and leftover.exists()

    done = runner.invoke(cli, ["forget", PHONE, "--yes", "--json", "--data-dir", str(data_dir)], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["archive_temp_files"] == 1  # stdout: CI shows progress bars on stderr
    assert not folder.exists()  # the folder named by the number went with its last file
    assert _files(data_dir) == ["archive/unknown/.tmp-fedcba9876543210", f"archive/unknown/{WEB}.json"]

    by_id = runner.invoke(cli, ["forget", "--conversation", WEB, "--yes", "--json", "--data-dir", str(data_dir)])
    assert by_id.exit_code == 0, by_id.output
    assert json.loads(by_id.stdout)["archive_temp_files"] == 0  # one call: its folder's temp files may be others'
    assert other.exists()
