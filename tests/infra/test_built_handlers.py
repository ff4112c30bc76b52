"""Each function, exactly as ``sam build`` packaged it, runs and does its job under its own IAM role.

The handler runs in a separate interpreter (``python -I -S``: no site-packages, no PYTHONPATH, no
working directory on the path) whose ``sys.path`` is only the function's build folder and its
layers' ``python/`` folders, as on Lambda (/var/task, /opt/python). So a module missing from the
package fails here, including the ones imported lazily on the first event (PynamoDB, the S3 adapter).

AWS is a moto server in its own process, set up from the template: the bucket, the table with the
template's keys and indexes, the SSM SecureStrings, and each function's role with the template's
policy. The functions run with credentials of their role, and moto enforces the policies: S3 actions
and resources in full; DynamoDB and SSM by action only (moto authorizes those against "*", so their
resource ARNs are checked statically in test_template_matches_code.py and test_security.py). What
moto cannot show: that real S3 answers HEAD with 403 instead of 404 without s3:ListBucket.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from services.analytics.rows import decode, encode
from services.analytics.tables import TABLES, day_object_key, is_closed, object_key, parse_object_key
from tests.infra.cfn import Json, Stack, build_dir, function_properties, load, resources_of_type
from tests.support import SECRET, TRANSCRIPTION, fixture_bytes, fixture_json, free_port, signed_headers

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
BUCKET = "callvault-archivebucket-built-test"
ANALYTICS_BUCKET = "callvault-analytics-built-test"
TABLE = "callvault-calls-built-test"
API_KEY = "cvk_built_handler_test_key"
SIGNING_KEY = "signing-key-for-the-built-handler-test-0123456789"

# Runs inside the isolated interpreter: import the handler, feed it the events, report what it
# answered and every module that did not come from the package or the standard library.
RUNNER = r"""
import importlib, json, sys, sysconfig, types
job = json.load(sys.stdin)
sys.path[:0] = job["paths"]
module_name, function_name = job["handler"].rsplit(".", 1)
handler = getattr(importlib.import_module(module_name), function_name)
context = types.SimpleNamespace(
    function_name=job["function_name"], memory_limit_in_mb=512, aws_request_id="req-built-test",
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:" + job["function_name"],
    get_remaining_time_in_millis=lambda: 29000,
)
responses = [handler(event, context) for event in job["events"]]
allowed = tuple(job["paths"]) + tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")})
outside = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None) and not module.__file__.startswith(allowed)
)
modules = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"responses": responses, "outside": outside, "modules": modules}))
"""


@dataclass
class BuiltFunction:
    logical_id: str
    handler: str
    paths: list[str]  # /var/task, then each layer's /opt/python
    environment: dict[str, str]
    role: str  # the logical id of its IAM role


@dataclass
class Aws:
    endpoint: str
    stack: Stack
    credentials: dict[str, dict[str, str]]  # role logical id (or "admin") -> credentials

    def client(self, service: str, role: str = "admin") -> Any:
        return _client(service, self.endpoint, self.credentials[role])


MOTO_ROOT = {"AccessKeyId": "testing", "SecretAccessKey": "testing"}  # moto accepts any key until IAM is on


def _client(service: Any, endpoint: str, creds: dict[str, str] = MOTO_ROOT) -> Any:
    """A boto3 client of the moto server."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds.get("SessionToken"),
    )


@pytest.fixture(scope="module")
def built() -> Json:
    return load(build_dir() / "template.yaml")


def built_function(built: Json, logical_id: str, stack: Stack) -> BuiltFunction:
    root = build_dir()
    props = function_properties(built, logical_id)
    layers = [built["Resources"][layer["Ref"]]["Properties"]["ContentUri"] for layer in props.get("Layers", [])]
    paths = [str((root / props["CodeUri"]).resolve())] + [str((root / layer / "python").resolve()) for layer in layers]
    for path in paths:
        assert Path(path).is_dir(), f"{logical_id}: {path} is missing from the build"
    env = {k: str(v) for k, v in stack.eval(props.get("Environment", {}).get("Variables", {})).items()}
    return BuiltFunction(logical_id, props["Handler"], paths, env, props["Role"]["Fn::GetAtt"][0])


def test_the_build_holds_the_current_source(built: Json) -> None:
    """A stale build would test yesterday's code: every source file is in the package, byte for byte."""
    root = build_dir()
    source = Path(__file__).resolve().parents[2] / "services"
    for logical_id in resources_of_type(built, "AWS::Serverless::Function"):
        package = root / function_properties(built, logical_id)["CodeUri"] / "services"
        for path in source.rglob("*.py"):
            copy = package / path.relative_to(source)
            assert copy.is_file() and copy.read_bytes() == path.read_bytes(), (
                f"{logical_id}: {copy} differs from {path}; run `make infra-build`"
            )


