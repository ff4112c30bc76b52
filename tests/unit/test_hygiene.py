"""Start-up hygiene (services/local/hygiene.py): a crash's temp files and empty folders go, real objects
and fresh temp files stay; every local file and folder ends up owner-only.

Times are explicit (``now`` passed in, mtimes set with ``os.utime``): nothing here waits or measures.
"""

import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.analytics.duckdb_engine import DuckDbEngine
from services.cli.main import cli
from services.core.adapters.sqlite_database import SqliteDatabase
from services.core.config import Settings
from services.local.hygiene import (
    TEMP_GRACE_SECS,
    find_leftovers,
    find_loose_permissions,
    foreign_entries,
    prepare_data_dir,
    sweep_data_dir,
    tighten_permissions,
)
from tests.support import FIXTURES

NOW = 1_767_000_000.0
STALE = NOW - TEMP_GRACE_SECS - 60
FRESH = NOW - 60


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """What a process outside the CLI (or an older CallVault) creates files with: 0644 and 0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _file(path: Path, mtime: float, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def _age_folders(root: Path, mtime: float) -> None:
    """Folder mtimes move whenever an entry is added: set them last, deepest first."""
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        os.utime(folder, (mtime, mtime))


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() + ("/" if p.is_dir() else "") for p in root.rglob("*")}


@pytest.fixture
def crashed(tmp_path: Path) -> Path:
    """A data dir as a crash leaves it: stale temp files beside real objects, folders a failed write
    made and never filled, plus a temp file a running import is writing right now."""
    data = tmp_path / "data"
    archive, analytics = data / "archive", data / "analytics"
    _file(archive / "16125550142/conv_a.json", STALE, b'{"conversation_id": "conv_a"}')
    _file(archive / "16125550142/.tmp-k3j4h5", STALE)  # a transcript copy beside its object
    _file(archive / "16125550177/.tmp-abc123", STALE)  # the only thing in its folder
    _file(archive / "_pending-audio/.tmp-claim-0f0f", STALE)
    _file(archive / "16125550188/.tmp-live01", FRESH)  # an import writing now
    (archive / "unknown").mkdir(parents=True)  # a failed write's empty folder
    (archive / "16125550199").mkdir()  # empty, but only just made (a writer is about to fill it)
    _file(analytics / "calls/dt=2025-07-06/conv_a.json.gz", STALE)
    _file(analytics / "calls/dt=2025-07-06/.tmp-zz", STALE)
    (analytics / "messages/dt=2025-07-06").mkdir(parents=True)
    _file(data / ".tmp-webhook-secret-123-456", STALE)  # secrets are written through temp files too
    _file(data / "webhook-secret", STALE)
    _file(data / "memory/.tmp-not-ours", STALE)  # Mem0/Qdrant's folder: not ours to sweep
    outside = _file(tmp_path / "elsewhere.txt", STALE)
    (archive / "16125550142/.tmp-symlink").symlink_to(outside)  # not a regular file: left alone
    _age_folders(data, STALE)
    os.utime(archive / "16125550199", (FRESH, FRESH))
    return data


def test_hygiene_sweep_removes_stale_temp_files_and_empty_folders_and_keeps_everything_else(crashed: Path) -> None:
    report = sweep_data_dir(crashed, NOW)

    assert _tree(crashed) == {
        "archive/",
        "archive/16125550142/",
        "archive/16125550142/conv_a.json",
        "archive/16125550142/.tmp-symlink",
        "archive/16125550188/",
        "archive/16125550188/.tmp-live01",
        "archive/16125550199/",
        "analytics/",
        "analytics/calls/",
        "analytics/calls/dt=2025-07-06/",
        "analytics/calls/dt=2025-07-06/conv_a.json.gz",
        "memory/",
        "memory/.tmp-not-ours",
        "webhook-secret",
    }
    assert (crashed / "archive/16125550142/conv_a.json").read_bytes() == b'{"conversation_id": "conv_a"}'
    assert (crashed.parent / "elsewhere.txt").exists()
    assert (report.temp_files_removed, report.empty_folders_removed) == (5, 5)
    assert (report.fresh_temp_files_kept, report.failed) == (1, 0)


def test_hygiene_sweep_is_idempotent(crashed: Path) -> None:
    sweep_data_dir(crashed, NOW)
    after_first = _tree(crashed)

    report = sweep_data_dir(crashed, NOW)

    assert _tree(crashed) == after_first
    assert (report.temp_files_removed, report.empty_folders_removed, report.failed) == (0, 0, 0)


def test_hygiene_find_leftovers_lists_what_the_sweep_removes_and_removes_nothing(crashed: Path) -> None:
    before = _tree(crashed)

    leftovers = find_leftovers(crashed, NOW)

    assert _tree(crashed) == before
    listed = {p.relative_to(crashed).as_posix() for p in [*leftovers.temp_files, *leftovers.empty_folders]}
    sweep_data_dir(crashed, NOW)
    assert listed == {entry.rstrip("/") for entry in before - _tree(crashed)}
    # Deepest first: each folder comes after everything inside it.
    folders = [p.relative_to(crashed).as_posix() for p in leftovers.empty_folders]
    assert folders.index("analytics/messages/dt=2025-07-06") < folders.index("analytics/messages")


def test_hygiene_sweep_takes_a_fresh_temp_file_once_it_is_past_the_grace_period(crashed: Path) -> None:
    sweep_data_dir(crashed, NOW)
    assert (crashed / "archive/16125550188/.tmp-live01").exists()

    later = sweep_data_dir(crashed, NOW + TEMP_GRACE_SECS)

    assert not (crashed / "archive/16125550188").exists()
    assert not (crashed / "archive/16125550199").exists()
    assert (later.temp_files_removed, later.empty_folders_removed) == (1, 2)


def test_hygiene_sweep_never_removes_the_roots(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in ("archive", "analytics"):
        (data / name).mkdir(parents=True)
    _age_folders(tmp_path, STALE)

    assert sweep_data_dir(data, NOW).empty_folders_removed == 0
    assert (data / "archive").is_dir() and (data / "analytics").is_dir()
    assert sweep_data_dir(tmp_path / "no-such-dir", NOW).temp_files_removed == 0


def test_hygiene_tighten_permissions_makes_files_0600_and_folders_0700_and_skips_symlinks(
    tmp_path: Path, loose_umask: None
) -> None:
    data = tmp_path / "data"
    _file(data / "archive/16125550142/conv_a.json", NOW).chmod(0o644)
    _file(data / "index.sqlite3", NOW).chmod(0o664)
    _file(data / "api-key", NOW).chmod(0o600)
    (data / "memory/qdrant").mkdir(parents=True)
    (data / "archive").chmod(0o775)
    outside = _file(tmp_path / "shared.txt", NOW)
    outside.chmod(0o644)
    (data / "link").symlink_to(outside)
    data.chmod(0o755)

    report = tighten_permissions(data)

    modes = {p.relative_to(data).as_posix(): stat.S_IMODE(p.lstat().st_mode) for p in data.rglob("*")}
    modes["."] = stat.S_IMODE(data.stat().st_mode)
    assert {k: v for k, v in modes.items() if k != "link"} == {
        ".": 0o700,
        "archive": 0o700,
        "archive/16125550142": 0o700,
        "archive/16125550142/conv_a.json": 0o600,
        "index.sqlite3": 0o600,
        "api-key": 0o600,
        "memory": 0o700,
        "memory/qdrant": 0o700,
    }
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # a symlink's target is not ours
    assert (report.tightened, report.failed) == (7, 0)  # api-key was already right: untouched
    assert find_loose_permissions(data) == []
    assert tighten_permissions(data).tightened == 0


def test_hygiene_tighten_permissions_trusts_files_in_owner_only_folders_unless_asked_for_every_file(
    tmp_path: Path,
) -> None:
    """Start-up checks files only where their folder was loose (what older versions left); the audit
    and ``every_file`` check them all."""
    data = tmp_path / "data"
    odd = _file(data / "archive/16125550142/conv_a.json", NOW)
    odd.chmod(0o644)  # not something CallVault makes: its folders are 0700 only under the 0077 umask
    for folder in (data / "archive/16125550142", data / "archive", data):
        folder.chmod(0o700)

    assert tighten_permissions(data).tightened == 0
    assert find_loose_permissions(data) == [odd]
    assert tighten_permissions(data, every_file=True).tightened == 1
    assert stat.S_IMODE(odd.stat().st_mode) == 0o600


def test_hygiene_prepare_data_dir_creates_it_owner_only_and_tidies_it(crashed: Path, loose_umask: None) -> None:
    crashed.chmod(0o755)
    (crashed / "archive/16125550142/conv_a.json").chmod(0o644)

    permissions, sweep = prepare_data_dir(Settings(data_dir=crashed), NOW)

    assert permissions.tightened >= 2 and sweep.temp_files_removed == 5
    assert find_loose_permissions(crashed) == [] and find_leftovers(crashed, NOW).temp_files == []
    fresh = crashed.parent / "new" / "data"
    prepare_data_dir(Settings(data_dir=fresh), NOW)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_hygiene_sqlite_wal_and_shm_of_an_old_0644_index_are_owner_only(tmp_path: Path, loose_umask: None) -> None:
    """SQLite gives -wal and -shm the main file's mode whatever the umask: an index an older version
    left 0644 must be tightened before it is opened, or every new WAL is readable by others."""
    path = tmp_path / "index.sqlite3"
    with closing(sqlite3.connect(path)) as old:
        old.execute("CREATE TABLE calls (id TEXT)")
    path.chmod(0o644)
    fresh = tmp_path / "fresh.sqlite3"

    for db_path in (path, fresh):
        db = SqliteDatabase(db_path, "a test database")
        db.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
        db.execute("INSERT INTO t VALUES (1)")
        files = [db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")]
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
        db.close()


def test_hygiene_duckdb_cache_an_older_version_left_readable_becomes_owner_only(
    tmp_path: Path, loose_umask: None
) -> None:
    root, cache = tmp_path / "analytics", tmp_path / "analytics-cache.duckdb"
    root.mkdir()
    DuckDbEngine.local(root, cache).close()
    cache.chmod(0o644)

    DuckDbEngine.local(root, cache).close()

    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_hygiene_every_command_creates_owner_only_files_and_restores_the_umask(
    tmp_path: Path, loose_umask: None
) -> None:
    """`callvault import` (any command, through the group callback) writes 0600 files in 0700 folders;
    run in-process, the caller's umask is back afterwards."""
    data = tmp_path / "data"

    result = CliRunner().invoke(cli, ["import", str(FIXTURES), "--data-dir", str(data)])

    assert result.exit_code == 0, result.output
    entries = [data, *data.rglob("*")]
    assert any(p.suffix == ".json" for p in entries) and any(p.name == "index.sqlite3" for p in entries)
    wrong = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in entries if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert wrong == {}
    assert os.umask(0o022) == 0o022


