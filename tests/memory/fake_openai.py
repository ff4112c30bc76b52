"""A stand-in OpenAI-compatible chat completions server on 127.0.0.1 (what Ollama, vLLM or LM Studio serve):
it answers every ``POST /v1/chat/completions`` with canned memory extractions in the JSON shape Mem0's
extraction prompt asks for, and records the requests. Started and stopped by the test."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class LlmState:
    extractions: list[str] = field(default_factory=lambda: ["Grew up in Winona", "Has six children"])
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # statuses to answer first
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: LlmState

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        with self.state.lock:
            self.state.requests.append({"path": self.path, "authorization": self.headers.get("authorization"), **body})
            status = self.state.fail_next.pop(0) if self.state.fail_next else 200
            memories = [
                {"id": str(n), "text": t, "attributed_to": "user"} for n, t in enumerate(self.state.extractions)
            ]
        if self.path != "/v1/chat/completions":
            status = 404
        reply: dict[str, Any] = {"error": {"message": "unavailable"}}
        if status == 200:
            reply = {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "created": 1751802100,
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": json.dumps({"memory": memories})},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def fake_openai() -> Iterator[tuple[str, LlmState]]:
    """(base URL ending in /v1, state) of a server on a free loopback port, stopped on exit."""
    state = LlmState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
