"""The memory back end's one error. A subclass of ``StorageUnavailable`` so every edge's status table
already answers it with 503, and the worker treats it as "try again later"."""

from services.core.domain.errors import StorageUnavailable


class MemoryUnavailable(StorageUnavailable):
    """Mem0 did not store or answer. ``retryable`` is False for refusals a retry cannot fix (a bad
    API key, a request the service rejects); the worker still retries them up to its limit, since
    the fix (a new key) usually arrives without anyone re-driving the jobs."""

    code = "memory_unavailable"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