def test_hygiene_verify_finds_a_readable_file_serve_trusts_and_repair_makes_it_owner_only(tmp_path: Path) -> None:
    """A file copied into an owner-only folder with another umask is never looked at by `serve`'s start
    (its folder is 0700): `verify` checks every file, and `--repair` takes group and other access off."""
    data = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(cli, ["import", str(FIXTURES), "--data-dir", str(data)]).exit_code == 0
    odd = next(data.glob("archive/*/*.json"))
    odd.chmod(0o644)

    found = runner.invoke(cli, ["verify", "--json", "--data-dir", str(data)])
    assert found.exit_code == 1, found.output
    items = [item for item in json.loads(found.stdout)["items"] if item["kind"] == "loose_permissions"]
    assert len(items) == 1 and items[0]["repairable"] and not items[0]["repaired"]
    assert odd.relative_to(data).as_posix() in items[0]["detail"]

    repaired = runner.invoke(cli, ["verify", "--repair", "--data-dir", str(data)])
    assert repaired.exit_code == 0, repaired.output
    assert stat.S_IMODE(odd.stat().st_mode) == 0o600
    assert runner.invoke(cli, ["verify", "--data-dir", str(data)]).exit_code == 0


def test_hygiene_serve_refuses_a_folder_that_is_not_a_data_dir_and_changes_nothing(tmp_path: Path) -> None:
    """`serve --data-dir ~` (or /srv) by mistake made every loose folder under it 0700 and the files in
    them 0600 (a web root, a shared project) before writing its own files beside them."""
    home = tmp_path / "home"
    mine = _file(home / "public_html" / "index.html", NOW)
    (home / "public_html").chmod(0o755)
    mine.chmod(0o644)
    (home / ".profile").write_text("")

    result = CliRunner().invoke(cli, ["serve", "--port", "0", "--data-dir", str(home)])

    assert result.exit_code == 1 and "holds other files (public_html) and no CallVault data" in result.stderr
    assert f"--data-dir {home / 'callvault-data'}" in result.stderr
    assert sorted(p.name for p in home.iterdir()) == [".profile", "public_html"]
    assert (stat.S_IMODE(mine.stat().st_mode), stat.S_IMODE(mine.parent.stat().st_mode)) == (0o644, 0o755)


