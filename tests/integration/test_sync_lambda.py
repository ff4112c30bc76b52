"""The sync Lambdas (services/sync/handler.py) in process, on a moto server that enforces IAM, each with
the credentials of its own role from infra/template.yaml, as tests/infra/test_built_handlers.py does
for the built packages: the ingest function sends the delayed SQS message, the audio fetch function
streams the MP3 from the stand-in ElevenLabs API into S3 (a multipart upload above 8 MiB) and reports
partial batch failures; the sync function archives what the API has and the archive lacks.

moto enforces S3 actions and resources in full, SQS, DynamoDB and SSM by action only (their ARNs are
checked statically in tests/infra)."""

import gzip
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from services.core.config import get_settings
from services.core.secrets import read_ssm_secret
from services.ingest import handler as ingest_handler
from services.sync import handler
from services.sync.wiring import build_scheduled_sync
from tests.infra.cfn import Json, Stack, function_properties, template
from tests.infra.test_built_handlers import ACCOUNT, REGION, _as_moto_enforces, _post, moto_server
from tests.support import SECRET, signed_headers
from tests.support_elevenlabs import API_KEY, PHONE, ElevenLabsStandIn, SyntheticAudio

BUCKET = "callvault-archive-sync-lambda"
ANALYTICS_BUCKET = "callvault-analytics-sync-lambda"
TABLE = "callvault-calls-sync-lambda"
KEY_PARAM = "/callvault/elevenlabs-api-key"
WEBHOOK_PARAM = "/callvault/webhook-secret"
FOLDER = PHONE.lstrip("+")
ROLES = ("IngestRole", "AudioFetchRole", "SyncRole")
GRACE_SECONDS = 2


class FakeContext:
    function_name = "callvault-sync-test"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:callvault-sync-test"
    aws_request_id = "0f4d6c1e-5b2a-4c1e-9a1e-3f2d8f0e7a11"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass
class Aws:
    endpoint: str
    stack: Stack
    queues: dict[str, str]  # logical id -> URL
    credentials: dict[str, dict[str, str]]  # role (or "admin") -> credentials
    api: ElevenLabsStandIn

    def client(self, service: Any, role: str = "admin") -> Any:
        creds = self.credentials[role]
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds.get("SessionToken"),
        )

    def environment(self, function: str) -> dict[str, str]:
        variables = function_properties(self.stack.tpl, function)["Environment"]["Variables"]
        return {k: str(v) for k, v in self.stack.eval(variables).items()}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    with moto_server(tmp_path_factory) as endpoint, ElevenLabsStandIn() as api:
        yield _stand_up(endpoint, api)


def _root(service: Any, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _stand_up(endpoint: str, api: ElevenLabsStandIn) -> Aws:
    """The stack's stateful resources and the three roles on moto, from the template's own properties."""
    tpl = template()
    sqs = _root("sqs", endpoint)
    queues: dict[str, str] = {}
    queue_arns: dict[str, str] = {}
    for name in ("AudioFetchDeadLetterQueue", "AudioFetchQueue", "MemoryQueue"):
        props = dict(tpl["Resources"][name]["Properties"])
        attributes = {k: str(props[k]) for k in ("VisibilityTimeout", "MessageRetentionPeriod") if k in props}
        if name == "AudioFetchQueue":  # its redrive policy, as the template says, to the queue made above
            redrive = props["RedrivePolicy"]
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": queue_arns["AudioFetchDeadLetterQueue"],
                    "maxReceiveCount": redrive["maxReceiveCount"],
                }
            )
        queues[name] = sqs.create_queue(QueueName=f"callvault-{name}", Attributes=attributes)["QueueUrl"]
        queue_arns[name] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:callvault-{name}"
    stack = Stack(
        tpl,
        parameters={
            "ElevenLabsApiKeyParam": KEY_PARAM,
            "ElevenLabsBaseUrl": api.url,
            "WebhookSecretParameterName": WEBHOOK_PARAM,
            "AudioGraceSeconds": GRACE_SECONDS,
        },
        refs={"ArchiveBucket": BUCKET, "CallsTable": TABLE, **queues},
        attrs={
            "ArchiveBucket.Arn": f"arn:aws:s3:::{BUCKET}",
            "Analytics.Outputs.AnalyticsBucketName": ANALYTICS_BUCKET,
            "Analytics.Outputs.AnalyticsBucketArn": f"arn:aws:s3:::{ANALYTICS_BUCKET}",
            "CallsTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}",
            **{f"{name}.Arn": arn for name, arn in queue_arns.items()},
        },
        account=ACCOUNT,
    )
    for bucket in (BUCKET, ANALYTICS_BUCKET):
        _root("s3", endpoint).create_bucket(Bucket=bucket)
    table = stack.eval(tpl["Resources"]["CallsTable"]["Properties"])
    _root("dynamodb", endpoint).create_table(
        TableName=TABLE,
        BillingMode=table["BillingMode"],
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
    )
    ssm = _root("ssm", endpoint)
    ssm.put_parameter(Name=KEY_PARAM, Value=API_KEY, Type="SecureString")
    ssm.put_parameter(Name=WEBHOOK_PARAM, Value=SECRET, Type="SecureString")

    iam, sts = _root("iam", endpoint), _root("sts", endpoint)
    credentials: dict[str, dict[str, str]] = {}
    for name in ROLES:
        props = stack.eval(tpl["Resources"][name]["Properties"])
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
        for policy in props["Policies"]:
            document = _as_moto_enforces(policy["PolicyDocument"])
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
        role = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}", RoleSessionName=name)
        credentials[name] = role["Credentials"]
    iam.create_user(UserName="test-admin")
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="test-admin", PolicyName="everything", PolicyDocument=json.dumps(everything))
    key = iam.create_access_key(UserName="test-admin")["AccessKey"]
    credentials["admin"] = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
    _post(f"{endpoint}/moto-api/reset-auth", b"0")  # from here on moto enforces IAM policies
    return Aws(endpoint, stack, queues, credentials, api)


