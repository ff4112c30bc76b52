"""Cursors: round trip, and every way of presenting one that we did not issue for this query is a 400."""

import base64
import json

import pytest

from services.core.domain.errors import InvalidCursor
from services.search.cursor import MAX_CURSOR_CHARS, CursorCodec, derive_key, fingerprint
from services.search.params import CallFilters, parse_filters

KEY = b"k" * 32
POSITION = {"started_at": 1751802015, "conversation_id": "conv_01jzfrjvcce0vsea1fcbpp9p04"}
FILTERS = CallFilters(phone="+16125550142", since=1751760000)


def test_search_cursor_round_trips_the_position() -> None:
    codec = CursorCodec(KEY)
    cursor = codec.encode(POSITION, FILTERS)
    assert codec.decode(cursor, FILTERS) == POSITION
    assert cursor.isascii() and "=" not in cursor and "+" not in cursor and "/" not in cursor  # URL-safe


def test_search_cursor_any_single_character_changed_is_refused() -> None:
    codec = CursorCodec(KEY)
    cursor = codec.encode(POSITION, FILTERS)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    for i, original in enumerate(cursor):
        replacement = alphabet[(alphabet.index(original) + 1) % len(alphabet)]
        tampered = cursor[:i] + replacement + cursor[i + 1 :]
        with pytest.raises(InvalidCursor):
            codec.decode(tampered, FILTERS)


def test_search_cursor_with_a_rewritten_position_and_no_valid_mac_is_refused() -> None:
    codec = CursorCodec(KEY)
    payload, _, tag = codec.encode(POSITION, FILTERS).partition(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["p"]["started_at"] = 9999999999  # jump ahead in the walk
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidCursor):
        codec.decode(f"{forged}.{tag}", FILTERS)


@pytest.mark.parametrize(
    "other",
    [
        CallFilters(phone="+16125550199", since=1751760000),
        CallFilters(phone="+16125550142"),
        CallFilters(phone="+16125550142", since=1751760000, status="done"),
        CallFilters(),
    ],
)
def test_search_cursor_presented_with_other_filters_is_refused(other: CallFilters) -> None:
    codec = CursorCodec(KEY)
    cursor = codec.encode(POSITION, FILTERS)
    with pytest.raises(InvalidCursor, match="other filters"):
        codec.decode(cursor, other)


def test_search_cursor_two_spellings_of_one_query_share_the_walk() -> None:
    codec = CursorCodec(KEY)
    typed = parse_filters(phone="(612) 555-0142", since="2025-07-06")
    canonical = parse_filters(phone="+16125550142", since="1751760000")
    assert fingerprint(typed) == fingerprint(canonical)
    assert codec.decode(codec.encode(POSITION, typed), canonical) == POSITION


def test_search_cursor_from_another_signing_key_is_refused() -> None:
    cursor = CursorCodec(b"a" * 32).encode(POSITION, FILTERS)
    with pytest.raises(InvalidCursor):
        CursorCodec(b"b" * 32).decode(cursor, FILTERS)


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "abc", "abc.", ".abc", "a.b.c", "not base64!.x", "é.é", "x" * (MAX_CURSOR_CHARS + 1), "%00.%00"],
)
def test_search_cursor_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidCursor):
        CursorCodec(KEY).decode(garbage, FILTERS)


def test_search_cursor_keys_are_separated_by_purpose() -> None:
    assert derive_key(KEY, "cursor") != derive_key(KEY, "file-link")
    assert len(derive_key(KEY, "cursor")) == 32