@pytest.fixture(scope="module")
def aws(built: Json, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    with moto_server(tmp_path_factory) as endpoint:
        yield enforcing_roles(endpoint, _stand_up(built, endpoint), resources_of_type(built, "AWS::IAM::Role"))


@contextmanager
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server on a free loopback port, up and reset; its endpoint. Stopped on exit."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    executable = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        _wait_until_up(endpoint, server)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def enforcing_roles(endpoint: str, stack: Stack, roles: Iterable[str]) -> Aws:
    """Credentials for each role and an unrestricted admin, then moto told to enforce IAM policies."""
    credentials = {role: _assume(endpoint, role) for role in roles}
    credentials["admin"] = _test_admin(endpoint)
    _post(f"{endpoint}/moto-api/reset-auth", b"0")  # from here on moto enforces IAM policies
    return Aws(endpoint, stack, credentials)


def _wait_until_up(endpoint: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "moto_server exited"
        try:
            _post(f"{endpoint}/moto-api/reset", b"")
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("moto_server did not start within 30 s")


def _post(url: str, data: bytes) -> None:
    # A loopback URL this module built (moto's control API); the content type keeps Flask off the body.
    request = urllib.request.Request(url, data=data, method="POST", headers={"content-type": "text/plain"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310
        pass


def _stand_up(built: Json, endpoint: str) -> Stack:
    """Create the stack's stateful resources and roles on moto, from the template's own properties."""
    buckets = {name: f"callvault-{name.lower()}-built-test" for name in resources_of_type(built, "AWS::S3::Bucket")}
    assert buckets["ArchiveBucket"] == BUCKET
    arns = {f"{name}.Arn": f"arn:aws:s3:::{bucket}" for name, bucket in buckets.items()}
    # The nested analytics stack's bucket, as its outputs name it.
    arns["Analytics.Outputs.AnalyticsBucketName"] = ANALYTICS_BUCKET
    arns["Analytics.Outputs.AnalyticsBucketArn"] = f"arn:aws:s3:::{ANALYTICS_BUCKET}"
    arns["Analytics.Outputs.ResultsBucketName"] = f"{ANALYTICS_BUCKET}-results"
    arns["Analytics.Outputs.ResultsBucketArn"] = f"arn:aws:s3:::{ANALYTICS_BUCKET}-results"
    arns["Analytics.Outputs.WorkgroupName"] = "callvault-built-test"
    arns["Analytics.Outputs.GlueDatabase"] = "callvault_built_test"
    arns["CallsTable.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"
    for name in resources_of_type(built, "AWS::Logs::LogGroup"):
        arns[f"{name}.Arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/callvault/{name}:*"
    stack = Stack(built, refs={**buckets, "CallsTable": TABLE}, attrs=arns, account=ACCOUNT)

    for bucket in [*buckets.values(), ANALYTICS_BUCKET]:
        _client("s3", endpoint).create_bucket(Bucket=bucket)

    table = stack.eval(built["Resources"]["CallsTable"]["Properties"])
    _client("dynamodb", endpoint).create_table(
        TableName=TABLE,
        BillingMode=table["BillingMode"],
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
    )

    ssm = _client("ssm", endpoint)
    secrets = {
        "WebhookSecretParameterName": f"wsec_old_one,{SECRET}",  # mid-rotation: two secrets
        "ApiKeysParameterName": API_KEY,
        "CursorSigningKeyParameterName": SIGNING_KEY,
    }
    for parameter, value in secrets.items():
        ssm.put_parameter(Name=stack.parameters[parameter], Value=value, Type="SecureString")

    iam = _client("iam", endpoint)
    for name, role in resources_of_type(built, "AWS::IAM::Role").items():
        props = stack.eval(role["Properties"])
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
        for policy in props["Policies"]:
            document = _as_moto_enforces(policy["PolicyDocument"])
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    return stack


def _as_moto_enforces(document: Json) -> Json:
    """moto authorizes non-S3 actions against the resource "*": keep S3 statements whole, and let the
    others match by action alone (their ARNs are checked statically elsewhere)."""
    statements = []
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not all(a.startswith("s3:") for a in actions):
            statement = {**statement, "Resource": "*"}
        statements.append(statement)
    return {**document, "Statement": statements}


def _test_admin(endpoint: str) -> dict[str, str]:
    """A moto-only user allowed everything, for the tests' own setup and checks once IAM is enforced."""
    iam = _client("iam", endpoint)
    iam.create_user(UserName="test-admin")
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="test-admin", PolicyName="everything", PolicyDocument=json.dumps(everything))
    key = iam.create_access_key(UserName="test-admin")["AccessKey"]
    return {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}


def _assume(endpoint: str, role: str) -> dict[str, str]:
    sts = _client("sts", endpoint)
    response = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName=role)
    credentials: dict[str, str] = response["Credentials"]
    return credentials


def run(function: BuiltFunction, aws: Aws, events: list[Json]) -> list[Json]:
    """One cold start of the packaged function, with its role's credentials; its responses."""
    responses: list[Json] = run_job(function, aws, events)["responses"]
    return responses


def run_job(function: BuiltFunction, aws: Aws, events: list[Json]) -> Json:
    """One successful cold start: its responses, and every top-level module it loaded (``modules``)."""
    done = run_process(function, aws, events)
    assert done.returncode == 0, f"{function.logical_id} failed:\n{done.stderr[-4000:]}"
    result: Json = json.loads(done.stdout.splitlines()[-1])
    assert result["outside"] == [], f"{function.logical_id} loaded modules from outside its package"
    return result


def run_process(
    function: BuiltFunction, aws: Aws, events: list[Json], creds: dict[str, Any] | None = None
) -> "subprocess.CompletedProcess[str]":
    """One cold start with the credentials of its role (or ``creds``), whatever its outcome."""
    creds = creds or aws.credentials[function.role]
    env = {
        **function.environment,
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_LAMBDA_FUNCTION_NAME": function.logical_id,
    }
    job = {"paths": function.paths, "handler": function.handler, "events": events, "function_name": function.logical_id}
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", RUNNER],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        cwd=function.paths[0],
        timeout=120,
        check=False,
    )


def http_event(
    method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None, query: str = ""
) -> Json:
    """An API Gateway HTTP API (payload 2.0) event."""
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            **{k.lower(): v for k, v in (headers or {}).items()},
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.9",
                "userAgent": "t",
            },
            "requestId": f"req-{method}-{path}",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "24/Nov/2026:10:40:00 +0000",
            "timeEpoch": 1795516800000,
        },
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
    }


