"""Managed API keys (``callvault keys create|list|revoke``): ``DATA_DIR/api-keys.json``, owner-only.

Each key is kept as its SHA-256 with an id, a name, a role and its creation and revocation times; the
key itself is shown once, by ``create``, and never stored. ``callvault serve`` reads the file again
whenever it changes (one ``stat`` per check), so a key created or revoked while it runs counts at once.
A file that does not parse (edited by hand) is refused in one line by every command, and by a running
``serve`` for the managed keys only (fail closed): the generated and configured keys go on working.
"""

import contextlib
import fcntl
import os
import secrets as token_source
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from .auth import HASH_PREFIX, KeyEntry, Role, hash_key, parse_role

KEYS_FILE = "api-keys.json"
KEY_PREFIX = "cvk_"


class KeyFileInvalid(ValueError):
    """``api-keys.json`` does not hold what ``callvault keys`` writes; the message says what to do."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"{path} is not a valid key file ({detail}); restore it from a backup or repair it by hand "
            "(it holds no key itself: removing it revokes every key `callvault keys create` made)"
        )


@dataclass(frozen=True)
class ManagedKey:
    id: str
    name: str
    role: Role
    sha256: str
    created_at: int
    revoked_at: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def entry(self) -> KeyEntry:
        return KeyEntry(bytes.fromhex(self.sha256), self.role, self.id, self.name)

    def config_entry(self) -> str:
        """The same key as a ``CALLVAULT_API_KEYS`` / SSM entry (for the AWS back end)."""
        return f"{self.role}:{HASH_PREFIX}{self.sha256}"


class KeyFile:
    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        on_invalid: Callable[[KeyFileInvalid], None] | None = None,
    ) -> None:
        self.path = path
        self._clock = clock
        self._on_invalid = on_invalid  # told once per change of a file that does not parse
        self._seen: tuple[int, int] | None = None
        self._entries: tuple[KeyEntry, ...] = ()

    @classmethod
    def in_data_dir(cls, data_dir: Path, on_invalid: Callable[[KeyFileInvalid], None] | None = None) -> "KeyFile":
        return cls(data_dir / KEYS_FILE, on_invalid=on_invalid)

    def entries(self) -> tuple[KeyEntry, ...]:
        """The active keys, re-read only when the file changed; none while it does not parse."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._entries = None, ()
            return ()
        seen = (st.st_mtime_ns, st.st_size)
        if seen != self._seen:
            self._seen = seen
            try:
                self._entries = tuple(k.entry() for k in self.all_keys() if k.active)
            except KeyFileInvalid as exc:
                self._entries = ()  # fail closed: no managed key, rather than a 500 for every request
                if self._on_invalid is not None:
                    self._on_invalid(exc)
        return self._entries

    def all_keys(self) -> list[ManagedKey]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        if not raw.strip():
            return []
        try:
            keys = orjson.loads(raw).get("keys", [])
            records = [ManagedKey(**{**k, "role": parse_role(k["role"])}) for k in keys]
            for record in records:
                bytes.fromhex(record.sha256)
        except orjson.JSONDecodeError as exc:
            raise KeyFileInvalid(self.path, f"not JSON: {exc}") from None
        except (AttributeError, TypeError, KeyError, ValueError):
            raise KeyFileInvalid(self.path, 'not {"keys": [...]} as `callvault keys create` writes it') from None
        return records

    def create(self, name: str, role: Role) -> tuple[str, ManagedKey]:
        """A new random key (returned once) and its record."""
        key = KEY_PREFIX + token_source.token_urlsafe(32)
        record = ManagedKey(
            id="key_" + token_source.token_hex(6),
            name=name,
            role=role,
            sha256=hash_key(key).hex(),
            created_at=int(self._clock()),
        )
        with self._locked():
            self._write([*self.all_keys(), record])
        return key, record

    def revoke(self, key_id: str) -> ManagedKey:
        with self._locked():
            keys = self.all_keys()
            for i, k in enumerate(keys):
                if k.id == key_id:
                    if k.active:
                        keys[i] = ManagedKey(**{**asdict(k), "revoked_at": int(self._clock())})
                        self._write(keys)
                    return keys[i]
        raise KeyError(key_id)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _write(self, keys: list[ManagedKey]) -> None:
        tmp = self.path.with_name(f".tmp-{self.path.name}-{os.getpid()}-{time.monotonic_ns()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(orjson.dumps({"keys": [asdict(k) for k in keys]}, option=orjson.OPT_INDENT_2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
