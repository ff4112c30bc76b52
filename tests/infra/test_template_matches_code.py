"""infra/template.yaml and the code agree: table keys and indexes, environment variables, handlers,
routes, IAM resources named after code constants, and the pinned Lambda dependencies."""

import ast
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from packaging.requirements import Requirement
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from services.core.adapters.dynamo_call_index import CallModel
from services.core.config import Settings
from services.core.domain import keys
from tests.infra.cfn import (
    INFRA,
    REPO,
    Json,
    Stack,
    function_properties,
    http_routes,
    load,
    resources_of_type,
    template,
)

INGEST = "IngestFunction"
SEARCH = "SearchFunction"
COMPACT = "AnalyticsCompactFunction"
RETENTION = "RetentionFunction"
FUNCTIONS = (INGEST, SEARCH, COMPACT, RETENTION)
ENV_PREFIX = "CALLVAULT_"
# Variables outside CALLVAULT_ that the template may set, and who reads them.
OTHER_VARIABLES = {
    "LOG_LEVEL": "Powertools Logger",
    "POWERTOOLS_SERVICE_NAME": "Powertools Logger",
    "SECRETS_VERSION": "nobody: changing it replaces warm environments, which then re-read the SSM secrets",
}
# What each function needs on the AWS back end (names of Settings fields).
REQUIRED_SETTINGS = {
    INGEST: {"backend", "bucket", "analytics_bucket", "table", "webhook_secret_param"},
    SEARCH: {"backend", "bucket", "table", "api_keys_param", "signing_key_param"},
    COMPACT: {"backend", "analytics_bucket"},
    RETENTION: {
        "backend",
        "bucket",
        "analytics_bucket",
        "table",
        "tombstone_key_param",
        "retention_rules_param",
        "memory_backend",
        "mem0_api_key_param",
    },
}
ANALYTICS_BUCKET_NAME = {"Fn::GetAtt": ["Analytics", "Outputs.AnalyticsBucketName"]}
LAYER_REQUIREMENTS = INFRA / "layers" / "runtime" / "requirements.txt"


def _environment(logical_id: str) -> Json:
    variables: Json = function_properties(template(), logical_id)["Environment"]["Variables"]
    return variables


def _settings_env_names(settings_cls: type[BaseSettings]) -> dict[str, str]:
    prefix = settings_cls.model_config.get("env_prefix", "")
    return {(prefix + name).upper(): name for name in settings_cls.model_fields}


def _statement(role: str, sid: str) -> Json:
    for policy in template()["Resources"][role]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement.get("Sid") == sid:
                found: Json = statement
                return found
    raise AssertionError(f"{role} has no statement {sid}")


def test_table_keys_and_indexes_match_the_pynamodb_model() -> None:
    table = template()["Resources"]["CallsTable"]["Properties"]
    schema = CallModel._get_schema()

    def keyset(key_schema: list[Any]) -> list[tuple[str, str]]:
        return sorted((k["AttributeName"], k["KeyType"]) for k in key_schema)

    assert sorted((a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]) == sorted(
        (a["AttributeName"], a["AttributeType"]) for a in schema["attribute_definitions"]
    )
    assert keyset(table["KeySchema"]) == keyset(schema["key_schema"])
    in_template = {
        gsi["IndexName"]: (keyset(gsi["KeySchema"]), gsi["Projection"]["ProjectionType"])
        for gsi in table["GlobalSecondaryIndexes"]
    }
    in_model = {
        gsi["index_name"]: (keyset(gsi["key_schema"]), gsi["projection"]["ProjectionType"])
        for gsi in schema["global_secondary_indexes"]
    }
    assert in_template == in_model
    assert not table.get("LocalSecondaryIndexes") and not schema["local_secondary_indexes"]


