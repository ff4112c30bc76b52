"""A stand-in for the Mem0 Platform API on 127.0.0.1: the endpoints ``MemoryClient`` 2.2.1 calls, with
the request log and fault injection the tests need. Started and stopped by the test (a context manager).
"""

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

API_KEY = "m0-test-key"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class PlatformState:
    memories: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    # (method, path prefix) -> statuses to answer before behaving normally again
    faults: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    # What the stand-in's "LLM" extracts from an add with infer=True (canned, whatever the messages say)
    extractions: list[str] = field(default_factory=lambda: ["Lives in Winona", "Has six children"])
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay_secs: float = 0.0  # every answer waits this long (a slow service)

    def fail_next(self, method: str, path: str, *statuses: int) -> None:
        self.faults.setdefault((method, path), []).extend(statuses)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path)]


def _matches(memory: dict[str, Any], filters: dict[str, Any]) -> bool:
    if "AND" in filters:
        return all(_matches(memory, f) for f in filters["AND"])
    for key, value in filters.items():
        if key == "metadata":
            if any(memory["metadata"].get(k) != v for k, v in value.items()):
                return False
        elif memory.get(key) != value:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    state: PlatformState

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        state = self.state
        with state.lock:
            state.requests.append(
                Recorded(method, url.path, parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()}, body)
            )
            for (fault_method, prefix), statuses in state.faults.items():
                if fault_method == method and url.path.startswith(prefix) and statuses:
                    self._reply(statuses.pop(0), {"detail": "injected failure"})
                    return
            if self.headers.get("authorization") != f"Token {API_KEY}":
                self._reply(401, {"detail": "Invalid API key"})
                return
            status, reply = self._route(method, url.path, parse_qs(url.query), body or {})
        if state.delay_secs:
            time.sleep(state.delay_secs)
        self._reply(status, reply)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]) -> tuple[int, Any]:
        state = self.state
        if method == "GET" and path == "/v1/ping/":
            return 200, {"status": "ok", "org_id": "org_1", "project_id": "proj_1", "user_email": "ops@example.com"}
        if method == "POST" and path == "/v3/memories/add/" and body.get("infer", True):
            # Inference: the platform queues the messages and extracts memories in the background; here
            # the canned extractions are stored at once, each with the request's metadata, as Mem0 does.
            for text in state.extractions:
                state.memories.append(
                    {
                        "id": f"mem_{next(state.ids)}",
                        "memory": text,
                        "role": "user",
                        "user_id": body.get("user_id"),
                        "metadata": body.get("metadata") or {},
                        "created_at": f"2025-07-06T11:41:{len(state.memories):02d}+00:00",
                    }
                )
            queued = "Memory processing has been queued for background execution"
            return 200, {"results": [{"message": queued, "status": "PENDING", "event_id": f"evt_{next(state.ids)}"}]}
        if method == "POST" and path == "/v3/memories/add/":
            results = []
            for message in body["messages"]:
                memory = {
                    "id": f"mem_{next(state.ids)}",
                    "memory": message["content"],
                    "role": message["role"],
                    "user_id": body.get("user_id"),
                    "metadata": body.get("metadata") or {},
                    "created_at": f"2025-07-06T11:41:{len(state.memories):02d}+00:00",
                }
                state.memories.append(memory)
                results.append({"id": memory["id"], "memory": memory["memory"], "event": "ADD"})
            return 200, {"results": results}
        if method == "POST" and path == "/v3/memories/":
            found = [m for m in state.memories if _matches(m, body.get("filters") or {})]
            page, size = int(query.get("page", ["1"])[0]), int(query.get("page_size", ["100"])[0])
            chunk = found[(page - 1) * size : page * size]
            more = page * size < len(found)
            return 200, {
                "count": len(found),
                "next": f"page={page + 1}" if more else None,
                "previous": None,
                "results": chunk,
            }
        if method == "POST" and path == "/v3/memories/search/":
            words = set(body["query"].lower().split())
            found = [m for m in state.memories if _matches(m, body.get("filters") or {})]
            scored = [{**m, "score": len(words & set(m["memory"].lower().split())) / max(len(words), 1)} for m in found]
            scored = [m for m in scored if m["score"] > 0]
            scored.sort(key=lambda m: -m["score"])
            return 200, {"results": scored[: int(body.get("top_k", 10))]}
        if method == "DELETE" and path == "/v1/batch/":
            gone = {m["memory_id"] for m in body["memories"]}
            state.memories[:] = [m for m in state.memories if m["id"] not in gone]
            return 200, {"message": f"Successfully deleted {len(gone)} memories"}
        if method == "DELETE" and path.startswith("/v2/entities/user/"):
            user = unquote(path.removeprefix("/v2/entities/user/").strip("/"))
            before = len(state.memories)
            state.memories[:] = [m for m in state.memories if m["user_id"] != user]
            if before == len(state.memories):
                return 404, {"detail": "Entity not found"}
            return 200, {"message": "Entity deleted successfully."}
        return 404, {"detail": f"no route {method} {path}"}

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


@contextmanager
def fake_mem0_platform() -> Iterator[tuple[str, PlatformState]]:
    """``(base_url, state)`` of a server on a free loopback port, stopped on exit."""
    state = PlatformState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
