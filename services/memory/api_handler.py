"""Lambda entry for the memory read routes on AWS: ``services.memory.api_handler.lambda_handler``.

A function of its own because it imports ``mem0`` (the Platform client) and the search function must
not. Same API keys as the search API for ``/callers/...``; the agent secret for the two ElevenLabs
endpoints. Built once per cold start; the Mem0 client itself connects on first use.
"""

import time
from typing import Any

from fastapi import FastAPI
from mangum import Mangum

from services.core.config import Settings, get_settings
from services.core.logging import get_logger
from services.core.wiring import build_index
from services.web.auth import ApiKeys
from services.web.credentials import configured_api_keys

from .app import create_memory_app
from .router import MemoryContext
from .service import AgentSecrets
from .wiring import agent_secrets, build_memory_store

_handler: Mangum | None = None


def _build() -> Mangum:
    settings = get_settings()
    return Mangum(build_memory_api_app(settings), lifespan="off", api_gateway_base_path=settings.api_base_path)


def build_memory_api_app(settings: Settings) -> FastAPI:
    """The memory read routes over the AWS stores; ``services/aws/memory_api_handler.py`` adds the
    access audit of #13 (``GET /callers/{phone}/memories`` is recorded as ``memory_read``)."""
    logger = get_logger("callvault-memory-api", settings.log_level)
    context = MemoryContext(
        store=build_memory_store(settings),
        index=build_index(settings),  # no archive bucket: the stack sets CALLVAULT_TABLE only
        agent_secrets=AgentSecrets(agent_secrets(settings)),
        default_region=settings.default_region,
        first_message=settings.agent_first_message,
        logger=logger,
        clock=time.time,
    )
    return create_memory_app(context, ApiKeys(configured_api_keys(settings)), logger)


def lambda_handler(event: dict[str, Any], context: Any) -> Any:
    global _handler
    if _handler is None:
        _handler = _build()
    return _handler(event, context)
