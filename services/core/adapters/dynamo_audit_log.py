"""The audit trail and the legal holds on AWS: one DynamoDB table (``callvault-audit``), hash key
``chain`` (S), range key ``seq`` (N). The twin of ``SqliteAuditLog`` / ``SqliteHolds``.

Partitions (values of ``chain``):
- ``audit``: the entries, ``seq`` 1, 2, 3, ... An append reads the head (a consistent Query, newest
  first, one item) and writes the next entry conditional on ``attribute_not_exists(seq)``: of two
  writers that read the same head, one wins and the other reads the new head and tries again, so the
  chain never forks and the order is the database's.
- ``subject/<hash>``: one pointer item per conversation an entry names (``seq`` = the entry's), so
  ``--conversation`` is one Query of that partition and a batch read of its entries, never a read of
  the whole chain. They are written before the entry (BatchWriteItem), so a crash never leaves an
  entry its pointers miss; a pointer whose append lost the race (or crashed) points at an entry that
  does not name the subject, and ``entries`` drops it. No transaction: an entry may name hundreds of
  conversations (DynamoDB takes 100 items per transaction), and IAM needs only PutItem/BatchWriteItem.
- ``holds``: one item per hold, ``seq`` a counter taken the same conditional way; released by an
  UpdateItem that sets ``released_at`` once. Holds are few: ``all`` is one Query.

No item is ever deleted or rewritten by CallVault except a hold's release; the chain shows any change
to an entry, whoever made it.
"""

import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from ..domain.audit import AuditEntry, Detail, chained
from ..domain.errors import StorageUnavailable
from ..domain.holds import Hold

AUDIT = "audit"
HOLDS = "holds"
SUBJECT = "subject/"
_ATTEMPTS = 50  # lost races in a row before an append gives up (each loser retries after a winner)
_UNPROCESSED_ROUNDS = 8  # batch calls that leave items unprocessed (throttling) before giving up
_HOLD_FIELDS = ("id", "kind", "subject", "label", "reason", "placed_by", "released_by")


class _LostRace(Exception):
    pass


