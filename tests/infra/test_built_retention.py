"""The daily retention function as ``sam build`` packaged it (its package, the runtime and Mem0 layers),
under its own role with moto enforcing IAM (the harness of test_built_handlers.py), reading its rules
from SSM and erasing from a stand-in Mem0 Platform through the layer's client. Deployed with a
tombstone key, without which the function does not exist.

The behaviour in depth (dry run equals the run, every kind of rule, refusals): tests/integration/
test_retention_lambda.py; this file shows the package runs it with the template's settings alone.
"""

import json
from collections.abc import Iterator

import pytest

from services.core.domain.holds import Hold
from services.core.erased import conversation_digest
from tests.infra.cfn import Json, Stack, build_dir, load, resources_of_type
from tests.infra.test_built_handlers import (
    ACCOUNT,
    BUCKET,
    REGION,
    Aws,
    _as_moto_enforces,
    _client,
    built_function,
    enforcing_roles,
    http_event,
    moto_server,
    run,
    run_job,
)
from tests.infra.test_built_privacy import _as_moto_deletes_versions
from tests.memory.fake_mem0_platform import API_KEY as MEM0_KEY
from tests.memory.fake_mem0_platform import PlatformState, fake_mem0_platform
from tests.support import (
    SECRET,
    TRANSCRIPTION,
    TRANSCRIPTION_OUTBOUND,
    fixture_bytes,
    fixture_json,
    signed_headers,
)

TABLE = "callvault-calls-retention-built"
AUDIT_TABLE = "callvault-audit-retention-built"
ANALYTICS_BUCKET = "callvault-analytics-retention-built"
TOMBSTONE_KEY = "tsk_built_retention_" + "k" * 24
TOMBSTONE_PARAM = "/callvault/tombstone-key"
ROLES = ("IngestRole", "RetentionRole")
SCHEDULED_EVENT: Json = {
    "version": "0",
    "id": "1b2c3d4e-5f60-4718-8a9b-0c1d2e3f4a5b",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": ACCOUNT,
    "time": "2026-12-05T03:15:00Z",
    "region": REGION,
    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/callvault-RetentionFunctionDaily"],
    "detail": {},
}


@pytest.fixture(scope="module")
def built() -> Json:
    return load(build_dir() / "template.yaml")


@pytest.fixture(scope="module")
def mem0() -> Iterator[tuple[str, PlatformState]]:
    with fake_mem0_platform() as (url, state):
        yield url, state


