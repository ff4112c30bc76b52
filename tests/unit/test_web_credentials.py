"""Where search secrets come from: environment first, else (locally) files generated in the data dir."""

import stat
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.core.config import Settings
from services.core.secrets import local_secret
from services.web.auth import hash_key
from services.web.credentials import (
    API_KEY_FILE,
    configured_api_keys,
    configured_signing_key,
    local_api_key,
    resolve_local,
)


def test_search_local_secret_is_created_once_private_and_reused(tmp_path: Path) -> None:
    value, created = local_secret(tmp_path / "data", "api-key", "cvk_")
    assert created and value.startswith("cvk_") and len(value) > 40
    path = tmp_path / "data" / "api-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert local_secret(tmp_path / "data", "api-key", "cvk_") == (value, False)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["api-key"]  # no temp file left


def test_search_local_secret_racing_processes_agree_on_one_value(tmp_path: Path) -> None:
    results: list[str] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        results.append(local_secret(tmp_path, "signing-key", "csk_")[0])

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert (tmp_path / "signing-key").read_text().strip() == results[0]


def test_search_configured_keys_win_over_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_keys=SecretStr("k1, k2 ,"), signing_key=SecretStr("s" * 32))
    hashes, signing_key = resolve_local(settings)
    assert [e.digest for e in hashes] == [hash_key("k1"), hash_key("k2")]
    assert {e.role for e in hashes} == {"admin"}  # entries without a role keep full access
    assert signing_key == b"s" * 32
    assert list(tmp_path.iterdir()) == []  # nothing generated


def test_search_without_configuration_the_data_dir_keys_are_used(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    key, _ = local_api_key(tmp_path)
    hashes, signing_key = resolve_local(settings)
    assert [(e.digest, e.role) for e in hashes] == [(hash_key(key), "admin")]
    assert (tmp_path / API_KEY_FILE).exists() and (tmp_path / "signing-key").exists()
    assert resolve_local(settings) == (hashes, signing_key)  # stable across restarts


def test_search_short_signing_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 32"):
        configured_signing_key(Settings(data_dir=tmp_path, signing_key=SecretStr("short")))


def test_search_nothing_configured_means_no_keys(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert configured_api_keys(settings) == []
    assert configured_signing_key(settings) is None


@pytest.mark.parametrize("content", ["", "\n", "   \n"])
def test_an_empty_secret_file_is_refused_never_used_as_an_empty_key(tmp_path: Path, content: str) -> None:
    from services.core.secrets import SecretFileEmpty

    (tmp_path / "webhook-secret").write_text(content)
    with pytest.raises(SecretFileEmpty, match="is empty"):
        local_secret(tmp_path, "webhook-secret", "wsec_")


def test_an_empty_webhook_secret_or_signing_key_signs_nothing() -> None:
    import time

    from services.core.domain import signing
    from services.core.domain.errors import InvalidSignature
    from services.search.links import HmacLinkSigner

    now = int(time.time())
    body = b'{"type": "post_call_transcription"}'
    with pytest.raises(InvalidSignature):
        signing.verify(body, signing.sign(body, "", now), [""], now)
    with pytest.raises(ValueError, match="empty signing key"):
        HmacLinkSigner(b"", time.time)


def test_serve_refuses_an_empty_secret_file_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from services.cli.main import cli

    data = tmp_path / "data"
    data.mkdir()
    (data / "webhook-secret").write_text("")
    result = CliRunner().invoke(
        cli, ["serve", "--data-dir", str(data), "--port", "0"], env={"CALLVAULT_WEBHOOK_SECRET": ""}
    )
    assert result.exit_code == 1 and "webhook-secret is empty" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CALLVAULT_MAX_BODIES_IN_FLIGHT", "-1"),
        ("CALLVAULT_HEADER_TIMEOUT_SECS", "inf"),
        ("CALLVAULT_BODY_TIMEOUT_SECS", "nan"),
        ("CALLVAULT_SEND_TIMEOUT_SECS", "0"),
        ("CALLVAULT_ANALYTICS_COMPACT_INTERVAL", "1e12"),
        ("CALLVAULT_LOG_LEVEL", "LOUD"),
        ("CALLVAULT_BACKEND", "s3"),
        ("CALLVAULT_PUBLIC_URL", "calls.example.org"),  # every file link would be relative to its page
        ("CALLVAULT_PUBLIC_URL", "ftp://calls.example.org"),
        ("CALLVAULT_ELEVENLABS_BASE_URL", "api.elevenlabs.io"),
        ("CALLVAULT_MEM0_HOST", "https://"),
    ],
)
def test_a_bad_setting_stops_any_command_with_one_line_naming_it(variable: str, value: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from services.cli.main import cli

    result = CliRunner().invoke(cli, ["calls", "--data-dir", str(tmp_path)], env={variable: value})
    assert result.exit_code == 1 and f"bad settings: {variable}:" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_url_setting_left_empty_is_unset_and_a_full_one_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.core.config import Settings

    monkeypatch.setenv("CALLVAULT_PUBLIC_URL", "")
    assert Settings().public_url is None
    monkeypatch.setenv("CALLVAULT_PUBLIC_URL", "https://calls.example.org/vault")
    assert Settings().public_url == "https://calls.example.org/vault"


def test_the_log_level_may_be_written_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.core.config import Settings

    monkeypatch.setenv("CALLVAULT_LOG_LEVEL", "warning")
    assert Settings().log_level == "WARNING"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),  # noqa: S104 - the host under test, not a bind
        ("::", False),
        ("10.0.0.5", False),
    ],
)
def test_serve_knows_which_hosts_only_this_machine_reaches(host: str, loopback: bool) -> None:
    from services.local.served_url import is_loopback

    assert is_loopback(host) is loopback


@pytest.mark.parametrize("secret", ["", " ", " , "])
def test_sign_refuses_an_empty_secret_instead_of_signing_with_it(secret: str) -> None:
    from click.testing import CliRunner

    from services.cli.main import cli

    result = CliRunner().invoke(cli, ["sign", "--secret", secret, "-"], input=b"{}")
    assert result.exit_code == 2 and "the secret is empty" in result.stderr, result.output


def test_sign_uses_the_first_secret_serve_would_accept_and_refuses_an_empty_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from services.cli.main import cli
    from services.core.domain import signing

    runner = CliRunner()
    signed = runner.invoke(cli, ["sign", "--secret", " , whsec_new", "--timestamp", "1700000000", "-"], input=b"{}")
    assert signed.stdout.strip() == signing.sign(b"{}", "whsec_new", 1700000000)
    (tmp_path / "webhook-secret").write_text("\n")
    result = runner.invoke(cli, ["sign", "--data-dir", str(tmp_path), "-"], input=b"{}")
    assert result.exit_code == 1 and "webhook-secret is empty" in result.stderr, result.output
