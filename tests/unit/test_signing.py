"""The signature matrix for ``signing.verify``/``signing.sign``, with the vendor SDK as an oracle."""

import hashlib
import hmac
import random
import time

import pytest
from elevenlabs.client import ElevenLabs
from elevenlabs.errors import BadRequestError
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.domain import signing
from services.core.domain.errors import InvalidSignature
from tests.support import ALL_FIXTURES, SECRET, TRANSCRIPTION, fixture_bytes

NOW = 1_751_802_025
BODY = fixture_bytes(TRANSCRIPTION)
OTHER_SECRET = "wsec_the_next_secret_during_rotation"
MINUTE = 60


def _hex(body: bytes, secret: str, timestamp: int) -> str:
    """The v0 value computed independently of the code under test."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _verify(header: str | None, body: bytes = BODY, secrets: tuple[str, ...] = (SECRET,), now: float = NOW) -> int:
    return signing.verify(body, header, list(secrets), now)


# --- sign ---------------------------------------------------------------------------------------


def test_signing_sign_produces_the_documented_header() -> None:
    assert signing.sign(BODY, SECRET, NOW) == f"t={NOW},v0={_hex(BODY, SECRET, NOW)}"


def test_signing_sign_depends_on_body_secret_and_time() -> None:
    base = signing.sign(BODY, SECRET, NOW)
    assert signing.sign(BODY + b" ", SECRET, NOW) != base
    assert signing.sign(BODY, OTHER_SECRET, NOW) != base
    assert signing.sign(BODY, SECRET, NOW + 1) != base


# --- accepted -----------------------------------------------------------------------------------


def test_signing_verify_accepts_a_valid_signature_and_returns_its_timestamp() -> None:
    assert _verify(signing.sign(BODY, SECRET, NOW)) == NOW


@pytest.mark.parametrize(
    "offset",
    [0, -29 * MINUTE, -30 * MINUTE, 4 * MINUTE, 5 * MINUTE],
    ids=["now", "29min-old", "exactly-30min-old", "4min-ahead", "exactly-5min-ahead"],
)
def test_signing_verify_accepts_timestamps_inside_the_window(offset: int) -> None:
    assert _verify(signing.sign(BODY, SECRET, NOW + offset)) == NOW + offset


def test_signing_verify_accepts_when_the_first_of_several_v0_matches() -> None:
    good = _hex(BODY, SECRET, NOW)
    assert _verify(f"t={NOW},v0={good},v0={'0' * 64}") == NOW


def test_signing_verify_accepts_when_the_last_of_several_v0_matches() -> None:
    good = _hex(BODY, SECRET, NOW)
    assert _verify(f"t={NOW},v0={'0' * 64},v0={_hex(BODY, 'nope', NOW)},v0={good}") == NOW


@pytest.mark.parametrize("signer", [SECRET, OTHER_SECRET], ids=["old-secret", "new-secret"])
def test_signing_verify_accepts_any_configured_secret_during_rotation(signer: str) -> None:
    header = signing.sign(BODY, signer, NOW)
    assert _verify(header, secrets=(SECRET, OTHER_SECRET)) == NOW


def test_signing_verify_rotation_still_rejects_a_third_secret() -> None:
    header = signing.sign(BODY, "wsec_retired_long_ago", NOW)
    with pytest.raises(InvalidSignature):
        _verify(header, secrets=(SECRET, OTHER_SECRET))


@pytest.mark.parametrize(
    "template",
    [
        "t={t}, v0={v}",
        " t={t} , v0={v} ",
        "t = {t},v0 = {v}",
        "\tt={t},\tv0={v}\t",
        "v0={v},t={t}",
    ],
    ids=["space-after-comma", "spaces-around-parts", "spaces-around-equals", "tabs", "v0-first"],
)
def test_signing_verify_accepts_whitespace_and_order_variants(template: str) -> None:
    assert _verify(template.format(t=NOW, v=_hex(BODY, SECRET, NOW))) == NOW


def test_signing_verify_accepts_uppercase_hex() -> None:
    assert _verify(f"t={NOW},v0={_hex(BODY, SECRET, NOW).upper()}") == NOW


def test_signing_verify_ignores_unknown_parts() -> None:
    assert _verify(f"t={NOW},v1=whatever,v0={_hex(BODY, SECRET, NOW)},x") == NOW


# --- rejected -----------------------------------------------------------------------------------


def test_signing_verify_rejects_a_tampered_body() -> None:
    header = signing.sign(BODY, SECRET, NOW)
    tampered = BODY.replace(b"+16125550142", b"+16125550143", 1)
    assert tampered != BODY
    with pytest.raises(InvalidSignature):
        _verify(header, body=tampered)


def test_signing_verify_rejects_one_extra_byte() -> None:
    with pytest.raises(InvalidSignature):
        _verify(signing.sign(BODY, SECRET, NOW), body=BODY + b"\n")


def test_signing_verify_rejects_a_wrong_secret() -> None:
    with pytest.raises(InvalidSignature):
        _verify(signing.sign(BODY, "wsec_someone_else", NOW))


def test_signing_verify_rejects_when_no_secret_is_configured() -> None:
    with pytest.raises(InvalidSignature):
        _verify(signing.sign(BODY, SECRET, NOW), secrets=())


def test_signing_verify_rejects_a_signature_for_another_timestamp() -> None:
    # The v0 of NOW under a header claiming NOW+1: the timestamp is covered by the MAC.
    with pytest.raises(InvalidSignature):
        _verify(f"t={NOW + 1},v0={_hex(BODY, SECRET, NOW)}")


@pytest.mark.parametrize(
    "offset",
    [-30 * MINUTE - 1, -31 * MINUTE, -24 * 60 * MINUTE, 5 * MINUTE + 1, 6 * MINUTE, 365 * 24 * 60 * MINUTE],
    ids=["30min-1s-old", "31min-old", "a-day-old", "5min-1s-ahead", "6min-ahead", "a-year-ahead"],
)
def test_signing_verify_rejects_timestamps_outside_the_window(offset: int) -> None:
    with pytest.raises(InvalidSignature):
        _verify(signing.sign(BODY, SECRET, NOW + offset))


def _good() -> str:
    return _hex(BODY, SECRET, NOW)


MALFORMED_HEADERS: list[tuple[str, str | None]] = [
    ("missing", None),
    ("empty", ""),
    ("only-spaces", "   "),
    ("abc", "abc"),
    ("commas", ",,,"),
    ("t-empty", "t="),
    ("equals", "="),
    ("v0-only", f"v0={_good()}"),
    ("t-only", f"t={NOW}"),
    ("t-empty-with-v0", f"t=,v0={_good()}"),
    ("t-non-numeric", f"t=abc,v0={_good()}"),
    ("t-plus-sign", f"t=+{NOW},v0={_good()}"),
    ("t-minus-sign", f"t=-{NOW},v0={_good()}"),
    ("t-decimal", f"t={NOW}.0,v0={_good()}"),
    ("t-exponent", f"t=1.7e9,v0={_good()}"),
    ("t-arabic-indic-digits", f"t=١٢٣,v0={_good()}"),
    ("t-fullwidth-digits", f"t={''.join(chr(0xFF10 + int(c)) for c in str(NOW))},v0={_good()}"),
    ("t-superscript-digits", f"t=¹²³,v0={_good()}"),
    ("t-underscored", f"t=1_751_802_025,v0={_good()}"),
    ("t-hex", f"t=0x{NOW:x},v0={_good()}"),
    ("t-13-digits", f"t={NOW:013d},v0={_good()}"),
    ("t-huge", f"t={'9' * 400},v0={_good()}"),
    ("v0-empty", f"t={NOW},v0="),
    ("v1-instead-of-v0", f"t={NOW},v1={_good()}"),
    ("uppercase-names", f"T={NOW},V0={_good()}"),
    ("semicolons", f"t={NOW};v0={_good()}"),
    ("v0-truncated", f"t={NOW},v0={_good()[:-1]}"),
    ("v0-prefixed", f"t={NOW},v0=sha256={_good()}"),
    ("v0-non-ascii", f"t={NOW},v0={_good()[:-1]}é"),
    ("v0-all-non-ascii", f"t={NOW},v0={'é' * 64}"),
    ("v0-emoji", f"t={NOW},v0=🔑"),
    ("v0-lone-surrogate", f"t={NOW},v0=\ud800"),
    ("v0-nul", f"t={NOW},v0={_good()}\x00"),
    ("very-long", f"t={NOW},v0={_good()}," + "v0=" + "a" * 100_000),
    ("many-parts", ",".join([f"t={NOW}"] + ["v0=00"] * 5000)),
    ("newline-split", f"t={NOW}\nv0={_good()}"),
]


@pytest.mark.parametrize(("label", "header"), MALFORMED_HEADERS, ids=[label for label, _ in MALFORMED_HEADERS])
def test_signing_verify_rejects_malformed_headers_with_invalid_signature_only(label: str, header: str | None) -> None:
    with pytest.raises(InvalidSignature):
        _verify(header)


# --- property: nothing but InvalidSignature escapes ---------------------------------------------


_part_text = st.text(max_size=80)
_headers = st.one_of(
    st.text(max_size=300),
    st.builds(lambda t, v: f"t={t},v0={v}", _part_text, _part_text),
    st.builds(lambda v: f"t={NOW},v0={v}", _part_text),
    st.builds(lambda t: f"t={t},v0={_good()}", _part_text),
    st.lists(st.sampled_from([f"t={NOW}", f"v0={_good()}", "v0=", "t=", "=", ",", " ", "x=y"]), max_size=8).map(
        ",".join
    ),
)


@settings(max_examples=400, deadline=None, database=None)
@given(header=_headers, body=st.binary(max_size=64))
def test_signing_verify_property_never_raises_anything_but_invalid_signature(header: str, body: bytes) -> None:
    try:
        result = signing.verify(body, header, [SECRET], NOW)
    except InvalidSignature:
        return
    # Accepted: then it really was signed for this body (only possible with the fixed body and header parts).
    assert result == NOW
    assert _hex(body, SECRET, NOW) in header.lower()


@settings(max_examples=150, deadline=None, database=None)
@given(
    body=st.binary(max_size=256),
    secret=st.text(min_size=1, max_size=40),
    offset=st.integers(-30 * MINUTE, 5 * MINUTE),
)
def test_signing_sign_then_verify_roundtrips_and_any_flipped_byte_fails(body: bytes, secret: str, offset: int) -> None:
    header = signing.sign(body, secret, NOW + offset)
    assert signing.verify(body, header, [secret], NOW) == NOW + offset
    tampered = body + b"x" if not body else bytes([body[0] ^ 0x01]) + body[1:]
    with pytest.raises(InvalidSignature):
        signing.verify(tampered, header, [secret], NOW)


def test_signing_verify_random_garbage_headers_with_fixed_seed() -> None:
    # Complements hypothesis with long inputs and the characters a header value can carry.
    rng = random.Random(20250706)
    alphabet = "tv0=, .-+\t\x00\u00e9\u0661" + "0123456789abcdef"
    for _ in range(2000):
        header = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5000 if rng.random() < 0.05 else 60)))
        with pytest.raises(InvalidSignature):
            signing.verify(BODY, header, [SECRET], NOW)


# --- the official SDK as an oracle --------------------------------------------------------------

_SDK = ElevenLabs(api_key="unused-no-network").webhooks


def _sdk_accepts(body: bytes, header: str, secret: str) -> bool:
    try:
        _SDK.construct_event(body.decode("utf-8"), header, secret)
    except BadRequestError:
        return False
    return True


def _ours_accepts(body: bytes, header: str, secret: str, now: float) -> bool:
    try:
        signing.verify(body, header, [secret], now)
    except InvalidSignature:
        return False
    return True


ORACLE_CASES = [
    # (id, signing secret, age in seconds, tamper the body?, expected verdict)
    ("valid", SECRET, 0, False, True),
    ("valid-29-min-old", SECRET, 29 * MINUTE, False, True),
    ("tampered-body", SECRET, 0, True, False),
    ("wrong-secret", "wsec_not_ours", 0, False, False),
    ("31-min-old", SECRET, 31 * MINUTE, False, False),
    ("a-day-old", SECRET, 24 * 60 * MINUTE, False, False),
]


@pytest.mark.parametrize(
    ("signer", "age", "tamper", "expected"),
    [case[1:] for case in ORACLE_CASES],
    ids=[case[0] for case in ORACLE_CASES],
)
def test_signing_verify_agrees_with_the_elevenlabs_sdk(signer: str, age: int, tamper: bool, expected: bool) -> None:
    # The SDK reads the wall clock itself, so both verdicts use the real time (margins are minutes).
    now = time.time()
    header = signing.sign(BODY, signer, int(now) - age)
    body = BODY.replace(b"16125550142", b"16125550143", 1) if tamper else BODY
    assert (body != BODY) == tamper
    sdk = _sdk_accepts(body, header, SECRET)
    ours = _ours_accepts(body, header, SECRET, now)
    assert sdk == expected, "the SDK oracle did not behave as documented"
    assert ours == sdk


def test_signing_sign_output_is_accepted_by_the_sdk_for_every_fixture_body() -> None:
    now = int(time.time())
    for name in ALL_FIXTURES:
        body = fixture_bytes(name)
        assert _sdk_accepts(body, signing.sign(body, SECRET, now), SECRET), name


# --- streaming: the header first, the body chunk by chunk ---------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096, len(BODY)], ids=lambda n: f"chunks-of-{n}")
def test_signing_streamed_verification_agrees_with_verify_for_any_chunking(chunk: int) -> None:
    header = signing.sign(BODY, SECRET, NOW)
    verification = signing.begin(header, [SECRET], NOW)
    for start in range(0, len(BODY), chunk):
        verification.update(BODY[start : start + chunk])
    assert verification.finish() == NOW == _verify(header)
    assert verification.size == len(BODY)


@pytest.mark.parametrize("signer", [SECRET, OTHER_SECRET], ids=["old-secret", "new-secret"])
def test_signing_streamed_verification_keeps_rotation(signer: str) -> None:
    verification = signing.begin(signing.sign(BODY, signer, NOW), [SECRET, OTHER_SECRET], NOW)
    verification.update(BODY[:100])
    verification.update(BODY[100:])
    assert verification.finish() == NOW


def test_signing_streamed_verification_rejects_a_tampered_or_truncated_body() -> None:
    header = signing.sign(BODY, SECRET, NOW)
    truncated = signing.begin(header, [SECRET], NOW)
    truncated.update(BODY[:-1])
    with pytest.raises(InvalidSignature):
        truncated.finish()
    tampered = signing.begin(header, [SECRET], NOW)
    tampered.update(BODY.replace(b"+16125550142", b"+16125550143", 1))
    with pytest.raises(InvalidSignature):
        tampered.finish()


@pytest.mark.parametrize(("label", "header"), MALFORMED_HEADERS, ids=[label for label, _ in MALFORMED_HEADERS])
def test_signing_begin_refuses_a_bad_header_before_any_body(label: str, header: str | None) -> None:
    # Every header verify() refuses without looking at the body is refused by begin() alone, except
    # the ones whose only fault is a v0 that does not match (that needs the body).
    try:
        verification = signing.begin(header, [SECRET], NOW)
    except InvalidSignature:
        return
    verification.update(BODY)
    with pytest.raises(InvalidSignature, match="does not match"):
        verification.finish()


@pytest.mark.parametrize(
    "offset", [-30 * MINUTE - 1, 5 * MINUTE + 1], ids=["older-than-30-min", "more-than-5-min-ahead"]
)
def test_signing_begin_refuses_an_expired_header_without_the_body(offset: int) -> None:
    with pytest.raises(InvalidSignature):
        signing.begin(f"t={NOW + offset},v0={'0' * 64}", [SECRET], NOW)


def test_signing_begin_refuses_when_no_secret_can_match() -> None:
    verification = signing.begin(signing.sign(BODY, SECRET, NOW), [], NOW)
    verification.update(BODY)
    with pytest.raises(InvalidSignature):
        verification.finish()
