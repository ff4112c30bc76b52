"""The BlobStore compare-and-swap contract (``get_tagged`` / ``put_if`` / ``delete_if``) as plain
checks over a store, so the contract suite runs them on every adapter and the SeaweedFS tests run
them on a real S3 (moto implements the conditions too, but it is not S3)."""

import threading
from collections.abc import Callable

import pytest

from services.core.domain.errors import NotFound
from services.core.ports import BlobStore

KEY = "calls/dt=2025-07-06/day.compacted.json.gz"
TYPE = "application/x-ndjson"


def create_only_when_absent(store: BlobStore) -> None:
    assert store.put_if(KEY, b"first", TYPE, None) is True
    assert store.put_if(KEY, b"second", TYPE, None) is False  # it exists now
    assert store.get_bytes(KEY) == b"first"


def replace_only_with_the_current_tag(store: BlobStore) -> None:
    store.put_if(KEY, b"v1", TYPE, None)
    data, tag1 = store.get_tagged(KEY)
    assert data == b"v1"
    assert store.put_if(KEY, b"v2", TYPE, tag1) is True
    data, tag2 = store.get_tagged(KEY)
    assert (data, tag2 != tag1) == (b"v2", True)
    assert store.put_if(KEY, b"stale", TYPE, tag1) is False  # a writer that read v1 lost the race
    assert store.get_bytes(KEY) == b"v2"


def a_tag_does_not_create_a_missing_object(store: BlobStore) -> None:
    store.put_if(KEY, b"v1", TYPE, None)
    _, tag = store.get_tagged(KEY)
    store.delete(KEY)
    assert store.put_if(KEY, b"v2", TYPE, tag) is False
    with pytest.raises(NotFound):
        store.get_tagged(KEY)


def delete_only_the_version_that_was_read(store: BlobStore) -> None:
    store.put_bytes(KEY, b"read by the compactor", TYPE)
    _, old = store.get_tagged(KEY)
    store.put_bytes(KEY, b"rewritten by a redelivery", TYPE)  # plain writes change the tag too

    assert store.delete_if(KEY, old) is False
    assert store.get_bytes(KEY) == b"rewritten by a redelivery"  # the newer object survives

    _, current = store.get_tagged(KEY)
    assert store.delete_if(KEY, current) is True
    assert store.size(KEY) is None
    assert store.delete_if(KEY, current) is False  # gone: nothing to delete


def concurrent_swaps_lose_no_update(store: BlobStore) -> None:
    """Eight writers each append their name with a read-compare-swap loop: all eight names survive."""
    store.put_if(KEY, b"", TYPE, None)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def append(name: bytes) -> None:
        try:
            start.wait()
            for _ in range(100):
                data, tag = store.get_tagged(KEY)
                if store.put_if(KEY, data + name, TYPE, tag):
                    return
            raise AssertionError("no swap succeeded in 100 attempts")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(bytes([65 + i]),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(store.get_bytes(KEY)) == list(range(65, 73))


CHECKS: dict[str, Callable[[BlobStore], None]] = {
    check.__name__: check
    for check in (
        create_only_when_absent,
        replace_only_with_the_current_tag,
        a_tag_does_not_create_a_missing_object,
        delete_only_the_version_that_was_read,
        concurrent_swaps_lose_no_update,
    )
}
