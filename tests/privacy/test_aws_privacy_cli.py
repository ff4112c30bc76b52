"""`CALLVAULT_BACKEND=aws callvault hold|release|forget|audit` (#13) on the stack's audit table, under moto:
holds refuse erasure on AWS as they do locally, and the chain there verifies and notices tampering."""

import json
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from services.cli.main import cli
from services.core.adapters.dynamo_audit_log import DynamoAuditTable
from services.core.adapters.dynamo_call_index import DynamoCallIndex
from tests.contract.conftest import AUDIT_TABLE, BUCKET, TABLE

PHONE = "+16125550142"
ANALYTICS_BUCKET = "callvault-analytics-cli-test"
ENV = {
    "CALLVAULT_BACKEND": "aws",
    "CALLVAULT_BUCKET": BUCKET,
    "CALLVAULT_ANALYTICS_BUCKET": ANALYTICS_BUCKET,
    "CALLVAULT_TABLE": TABLE,
    "CALLVAULT_AUDIT_TABLE": AUDIT_TABLE,
    "CALLVAULT_TOMBSTONE_KEY": "tsk_test_key_for_the_aws_cli",
    "CALLVAULT_MEMORY_BACKEND": "none",
}


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    request.getfixturevalue("aws")
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    boto3.client("s3").create_bucket(Bucket=ANALYTICS_BUCKET)
    DynamoCallIndex(TABLE).create_table()
    DynamoAuditTable(AUDIT_TABLE).create_table()


@pytest.mark.usefixtures("stack")
def test_aws_hold_refuses_forget_until_released_and_the_audit_chain_verifies() -> None:
    runner = CliRunner()

    placed = runner.invoke(cli, ["hold", PHONE, "--reason", "case 7", "--json"], env=ENV)
    assert placed.exit_code == 0, placed.output
    hold_id = json.loads(placed.output)["id"]
    refused = runner.invoke(cli, ["forget", PHONE, "--yes"], env=ENV)
    assert refused.exit_code == 1 and hold_id in refused.output and "case 7" in refused.output
    listed = runner.invoke(cli, ["hold", "--list", "--json"], env=ENV)
    assert [json.loads(line)["id"] for line in listed.output.splitlines()] == [hold_id]

    released = runner.invoke(cli, ["release", hold_id], env=ENV)
    erased = runner.invoke(cli, ["forget", PHONE, "--yes", "--json"], env=ENV)
    trail = runner.invoke(cli, ["audit", "--json", "--verify"], env=ENV)

    assert released.exit_code == 0 and hold_id in released.output
    assert erased.exit_code == 0, erased.output
    assert trail.exit_code == 0, trail.output
    entries = [json.loads(line) for line in trail.stdout.splitlines()]
    assert [e["action"] for e in entries] == ["hold", "release", "erase"]
    assert "chain verifies: 3 entries" in trail.stderr
    assert not any(PHONE in line or PHONE[1:] in line for line in trail.output.splitlines())  # masked only
    assert runner.invoke(cli, ["release", "hold_nope"], env=ENV).exit_code == 1


@pytest.mark.usefixtures("stack")
def test_aws_audit_verify_fails_on_a_changed_entry() -> None:
    runner = CliRunner()
    runner.invoke(cli, ["hold", "--conversation", "conv_held_one", "--reason", "complaint 88"], env=ENV)
    runner.invoke(cli, ["hold", "--conversation", "conv_held_two", "--reason", "complaint 89"], env=ENV)
    covering = runner.invoke(cli, ["hold", "--list", "--conversation", "conv_held_one", "--json"], env=ENV)
    assert [json.loads(line)["reason"] for line in covering.stdout.splitlines()] == ["complaint 88"]
    by_conversation = runner.invoke(cli, ["audit", "--conversation", "conv_held_one", "--json"], env=ENV)
    assert [json.loads(line)["action"] for line in by_conversation.output.splitlines()] == ["hold"]
    assert runner.invoke(cli, ["audit", "--verify"], env=ENV).exit_code == 0

    boto3.client("dynamodb").update_item(
        TableName=AUDIT_TABLE,
        Key={"chain": {"S": "audit"}, "seq": {"N": "1"}},
        UpdateExpression="SET actor = :a",
        ExpressionAttributeValues={":a": {"S": "cli:mallory"}},
    )
    broken = runner.invoke(cli, ["audit", "--verify"], env=ENV)

    assert broken.exit_code == 1 and "BROKEN at entry 1" in broken.stderr


