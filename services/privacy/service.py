"""Erase a caller (or one conversation) from every store, each told through its port.

First the tombstones (``core.erased``): from then on any webhook retry, import or sync of these
conversations stores nothing. The rest of the order makes an erasure resumable: what a feature
derived from the calls first (analytics rows, memories and their jobs, caches: ``CallerData``),
then each call's archive objects with their whole version history, then its index row last. The
row is how an erasure finds a call, so a crash at any step leaves the row in place and a rerun
finds and finishes the call; every step is idempotent. Objects under the caller's folder that no
row names (a crash between object and row at ingest) are found by listing that folder, which holds
only the caller's calls.
"""

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.core.domain import keys
from services.core.domain.errors import CallVaultError, InvalidRequest
from services.core.domain.models import MAX_PAGE_SIZE, CallQuery, CallRecord
from services.core.domain.phone import mask
from services.core.erased import ErasedConversations
from services.core.ports import BlobStore, CallerData, CallIndex, UpstreamConversations

from .audit import Auditor
from .holds import HoldBook

Progress = Callable[[int, int], None]  # (done, total)
_SUFFIXES = (".json", ".mp3")
KEY_REFUSED = "upstream_key_refused"  # the adapter's code for a 401/403: the key, not the conversation
NO_UPSTREAM = (
    "deleting at ElevenLabs (--upstream, upstream=true) needs an API key: set ELEVENLABS_API_KEY (on AWS, "
    "CALLVAULT_ELEVENLABS_API_KEY_PARAM naming an SSM SecureString) to a key with write access to "
    "Conversational AI; nothing was changed"
)


@dataclass
class ErasurePlan:
    """What an erasure will remove: the calls found, by row or by object."""

    phone: str | None  # E.164: the whole caller; None: the named conversations only
    calls: list[CallRecord]

    def object_keys(self, call: CallRecord) -> list[str]:
        found = {keys.pending_audio_key(call.conversation_id)}
        if call.archive_prefix:
            found |= {
                keys.transcript_key(call.archive_prefix, call.conversation_id),
                keys.audio_key(call.archive_prefix, call.conversation_id),
            }
        found |= {key for key in (call.transcript_key, call.audio_key) if key}
        return sorted(found)


@dataclass
class ErasureSummary:
    phone: str | None  # masked to the last four digits
    dry_run: bool
    conversations: int = 0
    archive_objects: int = 0  # objects (dry run) or object versions and delete markers removed
    index_rows: int = 0
    derived: dict[str, int] = field(default_factory=dict)
    upstream: "UpstreamSummary | None" = None  # with --upstream only
    # A reader held the index's log while it was scrubbed (SQLite WAL): copies of the erased rows stay
    # in that file until the next erasure or the server's stop. Said, never hidden.
    index_log_pending: bool = False

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "phone": self.phone,
            "dry_run": self.dry_run,
            "conversations": self.conversations,
            "archive_objects": self.archive_objects,
            "index_rows": self.index_rows,
            **self.derived,
        }
        if self.upstream is not None:
            found["upstream"] = self.upstream.to_dict()
        if self.index_log_pending:
            found["index_log_pending"] = True
        return found


@dataclass
class UpstreamSummary:
    """The conversations deleted at ElevenLabs. Ids are listed only for a dry run (what would be asked)
    and for failures (what a rerun will ask again): the erased ones are not kept in a summary."""

    would_delete: list[str] = field(default_factory=list)
    deleted: int = 0
    already_gone: int = 0  # 404: deleted upstream before (an earlier run, or by hand)
    failed: dict[str, str] = field(default_factory=dict)  # conversation id -> why
    key_refused: bool = False  # ElevenLabs refused the key: the rest were not asked (fix the key, rerun)

    def to_dict(self) -> dict[str, Any]:
        return {
            "would_delete": self.would_delete,
            "deleted": self.deleted,
            "already_gone": self.already_gone,
            "failed": [{"conversation_id": cid, "error": why} for cid, why in self.failed.items()],
            "key_refused": self.key_refused,
        }


