"""The archive as plain files: ``<root>/<key>``, so ``aws s3 sync <root> s3://bucket`` migrates it."""

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..domain.errors import NotFound, StorageUnavailable

_TMP_PREFIX = ".tmp-"


class FsBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        except OSError as exc:
            raise StorageUnavailable("the local archive cannot be written") from exc
        size = 0
        try:
            with os.fdopen(fd, "wb") as tmp:
                for chunk in chunks:
                    tmp.write(chunk)
                    size += len(chunk)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)  # atomic: readers see the old object or the new one, never half
            _fsync_dir(path.parent)
        except OSError as exc:
            _unlink_quietly(tmp_name)
            raise StorageUnavailable("the local archive cannot be written") from exc
        except BaseException:
            _unlink_quietly(tmp_name)
            raise
        return size

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
        _fsync_dir(dst.parent)
        _fsync_dir(src.parent)
        return True

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in sorted(filenames):
                if name.startswith(_TMP_PREFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)
