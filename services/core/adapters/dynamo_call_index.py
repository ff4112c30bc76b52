"""The call index in DynamoDB (PynamoDB): the twin of ``SqliteCallIndex``, same semantics.

Table ``conversation_id`` (hash). Five GSIs, all projecting ALL, range key ``started_at`` (N):
``by_phone`` (hash ``phone``), ``by_agent`` (hash ``agent_id``), ``by_time`` (hash ``gsi_all``),
``by_status`` (hash ``status``) and ``by_outcome`` (hash ``call_successful``). A sixth, sparse GSI
``by_reported_phone`` (hash ``reported_phone`` only, ALL) holds just the calls filed under another
number than a later event reported: erasure by phone finds them there (#13).
``gsi_all`` is a constant written only with ``started_at``, so the timeline is sparse: audio that
arrived before its transcript is not listed. One constant partition is fine: a partition takes
1,000 writes/s and each call makes two or three writes, so it holds ~30,000,000 calls a day; past
that, shard ``gsi_all`` by month.

Merges are single conditional UpdateItems (never read-modify-write), so concurrent deliveries of
the events of one call cannot lose each other's fields. ``get`` reads consistently; listings come
from GSIs, which DynamoDB updates a fraction of a second after the write.

Cursors are ``{"started_at": int, "conversation_id": str}``, the same as the other adapters'; the
index hash value is the query's own, so it is not repeated (nor a phone number put in a URL).
"""

from collections.abc import Iterator
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.constants import PAY_PER_REQUEST_BILLING_MODE
from pynamodb.exceptions import DoesNotExist, PynamoDBException
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from ..domain.errors import InvalidCursor, InvalidRequest, StorageUnavailable
from ..domain.models import (
    MEMORY_EXPIRED,
    MERGED_CALL_FIELDS,
    REPLACED_CALL_FIELDS,
    AudioFacts,
    CallPage,
    CallQuery,
    CallRecord,
)
from ..domain.versions import AUDIO_EXPIRED

TIMELINE_PARTITION = "call"
_INT_FIELDS = frozenset(
    {
        "started_at",
        "duration_s",
        "message_count",
        "transcript_bytes",
        "audio_bytes",
        "cost",
        "event_at",
        "memory_updated_at",
        "analytics_expired_at",
        "ingested_at",
        "updated_at",
    }
)
_MAX_CURSOR_ID_BYTES = 1024  # DynamoDB refuses key strings over 2,048 bytes with a ValidationException
_MAX_NUMBER = 10**38  # DynamoDB numbers have 38 digits of precision


class ByPhone(GlobalSecondaryIndex["CallModel"]):  # type: ignore[no-untyped-call]  # untyped in PynamoDB
    class Meta:
        index_name = "by_phone"
        projection = AllProjection()

    phone = UnicodeAttribute(hash_key=True)
    started_at = NumberAttribute(range_key=True)


class ByAgent(GlobalSecondaryIndex["CallModel"]):  # type: ignore[no-untyped-call]  # untyped in PynamoDB
    class Meta:
        index_name = "by_agent"
        projection = AllProjection()

    agent_id = UnicodeAttribute(hash_key=True)
    started_at = NumberAttribute(range_key=True)


class ByTime(GlobalSecondaryIndex["CallModel"]):  # type: ignore[no-untyped-call]  # untyped in PynamoDB
    class Meta:
        index_name = "by_time"
        projection = AllProjection()

    gsi_all = UnicodeAttribute(hash_key=True)
    started_at = NumberAttribute(range_key=True)


class ByStatus(GlobalSecondaryIndex["CallModel"]):  # type: ignore[no-untyped-call]  # untyped in PynamoDB
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    started_at = NumberAttribute(range_key=True)


class ByOutcome(GlobalSecondaryIndex["CallModel"]):  # type: ignore[no-untyped-call]  # untyped in PynamoDB
    class Meta:
        index_name = "by_outcome"
        projection = AllProjection()

    call_successful = UnicodeAttribute(hash_key=True)
    started_at = NumberAttribute(range_key=True)


