"""The daily retention function (services/privacy/handler.py) in process, on a moto server that enforces
IAM, with the credentials of its role from infra/template.yaml (as tests/integration/test_sync_lambda.py
does for sync): the rules from the SSM parameter, the versioned archive, the index, the analytics bucket,
the legal holds and audit trail in the audit table, and a stand-in Mem0 Platform.

What it shows: a dry run (the operator's `CALLVAULT_BACKEND=aws callvault retention run --dry-run`)
selects exactly what the function then erases; every S3 version and delete marker of an expired call
is gone; held calls survive; without legal holds or with bad rules the function refuses and changes
nothing; without `s3:DeleteObjectVersion` it cannot run (the role is needed, and moto enforces it).

moto enforces S3 actions and resources in full, DynamoDB and SSM by action only (their ARNs are checked
statically in tests/infra)."""

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from click.testing import CliRunner

from services.cli.main import cli
from services.core.adapters.dynamo_audit_log import DynamoAuditLog, DynamoAuditTable, DynamoHolds
from services.core.adapters.dynamo_call_index import DynamoCallIndex
from services.core.adapters.dynamo_tombstones import DynamoTombstones
from services.core.config import get_settings
from services.core.domain import payload
from services.core.domain.holds import Hold
from services.core.erased import conversation_digest
from services.core.secrets import read_ssm_secret
from services.core.wiring import build_storage
from services.ingest.wiring import build_archiver
from services.memory.domain import MemoryItem
from services.memory.mem0_platform import Mem0PlatformMemoryStore
from services.privacy import handler
from services.privacy.retention import DAY, RetentionConfigError
from services.privacy.wiring import build_scheduled_retention
from tests.infra.cfn import Json, Stack, function_properties, template
from tests.infra.test_built_handlers import ACCOUNT, REGION, _as_list, _as_moto_enforces, _post, moto_server
from tests.memory.fake_mem0_platform import API_KEY as MEM0_KEY
from tests.memory.fake_mem0_platform import PlatformState, fake_mem0_platform
from tests.memory.support import call_envelope
from tests.privacy.conftest import audio_envelope

BUCKET = "callvault-archive-retention"
ANALYTICS_BUCKET = "callvault-analytics-retention"
TABLE = "callvault-calls-retention"
AUDIT_TABLE = "callvault-audit-retention"
TOMBSTONE_PARAM = "/callvault/tombstone-key"
RULES_PARAM = "/callvault/retention-rules"
MEM0_PARAM = "/callvault/mem0-api-key"
TOMBSTONE_KEY = "tsk_" + "r" * 40
RULES = "[default]\ntranscripts_days = 365\nmemories_days = 90\naudio_days = 30\nanalytics_days = 95\n"
FUNCTION, ROLE = "RetentionFunction", "RetentionRole"
CALLER, OTHER = "+16125550142", "+16125550199"
NOW = int(time.time())

SCHEDULED_EVENT: Json = {
    "version": "0",
    "id": "7f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": ACCOUNT,
    "time": "2026-12-05T03:15:00Z",
    "region": REGION,
    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/callvault-RetentionFunctionDaily"],
    "detail": {},
}


@dataclass
class Aws:
    endpoint: str
    stack: Stack
    credentials: dict[str, dict[str, str]]  # role (or "admin") -> credentials
    mem0_url: str
    mem0: PlatformState

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

    def environment(self) -> dict[str, str]:
        variables = function_properties(self.stack.tpl, FUNCTION)["Environment"]["Variables"]
        return {k: str(v) for k, v in self.stack.eval(variables).items()}


