"""Where the web faces' secrets come from: the environment, SSM (AWS), or the data dir (local).

- API keys: ``CALLVAULT_API_KEYS`` (``[role:]<key>`` or ``[role:]sha256:<hex>``; no role means admin),
  else the SSM parameter named by ``CALLVAULT_API_KEYS_PARAM``; locally ``callvault serve`` generates
  one (admin) into ``DATA_DIR/api-key``, and ``callvault keys`` manages more in ``DATA_DIR/api-keys.json``.
- Signing key (cursors, local file links, console sessions): ``CALLVAULT_SIGNING_KEY``, else
  ``CALLVAULT_SIGNING_KEY_PARAM``; locally generated into ``DATA_DIR/signing-key``. On AWS it must
  be configured: every Lambda instance has to verify the cursors the others issued.
"""

from pathlib import Path

from services.core.config import Settings
from services.core.secrets import local_secret

from .auth import KeyEntry, parse_key_entries

API_KEY_FILE = "api-key"
SIGNING_KEY_FILE = "signing-key"
MIN_SIGNING_KEY_CHARS = 32


def configured_api_keys(settings: Settings) -> list[KeyEntry]:
    """The keys from the environment, else (AWS) from SSM, as hashes with roles. Empty: none configured."""
    from services.core.secrets import secret_list

    return parse_key_entries(secret_list(settings.api_keys, settings.api_keys_param))


def configured_signing_key(settings: Settings) -> bytes | None:
    value: str | None = None
    if settings.signing_key is not None:
        value = settings.signing_key.get_secret_value().strip()
    elif settings.signing_key_param:
        from services.core.secrets import read_ssm_secret

        value = read_ssm_secret(settings.signing_key_param).strip()
    if not value:
        return None
    if len(value) < MIN_SIGNING_KEY_CHARS:
        raise ValueError(f"the signing key must be at least {MIN_SIGNING_KEY_CHARS} characters")
    return value.encode("utf-8")


def local_api_key(data_dir: Path) -> tuple[str, bool]:
    return local_secret(data_dir, API_KEY_FILE, "cvk_")


def local_signing_key(data_dir: Path) -> bytes:
    return local_secret(data_dir, SIGNING_KEY_FILE, "csk_")[0].encode("utf-8")


def resolve_local(settings: Settings) -> tuple[list[KeyEntry], bytes]:
    """API keys and signing key for a local process: configured ones win, else the data dir's (the
    generated key is an admin key: it is the owner's)."""
    hashes = configured_api_keys(settings)
    if not hashes:
        hashes = parse_key_entries([local_api_key(settings.data_dir)[0]])
    signing_key = configured_signing_key(settings) or local_signing_key(settings.data_dir)
    return hashes, signing_key
