"""Domain records. Plain dataclasses: adapters map them to rows/items, edges to pydantic schemas."""

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .errors import InvalidRequest

EventType = Literal["post_call_transcription", "post_call_audio", "call_initiation_failure"]
KNOWN_EVENT_TYPES: frozenset[str] = frozenset({"post_call_transcription", "post_call_audio", "call_initiation_failure"})
STATUS_INITIATION_FAILED = "initiation_failed"
# ``memory_status`` once a retention rule removed the call's memories (#13): no later event of the call
# makes a memory job again (ingest sends none, the local outbox's triggers record none).
MEMORY_EXPIRED = "expired"
# The statuses a call can have: ElevenLabs' conversation statuses, and ours for a call that never
# connected. The listing filters accept only these, so a typo is refused rather than answered empty.
CALL_STATUSES: tuple[str, ...] = ("done", "failed", STATUS_INITIATION_FAILED, "in-progress", "processing", "initiated")
CALL_OUTCOMES: tuple[str, ...] = ("success", "failure", "unknown")  # ElevenLabs' analysis.call_successful
MAX_PAGE_SIZE = 1000  # the API allows 100; internal walks (backfills, benchmarks) may ask for more


@dataclass
class CallRecord:
    """One row of the call index. ``None`` means "not known (yet)": merges never write a None."""

    conversation_id: str
    phone: str | None = None  # E.164 with "+", None for web calls or before the transcript
    archive_prefix: str | None = None  # the key prefix; None until the transcript or failure arrives
    agent_id: str | None = None
    agent_name: str | None = None
    direction: str | None = None
    started_at: int | None = None  # unix seconds, UTC
    duration_s: int | None = None
    message_count: int | None = None
    transcript_key: str | None = None
    transcript_bytes: int | None = None
    has_audio: bool | None = None
    audio_key: str | None = None
    audio_bytes: int | None = None
    status: str | None = None
    call_successful: str | None = None
    termination_reason: str | None = None
    failure_reason: str | None = None
    cost: int | None = None  # ElevenLabs credits
    cost_usd: float | None = None
    language: str | None = None
    summary_title: str | None = None
    summary: str | None = None
    memory_status: str | None = None  # caller memory: pending / done / failed / skipped_no_phone / expired
    memory_updated_at: int | None = None
    event_at: int | None = None  # event_timestamp of the call-level event we hold
    # The write protocol's order (docs/decisions.md, services/core/domain/versions.py): the version of
    # the call-level event the row, the archive object and the analytics rows hold, and of the audio.
    version: str | None = None
    audio_version: str | None = None
    reported_phone: str | None = None  # a number a newer event reported, when it differs from ``phone``
    # The transcript says the call has audio (``data.has_audio``): until audio is in place, CallVault
    # fetches it from the ElevenLabs API after a grace period (services/sync). None: not said.
    expects_audio: bool | None = None
    # When the call's analytics rows expired under a retention rule (#13): the call stays, its rows are
    # gone for good (verify, backfill and later events leave them out). None: they are kept.
    analytics_expired_at: int | None = None
    ingested_at: int | None = None  # first time any event of this call was stored
    updated_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CallRecord":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


# Fields written by a transcription or initiation-failure event. Audio events own AUDIO_FIELDS;
# the two sets are disjoint so the two events merge without reading each other's writes.
AUDIO_FIELDS: tuple[str, ...] = ("has_audio", "audio_key", "audio_bytes", "audio_version")
CALL_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in fields(CallRecord)
    if f.name not in AUDIO_FIELDS and f.name not in {"conversation_id", "ingested_at", "updated_at"}
)
# Of those, the ones a newer version REPLACES (a None clears an older value: the row describes one
# version, never a blend). Merged instead (a None keeps the stored value): the folder and its phone,
# which ``claim_place`` sets once, the memory job's progress, which the memory worker owns, and the
# analytics rows' expiry, which retention owns (``CallIndex.expire_analytics``).
MERGED_CALL_FIELDS: tuple[str, ...] = (
    "phone",
    "archive_prefix",
    "memory_status",
    "memory_updated_at",
    "analytics_expired_at",
)
REPLACED_CALL_FIELDS: tuple[str, ...] = tuple(f for f in CALL_FIELDS if f not in MERGED_CALL_FIELDS)


@dataclass(frozen=True)
class AudioFacts:
    key: str
    size: int
    version: str | None = None


@dataclass(frozen=True)
class CallQuery:
    """A page request over the index, newest first. ``after`` is the adapter's position, opaque to callers."""

    phone: str | None = None
    agent_id: str | None = None
    since: int | None = None  # inclusive, unix seconds
    until: int | None = None  # exclusive, unix seconds
    status: str | None = None
    call_successful: str | None = None
    limit: int = 25
    after: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}")


@dataclass
class CallPage:
    items: list[CallRecord] = field(default_factory=list)
    next: dict[str, Any] | None = None


@dataclass(frozen=True)
class WebhookEvent:
    type: str
    event_timestamp: int | None
    data: dict[str, Any]
    # ``data`` as the archive stores it (orjson, one line), when the envelope check already encoded it:
    # a long call is then encoded once per webhook, not twice.
    document: bytes | None = field(default=None, compare=False, repr=False)
