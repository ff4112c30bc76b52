"""SqsAudioFetchScheduler: ids only, SQS's delay limit, and never an exception into the webhook's answer."""

import json
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from services.sync.sqs_scheduler import MAX_DELAY_SECONDS, SqsAudioFetchScheduler

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/callvault-AudioFetchQueue"


class RecordingSqs:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.error = error

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        if self.error is not None:
            raise self.error
        return {"MessageId": "m-1"}


@pytest.mark.parametrize(("grace", "delay"), [(300, 300), (0, 0), (900, 900), (3600, MAX_DELAY_SECONDS), (-5, 0)])
def test_sqs_audio_fetch_scheduler_sends_the_id_after_the_grace_period(grace: int, delay: int) -> None:
    sqs = RecordingSqs()

    SqsAudioFetchScheduler(QUEUE, grace, client=sqs).schedule("conv_01jzfrjvcce0vsea1fcbpp9p04")

    ((message),) = sqs.sent
    assert message["QueueUrl"] == QUEUE and message["DelaySeconds"] == delay
    assert json.loads(message["MessageBody"]) == {"conversation_id": "conv_01jzfrjvcce0vsea1fcbpp9p04"}


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "SendMessage"),
        EndpointConnectionError(endpoint_url="https://sqs.us-east-1.amazonaws.com/16125550142"),
        RuntimeError("anything else"),
    ],
)
def test_sqs_audio_fetch_scheduler_never_raises_and_logs_no_details(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    sqs = RecordingSqs(error)

    with caplog.at_level(logging.WARNING):
        SqsAudioFetchScheduler(QUEUE, 300, client=sqs).schedule("conv_1")

    (record,) = caplog.records
    assert record.conversation_id == "conv_1"  # type: ignore[attr-defined]
    assert record.error_code in {"AWS.SimpleQueueService.NonExistentQueue", "EndpointConnectionError", "RuntimeError"}  # type: ignore[attr-defined]
    assert "16125550142" not in caplog.text and "anything else" not in caplog.text
