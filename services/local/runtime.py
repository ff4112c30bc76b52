"""Process settings shared by `callvault serve` and its ingest processes."""

import gc


def tune_garbage_collector() -> None:
    """Every webhook parses a large JSON tree; with the default thresholds the collector ran about
    three young collections per webhook, promoted live trees and paid 80-100 ms full collections
    (docs/benchmarks.md). The start-up objects are frozen out of every collection, and young
    collections wait for 50,000 net allocations: the trees are freed by reference counting anyway."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
