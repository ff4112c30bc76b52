"""/openapi.json (and so /docs) lists the statuses each route really answers to the mistakes people make
first: no credentials, a `read` key where more is needed, a query parameter the route does not take.
`GET /search`, `DELETE /callers/{phone}` and `GET /audit` once answered 400 and 401 without saying so."""

from collections.abc import Iterator
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
from services.web.auth import parse_key_entries
from tests.memory.support import FakeMemoryStore
from tests.support import SECRET

READ, ADMIN, AGENT_SECRET = "cvk_statuses-read", "cvk_statuses-admin", "asec_statuses"
PATH_VALUES = {"conversation_id": "conv_01jzfrjvcce0vsea1fcbpp9p04", "phone": "%2B16125550142", "key": "1/x.json"}
REQUIRED_QUERY = {"/search": "q=hello"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("statuses") / "data")
    storage = build_storage(settings)
    keys = parse_key_entries([f"read:{READ}", ADMIN])
    app = create_local_app(settings, [SECRET], storage, api_key_hashes=keys, signing_key=b"k" * 32)
    mount_memory(app, MemoryContext(FakeMemoryStore(), storage.index, AgentSecrets([AGENT_SECRET])), require_api_key)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def _operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path, op) for path, ops in paths.items() for method, op in ops.items()]


def _url(path: str, *extra: str) -> str:
    query = "&".join(q for q in (REQUIRED_QUERY.get(path, ""), *extra) if q)
    return path.format(**PATH_VALUES) + (f"?{query}" if query else "")


def test_the_schema_covers_every_data_route(client: TestClient) -> None:
    described = {(method, path) for method, path, _ in _operations(client)}
    assert {("GET", "/search"), ("DELETE", "/callers/{phone}"), ("GET", "/audit")} <= described
    assert ("GET", "/callers/{phone}/memories") in described and len(described) >= 12


def test_every_answer_to_a_first_mistake_is_documented(client: TestClient) -> None:
    undocumented = []
    for method, path, operation in _operations(client):
        documented = set(operation["responses"])
        tries = {
            "no credentials": client.request(method, _url(path)),
            "a read key": client.request(method, _url(path), headers={"Authorization": f"Bearer {READ}"}),
            "an unknown parameter": client.request(
                method,
                _url(path, "bogus=1"),
                headers={"Authorization": f"Bearer {ADMIN}", SECRET_HEADER: AGENT_SECRET},
            ),
        }
        for mistake, response in tries.items():
            assert response.status_code < 500, (method, path, mistake, response.text)
            if str(response.status_code) not in documented:
                undocumented.append(f"{method} {path} with {mistake}: {response.status_code}")
    assert undocumented == []


def test_a_strict_route_answers_the_400_it_documents(client: TestClient) -> None:
    response = client.get(_url("/search", "page=2"), headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_parameter"
    erase = next(op for method, path, op in _operations(client) if (method, path) == ("DELETE", "/callers/{phone}"))
    example = erase["responses"]["400"]["content"]["application/json"]["example"]
    assert example["error"]["code"] == "unknown_parameter" and set(example) == {"error", "request_id"}
