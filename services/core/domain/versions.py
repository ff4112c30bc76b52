"""The order of the versions of one call: which event's content the archive, index and analytics keep.

Every call-level event and every audio event gets a version label that sorts as plain text, so each
store can keep "the newest" with its own conditional write (S3 If-Match on an object whose metadata
holds the label, a DynamoDB or SQLite condition on the row's label), never by read-modify-write:

    call:  "<kind>.<event_timestamp, 13 digits>.<sha256 of the stored bytes, 16 hex>"
    audio: "<event_timestamp, 13 digits>.<sha256 of the base64 text, 16 hex>"

``kind`` puts a transcript (1) above an initiation failure (0) whatever their timestamps: a failure
report never replaces a conversation that happened. Within a kind the later ``event_timestamp`` wins;
equal timestamps with different content are ordered by the digest, so every store picks the same
winner whatever order the deliveries arrive in, and a redelivery of identical content is "same".
Imports without a timestamp count as 0: a webhook always wins over a saved file.
"""

import hashlib
from collections.abc import Iterable
from typing import Literal

TRANSCRIPT_KIND = 1
FAILURE_KIND = 0
_DIGEST_CHARS = 16
_TIME_DIGITS = 13

Comparison = Literal["newer", "same", "older"]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:_DIGEST_CHARS]


def call_version(event_type: str, event_at: int | None, document: bytes) -> str:
    kind = FAILURE_KIND if event_type == "call_initiation_failure" else TRANSCRIPT_KIND
    return f"{kind}.{(event_at or 0):0{_TIME_DIGITS}d}.{_digest(document)}"


def audio_version(event_at: int | None, encoded: Iterable[bytes]) -> str:
    """``encoded``: the base64 text in chunks (hashed as it comes, never joined)."""
    digest = hashlib.sha256()
    for chunk in encoded:
        digest.update(chunk)
    return f"{(event_at or 0):0{_TIME_DIGITS}d}.{digest.hexdigest()[:_DIGEST_CHARS]}"


# Audio fetched from the Conversations API (services/sync): streamed, so no digest is known before the
# write. It sorts below every audio webhook (timestamp 0) and equals itself: a refetch is a no-op.
API_AUDIO_VERSION = f"{0:0{_TIME_DIGITS}d}.{'0' * _DIGEST_CHARS}"

# The audio a retention rule removed (#13): sorts above every audio version ('~' after the digits),
# so no later audio event or fetch of that call writes audio again.
AUDIO_EXPIRED = "~expired"


def compare(mine: str, stored: str | None) -> Comparison:
    """How ``mine`` relates to what a store holds (``None``: nothing, or written before versions)."""
    if stored is None or mine > stored:
        return "newer"
    return "same" if mine == stored else "older"
