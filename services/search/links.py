"""Download links for archived objects: the ``LinkSigner`` port and its two adapters.

- ``S3LinkSigner``: SigV4 presigned GET URLs (AWS). S3 checks them; nothing of ours is on the path.
- ``HmacLinkSigner``: the local twin. ``/files/<key>?expires=&filename=&signature=`` where the
  signature is an HMAC over method, key, expiry and filename, checked by the local app's ``/files``
  route exactly the way S3 checks a presigned URL: no API key, 403 when altered, expired, or moved
  to another key.

Both return root-relative or absolute URLs; the HTTP edge makes a relative one absolute with the
address the request came in on (see ``absolute_url``).
"""

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import quote, urlencode

from services.core.domain.errors import Forbidden

from .cursor import derive_key

FILES_PREFIX = "/files/"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._+-]")
_MAX_FILENAME_CHARS = 200


@dataclass(frozen=True)
class SignedLink:
    url: str
    expires_at: int  # unix seconds


class LinkSigner(Protocol):
    """Makes a time-limited GET link to one archived object that downloads as ``filename``."""

    def sign(self, key: str, expires_in: int, filename: str) -> SignedLink: ...


@runtime_checkable
class Presigner(Protocol):
    """What ``S3BlobStore`` offers: a local SigV4 signature, no request made."""

    def presign_get(self, key: str, expires_in: int, filename: str) -> str: ...


class S3LinkSigner:
    def __init__(self, presigner: Presigner, clock: Callable[[], float]) -> None:
        self.presigner = presigner
        self.clock = clock

    def sign(self, key: str, expires_in: int, filename: str) -> SignedLink:
        expires_at = int(self.clock()) + expires_in
        return SignedLink(self.presigner.presign_get(key, expires_in, filename), expires_at)


def safe_filename(filename: str) -> str:
    """What ``Content-Disposition`` may carry without quoting trouble (same rule as the S3 adapter)."""
    return _UNSAFE_FILENAME.sub("_", filename)[:_MAX_FILENAME_CHARS] or "download"


class HmacLinkSigner:
    """Signs and verifies local file links with a key derived from the signing key."""

    def __init__(self, signing_key: bytes, clock: Callable[[], float], prefix: str = FILES_PREFIX) -> None:
        if not signing_key.strip():
            raise ValueError("an empty signing key would let anyone sign links")
        self._key = derive_key(signing_key, "file-link")
        self.clock = clock
        self.prefix = prefix

    def sign(self, key: str, expires_in: int, filename: str) -> SignedLink:
        expires_at = int(self.clock()) + expires_in
        name = safe_filename(filename)
        query = urlencode({"expires": expires_at, "filename": name, "signature": self._mac(key, expires_at, name)})
        return SignedLink(f"{self.prefix}{quote(key, safe='/')}?{query}", expires_at)

    def verify(self, key: str, expires: str | None, filename: str | None, signature: str | None) -> str:
        """Return the filename to download as, or raise ``Forbidden`` like S3 would (signature first,
        so an attacker learns nothing about expiry or existence from a forged link)."""
        if not expires or not filename or not signature:
            raise Forbidden("link is not signed: expires, filename and signature are required")
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or not signature.isascii():
            raise Forbidden("link signature does not match")
        expected = self._mac(key, expires, filename)  # the text as sent: "0123" is not the link's "123"
        if not hmac.compare_digest(expected, signature):
            raise Forbidden("link signature does not match")
        if int(expires) < int(self.clock()):  # whole seconds, as the link states its expiry
            raise Forbidden("link has expired; ask the API for a new one")
        return filename

    def _mac(self, key: str, expires_at: int | str, filename: str) -> str:
        message = f"GET\n{key}\n{expires_at}\n{filename}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()


def absolute_url(url: str, base_url: str) -> str:
    """Presigned S3 URLs are absolute already; local ``/files/...`` links get the server's base URL."""
    if url.startswith("/"):
        return base_url.rstrip("/") + url
    return url
