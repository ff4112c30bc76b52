"""Every field the ``elevenlabs`` SDK's ``GetConversationResponseModel`` declares, at every depth, filled
with a value, survives a sync into the archived JSON: the client, the Syncer and the Archiver keep
the document as upstream sent it (the transcription webhook's promise, kept for the API's too)."""

import enum
import json
import types
import typing
from pathlib import Path
from typing import Any

import pydantic
from elevenlabs.types import GetConversationResponseModel

from services.core.config import Settings
from services.core.wiring import build_storage
from services.ingest.wiring import build_archiver
from services.sync.elevenlabs import ElevenLabsClient
from services.sync.service import Syncer
from services.sync.state import MemorySyncState
from tests.support_elevenlabs import AGENT_ID, API_KEY, PHONE, T0, ElevenLabsStandIn

MAX_DEPTH = 12  # the SDK's models nest (workflow nodes, tool results); deeper than any real document


def filled(annotation: Any, name: str, depth: int = 0) -> Any:
    """A value of ``annotation`` with nothing left empty: every model field set, every list one item long."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return filled(args[0], name, depth)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None) and a is not typing.Any]
        models = [a for a in options if isinstance(a, type) and issubclass(a, pydantic.BaseModel)]
        return filled((models or options)[-1] if models or options else str, name, depth)
    if origin is typing.Literal:
        return args[0]
    if origin in (list, typing.List, tuple, set, typing.Sequence):  # noqa: UP006
        return [filled(args[0] if args else str, name, depth + 1)]
    if origin in (dict, typing.Dict, typing.Mapping):  # noqa: UP006
        return {f"{name}_key": filled(args[1] if len(args) == 2 else str, name, depth + 1)}
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        if depth >= MAX_DEPTH:
            return {}  # only self-nesting models get here (tool results holding steps holding results)
        return {
            (info.alias or field): filled(info.annotation, field, depth + 1)
            for field, info in annotation.model_fields.items()
        }
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return next(iter(annotation)).value
    if annotation is bool:
        return True
    if annotation is int:
        return T0 if "unix" in name or name.endswith("_at") else 7
    if annotation is float:
        return 0.25
    return f"{name} value"  # str, Any and the rest: a string says which field it came from


def leaves(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a JSON value by its path (``metadata.phone_call.external_number``, ``transcript.0.role``)."""
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items() for k, v in leaves(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in leaves(item, f"{path}.{i}").items()}
    return {path: value}


def declared_paths(model: type[pydantic.BaseModel], document: dict[str, Any], prefix: str = "") -> set[str]:
    """Paths of every field the SDK declares that the document holds (recursing into nested models)."""
    paths = set()
    for field, info in model.model_fields.items():
        key = info.alias or field
        if key not in document:
            continue
        paths.add(f"{prefix}{key}")
        value = document[key]
        for candidate in _models_in(info.annotation):
            if isinstance(value, dict):
                paths |= declared_paths(candidate, value, f"{prefix}{key}.")
            elif isinstance(value, list) and value and isinstance(value[0], dict):
                paths |= declared_paths(candidate, value[0], f"{prefix}{key}.0.")
    return paths


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def every_field_document(conversation_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = filled(GetConversationResponseModel, "conversation")
    # What a call must say to be archived where the webhook's would be: a final status, its own
    # ids, a real start and a caller's number.
    doc.update(conversation_id=conversation_id, agent_id=AGENT_ID, status="done", has_audio=False)
    metadata = doc["metadata"]
    metadata.update(start_time_unix_secs=T0, accepted_time_unix_secs=T0, call_duration_secs=42)
    metadata["phone_call"].update(external_number=PHONE, direction="inbound")
    doc["transcript"] = [
        {**doc["transcript"][0], "role": role, "time_in_call_secs": i} for i, role in enumerate(["agent", "user"])
    ]
    return doc


def test_every_field_the_sdk_declares_survives_a_sync_into_the_archived_json(tmp_path: Path) -> None:
    cid = "conv_every_sdk_field"
    document = every_field_document(cid)
    GetConversationResponseModel.model_validate(document)  # a document the SDK itself accepts
    declared = declared_paths(GetConversationResponseModel, document)
    empty = {path: value for path, value in leaves(document).items() if value in (None, "", [])}
    assert not empty, f"the built document leaves fields empty: {sorted(empty)[:10]}"
    assert len(declared) > 150  # nested fields too, not only the top level

    settings = Settings(data_dir=tmp_path / "data")
    storage = build_storage(settings)
    with ElevenLabsStandIn() as api, ElevenLabsClient(api.url, API_KEY) as client:
        api.add(cid, extra=document)
        served = api.document(cid)  # the built document over the stand-in's template
        syncer = Syncer(client, build_archiver(settings, storage), storage.index, MemorySyncState())
        summary = syncer.run(since=T0 - 60)

    assert (summary.counts, summary.failures) == ({"new": 1}, [])
    row = storage.index.get(cid)
    assert row is not None and row.transcript_key is not None
    archived = json.loads((settings.data_dir / "archive" / row.transcript_key).read_bytes())
    kept = leaves(archived)
    lost = sorted(path for path in declared if not any(p == path or p.startswith(f"{path}.") for p in kept))
    assert lost == []
    assert {path: kept.get(path) for path in leaves(document)} == leaves(document)  # every value as built
    assert archived == served  # and nothing else changed on the way
