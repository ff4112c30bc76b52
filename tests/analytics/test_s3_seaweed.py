"""DuckDB reading the tables straight from a real S3 implementation (SeaweedFS checks SigV4), with
httpfs loaded offline from the wheel: the same report rows as from the local folder."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from services.analytics.duckdb_engine import DuckDbEngine
from services.analytics.reports import REPORTS, ReportArgs, run_report
from services.core.adapters.s3_blob_store import S3BlobStore
from tests.conftest_seaweed import SeaweedS3, s3_client
from tests.contract import versioned_checks
from tests.contract.conditional_checks import CHECKS

ARGS = ReportArgs(keyword="refund", phone="+16125550101")


@pytest.fixture(scope="module")
def bucket(seaweed: SeaweedS3, analytics_root: Path) -> str:
    """A bucket holding exactly the local tables, uploaded through the production S3 adapter."""
    client = s3_client(seaweed)
    name = f"analytics-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    store = S3BlobStore(name, client)
    for path in analytics_root.rglob("*.json.gz"):
        store.put_bytes(path.relative_to(analytics_root).as_posix(), path.read_bytes(), "application/x-ndjson")
    return name


@pytest.fixture
def s3_engine(seaweed: SeaweedS3, bucket: str) -> Iterator[DuckDbEngine]:
    engine = DuckDbEngine.s3(
        f"s3://{bucket}",
        key_id=seaweed.access_key,
        secret=seaweed.secret_key,
        region="us-east-1",
        endpoint=seaweed.endpoint,
    )
    with engine:
        yield engine


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_reports_from_s3_equal_reports_from_the_folder(
    name: str, s3_engine: DuckDbEngine, analytics_root: Path
) -> None:
    with DuckDbEngine.local(analytics_root) as local:
        expected = run_report(local, name, ARGS)
    got = run_report(s3_engine, name, ARGS)
    assert got.rows == expected.rows and got.rows
    assert got.types == expected.types


def test_credentials_and_endpoint_from_the_environment(
    seaweed: SeaweedS3, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    with DuckDbEngine.s3(f"s3://{bucket}/") as engine:
        assert engine.query("SELECT count(*) FROM calls").rows[0][0] > 0


def test_a_wrong_secret_is_refused(seaweed: SeaweedS3, bucket: str) -> None:
    with pytest.raises(duckdb.Error, match="403"):
        DuckDbEngine.s3(
            f"s3://{bucket}", key_id=seaweed.access_key, secret="wrong", region="us-east-1", endpoint=seaweed.endpoint
        ).query("SELECT count(*) FROM calls")


def test_an_empty_prefix_gives_empty_tables(seaweed: SeaweedS3, bucket: str) -> None:
    with DuckDbEngine.s3(
        f"s3://{bucket}/no-such-prefix",
        key_id=seaweed.access_key,
        secret=seaweed.secret_key,
        region="us-east-1",
        endpoint=seaweed.endpoint,
    ) as engine:
        assert engine.query("SELECT count(*) FROM messages").rows == [(0,)]


def test_httpfs_loads_from_the_installed_wheel_with_autoinstall_off() -> None:
    """The pinned DuckDB finds its httpfs in the wheel: nothing is fetched (this machine has no network)."""
    from services.analytics.duckdb_engine import _connect, load_httpfs

    con = _connect()
    assert con.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone() == (False,)
    load_httpfs(con)
    loaded = con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchone()
    assert loaded == (True,)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_conditional_writes_and_deletes_on_a_real_s3(seaweed: SeaweedS3, check: str) -> None:
    """Compaction's safety rests on S3 honouring If-Match / If-None-Match on PutObject and DeleteObject;
    moto implements them, SeaweedFS shows a real server does what the adapter expects."""
    client = s3_client(seaweed)
    name = f"cas-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    CHECKS[check](S3BlobStore(name, client))


@pytest.mark.parametrize("check", sorted(versioned_checks.CHECKS))
def test_versioned_writes_on_a_real_s3(seaweed: SeaweedS3, check: str) -> None:
    """The write protocol's port on a real S3: the version label as user metadata through HEAD, conditional
    puts carrying it, copy_if's conditional GET + PUT, and write_newest's loop under contention."""
    client = s3_client(seaweed)
    name = f"versions-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    versioned_checks.CHECKS[check](S3BlobStore(name, client))
