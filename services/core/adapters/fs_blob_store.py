"""The archive as plain files: ``<root>/<key>``, so ``aws s3 sync <root> s3://bucket`` migrates it.

An object's version label (``domain.versions``) is kept in the extended attribute
``user.callvault.version`` of its file: it travels with every rename and hard link, and the stored
bytes stay exactly what was archived. Conditional writes compare the file's tag under an ``flock``
on its folder; the temp file is written and fsynced before the lock is taken, so the lock is held
for a stat and a rename only.
"""

import contextlib
import errno
import fcntl
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..domain import keys
from ..domain.errors import NotFound, StorageUnavailable
from ..domain.models import CallRecord
from ..ports import ObjectHead

_TMP_PREFIX = ".tmp-"
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
VERSION_ATTRIBUTE = "user.callvault.version"
_FOLDER_ATTEMPTS = 3  # mkdir-then-create tries against a purge removing the emptied folder in between


class FsBlobStore:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        """``durable=False`` skips the fsyncs (renames stay atomic): for derived data that
        ``callvault verify --repair`` rebuilds from the archive, never for the archive itself."""
        self.root = root
        self.durable = durable
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Keys come from domain.keys, but a store must not trust its callers with the filesystem.
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in {"", ".", ".."} or "\0" in p for p in parts):
            raise ValueError(f"unsafe archive key: {key!r}")
        return self.root.joinpath(*parts)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.put_stream(key, (data,), content_type)

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str) -> int:
        path = self._path(key)
        tmp_name, size = self._write_temp(path, chunks, None)
        try:
            os.replace(tmp_name, path)  # atomic: readers see the old object or the new one, never half
            self._fsync_dir(path.parent)
        except OSError as exc:
            _unlink_quietly(tmp_name)
            raise StorageUnavailable("the local archive cannot be written") from exc
        return size

    def _write_temp(self, path: Path, chunks: Iterable[bytes], version: str | None) -> tuple[str, int]:
        """A durable temp file beside ``path`` holding the chunks (and the version); the caller renames it.

        Plain ``os`` calls rather than ``tempfile.mkstemp`` and a file object: this runs four times per
        webhook, and each of those layers adds system calls (isatty, lseek, a mkdir that finds the folder)."""
        fd, tmp_name = self._create_temp_in(path.parent)
        size = 0
        try:
            try:
                for chunk in chunks:
                    _write_all(fd, chunk)
                    size += len(chunk)
                if version is not None:
                    _set_version(fd, version)
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            _unlink_quietly(tmp_name)
            raise StorageUnavailable("the local archive cannot be written") from exc
        except BaseException:
            _unlink_quietly(tmp_name)
            raise
        return tmp_name, size

    def _create_temp_in(self, folder: Path) -> tuple[int, str]:
        # The folder may be missing, or be removed between our mkdir and our create by a purge that
        # emptied it (``_remove_if_empty``): make it again, a few times, before calling it a failure.
        for attempt in range(_FOLDER_ATTEMPTS):
            try:
                return _create_temp(folder)
            except FileNotFoundError:
                if attempt == _FOLDER_ATTEMPTS - 1:
                    break
                with contextlib.suppress(OSError):
                    folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageUnavailable("the local archive cannot be written") from exc
        raise StorageUnavailable("the local archive cannot be written")

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound("no archived object under this key") from None  # keys hold phone numbers
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be read") from exc

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be read") from exc

    def move(self, source: str, destination: str) -> bool:
        src, dst = self._path(source), self._path(destination)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        except FileNotFoundError:
            return False  # already moved, by us earlier or by a concurrent delivery
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be written") from exc
        self._fsync_dir(dst.parent)
        self._fsync_dir(src.parent)
        return True

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def purge(self, key: str) -> int:
        """A folder keeps no versions: unlink, and make the removal durable (an erasure must survive
        a power cut as a write does)."""
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be written") from exc
        with contextlib.suppress(FileNotFoundError):  # another purge emptied and removed the folder
            self._fsync_dir(path.parent)
        if path.parent.parent == self.root:  # a top-level folder (a caller's, named by their number)
            self._remove_if_empty(path.parent)
        return 1

    def _remove_if_empty(self, folder: Path) -> None:
        # rmdir refuses a folder anything is in, a writer's temp file included; a writer that made
        # the folder just before finds it gone and makes it again (``_write_temp``).
        try:
            folder.rmdir()
        except OSError:
            return
        self._fsync_dir(folder.parent)

    def get_tagged(self, key: str) -> tuple[bytes, str]:
        try:
            with self._path(key).open("rb") as handle:  # one open file: the tag and the bytes agree
                return handle.read(), _tag(os.fstat(handle.fileno()))
        except FileNotFoundError:
            raise NotFound("no archived object under this key") from None
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be read") from exc

    def put_if(self, key: str, data: bytes, content_type: str, tag: str | None, *, version: str | None = None) -> bool:
        return self.put_stream_if(key, (data,), content_type, tag, version=version) is not None

    def put_stream_if(
        self, key: str, chunks: Iterable[bytes], content_type: str, tag: str | None, *, version: str | None = None
    ) -> int | None:
        path = self._path(key)
        if _current_tag(path) != tag:
            return None  # cheap early answer; the decisive compare is under the lock
        tmp_name, size = self._write_temp(path, chunks, version)
        try:
            with _folder_lock(path.parent):
                if _current_tag(path) != tag:
                    return None
                os.replace(tmp_name, path)
                tmp_name = ""
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be written") from exc
        finally:
            if tmp_name:
                _unlink_quietly(tmp_name)
        self._fsync_dir(path.parent)
        return size

    def head(self, key: str) -> ObjectHead | None:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be read") from exc
        try:  # one open file: tag, size and version describe the same object
            stat = os.fstat(fd)
            return ObjectHead(_tag(stat), stat.st_size, _version(fd))
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be read") from exc
        finally:
            os.close(fd)

    def copy_if(self, source: str, destination: str, tag: str | None) -> bool:
        """A hard link under a temp name, renamed into place: same bytes and version, no copy made."""
        src, dst = self._path(source), self._path(destination)
        link = dst.with_name(f"{_TMP_PREFIX}link-{uuid.uuid4().hex}")
        for attempt in range(_FOLDER_ATTEMPTS):
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, link)
                break
            except FileNotFoundError:
                if not src.exists():
                    return False  # the source is gone: nothing to copy
                if attempt == _FOLDER_ATTEMPTS - 1:  # the folder, removed by a purge after our mkdir
                    raise StorageUnavailable("the local archive cannot be written") from None
            except OSError as exc:
                raise StorageUnavailable("the local archive cannot be written") from exc
        try:
            with _folder_lock(dst.parent):
                if _current_tag(dst) != tag:
                    return False
                os.replace(link, dst)
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be written") from exc
        finally:
            _unlink_quietly(str(link))  # gone after the rename; removes it when the condition failed
        self._fsync_dir(dst.parent)
        return True

    def delete_if(self, key: str, tag: str) -> bool:
        """Claim the file by renaming it, then compare: a plain ``put_bytes`` racing us either lands
        before the claim (the tag differs, so the file is put back) or after it (a new file stays)."""
        path = self._path(key)
        claim = path.with_name(f"{_TMP_PREFIX}claim-{uuid.uuid4().hex}")
        if not path.parent.is_dir():
            return False
        with _folder_lock(path.parent):
            try:
                os.rename(path, claim)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise StorageUnavailable("the local archive cannot be written") from exc
            try:
                if _tag(claim.stat()) == tag:
                    return True
                with contextlib.suppress(FileExistsError):
                    os.link(claim, path)  # put the newer object back, unless an even newer one exists
                return False
            except OSError as exc:
                raise StorageUnavailable("the local archive cannot be written") from exc
            finally:
                # No fsync: a delete lost to a crash only leaves an object its next merge removes again.
                _unlink_quietly(str(claim))

    def _fsync_dir(self, path: Path) -> None:
        if self.durable:
            _fsync_dir(path)

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        # Walk only the folder the prefix names (a caller's folder, one analytics partition), not the
        # whole tree: erasure and merges list one partition of a 100,000-call archive (#13).
        folder = prefix.rpartition("/")[0]
        start = self.root
        if folder and ".." not in folder.split("/") and not folder.startswith("/"):
            start = self.root / folder
            if not start.is_dir():
                return
        for dirpath, _dirnames, filenames in os.walk(start):
            for name in sorted(filenames):
                if name.startswith(_TMP_PREFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key


@dataclass
class CallerTempFiles:
    """``CallerData`` over the temp files a killed write left in a caller's folder: each a whole
    transcript or MP3 copy, which listing skips, so erasure would not see them (``serve`` sweeps them
    at its next start). Only a whole caller's erasure removes them, any age: a temp file cannot be told
    apart by call without reading it, and a live writer of an erased call is refused by its tombstone
    when it retries. The folder then empties and goes with the caller's last object."""

    root: Path  # the archive's root, as FsBlobStore's
    name: str = "archive_temp_files"  # a key of the JSON summaries (`forget --json`, DELETE /callers)

    def _files(self, phone: str | None) -> list[Path]:
        if phone is None:
            return []
        folder = self.root / keys.phone_prefix(phone)
        return sorted(folder.glob(f"{_TMP_PREFIX}*")) if folder.is_dir() else []

    def find(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        return len(self._files(phone))

    def erase(self, phone: str | None, calls: Sequence[CallRecord]) -> int:
        removed = 0
        files = self._files(phone)
        for path in files:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue  # its writer renamed or removed it meanwhile
            except OSError as exc:
                raise StorageUnavailable("the local archive cannot be written") from exc
        if removed:
            with contextlib.suppress(FileNotFoundError):
                _fsync_dir(files[0].parent)  # an erasure must survive a power cut as a write does
        return removed


def _create_temp(folder: Path) -> tuple[int, str]:
    """A new owner-only file ``.tmp-<random>`` in ``folder`` (what ``mkstemp`` does, minus its layers)."""
    while True:
        name = f"{folder}/{_TMP_PREFIX}{os.urandom(8).hex()}"
        try:
            return os.open(name, _TEMP_FLAGS, 0o600), name
        except FileExistsError:
            continue  # a name another writer holds: draw again


def _write_all(fd: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]


def _tag(stat: os.stat_result) -> str:
    # Every write is a rename of a new file: a new inode, so the tag changes even within one mtime tick.
    return f"{stat.st_ino:x}-{stat.st_mtime_ns:x}-{stat.st_size:x}"


def _set_version(fd: int, version: str) -> None:
    try:
        os.setxattr(fd, VERSION_ATTRIBUTE, version.encode())
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise StorageUnavailable(
                "the data dir's filesystem has no user extended attributes, which the local archive needs to "
                "order versions: put the data dir on ext4, XFS, Btrfs or tmpfs"
            ) from None
        raise


def _version(fd: int) -> str | None:
    try:
        return os.getxattr(fd, VERSION_ATTRIBUTE).decode()
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP):
            return None  # written without a version (an older release, or a plain put)
        raise


def _current_tag(path: Path) -> str | None:
    try:
        return _tag(path.stat())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageUnavailable("the local archive cannot be read") from exc


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the folder itself: across threads and processes, no lock file to leave."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise StorageUnavailable("the local archive cannot be written") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)
