"""#13 on AWS as ``sam build`` packaged it, each function under its own role with moto enforcing IAM
(the harness of test_built_handlers.py): the search function records accesses in the audit table, the
privacy function erases a caller (every S3 version) and reads the trail, and neither can do the other's
work. Deployed with a tombstone key, which the audit and erasure need.

Mem0 Platform is not reachable here: the privacy function runs with CALLVAULT_MEMORY_BACKEND=none (its
memory erasure is tested in tests/memory); every other setting is the template's.
"""

import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from botocore.exceptions import ClientError

from services.core.erased import conversation_digest
from tests.infra.cfn import Json, Stack, build_dir, load, resources_of_type
from tests.infra.test_built_handlers import (
    ACCOUNT,
    API_KEY,
    BUCKET,
    REGION,
    SIGNING_KEY,
    Aws,
    _as_moto_enforces,
    _client,
    _post,
    built_function,
    enforcing_roles,
    http_event,
    moto_server,
    run,
    run_process,
)
from tests.support import (
    SECRET,
    TRANSCRIPTION,
    TRANSCRIPTION_OUTBOUND,
    fixture_bytes,
    fixture_json,
    signed_headers,
)

TABLE = "callvault-calls-privacy-built"
AUDIT_TABLE = "callvault-audit-privacy-built"
ANALYTICS_BUCKET = "callvault-analytics-privacy-built"
READ_KEY = "cvk_built_reader"
TOMBSTONE_KEY = "tsk_built_" + "k" * 32
TOMBSTONE_PARAM = "/callvault/tombstone-key"
ROLES = ("IngestRole", "SearchRole", "PrivacyRole")


@pytest.fixture(scope="module")
def built() -> Json:
    return load(build_dir() / "template.yaml")


