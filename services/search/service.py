"""Use cases of the search service. Plain functions over ports: the HTTP routes, the Lambda (through
the same routes) and the ``callvault calls`` / ``callvault show`` commands all call these."""

from dataclasses import dataclass
from pathlib import Path

from services.core.domain.errors import InvalidRequest, NotFound
from services.core.domain.keys import CONVERSATION_ID
from services.core.domain.models import CallQuery, CallRecord
from services.core.ports import CallIndex

from .cursor import CursorCodec
from .files import ByteRange, LocalFiles, content_type, parse_range
from .links import HmacLinkSigner, LinkSigner
from .params import CallFilters

MIN_LIMIT, MAX_LIMIT, DEFAULT_LIMIT = 1, 100, 25


@dataclass(frozen=True)
class CallsPage:
    items: list[CallRecord]
    next_cursor: str | None


def search_calls(
    filters: CallFilters, *, limit: int, cursor: str | None, index: CallIndex, cursors: CursorCodec
) -> CallsPage:
    """One page of calls matching ``filters``, newest first, and the cursor of the next page.

    The index answers from one of its access paths in time proportional to ``limit``; nothing here
    scans. A ``cursor`` is verified (and matched to ``filters``) before the index sees its position.
    """
    if not MIN_LIMIT <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be between {MIN_LIMIT} and {MAX_LIMIT}")
    after = cursors.decode(cursor, filters) if cursor is not None else None
    query = CallQuery(
        phone=filters.phone,
        agent_id=filters.agent_id,
        since=filters.since,
        until=filters.until,
        status=filters.status,
        call_successful=filters.call_successful,
        limit=limit,
        after=after,
    )
    page = index.list_calls(query)
    # A position comes back even with a short (or empty) page when an adapter stops reading early to
    # bound its cost; the client simply follows the cursor.
    next_cursor = cursors.encode(page.next, filters) if page.next is not None else None
    return CallsPage(page.items, next_cursor)


@dataclass(frozen=True)
class FileLink:
    url: str
    expires_at: int
    bytes: int | None


@dataclass(frozen=True)
class CallDetails:
    record: CallRecord
    transcript: FileLink | None
    audio: FileLink | None


def check_id(conversation_id: str) -> str:
    if not CONVERSATION_ID.fullmatch(conversation_id):
        raise InvalidRequest("conversation_id must be 1-128 letters, digits, '_' or '-'")
    return conversation_id


def get_call(
    conversation_id: str, *, index: CallIndex, links: LinkSigner, expires_in: int, may_listen: bool = True
) -> CallDetails:
    """The index record of one call with time-limited links to its transcript and audio (the audio
    only for a caller that ``may_listen``: a ``read`` key gets no audio link).

    Links are signed from the index row alone (no request to the archive): the row is written only
    after its objects are durable, so it never names an object that is not there.
    """
    record = index.get(check_id(conversation_id))
    if record is None:
        raise NotFound("no call with this conversation_id")
    transcript = audio = None
    if record.transcript_key:
        signed = links.sign(record.transcript_key, expires_in, f"{record.conversation_id}.json")
        transcript = FileLink(signed.url, signed.expires_at, record.transcript_bytes)
    if may_listen and record.has_audio and record.audio_key:
        signed = links.sign(record.audio_key, expires_in, f"{record.conversation_id}.mp3")
        audio = FileLink(signed.url, signed.expires_at, record.audio_bytes)
    return CallDetails(record, transcript, audio)


def audio_link(conversation_id: str, *, index: CallIndex, links: LinkSigner, expires_in: int) -> FileLink:
    """The audio link alone (the caller's role was checked by the edge); ``NotFound`` without audio."""
    details = get_call(conversation_id, index=index, links=links, expires_in=expires_in)
    if details.audio is None:
        raise NotFound("this call has no audio")
    return details.audio


@dataclass(frozen=True)
class FileSlice:
    """What the ``/files`` route sends: a whole file or one range of it."""

    path: Path
    size: int
    filename: str
    content_type: str
    range: ByteRange | None


def open_file_link(
    key: str,
    *,
    expires: str | None,
    filename: str | None,
    signature: str | None,
    range_header: str | None,
    signer: HmacLinkSigner,
    files: LocalFiles,
) -> FileSlice:
    """Check a local link like S3 checks a presigned URL, then locate the bytes to send."""
    name = signer.verify(key, expires, filename, signature)
    path = files.path_for(key)
    try:
        size = path.stat().st_size
    except OSError:
        raise NotFound("no archived object behind this link") from None
    return FileSlice(path, size, name, content_type(key), parse_range(range_header, size))
