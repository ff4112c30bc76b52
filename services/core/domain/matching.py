"""The one constant-time matcher for every kind of secret CallVault checks: API keys (by hash),
agent secrets, webhook signatures, session and CSRF tags.

Framework-free and in the domain so the ingest Lambda (no FastAPI) and every web face share it.
"""

import hmac
from collections.abc import Iterable


def matches_any(presented: bytes, stored: Iterable[bytes]) -> bool:
    """True when ``presented`` equals one of ``stored``. Every candidate is compared, with no early
    exit, so the time taken does not reveal which one matched (or how many there are before it)."""
    matched = False
    for candidate in stored:
        matched |= hmac.compare_digest(presented, candidate)
    return matched


def index_of_match(presented: bytes, stored: Iterable[bytes]) -> int | None:
    """The position of the candidate ``presented`` equals (the first, if several), compared like
    ``matches_any``: every candidate, no early exit."""
    found: int | None = None
    for position, candidate in enumerate(stored):
        if hmac.compare_digest(presented, candidate) and found is None:
            found = position
    return found
