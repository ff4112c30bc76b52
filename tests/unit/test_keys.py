"""Archive keys: a golden table, and conversation ids that must never reach a key."""

import pytest

from services.core.domain import keys
from services.core.domain.errors import InvalidPayload

CONV = "conv_01jzfrjvcce0vsea1fcbpp9p04"

GOLDEN = [
    (keys.transcript_key, ("16125550142", CONV), "16125550142/conv_01jzfrjvcce0vsea1fcbpp9p04.json"),
    (keys.audio_key, ("16125550142", CONV), "16125550142/conv_01jzfrjvcce0vsea1fcbpp9p04.mp3"),
    (keys.transcript_key, ("919663100122", "c"), "919663100122/c.json"),
    (keys.transcript_key, ("unknown", CONV), "unknown/conv_01jzfrjvcce0vsea1fcbpp9p04.json"),
    (keys.audio_key, ("unknown", "A-z_9"), "unknown/A-z_9.mp3"),
    (keys.pending_audio_key, (CONV,), "_pending-audio/conv_01jzfrjvcce0vsea1fcbpp9p04.mp3"),
]


@pytest.mark.parametrize(("build", "args", "expected"), GOLDEN, ids=[g[2] for g in GOLDEN])
def test_keys_golden_table(build, args, expected: str) -> None:
    assert build(*args) == expected


@pytest.mark.parametrize(
    ("e164", "expected"),
    [("+16125550142", "16125550142"), ("+919663100122", "919663100122"), (None, "unknown")],
)
def test_keys_phone_prefix(e164: str | None, expected: str) -> None:
    assert keys.phone_prefix(e164) == expected


def test_keys_pending_audio_never_shares_a_prefix_with_a_phone_or_unknown() -> None:
    pending = keys.pending_audio_key(CONV)
    assert not pending.startswith(keys.UNKNOWN_PHONE_PREFIX + "/")
    assert not pending.split("/")[0].isdigit()


BAD_IDS: list[object] = [
    "../x",
    "..",
    ".",
    "a/b",
    "/abs",
    "a\\b",
    "a\x00b",
    "",
    "a" * 129,
    "conv id",
    "conv\n",
    "conv\t1",
    "conv.json",
    "convé",
    "conv\u0661",  # an Arabic-Indic digit
    "%2e%2e",
    None,
    123,
    1.5,
    b"conv_1",
    ["conv_1"],
    {"id": "conv_1"},
]


@pytest.mark.parametrize("value", BAD_IDS, ids=[repr(v)[:24] for v in BAD_IDS])
def test_keys_check_conversation_id_rejects(value: object) -> None:
    with pytest.raises(InvalidPayload):
        keys.check_conversation_id(value)


@pytest.mark.parametrize("value", [v for v in BAD_IDS if isinstance(v, str)], ids=lambda v: repr(v)[:24])
def test_keys_builders_refuse_bad_ids(value: str) -> None:
    for build in (lambda: keys.transcript_key("16125550142", value), lambda: keys.audio_key("unknown", value)):
        with pytest.raises(InvalidPayload):
            build()
    with pytest.raises(InvalidPayload):
        keys.pending_audio_key(value)


@pytest.mark.parametrize("value", [CONV, "a", "a" * 128, "A-z_9", "0" * 128, "-", "_"], ids=lambda v: v[:24])
def test_keys_check_conversation_id_accepts(value: str) -> None:
    assert keys.check_conversation_id(value) == value
    assert keys.transcript_key("unknown", value) == f"unknown/{value}.json"
