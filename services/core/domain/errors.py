"""The error hierarchy. Each class carries a stable ``code``; every edge maps classes to statuses
in one table (never by matching message text)."""


class CallVaultError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidSignature(CallVaultError):
    code = "invalid_signature"


class SignatureMismatch(InvalidSignature):
    """A well-formed, timely signature made with another secret or over other bytes (edges add a hint)."""


class InvalidPayload(CallVaultError):
    code = "invalid_payload"


class PayloadTooLarge(CallVaultError):
    code = "payload_too_large"


class InvalidRequest(CallVaultError):
    """A well-formed request whose parameters are wrong (a bad phone number, a bad id)."""

    code = "invalid_request"


class UnknownParameter(CallVaultError):
    """A query parameter the route does not take (a typo such as ``from=`` must not widen a search)."""

    code = "unknown_parameter"


class InvalidCursor(CallVaultError):
    code = "invalid_cursor"


class Unauthorized(CallVaultError):
    code = "unauthorized"


class Forbidden(CallVaultError):
    code = "forbidden"


class NotFound(CallVaultError):
    code = "not_found"


class StorageUnavailable(CallVaultError):
    """The archive or the index could not durably store or read; the caller should retry."""

    code = "storage_unavailable"


class RangeNotSatisfiable(CallVaultError):
    """A byte range that starts beyond the end of the object (a local file link)."""

    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class NotConfigured(CallVaultError):
    """A feature this deployment has not been set up for; the message names the setting to add."""

    code = "not_configured"


class Held(CallVaultError):
    """Data under a legal hold (#13): erasure refuses it, naming the hold, until it is released."""

    code = "held"


# One table for every HTTP edge (FastAPI app, Lambda handlers).
HTTP_STATUS: dict[type[CallVaultError], int] = {
    InvalidSignature: 401,
    Unauthorized: 401,
    Forbidden: 403,
    InvalidPayload: 400,
    InvalidCursor: 400,
    UnknownParameter: 400,
    NotFound: 404,
    Held: 409,
    PayloadTooLarge: 413,
    RangeNotSatisfiable: 416,
    InvalidRequest: 422,
    StorageUnavailable: 503,
    NotConfigured: 503,
}


def http_status(error: CallVaultError) -> int:
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500