@pytest.fixture
def as_function(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """``as_function("AudioFetchFunction")``: this process becomes a cold start of that function, with
    its template environment and its role's credentials (nothing from the developer's machine)."""
    roles = {"IngestFunction": "IngestRole", "AudioFetchFunction": "AudioFetchRole", "SyncFunction": "SyncRole"}

    def become(function: str, **extra: str) -> None:
        for name in list(os.environ):
            if name.startswith(("AWS_", "CALLVAULT_", "ELEVENLABS_")):
                monkeypatch.delenv(name)
        creds = aws.credentials[roles[function]]
        variables = {
            **aws.environment(function),
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": aws.endpoint,
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
            "CALLVAULT_ELEVENLABS_MAX_ATTEMPTS": "2",  # a failing fetch fails after one short backoff
            **extra,
        }
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        _cold_start()

    yield become
    _cold_start()


def _cold_start() -> None:
    # A new container's boto3 has no default session yet: one an earlier test made keeps the credentials
    # it resolved then (another moto's keys), whatever the environment now says.
    boto3.DEFAULT_SESSION = None
    get_settings.cache_clear()
    read_ssm_secret.cache_clear()
    handler._fetcher.cache_clear()
    handler._syncer.cache_clear()
    ingest_handler._receiver = None


def sqs_event(messages: list[dict[str, Any]]) -> Json:
    """An SQS event as Lambda's event source mapping delivers the received messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    "ApproximateReceiveCount": message.get("Attributes", {}).get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": message.get("Attributes", {}).get("SentTimestamp", "0"),
                    "SenderId": "AROAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "0",
                },
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:callvault-AudioFetchQueue",
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


SCHEDULED_EVENT: Json = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eab",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": ACCOUNT,
    "time": "2026-12-05T08:00:00Z",
    "region": REGION,
    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/callvault-SyncFunctionScheduled"],
    "detail": {},
}


def webhook_event(body: bytes) -> Json:
    headers = {k.lower(): v for k, v in signed_headers(body).items()}
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/elevenlabs",
        "rawPath": "/webhooks/elevenlabs",
        "rawQueryString": "",
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", **headers},
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123",
            "http": {
                "method": "POST",
                "path": "/webhooks/elevenlabs",
                "protocol": "HTTP/1.1",
                "sourceIp": "34.67.146.145",
            },
            "requestId": "req-sync-lambda",
            "routeKey": "POST /webhooks/elevenlabs",
            "stage": "$default",
            "timeEpoch": 1795516800000,
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }


def receive(aws: Aws, queue: str, *, wait: int = 0) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = (
        aws.client("sqs")
        .receive_message(
            QueueUrl=aws.queues[queue],
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
        )
        .get("Messages", [])
    )
    return received


def s3_sha256(aws: Aws, key: str) -> str:
    body = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def row(aws: Aws, conversation_id: str) -> dict[str, Any]:
    item: dict[str, Any] = (
        aws.client("dynamodb")
        .get_item(TableName=TABLE, Key={"conversation_id": {"S": conversation_id}}, ConsistentRead=True)
        .get("Item", {})
    )
    return item


def test_a_transcript_without_audio_schedules_a_delayed_fetch_that_streams_a_long_call_into_s3(
    aws: Aws, as_function: Any
) -> None:
    """Ingest -> SQS (DelaySeconds = the grace) -> the audio fetch function -> a multipart upload."""
    audio = SyntheticAudio(9 * 1024 * 1024 + 123, "long-call-on-aws")  # two 8 MiB parts
    cid = aws.api.add("conv_lambda_long_call", audio=audio, duration=5400)
    body = json.dumps(
        {"type": "post_call_transcription", "event_timestamp": int(time.time()), "data": aws.api.document(cid)}
    ).encode()
    as_function("IngestFunction")
    response = ingest_handler.lambda_handler(webhook_event(body), FakeContext())
    assert response["statusCode"] == 200, response
    assert "audio_key" not in row(aws, cid)

    assert receive(aws, "AudioFetchQueue") == []  # delayed: not yet visible
    deadline = time.monotonic() + 30
    messages: list[dict[str, Any]] = []
    while not messages:
        assert time.monotonic() < deadline, "the delayed fetch message never became visible"
        messages = receive(aws, "AudioFetchQueue", wait=1)
    assert [json.loads(m["Body"]) for m in messages] == [{"conversation_id": cid}]

    aws.api.reset_counts()
    as_function("AudioFetchFunction")
    result = handler.audio_fetch_handler(sqs_event(messages), FakeContext())

    assert result == {"batchItemFailures": []}
    assert aws.api.requests["audio"] == 1
    key = f"{FOLDER}/{cid}.mp3"
    assert row(aws, cid)["audio_key"]["S"] == key
    head = aws.client("s3").head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == audio.size
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload of two parts
    assert s3_sha256(aws, key) == audio.sha256()
    assert aws.client("s3").list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []

    again = handler.audio_fetch_handler(sqs_event(messages), FakeContext())  # a redelivery: audio in place
    assert again == {"batchItemFailures": []}
    assert aws.api.requests["audio"] == 1


def test_a_failed_fetch_is_reported_as_a_batch_item_failure_and_the_others_go_through(
    aws: Aws, as_function: Any
) -> None:
    ok, failing, gone = (aws.api.add(f"conv_lambda_batch_{name}") for name in ("ok", "failing", "gone"))
    as_function("SyncFunction")  # archive the three transcripts first, without their audio
    archive = handler._syncer().syncer.archive
    for cid in (ok, failing, gone):
        assert archive.archive_conversation(aws.api.document(cid), int(time.time())) == "stored"
    aws.api.fail_next(2, 503, kind="audio", path=failing)  # both attempts
    aws.api.remove(gone)
    sqs = aws.client("sqs")
    for body in [*(json.dumps({"conversation_id": cid}) for cid in (ok, failing, gone)), "not json"]:
        sqs.send_message(QueueUrl=aws.queues["AudioFetchQueue"], MessageBody=body)
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(messages) < 4:
        assert time.monotonic() < deadline
        messages += receive(aws, "AudioFetchQueue", wait=1)
    by_body = {m["Body"]: m["MessageId"] for m in messages}

    as_function("AudioFetchFunction")
    result = handler.audio_fetch_handler(sqs_event(messages), FakeContext())

    failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
    assert failed == {by_body[json.dumps({"conversation_id": failing})], by_body["not json"]}
    assert s3_sha256(aws, f"{FOLDER}/{ok}.mp3") == aws.api.conversation(ok).audio_sha256()
    assert "audio_key" not in row(aws, failing) and "audio_key" not in row(aws, gone)
    assert row(aws, gone)["transcript_key"]["S"] == f"{FOLDER}/{gone}.json"  # gone upstream: kept here


def test_the_scheduled_sync_archives_what_the_archive_lacks_and_keeps_a_watermark(aws: Aws, as_function: Any) -> None:
    start = int(time.time()) - 86_400  # later than the other tests' calls (2025)
    ids = aws.api.add_many(3, start=start, id_prefix="conv_lambda_sync_")
    as_function("SyncFunction")
    aws.api.reset_counts()

    first = handler.sync_handler(SCHEDULED_EVENT, FakeContext())

    assert first["failed"] == [] and first["new"] >= 3 and first["audio_fetched"] >= 3
    for cid in ids:
        assert s3_sha256(aws, f"{FOLDER}/{cid}.mp3") == aws.api.conversation(cid).audio_sha256()
        json_key = f"{FOLDER}/{cid}.json"
        archived = aws.client("s3").get_object(Bucket=BUCKET, Key=json_key)["Body"].read()
        assert json.loads(archived) == aws.api.document(cid)
    watermark = row(aws, "~sync/all")["watermark"]["N"]
    assert start < int(watermark) <= time.time()  # where this run started: nothing was left open
    memory_jobs = [json.loads(m["Body"]) for m in receive(aws, "MemoryQueue")]
    assert {job.get("conversation_id") for job in memory_jobs} >= set(ids)  # as a webhook's would

    aws.api.reset_counts()
    as_function("SyncFunction")  # a new cold start reads the watermark from the table
    second = handler.sync_handler(SCHEDULED_EVENT, FakeContext())
    assert (second["new"], second["updated"], second["audio_fetched"], second["failed"]) == (0, 0, 0, [])
    assert aws.api.requests == {"list": 1, "get": 0, "audio": 0, "delete": 0, "other": 0}


def test_moto_enforces_the_sync_roles(aws: Aws) -> None:
    """Without this the tests above could pass on a moto that allowed everything."""
    fetch_s3 = aws.client("s3", "AudioFetchRole")
    fetch_s3.put_object(Bucket=BUCKET, Key="unknown/conv_probe_sync.json", Body=b"{}")
    with pytest.raises(ClientError, match="AccessDenied"):
        fetch_s3.delete_object(Bucket=BUCKET, Key="unknown/conv_probe_sync.json")
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("sqs", "AudioFetchRole").send_message(QueueUrl=aws.queues["MemoryQueue"], MessageBody="{}")
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("dynamodb", "SyncRole").query(
            TableName=TABLE, KeyConditionExpression="conversation_id = :c", ExpressionAttributeValues={":c": {"S": "x"}}
        )
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("ssm", "SyncRole").put_parameter(Name="/callvault/other", Value="x", Type="String")


def test_two_syncs_at_once_leave_each_call_archived_once(aws: Aws, as_function: Any) -> None:
    """A manual invoke beside the schedule (or reserved concurrency 0): two containers, one window."""
    start = int(time.time()) - 43_200
    ids = aws.api.add_many(12, start=start, id_prefix="conv_lambda_overlap_")
    as_function("SyncFunction")
    syncers = [build_scheduled_sync(get_settings()).syncer for _ in range(2)]  # each its own clients, as two containers
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        results[i] = syncers[i].run(since=start - 60)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    assert all(r is not None and r.failures == [] for r in results), results
    s3 = aws.client("s3")
    for cid in ids:
        item = row(aws, cid)
        assert (item["transcript_key"]["S"], item["audio_key"]["S"]) == (f"{FOLDER}/{cid}.json", f"{FOLDER}/{cid}.mp3")
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{FOLDER}/{cid}.")["Contents"]
        assert sorted(o["Key"] for o in listed) == [f"{FOLDER}/{cid}.json", f"{FOLDER}/{cid}.mp3"]
        archived = s3.get_object(Bucket=BUCKET, Key=f"{FOLDER}/{cid}.json")["Body"].read()
        assert json.loads(archived) == aws.api.document(cid)
        assert s3_sha256(aws, f"{FOLDER}/{cid}.mp3") == aws.api.conversation(cid).audio_sha256()
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="_pending-audio/").get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_calls_the_scheduled_sync_writes_into_closed_days_are_merged_before_it_ends(aws: Aws, as_function: Any) -> None:
    """Calls older than two days that webhooks missed: their analytics rows are folded into their day
    object by the run that wrote them (with the sync role's own permissions), not an hour later."""
    start = (int(time.time()) // 86_400 - 5) * 86_400 + 36_000  # 10:00 UTC five days ago: a closed day
    dt = time.strftime("%Y-%m-%d", time.gmtime(start))
    overlap = get_settings().sync_overlap_seconds
    first = aws.api.add(f"conv_lambda_late_{start}_a", start=start)
    second = aws.api.add(f"conv_lambda_late_{start}_b", start=start + 60)
    aws.api.remove(second)  # listed only from the second run on
    s3 = aws.client("s3")

    def since(moment: int) -> None:  # this run's window starts a minute before ``moment``
        aws.client("dynamodb").update_item(
            TableName=TABLE,
            Key={"conversation_id": {"S": "~sync/all"}},
            UpdateExpression="SET watermark = :w",
            ExpressionAttributeValues={":w": {"N": str(moment - 60 + overlap)}},
        )

    def objects(table: str) -> dict[str, list[str]]:
        listed = s3.list_objects_v2(Bucket=ANALYTICS_BUCKET, Prefix=f"{table}/dt={dt}/").get("Contents", [])
        found: dict[str, list[str]] = {}
        for item in listed:
            body = gzip.decompress(s3.get_object(Bucket=ANALYTICS_BUCKET, Key=item["Key"])["Body"].read())
            rows = [json.loads(line) for line in body.splitlines() if line.strip()]
            found[item["Key"].rsplit("/", 1)[1]] = [r["conversation_id"] for r in rows]
        return found

    for added, expected in ((first, [first]), (second, [first, second])):
        if added == second:
            aws.api.add(second, start=start + 60)
        since(start)
        as_function("SyncFunction")
        assert added not in handler.sync_handler(SCHEDULED_EVENT, FakeContext())["failed"]
        calls = objects("calls")
        assert list(calls) == ["day.compacted.json.gz"], calls  # no per-call object left to count twice
        assert sorted(calls["day.compacted.json.gz"]) == expected
        for table in ("messages", "evaluations"):
            assert set(objects(table)) <= {"day.compacted.json.gz"}