class ByReportedPhone(GlobalSecondaryIndex["CallModel"]):  # type: ignore[no-untyped-call]  # untyped in PynamoDB
    """Sparse: only rows with ``reported_phone``. No range key, so a row without ``started_at`` is in it too."""

    class Meta:
        index_name = "by_reported_phone"
        projection = AllProjection()

    reported_phone = UnicodeAttribute(hash_key=True)


# Items that are not calls (the sync watermark, services/sync) have keys no conversation id can have.
STATE_KEY_PREFIX = "~"


class CallModel(Model):
    """One item per call. Use ``make_call_model`` to bind it to a table; this base is never queried."""

    class Meta:
        table_name = "callvault-calls"
        billing_mode = PAY_PER_REQUEST_BILLING_MODE

    conversation_id = UnicodeAttribute(hash_key=True)
    phone = UnicodeAttribute(null=True)
    archive_prefix = UnicodeAttribute(null=True)
    agent_id = UnicodeAttribute(null=True)
    agent_name = UnicodeAttribute(null=True)
    direction = UnicodeAttribute(null=True)
    started_at = NumberAttribute(null=True)
    duration_s = NumberAttribute(null=True)
    message_count = NumberAttribute(null=True)
    transcript_key = UnicodeAttribute(null=True)
    transcript_bytes = NumberAttribute(null=True)
    has_audio = BooleanAttribute(null=True)
    audio_key = UnicodeAttribute(null=True)
    audio_bytes = NumberAttribute(null=True)
    status = UnicodeAttribute(null=True)
    call_successful = UnicodeAttribute(null=True)
    termination_reason = UnicodeAttribute(null=True)
    failure_reason = UnicodeAttribute(null=True)
    cost = NumberAttribute(null=True)
    cost_usd = NumberAttribute(null=True)
    language = UnicodeAttribute(null=True)
    summary_title = UnicodeAttribute(null=True)
    summary = UnicodeAttribute(null=True)
    event_at = NumberAttribute(null=True)
    version = UnicodeAttribute(null=True)
    audio_version = UnicodeAttribute(null=True)
    reported_phone = UnicodeAttribute(null=True)
    expects_audio = BooleanAttribute(null=True)
    memory_status = UnicodeAttribute(null=True)
    memory_updated_at = NumberAttribute(null=True)
    analytics_expired_at = NumberAttribute(null=True)
    ingested_at = NumberAttribute(null=True)
    updated_at = NumberAttribute(null=True)
    gsi_all = UnicodeAttribute(null=True)  # TIMELINE_PARTITION once started_at is known

    by_phone = ByPhone()
    by_agent = ByAgent()
    by_time = ByTime()
    by_status = ByStatus()
    by_outcome = ByOutcome()
    by_reported_phone = ByReportedPhone()


def make_call_model(table_name: str, region: str | None = None, host: str | None = None) -> type[CallModel]:
    """A CallModel bound to ``table_name``. A fresh class each time: PynamoDB caches one connection
    per class, so sharing a class would pin every index to the first table, region and endpoint."""
    meta = type(
        "Meta",
        (),
        {
            "table_name": table_name,
            "region": region,
            "host": host,
            "billing_mode": PAY_PER_REQUEST_BILLING_MODE,
        },
    )
    return type("CallModel", (CallModel,), {"Meta": meta, "__module__": __name__})


