"""The memory routes in /docs (issue #14): the agent routes show their request schema, the secret header
and 401, so they can be tried there; every memory route has an example; the documented examples work."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.core.config import Settings
from services.core.wiring import build_storage
from services.local.app import create_local_app
from services.memory.app import mount_memory
from services.memory.router import MemoryContext
from services.memory.service import SECRET_HEADER, AgentSecrets
from services.search.dependencies import require_api_key
from services.web.auth import hash_key
from tests.memory.support import FakeMemoryStore
from tests.support import SECRET

AGENT_SECRET = "asec_docs-test-secret"
INIT = "/webhooks/elevenlabs/conversation-init"
TOOL = "/tools/memory-search"
MEMORIES = "/callers/{phone}/memories"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path)
    storage = build_storage(settings)
    app = create_local_app(settings, [SECRET], storage, api_key_hashes=[hash_key("cvk_docs")])
    context = MemoryContext(FakeMemoryStore(), storage.index, AgentSecrets([AGENT_SECRET]))
    mount_memory(app, context, require_api_key)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _operation(client: TestClient, method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = client.get("/openapi.json").json()["paths"][path][method]
    return operation


@pytest.mark.parametrize("path", [INIT, TOOL])
def test_agent_routes_document_body_header_and_401(client: TestClient, path: str) -> None:
    operation = _operation(client, "post", path)
    [header] = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == SECRET_HEADER and header["required"] is True
    body = operation["requestBody"]["content"]["application/json"]
    assert body["schema"]["type"] == "object" and "caller_id" in body["schema"]["properties"]
    assert operation["responses"]["401"]["content"]["application/json"]["example"]["error"]["code"] == "unauthorized"
    assert "example" in operation["responses"]["200"]["content"]["application/json"]
    # Tried as /docs would send it: the documented example with the header is answered; without, 401.
    assert client.post(path, json=body["example"], headers={SECRET_HEADER: AGENT_SECRET}).status_code == 200
    refused = client.post(path, json=body["example"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"


def test_memories_route_has_an_example(client: TestClient) -> None:
    responses = _operation(client, "get", MEMORIES)["responses"]
    example = responses["200"]["content"]["application/json"]["example"]
    assert (
        example["items"][0]["conversation_id"].startswith("conv_") and example.get("next_cursor") is None
    )  # nulls are dropped
    assert {"401", "422"} <= set(responses)