def test_search_may_query_exactly_the_models_listing_indexes() -> None:
    resources = _statement("SearchRole", "QueryCallIndexes")["Resource"]
    names = {r["Fn::Sub"].removeprefix("${CallsTable.Arn}/index/") for r in resources}
    erasure_only = {"by_reported_phone"}  # read by `callvault forget PHONE`, never by a listing
    listings = {gsi["index_name"] for gsi in CallModel._get_schema()["global_secondary_indexes"]} - erasure_only
    assert names == listings


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_every_environment_variable_is_read_by_the_code(logical_id: str) -> None:
    settings_names = _settings_env_names(Settings)
    for name in _environment(logical_id):
        if name.startswith(ENV_PREFIX):
            assert name in settings_names, f"{logical_id} sets {name}, which no Settings field reads"
        else:
            assert name in OTHER_VARIABLES, f"{logical_id} sets {name}: say in this test who reads it"


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_each_function_gets_what_its_aws_back_end_needs(logical_id: str) -> None:
    env = _environment(logical_id)
    fields = {_settings_env_names(Settings)[name] for name in env if name.startswith(ENV_PREFIX)}
    assert REQUIRED_SETTINGS[logical_id] <= fields
    assert env["CALLVAULT_BACKEND"] == "aws"
    if "bucket" in REQUIRED_SETTINGS[logical_id]:
        assert env["CALLVAULT_BUCKET"] == {"Ref": "ArchiveBucket"}
        assert env["CALLVAULT_TABLE"] == {"Ref": "CallsTable"}
    if "analytics_bucket" in REQUIRED_SETTINGS[logical_id]:
        assert env["CALLVAULT_ANALYTICS_BUCKET"] == ANALYTICS_BUCKET_NAME


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_no_secret_value_is_ever_an_environment_variable(logical_id: str) -> None:
    secret_fields = {
        name
        for name, f in Settings.model_fields.items()
        if f.annotation is not None and SecretStr in _args(f.annotation)
    }
    assert {"webhook_secret", "api_keys", "signing_key"} <= secret_fields  # the test sees the secrets it guards
    names = _settings_env_names(Settings)
    assert not [n for n in _environment(logical_id) if names.get(n) in secret_fields]