@pytest.fixture(scope="module")
def aws(built: Json, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    with moto_server(tmp_path_factory) as endpoint:
        yield enforcing_roles(endpoint, _stand_up(built, endpoint), ROLES)


def _stand_up(built: Json, endpoint: str) -> Stack:
    buckets = {name: f"callvault-{name.lower()}-built-test" for name in resources_of_type(built, "AWS::S3::Bucket")}
    attrs = {f"{name}.Arn": f"arn:aws:s3:::{bucket}" for name, bucket in buckets.items()}
    attrs["Analytics.Outputs.AnalyticsBucketName"] = ANALYTICS_BUCKET
    attrs["Analytics.Outputs.AnalyticsBucketArn"] = f"arn:aws:s3:::{ANALYTICS_BUCKET}"
    attrs["Analytics.Outputs.ResultsBucketArn"] = f"arn:aws:s3:::{ANALYTICS_BUCKET}-results"
    attrs["Analytics.Outputs.WorkgroupName"] = "callvault-built-test"
    attrs["Analytics.Outputs.GlueDatabase"] = "callvault_built_test"
    attrs["CallsTable.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"
    attrs["AuditTable.Arn"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{AUDIT_TABLE}"
    for name in resources_of_type(built, "AWS::Logs::LogGroup"):
        attrs[f"{name}.Arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/callvault/{name}:*"
    stack = Stack(
        built,
        parameters={"TombstoneKeyParameterName": TOMBSTONE_PARAM},
        refs={**buckets, "CallsTable": TABLE, "AuditTable": AUDIT_TABLE},
        attrs=attrs,
        account=ACCOUNT,
    )
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
        "ApiKeysParameterName": f"{API_KEY},read:{READ_KEY}",
        "CursorSigningKeyParameterName": SIGNING_KEY,
        "TombstoneKeyParameterName": TOMBSTONE_KEY,
        "Mem0ApiKeyParameterName": "m0-unused",
    }.items():
        ssm.put_parameter(Name=stack.parameters[parameter], Value=value, Type="SecureString")
    iam = _client("iam", endpoint)
    for name in ROLES:
        props = stack.eval(built["Resources"][name]["Properties"])
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
        for policy in props["Policies"]:
            document = _as_moto_deletes_versions(_as_moto_enforces(policy["PolicyDocument"]))
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    return stack


def _as_moto_deletes_versions(document: Json) -> Json:
    """moto authorizes a DeleteObjects request as s3:DeleteObject on the bucket itself, whatever the
    keys and VersionIds; real S3 asks s3:DeleteObjectVersion of each key, which is what the template
    grants. Where it does, let moto see that too (on the same buckets)."""
    extra = []
    for statement in document["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if "s3:DeleteObjectVersion" in actions:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            buckets = sorted({r.split("/", 1)[0] for r in resources})
            extra.append({"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": buckets})
    return {**document, "Statement": [*document["Statement"], *extra]}


def _audit_entries(aws: Aws) -> list[Json]:
    items: list[Json] = aws.client("dynamodb").query(
        TableName=AUDIT_TABLE,
        KeyConditionExpression="chain = :c",
        ExpressionAttributeValues={":c": {"S": "audit"}},
    )["Items"]
    return items


def test_built_search_and_privacy_functions_audit_and_erase_with_only_their_roles(built: Json, aws: Aws) -> None:
    ingest = built_function(built, "IngestFunction", aws.stack)
    search = built_function(built, "SearchFunction", aws.stack)
    privacy = built_function(built, "PrivacyFunction", aws.stack)
    privacy = replace(privacy, environment={**privacy.environment, "CALLVAULT_MEMORY_BACKEND": "none"})
    assert search.environment["CALLVAULT_TOMBSTONE_KEY_PARAM"] == TOMBSTONE_PARAM
    body = fixture_bytes(TRANSCRIPTION)
    conversation = fixture_json(TRANSCRIPTION)["data"]["conversation_id"]
    (stored,) = run(ingest, aws, [http_event("POST", "/webhooks/elevenlabs", body=body, headers=signed_headers(body))])
    assert stored["statusCode"] == 200, stored
    reader = {"authorization": f"Bearer {READ_KEY}"}
    admin = {"authorization": f"Bearer {API_KEY}"}

    (one,) = run(search, aws, [http_event("GET", f"/calls/{conversation}", headers=reader)])
    refused, erased, trail = run(
        privacy,
        aws,
        [
            http_event("DELETE", "/callers/%2B16125550142", headers=reader),
            http_event("DELETE", "/callers/%2B16125550142", headers=admin),
            http_event("GET", "/audit", headers=admin),
        ],
    )

    assert one["statusCode"] == 200, one
    assert refused["statusCode"] == 403, refused
    assert erased["statusCode"] == 200, erased
    assert json.loads(erased["body"])["conversations"] == 1
    assert trail["statusCode"] == 200, trail
    answer = json.loads(trail["body"])
    assert [e["action"] for e in answer["items"]] == ["link_issued", "erase"] and answer["chain"]["ok"] is True
    digest = conversation_digest(TOMBSTONE_KEY.encode(), conversation)
    assert all(e["subjects"] == [digest] for e in answer["items"])
    versions = aws.client("s3").list_object_versions(Bucket=BUCKET, Prefix="16125550142/")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    item = aws.client("dynamodb").get_item(TableName=TABLE, Key={"conversation_id": {"S": conversation}})
    assert "Item" not in item
    assert len(_audit_entries(aws)) == 2


def test_built_search_cannot_erase_or_rewrite_the_trail_and_privacy_cannot_write_the_archive(aws: Aws) -> None:
    """The split is real: the reader-facing role has no erasure rights, and no role edits an entry."""
    search_s3 = aws.client("s3", "SearchRole")
    with pytest.raises(ClientError, match="AccessDenied"):
        search_s3.list_object_versions(Bucket=BUCKET)
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("dynamodb", "SearchRole").update_item(
            TableName=AUDIT_TABLE,
            Key={"chain": {"S": "audit"}, "seq": {"N": "1"}},
            UpdateExpression="SET actor = :a",
            ExpressionAttributeValues={":a": {"S": "x"}},
        )
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("dynamodb", "SearchRole").delete_item(
            TableName=AUDIT_TABLE, Key={"chain": {"S": "audit"}, "seq": {"N": "1"}}
        )
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("s3", "PrivacyRole").put_object(Bucket=BUCKET, Key="unknown/conv_probe.json", Body=b"{}")
    with pytest.raises(ClientError, match="AccessDenied"):
        aws.client("dynamodb", "PrivacyRole").delete_table(TableName=AUDIT_TABLE)


def test_built_search_without_its_audit_grant_fails_closed(built: Json, aws: Aws) -> None:
    """Without PutItem the access cannot be recorded, and the link is not given out."""
    search = built_function(built, "SearchFunction", aws.stack)
    ingest = built_function(built, "IngestFunction", aws.stack)
    body = fixture_bytes(TRANSCRIPTION_OUTBOUND)
    conversation = fixture_json(TRANSCRIPTION_OUTBOUND)["data"]["conversation_id"]
    (stored,) = run(ingest, aws, [http_event("POST", "/webhooks/elevenlabs", body=body, headers=signed_headers(body))])
    assert stored["statusCode"] == 200, stored
    _post(f"{aws.endpoint}/moto-api/reset-auth", b"1000")
    try:
        iam = aws.client("iam")
        props = aws.stack.eval(built["Resources"]["SearchRole"]["Properties"])
        name = "SearchRole-without-PutItem"
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
        for policy in props["Policies"]:
            document = _as_moto_enforces(policy["PolicyDocument"])
            for statement in document["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                statement["Action"] = [a for a in actions if a != "dynamodb:PutItem"] or ["dynamodb:DescribeLimits"]
            iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
        creds = aws.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}", RoleSessionName=name)
    finally:
        _post(f"{aws.endpoint}/moto-api/reset-auth", b"0")
    before = len(_audit_entries(aws))

    done = run_process(
        search,
        aws,
        [http_event("GET", f"/calls/{conversation}", headers={"authorization": f"Bearer {READ_KEY}"})],
        creds["Credentials"],
    )

    assert done.returncode != 0, done.stdout[-2000:]  # the invocation fails: API Gateway answers 500
    assert len(_audit_entries(aws)) == before