def test_aws_audit_without_its_table_names_the_settings(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("aws")
    env = {**ENV, "CALLVAULT_AUDIT_TABLE": ""}

    result = CliRunner().invoke(cli, ["audit"], env=env)

    assert result.exit_code == 1 and "CALLVAULT_AUDIT_TABLE" in result.output


@pytest.mark.usefixtures("stack")
@pytest.mark.parametrize("dry_run", [False, True])
def test_aws_forget_without_the_audit_table_refuses_and_a_held_caller_keeps_everything(dry_run: bool) -> None:
    """On AWS the holds live in the audit table: an operator's forget without CALLVAULT_AUDIT_TABLE
    must not read that as "no holds" (it erased a held caller, unaudited)."""
    runner = CliRunner()
    assert runner.invoke(cli, ["hold", PHONE, "--reason", "case 9"], env=ENV).exit_code == 0
    index = DynamoCallIndex(TABLE)
    index.claim_place("conv_held_call_1", "16125550142", PHONE, 1_760_000_000)
    boto3.client("s3").put_object(Bucket=BUCKET, Key="16125550142/conv_held_call_1.json", Body=b"{}")
    env = {**ENV, "CALLVAULT_AUDIT_TABLE": ""}

    result = runner.invoke(cli, ["forget", PHONE, "--yes", *(["--dry-run"] if dry_run else [])], env=env)

    assert result.exit_code == 1 and "CALLVAULT_AUDIT_TABLE" in result.output
    assert index.get("conv_held_call_1") is not None
    versions = boto3.client("s3").list_object_versions(Bucket=BUCKET).get("Versions", [])
    assert [v["Key"] for v in versions] == ["16125550142/conv_held_call_1.json"]
    trail = runner.invoke(cli, ["audit", "--json"], env=ENV)
    assert [json.loads(line)["action"] for line in trail.stdout.splitlines()] == ["hold"]


@pytest.mark.usefixtures("stack")
def test_aws_forget_and_retention_without_the_analytics_bucket_refuse_and_change_nothing() -> None:
    """Every stack has an analytics bucket (its `messages` table holds what the caller said): a forget
    without CALLVAULT_ANALYTICS_BUCKET erased the row, the one way a rerun finds the call, and left the
    caller's analytics rows behind for good."""
    index = DynamoCallIndex(TABLE)
    index.claim_place("conv_analytics_1", "16125550142", PHONE, 1_760_000_000)
    env = {**ENV, "CALLVAULT_ANALYTICS_BUCKET": ""}
    runner = CliRunner()

    erased = runner.invoke(cli, ["forget", PHONE, "--yes"], env=env)
    expired = runner.invoke(cli, ["retention", "run", "--dry-run"], env=env)

    assert erased.exit_code == 1 and "CALLVAULT_ANALYTICS_BUCKET" in erased.output
    assert expired.exit_code == 1 and "CALLVAULT_ANALYTICS_BUCKET" in expired.output
    assert index.get("conv_analytics_1") is not None
    assert runner.invoke(cli, ["audit", "--json"], env=ENV).stdout == ""


@pytest.mark.usefixtures("stack")
def test_aws_forget_with_the_offline_memory_default_names_the_memory_setting() -> None:
    """The default memory back end (oss) cannot exist on AWS: the refusal says which setting to give,
    not to stop a `callvault serve` that is not there."""
    env = {**ENV, "CALLVAULT_MEMORY_BACKEND": "oss"}  # the default

    result = CliRunner().invoke(cli, ["forget", PHONE, "--yes"], env=env)

    assert result.exit_code == 1 and "CALLVAULT_MEMORY_BACKEND=platform" in result.output
    assert "serve" not in result.output


@pytest.mark.usefixtures("stack")
def test_aws_verify_finds_an_erased_call_a_table_restore_brought_back_without_its_tombstone() -> None:
    """The tombstones are items of the calls table: a point-in-time restore from before an erasure brings
    the caller's rows back (number, summary) and takes the tombstones away, so nothing recognised them.
    The audit trail, a table of its own, still names every erased call by the same keyed hash."""
    from services.core.domain.models import CallRecord
    from services.core.erased import conversation_digest

    runner, index, cid = CliRunner(), DynamoCallIndex(TABLE), "conv_restored_by_pitr"
    row = CallRecord(cid, phone=PHONE, started_at=1_751_802_015, summary="Maria asked about her refund")
    index.save_call(row, 1_751_802_100)
    assert runner.invoke(cli, ["forget", PHONE, "--yes"], env=ENV).exit_code == 0
    digest = conversation_digest(ENV["CALLVAULT_TOMBSTONE_KEY"].encode(), cid)
    index.save_call(row, 1_751_802_100)  # the restored table: the row back, its tombstone gone
    boto3.client("dynamodb").delete_item(TableName=TABLE, Key={"conversation_id": {"S": f"~erased/{digest}"}})

    found = runner.invoke(cli, ["verify", "--json"], env=ENV)
    repaired = runner.invoke(cli, ["verify", "--repair", "--json"], env=ENV)

    kinds = json.loads(found.stdout)["by_kind"]
    assert kinds.get("erased_reappeared") == 1, found.stdout
    assert repaired.exit_code == 0, repaired.stdout
    assert index.get(cid) is None
    assert runner.invoke(cli, ["verify"], env=ENV).exit_code == 0
    # Its tombstone is back too: a redelivery or sync of the call is refused again.
    tombstone = {"conversation_id": {"S": f"~erased/{digest}"}}
    assert boto3.client("dynamodb").get_item(TableName=TABLE, Key=tombstone).get("Item")


@pytest.mark.usefixtures("stack")
@pytest.mark.parametrize("missing", ["CALLVAULT_AUDIT_TABLE", "CALLVAULT_TOMBSTONE_KEY"])
def test_aws_memory_forget_without_the_holds_refuses_and_keeps_a_held_callers_memories(missing: str) -> None:
    """As `forget`: on AWS the holds and the trail are the audit table, named with the tombstone key;
    without either, `memory forget` read "no holds" and deleted a held caller's memories, unaudited."""
    from tests.memory.fake_mem0_platform import API_KEY as MEM0_KEY
    from tests.memory.fake_mem0_platform import fake_mem0_platform

    runner = CliRunner()
    assert runner.invoke(cli, ["hold", PHONE, "--reason", "case 10"], env=ENV).exit_code == 0
    with fake_mem0_platform() as (url, platform):
        platform.memories.append({"id": "m1", "user_id": PHONE, "memory": "Lives in Winona", "metadata": {}})
        platform_env = {"CALLVAULT_MEMORY_BACKEND": "platform", "CALLVAULT_MEM0_API_KEY": MEM0_KEY}
        env = {**ENV, **platform_env, "CALLVAULT_MEM0_HOST": url, missing: ""}

        result = runner.invoke(cli, ["memory", "forget", PHONE, "--yes"], env=env)

        assert result.exit_code == 1 and missing in result.output and "nothing was changed" in result.output
        assert [m["id"] for m in platform.memories] == ["m1"]


@pytest.mark.usefixtures("stack")
def test_aws_verify_repair_without_the_audit_table_leaves_erased_calls_that_came_back() -> None:
    """The holds are in the audit table: without it, repair read "no holds" and erased a call a hold
    placed since covers, unaudited. It reports the calls and says what to set instead."""
    from services.core.domain.models import CallRecord

    runner, index, cid = CliRunner(), DynamoCallIndex(TABLE), "conv_back_under_hold"
    row = CallRecord(cid, phone=PHONE, started_at=1_751_802_015)
    index.save_call(row, 1_751_802_100)
    assert runner.invoke(cli, ["forget", PHONE, "--yes"], env=ENV).exit_code == 0
    assert runner.invoke(cli, ["hold", PHONE, "--reason", "case 11"], env=ENV).exit_code == 0
    index.save_call(row, 1_751_802_100)  # a restore brings the row back

    repaired = runner.invoke(cli, ["verify", "--repair", "--json"], env={**ENV, "CALLVAULT_AUDIT_TABLE": ""})

    assert repaired.exit_code == 1, repaired.output
    (item,) = [i for i in json.loads(repaired.stdout)["items"] if i["kind"] == "erased_reappeared"]
    assert item["repaired"] is False and "CALLVAULT_AUDIT_TABLE" in item["detail"]
    assert index.get(cid) is not None
    trail = runner.invoke(cli, ["audit", "--json"], env=ENV)
    assert [json.loads(line)["action"] for line in trail.stdout.splitlines()] == ["erase", "hold"]
