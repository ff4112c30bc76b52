"""Reading ``infra/template.yaml`` and the ``sam build`` output, for the tests in this folder.

``Stack`` evaluates the template the way CloudFormation would for one set of parameter values
(the defaults unless told): conditions, ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If``. Resources
get the names and ARNs the caller assigns, so a test can stand the stack up on moto and compare.
"""

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TEMPLATE_PATH = INFRA / "template.yaml"
DEFAULT_BUILD_DIR = INFRA / ".aws-sam" / "build"
NO_VALUE = object()  # what ``Ref: AWS::NoValue`` evaluates to; dropped from lists and mappings

Json = dict[str, Any]


def load(path: Path) -> Json:
    """The template as plain JSON data (intrinsics in their long form, e.g. ``{"Ref": ...}``)."""
    plain: Json = json.loads(json.dumps(cfn_yaml.load(str(path))))
    return plain


@cache
def template() -> Json:
    return load(TEMPLATE_PATH)


def resources_of_type(tpl: Json, resource_type: str) -> dict[str, Json]:
    return {name: res for name, res in tpl["Resources"].items() if res["Type"] == resource_type}


def function_properties(tpl: Json, logical_id: str) -> Json:
    """A function's properties with ``Globals.Function`` merged in as SAM does (lists are joined)."""
    merged: Json = dict(tpl.get("Globals", {}).get("Function", {}))
    for key, value in tpl["Resources"][logical_id]["Properties"].items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + value
        elif isinstance(value, dict) and isinstance(merged.get(key), dict) and not _is_intrinsic(value):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def http_routes(tpl: Json, logical_id: str) -> set[tuple[str, str]]:
    """``(METHOD, path)`` of every HttpApi event of one function."""
    events = tpl["Resources"][logical_id]["Properties"].get("Events", {})
    return {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events.values() if e["Type"] == "HttpApi"
    }


def build_dir() -> Path:
    """The ``sam build`` output. Absent: skipped on a developer's machine, a failure in CI."""
    configured = os.environ.get("CALLVAULT_SAM_BUILD_DIR")
    path = (REPO / configured) if configured else DEFAULT_BUILD_DIR
    if (path / "template.yaml").is_file():
        return path
    message = f"no `sam build` output in {path}: run `make infra-build` (make test does)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message + "; in CI the build must exist")
    pytest.skip(message)


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and (next(iter(value)) == "Ref" or "Fn::" in next(iter(value)))


@dataclass
class Stack:
    """The template evaluated for one set of parameters, with given physical names and ARNs.

    ``refs`` maps a resource's logical id to what ``Ref`` returns; ``attrs`` maps ``"Id.Attr"`` to
    what ``Fn::GetAtt`` returns. Anything not given evaluates to a readable placeholder.
    """

    tpl: Json
    parameters: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    account: str = "123456789012"
    stack_name: str = "callvault"

    def __post_init__(self) -> None:
        values = {name: p.get("Default") for name, p in self.tpl.get("Parameters", {}).items()}
        values.update(self.parameters)
        self.parameters = values

    def condition(self, name: str) -> bool:
        return bool(self.eval(self.tpl["Conditions"][name]))

    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.tpl["Resources"]:
            return self.refs.get(name, f"<{name}>")
        raise KeyError(f"Ref to unknown name {name!r}")

    def get_att(self, name: str, attr: str) -> str:
        if name not in self.tpl["Resources"]:
            raise KeyError(f"GetAtt of unknown resource {name!r}")
        return self.attrs.get(f"{name}.{attr}", f"<{name}.{attr}>")

    def eval(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.eval(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if _is_intrinsic(value):
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(name, attr)
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::If":
                name, when_true, when_false = arg
                return self.eval(when_true if self.condition(name) else when_false)
            if fn == "Fn::Equals":
                left, right = (self.eval(a) for a in arg)
                return str(left) == str(right)
            if fn == "Fn::Not":
                return not self.eval(arg[0])
            if fn == "Fn::And":
                return all(self.eval(a) for a in arg)
            if fn == "Fn::Or":
                return any(self.eval(a) for a in arg)
            if fn == "Condition":
                return self.condition(arg)
            raise NotImplementedError(fn)
        evaluated = {k: self.eval(v) for k, v in value.items()}
        return {k: v for k, v in evaluated.items() if v is not NO_VALUE}

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.eval(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name and name.split(".", 1)[0] in self.tpl["Resources"]:
                resource, attr = name.split(".", 1)
                return str(self.get_att(resource, attr))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)
