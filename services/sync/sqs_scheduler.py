"""The ingest Archiver's ``AudioFetchScheduler`` on AWS: one SQS message per call whose transcript says
``has_audio`` while no audio is in place, delivered after the grace period (``DelaySeconds``, at most
SQS's 900 s) to the audio fetch function (``services.sync.handler.audio_fetch_handler``).

The body holds the conversation id only: no phone number, no transcript. This runs before the
webhook's 200, so timeouts and retries are short, and it never raises: a message that could not be
sent is logged, and the scheduled sync (which fetches any audio still missing) is the backstop.
"""

import logging
from typing import Any

import orjson

log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds


def fetch_message(conversation_id: str) -> str:
    """The message body the audio fetch function reads."""
    return orjson.dumps({"conversation_id": conversation_id}).decode()


class SqsAudioFetchScheduler:
    def __init__(self, queue_url: str, delay_seconds: int, client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"})
            client = boto3.client("sqs", config=config)
        self.queue_url = queue_url
        self.delay_seconds = min(max(int(delay_seconds), 0), MAX_DELAY_SECONDS)
        self._sqs = client

    def schedule(self, conversation_id: str) -> None:
        try:
            self._sqs.send_message(
                QueueUrl=self.queue_url, MessageBody=fetch_message(conversation_id), DelaySeconds=self.delay_seconds
            )
        except Exception as exc:  # botocore's errors and anything else: the sync fetches it later
            log.warning(
                "audio fetch not scheduled; the next sync fetches the audio",
                extra={"conversation_id": conversation_id, "error_code": _error_code(exc)},
            )


def _error_code(exc: Exception) -> str:
    """AWS's error code, or the exception's type: never its message (it may quote a URL)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__
