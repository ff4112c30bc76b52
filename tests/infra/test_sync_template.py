"""infra/template.yaml's sync functions (issue #11) and the code agree: handlers, environment, the
queue and its consumer, the schedule, the key's SSM parameter, the layer, the alarms, and that all of
it exists only when ElevenLabsApiKeyParam is given."""

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from services.core.config import Settings
from services.sync.sqs_scheduler import MAX_DELAY_SECONDS, fetch_message
from tests.infra.cfn import INFRA, REPO, Json, Stack, function_properties, resources_of_type, template
from tests.infra.test_template_matches_code import (
    ANALYTICS_BUCKET_NAME,
    ENV_PREFIX,
    OTHER_VARIABLES,
    _settings_env_names,
    _statement,
)

AUDIO_FETCH = "AudioFetchFunction"
SYNC = "SyncFunction"
FUNCTIONS = (AUDIO_FETCH, SYNC)
ROLES = {AUDIO_FETCH: "AudioFetchRole", SYNC: "SyncRole"}
HANDLERS = {AUDIO_FETCH: "services.sync.handler.audio_fetch_handler", SYNC: "services.sync.handler.sync_handler"}
KEY_PARAM = "ElevenLabsApiKeyParam"
CONDITION = "HasElevenLabsApiKey"
REQUIRED_SETTINGS = {
    AUDIO_FETCH: {"backend", "bucket", "analytics_bucket", "table", "elevenlabs_api_key_param"},
    SYNC: {"backend", "bucket", "analytics_bucket", "table", "elevenlabs_api_key_param", "memory_queue_url"},
}
SYNC_LAYER_REQUIREMENTS = INFRA / "layers" / "sync" / "requirements.txt"
WITH_KEY = {KEY_PARAM: "/callvault/elevenlabs-api-key"}


def _env(logical_id: str) -> Json:
    variables: Json = function_properties(template(), logical_id)["Environment"]["Variables"]
    return variables


def _stack(**parameters: Any) -> Stack:
    return Stack(
        template(),
        parameters=parameters,
        refs={"ArchiveBucket": "archive-bucket", "CallsTable": "calls-table", "AudioFetchQueue": "https://q/fetch"},
        attrs={"Analytics.Outputs.AnalyticsBucketName": "analytics-bucket"},
    )


def test_everything_of_sync_exists_only_with_an_api_key() -> None:
    tpl = template()
    assert tpl["Parameters"][KEY_PARAM]["Default"] == ""
    conditioned = {name for name, res in tpl["Resources"].items() if res.get("Condition") == CONDITION}
    assert {
        AUDIO_FETCH,
        SYNC,
        "AudioFetchRole",
        "SyncRole",
        "AudioFetchQueue",
        "AudioFetchDeadLetterQueue",
        "AudioFetchQueuesTlsOnly",
        "SyncDepsLayer",
        "AudioFetchLogGroup",
        "SyncLogGroup",
        "SyncFailuresMetric",
        "SyncFailuresAlarm",
        "SyncErrorsAlarm",
        "AudioFetchErrorsAlarm",
        "AudioFetchDeadLetterAlarm",
    } == conditioned
    assert not _stack().condition(CONDITION) and _stack(**WITH_KEY).condition(CONDITION)
    outputs = {name for name, out in tpl["Outputs"].items() if out.get("Condition") == CONDITION}
    assert outputs == {"AudioFetchQueueUrl", "AudioFetchDeadLetterQueueUrl", "SyncFunctionName"}


