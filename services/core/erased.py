"""Tombstones of erased conversations: a keyed hash per conversation, never its id or phone in clear.

``HMAC-SHA256(key, "callvault-erased:v1:" + conversation_id)``: without the key nobody can test a
guessed id against the list (ids are not secret: they travel in webhooks and URLs), and the same
hash names the conversation in the audit trail, so an erasure never rewrites the audit chain.
The key is kept like the other local secrets (``<data-dir>/tombstone-key``, 0600) or in SSM on AWS;
losing it makes every tombstone unrecognisable, so back it up with the data dir.
"""

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from .ports import Tombstones

TOMBSTONE_KEY_FILE = "tombstone-key"
_DOMAIN = b"callvault-erased:v1:"
_CALLER_DOMAIN = b"callvault-caller:v1:"


def conversation_digest(key: bytes, conversation_id: str) -> str:
    return hmac.new(key, _DOMAIN + conversation_id.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class ErasedConversations:
    """What ingest, import and sync ask before storing anything of a conversation."""

    key: bytes
    store: Tombstones

    def digest(self, conversation_id: str) -> str:
        return conversation_digest(self.key, conversation_id)

    def is_erased(self, conversation_id: str) -> bool:
        return self.store.contains(self.digest(conversation_id))

    def caller_digest(self, phone: str) -> str:
        """A caller (E.164) by keyed hash, for legal holds on a whole caller."""
        return hmac.new(self.key, _CALLER_DOMAIN + phone.encode("utf-8"), hashlib.sha256).hexdigest()

    def mark(self, conversation_ids: Iterable[str], now: int) -> None:
        self.store.add(sorted({self.digest(cid) for cid in conversation_ids}), now)
