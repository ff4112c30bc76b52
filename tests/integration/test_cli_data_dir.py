"""Commands that read or change an archive, pointed at a data dir that holds none (issue #14): they say
where they looked and how to point at the server's, exit 1, and create nothing (no stray archive of
keys, holds or analytics objects in the folder they ran in); `--athena` without AWS settings
is one line, not a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli.main import cli

READERS = [
    ["calls"],
    ["show", "conv_01jzfrjvcce0vsea1fcbpp9p04"],
    ["sql", "SELECT count(*) FROM calls"],
    ["report", "calls-per-day"],
    ["report", "agents", "--no-cache"],
    ["audit"],
    ["hold", "+16125550142", "--reason", "litigation"],
    ["hold", "--list"],
    ["release", "hold_0123456789ab"],
    ["keys", "create", "--name", "qa"],
    ["keys", "list"],
    ["keys", "revoke", "key_0123456789ab"],
    ["compact-analytics"],
    ["backfill-analytics"],
    ["memory", "show", "+16125550142"],
    ["memory", "search", "+16125550142", "tea"],
    ["memory", "forget", "+16125550142", "--yes"],
    ["memory", "status"],
    ["memory", "retry"],
    ["memory", "rerun"],
]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without ./callvault-data, and no CALLVAULT_* settings."""
    for name in list(os.environ):
        if name.startswith("CALLVAULT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args", READERS, ids=lambda a: "-".join(a[:2]))
def test_no_archive_at_the_default_says_where_and_creates_nothing(elsewhere: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert f"no archive in {elsewhere / 'callvault-data'} (from the default, ./callvault-data)" in result.stderr
    assert "--data-dir DIR or CALLVAULT_DATA_DIR=DIR" in result.stderr
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("args", READERS, ids=lambda a: "-".join(a[:2]))
def test_no_archive_in_the_given_data_dir(elsewhere: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    missing = elsewhere / "not-here"
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(missing)])
    assert result.exit_code == 1 and f"no archive in {missing} (from --data-dir)" in result.stderr
    monkeypatch.setenv("CALLVAULT_DATA_DIR", str(missing))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and f"no archive in {missing} (from CALLVAULT_DATA_DIR)" in result.stderr
    assert list(elsewhere.iterdir()) == []


WRITERS = [["serve", "--port", "0"], ["import", "."], ["verify"], ["sync"], ["sign", "-"]]


