"""Fixtures for the analytics tests: the call set ingested once per module (SeaweedFS: tests/conftest.py)."""

from pathlib import Path

import pytest

from tests.analytics.callset import Call, build_calls, ingest


@pytest.fixture(scope="module")
def calls() -> list[Call]:
    return build_calls()


@pytest.fixture(scope="module")
def analytics_root(tmp_path_factory: pytest.TempPathFactory, calls: list[Call]) -> Path:
    root = tmp_path_factory.mktemp("analytics")
    ingest(calls, root)
    return root
