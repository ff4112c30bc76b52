"""API keys: configured raw or as ``sha256:<hex>``, only hashes kept, Bearer header checked."""

import hashlib

import pytest

from services.core.domain.errors import Unauthorized
from services.search.auth import ApiKeys, hash_key, iam_caller, parse_key_entries

RAW = "cvk_first-key"
SECOND = "cvk_second-key"


def test_search_auth_entries_become_hashes_only() -> None:
    hashed_entry = "sha256:" + hashlib.sha256(SECOND.encode()).hexdigest()
    hashes = parse_key_entries([RAW, hashed_entry])
    assert hashes == [hash_key(RAW), hash_key(SECOND)]
    assert all(RAW.encode() not in h for h in hashes)


def test_search_auth_accepts_upper_case_hex() -> None:
    entry = "sha256:" + hashlib.sha256(RAW.encode()).hexdigest().upper()
    assert parse_key_entries([entry]) == [hash_key(RAW)]


@pytest.mark.parametrize("entry", ["sha256:", "sha256:abc", "sha256:" + "z" * 64, "sha256:" + "a" * 63])
def test_search_auth_malformed_hash_entry_stops_start_up(entry: str) -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        parse_key_entries([entry])


@pytest.mark.parametrize(
    "header",
    [f"Bearer {RAW}", f"bearer {RAW}", f"BEARER   {RAW}  ", f"Bearer {SECOND}"],
)
def test_search_auth_right_key_passes(header: str) -> None:
    ApiKeys(parse_key_entries([RAW, "sha256:" + hashlib.sha256(SECOND.encode()).hexdigest()])).check_header(header)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing API key"),
        ("", "missing API key"),
        ("Bearer", "malformed"),
        ("Bearer   ", "malformed"),
        (f"Basic {RAW}", "malformed"),
        (RAW, "malformed"),
        ("Bearer cvk_wrong", "not valid"),
        (f"Bearer {RAW}x", "not valid"),
        (f"Bearer {RAW[:-1]}", "not valid"),
        ("Bearer " + "x" * 600, "not valid"),
        (f"Bearer sha256:{hashlib.sha256(RAW.encode()).hexdigest()}", "not valid"),  # the hash is not the key
    ],
)
def test_search_auth_wrong_or_missing_key_is_unauthorized(header: str | None, message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        ApiKeys([hash_key(RAW)]).check_header(header)


def test_search_auth_no_configured_key_refuses_everyone() -> None:
    keys = ApiKeys([])
    assert len(keys) == 0
    with pytest.raises(Unauthorized):
        keys.check_header(f"Bearer {RAW}")


def test_search_auth_iam_caller_is_read_only_from_the_api_gateway_event() -> None:
    arn = "arn:aws:iam::123456789012:user/analyst"
    http_api = {"aws.event": {"requestContext": {"authorizer": {"iam": {"userArn": arn, "accessKey": "AKIA1"}}}}}
    rest_api = {"aws.event": {"requestContext": {"identity": {"userArn": arn, "accessKey": "AKIA1"}}}}
    assert iam_caller(http_api) == arn
    assert iam_caller(rest_api) == arn


@pytest.mark.parametrize(
    "scope",
    [
        {},  # the local server: no API Gateway in front
        {"aws.event": {"requestContext": {}}},
        {"aws.event": {"requestContext": {"authorizer": {"jwt": {"claims": {}}}}}},
        {"aws.event": {"requestContext": {"identity": {"userArn": None, "accessKey": None}}}},  # unauthenticated
        {"aws.event": {"requestContext": {"authorizer": {"iam": {"userArn": "arn", "accessKey": ""}}}}},
        {"aws.event": "not a dict"},
    ],
)
def test_search_auth_iam_mode_without_an_iam_caller_is_refused(scope: dict[str, object]) -> None:
    with pytest.raises(Unauthorized, match="IAM"):
        iam_caller(scope)
