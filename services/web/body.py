"""The bounded body reader: a declared ``Content-Length`` over the limit is refused before a byte is
read, and a body that streams past it is refused as soon as it does (never buffered whole)."""

from fastapi import Request

from services.core.domain.errors import PayloadTooLarge


async def read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