class DynamoCallIndex:
    def __init__(self, table_name: str, *, region: str | None = None, host: str | None = None) -> None:
        self.model = make_call_model(table_name, region, host)

    def create_table(self) -> None:
        """Create the table and its GSIs on demand (pay per request) if missing; for tests and local setups."""
        try:
            self.model.create_table(wait=True, billing_mode=PAY_PER_REQUEST_BILLING_MODE)
        except (PynamoDBException, BotoCoreError, ClientError) as exc:
            _unavailable("CreateTable", exc)

    def get(self, conversation_id: str) -> CallRecord | None:
        try:
            item = self.model.get(conversation_id, consistent_read=True)
        except DoesNotExist:
            return None
        except (PynamoDBException, BotoCoreError, ClientError) as exc:
            _unavailable("GetItem", exc)
        return _record(item)

    def save_call(
        self, record: CallRecord, now: int, *, expect_version: bool = False, expected_version: str | None = None
    ) -> bool:
        m = self.model
        actions: list[Action] = [
            getattr(m, name).set(value) for name in MERGED_CALL_FIELDS if (value := getattr(record, name)) is not None
        ]
        for name in REPLACED_CALL_FIELDS:  # the row describes one version: a None clears an older value
            value = getattr(record, name)
            actions.append(getattr(m, name).remove() if value is None else getattr(m, name).set(value))
        actions += [m.ingested_at.set(m.ingested_at | now), m.updated_at.set(now)]
        if record.started_at is not None:
            actions.append(m.gsi_all.set(TIMELINE_PARTITION))
        # As in SQLite: a versioned row takes only a version that sorts at or after its own; a row
        # written before versions falls back to event_at (an event without a timestamp always merges).
        unversioned = m.version.does_not_exist()
        if record.event_at is not None:
            unversioned &= m.event_at.does_not_exist() | (m.event_at <= record.event_at)
        condition = unversioned
        if record.version is not None:
            condition = unversioned | (m.version <= record.version)
        if record.memory_status is not None:  # expired is final (#13): the caller saves again without one
            condition &= m.memory_status.does_not_exist() | (m.memory_status != MEMORY_EXPIRED)
        if expect_version:  # a compare-and-swap on the row the caller read
            condition &= m.version.does_not_exist() if expected_version is None else m.version == expected_version
        return self._update(record.conversation_id, actions, condition)

    def save_audio(
        self, conversation_id: str, agent_id: str | None, audio: AudioFacts, now: int, *, only_if_unplaced: bool
    ) -> bool:
        m = self.model
        actions: list[Action] = [
            m.has_audio.set(True),
            m.audio_key.set(audio.key),
            m.audio_bytes.set(audio.size),
            m.ingested_at.set(m.ingested_at | now),
            m.updated_at.set(now),
        ]
        if agent_id is not None:
            actions.append(m.agent_id.set(m.agent_id | agent_id))
        condition = m.audio_version.does_not_exist()
        if audio.version is not None:
            actions.append(m.audio_version.set(audio.version))
            condition |= m.audio_version <= audio.version
        if only_if_unplaced:
            condition &= m.archive_prefix.does_not_exist()
        return self._update(conversation_id, actions, condition)

    def claim_place(self, conversation_id: str, archive_prefix: str, phone: str | None, now: int) -> CallRecord:
        m = self.model
        actions: list[Action] = [
            m.archive_prefix.set(archive_prefix),
            m.ingested_at.set(m.ingested_at | now),
            m.updated_at.set(now),
        ]
        actions.append(m.phone.set(phone) if phone is not None else m.phone.remove())
        item = self.model(conversation_id)
        try:
            item.update(actions=actions, condition=m.archive_prefix.does_not_exist())  # ALL_NEW: item is the row
            return _record(item)
        except PynamoDBException as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                _unavailable("UpdateItem", exc)
        except (BotoCoreError, ClientError) as exc:
            _unavailable("UpdateItem", exc)
        # Placed by an earlier event; the prefix never changes once set, so this read is final.
        row = self.get(conversation_id)
        if row is None:  # pragma: no cover - the update above created it
            raise StorageUnavailable("the call index lost a row it just wrote")
        return row

    def scan(self) -> Iterator[CallRecord]:
        try:
            for item in self.model.scan(consistent_read=True):
                if not item.conversation_id.startswith(STATE_KEY_PREFIX):  # sync state items share the table
                    yield _record(item)
        except (PynamoDBException, BotoCoreError, ClientError) as exc:
            _unavailable("Scan", exc)

    def awaiting_audio(self, updated_before: int, limit: int = 100) -> list[CallRecord]:
        """A filtered scan: on AWS the due fetches are SQS messages; this serves verify and sync."""
        m = self.model
        condition = (m.expects_audio == True) & m.audio_key.does_not_exist() & (m.updated_at < updated_before)  # noqa: E712
        due: list[CallRecord] = []
        try:
            for item in m.scan(filter_condition=condition, consistent_read=True):
                due.append(_record(item))
        except (PynamoDBException, BotoCoreError, ClientError) as exc:
            _unavailable("Scan", exc)
        return sorted(due, key=lambda r: (r.updated_at or 0, r.conversation_id))[:limit]

    def delete(self, conversation_id: str) -> None:
        try:
            self.model(conversation_id).delete()
        except (PynamoDBException, BotoCoreError, ClientError) as exc:
            _unavailable("DeleteItem", exc)

    def scrub_deleted(self) -> bool:
        return True  # DynamoDB keeps no copy of a deleted item we could reach

    def drop_audio(self, conversation_id: str, now: int) -> bool:
        m = self.model
        actions: list[Action] = [
            m.has_audio.set(False),
            m.audio_key.remove(),
            m.audio_bytes.remove(),
            m.audio_version.set(AUDIO_EXPIRED),
            m.expects_audio.set(False),
            m.updated_at.set(now),
        ]
        return self._update(conversation_id, actions, m.conversation_id.exists())

    def _update(self, conversation_id: str, actions: list[Action], condition: Condition | None) -> bool:
        try:
            self.model(conversation_id).update(actions=actions, condition=condition)
        except PynamoDBException as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            _unavailable("UpdateItem", exc)
        except (BotoCoreError, ClientError) as exc:
            _unavailable("UpdateItem", exc)
        return True

    def set_memory_status(self, conversation_id: str, status: str, now: int) -> None:
        m = self.model
        actions: list[Action] = [m.memory_status.set(status), m.memory_updated_at.set(now)]
        # False: row gone, nothing to mark; or its memories expired (#13), which a late job must not undo.
        not_final = m.memory_status.does_not_exist() | (m.memory_status != MEMORY_EXPIRED)
        self._update(conversation_id, actions, m.conversation_id.exists() & not_final)

    def expire_analytics(self, conversation_id: str, now: int) -> bool:
        m = self.model
        actions: list[Action] = [
            m.analytics_expired_at.set(m.analytics_expired_at | now),  # the first expiry's time is kept
            m.updated_at.set(now),
        ]
        return self._update(conversation_id, actions, m.conversation_id.exists())

    def list_reported(self, phone: str) -> list[CallRecord]:
        try:
            return [_record(item) for item in self.model.by_reported_phone.query(phone)]
        except (PynamoDBException, BotoCoreError, ClientError) as exc:
            _unavailable("Query", exc)

    def list_calls(self, query: CallQuery) -> CallPage:
        if query.limit < 1:
            raise InvalidRequest("limit must be at least 1")
        m = self.model
        # The most selective GSI carries the query; the other equalities become a filter on it.
        filters: list[Condition] = []
        # Outcome-only listings get their own sparse GSIs: a rare status filtered out of the timeline
        # would read the whole table for one page. A phone's or agent's calls are few enough to filter.
        index: ByPhone | ByAgent | ByTime | ByStatus | ByOutcome
        if query.phone is not None:
            index, hash_name, hash_value = m.by_phone, "phone", query.phone
            if query.agent_id is not None:
                filters.append(m.agent_id == query.agent_id)
        elif query.agent_id is not None:
            index, hash_name, hash_value = m.by_agent, "agent_id", query.agent_id
        elif query.status is not None:
            index, hash_name, hash_value = m.by_status, "status", query.status
        elif query.call_successful is not None:
            index, hash_name, hash_value = m.by_outcome, "call_successful", query.call_successful
        else:
            index, hash_name, hash_value = m.by_time, "gsi_all", TIMELINE_PARTITION
        if query.status is not None and hash_name != "status":
            filters.append(m.status == query.status)
        if query.call_successful is not None and hash_name != "call_successful":
            filters.append(m.call_successful == query.call_successful)
        filter_condition: Condition | None = None
        for condition in filters:
            filter_condition = condition if filter_condition is None else filter_condition & condition

        lower, upper = query.since, query.until  # inclusive, exclusive
        start_key: dict[str, dict[str, str]] | None = None
        if query.after is not None:
            started_at, conversation_id = _position(query.after)
            if lower is not None and started_at < lower:
                return CallPage()  # the walk already passed the window's oldest row
            if upper is None or started_at < upper:
                if conversation_id == "":
                    upper = started_at  # nothing sorts below "": resume strictly below that second
                else:
                    start_key = {
                        "conversation_id": {"S": conversation_id},
                        "started_at": {"N": str(started_at)},
                        hash_name: {"S": hash_value},
                    }
            # else the position is above the window: every row in the window comes after it.
        if lower is not None and upper is not None and upper <= lower:
            return CallPage()

        range_condition: Condition | None = None
        if lower is not None and upper is not None:
            range_condition = m.started_at.between(lower, upper - 1)
        elif lower is not None:
            range_condition = m.started_at >= lower
        elif upper is not None:
            range_condition = m.started_at < upper

        # One row more than asked tells whether a next page exists. A filter is applied after
        # DynamoDB's Limit, so filtered pages come back short; the iterator keeps querying
        # until it has limit + 1 rows or the partition is exhausted.
        want = query.limit + 1
        try:
            items = list(
                index.query(
                    hash_value,
                    range_key_condition=range_condition,
                    filter_condition=filter_condition,
                    scan_index_forward=False,
                    limit=want,
                    last_evaluated_key=start_key,
                    page_size=want if filter_condition is None else max(want, 100),
                )
            )
        except (PynamoDBException, BotoCoreError, ClientError) as exc:
            _unavailable("Query", exc)
        records = [_record(item) for item in items[: query.limit]]
        next_position = None
        if len(items) > query.limit:
            last = records[-1]
            next_position = {"started_at": last.started_at, "conversation_id": last.conversation_id}
        return CallPage(records, next_position)


