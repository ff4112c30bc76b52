"""SeaweedFS (``weed mini``) as a real S3 that checks SigV4 signatures, for presigned-link tests.

moto accepts any presigned URL (tampered, expired, wrong secret), so it cannot show that ours are
right; SeaweedFS refuses them the way S3 does. ``weed mini`` opens a dozen fixed ports by default:
every port flag it has gets a free port here, so it never clashes with another instance (another
engineer's test run, say). Started once per test session and stopped by its pid.
"""

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
from botocore.config import Config

from tests.support import free_port, running_server

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
    "metricsPort",
)


@dataclass(frozen=True)
class SeaweedS3:
    endpoint: str
    access_key: str
    secret_key: str
    pid: int


def s3_client(server: SeaweedS3, secret: str | None = None) -> "S3Client":
    """A SigV4 client for the server (``secret``: sign with another secret, to be refused)."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=secret or server.secret_key,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def weed_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("weed")


@contextmanager
def run_seaweed(workdir: Path, binary: str) -> Iterator[SeaweedS3]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "weed-s3.json"
    identity = {
        "name": "admin",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    s3_port = free_port()
    ports = [f"-{flag}={free_port()}" for flag in PORT_FLAGS]
    command = [
        binary,
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3_port}",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
        *ports,
    ]
    endpoint = f"http://127.0.0.1:{s3_port}"

    def up() -> bool:  # any S3 answer (403 for an unsigned request) means the gateway is up
        return httpx.get(endpoint + "/", timeout=1).status_code in {200, 403}

    with running_server(command, workdir, "weed mini", up, timeout=60) as process:
        yield SeaweedS3(endpoint, ACCESS_KEY, SECRET_KEY, process.pid)