def test_built_ingest_archives_a_signed_webhook_with_only_its_role(built: Json, aws: Aws) -> None:
    ingest = built_function(built, "IngestFunction", aws.stack)
    body = fixture_bytes(TRANSCRIPTION)
    conversation = fixture_json(TRANSCRIPTION)["data"]["conversation_id"]

    accepted, refused = run(
        ingest,
        aws,
        [
            http_event("POST", "/webhooks/elevenlabs", body=body, headers=signed_headers(body)),
            http_event("POST", "/webhooks/elevenlabs", body=body, headers=signed_headers(body, "wrong-secret")),
        ],
    )

    assert accepted["statusCode"] == 200, accepted
    assert refused["statusCode"] == 401, refused
    item = aws.client("dynamodb").get_item(TableName=TABLE, Key={"conversation_id": {"S": conversation}})["Item"]
    key = item["transcript_key"]["S"]
    stored = aws.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert json.loads(stored)["conversation_id"] == conversation


def test_built_search_lists_and_reads_calls_with_only_its_role(built: Json, aws: Aws) -> None:
    ingest = built_function(built, "IngestFunction", aws.stack)
    search = built_function(built, "SearchFunction", aws.stack)
    body = fixture_bytes(TRANSCRIPTION)
    conversation = fixture_json(TRANSCRIPTION)["data"]["conversation_id"]
    run(ingest, aws, [http_event("POST", "/webhooks/elevenlabs", body=body, headers=signed_headers(body))])
    auth = {"authorization": f"Bearer {API_KEY}"}

    listed, one, health, anonymous = run(
        search,
        aws,
        [
            http_event("GET", "/calls", headers=auth, query="limit=5"),
            http_event("GET", f"/calls/{conversation}", headers=auth),
            http_event("GET", "/healthz"),
            http_event("GET", "/calls"),
        ],
    )

    assert listed["statusCode"] == 200, listed
    assert conversation in listed["body"]
    assert one["statusCode"] == 200, one
    assert f"{BUCKET}/" in one["body"] or f"{BUCKET}." in one["body"]  # a presigned link into the archive
    assert health["statusCode"] == 200
    assert anonymous["statusCode"] == 401


