"""infra/template.yaml and erasure (#13): every function that archives through the Archiver (ingest,
audio fetch, sync), and the memory worker, gets the tombstone key parameter, when one is set, and may
read exactly it."""

from pathlib import Path
from typing import Any

import pytest

from tests.infra.cfn import function_properties, template

ARCHIVING = {"IngestFunction": "IngestRole", "AudioFetchFunction": "AudioFetchRole", "SyncFunction": "SyncRole"}
# The memory worker asks the tombstones too: a queued job of an erased call writes nothing.
CHECKING = {**ARCHIVING, "MemoryWorkerFunction": "MemoryWorkerRole"}
PARAM = "TombstoneKeyParameterName"


def test_the_tombstone_key_parameter_is_optional_and_an_ssm_name() -> None:
    tpl = template()
    parameter = tpl["Parameters"][PARAM]
    assert parameter["Default"] == "" and parameter["AllowedPattern"].startswith("^$|^/")
    assert tpl["Conditions"]["HasTombstoneKey"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": PARAM}, ""]}]}


@pytest.mark.parametrize(("function", "role"), sorted(CHECKING.items()))
def test_archiving_functions_get_the_tombstone_key_and_may_read_exactly_it(function: str, role: str) -> None:
    env = function_properties(template(), function)["Environment"]["Variables"]
    assert env["CALLVAULT_TOMBSTONE_KEY_PARAM"] == {
        "Fn::If": ["HasTombstoneKey", {"Ref": PARAM}, {"Ref": "AWS::NoValue"}]
    }
    statements = _statements(role)
    (granted,) = [
        s["Fn::If"]
        for s in statements
        if isinstance(s, dict) and "Fn::If" in s and s["Fn::If"][1].get("Sid") == "ReadTombstoneKey"
    ]
    condition, statement, otherwise = granted
    assert condition == "HasTombstoneKey" and otherwise == {"Ref": "AWS::NoValue"}
    assert statement["Action"] == "ssm:GetParameter"
    assert statement["Resource"]["Fn::Sub"].endswith(":parameter${" + PARAM + "}")


def _statements(role: str) -> list[Any]:
    found: list[Any] = []
    for policy in template()["Resources"][role]["Properties"]["Policies"]:
        found.extend(policy["PolicyDocument"]["Statement"])
    return found


RETENTION = ("RetentionFunction", "RetentionRole", "RetentionLogGroup", "RetentionErrorsAlarm")


def test_the_retention_function_runs_daily_and_exists_only_with_a_tombstone_key() -> None:
    resources = template()["Resources"]
    for name in [*RETENTION, "RetentionExpiredMetric", "RetentionHeldMetric"]:
        assert resources[name]["Condition"] == "HasTombstoneKey", name
    props = function_properties(template(), "RetentionFunction")
    assert props["Handler"] == "services.privacy.handler.retention_handler"
    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule"
    minute, hour, day, month, weekday, year = event["Properties"]["Schedule"].removeprefix("cron(").rstrip(")").split()
    assert minute.isdigit() and hour.isdigit() and (day, month, weekday, year) == ("*", "*", "?", "*")  # once a day
    env = props["Environment"]["Variables"]
    assert env["CALLVAULT_TOMBSTONE_KEY_PARAM"] == {"Ref": PARAM}
    assert env["CALLVAULT_AUDIT_TABLE"] == {"Ref": "AuditTable"}  # the legal holds: without them it refuses
    assert env["CALLVAULT_RETENTION_RULES_PARAM"] == {"Ref": "RetentionRulesParameterName"}


def test_the_retention_role_reads_exactly_its_three_parameters_and_writes_only_audit_entries() -> None:
    statements = {s.get("Sid"): s for s in _statements("RetentionRole") if isinstance(s, dict) and "Sid" in s}
    granted = sorted(r["Fn::Sub"].rsplit("${", 1)[1].rstrip("}") for r in statements["ReadSettings"]["Resource"])
    assert granted == sorted([PARAM, "RetentionRulesParameterName", "Mem0ApiKeyParameterName"])
    audit = statements["HoldsAndAuditTrail"]
    assert audit["Resource"] == {"Fn::GetAtt": ["AuditTable", "Arn"]}
    assert "dynamodb:UpdateItem" not in audit["Action"] and "dynamodb:DeleteItem" not in audit["Action"]
    archive = [s for s in statements.values() if "ArchiveBucket" in str(s["Resource"])]
    assert {a for s in archive for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} == {
        "s3:DeleteObjectVersion",  # purge: every version by id; it never reads a call
        "s3:ListBucketVersions",
        "s3:ListBucket",  # parked audio, and only that prefix
    }
    listing = statements["ListParkedAudio"]
    assert listing["Condition"] == {"StringEquals": {"s3:prefix": "_pending-audio/"}}


def test_the_retention_metrics_read_the_line_the_handler_logs() -> None:
    from services.privacy import handler
    from services.privacy.retention import RetentionSummary

    fields = set(RetentionSummary(dry_run=False).to_dict())
    for name in ("RetentionExpiredMetric", "RetentionHeldMetric"):
        props = template()["Resources"][name]["Properties"]
        assert props["FilterPattern"] == '{ $.message = "retention done" }'
        (transformation,) = props["MetricTransformations"]
        assert transformation["MetricValue"].removeprefix("$.") in fields
    assert '"retention done"' in Path(handler.__file__).read_text(encoding="utf-8")
