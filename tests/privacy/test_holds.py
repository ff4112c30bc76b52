"""Legal hold: erasure refuses held data with a message naming the hold, until it is released."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from click.testing import Result as CliResult
from fastapi.testclient import TestClient

from services.analytics.erasure import AnalyticsErasure
from services.cli.main import cli
from services.core.adapters.memory import MemoryAuditLog, MemoryBlobStore, MemoryCallIndex, MemoryHolds
from services.core.domain.errors import Held
from services.core.domain.models import CallRecord
from services.privacy.audit import Auditor
from services.privacy.holds import HoldBook
from services.privacy.service import Eraser

from .conftest import T0, World
from .test_forget_edges import ADMIN, CALL_ID, bearer

PHONE = "+16125550142"
WEB_CALL_ID = "conv_01jzfrjvcce0vsea1fcbpp9p06"  # a widget call: no number
ENV = {"CALLVAULT_MEMORY_BACKEND": "none"}


def _world() -> tuple[World, Eraser, HoldBook]:
    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore())
    world.call("conv_a", PHONE, T0, audio=True)
    world.call("conv_b", PHONE, T0 + 100)
    book = HoldBook(MemoryHolds(), world.erased, Auditor(MemoryAuditLog(), world.erased))
    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased, holds=book)
    return world, eraser, book


def test_a_held_caller_is_refused_with_the_hold_named_and_nothing_is_erased() -> None:
    world, eraser, book = _world()
    hold = book.place(reason="case 2026-114", actor="cli:alice", phone=PHONE)
    before = world.archive_listing()

    for attempt in (lambda: eraser.dry_run(eraser.plan_caller(PHONE)), lambda: eraser.erase(eraser.plan_caller(PHONE))):
        with pytest.raises(Held) as refused:
            attempt()
        assert hold.id in refused.value.message and "case 2026-114" in refused.value.message
    with pytest.raises(Held):
        eraser.erase(eraser.plan_conversations(["conv_b"]))  # each of the caller's calls is held

    assert world.archive_listing() == before
    assert not world.erased.is_erased("conv_a")  # refused before any tombstone


def test_a_held_conversation_blocks_its_callers_erasure_but_not_other_calls() -> None:
    world, eraser, book = _world()
    hold = book.place(reason="complaint 88", actor="cli:alice", conversation_id="conv_a")

    with pytest.raises(Held, match=hold.id):
        eraser.erase(eraser.plan_caller(PHONE))
    eraser.erase(eraser.plan_conversations(["conv_b"]))

    assert world.index.get("conv_a") is not None and world.index.get("conv_b") is None


def test_after_release_the_data_can_be_erased_and_both_are_audited() -> None:
    world, eraser, book = _world()
    hold = book.place(reason="case 114", actor="cli:alice", phone=PHONE)
    book.release(hold.id, actor="cli:bob")

    eraser.erase(eraser.plan_caller(PHONE), actor="cli:carol")

    assert world.index.get("conv_a") is None
    assert book.audit is not None
    entries = book.audit.entries()
    assert [(e.action, e.actor) for e in entries] == [("hold", "cli:alice"), ("release", "cli:bob")]
    assert all(PHONE not in json.dumps(e.to_dict()) for e in entries)


def test_hold_and_release_commands_with_forget_and_the_http_route(client: TestClient, data_dir: Path) -> None:
    runner = CliRunner()
    placed = runner.invoke(cli, ["hold", PHONE, "--reason", "case 7", "--json", "--data-dir", str(data_dir)], env=ENV)
    assert placed.exit_code == 0, placed.output
    hold_id = json.loads(placed.stdout)["id"]

    refused = runner.invoke(cli, ["forget", PHONE, "--yes", "--data-dir", str(data_dir)], env=ENV)
    assert refused.exit_code == 1 and hold_id in refused.output and "case 7" in refused.output
    answer = client.delete("/callers/+16125550142", headers=bearer(ADMIN))
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "held"
    assert hold_id in answer.json()["error"]["message"]
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 200
    listed = runner.invoke(cli, ["hold", "--list", "--data-dir", str(data_dir)], env=ENV)
    assert hold_id in listed.stdout and "active" in listed.stdout

    released = runner.invoke(cli, ["release", hold_id, "--data-dir", str(data_dir)], env=ENV)
    assert released.exit_code == 0, released.output
    again = runner.invoke(cli, ["release", hold_id, "--data-dir", str(data_dir)], env=ENV)
    assert again.exit_code == 0 and "released already" in again.output  # and no second audit entry (below)
    assert runner.invoke(cli, ["release", "hold_nope", "--data-dir", str(data_dir)], env=ENV).exit_code == 1
    assert client.delete("/callers/+16125550142", headers=bearer(ADMIN)).status_code == 200
    assert client.get(f"/calls/{CALL_ID}", headers=bearer(ADMIN)).status_code == 404
    actions = [i["action"] for i in client.get("/audit", headers=bearer(ADMIN)).json()["items"]]
    assert [a for a in actions if a != "link_issued"] == ["hold", "release", "erase"]


def test_the_holds_covering_a_call_are_those_on_it_and_on_its_caller() -> None:
    world, _, book = _world()
    on_caller = book.place(reason="case 1", actor="cli:alice", phone=PHONE)
    on_call = book.place(reason="complaint 2", actor="cli:alice", conversation_id="conv_a")
    book.place(reason="case 3", actor="cli:alice", phone="+16125550177")  # another caller
    book.place(reason="complaint 4", actor="cli:alice", conversation_id="conv_b")
    book.release(on_call.id, actor="cli:bob")
    conv_a = world.index.get("conv_a")
    assert conv_a is not None
    assert {h.id for h in book.covering(conv_a)} == {on_caller.id, on_call.id}  # a released one too
    reported = CallRecord("conv_c", phone="+16125550199", reported_phone=PHONE)
    assert [h.id for h in book.covering(reported)] == [on_caller.id]  # a number a later event reported
    assert book.covering(CallRecord("conv_z")) == []


def test_hold_list_conversation_shows_the_holds_covering_that_call(client: TestClient, data_dir: Path) -> None:
    runner = CliRunner()

    def hold(*args: str) -> CliResult:
        result = runner.invoke(cli, ["hold", *args, "--json", "--data-dir", str(data_dir)], env=ENV)
        assert result.exit_code == 0, result.output
        return result

    def listed(conversation: str) -> list[str]:
        return [json.loads(line)["id"] for line in hold("--list", "--conversation", conversation).stdout.splitlines()]

    on_caller = json.loads(hold(PHONE, "--reason", "case 7").stdout)["id"]
    on_web_call = json.loads(hold("--conversation", WEB_CALL_ID, "--reason", "complaint 8").stdout)["id"]
    hold("+16125550177", "--reason", "case 9")  # another caller: covers neither call
    assert listed(CALL_ID) == [on_caller]  # the call's caller is held, from its index row
    assert listed(WEB_CALL_ID) == [on_web_call]  # no number: only a hold on the call itself
    unknown = runner.invoke(cli, ["hold", "--list", "--conversation", "conv_nowhere", "--data-dir", str(data_dir)])
    assert unknown.exit_code == 0 and unknown.stdout == ""
    assert "no call conv_nowhere in the index" in unknown.stderr and "no hold covers conv_nowhere" in unknown.stderr
    table = runner.invoke(cli, ["hold", "--list", "--conversation", CALL_ID, "--data-dir", str(data_dir)], env=ENV)
    assert table.stdout.startswith(on_caller) and "case 7" in table.stdout and len(table.stdout.splitlines()) == 1
    with_phone = runner.invoke(cli, ["hold", "--list", PHONE, "--data-dir", str(data_dir)], env=ENV)
    assert with_phone.exit_code == 2 and "--list takes no PHONE" in with_phone.output
    bad = runner.invoke(cli, ["hold", "--list", "--conversation", "../x", "--data-dir", str(data_dir)], env=ENV)
    assert bad.exit_code == 2 and "--conversation': a conversation id is 1-128" in bad.output


def test_releasing_a_released_hold_records_nothing_twice() -> None:
    _, _eraser, book = _world()
    hold = book.place(reason="case 114", actor="cli:alice", phone=PHONE)
    first = book.release(hold.id, actor="cli:bob")
    second = book.release(hold.id, actor="cli:carol")

    assert second == first and second.released_by == "cli:bob"
    assert book.audit is not None
    assert [(e.action, e.actor) for e in book.audit.entries()] == [("hold", "cli:alice"), ("release", "cli:bob")]
