"""``GET /files/{key}``: the local back end's answer to a presigned S3 URL.

No API key: the link carries its own signature, so it can be handed to a browser or an audio
player. Refused with 403 when altered, expired, or used for another key; answers ``Range`` with 206
so players can seek.
"""

from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from services.core.domain.disposition import content_disposition
from services.web.edge import add_log_fields

from ..dependencies import Context
from ..files import LocalFiles
from ..links import HmacLinkSigner
from ..schemas import error_example
from ..service import open_file_link

CHUNK_BYTES = 64 * 1024

router = APIRouter(tags=["files"])


def get_file_links(context: Context) -> HmacLinkSigner:
    if context.file_links is None:
        raise RuntimeError("the /files route is mounted only by the local app")
    return context.file_links


def get_local_files(context: Context) -> LocalFiles:
    if context.files is None:
        raise RuntimeError("the /files route is mounted only by the local app")
    return context.files


FileLinks = Annotated[HmacLinkSigner, Depends(get_file_links)]
Files = Annotated[LocalFiles, Depends(get_local_files)]


@router.get(
    "/files/{key:path}",
    summary="Download an archived transcript or audio file (local signed link)",
    description=(
        "Follow the `links.*.url` of `GET /calls/{conversation_id}`; do not build these URLs yourself. "
        "Behaves like a presigned S3 URL: 403 when the signature does not match (any parameter or the "
        "path changed) or the link expired; `Range: bytes=...` is answered with 206. `HEAD` answers the "
        "same headers without the body. Audio is served `inline` (a browser plays it), transcripts as "
        "an `attachment`; both name the file."
    ),
    response_class=StreamingResponse,
    responses={
        200: {"description": "the whole file", "content": {"application/json": {}, "audio/mpeg": {}}},
        206: {"description": "the requested byte range", "content": {"audio/mpeg": {}}},
        403: error_example("altered, expired or misused link", "forbidden", "link signature does not match"),
        404: error_example("the object is gone", "not_found", "no archived object behind this link"),
        416: error_example("range past the end", "range_not_satisfiable", "range starts past the end of the file"),
    },
)
def download_file(
    request: Request,
    file_links: FileLinks,
    files: Files,
    key: Annotated[str, Path(description="archive key, as in the link")],
    expires: Annotated[str | None, Query(description="unix seconds; part of the signature")] = None,
    filename: Annotated[str | None, Query(description="download name; part of the signature")] = None,
    signature: Annotated[str | None, Query(description="HMAC-SHA256 of method, key, expires and filename")] = None,
    range_header: Annotated[str | None, Header(alias="range", description="e.g. bytes=0-1023")] = None,
) -> Response:
    found = open_file_link(
        key,
        expires=expires,
        filename=filename,
        signature=signature,
        range_header=range_header,
        signer=file_links,
        files=files,
    )
    headers = {
        "accept-ranges": "bytes",
        "content-disposition": content_disposition(found.filename),
        "cache-control": "no-store",
    }
    start, length, status = 0, found.size, 200
    if found.range is not None:
        start, length, status = found.range.start, found.range.length, 206
        headers["content-range"] = f"bytes {found.range.start}-{found.range.end}/{found.size}"
    headers["content-length"] = str(length)
    if request.method == "HEAD":
        add_log_fields(request, bytes_sent=0, partial=status == 206)
        return Response(status_code=status, media_type=found.content_type, headers=headers)
    # What was handed to the server, counted as it goes: a reader that stops early (or is reset by the
    # send timeout) shows in the log line as fewer bytes than the response's length.
    logged = add_log_fields(request, bytes_sent=0, bytes_requested=length, partial=status == 206)
    return StreamingResponse(
        _read(found.path, start, length, logged), status_code=status, media_type=found.content_type, headers=headers
    )


# HEAD under its own operation id (one route for both methods would give the document two operations
# with one id): same checks, same headers, no body.
router.add_api_route(
    "/files/{key:path}",
    download_file,
    methods=["HEAD"],
    operation_id="head_file",
    summary="The headers of a local signed link, without the body",
    description="What `GET` on the same link would answer, without the bytes (size, type, file name).",
    response_class=Response,
    responses={403: {"description": "altered, expired or misused link"}, 404: {"description": "the object is gone"}},
)


def _read(path: FsPath, start: int, length: int, logged: dict[str, Any]) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
            logged["bytes_sent"] += len(chunk)  # after the yield: the server took it