def test_hygiene_what_counts_as_a_data_dir(tmp_path: Path) -> None:
    assert foreign_entries(tmp_path / "new") == []
    assert foreign_entries(tmp_path) == []  # empty
    (tmp_path / "lost+found").mkdir()
    (tmp_path / ".hidden").write_text("")
    assert foreign_entries(tmp_path) == []  # a fresh disk's root
    (tmp_path / "notes.txt").write_text("")
    assert foreign_entries(tmp_path) == ["notes.txt"]
    (tmp_path / "retention.toml").write_text("")  # an operator's first step, before the first serve
    assert foreign_entries(tmp_path) == []


def test_hygiene_files_another_user_owns_and_others_can_read_are_named_in_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `sudo callvault import`, root's 0644 files stay readable by everyone: chmod is refused, and
    `serve` only counted them in its JSON log line ("failed": 1). Root may chmod anything, so the
    refusal is simulated."""
    data = tmp_path / "data"
    theirs = _file(data / "archive/16125550142/conv_a.json", NOW)
    theirs.chmod(0o644)
    (data / "archive/16125550142").chmod(0o755)
    real_chmod = os.chmod

    def chmod(path: str, mode: int) -> None:
        if Path(path) == theirs:
            raise PermissionError(1, "Operation not permitted", path)
        real_chmod(path, mode)

    monkeypatch.setattr(os, "chmod", chmod)
    report = tighten_permissions(data)

    assert (report.tightened, report.failed, report.left_loose, report.example) == (3, 1, 1, theirs)  # + 3 folders
    warning = report.warning(data)
    assert warning is not None and warning.startswith(f"Warning: 1 file(s) or folder(s) in {data} stay readable")
    assert str(theirs) in warning and f"sudo chown -R $(id -un) {data}" in warning
    assert tighten_permissions(tmp_path / "other").warning(tmp_path / "other") is None
