"""infra/template.yaml and #13 on AWS: the audit table is the adapter's, the privacy function serves the
privacy routes with erasure's rights, and nobody else may change the audit trail."""

from pathlib import Path
from typing import Any

import pytest

from services.core.adapters.dynamo_audit_log import DynamoAuditTable
from services.core.config import Settings
from tests.infra.cfn import INFRA, REPO, Json, function_properties, http_routes, resources_of_type, template

PRIVACY = "PrivacyFunction"
TOMBSTONE_PARAM = {"Fn::If": ["HasTombstoneKey", {"Ref": "TombstoneKeyParameterName"}, {"Ref": "AWS::NoValue"}]}


def _statements(role: str) -> list[tuple[Json, str | None]]:
    found: list[tuple[Json, str | None]] = []
    for policy in template()["Resources"][role]["Properties"]["Policies"]:
        for entry in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in entry:
                condition, statement, _otherwise = entry["Fn::If"]
                found.append((statement, condition))
            else:
                found.append((entry, None))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _environment(function: str) -> Json:
    variables: Json = function_properties(template(), function)["Environment"]["Variables"]
    return variables


def test_audit_table_keys_are_the_adapters() -> None:
    created: dict[str, Any] = {}

    class Recorder:
        def create_table(self, **kwargs: Any) -> None:
            created.update(kwargs)

    DynamoAuditTable("t", client=Recorder()).create_table()
    table = template()["Resources"]["AuditTable"]
    props = table["Properties"]

    assert props["KeySchema"] == created["KeySchema"]
    assert props["AttributeDefinitions"] == created["AttributeDefinitions"]
    assert props["BillingMode"] == created["BillingMode"] == "PAY_PER_REQUEST"
    assert table["DeletionPolicy"] == "Retain" and props["DeletionProtectionEnabled"] is True
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert "TimeToLiveSpecification" not in props  # nothing in the trail expires by itself
    assert template()["Outputs"]["AuditTableName"]["Value"] == {"Ref": "AuditTable"}


def test_privacy_routes_are_the_routes_of_the_privacy_app() -> None:
    from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
    from services.privacy.app import create_privacy_app
    from services.privacy.router import PrivacyContext
    from services.privacy.service import Eraser
    from services.web.auth import ApiKeys

    app = create_privacy_app(PrivacyContext(Eraser(MemoryBlobStore(), MemoryCallIndex(), [])), ApiKeys([]))
    code = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}

    assert http_routes(template(), PRIVACY) == code == {("DELETE", "/callers/{phone}"), ("GET", "/audit")}
    for function in resources_of_type(template(), "AWS::Serverless::Function"):
        if function != PRIVACY:
            assert not code & http_routes(template(), function), f"{function} also serves a privacy route"


def test_search_and_privacy_handlers_are_the_composition_roots() -> None:
    for function, handler in (
        ("SearchFunction", "services.aws.search_handler.lambda_handler"),
        (PRIVACY, "services.aws.privacy_handler.lambda_handler"),
        ("MemoryApiFunction", "services.aws.memory_api_handler.lambda_handler"),
    ):
        props = function_properties(template(), function)
        assert props["Handler"] == handler
        module = REPO / Path(*handler.rsplit(".", 1)[0].split(".")).with_suffix(".py")
        assert module.is_file()
        assert (INFRA / props["CodeUri"]).resolve().name == "services"


@pytest.mark.parametrize("function", ["SearchFunction", "MemoryApiFunction", PRIVACY])
def test_audited_functions_get_the_audit_table_and_the_tombstone_key(function: str) -> None:
    env = _environment(function)
    assert env["CALLVAULT_AUDIT_TABLE"] == {"Ref": "AuditTable"}
    assert env["CALLVAULT_TOMBSTONE_KEY_PARAM"] == TOMBSTONE_PARAM
    role = function_properties(template(), function)["Role"]["Fn::GetAtt"][0]
    (key,) = [s for s, c in _statements(role) if c == "HasTombstoneKey"]
    assert key["Action"] == "ssm:GetParameter"
    assert key["Resource"]["Fn::Sub"].endswith(":parameter${TombstoneKeyParameterName}")


def test_privacy_function_environment_is_read_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {f"CALLVAULT_{name}".upper() for name in Settings.model_fields}
    env = _environment(PRIVACY)
    for name in env:
        assert name in names or name in {"LOG_LEVEL", "POWERTOOLS_SERVICE_NAME", "SECRETS_VERSION"}, name
    assert env["SECRETS_VERSION"] == {"Ref": "SecretsVersion"}
    assert env["CALLVAULT_ANALYTICS_BUCKET"] == {"Fn::GetAtt": ["Analytics", "Outputs.AnalyticsBucketName"]}
    assert env["CALLVAULT_MEMORY_BACKEND"] == "platform"  # the caller's memories are erased too


def test_privacy_role_may_do_exactly_what_erasure_needs() -> None:
    granted = {a for s, c in _statements("PrivacyRole") if c is None for a in _as_list(s["Action"])}
    assert granted == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:GetObject",
        "s3:PutObject",  # analytics day objects only (see the resources)
        "s3:DeleteObject",  # analytics per-call objects a merged day's rewrite folded in (see the resources)
        "s3:DeleteObjectVersion",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",  # the calls table only: tombstones
        "dynamodb:DeleteItem",  # the calls table only: rows
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:BatchWriteItem",
        "ssm:GetParameter",
    }
    (put,) = [s for s, c in _statements("PrivacyRole") if "s3:PutObject" in _as_list(s["Action"])]
    assert all("AnalyticsBucketArn}/" in r["Fn::Sub"] for r in put["Resource"])  # never the archive


def test_no_function_may_change_or_delete_an_audit_entry() -> None:
    """Entries are only ever put (conditionally); a hold's release is the operator's (CLI) UpdateItem."""
    for role in resources_of_type(template(), "AWS::IAM::Role"):
        for statement, _condition in _statements(role):
            if {"Fn::GetAtt": ["AuditTable", "Arn"]} in _as_list(statement["Resource"]):
                actions = set(_as_list(statement["Action"]))
                assert not actions & {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:DeleteTable"}, role


@pytest.mark.parametrize("role", ["SearchRole", "MemoryApiRole"])
def test_readers_may_append_to_the_audit_trail_and_nothing_else_of_it(role: str) -> None:
    (statement,) = [s for s, _c in _statements(role) if s.get("Sid") == "AppendAuditTrail"]
    assert set(statement["Action"]) == {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchWriteItem"}
    assert statement["Resource"] == {"Fn::GetAtt": ["AuditTable", "Arn"]}


@pytest.mark.parametrize("role", ["SearchRole", "MemoryApiRole"])
def test_readers_may_not_touch_the_legal_holds(role: str) -> None:
    """The holds share the audit table but are not chained: a reader-facing function that could PutItem
    any item could overwrite a hold as released (unaudited) and let erasure through. Its grant reaches only
    the chain's partition and the pointers' (the adapter's names)."""
    from services.core.adapters.dynamo_audit_log import AUDIT, SUBJECT

    (statement,) = [s for s, _c in _statements(role) if s.get("Sid") == "AppendAuditTrail"]
    assert statement.get("Condition") == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [AUDIT, SUBJECT + "*"]}
    }, statement
