"""`serve` on a full disk says so in one line and leaves a data dir that starts once space is freed.

The real case needs a small file system: a 4 MiB tmpfs, mounted when this user may mount (root in CI
containers), else skipped with the reason. The unit tests beside it cover the wording without one."""

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.local.lock import disk_full_message
from tests.support import SECRET

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _tmpfs(tmp_path: Path, options: str) -> Iterator[Path]:
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"{options},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _tmpfs(tmp_path, "size=4m")


@pytest.fixture
def few_inodes(tmp_path: Path) -> Iterator[Path]:
    """64 MiB of space and 40 inodes: a disk full of small files."""
    yield from _tmpfs(tmp_path, "size=64m,nr_inodes=40")


def _fill(disk: Path, leave_kib: int) -> Path:
    filler = disk / "filler"
    free_kib = shutil.disk_usage(disk).free // 1024
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, free_kib - leave_kib) * 1024)
    return filler


def _serve(data_dir: Path, seconds: float) -> subprocess.CompletedProcess[str] | None:
    """Run serve; None when it was still serving after ``seconds`` (it started), else how it ended."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLVAULT_")}
    env.update(CALLVAULT_WEBHOOK_SECRET=SECRET)  # memory on (the offline store): its files are written too
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        stdout, stderr = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.terminate()
        _out, stderr = process.communicate(timeout=60)
        assert "listening on" in stderr, stderr
        return None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _assert_refused_in_one_line(ended: subprocess.CompletedProcess[str] | None, starts: str, advice: str) -> None:
    assert ended is not None, "serve started on a full disk"
    assert ended.returncode == 1
    assert "Traceback" not in ended.stderr
    assert ended.stderr.strip().splitlines()[-1].startswith(starts)
    assert ended.stderr.strip().endswith(f"{advice}, or pass another --data-dir")


@pytest.mark.parametrize("leave_kib", [0, 16, 64, 200])
def test_serve_on_a_full_disk_is_one_line_and_starts_once_space_is_freed(small_disk: Path, leave_kib: int) -> None:
    data_dir = small_disk / "data"
    filler = _fill(small_disk, leave_kib)
    _assert_refused_in_one_line(
        _serve(data_dir, seconds=60), f"Error: the disk that holds {data_dir} is full (", "; free some space"
    )

    filler.unlink()
    assert _serve(data_dir, seconds=15) is None, "a start on a full disk left a data dir that does not start"


@pytest.mark.parametrize("leave_files", [0, 3, 8, 12])
def test_serve_out_of_inodes_says_so_in_one_line_and_starts_once_files_are_deleted(
    few_inodes: Path, leave_files: int
) -> None:
    """ENOSPC with megabytes free: "is full (65,000 KiB free); free some space" contradicted itself,
    and SQLite's "unable to open database file" (its journal could not be created) was a traceback."""
    data_dir = few_inodes / "data"
    free_files = os.statvfs(few_inodes).f_favail
    fillers = [few_inodes / f"filler-{i}" for i in range(free_files - leave_files)]
    for filler in fillers:
        filler.touch()
    _assert_refused_in_one_line(
        _serve(data_dir, seconds=60), f"Error: the disk that holds {data_dir} can take no more", "; delete some files"
    )

    for filler in fillers:
        filler.unlink()
    assert _serve(data_dir, seconds=15) is None, "a start without inodes left a data dir that does not start"


def test_no_space_is_a_full_disk_whatever_the_space_left(tmp_path: Path) -> None:
    exc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "served-url"))
    message = disk_full_message(tmp_path, exc)
    assert message is not None and message.startswith(f"the disk that holds {tmp_path} is full (")


def test_sqlite_errors_are_put_down_to_the_disk_only_when_it_is_nearly_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io_error = sqlite3.OperationalError("disk I/O error")
    assert disk_full_message(tmp_path, io_error) is None  # plenty of space: a real fault, its traceback kept
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage._replace(free=8 * 1024))
    assert disk_full_message(tmp_path, io_error) == (
        f"the disk that holds {tmp_path} is full (8 KiB free); free some space, or pass another --data-dir"
    )
    assert disk_full_message(tmp_path, ValueError("not storage")) is None


def test_a_busy_or_forbidden_data_dir_is_not_put_down_to_a_nearly_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With little space left, a second serve was told the disk is full instead of who holds the data
    dir (the busy lock's EWOULDBLOCK, replaced 'from None', was read as its cause), and a permission
    error was too: an errno other than ENOSPC says what is wrong itself."""
    from services.local.lock import DataDirBusy, DataDirLock, DataDirUnusable

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage._replace(free=8 * 1024))
    with DataDirLock.acquire(tmp_path, "callvault serve"), pytest.raises(DataDirBusy) as busy:
        DataDirLock.acquire(tmp_path, "callvault serve")
    assert disk_full_message(tmp_path, busy.value) is None
    try:
        try:
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))
        except OSError as exc:
            raise DataDirUnusable(tmp_path, "Permission denied") from exc
    except DataDirUnusable as unusable:
        assert disk_full_message(tmp_path, unusable) is None
    assert disk_full_message(tmp_path, sqlite3.OperationalError("disk I/O error")) is not None  # no errno: space


def test_commands_on_a_read_only_data_dir_say_so_in_one_line(tmp_path: Path) -> None:
    """`verify`, `calls` and `import` on a data dir mounted read-only printed a traceback ending in "the
    local index cannot be opened" (SQLite's WAL writes a -shm even to read), or in the OSError of the
    signing key `calls` generates."""
    from click.testing import CliRunner

    from services.cli.main import cli
    from tests.support import FIXTURES

    runner = CliRunner()
    written, data_dir = tmp_path / "written", tmp_path / "read-only"
    assert runner.invoke(cli, ["import", str(FIXTURES), "--data-dir", str(written)]).exit_code == 0
    data_dir.mkdir()
    if subprocess.run(["mount", "--bind", str(written), str(data_dir)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(data_dir)], check=True)
        for args in (["verify"], ["calls"], ["import", str(FIXTURES)]):
            result = runner.invoke(cli, [*args, "--data-dir", str(data_dir)])
            assert result.exit_code == 1, (args, result.output)
            assert isinstance(result.exception, SystemExit), (args, result.exception)
            said = " ".join(result.stderr.split())  # the index, the audit trail or a secret's file
            assert "Traceback" not in said and "read-only file system" in said.lower(), (args, said)
    finally:
        subprocess.run(["umount", "-l", str(data_dir)], check=False)
