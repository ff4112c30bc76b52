"""The floor with an HTTP server in it: the least a Python webhook receiver on this uvicorn can do.

    .venv/bin/python benchmarks/floor_server.py --port 8099 --dir /tmp/floor-http   # then POST /webhooks/elevenlabs

The same uvicorn (h11, asyncio, access log off) that ``callvault serve`` runs, with one bare ASGI
callable in place of the app: it hashes the body as it streams in (HMAC-SHA256 of ``<t>.<body>``,
as ``serve`` does), checks the signature, ``orjson.loads`` the body, writes it durably (temp file,
fsync, rename, as ``harness.measure_floor`` does) and answers 200 with a small JSON body. No
framework, no middleware, no log line, no thread hop: a lower bound for any server on this stack.

``ingest_live.py --http-floor-seconds`` runs it under the same load as ``serve`` in the same run, so
``serve``'s CPU per webhook can be read against it (issue #10, choice 1 of docs/benchmarks.md). It
imports nothing from ``services``.
"""

import argparse
import hashlib
import hmac
import itertools
import os
import time
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from harness import SECRET

_SIGNATURE = b"elevenlabs-signature"
_TOLERANCE_SECS = 1800
_JSON = [(b"content-type", b"application/json")]


class FloorApp:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.names = itertools.count()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # the readiness probe
            await self._answer(send, 200, b'{"status":"ok"}')
            return
        header = dict(scope["headers"]).get(_SIGNATURE, b"").decode()
        parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
        stamp = parts.get("t", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > _TOLERANCE_SECS:
            await self._answer(send, 401, b'{"error":"signature"}')
            return
        mac = hmac.new(SECRET.encode(), stamp.encode() + b".", hashlib.sha256)
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            mac.update(chunk)
            chunks.append(chunk)
            more = message.get("more_body", False)
        if not hmac.compare_digest(mac.hexdigest(), parts.get("v0", "")):
            await self._answer(send, 401, b'{"error":"signature"}')
            return
        body = b"".join(chunks)
        orjson.loads(body)
        self._write(body)
        await self._answer(send, 200, b'{"status":"stored"}')

    def _write(self, body: bytes) -> None:
        n = next(self.names)
        tmp, final = self.directory / f".tmp-{n}", self.directory / f"{n}.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)

    @staticmethod
    async def _answer(send: Any, status: int, body: bytes) -> None:
        headers = [*_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--dir", type=Path, required=True, help="where the bodies are written")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    uvicorn.run(FloorApp(args.dir), host="127.0.0.1", port=args.port, http="h11", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
