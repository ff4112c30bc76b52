"""Reading what people type: phone numbers, instants and labels, for every web face and the CLI.

Both the HTTP routes and the CLI go through here, so ``callvault calls --phone "(612) 555-0142"`` and
``GET /calls?phone=(612)%20555-0142`` find the same calls. Every refusal is an ``InvalidRequest``
whose message names the parameter and says what was wrong; no message echoes a phone number back,
because error messages end up in logs.
"""

import re
from datetime import UTC, date, datetime, timedelta

import phonenumbers

from services.core.domain import phone as phone_domain
from services.core.domain.errors import InvalidRequest

MAX_PARAM_CHARS = 64
# Unix seconds we accept: 1970-01-01 .. 9999-12-31 (the index stores seconds; SQLite and DynamoDB
# both hold these, and datetime can print them).
MAX_UNIX_SECS = 253_402_300_799
# An ISO 8601 offset whose "+" arrived as a space (an unencoded query string): "...T10:00:00 02:00".
_SPACE_FOR_PLUS_OFFSET = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")
_UNIX_SECS = re.compile(r"^\d{1,12}(?:\.\d{1,9})?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LABEL = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: (
        "does not start with a known country calling code (write it as +<country code><number>)"
    ),
    phonenumbers.NumberParseException.NOT_A_NUMBER: "is not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "is too short after the international prefix",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "is too short to be a phone number",
    phonenumbers.NumberParseException.TOO_LONG: "is too long to be a phone number",
}
_EXAMPLES = "e.g. +16125550142, +1 612-555-0142 or (612) 555-0142"


def parse_phone(raw: str, default_region: str = phone_domain.DEFAULT_REGION) -> str:
    """The E.164 form of a phone number as typed, or ``InvalidRequest`` saying what is wrong with it.

    Accepts what ``domain.phone.to_e164`` accepts when it archives a call (so every archived number
    can be found), plus a leading space standing for the ``+`` of an unencoded query string. Refuses
    a local number without its area code (``555-0142``): it can never match an archived call.
    """
    text = raw
    if text.startswith(" ") and text[1:2].isdigit():
        text = "+" + text[1:]  # "+44 20 ..." sent unencoded arrives as " 44 20 ..." (form encoding)
    text = text.strip()
    if not text:
        raise InvalidRequest(f"phone is empty; expected a phone number ({_EXAMPLES})")
    if len(text) > MAX_PARAM_CHARS:
        raise InvalidRequest(f"phone is longer than {MAX_PARAM_CHARS} characters")
    if not any(ch.isdigit() for ch in text):
        raise InvalidRequest(f"phone has no digits; expected a phone number ({_EXAMPLES})")
    text = _with_plus_for_00(text, default_region)
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        reason = _PARSE_REASONS.get(exc.error_type, "is not a phone number")
        raise InvalidRequest(f"phone {reason} ({_EXAMPLES})") from None
    verdict = phonenumbers.is_possible_number_with_reason(number)
    if verdict == phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY and not text.startswith("+"):
        raise InvalidRequest(
            f"phone looks like a local number without its area code; region {default_region} needs the full "
            f"number ({_EXAMPLES})"
        )
    e164 = phone_domain.to_e164(text, default_region)
    if e164 is None:
        country_code = number.country_code or 0
        region = phonenumbers.region_code_for_country_code(country_code)
        where = f"numbers in {region}" if region and region != "ZZ" else f"country code +{country_code}"
        problem = {
            phonenumbers.ValidationResult.TOO_SHORT: "has too few digits",
            phonenumbers.ValidationResult.TOO_LONG: "has too many digits",
            phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "has an unknown country calling code",
        }.get(verdict, "has a length that is not possible")
        raise InvalidRequest(f"phone {problem} for {where} ({_EXAMPLES})")
    return e164


