"""Pagination cursors: opaque to clients, tamper-evident, bound to the query that issued them.

A cursor is ``base64url(json({"v", "q", "p"})) + "." + base64url(hmac_sha256)``: ``p`` is the index
adapter's own position (``CallPage.next``), ``q`` a fingerprint of the normalised filters. The MAC
makes any edit a 400 before the position reaches the index (so a forged position can never become a
different query or a 500), and the fingerprint makes a cursor presented with other filters a 400
instead of silently continuing some other walk. ``limit`` is not part of the fingerprint: a client
may change its page size mid-walk without losing its place.
"""

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson

from services.core.domain.errors import InvalidCursor

from .params import CallFilters

VERSION = 1
MAX_CURSOR_CHARS = 2048
_INVALID = "cursor is not valid: pass back next_cursor unchanged, with the same filters"


def derive_key(signing_key: bytes, purpose: str) -> bytes:
    """One key per purpose from the configured signing key, so a cursor MAC can never pass as a
    file-link signature (or the reverse) even though both come from one secret."""
    return hmac.new(signing_key, b"callvault/" + purpose.encode("ascii"), hashlib.sha256).digest()


class CursorCodec:
    def __init__(self, signing_key: bytes) -> None:
        self._key = derive_key(signing_key, "cursor")

    def encode(self, position: dict[str, Any], filters: CallFilters) -> str:
        body = orjson.dumps({"v": VERSION, "q": fingerprint(filters), "p": position}, option=orjson.OPT_SORT_KEYS)
        payload = _b64(body)
        return f"{payload}.{_b64(self._mac(payload))}"

    def decode(self, cursor: str, filters: CallFilters) -> dict[str, Any]:
        """The position inside ``cursor``, or ``InvalidCursor`` when it was altered, forged, truncated
        or issued for other filters."""
        if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
            raise InvalidCursor(_INVALID)
        payload, sep, tag = cursor.partition(".")
        if not sep:
            raise InvalidCursor(_INVALID)
        # Compare the text, not decoded bytes: base64 decoders ignore stray characters and spare
        # bits, and an edited cursor must fail even when it decodes to the same tag.
        if not hmac.compare_digest(_b64(self._mac(payload)), tag):
            raise InvalidCursor(_INVALID)
        try:
            body = orjson.loads(_unb64(payload))
        except (ValueError, orjson.JSONDecodeError):
            raise InvalidCursor(_INVALID) from None  # signed by us but unreadable: a version we no longer read
        if not isinstance(body, dict) or body.get("v") != VERSION or not isinstance(body.get("p"), dict):
            raise InvalidCursor(_INVALID)
        if not hmac.compare_digest(str(body.get("q")), fingerprint(filters)):
            raise InvalidCursor("cursor belongs to a search with other filters; start again without a cursor")
        position: dict[str, Any] = body["p"]
        return position

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()


def fingerprint(filters: CallFilters) -> str:
    canonical = orjson.dumps(filters.as_dict(), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
