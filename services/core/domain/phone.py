"""Phone numbers: normalise what platforms and people type to E.164, and mask them for logs."""

import phonenumbers

DEFAULT_REGION = "US"


def to_e164(raw: object, default_region: str = DEFAULT_REGION) -> str | None:
    """Return the E.164 form (``+16125550142``) of a phone-like value, or None if it is not one.

    Accepts spaces and punctuation (``+9196631 00122``, ``(612) 555-0142``); numbers without a
    country code are read in ``default_region``. A value is accepted when its length is possible
    for its country: we archive what the carrier gave us rather than second-guess numbering plans
    that change faster than the metadata.
    """
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not text or len(text) > 64 or not any(ch.isdigit() for ch in text):
        return None
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def names_one_caller(e164: str | None) -> bool:
    """Whether a number can stand for one person: a number a carrier could assign (not merely one of a
    possible length), and not a placeholder of one repeated digit. A withheld caller often arrives as
    such a placeholder (``0000000000``), shared by everyone who withholds theirs, so caller memory must
    not be kept under it (the call itself is archived under any number)."""
    if not e164:
        return False
    digits = e164.lstrip("+")
    if len(set(digits[1:])) <= 1:
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return False


def mask(phone: str | None) -> str | None:
    """Keep only the last four digits: enough to tell calls apart in logs, not enough to identify."""
    if not phone:
        return phone
    digits = [ch for ch in phone if ch.isdigit()]
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + "".join(digits[-4:])
