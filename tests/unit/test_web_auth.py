"""API keys: configured raw or as ``sha256:<hex>``, only hashes kept, Bearer header checked."""

import hashlib

import pytest

from services.core.domain.errors import Unauthorized
from services.web.auth import ApiKeys, hash_key, iam_caller, parse_key_entries

RAW = "cvk_first-key"
SECOND = "cvk_second-key"


def test_search_auth_entries_become_hashes_only() -> None:
    hashed_entry = "sha256:" + hashlib.sha256(SECOND.encode()).hexdigest()
    hashes = [e.digest for e in parse_key_entries([RAW, hashed_entry])]
    assert hashes == [hash_key(RAW), hash_key(SECOND)]
    assert all(RAW.encode() not in h for h in hashes)


def test_search_auth_accepts_upper_case_hex() -> None:
    entry = "sha256:" + hashlib.sha256(RAW.encode()).hexdigest().upper()
    assert [e.digest for e in parse_key_entries([entry])] == [hash_key(RAW)]


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


def test_web_auth_entries_carry_roles_and_default_to_admin() -> None:
    digest = hashlib.sha256(SECOND.encode()).hexdigest()
    entries = parse_key_entries([RAW, f"read:{SECOND}", f"listen:sha256:{digest}", "admin:cvk_third"])
    assert [e.role for e in entries] == ["admin", "read", "listen", "admin"]
    assert entries[1].digest == entries[2].digest == hash_key(SECOND)
    assert entries[0].key_id.startswith("cfg_") and RAW not in entries[0].key_id


def test_web_auth_unknown_role_prefix_is_part_of_the_key() -> None:
    # "cvk_..." keys never contain ':'; an entry whose prefix is no role is a raw key, as before roles.
    assert parse_key_entries(["writer:abc"])[0].digest == hash_key("writer:abc")


def test_web_auth_check_header_returns_the_principal_with_its_role() -> None:
    keys = ApiKeys(parse_key_entries([f"read:{RAW}", SECOND]))
    reader = keys.check_header(f"Bearer {RAW}")
    assert (reader.role, reader.may("read"), reader.may("listen")) == ("read", True, False)
    admin = keys.check_header(f"Bearer {SECOND}")
    assert admin.role == "admin" and admin.may("listen") and admin.may("admin")
    assert keys.by_id(reader.key_id) == reader
    assert keys.by_id("cfg_000000000000") is None


def test_web_auth_require_role_refuses_a_lesser_key() -> None:
    from services.core.domain.errors import Forbidden
    from services.web.auth import Principal, require_role

    require_role(Principal("k", "listen"), "listen", "audio")
    with pytest.raises(Forbidden, match="'listen' role"):
        require_role(Principal("k", "read"), "listen", "audio")


def test_web_auth_one_matcher_compares_every_candidate() -> None:
    from services.core.domain.matching import index_of_match, matches_any

    assert matches_any(b"b", [b"a", b"b", b"c"]) and not matches_any(b"d", [b"a", b"b"])
    assert not matches_any(b"a", [])
    assert index_of_match(b"b", [b"a", b"b", b"b"]) == 1
    assert index_of_match(b"z", [b"a"]) is None
