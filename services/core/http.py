"""The one error envelope of every CallVault API, shared by the webhook and search edges.

Framework-free on purpose: the ingest Lambda imports it without FastAPI.
"""

from typing import Any

JsonBody = dict[str, Any]


def error_body(code: str, message: str, request_id: str) -> JsonBody:
    """``{"error": {"code", "message"}, "request_id"}``: clients branch on ``code``, people read ``message``."""
    return {"error": {"code": code, "message": message}, "request_id": request_id}


# 503 for "too much work in progress" (webhook bodies in flight, connections): not a storage failure.
BUSY_CODE = "server_busy"
