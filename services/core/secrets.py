"""Secrets: on AWS SSM SecureString parameters read once per cold start; locally tokens kept in the data dir."""

import contextlib
import os
import secrets as token_source
import time
from functools import lru_cache
from pathlib import Path

from pydantic import SecretStr


def secret_list(value: SecretStr | None, param: str | None) -> list[str]:
    """A comma-separated list of secrets (several during a rotation) from the environment, else from
    the SSM parameter ``param`` (AWS). Empty means none is configured: callers refuse everything."""
    text = value.get_secret_value() if value is not None else ""
    if not text.strip() and param:
        text = read_ssm_secret(param)
    return [s.strip() for s in text.split(",") if s.strip()]


@lru_cache(maxsize=8)
def read_ssm_secret(name: str) -> str:
    import boto3

    response = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)
    value: str = response["Parameter"]["Value"]
    return value


class SecretFileEmpty(Exception):
    """A secret's file exists and holds nothing: keyed with "", every check would pass."""


def kept_secret(path: Path) -> str:
    """The secret kept in ``path``; ``SecretFileEmpty`` if the file holds nothing."""
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise SecretFileEmpty(
            f"{path} is empty, and an empty secret would let anyone through: put the secret back in it, or "
            "delete the file and start `callvault serve` to make a new one (a new webhook secret must then be "
            "pasted into ElevenLabs; a new signing key only ends the links issued so far)"
        )
    return value


def local_secret(data_dir: Path, name: str, prefix: str) -> tuple[str, bool]:
    """A random token kept (0600) in ``data_dir/name``, created on first use; ``(value, created)``.

    Creation is create-if-absent (a hard link of a finished, fsynced temp file), so two processes
    starting at once agree on one value instead of each keeping its own. A file that holds nothing is
    refused (``SecretFileEmpty``), never used as an empty key.
    """
    path = data_dir / name
    if path.exists():
        return kept_secret(path), False
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = prefix + token_source.token_urlsafe(32)
    # ".tmp-": the start-up sweep (services/local/hygiene.py) removes one a crash left behind.
    tmp = path.with_name(f".tmp-{name}-{os.getpid()}-{time.monotonic_ns()}")
    tmp.touch(mode=0o600)
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())  # a power cut must not leave the name on an empty file
        try:
            os.link(tmp, path)
        except FileExistsError:
            return kept_secret(path), False
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return value, True
