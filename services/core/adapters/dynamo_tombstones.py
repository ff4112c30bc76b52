"""Tombstones on AWS: items ``~erased/<digest>`` in the calls table, beside the sync watermark. They
carry no GSI key attributes, so no listing shows them, and ``DynamoCallIndex.scan`` skips ``~`` items.
Every function that reads the table can check them; no other table or grant is needed."""

from collections.abc import Iterator, Sequence
from typing import Any

from ..domain.errors import StorageUnavailable

_PREFIX = "~erased/"


class DynamoTombstones:
    def __init__(self, table_name: str, client: Any = None) -> None:
        import boto3

        self.table_name = table_name
        self.client = client or boto3.client("dynamodb")

    def add(self, digests: Sequence[str], now: int) -> None:
        for digest in digests:
            try:
                self.client.update_item(
                    TableName=self.table_name,
                    Key={"conversation_id": {"S": _PREFIX + digest}},
                    UpdateExpression="SET erased_at = if_not_exists(erased_at, :now)",
                    ExpressionAttributeValues={":now": {"N": str(now)}},
                )
            except Exception as exc:  # botocore's ClientError / BotoCoreError: one message, no details
                raise StorageUnavailable("the tombstones in DynamoDB are unavailable (UpdateItem)") from exc

    def contains(self, digest: str) -> bool:
        try:
            found = self.client.get_item(
                TableName=self.table_name,
                Key={"conversation_id": {"S": _PREFIX + digest}},
                ConsistentRead=True,
                ProjectionExpression="conversation_id",
            )
        except Exception as exc:
            raise StorageUnavailable("the tombstones in DynamoDB are unavailable (GetItem)") from exc
        return "Item" in found

    def digests(self) -> Iterator[str]:
        try:
            pages = self.client.get_paginator("scan").paginate(
                TableName=self.table_name,
                FilterExpression="begins_with(conversation_id, :p)",
                ExpressionAttributeValues={":p": {"S": _PREFIX}},
                ProjectionExpression="conversation_id",
            )
            found = [item["conversation_id"]["S"][len(_PREFIX) :] for page in pages for item in page.get("Items", [])]
        except Exception as exc:
            raise StorageUnavailable("the tombstones in DynamoDB are unavailable (Scan)") from exc
        return iter(sorted(found))