def _root(service: Any, endpoint: str) -> Any:
    return boto3.client(
        service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    with moto_server(tmp_path_factory) as endpoint, fake_mem0_platform() as (url, state):
        yield _stand_up(endpoint, url, state)


def _stand_up(endpoint: str, mem0_url: str, mem0: PlatformState) -> Aws:
    tpl = template()
    stack = Stack(
        tpl,
        parameters={
            "TombstoneKeyParameterName": TOMBSTONE_PARAM,  # the function exists only with one
            "RetentionRulesParameterName": RULES_PARAM,
            "Mem0ApiKeyParameterName": MEM0_PARAM,
            "Mem0Host": mem0_url,
        },
        refs={"ArchiveBucket": BUCKET, "CallsTable": TABLE, "AuditTable": AUDIT_TABLE},
        attrs={
            "ArchiveBucket.Arn": f"arn:aws:s3:::{BUCKET}",
            "Analytics.Outputs.AnalyticsBucketName": ANALYTICS_BUCKET,
            "Analytics.Outputs.AnalyticsBucketArn": f"arn:aws:s3:::{ANALYTICS_BUCKET}",
            "CallsTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}",
            "AuditTable.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{AUDIT_TABLE}",
            "RetentionLogGroup.Arn": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/callvault/retention:*",
        },
        account=ACCOUNT,
    )
    assert stack.condition(tpl["Resources"][FUNCTION]["Condition"])
    s3 = _root("s3", endpoint)
    for bucket in (BUCKET, ANALYTICS_BUCKET):
        s3.create_bucket(Bucket=bucket)
    assert tpl["Resources"]["ArchiveBucket"]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    table = stack.eval(tpl["Resources"]["CallsTable"]["Properties"])
    _root("dynamodb", endpoint).create_table(
        TableName=TABLE,
        BillingMode=table["BillingMode"],
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
    )
    DynamoAuditTable(AUDIT_TABLE, _root("dynamodb", endpoint)).create_table()
    ssm = _root("ssm", endpoint)
    ssm.put_parameter(Name=TOMBSTONE_PARAM, Value=TOMBSTONE_KEY, Type="SecureString")
    ssm.put_parameter(Name=MEM0_PARAM, Value=MEM0_KEY, Type="SecureString")
    ssm.put_parameter(Name=RULES_PARAM, Value=RULES, Type="String")

    iam, sts = _root("iam", endpoint), _root("sts", endpoint)
    credentials: dict[str, dict[str, str]] = {}
    props = stack.eval(tpl["Resources"][ROLE]["Properties"])
    credentials[ROLE] = _make_role(iam, sts, ROLE, props)
    # The same role without s3:DeleteObjectVersion: the run must fail (the grant is needed, moto enforces).
    credentials["without-DeleteObjectVersion"] = _make_role(
        iam, sts, "RetentionRole-without-DeleteObjectVersion", props, drop="s3:DeleteObjectVersion"
    )
    iam.create_user(UserName="test-admin")
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="test-admin", PolicyName="everything", PolicyDocument=json.dumps(everything))
    key = iam.create_access_key(UserName="test-admin")["AccessKey"]
    credentials["admin"] = {"AccessKeyId": key["AccessKeyId"], "SecretAccessKey": key["SecretAccessKey"]}
    _post(f"{endpoint}/moto-api/reset-auth", b"0")  # from here on moto enforces IAM policies
    return Aws(endpoint, stack, credentials, mem0_url, mem0)


def _make_role(iam: Any, sts: Any, name: str, props: Json, drop: str | None = None) -> dict[str, str]:
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
    for policy in props["Policies"]:
        document = _as_moto_enforces(policy["PolicyDocument"])
        statements = [
            {**s, "Action": [a for a in _as_list(s["Action"]) if a != drop]}
            for s in document["Statement"]
            if [a for a in _as_list(s["Action"]) if a != drop]
        ]
        document = _as_moto_deletes_versions({**document, "Statement": statements})
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    credentials: dict[str, str] = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}", RoleSessionName=name)[
        "Credentials"
    ]
    return credentials


def _as_moto_deletes_versions(document: Json) -> Json:
    """moto authorizes DeleteObjects as ``s3:DeleteObject`` on the bucket's ARN, where AWS checks each
    object, under ``s3:DeleteObjectVersion`` when versions are named by id (as ``purge`` does). So a
    statement granting ``s3:DeleteObjectVersion`` on a bucket's objects also gets, here only, what moto
    checks instead; without that grant (the role below that lacks it) moto refuses too."""
    extra = []
    for statement in document["Statement"]:
        if "s3:DeleteObjectVersion" in _as_list(statement["Action"]):
            buckets = sorted({str(r).split("/", 1)[0] for r in _as_list(statement["Resource"])})
            extra.append({"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": buckets})
    return {**document, "Statement": [*document["Statement"], *extra]}


@pytest.fixture
def become(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., None]]:
    """``become("RetentionRole")``: this process becomes a cold start of the retention function, with its
    template environment and that role's credentials (``"admin"``: the test's own, or an operator's)."""

    def switch(credentials: str, **extra: str) -> None:
        for name in list(os.environ):
            if name.startswith(("AWS_", "CALLVAULT_", "ELEVENLABS_")):
                monkeypatch.delenv(name)
        creds = aws.credentials[credentials]
        variables = {
            **aws.environment(),
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": aws.endpoint,
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
            **extra,
        }
        if "SessionToken" in creds:
            variables["AWS_SESSION_TOKEN"] = creds["SessionToken"]
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        _cold_start()

    yield switch
    _cold_start()