@dataclass
class Eraser:
    blobs: BlobStore
    index: CallIndex
    derived: Sequence[CallerData] = ()
    erased: ErasedConversations | None = None  # the tombstones; None only in tests of the stores alone
    clock: Callable[[], float] = time.time
    audit: Auditor | None = None
    holds: HoldBook | None = None  # held data is refused (``Held``), never erased
    upstream: UpstreamConversations | None = None  # ElevenLabs, for ``upstream=True``; None: no API key

    def plan_caller(self, phone: str) -> ErasurePlan:
        """Every call of the caller: the rows of that number, the rows filed under another number that a
        later event reported as this one (``reported_phone``), and objects in its folder no row names."""
        calls: dict[str, CallRecord] = {}
        query = CallQuery(phone=phone, limit=MAX_PAGE_SIZE)
        while True:
            page = self.index.list_calls(query)
            calls.update((call.conversation_id, call) for call in page.items)
            if page.next is None:
                break
            query = CallQuery(phone=phone, limit=MAX_PAGE_SIZE, after=page.next)
        calls.update((call.conversation_id, call) for call in self.index.list_reported(phone))
        prefix = keys.phone_prefix(phone)
        if prefix != keys.UNKNOWN_PHONE_PREFIX:  # "unknown" holds every caller without a number
            for key in self.blobs.list_keys(f"{prefix}/"):
                name = key.removeprefix(f"{prefix}/")
                stem = next((name.removesuffix(s) for s in _SUFFIXES if name.endswith(s)), None)
                if stem and keys.CONVERSATION_ID.fullmatch(stem) and stem not in calls:
                    calls[stem] = self.index.get(stem) or CallRecord(stem, phone=phone, archive_prefix=prefix)
        return ErasurePlan(phone, sorted(calls.values(), key=lambda c: c.conversation_id))

    def plan_conversations(
        self, conversation_ids: Sequence[str], found: Mapping[str, Sequence[str]] | None = None
    ) -> ErasurePlan:
        """``found``: archive keys seen for these ids (``find_reappeared_objects``). A call without a row
        (a restored archive backup without the index's) is then erased in the folder its objects are
        in, as its caller's (a hold on that caller covers it); without it only its parked audio's key
        is known."""
        calls = []
        for conversation_id in conversation_ids:
            checked = keys.check_conversation_id(conversation_id)
            calls.append(self.index.get(checked) or _from_keys(checked, (found or {}).get(checked, ())))
        return ErasurePlan(None, calls)

    def dry_run(self, plan: ErasurePlan, *, upstream: bool = False) -> ErasureSummary:
        self._check_upstream(upstream)
        if self.holds is not None:
            self.holds.refuse_held(plan.calls, plan.phone)
        summary = ErasureSummary(mask(plan.phone), True, conversations=len(plan.calls))
        if upstream:
            summary.upstream = UpstreamSummary(would_delete=[call.conversation_id for call in plan.calls])
        for call in plan.calls:
            summary.archive_objects += sum(1 for key in plan.object_keys(call) if self.blobs.head(key) is not None)
            summary.index_rows += int(self.index.get(call.conversation_id) is not None)
        summary.derived = {target.name: _derived(target.find, plan) for target in self.derived}
        return summary

    def erase(
        self, plan: ErasurePlan, progress: Progress | None = None, *, actor: str = "unknown", upstream: bool = False
    ) -> ErasureSummary:
        """``actor``: who asked (an API key's id, ``cli:<user>``), for the audit trail. ``upstream``: also
        delete the conversations at ElevenLabs, after the tombstones (a sync cannot fetch them back in
        between) and before anything here; a call whose upstream deletion failed keeps its index row,
        which is how the same command run again finds it and asks again (``summary.upstream.failed``)."""
        self._check_upstream(upstream)
        if self.holds is not None:
            self.holds.refuse_held(plan.calls, plan.phone)
        summary = ErasureSummary(mask(plan.phone), False, conversations=len(plan.calls))
        ids = [call.conversation_id for call in plan.calls]
        if self.erased is not None:
            self.erased.mark(ids, int(self.clock()))
        if self.audit is not None:  # recorded before the work: an erasure asked for is never unrecorded
            scope = "caller" if plan.phone else "conversations"
            detail: dict[str, Any] = {"scope": scope, "phone": summary.phone, "conversations": len(ids)}
            if upstream:
                detail["upstream"] = True
            self.audit.record("erase", actor, ids, detail)
        if upstream:
            summary.upstream = self._delete_upstream(ids)
        failed = summary.upstream.failed if summary.upstream is not None else {}
        summary.derived = {target.name: _derived(target.erase, plan) for target in self.derived}
        for done, call in enumerate(plan.calls, start=1):
            for key in plan.object_keys(call):
                summary.archive_objects += self.blobs.purge(key)
            if call.conversation_id not in failed and self.index.get(call.conversation_id) is not None:
                self.index.delete(call.conversation_id)
                summary.index_rows += 1
            if progress is not None:
                progress(done, len(plan.calls))
        if summary.index_rows:
            summary.index_log_pending = not self.index.scrub_deleted()
        return summary

    def _check_upstream(self, upstream: bool) -> None:
        if upstream and self.upstream is None:  # before the holds and tombstones: nothing changes
            raise InvalidRequest(NO_UPSTREAM)

    def _delete_upstream(self, conversation_ids: Sequence[str]) -> UpstreamSummary:
        assert self.upstream is not None
        result, refusal = UpstreamSummary(), ""
        for conversation_id in conversation_ids:
            if result.key_refused:  # the same key would be refused again: not asked, kept for the rerun
                result.failed[conversation_id] = refusal
                continue
            try:
                if self.upstream.delete(conversation_id):
                    result.deleted += 1
                else:
                    result.already_gone += 1
            except CallVaultError as exc:  # reported; the next run asks again
                result.failed[conversation_id] = refusal = f"{exc.code}: {exc.message}"
                result.key_refused = exc.code == KEY_REFUSED
        return result