def test_moto_really_enforces_the_roles(built: Json, aws: Aws) -> None:
    """Without this, the two tests above could pass on a moto that allowed everything."""
    ingest_s3 = aws.client("s3", "IngestRole")
    ingest_s3.put_object(Bucket=BUCKET, Key="_pending-audio/conv_probe.mp3", Body=b"ID3")
    ingest_s3.delete_object(Bucket=BUCKET, Key="_pending-audio/conv_probe.mp3")
    ingest_s3.put_object(Bucket=BUCKET, Key="unknown/conv_probe.json", Body=b"{}")
    with pytest.raises(ClientError, match="AccessDenied"):
        ingest_s3.delete_object(Bucket=BUCKET, Key="unknown/conv_probe.json")  # only pending audio is deleted
    search_s3 = aws.client("s3", "SearchRole")
    assert search_s3.get_object(Bucket=BUCKET, Key="unknown/conv_probe.json")["Body"].read() == b"{}"
    with pytest.raises(ClientError, match="AccessDenied"):
        search_s3.put_object(Bucket=BUCKET, Key="unknown/conv_probe.json", Body=b"{}")
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("dynamodb", "SearchRole").delete_item(TableName=TABLE, Key={"conversation_id": {"S": "x"}})
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("dynamodb", "IngestRole").query(
            TableName=TABLE, KeyConditionExpression="conversation_id = :c", ExpressionAttributeValues={":c": {"S": "x"}}
        )
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("ssm", "IngestRole").put_parameter(Name="/callvault/other", Value="x", Type="String")


# What EventBridge sends for a scheduled rule (the compaction reads nothing from it).
SCHEDULED_EVENT: Json = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": ACCOUNT,
    "time": "2026-11-24T00:30:00Z",
    "region": REGION,
    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/callvault-AnalyticsCompactFunctionDaily"],
    "detail": {},
}
COMPACT_ROLE = "AnalyticsCompactRole"
COMPACT_CLOSED_DT = "2025-03-04"  # closed for good
COMPACT_CALLS = ("conv_compact_built_a", "conv_compact_built_b")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_without(aws: Aws, role: str, action: str) -> dict[str, Any]:
    """Credentials of a copy of ``role`` that lacks one action (created on moto for this test).

    IAM enforcement is lifted while the role is made and assumed, as in the ``aws`` fixture: moto
    cannot evaluate a trust policy whose principal is a service when it checks AssumeRole.
    """
    _post(f"{aws.endpoint}/moto-api/reset-auth", b"1000")
    try:
        return _make_role_without(aws, role, action)
    finally:
        _post(f"{aws.endpoint}/moto-api/reset-auth", b"0")


def _make_role_without(aws: Aws, role: str, action: str) -> dict[str, Any]:
    props = aws.stack.eval(aws.stack.tpl["Resources"][role]["Properties"])
    name = f"{role}-without-{action.replace(':', '-')}"
    iam = aws.client("iam")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
    for policy in props["Policies"]:
        document = _as_moto_enforces(policy["PolicyDocument"])
        statements = [
            {**s, "Action": [a for a in _as_list(s["Action"]) if a != action]}
            for s in document["Statement"]
            if [a for a in _as_list(s["Action"]) if a != action]
        ]
        iam.put_role_policy(
            RoleName=name,
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps({**document, "Statement": statements}),
        )
    response = aws.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}", RoleSessionName=name)
    credentials: dict[str, Any] = response["Credentials"]
    return credentials


def _analytics_objects(aws: Aws) -> dict[str, bytes]:
    s3 = aws.client("s3")
    listed = s3.list_objects_v2(Bucket=ANALYTICS_BUCKET).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=ANALYTICS_BUCKET, Key=o["Key"])["Body"].read() for o in listed}


