"""ElevenLabs webhook signatures: ``ElevenLabs-Signature: t=<unix secs>,v0=<hex hmac-sha256>``.

The HMAC covers ``f"{t}.".encode() + raw_body`` with the webhook secret as key. We verify the raw
bytes before anything parses them, compare in constant time, accept any matching ``v0`` (so a
sender can rotate secrets), and never raise anything but ``InvalidSignature`` on bad input.

Because the header carries ``t``, the check splits in two: ``begin`` reads the header (missing,
malformed, expired: refused before a byte of the body is read), then ``Verification.update`` takes
the body chunk by chunk as it arrives and ``finish`` compares. A server therefore never has to hold
an unauthenticated body to verify it. ``verify`` is the one-call form for bodies already in memory.
"""

import hashlib
import hmac
from collections.abc import Iterable

from .errors import InvalidSignature, SignatureMismatch
from .matching import matches_any

HEADER = "ElevenLabs-Signature"
MAX_AGE_SECS = 30 * 60
MAX_FUTURE_SECS = 5 * 60
_MAX_HEADER_LEN = 4096


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The header value a sender with ``secret`` would send at ``timestamp`` (tests and `callvault sign`)."""
    mac = _mac(secret, str(timestamp))
    mac.update(body)
    return f"t={timestamp},v0={mac.hexdigest()}"


def _mac(secret: str, timestamp: str) -> "hmac.HMAC":
    return hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b".", hashlib.sha256)


class Verification:
    """One body's signature check in progress: feed it the raw body with ``update``, then ``finish``."""

    def __init__(self, timestamp: str, candidates: list[str], secrets: Iterable[str]) -> None:
        self.signed_at = int(timestamp)
        self._candidates = candidates
        self._macs = [_mac(secret, timestamp) for secret in secrets]  # one per secret: rotation
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        for mac in self._macs:
            mac.update(chunk)

    def finish(self) -> int:
        """Return the signed timestamp, or raise ``InvalidSignature`` when no ``v0`` matches any secret."""
        # Bytes, so non-ascii candidates cannot match and must not raise; every pair compared.
        presented = [candidate.encode("utf-8", "replace") for candidate in self._candidates]
        matched = False
        for mac in self._macs:
            matched |= matches_any(mac.hexdigest().encode("ascii"), presented)
        if not matched:
            raise SignatureMismatch("signature does not match")
        return self.signed_at


def begin(header: str | None, secrets: Iterable[str], now: float) -> Verification:
    """Check the header alone (present, well formed, inside the time window): ``InvalidSignature`` if not."""
    if not header:
        raise InvalidSignature("missing ElevenLabs-Signature header")
    if len(header) > _MAX_HEADER_LEN:
        raise InvalidSignature("malformed ElevenLabs-Signature header")
    timestamp: str | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        name, value = name.strip(), value.strip()
        if name == "t":
            timestamp = value
        elif name == "v0":
            candidates.append(value.lower())
    if timestamp is None or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise InvalidSignature("malformed ElevenLabs-Signature header: t must be unix seconds")
    if not candidates:
        raise InvalidSignature("malformed ElevenLabs-Signature header: no v0 signature")
    signed_at = int(timestamp)
    if signed_at < now - MAX_AGE_SECS:
        raise InvalidSignature("signature timestamp is older than 30 minutes")
    if signed_at > now + MAX_FUTURE_SECS:
        raise InvalidSignature("signature timestamp is more than 5 minutes in the future")
    return Verification(timestamp, candidates, [secret for secret in secrets if secret])  # "" signs nothing


def verify(body: bytes, header: str | None, secrets: Iterable[str], now: float) -> int:
    """Return the signed timestamp, or raise ``InvalidSignature``. ``secrets`` lists every accepted secret."""
    verification = begin(header, secrets, now)
    verification.update(body)
    return verification.finish()
