"""The search API's wire format (pydantic v2): what clients and the OpenAPI document see.

``CallSummary`` is a call's index row minus storage internals (keys, prefixes, merge guards); the
detail route adds those back, since "the full index record" is what a support engineer wants there.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.core.domain.models import CallRecord

from .links import absolute_url
from .service import CallDetails, CallsPage, FileLink

EXAMPLE_ID = "conv_01jzfrjvcce0vsea1fcbpp9p04"
EXAMPLE_SUMMARY: dict[str, Any] = {
    "conversation_id": EXAMPLE_ID,
    "phone": "+16125550142",
    "agent_id": "agent_01jxbrc1trfxev5sdp5xk4ra67",
    "agent_name": "Story companion",
    "direction": "inbound",
    "started_at": 1751802015,
    "duration_s": 7,
    "message_count": 1,
    "status": "done",
    "call_successful": "success",
    "termination_reason": "Client disconnected: 1005",
    "failure_reason": None,
    "cost": 45,
    "cost_usd": None,
    "language": "en",
    "summary_title": "Story time",
    "summary": "The AI agent greeted Maria, offering to continue a previous story or start a new one.",
    "has_audio": True,
    "transcript_bytes": 5210,
    "audio_bytes": 18432,
}
EXAMPLE_URL = (
    "https://callvault-archive.s3.us-east-1.amazonaws.com/16125550142/conv_01jzfrjvcce0vsea1fcbpp9p04.json"
    "?response-content-disposition=attachment%3B%20filename%3D%22conv_01jzfrjvcce0vsea1fcbpp9p04.json%22"
    "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=...&X-Amz-Date=20250706T114100Z&X-Amz-Expires=900"
    "&X-Amz-SignedHeaders=host&X-Amz-Signature=..."
)
EXAMPLE_LINK: dict[str, Any] = {"url": EXAMPLE_URL, "expires_at": 1751803875, "bytes": 5210}
EXAMPLE_AUDIO_LINK: dict[str, Any] = {
    "url": EXAMPLE_URL.replace(".json", ".mp3"),
    "expires_at": 1751803875,
    "bytes": 18432,
}


class CallSummary(BaseModel):
    """One call as the index knows it. Times are unix seconds (UTC); absent facts are null."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_SUMMARY]})

    conversation_id: str
    phone: str | None = Field(None, description="E.164; null for web calls")
    agent_id: str | None = None
    agent_name: str | None = None
    direction: str | None = Field(None, description="inbound or outbound (phone calls)")
    started_at: int | None = Field(None, description="unix seconds, UTC; the listing's sort key")
    duration_s: int | None = None
    message_count: int | None = None
    status: str | None = Field(None, description="ElevenLabs status, e.g. done, failed, initiation_failed")
    call_successful: str | None = Field(None, description="ElevenLabs evaluation: success, failure or unknown")
    termination_reason: str | None = None
    failure_reason: str | None = None
    cost: int | None = Field(None, description="ElevenLabs credits")
    cost_usd: float | None = None
    language: str | None = None
    summary_title: str | None = None
    summary: str | None = Field(None, description="ElevenLabs' summary, at most 500 characters")
    has_audio: bool | None = None
    transcript_bytes: int | None = None
    audio_bytes: int | None = None
    memory_status: str | None = Field(
        None, description="caller memory: pending, done, failed or skipped_no_phone (no number, no memories)"
    )

    @classmethod
    def of(cls, record: CallRecord) -> "CallSummary":
        return cls.model_validate(record.to_dict())


class CallList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [EXAMPLE_SUMMARY], "next_cursor": "eyJwIjp7...fQ.Zx3k..."}]}
    )

    items: list[CallSummary]
    next_cursor: str | None = Field(
        None, description="pass as `cursor` (with the same filters) for the next page; null on the last page"
    )

    @classmethod
    def of(cls, page: CallsPage) -> "CallList":
        return cls(items=[CallSummary.of(r) for r in page.items], next_cursor=page.next_cursor)


class Link(BaseModel):
    url: str = Field(description="a time-limited GET link; no API key needed, it carries its own signature")
    expires_at: int = Field(description="unix seconds after which the link is refused (403)")
    bytes: int | None = Field(None, description="size of the object")

    @classmethod
    def of(cls, link: FileLink | None, base_url: str) -> "Link | None":
        if link is None:
            return None
        return cls(url=absolute_url(link.url, base_url), expires_at=link.expires_at, bytes=link.bytes)


class Links(BaseModel):
    transcript: Link | None = Field(description="the archived webhook `data` (JSON); null only before it arrived")
    audio: Link | None = Field(description="the call's MP3; null when no audio was delivered")


class CallDetail(CallSummary):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **EXAMPLE_SUMMARY,
                    "archive_prefix": "16125550142",
                    "transcript_key": f"16125550142/{EXAMPLE_ID}.json",
                    "audio_key": f"16125550142/{EXAMPLE_ID}.mp3",
                    "event_at": 1751802025,
                    "ingested_at": 1751802026,
                    "updated_at": 1751802038,
                    "links": {"transcript": EXAMPLE_LINK, "audio": EXAMPLE_AUDIO_LINK},
                }
            ]
        }
    )

    archive_prefix: str | None = None
    transcript_key: str | None = None
    audio_key: str | None = None
    event_at: int | None = None
    ingested_at: int | None = None
    updated_at: int | None = None
    links: Links

    @classmethod
    def of_details(cls, details: CallDetails, base_url: str) -> "CallDetail":
        links = Links(transcript=Link.of(details.transcript, base_url), audio=Link.of(details.audio, base_url))
        return cls.model_validate({**details.record.to_dict(), "links": links})


class ErrorInfo(BaseModel):
    code: str = Field(description="stable, for programs: unauthorized, invalid_request, invalid_cursor, ...")
    message: str = Field(description="for people: what was wrong and how to fix it")


class ErrorEnvelope(BaseModel):
    """Every error of every CallVault API, including 500s (which say only "internal")."""

    error: ErrorInfo
    request_id: str


def error_example(description: str, code: str, message: str) -> dict[str, Any]:
    """An entry of a route's ``responses``: the envelope schema with a realistic example."""
    return {
        "description": description,
        "model": ErrorEnvelope,
        "content": {
            "application/json": {
                "example": {"error": {"code": code, "message": message}, "request_id": "a1b2c3d4e5f60718"}
            }
        },
    }


class Health(BaseModel):
    status: str = "ok"
