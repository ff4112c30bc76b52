"""Fixtures of the memory tests. The ONNX embedder loads once per session (about a second)."""

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.memory.embedder import OnnxMiniLmEmbedder


@pytest.fixture(scope="session")
def embedder() -> OnnxMiniLmEmbedder:
    return OnnxMiniLmEmbedder()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything connects anywhere but loopback (the offline back end must not)."""
    real_connect = socket.socket.connect

    def loopback_only(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in {"127.0.0.1", "::1", "localhost"} and not host.startswith("/"):
            raise AssertionError(f"network access attempted: {host}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


@pytest.fixture
def oss_store(tmp_path: Path, embedder: OnnxMiniLmEmbedder, no_network: None) -> Iterator[Any]:
    from services.memory.mem0_oss import Mem0OssMemoryStore

    store = Mem0OssMemoryStore(tmp_path / "memory", embedder=embedder)
    yield store
    store.close()