def _cold_start() -> None:
    boto3.DEFAULT_SESSION = None  # a default session keeps the credentials it resolved first
    get_settings.cache_clear()
    read_ssm_secret.cache_clear()


def _seed(aws: Aws, become: Callable[..., None], calls: dict[str, tuple[str, int]]) -> None:
    """Each call (phone, age in days) archived as a webhook would: two transcript deliveries (two S3
    versions), the audio, analytics rows; and one memory of it in Mem0 Platform."""
    become("admin")
    settings = get_settings()
    archiver = build_archiver(settings, build_storage(settings))
    memories = Mem0PlatformMemoryStore(MEM0_KEY, aws.mem0_url)
    for cid, (phone, age) in calls.items():
        started = NOW - age * DAY
        for delivered in (started + 60, started + 120):  # a redelivery with a newer event time: a new version
            envelope = call_envelope(cid, phone, started_at=started, event_at=delivered)
            assert archiver.archive(payload.parse_envelope(orjson.dumps(envelope))).outcome in {"stored", "updated"}
        audio = payload.parse_envelope(orjson.dumps(audio_envelope(cid, started + 90)))
        assert archiver.archive(audio).outcome == "stored"
        memories.add_conversation(phone, cid, [MemoryItem("I like tea", "user", "semantic", {"conversation_id": cid})])


def _versions(aws: Aws, cid: str) -> list[str]:
    """Every version and delete marker of any archive key naming the call."""
    listing = aws.client("s3").list_object_versions(Bucket=BUCKET)
    entries = [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
    return sorted(e["Key"] for e in entries if cid in e["Key"])


def _analytics_text(aws: Aws) -> str:
    s3 = aws.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=ANALYTICS_BUCKET).get("Contents", [])]
    return "\n".join(
        key + "\n" + orjson.dumps(_decoded(s3.get_object(Bucket=ANALYTICS_BUCKET, Key=key)["Body"].read())).decode()
        for key in keys
    )


def _decoded(data: bytes) -> Any:
    from services.analytics.rows import decode

    return decode(data)


def _memory_ids(aws: Aws) -> set[str]:
    return {m["metadata"]["conversation_id"] for m in aws.mem0.memories}


