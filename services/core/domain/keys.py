"""The only place that builds archive keys. S3 keys and local relative paths are the same strings."""

import re

from .errors import InvalidPayload

# ElevenLabs ids look like ``conv_01jxd5y165f62a0v7gtr6bkg56``; accept the same alphabet, bounded.
CONVERSATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
UNKNOWN_PHONE_PREFIX = "unknown"
PENDING_AUDIO_PREFIX = "_pending-audio"


def check_conversation_id(value: object) -> str:
    if not isinstance(value, str) or not CONVERSATION_ID.fullmatch(value):
        raise InvalidPayload(
            "data.conversation_id must be 1-128 letters, digits, '_' or '-'",
        )
    return value


def phone_prefix(e164: str | None) -> str:
    """``+16125550142`` -> ``16125550142``; calls without a phone number go under ``unknown``."""
    if e164 is None:
        return UNKNOWN_PHONE_PREFIX
    return e164.removeprefix("+")


def transcript_key(prefix: str, conversation_id: str) -> str:
    return f"{prefix}/{check_conversation_id(conversation_id)}.json"


def audio_key(prefix: str, conversation_id: str) -> str:
    return f"{prefix}/{check_conversation_id(conversation_id)}.mp3"


def pending_audio_key(conversation_id: str) -> str:
    """Where audio waits while its transcript (and so its phone number) is not known yet."""
    return f"{PENDING_AUDIO_PREFIX}/{check_conversation_id(conversation_id)}.mp3"