def _args(annotation: Any) -> tuple[Any, ...]:
    return (annotation, *getattr(annotation, "__args__", ()))


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_settings_accept_the_templates_environment_at_every_parameter_bound(
    logical_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Numbers the template passes (parameter defaults, minimums, maximums) pass Settings' validation."""
    tpl = template()
    parameters = tpl["Parameters"]
    env = _environment(logical_id)
    referenced = {v["Ref"] for v in env.values() if isinstance(v, dict) and v.get("Ref") in parameters}
    for bound in ("Default", "MinValue", "MaxValue"):
        values = {p: parameters[p][bound] for p in referenced if bound in parameters[p]}
        stack = Stack(
            tpl,
            parameters=values,
            refs={"ArchiveBucket": "archive-bucket", "CallsTable": "calls-table"},
            attrs={"Analytics.Outputs.AnalyticsBucketName": "analytics-bucket"},
        )
        for name in [n for f in FUNCTIONS for n in _environment(f)]:
            monkeypatch.delenv(name, raising=False)
        for name, value in stack.eval(env).items():
            monkeypatch.setenv(name, str(value))
        settings = Settings()
        assert settings.backend == "aws"
        if "CALLVAULT_BUCKET" in env:
            assert settings.bucket == "archive-bucket"
            assert settings.table == "calls-table"
        if "CALLVAULT_ANALYTICS_BUCKET" in env:
            assert settings.analytics_bucket == "analytics-bucket"


# Lambda's limit on a synchronous invocation's payload: the whole event JSON, not the body alone.
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
# API Gateway (HTTP API) takes up to 10 KiB of request line and headers.
HTTP_API_HEADER_BYTES = 10 * 1024


@pytest.mark.parametrize("bound", ["Default", "MaxValue"])
def test_a_webhook_body_at_the_limit_still_fits_in_a_lambda_invocation(bound: str) -> None:
    """A body the ingest code would answer 413 must reach it: the event wraps the body in headers, the
    request context and JSON escaping, all of which count toward Lambda's limit. At the platform's own
    6 MiB the body would be refused before CallVault could answer."""
    limit = template()["Parameters"]["MaxBodyBytes"][bound]
    # An audio webhook: base64 in a JSON envelope (its quotes are escaped once more inside the event).
    envelope = b'{"type":"post_call_audio","event_timestamp":1795516800,"data":{"agent_id":"agent_01jzfr",'
    envelope += b'"conversation_id":"conv_01jzfrjvcce0vsea1fcbpp9p04","full_audio":"'
    body = envelope + b"A" * (limit - len(envelope) - 3) + b'"}}'
    headers = {
        "content-type": "application/json",
        "elevenlabs-signature": "t=1795516800,v0=" + "0" * 64,
        "x-padding": "x" * (HTTP_API_HEADER_BYTES - 200),  # whatever else the sender and CloudFront add
    }
    event = {
        "version": "2.0",
        "routeKey": "POST /webhooks/elevenlabs",
        "rawPath": "/webhooks/elevenlabs",
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": "POST", "path": "/webhooks/elevenlabs", "protocol": "HTTP/1.1", "sourceIp": "::1"},
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "POST /webhooks/elevenlabs",
            "stage": "$default",
            "time": "24/Nov/2026:10:40:00 +0000",
            "timeEpoch": 1795516800000,
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }
    assert len(body) == limit
    assert len(json.dumps(event).encode()) <= LAMBDA_PAYLOAD_BYTES


def test_secret_parameter_names_are_ssm_names_and_the_roles_may_read_exactly_those() -> None:
    tpl = template()
    for logical_id, role, sid in (
        (INGEST, "IngestRole", "ReadWebhookSecret"),
        (SEARCH, "SearchRole", "ReadApiSecrets"),
    ):
        params = sorted(
            v["Ref"]
            for n, v in _environment(logical_id).items()
            if n.endswith("_PARAM") and isinstance(v, dict) and "Fn::If" not in v  # conditional: own tests
        )
        resources = _statement(role, sid)["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        granted = sorted(re.sub(r".*:parameter\$\{(\w+)\}$", r"\1", r["Fn::Sub"]) for r in resources)
        assert granted == params
        for param in params:
            assert tpl["Parameters"][param]["Default"].startswith("/")


@pytest.mark.parametrize("logical_id", FUNCTIONS)
def test_handlers_exist_where_the_template_points(logical_id: str) -> None:
    props = function_properties(template(), logical_id)
    code_dir = (INFRA / props["CodeUri"]).resolve()
    parents = template()["Resources"][logical_id]["Metadata"]["BuildProperties"]
    assert code_dir.name == parents["ParentPackages"]  # the package is rebuilt under its own name
    module, function = props["Handler"].rsplit(".", 1)
    path = REPO / Path(*module.split(".")).with_suffix(".py")
    assert path.is_file(), f"{logical_id}: no module {module} ({path})"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert function in defined, f"{logical_id}: {module} defines no {function}()"


def _openapi_routes(app: Any) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every route an app documents: the routes it serves to clients."""
    paths: dict[str, dict[str, Any]] = app.openapi()["paths"]
    return {(method.upper(), path) for path, operations in paths.items() for method in operations}


def test_ingest_route_is_the_webhook_route_of_the_code() -> None:
    from fastapi import FastAPI

    from services.ingest.router import router

    app = FastAPI()
    app.include_router(router)
    assert http_routes(template(), INGEST) == _openapi_routes(app)


def test_search_routes_are_the_routes_of_the_search_app(tmp_path: Path) -> None:
    from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
    from services.core.wiring import Storage
    from services.search.app import create_app
    from services.search.cursor import CursorCodec
    from services.search.links import HmacLinkSigner
    from services.web.auth import ApiKeys

    key = b"k" * 32
    app = create_app(
        Settings(data_dir=tmp_path),
        Storage(MemoryBlobStore(), MemoryCallIndex()),
        api_keys=ApiKeys([]),
        cursors=CursorCodec(key),
        links=HmacLinkSigner(key, time.time),
    )
    code = _openapi_routes(app)
    # The description and Swagger UI (its page and its own files) are served outside the documented paths.
    described = {("GET", app.openapi_url)} | {
        ("GET", route.path) for route in app.routes if isinstance(route, APIRoute) and not route.include_in_schema
    }
    assert {("GET", "/docs"), ("GET", "/docs/assets/{name}")} <= described
    # The console's pages are not API routes (not in the OpenAPI document): the root, /console typed by
    # hand (both redirect to the calls) and one proxy route.
    console = {("GET", "/"), ("GET", "/console"), ("ANY", "/console/{proxy+}")}
    assert http_routes(template(), SEARCH) == code | described | console
    assert {("GET", "/calls"), ("GET", "/calls/{conversation_id}"), ("GET", "/search")} <= code


def test_search_template_routes_reach_every_console_route(tmp_path: Path) -> None:
    """Every console path the search function mounts is under a routed prefix of the template."""
    from services.console.router import router as console_router

    paths = {getattr(route, "path", "") for route in console_router.routes}
    assert paths, "the console has routes"
    routed = {path for _method, path in http_routes(template(), SEARCH)}
    proxied = [path.removesuffix("{proxy+}") for path in routed if path.endswith("/{proxy+}")]
    for path in paths:
        reached = path in routed or any(path.startswith(p) and len(path) > len(p) for p in proxied)
        assert reached, path


def test_only_the_pending_audio_prefix_may_be_deleted() -> None:
    resource = _statement("IngestRole", "DeleteMovedPendingAudio")["Resource"]
    assert resource == {"Fn::Sub": "${ArchiveBucket.Arn}/" + keys.PENDING_AUDIO_PREFIX + "/*"}
    assert keys.pending_audio_key("conv_1").startswith(keys.PENDING_AUDIO_PREFIX + "/")


@pytest.mark.parametrize("role", ["IngestRole", "AnalyticsCompactRole"])
def test_analytics_writers_may_write_exactly_the_analytics_tables_prefixes(role: str) -> None:
    """Their objects (per-call and day objects alike) are all under these prefixes of the analytics bucket."""
    from services.analytics.tables import TABLES, day_object_key, object_key

    resources = _statement(role, "AnalyticsTables")["Resource"]
    arn = "${Analytics.Outputs.AnalyticsBucketArn}/"
    prefixes = {r["Fn::Sub"].removeprefix(arn).removesuffix("/*") for r in resources}
    assert prefixes == set(TABLES)
    for table in TABLES:
        assert object_key(table, "2025-07-06", "conv_1").startswith(table + "/")
        assert day_object_key(table, "2025-07-06").startswith(table + "/")
    function = {"IngestRole": INGEST, "AnalyticsCompactRole": COMPACT}[role]
    assert _environment(function)["CALLVAULT_ANALYTICS_BUCKET"] == ANALYTICS_BUCKET_NAME


def test_the_compaction_lists_the_analytics_bucket_only() -> None:
    listing = _statement("AnalyticsCompactRole", "ListAnalyticsPartitions")
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Resource"] == {"Fn::GetAtt": ["Analytics", "Outputs.AnalyticsBucketArn"]}


def test_the_nested_analytics_stack_has_the_outputs_and_parameters_used() -> None:
    tpl = template()
    nested = tpl["Resources"]["Analytics"]["Properties"]
    analytics = load(INFRA / nested["Location"])
    used = set(re.findall(r"Analytics\.Outputs\.(\w+)", json.dumps(tpl)))
    assert used and used <= set(analytics["Outputs"]), used - set(analytics["Outputs"])
    assert set(nested.get("Parameters", {})) <= set(analytics["Parameters"])


def test_signature_alarm_counts_the_log_line_the_ingest_code_writes(caplog: pytest.LogCaptureFixture) -> None:
    """The metric filter's fields are the ones ``handle_webhook`` logs when a signature is refused."""
    from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
    from services.core.logging import get_logger
    from services.ingest.edge import handle_webhook
    from services.ingest.service import Archiver, WebhookReceiver

    pattern = template()["Resources"]["WebhookSignatureRejectedMetric"]["Properties"]["FilterPattern"]
    wanted = dict(re.findall(r'\$\.(\w+) = "([^"]*)"', pattern))
    assert wanted and len(wanted) == pattern.count("$."), f"the test cannot read every term of {pattern!r}"

    logger = get_logger("callvault-ingest")
    receiver = WebhookReceiver(Archiver(MemoryBlobStore(), MemoryCallIndex(), time.time), ["secret"], 1 << 20)
    status, _ = handle_webhook(receiver, b"{}", "t=1,v0=00", "req-1", logger)

    assert status == 401
    # Each record formatted exactly as the Lambda's JSON formatter writes it to CloudWatch.
    lines = [json.loads(logger.registered_formatter.format(r)) for r in caplog.records]
    assert any(all(str(line.get(k)) == v for k, v in wanted.items()) for line in lines), lines


def test_throttled_webhooks_are_counted_from_the_access_log_format_the_api_writes() -> None:
    """API Gateway's 429 never reaches a function: the metric reads the access log, whose format must
    carry the fields the filter names, and whose route key must be the webhook route the API has."""
    tpl = template()
    pattern = tpl["Resources"]["WebhookThrottledMetric"]["Properties"]["FilterPattern"]
    wanted = dict(re.findall(r'\$\.(\w+) = "([^"]*)"', pattern))
    assert wanted == {"routeKey": "POST /webhooks/elevenlabs", "status": "429"}
    log_format = tpl["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]["Format"]
    fields = json.loads(log_format.replace("\n", ""))
    assert fields["routeKey"] == "$context.routeKey" and fields["status"] == "$context.status"
    assert ("POST", "/webhooks/elevenlabs") in http_routes(tpl, "IngestFunction")
    alarm = tpl["Resources"]["WebhookThrottledAlarm"]["Properties"]
    assert alarm["MetricName"] == "WebhookThrottled" and alarm["Threshold"] == 1


def _pins() -> tuple[dict[str, str], set[str]]:
    """``({name: version}, direct names)``: direct pins come before the ``# transitive`` line."""
    pins: dict[str, str] = {}
    direct: set[str] = set()
    transitive = False
    for raw in LAYER_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        transitive = transitive or raw.strip().lower().startswith("# transitive")
        line = raw.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{line}: pin exactly"
            pins[_normal(req.name)] = spec.version
            if not transitive:
                direct.add(_normal(req.name))
    return pins, direct


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_layer_pins_satisfy_the_project_dependencies() -> None:
    """Every direct pin is a project dependency and satisfies its range. (That the pins are enough
    for the handlers is proved by tests/infra/test_built_handlers.py, which runs them from the build.)"""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_normal(Requirement(d).name): Requirement(d) for d in project["dependencies"]}
    pins, direct = _pins()
    assert direct, "no direct pins found"
    for name in sorted(direct):
        assert name in declared, f"{name} is pinned for Lambda but is not a dependency in pyproject.toml"
    for name, version in pins.items():
        if name in declared:
            assert declared[name].specifier.contains(version), f"{name}=={version} breaks pyproject's {declared[name]}"


def test_every_function_uses_the_dependency_layer_built_from_the_pins() -> None:
    tpl = template()
    layer = tpl["Resources"]["RuntimeDepsLayer"]
    assert (INFRA / layer["Properties"]["ContentUri"] / "requirements.txt") == LAYER_REQUIREMENTS
    for logical_id in resources_of_type(tpl, "AWS::Serverless::Function"):
        props = function_properties(tpl, logical_id)
        assert {"Ref": "RuntimeDepsLayer"} in props["Layers"]
        assert props["Runtime"] == layer["Metadata"]["BuildMethod"]


def test_memory_api_routes_are_the_routes_of_the_memory_router() -> None:
    from fastapi import FastAPI

    from services.memory.router import create_memory_router

    app = FastAPI()
    app.include_router(create_memory_router(lambda: None))
    code = _openapi_routes(app)
    assert http_routes(template(), "MemoryApiFunction") == code
    assert ("POST", "/webhooks/elevenlabs/conversation-init") in code


def test_the_memory_api_starts_with_the_environment_the_template_gives_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack gives the memory API the calls table and no archive bucket (it reads no object, and its
    role may not): building its app from exactly that environment must not ask for one, or every cold
    start raises and every conversation-initiation webhook and memory lookup is a 500."""
    from services.core.config import get_settings
    from services.memory.api_handler import build_memory_api_app

    env = Stack(template(), refs={"CallsTable": "calls-table"}).eval(_environment("MemoryApiFunction"))
    assert "CALLVAULT_BUCKET" not in env
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    for name in [n for n in env if n.endswith("_PARAM")]:  # a value wins over its SSM parameter: no AWS call
        monkeypatch.setenv(name.removesuffix("_PARAM"), "a-secret-value-for-the-start-up-test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("MEM0_TELEMETRY", "False")
    get_settings.cache_clear()
    try:
        app = build_memory_api_app(get_settings())
    finally:
        get_settings.cache_clear()
    assert ("POST", "/webhooks/elevenlabs/conversation-init") in _openapi_routes(app)