def test_dry_run_equals_the_run_every_version_goes_and_held_calls_survive(
    aws: Aws, become: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    calls = {
        "conv_ret_old": (CALLER, 400),  # past transcripts_days: the whole call goes
        "conv_ret_mid": (CALLER, 100),  # past memories, audio and analytics days: those go, the call stays
        "conv_ret_new": (CALLER, 5),  # nothing yet
        "conv_ret_held": (OTHER, 400),  # past transcripts_days, but under a legal hold
    }
    _seed(aws, become, calls)
    held = conversation_digest(TOMBSTONE_KEY.encode(), "conv_ret_held")
    DynamoHolds(AUDIT_TABLE).place(Hold("hold_ret1", "conversation", held, "conversation", "case 7", NOW, "cli:alice"))
    assert len(_versions(aws, "conv_ret_old")) == 3  # two transcript versions and the audio
    before = {cid: _versions(aws, cid) for cid in calls}

    # The operator's dry run, from their machine with their own credentials: changes nothing.
    dry = CliRunner().invoke(cli, ["retention", "run", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    planned = build_scheduled_retention(get_settings()).run(dry_run=True)
    assert {cid: _versions(aws, cid) for cid in calls} == before

    become(ROLE)
    with caplog.at_level(logging.INFO):
        done = handler.retention_handler(SCHEDULED_EVENT, None)

    counts = {"dry_run": False, "calls": 1, "memories": 1, "audio": 1, "analytics": 1, "held": 1}
    assert {k: done[k] for k in counts} == counts
    dry_counts = {k: v for k, v in json.loads(dry.stdout).items() if k not in ("dry_run", "erased")}
    assert set(dry_counts) >= set(counts) - {"dry_run"}
    assert dry_counts == {k: v for k, v in done.items() if k in dry_counts}
    assert done["erased"]["archive_objects"] == 3 and done["erased"]["index_rows"] == 1  # every version went
    assert planned.calls_expired == ["conv_ret_old"] and planned.memories_expired == ["conv_ret_mid"]
    assert planned.audio_expired == ["conv_ret_mid"] and planned.held == 1

    # The expired call: every object version and delete marker, the row, analytics rows, memories.
    assert _versions(aws, "conv_ret_old") == []
    index = DynamoCallIndex(TABLE)
    become("admin")
    assert index.get("conv_ret_old") is None
    assert DynamoTombstones(TABLE).contains(conversation_digest(TOMBSTONE_KEY.encode(), "conv_ret_old"))
    analytics = _analytics_text(aws)
    assert "conv_ret_old" not in analytics and "conv_ret_mid" not in analytics and "conv_ret_new" in analytics
    assert _memory_ids(aws) == {"conv_ret_new", "conv_ret_held"}
    # Expired audio: every version of the MP3, the row says so; the call and its transcript stay.
    assert [k for k in _versions(aws, "conv_ret_mid") if k.endswith(".mp3")] == []
    mid = index.get("conv_ret_mid")
    assert mid is not None and mid.audio_key is None and mid.memory_status == "expired"
    assert [k for k in _versions(aws, "conv_ret_mid") if k.endswith(".json")]
    # Held and new calls: untouched.
    assert _versions(aws, "conv_ret_held") == before["conv_ret_held"] and index.get("conv_ret_held") is not None
    assert _versions(aws, "conv_ret_new") == before["conv_ret_new"]
    # Audited as a scheduled run; the chain verifies.
    entries = list(DynamoAuditLog(AUDIT_TABLE).entries())
    assert [(e.action, e.actor) for e in entries] == [
        ("retention_run", handler.ACTOR),
        ("erase", handler.ACTOR),
    ]
    # The log line the template's metrics read: counts, no id or number.
    (line,) = [r for r in caplog.records if r.getMessage() == "retention done"]
    assert line.calls == 1 and line.held == 1  # type: ignore[attr-defined]
    logged = " ".join(str(r.__dict__) for r in caplog.records if r.name.startswith("callvault"))
    assert "conv_ret" not in logged and CALLER[1:] not in logged and OTHER[1:] not in logged

    become(ROLE)
    again = handler.retention_handler(SCHEDULED_EVENT, None)
    assert {k: again[k] for k in counts} == {**{k: 0 for k in counts}, "dry_run": False, "held": 1}


@pytest.mark.parametrize(
    ("cid", "extra", "message"),
    [
        ("conv_ret_noholds", {"CALLVAULT_AUDIT_TABLE": ""}, "CALLVAULT_AUDIT_TABLE"),  # a held call would go
        ("conv_ret_badrules", {"CALLVAULT_RETENTION_RULES_PARAM": "/callvault/retention-rules-bad"}, "not valid TOML"),
        # Not "no rules": the function would succeed every day and expire nothing, silently.
        ("conv_ret_norules", {"CALLVAULT_RETENTION_RULES_PARAM": ""}, "CALLVAULT_RETENTION_RULES_PARAM"),
    ],
)
def test_the_function_refuses_without_holds_or_with_bad_rules_and_changes_nothing(
    aws: Aws,
    become: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
    cid: str,
    extra: dict[str, str],
    message: str,
) -> None:
    _seed(aws, become, {cid: (CALLER, 400)})
    bad = {"Name": "/callvault/retention-rules-bad", "Value": "[default", "Type": "String", "Overwrite": True}
    aws.client("ssm").put_parameter(**bad)
    before = _versions(aws, cid)

    become(ROLE, **extra)
    with caplog.at_level(logging.INFO), pytest.raises(RetentionConfigError, match=message):
        handler.retention_handler(SCHEDULED_EVENT, None)

    assert [r.getMessage() for r in caplog.records if r.name.startswith("callvault")] == ["retention refused"]
    assert _versions(aws, cid) == before and before


def test_without_delete_object_version_the_run_fails(aws: Aws, become: Callable[..., None]) -> None:
    """The grant is needed (and moto enforces it): no version of an expired call could be purged."""
    _seed(aws, become, {"conv_ret_denied": (CALLER, 400)})
    become("without-DeleteObjectVersion")
    with pytest.raises(Exception, match="archive is unavailable"):
        handler.retention_handler(SCHEDULED_EVENT, None)
    assert _versions(aws, "conv_ret_denied")
    become(ROLE)
    assert handler.retention_handler(SCHEDULED_EVENT, None)["calls"] >= 1  # the next run finishes it
    assert _versions(aws, "conv_ret_denied") == []
