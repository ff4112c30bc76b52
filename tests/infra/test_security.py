"""The security properties issue #4 asks of infra/template.yaml, checked on the template itself.

checkov and cfn-lint run in `make infra-lint`; this file checks what they do not (least privilege
down to the statement, the lifecycle rules, where secrets come from) and that every suppression
of theirs is written down with a reason.
"""

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.cfn import INFRA, Json, function_properties, http_routes, load, resources_of_type, template

# Storage classes Athena reads in place; GLACIER (Flexible Retrieval) and DEEP_ARCHIVE need a restore.
ATHENA_READABLE = {"STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"}
BUCKETS = ("ArchiveBucket",)  # the analytics bucket is infra/analytics.yaml's (nested), with its own tests
COMPACT = "AnalyticsCompactFunction"
# Functions without reserved concurrency, and why (every other one takes it as a parameter).
UNRESERVED = {
    COMPACT: "runs once a day, and concurrent runs are safe (compare-and-swap): neither a slot nor a cap is needed",
    "AudioFetchFunction": "its SQS event source's MaximumConcurrency caps it; a rare short job needs no slot",
    "RetentionFunction": "runs once a day, and two runs at once are safe (erasure is idempotent): no slot or cap",
}


def _analytics() -> Json:
    return load(INFRA / template()["Resources"]["Analytics"]["Properties"]["Location"])


def _statements(role: Json) -> Iterator[tuple[Json, str | None]]:
    """Every statement of a role's inline policies, with the condition it is under (if any)."""
    for policy in role["Properties"]["Policies"]:
        for entry in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in entry:
                condition, when_true, when_false = entry["Fn::If"]
                for branch, label in ((when_true, condition), (when_false, f"!{condition}")):
                    if branch != {"Ref": "AWS::NoValue"}:
                        yield branch, label
            else:
                yield entry, None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _roles() -> dict[str, Json]:
    return resources_of_type(template(), "AWS::IAM::Role")


def _functions() -> dict[str, Json]:
    return resources_of_type(template(), "AWS::Serverless::Function")


