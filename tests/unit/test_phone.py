"""Phone numbers: what platforms and people type, normalised to E.164; masks for logs."""

import pytest

from services.core.domain import phone

E164_CASES = [
    ("+16125550142", "+16125550142"),
    ("+1 612-555-0142", "+16125550142"),
    ("(612) 555-0142", "+16125550142"),
    ("612-555-0142", "+16125550142"),
    ("612.555.0142", "+16125550142"),
    ("16125550142", "+16125550142"),
    ("+9196631 00122", "+919663100122"),
    ("+44 20 7946 0958", "+442079460958"),
    ("+1612555 0177", "+16125550177"),
    ("  +16125550142  ", "+16125550142"),
    ("\t+1 612 555 0142\n", "+16125550142"),
    ("tel:+16125550142", "+16125550142"),
]


@pytest.mark.parametrize(("raw", "expected"), E164_CASES, ids=[repr(raw) for raw, _ in E164_CASES])
def test_phone_to_e164_normalises(raw: str, expected: str) -> None:
    assert phone.to_e164(raw) == expected


NOT_PHONES: list[object] = [
    "anonymous",
    "",
    "   ",
    "12",
    "12345",
    "client:abc",
    None,
    123,
    16125550142,
    1.5,
    b"+16125550142",
    ["+16125550142"],
    "+",
    "++1",
    "+0",
    "+1",
    "1" * 70,
    "+1" + "6" * 68,
    "+16125550142abc",
    "sip:+16125550142@sip.example.com",
]


@pytest.mark.parametrize("raw", NOT_PHONES, ids=[repr(raw)[:30] for raw in NOT_PHONES])
def test_phone_to_e164_returns_none_for_what_is_not_a_phone_number(raw: object) -> None:
    assert phone.to_e164(raw) is None


def test_phone_to_e164_reads_national_numbers_in_the_default_region() -> None:
    assert phone.to_e164("020 7946 0958", "GB") == "+442079460958"
    assert phone.to_e164("(612) 555-0142", "US") == "+16125550142"
    # An explicit country code wins over the default region.
    assert phone.to_e164("+16125550142", "GB") == "+16125550142"


def test_phone_to_e164_is_idempotent_on_its_own_output() -> None:
    for raw, _ in E164_CASES:
        first = phone.to_e164(raw)
        assert first is not None
        assert phone.to_e164(first) == first


MASK_CASES: list[tuple[str | None, str | None]] = [
    ("+16125550142", "*******0142"),
    ("+919663100122", "********0122"),
    ("+442079460958", "********0958"),
    ("+1 612-555-0142", "*******0142"),
    ("0142", "****"),
    ("42", "**"),
    (None, None),
    ("", ""),
]


@pytest.mark.parametrize(("raw", "expected"), MASK_CASES, ids=[repr(raw) for raw, _ in MASK_CASES])
def test_phone_mask_keeps_only_the_last_four_digits(raw: str | None, expected: str | None) -> None:
    assert phone.mask(raw) == expected


def test_phone_mask_never_reveals_more_than_four_digits() -> None:
    for raw, expected in E164_CASES:
        masked = phone.mask(expected)
        assert masked is not None
        digits = [ch for ch in masked if ch.isdigit()]
        assert "".join(digits) == expected[-4:], raw
        assert expected.lstrip("+") not in masked