def _position(after: dict[str, Any]) -> tuple[int, str]:
    started_at, conversation_id = after.get("started_at"), after.get("conversation_id")
    if (
        not isinstance(started_at, int)
        or isinstance(started_at, bool)
        or abs(started_at) >= _MAX_NUMBER
        or not isinstance(conversation_id, str)
        or len(conversation_id.encode()) > _MAX_CURSOR_ID_BYTES
    ):
        raise InvalidCursor("cursor does not belong to this index")
    return started_at, conversation_id


def _record(item: CallModel) -> CallRecord:
    values: dict[str, Any] = dict(item.attribute_values)
    values.pop("gsi_all", None)
    for name in _INT_FIELDS:
        if values.get(name) is not None:
            values[name] = int(values[name])
    if values.get("cost_usd") is not None:
        values["cost_usd"] = float(values["cost_usd"])
    return CallRecord.from_dict(values)


def _unavailable(operation: str, exc: Exception) -> NoReturn:
    """Raise StorageUnavailable naming only the operation and DynamoDB's error code: botocore and
    PynamoDB messages can quote request values, and those include phone numbers."""
    if isinstance(exc, PynamoDBException):
        reason = exc.cause_response_code or type(exc.cause or exc).__name__
    elif isinstance(exc, ClientError):
        reason = str(exc.response.get("Error", {}).get("Code", "error"))
    else:
        reason = type(exc).__name__
    raise StorageUnavailable(f"the call index is unavailable ({operation}: {reason})") from None