def test_ingest_schedules_audio_fetches_only_with_an_api_key() -> None:
    ingest = _env("IngestFunction")
    assert ingest["CALLVAULT_AUDIO_FETCH_QUEUE_URL"] == {
        "Fn::If": [CONDITION, {"Ref": "AudioFetchQueue"}, {"Ref": "AWS::NoValue"}]
    }
    assert ingest["CALLVAULT_AUDIO_GRACE_SECONDS"] == {"Ref": "AudioGraceSeconds"}
    assert "CALLVAULT_AUDIO_FETCH_QUEUE_URL" not in _stack().eval(ingest)
    assert _stack(**WITH_KEY).eval(ingest)["CALLVAULT_AUDIO_FETCH_QUEUE_URL"] == "https://q/fetch"
    statements = template()["Resources"]["IngestRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (scheduled,) = [s["Fn::If"] for s in statements if "Fn::If" in s and s["Fn::If"][0] == CONDITION]
    assert scheduled[1]["Action"] == "sqs:SendMessage"
    assert scheduled[1]["Resource"] == {"Fn::GetAtt": ["AudioFetchQueue", "Arn"]}
    assert scheduled[2] == {"Ref": "AWS::NoValue"}


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_handlers_exist_where_the_template_points(logical_id: str) -> None:
    props = function_properties(template(), logical_id)
    assert props["Handler"] == HANDLERS[logical_id]
    assert template()["Resources"][logical_id]["Metadata"]["BuildProperties"]["ParentPackages"] == "services"
    module, function = props["Handler"].rsplit(".", 1)
    path = REPO / Path(*module.split(".")).with_suffix(".py")
    defined = {n.name for n in ast.parse(path.read_text(encoding="utf-8")).body if isinstance(n, ast.FunctionDef)}
    assert function in defined


@pytest.mark.parametrize("logical_id", [*FUNCTIONS, "IngestFunction"])
def test_every_environment_variable_is_read_by_the_code(logical_id: str) -> None:
    names = _settings_env_names(Settings)
    for name in _env(logical_id):
        if name.startswith(ENV_PREFIX):
            assert name in names, f"{logical_id} sets {name}, which no Settings field reads"
        else:
            assert name in OTHER_VARIABLES, f"{logical_id} sets {name}: say who reads it"


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_each_sync_function_gets_what_its_aws_back_end_needs(logical_id: str) -> None:
    env = _env(logical_id)
    fields = {_settings_env_names(Settings)[name] for name in env if name.startswith(ENV_PREFIX)}
    assert REQUIRED_SETTINGS[logical_id] <= fields
    assert env["CALLVAULT_BACKEND"] == "aws"
    assert env["CALLVAULT_BUCKET"] == {"Ref": "ArchiveBucket"}
    assert env["CALLVAULT_TABLE"] == {"Ref": "CallsTable"}
    assert env["CALLVAULT_ANALYTICS_BUCKET"] == ANALYTICS_BUCKET_NAME
    assert env["CALLVAULT_ELEVENLABS_API_KEY_PARAM"] == {"Ref": KEY_PARAM}
    assert env["SECRETS_VERSION"] == {"Ref": "SecretsVersion"}  # rotating the key = new SecretsVersion
    assert "CALLVAULT_AUDIO_FETCH_QUEUE_URL" not in env  # they fetch missing audio themselves
    assert not [n for n in env if "ELEVENLABS_API_KEY" in n and not n.endswith("_PARAM")]  # never the key


@pytest.mark.parametrize("logical_id", [*FUNCTIONS, "IngestFunction"])
def test_settings_accept_the_templates_environment_at_every_parameter_bound(
    logical_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tpl = template()
    parameters = tpl["Parameters"]
    env = _env(logical_id)
    referenced = {v["Ref"] for v in env.values() if isinstance(v, dict) and v.get("Ref") in parameters}
    assert logical_id == "IngestFunction" or {"ElevenLabsBaseUrl", KEY_PARAM} <= referenced
    for bound in ("Default", "MinValue", "MaxValue"):
        values = {p: parameters[p][bound] for p in referenced if bound in parameters[p]}
        stack = _stack(**{**values, **WITH_KEY})
        for name in list(env):
            monkeypatch.delenv(name, raising=False)
        for name, value in stack.eval(env).items():
            monkeypatch.setenv(name, str(value))
        settings = Settings()
        assert settings.backend == "aws"
        if logical_id == "IngestFunction":
            assert settings.audio_fetch_queue_url == "https://q/fetch"
            assert settings.audio_grace_seconds == int(values.get("AudioGraceSeconds", 300))
        else:
            assert settings.elevenlabs_api_key_param == WITH_KEY[KEY_PARAM]
            assert settings.elevenlabs_base_url == parameters["ElevenLabsBaseUrl"]["Default"]


def test_the_grace_period_fits_an_sqs_delay_and_the_settings() -> None:
    grace = template()["Parameters"]["AudioGraceSeconds"]
    field = Settings.model_fields["audio_grace_seconds"]
    limits = {type(m).__name__: m for m in field.metadata}
    assert grace["MaxValue"] == MAX_DELAY_SECONDS == limits["Le"].le
    assert grace["MinValue"] == limits["Ge"].ge == 0
    assert grace["Default"] == field.default


def test_the_roles_may_read_exactly_the_api_keys_parameter() -> None:
    for logical_id, role in ROLES.items():
        statement = _statement(role, "ReadElevenLabsApiKey")
        assert statement["Action"] == "ssm:GetParameter"
        granted = re.sub(r".*:parameter\$\{(\w+)\}$", r"\1", statement["Resource"]["Fn::Sub"])
        # The tombstone key is conditional and checked in test_privacy_template.py.
        params = [v["Ref"] for n, v in _env(logical_id).items() if n.endswith("_PARAM") and "Fn::If" not in v]
        assert [granted] == params == [KEY_PARAM]


def test_the_audio_fetch_queue_is_encrypted_tls_only_and_redrives_to_an_alarmed_dlq() -> None:
    resources = template()["Resources"]
    queue, dlq = resources["AudioFetchQueue"]["Properties"], resources["AudioFetchDeadLetterQueue"]["Properties"]
    assert "FifoQueue" not in queue  # per-message DelaySeconds needs a standard queue
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["AudioFetchDeadLetterQueue", "Arn"]}
    assert 1 < queue["RedrivePolicy"]["maxReceiveCount"] <= 10
    timeout = function_properties(template(), AUDIO_FETCH)["Timeout"]
    assert timeout == 900 and queue["VisibilityTimeout"] >= 6 * timeout
    policy = resources["AudioFetchQueuesTlsOnly"]["Properties"]
    assert policy["Queues"] == [{"Ref": "AudioFetchQueue"}, {"Ref": "AudioFetchDeadLetterQueue"}]
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Principal"], deny["Action"]) == ("Deny", "*", "sqs:*")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    alarms = [a["Properties"] for a in resources_of_type(template(), "AWS::CloudWatch::Alarm").values()]
    assert any(
        a["Namespace"] == "AWS/SQS"
        and a["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and a["Dimensions"]
        == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["AudioFetchDeadLetterQueue", "QueueName"]}}]
        for a in alarms
    )


