"""Stateless console sessions: a signed, expiring cookie naming the key it was opened with.

Nothing is stored server-side (it works the same on Lambda): the cookie is
``base64url(json{k: key id, s: session id, e: expiry}) "." base64url(HMAC-SHA256)`` under a key derived
from the signing key. Every request looks the key id up again, so a revoked key (or a changed role)
counts at once. CSRF tokens are HMACs of the session id; the sign-in form, which has no session yet,
uses a signed double-submit cookie. Comparisons go through the one constant-time matcher.
"""

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from services.core.domain.matching import matches_any

SESSION_COOKIE = "cv_session"
SIGNIN_COOKIE = "cv_signin"
SESSION_TTL_SECS = 8 * 3600
SIGNIN_TTL_SECS = 3600
MAX_COOKIE_CHARS = 1024
_LOCAL_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    key_id: str
    session_id: str
    expires_at: int


class SignedOutSessions(Protocol):
    """Session ids signed out before their expiry: a cookie is stateless, so sign-out must be remembered."""

    def add(self, session_id: str, expires_at: int) -> None: ...

    def __contains__(self, session_id: object) -> bool: ...


class MemorySignedOutSessions:
    """Per process: enough for tests; on Lambda only the instance that signed out knows (docs/console.md)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def add(self, session_id: str, expires_at: int) -> None:
        now = self._clock()
        with self._lock:
            self._ids = {sid: at for sid, at in self._ids.items() if at > now}  # expired cookies fail anyway
            self._ids[session_id] = expires_at

    def __contains__(self, session_id: object) -> bool:
        with self._lock:
            return session_id in self._ids


class FileSignedOutSessions(MemorySignedOutSessions):
    """``serve``: also appended to a file (owner-only; ``id expiry`` per line) and read back at start, so
    a restart does not revive a signed-out cookie. Nothing is written until someone signs out."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock)
        self._path = path
        now = clock()
        try:
            lines = path.read_text(encoding="ascii", errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            sid, _, at = line.partition(" ")
            if at.isdigit() and int(at) > now:
                self._ids[sid] = int(at)
        if len(self._ids) < len(lines):
            self._rewrite()  # expired entries are dropped at start, so the file stays as small as the list

    def _rewrite(self) -> None:
        tmp = self._path.with_name(f".tmp-{self._path.name}-{secrets.token_hex(8)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, "".join(f"{sid} {at}\n" for sid, at in self._ids.items()).encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._path)  # atomic: a crash leaves the old list or the new one
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()  # kept as it was: it only grows, and the next start tries again

    def add(self, session_id: str, expires_at: int) -> None:
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{session_id} {expires_at}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        super().add(session_id, expires_at)


class SessionCodec:
    def __init__(
        self,
        signing_key: bytes,
        *,
        ttl_secs: int = SESSION_TTL_SECS,
        clock: Callable[[], float] = time.time,
        signed_out: SignedOutSessions | None = None,
    ) -> None:
        # A key of its own: a session tag can never be replayed as a cursor or file-link signature.
        self._key = hmac.new(signing_key, b"callvault-console-session-v1", hashlib.sha256).digest()
        self.ttl_secs = ttl_secs
        self._clock = clock
        self._signed_out = signed_out if signed_out is not None else MemorySignedOutSessions(clock)

    def _tag(self, purpose: bytes, payload: bytes) -> bytes:
        return hmac.new(self._key, purpose + b":" + payload, hashlib.sha256).digest()

    def issue(self, key_id: str) -> tuple[str, Session]:
        """A new session (a fresh random id every sign-in: no fixation) and its cookie value."""
        session = Session(key_id, secrets.token_hex(16), int(self._clock()) + self.ttl_secs)
        payload = orjson.dumps({"k": session.key_id, "s": session.session_id, "e": session.expires_at})
        return f"{_b64(payload)}.{_b64(self._tag(b'session', payload))}", session

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie we signed that has not expired, else None."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or cookie.count(".") != 1:
            return None
        body, tag = cookie.split(".")
        try:
            payload, presented = _unb64(body), _unb64(tag)
        except (binascii.Error, ValueError):
            return None
        if not matches_any(presented, [self._tag(b"session", payload)]):
            return None
        try:
            values = orjson.loads(payload)
            session = Session(str(values["k"]), str(values["s"]), int(values["e"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None
        if session.expires_at <= self._clock() or session.session_id in self._signed_out:
            return None
        return session

    def end(self, session: Session) -> None:
        """Sign-out: this session's cookie is refused from now on, wherever a copy of it is."""
        self._signed_out.add(session.session_id, session.expires_at)

    def csrf_token(self, session: Session) -> str:
        return _b64(self._tag(b"csrf", session.session_id.encode("ascii")))

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and matches_any(
            (token or "").encode("utf-8", "replace"), [self.csrf_token(session).encode()]
        )

    def signin_token(self, cookie: str | None = None) -> tuple[str, str]:
        """``(cookie value, form token)`` for the sign-in form's double submit. The token of the browser's
        own valid cookie is kept (its expiry renewed): a form still open in another tab keeps working."""
        token = self._signin_value(cookie) or secrets.token_urlsafe(16)
        expires = int(self._clock()) + SIGNIN_TTL_SECS
        signed = f"{token}.{expires}"
        return f"{signed}.{_b64(self._tag(b'signin', signed.encode()))}", token

    def check_signin(self, cookie: str | None, token: str | None) -> bool:
        value = self._signin_value(cookie)
        return (
            value is not None
            and bool(token)
            and matches_any((token or "").encode("utf-8", "replace"), [value.encode()])
        )

    def _signin_value(self, cookie: str | None) -> str | None:
        """The token inside a sign-in cookie we signed that has not expired, else None."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or cookie.count(".") != 2:
            return None
        value, expires, tag = cookie.split(".")
        signed = f"{value}.{expires}"
        try:
            presented = _unb64(tag)
        except (binascii.Error, ValueError):
            return None
        if not matches_any(presented, [self._tag(b"signin", signed.encode())]):
            return None
        return value if expires.isdigit() and int(expires) > self._clock() else None


def safe_next(target: str | None, default: str = "/console/calls") -> str:
    """Where to go after signing in: a path on this site only (``/x``), never ``//host``, ``/\\host``,
    a scheme, or anything with control characters or spaces — no open redirect."""
    if target and len(target) <= 2048 and _LOCAL_PATH.fullmatch(target) and not _is_sign_form(target):
        return target
    return default


def _is_sign_form(target: str) -> bool:
    # Sign-out asked with an expired session comes back here as its target: after signing in,
    # a GET of the form's POST address would be a 405, and signing out again was not the point.
    return target.split("?", 1)[0].rstrip("/") in {"/console/signout", "/console/signin"}
