"""Search parameters as people type them: phone numbers, instants, labels, and the filter set."""

import pytest

from services.core.domain.errors import InvalidRequest
from services.search.params import CallFilters, parse_filters
from services.web.params import parse_instant, parse_label, parse_phone

PHONE_FORMS = [
    ("+16125550142", "+16125550142"),
    ("+1 612-555-0142", "+16125550142"),
    ("(612) 555-0142", "+16125550142"),
    ("612-555-0142", "+16125550142"),
    ("612.555.0142", "+16125550142"),
    ("16125550142", "+16125550142"),
    ("1-612-555-0142", "+16125550142"),
    ("+1 (612) 555 0142", "+16125550142"),
    # The "+" of an unencoded query string arrives as a space.
    (" 16125550142", "+16125550142"),
    (" 1 612-555-0142", "+16125550142"),
    (" 44 20 7946 0958", "+442079460958"),
    ("+44 20 7946 0958", "+442079460958"),
    ("011 44 20 7946 0958", "+442079460958"),  # US international dialling prefix
    # The international prefix of most of the world, typed with the US as the default region.
    ("0044 20 7946 0958", "+442079460958"),
    ("0033 6 12 34 56 78", "+33612345678"),
    ("00 1 612 555 0142", "+16125550142"),
    ("  +16125550142  ", "+16125550142"),
    ("+1612555 0177", "+16125550177"),  # as ElevenLabs sometimes sends it
]


@pytest.mark.parametrize(("raw", "expected"), PHONE_FORMS, ids=[repr(r) for r, _ in PHONE_FORMS])
def test_search_phone_accepts_the_forms_people_type(raw: str, expected: str) -> None:
    assert parse_phone(raw) == expected


def test_search_phone_reads_national_numbers_in_the_configured_region() -> None:
    assert parse_phone("020 7946 0958", "GB") == "+442079460958"
    assert parse_phone("0033 6 12 34 56 78", "GB") == "+33612345678"  # 00 is the prefix there already
    assert parse_phone("+1 612-555-0142", "GB") == "+16125550142"  # an explicit country code wins


BAD_PHONES = [
    ("", "empty"),
    ("   ", "empty"),
    ("abc", "no digits"),
    ("555-0142", "area code"),
    ("12", "too"),
    ("+999 123 4567", "country calling code"),
    ("+1612555014222222", "too many digits"),
    ("+1 612", "too few digits"),
    ("1" * 65, "longer than 64"),
    ("+", "no digits"),
    ("0099 123 4567", "country calling code"),  # read as +99..., which is no country
]


@pytest.mark.parametrize(("raw", "reason"), BAD_PHONES, ids=[repr(r)[:20] for r, _ in BAD_PHONES])
def test_search_phone_refuses_with_a_message_that_says_what_was_wrong(raw: str, reason: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_phone(raw)
    message = caught.value.message
    assert message.startswith("phone ")
    assert reason in message
    assert "612555" not in message.replace("+16125550142", "")  # never echoes the number it was given


INSTANTS = [
    ("1751802015", 1751802015),
    ("1751802015.9", 1751802016),  # a fraction: the first whole second at or after it
    ("1751802015.000", 1751802015),
    ("0", 0),
    ("2025-07-06", 1751760000),
    ("2025-07-06T11:40:15Z", 1751802015),
    ("2025-07-06t11:40:15z", 1751802015),  # RFC 3339 allows the lower case
    ("2025-07-06T11:40:15", 1751802015),  # no offset: UTC
    ("2025-07-06T13:40:15+02:00", 1751802015),
    ("2025-07-06T13:40:15 02:00", 1751802015),  # "+" arrived as a space
    ("2025-07-06 13:40:15 02:00", 1751802015),
    ("2025-07-06T06:40:15-05:00", 1751802015),
    ("2025-07-06T11:40:15.250Z", 1751802016),
    ("2025-07-06T11:40:15.000Z", 1751802015),
    ("1970-01-01T00:00:00.5Z", 1),
    ("20250706", 1751760000),  # ISO 8601 basic format: a date, not 1970-08-23 in seconds
    ("20250706T114015Z", 1751802015),
    ("175180", 175180),  # other lengths of digits stay seconds
]


@pytest.mark.parametrize(("raw", "expected"), INSTANTS, ids=[r for r, _ in INSTANTS])
def test_search_instant_accepts_iso_8601_and_unix_seconds(raw: str, expected: int) -> None:
    assert parse_instant("since", raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        *("", "yesterday", "2025-13-01", "-5", "1e9", "10000-01-01", "9" * 13, "2025-07-06T25:00", "x" * 70),
        *("2025", "20251345", "12345678"),  # a year alone; eight digits that are no date
        "1969-12-31T23:59:59.5Z",  # before 1970, even by half a second
    ],
)
def test_search_instant_refuses_what_is_not_an_instant(raw: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_instant("until", raw)
    assert caught.value.message.startswith("until ")


def test_search_instant_refuses_a_time_after_year_9999() -> None:
    with pytest.raises(InvalidRequest, match="between 1970-01-01 and 9999-12-31"):
        parse_instant("since", "999999999999")


@pytest.mark.parametrize("raw", ["agent_01jx", "done", "initiation_failed", "a:b.c-d"])
def test_search_label_accepts_ids_and_status_words(raw: str) -> None:
    assert parse_label("agent_id", raw) == raw


@pytest.mark.parametrize("raw", ["", "a b", "<script>", "a\x00b", "x" * 129, "ü"])
def test_search_label_refuses_anything_else(raw: str) -> None:
    with pytest.raises(InvalidRequest, match="agent_id must be"):
        parse_label("agent_id", raw)


def test_search_filters_normalise_every_value() -> None:
    filters = parse_filters(
        phone="(612) 555-0142",
        agent_id="agent_1",
        since="2025-07-06",
        until="1751846400",
        status="done",
        call_successful="failure",
    )
    assert filters == CallFilters("+16125550142", "agent_1", 1751760000, 1751846400, "done", "failure")
    assert filters.names() == ["phone", "agent_id", "since", "until", "status", "call_successful"]
    assert parse_filters() == CallFilters()
    assert parse_filters().names() == []


@pytest.mark.parametrize(("since", "until"), [("1751802015", "1751802015"), ("2025-07-07", "2025-07-06")])
def test_search_filters_refuse_an_empty_window(since: str, until: str) -> None:
    with pytest.raises(InvalidRequest, match="until must be later than since"):
        parse_filters(since=since, until=until)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"status": "bogus"}, "status must be done, failed, initiation_failed, in-progress, processing or initiated"),
        ({"call_successful": "yes"}, "call_successful must be success, failure or unknown"),
    ],
)
def test_search_filters_refuse_a_value_no_call_can_have(given: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_filters(**given)
    assert caught.value.message == message
