"""`callvault keys create|list|revoke`: the key is printed once and never listed or stored."""

import json
from pathlib import Path

from click.testing import CliRunner

from services.cli.main import cli
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.web.auth import ApiKeys
from services.web.keystore import KeyFile


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    SqliteCallIndex(tmp_path / "index.sqlite3").close()  # the data dir of a server that has run
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--data-dir", str(tmp_path), "--name", "qa", "--role", "listen"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("cvk_")
    assert "not shown again" in created.stderr and "listen:sha256:" in created.stderr
    listed = runner.invoke(cli, ["keys", "list", "--data-dir", str(tmp_path), "--json"])
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["name"], r["role"], r["revoked_at"]) for r in rows] == [("qa", "listen", None)]
    assert key not in listed.output and key not in (tmp_path / "api-keys.json").read_text()
    api_keys = ApiKeys([], managed=KeyFile.in_data_dir(tmp_path).entries)
    assert api_keys.authenticate(key).role == "listen"
    revoked = runner.invoke(cli, ["keys", "revoke", "--data-dir", str(tmp_path), rows[0]["id"]])
    assert revoked.exit_code == 0
    assert api_keys.lookup(key) is None
    assert runner.invoke(cli, ["keys", "revoke", "--data-dir", str(tmp_path), "key_nope"]).exit_code == 1
    assert "revoked" in runner.invoke(cli, ["keys", "list", "--data-dir", str(tmp_path)]).output


def test_keys_cli_and_serve_refuse_a_broken_key_file_in_one_line(tmp_path: Path) -> None:
    SqliteCallIndex(tmp_path / "index.sqlite3").close()
    (tmp_path / "api-keys.json").write_text('{"keys": [')
    runner = CliRunner()
    for args in (["keys", "list"], ["keys", "create", "--name", "qa"], ["serve", "--port", "0"]):
        result = runner.invoke(cli, [*args, "--data-dir", str(tmp_path)])
        assert result.exit_code == 1, (args, result.output)
        assert "api-keys.json is not a valid key file" in result.stderr, (args, result.output)
        assert "Traceback" not in result.output and result.exception is not None
        assert isinstance(result.exception, SystemExit)
    assert not (tmp_path / "webhook-secret").exists()  # serve stopped before generating anything


def test_keys_cli_revoking_twice_says_so_and_audits_one_revocation(tmp_path: Path) -> None:
    SqliteCallIndex(tmp_path / "index.sqlite3").close()
    runner, env = CliRunner(), {"CALLVAULT_MEMORY_BACKEND": "none"}
    data = ["--data-dir", str(tmp_path)]
    assert runner.invoke(cli, ["keys", "create", "--name", "qa", *data], env=env).exit_code == 0
    key_id = json.loads(runner.invoke(cli, ["keys", "list", "--json", *data], env=env).stdout)["id"]
    first = runner.invoke(cli, ["keys", "revoke", key_id, *data], env=env)
    assert first.exit_code == 0 and f"Revoked {key_id}" in first.stderr
    again = runner.invoke(cli, ["keys", "revoke", key_id, *data], env=env)
    assert again.exit_code == 0 and f"{key_id} (qa) was revoked already" in again.stderr, again.output
    trail = runner.invoke(cli, ["audit", "--json", *data], env=env)
    actions = [json.loads(line)["action"] for line in trail.stdout.splitlines()]
    assert actions == ["key_create", "key_revoke"], actions


def test_keys_cli_a_name_keys_list_cannot_print_on_one_line_is_refused(tmp_path: Path) -> None:
    SqliteCallIndex(tmp_path / "index.sqlite3").close()
    runner = CliRunner()
    for name in ("", "   ", "qa\nkey_fake  admin", "\x1b[2Jqa", "x" * 101):
        result = runner.invoke(cli, ["keys", "create", "--name", name, "--data-dir", str(tmp_path)])
        assert result.exit_code == 2 and "printable characters" in result.stderr, repr(name)
    assert not (tmp_path / "api-keys.json").exists()
    kept = runner.invoke(cli, ["keys", "create", "--name", "  qa team ", "--data-dir", str(tmp_path)])
    assert kept.exit_code == 0 and "for 'qa team'" in kept.stderr
