"""Tolerant reads of vendor JSON: the value if it has the expected type, else None (or {}).

Shared by every reader of ElevenLabs payloads (index, analytics, memory) so they agree on what a
malformed optional field means.
"""

import math
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what SQLite (and most consumers) can hold


def obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def text(value: object) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def integer(value: object) -> int | None:
    """An int (or integral float) that fits in 64 bits; bools are not numbers here."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return value
    return None


def whole_seconds(value: object) -> int | None:
    """Seconds as a whole number: a fraction (0.8 s into a call) is floored, as a clock shows it."""
    if isinstance(value, float) and math.isfinite(value) and INT64_MIN <= value <= INT64_MAX:
        return math.floor(value)
    return integer(value)


def number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
