"""The order of a call's versions (services/core/domain/versions.py): every store keeps the same winner."""

import hashlib
import itertools

import pytest

from services.core.domain.versions import audio_version, call_version, compare

T0 = 1_751_802_037
TRANSCRIPT = "post_call_transcription"
FAILURE = "call_initiation_failure"
DOC = b'{"conversation_id":"conv_01jzfrjvcce0vsea1fcbpp9p04","status":"done"}'
OTHER_DOC = b'{"conversation_id":"conv_01jzfrjvcce0vsea1fcbpp9p04","status":"done","summary":"b"}'


def newest(*labels: str) -> str:
    """What a store ends with after writing every label in this order, keeping only "newer" ones."""
    stored: str | None = None
    for label in labels:
        if compare(label, stored) == "newer":
            stored = label
    assert stored is not None
    return stored


def test_versions_have_the_documented_shape() -> None:
    digest = hashlib.sha256(DOC).hexdigest()[:16]
    assert call_version(TRANSCRIPT, T0, DOC) == f"1.000{T0}.{digest}"
    assert call_version(FAILURE, T0, DOC) == f"0.000{T0}.{digest}"
    encoded = [b"SUQz", b"BAAA"]
    assert audio_version(T0, encoded) == f"000{T0}.{hashlib.sha256(b'SUQzBAAA').hexdigest()[:16]}"


@pytest.mark.parametrize("failure_at", [T0 - 10_000, T0, T0 + 1, T0 + 10**9])
def test_a_transcript_beats_a_failure_whatever_the_timestamps(failure_at: int) -> None:
    transcript = call_version(TRANSCRIPT, T0, DOC)
    failure = call_version(FAILURE, failure_at, OTHER_DOC)

    assert compare(transcript, failure) == "newer"
    assert compare(failure, transcript) == "older"
    assert newest(transcript, failure) == newest(failure, transcript) == transcript


def test_a_transcript_without_a_timestamp_still_beats_a_failure() -> None:
    assert compare(call_version(TRANSCRIPT, None, DOC), call_version(FAILURE, T0, DOC)) == "newer"


@pytest.mark.parametrize("event_type", [TRANSCRIPT, FAILURE])
def test_within_a_kind_the_later_timestamp_wins(event_type: str) -> None:
    # Digests chosen so the earlier event has the larger one: the timestamp must decide first.
    earlier_doc, later_doc = sorted((DOC, OTHER_DOC), key=lambda d: hashlib.sha256(d).hexdigest(), reverse=True)
    earlier = call_version(event_type, T0, earlier_doc)
    later = call_version(event_type, T0 + 1, later_doc)

    assert compare(later, earlier) == "newer" and compare(earlier, later) == "older"
    assert newest(earlier, later) == newest(later, earlier) == later


def test_timestamps_compare_as_numbers_across_digit_counts() -> None:
    """Zero-padded to 13 digits: text order is numeric order, from 0 (imports) to millisecond clocks."""
    stamps = [None, 0, 9, 10, 999_999_999, 1_000_000_000, T0, 9_999_999_999, 1_751_802_037_000]
    labels = [call_version(TRANSCRIPT, at, DOC) for at in stamps]
    assert labels == sorted(labels)
    audio = [audio_version(at, [b"SUQz"]) for at in stamps]
    assert audio == sorted(audio)


def test_a_webhook_beats_an_import_without_a_timestamp() -> None:
    imported = call_version(TRANSCRIPT, None, OTHER_DOC)
    assert compare(call_version(TRANSCRIPT, 1, DOC), imported) == "newer"


def test_equal_timestamps_with_different_content_have_one_winner_in_any_order() -> None:
    docs = [DOC, OTHER_DOC, DOC + b" ", b"{}"]
    labels = [call_version(TRANSCRIPT, T0, doc) for doc in docs]
    winner = max(labels)  # the largest digest
    assert winner == call_version(TRANSCRIPT, T0, max(docs, key=lambda d: hashlib.sha256(d).hexdigest()))

    for order in itertools.permutations(labels):
        assert newest(*order) == winner
    for label in labels:
        if label != winner:
            assert (compare(label, winner), compare(winner, label)) == ("older", "newer")


def test_equal_timestamps_with_different_audio_have_one_winner() -> None:
    first, second = audio_version(T0, [b"SUQzAAAA"]), audio_version(T0, [b"SUQzBBBB"])
    assert first != second
    assert newest(first, second) == newest(second, first) == max(first, second)


def test_the_same_content_is_the_same_version() -> None:
    assert compare(call_version(TRANSCRIPT, T0, DOC), call_version(TRANSCRIPT, T0, bytes(DOC))) == "same"
    # Audio is hashed as it streams: however the base64 text is chunked, the label is one.
    whole = audio_version(T0, [b"SUQzBAAAAAAAAA=="])
    assert whole == audio_version(T0, [b"SUQz", b"", b"BAAAAAAAAA=="])
    assert compare(whole, whole) == "same"


def test_the_same_content_at_another_time_or_kind_is_not_the_same() -> None:
    transcript = call_version(TRANSCRIPT, T0, DOC)
    assert compare(call_version(TRANSCRIPT, T0 + 1, DOC), transcript) == "newer"
    assert compare(call_version(FAILURE, T0, DOC), transcript) == "older"


def test_anything_is_newer_than_nothing_stored() -> None:
    """``None``: no object yet, or one written before versions (a legacy row or an aws s3 sync)."""
    assert compare(call_version(FAILURE, None, b""), None) == "newer"
    assert compare(audio_version(None, []), None) == "newer"
