"""One fixture per port, parametrised over every adapter: the contract suites run against each.

``moto`` runs in process (``mock_aws``) with fake credentials, so nothing leaves the machine.
"""

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.fs_blob_store import FsBlobStore
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.adapters.s3_blob_store import S3BlobStore
from services.core.adapters.sqlite_call_index import SqliteCallIndex
from services.core.ports import BlobStore, CallIndex
from tests.conftest_dynalite import use_dynalite
from tests.support import fake_aws_environment

ADAPTERS = ["memory", "local", "moto"]
BUCKET = "callvault-archive-test"
TABLE = "callvault-calls-test"
AUDIT_TABLE = "callvault-audit-test"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fake credentials, us-east-1, no endpoint overrides or profiles from the developer's machine."""
    fake_aws_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    # In-process moto is not thread-safe: two requests on one key share a file buffer (a copy onto
    # a key another thread is replacing fails with "I/O operation on closed file"). Serialise each
    # request, as S3 and DynamoDB make each one atomic; the operations of a move still interleave.
    lock = threading.Lock()
    process_request = BotocoreStubber.process_request

    def one_request_at_a_time(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return process_request(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", one_request_at_a_time)
    with mock_aws():
        yield


@dataclass
class BlobHarness:
    name: str
    store: BlobStore
    # Everything physically left in the store, including temp files and unfinished multipart uploads.
    leftovers: Callable[[], list[str]]


@pytest.fixture(params=ADAPTERS)
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobHarness:
    if request.param == "memory":
        memory = MemoryBlobStore()
        return BlobHarness("memory", memory, lambda: sorted(memory.objects))
    if request.param == "local":
        root = tmp_path / "archive"
        return BlobHarness("local", FsBlobStore(root), lambda: _files_under(root))
    request.getfixturevalue("aws")
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)

    def s3_leftovers() -> list[str]:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        uploads = [u["Key"] for u in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]
        return sorted(keys + [f"(unfinished upload) {k}" for k in uploads])

    return BlobHarness("moto", S3BlobStore(BUCKET), s3_leftovers)


# The DynamoDB adapters also run against dynalite, a real DynamoDB implementation (moto is in-process).
DYNAMO_ADAPTERS = [*ADAPTERS, "dynalite"]


def dynamo_table(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """For a "moto" or "dynalite" case: its clients wired, and the table name to use."""
    if request.param == "dynalite":
        return use_dynalite(monkeypatch, request.getfixturevalue("dynalite"))
    request.getfixturevalue("aws")
    return TABLE


@pytest.fixture(params=DYNAMO_ADAPTERS)
def index(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CallIndex]:
    if request.param == "memory":
        yield MemoryCallIndex()
    elif request.param == "local":
        sqlite = SqliteCallIndex(tmp_path / "index.sqlite3")
        yield sqlite
        sqlite.close()
    elif request.param == "dynalite":
        dynamo = DynamoCallIndex(dynamo_table(request, monkeypatch))
        dynamo.create_table()
        yield dynamo
    else:
        request.getfixturevalue("aws")
        dynamo = DynamoCallIndex(TABLE)
        dynamo.create_table()
        yield dynamo


@pytest.fixture
def adapter(request: pytest.FixtureRequest) -> str:
    """The adapter under test, for the few assertions that document a known gap of one adapter."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None:
        return ""
    for name in ("blobs", "index"):
        if name in callspec.params:
            return str(callspec.params[name])
    return ""


def _files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