def _derived(step: Callable[[str | None, Sequence[CallRecord]], int], plan: ErasurePlan) -> int:
    """A feature's ``find`` or ``erase`` over the plan. A call filed under another number (found by its
    ``reported_phone``) keeps what was derived from it under that number, so it is told as one call
    (``phone`` None), which touches nothing else of the other number's caller."""
    is_foreign = [plan.phone is not None and c.phone is not None and c.phone != plan.phone for c in plan.calls]
    foreign = [c for c, other in zip(plan.calls, is_foreign, strict=True) if other]
    own = [c for c, other in zip(plan.calls, is_foreign, strict=True) if not other]
    return step(plan.phone, own) + (step(None, foreign) if foreign else 0)


def find_reappeared(erased: ErasedConversations, blobs: BlobStore, index: CallIndex) -> list[str]:
    """Conversation ids erased once that the archive or index holds again (a restored backup, or a
    delivery that raced its erasure). Reads every row and key: it runs with ``callvault verify``."""
    return sorted(find_reappeared_objects(erased, blobs, index))


def find_reappeared_objects(
    erased: ErasedConversations, blobs: BlobStore, index: CallIndex, also: Iterable[str] = ()
) -> dict[str, list[str]]:
    """``find_reappeared``, each id with the archive keys found for it (none: its row alone is back), for
    ``Eraser.plan_conversations``. ``also``: erased calls' hashes from elsewhere (``Auditor.erased_subjects``),
    for tombstones a restore took away (on AWS they are items of the calls table)."""
    tombstones = set(erased.store.digests()) | set(also)
    if not tombstones:
        return {}
    seen: dict[str, list[str]] = {row.conversation_id: [] for row in index.scan()}
    for key in blobs.list_keys():
        stem = key.rsplit("/", 1)[-1]
        stem = next((stem.removesuffix(s) for s in _SUFFIXES if stem.endswith(s)), "")
        if keys.CONVERSATION_ID.fullmatch(stem):
            seen.setdefault(stem, []).append(key)
    return {cid: found for cid, found in seen.items() if erased.digest(cid) in tombstones}


def _from_keys(conversation_id: str, found: Sequence[str]) -> CallRecord:
    """A call known by its objects only: the folder they are in is its caller's (its name the number)."""
    for key in found:
        prefix = key.rsplit("/", 1)[0] if "/" in key else ""
        if prefix and prefix != keys.PENDING_AUDIO_PREFIX:
            phone = None if prefix == keys.UNKNOWN_PHONE_PREFIX else f"+{prefix}"
            return CallRecord(conversation_id, phone=phone, archive_prefix=prefix)
    return CallRecord(conversation_id)