def test_each_function_has_a_role_of_its_own_with_inline_policies_only() -> None:
    roles = [function_properties(template(), f)["Role"]["Fn::GetAtt"][0] for f in _functions()]
    assert len(roles) == len(set(roles)) == len(_functions())
    for name in roles:
        props = _roles()[name]["Properties"]
        assert "ManagedPolicyArns" not in props, f"{name}: managed policies grant more than this stack's resources"
        (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "lambda.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    for name in _functions():
        assert "Policies" not in template()["Resources"][name]["Properties"], "SAM policies would add a second role"


def test_every_function_can_write_its_traces_when_tracing_is_on() -> None:
    """Globals turn on active tracing for every function with EnableTracing=true; a role without the
    X-Ray actions makes CloudFormation refuse to create that function."""
    assert template()["Globals"]["Function"]["Tracing"] == {"Fn::If": ["UseTracing", "Active", "PassThrough"]}
    for function in _functions():
        role = function_properties(template(), function)["Role"]["Fn::GetAtt"][0]
        traced = {a for s, c in _statements(_roles()[role]) if c == "UseTracing" for a in _as_list(s["Action"])}
        assert {"xray:PutTraceSegments", "xray:PutTelemetryRecords"} <= traced, f"{function} ({role})"


@pytest.mark.parametrize(
    "role",
    [
        "IngestRole",
        "SearchRole",
        "AnalyticsCompactRole",
        "MemoryWorkerRole",
        "MemoryApiRole",
        "AudioFetchRole",
        "SyncRole",
        "RetentionRole",
    ],
)
def test_no_wildcard_actions_and_only_scoped_resources(role: str) -> None:
    for statement, condition in _statements(_roles()[role]):
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{role}/{statement.get('Sid')}: wildcard action {action}"
        for resource in _as_list(statement["Resource"]):
            if resource == "*":
                # X-Ray has no resource-level permissions; granted only with EnableTracing=true.
                assert condition == "UseTracing", f"{role}/{statement.get('Sid')}: Resource * outside X-Ray"
                assert all(a.startswith("xray:Put") for a in _as_list(statement["Action"]))
                continue
            text = resource.get("Fn::Sub", "") if isinstance(resource, dict) else resource
            if "*" in text:
                # Objects of one of this stack's buckets (optionally under a prefix), nothing wider.
                bucket_arn = r"\$\{(ArchiveBucket\.Arn|Analytics\.Outputs\.(AnalyticsBucketArn|ResultsBucketArn))\}"
                assert re.fullmatch(bucket_arn + r"/([\w-]+/)?\*", text), (
                    f"{role}/{statement.get('Sid')}: wildcard resource {text}"
                )
            else:
                assert isinstance(resource, dict), f"{role}: literal resource {resource!r} is not this stack's"


def test_what_each_role_may_do_is_exactly_what_its_function_needs() -> None:
    """The issue's list, narrowed to what the code calls (a change here must be a decision)."""

    def granted(role: str) -> set[str]:
        return {a for s, c in _statements(_roles()[role]) if c is None for a in _as_list(s["Action"])}

    logs = {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert granted("IngestRole") == logs | {
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",  # pending audio and old analytics partitions only (see the resources)
        "s3:ListBucket",  # HEAD of a missing key must be 404, not 403
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "ssm:GetParameter",
        "sqs:SendMessage",  # records a caller-memory job; Mem0 is the worker's business
    }
    assert granted("SearchRole") == logs | {
        "s3:GetObject",
        "dynamodb:GetItem",
        "dynamodb:Query",
        # The access audit (#13): an entry and its conversation pointers, on the audit table only.
        "dynamodb:PutItem",
        "dynamodb:BatchWriteItem",
        "ssm:GetParameter",
        # GET /search and the console's search and dashboard: report SQL on Athena in CallVault's workgroup,
        # which reads the analytics tables and writes its results with this role's credentials.
        "athena:StartQueryExecution",
        "athena:GetQueryExecution",
        "athena:GetQueryResults",
        "athena:StopQueryExecution",
        "glue:GetDatabase",
        "glue:GetTable",
        "glue:GetPartition",
        "glue:GetPartitions",
        "glue:BatchGetPartition",
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:PutObject",  # query results only (see the resources)
        "s3:AbortMultipartUpload",
    }
    # The sync functions archive through the ingest Archiver: ingest's grants, plus aborting a multipart
    # upload (audio above 8 MiB); no Query (rows are read by key) and no secret but the ElevenLabs key.
    archiving = {
        "s3:PutObject",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "s3:AbortMultipartUpload",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "ssm:GetParameter",
    }
    assert granted("AudioFetchRole") == logs | archiving | {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    }
    assert granted("SyncRole") == logs | archiving | {"sqs:SendMessage"}  # memory jobs of the calls it archives
    # Retention erases through the ports: every version of an expired call's objects by id (no read of
    # the archive), the analytics rows, the row last; reads its rules, the tombstone and Mem0 keys.
    assert granted("RetentionRole") == logs | {
        "s3:DeleteObjectVersion",
        "s3:ListBucketVersions",
        "s3:GetObject",  # analytics objects only (see the resources)
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",  # audit entries only (see the resources)
        "dynamodb:BatchWriteItem",  # their subject pointers
        "ssm:GetParameter",
    }
    # The analytics tables only (resources: test_template_matches_code.py); no archive, index or secret.
    assert granted("AnalyticsCompactRole") == logs | {
        "s3:GetObject",  # per-call objects and the day object, with their ETags
        "s3:PutObject",  # the day object, conditionally
        "s3:DeleteObject",  # merged per-call objects, conditionally
        "s3:ListBucket",  # the partitions' objects
    }


ARCHIVE_OBJECTS = {"Fn::Sub": "${ArchiveBucket.Arn}/*"}
ARCHIVE_BUCKET = {"Fn::GetAtt": ["ArchiveBucket", "Arn"]}


@pytest.mark.parametrize("role", sorted(_roles()))
def test_a_role_that_reads_archive_objects_by_key_may_list_the_archive_bucket(role: str) -> None:
    """Without s3:ListBucket, S3 answers a GET or HEAD of a missing key with 403, not 404: the adapter
    then says "storage unavailable" (503, a retried job) where the code expects NotFound (the
    console's "transcript missing" page, a 404). The grant is on the bucket's ARN, nothing wider."""
    statements = [s for s, _ in _statements(_roles()[role])]
    reads = any(
        "s3:GetObject" in _as_list(s["Action"]) and ARCHIVE_OBJECTS in _as_list(s["Resource"]) for s in statements
    )
    lists = [s for s in statements if "s3:ListBucket" in _as_list(s["Action"])]
    if reads:
        assert any(_as_list(s["Resource"]) == [ARCHIVE_BUCKET] and "Condition" not in s for s in lists), role
    for statement in lists:  # ListBucket only ever on a bucket's ARN, never on objects or "*"
        for resource in _as_list(statement["Resource"]):
            assert isinstance(resource, dict) and "Fn::GetAtt" in resource, f"{role}: ListBucket on {resource}"


def test_with_a_bucket_key_each_role_may_use_it_only_through_s3() -> None:
    """SSE-KMS on the buckets: a role that writes objects needs GenerateDataKey, one that reads, Decrypt."""
    for role in ("IngestRole", "AnalyticsCompactRole", "AudioFetchRole", "SyncRole"):
        (statement,) = [s for s, c in _statements(_roles()[role]) if c == "HasBucketKmsKey"]
        assert set(_as_list(statement["Action"])) == {"kms:GenerateDataKey", "kms:Decrypt"}, role
        assert statement["Resource"] == {"Ref": "BucketKmsKeyArn"}
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}
        }


