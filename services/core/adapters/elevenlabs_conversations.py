"""``UpstreamConversations`` over the ElevenLabs API: ``DELETE /v1/convai/conversations/{id}`` (header
``xi-api-key``), for ``callvault forget --upstream`` (#13).

Retries as sync's client does (``services/sync/elevenlabs.py``; the shared bounds are in
``core/elevenlabs.py``): 429 after its ``Retry-After`` (at most 60 s), 5xx, timeouts and dropped
connections with exponential backoff and full jitter (tenacity), ``max_attempts`` in all. A 404 is the
conversation gone already: an erasure run again after a partial failure deletes nothing twice. Redirects
are not followed (the key travels in a header), and no error or log line carries the key or the
conversation id (the erased call's id is logged nowhere).
"""

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import NoReturn
from urllib.parse import quote

import httpx
from tenacity import RetryCallState

from ..domain import keys
from ..domain.errors import CallVaultError
from ..elevenlabs import Transient, detail_of, retry_after_seconds, retry_log_fields, retrying

log = logging.getLogger(__name__)

CONVERSATIONS_PATH = "/v1/convai/conversations"
ERROR_DETAIL_BYTES = 64 * 1024
KEY_HELP = (
    "check ELEVENLABS_API_KEY (on AWS, the SSM parameter named by CALLVAULT_ELEVENLABS_API_KEY_PARAM): "
    "deleting needs a key with write access to Conversational AI"
)


class UpstreamDeleteFailed(CallVaultError):
    """ElevenLabs did not delete the conversation (refused, or unreachable after every retry)."""

    code = "upstream_delete_failed"


class UpstreamKeyRefused(UpstreamDeleteFailed):
    """ElevenLabs refused the key (401/403): every other deletion with it would be refused too."""

    code = "upstream_key_refused"


class ElevenLabsConversations:
    """One conversation at a time; thread-safe as httpx's client is."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("an ElevenLabs API key is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._api_key = api_key
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._clock = clock
        self._http = httpx.Client(
            base_url=base_url,
            headers={"xi-api-key": api_key, "user-agent": "callvault-erasure"},
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ElevenLabsConversations":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def delete(self, conversation_id: str) -> bool:
        if not keys.CONVERSATION_ID.fullmatch(conversation_id):  # ".." would reach another endpoint
            self._fail("not a conversation id; nothing was sent")
        path = f"{CONVERSATIONS_PATH}/{quote(conversation_id, safe='')}"
        try:
            return retrying(self._max_attempts, self._sleep, self._log_retry)(self._attempt, path)
        except Transient as exc:
            self._fail(
                f"ElevenLabs did not answer the DELETE after {self._max_attempts} attempts (last: {exc.reason}); "
                "it may be down or rate-limiting this key. Run the same command again later",
                exc,
            )

    def _attempt(self, path: str) -> bool:
        try:
            with self._http.stream("DELETE", path) as response:
                status = response.status_code
                if 200 <= status < 300:
                    return True
                if status == 404:
                    return False
                if status == 429 or status >= 500:
                    raise Transient(
                        f"HTTP {status}", retry_after_seconds(response.headers.get("retry-after"), self._clock())
                    )
                detail = self._detail(response)
        except httpx.TimeoutException as exc:
            raise Transient(f"no answer within {self._timeout:g} s ({type(exc).__name__})") from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise Transient(f"connection failed ({type(exc).__name__})") from exc
        if status in (401, 403):
            self._fail(f"ElevenLabs refused the DELETE (HTTP {status}: {detail}); {KEY_HELP}", error=UpstreamKeyRefused)
        self._fail(f"ElevenLabs refused the DELETE (HTTP {status}: {detail})")

    def _detail(self, response: httpx.Response) -> str:
        raw = b""
        try:
            for piece in response.iter_bytes():
                raw += piece
                if len(raw) > ERROR_DETAIL_BYTES:
                    return "no detail"
        except httpx.HTTPError:
            return "no detail"
        return detail_of(raw)

    def _log_retry(self, state: RetryCallState) -> None:
        # No path: it names the erased conversation.
        log.warning("ElevenLabs delete failed; retrying", extra=retry_log_fields(state))

    def _fail(
        self,
        message: str,
        cause: BaseException | None = None,
        *,
        error: type[UpstreamDeleteFailed] = UpstreamDeleteFailed,
    ) -> NoReturn:
        """Every error leaves through here, so none carries the key (even if upstream echoed it)."""
        raise error(message.replace(self._api_key, "[redacted]")) from cause
