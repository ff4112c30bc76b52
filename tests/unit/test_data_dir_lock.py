"""``DataDirLock``: exclusive per data dir, names its holder, released when the holder dies."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli.main import cli
from services.local.lock import LOCK_FILE, DataDirBusy, DataDirLock, DataDirUnusable, PortTaken, bind_listener


def test_lock_is_exclusive_and_named(tmp_path: Path) -> None:
    with DataDirLock.acquire(tmp_path, "callvault serve"):
        with pytest.raises(DataDirBusy) as refused:
            DataDirLock.acquire(tmp_path, "callvault memory forget")
        assert str(refused.value) == (
            f"another callvault serve (pid {os.getpid()}) holds {tmp_path}; stop it or use another --data-dir"
        )
    with DataDirLock.acquire(tmp_path, "callvault memory forget"):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()} callvault memory forget\n"
    assert (tmp_path / LOCK_FILE).stat().st_mode & 0o077 == 0


def test_a_lock_file_deleted_by_hand_lets_nobody_in(tmp_path: Path) -> None:
    """The lock is on the folder: the file only names the holder, so losing it loses the name, not the lock."""
    with DataDirLock.acquire(tmp_path, "callvault serve"):
        (tmp_path / LOCK_FILE).unlink()
        with pytest.raises(DataDirBusy) as refused:
            DataDirLock.acquire(tmp_path, "callvault serve")
        assert str(refused.value).startswith(f"another callvault process holds {tmp_path};")
    DataDirLock.acquire(tmp_path, "callvault serve").close()


def test_a_lock_on_the_note_alone_is_respected(tmp_path: Path) -> None:
    """What another machine's serve holds over NFS, where a folder's flock stays local: the note's lock."""
    import fcntl

    (tmp_path / LOCK_FILE).write_text("4242 callvault serve\n")
    other = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(DataDirBusy, match="another callvault serve \\(pid 4242\\) holds"):
            DataDirLock.acquire(tmp_path, "callvault serve")
    finally:
        os.close(other)
    DataDirLock.acquire(tmp_path, "callvault serve").close()  # and nothing of the refused attempt stays held


def test_a_killed_holder_leaves_no_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from services.local.lock import DataDirLock;"
            f"lock = DataDirLock.acquire(Path({str(tmp_path)!r}), 'callvault serve'); print('held', flush=True);"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DataDirBusy, match=f"pid {holder.pid}"):
            DataDirLock.acquire(tmp_path, "callvault serve")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    DataDirLock.acquire(tmp_path, "callvault serve").close()


def test_an_unusable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(DataDirUnusable, match=f"cannot use {blocker / 'data'} as the data dir: .*; pass another"):
        DataDirLock.acquire(blocker / "data", "callvault serve")


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("nonexistent.invalid", "unknown host .*; pass an address of this machine as --host"),
        ("192.0.2.1", "not an address of this machine; pass one as --host"),  # TEST-NET-1, never local
    ],
)
def test_where_the_server_cannot_listen_is_said(host: str, says: str) -> None:
    with pytest.raises(PortTaken, match=f"cannot listen on {host}:8080: {says}"):
        bind_listener(host, 8080)


def test_serve_says_so_without_a_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(cli, ["serve", "--data-dir", str(blocker / "data")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert "cannot use" in result.output and "Traceback" not in result.output


def test_a_start_up_that_fails_after_the_ingest_processes_started_stops_them_and_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing started is left behind: the ingest processes are closed, threads never started are no
    obstacle to the clean-up, and the data dir is free again."""
    from services.analytics.compaction import CompactionThread
    from services.cli import main

    closed: list[bool] = []

    class Ingest:
        store = None

        def close(self) -> None:
            closed.append(True)

    def refuse(_self: CompactionThread) -> CompactionThread:
        raise RuntimeError("cannot start a thread")

    monkeypatch.setattr(main, "_ingest_process", lambda *_args: Ingest())
    monkeypatch.setattr(CompactionThread, "start", refuse)
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(
        cli,
        ["serve", "--data-dir", str(data_dir), "--port", "0"],
        env={"CALLVAULT_MEMORY_BACKEND": "none", "CALLVAULT_WEBHOOK_SECRET": "s" * 32},
    )
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "cannot start a thread"
    assert closed == [True]
    DataDirLock.acquire(data_dir, "callvault serve").close()