@pytest.mark.parametrize("args", READERS + WRITERS, ids=lambda a: "-".join(a[:2]))
def test_a_data_dir_that_is_a_file_is_one_line_naming_its_source(
    elsewhere: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CALLVAULT_DATA_DIR (or the default) naming a file: `import` ended in NotADirectoryError's
    traceback and `serve` said "File exists"; click checks only the --data-dir option's value."""
    (elsewhere / "callvault-data").write_text("not a folder")
    result = CliRunner().invoke(cli, args, input="{}")
    assert result.exit_code == 1, result.output
    assert "the data dir callvault-data (from the default, ./callvault-data) is a file, not a folder" in result.stderr
    monkeypatch.setenv("CALLVAULT_DATA_DIR", str(elsewhere / "callvault-data"))
    result = CliRunner().invoke(cli, args, input="{}")
    assert result.exit_code == 1, result.output
    assert f"{elsewhere / 'callvault-data'} (from CALLVAULT_DATA_DIR) is a file, not a folder" in result.stderr
    assert [p.name for p in elsewhere.iterdir()] == ["callvault-data"]


def test_athena_without_aws_settings_is_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CALLVAULT_"))}
    env |= {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    for args in (["report", "success-rate", "--athena"], ["sql", "SELECT 1", "--athena"]):
        process = subprocess.run(
            [sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert process.returncode == 1, process.stderr
        assert process.stderr.strip().splitlines() == [
            "Error: --athena needs AWS settings: a region (AWS_REGION, or a profile's region), credentials, and "
            "CALLVAULT_ATHENA_WORKGROUP / CALLVAULT_ATHENA_DATABASE if not the defaults (docs/analytics.md)"
        ]


def test_a_damaged_index_says_what_to_do_and_verify_repair_rebuilds_it(tmp_path: Path) -> None:
    """An index.sqlite3 that is not a database (a bad copy, a disk fault) ended every command in a
    traceback, then in "the local index cannot be opened" alone: now why, and the way back."""
    from tests.support import FIXTURES

    data = tmp_path / "data"
    runner = CliRunner()
    # In another process, as an operator's earlier run: one still open here would serve pages from its WAL.
    subprocess.run([sys.executable, "-m", "services.cli", "import", str(FIXTURES), "--data-dir", str(data)], check=True)
    index = data / "index.sqlite3"
    index.write_bytes(os.urandom(8192))
    for args in (["calls"], ["verify"], ["import", str(FIXTURES)]):
        result = runner.invoke(cli, [*args, "--data-dir", str(data)])
        said = " ".join(result.stderr.split())
        assert result.exit_code == 1 and "Traceback" not in said, (args, result.output)
        assert "index.sqlite3 is damaged or not a SQLite database" in said, (args, said)
        assert "move it aside and run `callvault verify --repair`" in said, (args, said)

    index.rename(data / "index.damaged")
    assert runner.invoke(cli, ["verify", "--repair", "--data-dir", str(data)]).exit_code == 0
    listed = runner.invoke(cli, ["calls", "--json", "--data-dir", str(data)])
    assert listed.exit_code == 0 and "conv_01jzfrjvcce0vsea1fcbpp9p04" in listed.stdout

    (data / "privacy.sqlite3").write_bytes(os.urandom(8192))  # tombstones and holds: no rebuilding those
    result = runner.invoke(cli, ["verify", "--data-dir", str(data)])
    assert result.exit_code == 1 and result.stderr.strip().endswith(
        "privacy.sqlite3 is damaged or not a SQLite database; restore it from a backup"
    ), result.output


def test_a_blank_data_dir_is_never_the_current_folder(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`export CALLVAULT_DATA_DIR=` (meaning unset) or `--data-dir "$DIR"` with DIR unset was Path(""),
    the current folder: `serve` filled it with data files and made every file under it owner-only."""
    from services.core.config import Settings

    project = elsewhere / "src" / "app.py"
    project.parent.mkdir()
    project.write_text("print('mine')\n")
    project.chmod(0o644)
    monkeypatch.setenv("CALLVAULT_DATA_DIR", "")
    assert Settings().data_dir == Path("callvault-data")
    result = CliRunner().invoke(cli, ["import", str(project.parent)])
    assert result.exit_code == 0 and (elsewhere / "callvault-data" / "index.sqlite3").is_file(), result.output
    assert sorted(p.name for p in elsewhere.iterdir()) == ["callvault-data", "src"]
    assert project.stat().st_mode & 0o777 == 0o644

    for args in (["serve", "--port", "0"], ["calls"], ["import", "src"]):
        result = CliRunner().invoke(cli, [*args, "--data-dir", " "])
        assert result.exit_code == 2 and "'--data-dir': is empty (an unset shell variable?)" in result.stderr, args


def test_importing_a_folder_that_holds_the_data_dir_skips_the_archive_own_files(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`callvault import .` in the folder of ./callvault-data walked into the archive and imported its
    own objects back (stale, or failed: exit 1); a file of it named on purpose is still read."""
    import json
    import shutil

    from tests.support import FIXTURES, TRANSCRIPTION

    runner = CliRunner()
    assert runner.invoke(cli, ["import", str(FIXTURES)]).exit_code == 0  # into ./callvault-data
    (elsewhere / "exports").mkdir()
    shutil.copy(FIXTURES / TRANSCRIPTION, elsewhere / "exports" / "call.json")

    for folder in (".", str(elsewhere)):  # relative or absolute, the data dir is found inside it
        result = runner.invoke(cli, ["import", "--json", folder])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert (summary["files"], summary["unchanged"], summary["failed"]) == (1, 1, []), summary
    archived = next((elsewhere / "callvault-data" / "archive").glob("*/*.json"))
    named = json.loads(runner.invoke(cli, ["import", "--json", str(archived)]).stdout)
    assert named["files"] == 1