@pytest.mark.parametrize("bucket", BUCKETS)
def test_buckets_are_private_versioned_encrypted_tls_only_and_retained(bucket: str) -> None:
    resource = template()["Resources"][bucket]
    props = resource["Properties"]
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    condition, with_key, without_key = rule["ServerSideEncryptionByDefault"]["Fn::If"]
    assert condition == "HasBucketKmsKey"
    assert with_key == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "BucketKmsKeyArn"}}
    assert without_key == {"SSEAlgorithm": "AES256"}
    assert template()["Parameters"]["BucketKmsKeyArn"]["Default"] == ""  # SSE-S3 unless a key is given

    policies = [
        p["Properties"]["PolicyDocument"]
        for p in resources_of_type(template(), "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    (policy,) = policies
    deny_plain = [
        s
        for s in policy["Statement"]
        if s["Effect"] == "Deny"
        and s["Principal"] == "*"
        and s["Action"] == "s3:*"
        and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert deny_plain, f"{bucket}: no statement denies requests without TLS"
    assert {"Fn::GetAtt": [bucket, "Arn"]} in deny_plain[0]["Resource"]
    assert {"Fn::Sub": "${" + bucket + ".Arn}/*"} in deny_plain[0]["Resource"]


def _rules(bucket: str) -> list[Json]:
    rules: list[Json] = template()["Resources"][bucket]["Properties"]["LifecycleConfiguration"]["Rules"]
    return rules


def test_archive_lifecycle_tiers_down_and_cleans_up() -> None:
    params = template()["Parameters"]
    tiering = [r for r in _rules("ArchiveBucket") if r.get("Transitions")]
    (rule,) = tiering
    assert rule["Status"] == "Enabled" and "Prefix" not in rule and "TagFilters" not in rule  # the whole archive
    assert [(t["TransitionInDays"], t["StorageClass"]) for t in rule["Transitions"]] == [
        (30, "STANDARD_IA"),
        (90, {"Ref": "ArchiveStorageClass"}),
    ]
    assert params["ArchiveStorageClass"]["Default"] == "GLACIER_IR"  # links and Athena keep working
    assert set(params["ArchiveStorageClass"]["AllowedValues"]) == {"GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"}
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": {"Ref": "NoncurrentVersionExpirationDays"}}
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    assert any(r.get("ExpiredObjectDeleteMarker") is True for r in _rules("ArchiveBucket"))


def test_the_search_role_may_read_every_glue_table_and_view_its_reports_reach_and_no_other() -> None:
    """Athena resolves a view with the caller's rights on the view and on every table it reads:
    the role names each view (``calls``, ...) and each table of stored rows (``calls_objects``, ...)
    that infra/analytics.yaml defines; a name out of step is an AccessDenied on every report."""
    glue_names = {
        r["Properties"]["TableInput"]["Name"] for r in resources_of_type(_analytics(), "AWS::Glue::Table").values()
    }
    prefix = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:table/${Analytics.Outputs.GlueDatabase}/"
    [catalog] = [s for s, _c in _statements(_roles()["SearchRole"]) if s.get("Sid") == "ReadAnalyticsCatalog"]
    tables = [r["Fn::Sub"] for r in catalog["Resource"] if ":table/" in r["Fn::Sub"]]
    assert all(t.startswith(prefix) for t in tables)
    assert sorted(t.removeprefix(prefix) for t in tables) == sorted(glue_names)
    assert {"calls", "messages", "evaluations"} < glue_names  # what the reports query


def test_analytics_data_never_moves_to_a_class_athena_cannot_read() -> None:
    buckets = resources_of_type(_analytics(), "AWS::S3::Bucket")
    assert "AnalyticsBucket" in buckets
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        for rule in props.get("LifecycleConfiguration", {}).get("Rules", []):
            for key in ("Transitions", "NoncurrentVersionTransitions"):
                for transition in rule.get(key, []):
                    assert transition["StorageClass"] in ATHENA_READABLE, f"{name} would move data to {transition}"
            assert "Transition" not in rule and "NoncurrentVersionTransition" not in rule
        assert "IntelligentTieringConfigurations" not in props  # its archive tiers are unreadable too
    # The ingest function writes analytics rows to that bucket, never into the archive.
    env = function_properties(template(), "IngestFunction")["Environment"]["Variables"]
    assert env["CALLVAULT_ANALYTICS_BUCKET"] == {"Fn::GetAtt": ["Analytics", "Outputs.AnalyticsBucketName"]}
    assert env["CALLVAULT_BUCKET"] == {"Ref": "ArchiveBucket"}
    # The compaction rewrites that bucket only; it is never told where the archive is.
    env = function_properties(template(), COMPACT)["Environment"]["Variables"]
    assert env["CALLVAULT_ANALYTICS_BUCKET"] == {"Fn::GetAtt": ["Analytics", "Outputs.AnalyticsBucketName"]}
    assert "CALLVAULT_BUCKET" not in env and "CALLVAULT_TABLE" not in env


def test_the_compaction_runs_hourly_on_a_schedule_and_nothing_else_invokes_it() -> None:
    # Hourly, not daily: late writes to closed days are per-call objects until a merge folds them in.
    props = template()["Resources"][COMPACT]["Properties"]
    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"].get("Enabled", True) is True
    minute, hour, day, month, weekday, year = event["Properties"]["Schedule"].removeprefix("cron(").split()
    assert (hour, day, month, weekday, year) == ("*", "*", "*", "?", "*)") and minute.isdigit()
    assert props["Timeout"] == 900  # Lambda's maximum: a backlog of closed days takes what it can


def test_table_is_on_demand_recoverable_encrypted_and_protected() -> None:
    resource = template()["Resources"]["CallsTable"]
    props = resource["Properties"]
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True


def test_secrets_come_from_ssm_parameters_never_from_the_template() -> None:
    params = template()["Parameters"]
    secret_params = {
        "WebhookSecretParameterName",
        "ApiKeysParameterName",
        "CursorSigningKeyParameterName",
        "Mem0ApiKeyParameterName",
        "AgentWebhookSecretParameterName",
    }
    # Optional: empty (the default) turns a feature off; otherwise an SSM name like the others.
    optional_secret_params = {"ElevenLabsApiKeyParam"}
    for name in secret_params:
        assert params[name]["Type"] == "String" and params[name]["Default"].startswith("/")
    for name in optional_secret_params:
        assert params[name]["Type"] == "String" and params[name]["Default"] == ""
        assert params[name]["AllowedPattern"].startswith("^$|^/")
    secret_params |= optional_secret_params
    for name, spec in params.items():
        if name.endswith("KmsKeyArn"):
            assert spec["AllowedPattern"].startswith("^$|^arn:"), f"{name} must only take a key ARN"
        elif name == "SecretsVersion":
            assert spec["Default"] == "1"  # a label that forces fresh environments, not a secret
        elif re.search(r"secret|apikey|signing", name, re.IGNORECASE):
            assert name in secret_params, f"parameter {name} looks like it carries a secret value"
    readers = 0
    for function in _functions():  # rotating means: new SSM value, then a new SecretsVersion for all readers
        env = function_properties(template(), function)["Environment"]["Variables"]
        if any(name.endswith("_PARAM") for name in env):
            readers += 1
            assert env["SECRETS_VERSION"] == {"Ref": "SecretsVersion"}, f"{function} reads SSM secrets"
    assert readers >= 4  # ingest, search and the two memory functions
    compact = function_properties(template(), COMPACT)["Environment"]["Variables"]
    assert not [name for name in compact if name.endswith("_PARAM")]  # reads no secret at all
    text = (INFRA / "template.yaml").read_text(encoding="utf-8")
    assert "resolve:ssm-secure" not in text and "resolve:secretsmanager" not in text  # values would land in the env


def test_logs_are_kept_for_a_set_time_and_every_function_logs_to_its_own_group() -> None:
    tpl = template()
    groups = resources_of_type(tpl, "AWS::Logs::LogGroup")
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    used = [function_properties(tpl, f)["LoggingConfig"]["LogGroup"]["Ref"] for f in _functions()]
    assert len(set(used)) == len(used) and set(used) <= set(groups)
    api = tpl["Resources"]["HttpApi"]["Properties"]
    assert api["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0] in groups
    assert "$context.path" not in api["AccessLogSettings"]["Format"]  # could carry a conversation id; no query


def test_alarms_watch_function_errors_and_api_5xx() -> None:
    alarms = [a["Properties"] for a in resources_of_type(template(), "AWS::CloudWatch::Alarm").values()]
    for function in _functions():
        assert any(
            a["Namespace"] == "AWS/Lambda"
            and a["MetricName"] == "Errors"
            and {"Name": "FunctionName", "Value": {"Ref": function}} in a["Dimensions"]
            for a in alarms
        ), f"no Errors alarm for {function}"
    assert any(
        a["Namespace"] == "AWS/ApiGateway"
        and a["MetricName"] == "5xx"
        and a["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}]
        for a in alarms
    )


def test_memory_concurrency_and_tracing_are_parameters() -> None:
    tpl = template()
    for function in _functions():
        props = function_properties(tpl, function)
        assert "Ref" in props["MemorySize"]
        if function in UNRESERVED:
            assert "ReservedConcurrentExecutions" not in props, UNRESERVED[function]
        else:
            condition, value, _ = props["ReservedConcurrentExecutions"]["Fn::If"]
            assert "Ref" in value and condition in tpl["Conditions"]
        assert props["Tracing"] == {"Fn::If": ["UseTracing", "Active", "PassThrough"]}
    assert tpl["Parameters"]["EnableTracing"]["Default"] == "false"


def test_outputs_give_the_webhook_url_api_url_bucket_and_table() -> None:
    outputs = template()["Outputs"]
    ((_, webhook_path),) = http_routes(template(), "IngestFunction")
    assert outputs["WebhookUrl"]["Value"] == {"Fn::Sub": "${HttpApi.ApiEndpoint}" + webhook_path}
    assert outputs["ApiUrl"]["Value"] == {"Fn::GetAtt": ["HttpApi", "ApiEndpoint"]}
    assert outputs["ArchiveBucketName"]["Value"] == {"Ref": "ArchiveBucket"}
    assert outputs["CallsTableName"]["Value"] == {"Ref": "CallsTable"}


@pytest.mark.parametrize("which", ["template.yaml", "analytics.yaml"])
def test_every_checkov_suppression_says_why(which: str) -> None:
    found = 0
    for name, resource in (template() if which == "template.yaml" else _analytics())["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            found += 1
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), f"{name}: {skip}"
            assert len(skip.get("comment", "").split()) >= 8, f"{name}: {skip['id']} needs a written reason"
    assert found  # the test is looking in the right place


def test_every_cfn_lint_suppression_says_why() -> None:
    for name, resource in {**template()["Resources"], **_analytics()["Resources"]}.items():
        assert "cfn-lint" not in resource.get("Metadata", {}), (
            f"{name}: suppress in infra/.cfnlintrc.yaml with a reason"
        )
    lines = (INFRA / ".cfnlintrc.yaml").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ignore_checks:"))
    if lines[start].strip() != "ignore_checks: []":
        for line in lines[start + 1 :]:
            if not line.startswith((" ", "-")):
                break
            if line.strip().startswith("-"):
                assert re.search(r"#\s*\S.{10,}", line), f"cfn-lint suppression without a reason: {line.strip()}"
