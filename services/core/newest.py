"""Keep the newest version of an object: the archive's and the analytics tables' one conditional write.

A compare-and-swap loop over the BlobStore port: read the object's head (tag and version label),
stop if what is stored sorts at or after ours, else write with ``put_if`` on the tag read. A racing
writer changes the tag, so the loser reads again and compares with the winner. Whatever the order
of concurrent writers, the object ends at the highest version any of them carried, on every back end.
"""

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .domain.errors import StorageUnavailable
from .domain.versions import Comparison, compare
from .ports import BlobStore

MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class Written:
    outcome: Comparison  # "newer": ours was written; "same": already there; "older": a newer one is there
    size: int  # of the object stored afterwards (ours unless "older")


def write_newest(
    store: BlobStore,
    key: str,
    body: Callable[[], Iterable[bytes]],
    content_type: str,
    version: str,
    *,
    replace_same: bool = False,
) -> Written:
    """``body`` is called once per attempt (a stream is consumed by a failed attempt too).

    ``replace_same``: the same version is written again too (a rebuild of derived objects whose
    format changed); a newer one never is."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        head = store.head(key)
        if head is not None:
            outcome = compare(version, head.version)
            if outcome == "older" or (outcome == "same" and not replace_same):
                return Written(outcome, head.size)
        size = store.put_stream_if(key, body(), content_type, head.tag if head else None, version=version)
        if size is not None:
            return Written("newer", size)
        time.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311 - jitter, not security
    raise StorageUnavailable(f"an object kept changing during {MAX_ATTEMPTS} conditional writes; retry")
