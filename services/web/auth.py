"""API keys with roles: only their SHA-256 is held, and a presented key is compared against every one
in constant time (``core.domain.matching``).

SHA-256 without salt or stretching is enough here because keys are random tokens (``callvault serve``
and ``callvault keys create`` make 256-bit ones), not passwords: nobody can guess one from its hash.
Configuring ``sha256:<hex>`` instead of the key itself keeps the key out of the environment entirely.

Roles, each including the one before: ``read`` (metadata and transcripts), ``listen`` (also audio),
``admin`` (also what later features add, such as erasure). A configured entry may start with its
role (``read:<key>``, ``listen:sha256:<hex>``); one without a role is ``admin``, as every key was
before roles existed.
"""

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from services.core.domain.errors import Forbidden, Unauthorized
from services.core.domain.matching import index_of_match

Role = Literal["read", "listen", "admin"]
ROLES: tuple[Role, ...] = ("read", "listen", "admin")
DEFAULT_ROLE: Role = "admin"
HASH_PREFIX = "sha256:"
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_KEY_CHARS = 512
_RANK = {role: rank for rank, role in enumerate(ROLES)}


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_id_of(digest: bytes) -> str:
    """A stable, public name for a configured key: a hash of its hash (reveals nothing of the key)."""
    return "cfg_" + hashlib.sha256(b"callvault-key-id:" + digest).hexdigest()[:12]


def parse_role(text: str) -> Role:
    if text not in _RANK:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return text


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: a key (by its id, never the key) and what it may do."""

    key_id: str
    role: Role
    name: str | None = None

    def may(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]


@dataclass(frozen=True)
class KeyEntry:
    digest: bytes
    role: Role
    key_id: str
    name: str | None = None

    @classmethod
    def of(
        cls, digest: bytes, role: Role = DEFAULT_ROLE, key_id: str | None = None, name: str | None = None
    ) -> "KeyEntry":
        return cls(digest, role, key_id or key_id_of(digest), name)

    def principal(self) -> Principal:
        return Principal(self.key_id, self.role, self.name)


def parse_key_entries(entries: Iterable[str]) -> list[KeyEntry]:
    """Each entry is ``[role:]<key>`` or ``[role:]sha256:<64 hex>``; anything else raises ``ValueError`` (at
    start-up, where a typo should stop the service rather than lock every client out)."""
    parsed: list[KeyEntry] = []
    for raw in entries:
        entry, role = raw, DEFAULT_ROLE
        head, sep, rest = raw.partition(":")
        if sep and head in _RANK:
            entry, role = rest, parse_role(head)
        if entry.startswith(HASH_PREFIX):
            digest = entry.removeprefix(HASH_PREFIX)
            if not _HEX_DIGEST.fullmatch(digest):
                raise ValueError("an API key entry starting with 'sha256:' must be followed by 64 hex digits")
            parsed.append(KeyEntry.of(bytes.fromhex(digest), role))
        elif entry:
            parsed.append(KeyEntry.of(hash_key(entry), role))
    return parsed


KeySource = Callable[[], Iterable[KeyEntry]]


class ApiKeys:
    """The accepted keys, as hashes with roles: configured ones, plus (``callvault serve``) the managed
    keys of ``callvault keys`` read through ``managed`` on every check, so a revocation takes effect at
    once. Empty means every request is refused. Plain digests (bytes) are ``admin`` keys."""

    def __init__(self, entries: Iterable[KeyEntry | bytes], managed: KeySource | None = None) -> None:
        self._entries = tuple(e if isinstance(e, KeyEntry) else KeyEntry.of(e) for e in entries)
        self._managed = managed

    def _all(self) -> tuple[KeyEntry, ...]:
        if self._managed is None:
            return self._entries
        return self._entries + tuple(self._managed())

    def __len__(self) -> int:
        return len(self._all())

    def check_header(self, authorization: str | None) -> Principal:
        """The principal of ``Authorization: Bearer <key>``, else ``Unauthorized``."""
        if not authorization:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        return self.authenticate(key)

    def authenticate(self, key: str) -> Principal:
        principal = self.lookup(key) if len(key) <= MAX_KEY_CHARS else None
        if principal is None:
            raise Unauthorized("API key is not valid")
        return principal

    def lookup(self, key: str) -> Principal | None:
        entries = self._all()
        found = index_of_match(hash_key(key), [e.digest for e in entries])
        return None if found is None else entries[found].principal()

    def matches(self, key: str) -> bool:
        return self.lookup(key) is not None

    def by_id(self, key_id: str) -> Principal | None:
        """The key's current principal (its role today), or None once it is revoked or gone: sessions
        re-check their key on every request with this."""
        for entry in self._all():
            if entry.key_id == key_id:
                return entry.principal()
        return None


def require_role(principal: Principal, role: Role, what: str) -> None:
    if not principal.may(role):
        raise Forbidden(f"{what} needs a key with the '{role}' role; this key has '{principal.role}'")


def iam_caller(scope: Mapping[str, Any]) -> str:
    """The IAM principal API Gateway authenticated for this request (``api_auth = "iam"``).

    HTTP API (2.0) puts it in ``requestContext.authorizer.iam``, REST API (1.0) in
    ``requestContext.identity``. Anything else (a local server, a route without the IAM authorizer)
    is refused: trusting a header the caller controls would let anyone in.
    """
    event = scope.get("aws.event")
    context = event.get("requestContext") if isinstance(event, dict) else None
    if isinstance(context, dict):
        authorizer = context.get("authorizer")
        iam = authorizer.get("iam") if isinstance(authorizer, dict) else None
        if isinstance(iam, dict) and isinstance(iam.get("userArn"), str) and iam.get("accessKey"):
            return str(iam["userArn"])
        identity = context.get("identity")
        if isinstance(identity, dict) and isinstance(identity.get("userArn"), str) and identity.get("accessKey"):
            return str(identity["userArn"])
    raise Unauthorized("this API expects IAM-signed requests through API Gateway (api_auth=iam)")
