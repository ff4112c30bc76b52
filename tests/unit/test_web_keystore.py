"""Managed keys (`callvault keys`): stored as hashes only, roles kept, revocation effective at once."""

import stat
from pathlib import Path

import pytest

from services.web.auth import ApiKeys, hash_key
from services.web.keystore import KeyFile, KeyFileInvalid


def test_web_keystore_create_stores_only_the_hash_owner_only(tmp_path: Path) -> None:
    keys = KeyFile.in_data_dir(tmp_path)
    key, record = keys.create("qa team", "read")
    assert key.startswith("cvk_") and len(key) > 40
    text = keys.path.read_text()
    assert key not in text and record.sha256 in text
    assert stat.S_IMODE(keys.path.stat().st_mode) == 0o600
    assert [(k.id, k.name, k.role, k.active) for k in keys.all_keys()] == [(record.id, "qa team", "read", True)]
    assert record.config_entry() == f"read:sha256:{record.sha256}"


def test_web_keystore_revoked_key_stops_working_in_a_running_app(tmp_path: Path) -> None:
    store = KeyFile.in_data_dir(tmp_path)
    api_keys = ApiKeys([], managed=KeyFile.in_data_dir(tmp_path).entries)  # a second reader, as serve is
    assert api_keys.lookup("cvk_anything") is None
    key, record = store.create("listener", "listen")
    principal = api_keys.authenticate(key)
    assert (principal.key_id, principal.role, principal.name) == (record.id, "listen", "listener")
    store.revoke(record.id)
    assert api_keys.lookup(key) is None
    assert api_keys.by_id(record.id) is None
    assert store.all_keys()[0].revoked_at is not None


def test_web_keystore_revoking_an_unknown_id_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        KeyFile.in_data_dir(tmp_path).revoke("key_nope")


@pytest.mark.parametrize(
    "text", ['{"keys": [', "[]", '{"keys": [{"id": "key_1"}]}', '{"keys": [{"id": "k", "role": "boss"}]}']
)
def test_web_keystore_a_file_edited_into_something_else_is_refused_by_name(tmp_path: Path, text: str) -> None:
    keys = KeyFile.in_data_dir(tmp_path)
    keys.path.write_text(text)
    with pytest.raises(KeyFileInvalid, match=r"api-keys\.json is not a valid key file"):
        keys.all_keys()
    with pytest.raises(KeyFileInvalid):
        keys.create("qa", "read")  # nothing written over what the operator may still repair
    assert keys.path.read_text() == text


def test_web_keystore_a_broken_file_fails_closed_for_managed_keys_only_and_is_told_once(tmp_path: Path) -> None:
    store = KeyFile.in_data_dir(tmp_path)
    managed_key, _record = store.create("qa", "admin")
    told: list[KeyFileInvalid] = []
    api_keys = ApiKeys([hash_key("cvk_configured")], managed=KeyFile.in_data_dir(tmp_path, told.append).entries)
    assert api_keys.lookup(managed_key) is not None
    store.path.write_text(store.path.read_text()[:-5])  # a hand edit gone wrong
    assert api_keys.lookup(managed_key) is None  # not a 500 for every request
    assert api_keys.authenticate("cvk_configured").role == "admin"
    assert len(told) == 1 and "api-keys.json" in str(told[0])
