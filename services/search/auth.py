"""API keys: only their SHA-256 is held, and a presented key is compared against every one in
constant time.

SHA-256 without salt or stretching is enough here because keys are random tokens (``callvault
serve`` makes 256-bit ones), not passwords: nobody can guess one from its hash. Configuring
``sha256:<hex>`` instead of the key itself keeps the key out of the environment entirely.
"""

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any

from services.core.domain.errors import Unauthorized

HASH_PREFIX = "sha256:"
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_KEY_CHARS = 512


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def parse_key_entries(entries: Iterable[str]) -> list[bytes]:
    """Each entry is a raw key or ``sha256:<64 hex>``; anything else raises ``ValueError`` (at start-up,
    where a typo should stop the service rather than lock every client out)."""
    hashes: list[bytes] = []
    for entry in entries:
        if entry.startswith(HASH_PREFIX):
            digest = entry.removeprefix(HASH_PREFIX)
            if not _HEX_DIGEST.fullmatch(digest):
                raise ValueError("an API key entry starting with 'sha256:' must be followed by 64 hex digits")
            hashes.append(bytes.fromhex(digest))
        elif entry:
            hashes.append(hash_key(entry))
    return hashes


class ApiKeys:
    """The set of accepted keys, as hashes. Empty means every request is refused."""

    def __init__(self, hashes: Iterable[bytes]) -> None:
        self._hashes = tuple(hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    def check_header(self, authorization: str | None) -> None:
        """Accept ``Authorization: Bearer <key>`` for any configured key, else raise ``Unauthorized``."""
        if not authorization:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("malformed Authorization header: expected 'Bearer <key>'")
        if len(key) > MAX_KEY_CHARS or not self.matches(key):
            raise Unauthorized("API key is not valid")

    def matches(self, key: str) -> bool:
        presented = hash_key(key)
        matched = False
        for stored in self._hashes:  # no early exit: the time taken does not depend on which key matched
            matched |= hmac.compare_digest(presented, stored)
        return matched


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
