"""infra/analytics.yaml against the code: Glue columns = the rows written, Glue views = the current-rows
SQL, named queries = the report SQL, and the properties issue #5 asks for (projection, no transitions,
enforced workgroup, ...)."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from cfnlint.decode import cfn_yaml
from sqlglot import exp

from services.analytics.reports import REPORTS
from services.analytics.tables import COLUMNS, PARTITION_COLUMN, current_rows_sql, objects_table
from tests.analytics.test_late_rows import presto_view

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "analytics.yaml"
# The stored rows (Glue tables) and the views over them that people and reports query.
TABLE_RESOURCES = {
    "calls": "CallsObjectsTable",
    "messages": "MessagesObjectsTable",
    "evaluations": "EvaluationsObjectsTable",
}
VIEW_RESOURCES = {"calls": "CallsTable", "messages": "MessagesTable", "evaluations": "EvaluationsTable"}
PRESTO_TYPES = {"string": "varchar", "bigint": "bigint", "double": "double", "boolean": "boolean"}

Json = dict[str, Any]


@pytest.fixture(scope="module")
def template() -> Json:
    loaded: Json = cfn_yaml.load(str(TEMPLATE))
    return loaded


def _of_type(template: Json, kind: str) -> dict[str, Json]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_glue_columns_are_the_columns_the_writer_emits(template: Json, table: str) -> None:
    table_input = template["Resources"][TABLE_RESOURCES[table]]["Properties"]["TableInput"]
    assert table_input["Name"] == objects_table(table)
    declared = [(c["Name"], c["Type"]) for c in table_input["StorageDescriptor"]["Columns"]]
    assert declared == list(COLUMNS[table])
    assert table_input["PartitionKeys"] == [
        {"Name": PARTITION_COLUMN, "Type": "string", "Comment": "UTC start date of the call, YYYY-MM-DD"}
    ]


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_partition_projection_on_dt_without_a_crawler(template: Json, table: str) -> None:
    table_input = template["Resources"][TABLE_RESOURCES[table]]["Properties"]["TableInput"]
    params = table_input["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.dt.type"] == "date"
    assert params["projection.dt.format"] == "yyyy-MM-dd"  # the writer's %Y-%m-%d
    assert params["projection.dt.range"] == {"Fn::Sub": "${ProjectionStartDate},NOW"}
    assert params["projection.dt.interval.unit"] == "DAYS"
    # ${!dt} is CloudFormation's escape: Athena receives the literal ${dt}.
    assert params["storage.location.template"] == {"Fn::Sub": f"s3://${{AnalyticsBucket}}/{table}/dt=${{!dt}}/"}
    descriptor = table_input["StorageDescriptor"]
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert descriptor["Location"] == {"Fn::Sub": f"s3://${{AnalyticsBucket}}/{table}/"}
    assert not _of_type(template, "AWS::Glue::Crawler")


def _presto_type(glue_type: str) -> str:
    return "array(varchar)" if glue_type == "array<string>" else PRESTO_TYPES[glue_type]


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_each_table_people_query_is_a_view_of_each_calls_current_rows(template: Json, table: str) -> None:
    """The Glue view named like the table holds ``current_rows_sql`` word for word, with the columns
    (and types) it returns: Athena calls a view whose declared columns differ from its SQL's stale."""
    resource = template["Resources"][VIEW_RESOURCES[table]]
    assert resource["DependsOn"] == TABLE_RESOURCES[table]
    table_input = resource["Properties"]["TableInput"]
    assert (table_input["Name"], table_input["TableType"]) == (table, "VIRTUAL_VIEW")
    assert table_input["Parameters"] == {"presto_view": "true", "comment": "Presto View"}
    assert table_input["ViewExpandedText"] == "/* Presto View */"
    view = presto_view(table_input, "callvault_analytics")
    assert view["originalSql"] == current_rows_sql(table)
    assert (view["catalog"], view["schema"]) == ("awsdatacatalog", "callvault_analytics")
    columns = [*COLUMNS[table], (PARTITION_COLUMN, "string")]
    assert view["columns"] == [{"name": n, "type": _presto_type(t)} for n, t in columns]
    declared = [(c["Name"], c["Type"]) for c in table_input["StorageDescriptor"]["Columns"]]
    assert declared == columns


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_the_view_reads_its_table_once_and_keeps_the_dt_filter_on_the_scan(table: str) -> None:
    """One scan (Athena bills bytes per table read), and a window partitioned by dt: Trino pushes a
    predicate on a window's partition keys below it, so partition projection still prunes by dt."""
    tree = sqlglot.parse_one(current_rows_sql(table), read="trino", error_level=sqlglot.ErrorLevel.RAISE)
    assert isinstance(tree, exp.Select)
    assert [t.name for t in tree.find_all(exp.Table)] == [objects_table(table)]
    [window] = list(tree.find_all(exp.Window))
    assert PARTITION_COLUMN in [c.name for c in window.args["partition_by"]]
    assert [c.name for c in tree.selects] == [*(n for n, _t in COLUMNS[table]), PARTITION_COLUMN]


