"""One process at a time owns a data dir, and a port is checked before anything is generated or printed.

The data dir itself is held with ``flock`` by ``callvault serve`` for its lifetime (and by
``callvault memory forget`` while it erases): the local memory store, the outbox worker and the
start-up sweep of temp files each assume they are alone. The lock is on the folder, so deleting a file
by hand cannot let a second process in; ``DATA_DIR/callvault.lock`` is locked as well (over NFS only a
file's lock reaches other machines) and names the holder (pid and command) so the second process can
say who to stop. The kernel drops the lock when
the holder exits, however it exits, so a stale file left by a crash never blocks anyone.
"""

import contextlib
import errno
import fcntl
import os
import shutil
import socket
from pathlib import Path
from typing import Self

LOCK_FILE = "callvault.lock"


class DataDirBusy(Exception):
    """Another process holds the data dir's lock; the message names it and says what to do."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(f"another {holder} holds {data_dir}; stop it or use another --data-dir")


class PortTaken(Exception):
    """The server cannot listen where it was asked to; the message says why and what to change."""

    def __init__(
        self, host: str, port: int, reason: str, hint: str = "stop what uses it or pass another --port"
    ) -> None:
        super().__init__(f"cannot listen on {host}:{port}: {reason}; {hint}")


class DataDirUnusable(Exception):
    def __init__(self, data_dir: Path, reason: str) -> None:
        super().__init__(f"cannot use {data_dir} as the data dir: {reason}; pass another --data-dir")


LOW_SPACE_BYTES = 16 * 1024 * 1024  # below this, a storage error at start-up is put down to a full disk
LOW_FREE_FILES = 64  # fewer inodes left than this: the file system is full of files, whatever space it has
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(data_dir: Path, exc: BaseException) -> str | None:
    """One line for a storage error that a full disk explains, else None (the error is not ours to word).

    The cause chain is read: adapters wrap what the OS or SQLite said. An errno the OS gave decides
    (ENOSPC or EDQUOT: full; another, e.g. EACCES, is not ours to word, however little space is left).
    SQLite says "database or disk is full", "disk I/O error" or "unable to open database file" without
    one, so then the data dir's file system decides: nearly out of space, or of inodes. Out of inodes is
    said as such: "free some space" does not help a disk with gigabytes free and no file left to make."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        # ``raise ... from None`` says the error it replaced is not its cause (a busy lock's EWOULDBLOCK)
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    storage = next((e for e in chain if isinstance(e, OSError) or type(e).__module__ == "sqlite3"), None)
    if storage is None:
        return None
    full = any(isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS for error in chain)
    if not full and isinstance(storage, OSError) and storage.errno is not None:
        return None  # the OS named another reason (permission denied, ...): its own words say it
    free, free_files = _free(data_dir)
    out_of_files = free_files is not None and free_files < LOW_FREE_FILES
    if out_of_files and (free is None or free >= LOW_SPACE_BYTES):
        return (
            f"the disk that holds {data_dir} can take no more files ({free_files:,} inodes left, though "
            "it has space); delete some files, or pass another --data-dir"
        )
    if not full and (free is None or free >= LOW_SPACE_BYTES):
        return None
    left = f" ({free // 1024:,} KiB free)" if free is not None else ""
    return f"the disk that holds {data_dir} is full{left}; free some space, or pass another --data-dir"


def _free(data_dir: Path) -> tuple[int | None, int | None]:
    """Free bytes and free inodes of the file system that holds ``data_dir`` (or would: a data dir
    that could not be created is measured at its nearest existing parent). None where unknown; no
    inode count on file systems without a fixed number of inodes (Btrfs reports 0 of 0)."""
    path = data_dir.absolute()
    while not os.path.exists(path) and path != path.parent:  # never raises: this runs while reporting
        path = path.parent
    try:
        free: int | None = shutil.disk_usage(path).free
    except OSError:
        free = None
    try:
        stats = os.statvfs(path)
    except OSError:
        return free, None
    return free, (stats.f_favail if stats.f_files > 0 else None)


class DataDirLock:
    """An exclusive, non-blocking ``flock`` on the data dir; release with ``close()``."""

    def __init__(self, dir_fd: int, note_fd: int, path: Path, made_dir: bool = False) -> None:
        self._dir_fd = dir_fd
        self._note_fd = note_fd
        self.path = path
        self.made_dir = made_dir  # the data dir did not exist before this lock

    @classmethod
    def acquire(cls, data_dir: Path, command: str) -> Self:
        """Take the lock for ``command`` (e.g. ``"callvault serve"``) or raise ``DataDirBusy``."""
        path = data_dir / LOCK_FILE
        made_dir = not data_dir.exists()
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            dir_fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise DataDirUnusable(data_dir, exc.strerror or str(exc)) from exc
        try:
            if not _try_flock(dir_fd):
                raise DataDirBusy(data_dir, _holder(path))
            note_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except BaseException as exc:
            os.close(dir_fd)
            if isinstance(exc, OSError):
                raise DataDirUnusable(data_dir, exc.strerror or str(exc)) from exc
            raise
        try:
            # The note is locked too: over NFS a folder's flock holds on this machine only, a file's
            # on every client, so a second host sharing the data dir is refused as well.
            if not _try_flock(note_fd):
                raise DataDirBusy(data_dir, _holder(path))
            os.ftruncate(note_fd, 0)
            os.pwrite(note_fd, f"{os.getpid()} {command}\n".encode(), 0)
        except BaseException as exc:
            os.close(note_fd)
            os.close(dir_fd)
            if isinstance(exc, OSError):
                raise DataDirUnusable(data_dir, exc.strerror or str(exc)) from exc
            raise
        return cls(dir_fd, note_fd, path, made_dir)

    def abandon(self) -> None:
        """Release, and remove the data dir again if this lock made it and it holds nothing but the lock
        file: a `serve` that could not start (its port taken) leaves no empty folder behind."""
        self.close()
        if not self.made_dir:
            return
        with contextlib.suppress(OSError):
            if [entry.name for entry in self.path.parent.iterdir()] == [LOCK_FILE]:
                self.path.unlink()
                self.path.parent.rmdir()  # refused if anything arrived meanwhile

    def close(self) -> None:
        if self._dir_fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._note_fd, 0)  # the next reader sees no holder
            os.close(self._note_fd)
            os.close(self._dir_fd)  # releases the flock
            self._dir_fd = self._note_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _try_flock(fd: int) -> bool:
    """An exclusive ``flock`` without waiting: False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _holder(path: Path) -> str:
    """``"callvault serve (pid 123)"`` from the lock file (the holder may be writing it, or it may have been
    deleted by hand: then less precise)."""
    with contextlib.suppress(OSError, ValueError):
        with path.open("rb") as note:
            pid, _, command = note.read(512).decode().strip().partition(" ")
        if pid.isdigit():
            return f"{command or 'callvault process'} (pid {int(pid)})"
    return "callvault process"


def bind_listener(host: str, port: int) -> socket.socket:
    """A bound socket for the server (uvicorn listens on it), or ``PortTaken``: checked before the
    caller generates secrets or prints where it listens. Bound here, so nothing can take it in between."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise PortTaken(
            host, port, f"unknown host ({exc.strerror})", "pass an address of this machine as --host"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken(host, port, "the port is taken by another program") from None
        if exc.errno == errno.EACCES:
            raise PortTaken(host, port, "permission denied", "ports below 1024 need root: pass --port 8080") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise PortTaken(host, port, "not an address of this machine", "pass one as --host") from None
        raise PortTaken(host, port, exc.strerror or str(exc)) from None
    sock.set_inheritable(True)
    return sock
