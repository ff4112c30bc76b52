"""The ElevenLabs Conversations API over httpx: the ``ConversationSource`` adapter (docs/sync.md).

Three endpoints, header ``xi-api-key``. One client is shared by the sync's worker threads, so it bounds
the requests in flight itself (a semaphore, and an httpx pool of the same size) and retries what a later
attempt can fix: 429 after its ``Retry-After`` (at most 60 s), 5xx, timeouts and dropped connections
with exponential backoff and full jitter (tenacity), ``max_attempts`` in all. What reaches the caller
is final: ``UpstreamError``, ``UpstreamRejected`` or ``ConversationGone``, never with the key in it.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import httpx
import orjson
from tenacity import RetryCallState

from services.core.domain import keys
from services.core.domain.errors import CallVaultError
from services.core.elevenlabs import MAX_RETRY_AFTER_SECS as MAX_RETRY_AFTER_SECS  # shared with erasure's client
from services.core.elevenlabs import Transient, detail_of, retry_log_fields, retrying
from services.core.elevenlabs import retry_after_seconds as retry_after_seconds

from .ports import (
    ConversationGone,
    ConversationPage,
    ConversationRefused,
    ConversationSummary,
    UpstreamError,
    UpstreamRejected,
)

if TYPE_CHECKING:
    from services.core.config import Settings

log = logging.getLogger(__name__)

CONVERSATIONS_PATH = "/v1/convai/conversations"
MAX_PAGE_SIZE = 100  # the API answers 422 above this
AUDIO_CHUNK_BYTES = 64 * 1024  # what a consumer holds at once, whatever the call's length
# A bound on one call's audio, so a broken or hostile upstream cannot stream into the archive without
# end: 2 GiB is over 36 hours of the API's 128 kbit/s MP3 (the webhook's bound is 64 MiB of base64).
MAX_AUDIO_BYTES = 2 * 1024**3
# The slowest average an audio download may keep (after the request timeout's grace): real time for
# the API's 128 kbit/s MP3, so a healthy download is never cut, and a trickle is.
MIN_AUDIO_BYTES_PER_SEC = 16 * 1024
# A conversation document or list page beyond this is refused, not read into memory (the webhook's
# default body bound); an error's detail is read up to ERROR_DETAIL_BYTES only.
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
ERROR_DETAIL_BYTES = 64 * 1024
AUDIO_TYPES = ("audio/", "application/octet-stream")
KEY_HELP = (
    "check ELEVENLABS_API_KEY (on AWS, the SSM parameter named by CALLVAULT_ELEVENLABS_API_KEY_PARAM): "
    "the key must be valid and have read access to Conversational AI (convai_read)"
)


class ElevenLabsClient:
    """``ConversationSource`` over HTTP. Thread-safe; never nest two requests in one thread (each holds a slot)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        max_audio_bytes: int = MAX_AUDIO_BYTES,
        max_document_bytes: int = MAX_DOCUMENT_BYTES,
    ) -> None:
        if not api_key:
            raise UpstreamRejected(f"no ElevenLabs API key: {KEY_HELP}")
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")
        self._api_key = api_key
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._max_audio_bytes = max_audio_bytes
        self._max_document_bytes = max_document_bytes
        self._sleep = sleep
        self._clock = clock
        self._slots = threading.BoundedSemaphore(concurrency)
        self._http = httpx.Client(
            base_url=base_url,
            headers={"xi-api-key": api_key, "user-agent": "callvault-sync"},
            timeout=httpx.Timeout(timeout),
            # As many connections as requests may be in flight: no thread waits for the pool.
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            # Never follow: a redirect to another host would carry the key in a custom header.
            follow_redirects=False,
            transport=transport,
        )

    @classmethod
    def from_settings(cls, settings: "Settings", concurrency: int = 4) -> "ElevenLabsClient":
        secret = settings.elevenlabs_api_key
        api_key = secret.get_secret_value().strip() if secret is not None else ""
        if not api_key:
            raise UpstreamRejected(
                "no ElevenLabs API key: set ELEVENLABS_API_KEY to a key with read access to Conversational AI "
                "(ElevenLabs: Developers -> API Keys; docs/sync.md)"
            )
        return cls(
            settings.elevenlabs_base_url,
            api_key,
            timeout=settings.elevenlabs_timeout_secs,
            max_attempts=settings.elevenlabs_max_attempts,
            concurrency=concurrency,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ElevenLabsClient":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- the port ---------------------------------------------------------------------------------

    def list_conversations(
        self,
        *,
        after: int | None = None,
        before: int | None = None,
        agent_id: str | None = None,
        cursor: str | None = None,
        page_size: int = 100,
    ) -> ConversationPage:
        """One page, newest first. ``page_size`` is clamped to 1-100: paging by cursor gets the rest anyway."""
        params: dict[str, str | int] = {"page_size": min(max(page_size, 1), MAX_PAGE_SIZE)}
        optional = {
            "cursor": cursor,
            "agent_id": agent_id,
            "call_start_after_unix": after,
            "call_start_before_unix": before,
        }
        params.update({name: value for name, value in optional.items() if value is not None})
        response = self._request(CONVERSATIONS_PATH, params)
        try:
            return _page(orjson.loads(response.content))
        except (ValueError, TypeError, KeyError) as exc:
            self._fail(UpstreamError, f"unexpected response from ElevenLabs to GET {CONVERSATIONS_PATH}: {exc}")

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        path = self._conversation_path(conversation_id)
        response = self._request(path)
        try:
            document = orjson.loads(response.content)
        except ValueError as exc:
            self._fail(UpstreamError, f"unexpected response from ElevenLabs to GET {path}: not JSON ({exc})")
        if not isinstance(document, dict) or document.get("conversation_id") != conversation_id:
            self._fail(UpstreamError, f"unexpected response from ElevenLabs to GET {path}: not that conversation")
        return document

    @contextmanager
    def open_audio(self, conversation_id: str) -> Iterator[Iterator[bytes]]:
        """The response stays open (and holds its slot) until the ``with`` block ends."""
        path = f"{self._conversation_path(conversation_id)}/audio"
        response = self._request(path, stream=True)
        try:
            content_type = response.headers.get("content-type", "").lower()
            if not content_type.startswith(AUDIO_TYPES):
                self._fail(
                    UpstreamError,
                    f"unexpected response from ElevenLabs to GET {path}: {content_type or 'no content type'}, "
                    "not audio; run again later",
                )
            chunks = self._audio_chunks(response, path)
            yield _mp3_checked(chunks, path) if content_type.startswith("application/octet-stream") else chunks
        finally:
            response.close()
            self._slots.release()

    # -- requests and retries ---------------------------------------------------------------------

    def _request(
        self, path: str, params: dict[str, str | int] | None = None, *, stream: bool = False
    ) -> httpx.Response:
        """A 2xx response (read whole, or open and holding a slot when ``stream``), after any retries."""
        try:
            return retrying(self._max_attempts, self._sleep, lambda state: self._log_retry(path, state))(
                self._attempt, path, params, stream
            )
        except Transient as exc:
            if exc.reason.startswith("connection failed"):  # never reached: not ElevenLabs' doing
                self._fail(
                    UpstreamError,
                    f"could not connect to {self._http.base_url} for GET {path} in {self._max_attempts} attempts "
                    f"({exc.reason}): check this machine's network or proxy, and CALLVAULT_ELEVENLABS_BASE_URL",
                    exc,
                )
            self._fail(
                UpstreamError,
                f"ElevenLabs did not answer GET {path} after {self._max_attempts} attempts (last: {exc.reason}); "
                "it may be down or rate-limiting this key. Run again later (a lower --concurrency eases rate limits)",
                exc,
            )

    def _attempt(self, path: str, params: dict[str, str | int] | None, stream: bool) -> httpx.Response:
        self._slots.acquire()
        keep_slot = False
        try:
            try:
                request = self._http.build_request("GET", path, params=params)
                # Always streamed: a body is read here, within a size bound and a deadline.
                response = self._http.send(request, stream=True)
            except httpx.TimeoutException as exc:
                raise Transient(f"no answer within {self._timeout:g} s ({type(exc).__name__})") from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                raise Transient(f"connection failed ({type(exc).__name__})") from exc
            except httpx.HTTPError as exc:  # e.g. a body that does not decode as its Content-Encoding says
                self._fail(UpstreamError, f"unreadable response from ElevenLabs to GET {path} ({type(exc).__name__})")
            try:
                self._check(response, path)
                if not stream:
                    body = b"".join(self._bounded(response, path, self._max_document_bytes, "answer"))
                    response.close()
                    return httpx.Response(response.status_code, content=body, request=request)
            except httpx.TimeoutException as exc:
                response.close()
                raise Transient(f"no answer within {self._timeout:g} s ({type(exc).__name__})") from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                response.close()
                raise Transient(f"connection failed ({type(exc).__name__})") from exc
            except httpx.HTTPError as exc:  # e.g. a body that does not decode as its Content-Encoding says
                response.close()
                self._fail(UpstreamError, f"unreadable response from ElevenLabs to GET {path} ({type(exc).__name__})")
            except BaseException:
                response.close()
                raise
            keep_slot = True
            return response
        finally:
            if not keep_slot:
                self._slots.release()

    def _check(self, response: httpx.Response, path: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (408, 409, 425, 429) or status >= 500:  # timeout, conflict, too early, too many: later
            retry_after = retry_after_seconds(response.headers.get("retry-after"), self._clock())
            raise Transient(f"HTTP {status}", retry_after)
        if status in (401, 403):
            self._fail(
                UpstreamRejected,
                f"ElevenLabs refused GET {path} (HTTP {status}: {self._detail(response)}); {KEY_HELP}",
            )
        if status == 404:
            self._fail(ConversationGone, f"ElevenLabs has no {path} (HTTP 404)")
        if 400 <= status < 500:
            # The list refused: every page would be (a wrong parameter), so the run stops. One conversation
            # refused: that call fails and the others are synced.
            refused = UpstreamRejected if path == CONVERSATIONS_PATH else ConversationRefused
            self._fail(refused, f"ElevenLabs rejected GET {path} (HTTP {status}: {self._detail(response)})")
        self._fail(UpstreamError, f"unexpected response from ElevenLabs to GET {path}: HTTP {status}")

    def _log_retry(self, path: str, state: RetryCallState) -> None:
        log.warning("ElevenLabs request failed; retrying", extra={"path": path, **retry_log_fields(state)})

    def _audio_chunks(self, response: httpx.Response, path: str) -> Iterator[bytes]:
        received = 0
        try:
            # As the bytes arrive (a fixed chunk size would wait for 64 KiB before any check runs).
            for piece in self._bounded(response, path, self._max_audio_bytes, "audio"):
                received += len(piece)
                for at in range(0, len(piece), AUDIO_CHUNK_BYTES):
                    yield piece[at : at + AUDIO_CHUNK_BYTES]
        except httpx.HTTPError as exc:  # cut off, or bytes that do not decode as the response said
            self._fail(
                UpstreamError,
                f"the audio from GET {path} was cut off after {received} bytes ({type(exc).__name__}); run again",
                exc,
            )
        if received == 0:
            self._fail(UpstreamError, f"ElevenLabs sent no audio bytes for GET {path}; run again later")

    def _conversation_path(self, conversation_id: str) -> str:
        # An id the archive could never hold is not requested: ".." would reach another endpoint.
        if not keys.CONVERSATION_ID.fullmatch(conversation_id):
            self._fail(UpstreamError, f"ElevenLabs listed {conversation_id[:80]!r}, which is not a conversation id")
        return f"{CONVERSATIONS_PATH}/{quote(conversation_id, safe='')}"

    def _fail(self, error: type[CallVaultError], message: str, cause: BaseException | None = None) -> NoReturn:
        """Every error leaves through here, so none carries the key (even if upstream echoed it)."""
        raise error(message.replace(self._api_key, "[redacted]")) from cause

    def _detail(self, response: httpx.Response) -> str:
        """The API's own words for an error (``{"detail": {"message": ...}}`` or ``{"detail": "..."}``), short."""
        raw = b""
        try:
            for piece in response.iter_bytes():
                raw += piece
                if len(raw) > ERROR_DETAIL_BYTES:  # not worth reading on: no detail
                    return "no detail"
            return detail_of(raw)
        except httpx.HTTPError:
            return "no detail"

    def _bounded(self, response: httpx.Response, path: str, limit: int, what: str) -> Iterator[bytes]:
        """The body as it arrives, refused beyond ``limit`` bytes or when slower than
        ``MIN_AUDIO_BYTES_PER_SEC`` on average after the request timeout (each read may arrive in
        time while the whole takes days: a trickle must not hold a worker or a sync slot for ever)."""
        received = 0
        started = self._clock()
        for piece in response.iter_bytes():
            received += len(piece)
            if received > limit:  # raised before the bytes reach a consumer
                self._fail(UpstreamError, f"the {what} to GET {path} is more than {limit} bytes; refused")
            if self._clock() - started > self._timeout + received / MIN_AUDIO_BYTES_PER_SEC:
                self._fail(
                    UpstreamError,
                    f"the {what} to GET {path} arrived too slowly (under {MIN_AUDIO_BYTES_PER_SEC} bytes/s; "
                    f"{received} bytes so far); run again later",
                )
            yield piece


def _mp3_checked(chunks: Iterator[bytes], path: str) -> Iterator[bytes]:
    """Bytes sent as ``application/octet-stream`` must start as MP3 does (an ID3 tag or an MPEG frame
    sync), or an error page would be archived as the call's audio, for good: a later fetch of API audio
    is the same version and never replaces it. Checked before the first byte reaches the store."""
    head = b""
    for chunk in chunks:
        if len(head) < 3:
            head += chunk
            if len(head) < 3:
                continue
            if not (head.startswith(b"ID3") or (head[0] == 0xFF and head[1] & 0xE0 == 0xE0)):
                raise UpstreamError(f"the audio from GET {path} is not MP3 (no ID3 tag or MPEG frame); run again later")
            yield head
            continue
        yield chunk
    if 0 < len(head) < 3:
        raise UpstreamError(f"the audio from GET {path} is not MP3 ({len(head)} bytes); run again later")


def _page(body: Any) -> ConversationPage:
    if not isinstance(body, dict) or not isinstance(body.get("conversations"), list):
        raise ValueError("no conversations list")
    has_more = body.get("has_more")
    if not isinstance(has_more, bool):
        raise ValueError("no has_more")
    next_cursor = body.get("next_cursor")
    if next_cursor is not None and not isinstance(next_cursor, str):
        raise ValueError("next_cursor is not a string")
    return ConversationPage([_summary(row) for row in body["conversations"]], next_cursor, has_more)


def _summary(row: Any) -> ConversationSummary:
    """Tolerant of what the port does not use (unknown fields ignored, optional ones None), strict on the rest."""
    if not isinstance(row, dict):
        raise ValueError("a conversation row is not an object")
    conversation_id, status = row.get("conversation_id"), row.get("status")
    start = _int_or_none(row.get("start_time_unix_secs"))
    if not isinstance(conversation_id, str) or not conversation_id:
        raise ValueError("a conversation row has no conversation_id")
    if start is None or not isinstance(status, str):
        raise ValueError(f"conversation {conversation_id} has no start_time_unix_secs or status")
    return ConversationSummary(
        conversation_id=conversation_id,
        agent_id=_str_or_none(row.get("agent_id")),
        start_time_unix_secs=start,
        status=status,
        call_successful=_str_or_none(row.get("call_successful")),
        call_duration_secs=_int_or_none(row.get("call_duration_secs")),
        message_count=_int_or_none(row.get("message_count")),
        transcript_summary=_str_or_none(row.get("transcript_summary")),
        call_summary_title=_str_or_none(row.get("call_summary_title")),
    )


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