def test_the_audio_fetch_consumes_its_queue_in_small_batches_with_partial_failures() -> None:
    props = template()["Resources"][AUDIO_FETCH]["Properties"]
    (event,) = props["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["AudioFetchQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= event["Properties"]["BatchSize"] <= 10
    assert event["Properties"]["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "AudioFetchMaxConcurrency"}
    consume = _statement("AudioFetchRole", "ConsumeAudioFetches")
    assert set(consume["Action"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
    assert consume["Resource"] == {"Fn::GetAtt": ["AudioFetchQueue", "Arn"]}


def test_the_message_the_ingest_sends_is_the_one_the_audio_fetch_reads() -> None:
    from services.sync.handler import conversation_id_of

    assert json.loads(fetch_message("conv_1")) == {"conversation_id": "conv_1"}  # ids only, never a phone
    assert conversation_id_of(fetch_message("conv_1")) == "conv_1"


def test_the_sync_runs_on_its_schedule_once_at_a_time() -> None:
    tpl = template()
    props = tpl["Resources"][SYNC]["Properties"]
    (event,) = props["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"]["Enabled"] is True
    assert event["Properties"]["Schedule"] == {"Ref": "SyncSchedule"}
    assert tpl["Parameters"]["SyncSchedule"]["Default"] == "rate(15 minutes)"
    assert props["Timeout"] == 900
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasSyncReservedConcurrency", {"Ref": "SyncReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert tpl["Parameters"]["SyncReservedConcurrency"]["Default"] == 1
    assert props["EventInvokeConfig"]["MaximumRetryAttempts"] == 0  # the next run is the retry


def test_the_sync_failures_alarm_counts_the_log_line_the_handler_writes(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.sync import handler
    from services.sync.service import SyncSummary

    resources = template()["Resources"]
    metric = resources["SyncFailuresMetric"]["Properties"]
    wanted = dict(re.findall(r'\$\.(\w+) = "([^"]*)"', metric["FilterPattern"]))
    (transformation,) = metric["MetricTransformations"]
    value_field = transformation["MetricValue"].removeprefix("$.")
    alarm = resources["SyncFailuresAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Namespace"]) == (
        transformation["MetricName"],
        transformation["MetricNamespace"],
    )

    class OneRun:
        def run(self) -> SyncSummary:
            summary = SyncSummary(after=100, before=None, listed=3, counts={"new": 1, "failed": 2})
            summary.failures = [("conv_a", "upstream down"), ("conv_b", "upstream down")]
            return summary

    monkeypatch.setattr(handler, "_syncer", OneRun)
    result = handler.sync_handler({}, None)

    assert result["failed"] == [
        {"conversation_id": "conv_a", "reason": "upstream down"},
        {"conversation_id": "conv_b", "reason": "upstream down"},
    ]
    lines = [json.loads(handler.logger.registered_formatter.format(r)) for r in caplog.records]
    (done,) = [line for line in lines if all(str(line.get(k)) == v for k, v in wanted.items())]
    assert done[value_field] == 2


def test_only_the_sync_functions_get_the_sync_layer_and_its_pins_fit_the_project() -> None:
    import tomllib

    tpl = template()
    layer = tpl["Resources"]["SyncDepsLayer"]
    assert (INFRA / layer["Properties"]["ContentUri"] / "requirements.txt") == SYNC_LAYER_REQUIREMENTS
    for logical_id in resources_of_type(tpl, "AWS::Serverless::Function"):
        has = {"Ref": "SyncDepsLayer"} in function_properties(tpl, logical_id)["Layers"]
        assert has == (logical_id in FUNCTIONS), logical_id
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {Requirement(d).name.lower(): Requirement(d) for d in project["dependencies"]}
    pins = [
        Requirement(line.split("#", 1)[0].strip())
        for line in SYNC_LAYER_REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.split("#", 1)[0].strip()
    ]
    names = {pin.name.lower() for pin in pins}
    assert {"httpx", "tenacity"} <= names  # what services/sync/elevenlabs.py imports beyond the runtime layer
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "==", f"{pin}: pin exactly"
        if pin.name.lower() in declared:
            assert declared[pin.name.lower()].specifier.contains(spec.version), pin


def test_incomplete_multipart_uploads_are_removed_within_a_day() -> None:
    rules = template()["Resources"]["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    aborts = [
        r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        for r in rules
        if "AbortIncompleteMultipartUpload" in r
    ]
    assert aborts == [1]
    assert all("s3:AbortMultipartUpload" in _statement(role, "ArchiveObjects")["Action"] for role in ROLES.values())
