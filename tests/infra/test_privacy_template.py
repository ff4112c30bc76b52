"""infra/template.yaml and erasure (#13): every function that archives through the Archiver (ingest,
audio fetch, sync), and the memory worker, gets the tombstone key parameter, when one is set, and may
read exactly it."""

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
