"""The ingest Lambda refuses values no store can hold, as the local server does: 400 from the shared
parser before anything reaches S3 or DynamoDB (S3 and DynamoDB under moto)."""

import json

import boto3
import pytest

from tests.integration.test_ingest_lambda import TABLE, aws, invoke, s3_keys
from tests.support import TRANSCRIPTION, fixture_json

__all__ = ["aws"]  # the fixture, imported for the tests below


def _with(field: str, value: object, *, in_metadata: bool = True) -> bytes:
    envelope = fixture_json(TRANSCRIPTION)
    (envelope["data"]["metadata"] if in_metadata else envelope["data"])[field] = value
    return json.dumps(envelope).encode()


def _nested(levels: int) -> bytes:
    envelope = fixture_json(TRANSCRIPTION)
    envelope["data"]["analysis"]["data_collection_results"] = {"x": {"value": "__nested__"}}
    return json.dumps(envelope).encode().replace(b'"__nested__"', b"[" * levels + b"]" * levels)


CASES = [
    ("start-year-10000", _with("start_time_unix_secs", 253402300800)),
    ("cost-fiat-below-dynamodb-range", _with("cost_fiat", 1e-300)),
    ("agent-id-beyond-a-dynamodb-key", _with("agent_id", "a" * 3000, in_metadata=False)),
    ("nested-300-levels", _nested(300)),
]


@pytest.mark.parametrize("body", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_lambda_storable_refuses_what_no_store_can_hold_and_writes_nothing(aws: None, body: bytes) -> None:
    status, answer = invoke(body)

    assert (status, answer["error"]["code"]) == (400, "invalid_payload")
    assert s3_keys() == []
    assert boto3.client("dynamodb").scan(TableName=TABLE)["Items"] == []