def test_named_queries_are_the_report_sql_word_for_word(template: Json) -> None:
    queries = {q["Properties"]["Name"]: q["Properties"] for q in _of_type(template, "AWS::Athena::NamedQuery").values()}
    assert set(queries) == {f"callvault {name}" for name in REPORTS}
    for name, report in REPORTS.items():
        query = queries[f"callvault {name}"]
        assert query["QueryString"] == report.text(), f"update infra/analytics.yaml for report {name}"
        assert query["Database"] == {"Ref": "Database"}
        assert query["WorkGroup"] == {"Ref": "Workgroup"}


def test_workgroup_enforces_encrypted_expiring_results_and_a_scan_cutoff(template: Json) -> None:
    [workgroup] = _of_type(template, "AWS::Athena::WorkGroup").values()
    config = workgroup["Properties"]["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["BytesScannedCutoffPerQuery"] == {"Ref": "BytesScannedCutoff"}
    assert template["Parameters"]["BytesScannedCutoff"]["MinValue"] >= 10_000_000  # Athena's own minimum
    results = config["ResultConfiguration"]
    assert results["OutputLocation"] == {"Fn::Sub": "s3://${ResultsBucket}/results/"}
    encryption = results["EncryptionConfiguration"]["Fn::If"]
    assert encryption[1]["EncryptionOption"] == "SSE_KMS" and encryption[2]["EncryptionOption"] == "SSE_S3"
    rules = template["Resources"]["ResultsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("ExpirationInDays") == {"Ref": "ResultsRetentionDays"} for r in rules)


@pytest.mark.parametrize("bucket", ["AnalyticsBucket", "ResultsBucket"])
def test_buckets_are_private_encrypted_and_tls_only(template: Json, bucket: str) -> None:
    props = template["Resources"][bucket]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    policies = [
        p for p in _of_type(template, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    [policy] = policies
    denies = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert any(s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false" for s in denies)


def test_analytics_never_moves_to_a_class_athena_cannot_read(template: Json) -> None:
    rules = template["Resources"]["AnalyticsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    for rule in rules:
        assert not {"Transitions", "Transition", "NoncurrentVersionTransitions", "ExpirationInDays"} & set(rule)


def _statements(policy: Json) -> list[Json]:
    found: list[Json] = []
    for entry in policy["Properties"]["PolicyDocument"]["Statement"]:
        if "Fn::If" in entry:
            found.extend(b for b in entry["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"})
        else:
            found.append(entry)
    return found


def test_analyst_policy_reads_analytics_and_nothing_of_the_archive(template: Json) -> None:
    statements = _statements(template["Resources"]["AnalystPolicy"])
    text = repr(statements)
    assert "Archive" not in text and "archive" not in text.lower().replace("callvault", "")
    s3_actions = {a for s in statements for a in s["Action"] if a.startswith("s3:")}
    writes = {"s3:PutObject", "s3:DeleteObject"}
    for statement in statements:
        if writes & set(statement["Action"]):
            assert statement["Resource"] == {"Fn::Sub": "${ResultsBucket.Arn}/*"}  # only results are written
    assert "s3:GetObject" in s3_actions
    athena = [s for s in statements if any(a.startswith("athena:") for a in s["Action"])]
    assert all("workgroup/${Workgroup}" in s["Resource"]["Fn::Sub"] for s in athena)
    assert all("*" not in s["Resource"] for s in statements if isinstance(s["Resource"], str))


def test_outputs_the_lead_wires_into_the_main_template(template: Json) -> None:
    assert {
        "AnalyticsBucketName",
        "AnalyticsBucketArn",
        "WorkgroupName",
        "GlueDatabase",
        "AnalystPolicyArn",
        "IngestWriterPolicyArn",
    } <= set(template["Outputs"])


def test_cfn_lint_passes() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