def test_built_compaction_merges_closed_days_with_only_its_role(built: Json, aws: Aws) -> None:
    """The role is sufficient (the run merges the closed day) and has nothing to spare: without any
    one of its S3 actions the run fails. (Its exact action list: test_security.py.)"""
    compact = built_function(built, "AnalyticsCompactFunction", aws.stack)
    open_dt = datetime.now(UTC).date().isoformat()  # open until the day after tomorrow
    s3 = aws.client("s3")
    for table in TABLES:
        for dt, conversation_id in [(COMPACT_CLOSED_DT, c) for c in COMPACT_CALLS] + [(open_dt, "conv_compact_open")]:
            body = encode(table, [{"conversation_id": conversation_id, "phone": "+16125550142"}])
            s3.put_object(Bucket=ANALYTICS_BUCKET, Key=object_key(table, dt, conversation_id), Body=body)
    open_before = {k: v for k, v in _analytics_objects(aws).items() if f"/dt={open_dt}/" in k}

    needed = {
        "s3:ListBucket": "ListObjectsV2",
        "s3:GetObject": "GetObject",
        "s3:PutObject": "PutObject",
        "s3:DeleteObject": "DeleteObject",  # the last: its run has written the day object already
    }
    for action, operation in needed.items():
        done = run_process(compact, aws, [SCHEDULED_EVENT], _role_without(aws, COMPACT_ROLE, action))
        assert done.returncode != 0, f"the compaction ran without {action}: the role grants more than it needs"
        assert f"({operation}: AccessDenied)" in done.stderr, done.stderr[-2000:]

    pending = [
        parsed
        for key in _analytics_objects(aws)
        if (parsed := parse_object_key(key)) is not None and is_closed(parsed[1], time.time())
    ]
    # Ours, and the per-call objects the ingest tests above wrote into the fixture's (closed) day.
    assert {(t, COMPACT_CLOSED_DT, c) for t in TABLES for c in COMPACT_CALLS} <= set(pending)
    days = {dt for _table, dt, _conversation in pending}
    job = run_job(compact, aws, [SCHEDULED_EVENT, SCHEDULED_EVENT])

    first, second = job["responses"]
    assert first == {
        "days_compacted": len(days),
        "day_objects_written": len({(t, dt) for t, dt, _c in pending}),
        "objects_merged": len(pending),
    }
    assert second == {"days_compacted": 0, "day_objects_written": 0, "objects_merged": 0}
    after = _analytics_objects(aws)
    assert sorted(k for k in after if f"/dt={COMPACT_CLOSED_DT}/" in k) == sorted(
        day_object_key(t, COMPACT_CLOSED_DT) for t in TABLES
    )
    for table in TABLES:
        rows = decode(after[day_object_key(table, COMPACT_CLOSED_DT)])
        assert [r["conversation_id"] for r in rows] == list(COMPACT_CALLS)
    assert {k: v for k, v in after.items() if f"/dt={open_dt}/" in k} == open_before
    assert not {"fastapi", "starlette", "mangum", "duckdb", "mem0", "pynamodb"} & set(job["modules"])

    # And it can touch nothing but the tables: not the archive, not other keys of its own bucket.
    compact_s3 = aws.client("s3", COMPACT_ROLE)
    with pytest.raises(ClientError, match="AccessDenied"):
        compact_s3.get_object(Bucket=BUCKET, Key="unknown/conv_probe.json")
    with pytest.raises(ClientError, match="AccessDenied"):
        compact_s3.put_object(Bucket=ANALYTICS_BUCKET, Key="other/conv_probe.json.gz", Body=b"")
    with pytest.raises(ClientError, match="AccessDenied"):
        compact_s3.list_objects_v2(Bucket=BUCKET)


IMPORT_ONLY = r"""
import importlib, json, sys, sysconfig
job = json.load(sys.stdin)
sys.path[:0] = job["paths"]
module_name, function_name = job["handler"].rsplit(".", 1)
assert callable(getattr(importlib.import_module(module_name), function_name))
allowed = tuple(job["paths"]) + tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")})
print(json.dumps(sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None) and not module.__file__.startswith(allowed)
)))
"""


def test_every_built_function_imports_its_handler_from_its_package_and_layers_alone(built: Json) -> None:
    """All functions, the memory worker and memory API included: a module missing from a package or
    layer fails here (the behaviour of ingest and search is exercised by the tests above)."""
    functions = resources_of_type(built, "AWS::Serverless::Function")
    assert {
        "IngestFunction",
        "SearchFunction",
        "MemoryWorkerFunction",
        "MemoryApiFunction",
        "AnalyticsCompactFunction",
    } <= set(functions)
    root = build_dir()
    for logical_id in functions:
        props = function_properties(built, logical_id)
        layers = [built["Resources"][ref["Ref"]]["Properties"]["ContentUri"] for ref in props.get("Layers", [])]
        paths = [str((root / props["CodeUri"]).resolve())] + [
            str((root / layer / "python").resolve()) for layer in layers
        ]
        job = {"paths": paths, "handler": props["Handler"]}
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", IMPORT_ONLY],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": os.environ.get("PATH", ""), "MEM0_TELEMETRY": "False", "AWS_DEFAULT_REGION": REGION},
        )
        assert done.returncode == 0, f"{logical_id}: {done.stderr[-2000:]}"
        assert json.loads(done.stdout.strip().splitlines()[-1]) == [], f"{logical_id} imported from outside its package"
