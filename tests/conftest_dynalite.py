"""dynalite (DynamoDB on LevelDB, in memory here) as a real DynamoDB implementation for the Dynamo
adapters' contract suites: moto is the in-process stand-in, dynalite a separate server with its own
reading of condition expressions, reserved words, item sizes and pagination.

Installed by ``make dynalite`` (npm, into ``.tools/dynalite``; ``make test`` does it). Without it the
dynalite cases are skipped on a developer's machine and fail in CI, as the browser tests do. Started
once per session on 127.0.0.1 and stopped by its pid; each test gets tables of its own.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, running_server

REPO = Path(__file__).resolve().parents[1]
BINARY = REPO / ".tools" / "dynalite" / "node_modules" / ".bin" / "dynalite"


def dynalite_binary() -> Path | None:
    return BINARY if BINARY.exists() else None


def missing() -> None:
    message = "dynalite is not installed: run `make dynalite` (npm install into .tools/dynalite)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def run_dynalite(workdir: Path, binary: Path) -> Iterator[str]:
    port = free_port()
    command = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--createTableMs", "0", "--deleteTableMs", "0"]
    url = f"http://127.0.0.1:{port}"

    def listening() -> bool:  # any answer (400 for an empty request) means it listens
        httpx.post(url, timeout=1)
        return True

    with running_server(command, workdir, "dynalite", listening):
        yield url


def use_dynalite(monkeypatch: pytest.MonkeyPatch, url: str) -> str:
    """Point every DynamoDB client of this test (boto3 and PynamoDB alike) at dynalite; returns a table
    name no other test uses (the server lives for the whole session)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return f"callvault-{uuid.uuid4().hex[:12]}"
