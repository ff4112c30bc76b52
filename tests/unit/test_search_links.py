"""Link signers: local HMAC links (sign/verify matrix) and the S3 signer's contract with its presigner."""

from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from services.core.domain.errors import Forbidden
from services.search.links import HmacLinkSigner, S3LinkSigner, absolute_url, safe_filename

KEY = "16125550142/conv_01jzfrjvcce0vsea1fcbpp9p04.mp3"
OTHER_KEY = "16125550177/conv_01jzfrjvcce0vsea1fcbpp9p05.mp3"
NOW = 1_751_802_015.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def parts(url: str) -> tuple[str, dict[str, str]]:
    split = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(split.query).items()}
    return unquote(split.path.removeprefix("/files/")), query


def signed(clock: Clock, key: str = KEY, ttl: int = 900) -> tuple[HmacLinkSigner, str, dict[str, str]]:
    signer = HmacLinkSigner(b"s" * 32, clock)
    link = signer.sign(key, ttl, "conv_01jzfrjvcce0vsea1fcbpp9p04.mp3")
    assert link.expires_at == int(clock.now) + ttl
    path, query = parts(link.url)
    return signer, path, query


def test_search_local_link_verifies_as_issued() -> None:
    signer, path, q = signed(Clock())
    assert path == KEY
    assert signer.verify(path, q["expires"], q["filename"], q["signature"]) == "conv_01jzfrjvcce0vsea1fcbpp9p04.mp3"


@pytest.mark.parametrize("field", ["expires", "filename", "signature"])
def test_search_local_link_with_a_changed_parameter_is_forbidden(field: str) -> None:
    signer, path, q = signed(Clock())
    changed = {**q, field: {"expires": str(int(q["expires"]) + 3600), "filename": "evil.html"}.get(field, "0" * 64)}
    with pytest.raises(Forbidden, match="signature does not match"):
        signer.verify(path, changed["expires"], changed["filename"], changed["signature"])


@pytest.mark.parametrize("field", ["expires", "filename", "signature"])
def test_search_local_link_with_a_missing_parameter_is_forbidden(field: str) -> None:
    signer, path, q = signed(Clock())
    values = {**q, field: None}
    with pytest.raises(Forbidden, match="not signed"):
        signer.verify(path, values["expires"], values["filename"], values["signature"])


def test_search_local_link_signature_reused_for_another_file_is_forbidden() -> None:
    signer, _, q = signed(Clock())
    with pytest.raises(Forbidden, match="signature does not match"):
        signer.verify(OTHER_KEY, q["expires"], q["filename"], q["signature"])


def test_search_local_link_expires() -> None:
    clock = Clock()
    signer, path, q = signed(clock, ttl=60)
    clock.now = NOW + 60
    signer.verify(path, q["expires"], q["filename"], q["signature"])  # the last second is still valid
    clock.now = NOW + 61
    with pytest.raises(Forbidden, match="expired"):
        signer.verify(path, q["expires"], q["filename"], q["signature"])


def test_search_local_link_from_another_signing_key_is_forbidden() -> None:
    _, path, q = signed(Clock())
    with pytest.raises(Forbidden):
        HmacLinkSigner(b"t" * 32, Clock()).verify(path, q["expires"], q["filename"], q["signature"])


@pytest.mark.parametrize("expires", ["-1", "1e9", "١٢٣", "9" * 13, " 1751802915"])
def test_search_local_link_odd_expiry_is_forbidden_not_an_error(expires: str) -> None:
    signer, path, q = signed(Clock())
    with pytest.raises(Forbidden):
        signer.verify(path, expires, q["filename"], q["signature"])


def test_search_local_link_with_its_expiry_written_another_way_is_forbidden() -> None:
    """Any change to the link is refused, even one that reads as the same number ("0" + expires)."""
    signer, path, q = signed(Clock())
    with pytest.raises(Forbidden, match="signature does not match"):
        signer.verify(path, "0" + q["expires"], q["filename"], q["signature"])


def test_search_local_link_non_ascii_signature_is_forbidden_not_an_error() -> None:
    signer, path, q = signed(Clock())
    with pytest.raises(Forbidden):
        signer.verify(path, q["expires"], q["filename"], "é" * 64)


def test_search_local_link_filename_is_made_safe_before_signing() -> None:
    signer = HmacLinkSigner(b"s" * 32, Clock())
    _, q = parts(signer.sign(KEY, 60, 'a"b;\r\n c.mp3').url)
    assert q["filename"] == "a_b____c.mp3"
    assert safe_filename("") == "download"


class FakePresigner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def presign_get(self, key: str, expires_in: int, filename: str) -> str:
        self.calls.append((key, expires_in, filename))
        return f"https://bucket.s3.amazonaws.com/{key}?X-Amz-Expires={expires_in}"


def test_search_s3_link_signer_delegates_to_the_presigner() -> None:
    presigner = FakePresigner()
    link = S3LinkSigner(presigner, Clock()).sign(KEY, 900, "conv.mp3")
    assert presigner.calls == [(KEY, 900, "conv.mp3")]
    assert link.url.startswith("https://bucket.s3.amazonaws.com/")
    assert link.expires_at == int(NOW) + 900


def test_search_absolute_url_prefixes_only_local_links() -> None:
    assert absolute_url("/files/a.json?x=1", "http://127.0.0.1:8080/") == "http://127.0.0.1:8080/files/a.json?x=1"
    assert absolute_url("https://s3/x", "http://127.0.0.1:8080/") == "https://s3/x"
