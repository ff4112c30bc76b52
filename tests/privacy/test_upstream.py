"""Erasure at ElevenLabs too (``--upstream``, #13): the ``UpstreamConversations`` adapter against the
real-HTTP stand-in API (retries, 404 as gone, refusals without the key), and the Eraser's order and
reruns: tombstones first, then upstream, a failed deletion keeps its row so the same command finishes."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from services.analytics.erasure import AnalyticsErasure
from services.cli.main import cli
from services.core.adapters.elevenlabs_conversations import ElevenLabsConversations, UpstreamDeleteFailed
from services.core.adapters.memory import MemoryBlobStore, MemoryCallIndex
from services.core.domain.errors import InvalidRequest
from services.privacy.service import Eraser
from tests.support_elevenlabs import API_KEY, ElevenLabsStandIn

from .conftest import ADMIN, DAY, T0, World

ERASED, KEPT = "+16125550142", "+16125550177"
ERASED_IDS = ("conv_up_a", "conv_up_b")
KEPT_ID = "conv_up_keep"
FIXTURE_CALL = "conv_01jzfrjvcce0vsea1fcbpp9p04"  # the `client` fixture's caller +16125550142


@pytest.fixture
def api() -> Iterator[ElevenLabsStandIn]:
    with ElevenLabsStandIn() as stand_in:
        yield stand_in


def _client(api: ElevenLabsStandIn, sleeps: list[float] | None = None, attempts: int = 6) -> ElevenLabsConversations:
    waits = sleeps if sleeps is not None else []
    return ElevenLabsConversations(api.url, API_KEY, max_attempts=attempts, sleep=waits.append, timeout=10)


def _world() -> World:
    world = World("memory", MemoryBlobStore(), MemoryCallIndex(), MemoryBlobStore())
    for n, cid in enumerate(ERASED_IDS):
        world.call(cid, ERASED, T0 + n * DAY, audio=True)
    world.call(KEPT_ID, KEPT, T0 + 100)
    return world


# -- the adapter, over real HTTP ----------------------------------------------------------------


def test_delete_removes_the_conversation_and_a_second_delete_is_already_gone(api: ElevenLabsStandIn) -> None:
    cid = api.add("conv_gone_twice")
    other = api.add("conv_stays")
    with _client(api) as client:
        assert client.delete(cid) is True
        assert client.delete(cid) is False  # 404: gone already, not an error
    assert api.ids() == [other]
    assert [(r.kind, r.status) for r in api.log] == [("delete", 200), ("delete", 404)]


def test_delete_retries_429_after_its_retry_after_and_5xx(api: ElevenLabsStandIn) -> None:
    cid = api.add("conv_retried")
    api.fail_next(1, 429, retry_after="7", kind="delete")
    api.fail_next(2, 503, kind="delete")
    sleeps: list[float] = []
    with _client(api, sleeps) as client:
        assert client.delete(cid) is True
    assert [r.status for r in api.log] == [429, 503, 503, 200]
    assert sleeps[0] == 7.0 and len(sleeps) == 3
    assert api.ids() == []


def test_delete_gives_up_after_max_attempts_without_the_key_or_id_in_the_error(api: ElevenLabsStandIn) -> None:
    cid = api.add("conv_down")
    api.fail_next(3, 500, kind="delete")
    with _client(api, attempts=3) as client, pytest.raises(UpstreamDeleteFailed) as failed:
        client.delete(cid)
    assert "after 3 attempts" in failed.value.message
    assert API_KEY not in failed.value.message and cid not in failed.value.message
    assert api.requests["delete"] == 3 and api.ids() == [cid]


def test_delete_with_a_wrong_key_is_refused_at_once_naming_the_setting(api: ElevenLabsStandIn) -> None:
    cid = api.add("conv_wrong_key")
    client = ElevenLabsConversations(api.url, "xi_wrong", sleep=lambda _s: None)
    with pytest.raises(UpstreamDeleteFailed) as refused:
        client.delete(cid)
    assert "HTTP 401" in refused.value.message and "ELEVENLABS_API_KEY" in refused.value.message
    assert "xi_wrong" not in refused.value.message
    assert api.requests["delete"] == 1 and api.ids() == [cid]


def test_delete_sends_nothing_for_a_value_that_is_no_conversation_id(api: ElevenLabsStandIn) -> None:
    with _client(api) as client, pytest.raises(UpstreamDeleteFailed):
        client.delete("../agents")
    assert api.requests["delete"] == 0 and api.requests["other"] == 0


# -- the Eraser -----------------------------------------------------------------------------------


def test_erase_upstream_deletes_after_the_tombstones_and_only_the_callers_conversations(
    api: ElevenLabsStandIn,
) -> None:
    world = _world()
    for cid in (*ERASED_IDS, KEPT_ID):
        api.add(cid)
    seen_erased: list[bool] = []

    class Watching:
        def __init__(self, inner: ElevenLabsConversations) -> None:
            self.inner = inner

        def delete(self, conversation_id: str) -> bool:
            seen_erased.append(world.erased.is_erased(conversation_id))
            seen_erased.append(world.index.get(conversation_id) is not None)  # before anything here goes
            return self.inner.delete(conversation_id)

    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased)
    eraser.upstream = Watching(_client(api))
    plan = eraser.plan_caller(ERASED)

    dry = eraser.dry_run(plan, upstream=True)
    assert dry.upstream is not None and sorted(dry.upstream.would_delete) == sorted(ERASED_IDS)
    assert api.requests["delete"] == 0 and sorted(api.ids()) == sorted((*ERASED_IDS, KEPT_ID))

    done = eraser.erase(plan, upstream=True)

    assert done.upstream is not None
    assert (done.upstream.deleted, done.upstream.already_gone, done.upstream.failed) == (2, 0, {})
    assert seen_erased == [True, True, True, True]
    assert api.ids() == [KEPT_ID]
    assert {row.conversation_id for row in world.index.scan()} == {KEPT_ID}
    assert done.to_dict()["upstream"] == {
        "would_delete": [],
        "deleted": 2,
        "already_gone": 0,
        "failed": [],
        "key_refused": False,
    }


def test_a_failed_upstream_delete_keeps_the_row_and_a_rerun_finishes(api: ElevenLabsStandIn) -> None:
    world = _world()
    api.add(ERASED_IDS[0])  # ERASED_IDS[1] was deleted upstream by hand already: 404
    api.fail_next(2, 503, kind="delete")
    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased)
    eraser.upstream = _client(api, attempts=2)

    first = eraser.erase(eraser.plan_caller(ERASED), upstream=True)

    assert first.upstream is not None
    assert list(first.upstream.failed) == [ERASED_IDS[0]] and first.upstream.already_gone == 1
    assert first.to_dict()["upstream"]["failed"][0]["conversation_id"] == ERASED_IDS[0]
    assert {row.conversation_id for row in world.index.scan()} == {ERASED_IDS[0], KEPT_ID}  # the row remembers
    assert not [key for key in world.blobs.list_keys() if ERASED_IDS[0] in key]  # the rest of it is gone
    assert world.erased.is_erased(ERASED_IDS[0]) and api.ids() == [ERASED_IDS[0]]

    second = eraser.erase(eraser.plan_caller(ERASED), upstream=True)

    assert second.upstream is not None and (second.conversations, second.upstream.deleted) == (1, 1)
    assert second.upstream.failed == {} and second.index_rows == 1
    assert api.ids() == [] and {row.conversation_id for row in world.index.scan()} == {KEPT_ID}


def test_upstream_without_an_adapter_is_refused_before_anything_changes() -> None:
    world = _world()
    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased)
    before = sorted(world.blobs.list_keys())
    for run in (lambda p: eraser.dry_run(p, upstream=True), lambda p: eraser.erase(p, upstream=True)):
        with pytest.raises(InvalidRequest) as refused:
            run(eraser.plan_caller(ERASED))
        assert "ELEVENLABS_API_KEY" in refused.value.message
    assert sorted(world.blobs.list_keys()) == before
    assert not any(world.erased.is_erased(cid) for cid in ERASED_IDS)


# -- the edges: `callvault forget --upstream` and DELETE /callers/{phone}?upstream=true -------------


def _files(data_dir: Path) -> list[str]:
    return sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "archive").rglob("*") if p.is_file())


def test_forget_upstream_without_a_key_refuses_and_changes_nothing(client: TestClient, data_dir: Path) -> None:
    env = {"CALLVAULT_MEMORY_BACKEND": "none", "ELEVENLABS_API_KEY": "", "CALLVAULT_ELEVENLABS_API_KEY_PARAM": ""}
    before = _files(data_dir)
    for extra in (["--dry-run"], ["--yes"]):
        refused = CliRunner().invoke(
            cli, ["forget", ERASED, "--upstream", *extra, "--data-dir", str(data_dir)], env=env
        )
        assert refused.exit_code == 1
        assert "ELEVENLABS_API_KEY" in refused.output and "nothing was changed" in refused.output
    assert _files(data_dir) == before


def test_forget_upstream_lists_deletes_and_reports_failures_with_exit_1(
    client: TestClient, data_dir: Path, api: ElevenLabsStandIn
) -> None:
    api.add(FIXTURE_CALL)
    env = {
        "CALLVAULT_MEMORY_BACKEND": "none",
        "ELEVENLABS_API_KEY": API_KEY,
        "CALLVAULT_ELEVENLABS_BASE_URL": api.url,
        "CALLVAULT_ELEVENLABS_MAX_ATTEMPTS": "1",  # one attempt: no backoff to sit out
    }
    args = ["forget", ERASED, "--upstream", "--data-dir", str(data_dir)]
    runner = CliRunner()

    dry = runner.invoke(cli, [*args, "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "would delete 1" in dry.output and FIXTURE_CALL in dry.output
    assert api.requests["delete"] == 0

    api.fail_next(1, 502, kind="delete")
    failed = runner.invoke(cli, [*args, "--yes", "--json"], env=env)
    assert failed.exit_code == 1, failed.output
    report = json.loads(failed.stdout)
    assert report["upstream"]["failed"][0]["conversation_id"] == FIXTURE_CALL
    assert "upstream_delete_failed" in report["upstream"]["failed"][0]["error"]
    assert API_KEY not in failed.output and api.ids() == [FIXTURE_CALL]

    rerun = runner.invoke(cli, [*args, "--yes"], env=env)
    assert rerun.exit_code == 0, rerun.output
    assert "deleted 1, already gone 0" in rerun.output and api.ids() == []
    assert client.get(f"/calls/{FIXTURE_CALL}", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 404


@pytest.fixture
def keyed(api: ElevenLabsStandIn, monkeypatch: pytest.MonkeyPatch) -> ElevenLabsStandIn:
    """Before ``client``: the server is built with an ElevenLabs key pointing at the stand-in."""
    monkeypatch.setenv("ELEVENLABS_API_KEY", API_KEY)
    monkeypatch.setenv("CALLVAULT_ELEVENLABS_BASE_URL", api.url)
    return api


@pytest.fixture
def unkeyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    monkeypatch.delenv("CALLVAULT_ELEVENLABS_API_KEY", raising=False)
    monkeypatch.delenv("CALLVAULT_ELEVENLABS_API_KEY_PARAM", raising=False)


def test_delete_caller_route_with_upstream(keyed: ElevenLabsStandIn, client: TestClient) -> None:
    api = keyed
    api.add(FIXTURE_CALL)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    dry = client.delete(f"/callers/{ERASED}?dry_run=true&upstream=true", headers=headers).json()
    assert dry["upstream"]["would_delete"] == [FIXTURE_CALL] and api.ids() == [FIXTURE_CALL]

    done = client.delete(f"/callers/{ERASED}?upstream=true", headers=headers)

    assert done.status_code == 200, done.text
    assert done.json()["upstream"] == {
        "would_delete": [],
        "deleted": 1,
        "already_gone": 0,
        "failed": [],
        "key_refused": False,
    }
    assert api.ids() == []
    assert client.get(f"/calls/{FIXTURE_CALL}", headers=headers).status_code == 404


def test_delete_caller_route_upstream_without_a_key_is_422(unkeyed: None, client: TestClient) -> None:
    refused = client.delete(f"/callers/{ERASED}?upstream=true", headers={"Authorization": f"Bearer {ADMIN}"})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_request"
    assert "ELEVENLABS_API_KEY" in refused.json()["error"]["message"]
    assert client.get(f"/calls/{FIXTURE_CALL}", headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_a_refused_key_stops_asking_elevenlabs_keeps_the_rows_and_says_to_fix_the_key(api: ElevenLabsStandIn) -> None:
    """A 401 is the key's, not the conversation's: every other DELETE would be refused the same way. The
    Eraser stops asking after the first, lists every call as failed (their rows are kept), and a rerun
    with a working key finishes."""
    world = _world()
    for cid in ERASED_IDS:
        api.add(cid)
    eraser = Eraser(world.blobs, world.index, [AnalyticsErasure(world.analytics)], erased=world.erased)
    eraser.upstream = ElevenLabsConversations(api.url, "xi_wrong", sleep=lambda _s: None)

    first = eraser.erase(eraser.plan_caller(ERASED), upstream=True)

    assert first.upstream is not None and sorted(first.upstream.failed) == sorted(ERASED_IDS)
    assert api.requests["delete"] == 1  # not once per conversation
    assert all("ELEVENLABS_API_KEY" in why for why in first.upstream.failed.values())
    assert first.upstream.key_refused
    assert {row.conversation_id for row in world.index.scan()} == {*ERASED_IDS, KEPT_ID}

    eraser.upstream = _client(api)
    second = eraser.erase(eraser.plan_caller(ERASED), upstream=True)
    assert second.upstream is not None and (second.upstream.deleted, second.upstream.failed) == (2, {})
    assert api.ids() == [] and {row.conversation_id for row in world.index.scan()} == {KEPT_ID}


def test_forget_upstream_with_a_refused_key_names_the_setting_in_its_last_line(
    client: TestClient, data_dir: Path, api: ElevenLabsStandIn
) -> None:
    api.add(FIXTURE_CALL)
    env = {
        "CALLVAULT_MEMORY_BACKEND": "none",
        "ELEVENLABS_API_KEY": "xi_wrong",
        "CALLVAULT_ELEVENLABS_BASE_URL": api.url,
    }
    refused = CliRunner().invoke(cli, ["forget", ERASED, "--upstream", "--yes", "--data-dir", str(data_dir)], env=env)

    assert refused.exit_code == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert "ELEVENLABS_API_KEY" in last and "run the same command again" in last, refused.stderr
    assert "xi_wrong" not in refused.output and api.ids() == [FIXTURE_CALL]
