"""What sync needs: a source of conversations (the ElevenLabs API) and the archive to write into."""

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from services.core.domain.errors import CallVaultError

# Upstream statuses (the SDK's GetConversationResponseModelStatus). Only these two are final.
FINAL_STATUSES = frozenset({"done", "failed"})


class UpstreamError(CallVaultError):
    """The ElevenLabs API could not answer (5xx, timeouts, 429s) after every retry; run again later."""

    code = "upstream_unavailable"


class UpstreamRejected(CallVaultError):
    """The API refused the request (401/403/422): a missing or wrong key, or a key without permission."""

    code = "upstream_rejected"


class ConversationRefused(CallVaultError):
    """A 4xx other than 401/403/404/429 for one conversation or its audio: that call fails, the run goes on."""

    code = "upstream_refused_conversation"


class ConversationGone(CallVaultError):
    """404 upstream: the conversation (or its audio) does not exist there. Never deleted here."""

    code = "conversation_gone"


@dataclass(frozen=True)
class ConversationSummary:
    """One row of ``GET /v1/convai/conversations`` (the SDK's ConversationSummaryResponseModel)."""

    conversation_id: str
    agent_id: str | None
    start_time_unix_secs: int
    status: str  # initiated | in-progress | processing | done | failed
    call_successful: str | None = None  # success | failure | unknown
    call_duration_secs: int | None = None
    message_count: int | None = None
    transcript_summary: str | None = None  # the analysis, when it has run: a rerun changes it
    call_summary_title: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class ConversationPage:
    conversations: list[ConversationSummary]
    next_cursor: str | None
    has_more: bool


class ConversationSource(Protocol):
    """The ElevenLabs Conversations API. Adapters retry 429/5xx/timeouts themselves and bound the
    number of requests in flight; what reaches the caller is final (``UpstreamError`` and kin)."""

    def list_conversations(
        self,
        *,
        after: int | None = None,
        before: int | None = None,
        agent_id: str | None = None,
        cursor: str | None = None,
        page_size: int = 100,
    ) -> ConversationPage:
        """One page, newest first; ``after``/``before``: call start, unix seconds (exclusive bounds)."""
        ...

    def get_conversation(self, conversation_id: str) -> dict[str, Any]:
        """The document, as the transcription webhook's ``data``, every field kept. 404: ConversationGone."""
        ...

    def open_audio(self, conversation_id: str) -> AbstractContextManager[Iterator[bytes]]:
        """The call's MP3 as a stream of chunks (never whole in memory). 404: ConversationGone.

        Errors before the first chunk raise from ``__enter__``; a connection lost mid-stream raises
        ``UpstreamError`` from the iterator, so a store given the chunks writes nothing.
        """
        ...


class CallArchive(Protocol):
    """The ingest Archiver as sync uses it (wired at the edges; sync never imports ingest)."""

    def archive_conversation(self, document: dict[str, Any], observed_at: int) -> str:
        """Archive a conversation document as a transcription event observed at ``observed_at``.

        Returns the outcome: "stored", "stale" (the archive holds a newer version) or "ignored".
        """
        ...

    def archive_audio_stream(
        self, conversation_id: str, agent_id: str | None, chunks: Callable[[], Iterable[bytes]]
    ) -> str:
        """Archive the call's audio from a stream (``chunks`` may be called again to retry)."""
        ...

    def is_erased(self, conversation_id: str) -> bool:
        """The conversation was erased here (#13): sync fetches nothing of it."""
        ...