class DynamoAuditTable:
    """What both adapters share: the client, the table, the conditional put of a partition's next seq."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        import boto3

        self.table_name = table_name
        self.client: Any = client or boto3.client("dynamodb")

    def create_table(self) -> None:
        """For tests and local experiments; the stack creates the real one (infra/template.yaml)."""
        self.client.create_table(
            TableName=self.table_name,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "chain", "AttributeType": "S"},
                {"AttributeName": "seq", "AttributeType": "N"},
            ],
            KeySchema=[
                {"AttributeName": "chain", "KeyType": "HASH"},
                {"AttributeName": "seq", "KeyType": "RANGE"},
            ],
        )

    def head(self, chain: str) -> dict[str, Any] | None:
        found = self.client.query(
            TableName=self.table_name,
            KeyConditionExpression="chain = :c",
            ExpressionAttributeValues={":c": {"S": chain}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items: list[dict[str, Any]] = found.get("Items", [])
        return items[0] if items else None

    def partition(self, chain: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table_name,
            KeyConditionExpression="chain = :c",
            ExpressionAttributeValues={":c": {"S": chain}},
            ConsistentRead=True,
        )
        for page in pages:
            yield from page.get("Items", [])

    def with_retries(self, what: str, attempt: Any) -> Any:
        """Run ``attempt`` until it does not lose a race; botocore errors become StorageUnavailable."""
        for tries in range(_ATTEMPTS):
            try:
                return attempt()
            except _LostRace:
                time.sleep(random.uniform(0, 0.005 * min(tries + 1, 10)))  # noqa: S311 - jitter, not a secret
            except (BotoCoreError, ClientError) as exc:  # one message, no details
                raise StorageUnavailable(f"{what} in DynamoDB is unavailable") from exc
        raise StorageUnavailable(f"{what} in DynamoDB is busy: {_ATTEMPTS} writes in a row lost a race")


def _lost_race(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class DynamoAuditLog:
    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table = DynamoAuditTable(table_name, client)

    def append(self, action: str, actor: str, subjects: Sequence[str], detail: Detail, now: int) -> AuditEntry:
        def attempt() -> AuditEntry:
            head = self.table.head(AUDIT)
            entry = chained(_entry(head) if head else None, now, action, actor, subjects, detail)
            # Pointers first: a crash or a lost race leaves pointers to an entry that does not name
            # the subject (``entries`` drops them), never an entry its pointers do not find.
            pointers = [_pointer(subject, entry.seq) for subject in sorted(set(entry.subjects))]
            for start in range(0, len(pointers), 25):  # BatchWriteItem takes 25
                self._put_batch(pointers[start : start + 25])
            try:
                self.table.client.put_item(
                    TableName=self.table.table_name,
                    Item=_item(entry),
                    ConditionExpression="attribute_not_exists(seq)",
                )
            except ClientError as exc:
                if _lost_race(exc):
                    raise _LostRace from exc
                raise
            return entry

        result: AuditEntry = self.table.with_retries("the audit trail", attempt)
        return result

    def _put_batch(self, items: list[dict[str, Any]]) -> None:
        requests: dict[str, Any] = {self.table.table_name: [{"PutRequest": {"Item": item}} for item in items]}
        for round_ in range(_UNPROCESSED_ROUNDS):
            done = self.table.client.batch_write_item(RequestItems=requests)
            requests = done.get("UnprocessedItems") or {}
            if not requests:
                return
            _pause(round_)
        raise StorageUnavailable("the audit trail in DynamoDB is throttled: its pointers stayed unprocessed")

    def entries(self, since: int | None = None, subject: str | None = None) -> Iterator[AuditEntry]:
        try:
            if subject is None:
                found = [_entry(item) for item in self.table.partition(AUDIT)]
            else:
                seqs = sorted({int(item["seq"]["N"]) for item in self.table.partition(SUBJECT + subject)})
                found = [e for e in self._get_entries(seqs) if subject in e.subjects]
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable("the audit trail in DynamoDB is unavailable") from exc
        return iter([e for e in sorted(found, key=lambda e: e.seq) if since is None or e.at >= since])

    def _get_entries(self, seqs: list[int]) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        for start in range(0, len(seqs), 100):  # BatchGetItem takes 100 keys
            keys = [{"chain": {"S": AUDIT}, "seq": {"N": str(seq)}} for seq in seqs[start : start + 100]]
            request: dict[str, Any] = {self.table.table_name: {"Keys": keys, "ConsistentRead": True}}
            for round_ in range(_UNPROCESSED_ROUNDS):
                done = self.table.client.batch_get_item(RequestItems=request)
                found.extend(_entry(item) for item in done.get("Responses", {}).get(self.table.table_name, []))
                request = done.get("UnprocessedKeys") or {}
                if not request:
                    break
                _pause(round_)
            else:
                raise StorageUnavailable("the audit trail in DynamoDB is throttled: entries stayed unread")
        return found


def _pause(round_: int) -> None:
    """Exponential backoff with full jitter between batch calls that left items unprocessed."""
    time.sleep(random.uniform(0, 0.05 * 2**round_))  # noqa: S311 - jitter, not a secret


class DynamoHolds:
    def __init__(self, table_name: str, client: Any = None) -> None:
        self.table = DynamoAuditTable(table_name, client)

    def place(self, hold: Hold) -> None:
        def attempt() -> None:
            if self._find(hold.id) is not None:
                return  # placed already: one
            head = self.table.head(HOLDS)
            seq = int(head["seq"]["N"]) + 1 if head else 1
            try:
                self.table.client.put_item(
                    TableName=self.table.table_name,
                    Item=_hold_item(hold, seq),
                    ConditionExpression="attribute_not_exists(seq)",
                )
            except ClientError as exc:
                if _lost_race(exc):
                    raise _LostRace from exc
                raise

        self.table.with_retries("the legal holds", attempt)

    def release(self, hold_id: str, now: int, actor: str) -> Hold | None:
        def attempt() -> Hold | None:
            item = self._find(hold_id)
            if item is None:
                return None
            if "released_at" not in item:
                try:
                    self.table.client.update_item(
                        TableName=self.table.table_name,
                        Key={"chain": item["chain"], "seq": item["seq"]},
                        UpdateExpression="SET released_at = :at, released_by = :by",
                        ConditionExpression="attribute_exists(seq) AND attribute_not_exists(released_at)",
                        ExpressionAttributeValues={":at": {"N": str(now)}, ":by": {"S": actor}},
                    )
                except ClientError as exc:
                    if not _lost_race(exc):  # released meanwhile: keep the first release
                        raise
                item = self._find(hold_id) or item
            return _hold(item)

        result: Hold | None = self.table.with_retries("the legal holds", attempt)
        return result

    def all(self) -> list[Hold]:
        try:
            holds = [_hold(item) for item in self.table.partition(HOLDS)]
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable("the legal holds in DynamoDB are unavailable") from exc
        return sorted(holds, key=lambda h: (h.placed_at, h.id))

    def _find(self, hold_id: str) -> dict[str, Any] | None:
        return next((item for item in self.table.partition(HOLDS) if item["id"]["S"] == hold_id), None)


def _item(entry: AuditEntry) -> dict[str, Any]:
    return {
        "chain": {"S": AUDIT},
        "seq": {"N": str(entry.seq)},
        "at": {"N": str(entry.at)},
        "action": {"S": entry.action},
        "actor": {"S": entry.actor},
        "subjects": {"S": orjson.dumps(list(entry.subjects)).decode()},
        "detail": {"S": orjson.dumps(dict(entry.detail), option=orjson.OPT_SORT_KEYS).decode()},
        "prev": {"S": entry.prev},
        "hash": {"S": entry.hash},
    }


def _pointer(subject: str, seq: int) -> dict[str, Any]:
    return {"chain": {"S": SUBJECT + subject}, "seq": {"N": str(seq)}}


def _entry(item: dict[str, Any]) -> AuditEntry:
    return AuditEntry(
        seq=int(item["seq"]["N"]),
        at=int(item["at"]["N"]),
        action=item["action"]["S"],
        actor=item["actor"]["S"],
        subjects=tuple(orjson.loads(item["subjects"]["S"])),
        detail=orjson.loads(item["detail"]["S"]),
        prev=item["prev"]["S"],
        hash=item["hash"]["S"],
    )


def _hold_item(hold: Hold, seq: int) -> dict[str, Any]:
    item: dict[str, Any] = {"chain": {"S": HOLDS}, "seq": {"N": str(seq)}, "placed_at": {"N": str(hold.placed_at)}}
    for name in _HOLD_FIELDS:
        value = getattr(hold, name)
        if value is not None:
            item[name] = {"S": value}
    if hold.released_at is not None:
        item["released_at"] = {"N": str(hold.released_at)}
    return item


def _hold(item: dict[str, Any]) -> Hold:
    text = {name: item[name]["S"] for name in _HOLD_FIELDS if name in item}
    released = int(item["released_at"]["N"]) if "released_at" in item else None
    return Hold(
        id=text["id"],
        kind=text["kind"],
        subject=text["subject"],
        label=text["label"],
        reason=text["reason"],
        placed_at=int(item["placed_at"]["N"]),
        placed_by=text["placed_by"],
        released_at=released,
        released_by=text.get("released_by"),
    )