@pytest.fixture(scope="module")
def aws(built: Json, mem0: tuple[str, PlatformState], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    with moto_server(tmp_path_factory) as endpoint:
        yield enforcing_roles(endpoint, _stand_up(built, endpoint, mem0[0]), ROLES)


def _stand_up(built: Json, endpoint: str, mem0_url: str) -> Stack:
    buckets = {name: f"callvault-{name.lower()}-built-test" for name in resources_of_type(built, "AWS::S3::Bucket")}
    attrs = {f"{name}.Arn": f"arn:aws:s3:::{bucket}" for name, bucket in buckets.items()}
    attrs["Analytics.Outputs.AnalyticsBucketName"] = ANALYTICS_BUCKET
    attrs["Analytics.Outputs.AnalyticsBucketArn"] = f"arn:aws:s3:::{ANALYTICS_BUCKET}"
    attrs["CallsTable.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"
    attrs["AuditTable.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{AUDIT_TABLE}"
    for name in resources_of_type(built, "AWS::Logs::LogGroup"):
        attrs[f"{name}.Arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/callvault/{name}:*"
    stack = Stack(
        built,
        parameters={"TombstoneKeyParameterName": TOMBSTONE_PARAM, "Mem0Host": mem0_url},
        refs={**buckets, "CallsTable": TABLE, "AuditTable": AUDIT_TABLE},
        attrs=attrs,
        account=ACCOUNT,
    )
    assert stack.condition(built["Resources"]["RetentionFunction"]["Condition"])
    s3 = _client("s3", endpoint)
    for bucket in [*buckets.values(), ANALYTICS_BUCKET]:
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # as the template's
    dynamodb = _client("dynamodb", endpoint)
    for logical_id, name in (("CallsTable", TABLE), ("AuditTable", AUDIT_TABLE)):
        props = stack.eval(built["Resources"][logical_id]["Properties"])
        extra = {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]} if "GlobalSecondaryIndexes" in props else {}
        dynamodb.create_table(
            TableName=name,
            BillingMode=props["BillingMode"],
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            **extra,
        )
    ssm = _client("ssm", endpoint)
    for parameter, value in {
        "WebhookSecretParameterName": SECRET,
        "TombstoneKeyParameterName": TOMBSTONE_KEY,
        "Mem0ApiKeyParameterName": MEM0_KEY,
    }.items():
        ssm.put_parameter(Name=stack.parameters[parameter], Value=value, Type="SecureString")
    rules = "[default]\ntranscripts_days = 365\n"  # the fixtures' calls started in July 2025
    ssm.put_parameter(Name=stack.parameters["RetentionRulesParameterName"], Value=rules, Type="String")
    iam = _client("iam", endpoint)
    for name in ROLES:
        props = stack.eval(built["Resources"][name]["Properties"])
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
        for policy in props["Policies"]:
            document = _as_moto_deletes_versions(_as_moto_enforces(policy["PolicyDocument"]))
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    return stack


def test_built_retention_expires_an_old_call_everywhere_and_keeps_a_held_one(
    built: Json, aws: Aws, mem0: tuple[str, PlatformState]
) -> None:
    from services.core.adapters.dynamo_audit_log import DynamoHolds
    from services.memory.domain import MemoryItem
    from services.memory.mem0_platform import Mem0PlatformMemoryStore

    ingest = built_function(built, "IngestFunction", aws.stack)
    retention = built_function(built, "RetentionFunction", aws.stack)
    assert retention.environment["CALLVAULT_TOMBSTONE_KEY_PARAM"] == TOMBSTONE_PARAM
    old = fixture_json(TRANSCRIPTION)["data"]
    held = fixture_json(TRANSCRIPTION_OUTBOUND)["data"]
    for name in (TRANSCRIPTION, TRANSCRIPTION_OUTBOUND):
        body = fixture_bytes(name)
        (stored,) = run(
            ingest, aws, [http_event("POST", "/webhooks/elevenlabs", body=body, headers=signed_headers(body))]
        )
        assert stored["statusCode"] == 200, stored
    url, state = mem0
    phone = old["metadata"]["phone_call"]["external_number"]
    item = MemoryItem("I like tea", "user", "semantic", {"conversation_id": old["conversation_id"]})
    Mem0PlatformMemoryStore(MEM0_KEY, url).add_conversation(phone, old["conversation_id"], [item])
    admin_dynamodb = aws.client("dynamodb")
    digest = conversation_digest(TOMBSTONE_KEY.encode(), held["conversation_id"])
    DynamoHolds(AUDIT_TABLE, admin_dynamodb).place(Hold("hold_b1", "conversation", digest, "c", "case 1", 1, "cli:a"))

    assert [m for m in state.memories if m["metadata"]["conversation_id"] == old["conversation_id"]]

    job = run_job(retention, aws, [SCHEDULED_EVENT])

    (done,) = job["responses"]
    assert (done["calls"], done["held"]) == (1, 1), done
    versions = aws.client("s3").list_object_versions(Bucket=BUCKET)
    kept = {v["Key"] for v in [*versions.get("Versions", []), *versions.get("DeleteMarkers", [])]}
    assert not [k for k in kept if old["conversation_id"] in k]  # every version and marker
    assert [k for k in kept if held["conversation_id"] in k]
    rows = {
        cid: "Item" in admin_dynamodb.get_item(TableName=TABLE, Key={"conversation_id": {"S": cid}})
        for cid in (old["conversation_id"], held["conversation_id"])
    }
    assert rows == {old["conversation_id"]: False, held["conversation_id"]: True}
    assert not [m for m in state.memories if m["metadata"]["conversation_id"] == old["conversation_id"]]
    assert not {"fastapi", "starlette", "mangum", "duckdb"} & set(job["modules"])