def _with_plus_for_00(text: str, default_region: str) -> str:
    """``0044 20 7946 0958`` as ``+44 20 7946 0958`` when the default region does not read it: ``00`` is
    the international prefix across most of the world (not in the US, whose is ``011``), and no number
    of the region itself is possible that way, so it can only mean a country code."""
    if not text.startswith("00"):
        return text
    try:
        if phonenumbers.is_possible_number(phonenumbers.parse(text, default_region)):
            return text
    except phonenumbers.NumberParseException:
        pass
    return "+" + text[2:]


def parse_instant(name: str, raw: str) -> int:
    """Unix seconds from ``1751802015`` or ISO 8601 (``2025-07-06``, ``20250706``,
    ``2025-07-06T11:40:15Z``, ``...+02:00``). A value without an offset is UTC.

    Calls start on whole seconds, so an instant with a fraction becomes the first whole second at or
    after it: the same calls are then ``>= since`` and ``< until`` as for the instant itself (cutting
    the fraction off would take in a call that started before ``since`` and leave out one that started
    before ``until``).

    Digits alone are unix seconds, except the two lengths ISO 8601 gives a meaning: eight digits are a
    basic-format date (``20250706``), and four a year, which is refused rather than read as 1970."""
    seconds, partial = _read_instant(name, raw)
    return seconds + 1 if partial else seconds


def parse_day(name: str, raw: str) -> date:
    """The UTC day of an instant ``parse_instant`` reads (``2025-07-06``, ``20250706``, an ISO time, unix
    seconds), for periods counted in whole days: what ``report --since/--until`` take."""
    seconds, _ = _read_instant(name, raw)
    return datetime.fromtimestamp(seconds, UTC).date()


def _read_instant(name: str, raw: str) -> tuple[int, bool]:
    """The whole unix seconds of an instant, and whether a fraction of a second follows them."""
    text = raw.strip()
    if not text:
        raise InvalidRequest(f"{name} is empty; expected ISO 8601 (2025-07-06T11:40:15Z) or unix seconds")
    if len(text) > MAX_PARAM_CHARS:
        raise InvalidRequest(f"{name} is longer than {MAX_PARAM_CHARS} characters")
    if len(text) == 4 and text.isdigit():
        raise InvalidRequest(f"{name} looks like a year; write a day, e.g. {text}-01-01, or unix seconds")
    if len(text) == 8 and text.isdigit():
        try:  # ISO 8601's basic format, as many tools write dates; never 1970-08-23 in seconds
            return int(datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC).timestamp()), False
        except ValueError:
            raise InvalidRequest(f"{name} has eight digits but is not a date (YYYYMMDD, e.g. 20250706)") from None
    if _UNIX_SECS.fullmatch(text):
        whole, _, fraction = text.partition(".")
        seconds, partial = int(whole), fraction.strip("0") != ""
    else:
        # RFC 3339 lets "T" and "Z" be written in lower case; Python reads only the capitals.
        fixed = _SPACE_FOR_PLUS_OFFSET.sub(r"\1+\2", text.upper())
        try:
            moment = datetime.fromisoformat(fixed)
        except ValueError:
            raise InvalidRequest(
                f"{name} is neither ISO 8601 (2025-07-06 or 2025-07-06T11:40:15Z) nor unix seconds"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            since_epoch = moment - _EPOCH
        except OverflowError:
            since_epoch = timedelta(seconds=-1)
        seconds, partial = since_epoch.days * 86_400 + since_epoch.seconds, since_epoch.microseconds != 0
    if not 0 <= seconds <= MAX_UNIX_SECS:
        raise InvalidRequest(f"{name} must be between 1970-01-01 and 9999-12-31")
    return seconds, partial


def parse_label(name: str, raw: str) -> str:
    """Agent ids and status words: a bounded token, so no filter value carries markup or control bytes."""
    if not _LABEL.fullmatch(raw):
        raise InvalidRequest(f"{name} must be 1-128 letters, digits, '_', '-', '.' or ':'")
    return raw
