"""Serving archived files for the local ``/files/...`` links: path safety and byte ranges.

Only the local back end serves files itself (on AWS the browser talks to S3). The key in a link is
signed, but the route still refuses anything that could leave the archive folder: a signature
proves we issued a link, not that the key in it is a safe path.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from services.core.domain.errors import Forbidden, NotFound, RangeNotSatisfiable

_SINGLE_RANGE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")
CONTENT_TYPES = {".json": "application/json", ".mp3": "audio/mpeg"}


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class LocalFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_for(self, key: str) -> Path:
        """The file behind ``key``; ``Forbidden`` for keys that are not plain relative paths inside the
        archive (``..``, absolute, backslashes, NUL, symlinks out), ``NotFound`` when it is absent."""
        parts = key.split("/")
        if (
            not key
            or len(key) > 1024
            or key.startswith("/")
            or "\\" in key
            or any(p in {"", ".", ".."} or "\0" in p or p.startswith(".tmp-") for p in parts)
        ):
            raise Forbidden("this key is not inside the archive")
        path = self.root.joinpath(*parts)
        try:
            resolved = path.resolve(strict=True)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no archived object behind this link") from None
        except (OSError, RuntimeError):
            raise Forbidden("this key is not inside the archive") from None
        if not resolved.is_relative_to(self.root):
            raise Forbidden("this key is not inside the archive")
        if not resolved.is_file():
            raise NotFound("no archived object behind this link")
        return resolved


def content_type(key: str) -> str:
    return CONTENT_TYPES.get(Path(key).suffix, "application/octet-stream")


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range to send, or None for the whole file.

    Follows RFC 9110 section 14: a header we do not understand (other units, several ranges, junk) is
    ignored and the whole file sent with 200, which every client handles; a well-formed range that
    starts past the end is ``RangeNotSatisfiable`` (416). Audio players send ``bytes=N-`` to seek.
    """
    if header is None:
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable("range asks for zero bytes", size)
        if size == 0:
            raise RangeNotSatisfiable("range asks for bytes of an empty file", size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid range-spec: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(f"range starts past the end of the file ({size} bytes)", size)
    return ByteRange(start, min(end, size - 1))
